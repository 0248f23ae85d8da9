"""`lrsjax.probabilistic_certificate`: a Clopper-Pearson upper bound on the probability that a
random transformation changes the prediction, its floor, and why smaller numbers are not offered."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

import lrsjax
from lrsjax import noise, stats

X = np.full((1, 4, 4), 0.6, np.float32)


def classifier(params, z):
    """Predicts [mean(z) > 0.5], logits [2]."""
    score = (jnp.mean(z) - 0.5) * 1e3
    return jnp.stack([-score, score])


def uniform_brightness(key, x):
    """`x + b`, `b ~ U(-0.5, 0.5)`: at x = 0.6 the class changes iff b < -0.1 (probability 0.4)."""
    return noise.brightness(x, jax.random.uniform(key, (), minval=-0.5, maxval=0.5))


def clipped_jitter(key, x):
    """A transform with clipping (not composable): the class never changes at x = 0.6."""
    return jnp.clip(x + jax.random.uniform(key, (), minval=-0.05, maxval=0.05), 0.0, 1.0)


def test_clopper_pearson_upper_vectors_and_the_floor():
    # CP upper with 0 changes is 1 - alpha ** (1 / n)
    for n, alpha, floor in ((1000, 0.01, 0.0045945826), (10000, 0.001, 0.000690537),
                            (500, 0.001, 0.013720514)):  # fmt: skip
        assert float(stats.clopper_pearson_upper(0, n, alpha)) == pytest.approx(floor, abs=1e-9)
        assert -np.expm1(np.log(alpha) / n) == pytest.approx(floor, abs=1e-9)
        # no valid bound lies below it: a failure probability just under the floor shows no
        # failure in n draws with probability above alpha
        assert (1 - floor * (1 - 1e-6)) ** n > alpha
    assert float(stats.clopper_pearson_upper(3, 1000, 0.01)) == pytest.approx(0.01000979, abs=1e-8)
    assert float(stats.clopper_pearson_upper(50, 1000, 0.001)) == pytest.approx(
        0.07495322, abs=1e-8
    )
    assert float(stats.clopper_pearson_upper(1, 100, 0.01)) == pytest.approx(0.064543, abs=1e-6)


def test_bounds_the_change_probability_of_a_known_transform():
    cert = lrsjax.probabilistic_certificate(
        jax.random.key(0), classifier, None, X, uniform_brightness, 2000, 0.01, batch_size=1000
    )
    assert cert.prediction == 1 and cert.n == 2000 and cert.method == "clopper_pearson_upper"
    # changes ~ Bin(2000, 0.4): within 5 standard deviations, and the bound lies above 0.4
    assert abs(cert.changes - 800) < 5 * np.sqrt(2000 * 0.4 * 0.6)
    assert cert.q_upper == pytest.approx(
        scipy_stats.beta.ppf(0.99, cert.changes + 1, 2000 - cert.changes), rel=1e-10
    )
    assert 0.4 < cert.q_upper < 0.45
    # draw i uses fold_in(key, i): the batch size does not change the count
    again = lrsjax.probabilistic_certificate(
        jax.random.key(0), classifier, None, X, uniform_brightness, 2000, 0.01, batch_size=999
    )
    assert again == cert
    other = lrsjax.probabilistic_certificate(
        jax.random.key(1), classifier, None, X, uniform_brightness, 2000, 0.01, batch_size=1000
    )
    assert other.changes != cert.changes


def test_no_change_gives_exactly_the_floor():
    cert = lrsjax.probabilistic_certificate(
        jax.random.key(2), classifier, None, X, clipped_jitter, 300, 0.001, batch_size=128
    )
    assert cert.changes == 0
    assert cert.q_upper == pytest.approx(1 - 0.001 ** (1 / 300), rel=1e-12)
    assert cert.floor == pytest.approx(cert.q_upper, rel=1e-12)


def test_refuses_bad_arguments_and_non_finite_logits():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`alpha` must lie in"):
        lrsjax.probabilistic_certificate(key, classifier, None, X, uniform_brightness, 10, 1.0)
    with pytest.raises(ValueError, match="`transform` must be callable"):
        lrsjax.probabilistic_certificate(key, classifier, None, X, None, 10, 0.1)
    with pytest.raises(ValueError, match=r"shape \[num_classes\]"):
        lrsjax.probabilistic_certificate(
            key, lambda p, z: classifier(p, z)[None], None, X, uniform_brightness, 10, 0.1
        )
    with pytest.raises(ValueError, match=r"apply_fn\(params, transform\(key, x\)\)` failed"):
        lrsjax.probabilistic_certificate(
            key, classifier, None, X, lambda k, z: jnp.zeros(3) + z, 10, 0.1
        )

    def nan_far_out(key, x):  # NaN in some draws only
        b = jax.random.uniform(key, (), minval=-1.0, maxval=1.0)
        return jnp.where(b > 0.9, jnp.nan, x + b)

    with pytest.raises(ValueError, match="NaN or infinite logit on"):
        lrsjax.probabilistic_certificate(key, classifier, None, X, nan_far_out, 200, 0.1)


@pytest.mark.slow
def test_coverage_over_repetitions():
    """The bound holds with frequency >= 1 - alpha over independent runs (q = 0.4, alpha = 0.1)."""
    misses = 0
    runs = 300
    for i in range(runs):
        cert = lrsjax.probabilistic_certificate(
            jax.random.key(100 + i), classifier, None, X, uniform_brightness, 200, 0.1,
            batch_size=200,
        )  # fmt: skip
        misses += cert.q_upper < 0.4
    # misses ~ Bin(300, <= 0.1): above 0.1 + 4 standard deviations would refute the bound
    assert misses <= 0.1 * runs + 4 * np.sqrt(runs * 0.09)
