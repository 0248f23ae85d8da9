"""Scale-out benchmarks: items/s over processes, overlap of host work and sampling, and the
paper-sized localized certificates of one image on an accelerator.

  python benchmarks/scale_out.py --config=main [--processes=1,2,4] [--num_images=8]
      [--flags="--budget_steps=81 ..."] [--rounds=1]
  python benchmarks/scale_out.py --config=flops
  python benchmarks/scale_out.py --config=pascal [--images=3]        # on a GPU
  python benchmarks/scale_out.py --config=cityscapes [--images=2]    # on a GPU

main (CPU): the main segmentation job (`lrsjax-certify` defaults, `--num_images` synthetic
64x64 images; the two U-Nets are trained once and copied into every run). Items/s of the whole
command (start to the last process's exit: imports, compilation, shutdown included) with each
number of processes (`--coordinator_address=localhost:PORT`), each run's item files compared byte
for byte with the one-process run; then one process with `--overlap` and `--nooverlap`: the
steady per-item time (completion times of items 2..N, from their timings files) against the
mean sampling and host seconds per item (sum and max), `--rounds` times, on and off in turn.

flops: model GFLOPs per forward pass of the Pascal (3x166x250, 21 classes) and Cityscapes
(3x512x1024, 19 classes) U-Nets (depth 4, base width 32), from XLA's compiled cost analysis on
the CPU (cuDNN convolutions are not counted on the GPU).

pascal / cityscapes (GPU): certify random-input images of that size with a random U-Net under
localized smoothing (pascal: 3x5 grid, n0 = 820, n = 10,240 per cell; cityscapes: 4x6 grid,
n0 = 512, n = 6,400), then the collective LP (81 budgets, target sets all and correct), through
the same resumable run as `lrsjax-certify` (`certify_items`), with overlap on and off: per-image
time, sampling and host seconds. Then the kernel against the bare model (the same U-Net jitted
over pre-generated inputs, batch after batch) at batch 256 and 1024, in model evaluations/s.
Times are wall-clock on whatever machine runs this; on a shared machine they are pessimistic.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from lrsjax import certify, models, noise, pipelines, results
from lrsjax.pipelines import _run

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name: (image shape, classes, grid, n0, n, batch size of the certificate)
IMAGES = {
    "pascal": ((3, 166, 250), 21, (3, 5), 820, 10_240, 256),
    "cityscapes": ((3, 512, 1024), 19, (4, 6), 512, 6_400, 32),
}
UNET = dict(depth=4, base_width=32)
# batch sizes of the kernel-against-bare-model ratio (a 512x1024 batch of 1024 does not fit)
RATIO_BATCHES = {"pascal": (256, 1024), "cityscapes": (16, 32)}
BUDGETS = np.linspace(0.0, 0.4, 81)


def _load() -> str:
    return "load avg " + " / ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------------ main (CPU)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _certify(out_dir: pathlib.Path, processes: int, flags) -> float:
    """Runs `lrsjax-certify` over `processes` processes; returns the wall seconds of the whole."""
    base = [sys.executable, "-m", "lrsjax.cli.certify", *flags, f"--out_dir={out_dir}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    port = _free_port()
    commands = [base]
    if processes > 1:
        commands = [
            [*base, f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
             f"--process_id={index}"]
            for index in range(processes)
        ]  # fmt: skip
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    try:
        outputs = [proc.communicate(timeout=3600)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    seconds = time.perf_counter() - start
    for proc, output in zip(procs, outputs):
        if proc.returncode != 0:
            raise RuntimeError(f"lrsjax-certify failed:\n{output[-3000:]}")
    return seconds


def _item_bytes(out_dir: pathlib.Path) -> dict:
    items = out_dir / "results" / "items"
    return {p.name: p.read_bytes() for p in sorted(items.iterdir()) if not p.name.startswith(".")}


def _per_item(out_dir: pathlib.Path) -> dict:
    """Steady per-item seconds (completion times of items 2..N) and the mean sampling and host
    seconds of those items, from the run's timings files."""
    run = results.RunDir(out_dir / "results")
    paths = (out_dir / "results" / "timings").glob("*.json")
    paths = sorted(paths, key=lambda p: p.stat().st_mtime)
    done = [p.stat().st_mtime for p in paths]
    later = [run.load_timings(p.stem) for p in paths[1:]]
    sampling = np.mean([sum(v for k, v in t.items() if k.endswith("_sampling_s")) for t in later])
    host = np.mean([t["total_s"] - sum(v for k, v in t.items() if k.endswith("_sampling_s"))
                    for t in later])  # fmt: skip
    return {
        "per_item_s": (done[-1] - done[0]) / (len(done) - 1),
        "sampling_s": float(sampling),
        "host_s": float(host),
    }


