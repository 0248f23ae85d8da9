"""The segmentation job: train (or reuse) models, certify images, write resumable results.

Every image is certified by localized smoothing and the chosen baselines (`methods`):
  * localized smoothing on an `I x J` grid (Schuchardt et al., 2023; docs/math.md): per-pixel base
    certificates, the naive certificate and the collective certificate (LP relaxation by default,
    or hull/MILP);
  * the isotropic baseline (SegCertify, Fischer et al., 2021: one Gaussian of std `sigma`, `K * n0`
    selection and `K * n` estimation samples, the forward passes of the `K` localized groups);
  * the same isotropic baseline at equal samples per distribution (`n0` and `n`, the paper's
    comparison, K times fewer forward passes), "isotropic_equal_samples";
  * the center-smoothing baseline (Kumar & Goldstein, 2021: the same Gaussian and forward passes,
    `K * n0` samples for the center and `K * n` for its output radius), on the isotropic model.
`baselines` picks the baselines.
`lrsjax.pipelines._run.certify_items` writes one JSON + NPZ per image to a `lrsjax.results.RunDir`;
a rerun of the same job resumes and never recomputes a finished image.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from lrsjax import _checks, _progress, collective, data, models, noise, results, training
from lrsjax.pipelines import _common, _losses, _run
from lrsjax.pipelines._center import run_center
from lrsjax.pipelines._config import Sections, jsonable, key_streams
from lrsjax.pipelines._method import Collective, Item, Method, Model

DATASETS = ("synthetic", "pascal_voc", "cityscapes")
TRAIN_NOISES = ("matched", "isotropic", "localized", "none")
BASELINES = ("isotropic", "isotropic_equal_samples", "center_smoothing")
# Named random streams of the job seed: training image data, test images, the U-Net trained with
# TRAIN_NOISES[i] (fold 10 + i), image i's certification (fold 1000 + i).
STREAMS = {"train_data": 1, "test_data": 2, "training": 10, "items": 1000}


@dataclasses.dataclass(frozen=True)
class Data:
    """`dataset` ("synthetic" needs no files; "pascal_voc"/"cityscapes" read `data_dir`),
    `image_size` and `num_classes` (synthetic only), `scale` (real data), `num_train_images`,
    `num_images` (images certified)."""

    dataset: str = "synthetic"
    data_dir: str = ""
    image_size: int = 64
    num_classes: int = 5
    scale: float = 0.5
    num_train_images: int = 256
    num_images: int = 4


@dataclasses.dataclass(frozen=True)
class UNet:
    """`checkpoint` (a saved model to certify; empty: train one per smoothing and keep it in
    `out_dir/models`), `depth`, `width` (channels of the first level)."""

    checkpoint: str = ""
    depth: int = 2
    width: int = 8


@dataclasses.dataclass(frozen=True)
class Training:
    """`train_steps`, `train_batch_size` (images per step), `localized_batch_size` (images per
    step of localized-noise training, which costs one forward pass per grid cell and image: the
    paper's stitched training), `learning_rate`, `train_noise` ("matched": each smoothing
    certifies a model trained with its own noise); the loss is section `losses`
    (`lrsjax.pipelines._losses.LossSettings`)."""

    train_steps: int = 300
    train_batch_size: int = 16
    localized_batch_size: int = 4
    learning_rate: float = 3e-3
    train_noise: str = "matched"


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """Localized: `grid` (I, J), `std_min`, `std_max`, `interpolate`, `max_std_at_boundary`,
    `mask_distance` (0 = none); isotropic and center-smoothing baselines: `sigma`; `baselines`:
    a comma-separated list of BASELINES (empty: localized smoothing only)."""

    grid: tuple = (3, 3)
    std_min: float = 0.15
    std_max: float = 1.0
    interpolate: str = "std"
    max_std_at_boundary: bool = False
    mask_distance: int = 0
    sigma: float = 0.25
    baselines: str = "isotropic,isotropic_equal_samples,center_smoothing"


def baseline_names(text: str) -> tuple:
    """The baselines of a comma-separated list (each of BASELINES at most once, in order)."""
    names = tuple(part.strip() for part in str(text).split(",") if part.strip())
    for name in names:
        if name not in BASELINES:
            _checks.fail(
                "baselines", text, f"must list names from {BASELINES}, separated by commas",
                "E.g. --baselines=isotropic,center_smoothing (or an empty string for none).",
            )  # fmt: skip
    if len(set(names)) != len(names):
        _checks.fail("baselines", text, "must name each baseline once", "Drop the repeats.")
    return names


@dataclasses.dataclass(frozen=True)
class Sampling:
    """`n0`, `n` (per localized group), `alpha`, `correction` (`tau`: the Holm threshold, used
    with correction="holm" only), `batch_size`."""

    n0: int = 32
    n: int = 256
    alpha: float = 0.01
    correction: str = "bonferroni"
    tau: float = 0.75
    batch_size: int = 32


@dataclasses.dataclass(frozen=True)
class Budget:
    """l2 radii `budget_min..budget_max` in `budget_steps` steps."""

    budget_min: float = 0.0
    budget_max: float = 1.0
    budget_steps: int = 11


@dataclasses.dataclass(frozen=True)
class CollectiveSettings:
    """`num_bins` (0 = no binning), `mode` ("lp", "hull", "milp"), `time_limit_s` (MILP solves,
    0 = no limit)."""

    num_bins: int = 32
    mode: str = "lp"
    time_limit_s: float = 0.0


TINY = dict(
    image_size=16, num_classes=3, num_train_images=8, num_images=2, depth=1, width=4,
    train_steps=10, train_batch_size=4, grid=(2, 2), n0=8, n=64, batch_size=16,
    budget_min=0.0, budget_max=0.3, budget_steps=4, num_bins=8,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, init=False)
class SegmentationJob(Sections):
    """Every setting of the segmentation job, in sections; each setting is also one CLI flag and
    one config.json key under its flat name (`job.n0 == job.sampling.n0`, see `Sections`).

    Sections: `data` (`Data`), `unet` (`UNet`), `training` (`Training`), `losses`
    (`LossSettings`), `smoothing` (`Smoothing`), `sampling` (`Sampling`), `budget` (`Budget`),
    `collective` (`CollectiveSettings`). Run: `seed`, `out_dir`, `overwrite`.
    """

    data: Data = dataclasses.field(default_factory=Data)
    unet: UNet = dataclasses.field(default_factory=UNet)
    training: Training = dataclasses.field(default_factory=Training)
    losses: _losses.LossSettings = dataclasses.field(default_factory=_losses.LossSettings)
    smoothing: Smoothing = dataclasses.field(default_factory=Smoothing)
    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    budget: Budget = dataclasses.field(default_factory=Budget)
    collective: CollectiveSettings = dataclasses.field(default_factory=CollectiveSettings)
    seed: int = 0
    out_dir: str = "lrsjax_runs/segmentation"
    overwrite: bool = False

    @classmethod
    def tiny(cls, **settings) -> SegmentationJob:
        """A job that trains, certifies and reports in seconds (tests), with `settings` on top."""
        return cls(**{**TINY, **settings})

    def validated(self) -> SegmentationJob:
        """Checks every field before anything is loaded, trained or compiled."""
        _common.check_dataset(self, DATASETS, "Pass --data_dir=/path/to/the/data set root.")
        _checks.one_of("train_noise", self.train_noise, TRAIN_NOISES)
        _losses.check(self, has_noise=self.train_noise != "none", fix="Pass --train_noise=matched")
        baseline_names(self.baselines)
        _checks.one_of("correction", self.correction, ("bonferroni", "rank_levels", "holm"))
        _checks.one_of("mode", self.mode, collective.MODES)
        _checks.one_of("interpolate", self.interpolate, ("std", "variance"))
        for name in ("num_train_images", "num_images", "depth", "width", "train_steps"):
            _checks.positive_int(name, getattr(self, name), minimum=0 if name == "depth" else 1)
        for name in ("n0", "n", "batch_size", "train_batch_size", "localized_batch_size",
                     "budget_steps", "image_size"):  # fmt: skip
            _checks.positive_int(name, getattr(self, name))
        _checks.positive_int("num_bins", self.num_bins, minimum=0)
        _checks.positive_int("mask_distance", self.mask_distance, minimum=0)
        _checks.probability("alpha", self.alpha)
        if _checks.probability("tau", self.tau) <= 0.5:
            _checks.fail("tau", self.tau, "must be in (1/2, 1)", "E.g. --tau=0.75.")
        grid = tuple(self.grid)
        if len(grid) != 2:
            _checks.fail("grid", self.grid, "must be two integers (rows, columns)", "E.g. 3x5.")
        for value in grid:
            _checks.positive_int("grid", value)
        if self.dataset == "synthetic":
            lo, hi = data.SYNTHETIC_SIZE_RANGE
            if not lo <= self.image_size <= hi:
                _checks.fail(
                    "image_size", self.image_size, f"must lie in [{lo}, {hi}] for synthetic data",
                    "E.g. --image_size=64.",
                )  # fmt: skip
            if max(grid) > self.image_size:
                _checks.fail(
                    "grid",
                    f"{grid[0]}x{grid[1]}",
                    f"must not exceed --image_size={self.image_size} in rows or columns (every "
                    "grid cell needs at least one pixel)",
                    f"Pass --grid with at most {self.image_size} rows and columns, or a larger "
                    "--image_size.",
                )
        for name in ("std_min", "std_max", "sigma", "learning_rate", "scale"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                _checks.fail(name, value, "must be a positive number", "E.g. 0.25.")
        if self.std_max < self.std_min:
            _checks.fail("std_max", self.std_max, f"must be >= std_min = {self.std_min}")
        _common.check_budget_range(self.budget_min, self.budget_max, self.budget_steps)
        if self.time_limit_s < 0:
            _checks.fail("time_limit_s", self.time_limit_s, "must be >= 0 (0 = no limit)")
        return self.replace(grid=grid)

    @property
    def budgets(self) -> np.ndarray:
        return np.linspace(self.budget_min, self.budget_max, self.budget_steps)

    @property
    def num_groups(self) -> int:
        return int(self.grid[0] * self.grid[1])


def load_data(job: SegmentationJob, split: str) -> data.SegmentationData:
    """The job's data set split ("train" or "test"); synthetic data needs no files."""
    count = job.num_train_images if split == "train" else job.num_images
    if job.dataset == "synthetic":
        stream = "train_data" if split == "train" else "test_data"
        return data.synthetic_segmentation(
            key_streams(job.seed, STREAMS).key(stream),
            count,
            image_shape=(job.image_size, job.image_size),
            num_classes=job.num_classes,
            split=split,
        )
    real_split = "train" if split == "train" else "val"
    if job.dataset == "pascal_voc":
        return data.load_pascal_voc(job.data_dir, real_split, scale=job.scale, max_images=count)
    return data.load_cityscapes(job.data_dir, real_split, scale=job.scale, max_images=count)


