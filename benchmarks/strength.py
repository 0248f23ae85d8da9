"""Where does localized smoothing win? Sweeps of localized and isotropic smoothing, measured alike.

    python benchmarks/strength.py                      # default config (docs/strength.md), CPU
    python benchmarks/strength.py --part=graph         # only the graph sweeps
    python benchmarks/strength.py --config=tiny --out=/tmp/strength   # smoke run, seconds
    python benchmarks/strength.py --config=pascal      # the paper's sizes (a GPU; not run here)
    python benchmarks/strength.py --plot               # tables + Pareto plots from the results

Segmentation (synthetic images whose labels depend on local content only: `illumination=0`, so a
pixel's rendering is its shape's colour, texture and i.i.d. pixel noise). Two model families: a
softly local U-Net (pooling and GroupNorm see the whole image) and the strictly local
`models.LocalCNN` certified with `mask_distance` (cells it never sees get certificate weight 0).
For every localized (std_min, std_max) a model is trained with localized noise, for every
isotropic sigma one with isotropic noise (`training.train_segmentation`); each is certified on the
same test images with the library's sound certificates only:
  localized: naive, collective LP (the paper's), hull LP and exact MILP (`collective`), all on the
    same base certificates (n0 + n samples per grid cell, K cells);
  isotropic: (a) equal samples per distribution (n0 + n: the paper's comparison) and (b) equal
    forward passes (K n0 + K n).
Per configuration: mIoU (abstain counted as a class, pooled over the test images), clean accuracy,
certified accuracy on a budget grid and ACR (lower Riemann sum of that curve, `results.acr_from_
curve`, the same rule for every certificate).

Graphs (Cora-ML and Citeseer, APPNP, only held-out test nodes certified): localized clustered
Bernoulli smoothing (variance certificate, naive and collective MILP) for several per-cluster
deletion probabilities, against isotropic sparse smoothing (exact Neyman-Pearson) and the
isotropic variance certificate at equal forward passes, through the graph job's own methods
(`lrsjax.pipelines._graph.methods`).

Every configuration writes one JSON file under `--out` (default `benchmarks/results/strength`);
a rerun skips configurations already written, so an interrupted sweep resumes. Keys: one per
configuration, folded from `--seed` and the configuration's name (same name, same key).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
import zlib

import jax
import numpy as np

import lrsjax
from lrsjax import _sparse, base_certs, collective, data, models, noise, results, training


@dataclasses.dataclass(frozen=True)
class SegConfig:
    image_shape: tuple = (128, 192)
    num_classes: int = 5
    num_shapes: tuple = (8, 16)
    num_train: int = 48
    num_test: int = 2
    grid: tuple = (3, 4)
    families: tuple = ("unet", "local")
    unet_depth: int = 2
    unet_width: int = 8
    local_width: int = 16
    local_dilations: tuple = (1, 2, 4, 1)
    local_mask_distance: int = 2
    steps: int = 150
    batch_size: int = 8
    # stitched localized training costs K forward passes per image: fewer images per step
    localized_batch_size: int = 2
    learning_rate: float = 3e-3
    localized: tuple = ((0.15, 1.0), (0.25, 0.5))
    sigmas: tuple = (0.25, 0.5)
    n0: int = 32
    n: int = 256
    alpha: float = 0.01
    sample_batch: int = 32
    budgets: tuple = (0.0, 2.0, 21)
    num_bins: int = 32
    milp_time_limit_s: float = 5.0


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    datasets: tuple = ("cora_ml", "citeseer")
    num_clusters: int = 5
    ns: tuple = (1000,)
    n0: int = 100
    theta_plus: float = 0.01
    # (own cluster, farthest cluster) deletion probabilities of localized smoothing
    theta_minus: tuple = ((0.6, 0.95), (0.6, 0.8))
    isotropic_theta_minus: tuple = (0.6,)
    max_additions: int = 4
    max_deletions: int = 20
    epochs: int = 300
    alpha: float = 0.01
    batch_size: int = 64
    time_limit_s: float = 10.0


CONFIGS = {
    "default": (SegConfig(), GraphConfig()),
    "tiny": (
        SegConfig(
            image_shape=(16, 24),
            num_classes=3,
            num_shapes=(2, 4),
            num_train=4,
            num_test=1,
            grid=(2, 2),
            families=("local",),
            unet_depth=1,
            unet_width=4,
            local_width=4,
            local_dilations=(1, 1),
            local_mask_distance=1,
            steps=3,
            batch_size=2,
            localized_batch_size=1,
            localized=((0.15, 0.5),),
            sigmas=(0.25,),
            n0=8,
            n=32,
            sample_batch=40,
            budgets=(0.0, 0.5, 3),
            num_bins=4,
            milp_time_limit_s=2.0,
        ),
        GraphConfig(
            datasets=("synthetic",),
            num_clusters=3,
            ns=(64,),
            n0=16,
            theta_minus=((0.6, 0.9),),
            max_additions=1,
            max_deletions=2,
            epochs=5,
            batch_size=32,
            time_limit_s=2.0,
        ),
    ),  # fmt: skip
    # The paper's Pascal VOC sizes (Schuchardt et al., 2023): 166 x 250 images, 3 x 5 grid,
    # 820 + 10,240 samples per cell; for a GPU.
    "pascal": (
        SegConfig(
            image_shape=(166, 250),
            num_classes=8,
            num_shapes=(8, 20),
            num_train=2000,
            num_test=100,
            grid=(3, 5),
            unet_depth=4,
            unet_width=32,
            local_width=32,
            steps=10000,
            batch_size=32,
            n0=820,
            n=10240,
            sample_batch=512,
            localized=((0.15, 1.0), (0.2, 1.0), (0.25, 1.0), (0.15, 0.5), (0.25, 0.5)),
            sigmas=(0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
            budgets=(0.0, 2.0, 41),
            milp_time_limit_s=60.0,
        ),
        GraphConfig(ns=(1000, 10000, 100000), batch_size=1024),
    ),  # fmt: skip
}


def config_key(seed: int, name: str):
    """The configuration's key: `seed` folded with a stable hash of its name."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def write_json(path: pathlib.Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def load_avg() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# ----------------------------------------------------------------------------------------------
