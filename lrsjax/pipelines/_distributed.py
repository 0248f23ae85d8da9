"""Runs over many processes: `jax.distributed` set-up and the fixed split of items over processes.

A job is started once per process (by hand, `srun`, `mpirun`, ...). Every process certifies its
own share of the items on its own devices (`jax.local_devices()`; no cross-process collective
touches a certificate) and writes them into the one shared run directory; item keys come from the
job seed and the item's index only, so an item's files do not depend on which process made them.
Item `k` of the job's list belongs to process `k % num_processes`: a restarted job resumes exactly
the same shares. See docs/scale-out.md for the recipes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax

from lrsjax import _checks


class Processes(NamedTuple):
    """Which share of a run this process certifies.

    index: this process, in [0, count).
    count: the processes of the run (1: a plain single-process run).
    """

    index: int = 0
    count: int = 1

    def share(self, item_ids: Sequence[str]) -> list[str]:
        """The ids of `item_ids` this process certifies: positions `index`, `index + count`, ...
        of the job's full item list (the same share whatever is already done)."""
        return list(item_ids[self.index :: self.count])


def current() -> Processes:
    """The processes of the running JAX program (`jax.process_index()`, `jax.process_count()`;
    (0, 1) unless `jax.distributed` is initialized)."""
    return Processes(jax.process_index(), jax.process_count())


def check_processes(processes: Processes) -> Processes:
    """Validates a `Processes` value (ValueError naming the field and the fix)."""
    if not isinstance(processes, Processes):
        _checks.fail(
            "processes", processes, "must be a pipelines.Processes(index, count)",
            "Pass Processes(index=i, count=n), or None for jax.process_index()/process_count().",
        )  # fmt: skip
    count = _checks.positive_int("processes.count", processes.count)
    index = _checks.positive_int("processes.index", processes.index, minimum=0)
    if index >= count:
        _checks.fail(
            "processes.index", index, f"must be in [0, {count}) (processes.count = {count})",
            "Number the processes 0 .. count - 1.",
        )  # fmt: skip
    return Processes(index, count)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout_s: int = 300,
    shutdown_timeout_s: int = 7 * 24 * 3600,
) -> Processes:
    """Joins this process to a multi-process JAX run (`jax.distributed.initialize`).

    With no arguments JAX detects the cluster (SLURM, Open MPI, TPU pods: one process per task,
    its coordinator on the first node); otherwise pass all three. Call it once, first, before
    anything else uses JAX; the run functions of `lrsjax.pipelines` then certify this process's
    share of the items.

    Args:
      coordinator_address: "HOST:PORT" of process 0, reachable from every process (e.g.
        "node001:12345"; "localhost:12345" for processes on one machine).
      num_processes: processes in the run (>= 1).
      process_id: this process, in [0, num_processes).
      initialization_timeout_s: seconds to wait for every process to join.
      shutdown_timeout_s: seconds a process that finished its share waits at exit for the
        others. JAX ends every process (also those still certifying) when this runs out, so it
        is as long as a run may be unbalanced; a process that dies still ends the run after
        JAX's heartbeat timeout (100 s).
    Returns:
      `Processes(index, count)` of this process.
    Raises:
      ValueError: an argument is missing or out of range, or JAX was already used in this
        process (then it is too late to join).
    """
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    explicit = {name: value for name, value in given.items() if value is not None}
    if explicit:
        missing = [name for name in given if name not in explicit]
        if missing:
            first = missing[0]
            _checks.fail(
                first, None, f"must be given with {', '.join(sorted(explicit))}",
                "Pass all three of --coordinator_address=HOST:PORT, --num_processes=N and "
                "--process_id=I (I in 0 .. N-1), or none of them for the cluster's own "
                "detection (--distributed, e.g. under SLURM).",
            )  # fmt: skip
        _check_address(coordinator_address)
        num_processes = _checks.positive_int("num_processes", num_processes)
        process_id = _checks.positive_int("process_id", process_id, minimum=0)
        if process_id >= num_processes:
            _checks.fail(
                "process_id", process_id,
                f"must be in [0, {num_processes}) (num_processes = {num_processes})",
                "Number the processes 0 .. num_processes - 1.",
            )  # fmt: skip
    timeout = _checks.positive_int("initialization_timeout_s", initialization_timeout_s)
    shutdown = _checks.positive_int("shutdown_timeout_s", shutdown_timeout_s)
    if jax.distributed.is_initialized():
        return current()
    try:
        jax.distributed.initialize(
            coordinator_address, num_processes, process_id, initialization_timeout=timeout,
            shutdown_timeout_seconds=shutdown,
        )  # fmt: skip
    except RuntimeError as error:
        raise ValueError(
            f"jax.distributed could not be initialized ({error}). Call "
            "initialize_distributed before any other JAX call of the process."
        ) from None
    except ValueError as error:
        if explicit:
            raise
        raise ValueError(
            f"no cluster detected for jax.distributed ({error}). Under SLURM or Open MPI start "
            "one process per task (srun, mpirun); elsewhere pass --coordinator_address, "
            "--num_processes and --process_id."
        ) from None
    return current()


def _check_address(address) -> None:
    host, _, port = str(address).rpartition(":")
    if not isinstance(address, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        _checks.fail(
            "coordinator_address", address, "must be HOST:PORT with a port in 1 .. 65535",
            "Pass e.g. --coordinator_address=localhost:12345 (one machine) or the first node's "
            "host name and a free port.",
        )  # fmt: skip


def barrier(name: str, processes: Processes) -> None:
    """Waits until every process of the run reaches `barrier(name)` (nothing with one process).

    Used only to order host work (models trained by process 0 before the others load them),
    never inside a certificate.
    """
    if processes.count > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
