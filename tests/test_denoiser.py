"""Denoised smoothing: the DnCNN denoiser, compose, the denoiser losses, training against a frozen
classifier, and denoiser checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrsjax
from lrsjax import noise
from lrsjax.data import synthetic_classification
from lrsjax.models import (
    DnCNN,
    ResNet,
    UNet,
    classifier_apply_fn,
    compose,
    denoiser_apply_fn,
    dncnn_config,
    dncnn_from_config,
    init_classifier_params,
    init_denoiser_params,
    init_segmentation_params,
    segmentation_apply_fn,
)
from lrsjax.training import (
    denoising_mse,
    load_denoiser,
    save_denoiser,
    stability_cross_entropy,
    train_denoiser,
)

SHAPE = (3, 8, 8)
TINY_DNCNN = dict(channels=3, depth=3, features=4)


def _linear_classifier(params, x):
    """A cheap classifier for the fast tests: logits [3] = params [3, C*H*W] @ x."""
    return params @ x.reshape(-1)


@pytest.fixture(scope="module")
def tiny():
    data = synthetic_classification(jax.random.key(0), 8, image_size=8, num_classes=3)
    weights = jax.random.normal(jax.random.key(1), (3, int(np.prod(SHAPE))))
    return data, _linear_classifier, weights


@pytest.fixture(scope="module")
def tiny_resnet(tiny):
    classifier = ResNet(3, width=4, num_stages=1, num_groups=2)
    classifier_params = init_classifier_params(jax.random.key(1), classifier, SHAPE)
    return tiny[0], classifier_apply_fn(classifier), classifier_params


# ----------------------------------------------------------------------------------------------
# losses: the test vectors of docs/math.md, "Denoised smoothing"
# ----------------------------------------------------------------------------------------------


def test_denoising_mse_test_vector():
    clean = jnp.array([0.2, 0.4, 0.6, 0.8])
    denoised = jnp.array([0.25, 0.35, 0.6, 0.9])
    assert float(denoising_mse(denoised, clean)) == pytest.approx(0.00375, abs=1e-8)


def test_stability_cross_entropy_test_vector():
    clean_logits = jnp.array([0.1, 2.0, 0.3])  # target: class 1
    logits = jnp.array([0.5, 1.5, 0.2])
    value = float(stability_cross_entropy(logits, clean_logits))
    assert value == pytest.approx(0.49494696, abs=1e-6)
    # the target is the clean argmax: another clean winner changes the loss
    other = float(stability_cross_entropy(logits, jnp.array([3.0, 2.0, 0.3])))
    assert other == pytest.approx(0.49494696 + 1.0, abs=1e-6)
    # hard targets: no gradient through the clean logits
    grad = jax.grad(stability_cross_entropy, argnums=1)(logits, clean_logits)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [dict(norm=None, residual="subtract"), dict(norm="group", num_groups=2, residual="add")],
)
def test_dncnn_is_the_identity_at_initialisation(settings):
    model = DnCNN(**TINY_DNCNN, **settings)
    apply_fn = jax.jit(denoiser_apply_fn(model))
    z = 3.0 * jax.random.normal(jax.random.key(2), SHAPE)  # also outside [0, 1]
    params = init_denoiser_params(jax.random.key(0), model, SHAPE)
    out = apply_fn(params, z)
    assert out.shape == SHAPE and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), np.asarray(z))
    # the hidden layers are not zero: a nonzero last layer changes the output
    moved = jax.tree.map(lambda a: a, params)
    moved["params"]["output"]["kernel"] = jnp.ones_like(moved["params"]["output"]["kernel"])
    assert not np.array_equal(np.asarray(apply_fn(moved, z)), np.asarray(z))


def test_dncnn_config_round_trip_and_errors():
    model = DnCNN(channels=1, depth=4, features=6, norm="group", num_groups=3, residual="add")
    assert dncnn_from_config(dncnn_config(model)) == model
    assert denoiser_apply_fn(dncnn_from_config(dncnn_config(model))) is denoiser_apply_fn(model)
    a = init_denoiser_params(jax.random.key(5), model, (1, 4, 4))
    b = init_denoiser_params(jax.random.key(5), model, (1, 4, 4))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    with pytest.raises(ValueError, match="norm"):
        DnCNN(norm="batch")
    with pytest.raises(ValueError, match="depth"):
        DnCNN(depth=1)
    with pytest.raises(ValueError, match="does not describe a DnCNN"):
        dncnn_from_config({"channels": 3, "width": 2})
    with pytest.raises(ValueError, match="channels"):
        init_denoiser_params(jax.random.key(0), DnCNN(channels=3), (1, 4, 4))
    with pytest.raises(ValueError, match="one image"):
        jax.eval_shape(denoiser_apply_fn(model), a, jnp.zeros((2, 1, 4, 4)))


def test_compose_applies_the_classifier_to_the_denoised_image(tiny):
    _, classifier_apply, classifier_params = tiny
    shift = lambda params, x: x + params  # a denoiser with one parameter
    composed = compose(shift, classifier_apply)
    x = jax.random.uniform(jax.random.key(3), SHAPE)
    np.testing.assert_allclose(
        np.asarray(jax.jit(composed)((0.25, classifier_params), x)),
        np.asarray(jax.jit(classifier_apply)(classifier_params, x + 0.25)),
        rtol=1e-6,
    )
    assert compose(shift, classifier_apply) == composed  # one compiled kernel for both
    assert hash(compose(shift, classifier_apply)) == hash(composed)
    with pytest.raises(ValueError, match="denoiser_params, classifier_params"):
        composed(classifier_params, x)
    with pytest.raises(ValueError, match="classifier_apply"):
        compose(shift, None)


# ----------------------------------------------------------------------------------------------
# certification: the identity denoiser changes nothing
# ----------------------------------------------------------------------------------------------


def test_identity_denoiser_gives_the_classifiers_own_certificate(tiny):
    data, classifier_apply, classifier_params = tiny
    model = DnCNN(**TINY_DNCNN)
    denoiser_params = init_denoiser_params(jax.random.key(4), model, SHAPE)
    smoothing = noise.isotropic_gaussian(SHAPE, 0.25)
    settings = dict(n0=16, n=64, alpha=0.01, batch_size=32)
    x = data.images[:2]
    own = lrsjax.certify_classifier(
        jax.random.key(9), classifier_apply, classifier_params, x, smoothing, **settings
    )
    denoised = lrsjax.certify_classifier(
        jax.random.key(9),
        compose(denoiser_apply_fn(model), classifier_apply),
        (denoiser_params, classifier_params),
        x,
        smoothing,
        **settings,
    )
    np.testing.assert_array_equal(denoised.counts, own.counts)
    np.testing.assert_array_equal(denoised.prediction, own.prediction)
    np.testing.assert_array_equal(denoised.p_lower, own.p_lower)
    np.testing.assert_array_equal(denoised.radius, own.radius)


@pytest.mark.slow
def test_identity_denoiser_keeps_a_segmentation_certificate():
    unet = UNet(3, depth=1, base_width=4, num_groups=2)
    unet_params = init_segmentation_params(jax.random.key(0), unet, SHAPE)
    model = DnCNN(**TINY_DNCNN)
    denoiser_params = init_denoiser_params(jax.random.key(1), model, SHAPE)
    smoothing = noise.isotropic_gaussian(SHAPE, 0.25)
    x = jax.random.uniform(jax.random.key(2), SHAPE)
    settings = dict(n0=8, n=32, alpha=0.05, batch_size=16)
    own = lrsjax.certify(
        jax.random.key(3), segmentation_apply_fn(unet), unet_params, x, smoothing, **settings
    )
    denoised = lrsjax.certify(
        jax.random.key(3),
        compose(denoiser_apply_fn(model), segmentation_apply_fn(unet)),
        (denoiser_params, unet_params),
        x,
        smoothing,
        **settings,
    )
    np.testing.assert_array_equal(np.asarray(denoised.prediction), np.asarray(own.prediction))
    np.testing.assert_array_equal(np.asarray(denoised.p_lower), np.asarray(own.p_lower))


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


def _stability_loss(denoiser_params, model, classifier_apply, classifier_params, key, images):
    noisy = images + 0.25 * jax.random.normal(key, images.shape)
    denoised = jax.vmap(denoiser_apply_fn(model), in_axes=(None, 0))(denoiser_params, noisy)
    classify = jax.vmap(classifier_apply, in_axes=(None, 0))
    return stability_cross_entropy(
        classify(classifier_params, denoised), classify(classifier_params, images)
    )


@pytest.mark.slow
def test_gradients_flow_through_the_classifier_into_the_denoiser(tiny_resnet):
    data, classifier_apply, classifier_params = tiny_resnet
    model = DnCNN(**TINY_DNCNN)
    params = init_denoiser_params(jax.random.key(0), model, SHAPE)
    grads = jax.jit(jax.grad(_stability_loss), static_argnums=(1, 2))(
        params, model, classifier_apply, classifier_params, jax.random.key(1), data.images[:4]
    )
    # at the identity only the last layer's gradient is nonzero (the earlier ones are scaled by
    # its zero kernel); it is nonzero because the classifier's gradient reaches the denoiser
    assert float(jnp.max(jnp.abs(grads["params"]["output"]["kernel"]))) > 0


def test_train_denoiser_freezes_the_classifier_and_is_deterministic(tiny):
    data, classifier_apply, classifier_params = tiny
    before = jax.tree.map(np.array, classifier_params)
    model = DnCNN(**TINY_DNCNN)
    smoothing = noise.isotropic_gaussian(SHAPE, 0.25)
    settings = dict(noise=smoothing, loss="stability", steps=3, batch_size=4, log_every=1)
    a, history = train_denoiser(
        jax.random.key(7), model, classifier_apply, classifier_params, data, **settings
    )
    b, _ = train_denoiser(
        jax.random.key(7), model, classifier_apply, classifier_params, data, **settings
    )
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, classifier_params))
    # only the denoiser's variables are optimised and returned
    start = init_denoiser_params(jax.random.split(jax.random.key(7), 3)[0], model, SHAPE)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(start)
    # the stability loss reaches the denoiser only through the classifier
    assert not np.array_equal(a["params"]["output"]["kernel"], start["params"]["output"]["kernel"])
    assert history.steps.tolist() == [1, 2, 3] and np.all(np.isfinite(history.loss))
    c, _ = train_denoiser(
        jax.random.key(8), model, classifier_apply, classifier_params, data, **settings
    )
    assert not np.array_equal(a["params"]["output"]["kernel"], c["params"]["output"]["kernel"])


def test_train_denoiser_refuses_bad_settings(tiny):
    data, classifier_apply, classifier_params = tiny
    model = DnCNN(**TINY_DNCNN)
    smoothing = noise.isotropic_gaussian(SHAPE, 0.25)
    with pytest.raises(ValueError, match="loss"):
        train_denoiser(jax.random.key(0), model, None, None, data, noise=smoothing, loss="l1")
    with pytest.raises(ValueError, match="classifier_apply"):
        train_denoiser(
            jax.random.key(0), model, None, None, data, noise=smoothing, loss="stability"
        )
    with pytest.raises(ValueError, match="noise"):
        train_denoiser(jax.random.key(0), model, classifier_apply, classifier_params, data,
                       noise=None)  # fmt: skip
    with pytest.raises(ValueError, match=r"\[num_classes\] = \(3,\)"):
        train_denoiser(jax.random.key(0), model, classifier_apply, classifier_params[:2], data,
                       noise=smoothing, loss="classification")  # fmt: skip
    with pytest.raises(ValueError, match="batch_size"):
        train_denoiser(jax.random.key(0), model, None, None, data, noise=smoothing, batch_size=99)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "stability", "classification"])
def test_a_few_steps_lower_the_loss(tiny_resnet, loss):
    data, classifier_apply, classifier_params = tiny_resnet
    model = DnCNN(channels=3, depth=4, features=8)
    smoothing = noise.isotropic_gaussian(SHAPE, 0.25)
    _, history = train_denoiser(
        jax.random.key(0), model, classifier_apply, classifier_params, data, noise=smoothing,
        loss=loss, steps=60, batch_size=8, learning_rate=3e-3, warmup_steps=5, log_every=20,
    )  # fmt: skip
    assert history.loss[-1] < history.loss[0]


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------


def test_denoiser_checkpoint_round_trip(tmp_path):
    model = DnCNN(channels=1, depth=3, features=4, norm="group", num_groups=2)
    params = init_denoiser_params(jax.random.key(0), model, (1, 4, 4))
    params["params"]["output"]["bias"] = jnp.array([0.5])
    path = tmp_path / "denoiser.msgpack"
    save_denoiser(path, model, params, input_shape=(1, 4, 4), metadata={"sigma": 0.25})
    loaded, loaded_params, meta = load_denoiser(path)
    assert loaded == model and meta["extra"] == {"sigma": 0.25}
    jax.tree.map(np.testing.assert_array_equal, params, loaded_params)
    with pytest.raises(ValueError, match="DnCNN"):
        save_denoiser(path, UNet(2, depth=1), params, input_shape=(1, 4, 4))


# ----------------------------------------------------------------------------------------------
# the classification job with a denoiser (lrsjax-train / lrsjax-certify --denoiser)
# ----------------------------------------------------------------------------------------------


def _job(tmp_path, **settings):
    from lrsjax.pipelines import ClassificationJob

    tiny = dict(train_noise="none", denoiser_steps=3, denoiser_depth=3, denoiser_features=4)
    return ClassificationJob.tiny(out_dir=str(tmp_path), **{**tiny, **settings})


def test_job_trains_reuses_and_refuses_denoisers(tmp_path):
    from lrsjax import pipelines
    from lrsjax.pipelines import _classification

    job = _job(tmp_path, denoiser=True)
    lines = []
    paths = pipelines.train_classification_model(job, log=lines.append, progress=False)
    assert [p.name for p in paths] == ["resnet_none.msgpack", "dncnn_sigma0.25_stability.msgpack"]
    denoiser, dparams, meta = load_denoiser(paths[1])
    assert meta["extra"]["loss"] == "stability" and meta["extra"]["sigma"] == 0.25
    assert meta["extra"]["job"]["frozen_classifier"] == str(paths[0])
    assert denoiser.depth == 3 and denoiser.features == 4
    lines.clear()
    pipelines.train_classification_model(job, log=lines.append, progress=False)
    assert sum(line.startswith("reusing") for line in lines) == 2, lines
    with pytest.raises(ValueError, match=r"denoiser_steps=4 \(saved: 3\)"):
        pipelines.train_classification_model(job.replace(denoiser_steps=4), log=print)
    # the same key gives the same denoiser
    again = _job(tmp_path / "again", denoiser=True)
    pipelines.train_classification_model(again, log=print, progress=False)
    _, again_params, _ = load_denoiser(_classification._denoised.denoiser_path(again))
    jax.tree.map(np.testing.assert_array_equal, again_params, dparams)


def test_identity_denoiser_in_the_job_certifies_exactly_the_classifier(tmp_path):
    # a fresh DnCNN is the identity: the denoised run's records equal the plain run's
    from lrsjax import pipelines, results

    plain = _job(tmp_path / "plain")
    pipelines.train_classification_model(plain, log=print, progress=False)
    classifier = str(tmp_path / "plain" / "models" / "resnet_none.msgpack")
    identity = DnCNN(**TINY_DNCNN)
    path = tmp_path / "identity.msgpack"
    save_denoiser(
        path, identity, init_denoiser_params(jax.random.key(0), identity, (3, 8, 8)),
        input_shape=(3, 8, 8),
    )  # fmt: skip
    runs = [
        pipelines.run_classification(plain, log=lambda _: None, progress=False),
        pipelines.run_classification(
            _job(tmp_path / "denoised", denoiser=True, classifier=classifier,
                 denoiser_checkpoint=str(path)),
            log=lambda _: None, progress=False,
        ),
    ]  # fmt: skip
    loaded = [results.RunDir.existing(run) for run in runs]
    for item in ("img00000", "img00001", "img00002"):
        (a, arrays_a), (b, arrays_b) = (run.load_item(item) for run in loaded)
        ma, mb = a["methods"]["cohen_gaussian"], b["methods"]["cohen_gaussian"]
        assert mb["extra"].pop("denoiser") == str(path)
        assert ma == mb
        for name in arrays_a:
            np.testing.assert_array_equal(arrays_a[name], arrays_b[name])


def test_job_denoiser_settings_are_checked_and_stay_out_of_old_identities(tmp_path):
    from lrsjax.pipelines._classification import run_config

    job = _job(tmp_path)
    assert not any(name.startswith("denoiser") for name in run_config(job))
    assert run_config(job.replace(denoiser=True))["denoiser_loss"] == "stability"
    with pytest.raises(ValueError, match="classifier.*only with --denoiser"):
        job.replace(classifier="c.msgpack").validated()
    with pytest.raises(ValueError, match="classifier.*--checkpoint"):
        job.replace(denoiser=True, classifier="c.msgpack", checkpoint="d.msgpack").validated()
    with pytest.raises(ValueError, match="denoiser_loss"):
        job.replace(denoiser=True, denoiser_loss="l1").validated()
    with pytest.raises(ValueError, match="denoiser_depth"):
        job.replace(denoiser=True, denoiser_depth=1).validated()
