"""Order-statistic bounds on quantiles, and confidence bounds on bounded means (host, float64).

Percentile smoothing (Chiang et al., 2020) certifies a quantile of a real output through two
shifted quantile levels; the data give one-sided bounds on those quantiles as order statistics of
i.i.d. samples, chosen with exact binomial tails (`docs/math.md §13`). Indices are 1-based
(`X_(1) <= ... <= X_(n)`); index 0 means that no order statistic qualifies, and the bound is then
`-inf` (lower) or `+inf` (upper), never the smallest or largest sample.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats as scipy_stats

from lrsjax import _checks

# Relative slack on the tail levels and absolute slack on the quantile levels: the last bits of
# floating-point error in a binomial tail or in Phi can only move an index toward the safe side.
_LEVEL_SLACK = 1e-10
_LEVEL_NUDGE = 1e-12


class PercentileBounds(NamedTuple):
    """Simultaneous bounds on the smoothed percentile of every output coordinate. `D` coordinates.

    Fields:
      estimate: float64 [D], the empirical `p`-quantile of the samples, `X_(ceil(n p))` (an
        estimate only, not a bound).
      lower: float64 [D], `X_(k_lower)`, or `-inf` where `k_lower == 0`.
      upper: float64 [D], `X_(k_upper)`, or `+inf` where `k_upper == 0`.
      k_lower: int, 1-based index of the lower order statistic (0: none qualifies).
      k_upper: int, 1-based index of the upper order statistic (0: none qualifies).
    """

    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    k_lower: int
    k_upper: int


def shifted_levels(p, eps, sigma) -> tuple[float, float]:
    """`(p_low, p_up) = (Phi(Phi^{-1}(p) - eps / sigma), Phi(Phi^{-1}(p) + eps / sigma))`.

    The quantile levels at the clean input that bound the `p`-quantile of every input within l2
    distance `eps` under Gaussian noise of std `sigma` (`docs/math.md §13`).

    Args:
      p: float in (0, 1), the certified percentile (1/2: the median).
      eps: float >= 0, the l2 radius.
      sigma: float > 0, the noise std.
    Returns:
      (p_low, p_up), floats in [0, 1].
    """
    p = _checks.probability("p", p)
    eps = _nonnegative("eps", eps)
    sigma = _positive("sigma", sigma)
    z = scipy_stats.norm.ppf(p)
    return float(scipy_stats.norm.cdf(z - eps / sigma)), float(
        scipy_stats.norm.cdf(z + eps / sigma)
    )


def upper_order_index(q, n, level) -> int:
    """The smallest `k` with `P(Binomial(n, q) >= k) <= level`, 1-based; 0 if no `k <= n` has it.

    Guarantee: for i.i.d. samples with `P(X < t) <= q`, `P(X_(k) < t) <= P(Binomial(n, q) >= k)
    <= level`; so `X_(k)` upper-bounds every value `t` below which at most mass `q` lies (the
    `q`-quantile) with probability `>= 1 - level` (`docs/math.md §13`).

    Args:
      q: float in [0, 1], the quantile level.
      n: int >= 1, the number of samples.
      level: float in (0, 1), the error probability of this one bound.
    Returns:
      int in [0, n].
    """
    q, n, level = _index_args(q, n, level)
    q = min(1.0, q + _LEVEL_NUDGE)  # a larger level only raises the index
    target = level * (1.0 - _LEVEL_SLACK)

    def tail(k):  # P(Bin(n, q) >= k)
        return float(scipy_stats.binom.sf(k - 1, n, q))

    k = int(scipy_stats.binom.ppf(1.0 - level, n, q)) + 1
    k = min(max(k, 1), n + 1)
    while k > 1 and tail(k - 1) <= target:
        k -= 1
    while k <= n and tail(k) > target:
        k += 1
    return 0 if k > n else k


def lower_order_index(q, n, level) -> int:
    """The largest `k` with `P(Binomial(n, q) <= k - 1) <= level`, 1-based; 0 if no `k >= 1`.

    Guarantee: for i.i.d. samples with `P(X <= t) >= q`, `P(X_(k) > t) <= P(Binomial(n, q) <= k -
    1) <= level`; so `X_(k)` lower-bounds every value `t` up to which at least mass `q` lies with
    probability `>= 1 - level` (`docs/math.md §13`).

    Args and returns as in `upper_order_index`.
    """
    q, n, level = _index_args(q, n, level)
    q = max(0.0, q - _LEVEL_NUDGE)  # a smaller level only lowers the index
    target = level * (1.0 - _LEVEL_SLACK)

    def head(k):  # P(Bin(n, q) <= k - 1)
        return float(scipy_stats.binom.cdf(k - 1, n, q))

    k = int(scipy_stats.binom.ppf(level, n, q))
    k = min(max(k, 0), n)
    while k < n and head(k + 1) <= target:
        k += 1
    while k >= 1 and head(k) > target:
        k -= 1
    return k


def dkw_upper_index(q, n, level) -> int:
    """`ceil(n (q + sqrt(ln(1 / level) / (2 n))))`, the order statistic of the one-sided DKW band
    (Massart's constant) used by center smoothing's reference code; 0 if it exceeds `n`.

    Valid, but never smaller than `upper_order_index(q, n, level)` in practice (the binomial tail is
    exact); kept for comparison (`docs/math.md §14`).
    """
    q, n, level = _index_args(q, n, level)
    shifted = q + math.sqrt(math.log(1.0 / level) / (2.0 * n))
    k = math.ceil(n * shifted * (1.0 + 1e-12))  # rounding can only raise the index
    return 0 if shifted > 1.0 or k > n else max(k, 1)


def order_statistic(sorted_samples: np.ndarray, k: int, side: str) -> np.ndarray:
    """`X_(k)` along axis 0 of `sorted_samples [n, ...]` (1-based `k`); `-inf` (side "lower") or
    `+inf` (side "upper") where `k == 0`."""
    if k == 0:
        fill = -np.inf if side == "lower" else np.inf
        return np.full(sorted_samples.shape[1:], fill, np.float64)
    return np.asarray(sorted_samples[k - 1], np.float64)


def percentile_bounds(samples, p, eps, sigma, alpha) -> PercentileBounds:
    """Bounds on the smoothed `p`-quantile of every coordinate at every input within `eps`.

    Guarantee (Chiang et al., 2020, Theorem 1; `docs/math.md §13`): for `samples [n, D]` of
    `f(x + G)`, `G ~ N(0, sigma^2 I)`, i.i.d., with probability at least `1 - alpha` jointly for all
    `D` coordinates: for every `||delta||_2 < eps` the smoothed lower and upper `p`-quantiles of
    `f(x + delta + G)` lie in `[lower, upper]`. Bonferroni over the `2 D` one-sided bounds (level
    `alpha / (2 D)` each).

    Args:
      samples: float [n, D] (or [n] for one coordinate): i.i.d. model outputs under noise.
      p: float in (0, 1), the percentile (1/2: median smoothing).
      eps: float >= 0, the l2 radius.
      sigma: float > 0, the Gaussian noise std the samples were drawn with.
      alpha: float in (0, 1), the joint error probability.
    Returns:
      A `PercentileBounds`.
    """
    arr = _checks.as_float_array("samples", samples, finite=True)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        _checks.fail("samples", arr, "must be [n, D] with n, D >= 1", "Pass one row per sample.")
    alpha = _checks.probability("alpha", alpha)
    n, num = arr.shape
    p_low, p_up = shifted_levels(p, eps, sigma)
    level = alpha / (2 * num)
    k_lower = lower_order_index(p_low, n, level)
    k_upper = upper_order_index(p_up, n, level)
    ordered = np.sort(arr, axis=0)
    middle = max(1, math.ceil(n * float(p)))
    return PercentileBounds(
        estimate=np.asarray(ordered[middle - 1], np.float64),
        lower=order_statistic(ordered, k_lower, "lower"),
        upper=order_statistic(ordered, k_upper, "upper"),
        k_lower=k_lower,
        k_upper=k_upper,
    )


def expectation_range(mean, low, high, sigma, eps) -> tuple[np.ndarray, np.ndarray]:
    """The range of the smoothed expectation within l2 distance `eps`, from its exact value.

    For `f` with values in `[low, high]` and `g(x) = E f(x + G)`, `G ~ N(0, sigma^2 I)`, `eta(x) =
    sigma Phi^{-1}((g(x) - low) / (high - low))` is 1-Lipschitz (Salman et al., 2019, Lemma 2), so
    for `||delta||_2 <= eps`: `low + (high - low) Phi((eta - eps) / sigma) <= g(x + delta) <= low +
    (high - low) Phi((eta + eps) / sigma)` (`docs/math.md §13`). Both ends increase with `g(x)`.

    Args:
      mean: float [...] in [low, high], the smoothed expectation `g(x)` (exact, or a bound on the
        side that keeps the result sound: `expectation_bounds` does this).
      low, high: floats, `low < high`, the range of `f`.
      sigma: float > 0; eps: float >= 0.
    Returns:
      (lower, upper), float64 of the shape of `mean`.
    """
    low, high = _range(low, high)
    sigma = _positive("sigma", sigma)
    eps = _nonnegative("eps", eps)
    g = _checks.as_float_array("mean", mean)
    if np.any((g < low) | (g > high)):
        _checks.fail("mean", g, f"must lie in [low, high] = [{low}, {high}]", "Clip it first.")
    z = scipy_stats.norm.ppf((g - low) / (high - low))  # -inf at low, +inf at high
    width = high - low
    lower = low + width * scipy_stats.norm.cdf(z - eps / sigma)
    upper = low + width * scipy_stats.norm.cdf(z + eps / sigma)
    return np.asarray(lower, np.float64), np.asarray(upper, np.float64)


def expectation_bounds(mean, n, low, high, sigma, eps, alpha) -> tuple[np.ndarray, np.ndarray]:
    """Certified range of the smoothed expectation from an empirical mean (Hoeffding).

    Guarantee: for the mean `mean` of `n` i.i.d. samples of `f(x + G)` with values in `[low,
    high]`, with probability at least `1 - alpha` (jointly for all entries when `mean` has several:
    Bonferroni over `2 * mean.size` one-sided bounds), `g(x + delta)` lies in `[lower, upper]` for
    every `||delta||_2 <= eps`. Hoeffding's bounds `mean -/+ (high - low) sqrt(ln(1 / a) / (2 n))`
    at `a = alpha / (2 * mean.size)`, clipped to `[low, high]`, are plugged in on the safe sides of
    `expectation_range` (the lower confidence bound into the lower end; `docs/math.md §13`).

    Args:
      mean: float [...] in [low, high]: empirical means.
      n: int >= 1, samples behind each mean.
      low, high: floats, `low < high`.
      sigma: float > 0; eps: float >= 0; alpha: float in (0, 1).
    Returns:
      (lower, upper), float64 of the shape of `mean`.
    """
    low, high = _range(low, high)
    n = _checks.positive_int("n", n)
    alpha = _checks.probability("alpha", alpha)
    g = _checks.as_float_array("mean", mean)
    if np.any((g < low) | (g > high)):
        _checks.fail("mean", g, f"must lie in [low, high] = [{low}, {high}]", "")
    level = alpha / (2 * max(g.size, 1))
    slack = (high - low) * math.sqrt(math.log(1.0 / level) / (2.0 * n))
    g_low = np.clip(g - slack, low, high)
    g_up = np.clip(g + slack, low, high)
    lower, _ = expectation_range(g_low, low, high, sigma, eps)
    _, upper = expectation_range(g_up, low, high, sigma, eps)
    return lower, upper


def _index_args(q, n, level):
    if isinstance(q, bool) or not isinstance(q, int | float | np.floating | np.integer):
        _checks.fail("q", q, "must be a real number in [0, 1]", "")
    q = float(q)
    if not 0.0 <= q <= 1.0:
        _checks.fail("q", q, "must lie in [0, 1]", "")
    return q, _checks.positive_int("n", n), _checks.probability("level", level)


def _range(low, high) -> tuple[float, float]:
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
            _checks.fail(name, value, "must be a real number", "")
        if not math.isfinite(value):
            _checks.fail(name, value, "must be finite", "")
    if not low < high:
        _checks.fail("high", high, f"must be > low = {low}", "Pass the range of the outputs.")
    return float(low), float(high)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        _checks.fail(name, value, "must be a real number > 0", "")
    if not (math.isfinite(value) and value > 0):
        _checks.fail(name, value, "must be finite and > 0", "")
    return float(value)


def _nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        _checks.fail(name, value, "must be a real number >= 0", "")
    if not (math.isfinite(value) and value >= 0):
        _checks.fail(name, value, "must be finite and >= 0", "")
    return float(value)
