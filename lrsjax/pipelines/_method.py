"""A certification method and `run_method`: certify -> (collective) -> records, for any task.

A `Method` is one smoothing distribution and one `lrsjax.certify` call on an item; its per-output
base certificates give the naive record (every output certified on its own, docs/math.md), and an
optional collective step solves the collective certificate of the same base certificates for two
target sets, all evaluated outputs and the correct ones (Schuchardt et al., 2023). Records follow
the method-record schema of `lrsjax.results._run`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from lrsjax import base_certs, collective, results
from lrsjax._certify import certify
from lrsjax.pipelines import _common


class Model(NamedTuple):
    """A model to certify: `apply_fn(params, x) -> logits` for one input (see `lrsjax.certify`)."""

    apply_fn: Callable
    params: Any


class Item(NamedTuple):
    """One certified input (an image, or a whole graph) and what its record needs.

    item_id: its result-file id.
    key: its JAX key, split into one key per method (in method order).
    x: the input: float32 image [C, H, W] in [0, 1], or graph attributes (`SparseBinary`).
    labels: int [D] true class per output (D pixels row-major, or nodes), `ignore_label` where
      unlabelled.
    evaluated: bool [D], the outputs that count (labelled pixels, held-out test nodes).
    shape: shape of the stored per-output arrays ((H, W) or (N,)).
    num_classes: C.
    arrays: the item's own arrays ("labels" of `shape`, "image", "evaluated"), stored as given.
    seeds: the record's seeds.
    outputs: bool [D] passed to `certify` as `outputs` (None: every output is tested).
    ignore_label: the unlabelled class (None for none).
    extra: the record's free-form extra (None for none).
    """

    item_id: str
    key: Any
    x: Any
    labels: np.ndarray
    evaluated: np.ndarray
    shape: tuple
    num_classes: int
    arrays: dict
    seeds: dict
    outputs: np.ndarray | None = None
    ignore_label: int | None = 255
    extra: dict | None = None


class Collective(NamedTuple):
    """The collective step of a method: `lrsjax.collective.certify_collective` options.

    name: the record's name (e.g. "localized_lp").
    mode: "lp", "hull" or "milp".
    num_bins: bins per group (None: exact sharing only).
    time_limit_s: per MILP solve (None: no limit).
    extra: fields added to the record's extra (beside "status_correct").
    """

    name: str
    mode: str
    num_bins: int | None = None
    time_limit_s: float | None = None
    extra: Mapping | None = None


class Method(NamedTuple):
    """One way to certify an item and how its records are written.

    name: the naive record's name (e.g. "localized_naive", "isotropic_sparse_smoothing").
    stage: a short label ("localized", "sparse smoothing"): progress stage "sample <stage>",
      timings "<stage with underscores>_sampling_s", "..._compile_s", "..._draw_s".
    noise: an `lrsjax.noise.Noise`, or a function of the input `x` returning one (inputs whose
      shape varies).
    budgets: [B] l2 radii, or int [B, 2] (additions, deletions).
    options: keyword arguments of `lrsjax.certify` (n0, n, alpha, batch_size, correction, ...).
    samples: forward passes per item (groups x (n0 + n)), for the samples/s shown.
    collective: the optional collective step.
    certified: how the naive record counts: "naive" (`base_certs.naive_certified`) or
      "sparse_grid" (the exact certified grid of sparse smoothing, read at the budgets).
    radius: the per-output radius stored: "l2" (`radius`), or "deletions" (the binary radius
      against deletions, 0 unless correct).
    radius_sum: record `certified_radius_sum` (sum of the radii of correct outputs).
    arrays: which of "prediction", "abstain", "radius" to store.
    extra: the naive record's free-form extra.
    run: None (certify with `lrsjax.certify`, as above), or a function with `run_method`'s
      signature that certifies the item its own way (e.g. center smoothing).
    """

    name: str
    stage: str
    noise: Any
    budgets: np.ndarray
    options: Mapping
    samples: int
    collective: Collective | None = None
    certified: str = "naive"
    radius: str = "l2"
    radius_sum: bool = False
    arrays: tuple = ("prediction", "abstain", "radius")
    extra: Mapping | None = None
    run: Callable | None = None


class MethodResult(NamedTuple):
    """records: {record name: method record}; arrays: per-output arrays (named as stored);
    timings: {name: seconds}."""

    records: dict
    arrays: dict
    timings: dict


def stage_names(method: Method) -> tuple:
    """The progress stages `run_method` goes through for `method`."""
    return sampling_stage_names(method) + host_stage_names(method)


def sampling_stage_names(method: Method) -> tuple:
    """The stages of `sample_method` (the device part of `run_method`)."""
    return (f"sample {method.stage}",)


def host_stage_names(method: Method) -> tuple:
    """The stages of `finish_method` (the host part of `run_method`)."""
    if method.collective is not None:
        return ("collective (all)", "collective (correct)")
    return ()


def timing_prefix(method: Method) -> str:
    """The prefix of `method`'s timing names ("sparse smoothing" -> "sparse_smoothing")."""
    return method.stage.replace(" ", "_")


def _counts(certified: np.ndarray, correct: np.ndarray, evaluated: np.ndarray):
    """Certified counts [B] over the `all` and `correct` target sets from a [D, B] mask."""
    certified = certified & evaluated[:, None]
    return certified.sum(0).tolist(), (certified & correct[:, None]).sum(0).tolist()


class Sampled(NamedTuple):
    """The device part of one method on one item: `cert` (the `lrsjax.Certificate`) and the
    sampling `timings` ({name: seconds}); or, for a method that certifies the item its own way
    in one call (a `run` attribute with `run_method`'s signature), its finished `result`."""

    cert: Any
    timings: dict
    result: MethodResult | None = None


