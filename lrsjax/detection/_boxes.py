"""Boxes: IoU, the exact worst-case IoU of a box known up to coordinate intervals, and the fixed-
length vectors that turn a variable set of detections into coordinates for percentile smoothing.

Boxes are `(x1, y1, x2, y2)` with `x1 < x2`, `y1 < y2` in continuous pixel coordinates (a box
covering pixels `x1 .. x2 - 1` has width `x2 - x1`; no `+1` convention). `docs/math.md §13`.
"""

from __future__ import annotations

import itertools

import numpy as np

from lrsjax import _checks

# The 16 corners of a box of coordinate intervals: 0 picks the lower bound, 1 the upper one.
_CORNERS = np.array(list(itertools.product((0, 1), repeat=4)), np.int64)  # [16, 4]


def iou(boxes, gt_box) -> np.ndarray:
    """Intersection over union of `boxes [..., 4]` with one box `gt_box [4]`; 0 for an empty
    box (`x2 <= x1` or `y2 <= y1`)."""
    b = np.asarray(boxes, np.float64)
    g = np.asarray(gt_box, np.float64)
    width = np.clip(np.minimum(b[..., 2], g[2]) - np.maximum(b[..., 0], g[0]), 0.0, None)
    height = np.clip(np.minimum(b[..., 3], g[3]) - np.maximum(b[..., 1], g[1]), 0.0, None)
    inter = width * height
    area = np.clip(b[..., 2] - b[..., 0], 0.0, None) * np.clip(b[..., 3] - b[..., 1], 0.0, None)
    union = area + (g[2] - g[0]) * (g[3] - g[1]) - inter
    empty = (b[..., 2] <= b[..., 0]) | (b[..., 3] <= b[..., 1])
    return np.where(empty | (union <= 0), 0.0, inter / np.where(union > 0, union, 1.0))


def worst_case_iou(box_lower, box_upper, gt_box) -> np.ndarray:
    """The smallest IoU with `gt_box` of any box whose coordinates lie in `[box_lower,
    box_upper]`: the minimum over the 16 corner combinations, exact (`docs/math.md §13`).

    IoU is quasi-concave in each coordinate with the others fixed (it rises while the edge
    approaches the ground truth's edge and falls after), so its minimum over an interval is at an
    end, and over the box of intervals at a corner. A box that may vanish (`x2_low <= x1_up` or
    `y2_low <= y1_up`) has worst-case IoU 0; infinite bounds give 0.

    Args:
      box_lower: float [..., 4], lower bounds of (x1, y1, x2, y2).
      box_upper: float [..., 4], upper bounds (>= box_lower).
      gt_box: float [4], one ground-truth box with `x1 < x2`, `y1 < y2`.
    Returns:
      float64 [...], in [0, 1].
    """
    low = _checks.as_float_array("box_lower", box_lower, finite=False)
    up = _checks.as_float_array("box_upper", box_upper, finite=False)
    gt = _check_gt(gt_box)
    if low.shape != up.shape or low.shape[-1:] != (4,):
        _checks.fail(
            "box_upper", up, f"must have the shape of box_lower {low.shape}, last axis 4", ""
        )
    if np.any(np.isnan(low)) or np.any(np.isnan(up)) or np.any(low > up):
        _checks.fail("box_upper", up, "must be >= box_lower and not NaN", "Pass [lower, upper].")
    finite = np.all(np.isfinite(low) & np.isfinite(up), axis=-1)
    safe_low = np.where(np.isfinite(low), low, 0.0)
    safe_up = np.where(np.isfinite(up), up, 0.0)
    stacked = np.stack([safe_low, safe_up], axis=-1)  # [..., 4, 2]
    corners = np.take_along_axis(
        stacked[..., None, :, :],
        np.broadcast_to(_CORNERS[..., None], (*stacked.shape[:-2], 16, 4, 1)),
        axis=-1,
    )[..., 0]  # [..., 16, 4]
    worst = iou(corners, gt).min(axis=-1)
    may_vanish = (low[..., 2] <= up[..., 0]) | (low[..., 3] <= up[..., 1])
    return np.where(finite & ~may_vanish, worst, 0.0)


