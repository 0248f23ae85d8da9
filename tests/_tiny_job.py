"""The tiny synthetic segmentation job shared by the fault and reproducibility suites.

Two U-Nets trained for 2 steps (or one saved random checkpoint), 3 images of 8x8 certified with a
2x2 grid: small enough to run `lrsjax-certify` in a subprocess many times.
"""

from __future__ import annotations

import os
import pathlib
import sys

PYTHON = sys.executable
NUM_ITEMS = 3
_FLAGS = (
    "--image_size=8",
    "--num_classes=3",
    f"--num_train_images={NUM_ITEMS + 1}",
    f"--num_images={NUM_ITEMS}",
    "--depth=1",
    "--width=4",
    "--train_steps=2",
    "--train_batch_size=2",
    "--grid=2x2",
    "--n0=4",
    "--n=24",
    "--batch_size=8",
    "--budget_max=0.12",
    "--budget_steps=3",
    "--num_bins=4",
    "--mode=lp",
)
# Wall-clock fields, and the run directory path (summary.json), differ between runs.
WALL_CLOCK_FIELDS = ("timings", "seconds", "seconds_total", "created_utc", "run_dir")


def certify_command(out_dir, seed: int, extra=()) -> list:
    """`python -m lrsjax.cli.certify` with the tiny job's flags, `--seed`, `extra` and `out_dir`."""
    return [
        PYTHON, "-m", "lrsjax.cli.certify", *_FLAGS, f"--seed={seed}", *extra,
        f"--out_dir={out_dir}",
    ]  # fmt: skip


def subprocess_env(devices: int = 1, cache_dir=None) -> dict:
    """The environment of a job subprocess: CPU JAX with `devices` simulated devices;
    `cache_dir` turns on JAX's persistent compilation cache."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["JAX_PLATFORMS"] = "cpu"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["PYTHONHASHSEED"] = "0"
    return env


def save_tiny_checkpoint(path: pathlib.Path) -> pathlib.Path:
    """A randomly initialised U-Net for the tiny job (no training, nothing compiled)."""
    import jax

    from lrsjax import models, training

    model = models.UNet(num_classes=3, depth=1, base_width=4)
    params = models.init_segmentation_params(jax.random.key(0), model, (3, 8, 8))
    training.save_segmentation_model(path, model, params, input_shape=(3, 8, 8))
    return path


def strip_wall_clock(obj):
    """A copy of a JSON value without the wall-clock fields (recursively)."""
    if isinstance(obj, dict):
        return {k: strip_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK_FIELDS}
    if isinstance(obj, list):
        return [strip_wall_clock(v) for v in obj]
    return obj
