"""Exact collective MILP by branch and bound over per-group attack levels (docs/math.md 6).

The exact problem: choose one level `i_g` per group (attack the outputs with `eta <= E_{g,i_g}`)
maximizing `sum_g C_{g,i_g}`, subject to a feasible spend: some `b >= 0` with
`sum_j b[t, j] <= total_t` and `(W b)_{k_g} >= E_{g,i_g}` for every g.

A node restricts every group to a range of levels `lo_g..hi_g`. Its relaxation is the hull LP of
`_relax` over the points `lo_g..hi_g` with `P_g >= E_{g,lo_g}`, written as a multiple-choice LP
(one weight `u_gi` per level, `sum_i u_gi <= 1`, `= 1` when `lo_g > 0`, `sum_i E_gi u_gi <=
(W b)_g`; its optimum is the concave hull), optionally with the top-level rows of `_clique`
(`sum_{g in S} u_{g,top} <= kappa`). One GLOP model serves every node after the first
`MilpOptions.cold_nodes` (which are solved from scratch by `_relax.solve_relaxation`, cheaper
than building the model for short searches): a node only changes variable and row bounds, so
GLOP starts from the previous node's basis (`_NodeModel`). The node's
bound is the rigorous Lagrangian bound `U(lam, mu)` (float64, independent of GLOP's tolerances),
so a node is pruned only when it provably holds no attack larger than the best one found; a node
LP that does not verify is solved again from scratch (`_relax.solve_relaxation`). Attacks found
are genuine: counted from the LP's spend `b` after clipping it into the budget.

Search: best bound first, with plunging (after branching, the better child is processed next,
which keeps GLOP's warm start cheap) and pseudocost branching: among the groups whose LP point
sits strictly inside a hull segment, the one whose past splits lowered the bound most per unit of
that gap, on both sides. Reduced-cost fixing with the node's multipliers narrows every range
before branching. The answer is exact when the search finishes (`optimal`); at a deadline
`bound` is the largest bound of any open node (never the incumbent), so `|T| - floor(bound)`
stays a certificate.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from ortools.linear_solver import linear_solver_pb2, pywraplp

from lrsjax.collective import _clique, _levels, _relax
from lrsjax.collective.milp import _search
from lrsjax.collective.milp._options import MilpOptions

_GAP = 1e-9
# Warm starts after bound changes: the dual simplex, and no presolve (it would hide the basis).
_GLOP_PARAMS = "use_preprocessing: false use_dual_simplex: true"
_VERIFIED_RTOL = 1e-6  # a node LP is trusted when U(lam, mu) meets its objective this well


class BnbOutcome(NamedTuple):
    """Result of one branch and bound.

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


