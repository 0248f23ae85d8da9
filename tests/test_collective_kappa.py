"""kappa by branch and bound on the extended LP (lrsjax.collective.milp._kappa), and column
generation in the warm node model of the exact branch and bound (lrsjax.collective.milp._bnb)."""

import itertools
import time

import numpy as np
import pytest
from scipy.optimize import linprog
from test_collective_bnb import _scaled_problem, _wrows
from test_collective_clique import _brute_force_attack

from lrsjax.base_certs import make_base_certificates
from lrsjax.collective import _levels
from lrsjax.collective.milp import MilpOptions, _bnb, _kappa


def _instance(rng, groups=None, regions=None):
    """(wrows [G, M] >= 0, tau [G] > 0): a dominant entry per group (region g mod M) on random
    off-diagonal weights (some zero), thresholds at a random fraction of each group's best
    reach (sometimes beyond it: unreachable alone)."""
    g = int(rng.integers(2, 8)) if groups is None else groups
    m = int(rng.integers(1, 7)) if regions is None else regions
    w = rng.uniform(0.0, 0.6, (g, m)) * (rng.random((g, m)) < 0.8)
    w[np.arange(g), np.arange(g) % m] += rng.uniform(1.0, 2.0, g)
    tau = w.max(axis=1) * rng.uniform(0.1, 1.3) * rng.uniform(0.9, 1.0, g)
    return w, tau


def _reachable(wrows, tau, subset) -> bool:
    """Some b >= 0 with sum b <= 1 reaches every threshold of `subset` (scipy LP feasibility)."""
    if not subset:
        return True
    m = wrows.shape[1]
    rows = list(subset)
    res = linprog(np.zeros(m), A_ub=np.vstack([-wrows[rows], np.ones(m)]),
                  b_ub=[*(-tau[rows]), 1.0], bounds=[(0, None)] * m, method="highs")  # fmt: skip
    assert res.status in (0, 2), res.message
    return res.status == 0


def _brute_kappa(wrows, tau, lo=None, hi=None) -> int:
    """The largest subset S of groups (with lo <= [g in S] <= hi when given) whose thresholds one
    spend reaches together; -1 when none (only possible with `lo`). Reachable sets are closed
    under subsets, so a set is tested only when all its one-smaller subsets are reachable."""
    g_count = tau.size
    lo = np.zeros(g_count) if lo is None else lo
    hi = np.ones(g_count) if hi is None else hi
    good = {()}
    for size in range(1, g_count + 1):
        new = {
            s
            for s in itertools.combinations(range(g_count), size)
            if all(t in good for t in itertools.combinations(s, size - 1))
            and _reachable(wrows, tau, s)
        }
        if not new:
            break
        good |= new
    allowed = [
        len(s)
        for s in good
        if all(g in s for g in np.flatnonzero(lo > 0)) and all(hi[g] > 0 for g in s)
    ]
    return max(allowed, default=-1)


def test_max_reachable_equals_brute_force():
    """The exact kappa on random small instances (answers spread over 0..G), proven optimal;
    stopped at once by a past deadline it is still an upper bound, and `found` a lower one."""
    rng = np.random.default_rng(0)
    answers = []
    for _ in range(40):
        w, tau = _instance(rng)
        exact = _brute_kappa(w, tau)
        out = _kappa.max_reachable(w, tau)
        assert out is not None
        assert out.optimal and out.kappa == out.found == exact, (w, tau, out, exact)
        stopped = _kappa.max_reachable(w, tau, deadline=time.perf_counter() - 1.0)
        assert stopped is not None
        assert stopped.kappa >= exact >= stopped.found, (w, tau, stopped, exact)
        assert stopped.optimal == (stopped.kappa == stopped.found)
        answers.append((exact, tau.size))
    values = {a for a, _ in answers}
    assert len(values) >= 4 and 0 in values, values
    assert any(0 < a < g for a, g in answers) and any(a == g for a, g in answers)


def _small_extended(rng):
    """(wrows, tau, extended_model) of a random instance with 2-5 groups and 1-4 regions."""
    w, tau = _instance(rng, groups=int(rng.integers(2, 6)), regions=int(rng.integers(1, 5)))
    return w, tau, _kappa.extended_model(w, tau)


