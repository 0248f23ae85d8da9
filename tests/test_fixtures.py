"""Same key, same certificate: the core reproduces the stored fixtures bit for bit."""

import numpy as np

from tests import _fixtures


def test_certificates_equal_the_stored_fixtures():
    stored = np.load(_fixtures.PATH, allow_pickle=False)
    computed = _fixtures.compute()
    assert sorted(computed) == sorted(stored.files)
    for name in stored.files:
        np.testing.assert_array_equal(computed[name], stored[name], err_msg=name)
    # the fixtures are not vacuous: something is certified, something abstains, and the
    # collective certificates count more than nothing
    assert stored["gaussian/abstain"].any() and not stored["gaussian/abstain"].all()
    assert stored["gaussian/collective_milp"].max() > 0
    assert stored["graph_variance/collective_milp"].max() > 0
    assert stored["graph_sparse_smoothing/sparse_grid"].any()
