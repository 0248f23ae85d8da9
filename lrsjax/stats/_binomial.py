"""Binomial confidence bounds and multiple-testing corrections, host side, float64.

See docs/math.md §4.

Every function is vectorized over outputs. Counts are integers in [0, n], so the expensive special
functions are evaluated once per distinct (count, n) pair and then gathered: a 512 x 1024 output map
with n = 6400 needs at most 6401 inverse-beta evaluations, not 524,288.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from lrsjax import _checks
from lrsjax.stats import _inputs

METHODS = ("bonferroni", "rank_levels")

# Relative slack added to computed p-values before Holm compares them with its thresholds, so that
# the last bits of floating-point error in the p-value can only make the test reject less.
_PVALUE_SLACK = 1e-10


def clopper_pearson_lower(counts, n, level) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound on a binomial success probability (docs/math.md §4).

    Guarantee: for `c ~ Binomial(n, p)`, `P(p >= clopper_pearson_lower(c, n, level)) >= 1 - level`.
    Computed as `BetaInv(level; c, n - c + 1)`, and exactly 0 where `c == 0`.

    Args:
      counts: int, any shape: number of successes (e.g. samples voting for the selected class).
      n: int >= 1, scalar or broadcastable to `counts`: number of trials.
      level: float in (0, 1), scalar or broadcastable to `counts`: the bound's error probability.
        Correct it for multiple outputs yourself (see `corrected_levels`).
    Returns:
      float64, shape of `counts`: the lower bounds, in [0, 1).
    """
    counts, n = _inputs.counts_and_n(counts, n)
    level = _inputs.levels("level", level, counts.shape)
    return _per_distinct_level(counts, n, level, _lower)