def _scipy_lp(model, var_lo, var_hi):
    """(optimum, row multipliers y in `dual_bound`'s convention) of max objective @ x over
    row_lo <= A x <= row_hi, var_lo <= x <= var_hi by scipy (HiGHS); None when infeasible.
    y_r >= 0 prices the upper bound of row r, y_r <= 0 its lower bound."""
    a = model.matrix.toarray()
    up, down = np.isfinite(model.row_hi), np.isfinite(model.row_lo)
    res = linprog(-model.objective, A_ub=np.vstack([a[up], -a[down]]),
                  b_ub=np.concatenate([model.row_hi[up], -model.row_lo[down]]),
                  bounds=list(zip(var_lo, var_hi)), method="highs")  # fmt: skip
    if res.status == 2:
        return None
    assert res.status == 0, res.message
    marginals = res.ineqlin.marginals  # d(min)/d(b_ub) <= 0
    y = np.zeros(model.row_lo.size)
    y[up] -= marginals[: int(up.sum())]
    y[down] += marginals[int(up.sum()) :]
    return -res.fun, y


def test_dual_bound_is_valid_for_any_multipliers_and_tight_at_the_optimal_ones():
    """On extended models of random instances, at the root and at nodes fixing some z: any row
    multipliers (both signs, tiny to huge, sparse, perturbed optimal ones) give a bound above
    the LP optimum (scipy); the optimal multipliers give the optimum itself, also with
    wrong-signed entries on one-sided rows (taken as 0); and the warm GLOP model's root bound is
    the optimum too."""
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(6):
        w, tau, model = _small_extended(rng)
        g_count, m_count = w.shape
        n_var, n_row = model.objective.size, model.row_lo.size
        assert model.matrix.shape == (n_row, n_var)
        first_z = m_count
        root = _kappa._Warm(model).solve(first_z, np.zeros(g_count), np.ones(g_count))
        assert root is not None
        for node in range(4):
            var_lo, var_hi = np.zeros(n_var), np.ones(n_var)
            if node:  # fix a few z to 0 or 1
                fixed = rng.random(g_count) < 0.5
                value = (rng.random(g_count) < 0.5).astype(float)
                var_lo[first_z : first_z + g_count] = np.where(fixed, value, 0.0)
                var_hi[first_z : first_z + g_count] = np.where(fixed, value, 1.0)
            lp = _scipy_lp(model, var_lo, var_hi)
            if lp is None:
                continue
            opt, y_star = lp
            if node == 0:
                assert root[0] == pytest.approx(opt, rel=1e-6, abs=1e-6)
                assert root[0] >= opt - 1e-7
            tight = _kappa.dual_bound(model, y_star, var_lo, var_hi)
            assert opt - 1e-7 <= tight <= opt + 1e-6 * max(1.0, abs(opt)), (tight, opt)
            # A sign that would price an infinite row bound counts as 0: still tight.
            wrong = y_star.copy()
            idle = y_star == 0.0
            wrong[idle & np.isinf(model.row_hi)] = rng.uniform(1.0, 1e6)
            wrong[idle & np.isinf(model.row_lo)] = -rng.uniform(1.0, 1e6)
            assert (wrong != y_star).any()
            assert _kappa.dual_bound(model, wrong, var_lo, var_hi) == pytest.approx(tight)
            for k in range(50):
                scale = 10.0 ** rng.choice([-3, 0, 1, 3, 8])
                y = rng.normal(0.0, scale, n_row) * (rng.random(n_row) < rng.uniform(0.2, 1.0))
                if k % 5 == 0:  # near the optimum: the sharpest test of validity
                    y = y_star + rng.normal(0.0, 1e-3, n_row) * (rng.random(n_row) < 0.3)
                bound = _kappa.dual_bound(model, y, var_lo, var_hi)
                assert bound >= opt - 1e-7, (k, bound, opt)
                checked += 1
    assert checked >= 500, checked


