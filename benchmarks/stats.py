"""Benchmark: corrected Clopper-Pearson bounds and Holm's test on a segmentation-sized output map.

    python benchmarks/stats.py                       # 512 x 1024 outputs, n = 6400
    python benchmarks/stats.py --height 64 --width 64 --repeats 3

Counts follow a realistic shape: most outputs are nearly always consistent (p close to 1), a
minority are uncertain. Prints the median and best wall time of several repeats (input validation
included).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lrsjax import stats


def realistic_counts(rng: np.random.Generator, shape: tuple, n: int) -> np.ndarray:
    """85% confident outputs (p ~ Beta(60, 0.6)), 15% uncertain ones (p ~ U(0.3, 1))."""
    confident = rng.uniform(size=shape) < 0.85
    p = np.where(confident, rng.beta(60.0, 0.6, size=shape), rng.uniform(0.3, 1.0, size=shape))
    return rng.binomial(n, p)


def time_call(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (imports, page faults)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--n", type=int, default=6400, help="samples per output")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--tau", type=float, default=0.75, help="Holm threshold")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    shape = (args.height, args.width)
    counts = realistic_counts(rng, shape, args.n)
    cases = {
        "corrected_lower_bounds bonferroni": lambda: stats.corrected_lower_bounds(
            counts, args.n, args.alpha, "bonferroni"
        ),
        "corrected_lower_bounds rank_levels": lambda: stats.corrected_lower_bounds(
            counts, args.n, args.alpha, "rank_levels"
        ),
        "holm_threshold_test": lambda: stats.holm_threshold_test(
            counts, args.n, args.tau, args.alpha
        ),
        "clopper_pearson_lower, bonferroni levels": lambda: stats.clopper_pearson_lower(
            counts, args.n, stats.corrected_levels(counts, args.alpha, "bonferroni")
        ),
        "clopper_pearson_lower, rank levels": lambda: stats.clopper_pearson_lower(
            counts, args.n, stats.corrected_levels(counts, args.alpha, "rank_levels")
        ),
    }
    distinct = np.unique(counts).size
    print(
        f"outputs {shape[0]}x{shape[1]} = {counts.size}, n = {args.n}, "
        f"distinct counts = {distinct}, alpha = {args.alpha}, repeats = {args.repeats}"
    )
    print(f"{'function':<42} {'median s':>9} {'best s':>9}")
    for name, fn in cases.items():
        median, best = time_call(fn, args.repeats)
        print(f"{name:<42} {median:>9.4f} {best:>9.4f}")


if __name__ == "__main__":
    main()
