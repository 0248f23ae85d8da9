"""The strictly local segmentation model: its logits see only their receptive field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsjax import models, noise, training
from lrsjax.data import synthetic_segmentation


def _model_and_params(**kwargs):
    model = models.LocalCNN(num_classes=3, width=4, **kwargs)
    params = models.init_segmentation_params(jax.random.PRNGKey(0), model, (3, 24, 28))
    return model, params, models.segmentation_apply_fn(model)


def test_receptive_radius_is_the_sum_of_the_dilated_half_kernels():
    assert models.LocalCNN(3, dilations=(1, 2, 4, 1)).receptive_radius == 8
    assert models.LocalCNN(3, dilations=(1,), kernel_size=5).receptive_radius == 2


@pytest.mark.parametrize("dilations", [(1, 2), (1, 2, 1)])
def test_logits_ignore_inputs_outside_the_receptive_field(dilations):
    model, params, apply_fn = _model_and_params(dilations=dilations)
    r = model.receptive_radius
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 24, 28))
    base = np.asarray(apply_fn(params, x))
    row, col = 11, 13
    window = np.zeros((24, 28), bool)
    window[row - r : row + r + 1, col - r : col + r + 1] = True
    outside = jax.random.uniform(jax.random.PRNGKey(2), (3, 24, 28))
    changed = np.asarray(apply_fn(params, jnp.where(window, x, outside)))
    np.testing.assert_array_equal(changed[row, col], base[row, col])  # exactly, not approximately
    # ... while a change on the window's edge does reach the pixel.
    edge = x.at[:, row - r, col].set(1.0 - x[:, row - r, col])
    assert not np.array_equal(np.asarray(apply_fn(params, edge))[row, col], base[row, col])


def test_masked_localized_smoothing_never_changes_a_local_models_cell():
    # With cells wider than the receptive field, zeroing the cells at distance >= 2
    # (mask_distance 2) leaves the logits of the smoothed cell unchanged: the certificate's zero
    # weights are honest.
    model, params, apply_fn = _model_and_params(dilations=(1, 1))
    x = jax.random.uniform(jax.random.PRNGKey(3), (3, 24, 28))
    cells = noise.grid_cells((24, 28), (3, 4)).cell_id
    stds = noise.localized_stds((3, 4), 0.1, 0.5, mask_distance=2)
    group = 5  # cell (1, 1)
    masked = jnp.where(jnp.isinf(jnp.asarray(stds[group]))[cells], 0.0, x)
    inside = cells == group
    np.testing.assert_array_equal(
        np.asarray(apply_fn(params, masked))[inside], np.asarray(apply_fn(params, x))[inside]
    )


@pytest.mark.slow  # the fast smoke test of benchmarks/strength.py trains one too
def test_a_local_model_trains_with_localized_noise():
    train = synthetic_segmentation(jax.random.PRNGKey(4), 4, image_shape=(16, 24), num_classes=3)
    model = models.LocalCNN(num_classes=3, width=4, dilations=(1, 2))
    params, history = training.train_segmentation(
        jax.random.PRNGKey(5), model, train, steps=4, batch_size=2, noise="localized",
        grid_shape=(2, 2), mask_distance=1, log_every=2,
    )  # fmt: skip
    assert np.all(np.isfinite(history.loss))
    assert models.segmentation_apply_fn(model)(params, train.images[0]).shape == (16, 24, 3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dilations": ()}, "dilations"),
        ({"dilations": (1, 0)}, "dilations"),
        ({"dilations": [1, 2]}, "dilations"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"width": 0}, "width"),
        ({"input_std": 0.0}, "input_std"),
    ],
)
def test_local_model_rejects_bad_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        models.LocalCNN(num_classes=3, **kwargs)