def boxes_to_vectors(
    detections, *, num_labels: int, slots: int, image_size=None, loc_bins: int = 1
) -> tuple[np.ndarray, int]:
    """Fixed-length coordinate vectors from per-sample sets of detections (Chiang et al., 2020).

    Each sample's present boxes (score > 0) go to a bin by label and, with `loc_bins > 1`, by the
    cell of their center on a `loc_bins x loc_bins` grid over the image; within a bin they are
    sorted by center (y, then x) and fill `slots` slots of 4 coordinates; empty slots are `+inf`
    (a missing box sorts above every box). Boxes beyond `slots` in a bin are dropped (counted).
    The layout is fixed before sampling, so the number of bounds (the Bonferroni family) does not
    depend on the samples.

    Args:
      detections: float [n, M, 6]: rows `(x1, y1, x2, y2, label, score)`, absent where
        `score <= 0`; labels are whole numbers in `[0, num_labels)`.
      num_labels: int >= 1; slots: int >= 1, boxes per bin.
      image_size: `(height, width)` of the image, required with `loc_bins > 1`.
      loc_bins: int >= 1, location bins per axis.
    Returns:
      (vectors float64 [n, num_bins * slots * 4], boxes dropped over all samples), `num_bins =
      num_labels * loc_bins ** 2`, bin `label * loc_bins ** 2 + row * loc_bins + col`.
    """
    det = _checks.as_float_array("detections", detections)
    if det.ndim != 3 or det.shape[-1] != 6:
        _checks.fail("detections", det, "must be [n, M, 6] rows (x1, y1, x2, y2, label, score)", "")
    num_labels = _checks.positive_int("num_labels", num_labels)
    slots = _checks.positive_int("slots", slots)
    loc_bins = _checks.positive_int("loc_bins", loc_bins)
    if loc_bins > 1 and image_size is None:
        _checks.fail("image_size", image_size, "is required with loc_bins > 1", "Pass (H, W).")
    present = det[..., 5] > 0
    labels = det[..., 4]
    if np.any(present & ((labels != np.round(labels)) | (labels < 0) | (labels >= num_labels))):
        _checks.fail(
            "detections",
            det,
            f"must carry whole-number labels in [0, {num_labels}) on present boxes",
            "Round the labels inside the detector, or raise num_labels.",
        )
    cy = 0.5 * (det[..., 1] + det[..., 3])
    cx = 0.5 * (det[..., 0] + det[..., 2])
    bins = labels.astype(np.int64) * loc_bins**2
    if loc_bins > 1:
        height, width = (float(v) for v in image_size)
        row = np.clip(np.floor(cy / height * loc_bins), 0, loc_bins - 1).astype(np.int64)
        col = np.clip(np.floor(cx / width * loc_bins), 0, loc_bins - 1).astype(np.int64)
        bins = bins + row * loc_bins + col
    num_bins = num_labels * loc_bins**2
    n = det.shape[0]
    out = np.full((n, num_bins, slots, 4), np.inf)
    dropped = 0
    for i in range(n):
        rows = np.flatnonzero(present[i])
        order = rows[np.lexsort((cx[i, rows], cy[i, rows], bins[i, rows]))]
        for b in np.unique(bins[i, order]):
            in_bin = order[bins[i, order] == b]
            kept = in_bin[:slots]
            dropped += in_bin.size - kept.size
            out[i, b, : kept.size] = det[i, kept, :4]
    return out.reshape(n, -1), dropped


def _check_gt(gt_box) -> np.ndarray:
    gt = _checks.as_float_array("gt_box", gt_box)
    if gt.shape != (4,) or not (gt[0] < gt[2] and gt[1] < gt[3]):
        _checks.fail("gt_box", gt, "must be one box (x1, y1, x2, y2) with x1 < x2, y1 < y2", "")
    return gt