def clopper_pearson_upper(counts, n, level) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a binomial success probability (docs/math.md §4).

    Guarantee: for `c ~ Binomial(n, p)`, `P(p <= clopper_pearson_upper(c, n, level)) >= 1 - level`.
    Computed as `BetaInv(1 - level; c + 1, n - c)`, and exactly 1 where `c == n`.

    Args and shapes as in `clopper_pearson_lower`. Returns float64 upper bounds in (0, 1].
    """
    counts, n = _inputs.counts_and_n(counts, n)
    level = _inputs.levels("level", level, counts.shape)
    return _per_distinct_level(counts, n, level, _upper)


def corrected_levels(counts, alpha, method: str = "bonferroni") -> np.ndarray:
    """Per-output levels that correct one family of outputs for multiple testing (docs/math.md §4).

    The family is every entry of `counts` (all outputs of one input).

    - "bonferroni" (default): every output gets `alpha / counts.size`. Bounds computed at these
      levels hold simultaneously for all outputs with probability >= 1 - alpha, under any
      dependence between outputs (union bound). This is the sound choice.
    - "rank_levels": what the research code calls "Holm": outputs are sorted by count ascending and
      the i-th (1-based) gets `alpha / i`, with no step-down. NO simultaneous-coverage proof is
      known for this rule; it exists only to reproduce published numbers and must not be used for
      claims. It does in fact over-claim: for 20 outputs with well separated counts the i-th
      smallest gets alpha / i almost surely, and the simulated family-wise error at alpha = 0.2 is
      about 0.5 (tests/test_stats_coverage.py). Ties: every output of a block of equal counts gets
      the smallest level of its block, `alpha / (rank of the block's last member)`, which is
      conservative (never larger than any level an ordering of the ties could give) and
      independent of the sort order.

    Args:
      counts: int >= 0, any shape: consistency counts of the outputs of one input.
      alpha: float in (0, 1): family-wise error probability.
      method: "bonferroni" or "rank_levels".
    Returns:
      float64 levels, shape of `counts`.
    """
    _checks.one_of("method", method, METHODS)
    counts = _checks.as_int_array("counts", counts)
    if counts.size and counts.min() < 0:
        _checks.fail("counts", counts, "must be >= 0", "Counts are numbers of samples.")
    alpha = _checks.probability("alpha", alpha)
    if counts.size == 0:
        return np.zeros(counts.shape)
    if method == "bonferroni":
        return np.full(counts.shape, alpha / counts.size)
    return alpha / _num_at_most(counts.ravel(), counts).astype(np.float64)


def corrected_lower_bounds(counts, n, alpha, method: str = "bonferroni") -> np.ndarray:
    """Clopper-Pearson lower bounds at the levels of `corrected_levels` (docs/math.md §4).

    With "bonferroni", all returned bounds hold at once with probability >= 1 - alpha. With
    "rank_levels" no simultaneous guarantee is known (see `corrected_levels`): reproduction only.

    Fast: since counts are integers in [0, n] and the corrected level of an output depends only on
    its count, the inverse beta function is evaluated once per distinct (count, n) and gathered.

    Args:
      counts: int, any shape, in [0, n]: consistency counts of the outputs of one input.
      n: int >= 1, scalar or broadcastable to `counts`.
      alpha: float in (0, 1): family-wise error probability.
      method: "bonferroni" or "rank_levels".
    Returns:
      float64 lower bounds, shape of `counts`.
    """
    _checks.one_of("method", method, METHODS)
    counts, n = _inputs.counts_and_n(counts, n)
    alpha = _checks.probability("alpha", alpha)
    if counts.size == 0:
        return np.zeros(counts.shape)
    if method == "bonferroni":
        level = alpha / counts.size
        return _per_distinct(counts, n, lambda c, m: _lower(c, m, level))
    rank = _num_at_most(counts.ravel(), None)
    return _per_distinct(counts, n, lambda c, m: _lower(c, m, alpha / rank(c)))


def holm_threshold_test(counts, n, tau, alpha) -> np.ndarray:
    """SegCertify's threshold test: which outputs provably have probability > tau (docs/math.md §4).

    Tests `H_i: q_i <= tau` for every output with the one-sided binomial p-value
    `P(Binomial(n, tau) >= c_i)`, then applies Holm's step-down procedure at family-wise level
    `alpha`: with the p-values sorted ascending, reject the first k hypotheses, k the first
    (0-based) position with `p_(k) > alpha / (m - k)`. Guarantee: with probability >= 1 - alpha,
    every output in the returned mask has `q_i > tau` (any dependence between outputs). Ties in the
    p-values cannot split a tie block (the threshold grows along a block), so the result does not
    depend on the sort order. Computed p-values get a relative slack of 1e-10 (rejecting less,
    never more).

    Args:
      counts: int, any shape, in [0, n]: consistency counts (samples voting for the selected class).
      n: int >= 1, scalar or broadcastable to `counts`.
      tau: float in (0, 1): the threshold (SegCertify certifies radius sigma * Phi^{-1}(tau)).
      alpha: float in (0, 1): family-wise error probability.
    Returns:
      bool, shape of `counts`: True where `q > tau` is proven; the others abstain.
    """
    counts, n = _inputs.counts_and_n(counts, n)
    tau = _checks.probability("tau", tau)
    alpha = _checks.probability("alpha", alpha)
    m = counts.size
    if m == 0:
        return np.zeros(counts.shape, dtype=bool)
    pvalues = _per_distinct(counts, n, lambda c, k: _binomial_tail(c, k, tau)).ravel()
    pvalues = pvalues * (1.0 + _PVALUE_SLACK)
    order = np.argsort(pvalues, kind="stable")
    sorted_p = pvalues[order]
    passes = sorted_p <= alpha / (m - np.arange(m))
    if passes.all():
        return np.ones(counts.shape, dtype=bool)
    first_fail = int(np.argmin(passes))
    return (pvalues < sorted_p[first_fail]).reshape(counts.shape)


def _lower(c, n, level):
    c = np.asarray(c)
    safe = np.maximum(c, 1)
    return np.where(c == 0, 0.0, special.betaincinv(safe, n - safe + 1, level))


def _upper(c, n, level):
    c = np.asarray(c)
    n = np.asarray(n)
    safe = np.minimum(c, n - 1)
    return np.where(c == n, 1.0, special.betaincinv(safe + 1, n - safe, 1.0 - level))


def _binomial_tail(c, n, tau):
    """P(Binomial(n, tau) >= c) = I_tau(c, n - c + 1), and 1 where c == 0."""
    c = np.asarray(c)
    safe = np.maximum(c, 1)
    return np.where(c == 0, 1.0, special.betainc(safe, n - safe + 1, tau))


def _per_distinct(counts: np.ndarray, n: np.ndarray, fn) -> np.ndarray:
    """`fn(c, n)` evaluated once per distinct (count, n) pair, gathered to the shape of `counts`.

    `fn` must act elementwise on 1-d arrays of distinct counts and their sample sizes.
    """
    flat = counts.ravel()
    if flat.size == 0:
        return np.zeros(counts.shape)
    if n.ndim == 0 and int(n) <= 4 * flat.size + 65536:
        # Counts lie in [0, n]: a table indexed by count replaces sorting.
        present = np.bincount(flat, minlength=int(n) + 1) > 0
        distinct = np.flatnonzero(present)
        table = np.empty(int(n) + 1)
        table[distinct] = fn(distinct, np.full(distinct.shape, int(n)))
        return table[counts]
    n_flat = np.broadcast_to(n, counts.shape).ravel()
    width = int(n_flat.max()) + 1
    if width < 2**31:  # one int64 key per (count, n) pair, no overflow
        keys = flat * width + n_flat
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        pairs = np.stack([flat, n_flat], axis=1)
        _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    values = fn(flat[first], n_flat[first])
    return values[inverse.ravel()].reshape(counts.shape)


def _per_distinct_level(counts: np.ndarray, n: np.ndarray, level: np.ndarray, fn) -> np.ndarray:
    """`fn(c, n, level)` evaluated once per distinct (count, n, level) triple, gathered.

    Per-output levels (e.g. from `corrected_levels`) take few distinct values, so the triples
    repeat about as much as the counts do.
    """
    flat_level = np.broadcast_to(level, counts.shape).ravel()
    if flat_level.size == 0 or flat_level.min() == flat_level.max():
        value = float(flat_level[0]) if flat_level.size else 0.5
        return _per_distinct(counts, n, lambda c, m: fn(c, m, value))
    flat = counts.ravel()
    if n.ndim == 0 and int(n) <= 4 * flat.size + 65536:
        # Corrected levels usually depend on the count alone: then one level per count suffices
        # (checked exactly: scatter one level per count and compare every output with it).
        per_count = np.zeros(int(n) + 1)
        per_count[flat] = flat_level
        if np.array_equal(per_count[flat], flat_level):
            present = np.flatnonzero(np.bincount(flat, minlength=int(n) + 1))
            table = np.empty(int(n) + 1)
            table[present] = fn(present, np.full(present.shape, int(n)), per_count[present])
            return table[counts]
    values, which = np.unique(flat_level, return_inverse=True)
    which = which.ravel()
    n_flat = np.broadcast_to(n, counts.shape).ravel()
    width = int(n_flat.max()) + 1  # counts and n both lie in [0, width)
    if values.size * width * width < 2**62:
        keys = (which * width + n_flat) * width + flat
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        triples = np.stack([which, n_flat, flat], axis=1)
        _, first, inverse = np.unique(triples, axis=0, return_index=True, return_inverse=True)
    out = fn(flat[first], n_flat[first], values[which[first]])
    return out[inverse.ravel()].reshape(counts.shape)


def _num_at_most(flat: np.ndarray, query):
    """Number of entries of `flat` that are <= each query value.

    With `query` an array: returns the counts for it. With `query=None`: returns the function.
    """
    if flat.max(initial=0) <= 4 * flat.size + 65536:
        cumulative = np.cumsum(np.bincount(flat))
        fn = lambda c: cumulative[np.asarray(c)]
    else:
        ordered = np.sort(flat)
        fn = lambda c: np.searchsorted(ordered, np.asarray(c), side="right")
    return fn if query is None else fn(query)
