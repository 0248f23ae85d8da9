"""Per-group attack levels: the data every collective solver works on (docs/math.md 6).

Within group `k` every output sees the same spend `P_k = (W b)_k`, and output `n` is attacked iff
`P_k >= eta[n]`. So the adversary attacks a prefix of the group's outputs sorted by eta, and a
group is fully described by its distinct thresholds `E_1 < ... < E_L` and the cumulative counts
`C_i` (outputs with `eta <= E_i`). Level `i` (0..L) of a group means "the outputs with
`eta <= E_i` are attacked" (level 0: none, `E_0 = C_0 = 0`); it needs `P_k >= E_i`.

Everything here is exact integer/float64 bookkeeping on the host.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# An output counts as attacked when the spend reaches its threshold up to this relative slack.
# Ties (the adversary's spend lands exactly on a threshold, as at every LP vertex) are then
# resolved in the adversary's favour despite float64 rounding: this can only over-count attacks,
# i.e. certify less, never more.
TIE_RTOL = 1e-9


class Level(NamedTuple):
    """The levels of one group (L >= 1 distinct thresholds).

    Fields:
      group: int, the smoothing group k (index into weights[:, k, :]).
      eta: float64 [L], distinct thresholds, strictly increasing, > 0.
      count: int64 [L], outputs (sum of multiplicities) with exactly this threshold.
      cumulative: int64 [L], outputs with threshold <= eta[i] (attacked at level i + 1).
    """

    group: int
    eta: np.ndarray
    count: np.ndarray
    cumulative: np.ndarray

    @property
    def points(self):
        """(x [L+1], y [L+1]): (0, 0) then (E_i, C_i): the group's step function's corners."""
        x = np.concatenate([[0.0], self.eta])
        y = np.concatenate([[0.0], self.cumulative.astype(np.float64)])
        return x, y


class LevelTable(NamedTuple):
    """Every group's levels as padded arrays (column 0 is level 0: nothing attacked), for
    vectorized bounds over all groups at once.

    Fields: E, C float64 [G, L + 1] thresholds and cumulative counts (E = inf, C = 0 past a
    group's last level); E0: E with 0 past the last level (finite, for Lagrangian terms);
    n int64 [G] levels per group; top float64 [G, L + 1], 1 at each group's last level.
    """

    E: np.ndarray
    E0: np.ndarray
    C: np.ndarray
    n: np.ndarray
    top: np.ndarray

    @classmethod
    def of(cls, levels: list[Level]) -> LevelTable:
        n = np.array([lv.eta.size for lv in levels], np.int64)
        width = int(n.max()) + 1
        E = np.full((n.size, width), np.inf)
        C = np.zeros((n.size, width))
        top = np.zeros((n.size, width))
        E[:, 0] = 0.0
        for g, lv in enumerate(levels):
            E[g, 1 : n[g] + 1] = lv.eta
            C[g, 1 : n[g] + 1] = lv.cumulative
            top[g, n[g]] = 1.0
        return cls(E, np.where(np.isfinite(E), E, 0.0), C, n, top)

    def attacked(self, power: np.ndarray) -> int:
        """Outputs attacked when group g receives spend `power[g]` (float64 [G]): the
        vectorized `attacked_level` (same tie rule, `TIE_RTOL`) summed over the groups."""
        reach = np.asarray(power, np.float64) * (1.0 + TIE_RTOL) + 1e-300
        level = (self.E[:, 1:] <= reach[:, None]).sum(axis=1)
        return int(self.C[np.arange(self.C.shape[0]), level].sum())

    def in_range(self, lo, hi) -> np.ndarray:
        """bool [G, L + 1]: level i of group g lies in `lo[g]..hi[g]` (int [G] each)."""
        index = np.arange(self.E.shape[1])[None, :]
        return (index >= np.asarray(lo)[:, None]) & (index <= np.asarray(hi)[:, None])


def levels_of(eta: np.ndarray, multiplicity: np.ndarray, group: np.ndarray) -> list[Level]:
    """Levels of every group that has rows, groups in increasing order. O(R log R)."""
    if eta.size == 0:
        return []
    order = np.lexsort((eta, group))
    g, e, m = group[order], eta[order], multiplicity[order].astype(np.int64)
    # New level where the group or the threshold changes.
    new = np.ones(e.size, bool)
    new[1:] = (g[1:] != g[:-1]) | (e[1:] != e[:-1])
    starts = np.flatnonzero(new)
    counts = np.add.reduceat(m, starts)
    level_group, level_eta = g[starts], e[starts]
    out = []
    bounds = np.flatnonzero(np.diff(level_group)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, level_group.size]):
        count = counts[lo:hi]
        out.append(Level(int(level_group[lo]), level_eta[lo:hi], count, np.cumsum(count)))
    return out


def max_power(weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """float64 [K]: the largest spend `(W b)_k` any budget with these totals can buy."""
    return (weights.max(axis=2) * np.asarray(totals, np.float64)[:, None]).sum(axis=0)


def reachable(levels: list[Level], power: np.ndarray) -> list[Level]:
    """The prefix of every group's levels with `E_i <= power[k]` (the exact naive filter):
    outputs above it are certified on their own. Groups left without levels are dropped."""
    out = []
    for level in levels:
        n = int(np.searchsorted(level.eta, power[level.group], side="right"))
        if n > 0:
            out.append(level if n == level.eta.size else Level(
                level.group, level.eta[:n], level.count[:n], level.cumulative[:n]
            ))  # fmt: skip
    return out


def spend(weights: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [K]: `P = sum_t W[t] b[t]` for a spend `b [T, M]`."""
    return np.einsum("tkm,tm->k", weights, b)


def feasible_spend(b: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """`b` clipped to >= 0 and scaled down per type so that `sum_j b[t, j] <= totals[t]`
    (all zeros if `b` is not finite)."""
    b = np.asarray(b, np.float64)
    if not np.all(np.isfinite(b)):  # e.g. a failing solver's garbage: no attack at all
        return np.zeros_like(b)
    b = np.maximum(b, 0.0)
    sums = b.sum(axis=1)
    scale = np.where(sums > totals, totals / np.where(sums > 0, sums, 1.0), 1.0)
    return b * scale[:, None]


def attacked_level(level: Level, power: float) -> int:
    """Highest level i (0..L) with `E_i <= power` up to `TIE_RTOL`."""
    return int(np.searchsorted(level.eta, power * (1.0 + TIE_RTOL) + 1e-300, side="right"))


def attack_of(levels: list[Level], weights: np.ndarray, totals, b) -> tuple[int, np.ndarray]:
    """(outputs attacked by the real spend `b`, the feasible spend used).

    `b [T, M]` is first made feasible (`feasible_spend`), so the count is that of a genuine
    perturbation budget split; it is a lower bound on the largest attack.
    """
    b = feasible_spend(b, np.asarray(totals, np.float64))
    power = spend(weights, b)
    total = 0
    for level in levels:
        i = attacked_level(level, power[level.group])
        if i > 0:
            total += int(level.cumulative[i - 1])
    return total, b
