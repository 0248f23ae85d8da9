"""lrsjax-train: train a segmentation U-Net or a GNN with noise augmentation and save it.

The checkpoint (msgpack + JSON, no pickle) goes to --out_dir/models/ and can be passed to
lrsjax-certify --checkpoint=PATH. Segmentation trains with --train_noise (default matched: both a
localized-noise and an isotropic-noise model); graphs train with the flip probabilities
--train_theta_plus/--train_theta_minus.
"""

from absl import app, logging

from lrsjax import pipelines
from lrsjax.cli import _flags


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All settings are --flags.")
    logging.set_verbosity(logging.WARNING)
    job = _flags.job_from_flags()
    if _flags.FLAGS.task == "segmentation":
        paths = pipelines.train_segmentation_models(job)
    else:
        paths = pipelines.train_graph_model(job)
    for path in paths:
        print(path)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
