"""Estimators: what a sampling stage accumulates on the device and how it is bounded on the host.

estimator = clopper_pearson("bonferroni")     # or dkw_moments(num_bins), majority_vote()
accumulated per batch in the kernel by estimator.accumulate (integer counts)
estimate = estimator.bound(config, counts, prediction, n, alpha, tested)   # float64, host
hamming_histogram(): Hamming distances to a center label map (center smoothing)
"""

from lrsjax.estimators._distances import hamming_histogram
from lrsjax.estimators._moments import check_num_bins, dkw_moments
from lrsjax.estimators._types import Estimator, MomentEstimate, ProbabilityEstimate
from lrsjax.estimators._votes import CORRECTIONS, clopper_pearson, consistency, majority_vote

__all__ = [
    "CORRECTIONS",
    "Estimator",
    "MomentEstimate",
    "ProbabilityEstimate",
    "check_num_bins",
    "clopper_pearson",
    "consistency",
    "dkw_moments",
    "hamming_histogram",
    "majority_vote",
]
