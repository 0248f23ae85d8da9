"""Per-budget solving: naive filter, relaxation or exact MILP, sound rounding (docs/math.md 6).

`Engine` keeps what carries over from one budget to the next: spends of attacks found at
smaller budgets (still feasible, so they seed the MILP's incumbent), the LP's last spends (they
seed the cut loop), and the budgets already certified at 0 (certificates can only shrink as the
budget grows in every type).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from lrsjax.collective import _clique, _levels, _relax, milp

MODES = ("lp", "hull", "milp")
MILP_SOLVERS = tuple(milp.SOLVERS)


class BudgetOutcome(NamedTuple):
    """One budget's numbers (see `CollectiveResult` for the meaning of each field)."""

    certified: int
    naive: int
    attack_bound: float
    attack_found: float
    status: str
    mode_used: str
    solver: str
    seconds: float


def tolerance(remaining: int) -> float:
    """Rounding slack of docs/math.md 6: larger than any solver or float64 error on the bound."""
    return 1e-6 * max(1, remaining)


def certified_count(naive: int, remaining: int, attack_bound: float) -> int:
    """`naive + |T| - floor(U + tol)`, clipped to [naive, naive + |T|] (docs/math.md 6)."""
    attacked = int(np.floor(attack_bound + tolerance(remaining)))
    return naive + remaining - min(remaining, max(attacked, 0))


class _Scaled(NamedTuple):
    """One budget's problem in units the solvers' absolute tolerances suit (exactly equivalent).

    Budget types with total 0 are dropped, the others' spends are divided by their totals
    (`b' = b / total_t`, so `sum_j b'[t, j] <= 1`), and spend and thresholds are multiplied by
    `c = 1 / max_k (largest spend on group k)`: `W' = c total_t W[t]`, `eta' = c eta`, so every
    reachable threshold lies in (0, 1]. Attack counts and bounds are unchanged.

    Fields: active bool [T]; totals float64 [T] (original); c float; weights float64 [T', K, M];
    ones float64 [T'] (the new totals); levels list of `_levels.Level` (scaled thresholds).
    """

    active: np.ndarray
    totals: np.ndarray
    c: float
    weights: np.ndarray
    ones: np.ndarray
    levels: list

    @classmethod
    def of(cls, levels, weights, totals):
        active = totals > 0
        power = _levels.max_power(weights, totals)
        c = 1.0 / float(max(power[lv.group] for lv in levels))
        scaled_w = weights[active] * (totals[active] * c)[:, None, None]
        scaled_levels = [lv._replace(eta=lv.eta * c) for lv in levels]
        return cls(active, totals, c, scaled_w, np.ones(int(active.sum())), scaled_levels)

    def to_scaled(self, b):
        return b[self.active] / self.totals[self.active][:, None]

    def from_scaled(self, b):
        out = np.zeros((self.totals.size, b.shape[1]))
        out[self.active] = b * self.totals[self.active][:, None]
        return out

    def func(self, f: _relax.Concave) -> _relax.Concave:
        return _relax.Concave(f.x * self.c, f.y, f.px * self.c, f.py)


