"""LP relaxations of the collective problem as per-group hypographs, with a rigorous dual bound.

Every relaxation here has the form (docs/math.md 6)

    maximize  sum_g f_g(P_g)   over   P_g <= (W b)_{k_g},  sum_j b[t, j] <= total_t,  b >= 0,
              P_g >= lower_g

with `f_g` concave, nondecreasing and piecewise linear, flat after its last breakpoint:
* paper LP ("lp"): `f(r) = sum_m c_m min(1, r / eta_m)` (the per-row LP with 0 <= a_n <= 1);
* concave hull ("hull"): the upper concave hull of the step function through (0, 0), (E_i, C_i);
* branch-and-bound nodes: the hull of a range of levels, with `lower = E_lo`.
It is solved with GLOP as a hypograph LP (`h_g <= a_i + s_i P_g`, one row per segment), by cutting
planes when the pieces are many: only the segments near the current solution are in the model.

Soundness does not rest on the LP solver. From the duals `lam >= 0` of the rows
`P_g <= (W b)_g`, weak (Lagrangian) duality gives for ANY `lam >= 0` the upper bound

    U(lam) = sum_g max_i (y_gi - lam_g x_gi) + sum_t total_t max(0, max_j sum_g lam_g W[t, k_g, j])

where `(x_gi, y_gi)` runs over the points whose concave envelope `f_g` is (all of them, so an
imprecise hull cannot lower it). `U` is evaluated here in float64 (`lagrangian`, shared by every
solver: clique rows, branch-and-bound nodes); solver tolerances and an unconverged cut loop can
only make it looser, never smaller than the relaxation's optimum.

The ordered formulation (`ordered_model`) writes the same hull relaxation with one variable per
level; with integrality it is the exact MILP (`milp._scip`), as an LP it supplies the clique
rows' multipliers (`_clique`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver.python import model_builder_helper as mbh

_OPTIMAL = mbh.SolveStatus.OPTIMAL
DIRECT_PIECES = 400  # up to this many segments in total the LP is solved in one shot
_CONVERGED_RTOL = 1e-10  # stop the cut loop when bound and primal value agree this well
_VERIFIED_RTOL = 1e-6  # "solved" when they agree this well (GLOP is far more accurate)
_MAX_ROUNDS = 60
# The paper function merges thresholds closer than this (relative) into the smaller one.
MERGE_RTOL = 1e-9


class Concave(NamedTuple):
    """One group's concave piecewise-linear objective on `[x[0], inf)`.

    Fields:
      x: float64 [n] breakpoints, strictly increasing (x[0] is the domain start, 0 or E_lo).
      y: float64 [n] values at the breakpoints; the function is flat (y[-1]) after x[-1].
      px, py: float64 [p] the points whose concave envelope this is (used for the dual bound).
    """

    x: np.ndarray
    y: np.ndarray
    px: np.ndarray
    py: np.ndarray

    def __call__(self, r: float) -> float:
        r = max(float(r), float(self.x[0]))
        i = int(np.searchsorted(self.x, r, side="right")) - 1
        if i >= self.x.size - 1:
            return float(self.y[-1])
        s = (self.y[i + 1] - self.y[i]) / (self.x[i + 1] - self.x[i])
        return float(self.y[i] + s * (r - self.x[i]))


def paper_function(eta: np.ndarray, count: np.ndarray) -> Concave:
    """`F(r) = sum_m c_m min(1, r / eta_m)` for sorted distinct `eta` (the paper's LP, docs/math.md
    6).

    Thresholds within `MERGE_RTOL` (relative) of the previous one are merged into the smaller
    one first. Lowering a threshold only raises `F`, so every bound on the merged function is a
    bound on the paper's (sound); without the merge, two etas one ulp apart give a segment whose
    slope, a difference of rounded values divided by one ulp, is garbage, and its hypograph row
    (a global constraint) cuts the LP far from that segment. The merge changes `F` by at most
    `MERGE_RTOL * sum_m c_m`, far below the rounding slack of the certified count.
    """
    eta = np.asarray(eta, np.float64)
    if eta.size > 1:
        starts = np.flatnonzero(np.r_[True, eta[1:] > eta[:-1] * (1.0 + MERGE_RTOL)])
        eta, count = eta[starts], np.add.reduceat(np.asarray(count), starts)
    count = count.astype(np.float64)
    x = np.concatenate([[0.0], eta])
    below = np.concatenate([[0.0], np.cumsum(count)])  # outputs with eta <= x_i: fully attacked
    tail = np.cumsum((count / eta)[::-1])[::-1]  # sum over eta_m > x_i of c_m / eta_m
    y = below + x * np.concatenate([tail, [0.0]])
    return Concave(x, y, x, y)


def upper_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the upper concave hull of points with strictly increasing x (monotone chain).

    A point on or below the chord of its neighbours is dropped; whatever rounding does here,
    bounds stay rigorous because the dual bound uses every point (`Concave.px, py`)."""
    if x.size > 200:
        return _upper_hull_passes(x, y)
    return _chain(hull_parents(x, y), x.size)


