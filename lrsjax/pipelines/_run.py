"""The generic resumable run: certify every pending item with every method, one result file each.

A job (segmentation, graph) is data + models + a list of `Method`s; `certify_items` does the rest:
it skips finished items (`RunDir.pending`), prepares the methods and models only if something is
left to do, certifies each pending item with every method (`run_method`), writes it atomically
(timings first, then NPZ, then the JSON record that marks it done), shows progress, and writes the
summary.

Over several processes (`jax.distributed`, see `_distributed`) each process certifies its fixed
share of the items into the shared run directory, and whichever process sees every item done
writes the summary. With `overlap` the host part of item i (collective LP/MILP, records, writing)
runs on one worker thread while the devices sample item i + 1 (`_overlap.HostWorker`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from lrsjax import _progress, results
from lrsjax.pipelines import _common, _distributed, _overlap
from lrsjax.pipelines._method import (
    Item,
    Method,
    Model,
    Sampled,
    finish_method,
    host_stage_names,
    sample_method,
    sampling_stage_names,
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
    one key per method, in order. It is `finish_item(plan, item, sample_item(plan, item))`.
    """
    return finish_item(plan, item, sample_item(plan, item, stages), stages)


def sample_item(plan: Plan, item: Item, stages=None) -> list[Sampled]:
    """The device part of `certify_item`: `sample_method` of every method, in order.

    A method that certifies the item its own way (a `run` attribute with `run_method`'s
    signature) runs whole here, on the main thread, since it samples too.
    """
    keys = jax.random.split(item.key, len(plan.methods))
    sampled = []
    for index, (method, model) in enumerate(zip(plan.methods, plan.models, strict=True)):
        own = getattr(method, "run", None)
        if own is not None:
            result = own(method, keys[index], item, model, primary=index == 0, stages=stages)
            sampled.append(Sampled(None, {}, result))
        else:
            sampled.append(sample_method(method, keys[index], item, model, stages=stages))
    return sampled


def finish_item(
    plan: Plan, item: Item, sampled: Sequence[Sampled], stages=None
) -> tuple[dict, dict, dict]:
    """The host part of `certify_item` (`finish_method` of every method, in order): (method
    records, arrays, timings)."""
    records, arrays, timings = {}, dict(item.arrays), {}
    for index, (method, done) in enumerate(zip(plan.methods, sampled, strict=True)):
        result = finish_method(method, done, item, primary=index == 0, stages=stages)
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
    overlap: bool | None = None,
    processes: _distributed.Processes | None = None,
):
    """Certifies the pending items of `run_dir` (this process's share), writes each one, then the
    summary once every item is done; returns the run directory's path.

    `prepare()` (called only if an item is pending) loads the models and returns the `Plan`.
    Progress (bars on stderr, drawn on a terminal, see `lrsjax._progress`): by default one bar
    over the items ("certify <unit>s": samples/s without compilation, compile seconds, ETA), or,
    where no bar is drawn, one `log` line per item; with `stage_bar` (jobs of one large item) a
    bar over each item's stages, `log` getting one line per stage and one per item ("certified
    <k> <outputs> of <item>"), and `certify`'s own sampling bars. `log` also gets the summary
    table at the end.

    `overlap`: run the host part of each item (collective certificates, records, writing) on a
    worker thread while the devices sample the next item; the files are the same either way.
    None: `_overlap.default_overlap()` (on with accelerators, off on the CPU).
    `processes`: which share of `item_ids` this process certifies (`Processes(index, count)`:
    positions index, index + count, ...); None: `jax.process_index()` of
    `jax.process_count()`. With several processes under `jax.distributed`, process 0 prepares
    first (it trains missing models) and the others then load them; the process that finds every
    item done writes the summary (others log what is left and return).
    """
    processes = (
        _distributed.current() if processes is None else _distributed.check_processes(processes)
    )
    share = processes.share(item_ids)
    pending = run_dir.pending(share)
    if not stage_bar:
        done = len(share) - len(pending)
        where = ""
        if processes.count > 1:
            where = f" (process {processes.index} of {processes.count}: {len(share)} of "
            where += f"{len(item_ids)} {unit}s)"
        log(f"{done} of {len(share)} {unit}s already done in {run_dir.path}{where}")
    plan = None
    if jax.process_count() > 1:
        # Process 0 prepares first: it trains what is missing, the others load it afterwards.
        if processes.index == 0 and run_dir.pending(item_ids):
            plan = prepare()
        _distributed.barrier("lrsjax certify_items: prepared", processes)
    if pending:
        plan = prepare() if plan is None else plan
        names = [name for method in plan.methods for name in sampling_stage_names(method)]
        names += [name for method in plan.methods for name in host_stage_names(method)]
        names.append("write results")
        bar = _progress.bar(
            len(pending), desc=f"certify {unit}s", unit=unit, enabled=progress and not stage_bar
        )
        finish = functools.partial(
            _finish_and_write, run_dir, plan, task=task, budget_kind=budget_kind, bar=bar,
            log=log, stage_bar=stage_bar, outputs=outputs,
        )  # fmt: skip
        overlap = _overlap.default_overlap() if overlap is None else overlap
        with _overlap.HostWorker(overlap) as worker:
            for item_id in pending:
                item = plan.load_item(item_id)
                if stage_bar:
                    stages = _common.Stages(names, desc=f"{task} job", enabled=progress, log=log)
                else:
                    stages = _common.Stages(names, desc=item_id, enabled=False)
                start = time.perf_counter()
                sampled = sample_item(plan, item, stages)
                worker.submit(functools.partial(finish, item, sampled, stages, start))
        bar.close()
    left = run_dir.pending(item_ids)
    if left:
        log(
            f"{len(left)} of {len(item_ids)} {unit}s are not done yet (other processes' shares); "
            "the process that finishes the last one writes the summary"
        )
        return run_dir.path
    summary = results.write_summary(run_dir)
    log(results.format_table(summary))
    return run_dir.path


def _finish_and_write(
    run_dir, plan, item, sampled, stages, start, *, task, budget_kind, bar, log, stage_bar, outputs
) -> None:
    """The host part of one item: records, then its files (timings, NPZ, JSON, atomically), then
    its progress line."""
    records, arrays, timings = finish_item(plan, item, sampled, stages)
    record = item_record(item, task=task, budget_kind=budget_kind, records=records, arrays=arrays)
    with stages.stage("write results"):
        timings["total_s"] = time.perf_counter() - start
        run_dir.write_timings(item.item_id, timings)
        run_dir.write_item(item.item_id, record, arrays)
    stages.close()
    if stage_bar:
        count = int(np.sum(item.evaluated))
        log(f"certified {count} {outputs} of {item.item_id} in {timings['total_s']:.1f} s")
    else:
        _item_done(bar, item.item_id, plan.methods, timings, log)


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
