"""Base certificates: per-output certificates in the linear form of SPEC 5."""

from lrsjax.base_certs._types import (
    BUDGET_KINDS,
    NORMS,
    BaseCertificates,
    budget_totals,
    make_base_certificates,
)
