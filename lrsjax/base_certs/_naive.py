"""The naive collective certificate: each output against the whole budget (SPEC 1, 6)."""

from __future__ import annotations

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs._types import BaseCertificates, budget_totals


def naive_certified(base_certs: BaseCertificates, budgets) -> np.ndarray:
    """Which outputs are certified on their own against each whole budget (SPEC 6, naive filter).

    The adversary can put all of budget type t into the region that output n's group weighs most,
    so output n (group k) is certified against budget totals `total[t]` iff it does not abstain and

        sum_t total[t] * max_j W[t, k, j]  <  eta[n].

    Guarantee: inherits that of the base certificates (every perturbation within the budget has
    `sum_{t,j} W[t,k,j] b[t,j] <= sum_t total[t] max_j W[t,k,j]`).

    Args:
      base_certs: BaseCertificates (D outputs, weights [T, K, M]).
      budgets: user-facing budgets, as in `budget_totals(base_certs.norm, budgets)`: eps values [B]
        for "l2"/"l1" (l2 totals are eps**2), (additions, deletions) pairs [B, 2] for "binary".
    Returns:
      bool [D, B].
    """
    if not isinstance(base_certs, BaseCertificates):
        _checks.fail(
            "base_certs",
            base_certs,
            "must be a BaseCertificates",
            "Build it with make_base_certificates or a certificate such as gaussian(...).",
        )
    totals = budget_totals(base_certs.norm, budgets)  # [B, T]
    worst_weight = base_certs.weights.max(axis=2, initial=0.0)  # [T, K]
    cost = worst_weight[:, base_certs.group].T @ totals.T  # [D, B]
    return ~base_certs.abstain[:, None] & (cost < base_certs.eta[:, None])
