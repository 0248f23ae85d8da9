"""Training losses: noise augmentation, consistency regularization, SmoothAdv (docs/math.md,
section 12), their attack, and their use by train_classifier and the classification job."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsjax import noise, results
from lrsjax.data import synthetic_classification
from lrsjax.models import ResNet
from lrsjax.pipelines import ClassificationJob
from lrsjax.pipelines._classification import model_path, run_config, training_settings
from lrsjax.training import (
    TrainingLoss,
    consistency,
    consistency_loss,
    consistency_terms,
    noise_augmentation,
    noise_loss,
    smoothadv,
    smoothadv_attack,
    smoothadv_objective,
    train_classifier,
)

# two noisy logit vectors of one example, label 0
SPEC_LOGITS = jnp.array([[[2.0, 0.5, -1.0]], [[1.0, 1.2, -0.5]]])
SPEC_LABELS = jnp.array([0])


def _reference_consistency(logits, label, lbd, eta):
    """numpy float64, one example: the loss written term by term from its definition."""
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    mean = probs.mean(0)
    ce = np.mean(-np.log(probs[:, label]))
    kl = np.mean([np.sum(mean * (np.log(mean) - np.log(p))) for p in probs])
    return ce + lbd * kl - eta * np.sum(mean * np.log(mean))


# ----------------------------------------------------------------------------------------------
# losses of logits
# ----------------------------------------------------------------------------------------------


def test_spec_values():
    ce, kl, entropy = consistency_terms(SPEC_LOGITS, SPEC_LABELS)
    np.testing.assert_allclose(ce, 0.56758268, rtol=1e-6)
    np.testing.assert_allclose(kl, 0.08124062, rtol=1e-5)
    np.testing.assert_allclose(entropy, 0.85238512, rtol=1e-6)
    np.testing.assert_allclose(noise_loss(SPEC_LOGITS, SPEC_LABELS), 0.56758268, rtol=1e-6)
    total = consistency_loss(SPEC_LOGITS, SPEC_LABELS, lbd=10.0, eta=0.5)
    np.testing.assert_allclose(total, 1.80618146, rtol=1e-6)
    np.testing.assert_allclose(smoothadv_objective(SPEC_LOGITS, SPEC_LABELS), 0.51527456, rtol=1e-6)


@pytest.mark.slow  # compilations: a few seconds
def test_losses_on_random_logits_match_the_definitions_and_jensen():
    logits = 3.0 * jax.random.normal(jax.random.key(0), (3, 5, 4))
    labels = jnp.array([0, 1, 2, 3, 1])
    expected = np.mean([_reference_consistency(logits[:, b], int(labels[b]), 5.0, 0.3)
                        for b in range(5)])  # fmt: skip
    np.testing.assert_allclose(consistency_loss(logits, labels, lbd=5.0, eta=0.3), expected,
                               rtol=1e-5)  # fmt: skip
    # log of the mean <= mean of the logs, strictly when the copies disagree
    assert smoothadv_objective(logits, labels) < noise_loss(logits, labels)
    # one copy: no disagreement, the objective is the cross-entropy
    one = logits[:1]
    _, kl, _ = consistency_terms(one, labels)
    assert abs(float(kl)) < 1e-6
    np.testing.assert_allclose(smoothadv_objective(one, labels), noise_loss(one, labels),
                               rtol=1e-6)  # fmt: skip


@pytest.mark.slow  # compilations: a few seconds
def test_masked_segmentation_logits_count_only_the_masked_outputs():
    logits = jax.random.normal(jax.random.key(1), (2, 2, 3, 4, 5))  # [m, B, H, W, K]
    labels = jax.random.randint(jax.random.key(2), (2, 3, 4), 0, 5)
    mask = jax.random.bernoulli(jax.random.key(3), 0.4, (2, 3, 4))
    labels = jnp.where(mask, labels, 255)  # ignored labels must not be read
    flat_logits = logits[:, mask]  # [m, counted, K]
    flat_labels = labels[mask]
    for fn in (noise_loss, smoothadv_objective, consistency_loss):
        np.testing.assert_allclose(jax.jit(fn)(logits, labels, mask),
                                   jax.jit(fn)(flat_logits, flat_labels), rtol=1e-6)  # fmt: skip
    assert float(jax.jit(noise_loss)(logits, labels, jnp.zeros_like(mask))) == 0.0


@pytest.mark.slow  # compilations: a few seconds
def test_consistency_gradient_flows_through_the_mean():
    def loss(logits):
        return consistency_loss(logits, SPEC_LABELS, lbd=10.0, eta=0.5)

    def detached(logits):  # the same value with F_bar held fixed
        probs = jax.nn.softmax(logits, -1)
        mean = jax.lax.stop_gradient(probs.mean(0))
        kl = jnp.mean(jnp.sum(mean * (jnp.log(mean) - jax.nn.log_softmax(logits, -1)), -1))
        return noise_loss(logits, SPEC_LABELS) + 10.0 * kl - 0.5 * jnp.sum(mean * jnp.log(mean))

    np.testing.assert_allclose(loss(SPEC_LOGITS), detached(SPEC_LOGITS), rtol=1e-6)
    grad = np.asarray(jax.grad(loss)(SPEC_LOGITS))
    step = 1e-2
    bumps = step * jnp.eye(grad.size).reshape((grad.size, *grad.shape))
    batched = jax.jit(jax.vmap(loss))
    numeric = ((batched(SPEC_LOGITS + bumps) - batched(SPEC_LOGITS - bumps)) / (2 * step)).reshape(
        grad.shape
    )
    np.testing.assert_allclose(grad, numeric, atol=2e-3)
    assert np.max(np.abs(grad - np.asarray(jax.grad(detached)(SPEC_LOGITS)))) > 0.05


# ----------------------------------------------------------------------------------------------
# the attack
# ----------------------------------------------------------------------------------------------


def _linear_problem(num_copies=4):
    """A linear classifier of 2x3x3 images, Gaussian draws of std 0.25 fixed by `keys`."""
    weights = jax.random.normal(jax.random.key(5), (18, 3))
    images = jax.random.uniform(jax.random.key(6), (4, 2, 3, 3))
    labels = jnp.array([0, 1, 2, 0])
    keys = jax.random.split(jax.random.key(7), num_copies)

    def apply(params, x):
        return x.reshape(x.shape[0], -1) @ params

    def draw(key, x):
        return x + 0.25 * jax.random.normal(key, x.shape)

    def one(logits, label):  # [m, K], []: the objective of one example
        return smoothadv_objective(logits[:, None], label[None])

    def objective(x):
        copies = jax.vmap(draw, in_axes=(0, None))(keys, x)
        logits = jax.vmap(apply, in_axes=(None, 0))(weights, copies)
        return jax.vmap(one, in_axes=(1, 0))(logits, labels)

    return weights, images, labels, apply, draw, objective


def _attack(key, objective, x, eps, steps):
    return jax.jit(lambda k, z: smoothadv_attack(k, objective, z, eps=eps, steps=steps))(key, x)


def test_attack_raises_the_smoothed_loss_inside_the_ball_and_the_box():
    _, images, _, _, _, objective = _linear_problem()
    eps = 0.5

    @jax.jit
    def attack(key, x):  # one compilation: the attack and the objective before and after
        adversarial = smoothadv_attack(key, objective, x, eps=eps, steps=3)
        return adversarial, objective(x), objective(adversarial)

    adversarial, before, after = attack(jax.random.key(0), images)
    distance = np.sqrt(np.sum(np.square(np.asarray(adversarial - images)), axis=(1, 2, 3)))
    assert np.all(distance <= eps * (1 + 1e-5)) and np.all(distance > 0.1)
    assert float(jnp.min(adversarial)) >= 0.0 and float(jnp.max(adversarial)) <= 1.0
    assert np.all(np.asarray(after) > np.asarray(before) + 0.01)


def test_attack_takes_a_random_step_where_the_gradient_vanishes():
    images = jnp.full((2, 1, 2, 2), 0.5)
    adversarial = _attack(jax.random.key(0), lambda x: jnp.zeros(x.shape[0]), images, 0.3, 1)
    distance = np.sqrt(np.sum(np.square(np.asarray(adversarial - images)), axis=(1, 2, 3)))
    np.testing.assert_allclose(distance, 0.3, rtol=1e-5)  # one step of 2 eps, projected


# ----------------------------------------------------------------------------------------------
# batch losses
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # compilations: a few seconds
def test_batch_losses_are_keyed_and_smoothadv_raises_the_loss():
    weights, images, labels, apply, draw, _ = _linear_problem()

    keys = jnp.stack([jax.random.key(0), jax.random.key(0), jax.random.key(1)])

    def batch_losses(loss):  # one compilation per loss
        run = jax.vmap(lambda k: loss.batch_loss(k, weights, apply, draw, images, labels))
        return np.asarray(jax.jit(run)(keys))

    values = {}
    for loss in (noise_augmentation(), consistency(lbd=5.0), smoothadv(eps=0.0, steps=2),
                 smoothadv(eps=0.5, steps=2)):  # fmt: skip
        values[loss] = same, again, other = batch_losses(loss)
        assert same == again and same != other, loss.name
    # the attack only moves the points: eps = 0 keeps the same draws on the clean points
    clean, attacked = values[smoothadv(eps=0.0, steps=2)][0], values[smoothadv(eps=0.5, steps=2)][0]
    assert attacked > clean + 0.05
    # noise augmentation is the cross-entropy of one draw with the step's key
    plain = values[noise_augmentation()][0]
    logits = apply(weights, draw(jax.random.key(0), images))
    np.testing.assert_allclose(plain, noise_loss(logits[None], labels), rtol=1e-6)


def test_smoothadv_warmup_ramps_the_radius_linearly():
    weights, images, labels, apply, draw, _ = _linear_problem()
    key = jax.random.key(3)

    def values(loss, steps):  # one compilation per loss, the step traced
        def run(step):
            return loss.batch_loss(key, weights, apply, draw, images, labels, step=step)

        return np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(steps)))

    ramped = values(smoothadv(eps=0.8, steps=2, warmup_steps=4), [0, 1, 3, 10])
    fixed = [values(smoothadv(eps=r, steps=2), [0])[0] for r in (0.2, 0.4, 0.8)]
    np.testing.assert_allclose(ramped, [*fixed, fixed[-1]], rtol=1e-5)
    assert ramped[0] < ramped[2]
    with pytest.raises(ValueError, match="warmup_steps"):
        smoothadv(warmup_steps=-1)


def test_factories_validate_and_cache():
    assert consistency(lbd=10.0) is consistency(lbd=10.0)  # one compiled training step
    assert isinstance(smoothadv(), TrainingLoss) and smoothadv().name == "smoothadv"
    with pytest.raises(ValueError, match="num_copies"):
        consistency(num_copies=0)
    with pytest.raises(ValueError, match="lbd"):
        consistency(lbd=-1.0)
    with pytest.raises(ValueError, match="eps"):
        smoothadv(eps=float("nan"))
    with pytest.raises(ValueError, match="steps"):
        smoothadv(steps=0)


def test_train_classifier_refuses_bad_losses():
    train = synthetic_classification(jax.random.key(0), 8, image_size=8, num_classes=3)
    model = ResNet(3, width=4, num_stages=1, num_groups=2)
    with pytest.raises(ValueError, match="loss"):
        train_classifier(jax.random.key(0), model, train, noise=None, steps=2, loss="consistency")
    with pytest.raises(ValueError, match="loss"):
        train_classifier(jax.random.key(0), model, train, noise=None, steps=2, loss="mse")


# ----------------------------------------------------------------------------------------------
# the classification job
# ----------------------------------------------------------------------------------------------


def test_job_loss_settings_stay_out_of_old_identities(tmp_path):
    job = ClassificationJob.tiny(out_dir=str(tmp_path))
    config = run_config(job)
    # the keys of config.json written before the loss settings existed
    assert sorted(config) == [
        "alpha", "batch_size", "blocks_per_stage", "budget_max", "budget_min", "budget_steps",
        "checkpoint", "data_dir", "dataset", "image_size", "job", "learning_rate", "n", "n0",
        "num_classes", "num_images", "num_stages", "num_train_images", "seed", "sigma", "task",
        "train_batch_size", "train_noise", "train_steps", "width",
    ]  # fmt: skip
    assert "consistency_lbd" in run_config(job.replace(loss="consistency"))
    # a run started before the loss settings existed (this config) resumes
    run = results.RunDir.start(tmp_path / "results", config, seeds={"seed": 0})
    (run.items_dir / "img00000.json").write_text("{}")
    results.RunDir.start(tmp_path / "results", run_config(job), seeds={"seed": 0})
    with pytest.raises(ValueError, match="different run"):
        results.RunDir.start(
            tmp_path / "results", run_config(job.replace(loss="consistency")), seeds={"seed": 0}
        )
    stored = json.loads((tmp_path / "results" / "config.json").read_text())["config"]
    assert stored == config
    # models: the noise-trained file and settings are unchanged; other losses get their own
    assert model_path(job).name == "resnet_matched.msgpack"
    assert "loss" not in training_settings(job)
    smooth = job.replace(loss="smoothadv", smoothadv_eps=1.0)
    assert model_path(smooth).name == "resnet_matched_smoothadv.msgpack"
    assert training_settings(smooth)["smoothadv_eps"] == 1.0


def test_job_validates_the_loss():
    with pytest.raises(ValueError, match="loss"):
        ClassificationJob.tiny(loss="adversarial").validated()
    with pytest.raises(ValueError, match="train_noise"):
        ClassificationJob.tiny(loss="consistency", train_noise="none").validated()
    with pytest.raises(ValueError, match="smoothadv_eps"):
        ClassificationJob.tiny(loss="smoothadv", smoothadv_eps=-1.0).validated()


# ----------------------------------------------------------------------------------------------
# training runs
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_loss_is_plain_noise_augmentation():
    train = synthetic_classification(jax.random.key(0), 16, image_size=8, num_classes=3)
    model = ResNet(3, width=4, num_stages=1, num_groups=2)
    sm = noise.isotropic_gaussian(train.image_shape, 0.25)
    kwargs = dict(noise=sm, steps=3, batch_size=8)
    params, history = train_classifier(jax.random.key(0), model, train, **kwargs)
    # the loss of this run before the loss option existed
    np.testing.assert_allclose(history.loss, [1.16753662], rtol=1e-4)
    named, _ = train_classifier(jax.random.key(0), model, train, loss="noise", **kwargs)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(named)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss", [noise_augmentation(), consistency(lbd=1.0), smoothadv(eps=0.25, steps=2)]
)
def test_training_lowers_each_loss_and_is_keyed(loss):
    train = synthetic_classification(jax.random.key(0), 64, image_size=8, num_classes=3)
    model = ResNet(3, width=8, num_stages=1, num_groups=2)
    sm = noise.isotropic_gaussian(train.image_shape, 0.25)
    kwargs = dict(noise=sm, steps=60, batch_size=32, learning_rate=1e-2, log_every=10, loss=loss)
    params, history = train_classifier(jax.random.key(0), model, train, **kwargs)
    assert history.loss[-1] < history.loss[0] - 0.05, history.loss
    again, _ = train_classifier(jax.random.key(0), model, train, **kwargs)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_cli_trains_a_classifier_with_each_loss(tmp_path):
    import subprocess
    import sys

    from lrsjax.training import load_classifier

    tiny = ["--task=classification", "--image_size=8", "--num_classes=3", "--num_train_images=16",
            "--width=4", "--num_stages=1", "--train_steps=3", "--train_batch_size=8",
            f"--out_dir={tmp_path}"]  # fmt: skip
    for loss in ("consistency", "smoothadv"):
        out = subprocess.run(
            [sys.executable, "-m", "lrsjax.cli.train", *tiny, f"--loss={loss}",
             "--num_noise_copies=3", "--smoothadv_steps=1"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        _, _, meta = load_classifier(tmp_path / "models" / f"resnet_matched_{loss}.msgpack")
        assert meta["extra"]["loss"] == loss and meta["extra"]["job"]["num_noise_copies"] == 3
    out = subprocess.run([sys.executable, "-m", "lrsjax.cli.train", *tiny, "--loss=mse"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode != 0 and "loss" in out.stderr
