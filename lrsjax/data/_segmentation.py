"""Segmentation data: the `SegmentationData` type and the built-in synthetic generator.

The synthetic images are the default data of every command: they need no download, are fully
determined by a JAX key, and are *softly local*: a pixel's class is carried by the colour and the
texture of its neighbourhood (one label per pixel), while colours of different classes
overlap, a smooth illumination field shifts them per image and pixel noise is added, so a small
model learns them well but not perfectly.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import numpy as np

from lrsjax import _checks
from lrsjax._keys import check_key, seed_sequence

IGNORE_LABEL = 255
# Side lengths `synthetic_segmentation` draws images of (inclusive).
SYNTHETIC_SIZE_RANGE = (8, 1024)
SPLITS = ("train", "test")
_SPLIT_FOLD = {"train": 0, "test": 1}
_SHAPE_KINDS = ("disc", "ellipse", "rectangle", "triangle", "stripe")


class SegmentationData(NamedTuple):
    """A segmentation data set held on the host.

    Images of different sizes (e.g. Pascal VOC) are stored top-left aligned in one padded array;
    `sizes` gives each image's true size, the padding holds 0 in `images` and `IGNORE_LABEL` in
    `labels`. Use `data.image(i)` to get one image and its labels cropped to the true size.

    Fields:
      images: float32 [N, C, H, W] in [0, 1], channels first (the layout of `x` in lrsjax.certify).
      labels: int32 [N, H, W], class index in [0, num_classes) or 255 (= ignore).
      sizes: int32 [N, 2], the true (height, width) of each image (<= (H, W)).
      num_classes: number of classes (labels other than 255 are below it).
      class_names: tuple of num_classes names.
      name: the data set's name, e.g. "synthetic-train", "voc2012-val".
      ids: tuple of N image ids (file stems for real data).
    """

    images: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    num_classes: int
    class_names: tuple
    name: str
    ids: tuple

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    def image(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(x [C, h, w] float32, labels [h, w] int32) of image `index` at its true size."""
        h, w = (int(v) for v in self.sizes[index])
        return self.images[index, :, :h, :w], self.labels[index, :h, :w]


def check_segmentation_data(name: str, data) -> SegmentationData:
    """Validates the fields of a `SegmentationData` (shapes, dtypes, ranges); returns it."""
    if not isinstance(data, SegmentationData):
        _checks.fail(
            name,
            type(data).__name__,
            "must be a lrsjax.data.SegmentationData",
            "Build it with synthetic_segmentation, load_pascal_voc or load_cityscapes.",
        )
    images, labels, sizes = data.images, data.labels, data.sizes
    if np.ndim(images) != 4 or images.shape[0] < 1:
        _checks.fail(f"{name}.images", images, "must have shape [N, C, H, W] with N >= 1")
    n, _, h, w = images.shape
    if np.shape(labels) != (n, h, w):
        _checks.fail(f"{name}.labels", labels, f"must have shape [N, H, W] = {(n, h, w)}")
    if np.shape(sizes) != (n, 2):
        _checks.fail(f"{name}.sizes", sizes, f"must have shape [N, 2] = {(n, 2)}")
    if np.any(sizes < 1) or np.any(sizes[:, 0] > h) or np.any(sizes[:, 1] > w):
        _checks.fail(f"{name}.sizes", sizes, f"must lie in [1, {(h, w)}]")
    _checks.positive_int(f"{name}.num_classes", data.num_classes, minimum=2)
    if data.num_classes > IGNORE_LABEL:
        _checks.fail(f"{name}.num_classes", data.num_classes, f"must be below {IGNORE_LABEL}")
    bad = (labels != IGNORE_LABEL) & ((labels < 0) | (labels >= data.num_classes))
    if np.any(bad):
        _checks.fail(
            f"{name}.labels",
            labels[bad].ravel()[0],
            f"must lie in [0, {data.num_classes}) or equal {IGNORE_LABEL}",
            "Map unknown classes to the ignore label 255.",
        )
    return data


class _ClassStyle(NamedTuple):
    colour: np.ndarray  # [C, 3] mean colour of each class
    frequency: np.ndarray  # [C] texture frequency in cycles per pixel
    angle: np.ndarray  # [C] texture orientation in radians
    second: np.ndarray  # [C] 1.0 where the texture is a checkerboard (product of two waves)


def _class_styles(num_classes: int) -> _ClassStyle:
    """The fixed appearance of each class; depends on the class index only (same in every split)."""
    c = np.arange(num_classes, dtype=np.float64)
    hue = (c * 0.6180339887) % 1.0
    value = 0.55 + 0.1 * ((c * 0.7548776662) % 1.0)
    colour = _hsv_to_rgb(hue, np.full_like(hue, 0.4), value)
    frequency = 0.07 + 0.16 * ((c * 0.4142135624 + 0.3) % 1.0)
    angle = np.pi * ((c * 0.5698402910) % 1.0)
    second = (np.arange(num_classes) % 3 == 2).astype(np.float64)
    return _ClassStyle(colour, frequency, angle, second)


