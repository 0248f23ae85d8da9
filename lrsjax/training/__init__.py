"""Noise-augmented training of segmentation and graph models (optax), and checkpoints."""

from lrsjax.training._checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
