"""Flax models: U-Net for segmentation, GCN/APPNP over jraph graphs."""