def _model_noise(job: SegmentationJob, smoothing: str) -> str:
    if job.train_noise == "matched":
        return smoothing
    return job.train_noise


def train_model(
    job: SegmentationJob, noise_kind: str, path, train_data=None, log=_progress.write, progress=True
):
    """Trains a U-Net with `noise_kind` noise for the job and saves it to `path` (atomically).

    `progress`: a training bar on stderr (drawn on a terminal, see `lrsjax._progress`).
    """
    train_data = load_data(job, "train") if train_data is None else train_data
    model = models.UNet(num_classes=train_data.num_classes, depth=job.depth, base_width=job.width)
    key = key_streams(job.seed, STREAMS).key("training", TRAIN_NOISES.index(noise_kind))
    start = time.perf_counter()
    batch_size = job.localized_batch_size if noise_kind == "localized" else job.train_batch_size
    params, _ = training.train_segmentation(
        key,
        model,
        train_data,
        steps=job.train_steps,
        batch_size=min(batch_size, train_data.num_images),
        learning_rate=job.learning_rate,
        noise=noise_kind,
        sigma=job.sigma,
        grid_shape=job.grid,
        std_min=job.std_min,
        std_max=job.std_max,
        interpolate=job.interpolate,
        max_std_at_boundary=job.max_std_at_boundary,
        mask_distance=job.mask_distance or None,
        progress=progress,
        loss=_losses.training_loss(job),
    )
    seconds = time.perf_counter() - start
    training.save_segmentation_model(
        path,
        model,
        params,
        input_shape=train_data.images.shape[1:],
        metadata={
            "noise": noise_kind,
            "loss": job.loss,
            "train_seconds": seconds,
            "job": {**jsonable(job), **_training_form(noise_kind)},
        },
    )
    log(f"trained a {noise_kind}-noise U-Net ({job.loss} loss) in {seconds:.1f} s -> {path}")
    return model, params


