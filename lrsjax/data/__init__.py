"""Data: synthetic generators (the built-in defaults) and loaders for real data sets."""

from lrsjax.data._cityscapes import CITYSCAPES_CLASSES, load_cityscapes
from lrsjax.data._clustering import metis_clusters, spectral_clusters
from lrsjax.data._graph import Graph, load_npz_graph, split_nodes, synthetic_graph
from lrsjax.data._segmentation import (
    IGNORE_LABEL,
    SYNTHETIC_SIZE_RANGE,
    SegmentationData,
    synthetic_segmentation,
)
from lrsjax.data._voc import VOC_CLASSES, load_pascal_voc
