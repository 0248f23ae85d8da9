"""Result files (schema, atomic writes, resume), metrics and summaries."""

from lrsjax.results._atomic import atomic_path, write_bytes, write_json, write_text
from lrsjax.results._metrics import (
    ACR_RULE,
    CertifiedCounts,
    CertifiedCurve,
    acr_from_curve,
    average_certified_radius,
    certified_accuracy_curve,
    certified_counts,
    confusion_matrix,
    curve_from_counts,
    mean_iou,
    per_class_iou,
)
from lrsjax.results._report import make_report
from lrsjax.results._run import (
    SCHEMA_VERSION,
    RunDir,
    collect_environment,
    item_record,
    method_record,
    output_metrics,
    to_jsonable,
    validate_item_record,
)
from lrsjax.results._summary import format_table, summarize, write_summary

__all__ = [
    "ACR_RULE",
    "SCHEMA_VERSION",
    "CertifiedCounts",
    "CertifiedCurve",
    "RunDir",
    "acr_from_curve",
    "atomic_path",
    "average_certified_radius",
    "certified_accuracy_curve",
    "certified_counts",
    "collect_environment",
    "confusion_matrix",
    "curve_from_counts",
    "format_table",
    "item_record",
    "make_report",
    "mean_iou",
    "method_record",
    "output_metrics",
    "per_class_iou",
    "summarize",
    "to_jsonable",
    "validate_item_record",
    "write_bytes",
    "write_json",
    "write_summary",
    "write_text",
]
