"""Run summaries: metrics pooled over the finished items of a run directory (SPEC 8).

Pooling: every ratio is a ratio of sums over items (sum of certified-correct outputs / sum of
evaluated outputs), never a mean of per-item ratios; the mIoU comes from the confusion matrix summed
over the data set (abstention = an extra predicted class, ignore label excluded).

summary.json (`summarize`):
  schema_version, run_dir, task, num_items, item_ids, acr_rule (the integration rule),
  timings {name: seconds summed over items},
  methods {name: {
    mode            the certificate mode if every item agrees, else "mixed"
    modes           sorted list of the modes seen
    budget_kind     "l2" | "l1" | "binary"
    budgets         [B] (or [B][2] (additions, deletions))
    num_items, num_evaluated, num_correct, num_abstained
    num_certified, num_certified_correct    [B] pooled counts
    certified_ratio, certified_accuracy     [B] pooled ratios
    clean_accuracy  pooled, abstentions count as wrong
    miou            mean IoU of the pooled confusion matrix (abstain row = false negatives)
    acr             integral of certified accuracy over the budget (`ACR_RULE`); l2/l1 only
    acr_deletions, acr_additions   binary only: the same along additions = 0 / deletions = 0
    acr_per_output  sum of per-output certified radii of correct outputs / num_evaluated, when
                    every item stores certified_radius_sum (naive certificates), else null
    solvers, statuses   {name: number of (item, budget) solves}
    seconds_total   summed solve time
  }}
Ratios with nothing evaluated are null.
"""

from __future__ import annotations

import collections
import json
import math
import textwrap

import numpy as np

from lrsjax.results import _atomic, _metrics, _run

_METRIC_FIELDS = ("num_evaluated", "num_correct", "num_abstained", "confusion")


def _as_run(run_dir) -> _run.RunDir:
    return run_dir if isinstance(run_dir, _run.RunDir) else _run.RunDir.existing(run_dir)


def summarize(run_dir) -> dict:
    """Pools the records of every finished item of `run_dir` (a path or `RunDir`); see the schema.

    Raises ValueError if one method uses different budget grids or budget kinds across items.
    """
    run = _as_run(run_dir)
    config = run.read_config()
    item_ids = run.done_items()
    methods: dict[str, dict] = {}
    timings: dict[str, float] = collections.defaultdict(float)
    for item_id in item_ids:
        record = run.load_record(item_id)
        item_timings = {**(record.get("timings") or {}), **run.load_timings(item_id)}
        for key, value in item_timings.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                timings[key] += float(value)
        for name, method in record["methods"].items():
            _accumulate(methods, name, method, record)
    summary = {
        "schema_version": _run.SCHEMA_VERSION,
        "run_dir": str(run.path),
        "task": config.get("task"),
        "num_items": len(item_ids),
        "item_ids": item_ids,
        "acr_rule": _metrics.ACR_RULE,
        "timings": dict(timings),
        "methods": {name: _finish(acc) for name, acc in sorted(methods.items())},
    }
    return _run.to_jsonable(summary)


def _accumulate(methods: dict, name: str, method: dict, record: dict) -> None:
    source = method if "confusion" in method else record
    budgets = method["budgets"]
    if name not in methods:
        methods[name] = {
            "budgets": budgets,
            "budget_kind": record["budget_kind"],
            "first_item": record["item_id"],
            "modes": set(),
            "num_items": 0,
            "num_evaluated": 0,
            "num_correct": 0,
            "num_abstained": 0,
            "confusion": np.zeros_like(np.asarray(source["confusion"], dtype=np.int64)),
            "num_certified": np.zeros(len(budgets), np.int64),
            "num_certified_correct": np.zeros(len(budgets), np.int64),
            "radius_sum": 0.0,
            "radius_complete": True,
            "solvers": collections.Counter(),
            "statuses": collections.Counter(),
            "seconds_total": 0.0,
        }
    acc = methods[name]
    if (
        json.dumps(budgets) != json.dumps(acc["budgets"])
        or record["budget_kind"] != acc["budget_kind"]
    ):
        raise ValueError(
            f"method {name!r} uses budgets {budgets!r:.80} ({record['budget_kind']}) in item "
            f"{record['item_id']!r} but {acc['budgets']!r:.80} ({acc['budget_kind']}) in item "
            f"{acc['first_item']!r}; a run must use one budget grid per method. Certify every "
            "item with the same grid (or store the methods under different names)."
        )
    confusion = np.asarray(source["confusion"], dtype=np.int64)
    if confusion.shape != acc["confusion"].shape:
        raise ValueError(
            f"method {name!r}: item {record['item_id']!r} has a confusion matrix of shape "
            f"{confusion.shape}, earlier items {acc['confusion'].shape}; num_classes must agree."
        )
    acc["modes"].add(method["mode"])
    acc["num_items"] += 1
    for key in ("num_evaluated", "num_correct", "num_abstained"):
        acc[key] += int(source[key])
    acc["confusion"] += confusion
    acc["num_certified"] += np.asarray(method["num_certified"], np.int64)
    acc["num_certified_correct"] += np.asarray(method["num_certified_correct"], np.int64)
    if method.get("certified_radius_sum") is None:
        acc["radius_complete"] = False
    else:
        acc["radius_sum"] += float(method["certified_radius_sum"])
    acc["solvers"].update(s for s in method.get("solver") or [] if s is not None)
    acc["statuses"].update(s for s in method.get("status") or [] if s is not None)
    acc["seconds_total"] += sum(
        float(s) for s in method.get("seconds") or [] if isinstance(s, int | float)
    )


