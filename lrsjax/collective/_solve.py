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
    """The model as sparse arrays: variables b [T*M], r [K'], then y [K'] or z [sum L]."""
    weights = problem.weights
    num_types, _, num_regions = weights.shape
    nb = num_types * num_regions
    ng = len(levels)
    rows, cols, vals, lo, hi = [], [], [], [], []

    def add_row(r_cols, r_vals, low, high):
        index = len(lo)
        rows.extend([index] * len(r_cols))
        cols.extend(r_cols)
        vals.extend(r_vals)
        lo.append(low)
        hi.append(high)

    for t in range(num_types):
        add_row(list(range(t * num_regions, (t + 1) * num_regions)), [1.0] * num_regions,
                -np.inf, float(totals[t]))  # fmt: skip
    for g, level in enumerate(levels):
        w = weights[:, level.group, :].reshape(-1)
        nz = np.flatnonzero(w)
        add_row([nb + g, *nz.tolist()], [1.0, *(-w[nz]).tolist()], 0.0, 0.0)
    var_lo = [0.0] * (nb + ng)
    var_hi = [float(totals[t]) for t in range(num_types) for _ in range(num_regions)]
    var_hi += [np.inf] * ng
    objective = [0.0] * (nb + ng)
    integer = []
    if mode in ("lp", "hull"):
        for g, level in enumerate(levels):
            a, b = _paper_lines(level) if mode == "lp" else _hull_lines(level)
            y = nb + ng + g
            for ai, bi in zip(a, b):
                add_row([y, nb + g], [1.0, -bi], -np.inf, float(ai))
        var_lo += [0.0] * ng
        var_hi += [float(level.cumulative[-1]) for level in levels]
        objective += [1.0] * ng
    else:
        offset = nb + ng
        for g, level in enumerate(levels):
            z = list(range(offset, offset + level.eta.size))
            add_row(z, [1.0] * len(z), -np.inf, 1.0)
            add_row([nb + g, *z], [1.0, *(-level.eta).tolist()], 0.0, np.inf)
            objective += level.cumulative.tolist()
            offset += level.eta.size
        count = offset - nb - ng
        var_lo += [0.0] * count
        var_hi += [1.0] * count
        integer = list(range(nb + ng, offset))
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(lo), len(var_lo)))
    model = mb.Model()
    model.helper.fill_model_from_sparse_data(
        np.asarray(var_lo, np.float64), np.asarray(var_hi, np.float64),
        np.asarray(objective, np.float64), np.asarray(lo, np.float64),
        np.asarray(hi, np.float64), matrix,
    )  # fmt: skip
    for index in integer:
        model.helper.set_var_integrality(index, True)
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
