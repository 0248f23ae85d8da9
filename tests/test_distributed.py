"""Runs over several processes (issue #20): `lrsjax-certify` started once per process with a
localhost coordinator (`jax.distributed`) writes item files byte-identical to one process's; a run
whose process was SIGKILLed resumes to the same files; overlapping the host work with the next
item's sampling changes no file.

The multi-process runs certify the tiny segmentation job (6 images, a saved checkpoint) in
subprocesses started by the tests (free ports found by binding port 0, every child killed in
`finally`, every wait bounded); JAX's persistent compilation cache, filled by the one-process
reference run, keeps them to a few seconds. The split, the summary rule, the overlap worker and
the argument checks are tested in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from _tiny_job import certify_command, save_tiny_checkpoint, subprocess_env

from lrsjax import pipelines, results
from lrsjax.pipelines import _distributed, _overlap, _run, _segmentation

SEED = 3
NUM_ITEMS = 4
# Heavier items than the shared tiny job (n = 300): a kill can land between two items.
JOB_FLAGS = (f"--num_images={NUM_ITEMS}", f"--num_train_images={NUM_ITEMS}", "--n=300")
TIMEOUT_S = 240


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it: bind to port 0)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def start_processes(out_dir, count: int, extra=(), devices: int = 1, cache_dir=None) -> list:
    """`count` lrsjax-certify processes of one run (a localhost coordinator), each in its own
    session; returns their Popen objects."""
    port = free_port()
    procs = []
    for index in range(count):
        distributed = (
            f"--coordinator_address=localhost:{port}",
            f"--num_processes={count}",
            f"--process_id={index}",
        )
        procs.append(
            subprocess.Popen(
                certify_command(out_dir, SEED, (*extra, *distributed)),
                env=subprocess_env(devices, cache_dir),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    return procs


def kill_all(procs) -> None:
    """SIGKILLs every process (group) still running and reaps it."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)


def run_processes(out_dir, count: int, extra=(), devices: int = 1, cache_dir=None) -> list:
    """Runs one job over `count` processes to the end; returns their outputs."""
    procs = start_processes(out_dir, count, extra, devices, cache_dir)
    try:
        outputs = [proc.communicate(timeout=TIMEOUT_S)[0] for proc in procs]
    finally:
        kill_all(procs)
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]
    return outputs


def item_files(out_dir: pathlib.Path) -> dict:
    """{name: bytes} of the finished item files (JSON records and NPZ arrays)."""
    items = out_dir / "results" / "items"
    return {p.name: p.read_bytes() for p in sorted(items.iterdir()) if not p.name.startswith(".")}


def assert_same_files(out_dir: pathlib.Path, reference: pathlib.Path) -> None:
    got, expected = item_files(out_dir), item_files(reference)
    assert sorted(got) == sorted(expected)
    assert len(expected) == 2 * NUM_ITEMS
    for name in expected:
        assert got[name] == expected[name], f"{name} differs from the one-process run"
    summary = json.loads((out_dir / "results" / "summary.json").read_text())
    assert summary["num_items"] == NUM_ITEMS


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The job's flags (a saved checkpoint), a compilation cache and the one-process reference."""
    root = tmp_path_factory.mktemp("distributed")
    extra = (*JOB_FLAGS, f"--checkpoint={save_tiny_checkpoint(root / 'tiny.msgpack')}")
    cache_dir = root / "jax_cache"
    reference = root / "reference"
    result = subprocess.run(
        certify_command(reference, SEED, extra),
        env=subprocess_env(1, cache_dir),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"extra": extra, "cache_dir": cache_dir, "reference": reference, "root": root}


def test_two_processes_of_two_devices_give_the_files_of_one_process(job):
    """Each process samples on its own 2 devices (shard_map over local devices only)."""
    out_dir = job["root"] / "two"
    outputs = run_processes(out_dir, 2, job["extra"], devices=2, cache_dir=job["cache_dir"])
    assert_same_files(out_dir, job["reference"])
    assert "process 0 of 2: 2 of 4 images" in outputs[0]
    assert "process 1 of 2: 2 of 4 images" in outputs[1]
    assert sum("items: 4 of 4" in output for output in outputs) >= 1  # a summary was written
    config = json.loads((out_dir / "results" / "config.json").read_text())
    reference = json.loads((job["reference"] / "results" / "config.json").read_text())
    assert config["config"] == reference["config"] and config["seeds"] == reference["seeds"]
    assert sorted({d["process_index"] for d in config["devices"]}) == [0, 1]


