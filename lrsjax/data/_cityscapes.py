"""Cityscapes (fine annotations, 19 evaluation classes), read from disk.

Nothing is downloaded: the user points `root` at an existing copy in the standard layout.
"""

from __future__ import annotations

import pathlib

import numpy as np

from lrsjax import _checks
from lrsjax.data._segmentation import IGNORE_LABEL, SegmentationData, even_subset, stack_padded
from lrsjax.data._voc import check_max_images, check_scale, read_image, read_label

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES_SPLITS = ("train", "val", "test")

# labelIds (the official cityscapesScripts table) of the 19 train ids, in train-id order.
_EVAL_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

_LAYOUT = (
    "leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and "
    "gtFine/<split>/<city>/<name>_gtFine_labelIds.png"
)


def cityscapes_label_table() -> np.ndarray:
    """int32 [256]: train id (0..18) of each Cityscapes labelId, 255 for all others."""
    table = np.full(256, IGNORE_LABEL, np.int32)
    table[list(_EVAL_LABEL_IDS)] = np.arange(len(_EVAL_LABEL_IDS))
    return table


def load_cityscapes(
    root, split: str = "val", *, scale: float = 0.5, max_images: int | None = None
) -> SegmentationData:
    """Cityscapes fine annotations from the standard directory layout at `root`.

    Images are resized bilinearly by `scale` (0.5: 2048x1024 -> 1024x512), label maps with
    nearest neighbour; labelIds map to the 19 train ids, every other id to 255 (ignore). Images
    are sorted by city and file name; `max_images` keeps a deterministic, evenly spaced subset of
    that order.

    Args:
      root: the folder holding leftImg8bit/ and gtFine/.
      split: "train", "val" or "test" (the public test labels are all ignore).
      scale: resize factor in (0, 4].
      max_images: keep at most this many images (None: all; the full val split at scale 0.5 takes
        about 3 GB as float32).
    Returns:
      SegmentationData with 19 classes, images float32 [N, 3, H, W], ids = "<city>/<name>".
    """
    _checks.one_of("split", split, CITYSCAPES_SPLITS)
    scale = check_scale(scale)
    max_images = check_max_images(max_images)
    root = pathlib.Path(root)
    image_dir = root / "leftImg8bit" / split
    label_dir = root / "gtFine" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"Cityscapes folder {str(folder)!r} does not exist. Expected layout under "
                f"{str(root)!r}: {_LAYOUT}."
            )
    suffix = "_leftImg8bit.png"
    files = sorted(image_dir.glob(f"*/*{suffix}"))
    if not files:
        raise FileNotFoundError(
            f"No '*{suffix}' images in the city folders of {str(image_dir)!r}. Expected layout "
            f"under {str(root)!r}: {_LAYOUT}."
        )
    files = [files[i] for i in even_subset(len(files), max_images)]
    table = cityscapes_label_table()
    images, labels, ids = [], [], []
    for path in files:
        city, stem = path.parent.name, path.name[: -len(suffix)]
        label_path = label_dir / city / f"{stem}_gtFine_labelIds.png"
        if not label_path.is_file():
            raise FileNotFoundError(
                f"Label file {str(label_path)!r} for image {str(path)!r} does not exist. "
                f"Expected layout under {str(root)!r}: {_LAYOUT}."
            )
        image = read_image(path, scale)
        label_ids = read_label(label_path, scale)
        if label_ids.shape != image.shape[1:]:
            raise ValueError(
                f"{str(label_path)!r} has size {label_ids.shape} but its image has size "
                f"{image.shape[1:]} after scaling; image and label must have the same size."
            )
        images.append(image)
        labels.append(table[np.clip(label_ids, 0, 255)])
        ids.append(f"{city}/{stem}")
    images_arr, labels_arr, sizes = stack_padded(images, labels)
    return SegmentationData(
        images=images_arr,
        labels=labels_arr,
        sizes=sizes,
        num_classes=len(CITYSCAPES_CLASSES),
        class_names=CITYSCAPES_CLASSES,
        name=f"cityscapes-{split}",
        ids=tuple(ids),
    )
