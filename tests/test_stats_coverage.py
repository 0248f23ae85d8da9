"""Coverage simulations: bounds fail at most at their nominal rate (SPEC 4).

Each check draws many independent experiments with known truth and counts how often the bound is
violated; the rate must stay below the nominal level plus binomial slack (z standard errors). The
fast variants (few hundred trials, generous z) run in CI; the slow ones (>= 2000 trials) with
`pytest -m slow`.
"""

import numpy as np
import pytest

from lrsjax import stats

FAST, SLOW = 400, 5000


def _assert_rate(failures: int, trials: int, level: float, z: float, what: str):
    rate = failures / trials
    slack = z * np.sqrt(level * (1 - level) / trials) + 1 / trials
    assert rate <= level + slack, f"{what}: failure rate {rate:.4f} > {level} + {slack:.4f}"


def _clopper_pearson_single(trials, z, seed):
    rng = np.random.default_rng(seed)
    level, n = 0.1, 50
    for p in (0.05, 0.5, 0.83, 0.97):
        counts = rng.binomial(n, p, size=trials)
        lower = stats.clopper_pearson_lower(counts, n, level)
        upper = stats.clopper_pearson_upper(counts, n, level)
        _assert_rate(int(np.sum(lower > p)), trials, level, z, f"lower p={p}")
        _assert_rate(int(np.sum(upper < p)), trials, level, z, f"upper p={p}")


def _family_wise_rate(trials, seed, method, true_p, n, alpha):
    """How often any output of one input gets a corrected lower bound above its truth."""
    rng = np.random.default_rng(seed)
    failures = 0
    for _ in range(trials):
        counts = rng.binomial(n, true_p)
        bounds = stats.corrected_lower_bounds(counts, n, alpha, method)
        failures += bool(np.any(bounds > true_p))
    return failures


def _holm(trials, z, seed):
    """Family-wise error of Holm's test: a null output (q = tau, the worst case) rejected."""
    rng = np.random.default_rng(seed)
    alpha, n, tau = 0.2, 100, 0.75
    true_q = np.array([tau] * 12 + [0.97] * 8)
    null = true_q <= tau
    failures = 0
    for _ in range(trials):
        rejected = stats.holm_threshold_test(rng.binomial(n, true_q), n, tau, alpha)
        failures += bool(np.any(rejected & null))
    _assert_rate(failures, trials, alpha, z, "holm family-wise")


def _dkw(trials, z, seed):
    """DKW mean and second-moment bounds (raw, thinned and histogram), failing jointly."""
    rng = np.random.default_rng(seed)
    level, n = 0.2, 150
    edges = np.linspace(0, 1, 11)
    distributions = {
        "beta(2, 5)": (lambda size: rng.beta(2, 5, size=size), 2 / 7, 10 / (49 * 8)),
        "three atoms": (
            lambda size: rng.choice([0.0, 0.5, 1.0], p=[0.2, 0.3, 0.5], size=size),
            0.65,
            0.3 * 0.25 + 0.5 - 0.65**2,
        ),
    }
    for name, (draw, mean, var) in distributions.items():
        x = draw((n, trials))
        center = x.mean(axis=0)
        second = var + (mean - center) ** 2  # E[(X - v)^2] at each trial's centre
        hist = np.stack([np.histogram(x[:, t], edges)[0] for t in range(trials)])
        results = {
            "raw": (stats.mean_bounds(x, level), stats.second_moment_upper(x, center, level)),
            "thinned": (
                stats.mean_bounds(x, level, num_thresholds=12),
                stats.second_moment_upper(x, center, level, num_thresholds=12),
            ),
            "histogram": (
                stats.mean_bounds_from_histogram(hist, edges, level),
                stats.second_moment_upper_from_histogram(hist, edges, center, level),
            ),
        }
        for kind, ((lower, upper), zeta) in results.items():
            failed = (lower > mean) | (upper < mean) | (zeta < second)
            _assert_rate(int(failed.sum()), trials, level, z, f"DKW {kind} {name}")


# Families of 20 outputs: mixed, all equal, and well separated (ranks then almost fixed).
FAMILIES = {
    "mixed": (np.concatenate([np.linspace(0.6, 0.99, 15), np.full(5, 0.9)]), 100),
    "equal": (np.full(20, 0.9), 100),
    "separated": (np.linspace(0.3, 0.95, 20), 1000),
}


def test_clopper_pearson_coverage_fast():
    _clopper_pearson_single(FAST, z=4, seed=0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bonferroni_family_wise_coverage_fast(family):
    true_p, n = FAMILIES[family]
    failures = _family_wise_rate(FAST, 1, "bonferroni", true_p, n, 0.2)
    _assert_rate(failures, FAST, 0.2, 4, f"bonferroni {family}")


def test_rank_levels_has_no_family_wise_guarantee():
    """Why "rank_levels" is opt-in only: with well separated outputs the i-th smallest count gets
    level alpha / i almost surely, so the family-wise error is about 1 - prod_i (1 - alpha / i)
    (about 0.5 measured at alpha = 0.2), far above alpha."""
    true_p, n = FAMILIES["separated"]
    failures = _family_wise_rate(FAST, 1, "rank_levels", true_p, n, 0.2)
    slack = 4 * np.sqrt(0.2 * 0.8 / FAST)
    assert failures / FAST > 0.2 + slack


def test_holm_coverage_fast():
    _holm(FAST, 4, 2)


def test_dkw_coverage_fast():
    _dkw(FAST, 4, 3)


@pytest.mark.slow
def test_clopper_pearson_coverage_slow():
    _clopper_pearson_single(SLOW, z=3, seed=10)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.2, 0.05])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bonferroni_family_wise_coverage_slow(family, alpha):
    true_p, n = FAMILIES[family]
    failures = _family_wise_rate(SLOW, 11, "bonferroni", true_p, n, alpha)
    _assert_rate(failures, SLOW, alpha, 3, f"bonferroni {family}")


@pytest.mark.slow
def test_holm_coverage_slow():
    _holm(SLOW, 3, 12)


@pytest.mark.slow
def test_dkw_coverage_slow():
    _dkw(SLOW, 3, 13)
