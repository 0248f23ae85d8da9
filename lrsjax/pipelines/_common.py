"""Pieces shared by the segmentation and graph jobs: ids, checks, model reuse, progress stages."""

from __future__ import annotations

import contextlib
import inspect
import re
import time

import numpy as np

from lrsjax import _checks, _progress
from lrsjax._certify import certify


def safe_id(text: str) -> str:
    """`text` reduced to the characters result-file ids allow (letters, digits, '.', '_', '-')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip(".")
    return cleaned[:80] or "item"


def check_dataset(job, datasets, data_dir_fix: str) -> None:
    """`job.dataset` is one of `datasets`, and every data set but "synthetic" has a `data_dir`
    (`data_dir_fix`: the error's fix, e.g. "Pass --data_dir=/path/to/the/data set.")."""
    _checks.one_of("dataset", job.dataset, datasets)
    if job.dataset != "synthetic" and not job.data_dir:
        _checks.fail(
            "data_dir", job.data_dir, f"is required for dataset={job.dataset!r}", data_dir_fix
        )


def check_budget_range(budget_min, budget_max, budget_steps) -> None:
    if not (np.isfinite(budget_min) and budget_min >= 0):
        _checks.fail("budget_min", budget_min, "must be >= 0", "Budgets are l2 radii.")
    if not (np.isfinite(budget_max) and budget_max >= budget_min):
        _checks.fail("budget_max", budget_max, f"must be finite and >= budget_min={budget_min}")
    if budget_steps > 1 and budget_max == budget_min:
        _checks.fail(
            "budget_steps", budget_steps, "must be 1 when budget_min == budget_max",
            "Widen the budget range or pass --budget_steps=1.",
        )  # fmt: skip


def reusable(path, recorded: dict | None, expected: dict, *, overwrite: bool, log) -> bool:
    """Whether the saved model at `path` may be certified for a job asking for `expected`.

    `recorded`: the settings stored with the model (None: none stored; it is reused with a note).
    Settings the model did not record are not compared. When a recorded setting differs: with
    `overwrite`, False (retrain); else ValueError naming the differing settings, because
    certifying the old model would report it under the new settings.
    """
    if recorded is None:
        log(f"note: {path} does not record its training settings; reusing it unchecked")
        return True
    differ = {
        name: (recorded[name], value)
        for name, value in expected.items()
        if name in recorded and recorded[name] != value
    }
    if not differ:
        return True
    listed = ", ".join(f"{name}={new!r} (saved: {old!r})" for name, (old, new) in differ.items())
    if overwrite:
        log(f"{path} was trained with other settings ({listed}); retraining it (--overwrite)")
        return False
    raise ValueError(
        f"the saved model {path} was trained with other settings than this job asks for: "
        f"{listed}. Pass --overwrite to retrain it (lrsjax-certify), or use a new --out_dir."
    )


def certify_options(progress: bool) -> tuple[dict, dict]:
    """(extra keyword arguments for `lrsjax.certify`, the timings dict it will fill).

    Passes `progress` (per-stage sampling bars) and `timings` (compilation and sampling seconds)
    only to a `certify` that takes them; otherwise the timings dict stays empty.
    """
    parameters = inspect.signature(certify).parameters
    timings: dict = {}
    options = {}
    if "progress" in parameters:
        options["progress"] = bool(progress)
    if "timings" in parameters:
        options["timings"] = timings
    return options, timings


def sampling_rate(samples: int, seconds: float, certify_timings: dict) -> tuple[float, float]:
    """(samples/s, compile seconds) of one `certify` call that drew `samples` in `seconds`.

    With the `certify_timings` it filled, the rate counts sampling time alone (selection plus
    estimation, compilation excluded) and the compile seconds are its own; without them the rate
    is over the whole call and the compile seconds are NaN (unknown).
    """
    compile_s = float(certify_timings.get("compile_s", np.nan))
    sampling_s = certify_timings.get("select_s", 0.0) + certify_timings.get("estimate_s", 0.0)
    if not sampling_s > 0:
        sampling_s = seconds
    return samples / max(sampling_s, 1e-9), compile_s


def rate_postfix(samples_per_s: float, compile_s: float) -> dict:
    """A bar postfix for `sampling_rate`'s values."""
    postfix = {"samples/s": f"{samples_per_s:,.0f}"}
    if np.isfinite(compile_s):
        postfix["compile"] = f"{compile_s:.1f}s"
    return postfix


class Stage:
    """One running stage of `Stages`: `certify_options` to pass to `lrsjax.certify` (if the stage
    samples); after the stage, `seconds`, and `compile_s` (NaN if unknown)."""

    def __init__(self, name: str, samples: int | None, progress: bool):
        self.name = name
        self.samples = samples
        self.certify_options, self.certify_timings = certify_options(progress)
        self.seconds = 0.0
        self.compile_s = float("nan")


class Stages:
    """A bar over a job's named stages, advanced by `with stages.stage(name) as stage: ...`.

    `log` (if given) gets one line per finished stage: its seconds, and samples/s and compile
    seconds for sampling stages. A drawn bar shows the running stage and elapsed time (no rate:
    stages differ too much for one) and lets `certify` draw its own sampling bars.
    """

    def __init__(self, names, *, desc: str, enabled: bool = True, log=None):
        self.names = tuple(names)
        self.log = log
        self.bar = _progress.bar(
            len(self.names),
            desc=desc,
            unit="stage",
            enabled=enabled,
            bar_format="{desc}: {n_fmt}/{total_fmt} stages [{elapsed}]{postfix}",
        )

    @contextlib.contextmanager
    def stage(self, name: str, samples: int | None = None):
        """Runs one stage; `samples`: how many samples it draws (None: it does not sample)."""
        self.bar.set_postfix_str(name)
        stage = Stage(name, samples, progress=not self.bar.disable)
        start = time.perf_counter()
        yield stage
        stage.seconds = time.perf_counter() - start
        line = f"{name}: {stage.seconds:.1f} s"
        if samples is not None:
            rate, stage.compile_s = sampling_rate(samples, stage.seconds, stage.certify_timings)
            postfix = rate_postfix(rate, stage.compile_s)
            line += "".join(f", {key} {value}" for key, value in postfix.items())
        self.bar.update(1)
        if self.log is not None:
            self.log(line)

    def close(self) -> None:
        self.bar.close()
