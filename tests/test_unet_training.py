"""U-Net shapes and apply_fn contract, noise-augmented training, evaluation and checkpoints."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsjax.data import IGNORE_LABEL, SegmentationData, synthetic_segmentation
from lrsjax.models import UNet, init_segmentation_params, segmentation_apply_fn
from lrsjax.noise import grid_cells, localized_stds
from lrsjax.training import (
    evaluate_segmentation,
    load_segmentation_model,
    make_noisy_loss,
    noisy_batch,
    pixel_cells,
    save_segmentation_model,
    segmentation_loss,
    segmentation_noise,
    smoothadv,
    train_segmentation,
)

TINY = dict(depth=1, base_width=4, num_groups=2)


@pytest.fixture(scope="module")
def tiny_data():
    train = synthetic_segmentation(jax.random.key(0), 16, image_shape=(16, 16), num_classes=3)
    test = synthetic_segmentation(
        jax.random.key(0), 4, image_shape=(16, 16), num_classes=3, split="test"
    )
    return train, test


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, upsample",
    [
        ((3, 17, 23), "transpose"),
        ((3, 5, 3), "resize"),
        ((1, 64, 64), "resize"),
        ((3, 33, 8), "transpose"),
    ],
)
def test_unet_output_shapes_for_odd_sizes(shape, upsample):
    model = UNet(7, depth=3, base_width=8, upsample=upsample)
    params = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *shape[1:], shape[0]), jnp.float32)
    )
    out = jax.eval_shape(
        segmentation_apply_fn(model), params, jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    assert out.shape == (*shape[1:], 7) and out.dtype == jnp.float32


def test_apply_fn_contract_matches_batched_model():
    model = UNet(3, **TINY)
    params = init_segmentation_params(jax.random.key(1), model, (3, 10, 13))
    apply_fn = segmentation_apply_fn(model)
    x = np.random.default_rng(2).uniform(size=(2, 3, 10, 13)).astype(np.float32)
    batched = jax.jit(jax.vmap(apply_fn, in_axes=(None, 0)))(params, x)
    assert batched.shape == (2, 10, 13, 3)
    direct = jax.jit(model.apply)(params, jnp.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_allclose(batched, direct, rtol=1e-5, atol=1e-5)
    # deterministic init; different keys differ
    again = init_segmentation_params(jax.random.key(1), model, (3, 10, 13))
    other = init_segmentation_params(jax.random.key(3), model, (3, 10, 13))
    leaves = jax.tree.leaves(params)
    assert all(np.array_equal(a, b) for a, b in zip(leaves, jax.tree.leaves(again)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves, jax.tree.leaves(other)))
    with pytest.raises(ValueError, match="one image"):
        apply_fn(params, x)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=3, upsample="nearest"), "upsample"),
        (dict(num_classes=3, base_width=0), "base_width"),
        (dict(num_classes=3, input_std=0.0), "input_std"),
    ],
)
def test_unet_rejects_bad_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        UNet(**kwargs)


# ----------------------------------------------------------------------------------------------
# noise and loss
# ----------------------------------------------------------------------------------------------


def test_noisy_batch_uses_the_group_row_and_zeroes_masked_cells():
    grid = (2, 3)
    cells_hw = grid_cells((40, 60), grid).cell_id
    stds = localized_stds(grid, 0.1, 0.6, mask_distance=2)
    images = np.full((6, 3, 40, 60), 0.5, np.float32)
    cells = np.broadcast_to(cells_hw, (6, 40, 60)).copy()
    group = np.arange(6, dtype=np.int32)
    noisy_fn = jax.jit(noisy_batch)
    noisy = np.asarray(noisy_fn(jax.random.key(0), images, cells, stds, group))
    for b in range(6):
        for j in range(6):
            values = noisy[b][:, cells_hw == j]
            if np.isinf(stds[b, j]):
                assert np.all(values == 0.0)
            else:
                assert abs(values.mean() - 0.5) < 0.15
                assert abs(values.std() / stds[b, j] - 1) < 0.15, (b, j)
    # the cell -1 marks padding: left clean
    padded = cells.copy()
    padded[:, :, 50:] = -1
    noisy = np.asarray(noisy_fn(jax.random.key(1), images, padded, stds, group))
    assert np.all(noisy[:, :, :, 50:] == 0.5)


def test_segmentation_loss_counts_only_masked_valid_pixels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4, 5)).astype(np.int32)
    labels[0, 0, :] = IGNORE_LABEL
    mask = np.zeros((2, 4, 5), bool)
    mask[:, 1:3, 2:] = True
    mask[0, 0, 0] = True
    loss_fn = jax.jit(segmentation_loss)
    grad = jax.jit(jax.grad(segmentation_loss))(logits, labels, mask)
    counted = np.asarray(mask & (labels != IGNORE_LABEL))
    assert np.all(np.asarray(grad)[~counted] == 0)
    assert np.all(np.abs(np.asarray(grad)[counted]).sum(-1) > 0)
    # equals the mean of -log softmax at the label over the counted pixels
    z = np.asarray(logits, np.float64)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, np.asarray(labels % 3)[..., None], -1)[..., 0]
    expected = -picked[counted].mean()
    np.testing.assert_allclose(loss_fn(logits, labels, mask), expected, rtol=1e-5)
    assert float(loss_fn(logits, labels, np.zeros_like(mask))) == 0.0


class _PerPixel(nn.Module):
    """A model whose logits at a pixel depend on the input at that pixel only."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.num_classes, (1, 1))(x)


