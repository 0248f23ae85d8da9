"""lrsjax-train: train a segmentation U-Net or a GNN with noise augmentation and save it.

The checkpoint (msgpack + JSON, no pickle) goes to --out_dir/models/ and can be passed to
lrsjax-certify --checkpoint=PATH. Segmentation trains with --train_noise (default matched: both a
localized-noise and an isotropic-noise model); graphs train with the flip probabilities
--train_theta_plus/--train_theta_minus.
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
        sys.exit(f"lrsjax-train: error: {error}")


def _run(job):
    if _flags.FLAGS.task == "segmentation":
        paths = pipelines.train_segmentation_models(job)
    else:
        paths = pipelines.train_graph_model(job)
    for path in paths:
        print(path)


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
