"""What the training losses and denoised smoothing buy, on the synthetic classification task.

    python benchmarks/training.py                   # defaults below, several minutes on 2 cores
    python benchmarks/training.py --steps=40 --images=8 --n=100   # a smoke run in about a minute

Part 1, equal training steps: the same small ResNet trained with noise augmentation, consistency
regularization (Jeong & Shin, 2020) and SmoothAdv (Salman et al., 2019), each certified with
`lrsjax.certify_classifier` under the same isotropic Gaussian noise: certified accuracy at two l2
radii and the exact ACR.

Part 2, denoised smoothing (Salman et al., 2020): a classifier trained on CLEAN images, certified
under noise with no denoiser, with a denoiser trained by the MSE loss, and with one trained by the
stability loss (classifier frozen), against the noise-trained classifier of part 1.

Every model is trained from its own key; the certification key is the same for every row. Figures
are wall-clock on whatever machine runs this.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import lrsjax
from lrsjax import data, models, noise, results, training


def certify_row(name, apply_fn, params, test, smoothing, args, seconds):
    cert = lrsjax.certify_classifier(
        jax.random.key(args.seed + 1), apply_fn, params, test.images, smoothing, n0=args.n0,
        n=args.n, alpha=args.alpha, batch_size=args.batch_size,
    )  # fmt: skip
    radii = np.asarray(args.radii)
    accuracy = results.certified_accuracy_at(cert.prediction, cert.radius, test.labels, radii)
    acr = results.exact_acr(cert.prediction, cert.radius, test.labels)
    cells = "  ".join(f"{a:6.3f}" for a in accuracy)
    print(f"{name:<38} {cells}  {acr:6.3f}  {seconds:7.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train_images", type=int, default=1024)
    parser.add_argument("--images", type=int, default=50, help="test images certified")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300, help="training steps of every model")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--n0", type=int, default=64)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--radii", type=float, nargs=2, default=(0.25, 0.5))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    key_data = jax.random.key(args.seed)
    train = data.synthetic_classification(key_data, args.train_images, image_size=args.size)
    test = data.synthetic_classification(key_data, args.images, image_size=args.size, split="test")
    smoothing = noise.isotropic_gaussian(train.image_shape, args.sigma)
    model = models.ResNet(train.num_classes, width=args.width)
    apply_fn = models.classifier_apply_fn(model)
    radii = "  ".join(f"CA@{r:<4}" for r in args.radii)
    print(
        f"{train.num_classes} classes, {args.size}x{args.size}, sigma {args.sigma}, "
        f"{args.steps} steps, {test.num_images} test images, n0 {args.n0}, n {args.n}, "
        f"alpha {args.alpha}"
    )
    print(f"{'model':<38} {radii}     ACR   train+certify")

    trained = {}
    for i, loss in enumerate(("noise", "consistency", "smoothadv")):
        start = time.perf_counter()
        params, _ = training.train_classifier(
            jax.random.key(100 + i), model, train, noise=smoothing, loss=loss, steps=args.steps,
            batch_size=args.batch_size,
        )  # fmt: skip
        trained[loss] = params
        certify_row(
            f"{loss} loss", apply_fn, params, test, smoothing, args, time.perf_counter() - start
        )

    start = time.perf_counter()
    clean, _ = training.train_classifier(
        jax.random.key(200), model, train, noise=None, steps=args.steps, batch_size=args.batch_size
    )
    certify_row("clean classifier, no denoiser", apply_fn, clean, test, smoothing, args,
                time.perf_counter() - start)  # fmt: skip
    denoiser = models.DnCNN(channels=train.image_shape[0], depth=6, features=16)
    for j, loss in enumerate(("mse", "stability")):
        start = time.perf_counter()
        dparams, _ = training.train_denoiser(
            jax.random.key(300 + j), denoiser, apply_fn, clean, train, noise=smoothing, loss=loss,
            steps=args.steps, batch_size=args.batch_size,
        )  # fmt: skip
        composed = models.compose(models.denoiser_apply_fn(denoiser), apply_fn)
        certify_row(f"clean classifier + {loss} denoiser", composed, (dparams, clean), test,
                    smoothing, args, time.perf_counter() - start)  # fmt: skip


if __name__ == "__main__":
    main()
