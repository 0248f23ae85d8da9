"""End-to-end jobs behind the command-line tools (segmentation, node and image classification).

A job is data + models + a list of `Method`s; `certify_items` runs any such list over the items
of a resumable run (see docs/design.md, "Pipelines"), over one or many processes
(`initialize_distributed`, docs/scale-out.md).
"""

from lrsjax.pipelines._classification import ClassificationJob
from lrsjax.pipelines._classification import run as run_classification
from lrsjax.pipelines._classification import train_models as train_classification_model
from lrsjax.pipelines._distributed import Processes, initialize_distributed
from lrsjax.pipelines._graph import GraphJob
from lrsjax.pipelines._graph import run as run_graph
from lrsjax.pipelines._graph import train_model as train_graph_model
from lrsjax.pipelines._method import Collective, Item, Method, Model, run_method
from lrsjax.pipelines._run import Plan, certify_items
from lrsjax.pipelines._segmentation import SegmentationJob
from lrsjax.pipelines._segmentation import run as run_segmentation
from lrsjax.pipelines._segmentation import train_models as train_segmentation_models

__all__ = [
    "ClassificationJob",
    "Collective",
    "GraphJob",
    "Item",
    "Method",
    "Model",
    "Plan",
    "Processes",
    "SegmentationJob",
    "certify_items",
    "initialize_distributed",
    "run_classification",
    "run_graph",
    "run_method",
    "run_segmentation",
    "train_classification_model",
    "train_graph_model",
    "train_segmentation_models",
]
