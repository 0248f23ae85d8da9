"""Top-level clique rows (lrsjax.collective._clique): exact geometry, soundness, real gains."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from lrsjax import collective
from lrsjax.base_certs import make_base_certificates
from lrsjax.collective import _clique
from tests._attack import max_attack


def _linprog_reach(x, y, e):
    """max y.b s.t. x.b >= e, sum b <= 1, b >= 0 (scipy, independent of lrsjax); -inf if none."""
    m = x.size
    res = linprog(-y, A_ub=np.stack([-x, np.ones(m)]), b_ub=[-e, 1.0], bounds=[(0, None)] * m,
                  method="highs")  # fmt: skip
    return -np.inf if res.status == 2 else -res.fun


def test_pair_reach_matches_linprog():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 7))
        x = rng.uniform(0, 2, m) * (rng.random(m) < 0.8)
        y = rng.uniform(0, 2, (3, m))
        e = float(rng.uniform(0.01, 2.2))
        got = _clique.pair_reach(x, y, e)
        for row in range(3):
            want = _linprog_reach(x, y[row], e)
            if np.isinf(want):
                assert np.isinf(got[row]) and got[row] < 0
            else:
                assert got[row] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_declared_conflicts_are_infeasible():
    rng = np.random.default_rng(1)
    declared = 0
    for _ in range(60):
        g, m = int(rng.integers(2, 6)), int(rng.integers(1, 6))
        w = rng.uniform(0, 1, (g, m))
        tops = rng.uniform(0.05, 1.0, g) * w.max(axis=1)
        conflict = _clique.top_conflicts(tops, w)
        assert np.array_equal(conflict, conflict.T) and not conflict.diagonal().any()
        for a, b in zip(*np.nonzero(np.triu(conflict))):
            declared += 1
            res = linprog(np.zeros(m), A_ub=np.stack([-w[a], -w[b], np.ones(m)]),
                          b_ub=[-tops[a], -tops[b], 1.0], bounds=[(0, None)] * m,
                          method="highs")  # fmt: skip
            assert res.status == 2, (a, b)  # infeasible: no spend reaches both
        for clique in _clique.greedy_cliques(conflict):
            assert all(conflict[u, v] for u, v in itertools.combinations(clique, 2))
    assert declared > 20


def _ceiling_certs(rng, groups=3):
    """Cells whose top level holds many outputs, reachable alone with total 1 (eps 1) but
    (mostly) not two at a time: where the clique rows bite."""
    diag = rng.uniform(3.0, 5.0, groups)
    weights = rng.uniform(0.2, 1.2, (groups, groups))
    np.fill_diagonal(weights, diag)
    eta, group, count = [], [], []
    for g in range(groups):
        small = np.sort(rng.uniform(0.02, 0.35, 2)) * diag[g]
        top = rng.uniform(0.6, 0.95) * diag[g]
        eta += [*small, top]
        group += [g] * 3
        count += [int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(6, 13))]
    eta = np.repeat(eta, count)
    group = np.repeat(group, count)
    n = eta.size
    certs = make_base_certificates(np.zeros(n), np.zeros(n, bool), eta, group, weights[None], "l2")
    return certs, weights, eta, group


def _brute_force_attack(weights, eta, group, total):
    return max_attack(weights, eta, group, total)


def _scipy_hull_bound(weights, eta, group, total):
    """The plain hull LP (ordered formulation, no clique rows) solved by scipy."""
    groups, m = weights.shape
    cols, dE, owner = [], [], []
    for g in range(groups):
        levels, counts = np.unique(eta[group == g], return_counts=True)
        levels = levels[levels <= weights[g].max() * total]
        cols += counts[: levels.size].tolist()
        dE += np.diff(np.concatenate([[0.0], levels])).tolist()
        owner += [g] * levels.size
    n = len(cols)
    a_ub, b_ub = [], []
    for g in range(groups):
        row = np.zeros(n + m)
        row[[i for i in range(n) if owner[i] == g]] = [dE[i] for i in range(n) if owner[i] == g]
        row[n:] = -weights[g]
        a_ub.append(row)
        b_ub.append(0.0)
    for i in range(n - 1):
        if owner[i] == owner[i + 1]:
            row = np.zeros(n + m)
            row[i + 1], row[i] = 1.0, -1.0
            a_ub.append(row)
            b_ub.append(0.0)
    a_ub.append(np.concatenate([np.zeros(n), np.ones(m)]))
    b_ub.append(total)
    res = linprog(np.concatenate([-np.asarray(cols, float), np.zeros(m)]), A_ub=np.array(a_ub),
                  b_ub=b_ub, bounds=[(0, 1)] * n + [(0, None)] * m, method="highs")  # fmt: skip
    assert res.status == 0
    return -res.fun


def test_hull_with_cliques_is_sound_and_tighter():
    rng = np.random.default_rng(2)
    used = tighter = 0
    for _ in range(25):
        certs, weights, eta, group = _ceiling_certs(rng)
        for eps in (0.9, 1.0):
            total = eps**2
            hull = collective.certify_collective(certs, [eps], mode="hull")
            exact = _brute_force_attack(weights, eta, group, total)
            n = eta.size
            # Sound: never more than the exact certificate, and the bound covers the attack.
            assert hull.certified[0] <= n - exact
            assert hull.attack_bound[0] >= exact - 1e-6
            milp = collective.certify_collective(certs, [eps], mode="milp", milp_solver="scip")
            assert milp.certified[0] == n - exact
            if hull.mode_used[0] == "hull+clique":
                used += 1
                # Levels above the largest reachable spend are dropped in both (naive filter).
                plain = _scipy_hull_bound(weights, eta, group, total)
                assert hull.attack_bound[0] <= plain + 1e-6
                tighter += hull.attack_bound[0] < plain - 0.5
    assert used >= 5, used
    assert tighter >= 3, tighter


def test_max_tops_bounds_the_jointly_reachable_top_levels():
    from lrsjax.collective import _levels
    from lrsjax.collective.milp import _kappa

    rng = np.random.default_rng(3)
    tight = 0
    for _ in range(15):
        g, m = 4, 4
        w = rng.uniform(0.0, 0.6, (g, m)) + np.eye(g) * rng.uniform(1.0, 2.0, g)[:, None]
        tops = rng.uniform(0.3, 0.9, g) * w.max(axis=1)
        one = np.ones(1, np.int64)
        levels = [_levels.Level(k, np.array([tops[k]]), one, one) for k in range(g)]
        kappa = _kappa.max_tops(levels, w, time_limit_s=20.0)
        exact = 0
        for size in range(1, g + 1):
            for subset in itertools.combinations(range(g), size):
                res = linprog(np.zeros(m), A_ub=np.vstack([-w[list(subset)], np.ones(m)]),
                              b_ub=[*(-tops[list(subset)]), 1.0], bounds=[(0, None)] * m,
                              method="highs")  # fmt: skip
                if res.status == 0:
                    exact = max(exact, size)
        assert kappa is not None and kappa >= exact
        tight += kappa == exact
    assert tight >= 12, tight


def test_exact_milp_with_top_rows_equals_brute_force(monkeypatch):
    from lrsjax.collective.milp import _scip

    seen = []
    real = _scip.ScipRun.__init__

    def spy(self, *args, top_rows=(), **kwargs):
        seen.append(top_rows)
        real(self, *args, top_rows=top_rows, **kwargs)

    monkeypatch.setattr(_scip.ScipRun, "__init__", spy)
    rng = np.random.default_rng(4)
    capped = 0
    for _ in range(12):
        certs, weights, eta, group = _ceiling_certs(rng, groups=4)
        for eps in (1.0, 1.3, 1.6):
            seen.clear()
            milp = collective.certify_collective(certs, [eps], mode="milp", milp_solver="scip")
            exact = _brute_force_attack(weights, eta, group, eps**2)
            assert milp.certified[0] == eta.size - exact, (eps, milp.status)
            capped += any(len(m) == 4 and k < 4 for rows in seen for m, k in rows)
    assert capped >= 5, capped
