"""The noise plug-in: one NamedTuple type for every smoothing distribution lrsjax samples.

A noise is a value, made by a factory that validates its arguments (`localized_gaussian`,
`clustered_bernoulli`, `isotropic_laplace`, ...; see `docs/design.md`, "Add a noise"). It says
  * how outputs and input elements are grouped (`group`, `region`),
  * the host parameters its certificates use (`parameters`, float64 `[K, M]` matrices),
  * how to bind a clean input to a device sampler (`prepare`, which also checks the input),
  * which base certificate each kind of estimate feeds (`certificates`).
The sampling kernel and `lrsjax.certify` only call these functions; neither branches on the kind
of noise. Sampling functions are module-level (stable identities), so jit caches are reused.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import numpy as np

from lrsjax import _checks
from lrsjax.base_certs import BaseCertificates


class Prepared(NamedTuple):
    """A noise bound to one clean input: what the sampling kernel runs (`Noise.prepare`).

    The kernel draws batch `b` of group `k` as follows. With `draw` set (noise shared by all
    groups, allowed since each group's samples stay i.i.d. from its own distribution):
    `shared = draw(config, fold_in(key, b), x, batch_size)` once per batch, then
    `apply(config, shared, x, per_group[k], common)` for every group. Otherwise every sample has
    its own key, `split(fold_in(key, b * K + k), batch_size)`, and
    `vmap(sample)(config, keys, x, per_group[k], common)`.

    Fields:
      x: the clean input as the kernel receives it (device arrays).
      config: hashable static configuration given to the functions (shapes, capacities).
      per_group: pytree of device arrays whose leading axis is the group `K`.
      common: pytree of device arrays shared by all groups (region maps, layouts).
      sample: `sample(config, key, x, params_k, common) -> (noisy, overflow)` for ONE example,
        key first; `overflow` (bool) flags a sample that must be discarded (the run raises).
      draw: optional `draw(config, key, x, batch_size) -> shared draws [B, ...]`.
      apply: optional `apply(config, shared, x, params_k, common) -> noisy [B, ...]`.
      example: `jax.ShapeDtypeStruct` pytree of one noisy example (what `apply_fn` receives).
      input_size: elements of one noisy example (memory estimate).
      bytes_per_element: device bytes one sample holds per input element while sampling.
      overflow_message: what to tell the user when `overflow` is raised (None: cannot happen).
    """

    x: Any
    config: Hashable
    per_group: Any
    common: Any
    sample: Callable
    draw: Callable | None
    apply: Callable | None
    example: Any
    input_size: int
    bytes_per_element: int
    overflow_message: str | None


class NoiseCertificate(NamedTuple):
    """What a noise certifies from one estimate (see `Noise.certificates`). `D` outputs.

    Fields:
      abstain: bool [D], True where nothing is certified.
      base_certs: `BaseCertificates` (linear form for `lrsjax.collective`), or None when the
        certificate is not linear (isotropic sparse smoothing).
      radius: float64 [D] or None: naive radius in the noise's norm (l2 or l1), 0 where abstained.
      binary_radius: float64 [D, 2] or None: largest additions alone / deletions alone certified.
      sparse_grid: bool [D, A + 1, R + 1] or None: sparse-smoothing certificate grid.
      method: str, the certificate's name (e.g. "gaussian", "laplace_l1").
      interval: float64 [D, 2] or None: certified interval of a transformation parameter
        (multiplicative smoothing), else None.
    """

    abstain: np.ndarray
    base_certs: BaseCertificates | None
    radius: np.ndarray | None = None
    binary_radius: np.ndarray | None = None
    sparse_grid: np.ndarray | None = None
    method: str = ""
    interval: np.ndarray | None = None


class Noise(NamedTuple):
    """A (localized) smoothing distribution: outputs in groups, input elements in regions.

    Smoothing group `k` draws noise whose level is constant on each input region `j`; every output
    of group `k` is certified from that group's samples.

    Fields:
      kind: a short name ("gaussian", "bernoulli", "laplace", "uniform", ...), used in method
        names and messages only.
      group: int32 [*output_shape], the smoothing group of every output (images: the grid cell of
        every pixel [H, W]; graphs: the cluster of every node [N]).
      region: int32 [*region_shape], the region of every input element, shared by the trailing
        input axis (images: the cell of every pixel [H, W], all C channels; graphs: the cluster of
        every node [N], all F attributes).
      parameters: dict of float64 [K, M] matrices > 0 the certificates use, e.g. {"stds": S}
        (Gaussian; `np.inf` = masked region), {"theta_plus": ..., "theta_minus": ...}
        (Bernoulli), {"scales": ...} (Laplace), {"half_widths": ...} (uniform). They are also
        readable as attributes (`noise.stds`).
      prepare: `prepare(noise, x, **options) -> Prepared`: checks the clean input `x` (raising a
        ValueError that names the fix, warning on values outside the range the noise assumes)
        and binds it. Options the noise does not use are ignored (e.g. `num_features`).
      certificates: {estimate kind: fn}, `fn(noise, prediction, estimate, tested, **options) ->
        NoiseCertificate`; estimate kinds are "probability" (Clopper-Pearson bounds on the
        predicted class) and "moments" (DKW bounds on the mean and second moment of its score).
      default_estimate: the estimate kind `lrsjax.certify` uses when not told.
    """

    kind: str
    group: np.ndarray
    region: np.ndarray
    parameters: dict
    prepare: Callable
    certificates: dict
    default_estimate: str

    def __getattr__(self, name):
        parameters = tuple.__getitem__(self, 3)
        if isinstance(parameters, dict) and name in parameters:
            return parameters[name]
        if name in ("stds", "theta_plus", "theta_minus", "scales", "half_widths"):
            return None
        raise AttributeError(f"'Noise' object has no attribute {name!r}")

    @property
    def num_groups(self) -> int:
        """K, the number of smoothing groups."""
        return int(next(iter(self.parameters.values())).shape[0])

    @property
    def num_regions(self) -> int:
        """M, the number of input regions."""
        return int(next(iter(self.parameters.values())).shape[1])

    @property
    def output_shape(self) -> tuple:
        """Shape of the model's outputs without the class axis: (H, W) or (N,)."""
        return tuple(self.group.shape)

    @property
    def num_outputs(self) -> int:
        return int(self.group.size)


def check_noise(noise, name: str = "smoothing") -> Noise:
    """Validates a `Noise` (factories return valid ones; this catches hand-made edits)."""
    if not isinstance(noise, Noise):
        _checks.fail(
            name,
            type(noise).__name__,
            "must be an lrsjax.noise.Noise",
            "Build it with a factory such as lrsjax.noise.localized_gaussian(...) or "
            "clustered_bernoulli(...).",
        )
    if not isinstance(noise.parameters, dict) or not noise.parameters:
        _checks.fail(f"{name}.parameters", noise.parameters, "must be a non-empty dict", "")
    shape = None
    for key, value in noise.parameters.items():
        matrix = _checks.as_float_array(f"{name}.{key}", value, ndim=2, finite=False)
        if np.any(np.isnan(matrix)) or np.any(matrix <= 0):
            _checks.fail(
                f"{name}.{key}",
                matrix,
                "must be > 0 and not NaN (noise scales and flip probabilities; inf = masked)",
                "Build the noise with its factory.",
            )
        if np.any(np.all(np.isinf(matrix), axis=1)):
            _checks.fail(f"{name}.{key}", matrix, "must leave every group some region", "")
        if shape is not None and matrix.shape != shape:
            _checks.fail(f"{name}.{key}", matrix, f"must have the shape {shape} of the others", "")
        shape = matrix.shape
    group = _checks.as_int_array(f"{name}.group", noise.group)
    region = _checks.as_int_array(f"{name}.region", noise.region)
    num_groups, num_regions = shape
    if group.size == 0 or group.min() < 0 or group.max() >= num_groups:
        _checks.fail(f"{name}.group", group, f"must lie in [0, {num_groups})", "Fix the ids.")
    if region.size == 0 or region.min() < 0 or region.max() >= num_regions:
        _checks.fail(f"{name}.region", region, f"must lie in [0, {num_regions})", "Fix the ids.")
    if not callable(noise.prepare):
        _checks.fail(f"{name}.prepare", noise.prepare, "must be callable", "")
    if noise.default_estimate not in noise.certificates:
        _checks.fail(
            f"{name}.default_estimate",
            noise.default_estimate,
            f"must be one of the noise's certificates {sorted(noise.certificates)}",
            "",
        )
    return noise._replace(group=group.astype(np.int32), region=region.astype(np.int32))


def single_output(noise: Noise, name: str = "noise") -> Noise:
    """`noise` smoothing ONE output (a single-output classifier): its `group` becomes `[0]`.

    Only a noise with a single smoothing group qualifies (localized smoothing varies the noise per
    output group; a classifier has one output); others raise a ValueError naming `name`.
    """
    noise = check_noise(noise, name)
    if noise.num_groups != 1:
        _checks.fail(
            name,
            f"a {noise.kind} noise with {noise.num_groups} smoothing groups",
            "must have a single smoothing group for a single-output classifier (localized "
            "smoothing varies the noise per output, and a classifier has one output)",
            "Use an isotropic noise, e.g. lrsjax.noise.isotropic_gaussian(image_shape, sigma), "
            "or lrsjax.certify for multi-output models.",
        )
    return noise._replace(group=np.zeros((1,), np.int32))