def _upper_hull_passes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vectorized upper hull: repeatedly drop every point on or below the chord of its current
    neighbours (never a hull vertex) until none is left; a few passes in practice."""
    idx = np.arange(x.size)
    while idx.size > 2:
        xa, xb, xc = x[idx[:-2]], x[idx[1:-1]], x[idx[2:]]
        ya, yb, yc = y[idx[:-2]], y[idx[1:-1]], y[idx[2:]]
        drop = (xb - xa) * (yc - ya) - (yb - ya) * (xc - xa) >= 0
        if not drop.any():
            break
        keep = np.ones(idx.size, bool)
        keep[1:-1] = ~drop
        idx = idx[keep]
    return idx


def hull_parents(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """int64 [n]: with these parent pointers the upper hull of the prefix `0..i` is the chain
    `i, parent[i], parent[parent[i]], ...` (monotone chain keeps the prefix hull on its stack)."""
    xs, ys = x.tolist(), y.tolist()
    parent = [-1] * len(xs)
    stack: list[int] = []
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        while len(stack) >= 2:
            a, b = stack[-2], stack[-1]
            if (xs[b] - xs[a]) * (yi - ys[a]) - (ys[b] - ys[a]) * (xi - xs[a]) >= 0:
                stack.pop()
            else:
                break
        parent[i] = stack[-1] if stack else -1
        stack.append(i)
    return np.asarray(parent, np.int64)


def prefix_hull(x: np.ndarray, y: np.ndarray, parent: np.ndarray, n: int) -> Concave:
    """The hull of the points `0..n-1` from `hull_parents` (O(hull size))."""
    idx = _chain(parent, n)
    return Concave(x[idx], y[idx], x[:n], y[:n])


def _chain(parent: np.ndarray, n: int) -> np.ndarray:
    """Indices (increasing) of the hull of the prefix `0..n-1`: `n - 1` and its ancestors."""
    chain = [n - 1]
    while parent[chain[-1]] >= 0:
        chain.append(int(parent[chain[-1]]))
    return np.asarray(chain[::-1], np.int64)


def hull_function(px: np.ndarray, py: np.ndarray) -> Concave:
    """The upper concave hull of the points (px, py) (px strictly increasing) as a `Concave`."""
    idx = upper_hull(px, py)
    return Concave(px[idx], py[idx], px, py)


def conjugate(f: Concave, lam: float) -> float:
    """`max_i (py_i - lam px_i)`: for lam >= 0 the sup of f(r) - lam r over the domain."""
    return float(np.max(f.py - lam * f.px))


def lagrangian(x, y, inside, wrows, totals, lam, extra=None, offset: float = 0.0):
    """The Lagrangian bound of every relaxation and of the exact problem (module docstring),
    valid for every lam >= 0: the one dual bound of the collective solvers.

        U = sum_g max_{i inside} (y_gi - lam_g x_gi - extra_gi)
            + sum_t total_t max(0, max_j sum_g lam_g W[t, k_g, j]) + offset

    Args:
      x, y: float64 [G, P] each group's points (padded; x finite), inside: bool [G, P] the
        points that count. wrows: float64 [G, T, M], `W[t, k_g, j]`. totals: float64 [T].
      lam: float64 [G] (negative entries are clipped to 0).
      extra: optional float64 [G, P] >= 0 subtracted from the terms, with `offset` added: the
        multipliers of further rows (`_clique`: `mu_S` on each member's top level, plus
        `sum_S mu_S kappa_S`).
    Returns:
      (bound, terms float64 [G, P] (-inf outside), best_terms float64 [G] their row maxima).
    """
    lam = np.maximum(np.asarray(lam, np.float64), 0.0)
    terms = y - lam[:, None] * x
    if extra is not None:
        terms -= extra
    terms[~inside] = -np.inf
    best_terms = terms.max(axis=1)
    g_count, t_count, m_count = wrows.shape
    per_region = (lam @ wrows.reshape(g_count, t_count * m_count)).reshape(t_count, m_count)
    spend = float(np.dot(np.asarray(totals, np.float64), np.maximum(0.0, per_region.max(axis=1))))
    return float(best_terms.sum()) + spend + float(offset), terms, best_terms


def dual_bound(funcs, wrows: np.ndarray, totals: np.ndarray, lam: np.ndarray) -> float:
    """`lagrangian` over the points `(px, py)` of the concave `funcs` (valid for every lam >= 0).

    Args:
      funcs: G `Concave` objectives. wrows: float64 [G, T, M], `W[t, k_g, j]`.
      totals: float64 [T]. lam: float64 [G] (negative entries are clipped to 0).
    """
    sizes = np.array([f.px.size for f in funcs])
    x = np.zeros((sizes.size, int(sizes.max())))
    y = np.zeros_like(x)
    for g, f in enumerate(funcs):
        x[g, : f.px.size], y[g, : f.py.size] = f.px, f.py
    inside = np.arange(x.shape[1])[None, :] < sizes[:, None]
    return lagrangian(x, y, inside, wrows, totals, lam)[0]


class Relaxation(NamedTuple):
    """Outcome of `solve_relaxation`.

    Fields:
      bound: float, a rigorous upper bound on the relaxation's optimum (U(lam), docs/math.md 6).
      b: float64 [T, M] the LP's spend (None if GLOP failed on the first round).
      power: float64 [G] the LP's P_g.
      lam: float64 [G] the multipliers behind `bound`.
      converged: bool, True when `bound` matches the value of a feasible primal point to 1e-6
        (relative): the relaxation is solved and `bound` is (up to that) its optimum.
      lp_ok: bool, False when GLOP did not return OPTIMAL (bound then comes from the best
        multipliers seen, possibly lam = 0: every reachable output attacked).
      rounds: int, LP solves used.
    """

    bound: float
    b: np.ndarray | None
    power: np.ndarray | None
    lam: np.ndarray
    converged: bool
    lp_ok: bool
    rounds: int


def _segment_rows(f: Concave, which: np.ndarray):
    """(slope [s], intercept [s]) of the segments `which` (segment i joins x[i], x[i+1])."""
    s = (f.y[which + 1] - f.y[which]) / (f.x[which + 1] - f.x[which])
    return s, f.y[which] - s * f.x[which]


def _segments_at(f: Concave, r: float, width: int = 0) -> np.ndarray:
    """Indices of the segments within `width` of the one containing r (segment i joins x[i] and
    x[i+1]); empty when r lies on the flat part (the variable's upper bound covers it)."""
    n_seg = f.x.size - 1
    i = int(np.searchsorted(f.x, r, side="right")) - 1
    if n_seg == 0 or i >= n_seg:
        return np.zeros(0, np.int64)
    i = max(i, 0)
    return np.arange(max(i - width - 1, 0), min(i + width + 1, n_seg))


def _initial_segments(f: Concave, anchors, spread: int = 12) -> np.ndarray:
    n_seg = f.x.size - 1
    if n_seg <= spread:
        return np.arange(n_seg)
    picks = set(np.linspace(0, n_seg - 1, spread).round().astype(int).tolist())
    for r in anchors:
        picks.update(_segments_at(f, r, width=2).tolist())
    return np.asarray(sorted(picks), np.int64)


def glop_maximize(var_lo, var_hi, objective, row_lo, row_hi, matrix):
    """Maximizes a model given as sparse data (`fill_model_from_sparse_data`, milliseconds even
    for large models) with GLOP; returns the solver, or None unless GLOP reports OPTIMAL."""
    model = mbh.ModelBuilderHelper()
    model.fill_model_from_sparse_data(var_lo, var_hi, objective, row_lo, row_hi, matrix)
    model.set_maximize(True)
    solver = mbh.ModelSolverHelper("glop")
    solver.solve(model)
    return solver if solver.status() == _OPTIMAL else None


def _solve_master(funcs, segs, wrows, totals, lower):
    """One GLOP solve of the hypograph LP restricted to the segments `segs` (one array per g)."""
    g_count, t_count, m_count = wrows.shape
    nb = t_count * m_count
    # Variables: b [T*M], P [G], h [G].
    var_lo = np.concatenate([np.zeros(nb), lower, np.full(g_count, -np.inf)])
    var_hi = np.concatenate([
        np.repeat(totals, m_count), np.full(g_count, np.inf), [f.y[-1] for f in funcs]
    ])  # fmt: skip
    objective = np.concatenate([np.zeros(nb + g_count), np.ones(g_count)])
    # Rows: budgets [T], links [G] (P_g - (W b)_g <= 0), then the cuts.
    w = wrows.reshape(g_count, nb)
    gi, bi = np.nonzero(w)
    slopes, intercepts, owner = [], [], []
    for g, (f, which) in enumerate(zip(funcs, segs)):
        # Rescaling can merge breakpoints that differ in the last bits: such a zero-width
        # segment has no finite slope and is left out (the LP only gets looser; the bound
        # `dual_bound` reports uses every point and stays rigorous).
        which = which[f.x[which + 1] > f.x[which]]
        if which.size:
            s, a = _segment_rows(f, which)
            slopes.append(s)
            intercepts.append(a)
            owner.append(np.full(which.size, g))
    slopes = np.concatenate(slopes) if slopes else np.zeros(0)
    intercepts = np.concatenate(intercepts) if intercepts else np.zeros(0)
    owner = np.concatenate(owner) if owner else np.zeros(0, np.int64)
    n_cut = slopes.size
    cut_rows = t_count + g_count + np.arange(n_cut)
    rows = np.concatenate([
        np.repeat(np.arange(t_count), m_count),
        t_count + np.arange(g_count), t_count + gi,
        cut_rows, cut_rows,
    ])  # fmt: skip
    cols = np.concatenate([
        np.arange(nb), nb + np.arange(g_count), bi, nb + g_count + owner, nb + owner
    ])  # fmt: skip
    vals = np.concatenate([np.ones(nb), np.ones(g_count), -w[gi, bi], np.ones(n_cut), -slopes])
    n_rows = t_count + g_count + n_cut
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, nb + 2 * g_count))
    row_lo = np.full(n_rows, -np.inf)
    row_hi = np.concatenate([totals, np.zeros(g_count), intercepts])
    solver = glop_maximize(var_lo, var_hi, objective, row_lo, row_hi, matrix)
    if solver is None:
        return None
    x = np.asarray(solver.variable_values())
    duals = np.asarray(solver.dual_values())[t_count : t_count + g_count]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(duals))):
        return None  # a solver claiming success with garbage: treated as a failure
    return x[:nb].reshape(t_count, m_count), x[nb : nb + g_count], x[nb + g_count :], duals


