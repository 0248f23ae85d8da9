"""Collective certificate timings and tightness (issue 3). Prints one line per figure.

    python benchmarks/collective.py                       # default cases, ~3-4 minutes
    python benchmarks/collective.py --cases=lp2048,lp256  # one or more cases
    python benchmarks/collective.py --cases=milp64 --milp_budgets=7 --time_limit=60   # ~1-2 min
    python benchmarks/collective.py --cases=milp64 --milp_eps=0.05,0.5 --time_limit=600  # to proof
    python benchmarks/collective.py --cases=milp_sizes --time_limit=60   # ~1-2 min (up to 12)

Cases:
  lp2048      24 cells x 2048 rows per cell (Cityscapes-like), 161 budgets eps in [0, 2], target
              sets `all` and `correct` (~80%): paper LP total time (and the hull LP for reference).
  lp256       the same with 256 rows per cell.
  clique      hull LP with and without the top-level clique rows (`collective._clique`), 24 cells
              x 2048 rows, 161 budgets, target set `all`: where the rows help and by how much.
  milp64      exact MILP, 24 cells x 64 bins per cell (bins per budget after the naive filter),
              `--milp_budgets` budgets in eps [0.05, 1.4]: per-budget times, median, proven count.
  milp_sizes  which sizes the exact MILP proves within `--time_limit` s: 24 cells x 8/16/32/64
              bins and 3x5 / 2x3 grids x 64 bins, at eps 0.3 and 0.6 (milp_solver="auto").
  pascal      4x6 grid, 32 bins per cell, eps 0.05..0.3: certified counts of the paper LP, the
              hull LP and the exact MILP (how much the stronger methods certify beyond the paper).
  graph       Cora-ML-sized binary problem (2800 rows, 5 clusters, additions and deletions) over
              a 50 x 50 grid of (additions, deletions) budgets with the exact MILP.
  graph_fine  the same problem on a 50 x 50 grid that spans the region where certificates are
              non-zero (additions 0..4.9 in steps of 0.1, real-valued totals): a stress test.
Problems are synthetic but shaped like real ones (docs/math.md §2, §5): W = 1/S^2 from the
localized std grid (0.15 -> 1.0 by l_inf cell distance), eta = Phi^{-1}(p_lower)^2 with 60% of the
outputs at the Bonferroni ceiling p = 0.9985 and the rest p ~ Beta(6, 1); graphs: per-rank flip
probabilities (0.01, 0.6) -> (0.01, 0.95), the gamma costs of docs/math.md §5, variance-constrained
etas. Timings are wall clock on the machine that runs it (shared machines make them pessimistic).
"""

import argparse
import time
from collections import Counter

import numpy as np
from scipy.special import ndtri

from lrsjax import collective
from lrsjax.base_certs import make_base_certificates

CEILING = 0.9985


def std_grid(rows, cols, std_min=0.15, std_max=1.0):
    """S[k, j] = std_min + (std_max - std_min) * d(k, j) / d_max, d = l_inf cell distance."""
    cells = np.array([(i, j) for i in range(rows) for j in range(cols)])
    dist = np.abs(cells[:, None, :] - cells[None, :, :]).max(axis=2)
    return std_min + (std_max - std_min) * dist / max(max(rows, cols) - 1, 1)


def image_certs(rng, rows_per_cell, grid=(4, 6), ceiling_fraction=0.6):
    """Gaussian base certificates (l2): W = 1/S^2, eta = Phi^{-1}(p_lower)^2."""
    weights = (1.0 / std_grid(*grid) ** 2)[None]
    group = np.repeat(np.arange(grid[0] * grid[1]), rows_per_cell)
    p_lower = np.minimum(rng.beta(6.0, 1.0, group.size), CEILING)
    p_lower[rng.random(group.size) < ceiling_fraction] = CEILING
    abstain = p_lower <= 0.5
    eta = np.where(abstain, 0.0, ndtri(np.where(abstain, 0.75, p_lower)) ** 2)
    return make_base_certificates(np.zeros(group.size, np.int64), abstain, eta, group, weights,
                                  "l2")  # fmt: skip


