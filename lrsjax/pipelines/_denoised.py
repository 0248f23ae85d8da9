"""Denoised smoothing in the classification job (Salman et al., 2020; docs/math.md §11).

With `denoiser` set, the job certifies `classifier(denoiser(x + noise))`: a frozen classifier
(`classifier`, a saved checkpoint, or the job's own classifier) behind a DnCNN trained for the
job's noise level with `denoiser_loss` ("mse": denoising alone; "stability" or "classification":
through the frozen classifier). `lrsjax-train --task=classification --denoiser` trains (or
reuses) the denoiser and keeps it in `out_dir/models`; `denoiser_checkpoint` certifies a saved
one instead. The statistics do not change: the composition is one deterministic base model.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from lrsjax import _checks, models, noise, training
from lrsjax.pipelines import _common
from lrsjax.pipelines._config import jsonable


@dataclasses.dataclass(frozen=True)
class DenoiserSettings:
    """`denoiser` (put a denoiser in front of the classifier), `classifier` (the frozen
    classifier's checkpoint; empty: the job's own classifier), `denoiser_checkpoint` (a saved
    denoiser to certify; empty: train one and keep it in `out_dir/models`), `denoiser_loss`
    ("mse" | "stability" | "classification"), `denoiser_steps`, `denoiser_learning_rate`,
    `denoiser_depth` (weight layers), `denoiser_features` (hidden channels)."""

    denoiser: bool = False
    classifier: str = ""
    denoiser_checkpoint: str = ""
    denoiser_loss: str = "stability"
    denoiser_steps: int = 600
    denoiser_learning_rate: float = 1e-3
    denoiser_depth: int = 6
    denoiser_features: int = 16


DENOISER_SETTINGS = tuple(field.name for field in dataclasses.fields(DenoiserSettings))


def check(job) -> None:
    """Validates the denoiser settings of a classification job."""
    if not job.denoiser:
        for name in ("classifier", "denoiser_checkpoint"):
            if getattr(job, name):
                _checks.fail(name, getattr(job, name), "applies only with --denoiser",
                             "Add --denoiser (to certify a saved classifier alone, pass "
                             "--checkpoint).")  # fmt: skip
        return
    if job.classifier and job.checkpoint:
        _checks.fail("classifier", job.classifier, "and --checkpoint both name the classifier",
                     "Pass only --classifier with --denoiser.")  # fmt: skip
    _checks.one_of("denoiser_loss", job.denoiser_loss, training.DENOISER_LOSSES)
    _checks.positive_int("denoiser_steps", job.denoiser_steps)
    _checks.positive_int("denoiser_depth", job.denoiser_depth, minimum=2)
    _checks.positive_int("denoiser_features", job.denoiser_features)
    value = job.denoiser_learning_rate
    if not (np.isfinite(value) and value > 0):
        _checks.fail("denoiser_learning_rate", value, "must be a positive number", "E.g. 1e-3.")


def classifier_checkpoint(job) -> str:
    """The frozen classifier's checkpoint given by the user ("" for the job's own)."""
    return job.classifier or job.checkpoint


def denoiser_path(job) -> pathlib.Path:
    """Where the job keeps the denoiser it trains (one file per noise level and loss)."""
    name = f"dncnn_sigma{job.sigma:g}_{job.denoiser_loss}.msgpack"
    return pathlib.Path(job.out_dir) / "models" / name


def denoiser_settings(job, classifier_id: str) -> dict:
    """The settings a trained denoiser depends on, as stored in its checkpoint's metadata;
    `classifier_id` names the frozen classifier (its checkpoint path)."""
    names = ["dataset", "num_train_images", "train_batch_size", "sigma", "seed"]
    names += ["image_size", "num_classes"] if job.dataset == "synthetic" else ["data_dir"]
    names += [name for name in DENOISER_SETTINGS if name not in ("denoiser", "classifier")]
    names.remove("denoiser_checkpoint")
    settings = jsonable(job)
    recorded = {name: settings[name] for name in names}
    if job.denoiser_loss != "mse":  # the MSE loss never looks at the classifier
        recorded["frozen_classifier"] = classifier_id
    return recorded


def train_denoiser(job, classifier, path, *, train_data, key, classifier_id: str, log, progress):
    """Trains the job's DnCNN in front of `classifier = (model, params)` (frozen) and saves it
    to `path` atomically; returns (denoiser model, params)."""
    model, params = classifier
    denoiser = models.DnCNN(
        channels=train_data.image_shape[0],
        depth=job.denoiser_depth,
        features=job.denoiser_features,
    )
    smoothing = noise.isotropic_gaussian(train_data.image_shape, job.sigma)
    start = time.perf_counter()
    dparams, history = training.train_denoiser(
        key,
        denoiser,
        models.classifier_apply_fn(model),
        params,
        train_data,
        noise=smoothing,
        loss=job.denoiser_loss,
        steps=job.denoiser_steps,
        batch_size=min(job.train_batch_size, train_data.num_images),
        learning_rate=job.denoiser_learning_rate,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    training.save_denoiser(
        path,
        denoiser,
        dparams,
        input_shape=train_data.image_shape,
        metadata={
            "sigma": job.sigma,
            "loss": job.denoiser_loss,
            "train_seconds": seconds,
            "final_loss": float(history.loss[-1]),
            "job": denoiser_settings(job, classifier_id),
        },
    )
    log(
        f"trained a DnCNN ({job.denoiser_loss} loss, sigma {job.sigma:g}) in {seconds:.1f} s "
        f"-> {path}"
    )
    return denoiser, dparams


def get_denoiser(job, classifier, *, load_train_data, key, classifier_id: str, log, progress):
    """The denoiser to certify: `denoiser_checkpoint`, a saved one trained with the job's
    settings, or a newly trained one (a saved one trained otherwise: ValueError, or retrained
    with `overwrite`). `load_train_data()` is called only if one is trained."""
    if job.denoiser_checkpoint:
        denoiser, dparams, meta = training.load_denoiser(job.denoiser_checkpoint)
        sigma = meta.get("extra", {}).get("sigma")
        if sigma is not None and sigma != job.sigma:
            log(
                f"note: {job.denoiser_checkpoint} was trained for sigma {sigma}, certified at "
                f"sigma {job.sigma} (sound, as with any deterministic denoiser; rarely accurate)"
            )
        return denoiser, dparams
    path = denoiser_path(job)
    if training.checkpoint_exists(path):
        denoiser, dparams, meta = training.load_denoiser(path)
        recorded = meta.get("extra", {}).get("job")
        expected = denoiser_settings(job, classifier_id)
        if _common.reusable(path, recorded, expected, overwrite=job.overwrite, log=log):
            log(f"reusing {path}")
            return denoiser, dparams
    return train_denoiser(
        job, classifier, path, train_data=load_train_data(), key=key,
        classifier_id=classifier_id, log=log, progress=progress,
    )  # fmt: skip


def base_model(classifier, denoiser) -> tuple:
    """(apply_fn, params) of `classifier(denoiser(x))` for one image, logits [num_classes]."""
    model, params = classifier
    dmodel, dparams = denoiser
    apply_fn = models.compose(models.denoiser_apply_fn(dmodel), models.classifier_apply_fn(model))
    return apply_fn, (dparams, params)


def describe(job) -> str:
    """The denoiser of the job's records, as text ("" without one)."""
    if not job.denoiser:
        return ""
    return job.denoiser_checkpoint or str(denoiser_path(job))
