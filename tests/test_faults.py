"""Fault tolerance (issue #7): kills, solver limits and failures, out-of-memory risks.

* SIGKILL at random points of a certification run (`lrsjax-certify` on the tiny synthetic
  segmentation job, in a subprocess), then a restart: the finished run must hold results identical
  to an uninterrupted run with the same seed, and no corrupted or half-written file may be taken
  for a result. Fast suite: 2 kill-restart cycles; slow suite: 24 (`pytest -m slow`).
* The collective solver at a tiny time limit, or failing, must give a sound and labelled count
  (never more than the exact optimum allows), or an error; never a silent 0 or an over-claim.
* Out-of-memory risks must be refused (or reduced) before any allocation, with a message that says
  what to set. The risky calls run in a subprocess under an address-space limit (RLIMIT_AS), so
  that they cannot disturb other processes on the machine.

Run the slow part with

    /work/venv/bin/pytest tests/test_faults.py -m slow -q -s
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import subprocess
import textwrap
import time

import numpy as np
import pytest
from _tiny_job import (
    NUM_ITEMS,
    PYTHON,
    certify_command,
    save_tiny_checkpoint,
    strip_wall_clock,
    subprocess_env,
)

SEED = 5  # --seed of the tiny job in these tests
REPO = pathlib.Path(__file__).resolve().parents[1]


# ================================================================================================
# Out-of-memory risks (subprocess under RLIMIT_AS)
# ================================================================================================

MEMORY_LIMIT_GIB = 4

_LIMITED = textwrap.dedent(
    """
    import resource, sys
    limit = {gib} * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    try:
        {body}
    except ValueError as error:
        print("VALUE_ERROR:", error)
        sys.exit(3)
    except Exception as error:
        print("OTHER_ERROR:", type(error).__module__, type(error).__name__, str(error)[:300])
        sys.exit(4)
    print("COMPLETED")
    """
)


def _run_limited(body: str, timeout: float = 300) -> subprocess.CompletedProcess:
    script = _LIMITED.format(gib=MEMORY_LIMIT_GIB, body=textwrap.indent(body, " " * 4).strip())
    return subprocess.run(
        [PYTHON, "-c", script],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_refused_or_completed(result, name: str) -> None:
    """Either a ValueError naming `name` (refused up front), or a normal completion (reduced)."""
    out = result.stdout + result.stderr
    if result.returncode == 0:
        assert "COMPLETED" in out, out
        return
    assert result.returncode == 3, f"not refused with a ValueError (rc={result.returncode}): {out}"
    assert name in out, out


_CERTIFY_HUGE_BATCH = """
import jax, jax.numpy as jnp
import lrsjax
from lrsjax import noise
def model(params, z):
    s = jnp.mean(z, axis=0)
    return jnp.stack([-s, s], axis=-1)
smoothing = noise.localized_gaussian((3, 64, 64), (2, 2), 0.2, 0.5)
cert = lrsjax.certify(jax.random.key(0), model, None, np.full((3, 64, 64), 0.5), smoothing,
                      n0=N0, n=NUM, alpha=0.1, batch_size=BATCH)