def graph_certs(rng, num_rows=2800, clusters=5, plus=(0.01, 0.01), minus=(0.6, 0.95)):
    """Variance-constrained binary certificates (docs/math.md §5) on a random affinity ranking."""
    rank = np.zeros((clusters, clusters), np.int64)
    for c in range(clusters):
        others = rng.permutation([o for o in range(clusters) if o != c])
        rank[c, others] = np.arange(1, clusters)
    tp = np.linspace(*plus, clusters)[rank]
    tm = np.linspace(*minus, clusters)[rank]
    gamma_add = np.log((1 - tm) ** 2 / tp + tm**2 / (1 - tp))
    gamma_del = np.log(tp**2 / (1 - tm) + (1 - tp) ** 2 / tm)
    weights = np.stack([gamma_add, gamma_del])
    group = rng.integers(0, clusters, num_rows)
    mu_lower = 1.0 - rng.beta(1.0, 12.0, num_rows)
    zeta_upper = mu_lower * (1.0 - mu_lower) * rng.uniform(0.3, 1.0, num_rows) + 0.003
    abstain = mu_lower <= 0.5
    eta = np.where(abstain, 0.0, np.log1p(np.maximum(mu_lower - 0.5, 0.0) ** 2 / zeta_upper))
    return make_base_certificates(np.zeros(num_rows, np.int64), abstain, eta, group, weights,
                                  "binary")  # fmt: skip


def case_lp(rng, rows_per_cell, num_budgets=161):
    certs = image_certs(rng, rows_per_cell)
    eps = np.linspace(0.0, 2.0, num_budgets)
    correct = rng.random(certs.num_outputs) < 0.8
    for mode in ("lp", "hull"):
        start = time.perf_counter()
        res_all = collective.certify_collective(certs, eps, mode=mode)
        res_cor = collective.certify_collective(certs, eps, targets=correct, mode=mode)
        seconds = time.perf_counter() - start
        at = [int(res_all.certified[np.argmin(abs(eps - e))]) for e in (0.1, 0.25, 0.5, 1.0)]
        at_cor = int(res_cor.certified[np.argmin(abs(eps - 0.25))])
        print(f"{mode}{rows_per_cell}: 24 cells x {rows_per_cell} rows ({certs.num_outputs} "
              f"outputs), {num_budgets} budgets x 2 target sets: {seconds:.2f} s total "
              f"({seconds / (2 * num_budgets) * 1e3:.1f} ms per budget); certified(all) at eps "
              f"0.1/0.25/0.5/1.0 = {at}, correct at 0.25 = {at_cor}; statuses "
              f"{dict(Counter(res_all.status))}")  # fmt: skip


def case_clique(rng, rows_per_cell=2048, num_budgets=161):
    from lrsjax.collective import _clique

    certs = image_certs(rng, rows_per_cell)
    eps = np.linspace(0.0, 2.0, num_budgets)
    start = time.perf_counter()
    with_rows = collective.certify_collective(certs, eps, mode="hull")
    seconds_with = time.perf_counter() - start
    saved, _clique.MAX_GROUPS = _clique.MAX_GROUPS, 0  # private switch: no clique rows
    try:
        start = time.perf_counter()
        plain = collective.certify_collective(certs, eps, mode="hull")
        seconds_plain = time.perf_counter() - start
    finally:
        _clique.MAX_GROUPS = saved
    gain = with_rows.certified - plain.certified
    used = sum(m == "hull+clique" for m in with_rows.mode_used)
    print(f"clique{rows_per_cell}: rows used at {used}/{num_budgets} budgets, more certified at "
          f"{int((gain > 0).sum())} (eps {eps[gain > 0].round(4).tolist()}): "
          f"{gain[gain > 0].tolist()}, total +{int(gain.sum())}, never fewer: "
          f"{bool((gain >= 0).all())}; hull {seconds_with:.2f} s with vs {seconds_plain:.2f} s "
          f"without")  # fmt: skip


def case_milp64(rng, num_budgets, time_limit, milp_eps=None):
    certs = image_certs(rng, 2048)
    eps = np.linspace(0.05, 1.4, num_budgets) if milp_eps is None else np.asarray(milp_eps)
    num_budgets = eps.size
    times, statuses = [], []
    for e in eps:
        res = collective.certify_collective(certs, [e], num_bins=64, mode="milp",
                                            time_limit_s=time_limit)  # fmt: skip
        lp = collective.certify_collective(certs, [e], num_bins=64, mode="lp")
        hull = collective.certify_collective(certs, [e], num_bins=64, mode="hull")
        times.append(float(res.seconds[0]))
        statuses.append(res.status[0])
        print(f"  milp64 eps {e:.3f}: {res.seconds[0]:7.2f} s {res.status[0]:16s} "
              f"{res.solver[0]:8s} certified lp {int(lp.certified[0])} hull "
              f"{int(hull.certified[0])} milp {int(res.certified[0])} (naive "
              f"{int(res.naive[0])}; best attack found {res.attack_found[0]:.0f}, proven bound "
              f"{res.attack_bound[0]:.1f})", flush=True)  # fmt: skip
    print(f"milp64: 24 cells x 64 bins, {num_budgets} budgets, time limit {time_limit} s: "
          f"median {np.median(times):.2f} s, max {max(times):.2f} s, proven optimal "
          f"{statuses.count('OPTIMAL')}/{num_budgets}")  # fmt: skip


