"""Center smoothing as a method of a job (`Method.run`): the baseline of Kumar & Goldstein (2021).

One center-smoothed label map per image (`lrsjax.certify_center`, Hamming metric) with a certified
output radius `eps_out` per l2 budget: at most `floor(eps_out)` pixels of the center map can change
(against any (beta, delta)-center at the perturbed input; `docs/math.md §14`). Its record counts the
evaluated pixels of the center map that provably keep their label, `max(0, E - floor(eps_out))`,
and the correct ones, `max(0, C - floor(eps_out))` (every changed pixel may be one of them); an
abstained or unbounded certificate counts 0.
"""

from __future__ import annotations

import time

import numpy as np

from lrsjax import results
from lrsjax._center import certify_center
from lrsjax.pipelines import _common
from lrsjax.pipelines._method import Item, Method, MethodResult, Model, timing_prefix


def certified_counts(radius: np.ndarray, abstain: bool, num: int) -> list:
    """`max(0, num - floor(radius))` per budget; 0 where abstained or the radius is infinite."""
    radius = np.asarray(radius, np.float64)
    if abstain:
        return [0] * radius.size
    finite = np.isfinite(radius)
    changed = np.floor(np.where(finite, radius, 0.0)).astype(np.int64)
    return np.where(finite, np.maximum(num - changed, 0), 0).astype(np.int64).tolist()


def run_center(
    method: Method, key, item: Item, model: Model, *, primary: bool = False, stages=None
) -> MethodResult:
    """`run_method` for center smoothing: one `certify_center` call on the item's image."""
    if stages is None:
        stages = _common.Stages((f"sample {method.stage}",), desc=method.stage, enabled=False)
    noise = method.noise(item.x) if callable(method.noise) else method.noise
    with stages.stage(f"sample {method.stage}", method.samples):
        start = time.perf_counter()
        cert = certify_center(
            key, model.apply_fn, model.params, item.x, noise, eps=method.budgets, **method.options
        )
        seconds = time.perf_counter() - start
    prediction = np.asarray(cert.center, np.int64).reshape(-1)
    abstain = np.full(prediction.shape, cert.abstain)
    evaluated, labels = item.evaluated, item.labels
    correct = evaluated & ~abstain & (prediction == labels)
    extra = {
        **(method.extra or {}),
        "eps_out": cert.radius.tolist(),
        "center_radius": cert.center_radius,
        "sample_median": cert.sample_median,
        "abstain": cert.abstain,
        "certificate": cert.method,
    }
    record = results.method_record(
        "center",
        method.budgets,
        certified_counts(cert.radius, cert.abstain, int(evaluated.sum())),
        certified_counts(cert.radius, cert.abstain, int(correct.sum())),
        metrics=None
        if primary
        else results.output_metrics(
            prediction, labels, abstain, item.num_classes, evaluated=evaluated,
            ignore_label=item.ignore_label,
        ),
        extra=extra,
    )  # fmt: skip
    available = {
        "prediction": lambda: prediction.reshape(item.shape).astype(np.int32),
        "abstain": lambda: abstain.reshape(item.shape),
    }
    suffix = "" if primary else f"__{method.name}"
    arrays = {f"{name}{suffix}": available[name]() for name in method.arrays if name in available}
    timings = {f"{timing_prefix(method)}_sampling_s": seconds}
    return MethodResult({method.name: record}, arrays, timings)
