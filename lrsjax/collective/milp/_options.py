"""The exact MILP's tuning knobs in one value (`MilpOptions`).

No knob changes what is proven: every setting gives a sound count, and a search that finishes
gives the exact optimum whatever the setting. They only trade time between the solvers.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from lrsjax import _checks

# GLOP releases the GIL only while it solves; the Python work between two node LPs runs one
# thread at a time, so search threads beyond a few add contention, not speed.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Search threads by default: the CPUs this process may run on, at most
    `MAX_DEFAULT_THREADS`, at least 1."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_DEFAULT_THREADS))


class MilpOptions(NamedTuple):
    """Tuning of the exact MILP (`lrsjax.collective.milp`); `solve(..., milp_options=...)`.

    Fields:
      threads: search threads of the branch and bound (one shared tree, each thread with its
        own GLOP model), alone and in the portfolio until SCIP starts beside it (from then on
        only the calling thread searches, leaving a core to SCIP). Default `default_threads()`.
      kappa_threads: threads of the search for `kappa` (`_kappa.max_reachable`).
      kappa_time_s: at most this many seconds bounding `kappa` per budget (a quarter of what
        is left under a time limit); the bound is valid whenever it stops.
      scip_delay_s: the portfolio ("auto" above `auto_bnb_max_groups`) starts SCIP this many
        seconds after the branch and bound; most budgets end before.
      auto_bnb_max_groups: "auto" runs the branch and bound alone up to this many groups with
        levels, the portfolio above.
      cold_nodes: the first nodes of a branch and bound are solved from scratch (a few hull
        segments per group); the warm GLOP model, which costs about as much to build as tens
        of such solves, is built only when a search goes on longer.
      pool_rounds: column-generation rounds per node in the warm model before the node is
        solved from scratch instead.
      strong_candidates: reliability branching solves both children of up to this many
        candidate groups per node while their pseudocosts are unreliable.
      reliable: observations per side after which a group's pseudocost is trusted.
      seeds: attacks found at smaller budgets offered as incumbents (the latest ones).
    """

    threads: int = default_threads()
    kappa_threads: int = default_threads()
    kappa_time_s: float = 10.0
    scip_delay_s: float = 5.0
    auto_bnb_max_groups: int = 8
    cold_nodes: int = 64
    pool_rounds: int = 8
    strong_candidates: int = 8
    reliable: int = 1
    seeds: int = 4


def check_options(options) -> MilpOptions:
    """`options` validated (None: the defaults); raises ValueError naming the bad field."""
    if options is None:
        return MilpOptions()
    if not isinstance(options, MilpOptions):
        _checks.fail("milp_options", options, "must be a MilpOptions or None",
                     "E.g. lrsjax.collective.milp.MilpOptions(threads=2).")  # fmt: skip
    for name, minimum in (("threads", 1), ("kappa_threads", 1), ("pool_rounds", 1),
                          ("seeds", 1), ("auto_bnb_max_groups", 0), ("cold_nodes", 0),
                          ("strong_candidates", 0), ("reliable", 0)):  # fmt: skip
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _checks.fail(f"milp_options.{name}", value, f"must be an int >= {minimum}",
                         f"E.g. {getattr(MilpOptions(), name)} (the default).")  # fmt: skip
    for name in ("kappa_time_s", "scip_delay_s"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            _checks.fail(f"milp_options.{name}", value, "must be a number >= 0",
                         f"E.g. {getattr(MilpOptions(), name)} (the default).")  # fmt: skip
    return options