def test_localized_training_stitches_every_cell_from_its_own_group(tiny_data):
    # group k: its own cell at std 1e-5, every other cell masked (replaced by 0). Stitching each
    # cell's outputs from its own group's sample gives (almost) the clean loss on every pixel;
    # taking any other group's sample for a cell would feed the model zeros there.
    train, _ = tiny_data
    model = _PerPixel()
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    params = jax.tree.map(lambda p: p * 20.0, params)  # confident logits: zeros hurt
    cells = jnp.asarray(pixel_cells(train, (2, 2))[:8])
    images, labels = train.images[:8], train.labels[:8]
    local = segmentation_noise(
        "localized", grid_shape=(2, 2), std_min=1e-5, std_max=1e-5, mask_distance=1
    )
    assert np.isinf(local.stds[0, 1]) and local.stds[0, 0] == pytest.approx(1e-5)
    key = jax.random.key(7)
    clean = jax.jit(make_noisy_loss(model, segmentation_noise("none")))
    stitched = jax.jit(make_noisy_loss(model, local))
    reference = float(clean(params, key, images, labels, cells))
    np.testing.assert_allclose(stitched(params, key, images, labels, cells), reference, rtol=1e-3)
    zeros = float(clean(params, key, jnp.zeros_like(images), labels, cells))
    assert abs(zeros - reference) > 0.1 * reference  # the test can tell a wrong stitch apart


def test_localized_training_counts_every_labelled_pixel(tiny_data):
    train, _ = tiny_data
    model = UNet(3, **TINY)
    params = init_segmentation_params(jax.random.key(0), model, (3, 16, 16))
    noise = segmentation_noise("localized", grid_shape=(2, 2), std_min=0.1, std_max=0.4)
    loss_fn = jax.jit(make_noisy_loss(model, noise))
    cells = jnp.asarray(pixel_cells(train, (2, 2))[:8])
    images, labels = train.images[:8], np.asarray(train.labels[:8])
    key = jax.random.key(7)
    loss = float(loss_fn(params, key, images, labels, cells))
    np.testing.assert_array_equal(loss_fn(params, key, images, labels, cells), loss)  # pure
    for cell in range(4):  # relabelling any one cell changes the loss
        inside = np.asarray(cells) == cell
        changed = np.where(inside, (labels + 1) % 3, labels)
        assert abs(float(loss_fn(params, key, images, changed, cells)) - loss) > 1e-4, cell


@pytest.mark.parametrize("loss", ["consistency", "smoothadv"])
def test_segmentation_losses_train_and_are_reproducible(tiny_data, loss):
    train, _ = tiny_data
    model = UNet(3, **TINY)
    settings = dict(TRAIN, steps=20, batch_size=4, loss=loss)
    params, history = train_segmentation(jax.random.key(2), model, train, **settings)
    assert np.all(np.isfinite(history.loss))
    assert history.loss[-1] < history.loss[0], history.loss
    again, _ = train_segmentation(jax.random.key(2), model, train, **settings)
    jax.tree.map(np.testing.assert_array_equal, again, params)


def test_segmentation_smoothadv_attacks_the_stitched_prediction(tiny_data):
    # one perturbation per image for all outputs: the adversarial loss is above the loss at the
    # clean image under the same noise draws
    train, _ = tiny_data
    model = UNet(3, **TINY)
    params = init_segmentation_params(jax.random.key(0), model, (3, 16, 16))
    noise = segmentation_noise("localized", grid_shape=(2, 2), std_min=0.1, std_max=0.4)
    cells = jnp.asarray(pixel_cells(train, (2, 2))[:4])
    images, labels = train.images[:4], train.labels[:4]
    key = jax.random.key(3)
    plain = jax.jit(make_noisy_loss(model, noise, smoothadv(eps=0.0, steps=1, num_copies=2)))
    attacked = jax.jit(make_noisy_loss(model, noise, smoothadv(eps=2.0, steps=4, num_copies=2)))
    assert float(attacked(params, key, images, labels, cells)) > float(
        plain(params, key, images, labels, cells)
    )


