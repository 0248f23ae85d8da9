"""`probabilistic_certificate`: a distribution-free upper bound on the probability that a random
transformation changes a classifier's prediction (`docs/math.md`, "Semantic, multiplicative and
probabilistic certificates").

Probabilistic robustness asks how often `f(T(x)) != f(x)` for `T` drawn from a distribution of
transformations, not whether every transformation in a set keeps the class. Counting the changes
among `n` i.i.d. draws gives a binomial count, and its one-sided Clopper-Pearson upper bound
(Clopper & Pearson, 1934) holds for ANY transformation distribution: rotations with
interpolation, clipping, compositions of anything. No composition law is needed.

The bound cannot be small from few draws: with no change observed, the Clopper-Pearson upper
bound is `1 - alpha ** (1 / n)`, and no valid `(1 - alpha)` upper bound can be lower (a failure
probability just below it shows no failure in `n` draws with probability above `alpha`). This is
why the Chernoff-Cramer numbers of CC-Cert (Pautov et al. 2022), reported down to `1e-10` from a
few thousand draws with an empirical moment generating function in place of the true one, are not
offered as certificates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks, _keys, stats


class ProbabilisticCertificate(NamedTuple):
    """The result of `probabilistic_certificate` for one input.

    Fields:
      prediction: int, the model's class at the clean input `x` (`argmax apply_fn(params, x)`).
      changes: int, draws `i` whose transformed input is classified otherwise.
      n: int, the number of draws.
      q_upper: float64, one-sided Clopper-Pearson upper bound at level `alpha` on the probability
        that a random transformation changes the prediction: `BetaInv(1 - alpha; changes + 1,
        n - changes)`, 1 if `changes == n`.
      floor: float64, `1 - alpha ** (1 / n)`: `q_upper` with no change observed, the smallest
        valid upper bound `n` draws can give.
      alpha: float, the error probability of `q_upper`.
      method: str, the statistics ("clopper_pearson_upper").
    """

    prediction: int
    changes: int
    n: int
    q_upper: float
    floor: float
    alpha: float
    method: str


def probabilistic_certificate(
    key,
    apply_fn: Callable,
    params,
    x,
    transform: Callable,
    n: int,
    alpha: float,
    *,
    batch_size: int = 256,
) -> ProbabilisticCertificate:
    """Bounds the probability that a random transformation changes the prediction at `x`.

    Guarantee. Let `q = P_T(argmax f(T(x)) != argmax f(x))` for the distribution of transformations
    `transform(key, x)` with `key` a fresh random key. With probability at least `1 - alpha` over
    the `n` draws, `q <= q_upper`. Valid for any transformation distribution (no composition law,
    clipping and interpolation allowed). It is a statement about the probability of a change, not
    a guarantee that no transformation changes the class.

    Args:
      key: JAX PRNG key. Draw `i` uses `fold_in(key, i)` whatever `batch_size`, so the same key
        gives the same result.
      apply_fn: `apply_fn(params, x) -> logits [num_classes]` for ONE input (deterministic).
      params: the model's parameters (any pytree).
      x: the clean input (any array `apply_fn` accepts).
      transform: `transform(key, x) -> x'`, a pure JAX function, key first: draws one random
        transformation and applies it (it is vmapped over keys). Pass the same function object
        each time to reuse the compiled kernel.
      n: number of draws (>= 1).
      alpha: error probability in (0, 1).
      batch_size: draws per model call (values above `n` are lowered to `n`; the result does not
        depend on it).
    Returns:
      A `ProbabilisticCertificate`.
    Raises:
      ValueError before sampling for invalid arguments (logits not `[num_classes]` with
      `num_classes >= 2`, a transform whose output the model does not accept); after sampling, if
      the model returned a NaN or infinite logit at the clean input or in any draw.
    """
    key = _keys.check_key("key", key)
    n = _checks.positive_int("n", n)
    alpha = _checks.probability("alpha", alpha)
    batch_size = min(_checks.positive_int("batch_size", batch_size), n)
    if not callable(apply_fn):
        _checks.fail("apply_fn", apply_fn, "must be callable", "Pass `apply_fn(params, x)`.")
    if not callable(transform):
        _checks.fail("transform", transform, "must be callable", "Pass `transform(key, x) -> x'`.")
    if n >= 2**31:
        _checks.fail("n", n, "must be < 2**31 (draws are indexed by int32)", "Pass a smaller n.")
    x = jnp.asarray(x)
    _check_shapes(apply_fn, params, x, transform, key)
    clean = np.asarray(apply_fn(params, x), np.float64)
    if not np.all(np.isfinite(clean)):
        _checks.fail("apply_fn", clean, "returned a NaN or infinite logit at the clean input", "")
    prediction = int(np.argmax(clean))
    changes = broken = 0
    for start in range(0, n, batch_size):
        changed, bad = _count_batch(
            key, params, x, jnp.int32(prediction), jnp.int32(start), jnp.int32(n),
            apply_fn=apply_fn, transform=transform, batch_size=batch_size,
        )  # fmt: skip
        changes += int(changed)
        broken += int(bad)
    if broken:
        raise ValueError(
            f"`apply_fn` returned a NaN or infinite logit on {broken} of {n} transformed inputs; "
            "nothing is certified. Fix the model or the transformation (argmax of NaN is class 0)."
        )
    q_upper = float(stats.clopper_pearson_upper(changes, n, alpha))
    return ProbabilisticCertificate(
        prediction=prediction,
        changes=changes,
        n=n,
        q_upper=q_upper,
        floor=float(-np.expm1(np.log(alpha) / n)),
        alpha=alpha,
        method="clopper_pearson_upper",
    )


@functools.partial(jax.jit, static_argnames=("apply_fn", "transform", "batch_size"))
def _count_batch(key, params, x, prediction, start, n, *, apply_fn, transform, batch_size):
    """(changes, non-finite draws) among draws `start .. start + batch_size - 1` below `n`."""
    index = start + jnp.arange(batch_size, dtype=jnp.int32)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)
    moved = jax.vmap(transform, in_axes=(0, None))(keys, x)
    logits = jax.vmap(apply_fn, in_axes=(None, 0))(params, moved)
    valid = index < n
    changed = (jnp.argmax(logits, axis=-1) != prediction) & valid
    broken = ~jnp.isfinite(logits).all(axis=-1) & valid
    return changed.sum(), broken.sum()


def _check_shapes(apply_fn, params, x, transform, key) -> int:
    """Checks with `jax.eval_shape` (no compilation) that the model returns `[num_classes]`,
    `num_classes >= 2`, and accepts what `transform` returns."""
    try:
        clean = jax.eval_shape(apply_fn, params, x)
    except Exception as error:  # the user's model failed on the clean input
        raise ValueError(f"`apply_fn(params, x)` failed on the clean input: {error}") from error
    shape = tuple(getattr(clean, "shape", ()))
    if len(shape) != 1 or shape[0] < 2:
        _checks.fail(
            "apply_fn",
            f"a function returning logits of shape {shape}",
            "must return the logits of ONE input, shape [num_classes] with num_classes >= 2",
            "Return `logits[0]` for a model built for batches.",
        )
    try:
        moved = jax.eval_shape(lambda k: apply_fn(params, transform(k, x)), key)
    except Exception as error:
        raise ValueError(
            f"`apply_fn(params, transform(key, x))` failed: {error}. `transform(key, x)` must "
            "return one input the model accepts (key first; it is vmapped over keys)."
        ) from error
    if tuple(getattr(moved, "shape", ())) != shape:
        _checks.fail(
            "transform",
            f"a transform after which the model returns logits of shape {moved.shape}",
            f"must give inputs on which the model returns logits of shape {shape}",
            "Return one transformed input of the clean input's shape.",
        )
    return shape[0]
