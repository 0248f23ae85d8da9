"""Hamming distances to a center label map: the estimator of center smoothing's radius stage.

Each sample's label map (argmax of its logits) is compared with the center (`target`, int
`[*out]`) on the device; the accumulator is the histogram `[num_outputs + 1]` of the Hamming
distances (differing outputs among those of the group), so nothing of size `n x outputs` is kept
and the counts of batch ranges and devices add up exactly. The host reads order statistics and
tail fractions off the histogram exactly (`docs/math.md §14`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lrsjax.estimators._types import Estimator


def _shape(config, output_shape, num_classes):
    return (int(np.prod(output_shape, dtype=np.int64)) + 1,)


def _accumulate(config, acc, logits, valid, group_mask, target):
    labels = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    differs = (labels != target[None].astype(jnp.int32)) & group_mask[None]
    distance = jnp.sum(differs.reshape(differs.shape[0], -1), axis=1, dtype=jnp.int32)
    return acc.at[distance].add(valid.astype(jnp.int32))


def _bound(config, acc, prediction, n, alpha, tested):
    return np.asarray(acc, np.int64)


def _certifiable(config, n, alpha, num_tested):
    return True


def _bytes(config, num_classes):
    return 8  # argmax label and comparison


def hamming_histogram() -> Estimator:
    """Histogram `[num_outputs + 1]` of the Hamming distances between each sample's label map and
    the center (`target`). `bound` returns the int64 histogram; the certificate is
    `lrsjax.certify_center`'s."""
    return Estimator(
        "hamming_histogram", "distances", None, "hamming", _shape, _accumulate, _bound,
        _certifiable, _bytes,
    )  # fmt: skip
