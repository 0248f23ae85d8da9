"""lrsjax-certify: certify a model with localized and isotropic smoothing, write resumable results.

With no flags it runs the main job on the built-in synthetic segmentation data: trains (or reuses)
small U-Nets, certifies a handful of images with localized smoothing (collective LP and naive) and
with the isotropic baseline at equal forward passes, and prints the summary table.
`--task=graph` runs the node-classification job (synthetic graph by default; --dataset=cora_ml
--data_dir=DIR for the real one). `--task=classification` certifies an image classifier (a small
ResNet, synthetic pattern images by default; --dataset=cifar10 or folder --data_dir=DIR) with
Cohen et al.'s Gaussian smoothing: per-image radius, certified accuracy per l2 radius, ACR.
Rerunning the same command resumes where it stopped.

Many processes (one per GPU or node) certify one data set into one --out_dir when started with
--distributed (the cluster's own detection: SLURM, Open MPI) or with --coordinator_address,
--num_processes and --process_id; each certifies its share of the items on its own devices, and
the files are the same as one process's (docs/scale-out.md).
"""

from absl import flags

from lrsjax import pipelines
from lrsjax.cli import _entry, _flags

flags.adopt_module_key_flags(_flags)

flags.DEFINE_boolean(
    "distributed",
    False,
    "Join a multi-process run with jax.distributed.initialize()'s cluster detection (SLURM, "
    "Open MPI): one process per task, each certifying its share of the items.",
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "HOST:PORT of process 0 of a multi-process run (with --num_processes and --process_id); "
    "localhost:PORT for processes on one machine.",
)
flags.DEFINE_integer("num_processes", None, "Processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process, 0 .. num_processes - 1.")
flags.DEFINE_boolean(
    "overlap",
    None,
    "Run the host work of an item (collective certificate, writing) while the devices sample "
    "the next item (the same files either way). Default: on with GPUs/TPUs, off on the CPU.",
)
FLAGS = flags.FLAGS
_PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id")


def _join_processes() -> None:
    """Joins the multi-process run the flags describe (nothing for a single-process run)."""
    given = {name: FLAGS[name].value for name in _PROCESS_FLAGS if FLAGS[name].value is not None}
    if FLAGS.distributed or given:
        pipelines.initialize_distributed(**given)


def _run(task, job):
    _join_processes()
    if task == "segmentation":
        pipelines.run_segmentation(job, overlap=FLAGS.overlap)
    elif task == "classification":
        pipelines.run_classification(job, overlap=FLAGS.overlap)
    else:
        pipelines.run_graph(job, overlap=FLAGS.overlap)


main = _entry.job_main("lrsjax-certify", _run)


def run():
    """Console-script entry point (`lrsjax-certify`)."""
    _entry.run_app(main, __name__)


if __name__ == "__main__":
    run()
