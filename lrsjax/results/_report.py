"""Plots of one or more run directories (matplotlib, Agg canvas; no display needed).

Used by `lrsjax-report`. Figures are built with `matplotlib.figure.Figure` directly, so no pyplot
state or interactive backend is touched.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from lrsjax import _checks
from lrsjax.results import _atomic, _run, _summary

ABSTAIN_RGB = (0.0, 0.0, 0.0)  # black
IGNORE_RGB = (1.0, 1.0, 1.0)  # white


def _figure(width=6.0, height=4.0):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is an optional dependency
        raise ImportError(
            "lrsjax-report needs matplotlib. Install it with `pip install lrsjax[plots]`."
        ) from error
    return Figure(figsize=(width, height), layout="constrained")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


FORMATS = ("png", "pdf", "svg")


def run_labels(runs, labels=None) -> list[str]:
    """One legend label per run: `labels` if given, else the run's folder name.

    A run folder named "results" (the layout of lrsjax-certify) is named by its parent, the
    command's --out_dir; where two runs would get the same name, more of their paths is shown.
    """
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != len(runs) or not all(label.strip() for label in labels):
            _checks.fail(
                "labels",
                ",".join(labels),
                f"must name each of the {len(runs)} run(s) once, in order, none empty",
                "Pass e.g. --labels=localized,isotropic for two RUN_DIRs.",
            )
        return labels
    paths = [r.path.resolve() for r in runs]
    parts = [p.parent.parts if p.name == "results" and p.parent.name else p.parts for p in paths]
    for depth in range(1, max(len(x) for x in parts) + 1):
        names = ["/".join(x[-depth:]).lstrip("/") or "/" for x in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{i}:{name}" for i, name in enumerate(names)]


def check_formats(formats) -> tuple[str, ...]:
    """`formats` (a comma list or a sequence) as a tuple of known figure formats."""
    if isinstance(formats, str):
        formats = formats.split(",")
    cleaned = tuple(dict.fromkeys(str(f).strip().lower().lstrip(".") for f in formats))
    if not cleaned or any(f not in FORMATS for f in cleaned):
        _checks.fail(
            "format",
            ",".join(map(str, formats)),
            f"must be a comma list of {', '.join(FORMATS)}",
            "Pass e.g. --format=png,pdf.",
        )
    return cleaned


def _save(fig, stem: pathlib.Path, formats) -> list[pathlib.Path]:
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=100, format=fmt)
        paths.append(path)
    return paths


def make_report(
    run_dirs, out_dir, *, item=None, labels=None, formats=("png",), skip_broken=False
) -> list[pathlib.Path]:
    """Draws every plot for `run_dirs` into `out_dir` and returns the files written.

    Each RUN_DIR is a run folder or the --out_dir of lrsjax-certify that holds it as results/.
    Figures (in every format of `formats`: png, pdf, svg):
      certified_accuracy          certified accuracy vs budget (l2/l1 runs), one line per
                                  (run, method), drawn as the lower step function of ACR_RULE
      miou_vs_acr                 mIoU vs average certified radius, one point per (run, method)
      certified_accuracy_deletions / _additions   graph runs: vs deletions (additions 0)
                                  and vs additions (deletions 0)
      grid_<run>_<method>         graph runs: heat map of certified accuracy over
                                  (additions, deletions)
      item_<run>_<item>_<method>  image runs: input, ground truth, prediction with abstentions,
                                  per-pixel certified radius of `item` (default: first item), one
                                  figure per method with stored per-pixel arrays
    Tables: per_class_<run>.txt (image runs): per-class IoU and certified accuracy.
    Legend entries are the method names, prefixed by the run's label when there are several runs
    or `labels` are given (`run_labels`).
    Raises:
      FileNotFoundError / ValueError: a run directory is missing or invalid, has broken items
      (unless `skip_broken`), `item` is unknown, or `labels` / `formats` are malformed.
    """
    if isinstance(run_dirs, str | pathlib.PurePath):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("no run directory given. Pass at least one RUN_DIR.")
    formats = check_formats(formats)
    runs = [_run.RunDir.existing(p) for p in run_dirs]
    names = run_labels(runs, labels)
    show_run = len(runs) > 1 or labels is not None
    summaries = [_summary.summarize(r, skip_broken=skip_broken) for r in runs]
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []

    def legend(name, method):
        return f"{name}: {method}" if show_run else method

    scalar = [(n, s) for n, s in zip(names, summaries) if s["task"] != "graph"]
    graph = [(n, s) for n, s in zip(names, summaries) if s["task"] == "graph"]
    if scalar:
        written += _save(_plot_curves(scalar, legend), out_dir / "certified_accuracy", formats)
        written += _save(_plot_miou_acr(scalar, legend), out_dir / "miou_vs_acr", formats)
    if graph:
        for axis, axis_name in ((1, "deletions"), (0, "additions")):
            fig = _plot_graph_axis(graph, axis, legend)
            written += _save(fig, out_dir / f"certified_accuracy_{axis_name}", formats)
        for name, summary in graph:
            for method, m in summary["methods"].items():
                stem = out_dir / f"grid_{_slug(name)}_{_slug(method)}"
                written += _save(_plot_grid(legend(name, method), m), stem, formats)
    for run, name, summary in zip(runs, names, summaries):
        if summary["task"] == "graph":
            continue
        tables = _summary.format_class_tables(summary)
        if tables:
            path = out_dir / f"per_class_{_slug(name)}.txt"
            _atomic.write_text(path, f"lrsjax run: {run.path}\n\n{tables}")
            written.append(path)
        ids = summary["item_ids"]
        if item is not None and item not in ids:
            if len(runs) == 1:
                raise ValueError(
                    f"`item` {item!r} is not a finished item of {run.path}; finished items: "
                    f"{ids[:10]}{' ...' if len(ids) > 10 else ''}. Pass one of them."
                )
            continue
        chosen = item if item is not None else (ids[0] if ids else None)
        if chosen is None:
            continue
        record, arrays = run.load_item(chosen)
        for method, also, view in _item_views(record, arrays):
            stem = out_dir / f"item_{_slug(name)}_{_slug(chosen)}_{_slug(method)}"
            title = f"{legend(name, method)} - item {chosen}"
            if also:
                title += f" (same prediction as {', '.join(also)})"
            fig = _plot_item(record, view, title)
            if fig is not None:
                written += _save(fig, stem, formats)
    return written


def _item_views(record: dict, arrays: dict) -> list[tuple[str, list, dict]]:
    """(method, other methods sharing its prediction, arrays) for each stored per-output view.

    The item-level arrays belong to the methods without their own metrics (e.g. localized_lp and
    localized_naive share one smoothed prediction); the figure is named after the one whose
    per-output radius it shows (a naive certificate), the others are listed. Methods with their
    own prediction store it as `<array>__<method>`.
    """
    methods = record.get("methods", {})
    views = []
    shared = [n for n, m in methods.items() if "confusion" not in m]
    if shared and all(k in arrays for k in ("prediction", "abstain", "labels")):
        naive = [n for n in shared if methods[n].get("mode") == "naive"]
        main = (naive or shared)[0]
        base = {k: arrays[k] for k in ("prediction", "abstain", "radius") if k in arrays}
        views.append((main, [n for n in shared if n != main], base))
    for name in methods:
        keys = {k: f"{k}__{name}" for k in ("prediction", "abstain", "radius")}
        if keys["prediction"] in arrays and keys["abstain"] in arrays and "labels" in arrays:
            view = {k: arrays[v] for k, v in keys.items() if v in arrays}
            views.append((name, [], view))
    for _, _, view in views:
        view["labels"] = arrays["labels"]
        if "image" in arrays:
            view["image"] = arrays["image"]
    return views


def _plot_curves(entries, legend):
    fig = _figure()
    ax = fig.add_subplot()
    for label, summary in entries:
        for method, m in summary["methods"].items():
            budgets = np.asarray(m["budgets"], float)
            accuracy = np.asarray([np.nan if v is None else v for v in m["certified_accuracy"]])
            ax.plot(
                budgets, accuracy, drawstyle="steps-pre", marker=".", label=legend(label, method)
            )
    ax.set_xlabel("budget (radius eps)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("certified accuracy vs budget")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def _plot_miou_acr(entries, legend):
    fig = _figure()
    ax = fig.add_subplot()
    markers = "os^Dv<>PX*"
    for label, summary in entries:
        for method, m in summary["methods"].items():
            if m.get("acr") is None or m.get("miou") is None:
                continue
            marker = markers[len(ax.collections) % len(markers)]
            ax.scatter([m["acr"]], [m["miou"]], marker=marker, label=legend(label, method))
    ax.set_xlabel("average certified radius (integral of certified accuracy)")
    ax.set_ylabel("mIoU (abstain = extra class)")
    ax.set_title("mIoU vs average certified radius")
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize="small")
    return fig


def _plot_graph_axis(entries, axis, legend):
    name = "deletions" if axis == 1 else "additions"
    fig = _figure()
    ax = fig.add_subplot()
    for label, summary in entries:
        for method, m in summary["methods"].items():
            pairs = np.asarray(m["budgets"], dtype=np.int64).reshape(-1, 2)
            accuracy = np.asarray([np.nan if v is None else v for v in m["certified_accuracy"]])
            keep = pairs[:, 1 - axis] == 0
            if not keep.any():
                continue
            order = np.argsort(pairs[keep, axis])
            ax.plot(
                pairs[keep, axis][order],
                accuracy[keep][order],
                drawstyle="steps-pre",
                marker="o",
                label=legend(label, method),
            )
    ax.set_xlabel(f"{name} (other budget 0)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"certified accuracy vs {name}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def _plot_grid(title, m):
    pairs = np.asarray(m["budgets"], dtype=np.int64).reshape(-1, 2)
    accuracy = np.asarray([np.nan if v is None else v for v in m["certified_accuracy"]])
    additions = np.unique(pairs[:, 0])
    deletions = np.unique(pairs[:, 1])
    grid = np.full((additions.size, deletions.size), np.nan)
    grid[np.searchsorted(additions, pairs[:, 0]), np.searchsorted(deletions, pairs[:, 1])] = (
        accuracy
    )
    fig = _figure()
    ax = fig.add_subplot()
    image = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, j in np.ndindex(grid.shape):
        if not np.isnan(grid[i, j]):
            colour = "white" if grid[i, j] < 0.5 else "black"
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color=colour)
    ax.set_xticks(range(deletions.size), [str(v) for v in deletions])
    ax.set_yticks(range(additions.size), [str(v) for v in additions])
    ax.set_xlabel("deletions")
    ax.set_ylabel("additions")
    ax.set_title(f"certified accuracy, {title}", fontsize="medium")
    fig.colorbar(image, ax=ax, label="certified accuracy")
    return fig


def _palette(num_classes: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return np.asarray([cmap(i % 20)[:3] for i in range(max(num_classes, 1))])


def _class_rgb(classes, palette, num_classes):
    rgb = palette[np.clip(classes, 0, num_classes - 1)]
    rgb[(classes < 0) | (classes >= num_classes)] = IGNORE_RGB
    return rgb


def _plot_item(record, arrays, title):
    from matplotlib.patches import Patch

    required = ("prediction", "abstain", "labels")
    if any(k not in arrays for k in required):
        return None
    image = arrays.get("image")
    shape = arrays["prediction"].shape
    if len(shape) != 2:
        if (
            image is None
            or image.ndim != 3
            or image.shape[1] * image.shape[2] != arrays["prediction"].size
        ):
            return None
        shape = image.shape[1:]
    num_classes = int(record["num_classes"])
    palette = _palette(num_classes)
    prediction = arrays["prediction"].reshape(shape).astype(np.int64)
    labels = arrays["labels"].reshape(shape).astype(np.int64)
    abstain = arrays["abstain"].reshape(shape).astype(bool)
    panels = 3 + (image is not None) + ("radius" in arrays)
    fig = _figure(3.2 * panels, 3.6)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    k = 0
    if image is not None:
        shown = np.clip(np.moveaxis(np.asarray(image, float), 0, -1), 0, 1)
        axes[k].imshow(shown[..., 0] if shown.shape[-1] == 1 else shown[..., :3], cmap="gray")
        axes[k].set_title("input")
        k += 1
    axes[k].imshow(_class_rgb(labels, palette, num_classes))
    axes[k].set_title("ground truth (white: ignored)")
    k += 1
    pred_rgb = _class_rgb(prediction, palette, num_classes)
    pred_rgb[abstain] = ABSTAIN_RGB
    axes[k].imshow(pred_rgb)
    axes[k].set_title("prediction (black: abstain)")
    axes[k].legend(
        handles=[Patch(color=ABSTAIN_RGB, label=f"abstain ({abstain.mean():.1%})")],
        loc="lower right",
        fontsize="x-small",
    )
    k += 1
    if "radius" in arrays:
        radius = np.ma.masked_array(arrays["radius"].reshape(shape).astype(float), mask=abstain)
        import matplotlib

        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
        heat = axes[k].imshow(radius, cmap=cmap, vmin=0)
        axes[k].set_title("certified radius (grey: abstain)")
        fig.colorbar(heat, ax=axes[k], shrink=0.8)
        k += 1
    # correct (green), wrong (red), abstained (black), ignored (white)
    status = np.ones(shape + (3,))
    counted = (labels >= 0) & (labels < num_classes)
    status[counted & (prediction == labels) & ~abstain] = (0.2, 0.7, 0.2)
    status[counted & (prediction != labels) & ~abstain] = (0.85, 0.2, 0.2)
    status[counted & abstain] = ABSTAIN_RGB
    axes[k].imshow(status)
    axes[k].set_title("correct / wrong / abstain")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return fig
