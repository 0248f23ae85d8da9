"""Laplace noise on images (l1 threat model), isotropic or localized on a grid.

Every pixel of region `j` gets i.i.d. Laplace noise of scale `lam = scales[k, j]` while group `k`
is smoothed (density `exp(-|z| / lam) / (2 lam)`, std `lam * sqrt(2)`). The likelihood ratio of
the noise at `x` and at `x'` lies within `exp(+-sum_d |x'_d - x_d| / lam_d)`, which certifies
`sum_j ||x'_j - x_j||_1 / lam[k, j] < -log(2 (1 - p_lower))` (Teng et al., 2020, binary form;
`docs/math.md`, "Base certificates").
"""

from __future__ import annotations

import jax

from lrsjax import base_certs
from lrsjax.noise import _additive, _grid
from lrsjax.noise._plugin import Noise, NoiseCertificate


def localized_laplace(
    image_shape,
    grid_shape,
    scale_min,
    scale_max,
    *,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> Noise:
    """Localized Laplace smoothing on an `I x J` grid: scales interpolated like
    `localized_stds(grid_shape, scale_min, scale_max, ...)` (in [0, 1] pixel units).

    Returns a `Noise` of kind "laplace" with `parameters = {"scales": [K, K]}` (l1 certificates).
    """
    return _additive.grid_noise(
        "laplace", image_shape, grid_shape, scale_min, scale_max, name="scales",
        prepare=prepare, certificates=CERTIFICATES, interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary, mask_distance=mask_distance,
    )  # fmt: skip


def isotropic_laplace(image_shape, scale) -> Noise:
    """Isotropic Laplace smoothing of scale `scale` on every pixel (a 1x1 grid)."""
    scale = _grid._positive_std("scale", scale)
    return localized_laplace(image_shape, (1, 1), scale, scale)


def standard_laplace(key, shape, dtype):
    """Standard Laplace draws (scale 1)."""
    return jax.random.laplace(key, shape, dtype)


def prepare(noise: Noise, x, **_):
    """Binds an image `[C, H, W]` in [0, 1] (see `_additive.prepare_image`)."""
    return _additive.prepare_image(noise, x, name="scales", draw=standard_laplace)


def _probability(noise: Noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    scales = _additive.sampled_scales(noise.parameters["scales"])
    certs = base_certs.laplace_l1(prediction, estimate.p_lower, noise.group.reshape(-1), scales)
    return NoiseCertificate(
        certs.abstain, certs, radius=_additive.naive_radius(certs, 1.0), method="laplace_l1"
    )


CERTIFICATES = {"probability": _probability}
