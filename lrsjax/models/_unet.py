"""A small flax U-Net for semantic segmentation and its per-image apply function.

The certification kernels (lrsjax.certify) see a segmentation model as
`apply_fn(params, x) -> logits` with `x` ONE image [C, H, W] in [0, 1] (noise already added) and
logits [H, W, num_classes]; they vmap over samples themselves. `segmentation_apply_fn` turns a
`UNet` (or any linen module mapping NHWC images to NHWC logits) into that contract.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks
from lrsjax._keys import seed_sequence

UPSAMPLING = ("transpose", "resize")


class _Block(nn.Module):
    """Two 3x3 conv - GroupNorm - ReLU layers."""

    width: int
    num_groups: int

    @nn.compact
    def __call__(self, x):
        groups = math.gcd(self.num_groups, self.width)
        for _ in range(2):
            x = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False)(x)
            x = nn.GroupNorm(num_groups=groups)(x)
            x = nn.relu(x)
        return x


class UNet(nn.Module):
    """U-Net: `depth` down levels (block + 2x2 max-pool), a bottleneck, `depth` up levels.

    Level `l` has `base_width * 2**l` channels; up levels use a 2x2 transposed conv
    (`upsample="transpose"`) or bilinear resize + 1x1 conv (`"resize"`), concatenate the skip
    connection and apply a block. Inputs whose height or width is not divisible by `2**depth`
    are zero-padded at the bottom/right (after normalisation) and the logits are cropped back.

    The input is NHWC in [0, 1] pixel units (noise is added before the model); the model
    normalises it itself as `(x - input_mean) / input_std` (scalars or one value per channel).

    Attributes:
      num_classes: number of output classes (logits per pixel).
      depth: number of down/up levels (0 = a single block).
      base_width: channels of the first level.
      num_groups: GroupNorm groups (reduced to gcd(num_groups, width) where needed).
      upsample: "transpose" or "resize".
      input_mean, input_std: normalisation applied inside the model.

    __call__: x float [B, H, W, C] -> logits float32 [B, H, W, num_classes].
    """

    num_classes: int
    depth: int = 3
    base_width: int = 16
    num_groups: int = 8
    upsample: str = "transpose"
    input_mean: float | tuple = 0.5
    input_std: float | tuple = 0.25

    def __post_init__(self):
        _checks.positive_int("num_classes", self.num_classes, minimum=2)
        _checks.positive_int("depth", self.depth, minimum=0)
        if self.depth > 8:
            _checks.fail("depth", self.depth, "must be <= 8", "Use a shallower U-Net.")
        _checks.positive_int("base_width", self.base_width)
        _checks.positive_int("num_groups", self.num_groups)
        _checks.one_of("upsample", self.upsample, UPSAMPLING)
        for name in ("input_mean", "input_std"):
            value = getattr(self, name)
            items = value if isinstance(value, tuple) else (value,)
            if not items or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
                for v in items
            ):
                _checks.fail(name, value, "must be a finite number or a tuple of them")
            if name == "input_std" and any(v <= 0 for v in items):
                _checks.fail(name, value, "must be positive")
        super().__post_init__()

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            _checks.fail("x", f"an array of shape {x.shape}", "must be a batch [B, H, W, C] (NHWC)")
        batch, height, width, _ = x.shape
        mean = jnp.asarray(self.input_mean, jnp.float32)
        std = jnp.asarray(self.input_std, jnp.float32)
        x = (x.astype(jnp.float32) - mean) / std
        multiple = 2**self.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        skips = []
        for level in range(self.depth):
            x = _Block(self.base_width * 2**level, self.num_groups)(x)
            skips.append(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = _Block(self.base_width * 2**self.depth, self.num_groups)(x)
        for level in reversed(range(self.depth)):
            features = self.base_width * 2**level
            if self.upsample == "transpose":
                x = nn.ConvTranspose(features, (2, 2), strides=(2, 2))(x)
            else:
                b, h, w, c = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")
                x = nn.Conv(features, (1, 1))(x)
            x = jnp.concatenate([skips[level], x], axis=-1)
            x = _Block(features, self.num_groups)(x)
        logits = nn.Conv(self.num_classes, (1, 1))(x)
        return logits[:, :height, :width, :]


def model_config(model: nn.Module) -> dict:
    """The constructor arguments of a linen module as a JSON-ready dict (tuples -> lists)."""
    config = {}
    for field in dataclasses.fields(model):
        if field.name in ("parent", "name"):
            continue
        value = getattr(model, field.name)
        config[field.name] = list(value) if isinstance(value, tuple) else value
    return config


def unet_from_config(config: dict) -> UNet:
    """Rebuilds a `UNet` from `model_config(model)` (lists -> tuples)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    try:
        return UNet(**kwargs)
    except TypeError as error:
        raise ValueError(
            f"`config` {config!r} does not describe a UNet ({error}). "
            "Pass the dict written by save_segmentation_model."
        ) from None


