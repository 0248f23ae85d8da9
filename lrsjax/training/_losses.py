"""Training losses for certified robustness: noise augmentation, consistency regularization and
SmoothAdv (docs/math.md, section 12).

Two layers, optax style:
  * pure functions of the logits of `m` noisy copies, `logits [m, B, ..., K]` with integer
    `labels [B, ...]` and an optional bool `mask [B, ...]` of the outputs that count (a classifier
    has `...` empty; a segmentation model has `...` = (H, W) and masks its ignored pixels and the
    pixels outside the example's smoothing group): `noise_loss`, `consistency_loss`,
    `smoothadv_objective`; and the attack `smoothadv_attack`;
  * factories returning a `TrainingLoss`, the loss of one batch given the model and the noise
    plug-in's per-example sampler: `noise_augmentation`, `consistency`, `smoothadv`.
    `lrsjax.training.train_classifier(..., loss=...)` takes them.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrsjax import _checks

LOSS_NAMES = ("noise", "consistency", "smoothadv")
_TINY = 1e-20  # the clamp of the entropy's logarithm (Jeong & Shin, 2020, code)


# ----------------------------------------------------------------------------------------------
# Losses of the logits of m noisy copies
# ----------------------------------------------------------------------------------------------


def _masked_mean(values, mask):
    """Mean of `values [B, ...]` over the outputs where `mask` holds (0 when none does)."""
    if mask is None:
        return jnp.mean(values)
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def _log_probs_of_label(logits, labels, mask):
    """float32 [m, B, ...]: log softmax(logits)_label of every copy and output."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    safe = labels if mask is None else jnp.where(mask, labels, 0)
    index = jnp.broadcast_to(safe, logits.shape[:-1])[..., None]
    picked = jnp.take_along_axis(log_probs, index, axis=-1)
    return picked[..., 0]


def noise_loss(logits, labels, mask=None):
    """Mean cross-entropy of the noisy copies (noise augmentation, Cohen et al., 2019).

    Args:
      logits: float [m, B, ..., K], the model's logits of `m` noisy copies of a batch.
      labels: int [B, ...], the true classes.
      mask: optional bool [B, ...], the outputs that count (None: all).
    Returns:
      scalar float32: `(1/m) sum_i CE(F(x + delta_i), y)`, averaged over the counted outputs.
    """
    ce = -_log_probs_of_label(logits, labels, mask)
    return _masked_mean(jnp.mean(ce, axis=0), mask)


