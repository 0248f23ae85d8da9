"""The segmentation job: train (or reuse) a model, certify images, write resumable results.

For every image the job certifies, at equal numbers of forward passes:
  * localized smoothing (SPEC 2) on an `I x J` grid: per-pixel base certificates, the collective
    certificate (LP relaxation by default, or hull/MILP) and the naive certificate;
  * the isotropic baseline (SegCertify-style: one Gaussian of std `sigma`, `K * n0` selection and
    `K * n` estimation samples, the same forward passes as the `K` localized groups), naive.
Results go to a `lrsjax.results.RunDir`: one JSON + NPZ per image, written atomically; a rerun
of the same job resumes and never recomputes a finished image.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time

import jax
import numpy as np

from lrsjax import (
    _checks,
    _progress,
    base_certs,
    collective,
    data,
    models,
    noise,
    results,
    training,
)
from lrsjax._certify import certify
from lrsjax.pipelines import _common

DATASETS = ("synthetic", "pascal_voc", "cityscapes")
TRAIN_NOISES = ("matched", "isotropic", "localized", "none")


@dataclasses.dataclass(frozen=True)
class SegmentationJob:
    """Every setting of the segmentation job (the CLI flags map one to one onto these fields).

    Data: `dataset` ("synthetic" needs no files; "pascal_voc"/"cityscapes" read `data_dir`),
    `image_size` and `num_classes` (synthetic only), `scale` (real data), `num_train_images`,
    `num_images` (images certified).
    Model: `checkpoint` (a saved model to certify; empty: train one per smoothing and keep it in
    `out_dir/models`), `depth`, `width`, `train_steps`, `train_batch_size`, `learning_rate`,
    `train_noise` ("matched": each smoothing certifies a model trained with its own noise).
    Smoothing: `grid` (I, J), `std_min`, `std_max`, `interpolate`, `max_std_at_boundary`,
    `mask_distance` (0 = none), `sigma` (isotropic baseline).
    Sampling: `n0`, `n` (per localized group), `alpha`, `correction` (`tau`: the Holm
    threshold, used with correction="holm" only), `batch_size`.
    Collective: budgets `budget_min..budget_max` in `budget_steps` steps (l2 radii eps),
    `num_bins` (0 = no binning), `mode` ("lp", "hull", "milp"), `time_limit_s` (MILP, 0 = none).
    Run: `seed`, `out_dir`, `overwrite`.
    """

    dataset: str = "synthetic"
    data_dir: str = ""
    image_size: int = 64
    num_classes: int = 5
    scale: float = 0.5
    num_train_images: int = 256
    num_images: int = 4
    checkpoint: str = ""
    depth: int = 2
    width: int = 8
    train_steps: int = 300
    train_batch_size: int = 16
    learning_rate: float = 3e-3
    train_noise: str = "matched"
    grid: tuple = (3, 3)
    std_min: float = 0.15
    std_max: float = 1.0
    interpolate: str = "std"
    max_std_at_boundary: bool = False
    mask_distance: int = 0
    sigma: float = 0.25
    n0: int = 32
    n: int = 256
    alpha: float = 0.01
    correction: str = "bonferroni"
    tau: float = 0.75
    batch_size: int = 32
    budget_min: float = 0.0
    budget_max: float = 1.0
    budget_steps: int = 11
    num_bins: int = 32
    mode: str = "lp"
    time_limit_s: float = 0.0
    seed: int = 0
    out_dir: str = "lrsjax_runs/segmentation"
    overwrite: bool = False

    def validated(self) -> SegmentationJob:
        """Checks every field before anything is loaded, trained or compiled."""
        _checks.one_of("dataset", self.dataset, DATASETS)
        if self.dataset != "synthetic" and not self.data_dir:
            _checks.fail(
                "data_dir", self.data_dir, f"is required for dataset={self.dataset!r}",
                "Pass --data_dir=/path/to/the/data set root.",
            )  # fmt: skip
        _checks.one_of("train_noise", self.train_noise, TRAIN_NOISES)
        _checks.one_of("correction", self.correction, ("bonferroni", "rank_levels", "holm"))
        _checks.one_of("mode", self.mode, collective.MODES)
        _checks.one_of("interpolate", self.interpolate, ("std", "variance"))
        for name in ("num_train_images", "num_images", "depth", "width", "train_steps"):
            _checks.positive_int(name, getattr(self, name), minimum=0 if name == "depth" else 1)
        for name in ("n0", "n", "batch_size", "train_batch_size", "budget_steps", "image_size"):
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
        return dataclasses.replace(self, grid=grid)

    @property
    def budgets(self) -> np.ndarray:
        return np.linspace(self.budget_min, self.budget_max, self.budget_steps)

    @property
    def num_groups(self) -> int:
        return int(self.grid[0] * self.grid[1])


def load_data(job: SegmentationJob, split: str) -> data.SegmentationData:
    """The job's data set split ("train" or "test"); synthetic data needs no files."""
    if job.dataset == "synthetic":
        key = jax.random.fold_in(jax.random.PRNGKey(job.seed), 1 if split == "train" else 2)
        count = job.num_train_images if split == "train" else job.num_images
        return data.synthetic_segmentation(
            key,
            count,
            image_shape=(job.image_size, job.image_size),
            num_classes=job.num_classes,
            split=split,
        )
    real_split = "train" if split == "train" else "val"
    count = job.num_train_images if split == "train" else job.num_images
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
    key = jax.random.fold_in(jax.random.PRNGKey(job.seed), 10 + TRAIN_NOISES.index(noise_kind))
    start = time.perf_counter()
    params, _ = training.train_segmentation(
        key,
        model,
        train_data,
        steps=job.train_steps,
        batch_size=min(job.train_batch_size, train_data.num_images),
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
    )
    seconds = time.perf_counter() - start
    training.save_segmentation_model(
        path,
        model,
        params,
        input_shape=train_data.images.shape[1:],
        metadata={"noise": noise_kind, "train_seconds": seconds, "job": _common.jsonable(job)},
    )
    log(f"trained a {noise_kind}-noise U-Net in {seconds:.1f} s -> {path}")
    return model, params