@pytest.mark.slow
def test_four_processes_give_the_files_of_one_process_slow(job):
    """Four processes on 2 simulated devices each certify 3 of the images (process 3 has none
    and only waits); the item files equal the reference's (synthetic image i does not depend on
    the number of images). Slow only because it starts 4 more JAX processes."""
    out_dir = job["root"] / "four"
    extra = (*job["extra"], f"--num_images={NUM_ITEMS - 1}")
    outputs = run_processes(out_dir, 4, extra, devices=2, cache_dir=job["cache_dir"])
    got, expected = item_files(out_dir), item_files(job["reference"])
    assert len(got) == 2 * (NUM_ITEMS - 1)
    for name in got:
        assert got[name] == expected[name], f"{name} differs from the one-process run"
    assert "process 3 of 4: 0 of 3 images" in outputs[3]
    summary = json.loads((out_dir / "results" / "summary.json").read_text())
    assert summary["num_items"] == NUM_ITEMS - 1


def _done(out_dir: pathlib.Path) -> int:
    items = out_dir / "results" / "items"
    return len(list(items.glob("*.json"))) if items.is_dir() else 0


def test_a_process_killed_mid_run_resumes_to_the_same_files(job):
    """Process 1 is SIGKILLed once the first item is written; the job (both processes) is started
    again and finishes with the reference files; items finished before the kill are kept."""
    out_dir = job["root"] / "killed"
    procs = start_processes(out_dir, 2, job["extra"], cache_dir=job["cache_dir"])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while _done(out_dir) == 0 and time.monotonic() < deadline:
            assert all(proc.poll() is None for proc in procs), "a process ended before any item"
            time.sleep(0.01)
        for proc in procs:  # freeze both, then kill process 1: the state at the kill is known
            os.killpg(proc.pid, signal.SIGSTOP)
        os.killpg(procs[1].pid, signal.SIGKILL)
        procs[1].wait(timeout=30)
        done_at_kill = _done(out_dir)
    finally:
        kill_all(procs)  # the job ends with its process (as JAX's health check or srun does)
    assert 0 < done_at_kill < NUM_ITEMS, done_at_kill
    assert not (out_dir / "results" / "summary.json").exists()
    items = out_dir / "results" / "items"
    kept = {p.name: p.stat().st_mtime_ns for p in items.glob("*.json")}

    outputs = run_processes(out_dir, 2, job["extra"], cache_dir=job["cache_dir"])
    assert_same_files(out_dir, job["reference"])
    for name, mtime in kept.items():
        assert (items / name).stat().st_mtime_ns == mtime, f"{name} was certified twice"
    resumed = [re.search(r"^(\d+) of 2 images already done", out, re.M) for out in outputs]
    assert sum(int(match.group(1)) for match in resumed) == len(kept)


# ------------------------------------------------------------------------------------ in-process


def _tiny_job(tmp_path, checkpoint) -> _segmentation.SegmentationJob:
    return pipelines.SegmentationJob.tiny(
        image_size=8, num_images=4, checkpoint=str(checkpoint), out_dir=str(tmp_path), seed=SEED
    )


