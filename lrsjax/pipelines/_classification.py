"""The image classification job: train (or reuse) a ResNet, certify test images, write results.

Every test image is certified with Cohen et al.'s CERTIFY under isotropic Gaussian noise of std
`sigma` (selection on `n0` samples, estimation on `n`, a Clopper-Pearson bound at level `alpha`;
radius `sigma * Phi^{-1}(p_lower)` in l2; docs/math.md, "Single-output classifiers"). The
classifier is a model with one output, so every image is one item with one output of the generic
resumable run (`certify_items`): its record holds the prediction, the abstention, the radius and
whether it is correct, and the pooled summary over the items is the certified accuracy at each l2
radius of the budget grid, the exact ACR (the mean of the radii of correct inputs) and the clean
accuracy of the smoothed classifier (abstentions counted wrong).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from collections.abc import Callable

import numpy as np

from lrsjax import _checks, _progress, data, models, noise, results, training
from lrsjax.pipelines import _common, _denoised, _losses, _run
from lrsjax.pipelines._config import Sections, jsonable, key_streams
from lrsjax.pipelines._method import Item, Method, Model

DATASETS = ("synthetic", "cifar10", "folder")
TRAIN_NOISES = ("matched", "none")
# Named random streams of the job seed: training data, test data, the ResNet trained with
# TRAIN_NOISES[i] (fold 10 + i), the denoiser trained with DENOISER_LOSSES[i] (fold 20 + i),
# image i's certification (fold 1000 + i).
STREAMS = {"train_data": 1, "test_data": 2, "training": 10, "denoiser": 20, "items": 1000}


@dataclasses.dataclass(frozen=True)
class Data:
    """`dataset` ("synthetic" needs no files; "cifar10" reads CIFAR-10's binary batches in
    `data_dir`; "folder" reads `data_dir/train/<class>/*` and `data_dir/test/<class>/*`),
    `image_size` (synthetic and folder), `num_classes` (synthetic), `num_train_images`,
    `num_images` (test images certified)."""

    dataset: str = "synthetic"
    data_dir: str = ""
    image_size: int = 32
    num_classes: int = 6
    num_train_images: int = 2048
    num_images: int = 100


@dataclasses.dataclass(frozen=True)
class ResNetSettings:
    """`checkpoint` (a saved classifier to certify; empty: train one and keep it in
    `out_dir/models`), `width` (channels of the first stage), `num_stages`, `blocks_per_stage`."""

    checkpoint: str = ""
    width: int = 16
    num_stages: int = 3
    blocks_per_stage: int = 1


@dataclasses.dataclass(frozen=True)
class Training:
    """`train_steps`, `train_batch_size`, `learning_rate`, `train_noise` ("matched": Gaussian
    noise of std `sigma`, the certified smoothing; "none": clean images); the loss is section
    `losses` (`lrsjax.pipelines._losses.LossSettings`)."""

    train_steps: int = 600
    train_batch_size: int = 64
    learning_rate: float = 3e-3
    train_noise: str = "matched"


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """`sigma`: std of the isotropic Gaussian smoothing, in [0, 1] pixel units."""

    sigma: float = 0.25


@dataclasses.dataclass(frozen=True)
class Sampling:
    """`n0` (selection), `n` (estimation), `alpha` (per-image error probability), `batch_size`."""

    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    batch_size: int = 250


@dataclasses.dataclass(frozen=True)
class Budget:
    """The l2 radii of the certified-accuracy curve: `budget_min..budget_max` in `budget_steps`
    steps (the ACR does not depend on them: it is the mean radius of the correct inputs)."""

    budget_min: float = 0.0
    budget_max: float = 1.0
    budget_steps: int = 21


TINY = dict(
    image_size=8, num_classes=3, num_train_images=16, num_images=3, width=4, num_stages=1,
    train_steps=4, train_batch_size=8, n0=8, n=64, alpha=0.01, batch_size=32, budget_steps=5,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, init=False)
class ClassificationJob(Sections):
    """Every setting of the classification job, in sections; each setting is also one CLI flag and
    one config.json key under its flat name (`job.n0 == job.sampling.n0`, see `Sections`).

    Sections: `data` (`Data`), `resnet` (`ResNetSettings`), `training` (`Training`), `losses`
    (`LossSettings`), `denoising` (`DenoiserSettings`), `smoothing` (`Smoothing`), `sampling`
    (`Sampling`), `budget` (`Budget`). Run: `seed`, `out_dir`, `overwrite`.
    """

    data: Data = dataclasses.field(default_factory=Data)
    resnet: ResNetSettings = dataclasses.field(default_factory=ResNetSettings)
    training: Training = dataclasses.field(default_factory=Training)
    losses: _losses.LossSettings = dataclasses.field(default_factory=_losses.LossSettings)
    denoising: _denoised.DenoiserSettings = dataclasses.field(
        default_factory=_denoised.DenoiserSettings
    )
    smoothing: Smoothing = dataclasses.field(default_factory=Smoothing)
    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    budget: Budget = dataclasses.field(default_factory=Budget)
    seed: int = 0
    out_dir: str = "lrsjax_runs/classification"
    overwrite: bool = False

    @classmethod
    def tiny(cls, **settings) -> ClassificationJob:
        """A job that trains, certifies and reports in seconds (tests), with `settings` on top."""
        return cls(**{**TINY, **settings})

    def validated(self) -> ClassificationJob:
        """Checks every field before anything is loaded, trained or compiled."""
        _common.check_dataset(self, DATASETS, "Pass --data_dir=/path/to/the/data set.")
        _checks.one_of("train_noise", self.train_noise, TRAIN_NOISES)
        _losses.check(
            self, has_noise=self.train_noise == "matched", fix="Pass --train_noise=matched"
        )
        _denoised.check(self)
        for name in ("num_train_images", "num_images", "width", "num_stages", "blocks_per_stage"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("train_steps", "train_batch_size", "n0", "n", "batch_size", "budget_steps"):
            _checks.positive_int(name, getattr(self, name))
        _checks.positive_int("image_size", self.image_size, minimum=8)
        _checks.positive_int("num_classes", self.num_classes, minimum=2)
        if self.dataset == "synthetic" and self.num_classes > len(data.SYNTHETIC_PATTERNS):
            _checks.fail(
                "num_classes", self.num_classes,
                f"must be at most {len(data.SYNTHETIC_PATTERNS)} for synthetic data",
                "Pass a smaller --num_classes.",
            )  # fmt: skip
        if self.num_stages > 4:
            _checks.fail("num_stages", self.num_stages, "must be <= 4", "E.g. --num_stages=3.")
        _checks.probability("alpha", self.alpha)
        for name in ("sigma", "learning_rate"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                _checks.fail(name, value, "must be a positive number", "E.g. 0.25.")
        _common.check_budget_range(self.budget_min, self.budget_max, self.budget_steps)
        return self

    @property
    def budgets(self) -> np.ndarray:
        return np.linspace(self.budget_min, self.budget_max, self.budget_steps)


def load_data(job: ClassificationJob, split: str) -> data.ClassificationData:
    """The job's data set split ("train" or "test"); synthetic data needs no files."""
    count = job.num_train_images if split == "train" else job.num_images
    if job.dataset == "synthetic":
        stream = "train_data" if split == "train" else "test_data"
        return data.synthetic_classification(
            key_streams(job.seed, STREAMS).key(stream),
            count,
            split=split,
            num_classes=job.num_classes,
            image_size=job.image_size,
        )
    if job.dataset == "cifar10":
        return data.load_cifar10(job.data_dir, split, max_images=count)
    return _spread(data.load_image_folder(job.data_dir, split, image_size=job.image_size), count)