def case_milp_sizes(rng, time_limit):
    configs = [((4, 6), 8), ((4, 6), 16), ((4, 6), 32), ((4, 6), 64), ((3, 5), 64), ((2, 3), 64)]
    for grid, bins in configs:
        k = grid[0] * grid[1]
        certs = image_certs(rng, 49152 // k, grid=grid)
        for e in (0.3, 0.6):
            res = collective.certify_collective(
                certs, [e], num_bins=bins, mode="milp", time_limit_s=time_limit
            )
            print(f"milp_sizes {grid[0]}x{grid[1]} cells x {bins} bins, eps {e}: "
                  f"{res.solver[0]:8s} {res.seconds[0]:6.2f} s {res.status[0]:16s} certified "
                  f"{int(res.certified[0])} (attack found {res.attack_found[0]:.0f}, bound "
                  f"{res.attack_bound[0]:.1f})", flush=True)  # fmt: skip


def case_pascal(rng, time_limit):
    certs = image_certs(rng, 256)
    gains_hull, gains_milp = [], []
    for e in (0.05, 0.1, 0.2, 0.3):
        counts = {}
        for mode in ("lp", "hull", "milp"):
            res = collective.certify_collective(certs, [e], num_bins=32, mode=mode,
                                                time_limit_s=time_limit)  # fmt: skip
            counts[mode] = (int(res.certified[0]), res.status[0], float(res.seconds[0]))
        naive = int(res.naive[0])
        gains_hull.append(counts["hull"][0] - counts["lp"][0])
        gains_milp.append(counts["milp"][0] - counts["lp"][0])
        print(f"pascal eps {e:.2f} ({certs.num_outputs} outputs, naive {naive}): lp "
              f"{counts['lp'][0]}, hull {counts['hull'][0]} (+{gains_hull[-1]}), milp "
              f"{counts['milp'][0]} (+{gains_milp[-1]}, {counts['milp'][1]}, "
              f"{counts['milp'][2]:.2f} s)", flush=True)  # fmt: skip
    print(f"pascal: 4x6 grid x 32 bins: beyond the paper LP the hull certifies "
          f"+{np.mean(gains_hull):.0f} outputs on average (max +{max(gains_hull)}), the MILP "
          f"+{np.mean(gains_milp):.0f} (max +{max(gains_milp)}) over eps 0.05..0.3")  # fmt: skip


def case_graph(rng, adds, dels, time_limit, add_step=1.0):
    certs = graph_certs(rng)
    grid = np.stack(np.meshgrid(np.arange(adds) * add_step, np.arange(dels), indexing="ij"), -1)
    grid = grid.reshape(-1, 2)
    start = time.perf_counter()
    res = collective.certify_collective(certs, grid, mode="milp", time_limit_s=time_limit)
    seconds = time.perf_counter() - start
    table = res.certified.reshape(adds, dels)
    nonzero = int(np.count_nonzero(table))
    name = "graph" if add_step == 1.0 else "graph_fine"
    print(f"{name}: {certs.num_outputs} rows, 5 clusters, {adds} x {dels} budgets (additions step "
          f"{add_step}), exact MILP: {seconds:.2f} s total, max {res.seconds.max():.2f} s per "
          f"budget; {nonzero} budgets with a non-zero certificate; statuses "
          f"{dict(Counter(res.status))}; solvers {dict(Counter(res.solver))}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="lp256,lp2048,pascal,graph,graph_fine,milp64")
    parser.add_argument("--milp_budgets", type=int, default=3)
    parser.add_argument(
        "--milp_eps",
        default="",
        help="milp64 budgets, e.g. 0.05,0.5 (default: "
        "--milp_budgets values evenly spaced in [0.05, 1.4])",
    )
    parser.add_argument("--time_limit", type=float, default=20.0, help="MILP s per budget")
    parser.add_argument("--graph_grid", default="50x50")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for case in args.cases.split(","):
        rng = np.random.default_rng(args.seed)
        if case in ("lp256", "lp2048"):
            case_lp(rng, int(case[2:]))
        elif case == "clique":
            case_clique(rng)
        elif case == "milp64":
            eps = [float(e) for e in args.milp_eps.split(",")] if args.milp_eps else None
            case_milp64(rng, args.milp_budgets, args.time_limit, eps)
        elif case == "milp_sizes":
            case_milp_sizes(rng, args.time_limit)
        elif case == "pascal":
            case_pascal(rng, args.time_limit)
        elif case in ("graph", "graph_fine"):
            adds, dels = (int(v) for v in args.graph_grid.split("x"))
            case_graph(rng, adds, dels, args.time_limit, 1.0 if case == "graph" else 0.1)
        else:
            raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main()
