"""lrsjax-report: plots of fake image and graph runs written with RunDir, and the CLI."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lrsjax import results

ENV = {"versions": {"lrsjax": "test"}, "devices": []}
PNG = b"\x89PNG\r\n\x1a\n"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _image_run(path, num_items=2, height=6, width=8, num_classes=3):
    run = results.RunDir.start(path, {"task": "image", "sigma": 0.25}, environment=ENV)
    rng = np.random.default_rng(0)
    budgets = [0.0, 0.1, 0.2, 0.4]
    for i in range(num_items):
        labels = rng.integers(0, num_classes, size=(height, width))
        labels[0, :2] = 255
        prediction = np.where(rng.random((height, width)) < 0.7, labels, 0)
        prediction[labels == 255] = 1
        abstain = rng.random((height, width)) < 0.2
        radius = np.where(abstain, 0.0, rng.uniform(0, 0.5, size=(height, width)))
        correct = (prediction == labels) & ~abstain & (labels != 255)
        evaluated = labels != 255
        certified = radius[..., None] >= np.asarray(budgets)
        counts = results.certified_counts(
            certified.reshape(-1, len(budgets)),
            correct.ravel(),
            evaluated.ravel(),
            abstain.ravel(),
        )
        naive = results.method_record(
            "naive",
            budgets,
            counts.num_certified,
            counts.num_certified_correct,
            certified_radius_sum=float(radius[correct].sum()),
        )
        lp = results.method_record(
            "lp",
            budgets,
            counts.num_certified,
            counts.num_certified_correct,
            solver="GLOP",
            status="OPTIMAL",
        )
        record = results.item_record(
            f"img_{i}",
            task="image",
            budget_kind="l2",
            num_classes=num_classes,
            prediction=prediction,
            labels=labels,
            abstain=abstain,
            methods={"localized_lp": lp, "localized_naive": naive},
        )
        arrays = {
            "prediction": prediction.astype(np.int32),
            "abstain": abstain,
            "radius": radius,
            "labels": labels.astype(np.uint8),
            "image": rng.random((3, height, width)).astype(np.float32),
        }
        run.write_item(f"img_{i}", record, arrays)
    return run


def _graph_run(path):
    run = results.RunDir.start(path, {"task": "graph"}, environment=ENV)
    budgets = [[a, d] for a in range(2) for d in range(3)]
    labels = np.array([0, 1, 1, 0, 2])
    record = results.item_record(
        "graph_0",
        task="graph",
        budget_kind="binary",
        num_classes=3,
        prediction=np.array([0, 1, 1, 1, 2]),
        labels=labels,
        abstain=np.array([False, False, False, False, True]),
        evaluated=np.array([True, True, True, True, False]),
        ignore_label=None,
        methods={
            "localized_lp": results.method_record(
                "lp", budgets, [4, 3, 2, 2, 1, 0], [3, 3, 2, 2, 1, 0]
            ),
            "isotropic_naive": results.method_record(
                "naive", budgets, [4, 2, 0, 1, 0, 0], [3, 2, 0, 1, 0, 0]
            ),
        },
    )
    run.write_item("graph_0", record, {"prediction": np.array([0, 1, 1, 1, 2])})
    return run


def _check_pngs(paths):
    paths = [p for p in paths if pathlib.Path(p).suffix == ".png"]
    assert paths
    for path in paths:
        data = pathlib.Path(path).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, path


def test_report_draws_image_run_plots(tmp_path):
    run = _image_run(tmp_path / "image_run")
    other = _image_run(tmp_path / "other_run", num_items=1)
    written = results.make_report([run.path, other.path], tmp_path / "plots")
    names = {p.name for p in written}
    assert {"certified_accuracy.png", "miou_vs_acr.png"} <= names
    # the per-item figure names the method it shows (the item-level arrays: the naive one)
    assert "item_image_run_img_0_localized_naive.png" in names
    assert "item_other_run_img_0_localized_naive.png" in names
    _check_pngs(written)
    chosen = results.make_report(run.path, tmp_path / "one", item="img_1")
    assert "item_image_run_img_1_localized_naive.png" in {p.name for p in chosen}
    with pytest.raises(ValueError, match="not a finished item"):
        results.make_report(run.path, tmp_path / "bad", item="img_9")


def test_report_draws_graph_run_plots(tmp_path):
    run = _graph_run(tmp_path / "graph_run")
    written = results.make_report([run.path], tmp_path / "plots")
    names = {p.name for p in written}
    assert {
        "certified_accuracy_deletions.png",
        "certified_accuracy_additions.png",
        "grid_graph_run_localized_lp.png",
        "grid_graph_run_isotropic_naive.png",
    } == names
    _check_pngs(written)


def test_report_of_a_run_without_finished_items(tmp_path):
    run = results.RunDir.start(tmp_path / "fresh", {"task": "image"}, environment=ENV)
    written = results.make_report(run.path, tmp_path / "plots")
    assert {p.name for p in written} == {"certified_accuracy.png", "miou_vs_acr.png"}
    _check_pngs(written)
    assert "no finished items" in results.format_table(results.summarize(run))


def _cli(*args):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "lrsjax.cli.report", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_cli_help_explains_every_flag():
    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    for flag in ("--out_dir", "--item", "--write_summary", "RUN_DIR", "--labels", "--format",
                 "--skip_broken"):  # fmt: skip
        assert flag in text


def test_cli_writes_plots_and_prints_the_table(tmp_path):
    image = _image_run(tmp_path / "image_run")
    graph = _graph_run(tmp_path / "graph_run")
    out = tmp_path / "plots"
    result = _cli(image.path, graph.path, f"--out_dir={out}", "--write_summary")
    assert result.returncode == 0, result.stderr
    assert "localized_lp" in result.stdout and "certified accuracy" in result.stdout
    assert (image.path / "summary.json").is_file() and (graph.path / "summary.txt").is_file()
    _check_pngs(sorted(out.glob("*.png")))
    assert len(list(out.glob("*.png"))) == 7


def test_cli_errors_are_clear(tmp_path):
    missing = _cli(tmp_path / "nowhere")
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    not_a_run = _cli(tmp_path / "empty")
    assert not_a_run.returncode != 0 and "no config.json" in not_a_run.stderr
    no_args = _cli()
    assert no_args.returncode != 0 and "RUN_DIR" in no_args.stderr


def _layout_run(path, num_images=None, items=2):
    """A run written as lrsjax-certify lays it out: OUT_DIR/results."""
    config = {"task": "image", "sigma": 0.25}
    if num_images is not None:
        config["num_images"] = num_images
    run = results.RunDir.start(path / "results", config, environment=ENV)
    source = _image_run(path / "source", num_items=items)
    for item_id in source.done_items():
        record, arrays = source.load_item(item_id)
        for key in ("arrays", "npz_sha256"):
            record.pop(key)
        run.write_item(item_id, record, arrays)
    return run


def test_cli_accepts_the_certify_out_dir_and_counts_items(tmp_path):
    _layout_run(tmp_path / "job", num_images=3)
    out = tmp_path / "figures"
    result = _cli(tmp_path / "job", f"--out_dir={out}", "--format=svg,pdf")
    assert result.returncode == 0, result.stderr
    assert "items: 2 of 3 (1 not certified yet)" in result.stdout
    assert (out / "certified_accuracy.svg").read_text().lstrip().startswith("<?xml")
    assert (out / "certified_accuracy.pdf").read_bytes().startswith(b"%PDF")
    assert not list(out.glob("*.png"))


def test_broken_items_are_named_and_fail_the_report_unless_skipped(tmp_path):
    run = _image_run(tmp_path / "run", num_items=4)
    json_1 = run.json_path("img_1")
    json_1.write_text(json_1.read_text()[:50])  # truncated record
    run.npz_path("img_2").unlink()  # record without its arrays
    npz_3 = run.npz_path("img_3")
    data = bytearray(npz_3.read_bytes())
    data[60] ^= 0xFF  # a flipped byte inside a member: the zip directory still reads
    npz_3.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"3 broken item\(s\).*img_1.*img_2.*img_3.*--skip_broken"):
        results.summarize(run)
    summary = results.summarize(run, skip_broken=True)
    assert summary["item_ids"] == ["img_0"]
    assert set(summary["broken"]) == {"img_1", "img_2", "img_3"}
    assert "truncated" in summary["broken"]["img_1"]
    assert "NPZ file missing" in summary["broken"]["img_2"]
    assert "corrupt NPZ" in summary["broken"]["img_3"]
    assert not run.is_done("img_3")  # so that resuming recomputes it
    failed = _cli(run.path, f"--out_dir={tmp_path / 'plots'}")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert all(f"img_{i}" in failed.stderr for i in (1, 2, 3))
    skipped = _cli(run.path, f"--out_dir={tmp_path / 'plots'}", "--skip_broken")
    assert skipped.returncode == 0, skipped.stderr
    assert "items: 1 of 4 (3 broken, left out)" in skipped.stdout
    assert "left out, broken: img_2 (NPZ file missing)" in skipped.stdout


def _svg_texts(paths):
    import re

    svg = next(p for p in paths if p.name == "certified_accuracy.svg").read_text()
    return set(re.findall(r"<text[^>]*>([^<]+)</text>", svg))


def test_legend_names_methods_and_runs_by_their_folders(tmp_path):
    import matplotlib

    a = _layout_run(tmp_path / "a")
    b = _layout_run(tmp_path / "b", items=1)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # keep the text as text
        alone = results.make_report(tmp_path / "a", tmp_path / "p1", formats=("svg",))
        both = results.make_report([a.path, b.path], tmp_path / "p2", formats="svg")
        named = results.make_report(
            [a.path, b.path], tmp_path / "p3", formats=("svg",), labels=["loc", "iso"]
        )
    assert {"localized_lp", "localized_naive"} <= _svg_texts(alone)
    assert not any("results" in t for t in _svg_texts(alone) | _svg_texts(both))
    assert {"a: localized_lp", "b: localized_naive"} <= _svg_texts(both)
    assert {"loc: localized_lp", "iso: localized_naive"} <= _svg_texts(named)
    assert "item_a_img_0_localized_naive.svg" in {p.name for p in both}
    same_name = results.run_labels([a, results.RunDir(tmp_path / "x" / "a")])
    assert same_name == [f"{tmp_path.name}/a", "x/a"]
    with pytest.raises(ValueError, match="`labels`.*2 run"):
        results.make_report([a.path, b.path], tmp_path / "p4", labels=["only_one"])
    with pytest.raises(ValueError, match="`format`.*png, pdf, svg"):
        results.make_report(a.path, tmp_path / "p5", formats="png,jpg")


def test_per_item_figure_title_names_the_method(tmp_path):
    import matplotlib

    run = _image_run(tmp_path / "run", num_items=1)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        written = results.make_report(run.path, tmp_path / "p", formats=("svg",))
    (item,) = [p for p in written if p.name.startswith("item_")]
    assert item.name == "item_run_img_0_localized_naive.svg"
    text = item.read_text()
    assert "localized_naive - item img_0" in text and "same prediction as localized_lp" in text


def _per_class_run(path, with_counts=True):
    """One hand-made item: labels [0 0 1 1 2 ignored], prediction [0 1 1 1 2 0], pixel 3
    abstains; naive certificates: pixels 0 and 1 at both budgets, pixel 2 at the first."""
    run = results.RunDir.start(path, {"task": "image", "num_images": 1}, environment=ENV)
    labels = np.array([0, 0, 1, 1, 2, 255])
    prediction = np.array([0, 1, 1, 1, 2, 0])
    abstain = np.array([False, False, False, True, False, False])
    evaluated = labels != 255
    correct = (prediction == labels) & ~abstain & evaluated
    certified = np.array([[1, 1], [1, 1], [1, 0], [0, 0], [0, 0], [1, 1]], bool)
    counts = results.certified_counts(certified, correct, evaluated, abstain)
    per_class = results.per_class_certified_counts(
        certified, correct, labels, 3, evaluated=evaluated, abstain=abstain
    )
    np.testing.assert_array_equal(per_class, [[1, 1, 0], [1, 0, 0]])
    naive = results.method_record(
        "naive",
        [0.1, 0.2],
        counts.num_certified,
        counts.num_certified_correct,
        num_certified_correct_per_class=per_class if with_counts else None,
    )
    lp = results.method_record("lp", [0.1, 0.2], counts.num_certified, [2, 1])
    record = results.item_record(
        "img_0",
        task="image",
        budget_kind="l2",
        num_classes=3,
        prediction=prediction,
        labels=labels,
        abstain=abstain,
        methods={"localized_lp": lp, "localized_naive": naive},
    )
    run.write_item("img_0", record, {"prediction": prediction, "labels": labels})
    return run


def test_per_class_iou_and_certified_accuracy_are_reported(tmp_path):
    run = _per_class_run(tmp_path / "run")
    summary = results.summarize(run)
    naive, lp = summary["methods"]["localized_naive"], summary["methods"]["localized_lp"]
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 1, FP 1, FN 1 (abstained) -> 1/3; class 2: 1
    np.testing.assert_allclose(naive["per_class_iou"], [1 / 2, 1 / 3, 1.0])
    assert naive["class_num_evaluated"] == [2, 2, 1]
    np.testing.assert_allclose(naive["per_class_certified_accuracy"], [[0.5, 0.5, 0], [0.5, 0, 0]])
    assert lp["per_class_certified_accuracy"] is None  # collective: no per-output certificates
    tables = results.format_class_tables(summary)
    assert "per-class IoU" in tables and "0.3333" in tables
    assert any(line.startswith("localized_lp") and "n/a" in line for line in tables.splitlines())
    written = results.make_report(run.path, tmp_path / "plots")
    table_file = tmp_path / "plots" / "per_class_run.txt"
    assert table_file in written and "per-class certified accuracy" in table_file.read_text()


def test_records_without_per_class_counts_still_report(tmp_path):
    run = _per_class_run(tmp_path / "old", with_counts=False)
    record = json.loads(run.json_path("img_0").read_text())
    assert "num_certified_correct_per_class" not in record["methods"]["localized_naive"]
    summary = results.summarize(run)
    assert summary["methods"]["localized_naive"]["per_class_certified_accuracy"] is None
    assert "n/a" in results.format_class_tables(summary)
    assert "items: 1 of 1   " in results.format_table(summary)
    assert results.make_report(run.path, tmp_path / "plots")


def test_per_class_counts_must_agree_with_the_record():
    labels, prediction = np.array([0, 1]), np.array([0, 1])
    for bad in ([[1, 1, 0]], [[2, 0]], [[1, 0]], [[1.0, 1.0]]):  # shape, > correct, sum, type
        method = results.method_record("naive", [0.1], [2], [2])
        method["num_certified_correct_per_class"] = bad
        with pytest.raises(ValueError, match="num_certified_correct_per_class"):
            results.item_record(
                "x",
                task="image",
                budget_kind="l2",
                num_classes=2,
                prediction=prediction,
                labels=labels,
                abstain=np.zeros(2, bool),
                methods={"localized_naive": method},
            )