def _spread(dataset: data.ClassificationData, count: int) -> data.ClassificationData:
    """An evenly spaced subset of `count` images (all of them if there are fewer), so that every
    class of a class-sorted folder is represented."""
    if count >= dataset.num_images:
        return dataset
    index = np.linspace(0, dataset.num_images - 1, count).round().astype(np.int64)
    return dataset._replace(images=dataset.images[index], labels=dataset.labels[index])


def training_settings(job: ClassificationJob) -> dict:
    """The settings a trained classifier depends on, as stored in its checkpoint's metadata."""
    names = ["dataset", "num_train_images", "width", "num_stages", "blocks_per_stage"]
    names += ["train_steps", "train_batch_size", "learning_rate", "train_noise", "seed"]
    names += ["image_size", "num_classes"] if job.dataset == "synthetic" else ["data_dir"]
    if job.dataset == "folder":
        names += ["image_size"]
    if job.train_noise == "matched":
        names += ["sigma"]
    names += _losses.settings_names(job)
    settings = jsonable(job)
    return {name: settings[name] for name in names}


def run_config(job: ClassificationJob) -> dict:
    """The configuration that identifies the job's run (`lrsjax.results.RunDir.start`): every
    setting but `out_dir` and `overwrite`, and the loss settings only when `loss` is not "noise"
    (so a run started before they existed resumes)."""
    drop = ("out_dir", "overwrite") + (_losses.LOSS_SETTINGS if job.loss == "noise" else ())
    drop += () if job.denoiser else _denoised.DENOISER_SETTINGS
    return {"task": "image", "job": "classification", **jsonable(job, drop=drop)}