def test_warm_node_bounds_hold_and_prune_jointly_unreachable_nodes():
    """`_Warm.solve` on nodes forcing groups: two thresholds no spend reaches together (also
    missed by a hair) give a bound below 2, so the node is pruned once one threshold is found;
    a reachable pair (also exactly on the boundary) gives a bound >= 2. On random instances and
    random nodes, visited in one warm model, every bound is >= the node's best (brute force),
    agrees with a fresh model's, and is the value of the node's LP (scipy), or where that is
    infeasible, of its rewarded form (`FORCE`)."""
    eye, both, first = np.eye(2), np.ones(2), np.array([1.0, 0.0])
    for t in (0.8, 0.5 * (1.0 + 1e-5)):  # b_1 + b_2 <= 1 cannot reach both
        tau = np.array([t, t])
        apart = _kappa._Warm(_kappa.extended_model(eye, tau)).solve(2, both, both)
        assert apart is not None and apart[0] < 2.0, (t, apart)
        one = _kappa._Warm(_kappa.extended_model(eye, tau)).solve(2, first, both)
        assert one is not None and one[0] >= 1.0 - 1e-9, (t, one)
        out = _kappa.max_reachable(eye, tau)
        assert out.kappa == out.found == 1 and out.optimal, (t, out)
    for t in (0.4, 0.5):
        tau = np.array([t, t])
        together = _kappa._Warm(_kappa.extended_model(eye, tau)).solve(2, both, both)
        assert together is not None and together[0] >= 2.0 - 1e-9, (t, together)
        assert _kappa.max_reachable(eye, tau).kappa == 2

    rng = np.random.default_rng(2)
    infeasible = 0
    for _ in range(8):
        w, tau, model = _small_extended(rng)
        g_count, m_count = w.shape
        warm = _kappa._Warm(model)
        z = slice(m_count, m_count + g_count)
        for _ in range(8):
            lo = (rng.random(g_count) < 0.4).astype(float)
            hi = np.where(rng.random(g_count) < 0.3, lo, 1.0)
            out = warm.solve(m_count, lo, hi)
            fresh = _kappa._Warm(model).solve(m_count, lo, hi)
            assert out is not None and fresh is not None
            assert out[0] == pytest.approx(fresh[0], rel=1e-6, abs=1e-6), (lo, hi)
            var_lo, var_hi = np.zeros(model.objective.size), np.ones(model.objective.size)
            var_lo[z], var_hi[z] = lo, hi
            lp = _scipy_lp(model, var_lo, var_hi)
            if lp is None:  # the LP of the node is infeasible: the rewarded ("forced") form
                objective = model.objective.copy()
                objective[z] += _kappa.FORCE * lo
                var_lo[z] = 0.0
                value = _scipy_lp(model._replace(objective=objective), var_lo, var_hi)[0]
                want = value - _kappa.FORCE * lo.sum()
            else:
                want = lp[0]
            assert want - 1e-7 <= out[0] <= want + 1e-6 * max(1.0, abs(want)), (out[0], want)
            best = _brute_kappa(w, tau, lo, hi)
            if best < 0:  # no attack in the node: any bound is valid
                infeasible += 1
                continue
            assert lp is not None and out[0] >= best - 1e-9, (w, tau, lo, hi, out[0], best)
    assert infeasible >= 3, infeasible


def _many_level_certs(rng, groups=3, per_group=6):
    """Like `_ceiling_certs` (one dominant cell per group, a heavy top level) with `per_group`
    levels per group: enough that the node LPs need only some of them."""
    diag = rng.uniform(3.0, 5.0, groups)
    weights = rng.uniform(0.2, 1.5, (groups, groups))
    np.fill_diagonal(weights, diag)
    eta, group, count = [], [], []
    for g in range(groups):
        eta += list(np.sort(rng.uniform(0.02, 0.95, per_group)) * diag[g])
        group += [g] * per_group
        count += [*rng.integers(1, 4, per_group - 1), int(rng.integers(4, 12))]
    eta, group = np.repeat(eta, count), np.repeat(group, count)
    n = eta.size
    certs = make_base_certificates(np.zeros(n), np.zeros(n, bool), eta, group, weights[None], "l2")
    return certs, weights, eta, group


