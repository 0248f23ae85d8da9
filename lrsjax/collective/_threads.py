"""Several threads on one search (the branch and bounds of `_bnb` and `_kappa`).

OR-Tools' GLOP releases the GIL while it solves, so threads that each own a GLOP model overlap
their LP solves with each other's Python work (two cores here).
"""

from __future__ import annotations

import threading


def run_workers(work, count: int, halt) -> None:
    """Runs `work(0)` in the calling thread and `work(1) .. work(count - 1)` in daemon threads.

    When the calling thread's `work` returns or raises (the search is exhausted, stopped, or,
    e.g., KeyboardInterrupt), `halt()` is called and the helpers are joined: `work` must return
    soon after `halt()` (the searches poll a flag that it sets). An exception in a helper calls
    `halt()` too and is re-raised here, so a bug cannot silently drop part of a search.
    """
    if count <= 1:
        work(0)
        return
    errors = []

    def helper(w: int) -> None:
        try:
            work(w)
        except BaseException as error:  # re-raised in the calling thread below
            errors.append(error)
            halt()

    threads = [threading.Thread(target=helper, args=(w,), daemon=True) for w in range(1, count)]
    for thread in threads:
        thread.start()
    try:
        work(0)
    finally:
        halt()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
