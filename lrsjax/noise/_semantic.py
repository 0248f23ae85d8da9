"""Smoothing over semantic transformations that compose exactly (`docs/math.md`, "Semantic,
multiplicative and probabilistic certificates").

A transformation `psi_theta` of an image with parameter `theta` composes additively when
`psi_a(psi_b(x)) = psi_{a + b}(x)` for all `a`, `b`. Then the smoothed classifier
`g(x) = argmax_c P_theta(f(psi_theta(x)) = c)` satisfies `g(psi_gamma(x)) = argmax_c
P_theta(f(psi_{theta + gamma}(x)) = c)`: a transformation of the input is a shift of the
parameter's distribution, and the additive-noise certificates hold in parameter space (Fischer,
Baader, Vechev 2020). The transformations here compose exactly in exact arithmetic:
  brightness        `x + b`                          b in R
  contrast          `c x` (factor), smoothed on `k = ln c`    k in R
  torus translation FFT phase shift by `t` pixels    t in R^2
  spectral blur     Gaussian blur of variance `s` px^2 in the frequency domain, s >= 0
None clips: `clip(clip(x + a) + b) != clip(x + a + b)` once a pixel saturates, so the model must
accept unclipped inputs (clip inside `apply_fn` if it must: the certificate covers `apply_fn`,
whatever it does). Rotation, scaling and padded translations interpolate and are not offered.

Every noise here is single-output (`group` of shape (1,), one region covering the image): certify
it with `lrsjax.certify` and a model returning logits `[1, num_classes]`, or with a classifier
wrapper. Device arithmetic is float32; the composition law holds to float32 rounding there
(to about 1e-15 in float64, see tests/test_semantic.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from lrsjax import _checks
from lrsjax.noise import _additive
from lrsjax.noise._plugin import Noise, NoiseCertificate, Prepared
from lrsjax.noise._samplers import standard_normal

# ----------------------------------------------------------------------------------------------
# Transformations: pure, for one image [..., H, W] (any leading axes), jnp or numpy inputs.
# ----------------------------------------------------------------------------------------------


def brightness(x, b):
    """`x + b`: brightness shift by `b` (scalar). Composes: `brightness(brightness(x, a), b) =
    brightness(x, a + b)`. No clipping."""
    return x + b


def contrast(x, c):
    """`c x`: contrast scaling by the factor `c > 0` (scalar). Composes multiplicatively:
    `contrast(contrast(x, a), b) = contrast(x, a b)`; on the log scale `k = ln c` additively."""
    return c * x


def gamma_correction(x, g):
    """`x ** g` for `x` in [0, 1] and `g > 0` (scalar). Composes multiplicatively:
    `(x ** a) ** b = x ** (a b)` (`0 ** g = 0`); floating-point `pow` composes to rounding."""
    return jnp.power(x, g)


def _frequencies(size: int, dtype) -> np.ndarray:
    """Signed frequencies in cycles per pixel, `[size]`, with the Nyquist bin of an even size set
    to 0 (that bin is removed by `_nyquist_mask` anyway; 0 keeps its phase real)."""
    freq = np.fft.fftfreq(size)
    if size % 2 == 0:
        freq[size // 2] = 0.0
    return freq.astype(dtype)


def _nyquist_mask(size: int, dtype) -> np.ndarray:
    """1 on every frequency bin, 0 on the Nyquist bin of an even size, `[size]`."""
    mask = np.ones(size, dtype)
    if size % 2 == 0:
        mask[size // 2] = 0
    return mask


def torus_translation(x, t):
    """Translation of an image `[..., H, W]` on the torus by `t = (t_h, t_w)` pixels (real).

    `IFFT(FFT(P x) exp(-2 pi i (f_h t_h + f_w t_w)))` with `f` the signed frequencies in cycles
    per pixel and `P` the projection that zeroes the Nyquist row (even H) and column (even W): for
    even sizes the Nyquist bin has no signed frequency, and shifting it by a non-integer `t` does
    not compose (an error of 0.2 on a random 32x32 image); with it removed, `T_a T_b = T_{a+b}`
    exactly, and integer `t` is a cyclic shift of `P x` (`np.roll`). Odd sizes lose nothing.

    Threat model: this periodic sub-pixel shift (content leaving one border enters at the other),
    not a camera shift that brings new content in; zero or reflect padding does not compose.
    """
    height, width = x.shape[-2], x.shape[-1]
    real = jnp.result_type(x)
    if not jnp.issubdtype(real, jnp.floating):
        real = jnp.float32
    f_h = _frequencies(height, np.float64)[:, None]
    f_w = _frequencies(width, np.float64)[None, :]
    mask = _nyquist_mask(height, np.float64)[:, None] * _nyquist_mask(width, np.float64)[None, :]
    t = jnp.asarray(t, real)
    phase = -2.0 * np.pi * (jnp.asarray(f_h, real) * t[0] + jnp.asarray(f_w, real) * t[1])
    spectrum = jnp.fft.fft2(jnp.asarray(x, real))
    shift = jax.lax.complex(jnp.cos(phase), jnp.sin(phase)) * jnp.asarray(mask, spectrum.dtype)
    return jnp.real(jnp.fft.ifft2(spectrum * shift))


def spectral_blur(x, s):
    """Gaussian blur of an image `[..., H, W]` on the torus with variance `s >= 0` px^2 per axis:
    `IFFT(FFT(x) exp(-2 pi^2 s |f|^2))` (`f` in cycles per pixel; the Fourier transform of a
    Gaussian kernel of variance `s`). Composes exactly: `B_a B_b = B_{a+b}`. The filter is real
    and even, so the Nyquist bins need no special care."""
    height, width = x.shape[-2], x.shape[-1]
    real = jnp.result_type(x)
    if not jnp.issubdtype(real, jnp.floating):
        real = jnp.float32
    f2 = np.fft.fftfreq(height)[:, None] ** 2 + np.fft.fftfreq(width)[None, :] ** 2
    gain = jnp.exp(jnp.asarray(-2.0 * np.pi**2 * f2, real) * jnp.asarray(s, real))
    spectrum = jnp.fft.fft2(jnp.asarray(x, real))
    return jnp.real(jnp.fft.ifft2(spectrum * gain.astype(spectrum.dtype)))


# ----------------------------------------------------------------------------------------------
# Parameter draws (device, float32) and the per-example sampler.
# ----------------------------------------------------------------------------------------------


def standard_exponential(key, shape, dtype=jnp.float32):
    """Exp(1) draws `-log1p(-v)` with `v = (c + 1/2) 2**-23`, `c` a uniform 23-bit integer: `v` is
    exact in float32 and lies in (0, 1), so every draw is finite and > 0. A discrete law on 2**23
    points: the largest draw is `24 ln 2 = 16.64` (the mass `2**-24` beyond it is never drawn), a
    floating-point gap like the Gaussian sampler's (`docs/math.md`, "Floating point")."""
    bits = jax.random.bits(key, shape, jnp.uint32) >> 9
    v = (bits.astype(jnp.float32) + 0.5) * np.float32(2.0**-23)
    return (-jnp.log1p(-v)).astype(dtype)


