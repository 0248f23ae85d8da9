"""Rayleigh smoothing of multiplicative parameters: gamma correction and contrast (Muravev and
Petiushko 2021; `docs/math.md`, "Semantic, multiplicative and probabilistic certificates").

`psi` composes multiplicatively, `psi_a(psi_b(x)) = psi_{a b}(x)` (gamma `x ** g` on [0, 1],
contrast `c x` without clipping). The smoothed classifier draws the factor `xi ~ Rayleigh(sigma)`
(density `z / sigma^2 exp(-z^2 / (2 sigma^2))`, `z > 0`). At the attacked input `psi_beta(x)` it
sees `psi_{beta xi}(x)` with `beta xi ~ Rayleigh(beta sigma)`, whose likelihood ratio to
`Rayleigh(sigma)` is monotone in `z` (increasing for `beta > 1`, decreasing for `beta < 1`).
Neyman-Pearson worst cases with `P(xi <= t) = 1 - exp(-t^2 / (2 sigma^2))` and `k = 1 / beta^2`:
    beta >= 1: the class is kept iff 1 - (1 - p_A)^k > p_B^k
    beta <= 1: the class is kept iff p_A^k > 1 - (1 - p_B)^k
Binary (`p_B = 1 - p_A`): every `beta` in `(sqrt(log_{1/2} p_A), sqrt(log_{1/2}(1 - p_A)))`.
The interval does not depend on `sigma` (a scale family); `sigma` changes the smoothed classifier,
hence `p_A`, only. The interval is tight for the bound `p_A`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import optimize

from lrsjax import _checks
from lrsjax.noise import _semantic
from lrsjax.noise._plugin import Noise, NoiseCertificate


def standard_rayleigh(key, shape, dtype=jnp.float32):
    """Rayleigh(1) draws `sqrt(2 E)`, `E ~ Exp(1)` (`_semantic.standard_exponential`: finite and
    > 0, so no factor is ever 0 and `0 ** xi = 0` keeps composing)."""
    return jnp.sqrt(2.0 * _semantic.standard_exponential(key, shape, jnp.float32)).astype(dtype)


def rayleigh_interval(p_lower, p_upper_other=None) -> np.ndarray:
    """The certified factors `(beta_min, beta_max)` of Rayleigh smoothing, float64 `[..., 2]`.

    Args:
      p_lower: float, any shape: lower bound on the probability of the predicted class.
      p_upper_other: optional upper bound on the probability of every other class (same shape);
        default `1 - p_lower` (binary form, closed form). Otherwise the ends solve the conditions
        of the module docstring by bracketed root finding (brentq, float64).
    Returns:
      `[..., 2]`: the open interval of factors `beta` for which `psi_beta(x)` keeps the class;
      `(1, 1)` (empty) where nothing is certified (`p_lower <= p_upper_other`).
    """
    p_a = _checks.as_float_array("p_lower", p_lower)
    if np.any((p_a < 0) | (p_a > 1)):
        _checks.fail("p_lower", p_lower, "must lie in [0, 1]", "Pass a probability bound.")
    if p_upper_other is None:
        ok = p_a > 0.5
        safe = np.where(ok, p_a, 0.75)
        with np.errstate(divide="ignore"):  # p_lower = 1: the interval is (0, inf)
            low = np.sqrt(np.log(safe) / np.log(0.5)) + 0.0  # no -0
            high = np.sqrt(np.log1p(-safe) / np.log(0.5))
        return np.stack([np.where(ok, low, 1.0), np.where(ok, high, 1.0)], axis=-1)
    p_b = _checks.as_float_array("p_upper_other", p_upper_other)
    _checks.same_shape(("p_lower", "p_upper_other"), (p_a, p_b))
    if np.any((p_b < 0) | (p_b > 1)):
        _checks.fail("p_upper_other", p_upper_other, "must lie in [0, 1]", "")
    out = np.ones(p_a.shape + (2,))
    for index in np.ndindex(p_a.shape):
        out[index] = _general_interval(float(p_a[index]), float(p_b[index]))
    return out


def _general_interval(p_a: float, p_b: float) -> tuple[float, float]:
    """Ends of the certified factors for `p_a > p_b` (both conditions are monotone in `k`). The
    roots are nudged inward by a relative 1e-12, so rounding never widens the interval."""
    if not p_a > p_b:
        return 1.0, 1.0
    if p_b == 0.0 or p_a == 1.0:  # the worst case keeps the class at every factor
        return 0.0, np.inf

    def up(k):  # > 0 iff beta = k ** -1/2 >= 1 keeps the class (k in (0, 1])
        return -np.expm1(k * np.log1p(-p_a)) - p_b**k

    def down(k):  # > 0 iff beta = k ** -1/2 <= 1 keeps the class (k >= 1)
        return p_a**k + np.expm1(k * np.log1p(-p_b))

    k_high = optimize.brentq(up, 1e-300, 1.0, xtol=1e-300, rtol=1e-15)
    k_max = 2.0
    while down(k_max) > 0:
        k_max *= 2.0
    k_low = optimize.brentq(down, 1.0, k_max, rtol=1e-15)
    return 1.0 / np.sqrt(k_low * (1.0 - 1e-12)), 1.0 / np.sqrt(k_high * (1.0 + 1e-12))


def _apply_gamma(key, x, scale):
    return _semantic.gamma_correction(x, scale[0] * standard_rayleigh(key, ()))


def _apply_contrast(key, x, scale):
    return _semantic.contrast(x, scale[0] * standard_rayleigh(key, ()))


def _certificate(noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    p_lower = np.asarray(estimate.p_lower, np.float64)
    abstain = ~(p_lower > 0.5)
    interval = rayleigh_interval(np.where(abstain, 0.5, p_lower))
    # the largest r with (e^-r, e^r) inside the interval: comparable with log-Gaussian contrast
    radius = np.where(abstain, 0.0, np.minimum(-np.log(interval[..., 0]), np.log(interval[..., 1])))
    interval = np.where(abstain[..., None], 1.0, interval)
    return NoiseCertificate(abstain, None, radius=radius, interval=interval, method=noise.kind)


def _check_unit(arr):
    if arr.min() < 0.0 or arr.max() > 1.0:
        _checks.fail(
            "x",
            arr,
            f"must lie in [0, 1] for gamma correction (found [{arr.min():g}, {arr.max():g}])",
            "Scale the image to [0, 1] (e.g. x / 255) and normalize inside apply_fn.",
        )


def rayleigh_gamma(image_shape, sigma) -> Noise:
    """Gamma-correction smoothing: `x ** xi`, `xi ~ Rayleigh(sigma)`, for images in [0, 1].

    Certificate (`certificates["probability"]`): the prediction is kept for every `x ** beta` with
    `beta` in `interval = rayleigh_interval(p_lower)` (open, float64 [1, 2]); `radius` = the
    largest `r` with `(e^{-r}, e^{r})` inside it (log units). `sigma = sqrt(2 / pi)` puts the mean
    factor at 1. `parameters = {"sigma": [[sigma]]}`.
    """
    return _semantic.single_output_noise(
        "rayleigh_gamma", image_shape, "sigma", sigma, _apply_gamma, _certificate, _check_unit
    )


def rayleigh_contrast(image_shape, sigma) -> Noise:
    """Contrast smoothing: `xi x`, `xi ~ Rayleigh(sigma)`; no clipping.

    Certificate: the prediction is kept for every `beta x` with `beta` in `interval` (open); radius
    as in `rayleigh_gamma`. `parameters = {"sigma": [[sigma]]}`.
    """
    return _semantic.single_output_noise(
        "rayleigh_contrast", image_shape, "sigma", sigma, _apply_contrast, _certificate
    )