def model_path(job: SegmentationJob, smoothing: str) -> pathlib.Path:
    """Where the job keeps the model certified under `smoothing` ("localized" or "isotropic")."""
    return pathlib.Path(job.out_dir) / "models" / f"unet_{_model_noise(job, smoothing)}.msgpack"


def train_models(job: SegmentationJob, log=_progress.write, progress=True) -> list[pathlib.Path]:
    """Trains (or reuses) the models the job certifies; returns their checkpoint paths."""
    job = job.validated()
    paths = []
    for smoothing in ("localized", "isotropic"):
        path = model_path(job, smoothing)
        if path not in paths:
            get_model(dataclasses.replace(job, checkpoint=""), smoothing, log, progress)
            paths.append(path)
    return paths


def get_model(job: SegmentationJob, noise_kind: str, log=_progress.write, progress=True):
    """The model certified under `noise_kind` smoothing: the checkpoint, a saved one, or trained."""
    if job.checkpoint:
        model, params, _ = training.load_segmentation_model(job.checkpoint)
        return model, params
    path = model_path(job, noise_kind)
    if training.checkpoint_exists(path):
        model, params, _ = training.load_segmentation_model(path)
        log(f"reusing {path}")
        return model, params
    return train_model(job, _model_noise(job, noise_kind), path, log=log, progress=progress)


def _counts(certified: np.ndarray, correct: np.ndarray, evaluated: np.ndarray):
    """Certified counts [B] over the `all` and `correct` target sets from a [D, B] mask."""
    certified = certified & evaluated[:, None]
    return certified.sum(0).tolist(), (certified & correct[:, None]).sum(0).tolist()


