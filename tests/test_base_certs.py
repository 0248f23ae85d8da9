"""Base certificates (SPEC 5): test vectors, exact references, brute force, bad inputs."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize, special, stats

from lrsjax import base_certs as bc

# ---------------------------------------------------------------------------------------------
# Public surface


# ---------------------------------------------------------------------------------------------
# Gaussian (l2)


def test_tv1_gaussian_eta_radius_and_weights():
    certs = bc.gaussian([3], [0.9], [0], [[0.25, 1.0]])
    assert certs.norm == "l2" and certs.budget_kinds == ("l2",)
    assert special.ndtri(0.9) == pytest.approx(1.2815516, abs=1e-7)
    assert certs.eta[0] == pytest.approx(1.6423744, abs=1e-7)
    np.testing.assert_allclose(certs.weights, [[[16.0, 1.0]]])
    assert bc.isotropic_radius(0.9, 0.25) == pytest.approx(0.3203879, abs=1e-7)
    spend = np.array([0.05, 0.5])
    assert certs.weights[0, 0] @ spend == pytest.approx(1.3)
    assert certs.weights[0, 0] @ spend < certs.eta[0]  # robust


def test_gaussian_abstains_at_or_below_one_half_and_masks_infinite_stds():
    certs = bc.gaussian([0, 1, 2], [0.5, 0.3, 0.7], [0, 1, 1], [[0.5, np.inf], [np.inf, 2.0]])
    np.testing.assert_array_equal(certs.abstain, [True, True, False])
    np.testing.assert_array_equal(certs.eta[:2], [0.0, 0.0])
    assert certs.eta[2] == pytest.approx(special.ndtri(0.7) ** 2)
    np.testing.assert_allclose(certs.weights[0], [[4.0, 0.0], [0.0, 0.25]])


def test_gaussian_certificate_threshold_with_naive_certified():
    """A perturbation with W.b just below eta is certified; just above it is not."""
    sigma, p = 0.5, 0.95
    certs = bc.gaussian([1], [p], [0], [[sigma]])
    radius = bc.isotropic_radius(p, sigma)
    assert radius == pytest.approx(math.sqrt(certs.eta[0]) * sigma)
    got = bc.naive_certified(certs, [0.0, radius * (1 - 1e-9), radius * (1 + 1e-9)])
    np.testing.assert_array_equal(got, [[True, True, False]])


def test_gaussian_is_tight_for_a_linear_classifier():
    """Exact reference: smoothing g(z) = [w.z + b > 0] with N(x, diag(s^2)) gives
    P(g = 1) = Phi(m / sqrt(sum w^2 s^2)), m = w.x + b; the cheapest flipping perturbation costs
    exactly m^2 / sum w^2 s^2 in the certificate's weighted norm, which must equal eta."""
    rng = np.random.default_rng(3)
    regions_of_dim = np.repeat(np.arange(3), 4)  # 12 dims, 3 regions of 4
    stds = np.array([[0.2, 0.5, 1.3]])
    s = stds[0, regions_of_dim]
    for _ in range(5):
        w = rng.normal(size=12)
        x = rng.uniform(size=12)
        b = 0.6 - w @ x  # margin 0.6 > 0: class 1
        m = w @ x + b
        p = stats.norm.cdf(m / np.sqrt(np.sum(w**2 * s**2)))
        certs = bc.gaussian([1], [p], [0], stds)
        delta = -m * w * s**2 / np.sum(w**2 * s**2)  # lands exactly on the decision boundary
        assert w @ (x + delta) + b == pytest.approx(0.0, abs=1e-12)
        spend = np.bincount(regions_of_dim, weights=delta**2, minlength=3)
        cost = certs.weights[0, 0] @ spend
        assert cost == pytest.approx(certs.eta[0], rel=1e-9)
        assert certs.weights[0, 0] @ (0.999**2 * spend) < certs.eta[0]


