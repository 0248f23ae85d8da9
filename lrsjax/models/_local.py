"""A strictly local segmentation model: a stack of (dilated) convolutions, no pooling, no norm.

Localized smoothing gains most when an output cannot see far inputs at all (Schuchardt et al.,
2023, "strictly local models"). A U-Net is only softly local: its pooling path and its
GroupNorm (statistics over the whole image) let every pixel's logits depend on every input.
`LocalCNN` has none of these: its logits at pixel (r, c) depend only on the inputs in the square
window of half-width `receptive_radius` around (r, c) (zero padding outside the image is a
constant, not an input). Use it with `lrsjax.noise.localized_gaussian(..., mask_distance=m)` so
the certificate gives weight 0 to the cells the model never sees.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax.numpy as jnp

from lrsjax import _checks


class LocalCNN(nn.Module):
    """Per-pixel classifier with a bounded receptive field.

    Layers: for each entry `d` of `dilations`, a `kernel_size x kernel_size` convolution with
    dilation `d`, `width` channels, "SAME" zero padding and a ReLU; then a 1x1 convolution to
    `num_classes` logits. Receptive field: a square of half-width
    `receptive_radius = (kernel_size // 2) * sum(dilations)` pixels.

    The input is NHWC in [0, 1] pixel units; it is normalised as `(x - input_mean) / input_std`
    before the first layer (a per-pixel map, so locality is kept).

    Attributes:
      num_classes: logits per pixel (>= 2).
      width: channels of every hidden layer.
      dilations: one dilation per hidden layer (the layer count is its length, >= 1).
      kernel_size: odd side of every hidden kernel.
      input_mean, input_std: normalisation scalars.

    __call__: x float [B, H, W, C] -> logits float32 [B, H, W, num_classes].
    """

    num_classes: int
    width: int = 16
    dilations: tuple = (1, 2, 4, 1)
    kernel_size: int = 3
    input_mean: float = 0.5
    input_std: float = 0.25

    def __post_init__(self):
        _checks.positive_int("num_classes", self.num_classes, minimum=2)
        _checks.positive_int("width", self.width)
        if not isinstance(self.dilations, tuple) or not self.dilations:
            _checks.fail(
                "dilations", self.dilations, "must be a non-empty tuple of positive ints",
                "E.g. dilations=(1, 2, 4, 1).",
            )  # fmt: skip
        for value in self.dilations:
            _checks.positive_int("dilations", value)
        _checks.positive_int("kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0:
            _checks.fail("kernel_size", self.kernel_size, "must be odd", "E.g. kernel_size=3.")
        for name in ("input_mean", "input_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                _checks.fail(name, value, "must be a finite number", "E.g. 0.5.")
            if not math.isfinite(value) or (name == "input_std" and value <= 0):
                _checks.fail(name, value, "must be finite (input_std positive)", "E.g. 0.25.")
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """Half-width in pixels of the window the logits of one pixel depend on."""
        return (self.kernel_size // 2) * sum(self.dilations)

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            _checks.fail("x", f"an array of shape {x.shape}", "must be a batch [B, H, W, C] (NHWC)")
        x = (x.astype(jnp.float32) - self.input_mean) / self.input_std
        size = (self.kernel_size, self.kernel_size)
        for dilation in self.dilations:
            x = nn.Conv(self.width, size, padding="SAME", kernel_dilation=dilation)(x)
            x = nn.relu(x)
        return nn.Conv(self.num_classes, (1, 1))(x)
