"""One tree search on several threads: the skeleton of the branch and bounds of `_bnb` and
`_kappa`.

OR-Tools' GLOP releases the GIL while it solves, so threads that each own a GLOP model overlap
their LP solves with each other's Python work.
"""

from __future__ import annotations

import heapq
import itertools
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


class Frontier:
    """The open nodes of a search: best bound first (`best_first`, a heap on each node's first
    entry, its bound) or last in, first out (depth first)."""

    def __init__(self, best_first: bool):
        self.best_first = best_first
        self._items: list = []
        self._counter = itertools.count()

    def push(self, node) -> None:
        if self.best_first:
            heapq.heappush(self._items, (-node[0], next(self._counter), node))
        else:
            self._items.append(node)

    def pop(self):
        return heapq.heappop(self._items)[2] if self.best_first else self._items.pop()

    def __len__(self) -> int:
        return len(self._items)

    def nodes(self) -> list:
        return [item[2] for item in self._items] if self.best_first else list(self._items)


def tree_search(frontier: Frontier, expand, workers: int, *, stopped, retired=None) -> list:
    """Runs `workers` threads on the nodes of `frontier` until it is empty or `stopped()`.

    Each thread takes a node and plunges: `expand(w, node)` (w: the thread's index) returns the
    node's children, best first ([] when the node is pruned or a leaf); the first is expanded
    next by the same thread, the others join the frontier. When `expand` returns None the
    node could not be solved: it stays open and the search stops. A thread for which
    `retired(w)` turns True puts its node back and stops (the others go on).

    Returns the nodes the threads held when they stopped (still open; the caller counts them
    with what is left in `frontier`). `stopped` is polled between nodes, so a search ends one
    node after it turns True.
    """
    cond = threading.Condition()
    held = [None] * max(int(workers), 1)  # the node each thread holds (open until done)
    state = {"busy": 0, "halt": False}

    def halted() -> bool:
        if not state["halt"] and stopped():
            state["halt"] = True
        return state["halt"]

    def gone(w: int) -> bool:
        return retired is not None and retired(w)

    def work(w: int) -> None:
        while True:
            with cond:
                while not frontier and state["busy"] > 0 and not halted() and not gone(w):
                    cond.wait(0.01)
                if halted() or not frontier or gone(w):
                    cond.notify_all()
                    return
                node = frontier.pop()
                held[w] = node
                state["busy"] += 1
            try:
                while node is not None and not halted():
                    if gone(w):  # back to the frontier, for the threads that go on
                        with cond:
                            frontier.push(node)
                        node = None
                        break
                    children = expand(w, node)
                    if children is None:  # unsolved: the node stays open (held); stop
                        with cond:
                            state["halt"] = True
                        break
                    node = children[0] if children else None
                    with cond:
                        held[w] = node
                        for other in children[1:]:
                            frontier.push(other)
                        if len(children) > 1:
                            cond.notify_all()
            finally:
                with cond:
                    held[w] = node
                    state["busy"] -= 1
                    cond.notify_all()

    def halt() -> None:
        with cond:
            state["halt"] = True
            cond.notify_all()

    run_workers(work, len(held) if frontier else 1, halt)
    return [node for node in held if node is not None]