assert cert.prediction.shape == (64 * 64,)
"""


def _certify_huge_batch(batch_size: int, n0: int = 8, n: int = 16) -> str:
    body = _CERTIFY_HUGE_BATCH.replace("BATCH", str(batch_size))
    return body.replace("N0", str(n0)).replace("NUM", str(n))


@pytest.mark.parametrize("batch_size", [10**7, pytest.param(10**5, marks=pytest.mark.slow)])
def test_certify_absurd_batch_size_is_refused_or_reduced(batch_size):
    result = _run_limited(_certify_huge_batch(batch_size))
    _assert_refused_or_completed(result, "batch_size")


def test_certify_batch_beyond_memory_is_refused_with_the_value_to_set():
    # 10**7 samples asked for: lowering the batch to the sample count does not help, so the batch
    # must be refused before compiling, with the largest batch size that fits in the message.
    result = _run_limited(_certify_huge_batch(10**7, n0=10**7, n=10**7), timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "`batch_size`" in out and "Set batch_size <=" in out, out


def test_lowering_the_batch_to_the_sample_count_changes_no_count():
    """certify lowers batch_size to max(n0, n); the kernel's counts must not depend on that."""
    import jax
    import jax.numpy as jnp

    import lrsjax
    from lrsjax import noise, sampling

    def _threshold_model(params, z):
        d = z[0] - params
        return jnp.stack([jnp.zeros_like(d), d], axis=-1)

    smoothing = noise.localized_gaussian((1, 6, 8), (2, 2), 0.2, 0.6)
    x = np.full((1, 6, 8), 0.5, np.float32)
    key = jax.random.key(7)
    counts = [
        np.asarray(
            sampling.make_counter(
                _threshold_model, smoothing, mode="votes", batch_size=batch, num_classes=2
            )(key, 0.5, x, 12).counts
        )
        for batch in (12, 48)
    ]
    np.testing.assert_array_equal(counts[0], counts[1])
    assert np.all(counts[0].sum(-1) == 12) and 0 < counts[0][..., 1].sum() < counts[0].sum()
    certs = [
        lrsjax.certify(
            key, _threshold_model, 0.5, x, smoothing, n0=6, n=12, alpha=0.1, batch_size=batch
        )
        for batch in (12, 10**9)
    ]
    for field in ("select_votes", "counts", "p_lower", "radius"):
        np.testing.assert_array_equal(getattr(certs[0], field), getattr(certs[1], field))


def test_sparse_smoothing_huge_radius_is_refused():
    body = (
        "from lrsjax import base_certs\n"
        "base_certs.sparse_smoothing_worst_mass(0.9, 0.01, 0.6, 10**5, 10**5)"
    )
    _assert_refused_or_completed(_run_limited(body), "r_add")


# ================================================================================================
# SIGKILL at random points, then restart
# ================================================================================================


def _command(out_dir, extra=()):
    return certify_command(out_dir, SEED, extra)


def _run_to_completion(out_dir, extra=(), cache_dir=None) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        _command(out_dir, extra),
        env=subprocess_env(cache_dir=cache_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return time.perf_counter() - start


def _done_jsons(out_dir: pathlib.Path) -> int:
    items = out_dir / "results" / "items"
    return len(list(items.glob("*.json"))) if items.is_dir() else 0


def _tmp_files(out_dir: pathlib.Path) -> list:
    items = out_dir / "results" / "items"
    return list(items.glob(".*.tmp")) if items.is_dir() else []


def _kill_once(out_dir: pathlib.Path, rng, duration: float, extra=(), cache_dir=None):
    """Starts the command and SIGKILLs it (the whole process group). Where, at random:
    at a uniform random time within the expected remaining run time; just after the k-th item
    record appeared (random k, random delay < 0.3 s); or while an item file is being written
    (as soon as a temporary file shows up). Returns (where, killed); killed is False if the
    process finished first."""
    before = _done_jsons(out_dir)
    proc = subprocess.Popen(
        _command(out_dir, extra),
        env=subprocess_env(cache_dir=cache_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        strategy = rng.choice(["time", "item", "write"])
        if strategy == "time":
            remaining = duration * (0.5 + 0.5 * (NUM_ITEMS - before) / NUM_ITEMS)
            deadline = time.perf_counter() + rng.uniform(0.3, max(remaining, 0.6))
            while time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.005)
            where = "at a random time"
        elif strategy == "item":
            target = before + int(rng.integers(0, max(NUM_ITEMS - before, 1)))
            while _done_jsons(out_dir) < target and proc.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.3))
            where = f"after item {target}"
        else:
            while not _tmp_files(out_dir) and proc.poll() is None:
                time.sleep(0.0005)
            where = "during an item write"
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    return where, killed