# Segmentation
# ----------------------------------------------------------------------------------------------


def seg_data(cfg: SegConfig, seed: int):
    key = jax.random.key(seed)
    common = dict(
        image_shape=cfg.image_shape, num_classes=cfg.num_classes, num_shapes=cfg.num_shapes,
        illumination=0.0,
    )  # fmt: skip
    train = data.synthetic_segmentation(key, cfg.num_train, split="train", **common)
    test = data.synthetic_segmentation(key, cfg.num_test, split="test", **common)
    return train, test


def seg_model(cfg: SegConfig, family: str, num_classes: int):
    if family == "unet":
        return models.UNet(num_classes=num_classes, depth=cfg.unet_depth, base_width=cfg.unet_width)
    return models.LocalCNN(
        num_classes=num_classes, width=cfg.local_width, dilations=tuple(cfg.local_dilations)
    )


def seg_configurations(cfg: SegConfig) -> list[dict]:
    """Every (family, smoothing) the sweep certifies, with its name, in run order: round `i` runs
    the i-th sigma and the i-th (std_min, std_max) of every family, so an interrupted sweep has
    both methods on both model families."""
    runs = []
    for i in range(max(len(cfg.localized), len(cfg.sigmas))):
        for family in cfg.families:
            if i < len(cfg.sigmas):
                sigma = cfg.sigmas[i]
                runs.append(dict(name=f"{family}_isotropic_{sigma:g}", family=family,
                                 kind="isotropic", sigma=sigma))  # fmt: skip
            if i < len(cfg.localized):
                std_min, std_max = cfg.localized[i]
                mask = cfg.local_mask_distance if family == "local" else 0
                runs.append(dict(name=f"{family}_localized_{std_min:g}_{std_max:g}",
                                 family=family, kind="localized", std_min=std_min,
                                 std_max=std_max, mask_distance=mask))  # fmt: skip
    return runs


def _curve(certified_correct: np.ndarray, evaluated: int, budgets: np.ndarray) -> dict:
    accuracy = certified_correct / evaluated
    return {
        "certified_correct": certified_correct.astype(int).tolist(),
        "certified_accuracy": accuracy.tolist(),
        "acr": results.acr_from_curve(budgets, accuracy),
    }


