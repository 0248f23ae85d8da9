"""Certified detection: the worst-case IoU against a brute-force search, box vectors by hand, and
certify_detection on synthetic rectangles with the oracle detector."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsjax import detection, noise, stats


def _brute_force(lower, upper, gt, steps=7):
    grids = [np.linspace(lower[i], upper[i], steps) for i in range(4)]
    boxes = np.array(list(itertools.product(*grids)))
    return detection.iou(boxes, gt).min()


def test_worst_case_iou_equals_a_grid_search():
    rng = np.random.default_rng(0)
    gt = np.array([3.0, 2.0, 9.0, 7.0])
    for _ in range(40):
        centre = gt + rng.normal(0.0, 1.5, 4)
        lower = centre - rng.uniform(0.0, 1.5, 4)
        upper = centre + rng.uniform(0.0, 1.5, 4)
        worst = detection.worst_case_iou(lower, upper, gt)
        if lower[2] <= upper[0] or lower[3] <= upper[1]:
            assert worst == 0.0  # the box may vanish
            continue
        assert worst == pytest.approx(_brute_force(lower, upper, gt), abs=1e-12)
    # a finer grid of one case finds nothing below the corners
    lower, upper = np.array([2.5, 1.0, 8.0, 6.5]), np.array([4.0, 2.5, 10.0, 8.0])
    worst = detection.worst_case_iou(lower, upper, gt)
    assert worst == pytest.approx(_brute_force(lower, upper, gt, steps=21), abs=1e-12)
    assert 0.0 < worst < detection.iou(gt, gt) == 1.0


def test_worst_case_iou_edge_cases():
    gt = np.array([0.0, 0.0, 2.0, 2.0])
    assert detection.worst_case_iou(gt, gt, gt) == 1.0
    assert detection.worst_case_iou([0, 0, 2, 2], [np.inf, 0, 2, 2], gt) == 0.0
    batch = detection.worst_case_iou(np.zeros((3, 4)) + gt, np.zeros((3, 4)) + gt + 0.5, gt)
    assert batch.shape == (3,)
    with pytest.raises(ValueError, match="`box_upper`"):
        detection.worst_case_iou([1, 1, 2, 2], [0, 0, 2, 2], gt)
    with pytest.raises(ValueError, match="`gt_box`"):
        detection.worst_case_iou(gt, gt, [2, 0, 1, 2])


def test_boxes_to_vectors_by_hand():
    absent = [0, 0, 1, 1, 0, 0.0]
    detections = np.array(
        [
            [[5, 5, 7, 7, 1, 1], [0, 4, 2, 6, 1, 1], [0, 0, 2, 2, 0, 1], absent],
            [[1, 1, 3, 3, 0, 1], [1, 6, 2, 7, 0, 1], [4, 6, 6, 8, 0, 1], [0, 0, 9, 9, 1, 0]],
        ],
        np.float64,
    )
    vectors, dropped = detection.boxes_to_vectors(detections, num_labels=2, slots=2)
    inf = [np.inf] * 4
    expected = np.array(
        [
            [[0, 0, 2, 2], inf, [0, 4, 2, 6], [5, 5, 7, 7]],  # label 0; label 1 sorted by y
            [[1, 1, 3, 3], [1, 6, 2, 7], inf, inf],  # third label-0 box dropped (slots = 2)
        ]
    ).reshape(2, -1)
    np.testing.assert_array_equal(vectors, expected)
    assert dropped == 1
    vectors, _ = detection.boxes_to_vectors(
        detections, num_labels=2, slots=1, image_size=(10, 10), loc_bins=2
    )
    assert vectors.shape == (2, 2 * 4 * 1 * 4)
    np.testing.assert_array_equal(vectors[0, 4 * 4 + 3 * 4 : 4 * 4 + 4 * 4], [5, 5, 7, 7])
    bad = detections.copy()
    bad[0, 0, 4] = 2
    with pytest.raises(ValueError, match="`detections`"):
        detection.boxes_to_vectors(bad, num_labels=2, slots=2)


def test_certified_detection_on_rectangles():
    data = detection.synthetic_rectangles(jax.random.key(0), 2, image_size=24, num_boxes=2)
    sm = noise.isotropic_gaussian((1, 24, 24), 0.5)
    options = dict(n=400, alpha=0.01, eps=0.1, batch_size=200, num_labels=2, slots=2)
    x = jnp.asarray(data.images[0])
    cert = detection.certify_detection(
        jax.random.key(1), detection.oracle_detector, data.boxes[0], x, sm, **options
    )
    again = detection.certify_detection(
        jax.random.key(1), detection.oracle_detector, data.boxes[0], x, sm, **options
    )
    np.testing.assert_array_equal(cert.lower, again.lower)
    p_low, p_up = stats.shifted_levels(0.5, 0.1, 0.5)
    assert cert.k_lower == stats.lower_order_index(
        p_low, 400, 0.01 / (2 * 16)
    )  # 2 sides, 4 slots x 4 coordinates
    assert cert.k_upper == stats.upper_order_index(
        p_up, 400, 0.01 / (2 * 16)
    )  # 2 sides, 4 slots x 4 coordinates
    assert np.all(cert.lower <= cert.estimate) and np.all(cert.estimate <= cert.upper)
    assert np.all(cert.certified <= cert.may_exist)
    found = detection.certified_matches(cert, data.boxes[0], data.labels[0])
    assert found.true_positives == 2 and found.num_ground_truth == 2
    # soundness at a perturbed input: the median of many samples there lies in the bounds
    delta = np.asarray(jax.random.normal(jax.random.key(2), x.shape))
    x_moved = x + jnp.asarray(delta / np.linalg.norm(delta) * 0.099, jnp.float32)
    moved = detection.certify_detection(  # the same compiled sampler; its estimate: the median
        jax.random.key(3), detection.oracle_detector, data.boxes[0], x_moved, sm, **options
    )
    median = moved.estimate
    inside = (median >= cert.lower) & (median <= cert.upper)
    assert np.all(inside[cert.certified])
    assert detection.single_point_ap(found) == pytest.approx(1.0)


def test_matches_and_ap():
    gt = np.array([[0, 0, 4, 4], [10, 10, 14, 14]], np.float64)
    boxes = np.array([[0, 0, 4, 5], [10, 10, 11, 11], [np.inf] * 4])
    found = detection.matches(boxes, [0, 1, 0], gt, [0, 1])
    assert found == detection.Matches(1, 2, 2)
    assert detection.single_point_ap(found) == pytest.approx(0.25)
    assert detection.single_point_ap(detection.Matches(0, 0, 3)) == 0.0