def main_job(args) -> None:
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="lrsjax_scale_out_"))
    flags = [f"--num_images={args.num_images}", *args.flags.split()]
    print(
        f"main job {' '.join(flags)}, {os.cpu_count()} CPU cores, {_load()}",
        flush=True,
    )
    base = work / "models_run"
    if not (base / "models").is_dir():
        start = time.perf_counter()
        job = pipelines.SegmentationJob(num_images=args.num_images, out_dir=str(base))
        pipelines.train_segmentation_models(job, progress=False)
        print(f"trained the two U-Nets in {time.perf_counter() - start:.1f} s", flush=True)

    def fresh(name: str) -> pathlib.Path:
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(base / "models", out / "models")
        return out

    reference = None
    rates = {}
    for count in args.processes:
        out = fresh(f"p{count}")
        seconds = _certify(out, count, flags)
        files = _item_bytes(out)
        reference = files if reference is None else reference
        rates[count] = args.num_images / seconds
        print(
            f"{count} process(es): {seconds:.1f} s for {args.num_images} images, "
            f"{rates[count]:.3f} images/s ({rates[count] / rates[args.processes[0]]:.2f}x), "
            f"item files identical to the first run: {files == reference}; {_load()}",
            flush=True,
        )
    for overlap in [True, False] * args.rounds:
        out = fresh(f"overlap_{overlap}")
        seconds = _certify(out, 1, [*flags, f"--{'' if overlap else 'no'}overlap"])
        figures = _per_item(out)
        files = _item_bytes(out)
        reference = files if reference is None else reference
        same = files == reference
        print(
            f"overlap {'on ' if overlap else 'off'}: {figures['per_item_s']:.2f} s per image "
            f"(images 2..{args.num_images}; sampling {figures['sampling_s']:.2f} s + host "
            f"{figures['host_s']:.2f} s = {figures['sampling_s'] + figures['host_s']:.2f} s, "
            f"max {max(figures['sampling_s'], figures['host_s']):.2f} s); whole run {seconds:.1f} "
            f"s; item files identical: {same}; {_load()}",
            flush=True,
        )


# ---------------------------------------------------------------------------------- U-Net sizes


SMOKE = {"on": False}  # --smoke: a tiny U-Net and few samples, to check the script on a CPU


def _unet(name: str):
    shape, classes = IMAGES[name][:2]
    sizes = dict(depth=1, base_width=4) if SMOKE["on"] else UNET
    model = models.UNet(num_classes=classes, **sizes)
    params = models.init_segmentation_params(jax.random.key(0), model, shape)
    return models.segmentation_apply_fn(model), params, shape, classes


def model_gflops(name: str) -> float:
    """GFLOPs of one forward pass (batch 1) from XLA's compiled cost analysis."""
    apply_fn, params, shape, _ = _unet(name)
    compiled = jax.jit(apply_fn).lower(params, jnp.zeros(shape, jnp.float32)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"]) / 1e9


def flops(args) -> None:
    print(f"backend {jax.default_backend()}, {_load()}")
    for name, (shape, classes, *_) in IMAGES.items():
        print(
            f"{name}: U-Net depth {UNET['depth']} width {UNET['base_width']}, "
            f"{classes} classes, input {'x'.join(map(str, shape))}: "
            f"{model_gflops(name):.2f} GFLOP per forward pass",
            flush=True,
        )


# ------------------------------------------------------------------------------- one image (GPU)


def _plan(name: str, num_images: int):
    """A Plan of `num_images` random images of config `name`: localized smoothing, naive and
    collective LP (the segmentation job's first method at the paper's sizes)."""
    apply_fn, params, shape, classes = _unet(name)
    _, _, grid, n0, n, batch_size = IMAGES[name]
    if SMOKE["on"]:
        n0, n, batch_size = 8, 32, 8
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(num_images, *shape)).astype(np.float32)
    labels = rng.integers(0, classes, size=(num_images, *shape[1:])).astype(np.int32)
    localized = noise.localized_gaussian(shape, grid, 0.15, 1.0)
    method = pipelines.Method(
        "localized_naive", "localized", localized, BUDGETS,
        dict(n0=n0, n=n, alpha=0.01, batch_size=batch_size), grid[0] * grid[1] * (n0 + n),
        collective=pipelines.Collective("localized_lp", "lp", num_bins=32), radius_sum=True,
    )  # fmt: skip
    ids = [f"{name}{i}" for i in range(num_images)]

    def load_item(item_id: str) -> pipelines.Item:
        i = ids.index(item_id)
        flat = labels[i].reshape(-1)
        return pipelines.Item(
            item_id, jax.random.key(i), images[i], flat, np.ones(flat.size, bool),
            labels[i].shape, classes, arrays={"labels": labels[i]}, seeds={"item": i},
        )  # fmt: skip

    return ids, _run.Plan([method], [pipelines.Model(apply_fn, params)], load_item)


