"""Image classification: synthetic data and loaders, the ResNet, noise-augmented training and
classifier checkpoints."""

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
    assert a.labels.dtype == np.int32 and a.num_classes == 4 and len(a.class_names) == 4
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


def test_training_is_deterministic_learns_and_round_trips(tiny_data, tmp_path):
    train, test = tiny_data
    model = ResNet(3, **TINY)
    sm = noise.isotropic_gaussian(train.image_shape, 0.25)
    kwargs = dict(noise=sm, steps=6, batch_size=8, learning_rate=1e-2, log_every=3)
    params, history = train_classifier(jax.random.key(0), model, train, eval_data=test, **kwargs)
    again, _ = train_classifier(jax.random.key(0), model, train, **kwargs)
    other, _ = train_classifier(jax.random.key(1), model, train, **kwargs)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(other))
    )
    assert history.steps.tolist() == [3, 6] and np.all(np.isfinite(history.loss))
    assert 0.0 <= history.clean_accuracy <= 1.0 and 0.0 <= history.noisy_accuracy <= 1.0

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


def test_training_noise_is_the_plugin_sampler(tiny_data):
    """The training step perturbs each example with the noise plug-in's own per-example sampler:
    evaluation under noise with the same key equals evaluating on the sampler's draws."""
    from lrsjax.training._classification import _noisy, _sampler

    train, _ = tiny_data
    sm = noise.isotropic_gaussian(train.image_shape, 0.5)
    key = jax.random.key(7)
    sampler = _sampler(sm, train.image_shape)
    noisy = jax.jit(lambda k, x: _noisy(sampler, k, x))(key, train.images[:4])
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
