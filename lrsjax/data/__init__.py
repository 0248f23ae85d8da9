"""Data: synthetic generators (the built-in defaults), loaders for real data sets, and the sparse
binary attribute format (`SparseBinary`) of graph inputs."""

from lrsjax._sparse import SparseBinary, from_scipy, to_dense
from lrsjax.data._cityscapes import CITYSCAPES_CLASSES, load_cityscapes
from lrsjax.data._classification import (
    CIFAR10_CLASSES,
    SYNTHETIC_PATTERNS,
    ClassificationData,
    check_classification_data,
    load_cifar10,
    load_image_folder,
    synthetic_classification,
)
from lrsjax.data._clustering import metis_clusters, spectral_clusters
from lrsjax.data._graph import Graph, load_npz_graph, split_nodes, synthetic_graph
from lrsjax.data._segmentation import (
    IGNORE_LABEL,
    SYNTHETIC_SIZE_RANGE,
    SegmentationData,
    check_segmentation_data,
    synthetic_segmentation,
)
from lrsjax.data._voc import VOC_CLASSES, load_pascal_voc

__all__ = [
    "CIFAR10_CLASSES",
    "SYNTHETIC_PATTERNS",
    "ClassificationData",
    "check_classification_data",
    "load_cifar10",
    "load_image_folder",
    "synthetic_classification",
    "CITYSCAPES_CLASSES",
    "IGNORE_LABEL",
    "SYNTHETIC_SIZE_RANGE",
    "VOC_CLASSES",
    "Graph",
    "SegmentationData",
    "SparseBinary",
    "check_segmentation_data",
    "from_scipy",
    "load_cityscapes",
    "load_npz_graph",
    "load_pascal_voc",
    "metis_clusters",
    "spectral_clusters",
    "split_nodes",
    "synthetic_graph",
    "synthetic_segmentation",
    "to_dense",
]
