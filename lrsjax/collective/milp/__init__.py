"""The exact collective MILP behind one solver protocol (docs/math.md; docs/design.md).

    result = collective.solve(problem, budgets, mode="milp", milp_solver="auto",
                              milp_options=MilpOptions(threads=4))

A solver is a `MilpSolver(name, solve)`: `solve(MilpRequest, MilpOptions) -> MilpOutcome`, a
proven bound on the largest attack of one budget (the engine turns it into a certified count).
`SOLVERS` maps the names `solve(..., milp_solver=...)` accepts to solvers:
* "bnb": lrsjax's branch and bound over per-group levels with float64 Lagrangian bounds of the
  hull LP at every node (`_bnb`), on `MilpOptions.threads` threads sharing one tree (`_search`);
* "scip": the ordered formulation in SCIP (`_scip`), whose bound counts with a margin for its
  dual feasibility tolerance;
* "auto": the portfolio (`_portfolio`): "bnb" alone on few groups, both side by side above.
All three add rows on the groups' top levels with one budget type: pairwise cliques
(`lrsjax.collective._clique`, shared with the hull relaxation) and `kappa` (`_kappa`).
Tuning lives in `MilpOptions`; no setting changes what is proven.
"""

from lrsjax.collective.milp._options import MilpOptions, check_options, default_threads
from lrsjax.collective.milp._portfolio import AUTO, BNB, SCIP
from lrsjax.collective.milp._protocol import MilpOutcome, MilpRequest, MilpSolver

SOLVERS = {solver.name: solver for solver in (AUTO, BNB, SCIP)}

__all__ = [
    "SOLVERS",
    "MilpOptions",
    "MilpOutcome",
    "MilpRequest",
    "MilpSolver",
    "check_options",
    "default_threads",
]
