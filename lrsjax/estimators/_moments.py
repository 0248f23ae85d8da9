"""DKW bounds on the mean and second moment of each output's selected-class softmax score.

The estimation samples' scores are binned on the device (`num_bins` equal bins of [0, 1], a power
of two so that binning is exact in float32); on the host one Dvoretzky-Kiefer-Wolfowitz band at
level `alpha / N_tested` (Massart's constant) bounds the mean from below and the second moment
about the histogram mean from above, for all tested outputs at once (`docs/math.md`,
"Statistics"). These feed variance-constrained certificates (Schuchardt et al., 2023).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks, stats
from lrsjax.estimators._types import Estimator, MomentEstimate


def check_num_bins(num_bins) -> int:
    """`num_bins` as an int: a power of two <= 2**20 (so that binning is exact in float32)."""
    num_bins = _checks.positive_int("num_bins", num_bins)
    if num_bins & (num_bins - 1) or num_bins > 2**20:
        _checks.fail(
            "num_bins", num_bins, "must be a power of two <= 2**20", "Pass e.g. 1024 or 4096."
        )
    return num_bins


def dkw_moments(num_bins: int = 1024) -> Estimator:
    """Histogram of the selected class's softmax score; DKW mean and second-moment bounds."""
    num_bins = check_num_bins(num_bins)
    return Estimator(
        "dkw_moments", "moments", num_bins, num_bins, _shape, _accumulate, _bound, _certifiable,
        _bytes,
    )  # fmt: skip


def _shape(num_bins, output_shape, num_classes):
    return (*output_shape, num_bins)


def _bytes(num_bins, num_classes):
    return 4 * num_classes + 16  # softmax, score, bins


def _accumulate(num_bins, acc, logits, valid, group_mask, target):
    batch = logits.shape[0]
    valid_b = valid.reshape((batch,) + (1,) * (logits.ndim - 2))
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    score = jnp.take_along_axis(probs, target[None, ..., None].astype(jnp.int32), axis=-1)[..., 0]
    score = jnp.where(jnp.isnan(score), 0.0, score)
    # num_bins is a power of two, so score * num_bins is exact and floor() bins without rounding.
    bins = jnp.clip(jnp.floor(score * num_bins), 0, num_bins - 1).astype(jnp.int32)
    num_out = group_mask.size
    weight = (valid_b & group_mask[None]).astype(jnp.int32).reshape(batch, num_out)
    flat = acc.reshape(num_out, num_bins)
    out_index = jnp.broadcast_to(jnp.arange(num_out, dtype=jnp.int32), (batch, num_out))
    flat = flat.at[out_index, bins.reshape(batch, num_out)].add(weight)
    return flat.reshape(acc.shape)


def _bound(num_bins, acc, prediction, n, alpha, tested) -> MomentEstimate:
    num_outputs = prediction.shape[0]
    hist = np.asarray(acc, np.int64).reshape(num_outputs, num_bins)
    num_tested = int(np.count_nonzero(tested))
    level = alpha / num_tested
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    mu_lower = np.zeros(num_outputs)
    zeta_upper = np.ones(num_outputs)
    h = hist[tested]
    mu_lower[tested], _ = stats.mean_bounds_from_histogram(h, edges, level)
    center = (h * mids).sum(-1) / h.sum(-1)
    zeta = stats.second_moment_upper_from_histogram(h, edges, center, level)
    zeta_upper[tested] = np.maximum(zeta, 1e-12)  # raising the bound is conservative
    method = f"variance+dkw+bonferroni(level=alpha/{num_tested})"
    return MomentEstimate(mu_lower, zeta_upper, hist, method)


def _certifiable(num_bins, n, alpha, num_tested) -> bool:
    hist = np.zeros((1, num_bins), np.int64)
    hist[0, -1] = n  # every score in the top bin
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    mu_lower, _ = stats.mean_bounds_from_histogram(hist, edges, alpha / num_tested)
    return float(mu_lower[0]) > 0.5
