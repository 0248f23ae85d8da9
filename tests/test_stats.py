"""lrsjax.stats (SPEC 4): test vectors, scipy references, hand-solved cases, properties, errors."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special
from scipy import stats as sps

from lrsjax import stats

# ---------------------------------------------------------------------------------------------
# Clopper-Pearson


def test_tv2_single_output_and_bonferroni_ceiling():
    assert stats.clopper_pearson_lower(90, 100, 0.01) == pytest.approx(0.8086697, abs=1e-7)
    n, outputs, alpha = 10240, 41500, 0.01
    bounds = stats.corrected_lower_bounds(np.full(outputs, n), n, alpha)
    assert bounds.shape == (outputs,)
    # Every sample consistent: BetaInv(a; n, 1) = a^(1/n).
    np.testing.assert_allclose(bounds, (alpha / outputs) ** (1 / n), rtol=1e-12)
    assert bounds[0] == pytest.approx(0.99851296, abs=1e-8)
    assert special.ndtri(bounds[0]) == pytest.approx(2.970404, abs=1e-6)


def test_tv3_rank_levels_and_bonferroni():
    counts = [100, 90, 80]
    np.testing.assert_allclose(
        stats.corrected_levels(counts, 0.01, "rank_levels"), [0.01 / 3, 0.01 / 2, 0.01]
    )
    got = stats.corrected_lower_bounds(counts, 100, 0.01, "rank_levels")
    np.testing.assert_allclose(got, [0.944558, 0.798046, 0.690791], atol=1e-6)
    got = stats.corrected_lower_bounds(counts, 100, 0.01)
    np.testing.assert_allclose(got, [0.944558, 0.792091, 0.672102], atol=1e-6)
    assert stats.corrected_lower_bounds(counts, 100, 0.01, method="bonferroni")[0] == got[0]


def test_clopper_pearson_matches_scipy_beta_ppf():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 5000, size=500)
    counts = rng.integers(0, n + 1)
    level = 10.0 ** rng.uniform(-9, -0.5, size=500)
    lower = stats.clopper_pearson_lower(counts, n, level)
    upper = stats.clopper_pearson_upper(counts, n, level)
    inner = (counts > 0) & (counts < n)
    ref_lower = sps.beta.ppf(level, counts, n - counts + 1)
    ref_upper = sps.beta.ppf(1 - level, counts + 1, n - counts)
    np.testing.assert_allclose(lower[counts > 0], ref_lower[counts > 0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(upper[counts < n], ref_upper[counts < n], rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(lower[counts == 0], 0.0)
    np.testing.assert_array_equal(upper[counts == n], 1.0)
    # The defining tail equations: P_{p_lower}(X >= c) = level and P_{p_upper}(X <= c) = level.
    tail = sps.binom.sf(counts[inner] - 1, n[inner], lower[inner])
    np.testing.assert_allclose(tail, level[inner], rtol=1e-6)
    head = sps.binom.cdf(counts[inner], n[inner], upper[inner])
    np.testing.assert_allclose(head, level[inner], rtol=1e-6)


def test_clopper_pearson_shapes_and_broadcasting():
    counts = np.array([[0, 5, 10], [3, 7, 10]])
    got = stats.clopper_pearson_lower(counts, 10, [[0.01], [0.1]])
    assert got.shape == (2, 3)
    assert got[0, 1] == pytest.approx(stats.clopper_pearson_lower(5, 10, 0.01))
    assert got[1, 1] == pytest.approx(stats.clopper_pearson_lower(7, 10, 0.1))
    assert got[0, 0] == 0.0
    np.testing.assert_allclose(
        stats.clopper_pearson_upper(counts, [[10], [10]], 0.05),
        stats.clopper_pearson_upper(counts, 10, 0.05),
    )


def test_corrected_lower_bounds_equals_bounds_at_corrected_levels():
    rng = np.random.default_rng(1)
    counts = rng.binomial(500, rng.uniform(0.3, 1.0, size=(40, 30)))
    counts[0, :5] = 500  # ties at the ceiling
    for method in ("bonferroni", "rank_levels"):
        levels = stats.corrected_levels(counts, 0.05, method)
        want = stats.clopper_pearson_lower(counts, 500, levels)
        np.testing.assert_allclose(
            stats.corrected_lower_bounds(counts, 500, 0.05, method), want, rtol=1e-13
        )
        # Per-output n (the np.unique path) and a huge n (no lookup table) agree too.
        np.testing.assert_allclose(
            stats.corrected_lower_bounds(counts, np.full(counts.shape, 500), 0.05, method),
            want,
            rtol=1e-13,
        )
    big = rng.integers(0, 10**7, size=20)
    np.testing.assert_allclose(
        stats.corrected_lower_bounds(big, 10**7, 0.05),
        stats.clopper_pearson_lower(big, 10**7, 0.05 / 20),
        rtol=1e-13,
    )


def _rank_levels_reference(counts, alpha):
    """The definition with explicit loops: i-th smallest (1-based) gets alpha / i; a tie block
    gets the level of its last rank."""
    flat = list(np.ravel(counts))
    order = sorted(range(len(flat)), key=lambda i: flat[i])
    levels = [0.0] * len(flat)
    for index in order:
        last = max(r for r, j in enumerate(order, start=1) if flat[j] == flat[index])
        levels[index] = alpha / last
    return np.reshape(levels, np.shape(counts))


def test_rank_levels_ties_get_the_smallest_level_of_their_block():
    counts = np.array([5, 3, 5, 9, 3, 5])
    got = stats.corrected_levels(counts, 0.1, "rank_levels")
    np.testing.assert_allclose(got, [0.1 / 5, 0.1 / 2, 0.1 / 5, 0.1 / 6, 0.1 / 2, 0.1 / 5])
    np.testing.assert_allclose(got, _rank_levels_reference(counts, 0.1))
    rng = np.random.default_rng(2)
    for _ in range(5):
        counts = rng.integers(0, 8, size=(6, 5))
        np.testing.assert_allclose(
            stats.corrected_levels(counts, 0.05, "rank_levels"),
            _rank_levels_reference(counts, 0.05),
        )
    np.testing.assert_allclose(stats.corrected_levels(counts, 0.05), 0.05 / 30)


# ---------------------------------------------------------------------------------------------
# Holm's threshold test (SegCertify)


def _holm_reference(counts, n, tau, alpha):
    """Textbook Holm with a loop, p-values from scipy.stats.binom."""
    flat = np.ravel(counts)
    p = sps.binom.sf(flat - 1, n, tau)
    order = np.argsort(p, kind="stable")
    m = flat.size
    rejected = np.zeros(m, dtype=bool)
    for position, index in enumerate(order):
        if p[index] > alpha / (m - position):
            break
        rejected[index] = True
    return rejected.reshape(np.shape(counts))


def test_holm_threshold_test_matches_the_textbook_procedure():
    rng = np.random.default_rng(4)
    for trial in range(30):
        n = int(rng.integers(20, 300))
        tau = float(rng.uniform(0.5, 0.95))
        shape = (int(rng.integers(1, 6)), int(rng.integers(1, 50)))
        counts = rng.binomial(n, rng.uniform(0.4, 1.0, size=shape))
        alpha = float(rng.choice([0.001, 0.01, 0.1]))
        got = stats.holm_threshold_test(counts, n, tau, alpha)
        assert got.shape == shape and got.dtype == bool
        np.testing.assert_array_equal(got, _holm_reference(counts, n, tau, alpha), str(trial))


def test_holm_threshold_test_hand_solved():
    # m = 2, alpha = 0.1: p(100 of 100 | 0.9) = 0.9^100 = 2.7e-5 <= 0.05 rejected;
    # p(91 of 100 | 0.9) = 0.4513 > 0.1 kept.
    got = stats.holm_threshold_test([100, 91], 100, 0.9, 0.1)
    np.testing.assert_array_equal(got, [True, False])
    # Nothing above tau can be shown with counts at or below tau * n.
    assert not stats.holm_threshold_test([50, 60, 0], 100, 0.6, 0.2).any()
    # All counts equal and significant: the whole tie block is rejected at once.
    assert stats.holm_threshold_test(np.full(7, 100), 100, 0.8, 0.01).all()


# ---------------------------------------------------------------------------------------------
# DKW


def test_tv8_dkw_epsilon():
    assert stats.dkw_epsilon(100000, 0.01) == pytest.approx(0.00514700, abs=1e-8)
    np.testing.assert_allclose(
        stats.dkw_epsilon([100, 400], 0.05), np.sqrt(np.log(40) / np.array([200, 800]))
    )


def _level_for_eps(n, eps):
    return 2 * math.exp(-2 * n * eps**2)


def test_mean_and_second_moment_hand_solved():
    """Samples (0.2, 0.6), eps = 0.6: S_n = 1 on [0, .2), 1/2 on [.2, .6), 0 on [.6, 1].
    mu_lower = 0.2 * 0.4 = 0.08; mu_upper = 0.2 + 0.4 + 0.4 * 0.6 = 0.84.
    v = 0.4: v^2 - 0.12 * 0.4 (t in [0, .2), lower band 0.4) + 0 (t in [.2, .4), lower band 0)
    + 0.04 * 1 (t in [.4, .6), upper band 1) + 0.32 * 0.6 (t in [.6, 1], upper band 0.6) = 0.344."""
    level = _level_for_eps(2, 0.6)
    assert stats.dkw_epsilon(2, level) == pytest.approx(0.6)
    lower, upper = stats.mean_bounds([0.6, 0.2], level)
    assert lower == pytest.approx(0.08)
    assert upper == pytest.approx(0.84)
    assert stats.second_moment_upper([0.6, 0.2], 0.4, level) == pytest.approx(0.344)


def _bands_by_quadrature(samples, level, center, grid=200001):
    """Reference: the same integrals by brute-force quadrature on a fine grid of t."""
    t = np.linspace(0, 1, grid)
    s = np.sort(samples)
    survival = 1 - np.searchsorted(s, t, side="right") / s.size
    eps = np.sqrt(np.log(2 / level) / (2 * s.size))
    low, high = np.maximum(0, survival - eps), np.minimum(1, survival + eps)
    slope = 2 * (t - center)
    second = center**2 + np.trapezoid(np.where(slope > 0, slope * high, slope * low), t)
    second = min(second, max(center**2, (1 - center) ** 2))  # g never exceeds its maximum
    return np.trapezoid(low, t), np.trapezoid(high, t), second


def test_dkw_bounds_match_quadrature():
    rng = np.random.default_rng(5)
    for n in (1, 7, 60):
        x = rng.beta(2, 3, size=n)
        want = _bands_by_quadrature(x, 0.05, x.mean())
        lower, upper = stats.mean_bounds(x, 0.05)
        second = stats.second_moment_upper(x, x.mean(), 0.05)
        np.testing.assert_allclose([lower, upper, second], want, atol=2e-5)


def test_tv10_beta_samples():
    rng = np.random.default_rng(6)
    x = rng.beta(8, 2, size=100_000)
    # Var Beta(8, 2) = ab / ((a + b)^2 (a + b + 1)) = 0.014545; SPEC 10 quotes 0.01467, so check
    # the bound against the larger of the two.
    true_var = max(8 * 2 / (10**2 * 11), 0.01467)
    lower, upper = stats.mean_bounds(x, 0.01)
    zeta = stats.second_moment_upper(x, x.mean(), 0.01)
    assert lower == pytest.approx(0.7945, abs=1e-3) and lower < 0.8 < upper
    assert zeta == pytest.approx(0.018, abs=1e-3) and zeta > true_var
    edges = np.linspace(0, 1, 101)
    hist = np.histogram(x, edges)[0]
    h_lower, h_upper = stats.mean_bounds_from_histogram(hist, edges, 0.01)
    h_zeta = stats.second_moment_upper_from_histogram(hist, edges, x.mean(), 0.01)
    assert h_lower <= lower and h_upper >= upper and h_zeta >= zeta
    assert h_lower < 0.8 < h_upper and h_zeta > true_var


def test_dkw_bounds_vectorize_over_other_axes():
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(3, 50, 2))
    level = np.array([0.01, 0.2])
    lower, upper = stats.mean_bounds(x, level, axis=1)
    second = stats.second_moment_upper(x, 0.3, level, axis=-2)
    assert lower.shape == upper.shape == second.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            lo, hi = stats.mean_bounds(x[i, :, j], level[j])
            assert (lower[i, j], upper[i, j]) == pytest.approx((lo, hi))
            assert second[i, j] == pytest.approx(
                stats.second_moment_upper(x[i, :, j], 0.3, level[j])
            )


def test_thinning_is_conservative_and_exact_without_thinning():
    rng = np.random.default_rng(8)
    x = rng.beta(5, 2, size=(2000, 4))
    full = stats.mean_bounds(x, 0.05)
    full_second = stats.second_moment_upper(x, x.mean(0), 0.05)
    for num in (2, 17, 300):
        lower, upper = stats.mean_bounds(x, 0.05, num_thresholds=num)
        second = stats.second_moment_upper(x, x.mean(0), 0.05, num_thresholds=num)
        assert np.all(lower <= full[0] + 1e-15) and np.all(upper >= full[1] - 1e-15)
        assert np.all(second >= full_second - 1e-15)
    same = stats.mean_bounds(x, 0.05, num_thresholds=5000)
    np.testing.assert_allclose(same, full, rtol=1e-14)


def test_histogram_bounds_are_conservative_and_exact_on_lower_edges():
    rng = np.random.default_rng(9)
    x = rng.beta(3, 1.5, size=(3000, 5))
    edges = np.linspace(0, 1, 21)
    hist = np.stack([np.histogram(x[:, i], edges)[0] for i in range(5)])  # [5, 20]
    raw_lower, raw_upper = stats.mean_bounds(x, 0.05)
    lower, upper = stats.mean_bounds_from_histogram(hist, edges, 0.05)
    assert np.all(lower <= raw_lower) and np.all(upper >= raw_upper)
    center = x.mean(0)
    raw_second = stats.second_moment_upper(x, center, 0.05)
    second = stats.second_moment_upper_from_histogram(hist, edges, center, 0.05)
    assert np.all(second >= raw_second)
    # Samples on the lower edges of their bins: the lower mean bound is exactly the raw one.
    lattice = rng.integers(0, 20, size=400) / 20
    counts = np.bincount(np.round(lattice * 20).astype(int), minlength=20)
    assert stats.mean_bounds_from_histogram(counts, edges, 0.1)[0] == pytest.approx(
        stats.mean_bounds(lattice, 0.1)[0], abs=1e-12
    )
    # Per-output edges broadcast; edges wider than [0, 1] are clipped.
    wide = np.concatenate([[-1.0], edges[1:-1], [2.0]])
    np.testing.assert_allclose(
        stats.mean_bounds_from_histogram(hist, np.tile(wide, (5, 1)), 0.05), (lower, upper)
    )


def test_bounds_stay_in_range_on_degenerate_samples():
    ones = np.ones(30)
    lower, upper = stats.mean_bounds(ones, 0.1)
    assert 0 < lower < 1 and upper == 1.0
    zeta = stats.second_moment_upper(ones, 1.0, 0.1)
    assert 0 < zeta <= 1.0
    zeros = np.zeros(30)
    assert stats.mean_bounds(zeros, 0.1)[0] == 0.0


# ---------------------------------------------------------------------------------------------
# Monotonicity properties (hypothesis)


@given(st.integers(1, 2000), st.data())
def test_more_consistent_counts_never_lower_a_bound(n, data):
    c = data.draw(st.integers(0, n - 1))
    level = data.draw(st.floats(1e-8, 0.5))
    assert stats.clopper_pearson_lower(c + 1, n, level) >= stats.clopper_pearson_lower(c, n, level)
    assert stats.clopper_pearson_upper(c + 1, n, level) >= stats.clopper_pearson_upper(c, n, level)


@given(st.lists(st.integers(0, 60), min_size=1, max_size=12), st.data())
def test_raising_one_count_never_lowers_any_corrected_bound(counts, data):
    counts = np.array(counts)
    index = data.draw(st.integers(0, counts.size - 1))
    raised = counts.copy()
    raised[index] = data.draw(st.integers(int(counts[index]), 60))
    for method in ("bonferroni", "rank_levels"):
        before = stats.corrected_lower_bounds(counts, 60, 0.05, method)
        after = stats.corrected_lower_bounds(raised, 60, 0.05, method)
        assert np.all(after >= before)


@given(st.integers(1, 1000), st.data())
def test_larger_level_gives_larger_lower_bound(n, data):
    c = data.draw(st.integers(1, n))
    a, b = sorted([data.draw(st.floats(1e-9, 0.99)), data.draw(st.floats(1e-9, 0.99))])
    assert stats.clopper_pearson_lower(c, n, b) >= stats.clopper_pearson_lower(c, n, a)
    assert stats.clopper_pearson_upper(c, n, b) <= stats.clopper_pearson_upper(c, n, a)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.data())
def test_raising_a_sample_never_lowers_the_mean_bounds(samples, data):
    samples = np.array(samples)
    index = data.draw(st.integers(0, samples.size - 1))
    raised = samples.copy()
    raised[index] = data.draw(st.floats(float(samples[index]), 1.0))
    before = stats.mean_bounds(samples, 0.1)
    after = stats.mean_bounds(raised, 0.1)
    assert after[0] >= before[0] - 1e-12 and after[1] >= before[1] - 1e-12


# ---------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: stats.clopper_pearson_lower([-1, 3], 10, 0.01), "counts"),
        (lambda: stats.clopper_pearson_lower([11], 10, 0.01), "counts"),
        (lambda: stats.clopper_pearson_lower([1.5], 10, 0.01), "counts"),
        (lambda: stats.clopper_pearson_lower([np.nan], 10, 0.01), "counts"),
        (lambda: stats.clopper_pearson_lower([True], 10, 0.01), "counts"),
        (lambda: stats.clopper_pearson_lower([1], 0, 0.01), "n"),
        (lambda: stats.clopper_pearson_lower([1, 2], [5, 5, 5], 0.01), "n"),
        (lambda: stats.clopper_pearson_lower([1], 10, 0.0), "level"),
        (lambda: stats.clopper_pearson_upper([1], 10, 1.0), "level"),
        (lambda: stats.clopper_pearson_upper([1], 10, np.nan), "level"),
        (lambda: stats.clopper_pearson_upper([1, 2], 10, [0.1, 0.1, 0.1]), "level"),
        (lambda: stats.corrected_levels([1, 2], 1.5), "alpha"),
        (lambda: stats.corrected_levels([1, -2], 0.1), "counts"),
        (lambda: stats.corrected_levels([1, 2], 0.1, "holm"), "method"),
        (lambda: stats.corrected_lower_bounds([1, 2], 10, 0.0), "alpha"),
        (lambda: stats.corrected_lower_bounds([1, 12], 10, 0.1), "counts"),
        (lambda: stats.holm_threshold_test([1, 2], 10, 1.0, 0.1), "tau"),
        (lambda: stats.holm_threshold_test([1, 2], 10, 0.5, -0.1), "alpha"),
        (lambda: stats.dkw_epsilon(0, 0.1), "n"),
        (lambda: stats.dkw_epsilon(10, 2.0), "level"),
        (lambda: stats.mean_bounds([0.1, 1.2], 0.1), "samples"),
        (lambda: stats.mean_bounds([0.1, np.nan], 0.1), "samples"),
        (lambda: stats.mean_bounds(0.5, 0.1), "samples"),
        (lambda: stats.mean_bounds(np.ones((3, 2)) / 2, [0.1, 0.1, 0.1]), "level"),
        (lambda: stats.mean_bounds([0.1], 0.1, axis=2), "axis"),
        (lambda: stats.mean_bounds([0.1, 0.2], 0.1, num_thresholds=1), "num_thresholds"),
        (lambda: stats.second_moment_upper([0.1, 0.2], np.nan, 0.1), "center"),
        (lambda: stats.second_moment_upper(np.ones((3, 2)) / 2, [1, 2, 3], 0.1), "center"),
        (lambda: stats.mean_bounds_from_histogram([1, -1], [0, 0.5, 1], 0.1), "hist"),
        (lambda: stats.mean_bounds_from_histogram([0, 0], [0, 0.5, 1], 0.1), "hist"),
        (lambda: stats.mean_bounds_from_histogram([1, 2], [0, 1], 0.1), "bin_edges"),
        (lambda: stats.mean_bounds_from_histogram([1, 2], [0, 0.7, 0.5], 0.1), "bin_edges"),
        (lambda: stats.mean_bounds_from_histogram([1, 2], [0.1, 0.5, 1], 0.1), "bin_edges"),
        (lambda: stats.mean_bounds_from_histogram([1, 2], [0, 0.5, 1], 1.0), "level"),
        (
            lambda: stats.second_moment_upper_from_histogram([1, 2], [0, 0.5, 1], [0.1, 0.2], 0.1),
            "center",
        ),
    ],
)
def test_bad_inputs_name_the_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


@pytest.mark.parametrize("levels", ["bonferroni", "rank_levels", "mixed", "per_n"])
def test_clopper_pearson_with_per_output_levels_equals_the_direct_formula(levels):
    # the public bounds deduplicate (count, n, level) triples; every entry must equal the
    # element-wise inverse beta function exactly
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 41, size=(30, 20))
    n = 40
    if levels == "mixed":
        level = rng.choice([0.01, 0.02, 0.3], size=counts.shape)
    elif levels == "per_n":
        n = rng.integers(40, 43, size=counts.shape)
        level = rng.choice([0.01, 0.02], size=counts.shape)
    else:
        level = stats.corrected_levels(counts, 0.1, levels)
    safe = np.maximum(counts, 1)
    lower = np.where(counts == 0, 0.0, special.betaincinv(safe, n - safe + 1, level))
    top = np.minimum(counts, n - 1)
    upper = np.where(counts == n, 1.0, special.betaincinv(top + 1, n - top, 1 - level))
    np.testing.assert_array_equal(stats.clopper_pearson_lower(counts, n, level), lower)
    np.testing.assert_array_equal(stats.clopper_pearson_upper(counts, n, level), upper)
