"""lrsjax.collective against hand-solved cases, brute force and an independent scipy LP."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog

from lrsjax import collective
from lrsjax.base_certs import budget_totals, make_base_certificates
from tests._attack import max_attack


def _tv4():
    weights = np.array([[[4.0, 1.0], [1.0, 4.0]]])
    return make_base_certificates([0, 0], [False, False], [1.0, 1.0], [0, 1], weights, "l2")


def test_tv4_two_cell_toy():
    certs = _tv4()
    s = np.array([0.10, 0.20, 0.25, 0.30, 0.39, 0.40])
    eps = np.sqrt(s)
    lp = collective.certify_collective(certs, eps, mode="lp")
    milp = collective.certify_collective(certs, eps, mode="milp")
    np.testing.assert_array_equal(lp.naive, [2, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(milp.certified, [2, 2, 1, 1, 1, 0])
    np.testing.assert_array_equal(lp.certified, [2, 2, 1, 1, 1, 0])
    # The paper's LP on both outputs (no naive filter): 2 - attack = 1.5, 1.0, 0.75, 0.5, 0.05, 0.
    problem = collective.from_base_certs(certs)
    for total, expected in zip(s, [1.5, 1.0, 0.75, 0.5, 0.05, 0.0]):
        assert 2 - _scipy_paper_lp(problem, np.array([total])) == pytest.approx(expected, abs=1e-7)


def test_tv5_binning():
    radii = np.array([0.5, 0.6, 0.9, 1.0])
    certs = make_base_certificates(
        np.zeros(4), np.zeros(4, bool), radii**2, np.zeros(4), np.ones((1, 1, 1)), "l2"
    )
    problem = collective.from_base_certs(certs)
    two = collective.binning(2).apply(problem)
    np.testing.assert_allclose(two.eta, [0.25, 1.0])
    np.testing.assert_array_equal(two.multiplicity, [3, 1])
    for bins in (4, 5, 100):
        same = collective.binning(bins).apply(problem)
        np.testing.assert_allclose(np.sort(same.eta), radii**2)
    # Every output still maps to a row with its binned eta.
    np.testing.assert_allclose(two.eta[two.row_of_output], [0.25, 0.25, 0.25, 1.0])


def _scipy_paper_lp(problem, totals):
    """The paper's LP with one a_n per row, solved by scipy (independent of lrsjax)."""
    weights = problem.weights
    t, _, m = weights.shape
    r = problem.num_rows
    # variables: a [R], b [T*M]; maximize sum mult * a.
    c = np.concatenate([-problem.multiplicity.astype(float), np.zeros(t * m)])
    a_ub = np.zeros((r + t, r + t * m))
    for n in range(r):
        a_ub[n, n] = problem.eta[n]
        a_ub[n, r:] = -weights[:, problem.group[n], :].reshape(-1)
    for k in range(t):
        a_ub[r + k, r + k * m : r + (k + 1) * m] = 1.0
    b_ub = np.concatenate([np.zeros(r), totals])
    bounds = [(0, 1)] * r + [(0, None)] * (t * m)
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0
    return -res.fun


def _brute_force_attack(problem, totals):
    return max_attack(problem.weights, problem.eta, problem.group, totals, problem.multiplicity)


