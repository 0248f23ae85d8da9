"""Sharded sampling: 4 simulated CPU devices give exactly the counts of 1 device (same key).

JAX may already be initialised in the pytest process with one CPU device, so the check runs in a
subprocess with `XLA_FLAGS=--xla_force_host_platform_device_count=4`.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    import lrsjax
    from lrsjax import noise, sampling
    from lrsjax._sparse import from_scipy

    devices = jax.devices()
    assert len(devices) == 4, devices

    # images: localized Gaussian grid, 23 samples = 7 batches of 3 plus a remainder of 2
    def threshold(params, z):
        d = z[0] - params
        return jnp.stack([jnp.zeros_like(d), d], axis=-1)

    sm = noise.localized_gaussian((1, 5, 6), (2, 3), 0.2, 1.0)
    x = np.full((1, 5, 6), 0.55)
    certs = [
        lrsjax.certify(jax.random.key(7), threshold, 0.5, x, sm, n0=5, n=23, alpha=0.1,
                       batch_size=3, devices=devs)
        for devs in (devices[:1], devices)
    ]
    np.testing.assert_array_equal(certs[0].select_votes, certs[1].select_votes)
    np.testing.assert_array_equal(certs[0].counts, certs[1].counts)
    np.testing.assert_array_equal(certs[0].p_lower, certs[1].p_lower)
    assert certs[0].select_votes.sum() == 5 * 30 and certs[0].counts.max() <= 23
    assert 0 < certs[0].counts.sum() < 23 * 30  # noisy: the check is not trivial

    # graphs: sparse Bernoulli sampler, histogram mode, 3 groups
    clusters = np.array([0, 0, 1, 1, 2, 2])
    rank = np.array([[0, 2, 1], [1, 0, 2], [2, 1, 0]])
    gsm = noise.clustered_bernoulli(clusters, rank, [0.3, 0.1, 0.05], [0.4, 0.5, 0.6])
    rng = np.random.default_rng(0)
    xg = from_scipy((rng.random((6, 4)) < 0.4).astype(np.int8), capacity=16)

    def density(params, xs):
        per_node = jax.ops.segment_sum(xs.valid.astype(jnp.float32), xs.rows, 6)
        return jnp.stack([per_node, 4.0 - per_node], axis=-1) * params

    outs = []
    for devs in (devices[:1], devices):
        count = sampling.make_counter(density, gsm, mode="histogram", batch_size=4, num_classes=2,
                                      num_bins=32, num_cols=4, devices=devs)
        outs.append(count(jax.random.key(3), 0.7, xg, 37, target=np.zeros(6, np.int32)))
    np.testing.assert_array_equal(np.asarray(outs[0].counts), np.asarray(outs[1].counts))
    assert not bool(outs[0].overflow) and not bool(outs[1].overflow)
    assert np.all(np.asarray(outs[0].counts).sum(-1) == 37)
    assert (np.asarray(outs[0].counts) > 0).sum() > 12  # the scores spread over several bins
    print("SHARDING-OK")
    """
)


def test_four_devices_equal_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHARDING-OK" in result.stdout
