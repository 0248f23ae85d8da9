"""lrsjax: localized randomized smoothing and collective robustness certification in JAX.

Public surface:
  lrsjax.certify, lrsjax.Certificate   one-call certification of a multi-output model
  lrsjax.certify_classifier, lrsjax.predict_classifier, lrsjax.segcertify
                      Cohen et al.'s CERTIFY / PREDICT for single-output classifiers, SegCertify
  lrsjax.probabilistic_certificate, lrsjax.ProbabilisticCertificate
                      a Clopper-Pearson bound on the probability that a random transform changes
                      a classifier's prediction
  lrsjax.certify_regression, lrsjax.certify_expectation, lrsjax.certify_center
                      percentile (median) smoothing and bounded expectations of real outputs;
                      center smoothing of whole output maps (lrsjax.detection: certified boxes)
  lrsjax.SparseBinary  the sparse binary attribute format of graph inputs (also lrsjax.data)
  lrsjax.noise        noise plug-ins: localized Gaussian, Laplace and uniform grids, Bernoulli
  lrsjax.estimators   estimator plug-ins: majority vote, Clopper-Pearson, DKW moments
  lrsjax.stats        Clopper-Pearson, multiple-testing corrections, DKW bounds (host, float64)
  lrsjax.base_certs   BaseCertificates and the certificates that produce them
  lrsjax.collective   collective LP/MILP certificates on OR-Tools, composable problem transforms
  lrsjax.sampling     jit/vmap sampling and counting kernels, sharded over devices
  lrsjax.models, lrsjax.data, lrsjax.training, lrsjax.results

Subpackages are imported on first use, so `import lrsjax` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "base_certs",
    "cli",
    "collective",
    "detection",
    "data",
    "estimators",
    "models",
    "noise",
    "pipelines",
    "results",
    "sampling",
    "stats",
    "training",
)
_FROM_CERTIFY = ("certify", "Certificate")
_FROM_SPARSE = ("SparseBinary",)
_FROM_REGRESSION = (
    "certify_regression",
    "RegressionCertificate",
    "certify_expectation",
    "ExpectationCertificate",
)
_FROM_CENTER = ("certify_center", "CenterCertificate")
_FROM_PROBABILISTIC = ("probabilistic_certificate", "ProbabilisticCertificate")
_FROM_CLASSIFY = (
    "certify_classifier",
    "ClassifierCertificate",
    "predict_classifier",
    "ClassifierPrediction",
    "segcertify",
    "lp_radius_from_l2",
    "uniform_linf_radius",
    "uniform_l1_radius",
    "laplace_l1_radius",
)

__all__ = [
    "__version__",
    *_FROM_CERTIFY,
    *_FROM_CLASSIFY,
    *_FROM_PROBABILISTIC,
    *_FROM_REGRESSION,
    *_FROM_CENTER,
    *_FROM_SPARSE,
    *_SUBPACKAGES,
]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lrsjax.{name}")
    if name in _FROM_CERTIFY:
        return getattr(importlib.import_module("lrsjax._certify"), name)
    if name in _FROM_CLASSIFY:
        return getattr(importlib.import_module("lrsjax._classify"), name)
    if name in _FROM_PROBABILISTIC:
        return getattr(importlib.import_module("lrsjax._probabilistic"), name)
    if name in _FROM_REGRESSION:
        return getattr(importlib.import_module("lrsjax._regression"), name)
    if name in _FROM_CENTER:
        return getattr(importlib.import_module("lrsjax._center"), name)
    if name in _FROM_SPARSE:
        return getattr(importlib.import_module("lrsjax._sparse"), name)
    raise AttributeError(f"module 'lrsjax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
