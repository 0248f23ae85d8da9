"""`certify`: localized randomized smoothing certificates of one input of a multi-output model.

The certification core, in the style of Cohen et al.'s `core.py` (Cohen et al., 2019): for every
smoothing group, select each output's class by majority vote on `n0` noisy samples, estimate on `n`
FRESH samples, bound on the host in float64 with a correction that holds simultaneously for all
tested outputs, abstain where the bound does not beat 1/2, and return the base certificates of the
noise in the linear form that `lrsjax.collective` consumes. The noise (`lrsjax.noise.Noise`) and
the estimator (`lrsjax.estimators.Estimator`) are plug-ins; this module branches on neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from lrsjax import _checks, _keys, _progress, estimators, sampling
from lrsjax.base_certs import BaseCertificates
from lrsjax.noise import Noise, check_noise

CORRECTIONS = estimators.CORRECTIONS
CERTIFICATES = ("neyman_pearson", "variance")
_ESTIMATES = {"neyman_pearson": "probability", "variance": "moments"}


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
    smoothing: Noise,
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
    allows (`docs/math.md`, "Base certificates"): Gaussian smoothing, for every `x'` with
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
    variance certificate uses one DKW band at level `alpha / N_tested` for the mean and the second
    moment (`lrsjax.estimators`).

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
        (`sampling.sampling.check_batch_memory`) exceeds half of the available memory is refused
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
      devices: devices to spread the samples over (default `jax.local_devices()`: this
        process's own, also in a multi-process run).
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
    noise = check_noise(smoothing)
    n0, n = _checks.positive_int("n0", n0), _checks.positive_int("n", n)
    batch_size = _checks.positive_int("batch_size", batch_size)
    alpha = _checks.probability("alpha", alpha)
    if not callable(apply_fn):
        _checks.fail("apply_fn", apply_fn, "must be callable", "Pass `apply_fn(params, x)`.")
    estimator, certify_outputs = _plan(noise, certificate, correction, tau, num_bins, max_flips)
    tested = _tested_mask(outputs, noise.output_shape)
    if not tested.any():
        _checks.fail("outputs", outputs, "must select at least one output", "")
    prepared = noise.prepare(
        noise, x, num_features=num_features, addition_capacity=addition_capacity
    )
    num_classes = sampling.check_logits(
        apply_fn, params, prepared.example, noise.output_shape, None
    )
    # A batch larger than the samples asked for only costs memory. Lowering it changes no count:
    # a single batch either way, and sample i of batch 0 is drawn from its own counter (with JAX's
    # default jax_threefry_partitionable=True, random bits and key splits are indexed by position,
    # not by the batch's size; tests/test_faults.py checks it).
    batch_size = min(batch_size, max(n0, n))
    select = estimators.majority_vote()
    sampling.check_batch_memory(
        batch_size, bytes_per_element=prepared.bytes_per_element,
        estimators=(select, estimator), num_classes=num_classes,
        num_outputs=noise.num_outputs, input_size=prepared.input_size,
        devices=tuple(jax.local_devices()) if devices is None else tuple(devices),
    )  # fmt: skip
    num_tested = int(tested.sum())
    _check_certifiable(estimator, n, alpha, num_tested)
    active = np.zeros(noise.num_groups, bool)
    active[np.unique(noise.group.reshape(-1)[tested])] = True  # groups without tested outputs idle
    stage = _Stage(
        apply_fn, noise, prepared, params, active, batch_size, num_classes, devices, per_example,
        progress, dict(compile_s=0.0, select_s=0.0, estimate_s=0.0, bound_s=0.0, samples=0),
    )  # fmt: skip
    key_select, key_estimate = jax.random.split(key)

    # 1) selection: majority vote on n0 samples per group
    votes = stage.run(select, key_select, n0, "select")
    prediction = np.argmax(votes.reshape(noise.num_outputs, num_classes), axis=1).astype(np.int64)
    # 2) estimation on n fresh samples, 3) bounds on the host, 4) the noise's certificate
    accumulated = stage.run(estimator, key_estimate, n, "estimate", target=prediction)
    start = time.perf_counter()
    estimate = estimator.bound(estimator.config, accumulated, prediction, n, alpha, tested)
    cert = certify_outputs(noise, prediction, estimate, tested, max_flips=max_flips)
    stage.clock["bound_s"] = time.perf_counter() - start
    if timings is not None:
        timings.update(stage.clock)
    nan = np.full(noise.num_outputs, np.nan)
    p_lower = getattr(estimate, "p_lower", None)
    mu_lower = getattr(estimate, "mu_lower", None)
    zeta_upper = getattr(estimate, "zeta_upper", None)
    return Certificate(
        prediction=prediction,
        abstain=np.asarray(cert.abstain | ~tested),
        tested=tested,
        p_lower=None if p_lower is None else np.where(tested, p_lower, nan),
        mu_lower=None if mu_lower is None else np.where(tested, mu_lower, nan),
        zeta_upper=None if zeta_upper is None else np.where(tested, zeta_upper, nan),
        radius=cert.radius,
        binary_radius=cert.binary_radius,
        counts=getattr(estimate, "counts", None),
        histogram=getattr(estimate, "histogram", None),
        select_votes=np.asarray(votes, np.int64).reshape(noise.num_outputs, num_classes),
        base_certs=cert.base_certs,
        sparse_grid=cert.sparse_grid,
        output_shape=noise.output_shape,
        method=f"{cert.method}:{estimate.method}",
        alpha=alpha,
        num_samples=(n0, n),
    )


def _plan(noise: Noise, certificate, correction, tau, num_bins, max_flips):
    """The estimator and the noise's certificate function for the options (checked before any
    sampling, including the certificate's own conditions)."""
    if certificate is None:
        kind = noise.default_estimate
    else:
        _checks.one_of("certificate", certificate, CERTIFICATES)
        kind = _ESTIMATES[certificate]
    _checks.one_of("correction", correction, CORRECTIONS)
    if kind == "moments":
        if correction != "bonferroni":
            _checks.fail(
                "correction",
                correction,
                "must be 'bonferroni' for the variance certificate (DKW at alpha / N_tested)",
                "Drop `correction`.",
            )
        if tau is not None:
            _checks.fail("tau", tau, "is only used with correction='holm'", "Drop `tau`.")
        estimator = estimators.dkw_moments(num_bins)
    else:
        estimator = estimators.clopper_pearson(correction, tau)
        estimators.check_num_bins(num_bins)
    if kind not in noise.certificates:
        _checks.fail(
            "certificate",
            certificate,
            f"is not available for {noise.kind} noise (it certifies from "
            f"{sorted(noise.certificates)} estimates)",
            "Use certificate=None for the noise's default.",
        )
    certify_outputs = noise.certificates[kind]
    check = getattr(certify_outputs, "check", None)
    if check is not None:
        check(noise, max_flips=max_flips)
    return estimator, certify_outputs


