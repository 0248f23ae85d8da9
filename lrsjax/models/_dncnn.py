"""A small flax DnCNN denoiser and the composition `classifier(denoiser(x))` for certification.

Denoised smoothing (Salman et al., 2020; `docs/math.md`, "Denoised smoothing") puts a denoiser
`D` in front of a frozen base model `F` and smooths `f = argmax F(D(.))`. The noise is added
before `D`, so the certificate is the base model's own: Cohen et al.'s Theorem 1 holds for any
deterministic base classifier, and `compose` only changes which function the sampler calls.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrsjax import _checks
from lrsjax.models._unet import init_segmentation_params, model_config

NORMS = (None, "group")
RESIDUALS = ("subtract", "add")
_OUTPUT = "output"  # the name of the zero-initialised last conv


class DnCNN(nn.Module):
    """A DnCNN-style residual denoiser (Zhang et al., 2017) that starts as the identity.

    conv3x3 + ReLU, then `depth - 2` blocks conv3x3 (no bias) + norm + ReLU, then a conv3x3 to
    `channels` channels giving the residual `r`; the output is `x - r` (`residual="subtract"`,
    the network predicts the noise) or `x + r` (`"add"`). The last conv is zero-initialised
    (kernel and bias), so a fresh denoiser returns its input exactly. GroupNorm or no norm, never
    BatchNorm: a smoothed model's votes must not depend on the other samples of a batch.

    The input and output are NHWC in [0, 1] pixel units (noise already added); any normalisation
    belongs to the classifier behind it.

    Attributes:
      channels: image channels C (input and output).
      depth: weight layers (>= 2).
      features: channels of the hidden layers.
      norm: None or "group" (GroupNorm with gcd(num_groups, features) groups).
      num_groups: GroupNorm groups.
      residual: "subtract" (x - net(x)) or "add" (x + net(x)).

    __call__: x float [B, H, W, channels] -> float32 [B, H, W, channels].
    """

    channels: int = 3
    depth: int = 8
    features: int = 32
    norm: str | None = None
    num_groups: int = 8
    residual: str = "subtract"

    def __post_init__(self):
        _checks.positive_int("channels", self.channels)
        _checks.positive_int("depth", self.depth, minimum=2)
        _checks.positive_int("features", self.features)
        _checks.positive_int("num_groups", self.num_groups)
        if self.norm not in NORMS:
            _checks.fail("norm", self.norm, f"must be one of {NORMS}", 'Use None or "group".')
        if self.residual not in RESIDUALS:
            _checks.fail("residual", self.residual, f"must be one of {RESIDUALS}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.channels:
            _checks.fail(
                "x",
                f"shape {tuple(x.shape)}",
                f"must be a batch [B, H, W, {self.channels}] (NHWC, `channels` last)",
                "Transpose channels-first images, or build DnCNN with their number of channels.",
            )
        x = x.astype(jnp.float32)
        h = nn.relu(nn.Conv(self.features, (3, 3), padding="SAME")(x))
        for _ in range(self.depth - 2):
            h = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(h)
            if self.norm == "group":
                h = nn.GroupNorm(num_groups=math.gcd(self.num_groups, self.features))(h)
            h = nn.relu(h)
        r = nn.Conv(
            self.channels,
            (3, 3),
            padding="SAME",
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            name=_OUTPUT,
        )(h)
        return x - r if self.residual == "subtract" else x + r


def dncnn_config(model: DnCNN) -> dict:
    """The constructor arguments of a `DnCNN` as a JSON-ready dict."""
    if not isinstance(model, DnCNN):
        _checks.fail("model", type(model).__name__, "must be a DnCNN")
    return model_config(model)


def dncnn_from_config(config: dict) -> DnCNN:
    """Rebuilds a `DnCNN` from `dncnn_config(model)`."""
    if not isinstance(config, dict):
        _checks.fail("config", config, "must be a dict", "Pass the dict of dncnn_config.")
    try:
        return DnCNN(**config)
    except TypeError as error:
        raise ValueError(
            f"`config` {config!r} does not describe a DnCNN ({error}). "
            "Pass the dict written by dncnn_config (or save_denoiser)."
        ) from None


def init_denoiser_params(key, model: DnCNN, input_shape=(3, 32, 32)):
    """Fresh variables of a `DnCNN` for images of `input_shape` (C, H, W): the identity denoiser.

    Hidden kernels He-normal, biases 0, scales 1, drawn on the host from `key` (as
    `init_segmentation_params`); the last conv's kernel and bias are zero, so
    `denoiser_apply_fn(model)(params, z) == z` exactly for every `z`. Deterministic for `key`.
    """
    if not isinstance(model, DnCNN):
        _checks.fail("model", type(model).__name__, "must be a DnCNN", "E.g. DnCNN(channels=3).")
    if len(tuple(input_shape)) == 3 and int(tuple(input_shape)[0]) != model.channels:
        _checks.fail(
            "input_shape",
            input_shape,
            f"must have model.channels ({model.channels}) channels first",
            "Build the DnCNN with the images' number of channels.",
        )
    params = init_segmentation_params(key, model, input_shape)
    params["params"][_OUTPUT] = jax.tree.map(jnp.zeros_like, params["params"][_OUTPUT])
    return params


def denoiser_apply_fn(model: nn.Module) -> Callable:
    """The per-image apply function of a denoiser.

    Args:
      model: a linen module mapping images [B, H, W, C] to images [B, H, W, C] (e.g. `DnCNN`).
    Returns:
      apply_fn(params, x) with x ONE image float [C, H, W] in [0, 1]; returns the denoised image
      float32 [C, H, W]. Pure and jit/vmap friendly; equal models get the same function object.
    """
    if not isinstance(model, nn.Module):
        _checks.fail("model", type(model).__name__, "must be a flax linen Module", "E.g. DnCNN().")
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
        out = model.apply(params, jnp.transpose(x, (1, 2, 0))[None])[0]
        return jnp.transpose(out, (2, 0, 1))

    return apply_fn


@dataclasses.dataclass(frozen=True)
class _Composed:
    """`classifier_apply(params[1], denoiser_apply(params[0], x))`. Compares and hashes by the two
    functions, so equal compositions reuse one compiled sampling kernel."""

    denoiser_apply: Callable
    classifier_apply: Callable

    def __call__(self, params, x):
        if not isinstance(params, tuple | list) or len(params) != 2:
            _checks.fail(
                "params",
                type(params).__name__,
                "must be the pair (denoiser_params, classifier_params)",
                "Pass (denoiser_params, classifier_params).",
            )
        denoiser_params, classifier_params = params
        return self.classifier_apply(classifier_params, self.denoiser_apply(denoiser_params, x))


def compose(denoiser_apply: Callable, classifier_apply: Callable) -> Callable:
    """The base model of denoised smoothing: `classifier(denoiser(x))` (Salman et al., 2020).

    Args:
      denoiser_apply: denoiser_apply(denoiser_params, x [C, H, W]) -> [C, H, W] (e.g.
        `denoiser_apply_fn(DnCNN(...))`), deterministic.
      classifier_apply: classifier_apply(classifier_params, x [C, H, W]) -> logits, e.g.
        [num_classes] (`classifier_apply_fn`, for `lrsjax.certify_classifier`) or
        [H, W, num_classes] (`segmentation_apply_fn`, for `lrsjax.certify`).
    Returns:
      apply_fn(params, x) with `params = (denoiser_params, classifier_params)`, returning the
      classifier's logits on the denoised `x`. The certifiers add the noise to `x` before calling
      it, so they certify `classifier(denoiser(x + noise))` with unchanged statistics (Cohen et
      al., 2019, Theorem 1 holds for any deterministic base model). Equal arguments give equal
      (hash-equal) functions.
    """
    for name, fn in (("denoiser_apply", denoiser_apply), ("classifier_apply", classifier_apply)):
        if not callable(fn):
            _checks.fail(name, fn, "must be callable", "Pass `apply_fn(params, x)`.")
    return _Composed(denoiser_apply, classifier_apply)
