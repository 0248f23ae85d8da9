"""What the training losses buy on the segmentation main job, at equal training steps.

    python benchmarks/segmentation_losses.py                      # the main job's settings
    python benchmarks/segmentation_losses.py --image_size=32 --train_steps=100 --num_images=2

The segmentation job (`lrsjax-certify`, synthetic images) is run once per training loss: noise
augmentation, consistency regularization (Jeong & Shin, 2020) and SmoothAdv (Salman et al., 2019).
Each run trains its own localized-noise U-Net (the paper's stitched training) and isotropic-noise
U-Net with that loss and the same steps and seeds, then certifies the same test images with
localized smoothing (naive and collective LP) and the isotropic baseline. Printed per loss and
method: mIoU of the smoothed prediction (abstain counted as its own class), certified accuracy
at two l2 radii (grid budgets; `--budget_max` / `--budget_steps` set the grid), the ACR (lower
Riemann sum) and the two U-Nets' training seconds. Runs go to `--out_dir` (default: a temporary
directory) and resume there.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

import numpy as np

from lrsjax import pipelines, training
from lrsjax.pipelines import _segmentation

LOSSES = ("noise", "consistency", "smoothadv")


def train_seconds(job) -> str:
    seconds = []
    for smoothing in ("localized", "isotropic"):
        _, _, meta = training.load_segmentation_model(_segmentation.model_path(job, smoothing))
        seconds.append(meta["extra"]["train_seconds"])
    return " + ".join(f"{s:.0f}" for s in seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--train_steps", type=int, default=None)
    parser.add_argument("--num_images", type=int, default=None)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--budget_max", type=float, default=None)
    parser.add_argument("--budget_steps", type=int, default=None)
    parser.add_argument("--radii", type=float, nargs=2, default=(0.2, 0.4))
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--out_dir", default=None)
    args = parser.parse_args()

    root = pathlib.Path(args.out_dir or tempfile.mkdtemp(prefix="lrsjax_seg_losses_"))
    overrides = {
        name: getattr(args, name)
        for name in ("image_size", "train_steps", "num_images", "n", "budget_max", "budget_steps")
        if getattr(args, name) is not None
    }
    print(f"settings: the main job's defaults, changed: {overrides or 'nothing'}; runs in {root}")
    header = f"{'loss':<12} {'method':<16} {'mIoU':>6}"
    header += "".join(f" {'CA@' + format(r, 'g'):>7}" for r in args.radii)
    print(f"{header} {'ACR':>6}  train s (localized + isotropic)")
    for loss in args.losses:
        job = pipelines.SegmentationJob(out_dir=str(root / loss), loss=loss, **overrides)
        run_dir = pipelines.run_segmentation(job, log=lambda _: None, progress=False)
        summary = json.loads((pathlib.Path(run_dir) / "summary.json").read_text())
        for name, method in sorted(summary["methods"].items()):
            budgets = np.asarray(method["budgets"])
            accuracy = np.asarray(method["certified_accuracy"])
            cells = []
            for radius in args.radii:
                hit = np.flatnonzero(np.isclose(budgets, radius))
                cells.append(f" {accuracy[hit[0]]:7.3f}" if hit.size else f" {'-':>7}")
            print(
                f"{loss:<12} {name:<16} {method['miou']:6.3f}{''.join(cells)} "
                f"{method['acr']:6.3f}  {train_seconds(job)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
