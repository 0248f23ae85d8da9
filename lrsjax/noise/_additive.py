"""Additive noise on images, `x + scale * e`, shared by the Gaussian, Laplace and uniform noises.

A noise of this family is fixed by a standard draw `e` (a module-level function `draw(key, shape,
dtype)`, e.g. standard normals) and per-(group, region) scales `[K, M]`; `np.inf` marks a masked
region, whose input is replaced by 0 after noise (the certificate gives it weight 0). One draw of
`e` per batch serves every group: each group's samples stay i.i.d. from its own distribution, and
the corrections across outputs hold under any dependence between groups.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks
from lrsjax.noise import _grid
from lrsjax.noise._plugin import Noise, Prepared


def sampled_scales(scales) -> np.ndarray:
    """The scales the kernel samples with, as exact float64 values `[K, M]`.

    The kernel scales float32 draws by float32 scales; rounding a float64 scale to float32 moves it
    by up to a relative 2**-24, up or down. Certificates use these values (exact in float64), so
    they describe the noise actually sampled. `inf` (masked) stays `inf`.
    """
    return np.asarray(np.asarray(scales, np.float64).astype(np.float32), np.float64)


def grid_noise(kind, image_shape, grid_shape, low, high, *, name, prepare, certificates, **grid):
    """A `Noise` of this family on an `I x J` grid: groups = regions = cells, scales from
    `lrsjax.noise.localized_stds(grid_shape, low, high, **grid)` stored as `parameters[name]`."""
    cells = _grid.grid_cells(image_shape, grid_shape)
    scales = _grid.localized_stds(grid_shape, low, high, **grid)
    return Noise(
        kind=kind,
        group=cells.cell_id,
        region=cells.cell_id,
        parameters={name: scales},
        prepare=prepare,
        certificates=certificates,
        default_estimate="probability",
    )


def check_scales(name: str, scales) -> np.ndarray:
    """Scales `[K, M]` > 0 (inf = masked), with at least one visible region per group."""
    arr = _checks.as_float_array(name, scales, ndim=2, finite=False)
    if np.any(np.isnan(arr)) or np.any(arr <= 0):
        _checks.fail(name, arr, "must be > 0 and not NaN (inf = masked)", "Fix the scales.")
    if np.any(np.all(np.isinf(arr), axis=1)):
        _checks.fail(name, arr, "must leave every group some region", "")
    return arr


def prepare_image(noise: Noise, x, *, name: str, draw) -> Prepared:
    """Binds a clean image `[C, H, W]` (float, finite, in [0, 1]) to the kernel.

    Warns when the image leaves [0, 1]: the scales are in [0, 1] pixel units, so e.g. a uint8
    image in 0..255 would get certified radii 255 times too large.
    """
    scales = check_scales(f"smoothing.{name}", noise.parameters[name])
    image = check_image(x, tuple(noise.region.shape))
    return Prepared(
        x=image,
        config=draw,
        per_group=jnp.asarray(sampled_scales(scales), jnp.float32),
        common=jnp.asarray(noise.region, jnp.int32),
        sample=sample,
        draw=draw_batch,
        apply=apply,
        example=jax.ShapeDtypeStruct(image.shape, jnp.float32),
        input_size=int(image.size),
        bytes_per_element=8,  # the shared draw and one group's noisy input
        overflow_message=None,
    )


def check_image(x, region_shape: tuple):
    """Validates an image `[C, H, W]` with `(H, W) = region_shape`; returns it as float32."""
    from lrsjax._sparse import SparseBinary

    if isinstance(x, SparseBinary):
        _checks.fail("x", "a SparseBinary", "must be a dense image for this smoothing", "")
    arr = _checks.as_float_array("x", x)
    if arr.ndim != 3 or arr.shape[1:] != region_shape:
        _checks.fail(
            "x",
            arr,
            f"must be an image [C, H, W] with (H, W) = {region_shape} (the smoothing's image size)",
            "Build the smoothing for this image size.",
        )
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        warnings.warn(
            f"`x` has values in [{low:g}, {high:g}], but the noise levels of the smoothing (and "
            "hence the certified radii) are in [0, 1] pixel units. Scale the image to [0, 1] "
            "before certifying (e.g. x / 255 for uint8 images) and apply any normalization "
            "inside apply_fn.",
            UserWarning,
            stacklevel=5,
        )
    return jnp.asarray(arr, jnp.float32)


def perturb(x, scale_map, draws):
    """`x + scale_map * draws`, with masked pixels (`scale_map = inf`) replaced by 0.

    Args:
      x: float [..., C, H, W] clean image(s) in pixel units.
      scale_map: float [H, W] per-pixel scale (the same for every channel).
      draws: float [..., C, H, W] standard draws (may be shared by several groups).
    """
    masked = jnp.isinf(scale_map)
    finite = jnp.where(masked, 0.0, scale_map).astype(draws.dtype)
    return jnp.where(masked, jnp.zeros((), draws.dtype), x + finite * draws)


def draw_batch(draw, key, x, batch_size):
    """Standard draws for a batch `[B, C, H, W]`, one key for the whole batch."""
    return draw(key, (batch_size, *x.shape), x.dtype)


def apply(draw, draws, x, scales_k, region):
    """Noisy batch of group `k`: `x + scales_k[region] * draws`."""
    return perturb(x, scales_k[region], draws)


def sample(draw, key, x, scales_k, region):
    """One noisy example of group `k` from its own key; never overflows."""
    return perturb(x, scales_k[region], draw(key, x.shape, x.dtype)), jnp.zeros((), bool)


def naive_radius(certs, power: float) -> np.ndarray:
    """`(eta / max_j W[0, group, j]) ** power`, the radius of the output alone; 0 where abstained.

    `power` is 1/2 for l2 certificates (budget = squared norm) and 1 for l1.
    """
    worst = certs.weights[0].max(axis=1)[certs.group]
    safe = np.where(certs.abstain, 1.0, worst)
    return np.where(certs.abstain, 0.0, (certs.eta / safe) ** power)