def test_overlap_on_and_off_write_identical_files(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.msgpack")
    lines = []
    on = pipelines.run_segmentation(
        _tiny_job(tmp_path / "on", checkpoint), log=lines.append, progress=False, overlap=True
    )
    off = pipelines.run_segmentation(
        _tiny_job(tmp_path / "off", checkpoint), log=lines.append, progress=False, overlap=False
    )
    a, b = item_files(on.parent), item_files(off.parent)
    assert len(a) == 8 and a == b
    assert (on / "summary.json").exists() and (off / "summary.json").exists()


def test_shares_split_the_items_and_the_last_share_writes_the_summary(tmp_path, monkeypatch):
    """Processes(0, 2) then Processes(1, 2) in one process: the first writes half the items and
    no summary, the second the rest and the summary; the files equal one process's."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.msgpack")
    whole = pipelines.run_segmentation(
        _tiny_job(tmp_path / "whole", checkpoint), log=lambda _: None, progress=False
    )
    split = tmp_path / "split"
    lines = []
    for index in (0, 1):
        monkeypatch.setattr(_distributed, "current", lambda i=index: pipelines.Processes(i, 2))
        pipelines.run_segmentation(_tiny_job(split, checkpoint), log=lines.append, progress=False)
        done = results.RunDir(split / "results").done_items()
        assert len(done) == 2 * (index + 1)
        assert (split / "results" / "summary.json").exists() == (index == 1)
    assert done[0].startswith("img0000") and done[1].startswith("img0001")
    assert any("2 of 4 images are not done yet" in line for line in lines)
    assert item_files(split) == item_files(whole.parent)


def test_a_share_is_every_count_th_item_of_the_full_list():
    ids = [f"item{i}" for i in range(7)]
    shares = [pipelines.Processes(i, 3).share(ids) for i in range(3)]
    assert shares == [["item0", "item3", "item6"], ["item1", "item4"], ["item2", "item5"]]
    assert pipelines.Processes().share(ids) == ids
    assert pipelines.Processes(5, 6).share(ids[:3]) == []


@pytest.mark.parametrize(
    "processes, match",
    [
        (pipelines.Processes(2, 2), r"`processes.index` must be in \[0, 2\).*got 2"),
        (pipelines.Processes(0, 0), r"`processes.count` must be >= 1; got 0"),
        ((0, 2), r"`processes` must be a pipelines.Processes"),
    ],
)
def test_bad_processes_are_refused_naming_the_field(processes, match):
    with pytest.raises(ValueError, match=match):
        _distributed.check_processes(processes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_processes=2), r"`coordinator_address` must be given with num_processes"),
        (
            dict(coordinator_address="localhost:1234", process_id=0),
            r"`num_processes` must be given with coordinator_address, process_id",
        ),
        (
            dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
            r"`process_id` must be in \[0, 2\).*got 2",
        ),
        (
            dict(coordinator_address="localhost:1234", num_processes=0, process_id=0),
            r"`num_processes` must be >= 1; got 0",
        ),
        (
            dict(coordinator_address="localhost", num_processes=2, process_id=0),
            r"`coordinator_address` must be HOST:PORT.*got 'localhost'",
        ),
        (
            dict(coordinator_address="host:99999", num_processes=2, process_id=0),
            r"`coordinator_address` must be HOST:PORT",
        ),
    ],
)
def test_bad_distributed_arguments_are_refused_before_joining(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipelines.initialize_distributed(**kwargs)


def test_joining_after_jax_was_used_is_refused_with_the_fix():
    import jax

    jax.devices()  # the backend is up: too late to join a multi-process run
    with pytest.raises(ValueError, match="before any other JAX call"):
        pipelines.initialize_distributed("localhost:1234", 2, 0)
    assert pipelines.Processes(jax.process_index(), jax.process_count()) == _distributed.current()
    assert _distributed.current() == pipelines.Processes(0, 1)


def test_a_process_done_early_waits_for_the_others_at_exit(monkeypatch):
    """JAX ends every process when one waits at exit longer than its shutdown timeout (300 s by
    default), which would kill processes still certifying a longer share: lrsjax asks for days."""
    import jax

    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    assert pipelines.initialize_distributed("node1:1234", 8, 3) == pipelines.Processes(0, 1)
    ((args, kwargs),) = calls
    assert args == ("node1:1234", 8, 3)
    assert kwargs["shutdown_timeout_seconds"] >= 24 * 3600


@pytest.mark.slow
def test_bad_process_flags_exit_with_one_line_naming_the_flag_slow(tmp_path):
    cmd = certify_command(tmp_path, SEED, ("--num_processes=2", "--process_id=0"))
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "`coordinator_address` must be given with num_processes, process_id" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------- overlap worker


def test_overlap_is_on_by_default_only_with_accelerators(monkeypatch):
    import jax

    assert _overlap.default_overlap() is (jax.default_backend() != "cpu")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _overlap.default_overlap() is True
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert _overlap.default_overlap() is False


def test_host_worker_keeps_order_and_at_most_one_job_in_flight():
    events, running = [], []

    def job(i):
        def run():
            running.append(i)
            assert len(running) == 1  # never two jobs at once
            time.sleep(0.01)
            events.append(i)
            running.remove(i)

        return run

    with _overlap.HostWorker(True) as worker:
        for i in range(5):
            worker.submit(job(i))
            assert len(events) >= i  # submit waited for the previous job
    assert events == [0, 1, 2, 3, 4]


def test_host_worker_runs_on_another_thread_only_with_overlap():
    threads = []
    for overlap in (True, False):
        with _overlap.HostWorker(overlap) as worker:
            worker.submit(lambda: threads.append(threading.current_thread()))
    assert threads[0] is not threading.main_thread() and threads[1] is threading.main_thread()


def test_host_worker_raises_the_worker_error_in_the_main_thread():
    def fail():
        raise ArithmeticError("worker failed")

    worker = _overlap.HostWorker(True)
    worker.submit(fail)
    with pytest.raises(ArithmeticError, match="worker failed"):
        worker.submit(lambda: None)  # the next submit reports it
    worker.close()
    with pytest.raises(ArithmeticError, match="worker failed"):
        with _overlap.HostWorker(True) as worker:
            worker.submit(fail)  # leaving the block reports it


def test_host_worker_finishes_the_job_in_flight_when_the_main_thread_fails():
    finished = []

    def slow():
        time.sleep(0.05)
        finished.append(True)

    with pytest.raises(KeyError):
        with _overlap.HostWorker(True) as worker:
            worker.submit(slow)
            raise KeyError("main thread failed")
    assert finished == [True]


def test_overlapped_item_error_surfaces_and_keeps_earlier_items(tmp_path, monkeypatch):
    """A failure in the host work of the second item is raised by the run; the first item, whose
    host work finished, is written."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.msgpack")
    real = _run.finish_item
    calls = []

    def failing(plan, item, sampled, stages=None):
        calls.append(item.item_id)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(plan, item, sampled, stages)

    monkeypatch.setattr(pipelines._run, "finish_item", failing)
    with pytest.raises(OSError, match="disk full"):
        pipelines.run_segmentation(
            _tiny_job(tmp_path / "run", checkpoint), log=lambda _: None, progress=False,
            overlap=True,
        )  # fmt: skip
    done = results.RunDir(tmp_path / "run" / "results").done_items()
    assert done == [calls[0]]
    assert not (tmp_path / "run" / "results" / "summary.json").exists()


