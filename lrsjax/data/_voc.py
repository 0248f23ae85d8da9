"""Pascal VOC 2012 segmentation (optionally with the SBD "trainaug" labels), read from disk.

Nothing is downloaded: the user points `root` at an existing copy in the standard layout.
"""

from __future__ import annotations

import math
import numbers
import pathlib

import numpy as np

from lrsjax import _checks
from lrsjax.data._segmentation import IGNORE_LABEL, SegmentationData, even_subset, stack_padded

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_SPLITS = ("train", "val", "trainval", "train_aug")
_INDEX_MODES = ("P", "L", "I", "I;16")

_LAYOUT = (
    "VOC2012/JPEGImages/<id>.jpg, VOC2012/SegmentationClass/<id>.png (palette indices 0..20, "
    "255 = ignore), VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt; for split "
    "'train_aug' also SegmentationClassAug/<id>.png and ImageSets/Segmentation/train_aug.txt "
    "(or ImageSets/SegmentationAug/train_aug.txt)"
)


def voc_colormap() -> np.ndarray:
    """The standard VOC palette: uint8 [256, 3], colour of each label index."""
    index = np.arange(256)
    cmap = np.zeros((256, 3), np.int64)
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return cmap.astype(np.uint8)


def _find_root(root) -> pathlib.Path:
    root = pathlib.Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(
        f"No Pascal VOC 2012 copy found at {str(root)!r}: neither it nor its VOC2012/ or "
        f"VOCdevkit/VOC2012/ subfolder has a JPEGImages/ folder. Expected layout: {_LAYOUT}."
    )


def _list_file(voc: pathlib.Path, split: str) -> pathlib.Path:
    sets = voc / "ImageSets"
    if split == "train_aug":
        candidates = [
            sets / "Segmentation" / "train_aug.txt",
            sets / "SegmentationAug" / "train_aug.txt",
            sets / "Segmentation" / "trainaug.txt",
        ]
    else:
        candidates = [sets / "Segmentation" / f"{split}.txt"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Image list for split {split!r} not found; looked for "
        f"{', '.join(repr(str(p)) for p in candidates)}. Expected layout: {_LAYOUT}."
    )


def _read_ids(path: pathlib.Path) -> list[str]:
    """Image ids of a list file: plain ids, or 'JPEGImages/x.jpg SegmentationClassAug/x.png' lines.

    Only the stem of the first token of each line is kept.
    """
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            ids.append(pathlib.PurePosixPath(line.split()[0]).stem)
    return ids


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(floor(height * scale), floor(width * scale)), at least 1 (333x500 at 0.5 -> 166x250)."""
    return (
        max(1, math.floor(height * scale + 1e-9)),
        max(1, math.floor(width * scale + 1e-9)),
    )


def _unreadable(path: pathlib.Path, what: str, err: Exception) -> ValueError:
    return ValueError(
        f"{what} {str(path)!r} cannot be decoded ({type(err).__name__}: {err}); it is corrupt, "
        "truncated or not an image. Replace it with the data set's original file (re-extract "
        "the archive), or remove its id from the split list."
    )


def _decode_errors() -> tuple:
    """What PIL raises on corrupt, truncated or foreign files (beyond FileNotFoundError)."""
    from PIL import Image

    return (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError)


def read_image(path: pathlib.Path, scale: float) -> np.ndarray:
    """An RGB image as float32 [3, h, w] in [0, 1], resized bilinearly by `scale`.

    Raises ValueError naming the file if it cannot be decoded (FileNotFoundError if missing).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            h, w = scaled_size(img.height, img.width, scale)
            if (h, w) != (img.height, img.width):
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            return (np.asarray(img, np.float32) / 255.0).transpose(2, 0, 1)
    except FileNotFoundError:
        raise
    except _decode_errors() as err:
        raise _unreadable(path, "Image file", err) from err


def read_label(path: pathlib.Path, scale: float, colormap: np.ndarray | None = None) -> np.ndarray:
    """A label map as int32 [h, w], resized with nearest neighbour by `scale`.

    Palette ("P") and greyscale ("L", "I", "I;16") PNGs hold label indices; RGB PNGs are mapped
    back through `colormap` [256, 3] if given (unknown colours -> 255). Raises ValueError naming
    the file if it cannot be decoded (FileNotFoundError if missing).
    """
    try:
        return _read_label(path, scale, colormap)
    except FileNotFoundError:
        raise
    except _decode_errors() as err:
        raise _unreadable(path, "Label file", err) from err


