"""Flags of `lrsjax-train` and `lrsjax-certify`: one flag per job field.

Every flag defaults to None, which means "the task's default" (shown in the help text), so one set
of flags serves both tasks. `lrsjax-certify` lists and reads all of them; `lrsjax-train` lists the
training flags (`TRAINING_FLAGS`) and accepts the others with a note that they change nothing.
"""

from __future__ import annotations

from absl import flags

from lrsjax.pipelines import ClassificationJob, GraphJob, SegmentationJob

_SEG = SegmentationJob().flat()
_GRAPH = GraphJob().flat()
_CLASSIFY = ClassificationJob().flat()
_JOBS = {"segmentation": SegmentationJob, "graph": GraphJob, "classification": ClassificationJob}

_HELP = {
    "dataset": "Data set. segmentation: synthetic | pascal_voc | cityscapes; "
    "graph: synthetic | cora_ml | citeseer | npz; classification: synthetic | cifar10 | folder.",
    "data_dir": "Root of the data set (VOC2012/Cityscapes layout, or the folder holding "
    "<dataset>.npz; for --dataset=npz the .npz file itself; cifar10: the folder of the binary "
    "batches data_batch_1.bin ... test_batch.bin; folder: DIR/train/<class>/* and "
    "DIR/test/<class>/*). Not needed for synthetic data.",
    "image_size": "Synthetic images are image_size x image_size pixels (classification folder "
    "images are resized to it).",
    "num_classes": "Number of classes of the synthetic segmentation / classification data.",
    "scale": "Resize factor of real images (the paper evaluates at 0.5).",
    "num_train_images": "Training images (segmentation).",
    "num_images": "Images to certify (segmentation, classification; an evenly spaced subset of "
    "real segmentation data, the first test images of CIFAR-10).",
    "checkpoint": "A saved model to certify instead of training one (lrsjax-train output).",
    "depth": "U-Net depth (down/up levels).",
    "width": "U-Net channels of the first level (classification: ResNet channels of the first "
    "stage).",
    "num_stages": "ResNet stages (classification); each after the first halves the resolution.",
    "blocks_per_stage": "Residual blocks per ResNet stage (classification; 1 = ResNet-8, "
    "3 = ResNet-20 with 3 stages).",
    "train_steps": "Optimiser steps of segmentation / classification training.",
    "train_batch_size": "Batch size of segmentation / classification training.",
    "localized_batch_size": "Images per step of localized-noise segmentation training (each "
    "costs one forward pass per grid cell: the paper's stitched training).",
    "learning_rate": "Adam learning rate.",
    "train_noise": "Noise while training the U-Net: matched (each smoothing certifies a model "
    "trained with its own noise) | isotropic | localized | none; classification: matched "
    "(Gaussian of std --sigma) | none.",
    "loss": "Training loss (segmentation, classification): noise (noise augmentation) | "
    "consistency (consistency regularization, Jeong & Shin 2020) | smoothadv (SmoothAdv, "
    "Salman et al. 2019).",
    "num_noise_copies": "Noise draws per training image of --loss=consistency|smoothadv.",
    "consistency_lbd": "Weight of the KL term of --loss=consistency (the paper: 5, 10, 20).",
    "consistency_eta": "Weight of the entropy term of --loss=consistency.",
    "smoothadv_eps": "l2 radius of the SmoothAdv attack, in [0, 1] pixel units.",
    "smoothadv_steps": "PGD steps of the SmoothAdv attack (step size 2 eps / steps).",
    "smoothadv_warmup": "Optimiser steps over which the SmoothAdv radius grows linearly to "
    "--smoothadv_eps (0 = the full radius from the start).",
    "denoiser": "Denoised smoothing (classification): put a DnCNN denoiser in front of a frozen "
    "classifier and certify classifier(denoiser(x + noise)); lrsjax-train trains (or reuses) the "
    "denoiser, lrsjax-certify certifies with it.",
    "classifier": "The frozen classifier behind --denoiser (a saved classifier checkpoint; "
    "empty: the job's own classifier, e.g. trained with --train_noise=none).",
    "denoiser_checkpoint": "A saved denoiser to certify with (--denoiser) instead of training one.",
    "denoiser_loss": "Denoiser training loss: mse (denoising alone) | stability (the frozen "
    "classifier's prediction on the clean image) | classification (the true label).",
    "denoiser_steps": "Optimiser steps of denoiser training.",
    "denoiser_learning_rate": "Adam learning rate of denoiser training.",
    "denoiser_depth": "DnCNN weight layers.",
    "denoiser_features": "DnCNN hidden channels.",
    "grid": "Localized smoothing grid as ROWSxCOLS, e.g. 3x5 (1x1 = isotropic).",
    "std_min": "Smallest noise std (a cell's own region), in [0, 1] pixel units.",
    "std_max": "Largest noise std (the farthest cells).",
    "interpolate": "Interpolate std or variance between std_min and std_max: std | variance.",
    "max_std_at_boundary": "Give the farthest cell of every group std_max.",
    "mask_distance": "Strictly local models: zero (mask) regions at grid distance >= this "
    "(0 = no masking).",
    "sigma": "Std of the isotropic baseline (segmentation); of the Gaussian smoothing and its "
    "matched training noise (classification).",
    "baselines": "Segmentation baselines beside localized smoothing, comma-separated: isotropic "
    "(SegCertify-style naive, equal forward passes) | isotropic_equal_samples (the same with n0 "
    "and n, the paper's comparison) | center_smoothing (Kumar & Goldstein 2021); empty for none.",
    "n0": "Selection samples per smoothing group (baselines get groups x as many).",
    "n": "Estimation samples per smoothing group (baselines get groups x as many).",
    "alpha": "Family-wise error probability of all certificates of one input.",
    "correction": "Multiple-testing correction: bonferroni (sound, default) | holm "
    "(SegCertify fixed threshold) | rank_levels (no coverage proof; reproduction only).",
    "tau": "Holm threshold of --correction=holm (SegCertify): outputs whose probability provably "
    "exceeds tau are certified at the radius of tau.",
    "batch_size": "Samples per model call while certifying.",
    "budget_min": "Smallest l2 budget eps (segmentation; classification: of the certified-"
    "accuracy curve).",
    "budget_max": "Largest l2 budget eps (segmentation, classification).",
    "budget_steps": "Number of l2 budgets from budget_min to budget_max (segmentation, "
    "classification).",
    "num_bins": "Bins per group for the collective problem (0 = exact sharing only).",
    "mode": "Collective certificate: lp (paper's LP relaxation) | hull (tighter sound LP) | "
    "milp (exact; falls back to a sound bound at its time limit).",
    "time_limit_s": "Time limit per MILP solve in seconds (0 = none).",
    "seed": "Seed of every random choice (data, training, sampling).",
    "out_dir": "Output directory (models/, results/ with one JSON + NPZ per item, summary).",
    "overwrite": "Delete results of a different configuration in out_dir instead of failing.",
    "train_per_class": "Training nodes per class (graph).",
    "val_per_class": "Validation nodes per class (graph; they pick the checkpoint).",
    "model": "Graph model: appnp | gcn.",
    "hidden": "Hidden units of the graph model.",
    "epochs": "Maximal training epochs (graph).",
    "patience": "Early-stopping patience in epochs (graph).",
    "train_theta_plus": "0->1 flip probability of the training noise (graph).",
    "train_theta_minus": "1->0 flip probability of the training noise (graph).",
    "num_clusters": "Clusters of localized graph smoothing (spectral clustering).",
    "theta_plus_min": "0->1 flip probability of a node's own cluster (and of the baselines).",
    "theta_plus_max": "0->1 flip probability of the farthest cluster.",
    "theta_minus_min": "1->0 flip probability of a node's own cluster (and of the baselines).",
    "theta_minus_max": "1->0 flip probability of the farthest cluster.",
    "max_additions": "Largest attribute-addition budget certified (graph).",
    "max_deletions": "Largest attribute-deletion budget certified (graph).",
    "deletion_step": "Step of the deletion budgets (graph).",
    "budget_grid": "Graph budgets: axes (deletions alone, additions alone) | full (the whole "
    "additions x deletions grid, for the heat map).",
}

