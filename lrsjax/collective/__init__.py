"""Collective robustness certificates on OR-Tools (docs/math.md): problems, transforms, solvers.

    problem = from_base_certs(base_certs, targets)          # rows: targeted, not abstained
    problem = chain(share()).apply(problem)                  # or binning(n); naive_filter()
    result = solve(problem, budgets, mode="lp" | "hull" | "milp")
    result = certify_collective(base_certs, budgets, targets=..., num_bins=..., mode=...)

The relaxations ("lp", "hull") live here; the exact MILP ("milp") in `lrsjax.collective.milp`,
behind one solver protocol (`milp.SOLVERS`, tuned by `milp.MilpOptions`).

`result.certified` is a sound lower bound on the targeted outputs no perturbation within the
budget changes together; `status`, `mode_used` and `solver` say what produced each number.
The only package of lrsjax that imports ortools.

Soundness policies (every tolerance points toward fewer certified outputs):
* Bounds: relaxation and branch-and-bound bounds are Lagrangian bounds recomputed in float64 from
  the LP's multipliers, valid whatever GLOP's tolerances. SCIP's dual bound cannot be recomputed
  so; it counts only plus a margin covering its dual feasibility tolerance,
  `1e-7 * sum of the variables' ranges * max(1, largest objective coefficient)` (`milp._scip`): the
  most an LP bound with reduced costs that far from feasible can understate the optimum. The
  count is an integer, so an integral (proven) bound loses nothing while the margin is below 1.
* Naive filter: rows dropped at some totals are certified only up to them; the problem records
  the smallest such totals (`naive_limit`) and every budget above them is refused (`_problem`).
* Thresholds: binning keeps one eta per bin, the smallest; the paper's LP merges thresholds
  within a relative 1e-9 into the smaller (`_relax.paper_function`). Lowering a threshold only
  makes outputs easier to attack, so both can only certify less.
"""

from lrsjax.collective._problem import (
    CollectiveProblem,
    Transform,
    binning,
    chain,
    from_base_certs,
    max_costs,
    naive_filter,
    share,
    with_totals,
)
from lrsjax.collective._solve import (
    MILP_SOLVERS,
    MODES,
    CollectiveResult,
    certify_collective,
    solve,
)
from lrsjax.collective.milp import MilpOptions

__all__ = [
    "CollectiveProblem",
    "CollectiveResult",
    "MILP_SOLVERS",
    "MODES",
    "MilpOptions",
    "Transform",
    "binning",
    "certify_collective",
    "chain",
    "from_base_certs",
    "max_costs",
    "milp",
    "naive_filter",
    "share",
    "solve",
    "with_totals",
]
