"""Sampling kernels: draw noisy inputs for every smoothing group, apply the model, accumulate.

One compiled call handles every group of one input: per batch of samples, the groups are looped
over (the group index is traced) and each group adds only its own outputs into one accumulator
(stitching), so no `[K, *outputs, classes]` tensor is ever built. Batches are looped over with a
`fori_loop`, so memory does not grow with the number of samples; the last batch is masked so that
exactly `num_samples` samples are counted. The noise of batch `b` is derived from
`fold_in(key, b)` only, so batches can be spread over several devices (`shard_map`) or counted in
ranges (progress bars) without changing a single count: the integer accumulators add up exactly.

The kernel knows no kind of noise and no kind of statistic: it calls the noise plug-in
(`lrsjax.noise.Prepared`: a shared draw per batch applied per group, or a per-sample sampler) and
the estimator plug-in (`lrsjax.estimators.Estimator.accumulate`).

Model contract: `apply_fn(params, x) -> logits` for ONE example; images `x [C, H, W]` ->
`[H, W, num_classes]`; graphs `x` a `SparseBinary` (or a dense `[N, F]` array) -> `[N,
num_classes]`. Kernels vmap it over the batch. `apply_fn` is a static argument of the compiled
kernel: pass the same function object each time to reuse the compilation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrsjax import _checks, _keys, _memory, estimators
from lrsjax._sparse import SparseBinary
from lrsjax.noise import Noise, Prepared, check_noise

# make_counter's modes: named estimators whose accumulators need no host bound
MODES = ("votes", "consistency", "histogram")
INPUT_FORMATS = ("sparse", "dense")
_AXIS = "samples"


def _mode_estimator(mode: str, num_bins: int) -> estimators.Estimator:
    if mode == "histogram":
        return estimators.dkw_moments(num_bins)
    return {"votes": estimators.majority_vote, "consistency": estimators.consistency}[mode]()


class Counts(NamedTuple):
    """What a kernel returns (device arrays).

    A model output that is NaN or infinite is never counted as a vote: `nonfinite_samples` and
    `nonfinite_outputs` record it, and `raise_on_nonfinite` turns it into a ValueError (the counter
    of `make_counter` and `lrsjax.certify` call it), because argmax of NaN logits is class 0 and
    would otherwise look like a perfectly consistent prediction.

    Fields:
      counts: int32, the estimator's accumulator. mode "votes": `[*output_shape, num_classes]`,
        how often each class was the argmax; "consistency": `[*output_shape]`, how often the argmax
        equalled `target`; "histogram": `[*output_shape, num_bins]`, how many softmax scores of
        class `target` fell in each bin `[i / num_bins, (i + 1) / num_bins)` (the last bin also
        holds 1.0). Each output only counts the samples of its own smoothing group.
      overflow: bool []: True if some sample had to be discarded (a sparse Bernoulli sample drew
        more additions than its capacity); the counts are then invalid and the caller must raise.
      nonfinite_samples: int32 []: model calls (one noisy sample of one group) whose logits held a
        NaN or an infinity anywhere.
      nonfinite_outputs: bool [*output_shape]: outputs whose logits were NaN or infinite in at least
        one sample.
    """

    counts: jax.Array
    overflow: jax.Array
    nonfinite_samples: jax.Array
    nonfinite_outputs: jax.Array


class _Static(NamedTuple):
    apply_fn: Callable
    sample: Callable  # noise plug-in: per-sample sampler
    draw: Callable | None  # noise plug-in: shared draw per batch (or None)
    apply_noise: Callable | None  # noise plug-in: applies a shared draw for one group
    noise_config: Hashable
    accumulate: Callable  # estimator plug-in
    estimator_config: Hashable
    counts_shape: tuple
    batch_size: int
    per_example: bool
    num_groups: int
    devices: tuple


def batched_model(static: _Static) -> Callable:
    """`model(params, batch) -> outputs [B, ...]`: `apply_fn` vmapped over the batch, or looped
    one example at a time with `per_example` (scatter-heavy models on CPU)."""
    if static.per_example:

        def model(params, batch):
            return lax.map(lambda example: static.apply_fn(params, example), batch)

        return model
    return jax.vmap(static.apply_fn, in_axes=(None, 0))


def shared_draw(static: _Static, key, b, x):
    """The noise draw that batch `b` shares among all groups (`Prepared.draw`), or None."""
    if static.draw is None:
        return None
    return static.draw(static.noise_config, jax.random.fold_in(key, b), x, static.batch_size)


def noisy_batch(static: _Static, key, b, k, x, shared, per_group, common):
    """The noisy inputs `[batch_size, ...]` of batch `b`, group `k`, and the overflow flags [B].

    From the shared draw when the noise has one (`shared_draw`); otherwise one key per (batch,
    group), `fold_in(key, b * K + k)`, split into one key per sample. Every kernel that draws noise
    for a stage draws it here, so the same key gives the same noisy inputs in all of them.
    """
    params_k = jax.tree.map(lambda leaf: leaf[k], per_group)
    if shared is not None:
        noisy = static.apply_noise(static.noise_config, shared, x, params_k, common)
        return noisy, jnp.zeros((static.batch_size,), bool)
    keys = jax.random.split(jax.random.fold_in(key, b * static.num_groups + k), static.batch_size)
    return jax.vmap(static.sample, in_axes=(None, 0, None, None, None))(
        static.noise_config, keys, x, params_k, common
    )


def _batch_step(static: _Static, key, b, params, x, valid, arrays, target, active, carry):
    """Batch `b` of `batch_size` samples for every active group."""
    group, per_group, common = arrays
    model = batched_model(static)
    shared = shared_draw(static, key, b, x)

    def group_step(k, carry):
        counts, overflow, bad_samples, bad_outputs = carry
        group_mask = (group == k) & active[k]
        noisy, over = noisy_batch(static, key, b, k, x, shared, per_group, common)
        overflow = overflow | jnp.any(over & valid)
        logits = model(params, noisy)
        counts = static.accumulate(
            static.estimator_config, counts, logits, valid, group_mask, target
        )
        # Non-finite logits anywhere in a counted sample: the reduction rides on the model's output
        # already in memory, so it costs a fraction of the counting itself.
        finite = jnp.isfinite(logits).all(axis=-1)  # [B, *out]
        broken = ~finite & valid.reshape((-1,) + (1,) * (finite.ndim - 1))
        bad_samples = bad_samples + jnp.sum(broken.reshape(broken.shape[0], -1).any(axis=1))
        bad_outputs = bad_outputs | broken.any(axis=0)
        return counts, overflow, bad_samples.astype(jnp.int32), bad_outputs

    if static.num_groups == 1:
        return group_step(0, carry)

    def maybe_group(k, carry):
        return lax.cond(active[k], lambda c: group_step(k, c), lambda c: c, carry)

    return lax.fori_loop(0, static.num_groups, maybe_group, carry)


def _device_counts(
    static, key, params, x, num_samples, batch_range, arrays, target, active, device, devices
):
    """Counts of the batches `b` in `[batch_range[0], batch_range[1])` with `b % devices == device`.

    Batch `b` always holds samples `b * batch_size ...` of the stage and draws its noise from
    `fold_in(key, b)`, so splitting the batches into ranges (progress updates) or over devices
    changes no count: the integer counts of the parts add up exactly.
    """
    batch_size = static.batch_size
    start, stop = batch_range[0], batch_range[1]
    first = start + (device - start) % devices  # the first batch of this device in the range
    trips = jnp.maximum(stop - first + devices - 1, 0) // devices
    init = (
        jnp.zeros(static.counts_shape, jnp.int32),
        jnp.zeros((), bool),
        jnp.zeros((), jnp.int32),
        jnp.zeros(arrays[0].shape, bool),
    )
    slots = jnp.arange(batch_size, dtype=jnp.int32)

    def body(i, carry):
        b = first + devices * i
        valid = slots < num_samples - b * batch_size
        return _batch_step(static, key, b, params, x, valid, arrays, target, active, carry)

    return Counts(*lax.fori_loop(0, trips, body, init))


def _count_impl(static: _Static, key, params, x, num_samples, batch_range, arrays, target, active):
    num_devices = len(static.devices)
    args = (key, params, x, num_samples, batch_range, arrays, target, active)
    if num_devices == 1:
        return _device_counts(static, *args, 0, 1)
    mesh = jax.sharding.Mesh(np.asarray(static.devices), (_AXIS,))
    spec = jax.sharding.PartitionSpec()

    def per_device(*args):
        out = _device_counts(static, *args, lax.axis_index(_AXIS), num_devices)
        overflow = lax.psum(out.overflow.astype(jnp.int32), _AXIS) > 0
        bad_outputs = lax.psum(out.nonfinite_outputs.astype(jnp.int32), _AXIS) > 0
        return Counts(
            lax.psum(out.counts, _AXIS),
            overflow,
            lax.psum(out.nonfinite_samples, _AXIS),
            bad_outputs,
        )

    sharded = jax.shard_map(
        per_device, mesh=mesh, in_specs=(spec,) * len(args), out_specs=spec, check_vma=False
    )
    return sharded(*args)


_count_jit = jax.jit(_count_impl, static_argnums=(0,))


class Kernel(NamedTuple):
    """A compiled-on-first-call counter for one noise bound to one input and one estimator.

    `count(key, params, num_samples, target=None, active=None, batches=None) -> Counts` runs the
    stage; `prepared` and `estimator` are what it runs (see `kernel`).
    """

    count: Callable
    prepared: Prepared
    estimator: estimators.Estimator
    static: Any


def kernel(
    apply_fn: Callable,
    noise: Noise,
    prepared: Prepared,
    estimator: estimators.Estimator,
    *,
    batch_size: int,
    num_classes: int,
    devices=None,
    per_example: bool = False,
) -> Kernel:
    """The sampling kernel of a noise bound to one clean input (`noise.prepare`) and an estimator.

    No validation of `x`, the model or the memory: `make_counter` and `lrsjax.certify` do that.
    """
    devices = tuple(jax.local_devices()) if devices is None else tuple(devices)
    static = _Static(
        apply_fn=apply_fn,
        sample=prepared.sample,
        draw=prepared.draw,
        apply_noise=prepared.apply,
        noise_config=prepared.config,
        accumulate=estimator.accumulate,
        estimator_config=estimator.device_config,
        counts_shape=tuple(
            estimator.shape(estimator.device_config, noise.output_shape, num_classes)
        ),
        batch_size=batch_size,
        per_example=bool(per_example),
        num_groups=noise.num_groups,
        devices=devices,
    )
    arrays = (jnp.asarray(noise.group, jnp.int32), prepared.per_group, prepared.common)
    output_shape = noise.output_shape
    num_groups = noise.num_groups

    def count(key, params, num_samples, target=None, active=None, batches=None) -> Counts:
        num_batches = -(-num_samples // batch_size)
        if batches is None:
            batches = (0, num_batches)
        if target is None:
            target = np.zeros(output_shape, np.int32)
        if active is None:
            active = np.ones(num_groups, bool)
        return _count_jit(
            static,
            key,
            params,
            prepared.x,
            jnp.asarray(num_samples, jnp.int32),
            jnp.asarray(batches, jnp.int32),
            arrays,
            jnp.asarray(target, jnp.int32),
            jnp.asarray(active),
        )

    return Kernel(count, prepared, estimator, static)


def make_counter(
    apply_fn: Callable,
    smoothing: Noise,
    *,
    mode: str,
    batch_size: int,
    num_classes: int,
    num_bins: int = 1024,
    input_format: str = "sparse",
    num_cols: int | None = None,
    addition_capacity: int | None = None,
    devices=None,
    per_example: bool = False,
) -> Callable:
    """A compiled sampling-and-counting kernel for every group of a noise (`lrsjax.noise`).

    The returned counter validates every call on the host before the jitted kernel runs: the key,
    `x` (through the noise's `prepare`: shape, dtype, finiteness, binary entries, sparse indices in
    range), the model's logits shape against `num_classes` (with `jax.eval_shape`, once per input
    and parameter structure), and that a batch of `batch_size` samples fits in memory
    (`check_batch_memory`). After the kernel it raises on non-finite logits.

    Args:
      apply_fn: `apply_fn(params, x) -> logits` for one example (module docstring).
      smoothing: an `lrsjax.noise.Noise`.
      mode: "votes" (per-output class counts, for selection), "consistency" (per-output count of
        samples whose argmax equals `target`) or "histogram" (per-output histogram of the softmax
        score of class `target`, `num_bins` equal bins on [0, 1]).
      batch_size: samples per model call (per device).
      num_classes: number of logits per output.
      num_bins: histogram bins, a power of two (so that binning is exact in float32).
      input_format: Bernoulli only: "sparse" (x must be a `SparseBinary`, exact Poisson-thinning
        sampler) or "dense" (x a dense `[N, F]` 0/1 array, one uniform draw per bit).
      num_cols: Bernoulli only: F, the number of attributes per node.
      addition_capacity: sparse Bernoulli only: slots for added bits per sample; default from a
        Poisson tail bound (overflow probability < 1e-12 per sample). Overflow is detected.
      devices: devices to spread the batches over (default `jax.local_devices()`); the counts do not
        depend on it.
      per_example: apply the model to one example at a time (`lax.map`) instead of vmapping it over
        the batch. Same counts; faster on CPU for models built on scatters (sparse GNN layers),
        whose vmapped form is a slow batched scatter. Noise is still drawn per batch.
    Returns:
      `count(key, params, x, num_samples, target=None, active=None, batches=None) -> Counts`.
      `target` is int `[*output_shape]` (modes "consistency" and "histogram"); `active` is bool
      `[K]`, groups to sample (inactive groups are skipped and their outputs stay 0); `batches` is
      an optional range `(start, stop)` of the `ceil(num_samples / batch_size)` batches to count
      (default all): the counts of consecutive ranges add up to the counts of all batches, exactly.
      Raises ValueError when the model returns a NaN or infinite logit (`raise_on_nonfinite`).
      The same compiled code is reused for any key, params, input, `num_samples`, `target`,
      `active` and `batches` of the same shapes.
    """
    noise = check_noise(smoothing)
    _checks.one_of("mode", mode, MODES)
    batch_size = _checks.positive_int("batch_size", batch_size)
    num_classes = _checks.positive_int("num_classes", num_classes)
    num_bins = check_histogram_bins(num_bins)
    estimator = _mode_estimator(mode, num_bins)
    devices = tuple(jax.local_devices()) if devices is None else tuple(devices)
    if not devices:
        _checks.fail(
            "devices", devices, "must not be empty", "Pass None to use jax.local_devices()."
        )
    _checks.one_of("input_format", input_format, INPUT_FORMATS)
    if _binary(noise) and num_cols is None:
        _checks.fail("num_cols", num_cols, "is required for Bernoulli smoothing", "Pass F.")
    options = {}
    if num_cols is not None:
        options["num_features"] = _checks.positive_int("num_cols", num_cols)
    if addition_capacity is not None:
        options["addition_capacity"] = _checks.positive_int("addition_capacity", addition_capacity)
    output_shape = noise.output_shape
    num_groups = noise.num_groups
    checked_models = set()  # (x structure, params structure) whose logits shape was checked
    # The last input that passed `prepare`, by the identity of its leaves: jax arrays are
    # immutable, so the same objects need no second check (certification loops pass one `x` many
    # times; the check reads every entry on the host). NumPy inputs are checked on every call.
    last: list = []

    def prepared_for(x) -> Prepared:
        leaves = jax.tree.leaves(x)
        immutable = bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)
        if immutable and last and len(last[0]) == len(leaves):
            if all(a is b for a, b in zip(last[0], leaves)):
                return last[1]
        if isinstance(x, SparseBinary) != (input_format == "sparse") and _binary(noise):
            _checks.fail(
                "x",
                type(x).__name__,
                f"does not match input_format={input_format!r} (a SparseBinary is 'sparse', a "
                "dense 0/1 array 'dense')",
                "Pass the matching input_format.",
            )
        prepared = noise.prepare(noise, x, **options)
        last[:] = [tuple(leaves), prepared] if immutable else []
        return prepared

    def count(key, params, x, num_samples, target=None, active=None, batches=None) -> Counts:
        key = _keys.check_key("key", key)
        prepared = prepared_for(x)
        check_batch_memory(
            batch_size,
            bytes_per_element=prepared.bytes_per_element,
            estimators=(estimator,),
            num_classes=num_classes,
            num_outputs=int(np.prod(output_shape)),
            input_size=prepared.input_size,
            devices=devices,
        )
        signature = (_structure(prepared.x), _structure(params))
        if signature not in checked_models:
            check_logits(apply_fn, params, prepared.example, output_shape, num_classes)
            checked_models.add(signature)
        num_samples = _checks.positive_int("num_samples", num_samples)
        if num_samples >= 2**31 - batch_size:
            _checks.fail("num_samples", num_samples, "must be < 2**31 - batch_size", "")
        if target is None:
            if mode != "votes":
                _checks.fail("target", target, f"is required for mode={mode!r}", "")
            target = np.zeros(output_shape, np.int32)
        target = _checks.as_int_array("target", target)
        if target.shape != output_shape:
            _checks.fail("target", target, f"must have shape {output_shape}", "")
        if active is None:
            active = np.ones(num_groups, bool)
        active = _checks.as_bool_array("active", active, ndim=1)
        if active.shape[0] != num_groups:
            _checks.fail("active", active, f"must have one entry per group ({num_groups})", "")
        num_batches = -(-num_samples // batch_size)
        if batches is not None:
            batches = tuple(int(b) for b in batches)
            if len(batches) != 2 or not 0 <= batches[0] <= batches[1] <= num_batches:
                _checks.fail(
                    "batches",
                    batches,
                    f"must be a range (start, stop) with 0 <= start <= stop <= {num_batches} "
                    f"(the batches of {num_samples} samples)",
                    "Pass None for all batches.",
                )
        run = kernel(
            apply_fn, noise, prepared, estimator, batch_size=batch_size,
            num_classes=num_classes, devices=devices, per_example=per_example,
        )  # fmt: skip
        out = run.count(key, params, num_samples, target=target, active=active, batches=batches)
        raise_on_nonfinite(out)
        return out

    return count


def _binary(noise: Noise) -> bool:
    return "theta_plus" in noise.parameters


@jax.jit
def add_counts(a: Counts, b: Counts) -> Counts:
    """The counts of two disjoint batch ranges (or devices) of one stage, added on the device."""
    return Counts(
        a.counts + b.counts,
        a.overflow | b.overflow,
        a.nonfinite_samples + b.nonfinite_samples,
        a.nonfinite_outputs | b.nonfinite_outputs,
    )


def check_histogram_bins(num_bins) -> int:
    """`num_bins` as an int: a power of two <= 2**20 (so that binning is exact in float32)."""
    return estimators.check_num_bins(num_bins)


def _structure(tree) -> tuple:
    """Hashable (tree structure, leaf shapes and dtypes) of a pytree."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(
        (getattr(leaf, "shape", None), str(getattr(leaf, "dtype", type(leaf).__name__)))
        for leaf in leaves
    )


