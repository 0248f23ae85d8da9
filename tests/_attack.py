"""The one brute-force attacker of the collective tests: the exact largest attack by enumeration.

Within a smoothing group every output has the same weights, so an attack that reaches threshold
`eta` reaches every output of the group with a smaller one: an attack is a choice of one level
per group (how many of its outputs, sorted by `eta`, it flips). Every choice is checked with one
feasibility LP (scipy's HiGHS): is there a spend `b >= 0` within the totals with
`(W b)_k >= eta_k` for the highest chosen level of every group?
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linprog


def reachable(weights, chosen, totals) -> bool:
    """Is there `b[t, j] >= 0` with `sum_j b[t, j] <= totals[t]` and `sum_{t,j} W[t, k, j] b[t, j]
    >= eta` for every `(k, eta)` in `chosen`? `weights` [T, K, M], `totals` [T]."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim == 2:
        weights = weights[None]
    types, _, regions = weights.shape
    totals = np.broadcast_to(np.asarray(totals, np.float64), (types,))
    a_ub = [-weights[:, k, :].reshape(-1) for k, _ in chosen]
    b_ub = [-eta for _, eta in chosen]
    for t in range(types):
        row = np.zeros(types * regions)
        row[t * regions : (t + 1) * regions] = 1.0
        a_ub.append(row)
        b_ub.append(totals[t])
    res = linprog(
        np.zeros(types * regions), A_ub=np.array(a_ub), b_ub=b_ub, bounds=(0, None),
        method="highs",
    )  # fmt: skip
    return res.status == 0


def max_attack(weights, eta, group, totals, multiplicity=None) -> int:
    """The largest number of outputs (rows weighted by `multiplicity`) one spend flips.

    Args:
      weights: float [T, K, M] (or [K, M] for one budget type).
      eta: float [R] thresholds; group: int [R] groups; totals: float [T] (or a scalar).
      multiplicity: int [R] outputs per row (default 1).
    """
    eta = np.asarray(eta, np.float64)
    group = np.asarray(group)
    counts = np.ones(eta.size, np.int64) if multiplicity is None else np.asarray(multiplicity)
    levels = {}
    for k in np.unique(group):
        rows = np.flatnonzero(group == k)
        order = rows[np.argsort(eta[rows], kind="stable")]
        thresholds, first = np.unique(eta[order], return_index=True)
        cumulative = np.cumsum(counts[order])
        last = np.append(first[1:], order.size) - 1  # equal thresholds fall together
        levels[int(k)] = [(0.0, 0)] + list(zip(thresholds, cumulative[last]))
    groups = sorted(levels)
    best = 0
    for choice in itertools.product(*(levels[k] for k in groups)):
        value = int(sum(count for _, count in choice))
        if value <= best:
            continue
        chosen = [(k, level) for k, (level, count) in zip(groups, choice) if count > 0]
        if reachable(weights, chosen, totals):
            best = value
    return best
