"""The naive collective certificate: each output against the whole budget (docs/math.md §1, §6)."""

from __future__ import annotations

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs._types import BaseCertificates, budget_totals, make_base_certificates


def naive_certified(base_certs: BaseCertificates, budgets) -> np.ndarray:
    """Which outputs are certified on their own against each whole budget (docs/math.md §6).

    The adversary can put all of budget type t into the region that output n's group weighs most,
    so output n (group k) is certified against budget totals `total[t]` iff it does not abstain and

        sum_t total[t] * max_j W[t, k, j]  <  eta[n].

    Guarantee: inherits that of the base certificates (every perturbation within the budget has
    `sum_{t,j} W[t,k,j] b[t,j] <= sum_t total[t] max_j W[t,k,j]`). The fields are validated again
    as `make_base_certificates` does (weights >= 0, finite eta > 0 where not abstained, group ids
    in range), so a hand-built or edited tuple cannot over-claim.

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
    # Re-validate every field: a hand-built (or `_replace`d) tuple with negative weights, a
    # non-finite eta or group ids out of range would otherwise over-claim or crash below.
    base_certs = make_base_certificates(
        base_certs.prediction,
        base_certs.abstain,
        base_certs.eta,
        base_certs.group,
        base_certs.weights,
        base_certs.norm,
    )
    totals = budget_totals(base_certs.norm, budgets)  # [B, T]
    worst_weight = base_certs.weights.max(axis=2, initial=0.0)  # [T, K]
    cost = worst_weight[:, base_certs.group].T @ totals.T  # [D, B]
    return ~base_certs.abstain[:, None] & (cost < base_certs.eta[:, None])
