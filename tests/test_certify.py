"""lrsjax.certify: exact checks with linear base classifiers, corrections, graphs, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import lrsjax
from lrsjax import noise
from lrsjax._sparse import SparseBinary, from_scipy
from lrsjax.sampling import _kernels

# ------------------------------------------------------------------------------------------------
# images: a linear base classifier per output, g_d(z) = [w_d . z + b_d > 0]
# ------------------------------------------------------------------------------------------------

C, H, W = 1, 4, 6
GRID = (2, 3)
D = H * W


def linear_model(params, z):
    weights, bias = params
    score = jnp.einsum("dchw,chw->d", weights, z) + bias
    return jnp.stack([-score, score], axis=-1).reshape(H, W, 2)


def _linear_problem(seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(D, C, H, W))
    bias = rng.normal(size=D) * 0.4
    x = rng.random((C, H, W))
    params = (jnp.asarray(weights, jnp.float32), jnp.asarray(bias, jnp.float32))
    return weights, bias, x, params


def _per_output_stds(smoothing):
    """[D, H, W]: the noise std of every pixel while smoothing the group of output d."""
    return smoothing.stds[smoothing.group.reshape(-1)][:, smoothing.region]


def test_linear_classifier_consistency_and_radii_are_exact_and_sound():
    weights, bias, x, params = _linear_problem()
    sm = noise.localized_gaussian((C, H, W), GRID, 0.2, 0.8)
    n = 3000
    cert = lrsjax.certify(
        jax.random.key(0), linear_model, params, x, sm, n0=64, n=n, alpha=0.01, batch_size=512
    )
    stds = _per_output_stds(sm)
    margin = np.einsum("dchw,chw->d", weights, x) + bias
    # P(g_d = 1) under N(x, diag(s^2)) is Phi(margin / ||w * s||) exactly
    spread = np.sqrt(np.sum(weights**2 * stds[:, None] ** 2, axis=(1, 2, 3)))
    p_one = special.ndtr(margin / spread)
    p_pred = np.where(cert.prediction == 1, p_one, 1 - p_one)
    # empirical consistency within binomial tolerance of the closed form (5 sd, 24 outputs)
    sd = np.sqrt(p_pred * (1 - p_pred) / n)
    assert np.all(np.abs(cert.counts / n - p_pred) < 5 * sd + 1e-9)
    certified = ~cert.abstain
    assert certified.sum() >= D // 2  # the test is not vacuous
    # correct predictions, and lower bounds below the truth
    np.testing.assert_array_equal(cert.prediction[certified], (margin[certified] > 0).astype(int))
    assert np.all(cert.p_lower[certified] <= p_pred[certified])
    # the smoothed classifier of a linear g flips exactly on g's hyperplane: the true minimal
    # flipping l2 perturbation is |margin| / ||w||; no certified radius may exceed it
    true_radius = np.abs(margin) / np.sqrt(np.sum(weights**2, axis=(1, 2, 3)))
    assert np.all(cert.radius[certified] <= true_radius[certified])
    assert np.all(cert.radius[cert.abstain] == 0)
    # anisotropic certificate: the cheapest flipping perturbation in the weighted norm,
    # delta* = -margin s^2 w / ||w s||^2, must NOT satisfy sum_j W[k, j] b[j] < eta
    base = cert.base_certs
    assert base.norm == "l2" and base.weights.shape == (1, 6, 6)
    for d in np.nonzero(certified)[0]:
        delta = -margin[d] * stds[d] ** 2 * weights[d] / spread[d] ** 2
        spend = np.array([np.sum(delta[:, sm.region == j] ** 2) for j in range(6)])
        assert base.weights[0, base.group[d]] @ spend >= base.eta[d] * (1 - 1e-9)
        # ... and it is tight up to the estimation error: eta = Phi^{-1}(p_lower)^2 <= that cost
        assert base.eta[d] <= (margin[d] / spread[d]) ** 2


def test_isotropic_radius_is_sigma_times_quantile_and_same_key_same_result():
    _, _, x, params = _linear_problem(1)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.3, 0.3)  # equal stds: isotropic
    args = (linear_model, params, x, sm)
    kwargs = dict(n0=16, n=200, alpha=0.05, batch_size=512)
    cert = lrsjax.certify(jax.random.key(5), *args, **kwargs)
    ok = ~cert.abstain
    sigma = float(np.float32(0.3))  # the std the kernel samples with (float32), exactly
    assert sigma != 0.3
    np.testing.assert_allclose(cert.radius[ok], sigma * special.ndtri(cert.p_lower[ok]), rtol=1e-14)
    again = lrsjax.certify(jax.random.key(5), *args, **kwargs)
    np.testing.assert_array_equal(cert.counts, again.counts)
    np.testing.assert_array_equal(cert.select_votes, again.select_votes)


def test_bonferroni_over_tested_outputs_only():
    _, _, x, params = _linear_problem(2)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.2, 0.8)
    tested = np.array([0, 1, 7, 8, 9])  # flat indices: cells 0, 1 and 4 only
    cert = lrsjax.certify(
        jax.random.key(1),
        linear_model,
        params,
        x,
        sm,
        n0=16,
        n=300,
        alpha=0.05,
        batch_size=512,
        outputs=tested,
    )
    mask = np.zeros(D, bool)
    mask[tested] = True
    np.testing.assert_array_equal(cert.tested, mask)
    assert np.all(cert.abstain[~mask]) and np.all(np.isnan(cert.p_lower[~mask]))
    c = cert.counts[mask]
    level = 0.05 / mask.sum()  # the divisor counts tested outputs only
    expected = np.where(c > 0, stats.beta.ppf(level, np.maximum(c, 1), 300 - c + 1), 0.0)
    np.testing.assert_allclose(cert.p_lower[mask], expected, rtol=1e-9)
    # groups without tested outputs are not sampled at all
    untouched = ~np.isin(sm.group.reshape(-1), sm.group.reshape(-1)[tested])
    assert np.all(cert.select_votes[untouched] == 0)


def test_rank_levels_and_holm_corrections():
    _, _, x, params = _linear_problem(3)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.2, 0.8)
    kwargs = dict(n0=16, n=300, alpha=0.05, batch_size=512)
    ranked = lrsjax.certify(
        jax.random.key(2), linear_model, params, x, sm, correction="rank_levels", **kwargs
    )
    assert "no simultaneous-coverage proof" in ranked.method
    c = ranked.counts
    rank = np.array([(c <= ci).sum() for ci in c])  # ties share the smallest level of the block
    expected = np.where(c > 0, stats.beta.ppf(0.05 / rank, np.maximum(c, 1), 300 - c + 1), 0.0)
    np.testing.assert_allclose(ranked.p_lower, expected, rtol=1e-9)

    tau = 0.75
    holm = lrsjax.certify(
        jax.random.key(2), linear_model, params, x, sm, correction="holm", tau=tau, **kwargs
    )
    np.testing.assert_array_equal(holm.counts, c)  # same key, same samples
    pvalues = stats.binom.sf(c - 1, 300, tau)  # P(Binomial(n, tau) >= c)
    order = np.argsort(pvalues)
    passed = np.zeros(D, bool)
    for i, idx in enumerate(order):  # Holm step-down, by hand
        if pvalues[idx] > 0.05 / (D - i):
            break
        passed[idx] = True
    np.testing.assert_array_equal(~holm.abstain, passed)
    np.testing.assert_array_equal(holm.p_lower, np.where(passed, tau, 0.0))
    np.testing.assert_allclose(
        holm.radius[passed], float(np.float32(0.2)) * special.ndtri(tau), rtol=1e-12
    )  # own cell has std 0.2 (sampled as float32): naive radius = min std * Phi^{-1}(tau)


class _Spy:
    """An apply_fn that records whether it was ever traced."""

    def __init__(self, out_shape=(H, W, 2)):
        self.calls = 0
        self.out_shape = out_shape

    def __call__(self, params, z):
        self.calls += 1
        return jnp.zeros(self.out_shape)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(n0=0), "n0"),
        (dict(n=0), "n"),
        (dict(alpha=1.5), "alpha"),
        (dict(alpha=0.0), "alpha"),
        (dict(batch_size=0), "batch_size"),
        (dict(x=np.full((C, H, W), np.nan)), "x"),
        (dict(x=np.zeros((C, H + 1, W))), "x"),
        (dict(correction="holm"), "tau"),
        (dict(correction="holm", tau=0.4), "tau"),
        (dict(correction="sidak"), "correction"),
        (dict(outputs=np.zeros(D, bool)), "outputs"),
        (dict(outputs=np.array([D])), "outputs"),
        (dict(smoothing="isotropic"), "smoothing"),
        (dict(key=0), "key"),
        (dict(key=np.zeros(3, np.uint32)), "key"),
    ],
)
def test_bad_inputs_raise_before_tracing(change, name):
    spy = _Spy()
    args = dict(
        key=jax.random.key(0),
        x=np.zeros((C, H, W)),
        smoothing=noise.isotropic_gaussian((H, W), 0.25),
    )
    args |= change
    kwargs = {k: v for k, v in change.items() if k not in ("key", "x", "smoothing")}
    base = dict(n0=4, n=8, alpha=0.01, batch_size=2) | kwargs
    with pytest.raises(ValueError, match=name):
        lrsjax.certify(args["key"], spy, None, args["x"], args["smoothing"], **base)
    assert spy.calls == 0


def test_wrong_logits_shape_raises_without_compiling():
    size = _kernels._count_jit._cache_size()
    spy = _Spy(out_shape=(W, H, 2))
    with pytest.raises(ValueError, match="apply_fn"):
        lrsjax.certify(
            jax.random.key(0),
            spy,
            None,
            np.zeros((C, H, W)),
            noise.isotropic_gaussian((H, W), 0.25),
            n0=4,
            n=8,
            alpha=0.01,
            batch_size=2,
        )
    assert spy.calls == 1  # traced once by jax.eval_shape, never compiled
    assert _kernels._count_jit._cache_size() == size
    with pytest.raises(ValueError, match="grid_shape"):
        noise.localized_gaussian((4, 4), (5, 1), 0.1, 0.5)


# ------------------------------------------------------------------------------------------------
# graphs: clustered Bernoulli smoothing
# ------------------------------------------------------------------------------------------------

NODES, FEATURES = 8, 3
CLUSTERS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
# rank rows that are not involutions: indexing with argsort(rank) instead of rank (D4) differs
RANK = np.array([[0, 2, 3, 1], [1, 0, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]])
PER_RANK_PLUS = np.array([0.05, 0.15, 0.25, 0.35])
PER_RANK_MINUS = np.array([0.6, 0.5, 0.4, 0.3])
PARTNER = np.array([2, 4, 6, 0, 7, 1, 3, 5])  # node i looks at bit (PARTNER[i], 0)


def partner_bit_model(params, x: SparseBinary):
    """Node i predicts class 1 iff its partner's feature 0 is on (so P = flip rate of that bit)."""
    del params
    on = jax.ops.segment_sum((x.valid & (x.cols == 0)).astype(jnp.float32), x.rows, NODES)
    bit = on[jnp.asarray(PARTNER)]
    return jnp.stack([jnp.zeros(NODES), 10.0 * bit - 5.0], axis=-1)


