"""The collective problem and its composable transforms (Schuchardt et al., ICLR 2023).

Design of the naive filter: a problem is budget-free unless `with_totals` specialises it. The
transform `naive_filter()` needs those totals and removes the rows certified on their own at
them (counted in `num_naive`). Such rows are certified only up to the totals at which they were
dropped, so the problem remembers, in `naive_limit`, the smallest totals (per budget type) at
which any naive filter dropped rows; `naive_limit` is independent of `totals`, which later
`with_totals` calls may change. Every route that attaches a budget to the problem (`with_totals`,
`solve`) refuses a budget that exceeds `naive_limit` in any type, compared exactly (no slack: a
budget one ulp above the limit is refused), so a dropped row is never counted at a budget where
it might be attacked. Filtering twice at different totals keeps the elementwise minimum, the
largest budget at which both sets of dropped rows are certified. `solve` itself always applies
the exact naive filter per budget on the levels it builds (one budget-free problem serves every
budget), so calling `naive_filter` is only needed to shrink a problem for one budget, e.g. before
`binning` (bins then cover only the rows that can still be attacked, as `certify_collective`
does per budget).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs import BUDGET_KINDS, BaseCertificates, budget_totals


class CollectiveProblem(NamedTuple):
    """Rows of the collective certificate (docs/math.md 6); each row stands for `multiplicity`
    outputs.

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
      naive_limit: float64 [T] or None: the smallest totals (per type) at which a naive filter
        dropped rows; the problem may only be given budgets no larger in every type. None when
        no row was dropped.
    """

    eta: np.ndarray
    multiplicity: np.ndarray
    group: np.ndarray
    weights: np.ndarray
    row_of_output: np.ndarray
    num_naive: int
    totals: np.ndarray | None
    norm: str
    naive_limit: np.ndarray | None = None

    @property
    def budget_kinds(self) -> tuple:
        """Names of the T budget types: ("l2",), ("l1",) or ("add", "del")."""
        return BUDGET_KINDS[self.norm]

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
    """The collective problem of the target set T (docs/math.md 6): one row per output in `targets`
    that does not abstain.

    Args:
      base_certs: `BaseCertificates` (docs/math.md 5).
      targets: bool [D] or None (all outputs). docs/math.md 6's two target sets are two masks: `all`
        (every evaluated output) and `correct` (also equal to the label, for certified accuracy).
    Returns:
      `CollectiveProblem` with multiplicity 1 per row; `row_of_output[d]` is d's row or -1.
    """
    if not isinstance(base_certs, BaseCertificates):
        _checks.fail("base_certs", base_certs, "must be a BaseCertificates", "Use lrsjax.certify.")
    num = base_certs.num_outputs
    if targets is None:
        targets = np.ones(num, bool)
    targets = _checks.as_bool_array("targets", targets).reshape(-1)
    if targets.shape[0] != num:
        _checks.fail("targets", targets, f"must have one entry per output ({num})", "")
    _checks.same_shape(
        ("base_certs.eta", "base_certs.abstain", "base_certs.group"),
        (base_certs.eta, base_certs.abstain, base_certs.group),
    )
    keep = targets & ~np.asarray(base_certs.abstain, bool)
    eta = np.asarray(base_certs.eta, np.float64)[keep]
    if not np.all(np.isfinite(eta) & (eta > 0)):
        bad = eta[~(np.isfinite(eta) & (eta > 0))][0]
        _checks.fail(
            "base_certs.eta", eta, f"must be finite and > 0 where not abstained (found {bad})",
            "Abstain on outputs without a valid certificate.",
        )  # fmt: skip
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


def validate_problem(problem) -> CollectiveProblem:
    """Checks every field of a `CollectiveProblem` (shapes, ranges, finiteness); returns it with
    numpy arrays of the documented dtypes. Raises ValueError naming the field."""
    if not isinstance(problem, CollectiveProblem):
        _checks.fail("problem", problem, "must be a CollectiveProblem", "Use from_base_certs.")
    _checks.one_of("problem.norm", problem.norm, tuple(BUDGET_KINDS))
    weights = _checks.as_float_array("problem.weights", problem.weights, ndim=3)
    kinds = BUDGET_KINDS[problem.norm]
    if weights.shape[0] != len(kinds) or np.any(weights < 0):
        _checks.fail(
            "problem.weights", weights, f"must be >= 0 with {len(kinds)} budget type(s) on axis 0",
            "Shape it [T, K, M].",
        )  # fmt: skip
    eta = _checks.as_float_array("problem.eta", problem.eta, ndim=1)
    if np.any(eta <= 0):
        _checks.fail("problem.eta", eta, "must be > 0", "Abstained outputs are not rows.")
    multiplicity = _checks.as_int_array("problem.multiplicity", problem.multiplicity, ndim=1)
    group = _checks.as_int_array("problem.group", problem.group, ndim=1)
    _checks.same_shape(
        ("problem.eta", "problem.multiplicity", "problem.group"), (eta, multiplicity, group)
    )
    if np.any(multiplicity < 1):
        _checks.fail("problem.multiplicity", multiplicity, "must be >= 1", "Drop empty rows.")
    if group.size and (group.min() < 0 or group.max() >= weights.shape[1]):
        _checks.fail("problem.group", group, f"must lie in [0, {weights.shape[1]})", "")
    num_naive = problem.num_naive
    if isinstance(num_naive, bool) or not isinstance(num_naive, int | np.integer) or num_naive < 0:
        _checks.fail("problem.num_naive", num_naive, "must be an int >= 0", "")
    totals, limit = problem.totals, problem.naive_limit
    if totals is not None:
        totals = _checks.as_float_array("problem.totals", totals, ndim=1)
        if totals.shape[0] != weights.shape[0] or np.any(totals < 0):
            _checks.fail("problem.totals", totals, "must be [T] totals >= 0", "Use with_totals.")
    if limit is not None:
        limit = _checks.as_float_array("problem.naive_limit", limit, ndim=1)
        if limit.shape[0] != weights.shape[0] or np.any(limit < 0):
            _checks.fail(
                "problem.naive_limit", limit, "must be [T] totals >= 0", "Leave it to naive_filter."
            )
    if num_naive > 0 and limit is None:
        _checks.fail(
            "problem.naive_limit", limit,
            f"must give the totals at which the {num_naive} naive outputs are certified",
            "Remove rows with naive_filter(), which records it.",
        )  # fmt: skip
    return problem._replace(
        eta=eta, multiplicity=multiplicity, group=group, weights=weights,
        num_naive=int(num_naive), totals=totals, naive_limit=limit,
    )  # fmt: skip


def check_budgets_allowed(problem: CollectiveProblem, totals_all: np.ndarray, name="budgets"):
    """Refuses budget totals (float64 [B, T]) above `problem.naive_limit` in any type.

    The rows a naive filter dropped are certified only up to the totals it used; at a larger
    budget they may be attacked, so counting them would over-claim. The comparison is exact:
    any slack would have to point toward larger budgets, i.e. the unsafe way."""
    limit = problem.naive_limit
    if limit is None:
        if problem.num_naive > 0:  # hand-built: nobody knows where those outputs hold
            _checks.fail(
                "problem.naive_limit", None, f"must be set when num_naive = {problem.num_naive}",
                "Remove rows with naive_filter(), which records it.",
            )  # fmt: skip
        return
    totals_all = np.atleast_2d(np.asarray(totals_all, np.float64))
    if np.any(totals_all > limit[None, :]):
        _checks.fail(
            name, totals_all,
            f"must not exceed the totals {limit.tolist()} at which naive_filter removed "
            f"{problem.num_naive} outputs (they are certified only up to there)",
            "Solve the problem from before naive_filter, or filter at the largest budget.",
        )  # fmt: skip


def with_totals(problem: CollectiveProblem, budget) -> CollectiveProblem:
    """The problem specialised to one budget (user units: eps, or (additions, deletions)).

    Refused (ValueError) for a budget above `problem.naive_limit` in any type: rows a naive
    filter dropped at smaller totals would be counted as certified where they are not."""
    totals = budget_totals(problem.norm, budget)
    if totals.shape[0] != 1:
        _checks.fail("budget", budget, "must be a single budget", "Pass one eps or one pair.")
    check_budgets_allowed(problem, totals, name="budget")
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
        totals = np.asarray(problem.totals, np.float64)
        check_budgets_allowed(problem, totals[None, :], name="problem.totals")
        certified = max_costs(problem) < problem.eta
        if not certified.any():
            return problem
        limit = totals if problem.naive_limit is None else np.minimum(problem.naive_limit, totals)
        out = _select_rows(problem, ~certified)
        return out._replace(
            num_naive=problem.num_naive + int(problem.multiplicity[certified].sum()),
            naive_limit=limit.copy(),
        )

    return Transform(apply, "naive_filter")


def share() -> Transform:
    """Exact: merges rows with equal group and eta into one row with the summed multiplicity.

    Attacking one such row costs exactly as much as attacking all of them (same group, same
    threshold), so every relaxation and the MILP are unchanged (docs/math.md 6)."""

    def apply(problem: CollectiveProblem) -> CollectiveProblem:
        if problem.num_rows == 0:
            return problem
        order = np.lexsort((problem.eta, problem.group))
        g, e = problem.group[order], problem.eta[order]
        new = np.ones(order.size, bool)
        new[1:] = (g[1:] != g[:-1]) | (e[1:] != e[:-1])
        inverse = np.empty(order.size, np.int64)
        inverse[order] = np.cumsum(new) - 1
        multiplicity = np.bincount(inverse, weights=problem.multiplicity, minlength=int(new.sum()))
        return problem._replace(
            eta=e[new].copy(),
            multiplicity=np.rint(multiplicity).astype(np.int64),
            group=g[new].astype(np.int64),
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
        order = np.argsort(problem.group, kind="stable")
        cuts = np.flatnonzero(np.diff(problem.group[order])) + 1
        for rows in np.split(order, cuts):
            if rows.size == 0:
                continue
            radii = np.sqrt(eta[rows])
            if np.unique(radii).size <= num_bins:
                continue
            edges = np.linspace(radii.min(), radii.max(), num_bins)
            index = np.clip(np.searchsorted(edges, radii, side="right") - 1, 0, num_bins - 1)
            lowered = np.minimum(edges[index] ** 2, eta[rows])
            # One eta per bin, the smallest of the bin: `edge**2` need not round to the eta
            # whose square root the edge is, which would leave two etas one ulp apart.
            merged = np.full(num_bins, np.inf)
            np.minimum.at(merged, index, lowered)
            eta[rows] = merged[index]
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