def model_path(job: SegmentationJob, smoothing: str) -> pathlib.Path:
    """Where the job keeps the model certified under `smoothing` ("localized" or "isotropic"):
    one file per training noise and loss."""
    name = f"unet_{_model_noise(job, smoothing)}{_losses.file_suffix(job)}.msgpack"
    return pathlib.Path(job.out_dir) / "models" / name


def train_models(job: SegmentationJob, log=_progress.write, progress=True) -> list[pathlib.Path]:
    """Trains (or reuses) the models the job certifies; returns their checkpoint paths."""
    job = job.validated().replace(checkpoint="", overwrite=False)
    paths = []
    for smoothing in ("localized", "isotropic"):
        path = model_path(job, smoothing)
        if path not in paths:
            get_model(job, smoothing, log, progress)
            paths.append(path)
    return paths


def training_settings(job: SegmentationJob, noise_kind: str) -> dict:
    """The settings a U-Net trained with `noise_kind` noise depends on (the noise itself names
    its checkpoint file), as stored in its checkpoint's metadata."""
    names = ["dataset", "num_train_images", "depth", "width", "train_steps", "learning_rate"]
    names += ["seed"]
    names += ["image_size", "num_classes"] if job.dataset == "synthetic" else ["data_dir", "scale"]
    if noise_kind == "localized":
        names += ["localized_batch_size", "grid", "std_min", "std_max", "interpolate"]
        names += ["max_std_at_boundary", "mask_distance"]
    else:
        names += ["train_batch_size"] + (["sigma"] if noise_kind == "isotropic" else [])
    names += _losses.settings_names(job)
    settings = {**jsonable(job), **_training_form(noise_kind)}
    return {name: settings[name] for name in [*names, *_training_form(noise_kind)]}


