"""Bad-input fuzzing of the public API and the command-line tools (issue #7).

Rule under test (COMMON.md, STYLE principle 6): a bad input gives a clear error, a ValueError (or
FileNotFoundError for paths) raised on the host that names the offending argument, never a crash
deep inside numpy/scipy/JAX/OR-Tools and never a silent answer.

How: every public function has a table of valid arguments (varied by hypothesis) and, per
argument, a catalogue of invalid values of its kind (NaN, inf, wrong rank or shape, empty arrays,
out-of-range probabilities, negative budgets, zero sample sizes, strings, None, ...). Hypothesis
picks the argument and the bad value; the call must raise ValueError/FileNotFoundError whose
message names that argument. Files (npz graphs with pickled objects, truncated checkpoints and
result files, broken data set folders) and CLI flags (real subprocesses) are fuzzed the same way.

Count the cases with

    /work/venv/bin/pytest tests/test_fuzz.py -q --hypothesis-show-statistics

(the CI profile of tests/conftest.py runs at most 40 examples per test; HYPOTHESIS_PROFILE=thorough
runs 500).
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrsjax
from lrsjax import base_certs, data, noise, results, sampling, stats, training

NAN, INF = float("nan"), float("inf")


# A broken BaseCertificates may be reported by the field that is wrong.
ALIASES = {"base_certs": ("base_certs", "weights", "eta", "group", "Shapes must match")}


def expect_clear_error(call, name: str, *, errors=(ValueError,)):
    """`call()` must raise one of `errors` whose message names `name` (or an alias of it)."""
    try:
        out = call()
    except errors as error:
        message = str(error)
        names = ALIASES.get(name, (name,))
        assert any(n in message for n in names), (
            f"error does not name `{name}`: {type(error).__name__}: {message}"
        )
        return error
    raise AssertionError(f"bad `{name}` was accepted silently; returned {out!r:.200}")


# ================================================================================================
# Catalogues of invalid values, by kind of argument
# ================================================================================================

NOT_NUMBERS = ["abc", None, {"a": 1}, object()]
BAD = {
    # a probability passed as a plain scalar (alpha, tau, theta_plus, ...)
    "prob_scalar": [0.0, 1.0, -0.25, 1.5, NAN, INF, -INF, "p", None, True, [0.1]],
    # a probability array (theta_plus, ...)
    "prob_array": [0.0, 1.0, -0.25, 1.5, NAN, INF, [0.1, NAN], "x", None],
    # a probability array broadcast against the outputs D = 3 (level)
    "level": [0.0, 1.0, -0.25, 1.5, NAN, INF, [0.1, NAN, 0.1], "x", None, np.full(7, 0.1)],
    # counts in [0, n] with n = 10, shape (D,)
    "counts": [-1, [1, -2, 3], 11, [3, 12, 0], 1.5, [NAN], [INF], "a", None, [True, False]],
    # a sample size >= 1
    "n": [0, -5, 1.5, NAN, INF, "ten", None, True, np.full(7, 10)],
    # a sample size >= 1 of any shape
    "n_any": [0, -5, 1.5, NAN, INF, "ten", None, True, [10, 0]],
    # an int >= 0 (radii, max flips)
    "nonneg_int": [-1, -100, 1.5, NAN, INF, "three", None, True],
    # an int >= 1 (sizes)
    "pos_int": [0, -1, 1.5, NAN, INF, "three", None, True],
    # an optional int >= 1 (None is valid)
    "opt_pos_int": [0, -1, 1.5, NAN, INF, "three", True],
    # a finite real array or scalar
    "finite": [NAN, INF, -INF, [0.1, NAN], "a", None],
    # samples of a score in [0, 1]
    "unit_samples": [[-0.1, 0.5], [0.5, 1.1], [NAN, 0.5], [INF], 0.5, "x", None, np.zeros((0, 3))],
    # a name from a fixed list
    "choice": ["nope", "", None, 3, "bonferroni ", ["lp"]],
    # a shape pair such as (2, 3)
    "pair": [(0, 3), (3, 0), (-1, 2), (1.5, 2), (2,), (2, 3, 4), "2x3", (NAN, 2), 5],
}


def _bad_values(kind: str):
    return st.sampled_from(BAD[kind])


# ================================================================================================
# Public functions: valid arguments + the kind of every fuzzed argument
# ================================================================================================


def _stats_specs():
    counts = np.array([0, 4, 10])
    hist = np.array([[1, 0, 3, 2], [0, 5, 0, 1], [2, 2, 2, 2]])
    edges = np.linspace(0, 1, 5)
    samples = np.random.default_rng(0).random((20, 3))
    return {
        "clopper_pearson_lower": (
            stats.clopper_pearson_lower,
            dict(counts=counts, n=10, level=0.1),
            dict(counts="counts", n="n", level="level"),
        ),
        "clopper_pearson_upper": (
            stats.clopper_pearson_upper,
            dict(counts=counts, n=10, level=0.1),
            dict(counts="counts", n="n", level="level"),
        ),
        "corrected_levels": (
            stats.corrected_levels,
            dict(counts=counts, alpha=0.1, method="bonferroni"),
            dict(alpha="prob_scalar", method="choice"),
        ),
        "corrected_lower_bounds": (
            stats.corrected_lower_bounds,
            dict(counts=counts, n=10, alpha=0.1, method="rank_levels"),
            dict(counts="counts", n="n", alpha="prob_scalar", method="choice"),
        ),
        "holm_threshold_test": (
            stats.holm_threshold_test,
            dict(counts=counts, n=10, tau=0.6, alpha=0.1),
            dict(counts="counts", n="n", tau="prob_scalar", alpha="prob_scalar"),
        ),
        "dkw_epsilon": (
            stats.dkw_epsilon,
            dict(n=100, level=0.1),
            dict(n="n_any", level="prob_array"),
        ),
        "mean_bounds": (
            stats.mean_bounds,
            dict(samples=samples, level=0.1, axis=0, num_thresholds=None),
            dict(samples="unit_samples", level="level", num_thresholds="opt_pos_int"),
        ),
        "second_moment_upper": (
            stats.second_moment_upper,
            dict(samples=samples, center=0.5, level=0.1, axis=0, num_thresholds=8),
            dict(samples="unit_samples", center="finite", level="level"),
        ),
        "mean_bounds_from_histogram": (
            stats.mean_bounds_from_histogram,
            dict(hist=hist, bin_edges=edges, level=0.1),
            dict(level="level"),
        ),
        "second_moment_upper_from_histogram": (
            stats.second_moment_upper_from_histogram,
            dict(hist=hist, bin_edges=edges, center=0.4, level=0.1),
            dict(center="finite", level="level"),
        ),
    }


BAD["hist"] = [
    [[1, -1, 0, 0]] * 3,
    [[0, 0, 0, 0]] * 3,
    [[1.5, 0, 0, 0]] * 3,
    np.zeros((3, 0)),
    [[NAN, 1, 1, 1]] * 3,
    "h",
    None,
    5,
]
BAD["bin_edges"] = [
    [0, 0.5, 0.25, 0.75, 1],
    [0.1, 0.2, 0.3, 0.4, 1],
    [0, 0.2, 0.4, 0.6, 0.9],
    [0, 0.5, 1],
    [0, NAN, 0.5, 0.7, 1],
    "e",
    None,
]
BAD["axis"] = [2, -3, 0.5, "0", None]


def _stats_extra():
    specs = _stats_specs()
    for name in ("mean_bounds_from_histogram", "second_moment_upper_from_histogram"):
        specs[name][2].update(hist="hist", bin_edges="bin_edges")
    for name in ("mean_bounds", "second_moment_upper"):
        specs[name][2]["axis"] = "axis"
    return specs


def _base_cert_specs():
    pred = np.array([0, 1, 1])
    p_lower = np.array([0.2, 0.9, 0.99])
    group = np.array([0, 1, 1])
    stds = np.array([[0.25, 0.5], [0.5, 0.25]])
    certs = base_certs.gaussian(pred, p_lower, group, stds)
    return {
        "gaussian": (
            base_certs.gaussian,
            dict(prediction=pred, p_lower=p_lower, group=group, stds=stds),
            dict(prediction="labels", p_lower="p_lower", group="group", stds="scales"),
        ),
        "uniform_l1": (
            base_certs.uniform_l1,
            dict(prediction=pred, p_lower=p_lower, group=group, half_widths=stds),
            dict(prediction="labels", p_lower="p_lower", group="group", half_widths="scales"),
        ),
        "laplace_l1": (
            base_certs.laplace_l1,
            dict(prediction=pred, p_lower=p_lower, group=group, scales=stds),
            dict(prediction="labels", p_lower="p_lower", group="group", scales="scales"),
        ),
        "isotropic_radius": (
            base_certs.isotropic_radius,
            dict(p_lower=p_lower, sigma=0.25),
            dict(p_lower="p_lower", sigma="sigma"),
        ),
        "variance_constrained": (
            base_certs.variance_constrained,
            dict(
                prediction=pred,
                mu_lower=[0.3, 0.8, 0.9],
                zeta_upper=[0.1, 0.05, 0.01],
                group=group,
                weights=np.ones((2, 2, 2)),
                norm="binary",
            ),
            dict(
                prediction="labels",
                mu_lower="mu",
                zeta_upper="zeta",
                group="group",
                weights="weights",
                norm="choice",
            ),
        ),
        "bernoulli_costs": (
            base_certs.bernoulli_costs,
            dict(theta_plus=[0.01, 0.1], theta_minus=0.6),
            dict(theta_plus="prob_array", theta_minus="prob_array"),
        ),
        "sparse_smoothing_worst_mass": (
            base_certs.sparse_smoothing_worst_mass,
            dict(p_lower=p_lower, theta_plus=0.01, theta_minus=0.6, r_add=1, r_del=2),
            dict(
                p_lower="p_lower",
                theta_plus="prob_scalar",
                theta_minus="prob_scalar",
                r_add="nonneg_int",
                r_del="nonneg_int",
            ),
        ),
        "sparse_smoothing_grid": (
            base_certs.sparse_smoothing_grid,
            dict(p_lower=p_lower, theta_plus=0.01, theta_minus=0.6, max_add=2, max_del=3),
            dict(
                p_lower="p_lower",
                theta_plus="prob_scalar",
                theta_minus="prob_scalar",
                max_add="nonneg_int",
                max_del="nonneg_int",
            ),
        ),
        "budget_totals": (
            base_certs.budget_totals,
            dict(norm="l2", budgets=[0.0, 0.5, 1.0]),
            dict(norm="choice", budgets="budgets"),
        ),
        "naive_certified": (
            base_certs.naive_certified,
            dict(base_certs=certs, budgets=[0.0, 0.5]),
            dict(base_certs="not_certs", budgets="budgets"),
        ),
        "make_base_certificates": (
            base_certs.make_base_certificates,
            dict(
                prediction=pred,
                abstain=[True, False, False],
                eta=[0.0, 1.0, 2.0],
                group=group,
                weights=np.ones((1, 2, 2)),
                norm="l2",
            ),
            dict(
                prediction="labels",
                abstain="mask",
                eta="eta",
                group="group",
                weights="weights",
                norm="choice",
            ),
        ),
    }


BAD["labels"] = [[0, 1.5, 1], [0, NAN, 1], [0, 1], [[0, 1, 1]], "abc", None, [True, False, True]]
BAD["p_lower"] = [[0.2, 1.0, 0.5], [-0.1, 0.5, 0.5], [NAN, 0.5, 0.5], [0.2, 1.5, 0.9], "p", None]
BAD["group"] = [[0, 2, 1], [-1, 0, 0], [0, 0.5, 1], [0, 1], [[0, 1, 1]], None]
BAD["scales"] = [
    [[0.25, 0.0], [0.5, 0.25]],
    [[0.25, -1], [0.5, 0.25]],
    [[NAN, 0.5], [0.5, 0.2]],
    [0.25, 0.5],
    np.ones((1, 2, 2)),
    "s",
    None,
]
BAD["mu"] = [[0.2, 1.01, 0.5], [-0.1, 0.5, 0.5], [NAN, 0.5, 0.5], [0.5, 0.5], "p", None]
BAD["sigma"] = [0.0, -1.0, NAN, INF, "s", None]
BAD["zeta"] = [[0.0, 0.1, 0.1], [-0.1, 0.1, 0.1], [NAN, 0.1, 0.1], [INF, 0.1, 0.1], [0.1, 0.1]]
BAD["weights"] = [
    -np.ones((2, 2, 2)),
    np.full((2, 2, 2), NAN),
    np.ones((2, 2)),
    np.ones((3, 2, 2)),
    np.ones((2, 1, 2)),
    "w",
    None,
]
BAD["budgets"] = [[-0.1], [0.1, NAN], [INF], [[0.1, 0.2]], "b", None]
BAD["not_certs"] = [None, "certs", {"eta": [1.0]}, (1, 2, 3)]
BAD["mask"] = [[1, 0, 0], [0.0, 1.0, 1.0], [True, False], "m", None]
BAD["eta"] = [[0.0, -1.0, 2.0], [0.0, 0.0, 2.0], [0.0, NAN, 2.0], [0.0, INF, 1.0], [1.0, 2.0]]


def _noise_specs():
    return {
        "localized_gaussian": (
            noise.localized_gaussian,
            dict(image_shape=(3, 6, 8), grid_shape=(2, 3), std_min=0.1, std_max=0.5),
            dict(image_shape="image_shape", grid_shape="grid", std_min="sigma", std_max="sigma"),
        ),
        "localized_stds": (
            noise.localized_stds,
            dict(grid_shape=(2, 3), std_min=0.1, std_max=0.5, mask_distance=None),
            dict(grid_shape="pair", std_min="sigma", std_max="sigma", mask_distance="opt_pos_int"),
        ),
        "grid_cells": (
            noise.grid_cells,
            dict(image_shape=(6, 8), grid_shape=(2, 3)),
            dict(image_shape="image_shape", grid_shape="grid"),
        ),
        "isotropic_gaussian": (
            noise.isotropic_gaussian,
            dict(image_shape=(6, 8), sigma=0.25),
            dict(image_shape="image_shape"),  # sigma: see test_minor_unclear_errors
        ),
        "clustered_bernoulli": (
            noise.clustered_bernoulli,
            dict(
                cluster_ids=[0, 0, 1, 2],
                rank_matrix=[[0, 1, 2], [1, 0, 2], [2, 1, 0]],
                theta_plus=[0.1, 0.05, 0.01],
                theta_minus=0.6,
            ),
            dict(
                cluster_ids="cluster_ids",
                rank_matrix="ranks",
                theta_plus="prob_array",
                theta_minus="prob_array",
            ),
        ),
        "isotropic_bernoulli": (
            noise.isotropic_bernoulli,
            dict(num_nodes=5, theta_plus=0.01, theta_minus=0.6),
            dict(num_nodes="pos_int", theta_plus="prob_scalar", theta_minus="prob_scalar"),
        ),
        "rank_flip_probabilities": (
            noise.rank_flip_probabilities,
            dict(num_clusters=3, theta_plus_range=(0.1, 0.01), theta_minus_range=(0.5, 0.9)),
            dict(
                num_clusters="pos_int", theta_plus_range="prob_pair", theta_minus_range="prob_pair"
            ),
        ),
        "affinity_ranks": (
            noise.affinity_ranks,
            dict(adjacency=np.ones((4, 4)) - np.eye(4), cluster_ids=[0, 0, 1, 1]),
            dict(adjacency="adjacency", cluster_ids="cluster_ids"),
        ),
    }


BAD["image_shape"] = [(0, 6), (6, 0), (3, 2, 6, 8), (6,), (-1, 6), (1.5, 6), "6x8"]
BAD["grid"] = [(0, 3), (3, 0), (7, 3), (2, 9), (-1, 2), (1.5, 2), (2,), "2x3"]
BAD["cluster_ids"] = [[0, 0, 2, 3], [-1, 0, 1, 2], [0, 0.5, 1, 2], [], [[0, 0, 1, 2]], None, "c"]
BAD["ranks"] = [
    [[0, 1, 2], [0, 1, 2], [2, 1, 0]],
    [[0, 1], [1, 0]],
    [[0, 1, 1], [1, 0, 2], [2, 1, 0]],
    [[1, 0, 2], [1, 0, 2], [2, 1, 0]],
    None,
    "r",
]
BAD["prob_pair"] = [(0.0, 0.1), (0.1, 1.0), (0.1,), (0.1, 0.2, 0.3), (NAN, 0.1), "p", None]
BAD["adjacency"] = [np.ones((3, 3)), np.ones((4, 5)), np.ones(4)]


def _collective_specs():
    from lrsjax import collective

    l2 = base_certs.gaussian([0, 1, 1], [0.9, 0.95, 0.99], [0, 0, 1], [[0.5, 1.0], [1.0, 0.5]])
    binary = base_certs.variance_constrained(
        [0, 1], [0.9, 0.8], [0.01, 0.02], [0, 1], np.ones((2, 2, 2)), norm="binary"
    )
    broken = {
        "negative weights": l2._replace(weights=-l2.weights),
        "NaN weights": l2._replace(weights=l2.weights * NAN),
        "infinite eta": l2._replace(eta=np.array([INF, 1.0, 1.0])),
        "negative eta": l2._replace(eta=np.array([-1.0, 1.0, 1.0])),
        "group out of range": l2._replace(group=np.array([0, 5, 1])),
        "short eta": l2._replace(eta=np.array([1.0, 1.0])),
        "not certificates": (1, 2, 3),
    }
    BAD["base_certs"] = list(broken.values()) + [None, "certs"]
    BAD["targets"] = [np.ones(2, bool), [0, 1, 1], np.ones(4, bool), "all", [0.0, 1.0, 1.0]]
    BAD["not_base_certs"] = [None, "certs", (1, 2, 3), {"eta": [1.0]}]
    BAD["budgets_l2"] = [[-0.1], [0.1, NAN], [INF], [[0.1, 0.2]], "b", None]
    BAD["budgets_binary"] = [[[-1, 1]], [[0, NAN]], [[INF, 0]], [[1, 2, 3]], "b", None]
    BAD["num_bins"] = [0, -1, 1.5, NAN, "4", True]
    BAD["time_limit_s"] = [0, -1.0, NAN, INF, "10", True]
    BAD["milp_solver"] = ["cplex", "", None, 1]
    common = dict(
        targets="targets",
        num_bins="num_bins",
        mode="choice",
        time_limit_s="time_limit_s",
        milp_solver="milp_solver",
    )
    return {
        "certify_collective (l2)": (
            collective.certify_collective,
            dict(
                base_certs=l2,
                budgets=[0.0, 0.3, 0.6],
                targets=None,
                num_bins=None,
                mode="milp",
                time_limit_s=None,
            ),
            dict(base_certs="base_certs", budgets="budgets_l2", **common),
        ),
        "certify_collective (binary)": (
            collective.certify_collective,
            dict(
                base_certs=binary, budgets=[[0, 1], [1, 0]], targets=None, num_bins=4, mode="hull"
            ),
            dict(
                budgets="budgets_binary",
                num_bins="num_bins",
                mode="choice",
            ),
        ),
        "from_base_certs": (
            collective.from_base_certs,
            dict(base_certs=l2, targets=np.ones(3, bool)),
            dict(base_certs="not_base_certs", targets="targets"),
        ),
        "binning": (collective.binning, dict(num_bins=4), dict(num_bins="num_bins")),
        "solve": (
            collective.solve,
            dict(problem=collective.from_base_certs(l2), budgets=[0.1], mode="lp"),
            dict(problem="not_certs", budgets="budgets_l2", mode="choice"),
        ),
    }


SPECS = {**_stats_extra(), **_base_cert_specs(), **_noise_specs(), **_collective_specs()}


@pytest.mark.parametrize("function", sorted(SPECS))
@given(data=st.data())
def test_public_function_rejects_bad_argument(function, data):
    fn, valid, fuzzed = SPECS[function]
    name = data.draw(st.sampled_from(sorted(fuzzed)), label="argument")
    value = data.draw(_bad_values(fuzzed[name]), label="bad value")
    kwargs = dict(valid, **{name: value})
    expect_clear_error(lambda: fn(**kwargs), name)


@pytest.mark.parametrize("function", sorted(SPECS))
def test_valid_arguments_of_the_tables_work(function):
    """The tables above are valid, so every rejection in the fuzz test is due to the bad value."""
    fn, valid, _ = SPECS[function]
    fn(**valid)


# ------------------------------------------------------------------------------------------------
# Valid but extreme inputs: finite, in-range answers, no crash
# ------------------------------------------------------------------------------------------------


@given(
    n=st.integers(1, 2**40),
    frac=st.floats(0, 1),
    level=st.floats(1e-300, 0.5),
    size=st.integers(0, 4),
)
def test_binomial_bounds_at_extremes(n, frac, level, size):
    counts = np.full(size, int(round(frac * n)))
    lower = stats.clopper_pearson_lower(counts, n, level)
    upper = stats.clopper_pearson_upper(counts, n, level)
    assert lower.shape == upper.shape == (size,)
    assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
    assert np.all((0 <= lower) & (lower <= counts / n + 1e-12))
    assert np.all((counts / n - 1e-12 <= upper) & (upper <= 1))
    for method in ("bonferroni", "rank_levels"):
        bounds = stats.corrected_lower_bounds(counts, n, min(level, 0.5), method)
        assert np.all(np.isfinite(bounds)) and np.all(bounds <= lower + 1e-12)


@given(
    n=st.integers(1, 50),
    level=st.floats(1e-300, 0.999),
    atoms=st.lists(st.sampled_from([0.0, 1.0, 0.5, 1e-300, 1 - 1e-16]), min_size=1, max_size=5),
)
def test_dkw_bounds_at_extremes(n, level, atoms):
    samples = np.resize(np.asarray(atoms), n)
    lower, upper = stats.mean_bounds(samples, level)
    zeta = stats.second_moment_upper(samples, samples.mean(), level)
    assert 0 <= lower <= samples.mean() + 1e-12 <= upper + 2e-12 <= 1 + 2e-12
    assert np.isfinite(zeta) and zeta >= samples.var() - 1e-12


# ================================================================================================
# lrsjax.certify: every argument (validation happens before anything is compiled)
# ================================================================================================

CI, HI, WI = 1, 4, 4


def _image_model(params, z):
    s = jnp.sum(z) * params * jnp.ones((HI, WI))
    return jnp.stack([-s, s], axis=-1)


CERTIFY_VALID = dict(
    key=jax.random.key(0),
    apply_fn=_image_model,
    params=1.0,
    x=np.full((CI, HI, WI), 0.5),
    smoothing=noise.localized_gaussian((CI, HI, WI), (2, 2), 0.2, 0.5),
    n0=4,
    n=8,
    alpha=0.1,
    batch_size=8,
)
BAD["x_image"] = [
    np.full((CI, HI, WI), NAN),
    np.full((CI, HI, WI), INF),
    np.zeros((HI, WI)),
    np.zeros((CI, HI + 1, WI)),
    np.zeros((1, CI, HI, WI)),
    "x",
    None,
]
BAD["smoothing"] = [
    None,
    "gaussian",
    noise.localized_gaussian((5, 5), (1, 1), 0.1, 0.1)._replace(
        parameters={"stds": np.array([[-1.0]])}
    ),
    (1, 2),
]
BAD["outputs"] = [
    np.array([], int),
    [16],
    [-1],
    [1.5],
    np.ones(3, bool),
    np.zeros(16, bool),
    [[0, 1]],
    "all",
]
BAD["apply_fn"] = [
    None,
    3,
    lambda p, z: jnp.zeros((3, 2)),
    lambda p, z: jnp.zeros((HI, WI, 0)),
    lambda p, z: (z, z),
    lambda p, z: z.undefined_attribute,
]
CERTIFY_FUZZED = dict(
    x="x_image",
    smoothing="smoothing",
    n0="pos_int",
    n="pos_int",
    alpha="prob_scalar",
    batch_size="pos_int",
    correction="choice",
    outputs="outputs",
    certificate="choice",
    apply_fn="apply_fn",
    num_bins="pos_int",
)


@given(data=st.data())
def test_certify_rejects_bad_argument_before_compiling(data):
    name = data.draw(st.sampled_from(sorted(CERTIFY_FUZZED)), label="argument")
    value = data.draw(_bad_values(CERTIFY_FUZZED[name]), label="bad value")
    kwargs = dict(CERTIFY_VALID, **{name: value})
    if name == "num_bins":
        kwargs["certificate"] = "variance"
    expect_clear_error(lambda: lrsjax.certify(**kwargs), name)


@pytest.mark.parametrize("tau", [None, 0.5, 0.2, 1.0, NAN])
def test_certify_holm_needs_a_threshold_above_one_half(tau):
    kwargs = dict(CERTIFY_VALID, correction="holm", tau=tau)
    expect_clear_error(lambda: lrsjax.certify(**kwargs), "tau")


def test_certify_bernoulli_inputs():
    sm = noise.isotropic_bernoulli(3, 0.1, 0.5)

    def model(params, x):
        return jnp.zeros((3, 2))

    base = dict(
        key=jax.random.key(0),
        apply_fn=model,
        params=None,
        smoothing=sm,
        n0=2,
        n=2,
        alpha=0.1,
        batch_size=2,
    )
    cases = {
        "x": np.full((3, 2), 0.5),  # not binary
        "num_features": None,  # sparse input without F
    }
    expect_clear_error(lambda: lrsjax.certify(x=cases["x"], **base), "x")
    sparse = lrsjax._sparse.from_scipy(np.eye(3, 2), capacity=4)
    expect_clear_error(lambda: lrsjax.certify(x=sparse, **base), "num_features")
    out_of_range = lrsjax._sparse.SparseBinary(np.array([5]), np.array([0]), np.array([True]))
    expect_clear_error(lambda: lrsjax.certify(x=out_of_range, num_features=2, **base), "x")
    expect_clear_error(
        lambda: lrsjax.certify(x=sparse, num_features=2, addition_capacity=0, **base),
        "addition_capacity",
    )
    expect_clear_error(
        lambda: lrsjax.certify(
            x=np.eye(3, 2), certificate="neyman_pearson", max_flips=(-1, 2), **base
        ),
        "max_flips",
    )
    # a grid too large for memory is refused up front (before sampling), naming max_flips
    expect_clear_error(
        lambda: lrsjax.certify(
            x=np.eye(3, 2), certificate="neyman_pearson", max_flips=(10**5, 10**5), **base
        ),
        "max_flips",
    )


@pytest.mark.parametrize("key", [0, None, "key", np.arange(3)], ids=["int", "None", "str", "arr"])
def test_certify_rejects_a_bad_key(key):
    kwargs = dict(CERTIFY_VALID, key=key)
    expect_clear_error(lambda: lrsjax.certify(**kwargs), "key")


@pytest.mark.parametrize(
    "where", ["stats", "base_certs", pytest.param("certify", marks=pytest.mark.slow)]
)
def test_complex_input_is_rejected(where):
    import warnings

    calls = {
        # (Python complex scalars and lists are rejected; numpy complex arrays get through)
        "stats": ("level", lambda: stats.dkw_epsilon(10, np.array([0.1 + 0.2j]))),
        "base_certs": (
            "p_lower",
            lambda: base_certs.isotropic_radius(np.array([0.9 + 0.5j]), 0.25),
        ),
        "certify": (  # compiles: the complex image is accepted
            "x",
            lambda: lrsjax.certify(**dict(CERTIFY_VALID, x=np.full((CI, HI, WI), 0.5 + 0.5j))),
        ),
    }
    name, call = calls[where]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expect_clear_error(call, name)


@pytest.mark.parametrize("field", ["weights", "eta", "group"])
def test_naive_certified_revalidates_hand_built_certificates(field):
    certs = base_certs.gaussian([0, 1], [0.9, 0.95], [0, 0], [[0.5]])
    broken = {
        "weights": certs.weights * -1.0,
        "eta": np.array([INF, 1.0]),
        "group": np.array([0, 5]),
    }[field]
    bad = certs._replace(**{field: broken})
    expect_clear_error(lambda: base_certs.naive_certified(bad, [10.0]), field)


@pytest.mark.parametrize("mode", ["lp", "hull"])
def test_collective_huge_budget(mode):
    from lrsjax import collective

    certs = base_certs.gaussian([0, 1], [0.9, 0.95], [0, 1], [[0.5, 1.0], [1.0, 0.5]])
    try:
        res = collective.certify_collective(certs, [1e200], mode=mode)
    except ValueError as error:
        assert "budget" in str(error), str(error)
    else:
        assert res.certified.tolist() == [0]


MINOR_UNCLEAR_ERRORS = {
    # name: (argument that must be named, call)
    "isotropic_radius sigma shape": (
        "sigma",
        lambda: base_certs.isotropic_radius([0.9, 0.8], [1.0, 2.0, 3.0]),
    ),
    "affinity_ranks string adjacency": ("adjacency", lambda: noise.affinity_ranks("a", [0, 1])),
    "affinity_ranks NaN adjacency": (
        "adjacency",
        lambda: noise.affinity_ranks(np.full((2, 2), NAN), [0, 1]),
    ),
    "isotropic_gaussian sigma 0 (error names std_min)": (
        "sigma",
        lambda: noise.isotropic_gaussian((6, 8), 0.0),
    ),
    "grid_cells image_shape None": ("image_shape", lambda: noise.grid_cells(None, (1, 1))),
    "synthetic_segmentation pixel_noise None": (
        "pixel_noise",
        lambda: data.synthetic_segmentation(
            jax.random.key(0), 1, image_shape=(8, 8), pixel_noise=None
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(MINOR_UNCLEAR_ERRORS))
def test_minor_unclear_errors(case):
    name, call = MINOR_UNCLEAR_ERRORS[case]
    expect_clear_error(call, name)


# ================================================================================================
# lrsjax.sampling.make_counter
# ================================================================================================

COUNTER_VALID = dict(
    apply_fn=_image_model,
    smoothing=CERTIFY_VALID["smoothing"],
    mode="votes",
    batch_size=4,
    num_classes=2,
)


@given(data=st.data())
def test_make_counter_rejects_bad_argument(data):
    fuzzed = dict(
        mode="choice",
        batch_size="pos_int",
        num_classes="pos_int",
        num_bins="pos_int",
        smoothing="smoothing",
    )
    name = data.draw(st.sampled_from(sorted(fuzzed)), label="argument")
    value = data.draw(_bad_values(fuzzed[name]), label="bad value")
    kwargs = dict(COUNTER_VALID, **{name: value})
    expect_clear_error(lambda: sampling.make_counter(**kwargs), name)


def test_counter_call_rejects_bad_arguments():
    count = sampling.make_counter(**COUNTER_VALID)
    key, x = jax.random.key(0), CERTIFY_VALID["x"]
    expect_clear_error(lambda: count(key, 1.0, x, 0), "num_samples")
    expect_clear_error(lambda: count(key, 1.0, x, 2**31), "num_samples")
    expect_clear_error(lambda: count(key, 1.0, x, 4, active=np.ones(3, bool)), "active")
    expect_clear_error(lambda: count(key, 1.0, x, 4, target=np.zeros((2, 2))), "target")
    bernoulli = noise.isotropic_bernoulli(3, 0.1, 0.5)
    expect_clear_error(
        lambda: sampling.make_counter(
            _image_model, bernoulli, mode="votes", batch_size=2, num_classes=2
        ),
        "num_cols",
    )


COUNTER_UNCHECKED = {
    "x of the wrong shape": ("x", lambda c: c(jax.random.key(0), 1.0, np.zeros((1, 5, 5)), 8)),
    "x with NaN": ("x", lambda c: c(jax.random.key(0), 1.0, np.full((CI, HI, WI), NAN), 8)),
    "int key": ("key", lambda c: c(0, 1.0, np.zeros((CI, HI, WI)), 8)),
    "num_classes above the model's": (
        "num_classes",
        lambda c: sampling.make_counter(**dict(COUNTER_VALID, num_classes=3))(
            jax.random.key(0), 1.0, np.zeros((CI, HI, WI)), 8
        ),
    ),
}


@pytest.mark.slow  # every case compiles a kernel
@pytest.mark.parametrize("case", sorted(COUNTER_UNCHECKED))
def test_counter_validates_its_call(case):
    name, call = COUNTER_UNCHECKED[case]
    count = sampling.make_counter(**COUNTER_VALID)
    expect_clear_error(lambda: call(count), name)


# ================================================================================================
# Files: npz graphs (pickled objects!), checkpoints, result directories, data set folders
# ================================================================================================


class _Booby:
    """Unpickling this object creates a marker file: proof that someone called pickle.load."""

    marker = None

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _graph_arrays(rng, num_nodes=6, num_features=5):
    adj = (rng.random((num_nodes, num_nodes)) < 0.5).astype(np.float32)
    adj = np.maximum(adj, adj.T)
    attr = (rng.random((num_nodes, num_features)) < 0.4).astype(np.float32)
    return {
        "adj_matrix": adj,
        "attr_matrix": attr,
        "labels": rng.integers(0, 3, num_nodes),
    }


_NPZ_CORRUPTIONS = [
    "drop adj_matrix",
    "drop labels",
    "labels float",
    "labels negative",
    "labels 2d",
    "labels short",
    "adj non-square",
    "attr short",
    "adj object",
    "labels object",
    "attr object",
    "extra object",
    "csr indptr short",
    "csr indices out of range",
    "csr shape negative",
    "csr partial",
    "names object",
    "class_names short",
    "adj 3d",
    "attr strings",
]


def _corrupt_npz(arrays: dict, how: str, marker: pathlib.Path) -> dict:
    arrays = dict(arrays)
    booby = _Booby()
    booby.marker = str(marker)
    obj = np.array([booby, 1], dtype=object)
    n = arrays["labels"].shape[0]
    if how.startswith("csr"):
        adj = arrays.pop("adj_matrix")
        rows, cols = np.nonzero(adj)
        parts = {
            "data": np.ones(rows.size),
            "indices": cols,
            "shape": np.array(adj.shape),
            "indptr": np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]),
        }
        if how == "csr indptr short":
            parts["indptr"] = parts["indptr"][:-2]
        elif how == "csr indices out of range":
            parts["indices"] = parts["indices"] + 100
        elif how == "csr shape negative":
            parts["shape"] = np.array([-n, n])
        elif how == "csr partial":
            del parts["indptr"]
        elif how == "csr data nan":
            parts["data"] = np.full(rows.size, NAN)
        arrays.update({f"adj_matrix.{k}": v for k, v in parts.items()})
        return arrays
    edits = {
        "drop adj_matrix": lambda a: a.pop("adj_matrix"),
        "drop labels": lambda a: a.pop("labels"),
        "labels float": lambda a: a.update(labels=a["labels"] + 0.5),
        "labels negative": lambda a: a.update(labels=a["labels"] - 5),
        "labels 2d": lambda a: a.update(labels=a["labels"][:, None]),
        "labels short": lambda a: a.update(labels=a["labels"][:-1]),
        "adj non-square": lambda a: a.update(adj_matrix=a["adj_matrix"][:, :-1]),
        "attr short": lambda a: a.update(attr_matrix=a["attr_matrix"][:-1]),
        "adj object": lambda a: a.update(adj_matrix=obj),
        "labels object": lambda a: a.update(labels=obj),
        "attr object": lambda a: a.update(attr_matrix=obj),
        "extra object": lambda a: a.update(payload=obj),
        "names object": lambda a: a.update(node_names=obj),
        "class_names short": lambda a: a.update(class_names=np.array(["a"])),
        "adj 3d": lambda a: a.update(adj_matrix=a["adj_matrix"][None]),
        "attr strings": lambda a: a.update(attr_matrix=np.array([["x"] * 5] * n)),
    }
    edits[how](arrays)
    return arrays


@given(how=st.sampled_from(_NPZ_CORRUPTIONS), seed=st.integers(0, 2**16))
def test_npz_graph_loader_never_unpickles_and_fails_clearly(tmp_path_factory, how, seed):
    folder = tmp_path_factory.mktemp("npz")
    marker = folder / "UNPICKLED"
    arrays = _corrupt_npz(_graph_arrays(np.random.default_rng(seed)), how, marker)
    path = folder / "graph.npz"
    np.savez(path, **arrays)
    try:
        graph = data.load_npz_graph(path)
    except (ValueError, FileNotFoundError) as error:
        assert "graph.npz" in str(error) or "`" in str(error), str(error)
    else:
        # accepted: only optional object fields may have been skipped, and they are reported
        assert how in ("extra object", "names object"), f"{how} was accepted"
        assert graph.unavailable
    assert not marker.exists(), "the loader unpickled an object from the npz file"


@pytest.mark.parametrize("value", [NAN, INF])
def test_npz_graph_loader_rejects_non_finite_entries(tmp_path, value):
    arrays = _corrupt_npz(_graph_arrays(np.random.default_rng(0)), "csr data nan", tmp_path / "m")
    arrays["adj_matrix.data"] = np.full_like(arrays["adj_matrix.data"], value)
    np.savez(tmp_path / "graph.npz", **arrays)
    expect_clear_error(lambda: data.load_npz_graph(tmp_path / "graph.npz"), "adj_matrix")


@pytest.mark.parametrize(
    "content", [b"", b"not a zip", b"PK\x03\x04 truncated zip", pickle.dumps({"adj": 1})]
)
def test_npz_graph_loader_rejects_non_archives(tmp_path, content):
    path = tmp_path / "graph.npz"
    path.write_bytes(content)
    expect_clear_error(lambda: data.load_npz_graph(path), "path")
    expect_clear_error(
        lambda: data.load_npz_graph(tmp_path / "missing.npz"), "path", errors=(FileNotFoundError,)
    )


@pytest.mark.parametrize("loader", [data.load_pascal_voc, data.load_cityscapes])
def test_dataset_loaders_missing_folders(tmp_path, loader):
    expect_clear_error(lambda: loader(tmp_path / "nowhere"), "nowhere", errors=(FileNotFoundError,))
    expect_clear_error(lambda: loader(tmp_path), str(tmp_path), errors=(FileNotFoundError,))
    expect_clear_error(lambda: loader(tmp_path, split="test-ish"), "split")
    expect_clear_error(lambda: loader(tmp_path, scale=0.0), "scale")
    expect_clear_error(lambda: loader(tmp_path, scale=NAN), "scale")
    expect_clear_error(lambda: loader(tmp_path, max_images=0), "max_images")


def _voc_folder(root: pathlib.Path, image_bytes: bytes | None = None):
    from PIL import Image

    voc = root / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(np.zeros((8, 10), np.uint8), mode="L").save(
            voc / "SegmentationClass" / f"{name}.png"
        )
    if image_bytes is not None:
        (voc / "JPEGImages" / "b.jpg").write_bytes(image_bytes)
    return voc


def test_voc_loader_broken_folders(tmp_path):
    voc = _voc_folder(tmp_path / "ok")
    assert data.load_pascal_voc(tmp_path / "ok", scale=1.0).images.shape == (2, 3, 8, 10)
    (voc / "SegmentationClass" / "b.png").unlink()
    expect_clear_error(
        lambda: data.load_pascal_voc(tmp_path / "ok"), "b.png", errors=(FileNotFoundError,)
    )
    voc = _voc_folder(tmp_path / "empty_list")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("")
    expect_clear_error(lambda: data.load_pascal_voc(tmp_path / "empty_list"), "empty")


def test_voc_loader_corrupt_image(tmp_path):
    _voc_folder(tmp_path, image_bytes=b"this is not a jpeg")
    expect_clear_error(lambda: data.load_pascal_voc(tmp_path), "b.jpg")


BAD_CHECKPOINT_FILES = {
    "missing": None,
    "empty": b"",
    "garbage": b"\x00\x01garbage",
    "pickle": pickle.dumps({"params": 1}),
}


def _checkpoint_case(tmp_path, content, metadata):
    path = tmp_path / "model.msgpack"
    if BAD_CHECKPOINT_FILES[content] is not None:
        path.write_bytes(BAD_CHECKPOINT_FILES[content])
    meta = {
        "good": '{"format": "lrsjax-segmentation-v1", "model_class": "UNet", "model_config": '
        '{"num_classes": 2, "depth": 1, "base_width": 4}, "input_shape": [1, 8, 8], "extra": {}}',
        "missing": None,
        "garbage": "{not json",
        "not a dict": "[1, 2]",
    }[metadata]
    if meta is not None:
        (tmp_path / "model.msgpack.json").write_text(meta)
    return path


@pytest.mark.parametrize("content", sorted(BAD_CHECKPOINT_FILES))
@pytest.mark.parametrize("metadata", ["good", "missing"])
def test_segmentation_checkpoint_loader(tmp_path, content, metadata):
    path = _checkpoint_case(tmp_path, content, metadata)
    try:
        training.load_segmentation_model(path)
    except (ValueError, FileNotFoundError) as error:
        assert "model.msgpack" in str(error), str(error)
    else:
        raise AssertionError("a broken checkpoint was loaded")


@pytest.mark.parametrize("metadata", ["garbage", "not a dict"])
def test_segmentation_checkpoint_bad_metadata(tmp_path, metadata):
    path = _checkpoint_case(tmp_path, "garbage", metadata)
    expect_clear_error(lambda: training.load_segmentation_model(path), "model.msgpack")


# ------------------------------------------------------------------------------------------------
# Result directories
# ------------------------------------------------------------------------------------------------


def _record(item_id="img0", num_certified=(3, 1)):
    prediction = np.array([0, 1, 1, 0])
    method = results.method_record(
        "lp", [0.0, 0.5], list(num_certified), [1, 1], solver="GLOP", status="OPTIMAL"
    )
    return results.item_record(
        item_id,
        task="image",
        budget_kind="l2",
        num_classes=2,
        prediction=prediction,
        labels=np.array([0, 1, 0, 0]),
        abstain=np.zeros(4, bool),
        methods={"localized_lp": method},
    )


BAD_ITEM_IDS = ["", ".hidden", "a/b", "../up", "x" * 300, "a b", None, 3, "a\x00b"]


@given(item_id=st.sampled_from(BAD_ITEM_IDS))
def test_result_item_ids_are_checked(tmp_path_factory, item_id):
    run = results.RunDir.start(tmp_path_factory.mktemp("run"), {"task": "image", "a": 1})
    expect_clear_error(lambda: run.write_item(item_id, _record(), {}), "item_id")


@given(
    field=st.sampled_from(["num_certified", "confusion", "budgets", "num_classes", "methods"]),
    value=st.sampled_from([-1, [NAN, 1], "x", None, [[1, 2]], {}]),
)
def test_item_record_validation(field, value):
    record = _record()
    if field in ("num_certified", "budgets"):
        record["methods"]["localized_lp"][field] = value
    else:
        record[field] = value
    expect_clear_error(lambda: results.validate_item_record(record), field)


def test_result_arrays_refuse_objects_and_pickled_npz_is_not_loaded(tmp_path):
    run = results.RunDir.start(tmp_path / "run", {"task": "image", "a": 1})
    expect_clear_error(
        lambda: run.write_item("img0", _record(), {"x": np.array([None, 1])}), "arrays"
    )
    run.write_item("img0", _record(), {"prediction": np.zeros(4, np.int32)})
    # replace the NPZ by one that carries a pickled object under the recorded name
    marker = tmp_path / "UNPICKLED"
    booby = _Booby()
    booby.marker = str(marker)
    np.savez(run.npz_path("img0"), prediction=np.array([booby], dtype=object))
    try:
        run.load_item("img0")
    except ValueError as error:
        assert "pickle" in str(error).lower() or "sha256" in str(error), str(error)
    except FileNotFoundError as error:  # the NPZ no longer matches its hash: the item is not done
        assert "not finished" in str(error), str(error)
    else:
        raise AssertionError("an NPZ with an object array was loaded")
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage", ["truncate json", "truncate npz", "garbage json", "no npz", "tmp leftovers"]
)
def test_damaged_items_are_not_done_and_summaries_survive(tmp_path, damage):
    run = results.RunDir.start(tmp_path / "run", {"task": "image", "a": 1})
    for i in range(2):
        run.write_item(f"img{i}", _record(f"img{i}"), {"prediction": np.zeros(4, np.int32)})
    json_path, npz_path = run.json_path("img1"), run.npz_path("img1")
    if damage == "truncate json":
        json_path.write_bytes(json_path.read_bytes()[:40])
    elif damage == "truncate npz":
        npz_path.write_bytes(npz_path.read_bytes()[:30])
    elif damage == "garbage json":
        json_path.write_text("[1, 2")
    elif damage == "no npz":
        npz_path.unlink()
    else:
        (run.items_dir / ".img1.json.123.tmp").write_text("{")
    done = run.done_items()
    assert "img0" in done
    assert ("img1" in done) == (damage == "tmp leftovers")
    if damage == "tmp leftovers":
        assert isinstance(results.summarize(run.path), dict)
        return
    # a broken item is never left out silently: named, unless skipped on request
    with pytest.raises(ValueError, match="img1"):
        results.summarize(run.path)
    summary = results.summarize(run.path, skip_broken=True)
    assert "img1" in summary["broken"]


@pytest.mark.parametrize("config", ["{", "[]", '{"schema_version": 99}', ""])
def test_damaged_run_config(tmp_path, config):
    (tmp_path / "config.json").write_text(config)
    expect_clear_error(lambda: results.RunDir.existing(tmp_path), "config.json")
    expect_clear_error(lambda: results.summarize(tmp_path), "config.json")
    expect_clear_error(
        lambda: results.RunDir.existing(tmp_path / "missing"),
        "missing",
        errors=(FileNotFoundError,),
    )


# ================================================================================================
# Data generators and other host-side entry points
# ================================================================================================


@given(
    arg=st.sampled_from(["num_images", "image_shape", "num_classes", "split", "pixel_noise"]),
    draw=st.data(),
)
def test_synthetic_segmentation_rejects_bad_argument(arg, draw):
    bad = {
        "num_images": BAD["pos_int"],
        "image_shape": [(0, 8), (4, 8), (8,), (8, 8, 8), None, (2000, 8)],
        "num_classes": [0, 1, 65, 300, -2, 1.5, None],
        "split": ["val!", "", None],
        "pixel_noise": [-0.1, 2.0, NAN, INF],
    }[arg]
    value = draw.draw(st.sampled_from(bad))
    kwargs = {"num_images": 2, "image_shape": (8, 8), arg: value}
    num_images = kwargs.pop("num_images")
    expect_clear_error(
        lambda: data.synthetic_segmentation(jax.random.key(0), num_images, **kwargs), arg
    )


SYNTHETIC_GRAPH_BAD = {
    "num_nodes": [0, 1, -1, 1.5, NAN, None],
    "num_classes": [0, -1, 1.5, None, 5000],
    "num_features": [0, -1, 1.5, None],
    "homophily": [-0.1, 1.5, NAN, INF, None],
    "feature_density": [-0.1, 1.0, NAN, None],
    "average_degree": [0, -1, NAN, INF, None],
}


@given(arg=st.sampled_from(sorted(SYNTHETIC_GRAPH_BAD)), draw=st.data())
def test_synthetic_graph_rejects_bad_argument(arg, draw):
    value = draw.draw(st.sampled_from(SYNTHETIC_GRAPH_BAD[arg]))
    kwargs = {"num_nodes": 20, arg: value}
    expect_clear_error(lambda: data.synthetic_graph(jax.random.key(0), **kwargs), arg)


@given(
    arg=st.sampled_from(["labels", "train_per_class", "val_per_class"]),
    draw=st.data(),
)
def test_split_nodes_rejects_bad_argument(arg, draw):
    labels = np.repeat(np.arange(3), 10)
    bad = {
        "labels": [labels + 0.5, labels[:, None], [], None],
        "train_per_class": [0, -1, 1.5, None, 11],
        "val_per_class": [-1, 1.5, None, 10],
    }[arg]
    kwargs = dict(labels=labels, train_per_class=1, val_per_class=1)
    kwargs[arg] = draw.draw(st.sampled_from(bad))
    expect_clear_error(lambda: data.split_nodes(jax.random.key(0), **kwargs), arg)


# ================================================================================================
# Command-line tools: bad flags in real subprocesses
# ================================================================================================

# (tool, flags, text the message must contain). Every case must fail with exit code != 0, a
# message naming the flag (or the path), and no Python traceback at all.
CLI_CASES = [
    ("certify", ["--grid=0x3"], "grid"),
    ("certify", ["--grid=abc"], "grid"),
    ("certify", ["--grid=3x"], "grid"),
    ("certify", ["--n0=0"], "n0"),
    ("certify", ["--n=-5"], "`n`"),
    ("certify", ["--alpha=1.5"], "alpha"),
    ("certify", ["--alpha=nan"], "alpha"),
    ("certify", ["--batch_size=0"], "batch_size"),
    ("certify", ["--dataset=imagenet"], "dataset"),
    ("certify", ["--dataset=pascal_voc"], "data_dir"),
    ("certify", ["--dataset=cityscapes", "--data_dir=/nonexistent/cs"], "/nonexistent/cs"),
    ("certify", ["--dataset=pascal_voc", "--data_dir=/nonexistent/voc"], "/nonexistent/voc"),
    ("certify", ["--budget_min=-1"], "budget_min"),
    ("certify", ["--budget_max=inf"], "budget_max"),
    ("certify", ["--mode=exact"], "mode"),
    ("certify", ["--time_limit_s=-1"], "time_limit_s"),
    ("certify", ["--std_min=0"], "std_min"),
    ("certify", ["--std_min=0.5", "--std_max=0.1"], "std_max"),
    ("certify", ["--sigma=-0.25"], "sigma"),
    ("certify", ["--num_bins=-1"], "num_bins"),
    ("certify", ["--correction=sidak"], "correction"),
    ("certify", ["--correction=holm", "--tau=0.4"], "tau"),
    ("certify", ["--n0=abc"], "n0"),
    ("certify", ["--foo=1"], "foo"),
    ("certify", ["stray_argument"], "stray_argument"),
    ("certify", ["--task=graph", "--image_size=8"], "image_size"),
    ("certify", ["--task=graph", "--num_clusters=0"], "num_clusters"),
    ("certify", ["--task=graph", "--theta_plus_min=0"], "theta_plus_min"),
    ("certify", ["--task=graph", "--max_additions=-1"], "max_additions"),
    ("certify", ["--task=graph", "--dataset=npz", "--data_dir=/nonexistent/g.npz"], "g.npz"),
    ("certify", ["--task=graph", "--dataset=cora"], "dataset"),
    ("train", ["--grid=0x3"], "grid"),
    ("train", ["--task=graph", "--epochs=0"], "epochs"),
    ("report", [], "RUN_DIR"),
    ("report", ["/nonexistent/run"], "/nonexistent/run"),
]
FAST_CLI_CASES = [0, 8]  # one batch of two processes


def _start_cli(tool, flags, out_dir):
    cmd = [sys.executable, "-m", f"lrsjax.cli.{tool}", *flags]
    if tool != "report":
        cmd.append(f"--out_dir={out_dir}")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _innermost_frame(stderr: str) -> str | None:
    frames = [line.strip() for line in stderr.splitlines() if line.strip().startswith('File "')]
    return frames[-1] if frames else None


def _check_cli_cases(indices, tmp_path):
    """Runs the cases (two at a time); returns the number of cases. Fails listing every case
    that exited 0, did not name its flag, or printed a traceback."""
    problems = []
    pending = list(indices)
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = {i: _start_cli(*CLI_CASES[i][:2], tmp_path / f"out{i}") for i in batch}
        for i, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            tool, flags, name = CLI_CASES[i]
            text = out + err
            if proc.returncode == 0:
                problems.append(f"{tool} {flags}: exit code 0\n{text[-1500:]}")
            elif name not in text:
                problems.append(f"{tool} {flags}: message does not name {name!r}\n{text[-1500:]}")
            elif _innermost_frame(err) is not None:
                problems.append(f"{tool} {flags}: printed a traceback\n{err[-1500:]}")
    assert not problems, "\n\n".join(problems)
    return len(list(indices))


def test_cli_bad_flags_fast(tmp_path):
    _check_cli_cases(FAST_CLI_CASES, tmp_path)


@pytest.mark.slow
def test_cli_bad_flags_slow(tmp_path):
    count = _check_cli_cases(range(len(CLI_CASES)), tmp_path)
    print(f"\nCLI FUZZ: {count} cases, all rejected with a one-line message")


# ================================================================================================
# Job configurations: errors that would only surface after training
# ================================================================================================


def _segmentation_job(**fields):
    from lrsjax import pipelines

    return pipelines.SegmentationJob(**fields)


@pytest.mark.parametrize("tau", [0.5, 0.2, 1.0, NAN])
def test_segmentation_job_holm_threshold_is_checked_up_front(tau):
    assert _segmentation_job(correction="holm", tau=0.75).validated().tau == 0.75
    expect_clear_error(_segmentation_job(correction="holm", tau=tau).validated, "tau")


def test_segmentation_job_grid_larger_than_image_is_refused_up_front():
    job = _segmentation_job(grid=(9, 9), image_size=8)
    expect_clear_error(job.validated, "grid")
