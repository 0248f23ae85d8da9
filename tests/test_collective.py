"""lrsjax.collective (SPEC 6): test vectors TV4/TV5, brute force, independent scipy LPs, soundness.

References here never come from lrsjax itself: the exact attack is found by enumerating attacked
subsets with one scipy feasibility LP each, the paper's LP is solved per row (one `a_n` per
output) by scipy's HiGHS, and hand-solved cases come from the SPEC.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from lrsjax import collective
from lrsjax.base_certs import BaseCertificates, budget_totals, make_base_certificates
from lrsjax.collective import _engine, _levels, _relax
from tests._attack import max_attack

SOLVERS = ("bnb", "scip")


def _certs(eta, group, weights, norm="l2", abstain=None):
    eta = np.asarray(eta, np.float64)
    abstain = np.zeros(eta.size, bool) if abstain is None else np.asarray(abstain, bool)
    return make_base_certificates(
        np.zeros(eta.size, np.int64), abstain, eta, np.asarray(group), weights, norm
    )


def _tv4():
    return _certs([1.0, 1.0], [0, 1], np.array([[[4.0, 1.0], [1.0, 4.0]]]))


# ---------------------------------------------------------------------------------------------
# Independent references (scipy only).


def _brute_force_attack(weights, eta, group, totals) -> int:
    return max_attack(weights, eta, group, totals)


def _scipy_paper_lp(weights, eta, group, totals) -> float:
    """The paper's LP: max sum_n a_n, a_n eta_n <= (W b)_{group n}, 0 <= a_n <= 1 (per row)."""
    t, _, m = weights.shape
    r = len(eta)
    c = np.concatenate([-np.ones(r), np.zeros(t * m)])
    a_ub = np.zeros((r + t, r + t * m))
    for n in range(r):
        a_ub[n, n] = eta[n]
        a_ub[n, r:] = -weights[:, group[n], :].reshape(-1)
    for k in range(t):
        a_ub[r + k, r + k * m : r + (k + 1) * m] = 1.0
    b_ub = np.concatenate([np.zeros(r), totals])
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=[(0, 1)] * r + [(0, None)] * (t * m),
                  method="highs")  # fmt: skip
    assert res.status == 0
    return -res.fun


def _scipy_one_hot_lp(weights, eta, group, totals) -> float:
    """LP relaxation of SPEC 6's one-hot MILP (z_km in [0, 1], sum_m z_km <= 1, (W b)_k >=
    sum_m E_km z_km, objective sum C_km z_km): the concave-hull relaxation, by scipy."""
    t, _, m = weights.shape
    cols = []  # (group, threshold, cumulative count)
    for k in np.unique(group):
        values, counts = np.unique(eta[group == k], return_counts=True)
        cols += [(k, e, c) for e, c in zip(values, np.cumsum(counts))]
    n = len(cols)
    groups = sorted({k for k, _, _ in cols})
    c = np.concatenate([-np.array([cc for _, _, cc in cols], float), np.zeros(t * m)])
    a_ub, b_ub = [], []
    for k in groups:
        one = np.zeros(n + t * m)
        cover = np.zeros(n + t * m)
        for i, (kk, e, _) in enumerate(cols):
            if kk == k:
                one[i] = 1.0
                cover[i] = e
        cover[n:] = -weights[:, k, :].reshape(-1)
        a_ub += [one, cover]
        b_ub += [1.0, 0.0]
    for k in range(t):
        row = np.zeros(n + t * m)
        row[n + k * m : n + (k + 1) * m] = 1.0
        a_ub.append(row)
        b_ub.append(totals[k])
    res = linprog(c, A_ub=np.array(a_ub), b_ub=b_ub, bounds=[(0, 1)] * n + [(0, None)] * (t * m),
                  method="highs")  # fmt: skip
    assert res.status == 0
    return -res.fun


def _naive_mask(weights, eta, group, totals):
    """Certified on its own: sum_t total_t max_j W[t, k, j] < eta (SPEC 6)."""
    power = (weights.max(axis=2) * totals[:, None]).sum(axis=0)
    return power[group] < eta


