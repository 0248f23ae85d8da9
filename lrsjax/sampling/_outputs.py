"""A sampling kernel that returns every sample's model output (regression, center smoothing).

Order statistics and centers need the outputs themselves, not counts, so the per-sample values come
to the host: `num_samples x output_size` values (float32 outputs, or int32 labels), checked against
the available memory before anything is compiled. The noise is drawn exactly as in the counting
kernel (`_kernels.noisy_batch`: batch `b` from `fold_in(key, b)`), so one key gives the same noisy
inputs in both; the last batch is drawn in full and its surplus samples are dropped, so exactly
`num_samples` outputs come back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrsjax import _checks, _keys, _memory
from lrsjax.noise import Noise, check_noise
from lrsjax.sampling import _kernels


def argmax_labels(outputs):
    """Label maps from logits: `argmax` over the last (class) axis, int32."""
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)


def identity(outputs):
    """The model's outputs as float32."""
    return outputs.astype(jnp.float32)


TRANSFORMS = {"values": identity, "labels": argmax_labels}


class OutputSample(NamedTuple):
    """Per-sample outputs of one stage (host arrays).

    Fields:
      values: [num_samples, *shape]: float32 outputs ("values") or int32 labels ("labels").
      nonfinite_samples: int, samples whose model output held a NaN or an infinity (nothing
        computed from `values` is valid then; `make_output_sampler`'s sampler raises).
    """

    values: np.ndarray
    nonfinite_samples: int


def _outputs_impl(static, transform, num_batches, key, params, x, num_samples, arrays):
    per_group, common = arrays
    model = _kernels.batched_model(static)
    slots = jnp.arange(static.batch_size, dtype=jnp.int32)

    def one_batch(b):
        shared = _kernels.shared_draw(static, key, b, x)
        noisy, over = _kernels.noisy_batch(static, key, b, 0, x, shared, per_group, common)
        out = model(params, noisy)
        valid = slots < num_samples - b * static.batch_size
        finite = jnp.isfinite(out).reshape(static.batch_size, -1).all(axis=1)
        bad = jnp.sum(~finite & valid).astype(jnp.int32)
        return transform(out), bad, jnp.any(over & valid)

    outs, bad, over = lax.map(one_batch, jnp.arange(num_batches, dtype=jnp.int32))
    return outs.reshape((num_batches * static.batch_size,) + outs.shape[2:]), bad.sum(), over.any()


_outputs_jit = jax.jit(_outputs_impl, static_argnums=(0, 1, 2))


