"""Stored certificates that pin "same key, same certificate" across refactors of the core.

Each case certifies a small model whose behaviour is known (a linear segmentation model on a
2x2 grid, a count-threshold graph model under clustered Bernoulli noise) and solves collective
certificates; `tests/test_fixtures.py` compares every array with `fixtures/certificates.npz`.

Regenerate only when a change is MEANT to alter certificates, and say why in the commit:

    python -m tests._fixtures --write
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import lrsjax
from lrsjax import collective, noise
from lrsjax._sparse import from_scipy

PATH = pathlib.Path(__file__).resolve().parent / "fixtures" / "certificates.npz"

# images: one linear base classifier per output, g_d(z) = [w_d . z + b_d > 0]
C, H, W = 1, 4, 4
D = H * W


def linear_model(params, z):
    weights, bias = params
    score = jnp.einsum("dchw,chw->d", weights, z) + bias
    return jnp.stack([-score, score], axis=-1).reshape(H, W, 2)


def _linear_problem():
    rng = np.random.default_rng(2024)
    weights = rng.normal(size=(D, C, H, W)) * 0.3
    bias = rng.normal(size=D) * 0.6
    x = rng.random((C, H, W))
    return x, (jnp.asarray(weights, jnp.float32), jnp.asarray(bias, jnp.float32))


# graphs: node i predicts 1 iff at least THRESHOLD[i] of its watched bits are on
NODES, FEATURES = 8, 4
CLUSTERS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
RANK = np.array([[0, 2, 3, 1], [1, 0, 2, 3], [3, 1, 0, 2], [2, 3, 1, 0]])
PLUS = np.array([0.005, 0.01, 0.02, 0.03])
MINUS = np.array([0.6, 0.7, 0.8, 0.9])
WATCH = np.array([2, 4, 6, 0, 7, 1, 3, 5])
THRESHOLD = np.array([0, 1, 0, 2, 0, 1, 0, 1])


def count_model(params, x):
    del params
    on = jax.ops.segment_sum(x.valid.astype(jnp.float32), x.rows, NODES)
    score = on[jnp.asarray(WATCH)] - jnp.asarray(THRESHOLD, jnp.float32) + 0.5
    return jnp.stack([-3.0 * score, 3.0 * score], axis=-1)


def dense_count_model(params, x):
    score = x.sum(axis=1)[jnp.asarray(WATCH)] - jnp.asarray(THRESHOLD, jnp.float32) + 0.5
    return jnp.stack([-3.0 * score, 3.0 * score], axis=-1)


def _graph_input():
    rng = np.random.default_rng(7)
    return (rng.random((NODES, FEATURES)) < 0.45).astype(np.float64)


def _certificate_arrays(prefix: str, cert) -> dict:
    out = {}
    for name in (
        "prediction", "abstain", "tested", "p_lower", "mu_lower", "zeta_upper", "radius",
        "binary_radius", "counts", "histogram", "select_votes", "sparse_grid",
    ):  # fmt: skip
        value = getattr(cert, name)
        if value is not None:
            out[f"{prefix}/{name}"] = np.asarray(value)
    if cert.base_certs is not None:
        out[f"{prefix}/eta"] = cert.base_certs.eta
        out[f"{prefix}/weights"] = cert.base_certs.weights
    return out


def compute() -> dict:
    """Every fixture array, computed with the current code."""
    out = {}
    x, params = _linear_problem()
    sm = noise.localized_gaussian((C, H, W), (2, 2), 0.25, 0.75)
    common = dict(n0=32, n=512, alpha=0.05, batch_size=64)
    budgets = np.array([0.05, 0.1, 0.2, 0.4])
    for name, kwargs in (
        ("gaussian", {}),
        ("gaussian_variance", dict(certificate="variance", num_bins=256)),
        ("gaussian_holm", dict(correction="holm", tau=0.7)),
    ):
        cert = lrsjax.certify(jax.random.key(0), linear_model, params, x, sm, **common, **kwargs)
        out.update(_certificate_arrays(name, cert))
        if name != "gaussian_holm":
            for mode in ("lp", "hull", "milp"):
                result = collective.certify_collective(cert.base_certs, budgets, mode=mode)
                out[f"{name}/collective_{mode}"] = np.asarray(result.certified)

    graph = _graph_input()
    sm = noise.clustered_bernoulli(CLUSTERS, RANK, PLUS, MINUS)
    cert = lrsjax.certify(
        jax.random.key(1), count_model, None, from_scipy(graph, capacity=24), sm,
        n0=64, n=1024, alpha=0.05, batch_size=128, num_features=FEATURES, num_bins=256,
    )  # fmt: skip
    out.update(_certificate_arrays("graph_variance", cert))
    graph_budgets = np.array([[0, 1], [0, 2], [0, 4], [1, 0]])
    for mode in ("lp", "milp"):
        result = collective.certify_collective(cert.base_certs, graph_budgets, mode=mode)
        out[f"graph_variance/collective_{mode}"] = np.asarray(result.certified)

    sm = noise.isotropic_bernoulli(NODES, 0.05, 0.3)
    cert = lrsjax.certify(
        jax.random.key(2), dense_count_model, None, graph, sm, n0=64, n=512, alpha=0.05,
        batch_size=128, certificate="neyman_pearson", max_flips=(2, 3),
    )  # fmt: skip
    out.update(_certificate_arrays("graph_sparse_smoothing", cert))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {PATH}")
    args = parser.parse_args()
    arrays = compute()
    for name, value in sorted(arrays.items()):
        print(f"{name:<40} {value.dtype} {value.shape}")
    if args.write:
        PATH.parent.mkdir(exist_ok=True)
        np.savez_compressed(PATH, **arrays)
        print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
