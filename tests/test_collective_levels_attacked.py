"""`LevelTable.attacked` (the branch and bound's vectorized count) against `attack_of`."""

import numpy as np

from lrsjax.collective import _levels


def test_attacked_equals_attack_of_including_ties():
    rng = np.random.default_rng(3)
    for _ in range(200):
        groups = int(rng.integers(1, 6))
        levels = []
        for k in range(groups):
            n = int(rng.integers(1, 8))
            eta = np.sort(rng.choice(np.arange(1, 40), n, replace=False)) / 8.0
            count = rng.integers(1, 5, n)
            levels.append(_levels.Level(k, eta, count, np.cumsum(count)))
        table = _levels.LevelTable.of(levels)
        weights = rng.integers(0, 4, (1, groups, 3)) / 2.0
        b = rng.integers(0, 5, (1, 3)) / 4.0  # spends that often land exactly on thresholds
        b = _levels.feasible_spend(b, np.ones(1))
        power = _levels.spend(weights, b)
        expected, _ = _levels.attack_of(levels, weights, np.ones(1), b)
        assert table.attacked(power) == expected
        # A spend just below a threshold (beyond the tie slack) does not reach it.
        below = power * (1.0 - 1e-6)
        manual = sum(
            int(lv.cumulative[np.searchsorted(lv.eta, below[k], side="right") - 1])
            if np.searchsorted(lv.eta, below[k], side="right") > 0
            else 0
            for k, lv in enumerate(levels)
        )
        assert table.attacked(below) == manual


def test_attacked_counts_a_spend_within_the_tie_slack():
    eta = np.array([0.5, 1.0, 2.0])
    count = np.array([2, 3, 4])
    table = _levels.LevelTable.of([_levels.Level(0, eta, count, np.cumsum(count))])
    for j in range(3):
        assert table.attacked(np.array([eta[j] * (1.0 - 1e-12)])) == np.cumsum(count)[j]
        assert table.attacked(np.array([eta[j] * (1.0 - 1e-6)])) == (
            np.cumsum(count)[j - 1] if j else 0
        )
