"""`certify`: localized randomized smoothing certificates of one input of a multi-output model.

The certification core (SPEC 3, 4, 5), in the style of Cohen et al.'s `core.py`: for every smoothing
group, select each output's class by majority vote on `n0` noisy samples, estimate on `n` FRESH
samples, bound on the host in float64 with a correction that holds simultaneously for all tested
outputs, abstain where the bound does not beat 1/2, and return base certificates in the linear form
that `lrsjax.collective` consumes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from lrsjax import _checks, _keys, _progress, base_certs, stats
from lrsjax._sparse import SparseBinary
from lrsjax.base_certs import BaseCertificates
from lrsjax.base_certs._sparse_smoothing import check_table_size
from lrsjax.noise._smoothing import Smoothing, check_smoothing
from lrsjax.sampling import _kernels

CORRECTIONS = ("bonferroni", "rank_levels", "holm")
CERTIFICATES = ("neyman_pearson", "variance")


class Certificate(NamedTuple):
    """The result of `certify` for one input. Arrays are numpy, on the host; `D` = number of outputs
    (`prod(output_shape)`, row-major: pixel `(h, w)` is output `h * W + w`; node `i` is output `i`).

    Fields:
      prediction: int64 [D], the smoothed prediction (majority vote on the `n0` selection samples);
        meaningless where `abstain`.
      abstain: bool [D], True where nothing is certified (untested outputs, bounds not above 1/2, or
        outputs rejected by the Holm test).
      tested: bool [D], the outputs counted in the multiple-testing correction (`outputs`).
      p_lower: float64 [D] or None: Neyman-Pearson certificates: lower bound on the probability of
        `prediction` (Clopper-Pearson, corrected); with `correction="holm"`, `tau` where the test
        passed and 0 where not. NaN where untested. None for the variance certificate.
      mu_lower, zeta_upper: float64 [D] or None: variance certificate: DKW lower bound on the mean
        softmax score of `prediction` and upper bound on its second moment about the histogram mean
        (>= the variance). NaN where untested. None otherwise.
      radius: float64 [D] or None: Gaussian smoothing: the naive certified l2 radius of every
        output, `sqrt(eta / max_j W[group, j])` (isotropic: `sigma * Phi^{-1}(p_lower)`): the
        prediction is kept for every `||x' - x||_2 < radius`. 0 where abstained. None for Bernoulli
        smoothing.
      binary_radius: float64 [D, 2] or None: Bernoulli smoothing: the largest number of added bits
        (column 0, no deletions) and of deleted bits (column 1, no additions) certified for every
        output on its own, anywhere in the input (`inf` if the cost is 0). 0 where abstained.
      counts: int64 [D] or None: consistency counts (estimation samples whose argmax equals
        `prediction`), Neyman-Pearson certificates.
      histogram: int64 [D, num_bins] or None: variance certificate: histogram of the estimation
        samples' softmax score of `prediction` on `num_bins` equal bins of [0, 1].
      select_votes: int64 [D, num_classes]: class votes of the `n0` selection samples.
      base_certs: `BaseCertificates` for `lrsjax.collective` (norm "l2" for Gaussian, "binary" for
        the variance certificate of Bernoulli smoothing), or None for the isotropic sparse-smoothing
        (Neyman-Pearson) certificate, which is not linear: see `sparse_grid`.
      sparse_grid: bool [D, max_flips[0] + 1, max_flips[1] + 1] or None: Bernoulli smoothing with
        `certificate="neyman_pearson"`: entry `[n, r_a, r_d]` certifies output n against at most
        `r_a` additions and `r_d` deletions (Bojchevski et al. 2020).
      output_shape: tuple, shape of the outputs, e.g. (H, W) or (N,).
      method: str, which certificate, statistics and correction produced the numbers.
      alpha: float, the family-wise error probability.
      num_samples: (n0, n).
    """

    prediction: np.ndarray
    abstain: np.ndarray
    tested: np.ndarray
    p_lower: np.ndarray | None
    mu_lower: np.ndarray | None
    zeta_upper: np.ndarray | None
    radius: np.ndarray | None
    binary_radius: np.ndarray | None
    counts: np.ndarray | None
    histogram: np.ndarray | None
    select_votes: np.ndarray
    base_certs: BaseCertificates | None
    sparse_grid: np.ndarray | None
    output_shape: tuple
    method: str
    alpha: float
    num_samples: tuple


def certify(
    key,
    apply_fn: Callable,
    params,
    x,
    smoothing: Smoothing,
    *,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    correction: str = "bonferroni",
    outputs=None,
    tau: float | None = None,
    certificate: str | None = None,
    num_features: int | None = None,
    num_bins: int = 1024,
    max_flips=(16, 16),
    addition_capacity: int | None = None,
    devices=None,
    per_example: bool = False,
    progress: bool = False,
    timings: dict | None = None,
) -> Certificate:
    """Certifies every (tested) output of a multi-output model under localized smoothing.

    Guarantee. For each smoothing group `k`, `n0` i.i.d. samples of the group's noise select each
    output's class; `n` fresh i.i.d. samples then bound, for every tested output at once, the
    probability of that class (or the mean and variance of its softmax score). With probability
    at least `1 - alpha` over the sampling, ALL returned bounds hold simultaneously, so every output
    that does not abstain keeps `prediction` for every perturbation `x'` its base certificate
    allows (SPEC 5): Gaussian smoothing, for every `x'` with
    `sum_j ||x'_j - x_j||^2 / S[k, j]^2 < Phi^{-1}(p_lower)^2` (in particular `||x' - x||_2 <
    radius`); Bernoulli smoothing (variance certificate), for every `x'` whose added/deleted bits
    per cluster `b` satisfy `sum_j W[add, k, j] b_add[j] + W[del, k, j] b_del[j] < eta`. The bounds
    hold jointly, so the collective certificate (`lrsjax.collective`) may use all of them at once.

    Statistics (host, float64): Neyman-Pearson certificates use one-sided Clopper-Pearson bounds on
    the consistency counts at level `alpha / N_tested` (`correction="bonferroni"`, default, sound
    under any dependence); `"holm"` is SegCertify's fixed-threshold test (outputs whose
    probability provably exceeds `tau` get `p_lower = tau`, the others abstain; sound);
    `"rank_levels"` gives the i-th smallest count the level `alpha / i` as the research code does:
    NO simultaneous-coverage proof is known, it exists only to reproduce published numbers. The
    variance certificate uses
    one DKW band at level `alpha / N_tested` for the mean and the second moment (SPEC 4).

    Args:
      key: JAX PRNG key; the same key gives the same result (also on any number of devices).
      apply_fn: `apply_fn(params, x) -> logits` for ONE example. Images: `x` float32 [C, H, W] ->
        [H, W, num_classes]. Graphs: `x` a `SparseBinary` with capacity `x.capacity +
        addition_capacity` (or dense float32 [N, F] when `x` is dense) -> [N, num_classes]. Masked
        pixels arrive as 0. Pass the same function object each time to reuse compilations.
      params: the model's parameters (any pytree; passed through).
      x: the clean input: image [C, H, W] (float, finite), or graph attributes as a `SparseBinary`
        (pass `num_features`) or a dense 0/1 array [N, F].
      smoothing: an `lrsjax.noise.Smoothing` (`localized_gaussian`, `clustered_bernoulli`, ...).
      n0: selection samples per group (>= 1).
      n: estimation samples per group (>= 1).
      alpha: family-wise error probability in (0, 1).
      batch_size: samples per model call (per device). Values above `max(n0, n)` are lowered to
        it (one batch either way: the counts do not change). A batch whose estimated memory
        (`sampling._kernels.check_batch_memory`) exceeds half of the available memory is refused
        with a ValueError that gives the largest batch size that fits; it is never reduced
        silently, since the counts of a key depend on the batch size.
      correction: "bonferroni" (default), "holm" (needs `tau`; Neyman-Pearson only) or
        "rank_levels" (Neyman-Pearson only; no proof, reproduction only).
      outputs: optional bool mask (output shape or [D]) or int array of flat output indices: the
        outputs to test (graphs: the held-out test nodes). Only they enter the Bonferroni divisor;
        the others abstain. Groups without tested outputs are not sampled.
      tau: Holm threshold in (1/2, 1).
      certificate: "neyman_pearson" (default for Gaussian: anisotropic Gaussian certificate; for
        Bernoulli: the isotropic sparse-smoothing certificate, which needs a single flip pair) or
        "variance" (default for Bernoulli: variance-constrained, localized).
      num_features: F, required when `x` is a `SparseBinary`.
      num_bins: histogram bins of the variance certificate (power of two).
      max_flips: (max additions, max deletions) of `sparse_grid` (sparse-smoothing certificate).
      addition_capacity: slots for added bits per sparse sample (default: Poisson tail bound with
        overflow probability < 1e-12 per sample; overflow is detected and raises).
      devices: devices to spread the samples over (default `jax.devices()`).
      per_example: apply the model one example at a time instead of vmapping it (same results;
        faster on CPU for scatter-based sparse GNN layers).
      progress: show a progress bar per sampling stage (selection, estimation) on stderr, with
        samples/s measured after compilation and the compile time shown apart. The samples are
        then counted in ranges of batches; the counts, hence the certificate, are identical.
      timings: optional dict that receives wall-clock seconds: `compile_s` (tracing and compiling
        the kernels), `select_s` and `estimate_s` (sampling, compilation excluded), `bound_s`
        (statistics and base certificates on the host) and `samples` (model calls made).
    Returns:
      A `Certificate`.
    Raises:
      ValueError before any compilation for invalid arguments (including logits of the wrong shape
      or fewer than two classes, found with `jax.eval_shape`, and `n`, `alpha` and the number of
      tested outputs for which no output could be certified even if every sample agreed); after
      sampling, ValueError if the model returned a NaN or infinite logit in any sample (nothing is
      certified then); RuntimeError if a sparse sample overflowed its capacity.
    Warns:
      UserWarning when an image lies outside [0, 1], the pixel range the noise levels refer to
      (e.g. a uint8 image in 0..255, for which the certified radii would be 255 times too large).
    """
    key = _keys.check_key("key", key)
    smoothing = check_smoothing(smoothing)
    n0 = _checks.positive_int("n0", n0)
    n = _checks.positive_int("n", n)
    batch_size = _checks.positive_int("batch_size", batch_size)
    alpha = _checks.probability("alpha", alpha)
    _checks.one_of("correction", correction, CORRECTIONS)
    if not callable(apply_fn):
        _checks.fail("apply_fn", apply_fn, "must be callable", "Pass `apply_fn(params, x)`.")
    gaussian = smoothing.kind == "gaussian"
    if certificate is None:
        certificate = "neyman_pearson" if gaussian else "variance"
    _checks.one_of("certificate", certificate, CERTIFICATES)
    if certificate == "variance" and correction != "bonferroni":
        _checks.fail(
            "correction",
            correction,
            "must be 'bonferroni' for the variance certificate (DKW at alpha / N_tested)",
            "Drop `correction`.",
        )
    if correction == "holm":
        if tau is None:
            _checks.fail("tau", tau, "is required with correction='holm'", "Pass e.g. tau=0.75.")
        tau = _checks.probability("tau", tau)
        if tau <= 0.5:
            _checks.fail("tau", tau, "must be > 1/2 (nothing is certified below)", "")
    elif tau is not None:
        _checks.fail("tau", tau, "is only used with correction='holm'", "Drop `tau`.")
    if not gaussian and certificate == "neyman_pearson":
        flips = (np.unique(smoothing.theta_plus), np.unique(smoothing.theta_minus))
        if flips[0].size != 1 or flips[1].size != 1:
            _checks.fail(
                "certificate",
                certificate,
                "'neyman_pearson' for Bernoulli smoothing needs one flip pair for every group "
                "and region (isotropic sparse smoothing)",
                "Use certificate='variance' for clustered smoothing, or isotropic_bernoulli(...).",
            )
        max_add = _checks.positive_int("max_flips[0]", tuple(max_flips)[0], minimum=0)
        max_del = _checks.positive_int("max_flips[1]", tuple(max_flips)[1], minimum=0)
        check_table_size(
            ("max_flips[0]", "max_flips[1]"),
            max_add,
            max_del,
            bytes_per_cell=2 * smoothing.num_outputs,
        )

    output_shape = smoothing.output_shape
    num_outputs = smoothing.num_outputs
    tested = _tested_mask(outputs, output_shape)
    if not tested.any():
        _checks.fail("outputs", outputs, "must select at least one output", "")
    num_tested = int(tested.sum())
    num_bins = _kernels.check_histogram_bins(num_bins)
    # The kernel samples with float32 standard deviations; the certificate uses exactly those.
    sampled_stds = _kernels.sampled_stds(smoothing.stds) if gaussian else None
    x, sampler, num_cols = _check_input(x, smoothing, num_features)
    input_format = "sparse" if sampler == "sparse_bernoulli" else "dense"
    if input_format == "sparse":
        if addition_capacity is None:
            addition_capacity = _kernels.default_addition_capacity(smoothing, num_cols)
        addition_capacity = _checks.positive_int("addition_capacity", addition_capacity)
    example = _kernels._example_input(x, sampler, addition_capacity or 0)
    num_classes = _kernels.check_logits(apply_fn, params, example, output_shape, None)

    # A batch larger than the samples asked for only costs memory. Lowering it changes no count:
    # a single batch either way, and sample i of batch 0 is drawn from its own counter (with JAX's
    # default jax_threefry_partitionable=True, random bits and key splits are indexed by position,
    # not by the batch's size; tests/test_faults.py checks it). It is deterministic in any case.
    batch_size = min(batch_size, max(n0, n))
    modes = ("votes",) if certificate == "neyman_pearson" else ("votes", "histogram")
    if input_format == "sparse":
        input_size = x.capacity + addition_capacity
    else:
        input_size = int(np.prod(x.shape))
    _kernels.check_batch_memory(
        batch_size,
        sampler=sampler,
        modes=modes,
        num_classes=num_classes,
        num_bins=num_bins,
        num_outputs=num_outputs,
        input_size=input_size,
        devices=tuple(jax.devices()) if devices is None else tuple(devices),
    )

    flat_group = smoothing.group.reshape(-1)
    active = np.zeros(smoothing.num_groups, bool)
    active[np.unique(flat_group[tested])] = True

    common = dict(
        batch_size=batch_size,
        num_classes=num_classes,
        num_bins=num_bins,
        input_format=input_format,
        num_cols=num_cols,
        addition_capacity=addition_capacity,
        devices=devices,
        per_example=per_example,
    )
    _check_certifiable(n, alpha, num_tested, certificate, correction, tau, num_bins)
    key_select, key_estimate = jax.random.split(key)
    votes_counter = _kernels._make_counter(
        apply_fn, smoothing, mode="votes", check_calls=False, **common
    )
    clock = dict(compile_s=0.0, select_s=0.0, estimate_s=0.0, bound_s=0.0, samples=0)
    stage = dict(
        params=params,
        x=x,
        active=active,
        batch_size=batch_size,
        num_devices=len(jax.devices()) if devices is None else len(tuple(devices)),
        addition_capacity=addition_capacity,
        progress=progress,
        clock=clock,
    )

    # 1) selection: majority vote on n0 samples per group.
    selected = _count_stage(votes_counter, key_select, n0, name="select", **stage)
    select_votes = np.asarray(selected.counts, np.int64).reshape(num_outputs, num_classes)
    prediction = np.argmax(select_votes, axis=1).astype(np.int64)

    nan = np.full(num_outputs, np.nan)
    p_out = mu_out = zeta_out = radius = binary_radius = counts = hist = grid = None
    if certificate == "neyman_pearson":
        # 2) estimation on n fresh samples: consistency counts (same compiled kernel as selection).
        estimated = _count_stage(votes_counter, key_estimate, n, name="estimate", **stage)
        bound_start = time.perf_counter()
        votes = np.asarray(estimated.counts, np.int64).reshape(num_outputs, num_classes)
        counts = votes[np.arange(num_outputs), prediction]
        p_lower = np.zeros(num_outputs)
        if correction == "holm":
            passed = stats.holm_threshold_test(counts[tested], n, tau, alpha)
            p_lower[tested] = np.where(passed, tau, 0.0)
            method = f"neyman_pearson+holm(tau={tau})"
        else:
            p_lower[tested] = stats.corrected_lower_bounds(counts[tested], n, alpha, correction)
            method = f"neyman_pearson+clopper_pearson+{correction}"
            if correction == "rank_levels":
                method += " (no simultaneous-coverage proof; reproduction only)"
        p_out = np.where(tested, p_lower, nan)
        if gaussian:
            certs = base_certs.gaussian(prediction, p_lower, flat_group, sampled_stds)
            radius = _l2_radius(certs)
            method = "gaussian:" + method
        else:
            certs = None
            tp, tm = float(smoothing.theta_plus.flat[0]), float(smoothing.theta_minus.flat[0])
            grid = base_certs.sparse_smoothing_grid(p_lower, tp, tm, max_add, max_del)
            grid &= tested[:, None, None]
            binary_radius = _grid_radius(grid)
            abstain = ~grid[:, 0, 0]
            method = "sparse_smoothing:" + method
    else:
        hist_counter = _kernels._make_counter(
            apply_fn, smoothing, mode="histogram", check_calls=False, **common
        )
        estimated = _count_stage(
            hist_counter,
            key_estimate,
            n,
            name="estimate",
            target=prediction.reshape(output_shape),
            **stage,
        )
        bound_start = time.perf_counter()
        hist = np.asarray(estimated.counts, np.int64).reshape(num_outputs, num_bins)
        level = alpha / num_tested
        edges = np.linspace(0.0, 1.0, num_bins + 1)
        mids = 0.5 * (edges[1:] + edges[:-1])
        mu_lower = np.zeros(num_outputs)
        zeta_upper = np.ones(num_outputs)
        h = hist[tested]
        mu_lower[tested], _ = stats.mean_bounds_from_histogram(h, edges, level)
        center = (h * mids).sum(-1) / h.sum(-1)
        zeta = stats.second_moment_upper_from_histogram(h, edges, center, level)
        zeta_upper[tested] = np.maximum(zeta, 1e-12)  # raising the bound is conservative
        mu_out = np.where(tested, mu_lower, nan)
        zeta_out = np.where(tested, zeta_upper, nan)
        if gaussian:
            weights = _inverse_variances(sampled_stds)[None]
            norm = "l2"
        else:
            weights = np.stack(
                base_certs.bernoulli_costs(smoothing.theta_plus, smoothing.theta_minus)
            )
            norm = "binary"
        certs = base_certs.variance_constrained(
            prediction, mu_lower, zeta_upper, flat_group, weights, norm=norm
        )
        if gaussian:
            radius = _l2_radius(certs)
        else:
            binary_radius = _linear_binary_radius(certs)
        method = f"{smoothing.kind}:variance+dkw+bonferroni(level=alpha/{num_tested})"

    if certs is not None:
        abstain = certs.abstain
    clock["bound_s"] = time.perf_counter() - bound_start
    if timings is not None:
        timings.update(clock)
    return Certificate(
        prediction=prediction,
        abstain=np.asarray(abstain | ~tested),
        tested=tested,
        p_lower=p_out,
        mu_lower=mu_out,
        zeta_upper=zeta_out,
        radius=radius,
        binary_radius=binary_radius,
        counts=counts,
        histogram=hist,
        select_votes=select_votes,
        base_certs=certs,
        sparse_grid=grid,
        output_shape=output_shape,
        method=method,
        alpha=alpha,
        num_samples=(n0, n),
    )


# ----------------------------------------------------------------------------------------------
# helpers (host side)
# ----------------------------------------------------------------------------------------------


def _tested_mask(outputs, output_shape) -> np.ndarray:
    num = int(np.prod(output_shape))
    if outputs is None:
        return np.ones(num, bool)
    arr = np.asarray(outputs)
    if arr.dtype == bool:
        if arr.shape not in (tuple(output_shape), (num,)):
            _checks.fail(
                "outputs",
                arr,
                f"as a mask must have the output shape {tuple(output_shape)} or ({num},)",
                "",
            )
        return arr.reshape(-1).copy()
    idx = _checks.as_int_array("outputs", arr, ndim=1)
    if idx.size and (idx.min() < 0 or idx.max() >= num):
        _checks.fail("outputs", idx, f"must hold flat output indices in [0, {num})", "")
    mask = np.zeros(num, bool)
    mask[idx] = True
    return mask


def _check_input(x, smoothing: Smoothing, num_features):
    """Validates `x` (`_kernels.check_input`); returns (device input, sampler, num_cols)."""
    region_shape = tuple(smoothing.region.shape)
    if smoothing.kind == "gaussian":
        image = _kernels.check_input(x, "gaussian", region_shape, 0)
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            warnings.warn(
                f"`x` has values in [{low:g}, {high:g}], but the noise levels of the smoothing "
                "(and hence the certified radii) are in [0, 1] pixel units. Scale the image to "
                "[0, 1] before certifying (e.g. x / 255 for uint8 images) and apply any "
                "normalization inside apply_fn.",
                UserWarning,
                stacklevel=3,
            )
        return image, "gaussian", 0
    num_rows = region_shape[0]
    if isinstance(x, SparseBinary):
        if num_features is None:
            _checks.fail(
                "num_features",
                None,
                "is required for a SparseBinary input",
                "Pass F = x's columns.",
            )
        num_cols = _checks.positive_int("num_features", num_features)
        if num_rows * num_cols >= np.iinfo(np.int32).max:
            _checks.fail("num_features", num_cols, "makes N * F too large for int32 indices", "")
        return (
            _kernels.check_input(x, "sparse_bernoulli", region_shape, num_cols),
            "sparse_bernoulli",
            num_cols,
        )
    num_cols = int(_checks.as_float_array("x", x, ndim=2).shape[1])
    if num_features is not None and num_features != num_cols:
        _checks.fail("num_features", num_features, f"must equal x.shape[1] = {num_cols}", "")
    return (
        _kernels.check_input(x, "dense_bernoulli", region_shape, num_cols),
        "dense_bernoulli",
        num_cols,
    )


def _count_stage(
    counter,
    key,
    num_samples: int,
    *,
    name: str,
    params,
    x,
    active,
    batch_size: int,
    num_devices: int,
    addition_capacity,
    progress: bool,
    clock: dict,
    target=None,
):
    """Runs one sampling stage (`num_samples` per active group) and checks its counts.

    With a progress bar, the batches are counted in consecutive ranges (the first range small, so
    that compilation shows apart from sampling) whose counts are added on the device: the result
    is identical to one call. Time spent compiling goes to `clock["compile_s"]`, the rest of the
    stage to `clock[name + "_s"]`.
    """
    num_batches = -(-num_samples // batch_size)
    num_active = int(np.count_nonzero(active))
    samples = num_samples * num_active
    bar = _progress.bar(
        samples, desc=f"certify: {name}", unit="samples", enabled=progress, leave=False
    )
    if bar.disable:
        ranges = [(0, num_batches)]
    else:
        first = min(num_devices, num_batches)
        step = max(num_devices, -(-(num_batches - first) // 20))
        ranges = [(0, first)] + [
            (lo, min(lo + step, num_batches)) for lo in range(first, num_batches, step)
        ]
    start = time.perf_counter()
    total = None
    with bar, _kernels.compile_clock() as compile_time:
        for lo, hi in ranges:
            part = counter(
                key, params, x, num_samples, target=target, active=active, batches=(lo, hi)
            )
            total = part if total is None else _kernels.add_counts(total, part)
            if not bar.disable:
                total.overflow.block_until_ready()
                done = min(hi * batch_size, num_samples) * num_active
                if lo == 0:
                    _progress.compiled(bar, done)
                else:
                    bar.update(done - bar.n)
        jax.block_until_ready(total)
    clock["compile_s"] += compile_time.seconds
    clock[f"{name}_s"] = max(time.perf_counter() - start - compile_time.seconds, 0.0)
    clock["samples"] += samples
    _raise_on_overflow(total, addition_capacity)
    _kernels.raise_on_nonfinite(total)
    return total


def _check_certifiable(n, alpha, num_tested, certificate, correction, tau, num_bins) -> None:
    """Refuses (before sampling) settings under which no output can be certified at all.

    Even if all `n` estimation samples of an output agree, its bound must beat 1/2: a
    Clopper-Pearson lower bound at level `a` is then `a**(1 / n)`, so Bonferroni over `N` tested
    outputs needs `(alpha / N)**(1 / n) > 1/2`, i.e. `n > log2(N / alpha)`. The DKW mean bound and
    Holm's test have their own ceilings. The error names the smallest `n` that could certify.
    """

    def possible(m: int) -> bool:
        if certificate == "variance":
            hist = np.zeros((1, num_bins), np.int64)
            hist[0, -1] = m
            edges = np.linspace(0.0, 1.0, num_bins + 1)
            mu_lower, _ = stats.mean_bounds_from_histogram(hist, edges, alpha / num_tested)
            return float(mu_lower[0]) > 0.5
        if correction == "holm":
            return bool(stats.holm_threshold_test(np.array([m]), m, tau, alpha / num_tested)[0])
        # rank_levels may give a single output the level alpha; Bonferroni gives alpha / N
        level = alpha if correction == "rank_levels" else alpha / num_tested
        return float(stats.clopper_pearson_lower(m, m, level)) > 0.5

    if possible(n):
        return
    high = max(2 * n, 2)
    while not possible(high):
        high *= 2
    low = n  # impossible at low, possible at high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if possible(mid) else (mid, high)
    what = {"variance": "the DKW mean bound", "holm": "Holm's test"}.get(
        certificate if certificate == "variance" else correction,
        "the Clopper-Pearson bound",
    )
    _checks.fail(
        "n",
        n,
        f"is too small to certify anything with alpha={alpha} over {num_tested} tested outputs: "
        f"even if all {n} samples agreed, {what} could not exceed 1/2, so every output would "
        "abstain",
        f"Pass n >= {high} (or a larger alpha, or fewer tested outputs via `outputs`).",
    )


def _raise_on_overflow(result, addition_capacity) -> None:
    if bool(result.overflow):
        raise RuntimeError(
            f"A sparse Bernoulli sample needed more than its static capacity: more addition events "
            f"than addition_capacity={addition_capacity} (or, with probability < 2e-12, a pool of "
            f"refinement words ran dry). Its counts are invalid and were discarded; nothing was "
            f"certified. Pass a larger `addition_capacity` to certify, e.g. "
            f"{2 * int(addition_capacity)} (the default has overflow probability < 1e-12 per "
            f"sample for the given flip probabilities)."
        )


def _inverse_variances(stds) -> np.ndarray:
    stds = np.asarray(stds, np.float64)
    return np.where(np.isinf(stds), 0.0, 1.0 / np.where(np.isinf(stds), 1.0, stds) ** 2)


def _l2_radius(certs: BaseCertificates) -> np.ndarray:
    """Naive l2 radius `sqrt(eta / max_j W[group, j])`; 0 where abstained."""
    worst = certs.weights[0].max(axis=1)[certs.group]
    safe = np.where(certs.abstain, 1.0, worst)
    return np.where(certs.abstain, 0.0, np.sqrt(certs.eta / safe))


def _linear_binary_radius(certs: BaseCertificates) -> np.ndarray:
    """Largest r with `r * max_j W[t, group, j] < eta`, per budget type; 0 where abstained."""
    worst = certs.weights.max(axis=2)[:, certs.group].T  # [D, 2]
    eta = certs.eta[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.ceil(eta / worst) - 1.0
        r = np.where(r * worst >= eta, r - 1.0, r)  # strictness against rounding
    r = np.where(worst > 0, np.maximum(r, 0.0), np.inf)
    return np.where(certs.abstain[:, None], 0.0, r)


def _grid_radius(grid: np.ndarray) -> np.ndarray:
    """(additions alone, deletions alone) certified by a monotone sparse-smoothing grid."""
    adds = np.maximum(grid[:, :, 0].sum(axis=1) - 1, 0)
    dels = np.maximum(grid[:, 0, :].sum(axis=1) - 1, 0)
    return np.stack([adds, dels], axis=1).astype(np.float64)
