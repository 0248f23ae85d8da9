"""The branch and bound with several threads on one tree, and SCIP started late beside it."""

import time

import numpy as np
import pytest
from test_collective_bnb import _scaled_problem, _wrows
from test_collective_clique import _brute_force_attack
from test_collective_kappa import _many_level_certs

from lrsjax.collective.milp import MilpOptions, _bnb, _kappa, _scip


def _medium(rng, groups, per_group, eps):
    certs, weights, eta, group = _many_level_certs(rng, groups=groups, per_group=per_group)
    levels, w, ones = _scaled_problem(certs, weights, eps)
    rows = _kappa.top_rows(levels, _wrows(levels, w), kappa_time_s=5.0)
    return levels, w, ones, rows, (weights, eta, group)


def test_two_workers_equal_brute_force_on_small_problems():
    """Two threads on one tree end with the exact attack (brute force), with every node on the
    warm models (each thread has its own) and with the default switch-over."""
    rng = np.random.default_rng(21)
    solved = 0
    for case in range(8):
        options = MilpOptions(cold_nodes=0) if case % 2 else MilpOptions()
        levels, w, ones, rows, brute = _medium(rng, 3, 6, (0.9, 1.2, 1.5)[case % 3])
        if len(levels) < 2:
            continue
        exact = _brute_force_attack(*brute, (0.9, 1.2, 1.5)[case % 3] ** 2)
        res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, workers=2,
                                    options=options)  # fmt: skip
        assert res.optimal and not res.failed and res.attack == exact, (case, res, exact)
        solved += 1
    assert solved >= 6


def test_two_workers_equal_one_on_searches_with_many_nodes():
    """On searches of hundreds of nodes (where both threads really work at once) two workers
    prove the same optimum as one, and the second thread did solve nodes; handing the tree to
    one thread at once (`helpers_until` in the past) changes nothing either."""
    rng = np.random.default_rng(8)
    long_searches = 0
    for case in range(6):
        levels, w, ones, rows, _ = _medium(rng, 10, 12, (1.0, 1.4)[case % 2])
        one = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows)
        two = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, workers=2)
        solo = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, workers=2,
                                     helpers_until=time.perf_counter() - 1.0)  # fmt: skip
        for res in (one, two, solo):
            assert res.optimal and not res.failed, (case, res)
        assert one.attack == two.attack == solo.attack, (case, one, two, solo)
        long_searches += one.nodes >= 200
    assert long_searches >= 3, long_searches


def test_two_workers_stopped_early_report_sound_bounds():
    """Stopped by a deadline at random points, or by `stop`, a two-thread search reports a
    bound no smaller than the exact attack (every node either worker held counts as open)
    and an attack no larger than it."""
    rng = np.random.default_rng(13)
    checked = stopped = 0
    for case in range(4):
        levels, w, ones, rows, _ = _medium(rng, 10, 12, 1.2)
        exact = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows)
        assert exact.optimal
        for limit in (0.0, 0.02, 0.05, 0.1, 0.3):
            res = _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, workers=2,
                                        deadline=time.perf_counter() + limit)  # fmt: skip
            assert res.bound >= exact.attack - 1e-6 and res.attack <= exact.attack, (case, res)
            checked += 1
            stopped += not res.optimal
        for after in range(1, 40, 3):  # stopped after a given number of checks
            calls = []
            res = _bnb.branch_and_bound(
                levels, w, ones, tol=1e-6, top_rows=rows, workers=2,
                stop=lambda c=calls, k=after: c.append(1) or len(c) > k,
            )  # fmt: skip
            assert res.bound >= exact.attack - 1e-6 and res.attack <= exact.attack, (after, res)
            checked += 1
            stopped += not res.optimal
    assert checked == 72 and stopped >= 20, (checked, stopped)


def test_an_exception_in_a_helper_thread_reaches_the_caller(monkeypatch):
    """A bug in the second thread is not swallowed (the search would silently lose nodes)."""
    real = _bnb._Search.expand

    def expand(self, node):
        if self is not first[0]:
            raise RuntimeError("boom in the helper")
        return real(self, node)

    first = []
    real_init = _bnb._Search.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        first.append(self)

    monkeypatch.setattr(_bnb._Search, "__init__", init)
    monkeypatch.setattr(_bnb._Search, "expand", expand)
    rng = np.random.default_rng(8)
    levels, w, ones, rows, _ = _medium(rng, 10, 12, 1.0)
    with pytest.raises(RuntimeError, match="boom in the helper"):
        for _ in range(20):  # the helper must get a node at least once
            first.clear()
            _bnb.branch_and_bound(levels, w, ones, tol=1e-6, top_rows=rows, workers=2)


def test_scip_interrupted_before_its_delayed_start_gives_no_bound():
    """`ScipRun.start(delay_s)`: interrupted during the delay, SCIP never solves and reports no
    bound (so nothing from it is counted); started after the delay it solves as usual."""
    rng = np.random.default_rng(4)
    levels, w, ones, rows, _ = _medium(rng, 4, 5, 1.2)
    run = _scip.ScipRun(levels, w, ones).start(delay_s=30.0)
    start = time.perf_counter()
    run.interrupt()
    out = run.result()
    assert time.perf_counter() - start < 5.0
    assert out.status == "NOT_SOLVED" and np.isnan(out.bound) and out.b is None
    late = _scip.ScipRun(levels, w, ones).start(delay_s=0.05).result()
    exact = _bnb.branch_and_bound(levels, w, ones, tol=1e-6)
    assert late.status == "OPTIMAL" and np.floor(late.objective + 1e-6) == exact.attack


def test_kappa_with_two_workers_equals_one_and_stays_an_upper_bound_when_stopped():
    """`_kappa.max_reachable` with a shared stack and two GLOP models: the same exact kappa as
    one thread on searches of dozens of nodes; stopped by a deadline at random points it never
    reports less than the exact kappa (nodes a thread holds count as open)."""
    rng = np.random.default_rng(17)
    long_searches = 0
    for _ in range(8):
        g, m = 14, 14
        w = rng.uniform(0.0, 0.35, (g, m))
        w[np.arange(g), np.arange(g)] += rng.uniform(1.0, 1.5, g)
        tau = rng.uniform(0.2, 0.3) * w.max(axis=1)
        one = _kappa.max_reachable(w, tau, workers=1)
        two = _kappa.max_reachable(w, tau, workers=2)
        assert one.optimal and two.optimal and one.kappa == two.kappa, (one, two)
        long_searches += one.nodes >= 20
        for limit in (0.0, 0.005, 0.02, 0.05):
            cut = _kappa.max_reachable(w, tau, deadline=time.perf_counter() + limit, workers=2)
            assert cut.kappa >= one.kappa >= cut.found, (limit, cut, one)
    assert long_searches >= 3, long_searches