def _graph_smoothing(plus=PER_RANK_PLUS):
    return noise.clustered_bernoulli(CLUSTERS, RANK, plus, PER_RANK_MINUS)


def test_graph_variance_certificate_uses_the_sampled_flip_rates():
    sm = _graph_smoothing()
    x = from_scipy(np.zeros((NODES, FEATURES)), capacity=2)
    n0, n = 3000, 600
    cert = lrsjax.certify(
        jax.random.key(0),
        partner_bit_model,
        None,
        x,
        sm,
        n0=n0,
        n=n,
        alpha=0.05,
        batch_size=256,
        num_features=FEATURES,
        num_bins=256,
    )
    group = CLUSTERS
    partner_region = CLUSTERS[PARTNER]
    expected_rate = PER_RANK_PLUS[RANK[group, partner_region]]  # D4: index with the rank itself
    wrong = PER_RANK_PLUS[np.argsort(RANK, axis=1)[group, partner_region]]
    assert np.any(np.abs(expected_rate - wrong) > 0.05)  # the test tells them apart
    rate = cert.select_votes[:, 1] / n0
    assert np.all(
        np.abs(rate - expected_rate) < 5 * np.sqrt(expected_rate * (1 - expected_rate) / n0)
    )
    # the certificate's weights come from the very same (group, region) probabilities
    base = cert.base_certs
    assert base.norm == "binary" and base.weights.shape == (2, 4, 4)
    tp = PER_RANK_PLUS[RANK]
    tm = PER_RANK_MINUS[RANK]
    np.testing.assert_allclose(base.weights[0], np.log((1 - tm) ** 2 / tp + tm**2 / (1 - tp)))
    np.testing.assert_allclose(base.weights[1], np.log(tp**2 / (1 - tm) + (1 - tp) ** 2 / tm))
    # predicted class 0 with score s0 = sigmoid(5) (bit off) or sigmoid(-5) (bit on)
    np.testing.assert_array_equal(cert.prediction, 0)
    hi, lo = special.expit(5.0), special.expit(-5.0)
    mean = (1 - expected_rate) * hi + expected_rate * lo
    var = expected_rate * (1 - expected_rate) * (hi - lo) ** 2
    assert np.all(cert.mu_lower <= mean) and np.all(cert.zeta_upper >= var)
    eps = np.sqrt(np.log(2 / (0.05 / NODES)) / (2 * n))
    assert np.all(cert.mu_lower >= mean - eps - 0.05)  # DKW width + sampling error + bins
    ok = ~cert.abstain
    assert ok.all()
    eta = np.log1p((cert.mu_lower - 0.5) ** 2 / cert.zeta_upper)
    np.testing.assert_allclose(base.eta, eta)
    # naive binary radii: largest r with r * max_j W[t, k, j] < eta
    worst = base.weights.max(axis=2)[:, group].T
    r = cert.binary_radius
    assert np.all(r * worst < eta[:, None]) and np.all((r + 1) * worst >= eta[:, None])


