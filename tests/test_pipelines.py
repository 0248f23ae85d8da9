"""End-to-end: train, certify, resume after deleting one item's result, report (tiny configs)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.sparse

from lrsjax import models, pipelines, results, training
from lrsjax.pipelines import _graph, _segmentation

ROOT = pathlib.Path(__file__).resolve().parents[1]
# sample, collective (all), collective (correct), two baseline samplings, write results
GRAPH_STAGES = 6


def _quiet(*args, **kwargs):
    pass


def test_segmentation_job_resumes_and_agrees(tmp_path, monkeypatch, capsys):
    job = pipelines.SegmentationJob.tiny(out_dir=str(tmp_path / "seg"))
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
    # Both isotropic baselines: equal forward passes (K x n) and equal samples per distribution.
    k = job.num_groups
    assert methods["isotropic_naive"]["extra"]["n"] == k * job.n
    assert methods["isotropic_equal_samples"]["extra"]["n"] == job.n
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
    job = pipelines.GraphJob.tiny(out_dir=str(tmp_path / "graph"))
    monkeypatch.setenv("LRSJAX_PROGRESS", "1")  # draw the bars although stderr is captured
    run_path = pipelines.run_graph(job)
    captured = capsys.readouterr()
    # Bars on stderr for training and every stage; stdout holds the log and an intact table.
    assert "train APPNP" in captured.err
    assert f"{GRAPH_STAGES}/{GRAPH_STAGES}" in captured.err
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


def test_jobs_are_nested_sections_with_a_flat_view():
    job = pipelines.SegmentationJob.tiny(n0=5)
    assert job.sampling.n0 == job.n0 == 5 and job.smoothing.grid == (2, 2)
    assert pipelines.SegmentationJob.from_flat(job.flat()) == job
    assert job.replace(depth=3).unet.depth == 3
    # a section given whole, a flat setting on top of it, the other sections at their defaults
    by_section = pipelines.SegmentationJob(sampling=job.sampling, n=9)
    assert (by_section.n0, by_section.n, by_section.batch_size) == (5, 9, job.batch_size)
    assert by_section.depth == pipelines.SegmentationJob().depth
    with pytest.raises(TypeError, match="bogus"):
        pipelines.GraphJob(bogus=1)
    # the flat view is what config.json and the flags hold: every setting once, by its name
    assert list(pipelines.GraphJob().flat())[:2] == ["dataset", "data_dir"]


def _save_unet(path, job, stitched=True):
    model = models.UNet(num_classes=job.num_classes, depth=job.depth, base_width=job.width)
    shape = (3, job.image_size, job.image_size)
    params = models.init_segmentation_params(jax.random.key(0), model, shape)
    job_settings = {**job.flat(), "grid": list(job.grid)}
    if stitched:
        job_settings["localized_training"] = "stitched"
    metadata = {"noise": "localized", "job": job_settings}
    training.save_segmentation_model(path, model, params, input_shape=shape, metadata=metadata)


def test_a_saved_model_trained_otherwise_is_refused_or_retrained(tmp_path, monkeypatch):
    job = pipelines.SegmentationJob.tiny(image_size=8, out_dir=str(tmp_path))
    _save_unet(_segmentation.model_path(job, "localized"), job)
    lines = []
    _segmentation.get_model(job, "localized", log=lines.append)  # same settings: reused
    assert any(line.startswith("reusing") for line in lines)
    # settings of the other smoothing's training do not matter for this model
    _segmentation.get_model(job.replace(sigma=0.5, n=7), "localized", log=lines.append)
    deeper = job.replace(depth=2, train_steps=11)
    with pytest.raises(ValueError, match=r"depth=2 \(saved: 1\).*train_steps.*--overwrite"):
        _segmentation.get_model(deeper, "localized", log=lines.append)
    trained = []
    monkeypatch.setattr(_segmentation, "train_model", lambda *a, **k: trained.append(a) or "new")
    overwrite = deeper.replace(overwrite=True)
    assert _segmentation.get_model(overwrite, "localized", log=lines.append) == "new"
    assert trained and "retraining" in lines[-1]


def test_a_localized_model_trained_on_one_cell_per_image_is_refused(tmp_path):
    # models saved before localized training was stitched record no training form
    job = pipelines.SegmentationJob.tiny(image_size=8, out_dir=str(tmp_path))
    _save_unet(_segmentation.model_path(job, "localized"), job, stitched=False)
    with pytest.raises(ValueError, match="localized_training='stitched'.*one random cell"):
        _segmentation.get_model(job, "localized", log=print)
    _save_unet(_segmentation.model_path(job, "isotropic"), job, stitched=False)
    lines = []
    _segmentation.get_model(job, "isotropic", log=lines.append)  # isotropic training unchanged
    assert any(line.startswith("reusing") for line in lines)


def test_segmentation_job_trains_with_its_loss(tmp_path):
    job = pipelines.SegmentationJob.tiny(
        out_dir=str(tmp_path), loss="smoothadv", train_noise="localized", train_steps=2,
        smoothadv_warmup=2,
    )  # fmt: skip
    paths = pipelines.train_segmentation_models(job, log=print, progress=False)
    assert [p.name for p in paths] == ["unet_localized_smoothadv.msgpack"]
    _, _, meta = training.load_segmentation_model(paths[0])
    assert meta["extra"]["loss"] == "smoothadv" and meta["extra"]["job"]["smoothadv_warmup"] == 2
    # another loss is another model; its settings are part of the model's identity
    other = job.replace(smoothadv_eps=0.25)
    with pytest.raises(ValueError, match="smoothadv_eps=0.25"):
        _segmentation.get_model(other, "localized", log=print)
    with pytest.raises(ValueError, match="loss.*train_noise=matched"):
        pipelines.SegmentationJob.tiny(loss="smoothadv", train_noise="none").validated()


def test_a_saved_graph_model_with_other_settings_is_refused(tmp_path):
    job = pipelines.GraphJob.tiny(out_dir=str(tmp_path))
    model = models.APPNP(num_features=4, num_classes=2, hidden_features=job.hidden)
    tiny_graph = models.graph_to_jraph(scipy.sparse.eye(3, format="csr"))
    params = models.init_graph_model(jax.random.key(0), model, tiny_graph)
    path = _graph.model_path(job)
    # a model saved without its settings still has its architecture checked
    training.save_graph_model(path, model, params, {"train_seconds": 1.0})
    with pytest.raises(ValueError, match="hidden=16"):
        _graph.get_model(job.replace(hidden=16), None, None, None, log=_quiet)
    training.save_graph_model(path, model, params, {"job": job.flat()})
    with pytest.raises(ValueError, match="epochs=20"):
        _graph.get_model(job.replace(epochs=20), None, None, None, log=_quiet)
    lines = []
    _graph.get_model(job, None, None, None, log=lines.append)
    assert lines == [f"reusing {path}"]


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
