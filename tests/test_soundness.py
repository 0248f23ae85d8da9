"""Soundness of lrsjax end to end, against exact references (issue #7).

Every check here compares what lrsjax certifies with a truth computed in closed form:

* Linear segmentation models `g_d(z) = [w_d . z + b_d > 0]` under localized Gaussian smoothing:
  `P(g_d = 1) = Phi(m_d / sigma_d)` with `m_d = w_d . x + b_d` and `sigma_d^2 = sum w_d^2 s^2`
  (masked pixels arrive as 0, so only the visible weights count), and the smoothed prediction
  flips exactly when `w_d . (x + delta) + b_d` changes sign. The smallest l2 perturbation that
  flips a SET of outputs is a small quadratic program (solved exactly with NNLS on its dual).
* Count-threshold graph models (node i predicts 1 iff its attribute row, plus a partner row, has
  more than t_i ones) under Bernoulli flips: the count is a sum of binomials, so every smoothed
  probability, mean and second moment is exact, before and after any attack.

Two kinds of checks:

* coverage: over many independent keys, the bounds that `lrsjax.certify` returns must fail (some
  tested output's bound on the wrong side of its truth) at most at the nominal rate alpha (plus
  binomial slack); the bound failures are counted, not forbidden;
* conditional soundness: WHENEVER every statistical bound of a trial holds, every certificate
  derived from them (radii, sparse-smoothing grids, binary radii, collective counts) must be
  true. This part is deterministic: a single violation is a bug.

The fast versions (few trials) run in CI. The full suite (>= 2000 trials per check) runs with

    /work/venv/bin/pytest tests/test_soundness.py -m slow -q -s

and prints one `SOUNDNESS ...` line per check with the figures.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special, stats

import lrsjax
from lrsjax import base_certs, noise
from lrsjax._sparse import from_scipy

FAST_TRIALS = 12
SLOW_TRIALS = 2000


def _key(seed: int, trial: int):
    return jax.random.fold_in(jax.random.key(seed), trial)


def _assert_rate(failures: int, trials: int, level: float, z: float, what: str) -> None:
    rate = failures / trials
    slack = z * np.sqrt(level * (1 - level) / trials) + 1 / trials
    assert rate <= level + slack, f"{what}: failure rate {rate:.4f} > {level} + {slack:.4f}"


def _report(name: str, **figures) -> None:
    text = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nSOUNDNESS {name}: {text}")


# ================================================================================================
# Linear segmentation models under localized Gaussian smoothing
# ================================================================================================

C, H, W = 1, 4, 4
D = H * W


def linear_model(params, z):
    """Output d of one example: logits (-s_d, s_d) with s_d = w_d . z + b_d (z: [C, H, W])."""
    weights, bias = params
    score = jnp.einsum("dchw,chw->d", weights, z) + bias
    return jnp.stack([-score, score], axis=-1).reshape(*z.shape[1:], 2)


class LinearImage:
    """One linear segmentation instance with its exact smoothed probabilities.

    Attributes (D outputs, input [C, H, W]):
      weights float64 [D, C, H, W], bias [D], x [C, H, W], smoothing (lrsjax.noise.Smoothing),
      visible bool [D, C, H, W] (pixels the output's group does not mask),
      sigma [D] (std of the score under the group's noise), margin [D] (w_vis . x + b),
      p_one [D] = P(g_d = 1) = Phi(margin / sigma), params (float32, for `linear_model`).
    """

    def __init__(
        self,
        rng,
        *,
        shape=(C, H, W),
        grid=(2, 2),
        stds=(0.25, 0.8),
        mask=None,
        p_range=(0.55, 0.97),
        p_targets=None,
    ):
        c, h, w = shape
        d = h * w
        self.smoothing = noise.localized_gaussian(shape, grid, *stds, mask_distance=mask)
        per_pixel = self.smoothing.stds[self.smoothing.group.reshape(-1)][:, self.smoothing.region]
        per_pixel = np.broadcast_to(per_pixel[:, None], (d, c, h, w))
        self.visible = np.isfinite(per_pixel)
        self.weights = rng.normal(size=(d, c, h, w))
        self.x = rng.random((c, h, w))
        w_vis = np.where(self.visible, self.weights, 0.0)
        self.w_visible = w_vis
        self.sigma = np.sqrt(
            np.sum(w_vis**2 * np.where(self.visible, per_pixel, 0.0) ** 2, (1, 2, 3))
        )
        if p_targets is None:
            p_targets = rng.uniform(*p_range, size=d)
        sign = np.where(rng.random(d) < 0.5, -1.0, 1.0)
        self.margin = sign * self.sigma * special.ndtri(p_targets)
        self.bias = self.margin - np.einsum("dchw,chw->d", w_vis, self.x)
        self.p_one = special.ndtr(self.margin / self.sigma)
        self.params = (jnp.asarray(self.weights, jnp.float32), jnp.asarray(self.bias, jnp.float32))

    def p_of(self, prediction) -> np.ndarray:
        """Exact probability of `prediction` [D] (0/1) under each output's smoothing noise."""
        return np.where(prediction == 1, self.p_one, 1.0 - self.p_one)

    def flip_distance(self) -> np.ndarray:
        """Exact smallest l2 perturbation that changes each output's smoothed prediction."""
        return np.abs(self.margin) / np.sqrt(np.sum(self.w_visible**2, axis=(1, 2, 3)))

    def score_moments(self, prediction, center) -> tuple[np.ndarray, np.ndarray]:
        """Exact E[X] and E[(X - center)^2] of X = softmax score of `prediction`, per output.

        X = sigmoid(+-2 s) with s ~ N(margin, sigma^2); Gauss-Hermite quadrature (300 nodes).
        """
        nodes, weights = _hermgauss(300)
        s = self.margin[:, None] + np.sqrt(2.0) * self.sigma[:, None] * nodes[None]
        sign = np.where(prediction == 1, 1.0, -1.0)[:, None]
        score = special.expit(2.0 * sign * s)
        mean = (score * weights).sum(1) / np.sqrt(np.pi)
        second = ((score - np.asarray(center)[:, None]) ** 2 * weights).sum(1) / np.sqrt(np.pi)
        return mean, second


@functools.cache
def _hermgauss(num: int):
    return np.polynomial.hermite.hermgauss(num)


def _certify_image(key, inst: LinearImage, **kwargs):
    defaults = dict(n0=16, n=100, alpha=0.2, batch_size=128)
    defaults.update(kwargs)
    return lrsjax.certify(key, linear_model, inst.params, inst.x, inst.smoothing, **defaults)


def _histogram_center(hist: np.ndarray) -> np.ndarray:
    bins = hist.shape[-1]
    mids = (np.arange(bins) + 0.5) / bins
    return (hist * mids).sum(-1) / hist.sum(-1)


# ------------------------------------------------------------------------------------------------
# Clopper-Pearson (Bonferroni) end to end, with radius soundness
# ------------------------------------------------------------------------------------------------


def _gaussian_bonferroni(trials: int, seed: int, mask=None):
    """Family-wise coverage of certify's p_lower (bonferroni) and conditional radius soundness."""
    rng = np.random.default_rng(seed)
    failures = violations = certified = 0
    for trial in range(trials):
        inst = LinearImage(rng, mask=mask)
        cert = _certify_image(_key(seed, trial), inst)
        truth = inst.p_of(cert.prediction)
        failed = bool(np.any(cert.p_lower[cert.tested] > truth[cert.tested]))
        failures += failed
        ok = ~cert.abstain
        certified += int(ok.sum())
        if not failed:
            # all bounds hold: every radius must be below the exact flip distance, and every
            # non-abstained prediction must be the true smoothed class
            too_far = cert.radius[ok] > inst.flip_distance()[ok]
            wrong = cert.prediction[ok] != (inst.margin[ok] > 0)
            violations += int(too_far.sum() + wrong.sum())
            # the linear certificate itself: the cheapest flipping perturbation in the group's
            # weighted norm must NOT be certified
            base = cert.base_certs
            region = inst.smoothing.region
            for d in np.flatnonzero(ok):
                stds = inst.smoothing.stds[inst.smoothing.group.reshape(-1)[d]]
                s2 = np.where(inst.visible[d], stds[region][None] ** 2, 0.0)
                delta = -inst.margin[d] * s2 * inst.weights[d] / inst.sigma[d] ** 2
                spend = np.array([np.sum(delta[:, region == j] ** 2) for j in range(stds.size)])
                violations += bool(
                    base.weights[0, base.group[d]] @ spend < base.eta[d] * (1 - 1e-9)
                )
    return failures, violations, certified


def test_gaussian_bonferroni_coverage_and_radii_fast():
    failures, violations, certified = _gaussian_bonferroni(FAST_TRIALS, 1)
    assert violations == 0
    assert certified > FAST_TRIALS * D // 3  # not vacuous
    _assert_rate(failures, FAST_TRIALS, 0.2, 4, "certify bonferroni")


def test_gaussian_masked_smoothing_fast():
    """mask_distance: masked pixels must reach the model as 0 and carry no certificate weight."""
    failures, violations, certified = _gaussian_bonferroni(FAST_TRIALS, 2, mask=1)
    assert violations == 0 and certified > 0
    _assert_rate(failures, FAST_TRIALS, 0.2, 4, "certify bonferroni, masked")


@pytest.mark.slow
@pytest.mark.parametrize("mask", [None, 1])
def test_gaussian_bonferroni_coverage_and_radii_slow(mask):
    failures, violations, certified = _gaussian_bonferroni(SLOW_TRIALS, 11 + (mask or 0), mask)
    _report(
        f"certify gaussian bonferroni mask={mask}",
        trials=SLOW_TRIALS,
        bound_failures=failures,
        alpha=0.2,
        certified_outputs=certified,
        radius_violations=violations,
    )
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify bonferroni")


# ------------------------------------------------------------------------------------------------
# Holm (SegCertify) end to end
# ------------------------------------------------------------------------------------------------


def _gaussian_holm(trials: int, seed: int, tau: float = 0.75, alpha: float = 0.2):
    """Family-wise error of certify's Holm test with half the outputs exactly at q = tau."""
    rng = np.random.default_rng(seed)
    targets = np.where(np.arange(D) % 2 == 0, tau, 0.995)
    failures = certified = violations = 0
    for trial in range(trials):
        inst = LinearImage(rng, p_targets=targets)
        cert = _certify_image(_key(seed, trial), inst, correction="holm", tau=tau, alpha=alpha)
        truth = inst.p_of(cert.prediction)
        passed = ~cert.abstain
        certified += int(passed.sum())
        failed = bool(np.any(passed & (truth <= tau)))
        failures += failed
        np.testing.assert_array_equal(cert.p_lower[passed], tau)
        if not failed:  # every passed output has q > tau: its radius sigma Phi^-1(tau) is true
            violations += int(np.sum(cert.radius[passed] > inst.flip_distance()[passed]))
    return failures, certified, violations


def test_gaussian_holm_coverage_fast():
    failures, certified, violations = _gaussian_holm(FAST_TRIALS, 3)
    assert certified > 0 and violations == 0
    _assert_rate(failures, FAST_TRIALS, 0.2, 4, "certify holm")


@pytest.mark.slow
def test_gaussian_holm_coverage_slow():
    failures, certified, violations = _gaussian_holm(SLOW_TRIALS, 13)
    _report(
        "certify gaussian holm",
        trials=SLOW_TRIALS,
        failures=failures,
        alpha=0.2,
        certified_outputs=certified,
        radius_violations=violations,
    )
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify holm")


# ------------------------------------------------------------------------------------------------
# Variance certificate (DKW on certify's histograms) end to end
# ------------------------------------------------------------------------------------------------


def _gaussian_variance(trials: int, seed: int, alpha: float = 0.2):
    """Coverage of certify's histogram DKW bounds (mu_lower, zeta_upper about the histogram
    mean) and conditional soundness of the resulting l2 radii."""
    rng = np.random.default_rng(seed)
    failures = violations = certified = 0
    for trial in range(trials):
        inst = LinearImage(rng, p_range=(0.7, 0.999))
        cert = _certify_image(_key(seed, trial), inst, certificate="variance", alpha=alpha, n=200)
        center = _histogram_center(cert.histogram)
        mean, second = inst.score_moments(cert.prediction, center)
        t = cert.tested
        failed = bool(np.any(cert.mu_lower[t] > mean[t]) or np.any(cert.zeta_upper[t] < second[t]))
        failures += failed
        ok = ~cert.abstain
        certified += int(ok.sum())
        if not failed:
            # the expected-score classifier of a linear model flips exactly on its hyperplane too
            violations += int(np.sum(cert.radius[ok] > inst.flip_distance()[ok]))
            violations += int(np.sum(cert.prediction[ok] != (inst.margin[ok] > 0)))
    return failures, violations, certified


def test_gaussian_variance_certificate_fast():
    failures, violations, certified = _gaussian_variance(FAST_TRIALS, 4)
    assert violations == 0 and certified > 0
    _assert_rate(failures, FAST_TRIALS, 0.2, 4, "certify variance (histogram DKW)")


@pytest.mark.slow
def test_gaussian_variance_certificate_slow():
    failures, violations, certified = _gaussian_variance(SLOW_TRIALS, 14)
    _report(
        "certify gaussian variance (histogram DKW)",
        trials=SLOW_TRIALS,
        failures=failures,
        alpha=0.2,
        certified_outputs=certified,
        radius_violations=violations,
    )
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify variance")


# ================================================================================================
# Count-threshold graph models under Bernoulli flips
# ================================================================================================

N_NODES, N_FEATURES = 8, 6
CLUSTERS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
PARTNER = (np.arange(N_NODES) + N_NODES // 2) % N_NODES  # always in the other cluster
RANKS = np.array([[0, 1], [1, 0]])
BETA = 0.8


def _graph_logits(counts, thresholds):
    s = BETA * (counts - thresholds - 0.5)
    return jnp.stack([-s, s], axis=-1)


def dense_count_model(params, x):
    """Node i: logits (-s, s), s = BETA (ones(row i) + ones(row partner(i)) - t_i - 1/2)."""
    per_row = jnp.sum(x, axis=1)
    return _graph_logits(per_row + per_row[PARTNER], params)


def sparse_count_model(params, xs):
    per_row = jax.ops.segment_sum(xs.valid.astype(jnp.float32), xs.rows, N_NODES)
    return _graph_logits(per_row + per_row[PARTNER], params)


def dense_own_row_model(params, x):
    """Node i looks at its own row only (independent outputs: exact collective truth)."""
    return _graph_logits(jnp.sum(x, axis=1), params)


def _binomial_sum_pmf(parts) -> np.ndarray:
    """pmf of a sum of independent Binomial(n_i, p_i), parts = [(n_i, p_i)]."""
    pmf = np.ones(1)
    for n, p in parts:
        pmf = np.convolve(pmf, stats.binom.pmf(np.arange(n + 1), n, p))
    return pmf


class CountGraph:
    """Random binary attributes and thresholds; exact distributions of every node's count."""

    def __init__(self, rng, theta_plus, theta_minus, *, partner=True, density=0.5):
        self.x = (rng.random((N_NODES, N_FEATURES)) < density).astype(np.int64)
        self.partner = partner
        rows = 2 if partner else 1
        self.thresholds = rng.integers(0, rows * N_FEATURES, size=N_NODES).astype(np.float64)
        self.tp_matrix, self.tm_matrix = noise.flip_matrices(RANKS, theta_plus, theta_minus)
        self.params = jnp.asarray(self.thresholds, jnp.float32)

    def _rows(self, i):
        return (i, PARTNER[i]) if self.partner else (i,)

    def pmf(self, i, changes=None) -> np.ndarray:
        """pmf of node i's count under its group's noise; `changes` maps a row to (adds, dels)."""
        k = CLUSTERS[i]
        parts = []
        for r in self._rows(i):
            ones = int(self.x[r].sum())
            adds, dels = (changes or {}).get(r, (0, 0))
            ones = ones + adds - dels
            tp, tm = self.tp_matrix[k, CLUSTERS[r]], self.tm_matrix[k, CLUSTERS[r]]
            parts += [(ones, 1.0 - tm), (N_FEATURES - ones, tp)]
        return _binomial_sum_pmf(parts)

    def p_one(self, i, changes=None) -> float:
        pmf = self.pmf(i, changes)
        return float(pmf[np.arange(pmf.size) > self.thresholds[i]].sum())

    def score_moments(self, i, prediction, center=0.0, changes=None):
        pmf = self.pmf(i, changes)
        s = BETA * (np.arange(pmf.size) - self.thresholds[i] - 0.5)
        score = special.expit(2.0 * s if prediction == 1 else -2.0 * s)
        return float(pmf @ score), float(pmf @ (score - center) ** 2)

    def attacks(self, i, prediction, budget):
        """Every worst-case change pattern with `budget` flips of the useful kind (deletions of
        ones for prediction 1, additions for prediction 0), split over the rows i looks at."""
        rows = self._rows(i)
        room = [
            int(self.x[r].sum()) if prediction == 1 else N_FEATURES - int(self.x[r].sum())
            for r in rows
        ]
        for split in itertools.product(*(range(m + 1) for m in room)):
            if sum(split) == min(budget, sum(room)):
                yield {r: ((0, s) if prediction == 1 else (s, 0)) for r, s in zip(rows, split)}


def _graph_inputs(g: CountGraph, sparse: bool):
    if sparse:
        return from_scipy(g.x.astype(np.int8), capacity=N_NODES * N_FEATURES), sparse_count_model
    return g.x.astype(np.float32), dense_count_model


def _bernoulli_np(trials: int, seed: int, sparse: bool, alpha: float = 0.2):
    """Isotropic sparse smoothing: coverage of p_lower and conditional soundness of sparse_grid."""
    rng = np.random.default_rng(seed)
    tp, tm = 0.1, 0.4
    smoothing = noise.isotropic_bernoulli(N_NODES, tp, tm)
    failures = violations = certified_cells = 0
    for trial in range(trials):
        g = CountGraph(rng, tp, tm)
        x, model = _graph_inputs(g, sparse)
        cert = lrsjax.certify(
            _key(seed, trial),
            model,
            g.params,
            x,
            smoothing,
            n0=16,
            n=200,
            alpha=alpha,
            batch_size=64,
            certificate="neyman_pearson",
            max_flips=(3, 3),
            num_features=N_FEATURES if sparse else None,
        )
        p1 = np.array([g.p_one(i) for i in range(N_NODES)])
        truth = np.where(cert.prediction == 1, p1, 1 - p1)
        failed = bool(np.any(cert.p_lower > truth))
        failures += failed
        certified_cells += int(cert.sparse_grid.sum())
        if failed:
            continue
        for i in range(N_NODES):
            pred = int(cert.prediction[i])
            r_add, r_del = np.nonzero(cert.sparse_grid[i])
            if r_add.size == 0:
                continue
            # the count model is monotone: the largest certified budget of the useful kind is
            # the strongest attack to try
            budget = int(r_del.max() if pred == 1 else r_add.max())
            for change in g.attacks(i, pred, budget):
                p = g.p_one(i, change)
                violations += bool((p if pred == 1 else 1 - p) <= 0.5)
    return failures, violations, certified_cells


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_bernoulli_sparse_smoothing_slow(sparse):
    failures, violations, cells = _bernoulli_np(SLOW_TRIALS, 15 + sparse, sparse)
    _report(
        f"certify bernoulli neyman-pearson sparse_input={sparse}",
        trials=SLOW_TRIALS,
        failures=failures,
        alpha=0.2,
        certified_grid_cells=cells,
        grid_violations=violations,
    )
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify sparse smoothing")


def _bernoulli_variance(trials: int, seed: int, sparse: bool, alpha: float = 0.2):
    """Clustered smoothing, variance certificate: coverage of the histogram DKW bounds and
    conditional soundness of `binary_radius` against exact attacks (own and partner rows)."""
    rng = np.random.default_rng(seed)
    tp, tm = np.array([0.05, 0.15]), np.array([0.3, 0.6])
    smoothing = noise.clustered_bernoulli(CLUSTERS, RANKS, tp, tm)
    failures = violations = certified = 0
    for trial in range(trials):
        g = CountGraph(rng, tp, tm)
        x, model = _graph_inputs(g, sparse)
        cert = lrsjax.certify(
            _key(seed, trial),
            model,
            g.params,
            x,
            smoothing,
            n0=16,
            n=300,
            alpha=alpha,
            batch_size=64,
            num_features=N_FEATURES if sparse else None,
        )
        center = _histogram_center(cert.histogram)
        moments = [g.score_moments(i, cert.prediction[i], center[i]) for i in range(N_NODES)]
        mean, second = np.array(moments).T
        failed = bool(np.any(cert.mu_lower > mean) or np.any(cert.zeta_upper < second))
        failures += failed
        ok = ~cert.abstain
        certified += int(ok.sum())
        if failed:
            continue
        for i in np.flatnonzero(ok):
            pred = int(cert.prediction[i])
            radius = cert.binary_radius[i, 1 if pred == 1 else 0]
            budget = int(min(radius, 2 * N_FEATURES))
            for change in g.attacks(i, pred, budget):
                violations += bool(g.score_moments(i, pred, 0.0, change)[0] <= 0.5)
    return failures, violations, certified


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_bernoulli_variance_certificate_slow(sparse):
    failures, violations, certified = _bernoulli_variance(SLOW_TRIALS, 17 + sparse, sparse)
    _report(
        f"certify bernoulli variance sparse_input={sparse}",
        trials=SLOW_TRIALS,
        failures=failures,
        alpha=0.2,
        certified_outputs=certified,
        radius_violations=violations,
    )
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify bernoulli variance")


# ================================================================================================
# Collective certificates against the exact optimal attacker
# ================================================================================================
#
# Image outputs: linear models on a 3x3 image with a 3x3 grid (one pixel per cell, 9 outputs).
# The attacker with ||delta||_2 <= eps flips a set S of outputs iff the smallest perturbation that
# moves every w_n . (x + delta) + b_n (n in S) to the other side of 0 has norm <= eps. That is a
# small QP, min ||delta||^2 s.t. A delta <= c, solved exactly through its dual, an NNLS problem.
# Graph outputs: own-row count models, so outputs are independent and the optimal attacker is
# greedy (cheapest flips first, additions and deletions separately).

MODES = ("lp", "hull", "milp")
SMALL = (1, 3, 3)
SMALL_GRID = (3, 3)
LENIENCY = 1e-6  # the exact attacker gets (1 - LENIENCY) * eps: float ties never count as bugs


def _collective():
    module = pytest.importorskip("lrsjax.collective")
    if not hasattr(module, "certify_collective"):
        pytest.skip("lrsjax.collective.certify_collective is not available")
    return module


def _collective_counts(base, budgets, mode, **kwargs) -> np.ndarray:
    result = _collective().certify_collective(base, budgets, mode=mode, **kwargs)
    return np.asarray(result.certified, dtype=np.int64)


def _min_flip_distance(rows: np.ndarray, limits: np.ndarray) -> float:
    """sqrt(min ||delta||^2 s.t. rows @ delta <= limits), exactly (dual NNLS), or inf."""
    if np.all(limits >= 0):
        return 0.0
    gram = rows @ rows.T
    try:
        chol = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        # dependent constraints: a generic solver; it can only overestimate the distance, which
        # makes the attacker weaker and the test more lenient, never a false alarm
        res = optimize.minimize(
            lambda d: d @ d,
            np.zeros(rows.shape[1]),
            jac=lambda d: 2 * d,
            method="SLSQP",
            constraints=[
                {"type": "ineq", "fun": lambda d: limits - rows @ d, "jac": lambda d: -rows}
            ],
        )
        feasible = res.success and np.all(rows @ res.x <= limits + 1e-9)
        return float(np.sqrt(res.x @ res.x)) if feasible else np.inf
    target = -np.linalg.solve(chol, limits)
    lam, _ = optimize.nnls(chol.T, target)
    delta = -rows.T @ lam
    assert np.all(rows @ delta <= limits + 1e-8 * (1 + np.abs(limits))), "QP solution infeasible"
    return float(np.sqrt(delta @ delta))


class ExactImageAttacker:
    """For one LinearImage: the largest number of outputs of a set T an l2 attacker can flip."""

    def __init__(self, inst: LinearImage):
        self.inst = inst
        self.cache: dict = {}

    def distances(self, targets: np.ndarray, prediction: np.ndarray) -> dict:
        """{subset (tuple of outputs): min flip distance} over all subsets of `targets`."""
        inst = self.inst
        sign = np.where(prediction == 1, 1.0, -1.0)
        w = inst.w_visible.reshape(inst.w_visible.shape[0], -1)
        out = {(): 0.0}
        for size in range(1, targets.size + 1):
            for subset in itertools.combinations(targets.tolist(), size):
                key = (subset, tuple(sign[list(subset)]))
                if key not in self.cache:
                    idx = list(subset)
                    # flipping n: sign_n * (w_n . (x + delta) + b_n) <= 0
                    rows = sign[idx, None] * w[idx]
                    limits = -sign[idx] * inst.margin[idx]
                    self.cache[key] = _min_flip_distance(rows, limits)
                out[subset] = self.cache[key]
        return out

    def kept(self, targets, prediction, budgets) -> np.ndarray:
        """[B]: min over attacks of #targets keeping `prediction` (exact, slightly weakened)."""
        dist = self.distances(np.asarray(targets), prediction)
        flips = [
            max(len(s) for s, d in dist.items() if d <= eps * (1 - LENIENCY)) for eps in budgets
        ]
        return len(targets) - np.asarray(flips)


def _exact_image_certs(inst: LinearImage):
    """Base certificates from the EXACT probabilities (tight single-output certificates)."""
    prediction = (inst.margin > 0).astype(np.int64)
    p = np.minimum(inst.p_of(prediction), np.nextafter(1.0, 0.0))
    return base_certs.gaussian(prediction, p, inst.smoothing.group.reshape(-1), inst.smoothing.stds)


def _check_collective_against_truth(base, attacker, budgets, *, check_order=True):
    """Counts of every mode (and binning) vs the exact attacker; returns violations."""
    targets = np.flatnonzero(~base.abstain)
    truth = attacker.kept(targets, base.prediction, budgets)
    naive = base_certs.naive_certified(base, budgets)[targets].sum(0)
    counts = {mode: _collective_counts(base, budgets, mode) for mode in MODES}
    counts["lp_binned"] = _collective_counts(base, budgets, "lp", num_bins=2)
    counts["milp_binned"] = _collective_counts(base, budgets, "milp", num_bins=2)
    violations = {name: int(np.sum(c > truth)) for name, c in counts.items()}
    violations["naive"] = int(np.sum(naive > truth))
    if check_order:
        # naive <= lp <= hull <= milp, and binning never certifies more
        order = [naive, counts["lp"], counts["hull"], counts["milp"]]
        for low, high in zip(order, order[1:]):
            violations["order"] = violations.get("order", 0) + int(np.sum(low > high))
        violations["binning"] = int(np.sum(counts["lp_binned"] > counts["lp"])) + int(
            np.sum(counts["milp_binned"] > counts["milp"])
        )
    return violations, counts, truth


def _image_collective_exact(instances: int, seed: int, mask=None):
    rng = np.random.default_rng(seed)
    budgets = np.linspace(0.0, 1.2, 7)
    totals = {}
    gaps = []
    for _ in range(instances):
        inst = LinearImage(rng, shape=SMALL, grid=SMALL_GRID, stds=(0.3, 0.9), mask=mask)
        base = _exact_image_certs(inst)
        violations, counts, truth = _check_collective_against_truth(
            base, ExactImageAttacker(inst), budgets
        )
        for name, v in violations.items():
            totals[name] = totals.get(name, 0) + v
        gaps.append(truth - counts["milp"])
    return totals, np.concatenate(gaps)


def test_collective_exact_probabilities_never_exceed_optimal_attacker_fast():
    totals, gaps = _image_collective_exact(4, 21)
    assert all(v == 0 for v in totals.values()), totals
    assert gaps.min() >= 0


@pytest.mark.slow
@pytest.mark.parametrize("mask", [None, 2])
def test_collective_exact_probabilities_never_exceed_optimal_attacker_slow(mask):
    instances = 300
    totals, gaps = _image_collective_exact(instances, 31 + (mask or 0), mask)
    _report(
        f"collective (exact p) vs exact l2 attacker, mask={mask}",
        instances=instances,
        budgets=7,
        violations=totals,
        mean_gap_milp_to_truth=round(float(gaps.mean()), 3),
    )
    assert all(v == 0 for v in totals.values()), totals


def _image_collective_sampled(instances: int, keys_per_instance: int, seed: int, alpha=0.2):
    """certify -> collective on sampled bounds: conditional soundness, unconditional coverage."""
    rng = np.random.default_rng(seed)
    budgets = np.linspace(0.0, 1.2, 7)
    trials = failures = conditional = 0
    for i in range(instances):
        # the 4x4 image of the coverage tests (same compiled kernel), 8 of its 16 outputs tested
        # so that the exact attacker enumerates at most 2**8 subsets
        inst = LinearImage(rng)
        attacker = ExactImageAttacker(inst)
        tested = np.sort(rng.choice(D, size=8, replace=False))
        for k in range(keys_per_instance):
            cert = lrsjax.certify(
                _key(seed, i * keys_per_instance + k),
                linear_model,
                inst.params,
                inst.x,
                inst.smoothing,
                n0=16,
                n=200,
                alpha=alpha,
                batch_size=128,
                outputs=tested,
            )
            truth_p = inst.p_of(cert.prediction)
            bounds_hold = not np.any(cert.p_lower > truth_p)
            violations, _, _ = _check_collective_against_truth(
                cert.base_certs, attacker, budgets, check_order=False
            )
            over = sum(violations.values()) > 0
            trials += 1
            failures += over
            conditional += over and bounds_hold
    return trials, failures, conditional


def test_collective_sampled_end_to_end_fast():
    trials, failures, conditional = _image_collective_sampled(2, 2, 41)
    assert conditional == 0
    _assert_rate(failures, trials, 0.2, 4, "collective end to end")


@pytest.mark.slow
def test_collective_sampled_end_to_end_slow():
    trials, failures, conditional = _image_collective_sampled(200, 10, 51)
    _report(
        "certify -> collective vs exact l2 attacker",
        trials=trials,
        over_claims=failures,
        alpha=0.2,
        over_claims_with_all_bounds_holding=conditional,
    )
    assert conditional == 0
    _assert_rate(failures, trials, 0.2, 3, "collective end to end")


class ExactGraphAttacker:
    """Own-row count models: per-node cheapest flip, then greedy per budget type (exact)."""

    def __init__(self, g: CountGraph):
        self.g = g

    def flip_cost(self, i, prediction) -> float:
        g = self.g
        ones = int(g.x[i].sum())
        room = ones if prediction == 1 else N_FEATURES - ones
        for r in range(room + 1):
            change = {i: (0, r) if prediction == 1 else (r, 0)}
            if g.score_moments(i, prediction, 0.0, change)[0] <= 0.5:
                return r
        return np.inf

    def kept(self, targets, prediction, budgets) -> np.ndarray:
        costs = {0: [], 1: []}
        for i in targets:
            costs[int(prediction[i])].append(self.flip_cost(i, int(prediction[i])))
        out = []
        for adds, dels in budgets:
            flips = 0
            for pred, budget in ((1, dels), (0, adds)):
                spent = 0.0
                for c in sorted(costs[pred]):
                    if spent + c <= budget:
                        spent += c
                        flips += 1
            out.append(len(targets) - flips)
        return np.asarray(out)


GRAPH_BUDGETS = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 3], [2, 6], [0, 12], [3, 0]])