def test_graph_overflow_raises_with_the_fix():
    dense_sm = _graph_smoothing(plus=np.array([0.9, 0.9, 0.9, 0.9]))
    capacity = lrsjax.sampling.default_addition_capacity(_graph_smoothing(), FEATURES)
    x = from_scipy(np.zeros((NODES, FEATURES)), capacity=2)
    with pytest.raises(RuntimeError, match="addition_capacity"):
        lrsjax.certify(
            jax.random.key(0),
            partner_bit_model,
            None,
            x,
            dense_sm,
            n0=8,
            n=16,
            alpha=0.05,
            batch_size=256,
            num_features=FEATURES,
            addition_capacity=capacity,
        )


def dense_partner_bit_model(params, x):
    del params
    bit = x[jnp.asarray(PARTNER), 0]
    return jnp.stack([jnp.zeros(NODES), 10.0 * bit - 5.0], axis=-1)


def test_isotropic_sparse_smoothing_neyman_pearson_on_dense_input():
    sm = noise.isotropic_bernoulli(NODES, 0.05, 0.6)
    x = np.zeros((NODES, FEATURES))
    x[[0, 1, 2], 0] = 1  # partners 3, 5, 6 see a one that survives with probability 0.4
    cert = lrsjax.certify(
        jax.random.key(4),
        dense_partner_bit_model,
        None,
        x,
        sm,
        n0=32,
        n=400,
        alpha=0.05,
        batch_size=128,
        certificate="neyman_pearson",
        max_flips=(3, 3),
    )
    assert cert.base_certs is None and cert.sparse_grid.shape == (NODES, 4, 4)
    c = cert.counts
    expected = np.where(c > 0, stats.beta.ppf(0.05 / NODES, np.maximum(c, 1), 400 - c + 1), 0.0)
    np.testing.assert_allclose(cert.p_lower, expected, rtol=1e-9)
    # a node is certified iff p_lower > 1/2; rates 0.05 (bit off) and 0.6 (bit on deleted)
    p_true = np.where(np.isin(PARTNER, [0, 1, 2]), 0.6, 0.95)
    sd = np.sqrt(p_true * (1 - p_true) / 400)
    assert np.all(np.abs(c / 400 - p_true) < 5 * sd)
    grid = lrsjax.base_certs.sparse_smoothing_grid(cert.p_lower, 0.05, 0.6, 3, 3)
    np.testing.assert_array_equal(cert.sparse_grid, grid)
    np.testing.assert_array_equal(cert.abstain, ~grid[:, 0, 0])
    with pytest.raises(ValueError, match="certificate"):
        lrsjax.certify(
            jax.random.key(4),
            partner_bit_model,
            None,
            from_scipy(x),
            _graph_smoothing(),
            n0=4,
            n=4,
            alpha=0.05,
            batch_size=4,
            num_features=FEATURES,
            certificate="neyman_pearson",
        )


