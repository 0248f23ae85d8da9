"""Sampling kernels: draw noisy inputs for every smoothing group, apply the model, count (SPEC 3).

One compiled call handles every group of one input: per batch of samples, the groups are looped
over (the group index is traced) and each group adds only its own outputs into one count tensor
(stitching), so no `[K, *outputs, classes]` tensor is ever built. Batches are looped over with a
`fori_loop`, so memory does not grow with the number of samples; the last batch is masked so that
exactly `num_samples` samples are counted. The noise of batch `b` is derived from
`fold_in(key, b)` only, so batches can be spread over several devices (`shard_map`) without
changing a single count: the integer counts are summed exactly.

Gaussian groups share one standard-normal draw per batch (`x + S_k * e`, allowed by SPEC 3: each
group's samples are i.i.d. from its own distribution; the correction across outputs does not need
the groups to be independent). Bernoulli groups draw their own flips (`fold_in(batch_key, k)`).

Model contract: `apply_fn(params, x) -> logits` for ONE example; images `x [C, H, W]` ->
`[H, W, num_classes]`; graphs `x` a `SparseBinary` (or a dense `[N, F]` array with the dense
sampler) -> `[N, num_classes]`. Kernels vmap it over the batch. `apply_fn` is a static argument of
the compiled kernel: pass the same function object each time to reuse the compilation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrsjax import _checks, _keys, _memory
from lrsjax._sparse import SparseBinary
from lrsjax.noise import _samplers
from lrsjax.noise._smoothing import Smoothing, check_smoothing

MODES = ("votes", "consistency", "histogram")
INPUT_FORMATS = ("sparse", "dense")
_AXIS = "samples"


class Counts(NamedTuple):
    """What a kernel returns (device arrays).

    A model output that is NaN or infinite is never counted as a vote: `nonfinite_samples` and
    `nonfinite_outputs` record it, and `raise_on_invalid` turns it into a ValueError (the counter of
    `make_counter` and `lrsjax.certify` call it), because argmax of NaN logits is class 0 and would
    otherwise look like a perfectly consistent prediction.

    Fields:
      counts: int32. mode "votes": `[*output_shape, num_classes]`, how often each class was the
        argmax; "consistency": `[*output_shape]`, how often the argmax equalled `target`;
        "histogram": `[*output_shape, num_bins]`, how many softmax scores of class `target` fell in
        each bin `[i / num_bins, (i + 1) / num_bins)` (the last bin also holds 1.0; NaN scores count
        as 0). Each output only counts the samples of its own smoothing group.
      overflow: bool []: True if some sparse Bernoulli sample drew more additions than its capacity;
        the counts are then invalid and the caller must raise.
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
    sampler: str  # "gaussian", "sparse_bernoulli" or "dense_bernoulli"
    mode: str
    batch_size: int
    num_classes: int
    num_bins: int
    per_example: bool
    num_groups: int
    num_rows: int
    num_cols: int
    addition_capacity: int
    devices: tuple


class _Arrays(NamedTuple):
    group: Any  # int32 [*output_shape]
    region: Any  # int32 [H, W] or [N]
    stds: Any  # float32 [K, M] (gaussian) else dummy
    addition_rates: Any  # float32 [K, M] (sparse) else dummy
    addition_thresholds: Any  # uint32 [K, M] (dense) else dummy
    deletion_thresholds: Any  # uint32 [K, M] (bernoulli) else dummy
    nodes_by_region: Any  # int32 [N] (sparse) else dummy
    region_start: Any  # int32 [M] (sparse) else dummy
    region_size: Any  # int32 [M] (sparse) else dummy


def sampled_stds(stds) -> np.ndarray:
    """The standard deviations the kernel samples with, as exact float64 values `[K, M]`.

    The kernel draws float32 noise scaled by float32 standard deviations; rounding a float64 std
    to float32 can move it up or down by a relative 2**-24. A certificate computed from the
    float64 std would then describe a slightly different distribution than the one sampled, so
    certificates use these values (float32 values are exact in float64). `inf` (masked) stays.
    """
    return np.asarray(np.asarray(stds, np.float64).astype(np.float32), np.float64)