def consistency_terms(logits, labels, mask=None):
    """The three terms of the consistency loss (Jeong & Shin, 2020), each averaged over the
    counted outputs: (mean CE, mean_i KL(F_bar || F_i), H(F_bar)), with `F_i = softmax(logits[i])`
    and `F_bar = (1/m) sum_i F_i`. Arguments as in `noise_loss`."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    mean_probs = jnp.mean(jnp.exp(log_probs), axis=0)
    log_mean = jnp.log(jnp.maximum(mean_probs, _TINY))
    kl = jnp.mean(jnp.sum(mean_probs * (log_mean - log_probs), axis=-1), axis=0)
    entropy = -jnp.sum(mean_probs * log_mean, axis=-1)
    return (
        noise_loss(logits, labels, mask),
        _masked_mean(kl, mask),
        _masked_mean(entropy, mask),
    )


def consistency_loss(logits, labels, mask=None, *, lbd: float = 10.0, eta: float = 0.5):
    """Consistency regularization (Jeong & Shin, 2020; docs/math.md, section 12).

    `L = (1/m) sum_i CE(F_i, y) + lbd (1/m) sum_i KL(F_bar || F_i) + eta H(F_bar)` averaged over
    the counted outputs; gradients flow through `F_bar` (no stop-gradient), as in the paper's code.

    Args:
      logits: float [m, B, ..., K] of `m >= 1` noisy copies; labels, mask: as in `noise_loss`.
      lbd: weight of the KL term (the paper uses 5, 10 or 20).
      eta: weight of the entropy term (the paper uses 0.5).
    Returns:
      scalar float32.
    """
    ce, kl, entropy = consistency_terms(logits, labels, mask)
    return ce + lbd * kl + eta * entropy


def _smoothadv_per_output(logits, labels, mask):
    """float32 [B, ...]: `-log((1/m) sum_i softmax(logits[i])_y)` (log of the mean)."""
    picked = _log_probs_of_label(logits, labels, mask)
    return math.log(logits.shape[0]) - jax.nn.logsumexp(picked, axis=0)


def smoothadv_objective(logits, labels, mask=None):
    """The SmoothAdv objective (Salman et al., 2019, with Monte Carlo noise).

    `J = -log((1/m) sum_i softmax(F(x + delta_i))_y)`: the cross-entropy of the soft smoothed
    classifier, the log of the mean (not the mean of the logs, which `noise_loss` is; by Jensen
    `J <= noise_loss`). Arguments as in `noise_loss`.
    Returns:
      scalar float32, averaged over the counted outputs.
    """
    return _masked_mean(_smoothadv_per_output(logits, labels, mask), mask)


def smoothadv_attack(key, objective: Callable, x, *, eps: float, steps: int):
    """PGD in l2 on a per-example objective (Salman et al., 2019).

    From `x`, `steps` steps of size `2 eps / steps` along the per-example gradient normalised to
    unit l2 norm (a random unit direction where the gradient is 0), each followed by the
    projection onto the l2 ball of radius `eps` around `x` and a clamp to [0, 1]. The result is a
    constant for the training gradient (stop_gradient).

    Args:
      key: JAX key for the random directions of zero gradients.
      objective: objective(x_adv [B, ...]) -> float [B], the loss of every example to increase
        (for SmoothAdv: the smoothed loss with the noise draws fixed, model parameters fixed).
      x: float [B, ...] clean inputs in [0, 1].
      eps: l2 radius (>= 0, in the units of `x`).
      steps: number of PGD steps (>= 1).
    Returns:
      x_adv float [B, ...] with `||x_adv - x||_2 <= eps` per example and values in [0, 1].
    """
    eps, steps = _check_eps(eps), _checks.positive_int("steps", steps)
    return _pgd(key, objective, x, eps, steps)


def _pgd(key, objective: Callable, x, eps, steps: int):
    """`smoothadv_attack` without the argument checks; `eps` may be traced (the warm-up)."""
    x = jax.lax.stop_gradient(x)
    step_size = 2.0 * eps / steps
    axes = tuple(range(1, x.ndim))
    gradient_fn = jax.grad(lambda z: jnp.sum(objective(z)))

    def norm(v):
        return jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))

    def body(i, x_adv):
        grad = gradient_fn(x_adv)
        random = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        grad_norm = norm(grad)
        direction = jnp.where(grad_norm > 0, grad, random)
        direction = direction / jnp.maximum(norm(direction), 1e-12)
        delta = x_adv + step_size * direction - x
        delta = delta * jnp.minimum(1.0, eps / jnp.maximum(norm(delta), 1e-12))
        return jnp.clip(x + delta, 0.0, 1.0)

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x))


# ----------------------------------------------------------------------------------------------
# Batch losses for the training loops
# ----------------------------------------------------------------------------------------------


class TrainingLoss(NamedTuple):
    """The training loss of one batch (made by `noise_augmentation`, `consistency`, `smoothadv`).

    Fields:
      name: "noise", "consistency" or "smoothadv".
      settings: ((name, value), ...), the hyperparameters (hashable: compiled steps are cached).
      batch_loss: `batch_loss(key, params, apply, draw, images, labels, mask=None, step=0) ->
        scalar float32`, pure, with `apply(params, z [N, ...]) -> logits [N, ..., K]` and
        `draw(key, x [B, ...]) -> z [B, ...]` one draw of the smoothing noise per example (the
        noise plug-in's per-example sampler: the same key gives the same draw, applied to any
        `x`); `labels [B, ...]`, `mask` optional bool [B, ...] of the outputs that count (a
        segmentation model's labelled pixels); `step` the (possibly traced) optimiser step, used
        by SmoothAdv's radius warm-up. For a classifier `...` is empty; for a segmentation model
        `draw` may return a stacked sample per example (one per smoothing group) that `apply`
        stitches into one prediction (`lrsjax.training.train_segmentation`).
    """

    name: str
    settings: tuple
    batch_loss: Callable


def _copies(key, draw, images, num_copies):
    """float [m, B, ...]: `num_copies` independent noisy copies, copy `i` from split(key, m)[i]."""
    keys = jax.random.split(key, num_copies)
    return jax.vmap(draw, in_axes=(0, None))(keys, images)


def _logits_of_copies(params, apply, copies):
    """float [m, B, ..., K]: one forward pass over all `m * B` copies."""
    num, batch = copies.shape[:2]
    logits = apply(params, copies.reshape((num * batch, *copies.shape[2:])))
    return logits.reshape((num, batch, *logits.shape[1:]))


def _per_example(values, mask):
    """float [B]: the sum of `values [B, ...]` over each example's counted outputs."""
    if mask is not None:
        values = jnp.where(mask, values, 0.0)
    return jnp.sum(values.reshape((values.shape[0], -1)), axis=1)


@functools.cache
def noise_augmentation() -> TrainingLoss:
    """Noise augmentation (Cohen et al., 2019): mean cross-entropy on one noisy copy per example,
    drawn with the step's key itself (so the classifier trainer's results are those of plain
    noise-augmented training)."""

    def batch_loss(key, params, apply, draw, images, labels, mask=None, step=0):
        del step
        logits = apply(params, draw(key, images))
        if mask is None:
            losses = optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), labels
            )
            return jnp.mean(losses)
        return noise_loss(logits[None], labels, mask)

    return TrainingLoss("noise", (), batch_loss)


