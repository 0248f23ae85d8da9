"""Samplers of the smoothing distributions: pure functions of an explicit key (docs/math.md §3).

Gaussian: `x + S_k * e` with one standard-normal draw `e` that may serve every group.
Bernoulli: every bit flips independently with its exact probability. The sparse sampler costs
O(ones + flips) instead of O(nodes x features): deletions are Bernoulli draws on the list of ones;
additions are Poisson thinning: `Poisson(rate * positions)` uniform positions (with replacement,
drawn as the arrivals of a Poisson process, which gives independent counts per region),
those landing on a one are dropped and duplicates merged, so every zero position is flipped with
probability exactly `1 - exp(-lam) = p` (`lam = -log(1 - p)`), independently of all others.

Finite precision (the only deviations from the exact distribution): deletion probabilities are
`round(p * 2**32) / 2**32`; addition rates and Exp(1) arrival gaps are float32 (relative error about
1e-7 in the effective rate); positions are uniform up to a relative `span / 2**64`. Gaussian noise
is float32, from 24-bit uniforms (`standard_normal`). Random words are spent sparingly (24 bits
per normal, 16-bit deletion draws refined only on ties, 64-bit positions only when 32 bits leave
them undecided) because the default threefry generator costs tens of nanoseconds per word on a
CPU; each refinement decides exactly as the full draw would.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks
from lrsjax._sparse import SparseBinary

OVERFLOW_PROBABILITY = 1e-12
_SENTINEL = np.iinfo(np.int32).max
_TWO32 = 2.0**32


# ----------------------------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------------------------


def gaussian_std_map(stds_row, region):
    """The per-pixel standard deviation `[*region.shape]` of one group: `stds_row[region]`.

    Args:
      stds_row: float [M], `S[k, :]` of the smoothing group; `inf` marks masked regions.
      region: int [H, W], the region (grid cell) of every pixel.
    """
    return jnp.asarray(stds_row)[jnp.asarray(region)]


def standard_normal(key, shape, dtype=jnp.float32):
    """Standard-normal draws using 24 random bits each (4 draws per 3 random words).

    `sqrt(2) * erfinv(u)` with `u = (c - 2**23 + 1/2) / 2**23`, `c` a uniform 24-bit integer: u is
    uniform on the 2**24 points of a symmetric grid in (-1, 1) (exact in float32, never +-1), at
    least as fine as `jax.random.normal`'s 23-bit uniforms, from 25% fewer random words (the
    threefry words dominate the cost of noise on a CPU).
    """
    shape = tuple(shape)
    count = int(np.prod(shape))
    groups = -(-count // 4)
    words = jax.random.bits(key, (groups, 3), jnp.uint32)
    w0, w1, w2 = words[:, 0], words[:, 1], words[:, 2]
    low8, low16, low24 = jnp.uint32(0xFF), jnp.uint32(0xFFFF), jnp.uint32(0xFFFFFF)
    chunks = jnp.stack(
        [
            w0 >> 8,
            ((w0 & low8) << 16) | (w1 >> 16),
            ((w1 & low16) << 8) | (w2 >> 24),
            w2 & low24,
        ],
        axis=1,
    ).reshape(-1)[:count]
    centred = chunks.astype(jnp.int32) - (1 << 23)  # in [-2**23, 2**23)
    u = (centred.astype(jnp.float32) + 0.5) * np.float32(2.0**-23)
    return (np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(u)).astype(dtype).reshape(shape)


def sample_gaussian(key, x, std_map):
    """One sample of localized Gaussian noise around `x` [C, H, W]: `x + std_map * e`, masked
    pixels (`std_map = inf`) replaced by 0 (`perturb_gaussian`)."""
    from lrsjax.noise._additive import perturb

    x = jnp.asarray(x)
    return perturb(x, std_map, standard_normal(key, x.shape, x.dtype))


# ----------------------------------------------------------------------------------------------
# Bernoulli: parameters prepared on the host in float64
# ----------------------------------------------------------------------------------------------


class BernoulliParameters(NamedTuple):
    """Device-ready flip parameters of clustered Bernoulli smoothing, computed in float64.

    Fields (rows: groups `k`, columns: regions `j`):
      addition_rates: float32 [K, M], `lam = -log(1 - theta_plus)`: Poisson rate of additions per
        position (sparse sampler).
      addition_thresholds: uint32 [K, M], `round(theta_plus * 2**32)`: a uniform 32-bit word below
        it flips a 0 (dense sampler). Exact to 2**-32.
      deletion_thresholds: uint32 [K, M], `round(theta_minus * 2**32)`, likewise for 1 -> 0 flips.
    """

    addition_rates: np.ndarray
    addition_thresholds: np.ndarray
    deletion_thresholds: np.ndarray


def bernoulli_parameters(theta_plus, theta_minus) -> BernoulliParameters:
    """Turns flip probability matrices `[K, M]` in (0, 1) into `BernoulliParameters`."""
    tp = _checks.as_float_array("theta_plus", theta_plus, ndim=2)
    tm = _checks.as_float_array("theta_minus", theta_minus, ndim=2)
    _checks.same_shape(("theta_plus", "theta_minus"), (tp, tm))
    for name, arr in (("theta_plus", tp), ("theta_minus", tm)):
        if np.any(arr <= 0) or np.any(arr >= 1):
            _checks.fail(name, arr, "must lie in (0, 1)", "Pass flip probabilities such as 0.01.")
    return BernoulliParameters(
        addition_rates=(-np.log1p(-tp)).astype(np.float32),
        addition_thresholds=_thresholds(tp),
        deletion_thresholds=_thresholds(tm),
    )


def _thresholds(p: np.ndarray) -> np.ndarray:
    return np.clip(np.round(p * _TWO32), 0, _TWO32 - 1).astype(np.uint32)


class RegionLayout(NamedTuple):
    """Nodes grouped by region, so that a uniform node of one region is one gather (sparse sampler).

    Fields:
      region: int32 [N], the region (cluster) of every node.
      nodes_by_region: int32 [N], node ids sorted by region (stable).
      region_start: int32 [M], offset of each region's first node in `nodes_by_region`.
      region_size: int32 [M], number of nodes in each region.
    """

    region: np.ndarray
    nodes_by_region: np.ndarray
    region_start: np.ndarray
    region_size: np.ndarray


def region_layout(region, num_regions: int) -> RegionLayout:
    """Builds the `RegionLayout` of int [N] region ids in [0, num_regions)."""
    region = _checks.as_int_array("region", region, ndim=1)
    if region.size and (region.min() < 0 or region.max() >= num_regions):
        _checks.fail("region", region, f"must lie in [0, {num_regions})", "Fix the region ids.")
    order = np.argsort(region, kind="stable").astype(np.int32)
    size = np.bincount(region, minlength=num_regions).astype(np.int32)
    start = (np.cumsum(size) - size).astype(np.int32)
    return RegionLayout(region.astype(np.int32), order, start, size)


def sparse_addition_capacity(
    addition_rates, region_size, num_cols: int, tail: float = OVERFLOW_PROBABILITY
) -> int:
    """Static capacity for the added bits of one sparse sample.

    The number of addition events of group `k` is `Poisson(Lambda_k)`,
    `Lambda_k = num_cols * sum_j lam[k, j] * region_size[j]`. Returns the smallest `m` with
    `P(Poisson(max_k Lambda_k) > m) < tail` (default 1e-12 per sample). Overflow beyond it is
    detected by the sampler (never truncated silently).
    """
    from scipy import stats

    rates = np.asarray(addition_rates, np.float64)
    sizes = np.asarray(region_size, np.float64)
    total = float(np.max(rates @ sizes)) * int(num_cols)
    if total <= 0:
        return 1
    m = int(stats.poisson.isf(tail, total))
    while stats.poisson.sf(m, total) >= tail:
        m += 1
    return max(m + 1, 1)


# ----------------------------------------------------------------------------------------------
# Bernoulli samplers (pure JAX)
# ----------------------------------------------------------------------------------------------


def ones_bitmap(x: SparseBinary, num_rows: int, num_cols: int):
    """uint32 [ceil(N * F / 32)]: bit `row * F + col` is set iff `(row, col)` is a valid one of `x`.

    Lets the sparse sampler test whether an addition event hit a one with a single gather
    (N * F / 8 bytes of memory, built once per kernel call).
    """
    num_words = (num_rows * num_cols + 31) // 32
    linear = (x.rows * num_cols + x.cols).astype(jnp.int32)
    word = jnp.where(x.valid, linear >> 5, num_words)  # padding goes to a dropped segment
    bit = jnp.left_shift(jnp.uint32(1), (linear & 31).astype(jnp.uint32))
    # valid entries never repeat a position, so the sum of distinct bits is their OR
    return jax.ops.segment_sum(jnp.where(x.valid, bit, 0), word, num_words + 1)[:num_words]


def make_sparse_bernoulli_sampler(num_rows: int, num_cols: int, addition_capacity: int):
    """A sampler of independent bit flips for a sparse binary matrix `[num_rows, num_cols]`.

    Args:
      num_rows, num_cols: static matrix shape (`num_rows * num_cols < 2**31 - 1`).
      addition_capacity: static number of addition slots per sample (see
        `sparse_addition_capacity`).
    Returns:
      `sample(key, x, layout, addition_rates_row, deletion_thresholds_row, bitmap=None)
      -> (SparseBinary, overflow)`: `x` is the clean SparseBinary, `layout` a `RegionLayout`, the
      rows are one group's `BernoulliParameters` rows `[M]`, `bitmap` optionally
      `ones_bitmap(x, num_rows, num_cols)` (pass it when sampling repeatedly). The result has
      capacity `x.capacity + addition_capacity`; its valid entries are exactly the ones of the noisy
      matrix.
      `overflow` (bool scalar) is True when the Poisson process may have more addition events than
      slots (its last slot's arrival falls inside the rate interval), or when one of the small
      pools of refinement words (see `_bernoulli_from_16_bits`, `_uniform_below`) ran dry; the
      sample must then be discarded (the caller raises). This happens with probability
      `P(Poisson(Lambda) >= addition_capacity)`, plus below 2e-12 for the pools.
    """
    num_rows = _checks.positive_int("num_rows", num_rows)
    num_cols = _checks.positive_int("num_cols", num_cols)
    capacity = _checks.positive_int("addition_capacity", addition_capacity)
    if num_rows * num_cols >= _SENTINEL:
        _checks.fail(
            "num_rows * num_cols",
            num_rows * num_cols,
            "must be < 2**31 - 1 (int32 linear indices)",
            "Split the attribute matrix or reduce its size.",
        )

    # Positions need 64 random bits only when the first 32 leave the result undecided (probability
    # below span / 2**32 <= N * F / 2**32 per event): those draw from a small pool of extra words.
    position_pool = min(capacity, _pool_size(capacity * num_rows * num_cols / _TWO32))

    def sample(key, x, layout, addition_rates_row, deletion_thresholds_row, bitmap=None):
        # One draw of 32-bit words feeds everything (one PRNG call site keeps compilation cheap).
        num_ones = x.rows.shape[0]
        delete_pool = _pool_size(num_ones / 2.0**16)
        sizes_of_parts = (
            (num_ones + 1) // 2,  # 16-bit draws for deletions, two per word
            delete_pool,  # refinements of tied 16-bit deletion draws
            capacity,  # Exp(1) gaps of the addition process
            capacity,  # first 32 bits of every addition's position
            position_pool,  # refinements of undecided positions
        )
        words = jax.random.bits(key, (sum(sizes_of_parts),), jnp.uint32)
        ends = np.cumsum(sizes_of_parts)
        half_words, delete_extra, gap_words, high_words, position_extra = (
            words[start:end] for start, end in zip((0, *ends[:-1]), ends)
        )
        region = jnp.asarray(layout.region)
        sizes = jnp.asarray(layout.region_size)
        # Deletions: each one flips to 0 with probability theta_minus of its row's region.
        draws16 = jnp.concatenate([half_words >> 16, half_words & jnp.uint32(0xFFFF)])[:num_ones]
        thresholds = jnp.asarray(deletion_thresholds_row)[region[x.rows]]
        deleted, delete_overflow = _bernoulli_from_16_bits(
            draws16, delete_extra, thresholds, x.valid
        )
        kept = x.valid & ~deleted
        # Additions: Poisson thinning. Arrival times of a rate-1 Poisson process on the time axis
        # [0, Lambda), cut into consecutive intervals of length Lambda_j = lam_j * size_j * F, one
        # per region: the numbers of arrivals in the intervals are independent Poisson(Lambda_j).
        region_rates = (
            jnp.asarray(addition_rates_row, jnp.float32) * sizes.astype(jnp.float32) * num_cols
        )
        bounds = jnp.cumsum(region_rates)
        uniform = (gap_words.astype(jnp.float32) + 1.0) * np.float32(2.0**-32)  # in (0, 1]
        arrivals = jnp.cumsum(-jnp.log(uniform))  # Exp(1) gaps
        in_use = arrivals < bounds[-1]
        # If even the last slot's arrival lies inside [0, Lambda), more events may exist: flag it.
        events_overflow = arrivals[-1] < bounds[-1]
        slot_region = jnp.searchsorted(bounds, arrivals, side="right")
        slot_region = jnp.minimum(slot_region, sizes.shape[0] - 1)
        # Each event: a uniform position (node of its region, column) from 64 random bits.
        span = jnp.maximum(sizes[slot_region], 1) * num_cols  # < 2**31
        position, position_overflow = _uniform_below(high_words, position_extra, span, in_use)
        overflow = events_overflow | delete_overflow | position_overflow
        node = jnp.asarray(layout.nodes_by_region)[
            jnp.asarray(layout.region_start)[slot_region] + position // num_cols
        ]
        col = position % num_cols
        linear = jnp.where(in_use, node * num_cols + col, _SENTINEL)
        # Drop events on ones (those bits are governed by deletions), then merge duplicates.
        bitmap = ones_bitmap(x, num_rows, num_cols) if bitmap is None else bitmap
        safe = jnp.where(in_use, linear, 0)
        on_one = (bitmap[safe >> 5] >> (safe & 31).astype(jnp.uint32)) & 1
        linear = jnp.where(on_one == 1, _SENTINEL, linear)
        linear = jnp.sort(linear)
        first = jnp.concatenate([jnp.ones((1,), bool), linear[1:] != linear[:-1]])
        added = first & (linear != _SENTINEL)
        rows = jnp.where(added, linear // num_cols, 0).astype(jnp.int32)
        cols = jnp.where(added, linear % num_cols, 0).astype(jnp.int32)
        noisy = SparseBinary(
            rows=jnp.concatenate([x.rows.astype(jnp.int32), rows]),
            cols=jnp.concatenate([x.cols.astype(jnp.int32), cols]),
            valid=jnp.concatenate([kept, added]),
        )
        return noisy, overflow

    return sample


def _mul_32x32(a, b):
    """The 64-bit product of uint32 arrays as (high, low) uint32 words, via 16-bit limbs."""
    mask = jnp.uint32(0xFFFF)
    a1, a0 = a >> 16, a & mask
    b1, b0 = b >> 16, b & mask
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1  # each < 2**32
    middle = (p00 >> 16) + (p01 & mask) + (p10 & mask)  # < 3 * 2**16
    low = (p00 & mask) | (middle << 16)
    high = p11 + (p01 >> 16) + (p10 >> 16) + (middle >> 16)
    return high, low


def _pool_size(mean: float, tail: float = OVERFLOW_PROBABILITY) -> int:
    """Smallest m with P(Poisson(mean) > m) < tail: the size of a pool of refinement words."""
    from scipy import stats

    if mean <= 0:
        return 1
    m = int(stats.poisson.isf(tail, mean))
    while stats.poisson.sf(m, mean) >= tail:
        m += 1
    return max(m, 1)


def _refinement_words(needed, pool):
    """Hands the pool's words, in order, to the entries where `needed`; flags a too small pool."""
    rank = jnp.cumsum(needed.astype(jnp.int32)) - 1
    extra = pool[jnp.clip(rank, 0, pool.shape[0] - 1)]
    return extra, jnp.sum(needed) > pool.shape[0]


def _bernoulli_from_16_bits(draws16, pool, thresholds, active):
    """Exact Bernoulli(`thresholds / 2**32`) decisions from 16-bit draws, refined when tied.

    Comparing a uniform 32-bit word `u` with the threshold `t` only needs u's low half when its high
    half equals t's (probability 2**-16): then that entry takes the next word of `pool` as its low
    half. The decision is exactly `u < t`, so `P(True) = t / 2**32`, independently per entry.
    Returns (decisions, overflow) where overflow means more ties among `active` entries than pool
    words (probability < 1e-12 by the pool's size).
    """
    t_high, t_low = thresholds >> 16, thresholds & jnp.uint32(0xFFFF)
    tied = (draws16 == t_high) & active
    extra, overflow = _refinement_words(tied, pool)
    decision = (draws16 < t_high) | (tied & ((extra & jnp.uint32(0xFFFF)) < t_low))
    return decision, overflow


def _uniform_below(high_words, pool, span, active):
    """Uniform integers in [0, span) from 64 random bits: `floor(U * span)`, `U = 0.hl` in binary.

    Exact 64-bit multiply-shift in uint32 arithmetic. Every value has `floor` or `ceil` of
    `2**64 / span` preimages, so its probability is `1 / span` up to a relative `span / 2**64`
    (< 1.2e-10 for any span < 2**31). The low 32 bits `l` of U matter only through the carry of
    `low32(h * span) + high32(l * span)`, impossible unless `low32(h * span) > 2**32 - span`
    (probability below span / 2**32): only those entries take a word `l` from `pool`; the result is
    identical to drawing all 64 bits. Returns (values int32, overflow of the pool among `active`).
    """
    span = jnp.asarray(span).astype(jnp.uint32)
    high_1, low_1 = _mul_32x32(high_words, span)  # h * span
    undecided = (low_1 > jnp.uint32(0) - span) & active  # 0 - span == 2**32 - span
    low_words, overflow = _refinement_words(undecided, pool)
    high_2, _ = _mul_32x32(low_words, span)  # (l * span) >> 32
    carry = undecided & ((low_1 + high_2) < low_1)
    return (high_1 + carry.astype(jnp.uint32)).astype(jnp.int32), overflow


def sample_dense_bernoulli(key, x, region, addition_thresholds_row, deletion_thresholds_row):
    """Independent bit flips of a dense binary matrix (the O(N x F) reference sampler).

    Args:
      key: JAX key.
      x: float [N, F] with entries in {0, 1}.
      region: int [N], the region of every row (node).
      addition_thresholds_row, deletion_thresholds_row: uint32 [M], one group's
        `BernoulliParameters` rows.
    Returns:
      float [N, F], `x` with every bit flipped independently (0 -> 1 with `theta_plus`, 1 -> 0 with
      `theta_minus` of its row's region).
    """
    x = jnp.asarray(x)
    region = jnp.asarray(region)
    bits = jax.random.bits(key, x.shape, jnp.uint32)
    add_thr = jnp.asarray(addition_thresholds_row)[region][:, None]
    del_thr = jnp.asarray(deletion_thresholds_row)[region][:, None]
    flip = bits < jnp.where(x > 0, del_thr, add_thr)
    return jnp.where(flip, 1 - x, x)
