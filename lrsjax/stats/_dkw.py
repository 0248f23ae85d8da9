"""Distribution-free bounds on the mean and second moment of a score in [0, 1] (docs/math.md §4).

All bounds come from one Dvoretzky-Kiefer-Wolfowitz band (Massart's constant): with probability
>= 1 - level, the true survival function S(t) = P(X > t) satisfies, for every t at once,

    max(0, S_n(t) - eps) <= S(t) <= min(1, S_n(t) + eps),   eps = sqrt(log(2 / level) / (2 n)),

with S_n the empirical survival function of n i.i.d. samples. Every bound below is a deterministic
function of that band, so `mean_bounds` and `second_moment_upper` computed from the same samples at
the same level hold simultaneously, with probability >= 1 - level in total (no extra correction).
Across the outputs of one input, pass a Bonferroni-corrected level (`alpha / num_outputs`).

The integrals are evaluated exactly. The unit interval is cut into consecutive intervals; on each
one the band only needs brackets `lo <= n * S_n(t) <= hi` (exact for raw samples, where S_n is a
step function; bin-wise for histograms and thinned order statistics, where the position of a sample
inside its bin is unknown). For any function g on [0, 1] (layer-cake / integration by parts),

    E[g(X)] = g(0) + integral_0^1 g'(t) S(t) dt,

so an upper bound weights every increment of g by the upper band where g increases and by the lower
band where it decreases (every interval gets a weight; published research code left some unset).
"""

from __future__ import annotations

import numpy as np

from lrsjax import _checks
from lrsjax.stats import _inputs


def dkw_epsilon(n, level) -> np.ndarray:
    """Half-width of the DKW band, `sqrt(log(2 / level) / (2 n))` (docs/math.md §4).

    Guarantee (Massart 1990): `P(sup_t |F_n(t) - F(t)| > eps) <= level` for n i.i.d. samples.

    Args:
      n: int >= 1, any shape: number of samples.
      level: float in (0, 1), broadcastable against `n`.
    Returns:
      float64 eps, the broadcast shape of `n` and `level`.
    """
    n = _checks.as_int_array("n", n)
    if np.any(n < 1):
        _checks.fail("n", n, "must be >= 1", "Pass the number of samples.")
    level = _checks.as_float_array("level", level)
    if np.any((level <= 0) | (level >= 1)):
        _checks.fail("level", level, "must lie strictly inside (0, 1)", "Pass e.g. 0.01.")
    if _inputs.broadcast_shape(n.shape, level.shape) is None:
        _checks.fail("level", level, f"must broadcast against `n` of shape {n.shape}", "")
    return _epsilon(n, level)[()]


def mean_bounds(samples, level, axis: int = 0, num_thresholds: int | None = None):
    """DKW lower and upper bounds on the mean of a score in [0, 1] (docs/math.md §4).

    `mu_lower = integral_0^1 max(0, S_n(t) - eps) dt`, `mu_upper = integral_0^1 min(1, S_n(t) + eps)
    dt`, in closed form from the sorted samples. Guarantee: with probability >= 1 - level,
    `mu_lower <= E[X] <= mu_upper` (both at once, and jointly with `second_moment_upper` at the same
    level on the same samples).

    Args:
      samples: float in [0, 1], at least 1-d: i.i.d. scores along `axis`, outputs along the others.
      level: float in (0, 1), scalar or broadcastable to the output shape (samples without `axis`).
      axis: the sample axis.
      num_thresholds: optional int >= 2: keep only B evenly spaced order statistics (ranks
        round(linspace(1, n, B)), always the smallest and largest), as a kernel that stores order
        statistics would. Conservative: between two kept order statistics the survival function is
        only bracketed, and each bound takes the worse end of the bracket. None keeps all.
    Returns:
      (mu_lower, mu_upper): float64 arrays of the output shape.
    """
    intervals, n, eps = _from_samples(samples, level, axis, num_thresholds)
    return _mean(*intervals, n, eps)


