"""Noise-augmented training and evaluation of image classifiers, and their checkpoints.

A smoothed classifier (Cohen et al., 2019) is only as good as its base model under the smoothing
noise, so the base model is trained on noisy inputs drawn exactly like the certificate's samples:
each example gets its own draw from the noise plug-in's per-example sampler
(`noise.prepare(noise, x).sample`, e.g. `x + sigma * e` with `e` from
`lrsjax.noise.standard_normal` for `isotropic_gaussian`), added in [0, 1] pixel units before the
model's own normalisation. `noise=None` trains on clean inputs. Consistency regularization and
SmoothAdv (`lrsjax.training._losses`) draw their noisy copies from the same sampler.
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
from lrsjax.models import (
    ResNet,
    classifier_apply_fn,
    init_classifier_params,
    resnet_config,
    resnet_from_config,
)
from lrsjax.noise import Noise, check_noise
from lrsjax.training._checkpoint import (
    ImageModelFormat,
    load_image_model,
    save_image_model,
)
from lrsjax.training._losses import TrainingLoss, training_loss
from lrsjax.training._schedule import LossLog, check_schedule
from lrsjax.training._segmentation import _batch_order

_LOG = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "lrsjax.classifier_model/1"


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------


class _Sampler(NamedTuple):
    """The static part of a bound noise (hashable: jitted functions are cached on it)."""

    sample: Callable
    config: object


class _Bound(NamedTuple):
    """The device part of a bound noise, passed to the jitted functions: `per_group[0]` (the
    single group's parameters) and `common`, as `Prepared` holds them."""

    group_parameters: object
    common: object


def _sampler(noise: Noise | None, image_shape: tuple) -> tuple[_Sampler | None, _Bound | None]:
    """Binds `noise` once (to a grey image of `image_shape`) and keeps its per-example sampler.

    Only single-group noises are accepted: a classifier has one output, smoothed by one group.
    Any such noise whose `Prepared` has a per-example `sample` works (the additive Gaussian,
    Laplace and uniform noises; transformation noises).
    """
    if noise is None:
        return None, None
    check_noise(noise, "noise")
    if noise.num_groups != 1:
        _checks.fail(
            "noise",
            f"a {noise.kind} noise with {noise.num_groups} groups",
            "must have one smoothing group (a classifier has one output)",
            "Use an isotropic noise, e.g. lrsjax.noise.isotropic_gaussian((C, H, W), sigma).",
        )
    region = tuple(np.shape(noise.region))
    if region and region != tuple(image_shape[-len(region) :]):
        _checks.fail(
            "noise",
            f"a noise for inputs of size {region}",
            f"must match the training images' size {tuple(image_shape[1:])}",
            "Build the noise for the data's image size.",
        )
    prepared = noise.prepare(noise, np.full(image_shape, 0.5, np.float32))
    group_parameters = jax.tree.map(lambda leaf: leaf[0], prepared.per_group)
    return _Sampler(prepared.sample, prepared.config), _Bound(group_parameters, prepared.common)


def _noisy(sampler: _Sampler, bound: _Bound, key, images):
    """float32 [B, C, H, W]: one draw of the noise per example, each from its own key."""
    keys = jax.random.split(key, images.shape[0])
    noisy, _ = jax.vmap(sampler.sample, in_axes=(None, 0, 0, None, None))(
        sampler.config, keys, images, bound.group_parameters, bound.common
    )
    return noisy


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _predict_fn(apply_fn: Callable, sampler: _Sampler | None) -> Callable:
    """jit(params, bound, key, images [B, C, H, W]) -> int32 [B] predictions (noisy if
    `sampler`)."""
    batched = jax.vmap(apply_fn, in_axes=(None, 0))

    def predict(params, bound, key, images):
        if sampler is not None:
            images = _noisy(sampler, bound, key, images)
        return jnp.argmax(batched(params, images), axis=-1).astype(jnp.int32)

    return jax.jit(predict)


def evaluate_classifier(
    apply_fn: Callable,
    params,
    data: ClassificationData,
    *,
    batch_size: int = 128,
    noise: Noise | None = None,
    key=None,
) -> float:
    """Accuracy of the base model on `data`, clean or under one draw of `noise` per image.

    Args:
      apply_fn: apply_fn(params, x [C, H, W]) -> logits [num_classes] (the certify contract).
      params: its parameters.
      data: a ClassificationData.
      batch_size: images per forward pass (a last, smaller batch is padded by repetition).
      noise: None (clean) or a single-group image noise (see `train_classifier`).
      key: JAX key, required with `noise`; batch `b` draws from fold_in(key, b).
    Returns:
      the fraction of correctly classified images.
    """
    check_classification_data("data", data)
    batch_size = min(_checks.positive_int("batch_size", batch_size), data.num_images)
    sampler, bound = _sampler(noise, data.image_shape)
    if sampler is not None:
        if key is None:
            _checks.fail("key", key, "is required with a noise", "Pass jax.random.key(0).")
        check_key("key", key)
    else:
        key = jax.random.key(0)  # unused: no noise is drawn
    predict = _predict_fn(apply_fn, sampler)
    correct = 0
    for batch, start in enumerate(range(0, data.num_images, batch_size)):
        idx = np.arange(start, min(start + batch_size, data.num_images))
        padded = np.resize(idx, batch_size)
        batch_key = jax.random.fold_in(key, batch)
        pred = np.asarray(predict(params, bound, batch_key, data.images[padded]))
        correct += int(np.sum(pred[: idx.size] == data.labels[idx]))
    return correct / data.num_images


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


class ClassifierTrainHistory(NamedTuple):
    """What happened during `train_classifier`.

    Fields:
      steps: int64 [L], the step count at each log point.
      loss: float64 [L], mean training loss over the steps since the previous log point.
      seconds: float64 [L], wall-clock seconds since training began (compilation included).
      clean_accuracy: accuracy on `eval_data` without noise after training, or None.
      noisy_accuracy: accuracy on `eval_data` under one draw of the training noise, or None (also
        None when training without noise).
    """

    steps: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray
    clean_accuracy: float | None
    noisy_accuracy: float | None


@functools.lru_cache(maxsize=8)
def _train_step(model, sampler, learning_rate, warmup_steps, steps, loss: TrainingLoss):
    """(optimizer, jit(params, opt_state, bound, key, step, images, labels, idx) -> (params,
    opt_state, loss)); the step's noise key is fold_in(key, step). Cached on the (hashable)
    configuration so repeated runs reuse the compiled step."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps, steps, end_value=learning_rate * 0.01
    )
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))

    def apply(params, images):
        return model.apply(params, jnp.transpose(images, (0, 2, 3, 1)))

    def loss_fn(params, bound, key, step_index, images, labels):
        def draw(draw_key, x):
            return x if sampler is None else _noisy(sampler, bound, draw_key, x)

        return loss.batch_loss(key, params, apply, draw, images, labels, step=step_index)

    def step(params, opt_state, bound, key, step_index, images, labels, idx):
        key = jax.random.fold_in(key, step_index)
        value, grads = jax.value_and_grad(loss_fn)(
            params, bound, key, step_index, images[idx], labels[idx]
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return optimizer, jax.jit(step)


def train_classifier(
    key,
    model: nn.Module,
    data: ClassificationData,
    *,
    noise: Noise | None,
    steps: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    warmup_steps: int | None = None,
    eval_data: ClassificationData | None = None,
    eval_batch_size: int = 128,
    log_every: int = 100,
    init_params=None,
    progress: bool = False,
    loss: TrainingLoss | str | None = None,
):
    """Trains an image classifier with noise augmentation (Cohen et al., 2019, Section 3), or with
    consistency regularization or SmoothAdv (`loss`; docs/math.md, section 12).

    Adam with a linear warmup (default min(100, steps // 10) steps) and cosine decay to 1% of
    `learning_rate`; gradients clipped to global norm 1. Batches are drawn without replacement
    (reshuffled every epoch); every example of every step gets a fresh noise draw from the
    noise plug-in's own sampler. Deterministic for `key`: the same key gives the same parameters.

    Args:
      key: JAX key (split into init, batch order, noise and evaluation keys).
      model: a linen module mapping [B, H, W, C] in [0, 1] to logits [B, num_classes] (hashable,
        as linen modules are: the compiled step is cached per configuration).
      data: the training ClassificationData.
      noise: the smoothing noise to train under, any single-group noise of images whose
        `prepare` gives a per-example `sample` (`isotropic_gaussian(data.image_shape, sigma)`,
        the isotropic Laplace and uniform noises, transformation noises such as
        `gaussian_brightness`); None trains on clean images.
      steps, batch_size, learning_rate: optimisation settings (batch_size <= number of images).
      warmup_steps: linear warmup length (None: min(100, steps // 10)).
      eval_data: if given, evaluated clean and under the training noise after training.
      eval_batch_size: batch size of that evaluation.
      log_every: record (and log at INFO) the mean loss every this many steps.
      init_params: start from these parameters instead of `init_classifier_params`.
      progress: draw a progress bar on stderr (see `lrsjax._progress` for when it is drawn). It
        never changes the result.
      loss: the training loss: None or "noise" (noise augmentation, one copy per example),
        "consistency", "smoothadv" (their default hyperparameters) or a `TrainingLoss` from
        `lrsjax.training.noise_augmentation`, `consistency` or `smoothadv`. Every loss draws its
        noisy copies from `noise`'s per-example sampler, which is single-group (a classifier has
        one output, so localized noise, one group per output, does not apply here). The losses
        other than "noise" need a noise.
    Returns:
      (params, ClassifierTrainHistory).
    """
    check_classification_data("data", data)
    if eval_data is not None:
        check_classification_data("eval_data", eval_data)
        if eval_data.num_classes != data.num_classes:
            _checks.fail(
                "eval_data.num_classes",
                eval_data.num_classes,
                f"must equal data.num_classes ({data.num_classes})",
            )
    check_key("key", key)
    if not isinstance(model, nn.Module):
        _checks.fail(
            "model", type(model).__name__, "must be a flax linen Module", "E.g. ResNet(10)."
        )
    if getattr(model, "num_classes", data.num_classes) != data.num_classes:
        _checks.fail(
            "model.num_classes",
            model.num_classes,
            f"must equal data.num_classes ({data.num_classes})",
            "Build the model with the data set's number of classes.",
        )
    sampler, bound = _sampler(noise, data.image_shape)
    loss = training_loss(loss)
    if noise is None and loss.name != "noise":
        _checks.fail(
            "loss",
            loss.name,
            "needs a smoothing noise (it compares noisy copies), but noise=None",
            "Pass noise=lrsjax.noise.isotropic_gaussian(data.image_shape, sigma).",
        )
    steps, batch_size, learning_rate, warmup_steps, log_every = check_schedule(
        steps, batch_size, data.num_images, learning_rate, warmup_steps, log_every
    )
    eval_batch_size = _checks.positive_int("eval_batch_size", eval_batch_size)

    key_init, key_order, key_noise, key_eval = jax.random.split(key, 4)
    params = (
        init_params
        if init_params is not None
        else init_classifier_params(key_init, model, data.image_shape)
    )
    optimizer, train_step = _train_step(
        model, sampler, float(learning_rate), warmup_steps, steps, loss
    )
    opt_state = optimizer.init(params)
    images = jnp.asarray(data.images)
    labels = jnp.asarray(data.labels, jnp.int32)
    order = _batch_order(
        np.random.default_rng(seed_sequence(key_order)), data.num_images, batch_size
    )

    log = LossLog(steps, log_every, _LOG)
    kind = "clean" if noise is None else f"{noise.kind} noise, {loss.name} loss"
    bar = _progress.bar(steps, desc=f"train {type(model).__name__} ({kind})", unit="step",
                        enabled=progress)  # fmt: skip
    for step in range(steps):
        idx = jnp.asarray(next(order))
        params, opt_state, batch_loss = train_step(
            params, opt_state, bound, key_noise, step, images, labels, idx
        )
        log.add(step, batch_loss)
        _progress.training_step(bar, step, batch_loss)
    bar.close()
    log_steps, log_loss, log_seconds = log.arrays()

    clean = noisy = None
    if eval_data is not None:
        apply_fn = classifier_apply_fn(model)
        clean = evaluate_classifier(apply_fn, params, eval_data, batch_size=eval_batch_size)
        if noise is not None:
            noisy = evaluate_classifier(
                apply_fn, params, eval_data, batch_size=eval_batch_size, noise=noise, key=key_eval
            )
    history = ClassifierTrainHistory(
        steps=log_steps,
        loss=log_loss,
        seconds=log_seconds,
        clean_accuracy=clean,
        noisy_accuracy=noisy,
    )
    return params, history


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

_FORMAT = ImageModelFormat(
    CHECKPOINT_FORMAT,
    {"ResNet": (ResNet, resnet_from_config, resnet_config)},
    "classifier",
    "save_classifier",
    "init_classifier_params",
)


def save_classifier(path, model: nn.Module, params, *, input_shape, metadata=None) -> None:
    """Saves params and everything needed to rebuild the model (lrsjax.training.save_checkpoint).

    Args:
      path: checkpoint file; the metadata goes to `path` + ".json" (both written atomically,
        msgpack and JSON: nothing is pickled).
      model: a ResNet.
      params: its variables.
      input_shape: (C, H, W) of the training images (C fixes the parameter shapes).
      metadata: optional JSON-serialisable dict stored under "extra" (e.g. the training noise).
    """
    save_image_model(_FORMAT, path, model, params, input_shape=input_shape, metadata=metadata)


def load_classifier(path):
    """Rebuilds a model saved by `save_classifier` from the checkpoint alone.

    Returns:
      (model, params, metadata) with metadata the stored dict ("model_class", "model_config",
      "input_shape", "extra").
    """
    return load_image_model(_FORMAT, path)