@given(st.floats(0.5001, 0.999999), st.floats(0.01, 10.0))
def test_isotropic_radius_matches_gaussian_eta(p, sigma):
    certs = bc.gaussian([0], [p], [0], [[sigma]])
    assert bc.isotropic_radius(p, sigma) ** 2 == pytest.approx(certs.eta[0] * sigma**2, rel=1e-9)


def test_isotropic_radius_abstain_marker_is_zero():
    np.testing.assert_array_equal(bc.isotropic_radius([0.5, 0.2, 0.0], 1.0), [0.0, 0.0, 0.0])
    assert bc.isotropic_radius(0.5001, 1.0) > 0


# ---------------------------------------------------------------------------------------------
# l1: uniform and Laplace


def test_uniform_l1_is_tight_in_one_dimension():
    """g(z) = [z > 0] at x = m in (0, lam) with U[x - lam, x + lam]: P = 1/2 + m / (2 lam), and
    the smoothed prediction flips exactly at distance m, i.e. at weighted cost m / lam."""
    lam = 0.8
    for m in (0.05, 0.3, 0.7):
        p = 0.5 + m / (2 * lam)
        certs = bc.uniform_l1([1], [p], [0], [[lam]])
        assert certs.norm == "l1"
        assert certs.eta[0] == pytest.approx(m / lam)
        np.testing.assert_allclose(certs.weights, [[[1 / lam]]])
        got = bc.naive_certified(certs, [m * (1 - 1e-9), m * (1 + 1e-9)])
        np.testing.assert_array_equal(got, [[True, False]])


def test_laplace_l1_is_tight_in_one_dimension():
    """g(z) = [z > 0] at x = m > 0 with Laplace(x, lam): P = 1 - exp(-m / lam) / 2, so
    eta = -log(2 (1 - P)) = m / lam: the distance to the flip, in units of lam."""
    lam = 0.4
    for m in (0.01, 0.5, 2.0):
        p = 1 - 0.5 * math.exp(-m / lam)
        certs = bc.laplace_l1([0], [p], [0], [[lam]])
        assert certs.eta[0] == pytest.approx(m / lam, rel=1e-9)
        got = bc.naive_certified(certs, [m * (1 - 1e-7), m * (1 + 1e-7)])
        np.testing.assert_array_equal(got, [[True, False]])


def test_l1_certificates_abstain_and_mask():
    for fn in (bc.uniform_l1, bc.laplace_l1):
        certs = fn([0, 0], [0.5, 0.75], [0, 0], [[1.0, np.inf]])
        np.testing.assert_array_equal(certs.abstain, [True, False])
        np.testing.assert_allclose(certs.weights, [[[1.0, 0.0]]])
    assert bc.uniform_l1([0], [0.75], [0], [[1.0]]).eta[0] == pytest.approx(0.5)
    assert bc.laplace_l1([0], [0.75], [0], [[1.0]]).eta[0] == pytest.approx(math.log(2))


# ---------------------------------------------------------------------------------------------
# Bernoulli costs and variance-constrained certificates


def test_tv6_bernoulli_costs():
    gamma_add, gamma_del = bc.bernoulli_costs(0.01, 0.6)
    assert gamma_add == pytest.approx(2.795062, abs=1e-6)
    assert gamma_del == pytest.approx(0.490878, abs=1e-6)


@given(st.floats(0.001, 0.999), st.floats(0.001, 0.999))
def test_bernoulli_costs_are_log_one_plus_chi_square(tp, tm):
    """Brute force: chi^2(P' || P) + 1 = sum_z P'(z)^2 / P(z) over the two outcomes of one bit."""
    gamma_add, gamma_del = bc.bernoulli_costs(tp, tm)
    clean0, pert0 = np.array([1 - tp, tp]), np.array([tm, 1 - tm])  # a bit 0 -> 1
    clean1, pert1 = pert0, clean0  # a bit 1 -> 0
    assert gamma_add == pytest.approx(np.log(np.sum(pert0**2 / clean0)), rel=1e-9, abs=1e-12)
    assert gamma_del == pytest.approx(np.log(np.sum(pert1**2 / clean1)), rel=1e-9, abs=1e-12)


