"""Single-output classifiers: CERTIFY / PREDICT (Cohen et al., 2019), the l_p radii, SegCertify in
one call, and the classifier metrics. Reference numbers are recomputed from scipy where possible;
the rest are the test vectors of the specification (TV-C*, section 3 and TV-S1)."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import lrsjax
from lrsjax import _classify, noise, results
from lrsjax.sampling import _kernels

KEY = jax.random.key(0)
IMAGE = np.full((1, 4, 4), 0.5, np.float32)


def linear(params, x):
    """Binary linear classifier on the flattened image: class 1 iff w . x + b > 0."""
    w, b = params
    return jnp.stack([jnp.zeros(()), jnp.dot(w, x.reshape(-1)) + b])


CONSTANT = (np.zeros(16, np.float32), np.float32(1.0))  # `linear` always predicts class 1
SEGMENTER_CLASSES = jnp.array([0.0, 1.0])


def segmenter(params, x):
    """A segmentation model that predicts class 1 on every pixel."""
    return jnp.broadcast_to(SEGMENTER_CLASSES, (4, 4, 2)) + 0.0 * x[0, :, :, None]


def host_certificate(counts, n, alpha, smoothing, norm=None):
    """The classifier certificate of a hand-made count (the host half of certify_classifier)."""
    single, _ = _classify._single_group(smoothing, IMAGE)
    made = types.SimpleNamespace(prediction=np.array([0]), counts=np.array([counts]))
    return _classify._from_counts(single, made, n, alpha, _classify._check_norm(norm), IMAGE.size)


# ---- test vectors (Cohen's CERTIFY, binary form) -------------------------------------------------


@pytest.mark.parametrize(
    "n, counts, alpha, sigma, p_lower, radius",
    [
        (100000, 99000, 0.001, 0.5, 0.9889893404, 1.14499998),  # TV-C1
        (100, 100, 0.001, 0.25, 0.9332543008, 0.37511876),  # TV-C2
        (10000, 9000, 0.001, 0.25, 0.8904097337, 0.30717752),  # TV-C3
        (100, 90, 0.01, 0.5, 0.8086697146, 0.43650230),  # TV-C4
        (10, 10, 0.001, 1.0, 0.5011872336, 0.0029760),  # TV-C6, certify part (R / sigma)
    ],
)
def test_certify_test_vectors(n, counts, alpha, sigma, p_lower, radius):
    cert = host_certificate(counts, n, alpha, noise.isotropic_gaussian((4, 4), sigma))
    assert cert.p_lower == pytest.approx(p_lower, abs=1e-10)
    assert cert.radius == pytest.approx(radius, abs=1e-7)
    assert not cert.abstain and cert.prediction == 0
    # the bound is exact: P(Bin(n, p_lower) >= counts) = alpha
    assert stats.binom.sf(counts - 1, n, cert.p_lower) == pytest.approx(alpha, rel=1e-6)


def test_abstains_when_the_bound_does_not_exceed_one_half():  # TV-C5
    cert = host_certificate(510, 1000, 0.001, noise.isotropic_gaussian((4, 4), 0.25))
    assert cert.p_lower == pytest.approx(0.4607130330, abs=1e-10)
    assert cert.abstain and cert.prediction == -1 and cert.radius == 0.0 and cert.counts == 510


@pytest.mark.parametrize(
    "n, ceiling",
    [(100, 1.500475), (1000, 2.463263), (10**4, 3.198578), (10**5, 3.811457), (10**6, 4.346774)],
)
def test_radius_ceiling(n, ceiling):  # TV-C8: every sample agreeing, sigma = 1
    cert = host_certificate(n, n, 0.001, noise.isotropic_gaussian((4, 4), 1.0))
    assert cert.radius == pytest.approx(ceiling, abs=1e-6)


@pytest.mark.parametrize("k, n", [(1, 40), (2, 301), (3, 5114), (4, 218105)])
def test_samples_needed_for_a_radius(k, n):  # TV-C8: n >= log(alpha) / log(Phi(k))
    smoothing = noise.isotropic_gaussian((4, 4), 1.0)
    assert host_certificate(n, n, 0.001, smoothing).radius >= k
    assert host_certificate(n - 1, n - 1, 0.001, smoothing).radius < k


# ---- PREDICT -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "top, second, p_value, predicts",
    [
        (60, 30, 0.0020602657, True),  # TV-C7
        (55, 45, 0.36820162, False),
        (62, 38, 0.020978736, True),
        (70, 20, 1.1363565e-07, True),
    ],
)
def test_predict_test_vectors(top, second, p_value, predicts):
    votes = np.array([3, second, 0, top])  # class 3 first, class 1 runner-up
    prediction, got = _classify._predict_decision(votes, 0.05)
    assert got == pytest.approx(p_value, rel=1e-6)
    assert prediction == (3 if predicts else -1)


def test_predict_ties_abstain_and_pick_the_lowest_class():
    assert _classify._predict_decision(np.array([0, 40, 40]), 0.5) == (-1, 1.0)


def test_predict_refuses_n_that_can_never_predict():  # TV-C6, predict part
    assert _classify._predict_decision(np.array([10, 0]), 0.001) == (-1, 0.001953125)
    with pytest.raises(ValueError, match=r"`n`.*n >= 11"):
        lrsjax.predict_classifier(
            KEY, linear, CONSTANT, IMAGE, noise.isotropic_gaussian((4, 4), 0.25), n=10,
            alpha=0.001, batch_size=64,
        )  # fmt: skip
    assert _classify._min_predict_samples(0.001) == 11
    assert _classify._min_predict_samples(0.5) == 2


def test_predict_of_a_constant_classifier():
    smoothing = noise.isotropic_gaussian((4, 4), 0.25)
    out = lrsjax.predict_classifier(
        KEY, linear, CONSTANT, IMAGE, smoothing, n=64, alpha=0.001, batch_size=64
    )
    assert out.prediction == 1 and out.p_value == pytest.approx(2 * 0.5**64, rel=1e-12)
    batch = lrsjax.predict_classifier(
        KEY, linear, CONSTANT, np.stack([IMAGE] * 2), smoothing, n=64, alpha=0.001, batch_size=64
    )
    assert batch.prediction.tolist() == [1, 1] and batch.p_value.shape == (2,)


def test_predict_abstains_on_a_fair_coin():
    # class 1 iff the noise of pixel 0 is positive: p = 1/2, so the test rarely rejects
    params = (np.eye(16, dtype=np.float32)[0], np.float32(-0.5))
    out = lrsjax.predict_classifier(
        KEY, linear, params, np.stack([IMAGE] * 8), noise.isotropic_gaussian((4, 4), 0.5),
        n=200, alpha=0.001, batch_size=64,
    )  # fmt: skip
    assert np.all(out.prediction == -1)
    assert np.all(out.p_value > 0.001)


# ---- the sampling path ---------------------------------------------------------------------------

NOISES = {
    "gaussian": (noise.isotropic_gaussian((4, 4), 0.25), lambda p: 0.25 * special.ndtri(p)),
    "laplace": (noise.isotropic_laplace((4, 4), 0.5), lambda p: -0.5 * math.log(2 * (1 - p))),
    "uniform": (noise.isotropic_uniform((4, 4), 0.5), lambda p: 0.5 * (2 * p - 1)),
}


@pytest.mark.parametrize(
    "name", ["gaussian", pytest.param("laplace", marks=pytest.mark.slow),
             pytest.param("uniform", marks=pytest.mark.slow)],
)  # fmt: skip
def test_constant_classifier_gets_the_closed_form(name):
    smoothing, radius = NOISES[name]
    n, alpha = 100, 0.001
    cert = lrsjax.certify_classifier(
        KEY, linear, CONSTANT, IMAGE, smoothing, n0=10, n=n, alpha=alpha, batch_size=64
    )
    assert cert.prediction == 1 and not cert.abstain and cert.counts == n
    assert cert.p_lower == pytest.approx(alpha ** (1 / n), rel=1e-12)
    assert cert.radius == pytest.approx(radius(alpha ** (1 / n)), rel=1e-12)
    assert cert.interval is None


@pytest.mark.parametrize("name", sorted(NOISES))
def test_unanimous_counts_give_the_closed_form(name):
    smoothing, radius = NOISES[name]
    cert = host_certificate(100, 100, 0.001, smoothing)
    assert cert.p_lower == pytest.approx(0.001 ** (1 / 100), rel=1e-12)
    assert cert.radius == pytest.approx(radius(0.001 ** (1 / 100)), rel=1e-12)


def test_matches_certify_on_a_real_model():
    smoothing = noise.isotropic_gaussian((4, 4), 0.5)
    params = (np.linspace(-1, 1, 16, dtype=np.float32), np.float32(0.2))
    cert = lrsjax.certify_classifier(
        KEY, linear, params, IMAGE, smoothing, n0=20, n=200, alpha=0.01, batch_size=64
    )
    multi = lrsjax.certify(
        KEY, _classify._SingleOutput(linear), params, IMAGE,
        smoothing._replace(group=np.zeros((1,), np.int32)), n0=20, n=200, alpha=0.01,
        batch_size=64,
    )  # fmt: skip
    assert 0 < cert.counts < 200
    assert cert.counts == multi.counts[0] and cert.p_lower == multi.p_lower[0]
    assert cert.radius == pytest.approx(multi.radius[0], rel=1e-12)


def test_batch_uses_one_key_per_input_and_one_compilation():
    smoothing = noise.isotropic_gaussian((4, 4), 0.5)
    params = (np.linspace(-1, 1, 16, dtype=np.float32), np.float32(0.2))
    images = np.stack([IMAGE, IMAGE * 0.5, IMAGE * 1.5])
    options = dict(n0=20, n=100, alpha=0.01, batch_size=64)
    lrsjax.certify_classifier(KEY, linear, params, images[0], smoothing, **options)  # compile
    size = _kernels._count_jit._cache_size()
    batch = lrsjax.certify_classifier(KEY, linear, params, images, smoothing, **options)
    assert _kernels._count_jit._cache_size() == size  # every input reuses the kernel
    assert batch.radius.shape == batch.counts.shape == batch.prediction.shape == (3,)
    for i in range(3):
        one = lrsjax.certify_classifier(
            jax.random.fold_in(KEY, i), linear, params, images[i], smoothing, **options
        )
        assert (one.counts, one.p_lower, one.radius) == (
            batch.counts[i],
            batch.p_lower[i],
            batch.radius[i],
        )
    again = lrsjax.certify_classifier(KEY, linear, params, images, smoothing, **options)
    assert np.array_equal(again.counts, batch.counts)
    other = lrsjax.certify_classifier(
        jax.random.key(1), linear, params, images, smoothing, **options
    )
    assert not np.array_equal(other.counts, batch.counts)


def test_interval_passes_through_for_multiplicative_noise():
    smoothing = noise.rayleigh_gamma((4, 4), math.sqrt(2 / math.pi))
    cert = host_certificate(100, 100, 0.001, smoothing)
    assert np.array_equal(cert.interval, noise.rayleigh_interval(cert.p_lower).reshape(2))
    with pytest.raises(ValueError, match="`norm`"):
        lrsjax.certify_classifier(
            KEY, linear, CONSTANT, IMAGE, smoothing, n0=10, n=100, alpha=0.001, batch_size=64,
            norm="l2",
        )  # fmt: skip


@pytest.mark.slow
def test_interval_of_a_batch_under_multiplicative_noise():
    smoothing = noise.rayleigh_gamma((4, 4), math.sqrt(2 / math.pi))
    cert = lrsjax.certify_classifier(
        KEY, linear, CONSTANT, np.stack([IMAGE] * 2), smoothing, n0=10, n=100, alpha=0.001,
        batch_size=64,
    )  # fmt: skip
    assert cert.interval.shape == (2, 2)
    assert np.array_equal(cert.interval, noise.rayleigh_interval(cert.p_lower))


def test_an_image_outside_the_unit_range_warns_once():
    with pytest.warns(UserWarning, match=r"\[0, 1\] pixel units") as caught:
        lrsjax.certify_classifier(
            KEY, linear, CONSTANT, IMAGE * 255, NOISES["gaussian"][0], n0=10, n=100, alpha=0.001,
            batch_size=64,
        )  # fmt: skip
    assert len([w for w in caught if "pixel units" in str(w.message)]) == 1


# ---- norms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "d, r_inf, r_4",
    [(3072, 0.01049311, 0.078119), (150528, 0.00149902, 0.029526), (784, 0.02077096, 0.109910)],
)
def test_lp_conversion_vectors(d, r_inf, r_4):  # section 3(d), Gaussian sigma 0.25, p 0.99
    r2 = 0.25 * special.ndtri(0.99)
    assert r2 == pytest.approx(0.581587, abs=1e-6)
    assert lrsjax.lp_radius_from_l2(r2, d, "linf") == pytest.approx(r_inf, abs=1e-8)
    assert lrsjax.lp_radius_from_l2(r2, d, math.inf) == pytest.approx(r_inf, abs=1e-8)
    assert lrsjax.lp_radius_from_l2(r2, d, 4) == pytest.approx(r_4, abs=1e-6)
    assert lrsjax.lp_radius_from_l2(r2, d, 1) == r2 == lrsjax.lp_radius_from_l2(r2, d, 2)
    assert lrsjax.lp_radius_from_l2(r2, d, "linf") < r2 / math.sqrt(d)  # rounded down


@pytest.mark.parametrize(
    "fn, p_a, p_b, lam, radius",
    [
        ("uniform_l1_radius", 0.9, None, 0.5, 0.4),
        ("uniform_l1_radius", 0.8, 0.15, 0.5, 0.325),
        ("uniform_l1_radius", 0.7, 0.2, 1.0, 0.5),
        ("laplace_l1_radius", 0.9, None, 0.5, 0.804719),
        ("laplace_l1_radius", 0.8, 0.1, 1.0, 1.203973),  # the mass term wins
        ("laplace_l1_radius", 0.6, 0.01, 1.0, 2.047172),  # the ratio term wins
        ("laplace_l1_radius", 0.9, 0.1, 1.0, 1.609438),  # binary
    ],
)
def test_l1_radius_functions(fn, p_a, p_b, lam, radius):  # section 3(d)
    got = getattr(lrsjax, fn)(p_a, lam, p_b)
    assert got == pytest.approx(radius, abs=1e-6)
    assert got <= radius + 1e-6
    tie = 0.5 if p_b is None else p_b
    assert getattr(lrsjax, fn)(tie, lam, p_b) == 0.0  # p_A not above p_B: nothing certified
    assert getattr(lrsjax, fn)(tie / 2, lam, p_b) == 0.0


def test_radius_functions_agree_with_the_noise_certificates():
    p = np.array([0.51, 0.75, 0.9, 0.999])
    uniform = [host_noise_radius(noise.isotropic_uniform((4, 4), 0.5), q) for q in p]
    laplace = [host_noise_radius(noise.isotropic_laplace((4, 4), 0.5), q) for q in p]
    assert np.allclose(lrsjax.uniform_l1_radius(p, 0.5), uniform, rtol=1e-12, atol=0)
    assert np.allclose(lrsjax.laplace_l1_radius(p, 0.5), laplace, rtol=1e-12, atol=0)
    assert lrsjax.uniform_linf_radius(0.9, 0.5, 3072, 0.1) == lrsjax.uniform_linf_radius(
        0.9, 0.5, 3072
    )
    with pytest.raises(ValueError, match="`p_upper_other`"):
        lrsjax.laplace_l1_radius(0.9, 1.0, 1.5)
    with pytest.raises(ValueError, match="`scale`"):
        lrsjax.laplace_l1_radius(0.9, 0.0)


def test_l1_vectors():  # section 3(d), binary forms
    uniform = host_noise_radius(noise.isotropic_uniform((4, 4), 0.5), 0.9)
    laplace = host_noise_radius(noise.isotropic_laplace((4, 4), 0.5), 0.9)
    assert uniform == pytest.approx(0.4, abs=1e-12)
    assert laplace == pytest.approx(0.804719, abs=1e-6)
    assert lrsjax.uniform_linf_radius(0.9, 0.5, 3072) == pytest.approx(1.6627056e-04, rel=1e-7)
    assert lrsjax.uniform_linf_radius(0.5, 0.5, 3072) == 0.0


def host_noise_radius(smoothing, p_lower):
    single, _ = _classify._single_group(smoothing, IMAGE)
    estimate = lrsjax.estimators.ProbabilityEstimate(np.array([p_lower]), np.array([0]), "")
    out = single.certificates["probability"](single, np.zeros(1, int), estimate, np.ones(1, bool))
    return float(out.radius[0])


def test_norm_option_on_the_sampling_path():
    smoothing, radius = NOISES["gaussian"]
    p = 0.001 ** (1 / 100)
    cert = lrsjax.certify_classifier(
        KEY, linear, CONSTANT, IMAGE, smoothing, n0=10, n=100, alpha=0.001, batch_size=64,
        norm="linf",
    )  # fmt: skip
    assert cert.radius == pytest.approx(radius(p) / math.sqrt(IMAGE.size), rel=1e-12)
    assert cert.method.endswith("radius=linf")


@pytest.mark.parametrize("name", sorted(NOISES))
def test_norm_option(name):
    smoothing, radius = NOISES[name]
    d = IMAGE.size
    p = 0.001 ** (1 / 100)
    base = radius(p)

    def run(norm):
        return host_certificate(100, 100, 0.001, smoothing, norm).radius

    if name == "gaussian":
        assert run("l1") == pytest.approx(base, rel=1e-12)
        assert run("linf") == pytest.approx(base / math.sqrt(d), rel=1e-12)
        assert run(4) == pytest.approx(base / d**0.25, rel=1e-12)
    else:
        assert run("l1") == pytest.approx(base, rel=1e-12)
        assert run("l2") == pytest.approx(base / math.sqrt(d), rel=1e-12)
        expected = base / d
        if name == "uniform":  # the sharper uniform form
            expected = float(lrsjax.uniform_linf_radius(p, 0.5, d))
            assert expected > base / d
        assert run("linf") == pytest.approx(expected, rel=1e-12)
    assert host_certificate(500, 1000, 0.001, smoothing, "linf").radius == 0.0  # abstained


# ---- refusals ------------------------------------------------------------------------------------


def test_refuses_localized_noise_wrong_logits_and_bad_norms():
    options = dict(n0=10, n=100, alpha=0.001, batch_size=64)
    localized = noise.localized_gaussian((4, 4), (2, 2), 0.25, 0.5)
    with pytest.raises(ValueError, match="single smoothing group"):
        lrsjax.certify_classifier(KEY, linear, CONSTANT, IMAGE, localized, **options)
    smoothing = noise.isotropic_gaussian((4, 4), 0.25)
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        lrsjax.certify_classifier(
            KEY, lambda p, x: linear(p, x)[None], CONSTANT, IMAGE, smoothing, **options
        )
    for norm in ("l3", 0.5, True):
        with pytest.raises(ValueError, match="`norm`"):
            lrsjax.certify_classifier(KEY, linear, CONSTANT, IMAGE, smoothing, norm=norm, **options)
    with pytest.raises(ValueError, match="rank 3 or a batch of rank 4"):
        lrsjax.certify_classifier(KEY, linear, CONSTANT, IMAGE[0], smoothing, **options)
    with pytest.raises(ValueError, match="at least one input"):
        lrsjax.certify_classifier(
            KEY, linear, CONSTANT, np.zeros((0, 1, 4, 4)), smoothing, **options
        )
    graph = np.zeros((6, 5), np.float32)
    with pytest.raises(ValueError, match="radius or a parameter interval"):  # sparse-smoothing grid
        lrsjax.certify_classifier(
            KEY, linear, CONSTANT, graph, noise.isotropic_bernoulli(6, 0.1, 0.4), **options
        )
    with pytest.raises(ValueError, match="`p`"):
        lrsjax.lp_radius_from_l2(1.0, 10, 0.5)
    with pytest.raises(ValueError, match="`r2`"):
        lrsjax.lp_radius_from_l2(-1.0, 10, 2)
    with pytest.raises(ValueError, match="`n`"):  # even unanimous samples would abstain
        lrsjax.certify_classifier(KEY, linear, CONSTANT, IMAGE, smoothing, n0=1, n=5, alpha=0.001,
                                  batch_size=8)  # fmt: skip


# ---- SegCertify ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sigma, tau, n, radius", [(0.25, 0.75, 100, 0.168622), (0.5, 0.95, 500, 0.822427)]
)
def test_segcertify_radius(sigma, tau, n, radius):  # TV-S1
    cert = lrsjax.segcertify(
        KEY, segmenter, None, IMAGE, sigma, n0=10, n=n, alpha=0.01, tau=tau, batch_size=64
    )
    assert not cert.abstain.any() and np.all(cert.prediction == 1)
    assert np.allclose(cert.radius, radius, atol=1e-6)
    assert "holm" in cert.method


# ---- metrics -------------------------------------------------------------------------------------


def test_metrics_by_hand():
    prediction = np.array([0, 1, -1, 2, 1])
    labels = np.array([0, 1, 1, 0, 1])
    radius = np.array([0.5, 1.0, 0.0, 2.0, 0.25])
    ca = results.certified_accuracy_at(prediction, radius, labels, [0.0, 0.25, 0.5, 1.0])
    assert ca.tolist() == [3 / 5, 2 / 5, 1 / 5, 0.0]  # strict: radius 0.5 is not certified at 0.5
    assert results.exact_acr(prediction, radius, labels) == pytest.approx((0.5 + 1.0 + 0.25) / 5)
    assert results.abstain_rate(prediction) == 1 / 5
    hp = results.high_probability_certified_accuracy(
        prediction, radius, labels, 0.0, alpha=0.001, rho=0.001
    )
    slack = 0.001 + math.sqrt(0.001 * 0.999 * math.log(1000) / 5) + math.log(1000) / 15
    assert hp == pytest.approx(3 / 5 - slack, rel=1e-12)
    with pytest.raises(ValueError, match="`radius`"):
        results.exact_acr(prediction, np.array([0.5, 1.0, 0.3, 2.0, 0.25]), labels)


def test_metric_vectors():  # TV-C9, TV-C10
    labels = np.arange(6)
    prediction = np.array([0, 1, 9, 3, -1, 5])
    radius = np.array([0.8, 0.3, 0.9, 0.05, 0.0, 0.5])
    ca = results.certified_accuracy_at(prediction, radius, labels, [0.0, 0.25, 0.5, 0.75])
    assert ca == pytest.approx([4 / 6, 0.5, 1 / 6, 1 / 6], abs=1e-12)
    assert results.exact_acr(prediction, radius, labels) == pytest.approx(0.275, abs=1e-12)
    correct = np.arange(500) < 250
    hp = results.high_probability_certified_accuracy(
        np.where(correct, 1, -1), np.where(correct, 1.0, 0.0), np.ones(500, int), 0.5,
        alpha=0.001, rho=0.001,
    )  # fmt: skip
    assert hp == pytest.approx(0.49067977, abs=1e-8)


def test_exact_acr_is_the_integral_of_the_curve():
    rng = np.random.default_rng(0)
    prediction = rng.integers(-1, 3, 50)
    labels = rng.integers(0, 3, 50)
    radius = np.where(prediction == -1, 0.0, rng.uniform(0, 2, 50))
    # the curve is a step function with steps at the radii: integrate it piece by piece
    edges = np.concatenate([[0.0], np.sort(radius)])
    steps = results.certified_accuracy_at(prediction, radius, labels, edges[:-1])
    integral = float(np.sum(steps * np.diff(edges)))
    assert results.exact_acr(prediction, radius, labels) == pytest.approx(integral, rel=1e-12)


# ---- coverage on linear classifiers --------------------------------------------------------------


def coverage_failures(num_trials, key):
    """Certificates of a binary linear classifier under Gaussian noise whose class is wrong or
    whose radius exceeds the exact distance to the decision boundary (which is tight for
    Cohen's certificate: any p_lower above the true probability gives a too large radius)."""
    sigma, alpha = 0.25, 0.2
    w = np.zeros(16, np.float32)
    w[:2] = (0.6, 0.8)  # unit norm
    b = np.float32(-0.7)
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)))
    images = np.full((num_trials, 1, 4, 4), 0.5, np.float32)
    images[:, 0, 0, :2] = rng.uniform(0, 1, (num_trials, 2)).astype(np.float32)
    margin = images.reshape(num_trials, -1).astype(np.float64) @ w.astype(np.float64) + float(b)
    cert = lrsjax.certify_classifier(
        key, linear, (w, b), images, noise.isotropic_gaussian((4, 4), sigma), n0=10, n=100,
        alpha=alpha, batch_size=64,
    )  # fmt: skip
    truth = (margin > 0).astype(int)
    wrong = ~cert.abstain & ((cert.prediction != truth) | (cert.radius > np.abs(margin)))
    return int(wrong.sum()), int((~cert.abstain).sum()), alpha


def test_coverage_on_linear_classifiers_fast():
    failures, certified, alpha = coverage_failures(100, KEY)
    assert certified >= 40
    assert failures <= stats.binom.ppf(1 - 1e-4, 100, alpha)


@pytest.mark.slow
def test_coverage_on_linear_classifiers():
    failures, certified, alpha = coverage_failures(2000, jax.random.key(7))
    assert certified >= 800
    assert failures <= stats.binom.ppf(1 - 1e-6, 2000, alpha)
