"""The node-classification job: train (or reuse) a GNN, certify held-out nodes, write results.

Three methods at equal numbers of forward passes (`methods`; docs/math.md):
  * localized: clustered Bernoulli smoothing (`num_clusters` spectral clusters, flip probabilities
    by affinity rank), variance-constrained base certificates and the collective certificate
    (exact MILP by default) over per-cluster addition and deletion budgets (Schuchardt et al.,
    2023);
  * isotropic sparse smoothing (Bojchevski et al., 2020): one flip pair, exact Neyman-Pearson
    certificate, naive count;
  * isotropic variance-constrained: one flip pair, naive count.
Only held-out test nodes are certified (never the nodes that trained or chose the checkpoint),
and they alone enter the Bonferroni divisor. The graph is one result item of a `RunDir`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from lrsjax import _checks, _progress, _sparse, collective, data, models, noise, results, training
from lrsjax.pipelines import _common, _run
from lrsjax.pipelines._config import Sections, jsonable, key_streams
from lrsjax.pipelines._method import Collective, Item, Method, Model

DATASETS = ("synthetic", "cora_ml", "citeseer", "npz")
MODELS = ("appnp", "gcn")
# Named random streams of the job seed: the synthetic graph, the node split, training, the
# spectral clusters, the certification of the graph.
STREAMS = {"data": 1, "split": 2, "training": 3, "clusters": 4, "certify": 5}


@dataclasses.dataclass(frozen=True)
class Data:
    """`dataset` ("synthetic" needs no files; "cora_ml"/"citeseer" read `data_dir/<name>.npz`;
    "npz" reads the file `data_dir`), split sizes per class."""

    dataset: str = "synthetic"
    data_dir: str = ""
    train_per_class: int = 20
    val_per_class: int = 20


@dataclasses.dataclass(frozen=True)
class GNN:
    """`model` ("appnp" or "gcn"), `hidden` units, or a `checkpoint` to certify."""

    model: str = "appnp"
    hidden: int = 64
    checkpoint: str = ""


@dataclasses.dataclass(frozen=True)
class Training:
    """Training `epochs`, early-stopping `patience`, `learning_rate`, and the flip probabilities
    of the training noise."""

    epochs: int = 300
    patience: int = 50
    learning_rate: float = 0.01
    train_theta_plus: float = 0.01
    train_theta_minus: float = 0.6


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """`num_clusters`, `(theta_plus_min, theta_plus_max)` and `(theta_minus_min,
    theta_minus_max)` from the own cluster to the farthest (localized); the isotropic baselines
    use `theta_plus_min` and `theta_minus_min` everywhere."""

    num_clusters: int = 5
    theta_plus_min: float = 0.01
    theta_plus_max: float = 0.01
    theta_minus_min: float = 0.6
    theta_minus_max: float = 0.95


@dataclasses.dataclass(frozen=True)
class Sampling:
    """`n0`, `n` per cluster (the baselines get `num_clusters` times as many), `alpha`,
    `batch_size`."""

    n0: int = 100
    n: int = 1000
    alpha: float = 0.01
    batch_size: int = 64


@dataclasses.dataclass(frozen=True)
class Budget:
    """Additions `0..max_additions`, deletions `0..max_deletions` in steps of `deletion_step`:
    `budget_grid="axes"` certifies deletions alone and additions alone, "full" the whole
    (additions x deletions) grid."""

    max_additions: int = 5
    max_deletions: int = 40
    deletion_step: int = 2
    budget_grid: str = "axes"


@dataclasses.dataclass(frozen=True)
class CollectiveSettings:
    """`mode` ("lp", "hull", "milp") and `time_limit_s` (per MILP solve, 0 = no limit)."""

    mode: str = "milp"
    time_limit_s: float = 10.0


TINY = dict(
    epochs=10, patience=5, hidden=8, num_clusters=3, n0=16, n=200, batch_size=32,
    max_additions=1, max_deletions=2, deletion_step=1, time_limit_s=5.0, budget_grid="full",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, init=False)
class GraphJob(Sections):
    """Every setting of the node-classification job, in sections; each setting is also one CLI
    flag and one config.json key under its flat name (`job.n0 == job.sampling.n0`, see
    `Sections`).

    Sections: `data` (`Data`), `gnn` (`GNN`), `training` (`Training`), `smoothing`
    (`Smoothing`), `sampling` (`Sampling`), `budget` (`Budget`), `collective`
    (`CollectiveSettings`). Run: `seed`, `out_dir`, `overwrite`.
    """

    data: Data = dataclasses.field(default_factory=Data)
    gnn: GNN = dataclasses.field(default_factory=GNN)
    training: Training = dataclasses.field(default_factory=Training)
    smoothing: Smoothing = dataclasses.field(default_factory=Smoothing)
    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    budget: Budget = dataclasses.field(default_factory=Budget)
    collective: CollectiveSettings = dataclasses.field(default_factory=CollectiveSettings)
    seed: int = 0
    out_dir: str = "lrsjax_runs/graph"
    overwrite: bool = False

    @classmethod
    def tiny(cls, **settings) -> GraphJob:
        """A job that trains, certifies and reports in seconds (tests), with `settings` on top."""
        return cls(**{**TINY, **settings})

    def validated(self) -> GraphJob:
        _common.check_dataset(
            self, DATASETS, "Pass --data_dir=/path/to/folder (or the .npz file for dataset=npz)."
        )
        _checks.one_of("model", self.model, MODELS)
        _checks.one_of("mode", self.mode, collective.MODES)
        _checks.one_of("budget_grid", self.budget_grid, ("axes", "full"))
        for name in ("train_per_class", "val_per_class", "hidden", "epochs", "patience"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("num_clusters", "n0", "n", "batch_size", "deletion_step"):
            _checks.positive_int(name, getattr(self, name))
        for name in ("max_additions", "max_deletions"):
            _checks.positive_int(name, getattr(self, name), minimum=0)
        for name in ("theta_plus_min", "theta_plus_max", "theta_minus_min", "theta_minus_max"):
            _checks.probability(name, getattr(self, name))
        for name in ("train_theta_plus", "train_theta_minus"):
            _checks.probability(name, getattr(self, name), open_low=False)
        _checks.probability("alpha", self.alpha)
        if self.time_limit_s < 0:
            _checks.fail("time_limit_s", self.time_limit_s, "must be >= 0 (0 = no limit)")
        return self

    @property
    def budgets(self) -> np.ndarray:
        """int [B, 2] (additions, deletions): both axes, or the full grid (additions major)."""
        adds = np.arange(self.max_additions + 1)
        dels = np.arange(0, self.max_deletions + 1, self.deletion_step)
        if self.budget_grid == "full":
            return np.stack(np.meshgrid(adds, dels, indexing="ij"), -1).reshape(-1, 2)
        deletions = np.stack([np.zeros_like(dels), dels], -1)
        additions = np.stack([adds[1:], np.zeros_like(adds[1:])], -1)
        return np.concatenate([deletions, additions]).astype(np.int64)


def load_graph(job: GraphJob) -> data.Graph:
    """The job's graph: synthetic (no files) or an npz file in the standard sparse format."""
    if job.dataset == "synthetic":
        return data.synthetic_graph(key_streams(job.seed, STREAMS).key("data"))
    path = pathlib.Path(job.data_dir)
    if job.dataset != "npz":
        path = path / f"{job.dataset}.npz"
    return data.load_npz_graph(path)


