"""lrsjax.results: metrics (hand-solved and brute force), run directories, resume, summaries."""

import json
import math
import os

import numpy as np
import pytest

from lrsjax import results

ENV = {"versions": {"lrsjax": "test"}, "devices": [{"id": 0, "platform": "cpu"}]}


# --------------------------------------------------------------------------- metrics


def test_confusion_matrix_hand_case_with_abstain_and_ignore():
    prediction = np.array([[0, 1, -1], [2, 1, 7]])
    labels = np.array([[0, 0, 1], [255, 1, 2]])
    abstain = np.array([[False, False, True], [False, False, True]])
    confusion = results.confusion_matrix(prediction, labels, 3, abstain=abstain)
    expected = np.zeros((4, 3), np.int64)
    expected[0, 0] = 1  # (pred 0, true 0)
    expected[1, 0] = 1  # (pred 1, true 0)
    expected[3, 1] = 1  # abstain, true 1
    expected[1, 1] = 1  # (pred 1, true 1)
    expected[3, 2] = 1  # abstain, true 2; the ignored pixel (pred 2) is not counted
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.sum() == 5


def test_confusion_matrix_without_abstain_is_square_and_matches_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=200)
    labels[rng.random(200) < 0.2] = 255
    prediction = rng.integers(0, 4, size=200)
    confusion = results.confusion_matrix(prediction, labels, 4)
    reference = np.zeros((4, 4), np.int64)
    for p, t in zip(prediction, labels):
        if t != 255:
            reference[p, t] += 1
    np.testing.assert_array_equal(confusion, reference)


def test_confusion_matrix_rejects_bad_inputs():
    with pytest.raises(ValueError, match="labels"):
        results.confusion_matrix(np.array([0, 1]), np.array([0, 5]), 3)
    with pytest.raises(ValueError, match="prediction"):  # counted, not abstained, out of range
        results.confusion_matrix(np.array([0, -1]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="abstain"):
        results.confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3, abstain=np.array([1, 0]))
    with pytest.raises(ValueError, match="ignore_label"):
        results.confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3, ignore_label=1)


def _brute_force_miou(prediction, labels, abstain, num_classes):
    ious = []
    for c in range(num_classes):
        tp = fp = fn = 0
        for p, t, a in zip(prediction, labels, abstain):
            if t == 255:
                continue
            if not a and p == c and t == c:
                tp += 1
            elif not a and p == c:
                fp += 1
            elif t == c:
                fn += 1
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return float(np.mean(ious))


def test_mean_iou_hand_case():
    # class 0: TP 1, FN 1 (a 1), FP 0 -> 1/2; class 1: TP 1, FP 1, FN 1 (abstained) -> 1/3;
    # class 2 never occurs (union 0) and is left out of the mean.
    prediction = np.array([0, 1, 1, 0])
    labels = np.array([0, 0, 1, 1])
    abstain = np.array([False, False, False, True])
    confusion = results.confusion_matrix(prediction, labels, 3, abstain=abstain)
    assert results.mean_iou(confusion) == pytest.approx((1 / 2 + 1 / 3) / 2)
    iou = results.per_class_iou(confusion)
    assert np.isnan(iou[2])


def test_mean_iou_matches_brute_force_and_abstaining_is_never_a_true_positive():
    rng = np.random.default_rng(1)
    for _ in range(5):
        labels = rng.integers(0, 3, size=60)
        labels[rng.random(60) < 0.1] = 255
        prediction = rng.integers(0, 3, size=60)
        abstain = rng.random(60) < 0.3
        confusion = results.confusion_matrix(prediction, labels, 3, abstain=abstain)
        assert results.mean_iou(confusion) == pytest.approx(
            _brute_force_miou(prediction, labels, abstain, 3)
        )
        # Abstaining on an output that was correct can only lower every IoU.
        correct = np.flatnonzero((prediction == labels) & ~abstain)
        more = abstain.copy()
        more[correct[:3]] = True
        before = results.per_class_iou(confusion)
        after = results.per_class_iou(results.confusion_matrix(prediction, labels, 3, abstain=more))
        assert np.all(np.nan_to_num(after) <= np.nan_to_num(before) + 1e-12)


