"""lrsjax-train: train a segmentation U-Net, a GNN or an image classifier (ResNet) with noise
augmentation and save it.

The checkpoint (msgpack + JSON, no pickle) goes to --out_dir/models/ and can be passed to
lrsjax-certify --checkpoint=PATH. Segmentation trains with --train_noise (default matched: both a
localized-noise and an isotropic-noise model); graphs train with the flip probabilities
--train_theta_plus/--train_theta_minus; classifiers (--task=classification) with Gaussian noise of
std --sigma (--train_noise=matched) or none. Certification flags (e.g. --n, --mode) are accepted and
ignored, so one flag list can serve both commands.
"""

from absl import flags

from lrsjax import pipelines
from lrsjax.cli import _entry, _flags

for _name in _flags.TRAINING_FLAGS:  # --help lists these; certification flags are ignored
    flags.declare_key_flag(_name)


def _run(task, job):
    if task == "segmentation":
        paths = pipelines.train_segmentation_models(job)
    elif task == "classification":
        paths = pipelines.train_classification_model(job)
    else:
        paths = pipelines.train_graph_model(job)
    for path in paths:
        print(path)


main = _entry.job_main("lrsjax-train", _run, used_flags=_flags.TRAINING_FLAGS_BY_TASK)


def run():
    """Console-script entry point (`lrsjax-train`)."""
    _entry.run_app(main, __name__)


if __name__ == "__main__":
    run()
