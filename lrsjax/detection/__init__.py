"""Certified detection (Chiang et al., 2020): boxes as fixed-length vectors, median smoothing of
their coordinates, the exact worst-case IoU, certified matches and AP@0.5, a synthetic task.

  cert = certify_detection(key, detect_fn, params, x, noise, n=..., alpha=..., eps=..., ...)
  worst_case_iou(cert.lower[s], cert.upper[s], gt_box)      # holds for every ||delta|| < eps
  certified_matches(cert, gt_boxes, gt_labels)              # certified TP / predictions
"""

from lrsjax.detection._boxes import boxes_to_vectors, iou, worst_case_iou
from lrsjax.detection._certify import (
    DetectionCertificate,
    Matches,
    certified_matches,
    certify_detection,
    matches,
    single_point_ap,
)
from lrsjax.detection._synthetic import (
    BACKGROUND,
    LEVELS,
    DetectionData,
    oracle_detector,
    synthetic_rectangles,
)

__all__ = [
    "BACKGROUND",
    "LEVELS",
    "DetectionCertificate",
    "DetectionData",
    "Matches",
    "boxes_to_vectors",
    "certified_matches",
    "certify_detection",
    "iou",
    "matches",
    "oracle_detector",
    "single_point_ap",
    "synthetic_rectangles",
    "worst_case_iou",
]
