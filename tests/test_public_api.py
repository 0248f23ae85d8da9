"""The public surface: every subpackage declares `__all__`, the names are pinned here, and no module
of lrsjax reaches into another subpackage's private modules or names."""

import ast
import importlib
import pathlib

import pytest

import lrsjax

ROOT = pathlib.Path(lrsjax.__file__).resolve().parent

PUBLIC = {
    "lrsjax": {
        "__version__", "certify", "Certificate", "certify_classifier", "ClassifierCertificate",
        "predict_classifier", "ClassifierPrediction", "segcertify", "lp_radius_from_l2",
        "uniform_linf_radius", "uniform_l1_radius", "laplace_l1_radius",
        "probabilistic_certificate", "ProbabilisticCertificate",
        "certify_regression", "RegressionCertificate", "certify_expectation",
        "ExpectationCertificate", "certify_center", "CenterCertificate", "detection",
        "SparseBinary", "base_certs", "cli", "collective",
        "data", "estimators", "models", "noise", "pipelines", "results", "sampling", "stats",
        "training",
    },
    "lrsjax.base_certs": {
        "BUDGET_KINDS", "NORMS", "BaseCertificates", "bernoulli_costs", "budget_totals",
        "check_table_size", "gaussian", "inverse_scales", "isotropic_radius", "laplace_l1",
        "make_base_certificates", "naive_certified", "sparse_smoothing_grid",
        "sparse_smoothing_worst_mass", "uniform_l1", "variance_constrained",
    },
    "lrsjax.collective": {
        "CollectiveProblem", "CollectiveResult", "MILP_SOLVERS", "MODES", "MilpOptions",
        "Transform", "binning", "certify_collective", "chain", "from_base_certs", "max_costs",
        "milp", "naive_filter", "share", "solve", "with_totals",
    },
    "lrsjax.data": {
        "CIFAR10_CLASSES", "SYNTHETIC_PATTERNS", "ClassificationData", "check_classification_data",
        "load_cifar10", "load_image_folder", "synthetic_classification",
        "CITYSCAPES_CLASSES", "IGNORE_LABEL", "SYNTHETIC_SIZE_RANGE", "VOC_CLASSES", "Graph",
        "SegmentationData", "SparseBinary", "check_segmentation_data", "from_scipy",
        "load_cityscapes", "load_npz_graph", "load_pascal_voc", "metis_clusters",
        "spectral_clusters", "split_nodes", "synthetic_graph", "synthetic_segmentation", "to_dense",
    },
    "lrsjax.detection": {
        "BACKGROUND", "LEVELS", "DetectionCertificate", "DetectionData", "Matches",
        "boxes_to_vectors", "certified_matches", "certify_detection", "iou", "matches",
        "oracle_detector", "single_point_ap", "synthetic_rectangles", "worst_case_iou",
    },
    "lrsjax.estimators": {
        "CORRECTIONS", "Estimator", "MomentEstimate", "ProbabilityEstimate", "check_num_bins",
        "clopper_pearson", "consistency", "dkw_moments", "majority_vote", "hamming_histogram",
    },
    "lrsjax.models": {
        "ResNet", "classifier_apply_fn", "init_classifier_params", "resnet_config",
        "resnet_from_config",
        "DnCNN", "compose", "denoiser_apply_fn", "dncnn_config", "dncnn_from_config",
        "init_denoiser_params",
        "APPNP", "GCN", "LocalCNN", "SparseDense", "UNet", "check_graph_model", "gnn_config",
        "gnn_from_config", "graph_apply_fn", "graph_to_jraph", "init_graph_model",
        "init_segmentation_params", "segmentation_apply_fn", "unet_config", "unet_from_config",
    },
    "lrsjax.noise": {
        "OVERFLOW_PROBABILITY", "BernoulliParameters", "GridCells", "Noise", "NoiseCertificate",
        "Prepared", "RegionLayout", "Smoothing", "affinity_ranks", "bernoulli_parameters",
        "cell_distances", "check_noise", "check_ranks", "check_smoothing", "check_sparse_input",
        "cluster_edge_counts", "clustered_bernoulli", "default_addition_capacity", "flip_matrices",
        "gaussian_std_map", "grid_cells", "isotropic_bernoulli", "isotropic_gaussian",
        "isotropic_laplace", "isotropic_uniform", "localized_gaussian", "localized_laplace",
        "localized_stds", "localized_uniform", "make_sparse_bernoulli_sampler", "ones_bitmap",
        "perturb_gaussian", "rank_flip_probabilities", "region_layout", "sample_dense_bernoulli",
        "sample_gaussian", "single_output", "sparse_addition_capacity", "standard_normal",
        "brightness", "contrast", "gamma_correction", "torus_translation", "spectral_blur",
        "gaussian_brightness", "log_gaussian_contrast", "gaussian_translation", "exponential_blur",
        "rayleigh_gamma", "rayleigh_contrast", "rayleigh_interval", "standard_exponential",
        "standard_rayleigh", "gaussian_parameter_radius", "exponential_parameter_radius",
    },
    "lrsjax.collective.milp": {
        "MilpOptions", "MilpOutcome", "MilpRequest", "MilpSolver", "SOLVERS", "check_options",
        "default_threads",
    },
    "lrsjax.results": {
        "ACR_RULE", "CertifiedCounts", "CertifiedCurve", "ItemScan", "RunDir", "SCHEMA_VERSION",
        "abstain_rate", "acr_from_curve", "certified_accuracy_at", "exact_acr",
        "high_probability_certified_accuracy", "atomic_path", "average_certified_radius",
        "certified_accuracy_curve",
        "certified_counts", "check_formats", "collect_environment", "confusion_matrix",
        "curve_from_counts", "format_class_tables", "format_table", "item_record", "make_report",
        "mean_iou", "method_record", "output_metrics", "per_class_certified_counts",
        "per_class_iou", "run_labels", "summarize", "to_jsonable", "validate_item_record",
        "write_bytes", "write_json", "write_summary", "write_text",
    },
    "lrsjax.sampling": {
        "INPUT_FORMATS", "MODES", "CompileClock", "Counts", "Kernel", "add_counts",
        "check_batch_memory", "check_histogram_bins", "check_logits", "compile_clock",
        "default_addition_capacity", "kernel", "make_counter", "raise_on_nonfinite",
        "OutputSample", "make_output_sampler",
    },
    "lrsjax.stats": {
        "clopper_pearson_lower", "clopper_pearson_upper", "corrected_levels",
        "corrected_lower_bounds", "dkw_epsilon", "holm_threshold_test", "mean_bounds",
        "mean_bounds_from_histogram", "second_moment_upper", "second_moment_upper_from_histogram",
        "PercentileBounds", "dkw_upper_index", "expectation_bounds", "expectation_range",
        "lower_order_index", "order_statistic", "percentile_bounds", "shifted_levels",
        "upper_order_index",
    },
    "lrsjax.training": {
        "ClassifierTrainHistory", "evaluate_classifier", "load_classifier", "save_classifier",
        "train_classifier",
        "DENOISER_LOSSES", "DenoiserTrainHistory", "denoising_mse", "load_denoiser",
        "save_denoiser", "stability_cross_entropy", "train_denoiser",
        "GraphTrainHistory", "SegmentationEval", "SegmentationNoise", "TrainHistory",
        "checkpoint_exists", "evaluate_segmentation", "load_checkpoint", "load_graph_model",
        "load_segmentation_model", "make_noisy_loss", "noisy_batch", "pixel_cells",
        "save_checkpoint", "save_graph_model", "save_segmentation_model", "segmentation_loss",
        "segmentation_noise", "train_graph_model", "train_segmentation",
        "TrainingLoss", "consistency", "consistency_loss", "consistency_terms",
        "noise_augmentation", "noise_loss", "smoothadv", "smoothadv_attack", "smoothadv_objective",
    },
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module):
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), name
        assert not name.startswith("_") or name == "__version__"


