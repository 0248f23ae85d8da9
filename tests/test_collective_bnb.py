"""The exact branch and bound (lrsjax.collective.milp._bnb): warm node LPs, top rows, lying LPs."""

import numpy as np
import pytest
from test_collective_clique import _brute_force_attack, _ceiling_certs

from lrsjax.collective import _clique, _levels
from lrsjax.collective.milp import MilpOptions, _bnb, _kappa


def _scaled_problem(certs, weights, eps):
    """(levels, weights [1, G, M], totals [1]) in the units `_clique` assumes: total 1."""
    group = np.asarray(certs.group)
    eta = np.asarray(certs.eta, np.float64)
    w = weights[None] * eps**2
    levels = _levels.levels_of(eta, np.ones(eta.size, np.int64), group)
    levels = _levels.reachable(levels, _levels.max_power(w, np.ones(1)))
    return levels, w, np.ones(1)


def _wrows(levels, w):
    return np.stack([w[0, lv.group, :] for lv in levels])


@pytest.mark.parametrize("cold_nodes", [0, 10**9, MilpOptions().cold_nodes])
def test_branch_and_bound_with_top_rows_equals_brute_force(cold_nodes):
    """The node LPs carry the clique and kappa rows of `_clique`; the search stays exact, and
    the rows lower the root bound on most instances (they are really in the node LPs). Exact
    too when every node is solved from scratch (cold), and with the default switch-over."""
    options = MilpOptions(cold_nodes=cold_nodes)
    rng = np.random.default_rng(11)
    tighter = cases = 0
    for _ in range(10):
        certs, weights, eta, group = _ceiling_certs(rng, groups=4)
        for eps in (1.0, 1.3, 1.6):
            levels, w, ones = _scaled_problem(certs, weights, eps)
            if len(levels) < 2:
                continue
            rows = _kappa.top_rows(levels, _wrows(levels, w), kappa_time_s=5.0)
            exact = _brute_force_attack(weights, eta, group, eps**2)
            res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, options=options)
            assert res.optimal and not res.failed
            assert res.attack == exact, (eps, rows)
            plain = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, options=options)
            assert plain.attack == exact
            if rows and cold_nodes == 0:
                cases += 1
                search = _bnb._Search(levels, w, ones, 1e-6, rows, options=options)
                bare = _bnb._Search(levels, w, ones, 1e-6, options=options)
                top = [lv.eta.size for lv in levels]
                zero = [0] * len(levels)
                with_rows = search.process(zero, top, np.inf)
                without = bare.process(zero, top, np.inf)
                if with_rows is None or without is None or with_rows[0] < without[0] - 1e-6:
                    tighter += 1
    if cold_nodes == 0:
        assert cases >= 10 and tighter >= cases // 2, (tighter, cases)


def _lying(mode):
    """A `_NodeModel.solve` that answers wrongly in one of several ways."""
    real = _bnb._NodeModel.solve

    def solve(self, lo, hi):
        out = real(self, lo, hi)
        if mode == "failed":
            return "FAILED"
        if mode == "infeasible":
            return "INFEASIBLE"
        if not isinstance(out, tuple):
            return out
        lam, mu, b, power, objective = out
        if mode == "zeros":  # multipliers, spend and objective all 0
            return np.zeros_like(lam), np.zeros_like(mu), np.zeros_like(b), power * 0, 0.0
        if mode == "loose":  # valid but poor multipliers, and an objective that "agrees"
            lam = lam * 3.0 + 0.5
            return lam, mu, b, power, objective + 1e9
        if mode == "huge_spend":  # an infeasible spend (must be clipped before counting)
            return lam, mu, b * 1e3, power, objective
        raise AssertionError(mode)

    return solve


