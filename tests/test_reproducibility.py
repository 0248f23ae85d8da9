"""Reproducibility (issue #7): the same command and seed give the same result files.

`lrsjax-certify` runs the tiny synthetic segmentation job in subprocesses, on 1 device and on 4
simulated CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=4`), and the result files
are compared: every item file (JSON record and NPZ arrays) byte for byte, and, to localise a
difference, the NPZ arrays bit for bit and the JSON records without wall-clock fields (`timings`,
per-method `seconds`; the run keeps its times in a side folder, timings/, not compared). The
run's config.json must record the library versions, the seeds and the devices, and every
collective method its solver and status.

Fast suite: one 1-device and one 4-device run on a saved checkpoint. Slow suite (`pytest -m
slow`): the same twice more (across runs), and the whole command with training on 1 and 4 devices.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import numpy as np
import pytest
from _tiny_job import certify_command, save_tiny_checkpoint, strip_wall_clock, subprocess_env

SEED = 3  # --seed of the tiny job in these tests


def run_certify(out_dir: pathlib.Path, devices: int = 1, extra=(), timeout: float = 600):
    cmd = certify_command(out_dir, SEED, extra)
    result = subprocess.run(
        cmd, env=subprocess_env(devices), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir / "results"


def load_npz(path: pathlib.Path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def compare_runs(a: pathlib.Path, b: pathlib.Path) -> list[str]:
    """Differences between two result directories, wall-clock fields ignored ([] = identical)."""
    diffs = []
    names_a = sorted(p.name for p in (a / "items").iterdir() if not p.name.startswith("."))
    names_b = sorted(p.name for p in (b / "items").iterdir() if not p.name.startswith("."))
    if names_a != names_b:
        return [f"item files differ: {names_a} vs {names_b}"]
    for name in names_a:
        pa, pb = a / "items" / name, b / "items" / name
        if name.endswith(".json"):
            ra, rb = json.loads(pa.read_text()), json.loads(pb.read_text())
            if strip_wall_clock(ra) != strip_wall_clock(rb):
                diffs.append(f"{name}: record differs")
        else:
            xa, xb = load_npz(pa), load_npz(pb)
            if sorted(xa) != sorted(xb):
                diffs.append(f"{name}: array names differ")
                continue
            for key in xa:
                if xa[key].dtype != xb[key].dtype or xa[key].tobytes() != xb[key].tobytes():
                    diffs.append(f"{name}[{key}] differs")
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    if strip_wall_clock(sa) != strip_wall_clock(sb):
        diffs.append("summary.json differs")
    return diffs


def wall_clock_fields(run: pathlib.Path) -> set[str]:
    """Which wall-clock data the item records of a run hold (the run keeps them in timings/)."""
    found = set()
    for path in (run / "items").glob("*.json"):
        record = json.loads(path.read_text())
        if record.get("timings"):
            found.add("timings")
        for method in record["methods"].values():
            if any(s is not None for s in method.get("seconds") or []):
                found.add("methods.*.seconds")
    return found


def _check_metadata(run: pathlib.Path, devices: int) -> None:
    config = json.loads((run / "config.json").read_text())
    for package in ("lrsjax", "jax", "jaxlib", "numpy", "scipy", "ortools", "python"):
        assert config["versions"].get(package), f"config.json lacks the {package} version"
    assert config["seeds"] == {"seed": 3}
    assert config["config"]["seed"] == 3 and config["config"]["n"] == 24
    assert len(config["devices"]) == devices
    assert all(d["platform"] == "cpu" for d in config["devices"])
    for path in (run / "items").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["seeds"]["seed"] == 3 and record["seeds"]["item_key"]
        collective = record["methods"]["localized_lp"]
        assert collective["mode"] == "lp"
        assert all(isinstance(s, str) and s for s in collective["solver"]), collective["solver"]
        assert all(isinstance(s, str) and s for s in collective["status"]), collective["status"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Result directories of the tiny job on a saved checkpoint: {"1a": 1 device, "4a": 4}."""
    root = tmp_path_factory.mktemp("repro")
    extra = (f"--checkpoint={save_tiny_checkpoint(root / 'tiny.msgpack')}",)
    return {
        "extra": extra,
        "1a": run_certify(root / "1a", 1, extra),
        "4a": run_certify(root / "4a", 4, extra),
    }


def test_one_and_four_devices_give_identical_results(runs):
    assert compare_runs(runs["1a"], runs["4a"]) == []


def test_result_files_record_versions_seeds_devices_and_solver(runs):
    _check_metadata(runs["1a"], 1)
    _check_metadata(runs["4a"], 4)


def test_wall_clock_times_live_beside_the_results(runs):
    """Item records hold no wall-clock data; the times go to timings/<item>.json."""
    assert wall_clock_fields(runs["1a"]) == set()
    items = sorted(p.stem for p in (runs["1a"] / "items").glob("*.json"))
    times = sorted(p.stem for p in (runs["1a"] / "timings").glob("*.json"))
    assert items and times == items


def test_item_files_are_bit_identical(runs):
    """Same command and seed on 1 and 4 devices: every item file (JSON and NPZ) byte for byte."""
    a, b = runs["1a"] / "items", runs["4a"] / "items"
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
def test_reruns_are_identical_slow(runs, tmp_path):
    again_1 = run_certify(tmp_path / "1b", 1, runs["extra"])
    again_4 = run_certify(tmp_path / "4b", 4, runs["extra"])
    for a, b in ((runs["1a"], again_1), (runs["4a"], again_4), (again_1, again_4)):
        assert compare_runs(a, b) == []
    # the whole command, training included, on 1 and 4 devices
    trained_1 = run_certify(tmp_path / "t1", 1)
    trained_4 = run_certify(tmp_path / "t4", 4)
    assert compare_runs(trained_1, trained_4) == []
    print(
        "\nREPRODUCIBILITY: 6 runs (checkpoint: 1, 4, 1, 4 devices; trained: 1, 4 devices) "
        "identical up to wall-clock fields"
    )