def test_certify_keeps_its_documented_shape():
    assert lrsjax.certify.__name__ == "certify"
    assert lrsjax.Certificate._fields[:3] == ("prediction", "abstain", "tested")
    assert lrsjax.noise.Smoothing is lrsjax.noise.Noise


def test_every_subpackage_declares_its_public_names():
    for init in ROOT.glob("**/__init__.py"):
        tree = ast.parse(init.read_text())
        names = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        assert "__all__" in names, f"{init.relative_to(ROOT.parent)} has no __all__"


def _subpackage(path: pathlib.Path) -> str:
    """'noise' for lrsjax/noise/_x.py, 'collective.milp' for lrsjax/collective/milp/_x.py, '' for
    top-level modules."""
    return ".".join(path.relative_to(ROOT).parts[:-1])


def _imported(node) -> list[tuple[str, str | None]]:
    """(module, name) pairs of an import statement, with absolute lrsjax module paths."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [(node.module, alias.name) for alias in node.names]
    return []


def test_no_module_imports_another_subpackages_private_names():
    offences = []
    for path in sorted(ROOT.glob("**/*.py")):
        own = _subpackage(path)
        for node in ast.walk(ast.parse(path.read_text())):
            for module, name in _imported(node):
                parts = module.split(".")
                if parts[0] != "lrsjax":
                    continue
                if name is not None and not name.startswith("_"):
                    target = parts[1:]
                else:
                    target = parts[1:] + ([name] if name else [])
                # the subpackage path up to the first private part, and whether there is one
                public = []
                private = False
                for part in target:
                    if part.startswith("_"):
                        private = True
                        break
                    public.append(part)
                where = ".".join(public)
                if not private or where == "":  # public names, or top-level private helpers
                    continue
                if where != own and not own.startswith(where + "."):
                    offences.append(f"{path.relative_to(ROOT.parent)}: {module} {name or ''}")
    assert not offences, "\n".join(offences)
