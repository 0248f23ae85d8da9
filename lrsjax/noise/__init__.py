"""Smoothing distributions (noise plug-ins) and their samplers.

Every factory returns a `Noise` (see its docstring and `docs/design.md`, "Add a noise"):
  images, l2:  localized_gaussian, isotropic_gaussian
  images, l1:  localized_laplace, isotropic_laplace, localized_uniform, isotropic_uniform
  graphs (binary attributes, additions / deletions): clustered_bernoulli, isotropic_bernoulli
  semantic transformations (single output, certified in parameter space): gaussian_brightness,
    log_gaussian_contrast, gaussian_translation, exponential_blur, rayleigh_gamma,
    rayleigh_contrast (the transformations: brightness, contrast, gamma_correction,
    torus_translation, spectral_blur; `rayleigh_interval`, `gaussian_parameter_radius`,
    `exponential_parameter_radius`; parameter draws
    standard_exponential, standard_rayleigh)
`Smoothing` is another name of `Noise`, and `check_smoothing` of `check_noise`.
"""

from lrsjax.noise import _additive
from lrsjax.noise._bernoulli import addition_capacity as default_addition_capacity
from lrsjax.noise._bernoulli import (
    check_sparse_input,
    clustered_bernoulli,
    isotropic_bernoulli,
)
from lrsjax.noise._clusters import (
    affinity_ranks,
    check_ranks,
    cluster_edge_counts,
    flip_matrices,
    rank_flip_probabilities,
)
from lrsjax.noise._gaussian import isotropic_gaussian, localized_gaussian
from lrsjax.noise._grid import GridCells, cell_distances, grid_cells, localized_stds
from lrsjax.noise._laplace import isotropic_laplace, localized_laplace
from lrsjax.noise._plugin import Noise, NoiseCertificate, Prepared, check_noise, single_output
from lrsjax.noise._rayleigh import (
    rayleigh_contrast,
    rayleigh_gamma,
    rayleigh_interval,
    standard_rayleigh,
)
from lrsjax.noise._samplers import (
    OVERFLOW_PROBABILITY,
    BernoulliParameters,
    RegionLayout,
    bernoulli_parameters,
    gaussian_std_map,
    make_sparse_bernoulli_sampler,
    ones_bitmap,
    region_layout,
    sample_dense_bernoulli,
    sample_gaussian,
    sparse_addition_capacity,
    standard_normal,
)
from lrsjax.noise._semantic import (
    brightness,
    contrast,
    exponential_blur,
    exponential_parameter_radius,
    gamma_correction,
    gaussian_brightness,
    gaussian_parameter_radius,
    gaussian_translation,
    log_gaussian_contrast,
    spectral_blur,
    standard_exponential,
    torus_translation,
)
from lrsjax.noise._uniform import isotropic_uniform, localized_uniform

perturb_gaussian = _additive.perturb

Smoothing = Noise
check_smoothing = check_noise

__all__ = [
    "OVERFLOW_PROBABILITY",
    "BernoulliParameters",
    "GridCells",
    "Noise",
    "NoiseCertificate",
    "Prepared",
    "RegionLayout",
    "Smoothing",
    "affinity_ranks",
    "bernoulli_parameters",
    "cell_distances",
    "check_noise",
    "check_sparse_input",
    "default_addition_capacity",
    "check_ranks",
    "check_smoothing",
    "cluster_edge_counts",
    "clustered_bernoulli",
    "flip_matrices",
    "gaussian_std_map",
    "grid_cells",
    "isotropic_bernoulli",
    "isotropic_gaussian",
    "isotropic_laplace",
    "isotropic_uniform",
    "localized_gaussian",
    "localized_laplace",
    "localized_stds",
    "localized_uniform",
    "make_sparse_bernoulli_sampler",
    "ones_bitmap",
    "perturb_gaussian",
    "rank_flip_probabilities",
    "region_layout",
    "sample_dense_bernoulli",
    "sample_gaussian",
    "single_output",
    "sparse_addition_capacity",
    "standard_normal",
    "brightness",
    "contrast",
    "exponential_blur",
    "gamma_correction",
    "gaussian_brightness",
    "gaussian_translation",
    "log_gaussian_contrast",
    "spectral_blur",
    "torus_translation",
    "rayleigh_contrast",
    "rayleigh_gamma",
    "rayleigh_interval",
    "standard_exponential",
    "standard_rayleigh",
    "gaussian_parameter_radius",
    "exponential_parameter_radius",
]
