"""`Smoothing`: a localized smoothing distribution, as `lrsjax.certify` accepts it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrsjax import _checks
from lrsjax.noise import _clusters, _grid

KINDS = ("gaussian", "bernoulli")


class Smoothing(NamedTuple):
    """A localized smoothing distribution (SPEC 2): outputs in groups, input elements in regions.

    Smoothing group `k` draws noise whose level is constant on each input region `j`; every output
    of group `k` is certified from that group's samples.

    Fields:
      kind: "gaussian" (continuous images, l2 threat model) or "bernoulli" (binary graph
        attributes, additions/deletions threat model).
      group: int32 [*output_shape], the smoothing group of every output. Images: the grid cell of
        every pixel, [H, W]. Graphs: the cluster of every node, [N].
      region: int32 [*region_shape], the region of every input element, shared by the trailing
        input axis. Images: the cell of every pixel [H, W] (all C channels of a pixel share it; the
        input is [C, H, W]). Graphs: the cluster of every node [N] (all F attributes of a node share
        it; the input is [N, F]).
      stds: float64 [K, M] ("gaussian"): noise standard deviation of region `j` while smoothing
        group `k`; `np.inf` marks masked regions (input replaced by 0 after noise, weight 0). None
        for "bernoulli".
      theta_plus: float64 [K, M] ("bernoulli"): probability that a 0 of region `j` flips to 1 while
        smoothing group `k` (`theta_plus[rank[k, j]]`, SPEC bug D4). None for "gaussian".
      theta_minus: float64 [K, M] ("bernoulli"): probability that a 1 flips to 0, likewise.
    """

    kind: str
    group: np.ndarray
    region: np.ndarray
    stds: np.ndarray | None = None
    theta_plus: np.ndarray | None = None
    theta_minus: np.ndarray | None = None

    @property
    def num_groups(self) -> int:
        """K, the number of smoothing groups."""
        mat = self.stds if self.kind == "gaussian" else self.theta_plus
        return int(mat.shape[0])

    @property
    def num_regions(self) -> int:
        """M, the number of input regions."""
        mat = self.stds if self.kind == "gaussian" else self.theta_plus
        return int(mat.shape[1])

    @property
    def output_shape(self) -> tuple:
        """Shape of the model's outputs without the class axis: (H, W) or (N,)."""
        return tuple(self.group.shape)

    @property
    def num_outputs(self) -> int:
        return int(self.group.size)


def localized_gaussian(
    image_shape,
    grid_shape,
    std_min,
    std_max,
    *,
    interpolate: str = "std",
    max_std_at_boundary: bool = False,
    mask_distance: int | None = None,
) -> Smoothing:
    """Localized Gaussian smoothing of images on an `I x J` grid (SPEC 2).

    Groups = regions = grid cells; `stds` from `localized_stds` (see there for the options).
    `grid_shape=(1, 1)` is isotropic smoothing with standard deviation `std_min`.

    Args:
      image_shape: `(H, W)` or `(C, H, W)`.
      grid_shape: `(I, J)`, at most the image size.
      std_min, std_max: `0 < std_min <= std_max`, in [0, 1] pixel units (before normalization).
      interpolate, max_std_at_boundary, mask_distance: see `localized_stds`.
    Returns:
      A `Smoothing` of kind "gaussian" with `group = region = cell_id [H, W]`.
    """
    cells = _grid.grid_cells(image_shape, grid_shape)
    stds = _grid.localized_stds(
        grid_shape,
        std_min,
        std_max,
        interpolate=interpolate,
        max_std_at_boundary=max_std_at_boundary,
        mask_distance=mask_distance,
    )
    return Smoothing(kind="gaussian", group=cells.cell_id, region=cells.cell_id, stds=stds)


def isotropic_gaussian(image_shape, sigma) -> Smoothing:
    """Isotropic Gaussian smoothing with standard deviation `sigma` (a 1x1 grid)."""
    sigma = _grid._positive_std("sigma", sigma)
    return localized_gaussian(image_shape, (1, 1), sigma, sigma)


