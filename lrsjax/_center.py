"""Center smoothing (Kumar & Goldstein, 2021): a certified output radius for a whole output map.

The smoothed output is a center of the distribution of `f(x + G)` in an output metric: Hamming
distance between label maps (segmentation) or l2 distance between real outputs (embeddings).
Two independent sample sets (`docs/math.md §14`):
  1. center: of `n0` samples, the one with the smallest median distance to the others;
  2. radii (on `n` fresh samples, distances to the center): an order statistic bounds the radius
     of the ball around the center that holds mass `1/2 - delta` (`center_radius`, at `alpha / 2`;
     abstain when none qualifies), and, for each input radius `eps`, the radius `R` holding mass
     `q = Phi(Phi^{-1}(1/2 + delta) + eps / sigma)` (exact binomial tails, `alpha / (2 E)` each
     for `E` radii); `eps_out = (1 + beta) R`.
Hamming distances are histogrammed on the device (`lrsjax.estimators.hamming_histogram`, the
counting kernel with the center as its target); l2 distances are computed on the host in float64
from the samples (`n x D` float32 values, refused up front when they do not fit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
from scipy import stats as scipy_stats

from lrsjax import _checks, _keys, estimators, sampling, stats
from lrsjax._regression import _Flat, gaussian_sigma
from lrsjax.noise import Noise

METRICS = ("hamming", "l2")
# Elements of the `rows x n0 x D` comparison block of step 1 computed at once (host memory).
_BLOCK = 2**24


class CenterCertificate(NamedTuple):
    """The result of `certify_center`. `E` input radii.

    Fields:
      center: the center-smoothed output: int32 label map `[*out]` ("hamming") or float32
        `[*out]` ("l2"); one of the `n0` samples.
      abstain: bool, True when no order statistic bounds the radius holding mass `1/2 - delta`
        (too few samples `n` for `alpha`); nothing is certified then.
      eps: float64 [E], the certified input radii (l2).
      radius: float64 [E], the certified output radius `eps_out = (1 + beta) R` in the metric
        (Hamming: pixels); `inf` where abstained or where no order statistic qualifies.
      mass_radius: float64 [E], `R`, the radius around `center` holding mass `q(eps)` (`inf` when
        no order statistic qualifies).
      k: int64 [E], 1-based order-statistic index of `R` among the `n` distances (0: none).
      center_radius: float64, certified radius of a ball around `center` holding mass at least
        `1/2 - delta` of `f(x + G)` (`inf` where abstained).
      sample_median: float64, the center's median distance to the `n0` center-stage samples
        (an estimate of the half-mass radius, not a bound).
      smoothing_error: float64, distance between the center and the clean output `f(x)`.
      method: str.
    """

    center: np.ndarray
    abstain: bool
    eps: np.ndarray
    radius: np.ndarray
    mass_radius: np.ndarray
    k: np.ndarray
    center_radius: float
    sample_median: float
    smoothing_error: float
    method: str


def certify_center(
    key,
    apply_fn: Callable,
    params,
    x,
    noise: Noise,
    *,
    n0: int,
    n: int,
    alpha: float,
    eps,
    batch_size: int,
    metric: str = "hamming",
    delta: float = 0.05,
    beta: float = 2.0,
) -> CenterCertificate:
    """Center smoothing: the center-smoothed output and its certified output radius.

    Guarantee (Kumar & Goldstein, 2021, Theorem 1, in the form of `docs/math.md §14`). With
    probability at least `1 - alpha` over the samples (`alpha / 2` for (a), `alpha / 2` for all
    radii of (b) together), if the result does not abstain: (a) the ball of radius `center_radius`
    around `center` holds mass at least `1/2 - delta` of `f(x + G)`; (b) for every `eps[j]` and
    every `x'` with `||x' - x||_2 < eps[j]`, every output `z'` that is a (`beta`, `delta`)-center
    at `x'` satisfies `d(center, z') <= radius[j]`. A (`beta`, `delta`)-center `z'` at `x'` is a
    point whose ball of radius `beta * rho(x')` holds mass at least `1/2 - delta` of `f(x' + G)`,
    where `rho(x')` is the smallest radius of any ball holding mass `1/2 + delta`; with `beta = 2`
    the center chosen among samples at `x'` is one with high probability (some sample lies in the
    smallest such ball, and every point of that ball is within `2 rho(x')` of it). The metric must
    satisfy the triangle inequality (Hamming and l2 do). Unlike the reference code, (a) is an
    order statistic of the fresh samples rather than a test of the center stage's median (which
    is biased low by the choice of the center and fails for moderate `n0`; `docs/math.md §14`).

    Args:
      key: JAX PRNG key (split into the center and estimation stages).
      apply_fn: `apply_fn(params, x)` for ONE input: logits `[*out, num_classes]` ("hamming": the
        label map is their argmax) or real outputs `[*out]` ("l2").
      params: the model's parameters.
      x: one input `[C, H, W]` in [0, 1].
      noise: `lrsjax.noise.isotropic_gaussian(x.shape, sigma)`.
      n0: samples of the center stage (>= 1); `O(n0^2)` distances are computed on the host.
      n: samples of the radius stage (>= 1), independent of the center stage's.
      alpha: error probability in (0, 1).
      eps: an l2 input radius >= 0, or a 1-D array of them (one certificate each, jointly).
      batch_size: samples per model call.
      metric: "hamming" (label maps) or "l2" (real outputs).
      delta: the mass slack in (0, 1/2) (the paper's Delta, 0.05).
      beta: the approximation factor >= 1 of the centers compared (2: centers chosen among
        samples).
    Returns:
      A `CenterCertificate`.
    """
    key = _keys.check_key("key", key)
    sigma = gaussian_sigma(noise)
    _checks.one_of("metric", metric, METRICS)
    n0 = _checks.positive_int("n0", n0)
    n = _checks.positive_int("n", n)
    alpha = _checks.probability("alpha", alpha)
    delta = _checks.probability("delta", delta)
    if delta >= 0.5:
        _checks.fail("delta", delta, "must lie in (0, 1/2)", "Pass e.g. delta=0.05.")
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 1 <= beta < math.inf:
        _checks.fail("beta", beta, "must be a finite number >= 1", "Pass beta=2.0.")
    radii = _radii(eps)
    batch_size = _checks.positive_int("batch_size", batch_size)
    key_center, key_estimate = jax.random.split(key)

    if metric == "hamming":
        sampler = sampling.make_output_sampler(
            apply_fn, noise, batch_size=batch_size, output="labels"
        )
        labels = sampler(key_center, params, x, n0).values
        flat = labels.reshape(n0, -1)
        index, sample_median = _center_index(flat, _hamming_rows)
        center = labels[index]
        histogram = _hamming_histogram(
            key_estimate, apply_fn, params, x, noise, center, n, batch_size
        )
        distances = None
        clean = np.asarray(apply_fn(params, _prepared_x(noise, x)))
        smoothing_error = float(np.count_nonzero(np.argmax(clean, axis=-1) != center))
    else:
        sampler = sampling.make_output_sampler(_Flat(apply_fn), noise, batch_size=batch_size)
        values = np.asarray(sampler(key_center, params, x, n0).values, np.float64)
        index, sample_median = _center_index(values, _l2_rows)
        center_flat = values[index]
        estimate = np.asarray(sampler(key_estimate, params, x, n).values, np.float64)
        distances = np.sort(np.linalg.norm(estimate - center_flat, axis=1))
        histogram = None
        clean = np.asarray(_Flat(apply_fn)(params, _prepared_x(noise, x)), np.float64)
        smoothing_error = float(np.linalg.norm(clean - center_flat))
        shape = tuple(np.shape(jax.eval_shape(apply_fn, params, _prepared_x(noise, x))))
        center = center_flat.astype(np.float32).reshape(shape)

    # (a) the radius holding mass 1/2 - delta, at alpha / 2
    k_center = stats.upper_order_index(0.5 - delta, n, alpha / 2)
    abstain = k_center == 0
    center_radius = np.inf if abstain else _order_statistic(k_center, histogram, distances)

    # (b) one order statistic per input radius, Bonferroni over the radii at alpha / 2
    level = alpha / (2 * radii.size)
    base = scipy_stats.norm.ppf(0.5 + delta)
    ks = np.zeros(radii.size, np.int64)
    mass_radius = np.full(radii.size, np.inf)
    for j, e in enumerate(radii):
        q = float(scipy_stats.norm.cdf(base + e / sigma))
        ks[j] = stats.upper_order_index(q, n, level)
        if ks[j] > 0:
            mass_radius[j] = _order_statistic(ks[j], histogram, distances)
    radius = np.where(abstain, np.inf, (1.0 + beta) * mass_radius)
    return CenterCertificate(
        center=center,
        abstain=bool(abstain),
        eps=radii,
        radius=np.asarray(radius, np.float64),
        mass_radius=mass_radius,
        k=ks,
        center_radius=float(center_radius),
        sample_median=float(sample_median),
        smoothing_error=smoothing_error,
        method=f"center_smoothing:{metric}:delta={delta:g}:beta={beta:g}:order_statistics",
    )


def _radii(eps) -> np.ndarray:
    arr = _checks.as_float_array("eps", eps)
    if arr.ndim > 1 or arr.size == 0 or np.any(arr < 0):
        _checks.fail("eps", arr, "must be one radius >= 0 or a 1-D array of them", "E.g. 0.25.")
    return arr.reshape(-1)


def _prepared_x(noise: Noise, x):
    """The clean input as the sampler receives it (checked by the noise's `prepare`)."""
    return noise.prepare(noise, x).x


def _hamming_rows(samples: np.ndarray, rows: slice) -> np.ndarray:
    return (samples[rows, None, :] != samples[None, :, :]).sum(axis=2)


def _l2_rows(samples: np.ndarray, rows: slice) -> np.ndarray:
    return np.linalg.norm(samples[rows, None, :] - samples[None, :, :], axis=2)


def _center_index(samples: np.ndarray, rows_fn) -> tuple[int, float]:
    """(index of the sample with the smallest median distance to all samples, that median).

    The median is the order statistic `X_(ceil(m / 2))` of the `m` distances (itself included);
    ties go to the smallest index.
    """
    m = samples.shape[0]
    middle = max(1, math.ceil(m / 2)) - 1
    medians = np.empty(m)
    rows = max(1, _BLOCK // max(m * samples.shape[1], 1))
    for start in range(0, m, rows):
        block = rows_fn(samples, slice(start, min(start + rows, m)))
        medians[start : start + block.shape[0]] = np.partition(block, middle, axis=1)[:, middle]
    index = int(np.argmin(medians))
    return index, float(medians[index])


def _hamming_histogram(key, apply_fn, params, x, noise, center, n, batch_size) -> np.ndarray:
    """Histogram [D + 1] of the Hamming distances of `n` samples' label maps to `center`."""
    out_shape = tuple(np.shape(center))
    one = noise._replace(group=np.zeros(out_shape, np.int32))  # every output in the one group
    prepared = one.prepare(one, x)
    num_classes = sampling.check_logits(apply_fn, params, prepared.example, out_shape, None)
    estimator = estimators.hamming_histogram()
    sampling.check_batch_memory(
        batch_size, bytes_per_element=prepared.bytes_per_element, estimators=(estimator,),
        num_classes=num_classes, num_outputs=int(np.prod(out_shape)),
        input_size=prepared.input_size, devices=jax.devices(),
    )  # fmt: skip
    run = sampling.kernel(
        apply_fn, one, prepared, estimator, batch_size=batch_size, num_classes=num_classes
    )
    counts = run.count(key, params, n, target=np.asarray(center, np.int32))
    sampling.raise_on_nonfinite(counts)
    return np.asarray(counts.counts, np.int64)


def _order_statistic(k: int, histogram, distances) -> float:
    """`X_(k)` (1-based) of the distances, from their histogram or their sorted values."""
    if histogram is not None:
        return float(np.searchsorted(np.cumsum(histogram), k, side="left"))
    # l2 distances are float64 from float32 outputs: widen by a relative 1e-12 (toward larger R).
    return float(distances[k - 1]) * (1.0 + 1e-12)
