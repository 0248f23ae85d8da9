"""End-to-end: train, certify, resume after deleting one item's result, report (tiny configs)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from lrsjax import pipelines, results
from lrsjax.pipelines._graph import STAGES

ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY_SEG = dict(
    image_size=16, num_classes=3, num_train_images=8, num_images=2, depth=1, width=4,
    train_steps=10, train_batch_size=4, grid=(2, 2), n0=8, n=64, batch_size=16,
    budget_min=0.0, budget_max=0.3, budget_steps=4, num_bins=8,
)  # fmt: skip
TINY_GRAPH = dict(
    epochs=10, patience=5, hidden=8, num_clusters=3, n0=16, n=200, batch_size=32,
    max_additions=1, max_deletions=2, deletion_step=1, time_limit_s=5.0, budget_grid="full",
)  # fmt: skip


def _quiet(*args, **kwargs):
    pass


def test_segmentation_job_resumes_and_agrees(tmp_path, monkeypatch, capsys):
    job = pipelines.SegmentationJob(out_dir=str(tmp_path / "seg"), **TINY_SEG)
    monkeypatch.setenv("LRSJAX_PROGRESS", "0")  # no bar: one log line per image instead
    lines = []
    run_path = pipelines.run_segmentation(job, log=lines.append)
    per_image = [line for line in lines if "samples/s" in line]
    assert len(per_image) == 2 and per_image[0].startswith("img0000")
    assert capsys.readouterr().err == ""
    run = results.RunDir.existing(run_path)
    done = run.done_items()
    assert len(done) == 2
    first, second = done
    record, arrays = run.load_item(first, verify=True)
    first_bytes = run.json_path(first).read_bytes()
    assert run.load_timings(first)["total_s"] > 0
    keep_stat = run.json_path(second).stat()
    summary = json.loads((run_path / "summary.json").read_text())

    # Every method certifies at most the non-abstained outputs, never more at a larger budget,
    # and the collective certificate is at least the naive one (same base certificates).
    methods = record["methods"]
    assert {"localized_lp", "localized_naive", "isotropic_naive"} <= set(methods)
    for method in methods.values():
        counts = np.array(method["num_certified"])
        assert np.all(np.diff(counts) <= 0)
        assert counts[0] <= record["num_outputs"]
    lp = np.array(methods["localized_lp"]["num_certified"])
    naive = np.array(methods["localized_naive"]["num_certified"])
    assert np.all(lp >= naive)
    # At budget 0 every non-abstained evaluated pixel is certified.
    evaluated_abstain = (arrays["labels"] != 255) & arrays["abstain"]
    assert naive[0] == record["num_evaluated"] - int(evaluated_abstain.sum())
    assert arrays["prediction"].shape == (16, 16)

    # Delete one item's JSON (as a kill between NPZ and JSON would leave it) and resume.
    run.json_path(first).unlink()
    (run.items_dir / f".{first}.json.123.tmp").write_text("{half")
    monkeypatch.setenv("LRSJAX_PROGRESS", "1")  # a bar on stderr; the results do not change
    pipelines.run_segmentation(job, log=_quiet)
    err = capsys.readouterr().err
    assert "certify images" in err and "1/1" in err and "samples/s" in err
    assert run.done_items() == done
    again, arrays_again = run.load_item(first, verify=True)
    assert run.json_path(first).read_bytes() == first_bytes  # bit-identical recomputation
    for name, value in arrays.items():
        np.testing.assert_array_equal(arrays_again[name], value)
    assert run.json_path(second).stat().st_mtime_ns == keep_stat.st_mtime_ns
    assert json.loads((run_path / "summary.json").read_text())["methods"] == summary["methods"]

    # The report draws the plots from the same files.
    paths = results.make_report([run_path], tmp_path / "plots")
    assert paths and all(p.stat().st_size > 0 for p in paths)


def test_graph_job_runs_and_is_consistent(tmp_path, monkeypatch, capsys):
    job = pipelines.GraphJob(out_dir=str(tmp_path / "graph"), **TINY_GRAPH)
    monkeypatch.setenv("LRSJAX_PROGRESS", "1")  # draw the bars although stderr is captured
    run_path = pipelines.run_graph(job)
    captured = capsys.readouterr()
    # Bars on stderr for training and every stage; stdout holds the log and an intact table.
    assert "train APPNP" in captured.err
    assert f"{len(STAGES)}/{len(STAGES)}" in captured.err
    assert "samples/s" in captured.err
    assert "\r" not in captured.out and "localized_milp" in captured.out
    run = results.RunDir.existing(run_path)
    (item,) = run.done_items()
    record, arrays = run.load_item(item)
    budgets = np.array(record["methods"]["localized_milp"]["budgets"])
    assert budgets.shape == (6, 2)
    assert arrays["evaluated"].sum() == record["num_evaluated"]
    # Train and validation nodes are never certified.
    assert record["num_evaluated"] < arrays["evaluated"].size
    milp = np.array(record["methods"]["localized_milp"]["num_certified"])
    naive = np.array(record["methods"]["localized_naive"]["num_certified"])
    assert np.all(milp >= naive)
    assert all(s is not None for s in record["methods"]["localized_milp"]["status"])


def test_job_validation_names_the_flag():
    with pytest.raises(ValueError, match="grid"):
        pipelines.SegmentationJob(grid=(0, 3)).validated()
    with pytest.raises(ValueError, match="data_dir"):
        pipelines.SegmentationJob(dataset="cityscapes").validated()
    with pytest.raises(ValueError, match="dataset"):
        pipelines.GraphJob(dataset="imagenet").validated()
    with pytest.raises(ValueError, match="budget_max"):
        pipelines.SegmentationJob(budget_min=1.0, budget_max=0.5).validated()


def _cli(*args, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=env,
        cwd=ROOT,
    )  # fmt: skip


def test_cli_help_explains_every_flag():
    out = _cli("lrsjax.cli.certify", "--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for flag in ("--grid", "--std_min", "--n0", "--alpha", "--correction", "--budget_max",
                 "--num_bins", "--mode", "--out_dir", "--seed", "--task", "--dataset"):  # fmt: skip
        assert flag in text


def test_cli_rejects_bad_flags_clearly():
    out = _cli("lrsjax.cli.certify", "--grid=0x3", "--out_dir=/nonexistent/never")
    assert out.returncode != 0
    assert "grid" in out.stderr and "Traceback" not in out.stderr
    out = _cli("lrsjax.cli.certify", "--task=graph", "--grid=3x3")
    assert out.returncode != 0 and "--grid" in out.stderr


@pytest.mark.slow
def test_cli_train_then_certify_then_report(tmp_path):
    flags = [
        "--image_size=16", "--num_classes=3", "--num_train_images=8", "--num_images=1",
        "--depth=1", "--width=4", "--train_steps=5", "--train_batch_size=4", "--grid=2x2",
        "--n0=8", "--n=32", "--budget_steps=3", f"--out_dir={tmp_path}",
    ]  # fmt: skip
    out = _cli("lrsjax.cli.train", *flags)
    assert out.returncode == 0, out.stderr
    out = _cli("lrsjax.cli.certify", *flags)
    assert out.returncode == 0, out.stderr
    assert "localized_lp" in out.stdout
    out = _cli("lrsjax.cli.report", str(tmp_path / "results"))
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "results" / "plots").glob("*.png"))
