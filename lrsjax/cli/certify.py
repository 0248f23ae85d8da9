"""lrsjax-certify: certify a model with localized and isotropic smoothing, write resumable results.

With no flags it runs the main job on the built-in synthetic segmentation data: trains (or reuses)
small U-Nets, certifies a handful of images with localized smoothing (collective LP and naive) and
with the isotropic baseline at equal forward passes, and prints the summary table.
`--task=graph` runs the node-classification job (synthetic graph by default; --dataset=cora_ml
--data_dir=DIR for the real one). Rerunning the same command resumes where it stopped.
"""

import sys

from absl import app, flags, logging

from lrsjax import pipelines
from lrsjax.cli import _flags

flags.adopt_module_key_flags(_flags)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All settings are --flags.")
    logging.set_verbosity(logging.WARNING)
    try:
        _run(_flags.job_from_flags())
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"lrsjax-certify: error: {error}")


def _run(job):
    if _flags.FLAGS.task == "segmentation":
        pipelines.run_segmentation(job)
    else:
        pipelines.run_graph(job)


def run():
    try:
        app.run(main)
    except SystemExit as exit_:
        # absl exits with status 1 after --help; asking for help is not an error.
        if exit_.code == 1 and any(a in ("--help", "-h", "--helpfull") for a in sys.argv[1:]):
            sys.exit(0)
        raise


if __name__ == "__main__":
    run()
