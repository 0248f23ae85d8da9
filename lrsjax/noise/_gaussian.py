"""Gaussian noise on images (l2 threat model): localized grids and isotropic smoothing.

Certificates (`docs/math.md`, "Base certificates"): from a Clopper-Pearson bound `p_lower` on the
predicted class, the anisotropic Gaussian certificate `sum_j ||x'_j - x_j||^2 / S[k, j]^2 <
Phi^{-1}(p_lower)^2` (Cohen et al., 2019, Theorem 1, after rescaling every pixel by its std); from
DKW bounds on the mean and second moment of the class score, the variance-constrained certificate
with the same weights `1 / S^2` (Schuchardt et al., 2023).
"""

from __future__ import annotations

from lrsjax import base_certs
from lrsjax.noise import _additive, _grid, _samplers
from lrsjax.noise._plugin import Noise, NoiseCertificate


def localized_gaussian(
    image_shape,
    grid_shape,
    std_min,
    std_max,
    *,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> Noise:
    """Localized Gaussian smoothing of images on an `I x J` grid (Schuchardt et al., 2023).

    Groups = regions = grid cells; `stds` from `localized_stds` (see there for the options).
    `grid_shape=(1, 1)` is isotropic smoothing with standard deviation `std_min`.

    Args:
      image_shape: `(H, W)` or `(C, H, W)`.
      grid_shape: `(I, J)`, at most the image size.
      std_min, std_max: `0 < std_min <= std_max`, in [0, 1] pixel units (before normalization).
      interpolate, max_std_at_boundary, mask_distance: see `localized_stds`.
    Returns:
      A `Noise` of kind "gaussian" with `group = region = cell_id [H, W]` and `parameters =
      {"stds": S [K, K]}`.
    """
    return _additive.grid_noise(
        "gaussian", image_shape, grid_shape, std_min, std_max, name="stds", prepare=prepare,
        certificates=CERTIFICATES, interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary, mask_distance=mask_distance,
    )  # fmt: skip


def isotropic_gaussian(image_shape, sigma) -> Noise:
    """Isotropic Gaussian smoothing with standard deviation `sigma` (a 1x1 grid)."""
    sigma = _grid._positive_std("sigma", sigma)
    return localized_gaussian(image_shape, (1, 1), sigma, sigma)


def prepare(noise: Noise, x, **_):
    """Binds an image `[C, H, W]` in [0, 1] (see `_additive.prepare_image`)."""
    return _additive.prepare_image(noise, x, name="stds", draw=_samplers.standard_normal)


def _probability(noise: Noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    stds = _additive.sampled_scales(noise.parameters["stds"])
    certs = base_certs.gaussian(prediction, estimate.p_lower, noise.group.reshape(-1), stds)
    return NoiseCertificate(
        certs.abstain, certs, radius=_additive.naive_radius(certs, 0.5), method="gaussian"
    )


def _moments(noise: Noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    stds = _additive.sampled_scales(noise.parameters["stds"])
    weights = base_certs.inverse_scales("stds", stds, power=2)[None]
    certs = base_certs.variance_constrained(
        prediction, estimate.mu_lower, estimate.zeta_upper, noise.group.reshape(-1), weights,
        norm="l2",
    )  # fmt: skip
    return NoiseCertificate(
        certs.abstain, certs, radius=_additive.naive_radius(certs, 0.5), method="gaussian"
    )


CERTIFICATES = {"probability": _probability, "moments": _moments}
