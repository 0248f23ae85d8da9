"""Node clusterings for localized smoothing on graphs (groups = regions = clusters).

Both functions return a partition of the nodes into exactly `num_clusters` non-empty clusters,
numbered in the order of their lowest node (cluster 0 contains node 0), deterministically for a key.
The affinity ranks and per-rank flip probabilities built on top of a clustering live in
lrsjax.noise.
"""

from __future__ import annotations

import jax
import numpy as np
import scipy.sparse as sp
from scipy.sparse import linalg as sparse_linalg

from lrsjax._checks import fail, positive_int
from lrsjax._keys import check_key, host_rng
from lrsjax._sparse import with_diagonal

_DENSE_EIGH_MAX_NODES = 400


def spectral_clusters(
    key, adjacency, num_clusters: int, *, num_restarts: int = 4, max_iterations: int = 300
) -> np.ndarray:
    """Spectral clustering (Ng, Jordan & Weiss): normalised-adjacency eigenvectors, then k-means.

    The adjacency is symmetrized (`(|A| + |A|^T) / 2`), its diagonal replaced by ones (so isolated
    nodes are well defined), and normalised, `M = D^-1/2 (A + I) D^-1/2`. The `num_clusters`
    eigenvectors of `M` with the largest eigenvalues (equivalently the smallest of the normalised
    Laplacian) embed the nodes; rows are scaled to unit length and clustered by k-means++ /
    Lloyd with `num_restarts` restarts (lowest inertia wins). Empty clusters are repaired by moving
    the point farthest from its centroid out of the largest cluster, so every cluster is non-empty.

    Deterministic for a key: the eigensolver's start vector and the k-means seeds come from it.

    Args:
      key: JAX PRNG key.
      adjacency: `[N, N]` scipy sparse matrix or dense array of non-negative edge weights.
      num_clusters: C, with 1 <= C <= N.
    Returns:
      int64 `[N]`, cluster of each node in `0..C-1`, every cluster non-empty.
    """
    key = check_key("key", key)
    adjacency = _check_adjacency(adjacency)
    n = adjacency.shape[0]
    num_clusters = _check_num_clusters(num_clusters, n)
    num_restarts = positive_int("num_restarts", num_restarts)
    max_iterations = positive_int("max_iterations", max_iterations)
    if num_clusters == 1:
        return np.zeros(n, np.int64)
    if num_clusters == n:
        return np.arange(n, dtype=np.int64)

    k_eigen, k_means = jax.random.split(key)
    embedding = _spectral_embedding(k_eigen, adjacency, num_clusters)
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = embedding / np.maximum(norms, 1e-12)
    assignment = _kmeans(host_rng(k_means), embedding, num_clusters, num_restarts, max_iterations)
    return _canonical(assignment, num_clusters)


def metis_clusters(key, adjacency, num_clusters: int) -> np.ndarray:
    """A METIS k-way partition (edge-cut minimising, balanced sizes) via the optional `pymetis`.

    An alternative to spectral clustering. The adjacency is symmetrized and
    self-loops dropped (METIS requires both); METIS's random seed is derived from `key`, so the
    result is deterministic for a key. If METIS leaves a part empty (possible on tiny or very
    disconnected graphs), nodes are moved into it from the largest part (the highest-numbered node
    first), so every cluster is non-empty.

    Args:
      key: JAX PRNG key.
      adjacency: `[N, N]` scipy sparse matrix or dense array (edge weights are ignored).
      num_clusters: C, with 1 <= C <= N.
    Returns:
      int64 `[N]`, cluster of each node in `0..C-1`, every cluster non-empty.
    Raises:
      ImportError: pymetis is not installed (`pip install pymetis`).
    """
    key = check_key("key", key)
    adjacency = _check_adjacency(adjacency)
    n = adjacency.shape[0]
    num_clusters = _check_num_clusters(num_clusters, n)
    try:
        import pymetis
    except ImportError as err:
        raise ImportError(
            "`metis_clusters` needs the optional package `pymetis`; install it with "
            "`pip install pymetis`, or use `spectral_clusters` instead."
        ) from err
    if num_clusters == 1:
        return np.zeros(n, np.int64)
    if num_clusters == n:
        return np.arange(n, dtype=np.int64)

    graph = with_diagonal(abs(adjacency) + abs(adjacency).T, 0.0)
    graph.sort_indices()
    seed = int(host_rng(key).integers(0, 2**31 - 1))
    options = pymetis.Options(seed=seed)
    starts, adjacent = graph.indptr.astype(np.int64), graph.indices.astype(np.int64)
    if hasattr(pymetis, "CSRAdjacency"):  # pymetis >= 2025.2
        csr = pymetis.CSRAdjacency(adj_starts=starts, adjacent=adjacent)
        _, parts = pymetis.part_graph(num_clusters, adjacency=csr, options=options)
    else:  # pragma: no cover - older pymetis
        _, parts = pymetis.part_graph(num_clusters, xadj=starts, adjncy=adjacent, options=options)
    assignment = np.asarray(parts, dtype=np.int64)
    for empty in range(num_clusters):
        if not np.any(assignment == empty):
            largest = int(np.argmax(np.bincount(assignment, minlength=num_clusters)))
            assignment[np.flatnonzero(assignment == largest)[-1]] = empty
    return _canonical(assignment, num_clusters)


