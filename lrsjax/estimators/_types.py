"""The estimator plug-in: what is accumulated per sample on the device, and how it is bounded.

An estimator is a value made by a factory (`majority_vote`, `clopper_pearson`, `dkw_moments`,
...). The sampling kernel adds every batch of logits into the estimator's accumulator with its
pure `accumulate` function (no branch on the estimator's kind); `lrsjax.certify` then turns the
integer accumulator into a typed estimate on the host, in float64, with `bound`. Functions are
module-level (stable identities), so the kernel's jit cache is reused across calls.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import NamedTuple

import numpy as np


class Estimator(NamedTuple):
    """How one sampling stage is summarized and bounded.

    Fields:
      name: short name for messages and method strings.
      estimate: the kind of estimate `bound` returns, which selects the noise's certificate:
        "votes" (selection only), "probability" (`ProbabilityEstimate`) or "moments"
        (`MomentEstimate`).
      config: hashable configuration of the host side (`bound`, `certifiable`).
      device_config: hashable configuration of the device side (`shape`, `accumulate`,
        `bytes_per_output`), e.g. the number of histogram bins. Estimators that accumulate the
        same way share it, and with it one compiled kernel.
      shape: `shape(device_config, output_shape, num_classes) -> tuple`, the accumulator's shape.
      accumulate: `accumulate(device_config, acc, logits, valid, group_mask, target) -> acc` on the
        device: `logits` float [B, *out, C] of one group's batch, `valid` bool [B] (the last batch
        is partial), `group_mask` bool [*out] (the outputs this group certifies), `target` int
        [*out] (the selected class; unused by "votes"). Integer accumulators only, so that sums
        over batches, devices and batch ranges are exact.
      bound: `bound(config, acc, prediction, n, alpha, tested) -> estimate` on the host: `acc`
        int64 numpy, `prediction` int64 [D], `tested` bool [D] (the family of the correction).
      certifiable: `certifiable(config, n, alpha, num_tested) -> bool`: whether, at best (every
        sample agreeing), any output could be certified; `lrsjax.certify` refuses hopeless `n`.
      bytes_per_output: `bytes_per_output(device_config, num_classes) -> int`, bytes per sample
        and output while accumulating (memory estimate).
    """

    name: str
    estimate: str
    config: Hashable
    device_config: Hashable
    shape: Callable
    accumulate: Callable
    bound: Callable
    certifiable: Callable
    bytes_per_output: Callable


class ProbabilityEstimate(NamedTuple):
    """Lower confidence bounds on the probability of each output's selected class. `D` outputs.

    Fields:
      p_lower: float64 [D], simultaneous lower bounds for the tested outputs (0 elsewhere).
      counts: int64 [D], estimation samples whose argmax was the selected class.
      method: str, the bound and the correction (e.g. "clopper_pearson+bonferroni").
    """

    p_lower: np.ndarray
    counts: np.ndarray
    method: str


class MomentEstimate(NamedTuple):
    """Bounds on the mean and second moment of each output's selected-class score. `D` outputs.

    Fields:
      mu_lower: float64 [D], lower bound on the mean softmax score (0 where untested).
      zeta_upper: float64 [D], upper bound on the second moment about the histogram mean (>= the
        variance; 1 where untested).
      histogram: int64 [D, num_bins], scores of the estimation samples on equal bins of [0, 1].
      method: str.
    """

    mu_lower: np.ndarray
    zeta_upper: np.ndarray
    histogram: np.ndarray
    method: str