def _graph_exact_certs(g: CountGraph, smoothing):
    """Variance certificates from the EXACT mean and variance of every node's score."""
    pred, mu, var = [], [], []
    for i in range(N_NODES):
        p1 = g.score_moments(i, 1)[0]
        k = int(p1 > 0.5)
        mean, _ = g.score_moments(i, k)
        pred.append(k)
        mu.append(mean)
        var.append(g.score_moments(i, k, mean)[1])
    weights = np.stack(base_certs.bernoulli_costs(smoothing.theta_plus, smoothing.theta_minus))
    return base_certs.variance_constrained(
        pred, mu, np.maximum(var, 1e-12), smoothing.group, weights, norm="binary"
    )


def _graph_collective_exact(instances: int, seed: int):
    rng = np.random.default_rng(seed)
    tp, tm = np.array([0.05, 0.15]), np.array([0.3, 0.6])
    smoothing = noise.clustered_bernoulli(CLUSTERS, RANKS, tp, tm)
    totals = {}
    for _ in range(instances):
        g = CountGraph(rng, tp, tm, partner=False, density=0.7)
        base = _graph_exact_certs(g, smoothing)
        violations, _, _ = _check_collective_against_truth(
            base, ExactGraphAttacker(g), GRAPH_BUDGETS
        )
        for name, v in violations.items():
            totals[name] = totals.get(name, 0) + v
    return totals


