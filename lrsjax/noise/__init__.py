"""Smoothing distributions: localized Gaussian grids for images, clustered Bernoulli for graphs."""

from lrsjax.noise._clusters import (
    affinity_ranks,
    check_ranks,
    cluster_edge_counts,
    flip_matrices,
    rank_flip_probabilities,
)
from lrsjax.noise._grid import GridCells, cell_distances, grid_cells, localized_stds
from lrsjax.noise._samplers import (
    OVERFLOW_PROBABILITY,
    BernoulliParameters,
    RegionLayout,
    bernoulli_parameters,
    gaussian_std_map,
    make_sparse_bernoulli_sampler,
    ones_bitmap,
    perturb_gaussian,
    region_layout,
    sample_dense_bernoulli,
    sample_gaussian,
    sparse_addition_capacity,
    standard_normal,
)
from lrsjax.noise._smoothing import (
    Smoothing,
    check_smoothing,
    clustered_bernoulli,
    isotropic_bernoulli,
    isotropic_gaussian,
    localized_gaussian,
)

__all__ = [
    "OVERFLOW_PROBABILITY",
    "BernoulliParameters",
    "GridCells",
    "RegionLayout",
    "Smoothing",
    "affinity_ranks",
    "bernoulli_parameters",
    "cell_distances",
    "check_ranks",
    "check_smoothing",
    "cluster_edge_counts",
    "clustered_bernoulli",
    "flip_matrices",
    "gaussian_std_map",
    "grid_cells",
    "isotropic_bernoulli",
    "isotropic_gaussian",
    "localized_gaussian",
    "localized_stds",
    "make_sparse_bernoulli_sampler",
    "ones_bitmap",
    "perturb_gaussian",
    "rank_flip_probabilities",
    "region_layout",
    "sample_dense_bernoulli",
    "sample_gaussian",
    "sparse_addition_capacity",
    "standard_normal",
]
