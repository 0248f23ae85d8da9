"""Run directories: result-file schema, atomic per-item writes and resume.

Schema (version `SCHEMA_VERSION` = 1) of one run directory:

    RUN_DIR/
      config.json            written once by `RunDir.start`
      items/<item_id>.npz    arrays of one item (written first, atomically)
      items/<item_id>.json   record of one item (written last, atomically: marks completion)
      summary.json           `write_summary` (lrsjax.results._summary)
      summary.txt            the same as a fixed-width table
      timings/<item_id>.json wall-clock times of one item (written before the item; kept out of
                             items/ so that the same command and seed reproduce items/ bit for
                             bit; NPZ members carry fixed time stamps for the same reason)

config.json:
  schema_version  int, SCHEMA_VERSION
  kind            "lrsjax-run"
  task            "image" | "graph"
  config          dict, the command's full configuration (all flags), JSON values only
  seeds           dict, named seeds (ints or lists of ints)
  versions        dict: lrsjax, jax, jaxlib, flax, optax, ortools, numpy, scipy, python
                  (str, or null where a package is missing)
  devices         list of {id, platform, device_kind, process_index} from jax.devices() (in a
                  multi-process run, the devices of every process)
  created_utc     ISO 8601 time of the first start
  A run is identified by (schema_version, task, config, seeds): `RunDir.start` with the same
  identity resumes, with a different one it fails (unless `overwrite=True`, which deletes the
  old results) once an item file exists; before that, the new identity replaces the old one.
  Config keys named in `RunDir.start(extend=...)` may grow on resume (config.json records the
  new value; finished items stay).
  versions/devices may differ on resume (a warning is issued).

items/<item_id>.json (item_id: letters, digits, '.', '_', '-'; not starting with '.'):
  schema_version  int
  item_id         str, equal to the file name stem
  task            "image" | "graph"
  budget_kind     "l2" | "l1" | "binary"
  num_classes     int C
  num_outputs     int D, all outputs of the item (pixels / nodes)
  num_evaluated   int, outputs that count (label != ignore label / held-out test nodes)
  num_correct     int, evaluated, not abstained, prediction == label
  num_abstained   int, evaluated and abstained
  confusion       int [C + 1][C], rows predicted class (row C = abstained), columns true class,
                  evaluated outputs only (so it sums to num_evaluated)
  methods         {method name: method record}, e.g. "localized_lp", "localized_milp",
                  "localized_naive", "isotropic_naive", "isotropic_holm"
  timings         {name: seconds}, e.g. sampling_s, certify_s (floats or null)
  seeds           {name: int or list of ints}, e.g. the JAX key data of this item
  extra           dict, free-form JSON (optional)
  arrays          {name: {"shape": [...], "dtype": str}} of the NPZ (filled by `write_item`)
  npz_sha256      hex digest of the NPZ file (filled by `write_item`)

method record (one per method, per item):
  mode                   str: "lp" | "hull" | "milp" (collective), "naive", "holm",
                         "bonferroni", "rank_levels", ... : which certificate produced the numbers
  budgets                [B] floats (l2/l1 radii eps, strictly increasing, >= 0) or
                         [B][2] ints (additions, deletions) for budget_kind "binary"
  num_certified          [B] ints, certified outputs (target set "all": every evaluated,
                         non-abstained output), a sound lower bound
  num_certified_correct  [B] ints, certified and correct (target set "correct")
  solver                 [B] str or null (e.g. "GLOP", "SCIP"; null for closed-form certificates)
  status                 [B] str or null (e.g. "OPTIMAL", "TIME_LIMIT_BOUND", "LP_FALLBACK")
  seconds                [B] floats or null, solve time per budget
  certified_radius_sum   float or null: sum over evaluated outputs of the per-output certified
                         radius if correct (else 0); set for methods with per-output radii
  num_certified_correct_per_class
                         optional [B][C] ints: certified and correct outputs by true class (row b
                         sums to num_certified_correct[b]); stored by methods with per-output
                         certificates, absent for collective ones and in older records
  num_evaluated, num_correct, num_abstained, confusion: optional overrides of the item-level
                         fields, for methods whose smoothing differs (e.g. isotropic baselines
                         stored next to a localized run)
  extra                  dict, free-form JSON (optional)

items/<item_id>.npz (np.savez_compressed, loaded with allow_pickle=False; no object arrays):
  prediction  int [H, W] (image) or [N] (graph), predicted class (any value where abstained)
  abstain     bool, same shape
  radius      float, same shape, per-output (naive) certified radius, 0 where abstained
  labels      int, same shape (ignore label 255 for unlabelled pixels)
  image       float [C, H, W] in [0, 1] (optional, image tasks; used by lrsjax-report)
  evaluated   bool, same shape (optional; graph tasks: held-out test nodes)
  <name>__<method>  optional per-method versions of the arrays above

JSON never holds NaN or infinity (they become null); numpy scalars become Python numbers.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import math
import numbers
import pathlib
import platform
import re
import warnings
import zipfile
from typing import NamedTuple

import numpy as np

from lrsjax import _checks
from lrsjax.results import _atomic, _metrics

SCHEMA_VERSION = 1
TASKS = ("image", "graph")
BUDGET_KINDS = ("l2", "l1", "binary")
VERSIONED_PACKAGES = ("lrsjax", "jax", "jaxlib", "flax", "optax", "ortools", "numpy", "scipy")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_ARRAY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,199}")
_IDENTITY = ("schema_version", "task", "config", "seeds")


# --------------------------------------------------------------------------- JSON safety


def to_jsonable(obj):
    """A copy of `obj` that `json.dumps(..., allow_nan=False)` accepts.

    numpy scalars and arrays become Python numbers and lists, NaN and +-inf become None, tuples
    become lists, paths become strings. Dict keys must be strings. Anything else raises TypeError.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings; got {key!r}. Use str keys.")
            out[key] = to_jsonable(value)
        return out
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    raise TypeError(
        f"cannot store a {type(obj).__name__} in a result file; got {obj!r:.80}. "
        "Convert it to numbers, strings, lists or dicts."
    )