def test_graph_collective_exact_moments_never_exceed_optimal_attacker_fast():
    totals = _graph_collective_exact(4, 61)
    assert all(v == 0 for v in totals.values()), totals


@pytest.mark.slow
def test_graph_collective_exact_moments_never_exceed_optimal_attacker_slow():
    instances = 300
    totals = _graph_collective_exact(instances, 71)
    _report(
        "graph collective (exact moments) vs exact attacker",
        instances=instances,
        budgets=len(GRAPH_BUDGETS),
        violations=totals,
    )
    assert all(v == 0 for v in totals.values()), totals


def _graph_collective_sampled(trials: int, seed: int, alpha: float = 0.2):
    rng = np.random.default_rng(seed)
    tp, tm = np.array([0.05, 0.15]), np.array([0.3, 0.6])
    smoothing = noise.clustered_bernoulli(CLUSTERS, RANKS, tp, tm)
    failures = conditional = 0
    for trial in range(trials):
        g = CountGraph(rng, tp, tm, partner=False, density=0.7)
        cert = lrsjax.certify(
            _key(seed, trial),
            dense_own_row_model,
            g.params,
            g.x.astype(np.float32),
            smoothing,
            n0=16,
            n=300,
            alpha=alpha,
            batch_size=64,
        )
        center = _histogram_center(cert.histogram)
        moments = [g.score_moments(i, cert.prediction[i], center[i]) for i in range(N_NODES)]
        mean, second = np.array(moments).T
        bounds_hold = not (np.any(cert.mu_lower > mean) or np.any(cert.zeta_upper < second))
        violations, _, _ = _check_collective_against_truth(
            cert.base_certs, ExactGraphAttacker(g), GRAPH_BUDGETS, check_order=False
        )
        over = sum(violations.values()) > 0
        failures += over
        conditional += over and bounds_hold
    return failures, conditional


