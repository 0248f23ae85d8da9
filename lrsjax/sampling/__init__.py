"""jit/vmap sampling kernels: sample every smoothing group, apply the model, count; sharded."""

from lrsjax.sampling._kernels import (
    INPUT_FORMATS,
    MODES,
    Counts,
    default_addition_capacity,
    make_counter,
)

__all__ = ["INPUT_FORMATS", "MODES", "Counts", "default_addition_capacity", "make_counter"]