def model_path(job: ClassificationJob) -> pathlib.Path:
    """Where the job keeps the classifier it trains (one file per training noise and loss)."""
    suffix = _losses.file_suffix(job)
    return pathlib.Path(job.out_dir) / "models" / f"resnet_{job.train_noise}{suffix}.msgpack"


def train_model(job: ClassificationJob, path, log=_progress.write, progress=True):
    """Trains the job's ResNet and saves it to `path` (atomically); returns (model, params)."""
    train_data = load_data(job, "train")
    model = models.ResNet(
        train_data.num_classes,
        width=job.width,
        num_stages=job.num_stages,
        blocks_per_stage=job.blocks_per_stage,
    )
    train_noise = None
    if job.train_noise == "matched":
        train_noise = noise.isotropic_gaussian(train_data.image_shape, job.sigma)
    key = key_streams(job.seed, STREAMS).key("training", TRAIN_NOISES.index(job.train_noise))
    start = time.perf_counter()
    params, history = training.train_classifier(
        key,
        model,
        train_data,
        noise=train_noise,
        steps=job.train_steps,
        batch_size=min(job.train_batch_size, train_data.num_images),
        learning_rate=job.learning_rate,
        progress=progress,
        loss=_losses.training_loss(job),
    )
    seconds = time.perf_counter() - start
    training.save_classifier(
        path,
        model,
        params,
        input_shape=train_data.image_shape,
        metadata={
            "noise": job.train_noise,
            "loss": job.loss,
            "sigma": job.sigma if train_noise is not None else None,
            "train_seconds": seconds,
            "final_loss": float(history.loss[-1]),
            "job": jsonable(job),
        },
    )
    log(f"trained a ResNet ({job.train_noise} noise, {job.loss} loss) in {seconds:.1f} s -> {path}")
    return model, params


def get_model(job: ClassificationJob, log=_progress.write, progress=True):
    """The classifier to certify (or to put behind the denoiser): the checkpoint (`classifier`
    with a denoiser), a saved one trained with the job's settings, or a newly trained one (a
    saved one trained otherwise: ValueError, or retrained with `overwrite`)."""
    checkpoint = _denoised.classifier_checkpoint(job)
    if checkpoint:
        model, params, _ = training.load_classifier(checkpoint)
        return model, params
    path = model_path(job)
    if training.checkpoint_exists(path):
        model, params, meta = training.load_classifier(path)
        recorded = meta.get("extra", {}).get("job")
        if _common.reusable(
            path, recorded, training_settings(job), overwrite=job.overwrite, log=log
        ):
            log(f"reusing {path}")
            return model, params
    return train_model(job, path, log=log, progress=progress)


def train_models(job: ClassificationJob, log=_progress.write, progress=True) -> list:
    """Trains (or reuses) the classifier the job certifies, and with `denoiser` the denoiser in
    front of it (the frozen classifier then comes from `classifier`, or is the job's own); returns
    the checkpoint paths of what the job trains or reuses in its out_dir."""
    job = job.validated().replace(checkpoint="", overwrite=False)
    if not job.denoiser:
        get_model(job, log, progress)
        return [model_path(job)]
    job = job.replace(denoiser_checkpoint="")
    classifier = get_model(job, log, progress)
    get_denoiser(job, classifier, log=log, progress=progress)
    own = [] if _denoised.classifier_checkpoint(job) else [model_path(job)]
    return [*own, _denoised.denoiser_path(job)]


def get_denoiser(job: ClassificationJob, classifier, log=_progress.write, progress=True):
    """The job's denoiser (`_denoised.get_denoiser`) in front of `classifier`."""
    streams = key_streams(job.seed, STREAMS)
    index = training.DENOISER_LOSSES.index(job.denoiser_loss)
    return _denoised.get_denoiser(
        job, classifier, load_train_data=lambda: load_data(job, "train"),
        key=streams.key("denoiser", index),
        classifier_id=_denoised.classifier_checkpoint(job) or str(model_path(job)),
        log=log, progress=progress,
    )  # fmt: skip


