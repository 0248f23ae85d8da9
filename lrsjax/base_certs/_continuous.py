"""Base certificates for continuous data: Gaussian (l2), uniform and Laplace (l1) noise.

See docs/math.md §5.

Each turns per-output lower bounds `p_lower` on the probability of the predicted class into the
linear form `sum_j W[k, j] b[j] < eta[n]` of `BaseCertificates`, where `b[j]` is the adversary's
spend in region j: the squared l2 norm of the perturbation there (Gaussian) or its l1 norm
(uniform, Laplace). Anisotropic noise with a per-(group, region) scale reduces to the isotropic
certificate after rescaling every input dimension by its scale. Outputs with `p_lower <= 1/2`
abstain (binary form: the runner-up bound is `1 - p_lower`).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from lrsjax import _checks
from lrsjax.base_certs._types import BaseCertificates, make_base_certificates


def gaussian(prediction, p_lower, group, stds) -> BaseCertificates:
    """Anisotropic Gaussian l2 base certificates (Cohen et al. 2019, rescaled; docs/math.md §5).

    Group k is smoothed with N(x, diag(s^2)) where every dimension of region j has std `stds[k, j]`.
    Guarantee: if `p_lower[n]` lower-bounds the probability of `prediction[n]` under that noise, the
    smoothed output keeps its prediction for every x' with

        sum_j (1 / stds[k, j]^2) * ||x'_j - x_j||_2^2  <  Phi^{-1}(p_lower[n])^2 = eta[n].

    Args:
      prediction: int [D]: smoothed prediction of each output.
      p_lower: float [D] in [0, 1): lower bounds on the probability of the prediction.
      group: int [D] in [0, K): the smoothing group of each output.
      stds: float [K, M] > 0: noise std of region j while smoothing group k; `np.inf` marks a
        region the group's model cannot see (masked, weight 0).
    Returns:
      BaseCertificates with norm "l2", weights [1, K, M] = 1 / stds^2, abstain where p_lower <= 1/2.
    """
    p_lower = _p_lower(p_lower)
    weights = inverse_scales("stds", stds, power=2)
    abstain = p_lower <= 0.5
    eta = np.where(abstain, 0.0, special.ndtri(np.where(abstain, 0.75, p_lower)) ** 2)
    abstain |= eta <= 0  # p_lower a hair above 1/2: eta underflows, nothing to certify
    return make_base_certificates(prediction, abstain, eta, group, weights[None], "l2")


def isotropic_radius(p_lower, sigma) -> np.ndarray:
    """Certified l2 radius of isotropic Gaussian smoothing, `sigma * Phi^{-1}(p_lower)`.

    See docs/math.md §5.

    Guarantee: the smoothed prediction is constant on the open ball `||x' - x||_2 < radius`.
    Abstain marker: where `p_lower <= 1/2` the radius is 0.0, which certifies nothing (not even
    eps = 0, since the condition is strict); every non-abstained output has radius > 0.

    Args:
      p_lower: float in [0, 1), any shape.
      sigma: float > 0, scalar or broadcastable to `p_lower`.
    Returns:
      float64 radii, the broadcast shape.
    """
    p_lower = _p_lower(p_lower, ndim=None)
    sigma = _checks.as_float_array("sigma", sigma)
    if np.any(sigma <= 0):
        _checks.fail("sigma", sigma, "must be > 0", "Pass the noise standard deviation.")
    try:
        np.broadcast_shapes(p_lower.shape, sigma.shape)
    except ValueError:
        _checks.fail(
            "sigma",
            sigma,
            f"must be a scalar or broadcastable to p_lower's shape {p_lower.shape}",
            "Pass one sigma, or one per entry of p_lower.",
        )
    abstain = p_lower <= 0.5
    radius = sigma * special.ndtri(np.where(abstain, 0.75, p_lower))
    return np.where(abstain, 0.0, radius)[()]


def uniform_l1(prediction, p_lower, group, half_widths) -> BaseCertificates:
    """Anisotropic uniform-noise l1 base certificates (Yang et al. 2020, rescaled; docs/math.md §5).

    Noise U[x_d - lam_d, x_d + lam_d] with `lam = half_widths[k, j]` on region j for group k.
    Guarantee: the prediction is kept for every x' with
    `sum_j ||x'_j - x_j||_1 / lam[k, j] < 2 p_lower - 1`.

    Args:
      prediction, p_lower, group: as in `gaussian`.
      half_widths: float [K, M] > 0 (np.inf: masked region, weight 0).
    Returns:
      BaseCertificates with norm "l1", weights [1, K, M] = 1 / half_widths, eta = 2 p_lower - 1.
    """
    p_lower = _p_lower(p_lower)
    weights = inverse_scales("half_widths", half_widths, power=1)
    abstain = p_lower <= 0.5
    eta = np.where(abstain, 0.0, 2.0 * p_lower - 1.0)
    abstain |= eta <= 0  # p_lower a hair above 1/2: eta underflows, nothing to certify
    return make_base_certificates(prediction, abstain, eta, group, weights[None], "l1")


def laplace_l1(prediction, p_lower, group, scales) -> BaseCertificates:
    """Anisotropic Laplace-noise l1 base certificates (Teng et al. 2020, rescaled; docs/math.md §5).

    Noise Laplace(x_d, lam_d) with `lam = scales[k, j]` on region j for group k. Guarantee:
    prediction kept for every x' with `sum_j ||x'_j - x_j||_1 / lam[k, j] < -log(2 (1 - p_lower))`.

    Args:
      prediction, p_lower, group: as in `gaussian`.
      scales: float [K, M] > 0 (np.inf: masked region, weight 0).
    Returns:
      BaseCertificates with norm "l1", weights [1, K, M] = 1 / scales.
    """
    p_lower = _p_lower(p_lower)
    weights = inverse_scales("scales", scales, power=1)
    abstain = p_lower <= 0.5
    eta = np.where(abstain, 0.0, -np.log(2.0 * (1.0 - np.where(abstain, 0.75, p_lower))))
    abstain |= eta <= 0  # p_lower a hair above 1/2: eta underflows, nothing to certify
    return make_base_certificates(prediction, abstain, eta, group, weights[None], "l1")


def _p_lower(p_lower, ndim: int | None = 1) -> np.ndarray:
    arr = _checks.as_float_array("p_lower", p_lower, ndim=ndim)
    if np.any((arr < 0) | (arr >= 1)):
        _checks.fail(
            "p_lower",
            arr,
            "must lie in [0, 1)",
            "Pass Clopper-Pearson lower bounds; a finite sample never proves probability 1.",
        )
    return arr


def inverse_scales(name: str, scales, power: int) -> np.ndarray:
    """Weights `1 / scales**power` for noise scales `[K, M]` > 0; `np.inf` (masked) -> weight 0.

    Raises a ValueError naming `name` for NaN or non-positive scales.
    """
    arr = _checks.as_float_array(name, scales, ndim=2, finite=False)
    if np.any(np.isnan(arr)) or np.any(arr <= 0):
        _checks.fail(
            name, arr, "must be > 0 (np.inf marks a masked region)", "Pass positive noise scales."
        )
    return np.where(np.isinf(arr), 0.0, 1.0 / arr**power)
