"""One classifier, four threat models: l2 (Gaussian), l1 (Laplace), brightness and gamma correction.

    python examples/classifier_threat_models.py                       # all four, a few minutes
    python examples/classifier_threat_models.py --threat=gamma        # one of them
    python examples/classifier_threat_models.py --size=16 --steps=60 --n=200 --images=4  # seconds

For every threat model the same small ResNet is trained with that smoothing's own noise (drawn by
the noise plug-in's sampler) and certified with `lrsjax.certify_classifier` on synthetic test
images. What a certificate means differs:
  l2          Gaussian pixel noise: every ||delta||_2 < radius keeps the prediction;
  l1          Laplace pixel noise: every ||delta||_1 < radius keeps it;
  brightness  Gaussian noise on an additive brightness shift b: every |b| < radius keeps it
              (no clipping: brightness composes exactly only without it, see docs/math.md);
  gamma       Rayleigh noise on the exponent of x ** gamma: every gamma in the certified interval
              keeps it (the image must lie in [0, 1]).
"""

import argparse

import jax
import numpy as np

import lrsjax
from lrsjax import data, models, noise, results, training

THREATS = {
    "l2": lambda shape: noise.isotropic_gaussian(shape, 0.25),
    "l1": lambda shape: noise.isotropic_laplace(shape, 0.25),
    "brightness": lambda shape: noise.gaussian_brightness(shape, 0.3),
    "gamma": lambda shape: noise.rayleigh_gamma(shape, float(np.sqrt(2 / np.pi))),
}


def certify_threat(threat, args, train, test, key):
    key_train, key_certify = jax.random.split(key)
    smoothing = THREATS[threat](train.image_shape)
    model = models.ResNet(train.num_classes, width=args.width)
    params, _ = training.train_classifier(
        key_train, model, train, noise=smoothing, steps=args.steps, batch_size=args.batch_size
    )
    cert = lrsjax.certify_classifier(
        key_certify, models.classifier_apply_fn(model), params, test.images, smoothing,
        n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size,
    )  # fmt: skip
    correct = (cert.prediction == test.labels) & ~cert.abstain
    abstained = results.abstain_rate(cert.prediction)
    line = f"{threat:<11} certified and correct {correct.mean():6.1%}  abstained {abstained:6.1%}"
    if not correct.any():
        pass
    elif cert.interval is not None and threat == "gamma":
        low, high = np.median(cert.interval[correct], axis=0)
        line += f"  median certified interval of gamma ({low:.3f}, {high:.3f})"
    else:
        acr = results.exact_acr(cert.prediction, cert.radius, test.labels)
        line += f"  ACR {acr:.3f}  median radius {np.median(cert.radius[correct]):.3f}"
    print(line)
    return cert


def main(args):
    key = jax.random.key(args.seed)
    key_data, key_run = jax.random.split(key)
    train = data.synthetic_classification(key_data, args.train_images, image_size=args.size)
    test = data.synthetic_classification(key_data, args.images, image_size=args.size, split="test")
    threats = list(THREATS) if args.threat == "all" else [args.threat]
    return {
        threat: certify_threat(threat, args, train, test, jax.random.fold_in(key_run, i))
        for i, threat in enumerate(threats)
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threat", default="all", choices=["all", *THREATS])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train_images", type=int, default=512)
    parser.add_argument("--images", type=int, default=20, help="test images to certify")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--n0", type=int, default=64)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