def test_gaussian_variance_certificate_bounds_the_true_score_moments():
    # softmax score of class 1 is sigmoid(2 s), s = w.z + b ~ N(margin, spread^2): integrate it
    weights, bias, x, params = _linear_problem(4)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.2, 0.8)
    n = 2000
    cert = lrsjax.certify(
        jax.random.key(6),
        linear_model,
        params,
        x,
        sm,
        n0=32,
        n=n,
        alpha=0.05,
        batch_size=512,
        certificate="variance",
        num_bins=512,
    )
    assert cert.p_lower is None and cert.base_certs.norm == "l2"
    stds = _per_output_stds(sm)
    margin = np.einsum("dchw,chw->d", weights, x) + bias
    spread = np.sqrt(np.sum(weights**2 * stds[:, None] ** 2, axis=(1, 2, 3)))
    t = np.linspace(-9, 9, 4001)
    density = stats.norm.pdf(t)
    sign = np.where(cert.prediction == 1, 1.0, -1.0)
    score = special.expit(2 * sign[:, None] * (margin[:, None] + spread[:, None] * t[None]))
    mean = np.trapezoid(score * density, t, axis=1)
    var = np.trapezoid((score - mean[:, None]) ** 2 * density, t, axis=1)
    assert np.all(cert.mu_lower <= mean) and np.all(cert.zeta_upper >= var)
    eps = np.sqrt(np.log(2 / (0.05 / D)) / (2 * n))
    assert np.all(cert.mu_lower >= mean - eps - 5 * np.sqrt(var / n) - 2 / 512)
    base = cert.base_certs
    np.testing.assert_allclose(base.weights[0], 1 / sm.stds**2)
    ok = ~cert.abstain
    assert ok.sum() >= D // 3
    np.testing.assert_allclose(
        base.eta[ok], np.log1p((cert.mu_lower[ok] - 0.5) ** 2 / cert.zeta_upper[ok])
    )
    np.testing.assert_allclose(cert.radius[ok], np.sqrt(base.eta[ok] * 0.2**2))