@functools.lru_cache(maxsize=32)
def _one_output(apply_fn: Callable) -> Callable:
    """`apply_fn` with logits `[num_classes]` as a model with one output `[1, num_classes]`; the
    same function object for the same `apply_fn` (compiled kernels are reused)."""

    def wrapped(params, x):
        return apply_fn(params, x)[None]

    return wrapped


def single_output_noise(image_shape, sigma: float) -> noise.Noise:
    """Isotropic Gaussian noise on images `(C, H, W)` smoothing ONE output (a classifier)."""
    return noise.single_output(noise.isotropic_gaussian(image_shape, sigma))


def methods(job: ClassificationJob) -> list[Method]:
    """Cohen et al.'s CERTIFY with isotropic Gaussian noise of std `sigma` (no correction: one
    output per input)."""

    def gaussian(x):
        return single_output_noise(x.shape, job.sigma)

    options = dict(n0=job.n0, n=job.n, alpha=job.alpha, batch_size=job.batch_size)
    extra = {"sigma": job.sigma, "n0": job.n0, "n": job.n}
    if job.denoiser:
        extra["denoiser"] = _denoised.describe(job)
    return [
        Method(
            "cohen_gaussian", "gaussian", gaussian, job.budgets, options, job.n0 + job.n,
            radius_sum=True, extra=extra,
        )
    ]  # fmt: skip


def run(
    job: ClassificationJob, log=_progress.write, progress=True, *, overlap: bool | None = None
) -> pathlib.Path:
    """Runs (or resumes) the classification job; returns the run directory.

    One resumable item per test image (`img<index>`); the summary pools them (see the module
    docstring). `progress`: bars on stderr for training and the images, drawn on a terminal (see
    `lrsjax._progress`); `log` gets one line per image where no bar is drawn, and the summary.
    `overlap`: run the host work of an image (collective certificate, writing) while the
    devices sample the next one (same files; None: on accelerators, off on the CPU). Under
    `jax.distributed` (`initialize_distributed`) this process certifies its share of the images
    (see `certify_items`).
    """
    job = job.validated()
    run_dir = results.RunDir.start(
        pathlib.Path(job.out_dir) / "results",
        run_config(job),
        seeds={"seed": job.seed},
        overwrite=job.overwrite,
        # synthetic and CIFAR-10 test image i does not depend on num_images (folder: a spread)
        extend=("num_images",) if job.dataset in ("synthetic", "cifar10") else (),
    )
    test = load_data(job, "test")
    item_ids = [f"img{i:05d}" for i in range(test.num_images)]
    streams = key_streams(job.seed, STREAMS)

    def load_item(item_id: str) -> Item:
        index = item_ids.index(item_id)
        label = np.array([test.labels[index]], np.int32)
        return Item(
            item_id,
            streams.key("items", index),
            np.asarray(test.images[index]),
            label,
            np.ones(1, bool),
            (1,),
            test.num_classes,
            arrays={"labels": label},
            seeds={"seed": job.seed, "item_key": [streams.fold("items", index)]},
            ignore_label=None,
            extra={"class_name": test.class_names[int(label[0])], "index": index},
        )

    def prepare() -> _run.Plan:
        model, params = get_model(job, log=log, progress=progress)
        if model.num_classes != test.num_classes:
            name = "classifier" if job.classifier else "checkpoint"
            _checks.fail(
                name, _denoised.classifier_checkpoint(job) or str(model_path(job)),
                f"must classify {test.num_classes} classes (the test data's); its model has "
                f"{model.num_classes}", "Pass a checkpoint trained on this data set.",
            )  # fmt: skip
        if job.denoiser:
            denoiser = get_denoiser(job, (model, params), log=log, progress=progress)
            apply_fn, params = _denoised.base_model((model, params), denoiser)
        else:
            apply_fn = models.classifier_apply_fn(model)
        return _run.Plan(methods(job), [Model(_one_output(apply_fn), params)], load_item)

    return _run.certify_items(
        run_dir, item_ids, prepare, task="image", budget_kind="l2", log=log, progress=progress,
        overlap=overlap,
    )  # fmt: skip
