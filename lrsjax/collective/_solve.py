"""Solving the collective problem with OR-Tools: paper LP, concave-hull LP, exact MILP (SPEC 6).

Within a group every row sees the same spend `r_k = (W b)_k`, so the adversary attacks a prefix of
the group's rows sorted by eta. Per group we therefore only need the sorted distinct etas
`e_1 < ... < e_L` and the cumulative counts `C_i` (outputs with eta <= e_i):

* "lp": the paper's relaxation (0 <= a_n <= 1). Per group its objective is the concave
  `F_k(r) = sum_m c_m min(1, r / e_m)`, written as a hypograph: one variable `y_k` and one
  constraint `y_k <= A_i + B_i r_k` per segment.
* "hull": the upper concave hull of the step function `G_k(r) = C_{i(r)}` (SPEC 6, beyond the
  paper). `G_k <= hull <= F_k`, so it is a tighter relaxation that is still an upper bound on the
  attack.
* "milp": exact. One binary per (group, level), at most one level per group,
  `r_k >= sum_i e_i z_ki`, objective `sum C_i z_ki`. At a time limit the solver's proven bound
  (never its incumbent, which is only an attack) is used; if there is none, the hull LP bound.

Every attack bound `U` becomes a certificate by `certified = naive + |T| - floor(U + tol)` with
`tol = 1e-6 * max(1, |T|)`, so solver rounding can never add an output.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder as mb

from lrsjax import _checks
from lrsjax.base_certs import budget_totals
from lrsjax.collective import _problem

MODES = ("lp", "hull", "milp")
_LP_SOLVER = "glop"
_MILP_SOLVER = "scip"


class CollectiveResult(NamedTuple):
    """Per budget (B budgets) results of `solve`.

    Fields:
      budgets: the budgets as given (eps [B] or pairs [B, 2]).
      certified: int64 [B], naive + collective certified outputs (a sound lower bound).
      naive: int64 [B], outputs certified naively (each on its own).
      num_targets: int, outputs in the problem (not abstained, targeted).
      attack_bound: float64 [B], the upper bound on attacked outputs the count comes from.
      status: tuple of B str: "ZERO_BUDGET", "NAIVE_ONLY", "OPTIMAL", "TIME_LIMIT_BOUND",
        "HULL_FALLBACK".
      mode_used: tuple of B str: "lp", "hull", "milp" (or "none" where no solve was needed).
      solver: tuple of B str ("GLOP", "SCIP", or "none").
      seconds: float64 [B], wall time per budget.
    """

    budgets: np.ndarray
    certified: np.ndarray
    naive: np.ndarray
    num_targets: int
    attack_bound: np.ndarray
    status: tuple
    mode_used: tuple
    solver: tuple
    seconds: np.ndarray


class _Levels(NamedTuple):
    group: int
    eta: np.ndarray  # [L] sorted distinct etas
    cumulative: np.ndarray  # [L] outputs with eta <= eta_i


def _levels(problem: _problem.CollectiveProblem) -> list[_Levels]:
    out = []
    for k in np.unique(problem.group):
        rows = problem.group == k
        eta, inverse = np.unique(problem.eta[rows], return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=problem.multiplicity[rows])
        out.append(_Levels(int(k), eta, np.cumsum(counts)))
    return out


def _paper_lines(level: _Levels):
    """(A [L+1], B [L+1]) with F(r) = min_i A_i + B_i r (the paper LP's per-group objective)."""
    counts = np.diff(np.concatenate([[0.0], level.cumulative]))
    slope = np.cumsum((counts / level.eta)[::-1])[::-1]
    intercept = np.concatenate([[0.0], level.cumulative])
    return intercept, np.concatenate([slope, [0.0]])


def _hull_lines(level: _Levels):
    """(A, B) of the upper concave hull of the step function through (0,0), (e_i, C_i)."""
    xs = np.concatenate([[0.0], level.eta])
    ys = np.concatenate([[0.0], level.cumulative])
    hull = [0]
    for i in range(1, xs.size):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # Drop b if it lies on or below the segment a -> i (cross product >= 0).
            cross = (xs[b] - xs[a]) * (ys[i] - ys[a]) - (ys[b] - ys[a]) * (xs[i] - xs[a])
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    hx, hy = xs[hull], ys[hull]
    slopes = np.diff(hy) / np.diff(hx)
    intercepts = hy[:-1] - slopes * hx[:-1]
    return np.concatenate([intercepts, [ys[-1]]]), np.concatenate([slopes, [0.0]])


def _build(problem, levels, totals, mode):
    """The model from sparse arrays: variables b [T*M], r [G], then y [G] (LP) or z (MILP).

    Rows: the T budget rows `sum_j b[t, j] <= total_t`; G rows `r_g = (W b)_group`; then per
    group either the hypograph rows `y_g - B_i r_g <= A_i` or, for the MILP, `sum_i z_gi <= 1`
    and `r_g - sum_i e_i z_gi >= 0`.
    """
    weights = problem.weights
    num_types, _, num_regions = weights.shape
    nb = num_types * num_regions
    ng = len(levels)
    parts = []  # (row ids, col ids, values) with row ids local to each block
    lo, hi = [], []
    # Budget rows.
    parts.append((np.repeat(np.arange(num_types), num_regions), np.arange(nb), np.ones(nb)))
    lo.append(np.full(num_types, -np.inf))
    hi.append(np.asarray(totals, np.float64))
    # r_g - (W b)_g = 0.
    w = np.stack([weights[:, level.group, :].reshape(-1) for level in levels])  # [G, nb]
    g_idx, b_idx = np.nonzero(w)
    parts.append((
        np.concatenate([np.arange(ng), g_idx]),
        np.concatenate([nb + np.arange(ng), b_idx]),
        np.concatenate([np.ones(ng), -w[g_idx, b_idx]]),
    ))  # fmt: skip
    lo.append(np.zeros(ng))
    hi.append(np.zeros(ng))
    var_lo = [np.zeros(nb + ng)]
    var_hi = [np.repeat(np.asarray(totals, np.float64), num_regions), np.full(ng, np.inf)]
    objective = [np.zeros(nb + ng)]
    integer = np.zeros(0, np.int64)
    if mode in ("lp", "hull"):
        lines = [_paper_lines(level) if mode == "lp" else _hull_lines(level) for level in levels]
        sizes = np.array([a.size for a, _ in lines])
        owner = np.repeat(np.arange(ng), sizes)
        count = int(sizes.sum())
        slopes = np.concatenate([b for _, b in lines])
        rows = np.arange(count)
        parts.append((
            np.concatenate([rows, rows]),
            np.concatenate([nb + ng + owner, nb + owner]),
            np.concatenate([np.ones(count), -slopes]),
        ))  # fmt: skip
        lo.append(np.full(count, -np.inf))
        hi.append(np.concatenate([a for a, _ in lines]))
        var_lo.append(np.zeros(ng))
        var_hi.append(np.array([level.cumulative[-1] for level in levels], np.float64))
        objective.append(np.ones(ng))
    else:
        sizes = np.array([level.eta.size for level in levels])
        owner = np.repeat(np.arange(ng), sizes)
        count = int(sizes.sum())
        z = nb + ng + np.arange(count)
        eta = np.concatenate([level.eta for level in levels])
        parts.append((owner, z, np.ones(count)))  # one level per group
        lo.append(np.full(ng, -np.inf))
        hi.append(np.ones(ng))
        parts.append((
            np.concatenate([np.arange(ng), owner]),
            np.concatenate([nb + np.arange(ng), z]),
            np.concatenate([np.ones(ng), -eta]),
        ))  # fmt: skip
        lo.append(np.zeros(ng))
        hi.append(np.full(ng, np.inf))
        var_lo.append(np.zeros(count))
        var_hi.append(np.ones(count))
        objective.append(np.concatenate([level.cumulative for level in levels]))
        integer = z
    offsets = np.cumsum([0] + [block.size for block in lo[:-1]])
    rows = np.concatenate([r + off for (r, _, _), off in zip(parts, offsets)])
    cols = np.concatenate([c for _, c, _ in parts])
    vals = np.concatenate([v for _, _, v in parts])
    lo, hi = np.concatenate(lo), np.concatenate(hi)
    var_lo, var_hi = np.concatenate(var_lo), np.concatenate(var_hi)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(lo.size, var_lo.size))
    model = mb.Model()
    model.helper.fill_model_from_sparse_data(
        var_lo, var_hi, np.concatenate(objective).astype(np.float64), lo, hi, matrix
    )
    for index in integer:
        model.helper.set_var_integrality(int(index), True)
    model.helper.set_maximize(True)
    return model


