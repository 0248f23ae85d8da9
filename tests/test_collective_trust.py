"""Soundness of the public collective API on inputs an audit found to over- or under-claim.

Every reference here is independent of lrsjax: hand-solved one-row problems, scipy's HiGHS for
the paper LP, and exact rational arithmetic.
"""

import numpy as np
import pytest
from scipy.optimize import linprog

from lrsjax import collective
from lrsjax.base_certs import budget_totals, make_base_certificates


def _certs(eta, group, weights, norm="l2"):
    eta = np.asarray(eta, np.float64)
    return make_base_certificates(
        np.zeros(eta.size, np.int64), np.zeros(eta.size, bool), eta, np.asarray(group),
        np.asarray(weights, np.float64), norm,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Naive filter: rows dropped at one budget are never counted at a larger one.


def test_with_totals_refuses_budgets_above_a_naive_filter():
    # One output, radius 0.5: certified at eps 0.1, attacked at eps 1.0.
    problem = collective.from_base_certs(_certs([0.25], [0], [[[1.0]]]))
    filtered = collective.naive_filter().apply(collective.with_totals(problem, 0.1))
    assert filtered.num_naive == 1
    with pytest.raises(ValueError, match="naive_filter"):
        collective.with_totals(filtered, 1.0)
    # The same through solve, and through totals set by hand.
    with pytest.raises(ValueError, match="naive_filter"):
        collective.solve(filtered._replace(totals=np.array([1.0])), [1.0], mode="milp")
    with pytest.raises(ValueError, match="naive_filter"):
        collective.naive_filter().apply(filtered._replace(totals=np.array([1.0])))
    # Budgets up to the filter's stay allowed and exact; the original problem is untouched.
    assert collective.solve(filtered, [0.05, 0.1], mode="milp").certified.tolist() == [1, 1]
    assert collective.solve(problem, [1.0], mode="milp").certified.tolist() == [0]
    again = collective.with_totals(filtered, 0.05)
    assert again.totals.tolist() == [0.05**2]


def test_filtering_twice_keeps_the_smallest_budget():
    # Radii 0.5 and 2: eps 1.0 drops the second row, eps 0.1 then drops the first.
    problem = collective.from_base_certs(_certs([0.25, 4.0], [0, 0], [[[1.0]]]))
    once = collective.naive_filter().apply(collective.with_totals(problem, 1.0))
    assert once.num_naive == 1
    twice = collective.naive_filter().apply(collective.with_totals(once, 0.1))
    assert twice.num_naive == 2
    for eps in (1.0, 0.5, 0.1 + 1e-12):
        with pytest.raises(ValueError, match="naive_filter"):
            collective.solve(twice._replace(totals=np.array([1.0])), [eps], mode="milp")
        with pytest.raises(ValueError, match="naive_filter"):
            collective.with_totals(twice, eps)
    # Filtered first at the small budget: the larger one is refused before the second filter.
    small = collective.naive_filter().apply(collective.with_totals(problem, 0.1))
    with pytest.raises(ValueError, match="naive_filter"):
        collective.with_totals(small, 1.0)
    assert collective.solve(twice, [0.1], mode="milp").certified.tolist() == [2]
    np.testing.assert_array_equal(twice.naive_limit, [0.1**2])


def test_budget_guard_has_no_slack_toward_larger_budgets():
    # l1, W = 1, eta = 1 + 2**-43: certified at eps 1, attacked at eps 1 + 2**-42.
    problem = collective.from_base_certs(_certs([1.0 + 2.0**-43], [0], [[[1.0]]], norm="l1"))
    filtered = collective.naive_filter().apply(collective.with_totals(problem, 1.0))
    assert filtered.num_naive == 1
    above = 1.0 + 2.0**-42
    assert collective.solve(problem, [above], mode="milp").certified.tolist() == [0]
    with pytest.raises(ValueError, match="naive_filter"):
        collective.solve(filtered, [above], mode="milp")
    with pytest.raises(ValueError, match="naive_filter"):
        collective.with_totals(filtered, above)
    assert collective.solve(filtered, [1.0], mode="milp").certified.tolist() == [1]


def test_hand_built_naive_count_needs_its_limit():
    problem = collective.from_base_certs(_certs([0.25], [0], [[[1.0]]]))
    with pytest.raises(ValueError, match="naive_limit"):
        collective.solve(problem._replace(num_naive=3), [0.1])


# ---------------------------------------------------------------------------------------------
# Binning and near-equal thresholds: the LP equals the paper's LP (scipy's HiGHS).


def _clustered_bernoulli(seed, rows=40, clusters=3):
    """Variance-constrained binary certificates on random flip probabilities per cluster pair."""
    rng = np.random.default_rng(seed)
    tp = rng.uniform(0.005, 0.05, (clusters, clusters))
    tm = rng.uniform(0.5, 0.95, (clusters, clusters))
    gamma_add = np.log((1 - tm) ** 2 / tp + tm**2 / (1 - tp))
    gamma_del = np.log(tp**2 / (1 - tm) + (1 - tp) ** 2 / tm)
    group = rng.integers(0, clusters, rows)
    mu = 1 - rng.beta(1, 12, rows)
    zeta = mu * (1 - mu) * rng.uniform(0.3, 1, rows) + 0.003
    eta = np.log1p(np.maximum(mu - 0.5, 1e-3) ** 2 / zeta)
    return _certs(eta, group, np.stack([gamma_add, gamma_del]), norm="binary")


def _paper_lp_count(problem, totals):
    """naive + |T| - floor(LP + tol) with the paper's per-row LP on the rows the budget reaches
    (`a_n eta_n <= (W b)_{g_n}`, `0 <= a_n <= 1`), solved by scipy's HiGHS."""
    w = problem.weights
    t_count, _, m_count = w.shape
    reach = (w.max(axis=2) * totals[:, None]).sum(axis=0)[problem.group] >= problem.eta
    eta, mult, group = problem.eta[reach], problem.multiplicity[reach], problem.group[reach]
    naive, rows, nb = int(problem.multiplicity[~reach].sum()), eta.size, t_count * m_count
    if rows == 0:
        return naive
    a_ub = np.zeros((rows + t_count, rows + nb))
    a_ub[np.arange(rows), np.arange(rows)] = eta
    a_ub[:rows, rows:] = -w[:, group, :].transpose(1, 0, 2).reshape(rows, nb)
    for t in range(t_count):
        a_ub[rows + t, rows + t * m_count : rows + (t + 1) * m_count] = 1.0
    b_ub = np.concatenate([np.zeros(rows), totals])
    cost = np.concatenate([-mult.astype(np.float64), np.zeros(nb)])
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(0, 1)] * rows + [(0, None)] * nb,
                  method="highs")  # fmt: skip
    assert res.status == 0
    remaining = int(mult.sum())
    return naive + remaining - min(remaining, int(np.floor(-res.fun + 1e-6 * max(1, remaining))))


