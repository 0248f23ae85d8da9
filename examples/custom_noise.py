"""Define a smoothing noise outside lrsjax and certify with it: localized Gaussian noise on 1-D
signals (one output per time step, segments as groups and regions).

    python examples/custom_noise.py

A noise is a `lrsjax.noise.Noise` value: how outputs and input elements are grouped, the host
parameters its certificate uses, a `prepare` function that checks a clean input and binds it to
pure sampling functions, and the base certificate each kind of estimate feeds. Nothing in lrsjax
has to change: `lrsjax.certify` and the collective certificates work with it as with the built-in
noises (see docs/design.md, "Add a noise").
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import lrsjax
from lrsjax import base_certs, collective, noise


def segment_gaussian(length, num_segments, std_min, std_max):
    """Localized Gaussian noise on signals `[C, length]`: segment `k` is smoothed with std
    `std_min` on itself, growing linearly to `std_max` on the farthest segment."""
    edges = np.floor(np.linspace(0, length, num_segments + 1)).astype(int)
    segment = np.searchsorted(edges, np.arange(length), side="right") - 1
    distance = np.abs(np.arange(num_segments)[:, None] - np.arange(num_segments)[None, :])
    stds = std_min + (std_max - std_min) * distance / max(num_segments - 1, 1)
    return noise.Noise(
        kind="segment_gaussian",
        group=segment.astype(np.int32),
        region=segment.astype(np.int32),
        parameters={"stds": stds},
        prepare=prepare,
        certificates={"probability": certify_l2},
        default_estimate="probability",
    )


def prepare(smoothing, x, **_):
    """Checks a clean signal [C, length] and binds it to the sampling functions."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != smoothing.group.shape[0]:
        raise ValueError(f"`x` must be a signal [C, {smoothing.group.shape[0]}]; got {x.shape}.")
    # the certificate must use the stds actually sampled: float32 values
    stds32 = np.asarray(smoothing.parameters["stds"], np.float32)
    return noise.Prepared(
        x=jnp.asarray(x),
        config=None,
        per_group=jnp.asarray(stds32),  # leading axis: the group
        common=jnp.asarray(smoothing.region),
        sample=sample,
        draw=draw,
        apply=apply,
        example=jax.ShapeDtypeStruct(x.shape, jnp.float32),
        input_size=x.size,
        bytes_per_element=8,
        overflow_message=None,
    )


def draw(config, key, x, batch_size):
    """One standard-normal draw per batch, shared by every segment's distribution."""
    return jax.random.normal(key, (batch_size, *x.shape), x.dtype)


def apply(config, draws, x, stds_k, region):
    """The noisy batch of segment k: every time step gets the std of its own segment."""
    return x + stds_k[region] * draws


def sample(config, key, x, stds_k, region):
    """One noisy example from its own key (used when no shared draw is wanted, and by training)."""
    return x + stds_k[region] * jax.random.normal(key, x.shape, x.dtype), jnp.zeros((), bool)


def certify_l2(smoothing, prediction, estimate, tested, **_):
    """Anisotropic Gaussian l2 certificate (Cohen et al., 2019, after rescaling every step)."""
    stds = np.asarray(np.asarray(smoothing.parameters["stds"], np.float32), np.float64)
    certs = base_certs.gaussian(prediction, estimate.p_lower, smoothing.group, stds)
    worst = certs.weights[0].max(axis=1)[certs.group]
    radius = np.where(certs.abstain, 0.0, np.sqrt(certs.eta / np.where(certs.abstain, 1, worst)))
    return noise.NoiseCertificate(certs.abstain, certs, radius=radius, method="segment_gaussian")


def smoothed_sign_model(params, x):
    """Step t predicts whether a 5-step moving average of channel 0 around t is positive."""
    window = jnp.ones(5) / 5
    score = jnp.convolve(x[0] - 0.5, window, mode="same")
    return jnp.stack([-score, score], axis=-1) * 20.0


def main(args):
    rng = np.random.default_rng(args.seed)
    signal = np.clip(0.5 + np.cumsum(rng.normal(0, 0.08, (1, args.length)), axis=1), 0, 1)
    smoothing = segment_gaussian(args.length, args.segments, 0.1, 0.6)
    cert = lrsjax.certify(
        jax.random.key(args.seed), smoothed_sign_model, None, signal, smoothing, n0=args.n0,
        n=args.n, alpha=0.01, batch_size=128,
    )  # fmt: skip
    budgets = np.array([0.05, 0.1, 0.2])
    result = collective.certify_collective(cert.base_certs, budgets, mode="milp")
    naive = [(cert.radius > eps).sum() for eps in budgets]
    print(f"{(~cert.abstain).sum()} of {args.length} time steps not abstained")
    for eps, count, alone in zip(budgets, result.certified, naive):
        print(f"l2 budget {eps:.2f}: {int(count)} certified together (collective), {alone} alone")
    return cert, result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=120)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--n0", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