# ---------------------------------------------------------------------------------------------
# Test vectors.


def test_tv4_two_cell_toy():
    certs = _tv4()
    s = np.array([0.10, 0.20, 0.25, 0.30, 0.39, 0.40])
    eps = np.sqrt(s)
    lp = collective.certify_collective(certs, eps, mode="lp")
    np.testing.assert_array_equal(lp.naive, [2, 2, 0, 0, 0, 0])
    # Last column of TV4: naive + ceil(LP on the outputs the naive filter leaves).
    np.testing.assert_array_equal(lp.certified, [2, 2, 1, 1, 1, 0])
    for solver in SOLVERS:
        milp = collective.certify_collective(certs, eps, mode="milp", milp_solver=solver)
        np.testing.assert_array_equal(milp.certified, [2, 2, 1, 1, 1, 0])
        assert set(milp.status) <= {"OPTIMAL", "NAIVE_ONLY", "MONOTONE_ZERO"}
    hull = collective.certify_collective(certs, eps, mode="hull")
    np.testing.assert_array_equal(hull.certified, [2, 2, 1, 1, 1, 0])
    # "LP-on-both" column: the paper's LP objective without the naive filter, 2 - attack.
    weights = certs.weights
    levels = _levels.levels_of(certs.eta, np.ones(2, np.int64), certs.group)
    funcs = [_relax.paper_function(lv.eta, lv.count) for lv in levels]
    wrows = np.stack([weights[:, lv.group, :] for lv in levels])
    for total, expected in zip(s, [1.5, 1.0, 0.75, 0.5, 0.05, 0.0]):
        rel = _relax.solve_relaxation(funcs, wrows, np.array([total]))
        assert 2 - rel.bound == pytest.approx(expected, abs=1e-9)
        assert 2 - _scipy_paper_lp(weights, certs.eta, certs.group, [total]) == pytest.approx(
            expected, abs=1e-7
        )


def test_tv5_binning():
    radii = np.array([0.5, 0.6, 0.9, 1.0])
    problem = collective.from_base_certs(_certs(radii**2, np.zeros(4, int), np.ones((1, 1, 1))))
    two = collective.binning(2).apply(problem)
    np.testing.assert_allclose(two.eta, [0.25, 1.0])
    np.testing.assert_array_equal(two.multiplicity, [3, 1])
    np.testing.assert_allclose(two.eta[two.row_of_output], [0.25, 0.25, 0.25, 1.0])
    for bins in (4, 5, 64):
        same = collective.binning(bins).apply(problem)
        np.testing.assert_allclose(np.sort(same.eta), radii**2)
        np.testing.assert_array_equal(same.multiplicity, [1, 1, 1, 1])


def test_tv6_binary_single_output_two_budget_types():
    """TV6: eta = log 17, gamma_a = 2.795062, gamma_d = 0.490878: at most 5 deletions or 1
    addition certified; the collective certificate of one output equals its own."""
    tp, tm = 0.01, 0.6
    gamma_a = np.log((1 - tm) ** 2 / tp + tm**2 / (1 - tp))
    gamma_d = np.log(tp**2 / (1 - tm) + (1 - tp) ** 2 / tm)
    assert gamma_a == pytest.approx(2.795062, abs=1e-6)
    certs = _certs([np.log(17.0)], [0], np.array([[[gamma_a]], [[gamma_d]]]), norm="binary")
    budgets = np.array([[0, 5], [0, 6], [1, 0], [2, 0], [1, 1], [0, 0]])
    for mode in collective.MODES:
        res = collective.certify_collective(certs, budgets, mode=mode)
        # (1, 1): 2.795 + 0.491 = 3.286 >= log 17 = 2.833: attacked.
        np.testing.assert_array_equal(res.certified, [1, 0, 1, 0, 0, 1])


# ---------------------------------------------------------------------------------------------
# Random small problems against brute force and scipy.

