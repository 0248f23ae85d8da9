"""Metrics of single-output classifiers from per-input certified radii (docs/math.md,
"Single-output classifiers"). Host side, numpy, vectorized over the `N` inputs of a data set.

Conventions: `prediction` int [N] is the certified class, -1 where the certificate abstains;
`radius` float [N] >= 0 is 0 where it abstains; `labels` int [N] are the true classes. An input
counts as certified at radius `r` when it does not abstain, is correct and `radius > r` (strict:
the certified balls are open; Cohen et al.'s `analyze.py` counts `radius >= r`).
"""

from __future__ import annotations

import math

import numpy as np

from lrsjax import _checks


def certified_accuracy_at(prediction, radius, labels, radii) -> np.ndarray:
    """Certified accuracy `CA(r) = #{i : prediction_i = labels_i != -1, radius_i > r} / N`.

    Args:
      prediction: int [N], -1 where abstained.
      radius: float [N] >= 0.
      labels: int [N].
      radii: float, scalar or [R]: the radii `r` to evaluate (`r = 0` gives the clean accuracy of
        the smoothed classifier with abstentions counted wrong, as every certified radius is > 0).
    Returns:
      float64 with the shape of `radii`.
    """
    correct, radius = _correct_and_radius(prediction, radius, labels)
    r = _checks.as_float_array("radii", radii, finite=False)
    if np.any(np.isnan(r)):
        _checks.fail("radii", r, "must not be NaN", "")
    hits = correct[:, None] & (radius[:, None] > r.reshape(-1)[None, :])
    return (hits.sum(axis=0) / correct.size).reshape(r.shape)


def exact_acr(prediction, radius, labels) -> float:
    """Average certified radius `ACR = (1/N) sum_i radius_i 1[prediction_i = labels_i]`.

    This is exactly `int_0^inf CA(r) dr` (swap the sum and the integral: input i contributes
    `radius_i` to the integral of its indicator `1[radius_i > r]`), not a Riemann sum.
    """
    correct, radius = _correct_and_radius(prediction, radius, labels)
    return float(np.sum(np.where(correct, radius, 0.0)) / correct.size)


def abstain_rate(prediction) -> float:
    """Fraction of inputs whose prediction is -1 (abstained)."""
    prediction = _checks.as_int_array("prediction", prediction, ndim=1)
    if prediction.size == 0:
        _checks.fail("prediction", prediction, "must hold at least one input", "")
    return float(np.mean(prediction == -1))


def high_probability_certified_accuracy(prediction, radius, labels, radii, *, alpha, rho):
    """Cohen et al.'s high-probability lower bound on the certified accuracy (2019, Appendix;
    `HighProbAccuracy` in their `analyze.py`).

    With probability at least `1 - rho` over the certification of all `N` inputs (each at level
    `alpha`), the fraction of inputs that are correct AND truly certified at radius `r` is at least

        CA(r) - alpha - sqrt(alpha (1 - alpha) ln(1/rho) / N) - ln(1/rho) / (3 N)

    (Bernstein's inequality on the number of wrong certificates, whose expectation is at most
    `alpha N`). The bound may be negative.

    Args:
      prediction, radius, labels, radii: as in `certified_accuracy_at`.
      alpha: the `alpha` the certificates were made with, in (0, 1).
      rho: the failure probability of this bound, in (0, 1).
    Returns:
      float64 with the shape of `radii`.
    """
    alpha = _checks.probability("alpha", alpha)
    rho = _checks.probability("rho", rho)
    accuracy = certified_accuracy_at(prediction, radius, labels, radii)
    num = np.asarray(prediction).size
    log_term = math.log(1.0 / rho)
    slack = alpha + math.sqrt(alpha * (1.0 - alpha) * log_term / num) + log_term / (3.0 * num)
    return accuracy - slack


def _correct_and_radius(prediction, radius, labels):
    prediction = _checks.as_int_array("prediction", prediction, ndim=1)
    labels = _checks.as_int_array("labels", labels, ndim=1)
    radius = _checks.as_float_array("radius", radius, ndim=1, finite=False)
    if prediction.size == 0:
        _checks.fail("prediction", prediction, "must hold at least one input", "")
    if labels.shape != prediction.shape or radius.shape != prediction.shape:
        _checks.fail(
            "labels",
            labels,
            f"and `radius` {radius.shape} must have the shape of `prediction` {prediction.shape}",
            "Pass one entry per input.",
        )
    if np.any(np.isnan(radius)) or np.any(radius < 0):
        _checks.fail("radius", radius, "must be >= 0 and not NaN", "Use 0 where abstained.")
    abstained = prediction == -1
    if np.any(abstained & (radius > 0)):
        _checks.fail(
            "radius", radius, "must be 0 where `prediction` is -1 (abstained)", "Zero those radii."
        )
    return (~abstained) & (prediction == labels), radius