def test_mean_iou_all_abstained_is_zero_and_nothing_evaluated_is_nan():
    confusion = results.confusion_matrix(
        np.zeros(4, int), np.array([0, 1, 0, 1]), 2, abstain=np.ones(4, bool)
    )
    assert results.mean_iou(confusion) == 0.0
    assert math.isnan(results.mean_iou(np.zeros((3, 2), int)))


def test_certified_accuracy_curve_hand_case():
    certified = np.array(
        [[True, True], [True, False], [True, True], [False, False], [True, True]], bool
    )
    correct = np.array([True, True, False, True, True])
    evaluated = np.array([True, True, True, True, False])
    abstain = np.array([False, False, False, True, False])
    curve = results.certified_accuracy_curve(certified, correct, evaluated, abstain)
    # evaluated: 0, 1, 2, 3 (4 outputs). certified at b0: 0, 1, 2; at b1: 0, 2.
    np.testing.assert_allclose(curve.certified_ratio, [3 / 4, 2 / 4])
    np.testing.assert_allclose(curve.certified_accuracy, [2 / 4, 1 / 4])
    assert curve.clean_accuracy == pytest.approx(2 / 4)  # output 3 abstains: counted wrong
    assert curve.num_evaluated == 4
    # an abstained output is never certified, even if the mask says so
    counts = results.certified_counts(np.ones((2, 1), bool), np.ones(2, bool), None, [True, False])
    assert counts.num_certified.tolist() == [1] and counts.num_correct == 1


def test_average_certified_radius_hand_case():
    radii = np.array([0.5, 1.0, 2.0, 0.0])
    correct = np.array([True, False, True, False])
    assert results.average_certified_radius(radii, correct) == pytest.approx(2.5 / 4)
    evaluated = np.array([True, True, False, True])
    assert results.average_certified_radius(radii, correct, evaluated) == pytest.approx(0.5 / 3)


