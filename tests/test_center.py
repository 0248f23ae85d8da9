"""Center smoothing: models whose output distribution is known exactly (per-pixel thresholds:
Hamming distances are Poisson-binomial; the identity: l2 distances are noncentral chi), the
device histogram against the host, and the segmentation job's center-smoothing record."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

import lrsjax
from lrsjax import estimators, noise, sampling
from lrsjax.pipelines._center import certified_counts, run_center
from lrsjax.pipelines._method import Item, Method, Model

SIGMA = 0.25
SHAPE = (1, 4, 4)


def _threshold(t, x):
    """Pixel label 1 where x > t: logits [H, W, 2]."""
    s = x[0] - t
    return jnp.stack([-s, s], axis=-1)


def _image():
    # 6 ambiguous pixels (flip often), the rest far from the threshold
    values = np.full(16, 0.95)
    values[:8] = 0.05
    values[[0, 3, 9, 12, 14]] = [0.45, 0.55, 0.5, 0.6, 0.42]
    return jnp.asarray(values.reshape(SHAPE), jnp.float32)


def _distance_cdf(x, center):
    """Exact CDF of the Hamming distance between the label map of x + G and `center`."""
    p_one = scipy_stats.norm.cdf((np.asarray(x[0], np.float64) - 0.5) / SIGMA).reshape(-1)
    differ = np.where(np.asarray(center).reshape(-1) == 1, 1.0 - p_one, p_one)
    pmf = np.array([1.0])
    for p in differ:
        pmf = np.convolve(pmf, [1.0 - p, p])
    return np.cumsum(pmf)


def test_hamming_radii_cover_the_exact_quantiles():
    x = _image()
    sm = noise.isotropic_gaussian(SHAPE, SIGMA)
    eps = np.array([0.0, 0.05, 0.2])
    for seed in range(3):
        cert = lrsjax.certify_center(
            jax.random.key(seed), _threshold, 0.5, x, sm, n0=64, n=1500, alpha=0.01, eps=eps,
            batch_size=32,
        )  # fmt: skip
        cdf = _distance_cdf(x, cert.center)
        assert not cert.abstain
        assert cdf[int(cert.center_radius)] >= 0.5 - 0.05  # (a) holds exactly
        q = scipy_stats.norm.cdf(scipy_stats.norm.ppf(0.55) + eps / SIGMA)
        assert np.all(cert.k > 0) and np.all(np.diff(cert.mass_radius) >= 0)
        for j in range(eps.size):
            assert cdf[int(cert.mass_radius[j])] >= q[j]
        np.testing.assert_array_equal(cert.radius, 3.0 * cert.mass_radius)
        clean = np.asarray(np.argmax(_threshold(0.5, x), -1))
        assert cert.smoothing_error == np.count_nonzero(clean != cert.center)


def test_device_histogram_equals_host_distances():
    # The counting kernel and the output sampler draw the same noise for one key.
    x = _image()
    sm = noise.isotropic_gaussian(SHAPE, SIGMA)
    center = np.asarray(np.argmax(_threshold(0.5, x), -1), np.int32)
    one = sm._replace(group=np.zeros((4, 4), np.int32))
    prepared = one.prepare(one, x)
    run = sampling.kernel(
        _threshold, one, prepared, estimators.hamming_histogram(), batch_size=32, num_classes=2
    )
    counts = np.asarray(run.count(jax.random.key(5), 0.5, 64, target=center).counts)
    labels = sampling.make_output_sampler(_threshold, sm, batch_size=32, output="labels")(
        jax.random.key(5), 0.5, x, 64
    ).values
    distances = (labels != center).reshape(64, -1).sum(1)
    np.testing.assert_array_equal(counts, np.bincount(distances, minlength=17))


def _identity(w, x):
    return w * x.reshape(-1)[:3]


def test_l2_radius_is_sound_at_perturbed_inputs():
    x = jnp.full(SHAPE, 0.5)
    sm = noise.isotropic_gaussian(SHAPE, SIGMA)
    eps = np.array([0.1, 0.3])
    cert = lrsjax.certify_center(
        jax.random.key(1), _identity, 1.0, x, sm, n0=100, n=2000, alpha=0.01, eps=eps,
        batch_size=250, metric="l2",
    )  # fmt: skip
    assert not cert.abstain and cert.center.shape == (3,)
    offset = np.asarray(cert.center, np.float64) - 0.5  # f(x + G) ~ N(0.5, SIGMA^2 I_3)
    nc = float(offset @ offset) / SIGMA**2
    assert scipy_stats.ncx2.cdf(cert.center_radius**2 / SIGMA**2, 3, nc) >= 0.45
    for j, e in enumerate(eps):
        radius = cert.mass_radius[j]
        q = scipy_stats.norm.cdf(scipy_stats.norm.ppf(0.55) + e / SIGMA)
        assert scipy_stats.ncx2.cdf(radius**2 / SIGMA**2, 3, nc) >= q
        # at the worst x' (moved by e away from the center) the ball still holds 1/2 + delta
        far = (np.sqrt(nc) * SIGMA + e) ** 2 / SIGMA**2
        assert scipy_stats.ncx2.cdf(radius**2 / SIGMA**2, 3, far) >= 0.55 - 1e-12


def test_abstains_without_samples_enough_and_refuses_bad_input():
    x = _image()
    sm = noise.isotropic_gaussian(SHAPE, SIGMA)
    cert = lrsjax.certify_center(
        jax.random.key(0), _threshold, 0.5, x, sm, n0=64, n=4, alpha=0.01, eps=0.1, batch_size=32
    )  # 0.45 ** 4 > 0.005: no order statistic of 4 samples bounds the 0.45-quantile
    assert cert.abstain and np.all(np.isinf(cert.radius)) and cert.center_radius == np.inf
    with pytest.raises(ValueError, match="`metric`"):
        lrsjax.certify_center(
            jax.random.key(0), _threshold, 0.5, x, sm, n0=2, n=2, alpha=0.1, eps=0.1,
            batch_size=2, metric="lpips",
        )  # fmt: skip
    with pytest.raises(ValueError, match="`delta`"):
        lrsjax.certify_center(
            jax.random.key(0), _threshold, 0.5, x, sm, n0=2, n=2, alpha=0.1, eps=0.1,
            batch_size=2, delta=0.5,
        )  # fmt: skip
    with pytest.raises(ValueError, match="`eps`"):
        lrsjax.certify_center(
            jax.random.key(0), _threshold, 0.5, x, sm, n0=2, n=2, alpha=0.1, eps=[[0.1]],
            batch_size=2,
        )  # fmt: skip


def test_certified_counts():
    assert certified_counts(np.array([0.0, 2.5, 7.0, np.inf]), False, 5) == [5, 3, 0, 0]
    assert certified_counts(np.array([0.0, 1.0]), True, 5) == [0, 0]


def test_center_method_record():
    x = _image()
    labels = np.array(np.argmax(_threshold(0.5, x), -1)).reshape(-1)
    labels[1] = 0 if labels[1] else 1  # one wrong pixel
    evaluated = np.ones(16, bool)
    evaluated[2] = False
    item = Item(
        "img", jax.random.key(0), x, labels, evaluated, (4, 4), 2, arrays={}, seeds={},
    )  # fmt: skip
    budgets = np.array([0.0, 0.1])
    method = Method(
        "center_smoothing", "center smoothing", noise.isotropic_gaussian(SHAPE, SIGMA), budgets,
        dict(n0=64, n=800, alpha=0.01, batch_size=32), 864, arrays=("prediction", "abstain"),
        run=run_center,
    )  # fmt: skip
    result = run_center(method, jax.random.key(2), item, Model(_threshold, 0.5))
    record = result.records["center_smoothing"]
    cert = lrsjax.certify_center(
        jax.random.key(2), _threshold, 0.5, x, method.noise, eps=budgets, **method.options
    )
    center = np.asarray(cert.center).reshape(-1)
    num_correct = int(np.sum(evaluated & (center == labels)))
    assert record["mode"] == "center"
    assert record["num_certified"] == certified_counts(cert.radius, cert.abstain, 15)
    assert record["num_certified_correct"] == certified_counts(
        cert.radius, cert.abstain, num_correct
    )
    assert record["num_correct"] == num_correct
    np.testing.assert_array_equal(
        result.arrays["prediction__center_smoothing"], center.reshape(4, 4)
    )
    assert "center_smoothing_sampling_s" in result.timings


def test_segmentation_job_baselines():
    from lrsjax.pipelines import SegmentationJob
    from lrsjax.pipelines._segmentation import methods

    job = SegmentationJob.tiny()
    assert [m.name for m in methods(job)] == [
        "localized_naive", "isotropic_naive", "isotropic_equal_samples", "center_smoothing",
    ]  # fmt: skip
    assert [m.name for m in methods(job.replace(baselines=""))] == ["localized_naive"]
    only = methods(job.replace(baselines="center_smoothing"))
    assert [m.name for m in only] == ["localized_naive", "center_smoothing"]
    assert only[1].samples == only[0].samples  # equal forward passes
    for bad in ("isotropic,lpips", "isotropic,isotropic"):
        with pytest.raises(ValueError, match="`baselines`"):
            job.replace(baselines=bad).validated()
