"""The registered exact solvers: "bnb", "scip" and "auto" (the portfolio of both).

Each starts with the rows on the groups' top levels (one budget type only): the pairwise
cliques of `_clique` and a cap on how many top levels one attack reaches (`_kappa`, a small
search of its own, at most `MilpOptions.kappa_time_s`). Every bound a solver reports is proven:
the branch and bound's Lagrangian bounds, SCIP's dual bound plus its margin (`_scip`), or the
hull LP's Lagrangian bound; a solver stopped early reports its bound, never its incumbent.
"""

from __future__ import annotations

import time

import numpy as np

from lrsjax.collective import _clique, _levels
from lrsjax.collective.milp import _bnb, _kappa, _scip
from lrsjax.collective.milp._options import MilpOptions
from lrsjax.collective.milp._protocol import MilpOutcome, MilpRequest, MilpSolver


def _proves(bound: float, attack: float, tol: float) -> bool:
    return np.floor(bound + tol) <= attack


def top_rows(request: MilpRequest, options: MilpOptions):
    """(rows, wrows [G, M]) of `_kappa.top_rows` for one budget type; ((), None) otherwise.
    `kappa` gets `options.kappa_time_s`, at most a quarter of the time left."""
    kappa_time = options.kappa_time_s
    if request.deadline is not None:
        kappa_time = min(kappa_time, max(request.deadline - time.perf_counter(), 0.0) / 4)
    if request.weights.shape[0] != 1:
        return (), None
    wrows = np.stack([request.weights[0, lv.group, :] for lv in request.levels])
    rows = _kappa.top_rows(request.levels, wrows, kappa_time if kappa_time > 0.01 else None,
                           options.kappa_threads)  # fmt: skip
    return rows, wrows


def _bnb_alone(request: MilpRequest, options: MilpOptions, rows) -> MilpOutcome:
    res = _bnb.branch_and_bound(
        request.levels, request.weights, request.totals, tol=request.tol,
        incumbents=request.incumbents, deadline=request.deadline, top_rows=rows,
        workers=options.threads, options=options,
    )  # fmt: skip
    if res.optimal:
        status = "OPTIMAL"
    else:
        status = "DUAL_BOUND" if res.failed else "TIME_LIMIT_BOUND"
    attacks = () if res.b is None else (res.b,)
    return MilpOutcome(res.bound, res.attack, status, "milp", "BNB+GLOP", attacks)


