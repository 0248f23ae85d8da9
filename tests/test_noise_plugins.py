"""The noise plug-in point: Laplace and uniform noise (l1), a noise defined outside the package."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import lrsjax
from lrsjax import collective, noise

C, H, W = 1, 4, 4
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _draws(smoothing, x, count, seed=0):
    """`count` noisy examples of group 0 from the plug-in's per-example sampler."""
    prepared = smoothing.prepare(smoothing, x)
    params = jax.tree.map(lambda leaf: leaf[0], prepared.per_group)
    keys = jax.random.split(jax.random.key(seed), count)
    noisy, overflow = jax.vmap(prepared.sample, (None, 0, None, None, None))(
        prepared.config, keys, prepared.x, params, prepared.common
    )
    assert not np.any(np.asarray(overflow))
    return np.asarray(noisy, np.float64)


@pytest.mark.parametrize(
    "smoothing, reference",
    [
        (noise.isotropic_laplace((C, H, W), 0.3), stats.laplace(scale=float(np.float32(0.3)))),
        (
            noise.isotropic_uniform((C, H, W), 0.4),
            stats.uniform(loc=-float(np.float32(0.4)), scale=2 * float(np.float32(0.4))),
        ),
    ],
)
def test_l1_noises_draw_their_distribution(smoothing, reference):
    x = np.full((C, H, W), 0.5)
    offsets = (_draws(smoothing, x, 2000) - 0.5).ravel()
    assert stats.kstest(offsets, reference.cdf).pvalue > 1e-3
    # and the shared batch draw of the kernel is the same distribution
    prepared = smoothing.prepare(smoothing, x)
    shared = prepared.draw(prepared.config, jax.random.key(1), prepared.x, 500)
    batch = prepared.apply(
        prepared.config, shared, prepared.x, prepared.per_group[0], prepared.common
    )
    assert stats.kstest(np.asarray(batch, np.float64).ravel() - 0.5, reference.cdf).pvalue > 1e-3


def threshold_model(params, z):
    """Every output predicts [pixel (0, 0) > 0.5]: the smoothed classifier flips exactly when
    that pixel crosses 0.5, so the true l1 robustness radius is |x[0, 0, 0] - 0.5|."""
    score = (z[0, 0, 0] - 0.5) * 1e4
    return jnp.broadcast_to(jnp.stack([-score, score]), (H, W, 2))


@pytest.mark.parametrize(
    "factory, pixel",
    [
        (noise.isotropic_laplace, 0.58),
        (noise.isotropic_uniform, 0.75),
        pytest.param(noise.isotropic_laplace, 0.75, marks=pytest.mark.slow),
        pytest.param(noise.isotropic_uniform, 0.58, marks=pytest.mark.slow),
    ],
)
def test_l1_radius_never_exceeds_the_exact_radius_and_approaches_it(factory, pixel):
    # Laplace: p = 1 - exp(-(x0 - t) / lam) / 2, so -lam log(2 (1 - p)) = x0 - t exactly;
    # uniform: p = (x0 - t + lam) / (2 lam), so lam (2 p - 1) = x0 - t exactly.
    scale = 0.4
    x = np.full((C, H, W), 0.3)
    x[0, 0, 0] = pixel
    smoothing = factory((C, H, W), scale)
    cert = lrsjax.certify(
        jax.random.key(3), threshold_model, None, x, smoothing, n0=32, n=20000, alpha=0.001,
        batch_size=2000,
    )  # fmt: skip
    truth = pixel - 0.5
    assert cert.base_certs.norm == "l1"
    assert np.all(cert.prediction == 1) and not cert.abstain.any()
    assert np.all(cert.radius <= truth)
    assert np.all(cert.radius >= 0.8 * truth)  # tight up to the estimation error


def test_constant_model_gets_the_closed_form_l1_radius():
    def constant(params, z):
        return jnp.broadcast_to(jnp.array([0.0, 100.0]), (H, W, 2))

    x = np.full((C, H, W), 0.5)
    n, alpha = 400, 0.01
    p = (alpha / (H * W)) ** (1 / n)  # every sample agrees: Clopper-Pearson gives level**(1/n)
    lam = float(np.float32(0.25))
    for factory, radius in (
        (noise.isotropic_laplace, -lam * np.log(2 * (1 - p))),
        (noise.isotropic_uniform, lam * (2 * p - 1)),
    ):
        cert = lrsjax.certify(
            jax.random.key(0), constant, None, x, factory((C, H, W), 0.25), n0=8, n=n,
            alpha=alpha, batch_size=400,
        )  # fmt: skip
        np.testing.assert_allclose(cert.radius, radius, rtol=1e-9)


def test_localized_l1_noise_feeds_the_collective_certificate():
    x = np.random.default_rng(0).random((C, H, W))
    smoothing = noise.localized_laplace((C, H, W), (2, 2), 0.2, 0.6)
    assert smoothing.scales.shape == (4, 4)
    cert = lrsjax.certify(
        jax.random.key(0), threshold_model, None, x, smoothing, n0=16, n=2000, alpha=0.01,
        batch_size=500,
    )  # fmt: skip
    weights = cert.base_certs.weights
    expected = 1 / np.asarray(np.asarray(smoothing.scales, np.float32), np.float64)
    np.testing.assert_array_equal(weights[0], expected)
    result = collective.certify_collective(cert.base_certs, [0.01, 0.05], mode="milp")
    naive = [(cert.radius > eps).sum() for eps in (0.01, 0.05)]
    assert np.all(np.asarray(result.certified) >= naive)
    with pytest.raises(ValueError, match="certificate"):
        lrsjax.certify(
            jax.random.key(0), threshold_model, None, x, smoothing, n0=16, n=2000, alpha=0.01,
            batch_size=500, certificate="variance",
        )  # fmt: skip


def test_noise_plugins_validate_their_parameters():
    with pytest.raises(ValueError, match="scale"):
        noise.isotropic_laplace((C, H, W), -1.0)
    with pytest.raises(ValueError, match="half_width"):
        noise.isotropic_uniform((C, H, W), 0.0)
    broken = noise.isotropic_laplace((C, H, W), 0.5)._replace(parameters={"scales": [[np.nan]]})
    with pytest.raises(ValueError, match="scales"):
        noise.check_noise(broken)


def test_a_noise_defined_outside_the_package_certifies(capsys):
    spec = importlib.util.spec_from_file_location("custom_noise", EXAMPLES / "custom_noise.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = type("Args", (), dict(length=40, segments=4, n0=16, n=400, seed=0))
    cert, result = example.main(args)
    assert cert.base_certs.weights.shape == (1, 4, 4)
    assert (~cert.abstain).sum() > 20
    assert np.all(np.diff(np.asarray(result.certified)) <= 0)
    assert "collective" in capsys.readouterr().out