def test_bernoulli_costs_broadcast():
    gamma_add, gamma_del = bc.bernoulli_costs([0.01, 0.1], [[0.6], [0.9]])
    assert gamma_add.shape == gamma_del.shape == (2, 2)
    assert gamma_add[0, 0] == pytest.approx(2.795062, abs=1e-6)


def _tv6_weights():
    gamma_add, gamma_del = bc.bernoulli_costs(0.01, 0.6)
    return np.array([gamma_add, gamma_del])[:, None, None]  # [T=2, K=1, M=1]


def test_tv6_variance_constrained_eta_and_budgets():
    certs = bc.variance_constrained([2], [0.9], [0.01], [0], _tv6_weights())
    assert certs.norm == "binary" and certs.budget_kinds == ("add", "del")
    assert certs.eta[0] == pytest.approx(math.log(17), abs=1e-6)  # zeta, not zeta^2 (D1)
    budgets = [[0, 5], [0, 6], [1, 0], [2, 0], [1, 1]]
    got = bc.naive_certified(certs, budgets)
    np.testing.assert_array_equal(got, [[True, False, True, False, False]])


def test_variance_constrained_abstains_at_or_below_one_half():
    """D3: mu_lower <= 1/2 must abstain, however small the variance bound."""
    certs = bc.variance_constrained(
        [0, 1, 2], [0.5, 0.2, 0.51], [1e-6] * 3, [0] * 3, _tv6_weights()
    )
    np.testing.assert_array_equal(certs.abstain, [True, True, False])
    got = bc.naive_certified(certs, [[0, 0]])
    np.testing.assert_array_equal(got[:, 0], [False, False, True])


def test_variance_constrained_l2_never_beats_the_exact_gaussian_certificate():
    """For a hard classifier the score's variance is mu (1 - mu); the variance-constrained eta
    with W = 1/s^2 must not exceed the exact Neyman-Pearson eta = Phi^{-1}(mu)^2."""
    mu = np.linspace(0.501, 0.9999, 400)
    weights = np.array([[[1.0 / 0.3**2]]])
    vc = bc.variance_constrained(np.zeros(400), mu, mu * (1 - mu), np.zeros(400), weights, "l2")
    exact = bc.gaussian(np.zeros(400), mu, np.zeros(400), [[0.3]])
    assert np.all(vc.eta <= exact.eta * (1 + 1e-12))


def test_variance_constrained_never_beats_exact_sparse_smoothing():
    """Cross-check of two certificates for isotropic flips: with exact mu and the hard-classifier
    variance mu (1 - mu), whatever the variance-constrained certificate certifies, the exact
    Neyman-Pearson certificate certifies too."""
    for tp, tm in [(0.01, 0.6), (0.1, 0.3), (0.002, 0.9)]:
        mu = np.linspace(0.51, 0.999, 60)
        gamma_add, gamma_del = bc.bernoulli_costs(tp, tm)
        weights = np.array([gamma_add, gamma_del])[:, None, None]
        vc = bc.variance_constrained(np.zeros(60), mu, mu * (1 - mu), np.zeros(60), weights)
        grid = bc.sparse_smoothing_grid(mu, tp, tm, 4, 12)
        budgets = [[a, d] for a in range(5) for d in range(13)]
        by_vc = bc.naive_certified(vc, budgets).reshape(60, 5, 13)
        assert not np.any(by_vc & ~grid)


@given(
    st.floats(0.5, 1.0),
    st.floats(1e-4, 0.25),
    st.floats(1e-4, 0.25),
)
def test_larger_zeta_never_raises_eta(mu, zeta_a, zeta_b):
    small, large = sorted([zeta_a, zeta_b])
    weights = _tv6_weights()
    eta_small = bc.variance_constrained([0], [mu], [small], [0], weights).eta[0]
    eta_large = bc.variance_constrained([0], [mu], [large], [0], weights).eta[0]
    assert eta_large <= eta_small


# ---------------------------------------------------------------------------------------------
# Sparse smoothing (exact Neyman-Pearson, Bojchevski et al. 2020)


