"""Clique inequalities on the groups' top levels: a sound strengthening of the hull bound.

With one budget type (total 1 in scaled units) the spends an attack can put on two groups k, l
form the polygon `{((W b)_k, (W b)_l) : b >= 0, sum_j b_j <= 1} = conv{(0, 0), (W[k, j], W[l, j])}`.
If no point of it has `P_k >= E_k` and `P_l >= E_l`, no attack reaches both levels: they
conflict. When the top levels (largest reachable thresholds) of a set S of groups conflict
pairwise, every attack reaches at most one of them:

    sum_{g in S} [level_g = top_g] <= 1.

More generally, if no attack reaches more than `kappa` of the top levels of S (a proven bound
on that small covering problem, `milp._kappa`, used by the exact MILP), then
`sum_{g in S} [level_g = top_g] <= kappa`.

Localized smoothing makes this common: many outputs of a cell share the largest radius (every
sample agreed), the top level holds them all, and a budget that can buy one cell's top level
cannot buy two. The hull relaxation spreads such a jump over many groups at once (it may buy
"a third" of every top level); the clique rows forbid that. On the 24 x 64 benchmark at eps 0.5
the bound on the attack falls from 11794 (hull) to 11407 (optimum 11239).

The bound is rigorous whatever the LP solver's accuracy: from multipliers `lam >= 0` (rows
`P_g <= (W b)_g`) and `mu >= 0` (one per clique),

    U(lam, mu) = sum_g max_i (C_gi - lam_g E_gi - [i = top_g] sum_{S containing g} mu_S)
                 + max(0, max_j sum_g lam_g W[k_g, j]) + sum_S mu_S kappa_S

bounds every integer attack (weak duality; `i` runs over level 0 (nothing) and every level):
`_relax.lagrangian` with the top-row penalties.
Conflicts are decided with a relative margin larger than `_levels.TIE_RTOL`, so a pair is never
declared conflicting when a spend reaches both levels up to the tie tolerance of attack counting.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrsjax.collective import _levels, _relax

MARGIN = 1e-8  # relative; > _levels.TIE_RTOL
MAX_GROUPS = 200  # pairwise tests are O(G^2 M^2): above this many groups none are made


class CliqueBound(NamedTuple):
    """Fields: bound (float, rigorous upper bound on every attack), b (float64 [1, M] the LP's
    spend), rows (the rows `(S, kappa)` used), converged (bool, the bound meets
    the LP's objective to 1e-6 relative: the strengthened relaxation is solved)."""

    bound: float
    b: np.ndarray
    rows: tuple
    converged: bool


def pair_reach(x: np.ndarray, y: np.ndarray, e: float) -> np.ndarray:
    """float64 [L]: for each row of `y`, the largest `sum_j b_j y[l, j]` over `b >= 0`,
    `sum_j b_j <= 1`, `sum_j b_j x_j >= e` (-inf if no such b).

    Args: x float64 [M] >= 0, y float64 [L, M] >= 0, e > 0.
    The maximum is at a vertex of the feasible set: one region `j` with `x_j >= e`, or a point on
    the segment between a region `i` with `x_i > e` and a region or the origin `j` with `x_j < e`.
    """
    x = np.concatenate([[0.0], np.asarray(x, np.float64)])
    y = np.concatenate([np.zeros((y.shape[0], 1)), np.asarray(y, np.float64)], axis=1)
    best = np.full(y.shape[0], -np.inf)
    above = x >= e
    if not above.any():
        return best
    best = y[:, above].max(axis=1)
    hi, lo = np.flatnonzero(x > e), np.flatnonzero(x < e)
    if hi.size and lo.size:
        theta = (e - x[lo])[None, :] / (x[hi][:, None] - x[lo][None, :])  # [hi, lo] in (0, 1)
        mix = y[:, lo][:, None, :] + theta[None] * (y[:, hi][:, :, None] - y[:, lo][:, None, :])
        best = np.maximum(best, mix.reshape(y.shape[0], -1).max(axis=1))
    return best


def top_conflicts(tops: np.ndarray, wrows: np.ndarray) -> np.ndarray:
    """bool [G, G]: True where no spend reaches the top levels `tops[a]` and `tops[b]` together
    (with the margin of the module docstring; symmetric, False on the diagonal).

    Args: tops float64 [G] > 0 (scaled thresholds); wrows float64 [G, M] (one budget type,
    total 1): `W[k_g, :]`.
    """
    g_count = tops.size
    conflict = np.zeros((g_count, g_count), bool)
    for a in range(g_count):
        reach = pair_reach(wrows[a], wrows, tops[a] * (1.0 - MARGIN))
        conflict[a] = reach * (1.0 + MARGIN) < tops
    conflict &= conflict.T
    np.fill_diagonal(conflict, False)
    return conflict


def greedy_cliques(conflict: np.ndarray) -> tuple:
    """Distinct maximal cliques (size >= 2) of the conflict graph, one grown greedily from each
    vertex (neighbours with more conflicts first). Any set of cliques keeps the bound valid."""
    degree = conflict.sum(axis=1)
    order = np.argsort(-degree, kind="stable")
    found = []
    for seed in order:
        if degree[seed] == 0:
            continue
        clique = [int(seed)]
        for v in order:
            if v != seed and all(conflict[v, u] for u in clique):
                clique.append(int(v))
        key = tuple(sorted(clique))
        if len(key) >= 2 and key not in found:
            found.append(key)
    return tuple(found)


def lagrangian(table, wrows, totals, lam, rows=(), mu=None, lo=None, hi=None):
    """U(lam, mu) of the module docstring over a `_levels.LevelTable` (`_relax.lagrangian` on
    its padded points), for any number of budget types and optionally with each group
    restricted to levels `lo..hi`.

    Args:
      table: `_levels.LevelTable` of G groups. wrows: float64 [G, T, M], `W[t, k_g, j]`.
      totals: float64 [T]. lam: float64 [G] (valid for lam >= 0: negatives are clipped).
      rows: `(S, kappa)` pairs (`top_rows`); mu: float64 [len(rows)] >= 0 (clipped), their
        multipliers. lo, hi: int [G] level ranges (default: every level, level 0 included).
    Returns:
      (bound, terms float64 [G, L + 1] = C - lam E - [i = top] sum_{S containing g} mu_S
      (-inf outside the ranges), best_terms [G] their per-group maxima).
    """
    extra, offset = None, 0.0
    if rows:
        penalty = np.zeros(table.n.size)
        mu = np.maximum(np.asarray(mu, np.float64), 0.0)
        for mu_s, (members, kappa) in zip(mu, rows):
            penalty[list(members)] += mu_s
            offset += float(mu_s) * float(kappa)
        extra = penalty[:, None] * table.top
    inside = table.in_range(lo, hi) if lo is not None else np.isfinite(table.E)
    return _relax.lagrangian(table.E0, table.C, inside, wrows, totals, lam, extra, offset)


def top_rows(levels, wrows: np.ndarray, with_conflicts: bool = False):
    """Valid rows `(S, 1)`: pairwise-conflict cliques of top levels (`greedy_cliques`); with
    `with_conflicts`, `(rows, conflict bool [G, G] or None when no pairs were tested)`."""
    g_count = len(levels)
    if g_count < 2 or g_count > MAX_GROUPS:
        return ((), None) if with_conflicts else ()
    tops = np.array([lv.eta[-1] for lv in levels])
    conflict = top_conflicts(tops, wrows)
    rows = tuple((clique, 1) for clique in greedy_cliques(conflict))
    return (rows, conflict) if with_conflicts else rows


def top_fractions(funcs, power) -> np.ndarray:
    """float64 [G]: how much of each group's top level a hull-LP point buys (its `z_top`): 1 at
    or beyond the top threshold, the position along the hull's last segment on it, else 0."""
    out = np.zeros(len(funcs))
    for g, (f, p) in enumerate(zip(funcs, power)):
        if p >= f.x[-1]:
            out[g] = 1.0
        elif f.x.size >= 2 and p > f.x[-2]:
            out[g] = (p - f.x[-2]) / (f.x[-1] - f.x[-2])
    return out


def clique_bound(levels, wrows: np.ndarray, top_rows, hull_funcs=None, hull_power=None):
    """The hull relaxation with the rows `(S, kappa)` of `top_rows` (`CliqueBound`), or None
    when there are no rows, the hull LP point (`hull_power` on the concave `hull_funcs`,
    optional) already satisfies every row (the bound would be the hull bound), or the LP fails.

    Args:
      levels: G `_levels.Level` in scaled units (reachable levels only, G >= 1).
      wrows: float64 [G, M], `W[k_g, :]` of the single budget type, scaled to total 1.
    """
    if not top_rows:
        return None
    if hull_power is not None:
        z_top = top_fractions(hull_funcs, hull_power)
        if all(float(z_top[list(m)].sum()) <= k + 1e-9 for m, k in top_rows):
            return None
    # The ordered formulation (`_relax.ordered_model`) over, per group, the hull vertices of the
    # levels below the top, then the top level; with the rows it is a relaxation of the exact
    # problem (a level below the top lies under the lower hull). It only supplies multipliers:
    # the bound is U(lam, mu) over every level.
    vertices = []
    for g, lv in enumerate(levels):
        px, py = lv.points
        lower = _relax.hull_function(px[:-1], py[:-1])
        x, y = np.append(lower.x[1:], px[-1]), np.append(lower.y[1:], py[-1])
        vertices.append(lv._replace(group=g, eta=x, count=np.diff(np.append(0.0, y)), cumulative=y))
    model = _relax.ordered_model(vertices, wrows[None], np.ones(1), top_rows)
    solver = _relax.glop_maximize(*model.data())
    if solver is None:
        return None
    duals = np.asarray(solver.dual_values())
    x = np.asarray(solver.variable_values())
    if not (np.all(np.isfinite(duals)) and np.all(np.isfinite(x))):
        return None
    g_count, m_count = wrows.shape
    # GLOP's multipliers of the link rows `(W b)_g - ... >= 0` are <= 0 in a maximization;
    # any lam >= 0 gives a valid bound, so the sign flip needs no trust.
    lam = -duals[1 : 1 + g_count]
    mu = duals[duals.size - len(top_rows) :]
    table = _levels.LevelTable.of(levels)
    bound = lagrangian(table, wrows[:, None, :], np.ones(1), lam, top_rows, mu)[0]
    objective = float(model.objective @ x)
    converged = bound - objective <= 1e-6 * max(1.0, abs(bound))
    return CliqueBound(bound, x[:m_count][None, :], tuple(top_rows), bool(converged))


def strengthen(levels, wrows, rows, funcs, rel):
    """The hull bound of `rel` (`_relax.Relaxation` of the concave `funcs`) strengthened by the
    top-level `rows` (`clique_bound`), when the hull LP point violates one of them and the
    bound is smaller; else None."""
    if not rows or rel.power is None:
        return None
    out = clique_bound(levels, wrows, rows, funcs, rel.power)
    return out if out is not None and out.bound < rel.bound else None
