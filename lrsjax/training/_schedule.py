"""Checks of the optimisation settings shared by every trainer (before anything is compiled)."""

from __future__ import annotations

import logging
import math
import numbers
import time

import jax
import numpy as np

from lrsjax import _checks


def check_schedule(steps, batch_size, num_images: int, learning_rate, warmup_steps, log_every):
    """Validated `(steps, batch_size, learning_rate, warmup_steps, log_every)`.

    `batch_size` must not exceed `num_images`; `warmup_steps` defaults to `min(100, steps // 10)`
    and must stay below `steps`; `learning_rate` is a positive finite number. Errors name the
    argument, the value, the rule and the fix.
    """
    steps = _checks.positive_int("steps", steps)
    batch_size = _checks.positive_int("batch_size", batch_size)
    if batch_size > num_images:
        _checks.fail(
            "batch_size",
            batch_size,
            f"must not exceed the number of training images ({num_images})",
            "Use a smaller batch or more images.",
        )
    log_every = _checks.positive_int("log_every", log_every)
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        _checks.fail("learning_rate", learning_rate, "must be a positive finite number")
    if warmup_steps is None:
        warmup_steps = min(100, steps // 10)
    warmup_steps = _checks.positive_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps >= steps:
        _checks.fail("warmup_steps", warmup_steps, f"must be below steps ({steps})")
    return steps, batch_size, learning_rate, warmup_steps, log_every


class LossLog:
    """The mean training loss of every window of `every` steps (and of the last, partial one),
    with the wall-clock seconds since the log was made; losses stay on the device until a window
    closes, so the training loop is not synchronised at every step."""

    def __init__(self, steps: int, every: int, logger: logging.Logger):
        self.steps, self.every, self.logger = steps, every, logger
        self.start = time.perf_counter()
        self.window: list = []
        self.rows: list = []  # (step, mean loss, seconds)

    def add(self, step: int, loss) -> None:
        """Records the loss of step `step` (0-based)."""
        self.window.append(loss)
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            mean_loss = float(np.mean(np.asarray(jax.device_get(self.window))))
            elapsed = time.perf_counter() - self.start
            self.rows.append((step + 1, mean_loss, elapsed))
            self.window = []
            self.logger.info(
                "step %d/%d loss %.4f (%.1f s)", step + 1, self.steps, mean_loss, elapsed
            )

    def arrays(self):
        """(steps int64 [L], mean loss float64 [L], seconds float64 [L]) of the closed windows."""
        steps, loss, seconds = zip(*self.rows) if self.rows else ((), (), ())
        return (
            np.array(steps, np.int64),
            np.array(loss, np.float64),
            np.array(seconds, np.float64),
        )