def _hsv_to_rgb(hue, saturation, value) -> np.ndarray:
    """Vectorized HSV -> RGB for arrays of the same shape; returns [..., 3]."""
    k = (np.stack([5.0, 3.0, 1.0], axis=-1) + hue[..., None] * 6.0) % 6.0
    weight = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return value[..., None] * (1.0 - saturation[..., None] * weight)


def _texture(style: _ClassStyle, cls: int, yy, xx, phase: float) -> np.ndarray:
    """The class texture in [-1, 1] on the pixel grid [H, W]."""
    f, a = style.frequency[cls], style.angle[cls]
    u = xx * np.cos(a) + yy * np.sin(a)
    wave = np.sin(2 * np.pi * f * u + phase)
    if style.second[cls]:
        v = -xx * np.sin(a) + yy * np.cos(a)
        wave = np.sign(wave * np.sin(2 * np.pi * f * v + phase))
    return wave


def _shape_mask(rng: np.random.Generator, kind: str, yy, xx, height: int, width: int):
    """A random shape of the given kind as a bool mask [H, W] (vectorized over pixels)."""
    side = min(height, width)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    theta = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    if kind == "disc":
        r = rng.uniform(0.1, 0.22) * side
        return u**2 + v**2 <= r**2
    if kind == "ellipse":
        a, b = rng.uniform(0.12, 0.3) * side, rng.uniform(0.06, 0.15) * side
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == "rectangle":
        a, b = rng.uniform(0.08, 0.25) * side, rng.uniform(0.08, 0.25) * side
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if kind == "triangle":
        r = rng.uniform(0.14, 0.3) * side
        angles = theta + np.array([0.0, 2.0, 4.0]) * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
        py, px = cy + r * np.sin(angles), cx + r * np.cos(angles)
        signs = []
        for i in range(3):
            j = (i + 1) % 3
            signs.append((px[j] - px[i]) * (yy - py[i]) - (py[j] - py[i]) * (xx - px[i]))
        s = np.stack(signs)
        return np.all(s >= 0, axis=0) | np.all(s <= 0, axis=0)
    # stripe: a straight band across the whole image
    half = rng.uniform(0.04, 0.08) * side
    return np.abs(v) <= half


