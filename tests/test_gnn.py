"""GCN/APPNP over jraph graphs, the sparse first layer, graph training and checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from lrsjax._sparse import SparseBinary, from_scipy, to_dense
from lrsjax.data import split_nodes, synthetic_graph
from lrsjax.models import (
    APPNP,
    GCN,
    SparseDense,
    graph_apply_fn,
    graph_to_jraph,
    init_graph_model,
)
from lrsjax.noise import isotropic_bernoulli
from lrsjax.training import (
    GraphTrainHistory,
    load_graph_model,
    save_graph_model,
    train_graph_model,
)


@pytest.fixture(autouse=True)
def strict_jax():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


def _a_hat(adjacency):
    """Dense reference D^-1/2 (A + I) D^-1/2."""
    a = np.asarray(adjacency, np.float64).copy()
    np.fill_diagonal(a, 1.0)
    d = a.sum(axis=1)
    return a / np.sqrt(d[:, None] * d[None, :])


def _dense_from_graph(graph_tuple, n):
    out = np.zeros((n, n))
    np.add.at(
        out,
        (np.asarray(graph_tuple.receivers), np.asarray(graph_tuple.senders)),
        np.asarray(graph_tuple.edges),
    )
    return out


def _tiny_case(seed=0, n=5, f=7):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < 0.5, 1)
    adjacency = (upper | upper.T).astype(float)
    x = (rng.random((n, f)) < 0.3).astype(np.float32)
    return adjacency, x


def _padded(x, extra):
    """SparseBinary of x with `extra` padding entries pointing at arbitrary positions."""
    packed = from_scipy(sp.csr_matrix(x))
    cap = packed.capacity + extra
    pad_rows = np.arange(extra, dtype=np.int32) % x.shape[0]
    pad_cols = np.arange(extra, dtype=np.int32) % x.shape[1]
    return SparseBinary(
        rows=jnp.concatenate([packed.rows, jnp.asarray(pad_rows)]),
        cols=jnp.concatenate([packed.cols, jnp.asarray(pad_cols)]),
        valid=jnp.concatenate([packed.valid, jnp.zeros(cap - packed.capacity, bool)]),
    )


def test_graph_to_jraph_is_normalised_adjacency():
    adjacency, _ = _tiny_case()
    adjacency[0, 0] = 1.0  # an existing self-loop is replaced, not doubled
    g = graph_to_jraph(sp.csr_matrix(adjacency))
    np.testing.assert_allclose(_dense_from_graph(g, 5), _a_hat(adjacency), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(g.nodes),
        _a_hat(adjacency).shape[0] * 0 + 1 + (adjacency - np.diag(np.diag(adjacency))).sum(1),
    )
    assert int(g.n_node[0]) == 5 and int(g.n_edge[0]) == g.senders.shape[0]
    # Hand-solved path 0 - 1 - 2: degrees (2, 3, 2), A_hat[0, 1] = 1 / sqrt(6).
    path = graph_to_jraph(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    dense = _dense_from_graph(path, 3)
    np.testing.assert_allclose(dense[0, 1], 1 / np.sqrt(6), rtol=1e-6)
    np.testing.assert_allclose(np.diag(dense), [0.5, 1 / 3, 0.5], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_first_layer_equals_dense(seed):
    _, x = _tiny_case(seed)
    layer = SparseDense(num_nodes=5, num_inputs=7, features=3)
    params = layer.init(jax.random.key(seed), jnp.asarray(x))
    params = jax.tree.map(lambda p: p + 0.1, params)  # nonzero bias too
    dense = np.asarray(x, np.float64) @ np.asarray(params["params"]["kernel"], np.float64)
    dense += np.asarray(params["params"]["bias"])
    sparse = layer.apply(params, _padded(x, extra=4))
    np.testing.assert_allclose(np.asarray(sparse), dense, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.apply(params, jnp.asarray(x))), dense, atol=1e-5)


def _numpy_gcn(params, a_hat, x):
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params["params"])
    h = x @ p["SparseDense_0"]["kernel"] + p["SparseDense_0"]["bias"]
    h = np.maximum(a_hat @ h, 0)
    h = h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    return a_hat @ h


def _numpy_appnp(params, a_hat, x, steps, alpha):
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params["params"])
    h = np.maximum(x @ p["SparseDense_0"]["kernel"] + p["SparseDense_0"]["bias"], 0)
    h0 = h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    h = h0
    for _ in range(steps):
        h = (1 - alpha) * a_hat @ h + alpha * h0
    return h


@pytest.mark.parametrize("kind", ["gcn", "appnp"])
def test_models_match_numpy_reference_and_apply_contract(kind):
    adjacency, x = _tiny_case(3)
    g = graph_to_jraph(sp.csr_matrix(adjacency))
    if kind == "gcn":
        model = GCN(num_features=7, num_classes=3, hidden_features=4)
    else:
        model = APPNP(num_features=7, num_classes=3, hidden_features=4, num_steps=3, alpha=0.2)
    params = init_graph_model(jax.random.key(0), model, g)
    params = jax.tree.map(lambda p: p + 0.05, params)
    apply_fn = graph_apply_fn(model, g)
    sparse_x = _padded(x, extra=3)
    logits = apply_fn(params, sparse_x)
    assert logits.shape == (5, 3) and logits.dtype == jnp.float32
    a_hat, x64 = _a_hat(adjacency), x.astype(np.float64)
    expected = (
        _numpy_gcn(params, a_hat, x64)
        if kind == "gcn"
        else _numpy_appnp(params, a_hat, x64, 3, 0.2)
    )
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(apply_fn(params, jnp.asarray(x))), expected, atol=1e-5)
    # jit + vmap over a batch of sparse samples, deterministic (no dropout).
    batch = jax.tree.map(lambda a: jnp.stack([a, a]), sparse_x)
    batched = jax.jit(jax.vmap(apply_fn, in_axes=(None, 0)))(params, batch)
    np.testing.assert_allclose(np.asarray(batched[1]), expected, rtol=1e-5, atol=1e-5)


def test_one_node_no_edges():
    x = np.array([[1.0, 0.0, 1.0]], np.float32)
    lonely = graph_to_jraph(sp.csr_matrix((1, 1)))
    assert lonely.senders.shape == (1,)  # only the self-loop, coefficient 1
    np.testing.assert_allclose(np.asarray(lonely.edges), [1.0])
    for model in (GCN(3, 2, hidden_features=4), APPNP(3, 2, hidden_features=4)):
        params = init_graph_model(jax.random.key(1), model, lonely)
        params = jax.tree.map(lambda p: p + 0.1, params)
        out = graph_apply_fn(model, lonely)(params, from_scipy(sp.csr_matrix(x)))
        # A_hat = [[1]]: both reduce to the MLP relu(x W1 + b1) W2 + b2.
        expected = _numpy_appnp(params, np.ones((1, 1)), x.astype(np.float64), 0, 0.5)
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)
    # Without self-loops a node with no edges receives nothing.
    bare = graph_to_jraph(sp.csr_matrix((1, 1)), add_self_loops=False)
    assert bare.senders.shape == (0,)
    model = GCN(3, 2, hidden_features=4)
    params = init_graph_model(jax.random.key(1), model, bare)
    np.testing.assert_array_equal(np.asarray(graph_apply_fn(model, bare)(params, x)), 0.0)


def test_training_flips_come_from_the_certification_sampler_with_exact_marginals():
    # train_graph_model draws its augmentation with the sampler of isotropic_bernoulli's plug-in
    rng = np.random.default_rng(0)
    x = (rng.random((6, 5)) < 0.4).astype(np.float32)
    base = from_scipy(sp.csr_matrix(x))
    p_plus, p_minus, samples = 0.1, 0.3, 3000
    flip_noise = isotropic_bernoulli(6, p_plus, p_minus)
    sampler = flip_noise.prepare(flip_noise, base, num_features=5)
    params = jax.tree.map(lambda leaf: leaf[0], sampler.per_group)
    keys = jax.random.split(jax.random.key(0), samples)
    # lax.map compiles the sampler once (a vmapped sampler takes several times longer to compile).
    flip = jax.jit(
        lambda ks: jax.lax.map(
            lambda k: sampler.sample(sampler.config, k, sampler.x, params, sampler.common)[0], ks
        )
    )
    out = flip(keys)
    lin = np.where(np.asarray(out.valid), np.asarray(out.rows) * 5 + np.asarray(out.cols), -1)
    for row in lin[:50]:  # valid entries never repeat a position
        kept = row[row >= 0]
        assert kept.size == np.unique(kept).size
    dense = np.asarray(jax.vmap(lambda s: to_dense(s, 6, 5))(out))
    assert dense.max() <= 1.0
    freq = dense.mean(axis=0)
    expected = np.where(x == 1, 1 - p_minus, p_plus)
    sd = np.sqrt(expected * (1 - expected) / samples)
    assert np.all(np.abs(freq - expected) < 5 * sd + 1e-9)


def _train(model, graph, train, val):
    return train_graph_model(
        jax.random.key(2),
        model,
        graph,
        train,
        val,
        epochs=40,
        learning_rate=0.02,
        noise_plus=0.02,
        noise_minus=0.3,
        patience=40,
    )


def test_training_raises_validation_accuracy_without_recompiling(tmp_path):
    graph = synthetic_graph(
        jax.random.key(0), num_nodes=240, num_classes=3, num_features=48, signal_density=0.15
    )
    train, val, test = split_nodes(jax.random.key(1), graph.labels, train_per_class=10)
    model = GCN(graph.num_features, graph.num_classes, hidden_features=16)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes python floats and int32
        params, history = _train(model, graph, train, val)
    assert isinstance(history, GraphTrainHistory)
    assert history.num_step_traces == 1 and history.epochs_run == 40
    assert history.selected_on == "noisy"  # "auto" with noise: chosen on the noisy draws
    assert history.best_val_accuracy == history.noisy_val_accuracy.max()
    assert history.best_val_accuracy == history.noisy_val_accuracy[history.best_epoch]
    assert history.best_val_accuracy >= history.noisy_val_accuracy[0] + 0.15
    assert history.best_val_accuracy > 0.6  # chance is 1/3
    assert history.val_accuracy.max() > 0.6
    # The returned parameters are the best epoch's: their clean validation accuracy matches.
    g = graph_to_jraph(graph.adjacency)
    logits = graph_apply_fn(model, g)(params, from_scipy(graph.attributes))
    val_acc = np.mean(np.argmax(np.asarray(logits), 1)[val] == graph.labels[val])
    np.testing.assert_allclose(val_acc, history.val_accuracy[history.best_epoch], atol=1e-6)

    path = tmp_path / "gcn.msgpack"
    save_graph_model(path, model, params, extra={"val_accuracy": float(val_acc)})
    loaded_model, loaded, metadata = load_graph_model(path)
    assert loaded_model == model and metadata["extra"] == {"val_accuracy": float(val_acc)}
    again = graph_apply_fn(loaded_model, g)(loaded, from_scipy(graph.attributes))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(logits))


@pytest.mark.slow  # the U-Net test pins the same property in the fast suite
def test_training_with_a_progress_bar_gives_the_same_parameters(monkeypatch, capsys):
    graph = synthetic_graph(jax.random.key(0), num_nodes=60, num_classes=2, num_features=12)
    train, val, _ = split_nodes(jax.random.key(1), graph.labels, train_per_class=5)
    model = GCN(graph.num_features, graph.num_classes, hidden_features=8)
    settings = dict(epochs=12, patience=12)  # no noise: less to compile
    monkeypatch.setenv("LRSJAX_PROGRESS", "1")  # draw the bar although stderr is captured
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes python floats and int32
        plain, plain_history = train_graph_model(
            jax.random.key(2), model, graph, train, val, **settings
        )
        assert capsys.readouterr().err == ""  # progress is off unless asked for
        shown, shown_history = train_graph_model(
            jax.random.key(2), model, graph, train, val, progress=True, **settings
        )
    jax.tree.map(np.testing.assert_array_equal, shown, plain)
    np.testing.assert_array_equal(shown_history.train_loss, plain_history.train_loss)
    assert shown_history.best_epoch == plain_history.best_epoch
    err = capsys.readouterr().err
    assert "train GCN" in err and "12/12" in err and "compile=" in err


def test_checkpoint_and_training_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete"):
        load_graph_model(tmp_path / "none.msgpack")
    graph = synthetic_graph(jax.random.key(0), num_nodes=40, num_classes=2, num_features=8)
    with pytest.raises(ValueError, match="num_features"):
        train_graph_model(jax.random.key(0), GCN(9, 2), graph, [0, 1], [2, 3], epochs=1)
    with pytest.raises(ValueError, match="disjoint"):
        train_graph_model(jax.random.key(0), GCN(8, 2), graph, [0, 1], [1, 3], epochs=1)
    with pytest.raises(ValueError, match="noise_plus"):
        train_graph_model(jax.random.key(0), GCN(8, 2), graph, [0], [1], epochs=1, noise_plus=1.0)
    with pytest.raises(ValueError, match="noise_plus.*1e-6"):
        train_graph_model(
            jax.random.key(0), GCN(8, 2), graph, [0], [1], epochs=1, noise_plus=0.0, noise_minus=0.5
        )
    with pytest.raises(ValueError, match="select_on"):
        train_graph_model(jax.random.key(0), GCN(8, 2), graph, [0], [1], select_on="noisy")
    with pytest.raises(ValueError, match="model"):
        graph_apply_fn(object(), graph_to_jraph(graph.adjacency))
    appnp = APPNP(8, 2, num_steps=2)
    params = init_graph_model(jax.random.key(0), appnp, graph_to_jraph(graph.adjacency))
    save_graph_model(tmp_path / "a.msgpack", appnp, params)
    model, loaded, _ = load_graph_model(tmp_path / "a.msgpack")
    assert model == appnp
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
