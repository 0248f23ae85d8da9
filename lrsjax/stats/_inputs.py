"""Validation of the inputs shared by the statistics functions (host side, float64)."""

from __future__ import annotations

import numpy as np

from lrsjax import _checks


def counts_and_n(counts, n) -> tuple[np.ndarray, np.ndarray]:
    """`counts` (int64, any shape) and `n` (int64, broadcastable to it), with 0 <= counts <= n."""
    counts = _checks.as_int_array("counts", counts)
    n = _checks.as_int_array("n", n)
    if np.any(n < 1):
        _checks.fail("n", n, "must be >= 1", "Pass the number of Monte Carlo samples.")
    if broadcast_shape(n.shape, counts.shape) != counts.shape:
        _checks.fail(
            "n",
            n,
            f"must be a scalar or broadcastable to `counts` of shape {counts.shape}",
            "Pass one sample size, or one per output.",
        )
    if counts.size and counts.min() < 0:
        _checks.fail("counts", counts, "must be >= 0", "Counts are numbers of samples.")
    if counts.size and np.any(counts > n):
        _checks.fail("counts", counts, "must be <= n", "A count cannot exceed the sample size.")
    return counts, n


def levels(name: str, value, shape: tuple) -> np.ndarray:
    """A float64 array of probabilities strictly inside (0, 1), broadcastable to `shape`."""
    arr = _checks.as_float_array(name, value)
    if np.any((arr <= 0) | (arr >= 1)):
        _checks.fail(name, arr, "must lie strictly inside (0, 1)", "Pass e.g. 0.01.")
    if broadcast_shape(arr.shape, shape) != tuple(shape):
        _checks.fail(
            name,
            arr,
            f"must be a scalar or broadcastable to shape {tuple(shape)}",
            "Pass one value, or one per output.",
        )
    return arr


def unit_interval_samples(name: str, value) -> np.ndarray:
    """Finite float64 samples in [0, 1], at least 1-d."""
    arr = _checks.as_float_array(name, value)
    if arr.ndim == 0:
        _checks.fail(name, arr, "must have at least one dimension", "Pass an array of samples.")
    if np.any((arr < 0) | (arr > 1)):
        _checks.fail(
            name, arr, "must lie in [0, 1]", "Bound scores in [0, 1] (e.g. softmax probabilities)."
        )
    return arr


def broadcast_shape(*shapes) -> tuple | None:
    """The broadcast of `shapes`, or None where they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None