@pytest.mark.slow
def test_linear_certificate_approaches_the_truth_as_n_grows():
    weights, bias, x, params = _linear_problem(7)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.2, 0.8)
    cert = lrsjax.certify(
        jax.random.key(8),
        linear_model,
        params,
        x,
        sm,
        n0=64,
        n=200_000,
        alpha=0.01,
        batch_size=4096,
    )
    stds = _per_output_stds(sm)
    margin = np.einsum("dchw,chw->d", weights, x) + bias
    spread = np.sqrt(np.sum(weights**2 * stds[:, None] ** 2, axis=(1, 2, 3)))
    exact = np.abs(margin) / spread  # Phi^{-1}(p) of the exact consistency probability
    ok = ~cert.abstain
    assert ok.sum() >= D // 2
    certified = np.sqrt(cert.base_certs.eta[ok])
    assert np.all(certified <= exact[ok])
    # the corrected Clopper-Pearson gap at n = 2e5 is below 0.01 in probability
    p_true = special.ndtr(exact)
    assert np.all(cert.p_lower[ok] >= p_true[ok] - 0.01)
    assert np.all(certified >= 0.9 * exact[ok] - 0.02)


@pytest.mark.slow
def test_simultaneous_coverage_of_the_bonferroni_bounds():
    """Over repeated runs, all p_lower are below the exact probabilities in >= 1 - alpha of them."""
    weights, bias, x, params = _linear_problem(9)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.2, 0.8)
    stds = _per_output_stds(sm)
    margin = np.einsum("dchw,chw->d", weights, x) + bias
    spread = np.sqrt(np.sum(weights**2 * stds[:, None] ** 2, axis=(1, 2, 3)))
    p_one = special.ndtr(margin / spread)
    runs, alpha, failures = 200, 0.2, 0
    for seed in range(runs):
        cert = lrsjax.certify(
            jax.random.key(seed),
            linear_model,
            params,
            x,
            sm,
            n0=16,
            n=200,
            alpha=alpha,
            batch_size=512,
        )
        p_pred = np.where(cert.prediction == 1, p_one, 1 - p_one)
        failures += bool(np.any(cert.p_lower > p_pred))
    # Binomial(200, <= 0.2): mean <= 40, sd <= 5.7
    assert failures <= alpha * runs + 3 * np.sqrt(runs * alpha * (1 - alpha))
