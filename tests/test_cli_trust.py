"""The command-line tools never leave a user guessing: Ctrl-C, --help, flags passed through,
file modes, and run folders that resume, extend and unlock as promised."""

import json
import os
import pathlib
import re
import stat
import subprocess
import sys

import _tiny_job
import jax
import numpy as np
import pytest

from lrsjax import data, results, training

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {"versions": {"lrsjax": "test"}, "devices": []}

# Replaces the tool's work with a Ctrl-C (SIGINT sent to the process itself), then runs the tool.
_INTERRUPT = """
import os, signal, sys, time
import {module} as patched
def interrupt(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
setattr(patched, {name!r}, interrupt)
import lrsjax.cli.{tool} as cli
sys.argv = ["lrsjax-{tool}", *{args!r}]
cli.run()
"""


def _start(code: str):
    env = _tiny_job.subprocess_env()
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _start_tool(tool: str, *args):
    code = f"import lrsjax.cli.{tool} as cli, sys\nsys.argv = ['x', *{list(args)!r}]\ncli.run()"
    return _start(code)


def test_a_job_interrupted_by_ctrl_c_exits_130_with_one_line(capsys):
    from lrsjax.cli import _entry, _flags

    if not _flags.FLAGS.is_parsed():
        _flags.FLAGS(["lrsjax-test"])  # every job flag at its default

    def action(task, job):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        try:
            _entry.job_main("lrsjax-certify", action)(["lrsjax-certify"])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped as a KeyboardInterrupt (a traceback for the user)")
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert err.strip() == "lrsjax-certify: interrupted; rerun the same command to resume"


@pytest.mark.slow
def test_ctrl_c_in_every_tool_prints_one_line_and_exits_130(tmp_path):
    run = results.RunDir.start(tmp_path / "run", {"task": "image"}, environment=ENV)
    cases = {
        "certify": ("lrsjax.pipelines", "run_segmentation", [f"--out_dir={tmp_path}/c"]),
        "train": ("lrsjax.pipelines", "train_segmentation_models", [f"--out_dir={tmp_path}/t"]),
        "report": ("lrsjax.results", "summarize", [str(run.path)]),
    }
    procs = {
        tool: _start(_INTERRUPT.format(module=module, name=name, tool=tool, args=args))
        for tool, (module, name, args) in cases.items()
    }
    for tool, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (tool, proc.returncode, err[-2000:])
        assert "Traceback" not in err, (tool, err[-2000:])
        expected = "interrupted" if tool == "report" else "interrupted; rerun the same command"
        assert f"lrsjax-{tool}: {expected}" in err, (tool, err)


def _listed_flags(help_text: str) -> set:
    return set(re.findall(r"^\s+--(?:\[no\])?([a-z_0-9]+):", help_text, re.MULTILINE))


CERTIFICATION_FLAGS = {"n0", "n", "alpha", "mode", "num_bins", "budget_max", "correction",
                       "checkpoint", "num_images", "max_additions", "overwrite"}  # fmt: skip
TRAINING_FLAGS = {"train_steps", "train_noise", "grid", "sigma", "epochs", "train_theta_plus",
                  "out_dir", "seed", "task", "dataset", "max_std_at_boundary"}  # fmt: skip


def test_train_help_lists_training_flags_only():
    proc = _start_tool("train", "--help")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    listed = _listed_flags(out + err)
    assert TRAINING_FLAGS <= listed, TRAINING_FLAGS - listed
    assert not listed & CERTIFICATION_FLAGS, listed & CERTIFICATION_FLAGS


@pytest.mark.slow
def test_certify_help_lists_every_flag_and_train_accepts_old_commands():
    helps = _start_tool("certify", "--help")
    # a certification flag given to lrsjax-train is accepted with a note (the grid error comes
    # from the job's validation, after the flags parsed)
    old = _start_tool("train", "--n0=4", "--mode=milp", "--grid=0x3", "--out_dir=/nonexistent/x")
    out, err = helps.communicate(timeout=120)
    assert helps.returncode == 0, err
    assert TRAINING_FLAGS | CERTIFICATION_FLAGS <= _listed_flags(out + err)
    out, err = old.communicate(timeout=120)
    assert old.returncode == 1 and "Traceback" not in err
    assert "note: --n0, --mode change(s) nothing here; ignored" in err
    assert "`grid`" in err