@st.composite
def small_problems(draw):
    norm = draw(st.sampled_from(["l2", "binary"]))
    types = 2 if norm == "binary" else 1
    groups = draw(st.integers(1, 3))
    regions = draw(st.integers(1, 3))
    rows = draw(st.integers(1, 7))
    weights = np.array(
        draw(
            st.lists(
                st.floats(0.0, 5.0),
                min_size=types * groups * regions,
                max_size=types * groups * regions,
            )
        )  # fmt: skip
    ).reshape(types, groups, regions)
    eta = np.array(draw(st.lists(st.floats(0.05, 3.0), min_size=rows, max_size=rows)))
    group = np.array(draw(st.lists(st.integers(0, groups - 1), min_size=rows, max_size=rows)))
    abstain = np.array(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
    if norm == "binary":
        budget = np.array([[draw(st.integers(0, 3)), draw(st.integers(0, 3))]])
    else:
        budget = np.array([draw(st.floats(0.0, 2.0))])
    certs = make_base_certificates(np.zeros(rows), abstain, eta, group, weights, norm)
    return certs, budget


@given(small_problems())
def test_milp_equals_brute_force_and_relaxations_are_ordered(case):
    certs, budget = case
    problem = collective.from_base_certs(certs)
    totals = budget_totals(certs.norm, budget)[0]
    exact = problem.num_outputs - _brute_force_attack(problem, totals)
    results = {m: collective.solve(problem, budget, mode=m) for m in collective.MODES}
    assert results["milp"].certified[0] == exact
    assert results["lp"].certified[0] <= results["hull"].certified[0] <= exact
    # The LP after the exact naive filter equals scipy's paper LP on the remaining rows.
    reduced = collective.naive_filter().apply(problem._replace(totals=totals))
    if reduced.num_rows and np.any(totals > 0):
        attack = _scipy_paper_lp(reduced, totals)
        assert results["lp"].attack_bound[0] == pytest.approx(attack, abs=1e-6)


@given(small_problems(), st.integers(1, 3))
def test_transforms_never_certify_more(case, num_bins):
    certs, budget = case
    problem = collective.from_base_certs(certs)
    for mode in collective.MODES:
        plain = collective.solve(problem, budget, mode=mode).certified[0]
        shared = collective.solve(collective.share().apply(problem), budget, mode=mode)
        binned = collective.solve(collective.binning(num_bins).apply(problem), budget, mode=mode)
        assert shared.certified[0] == plain
        assert (
            binned.certified[0]
            <= collective.solve(collective.share().apply(problem), budget, mode="milp").certified[0]
        )
        if mode == "milp":
            assert binned.certified[0] <= plain
    big = collective.binning(1000).apply(problem)
    np.testing.assert_array_equal(
        collective.solve(big, budget, mode="milp").certified,
        collective.solve(problem, budget, mode="milp").certified,
    )


def test_chain_composes_and_naive_filter_is_exact():
    certs = _tv4()
    problem = collective.with_totals(collective.from_base_certs(certs), 0.3)
    chained = collective.chain(collective.naive_filter(), collective.share()).apply(problem)
    assert chained.num_naive == 2 and chained.num_rows == 0
    with pytest.raises(ValueError, match="totals"):
        collective.naive_filter().apply(collective.from_base_certs(certs))


def test_time_limited_milp_never_exceeds_the_exact_answer():
    rng = np.random.default_rng(0)
    groups, regions, rows = 12, 12, 600
    weights = rng.uniform(0.5, 30.0, (1, groups, regions))
    eta = rng.uniform(0.2, 8.0, rows)
    group = rng.integers(0, groups, rows)
    certs = make_base_certificates(np.zeros(rows), np.zeros(rows, bool), eta, group, weights, "l2")
    problem = collective.from_base_certs(certs)
    budget = [0.4]
    exact = collective.solve(problem, budget, mode="milp")
    assert exact.status[0] == "OPTIMAL"
    for limit in (0.01, 0.05):
        limited = collective.solve(problem, budget, mode="milp", time_limit_s=limit)
        assert limited.certified[0] <= exact.certified[0]
        assert limited.status[0] in ("OPTIMAL", "TIME_LIMIT_BOUND", "HULL_FALLBACK")


def test_zero_budget_needs_no_solve_and_bad_inputs_raise():
    certs = _tv4()
    result = collective.certify_collective(certs, [0.0], mode="milp")
    assert result.certified[0] == 2 and result.solver[0] == "none"
    with pytest.raises(ValueError, match="budgets"):
        collective.certify_collective(certs, [-0.1])
    with pytest.raises(ValueError, match="mode"):
        collective.certify_collective(certs, [0.1], mode="cvxpy")
    with pytest.raises(ValueError, match="num_bins"):
        collective.certify_collective(certs, [0.1], num_bins=0)
    with pytest.raises(ValueError, match="targets"):
        collective.certify_collective(certs, [0.1], targets=np.ones(3, bool))
    with pytest.raises(ValueError, match="budgets"):
        collective.certify_collective(certs, [np.nan])


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("top_rows", [False, True])
def test_auto_portfolio_on_many_groups_equals_brute_force(seed, top_rows, monkeypatch):
    # More than MilpOptions.auto_bnb_max_groups groups: "auto" runs the branch and bound and
    # SCIP side by side. Every group holds one or two rows so that brute force stays cheap.
    # Without the top-level rows (`_clique`) the hull bound leaves the portfolio work to do; with
    # them the counts must be the same.
    from lrsjax.collective import _clique

    if not top_rows:
        monkeypatch.setattr(_clique, "MAX_GROUPS", 0)
    rng = np.random.default_rng(seed)
    groups, rows = 10, 11
    weights = rng.uniform(0.05, 1.0, (1, groups, groups)) + 3.0 * np.eye(groups)[None]
    group = np.concatenate([np.arange(groups), rng.integers(0, groups, rows - groups)])
    eta = rng.uniform(0.3, 1.5, rows)
    certs = make_base_certificates(np.zeros(rows), np.zeros(rows, bool), eta, group, weights, "l2")
    problem = collective.from_base_certs(certs)
    budgets = np.array([0.7, 0.8])  # every group is left in the MILP
    auto = collective.solve(problem, budgets, mode="milp", milp_solver="auto")
    for index, eps in enumerate(budgets):
        totals = budget_totals("l2", [eps])[0]
        exact = problem.num_outputs - _brute_force_attack(problem, totals)
        assert auto.certified[index] == exact
    assert set(auto.solver) <= {"GLOP", "BNB+GLOP", "BNB+SCIP", "none"}
    assert top_rows or "BNB+SCIP" in auto.solver
    assert all(s in ("OPTIMAL", "NAIVE_ONLY", "MONOTONE_ZERO") for s in auto.status)
    # Stopped almost at once: still a proven bound, never more than the exact count.
    limited = collective.solve(problem, budgets, mode="milp", time_limit_s=1e-3)
    assert np.all(limited.certified <= auto.certified)
    assert np.all(limited.attack_bound >= auto.attack_found - 1e-6)


def test_relaxation_skips_zero_width_segments(recwarn):
    # Rescaling can merge two breakpoints; the LP must not get an infinite slope (a RuntimeWarning
    # and a failed GLOP solve before), and the reported bound must stay a valid upper bound.
    from lrsjax.collective import _relax

    x = np.array([0.0, 0.5, 0.5, 1.0])
    y = np.array([0.0, 1.0, 2.0, 3.0])
    f = _relax.Concave(x, y, x, y)
    wrows = np.ones((1, 1, 1))
    rel = _relax.solve_relaxation([f], wrows, np.array([0.6]))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert rel.lp_ok
    # The best point with spend <= 0.6 is (0.5, 2); a rigorous bound is at least that.
    assert rel.bound >= 2.0 - 1e-9
