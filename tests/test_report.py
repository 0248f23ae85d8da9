"""lrsjax-report: plots of fake image and graph runs written with RunDir, and the CLI."""

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
    assert "item_image_run_img_0.png" in names and "item_other_run_img_0.png" in names
    _check_pngs(written)
    chosen = results.make_report(run.path, tmp_path / "one", item="img_1")
    assert "item_image_run_img_1.png" in {p.name for p in chosen}
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
    for flag in ("--out_dir", "--item", "--write_summary", "RUN_DIR"):
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
