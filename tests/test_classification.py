"""Image classification: synthetic data and loaders, the ResNet, noise-augmented training and
classifier checkpoints."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsjax import noise
from lrsjax.data import (
    CIFAR10_CLASSES,
    ClassificationData,
    check_classification_data,
    load_cifar10,
    load_image_folder,
    synthetic_classification,
)
from lrsjax.models import (
    ResNet,
    classifier_apply_fn,
    init_classifier_params,
    resnet_config,
    resnet_from_config,
)
from lrsjax.training import (
    evaluate_classifier,
    load_classifier,
    save_classifier,
    train_classifier,
)

TINY = dict(width=4, num_stages=1, num_groups=2)


@pytest.fixture(scope="module")
def tiny_data():
    train = synthetic_classification(jax.random.key(0), 16, image_size=8, num_classes=3)
    test = synthetic_classification(jax.random.key(0), 6, image_size=8, num_classes=3, split="test")
    return train, test


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_image_and_split():
    a = synthetic_classification(jax.random.key(3), 6, image_size=16)
    b = synthetic_classification(jax.random.key(3), 3, image_size=16)
    test = synthetic_classification(jax.random.key(3), 3, image_size=16, split="test")
    other = synthetic_classification(jax.random.key(4), 3, image_size=16)
    check_classification_data("a", a)
    assert a.images.shape == (6, 3, 16, 16) and a.images.dtype == np.float32
    assert a.labels.dtype == np.int32 and a.num_classes == 6 and len(a.class_names) == 6
    np.testing.assert_array_equal(a.images[:3], b.images)  # image i depends on (key, split, i)
    np.testing.assert_array_equal(a.labels[:3], b.labels)
    assert not np.array_equal(a.images[:3], test.images)
    assert not np.array_equal(a.images[:3], other.images)
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0


def test_synthetic_classes_are_patterns_not_colours():
    data = synthetic_classification(jax.random.key(1), 200, num_classes=2, pixel_noise=0.0)
    assert set(np.unique(data.labels)) == {0, 1}
    # mean colour carries (almost) no class information: pattern colours are class-independent
    means = data.images.mean(axis=(2, 3))
    gap = np.abs(means[data.labels == 0].mean(0) - means[data.labels == 1].mean(0))
    assert gap.max() < 0.1


def test_synthetic_refuses_too_many_classes():
    with pytest.raises(ValueError, match="num_classes"):
        synthetic_classification(jax.random.key(0), 4, num_classes=9)


def _write_cifar(path, labels, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels], axis=1)
    records.tofile(path)
    return pixels


def test_cifar10_binary_records_are_read_exactly(tmp_path):
    pixels = _write_cifar(tmp_path / "test_batch.bin", [3, 0, 9])
    data = load_cifar10(tmp_path, "test")
    assert data.class_names == CIFAR10_CLASSES and data.name == "cifar10-test"
    np.testing.assert_array_equal(data.labels, [3, 0, 9])
    assert data.images.shape == (3, 3, 32, 32) and data.images.dtype == np.float32
    # channel-major planes: byte 1024 * c + 32 * y + x is pixel (c, y, x)
    np.testing.assert_allclose(data.images[1, 2, 5, 7], pixels[1, 2048 + 5 * 32 + 7] / 255.0)
    assert load_cifar10(tmp_path, "test", max_images=2).num_images == 2


def test_cifar10_train_split_concatenates_batches_and_reads_nested_folder(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    for i in range(1, 6):
        _write_cifar(root / f"data_batch_{i}.bin", [i, i], seed=i)
    data = load_cifar10(tmp_path, "train")
    np.testing.assert_array_equal(data.labels, np.repeat(np.arange(1, 6), 2))
    assert load_cifar10(tmp_path, "train", max_images=3).labels.tolist() == [1, 1, 2]


def test_cifar10_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="data_dir.*test_batch.bin.*binary version"):
        load_cifar10(tmp_path, "test")
    (tmp_path / "test_batch.bin").write_bytes(b"\x01" * 3000)
    with pytest.raises(ValueError, match="whole records of 3073 bytes"):
        load_cifar10(tmp_path, "test")
    _write_cifar(tmp_path / "test_batch.bin", [12])
    with pytest.raises(ValueError, match="labels 0-9"):
        load_cifar10(tmp_path, "test")


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    from PIL import Image

    colours = {"cat": (255, 0, 0), "ant": (0, 0, 255)}
    for name, colour in colours.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 20), colour).save(tmp_path / "train" / name / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, "train", image_size=(8, 16))
    check_classification_data("data", data)
    assert data.class_names == ("ant", "cat")
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    assert data.images.shape == (4, 3, 8, 16)
    np.testing.assert_allclose(data.images[0, :, 3, 3], [0, 0, 1])  # ant: blue
    np.testing.assert_allclose(data.images[3, :, 3, 3], [1, 0, 0])  # cat: red
    grey = load_image_folder(tmp_path / "train", image_size=4, channels=1)
    assert grey.images.shape == (4, 1, 4, 4)
    with pytest.raises(ValueError, match="split"):
        load_image_folder(tmp_path, "test")


def test_check_classification_data_refuses_bad_labels():
    images = np.zeros((2, 1, 4, 4), np.float32)
    bad = ClassificationData(images, np.array([0, 5], np.int32), 2, ("a", "b"), "x")
    with pytest.raises(ValueError, match=r"labels.*\[0, num_classes\)"):
        check_classification_data("data", bad)


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------


def test_resnet_apply_fn_contract_and_config_round_trip():
    model = ResNet(5, width=2, num_stages=2, blocks_per_stage=1, num_groups=2)
    params = init_classifier_params(jax.random.key(0), model, (3, 8, 8))
    apply_fn = classifier_apply_fn(model)
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8))
    logits = jax.jit(apply_fn)(params, x)
    assert logits.shape == (5,) and logits.dtype == jnp.float32
    batched = jax.jit(jax.vmap(apply_fn, in_axes=(None, 0)))(params, jnp.stack([x, 1 - x]))
    np.testing.assert_allclose(batched[0], logits, rtol=1e-5, atol=1e-5)  # no batch statistics
    assert resnet_from_config(resnet_config(model)) == model
    assert classifier_apply_fn(resnet_from_config(resnet_config(model))) is apply_fn
    with pytest.raises(ValueError, match="one image"):
        jax.eval_shape(apply_fn, params, x[None])
    with pytest.raises(ValueError, match="num_stages"):
        ResNet(3, num_stages=5)
    with pytest.raises(ValueError, match="does not describe a ResNet"):
        resnet_from_config({"num_classes": 3, "depth": 2})


# ----------------------------------------------------------------------------------------------
# training and checkpoints
# ----------------------------------------------------------------------------------------------


def test_training_is_deterministic_and_round_trips(tiny_data, tmp_path):
    train, _ = tiny_data
    model = ResNet(3, **TINY)
    sm = noise.isotropic_gaussian(train.image_shape, 0.25)
    kwargs = dict(noise=sm, steps=4, batch_size=8, learning_rate=1e-2, log_every=2)
    params, history = train_classifier(jax.random.key(0), model, train, **kwargs)
    again, _ = train_classifier(jax.random.key(0), model, train, **kwargs)
    other, _ = train_classifier(jax.random.key(1), model, train, **kwargs)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(other))
    )
    assert history.steps.tolist() == [2, 4] and np.all(np.isfinite(history.loss))
    assert history.clean_accuracy is None and history.noisy_accuracy is None

    path = tmp_path / "model.msgpack"
    save_classifier(path, model, params, input_shape=train.image_shape, metadata={"sigma": 0.25})
    loaded, loaded_params, meta = load_classifier(path)
    assert loaded == model and meta["extra"] == {"sigma": 0.25}
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded_params)):
        np.testing.assert_array_equal(a, b)
    assert classifier_apply_fn(loaded) is classifier_apply_fn(model)
    # same key, same checkpoint bytes
    save_classifier(tmp_path / "again.msgpack", model, again, input_shape=train.image_shape)
    assert path.read_bytes() == (tmp_path / "again.msgpack").read_bytes()


@pytest.mark.slow
def test_training_learns_the_synthetic_patterns_under_noise():
    train = synthetic_classification(jax.random.key(0), 256, image_size=16, num_classes=3)
    test = synthetic_classification(jax.random.key(0), 64, image_size=16, num_classes=3,
                                    split="test")  # fmt: skip
    sm = noise.isotropic_gaussian(train.image_shape, 0.25)
    model = ResNet(3, width=8, num_stages=2, num_groups=4)
    _, history = train_classifier(
        jax.random.key(0), model, train, noise=sm, steps=200, batch_size=32, eval_data=test,
        learning_rate=1e-2, log_every=50,
    )  # fmt: skip
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert history.clean_accuracy > 0.6 and history.noisy_accuracy > 0.6  # chance: 1/3


def test_training_noise_is_the_plugin_sampler(tiny_data):
    """The training step perturbs each example with the noise plug-in's own per-example sampler:
    evaluation under noise with the same key equals evaluating on the sampler's draws."""
    from lrsjax.training._classification import _noisy, _sampler

    train, _ = tiny_data
    sm = noise.isotropic_gaussian(train.image_shape, 0.5)
    key = jax.random.key(7)
    sampler, bound = _sampler(sm, train.image_shape)
    noisy = jax.jit(lambda k, x: _noisy(sampler, bound, k, x))(key, train.images[:4])
    keys = jax.random.split(key, 4)
    draw = jax.jit(jax.vmap(noise.sample_gaussian, in_axes=(0, 0, None)))
    expected = draw(keys, train.images[:4], jnp.full((8, 8), 0.5))
    np.testing.assert_allclose(noisy, expected, rtol=1e-6, atol=1e-6)
    residual = np.asarray(noisy) - train.images[:4]
    assert 0.4 < residual.std() < 0.6


