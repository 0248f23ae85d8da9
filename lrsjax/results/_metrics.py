"""Evaluation metrics (docs/math.md §7) (host side, numpy, vectorized).

Conventions shared by every function here:
  * an output is *evaluated* when it counts for the metric (a pixel whose label is not the ignore
    label, a held-out test node);
  * an abstained output is never correct and never certified;
  * ratios are over the evaluated outputs; with no evaluated output they are NaN (JSON `null`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from lrsjax import _checks

ACR_RULE = (
    "lower Riemann sum: an output certified at grid budget e_i is certified for every budget "
    "e <= e_i, so on (e_{i-1}, e_i] (e_{-1} = 0) the certified accuracy is at least the largest "
    "value reported at any grid budget >= e_i; beyond the last budget it counts as 0. "
    "ACR = sum_i (e_i - e_{i-1}) * max_{j >= i} CA(e_j), a sound lower bound of the integral of "
    "the true certified-accuracy curve (exact when every certified radius lies on the grid)."
)


class CertifiedCounts(NamedTuple):
    """Pooled counts behind the certified-accuracy curve of one input (or a data set).

    Fields:
      num_evaluated: int, outputs that count (not ignored / held-out nodes).
      num_correct: int, evaluated outputs whose prediction equals the label and do not abstain.
      num_certified: int [B], evaluated outputs certified (and not abstained) at each budget.
      num_certified_correct: int [B], of those, the ones that are also correct.
    """

    num_evaluated: int
    num_correct: int
    num_certified: np.ndarray
    num_certified_correct: np.ndarray


class CertifiedCurve(NamedTuple):
    """Certified ratio and accuracy per budget (docs/math.md §7).

    Fields:
      certified_ratio: float64 [B], certified and not abstained / evaluated.
      certified_accuracy: float64 [B], certified, not abstained and correct / evaluated.
      clean_accuracy: float, correct and not abstained / evaluated.
      num_evaluated: int, the denominator.
    """

    certified_ratio: np.ndarray
    certified_accuracy: np.ndarray
    clean_accuracy: float
    num_evaluated: int


def _check_label(name: str, value, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _checks.fail(name, value, "must be an integer" + (" or None" if allow_none else ""))
    return int(value)


def confusion_matrix(prediction, labels, num_classes, ignore_label=255, abstain=None) -> np.ndarray:
    """Pooled confusion matrix, rows = predicted class, columns = true class (docs/math.md §7).

    Args:
      prediction: int array (any shape), the predicted class of each output. Entries that abstain
        or whose label is ignored may hold anything (e.g. -1).
      labels: int array, same shape, the true class in [0, num_classes) or `ignore_label`.
      num_classes: number of real classes C.
      ignore_label: label value excluded from the matrix (255 in VOC/Cityscapes); None for none.
      abstain: optional bool array, same shape; True where the smoothed model abstains.
    Returns:
      int64 [C, C] without `abstain`, int64 [C + 1, C] with it: `confusion[p, t]` counts evaluated
      outputs predicted `p` with label `t`; row C counts abstentions per true class.
    """
    num_classes = _checks.positive_int("num_classes", num_classes)
    ignore_label = _check_label("ignore_label", ignore_label, allow_none=True)
    prediction = _checks.as_int_array("prediction", prediction)
    labels = _checks.as_int_array("labels", labels)
    _checks.same_shape(("prediction", "labels"), (prediction, labels))
    if abstain is not None:
        abstain = _checks.as_bool_array("abstain", abstain)
        _checks.same_shape(("prediction", "abstain"), (prediction, abstain))
        abstain = abstain.ravel()
    if ignore_label is not None and 0 <= ignore_label < num_classes:
        _checks.fail(
            "ignore_label",
            ignore_label,
            f"must not be a real class id in [0, {num_classes})",
            "Use 255 or None.",
        )
    prediction, labels = prediction.ravel(), labels.ravel()
    keep = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    bad = keep & ((labels < 0) | (labels >= num_classes))
    if np.any(bad):
        _checks.fail(
            "labels",
            int(labels[bad][0]),
            f"must lie in [0, {num_classes}) or equal ignore_label={ignore_label}",
            "Check num_classes and the ignore label.",
        )
    rows = prediction.copy()
    num_rows = num_classes
    if abstain is not None:
        rows = np.where(abstain, num_classes, rows)
        num_rows = num_classes + 1
        counted = keep & ~abstain
    else:
        counted = keep
    bad = counted & ((prediction < 0) | (prediction >= num_classes))
    if np.any(bad):
        _checks.fail(
            "prediction",
            int(prediction[bad][0]),
            f"must lie in [0, {num_classes}) wherever the output counts and does not abstain",
            "Pass the abstain mask, or fix num_classes.",
        )
    flat = rows[keep] * num_classes + labels[keep]
    counts = np.bincount(flat, minlength=num_rows * num_classes)
    return counts.reshape(num_rows, num_classes).astype(np.int64)


def _check_confusion(confusion) -> np.ndarray:
    confusion = _checks.as_int_array("confusion", confusion, ndim=2)
    rows, cols = confusion.shape
    if cols < 1 or rows not in (cols, cols + 1):
        _checks.fail(
            "confusion",
            confusion,
            "must have shape [C, C] or [C + 1, C] (last row = abstentions)",
            "Build it with confusion_matrix.",
        )
    if np.any(confusion < 0):
        _checks.fail("confusion", confusion, "must hold counts >= 0", "Pass a confusion matrix.")
    return confusion


def per_class_iou(confusion) -> np.ndarray:
    """IoU of every real class: TP / (TP + FP + FN); NaN where the class never occurs (union 0).

    `confusion` is [C, C] or [C + 1, C] (rows predicted, last row abstentions, as returned by
    `confusion_matrix`). An abstention is a false negative of its true class, never a true or false
    positive of any class.
    """
    confusion = _check_confusion(confusion)
    num_classes = confusion.shape[1]
    square = confusion[:num_classes].astype(np.float64)
    tp = np.diag(square)
    predicted = square.sum(axis=1)  # TP + FP (abstentions are not predictions of a class)
    actual = confusion.sum(axis=0).astype(np.float64)  # TP + FN (abstentions included)
    union = predicted + actual - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(confusion) -> float:
    """Mean over the real classes with a non-empty union of TP / (TP + FP + FN) (docs/math.md §7).

    Abstentions (row C of a [C + 1, C] matrix) are false negatives of their true class and never
    true positives, so abstaining never raises the mIoU above that of a classifier that predicts
    something. Returns NaN when no class occurs at all.
    """
    iou = per_class_iou(confusion)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if np.any(present) else float("nan")


def certified_counts(certified, correct, evaluated=None, abstain=None) -> CertifiedCounts:
    """Counts of certified / certified-and-correct outputs per budget.

    Args:
      certified: bool [D, B], output d certified at budget b (per-output certificates, e.g. naive).
      correct: bool [D], prediction equals the label.
      evaluated: optional bool [D], outputs that count (default: all).
      abstain: optional bool [D]; abstained outputs are neither correct nor certified.
    """
    certified = _checks.as_bool_array("certified", certified, ndim=2)
    correct = _checks.as_bool_array("correct", correct, ndim=1)
    num_outputs = certified.shape[0]
    if correct.shape[0] != num_outputs:
        _checks.same_shape(("certified[:, 0]", "correct"), (certified[:, 0], correct))
    if evaluated is None:
        evaluated = np.ones(num_outputs, bool)
    evaluated = _checks.as_bool_array("evaluated", evaluated, ndim=1)
    _checks.same_shape(("correct", "evaluated"), (correct, evaluated))
    if abstain is not None:
        abstain = _checks.as_bool_array("abstain", abstain, ndim=1)
        _checks.same_shape(("correct", "abstain"), (correct, abstain))
        correct = correct & ~abstain
        certified = certified & ~abstain[:, None]
    certified = certified & evaluated[:, None]
    good = correct & evaluated
    return CertifiedCounts(
        num_evaluated=int(evaluated.sum()),
        num_correct=int(good.sum()),
        num_certified=certified.sum(axis=0).astype(np.int64),
        num_certified_correct=(certified & good[:, None]).sum(axis=0).astype(np.int64),
    )


def per_class_certified_counts(
    certified, correct, labels, num_classes, evaluated=None, abstain=None
) -> np.ndarray:
    """Certified-and-correct outputs per budget and true class.

    Args:
      certified: bool [D, B], output d certified at budget b (per-output certificates).
      correct: bool [D], prediction equals the label.
      labels: int [D], the true class; entries outside [0, num_classes) must not be counted
        (not evaluated, or not correct).
      num_classes: C.
      evaluated: optional bool [D] (default all); abstain: optional bool [D], as in
        `certified_counts`.
    Returns:
      int64 [B, C]; row b sums to `certified_counts(...).num_certified_correct[b]`.
    """
    num_classes = _checks.positive_int("num_classes", num_classes)
    certified = _checks.as_bool_array("certified", certified, ndim=2)
    labels = _checks.as_int_array("labels", labels, ndim=1)
    _checks.same_shape(("certified[:, 0]", "labels"), (certified[:, 0], labels))
    good = _checks.as_bool_array("correct", correct, ndim=1).copy()
    _checks.same_shape(("labels", "correct"), (labels, good))
    for name, mask, keep in (("evaluated", evaluated, True), ("abstain", abstain, False)):
        if mask is not None:
            mask = _checks.as_bool_array(name, mask, ndim=1)
            _checks.same_shape(("labels", name), (labels, mask))
            good &= mask if keep else ~mask
    bad = good & ((labels < 0) | (labels >= num_classes))
    if np.any(bad):
        _checks.fail(
            "labels",
            int(labels[bad][0]),
            f"must lie in [0, {num_classes}) wherever an output is counted as correct",
            "Pass the evaluated mask (it excludes ignored outputs), or fix num_classes.",
        )
    hits = certified & good[:, None]  # [D, B]
    out = np.zeros((certified.shape[1], num_classes), np.int64)
    rows, budget = np.nonzero(hits)
    np.add.at(out, (budget, labels[rows]), 1)
    return out


def curve_from_counts(counts: CertifiedCounts) -> CertifiedCurve:
    """Turns (possibly pooled) counts into ratios; NaN when nothing was evaluated."""
    n = int(counts.num_evaluated)
    num_certified = np.asarray(counts.num_certified, dtype=np.float64)
    num_cc = np.asarray(counts.num_certified_correct, dtype=np.float64)
    if n <= 0:
        nan = np.full(num_certified.shape, np.nan)
        return CertifiedCurve(nan, nan.copy(), float("nan"), 0)
    return CertifiedCurve(num_certified / n, num_cc / n, float(counts.num_correct) / n, n)


def certified_accuracy_curve(certified, correct, evaluated=None, abstain=None) -> CertifiedCurve:
    """Certified ratio, certified accuracy per budget and clean accuracy (docs/math.md §7).

    certified ratio[b] = #(certified at b, not abstained, evaluated) / #evaluated;
    certified accuracy[b] = the same, also correct; clean accuracy = #(correct, not abstained,
    evaluated) / #evaluated (abstentions count as wrong). Shapes as in `certified_counts`.
    """
    return curve_from_counts(certified_counts(certified, correct, evaluated, abstain))


def average_certified_radius(radii, correct, evaluated=None) -> float:
    """Mean over evaluated outputs of the certified radius if correct, else 0.

    Args:
      radii: float [D] >= 0, per-output certified radius (naive, each output alone); 0 or any value
        where abstained, as long as `correct` is False there.
      correct: bool [D], correct and not abstained.
      evaluated: optional bool [D] (default all).
    Returns NaN when no output is evaluated.
    """
    radii = _checks.as_float_array("radii", radii, ndim=1)
    correct = _checks.as_bool_array("correct", correct, ndim=1)
    _checks.same_shape(("radii", "correct"), (radii, correct))
    if evaluated is None:
        evaluated = np.ones(radii.shape, bool)
    evaluated = _checks.as_bool_array("evaluated", evaluated, ndim=1)
    _checks.same_shape(("radii", "evaluated"), (radii, evaluated))
    if np.any(radii[correct & evaluated] < 0):
        _checks.fail("radii", radii, "must be >= 0 where correct", "Radii are norms.")
    n = int(evaluated.sum())
    if n == 0:
        return float("nan")
    return float(np.where(correct & evaluated, radii, 0.0).sum() / n)


def acr_from_curve(budgets, certified_accuracy) -> float:
    """Average certified radius as the integral of certified accuracy over the budget.

    Rule (`ACR_RULE`): certification is monotone, an output certified at budget e_i is also
    certified at every smaller budget. With strictly increasing grid budgets
    e_0 < ... < e_{B-1} (all >= 0) and e_{-1} = 0, the true certified accuracy on
    (e_{i-1}, e_i] is at least m_i = max_{j >= i} certified_accuracy[j] (the suffix maximum;
    equal to certified_accuracy[i] for a nonincreasing curve), and beyond e_{B-1} at least 0.
    Hence

        ACR = sum_i (e_i - e_{i-1}) * m_i

    is the exact integral of that lower step function: a sound lower bound of the integral of the
    true curve, exact when every certified radius lies on the grid. For integer budgets 0, 1, 2, ...
    it equals the mean largest certified integer budget. NaN entries make the result NaN.

    Args:
      budgets: float [B], strictly increasing, >= 0 (l2/l1 radii, or integer counts).
      certified_accuracy: float [B] in [0, 1].
    """
    budgets = _checks.as_float_array("budgets", budgets, ndim=1)
    accuracy = _checks.as_float_array("certified_accuracy", certified_accuracy, finite=False)
    if accuracy.ndim != 1:
        _checks.fail("certified_accuracy", accuracy, "must have 1 dimension(s)", "Pass [B].")
    _checks.same_shape(("budgets", "certified_accuracy"), (budgets, accuracy))
    if budgets.size == 0:
        _checks.fail("budgets", budgets, "must not be empty", "Pass at least one budget.")
    if budgets[0] < 0 or np.any(np.diff(budgets) <= 0):
        _checks.fail(
            "budgets",
            budgets,
            "must be >= 0 and strictly increasing",
            "Sort and de-duplicate them.",
        )
    if np.any(np.isnan(accuracy)):
        return float("nan")
    if np.any((accuracy < 0) | (accuracy > 1)):
        _checks.fail("certified_accuracy", accuracy, "must lie in [0, 1]", "Pass ratios.")
    suffix_max = np.maximum.accumulate(accuracy[::-1])[::-1]
    widths = np.diff(np.concatenate([[0.0], budgets]))
    return float(np.sum(widths * suffix_max))
