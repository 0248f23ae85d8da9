"""Input validation shared by every public function.

Errors are raised on the host, before anything is traced or compiled, and always name the
argument, what was given, the rule it broke and how to fix it (STYLE principle 6).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def fail(name: str, value, rule: str, fix: str = "") -> None:
    """Raises a ValueError in the house format: argument, value, rule, fix."""
    shown = _show(value)
    message = f"`{name}` {rule}; got {shown}."
    if fix:
        message += f" {fix}"
    raise ValueError(message)


def _show(value) -> str:
    dtype = getattr(value, "dtype", None)
    if dtype is not None and "key<" in str(dtype):
        return f"a PRNG key array of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "shape"):
        arr = np.asarray(value)
        if arr.ndim == 0:
            return repr(arr.item())
        return f"an array of shape {arr.shape} and dtype {arr.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_float_array(name: str, value, *, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """`value` as a float64 numpy array; checks rank and (by default) finiteness.

    Complex input is refused (numpy would silently drop the imaginary part).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        fail(name, value, "must be a real-valued array", "Pass numbers, not strings or objects.")
    _reject_complex(name, raw)
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        fail(name, value, "must be a real-valued array", "Pass numbers, not strings or objects.")
    if ndim is not None and arr.ndim != ndim:
        fail(name, arr, f"must have {ndim} dimension(s)", f"Reshape it to rank {ndim}.")
    if finite and not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[0]
        fail(name, arr, f"must be finite (found {bad})", "Remove NaN/inf entries before calling.")
    return arr


def as_int_array(name: str, value, *, ndim: int | None = None) -> np.ndarray:
    """`value` as an int64 numpy array; floats are accepted only if they are whole numbers."""
    arr = np.asarray(value)
    _reject_complex(name, arr)
    if arr.dtype == bool:
        fail(name, arr, "must hold integers, not booleans", "Pass integer counts or indices.")
    if not np.issubdtype(arr.dtype, np.integer):
        try:
            as_float = arr.astype(np.float64)
        except (TypeError, ValueError):
            fail(name, value, "must hold integers", "Pass an integer array.")
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            fail(name, arr, "must hold whole numbers (no NaN, inf or fractions)", "Pass integers.")
        arr = as_float.astype(np.int64)
    arr = arr.astype(np.int64, copy=False)
    if ndim is not None and arr.ndim != ndim:
        fail(name, arr, f"must have {ndim} dimension(s)", f"Reshape it to rank {ndim}.")
    return arr


def _reject_complex(name: str, arr: np.ndarray) -> None:
    """Complex arrays would lose their imaginary part in a cast to a real dtype: refuse them."""
    if arr.dtype.kind == "c":
        fail(
            name,
            arr,
            "must be real: complex values are not allowed (the imaginary part would be dropped)",
            "Pass real values (e.g. `x.real`, if the imaginary part is meant to be 0).",
        )


def as_bool_array(name: str, value, *, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != bool:
        fail(name, arr, "must be a boolean array", "Pass a mask such as `labels == prediction`.")
    if ndim is not None and arr.ndim != ndim:
        fail(name, arr, f"must have {ndim} dimension(s)", f"Reshape it to rank {ndim}.")
    return arr


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, value, "must be an integer", f"Pass an int >= {minimum}.")
    if value < minimum:
        fail(name, value, f"must be >= {minimum}", f"Pass an int >= {minimum}.")
    return int(value)


def probability(name: str, value, *, open_low: bool = True, open_high: bool = True) -> float:
    """A scalar probability; by default strictly inside (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, value, "must be a real number", "Pass a float such as 0.01.")
    v = float(value)
    low_ok = v > 0 if open_low else v >= 0
    high_ok = v < 1 if open_high else v <= 1
    if not (np.isfinite(v) and low_ok and high_ok):
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        fail(name, value, f"must lie in {lo}0, 1{hi}", "Pass a probability such as 0.01.")
    return v


def one_of(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        fail(name, value, f"must be one of {tuple(choices)}", "Pick one of the listed names.")
    return value


def same_shape(names: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
    shapes = [np.shape(a) for a in arrays]
    if any(s != shapes[0] for s in shapes[1:]):
        listed = ", ".join(f"`{n}` {s}" for n, s in zip(names, shapes))
        raise ValueError(f"Shapes must match: {listed}. Pass arrays with one entry per output.")
