"""lrsjax.certify refuses what it cannot certify: broken models, hopeless sample sizes, wrong
pixel ranges; certifies with the noise actually sampled; progress and timings change nothing."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import lrsjax
from lrsjax import estimators, noise, sampling, stats
from lrsjax.noise import _additive
from lrsjax.sampling import _kernels

C, H, W = 1, 4, 6
GRID = (2, 3)
D = H * W
COMMON = dict(n0=8, n=64, alpha=0.05, batch_size=8)


def constant_model(params, z):
    """Always class 1 with softmax score 1 (in float32), whatever the input."""
    return jnp.broadcast_to(jnp.array([0.0, 100.0]), (H, W, 2))


def nan_on_noisy_pixels(params, z):
    """Class 1, but NaN logits for outputs whose pixel left [-0.5, 1.5] (only under noise)."""
    wild = jnp.abs(z[0] - 0.5) > 1.0
    logits = jnp.broadcast_to(jnp.array([0.0, 1.0]), (H, W, 2))
    return jnp.where(wild[..., None], jnp.nan, logits)


def always_nan(params, z):
    return jnp.full((H, W, 2), jnp.nan)


def inf_model(params, z):
    return jnp.full((H, W, 2), 1.0).at[0, 0, 1].set(jnp.inf)


def image():
    return np.full((C, H, W), 0.5)


@pytest.mark.parametrize(
    "model, certificate",
    [
        (always_nan, "neyman_pearson"),
        (inf_model, "variance"),
        (nan_on_noisy_pixels, "neyman_pearson"),
        pytest.param(nan_on_noisy_pixels, "variance", marks=pytest.mark.slow),
        pytest.param(always_nan, "variance", marks=pytest.mark.slow),
        pytest.param(inf_model, "neyman_pearson", marks=pytest.mark.slow),
    ],
)
def test_nonfinite_logits_raise_and_name_the_counts(model, certificate):
    sm = noise.localized_gaussian((C, H, W), GRID, 0.5, 1.0)
    with pytest.raises(ValueError, match=r"NaN or infinite logits: \d+ noisy samples, at \d+ of"):
        lrsjax.certify(
            jax.random.key(0), model, None, image(), sm, certificate=certificate, **COMMON
        )


def test_nonfinite_counts_are_exact_and_sharded_like_one_device():
    sm = noise.localized_gaussian((C, H, W), GRID, 0.5, 1.0)
    count = sampling.make_counter(
        nan_on_noisy_pixels, sm, mode="votes", batch_size=4, num_classes=2
    )
    with pytest.raises(ValueError, match="NaN or infinite"):
        count(jax.random.key(1), None, image(), 30)
    # The kernel's own tallies: one model call per (sample, active group) can be broken.
    run = _kernels.kernel(
        nan_on_noisy_pixels, sm, sm.prepare(sm, image()), estimators.majority_vote(),
        batch_size=4, num_classes=2,
    )  # fmt: skip
    out = run.count(jax.random.key(1), None, 30)
    assert 0 < int(out.nonfinite_samples) <= 30 * sm.num_groups
    assert np.asarray(out.nonfinite_outputs).shape == (H, W)
    assert np.asarray(out.nonfinite_outputs).any()
    # counts over batch ranges add up to the counts of all batches
    parts = [run.count(jax.random.key(1), None, 30, batches=r) for r in ((0, 3), (3, 8))]
    summed = _kernels.add_counts(*parts)
    for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(out)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_finite_model_does_not_raise_and_counts_are_unchanged():
    sm = noise.localized_gaussian((C, H, W), GRID, 0.5, 1.0)
    cert = lrsjax.certify(jax.random.key(0), constant_model, None, image(), sm, **COMMON)
    np.testing.assert_array_equal(cert.counts, np.full(D, COMMON["n"]))


def test_one_class_model_is_an_error():
    def one_class(params, z):
        return jnp.zeros((H, W, 1))

    sm = noise.isotropic_gaussian((C, H, W), 0.25)
    with pytest.raises(ValueError, match="apply_fn.*>= 2 classes"):
        lrsjax.certify(jax.random.key(0), one_class, None, image(), sm, **COMMON)


def test_image_outside_unit_range_warns_with_the_range_and_the_fix():
    sm = noise.isotropic_gaussian((C, H, W), 0.25)
    uint8_like = np.full((C, H, W), 200.0)
    with pytest.warns(UserWarning, match=r"\[200, 200\].*x / 255"):
        lrsjax.certify(jax.random.key(0), constant_model, None, uint8_like, sm, **COMMON)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lrsjax.certify(jax.random.key(0), constant_model, None, image(), sm, **COMMON)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(correction="holm", tau=0.75),
        dict(correction="rank_levels"),
        dict(certificate="variance"),
    ],
)
def test_hopeless_sample_size_is_refused_with_the_smallest_n_that_certifies(kwargs):
    sm = noise.localized_gaussian((C, H, W), GRID, 0.5, 1.0)
    args = (jax.random.key(0), constant_model, None, image(), sm)
    common = dict(n0=4, alpha=0.01, batch_size=16, **kwargs)
    with pytest.raises(ValueError, match=r"`n` is too small.*Pass n >= (\d+)") as error:
        lrsjax.certify(*args, n=4, **common)
    smallest = int(error.value.args[0].rsplit("Pass n >= ", 1)[1].split(" ")[0])
    assert smallest > 4
    # one sample fewer is still refused; the named n certifies the constant model everywhere
    with pytest.raises(ValueError, match="too small"):
        lrsjax.certify(*args, n=smallest - 1, **common)
    cert = lrsjax.certify(*args, n=smallest, **common)
    if kwargs.get("correction") == "rank_levels":
        # the check is generous here (one output alone could get level alpha); with every count
        # tied, every output gets alpha / N and abstains
        assert cert.abstain.all()
    else:
        assert not cert.abstain.any()


def test_smallest_n_matches_the_closed_form_for_bonferroni():
    # all samples agree: p_lower = (alpha / N) ** (1 / n) > 1/2  <=>  n > log2(N / alpha)
    sm = noise.localized_gaussian((C, H, W), GRID, 0.5, 1.0)
    with pytest.raises(ValueError) as error:
        lrsjax.certify(
            jax.random.key(0), constant_model, None, image(), sm, n0=4, n=2, alpha=0.01,
            batch_size=4,
        )  # fmt: skip
    expected = int(np.floor(np.log2(D / 0.01))) + 1
    assert f"Pass n >= {expected} " in error.value.args[0]
    assert stats.clopper_pearson_lower(expected, expected, 0.01 / D) > 0.5
    assert stats.clopper_pearson_lower(expected - 1, expected - 1, 0.01 / D) <= 0.5


def test_certificate_uses_the_float32_stds_the_kernel_samples_with():
    # 0.7 rounds DOWN in float32: a certificate from the float64 std would claim a larger radius
    # than the noise actually sampled supports.
    sigma = 0.7
    sampled = float(np.float32(sigma))
    assert sampled < sigma
    sm = noise.isotropic_gaussian((C, H, W), sigma)
    cert = lrsjax.certify(jax.random.key(0), constant_model, None, image(), sm, **COMMON)
    np.testing.assert_array_equal(cert.base_certs.weights, np.full((1, 1, 1), 1.0 / sampled**2))
    np.testing.assert_allclose(cert.radius, sampled * special.ndtri(cert.p_lower), rtol=1e-14)
    assert np.all(cert.radius < sigma * special.ndtri(cert.p_lower))
    np.testing.assert_array_equal(_additive.sampled_scales(np.array([[np.inf]])), [[np.inf]])


@pytest.mark.parametrize("certificate", ["neyman_pearson", "variance"])
def test_progress_and_timings_change_nothing(monkeypatch, certificate):
    sm = noise.localized_gaussian((C, H, W), GRID, 0.5, 1.0)
    _, _, x, params = _linear(0)
    kwargs = dict(n0=24, n=200, alpha=0.05, batch_size=8, certificate=certificate)
    plain = lrsjax.certify(jax.random.key(3), _linear_model, params, x, sm, **kwargs)
    monkeypatch.setenv("LRSJAX_PROGRESS", "1")  # draw the bars: stages counted in batch ranges
    timings = {}
    shown = lrsjax.certify(
        jax.random.key(3), _linear_model, params, x, sm, progress=True, timings=timings, **kwargs
    )
    for a, b in zip(plain, shown):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    assert set(timings) == {"compile_s", "select_s", "estimate_s", "bound_s", "samples"}
    assert timings["samples"] == (24 + 200) * sm.num_groups
    assert all(timings[k] >= 0 for k in ("compile_s", "select_s", "estimate_s", "bound_s"))


def _linear_model(params, z):
    weights, bias = params
    score = jnp.einsum("dchw,chw->d", weights, z) + bias
    return jnp.stack([-score, score], axis=-1).reshape(H, W, 2)


def _linear(seed):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(D, C, H, W))
    bias = rng.normal(size=D) * 0.4
    x = rng.random((C, H, W))
    return weights, bias, x, (jnp.asarray(weights, jnp.float32), jnp.asarray(bias, jnp.float32))