def test_tv7_sparse_smoothing_worst_mass():
    expected_del = [0.835, 0.72775, 0.5507875, 0.2588]
    for r_del, want in zip(range(1, 5), expected_del):
        got = bc.sparse_smoothing_worst_mass(0.9, 0.01, 0.6, 0, r_del)
        assert got == pytest.approx(want, abs=5e-5)
    assert bc.sparse_smoothing_worst_mass(0.9, 0.01, 0.6, 1, 0) == pytest.approx(0.5455, abs=1e-4)
    assert bc.sparse_smoothing_worst_mass(0.9, 0.01, 0.6, 2, 0) == pytest.approx(0.3306, abs=1e-4)
    grid = bc.sparse_smoothing_grid(0.9, 0.01, 0.6, 3, 5)
    assert grid.shape == (4, 6)
    np.testing.assert_array_equal(grid[0], [True, True, True, True, False, False])
    np.testing.assert_array_equal(grid[:, 0], [True, True, False, False])


def _brute_force_worst_mass(p, tp, tm, r_add, r_del, extra_bits):
    """LP over every noise outcome of the changed bits plus `extra_bits` unchanged ones:
    min_h E_{x'}[h] s.t. E_x[h] >= p, 0 <= h <= 1 (the definition of the worst case)."""
    x = [0] * r_add + [1] * r_del + [0] * extra_bits
    x_pert = [1] * r_add + [0] * r_del + [0] * extra_bits

    def prob(z, base):
        out = 1.0
        for bit, b in zip(z, base):
            one = tp if b == 0 else 1 - tm
            out *= one if bit else 1 - one
        return out

    outcomes = list(itertools.product([0, 1], repeat=len(x)))
    clean = np.array([prob(z, x) for z in outcomes])
    pert = np.array([prob(z, x_pert) for z in outcomes])
    result = optimize.linprog(
        pert, A_ub=-clean[None], b_ub=[-p], bounds=[(0, 1)] * len(outcomes), method="highs"
    )
    assert result.status == 0
    return result.fun


@pytest.mark.parametrize("tp,tm", [(0.01, 0.6), (0.2, 0.35), (0.4, 0.1)])
def test_sparse_smoothing_matches_brute_force_lp(tp, tm):
    for r_add, r_del in [(0, 1), (1, 0), (1, 1), (2, 1), (1, 3), (0, 4), (3, 0)]:
        extra = 1 if r_add + r_del <= 3 else 0
        for p in (0.55, 0.8, 0.97):
            want = _brute_force_worst_mass(p, tp, tm, r_add, r_del, extra)
            got = bc.sparse_smoothing_worst_mass(p, tp, tm, r_add, r_del)
            assert got == pytest.approx(want, abs=1e-7), (r_add, r_del, p)


def _exact_worst_masses(ps, tp, tm, r_add, r_del):
    """Rational-arithmetic reference (no rounding at all) for large radii."""
    tp, tm = Fraction(tp), Fraction(tm)
    regions = []
    for i in range(r_add + 1):
        for j in range(r_del + 1):
            ca, cd = math.comb(r_add, i), math.comb(r_del, j)
            clean = ca * tp**i * (1 - tp) ** (r_add - i) * cd * (1 - tm) ** j * tm ** (r_del - j)
            pert = ca * (1 - tm) ** i * tm ** (r_add - i) * cd * tp**j * (1 - tp) ** (r_del - j)
            regions.append((pert / clean, clean, pert))
    regions.sort()
    out = []
    for p in ps:
        left, total = Fraction(p), Fraction(0)
        for _, clean, pert in regions:
            take = min(left, clean)
            total += pert * take / clean
            left -= take
            if left == 0:
                break
        out.append(float(total))
    return np.array(out)