def _device_arrays(smoothing: Smoothing, sampler: str) -> _Arrays:
    dummy_f = np.zeros((1, 1), np.float32)
    dummy_u = np.zeros((1, 1), np.uint32)
    dummy_i = np.zeros((1,), np.int32)
    if smoothing.kind == "gaussian":
        return _Arrays(
            smoothing.group,
            smoothing.region,
            sampled_stds(smoothing.stds).astype(np.float32),
            dummy_f,
            dummy_u,
            dummy_u,
            dummy_i,
            dummy_i,
            dummy_i,
        )
    params = _samplers.bernoulli_parameters(smoothing.theta_plus, smoothing.theta_minus)
    layout = _samplers.region_layout(smoothing.region, smoothing.num_regions)
    sparse = sampler == "sparse_bernoulli"
    return _Arrays(
        smoothing.group,
        smoothing.region,
        dummy_f,
        params.addition_rates if sparse else dummy_f,
        dummy_u if sparse else params.addition_thresholds,
        params.deletion_thresholds,
        layout.nodes_by_region if sparse else dummy_i,
        layout.region_start if sparse else dummy_i,
        layout.region_size if sparse else dummy_i,
    )


def _accumulate(static: _Static, counts, logits, valid, group_mask, target):
    """Adds one batch of logits `[B, *out, C]` into `counts`, only where `group_mask` [*out]."""
    batch = logits.shape[0]
    extra = (1,) * (logits.ndim - 2)
    valid_b = valid.reshape((batch, *extra))
    if static.mode == "votes":
        pred = jnp.argmax(logits, axis=-1)
        classes = jnp.arange(static.num_classes, dtype=pred.dtype)
        hits = (pred[..., None] == classes) & valid_b[..., None]
        per_output = jnp.sum(hits, axis=0, dtype=jnp.int32)
        return counts + jnp.where(group_mask[..., None], per_output, 0)
    if static.mode == "consistency":
        pred = jnp.argmax(logits, axis=-1)
        hits = (pred == target[None]) & valid_b
        per_output = jnp.sum(hits, axis=0, dtype=jnp.int32)
        return counts + jnp.where(group_mask, per_output, 0)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    score = jnp.take_along_axis(probs, target[None, ..., None].astype(jnp.int32), axis=-1)[..., 0]
    score = jnp.where(jnp.isnan(score), 0.0, score)
    # num_bins is a power of two, so score * num_bins is exact and floor() bins without rounding.
    bins = jnp.clip(jnp.floor(score * static.num_bins), 0, static.num_bins - 1).astype(jnp.int32)
    num_out = group_mask.size
    weight = (valid_b & group_mask[None]).astype(jnp.int32).reshape(batch, num_out)
    flat = counts.reshape(num_out, static.num_bins)
    out_index = jnp.broadcast_to(jnp.arange(num_out, dtype=jnp.int32), (batch, num_out))
    flat = flat.at[out_index, bins.reshape(batch, num_out)].add(weight)
    return flat.reshape(counts.shape)


def _batch_step(static: _Static, key, b, params, x, valid, arrays, target, active, bitmap, carry):
    """Batch `b` of `batch_size` samples for every active group."""
    batch_size = static.batch_size
    if static.per_example:  # one example at a time (a loop), e.g. for scatter-heavy models on CPU

        def model(params, batch):
            return lax.map(lambda example: static.apply_fn(params, example), batch)

    else:
        model = jax.vmap(static.apply_fn, in_axes=(None, 0))
    if static.sampler == "gaussian":
        # one standard-normal draw per batch serves every group (SPEC 3)
        noise = _samplers.standard_normal(
            jax.random.fold_in(key, b), (batch_size, *x.shape), x.dtype
        )

    def group_step(k, carry):
        counts, overflow, bad_samples, bad_outputs = carry
        group_mask = (arrays.group == k) & active[k]
        if static.sampler == "gaussian":
            std_map = _samplers.gaussian_std_map(arrays.stds[k], arrays.region)
            noisy = _samplers.perturb_gaussian(x, std_map, noise)
        else:
            # one key per (batch, group): fold_in(key, b * K + k), then one key per sample
            keys = jax.random.split(jax.random.fold_in(key, b * static.num_groups + k), batch_size)
            if static.sampler == "sparse_bernoulli":
                sample = _samplers.make_sparse_bernoulli_sampler(
                    static.num_rows, static.num_cols, static.addition_capacity
                )
                layout = _samplers.RegionLayout(
                    arrays.region, arrays.nodes_by_region, arrays.region_start, arrays.region_size
                )
                noisy, over = jax.vmap(sample, in_axes=(0, None, None, None, None, None))(
                    keys,
                    x,
                    layout,
                    arrays.addition_rates[k],
                    arrays.deletion_thresholds[k],
                    bitmap,
                )
                overflow = overflow | jnp.any(over & valid)
            else:
                noisy = jax.vmap(
                    _samplers.sample_dense_bernoulli, in_axes=(0, None, None, None, None)
                )(
                    keys,
                    x,
                    arrays.region,
                    arrays.addition_thresholds[k],
                    arrays.deletion_thresholds[k],
                )
        logits = model(params, noisy)
        counts = _accumulate(static, counts, logits, valid, group_mask, target)
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


