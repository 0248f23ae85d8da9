"""Collective robustness certificates on OR-Tools (SPEC 6): problems, transforms, solvers.

    problem = from_base_certs(base_certs, targets)          # rows: targeted, not abstained
    problem = chain(share()).apply(problem)                  # or binning(n); naive_filter()
    result = solve(problem, budgets, mode="lp" | "hull" | "milp")
    result = certify_collective(base_certs, budgets, targets=..., num_bins=..., mode=...)

`result.certified` is a sound lower bound on the targeted outputs no perturbation within the
budget changes together; `status`, `mode_used` and `solver` say what produced each number.
The only package of lrsjax that imports ortools.
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
