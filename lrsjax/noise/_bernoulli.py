"""Bernoulli flip noise on binary node attributes (additions/deletions threat model).

Clustered (localized) smoothing: groups = regions = node clusters; while group `k` is smoothed,
every 0-bit of a node in cluster `c'` flips to 1 with `theta_plus[k, c']` and every 1-bit flips to
0 with `theta_minus[k, c']`, all independently. Inputs are sparse (`SparseBinary`, the exact
Poisson-thinning sampler, cost O(ones + flips)) or dense 0/1 arrays `[N, F]`.

Certificates (`docs/math.md`, "Base certificates"): from DKW bounds on the mean and second moment
of the class score, the variance-constrained certificate with per-bit costs `log(1 + chi^2)`
(Schuchardt et al., 2023); from a Clopper-Pearson bound with one flip pair everywhere, the exact
Neyman-Pearson certificate of sparse smoothing (Bojchevski et al., 2020), which is not linear and
so has no collective form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks, base_certs
from lrsjax._sparse import SparseBinary
from lrsjax.noise import _clusters, _samplers
from lrsjax.noise._plugin import Noise, NoiseCertificate, Prepared


def clustered_bernoulli(cluster_ids, rank_matrix, theta_plus, theta_minus) -> Noise:
    """Clustered (localized) Bernoulli smoothing of binary node attributes.

    Smoothing group `k` flips each 0-bit of a node in cluster `c'` to 1 with probability
    `theta_plus[rank[k, c']]` and each 1-bit to 0 with `theta_minus[rank[k, c']]`, all
    independently (`flip_matrices`; the certificate uses the same matrices).

    Args:
      cluster_ids: int [N], the cluster of every node (ids 0..C-1, all used).
      rank_matrix: int [C, C] from `affinity_ranks` (`rank[c, c] = 0`).
      theta_plus, theta_minus: float [C] per-rank flip probabilities in (0, 1)
        (`rank_flip_probabilities`), or scalars for the same probability everywhere.
    Returns:
      A `Noise` of kind "bernoulli" with `group = region = cluster_ids` and `parameters =
      {"theta_plus": [C, C], "theta_minus": [C, C]}`; default certificate: variance-constrained.
    """
    ids = _clusters._cluster_ids(cluster_ids)
    rank = _clusters.check_ranks(rank_matrix)
    num_clusters = int(ids.max()) + 1
    if rank.shape[0] != num_clusters:
        _checks.fail(
            "rank_matrix",
            rank,
            f"must be [C, C] with C = {num_clusters} clusters in cluster_ids",
            "Compute it with affinity_ranks(adjacency, cluster_ids).",
        )
    tp, tm = _clusters.flip_matrices(rank, theta_plus, theta_minus)
    ids = ids.astype(np.int32)
    return Noise(
        kind="bernoulli",
        group=ids,
        region=ids,
        parameters={"theta_plus": tp, "theta_minus": tm},
        prepare=prepare,
        certificates=CERTIFICATES,
        default_estimate="moments",
    )


def isotropic_bernoulli(num_nodes, theta_plus, theta_minus) -> Noise:
    """Isotropic sparse smoothing (Bojchevski et al., 2020): one cluster, one flip pair."""
    num_nodes = _checks.positive_int("num_nodes", num_nodes)
    tp = _checks.probability("theta_plus", theta_plus)
    tm = _checks.probability("theta_minus", theta_minus)
    return clustered_bernoulli(np.zeros(num_nodes, np.int64), np.zeros((1, 1), np.int64), tp, tm)


def _flip_parameters(noise: Noise) -> _samplers.BernoulliParameters:
    return _samplers.bernoulli_parameters(
        noise.parameters["theta_plus"], noise.parameters["theta_minus"]
    )


def addition_capacity(noise: Noise, num_cols: int) -> int:
    """Addition slots per sparse sample: overflow probability < 1e-12 per sample."""
    num_cols = _checks.positive_int("num_cols", num_cols)
    params = _flip_parameters(noise)
    sizes = np.bincount(noise.region, minlength=noise.num_regions)
    return _samplers.sparse_addition_capacity(params.addition_rates, sizes, num_cols)


def prepare(noise: Noise, x, *, num_features=None, addition_capacity=None, **_) -> Prepared:
    """Binds clean attributes: a `SparseBinary` (pass `num_features`) or a dense 0/1 `[N, F]`."""
    num_rows = int(noise.region.shape[0])
    params = _flip_parameters(noise)
    if isinstance(x, SparseBinary):
        if num_features is None:
            _checks.fail(
                "num_features",
                None,
                "is required for a SparseBinary input",
                "Pass F = x's columns.",
            )
        num_cols = _checks.positive_int("num_features", num_features)
        if num_rows * num_cols >= np.iinfo(np.int32).max:
            _checks.fail("num_features", num_cols, "makes N * F too large for int32 indices", "")
        if addition_capacity is None:
            addition_capacity = globals()["addition_capacity"](noise, num_cols)
        capacity = _checks.positive_int("addition_capacity", addition_capacity)
        clean = check_sparse_input(x, num_rows, num_cols)
        layout = _samplers.region_layout(noise.region, noise.num_regions)
        size = clean.capacity + capacity
        common = (
            jax.tree.map(jnp.asarray, layout),
            _samplers.ones_bitmap(clean, num_rows, num_cols),
        )
        return Prepared(
            x=clean,
            config=(num_rows, num_cols, capacity),
            per_group=(jnp.asarray(params.addition_rates), jnp.asarray(params.deletion_thresholds)),
            common=common,
            sample=sample_sparse,
            draw=None,
            apply=None,
            example=SparseBinary(
                jax.ShapeDtypeStruct((size,), jnp.int32),
                jax.ShapeDtypeStruct((size,), jnp.int32),
                jax.ShapeDtypeStruct((size,), jnp.bool_),
            ),
            input_size=size,
            bytes_per_element=27,  # noisy rows/cols/valid, the random words, sort buffers
            overflow_message=(
                "A sparse Bernoulli sample needed more than its static capacity: more addition "
                f"events than addition_capacity={capacity} (or, with probability < 2e-12, a pool "
                "of refinement words ran dry). Its counts are invalid and were discarded; nothing "
                f"was certified. Pass a larger `addition_capacity` to certify, e.g. "
                f"{2 * capacity} (the default has overflow probability < 1e-12 per sample for "
                "the given flip probabilities)."
            ),
        )
    arr = _checks.as_float_array("x", x, ndim=2)
    num_cols = int(arr.shape[1])
    if num_features is not None and num_features != num_cols:
        _checks.fail("num_features", num_features, f"must equal x.shape[1] = {num_cols}", "")
    if arr.shape[0] != num_rows:
        _checks.fail("x", arr, f"must have shape [N, F] = {(num_rows, num_cols)}", "")
    if np.any((arr != 0) & (arr != 1)):
        _checks.fail("x", arr, "must be binary (0/1)", "Binarize the attributes.")
    return Prepared(
        x=jnp.asarray(arr, jnp.float32),
        config=(),
        per_group=(
            jnp.asarray(params.addition_thresholds),
            jnp.asarray(params.deletion_thresholds),
        ),
        common=jnp.asarray(noise.region, jnp.int32),
        sample=sample_dense,
        draw=None,
        apply=None,
        example=jax.ShapeDtypeStruct(arr.shape, jnp.float32),
        input_size=int(arr.size),
        bytes_per_element=9,  # 32-bit uniform words, the noisy input, a flip mask
        overflow_message=None,
    )


def check_sparse_input(x, num_rows: int, num_cols: int) -> SparseBinary:
    """Validates a clean sparse input `[num_rows, num_cols]`; returns it with int32/bool arrays."""
    if not isinstance(x, SparseBinary):
        _checks.fail("x", x, "must be a SparseBinary for the sparse sampler", "")
    rows = _checks.as_int_array("x.rows", x.rows, ndim=1)
    cols = _checks.as_int_array("x.cols", x.cols, ndim=1)
    valid = _checks.as_bool_array("x.valid", x.valid, ndim=1)
    _checks.same_shape(("x.rows", "x.cols", "x.valid"), (rows, cols, valid))
    if rows.size == 0:
        _checks.fail("x", x, "must have capacity >= 1", "Pad it: from_scipy(m, capacity=1).")
    r, c = rows[valid], cols[valid]
    if r.size and (r.min() < 0 or r.max() >= num_rows or c.min() < 0 or c.max() >= num_cols):
        _checks.fail(
            "x",
            f"entries up to ({r.max()}, {c.max()})",
            f"must index a [{num_rows}, {num_cols}] matrix",
            "",
        )
    if np.unique(r.astype(np.int64) * num_cols + c).size != r.size:
        _checks.fail("x", "repeated entries", "must list every one only once", "")
    return SparseBinary(
        jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32), jnp.asarray(valid, bool)
    )


def sample_sparse(config, key, x, params_k, common):
    """One noisy sparse example of group `k` (exact Poisson thinning; see `_samplers`)."""
    num_rows, num_cols, capacity = config
    rates, deletion_thresholds = params_k
    layout, bitmap = common
    sample = _samplers.make_sparse_bernoulli_sampler(num_rows, num_cols, capacity)
    return sample(key, x, layout, rates, deletion_thresholds, bitmap)


def sample_dense(config, key, x, params_k, region):
    """One noisy dense example of group `k` (one uniform word per bit)."""
    addition_thresholds, deletion_thresholds = params_k
    noisy = _samplers.sample_dense_bernoulli(
        key, x, region, addition_thresholds, deletion_thresholds
    )
    return noisy, jnp.zeros((), bool)


def _moments(noise: Noise, prediction, estimate, tested, **_) -> NoiseCertificate:
    costs = base_certs.bernoulli_costs(
        noise.parameters["theta_plus"], noise.parameters["theta_minus"]
    )
    certs = base_certs.variance_constrained(
        prediction, estimate.mu_lower, estimate.zeta_upper, noise.group.reshape(-1),
        np.stack(costs), norm="binary",
    )  # fmt: skip
    return NoiseCertificate(
        certs.abstain, certs, binary_radius=_linear_binary_radius(certs), method="bernoulli"
    )


def _single_flip_pair(noise: Noise, max_flips=(16, 16), **_):
    """Checks (before sampling) that sparse smoothing applies: one flip pair, a feasible grid."""
    flips = (np.unique(noise.parameters["theta_plus"]), np.unique(noise.parameters["theta_minus"]))
    if flips[0].size != 1 or flips[1].size != 1:
        _checks.fail(
            "certificate",
            "neyman_pearson",
            "for Bernoulli smoothing needs one flip pair for every group and region (isotropic "
            "sparse smoothing)",
            "Use certificate='variance' for clustered smoothing, or isotropic_bernoulli(...).",
        )
    max_add = _checks.positive_int("max_flips[0]", tuple(max_flips)[0], minimum=0)
    max_del = _checks.positive_int("max_flips[1]", tuple(max_flips)[1], minimum=0)
    base_certs.check_table_size(
        ("max_flips[0]", "max_flips[1]"), max_add, max_del, bytes_per_cell=2 * noise.num_outputs
    )
    return float(flips[0][0]), float(flips[1][0]), max_add, max_del


def _probability(noise: Noise, prediction, estimate, tested, **options) -> NoiseCertificate:
    tp, tm, max_add, max_del = _single_flip_pair(noise, **options)
    grid = base_certs.sparse_smoothing_grid(estimate.p_lower, tp, tm, max_add, max_del)
    grid &= np.asarray(tested)[:, None, None]
    adds = np.maximum(grid[:, :, 0].sum(axis=1) - 1, 0)
    dels = np.maximum(grid[:, 0, :].sum(axis=1) - 1, 0)
    return NoiseCertificate(
        ~grid[:, 0, 0],
        None,
        binary_radius=np.stack([adds, dels], axis=1).astype(np.float64),
        sparse_grid=grid,
        method="sparse_smoothing",
    )


_probability.check = _single_flip_pair


def _linear_binary_radius(certs) -> np.ndarray:
    """Largest r with `r * max_j W[t, group, j] < eta`, per budget type; 0 where abstained."""
    worst = certs.weights.max(axis=2)[:, certs.group].T  # [D, 2]
    eta = certs.eta[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.ceil(eta / worst) - 1.0
        r = np.where(r * worst >= eta, r - 1.0, r)  # strictness against rounding
    r = np.where(worst > 0, np.maximum(r, 0.0), np.inf)
    return np.where(certs.abstain[:, None], 0.0, r)


CERTIFICATES = {"probability": _probability, "moments": _moments}