def _finish(acc: dict) -> dict:
    counts = _metrics.CertifiedCounts(
        acc["num_evaluated"], acc["num_correct"], acc["num_certified"], acc["num_certified_correct"]
    )
    curve = _metrics.curve_from_counts(counts)
    modes = sorted(acc["modes"])
    out = {
        "mode": modes[0] if len(modes) == 1 else "mixed",
        "modes": modes,
        "budget_kind": acc["budget_kind"],
        "budgets": acc["budgets"],
        "num_items": acc["num_items"],
        "num_evaluated": acc["num_evaluated"],
        "num_correct": acc["num_correct"],
        "num_abstained": acc["num_abstained"],
        "confusion": acc["confusion"],
        "num_certified": acc["num_certified"],
        "num_certified_correct": acc["num_certified_correct"],
        "certified_ratio": curve.certified_ratio,
        "certified_accuracy": curve.certified_accuracy,
        "clean_accuracy": curve.clean_accuracy,
        "miou": _metrics.mean_iou(acc["confusion"]),
        "acr": None,
        "acr_per_output": None,
        "solvers": dict(sorted(acc["solvers"].items())),
        "statuses": dict(sorted(acc["statuses"].items())),
        "seconds_total": acc["seconds_total"],
    }
    accuracy = curve.certified_accuracy
    if acc["budget_kind"] == "binary":
        pairs = np.asarray(acc["budgets"], dtype=np.int64).reshape(-1, 2)
        for key, axis, other in (("acr_deletions", 1, 0), ("acr_additions", 0, 1)):
            keep = pairs[:, other] == 0
            order = np.argsort(pairs[keep, axis])
            out[key] = (
                _metrics.acr_from_curve(pairs[keep, axis][order], accuracy[keep][order])
                if keep.any()
                else None
            )
    else:
        out["acr"] = _metrics.acr_from_curve(acc["budgets"], accuracy)
    if acc["radius_complete"] and acc["num_evaluated"] > 0:
        out["acr_per_output"] = acc["radius_sum"] / acc["num_evaluated"]
    return out


def write_summary(run_dir) -> dict:
    """Writes summary.json and summary.txt (`format_table`) into the run directory, atomically."""
    run = _as_run(run_dir)
    summary = summarize(run)
    _atomic.write_json(run.path / "summary.json", summary)
    _atomic.write_text(run.path / "summary.txt", format_table(summary))
    return summary


def _num(value, width: int, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-".rjust(width)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).rjust(width)
    return f"{value:.{digits}f}".rjust(width)


def _budget_label(budget) -> str:
    if isinstance(budget, list | tuple):
        return f"a={budget[0]},d={budget[1]}"
    return f"{budget:.4f}"


def format_table(summary: dict) -> str:
    """The fixed-width text table of a `summarize` result (printed by lrsjax-report)."""
    methods = summary.get("methods", {})
    lines = [
        f"lrsjax run: {summary.get('run_dir')}",
        f"task: {summary.get('task')}   items: {summary.get('num_items')}   "
        f"schema: {summary.get('schema_version')}",
        "",
    ]
    if not methods:
        return "\n".join([*lines, "no finished items", ""])
    name_width = max(12, *(len(n) for n in methods)) + 2
    binary = any(m.get("budget_kind") == "binary" for m in methods.values())
    acr_columns = (
        (("ACR(del)", "acr_deletions"), ("ACR(add)", "acr_additions"))
        if binary
        else (("ACR", "acr"), ("ACR/out", "acr_per_output"))
    )
    header = (
        f"{'method':<{name_width}}{'mode':>8}{'items':>7}{'evaluated':>11}{'clean_acc':>11}"
        f"{'mIoU':>9}" + "".join(f"{title:>10}" for title, _ in acr_columns) + "  statuses"
    )
    lines += [header, "-" * len(header)]
    for name, m in methods.items():
        statuses = ", ".join(f"{k}:{v}" for k, v in (m.get("statuses") or {}).items()) or "-"
        lines.append(
            f"{name:<{name_width}}{m['mode']:>8}{m['num_items']:>7}{m['num_evaluated']:>11}"
            f"{_num(m['clean_accuracy'], 11)}{_num(m['miou'], 9)}"
            + "".join(_num(m.get(key), 10) for _, key in acr_columns)
            + f"  {statuses}"
        )
    notes = [
        "clean_acc: abstentions count as wrong. mIoU: pooled confusion matrix, abstain = extra "
        "predicted class, ignore label excluded. Ratios: sums over items / evaluated outputs.",
        "ACR: " + summary.get("acr_rule", _metrics.ACR_RULE),
    ]
    if binary:
        notes.append(
            "ACR(del) / ACR(add): the same integral along deletions (additions = 0) / additions "
            "(deletions = 0)."
        )
    else:
        notes.append("ACR/out: mean per-output certified radius of correct outputs (0 otherwise).")
    lines.append("")
    lines += [line for note in notes for line in textwrap.wrap(note, 100, subsequent_indent="  ")]
    lines += ["", "certified accuracy / certified ratio per budget (pooled over items)"]
    budgets = []
    for m in methods.values():
        for b in m["budgets"]:
            if b not in budgets:
                budgets.append(b)
    budgets.sort(key=lambda b: tuple(b) if isinstance(b, list) else (b,))
    col = max(17, name_width)
    lines.append(f"{'budget':<14}" + "".join(f"{n:>{col}}" for n in methods))
    for budget in budgets:
        cells = []
        for m in methods.values():
            if budget in m["budgets"]:
                i = m["budgets"].index(budget)
                cell = f"{_num(m['certified_accuracy'][i], 0)} / {_num(m['certified_ratio'][i], 0)}"
            else:
                cell = "-"
            cells.append(f"{cell:>{col}}")
        lines.append(f"{_budget_label(budget):<14}" + "".join(cells))
    return "\n".join(lines) + "\n"