class _NodeModel:
    """The multiple-choice LP of the module docstring in one GLOP model; nodes change bounds only.

    Variables: b [T, M] in [0, total_t], and a column u_gi in [0, 1] for each level i >= 1 in
    the pool (upper bound 0 while outside the node's range). Rows: budgets [T], choice [G]
    (`sum_i u_gi <= 1`, lower bound 1 when `lo_g > 0`), links [G] (`sum_i E_gi u_gi - (W b)_g
    <= 0`), then one per top row.

    Column generation: the pool starts with the given levels (`_Search.model`: every group's
    upper-hull vertices) and grows by `add` with the levels whose Lagrangian terms show a
    positive reduced cost (`_Search._warm`) and, when the pool's LP is infeasible, with the
    forced groups' lowest levels (`solve`); GLOP's time per solve grows with the columns, and a
    search uses a fraction of all levels (the 24 x 64 benchmark's eps 0.05: 351 of 957 pooled,
    213 ever used by an LP optimum).
    """

    def __init__(self, table: _levels.LevelTable, wrows, totals, top_rows=(), pool=None):
        self.table = table
        self.wrows = wrows
        g_count, t_count, m_count = wrows.shape
        solver = pywraplp.Solver.CreateSolver("GLOP")
        solver.SetSolverSpecificParametersAsString(_GLOP_PARAMS)
        self.solver = solver
        inf = solver.infinity()
        self.b = [[solver.NumVar(0.0, float(totals[t]), "") for _ in range(m_count)]
                  for t in range(t_count)]  # fmt: skip
        self.b_shape = (t_count, m_count)
        for t in range(t_count):
            row = solver.Constraint(-inf, float(totals[t]))
            for var in self.b[t]:
                row.SetCoefficient(var, 1.0)
        self.choice = [solver.Constraint(-inf, 1.0) for _ in range(g_count)]
        self.links = []
        for g in range(g_count):
            row = solver.Constraint(-inf, 0.0)
            for t in range(t_count):
                for j, var in enumerate(self.b[t]):
                    if wrows[g, t, j] != 0.0:
                        row.SetCoefficient(var, -float(wrows[g, t, j]))
            self.links.append(row)
        self.top_rows = tuple(top_rows)
        self.rows = [solver.Constraint(-inf, float(kappa)) for _, kappa in self.top_rows]
        self.objective = solver.Objective()
        self.objective.SetMaximization()
        self.pooled = np.zeros(table.E.shape, bool)
        self.columns: list = []  # pywraplp variables, in the order of col_g / col_i
        self._col_g: list = []
        self._col_i: list = []
        self.col_g = self.col_i = np.zeros(0, np.int64)
        self.col_e = np.zeros(0)
        self.col_open = np.zeros(0, bool)  # upper bound 1 (inside the node's range)
        self.forced = np.zeros(g_count, bool)  # choice row lower bound 1
        if pool is None:
            pool = np.isfinite(table.E)
        self.add(np.argwhere(pool & (np.arange(table.E.shape[1]) > 0)[None, :]))

    def add(self, pairs) -> None:
        """Adds the columns u_gi for the (g, i) pairs (i >= 1) not yet in the pool, closed."""
        table = self.table
        for g, i in pairs:
            g, i = int(g), int(i)
            if i < 1 or self.pooled[g, i]:
                continue
            var = self.solver.NumVar(0.0, 0.0, "")
            self.choice[g].SetCoefficient(var, 1.0)
            self.links[g].SetCoefficient(var, float(table.E[g, i]))
            if i == table.n[g]:
                for row, (members, _) in zip(self.rows, self.top_rows):
                    if g in members:
                        row.SetCoefficient(var, 1.0)
            self.objective.SetCoefficient(var, float(table.C[g, i]))
            self.pooled[g, i] = True
            self.columns.append(var)
            self._col_g.append(g)
            self._col_i.append(i)
        if len(self._col_g) != self.col_g.size:
            self.col_g = np.asarray(self._col_g, np.int64)
            self.col_i = np.asarray(self._col_i, np.int64)
            self.col_e = table.E[self.col_g, self.col_i]
            self.col_open = np.concatenate(
                [self.col_open, np.zeros(self.col_g.size - self.col_open.size, bool)]
            )

    def solve(self, lo, hi):
        """(lam [G], mu [rows], b [T, M], power [G], objective) of the node over the pool, or
        the status string "INFEASIBLE" / "FAILED" (not optimal, or non-finite numbers)."""
        lo, hi = np.asarray(lo), np.asarray(hi)
        forced = lo > 0
        status = self._solve(lo, hi, forced)
        if status == pywraplp.Solver.INFEASIBLE:
            # Infeasible over the pool; with each forced group's lowest level in it, the
            # restricted LP is feasible exactly when the full one is.
            missing = np.flatnonzero(forced & ~self.pooled[np.arange(lo.size), lo])
            if missing.size:
                self.add(np.stack([missing, lo[missing]], axis=1))
                status = self._solve(lo, hi, forced)
        if status == pywraplp.Solver.INFEASIBLE:
            return "INFEASIBLE"
        if status != pywraplp.Solver.OPTIMAL:
            return "FAILED"
        # One call for every value and dual (variables: b, then the pool's columns; rows:
        # budgets, choice, links, top rows).
        response = linear_solver_pb2.MPSolutionResponse()
        self.solver.FillSolutionResponseProto(response)
        x = np.asarray(response.variable_value, np.float64)
        y = np.asarray(response.dual_value, np.float64)
        g_count, t_count = len(self.links), len(self.b)
        nb = t_count * self.b_shape[1]
        if x.size != nb + self.col_g.size or y.size != t_count + 2 * g_count + len(self.rows):
            return "FAILED"
        # A maximization's `<=` rows have duals >= 0 (up to round-off; any lam >= 0 is valid).
        lam = y[t_count + g_count : t_count + 2 * g_count]
        mu = y[t_count + 2 * g_count :]
        b = x[:nb].reshape(self.b_shape)
        power = np.bincount(self.col_g, self.col_e * x[nb:], minlength=g_count)  # sum E_gi u_gi
        objective = float(response.objective_value)
        if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(objective)):
            return "FAILED"
        return np.maximum(lam, 0.0), np.maximum(mu, 0.0), b, power, float(objective)

    def _solve(self, lo, hi, forced):
        """Opens the pool's columns in the node's range, forces the choice rows, solves."""
        want = (self.col_i >= lo[self.col_g]) & (self.col_i <= hi[self.col_g])
        for k in np.flatnonzero(want != self.col_open):
            self.columns[k].SetUb(1.0 if want[k] else 0.0)
        self.col_open = want
        for g in np.flatnonzero(forced != self.forced):
            self.choice[g].SetLb(1.0 if forced[g] else -self.solver.infinity())
        self.forced = forced
        return self.solver.Solve()