# The flags each task's training reads (data, model, training noise, seed, where models go).
TRAINING_FLAGS_BY_TASK = {
    "segmentation": (
        "task", "dataset", "data_dir", "image_size", "num_classes", "scale", "num_train_images",
        "depth", "width", "train_steps", "train_batch_size", "localized_batch_size",
        "learning_rate", "train_noise", "loss", "num_noise_copies", "consistency_lbd",
        "consistency_eta", "smoothadv_eps", "smoothadv_steps", "smoothadv_warmup", "grid",
        "std_min", "std_max", "interpolate", "max_std_at_boundary", "mask_distance", "sigma",
        "seed", "out_dir",
    ),
    "graph": (
        "task", "dataset", "data_dir", "train_per_class", "val_per_class", "model", "hidden",
        "epochs", "patience", "learning_rate", "train_theta_plus", "train_theta_minus", "seed",
        "out_dir",
    ),
    "classification": (
        "task", "dataset", "data_dir", "image_size", "num_classes", "num_train_images", "width",
        "num_stages", "blocks_per_stage", "train_steps", "train_batch_size", "learning_rate",
        "train_noise", "loss", "num_noise_copies", "consistency_lbd", "consistency_eta",
        "smoothadv_eps", "smoothadv_steps", "smoothadv_warmup", "denoiser", "classifier",
        "denoiser_loss", "denoiser_steps", "denoiser_learning_rate",
        "denoiser_depth", "denoiser_features", "sigma", "seed", "out_dir",
    ),
}  # fmt: skip
TRAINING_FLAGS = tuple(dict.fromkeys(n for names in TRAINING_FLAGS_BY_TASK.values() for n in names))

