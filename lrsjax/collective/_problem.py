"""The collective problem and its composable transforms (SPEC 6)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs import BaseCertificates, budget_totals


class CollectiveProblem(NamedTuple):
    """Rows of the collective certificate (SPEC 6); every row stands for `multiplicity` outputs.

    Fields (R rows, D outputs of the base certificates, T budget types, K groups, M regions):
      eta: float64 [R] > 0, the row's threshold (output kept while `(W b)_group < eta`).
      multiplicity: int64 [R] >= 1, outputs merged into the row.
      group: int64 [R], smoothing group of the row.
      weights: float64 [T, K, M], the base certificates' weights.
      row_of_output: int64 [D], the row each output belongs to, -1 if not in the problem
        (abstained, not targeted, or removed by `naive_filter`).
      num_naive: int, outputs removed by `naive_filter` as certified for `totals`.
      totals: float64 [T] or None, the budget totals the problem is specialised to (set by
        `with_totals`; needed by `naive_filter`).
      norm: "l2" | "l1" | "binary".
    """

    eta: np.ndarray
    multiplicity: np.ndarray
    group: np.ndarray
    weights: np.ndarray
    row_of_output: np.ndarray
    num_naive: int
    totals: np.ndarray | None
    norm: str

    @property
    def num_rows(self) -> int:
        return int(self.eta.shape[0])

    @property
    def num_outputs(self) -> int:
        """Outputs still in the problem (sum of multiplicities)."""
        return int(self.multiplicity.sum())


class Transform(NamedTuple):
    """A pure problem -> problem map (optax style: built by a factory, composed by `chain`)."""

    apply: callable
    name: str


def from_base_certs(base_certs: BaseCertificates, targets=None) -> CollectiveProblem:
    """One row per output in `targets` (bool [D], default all) that does not abstain."""
    if not isinstance(base_certs, BaseCertificates):
        _checks.fail("base_certs", base_certs, "must be a BaseCertificates", "Use lrsjax.certify.")
    num = base_certs.num_outputs
    if targets is None:
        targets = np.ones(num, bool)
    targets = _checks.as_bool_array("targets", targets).reshape(-1)
    if targets.shape[0] != num:
        _checks.fail("targets", targets, f"must have one entry per output ({num})", "")
    keep = targets & ~base_certs.abstain
    index = np.flatnonzero(keep)
    row_of_output = np.full(num, -1, np.int64)
    row_of_output[index] = np.arange(index.size)
    return CollectiveProblem(
        eta=base_certs.eta[index].astype(np.float64),
        multiplicity=np.ones(index.size, np.int64),
        group=base_certs.group[index].astype(np.int64),
        weights=base_certs.weights,
        row_of_output=row_of_output,
        num_naive=0,
        totals=None,
        norm=base_certs.norm,
    )


def with_totals(problem: CollectiveProblem, budget) -> CollectiveProblem:
    """The problem specialised to one budget (user units: eps, or (additions, deletions))."""
    totals = budget_totals(problem.norm, budget)
    if totals.shape[0] != 1:
        _checks.fail("budget", budget, "must be a single budget", "Pass one eps or one pair.")
    return problem._replace(totals=totals[0])


def _select_rows(problem: CollectiveProblem, keep: np.ndarray) -> CollectiveProblem:
    new_index = np.full(problem.num_rows, -1, np.int64)
    new_index[keep] = np.arange(int(keep.sum()))
    return problem._replace(
        eta=problem.eta[keep],
        multiplicity=problem.multiplicity[keep],
        group=problem.group[keep],
        row_of_output=_remap(problem.row_of_output, new_index),
    )


def _remap(row_of_output: np.ndarray, new_index: np.ndarray) -> np.ndarray:
    """Row ids after rows were renumbered (`new_index[old] = new`, -1 = dropped)."""
    out = np.full_like(row_of_output, -1)
    present = row_of_output >= 0
    out[present] = new_index[row_of_output[present]]
    return out


def max_costs(problem: CollectiveProblem) -> np.ndarray:
    """float64 [R]: the largest `(W b)_group` any budget in `totals` can buy for each row."""
    per_group = (problem.weights.max(axis=2) * problem.totals[:, None]).sum(axis=0)
    return per_group[problem.group]


def naive_filter() -> Transform:
    """Exact: drops rows certified naively (`sum_t total_t max_j W[t, k, j] < eta`)."""

    def apply(problem: CollectiveProblem) -> CollectiveProblem:
        if problem.totals is None:
            _checks.fail(
                "problem", "totals=None", "needs budget totals for naive_filter",
                "Call with_totals(problem, budget) first (solve() does this per budget).",
            )  # fmt: skip
        certified = max_costs(problem) < problem.eta
        out = _select_rows(problem, ~certified)
        return out._replace(
            num_naive=problem.num_naive + int(problem.multiplicity[certified].sum())
        )

    return Transform(apply, "naive_filter")


def share() -> Transform:
    """Exact: merges rows with equal group and eta into one row with the summed multiplicity."""

    def apply(problem: CollectiveProblem) -> CollectiveProblem:
        if problem.num_rows == 0:
            return problem
        keys = np.stack([problem.group.astype(np.float64), problem.eta], axis=1)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        multiplicity = np.bincount(inverse, weights=problem.multiplicity, minlength=len(unique))
        return problem._replace(
            eta=unique[:, 1].copy(),
            multiplicity=multiplicity.astype(np.int64),
            group=unique[:, 0].astype(np.int64),
            row_of_output=_remap(problem.row_of_output, inverse),
        )

    return Transform(apply, "share")


def binning(num_bins: int) -> Transform:
    """Conservative: per group, rounds every eta down to its bin's lower edge, then shares.

    Bins live on the radius `sqrt(eta)`: `num_bins` equally spaced edges from the group's smallest
    to its largest radius; each radius is replaced by the largest edge not above it. Lowering eta
    only makes outputs easier to attack, so the certificate can only shrink. A group with at most
    `num_bins` distinct values is left unchanged (every output already has its own bin).
    """
    num_bins = _checks.positive_int("num_bins", num_bins)
    sharing = share()

    def apply(problem: CollectiveProblem) -> CollectiveProblem:
        eta = problem.eta.copy()
        for k in np.unique(problem.group):
            rows = problem.group == k
            radii = np.sqrt(eta[rows])
            if np.unique(radii).size <= num_bins:
                continue
            edges = np.linspace(radii.min(), radii.max(), num_bins)
            index = np.clip(np.searchsorted(edges, radii, side="right") - 1, 0, num_bins - 1)
            eta[rows] = np.minimum(edges[index] ** 2, eta[rows])
        return sharing.apply(problem._replace(eta=eta))

    return Transform(apply, f"binning({num_bins})")


def chain(*transforms: Transform) -> Transform:
    """Applies `transforms` left to right."""
    for t in transforms:
        if not isinstance(t, Transform):
            _checks.fail("transforms", t, "must be Transforms", "Use share(), binning(n), ...")

    def apply(problem: CollectiveProblem) -> CollectiveProblem:
        for t in transforms:
            problem = t.apply(problem)
        return problem

    return Transform(apply, "chain(" + ", ".join(t.name for t in transforms) + ")")
