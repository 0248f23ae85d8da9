"""Percentile (median) smoothing and bounded expectations: SPEC-2 §5 test vectors, the order
statistics against scipy's binomial, coverage on a linear model whose smoothed median is known
exactly, and certify_regression / certify_expectation end to end."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

import lrsjax
from lrsjax import noise, sampling, stats


def test_shifted_levels_vectors():
    np.testing.assert_allclose(stats.shifted_levels(0.5, 0.1, 0.25), (0.34457826, 0.65542174))
    np.testing.assert_allclose(stats.shifted_levels(0.5, 0.36, 0.25), (0.07493370, 0.92506630))
    np.testing.assert_allclose(stats.shifted_levels(0.9, 0.1, 0.25), (0.81099032, 0.95367209))
    assert stats.shifted_levels(0.3, 0.0, 1.0) == pytest.approx((0.3, 0.3))


@pytest.mark.parametrize(
    "n, level, k_lower, k_upper",
    [(1000, 0.001, 299, 702), (2000, 1e-5, 599, 1402), (100, 0.01, 24, 77)],
)
def test_order_statistic_vectors(n, level, k_lower, k_upper):
    p_low, p_up = stats.shifted_levels(0.5, 0.1, 0.25)
    assert stats.lower_order_index(p_low, n, level) == k_lower
    assert stats.upper_order_index(p_up, n, level) == k_upper
    # with samples X_(i) = i / n, one coordinate (alpha = 2 * level: Bonferroni over 2 sides)
    samples = np.random.default_rng(0).permutation(np.arange(1, n + 1) / n)
    bounds = stats.percentile_bounds(samples, 0.5, 0.1, 0.25, 2 * level)
    assert (bounds.k_lower, bounds.k_upper) == (k_lower, k_upper)
    assert bounds.lower[0] == pytest.approx(k_lower / n)
    assert bounds.upper[0] == pytest.approx(k_upper / n)
    assert bounds.estimate[0] == pytest.approx(math.ceil(n / 2) / n)


def test_no_qualifying_order_statistic_gives_infinite_bounds():
    # SPEC-2 §5(e): n = 100, eps = 0.5 has no valid lower index; the minimum sample is NOT a bound
    samples = np.linspace(-1.0, 1.0, 100)
    bounds = stats.percentile_bounds(samples, 0.5, 0.5, 0.25, 0.002)
    assert bounds.k_lower == 0 and bounds.lower[0] == -np.inf
    assert bounds.k_upper == 0 and bounds.upper[0] == np.inf


def test_reference_indices_and_the_off_by_one():
    # The reference rule's 1-based indices (SPEC-2 §5(d)) equal ours; its 0-based lookup takes
    # X_(q_l + 1) for the lower bound, whose coverage is below the target.
    p_low, p_up = stats.shifted_levels(0.5, 0.36, 0.25)
    k_lower = stats.lower_order_index(p_low, 2000, 1e-5)
    assert (stats.upper_order_index(p_up, 2000, 1e-5), k_lower) == (1899, 102)
    assert scipy_stats.binom.cdf(k_lower - 1, 2000, p_low) <= 1e-5
    assert scipy_stats.binom.cdf(k_lower, 2000, p_low) > 1e-5  # X_(k+1) would not be a bound
    p_low, p_up = stats.shifted_levels(0.5, 0.05, 0.12)
    assert stats.upper_order_index(p_up, 1000, 1e-3) == 708
    assert stats.lower_order_index(p_low, 1000, 1e-3) == 293


@pytest.mark.parametrize("q", [0.0, 0.03, 0.31, 0.5, 0.77, 0.999, 1.0])
@pytest.mark.parametrize("level", [0.2, 0.01, 1e-4])
def test_indices_are_the_exact_extremes(q, level):
    for n in (1, 2, 7, 40, 333):
        ks = np.arange(1, n + 1)
        tails = scipy_stats.binom.sf(ks - 1, n, q)  # P(Bin >= k)
        heads = scipy_stats.binom.cdf(ks - 1, n, q)  # P(Bin <= k - 1)
        upper_ok = ks[tails <= level]
        lower_ok = ks[heads <= level]
        assert stats.upper_order_index(q, n, level) == (upper_ok.min() if upper_ok.size else 0)
        assert stats.lower_order_index(q, n, level) == (lower_ok.max() if lower_ok.size else 0)


def test_dkw_index_vectors_and_the_quantile_rule():
    base = scipy_stats.norm.ppf(0.55)
    for eps, n, k in [(0.1, 10**4, 7168), (0.2, 10**6, 824317), (0.5, 10**6, 984862)]:
        q = scipy_stats.norm.cdf(base + eps / 0.25)
        assert stats.dkw_upper_index(q, n, 0.005) == k
        assert stats.upper_order_index(q, n, 0.005) <= k  # the exact tail is never looser
    distances = np.arange(1.0, 11.0)
    k = math.ceil(10 * 0.85)
    assert distances[k - 1] == 9.0 and np.quantile(distances, 0.85) == pytest.approx(8.65)


def test_expectation_vectors():
    np.testing.assert_allclose(
        stats.expectation_range(0.8, 0.0, 1.0, 0.25, 0.1), (0.67061834, 0.89281183), rtol=1e-7
    )
    np.testing.assert_allclose(
        stats.expectation_range(2.0, -1.0, 3.0, 0.5, 0.25), (1.27703883, 2.51960217), rtol=1e-7
    )
    lower, upper = stats.expectation_bounds(0.8, 10000, 0.0, 1.0, 0.25, 0.1, 0.001)
    np.testing.assert_allclose((lower, upper), (0.64576092, 0.90548285), rtol=1e-7)
    # the trivial ends: g at the range's ends stays there
    assert stats.expectation_range(0.0, 0.0, 1.0, 0.25, 0.1) == (0.0, 0.0)
    lower, upper = stats.expectation_bounds(1.0, 10, 0.0, 1.0, 0.25, 0.1, 0.1)
    assert upper == 1.0 and lower < 1.0


def _misses(n, alpha, eps, sigma, trials, rng):
    """Misses of the certified interval of a linear model's median over `trials` data sets."""
    # f(x + G) = w.x + w.G ~ N(w.x, (sigma ||w||)^2); the smoothed median at x + delta is
    # w.(x + delta), whose range over ||delta|| < eps is (m - eps ||w||, m + eps ||w||).
    w_norm, m = 1.7, 0.3
    low_end, high_end = m - eps * w_norm, m + eps * w_norm
    samples = m + sigma * w_norm * rng.standard_normal((trials, n))
    bounds = stats.percentile_bounds(samples[0], 0.5, eps, sigma, alpha)
    ordered = np.sort(samples, axis=1)  # the same order statistics for every trial at once
    lower = ordered[:, bounds.k_lower - 1] if bounds.k_lower else np.full(trials, -np.inf)
    upper = ordered[:, bounds.k_upper - 1] if bounds.k_upper else np.full(trials, np.inf)
    for t in range(3):
        again = stats.percentile_bounds(samples[t], 0.5, eps, sigma, alpha)
        assert (again.lower[0], again.upper[0]) == (lower[t], upper[t])
    return int(np.sum((lower > low_end) | (upper < high_end))), bounds


