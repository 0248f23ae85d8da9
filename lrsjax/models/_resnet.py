"""A small flax ResNet for image classification and its per-input apply function.

The classifier certification (lrsjax.certify_classifier) sees a model as
`apply_fn(params, x) -> logits [num_classes]` with `x` ONE image [C, H, W] in [0, 1] (noise
already added); it vmaps over samples itself. `classifier_apply_fn` turns a `ResNet` (or any
linen module mapping NHWC images to [B, num_classes] logits) into that contract.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from lrsjax import _checks
from lrsjax.models._unet import init_segmentation_params, model_config


class _ResidualBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016): two GroupNorm - ReLU - 3x3 conv layers.

    The shortcut is a strided 1x1 conv when the width or the resolution changes.
    """

    width: int
    stride: int
    num_groups: int

    @nn.compact
    def __call__(self, x):
        groups_in = math.gcd(self.num_groups, x.shape[-1])
        groups_out = math.gcd(self.num_groups, self.width)
        h = nn.relu(nn.GroupNorm(num_groups=groups_in)(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.width:
            shortcut = nn.Conv(self.width, (1, 1), strides=self.stride, use_bias=False)(h)
        h = nn.Conv(self.width, (3, 3), strides=self.stride, padding="SAME", use_bias=False)(h)
        h = nn.relu(nn.GroupNorm(num_groups=groups_out)(h))
        h = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False)(h)
        return shortcut + h


class ResNet(nn.Module):
    """A pre-activation ResNet for small images (32x32 CIFAR-style).

    A 3x3 stem conv with `width` channels, then `num_stages` stages of `blocks_per_stage` residual
    blocks; stage `s` has `width * 2**s` channels and halves the resolution (stride 2) for
    `s >= 1`; then GroupNorm - ReLU, global average pooling and a dense layer. GroupNorm instead
    of BatchNorm keeps `apply` a pure function of (params, x): a smoothed classifier's votes must
    not depend on the other inputs of a batch. Depth = 2 + 2 * num_stages * blocks_per_stage
    weight layers (the defaults: ResNet-8; `blocks_per_stage=3`: ResNet-20).

    The input is NHWC in [0, 1] pixel units (noise is added before the model); the model
    normalises it itself as `(x - input_mean) / input_std` (scalars or one value per channel).

    Attributes:
      num_classes: number of output classes.
      width: channels of the stem and the first stage.
      num_stages: number of stages (1 to 4).
      blocks_per_stage: residual blocks per stage.
      num_groups: GroupNorm groups (reduced to gcd(num_groups, channels) where needed).
      input_mean, input_std: normalisation applied inside the model.

    __call__: x float [B, H, W, C] -> logits float32 [B, num_classes].
    """

    num_classes: int
    width: int = 16
    num_stages: int = 3
    blocks_per_stage: int = 1
    num_groups: int = 8
    input_mean: float | tuple = 0.5
    input_std: float | tuple = 0.25

    def __post_init__(self):
        _checks.positive_int("num_classes", self.num_classes, minimum=2)
        _checks.positive_int("width", self.width)
        _checks.positive_int("num_stages", self.num_stages)
        if self.num_stages > 4:
            _checks.fail("num_stages", self.num_stages, "must be <= 4", "Use fewer stages.")
        _checks.positive_int("blocks_per_stage", self.blocks_per_stage)
        _checks.positive_int("num_groups", self.num_groups)
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
            _checks.fail("x", f"shape {tuple(x.shape)}", "must be a batch [B, H, W, C] (NHWC)")
        mean = jnp.asarray(self.input_mean, jnp.float32)
        std = jnp.asarray(self.input_std, jnp.float32)
        x = (x.astype(jnp.float32) - mean) / std
        x = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False)(x)
        for stage in range(self.num_stages):
            for block in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                x = _ResidualBlock(self.width * 2**stage, stride, self.num_groups)(x)
        x = nn.relu(nn.GroupNorm(num_groups=math.gcd(self.num_groups, x.shape[-1]))(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def resnet_config(model: ResNet) -> dict:
    """The constructor arguments of a `ResNet` as a JSON-ready dict (tuples -> lists)."""
    if not isinstance(model, ResNet):
        _checks.fail("model", type(model).__name__, "must be a ResNet")
    return model_config(model)


def resnet_from_config(config: dict) -> ResNet:
    """Rebuilds a `ResNet` from `resnet_config(model)` (lists -> tuples)."""
    if not isinstance(config, dict):
        _checks.fail("config", config, "must be a dict", "Pass the dict of resnet_config.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    try:
        return ResNet(**kwargs)
    except TypeError as error:
        raise ValueError(
            f"`config` {config!r} does not describe a ResNet ({error}). "
            "Pass the dict written by resnet_config (or save_classifier)."
        ) from None


def init_classifier_params(key, model: nn.Module, input_shape=(3, 32, 32)):
    """Fresh variables of `model` for images of `input_shape` (C, H, W); the `params` of apply_fn.

    Kernels He-normal, biases 0, scales 1, drawn on the host from `key` (see
    `init_segmentation_params`, which does the same for any module of kernels, biases and scales).
    Deterministic for `key`.
    """
    return init_segmentation_params(key, model, input_shape)


def classifier_apply_fn(model: nn.Module) -> Callable:
    """The per-input apply function of a classifier (the contract of lrsjax.certify_classifier).

    Args:
      model: a linen module mapping images [B, H, W, C] to logits [B, num_classes].
    Returns:
      apply_fn(params, x) with x ONE image float [C, H, W] in [0, 1]; returns logits float32
      [num_classes]. Pure and jit/vmap friendly. Equal models get the same function object, so
      jitted callers reuse their compilations.
    """
    if not isinstance(model, nn.Module):
        _checks.fail(
            "model", type(model).__name__, "must be a flax linen Module", "E.g. ResNet(10)."
        )
    return _apply_fn(model)


@functools.lru_cache(maxsize=32)
def _apply_fn(model: nn.Module) -> Callable:
    def apply_fn(params, x):
        if x.ndim != 3:
            _checks.fail(
                "x",
                f"shape {tuple(x.shape)}",
                "must be one image [C, H, W]",
                "vmap apply_fn over a batch.",
            )
        return model.apply(params, jnp.transpose(x, (1, 2, 0))[None])[0]

    return apply_fn
