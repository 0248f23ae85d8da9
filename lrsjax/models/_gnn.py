"""GCN and APPNP over a fixed jraph graph, with a sparse-aware first layer.

The edge set is fixed and only the binary attribute matrix `X [N, F]` is perturbed, so
the models take the graph and the attributes separately: `model.apply(params, graph, x)`. The first
layer computes `X @ W` as a segment sum of the rows `W[col]` over the ones of `X`, so a perturbed
sample given as a `SparseBinary` costs O(ones + flips), never O(N * F).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import scipy.sparse as sp

from lrsjax._checks import fail, positive_int
from lrsjax._keys import check_key
from lrsjax._sparse import SparseBinary, with_diagonal


def graph_to_jraph(adjacency, *, add_self_loops: bool = True) -> jraph.GraphsTuple:
    """The fixed propagation graph `A_hat = D^-1/2 (A + I) D^-1/2` as a jraph GraphsTuple.

    The diagonal of `adjacency` is ignored and, with `add_self_loops`, replaced by ones (weight 1).
    Each remaining nonzero `(i, j)` becomes an edge from sender `j` to receiver `i` carrying the
    coefficient `A[i, j] / sqrt(d_i d_j)` with `d_i = sum_j (A + I)[i, j]`, so that propagation is
    `out[i] = sum_j A_hat[i, j] h[j]` (Kipf & Welling 2017; for a symmetric `A` the usual
    symmetric normalisation). Nodes without any edge (possible only without self-loops) get zero
    output from propagation.

    Args:
      adjacency: `[N, N]` scipy sparse matrix or dense array, non-negative weights.
      add_self_loops: add the identity before normalising (the GCN renormalisation trick).
    Returns:
      GraphsTuple with
        nodes: float32 `[N]`, the normalising degree `d_i` of every node (its length fixes N
          statically under jit);
        edges: float32 `[E]`, the coefficient of each edge;
        senders, receivers: int32 `[E]`;
        n_node: int32 `[1]` = N; n_edge: int32 `[1]` = E; globals: None.
    """
    if sp.issparse(adjacency):
        matrix = sp.csr_matrix(adjacency, dtype=np.float64)
    else:
        arr = np.asarray(adjacency)
        if arr.dtype.kind not in "biuf":
            fail("adjacency", adjacency, "must be a numeric matrix", "Pass a scipy CSR matrix.")
        matrix = sp.csr_matrix(arr.astype(np.float64))
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        fail("adjacency", matrix, "must be a non-empty square [N, N] matrix", "Pass A.")
    if not np.all(np.isfinite(matrix.data)) or np.any(matrix.data < 0):
        fail("adjacency", matrix, "must hold finite non-negative weights", "Pass a 0/1 matrix.")
    n = matrix.shape[0]
    matrix = with_diagonal(matrix, 1.0 if add_self_loops else 0.0)
    degree = np.asarray(matrix.sum(axis=1)).ravel()
    coo = matrix.tocoo()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    coefficient = coo.data * inv_sqrt[coo.row] * inv_sqrt[coo.col]
    return jraph.GraphsTuple(
        nodes=jnp.asarray(degree, jnp.float32),
        edges=jnp.asarray(coefficient, jnp.float32),
        senders=jnp.asarray(coo.col, jnp.int32),
        receivers=jnp.asarray(coo.row, jnp.int32),
        globals=None,
        n_node=jnp.asarray([n], jnp.int32),
        n_edge=jnp.asarray([coo.nnz], jnp.int32),
    )


def propagate(graph: jraph.GraphsTuple, h: jnp.ndarray) -> jnp.ndarray:
    """`A_hat @ h` for `h [N, H]`: a segment sum of the senders' rows scaled by the edge weights."""
    messages = h[graph.senders] * graph.edges[:, None].astype(h.dtype)
    return jax.ops.segment_sum(messages, graph.receivers, num_segments=h.shape[0])


class SparseDense(nn.Module):
    """`X @ W + b` for a binary `X [N, F]` given as a SparseBinary (or a dense array).

    For a SparseBinary the product is `out[i] = sum over valid entries (i, f) of W[f]`, a segment
    sum over the ones (padding entries contribute exactly 0): O(capacity * features).
    With `training=True`, dropout (`rate`) drops individual ones of X and rescales the kept ones
    by `1 / (1 - rate)`, the same as dropout on the dense input restricted to its nonzeros.
    """

    num_nodes: int
    num_inputs: int
    features: int
    rate: float = 0.0

    @nn.compact
    def __call__(self, x, *, training: bool = False) -> jnp.ndarray:
        kernel = self.param(
            "kernel", nn.initializers.glorot_uniform(), (self.num_inputs, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if isinstance(x, SparseBinary):
            weight = x.valid.astype(kernel.dtype)
            if training and self.rate > 0:
                keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - self.rate, weight.shape)
                weight = weight * keep.astype(weight.dtype) / (1 - self.rate)
            rows = kernel[x.cols] * weight[:, None]
            out = jax.ops.segment_sum(rows, x.rows, num_segments=self.num_nodes)
        else:
            x = jnp.asarray(x, kernel.dtype)
            x = nn.Dropout(self.rate, deterministic=not training)(x)
            out = x @ kernel
        return out + bias[None, :]


class GCN(nn.Module):
    """Two-layer graph convolutional network (Kipf & Welling 2017).

    `logits = A_hat relu(A_hat X W1 + b1) W2 + b2` (biases added before the second propagation,
    as in the reference implementation), with dropout on X and on the hidden layer in training.

    Attributes:
      num_features: F, attributes per node (the first layer's input size; needed statically for
        SparseBinary inputs).
      num_classes: C, logits per node.
      hidden_features: width of the hidden layer.
      dropout_rate: dropout probability in training.
    Call: `model.apply(params, graph, x, training=False) -> logits float32 [N, C]` with `graph`
    from `graph_to_jraph` and `x` a SparseBinary or a dense `[N, F]` array.
    """

    num_features: int
    num_classes: int
    hidden_features: int = 64
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, x, *, training: bool = False) -> jnp.ndarray:
        n = _num_nodes(graph)
        h = SparseDense(n, self.num_features, self.hidden_features, self.dropout_rate)(
            x, training=training
        )
        h = nn.relu(propagate(graph, h))
        h = nn.Dropout(self.dropout_rate, deterministic=not training)(h)
        h = nn.Dense(self.num_classes)(h)
        return propagate(graph, h)


