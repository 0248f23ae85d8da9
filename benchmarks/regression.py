"""Benchmarks of regression, center smoothing and detection certificates.

  python benchmarks/regression.py [--rounds 3] [--batch_size 128] [--num_batches 8]

1. Throughput: samples/s of certify_regression (the per-sample output kernel,
   `lrsjax.sampling.make_output_sampler`, plus the order statistics on the host) against the bare
   jitted model on pre-generated noisy inputs of the same batch size (target ratio >= 0.9). The
   model is the small ResNet of benchmarks/classify.py with its 10 logits read as real outputs.
2. Certified detection on synthetic rectangles with the oracle detector: certified AP@0.5 (and
   the clean detector's) against the l2 radius.

Times are wall-clock on whatever machine runs this; on a shared machine they are pessimistic.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import lrsjax
from lrsjax import detection, noise, sampling
from lrsjax.data import synthetic_classification
from lrsjax.models import ResNet, classifier_apply_fn, init_classifier_params

IMAGE = (3, 32, 32)
NUM_OUTPUTS = 10
SIGMA = 0.25


def _best_times(fns: dict, rounds: int) -> dict:
    """Best wall time of each function, calls interleaved round by round; each blocks."""
    for fn in fns.values():
        fn()  # warm-up and compilation
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_throughput(rounds: int, batch_size: int, num_batches: int, width: int) -> None:
    model = ResNet(NUM_OUTPUTS, width=width, blocks_per_stage=1)
    params = init_classifier_params(jax.random.key(0), model, IMAGE)
    apply_fn = classifier_apply_fn(model)
    x = jnp.asarray(synthetic_classification(jax.random.key(1), 1).images[0])
    noisy = x + SIGMA * jax.random.normal(jax.random.key(2), (num_batches, batch_size, *IMAGE))
    batched = jax.vmap(apply_fn, in_axes=(None, 0))
    bare = jax.jit(batched)

    def run_bare():  # one jitted call per batch, outputs kept (as a regression loop needs them)
        outs = [bare(params, noisy[i]) for i in range(num_batches)]
        np.asarray(outs[-1])
        return outs

    @jax.jit
    def looped(params, noisy):  # the same batches in one compiled loop, outputs kept
        return jax.lax.map(lambda batch: batched(params, batch), noisy)

    sm = noise.isotropic_gaussian(IMAGE, SIGMA)
    n = num_batches * batch_size
    sampler = sampling.make_output_sampler(apply_fn, sm, batch_size=batch_size)
    keys = iter(jax.random.split(jax.random.key(3), 10**4))
    options = dict(n=n, alpha=0.001, eps=0.1, batch_size=batch_size)
    fns = {
        "bare (jitted call per batch)": run_bare,
        "bare (one jitted loop)": lambda: np.asarray(looped(params, noisy)),
        "output sampler (to host)": lambda: sampler(next(keys), params, x, n),
        "certify_regression": lambda: lrsjax.certify_regression(
            next(keys), apply_fn, params, x, sm, **options
        ),
    }
    best = _best_times(fns, rounds)
    rate = {name: n / best[name] for name in fns}
    print(
        f"[throughput] ResNet(width={width}, blocks=1) with {NUM_OUTPUTS} real outputs on "
        f"{IMAGE}, sigma={SIGMA}, batch_size={batch_size}, best of {rounds} interleaved calls of "
        f"{num_batches} batches"
    )
    for name in fns:
        print(f"  {name:34s} {rate[name]:8.1f} samples/s")
    fastest = max(rate["bare (jitted call per batch)"], rate["bare (one jitted loop)"])
    for name in ("output sampler (to host)", "certify_regression"):
        print(f"  ratio {name} / fastest bare: {rate[name] / fastest:.3f}")


def bench_detection(num_images: int, n: int, sigma: float, radii) -> None:
    data = detection.synthetic_rectangles(jax.random.key(10), num_images, image_size=32)
    sm = noise.isotropic_gaussian((1, 32, 32), sigma)
    clean = detection.Matches(0, 0, 0)
    totals = {eps: detection.Matches(0, 0, 0) for eps in radii}
    start = time.perf_counter()
    for i in range(num_images):
        x = jnp.asarray(data.images[i])
        rows = np.asarray(detection.oracle_detector(data.boxes[i], x))
        boxes = np.where(rows[:, 5:6] > 0, rows[:, :4], np.inf)
        found = detection.matches(boxes, rows[:, 4].astype(int), data.boxes[i], data.labels[i])
        clean = detection.Matches(*(a + b for a, b in zip(clean, found, strict=True)))
        for eps in radii:
            cert = detection.certify_detection(
                jax.random.fold_in(jax.random.key(11), i), detection.oracle_detector,
                data.boxes[i], x, sm, n=n, alpha=0.001, eps=eps, batch_size=250, num_labels=2,
                slots=2,
            )  # fmt: skip
            found = detection.certified_matches(cert, data.boxes[i], data.labels[i])
            totals[eps] = detection.Matches(*(a + b for a, b in zip(totals[eps], found)))
    seconds = time.perf_counter() - start
    print(
        f"[detection] {num_images} synthetic images 32x32, 2 rectangles each, oracle detector, "
        f"sigma={sigma}, n={n}, alpha=0.001 per image ({seconds:.1f} s)"
    )
    print(f"  clean detector AP@0.5: {detection.single_point_ap(clean):.3f}  {clean}")
    for eps in radii:
        ap = detection.single_point_ap(totals[eps])
        print(f"  eps={eps:<5} certified AP@0.5 >= {ap:.3f}  {totals[eps]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_batches", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--detection_images", type=int, default=20)
    parser.add_argument("--detection_n", type=int, default=1000)
    parser.add_argument("--detection_sigma", type=float, default=0.5)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    bench_throughput(args.rounds, args.batch_size, args.num_batches, args.width)
    bench_detection(args.detection_images, args.detection_n, args.detection_sigma,
                    (0.0, 0.1, 0.25, 0.5, 1.0))  # fmt: skip


if __name__ == "__main__":
    main()