def second_moment_upper(samples, center, level, axis: int = 0, num_thresholds: int | None = None):
    """DKW upper bound on `E[(X - center)^2]` for a score X in [0, 1] (docs/math.md §4).

    Layer-cake with g(x) = (x - v)^2: `E[g(X)] = v^2 + integral_0^1 2 (t - v) S(t) dt`. The integral
    is bounded with `min(1, S_n + eps)` where t > v (g increases) and `max(0, S_n - eps)` where
    t < v (g decreases), exactly, interval by interval. Guarantee: with probability >= 1 - level the
    result is >= E[(X - v)^2] >= Var(X), for every centre v at once, so a data-dependent centre such
    as the empirical mean (the recommended choice) is allowed. The result is also capped at
    max(v^2, (1 - v)^2), the largest value of g on [0, 1].

    Args:
      samples: float in [0, 1], at least 1-d: i.i.d. scores along `axis`.
      center: finite float, scalar or broadcastable to the output shape: the centre v.
      level: float in (0, 1), scalar or broadcastable to the output shape.
      axis: the sample axis.
      num_thresholds: optional thinning to B order statistics, as in `mean_bounds` (conservative).
    Returns:
      float64 upper bounds, the output shape.
    """
    intervals, n, eps = _from_samples(samples, level, axis, num_thresholds)
    center = _center(center, n.shape)
    return _second_moment(*intervals, n, eps, center)


def mean_bounds_from_histogram(hist, bin_edges, level):
    """DKW mean bounds from a histogram of scores, for kernels keeping only histograms.

    See docs/math.md §4.

    `hist[..., b]` counts the samples in `[bin_edges[b], bin_edges[b + 1])` (the last bin closed).
    Conservative: a sample's position inside its bin is unknown, so the lower bound treats every
    sample as sitting at the lower edge of its bin and the upper bound at the upper edge (inside
    bin b the survival count is only bracketed between the counts of bins > b and of bins >= b).
    Guarantee: with probability >= 1 - level, `mu_lower <= E[X] <= mu_upper`; both equal the raw
    sample bounds when every sample lies on a bin edge.

    Args:
      hist: int >= 0, shape [..., B]: per-output counts; each output needs at least one sample.
      bin_edges: float, shape [B + 1] (or broadcastable to [..., B + 1]): strictly increasing, with
        bin_edges[0] <= 0 and bin_edges[-1] >= 1 so that every score in [0, 1] has a bin.
      level: float in (0, 1), scalar or broadcastable to hist.shape[:-1].
    Returns:
      (mu_lower, mu_upper): float64 arrays of shape hist.shape[:-1].
    """
    intervals, n, eps = _from_histogram(hist, bin_edges, level)
    return _mean(*intervals, n, eps)


def second_moment_upper_from_histogram(hist, bin_edges, center, level):
    """DKW upper bound on `E[(X - center)^2]` from a histogram of scores (docs/math.md §4).

    Same construction as `second_moment_upper`. Conservative for binned data: inside bin b, where g
    increases the survival count is taken as the count of bins >= b (samples at the upper edge),
    where it decreases as the count of bins > b (samples at the lower edge). Guarantee: with
    probability >= 1 - level the result is >= E[(X - v)^2] >= Var(X), for every v at once.
    A good centre is the histogram mean with bin midpoints,
    `(hist * mids).sum(-1) / hist.sum(-1)`.

    Args:
      hist, bin_edges: as in `mean_bounds_from_histogram`.
      center: finite float, scalar or broadcastable to hist.shape[:-1].
      level: float in (0, 1), scalar or broadcastable to hist.shape[:-1].
    Returns:
      float64 upper bounds of shape hist.shape[:-1].
    """
    intervals, n, eps = _from_histogram(hist, bin_edges, level)
    center = _center(center, n.shape)
    return _second_moment(*intervals, n, eps, center)


def _epsilon(n, level):
    return np.sqrt(np.log(2.0 / level) / (2.0 * n))


def _center(center, shape):
    center = _checks.as_float_array("center", center)
    if _inputs.broadcast_shape(center.shape, shape) != tuple(shape):
        _checks.fail(
            "center", center, f"must be a scalar or broadcastable to shape {tuple(shape)}", ""
        )
    return center