@pytest.mark.slow
def test_graph_collective_sampled_end_to_end_slow():
    failures, conditional = _graph_collective_sampled(SLOW_TRIALS, 81)
    _report(
        "certify (bernoulli, variance) -> collective vs exact attacker",
        trials=SLOW_TRIALS,
        over_claims=failures,
        alpha=0.2,
        over_claims_with_all_bounds_holding=conditional,
    )
    assert conditional == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "graph collective end to end")


# ------------------------------------------------------------------------------------------------
# The solver itself: random small collective problems (badly scaled too) against brute force
# ------------------------------------------------------------------------------------------------


def _random_base_certs(rng):
    """A random small BaseCertificates (l2, l1 or binary), weights and eta over many decades."""
    norm = rng.choice(["l2", "l1", "binary"])
    types = 2 if norm == "binary" else 1
    groups, regions = rng.integers(1, 4), rng.integers(1, 4)
    outputs = rng.integers(1, 8)
    scale = 10.0 ** rng.uniform(-3, 3)
    weights = scale * 10.0 ** rng.uniform(-1.5, 1.5, size=(types, groups, regions))
    weights[rng.random(weights.shape) < 0.2] = 0.0  # masked regions
    group = rng.integers(0, groups, size=outputs)
    eta = scale * 10.0 ** rng.uniform(-2, 1, size=outputs)
    eta[rng.random(outputs) < 0.3] = eta[0]  # ties (sharing)
    abstain = rng.random(outputs) < 0.15
    certs = base_certs.make_base_certificates(
        np.zeros(outputs, np.int64), abstain, np.where(abstain, 0.0, eta), group, weights, norm
    )
    if norm == "binary":
        budgets = rng.integers(0, 4, size=(5, 2)).astype(float)
    else:
        budgets = np.sort(rng.uniform(0, 2, size=5))
    return certs, budgets