def _solve_lp(problem, levels, totals, mode):
    solver = mb.Solver(_LP_SOLVER)
    status = solver.solve(_build(problem, levels, totals, mode))
    if status != mb.SolveStatus.OPTIMAL:
        raise RuntimeError(
            f"the {mode} relaxation failed with GLOP status {status.name}; no certificate is "
            "reported rather than a possibly wrong one. Please report this problem."
        )
    return float(solver.objective_value), "OPTIMAL", mode, "GLOP"


def _solve_milp(problem, levels, totals, time_limit_s):
    solver = mb.Solver(_MILP_SOLVER)
    solver.set_solver_specific_parameters("limits/gap = 0\nlimits/absgap = 0")
    if time_limit_s is not None:
        solver.set_time_limit_in_seconds(float(time_limit_s))
    status = solver.solve(_build(problem, levels, totals, "milp"))
    if status == mb.SolveStatus.OPTIMAL:
        return max(float(solver.best_objective_bound), float(solver.objective_value)), \
            "OPTIMAL", "milp", "SCIP"  # fmt: skip
    bound = float(solver.best_objective_bound)
    if status == mb.SolveStatus.FEASIBLE and np.isfinite(bound):
        return bound, "TIME_LIMIT_BOUND", "milp", "SCIP"
    value, _, _, name = _solve_lp(problem, levels, totals, "hull")
    return value, "HULL_FALLBACK", "hull", name


