"""The generic resumable run: certify every pending item with every method, one result file each.

A job (segmentation, graph) is data + models + a list of `Method`s; `certify_items` does the rest:
it skips finished items (`RunDir.pending`), prepares the methods and models only if something is
left to do, certifies each pending item with every method (`run_method`), writes it atomically
(timings first, then NPZ, then the JSON record that marks it done), shows progress, and writes the
summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from lrsjax import _progress, results
from lrsjax.pipelines import _common
from lrsjax.pipelines._method import (
    Item,
    Method,
    Model,
    run_method,
    stage_names,
    timing_prefix,
)


class Plan(NamedTuple):
    """What a run certifies: `methods` with their `models` (one per method, in order), and
    `load_item(item_id) -> Item`."""

    methods: Sequence[Method]
    models: Sequence[Model]
    load_item: Callable[[str], Item]


def certify_item(plan: Plan, item: Item, stages=None) -> tuple[dict, dict, dict]:
    """(method records, arrays, timings) of one item: every method on its own key.

    The first method is the item's own (its prediction is the item's); the item key is split into
    one key per method, in order.
    """
    keys = jax.random.split(item.key, len(plan.methods))
    records, arrays, timings = {}, dict(item.arrays), {}
    for index, (method, model) in enumerate(zip(plan.methods, plan.models, strict=True)):
        result = run_method(method, keys[index], item, model, primary=index == 0, stages=stages)
        records.update(result.records)
        arrays.update(result.arrays)
        for name, seconds in result.timings.items():
            timings[name] = timings.get(name, 0.0) + seconds
    return records, arrays, timings


def item_record(item: Item, *, task: str, budget_kind: str, records: dict, arrays: dict) -> dict:
    """The validated record of `item` (`lrsjax.results.item_record`)."""
    return results.item_record(
        item.item_id,
        task=task,
        budget_kind=budget_kind,
        num_classes=item.num_classes,
        prediction=arrays["prediction"],
        labels=arrays["labels"],
        abstain=arrays["abstain"],
        evaluated=item.evaluated.reshape(item.shape),
        ignore_label=item.ignore_label,
        methods=records,
        seeds=item.seeds,
        extra=item.extra,
    )


def certify_items(
    run_dir: results.RunDir,
    item_ids: Sequence[str],
    prepare: Callable[[], Plan],
    *,
    task: str,
    budget_kind: str,
    log=_progress.write,
    progress: bool = True,
    stage_bar: bool = False,
    unit: str = "image",
    outputs: str = "outputs",
):
    """Certifies the pending items of `run_dir`, writes each one, then the summary; returns the
    run directory's path.

    `prepare()` (called only if an item is pending) loads the models and returns the `Plan`.
    Progress (bars on stderr, drawn on a terminal, see `lrsjax._progress`): by default one bar
    over the items ("certify <unit>s": samples/s without compilation, compile seconds, ETA), or,
    where no bar is drawn, one `log` line per item; with `stage_bar` (jobs of one large item) a
    bar over each item's stages, `log` getting one line per stage and one per item ("certified
    <k> <outputs> of <item>"), and `certify`'s own sampling bars. `log` also gets the summary
    table at the end.
    """
    pending = run_dir.pending(item_ids)
    if not stage_bar:
        done = len(item_ids) - len(pending)
        log(f"{done} of {len(item_ids)} {unit}s already done in {run_dir.path}")
    if pending:
        plan = prepare()
        names = [name for method in plan.methods for name in stage_names(method)]
        names.append("write results")
        bar = _progress.bar(
            len(pending), desc=f"certify {unit}s", unit=unit, enabled=progress and not stage_bar
        )
        for item_id in pending:
            item = plan.load_item(item_id)
            if stage_bar:
                stages = _common.Stages(names, desc=f"{task} job", enabled=progress, log=log)
            else:
                stages = _common.Stages(names, desc=item_id, enabled=False)
            start = time.perf_counter()
            records, arrays, timings = certify_item(plan, item, stages)
            timings["total_s"] = time.perf_counter() - start
            record = item_record(
                item, task=task, budget_kind=budget_kind, records=records, arrays=arrays
            )
            with stages.stage("write results"):
                run_dir.write_timings(item_id, timings)
                run_dir.write_item(item_id, record, arrays)
            stages.close()
            if stage_bar:
                count = int(np.sum(item.evaluated))
                log(f"certified {count} {outputs} of {item_id} in {timings['total_s']:.1f} s")
            else:
                _item_done(bar, item_id, plan.methods, timings, log)
        bar.close()
    summary = results.write_summary(run_dir)
    log(results.format_table(summary))
    return run_dir.path


def _item_rate(methods: Sequence[Method], timings: dict) -> tuple[float, float]:
    """(samples/s, compile seconds) of one item: every method's samples over their sampling
    seconds, compilation excluded where `certify` reported it (compile NaN if unknown)."""
    samples = sum(method.samples for method in methods)
    prefixes = [timing_prefix(method) for method in methods]
    if all(f"{p}_draw_s" in timings for p in prefixes):
        seconds = sum(timings[f"{p}_draw_s"] for p in prefixes)
    else:
        seconds = sum(timings[f"{p}_sampling_s"] for p in prefixes)
    compile_s = sum(timings.get(f"{p}_compile_s", np.nan) for p in prefixes)
    return samples / max(seconds, 1e-9), compile_s


def _item_done(bar, item_id: str, methods, timings: dict, log) -> None:
    """Advances the items bar (the first item restarts its clock: it carries compilation), or,
    where no bar is drawn, logs one line for the item."""
    samples_per_s, compile_s = _item_rate(methods, timings)
    postfix = _common.rate_postfix(samples_per_s, compile_s)
    if bar.disable:
        compiled = f", compile {compile_s:.1f} s" if np.isfinite(compile_s) else ""
        log(f"{item_id}: {timings['total_s']:.1f} s, {postfix['samples/s']} samples/s{compiled}")
    if bar.n == 0:
        _progress.compiled(bar, 1, compile_s=compile_s, **{"samples/s": postfix["samples/s"]})
    else:
        bar.update(1)
        bar.set_postfix(postfix, refresh=False)