class _Stage(NamedTuple):
    """Runs the sampling stages of one `certify` call (shared settings and clock)."""

    apply_fn: Callable
    noise: Noise
    prepared: object
    params: object
    active: np.ndarray
    batch_size: int
    num_classes: int
    devices: object
    per_example: bool
    progress: bool
    clock: dict

    def run(self, estimator, key, num_samples: int, name: str, target=None) -> np.ndarray:
        """`num_samples` per active group into `estimator`'s accumulator (host int64 array).

        With a progress bar, the batches are counted in consecutive ranges (the first range small,
        so that compilation shows apart from sampling) whose counts are added on the device: the
        result is identical to one call. Compile time goes to `clock["compile_s"]`, the rest of
        the stage to `clock[name + "_s"]`. Raises on overflow and on non-finite logits.
        """
        run = sampling.kernel(
            self.apply_fn, self.noise, self.prepared, estimator, batch_size=self.batch_size,
            num_classes=self.num_classes, devices=self.devices, per_example=self.per_example,
        )  # fmt: skip
        if target is not None:
            target = target.reshape(self.noise.output_shape)
        num_batches = -(-num_samples // self.batch_size)
        num_active = int(np.count_nonzero(self.active))
        samples = num_samples * num_active
        bar = _progress.bar(
            samples, desc=f"certify: {name}", unit="samples", enabled=self.progress, leave=False
        )
        ranges = [(0, num_batches)]
        if not bar.disable:
            devices = len(run.static.devices)
            first = min(devices, num_batches)
            step = max(devices, -(-(num_batches - first) // 20))
            ranges = [(0, first)] + [
                (lo, min(lo + step, num_batches)) for lo in range(first, num_batches, step)
            ]
        start = time.perf_counter()
        total = None
        with bar, sampling.compile_clock() as compile_time:
            for lo, hi in ranges:
                part = run.count(
                    key, self.params, num_samples, target=target, active=self.active,
                    batches=(lo, hi),
                )  # fmt: skip
                total = part if total is None else sampling.add_counts(total, part)
                if not bar.disable:
                    total.overflow.block_until_ready()
                    done = min(hi * self.batch_size, num_samples) * num_active
                    if lo == 0:
                        _progress.compiled(bar, done)
                    else:
                        bar.update(done - bar.n)
            jax.block_until_ready(total)
        self.clock["compile_s"] += compile_time.seconds
        self.clock[f"{name}_s"] = max(time.perf_counter() - start - compile_time.seconds, 0.0)
        self.clock["samples"] += samples
        if bool(total.overflow):
            raise RuntimeError(self.prepared.overflow_message or "A sample overflowed.")
        sampling.raise_on_nonfinite(total)
        return np.asarray(total.counts, np.int64)


def _check_certifiable(estimator, n: int, alpha: float, num_tested: int) -> None:
    """Refuses (before sampling) settings under which no output can be certified at all.

    Even if all `n` estimation samples of an output agree, its bound must beat 1/2: a
    Clopper-Pearson lower bound at level `a` is then `a**(1 / n)`, so Bonferroni over `N` tested
    outputs needs `(alpha / N)**(1 / n) > 1/2`, i.e. `n > log2(N / alpha)`. The DKW mean bound and
    Holm's test have their own ceilings. The error names the smallest `n` that could certify.
    """

    def possible(m: int) -> bool:
        return estimator.certifiable(estimator.config, m, alpha, num_tested)

    if possible(n):
        return
    high = max(2 * n, 2)
    while not possible(high):
        high *= 2
    low = n  # impossible at low, possible at high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if possible(mid) else (mid, high)
    _checks.fail(
        "n",
        n,
        f"is too small to certify anything with alpha={alpha} over {num_tested} tested outputs: "
        f"even if all {n} samples agreed, the bound of {estimator.name} could not exceed 1/2, so "
        "every output would abstain",
        f"Pass n >= {high} (or a larger alpha, or fewer tested outputs via `outputs`).",
    )


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