BINARY_BUDGETS = [[0, 1], [0, 3], [1, 0], [1, 1], [1, 3], [2, 0], [2, 1], [2, 3]]


@pytest.mark.parametrize("seed", [2, 8, 9])
def test_binned_lp_equals_the_paper_lp(seed):
    problem = collective.from_base_certs(_clustered_bernoulli(seed))
    binned = collective.binning(8).apply(problem)
    for k in np.unique(binned.group):
        etas = np.sort(binned.eta[binned.group == k])
        assert etas.size <= 8  # one row per bin after sharing
        assert np.all(np.diff(etas) > 1e-6 * etas[1:])
    res = collective.solve(binned, BINARY_BUDGETS, mode="lp")
    for i, budget in enumerate(BINARY_BUDGETS):
        totals = budget_totals("binary", [budget])[0]
        assert res.certified[i] == _paper_lp_count(binned, totals), budget


def test_binning_only_lowers_each_eta():
    certs = _clustered_bernoulli(8)
    problem = collective.from_base_certs(certs)
    binned = collective.binning(8).apply(problem)
    assert np.all(binned.eta[binned.row_of_output] <= certs.eta)


def test_lp_with_thresholds_one_ulp_apart_equals_the_paper_lp():
    certs = _clustered_bernoulli(37)
    eta, group = certs.eta.copy(), certs.group.copy()
    eta[1::2] = np.nextafter(eta[0::2], np.inf)
    group[1::2] = group[0::2]
    problem = collective.from_base_certs(_certs(eta, group, certs.weights, norm="binary"))
    res = collective.solve(problem, BINARY_BUDGETS, mode="lp")
    for i, budget in enumerate(BINARY_BUDGETS):
        totals = budget_totals("binary", [budget])[0]
        assert res.certified[i] == _paper_lp_count(problem, totals), budget


# ---------------------------------------------------------------------------------------------
# SCIP's bound carries a margin from its dual feasibility tolerance.


def _one_big_group():
    """8 groups that one perturbation can attack only one at a time (W: 4 on the own region, 1
    on the other 7, 28 unused regions); group 0 holds 100000 outputs, the others one each.
    Budget (0.125, 0.125): the largest attack is group 0 alone, so exactly 7 are certified."""
    weights = np.zeros((8, 36))
    weights[:, :8] = 1.0 + 3.0 * np.eye(8)
    group = np.concatenate([np.zeros(100_000, np.int64), np.arange(1, 8)])
    return _certs(np.ones(group.size), group, np.stack([weights, weights]), norm="binary")


def test_scip_bound_understated_within_its_tolerance_never_over_claims(monkeypatch):
    from lrsjax.collective.milp import _scip

    real = _scip.ScipSolver

    class Understating(real):
        """SCIP stopped early, its bound 0.5 below the true optimum (100000): an error within
        what its dual feasibility tolerance allows with 80 unit-range variables and objective
        coefficients up to 1e5 (margin 0.8)."""

        def status(self):
            return _scip._S.FEASIBLE

        def best_objective_bound(self):
            return 100_000 - 0.5

    monkeypatch.setattr(_scip, "ScipSolver", Understating)
    res = collective.certify_collective(_one_big_group(), [[0.125, 0.125]], mode="milp",
                                        milp_solver="scip")  # fmt: skip
    assert res.solver == ("SCIP",)
    assert res.certified.tolist() == [7]


def test_scip_outcome_reports_the_margin():
    from lrsjax.collective import _levels
    from lrsjax.collective.milp import _scip

    eta, group = np.array([1.0, 2.0, 3.0, 1.5, 2.5]), np.array([0, 0, 0, 1, 1])
    levels = _levels.levels_of(eta, np.array([5, 7, 100, 3, 9]), group)
    weights = np.array([[[1.0, 0.2], [0.3, 1.0]]])
    out = _scip.ScipRun(levels, weights, np.full(1, 2.0)).start().result()
    assert out.status == "OPTIMAL" and out.objective == 12.0
    # 2 spends in [0, 2] and 5 level variables in [0, 1], largest objective coefficient 100.
    assert out.margin == pytest.approx(_scip.SCIP_DUALFEASTOL * 9 * 100)
    assert out.bound == 12.0 + out.margin
