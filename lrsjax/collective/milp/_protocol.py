"""The solver protocol of the exact MILP: what a solver is given and what it answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lrsjax.collective.milp._options import MilpOptions


class MilpRequest(NamedTuple):
    """One budget's exact problem, in the scaled units of the engine (one budget type or more).

    Fields:
      levels: list of G >= 1 `_levels.Level`, reachable levels only (naive-filtered), scaled.
      weights: float64 [T, K, M] scaled weights of the budget types with a positive total.
      totals: float64 [T] (ones: every total is 1 in scaled units).
      tol: the certificate's rounding slack (a bound U proves an attack A when
        `floor(U + tol) <= A`).
      incumbents: spends `b [T, M]` known feasible (attacks found at smaller budgets).
      deadline: `time.perf_counter()` value at which to stop with a proven bound (None: none).
      hull: callable returning `(_relax.Relaxation, funcs)`: the hull relaxation of the levels
        (warm-started and cached by the engine), for solvers that want its rigorous bound.
    """

    levels: list
    weights: np.ndarray
    totals: np.ndarray
    tol: float
    incumbents: tuple
    deadline: float | None
    hull: Callable


class MilpOutcome(NamedTuple):
    """What an exact solver proved for one budget.

    Fields:
      bound: float, a proven upper bound on the largest attack (the count comes from it).
      attack: float, the largest attack found (outputs one feasible spend flips).
      status: "OPTIMAL", "TIME_LIMIT_BOUND", "DUAL_BOUND" or "HULL_FALLBACK" (`CollectiveResult`).
      mode_used: "milp", or the relaxation whose bound stands ("hull", "hull+clique").
      solver: the label reported in `CollectiveResult.solver` (e.g. "BNB+GLOP", "SCIP").
      attacks: genuine feasible spends `b [T, M]` found, in the order found (they seed the
        MILP at larger budgets).
    """

    bound: float
    attack: float
    status: str
    mode_used: str
    solver: str
    attacks: tuple = ()


class MilpSolver(NamedTuple):
    """An exact solver: `solve(request: MilpRequest, options: MilpOptions) -> MilpOutcome`.

    Register one in `lrsjax.collective.milp.SOLVERS` (name -> MilpSolver) to make it
    `solve(..., mode="milp", milp_solver=name)`. Its `bound` must be proven: the count is
    `|T| - floor(bound + tol)`.
    """

    name: str
    solve: Callable[[MilpRequest, MilpOptions], MilpOutcome]
