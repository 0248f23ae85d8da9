"""Plots of one or more run directories (matplotlib, Agg canvas; no display needed).

Used by `lrsjax-report`. Figures are built with `matplotlib.figure.Figure` directly, so no pyplot
state or interactive backend is touched.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from lrsjax.results import _run, _summary

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


def _labels(runs) -> list[str]:
    names = [r.path.resolve().name or str(r.path) for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{i}:{name}" for i, name in enumerate(names)]


def make_report(run_dirs, out_dir, *, item=None) -> list[pathlib.Path]:
    """Draws every plot for `run_dirs` into `out_dir` and returns the PNG paths written.

    Plots:
      certified_accuracy.png      certified accuracy vs budget (l2/l1 runs), one line per
                                  (run, method), drawn as the lower step function of ACR_RULE
      miou_vs_acr.png             mIoU vs average certified radius, one point per (run, method)
      certified_accuracy_deletions.png / _additions.png   graph runs: vs deletions (additions 0)
                                  and vs additions (deletions 0)
      grid_<run>_<method>.png     graph runs: heat map of certified accuracy over
                                  (additions, deletions)
      item_<run>_<item>.png       image runs: input, ground truth, prediction with abstentions,
                                  per-pixel certified radius of `item` (default: first item)
    Raises:
      FileNotFoundError / ValueError: a run directory is missing or invalid, or `item` is unknown.
    """
    if isinstance(run_dirs, str | pathlib.PurePath):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ValueError("no run directory given. Pass at least one RUN_DIR.")
    runs = [_run.RunDir.existing(p) for p in run_dirs]
    summaries = [_summary.summarize(r) for r in runs]
    labels = _labels(runs)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    scalar = [(lab, s) for lab, s in zip(labels, summaries) if s["task"] != "graph"]
    graph = [(lab, s) for lab, s in zip(labels, summaries) if s["task"] == "graph"]
    if scalar:
        written.append(_plot_curves(scalar, out_dir / "certified_accuracy.png"))
        written.append(_plot_miou_acr(scalar, out_dir / "miou_vs_acr.png"))
    if graph:
        for axis, name in ((1, "deletions"), (0, "additions")):
            path = out_dir / f"certified_accuracy_{name}.png"
            written.append(_plot_graph_axis(graph, axis, path))
        for label, summary in graph:
            for method, m in summary["methods"].items():
                path = out_dir / f"grid_{_slug(label)}_{_slug(method)}.png"
                written.append(_plot_grid(f"{label}: {method}", m, path))
    for run, label, summary in zip(runs, labels, summaries):
        if summary["task"] == "graph":
            continue
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
        path = out_dir / f"item_{_slug(label)}_{_slug(chosen)}.png"
        drawn = _plot_item(run, chosen, f"{label}: {chosen}", path)
        if drawn is not None:
            written.append(drawn)
    return written


def _plot_curves(entries, path):
    fig = _figure()
    ax = fig.add_subplot()
    for label, summary in entries:
        for method, m in summary["methods"].items():
            budgets = np.asarray(m["budgets"], float)
            accuracy = np.asarray([np.nan if v is None else v for v in m["certified_accuracy"]])
            ax.plot(
                budgets, accuracy, drawstyle="steps-pre", marker=".", label=f"{label}: {method}"
            )
    ax.set_xlabel("budget (radius eps)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("certified accuracy vs budget")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


def _plot_miou_acr(entries, path):
    fig = _figure()
    ax = fig.add_subplot()
    markers = "os^Dv<>PX*"
    for label, summary in entries:
        for method, m in summary["methods"].items():
            if m.get("acr") is None or m.get("miou") is None:
                continue
            marker = markers[len(ax.collections) % len(markers)]
            ax.scatter([m["acr"]], [m["miou"]], marker=marker, label=f"{label}: {method}")
    ax.set_xlabel("average certified radius (integral of certified accuracy)")
    ax.set_ylabel("mIoU (abstain = extra class)")
    ax.set_title("mIoU vs average certified radius")
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


def _plot_graph_axis(entries, axis, path):
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
                label=f"{label}: {method}",
            )
    ax.set_xlabel(f"{name} (other budget 0)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"certified accuracy vs {name}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


def _plot_grid(title, m, path):
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
    fig.savefig(path, dpi=100)
    return path


def _palette(num_classes: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return np.asarray([cmap(i % 20)[:3] for i in range(max(num_classes, 1))])


def _class_rgb(classes, palette, num_classes):
    rgb = palette[np.clip(classes, 0, num_classes - 1)]
    rgb[(classes < 0) | (classes >= num_classes)] = IGNORE_RGB
    return rgb


def _plot_item(run, item_id, title, path):
    from matplotlib.patches import Patch

    record, arrays = run.load_item(item_id)
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
    fig.savefig(path, dpi=100)
    return path
