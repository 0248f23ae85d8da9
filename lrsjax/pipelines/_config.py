"""Job configuration: nested frozen sections with one flat name per setting, and named keys.

A job is a frozen dataclass whose fields are sections (frozen dataclasses: data, model, training,
...) and a few top-level values (seed, out_dir, overwrite). Every setting has one flat name, its
field name inside its section; the flat names are the command-line flags and the keys of the
run's config.json, so `flat()` / `from_flat()` convert between the two views without changing a
byte of either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax


def _is_section(field: dataclasses.Field) -> bool:
    factory = field.default_factory
    return factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory)


class Sections:
    """Mixin of a job dataclass (`@dataclasses.dataclass(frozen=True, init=False)`) of sections.

    `Job(**settings)` takes sections by name (`sampling=Sampling(n0=8)`) and flat settings
    (`n0=8`, applied on top of the sections); `job.n0` reads a setting by its flat name
    (`job.sampling.n0`); `job.replace(n0=8)` is a copy with flat settings changed.
    """

    def __init__(self, **settings):
        values = {}
        for field in dataclasses.fields(self):
            if _is_section(field):
                section = settings.pop(field.name, None) or field.default_factory()
                own = [f.name for f in dataclasses.fields(section) if f.name in settings]
                changes = {name: settings.pop(name) for name in own}
                values[field.name] = dataclasses.replace(section, **changes)
            else:
                values[field.name] = settings.pop(field.name, field.default)
        if settings:
            raise TypeError(
                f"{type(self).__name__} has no setting(s) {sorted(settings)}; its settings are "
                f"{sorted(type(self)().flat())}. Drop or rename them."
            )
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        if not name.startswith("_"):
            for field in dataclasses.fields(self):
                section = self.__dict__.get(field.name)
                if _is_section(field) and name in {f.name for f in dataclasses.fields(section)}:
                    return getattr(section, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute or setting {name!r}")

    def flat(self) -> dict:
        """{flat name: value} of every setting, sections first, in field order."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if _is_section(field):
                out.update((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            else:
                out[field.name] = value
        return out

    @classmethod
    def from_flat(cls, settings: Mapping):
        """The job of `flat()`'s dict (missing settings take their defaults)."""
        return cls(**settings)

    def replace(self, **changes):
        """A copy with the flat settings in `changes` replaced."""
        return type(self)(**{**self.flat(), **changes})


def jsonable(job: Sections, drop=()) -> dict:
    """The job's flat settings as JSON values (tuples become lists), without `drop`."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in job.flat().items()
        if name not in drop
    }


class KeyStreams(NamedTuple):
    """The job's random streams, named: stream `name` item `i` is
    `jax.random.fold_in(PRNGKey(seed), folds[name] + i)`, so no two uses share a key.

    root: `jax.random.PRNGKey(seed)`.
    folds: {stream name: its first fold number}; streams with many items (one key per image)
      start far enough from the others that their fold numbers never meet.
    """

    root: Any
    folds: Mapping[str, int]

    def fold(self, name: str, index: int = 0) -> int:
        """The fold number of item `index` of stream `name` (recorded in result seeds)."""
        return self.folds[name] + index

    def key(self, name: str, index: int = 0):
        """The key of item `index` of stream `name`."""
        return jax.random.fold_in(self.root, self.fold(name, index))


def key_streams(seed: int, folds: Mapping[str, int]) -> KeyStreams:
    """The named streams of `seed`; the job's keys come from here and nowhere else."""
    return KeyStreams(jax.random.PRNGKey(seed), dict(folds))
