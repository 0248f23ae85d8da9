"""Noise-augmented training and evaluation of segmentation models, and their checkpoints.

A smoothed classifier is only as good as its base model under the smoothing noise, so the base
model is trained on noisy inputs drawn exactly like the certificate's samples: Gaussian
noise in [0, 1] pixel units, added before the model's own normalisation, masked regions zeroed.

- noise="none": clean inputs.
- noise="isotropic": `x + sigma * e` on every pixel (a 1x1 grid).
- noise="localized": the paper's localized training (Schuchardt et al., 2023): for every example
  and every grid cell `k`, one sample from smoothing group `k`'s distribution (pixel noise std
  `localized_stds(...)[k, cell(pixel)]`, masked cells replaced by 0); each sample is segmented,
  the outputs of cell `k` are cropped from sample `k`, and the crops are stitched into one
  prediction, on which the loss is taken. A step costs K forward passes per example (K cells).

The loss is noise augmentation (cross-entropy of one noisy prediction), consistency
regularization or SmoothAdv (`lrsjax.training._losses`, docs/math.md §12); each of their noisy
copies is one such (stitched) prediction, and SmoothAdv attacks the clean image with one
perturbation for all outputs.

The ignore label 255 never enters a loss or a metric.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrsjax import _checks, _progress
from lrsjax._keys import check_key, seed_sequence
from lrsjax.data import IGNORE_LABEL, SegmentationData, check_segmentation_data
from lrsjax.models import (
    UNet,
    init_segmentation_params,
    segmentation_apply_fn,
    unet_config,
    unet_from_config,
)
from lrsjax.noise import grid_cells, localized_stds, perturb_gaussian, standard_normal
from lrsjax.results import confusion_matrix, mean_iou
from lrsjax.training._checkpoint import (
    ImageModelFormat,
    load_image_model,
    save_image_model,
)
from lrsjax.training._losses import TrainingLoss, training_loss
from lrsjax.training._schedule import LossLog, check_schedule

_LOG = logging.getLogger(__name__)
NOISE_KINDS = ("none", "isotropic", "localized")
CHECKPOINT_FORMAT = "lrsjax.segmentation_model/1"


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------


class SegmentationNoise(NamedTuple):
    """The training/evaluation noise of a segmentation model (docs/math.md §2).

    Fields:
      kind: "none", "isotropic" or "localized".
      grid_shape: (I, J); (1, 1) for "none" and "isotropic".
      stds: float64 [K, K], K = I * J: std of region (cell) `j` while smoothing group `k`
        (rows groups, columns regions); `np.inf` = masked (input replaced by 0); all 0 for "none".
    """

    kind: str
    grid_shape: tuple
    stds: np.ndarray

    @property
    def num_groups(self) -> int:
        return int(self.stds.shape[0])


def segmentation_noise(
    noise: str = "isotropic",
    *,
    sigma: float = 0.25,
    grid_shape=(3, 5),
    std_min: float = 0.15,
    std_max: float = 1.0,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> SegmentationNoise:
    """Validates a noise choice and returns its `SegmentationNoise`.

    `sigma` is used by "isotropic" only; the grid arguments by "localized" only (see
    lrsjax.noise.localized_stds, whose matrix is used unchanged).
    """
    _checks.one_of("noise", noise, NOISE_KINDS)
    if noise == "none":
        return SegmentationNoise("none", (1, 1), np.zeros((1, 1)))
    if noise == "isotropic":
        return SegmentationNoise("isotropic", (1, 1), localized_stds((1, 1), sigma, sigma))
    stds = localized_stds(
        grid_shape,
        std_min,
        std_max,
        interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary,
        mask_distance=mask_distance,
    )
    return SegmentationNoise("localized", tuple(int(v) for v in grid_shape), stds)


def pixel_cells(data: SegmentationData, grid_shape) -> np.ndarray:
    """int32 [N, H, W]: the grid cell of every pixel of every image, -1 on padding.

    Each image's grid is laid over its true size (`data.sizes`) with lrsjax.noise.grid_cells, so a
    padded image gets exactly the cells it has when certified alone.
    """
    cells = np.full(data.labels.shape, -1, np.int32)
    cache = {}
    for i, (h, w) in enumerate(data.sizes.tolist()):
        if (h, w) not in cache:
            cache[(h, w)] = grid_cells((h, w), grid_shape).cell_id
        cells[i, :h, :w] = cache[(h, w)]
    return cells


def noisy_batch(key, images, cells, stds, group):
    """Noisy inputs of a batch, each example smoothed as its own group (docs/math.md §2).

    Args:
      key: JAX key.
      images: float32 [B, C, H, W] clean images in [0, 1].
      cells: int32 [B, H, W] cell of every pixel (-1 = padding: no noise there).
      stds: float [K, K] noise matrix (inf = masked).
      group: int32 [B], the smoothing group (cell) of each example.
    Returns:
      float32 [B, C, H, W]: `x + stds[group, cell] * e` with masked pixels replaced by 0.
    """
    stds = jnp.asarray(stds, jnp.float32)
    std_map = stds[group[:, None, None], jnp.maximum(cells, 0)]
    std_map = jnp.where(cells >= 0, std_map, 0.0)
    # the draws and the perturbation of lrsjax.noise's Gaussian plug-in: training sees exactly the
    # noise that certification samples
    noise = standard_normal(key, images.shape, images.dtype)
    return jax.vmap(perturb_gaussian)(images, std_map, noise)


def segmentation_loss(logits, labels, mask):
    """Mean softmax cross-entropy over the pixels where `mask` holds and the label is not 255.

    Args:
      logits: float [B, H, W, num_classes].
      labels: int [B, H, W] (255 = ignore).
      mask: bool [B, H, W], the outputs that count (e.g. the pixels of the example's group).
    Returns:
      scalar float32; 0 when no pixel counts.
    """
    valid = mask & (labels != IGNORE_LABEL)
    safe = jnp.where(valid, labels, 0)
    per_pixel = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
    return jnp.sum(jnp.where(valid, per_pixel, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


class SegmentationEval(NamedTuple):
    """Pixel metrics of a base model on a data set (ignore label excluded).

    Fields:
      pixel_accuracy: correct / counted pixels.
      mean_iou: lrsjax.results.mean_iou of the pooled confusion matrix.
      confusion: int64 [C, C], rows predicted class, columns true class.
      noise: the noise kind the predictions were made under.
    """

    pixel_accuracy: float
    mean_iou: float
    confusion: np.ndarray
    noise: str


@functools.lru_cache(maxsize=8)
def _predict_fn(apply_fn: Callable, noise_kind: str) -> Callable:
    """jit(params, key, batch, x [B,C,H,W], cells [B,H,W], stds [K,K], group) -> int32 [B,H,W].

    The noise key of (batch, group) is fold_in(fold_in(key, batch), group)."""
    batched = jax.vmap(apply_fn, in_axes=(None, 0))

    def predict(params, key, batch, images, cells, stds, group):
        if noise_kind != "none":
            key = jax.random.fold_in(jax.random.fold_in(key, batch), group)
            groups = jnp.full(images.shape[:1], group, jnp.int32)
            images = noisy_batch(key, images, cells, stds, groups)
        return jnp.argmax(batched(params, images), axis=-1).astype(jnp.int32)

    return jax.jit(predict)


def evaluate_segmentation(
    apply_fn: Callable,
    params,
    data: SegmentationData,
    *,
    batch_size: int = 32,
    noise: str = "none",
    key=None,
    sigma: float = 0.25,
    grid_shape=(3, 5),
    std_min: float = 0.15,
    std_max: float = 1.0,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> SegmentationEval:
    """Pixel accuracy and mIoU of the base model, clean or under one draw of noise.

    Every image is evaluated at its true size (images are batched by size). With
    noise="localized", every image is predicted once per group `k` with group `k`'s noise and the
    outputs of cell `k` are kept (the stitched prediction, one sample per group).

    Args:
      apply_fn: apply_fn(params, x [C, H, W]) -> logits [H, W, num_classes] (the certify contract).
      params: its parameters.
      data: a SegmentationData.
      batch_size: images per forward pass (a last, smaller batch is padded by repetition).
      noise, sigma, grid_shape, std_min, std_max, interpolate, max_std_at_boundary, mask_distance:
        as in `segmentation_noise`.
      key: JAX key, required unless noise="none".
    Returns:
      SegmentationEval.
    """
    check_segmentation_data("data", data)
    batch_size = _checks.positive_int("batch_size", batch_size)
    spec = segmentation_noise(
        noise,
        sigma=sigma,
        grid_shape=grid_shape,
        std_min=std_min,
        std_max=std_max,
        interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary,
        mask_distance=mask_distance,
    )
    if spec.kind != "none":
        if key is None:
            _checks.fail("key", key, f"is required for noise={noise!r}", "Pass jax.random.key(0).")
        check_key("key", key)
    else:
        key = jax.random.key(0)  # unused: no noise is drawn
    cells = pixel_cells(data, spec.grid_shape)
    predict = _predict_fn(apply_fn, spec.kind)
    stds = jnp.asarray(spec.stds, jnp.float32)
    confusion = np.zeros((data.num_classes, data.num_classes), np.int64)
    batch_size = min(batch_size, data.num_images)
    batch_index = 0
    for (h, w), members in _group_by_size(data.sizes):
        for start in range(0, len(members), batch_size):
            idx = members[start : start + batch_size]
            padded = np.resize(idx, batch_size) if len(idx) < batch_size else idx
            x = jnp.asarray(data.images[padded, :, :h, :w])
            cell = cells[padded, :h, :w]
            cell_device = jnp.asarray(cell)
            pred = np.zeros((batch_size, h, w), np.int32)
            for k in range(spec.num_groups):
                pred_k = predict(params, key, batch_index, x, cell_device, stds, k)
                pred = np.where(cell == k, np.asarray(pred_k), pred)
            batch_index += 1
            labels = data.labels[idx, :h, :w]
            confusion += confusion_matrix(pred[: len(idx)], labels, data.num_classes, IGNORE_LABEL)
    total = confusion.sum()
    accuracy = float(np.trace(confusion) / total) if total else float("nan")
    return SegmentationEval(accuracy, mean_iou(confusion), confusion, spec.kind)


def _group_by_size(sizes: np.ndarray) -> list:
    """[((h, w), indices int64 [n]), ...] in order of first appearance."""
    groups: dict = {}
    for i, (h, w) in enumerate(sizes.tolist()):
        groups.setdefault((h, w), []).append(i)
    return [(size, np.array(idx, np.int64)) for size, idx in groups.items()]


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


class TrainHistory(NamedTuple):
    """What happened during `train_segmentation`.

    Fields:
      steps: int64 [L], the step count at each log point.
      loss: float64 [L], mean training loss over the steps since the previous log point.
      seconds: float64 [L], wall-clock seconds since training began (compilation included).
      clean_eval: SegmentationEval on `eval_data` without noise after training, or None.
      noisy_eval: SegmentationEval on `eval_data` under the training noise, or None (also None
        for noise="none").
    """

    steps: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray
    clean_eval: SegmentationEval | None
    noisy_eval: SegmentationEval | None


def _draw_fn(noise: SegmentationNoise, cells) -> Callable:
    """draw(key, images [B, C, H, W]) -> the noisy sample of every example: [B, C, H, W] for
    "none" (the clean images) and "isotropic", and [B, K, C, H, W] for "localized", copy `k`
    drawn from smoothing group `k`'s distribution."""
    stds = jnp.asarray(noise.stds, jnp.float32)
    num_groups = noise.num_groups

    def draw(key, images):
        if noise.kind == "none":
            return images
        if noise.kind == "isotropic":
            group = jnp.zeros(images.shape[:1], jnp.int32)
            return noisy_batch(key, images, cells, stds, group)
        batch = images.shape[0]
        repeated = jnp.repeat(images, num_groups, axis=0)
        group = jnp.tile(jnp.arange(num_groups, dtype=jnp.int32), batch)
        noisy = noisy_batch(key, repeated, jnp.repeat(cells, num_groups, axis=0), stds, group)
        return noisy.reshape((batch, num_groups, *images.shape[1:]))

    return draw


def _apply_fn(model: nn.Module, noise: SegmentationNoise, cells) -> Callable:
    """apply(params, z) -> logits [N, H, W, num_classes] of samples from `_draw_fn` (N a multiple
    of the batch: `cells [B, H, W]` is tiled); "localized" samples are segmented copy by copy and
    stitched: pixel `p` takes its logits from the copy of its own cell's group."""

    def segment(params, images):
        return model.apply(params, jnp.transpose(images, (0, 2, 3, 1)))

    def apply(params, z):
        if noise.kind != "localized":
            return segment(params, z)
        count, num_groups = z.shape[:2]
        logits = segment(params, z.reshape((count * num_groups, *z.shape[2:])))
        logits = logits.reshape((count, num_groups, *logits.shape[1:]))
        own = jnp.tile(jnp.maximum(cells, 0), (count // cells.shape[0], 1, 1))
        picked = jnp.take_along_axis(logits, own[:, None, :, :, None], axis=1)
        return picked[:, 0]

    return apply


def make_noisy_loss(model: nn.Module, noise: SegmentationNoise, loss=None) -> Callable:
    """The training loss of one batch under `noise` (see the module docstring).

    Args:
      model: the linen segmentation module.
      noise: a SegmentationNoise.
      loss: the training loss (`lrsjax.training.training_loss`: None or "noise" for noise
        augmentation, "consistency", "smoothadv", or a TrainingLoss); every noisy copy it draws
        is, for "localized", one sample per smoothing group stitched into one prediction.
    Returns:
      loss_fn(params, key, images [B, C, H, W], labels [B, H, W], cells [B, H, W], step=0) ->
      scalar float32 over the counted pixels: every non-padding pixel whose label is not 255.
      Pure; jit it.
    """
    loss = training_loss(loss)
    if noise.kind == "none" and loss.name != "noise":
        _checks.fail(
            "loss",
            loss.name,
            "needs a smoothing noise (it compares noisy copies), but noise='none'",
            "Train with noise='isotropic' or 'localized'.",
        )

    def loss_fn(params, key, images, labels, cells, step=0):
        mask = (cells >= 0) & (labels != IGNORE_LABEL)
        draw, apply = _draw_fn(noise, cells), _apply_fn(model, noise, cells)
        return loss.batch_loss(key, params, apply, draw, images, labels, mask, step)

    return loss_fn


@functools.lru_cache(maxsize=8)
def _train_step(model, kind, grid_shape, stds_bytes, learning_rate, warmup_steps, steps, loss):
    """(optimizer, jit(params, opt_state, key, step, images, labels, cells, idx) -> (params,
    opt_state, loss)); the step's key is fold_in(key, step). Cached on the (hashable)
    configuration so repeated runs reuse the compiled step."""
    flat = np.frombuffer(stds_bytes, np.float64)
    stds = flat.reshape(math.isqrt(flat.size), -1)
    loss_fn = make_noisy_loss(model, SegmentationNoise(kind, grid_shape, stds), loss)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps, steps, end_value=learning_rate * 0.01
    )
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))

    def step(params, opt_state, key, step_index, images, labels, cells, idx):
        batch = (images[idx], labels[idx], cells[idx])
        key = jax.random.fold_in(key, step_index)
        value, grads = jax.value_and_grad(loss_fn)(params, key, *batch, step_index)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return optimizer, jax.jit(step)