def _exact_worst_fractions(ps, tp, tm, r_add, r_del):
    """The exact worst-case masses of the float inputs as Fractions (no rounding at all)."""
    tp, tm = Fraction(tp), Fraction(tm)
    regions = []
    for i in range(r_add + 1):
        for j in range(r_del + 1):
            ca, cd = math.comb(r_add, i), math.comb(r_del, j)
            clean = ca * tp**i * (1 - tp) ** (r_add - i) * cd * (1 - tm) ** j * tm ** (r_del - j)
            pert = ca * (1 - tm) ** i * tm ** (r_add - i) * cd * tp**j * (1 - tp) ** (r_del - j)
            regions.append((pert / clean, clean, pert))
    regions.sort()
    out = []
    for p in ps:
        left, total = Fraction(p), Fraction(0)
        for _, clean, pert in regions:
            take = min(left, clean)
            total += pert * take / clean
            left -= take
        out.append(total)
    return out


@pytest.mark.parametrize(
    "tp,tm,r_add,r_del",
    [(0.4, 0.1, 50, 0), (0.01, 0.6, 40, 0), (0.2, 0.35, 6, 5), (0.001, 0.95, 2, 30)],
)
def test_sparse_smoothing_worst_mass_never_exceeds_the_exact_value(tp, tm, r_add, r_del):
    ps = [0.0, 0.3, 0.51, 0.675, 0.9, 0.999, 1 - 1e-6, 1 - 2.0**-40]
    got = bc.sparse_smoothing_worst_mass(ps, tp, tm, r_add, r_del)
    for p, value, exact in zip(ps, got, _exact_worst_fractions(ps, tp, tm, r_add, r_del)):
        assert Fraction(float(value)) <= exact, (p, float(Fraction(float(value)) - exact))
        assert value >= float(exact) - 1e-10, p


@pytest.mark.parametrize(
    "tp,tm,r_add,r_del",
    [(0.001, 0.95, 0, 100), (0.001, 0.95, 2, 100), (0.3, 0.3, 100, 0), (0.02, 0.9, 5, 60)],
)
def test_sparse_smoothing_is_stable_at_large_radii(tp, tm, r_add, r_del):
    ps = [0.6, 0.9, 0.999]
    want = _exact_worst_masses(ps, tp, tm, r_add, r_del)
    got = bc.sparse_smoothing_worst_mass(ps, tp, tm, r_add, r_del)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_sparse_smoothing_certifies_a_hundred_deletions_when_it_should():
    grid = bc.sparse_smoothing_grid([0.999], 0.001, 0.95, 1, 150)
    deletions = int(grid[0, 0].sum()) - 1
    assert deletions >= 100
    assert deletions < 150
    at_limit = _exact_worst_masses([0.999], 0.001, 0.95, 0, deletions)[0]
    past_limit = _exact_worst_masses([0.999], 0.001, 0.95, 0, deletions + 1)[0]
    assert at_limit > 0.5 >= past_limit


def test_sparse_smoothing_grid_is_the_cumulative_worst_mass_test():
    p = np.array([[0.3, 0.5, 0.6], [0.8, 0.95, 0.999]])
    tp, tm = 0.05, 0.4
    grid = bc.sparse_smoothing_grid(p, tp, tm, 3, 6)
    assert grid.shape == (2, 3, 4, 7)
    masses = np.stack(
        [
            np.stack([bc.sparse_smoothing_worst_mass(p, tp, tm, a, d) for d in range(7)], -1)
            for a in range(4)
        ],
        -2,
    )
    single = masses > 0.5
    cumulative = np.logical_and.accumulate(np.logical_and.accumulate(single, -1), -2)
    np.testing.assert_array_equal(grid, cumulative)
    assert not grid[0, 0].any() and not grid[0, 1].any()  # p <= 1/2: nothing, not even (0, 0)


@given(st.floats(0.0, 0.999), st.floats(0.0, 0.999), st.integers(0, 5), st.integers(0, 5))
def test_worst_mass_is_monotone_in_p_lower(p_a, p_b, r_add, r_del):
    low, high = sorted([p_a, p_b])
    m_low = bc.sparse_smoothing_worst_mass(low, 0.05, 0.5, r_add, r_del)
    m_high = bc.sparse_smoothing_worst_mass(high, 0.05, 0.5, r_add, r_del)
    assert m_low <= m_high + 1e-15
    assert bc.sparse_smoothing_worst_mass(low, 0.05, 0.5, 0, 0) == pytest.approx(low)