def _split(job: GraphJob, graph: data.Graph):
    return data.split_nodes(
        key_streams(job.seed, STREAMS).key("split"),
        graph.labels,
        train_per_class=job.train_per_class,
        val_per_class=job.val_per_class,
    )


def _build_model(job: GraphJob, graph: data.Graph):
    cls = models.APPNP if job.model == "appnp" else models.GCN
    return cls(
        num_features=graph.num_features, num_classes=graph.num_classes, hidden_features=job.hidden
    )


def train_model(job: GraphJob, log=_progress.write, progress=True) -> list[pathlib.Path]:
    """Trains (or reuses) the job's graph model; returns its checkpoint path in a list.

    `progress`: a training bar on stderr (drawn on a terminal, see `lrsjax._progress`).
    """
    job = job.validated().replace(checkpoint="", overwrite=False)
    graph = load_graph(job)
    train_idx, val_idx, _ = _split(job, graph)
    get_model(job, graph, train_idx, val_idx, log=log, progress=progress)
    return [model_path(job)]


def model_path(job: GraphJob) -> pathlib.Path:
    return pathlib.Path(job.out_dir) / "models" / f"{job.model}.msgpack"


TRAINING_SETTINGS = (
    "dataset", "data_dir", "train_per_class", "val_per_class", "model", "hidden", "epochs",
    "patience", "learning_rate", "train_theta_plus", "train_theta_minus", "seed",
)  # fmt: skip


def training_settings(job: GraphJob) -> dict:
    """The settings the trained model depends on, as stored in its checkpoint's metadata."""
    settings = jsonable(job)
    names = [n for n in TRAINING_SETTINGS if n != "data_dir" or job.dataset != "synthetic"]
    return {name: settings[name] for name in names}


def _recorded_settings(metadata: dict) -> dict:
    """The training settings a saved model records; models saved without them record their
    architecture (hidden units) only."""
    recorded = metadata.get("extra", {}).get("job")
    if recorded is not None:
        return recorded
    config = metadata.get("model", {}).get("config", {})
    return {"hidden": config["hidden_features"]} if "hidden_features" in config else None