def bytes_per_sample(
    bytes_per_element: int,
    estimator: estimators.Estimator,
    num_classes: int,
    num_outputs: int,
    input_size: int,
) -> int:
    """Estimated device bytes that one sample of a batch holds at once (a lower estimate).

    Counts the noise and the noisy input (`bytes_per_element` from the noise plug-in for each of
    `input_size` elements), the logits `[num_outputs, num_classes]` (float32) and the estimator's
    per-output temporaries. The model's own activations are NOT counted (unknown before
    compiling): they come on top, which is why `check_batch_memory` keeps a safety margin.
    """
    logits = 4 * num_outputs * num_classes
    counting = num_outputs * estimator.bytes_per_output(estimator.device_config, num_classes)
    return bytes_per_element * input_size + logits + counting


def check_batch_memory(
    batch_size: int,
    *,
    bytes_per_element: int,
    estimators: tuple,
    num_classes: int,
    num_outputs: int,
    input_size: int,
    devices,
) -> None:
    """Refuses, before anything is compiled, a batch that cannot fit in memory (ValueError).

    Estimate: `batch_size * bytes_per_sample(...)` plus the accumulator, per device; CPU devices
    share the host memory, so the estimate is multiplied by their number. It must stay below
    `lrsjax._memory.SAFETY_FRACTION` of the available memory (`/proc/meminfo` MemAvailable and the
    address-space limit on the host; `memory_stats()["bytes_limit"]` on accelerators). The error
    names `batch_size`, the estimate, and the largest batch size that passes. The batch is never
    reduced silently: the counts of a given key depend on the batch size.
    """
    per_sample = max(
        bytes_per_sample(bytes_per_element, e, num_classes, num_outputs, input_size)
        for e in estimators
    )
    fixed = max(
        4 * int(np.prod(e.shape(e.device_config, (num_outputs,), num_classes))) for e in estimators
    )
    available, sharers = _memory.device_available(devices)
    need = sharers * (batch_size * per_sample + fixed)
    if available.num_bytes is None:
        return
    budget = _memory.SAFETY_FRACTION * available.num_bytes / sharers - fixed
    largest = int(budget // per_sample) if budget > 0 else 0
    if largest >= 1:
        fix = (
            f"Set batch_size <= {largest} (smaller for a large model: its activations are not "
            "counted). The batch is not reduced automatically, because the counts of a key depend "
            "on the batch size."
        )
    else:
        fix = "Not even one sample fits: free memory, or use a smaller input or fewer outputs."
    shared = f", on each of {sharers} devices sharing host memory" if sharers > 1 else ""
    what = (
        f"noise, noisy inputs and logits of {batch_size} samples of {per_sample} bytes per model "
        f"call{shared}; the model's activations come on top"
    )
    _memory.check_fits("batch_size", batch_size, need, available, what, fix)


def default_addition_capacity(smoothing: Noise, num_cols: int) -> int:
    """Addition slots per sparse Bernoulli sample: overflow probability < 1e-12 per sample.

    The noisy `SparseBinary` the model receives has capacity `x.capacity` + this number.
    """
    from lrsjax import noise as noises

    noise = check_noise(smoothing)
    if not _binary(noise):
        _checks.fail("smoothing", noise.kind, "must be a Bernoulli noise", "")
    return noises.default_addition_capacity(noise, num_cols)


def traced_output(apply_fn, params, example):
    """`jax.eval_shape(apply_fn, params, example)` (traces, never compiles): the shape and dtype
    of one example's output; a model that fails on the correctly shaped example raises a
    ValueError saying that apply_fn takes ONE example."""
    try:
        return jax.eval_shape(apply_fn, params, example)
    except Exception as error:  # the user's model failed on a correctly shaped input
        raise ValueError(
            f"`apply_fn(params, x)` failed on one example input {example}: {error}. "
            "apply_fn must take ONE example (it is vmapped over the batch)."
        ) from error


def check_logits(apply_fn, params, example, output_shape: tuple, num_classes: int | None) -> int:
    """Checks the model's logits `[*output_shape, C]`, `C >= 2`, with `jax.eval_shape` (traces,
    never compiles); with `num_classes` given, also `C == num_classes`. Returns C."""
    out = traced_output(apply_fn, params, example)
    shape = getattr(out, "shape", None)
    output_shape = tuple(output_shape)
    if shape is None or len(shape) != len(output_shape) + 1 or tuple(shape[:-1]) != output_shape:
        _checks.fail(
            "apply_fn",
            f"logits of shape {shape}",
            f"must return logits [*{output_shape}, num_classes] for one example",
            "Return one row of class scores per output (pixel or node).",
        )
    if shape[-1] < 2:
        _checks.fail(
            "apply_fn",
            f"logits of shape {shape}",
            "must return >= 2 classes per output (with one class the vote is always class 0, so "
            "every output would be certified whatever the model does)",
            "Return one logit per class; for a binary model return two logits [-s, s], not one.",
        )
    if num_classes is not None and shape[-1] != num_classes:
        _checks.fail(
            "num_classes",
            num_classes,
            f"must equal the number of logits the model returns per output ({shape[-1]})",
            f"Pass num_classes={shape[-1]}.",
        )
    return int(shape[-1])


class CompileClock:
    """Seconds JAX spent tracing, lowering and compiling while a `compile_clock()` block ran."""

    def __init__(self):
        self.seconds = 0.0

    def _listen(self, event: str, duration: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            self.seconds += float(duration)


@contextlib.contextmanager
def compile_clock():
    """Measures compilation time (all threads) from JAX's own compile events."""
    clock = CompileClock()
    jax.monitoring.register_event_duration_secs_listener(clock._listen)
    try:
        yield clock
    finally:
        jax.monitoring.unregister_event_duration_listener(clock._listen)


def raise_on_nonfinite(counts: Counts) -> None:
    """Raises a ValueError if the model returned a NaN or infinite logit in any counted sample.

    Waits for the kernel. Argmax of NaN logits is class 0, so such samples would otherwise count as
    consistent votes and certify a broken model; nothing computed from these counts is valid.
    """
    bad_samples = int(counts.nonfinite_samples)
    if bad_samples:
        bad_outputs = int(np.count_nonzero(np.asarray(counts.nonfinite_outputs)))
        raise ValueError(
            f"The model returned NaN or infinite logits: {bad_samples} noisy samples, at "
            f"{bad_outputs} of {np.asarray(counts.nonfinite_outputs).size} outputs. Nothing was "
            "certified. Check the model on noisy inputs (e.g. a log of a non-positive value, an "
            "overflow in float16, or an input normalization that divides by zero)."
        )