def make_output_sampler(
    apply_fn: Callable,
    noise: Noise,
    *,
    batch_size: int,
    output: str = "values",
    per_example: bool = False,
) -> Callable:
    """A compiled sampler returning the output of every noisy sample of a single-group noise.

    Args:
      apply_fn: `apply_fn(params, x) -> outputs` for ONE input (any shape; vmapped over the batch).
      noise: an `lrsjax.noise.Noise` with ONE smoothing group (e.g. `isotropic_gaussian`).
      batch_size: samples per model call.
      output: "values" (the outputs as float32) or "labels" (argmax over the last axis, int32: the
        label map of a segmentation model's logits).
      per_example: apply the model one example at a time (see `make_counter`).
    Returns:
      `sample(key, params, x, num_samples) -> OutputSample`, `values` of shape `[num_samples,
      *shape]`. It checks the key, `x` (the noise's `prepare`), that the outputs are finite
      (ValueError otherwise) and, before compiling, that `num_samples` outputs fit in memory
      (ValueError naming `num_samples`). Compiled once per (input shape, `num_samples` batches).
    """
    noise = check_noise(noise, "noise")
    if noise.num_groups != 1:
        _checks.fail(
            "noise",
            f"a {noise.kind} noise with {noise.num_groups} smoothing groups",
            "must have a single smoothing group (every output is smoothed by the same noise)",
            "Use an isotropic noise, e.g. lrsjax.noise.isotropic_gaussian(image_shape, sigma).",
        )
    batch_size = _checks.positive_int("batch_size", batch_size)
    transform = TRANSFORMS[_checks.one_of("output", output, tuple(TRANSFORMS))]
    if not callable(apply_fn):
        _checks.fail("apply_fn", apply_fn, "must be callable", "Pass `apply_fn(params, x)`.")

    def sample(key, params, x, num_samples) -> OutputSample:
        key = _keys.check_key("key", key)
        num_samples = _checks.positive_int("num_samples", num_samples)
        if num_samples >= 2**31 - batch_size:
            _checks.fail("num_samples", num_samples, "must be < 2**31 - batch_size", "")
        prepared = noise.prepare(noise, x)
        shape = output_shape(apply_fn, params, prepared.example, output)
        check_output_memory(num_samples, batch_size, prepared, shape)
        static = _kernels._Static(
            apply_fn=apply_fn, sample=prepared.sample, draw=prepared.draw,
            apply_noise=prepared.apply, noise_config=prepared.config, accumulate=None,
            estimator_config=None, counts_shape=(), batch_size=batch_size,
            per_example=bool(per_example), num_groups=1, devices=(),
        )  # fmt: skip
        num_batches = -(-num_samples // batch_size)
        values, bad, over = _outputs_jit(
            static, transform, num_batches, key, params, prepared.x,
            jnp.asarray(num_samples, jnp.int32), (prepared.per_group, prepared.common),
        )  # fmt: skip
        if bool(over):
            raise ValueError(prepared.overflow_message or "A noise sample overflowed.")
        bad = int(bad)
        if bad:
            raise ValueError(
                f"The model returned NaN or infinite outputs in {bad} of {num_samples} noisy "
                "samples. Nothing was certified. Check the model on noisy inputs."
            )
        return OutputSample(np.asarray(values)[:num_samples], bad)

    return sample


def output_shape(apply_fn, params, example, output: str) -> tuple:
    """The shape of one sample's output (`jax.eval_shape`: traces, never compiles)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _kernels.traced_output(apply_fn, params, example)
    shape = tuple(getattr(out, "shape", ()))
    dtype = getattr(out, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        _checks.fail(
            "apply_fn",
            f"a function returning {dtype}",
            "must return floating-point outputs (real values or logits)",
            "Return float32 outputs.",
        )
    if output == "labels":
        if len(shape) < 1 or shape[-1] < 2:
            _checks.fail(
                "apply_fn",
                f"outputs of shape {shape}",
                "must return logits [..., num_classes] with num_classes >= 2 for label outputs",
                "Return one logit per class.",
            )
        return shape[:-1]
    return shape


def check_output_memory(num_samples: int, batch_size: int, prepared, shape: tuple) -> None:
    """Refuses (ValueError naming `num_samples`) outputs that cannot fit: `num_samples x output
    size` 4-byte values plus one batch of noise, noisy inputs and outputs on the device (the
    first device's memory, or the host's for CPU devices), and the values' copy on the host
    (`lrsjax._memory.check_fits`)."""
    size = int(np.prod(shape, dtype=np.int64))
    num_batches = -(-num_samples // batch_size)
    values = 4 * num_batches * batch_size * size
    per_batch = batch_size * (prepared.bytes_per_element * prepared.input_size + 4 * size)
    device, _ = _memory.device_available(jax.devices()[:1])
    host = _memory.host_available()
    on_cpu = jax.devices()[0].platform == "cpu"
    checks = [(device, values + per_batch + (values if on_cpu else 0), 4 + 4 * on_cpu)]
    if not on_cpu:
        checks.append((host, values, 4))
    for available, need, per_sample in checks:
        largest = int(_memory.SAFETY_FRACTION * (available.num_bytes or 0) / (per_sample * size))
        _memory.check_fits(
            "num_samples",
            num_samples,
            need,
            available,
            f"{num_samples} outputs of {size} 4-byte values (on the device and their copy on the "
            "host) and one batch of noisy inputs",
            f"Pass num_samples <= {max(largest - batch_size, 0)}, or fewer output coordinates.",
        )
