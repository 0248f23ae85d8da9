"""Real-valued outputs: percentile (median) smoothing and bounded expectations, in one call each.

`certify_regression` draws `n` noisy samples of a model with outputs `[D]`, brings them to the host
(`lrsjax.sampling.make_output_sampler`: `n x D` float32 values, refused up front when they do not
fit in memory) and bounds the smoothed `percentile` of every coordinate at every input within `eps`
by two order statistics (Chiang et al., 2020; `docs/math.md §13`). `certify_expectation` bounds the
smoothed mean of outputs confined to `[low, high]` (Salman et al., 2019, Lemma 2, with Hoeffding
bounds plugged in on the safe sides).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lrsjax import _checks, _keys, sampling, stats
from lrsjax.noise import Noise, check_noise


class RegressionCertificate(NamedTuple):
    """The result of `certify_regression`. `D` output coordinates.

    Fields:
      estimate: float64 [D], the empirical `percentile` of the samples (`X_(ceil(n p))`; an
        estimate of the smoothed output, not a bound).
      lower: float64 [D], certified lower bound (`-inf` where no order statistic qualifies).
      upper: float64 [D], certified upper bound (`+inf` where none qualifies).
      k_lower: int, 1-based index of the order statistic giving `lower` (0: none).
      k_upper: int, 1-based index of the order statistic giving `upper` (0: none).
    """

    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    k_lower: int
    k_upper: int


class ExpectationCertificate(NamedTuple):
    """The result of `certify_expectation`. `D` output coordinates.

    Fields:
      mean: float64 [D], the empirical mean of the samples.
      lower: float64 [D], certified lower bound on the smoothed mean within `eps`.
      upper: float64 [D], certified upper bound.
    """

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Flat:
    """`apply_fn` with its outputs flattened to `[D]` (hashes by the wrapped function, so the
    compiled sampler is reused across calls with the same `apply_fn`)."""

    apply_fn: Callable

    def __call__(self, params, x):
        return self.apply_fn(params, x).reshape(-1)


def gaussian_sigma(noise: Noise, name: str = "noise") -> float:
    """The std of an isotropic Gaussian noise as sampled (float32 value, exact in float64).

    Refuses (ValueError naming `name`) other kinds, several groups, masked regions or different
    stds: the certificates of this module are for `N(0, sigma^2 I)` noise only.
    """
    noise = check_noise(noise, name)
    stds = noise.parameters.get("stds")
    if noise.kind != "gaussian" or stds is None:
        _checks.fail(
            name,
            f"a {noise.kind} noise",
            "must be isotropic Gaussian noise (the certificate is for N(0, sigma^2 I))",
            "Pass lrsjax.noise.isotropic_gaussian(image_shape, sigma).",
        )
    stds = np.asarray(np.asarray(stds, np.float64).astype(np.float32), np.float64)
    if noise.num_groups != 1 or not np.all(np.isfinite(stds)) or np.ptp(stds) != 0:
        _checks.fail(
            name,
            f"a gaussian noise with {noise.num_groups} groups and stds in "
            f"[{stds.min():g}, {stds.max():g}]",
            "must be isotropic: one group, one finite std for every region",
            "Pass lrsjax.noise.isotropic_gaussian(image_shape, sigma).",
        )
    return float(stds.flat[0])


def certify_regression(
    key,
    apply_fn: Callable,
    params,
    x,
    noise: Noise,
    *,
    n: int,
    alpha: float,
    eps: float,
    batch_size: int,
    percentile: float = 0.5,
) -> RegressionCertificate:
    """Percentile smoothing (Chiang et al., 2020): certified bounds on every output coordinate.

    Guarantee (`docs/math.md §13`). Let `F_x^i` be the distribution of coordinate `i` of `f(x +
    G)`, `G ~ N(0, sigma^2 I)`, and `h_p^i(x)` its lower and upper `p`-quantiles (`p =
    percentile`). With probability at least `1 - alpha` over the samples, jointly for all `D`
    coordinates: for every `||delta||_2 < eps`, both `p`-quantiles of coordinate `i` at `x + delta`
    lie in `[lower[i], upper[i]]`. `lower = X_(k_lower)`, `upper = X_(k_upper)` are order
    statistics of the `n` samples for the quantile levels `Phi(Phi^{-1}(p) -/+ eps / sigma)`, with
    exact binomial tails at level `alpha / (2 D)` (Bonferroni over coordinates and sides); `-inf`
    / `+inf` where no order statistic qualifies.

    Args:
      key: JAX PRNG key.
      apply_fn: `apply_fn(params, x) -> outputs [D]` (real values; any shape is flattened) for ONE
        input, deterministic.
      params: the model's parameters (any pytree).
      x: one input `[C, H, W]` in [0, 1] (the noise's image shape).
      noise: `lrsjax.noise.isotropic_gaussian(x.shape, sigma)`.
      n: samples (>= 1). The samples come to the host: `n x D` float32 values must fit in memory.
      alpha: joint error probability in (0, 1).
      eps: l2 radius >= 0 (0: bounds on the smoothed percentile at `x` itself).
      batch_size: samples per model call.
      percentile: `p` in (0, 1); 1/2 is median smoothing.
    Returns:
      A `RegressionCertificate`.
    Raises:
      ValueError (before sampling) for a noise other than isotropic Gaussian, bad arguments, or
      samples that do not fit in memory; after sampling, for NaN or infinite model outputs.
    """
    key = _keys.check_key("key", key)
    sigma = gaussian_sigma(noise)
    percentile = _checks.probability("percentile", percentile)
    alpha = _checks.probability("alpha", alpha)
    n = _checks.positive_int("n", n)
    stats.shifted_levels(percentile, eps, sigma)  # checks eps before sampling
    sampler = sampling.make_output_sampler(_Flat(apply_fn), noise, batch_size=batch_size)
    values = sampler(key, params, x, n).values
    bounds = stats.percentile_bounds(values, percentile, eps, sigma, alpha)
    return RegressionCertificate(*bounds)


def certify_expectation(
    key,
    apply_fn: Callable,
    params,
    x,
    noise: Noise,
    *,
    n: int,
    alpha: float,
    eps: float,
    batch_size: int,
    low: float,
    high: float,
) -> ExpectationCertificate:
    """Bounds on the smoothed expectation of every coordinate of a model with outputs in `[low,
    high]` (Salman et al., 2019, Lemma 2; the lecture's bounded-expectation corollary).

    Guarantee (`docs/math.md §13`): with probability at least `1 - alpha`, jointly for all `D`
    coordinates, `E f(x + delta + G)_i` lies in `[lower[i], upper[i]]` for every `||delta||_2 <=
    eps`: Hoeffding bounds on the mean at level `alpha / (2 D)` each, the lower one plugged into
    the lower end of the Lipschitz range and the upper one into the upper end
    (`lrsjax.stats.expectation_bounds`).

    Args:
      low, high: the range the model's outputs are guaranteed to lie in (`low < high`); an output
        outside it is an error (the bound would not hold).
      key, apply_fn, params, x, noise, n, alpha, eps, batch_size: as in `certify_regression`.
    Returns:
      An `ExpectationCertificate`.
    """
    key = _keys.check_key("key", key)
    sigma = gaussian_sigma(noise)
    alpha = _checks.probability("alpha", alpha)
    n = _checks.positive_int("n", n)
    stats.expectation_range(low, low, high, sigma, eps)  # checks low, high and eps first
    sampler = sampling.make_output_sampler(_Flat(apply_fn), noise, batch_size=batch_size)
    values = np.asarray(sampler(key, params, x, n).values, np.float64)
    outside = (values < low) | (values > high)
    if np.any(outside):
        _checks.fail(
            "apply_fn",
            f"outputs in [{values.min():g}, {values.max():g}]",
            f"must stay in [low, high] = [{low}, {high}] (the expectation bound assumes it)",
            "Clip the outputs inside apply_fn, or pass the model's true range.",
        )
    mean = values.mean(axis=0)
    lower, upper = stats.expectation_bounds(
        np.clip(mean, low, high), n, low, high, sigma, eps, alpha
    )
    return ExpectationCertificate(mean, lower, upper)