class Engine:
    """Solves one budget at a time for problems that share weights (e.g. one per budget)."""

    def __init__(self, weights, mode, time_limit_s=None, milp_solver="auto", milp_options=None):
        self.weights = weights
        self.mode = mode
        self.time_limit_s = time_limit_s
        self.milp_solver = milp.SOLVERS[milp_solver] if mode == "milp" else None
        self.milp_options = milp.check_options(milp_options)
        self.attacks: list[tuple[np.ndarray, np.ndarray]] = []  # (totals, spend b) found
        self.zero_at: list[np.ndarray] = []  # totals where nothing was certified
        self.last_lp = None  # (totals, {group: P_g}) of the last relaxation solved
        self.hulls: dict = {}  # hull_key -> {group: (x, y, parent)} for prefix hulls

    def _dominated(self, totals, earlier) -> bool:
        return any(np.all(t <= totals) for t in earlier)

    def _funcs(self, levels, kind, hull_key=None):
        if kind == "lp":
            return [_relax.paper_function(lv.eta, lv.count) for lv in levels]
        cached = self.hulls.get(hull_key, {}) if hull_key is not None else {}
        funcs = []
        for lv in levels:
            px, py = lv.points
            if lv.group in cached:
                x, y, parent = cached[lv.group]
                funcs.append(_relax.prefix_hull(x, y, parent, px.size))
            else:
                funcs.append(_relax.hull_function(px, py))
        return funcs

    def prepare_hulls(self, levels, hull_key) -> None:
        """Precomputes prefix-hull parent pointers of the (unfiltered) `levels`: every naive
        filter keeps a prefix of each group's levels, whose hull is then read off in O(size)."""
        table = self.hulls.setdefault(hull_key, {})
        for lv in levels:
            x, y = lv.points
            table[lv.group] = (x, y, _relax.hull_parents(x, y))

    def _relaxation(self, scaled: _Scaled, levels, kind, hull_key=None):
        """The relaxation `kind` of the (unscaled) `levels`, solved in `scaled` units."""
        funcs = [scaled.func(f) for f in self._funcs(levels, kind, hull_key)]
        wrows = np.stack([scaled.weights[:, lv.group, :] for lv in levels])
        anchors = None
        if self.last_lp is not None:
            # The cut loop starts at the last solution and at it scaled with the budget (for one
            # budget type the feasible spends scale exactly with the total).
            old_totals, old_power = self.last_lp
            ratio = float(scaled.totals.sum() / max(old_totals.sum(), 1e-300))
            anchors = [
                (scaled.c * old_power[lv.group], scaled.c * old_power[lv.group] * ratio)
                if lv.group in old_power
                else ()
                for lv in levels
            ]
        rel = _relax.solve_relaxation(funcs, wrows, scaled.ones, anchors=anchors)
        if rel.power is not None:
            power = {lv.group: float(p) / scaled.c for lv, p in zip(levels, rel.power)}
            self.last_lp = (scaled.totals, power)
        return rel, funcs

    @staticmethod
    def _clique(scaled: _Scaled, funcs, rel):
        """The hull bound strengthened by the pairwise clique rows on the top levels
        (`_clique.strengthen`; one budget type), or None."""
        if scaled.weights.shape[0] != 1:
            return None
        wrows = np.stack([scaled.weights[0, lv.group, :] for lv in scaled.levels])
        rows = _clique.top_rows(scaled.levels, wrows)
        return _clique.strengthen(scaled.levels, wrows, rows, funcs, rel)

    def solve_budget(self, levels, num_naive, total_outputs, totals, hull_key=None):
        """Certificate for one budget.

        Args:
          levels: all levels of the problem (`_levels.levels_of`), before the naive filter.
          num_naive: outputs already removed by a naive filter (certified at these totals).
          total_outputs: outputs in `levels` (sum of multiplicities).
          totals: float64 [T] budget totals.
          hull_key: identifies `levels` for the cached prefix hulls (None: no cache).
        """
        start = time.perf_counter()
        totals = np.asarray(totals, np.float64)

        def done(naive, remaining, bound, found, status, used, solver):
            return BudgetOutcome(
                certified_count(naive, remaining, bound), naive, float(bound), float(found),
                status, used, solver, time.perf_counter() - start,
            )  # fmt: skip

        if not np.any(totals > 0):
            # Certified iff (W b)_k < eta with b = 0: every output in the problem (eta > 0).
            return done(num_naive + total_outputs, 0, 0.0, 0.0, "ZERO_BUDGET", "none", "none")
        reach = _levels.reachable(levels, _levels.max_power(self.weights, totals))
        remaining = int(sum(int(lv.cumulative[-1]) for lv in reach))
        naive = num_naive + total_outputs - remaining
        if remaining == 0:
            return done(naive, 0, 0.0, 0.0, "NAIVE_ONLY", "none", "none")
        if self._dominated(totals, self.zero_at):
            # A budget no larger in any type certified nothing: every attack there is feasible
            # here, so nothing is certified here either (certificates shrink as budgets grow).
            return done(naive, remaining, float(remaining), float("nan"), "MONOTONE_ZERO",
                        self.mode, "none")  # fmt: skip
        scaled = _Scaled.of(reach, self.weights, totals)
        if self.mode in ("lp", "hull"):
            rel, funcs = self._relaxation(scaled, reach, self.mode, hull_key)
            status = "OPTIMAL" if (rel.converged and rel.lp_ok) else "DUAL_BOUND"
            strong = None
            if self.mode == "hull":
                strong = self._clique(scaled, funcs, rel)
            if strong is None:
                out = done(naive, remaining, rel.bound, float("nan"), status, self.mode, "GLOP")
            else:
                status = "OPTIMAL" if strong.converged else "DUAL_BOUND"
                out = done(naive, remaining, strong.bound, float("nan"), status, "hull+clique",
                           "GLOP")  # fmt: skip
        else:
            out = self._milp(scaled, reach, naive, remaining, done, hull_key)
        if out.certified == 0:
            self.zero_at.append(totals)
        return out

    def _remember(self, scaled: _Scaled, b_scaled) -> None:
        self.attacks.append((scaled.totals, scaled.from_scaled(b_scaled)))

    def _milp(self, scaled: _Scaled, reach, naive, remaining, done, hull_key):
        """The exact MILP by the registered solver (`milp.SOLVERS`); its attacks seed later
        budgets."""
        deadline = None
        if self.time_limit_s is not None:
            deadline = time.perf_counter() + float(self.time_limit_s)
        # Attacks found at budgets no larger in any type are feasible here: incumbents.
        seeds = [scaled.to_scaled(b) for t, b in self.attacks if np.all(t <= scaled.totals)]
        request = milp.MilpRequest(
            levels=scaled.levels, weights=scaled.weights, totals=scaled.ones,
            tol=tolerance(remaining), incumbents=tuple(seeds[-self.milp_options.seeds :]),
            deadline=deadline, hull=lambda: self._relaxation(scaled, reach, "hull", hull_key),
        )  # fmt: skip
        out = self.milp_solver.solve(request, self.milp_options)
        for b in out.attacks:
            self._remember(scaled, b)
        return done(naive, remaining, out.bound, out.attack, out.status, out.mode_used,
                    out.solver)  # fmt: skip
