"""Noise-augmented training of image classifiers, segmentation and graph models (optax), and
checkpoints."""

from lrsjax.training._checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from lrsjax.training._classification import (
    ClassifierTrainHistory,
    evaluate_classifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from lrsjax.training._denoiser import (
    DENOISER_LOSSES,
    DenoiserTrainHistory,
    denoising_mse,
    load_denoiser,
    save_denoiser,
    stability_cross_entropy,
    train_denoiser,
)
from lrsjax.training._graph import (
    GraphTrainHistory,
    load_graph_model,
    save_graph_model,
    train_graph_model,
)
from lrsjax.training._segmentation import (
    SegmentationEval,
    SegmentationNoise,
    TrainHistory,
    evaluate_segmentation,
    load_segmentation_model,
    make_noisy_loss,
    noisy_batch,
    pixel_cells,
    save_segmentation_model,
    segmentation_loss,
    segmentation_noise,
    train_segmentation,
)

__all__ = [
    "ClassifierTrainHistory",
    "evaluate_classifier",
    "load_classifier",
    "save_classifier",
    "train_classifier",
    "DENOISER_LOSSES",
    "DenoiserTrainHistory",
    "denoising_mse",
    "load_denoiser",
    "save_denoiser",
    "stability_cross_entropy",
    "train_denoiser",
    "GraphTrainHistory",
    "SegmentationEval",
    "SegmentationNoise",
    "TrainHistory",
    "checkpoint_exists",
    "evaluate_segmentation",
    "load_checkpoint",
    "load_graph_model",
    "load_segmentation_model",
    "make_noisy_loss",
    "noisy_batch",
    "pixel_cells",
    "save_checkpoint",
    "save_graph_model",
    "save_segmentation_model",
    "segmentation_loss",
    "segmentation_noise",
    "train_graph_model",
    "train_segmentation",
]
