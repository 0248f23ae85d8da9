"""lrsjax.sampling: exact sample counts, stitching, determinism, modes, no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsjax import noise, sampling
from lrsjax._sparse import SparseBinary, from_scipy
from lrsjax.sampling import _kernels

IMAGE = (1, 6, 8)
GRID = (2, 2)
SMOOTHING = noise.localized_gaussian(IMAGE, GRID, 0.1, 1.0)
CELLS = SMOOTHING.group
CELL_MASKS = np.stack([CELLS == c for c in range(4)]).astype(np.float32)  # [4, H, W]


def reveal_group(params, z):
    """Predicts, at every pixel, the cell whose noise is smallest: the group that was sampled."""
    del params
    counts = CELL_MASKS.sum(axis=(1, 2))
    mean = jnp.einsum("khw,hw->k", CELL_MASKS, z[0]) / counts
    var = jnp.einsum("khw,hw->k", CELL_MASKS, z[0] ** 2) / counts - mean**2
    logits = -jnp.log(var)
    return jnp.broadcast_to(logits, (IMAGE[1], IMAGE[2], 4))


def threshold(params, z):
    """Two classes per pixel: class 1 iff the noisy pixel exceeds `params`."""
    d = z[0] - params
    return jnp.stack([jnp.zeros_like(d), d], axis=-1)


def test_votes_count_exactly_n_and_stitch_every_group():
    count = sampling.make_counter(
        reveal_group, SMOOTHING, mode="votes", batch_size=3, num_classes=4
    )
    out = count(jax.random.key(0), None, jnp.zeros(IMAGE), 7)  # 7 = 2 * 3 + 1: remainder batch
    votes = np.asarray(out.counts)
    assert votes.shape == (6, 8, 4) and votes.dtype == np.int32
    np.testing.assert_array_equal(votes.sum(-1), 7)
    # every pixel only saw its own group's noise: it votes for its own cell, every time
    np.testing.assert_array_equal(votes.argmax(-1), CELLS)
    np.testing.assert_array_equal(votes.max(-1), 7)
    # inactive groups are not sampled and their outputs stay empty
    active = np.array([True, False, True, False])
    out = count(jax.random.key(1), None, jnp.zeros(IMAGE), 5, active=active)
    np.testing.assert_array_equal(np.asarray(out.counts).sum(-1), np.where(active[CELLS], 5, 0))


def test_same_key_same_counts_no_recompilation_and_modes_agree():
    make = lambda mode: sampling.make_counter(
        threshold, SMOOTHING, mode=mode, batch_size=4, num_classes=2, num_bins=64
    )
    votes, consistency, histogram = make("votes"), make("consistency"), make("histogram")
    x = jnp.full(IMAGE, 0.5)
    key = jax.random.key(3)
    first = np.asarray(votes(key, 0.5, x, 10).counts)
    size = _kernels._count_jit._cache_size()
    np.testing.assert_array_equal(first, np.asarray(votes(key, 0.5, x, 10).counts))
    other = np.asarray(votes(jax.random.key(4), 0.5, x, 10).counts)
    assert not np.array_equal(first, other)
    # new key, new input, new params, new number of samples, new active set: no recompilation
    votes(jax.random.key(5), 0.3, x + 0.1, 23, active=np.array([1, 0, 1, 1], bool))
    assert _kernels._count_jit._cache_size() == size
    np.testing.assert_array_equal(first.sum(-1), 10)
    # with the same key the three modes see the same noise
    target = np.ones(IMAGE[1:], np.int32)
    agree = np.asarray(consistency(key, 0.5, x, 10, target=target).counts)
    np.testing.assert_array_equal(agree, first[..., 1])
    hist = np.asarray(histogram(key, 0.5, x, 10, target=target).counts)
    assert hist.shape == (6, 8, 64)
    np.testing.assert_array_equal(hist.sum(-1), 10)
    # class 1 wins iff its softmax score is >= 1/2, i.e. falls in the upper half of the bins
    np.testing.assert_array_equal(hist[..., 32:].sum(-1), first[..., 1])


def test_histogram_bins_a_known_score_exactly():
    # (almost) no noise: the softmax score of class 1 is sigmoid(x) = 0.7 up to 1e-6
    quiet = noise.localized_gaussian(IMAGE, GRID, 1e-6, 1e-6)
    count = sampling.make_counter(
        threshold, quiet, mode="histogram", batch_size=4, num_classes=2, num_bins=64
    )
    x = jnp.full(IMAGE, np.log(0.7 / 0.3))
    target = np.ones(IMAGE[1:], np.int32)
    hist = np.asarray(count(jax.random.key(0), 0.0, x, 3, target=target).counts)
    np.testing.assert_array_equal(hist[..., 44], 3)  # floor(0.7 * 64) = 44
    hist0 = np.asarray(count(jax.random.key(0), 0.0, x, 3, target=0 * target).counts)
    np.testing.assert_array_equal(hist0[..., 19], 3)  # floor(0.3 * 64) = 19


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mode="counts"), "mode"),
        (dict(batch_size=0), "batch_size"),
        (dict(num_bins=1000, mode="histogram"), "num_bins"),
    ],
)
def test_make_counter_validation(kwargs, name):
    args = dict(mode="votes", batch_size=2, num_classes=2) | kwargs
    with pytest.raises(ValueError, match=name):
        sampling.make_counter(threshold, SMOOTHING, **args)


def test_counter_call_validation():
    count = sampling.make_counter(
        threshold, SMOOTHING, mode="consistency", batch_size=2, num_classes=2
    )
    with pytest.raises(ValueError, match="num_samples"):
        count(jax.random.key(0), 0.5, jnp.zeros(IMAGE), 0, target=np.zeros((6, 8), int))
    with pytest.raises(ValueError, match="target"):
        count(jax.random.key(0), 0.5, jnp.zeros(IMAGE), 3)


def test_counter_checks_each_new_input_once():
    # A jax array that passed the check once is not re-read on the next call (jax arrays are
    # immutable); any other input, a new jax array or a NumPy array, is checked again.
    count = sampling.make_counter(threshold, SMOOTHING, mode="votes", batch_size=4, num_classes=2)
    x = jnp.full(IMAGE, 0.5)
    first = np.asarray(count(jax.random.key(0), 0.5, x, 8).counts)
    np.testing.assert_array_equal(np.asarray(count(jax.random.key(0), 0.5, x, 8).counts), first)
    with pytest.raises(ValueError, match="x"):
        count(jax.random.key(0), 0.5, x.at[0, 0, 0].set(jnp.nan), 8)
    bad = np.full(IMAGE, 0.5, np.float32)
    count(jax.random.key(0), 0.5, bad, 8)  # fine now ...
    bad[0, 0, 0] = np.nan  # ... but NumPy arrays can change in place: checked every time
    with pytest.raises(ValueError, match="x"):
        count(jax.random.key(0), 0.5, bad, 8)


# ------------------------------------------------------------------------------------------------
# graphs: sparse Bernoulli kernel
# ------------------------------------------------------------------------------------------------

NODES, FEATURES = 9, 5
CLUSTERS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
RANK = np.array([[0, 2, 1], [1, 0, 2], [2, 1, 0]])


def densest_cluster(params, x: SparseBinary):
    """Every node predicts the cluster holding the most ones: the group that was sampled."""
    del params
    per_cluster = jax.ops.segment_sum(
        x.valid.astype(jnp.float32), jnp.asarray(CLUSTERS)[x.rows], num_segments=3
    )
    return jnp.broadcast_to(per_cluster, (NODES, 3))


def test_sparse_kernel_stitches_groups_and_detects_overflow():
    # own cluster: half of the bits flip on; farther clusters almost never
    sm = noise.clustered_bernoulli(CLUSTERS, RANK, [0.5, 0.01, 0.01], [0.5, 0.5, 0.5])
    x = from_scipy(np.zeros((NODES, FEATURES)), capacity=1)
    count = sampling.make_counter(
        densest_cluster, sm, mode="votes", batch_size=4, num_classes=3, num_cols=FEATURES
    )
    out = count(jax.random.key(0), None, x, 6)
    assert not bool(out.overflow)
    votes = np.asarray(out.counts)
    np.testing.assert_array_equal(votes.sum(-1), 6)
    np.testing.assert_array_equal(votes.argmax(-1), CLUSTERS)
    # applying the model one example at a time changes nothing but speed
    looped = sampling.make_counter(
        densest_cluster,
        sm,
        mode="votes",
        batch_size=4,
        num_classes=3,
        num_cols=FEATURES,
        per_example=True,
    )
    np.testing.assert_array_equal(np.asarray(looped(jax.random.key(0), None, x, 6).counts), votes)
    # far denser additions than the capacity was sized for: every batch overflows, and the flag
    # reaches the caller (same compiled kernel: the capacity is pinned, the rates are data)
    dense = noise.clustered_bernoulli(CLUSTERS, RANK, 0.9, 0.5)
    crowded = sampling.make_counter(
        densest_cluster,
        dense,
        mode="votes",
        batch_size=4,
        num_classes=3,
        num_cols=FEATURES,
        addition_capacity=sampling.default_addition_capacity(sm, FEATURES),
    )
    assert bool(crowded(jax.random.key(0), None, x, 6).overflow)
