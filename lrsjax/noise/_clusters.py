"""Clustered (localized) Bernoulli smoothing of graphs: affinity ranks, flip matrices.

See docs/math.md §2.
"""

from __future__ import annotations

import numpy as np

from lrsjax import _checks


def _cluster_ids(cluster_ids, num_nodes: int | None = None) -> np.ndarray:
    ids = _checks.as_int_array("cluster_ids", cluster_ids, ndim=1)
    if ids.size == 0:
        _checks.fail("cluster_ids", ids, "must not be empty", "Pass one cluster id per node.")
    if num_nodes is not None and ids.shape[0] != num_nodes:
        _checks.fail(
            "cluster_ids",
            ids,
            f"must have one entry per node ({num_nodes})",
            "Pass an int array of shape [N].",
        )
    if ids.min() < 0:
        _checks.fail("cluster_ids", ids, "must be >= 0", "Number clusters 0..C-1.")
    present = np.unique(ids)
    if present.shape[0] != ids.max() + 1:
        missing = np.setdiff1d(np.arange(ids.max() + 1), present)
        _checks.fail(
            "cluster_ids",
            ids,
            f"must use every id 0..C-1 (missing {missing[:5].tolist()})",
            "Relabel the clusters consecutively, e.g. with np.unique(..., return_inverse=True).",
        )
    return ids


def cluster_edge_counts(adjacency, cluster_ids) -> np.ndarray:
    """float64 [C, C], the number of edges between clusters `c` and `c'` (symmetrised, binarised).

    An undirected edge stored in both directions counts twice on both sides, which leaves every
    ranking unchanged.
    """
    import scipy.sparse as sp

    ids = _cluster_ids(cluster_ids)
    num_nodes = ids.shape[0]
    if sp.issparse(adjacency):
        if adjacency.ndim != 2:
            _checks.fail("adjacency", adjacency, "must be a matrix [N, N]", "")
        adj = adjacency.tocsr()
        _checks.as_float_array("adjacency", adj.data)  # real, finite entries
    else:
        dense = _checks.as_float_array("adjacency", adjacency, ndim=2)
        adj = sp.csr_matrix(dense)
    if adj.shape != (num_nodes, num_nodes):
        _checks.fail(
            "adjacency",
            f"a matrix of shape {adj.shape}",
            f"must be [N, N] with N = len(cluster_ids) = {num_nodes}",
            "Pass the graph's adjacency matrix.",
        )
    adj = (adj != 0).astype(np.float64)
    adj = adj + adj.T
    num_clusters = int(ids.max()) + 1
    onehot = sp.csr_matrix(
        (np.ones(num_nodes), (np.arange(num_nodes), ids)), shape=(num_nodes, num_clusters)
    )
    return np.asarray((onehot.T @ adj @ onehot).todense(), dtype=np.float64)


def affinity_ranks(adjacency, cluster_ids) -> np.ndarray:
    """Each cluster's ranking of all clusters by affinity (docs/math.md §2).

    `rank[c, c']` is the position of `c'` in `c`'s list of clusters sorted by the number of edges
    between `c` and `c'` (most first), with `c` itself always first (`rank[c, c] = 0`); ties are
    broken by the smaller cluster id. Smoothing group `c` flips the bits of nodes in cluster `c'`
    with the flip probabilities at index `rank[c, c']`.

    Args:
      adjacency: [N, N] adjacency matrix (scipy sparse or dense); nonzeros are edges.
      cluster_ids: int [N], the cluster of every node, ids 0..C-1 all used.
    Returns:
      int64 [C, C] ranks; every row is a permutation of 0..C-1.
    """
    edges = cluster_edge_counts(adjacency, cluster_ids)
    num_clusters = edges.shape[0]
    rank = np.empty((num_clusters, num_clusters), np.int64)
    ids = np.arange(num_clusters)
    for c in range(num_clusters):
        own_first = np.where(ids == c, 0, 1)
        # lexsort: last key is primary -> own cluster first, then most edges, then smaller id.
        order = np.lexsort((ids, -edges[c], own_first))
        rank[c, order] = ids
    return rank