def _brute_force_certified(certs, budgets, targets) -> np.ndarray:
    """|T| - the largest number of outputs of T (targeted, not abstained) that one (continuous)
    spend b reaches, per budget."""
    totals_all = base_certs.budget_totals(certs.norm, budgets)
    active = np.flatnonzero(targets & ~certs.abstain)
    per_group = {}
    for k in np.unique(certs.group[active]):
        etas = np.sort(certs.eta[active][certs.group[active] == k])
        per_group[int(k)] = etas
    groups = sorted(per_group)
    out = []
    types, _, regions = certs.weights.shape
    for totals in totals_all:
        best = 0
        for choice in itertools.product(*(range(per_group[k].size + 1) for k in groups)):
            count = sum(choice)
            if count <= best:
                continue
            chosen = [(k, per_group[k][c - 1]) for k, c in zip(groups, choice) if c > 0]
            if _reachable(certs.weights, chosen, totals):
                best = count
        out.append(active.size - best)
    return np.asarray(out)


def _reachable(weights, chosen, totals) -> bool:
    """Is there b >= 0 with sum_j b[t, j] <= totals[t] and (W b)_k >= eta_k for every chosen
    (k, eta_k)? Decided through min s s.t. sum_j b[t, j] <= s totals[t], with a 1e-6 margin in
    the certificate's favour (so LP tolerances never make a false alarm)."""
    types, _, regions = weights.shape
    usable = totals > 0
    # variables: b[t, j] for usable t, then s
    cols = [(t, j) for t in range(types) if usable[t] for j in range(regions)]
    if not cols:
        return False
    num = len(cols) + 1
    a_ub, b_ub = [], []
    for k, eta in chosen:  # -(W b)_k / eta <= -1
        a_ub.append([-weights[t, k, j] / eta for t, j in cols] + [0.0])
        b_ub.append(-1.0)
    for t in range(types):
        if usable[t]:
            a_ub.append([1.0 / totals[t] if tt == t else 0.0 for tt, _ in cols] + [-1.0])
            b_ub.append(0.0)
    cost = np.zeros(num)
    cost[-1] = 1.0
    res = optimize.linprog(cost, A_ub=np.array(a_ub), b_ub=np.array(b_ub), method="highs")
    return res.status == 0 and res.fun <= 1.0 - 1e-6