def _gaussian_brightness(key, x, scale):
    return brightness(x, scale[0] * standard_normal(key, ()))


def _log_gaussian_contrast(key, x, scale):
    return contrast(x, jnp.exp(scale[0] * standard_normal(key, ())))


def _gaussian_translation(key, x, scale):
    return torus_translation(x, scale[0] * standard_normal(key, (2,))).astype(x.dtype)


def _exponential_blur(key, x, scale):
    return spectral_blur(x, scale[0] * standard_exponential(key, ())).astype(x.dtype)


def sample(transform, key, x, scale_k, common):
    """One transformed example: `transform(key, x, scale_k)` draws the parameter from its own key
    and applies it (module-level functions, so the kernel's jit cache is reused). Never
    overflows."""
    del common
    return transform(key, x, scale_k), jnp.zeros((), bool)


# ----------------------------------------------------------------------------------------------
# Noise values and certificates.
# ----------------------------------------------------------------------------------------------


def single_output_noise(
    kind, image_shape, name, value, transform, certificate, check=None
) -> Noise:
    """A single-output `Noise` whose one parameter `name` ([1, 1] > 0) scales the draws that
    `transform(key, x, scale)` (module-level) turns into one transformed image; `check(arr)`, if
    given, adds a rule on the clean image (see `prepare_transform`)."""
    image_shape = _image_shape(image_shape)
    value = _positive(name, value)

    def prepare(noise, x, **_):
        return prepare_transform(noise, x, name=name, transform=transform, check=check)

    return Noise(
        kind=kind,
        group=np.zeros((1,), np.int32),
        region=np.zeros(image_shape, np.int32),
        parameters={name: np.full((1, 1), value)},
        prepare=prepare,
        certificates={"probability": certificate},
        default_estimate="probability",
    )


