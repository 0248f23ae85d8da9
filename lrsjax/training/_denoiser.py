"""Training a denoiser in front of a frozen classifier (denoised smoothing), and its checkpoints.

Salman et al. (2020) train a denoiser `D` so that a classifier `F` trained on clean images works
under the smoothing noise; `docs/math.md`, "Denoised smoothing". The noise is drawn exactly like
the certificate's samples, from the noise plug-in's per-example sampler (as `train_classifier`
does). Only the denoiser's parameters are optimised: the classifier's parameters are a constant
of the loss (gradients flow through `F` into `D`, never into `F`'s parameters).

Losses (means over the batch; `delta` the noise, `x` the clean image):
  "mse":            mean over pixels of (D(x + delta) - x)^2 (no classifier needed);
  "stability":      CE(F(D(x + delta)), argmax F(x)): the classifier's own clean predictions;
  "classification": CE(F(D(x + delta)), y) with the true labels.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrsjax import _checks, _progress
from lrsjax._keys import check_key, seed_sequence
from lrsjax.data import ClassificationData, check_classification_data
from lrsjax.models import DnCNN, dncnn_config, dncnn_from_config, init_denoiser_params
from lrsjax.noise import Noise
from lrsjax.training._checkpoint import ImageModelFormat, load_image_model, save_image_model
from lrsjax.training._classification import _noisy, _sampler
from lrsjax.training._schedule import LossLog, check_schedule
from lrsjax.training._segmentation import _batch_order

_LOG = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "lrsjax.denoiser_model/1"
DENOISER_LOSSES = ("mse", "stability", "classification")


def denoising_mse(denoised, clean):
    """Mean over all elements of (denoised - clean)^2 (the "mse" loss), float32 scalar."""
    diff = jnp.asarray(denoised, jnp.float32) - jnp.asarray(clean, jnp.float32)
    return jnp.mean(diff**2)


def stability_cross_entropy(logits, clean_logits):
    """Mean cross-entropy of `logits` against the argmax of `clean_logits` (the "stability" loss).

    Args:
      logits: float [..., num_classes], the classifier on the denoised noisy input.
      clean_logits: float [..., num_classes], the classifier on the clean input; only its argmax
        is used, and no gradient flows through it.
    Returns:
      float32 scalar, the mean over all leading axes (batch, and pixels for segmentation).
    """
    targets = jnp.argmax(jax.lax.stop_gradient(clean_logits), axis=-1)
    losses = optax.softmax_cross_entropy_with_integer_labels(
        jnp.asarray(logits, jnp.float32), targets
    )
    return jnp.mean(losses)


class DenoiserTrainHistory(NamedTuple):
    """What happened during `train_denoiser`.

    Fields:
      steps: int64 [L], the step count at each log point.
      loss: float64 [L], mean training loss over the steps since the previous log point.
      seconds: float64 [L], wall-clock seconds since training began (compilation included).
    """

    steps: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray


def _check_classifier_output(classifier_apply, classifier_params, data, loss: str) -> None:
    """Checks (with `jax.eval_shape`, before training) the logits' shape for `loss`."""
    example = jax.ShapeDtypeStruct(data.image_shape, jnp.float32)
    shape = tuple(jax.eval_shape(classifier_apply, classifier_params, example).shape)
    if loss == "classification" and shape != (data.num_classes,):
        _checks.fail(
            "classifier_apply",
            f"a function returning logits of shape {shape}",
            f"must return [num_classes] = ({data.num_classes},) for loss='classification'",
            "Use a classifier of the data's classes, or loss='stability' (no labels).",
        )
    if len(shape) < 1 or shape[-1] < 2:
        _checks.fail(
            "classifier_apply",
            f"a function returning logits of shape {shape}",
            "must return logits [..., num_classes] with num_classes >= 2",
        )


