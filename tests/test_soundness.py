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

    def __init__(self, rng, *, shape=(C, H, W), grid=(2, 2), stds=(0.25, 0.8), mask=None,
                 p_range=(0.55, 0.97), p_targets=None):  # fmt: skip
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
        self.sigma = np.sqrt(np.sum(w_vis**2 * np.where(self.visible, per_pixel, 0.0) ** 2, (1, 2, 3)))
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
        nodes, weights = np.polynomial.hermite.hermgauss(300)
        s = self.margin[:, None] + np.sqrt(2.0) * self.sigma[:, None] * nodes[None]
        sign = np.where(prediction == 1, 1.0, -1.0)[:, None]
        score = special.expit(2.0 * sign * s)
        mean = (score * weights).sum(1) / np.sqrt(np.pi)
        second = ((score - np.asarray(center)[:, None]) ** 2 * weights).sum(1) / np.sqrt(np.pi)
        return mean, second


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
                violations += bool(base.weights[0, base.group[d]] @ spend < base.eta[d] * (1 - 1e-9))
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
        trials=SLOW_TRIALS, bound_failures=failures, alpha=0.2,
        certified_outputs=certified, radius_violations=violations,
    )  # fmt: skip
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify bonferroni")


# ------------------------------------------------------------------------------------------------
# Holm (SegCertify) end to end
# ------------------------------------------------------------------------------------------------


def _gaussian_holm(trials: int, seed: int, tau: float = 0.75, alpha: float = 0.2):
    """Family-wise error of certify's Holm test with half the outputs exactly at q = tau."""
    rng = np.random.default_rng(seed)
    targets = np.where(np.arange(D) % 2 == 0, tau, 0.995)
    failures = certified = 0
    for trial in range(trials):
        inst = LinearImage(rng, p_targets=targets)
        cert = _certify_image(_key(seed, trial), inst, correction="holm", tau=tau, alpha=alpha)
        truth = inst.p_of(cert.prediction)
        passed = ~cert.abstain
        certified += int(passed.sum())
        failures += bool(np.any(passed & (truth <= tau)))
        np.testing.assert_array_equal(cert.p_lower[passed], tau)
    return failures, certified


def test_gaussian_holm_coverage_fast():
    failures, certified = _gaussian_holm(FAST_TRIALS, 3)
    assert certified > 0
    _assert_rate(failures, FAST_TRIALS, 0.2, 4, "certify holm")


@pytest.mark.slow
def test_gaussian_holm_coverage_slow():
    failures, certified = _gaussian_holm(SLOW_TRIALS, 13)
    _report("certify gaussian holm", trials=SLOW_TRIALS, failures=failures, alpha=0.2,
            certified_outputs=certified)  # fmt: skip
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
        cert = _certify_image(
            _key(seed, trial), inst, certificate="variance", alpha=alpha, n=200
        )
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
    _report("certify gaussian variance (histogram DKW)", trials=SLOW_TRIALS, failures=failures,
            alpha=0.2, certified_outputs=certified, radius_violations=violations)  # fmt: skip
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
                yield {
                    r: ((0, s) if prediction == 1 else (s, 0)) for r, s in zip(rows, split)
                }


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
            _key(seed, trial), model, g.params, x, smoothing, n0=16, n=200, alpha=alpha,
            batch_size=64, certificate="neyman_pearson", max_flips=(3, 3),
            num_features=N_FEATURES if sparse else None,
        )  # fmt: skip
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


@pytest.mark.parametrize("sparse", [False, True])
def test_bernoulli_sparse_smoothing_fast(sparse):
    failures, violations, cells = _bernoulli_np(FAST_TRIALS // 2, 5, sparse)
    assert violations == 0 and cells > 0
    _assert_rate(failures, FAST_TRIALS // 2, 0.2, 4, "certify sparse smoothing")


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_bernoulli_sparse_smoothing_slow(sparse):
    failures, violations, cells = _bernoulli_np(SLOW_TRIALS, 15 + sparse, sparse)
    _report(f"certify bernoulli neyman-pearson sparse_input={sparse}", trials=SLOW_TRIALS,
            failures=failures, alpha=0.2, certified_grid_cells=cells,
            grid_violations=violations)  # fmt: skip
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
            _key(seed, trial), model, g.params, x, smoothing, n0=16, n=300, alpha=alpha,
            batch_size=64, num_features=N_FEATURES if sparse else None,
        )  # fmt: skip
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


@pytest.mark.parametrize("sparse", [False, True])
def test_bernoulli_variance_certificate_fast(sparse):
    failures, violations, certified = _bernoulli_variance(FAST_TRIALS // 2, 6, sparse)
    assert violations == 0 and certified > 0
    _assert_rate(failures, FAST_TRIALS // 2, 0.2, 4, "certify bernoulli variance")


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [False, True])
def test_bernoulli_variance_certificate_slow(sparse):
    failures, violations, certified = _bernoulli_variance(SLOW_TRIALS, 17 + sparse, sparse)
    _report(f"certify bernoulli variance sparse_input={sparse}", trials=SLOW_TRIALS,
            failures=failures, alpha=0.2, certified_outputs=certified,
            radius_violations=violations)  # fmt: skip
    assert violations == 0
    _assert_rate(failures, SLOW_TRIALS, 0.2, 3, "certify bernoulli variance")