def _solver_vs_brute_force(problems: int, seed: int):
    rng = np.random.default_rng(seed)
    violations, exact_milp, compared = {}, 0, 0
    for _ in range(problems):
        certs, budgets = _random_base_certs(rng)
        targets = rng.random(certs.num_outputs) < 0.8
        truth = _brute_force_certified(certs, budgets, targets)
        kw = dict(targets=targets)
        results = {m: _collective_counts(certs, budgets, m, **kw) for m in MODES}
        results["hull_binned"] = _collective_counts(certs, budgets, "hull", num_bins=2, **kw)
        results["milp_time_limited"] = _collective_counts(
            certs, budgets, "milp", time_limit_s=1e-3, **kw
        )
        results["milp_scip"] = _collective_counts(certs, budgets, "milp", milp_solver="scip", **kw)
        naive = base_certs.naive_certified(certs, budgets)
        results["naive"] = naive[targets & ~certs.abstain].sum(0)
        for name, counts in results.items():
            violations[name] = violations.get(name, 0) + int(np.sum(counts > truth))
        exact_milp += int(np.sum(results["milp"] == truth) + np.sum(results["milp_scip"] == truth))
        compared += 2 * truth.size
    return violations, exact_milp, compared


def test_collective_solver_against_brute_force_fast():
    violations, exact, compared = _solver_vs_brute_force(25, 91)
    assert all(v == 0 for v in violations.values()), violations
    assert exact >= 0.9 * compared  # the MILPs (bnb, SCIP) are exact (up to the rounding margin)


@pytest.mark.slow
def test_collective_solver_against_brute_force_slow():
    problems = 2000
    violations, exact, compared = _solver_vs_brute_force(problems, 92)
    _report(
        "collective solver vs brute force (random, badly scaled)",
        problems=problems,
        budgets=compared,
        violations=violations,
        milp_equal_to_brute_force=exact,
    )
    assert all(v == 0 for v in violations.values()), violations
