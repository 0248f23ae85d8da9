"""Train an image classifier with Gaussian noise and certify it (Cohen et al., 2019), in JAX.

    python examples/certify_classifier.py                          # 32x32 synthetic, ~3 minutes
    python examples/certify_classifier.py --size=16 --steps=100 --n=200 --images=4   # seconds

Shows the library calls a researcher needs: `lrsjax.training.train_classifier` (noise
augmentation drawn by the smoothing's own sampler), `lrsjax.certify_classifier` (CERTIFY on a
batch of inputs: prediction, abstention, l2 radius) and the per-input metrics of
`lrsjax.results` (certified accuracy at radius r, exact ACR, abstain rate). Replace `model` and
`params` with your own: `apply_fn(params, x [C, H, W]) -> logits [num_classes]`.
"""

import argparse

import jax
import numpy as np

import lrsjax
from lrsjax import data, models, noise, results, training


def main(args):
    key = jax.random.key(args.seed)
    key_data, key_train, key_certify = jax.random.split(key, 3)
    train = data.synthetic_classification(key_data, args.train_images, image_size=args.size)
    test = data.synthetic_classification(key_data, args.images, image_size=args.size, split="test")
    smoothing = noise.isotropic_gaussian(train.image_shape, args.sigma)

    # Your model here: any function of (params, one image [C, H, W]) -> logits [num_classes].
    model = models.ResNet(train.num_classes, width=args.width)
    params, history = training.train_classifier(
        key_train, model, train, noise=smoothing, steps=args.steps, batch_size=args.batch_size
    )
    apply_fn = models.classifier_apply_fn(model)
    print(f"trained {args.steps} steps in {history.seconds[-1]:.1f} s, loss {history.loss[-1]:.3f}")

    cert = lrsjax.certify_classifier(
        key_certify, apply_fn, params, test.images, smoothing,
        n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size,
    )  # fmt: skip
    radii = np.linspace(0.0, 1.0, 5)
    accuracy = results.certified_accuracy_at(cert.prediction, cert.radius, test.labels, radii)
    acr = results.exact_acr(cert.prediction, cert.radius, test.labels)
    print(f"{test.num_images} test images, sigma={args.sigma}, n={args.n}, alpha={args.alpha}")
    print(f"abstained: {results.abstain_rate(cert.prediction):.1%}   ACR: {acr:.3f}")
    print("radius  certified accuracy")
    for r, a in zip(radii, accuracy):
        print(f"{r:6.2f}  {a:8.1%}")
    return cert, accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train_images", type=int, default=1024)
    parser.add_argument("--images", type=int, default=20, help="test images to certify")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
