"""The one interface between statistics and the collective certificate (docs/math.md §5)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrsjax import _checks

NORMS = ("l2", "l1", "binary")
BUDGET_KINDS = {"l2": ("l2",), "l1": ("l1",), "binary": ("add", "del")}


class BaseCertificates(NamedTuple):
    """Per-output base certificates in the linear form of docs/math.md §5.

    Output `n` (in smoothing group `k = group[n]`) provably keeps `prediction[n]` for every
    perturbation whose per-region spend `b[t, j]` satisfies

        sum_{t, j} weights[t, k, j] * b[t, j]  <  eta[n].

    For `norm="l2"`, `b[0, j]` is the squared l2 norm of the perturbation inside region `j` (total
    budget eps**2); for `"l1"` its l1 norm (total eps); for `"binary"`, `b[0, j]` counts added bits
    and `b[1, j]` deleted bits in region `j` (totals: additions, deletions).

    Fields:
      prediction: int [D], the smoothed prediction of each output (any value where abstained).
      abstain: bool [D], True where the smoothed classifier abstains (never certified).
      eta: float64 [D], the certificate's threshold; 0 where abstained.
      group: int [D] in [0, K), the smoothing group that produced each output.
      weights: float64 [T, K, M] >= 0, cost of one unit of budget type t in region j for group k;
        0 means the group cannot see the region (masked).
      budget_kinds: tuple of T names, ("l2",), ("l1",) or ("add", "del").
      norm: "l2", "l1" or "binary".
    """

    prediction: np.ndarray
    abstain: np.ndarray
    eta: np.ndarray
    group: np.ndarray
    weights: np.ndarray
    budget_kinds: tuple
    norm: str

    @property
    def num_outputs(self) -> int:
        return int(self.eta.shape[0])


def make_base_certificates(prediction, abstain, eta, group, weights, norm) -> BaseCertificates:
    """Validates and packs a `BaseCertificates`; the constructor every producer calls."""
    _checks.one_of("norm", norm, NORMS)
    kinds = BUDGET_KINDS[norm]
    weights = _checks.as_float_array("weights", weights, ndim=3)
    if weights.shape[0] != len(kinds):
        _checks.fail(
            "weights",
            weights,
            f"must have {len(kinds)} budget type(s) on axis 0 for norm={norm!r}",
            "Shape it [T, K, M] with T = number of budget types.",
        )
    if np.any(weights < 0):
        _checks.fail("weights", weights, "must be >= 0", "Costs of perturbation are non-negative.")
    eta = _checks.as_float_array("eta", eta, ndim=1)
    abstain = _checks.as_bool_array("abstain", abstain, ndim=1)
    group = _checks.as_int_array("group", group, ndim=1)
    prediction = _checks.as_int_array("prediction", prediction, ndim=1)
    _checks.same_shape(("prediction", "abstain", "eta", "group"), (prediction, abstain, eta, group))
    num_groups = weights.shape[1]
    if group.size and (group.min() < 0 or group.max() >= num_groups):
        _checks.fail(
            "group", group, f"must lie in [0, {num_groups}) (K = weights.shape[1])", "Fix the ids."
        )
    eta = np.where(abstain, 0.0, eta)
    if np.any(eta[~abstain] <= 0):
        _checks.fail(
            "eta", eta, "must be > 0 for every output that does not abstain", "Abstain on those."
        )
    return BaseCertificates(prediction, abstain, eta, group, weights, kinds, norm)


def budget_totals(norm: str, budgets) -> np.ndarray:
    """Budget totals `[B, T]` for the linear certificate from user-facing budgets.

    Args:
      norm: "l2", "l1" or "binary".
      budgets: "l2"/"l1": eps values, shape [B] (or a scalar); l2 totals are eps**2.
        "binary": (additions, deletions) pairs, shape [B, 2] (or [2]).
    Returns:
      float64 [B, T] totals of each budget type.
    """
    _checks.one_of("norm", norm, NORMS)
    arr = _checks.as_float_array("budgets", budgets)
    if norm == "binary":
        if arr.ndim == 1 and arr.shape[0] == 2:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 2:
            _checks.fail(
                "budgets",
                arr,
                "must be (additions, deletions) pairs of shape [B, 2] for binary certificates",
                "Pass e.g. [[0, 1], [1, 0]].",
            )
    else:
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            _checks.fail("budgets", arr, "must be a 1-d array of radii eps", "Pass shape [B].")
    if np.any(arr < 0):
        _checks.fail("budgets", arr, "must be >= 0", "Budgets are radii or bit counts.")
    if norm == "l2":
        with np.errstate(over="ignore"):
            squared = arr**2
        if not np.all(np.isfinite(squared)):
            _checks.fail(
                "budgets", arr, "is too large: eps**2 overflows float64", "Pass radii below 1e150."
            )
        return squared[:, None]
    if norm == "l1":
        return arr[:, None]
    return arr
