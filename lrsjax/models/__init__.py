"""Flax models: U-Net for segmentation, GCN/APPNP over jraph graphs."""

from lrsjax.models._gnn import (
    APPNP,
    GCN,
    SparseDense,
    graph_apply_fn,
    graph_to_jraph,
    init_graph_model,
)
from lrsjax.models._unet import UNet, init_segmentation_params, segmentation_apply_fn