def test_a_method_that_certifies_its_own_way_runs_whole_on_the_main_thread(tmp_path):
    """A method with a `run` function (`run_method`'s signature) is called once per item, on the
    main thread (it samples), with its `primary` flag; its records and timings are stored as
    returned, next to those of the split methods."""
    import types

    import jax

    from lrsjax import training
    from lrsjax.pipelines._method import MethodResult, timing_prefix

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.msgpack")
    job = _tiny_job(tmp_path / "run", checkpoint)
    localized, isotropic = _segmentation.methods(job.replace(baselines="isotropic"))
    calls = []

    def own_way(method, key, item, model, *, primary, stages):
        on_main = threading.current_thread() is threading.main_thread()
        calls.append((item.item_id, primary, on_main))
        zeros = [0] * len(method.budgets)
        record = results.method_record("own", method.budgets, zeros, zeros)
        return MethodResult({"own_way": record}, {}, {f"{timing_prefix(method)}_sampling_s": 1.5})

    unet, params, _ = training.load_segmentation_model(checkpoint)
    model = pipelines.Model(_segmentation.models.segmentation_apply_fn(unet), params)
    test = _segmentation.load_data(job, "test")
    items = ["img0", "img1"]

    def load_item(item_id):
        index = items.index(item_id)
        x, labels = (np.asarray(a) for a in test.image(index))
        flat = labels.reshape(-1)
        arrays = {"labels": labels.astype(np.int32)}
        return pipelines.Item(
            item_id, jax.random.key(index), x, flat, flat != 255, labels.shape,
            test.num_classes, arrays, {},
        )  # fmt: skip

    own = types.SimpleNamespace(**{**isotropic._asdict(), "run": own_way})
    plan = _run.Plan([localized, own], [model, model], load_item)
    run = results.RunDir.start(tmp_path / "run" / "results", {"task": "image"})
    _run.certify_items(
        run, items, lambda: plan, task="image", budget_kind="l2", log=lambda _: None,
        progress=False, overlap=True,
    )  # fmt: skip
    assert calls == [("img0", False, True), ("img1", False, True)]
    for item_id in items:
        record = run.load_record(item_id)
        assert set(record["methods"]) == {"localized_naive", "localized_lp", "own_way"}
        assert run.load_timings(item_id)["isotropic_sampling_s"] == 1.5