def solve_relaxation(funcs, wrows, totals, lower=None, anchors=None) -> Relaxation:
    """Maximizes `sum_g f_g(P_g)` (module docstring) and returns a rigorous upper bound.

    Args:
      funcs: G `Concave` objectives (G >= 1).
      wrows: float64 [G, T, M], the weights of each objective's group.
      totals: float64 [T] budget totals.
      lower: float64 [G] lower bounds on P_g (default 0 = each f's domain start).
      anchors: optional G iterables of spends near which the cut loop starts (warm start).
    """
    totals = np.asarray(totals, np.float64)
    g_count = len(funcs)
    lower = np.array([f.x[0] for f in funcs]) if lower is None else np.asarray(lower, np.float64)
    sizes = [f.x.size - 1 for f in funcs]
    if sum(sizes) <= DIRECT_PIECES:
        segs = [np.arange(n) for n in sizes]
    else:
        anchors = anchors if anchors is not None else [()] * g_count
        segs = [_initial_segments(f, a) for f, a in zip(funcs, anchors)]
    best, best_lam, primal_best = np.inf, np.zeros(g_count), -np.inf
    b = power = None
    lp_ok, rounds = True, 0
    while rounds < _MAX_ROUNDS:
        rounds += 1
        out = _solve_master(funcs, segs, wrows, totals, lower)
        if out is None:
            lp_ok = False
            break
        b, power, h, duals = out
        # GLOP reports the multipliers of the rows `P_g - (W b)_g <= 0` as >= 0; any lam >= 0
        # is valid, so the clip only guards against round-off.
        lam = np.maximum(duals, 0.0)
        value = dual_bound(funcs, wrows, totals, lam)
        if value < best:
            best, best_lam = value, lam
        reach = np.einsum("gtm,tm->g", wrows, np.maximum(b, 0.0))
        primal = sum(f(max(min(p, r), lo)) for f, p, r, lo in zip(funcs, power, reach, lower))
        primal_best = max(primal_best, primal)
        if best - primal_best <= _CONVERGED_RTOL * max(1.0, abs(best)):
            break
        # Cuts the master's point violates (its h above the true f): add the segments there.
        added = False
        for g, f in enumerate(funcs):
            if h[g] > f(power[g]) + 1e-9 * max(1.0, abs(h[g])):
                new = np.setdiff1d(_segments_at(f, power[g], width=3), segs[g])
                if new.size:
                    segs[g] = np.union1d(segs[g], new)
                    added = True
        if not added:  # the master's optimum violates no segment: the full LP is solved
            break
    if not np.isfinite(best):  # no LP solution at all: lam = 0, every point attacked
        best = dual_bound(funcs, wrows, totals, best_lam)
    # Solved = the rigorous bound meets the value of a feasible primal point (a wrong LP answer
    # cannot pass this check; it only leaves a looser, still valid bound).
    converged = lp_ok and best - primal_best <= _VERIFIED_RTOL * max(1.0, abs(best))
    return Relaxation(best, b, power, best_lam, bool(converged), lp_ok, rounds)