def _training_form(noise_kind: str) -> dict:
    """How a `noise_kind` model is trained, where it changed: localized models are trained on
    stitched predictions (one sample per grid cell), not on one random cell per image."""
    return {"localized_training": "stitched"} if noise_kind == "localized" else {}


def get_model(job: SegmentationJob, smoothing: str, log=_progress.write, progress=True):
    """The model certified under `smoothing`: the checkpoint, a saved one trained with the job's
    settings, or a newly trained one (a saved one trained otherwise: ValueError, or retrained
    with `overwrite`)."""
    if job.checkpoint:
        model, params, _ = training.load_segmentation_model(job.checkpoint)
        return model, params
    path = model_path(job, smoothing)
    noise_kind = _model_noise(job, smoothing)
    if training.checkpoint_exists(path):
        model, params, meta = training.load_segmentation_model(path)
        recorded = meta.get("extra", {}).get("job")
        if recorded is not None and noise_kind == "localized":
            recorded = {"localized_training": "one random cell per image", **recorded}
        expected = training_settings(job, noise_kind)
        if _common.reusable(path, recorded, expected, overwrite=job.overwrite, log=log):
            log(f"reusing {path}")
            return model, params
    return train_model(job, noise_kind, path, log=log, progress=progress)


def methods(job: SegmentationJob) -> list[Method]:
    """Localized smoothing (naive and collective) and the chosen baselines (`job.baselines`) at
    equal forward passes (K groups: a baseline draws K times n0 and n), except
    "isotropic_equal_samples" (n0 and n: equal samples per distribution)."""
    budgets, k = job.budgets, job.num_groups
    sampling = dict(
        alpha=job.alpha, batch_size=job.batch_size, correction=job.correction,
        tau=job.tau if job.correction == "holm" else None,
    )  # fmt: skip

    def localized(x):
        return noise.localized_gaussian(
            x.shape,
            job.grid,
            job.std_min,
            job.std_max,
            interpolate=job.interpolate,
            max_std_at_boundary=job.max_std_at_boundary,
            mask_distance=job.mask_distance or None,
        )

    def isotropic(x):
        return noise.isotropic_gaussian(x.shape, job.sigma)

    step = Collective(
        f"localized_{job.mode}", job.mode, num_bins=job.num_bins or None,
        time_limit_s=job.time_limit_s or None, extra={"num_bins": job.num_bins},
    )  # fmt: skip
    samples = k * (job.n0 + job.n)
    chosen = {
        "isotropic": Method(
            "isotropic_naive",
            "isotropic",
            isotropic,
            budgets,
            dict(n0=k * job.n0, n=k * job.n, **sampling),
            samples,
            radius_sum=True,
            extra={"sigma": job.sigma, "n0": k * job.n0, "n": k * job.n},
        ),
        # The paper's comparison (Schuchardt et al., 2023): as many samples as ONE
        # localized distribution gets, so K times fewer forward passes than localized smoothing.
        "isotropic_equal_samples": Method(
            "isotropic_equal_samples",
            "isotropic equal samples",
            isotropic,
            budgets,
            dict(n0=job.n0, n=job.n, **sampling),
            job.n0 + job.n,
            radius_sum=True,
            extra={
                "sigma": job.sigma,
                "n0": job.n0,
                "n": job.n,
                "baseline": "equal samples per distribution",
            },
        ),
        "center_smoothing": Method(
            "center_smoothing",
            "center smoothing",
            isotropic,
            budgets,
            dict(n0=k * job.n0, n=k * job.n, alpha=job.alpha, batch_size=job.batch_size),
            samples,
            arrays=("prediction", "abstain"),
            run=run_center,
            extra={
                "sigma": job.sigma,
                "n0": k * job.n0,
                "n": k * job.n,
                "delta": 0.05,
                "beta": 2.0,
            },
        ),
    }
    return [
        Method(
            "localized_naive", "localized", localized, budgets,
            dict(n0=job.n0, n=job.n, **sampling), samples, collective=step, radius_sum=True,
        ),
        *(chosen[name] for name in baseline_names(job.baselines)),
    ]  # fmt: skip


