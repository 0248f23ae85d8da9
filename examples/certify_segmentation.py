"""Certify your own flax segmentation model inside a JAX pipeline.

    python examples/certify_segmentation.py                 # 64x64 synthetic image, 3x3 grid
    python examples/certify_segmentation.py --size=32 --n=64 --grid=2x2   # seconds

Shows the two library calls a researcher needs: `lrsjax.certify` (sampling, statistics, base
certificates) and `lrsjax.collective.certify_collective` (the collective LP certificate).
Replace `model` and `params` with your own: `apply_fn(params, x [C, H, W]) -> logits [H, W, K]`.
"""

import argparse

import jax
import numpy as np

import lrsjax
from lrsjax import base_certs, collective, data, models, noise


def main(args):
    key = jax.random.PRNGKey(args.seed)
    key_data, key_init, key_certify = jax.random.split(key, 3)
    test = data.synthetic_segmentation(key_data, 1, image_shape=(args.size, args.size))
    x, labels = test.image(0)

    # Your model here: any function of (params, one image [C, H, W]) -> logits [H, W, classes].
    model = models.UNet(num_classes=test.num_classes, depth=1, base_width=8)
    params = models.init_segmentation_params(key_init, model, x.shape)
    apply_fn = models.segmentation_apply_fn(model)

    rows, cols = (int(v) for v in args.grid.split("x"))
    smoothing = noise.localized_gaussian(x.shape, (rows, cols), std_min=0.15, std_max=1.0)
    cert = lrsjax.certify(
        key_certify, apply_fn, params, x, smoothing,
        n0=args.n0, n=args.n, alpha=0.01, batch_size=args.batch_size,
    )  # fmt: skip
    budgets = np.linspace(0.0, 0.5, 6)
    naive = base_certs.naive_certified(cert.base_certs, budgets).sum(0)
    result = collective.certify_collective(cert.base_certs, budgets, mode="lp")
    print(f"abstained: {cert.abstain.mean():.1%} of {cert.abstain.size} pixels")
    print("eps     naive  collective(LP)")
    for eps, a, b in zip(budgets, naive, result.certified):
        print(f"{eps:4.2f} {a:8d} {int(b):10d}")
    return cert, result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--grid", default="3x3")
    parser.add_argument("--n0", type=int, default=32)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