# The ordered formulation: per group binaries (here [0, 1]) z_g1 >= ... >= z_gL (z_gi = 1: the
# outputs at level i are attacked), maximize sum c_gi z_gi s.t. (W b)_g >= sum_i dE_gi z_gi.
class OrderedModel(NamedTuple):
    """The ordered formulation as sparse data for `fill_model_from_sparse_data`.

    Fields: var_lo, var_hi, objective float64 [nb + Z] (variables: spends b [T*M], then z [Z]
    group by group); row_lo, row_hi float64 [rows]; matrix csr [rows, nb + Z]. Rows: budgets
    [T], links [G] (`(W b)_g - sum_i dE_gi z_gi >= 0`, at `T + g`), ordering, then one per
    `top_rows` entry (last). first int64 [G]: index (within z) of each group's first level.
    """

    var_lo: np.ndarray
    var_hi: np.ndarray
    objective: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    matrix: sp.csr_matrix
    first: np.ndarray

    def data(self):
        return self.var_lo, self.var_hi, self.objective, self.row_lo, self.row_hi, self.matrix


def ordered_model(levels, weights, totals, top_rows=()) -> OrderedModel:
    """The ordered formulation over `levels` (>= 1 group), z in [0, 1].

    Args:
      levels: `_levels.Level` list; weights float64 [T, K, M]; totals float64 [T].
      top_rows: valid inequalities `sum_{g in S} z_g,top <= kappa` as (S, kappa) pairs (at most
        kappa groups of S, indices into `levels`, reach their top level in any attack; `_clique`,
        `milp._kappa`).
    """
    totals = np.asarray(totals, np.float64)
    t_count, _, m_count = weights.shape
    nb = t_count * m_count
    sizes = np.array([lv.eta.size for lv in levels])
    g_count, n_z = sizes.size, int(sizes.sum())
    owner = np.repeat(np.arange(g_count), sizes)
    z = nb + np.arange(n_z)
    deltas = np.concatenate([np.diff(np.concatenate([[0.0], lv.eta])) for lv in levels])
    objective = np.concatenate([np.zeros(nb), np.concatenate([lv.count for lv in levels])])
    # Rows: budgets [T]; per group (W b)_g - sum_i delta_gi z_gi >= 0 [G]; z_i - z_{i+1} >= 0.
    w = np.stack([weights[:, lv.group, :].reshape(-1) for lv in levels])  # [G, nb]
    gi, bi = np.nonzero(w)
    first = np.cumsum(np.r_[0, sizes[:-1]])
    not_last = np.ones(n_z, bool)
    not_last[first + sizes - 1] = False
    order_idx = np.flatnonzero(not_last)
    n_order = order_idx.size
    order_rows = t_count + g_count + np.arange(n_order)
    rows = np.concatenate([
        np.repeat(np.arange(t_count), m_count),
        t_count + gi, t_count + owner,
        order_rows, order_rows,
    ])  # fmt: skip
    cols = np.concatenate([np.arange(nb), bi, z, z[order_idx], z[order_idx + 1]])
    vals = np.concatenate([
        np.ones(nb), w[gi, bi], -deltas, np.ones(n_order), -np.ones(n_order)
    ])  # fmt: skip
    n_rows = t_count + g_count + n_order
    kappas = []
    for members, kappa in top_rows:
        members = np.asarray(members, np.int64)
        rows = np.concatenate([rows, np.full(members.size, n_rows)])
        cols = np.concatenate([cols, z[first[members] + sizes[members] - 1]])
        vals = np.concatenate([vals, np.ones(members.size)])
        kappas.append(float(kappa))
        n_rows += 1
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, nb + n_z))
    row_lo = np.concatenate([
        np.full(t_count, -np.inf), np.zeros(g_count + n_order), np.full(len(kappas), -np.inf)
    ])  # fmt: skip
    row_hi = np.concatenate([totals, np.full(g_count + n_order, np.inf), kappas])
    var_lo = np.zeros(nb + n_z)
    var_hi = np.concatenate([np.repeat(totals, m_count), np.ones(n_z)])
    return OrderedModel(var_lo, var_hi, objective, row_lo, row_hi, matrix, first)