def _check_adjacency(adjacency) -> sp.csr_matrix:
    if sp.issparse(adjacency):
        matrix = sp.csr_matrix(adjacency, dtype=np.float64)
    else:
        arr = np.asarray(adjacency)
        if arr.dtype.kind not in "biuf":
            fail("adjacency", adjacency, "must be a numeric matrix", "Pass a scipy sparse matrix.")
        matrix = sp.csr_matrix(arr.astype(np.float64))
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        fail("adjacency", matrix, "must be a non-empty square [N, N] matrix", "Pass A of a graph.")
    if not np.all(np.isfinite(matrix.data)) or np.any(matrix.data < 0):
        fail(
            "adjacency",
            matrix,
            "must hold finite non-negative edge weights",
            "Pass a 0/1 or weighted adjacency matrix.",
        )
    return matrix


def _check_num_clusters(num_clusters, n: int) -> int:
    num_clusters = positive_int("num_clusters", num_clusters)
    if num_clusters > n:
        fail("num_clusters", num_clusters, f"must be <= the number of nodes ({n})", "Use fewer.")
    return num_clusters


def _spectral_embedding(key, adjacency: sp.csr_matrix, k: int) -> np.ndarray:
    """The k leading eigenvectors `[N, k]` of D^-1/2 (A_sym + I) D^-1/2 (float64, host)."""
    n = adjacency.shape[0]
    sym = with_diagonal((adjacency + adjacency.T) * 0.5, 1.0)
    degree = np.asarray(sym.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(degree))
    normalised = (scale @ sym @ scale).tocsr()
    if n <= _DENSE_EIGH_MAX_NODES or k >= n - 1:
        _, vectors = np.linalg.eigh(normalised.toarray())
        return vectors[:, ::-1][:, :k]
    v0 = np.asarray(jax.random.normal(key, (n,)), dtype=np.float64)
    _, vectors = sparse_linalg.eigsh(normalised, k=k, which="LA", v0=v0)
    return vectors[:, ::-1]


def _kmeans(rng, points, k, restarts, max_iterations) -> np.ndarray:
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centroids = _kmeans_plus_plus(rng, points, k)
        assignment = np.full(points.shape[0], -1, np.int64)
        for _ in range(max_iterations):
            distances = _squared_distances(points, centroids)
            new = np.argmin(distances, axis=1)
            new = _repair_empty(points, new, centroids, k)
            if np.array_equal(new, assignment):
                break
            assignment = new
            for c in range(k):
                centroids[c] = points[assignment == c].mean(axis=0)
        inertia = float(np.sum((points - centroids[assignment]) ** 2))
        if inertia < best_inertia:
            best, best_inertia = assignment.copy(), inertia
    return best


def _kmeans_plus_plus(rng, points, k) -> np.ndarray:
    n = points.shape[0]
    centroids = np.empty((k, points.shape[1]))
    centroids[0] = points[rng.integers(n)]
    closest = np.sum((points - centroids[0]) ** 2, axis=1)
    for c in range(1, k):
        total = closest.sum()
        index = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[c] = points[index]
        closest = np.minimum(closest, np.sum((points - centroids[c]) ** 2, axis=1))
    return centroids


def _squared_distances(points, centroids) -> np.ndarray:
    return (
        np.sum(points**2, axis=1)[:, None]
        - 2.0 * points @ centroids.T
        + np.sum(centroids**2, axis=1)[None, :]
    )


def _repair_empty(points, assignment, centroids, k) -> np.ndarray:
    """Fills each empty cluster with the point of the largest cluster farthest from its centroid."""
    assignment = assignment.copy()
    for empty in range(k):
        if np.any(assignment == empty):
            continue
        largest = int(np.argmax(np.bincount(assignment, minlength=k)))
        members = np.flatnonzero(assignment == largest)
        spread = np.sum((points[members] - centroids[largest]) ** 2, axis=1)
        assignment[members[int(np.argmax(spread))]] = empty
    return assignment


def _canonical(assignment: np.ndarray, k: int) -> np.ndarray:
    """Renumbers clusters by their lowest node; checks the result is a partition into k parts."""
    _, first, inverse = np.unique(assignment, return_index=True, return_inverse=True)
    if first.shape[0] != k:  # pragma: no cover - guarded by the repairs above
        raise RuntimeError(f"clustering produced {first.shape[0]} of {k} clusters")
    rank = np.empty(k, np.int64)
    rank[np.argsort(first)] = np.arange(k)
    return rank[inverse.ravel()]