@functools.cache
def consistency(*, num_copies: int = 2, lbd: float = 10.0, eta: float = 0.5) -> TrainingLoss:
    """Consistency regularization (Jeong & Shin, 2020) on `num_copies` noisy copies of every
    example (see `consistency_loss`).

    Args:
      num_copies: m >= 1 noisy copies per example (the paper: 2).
      lbd: KL weight >= 0 (the paper: 5, 10, 20).
      eta: entropy weight >= 0 (the paper: 0.5).
    """
    num_copies = _checks.positive_int("num_copies", num_copies)
    lbd, eta = _nonnegative("lbd", lbd), _nonnegative("eta", eta)

    def batch_loss(key, params, apply, draw, images, labels, mask=None, step=0):
        del step
        logits = _logits_of_copies(params, apply, _copies(key, draw, images, num_copies))
        return consistency_loss(logits, labels, mask, lbd=lbd, eta=eta)

    settings = (("num_copies", num_copies), ("lbd", lbd), ("eta", eta))
    return TrainingLoss("consistency", settings, batch_loss)


@functools.cache
def smoothadv(
    *, eps: float = 0.5, steps: int = 2, num_copies: int = 2, warmup_steps: int = 0
) -> TrainingLoss:
    """SmoothAdv (Salman et al., 2019): PGD on the smoothed soft classifier, then the mean
    cross-entropy of the adversarial points under the same noise draws ("multi-noise" training).

    The `num_copies` noise draws of every example are fixed for the attack (the same keys give the
    same draws at every attack step and in the training loss); the attack maximises
    `smoothadv_objective` (summed over each example's counted outputs: one perturbation per
    example, as the adversary of a multi-output model has) with `smoothadv_attack` and the model
    held fixed.

    Args:
      eps: l2 radius of the attack in [0, 1] pixel units (the paper's code takes it in units of
        1/256: its 512 is 2.0 here); 0 gives noise augmentation with `num_copies` copies.
      steps: PGD steps (step size 2 eps / steps).
      num_copies: m >= 1 noise draws per example.
      warmup_steps: the radius grows linearly from `eps / warmup_steps` at optimiser step 0 to
        `eps` from step `warmup_steps - 1` on (the paper ramps it over its first 10 epochs);
        0: `eps` from the start.
    """
    eps = _check_eps(eps)
    steps = _checks.positive_int("steps", steps)
    num_copies = _checks.positive_int("num_copies", num_copies)
    warmup_steps = _checks.positive_int("warmup_steps", warmup_steps, minimum=0)

    def batch_loss(key, params, apply, draw, images, labels, mask=None, step=0):
        key_noise, key_attack = jax.random.split(key)
        keys = jax.random.split(key_noise, num_copies)
        frozen = jax.lax.stop_gradient(params)
        radius = eps
        if warmup_steps > 0:
            radius = eps * jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / warmup_steps)

        def copies_of(x):
            return jax.vmap(draw, in_axes=(0, None))(keys, x)

        def objective(x):
            logits = _logits_of_copies(frozen, apply, copies_of(x))
            return _per_example(_smoothadv_per_output(logits, labels, mask), mask)

        adversarial = _pgd(key_attack, objective, images, radius, steps)
        return noise_loss(_logits_of_copies(params, apply, copies_of(adversarial)), labels, mask)

    settings = (
        ("eps", eps),
        ("steps", steps),
        ("num_copies", num_copies),
        ("warmup_steps", warmup_steps),
    )
    return TrainingLoss("smoothadv", settings, batch_loss)


def training_loss(loss) -> TrainingLoss:
    """`loss` as a TrainingLoss: a TrainingLoss, None (noise augmentation) or one of
    `LOSS_NAMES` (that loss with its default hyperparameters)."""
    if loss is None:
        return noise_augmentation()
    if isinstance(loss, TrainingLoss):
        return loss
    if isinstance(loss, str) and loss in LOSS_NAMES:
        return {"noise": noise_augmentation, "consistency": consistency, "smoothadv": smoothadv}[
            loss
        ]()
    _checks.fail(
        "loss",
        loss,
        f"must be a TrainingLoss or one of {list(LOSS_NAMES)}",
        "E.g. lrsjax.training.consistency(lbd=10.0) or loss='smoothadv'.",
    )


def _nonnegative(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        _checks.fail(name, value, "must be a finite number >= 0", "E.g. 0.5.")
    return float(value)


def _check_eps(eps) -> float:
    return _nonnegative("eps", eps)
