"""Graph loader, node splits, synthetic CSBM graphs and clusterings (lrsjax.data)."""

import pickle
from collections import deque

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from lrsjax.data import (
    Graph,
    load_npz_graph,
    metis_clusters,
    spectral_clusters,
    split_nodes,
    synthetic_graph,
)

# A tiny graph: component {0, 1, 2, 3} (with a one-way edge 0 -> 1, a self-loop at 2 and a
# weighted edge 2 - 3) and component {4, 5}.
_ADJ = np.zeros((6, 6))
_ADJ[0, 1] = 1.0
_ADJ[1, 2] = _ADJ[2, 1] = 1.0
_ADJ[2, 2] = 1.0
_ADJ[2, 3] = _ADJ[3, 2] = 2.0
_ADJ[4, 5] = _ADJ[5, 4] = 1.0
_ATTR = np.array(
    [
        [0.5, 0.0, 0.0],
        [0.0, 0.2, 0.0],
        [0.0, 0.0, 3.0],
        [1.0, 1.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 0.7, 0.0],
    ]
)
_LABELS = np.array([0, 1, 1, 0, 1, 0])
_NODE_NAMES = np.array(["a", "b", "c", "d", "e", "f"])


def _csr_parts(prefix, matrix):
    m = sp.csr_matrix(matrix)
    return {
        f"{prefix}.data": m.data,
        f"{prefix}.indices": m.indices,
        f"{prefix}.indptr": m.indptr,
        f"{prefix}.shape": np.array(m.shape),
    }


def _write(tmp_path, name="g.npz", **fields):
    path = tmp_path / name
    np.savez(path, **fields)
    return path


def _tiny(tmp_path, **extra):
    fields = {
        **_csr_parts("adj_matrix", _ADJ),
        **_csr_parts("attr_matrix", _ATTR),
        "labels": _LABELS,
        "node_names": _NODE_NAMES,
        "class_names": np.array(["x", "y"]),
        **extra,
    }
    return _write(tmp_path, **fields)


def _reference(binarize, symmetrize, largest_component, drop_self_loops):
    """Independent dense re-implementation of the loader's processing."""
    a = _ADJ.copy()
    x = _ATTR.copy()
    if binarize:
        a, x = (a != 0).astype(float), (x != 0).astype(float)
    if drop_self_loops:
        np.fill_diagonal(a, 0)
    if symmetrize:
        a = np.maximum(a, a.T)
    keep = np.arange(6)
    if largest_component:
        und = (a + a.T) != 0
        seen, best = set(), []
        for s in range(6):
            if s in seen:
                continue
            comp, queue = [], deque([s])
            seen.add(s)
            while queue:
                u = queue.popleft()
                comp.append(u)
                for v in np.flatnonzero(und[u]):
                    if v not in seen:
                        seen.add(v)
                        queue.append(v)
            if len(comp) > len(best):
                best = sorted(comp)
        keep = np.array(best)
    return a[np.ix_(keep, keep)], x[keep], keep


@pytest.mark.parametrize(
    "options",
    [
        dict(binarize=True, symmetrize=True, largest_component=True, drop_self_loops=True),
        dict(binarize=False, symmetrize=True, largest_component=True, drop_self_loops=True),
        dict(binarize=True, symmetrize=False, largest_component=True, drop_self_loops=True),
        dict(binarize=True, symmetrize=True, largest_component=True, drop_self_loops=False),
        dict(binarize=True, symmetrize=True, largest_component=False, drop_self_loops=True),
        dict(binarize=False, symmetrize=False, largest_component=False, drop_self_loops=False),
    ],
)
def test_loader_processing_matches_dense_reference(tmp_path, options):
    graph = load_npz_graph(_tiny(tmp_path), **options)
    adj, attr, keep = _reference(**options)
    assert isinstance(graph, Graph)
    np.testing.assert_array_equal(graph.adjacency.toarray(), adj)
    np.testing.assert_array_equal(graph.attributes.toarray(), attr)
    np.testing.assert_array_equal(graph.node_ids, keep)
    np.testing.assert_array_equal(graph.labels, _LABELS[keep])
    np.testing.assert_array_equal(graph.node_names, _NODE_NAMES[keep])
    assert graph.num_classes == 2 and graph.num_features == 3
    assert graph.unavailable == ()


def test_default_loader_drops_other_component_and_self_loop(tmp_path):
    graph = load_npz_graph(_tiny(tmp_path))
    assert graph.num_nodes == 4
    a = graph.adjacency.toarray()
    assert np.all(a == a.T) and np.all(np.diag(a) == 0) and set(np.unique(a)) <= {0.0, 1.0}


def test_loader_dense_attributes_and_sparse_labels(tmp_path):
    onehot = np.eye(2)[_LABELS]
    path = _write(
        tmp_path,
        **_csr_parts("adj_matrix", _ADJ),
        attr_matrix=_ATTR,
        **_csr_parts("labels", onehot),
    )
    graph = load_npz_graph(path, largest_component=False)
    np.testing.assert_array_equal(graph.labels, _LABELS)
    np.testing.assert_array_equal(graph.attributes.toarray(), _ATTR != 0)
    assert graph.node_names is None and graph.class_names is None


