"""Benchmarks of lrsjax.sampling: kernel overhead, memory vs number of samples, sparse noise.

  python benchmarks/sampling.py [--graph_path PATH] [--rounds 5]

1. Throughput: a small flax conv net on 3x64x64 inputs. Samples/s through certify's kernel
   (`make_counter`, votes) against the bare jitted model on pre-generated noise of the same batch
   size (target ratio >= 0.9). Isotropic (1 group) and a 3x5 grid (15 groups sharing one normal
   draw per batch; throughput counts model evaluations, i.e. samples x groups).
2. Peak memory (ru_maxrss of separate subprocesses) with n = 1000 and n = 100000 samples, same batch
   size (target: within 10%).
3. Sparse binary noise on Cora-ML: a 2-layer GCN whose first layer is a segment_sum over the
   SparseBinary ones, with the sparse Poisson-thinning sampler, against a dense Bernoulli mask over
   N x F and a dense first layer (target ratio >= 10x). Skipped if the data file is missing.

Times are wall-clock on whatever machine runs this; on a shared machine they are pessimistic.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import noise, sampling
from lrsjax.data import from_scipy

DEFAULT_GRAPH = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cora_ml.npz"
IMAGE = (3, 64, 64)
NUM_CLASSES = 5


class SmallConvNet(nn.Module):
    """A few 3x3 conv layers and a 1x1 classifier: per-pixel logits [H, W, classes]."""

    widths: tuple = (16, 32, 16)

    @nn.compact
    def __call__(self, x):  # x [H, W, C]
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x))
        return nn.Conv(NUM_CLASSES, (1, 1))(x)


def conv_apply_fn(module):
    def apply_fn(params, x):  # one example [C, H, W] -> [H, W, classes]
        return module.apply(params, jnp.transpose(x, (1, 2, 0))[None])[0]

    return apply_fn


def _best_times(fns: dict, rounds: int) -> dict:
    """Best wall time of one call of each function, calls interleaved round by round.

    Interleaving shares a busy machine's load fairly between the variants; the best of several
    rounds is the least disturbed measurement. Every function blocks until its result is ready.
    """
    for fn in fns.values():
        fn()  # warm-up and compilation
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_throughput(rounds: int, batch_size: int) -> None:
    module = SmallConvNet()
    params = module.init(jax.random.key(0), jnp.zeros((*IMAGE[1:], IMAGE[0])))
    apply_fn = conv_apply_fn(module)
    x = jax.random.uniform(jax.random.key(1), IMAGE)
    num_batches = 8
    # pre-generated noisy inputs: a stack of distinct batches
    noisy = x + 0.25 * jax.random.normal(jax.random.key(2), (num_batches, batch_size, *IMAGE))
    model = jax.vmap(apply_fn, in_axes=(None, 0))
    bare = jax.jit(model)

    def run_bare():  # one jitted call per batch (what a hand-written loop does)
        for i in range(num_batches):
            out = bare(params, noisy[i])
        out.block_until_ready()

    @jax.jit
    def looped(params, noisy):  # the same batches in one compiled loop, argmax kept only
        def body(i, acc):
            return acc + jnp.argmax(model(params, noisy[i]), axis=-1).sum()

        return jax.lax.fori_loop(0, num_batches, body, jnp.zeros((), jnp.int32))

    @jax.jit
    def normals(key):  # the kernel's noise alone: one standard-normal batch per batch
        def body(i, acc):
            draw = noise.standard_normal(jax.random.fold_in(key, i), (batch_size, *IMAGE))
            return acc + draw[0, 0, 0, 0]

        return jax.lax.fori_loop(0, num_batches, body, jnp.zeros(()))

    fns = {
        "bare (jitted call per batch)": run_bare,
        "bare (one jitted loop)": lambda: looped(params, noisy).block_until_ready(),
        "normal draws alone": lambda: normals(jax.random.key(4)).block_until_ready(),
    }
    per_call = {name: num_batches * batch_size for name in fns}
    for name, sm in (
        ("isotropic, 1 group", noise.isotropic_gaussian(IMAGE, 0.25)),
        ("3x5 grid, 15 groups", noise.localized_gaussian(IMAGE, (3, 5), 0.15, 1.0)),
    ):
        count = sampling.make_counter(
            apply_fn, sm, mode="votes", batch_size=batch_size, num_classes=NUM_CLASSES
        )
        batches = max(1, num_batches // sm.num_groups)
        keys = iter(jax.random.split(jax.random.key(3), 10**4))
        label = f"certify kernel ({name})"
        fns[label] = lambda c=count, b=batches, k=keys: c(
            next(k), params, x, b * batch_size
        ).counts.block_until_ready()
        per_call[label] = batches * batch_size * sm.num_groups  # model evaluations
    best = _best_times(fns, rounds)
    rate = {name: per_call[name] / best[name] for name in fns}
    print(
        f"[throughput] SmallConvNet{module.widths} on {IMAGE}, batch_size={batch_size}, "
        f"best of {rounds} interleaved calls of {num_batches} batches"
    )
    for name in fns:
        print(f"  {name:42s} {rate[name]:8.1f} samples/s")
    fastest_bare = max(rate["bare (jitted call per batch)"], rate["bare (one jitted loop)"])
    for name in fns:
        if name.startswith("certify"):
            print(f"  ratio {name} / fastest bare: {rate[name] / fastest_bare:.3f}")


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Conv(NUM_CLASSES, (1, 1))(x)


def memory_child(num_samples: int, batch_size: int) -> None:
    """Runs the kernel once with num_samples and prints the peak RSS (KiB)."""
    module = TinyNet()
    params = module.init(jax.random.key(0), jnp.zeros((*IMAGE[1:], IMAGE[0])))
    sm = noise.isotropic_gaussian(IMAGE, 0.25)
    count = sampling.make_counter(
        conv_apply_fn(module), sm, mode="votes", batch_size=batch_size, num_classes=NUM_CLASSES
    )
    x = jax.random.uniform(jax.random.key(1), IMAGE)
    start = time.perf_counter()
    votes = np.asarray(count(jax.random.key(2), params, x, num_samples).counts)
    assert np.all(votes.sum(-1) == num_samples)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"PEAK_RSS_KIB {peak} SECONDS {elapsed:.1f}")


def bench_memory(batch_size: int) -> None:
    print(f"[memory] TinyNet on {IMAGE}, isotropic, batch_size={batch_size}, separate processes")
    peaks = {}
    for n in (1000, 100000):
        out = subprocess.run(
            [sys.executable, __file__, "--memory_child", str(n), "--batch_size", str(batch_size)],
            capture_output=True,
            text=True,
            check=True,
        )
        line = [s for s in out.stdout.splitlines() if s.startswith("PEAK_RSS_KIB")][-1]
        _, peak, _, seconds = line.split()
        peaks[n] = int(peak)
        print(f"  n = {n:6d}: peak RSS {int(peak) / 1024:8.1f} MiB ({seconds} s in the kernel)")
    growth = peaks[100000] / peaks[1000] - 1
    print(f"  growth from n = 1000 to n = 100000: {100 * growth:+.2f}%")


# ------------------------------------------------------------------------------------------------
# graphs
# ------------------------------------------------------------------------------------------------


def load_cora(path: pathlib.Path):
    import scipy.sparse as sp

    data = np.load(path, allow_pickle=False)

    def csr(prefix):
        return sp.csr_matrix(
            (data[f"{prefix}.data"], data[f"{prefix}.indices"], data[f"{prefix}.indptr"]),
            shape=tuple(data[f"{prefix}.shape"]),
        )

    attributes = csr("attr_matrix")
    attributes.data[:] = 1.0
    return csr("adj_matrix"), attributes


def gcn_propagation(adjacency):
    """Symmetric-normalised adjacency with self-loops as (senders, receivers, weights)."""
    import scipy.sparse as sp

    adj = ((adjacency + adjacency.T) > 0).astype(np.float64) + sp.eye(adjacency.shape[0])
    degree = np.asarray(adj.sum(1)).ravel()
    norm = sp.diags(degree**-0.5) @ adj @ sp.diags(degree**-0.5)
    coo = norm.tocoo()
    return (
        jnp.asarray(coo.col, jnp.int32),
        jnp.asarray(coo.row, jnp.int32),
        jnp.asarray(coo.data, jnp.float32),
    )


def make_gcn(edges, num_nodes: int, sparse_input: bool):
    senders, receivers, weights = edges

    def propagate(h):
        return jax.ops.segment_sum(h[senders] * weights[:, None], receivers, num_nodes)

    def apply_fn(params, x):
        w1, w2 = params
        if sparse_input:  # x: SparseBinary; X @ W1 as a segment_sum over the ones
            rows = w1[x.cols] * x.valid[:, None].astype(w1.dtype)
            h = jax.ops.segment_sum(rows, x.rows, num_nodes)
        else:  # x: dense [N, F]
            h = x @ w1
        h = jax.nn.relu(propagate(h))
        return propagate(h @ w2)

    return apply_fn


def bench_graph(path: pathlib.Path, rounds: int) -> None:
    if not path.is_file():
        print(f"[graph] skipped: {path} not found (pass --graph_path)")
        return
    adjacency, attributes = load_cora(path)
    num_nodes, num_features = attributes.shape
    hidden, num_classes = 16, 7
    # 8 clusters of consecutive node ids (the partition does not matter for speed)
    clusters = (np.arange(num_nodes) * 8 // num_nodes).astype(np.int64)
    rank = noise.affinity_ranks(adjacency, clusters)
    tp, tm = noise.rank_flip_probabilities(8, (0.01, 0.001), (0.6, 0.6))
    sm = noise.clustered_bernoulli(clusters, rank, tp, tm)
    key = jax.random.key(0)
    params = (
        0.1 * jax.random.normal(key, (num_features, hidden)),
        0.1 * jax.random.normal(jax.random.fold_in(key, 1), (hidden, num_classes)),
    )
    edges = gcn_propagation(adjacency)
    x_sparse = from_scipy(attributes)
    x_dense = jnp.asarray(attributes.toarray(), jnp.float32)
    capacity = sampling.default_addition_capacity(sm, num_features)
    print(
        f"[graph] Cora-ML {num_nodes} x {num_features}, {attributes.nnz} ones, 8 clusters, "
        f"theta_plus {tp[0]}..{tp[-1]}, theta_minus {tm[0]}; addition slots per sample {capacity}"
    )
    fns, per_call = {}, {}
    for name, sparse_input, batch_size, x, per_example in (
        ("sparse sampler + sparse GCN (vmap)", True, 16, x_sparse, False),
        ("sparse sampler + sparse GCN (per example)", True, 16, x_sparse, True),
        ("dense mask + dense GCN (vmap)", False, 4, x_dense, False),
        ("dense mask + dense GCN (per example)", False, 4, x_dense, True),
    ):
        count = sampling.make_counter(
            make_gcn(edges, num_nodes, sparse_input),
            sm,
            mode="votes",
            batch_size=batch_size,
            num_classes=num_classes,
            num_cols=num_features,
            input_format="sparse" if sparse_input else "dense",
            per_example=per_example,
        )
        active = np.zeros(sm.num_groups, bool)
        active[0] = True  # one group: samples/s of one smoothing distribution
        keys = iter(jax.random.split(jax.random.key(5), 10**4))

        def run(count=count, n=2 * batch_size, x=x, active=active, keys=keys):
            out = count(next(keys), params, x, n, active=active)
            out.counts.block_until_ready()
            assert not bool(out.overflow)

        fns[name] = run
        per_call[name] = 2 * batch_size
    best = _best_times(fns, rounds)
    rates = {name: per_call[name] / best[name] for name in fns}
    for name, rate in rates.items():
        print(f"  {name:42s} {rate:8.1f} samples/s (best of {rounds} calls of {per_call[name]})")
    sparse = max(rate for name, rate in rates.items() if name.startswith("sparse"))
    dense = max(rate for name, rate in rates.items() if name.startswith("dense"))
    print(f"  sparse / dense speed-up (best variant of each): {sparse / dense:.1f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph_path", type=pathlib.Path, default=DEFAULT_GRAPH)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--memory_child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.batch_size)
        return
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    bench_throughput(args.rounds, args.batch_size)
    bench_memory(100)
    bench_graph(args.graph_path, args.rounds)


if __name__ == "__main__":
    main()
