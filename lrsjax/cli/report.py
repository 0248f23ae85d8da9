"""lrsjax-report: plots and summary tables of lrsjax run directories.

Usage:
  lrsjax-report RUN_DIR [RUN_DIR ...] [--out_dir=DIR] [--item=ITEM_ID] [--labels=A,B]
                [--format=png,pdf,svg] [--skip_broken] [--write_summary]

Each RUN_DIR is the --out_dir of an lrsjax-certify command (or the results/ folder inside it,
which holds config.json and items/). For every run it prints `items: k of N` and the summary table
(pooled certified accuracy, certified ratio, clean accuracy, mIoU with abstentions, average
certified radius), then per-class IoU and per-class certified accuracy. An item whose files are
broken (a truncated JSON record, its NPZ missing or corrupt) is named and the report exits non-zero
unless --skip_broken. Figures are written to --out_dir in each --format:
  image runs: certified_accuracy (certified accuracy vs budget per method), miou_vs_acr
    (one point per run and method), item_<run>_<item>_<method> (input, ground truth, prediction
    with abstentions in black, per-pixel certified radius), per_class_<run>.txt;
  graph runs: certified_accuracy_deletions (additions 0), certified_accuracy_additions
    (deletions 0), grid_<run>_<method> (certified accuracy over (additions, deletions)).
Legends show the method names, prefixed by the run's folder name when there are several runs
(or by --labels).
"""

from __future__ import annotations

import sys

from absl import app, flags

from lrsjax import results
from lrsjax.cli import _entry

_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    None,
    "Folder for the figures (created if missing). Default: RUN_DIR/plots of the first RUN_DIR "
    "(its results/ folder when given the --out_dir of lrsjax-certify).",
)
_ITEM = flags.DEFINE_string(
    "item",
    None,
    "Item id (an items/<id>.json of the run) for the per-item figures of image runs. Default: "
    "the first finished item of each run.",
)
_LABELS = flags.DEFINE_list(
    "labels",
    None,
    "Comma list of legend labels, one per RUN_DIR in order. Default: the method names, prefixed "
    "by each run's folder name when there are several runs.",
)
_FORMAT = flags.DEFINE_string(
    "format", "png", "Comma list of figure formats: png, pdf, svg (e.g. png,pdf)."
)
_SKIP_BROKEN = flags.DEFINE_bool(
    "skip_broken",
    False,
    "Report the other items when some are broken (truncated JSON, missing or corrupt NPZ); they "
    "are named either way. Default: exit non-zero.",
)
_WRITE_SUMMARY = flags.DEFINE_bool(
    "write_summary",
    False,
    "Also write summary.json and summary.txt into every RUN_DIR (atomically).",
)


def main(argv):
    try:
        _report(argv)
    except KeyboardInterrupt:
        _entry.exit_interrupted("lrsjax-report: interrupted")


def _report(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("pass at least one RUN_DIR (the --out_dir of lrsjax-certify).")
    try:
        runs = [results.RunDir.existing(path) for path in run_dirs]
        out_dir = _OUT_DIR.value or str(runs[0].path / "plots")
        skip = _SKIP_BROKEN.value
        formats = results.check_formats(_FORMAT.value)
        for run in runs:
            if _WRITE_SUMMARY.value:
                summary = results.write_summary(run, skip_broken=skip)
            else:
                summary = results.summarize(run, skip_broken=skip)
            print(results.format_table(summary))
            print(results.format_class_tables(summary))
        written = results.make_report(
            [run.path for run in runs],
            out_dir,
            item=_ITEM.value,
            labels=_LABELS.value,
            formats=formats,
            skip_broken=skip,
        )
    except _entry.USER_ERRORS as error:
        sys.exit(f"lrsjax-report: error: {error}")
    for path in written:
        print(f"wrote {path}")


def run():
    """Console-script entry point (`lrsjax-report`)."""
    _entry.run_app(main, __name__, interrupted="lrsjax-report: interrupted")


if __name__ == "__main__":
    run()
