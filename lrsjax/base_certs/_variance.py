"""Variance-constrained base certificates and Bernoulli flip costs (docs/math.md §5).

For any product noise and a score h in [0, 1] with clean mean mu and variance sigma^2, the
perturbed mean obeys `mu' >= mu - sqrt(sigma^2 * chi^2(P' || P))`, so the prediction is kept while
`log(1 + chi^2) < log(1 + (mu - 1/2)^2 / sigma^2)`. For product noise `log(1 + chi^2)` is additive
over input dimensions: each changed dimension adds its own `log(1 + chi^2_d)`, which gives the
linear form of `BaseCertificates` with per-dimension costs as weights.
"""

from __future__ import annotations

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs._types import NORMS, BaseCertificates, make_base_certificates


def bernoulli_costs(theta_plus, theta_minus):
    """Per-bit costs `log(1 + chi^2)` of changing one bit under Bernoulli flip noise.

    See docs/math.md §5.

    Noise flips a 0 to 1 with probability `theta_plus` and a 1 to 0 with `theta_minus`.
    Adding a bit (0 -> 1) costs `gamma_add = log((1 - tm)^2 / tp + tm^2 / (1 - tp))`,
    deleting one (1 -> 0) costs `gamma_del = log(tp^2 / (1 - tm) + (1 - tp)^2 / tm)`.

    Args:
      theta_plus, theta_minus: float in (0, 1), broadcastable against each other.
    Returns:
      (gamma_add, gamma_del): float64 arrays of the broadcast shape (>= 0; 0 iff tp + tm = 1).
    """
    tp = _open_probabilities("theta_plus", theta_plus)
    tm = _open_probabilities("theta_minus", theta_minus)
    try:
        tp, tm = np.broadcast_arrays(tp, tm)
    except ValueError:
        _checks.fail("theta_minus", tm, f"must broadcast against `theta_plus` {tp.shape}", "")
    gamma_add = np.log((1.0 - tm) ** 2 / tp + tm**2 / (1.0 - tp))
    gamma_del = np.log(tp**2 / (1.0 - tm) + (1.0 - tp) ** 2 / tm)
    # log(1 + chi^2) >= 0; clear rounding noise around 0 (tp + tm == 1).
    return np.maximum(gamma_add, 0.0)[()], np.maximum(gamma_del, 0.0)[()]


def variance_constrained(
    prediction, mu_lower, zeta_upper, group, weights, norm: str = "binary"
) -> BaseCertificates:
    """Variance-constrained base certificates (docs/math.md §5).

    `eta = log(1 + (mu_lower - 1/2)^2 / zeta_upper)`, with `zeta_upper` an upper bound on the
    variance (not a standard deviation), e.g. `lrsjax.stats.second_moment_upper` about the
    empirical mean; outputs with `mu_lower <= 1/2` abstain. Guarantee: if, simultaneously,
    `mu_lower <= E[h]` and `zeta_upper >= Var[h]` for the score h of the predicted class under the
    group's noise, the prediction is kept for every perturbation with `sum_{t,j} W[t,k,j] b[t,j] <
    eta` (so that the perturbed mean stays above 1/2).

    Args:
      prediction: int [D].
      mu_lower: float [D] in [0, 1]: lower bounds on the mean score of the prediction.
      zeta_upper: float [D] > 0: upper bounds on its variance.
      group: int [D] in [0, K).
      weights: float [T, K, M] >= 0, the per-unit costs `log(1 + chi^2)`:
        norm "binary": T = 2, `weights[0]` = gamma_add and `weights[1]` = gamma_del of the flip
        probabilities that group k applies to region j (see `bernoulli_costs`; index them with the
        same rank that the sampler used). norm "l2" (Gaussian noise): `(1 / stds**2)[None]`.
      norm: "binary" (default), "l2" or "l1".
    Returns:
      BaseCertificates.
    """
    _checks.one_of("norm", norm, NORMS)
    mu_lower = _checks.as_float_array("mu_lower", mu_lower, ndim=1)
    if np.any((mu_lower < 0) | (mu_lower > 1)):
        _checks.fail("mu_lower", mu_lower, "must lie in [0, 1]", "Pass DKW lower mean bounds.")
    zeta_upper = _checks.as_float_array("zeta_upper", zeta_upper, ndim=1)
    if np.any(zeta_upper <= 0):
        _checks.fail(
            "zeta_upper", zeta_upper, "must be > 0", "Pass upper bounds on the score's variance."
        )
    _checks.same_shape(("mu_lower", "zeta_upper"), (mu_lower, zeta_upper))
    abstain = mu_lower <= 0.5
    eta = np.where(abstain, 0.0, np.log1p((mu_lower - 0.5) ** 2 / zeta_upper))
    abstain |= eta <= 0  # mu_lower a hair above 1/2: eta underflows, nothing to certify
    return make_base_certificates(prediction, abstain, eta, group, weights, norm)


def _open_probabilities(name: str, value) -> np.ndarray:
    arr = _checks.as_float_array(name, value)
    if np.any((arr <= 0) | (arr >= 1)):
        _checks.fail(name, arr, "must lie strictly inside (0, 1)", "Pass flip probabilities.")
    return arr