def init_segmentation_params(key, model: nn.Module, input_shape=(3, 64, 64)):
    """Fresh variables of `model` for images of `input_shape` (C, H, W); the `params` of apply_fn.

    The structure comes from `model.init` traced abstractly (`jax.eval_shape`, nothing compiled);
    the values are drawn on the host from a numpy generator seeded by `key`: every `kernel`
    He-normal (std sqrt(2 / fan_in), fan_in = product of all but the last axis), every `bias` 0,
    every `scale` 1. This avoids compiling one random draw per layer (seconds each on a CPU).
    Deterministic for `key`.
    """
    shape = tuple(input_shape)
    if len(shape) != 3:
        _checks.fail("input_shape", input_shape, "must be (C, H, W)", "E.g. (3, 64, 64).")
    channels, height, width = (_checks.positive_int("input_shape", v) for v in shape)
    dummy = jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32)
    structure = jax.eval_shape(model.init, key, dummy)
    rng = np.random.default_rng(seed_sequence(key))

    def draw(path, leaf):
        name = getattr(path[-1], "key", None)
        if name == "kernel":
            fan_in = math.prod(leaf.shape[:-1])
            value = rng.standard_normal(leaf.shape) * math.sqrt(2.0 / max(fan_in, 1))
        elif name == "bias":
            value = np.zeros(leaf.shape)
        elif name == "scale":
            value = np.ones(leaf.shape)
        else:
            raise ValueError(
                f"`model` has a parameter {jax.tree_util.keystr(path)} that is not a kernel, "
                "bias or scale; initialise it with model.init instead."
            )
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, structure)


def segmentation_apply_fn(model: nn.Module) -> Callable:
    """The per-image apply function of a segmentation model (the contract of lrsjax.certify).

    Args:
      model: a linen module mapping images [B, H, W, C] to logits [B, H, W, num_classes].
    Returns:
      apply_fn(params, x) with x one image float [C, H, W] in [0, 1] and params the variables of
      `model` (e.g. from `init_segmentation_params`); returns logits float32 [H, W, num_classes].
      Pure and jit/vmap friendly. Equal models get the same function object, so jitted callers
      reuse their compilations.
    """
    if not isinstance(model, nn.Module):
        _checks.fail("model", type(model).__name__, "must be a flax linen Module", "E.g. UNet(5).")
    return _apply_fn(model)


@functools.lru_cache(maxsize=32)
def _apply_fn(model: nn.Module) -> Callable:
    def apply_fn(params, x):
        if x.ndim != 3:
            _checks.fail(  # the shape only: `x` may be a tracer
                "x", f"an array of shape {x.shape}", "must be one image [C, H, W]",
                "vmap apply_fn over a batch.",
            )  # fmt: skip
        return model.apply(params, jnp.transpose(x, (1, 2, 0))[None])[0]

    return apply_fn