def train_segmentation(
    key,
    model: nn.Module,
    data: SegmentationData,
    *,
    steps: int = 600,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    noise: str = "isotropic",
    sigma: float = 0.25,
    grid_shape=(3, 5),
    std_min: float = 0.15,
    std_max: float = 1.0,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
    warmup_steps: int | None = None,
    eval_data: SegmentationData | None = None,
    eval_batch_size: int = 32,
    log_every: int = 100,
    init_params=None,
    progress: bool = False,
    loss: TrainingLoss | str | None = None,
):
    """Trains a segmentation model under Gaussian noise (docs/math.md §2, §12).

    Adam with a linear warmup (default min(100, steps // 10) steps) and cosine decay to 1% of
    `learning_rate`; gradients clipped to global norm 1. Batches are drawn without replacement
    (reshuffled every epoch); each step's noise uses a fresh key. See the module docstring for the
    three noise kinds. Images of different sizes are trained in their padded arrays (the padding
    is ignored by the loss and receives no noise). Deterministic for `key`.

    Args:
      key: JAX key (split into init, batch order, noise and evaluation keys).
      model: a linen module mapping [B, H, W, C] in [0, 1] to logits [B, H, W, num_classes]
        (hashable, as linen modules are: the compiled step is cached per configuration).
      data: the training SegmentationData.
      steps, batch_size, learning_rate: optimisation settings (batch_size <= number of images).
      noise, sigma, grid_shape, std_min, std_max, interpolate, max_std_at_boundary, mask_distance:
        the noise (see `segmentation_noise`).
      warmup_steps: linear warmup length (None: min(100, steps // 10)).
      eval_data: if given, evaluated clean and under the training noise after training.
      eval_batch_size: batch size of that evaluation.
      log_every: record (and log at INFO) the mean loss every this many steps.
      init_params: start from these parameters instead of `init_segmentation_params`.
      progress: draw a progress bar on stderr (steps/s after compilation, loss, ETA; see
        `lrsjax._progress` for when it is drawn). It never changes the result.
      loss: None or "noise" (noise augmentation), "consistency", "smoothadv" (their default
        hyperparameters) or a TrainingLoss (`lrsjax.training.consistency(...)`,
        `smoothadv(...)`); the losses other than "noise" need noise other than "none".
    Returns:
      (params, TrainHistory).
    """
    check_segmentation_data("data", data)
    if eval_data is not None:
        check_segmentation_data("eval_data", eval_data)
        if eval_data.num_classes != data.num_classes:
            _checks.fail(
                "eval_data.num_classes",
                eval_data.num_classes,
                f"must equal data.num_classes ({data.num_classes})",
            )
    check_key("key", key)
    if not isinstance(model, nn.Module):
        _checks.fail("model", type(model).__name__, "must be a flax linen Module", "E.g. UNet(5).")
    if getattr(model, "num_classes", data.num_classes) != data.num_classes:
        _checks.fail(
            "model.num_classes",
            model.num_classes,
            f"must equal data.num_classes ({data.num_classes})",
            "Build the model with the data set's number of classes.",
        )
    steps, batch_size, learning_rate, warmup_steps, log_every = check_schedule(
        steps, batch_size, data.num_images, learning_rate, warmup_steps, log_every
    )
    eval_batch_size = _checks.positive_int("eval_batch_size", eval_batch_size)
    noise_kwargs = dict(
        sigma=sigma,
        grid_shape=grid_shape,
        std_min=std_min,
        std_max=std_max,
        interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary,
        mask_distance=mask_distance,
    )
    spec = segmentation_noise(noise, **noise_kwargs)
    loss = training_loss(loss)

    key_init, key_order, key_noise, key_eval = jax.random.split(key, 4)
    params = (
        init_params
        if init_params is not None
        else init_segmentation_params(key_init, model, data.images.shape[1:])
    )
    optimizer, train_step = _train_step(
        model,
        spec.kind,
        spec.grid_shape,
        np.ascontiguousarray(spec.stds, np.float64).tobytes(),
        float(learning_rate),
        warmup_steps,
        steps,
        loss,
    )
    opt_state = optimizer.init(params)
    images = jnp.asarray(data.images)
    labels = jnp.asarray(data.labels)
    cells = jnp.asarray(pixel_cells(data, spec.grid_shape))
    order = _batch_order(
        np.random.default_rng(seed_sequence(key_order)), data.num_images, batch_size
    )

    log = LossLog(steps, log_every, _LOG)
    desc = f"train U-Net ({spec.kind} noise, {loss.name} loss)"
    bar = _progress.bar(steps, desc=desc, unit="step", enabled=progress)
    for step in range(steps):
        idx = jnp.asarray(next(order))
        params, opt_state, loss = train_step(
            params, opt_state, key_noise, step, images, labels, cells, idx
        )
        log.add(step, loss)
        _progress.training_step(bar, step, loss)
    bar.close()
    log_steps, log_loss, log_seconds = log.arrays()

    clean_eval = noisy_eval = None
    if eval_data is not None:
        apply_fn = segmentation_apply_fn(model)
        clean_eval = evaluate_segmentation(
            apply_fn, params, eval_data, batch_size=eval_batch_size, noise="none"
        )
        if spec.kind != "none":
            noisy_eval = evaluate_segmentation(
                apply_fn,
                params,
                eval_data,
                batch_size=eval_batch_size,
                noise=spec.kind,
                key=key_eval,
                **noise_kwargs,
            )
    history = TrainHistory(
        steps=log_steps,
        loss=log_loss,
        seconds=log_seconds,
        clean_eval=clean_eval,
        noisy_eval=noisy_eval,
    )
    return params, history