def _run_drop(job: SegmentationJob) -> tuple:
    """The settings that do not identify the job's run: where it is written, and the loss
    settings with loss="noise" (they change nothing then)."""
    return ("out_dir", "overwrite") + (_losses.LOSS_SETTINGS if job.loss == "noise" else ())


def run(
    job: SegmentationJob, log=_progress.write, progress=True, *, overlap: bool | None = None
) -> pathlib.Path:
    """Runs (or resumes) the segmentation job; returns the run directory.

    `progress`: bars on stderr for training and for the images (samples/s without compilation,
    compile seconds, ETA), drawn on a terminal (see `lrsjax._progress`); where no bar is drawn,
    `log` gets one line per image instead. `log` also gets the summary table at the end.
    `overlap`: run the host work of an image (collective certificate, writing) while the
    devices sample the next one (same files; None: on accelerators, off on the CPU). Under
    `jax.distributed` (`initialize_distributed`) this process certifies its share of the images
    (see `certify_items`).
    """
    job = job.validated()
    run_dir = results.RunDir.start(
        pathlib.Path(job.out_dir) / "results",
        {"task": "image", **jsonable(job, drop=_run_drop(job))},
        seeds={"seed": job.seed},
        overwrite=job.overwrite,
        # synthetic image i does not depend on num_images (real data: an evenly spaced subset)
        extend=("num_images",) if job.dataset == "synthetic" else (),
    )
    test = load_data(job, "test")
    item_ids = [f"img{i:04d}_{_common.safe_id(name)}" for i, name in enumerate(test.ids)]
    streams = key_streams(job.seed, STREAMS)

    def load_item(item_id: str) -> Item:
        index = item_ids.index(item_id)
        x, labels = test.image(index)
        x, labels = np.asarray(x), np.asarray(labels)
        flat = labels.reshape(-1)
        return Item(
            item_id,
            streams.key("items", index),
            x,
            flat,
            flat != data.IGNORE_LABEL,
            labels.shape,
            test.num_classes,
            arrays={"image": np.asarray(x, np.float32), "labels": labels.astype(np.int32)},
            seeds={"seed": job.seed, "item_key": [streams.fold("items", index)]},
        )

    def prepare() -> _run.Plan:
        pairs = [get_model(job, s, log=log, progress=progress) for s in ("localized", "isotropic")]
        apply = [Model(models.segmentation_apply_fn(model), params) for model, params in pairs]
        # localized smoothing certifies the localized model, every baseline the isotropic one
        chosen = methods(job)
        return _run.Plan(chosen, apply[:1] + apply[1:] * (len(chosen) - 1), load_item)

    return _run.certify_items(
        run_dir, item_ids, prepare, task="image", budget_kind="l2", log=log, progress=progress,
        overlap=overlap,
    )  # fmt: skip
