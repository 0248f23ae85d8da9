"""The training-loss settings shared by the image jobs (segmentation and classification).

One section, `LossSettings`, whose flat names are the same flags in both jobs; `check` validates
it and `training_loss` turns it into the `lrsjax.training.TrainingLoss` the trainers take.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lrsjax import _checks, training

LOSSES = ("noise", "consistency", "smoothadv")


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """`loss` ("noise": noise augmentation; "consistency": consistency regularization with
    weights `consistency_lbd` and `consistency_eta`; "smoothadv": SmoothAdv PGD of l2 radius
    `smoothadv_eps` in `smoothadv_steps` steps, the radius ramped up over the first
    `smoothadv_warmup` optimiser steps; both on `num_noise_copies` noise draws per image; see
    `lrsjax.training.consistency` and `smoothadv`)."""

    loss: str = "noise"
    num_noise_copies: int = 2
    consistency_lbd: float = 10.0
    consistency_eta: float = 0.5
    smoothadv_eps: float = 0.5
    smoothadv_steps: int = 2
    smoothadv_warmup: int = 0


# With loss="noise" these settings change nothing: they stay out of a run's identity and of a
# model's training settings, so runs and models made before they existed keep being reused.
LOSS_SETTINGS = tuple(field.name for field in dataclasses.fields(LossSettings))


def check(job, *, has_noise: bool, fix: str) -> None:
    """Validates the loss settings of `job` (any job with a `LossSettings` section); `has_noise`:
    whether the job trains under noise (the losses other than "noise" compare noisy copies),
    `fix`: how to train under noise, for the error."""
    _checks.one_of("loss", job.loss, LOSSES)
    if job.loss != "noise" and not has_noise:
        _checks.fail("loss", job.loss, "needs training noise, but the job trains on clean images",
                     f"{fix}, or pass --loss=noise.")  # fmt: skip
    _checks.positive_int("num_noise_copies", job.num_noise_copies)
    _checks.positive_int("smoothadv_steps", job.smoothadv_steps)
    _checks.positive_int("smoothadv_warmup", job.smoothadv_warmup, minimum=0)
    for name in ("consistency_lbd", "consistency_eta", "smoothadv_eps"):
        value = getattr(job, name)
        if not (np.isfinite(value) and value >= 0):
            _checks.fail(name, value, "must be a finite number >= 0", "E.g. 0.5.")


def training_loss(job) -> training.TrainingLoss:
    """The `lrsjax.training.TrainingLoss` of the job's loss settings."""
    if job.loss == "consistency":
        return training.consistency(
            num_copies=job.num_noise_copies, lbd=job.consistency_lbd, eta=job.consistency_eta
        )
    if job.loss == "smoothadv":
        return training.smoothadv(
            eps=job.smoothadv_eps,
            steps=job.smoothadv_steps,
            num_copies=job.num_noise_copies,
            warmup_steps=job.smoothadv_warmup,
        )
    return training.noise_augmentation()


def settings_names(job) -> tuple:
    """The loss settings a model trained by `job` depends on: none for loss="noise"."""
    return () if job.loss == "noise" else LOSS_SETTINGS


def file_suffix(job) -> str:
    """The suffix of a model file trained with the job's loss ("" for noise augmentation)."""
    return "" if job.loss == "noise" else f"_{job.loss}"
