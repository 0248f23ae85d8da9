"""Collective robustness certificates on OR-Tools (SPEC 6): problems, transforms, solvers.

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
