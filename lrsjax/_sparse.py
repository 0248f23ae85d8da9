"""Padded sparse binary matrices: the input format of sparse-aware graph models.

A perturbed attribute matrix of a graph is kept as the list of its ones, so that a model's first
layer costs O(ones + flips) instead of O(nodes x features) (docs/math.md §3).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from scipy import sparse


class SparseBinary(NamedTuple):
    """A binary matrix `[num_rows, num_cols]` as a fixed-capacity list of its ones (COO).

    Fields (all of length `capacity`, a static size so that shapes never change under jit):
      rows: int32 [capacity], row (node) index of each entry.
      cols: int32 [capacity], column (feature) index of each entry.
      valid: bool [capacity], False for padding entries, which every consumer must ignore.
    Valid entries never repeat a (row, col) position. The matrix shape is not stored: the consumer
    (a model, a sampler) knows `num_rows` and `num_cols` statically.
    """

    rows: jnp.ndarray
    cols: jnp.ndarray
    valid: jnp.ndarray

    @property
    def capacity(self) -> int:
        return int(self.rows.shape[-1])


def from_scipy(matrix, capacity: int | None = None) -> SparseBinary:
    """Packs the nonzeros of a scipy sparse (or dense numpy) binary matrix, padded to `capacity`."""
    coo = matrix.tocoo() if hasattr(matrix, "tocoo") else _dense_to_coo(np.asarray(matrix))
    keep = np.asarray(coo.data) != 0
    rows = np.asarray(coo.row)[keep].astype(np.int32)
    cols = np.asarray(coo.col)[keep].astype(np.int32)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    nnz = rows.shape[0]
    capacity = nnz if capacity is None else int(capacity)
    if capacity < nnz:
        raise ValueError(
            f"`capacity` must be >= the number of ones ({nnz}); got {capacity}. "
            "Pass a larger capacity or None."
        )
    pad = capacity - nnz
    return SparseBinary(
        rows=jnp.asarray(np.concatenate([rows, np.zeros(pad, np.int32)])),
        cols=jnp.asarray(np.concatenate([cols, np.zeros(pad, np.int32)])),
        valid=jnp.asarray(np.concatenate([np.ones(nnz, bool), np.zeros(pad, bool)])),
    )


def to_dense(x: SparseBinary, num_rows: int, num_cols: int) -> jnp.ndarray:
    """The dense float32 `[num_rows, num_cols]` matrix (for tests and small inputs)."""
    dense = jnp.zeros((num_rows, num_cols), jnp.float32)
    return dense.at[x.rows, x.cols].add(x.valid.astype(jnp.float32))


def _dense_to_coo(arr: np.ndarray):
    return sparse.coo_matrix(arr)


def with_diagonal(matrix, value: float):
    """`matrix` (square, CSR) with its diagonal set to `value`, explicit zeros removed."""
    n = matrix.shape[0]
    out = matrix - sparse.diags(matrix.diagonal()) + value * sparse.identity(n, format="csr")
    out = sparse.csr_matrix(out, dtype=matrix.dtype)
    out.eliminate_zeros()
    return out