def test_loader_legacy_key_style(tmp_path):
    def legacy(prefix, matrix):
        return {
            k.replace(".", "_", 1).replace("_matrix", ""): v
            for k, v in _csr_parts(prefix, matrix).items()
        }

    fields = {**legacy("adj_matrix", _ADJ), **legacy("attr_matrix", _ATTR)}
    fields.update({f"labels_{k}": v for k, v in _csr_parts("x", np.eye(2)[_LABELS]).items()})
    fields = {k.replace("labels_x.", "labels_"): v for k, v in fields.items()}
    assert "adj_indptr" in fields and "labels_indptr" in fields
    graph = load_npz_graph(_write(tmp_path, **fields))
    adj, attr, keep = _reference(True, True, True, True)
    np.testing.assert_array_equal(graph.adjacency.toarray(), adj)
    np.testing.assert_array_equal(graph.attributes.toarray(), attr)
    np.testing.assert_array_equal(graph.labels, _LABELS[keep])


def test_loader_skips_object_arrays_without_unpickling(tmp_path, monkeypatch):
    path = _tiny(
        tmp_path,
        idx_to_node=np.array([{"a": 0}, {"b": 1}], dtype=object),
        metadata=np.array({"source": "test"}, dtype=object),
        attr_names=np.array(["u", None, "w"], dtype=object),
    )

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    real_load = np.load

    def checked_load(*args, **kwargs):
        assert kwargs.get("allow_pickle") is False
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", checked_load)
    graph = load_npz_graph(path)
    assert graph.unavailable == ("attr_names", "idx_to_node", "metadata")
    assert graph.attr_names is None
    assert graph.num_nodes == 4
    np.testing.assert_array_equal(graph.class_names, ["x", "y"])


def test_loader_required_object_array_is_a_clear_error(tmp_path):
    path = _tiny(tmp_path, labels=np.array([0, 1, 1, 0, 1, "z"], dtype=object))
    with pytest.raises(ValueError, match="`labels`.*object array"):
        load_npz_graph(path)


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_npz_graph(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable npz"):
        load_npz_graph(text)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        load_npz_graph(npy)
    no_attr = _write(tmp_path, "a.npz", **_csr_parts("adj_matrix", _ADJ), labels=_LABELS)
    with pytest.raises(ValueError, match="attr_matrix.data"):
        load_npz_graph(no_attr)
    no_labels = _write(
        tmp_path, "b.npz", **_csr_parts("adj_matrix", _ADJ), **_csr_parts("attr_matrix", _ATTR)
    )
    with pytest.raises(ValueError, match="`labels`"):
        load_npz_graph(no_labels)
    parts = _csr_parts("adj_matrix", _ADJ)
    del parts["adj_matrix.indptr"]
    partial = _write(tmp_path, "c.npz", **parts, attr_matrix=_ATTR, labels=_LABELS)
    with pytest.raises(ValueError, match="adj_matrix.indptr"):
        load_npz_graph(partial)
    short = _write(
        tmp_path,
        "d.npz",
        **_csr_parts("adj_matrix", _ADJ),
        attr_matrix=_ATTR[:5],
        labels=_LABELS,
    )
    with pytest.raises(ValueError, match="one row per node"):
        load_npz_graph(short)
    bad_shape = _csr_parts("adj_matrix", _ADJ)
    bad_shape["adj_matrix.shape"] = np.array([7, 7])
    wrong = _write(tmp_path, "e.npz", **bad_shape, attr_matrix=_ATTR, labels=_LABELS)
    with pytest.raises(ValueError, match="indptr"):
        load_npz_graph(wrong)


def test_real_cora_ml(shared_data_dir):
    path = shared_data_dir / "cora_ml.npz"
    if not path.is_file():
        pytest.skip("cora_ml.npz not present")
    raw = load_npz_graph(path, largest_component=False)
    assert (raw.num_nodes, raw.num_features, raw.num_classes) == (2995, 2879, 7)
    assert "metadata" in raw.unavailable
    graph = load_npz_graph(path)
    n_comp, _ = sp.csgraph.connected_components(graph.adjacency)
    assert n_comp == 1
    # Published size of the Cora-ML LCC (Bojchevski & Guennemann 2018): 2810 nodes, 7981 edges.
    assert graph.num_nodes == 2810 and graph.adjacency.nnz == 2 * 7981
    np.testing.assert_array_equal(graph.labels, raw.labels[graph.node_ids])
    assert (graph.attributes != raw.attributes[graph.node_ids]).nnz == 0
    assert set(np.unique(graph.attributes.data)) == {1.0}


def test_split_nodes_sizes_disjoint_deterministic():
    labels = np.repeat(np.arange(3), [50, 45, 60])
    train, val, test = split_nodes(jax.random.key(0), labels, train_per_class=5, val_per_class=7)
    assert np.all(np.bincount(labels[train]) == 5) and np.all(np.bincount(labels[val]) == 7)
    everything = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(everything), np.arange(labels.size))
    again = split_nodes(jax.random.key(0), labels, train_per_class=5, val_per_class=7)
    for a, b in zip((train, val, test), again):
        np.testing.assert_array_equal(a, b)
    other = split_nodes(jax.random.key(1), labels, train_per_class=5, val_per_class=7)
    assert not np.array_equal(other[0], train)


