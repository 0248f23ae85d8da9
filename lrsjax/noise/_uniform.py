"""Uniform noise on images (l1 threat model), isotropic or localized on a grid.

Every pixel of region `j` gets i.i.d. noise uniform on `[-lam, lam]`, `lam = half_widths[k, j]`,
while group `k` is smoothed (std `lam / sqrt(3)`). The total variation between the noise at `x`
and at `x'` is at most `sum_d |x'_d - x_d| / (2 lam_d)`, which certifies
`sum_j ||x'_j - x_j||_1 / lam[k, j] < 2 p_lower - 1` (Yang et al., 2020, binary form;
`docs/math.md`, "Base certificates").
"""

from __future__ import annotations

import jax

from lrsjax import base_certs
from lrsjax.noise import _additive, _grid
from lrsjax.noise._plugin import Noise, NoiseCertificate


def localized_uniform(
    image_shape,
    grid_shape,
    half_width_min,
    half_width_max,
    *,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> Noise:
    """Localized uniform smoothing on an `I x J` grid: half-widths interpolated like
    `localized_stds(grid_shape, half_width_min, half_width_max, ...)` (in [0, 1] pixel units).

    Returns a `Noise` of kind "uniform" with `parameters = {"half_widths": [K, K]}` (l1).
    """
    return _additive.grid_noise(
        "uniform", image_shape, grid_shape, half_width_min, half_width_max, name="half_widths",
        prepare=prepare, certificates=CERTIFICATES, interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary, mask_distance=mask_distance,
    )  # fmt: skip


def isotropic_uniform(image_shape, half_width) -> Noise:
    """Isotropic uniform smoothing on `[-half_width, half_width]` per pixel (a 1x1 grid)."""
    half_width = _grid._positive_std("half_width", half_width)
    return localized_uniform(image_shape, (1, 1), half_width, half_width)


def standard_uniform(key, shape, dtype):
    """Draws uniform on [-1, 1)."""
    return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)


def prepare(noise: Noise, x, **_):
    """Binds an image `[C, H, W]` in [0, 1] (see `_additive.prepare_image`)."""
    return _additive.prepare_image(noise, x, name="half_widths", draw=standard_uniform)


def _probability(noise: Noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    widths = _additive.sampled_scales(noise.parameters["half_widths"])
    certs = base_certs.uniform_l1(prediction, estimate.p_lower, noise.group.reshape(-1), widths)
    return NoiseCertificate(
        certs.abstain, certs, radius=_additive.naive_radius(certs, 1.0), method="uniform_l1"
    )


CERTIFICATES = {"probability": _probability}