def _bare_rate(apply_fn, params, shape, batch: int, batches: int = 8) -> float:
    """Model evaluations/s of the bare jitted model over pre-generated inputs."""
    inputs = jax.random.uniform(jax.random.key(1), (batch, *shape))

    @jax.jit
    def run(params, inputs):
        def body(i, total):
            logits = jax.vmap(apply_fn, (None, 0))(params, inputs + i.astype(jnp.float32) * 1e-3)
            return total + jnp.sum(jnp.argmax(logits, -1))

        return jax.lax.fori_loop(0, batches, body, jnp.int32(0))

    run(params, inputs).block_until_ready()
    start = time.perf_counter()
    run(params, inputs).block_until_ready()
    return batches * batch / (time.perf_counter() - start)


def _kernel_rate(name: str, batch: int, batches: int = 8) -> float:
    """Model evaluations/s of the certificate's estimation stage (groups x n per second)."""
    apply_fn, params, shape, _ = _unet(name)
    grid = IMAGES[name][2]
    localized = noise.localized_gaussian(shape, grid, 0.15, 1.0)
    x = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    groups, n = grid[0] * grid[1], batches * batch
    timings = {}
    for _ in range(2):  # the second call is compiled
        timings = {}
        certify(jax.random.key(0), apply_fn, params, x, localized, n0=batch, n=n, alpha=0.01,
                batch_size=batch, timings=timings)  # fmt: skip
    return groups * n / timings["estimate_s"]


def one_image(args) -> None:
    """Per-image times with overlap on and off, and the kernel/bare-model ratios (see above)."""
    name = args.config
    print(f"{name}: backend {jax.default_backend()}, devices {jax.local_devices()}, {_load()}")
    print(f"model: {model_gflops(name):.1f} GFLOP per forward (compiled cost analysis)", flush=True)
    ids, plan = _plan(name, args.images)
    reference = None
    for overlap in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp)
            run = results.RunDir.start(out / "results", {"task": "image", "bench": name})
            start = time.perf_counter()
            _run.certify_items(
                run, ids, lambda: plan, task="image", budget_kind="l2", log=lambda _: None,
                progress=False, overlap=overlap,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            figures = _per_item(out)
            first = run.load_timings(ids[0])
            files = _item_bytes(out)
            reference = files if reference is None else reference
        print(
            f"overlap {'on ' if overlap else 'off'}: {seconds:.1f} s for {args.images} images "
            f"(the first {first['total_s']:.1f} s, with compilation); images 2..: "
            f"{figures['per_item_s']:.1f} s per image, sampling {figures['sampling_s']:.1f} s + "
            f"host {figures['host_s']:.1f} s; item files identical: {files == reference}; "
            f"{_load()}",
            flush=True,
        )
    for batch in args.ratio_batches or ((4, 8) if SMOKE["on"] else RATIO_BATCHES[name]):
        apply_fn, params, shape, _ = _unet(name)
        bare = _bare_rate(apply_fn, params, shape, batch)
        kernel = _kernel_rate(name, batch)
        print(
            f"batch {batch}: kernel {kernel:,.0f} vs bare model {bare:,.0f} evaluations/s "
            f"({kernel / bare:.3f}x); {_load()}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="main", choices=["main", "flops", *IMAGES])
    parser.add_argument("--processes", default="1,2,4", help="process counts (main)")
    parser.add_argument("--num_images", type=int, default=8, help="images of the main job")
    parser.add_argument("--flags", default="", help="more lrsjax-certify flags (main)")
    parser.add_argument("--rounds", type=int, default=1, help="overlap on/off pairs (main)")
    parser.add_argument("--images", type=int, default=3, help="images (pascal, cityscapes)")
    parser.add_argument("--work_dir", default="", help="where the main job's runs go")
    parser.add_argument("--smoke", action="store_true", help="tiny U-Net, few samples (CPU)")
    parser.add_argument("--ratio_batches", default="", help="e.g. 256,1024 (pascal, cityscapes)")
    args = parser.parse_args()
    args.processes = [int(p) for p in args.processes.split(",") if p]
    args.ratio_batches = [int(b) for b in args.ratio_batches.split(",") if b]
    SMOKE["on"] = args.smoke
    {"main": main_job, "flops": flops}.get(args.config, one_image)(args)


if __name__ == "__main__":
    main()