_ETA = [k / 8 for k in range(1, 33)]  # a grid: ties are exact, never "nearly" (no flaky 1e-8s)
_W = [k / 2 for k in range(0, 11)]


@st.composite
def small_problems(draw, max_rows=8):
    norm = draw(st.sampled_from(["l2", "l1", "binary"]))
    types = 2 if norm == "binary" else 1
    groups = draw(st.integers(1, 3))
    regions = draw(st.integers(1, 3))
    rows = draw(st.integers(1, max_rows))
    weights = np.array(
        draw(
            st.lists(
                st.sampled_from(_W),
                min_size=types * groups * regions,
                max_size=types * groups * regions,
            )
        )  # fmt: skip
    ).reshape(types, groups, regions)
    eta = np.array(draw(st.lists(st.sampled_from(_ETA), min_size=rows, max_size=rows)))
    group = np.array(draw(st.lists(st.integers(0, groups - 1), min_size=rows, max_size=rows)))
    if norm == "binary":
        budget = np.array([[draw(st.integers(0, 3)), draw(st.integers(0, 3))]])
    else:
        budget = np.array([draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5]))])
    return _certs(eta, group, weights, norm), budget


@settings(max_examples=30)
@given(small_problems())
def test_milp_equals_brute_force_and_relaxations_are_ordered(case):
    certs, budget = case
    totals = budget_totals(certs.norm, budget)[0]
    naive = _naive_mask(certs.weights, certs.eta, certs.group, totals)
    attack = _brute_force_attack(certs.weights, certs.eta, certs.group, totals)
    exact = certs.num_outputs - attack
    results = {}
    for solver in SOLVERS:
        res = collective.certify_collective(certs, budget, mode="milp", milp_solver=solver)
        assert res.certified[0] == exact, solver
        assert res.naive[0] == naive.sum()
        results[solver] = res
    lp = collective.certify_collective(certs, budget, mode="lp")
    hull = collective.certify_collective(certs, budget, mode="hull")
    assert naive.sum() <= lp.certified[0] <= hull.certified[0] <= exact
    # The paper LP after the exact naive filter equals scipy's per-row LP on the other rows.
    keep = ~naive
    if keep.any() and np.any(totals > 0):
        reference = _scipy_paper_lp(certs.weights, certs.eta[keep], certs.group[keep], totals)
        assert lp.attack_bound[0] == pytest.approx(reference, rel=1e-7, abs=1e-7)
        one_hot = _scipy_one_hot_lp(certs.weights, certs.eta[keep], certs.group[keep], totals)
        assert hull.attack_bound[0] == pytest.approx(one_hot, rel=1e-7, abs=1e-7)
        assert attack - 1e-7 <= hull.attack_bound[0] <= reference + 1e-7
    # Every count is the sound rounding of its bound (SPEC 6).
    for res in (lp, hull, *results.values()):
        tol = 1e-6 * max(1, certs.num_outputs - res.naive[0])
        assert res.certified[0] == certs.num_outputs - np.floor(res.attack_bound[0] + tol)


@settings(max_examples=25)
@given(small_problems(), st.integers(1, 3))
def test_transforms_never_certify_more_and_lossless_ones_change_nothing(case, num_bins):
    certs, budget = case
    problem = collective.from_base_certs(certs)
    distinct = max(np.unique(certs.eta[certs.group == k]).size for k in np.unique(certs.group))
    for mode in collective.MODES:
        plain = collective.solve(problem, budget, mode=mode)
        shared = collective.solve(collective.share().apply(problem), budget, mode=mode)
        binned = collective.solve(collective.binning(num_bins).apply(problem), budget, mode=mode)
        lossless = collective.solve(collective.binning(distinct).apply(problem), budget, mode=mode)
        assert shared.certified[0] == plain.certified[0]
        assert lossless.certified[0] == plain.certified[0]
        assert binned.certified[0] <= plain.certified[0]
    # The naive filter is exact for the MILP: same count, split differently.
    with_totals = collective.with_totals(problem, budget[0])
    filtered = collective.naive_filter().apply(with_totals)
    a = collective.solve(problem, budget, mode="milp")
    b = collective.solve(filtered, budget, mode="milp")
    assert a.certified[0] == b.certified[0] and a.naive[0] == b.naive[0]