class _Incumbent:
    """The largest attack found (shared by the workers of one search): value, and the genuine
    spend `b` of the largest attack counted from a spend (None if none)."""

    def __init__(self):
        self.value = 0
        self.b = None
        self._lock = threading.Lock()

    def offer(self, value: int, b=None) -> None:
        with self._lock:
            if value > self.value:
                self.value = value
                if b is not None:
                    self.b = b


class _Search:
    def __init__(self, levels, weights, totals, tol, top_rows=(), incumbent=None, options=None):
        self.options = MilpOptions() if options is None else options
        self.levels = levels
        self.weights = weights
        self.totals = np.asarray(totals, np.float64)
        self.tol = tol
        self.wrows = np.stack([weights[:, lv.group, :] for lv in levels])  # [G, T, M]
        self.wflat = self.wrows.reshape(len(levels), -1)  # [G, T * M]
        self.points = [lv.points for lv in levels]
        self.table = _levels.LevelTable.of(levels)
        self.top_rows = tuple(top_rows)
        self._model = None
        self.cache: dict = {}
        self.incumbent = _Incumbent() if incumbent is None else incumbent
        self.nodes = 0
        # Pseudocosts: bound decrease per unit of branching gap, [G, 2] (down, up) sums/counts.
        self.pseudo = np.zeros((len(levels), 2))
        self.pseudo_n = np.zeros((len(levels), 2))

    @property
    def best(self) -> int:
        return self.incumbent.value

    @property
    def best_b(self):
        return self.incumbent.b

    def sibling(self) -> _Search:
        """A second worker on the same tree: same incumbent and pseudocosts (updates from
        either thread are heuristics, races only blur them), its own GLOP model and caches."""
        other = _Search(self.levels, self.weights, self.totals, self.tol, self.top_rows,
                        self.incumbent, self.options)  # fmt: skip
        other.pseudo, other.pseudo_n = self.pseudo, self.pseudo_n
        return other

    @property
    def model(self) -> _NodeModel:
        if self._model is None:
            # The initial pool: each group's upper-hull vertices (more join on demand).
            pool = np.zeros(self.table.E.shape, bool)
            for g, (px, py) in enumerate(self.points):
                pool[g, _relax.upper_hull(px, py)] = True
            self._model = _NodeModel(self.table, self.wrows, self.totals, self.top_rows, pool)
        return self._model

    def _warm(self, lo, hi):
        """The node LP on the warm model, with column generation: (out, values), `out` as
        `_NodeModel.solve` answers, `values` the verified `self.values` of its multipliers, or
        None when the answer is not a tuple or does not verify within `options.pool_rounds`
        solves.

        A restricted LP's multipliers are optimal for the full node LP iff no level has a
        positive reduced cost, i.e. iff U(lam, mu), whose terms run over every level in range,
        meets the LP's objective; otherwise the levels whose terms beat their group's pooled
        best join the pool and the LP is solved again."""
        model = self.model
        out = None
        for _ in range(self.options.pool_rounds):
            out = model.solve(lo, hi)
            if not isinstance(out, tuple):
                return out, None
            lam, mu, _, _, objective = out
            values = self.values(lam, mu, lo, hi)
            if values[0] - objective <= _VERIFIED_RTOL * max(1.0, abs(values[0])):
                return out, values
            terms = values[1]
            avail = model.pooled.copy()
            avail[:, 0] = True  # level 0 is the choice row's slack
            have = np.where(avail, terms, -np.inf).max(axis=1)
            grow = np.flatnonzero(values[2] > have + _VERIFIED_RTOL * max(1.0, abs(values[0])))
            if grow.size == 0:
                break
            model.add(np.stack([grow, terms[grow].argmax(axis=1)], axis=1))
        return out, None

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
        feasible = _levels.feasible_spend(b, self.totals)
        value = self.table.attacked(self.wflat @ feasible.reshape(-1))
        if value > self.incumbent.value:
            self.incumbent.offer(value, feasible)

    def values(self, lam, mu, lo, hi):
        """(U(lam, mu), per-level terms [G, L + 1] (-inf outside the node's ranges), their
        per-group maxima [G]): `_clique.lagrangian` over the node's ranges."""
        return _clique.lagrangian(self.table, self.wrows, self.totals, lam, self.top_rows, mu,
                                  lo, hi)  # fmt: skip

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

    def _cold(self, lo, hi, lower):
        """The node's hull LP solved from scratch (`_relax.solve_relaxation`, no top rows):
        (lam, mu = 0, b, power), None when infeasible; raises `_Unreliable` when it fails."""
        funcs = [self.func(g, lo[g], hi[g]) for g in range(len(self.levels))]
        rel = _relax.solve_relaxation(funcs, self.wrows, self.totals, lower=lower)
        if not rel.lp_ok and self.infeasible(lower, funcs):
            return None
        if not rel.converged:
            # The LP failed or its answer cannot be verified: stop searching (the caller reports
            # the largest proven bound, this node's included).
            raise _Unreliable(rel.bound)
        return rel.lam, np.zeros(len(self.top_rows)), rel.b, rel.power

    def process(self, lo, hi, parent_bound):
        """Solves a node; returns None (pruned) or (bound, lo, hi, power, lam, best_terms) with
        the node's (unclipped) bound first and each group's largest Lagrangian term (`values`;
        reduced-cost fixing keeps the level that attains it)."""
        g_count = len(self.levels)
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        lower = self.table.E[np.arange(g_count), lo]
        self.nodes += 1
        solved, values, out = None, None, None
        if self.nodes <= self.options.cold_nodes:
            try:
                solved = self._cold(lo, hi, lower)
            except _Unreliable:
                out, values = self._warm(lo, hi)  # the warm model may still succeed
            else:
                if solved is None:
                    return None
        else:
            out, values = self._warm(lo, hi)
        if values is not None:
            solved = out[:4]
        elif out == "INFEASIBLE":
            funcs = [self.func(g, lo[g], hi[g]) for g in range(g_count)]
            if self.infeasible(lower, funcs):
                return None
        if solved is None:  # not verified (or infeasibility not proven): from scratch
            try:
                solved = self._cold(lo, hi, lower)
            except _Unreliable as error:
                raise _Unreliable(min(error.bound, parent_bound)) from None
            if solved is None:
                return None
        lam, mu, b, power = solved
        self.offer(b)
        node_bound, terms, best_terms = values or self.values(lam, mu, lo, hi)
        if _proves(min(node_bound, parent_bound), self.best, self.tol):
            return None
        # Reduced-cost fixing: level i of group g can beat `best` only if
        # U - max_i' term_gi' + term_gi > best.
        keep = np.floor(node_bound - best_terms[:, None] + terms + self.tol) > self.best
        if not np.all(keep.any(axis=1)):
            return None
        width = keep.shape[1]
        lo = keep.argmax(axis=1)
        hi = width - 1 - keep[:, ::-1].argmax(axis=1)
        return (node_bound, lo, hi, power, lam, best_terms)

    def gaps(self, lo, hi, power, lam, best_terms):
        """(j [G], gap [G], candidate bool [G]): the level j each group's LP point reaches
        within its range, how far the LP's value lies above that level's count there (the hull
        value is max_i term_i + lam p by complementary slackness), and whether splitting the
        range after j cuts the LP point off."""
        table = self.table
        rows = np.arange(len(self.levels))
        p = np.clip(power, table.E[rows, lo], table.E[rows, hi])
        j = (table.in_range(lo, hi) & (table.E <= (p * (1 + _levels.TIE_RTOL))[:, None])).sum(1)
        j = np.clip(lo + j - 1, lo, hi)
        gap = best_terms + lam * p - table.C[rows, j]
        return j, gap, (j < hi) & (lo < hi) & (gap > _GAP)

    def score(self, gap, candidate) -> np.ndarray:
        """Pseudocost scores (product of the expected bound decreases of both children; groups
        never split use the average over all groups); -inf for non-candidates."""
        counts = self.pseudo_n
        seen = counts > 0
        fallback = self.pseudo[seen].sum() / counts[seen].sum() if seen.any() else 1.0
        mean = np.where(seen, self.pseudo / np.maximum(counts, 1.0), fallback)
        score = np.maximum(mean[:, 0] * gap, 1e-6) * np.maximum(mean[:, 1] * gap, 1e-6)
        return np.where(candidate, score, -np.inf)

    @staticmethod
    def split(lo, hi, g, j):
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[g], right_lo[g] = j, j + 1
        return [(lo.copy(), left_hi), (right_lo, hi.copy())]

    def expand(self, node):
        """The children of `node` (`process`'s tuple) that survive, each with its
        bound clipped by the parent's; None when `node` is a single level vector (a leaf).

        Branching: reliability branching on pseudocosts. Candidate groups (largest gap first,
        at most `options.strong_candidates`) whose splits were seen fewer than
        `options.reliable` times on a side are split tentatively (both children solved: strong
        branching), which seeds their pseudocosts; then the best-scored group is split (its
        children reused if solved)."""
        bound, lo, hi, power, lam, best_terms = node
        j, gap, candidate = self.gaps(lo, hi, power, lam, best_terms)
        solved = {}
        if candidate.any():
            unreliable = candidate & (self.pseudo_n.min(axis=1) < self.options.reliable)
            order = [g for g in np.argsort(-gap, kind="stable") if unreliable[g]]
            for g in order[: self.options.strong_candidates]:
                solved[g] = self._children(bound, self.split(lo, hi, g, j[g]), (g, gap[g]))
                if not solved[g]:  # both halves of the node proven: so is the node
                    return []
            g = int(np.argmax(self.score(gap, candidate)))
            kids = self.split(lo, hi, g, j[g])
            choice = (g, gap[g])
        else:  # LP point integral (or unknown): split the widest range in half
            widths = hi - lo
            g = int(np.argmax(widths))
            if widths[g] == 0:
                return None
            kids = self.split(lo, hi, g, (lo[g] + hi[g]) // 2)
            choice = (g, 0.0)
        if g in solved:
            return solved[g]
        return self._children(bound, kids, choice)

    def _children(self, bound, kids, choice):
        """Solves both `kids` of a node with bound `bound`, records the bound decrease per unit
        of gap of the split `choice = (g, gap)` as pseudocosts; returns the surviving ones."""
        g, gap = choice
        made = []
        for side, (kid_lo, kid_hi) in enumerate(kids):
            child = self.process(kid_lo, kid_hi, bound)
            child_bound = self.best if child is None else min(child[0], bound)
            if gap > _GAP:
                self.pseudo[g, side] += max(bound - child_bound, 0.0) / gap
                self.pseudo_n[g, side] += 1
            if child is not None:
                made.append((child_bound, *child[1:]))
        return made


def branch_and_bound(
    levels,
    weights,
    totals,
    *,
    tol: float,
    incumbents=(),
    deadline: float | None = None,
    stop=None,
    top_rows=(),
    workers: int = 1,
    helpers_until: float | None = None,
    options: MilpOptions | None = None,
) -> BnbOutcome:
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
      top_rows: valid rows `(S, kappa)` on the groups' top levels (`_kappa.top_rows`; one
        budget type only), added to every node LP.
      workers: threads that search the same tree (`_search.tree_search`: one frontier of open
        nodes, one incumbent, one set of pseudocosts; each thread has its own GLOP model).
      helpers_until: `time.perf_counter()` value after which only the calling thread searches
        on (the others return their nodes to the frontier and stop), e.g. to make room for SCIP.
      options: `MilpOptions` (cold nodes, pool rounds, branching); None: the defaults.
    """
    incumbent = _Incumbent()
    searches = [_Search(levels, weights, totals, tol, top_rows, incumbent, options)]
    for _ in range(1, max(int(workers), 1)):
        searches.append(searches[0].sibling())
    for b in incumbents:
        searches[0].offer(b)
    top = float(sum(lv.cumulative[-1] for lv in levels))
    failed = []  # bounds of nodes whose LP failed (the search stops at the first)
    lock = threading.Lock()

    def expand(w: int, node):
        bound, lo = node[0], node[1]
        if _proves(bound, incumbent.value, tol):
            return []
        search = searches[w]
        try:
            made = search.expand(node)
        except _Unreliable as error:
            with lock:
                failed.append(error.bound)
            return None
        if made is None:  # one level vector left, its LP feasible: an attack
            incumbent.offer(int(sum(search.points[g][1][lo[g]] for g in range(len(lo)))))
            return []
        # Children pruned since they were solved (the incumbent may have grown).
        made = [kid for kid in made if not _proves(kid[0], incumbent.value, tol)]
        made.sort(key=lambda item: -item[0])
        return made

    def stopped() -> bool:
        return (deadline is not None and time.perf_counter() > deadline) or (
            stop is not None and stop()
        )

    def retired(w: int) -> bool:
        return w > 0 and helpers_until is not None and time.perf_counter() > helpers_until

    frontier = _search.Frontier(best_first=True)
    try:
        root = searches[0].process([0] * len(levels), [lv.eta.size for lv in levels], top)
    except _Unreliable as error:
        root = None
        failed.append(error.bound)
    if root is not None:
        frontier.push((min(root[0], top), *root[1:]))
    held = _search.tree_search(frontier, expand, len(searches), stopped=stopped, retired=retired)
    open_bound = max([-np.inf] + [node[0] for node in frontier.nodes() + held] + failed)
    best = incumbent.value
    bound = max(float(best), open_bound)
    return BnbOutcome(
        attack=int(best),
        bound=bound,
        b=incumbent.b,
        optimal=_proves(bound, best, tol),
        nodes=sum(search.nodes for search in searches),
        failed=bool(failed),
    )