def rank_flip_probabilities(num_clusters, theta_plus_range, theta_minus_range):
    """Flip probabilities per affinity rank, linear from rank 0 to `C - 1` (docs/math.md §2).

    Args:
      num_clusters: `C >= 1`.
      theta_plus_range: `(own, farthest)` probabilities of a 0 -> 1 flip, each in (0, 1).
      theta_minus_range: `(own, farthest)` probabilities of a 1 -> 0 flip, each in (0, 1).
    Returns:
      `(theta_plus, theta_minus)`, float64 [C] each; index `r` is used for clusters at rank `r`.
    """
    num_clusters = _checks.positive_int("num_clusters", num_clusters)
    out = []
    for name, pair in (
        ("theta_plus_range", theta_plus_range),
        ("theta_minus_range", theta_minus_range),
    ):
        arr = _checks.as_float_array(name, pair, ndim=1)
        if arr.shape[0] != 2:
            _checks.fail(name, arr, "must be a pair (own, farthest)", "Pass e.g. (0.01, 0.001).")
        for i in range(2):
            _checks.probability(f"{name}[{i}]", float(arr[i]))
        out.append(np.linspace(arr[0], arr[1], num_clusters))
    return out[0], out[1]


def check_ranks(rank_matrix) -> np.ndarray:
    """Validates a rank matrix: int [C, C], rows permutations of 0..C-1, `rank[c, c] = 0`."""
    rank = _checks.as_int_array("rank_matrix", rank_matrix, ndim=2)
    num = rank.shape[0]
    if rank.shape != (num, num) or num == 0:
        _checks.fail("rank_matrix", rank, "must be square [C, C]", "Use affinity_ranks(...).")
    if not np.array_equal(np.sort(rank, axis=1), np.broadcast_to(np.arange(num), rank.shape)):
        _checks.fail(
            "rank_matrix",
            rank,
            "must hold a permutation of 0..C-1 in every row",
            "Use affinity_ranks(...).",
        )
    if np.any(np.diag(rank) != 0):
        _checks.fail(
            "rank_matrix", rank, "must rank every cluster first for itself", "Set rank[c, c] = 0."
        )
    return rank


def flip_matrices(rank_matrix, theta_plus, theta_minus):
    """Per-(group, region) flip probabilities used by BOTH the sampler and the certificate.

    `theta_plus_matrix[k, c'] = theta_plus[rank[k, c']]` (and likewise for `theta_minus`): smoothing
    group `k` flips the bits of nodes in cluster `c'` with the probabilities of rank `rank[k, c']`.
    Indexing the per-rank values with the rank itself (not with the sorting permutation, which is
    its inverse) is what the published research code got wrong.

    Args:
      rank_matrix: int [C, C] from `affinity_ranks`.
      theta_plus, theta_minus: float [C] per-rank probabilities in (0, 1), or scalars (isotropic).
    Returns:
      `(theta_plus_matrix, theta_minus_matrix)`, float64 [C, C] each (rows: groups, cols: regions).
    """
    rank = check_ranks(rank_matrix)
    num = rank.shape[0]
    out = []
    for name, values in (("theta_plus", theta_plus), ("theta_minus", theta_minus)):
        arr = _checks.as_float_array(name, values)
        if arr.ndim == 0:
            arr = np.full(num, float(arr))
        if arr.shape != (num,):
            _checks.fail(name, arr, f"must have one value per rank ({num}) or be a scalar", "")
        if np.any(arr <= 0) or np.any(arr >= 1):
            _checks.fail(name, arr, "must lie in (0, 1)", "Pass flip probabilities such as 0.01.")
        out.append(arr[rank])
    return out[0], out[1]
