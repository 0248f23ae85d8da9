"""The node-classification job: train (or reuse) a GNN, certify held-out nodes, write results.

Three certificates at equal numbers of forward passes (SPEC 2, 5, 6):
  * localized: clustered Bernoulli smoothing (`num_clusters` spectral clusters, flip probabilities
    by affinity rank), variance-constrained base certificates and the collective certificate
    (exact MILP by default) over per-cluster addition and deletion budgets;
  * isotropic sparse smoothing (Bojchevski et al. 2020): one flip pair, exact Neyman-Pearson
    certificate, naive count;
  * isotropic variance-constrained: one flip pair, naive count.
Only held-out test nodes are certified (never the nodes that trained or chose the checkpoint),
and they alone enter the Bonferroni divisor. The graph is one result item of a `RunDir`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np

from lrsjax import (
    _checks,
    _progress,
    _sparse,
    base_certs,
    collective,
    data,
    models,
    noise,
    results,
    training,
)
from lrsjax._certify import certify
from lrsjax.pipelines import _common

DATASETS = ("synthetic", "cora_ml", "citeseer", "npz")
MODELS = ("appnp", "gcn")


@dataclasses.dataclass(frozen=True)
class GraphJob:
    """Every setting of the node-classification job (one CLI flag per field).

    Data: `dataset` ("synthetic" needs no files; "cora_ml"/"citeseer" read
    `data_dir/<name>.npz`; "npz" reads the file `data_dir`), split sizes per class.
    Model: `model` ("appnp" or "gcn"), `hidden`, training epochs/patience and the flip
    probabilities of the training noise, or a `checkpoint` to certify.
    Smoothing: `num_clusters`, `(theta_plus_min, theta_plus_max)` and
    `(theta_minus_min, theta_minus_max)` from the own cluster to the farthest (localized); the
    isotropic baselines use `theta_plus_min` and `theta_minus_min` everywhere.
    Sampling: `n0`, `n` per cluster (baselines get `num_clusters` times as many), `alpha`,
    `batch_size`. Budgets: additions `0..max_additions`, deletions `0..max_deletions` in steps of
    `deletion_step`: `budget_grid="axes"` certifies deletions alone and additions alone,
    "full" the whole (additions x deletions) grid. Collective: `mode` and `time_limit_s` (0 = none).
    """

    dataset: str = "synthetic"
    data_dir: str = ""
    train_per_class: int = 20
    val_per_class: int = 20
    model: str = "appnp"
    hidden: int = 64
    epochs: int = 300
    patience: int = 50
    learning_rate: float = 0.01
    train_theta_plus: float = 0.01
    train_theta_minus: float = 0.6
    checkpoint: str = ""
    num_clusters: int = 5
    theta_plus_min: float = 0.01
    theta_plus_max: float = 0.01
    theta_minus_min: float = 0.6
    theta_minus_max: float = 0.95
    n0: int = 100
    n: int = 1000
    alpha: float = 0.01
    batch_size: int = 64
    max_additions: int = 5
    max_deletions: int = 40
    deletion_step: int = 2
    budget_grid: str = "axes"
    mode: str = "milp"
    time_limit_s: float = 10.0
    seed: int = 0
    out_dir: str = "lrsjax_runs/graph"
    overwrite: bool = False

    def validated(self) -> GraphJob:
        _checks.one_of("dataset", self.dataset, DATASETS)
        if self.dataset != "synthetic" and not self.data_dir:
            _checks.fail(
                "data_dir", self.data_dir, f"is required for dataset={self.dataset!r}",
                "Pass --data_dir=/path/to/folder (or the .npz file for dataset=npz).",
            )  # fmt: skip
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
        return data.synthetic_graph(jax.random.fold_in(jax.random.PRNGKey(job.seed), 1))
    path = pathlib.Path(job.data_dir)
    if job.dataset != "npz":
        path = path / f"{job.dataset}.npz"
    return data.load_npz_graph(path)


def _split(job: GraphJob, graph: data.Graph):
    key = jax.random.fold_in(jax.random.PRNGKey(job.seed), 2)
    return data.split_nodes(
        key, graph.labels, train_per_class=job.train_per_class, val_per_class=job.val_per_class
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
    job = dataclasses.replace(job.validated(), checkpoint="")
    graph = load_graph(job)
    train_idx, val_idx, _ = _split(job, graph)
    get_model(job, graph, train_idx, val_idx, log=log, progress=progress)
    return [model_path(job)]


def model_path(job: GraphJob) -> pathlib.Path:
    return pathlib.Path(job.out_dir) / "models" / f"{job.model}.msgpack"


def get_model(
    job: GraphJob, graph: data.Graph, train_idx, val_idx, log=_progress.write, progress=True
):
    """The model to certify: `checkpoint`, a saved one in `out_dir/models`, or a trained one."""
    if job.checkpoint:
        model, params, _ = training.load_graph_model(job.checkpoint)
        return model, params
    path = model_path(job)
    if training.checkpoint_exists(path):
        log(f"reusing {path}")
        model, params, _ = training.load_graph_model(path)
        return model, params
    model = _build_model(job, graph)
    start = time.perf_counter()
    params, history = training.train_graph_model(
        jax.random.fold_in(jax.random.PRNGKey(job.seed), 3),
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
    training.save_graph_model(path, model, params, {"train_seconds": seconds})
    log(f"trained {job.model} in {seconds:.1f} s -> {path}")
    return model, params


def _counts(certified, correct, evaluated):
    certified = certified & evaluated[:, None]
    return certified.sum(0).tolist(), (certified & correct[:, None]).sum(0).tolist()


STAGES = (
    "sample localized",
    "collective (all)",
    "collective (correct)",
    "sample sparse smoothing",
    "sample isotropic variance",
    "write results",
)


def certify_graph(job: GraphJob, key, graph, apply_fn, params, test_idx, cluster_ids, stages=None):
    """Runs the three certificates on the test nodes; returns (methods, arrays, timings).

    `stages`: a `_common.Stages` over `STAGES` that this advances through all but the last stage
    (None: no bar, no stage lines).
    """
    if stages is None:
        stages = _common.Stages(STAGES, desc="graph job", enabled=False)
    budgets = job.budgets
    num_nodes = graph.num_nodes
    labels = np.asarray(graph.labels)
    evaluated = np.zeros(num_nodes, bool)
    evaluated[test_idx] = True
    x = _sparse.from_scipy(graph.attributes)
    common = dict(
        num_features=graph.num_features, alpha=job.alpha, batch_size=job.batch_size,
        outputs=evaluated,
    )  # fmt: skip
    key_localized, key_sparse, key_variance = jax.random.split(key, 3)
    timings, methods, arrays = {}, {}, {"labels": labels.astype(np.int32), "evaluated": evaluated}

    rank = noise.affinity_ranks(graph.adjacency, cluster_ids)
    theta_plus, theta_minus = noise.rank_flip_probabilities(
        job.num_clusters,
        (job.theta_plus_min, job.theta_plus_max),
        (job.theta_minus_min, job.theta_minus_max),
    )
    localized = noise.clustered_bernoulli(cluster_ids, rank, theta_plus, theta_minus)
    c = job.num_clusters
    samples = c * (job.n0 + job.n)  # per method: the baselines draw c times n0 and n
    with stages.stage(STAGES[0], samples) as stage:
        cert = certify(
            key_localized, apply_fn, params, x, localized, n0=job.n0, n=job.n,
            **common, **stage.certify_options,
        )  # fmt: skip
    _stage_timings(timings, "localized_sampling_s", stage)
    correct = evaluated & ~cert.abstain & (cert.prediction == labels)
    limit = job.time_limit_s or None
    with stages.stage(STAGES[1]) as solve_all:
        coll_all = collective.certify_collective(
            cert.base_certs, budgets, targets=evaluated, mode=job.mode, time_limit_s=limit
        )
    with stages.stage(STAGES[2]) as solve_correct:
        coll_correct = collective.certify_collective(
            cert.base_certs, budgets, targets=correct, mode=job.mode, time_limit_s=limit
        )
    timings["collective_s"] = solve_all.seconds + solve_correct.seconds
    methods[f"localized_{job.mode}"] = results.method_record(
        job.mode,
        budgets,
        np.asarray(coll_all.certified).tolist(),
        np.asarray(coll_correct.certified).tolist(),
        solver=list(coll_all.solver),
        status=list(coll_all.status),
        extra={"status_correct": list(coll_correct.status)},
    )
    naive = base_certs.naive_certified(cert.base_certs, budgets)
    methods["localized_naive"] = results.method_record(
        "naive",
        budgets,
        *_counts(naive, correct, evaluated),
        num_certified_correct_per_class=results.per_class_certified_counts(
            naive, correct, labels, graph.num_classes, evaluated=evaluated
        ),
    )
    arrays.update(
        prediction=cert.prediction.astype(np.int32),
        abstain=cert.abstain,
        radius=np.where(correct, cert.binary_radius[:, 1], 0.0),
    )

    iso = noise.isotropic_bernoulli(num_nodes, job.theta_plus_min, job.theta_minus_min)
    with stages.stage(STAGES[3], samples) as stage:
        cert_sparse = certify(
            key_sparse, apply_fn, params, x, iso, n0=c * job.n0, n=c * job.n,
            certificate="neyman_pearson",
            max_flips=(job.max_additions, job.max_deletions), **common, **stage.certify_options,
        )  # fmt: skip
    _stage_timings(timings, "sparse_smoothing_s", stage)
    correct_sparse = evaluated & ~cert_sparse.abstain & (cert_sparse.prediction == labels)
    grid = cert_sparse.sparse_grid[:, budgets[:, 0], budgets[:, 1]]
    methods["isotropic_sparse_smoothing"] = results.method_record(
        "naive",
        budgets,
        *_counts(grid, correct_sparse, evaluated),
        num_certified_correct_per_class=results.per_class_certified_counts(
            grid, correct_sparse, labels, graph.num_classes, evaluated=evaluated
        ),
        metrics=results.output_metrics(
            cert_sparse.prediction,
            labels,
            cert_sparse.abstain,
            graph.num_classes,
            evaluated=evaluated,
        ),  # fmt: skip
        extra={"theta_plus": job.theta_plus_min, "theta_minus": job.theta_minus_min},
    )
    arrays["prediction__isotropic_sparse_smoothing"] = cert_sparse.prediction.astype(np.int32)
    arrays["abstain__isotropic_sparse_smoothing"] = cert_sparse.abstain

    with stages.stage(STAGES[4], samples) as stage:
        cert_var = certify(
            key_variance, apply_fn, params, x, iso, n0=c * job.n0, n=c * job.n,
            **common, **stage.certify_options,
        )  # fmt: skip
    _stage_timings(timings, "isotropic_variance_s", stage)
    correct_var = evaluated & ~cert_var.abstain & (cert_var.prediction == labels)
    naive_var = base_certs.naive_certified(cert_var.base_certs, budgets)
    methods["isotropic_variance"] = results.method_record(
        "naive",
        budgets,
        *_counts(naive_var, correct_var, evaluated),
        num_certified_correct_per_class=results.per_class_certified_counts(
            naive_var, correct_var, labels, graph.num_classes, evaluated=evaluated
        ),
        metrics=results.output_metrics(
            cert_var.prediction, labels, cert_var.abstain, graph.num_classes, evaluated=evaluated
        ),
    )
    return methods, arrays, timings


def _stage_timings(timings: dict, key: str, stage) -> None:
    """Records a sampling stage's seconds under `key` (e.g. "localized_sampling_s") and, if known,
    its compile seconds under the same name ending "_compile_s"."""
    timings[key] = stage.seconds
    if np.isfinite(stage.compile_s):
        timings[key.removesuffix("_s").removesuffix("_sampling") + "_compile_s"] = stage.compile_s


def run(job: GraphJob, log=_progress.write, progress=True) -> pathlib.Path:
    """Runs (or resumes) the node-classification job; returns the run directory.

    `progress`: bars on stderr for training, for the job's `STAGES` and for each method's sampling
    (samples/s without compilation, compile seconds), drawn on a terminal (see
    `lrsjax._progress`); where no bar is drawn, `log` gets one line per stage instead. `log` also
    gets the summary table at the end.
    """
    job = job.validated()
    out_dir = pathlib.Path(job.out_dir)
    run_dir = results.RunDir.start(
        out_dir / "results",
        {"task": "graph", **_common.jsonable(job, drop=("out_dir", "overwrite"))},
        seeds={"seed": job.seed},
        overwrite=job.overwrite,
    )
    item_id = _common.safe_id(job.dataset)
    if not run_dir.is_done(item_id):
        graph = load_graph(job)
        train_idx, val_idx, test_idx = _split(job, graph)
        model, params = get_model(job, graph, train_idx, val_idx, log=log, progress=progress)
        apply_fn = models.graph_apply_fn(model, models.graph_to_jraph(graph.adjacency))
        cluster_ids = data.spectral_clusters(
            jax.random.fold_in(jax.random.PRNGKey(job.seed), 4), graph.adjacency, job.num_clusters
        )
        stages = _common.Stages(STAGES, desc="graph job", enabled=progress, log=log)
        start = time.perf_counter()
        methods, arrays, timings = certify_graph(
            job,
            jax.random.fold_in(jax.random.PRNGKey(job.seed), 5),
            graph,
            apply_fn,
            params,
            test_idx,
            cluster_ids,
            stages=stages,
        )
        timings["total_s"] = time.perf_counter() - start
        record = results.item_record(
            item_id,
            task="graph",
            budget_kind="binary",
            num_classes=graph.num_classes,
            prediction=arrays["prediction"],
            labels=arrays["labels"],
            abstain=arrays["abstain"],
            evaluated=arrays["evaluated"],
            ignore_label=None,
            methods=methods,
            seeds={"seed": job.seed},
            extra={"num_nodes": graph.num_nodes, "num_test_nodes": int(len(test_idx))},
        )
        with stages.stage(STAGES[-1]):
            run_dir.write_timings(item_id, timings)
            run_dir.write_item(item_id, record, arrays)
        stages.close()
        log(f"certified {len(test_idx)} test nodes of {item_id} in {timings['total_s']:.1f} s")
    summary = results.write_summary(run_dir)
    log(results.format_table(summary))
    return run_dir.path