def run_seg_configuration(cfg: SegConfig, run: dict, train, test, seed: int, log) -> dict:
    """Trains the configuration's model, certifies the test images; returns its record."""
    key_train, key_cert = jax.random.split(config_key(seed, run["name"]))
    model = seg_model(cfg, run["family"], train.num_classes)
    noise_args = dict(grid_shape=tuple(cfg.grid))
    if run["kind"] == "localized":
        noise_args.update(std_min=run["std_min"], std_max=run["std_max"],
                          mask_distance=run["mask_distance"] or None)  # fmt: skip
    else:
        noise_args.update(sigma=run["sigma"])
    batch_size = cfg.localized_batch_size if run["kind"] == "localized" else cfg.batch_size
    start = time.perf_counter()
    params, history = training.train_segmentation(
        key_train, model, train, steps=cfg.steps, batch_size=batch_size,
        learning_rate=cfg.learning_rate, noise=run["kind"], log_every=max(1, cfg.steps // 5),
        **noise_args,
    )  # fmt: skip
    train_s = time.perf_counter() - start
    apply_fn = models.segmentation_apply_fn(model)
    budgets = np.linspace(*cfg.budgets[:2], int(cfg.budgets[2]))
    k = int(np.prod(cfg.grid))
    if run["kind"] == "localized":
        variants = {"localized": (cfg.n0, cfg.n)}
    else:
        variants = {"equal_samples": (cfg.n0, cfg.n), "equal_compute": (k * cfg.n0, k * cfg.n)}
    record = dict(run, train_seconds=train_s, train_batch_size=batch_size,
                  final_loss=float(history.loss[-1]), load_avg_start=load_avg(),
                  variants={})  # fmt: skip
    for variant, (n0, n) in variants.items():
        certificates = {}
        confusion = np.zeros((train.num_classes + 1, train.num_classes), np.int64)
        evaluated = correct = 0
        seconds = {"sampling": 0.0}
        radius_sum = 0.0
        for index in range(test.num_images):
            x, labels = test.image(index)
            labels = labels.reshape(-1)
            if run["kind"] == "localized":
                smoothing = noise.localized_gaussian(
                    x.shape, tuple(cfg.grid), run["std_min"], run["std_max"],
                    mask_distance=run["mask_distance"] or None,
                )  # fmt: skip
            else:
                smoothing = noise.isotropic_gaussian(x.shape, run["sigma"])
            key = jax.random.fold_in(jax.random.fold_in(key_cert, index), n)
            start = time.perf_counter()
            cert = lrsjax.certify(
                key, apply_fn, params, x, smoothing, n0=n0, n=n, alpha=cfg.alpha,
                batch_size=cfg.sample_batch,
            )  # fmt: skip
            seconds["sampling"] += time.perf_counter() - start
            is_correct = ~cert.abstain & (cert.prediction == labels)
            evaluated += labels.size
            correct += int(is_correct.sum())
            radius_sum += float(np.where(is_correct, cert.radius, 0.0).sum())
            confusion += results.confusion_matrix(
                cert.prediction, labels, train.num_classes, abstain=cert.abstain
            )
            naive = base_certs.naive_certified(cert.base_certs, budgets) & is_correct[:, None]
            _add(certificates, "naive", naive.sum(0), None)
            if run["kind"] != "localized":
                continue
            for mode in ("lp", "hull", "milp"):
                start = time.perf_counter()
                out = collective.certify_collective(
                    cert.base_certs, budgets, targets=is_correct, num_bins=cfg.num_bins,
                    mode=mode,
                    time_limit_s=cfg.milp_time_limit_s if mode == "milp" else None,
                )  # fmt: skip
                seconds[mode] = seconds.get(mode, 0.0) + time.perf_counter() - start
                _add(certificates, mode, np.asarray(out.certified), list(out.status))
        entry = {
            "n0": n0, "n": n, "forward_passes": (k if run["kind"] == "localized" else 1) * (n0 + n),
            "miou": results.mean_iou(confusion), "clean_accuracy": correct / evaluated,
            "exact_naive_acr": radius_sum / evaluated, "seconds": seconds,
            "certificates": {
                name: {**_curve(c["count"], evaluated, budgets), "statuses": c["statuses"]}
                for name, c in certificates.items()
            },
        }  # fmt: skip
        record["variants"][variant] = entry
        acrs = ", ".join(f"{m} {c['acr']:.3f}" for m, c in entry["certificates"].items())
        log(f"  {run['name']} [{variant}]: mIoU {entry['miou']:.3f}, ACR {acrs}; "
            f"sampling {seconds['sampling']:.1f} s")  # fmt: skip
    record.update(budgets=budgets.tolist(), load_avg_end=load_avg())
    return record


def _add(certificates: dict, name: str, counts: np.ndarray, statuses) -> None:
    entry = certificates.setdefault(name, {"count": np.zeros(len(counts), np.int64),
                                           "statuses": []})  # fmt: skip
    entry["count"] += np.asarray(counts, np.int64)
    if statuses is not None:
        entry["statuses"].extend(sorted(set(statuses) - set(entry["statuses"])))


def run_segmentation(cfg: SegConfig, out: pathlib.Path, seed: int, log, only=()) -> None:
    train, test = seg_data(cfg, seed)
    log(f"segmentation: {cfg.num_train} training and {cfg.num_test} test images of "
        f"{cfg.image_shape}, grid {cfg.grid}, load {load_avg()}")  # fmt: skip
    for run in seg_configurations(cfg):
        if only and not any(word in run["name"] for word in only):
            continue
        path = out / "segmentation" / f"{run['name']}.json"
        if path.exists():
            log(f"  {run['name']}: done before, skipped")
            continue
        start = time.perf_counter()
        record = run_seg_configuration(cfg, run, train, test, seed, log)
        record["seconds_total"] = time.perf_counter() - start
        write_json(path, record)
        log(f"  {run['name']}: {record['seconds_total']:.1f} s (training "
            f"{record['train_seconds']:.1f} s), load {load_avg()}")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Graphs
# ----------------------------------------------------------------------------------------------


def graph_configurations(cfg: GraphConfig) -> list[dict]:
    """Per data set and n: the first localized setting, the isotropic baselines, then the other
    localized settings (an interrupted sweep has both sides of the comparison)."""
    runs = []
    for dataset in cfg.datasets:
        for n in cfg.ns:
            localized = []
            for lo, hi in cfg.theta_minus:
                localized.append(dict(name=f"{dataset}_n{n}_localized_{lo:g}_{hi:g}",
                                      dataset=dataset, n=n, kind="localized",
                                      theta_minus=(lo, hi)))  # fmt: skip
            isotropic = []
            for tm in cfg.isotropic_theta_minus:
                for kind in ("sparse_smoothing", "isotropic_variance"):
                    isotropic.append(dict(name=f"{dataset}_n{n}_{kind}_{tm:g}", dataset=dataset,
                                          n=n, kind=kind, theta_minus=(tm, tm)))  # fmt: skip
            runs += localized[:1] + isotropic + localized[1:]
    return runs


def run_graphs(
    cfg: GraphConfig, out: pathlib.Path, seed: int, data_dir: str, model_dir: str, log
) -> None:
    from lrsjax.pipelines import (
        GraphJob,
        Item,
        Model,
        _graph,  # the job's own data, split, model and methods
        run_method,
    )
    from lrsjax.pipelines._config import key_streams

    prepared = {}
    for run in graph_configurations(cfg):
        path = out / "graph" / f"{run['name']}.json"
        if path.exists():
            log(f"  {run['name']}: done before, skipped")
            continue
        lo, hi = run["theta_minus"]
        job = GraphJob(
            dataset=run["dataset"], data_dir=data_dir if run["dataset"] != "synthetic" else "",
            model="appnp", epochs=cfg.epochs, num_clusters=cfg.num_clusters, n0=cfg.n0,
            n=run["n"], alpha=cfg.alpha, batch_size=cfg.batch_size,
            theta_plus_min=cfg.theta_plus, theta_plus_max=cfg.theta_plus, theta_minus_min=lo,
            theta_minus_max=hi, max_additions=cfg.max_additions,
            max_deletions=cfg.max_deletions, deletion_step=1, mode="milp",
            time_limit_s=cfg.time_limit_s, seed=seed, out_dir=f"{model_dir}/{run['dataset']}",
        ).validated()  # fmt: skip
        if run["dataset"] not in prepared:
            graph = _graph.load_graph(job)
            train_idx, val_idx, test_idx = _graph._split(job, graph)
            start = time.perf_counter()
            model, params = _graph.get_model(job, graph, train_idx, val_idx, log=log,
                                             progress=False)  # fmt: skip
            log(f"  {run['dataset']}: model ready in {time.perf_counter() - start:.1f} s")
            apply_fn = models.graph_apply_fn(model, models.graph_to_jraph(graph.adjacency))
            clusters = data.spectral_clusters(
                key_streams(seed, _graph.STREAMS).key("clusters"), graph.adjacency,
                cfg.num_clusters,
            )  # fmt: skip
            evaluated = np.zeros(graph.num_nodes, bool)
            evaluated[test_idx] = True
            prepared[run["dataset"]] = (graph, Model(apply_fn, params), clusters, evaluated)
        graph, model, clusters, evaluated = prepared[run["dataset"]]
        labels = np.asarray(graph.labels)
        item = Item(
            run["dataset"], config_key(seed, run["name"]),
            _sparse.from_scipy(graph.attributes), labels, evaluated, (graph.num_nodes,),
            graph.num_classes, arrays={}, seeds={"seed": seed}, outputs=evaluated,
            ignore_label=None,
        )  # fmt: skip
        wanted = {"localized": "localized_naive", "sparse_smoothing": "isotropic_sparse_smoothing",
                  "isotropic_variance": "isotropic_variance"}[run["kind"]]  # fmt: skip
        method = next(m for m in _graph.methods(job, graph, clusters) if m.name == wanted)
        method = method._replace(arrays=())
        start = time.perf_counter()
        outcome = run_method(method, item.key, item, model)
        seconds = time.perf_counter() - start
        num_test = int(evaluated.sum())
        certs = {
            name: {
                "mode": record["mode"],
                "certified_accuracy": (
                    np.array(record["num_certified_correct"]) / num_test
                ).tolist(),
                "status": record.get("status"),
            }
            for name, record in outcome.records.items()
        }
        write_json(path, dict(run, budgets=np.asarray(job.budgets).tolist(), num_test=num_test,
                              num_nodes=graph.num_nodes, n0=cfg.n0,
                              samples_per_group=cfg.n0 + run["n"],
                              forward_passes=cfg.num_clusters * (cfg.n0 + run["n"]),
                              certificates=certs, seconds=seconds, timings=outcome.timings,
                              load_avg=load_avg()))  # fmt: skip
        summary = ", ".join(f"{n} {c['certified_accuracy'][0]:.3f}" for n, c in certs.items())
        log(f"  {run['name']}: clean {summary}; {seconds:.1f} s, load {load_avg()}")


# ----------------------------------------------------------------------------------------------
# Tables and plots
# ----------------------------------------------------------------------------------------------


def _load(out: pathlib.Path, part: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / part).glob("*.json"))]


