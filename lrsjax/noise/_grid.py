"""Grid partitions of images and the localized noise levels (docs/math.md §2)."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from lrsjax import _checks

INTERPOLATIONS = ("std", "variance")


class GridCells(NamedTuple):
    """An `I x J` grid of cells over an `H x W` image (docs/math.md §2).

    Fields:
      row_edges: int64 [I + 1], `floor(linspace(0, H, I + 1))`; cell row `i` spans pixel rows
        `[row_edges[i], row_edges[i + 1])`.
      col_edges: int64 [J + 1], `floor(linspace(0, W, J + 1))`, likewise for columns.
      cell_id: int32 [H, W], the cell of every pixel, `i * J + j` (row-major over the grid).
    """

    row_edges: np.ndarray
    col_edges: np.ndarray
    cell_id: np.ndarray


def _shape2(name: str, value, what: str) -> tuple[int, int]:
    try:
        items = tuple(value)
    except TypeError:
        _checks.fail(name, value, f"must be a pair {what}", "Pass a tuple such as (3, 5).")
    if len(items) != 2:
        _checks.fail(name, value, f"must be a pair {what}", "Pass a tuple such as (3, 5).")
    return tuple(_checks.positive_int(f"{name}[{i}]", v) for i, v in enumerate(items))


def grid_cells(image_shape, grid_shape) -> GridCells:
    """Splits an `H x W` image into an `I x J` grid of cells.

    Args:
      image_shape: `(H, W)`, or `(C, H, W)` (the channels are ignored: a cell holds every channel of
        its pixels).
      grid_shape: `(I, J)` with `I <= H` and `J <= W`, so that no cell is empty.
    Returns:
      A `GridCells` with the row/column edges and the cell id of every pixel.
    """
    if isinstance(image_shape, numbers.Integral):
        image_shape = (image_shape,)
    try:
        image_shape = tuple(image_shape)
    except TypeError:
        _checks.fail(
            "image_shape", image_shape, "must be (H, W) or (C, H, W)", "Pass e.g. (3, 64, 64)."
        )
    if len(image_shape) == 3:
        image_shape = image_shape[1:]
    height, width = _shape2("image_shape", image_shape, "(H, W) or a triple (C, H, W)")
    rows, cols = _shape2("grid_shape", grid_shape, "(I, J) of grid rows and columns")
    if rows > height or cols > width:
        _checks.fail(
            "grid_shape",
            (rows, cols),
            f"must not exceed the image size (H, W) = {(height, width)}, or some cells are empty",
            "Use a coarser grid.",
        )
    row_edges = np.floor(np.linspace(0, height, rows + 1)).astype(np.int64)
    col_edges = np.floor(np.linspace(0, width, cols + 1)).astype(np.int64)
    row_of = np.searchsorted(row_edges, np.arange(height), side="right") - 1
    col_of = np.searchsorted(col_edges, np.arange(width), side="right") - 1
    cell_id = (row_of[:, None] * cols + col_of[None, :]).astype(np.int32)
    return GridCells(row_edges, col_edges, cell_id)


def cell_distances(grid_shape) -> np.ndarray:
    """int64 [K, K], the l_inf distance between the grid coordinates of cells `k` and `j`."""
    rows, cols = _shape2("grid_shape", grid_shape, "(I, J) of grid rows and columns")
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.maximum(np.abs(r[:, None] - r[None, :]), np.abs(c[:, None] - c[None, :]))


def localized_stds(
    grid_shape,
    std_min,
    std_max,
    *,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> np.ndarray:
    """The noise-level matrix `S[K, M]` of localized Gaussian smoothing on a grid (docs/math.md §2).

    `S[k, j] = std_min + (std_max - std_min) * d(k, j) / d_max`, with `d` the l_inf distance between
    the grid coordinates of cells `k` and `j`; `interpolate="variance"` interpolates the variances
    instead and takes the root. `d_max = max(I, J) - 1`, or with `max_std_at_boundary=True` the
    largest distance from cell `k` to any cell (so the farthest cell gets `std_max`). A 1x1 grid
    gives isotropic smoothing with `std_min`.

    Args:
      grid_shape: `(I, J)`; groups = regions = the `K = I * J` cells, row-major.
      std_min, std_max: noise standard deviations (pixel units), `0 < std_min <= std_max`.
      interpolate: "std" or "variance".
      max_std_at_boundary: see above.
      mask_distance: if given (>= 1), regions at distance `>= mask_distance` from `k` are masked:
        `S[k, j] = inf`, meaning the input there is replaced by 0 after noise and the certificate
        gives it weight 0 (only valid for strictly local models).
    Returns:
      float64 [K, K]; rows are groups, columns regions; `np.inf` marks masked regions.
    """
    rows, cols = _shape2("grid_shape", grid_shape, "(I, J) of grid rows and columns")
    lo = _positive_std("std_min", std_min)
    hi = _positive_std("std_max", std_max)
    if lo > hi:
        _checks.fail(
            "std_min", lo, f"must be <= std_max ({hi})", "Swap them: noise grows with distance."
        )
    _checks.one_of("interpolate", interpolate, INTERPOLATIONS)
    dist = cell_distances((rows, cols)).astype(np.float64)
    if max_std_at_boundary:
        d_max = dist.max(axis=1, keepdims=True)
    else:
        d_max = np.full((rows * cols, 1), float(max(rows, cols) - 1))
    frac = np.divide(dist, d_max, out=np.zeros_like(dist), where=d_max > 0)
    if interpolate == "std":
        stds = lo + (hi - lo) * frac
    else:
        stds = np.sqrt(lo**2 + (hi**2 - lo**2) * frac)
    if mask_distance is not None:
        mask_distance = _checks.positive_int("mask_distance", mask_distance)
        stds = np.where(dist >= mask_distance, np.inf, stds)
    return stds


def _positive_std(name: str, value) -> float:
    arr = np.asarray(value)
    if arr.ndim != 0:
        _checks.fail(name, arr, "must be a scalar", "Pass one standard deviation.")
    v = float(_checks.as_float_array(name, arr))
    if v <= 0:
        _checks.fail(name, v, "must be > 0", "Pass a positive standard deviation.")
    return v