@settings(max_examples=20)
@given(small_problems(max_rows=6), st.lists(st.floats(0.0, 50.0), min_size=3, max_size=3))
def test_dual_bound_holds_for_every_multiplier(case, lam_values):
    """U(lam) >= the LP optimum for any lam >= 0 (weak duality; what makes every bound sound)."""
    certs, budget = case
    totals = budget_totals(certs.norm, budget)[0]
    levels = _levels.levels_of(certs.eta, np.ones(certs.num_outputs, np.int64), certs.group)
    funcs = [_relax.paper_function(lv.eta, lv.count) for lv in levels]
    wrows = np.stack([certs.weights[:, lv.group, :] for lv in levels])
    reference = _scipy_paper_lp(certs.weights, certs.eta, certs.group, totals)
    lam = np.array(lam_values[: len(levels)])
    assert _relax.dual_bound(funcs, wrows, totals, lam) >= reference - 1e-9
    # The concave-hull bound is below the paper's for the same data, and above the exact attack.
    hulls = [_relax.hull_function(*lv.points) for lv in levels]
    hull = _relax.solve_relaxation(hulls, wrows, totals).bound
    assert hull <= _relax.solve_relaxation(funcs, wrows, totals).bound + 1e-7
    assert hull >= _brute_force_attack(certs.weights, certs.eta, certs.group, totals) - 1e-7


def test_prefix_hulls_match_direct_hulls():
    rng = np.random.default_rng(1)
    x = np.concatenate([[0.0], np.cumsum(rng.uniform(0.01, 1.0, 60))])
    y = np.concatenate([[0.0], np.cumsum(rng.integers(1, 30, 60)).astype(float)])
    parent = _relax.hull_parents(x, y)
    for n in (1, 2, 5, 17, 61):
        direct = _relax.hull_function(x[:n], y[:n])
        prefix = _relax.prefix_hull(x, y, parent, n)
        np.testing.assert_array_equal(prefix.x, direct.x)
        for r in np.linspace(0, x[n - 1] * 1.2, 25):
            assert prefix(r) == pytest.approx(direct(r))
            # A concave majorant of the step function through the points.
            assert prefix(r) >= y[np.searchsorted(x[:n], r, side="right") - 1] - 1e-9


# ---------------------------------------------------------------------------------------------
# Budgets, monotonicity, time limits.