# ---------------------------------------------------------------------------------------------
# naive_certified


def test_naive_certified_uses_the_worst_region_per_group():
    # group 0 weighs (4, 1), group 1 weighs (1, 4); eta = 1 each (TV4's toy, naive column).
    certs = bc.make_base_certificates(
        [0, 1], [False, False], [1.0, 1.0], [0, 1], [[[4.0, 1.0], [1.0, 4.0]]], "l2"
    )
    budgets = np.sqrt([0.10, 0.20, 0.25, 0.30, 0.39, 0.40])
    got = bc.naive_certified(certs, budgets)
    expected = np.array([True, True, False, False, False, False])
    np.testing.assert_array_equal(got, np.stack([expected, expected]))


def test_naive_certified_binary_and_abstain():
    certs = bc.make_base_certificates(
        [0, 0, 0],
        [False, True, False],
        [1.0, 0.0, 3.0],
        [0, 0, 1],
        [[[0.5, 0.2], [1.0, 0.0]], [[0.1, 0.3], [0.0, 2.0]]],
        "binary",
    )
    got = bc.naive_certified(certs, [[0, 0], [1, 1], [2, 0], [0, 2]])
    # group 0: worst add 0.5, worst del 0.3; group 1: worst add 1.0, worst del 2.0
    np.testing.assert_array_equal(got[0], [True, True, False, True])
    assert not got[1].any()
    np.testing.assert_array_equal(got[2], [True, False, True, False])


# ---------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: bc.gaussian([0], [1.0], [0], [[1.0]]), "p_lower"),
        (lambda: bc.gaussian([0], [np.nan], [0], [[1.0]]), "p_lower"),
        (lambda: bc.gaussian([0], [0.9], [0], [[0.0]]), "stds"),
        (lambda: bc.gaussian([0], [0.9], [0], [[np.nan]]), "stds"),
        (lambda: bc.gaussian([0], [0.9], [0], [1.0]), "stds"),
        (lambda: bc.gaussian([0], [0.9], [1], [[1.0]]), "group"),
        (lambda: bc.gaussian([0, 1], [0.9], [0], [[1.0]]), "prediction"),
        (lambda: bc.isotropic_radius(0.9, -1.0), "sigma"),
        (lambda: bc.uniform_l1([0], [0.9], [0], [[-1.0]]), "half_widths"),
        (lambda: bc.laplace_l1([0], [-0.1], [0], [[1.0]]), "p_lower"),
        (lambda: bc.bernoulli_costs(0.0, 0.5), "theta_plus"),
        (lambda: bc.bernoulli_costs(0.5, 1.0), "theta_minus"),
        (lambda: bc.variance_constrained([0], [0.9], [0.0], [0], _tv6_weights()), "zeta_upper"),
        (lambda: bc.variance_constrained([0], [1.2], [0.1], [0], _tv6_weights()), "mu_lower"),
        (lambda: bc.variance_constrained([0], [0.9], [0.1], [0], _tv6_weights(), "l3"), "norm"),
        (lambda: bc.variance_constrained([0], [0.9], [0.1, 0.1], [0], _tv6_weights()), "zeta"),
        (lambda: bc.sparse_smoothing_grid(0.9, 0.01, 0.6, -1, 2), "max_add"),
        (lambda: bc.sparse_smoothing_grid(0.9, 1.5, 0.6, 1, 2), "theta_plus"),
        (lambda: bc.sparse_smoothing_worst_mass(1.0, 0.01, 0.6, 1, 2), "p_lower"),
        (lambda: bc.sparse_smoothing_worst_mass(0.9, 0.01, 0.6, 1, 2.5), "r_del"),
        (lambda: bc.naive_certified("certs", [1.0]), "base_certs"),
    ],
)
def test_bad_inputs_name_the_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}"):
        call()


def test_naive_certified_rejects_bad_budgets():
    certs = bc.gaussian([0], [0.9], [0], [[1.0]])
    with pytest.raises(ValueError, match="`budgets`"):
        bc.naive_certified(certs, [-1.0])
