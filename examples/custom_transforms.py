"""Compose a custom chain of collective-problem transforms (optax style).

    python examples/custom_transforms.py

Builds base certificates for a synthetic 4x6-grid problem (no model needed), then compares the
collective certificate of the exact problem (shared rows), of binned problems (coarser, faster)
and of the three solver modes. Every transform is a pure function problem -> problem; `chain`
composes them left to right.

Binning only lowers thresholds, so a binned problem never certifies more than the exact one
when both are solved to optimality (status OPTIMAL). Under a time limit the counts come from
proven bounds, which can be looser on the larger exact problem than on the binned one: then the
binned problem may certify more (every count printed is still sound).
"""

import argparse
import time

import numpy as np
from scipy.special import ndtri

from lrsjax import base_certs, collective, noise


def synthetic_certificates(rng, grid=(4, 6), outputs_per_cell=200):
    """Localized Gaussian base certificates with p_lower drawn near 1 (like a good model)."""
    stds = noise.localized_stds(grid, 0.15, 1.0)
    k = stds.shape[0]
    group = np.repeat(np.arange(k), outputs_per_cell)
    p_lower = np.minimum(rng.beta(8.0, 0.6, size=group.size), 0.9985)
    prediction = np.zeros(group.size, np.int64)
    return base_certs.gaussian(prediction, p_lower, group, stds), ndtri(p_lower)


def main(args):
    rng = np.random.default_rng(args.seed)
    certs, _ = synthetic_certificates(rng, outputs_per_cell=args.outputs_per_cell)
    budgets = np.array([0.05, 0.1, 0.2])
    problem = collective.from_base_certs(certs)
    print(f"{problem.num_rows} rows, {certs.weights.shape[1]} groups")
    for name, transform in [
        ("share (exact)", collective.share()),
        ("binning(64)", collective.chain(collective.binning(64))),
        ("binning(8)", collective.chain(collective.share(), collective.binning(8))),
    ]:
        reduced = transform.apply(problem)
        for mode in ("lp", "hull", "milp"):
            start = time.perf_counter()
            result = collective.solve(reduced, budgets, mode=mode, time_limit_s=args.time_limit)
            seconds = time.perf_counter() - start
            statuses = sorted(set(result.status))
            print(
                f"{name:14s} rows {reduced.num_rows:5d} {mode:4s} certified "
                f"{result.certified.tolist()} ({seconds:.2f} s, {statuses})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs_per_cell", type=int, default=200)
    parser.add_argument("--time_limit", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
