"""lrsjax.noise: grids, localized stds (TV9), affinity ranks, flip matrices (D4), samplers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from lrsjax import noise
from lrsjax._sparse import from_scipy, to_dense

# ------------------------------------------------------------------------------------------------
# grids and noise levels
# ------------------------------------------------------------------------------------------------


def test_grid_cells_edges_and_ids():
    cells = noise.grid_cells((5, 7), (2, 3))
    np.testing.assert_array_equal(cells.row_edges, [0, 2, 5])  # floor(linspace(0, 5, 3))
    np.testing.assert_array_equal(cells.col_edges, [0, 2, 4, 7])
    assert cells.cell_id.shape == (5, 7)
    for i in range(2):
        for j in range(3):
            block = cells.cell_id[
                cells.row_edges[i] : cells.row_edges[i + 1],
                cells.col_edges[j] : cells.col_edges[j + 1],
            ]
            assert np.all(block == i * 3 + j)
    # channels are ignored, 1x1 grid is one cell
    assert np.all(noise.grid_cells((3, 5, 7), (1, 1)).cell_id == 0)


@pytest.mark.parametrize("grid", [(6, 1), (1, 8), (0, 2)])
def test_grid_larger_than_image_or_empty_raises(grid):
    with pytest.raises(ValueError, match="grid_shape"):
        noise.grid_cells((5, 7), grid)


def test_tv9_linear_and_variance_interpolation():
    stds = noise.localized_stds((3, 5), 0.1, 1.0)
    assert stds.shape == (15, 15) and stds.dtype == np.float64
    outer = [0.55, 0.325, 0.325, 0.325, 0.55]
    np.testing.assert_allclose(
        stds[1 * 5 + 2].reshape(3, 5), [outer, [0.55, 0.325, 0.1, 0.325, 0.55], outer]
    )
    np.testing.assert_allclose(stds[0].reshape(3, 5)[0], [0.1, 0.325, 0.55, 0.775, 1.0])
    var = noise.localized_stds((3, 5), 0.1, 1.0, interpolate="variance")
    np.testing.assert_allclose(
        var[0].reshape(3, 5)[0], [0.1, 0.5074, 0.7106, 0.8675, 1.0], atol=5e-5
    )


def test_max_std_at_boundary_and_mask_distance():
    stds = noise.localized_stds((3, 5), 0.1, 1.0, max_std_at_boundary=True)
    # the centre cell (1, 2) is at most 2 away from any cell: the farthest ones get std_max
    centre = stds[7].reshape(3, 5)
    np.testing.assert_allclose(centre[:, [0, 4]], 1.0)
    np.testing.assert_allclose(centre[1, 2], 0.1)
    np.testing.assert_allclose(centre[1, 1], 0.55)
    np.testing.assert_allclose(stds.max(axis=1), 1.0)
    masked = noise.localized_stds((3, 5), 0.1, 1.0, mask_distance=2)
    dist = noise.cell_distances((3, 5))
    assert np.all(np.isinf(masked[dist >= 2]))
    np.testing.assert_allclose(
        masked[dist < 2], stds_plain := noise.localized_stds((3, 5), 0.1, 1.0)[dist < 2]
    )
    assert np.all(np.isfinite(stds_plain))


def test_isotropic_is_a_one_by_one_grid():
    sm = noise.isotropic_gaussian((3, 4, 4), 0.25)
    assert sm.stds.shape == (1, 1) and sm.stds[0, 0] == 0.25
    assert np.all(sm.group == 0) and sm.output_shape == (4, 4)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(std_min=0.0, std_max=1.0), "std_min"),
        (dict(std_min=-0.1, std_max=1.0), "std_min"),
        (dict(std_min=float("nan"), std_max=1.0), "std_min"),
        (dict(std_min=0.1, std_max=float("inf")), "std_max"),
        (dict(std_min=0.5, std_max=0.1), "std_min"),
        (dict(std_min=0.1, std_max=1.0, interpolate="log"), "interpolate"),
        (dict(std_min=0.1, std_max=1.0, mask_distance=0), "mask_distance"),
    ],
)
def test_localized_gaussian_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        noise.localized_gaussian((8, 8), (2, 2), **kwargs)


# ------------------------------------------------------------------------------------------------
# clusters, ranks, flip matrices
# ------------------------------------------------------------------------------------------------


def _path_graph_clusters():
    # clusters 0:{0,1}, 1:{2,3}, 2:{4,5}, 3:{6}; edges chosen so that rankings are not symmetric
    edges = [(0, 2), (1, 3), (0, 3), (2, 4), (3, 5), (4, 6), (5, 6), (0, 6), (1, 4)]
    adj = np.zeros((7, 7))
    for a, b in edges:
        adj[a, b] = adj[b, a] = 1
    return adj, np.array([0, 0, 1, 1, 2, 2, 3])


def test_affinity_ranks_by_hand():
    adj, ids = _path_graph_clusters()
    # inter-cluster edge counts: 0-1: 3, 0-2: 1, 0-3: 1, 1-2: 2, 2-3: 2
    expected_order = {0: [0, 1, 2, 3], 1: [1, 0, 2, 3], 2: [2, 1, 3, 0], 3: [3, 2, 0, 1]}
    rank = noise.affinity_ranks(sp.csr_matrix(adj), ids)
    for c, order in expected_order.items():
        assert [int(np.where(rank[c] == r)[0][0]) for r in range(4)] == order
    np.testing.assert_array_equal(rank, noise.affinity_ranks(adj, ids))  # dense == sparse


def test_affinity_ranks_tie_break_by_id_and_no_edges():
    rank = noise.affinity_ranks(np.zeros((4, 4)), [2, 0, 1, 2])
    np.testing.assert_array_equal(rank, [[0, 1, 2], [1, 0, 2], [1, 2, 0]])


def test_rank_flip_probabilities_linear():
    tp, tm = noise.rank_flip_probabilities(5, (0.01, 0.05), (0.6, 0.2))
    np.testing.assert_allclose(tp, [0.01, 0.02, 0.03, 0.04, 0.05])
    np.testing.assert_allclose(tm, [0.6, 0.5, 0.4, 0.3, 0.2])
    with pytest.raises(ValueError, match="theta_plus_range"):
        noise.rank_flip_probabilities(3, (0.0, 0.1), (0.5, 0.5))


def test_flip_matrices_index_with_the_rank_not_its_inverse():
    # D4: a rank row that is not an involution distinguishes rank from argsort(rank)
    rank = np.array([[0, 2, 3, 1], [1, 0, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]])
    assert not np.array_equal(rank, np.argsort(rank, axis=1))
    per_rank = np.array([0.4, 0.3, 0.2, 0.1])
    tp, tm = noise.flip_matrices(rank, per_rank, per_rank / 2)
    for k in range(4):
        for c in range(4):
            assert tp[k, c] == per_rank[rank[k, c]]
            assert tm[k, c] == per_rank[rank[k, c]] / 2
    sm = noise.clustered_bernoulli(np.array([0, 1, 2, 3, 3]), rank, per_rank, per_rank / 2)
    np.testing.assert_array_equal(sm.theta_plus, tp)


@pytest.mark.parametrize(
    "args, name",
    [
        (([0, 1, 1], [[0, 1], [1, 0]], 0.0, 0.5), "theta_plus"),
        (([0, 1, 1], [[0, 1], [1, 0]], 0.1, 1.0), "theta_minus"),
        (([0, 1, 1], [[0, 1], [1, 0]], float("nan"), 0.5), "theta_plus"),
        (([0, 2, 2], [[0, 1], [1, 0]], 0.1, 0.5), "cluster_ids"),
        (([0, 1, 1], [[1, 0], [0, 1]], 0.1, 0.5), "rank_matrix"),
        (([0, 1, 1], [[0, 1, 2], [1, 0, 2], [1, 2, 0]], 0.1, 0.5), "rank_matrix"),
    ],
)
def test_clustered_bernoulli_validation(args, name):
    with pytest.raises(ValueError, match=name):
        noise.clustered_bernoulli(*args)


# ------------------------------------------------------------------------------------------------
# samplers
# ------------------------------------------------------------------------------------------------


def test_gaussian_sampler_per_region_std_and_mask():
    stds = noise.localized_stds((1, 3), 0.2, 1.0, mask_distance=2)  # group 0: 0.2, 0.6, masked
    cells = noise.grid_cells((2, 6), (1, 3)).cell_id
    std_map = noise.gaussian_std_map(stds[0], cells)
    x = jnp.full((2, 2, 6), 0.5)
    keys = jax.random.split(jax.random.key(0), 2000)
    z = np.asarray(jax.vmap(noise.sample_gaussian, (0, None, None))(keys, x, std_map))
    assert np.all(z[:, :, cells == 2] == 0.0)  # masked region zeroed in every channel
    for region, std in ((0, 0.2), (1, 0.6)):
        values = z[:, :, cells == region].ravel() - 0.5
        # sample std of 16000 normals: relative sd ~ 0.56%; 5 sigma
        assert abs(values.std() / std - 1) < 0.03
        assert abs(values.mean()) < 5 * std / np.sqrt(values.size)


def test_standard_normal_matches_the_normal_distribution():
    z = np.asarray(noise.standard_normal(jax.random.key(1), (400, 500)))
    assert z.shape == (400, 500) and z.dtype == np.float32
    flat = z.ravel().astype(np.float64)
    assert stats.kstest(flat, "norm").pvalue > 1e-4
    assert abs(flat.mean()) < 5 / np.sqrt(flat.size)
    assert abs(flat.var() - 1) < 5 * np.sqrt(2 / flat.size)
    # 24-bit uniforms on a symmetric grid strictly inside (-1, 1): finite, |z| <= 5.42
    assert np.all(np.isfinite(flat)) and np.abs(flat).max() <= 5.42
    # different keys, different draws; odd sizes are cut from whole groups of 4
    other = np.asarray(noise.standard_normal(jax.random.key(2), (7,)))
    assert other.shape == (7,) and not np.allclose(other, z.ravel()[:7])


def _random_binary(rng, num_rows, num_cols, density):
    return (rng.random((num_rows, num_cols)) < density).astype(np.int8)


def _flip_problem():
    rng = np.random.default_rng(1)
    matrix = _random_binary(rng, 6, 12, 0.35)
    region = np.array([0, 0, 1, 1, 2, 2])
    rank = np.array([[0, 2, 1], [1, 0, 2], [2, 1, 0]])
    sm = noise.clustered_bernoulli(region, rank, [0.3, 0.1, 0.02], [0.5, 0.7, 0.85])
    return matrix, sm


_NUM_DRAWS = 8000


@functools.cache
def _sparse_draw():
    """One compiled sampler for every sparse test (same shapes, group rows are arguments)."""
    matrix, sm = _flip_problem()
    num_rows, num_cols = matrix.shape
    params = noise.bernoulli_parameters(sm.theta_plus, sm.theta_minus)
    layout = noise.region_layout(sm.region, sm.num_regions)
    capacity = noise.sparse_addition_capacity(params.addition_rates, layout.region_size, num_cols)
    sample = noise.make_sparse_bernoulli_sampler(num_rows, num_cols, capacity)
    x = from_scipy(matrix, capacity=int(matrix.sum()) + 2)
    layout = jax.tree.map(jnp.asarray, layout)

    @jax.jit
    def draw(key, rates_row, thresholds_row):
        keys = jax.random.split(key, _NUM_DRAWS)
        z, over = jax.vmap(sample, (0, None, None, None, None))(
            keys, x, layout, rates_row, thresholds_row
        )
        dense = jax.vmap(lambda s: to_dense(s, num_rows, num_cols))(z)
        return dense, over

    return draw


def _sparse_samples(sm, group, key):
    params = noise.bernoulli_parameters(sm.theta_plus, sm.theta_minus)
    dense, over = _sparse_draw()(
        key, params.addition_rates[group], params.deletion_thresholds[group]
    )
    return np.asarray(dense), np.asarray(over)


def _assert_rates(dense, matrix, sm, group):
    num = dense.shape[0]
    rate = dense.mean(axis=0)
    for region in range(sm.num_regions):
        rows = sm.region == region
        for bit, expected in (
            (0, sm.theta_plus[group, region]),
            (1, 1 - sm.theta_minus[group, region]),
        ):
            cells = (matrix == bit) & rows[:, None]
            observed = rate[cells]
            # each cell is Binomial(num, expected): per-cell 5-sigma band, and the pooled mean
            sd = np.sqrt(expected * (1 - expected) / num)
            assert np.all(np.abs(observed - expected) < 5.5 * sd), (region, bit)
            assert abs(observed.mean() - expected) < 5 * sd / np.sqrt(cells.sum())


@pytest.mark.parametrize("group", [0, 2])
def test_sparse_bernoulli_marginals_per_group_and_region(group):
    matrix, sm = _flip_problem()
    dense, over = _sparse_samples(sm, group, jax.random.key(group))
    assert not over.any()
    assert dense.max() <= 1.0  # valid entries never repeat a position
    _assert_rates(dense, matrix, sm, group)


def test_sparse_bernoulli_pairwise_independence():
    matrix, sm = _flip_problem()
    dense, _ = _sparse_samples(sm, 1, jax.random.key(7))
    flat = dense.reshape(dense.shape[0], -1)
    p = flat.mean(axis=0)
    joint = flat.T @ flat / flat.shape[0]
    # pairs of distinct positions (zero-zero pairs test the Poisson thinning, one-zero mixes)
    num = flat.shape[0]
    iu = np.triu_indices(flat.shape[1], 1)
    expected = np.outer(p, p)[iu]
    sd = np.sqrt(expected * (1 - expected) / num) + 1e-4
    z = (joint[iu] - expected) / sd
    # about 2800 pairs: no pair beyond 5 sd; the mean standardized deviation near 0
    assert np.abs(z).max() < 5.5
    assert abs(z.mean()) < 0.2


def test_sparse_bernoulli_overflow_is_detected_not_truncated():
    matrix, sm = _flip_problem()
    # the capacity from the tail bound (computed for sm) never overflows with sm's rates ...
    _, over = _sparse_samples(sm, 0, jax.random.key(3))
    assert not over.any()
    # ... but far denser additions than it was sized for are flagged, sample by sample
    dense_sm = noise.clustered_bernoulli(
        sm.region, np.array([[0, 2, 1], [1, 0, 2], [2, 1, 0]]), 0.9, 0.5
    )
    _, over = _sparse_samples(dense_sm, 0, jax.random.key(3))
    assert over.all()


def test_addition_capacity_tail_bound():
    rates = np.array([[0.01, 0.02]])
    sizes = np.array([100, 50])
    cap = noise.sparse_addition_capacity(rates, sizes, 30)
    lam = 30 * (0.01 * 100 + 0.02 * 50)
    assert stats.poisson.sf(cap, lam) < 1e-12
    assert stats.poisson.sf(cap - 3, lam) >= 1e-12  # not wildly larger than needed


def test_dense_bernoulli_marginals():
    matrix, sm = _flip_problem()
    params = noise.bernoulli_parameters(sm.theta_plus, sm.theta_minus)
    group = 1
    keys = jax.random.split(jax.random.key(11), _NUM_DRAWS)
    dense = jax.vmap(noise.sample_dense_bernoulli, (0, None, None, None, None))(
        keys,
        jnp.asarray(matrix, jnp.float32),
        sm.region,
        params.addition_thresholds[group],
        params.deletion_thresholds[group],
    )
    _assert_rates(np.asarray(dense), matrix, sm, group)


def test_refined_random_bits_equal_full_width_draws():
    """The sampler's bit-saving refinements decide exactly as full-width draws would."""
    from lrsjax.noise._samplers import _bernoulli_from_16_bits, _mul_32x32, _uniform_below

    rng = np.random.default_rng(5)
    n = 20000
    # 64-bit multiply-shift floor((h * 2**32 + l) * span / 2**64); large spans refine often
    span = rng.integers(1, 2**31 - 1, n, dtype=np.uint64)
    span[: n // 2] = rng.integers(2**30, 2**31 - 1, n // 2, dtype=np.uint64)
    high = rng.integers(0, 2**32, n, dtype=np.uint64)
    low = rng.integers(0, 2**32, n, dtype=np.uint64)
    _, low_1 = _mul_32x32(jnp.asarray(high.astype(np.uint32)), jnp.asarray(span.astype(np.uint32)))
    undecided = np.asarray(low_1).astype(np.uint64) > 2**32 - span
    assert 0 < undecided.sum() < n
    values, overflow = _uniform_below(
        jnp.asarray(high.astype(np.uint32)),
        jnp.asarray(low[undecided].astype(np.uint32)),  # each undecided entry's own low word
        jnp.asarray(span.astype(np.int32)),
        jnp.ones(n, bool),
    )
    expected = [((int(h) << 32 | int(lo)) * int(s)) >> 64 for h, lo, s in zip(high, low, span)]
    assert not bool(overflow)
    np.testing.assert_array_equal(np.asarray(values).astype(np.int64), expected)
    # a pool one word short is flagged
    _, overflow = _uniform_below(
        jnp.asarray(high.astype(np.uint32)),
        jnp.asarray(low[undecided][:-1].astype(np.uint32)),
        jnp.asarray(span.astype(np.int32)),
        jnp.ones(n, bool),
    )
    assert bool(overflow)
    # Bernoulli(t / 2**32) from a 16-bit draw, refined by a pool word when the high halves tie
    thresholds = rng.integers(0, 2**32, n, dtype=np.uint64)
    high16 = rng.integers(0, 2**16, n, dtype=np.uint64)
    high16[:500] = thresholds[:500] >> 16  # ties
    low16 = rng.integers(0, 2**16, n, dtype=np.uint64)
    tied = high16 == thresholds >> 16
    decided, overflow = _bernoulli_from_16_bits(
        jnp.asarray(high16.astype(np.uint32)),
        jnp.asarray(low16[tied].astype(np.uint32)),
        jnp.asarray(thresholds.astype(np.uint32)),
        jnp.ones(n, bool),
    )
    assert not bool(overflow)
    np.testing.assert_array_equal(np.asarray(decided), ((high16 << 16) | low16) < thresholds)