def prepare_transform(noise: Noise, x, *, name: str, transform, check=None) -> Prepared:
    """Binds an image `[C, H, W]` (float, finite; `check(arr)` may add a rule) to the sampler."""
    scale = _additive.check_scales(f"smoothing.{name}", noise.parameters[name])
    arr = _checks.as_float_array("x", x)
    if arr.ndim != 3 or arr.shape[1:] != tuple(noise.region.shape):
        _checks.fail(
            "x",
            arr,
            f"must be an image [C, H, W] with (H, W) = {tuple(noise.region.shape)}",
            "Build the smoothing for this image size.",
        )
    if check is not None:
        check(arr)
    image = jnp.asarray(arr, jnp.float32)
    return Prepared(
        x=image,
        config=transform,
        per_group=jnp.asarray(sampled(scale), jnp.float32),
        common=None,
        sample=sample,
        draw=None,
        apply=None,
        example=jax.ShapeDtypeStruct(image.shape, jnp.float32),
        input_size=int(image.size),
        bytes_per_element=24,  # input, output and a complex64 spectrum
        overflow_message=None,
    )


def sampled(values) -> np.ndarray:
    """The float32 values the device samples with, exact in float64 (certificates use them)."""
    return np.asarray(np.asarray(values, np.float64).astype(np.float32), np.float64)


def gaussian_parameter_radius(sigma, p_lower, p_upper_other=None) -> tuple[np.ndarray, np.ndarray]:
    """`(abstain, radius)` of Gaussian smoothing of an additive parameter with std `sigma`: the
    class is kept for every shift `||gamma / sigma||_2 < (Phi^{-1}(p_lower) -
    Phi^{-1}(p_upper_other)) / 2` (Cohen et al. 2019 in parameter space), which is
    `Phi^{-1}(p_lower)` in the binary form (`p_upper_other = 1 - p_lower`, the default). The
    radius is returned in parameter units (times `sigma`); abstain where `p_lower <=
    p_upper_other`, radius 0 there. float64, the shape of `p_lower`."""
    p_lower = np.asarray(p_lower, np.float64)
    p_other = 1.0 - p_lower if p_upper_other is None else np.asarray(p_upper_other, np.float64)
    abstain = ~(p_lower > p_other)
    safe_a, safe_b = np.where(abstain, 0.75, p_lower), np.where(abstain, 0.25, p_other)
    radius = 0.5 * float(sigma) * (special.ndtri(safe_a) - special.ndtri(safe_b))
    return abstain, np.where(abstain, 0.0, radius)


def exponential_parameter_radius(
    rate, p_lower, p_upper_other=None
) -> tuple[np.ndarray, np.ndarray]:
    """`(abstain, radius)` of Exp(`rate`) smoothing of a one-sided parameter (`theta >= 0`, e.g. a
    blur variance): every `gamma` in `[0, -ln(1 - p_lower + p_upper_other) / rate)` keeps the
    class; binary form (default `p_upper_other = 1 - p_lower`): `-ln(2 (1 - p_lower)) / rate`.

    Shifting Exp(rate) by `gamma >= 0` multiplies its density by `e^{rate gamma}` on `[gamma, inf)`
    and gives 0 on `[0, gamma)`, whose mass was `1 - e^{-rate gamma}`. By Neyman-Pearson the class
    keeps at least `e^{rate gamma} (p_lower - 1 + e^{-rate gamma})` and any other class at most
    `e^{rate gamma} p_upper_other`; the first exceeds the second below the radius (tight). Only
    `gamma >= 0` is certified: the attacker may blur, not sharpen.
    """
    p_lower = np.asarray(p_lower, np.float64)
    p_other = 1.0 - p_lower if p_upper_other is None else np.asarray(p_upper_other, np.float64)
    abstain = ~(p_lower > p_other)
    margin = np.where(abstain, 0.5, 1.0 - p_lower + p_other)
    return abstain, np.where(abstain, 0.0, -np.log(margin) / float(rate))


def _gaussian_certificate(name, interval_of, method):
    def certificate(noise, prediction, estimate, tested, **_) -> NoiseCertificate:
        sigma = sampled(noise.parameters[name])[0, 0]
        abstain, radius = gaussian_parameter_radius(sigma, estimate.p_lower)
        interval = None if interval_of is None else interval_of(radius)
        return NoiseCertificate(abstain, None, radius=radius, interval=interval, method=method)

    return certificate