def synthetic_segmentation(
    key,
    num_images: int,
    *,
    image_shape: tuple[int, int] = (64, 64),
    num_classes: int = 5,
    split: str = "train",
    num_shapes: tuple[int, int] = (4, 8),
    colour_jitter: float = 0.08,
    illumination: float = 0.12,
    texture_amplitude: float = 0.12,
    pixel_noise: float = 0.08,
) -> SegmentationData:
    """Synthetic softly local segmentation images, deterministic for `key` and `split`.

    Each image has a textured background (class 0) and `num_shapes` (inclusive range) random
    shapes - discs, ellipses, rectangles, triangles and stripes - painted in order (later shapes
    occlude earlier ones). The shape kind is independent of the class; a class is identified by
    its colour (a fixed mean per class plus a per-shape jitter) and its texture (a fixed frequency,
    orientation and stripe/checker pattern per class, random phase). A smooth illumination gradient
    per image and independent pixel noise make the colours of neighbouring classes overlap, so
    every pixel's label is decided mostly by its neighbourhood but not trivially. The foreground
    classes of an image cycle through a random permutation, so every image with at least
    `num_classes - 1` visible shapes shows every class. No ignore labels are produced.

    Split convention: `split="train"` and `split="test"` fold different constants into `key`, so
    one key gives two independent sets with the same class appearance; image `i` depends only on
    (`key`, `split`, `i`), not on `num_images`.

    Args:
      key: JAX PRNG key (the only source of randomness).
      num_images: number of images N.
      image_shape: (H, W), each in [8, 1024]; 64x64 to 256x256 are the intended sizes.
      num_classes: classes including the background, in [2, 64].
      split: "train" or "test".
      num_shapes: (min, max) shapes per image.
      colour_jitter, illumination, texture_amplitude, pixel_noise: difficulty knobs (std of the
        per-shape colour offset, scale of the illumination gradient, texture amplitude, std of the
        i.i.d. pixel noise), all in pixel units of [0, 1].
    Returns:
      SegmentationData with images float32 [N, 3, H, W] in [0, 1] and labels int32 [N, H, W].
    """
    check_key("key", key)
    num_images = _checks.positive_int("num_images", num_images)
    height, width = _image_shape("image_shape", image_shape)
    num_classes = _checks.positive_int("num_classes", num_classes, minimum=2)
    if num_classes > 64:
        _checks.fail("num_classes", num_classes, "must be <= 64", "Use at most 64 classes.")
    _checks.one_of("split", split, SPLITS)
    try:
        num_shapes = tuple(num_shapes)
    except TypeError:
        _checks.fail("num_shapes", num_shapes, "must be a pair (min, max)", "Pass e.g. (4, 8).")
    if (
        len(num_shapes) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in num_shapes)
        or not 0 <= num_shapes[0] <= num_shapes[1]
    ):
        _checks.fail("num_shapes", num_shapes, "must be (min, max) ints with 0 <= min <= max")
    for name, value in (
        ("colour_jitter", colour_jitter),
        ("illumination", illumination),
        ("texture_amplitude", texture_amplitude),
        ("pixel_noise", pixel_noise),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not (np.isfinite(value) and 0 <= value <= 1)
        ):
            _checks.fail(name, value, "must lie in [0, 1]", "Pass a small std such as 0.1.")

    style = _class_styles(num_classes)
    seeds = seed_sequence(jax.random.fold_in(key, _SPLIT_FOLD[split])).spawn(num_images)
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width), indexing="ij")
    images = np.empty((num_images, 3, height, width), np.float32)
    labels = np.empty((num_images, height, width), np.int32)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        label = np.zeros((height, width), np.int32)
        rgb = _appearance(rng, style, 0, yy, xx, colour_jitter, texture_amplitude)
        count = rng.integers(num_shapes[0], num_shapes[1] + 1)
        order = rng.permutation(np.arange(1, num_classes))
        for s in range(count):
            cls = int(order[s % (num_classes - 1)])
            kind = _SHAPE_KINDS[rng.integers(len(_SHAPE_KINDS))]
            mask = _shape_mask(rng, kind, yy, xx, height, width)
            look = _appearance(rng, style, cls, yy, xx, colour_jitter, texture_amplitude)
            rgb = np.where(mask[..., None], look, rgb)
            label[mask] = cls
        gy, gx = rng.normal(0.0, illumination, 2)
        light = gy * (yy / height - 0.5) + gx * (xx / width - 0.5) + rng.normal(0, illumination / 2)
        rgb = rgb + light[..., None] + rng.normal(0.0, pixel_noise, rgb.shape)
        images[i] = np.clip(rgb, 0.0, 1.0).transpose(2, 0, 1)
        labels[i] = label
    names = ("background",) + tuple(f"class{c}" for c in range(1, num_classes))
    return SegmentationData(
        images=images,
        labels=labels,
        sizes=np.tile(np.array([height, width], np.int32), (num_images, 1)),
        num_classes=num_classes,
        class_names=names,
        name=f"synthetic-{split}",
        ids=tuple(f"synthetic-{split}-{i:05d}" for i in range(num_images)),
    )


def _appearance(rng, style, cls, yy, xx, colour_jitter, texture_amplitude) -> np.ndarray:
    """Colour + texture of one region of class `cls` over the whole grid: [H, W, 3]."""
    colour = style.colour[cls] + rng.normal(0.0, colour_jitter, 3)
    wave = _texture(style, cls, yy, xx, rng.uniform(0, 2 * np.pi))
    return colour[None, None, :] + texture_amplitude * wave[..., None]


def _image_shape(name: str, value) -> tuple[int, int]:
    try:
        shape = tuple(value)
    except TypeError:
        shape = ()
    if len(shape) != 2 or any(
        isinstance(v, bool)
        or not isinstance(v, int | np.integer)
        or not SYNTHETIC_SIZE_RANGE[0] <= v <= SYNTHETIC_SIZE_RANGE[1]
        for v in shape
    ):
        lo, hi = SYNTHETIC_SIZE_RANGE
        _checks.fail(name, value, f"must be (height, width) ints in [{lo}, {hi}]", "E.g. (64, 64).")
    return int(shape[0]), int(shape[1])


def even_subset(count: int, max_images: int | None) -> np.ndarray:
    """Deterministic evenly spaced indices: `max_images` of range(count) (all if None or larger)."""
    if max_images is None or max_images >= count:
        return np.arange(count)
    return (np.arange(max_images) * count) // max_images


def stack_padded(images: list, labels: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacks images [C, h, w] and labels [h, w] of varying sizes, top-left aligned and padded.

    Returns (images [N, C, H, W] float32 padded with 0, labels [N, H, W] int32 padded with 255,
    sizes [N, 2] int32).
    """
    sizes = np.array([lab.shape for lab in labels], np.int32).reshape(-1, 2)
    height, width = (int(v) for v in sizes.max(axis=0))
    channels = images[0].shape[0]
    out_images = np.zeros((len(images), channels, height, width), np.float32)
    out_labels = np.full((len(images), height, width), IGNORE_LABEL, np.int32)
    for i, (img, lab) in enumerate(zip(images, labels)):
        h, w = lab.shape
        out_images[i, :, :h, :w] = img
        out_labels[i, :h, :w] = lab
    return out_images, out_labels, sizes
