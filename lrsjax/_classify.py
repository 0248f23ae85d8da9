"""Single-output classifiers: Cohen et al.'s CERTIFY and PREDICT, and SegCertify in one call.

`certify_classifier` is `lrsjax.certify` on a model with one output: the classifier's logits
`[num_classes]` become logits of output shape `(1,)`, and the noise gets a single smoothing group.
Selection on `n0` samples, estimation on `n` fresh ones, a one-sided Clopper-Pearson bound at level
`alpha` (one output, so no correction), abstention when the bound does not exceed 1/2, and the
noise's own certificate (Cohen et al., 2019, Theorem 1 for Gaussian noise; `docs/math.md`,
"Single-output classifiers"). `predict_classifier` is Cohen et al.'s PREDICT (a two-sided binomial
test between the two most frequent classes; Hung & Fithian, 2016). Both take one input or a batch
`[B, ...]` (one key per input, `fold_in(key, i)`), and reuse one compiled kernel for every input.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from scipy import stats as scipy_stats

from lrsjax import _checks, _keys, sampling, stats
from lrsjax._certify import Certificate, certify
from lrsjax._sparse import SparseBinary
from lrsjax.estimators import ProbabilityEstimate
from lrsjax.noise import Noise, isotropic_gaussian, single_output

_NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}
_BASE_P = {"l1": 1.0, "l2": 2.0}


class ClassifierCertificate(NamedTuple):
    """The result of `certify_classifier`. Scalars for one input; a leading axis [B] for a batch.

    Fields:
      prediction: int64, the smoothed class (majority vote on the `n0` selection samples); -1 where
        the certificate abstains.
      abstain: bool, True where nothing is certified (`p_lower <= 1/2`).
      p_lower: float64, one-sided Clopper-Pearson lower bound at level `alpha` on the probability
        of the selected class (from the `n` estimation samples).
      counts: int64, estimation samples whose argmax is the selected class.
      radius: float64, the certified radius in `norm` (by default the noise's threat model: l2 for
        Gaussian, l1 for Laplace and uniform; the parameter's own measure for transformation
        noises): the prediction is kept for every perturbation of norm `< radius`. 0 where
        abstained.
      interval: float64 [2] ([B, 2]) or None: the certified interval of a transformation
        parameter (multiplicative smoothing), None for additive noises.
      method: str, the certificate, the statistics and the norm of `radius`.
    """

    prediction: np.ndarray
    abstain: np.ndarray
    p_lower: np.ndarray
    counts: np.ndarray
    radius: np.ndarray
    interval: np.ndarray | None
    method: str


class ClassifierPrediction(NamedTuple):
    """The result of `predict_classifier`. Scalars for one input; a leading axis [B] for a batch.

    Fields:
      prediction: int64, the predicted class, -1 (abstain) where `p_value > alpha`.
      p_value: float64, two-sided binomial-test p-value of the top count against the runner-up's
        (`scipy.stats.binomtest(n_A, n_A + n_B, 1/2)`).
    """

    prediction: np.ndarray
    p_value: np.ndarray


@dataclasses.dataclass(frozen=True)
class _SingleOutput:
    """`apply_fn` with logits `[num_classes]` seen as one output `[1, num_classes]`.

    It compares and hashes by the wrapped function, so every call with the same `apply_fn` hits
    the same compiled sampling kernel (jit caches on the function's hash and equality).
    """

    apply_fn: Callable

    def __call__(self, params, x):
        return self.apply_fn(params, x)[None]


def certify_classifier(
    key,
    apply_fn: Callable,
    params,
    x,
    noise: Noise,
    *,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    norm=None,
    progress: bool = False,
) -> ClassifierCertificate:
    """Cohen et al.'s CERTIFY for a single-output classifier, under any single-group noise.

    Guarantee. For each input, with probability at least `1 - alpha` over the sampling: if the
    result does not abstain, the smoothed classifier `g(x') = argmax_c P(f(x' + noise) = c)` equals
    `prediction` for every `x'` with `||x' - x|| < radius` in `norm` (Cohen et al., 2019, Theorem 1:
    Gaussian `radius = sigma * Phi^{-1}(p_lower)` in l2; Yang et al., 2020: uniform `lam (2 p_lower
    - 1)` in l1; Teng et al., 2020: Laplace `-lam ln(2 (1 - p_lower))` in l1; `docs/math.md`,
    "Single-output classifiers"). The probability is per input: over a data set, the expected
    fraction of wrong certificates is at most `alpha`. Abstention is not bounded by `alpha`.

    Other norms (`norm`) follow from norm inequalities in dimension `d = x.size` (one input):
    `||v||_2 <= d^(1/2 - 1/p) ||v||_p` (p >= 2) and `||v||_1 <= d^(1 - 1/p) ||v||_p`; l_p balls for
    `1 <= p <= 2` lie inside the l2 ball of the same radius. Uniform noise has a sharper l_inf form,
    `2 lam (1 - (3/2 - p_lower)^(1/d))` (Yang et al., 2020).

    Args:
      key: JAX PRNG key. A batch uses `fold_in(key, i)` for input `i`: input `i` of a batch gets
        the result of a single call with that key.
      apply_fn: `apply_fn(params, x) -> logits [num_classes]` for ONE input (deterministic: eval
        mode, no dropout, no batch statistics). Pass the same function object each time to reuse
        the compiled kernel.
      params: the model's parameters (any pytree).
      x: one input (an image `[C, H, W]` in [0, 1] for the image noises) or a batch `[B, C, H, W]`.
        One input has the rank of the noise's region map plus one (images: 3); a batch one more.
      noise: an `lrsjax.noise.Noise` with ONE smoothing group (e.g. `isotropic_gaussian`,
        `isotropic_laplace`, `isotropic_uniform`).
      n0: selection samples (>= 1).
      n: estimation samples (>= 1); `alpha ** (1 / n) > 1/2` is required to certify anything.
      alpha: error probability in (0, 1).
      batch_size: samples per model call.
      norm: None (the noise's threat model), "l1", "l2", "linf", or a number p >= 1 (`math.inf`
        is l_inf). Only for noises whose certificate is an l1 or l2 ball.
      progress: progress bars of the sampling stages.
    Returns:
      A `ClassifierCertificate`.
    Raises:
      ValueError (before sampling) for a noise with several groups, logits that are not
      `[num_classes]` with `num_classes >= 2`, a norm the noise cannot certify, or settings under
      which nothing can be certified; see `lrsjax.certify` for the others.
    """
    key = _keys.check_key("key", key)
    single, batched = _single_group(noise, x)
    target_p = _check_norm(norm)
    probe = _probe_certificate(single)
    if target_p is not None and (probe.base_certs is None or probe.base_certs.norm not in _BASE_P):
        _checks.fail(
            "norm",
            norm,
            f"is only available for noises certifying an l1 or l2 ball; {single.kind} noise "
            "certifies its radius in its own measure",
            "Pass norm=None.",
        )
    inputs = x if batched else [x]
    wrapped = _SingleOutput(apply_fn)
    _check_classifier(apply_fn, params, single, inputs[0])
    results = []
    for i in range(len(inputs)):
        key_i = jax.random.fold_in(key, i) if batched else key
        cert = certify(
            key_i, wrapped, params, inputs[i], single, n0=n0, n=n, alpha=alpha,
            batch_size=batch_size, progress=progress,
        )  # fmt: skip
        dimension = int(np.size(inputs[i])) if target_p is not None else 0
        results.append(_from_counts(single, cert, n, alpha, target_p, dimension))
    if not batched:
        return results[0]
    intervals = [r.interval for r in results]
    return ClassifierCertificate(
        prediction=np.array([r.prediction for r in results], np.int64),
        abstain=np.array([r.abstain for r in results], bool),
        p_lower=np.array([r.p_lower for r in results], np.float64),
        counts=np.array([r.counts for r in results], np.int64),
        radius=np.array([r.radius for r in results], np.float64),
        interval=None if intervals[0] is None else np.stack(intervals),
        method=results[0].method,
    )


def predict_classifier(
    key, apply_fn: Callable, params, x, noise: Noise, *, n: int, alpha: float, batch_size: int
) -> ClassifierPrediction:
    """Cohen et al.'s PREDICT: the smoothed class, or -1 (abstain), with a two-sided binomial test.

    Guarantee (Hung & Fithian, 2016, as used by Cohen et al., 2019): for each input, the
    probability that a class other than the smoothed classifier's `g(x)` is returned is at most
    `alpha`. A returned class carries no radius (use `certify_classifier`).

    Draws `n` samples, takes the two most frequent classes `A`, `B` (ties: lowest index first) and
    returns `A` when `binomtest(n_A, n_A + n_B, 1/2)` (two-sided) has p-value `<= alpha`.

    Args:
      key, apply_fn, params, x, noise, batch_size: as in `certify_classifier` (a batch uses
        `fold_in(key, i)` for input `i`).
      n: samples (>= 1); the smallest p-value is `2 * 2**-n`, so `n` must satisfy
        `2**(1 - n) <= alpha` (otherwise every input would abstain and the call is refused).
      alpha: error probability in (0, 1).
    Returns:
      A `ClassifierPrediction`.
    """
    key = _keys.check_key("key", key)
    single, batched = _single_group(noise, x)
    n = _checks.positive_int("n", n)
    alpha = _checks.probability("alpha", alpha)
    batch_size = _checks.positive_int("batch_size", batch_size)
    if 2.0 ** (1 - n) > alpha:
        _checks.fail(
            "n",
            n,
            f"is too small for alpha={alpha}: the smallest two-sided p-value of n samples is "
            f"2 * 2**-n = {2.0 ** (1 - n):.6g} > alpha, so every input would abstain",
            f"Pass n >= {_min_predict_samples(alpha)}.",
        )
    inputs = x if batched else [x]
    num_classes = _check_classifier(apply_fn, params, single, inputs[0])
    counter = sampling.make_counter(
        _SingleOutput(apply_fn), single, mode="votes", batch_size=min(batch_size, n),
        num_classes=num_classes,
    )  # fmt: skip
    predictions, p_values = [], []
    for i in range(len(inputs)):
        key_i = jax.random.fold_in(key, i) if batched else key
        votes = np.asarray(counter(key_i, params, inputs[i], n).counts, np.int64).reshape(-1)
        prediction, p_value = _predict_decision(votes, alpha)
        predictions.append(prediction)
        p_values.append(p_value)
    if not batched:
        return ClassifierPrediction(np.int64(predictions[0]), np.float64(p_values[0]))
    return ClassifierPrediction(np.array(predictions, np.int64), np.array(p_values, np.float64))


def segcertify(
    key,
    apply_fn: Callable,
    params,
    x,
    sigma: float,
    *,
    n0: int,
    n: int,
    alpha: float,
    tau: float = 0.75,
    batch_size: int,
    progress: bool = False,
) -> Certificate:
    """SegCertify (Fischer et al., 2021) in one call: isotropic Gaussian smoothing, Holm's test.

    `lrsjax.certify(key, apply_fn, params, x, isotropic_gaussian(x.shape, sigma), ...,
    correction="holm", tau=tau)`. Guarantee: with probability at least `1 - alpha`, every pixel
    that does not abstain keeps its prediction for every `||x' - x||_2 < sigma * Phi^{-1}(tau)`
    (the `radius` of those pixels); `docs/math.md`, "Single-output classifiers".

    Args:
      apply_fn: `apply_fn(params, x) -> logits [H, W, num_classes]` for one image `[C, H, W]`.
      sigma: noise standard deviation in [0, 1] pixel units.
      tau: the probability threshold in (1/2, 1).
      key, params, x, n0, n, alpha, batch_size, progress: as in `lrsjax.certify`.
    """
    shape = np.shape(x)
    if len(shape) != 3:
        _checks.fail("x", np.asarray(x), "must be one image [C, H, W]", "Pass one image.")
    return certify(
        key, apply_fn, params, x, isotropic_gaussian(shape, sigma), n0=n0, n=n, alpha=alpha,
        batch_size=batch_size, correction="holm", tau=tau, progress=progress,
    )  # fmt: skip


def lp_radius_from_l2(r2, d, p):
    """Certified l_p radius implied by a certified l2 radius in dimension `d`.

    `||v||_2 <= d^(1/2 - 1/p) ||v||_p` for `p >= 2` (Hoelder), so every `||v||_p < r2 /
    d^(1/2 - 1/p)` lies in the certified l2 ball; for `1 <= p <= 2`, `||v||_2 <= ||v||_p` and the
    radius is `r2` itself (the loss in `d` is the "curse of dimensionality" of Kumar et al.,
    2020). Converted radii are rounded down by one unit in the last place.

    Args:
      r2: float >= 0, any shape: l2 radii.
      d: int >= 1: the input dimension (all elements of one input, e.g. C * H * W).
      p: float >= 1 or `math.inf` (or "l1", "l2", "linf").
    Returns:
      float64 radii, the shape of `r2`.
    """
    r2 = _nonnegative("r2", r2)
    d = _checks.positive_int("d", d)
    if p is None:
        _checks.fail("p", p, "must be a number p >= 1 or 'l1', 'l2', 'linf'", "Pass e.g. math.inf.")
    return _convert(r2, 2.0, d, _check_norm(p, name="p"))


def _convert(radius: np.ndarray, base_p: float, d: int, p: float) -> np.ndarray:
    """Radius in l_p from a radius in l_{base_p} (base_p 1 or 2): `r / d^(1/base_p - 1/p)`."""
    if p <= base_p:
        return radius
    exponent = 1.0 / base_p - (0.0 if math.isinf(p) else 1.0 / p)
    return np.nextafter(radius / float(d) ** exponent, 0.0)


def uniform_l1_radius(p_lower, half_width, p_upper_other=None):
    """Certified l1 radius of uniform noise on `[-lam, lam]^d`: `lam (p_A - p_B)`, 0 where
    `p_A <= p_B` (Yang et al., 2020; `docs/math.md`, "Single-output classifiers").

    The likelihood ratio of the noise at `x` and `x + delta` takes only the values 0, 1 and
    infinity, so every class moves by at most the total variation `||delta||_1 / (2 lam)`.

    Args:
      p_lower: float [...] in [0, 1]: lower bound `p_A` on the probability of the predicted class.
      half_width: float > 0, `lam`.
      p_upper_other: optional float [...]: an upper bound `p_B` on the probability of EVERY other
        class, valid jointly with `p_lower` (e.g. Clopper-Pearson bounds with a union bound over
        all classes). Default: the binary form `p_B = 1 - p_A`, `lam (2 p_A - 1)`.
    Returns:
      float64 radii, rounded down by one unit in the last place.
    """
    gap = _gap(p_lower, p_upper_other)
    lam = _positive("half_width", half_width)
    return np.where(gap > 0, np.nextafter(lam * np.maximum(gap, 0.0), 0.0), 0.0)


def uniform_linf_radius(p_lower, half_width, d, p_upper_other=None):
    """Certified l_inf radius of uniform noise on `[-lam, lam]^d`: `2 lam (1 - (1 - (p_A -
    p_B) / 2)^(1/d))`; binary (`p_B = 1 - p_A`): `2 lam (1 - (3/2 - p_A)^(1/d))`. 0 where `p_A <=
    p_B` (Yang et al., 2020; `docs/math.md`). Arguments as in `uniform_l1_radius`; `d` is the
    input dimension. Rounded down by one unit in the last place."""
    gap = _gap(p_lower, p_upper_other)
    lam = _positive("half_width", half_width)
    d = _checks.positive_int("d", d)
    safe = np.where(gap > 0, gap, 0.5)
    radius = -2.0 * lam * np.expm1(np.log1p(-safe / 2.0) / float(d))
    return np.where(gap > 0, np.nextafter(radius, 0.0), 0.0)


def laplace_l1_radius(p_lower, scale, p_upper_other=None):
    """Certified l1 radius of i.i.d. Laplace noise of scale `lam` (Teng et al., 2020):

        max{ (lam / 2) ln(p_A / p_B), -lam ln(1 - p_A + p_B) },  0 where p_A <= p_B.

    Both terms follow from `exp(-||delta||_1 / lam) <= density(z - delta) / density(z) <=
    exp(||delta||_1 / lam)`; in the binary form (`p_B = 1 - p_A`, the default) the second wins:
    `-lam ln(2 (1 - p_A))`. Arguments as in `uniform_l1_radius`. Rounded down by one unit in the
    last place; `inf` when `p_A = 1` in the binary form or `p_B = 0`.
    """
    gap = _gap(p_lower, p_upper_other)
    lam = _positive("scale", scale)
    p_a = np.asarray(p_lower, np.float64)
    p_b = p_a - gap
    with np.errstate(divide="ignore"):
        ratio = 0.5 * lam * (np.log(p_a) - np.log(p_b))
        mass = -lam * np.log1p(-gap)
    radius = np.maximum(ratio, mass)
    radius = np.where(np.isinf(radius), radius, np.nextafter(radius, 0.0))
    return np.where(gap > 0, radius, 0.0)


def _gap(p_lower, p_upper_other) -> np.ndarray:
    """`p_A - p_B` (binary form `2 p_A - 1` without `p_B`), after checking both lie in [0, 1]."""
    p_a = _checks.as_float_array("p_lower", p_lower)
    if np.any((p_a < 0) | (p_a > 1)):
        _checks.fail("p_lower", p_a, "must lie in [0, 1]", "Pass probability bounds.")
    if p_upper_other is None:
        return 2.0 * p_a - 1.0
    p_b = _checks.as_float_array("p_upper_other", p_upper_other)
    if np.any((p_b < 0) | (p_b > 1)):
        _checks.fail("p_upper_other", p_b, "must lie in [0, 1]", "Pass probability bounds.")
    return p_a - p_b


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _checks.fail(name, value, "must be a real number > 0", "")
    if not (math.isfinite(value) and value > 0):
        _checks.fail(name, value, "must be finite and > 0", "")
    return float(value)


def _from_counts(noise: Noise, cert: Certificate, n: int, alpha: float, target_p, dimension):
    """One input's `ClassifierCertificate` from the selected class and its count (host, float64):
    the Clopper-Pearson bound at `alpha` and the noise's certificate, converted to `target_p`."""
    prediction = np.asarray(cert.prediction, np.int64).reshape(1)
    counts = np.asarray(cert.counts, np.int64).reshape(1)
    p_lower = np.asarray(stats.clopper_pearson_lower(counts, n, alpha), np.float64).reshape(1)
    estimate = ProbabilityEstimate(p_lower, counts, "neyman_pearson+clopper_pearson")
    out = noise.certificates["probability"](noise, prediction, estimate, np.ones(1, bool))
    abstain = bool(np.asarray(out.abstain).reshape(-1)[0])
    radius = 0.0 if out.radius is None else float(np.asarray(out.radius).reshape(-1)[0])
    method = f"{out.method}:{estimate.method}"
    if target_p is not None and not abstain:
        base = out.base_certs.norm
        radius = float(_convert(np.float64(radius), _BASE_P[base], dimension, target_p))
        widths = noise.parameters.get("half_widths")
        if base == "l1" and widths is not None and math.isinf(target_p):
            finite = np.asarray(widths, np.float64)[np.isfinite(widths)]
            lam = float(np.asarray(finite.astype(np.float32), np.float64).min())
            radius = max(radius, float(uniform_linf_radius(p_lower[0], lam, dimension)))
    if target_p is not None:
        method += f":radius=l{'inf' if math.isinf(target_p) else f'{target_p:g}'}"
    interval = None if out.interval is None else np.asarray(out.interval, np.float64).reshape(2)
    return ClassifierCertificate(
        prediction=np.int64(-1 if abstain else prediction[0]),
        abstain=np.bool_(abstain),
        p_lower=np.float64(p_lower[0]),
        counts=np.int64(counts[0]),
        radius=np.float64(0.0 if abstain else radius),
        interval=interval,
        method=method,
    )


def _predict_decision(votes: np.ndarray, alpha: float):
    """(class or -1, p-value) from the vote counts `[num_classes]` of PREDICT's `n` samples."""
    order = np.argsort(-votes, kind="stable")
    top, runner_up = int(votes[order[0]]), int(votes[order[1]])
    p_value = float(scipy_stats.binomtest(top, top + runner_up, 0.5).pvalue)
    return (int(order[0]) if p_value <= alpha else -1), p_value


def _min_predict_samples(alpha: float) -> int:
    """The smallest `n` with `2**(1 - n) <= alpha`."""
    n = 1
    while 2.0 ** (1 - n) > alpha:
        n += 1
    return n


def _single_group(noise, x) -> tuple[Noise, bool]:
    """The noise with one output in its single group, and whether `x` is a batch."""
    single = single_output(noise, "noise")
    if isinstance(x, SparseBinary):
        return single, False
    rank = len(np.shape(noise.region)) + 1
    ndim = np.ndim(x)
    if ndim == rank:
        return single, False
    if ndim == rank + 1:
        if np.shape(x)[0] == 0:
            _checks.fail("x", np.asarray(x), "must hold at least one input", "")
        return single, True
    _checks.fail(
        "x",
        np.asarray(x),
        f"must be one input of rank {rank} or a batch of rank {rank + 1} for this noise",
        "Pass one image [C, H, W] or a batch [B, C, H, W].",
    )


def _check_classifier(apply_fn, params, noise: Noise, x) -> int:
    """Checks (with `jax.eval_shape`, before sampling) that `apply_fn` returns `[num_classes]`."""
    if not callable(apply_fn):
        _checks.fail("apply_fn", apply_fn, "must be callable", "Pass `apply_fn(params, x)`.")
    with warnings.catch_warnings():  # certify / the counter warn about the input themselves
        warnings.simplefilter("ignore")
        example = noise.prepare(noise, x).example
    out = jax.eval_shape(apply_fn, params, example)
    shape = tuple(getattr(out, "shape", ()))
    if len(shape) != 1 or shape[0] < 2:
        _checks.fail(
            "apply_fn",
            f"a function returning logits of shape {shape}",
            "must return the logits of ONE input, shape [num_classes] with num_classes >= 2",
            "Return `logits[0]` for a model built for batches, or use lrsjax.certify for "
            "multi-output models.",
        )
    return int(shape[0])


def _probe_certificate(noise: Noise):
    """The noise's certificate for a made-up bound (checks, before sampling, that it exists and
    certifies a radius or an interval for one output)."""
    certificate = noise.certificates.get("probability")
    if certificate is None:
        _checks.fail(
            "noise",
            f"a {noise.kind} noise",
            "must certify from a Clopper-Pearson bound (its `certificates` lack 'probability')",
            "Use lrsjax.certify with this noise's own estimate.",
        )
    estimate = ProbabilityEstimate(np.array([0.9]), np.array([9], np.int64), "probe")
    out = certificate(noise, np.zeros(1, np.int64), estimate, np.ones(1, bool))
    if out.radius is None and out.interval is None:
        _checks.fail(
            "noise",
            f"a {noise.kind} noise",
            "must certify a radius or a parameter interval for one output",
            "Use lrsjax.certify, whose Certificate carries this noise's certificate.",
        )
    return out


def _check_norm(norm, name: str = "norm"):
    """None, or the norm's p in [1, inf]."""
    if norm is None:
        return None
    if isinstance(norm, str):
        if norm not in _NORMS:
            _checks.fail(name, norm, f"must be one of {tuple(_NORMS)} or a number p >= 1", "")
        return _NORMS[norm]
    if isinstance(norm, bool) or not isinstance(norm, numbers.Real) or not norm >= 1:
        _checks.fail(name, norm, "must be a number p >= 1 (math.inf for l_inf)", "Pass e.g. 2.")
    return float(norm)


def _nonnegative(name: str, value) -> np.ndarray:
    arr = _checks.as_float_array(name, value)
    if np.any(arr < 0):
        _checks.fail(name, arr, "must be >= 0", "")
    return arr