def clustered_bernoulli(cluster_ids, rank_matrix, theta_plus, theta_minus) -> Smoothing:
    """Clustered (localized) Bernoulli smoothing of binary node attributes (SPEC 2).

    Groups = regions = clusters. Smoothing group `k` flips each 0-bit of a node in cluster `c'` to 1
    with probability `theta_plus[rank[k, c']]` and each 1-bit to 0 with `theta_minus[rank[k, c']]`,
    all independently (`flip_matrices`; the certificate uses the same matrices).

    Args:
      cluster_ids: int [N], the cluster of every node (ids 0..C-1, all used).
      rank_matrix: int [C, C] from `affinity_ranks` (`rank[c, c] = 0`).
      theta_plus, theta_minus: float [C] per-rank flip probabilities in (0, 1)
        (`rank_flip_probabilities`), or scalars for the same probability everywhere.
    Returns:
      A `Smoothing` of kind "bernoulli" with `group = region = cluster_ids`.
    """
    ids = _clusters._cluster_ids(cluster_ids)
    rank = _clusters.check_ranks(rank_matrix)
    num_clusters = int(ids.max()) + 1
    if rank.shape[0] != num_clusters:
        _checks.fail(
            "rank_matrix",
            rank,
            f"must be [C, C] with C = {num_clusters} clusters in cluster_ids",
            "Compute it with affinity_ranks(adjacency, cluster_ids).",
        )
    tp, tm = _clusters.flip_matrices(rank, theta_plus, theta_minus)
    ids = ids.astype(np.int32)
    return Smoothing(kind="bernoulli", group=ids, region=ids, theta_plus=tp, theta_minus=tm)


def isotropic_bernoulli(num_nodes, theta_plus, theta_minus) -> Smoothing:
    """Isotropic sparse smoothing (Bojchevski et al. 2020): one cluster, one flip pair."""
    num_nodes = _checks.positive_int("num_nodes", num_nodes)
    tp = _checks.probability("theta_plus", theta_plus)
    tm = _checks.probability("theta_minus", theta_minus)
    return clustered_bernoulli(np.zeros(num_nodes, np.int64), np.zeros((1, 1), np.int64), tp, tm)


def check_smoothing(smoothing) -> Smoothing:
    """Validates a `Smoothing` built by hand (constructors already return valid ones)."""
    if not isinstance(smoothing, Smoothing):
        _checks.fail(
            "smoothing",
            type(smoothing).__name__,
            "must be an lrsjax.noise.Smoothing",
            "Build it with lrsjax.noise.localized_gaussian(...) or clustered_bernoulli(...).",
        )
    _checks.one_of("smoothing.kind", smoothing.kind, KINDS)
    group = _checks.as_int_array("smoothing.group", smoothing.group)
    region = _checks.as_int_array("smoothing.region", smoothing.region)
    if smoothing.kind == "gaussian":
        stds = _checks.as_float_array("smoothing.stds", smoothing.stds, ndim=2, finite=False)
        if np.any(np.isnan(stds)) or np.any(stds <= 0):
            _checks.fail(
                "smoothing.stds", stds, "must be > 0 and not NaN (inf = masked)", "Fix the stds."
            )
        if np.any(np.all(np.isinf(stds), axis=1)):
            _checks.fail("smoothing.stds", stds, "must leave every group some region", "")
        mats = (stds,)
    else:
        tp = _checks.as_float_array("smoothing.theta_plus", smoothing.theta_plus, ndim=2)
        tm = _checks.as_float_array("smoothing.theta_minus", smoothing.theta_minus, ndim=2)
        _checks.same_shape(("smoothing.theta_plus", "smoothing.theta_minus"), (tp, tm))
        for name, arr in (("smoothing.theta_plus", tp), ("smoothing.theta_minus", tm)):
            if np.any(arr <= 0) or np.any(arr >= 1):
                _checks.fail(name, arr, "must lie in (0, 1)", "Pass flip probabilities.")
        mats = (tp, tm)
    num_groups, num_regions = mats[0].shape
    if group.size == 0 or group.min() < 0 or group.max() >= num_groups:
        _checks.fail("smoothing.group", group, f"must lie in [0, {num_groups})", "Fix the ids.")
    if region.size == 0 or region.min() < 0 or region.max() >= num_regions:
        _checks.fail("smoothing.region", region, f"must lie in [0, {num_regions})", "Fix the ids.")
    return smoothing._replace(group=group.astype(np.int32), region=region.astype(np.int32))