def _counts_shape(static: _Static, output_shape) -> tuple:
    if static.mode == "votes":
        return (*output_shape, static.num_classes)
    if static.mode == "consistency":
        return tuple(output_shape)
    return (*output_shape, static.num_bins)


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
    bitmap = None
    if static.sampler == "sparse_bernoulli":
        bitmap = _samplers.ones_bitmap(x, static.num_rows, static.num_cols)
    init = (
        jnp.zeros(_counts_shape(static, arrays.group.shape), jnp.int32),
        jnp.zeros((), bool),
        jnp.zeros((), jnp.int32),
        jnp.zeros(arrays.group.shape, bool),
    )
    slots = jnp.arange(batch_size, dtype=jnp.int32)

    def body(i, carry):
        b = first + devices * i
        valid = slots < num_samples - b * batch_size
        return _batch_step(static, key, b, params, x, valid, arrays, target, active, bitmap, carry)

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


def make_counter(
    apply_fn: Callable,
    smoothing: Smoothing,
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
    """A compiled sampling-and-counting kernel for every group of a `Smoothing`.

    The returned counter validates every call on the host before the jitted kernel runs: the key,
    `x` (shape, dtype, finiteness, binary entries, sparse indices in range), the model's logits
    shape against `num_classes` (with `jax.eval_shape`, once per input and parameter structure),
    and that a batch of `batch_size` samples fits in memory (`check_batch_memory`).

    Args:
      apply_fn: `apply_fn(params, x) -> logits` for one example (module docstring).
      smoothing: an `lrsjax.noise.Smoothing`.
      mode: "votes" (per-output class counts, for selection), "consistency" (per-output count of
        samples whose argmax equals `target`) or "histogram" (per-output histogram of the softmax
        score of class `target`, `num_bins` equal bins on [0, 1]).
      batch_size: samples per model call (per device).
      num_classes: number of logits per output.
      num_bins: histogram bins, a power of two (so that binning is exact in float32).
      input_format: Bernoulli only: "sparse" (x is a `SparseBinary`, exact Poisson-thinning sampler)
        or "dense" (x is a dense `[N, F]` 0/1 array, one uniform draw per bit).
      num_cols: Bernoulli only: F, the number of attributes per node.
      addition_capacity: sparse Bernoulli only: slots for added bits per sample; default from a
        Poisson tail bound (overflow probability < 1e-12 per sample). Overflow is detected.
      devices: devices to spread the batches over (default `jax.devices()`); the counts do not
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
    return _make_counter(
        apply_fn,
        smoothing,
        mode=mode,
        batch_size=batch_size,
        num_classes=num_classes,
        num_bins=num_bins,
        input_format=input_format,
        num_cols=num_cols,
        addition_capacity=addition_capacity,
        devices=devices,
        per_example=per_example,
        check_calls=True,
    )


def _make_counter(
    apply_fn: Callable,
    smoothing: Smoothing,
    *,
    mode: str,
    batch_size: int,
    num_classes: int,
    num_bins: int,
    input_format: str,
    num_cols: int | None,
    addition_capacity: int | None,
    devices,
    per_example: bool,
    check_calls: bool,
) -> Callable:
    """`make_counter`; with `check_calls=False` the counter trusts its caller (`lrsjax.certify`,
    which has validated the key, `x`, the logits and the batch memory itself) to have checked `x`,
    the model and the memory, and skips those checks (the cheap argument checks always run)."""
    smoothing = check_smoothing(smoothing)
    _checks.one_of("mode", mode, MODES)
    batch_size = _checks.positive_int("batch_size", batch_size)
    num_classes = _checks.positive_int("num_classes", num_classes)
    num_bins = check_histogram_bins(num_bins)
    devices = tuple(jax.devices()) if devices is None else tuple(devices)
    if not devices:
        _checks.fail("devices", devices, "must not be empty", "Pass None to use jax.devices().")
    num_rows = int(smoothing.region.shape[0])
    if smoothing.kind == "gaussian":
        sampler, num_cols, capacity = "gaussian", 0, 0
    else:
        _checks.one_of("input_format", input_format, INPUT_FORMATS)
        if num_cols is None:
            _checks.fail("num_cols", num_cols, "is required for Bernoulli smoothing", "Pass F.")
        num_cols = _checks.positive_int("num_cols", num_cols)
        sampler = f"{input_format}_bernoulli"
        capacity = 0
        if input_format == "sparse":
            if addition_capacity is None:
                addition_capacity = default_addition_capacity(smoothing, num_cols)
            capacity = _checks.positive_int("addition_capacity", addition_capacity)
    static = _Static(
        apply_fn=apply_fn,
        sampler=sampler,
        mode=mode,
        batch_size=batch_size,
        num_classes=num_classes,
        num_bins=num_bins if mode == "histogram" else 0,  # only static where it shapes
        per_example=bool(per_example),
        num_groups=smoothing.num_groups,
        num_rows=num_rows,
        num_cols=num_cols,
        addition_capacity=capacity,
        devices=devices,
    )
    arrays = jax.tree.map(jnp.asarray, _device_arrays(smoothing, sampler))
    output_shape = smoothing.output_shape
    num_groups = smoothing.num_groups
    region_shape = tuple(smoothing.region.shape)
    checked_models = set()  # (x structure, params structure) whose logits shape was checked
    # The last input that passed `check_input`, by the identity of its leaves: jax arrays are
    # immutable, so the same objects need no second check (certification loops pass one `x` many
    # times; the check reads every entry on the host). NumPy inputs are checked on every call.
    last_checked: list = []

    def checked_input(x):
        leaves = jax.tree.leaves(x)
        immutable = bool(leaves) and all(isinstance(leaf, jax.Array) for leaf in leaves)
        if immutable and last_checked and len(last_checked[0]) == len(leaves):
            if all(a is b for a, b in zip(last_checked[0], leaves)):
                return last_checked[1]
        out = check_input(x, sampler, region_shape, num_cols)
        last_checked[:] = [tuple(leaves), out] if immutable else []
        return out

    def count(key, params, x, num_samples, target=None, active=None, batches=None) -> Counts:
        key = _keys.check_key("key", key)
        if check_calls:
            x = checked_input(x)
            size = x.capacity + capacity if sampler == "sparse_bernoulli" else int(np.prod(x.shape))
            check_batch_memory(
                batch_size,
                sampler=sampler,
                modes=(mode,),
                num_classes=num_classes,
                num_bins=num_bins,
                num_outputs=int(np.prod(output_shape)),
                input_size=size,
                devices=devices,
            )
            signature = (_structure(x), _structure(params))
            if signature not in checked_models:
                example = _example_input(x, sampler, capacity)
                check_logits(apply_fn, params, example, output_shape, num_classes)
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
        if batches is None:
            batches = (0, num_batches)
        batches = tuple(int(b) for b in batches)
        if len(batches) != 2 or not 0 <= batches[0] <= batches[1] <= num_batches:
            _checks.fail(
                "batches",
                batches,
                f"must be a range (start, stop) with 0 <= start <= stop <= {num_batches} (the "
                f"batches of {num_samples} samples)",
                "Pass None for all batches.",
            )
        out = _count_jit(
            static,
            key,
            params,
            _canonical_input(x, sampler),
            jnp.asarray(num_samples, jnp.int32),
            jnp.asarray(batches, jnp.int32),
            arrays,
            jnp.asarray(target, jnp.int32),
            jnp.asarray(active),
        )
        if check_calls:
            raise_on_nonfinite(out)
        return out

    return count


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


@jax.jit
def add_counts(a: Counts, b: Counts) -> Counts:
    """The counts of two disjoint batch ranges (or devices) of one stage, added on the device."""
    return Counts(
        a.counts + b.counts,
        a.overflow | b.overflow,
        a.nonfinite_samples + b.nonfinite_samples,
        a.nonfinite_outputs | b.nonfinite_outputs,
    )


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


def check_histogram_bins(num_bins) -> int:
    """`num_bins` as an int: a power of two <= 2**20 (so that binning is exact in float32)."""
    num_bins = _checks.positive_int("num_bins", num_bins)
    if num_bins & (num_bins - 1) or num_bins > 2**20:
        _checks.fail(
            "num_bins", num_bins, "must be a power of two <= 2**20", "Pass e.g. 1024 or 4096."
        )
    return num_bins


def _structure(tree) -> tuple:
    """Hashable (tree structure, leaf shapes and dtypes) of a pytree."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(
        (getattr(leaf, "shape", None), str(getattr(leaf, "dtype", type(leaf).__name__)))
        for leaf in leaves
    )