def get_model(
    job: GraphJob, graph: data.Graph, train_idx, val_idx, log=_progress.write, progress=True
):
    """The model to certify: `checkpoint`, a saved one in `out_dir/models` trained with the job's
    settings, or a newly trained one (a saved one trained otherwise: ValueError, or retrained with
    `overwrite`)."""
    if job.checkpoint:
        model, params, _ = training.load_graph_model(job.checkpoint)
        return model, params
    path = model_path(job)
    if training.checkpoint_exists(path):
        model, params, metadata = training.load_graph_model(path)
        recorded = _recorded_settings(metadata)
        expected = training_settings(job)
        if _common.reusable(path, recorded, expected, overwrite=job.overwrite, log=log):
            log(f"reusing {path}")
            return model, params
    model = _build_model(job, graph)
    start = time.perf_counter()
    params, history = training.train_graph_model(
        key_streams(job.seed, STREAMS).key("training"),
        model,
        graph,
        train_idx,
        val_idx,
        epochs=job.epochs,
        learning_rate=job.learning_rate,
        noise_plus=job.train_theta_plus,
        noise_minus=job.train_theta_minus,
        patience=job.patience,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    training.save_graph_model(path, model, params, {"train_seconds": seconds, "job": jsonable(job)})
    log(f"trained {job.model} in {seconds:.1f} s -> {path}")
    return model, params


def methods(job: GraphJob, graph: data.Graph, cluster_ids) -> list[Method]:
    """Localized clustered Bernoulli smoothing (collective and naive), isotropic sparse smoothing
    and isotropic variance-constrained smoothing at equal forward passes (`num_clusters` groups:
    the baselines draw `num_clusters` times n0 and n)."""
    budgets, c = job.budgets, job.num_clusters
    rank = noise.affinity_ranks(graph.adjacency, cluster_ids)
    theta_plus, theta_minus = noise.rank_flip_probabilities(
        c, (job.theta_plus_min, job.theta_plus_max), (job.theta_minus_min, job.theta_minus_max)
    )
    localized = noise.clustered_bernoulli(cluster_ids, rank, theta_plus, theta_minus)
    isotropic = noise.isotropic_bernoulli(graph.num_nodes, job.theta_plus_min, job.theta_minus_min)
    common = dict(num_features=graph.num_features, alpha=job.alpha, batch_size=job.batch_size)
    baseline = dict(n0=c * job.n0, n=c * job.n, **common)
    samples = c * (job.n0 + job.n)
    step = Collective(f"localized_{job.mode}", job.mode, time_limit_s=job.time_limit_s or None)
    return [
        Method(
            "localized_naive", "localized", localized, budgets,
            dict(n0=job.n0, n=job.n, **common), samples, collective=step, radius="deletions",
        ),
        Method(
            "isotropic_sparse_smoothing", "sparse smoothing", isotropic, budgets,
            dict(baseline, certificate="neyman_pearson",
                 max_flips=(job.max_additions, job.max_deletions)),
            samples, certified="sparse_grid", arrays=("prediction", "abstain"),
            extra={"theta_plus": job.theta_plus_min, "theta_minus": job.theta_minus_min},
        ),
        Method(
            "isotropic_variance", "isotropic variance", isotropic, budgets, baseline, samples,
            arrays=(),
        ),
    ]  # fmt: skip


def run(
    job: GraphJob, log=_progress.write, progress=True, *, overlap: bool | None = None
) -> pathlib.Path:
    """Runs (or resumes) the node-classification job; returns the run directory.

    `progress`: bars on stderr for training, for the job's stages and for each method's sampling
    (samples/s without compilation, compile seconds), drawn on a terminal (see
    `lrsjax._progress`); where no bar is drawn, `log` gets one line per stage instead. `log` also
    gets the summary table at the end.
    `overlap`: as in `certify_items` (the job has one item: nothing to overlap). Under
    `jax.distributed` the graph is certified by process 0 (see `certify_items`).
    """
    job = job.validated()
    run_dir = results.RunDir.start(
        pathlib.Path(job.out_dir) / "results",
        {"task": "graph", **jsonable(job, drop=("out_dir", "overwrite"))},
        seeds={"seed": job.seed},
        overwrite=job.overwrite,
    )
    item_id = _common.safe_id(job.dataset)
    streams = key_streams(job.seed, STREAMS)

    def prepare() -> _run.Plan:
        graph = load_graph(job)
        train_idx, val_idx, test_idx = _split(job, graph)
        model, params = get_model(job, graph, train_idx, val_idx, log=log, progress=progress)
        apply_fn = models.graph_apply_fn(model, models.graph_to_jraph(graph.adjacency))
        clusters = data.spectral_clusters(
            streams.key("clusters"), graph.adjacency, job.num_clusters
        )
        labels = np.asarray(graph.labels)
        evaluated = np.zeros(graph.num_nodes, bool)
        evaluated[test_idx] = True
        item = Item(
            item_id,
            streams.key("certify"),
            _sparse.from_scipy(graph.attributes),
            labels,
            evaluated,
            (graph.num_nodes,),
            graph.num_classes,
            arrays={"labels": labels.astype(np.int32), "evaluated": evaluated},
            seeds={"seed": job.seed},
            outputs=evaluated,
            ignore_label=None,
            extra={"num_nodes": graph.num_nodes, "num_test_nodes": int(len(test_idx))},
        )
        methods_ = methods(job, graph, clusters)
        return _run.Plan(methods_, [Model(apply_fn, params)] * len(methods_), lambda _: item)

    return _run.certify_items(
        run_dir, [item_id], prepare, task="graph", budget_kind="binary", log=log,
        progress=progress, stage_bar=True, unit="graph", outputs="test nodes", overlap=overlap,
    )  # fmt: skip
