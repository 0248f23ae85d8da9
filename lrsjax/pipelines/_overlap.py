"""One host worker: the host work of item i runs while the devices sample item i + 1.

The main thread samples (JAX dispatch, then the wait for the counts); `HostWorker.submit` hands
the rest of the item (statistics, collective LP/MILP, writing its files) to one worker thread.
At most one item is in flight: `submit` first waits for the previous item, so items are finished
and written in order, and an exception of the worker is raised in the main thread at the next
`submit` or at `close`, never lost. Without overlap the same calls run inline, in the same order,
so both modes write the same files.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import jax


def default_overlap() -> bool:
    """Whether to overlap by default: with accelerators, whose host cores idle while they sample;
    not on the CPU, where sampling already keeps every core busy (measured: no gain, see
    docs/benchmarks.md)."""
    return jax.default_backend() != "cpu"


class HostWorker:
    """Runs host jobs one at a time, on a worker thread (`overlap=True`) or inline.

    Use as a context manager: leaving it waits for the job in flight (so a finished item is
    written even when the main thread fails) and raises its exception, if any.
    """

    def __init__(self, overlap: bool):
        self.overlap = bool(overlap)
        self._executor = None
        self._pending = None
        if self.overlap:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="lrsjax-host"
            )

    def submit(self, job: Callable[[], None]) -> None:
        """Runs `job()` after the previous job finished: inline, or on the worker thread (then it
        returns at once). Raises the previous job's exception, if it failed."""
        self.wait()
        if self._executor is None:
            job()
        else:
            self._pending = self._executor.submit(job)

    def wait(self) -> None:
        """Waits for the job in flight; raises its exception, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Waits for the job in flight (raising its exception) and stops the worker thread."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def __enter__(self) -> HostWorker:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
            return
        # The main thread failed: still finish (and write) the item in flight, then let the main
        # thread's exception propagate, noting a failure of the worker on it.
        try:
            self.close()
        except Exception as worker_error:
            name = type(worker_error).__name__
            error.add_note(f"the host worker failed too: {name}: {worker_error}")