def test_segmentation_losses_need_noise():
    model = UNet(3, **TINY)
    with pytest.raises(ValueError, match="loss.*noise"):
        make_noisy_loss(model, segmentation_noise("none"), "consistency")


def test_segmentation_noise_validation():
    assert segmentation_noise("none").stds.shape == (1, 1)
    np.testing.assert_allclose(segmentation_noise("isotropic", sigma=0.3).stds, [[0.3]])
    assert segmentation_noise("localized", grid_shape=(3, 5)).stds.shape == (15, 15)
    with pytest.raises(ValueError, match="noise"):
        segmentation_noise("gaussian")
    with pytest.raises(ValueError, match="sigma|std_min"):
        segmentation_noise("isotropic", sigma=0.0)


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------


def _oracle_data():
    """Images whose channel 0 encodes the label: an oracle apply_fn can read it back."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (3, 6, 7)).astype(np.int32)
    labels[0, 0, :] = IGNORE_LABEL
    images = np.zeros((3, 3, 6, 7), np.float32)
    images[:, 0] = np.where(labels == IGNORE_LABEL, 0, labels) / 2.0
    sizes = np.array([[6, 7], [6, 7], [4, 5]], np.int32)
    labels[2, 4:, :] = IGNORE_LABEL
    labels[2, :, 5:] = IGNORE_LABEL
    return SegmentationData(images, labels, sizes, 3, ("a", "b", "c"), "oracle", ("0", "1", "2"))


def _oracle_apply(params, x):
    cls = jnp.round(x[0] * 2.0)
    return -((cls[..., None] - jnp.arange(3.0)) ** 2) * params


def test_evaluate_matches_brute_force():
    data = _oracle_data()
    result = evaluate_segmentation(_oracle_apply, 1.0, data, batch_size=2)
    assert result.pixel_accuracy == 1.0 and result.mean_iou == 1.0
    valid = data.labels != IGNORE_LABEL
    np.testing.assert_array_equal(
        np.diag(result.confusion), np.bincount(data.labels[valid], minlength=3)
    )
    # a constant predictor: accuracy = frequency of class 0 among counted pixels
    constant = lambda params, x: jnp.zeros(x.shape[1:] + (3,)).at[..., 0].set(1.0)
    result = evaluate_segmentation(constant, None, data, batch_size=3)
    assert result.pixel_accuracy == pytest.approx(np.mean(data.labels[valid] == 0))
    assert result.confusion[1:].sum() == 0


def test_localized_evaluation_stitches_each_cells_own_prediction():
    """With mask_distance=1 every group sees only its own cell; a model that predicts class 1
    exactly where its input is 0 (masked) must then never predict 1 after stitching."""
    data = _oracle_data()
    data = data._replace(images=data.images[:2], labels=data.labels[:2], sizes=data.sizes[:2])

    def zero_detector(params, x):
        is_zero = jnp.all(x == 0, axis=0)
        return jnp.stack([~is_zero, is_zero, jnp.zeros_like(is_zero)], -1).astype(jnp.float32)

    kwargs = dict(grid_shape=(2, 2), std_min=0.2, std_max=0.4, mask_distance=1, batch_size=2)
    result = evaluate_segmentation(
        zero_detector, None, data, noise="localized", key=jax.random.key(0), **kwargs
    )
    assert result.confusion[1].sum() == 0 and result.confusion[0].sum() > 0
    with pytest.raises(ValueError, match="key"):
        evaluate_segmentation(zero_detector, None, data, noise="localized", **kwargs)


# ----------------------------------------------------------------------------------------------
# training and checkpoints
# ----------------------------------------------------------------------------------------------

TRAIN = dict(
    steps=40,
    batch_size=8,
    learning_rate=1e-2,
    noise="localized",
    grid_shape=(2, 2),
    std_min=0.1,
    std_max=0.4,
    log_every=10,
)


@pytest.fixture(scope="module")
def trained(tiny_data):
    train, test = tiny_data
    model = UNet(3, **TINY)
    params, history = train_segmentation(
        jax.random.key(1), model, train, eval_data=test, eval_batch_size=4, **TRAIN
    )
    return model, params, history


def test_training_lowers_the_loss_and_evaluates(trained, tiny_data):
    _, test = tiny_data
    _, _, history = trained
    np.testing.assert_array_equal(history.steps, [10, 20, 30, 40])
    assert history.loss[-1] < 0.85 * history.loss[0], history.loss
    assert np.all(np.diff(history.seconds) >= 0)
    assert history.clean_eval.noise == "none" and history.noisy_eval.noise == "localized"
    for ev in (history.clean_eval, history.noisy_eval):
        assert ev.confusion.sum() == test.labels.size
        assert 0.0 <= ev.mean_iou <= 1.0 and 0.0 <= ev.pixel_accuracy <= 1.0
        assert ev.pixel_accuracy == pytest.approx(np.trace(ev.confusion) / test.labels.size)


def test_training_is_deterministic_for_a_key(trained, tiny_data):
    train, _ = tiny_data
    model, params, history = trained
    again, again_history = train_segmentation(jax.random.key(1), model, train, **TRAIN)
    np.testing.assert_array_equal(again_history.loss, history.loss)
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again))
    )
    assert again_history.clean_eval is None and again_history.noisy_eval is None


def test_training_with_a_progress_bar_gives_the_same_parameters(
    trained, tiny_data, monkeypatch, capsys
):
    train, _ = tiny_data
    model, params, history = trained
    monkeypatch.setenv("LRSJAX_PROGRESS", "1")  # draw the bar although stderr is captured
    again, again_history = train_segmentation(
        jax.random.key(1), model, train, progress=True, **TRAIN
    )
    np.testing.assert_array_equal(again_history.loss, history.loss)
    jax.tree.map(np.testing.assert_array_equal, again, params)
    captured = capsys.readouterr()
    assert "train U-Net (localized noise, noise loss)" in captured.err
    assert f"{TRAIN['steps']}/{TRAIN['steps']}" in captured.err
    assert "compile=" in captured.err and "loss=" in captured.err
    assert captured.out == ""


def test_training_validates_arguments(tiny_data):
    train, _ = tiny_data
    model = UNet(3, **TINY)
    with pytest.raises(ValueError, match="batch_size"):
        train_segmentation(jax.random.key(0), model, train, steps=2, batch_size=99)
    with pytest.raises(ValueError, match="num_classes"):
        train_segmentation(jax.random.key(0), UNet(4, **TINY), train, steps=2, batch_size=4)
    with pytest.raises(ValueError, match="noise"):
        train_segmentation(jax.random.key(0), model, train, steps=2, batch_size=4, noise="x")
    with pytest.raises(ValueError, match="key"):
        train_segmentation(0, model, train, steps=2, batch_size=4)
    with pytest.raises(ValueError, match="warmup_steps"):
        train_segmentation(jax.random.key(0), model, train, steps=2, batch_size=4, warmup_steps=2)


def test_checkpoint_round_trip_rebuilds_the_model(trained, tiny_data, tmp_path):
    _, test = tiny_data
    model, params, _ = trained
    path = tmp_path / "unet.msgpack"
    save_segmentation_model(path, model, params, input_shape=(3, 16, 16), metadata={"sigma": 0.25})
    loaded_model, loaded_params, meta = load_segmentation_model(path)
    assert loaded_model == model
    assert meta["extra"] == {"sigma": 0.25} and meta["input_shape"] == [3, 16, 16]
    apply = jax.jit(segmentation_apply_fn(model))
    assert segmentation_apply_fn(loaded_model) is segmentation_apply_fn(model)
    x = jnp.asarray(test.images[0])
    np.testing.assert_array_equal(apply(loaded_params, x), apply(params, x))
    with pytest.raises(ValueError, match="shape"):
        save_segmentation_model(path, UNet(3, depth=1, base_width=8), params, input_shape=(3, 8, 8))
    with pytest.raises(FileNotFoundError):
        load_segmentation_model(tmp_path / "missing.msgpack")


@pytest.mark.slow
def test_small_unet_learns_the_default_synthetic_data():
    """End to end at the default size (64x64): a small U-Net trained with sigma=0.25 noise for
    400 steps beats the majority class clearly, clean and under noise (about 2 min on a CPU)."""
    key = jax.random.key(0)
    train = synthetic_segmentation(key, 300)
    test = synthetic_segmentation(key, 60, split="test")
    model = UNet(5, base_width=8)
    _, history = train_segmentation(
        jax.random.key(1), model, train, steps=400, batch_size=16, sigma=0.25, eval_data=test
    )
    majority = np.mean(test.labels == 0)
    assert history.clean_eval.pixel_accuracy > majority + 0.15
    assert history.noisy_eval.pixel_accuracy > majority + 0.1
    assert history.clean_eval.mean_iou > 0.5


def test_apply_fn_rank_error_is_clear_under_jit():
    # the check must not read the traced values of x (a tracer cannot be shown)
    model = UNet(num_classes=3, depth=1, base_width=4)
    params = init_segmentation_params(jax.random.key(0), model, (3, 8, 8))
    with pytest.raises(ValueError, match=r"one image \[C, H, W\].*\(8, 8\)"):
        jax.jit(segmentation_apply_fn(model))(params, jnp.zeros((8, 8)))
