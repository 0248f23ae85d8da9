"""Certify a node classifier on a graph file in a few lines.

    python examples/certify_node_classifier.py --graph=../shared/data/cora_ml.npz
    python examples/certify_node_classifier.py            # built-in synthetic graph, fast

Trains APPNP with sparse noise, clusters the graph, certifies the held-out test nodes with
localized (clustered) Bernoulli smoothing and the variance-constrained certificate, and solves the
exact collective MILP for a few (additions, deletions) budgets.
"""

import argparse

import jax
import numpy as np

import lrsjax
from lrsjax import _sparse, collective, data, models, noise, training


def main(args):
    key = jax.random.PRNGKey(args.seed)
    k_graph, k_split, k_train, k_cluster, k_cert = jax.random.split(key, 5)
    graph = data.load_npz_graph(args.graph) if args.graph else data.synthetic_graph(k_graph)
    train_idx, val_idx, test_idx = data.split_nodes(k_split, graph.labels)
    model = models.APPNP(num_features=graph.num_features, num_classes=graph.num_classes)
    params, _ = training.train_graph_model(
        k_train, model, graph, train_idx, val_idx, epochs=args.epochs, noise_plus=0.01,
        noise_minus=0.6,
    )  # fmt: skip
    apply_fn = models.graph_apply_fn(model, models.graph_to_jraph(graph.adjacency))

    clusters = data.spectral_clusters(k_cluster, graph.adjacency, args.clusters)
    ranks = noise.affinity_ranks(graph.adjacency, clusters)
    theta_plus, theta_minus = noise.rank_flip_probabilities(
        args.clusters, (0.01, 0.01), (0.6, 0.95)
    )
    smoothing = noise.clustered_bernoulli(clusters, ranks, theta_plus, theta_minus)
    cert = lrsjax.certify(
        k_cert, apply_fn, params, _sparse.from_scipy(graph.attributes), smoothing,
        n0=args.n0, n=args.n, alpha=0.01, batch_size=64, outputs=test_idx,
        num_features=graph.num_features,
    )  # fmt: skip
    budgets = np.array([[0, 0], [0, 5], [0, 10], [1, 0], [2, 0]])
    correct = cert.tested & ~cert.abstain & (cert.prediction == graph.labels)
    result = collective.certify_collective(cert.base_certs, budgets, targets=correct, mode="milp")
    print(f"{correct.sum()} of {len(test_idx)} test nodes correct and not abstained")
    for (adds, dels), count in zip(budgets, result.certified):
        print(f"additions {adds}, deletions {dels:2d}: {int(count)} certified correct")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="", help="standard sparse-graph .npz file")
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