def test_split_nodes_errors():
    labels = np.array([0] * 30 + [1] * 10)
    with pytest.raises(ValueError, match="class 1 with only 10 nodes"):
        split_nodes(jax.random.key(0), labels)
    with pytest.raises(ValueError, match="`key`"):
        split_nodes(0, labels, train_per_class=2, val_per_class=2)


def test_synthetic_graph_properties_and_determinism():
    kwargs = dict(num_nodes=900, num_classes=3, num_features=60, average_degree=6.0, homophily=0.8)
    graph = synthetic_graph(jax.random.key(3), **kwargs)
    again = synthetic_graph(jax.random.key(3), **kwargs)
    other = synthetic_graph(jax.random.key(4), **kwargs)
    assert (graph.adjacency != again.adjacency).nnz == 0
    assert (graph.attributes != again.attributes).nnz == 0
    np.testing.assert_array_equal(graph.labels, again.labels)
    assert (graph.adjacency != other.adjacency).nnz > 0
    a = graph.adjacency
    assert (a != a.T).nnz == 0 and a.diagonal().sum() == 0 and set(np.unique(a.data)) == {1.0}
    assert set(np.unique(graph.attributes.data)) == {1.0}
    assert np.all(np.bincount(graph.labels) == 300)
    # Expected degree 6 and homophily 0.8 (about 2700 edges: a few standard errors of slack).
    assert abs(a.nnz / 900 - 6.0) < 0.5
    coo = sp.triu(a).tocoo()
    same = np.mean(graph.labels[coo.row] == graph.labels[coo.col])
    assert abs(same - 0.8) < 0.04


def _three_cliques(size, bridges):
    n = 3 * size
    a = np.zeros((n, n))
    for c in range(3):
        a[c * size : (c + 1) * size, c * size : (c + 1) * size] = 1
    for i, j in bridges:
        a[i, j] = a[j, i] = 1
    np.fill_diagonal(a, 0)
    return sp.csr_matrix(a), np.repeat(np.arange(3), size)


@pytest.mark.parametrize("size", [6, 150])  # dense eigh path, then scipy eigsh path
def test_spectral_clusters_recover_cliques(size):
    adjacency, truth = _three_cliques(size, bridges=[(0, size), (size + 1, 2 * size)])
    clusters = spectral_clusters(jax.random.key(0), adjacency, 3)
    np.testing.assert_array_equal(clusters, truth)  # canonical order: cluster of node 0 first


def test_spectral_clusters_partition_deterministic_and_non_empty():
    graph = synthetic_graph(jax.random.key(1), num_nodes=500, num_features=8)
    clusters = spectral_clusters(jax.random.key(5), graph.adjacency, 12)
    assert clusters.shape == (500,) and clusters.dtype == np.int64
    assert np.all(np.bincount(clusters, minlength=12) > 0) and clusters.max() == 11
    np.testing.assert_array_equal(
        clusters, spectral_clusters(jax.random.key(5), graph.adjacency, 12)
    )


def test_spectral_clusters_corner_cases():
    empty = sp.csr_matrix((10, 10))  # no edges: all embeddings degenerate, repair needed
    clusters = spectral_clusters(jax.random.key(0), empty, 4)
    assert np.all(np.bincount(clusters, minlength=4) > 0)
    np.testing.assert_array_equal(spectral_clusters(jax.random.key(0), empty, 1), np.zeros(10))
    np.testing.assert_array_equal(spectral_clusters(jax.random.key(0), empty, 10), np.arange(10))
    with pytest.raises(ValueError, match="num_clusters"):
        spectral_clusters(jax.random.key(0), empty, 11)
    with pytest.raises(ValueError, match="adjacency"):
        spectral_clusters(jax.random.key(0), np.zeros((3, 4)), 2)


def test_metis_clusters():
    pytest.importorskip("pymetis")
    adjacency, truth = _three_cliques(20, bridges=[(0, 20), (21, 40)])
    clusters = metis_clusters(jax.random.key(0), adjacency, 3)
    np.testing.assert_array_equal(clusters, truth)
    graph = synthetic_graph(jax.random.key(1), num_nodes=300, num_features=8)
    clusters = metis_clusters(jax.random.key(2), graph.adjacency, 7)
    assert np.all(np.bincount(clusters, minlength=7) > 0) and clusters.max() == 6
    np.testing.assert_array_equal(clusters, metis_clusters(jax.random.key(2), graph.adjacency, 7))
    empty = metis_clusters(jax.random.key(0), sp.csr_matrix((5, 5)), 4)
    assert np.all(np.bincount(empty, minlength=4) > 0)