def _from_samples(samples, level, axis, num_thresholds):
    """Intervals with survival-count brackets from raw samples (optionally thinned)."""
    samples = _inputs.unit_interval_samples("samples", samples)
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        _checks.fail("axis", axis, "must be an int", "Pass the sample axis, e.g. 0.")
    if not -samples.ndim <= axis < samples.ndim:
        _checks.fail("axis", axis, f"must index one of the {samples.ndim} dimensions of `samples`")
    ordered = np.sort(np.moveaxis(samples, axis, -1), axis=-1)
    n = ordered.shape[-1]
    if n < 1:
        _checks.fail("samples", samples, "must hold at least one sample along `axis`", "")
    out_shape = ordered.shape[:-1]
    level = _inputs.levels("level", level, out_shape)
    if num_thresholds is None:
        ranks = np.arange(1, n + 1)
    else:
        num = _checks.positive_int("num_thresholds", num_thresholds, minimum=2)
        ranks = np.unique(np.round(np.linspace(1, n, min(num, n))).astype(np.int64))
    kept = ordered[..., ranks - 1]  # kept order statistics s_(k_1) <= ... <= s_(k_B)
    zeros = np.zeros(out_shape + (1,))
    lefts = np.concatenate([zeros, kept], axis=-1)
    rights = np.concatenate([kept, zeros + 1.0], axis=-1)
    # On [s_(k_j), s_(k_{j+1})) the number of samples > t lies in [n - k_{j+1} + 1, n - k_j].
    prev = np.concatenate([[0], ranks])
    hi = (n - prev).astype(np.float64)
    lo = np.concatenate([n - ranks + 1, [0]]).astype(np.float64)
    n_arr = np.full(out_shape, float(n))
    return (lefts, rights, lo, hi), n_arr, _epsilon(n_arr, level)


def _from_histogram(hist, bin_edges, level):
    """Bins with survival-count brackets from a histogram."""
    hist = _checks.as_int_array("hist", hist)
    if hist.ndim == 0 or hist.shape[-1] < 1:
        _checks.fail("hist", hist, "must have shape [..., B] with B >= 1 bins", "")
    if np.any(hist < 0):
        _checks.fail("hist", hist, "must be >= 0", "Histogram entries are sample counts.")
    num_bins = hist.shape[-1]
    edges = _checks.as_float_array("bin_edges", bin_edges)
    if edges.ndim == 0 or edges.shape[-1] != num_bins + 1:
        _checks.fail(
            "bin_edges",
            edges,
            f"must have {num_bins + 1} entries on its last axis (B + 1 for B = {num_bins} bins)",
            "",
        )
    if _inputs.broadcast_shape(edges.shape[:-1], hist.shape[:-1]) != hist.shape[:-1]:
        _checks.fail("bin_edges", edges, f"must broadcast to {hist.shape[:-1] + (num_bins + 1,)}")
    if np.any(np.diff(edges, axis=-1) <= 0):
        _checks.fail("bin_edges", edges, "must be strictly increasing", "Sort the edges.")
    if np.any(edges[..., 0] > 0) or np.any(edges[..., -1] < 1):
        _checks.fail(
            "bin_edges",
            edges,
            "must cover [0, 1] (first edge <= 0, last edge >= 1)",
            "Use e.g. np.linspace(0, 1, B + 1).",
        )
    n = hist.sum(axis=-1).astype(np.float64)
    if np.any(n < 1):
        _checks.fail("hist", hist, "must hold at least one sample per output", "")
    level = _inputs.levels("level", level, hist.shape[:-1])
    clipped = np.clip(edges, 0.0, 1.0)
    # Samples in bins >= b (hi, for bin b) and in bins > b (lo, for bin b).
    at_least = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1].astype(np.float64)
    beyond = np.concatenate([at_least[..., 1:], np.zeros(hist.shape[:-1] + (1,))], axis=-1)
    intervals = (clipped[..., :-1], clipped[..., 1:], beyond, at_least)
    return intervals, n, _epsilon(n, level)


def _mean(lefts, rights, lo, hi, n, eps):
    n_, eps_ = n[..., None], eps[..., None]
    width = rights - lefts
    lower = np.sum(width * np.maximum(0.0, lo / n_ - eps_), axis=-1)
    upper = np.sum(width * np.minimum(1.0, hi / n_ + eps_), axis=-1)
    return np.clip(lower, 0.0, 1.0)[()], np.clip(upper, 0.0, 1.0)[()]


def _second_moment(lefts, rights, lo, hi, n, eps, center):
    v = np.broadcast_to(center, n.shape)[..., None]
    n_, eps_ = n[..., None], eps[..., None]
    # Integral of g' = 2 (t - v) over the part of [l, r) where it is positive / negative.
    rising = (np.maximum(rights, v) - v) ** 2 - (np.maximum(lefts, v) - v) ** 2
    falling = (v - np.minimum(lefts, v)) ** 2 - (v - np.minimum(rights, v)) ** 2
    upper_survival = np.minimum(1.0, hi / n_ + eps_)
    lower_survival = np.maximum(0.0, lo / n_ - eps_)
    total = v[..., 0] ** 2 + np.sum(rising * upper_survival - falling * lower_survival, axis=-1)
    cap = np.maximum(v[..., 0] ** 2, (1.0 - v[..., 0]) ** 2)
    return np.minimum(np.maximum(total, 0.0), cap)[()]
