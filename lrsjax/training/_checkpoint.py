"""Checkpoints without pickle: flax msgpack bytes plus a JSON side file, written atomically."""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from lrsjax import results


def save_checkpoint(path, params, metadata: dict | None = None) -> None:
    """Writes `params` (any pytree of arrays) to `path` and `metadata` to `path` + '.json'.

    Both files are written atomically; the JSON goes last, so its presence marks a complete
    checkpoint.
    """
    path = pathlib.Path(path)
    results.write_bytes(path, serialization.to_bytes(params))
    results.write_json(path.with_name(path.name + ".json"), dict(metadata or {}))


def load_checkpoint(path, target):
    """Reads a checkpoint written by `save_checkpoint` into the structure of `target`.

    Args:
      path: the checkpoint file.
      target: a pytree with the same structure (e.g. freshly initialised params).
    Returns:
      (params, metadata).
    """
    path = pathlib.Path(path)
    meta_path = path.with_name(path.name + ".json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(
            f"`path` {str(path)!r} is not a complete checkpoint (need {path.name} and "
            f"{meta_path.name}). Train first or point to an existing checkpoint."
        )
    metadata = read_metadata(meta_path)
    try:
        params = serialization.from_bytes(target, path.read_bytes())
    except Exception as err:  # msgpack and flax raise many kinds on corrupt or foreign bytes
        raise ValueError(
            f"`path` {str(path)!r} cannot be read as a checkpoint of this model "
            f"({type(err).__name__}: {err}). The file is corrupt or truncated, or holds another "
            "model's parameters: save the checkpoint again."
        ) from err
    return params, metadata


def read_metadata(meta_path) -> dict:
    """The JSON side file of a checkpoint as a dict; a ValueError naming the file otherwise."""
    meta_path = pathlib.Path(meta_path)
    try:
        metadata = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"The checkpoint metadata {str(meta_path)!r} is not valid JSON ({err}). The file is "
            "corrupt or truncated: save the checkpoint again."
        ) from err
    if not isinstance(metadata, dict):
        raise ValueError(
            f"The checkpoint metadata {str(meta_path)!r} must hold a JSON object; got a "
            f"{type(metadata).__name__}. Save the checkpoint again."
        )
    return metadata


def checkpoint_exists(path) -> bool:
    path = pathlib.Path(path)
    return path.is_file() and path.with_name(path.name + ".json").is_file()


class ImageModelFormat(NamedTuple):
    """How one family of image models is saved: the format tag, the model classes it holds
    ({class name: (class, from_config, to_config)}), and names for messages."""

    tag: str
    models: dict
    kind: str  # e.g. "segmentation", for messages
    saver: str  # the public save function, for messages
    init_hint: str  # how to get matching params, for messages


def save_image_model(fmt: ImageModelFormat, path, model, params, *, input_shape, metadata=None):
    """Saves params and everything needed to rebuild an image model (msgpack + JSON, no pickle).

    The metadata holds the format tag, the model class and config, the input shape (C, H, W)
    and `metadata` under "extra".
    """
    from lrsjax import _checks

    name = type(model).__name__
    if name not in fmt.models or not isinstance(model, fmt.models[name][0]):
        _checks.fail("model", name, f"must be one of {tuple(fmt.models)}", "")
    shape = tuple(input_shape)
    if len(shape) != 3:
        _checks.fail("input_shape", input_shape, "must be (C, H, W)")
    shape = tuple(_checks.positive_int("input_shape", v) for v in shape)
    check_param_shapes(fmt, params, image_param_template(model, shape), shape)
    meta = {
        "format": fmt.tag,
        "model_class": name,
        "model_config": fmt.models[name][2](model),
        "input_shape": list(shape),
        "extra": dict(metadata or {}),
    }
    save_checkpoint(path, jax.device_get(params), meta)


def load_image_model(fmt: ImageModelFormat, path):
    """Rebuilds an image model saved by `save_image_model` from the checkpoint alone.

    Returns (model, params, metadata); ValueError/FileNotFoundError naming the file otherwise.
    """
    meta_path = pathlib.Path(str(path) + ".json")
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"`path` {str(path)!r} has no metadata file {str(meta_path)!r}; it is not a complete "
            f"checkpoint written by {fmt.saver}. Train first or point to another checkpoint."
        )
    meta = read_metadata(meta_path)
    if meta.get("format") != fmt.tag or meta.get("model_class") not in fmt.models:
        raise ValueError(
            f"{str(meta_path)!r} is not a lrsjax {fmt.kind} checkpoint (format "
            f"{meta.get('format')!r}, model {meta.get('model_class')!r}); expected format "
            f"{fmt.tag!r} with a model in {tuple(fmt.models)}."
        )
    try:
        model = fmt.models[meta["model_class"]][1](meta["model_config"])
        input_shape = tuple(int(v) for v in meta["input_shape"])
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape {input_shape} is not [C, H, W]")
        template = image_param_template(model, input_shape)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"The checkpoint metadata {str(meta_path)!r} does not describe a model "
            f"({type(err).__name__}: {err}): its `model_config` or `input_shape` is missing or "
            f"malformed. Save the checkpoint again with {fmt.saver}."
        ) from err
    params, meta = load_checkpoint(path, template)
    check_param_shapes(fmt, params, template, input_shape)
    return model, jax.tree.map(jnp.asarray, params), meta


def image_param_template(model, input_shape: tuple):
    """The abstract variables of a linen image model taking NHWC batches of `input_shape`."""
    channels, height, width = input_shape
    dummy = jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), dummy)


def check_param_shapes(fmt: ImageModelFormat, params, template, input_shape) -> None:
    """ValueError unless `params` have the structure and shapes of `template`."""
    if jax.tree_util.tree_structure(template) != jax.tree_util.tree_structure(params):
        raise ValueError(
            "`params` do not have the structure of the model's variables; pass the variables of "
            f"this model (e.g. from {fmt.init_hint})."
        )
    for want, have in zip(jax.tree.leaves(template), jax.tree.leaves(params)):
        if tuple(want.shape) != tuple(np.shape(have)):
            raise ValueError(
                f"`params` hold an array of shape {np.shape(have)} where the model with input "
                f"shape {input_shape} expects {tuple(want.shape)}; model config, input shape and "
                "params do not match."
            )