def _read_label(path: pathlib.Path, scale: float, colormap: np.ndarray | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in _INDEX_MODES and not (img.mode == "RGB" and colormap is not None):
            raise ValueError(
                f"Label file {str(path)!r} has PIL mode {img.mode!r}; expected a palette ('P') or "
                "greyscale ('L') PNG holding class indices."
            )
        h, w = scaled_size(img.height, img.width, scale)
        if (h, w) != (img.height, img.width):
            img = img.resize((w, h), Image.Resampling.NEAREST)
        if img.mode == "RGB":
            rgb = np.asarray(img, np.int64)
            code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            table = colormap.astype(np.int64)
            keys = (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]
            lookup = dict(zip(keys.tolist(), range(256)))
            uniques, inverse = np.unique(code, return_inverse=True)
            mapped = np.array([lookup.get(int(u), IGNORE_LABEL) for u in uniques], np.int32)
            return mapped[inverse].reshape(code.shape)
        return np.asarray(img, np.int32)


def check_scale(scale) -> float:
    if (
        isinstance(scale, bool)
        or not isinstance(scale, numbers.Real)
        or not np.isfinite(scale)
        or not 0 < scale <= 4
    ):
        _checks.fail(
            "scale", scale, "must be a finite number in (0, 4]", "E.g. 0.5 as in the paper."
        )
    return float(scale)


def check_max_images(max_images) -> int | None:
    if max_images is None:
        return None
    return _checks.positive_int("max_images", max_images)


def load_pascal_voc(
    root, split: str = "val", *, scale: float = 0.5, max_images: int | None = None
) -> SegmentationData:
    """Pascal VOC 2012 segmentation from the standard directory layout at `root`.

    Preprocessing as in the paper: images are resized bilinearly by `scale` (0.5 turns 333x500
    into 166x250), labels with nearest neighbour; the 255 object borders stay ignored and any
    index >= 21 becomes 255. `max_images` keeps a deterministic, evenly spaced subset of the split's
    list (in list order), the fixed evaluation subset. Images keep their own sizes (padded in the
    arrays, see `SegmentationData.sizes`).

    Args:
      root: the VOC2012 folder, or a folder holding VOC2012/ or VOCdevkit/VOC2012/.
      split: "train", "val", "trainval" or "train_aug" (SBD augmented labels from
        SegmentationClassAug/).
      scale: resize factor in (0, 4].
      max_images: keep at most this many images (None: all).
    Returns:
      SegmentationData with 21 classes, images float32 [N, 3, H, W], ids = file stems.
    """
    _checks.one_of("split", split, VOC_SPLITS)
    scale = check_scale(scale)
    max_images = check_max_images(max_images)
    voc = _find_root(root)
    label_dir = voc / ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
    if not label_dir.is_dir():
        raise FileNotFoundError(
            f"Label folder {str(label_dir)!r} does not exist. Expected layout: {_LAYOUT}."
        )
    ids = _read_ids(_list_file(voc, split))
    if not ids:
        raise ValueError(f"The image list for split {split!r} under {str(voc)!r} is empty.")
    ids = [ids[i] for i in even_subset(len(ids), max_images)]
    colormap = voc_colormap()
    images, labels = [], []
    for image_id in ids:
        image_path = voc / "JPEGImages" / f"{image_id}.jpg"
        label_path = label_dir / f"{image_id}.png"
        for path in (image_path, label_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{str(path)!r} (listed in split {split!r}) does not exist. "
                    f"Expected layout: {_LAYOUT}."
                )
        image = read_image(image_path, scale)
        label = read_label(label_path, scale, colormap)
        if label.shape != image.shape[1:]:
            raise ValueError(
                f"{str(label_path)!r} has size {label.shape} but its image has size "
                f"{image.shape[1:]} after scaling; image and label must have the same size."
            )
        label[(label >= len(VOC_CLASSES)) | (label < 0)] = IGNORE_LABEL
        images.append(image)
        labels.append(label)
    images_arr, labels_arr, sizes = stack_padded(images, labels)
    return SegmentationData(
        images=images_arr,
        labels=labels_arr,
        sizes=sizes,
        num_classes=len(VOC_CLASSES),
        class_names=VOC_CLASSES,
        name=f"voc2012-{split}",
        ids=tuple(ids),
    )
