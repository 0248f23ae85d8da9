"""Floating-point gap of the standard-normal sampler against the exact N(0, 1), over every draw.

    python benchmarks/normal_gap.py

`lrsjax.noise.standard_normal` maps a uniform 24-bit integer c to `sqrt(2) * erfinv(u)` with
`u = (c - 2**23 + 1/2) / 2**23` in float32. Its distribution is therefore discrete: the 2**24
values are enumerated here and compared with the exact midpoint quantiles (float64) and with
N(0, 1): truncation point and the tail mass never drawn, variance shortfall, mean, the largest
error of the float32 inverse error function, and the Kolmogorov distance. Needs ~1 GiB of memory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special


def main() -> None:
    c = np.arange(2**24, dtype=np.int64)
    exact = np.sqrt(2.0) * special.erfinv((c - 2**23 + 0.5) * 2.0**-23)  # float64 quantiles
    u = (jnp.asarray(c - 2**23, jnp.int32).astype(jnp.float32) + 0.5) * np.float32(2.0**-23)
    sampled = np.asarray(np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(u), np.float64)
    error = np.abs(sampled - exact)
    ordered = np.sort(sampled)
    cdf = special.ndtr(ordered)
    upper = np.arange(1, ordered.size + 1) / ordered.size
    kolmogorov = max(np.abs(upper - cdf).max(), np.abs(upper - 1.0 / ordered.size - cdf).max())
    rows = [
        ("largest |z| drawn (float32 sampler)", f"{np.abs(sampled).max():.6f}"),
        ("tail mass never drawn, P(|Z| > largest)", f"{2 * special.ndtr(-exact.max()):.3e}"),
        ("1 - variance, exact midpoint quantiles", f"{1 - np.mean(exact**2):.3e}"),
        ("1 - variance, float32 sampler", f"{1 - np.mean(sampled**2):.3e}"),
        ("mean, float32 sampler", f"{np.mean(sampled):.3e}"),
        ("largest |float32 - exact quantile|", f"{error.max():.3e}"),
        ("largest relative error of a draw", f"{(error / np.abs(exact)).max():.3e}"),
        ("Kolmogorov distance to N(0, 1)", f"{kolmogorov:.3e}"),
    ]
    for name, value in rows:
        print(f"{name:<42} {value}")


if __name__ == "__main__":
    main()