def test_coverage_on_a_linear_model():
    n, alpha, eps, sigma, trials = 1000, 0.1, 0.1, 0.25, 2000
    misses, bounds = _misses(n, alpha, eps, sigma, trials, np.random.default_rng(1))
    p_low, p_up = stats.shifted_levels(0.5, eps, sigma)
    miss_low = scipy_stats.binom.cdf(bounds.k_lower - 1, n, p_low)  # exact, continuous samples
    miss_up = scipy_stats.binom.sf(bounds.k_upper - 1, n, p_up)
    assert miss_low + miss_up <= alpha
    # observed misses: at most the exact rate allows, and not far fewer (not over-conservative)
    assert misses <= scipy_stats.binom.ppf(1 - 1e-6, trials, miss_low + miss_up)
    assert misses >= scipy_stats.binom.ppf(1e-6, trials, max(miss_low, miss_up))
    assert max(miss_low, miss_up) > 0.3 * alpha / 2  # the indices are tight, not just valid


def _linear(w, x):
    return jnp.sum(w * x)[None] * jnp.ones(2)  # two identical coordinates


def test_certify_regression_matches_the_sampler_and_bounds_a_linear_model():
    shape = (1, 2, 3)
    w = jnp.asarray(np.linspace(-1.0, 1.0, 6).reshape(shape), jnp.float32)
    x = jnp.full(shape, 0.5)
    sm = noise.isotropic_gaussian(shape, 0.25)
    options = dict(n=300, alpha=0.05, eps=0.1, batch_size=64)  # 300 = 4 full batches + 44
    cert = lrsjax.certify_regression(jax.random.key(3), _linear, w, x, sm, **options)
    again = lrsjax.certify_regression(jax.random.key(3), _linear, w, x, sm, **options)
    for a, b in zip(cert, again, strict=True):
        np.testing.assert_array_equal(a, b)
    values = sampling.make_output_sampler(_linear, sm, batch_size=64)(jax.random.key(3), w, x, 300)
    assert values.values.shape == (300, 2)
    expected = stats.percentile_bounds(values.values, 0.5, 0.1, 0.25, 0.05)
    np.testing.assert_array_equal(cert.lower, expected.lower)
    np.testing.assert_array_equal(cert.upper, expected.upper)
    assert (cert.k_lower, cert.k_upper) == (expected.k_lower, expected.k_upper)
    # Bonferroni over 2 coordinates and 2 sides
    p_low, _ = stats.shifted_levels(0.5, 0.1, 0.25)
    assert cert.k_lower == stats.lower_order_index(p_low, 300, 0.05 / 4)
    m, spread = float(jnp.sum(w * x)), 0.1 * float(jnp.linalg.norm(w))
    assert np.all(cert.lower <= m - spread) and np.all(cert.upper >= m + spread)
    assert np.all(cert.lower <= cert.estimate) and np.all(cert.estimate <= cert.upper)