def _check_no_half_written_files(out_dir: pathlib.Path) -> int:
    """Every visible result file is complete; returns the number of hidden .tmp leftovers."""
    results_dir = out_dir / "results"
    for path in results_dir.rglob("*.json"):
        json.loads(path.read_text())  # raises on a truncated file
    for path in results_dir.rglob("*.npz"):
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                archive[name]
    models = out_dir / "models"
    for path in models.glob("*.json") if models.is_dir() else []:
        json.loads(path.read_text())
    return len([p for p in out_dir.rglob(".*.tmp")])


def _results(out_dir: pathlib.Path) -> dict:
    """{file name: content}: JSON without wall-clock fields, NPZ as {array: bytes + dtype}."""
    out = {}
    items = out_dir / "results" / "items"
    for path in sorted(items.iterdir()):
        if path.name.startswith("."):
            continue
        out[path.name + " (bytes)"] = path.read_bytes()
        if path.suffix == ".json":
            out[path.name] = strip_wall_clock(json.loads(path.read_text()))
        else:
            with np.load(path, allow_pickle=False) as archive:
                out[path.name] = {
                    n: (archive[n].dtype.str, archive[n].shape, archive[n].tobytes())
                    for n in archive.files
                }
    out["summary.json"] = strip_wall_clock(
        json.loads((out_dir / "results" / "summary.json").read_text())
    )
    return out


def _kill_restart_cycles(tmp_path, kills: int, seed: int, train: bool, cache: bool = False):
    """Run directories killed (SIGKILL) and restarted until `kills` kills hit a live process;
    each is then completed and compared with one uninterrupted run. `train=False` certifies a
    saved checkpoint (no training in the runs). `cache=True`: the uninterrupted run fills JAX's
    persistent compilation cache and the others only read it (faster; nothing is written to it
    while a process may be killed). Returns (kills, where they landed, tmp leftovers)."""
    rng = np.random.default_rng(seed)
    tmp_path.mkdir(parents=True, exist_ok=True)
    extra = () if train else (f"--checkpoint={save_tiny_checkpoint(tmp_path / 'tiny.msgpack')}",)
    reference_dir = tmp_path / "reference"
    cache_dir = tmp_path / "jax_cache" if cache else None
    duration = _run_to_completion(reference_dir, extra, cache_dir)
    reference = _results(reference_dir)
    records = [k for k in reference if k.endswith(".json") and k != "summary.json"]
    assert len(records) == NUM_ITEMS
    landed, leftovers, run = [], 0, 0
    while len(landed) < kills:
        out_dir = tmp_path / f"killed{run}"
        for _ in range(4 * kills):  # each restart resumes; stop when the run finished itself
            where, killed = _kill_once(out_dir, rng, duration, extra, cache_dir)
            if not killed:
                break
            landed.append(f"{where} ({_done_jsons(out_dir)}/{NUM_ITEMS} items done)")
            _check_no_half_written_files(out_dir)
            if len(landed) >= kills or _done_jsons(out_dir) == NUM_ITEMS:
                break
        _run_to_completion(out_dir, extra, cache_dir)
        leftovers += _check_no_half_written_files(out_dir)
        got = _results(out_dir)
        assert sorted(got) == sorted(reference)
        for name in reference:
            assert got[name] == reference[name], f"run {run}: {name} differs after kills {landed}"
        run += 1
    return len(landed), landed, leftovers


def test_kill_and_restart_gives_identical_results_fast(tmp_path):
    kills, _, _ = _kill_restart_cycles(tmp_path, kills=2, seed=0, train=False, cache=True)
    assert kills >= 2


@pytest.mark.slow
def test_kill_and_restart_gives_identical_results_slow(tmp_path):
    kills, landed, leftovers = _kill_restart_cycles(
        tmp_path / "checkpoint", kills=12, seed=1, train=False
    )
    more, landed_train, leftovers_train = _kill_restart_cycles(
        tmp_path / "train", kills=12, seed=2, train=True
    )
    kills, landed, leftovers = kills + more, landed + landed_train, leftovers + leftovers_train
    print(
        f"\nFAULTS: {kills} kill-restart cycles (SIGKILL of a live process), results identical "
        f"to an uninterrupted run; kills landed: {landed}; hidden .tmp leftovers: {leftovers}"
    )
    assert kills >= 20


