"""Exact collective MILP by branch and bound over per-group attack levels (SPEC 6).

The exact problem: choose one level `i_g` per group (attack the outputs with `eta <= E_{g,i_g}`)
maximizing `sum_g C_{g,i_g}`, subject to a feasible spend: some `b >= 0` with
`sum_j b[t, j] <= total_t` and `(W b)_{k_g} >= E_{g,i_g}` for every g.

A node restricts every group to a range of levels `lo_g..hi_g`. Its relaxation is the hull LP of
`_relax` over the points `lo_g..hi_g` with `P_g >= E_{g,lo_g}`; the node's bound is the rigorous
Lagrangian bound `U(lam)` (float64, independent of GLOP's tolerances), so a node is pruned only
when it provably holds no attack larger than the best one found. Attacks found are genuine: they
are counted from the LP's spend `b` after clipping it into the budget (`_levels.attack_of`).
Children split one group's range where the LP solution sits strictly inside a hull segment;
reduced-cost fixing with the node's multipliers narrows every range before branching.
The answer is exact when the search finishes (`optimal`); at a deadline `bound` is the largest
bound of any open node (never the incumbent), so `|T| - floor(bound)` stays a certificate.
"""

from __future__ import annotations

import heapq
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from lrsjax.collective import _levels, _relax

_GAP = 1e-9


class MilpOutcome(NamedTuple):
    """Result of one exact solve.

    Fields:
      attack: int, the largest attack found (outputs one feasible spend flips; at a leaf whose LP
        is feasible up to GLOP's tolerance it is claimed without recounting, which can only
        over-state the attack).
      bound: float, a proven upper bound on the largest attack (== attack when optimal).
      b: float64 [T, M] the genuine spend of the largest attack counted from a spend (None if
        none was found).
      optimal: bool, True when `floor(bound + tol) <= attack` (the search finished).
      nodes: int, nodes whose LP was solved.
      failed: bool, True when the search stopped because a node LP failed or did not verify
        (GLOP trouble); `bound` is then still a proven bound.
    """

    attack: int
    bound: float
    b: np.ndarray | None
    optimal: bool
    nodes: int
    failed: bool = False


class _Unreliable(Exception):
    """A node LP failed or gave an answer that does not verify; carries the node's bound."""

    def __init__(self, bound: float):
        super().__init__(bound)
        self.bound = bound


def _proves(bound: float, attack: int, tol: float) -> bool:
    return np.floor(bound + tol) <= attack