def _with_scip(request: MilpRequest, options: MilpOptions, rows, wrows, portfolio: bool):
    """SCIP (alone, or beside the branch and bound in the portfolio): the hull LP first (its
    bound is rigorous; with a good incumbent it may already prove optimality), then the
    generic MILP, with the hull bound as a safety net."""
    levels, weights, ones, tol = request.levels, request.weights, request.totals, request.tol
    hull, funcs = request.hull()
    strong = _clique.strengthen(levels, wrows, rows, funcs, hull)
    if strong is not None:  # a smaller rigorous bound: it stands in for the hull bound
        hull = hull._replace(bound=strong.bound)
    found, best_b, attacks = 0, None, []
    extra = [strong.b] if strong is not None else []
    for b in [*request.incumbents] + ([hull.b] if hull.b is not None else []) + extra:
        value, feasible = _levels.attack_of(levels, weights, ones, b)
        if value > found:
            found, best_b = value, feasible
    if best_b is not None:
        attacks.append(best_b)
    if _proves(hull.bound, found, tol):
        return MilpOutcome(hull.bound, found, "OPTIMAL", "milp", "GLOP", tuple(attacks))
    # In the portfolio SCIP starts after `scip_delay_s`; until then the branch and bound
    # searches with `options.threads` threads (most budgets end before SCIP would start).
    delay = options.scip_delay_s if portfolio else 0.0
    deadline = request.deadline
    left = None if deadline is None else max(deadline - time.perf_counter() - delay, 1e-3)
    run = _scip.ScipRun(
        levels, weights, ones, time_limit_s=left, hint_b=best_b, top_rows=rows
    ).start(delay_s=delay)
    bound, label, failed = hull.bound, "SCIP", False
    if portfolio:
        # Both solvers at once (OR-Tools releases the GIL while SCIP works): the first to
        # finish stops the other; every bound either proves is valid, so the smaller counts.
        seeds = [*request.incumbents] + ([best_b] if best_b is not None else [])
        res = _bnb.branch_and_bound(
            levels, weights, ones, tol=tol, incumbents=seeds, deadline=deadline,
            stop=run.proved, top_rows=rows, workers=options.threads,
            helpers_until=time.perf_counter() + delay, options=options,
        )  # fmt: skip
        if not res.failed:
            # Finished, or at the deadline, or SCIP proved the optimum: SCIP need not go on.
            # After a failing node LP the branch and bound gives up early and SCIP keeps its
            # time.
            run.interrupt()
        if res.b is not None:
            attacks.append(res.b)
        found = max(found, res.attack)
        bound, label, failed = min(bound, res.bound), "BNB+SCIP", res.failed
    out = run.result()
    if out.b is not None:  # SCIP's attack, re-counted as a genuine spend for later budgets
        value, feasible = _levels.attack_of(levels, weights, ones, out.b)
        if value >= found:
            attacks.append(feasible)
    if out.status in ("OPTIMAL", "FEASIBLE") and np.isfinite(out.bound):
        # `out.bound` is SCIP's dual bound plus the margin of `_scip`'s bound policy.
        # The objective is a sum of integer counts: SCIP's 96.99999999999997 means 97.
        objective = np.floor(out.objective + 1e-6) if np.isfinite(out.objective) else 0.0
        found = max(found, objective)
        scip_bound = max(out.bound, objective) if out.status == "OPTIMAL" else out.bound
        bound, failed = min(bound, scip_bound), False
    elif label == "SCIP":
        # SCIP gave no proven bound (e.g. stopped before its first LP, or failed): the hull
        # LP's rigorous bound is still a certificate; say so.
        used = "hull" if strong is None else "hull+clique"
        return MilpOutcome(hull.bound, found, "HULL_FALLBACK", used, "GLOP", tuple(attacks))
    if _proves(bound, found, tol):
        status = "OPTIMAL"
    else:
        status = "DUAL_BOUND" if failed else "TIME_LIMIT_BOUND"
    return MilpOutcome(bound, found, status, "milp", label, tuple(attacks))


def solve_bnb(request: MilpRequest, options: MilpOptions) -> MilpOutcome:
    """lrsjax's branch and bound (`_bnb`) with `options.threads` threads."""
    rows, _ = top_rows(request, options)
    return _bnb_alone(request, options, rows)


def solve_scip(request: MilpRequest, options: MilpOptions) -> MilpOutcome:
    """SCIP on the ordered MILP (`_scip`), after the hull LP (which may already prove it)."""
    rows, wrows = top_rows(request, options)
    return _with_scip(request, options, rows, wrows, portfolio=False)


def solve_auto(request: MilpRequest, options: MilpOptions) -> MilpOutcome:
    """The branch and bound alone up to `options.auto_bnb_max_groups` groups; above, the
    branch and bound and, from `options.scip_delay_s` on, SCIP beside it: the first to finish
    stops the other, and at a time limit the smaller proven bound counts (SCIP sometimes
    proves small-bin problems sooner, the branch and bound has the tighter bound on fine bins).
    """
    rows, wrows = top_rows(request, options)
    if len(request.levels) <= options.auto_bnb_max_groups:
        return _bnb_alone(request, options, rows)
    return _with_scip(request, options, rows, wrows, portfolio=True)


BNB = MilpSolver("bnb", solve_bnb)
SCIP = MilpSolver("scip", solve_scip)
AUTO = MilpSolver("auto", solve_auto)
