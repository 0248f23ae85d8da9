"""Votes: majority-vote selection, Clopper-Pearson bounds on the selected class, consistency.

`clopper_pearson` bounds the probability of the class selected on independent samples with
one-sided Clopper-Pearson bounds (Clopper & Pearson, 1934) corrected for all tested outputs at once
(`docs/math.md`, "Statistics"): Bonferroni (sound under any dependence, the default), Holm's
fixed-threshold test of SegCertify (Fischer et al., 2021; sound), or `rank_levels` (the research
code's rule, no simultaneous-coverage proof: reproduction only).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lrsjax import _checks, stats
from lrsjax.estimators._types import Estimator, ProbabilityEstimate

CORRECTIONS = ("bonferroni", "rank_levels", "holm")


def _votes_shape(config, output_shape, num_classes):
    return (*output_shape, num_classes)


def _accumulate_votes(config, acc, logits, valid, group_mask, target):
    pred = jnp.argmax(logits, axis=-1)
    classes = jnp.arange(acc.shape[-1], dtype=pred.dtype)
    valid_b = valid.reshape((valid.shape[0],) + (1,) * (pred.ndim - 1))
    hits = (pred[..., None] == classes) & valid_b[..., None]
    per_output = jnp.sum(hits, axis=0, dtype=jnp.int32)
    return acc + jnp.where(group_mask[..., None], per_output, 0)


def _votes_bytes(config, num_classes):
    return num_classes + 8  # argmax and one-hot hits


def _votes_bound(config, acc, prediction, n, alpha, tested):
    return acc


def _always(config, n, alpha, num_tested):
    return True


def majority_vote() -> Estimator:
    """Per-output class votes `[*out, C]` of argmax predictions: selection by majority vote."""
    return Estimator(
        "majority_vote", "votes", None, None, _votes_shape, _accumulate_votes, _votes_bound,
        _always, _votes_bytes,
    )  # fmt: skip


def clopper_pearson(correction: str = "bonferroni", tau: float | None = None) -> Estimator:
    """Clopper-Pearson lower bounds on the selected class, corrected over the tested outputs.

    Accumulates class votes (the selection kernel's accumulator and device configuration, so one
    compiled kernel serves both stages) and bounds `counts[prediction]` out of `n`:
      * "bonferroni": `BetaInv(alpha / N_tested; c, n - c + 1)`; all bounds hold at once with
        probability >= 1 - alpha.
      * "holm" (needs `tau` in (1/2, 1)): outputs whose probability provably exceeds `tau` by
        Holm's step-down test get `p_lower = tau`, the others 0 (SegCertify).
      * "rank_levels": the i-th smallest count gets level `alpha / i`: NO simultaneous-coverage
        proof; for reproducing published numbers only.
    """
    _checks.one_of("correction", correction, CORRECTIONS)
    if correction == "holm":
        if tau is None:
            _checks.fail("tau", tau, "is required with correction='holm'", "Pass e.g. tau=0.75.")
        tau = _checks.probability("tau", tau)
        if tau <= 0.5:
            _checks.fail("tau", tau, "must be > 1/2 (nothing is certified below)", "")
    elif tau is not None:
        _checks.fail("tau", tau, "is only used with correction='holm'", "Drop `tau`.")
    return Estimator(
        f"clopper_pearson+{correction}", "probability", (correction, tau), None, _votes_shape,
        _accumulate_votes, _probability_bound, _probability_certifiable, _votes_bytes,
    )  # fmt: skip


def _probability_bound(config, acc, prediction, n, alpha, tested) -> ProbabilityEstimate:
    correction, tau = config
    votes = np.asarray(acc, np.int64).reshape(prediction.shape[0], -1)
    counts = votes[np.arange(prediction.shape[0]), prediction]
    p_lower = np.zeros(prediction.shape[0])
    if correction == "holm":
        passed = stats.holm_threshold_test(counts[tested], n, tau, alpha)
        p_lower[tested] = np.where(passed, tau, 0.0)
        method = f"neyman_pearson+holm(tau={tau})"
    else:
        p_lower[tested] = stats.corrected_lower_bounds(counts[tested], n, alpha, correction)
        method = f"neyman_pearson+clopper_pearson+{correction}"
        if correction == "rank_levels":
            method += " (no simultaneous-coverage proof; reproduction only)"
    return ProbabilityEstimate(p_lower, counts, method)


def _probability_certifiable(config, n, alpha, num_tested) -> bool:
    # Every sample agreeing gives c = n; a Clopper-Pearson lower bound is then level**(1 / n).
    correction, tau = config
    if correction == "holm":
        return bool(stats.holm_threshold_test(np.array([n]), n, tau, alpha / num_tested)[0])
    # rank_levels may give a single output the level alpha; Bonferroni gives alpha / N
    level = alpha if correction == "rank_levels" else alpha / num_tested
    return float(stats.clopper_pearson_lower(n, n, level)) > 0.5


def _consistency_shape(config, output_shape, num_classes):
    return tuple(output_shape)


def _accumulate_consistency(config, acc, logits, valid, group_mask, target):
    pred = jnp.argmax(logits, axis=-1)
    valid_b = valid.reshape((valid.shape[0],) + (1,) * (pred.ndim - 1))
    hits = (pred == target[None]) & valid_b
    per_output = jnp.sum(hits, axis=0, dtype=jnp.int32)
    return acc + jnp.where(group_mask, per_output, 0)


def consistency() -> Estimator:
    """Per-output counts of samples whose argmax equals `target` (`[*out]`, no bound)."""
    return Estimator(
        "consistency", "votes", None, None, _consistency_shape, _accumulate_consistency,
        _votes_bound, _always, _votes_bytes,
    )  # fmt: skip
