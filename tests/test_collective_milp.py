"""The exact-MILP plug-in point (lrsjax.collective.milp): registry, protocol, options."""

import numpy as np
import pytest

from lrsjax import collective
from lrsjax.base_certs import make_base_certificates
from lrsjax.collective import milp


def _certs(seed=0, groups=4, rows=10):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.05, 1.0, (1, groups, groups)) + 2.0 * np.eye(groups)[None]
    group = np.concatenate([np.arange(groups), rng.integers(0, groups, rows - groups)])
    eta = rng.uniform(0.3, 1.5, rows)
    return make_base_certificates(np.zeros(rows), np.zeros(rows, bool), eta, group, weights, "l2")


def test_public_names_and_registry():
    assert set(milp.__all__) <= set(dir(milp))
    assert tuple(milp.SOLVERS) == collective.MILP_SOLVERS == ("auto", "bnb", "scip")
    for name, solver in milp.SOLVERS.items():
        assert isinstance(solver, milp.MilpSolver) and solver.name == name
    assert collective.MilpOptions is milp.MilpOptions


def test_a_registered_solver_is_selected_by_name(monkeypatch):
    """A new solver is a registry entry: `solve(..., milp_solver=name)` calls it with the
    budget's request and the options, and reports its label and bound."""
    calls = []

    def mine(request, options):
        calls.append((request, options))
        return milp.SOLVERS["bnb"].solve(request, options)._replace(solver="MINE")

    monkeypatch.setitem(milp.SOLVERS, "mine", milp.MilpSolver("mine", mine))
    certs = _certs()
    options = milp.MilpOptions(threads=1)
    ours = collective.certify_collective(certs, [0.8], mode="milp", milp_solver="mine",
                                         milp_options=options)  # fmt: skip
    bnb = collective.certify_collective(certs, [0.8], mode="milp", milp_solver="bnb")
    assert ours.certified.tolist() == bnb.certified.tolist()
    assert calls and all(o is options for _, o in calls)
    assert set(ours.solver) <= {"MINE", "none"} and "MINE" in ours.solver


@pytest.mark.parametrize("milp_solver", ["auto", "bnb", "scip"])
def test_options_change_time_not_counts(milp_solver):
    """One thread, every node on the warm model, no kappa search, SCIP at once: the same
    proven counts as the defaults."""
    certs = _certs(1, groups=10, rows=14)
    eps = [0.5, 0.7, 0.9]
    default = collective.certify_collective(certs, eps, mode="milp", milp_solver=milp_solver)
    odd = milp.MilpOptions(threads=1, kappa_threads=1, kappa_time_s=0.0, scip_delay_s=0.0,
                           auto_bnb_max_groups=0, cold_nodes=0, pool_rounds=1, seeds=1)  # fmt: skip
    other = collective.certify_collective(certs, eps, mode="milp", milp_solver=milp_solver,
                                          milp_options=odd)  # fmt: skip
    assert default.certified.tolist() == other.certified.tolist()
    assert all(s in ("OPTIMAL", "NAIVE_ONLY", "MONOTONE_ZERO") for s in other.status)


def test_bad_options_are_refused_by_name():
    certs = _certs()
    for bad, field in [(milp.MilpOptions(threads=0), "threads"),
                       (milp.MilpOptions(scip_delay_s=-1.0), "scip_delay_s"),
                       (milp.MilpOptions(cold_nodes=1.5), "cold_nodes"),
                       ({"threads": 2}, "milp_options")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            collective.certify_collective(certs, [0.8], mode="milp", milp_options=bad)
    assert 1 <= milp.default_threads() <= 4