def _canonical(obj) -> str:
    return json.dumps(to_jsonable(obj), sort_keys=True, allow_nan=False)


# --------------------------------------------------------------------------- environment


def collect_environment() -> dict:
    """Library versions and the JAX devices of this process (for config.json)."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    try:
        import jax

        devices = [
            {
                "id": int(d.id),
                "platform": str(d.platform),
                "device_kind": str(getattr(d, "device_kind", "")),
                "process_index": int(getattr(d, "process_index", 0)),
            }
            for d in jax.devices()
        ]
    except Exception as error:  # a broken accelerator setup must not lose the run's metadata
        devices = [{"error": f"{type(error).__name__}: {error}"}]
    return {"versions": versions, "devices": devices}


# --------------------------------------------------------------------------- records


def output_metrics(
    prediction, labels, abstain, num_classes, *, evaluated=None, ignore_label=255
) -> dict:
    """Item-level (or method-level) metric fields computed from the per-output arrays.

    Args:
      prediction, labels: int arrays of one shape (labels hold `ignore_label` where unlabelled).
      abstain: bool array, same shape.
      num_classes: C.
      evaluated: optional bool mask, same shape (e.g. test nodes); default: every output whose
        label is not `ignore_label`.
      ignore_label: excluded label (None for none).
    Returns:
      {"num_outputs", "num_evaluated", "num_correct", "num_abstained", "confusion"} (the schema).
    """
    prediction = _checks.as_int_array("prediction", prediction)
    labels = _checks.as_int_array("labels", labels)
    abstain = _checks.as_bool_array("abstain", abstain)
    _checks.same_shape(("prediction", "labels", "abstain"), (prediction, labels, abstain))
    if evaluated is None:
        evaluated = np.ones(labels.shape, bool)
    evaluated = _checks.as_bool_array("evaluated", evaluated)
    _checks.same_shape(("labels", "evaluated"), (labels, evaluated))
    prediction, labels, abstain = prediction[evaluated], labels[evaluated], abstain[evaluated]
    confusion = _metrics.confusion_matrix(prediction, labels, num_classes, ignore_label, abstain)
    counted = labels != ignore_label if ignore_label is not None else np.ones(labels.shape, bool)
    return {
        "num_outputs": int(evaluated.size),
        "num_evaluated": int(counted.sum()),
        "num_correct": int((counted & ~abstain & (prediction == labels)).sum()),
        "num_abstained": int((counted & abstain).sum()),
        "confusion": confusion.tolist(),
    }


def method_record(
    mode,
    budgets,
    num_certified,
    num_certified_correct,
    *,
    solver=None,
    status=None,
    seconds=None,
    certified_radius_sum=None,
    metrics=None,
    extra=None,
    num_certified_correct_per_class=None,
) -> dict:
    """One method's entry of an item record (see the module docstring).

    `solver`, `status`, `seconds` may be one value (repeated over the B budgets) or a list of B.
    `metrics`: optional `output_metrics(...)` of this method's own prediction (its smoothing differs
    from the item's); only num_evaluated, num_correct, num_abstained and confusion are kept.
    `num_certified_correct_per_class`: optional int [B, C] (`per_class_certified_counts`), for
    the per-class certified accuracy of the report.
    """
    budgets = to_jsonable(budgets)
    num_budgets = len(budgets) if isinstance(budgets, list) else 0

    def per_budget(value):
        if isinstance(value, list | tuple | np.ndarray):
            return to_jsonable(list(value))
        return [to_jsonable(value)] * num_budgets

    record = {
        "mode": mode,
        "budgets": budgets,
        "num_certified": to_jsonable(num_certified),
        "num_certified_correct": to_jsonable(num_certified_correct),
        "solver": per_budget(solver),
        "status": per_budget(status),
        "seconds": per_budget(seconds),
        "certified_radius_sum": to_jsonable(certified_radius_sum),
    }
    if num_certified_correct_per_class is not None:
        record["num_certified_correct_per_class"] = to_jsonable(
            np.asarray(num_certified_correct_per_class)
        )
    if metrics is not None:
        for key in ("num_evaluated", "num_correct", "num_abstained", "confusion"):
            record[key] = to_jsonable(metrics[key])
    if extra:
        record["extra"] = to_jsonable(extra)
    return record


def item_record(
    item_id,
    *,
    task,
    budget_kind,
    num_classes,
    prediction,
    labels,
    abstain,
    methods,
    evaluated=None,
    ignore_label=255,
    timings=None,
    seeds=None,
    extra=None,
) -> dict:
    """Builds and validates the record of one item from its per-output arrays.

    `methods` maps method names to `method_record(...)` dicts. The metric fields come from
    `output_metrics(prediction, labels, abstain, num_classes, ...)`.
    """
    metrics = output_metrics(
        prediction, labels, abstain, num_classes, evaluated=evaluated, ignore_label=ignore_label
    )
    record = {
        "schema_version": SCHEMA_VERSION,
        "item_id": item_id,
        "task": task,
        "budget_kind": budget_kind,
        "num_classes": num_classes,
        **metrics,
        "methods": dict(methods),
        "timings": dict(timings or {}),
        "seeds": dict(seeds or {}),
    }
    if extra:
        record["extra"] = extra
    return validate_item_record(record)


def _bad(where: str, value, rule: str, fix: str = "") -> None:
    _checks.fail(where, value, rule, fix)


def _count(where: str, value, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        _bad(where, value, "must be an integer >= 0")
    if high is not None and value > high:
        _bad(where, value, f"must be <= {high}", "Counts cannot exceed the evaluated outputs.")
    return int(value)


def _check_metric_fields(where: str, rec: dict, num_classes: int) -> None:
    n = _count(f"{where}['num_evaluated']", rec["num_evaluated"])
    correct = _count(f"{where}['num_correct']", rec["num_correct"], n)
    abstained = _count(f"{where}['num_abstained']", rec["num_abstained"], n)
    if correct + abstained > n:
        _bad(
            f"{where}: num_correct + num_abstained",
            correct + abstained,
            f"must be <= num_evaluated = {n}",
        )
    try:
        confusion = np.asarray(rec["confusion"])
    except ValueError:
        confusion = np.zeros(0)
    if confusion.shape != (num_classes + 1, num_classes) or confusion.dtype.kind not in "iu":
        _bad(
            f"{where}['confusion']",
            confusion,
            f"must be an integer matrix of shape [{num_classes + 1}, {num_classes}]",
            "Use output_metrics (confusion_matrix with the abstain mask).",
        )
    checks = (
        ("sum", int(confusion.sum()), n, "num_evaluated"),
        ("trace", int(np.trace(confusion[:num_classes])), correct, "num_correct"),
        ("abstain row sum", int(confusion[num_classes].sum()), abstained, "num_abstained"),
    )
    for what, got, want, field in checks:
        if np.any(confusion < 0) or got != want:
            _bad(f"{where}['confusion']", confusion, f"{what} ({got}) must equal {field} ({want})")


def _check_budgets(where: str, budgets, budget_kind: str) -> int:
    if not isinstance(budgets, list) or not budgets:
        _bad(where, budgets, "must be a non-empty list", "Pass the budget grid.")
    if budget_kind == "binary":
        ok = all(
            isinstance(b, list)
            and len(b) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in b)
            and min(b) >= 0
            for b in budgets
        )
        if not ok or len({tuple(b) for b in budgets}) != len(budgets):
            _bad(
                where,
                budgets,
                "must be distinct [additions, deletions] pairs of integers >= 0",
                "Pass e.g. [[0, 0], [0, 1], [1, 0]].",
            )
    else:
        ok = all(
            isinstance(b, numbers.Real) and not isinstance(b, bool) and math.isfinite(b)
            for b in budgets
        )
        if not ok or budgets[0] < 0 or np.any(np.diff(np.asarray(budgets, float)) <= 0):
            _bad(where, budgets, "must be finite, >= 0 and strictly increasing", "Sort the grid.")
    return len(budgets)


def validate_item_record(record: dict) -> dict:
    """Checks an item record against the schema and returns its JSON-safe copy.

    Beyond types and shapes it checks consistency: the confusion matrix sums to num_evaluated,
    its trace is num_correct, its abstain row num_abstained; per budget
    0 <= num_certified_correct <= num_certified <= num_evaluated - num_abstained and
    num_certified_correct <= num_correct.
    """
    if not isinstance(record, dict):
        _bad("record", record, "must be a dict", "Build it with item_record.")
    record = to_jsonable(record)
    required = (
        "schema_version",
        "item_id",
        "task",
        "budget_kind",
        "num_classes",
        "num_outputs",
        "num_evaluated",
        "num_correct",
        "num_abstained",
        "confusion",
        "methods",
    )
    missing = [key for key in required if key not in record]
    if missing:
        _bad("record", sorted(record), f"misses the field(s) {missing}", "See the schema.")
    if record["schema_version"] != SCHEMA_VERSION:
        _bad("record['schema_version']", record["schema_version"], f"must be {SCHEMA_VERSION}")
    _check_item_id(record["item_id"])
    _checks.one_of("record['task']", record["task"], TASKS)
    _checks.one_of("record['budget_kind']", record["budget_kind"], BUDGET_KINDS)
    num_classes = _checks.positive_int("record['num_classes']", record["num_classes"])
    num_outputs = _count("record['num_outputs']", record["num_outputs"])
    _count("record['num_evaluated']", record["num_evaluated"], num_outputs)
    _check_metric_fields("record", record, num_classes)
    methods = record["methods"]
    if not isinstance(methods, dict) or not methods:
        _bad("record['methods']", methods, "must be a non-empty dict", "Add method_record(...)s.")
    for name, method in methods.items():
        _check_method(name, method, record, num_classes)
    for key in ("timings", "seeds", "extra"):
        if key in record and not isinstance(record[key], dict):
            _bad(f"record['{key}']", record[key], "must be a dict")
    record.setdefault("timings", {})
    record.setdefault("seeds", {})
    return record


def _check_method(name: str, method, record: dict, num_classes: int) -> None:
    where = f"record['methods'][{name!r}]"
    if not isinstance(name, str) or not _NAME.fullmatch(name) or "__" in name:
        _bad("method name", name, "must match [A-Za-z0-9_][A-Za-z0-9._-]* without '__'")
    if not isinstance(method, dict):
        _bad(where, method, "must be a dict", "Build it with method_record.")
    for key in ("mode", "budgets", "num_certified", "num_certified_correct"):
        if key not in method:
            _bad(where, sorted(method), f"misses the field {key!r}", "Use method_record.")
    if not isinstance(method["mode"], str) or not method["mode"]:
        _bad(f"{where}['mode']", method["mode"], "must be a non-empty string", "e.g. 'lp'.")
    num_budgets = _check_budgets(f"{where}['budgets']", method["budgets"], record["budget_kind"])
    overrides = ["num_evaluated", "num_correct", "num_abstained", "confusion"]
    present = [k for k in overrides if k in method]
    if present and len(present) != len(overrides):
        _bad(where, present, f"must override all of {overrides} or none", "Use output_metrics.")
    source = method if present else record
    if present:
        _check_metric_fields(where, method, num_classes)
    n = source["num_evaluated"]
    certified = method["num_certified"]
    certified_correct = method["num_certified_correct"]
    for key, values in (("num_certified", certified), ("num_certified_correct", certified_correct)):
        if not isinstance(values, list) or len(values) != num_budgets:
            _bad(f"{where}['{key}']", values, f"must be a list of {num_budgets} counts")
        for value in values:
            _count(f"{where}['{key}']", value, n - source["num_abstained"])
    for c, cc in zip(certified, certified_correct):
        if cc > c or cc > source["num_correct"]:
            _bad(
                f"{where}['num_certified_correct']",
                certified_correct,
                "must not exceed num_certified nor num_correct at any budget",
                "Certified-correct outputs are certified and correct.",
            )
    if "num_certified_correct_per_class" in method:
        _check_per_class(where, method, source, num_budgets, num_classes)
    for key in ("solver", "status", "seconds"):
        values = method.get(key)
        if values is None:
            method[key] = [None] * num_budgets
        elif not isinstance(values, list) or len(values) != num_budgets:
            _bad(f"{where}['{key}']", values, f"must be a list of {num_budgets} entries or None")
    radius_sum = method.get("certified_radius_sum")
    if radius_sum is not None and (not isinstance(radius_sum, numbers.Real) or radius_sum < 0):
        _bad(f"{where}['certified_radius_sum']", radius_sum, "must be a number >= 0 or None")
    method.setdefault("certified_radius_sum", None)


def _check_per_class(where, method, source, num_budgets: int, num_classes: int) -> None:
    where = f"{where}['num_certified_correct_per_class']"
    values = method["num_certified_correct_per_class"]
    try:
        counts = np.asarray(values)
    except ValueError:
        counts = np.zeros(0)
    if counts.shape != (num_budgets, num_classes) or counts.dtype.kind not in "iu":
        _bad(
            where,
            values,
            f"must be an integer matrix of shape [{num_budgets}, {num_classes}] (budget, class)",
            "Build it with per_class_certified_counts.",
        )
    counts = counts.astype(np.int64).reshape(num_budgets, num_classes)
    correct_per_class = np.diag(np.asarray(source["confusion"], np.int64)[:num_classes])
    if (
        np.any(counts < 0)
        or np.any(counts > correct_per_class)
        or counts.sum(axis=1).tolist() != list(method["num_certified_correct"])
    ):
        _bad(
            where,
            values,
            "must hold counts >= 0, at most the correct outputs of each class, summing to "
            "num_certified_correct at every budget",
            "Count certified-and-correct outputs by their true class.",
        )


def _check_item_id(item_id) -> str:
    if not isinstance(item_id, str) or not _NAME.fullmatch(item_id):
        _bad(
            "item_id",
            item_id,
            "must be 1-200 characters of letters, digits, '.', '_' or '-', not starting with '.'",
            "Use e.g. 'voc_2007_000033' or 'graph_0'.",
        )
    return item_id


def _check_arrays(arrays) -> dict:
    if not isinstance(arrays, dict):
        _bad("arrays", arrays, "must be a dict of name -> array")
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _ARRAY_NAME.fullmatch(name):
            _bad("arrays", name, "names must be identifiers such as 'prediction'")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            _bad(
                f"arrays[{name!r}]",
                arr,
                "must be a boolean, integer or float array (no objects or strings)",
                "Result files are loaded with allow_pickle=False.",
            )
        out[name] = arr
    return out


# --------------------------------------------------------------------------- run directory


class ItemScan(NamedTuple):
    """The item files of a run directory (`RunDir.scan_items`).

    Fields:
      done: sorted ids of the finished items.
      broken: {item id: what is wrong}, items whose JSON record exists but whose record or NPZ
        is unusable (truncated JSON, NPZ missing or corrupt).
      unfinished: sorted ids of items with an NPZ but no record yet (an interrupted write).
    """

    done: list
    broken: dict
    unfinished: list


class RunDir:
    """One run directory (see the module docstring for the schema).

    `RunDir(path)` is a cheap handle; `RunDir.start(...)` creates or resumes a run,
    `RunDir.existing(path)` opens one for reading. Items are written with `write_item`
    (NPZ first, then the JSON record, each atomically), so an item is done exactly when both
    files are complete; anything else (a leftover .tmp from a kill, a truncated file) is ignored
    and the item is recomputed. A done item is never overwritten.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._identity = None  # set by `start`; `write_item` checks config.json still holds it
        self._digests = {}  # (path, inode, size, mtime) -> sha256 of the NPZ files already read

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> pathlib.Path:
        return self.path / "config.json"

    @property
    def items_dir(self) -> pathlib.Path:
        return self.path / "items"

    def json_path(self, item_id) -> pathlib.Path:
        return self.items_dir / f"{_check_item_id(item_id)}.json"

    def npz_path(self, item_id) -> pathlib.Path:
        return self.items_dir / f"{_check_item_id(item_id)}.npz"

    def timings_path(self, item_id) -> pathlib.Path:
        return self.path / "timings" / f"{_check_item_id(item_id)}.json"

    def write_timings(self, item_id, timings: dict) -> None:
        """Wall-clock times of one item, kept beside (not in) the result files.

        Times differ from run to run; keeping them out of `items/` lets the same command and seed
        reproduce the result files bit for bit. Written atomically, before the item itself.
        """
        _atomic.write_json(self.timings_path(item_id), to_jsonable(dict(timings)))

    def load_timings(self, item_id) -> dict:
        """The item's timings ({} if none were written or the file is unreadable)."""
        try:
            return json.loads(self.timings_path(item_id).read_text())
        except (OSError, ValueError):
            return {}

    # ---------------------------------------------------------------- config

    @classmethod
    def start(
        cls,
        path,
        config,
        *,
        task=None,
        seeds=None,
        overwrite=False,
        environment=None,
        extend=(),
    ) -> RunDir:
        """Creates the run (writes config.json) or resumes it if the identity matches.

        A directory whose run has no finished or partly written item yet (e.g. the command failed
        on a bad data path) holds nothing to lose: a different configuration simply replaces it.

        Args:
          path: the run directory (created if missing).
          config: dict, the command's full configuration (JSON values).
          task: "image" or "graph"; default `config["task"]`.
          seeds: dict of named seeds.
          overwrite: if the directory holds a different run, delete its results and start over.
          environment: {"versions", "devices"}; default `collect_environment()`.
          extend: config keys whose value may grow on resume (e.g. "num_images" when the first
            items do not depend on it): a larger value keeps the finished items and records the
            new value in config.json; a smaller one is refused.
        Raises:
          ValueError: the directory holds a different run with items (and not `overwrite`), or is
            unreadable.
        """
        run = cls(path)
        if not isinstance(config, dict):
            _bad(
                "config",
                config,
                "must be a dict of flag values",
                "Pass e.g. FLAGS.flag_values_dict().",
            )
        if task is not None and config.get("task", task) != task:
            _bad("task", task, f"must equal config['task'] = {config['task']!r}", "Pass one task.")
        task = config.get("task") if task is None else task
        _checks.one_of("task", task, TASKS)
        identity = {
            "schema_version": SCHEMA_VERSION,
            "task": task,
            "config": to_jsonable(config),
            "seeds": to_jsonable(dict(seeds or {})),
        }
        keep = overwrite or not run._item_files()  # nothing finished: nothing to protect
        if run.config_path.exists():
            try:
                old = json.loads(run.config_path.read_text())
                old_identity = {key: old[key] for key in _IDENTITY}
            except (OSError, ValueError, KeyError, TypeError) as error:
                if not keep:
                    raise ValueError(
                        f"{run.config_path} is unreadable or not an lrsjax run config ({error}). "
                        "Pass --overwrite to start a new run there, or choose another directory."
                    ) from None
                old_identity = None
            if old_identity is not None and _canonical(old_identity) == _canonical(identity):
                run._warn_environment(old, environment)
                run._identity = identity
                return run
            if old_identity is not None and _extends(old_identity, identity, extend, run.path):
                run._warn_environment(old, environment)
                _atomic.write_json(run.config_path, to_jsonable({**old, **identity}))
                run._identity = identity
                return run
            if not keep:
                raise ValueError(
                    f"{run.path} already holds a different run: {_diff(old_identity, identity)}. "
                    "Rerun with the same configuration to resume, pass --overwrite to delete the "
                    "old results, or choose another output directory."
                )
            _refuse_delete_with_other_processes(run.path)
            run._delete_results()
        elif run._result_files():
            if not keep:
                raise ValueError(
                    f"{run.path} holds result files but no config.json, so it cannot be resumed "
                    "safely. Pass --overwrite to delete them, or choose another directory."
                )
            _refuse_delete_with_other_processes(run.path)
            run._delete_results()
        env = collect_environment() if environment is None else environment
        content = {
            **identity,
            "kind": "lrsjax-run",
            "versions": env.get("versions", {}),
            "devices": env.get("devices", []),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        run.items_dir.mkdir(parents=True, exist_ok=True)
        _atomic.write_json(run.config_path, to_jsonable(content))
        run._identity = identity
        return run

    @classmethod
    def existing(cls, path) -> RunDir:
        """Opens a run directory (or the --out_dir holding it as results/) for reading; clear
        errors if it is missing or not a run."""
        run = cls(path)
        if not run.path.is_dir():
            raise FileNotFoundError(
                f"run directory {str(run.path)!r} does not exist. Pass the --out_dir of a "
                "finished or running lrsjax-certify command."
            )
        nested = cls(run.path / "results")  # the --out_dir of lrsjax-certify holds results/
        if not run.config_path.is_file() and nested.config_path.is_file():
            run = nested
        run.read_config()
        return run

    def read_config(self) -> dict:
        """The parsed config.json (ValueError/FileNotFoundError with the fix if unusable)."""
        if not self.config_path.is_file():
            raise FileNotFoundError(
                f"{str(self.path)!r} is not an lrsjax run directory (no config.json). Pass the "
                "--out_dir of an lrsjax-certify command."
            )
        try:
            config = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.config_path} is unreadable ({error}).") from None
        if not isinstance(config, dict) or config.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{self.config_path} has schema_version "
                f"{config.get('schema_version') if isinstance(config, dict) else None!r}; this "
                f"lrsjax reads version {SCHEMA_VERSION}. Use the lrsjax version that wrote it."
            )
        return config

    def _warn_environment(self, old: dict, environment) -> None:
        env = collect_environment() if environment is None else environment
        if to_jsonable(env.get("versions")) != old.get("versions"):
            warnings.warn(
                f"resuming {self.path} with different library versions: "
                f"{_diff(old.get('versions'), to_jsonable(env.get('versions')))}",
                stacklevel=3,
            )

    def _result_files(self) -> list[pathlib.Path]:
        files = []
        for folder in (self.items_dir, self.path / "timings"):
            if folder.is_dir():
                files += [p for p in folder.iterdir() if p.suffix in (".json", ".npz", ".tmp")]
        files += [p for p in (self.path / "summary.json", self.path / "summary.txt") if p.exists()]
        return files

    def _item_files(self) -> list[pathlib.Path]:
        """Item files, finished or not (temporary files of an interrupted write excluded)."""
        if not self.items_dir.is_dir():
            return []
        return [p for p in self.items_dir.iterdir() if p.suffix in (".json", ".npz")]

    def _delete_results(self) -> None:
        for file in self._result_files():
            file.unlink()
        if self.config_path.exists():
            self.config_path.unlink()

    # ---------------------------------------------------------------- items

    def is_done(self, item_id) -> bool:
        """True iff the item's JSON record and NPZ are both complete and consistent (the NPZ's
        sha256 equals the one in the record)."""
        return self._load_done_record(item_id) is not None

    def _load_done_record(self, item_id) -> dict | None:
        record, _ = self._check_item(item_id)
        return record

    def _check_item(self, item_id) -> tuple[dict | None, str]:
        """(record, "") of a done item, else (None, what is wrong with its files)."""
        json_path, npz_path = self.json_path(item_id), self.npz_path(item_id)
        if not json_path.exists():
            return None, "no JSON record (interrupted before the item finished)"
        try:
            record = json.loads(json_path.read_text())
        except (OSError, ValueError) as error:
            return None, f"unreadable or truncated JSON record ({type(error).__name__})"
        if (
            not isinstance(record, dict)
            or record.get("schema_version") != SCHEMA_VERSION
            or record.get("item_id") != item_id
            or not isinstance(record.get("arrays"), dict)
            or not isinstance(record.get("npz_sha256"), str)
        ):
            return None, "the JSON is not a finished lrsjax item record of this schema"
        if not npz_path.exists():
            return None, "NPZ file missing"
        try:
            with zipfile.ZipFile(npz_path) as archive:
                names = set(archive.namelist())
            digest = self._npz_digest(npz_path)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            return None, f"corrupt NPZ ({type(error).__name__})"
        if names != {f"{name}.npy" for name in record["arrays"]}:
            return None, "corrupt NPZ (its arrays differ from the record)"
        if digest != record["npz_sha256"]:
            return None, "corrupt NPZ (sha256 differs from the record)"
        return record, ""

    def _npz_digest(self, path: pathlib.Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = _sha256(path)
        return self._digests[key]

    def scan_items(self) -> ItemScan:
        """Every item that has a file in items/, sorted into done, broken and unfinished.

        An item is broken when its JSON record exists (written last, so the item once finished)
        but the record or its NPZ cannot be used; unfinished when only its NPZ exists (a write
        that was interrupted). Resuming recomputes both.
        """
        if not self.items_dir.is_dir():
            return ItemScan([], {}, [])
        ids = {p.stem for p in self._item_files() if _NAME.fullmatch(p.stem)}
        done, broken, unfinished = [], {}, []
        for item_id in sorted(ids):
            record, problem = self._check_item(item_id)
            if record is not None:
                done.append(item_id)
            elif self.json_path(item_id).exists():
                broken[item_id] = problem
            else:
                unfinished.append(item_id)
        return ItemScan(done, broken, unfinished)

    def done_items(self) -> list[str]:
        """Sorted ids of the finished items."""
        if not self.items_dir.is_dir():
            return []
        ids = [p.stem for p in self.items_dir.glob("*.json") if _NAME.fullmatch(p.stem)]
        return sorted(i for i in ids if self.is_done(i))

    def pending(self, item_ids) -> list[str]:
        """The ids of `item_ids` that are not done yet, in the given order."""
        return [i for i in item_ids if not self.is_done(i)]

    def write_item(self, item_id, record: dict, arrays: dict) -> None:
        """Validates and writes one finished item: NPZ first, then the JSON record (atomically).

        Raises ValueError if the item is already done (finished items are never overwritten) or
        the record/arrays break the schema. Leftover files of an interrupted attempt are replaced.
        """
        _check_item_id(item_id)
        if self.is_done(item_id):
            raise ValueError(
                f"item {item_id!r} is already finished in {self.path}; finished items are never "
                "overwritten. Skip done items (RunDir.pending) or use a new run directory."
            )
        record = validate_item_record(record)
        self._check_identity()
        if record["item_id"] != item_id:
            _bad("record['item_id']", record["item_id"], f"must equal item_id={item_id!r}")
        arrays = _check_arrays(arrays)
        self.items_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tmp(item_id)
        npz_path = self.npz_path(item_id)
        with _atomic.atomic_path(npz_path) as tmp:
            _write_npz(tmp, arrays)
        record["arrays"] = {
            name: {"shape": list(arr.shape), "dtype": arr.dtype.str} for name, arr in arrays.items()
        }
        record["npz_sha256"] = _sha256(npz_path)
        _atomic.write_json(self.json_path(item_id), record)

    def _check_identity(self) -> None:
        """Refuses to write under a config.json that another command replaced meanwhile."""
        if self._identity is None:
            return
        try:
            current = json.loads(self.config_path.read_text())
            current = {key: current[key] for key in _IDENTITY}
        except (OSError, ValueError, KeyError, TypeError):
            current = None
        if current is None or _canonical(current) != _canonical(self._identity):
            raise RuntimeError(
                f"{self.config_path} changed while this run was writing to {self.path} "
                f"({_diff(current, self._identity)}): another command uses the same output "
                "directory. Give each command its own --out_dir."
            )

    def load_record(self, item_id) -> dict:
        """The JSON record of a done item."""
        record = self._load_done_record(item_id)
        if record is None:
            raise FileNotFoundError(
                f"item {item_id!r} is not finished in {self.path}. Done items: "
                f"{self.done_items()[:10]}"
            )
        return record

    def load_item(self, item_id, *, verify=False) -> tuple[dict, dict[str, np.ndarray]]:
        """(record, arrays) of a done item; `verify=True` also checks the NPZ's sha256."""
        record = self.load_record(item_id)
        npz_path = self.npz_path(item_id)
        if verify and _sha256(npz_path) != record["npz_sha256"]:  # re-read, bypassing the cache
            raise ValueError(f"{npz_path} does not match the sha256 in its record (corrupted).")
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return record, arrays

    def _remove_stale_tmp(self, item_id) -> None:
        for name in (f"{item_id}.json", f"{item_id}.npz"):
            for tmp in self.items_dir.glob(f".{glob_escape(name)}.*.tmp"):
                tmp.unlink(missing_ok=True)


def _refuse_delete_with_other_processes(path) -> None:
    """Raises ValueError in a multi-process JAX run: one process deleting results could delete
    items that another process has just written into the same directory."""
    import jax

    if jax.process_count() > 1:
        raise ValueError(
            f"{path} holds results of another run, and deleting them (--overwrite) in a run of "
            f"{jax.process_count()} processes could delete items the other processes write. "
            "Delete the directory (or run once with --overwrite in one process) first, then "
            "start the processes without --overwrite."
        )


def _write_npz(path, arrays: dict) -> None:
    """A compressed NPZ (readable by np.load) whose bytes depend only on the arrays.

    `np.savez_compressed` stamps every member with the current time; fixed stamps and a sorted
    member order make the same results produce the same file, byte for byte.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                          allow_pickle=False)  # fmt: skip


def _extends(old: dict, new: dict, keys, path) -> bool:
    """True if `new` differs from `old` only by larger values of config `keys`.

    Raises ValueError if it differs only by those keys but one of them shrank.
    """
    old_config, new_config = old.get("config"), new.get("config")
    if not keys or not isinstance(old_config, dict) or not isinstance(new_config, dict):
        return False
    rest = [k for k in _IDENTITY if k != "config"]
    if _canonical({k: old[k] for k in rest}) != _canonical({k: new[k] for k in rest}):
        return False
    strip = [k for k in keys if k in old_config and k in new_config]
    old_rest = {k: v for k, v in old_config.items() if k not in strip}
    new_rest = {k: v for k, v in new_config.items() if k not in strip}
    if not strip or _canonical(old_rest) != _canonical(new_rest):
        return False
    for key in strip:
        before, after = old_config[key], new_config[key]
        if not all(isinstance(v, numbers.Real) for v in (before, after)):
            return False
        if after < before:
            _bad(
                key,
                after,
                f"must be >= {before}, the value of the run in {path} (a run only grows)",
                f"Pass --{key}={before} or more to resume it, --overwrite to start over, or "
                "another output directory.",
            )
    return True


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _diff(old, new) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{old!r:.120} != {new!r:.120}"
    parts = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            parts.append(f"{key} added")
        elif key not in new:
            parts.append(f"{key} removed")
        elif _canonical(old[key]) != _canonical(new[key]):
            if isinstance(old[key], dict) and isinstance(new[key], dict):
                parts.append(f"{key}: ({_diff(old[key], new[key])})")
            else:
                parts.append(f"{key}: {old[key]!r:.60} -> {new[key]!r:.60}")
    return "; ".join(parts) or "no difference"