def _grid_problem(seed, groups=6, rows=120, bins=None):
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(groups)))
    cells = np.array([(i // side, i % side) for i in range(groups)])
    dist = np.abs(cells[:, None, :] - cells[None, :, :]).max(axis=2)
    stds = 0.15 + 0.85 * dist / max(dist.max(), 1)
    weights = (1.0 / stds**2)[None]
    group = rng.integers(0, groups, rows)
    eta = rng.uniform(0.05, 3.0, rows) ** 2
    return _certs(eta, group, weights)


def test_batch_equals_single_budgets_and_counts_shrink_with_the_budget():
    certs = _grid_problem(0)
    eps = np.array([0.3, 0.0, 0.1, 0.05, 0.2, 0.6, 1.2, 2.5])
    for mode in collective.MODES:
        batch = collective.certify_collective(certs, eps, mode=mode)
        single = [collective.certify_collective(certs, [e], mode=mode).certified[0] for e in eps]
        np.testing.assert_array_equal(batch.certified, single)
        order = np.argsort(eps)
        assert np.all(np.diff(batch.certified[order]) <= 0)
        assert np.all(batch.certified >= batch.naive)
        assert batch.certified[1] == certs.num_outputs and batch.status[1] == "ZERO_BUDGET"
        assert batch.num_targets == certs.num_outputs


def test_binary_grid_is_monotone_in_both_budget_types_and_solvers_agree():
    rng = np.random.default_rng(3)
    clusters, rows = 3, 40
    weights = np.stack([rng.uniform(0.3, 2.5, (clusters, clusters)),
                        rng.uniform(0.05, 0.5, (clusters, clusters))])  # fmt: skip
    eta = rng.uniform(0.2, 3.0, rows)
    certs = _certs(eta, rng.integers(0, clusters, rows), weights, norm="binary")
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(8), indexing="ij"), -1).reshape(-1, 2)
    res = {s: collective.certify_collective(certs, grid, mode="milp", milp_solver=s)
           for s in SOLVERS}  # fmt: skip
    np.testing.assert_array_equal(res["bnb"].certified, res["scip"].certified)
    table = res["bnb"].certified.reshape(4, 8)
    assert np.all(np.diff(table, axis=0) <= 0) and np.all(np.diff(table, axis=1) <= 0)
    lp = collective.certify_collective(certs, grid, mode="lp").certified
    assert np.all(lp <= res["bnb"].certified)


def test_time_limited_milp_never_reports_more_than_the_exact_answer():
    certs = _grid_problem(5, groups=9, rows=400)
    eps = [0.35]
    exact = collective.certify_collective(certs, eps, mode="milp", milp_solver="bnb")
    assert exact.status[0] == "OPTIMAL"
    assert exact.attack_found[0] == pytest.approx(exact.attack_bound[0])
    for solver in SOLVERS:
        same = collective.certify_collective(certs, eps, mode="milp", milp_solver=solver)
        assert same.certified[0] == exact.certified[0]
        limited = collective.certify_collective(
            certs, eps, mode="milp", milp_solver=solver, time_limit_s=1e-3
        )
        assert limited.certified[0] <= exact.certified[0]
        assert limited.status[0] in ("OPTIMAL", "TIME_LIMIT_BOUND", "HULL_FALLBACK")
        # The count comes from a proven bound (>= the true largest attack), not the incumbent.
        assert limited.attack_bound[0] >= exact.attack_found[0] - 1e-6
        assert limited.attack_found[0] <= exact.attack_found[0]
        tol = 1e-6 * (certs.num_outputs - limited.naive[0])
        assert limited.certified[0] == certs.num_outputs - np.floor(limited.attack_bound[0] + tol)
        if solver == "bnb":  # the root alone does not close this instance
            assert limited.status[0] == "TIME_LIMIT_BOUND"


def test_binned_certify_collective_never_below_naive_nor_above_exact():
    certs = _grid_problem(7, groups=4, rows=200)
    eps = [0.1, 0.2, 0.4]
    exact = collective.certify_collective(certs, eps, mode="milp")
    for bins in (1, 3, 8):
        for mode in collective.MODES:
            res = collective.certify_collective(certs, eps, mode=mode, num_bins=bins)
            assert np.all(res.certified >= res.naive)
            assert np.all(res.certified <= exact.certified)
            np.testing.assert_array_equal(res.naive, exact.naive)


def test_cutting_plane_lp_matches_scipy_on_many_breakpoints():
    """Above `_relax.DIRECT_PIECES` segments the paper LP is solved by cutting planes."""
    rng = np.random.default_rng(11)
    groups, rows = 3, 1500
    assert rows > _relax.DIRECT_PIECES
    weights = rng.uniform(0.5, 6.0, (1, groups, groups))
    certs = _certs(rng.uniform(0.05, 4.0, rows), rng.integers(0, groups, rows), weights)
    eps = [0.3, 0.5, 0.8]
    res = collective.certify_collective(certs, eps, mode="lp")
    for e, bound, status in zip(eps, res.attack_bound, res.status):
        totals = np.array([e * e])
        keep = ~_naive_mask(weights, certs.eta, certs.group, totals)
        reference = _scipy_paper_lp(weights, certs.eta[keep], certs.group[keep], totals)
        assert status == "OPTIMAL"
        assert bound == pytest.approx(reference, rel=1e-8)


def test_rounding_is_only_in_the_sound_direction():
    assert _engine.certified_count(0, 2, 1.9999995) == 0  # within tol: counted as 2 attacked
    assert _engine.certified_count(3, 10, 4.2) == 3 + 10 - 4
    assert _engine.certified_count(0, 5, -1e-12) == 5
    assert _engine.certified_count(0, 5, 7.0) == 0


def test_targets_select_outputs_and_abstentions_never_count():
    certs = _certs([1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], np.ones((1, 1, 1)),
                   abstain=[False, True, False, False])  # fmt: skip
    assert certs.eta[1] == 0.0
    targets = np.array([True, True, False, True])
    res = collective.certify_collective(certs, [0.0, 1.2], targets=targets, mode="milp")
    assert res.num_targets == 2
    # eps 1.2 -> total 1.44 >= eta 1.0 but < 4.0: one of the two targets attacked.
    np.testing.assert_array_equal(res.certified, [2, 1])
    problem = collective.from_base_certs(certs, targets)
    np.testing.assert_array_equal(problem.row_of_output, [0, -1, -1, 1])


# ---------------------------------------------------------------------------------------------
# Bad inputs.


def test_bad_inputs_raise_clear_errors():
    certs = _tv4()
    problem = collective.from_base_certs(certs)
    with pytest.raises(ValueError, match="budgets"):
        collective.certify_collective(certs, [-0.1])
    with pytest.raises(ValueError, match="budgets"):
        collective.solve(problem, [np.nan])
    with pytest.raises(ValueError, match="mode"):
        collective.solve(problem, [0.1], mode="cvxpy")
    with pytest.raises(ValueError, match="milp_solver"):
        collective.solve(problem, [0.1], mode="milp", milp_solver="gurobi")
    with pytest.raises(ValueError, match="time_limit_s"):
        collective.solve(problem, [0.1], mode="milp", time_limit_s=0)
    with pytest.raises(ValueError, match="num_bins"):
        collective.certify_collective(certs, [0.1], num_bins=0)
    with pytest.raises(ValueError, match="num_bins"):
        collective.binning(0)
    with pytest.raises(ValueError, match="targets"):
        collective.certify_collective(certs, [0.1], targets=np.ones(3, bool))
    with pytest.raises(ValueError, match="eta"):
        raw = BaseCertificates(
            np.zeros(2, np.int64), np.zeros(2, bool), np.array([1.0, np.nan]), np.array([0, 1]),
            certs.weights, ("l2",), "l2",
        )  # fmt: skip
        collective.from_base_certs(raw)
    with pytest.raises(ValueError, match="Shapes must match"):
        collective.solve(problem._replace(group=np.array([0])), [0.1])
    with pytest.raises(ValueError, match="eta"):
        collective.solve(problem._replace(eta=np.array([1.0, np.nan])), [0.1])
    with pytest.raises(ValueError, match="group"):
        collective.solve(problem._replace(group=np.array([0, 5])), [0.1])
    with pytest.raises(ValueError, match="budgets"):
        binary = _certs([1.0], [0], np.ones((2, 1, 1)), norm="binary")
        collective.certify_collective(binary, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="transforms"):
        collective.chain(collective.share(), "binning")
    # A problem naive-filtered at eps = 0.2 may not be solved at a larger budget.
    filtered = collective.naive_filter().apply(collective.with_totals(problem, 0.2))
    assert filtered.num_naive == 2
    with pytest.raises(ValueError, match="budgets"):
        collective.solve(filtered, [0.3])
    assert collective.solve(filtered, [0.1, 0.2]).certified.tolist() == [2, 2]


@pytest.mark.slow
@settings(max_examples=15)
@given(small_problems(max_rows=12))
def test_milp_equals_brute_force_up_to_twelve_rows(case):
    certs, budget = case
    totals = budget_totals(certs.norm, budget)[0]
    exact = certs.num_outputs - _brute_force_attack(certs.weights, certs.eta, certs.group, totals)
    for solver in SOLVERS:
        res = collective.certify_collective(certs, budget, mode="milp", milp_solver=solver)
        assert res.certified[0] == exact
