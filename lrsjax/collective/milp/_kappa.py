"""How many groups can one attack push past a threshold each, at most? (`kappa`, for the rows
on the groups' top levels of the exact MILP; `_clique` has the pairwise ones)

    kappa = max over b >= 0, sum_j b_j <= 1 (one budget type, scaled)  of  #{g : (W b)_g >= tau_g}

Any upper bound on kappa gives the valid row `sum_g [level_g reaches tau_g] <= kappa`; the exact
MILP uses it on the groups' top levels, where it is decisive (24 x 64 benchmark, eps 0.95: the
search proves the optimum in ~2 s with kappa = 11, and did not in 120 s with 12).

Formulation: per group the disjunctive (extended) form of "z_g = 1 implies (W b)_g >= tau_g":
a copy `c_g` of the part of `b` that serves group g,

    0 <= c_gj <= b_j,  sum_j c_gj <= z_g,  sum_j (b_j - c_gj) <= 1 - z_g,  W_g . c_g >= tau_g z_g,

exact for binary z (z_g = 1 forces c_g = b) and far tighter as an LP than `tau_g z_g <= (W b)_g`:
at eps 0.725 its LP bound (4.96) already proves kappa = 4, where SCIP on the plain form took 2.6
s. A small depth-first branch and bound over z closes the rest (eps 0.95: 13.9 -> 11).

Soundness: every bound is a weak-duality bound recomputed in float64 from the LP's row duals
(`dual_bound`, valid for any duals), so GLOP's tolerances can only make kappa larger (weaker);
the reported kappa is the floor of the largest bound of any node left open (or of the
incumbent when the search finishes).
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver import linear_solver_pb2, pywraplp

from lrsjax.collective import _clique, _levels
from lrsjax.collective.milp import _search

_GLOP_PARAMS = "use_preprocessing: false use_dual_simplex: true"
_ROUND = 1e-9  # relative slack for float64 rounding in the bound (can only weaken kappa)
_FRACTIONAL = 1e-6
FORCE = 100.0  # objective reward of a forced z (see `_Warm.solve`)


class KappaOutcome(NamedTuple):
    """Fields: kappa (int, a proven upper bound on the number of thresholds one attack reaches
    together), found (int, the most reached by a spend seen, ties counted generously: kappa >=
    found), nodes (int, nodes solved after the root), optimal (bool, kappa == found)."""

    kappa: int
    found: int
    nodes: int
    optimal: bool


class _Model(NamedTuple):
    """The extended LP as data: max objective @ x, row_lo <= A x <= row_hi, 0 <= x <= 1.
    Variables: b [M], z [G], c [G, M] (row-major). Rows: budget [1], then per group
    c_gj - b_j <= 0 [M], sum_j c_gj - z_g <= 0, sum_j (b_j - c_gj) + z_g <= 1,
    W_g . c_g - tau_g z_g >= 0."""

    objective: np.ndarray
    matrix: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray


def extended_model(wrows: np.ndarray, tau: np.ndarray) -> _Model:
    """The extended LP (module docstring) for wrows float64 [G, M] and thresholds tau [G]."""
    g_count, m_count = wrows.shape
    n_var = m_count + g_count + g_count * m_count
    rows, cols, vals = [np.zeros(m_count, np.int64)], [np.arange(m_count)], [np.ones(m_count)]
    row_lo, row_hi = [-np.inf], [1.0]
    r = 1
    for g in range(g_count):
        c = m_count + g_count + g * m_count + np.arange(m_count)
        z = m_count + g
        rows += [r + np.arange(m_count)] * 2
        cols += [c, np.arange(m_count)]
        vals += [np.ones(m_count), -np.ones(m_count)]
        row_lo += [-np.inf] * m_count
        row_hi += [0.0] * m_count
        r += m_count
        rows += [np.full(m_count + 1, r), np.full(2 * m_count + 1, r + 1)]
        cols += [np.append(c, z), np.concatenate([np.arange(m_count), c, [z]])]
        vals += [np.append(np.ones(m_count), -1.0),
                 np.concatenate([np.ones(m_count), -np.ones(m_count), [1.0]])]  # fmt: skip
        row_lo += [-np.inf, -np.inf]
        row_hi += [0.0, 1.0]
        rows.append(np.full(m_count + 1, r + 2))
        cols.append(np.append(c, z))
        vals.append(np.append(wrows[g], -tau[g]))
        row_lo.append(0.0)
        row_hi.append(np.inf)
        r += 3
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n_var)
    )
    objective = np.zeros(n_var)
    objective[m_count : m_count + g_count] = 1.0
    return _Model(objective, matrix, np.asarray(row_lo), np.asarray(row_hi))


def dual_bound(model: _Model, y: np.ndarray, var_lo: np.ndarray, var_hi: np.ndarray) -> float:
    """A weak-duality upper bound on `max objective @ x` over the rows and `var_lo <= x <=
    var_hi` (all finite), valid for ANY row multipliers `y` (a multiplier whose sign would use
    an infinite row bound is taken as 0)."""
    y = np.asarray(y, np.float64)
    y = np.where((y > 0) & np.isinf(model.row_hi), 0.0, y)
    y = np.where((y < 0) & np.isinf(model.row_lo), 0.0, y)
    row_terms = np.where(y > 0, y * np.where(y > 0, model.row_hi, 0.0), 0.0) + np.where(
        y < 0, y * np.where(y < 0, model.row_lo, 0.0), 0.0
    )
    d = model.objective - model.matrix.T @ y
    var_terms = np.maximum(d * var_lo, d * var_hi)
    value = float(row_terms.sum() + var_terms.sum())
    scale = float(np.abs(row_terms).sum() + np.abs(var_terms).sum())
    return value + _ROUND * max(1.0, scale)


class _Warm:
    """The extended LP in one GLOP model; nodes only change the bounds of z."""

    def __init__(self, model: _Model):
        self.model = model
        solver = pywraplp.Solver.CreateSolver("GLOP")
        solver.SetSolverSpecificParametersAsString(_GLOP_PARAMS)
        self.solver = solver
        n_var = model.objective.size
        self.vars = [solver.NumVar(0.0, 1.0, "") for _ in range(n_var)]
        inf = solver.infinity()
        matrix = model.matrix
        for r in range(matrix.shape[0]):
            lo, hi = model.row_lo[r], model.row_hi[r]
            row = solver.Constraint(-inf if np.isinf(lo) else lo, inf if np.isinf(hi) else hi)
            for k in range(matrix.indptr[r], matrix.indptr[r + 1]):
                row.SetCoefficient(self.vars[matrix.indices[k]], float(matrix.data[k]))
        self.objective = solver.Objective()
        for j in np.flatnonzero(model.objective):
            self.objective.SetCoefficient(self.vars[j], float(model.objective[j]))
        self.objective.SetMaximization()
        g_count = int(np.count_nonzero(model.objective))
        self.z_lo, self.z_hi = np.zeros(g_count), np.ones(g_count)
        self.z_obj = np.ones(g_count)

    def solve(self, first_z: int, lo: np.ndarray, hi: np.ndarray, forced: bool = False):
        """(rigorous bound, x) for the node with z in [lo, hi], or None when GLOP does not
        report OPTIMAL (the caller then keeps the parent's bound).

        With `forced`, a z_g with lo_g = 1 is not fixed but rewarded: z_g in [0, hi_g] with
        objective coefficient 1 + FORCE and the constant -FORCE. Every point of the node keeps
        its objective, so the optimum still bounds the node from above, and this LP is always
        feasible (b = z = 0): a node that cannot reach its forced thresholds gets a low bound
        without a proof of infeasibility. (Used only when the fixed form is infeasible: changing
        the objective costs GLOP its warm start.)"""
        objective = self.model.objective.copy()
        z_lo = lo
        if forced:
            objective[first_z : first_z + lo.size] += FORCE * lo
            z_lo = np.zeros(lo.size)
        for g in np.flatnonzero((z_lo != self.z_lo) | (hi != self.z_hi)):
            self.vars[first_z + g].SetBounds(float(z_lo[g]), float(hi[g]))
        self.z_lo, self.z_hi = z_lo.copy(), hi.copy()
        for g in np.flatnonzero(objective[first_z : first_z + lo.size] != self.z_obj):
            self.objective.SetCoefficient(self.vars[first_z + g], float(objective[first_z + g]))
        self.z_obj = objective[first_z : first_z + lo.size]
        status = self.solver.Solve()
        if status == pywraplp.Solver.INFEASIBLE and not forced:
            return self.solve(first_z, lo, hi, forced=True)
        if status != pywraplp.Solver.OPTIMAL:
            return None
        response = linear_solver_pb2.MPSolutionResponse()
        self.solver.FillSolutionResponseProto(response)
        x = np.asarray(response.variable_value, np.float64)
        y = np.asarray(response.dual_value, np.float64)
        if x.size != objective.size or y.size != self.model.row_lo.size:
            return None
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            return None
        var_lo, var_hi = np.zeros(x.size), np.ones(x.size)
        var_lo[first_z : first_z + lo.size] = z_lo
        var_hi[first_z : first_z + hi.size] = hi
        node = self.model._replace(objective=objective)
        # GLOP's sign convention for duals need not be trusted: both signs give valid bounds.
        bound = min(dual_bound(node, y, var_lo, var_hi), dual_bound(node, -y, var_lo, var_hi))
        if forced:
            bound -= FORCE * float(lo.sum())
        return bound, x


def reached(wrows: np.ndarray, tau: np.ndarray, b: np.ndarray) -> int:
    """Thresholds the spend `b` (clipped into the budget) reaches, ties resolved generously
    (`_levels.TIE_RTOL`): over-counting can only raise the reported kappa (weaker, still
    valid, since kappa >= every count found)."""
    b = np.maximum(np.asarray(b, np.float64), 0.0)
    total = b.sum()
    if total > 1.0:
        b = b / total
    return int(np.count_nonzero((wrows @ b) * (1.0 + _levels.TIE_RTOL) >= tau))


def max_reachable(
    wrows: np.ndarray, tau: np.ndarray, deadline: float | None = None, workers: int = 2
):
    """An upper bound on kappa (module docstring), exact unless stopped by `deadline`.

    Args:
      wrows: float64 [G, M] >= 0, `W[k_g, :]` of the single budget type, scaled to total 1.
      tau: float64 [G] > 0, the thresholds (callers lower them by their tie margin).
      deadline: `time.perf_counter()` value at which to stop with the largest open bound.
      workers: threads on one depth-first search (`_search.tree_search`), each with its own
        GLOP model (GLOP releases the GIL and does most of the work).
    Returns:
      `KappaOutcome`, or None when the root LP fails (no bound).
    """
    wrows = np.asarray(wrows, np.float64)
    tau = np.asarray(tau, np.float64)
    g_count, m_count = wrows.shape
    model = extended_model(wrows, tau)
    warms = [_Warm(model)]
    first_z = m_count
    root = warms[0].solve(first_z, np.zeros(g_count), np.ones(g_count))
    if root is None:
        return None
    # Depth first; each node carries its parent's bound (valid for it until solved) and, once
    # solved, its LP answer. A node whose LP fails stays open and stops the search.
    state = {"found": 0, "leaves": 0, "nodes": 0}
    lock = threading.Lock()
    workers = max(int(workers), 1)

    def best() -> int:
        return max(state["found"], state["leaves"])

    def expand(w: int, node):
        """The children of a node ([] when pruned or a leaf; the z_g = 1 side first), None if
        GLOP failed."""
        parent_bound, lo, hi, solved = node
        if np.floor(parent_bound) <= best():
            return []
        if solved is None:
            with lock:  # each thread its own GLOP model, built on first use
                while len(warms) <= w:
                    warms.append(_Warm(model))
                warm = warms[w]
            solved = warm.solve(first_z, lo, hi)
            with lock:
                state["nodes"] += 1
            if solved is None:
                return None
        bound, x = solved
        bound = min(bound, parent_bound)
        count = reached(wrows, tau, x[:m_count])
        with lock:
            state["found"] = max(state["found"], count)
        if np.floor(bound) <= best():
            return []
        z = x[first_z : first_z + g_count]
        free = np.flatnonzero(lo < hi)
        if free.size == 0:
            # Every z fixed and the LP feasible: a real attack reaches sum(z) thresholds, but a
            # spend on the boundary may miss one by rounding; the leaf's bound stands for it.
            with lock:
                state["leaves"] = max(state["leaves"], int(np.floor(bound)))
            return []
        fractional = free[(z[free] > _FRACTIONAL) & (z[free] < 1.0 - _FRACTIONAL)]
        if fractional.size:
            g = int(fractional[np.argmin(np.abs(z[fractional] - 0.5))])
        else:
            g = int(free[0])
        down_hi, up_lo = hi.copy(), lo.copy()
        down_hi[g], up_lo[g] = 0.0, 1.0
        return [(bound, up_lo, hi, None), (bound, lo, down_hi, None)]

    def stopped() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    frontier = _search.Frontier(best_first=False)
    frontier.push((root[0], np.zeros(g_count), np.ones(g_count), root))
    held = _search.tree_search(frontier, expand, workers, stopped=stopped)
    open_bound = max((int(np.floor(node[0])) for node in frontier.nodes() + held), default=0)
    kappa = max(best(), open_bound)
    found = state["found"]
    return KappaOutcome(int(kappa), int(found), state["nodes"], kappa == found)


def max_tops(levels, wrows: np.ndarray, time_limit_s: float, workers: int = 2) -> int | None:
    """A proven upper bound on how many top levels one attack reaches together
    (`max_reachable` on the groups' top thresholds, lowered by `_clique`'s margin), exact
    unless `time_limit_s` runs out first; None if its root LP fails. Each is a valid `kappa`
    for the row over all groups."""
    tau = np.array([lv.eta[-1] * (1.0 - _clique.MARGIN) for lv in levels])
    deadline = time.perf_counter() + float(time_limit_s)
    out = max_reachable(wrows, tau, deadline=deadline, workers=workers)
    return None if out is None else out.kappa


def top_rows(levels, wrows: np.ndarray, kappa_time_s: float | None = None, workers: int = 2):
    """The valid rows `(S, kappa)` of the exact MILP: `_clique.top_rows` (pairwise-conflict
    cliques of top levels, kappa 1 each), and, with `kappa_time_s`, all groups with `max_tops`
    when that is below the number of groups and some pair of top levels is reachable together.
    """
    rows, conflict = _clique.top_rows(levels, wrows, with_conflicts=True)
    g_count = len(levels)
    if conflict is None or kappa_time_s is None or g_count < 3:
        return rows
    if conflict.sum() < g_count * (g_count - 1):
        kappa = max_tops(levels, wrows, kappa_time_s, workers)
        if kappa is not None and kappa < g_count:
            rows = (*rows, (tuple(range(g_count)), kappa))
    return rows
