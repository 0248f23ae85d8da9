"""Soundness of the public collective API on inputs an audit found to over- or under-claim.

Every reference here is independent of lrsjax: hand-solved one-row problems, scipy's HiGHS for
the paper LP, and exact rational arithmetic.
"""

import numpy as np
import pytest

from lrsjax import collective
from lrsjax.base_certs import make_base_certificates


def _certs(eta, group, weights, norm="l2"):
    eta = np.asarray(eta, np.float64)
    return make_base_certificates(
        np.zeros(eta.size, np.int64), np.zeros(eta.size, bool), eta, np.asarray(group),
        np.asarray(weights, np.float64), norm,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Naive filter: rows dropped at one budget are never counted at a larger one.


def test_with_totals_refuses_budgets_above_a_naive_filter():
    # One output, radius 0.5: certified at eps 0.1, attacked at eps 1.0.
    problem = collective.from_base_certs(_certs([0.25], [0], [[[1.0]]]))
    filtered = collective.naive_filter().apply(collective.with_totals(problem, 0.1))
    assert filtered.num_naive == 1
    with pytest.raises(ValueError, match="naive_filter"):
        collective.with_totals(filtered, 1.0)
    # The same through solve, and through totals set by hand.
    with pytest.raises(ValueError, match="naive_filter"):
        collective.solve(filtered._replace(totals=np.array([1.0])), [1.0], mode="milp")
    with pytest.raises(ValueError, match="naive_filter"):
        collective.naive_filter().apply(filtered._replace(totals=np.array([1.0])))
    # Budgets up to the filter's stay allowed and exact; the original problem is untouched.
    assert collective.solve(filtered, [0.05, 0.1], mode="milp").certified.tolist() == [1, 1]
    assert collective.solve(problem, [1.0], mode="milp").certified.tolist() == [0]
    again = collective.with_totals(filtered, 0.05)
    assert again.totals.tolist() == [0.05**2]


def test_filtering_twice_keeps_the_smallest_budget():
    # Radii 0.5 and 2: eps 1.0 drops the second row, eps 0.1 then drops the first.
    problem = collective.from_base_certs(_certs([0.25, 4.0], [0, 0], [[[1.0]]]))
    once = collective.naive_filter().apply(collective.with_totals(problem, 1.0))
    assert once.num_naive == 1
    twice = collective.naive_filter().apply(collective.with_totals(once, 0.1))
    assert twice.num_naive == 2
    for eps in (1.0, 0.5, 0.1 + 1e-12):
        with pytest.raises(ValueError, match="naive_filter"):
            collective.solve(twice._replace(totals=np.array([1.0])), [eps], mode="milp")
        with pytest.raises(ValueError, match="naive_filter"):
            collective.with_totals(twice, eps)
    # Filtered first at the small budget: the larger one is refused before the second filter.
    small = collective.naive_filter().apply(collective.with_totals(problem, 0.1))
    with pytest.raises(ValueError, match="naive_filter"):
        collective.with_totals(small, 1.0)
    assert collective.solve(twice, [0.1], mode="milp").certified.tolist() == [2]
    np.testing.assert_array_equal(twice.naive_limit, [0.1**2])


def test_budget_guard_has_no_slack_toward_larger_budgets():
    # l1, W = 1, eta = 1 + 2**-43: certified at eps 1, attacked at eps 1 + 2**-42.
    problem = collective.from_base_certs(_certs([1.0 + 2.0**-43], [0], [[[1.0]]], norm="l1"))
    filtered = collective.naive_filter().apply(collective.with_totals(problem, 1.0))
    assert filtered.num_naive == 1
    above = 1.0 + 2.0**-42
    assert collective.solve(problem, [above], mode="milp").certified.tolist() == [0]
    with pytest.raises(ValueError, match="naive_filter"):
        collective.solve(filtered, [above], mode="milp")
    with pytest.raises(ValueError, match="naive_filter"):
        collective.with_totals(filtered, above)
    assert collective.solve(filtered, [1.0], mode="milp").certified.tolist() == [1]


def test_hand_built_naive_count_needs_its_limit():
    problem = collective.from_base_certs(_certs([0.25], [0], [[[1.0]]]))
    with pytest.raises(ValueError, match="naive_limit"):
        collective.solve(problem._replace(num_naive=3), [0.1])