def test_training_errors_name_the_argument(tiny_data):
    train, _ = tiny_data
    grid = noise.localized_gaussian(train.image_shape, (2, 2), 0.1, 0.5)
    with pytest.raises(ValueError, match="noise.*one smoothing group"):
        train_classifier(jax.random.key(0), ResNet(3, **TINY), train, noise=grid, steps=2)
    with pytest.raises(ValueError, match="model.num_classes"):
        train_classifier(jax.random.key(0), ResNet(4, **TINY), train, noise=None, steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        train_classifier(
            jax.random.key(0), ResNet(3, **TINY), train, noise=None, steps=2, batch_size=99
        )
    small = noise.isotropic_gaussian((3, 4, 4), 0.25)
    with pytest.raises(ValueError, match="image size"):
        train_classifier(jax.random.key(0), ResNet(3, **TINY), train, noise=small, steps=2)


def test_evaluate_classifier_counts_correct_predictions(tiny_data):
    _, test = tiny_data
    model = ResNet(3, **TINY)
    params = init_classifier_params(jax.random.key(0), model, test.image_shape)
    apply_fn = classifier_apply_fn(model)
    logits = jax.jit(jax.vmap(apply_fn, in_axes=(None, 0)))(params, test.images)
    predicted = np.argmax(logits, axis=-1)
    expected = np.mean(predicted == test.labels)
    assert evaluate_classifier(apply_fn, params, test, batch_size=4) == pytest.approx(expected)
    with pytest.raises(ValueError, match="key"):
        evaluate_classifier(apply_fn, params, test, noise=noise.isotropic_gaussian((3, 8, 8), 0.1))


# ----------------------------------------------------------------------------------------------
# the job (lrsjax-train / lrsjax-certify --task=classification)
# ----------------------------------------------------------------------------------------------


def test_job_flat_view_round_trips_and_validates():
    from lrsjax.pipelines import ClassificationJob

    job = ClassificationJob.tiny(sigma=0.5)
    assert job.sigma == job.smoothing.sigma == 0.5 and job.n0 == job.sampling.n0 == 8
    assert ClassificationJob.from_flat(job.flat()) == job
    assert job.validated() == job
    np.testing.assert_allclose(job.budgets, np.linspace(0.0, 1.0, 5))
    with pytest.raises(ValueError, match="data_dir.*cifar10"):
        job.replace(dataset="cifar10").validated()
    with pytest.raises(ValueError, match="dataset"):
        job.replace(dataset="imagenet").validated()
    with pytest.raises(ValueError, match="num_classes.*synthetic"):
        job.replace(num_classes=7).validated()
    with pytest.raises(ValueError, match="train_noise"):
        job.replace(train_noise="localized").validated()
    with pytest.raises(TypeError, match="grid"):
        ClassificationJob(grid=(3, 3))


def test_cli_flags_cover_the_job_and_training_lists_training_flags_only():
    from lrsjax.cli import _flags
    from lrsjax.pipelines import ClassificationJob

    fields = set(ClassificationJob().flat())
    assert (
        fields <= set(_flags.FLAGS) and "classification" in _flags.FLAGS["task"].parser.enum_values
    )
    training_flags = set(_flags.TRAINING_FLAGS_BY_TASK["classification"]) - {"task"}
    assert training_flags <= fields
    certification = {"checkpoint", "num_images", "n0", "n", "alpha", "batch_size", "overwrite"}
    assert not training_flags & certification
    assert {"num_stages", "blocks_per_stage", "sigma", "train_noise"} <= training_flags


def test_job_reads_cifar10_and_folders(tmp_path):
    from PIL import Image

    from lrsjax.pipelines._classification import ClassificationJob, load_data

    _write_cifar(tmp_path / "test_batch.bin", [1, 2, 3, 4])
    job = ClassificationJob(dataset="cifar10", data_dir=str(tmp_path), num_images=3)
    assert load_data(job, "test").labels.tolist() == [1, 2, 3]
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (9, 9), (40 * i, 0, 0)).save(tmp_path / split / name / f"{i}.png")
    job = ClassificationJob(dataset="folder", data_dir=str(tmp_path), image_size=8, num_images=2)
    test = load_data(job, "test")
    assert test.labels.tolist() == [0, 1] and test.images.shape == (2, 3, 8, 8)  # both classes


