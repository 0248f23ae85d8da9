"""The exact branch and bound (lrsjax.collective._bnb): warm node LPs, top rows, lying LPs."""

import numpy as np
import pytest
from test_collective_clique import _brute_force_attack, _ceiling_certs

from lrsjax.collective import _bnb, _clique, _levels


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


def test_branch_and_bound_with_top_rows_equals_brute_force():
    """The node LPs carry the clique and kappa rows of `_clique`; the search stays exact, and
    the rows lower the root bound on most instances (they are really in the node LPs)."""
    rng = np.random.default_rng(11)
    tighter = cases = 0
    for _ in range(10):
        certs, weights, eta, group = _ceiling_certs(rng, groups=4)
        for eps in (1.0, 1.3, 1.6):
            levels, w, ones = _scaled_problem(certs, weights, eps)
            if len(levels) < 2:
                continue
            rows = _clique.top_rows(levels, _wrows(levels, w), kappa_time_s=5.0)
            exact = _brute_force_attack(weights, eta, group, eps**2)
            res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows)
            assert res.optimal and not res.failed
            assert res.attack == exact, (eps, rows)
            plain = _bnb.branch_and_bound(levels, w, ones, tol=1e-6)
            assert plain.attack == exact
            if rows:
                cases += 1
                search = _bnb._Search(levels, w, ones, 1e-6, rows)
                bare = _bnb._Search(levels, w, ones, 1e-6)
                top = [lv.eta.size for lv in levels]
                zero = [0] * len(levels)
                with_rows = search.process(zero, top, np.inf)
                without = bare.process(zero, top, np.inf)
                if with_rows is None or without is None or with_rows[0] < without[0] - 1e-6:
                    tighter += 1
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
    rng = np.random.default_rng(5)
    for _ in range(4):
        certs, weights, eta, group = _ceiling_certs(rng, groups=3)
        for eps in (1.0, 1.5):
            levels, w, ones = _scaled_problem(certs, weights, eps)
            if not levels:
                continue
            exact = _brute_force_attack(weights, eta, group, eps**2)
            res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6)
            assert res.optimal and not res.failed, mode
            assert res.attack == exact and res.bound >= exact - 1e-6, (mode, res, exact)
            if res.b is not None:
                assert res.b.sum() <= 1.0 + 1e-12 and np.all(res.b >= 0)
