"""Base certificates: per-output certificates in the linear form of docs/math.md §5."""

from lrsjax.base_certs._continuous import (
    gaussian,
    inverse_scales,
    isotropic_radius,
    laplace_l1,
    uniform_l1,
)
from lrsjax.base_certs._naive import naive_certified
from lrsjax.base_certs._sparse_smoothing import (
    check_table_size,
    sparse_smoothing_grid,
    sparse_smoothing_worst_mass,
)
from lrsjax.base_certs._types import (
    BUDGET_KINDS,
    NORMS,
    BaseCertificates,
    budget_totals,
    make_base_certificates,
)
from lrsjax.base_certs._variance import bernoulli_costs, variance_constrained

__all__ = [
    "BUDGET_KINDS",
    "NORMS",
    "BaseCertificates",
    "bernoulli_costs",
    "budget_totals",
    "check_table_size",
    "gaussian",
    "inverse_scales",
    "isotropic_radius",
    "laplace_l1",
    "make_base_certificates",
    "naive_certified",
    "sparse_smoothing_grid",
    "sparse_smoothing_worst_mass",
    "uniform_l1",
    "variance_constrained",
]
