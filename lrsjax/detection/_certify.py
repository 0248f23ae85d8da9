"""Certified detection (Chiang et al., 2020): median-smoothed boxes and certified AP@0.5.

`certify_detection` samples a detector under Gaussian noise, turns every sample's boxes into one
fixed-length vector (`boxes_to_vectors`), and bounds every coordinate of every slot with the order
statistics of percentile smoothing, jointly over all `2 x slots x 4` bounds (Bonferroni;
`docs/math.md §13`). A slot is a certified box when its 8 bounds are finite; its worst-case IoU
against a ground-truth box (`worst_case_iou`) then holds at every input within `eps`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lrsjax import _checks, _keys, sampling, stats
from lrsjax._regression import gaussian_sigma
from lrsjax.detection._boxes import boxes_to_vectors, iou, worst_case_iou
from lrsjax.noise import Noise


class DetectionCertificate(NamedTuple):
    """The result of `certify_detection`. `S = num_labels * loc_bins**2 * slots` box slots.

    Fields:
      estimate: float64 [S, 4], the median-smoothed boxes (empirical `percentile`; `+inf` rows:
        the slot is empty in most samples).
      lower: float64 [S, 4], certified lower bounds of (x1, y1, x2, y2) (`-inf`/`+inf` allowed).
      upper: float64 [S, 4], certified upper bounds.
      labels: int64 [S], the label of each slot's bin.
      certified: bool [S], slots whose 8 bounds are finite (a box present at every input within
        `eps`, inside the bounds).
      may_exist: bool [S], slots whose lower bounds are finite: the only slots that can hold a box
        at some input within `eps` (an upper bound on the smoothed detector's boxes).
      k_lower, k_upper: int, 1-based order-statistic indices (0: none qualifies).
      dropped: int, boxes beyond `slots` in their bin, over all samples (not certified).
    """

    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    labels: np.ndarray
    certified: np.ndarray
    may_exist: np.ndarray
    k_lower: int
    k_upper: int
    dropped: int


class Matches(NamedTuple):
    """Matched detections of one image (or sums over images): `true_positives` (one-to-one
    matches with IoU > threshold), `num_predictions`, `num_ground_truth`."""

    true_positives: int
    num_predictions: int
    num_ground_truth: int


@dataclasses.dataclass(frozen=True)
class _Rows:
    """`detect_fn` with its detections as `[M, 6]` float32 rows (hashes by the function)."""

    detect_fn: Callable

    def __call__(self, params, x):
        return self.detect_fn(params, x).reshape(-1, 6)


def certify_detection(
    key,
    detect_fn: Callable,
    params,
    x,
    noise: Noise,
    *,
    n: int,
    alpha: float,
    eps: float,
    batch_size: int,
    num_labels: int,
    slots: int,
    loc_bins: int = 1,
    percentile: float = 0.5,
) -> DetectionCertificate:
    """Median smoothing of a detector's boxes with certified coordinate bounds.

    Guarantee (Chiang et al., 2020; `docs/math.md §13`): with probability at least `1 - alpha`,
    for every `||delta||_2 < eps` and every slot, each coordinate of the smoothed (`percentile`)
    box vector at `x + delta` lies in `[lower, upper]`; jointly for all `2 * S * 4` bounds
    (Bonferroni). A certified slot therefore holds a box at every such input, with IoU at least
    `worst_case_iou(lower, upper, gt)` against any ground-truth box `gt`.

    Args:
      detect_fn: `detect_fn(params, x) -> [M, 6]` rows `(x1, y1, x2, y2, label, score)` for ONE
        image, a row being absent where `score <= 0`; finite values everywhere.
      num_labels, slots, loc_bins: the vector layout (`boxes_to_vectors`), fixed in advance.
      key, params, x, noise, n, alpha, eps, batch_size, percentile: as in
        `lrsjax.certify_regression`.
    Returns:
      A `DetectionCertificate`.
    """
    key = _keys.check_key("key", key)
    sigma = gaussian_sigma(noise)
    alpha = _checks.probability("alpha", alpha)
    n = _checks.positive_int("n", n)
    percentile = _checks.probability("percentile", percentile)
    num_labels = _checks.positive_int("num_labels", num_labels)
    slots = _checks.positive_int("slots", slots)
    loc_bins = _checks.positive_int("loc_bins", loc_bins)
    p_low, p_up = stats.shifted_levels(percentile, eps, sigma)
    image_size = np.shape(x)[-2:]
    sampler = sampling.make_output_sampler(_Rows(detect_fn), noise, batch_size=batch_size)
    detections = sampler(key, params, x, n).values
    vectors, dropped = boxes_to_vectors(
        detections, num_labels=num_labels, slots=slots, image_size=image_size, loc_bins=loc_bins
    )
    level = alpha / (2 * vectors.shape[1])
    k_lower = stats.lower_order_index(p_low, n, level)
    k_upper = stats.upper_order_index(p_up, n, level)
    ordered = np.sort(vectors, axis=0)  # +inf (missing) sorts last
    middle = max(1, int(np.ceil(n * percentile)))
    lower = stats.order_statistic(ordered, k_lower, "lower").reshape(-1, 4)
    upper = stats.order_statistic(ordered, k_upper, "upper").reshape(-1, 4)
    labels = np.repeat(np.arange(num_labels), loc_bins**2 * slots)
    return DetectionCertificate(
        estimate=np.asarray(ordered[middle - 1], np.float64).reshape(-1, 4),
        lower=lower,
        upper=upper,
        labels=labels,
        certified=np.all(np.isfinite(lower) & np.isfinite(upper), axis=1),
        may_exist=np.all(np.isfinite(lower), axis=1),
        k_lower=k_lower,
        k_upper=k_upper,
        dropped=int(dropped),
    )


def certified_matches(cert: DetectionCertificate, gt_boxes, gt_labels, threshold=0.5) -> Matches:
    """Matches that hold at every input within the certificate's `eps`.

    True positives: a one-to-one matching (greedy, ground truths in order, best worst-case IoU
    first) of ground-truth boxes to certified slots of the same label with `worst_case_iou >
    threshold`, a lower bound on the matches of the smoothed detector at any such input.
    Predictions: the slots that may hold a box (`may_exist`), an upper bound on its boxes. So
    `true_positives / num_predictions` and `true_positives / num_ground_truth` are certified lower
    bounds on precision and recall at the threshold.
    """
    gt, gt_labels = _check_gt(gt_boxes, gt_labels)
    free = cert.certified.copy()
    tp = 0
    for box, label in zip(gt, gt_labels, strict=True):
        candidates = np.flatnonzero(free & (cert.labels == label))
        if candidates.size == 0:
            continue
        worst = worst_case_iou(cert.lower[candidates], cert.upper[candidates], box)
        best = int(np.argmax(worst))
        if worst[best] > threshold:
            free[candidates[best]] = False
            tp += 1
    return Matches(tp, int(np.count_nonzero(cert.may_exist)), len(gt))


def matches(boxes, labels, gt_boxes, gt_labels, threshold=0.5) -> Matches:
    """Matches of plain detections (no certificate): a one-to-one greedy matching of ground-truth
    boxes to detections of the same label with IoU > threshold. Rows of `boxes [P, 4]` with a
    non-finite coordinate are no detection."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    lab = np.asarray(labels, np.int64).reshape(-1)
    gt, gt_labels = _check_gt(gt_boxes, gt_labels)
    free = np.all(np.isfinite(b), axis=1)
    num_predictions = int(np.count_nonzero(free))
    tp = 0
    for box, label in zip(gt, gt_labels, strict=True):
        candidates = np.flatnonzero(free & (lab == label))
        if candidates.size == 0:
            continue
        overlap = iou(b[candidates], box)
        best = int(np.argmax(overlap))
        if overlap[best] > threshold:
            free[candidates[best]] = False
            tp += 1
    return Matches(tp, num_predictions, len(gt))


def single_point_ap(total: Matches) -> float:
    """AP of detections without scores (one operating point): precision times recall, from the
    matches summed over images (0 where there are no predictions or no ground truth)."""
    if total.num_predictions == 0 or total.num_ground_truth == 0:
        return 0.0
    return (total.true_positives / total.num_predictions) * (
        total.true_positives / total.num_ground_truth
    )


def _check_gt(gt_boxes, gt_labels):
    gt = _checks.as_float_array("gt_boxes", gt_boxes).reshape(-1, 4)
    labels = _checks.as_int_array("gt_labels", gt_labels).reshape(-1)
    if labels.shape[0] != gt.shape[0]:
        _checks.fail("gt_labels", labels, f"must have one label per box ({gt.shape[0]})", "")
    if np.any(gt[:, 0] >= gt[:, 2]) or np.any(gt[:, 1] >= gt[:, 3]):
        _checks.fail("gt_boxes", gt, "must have x1 < x2 and y1 < y2", "")
    return gt, labels