flags.DEFINE_enum(
    "task", "segmentation", list(_JOBS), "Which job to run (classification: one image, one label)."
)


def _default_text(name: str) -> str:
    parts = []
    if name in _SEG:
        parts.append(f"segmentation {_format(_SEG[name])}")
    if name in _GRAPH:
        parts.append(f"graph {_format(_GRAPH[name])}")
    if name in _CLASSIFY:
        parts.append(f"classification {_format(_CLASSIFY[name])}")
    return " (default: " + ", ".join(parts) + ")"


def _format(value) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def _define() -> None:
    defaults = {**_CLASSIFY, **_GRAPH, **_SEG}
    for name, help_text in _HELP.items():
        default = defaults[name]
        text = help_text + _default_text(name)
        if isinstance(default, bool):
            flags.DEFINE_boolean(name, None, text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, None, text)
        elif isinstance(default, float):
            flags.DEFINE_float(name, None, text)
        else:
            flags.DEFINE_string(name, None, text)


_define()
FLAGS = flags.FLAGS


def parse_grid(text: str) -> tuple[int, int]:
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"`grid` must look like ROWSxCOLS, e.g. 3x5; got {text!r}. Pass --grid=3x5."
        ) from None
    return rows, cols


def task() -> str:
    return FLAGS.task


def given_flags() -> list[str]:
    """Names of the job flags set on the command line, in definition order."""
    return [name for name in ("task", *_HELP) if FLAGS[name].present]


def job_from_flags():
    """The job of `--task` built from the flags that were given (others: the task's defaults)."""
    cls = _JOBS[FLAGS.task]
    fields = set(cls().flat())
    given = {}
    for name in _HELP:
        value = FLAGS[name].value
        if value is None:
            continue
        if name not in fields:
            raise ValueError(
                f"`--{name}` does not apply to --task={FLAGS.task}; got {value!r}. "
                f"Drop it or pass the task it belongs to."
            )
        given[name] = parse_grid(value) if name == "grid" else value
    return cls.from_flat(given)
