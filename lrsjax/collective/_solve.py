"""Collective certificates for many budgets: paper LP, concave-hull LP, exact MILP (docs/math.md 6).

Within a group every row sees the same spend `P_k = (W b)_k`, so the adversary attacks a prefix
of the group's rows sorted by eta: a group is its sorted distinct etas `E_i` and cumulative
counts `C_i` (`_levels`). Per budget (in user units, turned into totals by `budget_totals`):

1. budget 0: nothing to solve; every output in the problem is certified (eta > 0).
2. the exact naive filter: rows with `sum_t total_t max_j W[t, k, j] < eta` are certified on
   their own and leave the optimization (model reuse: only each group's prefix of levels changes).
3. a bound `U` on the number of remaining outputs one perturbation flips together:
   * "lp": the paper's LP relaxation (0 <= a_n <= 1), as a per-group hypograph of
     `F_k(r) = sum_m c_m min(1, r / eta_m)`, solved by GLOP with cutting planes (`_relax`);
   * "hull": the tighter sound relaxation, the upper concave hull of each group's step function;
     with one budget type it is strengthened, where it helps, by clique rows on the groups' top
     levels (no attack reaches two pairwise-conflicting top levels; `_clique`), reported as
     "hull+clique";
   * "milp": exact; branch and bound over per-group levels with hull-LP bounds (`_bnb`) or the
     generic ordered MILP in SCIP (`_scip`), see `milp_solver`.
   Relaxation bounds are Lagrangian bounds evaluated in float64 from the LP's multipliers, so
   they hold whatever the LP solver's tolerances; SCIP's bound counts only with a margin for its
   dual feasibility tolerance (`_scip`). A MILP stopped by `time_limit_s` reports its
   proven bound (never its incumbent, which is only an attack).
4. `certified = naive + |T| - floor(U + tol)`, `tol = 1e-6 * max(1, |T|)` (rounding can only
   remove outputs, never add one).
Budgets are processed from small to large: attacks found at a smaller budget (in every type)
seed the MILP at larger ones, and once nothing is certified it stays so (status MONOTONE_ZERO).

Reuse across budgets: the levels are built once per problem; a budget only changes each group's
prefix of reachable levels (the naive filter) and the totals. Models are filled from sparse arrays
(well under a millisecond) and GLOP has no incremental re-solve through OR-Tools' Python API, so
"reuse" means warm starts: the LP's cut loop starts at the previous budget's solution, the MILP
from the previous attacks, and the concave hulls of every prefix come from one pass per group.
Each budget is solved in rescaled units (spends divided by the totals, thresholds by the largest
reachable spend), so the solvers' absolute tolerances mean the same at every budget.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs import budget_totals
from lrsjax.collective import _engine, _levels, _problem, milp

MODES = _engine.MODES
MILP_SOLVERS = _engine.MILP_SOLVERS


class CollectiveResult(NamedTuple):
    """Per budget (B budgets) results of `solve` / `certify_collective`.

    Fields:
      budgets: the budgets as given (eps [B], or (additions, deletions) pairs [B, 2]).
      totals: float64 [B, T], the budget totals the solver used (l2: eps**2).
      certified: int64 [B], naive + collective certified outputs: a sound lower bound on the
        outputs of the target set that every perturbation within the budget leaves unchanged.
      naive: int64 [B], outputs certified on their own (the naive certificate).
      num_targets: int, outputs in the problem (targeted and not abstained).
      attack_bound: float64 [B], the proven upper bound on jointly attacked non-naive outputs
        that `certified` comes from (for the MILP: the solver's proven bound).
      attack_found: float64 [B], MILP only: the largest attack found (outputs one real spend
        flips; `num_targets - attack_found` is an upper bound on the best certificate); NaN for
        the relaxations.
      status: tuple of B str:
        "ZERO_BUDGET" (no solve), "NAIVE_ONLY" (every output certified alone),
        "MONOTONE_ZERO" (a budget no larger in any type already certified nothing),
        "OPTIMAL" (relaxation solved to optimality / MILP proven exact),
        "DUAL_BOUND" (an LP - the relaxation, or a node of the branch and bound - failed or
          gave an answer that does not verify; the count comes from a valid Lagrangian bound,
          possibly loose; with lam = 0 that is "nothing beyond the naive count"),
        "TIME_LIMIT_BOUND" (MILP stopped at its time limit; count from its proven bound),
        "HULL_FALLBACK" (SCIP gave no bound; count from the hull LP bound).
      mode_used: tuple of B str, the relaxation that produced each number: "lp", "hull",
        "hull+clique" (the hull with top-level clique rows, `_clique`: one budget type, where
        a budget can reach the top level of one group but of no two in a clique), "milp" or
        "none".
      solver: tuple of B str: "GLOP", "BNB+GLOP" (lrsjax's branch and bound with GLOP node
        LPs), "SCIP", "BNB+SCIP" (both side by side; the smaller proven bound counts), or
        "none".
      seconds: float64 [B], wall time per budget.
    """

    budgets: np.ndarray
    totals: np.ndarray
    certified: np.ndarray
    naive: np.ndarray
    num_targets: int
    attack_bound: np.ndarray
    attack_found: np.ndarray
    status: tuple
    mode_used: tuple
    solver: tuple
    seconds: np.ndarray


def _check_options(mode, time_limit_s, milp_solver, budget_transform=None):
    _checks.one_of("mode", mode, MODES)
    _checks.one_of("milp_solver", milp_solver, tuple(milp.SOLVERS))
    if time_limit_s is not None:
        if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, int | float):
            _checks.fail("time_limit_s", time_limit_s, "must be a number or None", "E.g. 10.")
        if not (np.isfinite(time_limit_s) and time_limit_s > 0):
            _checks.fail("time_limit_s", time_limit_s, "must be > 0 or None", "E.g. 10.")
    if budget_transform is not None and not isinstance(budget_transform, _problem.Transform):
        _checks.fail("budget_transform", budget_transform, "must be a Transform or None",
                     "E.g. chain(naive_filter(), binning(16)).")  # fmt: skip


def _order(totals_all: np.ndarray) -> np.ndarray:
    """Small budgets first: a budget dominated in every type comes before the dominating one."""
    return np.lexsort((*totals_all.T[::-1], totals_all.sum(axis=1)))


def _result(budgets, totals_all, outcomes, num_targets) -> CollectiveResult:
    return CollectiveResult(
        budgets=np.asarray(budgets),
        totals=totals_all,
        certified=np.array([o.certified for o in outcomes], np.int64),
        naive=np.array([o.naive for o in outcomes], np.int64),
        num_targets=int(num_targets),
        attack_bound=np.array([o.attack_bound for o in outcomes], np.float64),
        attack_found=np.array([o.attack_found for o in outcomes], np.float64),
        status=tuple(o.status for o in outcomes),
        mode_used=tuple(o.mode_used for o in outcomes),
        solver=tuple(o.solver for o in outcomes),
        seconds=np.array([o.seconds for o in outcomes], np.float64),
    )


def solve(
    problem: _problem.CollectiveProblem,
    budgets,
    *,
    mode: str = "lp",
    time_limit_s: float | None = None,
    milp_solver: str = "auto",
    milp_options=None,
    budget_transform: _problem.Transform | None = None,
) -> CollectiveResult:
    """Certified counts of `problem` for every budget (docs/math.md; module docstring).

    Args:
      problem: a `CollectiveProblem` (from `from_base_certs`, optionally transformed).
      budgets: l2/l1: radii eps [B] (the solver uses eps**2 / eps); binary: (additions,
        deletions) pairs [B, 2]. Must be >= 0.
      mode: "lp" (the paper's relaxation), "hull" (tighter, still sound) or "milp" (exact).
      time_limit_s: MILP time limit per budget (None: none). At the limit the count comes from
        the proven bound (status TIME_LIMIT_BOUND). Ignored by the relaxations.
      milp_solver: a name in `MILP_SOLVERS` (`lrsjax.collective.milp.SOLVERS`): "bnb"
        (lrsjax's exact branch and bound), "scip" (generic ordered MILP), or "auto" (bnb alone
        on few groups; above, bnb and, after a delay, SCIP beside it: the first to finish
        stops the other, and at a time limit the smaller proven bound counts).
      milp_options: `lrsjax.collective.milp.MilpOptions` (threads, SCIP delay, kappa time, ...);
        None: the defaults. Ignored by the relaxations.
      budget_transform: a `Transform` applied to the problem at each budget's totals before
        solving it (e.g. `chain(naive_filter(), binning(n))`: bins only over the rows the
        budget can attack); None: the problem as given for every budget.
    Returns:
      `CollectiveResult` with one entry per budget, in the order given.
    """
    problem = _problem.validate_problem(problem)
    _check_options(mode, time_limit_s, milp_solver, budget_transform)
    totals_all = budget_totals(problem.norm, budgets)
    _problem.check_budgets_allowed(problem, totals_all)
    engine = _engine.Engine(problem.weights, mode, time_limit_s, milp_solver, milp_options)
    if budget_transform is None:
        levels = _levels.levels_of(problem.eta, problem.multiplicity, problem.group)
        if mode in ("hull", "milp"):
            engine.prepare_hulls(levels, hull_key=0)
    outcomes = [None] * totals_all.shape[0]
    for index in _order(totals_all):
        reduced, hull_key = problem, 0
        if budget_transform is not None:
            reduced = budget_transform.apply(problem._replace(totals=totals_all[index]))
            levels = _levels.levels_of(reduced.eta, reduced.multiplicity, reduced.group)
            hull_key = None  # levels change with the budget: no cached prefix hulls
        outcomes[index] = engine.solve_budget(
            levels, reduced.num_naive, reduced.num_outputs, totals_all[index], hull_key=hull_key
        )
    return _result(budgets, totals_all, outcomes, problem.num_outputs + problem.num_naive)


def certify_collective(
    base_certs,
    budgets,
    *,
    targets=None,
    num_bins: int | None = None,
    mode: str = "lp",
    time_limit_s: float | None = None,
    milp_solver: str = "auto",
    milp_options=None,
) -> CollectiveResult:
    """Collective certificate of `base_certs` for every budget, in one call.

    `from_base_certs(base_certs, targets)`, then `solve` with, per budget, `chain(naive_filter(),
    binning(num_bins))` (binning only the rows the budget can attack, so bins are as fine as
    possible); with `num_bins=None` the exact `share()` instead, one problem for all budgets.
    Arguments and guarantee as in `solve`; `targets` is a bool mask [D] (e.g. all evaluated
    outputs, or those also equal to the label for certified accuracy), None for all.
    """
    problem = _problem.from_base_certs(base_certs, targets)
    options = dict(mode=mode, time_limit_s=time_limit_s, milp_solver=milp_solver,
                   milp_options=milp_options)  # fmt: skip
    if num_bins is None:
        return solve(_problem.share().apply(problem), budgets, **options)
    per_budget = _problem.chain(_problem.naive_filter(), _problem.binning(num_bins))
    return solve(problem, budgets, budget_transform=per_budget, **options)