def certify_image(job: SegmentationJob, key, x, labels, localized_model, isotropic_model):
    """Certifies one image with localized and isotropic smoothing; returns (record, arrays).

    Args:
      job: the validated job.
      key: this image's JAX key.
      x: float32 [C, H, W] in [0, 1].
      labels: int [H, W], 255 = ignore.
      localized_model, isotropic_model: (apply_fn, params) pairs.
    """
    budgets = job.budgets
    height, width = labels.shape
    labels_flat = labels.reshape(-1)
    evaluated = labels_flat != data.IGNORE_LABEL
    key_localized, key_isotropic = jax.random.split(key)
    timings = {}
    options, localized_timings = _common.certify_options(progress=False)

    smoothing = noise.localized_gaussian(
        x.shape,
        job.grid,
        job.std_min,
        job.std_max,
        interpolate=job.interpolate,
        max_std_at_boundary=job.max_std_at_boundary,
        mask_distance=job.mask_distance or None,
    )
    start = time.perf_counter()
    cert = certify(
        key_localized,
        localized_model[0],
        localized_model[1],
        x,
        smoothing,
        n0=job.n0,
        n=job.n,
        alpha=job.alpha,
        batch_size=job.batch_size,
        correction=job.correction,
        tau=job.tau if job.correction == "holm" else None,
        **options,
    )
    timings["localized_sampling_s"] = time.perf_counter() - start
    _sampling_timings(timings, "localized", localized_timings)
    correct = evaluated & ~cert.abstain & (cert.prediction == labels_flat)
    methods = {}

    naive = base_certs.naive_certified(cert.base_certs, budgets)
    all_counts, correct_counts = _counts(naive, correct, evaluated)
    methods["localized_naive"] = results.method_record(
        "naive",
        budgets,
        all_counts,
        correct_counts,
        certified_radius_sum=float(np.where(correct, cert.radius, 0.0).sum()),
        num_certified_correct_per_class=results.per_class_certified_counts(
            naive, correct, labels_flat, localized_model_classes(cert), evaluated=evaluated
        ),
    )

    start = time.perf_counter()
    collective_all = collective.certify_collective(
        cert.base_certs, budgets, targets=evaluated, num_bins=job.num_bins or None,
        mode=job.mode, time_limit_s=job.time_limit_s or None,
    )  # fmt: skip
    collective_correct = collective.certify_collective(
        cert.base_certs, budgets, targets=correct, num_bins=job.num_bins or None,
        mode=job.mode, time_limit_s=job.time_limit_s or None,
    )  # fmt: skip
    timings["collective_s"] = time.perf_counter() - start
    methods[f"localized_{job.mode}"] = results.method_record(
        job.mode,
        budgets,
        np.asarray(collective_all.certified).tolist(),
        np.asarray(collective_correct.certified).tolist(),
        solver=list(collective_all.solver),
        status=list(collective_all.status),
        extra={"status_correct": list(collective_correct.status), "num_bins": job.num_bins},
    )

    k = job.num_groups
    isotropic = noise.isotropic_gaussian(x.shape, job.sigma)
    options, isotropic_timings = _common.certify_options(progress=False)
    start = time.perf_counter()
    cert_iso = certify(
        key_isotropic,
        isotropic_model[0],
        isotropic_model[1],
        x,
        isotropic,
        n0=k * job.n0,
        n=k * job.n,
        alpha=job.alpha,
        batch_size=job.batch_size,
        correction=job.correction,
        tau=job.tau if job.correction == "holm" else None,
        **options,
    )
    timings["isotropic_sampling_s"] = time.perf_counter() - start
    _sampling_timings(timings, "isotropic", isotropic_timings)
    correct_iso = evaluated & ~cert_iso.abstain & (cert_iso.prediction == labels_flat)
    naive_iso = base_certs.naive_certified(cert_iso.base_certs, budgets)
    all_iso, correct_counts_iso = _counts(naive_iso, correct_iso, evaluated)
    iso_metrics = results.output_metrics(
        cert_iso.prediction, labels_flat, cert_iso.abstain, int(localized_model_classes(cert))
    )
    methods["isotropic_naive"] = results.method_record(
        "naive",
        budgets,
        all_iso,
        correct_counts_iso,
        certified_radius_sum=float(np.where(correct_iso, cert_iso.radius, 0.0).sum()),
        metrics=iso_metrics,
        num_certified_correct_per_class=results.per_class_certified_counts(
            naive_iso, correct_iso, labels_flat, localized_model_classes(cert), evaluated=evaluated
        ),
        extra={"sigma": job.sigma, "n0": k * job.n0, "n": k * job.n},
    )

    shape = (height, width)
    arrays = {
        "image": np.asarray(x, np.float32),
        "labels": labels.astype(np.int32),
        "prediction": cert.prediction.reshape(shape).astype(np.int32),
        "abstain": cert.abstain.reshape(shape),
        "radius": cert.radius.reshape(shape),
        "prediction__isotropic_naive": cert_iso.prediction.reshape(shape).astype(np.int32),
        "abstain__isotropic_naive": cert_iso.abstain.reshape(shape),
        "radius__isotropic_naive": cert_iso.radius.reshape(shape),
    }
    return methods, arrays, cert, timings


def _sampling_timings(timings: dict, prefix: str, certify_timings: dict) -> None:
    """Adds `<prefix>_compile_s` and `<prefix>_draw_s` (sampling without compilation) to `timings`
    when `certify` reported them."""
    if "compile_s" in certify_timings:
        timings[f"{prefix}_compile_s"] = float(certify_timings["compile_s"])
    if "select_s" in certify_timings or "estimate_s" in certify_timings:
        draw = certify_timings.get("select_s", 0.0) + certify_timings.get("estimate_s", 0.0)
        timings[f"{prefix}_draw_s"] = float(draw)


