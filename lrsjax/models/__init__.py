"""Flax models: U-Net and a strictly local CNN for segmentation, a small ResNet for image
classification, a DnCNN denoiser for denoised smoothing, GCN/APPNP over jraph graphs."""

from lrsjax.models._dncnn import (
    DnCNN,
    compose,
    denoiser_apply_fn,
    dncnn_config,
    dncnn_from_config,
    init_denoiser_params,
)
from lrsjax.models._gnn import (
    APPNP,
    GCN,
    SparseDense,
    check_graph_model,
    graph_apply_fn,
    graph_to_jraph,
    init_graph_model,
)
from lrsjax.models._gnn import model_config as gnn_config
from lrsjax.models._gnn import model_from_config as gnn_from_config
from lrsjax.models._local import LocalCNN
from lrsjax.models._resnet import (
    ResNet,
    classifier_apply_fn,
    init_classifier_params,
    resnet_config,
    resnet_from_config,
)
from lrsjax.models._unet import (
    UNet,
    init_segmentation_params,
    segmentation_apply_fn,
    unet_from_config,
)
from lrsjax.models._unet import model_config as unet_config

__all__ = [
    "DnCNN",
    "compose",
    "denoiser_apply_fn",
    "dncnn_config",
    "dncnn_from_config",
    "init_denoiser_params",
    "ResNet",
    "classifier_apply_fn",
    "init_classifier_params",
    "resnet_config",
    "resnet_from_config",
    "APPNP",
    "GCN",
    "LocalCNN",
    "SparseDense",
    "UNet",
    "check_graph_model",
    "gnn_config",
    "gnn_from_config",
    "graph_apply_fn",
    "graph_to_jraph",
    "init_graph_model",
    "init_segmentation_params",
    "segmentation_apply_fn",
    "unet_config",
    "unet_from_config",
]