def test_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        training.save_checkpoint(tmp_path / "model.msgpack", {"w": np.zeros(3)}, {"a": 1})
    finally:
        os.umask(old)
    for name in ("model.msgpack", "model.msgpack.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o664, name


def test_synthetic_test_images_do_not_depend_on_their_count():
    # raising --num_images extends a run: the first images must stay the same
    key = jax.random.PRNGKey(3)
    small = data.synthetic_segmentation(key, 2, image_shape=(8, 8), num_classes=3, split="test")
    large = data.synthetic_segmentation(key, 3, image_shape=(8, 8), num_classes=3, split="test")
    np.testing.assert_array_equal(large.images[:2], small.images)
    np.testing.assert_array_equal(large.labels[:2], small.labels)
    assert large.ids[:2] == small.ids


def test_reproduce_cora_ml_passes_extra_flags_through(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("lrsjax-certify", "lrsjax-report"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho {tool} "$@" >> "{tmp_path}/calls.txt"\n')
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    script = ROOT / "examples" / "reproduce_cora_ml.sh"
    for extra in (["OUT"], ["OUT", "--n=500", "--time_limit_s=5"], ["--n=7"]):
        subprocess.run(["bash", str(script), "DATA", *extra], env=env, check=True, cwd=tmp_path)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    certify = [c for c in calls if c.startswith("lrsjax-certify")]
    report = [c for c in calls if c.startswith("lrsjax-report")]
    assert certify[0].endswith("--out_dir=OUT")
    assert certify[1].endswith("--out_dir=OUT --n=500 --time_limit_s=5")  # last flag wins
    assert certify[2].endswith("--out_dir=lrsjax_runs/cora_ml --n=7")
    assert report[0] == "lrsjax-report OUT --out_dir=OUT/plots"


@pytest.mark.slow
def test_a_failed_start_does_not_lock_and_num_images_extends(tmp_path):
    out = tmp_path / "job"
    env = _tiny_job.subprocess_env()

    def certify(*extra):
        command = _tiny_job.certify_command(out, seed=0, extra=extra)
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)

    missing = tmp_path / "nowhere.msgpack"
    failed = certify(f"--checkpoint={missing}")
    assert failed.returncode == 1 and "nowhere.msgpack" in failed.stderr
    assert (out / "results" / "config.json").is_file()
    checkpoint = _tiny_job.save_tiny_checkpoint(tmp_path / "unet.msgpack")
    first = certify(f"--checkpoint={checkpoint}", "--num_images=2")  # no --overwrite needed
    assert first.returncode == 0, first.stderr[-3000:]
    run = results.RunDir.existing(out)
    assert run.done_items() == ["img0000_synthetic-test-00000", "img0001_synthetic-test-00001"]
    kept = {i: run.json_path(i).stat().st_mtime_ns for i in run.done_items()}
    more = certify(f"--checkpoint={checkpoint}", "--num_images=3")
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(run.done_items()) == 3
    assert {i: run.json_path(i).stat().st_mtime_ns for i in kept} == kept
    config = json.loads(run.config_path.read_text())
    assert config["config"]["num_images"] == 3
    fewer = certify(f"--checkpoint={checkpoint}", "--num_images=1")
    assert fewer.returncode == 1 and "--num_images=3" in fewer.stderr
    # the extended run equals a run made with --num_images=3 from the start
    fresh = tmp_path / "fresh"
    command = _tiny_job.certify_command(fresh, seed=0, extra=(f"--checkpoint={checkpoint}",))
    subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    for item_id in run.done_items():
        a = json.loads(run.json_path(item_id).read_text())
        b = json.loads((fresh / "results" / "items" / f"{item_id}.json").read_text())
        assert _tiny_job.strip_wall_clock(a) == _tiny_job.strip_wall_clock(b), item_id