def check_input(x, sampler: str, region_shape: tuple, num_cols: int):
    """Validates one clean input on the host; returns it as the kernel's device input.

    Gaussian: a finite float image `[C, H, W]` with `(H, W) = region_shape`. Dense Bernoulli: a 0/1
    matrix `[N, num_cols]` with `N = region_shape[0]`. Sparse Bernoulli: a `SparseBinary` of
    capacity >= 1 whose valid entries index an `[N, num_cols]` matrix, each at most once.
    """
    if sampler == "sparse_bernoulli":
        return check_sparse_input(x, int(region_shape[0]), num_cols)
    if isinstance(x, SparseBinary):
        _checks.fail("x", "a SparseBinary", "must be a dense array for this smoothing", "")
    if sampler == "gaussian":
        arr = _checks.as_float_array("x", x)
        if arr.ndim != 3 or arr.shape[1:] != region_shape:
            _checks.fail(
                "x",
                arr,
                f"must be an image [C, H, W] with (H, W) = {region_shape} (the smoothing's image "
                "size)",
                "Build the smoothing for this image size.",
            )
        return jnp.asarray(arr, jnp.float32)
    arr = _checks.as_float_array("x", x, ndim=2)
    if arr.shape != (region_shape[0], num_cols):
        _checks.fail("x", arr, f"must have shape [N, F] = {(region_shape[0], num_cols)}", "")
    if np.any((arr != 0) & (arr != 1)):
        _checks.fail("x", arr, "must be binary (0/1)", "Binarize the attributes.")
    return jnp.asarray(arr, jnp.float32)