@pytest.mark.parametrize("pool_rounds", [1, MilpOptions().pool_rounds])
def test_branch_and_bound_grows_an_empty_column_pool_and_stays_exact(monkeypatch, pool_rounds):
    """Every node on the warm model (cold_nodes 0), whose pool starts EMPTY: column generation
    must add the levels the node LPs need (the pool grows, nodes verify on the warm model, and
    some searches end with only part of the levels pooled), and the search ends with the exact
    attack (brute force), with and without the top rows; also when a node gets a single LP
    solve (pool_rounds 1: unverified nodes are solved from scratch)."""
    models, verified = [], []
    real_init, real_warm = _bnb._NodeModel.__init__, _bnb._Search._warm

    def empty_pool(self, table, wrows, totals, top_rows=(), pool=None):
        real_init(self, table, wrows, totals, top_rows, pool=np.zeros(table.E.shape, bool))
        assert not self.columns
        models.append(self)

    def spy(self, lo, hi):
        out, values = real_warm(self, lo, hi)
        verified.append(values is not None)
        return out, values

    monkeypatch.setattr(_bnb._NodeModel, "__init__", empty_pool)
    monkeypatch.setattr(_bnb._Search, "_warm", spy)
    options = MilpOptions(cold_nodes=0, pool_rounds=pool_rounds)
    rng = np.random.default_rng(3)
    solved = partial = 0
    for case in range(10):
        certs, weights, eta, group = _many_level_certs(rng)
        eps = (0.9, 1.2, 1.5)[case % 3]
        levels, w, ones = _scaled_problem(certs, weights, eps)
        if len(levels) < 2:
            continue
        exact = _brute_force_attack(weights, eta, group, eps**2)
        rows = _kappa.top_rows(levels, _wrows(levels, w), kappa_time_s=5.0) if case % 2 else ()
        models.clear()
        res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, options=options)
        assert res.optimal and not res.failed, (case, res)
        assert res.attack == exact, (case, res, exact)
        assert len(models) == 1 and len(models[0].columns) > 0
        model = models[0]
        assert model.pooled.sum() == len(model.columns) == model.col_g.size
        assert not model.pooled[:, 0].any()
        partial += model.pooled.sum() < sum(lv.eta.size for lv in levels)
        solved += 1
    assert solved >= 8 and partial >= solved // 2, (solved, partial)
    if pool_rounds > 1:
        assert sum(verified) >= solved, (solved, sum(verified))


def test_node_model_with_an_empty_pool_is_infeasible_only_when_the_node_is():
    """`_NodeModel.solve` on a pool that starts empty, over random nodes in one warm model: it
    answers "INFEASIBLE" exactly when no spend reaches every forced group's lowest level
    (scipy), since it pools those levels before concluding; feasible answers are finite."""
    rng = np.random.default_rng(4)
    answers = set()
    for case in range(6):
        certs, weights, _, _ = _many_level_certs(rng)
        levels, w, ones = _scaled_problem(certs, weights, (0.9, 1.2, 1.5)[case % 3])
        table = _levels.LevelTable.of(levels)
        wrows = np.stack([w[:, lv.group, :] for lv in levels])  # [G, 1, M]
        model = _bnb._NodeModel(table, wrows, ones, pool=np.zeros(table.E.shape, bool))
        n = np.array([lv.eta.size for lv in levels])
        for _ in range(10):
            lo = rng.integers(0, n + 1) * (rng.random(n.size) < 0.6)
            hi = np.where(rng.random(n.size) < 0.5, n, lo)
            forced = np.flatnonzero(lo > 0)
            lower = table.E[np.arange(n.size), lo]
            feasible = _reachable(wrows[:, 0, :], lower, forced.tolist())
            out = model.solve(lo, hi)
            assert isinstance(out, tuple) == feasible and out != "FAILED", (lo, hi, out)
            if feasible:
                assert np.isfinite(out[4]) and out[4] >= table.C[forced, lo[forced]].sum() - 1e-6
            answers.add(feasible)
    assert answers == {True, False}


def test_reached_counts_ties_generously():
    """A spend landing on a threshold, or 1e-12 relative below it, reaches it; 1e-6 below does
    not; a spend over the budget is scaled into it before counting."""
    wrows = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    b = np.array([0.3, 0.7])
    power = wrows @ b
    assert _kappa.reached(wrows, power, b) == 3
    assert _kappa.reached(wrows, power * (1.0 + 1e-12), b) == 3
    assert _kappa.reached(wrows, power * (1.0 + 1e-6), b) == 0
    tau = power.copy()
    tau[1] *= 1.0 + 1e-6
    assert _kappa.reached(wrows, tau, b) == 2
    assert _levels.TIE_RTOL >= 1e-12
    assert _kappa.reached(wrows, power, 3.0 * b) == 3  # scaled back to b
    assert _kappa.reached(wrows, power * 1.5, 3.0 * b) == 0
    assert _kappa.reached(wrows, power, np.array([-0.01, 0.7])) == 1  # negatives clipped to 0
