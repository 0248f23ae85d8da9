"""Exact Neyman-Pearson certificate of sparse (binary flip) smoothing (docs/math.md §5).

Bojchevski, Gasteiger, Günnemann, "Efficient Robustness Certificates for Discrete Data: Sparsity-
Aware Randomized Smoothing for Graphs, Images and More" (ICML 2020), isotropic case: every bit of
the input flips independently, 0 -> 1 with probability `theta_plus` (tp) and 1 -> 0 with
`theta_minus` (tm).

Derivation. Let x' add `r_a` bits to x (0 -> 1) and delete `r_d` bits (1 -> 0). Every other bit has
the same noise distribution under x and x', so the likelihood ratio of a noisy sample z depends only
on the r_a + r_d changed bits, and there only on i = #(added bits with z = 1) and j = #(deleted bits
with z = 1). The region (i, j) has

    clean mass      C(r_a, i) tp^i (1 - tp)^(r_a - i)  *  C(r_d, j) (1 - tm)^j tm^(r_d - j)
    perturbed mass  C(r_a, i) (1 - tm)^i tm^(r_a - i)  *  C(r_d, j) tp^j (1 - tp)^(r_d - j)

and a constant ratio perturbed / clean. By the Neyman-Pearson lemma the smallest perturbed
probability of the top class, over all classifiers whose clean probability is at least `p_lower`,
fills `p_lower` of clean mass into the regions of smallest ratio first (the last one partially).
As a function of `p_lower` this worst-case mass is piecewise linear and increasing, so many
outputs are handled at once with a search over the cumulative clean mass. Masses are built in log
space (log binomial coefficients via gammaln), so radii of hundreds of flips neither overflow nor
underflow.

Conservative rounding. The worst-case mass is computed through its complement,
`1 - W(1 - p_lower)` with `W(s)` the largest perturbed mass of a set of clean mass `s`, filled
from the largest ratio down. For any `t >= 0`, LP duality gives
`W(s) <= t s + sum_i clean_i max(0, ratio_i - t)`; with `t` the ratio of the region where the
filling stops this is the computed `W`, and each of its float64 errors is a rounding error of a
mass, a tail sum or that ratio times a tail mass. Those tail masses are at most 1 (the regions
above the stopping one have ratios >= t, so `t` times their clean mass is at most their perturbed
mass), so the error of `W` is at most `MASS_ERROR * eps * (L + 4 A)` (L regions, A the
magnitude of the log masses: log masses are accurate to a few `eps * A`, sums of L terms to
`L eps`), whatever `p_lower`. The returned mass is the computed one minus that bound, so it
never exceeds the exact worst-case mass of the float64 inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import special

from lrsjax import _checks, _memory

_EPS = np.finfo(np.float64).eps
# The rounding-error bound of the worst-case mass is MASS_ERROR * eps * (L + 4 A) (module
# docstring); generous against the few eps * A of the log masses and the L eps of the sums.
MASS_ERROR = 64.0
# Largest likelihood-ratio table, (r_add + 1) * (r_del + 1) regions (radii up to 4095 x 4095):
# far beyond any certified radius of practical flip probabilities, and about 1.5 GiB of tables.
MAX_REGIONS = 2**24
# float64/int64 arrays of one entry per region alive at once while a table is built and sorted.
_BYTES_PER_REGION = 96


class _Regions(NamedTuple):
    """Likelihood-ratio regions of one (tp, tm, r_a, r_d), sorted by ratio ascending.

    Fields (float64 [L], L = (r_a + 1) (r_d + 1)):
      ratio: perturbed / clean mass of each region (inf where the clean mass underflows).
      tail_clean, tail_perturbed: the masses of the regions from the last one down, cumulated
        (entry j: the j + 1 regions of largest ratio).
    Plus `error`: the bound on the absolute rounding error of the worst-case mass (module
    docstring), subtracted so that the result is conservative.
    """

    ratio: np.ndarray
    tail_clean: np.ndarray
    tail_perturbed: np.ndarray
    error: float


def sparse_smoothing_worst_mass(p_lower, theta_plus, theta_minus, r_add, r_del) -> np.ndarray:
    """Worst-case perturbed probability of the top class under sparse smoothing (docs/math.md §5).

    Guarantee: if the top class has probability >= `p_lower` under the noisy clean input, it has
    probability >= the returned value under the noisy x', for every x' that adds exactly `r_add`
    and deletes exactly `r_del` bits. The exact worst case (attained by a worst-case classifier)
    is computed in float64 and lowered by a bound on its rounding error (module docstring), so
    the value never exceeds the exact one; it is below it by at most about
    `2 * MASS_ERROR * eps * (L + 4 A)` (below 1e-10 up to about 100 flips).

    Args:
      p_lower: float in [0, 1), any shape: lower bounds on the clean top-class probability.
      theta_plus, theta_minus: float in (0, 1): flip probabilities 0 -> 1 and 1 -> 0.
      r_add, r_del: int >= 0: numbers of added and deleted bits, with
        `(r_add + 1) * (r_del + 1) <= 2**24` (the size of the likelihood-ratio table; larger
        radii are refused with a ValueError, as are tables that do not fit in memory).
    Returns:
      float64 worst-case masses in [0, 1], shape of `p_lower`.
    """
    p = _p_lower(p_lower)
    tp, tm = _flip_probabilities(theta_plus, theta_minus)
    r_add = _checks.positive_int("r_add", r_add, minimum=0)
    r_del = _checks.positive_int("r_del", r_del, minimum=0)
    check_table_size(("r_add", "r_del"), r_add, r_del)
    return _worst_mass(p, _regions(tp, tm, r_add, r_del))[()]


def sparse_smoothing_grid(p_lower, theta_plus, theta_minus, max_add, max_del) -> np.ndarray:
    """Certified (additions, deletions) radii of sparse smoothing for many outputs.

    See docs/math.md §5.

    Entry `[..., r_a, r_d]` is True iff the prediction is certified for every x' with at most `r_a`
    added and at most `r_d` deleted bits: the worst-case perturbed mass
    (`sparse_smoothing_worst_mass`, never above the exact value) exceeds 1/2 for every
    (r_a', r_d') <= (r_a, r_d), so the decision is conservative against floating point.

    Args:
      p_lower: float in [0, 1), any shape: lower bounds on the top-class probability (outputs with
        p_lower <= 1/2 are never certified).
      theta_plus, theta_minus: float in (0, 1): flip probabilities 0 -> 1 and 1 -> 0.
      max_add, max_del: int >= 0: the largest radii of the grid, with
        `(max_add + 1) * (max_del + 1) <= 2**24` (refused with a ValueError otherwise, or when
        the tables and the grid do not fit in memory).
    Returns:
      bool [..., max_add + 1, max_del + 1], leading shape of `p_lower`.
    """
    p = _p_lower(p_lower)
    tp, tm = _flip_probabilities(theta_plus, theta_minus)
    max_add = _checks.positive_int("max_add", max_add, minimum=0)
    max_del = _checks.positive_int("max_del", max_del, minimum=0)
    check_table_size(("max_add", "max_del"), max_add, max_del, bytes_per_cell=2 * max(p.size, 1))
    distinct, inverse = np.unique(p.ravel(), return_inverse=True)
    certified = np.zeros((max_add + 1, max_del + 1, distinct.size), dtype=bool)
    for r_a in range(max_add + 1):
        for r_d in range(max_del + 1):
            alive = np.ones(distinct.size, dtype=bool)
            if r_a > 0:
                alive &= certified[r_a - 1, r_d]
            if r_d > 0:
                alive &= certified[r_a, r_d - 1]
            if not alive.any():
                continue
            regions = _regions(tp, tm, r_a, r_d)
            certified[r_a, r_d, alive] = _worst_mass(distinct[alive], regions) > 0.5
    out = np.moveaxis(certified[:, :, inverse], 2, 0)
    return out.reshape(p.shape + (max_add + 1, max_del + 1))


def check_table_size(names: tuple, r_add: int, r_del: int, bytes_per_cell: int = 0) -> None:
    """Refuses radii whose likelihood-ratio table cannot be built (ValueError, before allocating).

    The table of (r_add, r_del) has `(r_add + 1) * (r_del + 1)` regions; it must hold at most
    `MAX_REGIONS`, and its float64 arrays (plus `bytes_per_cell` per cell of a result grid) must
    fit in half of the available host memory. The error names the larger radius (`names` are the
    caller's argument names for r_add and r_del) and says what to pass instead.
    """
    regions = (r_add + 1) * (r_del + 1)
    name, value = (names[0], r_add) if r_add >= r_del else (names[1], r_del)
    pair = f"(`{names[0]}` = {r_add}, `{names[1]}` = {r_del})"
    fix = (
        f"Pass smaller radii: ({names[0]} + 1) * ({names[1]} + 1) <= 2**24, e.g. both <= 4095. "
        "Sparse smoothing certifies far fewer flips for any practical flip probabilities, so "
        "larger radii only cost memory."
    )
    if regions > MAX_REGIONS:
        _checks.fail(
            name,
            value,
            f"is too large: {pair} need a table of {regions} likelihood-ratio regions (about "
            f"{_memory.format_bytes(regions * _BYTES_PER_REGION)} of float64 arrays), more than "
            f"the limit 2**24 = {MAX_REGIONS}",
            fix,
        )
    need = regions * (_BYTES_PER_REGION + bytes_per_cell)
    what = f"float64 tables of {regions} likelihood-ratio regions for {pair}"
    _memory.check_fits(name, value, need, _memory.host_available(), what, fix)


def _regions(tp: float, tm: float, r_add: int, r_del: int) -> _Regions:
    log_tp, log_not_tp = np.log(tp), np.log1p(-tp)
    log_tm, log_not_tm = np.log(tm), np.log1p(-tm)
    i = np.arange(r_add + 1, dtype=np.float64)[:, None]
    j = np.arange(r_del + 1, dtype=np.float64)[None, :]
    log_binom = _log_binomial(r_add, i) + _log_binomial(r_del, j)
    log_clean = log_binom + i * log_tp + (r_add - i) * log_not_tp
    log_clean = log_clean + j * log_not_tm + (r_del - j) * log_tm
    log_perturbed = log_binom + i * log_not_tm + (r_add - i) * log_tm
    log_perturbed = log_perturbed + j * log_tp + (r_del - j) * log_not_tp
    # The ratio directly, without the binomial coefficients that cancel.
    log_ratio = (
        i * (log_not_tm - log_tp)
        + (r_add - i) * (log_tm - log_not_tp)
        + j * (log_tp - log_not_tm)
        + (r_del - j) * (log_not_tp - log_tm)
    )
    order = np.argsort(log_ratio.ravel(), kind="stable")
    clean = np.exp(log_clean.ravel()[order])
    perturbed = np.exp(log_perturbed.ravel()[order])
    with np.errstate(over="ignore"):
        ratio = np.exp(log_ratio.ravel()[order])
    magnitude = float(
        special.gammaln(r_add + 1.0)
        + special.gammaln(r_del + 1.0)
        + (r_add + r_del) * max(abs(log_tp), abs(log_not_tp), abs(log_tm), abs(log_not_tm))
        + 1.0
    )
    return _Regions(
        ratio=ratio,
        tail_clean=np.cumsum(clean[::-1]),
        tail_perturbed=np.cumsum(perturbed[::-1]),
        error=MASS_ERROR * _EPS * (clean.size + 4.0 * magnitude),
    )


def _worst_mass(p: np.ndarray, regions: _Regions) -> np.ndarray:
    """Conservative perturbed mass of the cheapest (smallest-ratio-first) set with clean mass p:
    `1 - W(1 - p) - error` (module docstring), clipped to [0, 1]."""
    s = 1.0 - p  # exact for p >= 1/2, where certificates are decided
    size = regions.ratio.size
    j = np.searchsorted(regions.tail_clean, s, side="left")  # first tail with clean mass >= s
    inside = j < size  # else the clean masses summed below s by rounding: W = 1, no mass
    j = np.minimum(j, size - 1)
    after_clean = np.where(j > 0, regions.tail_clean[np.maximum(j - 1, 0)], 0.0)
    after_perturbed = np.where(j > 0, regions.tail_perturbed[np.maximum(j - 1, 0)], 0.0)
    ratio = regions.ratio[size - 1 - j]
    with np.errstate(over="ignore", invalid="ignore"):
        top = after_perturbed + np.maximum(s - after_clean, 0.0) * ratio
    top = np.where(inside & np.isfinite(top), top, 1.0)
    return np.clip(1.0 - top - regions.error, 0.0, 1.0)


def _log_binomial(r: int, i: np.ndarray) -> np.ndarray:
    return special.gammaln(r + 1.0) - special.gammaln(i + 1.0) - special.gammaln(r - i + 1.0)


def _p_lower(p_lower) -> np.ndarray:
    arr = _checks.as_float_array("p_lower", p_lower)
    if np.any((arr < 0) | (arr >= 1)):
        _checks.fail(
            "p_lower",
            arr,
            "must lie in [0, 1)",
            "Pass Clopper-Pearson lower bounds; a finite sample never proves probability 1.",
        )
    return arr


def _flip_probabilities(theta_plus, theta_minus) -> tuple[float, float]:
    tp = _checks.probability("theta_plus", theta_plus)
    tm = _checks.probability("theta_minus", theta_minus)
    return tp, tm
