"""Statistics on the host in float64 (docs/math.md §4): Clopper-Pearson bounds, multiple-testing
corrections, SegCertify's Holm test, DKW bounds on means and second moments of scores; order-
statistic bounds on quantiles and bounds on smoothed expectations (docs/math.md §13)."""

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
from lrsjax.stats._order import (
    PercentileBounds,
    dkw_upper_index,
    expectation_bounds,
    expectation_range,
    lower_order_index,
    order_statistic,
    percentile_bounds,
    shifted_levels,
    upper_order_index,
)

__all__ = [
    "upper_order_index",
    "shifted_levels",
    "percentile_bounds",
    "order_statistic",
    "lower_order_index",
    "expectation_range",
    "expectation_bounds",
    "dkw_upper_index",
    "PercentileBounds",
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
