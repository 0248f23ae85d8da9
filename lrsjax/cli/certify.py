"""lrsjax-certify: certify a model with localized and isotropic smoothing, write resumable results.

With no flags it runs the main job on the built-in synthetic segmentation data: trains (or reuses)
small U-Nets, certifies a handful of images with localized smoothing (collective LP and naive) and
with the isotropic baseline at equal forward passes, and prints the summary table.
`--task=graph` runs the node-classification job (synthetic graph by default; --dataset=cora_ml
--data_dir=DIR for the real one). `--task=classification` certifies an image classifier (a small
ResNet, synthetic pattern images by default; --dataset=cifar10 or folder --data_dir=DIR) with
Cohen et al.'s Gaussian smoothing: per-image radius, certified accuracy per l2 radius, ACR.
Rerunning the same command resumes where it stopped.
"""

from absl import flags

from lrsjax import pipelines
from lrsjax.cli import _entry, _flags

flags.adopt_module_key_flags(_flags)


def _run(task, job):
    if task == "segmentation":
        pipelines.run_segmentation(job)
    elif task == "classification":
        pipelines.run_classification(job)
    else:
        pipelines.run_graph(job)


main = _entry.job_main("lrsjax-certify", _run)


def run():
    """Console-script entry point (`lrsjax-certify`)."""
    _entry.run_app(main, __name__)


if __name__ == "__main__":
    run()
