"""The exact collective MILP as a generic model for SCIP (docs/math.md 6), built from sparse arrays.

Ordered formulation: per group g binaries `z_g1 >= z_g2 >= ... >= z_gL` (z_gi = 1: the outputs at
level i are attacked; ordering makes the attacked set a prefix, as in every optimal attack),

    maximize  sum_{g,i} c_gi z_gi
    s.t.      (W b)_{k_g} >= sum_i (E_gi - E_g,i-1) z_gi,   sum_j b[t, j] <= total_t,  b >= 0.

Its LP relaxation is the concave-hull relaxation (the ordered set's vertices are the prefixes),
so SCIP starts from the hull bound (the model is `_relax.ordered_model`). Used as a cross-check
of `_bnb` and as the MILP solver for many groups, where SCIP's cutting planes close the gap
faster than plain branching.

Bound policy. Every other bound of the collective solvers is a Lagrangian bound recomputed in
float64 (`_relax.lagrangian`), so it holds whatever the LP solver's tolerances. SCIP's dual bound
cannot be recomputed that way (it comes from many node LPs, cuts and presolve), and SCIP's LP
bounds are only as exact as its dual feasibility tolerance: an LP solution whose reduced costs
violate dual feasibility by up to `d` can understate the LP optimum by up to
`d * sum_j (u_j - l_j)` over the variables' boxes, and every node bound of the search inherits
that error, hence so does the global bound. So the bound `ScipRun.result()` reports is SCIP's
plus `margin = SCIP_DUALFEASTOL * sum_j (u_j - l_j) * max(1, max_i c_i)` (the objective scale
`max c_i` because the LP solver applies the tolerance to its scaled problem), with SCIP's
tolerances set explicitly to the values the margin assumes. Primal tolerances (`feastol`) only
admit slightly infeasible attacks and cuts valid for that larger set, which raises SCIP's bound:
the safe direction. The attack count is an integer, so a margin below 1 costs an output only
when SCIP's bound has a fractional part above `1 - margin` (less the rounding slack); a proven
optimum (integral bound) loses none while the margin stays below 1.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from typing import NamedTuple

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.linear_solver.python import model_builder_helper as mbh

from lrsjax.collective import _relax

_S = mbh.SolveStatus
# SCIP's tolerances, set explicitly (its defaults): the bound margin of the module docstring.
SCIP_DUALFEASTOL = 1e-7
SCIP_FEASTOL = 1e-6
_STATUS = {
    pywraplp.Solver.OPTIMAL: _S.OPTIMAL,
    pywraplp.Solver.FEASIBLE: _S.FEASIBLE,
    pywraplp.Solver.INFEASIBLE: _S.INFEASIBLE,
    pywraplp.Solver.UNBOUNDED: _S.UNBOUNDED,
    pywraplp.Solver.ABNORMAL: _S.ABNORMAL,
    pywraplp.Solver.NOT_SOLVED: _S.NOT_SOLVED,
    pywraplp.Solver.MODEL_INVALID: _S.MODEL_INVALID,
}


class ScipSolver:
    """SCIP through OR-Tools' MPSolver, with the part of `ModelSolverHelper`'s interface that
    `ScipRun` uses. Unlike `ModelSolverHelper("scip")`, whose `interrupt_solve()` SCIP ignores
    (a run then goes on to its time limit, or forever without one), MPSolver's SCIP stops within
    milliseconds when interrupted from another thread, and releases the GIL while it solves.
    `name` exists for parity with `ModelSolverHelper(name)` (so tests can wrap either); only
    "scip" is meaningful.
    """

    def __init__(self, name: str = "scip"):
        self._solver = pywraplp.Solver.CreateSolver("SCIP")
        self._params = ""
        self._limit_ms = None
        self._status = _S.NOT_SOLVED

    def solver_is_supported(self) -> bool:
        return self._solver is not None

    def set_solver_specific_parameters(self, text: str) -> None:
        self._params = text

    def set_time_limit_in_seconds(self, seconds: float) -> None:
        self._limit_ms = max(1, math.ceil(float(seconds) * 1000.0))

    def solve(self, model) -> None:
        """Solves a `mbh.ModelBuilderHelper` model (passed on as its MPModelProto, hints
        included)."""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.pb")
            model.write_model_to_proto_file(path)
            with open(path, "rb") as handle:
                proto = linear_solver_pb2.MPModelProto.FromString(handle.read())
        solver = self._solver
        if solver.LoadModelFromProto(proto):  # a non-empty message: the model was refused
            self._status = _S.MODEL_INVALID
            return
        if self._params and not solver.SetSolverSpecificParametersAsString(self._params):
            self._status = _S.MODEL_INVALID  # e.g. tolerances the bound margin relies on
            return
        if self._limit_ms is not None:
            solver.SetTimeLimit(self._limit_ms)
        self._status = _STATUS.get(solver.Solve(), _S.ABNORMAL)

    def interrupt_solve(self) -> bool:
        return bool(self._solver.InterruptSolve())

    def status(self):
        return self._status

    def has_solution(self) -> bool:
        return self._status in (_S.OPTIMAL, _S.FEASIBLE)

    def objective_value(self) -> float:
        return float(self._solver.Objective().Value())

    def best_objective_bound(self) -> float:
        return float(self._solver.Objective().BestBound())

    def variable_values(self) -> np.ndarray:
        return np.array([var.solution_value() for var in self._solver.variables()])


class ScipOutcome(NamedTuple):
    """Fields: status ("OPTIMAL", "FEASIBLE", or the failing SolveStatus name), objective (best
    attack found, NaN if none), bound (SCIP's proven dual bound plus `margin`, the bound policy of
    the module docstring; NaN if none), b (float64 [T, M] spend of the best attack found, None if
    none), margin (what was added to SCIP's bound)."""

    status: str
    objective: float
    bound: float
    b: np.ndarray | None = None
    margin: float = 0.0


def _build(levels, weights, totals, hint_b, top_rows=()):
    """The ordered MILP over `levels` (reachable levels, >= 1 group) as a SCIP-ready model."""
    totals = np.asarray(totals, np.float64)
    t_count, _, m_count = weights.shape
    nb = t_count * m_count
    data = _relax.ordered_model(levels, weights, totals, top_rows)
    z = nb + np.arange(data.var_lo.size - nb)
    first = data.first
    model = mbh.ModelBuilderHelper()
    model.fill_model_from_sparse_data(*data.data())
    for index in z:
        model.set_var_integrality(int(index), True)
    model.set_maximize(True)
    margin = SCIP_DUALFEASTOL * float(np.sum(data.var_hi - data.var_lo))
    margin *= max(1.0, float(np.max(np.abs(data.objective))))
    if hint_b is not None:
        power = np.einsum("tkm,tm->k", weights, hint_b)
        for j, value in enumerate(np.asarray(hint_b).reshape(-1)):
            model.add_hint(j, float(value))
        for g, lv in enumerate(levels):
            attacked = np.searchsorted(lv.eta, power[lv.group], side="right")
            for i in range(lv.eta.size):
                model.add_hint(int(z[first[g] + i]), 1.0 if i < attacked else 0.0)
    return model, nb, t_count, m_count, margin


class ScipRun:
    """SCIP on the ordered MILP, in a background thread (MPSolver releases the GIL while it
    solves), so that the branch and bound can run beside it; `interrupt()` stops it early.

    An interrupted run keeps SCIP's proven dual bound, never its incumbent as a bound.
    """

    def __init__(self, levels, weights, totals, *, time_limit_s=None, hint_b=None, top_rows=()):
        totals = np.asarray(totals, np.float64)
        built = _build(levels, weights, totals, hint_b, top_rows)
        self._model, self._nb, self._t, self._m, self.margin = built
        self._solver = ScipSolver("scip")
        if not self._solver.solver_is_supported():
            raise RuntimeError(
                "SCIP is not available in this OR-Tools build; use milp_solver='bnb'."
            )
        self._solver.set_solver_specific_parameters(
            "limits/gap = 0\nlimits/absgap = 0\n"
            f"numerics/dualfeastol = {SCIP_DUALFEASTOL!r}\nnumerics/feastol = {SCIP_FEASTOL!r}"
        )
        if time_limit_s is not None:
            self._solver.set_time_limit_in_seconds(max(float(time_limit_s), 1e-3))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cancel = threading.Event()
        self._delay_s = 0.0
        self.interrupted = False

    def _run(self) -> None:
        if self._delay_s > 0 and self._cancel.wait(self._delay_s):
            return  # interrupted before it started: no solve, no bound (status NOT_SOLVED)
        self._solver.solve(self._model)

    def start(self, delay_s: float = 0.0) -> ScipRun:
        """Starts SCIP in the background, after `delay_s` seconds unless interrupted first."""
        self._delay_s = float(delay_s)
        self._thread.start()
        return self

    def done(self) -> bool:
        return not self._thread.is_alive()

    def proved(self) -> bool:
        """True once SCIP has finished on its own with a proven optimum (a solver running beside
        it may stop then; after a failure or a time limit it should go on)."""
        return self.done() and not self.interrupted and self._solver.status() == _S.OPTIMAL

    def interrupt(self) -> None:
        """Stops SCIP and waits for it (repeats the request: one sent before SCIP has started
        solving would be lost)."""
        while not self.done():
            self.interrupted = True
            self._cancel.set()
            self._solver.interrupt_solve()
            self._thread.join(0.05)

    def result(self) -> ScipOutcome:
        """Waits for SCIP and returns its outcome."""
        self._thread.join()
        solver = self._solver
        status = solver.status()
        has = solver.has_solution()
        objective_value = float(solver.objective_value()) if has else float("nan")
        b = None
        if has:
            b = np.asarray(solver.variable_values())[: self._nb].reshape(self._t, self._m)
        if status in (_S.OPTIMAL, _S.FEASIBLE):
            bound = float(solver.best_objective_bound())
            if self.interrupted and status == _S.OPTIMAL:
                status = _S.FEASIBLE  # stopped from outside: trust only the proven bound
            if status == _S.OPTIMAL and not np.isfinite(bound):
                bound = objective_value
            return ScipOutcome(status.name, objective_value, bound + self.margin, b, self.margin)
        return ScipOutcome(status.name, objective_value, float("nan"), b)


def solve_scip(levels, weights, totals, *, time_limit_s=None, hint_b=None) -> ScipOutcome:
    """Solves the ordered MILP over `levels` (reachable levels, >= 1 group) with SCIP."""
    return (
        ScipRun(levels, weights, totals, time_limit_s=time_limit_s, hint_b=hint_b).start().result()
    )
