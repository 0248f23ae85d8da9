"""lrsjax-report: plots and summary tables of lrsjax run directories.

Usage:
  lrsjax-report RUN_DIR [RUN_DIR ...] [--out_dir=DIR] [--item=ITEM_ID] [--write_summary]

Each RUN_DIR is the output directory of an lrsjax-certify command (it holds config.json and
items/). For every run the summary table (pooled certified accuracy, certified ratio, clean
accuracy, mIoU with abstentions, average certified radius) is printed, and PNG plots are written
to --out_dir:
  image runs: certified_accuracy.png (certified accuracy vs budget per method), miou_vs_acr.png
    (one point per run and method), item_<run>_<item>.png (input, ground truth, prediction with
    abstentions in black, per-pixel certified radius);
  graph runs: certified_accuracy_deletions.png (additions 0), certified_accuracy_additions.png
    (deletions 0), grid_<run>_<method>.png (certified accuracy over (additions, deletions)).
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags

from lrsjax import results
from lrsjax.cli import _entry

_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    None,
    "Folder for the PNG plots (created if missing). Default: RUN_DIR/plots of the first RUN_DIR.",
)
_ITEM = flags.DEFINE_string(
    "item",
    None,
    "Item id (an items/<id>.json of the run) for the per-item figure of image runs. Default: the "
    "first finished item of each run.",
)
_WRITE_SUMMARY = flags.DEFINE_bool(
    "write_summary",
    False,
    "Also write summary.json and summary.txt into every RUN_DIR (atomically).",
)


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("pass at least one RUN_DIR (the --out_dir of lrsjax-certify).")
    out_dir = _OUT_DIR.value or str(pathlib.Path(run_dirs[0]) / "plots")
    try:
        for run_dir in run_dirs:
            summarize = results.write_summary if _WRITE_SUMMARY.value else results.summarize
            print(results.format_table(summarize(run_dir)))
        written = results.make_report(run_dirs, out_dir, item=_ITEM.value)
    except _entry.USER_ERRORS as error:
        sys.exit(f"lrsjax-report: error: {error}")
    for path in written:
        print(f"wrote {path}")


def run():
    """Console-script entry point (`lrsjax-report`)."""
    _entry.run_app(main, __name__)


if __name__ == "__main__":
    run()
