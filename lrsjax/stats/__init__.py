"""Statistics on the host in float64 (docs/math.md §4): Clopper-Pearson bounds, multiple-testing
corrections, SegCertify's Holm test, and DKW bounds on means and second moments of scores."""

from lrsjax.stats._binomial import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    corrected_levels,
    corrected_lower_bounds,
    holm_threshold_test,
)
from lrsjax.stats._dkw import (
    dkw_epsilon,
    mean_bounds,
    mean_bounds_from_histogram,
    second_moment_upper,
    second_moment_upper_from_histogram,
)

__all__ = [
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "corrected_levels",
    "corrected_lower_bounds",
    "dkw_epsilon",
    "holm_threshold_test",
    "mean_bounds",
    "mean_bounds_from_histogram",
    "second_moment_upper",
    "second_moment_upper_from_histogram",
]