class APPNP(nn.Module):
    """APPNP (Gasteiger, Bojchevski & Günnemann 2019): an MLP, then personalized propagation.

    `H0 = MLP(X)` (one hidden ReLU layer), then `num_steps` times
    `H <- (1 - alpha) A_hat H + alpha H0`; the logits are the final `H`. Defaults `K = 10`,
    `alpha = 0.15` as in the LRS paper's graph experiments.

    Attributes:
      num_features, num_classes, hidden_features, dropout_rate: as in `GCN`.
      num_steps: K, propagation steps.
      alpha: teleport (restart) probability.
    Call: `model.apply(params, graph, x, training=False) -> logits float32 [N, C]`.
    """

    num_features: int
    num_classes: int
    hidden_features: int = 64
    dropout_rate: float = 0.5
    num_steps: int = 10
    alpha: float = 0.15

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, x, *, training: bool = False) -> jnp.ndarray:
        n = _num_nodes(graph)
        h = SparseDense(n, self.num_features, self.hidden_features, self.dropout_rate)(
            x, training=training
        )
        h = nn.relu(h)
        h = nn.Dropout(self.dropout_rate, deterministic=not training)(h)
        h0 = nn.Dense(self.num_classes)(h)

        def step(h, _):
            return (1 - self.alpha) * propagate(graph, h) + self.alpha * h0, None

        h, _ = jax.lax.scan(step, h0, None, length=self.num_steps)
        return h


def _num_nodes(graph: jraph.GraphsTuple) -> int:
    if graph.nodes is None or jnp.ndim(graph.nodes) != 1:
        raise ValueError(
            "`graph.nodes` must be the degree vector [N] written by `graph_to_jraph`; got "
            f"{None if graph.nodes is None else jnp.shape(graph.nodes)}. Build the graph with "
            "lrsjax.models.graph_to_jraph."
        )
    return int(graph.nodes.shape[0])


GRAPH_MODELS = {"GCN": GCN, "APPNP": APPNP}


def check_graph_model(name: str, model) -> nn.Module:
    """Validates that `model` is a GCN or APPNP with sensible settings (host side)."""
    if not isinstance(model, GCN | APPNP):
        fail(name, model, "must be an lrsjax GCN or APPNP module", "Build one from lrsjax.models.")
    positive_int(f"{name}.num_features", model.num_features)
    positive_int(f"{name}.num_classes", model.num_classes)
    positive_int(f"{name}.hidden_features", model.hidden_features)
    rate = model.dropout_rate
    if not (isinstance(rate, int | float) and 0 <= rate < 1):
        fail(f"{name}.dropout_rate", rate, "must lie in [0, 1)", "Pass e.g. 0.5.")
    if isinstance(model, APPNP):
        positive_int(f"{name}.num_steps", model.num_steps, minimum=0)
        if not (isinstance(model.alpha, int | float) and 0 < model.alpha <= 1):
            fail(f"{name}.alpha", model.alpha, "must lie in (0, 1]", "Pass e.g. 0.15.")
    return model


def model_config(model) -> dict:
    """The constructor arguments of a GCN/APPNP as a JSON-friendly dict (with its type name)."""
    fields = {
        f.name: getattr(model, f.name)
        for f in dataclasses.fields(model)
        if f.init and f.name not in ("parent", "name")
    }
    return {"type": type(model).__name__, "config": fields}


def model_from_config(config: dict) -> nn.Module:
    """Inverse of `model_config`."""
    kind = config.get("type") if isinstance(config, dict) else None
    if kind not in GRAPH_MODELS:
        fail("config['type']", kind, f"must be one of {tuple(GRAPH_MODELS)}", "Check the file.")
    return check_graph_model("model", GRAPH_MODELS[kind](**config.get("config", {})))


def graph_apply_fn(model, graph: jraph.GraphsTuple):
    """The deterministic `apply_fn(params, x) -> logits [N, C]` of `model` on the fixed `graph`.

    This is the contract of lrsjax.certify's graph kernels: `x` is a SparseBinary (any capacity)
    or a dense `[N, F]` array, the graph is closed over, dropout is off. The function is pure and
    can be jitted and vmapped over `x`.
    """
    check_graph_model("model", model)
    if not isinstance(graph, jraph.GraphsTuple):
        fail("graph", graph, "must be a jraph.GraphsTuple", "Build it with graph_to_jraph.")
    _num_nodes(graph)

    def apply_fn(params, x) -> jnp.ndarray:
        return model.apply(params, graph, x, training=False)

    return apply_fn


def init_graph_model(key, model, graph: jraph.GraphsTuple):
    """Fresh parameters of `model` for `graph` (initialised on an empty SparseBinary)."""
    key = check_key("key", key)
    check_graph_model("model", model)
    return model.init(key, graph, _empty_input())


def _empty_input() -> SparseBinary:
    return SparseBinary(
        rows=jnp.zeros(1, jnp.int32), cols=jnp.zeros(1, jnp.int32), valid=jnp.zeros(1, bool)
    )
