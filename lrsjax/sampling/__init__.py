"""jit/vmap sampling kernels: sample every smoothing group, apply the model, accumulate; sharded."""

from lrsjax.sampling._kernels import (
    INPUT_FORMATS,
    MODES,
    CompileClock,
    Counts,
    Kernel,
    add_counts,
    check_batch_memory,
    check_histogram_bins,
    check_logits,
    compile_clock,
    default_addition_capacity,
    kernel,
    make_counter,
    raise_on_nonfinite,
)
from lrsjax.sampling._outputs import OutputSample, make_output_sampler

__all__ = [
    "INPUT_FORMATS",
    "MODES",
    "CompileClock",
    "Counts",
    "Kernel",
    "OutputSample",
    "add_counts",
    "check_batch_memory",
    "check_histogram_bins",
    "check_logits",
    "compile_clock",
    "default_addition_capacity",
    "kernel",
    "make_counter",
    "make_output_sampler",
    "raise_on_nonfinite",
]