def check_sparse_input(x, num_rows: int, num_cols: int) -> SparseBinary:
    """Validates a clean sparse input `[num_rows, num_cols]`; returns it with int32/bool arrays."""
    if not isinstance(x, SparseBinary):
        _checks.fail("x", x, "must be a SparseBinary for the sparse sampler", "")
    rows = _checks.as_int_array("x.rows", x.rows, ndim=1)
    cols = _checks.as_int_array("x.cols", x.cols, ndim=1)
    valid = _checks.as_bool_array("x.valid", x.valid, ndim=1)
    _checks.same_shape(("x.rows", "x.cols", "x.valid"), (rows, cols, valid))
    if rows.size == 0:
        _checks.fail("x", x, "must have capacity >= 1", "Pad it: from_scipy(m, capacity=1).")
    r, c = rows[valid], cols[valid]
    if r.size and (r.min() < 0 or r.max() >= num_rows or c.min() < 0 or c.max() >= num_cols):
        _checks.fail(
            "x",
            f"entries up to ({r.max()}, {c.max()})",
            f"must index a [{num_rows}, {num_cols}] matrix",
            "",
        )
    if np.unique(r.astype(np.int64) * num_cols + c).size != r.size:
        _checks.fail("x", "repeated entries", "must list every one only once", "")
    return SparseBinary(
        jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32), jnp.asarray(valid, bool)
    )


def _example_input(x, sampler: str, addition_capacity: int):
    """The abstract input the model receives (noisy sparse samples carry the addition slots)."""
    if sampler == "sparse_bernoulli":
        capacity = x.capacity + int(addition_capacity)
        return SparseBinary(
            jax.ShapeDtypeStruct((capacity,), jnp.int32),
            jax.ShapeDtypeStruct((capacity,), jnp.int32),
            jax.ShapeDtypeStruct((capacity,), jnp.bool_),
        )
    return jax.ShapeDtypeStruct(tuple(x.shape), jnp.float32)