def solve(problem, budgets, *, mode: str = "lp", time_limit_s: float | None = None):
    """Certified counts of `problem` for every budget (SPEC 6).

    Per budget the exact naive filter is applied first (rows certified on their own leave the
    problem and are counted), then the chosen relaxation or the exact MILP bounds the number of
    remaining outputs one perturbation can flip together.

    Args:
      problem: a `CollectiveProblem` (e.g. `from_base_certs` + transforms).
      budgets: l2/l1: radii eps [B]; binary: (additions, deletions) pairs [B, 2].
      mode: "lp" (paper), "hull" (tighter, sound) or "milp" (exact; sound at a time limit).
      time_limit_s: MILP time limit per budget (None: no limit).
    Returns:
      A `CollectiveResult`.
    """
    if not isinstance(problem, _problem.CollectiveProblem):
        _checks.fail("problem", problem, "must be a CollectiveProblem", "Use from_base_certs.")
    _checks.one_of("mode", mode, MODES)
    if time_limit_s is not None and not (np.isfinite(time_limit_s) and time_limit_s > 0):
        _checks.fail("time_limit_s", time_limit_s, "must be > 0 or None", "E.g. 10.")
    totals_all = budget_totals(problem.norm, budgets)
    filt = _problem.naive_filter()
    num_targets = problem.num_outputs + problem.num_naive
    out = {k: [] for k in ("certified", "naive", "bound", "status", "mode", "solver", "seconds")}
    for totals in totals_all:
        start = time.perf_counter()
        reduced = filt.apply(problem._replace(totals=totals))
        remaining = reduced.num_outputs
        if not np.any(totals > 0):
            bound, status, used, name = 0.0, "ZERO_BUDGET", "none", "none"
        elif remaining == 0:
            bound, status, used, name = 0.0, "NAIVE_ONLY", "none", "none"
        else:
            levels = _levels(reduced)
            if mode == "milp":
                bound, status, used, name = _solve_milp(reduced, levels, totals, time_limit_s)
            else:
                bound, status, used, name = _solve_lp(reduced, levels, totals, mode)
        tol = 1e-6 * max(1, remaining)
        attacked = min(remaining, int(np.floor(bound + tol)))
        out["certified"].append(reduced.num_naive + remaining - attacked)
        out["naive"].append(reduced.num_naive)
        out["bound"].append(bound)
        out["status"].append(status)
        out["mode"].append(used)
        out["solver"].append(name)
        out["seconds"].append(time.perf_counter() - start)
    return CollectiveResult(
        budgets=np.asarray(budgets),
        certified=np.asarray(out["certified"], np.int64),
        naive=np.asarray(out["naive"], np.int64),
        num_targets=int(num_targets),
        attack_bound=np.asarray(out["bound"], np.float64),
        status=tuple(out["status"]),
        mode_used=tuple(out["mode"]),
        solver=tuple(out["solver"]),
        seconds=np.asarray(out["seconds"]),
    )


def certify_collective(
    base_certs, budgets, *, targets=None, num_bins=None, mode="lp", time_limit_s=None
):
    """Collective certificate of `base_certs` for every budget, in one call.

    `from_base_certs(base_certs, targets)`, then `binning(num_bins)` (or exact `share()` when
    `num_bins` is None), then `solve(...)`. See `solve` for the arguments and the guarantee.
    """
    problem = _problem.from_base_certs(base_certs, targets)
    transform = _problem.share() if num_bins is None else _problem.binning(num_bins)
    return solve(transform.apply(problem), budgets, mode=mode, time_limit_s=time_limit_s)
