"""Collective certificate timings (issue 3 targets). Prints one line per case.

    python benchmarks/collective.py                      # every case
    python benchmarks/collective.py --cases=lp256,milp64 --milp_budgets=5

Cases:
  lp2048   24 cells x 2048 rows per cell, 161 budgets, targets `all` and `correct`: LP total.
  lp256    the same with 256 rows per cell.
  milp64   exact MILP, 24 cells x 64 bins, per-budget times (median) and proven optimality.
  pascal   4x6 grid, 32 bins per cell: certified counts of LP, hull LP and MILP at a few eps.
  graph    Cora-ML-sized binary problem (2800 rows, 5 clusters, additions + deletions) over an
           A x D grid of budgets with the exact MILP.
Problems are synthetic but shaped like real ones: W = 1/S^2 from the localized std grid
(0.15 -> 1.0), eta = Phi^{-1}(p_lower)^2 with p_lower ~ Beta near 1, capped at the Bonferroni
ceiling; graphs: per-rank flip probabilities, gamma costs and variance-constrained etas.
"""

import argparse
import time

import numpy as np
from scipy.special import ndtri

from lrsjax import base_certs, collective, noise


def image_certs(rng, rows_per_cell, grid=(4, 6)):
    """Gaussian base certificates with `rows_per_cell` distinct etas per cell."""
    stds = noise.localized_stds(grid, 0.15, 1.0)
    k = stds.shape[0]
    group = np.repeat(np.arange(k), rows_per_cell)
    p_lower = np.minimum(0.5 + 0.5 * rng.beta(6.0, 0.8, size=group.size), 0.99851296)
    p_lower = np.maximum(p_lower, 0.5001)
    return base_certs.gaussian(np.zeros(group.size, np.int64), p_lower, group, stds)


def graph_certs(rng, num_rows=2800, clusters=5):
    """Variance-constrained binary certificates on a random cluster affinity structure."""
    rank = np.array([np.roll(np.arange(clusters), c) for c in range(clusters)])
    rank = np.argsort(np.argsort((rank - np.arange(clusters)[:, None]) % clusters, axis=1), axis=1)
    tp, tm = noise.rank_flip_probabilities(clusters, (0.01, 0.01), (0.6, 0.95))
    gamma_add, gamma_del = base_certs.bernoulli_costs(tp[rank], tm[rank])
    weights = np.stack([gamma_add, gamma_del])
    group = rng.integers(0, clusters, num_rows)
    mu = 0.5 + 0.5 * rng.beta(5.0, 1.0, num_rows)
    zeta = rng.uniform(0.005, 0.05, num_rows)
    return base_certs.variance_constrained(np.zeros(num_rows, np.int64), mu, zeta, group, weights)


def case_lp(rng, rows_per_cell, budgets=161):
    certs = image_certs(rng, rows_per_cell)
    eps = np.linspace(0.0, 2.0, budgets)
    correct = rng.random(certs.num_outputs) < 0.8
    start = time.perf_counter()
    res_all = collective.certify_collective(certs, eps, mode="lp")
    res_cor = collective.certify_collective(certs, eps, targets=correct, mode="lp")
    seconds = time.perf_counter() - start
    print(f"lp{rows_per_cell}: 24 cells x {rows_per_cell} rows, {budgets} budgets x 2 target sets:"
          f" {seconds:.2f} s total ({seconds / (2 * budgets) * 1e3:.1f} ms per solve);"
          f" certified(all) at eps 0.1/0.2/0.5: "
          f"{[int(res_all.certified[np.argmin(abs(eps - e))]) for e in (0.1, 0.2, 0.5)]}"
          f", correct: {int(res_cor.certified[np.argmin(abs(eps - 0.2))])} at 0.2")  # fmt: skip


def case_milp(rng, num_budgets, time_limit):
    certs = image_certs(rng, 2048)
    problem = collective.binning(64).apply(collective.from_base_certs(certs))
    eps = np.linspace(0.05, 0.8, num_budgets)
    times, statuses = [], []
    for e in eps:
        start = time.perf_counter()
        res = collective.solve(problem, [e], mode="milp", time_limit_s=time_limit)
        times.append(time.perf_counter() - start)
        statuses.append(res.status[0])
        lp = collective.solve(problem, [e], mode="lp")
        hull = collective.solve(problem, [e], mode="hull")
        print(f"  milp64 eps {e:.3f}: {times[-1]:6.2f} s {res.status[0]:16s} certified "
              f"lp {int(lp.certified[0])} hull {int(hull.certified[0])} milp "
              f"{int(res.certified[0])}")  # fmt: skip
    print(f"milp64: 24 cells x 64 bins ({problem.num_rows} rows), {num_budgets} budgets, "
          f"time limit {time_limit} s: median {np.median(times):.2f} s, max {max(times):.2f} s, "
          f"optimal {statuses.count('OPTIMAL')}/{num_budgets}")  # fmt: skip


def case_pascal(rng, time_limit):
    certs = image_certs(rng, 340)
    problem = collective.binning(32).apply(collective.from_base_certs(certs))
    for e in (0.05, 0.1, 0.2, 0.3):
        counts = {}
        for mode in ("lp", "hull", "milp"):
            res = collective.solve(problem, [e], mode=mode, time_limit_s=time_limit)
            counts[mode] = (int(res.certified[0]), res.status[0])
        print(f"pascal eps {e:.2f} ({problem.num_outputs} outputs): {counts}")


def case_graph(rng, adds, dels, time_limit):
    certs = graph_certs(rng)
    problem = collective.share().apply(collective.from_base_certs(certs))
    grid = np.stack(np.meshgrid(np.arange(adds), np.arange(dels), indexing="ij"), -1)
    start = time.perf_counter()
    res = collective.solve(problem, grid.reshape(-1, 2), mode="milp", time_limit_s=time_limit)
    seconds = time.perf_counter() - start
    statuses = {s: res.status.count(s) for s in set(res.status)}
    print(f"graph: {problem.num_outputs} rows, 5 clusters, {adds} x {dels} budgets, exact MILP: "
          f"{seconds:.2f} s total; statuses {statuses}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="lp256,lp2048,milp64,pascal,graph")
    parser.add_argument("--milp_budgets", type=int, default=7)
    parser.add_argument("--time_limit", type=float, default=60.0)
    parser.add_argument("--graph_grid", default="50x50")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for case in args.cases.split(","):
        if case.startswith("lp"):
            case_lp(rng, int(case[2:]))
        elif case == "milp64":
            case_milp(rng, args.milp_budgets, args.time_limit)
        elif case == "pascal":
            case_pascal(rng, args.time_limit)
        elif case == "graph":
            adds, dels = (int(v) for v in args.graph_grid.split("x"))
            case_graph(rng, adds, dels, args.time_limit)
        else:
            raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
