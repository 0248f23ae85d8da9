"""Checks of the optimisation settings shared by every trainer (before anything is compiled)."""

from __future__ import annotations

import math
import numbers

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
