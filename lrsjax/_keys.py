"""JAX keys: validation, and host-side numpy generators that follow a JAX key.

Host-side algorithms (data generation, clustering, parameter initialisation) draw from a numpy
generator seeded by the explicit JAX key, so every draw still comes from that key without
compiling a JAX kernel per array shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks


def check_key(name: str, key) -> jax.Array:
    """`key` as one JAX PRNG key (typed `jax.random.key` or a raw uint32 [2] `PRNGKey`)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if np.ndim(key) != 0:
            _checks.fail(name, key, "must be a single PRNG key (shape ())", "Split it; pass one.")
        return key
    if dtype == np.uint32 and np.shape(key) == (2,):
        return jnp.asarray(key)
    _checks.fail(
        name, key, "must be a single JAX PRNG key", "Pass jax.random.key(seed) or PRNGKey(seed)."
    )


def seed_sequence(key) -> np.random.SeedSequence:
    """A numpy SeedSequence derived from a JAX key."""
    key = check_key("key", key)
    bits = np.asarray(jax.random.bits(key, (4,), jnp.uint32))
    return np.random.SeedSequence([int(b) for b in bits])


def host_rng(key) -> np.random.Generator:
    """A numpy Generator seeded deterministically from a JAX key."""
    return np.random.default_rng(seed_sequence(key))
