"""Run summaries: metrics pooled over the finished items of a run directory (docs/math.md §7).

Pooling: every ratio is a ratio of sums over items (sum of certified-correct outputs / sum of
evaluated outputs), never a mean of per-item ratios; the mIoU comes from the confusion matrix summed
over the data set (abstention = an extra predicted class, ignore label excluded).

summary.json (`summarize`):
  schema_version, run_dir, task, num_items, item_ids, acr_rule (the integration rule),
  num_planned     items the run is meant to hold: the larger of the items its configuration asks
                  for (num_images; one graph) and the items with a file in items/
  broken          {item id: what is wrong} of items left out (only with skip_broken)
  unfinished      ids of items whose write was interrupted (an NPZ without its record)
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
    per_class_iou   [C] IoU of each class from the pooled confusion matrix (null: class absent)
    class_num_evaluated  [C] evaluated outputs per true class
    num_certified_correct_per_class  [B][C] pooled, or null unless every item stores it
    per_class_certified_accuracy     [B][C] the same / class_num_evaluated, or null
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


def summarize(run_dir, *, skip_broken=False) -> dict:
    """Pools the records of every finished item of `run_dir` (a path or `RunDir`); see the schema.

    Raises ValueError if an item's files are broken (a truncated JSON record, its NPZ missing or
    corrupt: an item is never left out silently) unless `skip_broken`, which lists them in the
    summary instead; and if one method uses different budget grids or budget kinds across items.
    """
    run = _as_run(run_dir)
    config = run.read_config()
    scan = run.scan_items()
    if scan.broken and not skip_broken:
        listed = "; ".join(f"{i}: {why}" for i, why in list(scan.broken.items())[:5])
        more = f" and {len(scan.broken) - 5} more" if len(scan.broken) > 5 else ""
        raise ValueError(
            f"{len(scan.broken)} broken item(s) in {run.items_dir} ({listed}{more}). Rerun "
            "lrsjax-certify with the same flags to recompute them, or pass --skip_broken to "
            "report the other items without them."
        )
    item_ids = scan.done
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
        "num_planned": max(
            _planned(config), len(item_ids) + len(scan.broken) + len(scan.unfinished)
        ),
        "item_ids": item_ids,
        "broken": scan.broken,
        "unfinished": scan.unfinished,
        "acr_rule": _metrics.ACR_RULE,
        "timings": dict(timings),
        "methods": {name: _finish(acc) for name, acc in sorted(methods.items())},
    }
    return _run.to_jsonable(summary)


def _planned(config: dict) -> int:
    """The number of items the run's configuration asks for (0 if it does not say)."""
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    if config.get("task") == "graph":
        return 1
    value = settings.get("num_images")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
            "per_class": None,
            "per_class_complete": True,
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
    per_class = method.get("num_certified_correct_per_class")
    if per_class is None:
        acc["per_class_complete"] = False
    elif acc["per_class_complete"]:
        per_class = np.asarray(per_class, np.int64)
        acc["per_class"] = per_class if acc["per_class"] is None else acc["per_class"] + per_class
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
    confusion = np.asarray(acc["confusion"], np.int64)
    class_evaluated = confusion.sum(axis=0)
    out["per_class_iou"] = _metrics.per_class_iou(confusion) if confusion.size else []
    out["class_num_evaluated"] = class_evaluated
    out["num_certified_correct_per_class"] = None
    out["per_class_certified_accuracy"] = None
    if acc["per_class_complete"] and acc["per_class"] is not None:
        per_class = acc["per_class"]
        out["num_certified_correct_per_class"] = per_class
        with np.errstate(invalid="ignore", divide="ignore"):
            out["per_class_certified_accuracy"] = np.where(
                class_evaluated > 0, per_class / np.maximum(class_evaluated, 1), np.nan
            )
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


def write_summary(run_dir, *, skip_broken=False) -> dict:
    """Writes summary.json and summary.txt (`format_table`) into the run directory, atomically."""
    run = _as_run(run_dir)
    summary = summarize(run, skip_broken=skip_broken)
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


def _items_text(summary: dict) -> str:
    done = summary.get("num_items")
    planned = summary.get("num_planned", done)
    notes = []
    if summary.get("broken"):
        notes.append(f"{len(summary['broken'])} broken, left out")
    if summary.get("unfinished"):
        notes.append(f"{len(summary['unfinished'])} interrupted")
    missing = (
        (planned or 0)
        - (done or 0)
        - sum(len(summary.get(k) or ()) for k in ("broken", "unfinished"))
    )
    if missing > 0:
        notes.append(f"{missing} not certified yet")
    return f"{done} of {planned}" + (f" ({', '.join(notes)})" if notes else "")


def format_table(summary: dict) -> str:
    """The fixed-width text table of a `summarize` result (printed by lrsjax-report)."""
    methods = summary.get("methods", {})
    lines = [
        f"lrsjax run: {summary.get('run_dir')}",
        f"task: {summary.get('task')}   items: {_items_text(summary)}   "
        f"schema: {summary.get('schema_version')}",
    ]
    for item_id, why in (summary.get("broken") or {}).items():
        lines.append(f"  left out, broken: {item_id} ({why})")
    lines.append("")
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


def format_class_tables(summary: dict) -> str:
    """Per-class IoU and per-class certified accuracy of a `summarize` result, as text tables.

    Per-class certified accuracy at budget b: certified and correct outputs of true class c /
    evaluated outputs of class c. Methods whose records do not store per-class counts
    (collective certificates, runs written by older versions) show "n/a".
    """
    methods = summary.get("methods", {})
    if not methods:
        return ""
    num_classes = max(len(m.get("per_class_iou") or []) for m in methods.values())
    if num_classes == 0:
        return ""
    name_width = max(12, *(len(n) for n in methods)) + 2
    classes = "".join(f"{f'class {c}':>10}" for c in range(num_classes))
    lines = ["per-class IoU (pooled confusion matrix; '-': class absent)"]
    lines.append(f"{'method':<{name_width}}" + classes)
    for name, m in methods.items():
        cells = "".join(_num(v, 10) for v in m.get("per_class_iou") or [])
        lines.append(f"{name:<{name_width}}" + cells)
    any_method = next(iter(methods.values()))
    counts = "".join(_num(int(v), 10) for v in any_method.get("class_num_evaluated") or [])
    lines.append(f"{'evaluated':<{name_width}}" + counts)
    lines += ["", "per-class certified accuracy (certified and correct / evaluated, per class)"]
    lines.append(f"{'method':<{name_width}}{'budget':<14}" + classes)
    for name, m in methods.items():
        table = m.get("per_class_certified_accuracy")
        if table is None:
            lines.append(f"{name:<{name_width}}{'n/a':<14}" + f"{'n/a':>10}" * num_classes)
            continue
        for budget, row in zip(m["budgets"], table):
            cells = "".join(_num(v, 10) for v in row)
            lines.append(f"{name:<{name_width}}{_budget_label(budget):<14}" + cells)
    return "\n".join(lines) + "\n"