def _batch_order(rng: np.random.Generator, num_images: int, batch_size: int):
    """Yields index batches int64 [batch_size]: epochs of random permutations, concatenated."""
    pending = np.zeros(0, np.int64)
    while True:
        while pending.size < batch_size:
            pending = np.concatenate([pending, rng.permutation(num_images)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

_FORMAT = ImageModelFormat(
    CHECKPOINT_FORMAT,
    {"UNet": (UNet, unet_from_config, unet_config)},
    "segmentation",
    "save_segmentation_model",
    "init_segmentation_params",
)


def save_segmentation_model(path, model: nn.Module, params, *, input_shape, metadata=None) -> None:
    """Saves params and everything needed to rebuild the model (lrsjax.training.save_checkpoint).

    Args:
      path: checkpoint file; the metadata goes to `path` + ".json" (both written atomically,
        msgpack and JSON: nothing is pickled).
      model: a UNet.
      params: its variables.
      input_shape: (C, H, W) of the training images (C fixes the parameter shapes).
      metadata: optional JSON-serialisable dict stored under "extra" (e.g. the training noise).
    """
    save_image_model(_FORMAT, path, model, params, input_shape=input_shape, metadata=metadata)


def load_segmentation_model(path):
    """Rebuilds a model saved by `save_segmentation_model` from the checkpoint alone.

    Returns:
      (model, params, metadata) with metadata the stored dict ("model_class", "model_config",
      "input_shape", "extra").
    """
    return load_image_model(_FORMAT, path)