@pytest.mark.slow
def test_job_certifies_resumes_and_matches_certify_classifier(tmp_path):
    import json

    import lrsjax
    from lrsjax import results
    from lrsjax.pipelines import ClassificationJob, run_classification
    from lrsjax.pipelines._classification import STREAMS, load_data, model_path
    from lrsjax.pipelines._config import key_streams

    lines = []
    job = ClassificationJob.tiny(out_dir=str(tmp_path), num_images=2)
    run_dir = run_classification(job, log=lines.append, progress=False)
    first = (run_dir / "items" / "img00000.json").read_bytes()
    # raising num_images extends the run; finished items are not recomputed
    run_classification(job.replace(num_images=3), log=lines.append, progress=False)
    assert (run_dir / "items" / "img00000.json").read_bytes() == first
    assert any("2 of 3 images already done" in line for line in lines)
    assert any("reusing" in line for line in lines)

    # every record is certify_classifier on the item's key (one method: the first split key)
    model, params, _ = load_classifier(model_path(job))
    test = load_data(job.replace(num_images=3), "test")
    streams = key_streams(job.seed, STREAMS)
    radii, predictions = [], []
    for i in range(3):
        record = json.loads((run_dir / "items" / f"img{i:05d}.json").read_text())
        arrays = np.load(run_dir / "items" / f"img{i:05d}.npz")
        key = jax.random.split(streams.key("items", i), 1)[0]
        cert = lrsjax.certify_classifier(
            key, classifier_apply_fn(model), params, test.images[i],
            noise.isotropic_gaussian(test.image_shape, job.sigma), n0=job.n0, n=job.n,
            alpha=job.alpha, batch_size=job.batch_size,
        )  # fmt: skip
        assert arrays["radius"][0] == pytest.approx(cert.radius, rel=1e-12)
        assert bool(arrays["abstain"][0]) == bool(cert.abstain)
        if not cert.abstain:
            assert arrays["prediction"][0] == cert.prediction
        assert arrays["labels"][0] == test.labels[i]
        assert record["num_correct"] == int(cert.prediction == test.labels[i])
        radii.append(float(cert.radius))
        predictions.append(int(cert.prediction))

    summary = results.summarize(results.RunDir.existing(run_dir))
    method = summary["methods"]["cohen_gaussian"]
    assert method["acr_per_output"] == pytest.approx(
        results.exact_acr(predictions, radii, test.labels)
    )
    assert method["clean_accuracy"] == pytest.approx(np.mean(np.array(predictions) == test.labels))
    written = results.make_report([run_dir], tmp_path / "plots")
    assert any(path.name == "certified_accuracy.png" for path in map(pathlib.Path, written))


@pytest.mark.slow
def test_certify_classifier_example_runs(capsys):
    import argparse
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "certify_classifier.py"
    spec = importlib.util.spec_from_file_location("certify_classifier", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = argparse.Namespace(
        size=8, train_images=16, images=3, width=4, steps=3, batch_size=8, sigma=0.25, n0=8,
        n=32, alpha=0.01, seed=0,
    )  # fmt: skip
    cert, accuracy = example.main(args)
    assert cert.prediction.shape == (3,) and accuracy.shape == (5,)
    assert np.all(np.diff(accuracy) <= 0)  # certified accuracy never grows with the radius
    assert "ACR" in capsys.readouterr().out