class _Search:
    def __init__(self, levels, weights, totals, tol):
        self.levels = levels
        self.weights = weights
        self.totals = np.asarray(totals, np.float64)
        self.tol = tol
        self.wrows = np.stack([weights[:, lv.group, :] for lv in levels])  # [G, T, M]
        self.points = [lv.points for lv in levels]
        self.cache: dict = {}
        self.best = 0
        self.best_b = None
        self.nodes = 0

    def func(self, g, lo, hi) -> _relax.Concave:
        key = (g, lo, hi)
        f = self.cache.get(key)
        if f is None:
            px, py = self.points[g]
            px, py = px[lo : hi + 1], py[lo : hi + 1]
            f = _relax.hull_function(px, py)
            self.cache[key] = f
        return f

    def offer(self, b) -> None:
        if b is None:
            return
        value, feasible = _levels.attack_of(self.levels, self.weights, self.totals, b)
        if value > self.best:
            self.best, self.best_b = value, feasible

    def infeasible(self, lower: np.ndarray, funcs) -> bool:
        """True if no spend reaches `lower` (rigorous: a multiplier with U(lam) below `best`)."""
        g_count, t_count, m_count = self.wrows.shape
        # max sum_g y_g lower_g - sum_t total_t v_t  s.t.  sum_g y_g W[t,k_g,j] <= v_t, y in [0,1]
        w = self.wrows.transpose(1, 2, 0).reshape(t_count * m_count, g_count)
        v_cols = np.repeat(np.arange(t_count), m_count)
        matrix = sp.hstack([sp.csr_matrix(w), sp.csr_matrix(
            (-np.ones(t_count * m_count), (np.arange(t_count * m_count), v_cols)),
            shape=(t_count * m_count, t_count),
        )]).tocsr()  # fmt: skip
        solver = _relax.glop_maximize(
            np.zeros(g_count + t_count),
            np.concatenate([np.ones(g_count), np.full(t_count, np.inf)]),
            np.concatenate([lower, -self.totals]),
            np.full(t_count * m_count, -np.inf),
            np.zeros(t_count * m_count),
            matrix,
        )
        if solver is None:
            return False
        y = np.clip(np.asarray(solver.variable_values())[:g_count], 0.0, 1.0)
        per_region = np.einsum("g,gtm->tm", y, self.wrows)
        margin = float(y @ lower - np.sum(self.totals * np.maximum(0.0, per_region.max(axis=1))))
        if margin <= 1e-9 * (1.0 + float(y @ lower)):
            return False
        top = sum(float(f.py.max()) for f in funcs)
        scale = (top - self.best + 2.0) / margin
        return _proves(_relax.dual_bound(funcs, self.wrows, self.totals, scale * y), self.best,
                       self.tol)  # fmt: skip

    def process(self, lo, hi, parent_bound):
        """Solves a node; returns None (pruned) or (bound, lo, hi, power)."""
        g_count = len(self.levels)
        funcs = [self.func(g, lo[g], hi[g]) for g in range(g_count)]
        lower = np.array([self.points[g][0][lo[g]] for g in range(g_count)])
        self.nodes += 1
        rel = _relax.solve_relaxation(funcs, self.wrows, self.totals, lower=lower)
        if not rel.lp_ok and self.infeasible(lower, funcs):
            return None
        if not rel.converged:
            # The LP failed or its answer cannot be verified: stop searching (the caller reports
            # the largest proven bound, this node's included).
            raise _Unreliable(min(parent_bound, rel.bound))
        self.offer(rel.b)
        bound = min(rel.bound, parent_bound)
        if _proves(bound, self.best, self.tol):
            return None
        # Reduced-cost fixing: level i of group g can beat `best` only if
        # U - phi_g(lam_g) + (C_i - lam_g E_i) > best.
        lam = np.maximum(rel.lam, 0.0)
        lo, hi = list(lo), list(hi)
        for g in range(g_count):
            px, py = self.points[g]
            values = py[lo[g] : hi[g] + 1] - lam[g] * px[lo[g] : hi[g] + 1]
            keep = np.flatnonzero(
                np.floor(rel.bound - values.max() + values + self.tol) > self.best
            )
            if keep.size == 0:
                return None
            lo[g], hi[g] = lo[g] + int(keep[0]), lo[g] + int(keep[-1])
        return (bound, lo, hi, rel.power)

    def children(self, lo, hi, power):
        g_count = len(self.levels)
        choice, best_gap = None, _GAP
        if power is not None:
            for g in range(g_count):
                if lo[g] == hi[g]:
                    continue
                px, py = self.points[g]
                p = max(power[g], px[lo[g]])
                j = int(np.searchsorted(px, p * (1 + _levels.TIE_RTOL), side="right")) - 1
                j = min(max(j, lo[g]), hi[g])
                if j == hi[g]:
                    continue
                gap = self.func(g, lo[g], hi[g])(p) - py[j]
                if gap > best_gap:
                    choice, best_gap = (g, j), gap
        if choice is None:  # LP point integral (or unknown): split the widest range in half
            widths = [hi[g] - lo[g] for g in range(g_count)]
            g = int(np.argmax(widths))
            if widths[g] == 0:
                return []
            choice = (g, (lo[g] + hi[g]) // 2)
        g, j = choice
        left_hi, right_lo = list(hi), list(lo)
        left_hi[g], right_lo[g] = j, j + 1
        return [(list(lo), left_hi), (right_lo, list(hi))]


def branch_and_bound(
    levels,
    weights,
    totals,
    *,
    tol: float,
    incumbents=(),
    deadline: float | None = None,
    stop=None,
) -> MilpOutcome:
    """The exact largest attack over `levels` (already naive-filtered) for budget `totals`.

    Args:
      levels: list of `_levels.Level` (G >= 1 groups, reachable levels only).
      weights: float64 [T, K, M]. totals: float64 [T].
      tol: rounding slack of the certificate (a bound B proves `attack` when floor(B + tol) <=
        attack).
      incumbents: spends `b [T, M]` to start from (e.g. attacks at smaller budgets).
      deadline: `time.perf_counter()` value at which to stop with the best proven bound.
      stop: optional callable; when it returns True the search stops as at the deadline (e.g.
        another solver running beside it has finished).
    """
    search = _Search(levels, weights, totals, tol)
    for b in incumbents:
        search.offer(b)
    top = float(sum(lv.cumulative[-1] for lv in levels))
    heap, counter = [], 0
    failed_bound = None
    try:
        root = search.process([0] * len(levels), [lv.eta.size for lv in levels], top)
        if root is not None:
            heap.append((-root[0], counter, root))
        while heap:
            if deadline is not None and time.perf_counter() > deadline:
                break
            if stop is not None and stop():
                break
            _, _, node = heapq.heappop(heap)
            bound, lo, hi, power = node
            if _proves(bound, search.best, tol):
                continue
            kids = search.children(lo, hi, power)
            if not kids:  # one level vector left and its LP is feasible: it is an attack
                value = int(sum(search.points[g][1][lo[g]] for g in range(len(lo))))
                search.best = max(search.best, value)
                continue
            for kid_lo, kid_hi in kids:
                try:
                    child = search.process(kid_lo, kid_hi, bound)
                except _Unreliable:
                    heapq.heappush(heap, (-node[0], counter, node))  # the parent stays open
                    raise
                if child is not None:
                    counter += 1
                    heapq.heappush(heap, (-child[0], counter, child))
    except _Unreliable as error:
        failed_bound = error.bound
    open_bound = max((-item[0] for item in heap), default=-np.inf)
    if failed_bound is not None:
        open_bound = max(open_bound, failed_bound)
    bound = max(float(search.best), open_bound)
    return MilpOutcome(
        attack=int(search.best),
        bound=bound,
        b=search.best_b,
        optimal=_proves(bound, search.best, tol),
        nodes=search.nodes,
        failed=failed_bound is not None,
    )