def seg_rows(records: list[dict]) -> list[dict]:
    """One row per (configuration, sample variant, certificate): the points of the plots."""
    rows = []
    for rec in records:
        for variant, entry in rec["variants"].items():
            for cert, c in entry["certificates"].items():
                rows.append(dict(
                    family=rec["family"], config=rec["name"], kind=rec["kind"], variant=variant,
                    certificate=cert, miou=entry["miou"], acr=c["acr"],
                    clean=entry["clean_accuracy"], passes=entry["forward_passes"],
                    n0=entry["n0"], n=entry["n"],
                    ca=dict(zip(rec["budgets"], c["certified_accuracy"])),
                    statuses=c["statuses"], seconds=rec["seconds_total"],
                ))  # fmt: skip
    return rows


def seg_table(records: list[dict]) -> str:
    lines = [
        "| model | smoothing | samples (n0 + n) | forward passes | certificate | mIoU | clean acc "
        "| CA eps 0.2 | CA 0.4 | CA 0.6 | CA 0.8 | CA 1.0 | ACR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in seg_rows(records):
        if row["kind"] == "localized":
            smoothing = row["config"].split("_localized_")[1].replace("_", " -> ")
            smoothing = f"localized {smoothing}"
            samples = f"{row['n0']} + {row['n']} per cell"
        else:
            smoothing = f"isotropic {row['config'].split('_isotropic_')[1]} ({row['variant']})"
            samples = f"{row['n0']} + {row['n']}"
        ca = [_at(row["ca"], eps) for eps in (0.2, 0.4, 0.6, 0.8, 1.0)]
        lines.append(
            f"| {row['family']} | {smoothing} | {samples} | {row['passes']} | "
            f"{row['certificate']} | {row['miou']:.3f} | {row['clean']:.3f} | "
            + " | ".join(ca)
            + f" | {row['acr']:.3f} |"
        )
    return "\n".join(lines)


def _at(curve: dict, eps: float) -> str:
    for budget, value in curve.items():
        if abs(float(budget) - eps) < 1e-9:
            return f"{value:.3f}"
    return "-"


def graph_table(records: list[dict]) -> str:
    budget_cols = [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 8), (1, 0), (2, 0)]
    head = " | ".join(f"d={d}" if a == 0 else f"a={a}" for a, d in budget_cols[1:])
    lines = [f"| data | n per group | forward passes | method | certificate | clean | {head} "
             "| mean cert. deletions | mean cert. additions |",
             "|---|---|---|---|---|---|" + "---|" * (len(budget_cols) + 1)]  # fmt: skip
    for rec in records:
        budgets = [tuple(b) for b in rec["budgets"]]
        for name, c in rec["certificates"].items():
            method = rec["kind"] + " " + "->".join(f"{t:g}" for t in set(rec["theta_minus"]))
            cells = []
            for b in budget_cols:
                cells.append(f"{c['certified_accuracy'][budgets.index(b)]:.3f}"
                             if b in budgets else "-")  # fmt: skip
            cells += [f"{_mean_budget(budgets, c['certified_accuracy'], axis):.3f}"
                      for axis in (1, 0)]  # fmt: skip
            lines.append(f"| {rec['dataset']} | {rec['n']} | {rec['forward_passes']} | {method} "
                         f"| {name} ({c['mode']}) | " + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def _mean_budget(budgets: list, accuracy: list, axis: int) -> float:
    """The mean largest certified count of one budget type alone (deletions: axis 1), i.e. the
    ACR rule on the integer budgets 0, 1, 2, ... of that axis (`results.acr_from_curve`)."""
    points = sorted((b[axis], a) for b, a in zip(budgets, accuracy) if b[1 - axis] == 0)
    return results.acr_from_curve([p[0] for p in points], [p[1] for p in points])


def plot(out: pathlib.Path, figure_dir: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = _plot_graphs(plt, _load(out, "graph"), figure_dir)
    rows = seg_rows(_load(out, "segmentation"))
    if not rows:
        return paths
    families = sorted({r["family"] for r in rows}, key=["unet", "local"].index)
    fig, axes = plt.subplots(len(families), 2, figsize=(10, 4 * len(families)), squeeze=False)
    styles = {
        ("localized", "naive"): ("C0", "o", "localized naive"),
        ("localized", "lp"): ("C1", "s", "localized collective LP (paper)"),
        ("localized", "hull"): ("C2", "^", "localized hull LP"),
        ("localized", "milp"): ("C3", "D", "localized exact MILP"),
        ("isotropic", "naive"): ("k", "x", "isotropic"),
    }
    titles = {"equal_samples": "(a) equal samples per distribution",
              "equal_compute": "(b) equal forward passes"}  # fmt: skip
    for i, family in enumerate(families):
        for j, variant in enumerate(("equal_samples", "equal_compute")):
            ax = axes[i][j]
            for (kind, cert), (colour, marker, label) in styles.items():
                pts = [r for r in rows if r["family"] == family and r["kind"] == kind
                       and r["certificate"] == cert
                       and (kind == "localized" or r["variant"] == variant)]  # fmt: skip
                if not pts:
                    continue
                xs, ys = [p["miou"] for p in pts], [p["acr"] for p in pts]
                ax.scatter(xs, ys, c=colour, marker=marker, label=label)
                front = _pareto(list(zip(xs, ys)))
                ax.plot(*zip(*front), c=colour, lw=1, alpha=0.6)
            name = "U-Net (softly local)" if family == "unet" else "LocalCNN (strictly local)"
            ax.set_title(f"{name}: {titles[variant]}", fontsize=10)
            ax.set_xlabel("mIoU (abstain counted)")
            ax.set_ylabel("ACR (l2)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    figure_dir.mkdir(parents=True, exist_ok=True)
    paths += [figure_dir / "strength_pareto.png", figure_dir / "strength_pareto.pdf"]
    fig.savefig(paths[-2], dpi=90)
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def _plot_graphs(plt, records: list[dict], figure_dir: pathlib.Path) -> list[pathlib.Path]:
    """Certified accuracy against deletions (left) and additions (right), one row per data set."""
    datasets = sorted({r["dataset"] for r in records})
    if not datasets:
        return []
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.6 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        for rec in (r for r in records if r["dataset"] == dataset):
            budgets = [tuple(b) for b in rec["budgets"]]
            for name, c in rec["certificates"].items():
                tm = "->".join(f"{t:g}" for t in sorted(set(rec["theta_minus"])))
                groups = rec["forward_passes"] // rec["samples_per_group"]
                n = f"n={rec['n']} per cluster" if rec["kind"] == "localized" else (
                    f"n={groups * rec['n']}")  # fmt: skip
                label = f"{name} (theta- {tm}, {n})"
                style = "-" if c["mode"] == "milp" else "--"
                for j, axis in enumerate((1, 0)):
                    pts = sorted((b[axis], a) for b, a in zip(budgets, c["certified_accuracy"])
                                 if b[1 - axis] == 0)  # fmt: skip
                    axes[i][j].step(*zip(*pts), where="post", ls=style, label=label)
        for j, what in enumerate(("deleted bits", "added bits")):
            axes[i][j].set_title(f"{dataset}, APPNP: certified accuracy vs {what}", fontsize=10)
            axes[i][j].set_xlabel(what)
            axes[i][j].set_ylabel("certified accuracy")
            axes[i][j].grid(alpha=0.3)
        axes[i][0].legend(fontsize=6)
    fig.tight_layout()
    figure_dir.mkdir(parents=True, exist_ok=True)
    paths = [figure_dir / "strength_graph.png", figure_dir / "strength_graph.pdf"]
    fig.savefig(paths[0], dpi=90)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _pareto(points: list) -> list:
    """The points no other point beats in both coordinates, sorted by the first."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(front)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", choices=sorted(CONFIGS))
    parser.add_argument("--part", default="both", choices=("both", "segmentation", "graph"))
    parser.add_argument("--out", default="benchmarks/results/strength")
    parser.add_argument("--data_dir", default="../shared/data",
                        help="folder with cora_ml.npz and citeseer.npz")  # fmt: skip
    parser.add_argument(
        "--model_dir", default="lrsjax_runs/strength_models", help="where trained APPNPs are kept"
    )
    parser.add_argument(
        "--only",
        default="",
        help="segmentation: run only configurations whose name contains one "
        "of these comma-separated words (e.g. isotropic)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", action="store_true", help="tables and plots only, no runs")
    parser.add_argument("--figure_dir", default="docs")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    seg_cfg, graph_cfg = CONFIGS[args.config]

    def log(line):
        print(line, flush=True)

    if not args.plot:
        if args.part in ("both", "graph"):
            missing = [d for d in graph_cfg.datasets if d != "synthetic"
                       and not (pathlib.Path(args.data_dir) / f"{d}.npz").exists()]  # fmt: skip
            if missing:
                sys.exit(
                    f"--data_dir={args.data_dir!r} has no {missing[0]}.npz; pass the folder "
                    "holding cora_ml.npz and citeseer.npz (the package never downloads)."
                )
        start = time.perf_counter()
        if args.part in ("both", "segmentation"):
            run_segmentation(seg_cfg, out, args.seed, log, [w for w in args.only.split(",") if w])
        if args.part in ("both", "graph"):
            log(f"graphs: {graph_cfg.datasets}, load {load_avg()}")
            model_dir = args.model_dir
            run_graphs(graph_cfg, out, args.seed, args.data_dir, model_dir, log)
        log(f"sweep done in {time.perf_counter() - start:.1f} s, load {load_avg()}")
    seg, graph = _load(out, "segmentation"), _load(out, "graph")
    if seg:
        log(seg_table(seg))
    if graph:
        log(graph_table(graph))
    if args.plot:
        for path in plot(out, pathlib.Path(args.figure_dir)):
            log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