def check_logits(apply_fn, params, example, output_shape: tuple, num_classes: int | None) -> int:
    """Checks the model's logits `[*output_shape, C]`, `C >= 2`, with `jax.eval_shape` (traces,
    never compiles); with `num_classes` given, also `C == num_classes`. Returns C."""
    try:
        out = jax.eval_shape(apply_fn, params, example)
    except Exception as error:  # the user's model failed on a correctly shaped input
        raise ValueError(
            f"`apply_fn(params, x)` failed on one example input {example}: {error}. "
            "apply_fn must take ONE example (it is vmapped over the batch)."
        ) from error
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


def bytes_per_sample(
    sampler: str, mode: str, num_classes: int, num_outputs: int, input_size: int
) -> int:
    """Estimated device bytes that one sample of a batch holds at once (a lower estimate).

    Counts the noise and the noisy input (`input_size` elements of a dense input, or slots of a
    noisy sparse sample), the logits `[num_outputs, num_classes]` (float32) and the per-output
    temporaries of counting. The model's own activations are NOT counted (unknown before
    compiling): they come on top, which is why `check_batch_memory` keeps a safety margin.
    """
    if sampler == "gaussian":
        inputs = 8 * input_size  # the shared standard-normal draw and one group's noisy input
    elif sampler == "dense_bernoulli":
        inputs = 9 * input_size  # 32-bit uniform words, the noisy input, a flip mask
    else:
        inputs = 27 * input_size  # noisy rows/cols/valid, the random words, sort buffers
    logits = 4 * num_outputs * num_classes
    if mode == "histogram":
        counting = 4 * num_outputs * num_classes + 16 * num_outputs  # softmax, score, bins
    else:
        counting = num_outputs * num_classes + 8 * num_outputs  # argmax, one-hot hits
    return inputs + logits + counting


def check_batch_memory(
    batch_size: int,
    *,
    sampler: str,
    modes: tuple,
    num_classes: int,
    num_bins: int,
    num_outputs: int,
    input_size: int,
    devices,
) -> None:
    """Refuses, before anything is compiled, a batch that cannot fit in memory (ValueError).

    Estimate: `batch_size * bytes_per_sample(...)` plus the count tensor, per device; CPU devices
    share the host memory, so the estimate is multiplied by their number. It must stay below
    `lrsjax._memory.SAFETY_FRACTION` of the available memory (`/proc/meminfo` MemAvailable and the
    address-space limit on the host; `memory_stats()["bytes_limit"]` on accelerators). The error
    names `batch_size`, the estimate, and the largest batch size that passes. The batch is never
    reduced silently: the counts of a given key depend on the batch size.
    """
    per_sample = max(
        bytes_per_sample(sampler, mode, num_classes, num_outputs, input_size) for mode in modes
    )
    fixed = 4 * num_outputs * max(num_classes, num_bins if "histogram" in modes else 0)
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


def _canonical_input(x, sampler: str):
    """Fixed dtypes (and no weak types), so that equal shapes always hit the compilation cache."""
    if sampler == "sparse_bernoulli":
        if not isinstance(x, SparseBinary):
            _checks.fail("x", x, "must be a SparseBinary for the sparse sampler", "")
        return SparseBinary(
            jnp.asarray(x.rows, jnp.int32),
            jnp.asarray(x.cols, jnp.int32),
            jnp.asarray(x.valid, bool),
        )
    return jnp.asarray(x, jnp.float32)


def default_addition_capacity(smoothing: Smoothing, num_cols: int) -> int:
    """Addition slots per sparse Bernoulli sample: overflow probability < 1e-12 per sample.

    The noisy `SparseBinary` the model receives has capacity `x.capacity` + this number.
    """
    smoothing = check_smoothing(smoothing)
    num_cols = _checks.positive_int("num_cols", num_cols)
    params = _samplers.bernoulli_parameters(smoothing.theta_plus, smoothing.theta_minus)
    sizes = np.bincount(smoothing.region, minlength=smoothing.num_regions)
    return _samplers.sparse_addition_capacity(params.addition_rates, sizes, num_cols)