def test_acr_from_curve_hand_made_step_curve():
    # CA(0.25) = 0.8 holds on (0, 0.25], CA(0.5) = 0.5 on (0.25, 0.5], CA(1.0) = 0.1 on (0.5, 1]
    budgets = [0.25, 0.5, 1.0]
    assert results.acr_from_curve(budgets, [0.8, 0.5, 0.1]) == pytest.approx(
        0.25 * 0.8 + 0.25 * 0.5 + 0.5 * 0.1
    )
    # a curve that rises (e.g. solver noise) is replaced by its suffix maximum: CA(0.25) >= 0.5
    assert results.acr_from_curve(budgets, [0.4, 0.5, 0.1]) == pytest.approx(
        0.25 * 0.5 + 0.25 * 0.5 + 0.5 * 0.1
    )
    assert results.acr_from_curve([0.0, 1.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="increasing"):
        results.acr_from_curve([0.5, 0.25], [0.5, 0.5])
    assert "lower Riemann sum" in results.ACR_RULE


def test_acr_from_curve_is_a_lower_bound_exact_on_the_grid():
    rng = np.random.default_rng(2)
    grid = np.linspace(0.0, 2.0, 21)
    correct = rng.random(300) < 0.8
    for radii in (rng.choice(grid, size=300), rng.uniform(0, 2.5, size=300)):
        certified = radii[:, None] >= grid[None, :]
        curve = results.certified_accuracy_curve(certified, correct)
        from_curve = results.acr_from_curve(grid, curve.certified_accuracy)
        exact = results.average_certified_radius(radii, correct)
        assert from_curve <= exact + 1e-12
        if np.all(np.isin(radii, grid)):
            assert from_curve == pytest.approx(exact)
    # integer budgets: the mean largest certified integer budget
    largest = rng.integers(0, 6, size=50)
    budgets = np.arange(0, 8)
    accuracy = (largest[:, None] >= budgets[None, :]).mean(axis=0)
    assert results.acr_from_curve(budgets, accuracy) == pytest.approx(largest.mean())


# --------------------------------------------------------------------------- run directories


def _item(item_id, prediction, labels, abstain, methods, **kw):
    return results.item_record(
        item_id,
        task=kw.pop("task", "image"),
        budget_kind=kw.pop("budget_kind", "l2"),
        num_classes=kw.pop("num_classes", 2),
        prediction=np.asarray(prediction),
        labels=np.asarray(labels),
        abstain=np.asarray(abstain, bool),
        methods=methods,
        **kw,
    )


def _simple_item(item_id="img_0", timings=None):
    record = _item(
        item_id,
        [0, 1, 1, 0],
        [0, 0, 1, 255],
        [False, False, True, False],
        {"localized_lp": results.method_record("lp", [0.1, 0.2], [2, 1], [1, 0], solver="GLOP")},
        timings=timings,
    )
    arrays = {
        "prediction": np.array([[0, 1], [1, 0]], np.int32),
        "abstain": np.array([[False, False], [True, False]]),
        "radius": np.array([[0.3, 0.1], [0.0, 0.2]]),
        "labels": np.array([[0, 0], [1, 255]], np.int64),
    }
    return record, arrays


def _start(path, config=None, **kw):
    return results.RunDir.start(path, config or {"task": "image", "n": 10}, environment=ENV, **kw)


def test_run_dir_config_written_once_resume_and_mismatch(tmp_path):
    run = _start(tmp_path / "run", seeds={"data": 1})
    config = json.loads(run.config_path.read_text())
    assert config["schema_version"] == results.SCHEMA_VERSION
    assert config["task"] == "image" and config["config"] == {"task": "image", "n": 10}
    assert config["seeds"] == {"data": 1}
    run.write_item("img_0", *_simple_item())
    stat = os.stat(run.config_path)
    # same identity: resume, results kept, config.json untouched
    again = _start(tmp_path / "run", {"n": 10, "task": "image"}, seeds={"data": 1})
    assert again.done_items() == ["img_0"]
    assert (os.stat(run.config_path).st_ino, os.stat(run.config_path).st_mtime_ns) == (
        stat.st_ino,
        stat.st_mtime_ns,
    )
    other_env = {"versions": {"lrsjax": "other"}, "devices": []}
    with pytest.warns(UserWarning, match="different library versions"):
        results.RunDir.start(
            tmp_path / "run", {"task": "image", "n": 10}, seeds={"data": 1}, environment=other_env
        )
    with pytest.raises(ValueError, match=r"different run.*n: 10 -> 11.*--overwrite"):
        _start(tmp_path / "run", {"task": "image", "n": 11}, seeds={"data": 1})
    with pytest.raises(ValueError, match="seeds"):
        _start(tmp_path / "run", seeds={"data": 2})
    assert run.done_items() == ["img_0"]  # a refused start deletes nothing
    fresh = _start(tmp_path / "run", {"task": "image", "n": 11}, seeds={"data": 1}, overwrite=True)
    assert fresh.done_items() == []
    assert json.loads(fresh.config_path.read_text())["config"]["n"] == 11


def test_run_dir_refuses_results_without_config(tmp_path):
    run = _start(tmp_path / "run")
    run.write_item("img_0", *_simple_item())
    run.config_path.unlink()
    with pytest.raises(ValueError, match="no config.json"):
        _start(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="not an lrsjax run directory"):
        results.RunDir.existing(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        results.RunDir.existing(tmp_path / "nowhere")


def test_run_dir_without_items_is_not_locked_by_its_config(tmp_path):
    # a command that failed before its first item (bad data path) left only config.json
    _start(tmp_path / "run", {"task": "image", "data_dir": "/wrong"})
    (tmp_path / "run" / "items" / ".img_0.npz.abc.tmp").write_bytes(b"partial")
    fixed = _start(tmp_path / "run", {"task": "image", "data_dir": "/right"})
    assert json.loads(fixed.config_path.read_text())["config"]["data_dir"] == "/right"
    fixed.write_item("img_0", *_simple_item())
    # once an item exists, a different configuration is refused again
    with pytest.raises(ValueError, match="different run.*--overwrite"):
        _start(tmp_path / "run", {"task": "image", "data_dir": "/other"})
    assert fixed.done_items() == ["img_0"]


def test_run_dir_unreadable_config_without_items_is_replaced(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"schema_ver')
    run = _start(tmp_path / "run")
    assert json.loads(run.config_path.read_text())["config"] == {"task": "image", "n": 10}


def test_run_dir_extends_a_growing_key_and_keeps_finished_items(tmp_path):
    config = {"task": "image", "n": 10, "num_images": 1}
    run = _start(tmp_path / "run", config, extend=("num_images",))
    run.write_item("img_0", *_simple_item())
    created = json.loads(run.config_path.read_text())["created_utc"]
    bigger = _start(tmp_path / "run", {**config, "num_images": 3}, extend=("num_images",))
    assert bigger.done_items() == ["img_0"]
    stored = json.loads(bigger.config_path.read_text())
    assert stored["config"]["num_images"] == 3 and stored["created_utc"] == created
    bigger.write_item("img_1", *_simple_item("img_1"))
    with pytest.raises(ValueError, match=r"`num_images` must be >= 3.*--num_images=3"):
        _start(tmp_path / "run", {**config, "num_images": 2}, extend=("num_images",))
    with pytest.raises(ValueError, match="different run"):  # another key changed too
        _start(tmp_path / "run", {**config, "num_images": 4, "n": 11}, extend=("num_images",))
    with pytest.raises(ValueError, match="different run"):  # growth only where allowed
        _start(tmp_path / "run", {**config, "num_images": 4})
    assert bigger.done_items() == ["img_0", "img_1"]


def test_write_item_refuses_a_config_replaced_by_another_command(tmp_path):
    first = _start(tmp_path / "run", {"task": "image", "n": 10})
    _start(tmp_path / "run", {"task": "image", "n": 11})  # no items yet: replaces the config
    with pytest.raises(RuntimeError, match="another command uses the same output directory"):
        first.write_item("img_0", *_simple_item())
    assert first.done_items() == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_result_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = _start(tmp_path / "run")
        run.write_item("img_0", *_simple_item())
        results.write_summary(run)
    finally:
        os.umask(old)
    for path in (run.config_path, run.json_path("img_0"), run.npz_path("img_0")):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, path
    assert os.stat(run.path / "summary.json").st_mode & 0o777 == 0o666 & ~umask


def test_collect_environment_names_every_library():
    env = results.collect_environment()
    for name in ("lrsjax", "jax", "jaxlib", "flax", "optax", "ortools", "numpy", "scipy", "python"):
        assert env["versions"][name], name
    assert env["devices"] and env["devices"][0]["platform"]


def test_write_and_load_item_roundtrip(tmp_path):
    run = _start(tmp_path / "run")
    record, arrays = _simple_item(timings={"sampling_s": float("nan"), "certify_s": 1.5})
    assert not run.is_done("img_0")
    run.write_item("img_0", record, arrays)
    assert run.is_done("img_0") and run.done_items() == ["img_0"]
    loaded, loaded_arrays = run.load_item("img_0", verify=True)
    assert set(loaded_arrays) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded_arrays[name], value)
        assert loaded_arrays[name].dtype == value.dtype
    assert loaded["num_evaluated"] == 3 and loaded["num_correct"] == 1
    assert loaded["num_abstained"] == 1
    assert loaded["methods"]["localized_lp"]["solver"] == ["GLOP", "GLOP"]
    assert loaded["arrays"]["prediction"] == {"shape": [2, 2], "dtype": "<i4"}
    # no NaN in the file: the NaN timing is stored as null
    text = run.json_path("img_0").read_text()

    def no_constants(name):
        raise AssertionError(f"{name} in JSON")

    parsed = json.loads(text, parse_constant=no_constants)
    assert parsed["timings"] == {"sampling_s": None, "certify_s": 1.5}


def test_leftover_tmp_and_truncated_json_are_not_done_and_get_recomputed(tmp_path):
    run = _start(tmp_path / "run")
    record, arrays = _simple_item()
    # a kill after the NPZ but before the JSON: the NPZ is there, the JSON only as a .tmp
    run.write_item("img_0", record, arrays)
    json_path = run.json_path("img_0")
    json_path.rename(run.items_dir / ".img_0.json.abc123.tmp")
    assert not run.is_done("img_0") and run.done_items() == []
    run.write_item("img_0", record, arrays)
    assert run.is_done("img_0")
    assert not list(run.items_dir.glob("*.tmp"))  # stale temp files of the item are cleaned up
    # a truncated JSON (e.g. copied half-way) is not done either
    json_path.write_text(json_path.read_text()[:40])
    assert not run.is_done("img_0") and run.done_items() == []
    run.write_item("img_0", record, arrays)
    assert run.is_done("img_0")
    # a truncated NPZ is not done
    npz = run.npz_path("img_0")
    npz.write_bytes(npz.read_bytes()[:20])
    assert not run.is_done("img_0")
    # only a .tmp exists (kill during the NPZ): not done
    other = tmp_path / "run" / "items" / ".img_1.npz.xyz.tmp"
    other.write_bytes(b"partial")
    assert not run.is_done("img_1")
    assert run.pending(["img_0", "img_1"]) == ["img_0", "img_1"]


def test_done_item_is_never_rewritten(tmp_path):
    run = _start(tmp_path / "run")
    run.write_item("img_0", *_simple_item())
    paths = (run.json_path("img_0"), run.npz_path("img_0"))
    before = [(os.stat(p).st_ino, os.stat(p).st_mtime_ns, p.read_bytes()) for p in paths]
    with pytest.raises(ValueError, match="never overwritten"):
        run.write_item("img_0", *_simple_item())
    after = [(os.stat(p).st_ino, os.stat(p).st_mtime_ns, p.read_bytes()) for p in paths]
    assert before == after


def test_record_validation_catches_inconsistent_records(tmp_path):
    record, arrays = _simple_item()
    bad = json.loads(json.dumps(record))
    bad["methods"]["localized_lp"]["num_certified_correct"] = [2, 0]  # 2 > num_correct = 1
    with pytest.raises(ValueError, match="num_certified_correct"):
        results.validate_item_record(bad)
    bad = json.loads(json.dumps(record))
    bad["methods"]["localized_lp"]["num_certified"] = [3, 1]  # 3 > evaluated - abstained = 2
    with pytest.raises(ValueError, match="num_certified"):
        results.validate_item_record(bad)
    bad = json.loads(json.dumps(record))
    bad["num_correct"] = 2
    with pytest.raises(ValueError, match="confusion"):
        results.validate_item_record(bad)
    bad = json.loads(json.dumps(record))
    bad["methods"]["localized_lp"]["budgets"] = [0.2, 0.1]
    with pytest.raises(ValueError, match="increasing"):
        results.validate_item_record(bad)
    run = _start(tmp_path / "run")
    with pytest.raises(ValueError, match="allow_pickle"):
        run.write_item("img_0", record, {"names": np.array(["a", "b"], dtype=object)})
    with pytest.raises(ValueError, match="item_id"):
        run.write_item("../escape", record, arrays)
    assert not run.is_done("img_0")


def test_to_jsonable_converts_numpy_and_nan():
    value = results.to_jsonable(
        {"a": np.float32(0.5), "b": np.int64(3), "c": (np.nan, np.inf), "d": np.arange(2)}
    )
    assert value == {"a": 0.5, "b": 3, "c": [None, None], "d": [0, 1]}
    assert type(value["b"]) is int
    with pytest.raises(TypeError):
        results.to_jsonable({"a": object()})


# --------------------------------------------------------------------------- summaries


def _two_item_run(tmp_path):
    run = _start(tmp_path / "run")
    a = _item(
        "a",
        [0, 1, 1, 0],
        [0, 0, 1, 255],
        [False, False, True, False],
        {
            "localized_lp": results.method_record(
                "lp", [0.1, 0.2], [2, 1], [1, 0], status=["OPTIMAL", "OPTIMAL"]
            ),
            "localized_naive": results.method_record(
                "naive", [0.1, 0.2], [1, 0], [1, 0], certified_radius_sum=0.3
            ),
        },
        timings={"certify_s": 1.0},
    )
    b = _item(
        "b",
        [1, 1, 1],
        [1, 1, 0],
        [False, False, False],
        {
            "localized_lp": results.method_record(
                "lp", [0.1, 0.2], [3, 1], [2, 1], status="TIME_LIMIT_BOUND"
            ),
            "localized_naive": results.method_record(
                "naive", [0.1, 0.2], [2, 0], [2, 0], certified_radius_sum=0.6
            ),
        },
        timings={"certify_s": 2.5},
    )
    arrays = {"prediction": np.zeros(3, np.int64)}
    run.write_item("a", a, arrays)
    run.write_item("b", b, arrays)
    return run


def test_summary_pools_over_items_like_a_hand_computation(tmp_path):
    run = _two_item_run(tmp_path)
    summary = results.summarize(run.path)
    assert summary["num_items"] == 2 and summary["item_ids"] == ["a", "b"]
    lp = summary["methods"]["localized_lp"]
    assert lp["num_evaluated"] == 6 and lp["num_correct"] == 3
    assert lp["clean_accuracy"] == pytest.approx(3 / 6)
    np.testing.assert_allclose(lp["certified_accuracy"], [3 / 6, 1 / 6])
    np.testing.assert_allclose(lp["certified_ratio"], [5 / 6, 2 / 6])
    assert lp["acr"] == pytest.approx(0.1 * 3 / 6 + 0.1 * 1 / 6)
    # pooled confusion: class 0 TP 1, FP 0, FN 2 -> 1/3; class 1 TP 2, FP 2, FN 1 -> 2/5
    # (the mean of the per-item mIoUs, (1/4 + 1/3) / 2, would differ)
    assert lp["miou"] == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert lp["statuses"] == {"OPTIMAL": 2, "TIME_LIMIT_BOUND": 2}
    assert lp["acr_per_output"] is None
    naive = summary["methods"]["localized_naive"]
    assert naive["acr_per_output"] == pytest.approx(0.9 / 6)
    np.testing.assert_allclose(naive["certified_accuracy"], [3 / 6, 0])
    assert summary["timings"] == {"certify_s": 3.5}
    written = results.write_summary(run.path)
    assert json.loads((run.path / "summary.json").read_text()) == written
    table = (run.path / "summary.txt").read_text()
    assert table == results.format_table(summary)
    assert "localized_lp" in table and "localized_naive" in table
    assert "0.5000 / 0.8333" in table and "lower Riemann sum" in table


def test_summary_rejects_different_budget_grids(tmp_path):
    run = _start(tmp_path / "run")
    for item_id, budgets in (("a", [0.1, 0.2]), ("b", [0.1, 0.3])):
        record = _item(
            item_id,
            [0, 1],
            [0, 1],
            [False, False],
            {"localized_lp": results.method_record("lp", budgets, [1, 1], [1, 1])},
        )
        run.write_item(item_id, record, {"prediction": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="one budget grid per method"):
        results.summarize(run)


def test_summary_of_a_graph_run_integrates_along_both_axes(tmp_path):
    run = _start(tmp_path / "run", {"task": "graph"})
    budgets = [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
    record = _item(
        "graph_0",
        [0, 1, 1, 0],
        [0, 1, 1, 1],
        [False, False, False, False],
        {"localized_lp": results.method_record("lp", budgets, [3, 3, 2, 1, 0], [3, 3, 2, 1, 0])},
        task="graph",
        budget_kind="binary",
        evaluated=np.array([True, True, True, True]),
        ignore_label=None,
    )
    run.write_item("graph_0", record, {"prediction": np.zeros(4, np.int64)})
    lp = results.summarize(run)["methods"]["localized_lp"]
    assert lp["acr_deletions"] == pytest.approx(3 / 4 + 2 / 4)
    assert lp["acr_additions"] == pytest.approx(1 / 4)
    assert lp["acr"] is None
    assert "a=1,d=1" in results.format_table(results.summarize(run))