def _symmetric(radius):
    return np.stack([-radius, radius], axis=-1)


def _log_factors(radius):
    return np.stack([np.exp(-radius), np.exp(radius)], axis=-1)


def _blur_certificate(noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    rate = 1.0 / sampled(noise.parameters["mean"])[0, 0]
    abstain, radius = exponential_parameter_radius(rate, estimate.p_lower)
    interval = np.stack([np.zeros_like(radius), radius], axis=-1)
    return NoiseCertificate(
        abstain, None, radius=radius, interval=interval, method="exponential_blur"
    )


def gaussian_brightness(image_shape, sigma) -> Noise:
    """Brightness smoothing: `x + b`, `b ~ N(0, sigma^2)` (one `b` for every pixel and channel).

    Certificate (`certificates["probability"]`): the prediction is kept for every `x + gamma` with
    `|gamma| < radius = sigma * Phi^{-1}(p_lower)`; `interval` = `[-radius, radius]` (open).
    `parameters = {"sigma": [[sigma]]}`. No clipping: the model sees `x + b` as is.
    """
    return single_output_noise(
        "gaussian_brightness", image_shape, "sigma", sigma, _gaussian_brightness,
        _gaussian_certificate("sigma", _symmetric, "gaussian_brightness"),
    )  # fmt: skip


def log_gaussian_contrast(image_shape, sigma) -> Noise:
    """Contrast smoothing on the log scale: `e^k x`, `k ~ N(0, sigma^2)`.

    Certificate: the prediction is kept for every `c x` with `|ln c| < radius = sigma *
    Phi^{-1}(p_lower)`; `interval` = the certified factors `(e^{-radius}, e^{radius})` (open).
    `parameters = {"sigma": [[sigma]]}` (in log units).
    """
    return single_output_noise(
        "log_gaussian_contrast", image_shape, "sigma", sigma, _log_gaussian_contrast,
        _gaussian_certificate("sigma", _log_factors, "log_gaussian_contrast"),
    )  # fmt: skip


def gaussian_translation(image_shape, sigma) -> Noise:
    """Translation smoothing on the torus: `torus_translation(x, t)`, `t ~ N(0, sigma^2 I_2)` px.

    Certificate: the prediction is kept for every `torus_translation(x, gamma)` with `||gamma||_2
    < radius = sigma * Phi^{-1}(p_lower)` px (`interval` None: the parameter is 2-D). The smoothed
    classifier zeroes the Nyquist row/column of even-sized images before shifting, so it cannot
    tell inputs that differ only there: the certificate also covers a shift that keeps them.
    `parameters = {"sigma": [[sigma]]}`.
    """
    return single_output_noise(
        "gaussian_translation", image_shape, "sigma", sigma, _gaussian_translation,
        _gaussian_certificate("sigma", None, "gaussian_translation"),
    )  # fmt: skip


def exponential_blur(image_shape, rate) -> Noise:
    """Blur smoothing: `spectral_blur(x, s)`, `s ~ Exp(rate)` (variance in px^2, mean `1/rate`).

    Certificate: the prediction is kept for every further blur `spectral_blur(x, gamma)` with
    `0 <= gamma < radius = -ln(2 (1 - p_lower)) / rate`; `interval` = `[0, radius)`.
    `parameters = {"mean": [[1 / rate]]}`: the device draws `mean * Exp(1)`, and the certificate
    uses the rate of the float32 mean actually sampled.
    """
    rate = _positive("rate", rate)
    return single_output_noise(
        "exponential_blur", image_shape, "mean", 1.0 / rate, _exponential_blur, _blur_certificate
    )


def _positive(name: str, value) -> float:
    arr = _checks.as_float_array(name, value)
    if arr.ndim != 0 or not arr > 0:
        _checks.fail(name, value, "must be a finite scalar > 0", f"Pass e.g. {name}=0.5.")
    return float(arr)


def _image_shape(image_shape) -> tuple:
    """`(H, W)` from `(H, W)` or `(C, H, W)` (the channels are ignored)."""
    shape = tuple(_checks.as_int_array("image_shape", image_shape, ndim=1).tolist())
    if len(shape) == 3:
        shape = shape[1:]
    if len(shape) != 2 or min(shape) < 1:
        _checks.fail("image_shape", image_shape, "must be (H, W) or (C, H, W) with H, W >= 1", "")
    return shape