# ================================================================================================
# The collective solver at a time limit, or failing
# ================================================================================================


def _hard_instance(seed: int, groups: int = 8, per_group: int = 10):
    """Gaussian base certificates whose exact MILP takes SCIP ~0.2 s (many distinct etas)."""
    from lrsjax import base_certs

    rng = np.random.default_rng(seed)
    stds = rng.uniform(0.2, 1.0, size=(groups, groups))
    group = np.repeat(np.arange(groups), per_group)
    p_lower = rng.uniform(0.6, 0.999, size=group.size)
    return base_certs.gaussian(np.zeros(group.size, np.int64), p_lower, group, stds)


BUDGETS = [0.3, 0.45, 0.6]
# documented statuses (lrsjax.collective.CollectiveResult) and the relaxation each may come from
STATUS_MODES = {
    "ZERO_BUDGET": {"none"},
    "NAIVE_ONLY": {"none"},
    "MONOTONE_ZERO": {"none", "lp", "hull", "milp"},
    "OPTIMAL": {"lp", "hull", "hull+clique", "milp"},
    "DUAL_BOUND": {"lp", "hull", "hull+clique", "milp"},
    "TIME_LIMIT_BOUND": {"milp"},
    "HULL_FALLBACK": {"hull", "hull+clique"},
}


def _assert_labelled(res) -> None:
    for status, used, solver in zip(res.status, res.mode_used, res.solver):
        assert status in STATUS_MODES, status
        assert used in STATUS_MODES[status], (status, used)
        assert isinstance(solver, str) and solver, solver


def _time_limited(seeds, limits, milp_solver):
    from lrsjax import collective

    checked = limited = 0
    for seed in seeds:
        certs = _hard_instance(seed)
        exact = collective.certify_collective(certs, BUDGETS, mode="milp", milp_solver=milp_solver)
        assert set(exact.status) <= {"OPTIMAL", "NAIVE_ONLY", "MONOTONE_ZERO"}, exact.status
        for limit in limits:
            res = collective.certify_collective(
                certs, BUDGETS, mode="milp", time_limit_s=limit, milp_solver=milp_solver
            )
            assert np.all(res.certified <= exact.certified), (seed, limit, res, exact)
            _assert_labelled(res)
            # where it claims exactness it must be the exact count
            optimal = np.array([s == "OPTIMAL" for s in res.status])
            assert np.all(res.certified[optimal] == exact.certified[optimal])
            checked += len(BUDGETS)
            limited += int(sum(s in ("TIME_LIMIT_BOUND", "HULL_FALLBACK") for s in res.status))
    return checked, limited


@pytest.mark.parametrize("milp_solver", ["bnb", "scip"])
def test_milp_time_limit_is_sound_and_labelled_fast(milp_solver):
    checked, limited = _time_limited(seeds=[0], limits=[1e-4], milp_solver=milp_solver)
    assert limited > 0  # the limit was actually hit


@pytest.mark.slow
@pytest.mark.parametrize("milp_solver", ["bnb", "scip"])
def test_milp_time_limit_is_sound_and_labelled_slow(milp_solver):
    checked, limited = _time_limited(range(20), [1e-4, 1e-3, 1e-2, 0.05], milp_solver)
    print(
        f"\nSOLVER LIMITS ({milp_solver}): {checked} time-limited solves, {limited} stopped by "
        "the limit, none above the exact MILP count"
    )
    assert limited > 0


class _BrokenSolver:
    """Stands in for ortools' ModelSolverHelper: for the solver names in `broken` it does not
    solve and reports `status` with `value` for every number (objective, bound, primal and dual
    values); the other solvers run for real."""

    def __init__(self, real_cls, name, broken, status, value):
        self._real = real_cls(name)
        self._broken = name.lower() in broken
        self._status, self._value = status, value

    def solve(self, model):
        if self._broken:
            self._size = model.num_variables(), model.num_constraints()
        else:
            self._real.solve(model)

    def __getattr__(self, attr):
        if not self._broken:
            return getattr(self._real, attr)
        if attr == "status":
            return lambda: self._status
        if attr == "has_solution":
            return lambda: self._status in ("OPTIMAL", "FEASIBLE") or not np.isnan(self._value)
        if attr in ("objective_value", "best_objective_bound"):
            return lambda: self._value
        if attr == "variable_values":
            return lambda: np.full(self._size[0], self._value)
        if attr == "dual_values":
            return lambda: np.full(self._size[1], self._value)
        return getattr(self._real, attr)