@functools.lru_cache(maxsize=8)
def _train_step(denoiser, classifier_apply, sampler, loss, learning_rate, warmup_steps, steps):
    """(optimizer, jit(params, opt_state, classifier_params, bound, key, step, images, labels,
    idx) -> (params, opt_state, loss)); the step's noise key is fold_in(key, step)."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps, steps, end_value=learning_rate * 0.01
    )
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    classify = None if classifier_apply is None else jax.vmap(classifier_apply, in_axes=(None, 0))

    def loss_fn(params, classifier_params, bound, key, images, labels):
        noisy = _noisy(sampler, bound, key, images)
        denoised = denoiser.apply(params, jnp.transpose(noisy, (0, 2, 3, 1)))
        denoised = jnp.transpose(denoised, (0, 3, 1, 2))
        if loss == "mse":
            return denoising_mse(denoised, images)
        classifier_params = jax.lax.stop_gradient(classifier_params)
        logits = classify(classifier_params, denoised)
        if loss == "stability":
            return stability_cross_entropy(logits, classify(classifier_params, images))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
        return jnp.mean(losses)

    def step(params, opt_state, classifier_params, bound, key, step_index, images, labels, idx):
        key = jax.random.fold_in(key, step_index)
        value, grads = jax.value_and_grad(loss_fn)(
            params, classifier_params, bound, key, images[idx], labels[idx]
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return optimizer, jax.jit(step)


def train_denoiser(
    key,
    denoiser: nn.Module,
    classifier_apply: Callable | None,
    classifier_params,
    data: ClassificationData,
    *,
    noise: Noise,
    loss: str = "mse",
    steps: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    warmup_steps: int | None = None,
    log_every: int = 100,
    init_params=None,
    progress: bool = False,
):
    """Trains a denoiser for denoised smoothing under `noise` (Salman et al., 2020, Section 3).

    Adam with a linear warmup (default min(100, steps // 10) steps) and cosine decay to 1% of
    `learning_rate`; gradients clipped to global norm 1; batches drawn without replacement
    (reshuffled every epoch); a fresh noise draw per example and step from the noise plug-in's
    sampler. The classifier is frozen: `classifier_params` are never updated (only the
    denoiser's parameters are in the optimizer). Deterministic for `key`.

    Args:
      key: JAX key (split into init, batch order and noise keys).
      denoiser: a linen module mapping [B, H, W, C] to [B, H, W, C] (e.g. `DnCNN`).
      classifier_apply: classifier_apply(params, x [C, H, W]) -> logits [num_classes] (or
        [..., num_classes]); None only with loss="mse".
      classifier_params: its parameters (unused with loss="mse").
      data: the training ClassificationData (labels used by loss="classification" only).
      noise: the smoothing noise, a single-group image noise whose `prepare` gives a
        per-example `sample` (e.g. `isotropic_gaussian(data.image_shape, sigma)`). One
        denoiser per noise level.
      loss: "mse", "stability" or "classification" (module docstring).
      steps, batch_size, learning_rate: optimisation settings (batch_size <= number of images).
      warmup_steps: linear warmup length (None: min(100, steps // 10)).
      log_every: record (and log at INFO) the mean loss every this many steps.
      init_params: start from these parameters (e.g. an "mse" denoiser fine-tuned with
        "stability") instead of `init_denoiser_params` (the identity).
      progress: draw a progress bar on stderr; never changes the result.
    Returns:
      (denoiser_params, DenoiserTrainHistory).
    """
    check_classification_data("data", data)
    check_key("key", key)
    if not isinstance(denoiser, nn.Module):
        _checks.fail("denoiser", type(denoiser).__name__, "must be a flax linen Module")
    if init_params is None and not isinstance(denoiser, DnCNN):
        _checks.fail(
            "init_params", None, "is required for a denoiser that is not a DnCNN",
            "Pass the denoiser's initial variables.",
        )  # fmt: skip
    loss = _checks.one_of("loss", loss, DENOISER_LOSSES)
    if loss != "mse" and not callable(classifier_apply):
        _checks.fail(
            "classifier_apply",
            classifier_apply,
            f'must be callable with loss="{loss}"',
            "Pass classifier_apply_fn(model), or use loss='mse'.",
        )
    if noise is None:
        _checks.fail("noise", None, "is required", "Pass the smoothing noise to denoise.")
    if loss != "mse":
        _check_classifier_output(classifier_apply, classifier_params, data, loss)
    sampler, bound = _sampler(noise, data.image_shape)
    steps, batch_size, learning_rate, warmup_steps, log_every = check_schedule(
        steps, batch_size, data.num_images, learning_rate, warmup_steps, log_every
    )

    key_init, key_order, key_noise = jax.random.split(key, 3)
    params = (
        init_params
        if init_params is not None
        else init_denoiser_params(key_init, denoiser, data.image_shape)
    )
    classifier = None if loss == "mse" else classifier_apply
    frozen = None if loss == "mse" else classifier_params
    optimizer, train_step = _train_step(
        denoiser, classifier, sampler, loss, float(learning_rate), warmup_steps, steps
    )
    opt_state = optimizer.init(params)
    images = jnp.asarray(data.images)
    labels = jnp.asarray(data.labels, jnp.int32)
    order = _batch_order(
        np.random.default_rng(seed_sequence(key_order)), data.num_images, batch_size
    )

    log = LossLog(steps, log_every, _LOG)
    bar = _progress.bar(steps, desc=f"train {type(denoiser).__name__} ({loss})", unit="step",
                        enabled=progress)  # fmt: skip
    for step in range(steps):
        idx = jnp.asarray(next(order))
        params, opt_state, value = train_step(
            params, opt_state, frozen, bound, key_noise, step, images, labels, idx
        )
        log.add(step, value)
        _progress.training_step(bar, step, value)
    bar.close()
    log_steps, log_loss, log_seconds = log.arrays()
    history = DenoiserTrainHistory(
        steps=log_steps,
        loss=log_loss,
        seconds=log_seconds,
    )
    return params, history


_FORMAT = ImageModelFormat(
    CHECKPOINT_FORMAT,
    {"DnCNN": (DnCNN, dncnn_from_config, dncnn_config)},
    "denoiser",
    "save_denoiser",
    "init_denoiser_params",
)


def save_denoiser(path, model: DnCNN, params, *, input_shape, metadata=None) -> None:
    """Saves a denoiser's params and config (msgpack + JSON side file, atomic, no pickle).

    Args:
      path: checkpoint file; the metadata goes to `path` + ".json".
      model: a DnCNN.
      params: its variables.
      input_shape: (C, H, W) of the training images.
      metadata: optional JSON-serialisable dict stored under "extra" (e.g. the noise and loss).
    """
    save_image_model(_FORMAT, path, model, params, input_shape=input_shape, metadata=metadata)


def load_denoiser(path):
    """Rebuilds a denoiser saved by `save_denoiser`: (model, params, metadata)."""
    return load_image_model(_FORMAT, path)
