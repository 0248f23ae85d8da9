"""A synthetic detection task: bright rectangles on a dark noisy background, and an oracle
detector whose boxes depend on the noise (it measures each proposal's edges on the image)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import _checks, _keys

# Rectangle intensity per label, and the background level.
LEVELS = (0.5, 0.9)
BACKGROUND = 0.1


class DetectionData(NamedTuple):
    """Images and their boxes. `N` images of `S x S` pixels, `G` boxes each.

    Fields:
      images: float32 [N, 1, S, S] in [0, 1].
      boxes: float64 [N, G, 4], (x1, y1, x2, y2) pixel edges (a box covers pixels x1 .. x2 - 1).
      labels: int64 [N, G], in [0, len(LEVELS)).
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def synthetic_rectangles(key, num_images: int, *, image_size: int = 32, num_boxes: int = 2):
    """`num_images` images, each with `num_boxes` disjoint rectangles (one per vertical strip of
    the image) of random size, position and label, on a background of level 0.1 plus uniform
    texture in [0, 0.05).

    Args:
      key: JAX PRNG key (same key, same data).
      num_images: int >= 1; image_size: int >= 8 * num_boxes; num_boxes: int >= 1.
    Returns:
      A `DetectionData`.
    """
    key = _keys.check_key("key", key)
    num_images = _checks.positive_int("num_images", num_images)
    num_boxes = _checks.positive_int("num_boxes", num_boxes)
    image_size = _checks.positive_int("image_size", image_size, minimum=8 * num_boxes)
    key_geometry, key_texture = jax.random.split(key)
    strip = image_size // num_boxes
    u = np.asarray(jax.random.uniform(key_geometry, (num_images, num_boxes, 5)), np.float64)
    width = np.floor(strip // 2 + u[..., 0] * (strip - 2 - strip // 2)).astype(np.int64)
    height = np.floor(image_size // 4 + u[..., 1] * (image_size // 2)).astype(np.int64)
    x1 = np.arange(num_boxes) * strip + 1 + np.floor(u[..., 2] * (strip - 1 - width))
    y1 = np.floor(u[..., 3] * (image_size - height))
    labels = (u[..., 4] * len(LEVELS)).astype(np.int64)
    boxes = np.stack([x1, y1, x1 + width, y1 + height], axis=-1).astype(np.float64)
    texture = 0.05 * np.asarray(
        jax.random.uniform(key_texture, (num_images, image_size, image_size))
    )
    images = BACKGROUND + texture
    for i in range(num_images):
        for g in range(num_boxes):
            a, b, c, d = boxes[i, g].astype(np.int64)
            images[i, b:d, a:c] = LEVELS[labels[i, g]]
    return DetectionData(images[:, None].astype(np.float32), boxes, labels)


def oracle_detector(params, x):
    """Detections `[P, 6]` of one image `[1, S, S]` from proposals `params [P, 4]` (the true boxes).

    For each proposal, the mean level inside decides presence (> 0.3) and label (> 0.7: label 1);
    each edge is re-measured on the image: the profile of the mean over the proposal's rows
    (columns) is thresholded midway between the inside level and the background, within two
    pixels of the proposal, so the boxes move with the noise. Rows: `(x1, y1, x2, y2, label,
    score)`, score 1 (present) or 0.
    """
    image = x[0]
    size = image.shape[-1]
    grid = jnp.arange(size, dtype=jnp.float32)

    def one(box):
        x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
        rows = (grid >= y1) & (grid < y2)
        cols = (grid >= x1) & (grid < x2)
        inside = rows[:, None] & cols[None, :]
        level = jnp.sum(jnp.where(inside, image, 0.0)) / jnp.maximum(jnp.sum(inside), 1)
        threshold = 0.5 * (level + BACKGROUND)
        col_profile = jnp.sum(jnp.where(rows[:, None], image, 0.0), 0) / jnp.maximum(rows.sum(), 1)
        row_profile = jnp.sum(jnp.where(cols[None, :], image, 0.0), 1) / jnp.maximum(cols.sum(), 1)

        def edges(profile, low, high):
            centre = 0.5 * (low + high)
            window_low = (grid >= low - 2) & (grid < centre)
            window_high = (grid >= centre) & (grid < high + 2)
            dark = profile < threshold
            start = low - 2 + jnp.sum(window_low & dark)
            stop = high + 2 - jnp.sum(window_high & dark)
            return start, stop

        nx1, nx2 = edges(col_profile, x1, x2)
        ny1, ny2 = edges(row_profile, y1, y2)
        label = (level > 0.7).astype(jnp.float32)
        score = (level > 0.3).astype(jnp.float32)
        return jnp.stack([nx1, ny1, nx2, ny2, label, score])

    return jax.vmap(one)(jnp.asarray(params, jnp.float32))
