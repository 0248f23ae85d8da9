"""Image classification data: the `ClassificationData` type, a synthetic generator and loaders.

The synthetic images are the default data of the classification commands: they need no
download, are fully determined by a JAX key, and a small ResNet learns them in minutes on a CPU.
An image's class is the *pattern* drawn on it (a disc, a ring, stripes in one direction, a
cross, a checkerboard), never its colour: pattern and background colours are drawn independently
of the class, the pattern's position and size vary, and a smooth illumination field and pixel
noise are added. The patterns are large, so the class survives Gaussian noise of std 0.25.

Loaders read CIFAR-10's binary distribution (no unpickling) and class-per-folder image trees
(PIL). Every loader returns images in [0, 1] as float32 [N, C, H, W] and int32 labels [N].
"""

from __future__ import annotations

import numbers
import pathlib
from typing import NamedTuple

import jax
import numpy as np

from lrsjax import _checks
from lrsjax._keys import check_key, seed_sequence

SPLITS = ("train", "test")
_SPLIT_FOLD = {"train": 0, "test": 1}
SYNTHETIC_PATTERNS = ("disc", "ring", "horizontal", "vertical", "cross", "checker")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


class ClassificationData(NamedTuple):
    """An image classification data set held on the host.

    Fields:
      images: float32 [N, C, H, W] in [0, 1], channels first (the layout of `x` in
        lrsjax.certify_classifier).
      labels: int32 [N], class index in [0, num_classes).
      num_classes: number of classes.
      class_names: tuple of num_classes names.
      name: the data set's name, e.g. "synthetic-train", "cifar10-test".
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple
    name: str

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple:
        """(C, H, W) of every image."""
        return tuple(int(v) for v in self.images.shape[1:])


def check_classification_data(name: str, data) -> ClassificationData:
    """Validates the fields of a `ClassificationData` (shapes, dtypes, ranges); returns it."""
    if not isinstance(data, ClassificationData):
        _checks.fail(
            name,
            type(data).__name__,
            "must be a lrsjax.data.ClassificationData",
            "Build it with synthetic_classification, load_cifar10 or load_image_folder.",
        )
    images, labels = np.asarray(data.images), np.asarray(data.labels)
    if np.ndim(images) != 4 or images.shape[0] < 1:
        _checks.fail(f"{name}.images", images, "must have shape [N, C, H, W] with N >= 1")
    if images.dtype != np.float32:
        _checks.fail(f"{name}.images", images, "must be float32", "Convert with .astype.")
    if np.shape(labels) != images.shape[:1]:
        _checks.fail(f"{name}.labels", labels, f"must have shape [N] = {images.shape[:1]}")
    if not np.issubdtype(labels.dtype, np.integer):
        _checks.fail(f"{name}.labels", labels, "must be integers")
    num_classes = _checks.positive_int(f"{name}.num_classes", data.num_classes, minimum=2)
    if labels.min() < 0 or labels.max() >= num_classes:
        _checks.fail(
            f"{name}.labels",
            f"values in [{labels.min()}, {labels.max()}]",
            f"must lie in [0, num_classes) = [0, {num_classes})",
        )
    if len(data.class_names) != num_classes:
        _checks.fail(f"{name}.class_names", data.class_names, f"must hold {num_classes} names")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        _checks.fail(f"{name}.images", images, "must be finite and lie in [0, 1]")
    return data


# ----------------------------------------------------------------------------------------------
# Synthetic patterns
# ----------------------------------------------------------------------------------------------


def _pattern(kind: str, u, v, radius: float, period: float) -> np.ndarray:
    """float [H, W] in [0, 1]: how much of the pattern covers each pixel.

    `u`, `v` are pixel coordinates relative to the pattern's centre (rotated for the stripes);
    `radius` is the pattern's half size, `period` the stripe / checker period in pixels.
    """
    r = np.hypot(u, v)
    inside = np.clip(radius + 0.5 - np.maximum(np.abs(u), np.abs(v)), 0.0, 1.0)
    if kind == "disc":
        return np.clip(radius + 0.5 - r, 0.0, 1.0)
    if kind == "ring":
        width = max(radius * 0.3, 1.5)
        return np.clip(width / 2 + 0.5 - np.abs(r - (radius - width / 2)), 0.0, 1.0)
    if kind == "horizontal":
        return inside * (np.cos(2 * np.pi * v / period) > 0)
    if kind == "vertical":
        return inside * (np.cos(2 * np.pi * u / period) > 0)
    if kind == "cross":
        arm = max(radius * 0.3, 1.5)
        bar = (np.abs(u) < arm) | (np.abs(v) < arm)
        return inside * bar
    if kind == "checker":
        cells = np.floor(u / (period / 2)) + np.floor(v / (period / 2))
        return inside * (cells % 2 == 0)
    raise AssertionError(kind)


def synthetic_classification(
    key,
    num_images: int = 512,
    *,
    split: str = "train",
    num_classes: int = 6,
    image_size: int = 32,
    channels: int = 3,
    pixel_noise: float = 0.05,
    illumination: float = 0.1,
) -> ClassificationData:
    """Synthetic pattern images, deterministic for `key` and `split`.

    Class `c` is the pattern `SYNTHETIC_PATTERNS[c]` (disc, ring, horizontal stripes, vertical
    stripes, cross, checkerboard) drawn at a random position and size in a random colour on a
    background of another random colour; a smooth illumination field and Gaussian pixel noise are
    added and the result is clipped to [0, 1]. Labels are balanced in expectation (uniform draws).

    Split convention: `split="train"` and `split="test"` fold different constants into `key`, so one
    key gives two independent sets; image `i` depends only on (`key`, `split`, `i`), not on
    `num_images`.

    Args:
      key: JAX PRNG key (the only source of randomness).
      num_images: number of images N.
      split: "train" or "test".
      num_classes: 2 to 6 classes (the first `num_classes` patterns).
      image_size: side length H = W (at least 8).
      channels: C (1 = grey, 3 = RGB).
      pixel_noise: std of the per-pixel noise added before clipping.
      illumination: std of the linear illumination gradient across the image.
    Returns:
      ClassificationData with images float32 [N, C, image_size, image_size].
    """
    check_key("key", key)
    num_images = _checks.positive_int("num_images", num_images)
    _checks.one_of("split", split, SPLITS)
    num_classes = _checks.positive_int("num_classes", num_classes, minimum=2)
    if num_classes > len(SYNTHETIC_PATTERNS):
        _checks.fail(
            "num_classes",
            num_classes,
            f"must be at most {len(SYNTHETIC_PATTERNS)} (one per pattern {SYNTHETIC_PATTERNS})",
            "Use fewer classes or a real data set.",
        )
    size = _checks.positive_int("image_size", image_size, minimum=8)
    channels = _checks.positive_int("channels", channels)
    for name, value in (("pixel_noise", pixel_noise), ("illumination", illumination)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            _checks.fail(name, value, "must be a finite number >= 0")
        if not np.isfinite(value):
            _checks.fail(name, value, "must be finite")

    seeds = seed_sequence(jax.random.fold_in(key, _SPLIT_FOLD[split])).spawn(num_images)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = np.empty((num_images, channels, size, size), np.float32)
    labels = np.empty(num_images, np.int32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        cls = int(rng.integers(num_classes))
        radius = rng.uniform(0.22, 0.38) * size
        cy, cx = rng.uniform(radius * 0.8, size - radius * 0.8, 2)
        period = rng.uniform(0.18, 0.26) * size
        theta = rng.uniform(-0.25, 0.25)  # small rotation: stripes stay horizontal / vertical
        dy, dx = yy - cy, xx - cx
        u = np.cos(theta) * dx + np.sin(theta) * dy
        v = -np.sin(theta) * dx + np.cos(theta) * dy
        cover = _pattern(SYNTHETIC_PATTERNS[cls], u, v, radius, period)
        background = rng.uniform(0.0, 1.0, channels)
        # the pattern's colour differs from the background by at least 0.35 in some channel
        foreground = rng.uniform(0.0, 1.0, channels)
        gap = np.abs(foreground - background).max()
        if gap < 0.35:
            foreground = np.where(background > 0.5, background - 0.5, background + 0.5)
        picture = background[:, None, None] + (foreground - background)[:, None, None] * cover
        gy, gx = rng.normal(0.0, illumination, 2)
        light = gy * (yy / size - 0.5) + gx * (xx / size - 0.5)
        picture = picture + light + rng.normal(0.0, pixel_noise, picture.shape)
        images[i] = np.clip(picture, 0.0, 1.0)
        labels[i] = cls
    return ClassificationData(
        images=images,
        labels=labels,
        num_classes=num_classes,
        class_names=SYNTHETIC_PATTERNS[:num_classes],
        name=f"synthetic-{split}",
    )


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (binary version)
# ----------------------------------------------------------------------------------------------


def load_cifar10(data_dir, split: str = "test", *, max_images: int | None = None):
    """CIFAR-10 from its binary distribution ("CIFAR-10 binary version", cifar-10-binary.tar.gz).

    Every file holds records of 3073 bytes: 1 label byte (0-9) and 3072 pixel bytes, the red,
    green and blue 32x32 planes in row-major order. The files are read as raw bytes; nothing is
    unpickled and nothing is downloaded.

    Args:
      data_dir: the folder holding `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`
        (or its parent holding `cifar-10-batches-bin/`).
      split: "train" (the five data batches, 50000 images) or "test" (10000 images).
      max_images: keep only the first this many images (None: all).
    Returns:
      ClassificationData with images float32 [N, 3, 32, 32] (pixel / 255) and labels int32 [N].
    """
    _checks.one_of("split", split, SPLITS)
    if max_images is not None:
        max_images = _checks.positive_int("max_images", max_images)
    root = pathlib.Path(data_dir)
    if not (root / _CIFAR_FILES[split][0]).is_file() and (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    missing = [name for name in _CIFAR_FILES[split] if not (root / name).is_file()]
    if missing:
        _checks.fail(
            "data_dir",
            str(data_dir),
            f"must hold CIFAR-10's binary {split} files {_CIFAR_FILES[split]}; missing {missing}",
            "Unpack cifar-10-binary.tar.gz there (the 'binary version', not the python one).",
        )
    chunks, remaining = [], max_images
    for name in _CIFAR_FILES[split]:
        raw = np.fromfile(root / name, dtype=np.uint8)
        if raw.size == 0 or raw.size % _CIFAR_RECORD:
            _checks.fail(
                "data_dir",
                str(root / name),
                f"must hold whole records of {_CIFAR_RECORD} bytes; the file has {raw.size} bytes",
                "The file is truncated or not a CIFAR-10 binary batch: unpack it again.",
            )
        records = raw.reshape(-1, _CIFAR_RECORD)
        if remaining is not None:
            records = records[:remaining]
            remaining -= records.shape[0]
        chunks.append(records)
        if remaining == 0:
            break
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= len(CIFAR10_CLASSES):
        _checks.fail(
            "data_dir",
            str(root),
            f"must hold labels 0-9 in the first byte of every record; found {labels.max()}",
            "These are not CIFAR-10 binary files (CIFAR-100 has two label bytes).",
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    name = f"cifar10-{split}"
    return ClassificationData(images, labels, len(CIFAR10_CLASSES), CIFAR10_CLASSES, name)


# ----------------------------------------------------------------------------------------------
# Class-per-folder images
# ----------------------------------------------------------------------------------------------


def load_image_folder(
    data_dir,
    split: str | None = None,
    *,
    image_size=(32, 32),
    channels: int = 3,
    max_images: int | None = None,
) -> ClassificationData:
    """Images stored one folder per class: `data_dir/[split/]<class name>/<image file>`.

    Classes are the sub-folders in sorted order (class `c` is the `c`-th name); files are read in
    sorted order with PIL, converted to RGB (`channels=3`) or grey (`channels=1`) and resized to
    `image_size` with bilinear filtering when their size differs.

    Args:
      data_dir: the root folder.
      split: a sub-folder of `data_dir` to read (e.g. "train" or "test"); None reads `data_dir`.
      image_size: (H, W) of the returned images.
      channels: 3 (RGB) or 1 (grey).
      max_images: keep only the first this many images in (class, file) order (None: all).
    Returns:
      ClassificationData with images float32 [N, channels, H, W] and labels int32 [N].
    """
    from PIL import Image

    size = tuple(image_size) if not isinstance(image_size, numbers.Integral) else (image_size,) * 2
    if len(size) != 2:
        _checks.fail("image_size", image_size, "must be (H, W) or one side length")
    height, width = (_checks.positive_int("image_size", v) for v in size)
    if channels not in (1, 3):
        _checks.fail("channels", channels, "must be 1 (grey) or 3 (RGB)")
    if max_images is not None:
        max_images = _checks.positive_int("max_images", max_images)
    root = pathlib.Path(data_dir) if split is None else pathlib.Path(data_dir) / split
    if not root.is_dir():
        _checks.fail(
            "data_dir" if split is None else "split",
            str(root),
            "must be an existing folder",
            "Point --data_dir at a folder holding one sub-folder of images per class"
            + ("" if split is None else f" under {split}/") + ".",
        )  # fmt: skip
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        (label, path)
        for label, folder in enumerate(class_dirs)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if len(class_dirs) < 2 or not files:
        _checks.fail(
            "data_dir",
            str(root),
            f"must hold at least two class folders with images ({IMAGE_SUFFIXES}); found "
            f"{len(class_dirs)} folders and {len(files)} images",
            "Put each class's images in its own sub-folder.",
        )
    files = files[:max_images] if max_images is not None else files
    images = np.empty((len(files), channels, height, width), np.float32)
    labels = np.empty(len(files), np.int32)
    mode = "RGB" if channels == 3 else "L"
    for i, (label, path) in enumerate(files):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, np.float32) / np.float32(255.0)
        except OSError as err:
            raise ValueError(
                f"`data_dir` holds {str(path)!r}, which PIL cannot read as an image ({err}). "
                "Remove or replace the file."
            ) from err
        images[i] = pixels.reshape(height, width, channels).transpose(2, 0, 1)
        labels[i] = label
    names = tuple(p.name for p in class_dirs)
    tag = root.name if split is None else f"{pathlib.Path(data_dir).name}-{split}"
    return ClassificationData(images, labels, len(names), names, f"folder-{tag}")
