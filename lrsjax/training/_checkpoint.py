"""Checkpoints without pickle: flax msgpack bytes plus a JSON side file, written atomically."""

from __future__ import annotations

import json
import pathlib

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