@pytest.mark.slow
def test_certify_regression_coverage_end_to_end():
    shape = (1, 1, 4)
    w = jnp.asarray([[[0.5, -1.0, 0.25, 1.0]]], jnp.float32)
    x = jnp.full(shape, 0.5)
    sm = noise.isotropic_gaussian(shape, 0.5)
    m, spread = float(jnp.sum(w * x)), 0.2 * float(jnp.linalg.norm(w))
    trials, alpha = 150, 0.3
    misses = 0
    for t in range(trials):
        cert = lrsjax.certify_regression(
            jax.random.key(t), _linear, w, x, sm, n=200, alpha=alpha, eps=0.2, batch_size=200
        )
        misses += int(np.any(cert.lower > m - spread) or np.any(cert.upper < m + spread))
    assert misses <= scipy_stats.binom.ppf(1 - 1e-6, trials, alpha)


@pytest.mark.slow
def test_coverage_many_settings():
    rng = np.random.default_rng(7)
    for n, alpha, eps, sigma in [(200, 0.05, 0.05, 0.12), (2000, 0.02, 0.36, 0.25)]:
        misses, _ = _misses(n, alpha, eps, sigma, 5000, rng)
        assert misses <= scipy_stats.binom.ppf(1 - 1e-6, 5000, alpha)


def test_certify_expectation():
    shape = (1, 2, 3)
    w = jnp.asarray(np.linspace(-1.0, 1.0, 6).reshape(shape), jnp.float32)
    x = jnp.full(shape, 0.5)
    sm = noise.isotropic_gaussian(shape, 0.25)

    def score(w, x):
        return jax.nn.sigmoid(jnp.sum(w * x))[None]

    cert = lrsjax.certify_expectation(
        jax.random.key(0), score, w, x, sm, n=300, alpha=0.01, eps=0.1, batch_size=64,
        low=0.0, high=1.0,
    )  # fmt: skip
    lower, upper = stats.expectation_bounds(cert.mean, 300, 0.0, 1.0, 0.25, 0.1, 0.01)
    np.testing.assert_array_equal((cert.lower, cert.upper), (lower, upper))
    assert cert.lower[0] < cert.mean[0] < cert.upper[0]

    def unbounded(w, x):
        return (2.0 * jnp.sum(w * x))[None] + 5.0

    with pytest.raises(ValueError, match="must stay in"):
        lrsjax.certify_expectation(
            jax.random.key(0), unbounded, w, x, sm, n=300, alpha=0.01, eps=0.1, batch_size=64,
            low=0.0, high=1.0,
        )  # fmt: skip


def test_bad_input_is_refused_with_the_argument_named():
    shape = (1, 2, 3)
    w = jnp.ones(shape)
    x = jnp.full(shape, 0.5)
    sm = noise.isotropic_gaussian(shape, 0.25)
    options = dict(n=300, alpha=0.01, eps=0.1, batch_size=64)
    with pytest.raises(ValueError, match="`noise`"):
        lrsjax.certify_regression(
            jax.random.key(0), _linear, w, x, noise.isotropic_laplace(shape, 0.25), **options
        )
    with pytest.raises(ValueError, match="`noise`"):
        lrsjax.certify_regression(
            jax.random.key(0), _linear, w, x, noise.localized_gaussian(shape, (1, 2), 0.1, 0.3),
            **options,
        )  # fmt: skip
    with pytest.raises(ValueError, match="`percentile`"):
        lrsjax.certify_regression(jax.random.key(0), _linear, w, x, sm, percentile=1.0, **options)
    with pytest.raises(ValueError, match="`eps`"):
        lrsjax.certify_regression(jax.random.key(0), _linear, w, x, sm, **{**options, "eps": -1})

    def broken(w, x):
        return jnp.log(jnp.sum(w * x) - 10.0)[None]  # NaN

    with pytest.raises(ValueError, match="NaN or infinite"):
        lrsjax.certify_regression(jax.random.key(0), broken, w, x, sm, **options)
    with pytest.raises(ValueError, match="`num_samples`"):
        sampling.make_output_sampler(_linear, sm, batch_size=64)(jax.random.key(0), w, x, 2**30)