@functools.cache
def _exact_counts(seed: int) -> np.ndarray:
    from lrsjax import collective

    res = collective.certify_collective(_hard_instance(seed), BUDGETS, mode="milp")
    assert set(res.status) <= {"OPTIMAL", "NAIVE_ONLY", "MONOTONE_ZERO"}, res.status
    return res.certified


FAST_BROKEN = {
    ("milp", "glop", "ABNORMAL"),
    ("milp", "scip", "FEASIBLE"),
    ("milp", "glop scip", "ABNORMAL"),
    ("lp", "glop", "OPTIMAL"),
}
BROKEN = [
    # (which solvers fail, reported status, reported numbers)
    ("glop", "ABNORMAL", float("nan")),
    ("glop", "INFEASIBLE", 0.0),
    ("glop", "OPTIMAL", float("nan")),  # claims optimality, returns garbage
    ("glop", "OPTIMAL", 0.0),  # claims optimality, returns zeros
    ("glop", "OPTIMAL", 1e9),
    ("scip", "ABNORMAL", float("nan")),
    ("scip", "NOT_SOLVED", float("nan")),
    ("scip", "FEASIBLE", float("inf")),  # time limit without a bound
    ("scip", "INFEASIBLE", 0.0),
    ("scip", "OPTIMAL", 0.0),  # claims optimality with objective and bound 0
    ("glop scip", "ABNORMAL", float("nan")),
]


@pytest.mark.parametrize(
    "mode, broken, status, value",
    [
        pytest.param(
            mode,
            *case,
            marks=() if (mode, *case[:2]) in FAST_BROKEN else pytest.mark.slow,
        )
        for mode in ("lp", "hull", "milp")
        for case in BROKEN
    ],
)
def test_failing_solver_gives_a_sound_labelled_count_or_an_error(
    monkeypatch, mode, broken, status, value
):
    """A failing LP/MILP solver: a documented fallback (a valid bound: the Lagrangian bound of the
    relaxation, the hull bound, or nothing certified beyond the naive count) or a clear error;
    never a silent 0 of attacks or an over-claim.

    Exception: a solver that claims OPTIMAL for the exact MILP while returning a wrong optimum
    cannot be detected by any caller; that case only checks that nothing crashes."""
    from ortools.linear_solver.python import model_builder_helper as mbh

    from lrsjax import collective
    from lrsjax.collective.milp import _scip

    certs = _hard_instance(1)
    exact = _exact_counts(1)
    real = mbh.ModelSolverHelper
    fake_status = getattr(mbh.SolveStatus, status)
    monkeypatch.setattr(
        mbh,
        "ModelSolverHelper",
        lambda name: _BrokenSolver(real, name, broken.split(), fake_status, value),
    )
    # SCIP runs through MPSolver (`_scip.ScipSolver`, interruptible): break it the same way.
    real_scip = _scip.ScipSolver
    monkeypatch.setattr(
        _scip,
        "ScipSolver",
        lambda name="scip": _BrokenSolver(real_scip, name, broken.split(), fake_status, value),
    )
    for milp_solver in ("bnb", "scip"):
        try:
            res = collective.certify_collective(certs, BUDGETS, mode=mode, milp_solver=milp_solver)
        except RuntimeError as error:
            assert str(error)
            continue
        _assert_labelled(res)
        if mode == "milp" and milp_solver == "scip" and broken == "scip" and status == "OPTIMAL":
            continue  # an exact solver lying about its optimum: undetectable
        assert np.all(res.certified <= exact), (res, exact)