def run_method(
    method: Method, key, item: Item, model: Model, *, primary: bool = False, stages=None
) -> MethodResult:
    """Certifies `item` with `method`; returns its records, arrays and timings.

    `primary`: the item's own method (its prediction is the item's; arrays stored under their
    names); other methods record their own metrics and store arrays as "<name>__<method name>".
    `stages`: a `_common.Stages` to advance through `stage_names(method)` (None: silent).
    It is `finish_method(sample_method(...))`: the sampling, then the host work.
    """
    if method.run is not None:
        return method.run(method, key, item, model, primary=primary, stages=stages)
    if stages is None:
        stages = _common.Stages(stage_names(method), desc=method.stage, enabled=False)
    sampled = sample_method(method, key, item, model, stages=stages)
    return finish_method(method, sampled, item, primary=primary, stages=stages)


def sample_method(method: Method, key, item: Item, model: Model, *, stages=None) -> Sampled:
    """The device part of `run_method`: one `lrsjax.certify` call of `method` on `item` with
    `key` (sampling, then its float64 bounds); returns the certificate and its timings.

    `stages`: a `_common.Stages` to advance through `sampling_stage_names(method)` (None: silent).
    """
    if stages is None:
        stages = _common.Stages(sampling_stage_names(method), desc=method.stage, enabled=False)
    noise = method.noise(item.x) if callable(method.noise) else method.noise
    timings = {}
    with stages.stage(f"sample {method.stage}", method.samples) as stage:
        start = time.perf_counter()
        cert = certify(
            key, model.apply_fn, model.params, item.x, noise, outputs=item.outputs,
            **method.options, **stage.certify_options,
        )  # fmt: skip
        timings[f"{timing_prefix(method)}_sampling_s"] = time.perf_counter() - start
    _sampling_timings(timings, timing_prefix(method), stage.certify_timings)
    return Sampled(cert, timings)


def finish_method(
    method: Method, sampled: Sampled, item: Item, *, primary: bool = False, stages=None
) -> MethodResult:
    """The host part of `run_method`: the naive record, the optional collective certificates
    (LP/MILP) and the stored arrays of `method` on `item` from its `sample_method` result.

    Pure host work (numpy, OR-Tools): it may run on a worker thread while the devices sample the
    next item. `primary` as in `run_method`; `stages`: a `_common.Stages` to advance through
    `host_stage_names(method)` (None: silent).
    """
    if sampled.result is not None:  # certified its own way in `sample`: nothing left to do
        return sampled.result
    if stages is None:
        stages = _common.Stages(host_stage_names(method), desc=method.stage, enabled=False)
    cert, timings = sampled.cert, dict(sampled.timings)
    budgets = method.budgets
    evaluated, labels = item.evaluated, item.labels
    correct = evaluated & ~cert.abstain & (cert.prediction == labels)

    if method.certified == "sparse_grid":
        certified = cert.sparse_grid[:, budgets[:, 0], budgets[:, 1]]
    else:
        certified = base_certs.naive_certified(cert.base_certs, budgets)
    if method.radius == "deletions":
        radius = np.where(correct, cert.binary_radius[:, 1], 0.0)
    else:
        radius = cert.radius
    records = {
        method.name: results.method_record(
            "naive",
            budgets,
            *_counts(certified, correct, evaluated),
            certified_radius_sum=(
                float(np.where(correct, radius, 0.0).sum()) if method.radius_sum else None
            ),
            metrics=None
            if primary
            else results.output_metrics(
                cert.prediction,
                labels,
                cert.abstain,
                item.num_classes,
                evaluated=evaluated,
                ignore_label=item.ignore_label,
            ),
            num_certified_correct_per_class=results.per_class_certified_counts(
                certified, correct, labels, item.num_classes, evaluated=evaluated
            ),
            extra=method.extra,
        )  # fmt: skip
    }

    step = method.collective
    if step is not None:
        options = dict(num_bins=step.num_bins, mode=step.mode, time_limit_s=step.time_limit_s)
        with stages.stage("collective (all)") as solve_all:
            on_all = collective.certify_collective(
                cert.base_certs, budgets, targets=evaluated, **options
            )
        with stages.stage("collective (correct)") as solve_correct:
            on_correct = collective.certify_collective(
                cert.base_certs, budgets, targets=correct, **options
            )
        timings["collective_s"] = solve_all.seconds + solve_correct.seconds
        records[step.name] = results.method_record(
            step.mode,
            budgets,
            np.asarray(on_all.certified).tolist(),
            np.asarray(on_correct.certified).tolist(),
            solver=list(on_all.solver),
            status=list(on_all.status),
            extra={"status_correct": list(on_correct.status), **(step.extra or {})},
        )

    available = {
        "prediction": lambda: cert.prediction.reshape(item.shape).astype(np.int32),
        "abstain": lambda: cert.abstain.reshape(item.shape),
        "radius": lambda: radius.reshape(item.shape),
    }
    suffix = "" if primary else f"__{method.name}"
    arrays = {f"{name}{suffix}": available[name]() for name in method.arrays}
    return MethodResult(records, arrays, timings)


def _sampling_timings(timings: dict, prefix: str, certify_timings: dict) -> None:
    """Adds `<prefix>_compile_s` and `<prefix>_draw_s` (sampling without compilation) to `timings`
    when `certify` reported them."""
    if "compile_s" in certify_timings:
        timings[f"{prefix}_compile_s"] = float(certify_timings["compile_s"])
    if "select_s" in certify_timings or "estimate_s" in certify_timings:
        draw = certify_timings.get("select_s", 0.0) + certify_timings.get("estimate_s", 0.0)
        timings[f"{prefix}_draw_s"] = float(draw)