def _item_rate(job: SegmentationJob, timings: dict) -> tuple[float, float]:
    """(samples/s, compile seconds) of one image: both smoothings' samples over their sampling
    seconds, compilation excluded where `certify` reported it (compile NaN if unknown)."""
    samples = 2 * job.num_groups * (job.n0 + job.n)
    reported = all(f"{p}_draw_s" in timings for p in ("localized", "isotropic"))
    if reported:
        seconds = timings["localized_draw_s"] + timings["isotropic_draw_s"]
    else:
        seconds = timings["localized_sampling_s"] + timings["isotropic_sampling_s"]
    compile_s = sum(timings.get(f"{p}_compile_s", np.nan) for p in ("localized", "isotropic"))
    return samples / max(seconds, 1e-9), compile_s


def _item_done(bar, item_id: str, job: SegmentationJob, timings: dict, log) -> None:
    """Advances the images bar (the first image restarts its clock: it carries compilation),
    or, where no bar is drawn, logs one line for the image."""
    samples_per_s, compile_s = _item_rate(job, timings)
    postfix = _common.rate_postfix(samples_per_s, compile_s)
    if bar.disable:
        compiled = f", compile {compile_s:.1f} s" if np.isfinite(compile_s) else ""
        log(f"{item_id}: {timings['total_s']:.1f} s, {postfix['samples/s']} samples/s{compiled}")
    if bar.n == 0:
        _progress.compiled(bar, 1, compile_s=compile_s, **{"samples/s": postfix["samples/s"]})
    else:
        bar.update(1)
        bar.set_postfix(postfix, refresh=False)


def localized_model_classes(cert) -> int:
    return int(cert.select_votes.shape[-1])


def run(job: SegmentationJob, log=_progress.write, progress=True) -> pathlib.Path:
    """Runs (or resumes) the segmentation job; returns the run directory.

    `progress`: bars on stderr for training and for the images (samples/s without compilation,
    compile seconds, ETA), drawn on a terminal (see `lrsjax._progress`); where no bar is drawn,
    `log` gets one line per image instead. `log` also gets the summary table at the end.
    """
    job = job.validated()
    out_dir = pathlib.Path(job.out_dir)
    run_dir = results.RunDir.start(
        out_dir / "results",
        {"task": "image", **_common.jsonable(job, drop=("out_dir", "overwrite"))},
        seeds={"seed": job.seed},
        overwrite=job.overwrite,
        # synthetic image i does not depend on num_images (real data: an evenly spaced subset)
        extend=("num_images",) if job.dataset == "synthetic" else (),
    )
    test = load_data(job, "test")
    item_ids = [f"img{i:04d}_{_common.safe_id(name)}" for i, name in enumerate(test.ids)]
    pending = run_dir.pending(item_ids)
    log(f"{len(item_ids) - len(pending)} of {len(item_ids)} images already done in {run_dir.path}")
    if pending:
        loc_model, loc_params = get_model(job, "localized", log=log, progress=progress)
        iso_model, iso_params = get_model(job, "isotropic", log=log, progress=progress)
        localized = (models.segmentation_apply_fn(loc_model), loc_params)
        isotropic = (models.segmentation_apply_fn(iso_model), iso_params)
        bar = _progress.bar(len(pending), desc="certify images", unit="image", enabled=progress)
        base_key = jax.random.PRNGKey(job.seed)
        for item_id in pending:
            index = item_ids.index(item_id)
            x, labels = test.image(index)
            key = jax.random.fold_in(base_key, 1000 + index)
            start = time.perf_counter()
            methods, arrays, cert, timings = certify_image(
                job, key, np.asarray(x), np.asarray(labels), localized, isotropic
            )
            timings["total_s"] = time.perf_counter() - start
            record = results.item_record(
                item_id,
                task="image",
                budget_kind="l2",
                num_classes=test.num_classes,
                prediction=arrays["prediction"],
                labels=arrays["labels"],
                abstain=arrays["abstain"],
                methods=methods,
                seeds={"seed": job.seed, "item_key": [1000 + index]},
            )
            run_dir.write_timings(item_id, timings)
            run_dir.write_item(item_id, record, arrays)
            _item_done(bar, item_id, job, timings, log)
        bar.close()
    summary = results.write_summary(run_dir)
    log(results.format_table(summary))
    return run_dir.path


logging.getLogger(__name__).addHandler(logging.NullHandler())
