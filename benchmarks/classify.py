"""Benchmarks of classifier certification on the small ResNet at 3x32x32.

  python benchmarks/classify.py [--rounds 3] [--batch_size 128] [--inputs 8] [--n 1000]

1. Throughput: samples/s of certify's sampling kernel (`lrsjax.sampling.make_counter`, votes,
   isotropic Gaussian noise, the classifier seen as one output as `certify_classifier` sees it)
   against the bare jitted model on pre-generated noisy inputs of the same batch size (target
   ratio >= 0.9).
2. Inputs per second of `lrsjax.certify_classifier` when a batch of inputs is certified in one
   call, against the same inputs certified one call each (n0 selection + n estimation samples).

Times are wall-clock on whatever machine runs this; on a shared machine they are pessimistic.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import lrsjax
from lrsjax import noise, sampling
from lrsjax.data import synthetic_classification
from lrsjax.models import ResNet, classifier_apply_fn, init_classifier_params

IMAGE = (3, 32, 32)
NUM_CLASSES = 10
SIGMA = 0.25


def _best_times(fns: dict, rounds: int) -> dict:
    """Best wall time of one call of each function, calls interleaved round by round (the least
    disturbed measurement on a busy machine). Every function blocks until its result is ready."""
    for fn in fns.values():
        fn()  # warm-up and compilation
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _one_output(apply_fn):
    """The classifier as a model with one output `[1, num_classes]` (the kernel's contract)."""

    def wrapped(params, x):
        return apply_fn(params, x)[None]

    return wrapped


def bench_throughput(model, params, rounds: int, batch_size: int, num_batches: int) -> None:
    apply_fn = classifier_apply_fn(model)
    x = jnp.asarray(synthetic_classification(jax.random.key(1), 1).images[0])
    noisy = x + SIGMA * jax.random.normal(jax.random.key(2), (num_batches, batch_size, *IMAGE))
    batched = jax.vmap(apply_fn, in_axes=(None, 0))
    bare = jax.jit(batched)

    def run_bare():  # one jitted call per batch (what a hand-written loop does)
        for i in range(num_batches):
            out = bare(params, noisy[i])
        out.block_until_ready()

    @jax.jit
    def looped(params, noisy):  # the same batches in one compiled loop, argmax kept only
        def body(i, acc):
            return acc + jnp.argmax(batched(params, noisy[i]), axis=-1).sum()

        return jax.lax.fori_loop(0, num_batches, body, jnp.zeros((), jnp.int32))

    single = noise.single_output(noise.isotropic_gaussian(IMAGE, SIGMA))  # one output
    count = sampling.make_counter(
        _one_output(apply_fn), single, mode="votes", batch_size=batch_size, num_classes=NUM_CLASSES
    )
    keys = iter(jax.random.split(jax.random.key(3), 10**4))
    fns = {
        "bare (jitted call per batch)": run_bare,
        "bare (one jitted loop)": lambda: looped(params, noisy).block_until_ready(),
        "certify kernel (isotropic Gaussian)": lambda: count(
            next(keys), params, x, num_batches * batch_size
        ).counts.block_until_ready(),
    }
    best = _best_times(fns, rounds)
    rate = {name: num_batches * batch_size / best[name] for name in fns}
    print(
        f"[throughput] ResNet(width={model.width}, stages={model.num_stages}, "
        f"blocks={model.blocks_per_stage}) on {IMAGE}, sigma={SIGMA}, batch_size={batch_size}, "
        f"best of {rounds} interleaved calls of {num_batches} batches"
    )
    for name in fns:
        print(f"  {name:40s} {rate[name]:8.1f} samples/s")
    fastest = max(rate["bare (jitted call per batch)"], rate["bare (one jitted loop)"])
    ratio = rate["certify kernel (isotropic Gaussian)"] / fastest
    print(f"  ratio certify kernel / fastest bare: {ratio:.3f}")


def bench_inputs(model, params, rounds: int, batch_size: int, inputs: int, n0: int, n: int):
    apply_fn = classifier_apply_fn(model)
    images = synthetic_classification(jax.random.key(4), inputs).images
    sm = noise.isotropic_gaussian(IMAGE, SIGMA)
    options = dict(n0=n0, n=n, alpha=0.001, batch_size=batch_size)

    def together():
        return lrsjax.certify_classifier(jax.random.key(5), apply_fn, params, images, sm, **options)

    def one_by_one():
        return [
            lrsjax.certify_classifier(
                jax.random.fold_in(jax.random.key(5), i), apply_fn, params, images[i], sm, **options
            )
            for i in range(inputs)
        ]

    best = _best_times({"batch": together, "one call per input": one_by_one}, rounds)
    batch_cert, single_certs = together(), one_by_one()
    same = np.array_equal(batch_cert.radius, [c.radius for c in single_certs])
    print(
        f"[inputs] certify_classifier on {inputs} inputs, n0={n0}, n={n}, batch_size={batch_size}, "
        f"best of {rounds} (same radii batch vs one by one: {same})"
    )
    for name, seconds in best.items():
        samples = inputs * (n0 + n) / seconds
        print(f"  {name:22s} {inputs / seconds:7.2f} inputs/s  ({samples:8.1f} samples/s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_batches", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=8, help="inputs certified together")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks_per_stage", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    model = ResNet(NUM_CLASSES, width=args.width, blocks_per_stage=args.blocks_per_stage)
    params = init_classifier_params(jax.random.key(0), model, IMAGE)
    bench_throughput(model, params, args.rounds, args.batch_size, args.num_batches)
    bench_inputs(model, params, args.rounds, args.batch_size, args.inputs, args.n0, args.n)


if __name__ == "__main__":
    main()
