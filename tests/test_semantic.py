"""Semantic transformations that compose exactly, and Rayleigh smoothing of multiplicative
parameters: composition laws in float64, certificate test vectors, the samplers' distributions,
worst-case classifiers at the certified ends, and end-to-end certificates through lrsjax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import lrsjax
from lrsjax import noise
from lrsjax.estimators import ProbabilityEstimate

H, W = 4, 4


def _f64(fn, *args):
    """`fn(*args)` evaluated in float64 (jax x64, one compilation per shape), as numpy."""
    with jax.enable_x64(True):
        return np.asarray(_jitted(fn)(*[np.asarray(a, np.float64) for a in args]), np.float64)


_JITTED = {}


def _jitted(fn):
    return _JITTED.setdefault(fn, jax.jit(fn))


def _draw(fn, key, count):
    """`count` float32 draws `fn(key, (count,))`, compiled once, as float64 numpy."""
    return np.asarray(jax.jit(fn, static_argnums=1)(key, (count,)), np.float64)


def _image(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape)


def _certificate(smoothing, p_lower):
    p = np.atleast_1d(np.asarray(p_lower, np.float64))
    estimate = ProbabilityEstimate(p, np.zeros(p.shape, np.int64), "test")
    fn = smoothing.certificates["probability"]
    return fn(smoothing, np.zeros(p.shape, np.int64), estimate, np.ones(p.shape, bool))


# ----------------------------------------------------------------------------------------------
# composition laws (float64)
# ----------------------------------------------------------------------------------------------


def _nyquist_free(x):
    """`x` with the Nyquist row/column of even sizes removed (the projection P)."""
    spectrum = np.fft.fft2(x)
    for axis in (-2, -1):
        size = x.shape[axis]
        if size % 2 == 0:
            index = [slice(None)] * x.ndim
            index[axis] = size // 2
            spectrum[tuple(index)] = 0
    return np.real(np.fft.ifft2(spectrum))


@pytest.mark.parametrize("shape", [(2, 32, 32), (1, 31, 33), (1, 6, 9)])
def test_torus_translation_is_a_group_action(shape):
    x = _image(shape)
    a, b = np.array([0.3, -1.7]), np.array([2.45, 0.6])
    twice = _f64(noise.torus_translation, _f64(noise.torus_translation, x, a), b)
    once = _f64(noise.torus_translation, x, a + b)
    assert np.max(np.abs(twice - once)) < 1e-12
    assert np.max(np.abs(_f64(noise.torus_translation, x, np.zeros(2)) - _nyquist_free(x))) < 1e-12
    # an integer shift is a cyclic shift of the Nyquist-free image (of x itself for odd sizes)
    rolled = np.roll(_nyquist_free(x), (2, -3), axis=(-2, -1))
    assert np.max(np.abs(_f64(noise.torus_translation, x, np.array([2.0, -3.0])) - rolled)) < 1e-12
    if shape[1] % 2 and shape[2] % 2:
        assert np.max(np.abs(rolled - np.roll(x, (2, -3), axis=(-2, -1)))) < 1e-12


def test_real_part_shift_keeping_nyquist_does_not_compose_but_is_covered():
    """Why the Nyquist bins go: on an even size, taking the real part of a phase-shifted spectrum
    that keeps them breaks the group law; the smoothed classifier projects them away first, so it
    sees the same input after either convention."""
    x = _image((1, 32, 32))

    def naive(z, t):
        f_h, f_w = np.fft.fftfreq(z.shape[-2])[:, None], np.fft.fftfreq(z.shape[-1])[None, :]
        phase = np.exp(-2j * np.pi * (f_h * t[0] + f_w * t[1]))
        return np.real(np.fft.ifft2(np.fft.fft2(z) * phase))

    a, b = np.array([0.3, -1.7]), np.array([2.45, 0.6])
    assert np.max(np.abs(naive(naive(x, a), b) - naive(x, a + b))) > 0.05
    ours = _f64(noise.torus_translation, x, a)
    assert np.max(np.abs(_nyquist_free(naive(x, a)) - ours)) < 1e-12


def test_spectral_blur_brightness_contrast_gamma_compose():
    x = _image((3, 8, 10))
    blur = _f64(noise.spectral_blur, _f64(noise.spectral_blur, x, 0.7), 1.9)
    assert np.max(np.abs(blur - _f64(noise.spectral_blur, x, 2.6))) < 1e-12
    assert np.max(np.abs(_f64(noise.spectral_blur, x, 0.0) - x)) < 1e-12
    # blur keeps the mean and smooths: the variance of the image drops
    assert abs(blur.mean() - x.mean()) < 1e-12 and blur.var() < x.var()
    twice = noise.brightness(noise.brightness(x, 0.5), -0.4)
    assert np.max(np.abs(twice - noise.brightness(x, 0.1))) < 1e-12
    twice = noise.contrast(noise.contrast(x, 1.7), 0.3)
    assert np.max(np.abs(twice - noise.contrast(x, 1.7 * 0.3))) < 1e-12
    twice = _f64(noise.gamma_correction, _f64(noise.gamma_correction, x, 0.7), 1.9)
    assert np.max(np.abs(twice - _f64(noise.gamma_correction, x, 0.7 * 1.9))) < 1e-12
    assert _f64(noise.gamma_correction, np.zeros(3), 0.4).tolist() == [0.0] * 3


def test_clipping_breaks_composition():
    """Why nothing here clips: once a pixel saturates, clip(clip(x + a) + b) != clip(x + a + b)."""
    x = np.array([0.8])
    twice = np.clip(np.clip(x + 0.5, 0, 1) - 0.4, 0, 1)
    assert abs(float(twice[0]) - float(np.clip(x + 0.1, 0, 1)[0])) > 0.3


def test_device_transforms_are_float32_and_vmappable():
    x = jnp.asarray(_image((1, 6, 6)), jnp.float32)
    shifts = jnp.asarray([[0.5, -1.0], [2.0, 0.25]], jnp.float32)
    with jax.numpy_dtype_promotion("strict"):
        out = jax.jit(jax.vmap(noise.torus_translation, (None, 0)))(x, shifts)
        blur = jax.jit(jax.vmap(noise.spectral_blur, (None, 0)))
        blurred = blur(x, jnp.asarray([0.5, 1.0], jnp.float32))
    assert out.dtype == jnp.float32 and out.shape == (2, 1, 6, 6)
    assert blurred.dtype == jnp.float32
    reference = _f64(noise.torus_translation, x, np.array([0.5, -1.0]))
    assert np.max(np.abs(np.asarray(out[0], np.float64) - reference)) < 1e-5


# ----------------------------------------------------------------------------------------------
# certificates: test vectors
# ----------------------------------------------------------------------------------------------


def test_gaussian_parameter_certificates():
    cert = _certificate(noise.gaussian_brightness((H, W), 0.2), [0.9, 0.5, 0.3])
    sigma = float(np.float32(0.2))  # the float32 value sampled
    assert cert.radius[0] == pytest.approx(0.256310 * sigma / 0.2, abs=1e-6)
    assert cert.abstain.tolist() == [False, True, True] and cert.radius[1:].tolist() == [0, 0]
    assert cert.interval[0] == pytest.approx([-cert.radius[0], cert.radius[0]])
    contrast = _certificate(noise.log_gaussian_contrast((H, W), 0.2), 0.9)
    assert contrast.interval[0] == pytest.approx([0.773902, 1.292154], abs=1e-6)
    shift = _certificate(noise.gaussian_translation((3, H, W), 2.0), 0.9)
    assert shift.radius[0] == pytest.approx(2.563103, abs=1e-6) and shift.interval is None
    wide = _certificate(noise.log_gaussian_contrast((H, W), 0.5), 0.9)
    assert wide.interval[0] == pytest.approx([0.526884, 1.897953], abs=1e-6)


ALL_NOISES = [
    noise.gaussian_brightness((H, W), 0.2),
    noise.log_gaussian_contrast((H, W), 0.2),
    noise.gaussian_translation((H, W), 1.5),
    noise.exponential_blur((H, W), 0.5),
    noise.rayleigh_gamma((H, W), 0.8),
    noise.rayleigh_contrast((H, W), 0.8),
]


@pytest.mark.parametrize("smoothing", ALL_NOISES, ids=lambda s: s.kind)
def test_every_noise_is_single_output_and_abstains_at_one_half(smoothing):
    assert smoothing.group.shape == (1,) and smoothing.region.shape == (H, W)
    assert noise.check_noise(smoothing).num_groups == 1
    cert = _certificate(smoothing, [0.3, 0.5, 0.9, 0.99])
    assert cert.abstain.tolist() == [True, True, False, False] and cert.method == smoothing.kind
    assert cert.radius[:2].tolist() == [0.0, 0.0] and 0 < cert.radius[2] < cert.radius[3]
    if cert.interval is not None:  # nested, and the identity inside where certified
        assert cert.interval.shape == (4, 2)
        lo, hi = cert.interval[:, 0], cert.interval[:, 1]
        identity = 1.0 if "contrast" in smoothing.kind or "gamma" in smoothing.kind else 0.0
        assert lo[3] <= lo[2] <= identity <= hi[2] < hi[3]


def test_multi_class_parameter_radii():
    # 1-D Gaussian, s = 10 degrees, (pA, pB) = (0.9, 0.05); exponential (0.8, 0.1) at rates 0.5, 1
    abstain, radius = noise.gaussian_parameter_radius(10.0, 0.9, 0.05)
    assert not abstain and radius == pytest.approx(14.632026, abs=1e-6)
    assert noise.exponential_parameter_radius(0.5, 0.8, 0.1)[1] == pytest.approx(2.407946, abs=1e-6)
    assert noise.exponential_parameter_radius(1.0, 0.8, 0.1)[1] == pytest.approx(1.203973, abs=1e-6)
    # the binary forms are the defaults; equal bounds abstain
    assert noise.gaussian_parameter_radius(2.0, 0.9)[1] == pytest.approx(2.563103, abs=1e-6)
    assert noise.exponential_parameter_radius(0.5, 0.9)[1] == pytest.approx(3.218876, abs=1e-6)
    abstain, radius = noise.gaussian_parameter_radius(1.0, [0.4, 0.6], [0.4, 0.1])
    assert abstain.tolist() == [True, False] and radius[0] == 0.0


def test_exponential_blur_certificate_and_its_worst_case():
    half = _certificate(noise.exponential_blur((H, W), 0.5), 0.9)
    one = _certificate(noise.exponential_blur((H, W), 1.0), 0.9)
    assert half.radius[0] == pytest.approx(3.218876, abs=1e-6)
    assert one.radius[0] == pytest.approx(1.609438, abs=1e-6)
    assert one.interval[0].tolist() == [0.0, one.radius[0]]
    # the worst-case classifier A = [0, t), P(s < t) = 0.9: after a further blur gamma it keeps
    # mass 1 - 0.1 e^{rate gamma}, which crosses 1/2 at the radius (Monte Carlo, our sampler)
    draws = _draw(noise.standard_exponential, jax.random.key(0), 200_000)
    t = -np.log(0.1)
    for gamma, kept in ((0.95 * one.radius[0], True), (1.05 * one.radius[0], False)):
        mass = np.mean(draws + gamma < t)
        assert abs(mass - (1 - 0.1 * np.exp(gamma))) < 5 * np.sqrt(0.25 / draws.size)
        assert (mass > 0.5) == kept


def test_rayleigh_interval_vectors():
    ends = noise.rayleigh_interval([0.9, 0.75, 0.99])
    expected = [[0.38987574, 1.82261573], [0.64423404, 1.41421356], [0.12041416, 2.57756788]]
    np.testing.assert_allclose(ends, expected, atol=1e-8)
    np.testing.assert_allclose(
        noise.rayleigh_interval(0.8, 0.15), [0.52516501, 1.58856406], atol=1e-8
    )
    # the general form agrees with the binary closed form, and abstains below 1/2
    np.testing.assert_allclose(noise.rayleigh_interval(0.9, 0.1), ends[0], rtol=1e-10)
    assert noise.rayleigh_interval(0.5).tolist() == [1.0, 1.0]
    assert noise.rayleigh_interval(1.0).tolist() == [0.0, np.inf]


@pytest.mark.parametrize("p_a, p_b", [(0.8, 0.15), (0.6, 0.05), (0.97, 0.02)])
def test_rayleigh_general_ends_solve_the_neyman_pearson_conditions(p_a, p_b):
    low, high = noise.rayleigh_interval(p_a, p_b)

    def kept(beta):
        k = 1.0 / beta**2
        if beta >= 1:
            return 1 - (1 - p_a) ** k > p_b**k
        return p_a**k > 1 - (1 - p_b) ** k

    assert kept(low * (1 + 1e-9)) and not kept(low * (1 - 1e-6))
    assert kept(high * (1 - 1e-9)) and not kept(high * (1 + 1e-6))


def _rayleigh_masses(count):
    """Masses of the worst-case classifiers at pA = 0.9 (sigma = 0.7) under the factor beta."""
    sigma = 0.7
    xi = sigma * _draw(noise.standard_rayleigh, jax.random.key(3), count)
    t_up = sigma * np.sqrt(-2 * np.log(0.1))  # P(xi <= t_up) = 0.9: worst case for beta > 1
    t_low = sigma * np.sqrt(-2 * np.log(0.9))  # P(xi >= t_low) = 0.9: worst case for beta < 1

    def mass(beta):
        return np.mean(beta * xi <= t_up) if beta > 1 else np.mean(beta * xi >= t_low)

    return mass


def test_rayleigh_worst_cases_at_the_interval_ends():
    low, high = noise.rayleigh_interval(0.9)
    mass = _rayleigh_masses(200_000)
    tolerance = 5 * np.sqrt(0.25 / 200_000)
    for beta in (0.96 * high, 1.04 * high, 1.04 * low, 0.96 * low):
        exact = 1 - 0.1 ** (1 / beta**2) if beta > 1 else 0.9 ** (1 / beta**2)
        assert abs(mass(beta) - exact) < tolerance
        inside = low < beta < high
        assert (mass(beta) > 0.5) == inside


@pytest.mark.slow
def test_rayleigh_worst_cases_at_the_interval_ends_thorough():
    mass = _rayleigh_masses(2_000_000)
    tolerance = 5 * np.sqrt(0.25 / 2_000_000)
    for beta, expected in ((1.80, 0.50880), (1.85, 0.48965), (0.40, 0.51770), (0.38, 0.48198)):
        assert abs(mass(beta) - expected) < tolerance + 1e-5
        assert (mass(beta) > 0.5) == (expected > 0.5)


def test_samplers_draw_their_distributions():
    exp = _draw(noise.standard_exponential, jax.random.key(7), 20_000)
    ray = _draw(noise.standard_rayleigh, jax.random.key(8), 20_000)
    assert exp.min() > 0 and np.all(np.isfinite(exp)) and ray.min() > 0
    assert stats.kstest(exp, stats.expon.cdf).pvalue > 1e-3
    assert stats.kstest(ray, stats.rayleigh.cdf).pvalue > 1e-3


@pytest.mark.slow
def test_per_example_sampler_draws_one_parameter_per_image():
    """Brightness offsets are N(0, sigma^2), one `b` for every pixel of an image."""
    smoothing = noise.gaussian_brightness((1, H, W), 0.3)
    prepared = smoothing.prepare(smoothing, np.full((1, H, W), 0.5))
    keys = jax.random.split(jax.random.key(9), 2000)
    draw = jax.jit(jax.vmap(prepared.sample, (None, 0, None, None, None)), static_argnums=0)
    noisy, overflow = draw(prepared.config, keys, prepared.x, prepared.per_group[0], None)
    offsets = np.asarray(noisy, np.float64) - 0.5
    assert not np.any(np.asarray(overflow))
    assert np.ptp(offsets.reshape(2000, -1), axis=1).max() < 1e-6
    assert stats.kstest(offsets[:, 0, 0, 0], stats.norm(scale=0.3).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------------------------


def mean_threshold(params, z):
    """Predicts [mean(z) > 0.5] as logits [1, 2] (one output)."""
    score = (jnp.mean(z) - 0.5) * 1e3
    return jnp.stack([-score, score])[None]


@pytest.mark.slow
def test_brightness_certificate_is_sound_on_a_threshold_model():
    """At x = 0.6 the smoothed classifier keeps class 1 exactly for shifts gamma > -0.1: the
    certified radius must stay below 0.1."""
    x = np.full((1, H, W), 0.6)
    cert = lrsjax.certify(
        jax.random.key(0), mean_threshold, None, x, noise.gaussian_brightness((H, W), 0.1),
        n0=32, n=2000, alpha=0.01, batch_size=1000,
    )  # fmt: skip
    assert cert.prediction.tolist() == [1] and not cert.abstain[0]
    assert 0.05 < cert.radius[0] < 0.1


@pytest.mark.slow
def test_log_contrast_certificate_is_sound_on_a_threshold_model():
    """At x = 0.6 the smoothed classifier keeps class 1 exactly for log-factors > ln(5/6): the
    certified radius must stay below ln(6/5)."""
    x = np.full((1, H, W), 0.6)
    cert = lrsjax.certify(
        jax.random.key(6), mean_threshold, None, x, noise.log_gaussian_contrast((H, W), 0.1),
        n0=32, n=2000, alpha=0.01, batch_size=1000,
    )  # fmt: skip
    assert cert.prediction.tolist() == [1] and not cert.abstain[0]
    assert 0.1 < cert.radius[0] < np.log(6 / 5)


def cosine_image(size):
    """`cos(2 pi w / size)` on every row: band-limited, so shifts and blurs act on it exactly."""
    return np.broadcast_to(np.cos(2 * np.pi * np.arange(size) / size), (1, size, size)).copy()


def pixel_threshold(threshold):
    def model(params, z):
        score = (z[0, 0, 0] - threshold) * 1e3
        return jnp.stack([-score, score])[None]

    return model


BLUR_MODEL = pixel_threshold(0.5)
SHIFT_MODEL = pixel_threshold(0.0)


def test_blur_certificate_is_tight_on_its_worst_case():
    """Blurring the cosine by v scales it by e^{-2 pi^2 v f^2}: pixel (0, 0) stays above 1/2 iff
    v < v* = ln 2 / (2 pi^2 f^2). This model is the worst case, so the exact robust set of the
    smoothed classifier is gamma < v* - ln 2 / rate, which the certificate must not exceed."""
    size, rate = 16, 0.5
    v_star = np.log(2) / (2 * np.pi**2 / size**2)
    cert = lrsjax.certify(
        jax.random.key(4), BLUR_MODEL, None, cosine_image(size),
        noise.exponential_blur((size, size), rate), n0=32, n=2000, alpha=0.01, batch_size=1000,
    )  # fmt: skip
    exact = v_star - np.log(2) / rate
    assert cert.prediction.tolist() == [1] and not cert.abstain[0]
    assert 0.8 * exact < cert.radius[0] < exact


@pytest.mark.slow
def test_translation_certificate_is_sound_on_a_cosine():
    """Shifting the cosine by t moves pixel (0, 0) to cos(2 pi t_w / 16), positive iff |t_w| < 4
    (mod 16): a shift of 4 px along w reaches the boundary, so the radius stays below 4."""
    size = 16
    cert = lrsjax.certify(
        jax.random.key(5), SHIFT_MODEL, None, cosine_image(size),
        noise.gaussian_translation((size, size), 2.0), n0=32, n=2000, alpha=0.01,
        batch_size=1000,
    )  # fmt: skip
    assert cert.prediction.tolist() == [1] and not cert.abstain[0]
    assert 3.0 < cert.radius[0] < 4.0


def test_rayleigh_gamma_interval_is_sound_through_the_classifier_wrapper():
    """At x = 0.6, gamma correction keeps class 1 iff xi < t = ln(1/2) / ln(0.6): this model is the
    worst case for beta > 1, so the certified upper end must stay below the exact one."""
    sigma = 0.8
    x = np.full((1, H, W), 0.6)

    def classifier(params, z):
        return mean_threshold(params, z)[0]

    out = lrsjax.certify_classifier(
        jax.random.key(1), classifier, None, x, noise.rayleigh_gamma((H, W), sigma), n0=32,
        n=2000, alpha=0.01, batch_size=1000,
    )  # fmt: skip
    t = np.log(0.5) / np.log(0.6)
    p_true = 1 - np.exp(-(t**2) / (2 * sigma**2))
    exact_high = np.sqrt(np.log(1 - p_true) / np.log(0.5))
    assert out.prediction == 1 and out.p_lower < p_true
    np.testing.assert_allclose(out.interval, noise.rayleigh_interval(out.p_lower), rtol=1e-12)
    assert 1.0 < out.interval[1] < exact_high and out.interval[1] > 0.9 * exact_high
    assert out.radius == pytest.approx(min(-np.log(out.interval[0]), np.log(out.interval[1])))


def test_factories_and_prepare_refuse_bad_arguments():
    with pytest.raises(ValueError, match="`sigma` must be a finite scalar > 0"):
        noise.gaussian_brightness((H, W), 0.0)
    with pytest.raises(ValueError, match="`rate`"):
        noise.exponential_blur((H, W), -1.0)
    with pytest.raises(ValueError, match="`image_shape`"):
        noise.rayleigh_contrast((H,), 0.5)
    smoothing = noise.rayleigh_gamma((H, W), 0.8)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\] for gamma correction"):
        smoothing.prepare(smoothing, np.full((1, H, W), 1.5))
    with pytest.raises(ValueError, match=r"must be an image \[C, H, W\]"):
        smoothing.prepare(smoothing, np.zeros((1, H + 1, W)))
    contrast = noise.rayleigh_contrast((H, W), 0.8)  # contrast needs no range
    contrast.prepare(contrast, np.full((1, H, W), 1.5))
