"""Training GCN/APPNP node classifiers with Bernoulli attribute-flip augmentation (optax).

Smoothed graph classifiers see attribute matrices with random flips (0 -> 1 with `theta_plus`,
1 -> 0 with `theta_minus`); training on such samples makes the base model accurate under that
noise. The flips come from the sampler of `lrsjax.noise.isotropic_bernoulli`, the very sampler
that certification uses (exact Poisson thinning on sparse attributes).
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
import scipy.sparse as sp

from lrsjax import _progress
from lrsjax._checks import as_int_array, fail, one_of, positive_int
from lrsjax._keys import check_key
from lrsjax._sparse import SparseBinary, from_scipy
from lrsjax.data import Graph
from lrsjax.models import (
    check_graph_model,
    gnn_config,
    gnn_from_config,
    graph_to_jraph,
    init_graph_model,
)
from lrsjax.noise import isotropic_bernoulli
from lrsjax.training._checkpoint import load_checkpoint, read_metadata, save_checkpoint

_FORMAT = "lrsjax-graph-model/1"


class GraphTrainHistory(NamedTuple):
    """Per-epoch record of `train_graph_model` (E = epochs actually run).

    Fields:
      train_loss: float64 `[E]`, mean cross-entropy on the (noisy, dropout) training nodes.
      train_accuracy: float64 `[E]`, accuracy on the same noisy training forward pass.
      val_loss: float64 `[E]`, clean validation cross-entropy (no noise, no dropout).
      val_accuracy: float64 `[E]`, clean validation accuracy.
      noisy_val_loss: float64 `[E]`, validation cross-entropy averaged over the fixed noisy
        validation draws (no dropout); NaN when training without noise.
      noisy_val_accuracy: float64 `[E]`, validation accuracy averaged over the same draws; NaN
        when training without noise.
      selected_on: "clean" or "noisy": which validation accuracy chose the returned parameters.
      best_epoch: epoch (0-based) whose parameters were returned.
      best_val_accuracy: the selection accuracy at `best_epoch`.
      epochs_run: E (smaller than `epochs` when early stopping triggered).
      wall_time_s: seconds spent in the training loop, compilation included.
      num_step_traces: how often the training step was traced (1: no recompilation per epoch).
    """

    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    noisy_val_loss: np.ndarray
    noisy_val_accuracy: np.ndarray
    selected_on: str
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    wall_time_s: float
    num_step_traces: int


class _Data(NamedTuple):
    graph: jraph.GraphsTuple
    x: SparseBinary
    val_x: SparseBinary  # fixed noisy validation draws, leading axis [S] (S >= 1)
    labels: jnp.ndarray  # int32 [N]
    train_idx: jnp.ndarray  # int32 [n_train]
    val_idx: jnp.ndarray  # int32 [n_val]


def train_graph_model(
    key,
    model,
    graph: Graph,
    train_idx,
    val_idx,
    *,
    epochs: int = 1000,
    learning_rate: float = 0.01,
    weight_decay: float = 5e-4,
    noise_plus: float = 0.0,
    noise_minus: float = 0.0,
    patience: int = 100,
    select_on: str = "auto",
    val_noise_samples: int = 4,
    progress: bool = False,
):
    """Trains `model` (GCN or APPNP) on the nodes `train_idx` of `graph`; early-stops on `val_idx`.

    Every epoch is one full-batch Adam step (optax; L2 weight decay `weight_decay` added to the
    gradient of every parameter, as in PyTorch's Adam) on the cross-entropy of the training nodes,
    with dropout and, if `noise_plus` or `noise_minus` is positive, a fresh Bernoulli flip of the
    attribute matrix: every 0 becomes 1 with probability `noise_plus` and every 1 becomes 0 with
    probability `noise_minus`, independently.

    After every epoch the model (no dropout) is evaluated on the validation nodes, on the clean
    attributes and, when training with noise, on `val_noise_samples` noisy draws fixed before
    training (the same draws every epoch, so epochs are compared fairly). The parameters of the
    epoch with the best selection accuracy (ties: lower loss of the same kind, then earlier) are
    returned, and training stops after `patience` epochs without improvement. `select_on`:
    "clean", "noisy", or "auto" (= "noisy" when training with noise, else "clean"): a smoothed
    classifier only ever sees noisy inputs, and under strong noise the clean accuracy peaks in the
    first epochs, before the model has adapted to the noise. The training step is jitted once (the
    graph and the attributes are arguments, not constants): no recompilation per epoch.

    Args:
      key: JAX PRNG key (initialisation, noise and dropout).
      model: an lrsjax.models GCN or APPNP with `num_features == graph.num_features`.
      graph: an lrsjax.data Graph (0/1 attributes).
      train_idx, val_idx: disjoint int node indices; never certify these (they pick the model).
      epochs: maximal number of epochs; learning_rate: Adam step size; weight_decay: L2 factor.
      noise_plus, noise_minus: flip probabilities of the augmentation: both in (0, 1), or both 0
        for clean training.
      patience: epochs without validation improvement before stopping.
      select_on: "auto", "clean" or "noisy" (see above; "noisy" needs noise).
      val_noise_samples: number of fixed noisy validation draws (used only with noise).
      progress: draw a progress bar on stderr (epochs/s after compilation, training loss,
        selection accuracy; see `lrsjax._progress` for when it is drawn). It never changes the
        result.
    Returns:
      (params, history): the best parameters and a `GraphTrainHistory`.
    """
    key = check_key("key", key)
    check_graph_model("model", model)
    if not isinstance(graph, Graph):
        fail("graph", graph, "must be an lrsjax.data.Graph", "Load or generate one first.")
    n, f = graph.num_nodes, graph.num_features
    if model.num_features != f:
        fail(
            "model.num_features",
            model.num_features,
            f"must equal graph.num_features ({f})",
            "Build the model with num_features=graph.num_features.",
        )
    labels = as_int_array("graph.labels", graph.labels, ndim=1)
    if labels.size and labels.max() >= model.num_classes:
        fail(
            "model.num_classes",
            model.num_classes,
            f"must exceed the largest label ({labels.max()})",
            "Build the model with num_classes=graph.num_classes.",
        )
    train_idx = _node_index("train_idx", train_idx, n)
    val_idx = _node_index("val_idx", val_idx, n)
    if np.intersect1d(train_idx, val_idx).size:
        fail("val_idx", val_idx, "must be disjoint from train_idx", "Use split_nodes.")
    epochs = positive_int("epochs", epochs)
    patience = positive_int("patience", patience)
    learning_rate = _nonnegative("learning_rate", learning_rate, strict=True)
    weight_decay = _nonnegative("weight_decay", weight_decay)
    noise_plus = _flip_probability("noise_plus", noise_plus)
    noise_minus = _flip_probability("noise_minus", noise_minus)
    noisy = noise_plus > 0 or noise_minus > 0
    select_on = one_of("select_on", select_on, ("auto", "clean", "noisy"))
    if select_on == "auto":
        select_on = "noisy" if noisy else "clean"
    if select_on == "noisy" and not noisy:
        fail("select_on", select_on, "needs noise_plus or noise_minus > 0", "Use 'clean'.")
    val_noise_samples = positive_int("val_noise_samples", val_noise_samples)
    attributes = sp.csr_matrix(graph.attributes)
    if attributes.nnz and not np.all(attributes.data == 1):
        fail(
            "graph.attributes",
            attributes,
            "must be a 0/1 matrix",
            "Load the graph with binarize=True.",
        )
    if n * f >= 2**31 - 1:
        fail("graph", (n, f), "must have N * F < 2**31 (int32 positions)", "Use a smaller graph.")

    if noisy and (noise_plus == 0 or noise_minus == 0):
        zero = "noise_plus" if noise_plus == 0 else "noise_minus"
        fail(
            zero,
            0.0,
            "must be in (0, 1) when the other flip probability is positive (the sampler of "
            "lrsjax.noise, shared with certification, needs both)",
            f"Pass a tiny positive {zero} such as 1e-6, or 0 for both (clean training).",
        )
    clean_x = from_scipy(attributes)
    if noisy:
        flip_noise = isotropic_bernoulli(n, noise_plus, noise_minus)
        sampler = flip_noise.prepare(flip_noise, clean_x, num_features=f)
        flip_params = jax.tree.map(lambda leaf: leaf[0], sampler.per_group)

    def flip(k, x):
        # an overflow of the addition slots (probability < 1e-12 per draw) only caps the additions
        noisy_x, _ = sampler.sample(sampler.config, k, x, flip_params, sampler.common)
        return noisy_x

    k_init, k_steps, k_val = jax.random.split(key, 3)
    if noisy:
        val_keys = jax.random.split(k_val, val_noise_samples)
        val_x = jax.jit(lambda ks, x: jax.lax.map(lambda k: flip(k, x), ks))(val_keys, clean_x)
    else:
        val_x = jax.tree.map(lambda a: a[None], clean_x)
    data = _Data(
        graph=graph_to_jraph(graph.adjacency),
        x=clean_x,
        val_x=val_x,
        labels=jnp.asarray(labels, jnp.int32),
        train_idx=jnp.asarray(train_idx, jnp.int32),
        val_idx=jnp.asarray(val_idx, jnp.int32),
    )
    tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))
    traces = [0]

    def loss_and_accuracy(params, graph_tuple, x, labels, index, dropout_key):
        rngs = None if dropout_key is None else {"dropout": dropout_key}
        logits = model.apply(params, graph_tuple, x, training=rngs is not None, rngs=rngs)
        logits, target = logits[index], labels[index]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
        accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == target).astype(jnp.float32))
        return loss, accuracy

    @jax.jit
    def train_step(params, opt_state, step_key, data: _Data):
        traces[0] += 1  # runs only while tracing
        k_noise, k_dropout = jax.random.split(step_key)
        x = flip(k_noise, data.x) if noisy else data.x
        grad_fn = jax.value_and_grad(loss_and_accuracy, has_aux=True)
        (loss, accuracy), grads = grad_fn(
            params, data.graph, x, data.labels, data.train_idx, k_dropout
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy

    @jax.jit
    def evaluate(params, data: _Data):
        def on(x):
            return loss_and_accuracy(params, data.graph, x, data.labels, data.val_idx, None)

        clean = on(data.x)
        if not noisy:
            return (*clean, jnp.nan, jnp.nan)
        losses, accuracies = jax.lax.map(on, data.val_x)
        return (*clean, losses.mean(), accuracies.mean())

    start = time.perf_counter()
    params = init_graph_model(k_init, model, data.graph)
    opt_state = tx.init(params)
    records = []
    criterion = (3, 2) if select_on == "noisy" else (1, 0)  # (accuracy, loss) columns
    best = (params, -1.0, np.inf, 0)  # params, selection accuracy, its loss, epoch
    desc = f"train {type(model).__name__}"
    bar = _progress.bar(epochs, desc=desc, unit="epoch", enabled=progress)
    for epoch in range(epochs):
        params, opt_state, loss, accuracy = train_step(
            params, opt_state, jax.random.fold_in(k_steps, epoch), data
        )
        val = [float(v) for v in evaluate(params, data)]
        records.append((float(loss), float(accuracy), *val))
        score, score_loss = val[criterion[0]], val[criterion[1]]
        if score > best[1] or (score == best[1] and score_loss < best[2]):
            best = (params, score, score_loss, epoch)
        _progress.training_step(bar, epoch, records[-1][0], **{f"val_{select_on}": f"{score:.3f}"})
        if epoch - best[3] >= patience:
            break
    bar.close()
    wall = time.perf_counter() - start
    table = np.asarray(records, np.float64).reshape(-1, 6)
    history = GraphTrainHistory(
        train_loss=table[:, 0],
        train_accuracy=table[:, 1],
        val_loss=table[:, 2],
        val_accuracy=table[:, 3],
        noisy_val_loss=table[:, 4],
        noisy_val_accuracy=table[:, 5],
        selected_on=select_on,
        best_epoch=int(best[3]),
        best_val_accuracy=float(best[1]),
        epochs_run=int(table.shape[0]),
        wall_time_s=float(wall),
        num_step_traces=int(traces[0]),
    )
    return best[0], history


def _node_index(name, index, n) -> np.ndarray:
    index = as_int_array(name, index, ndim=1)
    if index.size == 0:
        fail(name, index, "must not be empty", "Pass node indices, e.g. from split_nodes.")
    if index.min() < 0 or index.max() >= n:
        fail(name, index, f"must hold node indices in [0, {n})", "Use indices of this graph.")
    if np.unique(index).size != index.size:
        fail(name, index, "must not repeat a node", "Pass unique indices.")
    return index


def _nonnegative(name, value, *, strict=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(name, value, "must be a number", "Pass a float.")
    if not math.isfinite(v) or v < 0 or (strict and v == 0):
        fail(name, value, "must be a finite number " + ("> 0" if strict else ">= 0"), "Fix it.")
    return v


def _flip_probability(name, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(name, value, "must be a number", "Pass a probability such as 0.01.")
    if not (0 <= v < 1):
        fail(name, value, "must lie in [0, 1)", "Pass a probability such as 0.01.")
    return v


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_graph_model(path, model, params, extra: dict | None = None) -> None:
    """Saves `params` and the model's configuration (and JSON-able `extra`) without pickle.

    Writes `path` (flax msgpack) and `path.json` (format tag, model type and constructor
    arguments, `extra`) atomically via lrsjax.training.save_checkpoint.
    """
    check_graph_model("model", model)
    metadata = {"format": _FORMAT, "model": gnn_config(model), "extra": extra or {}}
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as err:
        fail("extra", extra, f"must be JSON-serialisable ({err})", "Pass plain numbers/strings.")
    save_checkpoint(path, params, metadata)


def load_graph_model(path):
    """Loads a checkpoint written by `save_graph_model`.

    Returns:
      (model, params, metadata): the rebuilt GCN/APPNP, its parameters (shapes checked against
      the model), and the metadata dict (`metadata["extra"]` is what was saved as `extra`).
    """
    path = pathlib.Path(path)
    meta_path = path.with_name(path.name + ".json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(
            f"`path` {str(path)!r} is not a complete graph-model checkpoint (need {path.name} and "
            f"{meta_path.name}). Train and save a model first."
        )
    metadata = read_metadata(meta_path)
    if metadata.get("format") != _FORMAT:
        fail(
            "path",
            str(path),
            f"must be a checkpoint written by save_graph_model (format {_FORMAT!r})",
            "Use load_checkpoint for other checkpoints.",
        )
    model = gnn_from_config(metadata["model"])
    tiny = graph_to_jraph(sp.csr_matrix((1, 1), dtype=np.float32))
    target = jax.eval_shape(lambda k: init_graph_model(k, model, tiny), jax.random.key(0))
    params, metadata = load_checkpoint(path, target)
    expected = jax.tree.map(lambda s: tuple(s.shape), target)
    found = jax.tree.map(lambda a: tuple(np.shape(a)), params)
    if expected != found:
        fail("path", str(path), "holds parameters whose shapes do not match its model", "")
    params = jax.tree.map(jnp.asarray, params)
    return model, params, metadata
