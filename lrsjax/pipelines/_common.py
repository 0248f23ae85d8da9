"""Pieces shared by the segmentation and graph jobs: config to JSON, ids, progress lines."""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np

from lrsjax import _checks


def jsonable(job, drop=()) -> dict:
    """A job dataclass as a dict of JSON values (tuples become lists), without `drop` fields."""
    out = {}
    for field in dataclasses.fields(job):
        if field.name in drop:
            continue
        value = getattr(job, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


def safe_id(text: str) -> str:
    """`text` reduced to the characters result-file ids allow (letters, digits, '.', '_', '-')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip(".")
    return cleaned[:80] or "item"


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


class Progress:
    """One line per finished item: done/total, a bar, samples/s and the ETA."""

    def __init__(self, total: int, samples_per_item: int, log=print, width: int = 24):
        self.total = total
        self.samples_per_item = samples_per_item
        self.log = log
        self.width = width
        self.done = 0
        self.start = time.perf_counter()

    def step(self, item_id: str, seconds: float) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        rate = self.done * self.samples_per_item / max(elapsed, 1e-9)
        eta = elapsed / self.done * (self.total - self.done)
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        self.log(
            f"[{bar}] {self.done}/{self.total} {item_id}: {seconds:.1f} s, "
            f"{rate:,.0f} samples/s, ETA {eta:.0f} s"
        )