@pytest.mark.parametrize("mode", ["failed", "infeasible", "zeros", "loose", "huge_spend"])
def test_lying_node_lps_never_break_exactness(monkeypatch, mode):
    """Whatever the warm node LP answers, the search ends with the exact attack: answers that
    do not verify are solved again from scratch, claimed infeasibility is proven or ignored,
    loose multipliers only give looser (valid) bounds, spends are clipped before counting."""
    monkeypatch.setattr(_bnb._NodeModel, "solve", _lying(mode))
    warm_only = MilpOptions(cold_nodes=0)  # every node through the (lying) warm model
    rng = np.random.default_rng(5)
    for _ in range(4):
        certs, weights, eta, group = _ceiling_certs(rng, groups=3)
        for eps in (1.0, 1.5):
            levels, w, ones = _scaled_problem(certs, weights, eps)
            if not levels:
                continue
            exact = _brute_force_attack(weights, eta, group, eps**2)
            res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, options=warm_only)
            assert res.optimal and not res.failed, mode
            assert res.attack == exact and res.bound >= exact - 1e-6, (mode, res, exact)
            if res.b is not None:
                assert res.b.sum() <= 1.0 + 1e-12 and np.all(res.b >= 0)


def test_vectorized_lagrangian_equals_the_pointwise_one():
    """`_clique.lagrangian` (padded arrays, ranges, top-row penalties) against `_relax.dual_bound`
    on the same points: without rows, over whole and restricted ranges, for random multipliers;
    with rows, lowering the top points by hand gives the same value plus `mu . kappa`."""
    from lrsjax.collective import _relax

    rng = np.random.default_rng(2)
    for _ in range(50):
        groups, types, m = int(rng.integers(1, 5)), int(rng.integers(1, 3)), 3
        levels = []
        for g in range(groups):
            size = int(rng.integers(1, 6))
            count = rng.integers(1, 5, size)
            levels.append(_levels.Level(g, np.sort(rng.uniform(0.1, 2.0, size)), count,
                                        np.cumsum(count)))  # fmt: skip
        table = _levels.LevelTable.of(levels)
        wrows = rng.uniform(0, 1, (groups, types, m))
        totals = rng.uniform(0.5, 2.0, types)
        lam = rng.uniform(-0.5, 30.0, groups)
        lo = np.array([int(rng.integers(0, lv.eta.size + 1)) for lv in levels])
        hi = np.array([int(rng.integers(a, lv.eta.size + 1)) for a, lv in zip(lo, levels)])
        for ranges in ((None, None), (lo, hi)):
            funcs = []
            for g, lv in enumerate(levels):
                px, py = lv.points
                a, b = (0, px.size - 1) if ranges[0] is None else (lo[g], hi[g])
                funcs.append(_relax.Concave(px[a : b + 1], py[a : b + 1], px[a : b + 1],
                                            py[a : b + 1]))  # fmt: skip
            want = _relax.dual_bound(funcs, wrows, totals, lam)
            got = _clique.lagrangian(table, wrows, totals, lam, (), None, *ranges)[0]
            assert got == pytest.approx(want, rel=1e-12, abs=1e-9)
        members = tuple(int(g) for g in np.flatnonzero(rng.random(groups) < 0.7)) or (0,)
        rows, mu = ((members, 1),), np.array([rng.uniform(0, 5)])
        funcs = []
        for g, lv in enumerate(levels):
            px, py = lv.points
            py = py.copy()
            py[-1] -= mu[0] if g in members else 0.0
            funcs.append(_relax.Concave(px, py, px, py))
        want = _relax.dual_bound(funcs, wrows, totals, lam) + mu[0]
        got = _clique.lagrangian(table, wrows, totals, lam, rows, mu)[0]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_failing_cold_solves_fall_back_to_the_warm_model(monkeypatch):
    """The first nodes are solved from scratch; when that fails (`_Unreliable`), the warm model
    answers instead and the search stays exact (it does not give up)."""

    def failing(self, lo, hi, lower):
        raise _bnb._Unreliable(np.inf)

    rng = np.random.default_rng(7)
    solved = 0
    for _ in range(4):
        certs, weights, eta, group = _ceiling_certs(rng, groups=3)
        for eps in (1.0, 1.5):
            levels, w, ones = _scaled_problem(certs, weights, eps)
            if not levels:
                continue
            exact = _brute_force_attack(weights, eta, group, eps**2)
            with monkeypatch.context() as patch:
                patch.setattr(_bnb._Search, "_cold", failing)
                cold = MilpOptions(cold_nodes=10**9)
                res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, options=cold)
            assert res.optimal and not res.failed and res.attack == exact
            solved += 1
    assert solved >= 4
