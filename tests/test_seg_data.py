"""Segmentation data: the synthetic generator and the VOC / Cityscapes loaders on fake trees."""

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from lrsjax.data import (
    CITYSCAPES_CLASSES,
    IGNORE_LABEL,
    VOC_CLASSES,
    SegmentationData,
    load_cityscapes,
    load_pascal_voc,
    synthetic_segmentation,
)
from lrsjax.data._voc import scaled_size, voc_colormap

# ----------------------------------------------------------------------------------------------
# synthetic
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth():
    return synthetic_segmentation(jax.random.key(0), 12, image_shape=(48, 64))


def test_synthetic_types_shapes_and_ranges(synth):
    assert isinstance(synth, SegmentationData)
    assert synth.images.shape == (12, 3, 48, 64) and synth.images.dtype == np.float32
    assert synth.labels.shape == (12, 48, 64) and synth.labels.dtype == np.int32
    assert synth.images.min() >= 0.0 and synth.images.max() <= 1.0
    assert synth.labels.min() >= 0 and synth.labels.max() < synth.num_classes
    assert len(synth.class_names) == synth.num_classes == 5
    assert len(synth.ids) == 12 and len(set(synth.ids)) == 12
    np.testing.assert_array_equal(synth.sizes, np.tile([48, 64], (12, 1)))
    x, y = synth.image(3)
    assert x.shape == (3, 48, 64) and y.shape == (48, 64)


def test_synthetic_every_class_appears(synth):
    counts = np.bincount(synth.labels.ravel(), minlength=synth.num_classes)
    assert np.all(counts > 0), counts
    assert counts[0] < 0.85 * counts.sum()  # the background does not swallow everything


def test_synthetic_is_deterministic_and_differs_across_keys_and_splits(synth):
    again = synthetic_segmentation(jax.random.key(0), 12, image_shape=(48, 64))
    np.testing.assert_array_equal(again.images, synth.images)
    np.testing.assert_array_equal(again.labels, synth.labels)
    other = synthetic_segmentation(jax.random.key(1), 12, image_shape=(48, 64))
    test = synthetic_segmentation(jax.random.key(0), 12, image_shape=(48, 64), split="test")
    for different in (other, test):
        assert not np.array_equal(different.labels, synth.labels)
        assert np.abs(different.images - synth.images).mean() > 0.01
    # image i depends on (key, split, i) only, not on how many images are drawn
    fewer = synthetic_segmentation(jax.random.key(0), 5, image_shape=(48, 64))
    np.testing.assert_array_equal(fewer.images, synth.images[:5])
    # raw uint32 keys work too
    raw = synthetic_segmentation(jax.random.PRNGKey(0), 2, image_shape=(16, 16))
    assert raw.images.shape == (2, 3, 16, 16)


def test_synthetic_is_softly_local(synth):
    """Labels form regions: a pixel's label is the majority of its 5x5 neighbourhood (mostly),
    and colour alone does not decide the class (colours overlap), but neighbourhoods help."""
    num_classes = synth.num_classes
    onehot = np.eye(num_classes)[synth.labels]
    votes = ndimage.uniform_filter(onehot, size=(1, 5, 5, 1), mode="nearest")
    agree = np.mean(votes.argmax(-1) == synth.labels)
    assert agree > 0.93, agree

    train = synthetic_segmentation(jax.random.key(5), 12, image_shape=(48, 64))
    pixels = train.images.transpose(0, 2, 3, 1)
    means = np.stack([pixels[train.labels == c].mean(0) for c in range(num_classes)])

    def nearest_mean_accuracy(images):
        px = images.transpose(0, 2, 3, 1)
        dist = ((px[..., None, :] - means) ** 2).sum(-1)
        return np.mean(dist.argmin(-1) == synth.labels)

    single = nearest_mean_accuracy(synth.images)
    local = nearest_mean_accuracy(ndimage.uniform_filter(synth.images, size=(1, 1, 5, 5)))
    assert single < 0.9, single  # not trivially separable pixel by pixel
    assert local > single + 0.02, (local, single)  # the neighbourhood carries information


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_images=0),
        dict(num_classes=1),
        dict(image_shape=(4, 64)),
        dict(image_shape=(64,)),
        dict(split="val"),
        dict(num_shapes=(5, 2)),
        dict(pixel_noise=-0.1),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs):
    args = dict(num_images=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        synthetic_segmentation(jax.random.key(0), **args)


def test_synthetic_rejects_a_non_key():
    with pytest.raises(ValueError, match="key"):
        synthetic_segmentation(0, 2)


# ----------------------------------------------------------------------------------------------
# Pascal VOC
# ----------------------------------------------------------------------------------------------


def _palette_png(path, label):
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(voc_colormap().ravel().tolist())
    img.save(path)


def _block_label(rng, blocks_h, blocks_w, values):
    """A label map of 2x2 constant blocks (so nearest downscaling by 1/2 is exact)."""
    small = rng.choice(values, size=(blocks_h, blocks_w)).astype(np.int32)
    return small, np.kron(small, np.ones((2, 2), np.int32))


def _make_voc(tmp_path, sizes, *, aug=False):
    rng = np.random.default_rng(0)
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    if aug:
        (voc / "SegmentationClassAug").mkdir()
    ids, smalls = [], []
    for n, (h, w) in enumerate(sizes):
        image_id = f"2007_{n:06d}"
        ids.append(image_id)
        colour = np.array([40 + 10 * n, 120, 200], np.uint8)
        Image.fromarray(np.broadcast_to(colour, (h, w, 3)).copy()).save(
            voc / "JPEGImages" / f"{image_id}.jpg", quality=95
        )
        small, label = _block_label(rng, h // 2, w // 2, [0, 15, 255, 7])
        _palette_png(voc / "SegmentationClass" / f"{image_id}.png", label)
        if aug:
            Image.fromarray(label.astype(np.uint8), mode="L").save(
                voc / "SegmentationClassAug" / f"{image_id}.png"
            )
        smalls.append(small)
    for split in ("val", "train"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    if aug:
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png" for i in ids]
        (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(lines))
    return tmp_path, ids, smalls


def test_voc_loads_scales_and_pads(tmp_path):
    root, ids, smalls = _make_voc(tmp_path, [(12, 20), (16, 10), (8, 8)])
    data = load_pascal_voc(root, "val", scale=0.5)
    assert data.num_classes == 21 and data.class_names == VOC_CLASSES
    assert data.ids == tuple(ids) and data.name == "voc2012-val"
    np.testing.assert_array_equal(data.sizes, [[6, 10], [8, 5], [4, 4]])
    assert data.images.shape == (3, 3, 8, 10) and data.labels.shape == (3, 8, 10)
    for i, small in enumerate(smalls):
        x, y = data.image(i)
        np.testing.assert_array_equal(y, small)  # nearest: exact block values, 255 kept
        assert x.shape == (3, *small.shape)
        np.testing.assert_allclose(x[:, 0, 0] * 255, [40 + 10 * i, 120, 200], atol=4)
    # padding: 0 in images, ignore in labels
    assert np.all(data.labels[2, 4:, :] == IGNORE_LABEL) and np.all(data.images[2, :, 4:, :] == 0)
    assert set(np.unique(data.labels)) <= {0, 7, 15, IGNORE_LABEL}


def test_voc_full_scale_root_variants_and_subset(tmp_path):
    root, ids, smalls = _make_voc(tmp_path, [(4, 6)] * 5)
    data = load_pascal_voc(root / "VOCdevkit" / "VOC2012", "train", scale=1.0, max_images=2)
    assert data.ids == (ids[0], ids[2])  # evenly spaced: indices 0 and 5 // 2
    assert data.images.shape == (2, 3, 4, 6)
    np.testing.assert_array_equal(data.labels[1], np.kron(smalls[2], np.ones((2, 2))))
    same = load_pascal_voc(root / "VOCdevkit", "train", scale=1.0, max_images=2)
    np.testing.assert_array_equal(same.labels, data.labels)


def test_voc_train_aug(tmp_path):
    root, ids, smalls = _make_voc(tmp_path, [(6, 6), (6, 8)], aug=True)
    data = load_pascal_voc(root, "train_aug", scale=0.5)
    assert data.ids == tuple(ids)
    np.testing.assert_array_equal(data.image(1)[1], smalls[1])


def test_voc_paper_scale_rounding():
    assert scaled_size(333, 500, 0.5) == (166, 250)
    assert scaled_size(375, 500, 0.5) == (187, 250)
    assert scaled_size(1, 1, 0.5) == (1, 1)


def test_voc_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        load_pascal_voc(tmp_path / "nowhere")
    root, ids, _ = _make_voc(tmp_path, [(4, 4)])
    with pytest.raises(FileNotFoundError, match="train_aug"):
        load_pascal_voc(root, "train_aug")
    missing = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{ids[0]}.png"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=str(missing.name)):
        load_pascal_voc(root)
    with pytest.raises(ValueError, match="split"):
        load_pascal_voc(root, "test")
    with pytest.raises(ValueError, match="scale"):
        load_pascal_voc(root, scale=0)
    with pytest.raises(ValueError, match="max_images"):
        load_pascal_voc(root, max_images=0)


# ----------------------------------------------------------------------------------------------
# Cityscapes
# ----------------------------------------------------------------------------------------------


def _make_cityscapes(tmp_path, split="val"):
    rng = np.random.default_rng(1)
    files = []
    for city, count in (("bonn", 2), ("aachen", 1)):
        img_dir = tmp_path / "leftImg8bit" / split / city
        lab_dir = tmp_path / "gtFine" / split / city
        img_dir.mkdir(parents=True)
        lab_dir.mkdir(parents=True)
        for n in range(count):
            stem = f"{city}_{n:06d}_000019"
            rgb = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(img_dir / f"{stem}_leftImg8bit.png")
            small, ids = _block_label(rng, 4, 6, [0, 7, 26, 33, 4, 16])
            Image.fromarray(ids.astype(np.uint8), mode="L").save(
                lab_dir / f"{stem}_gtFine_labelIds.png"
            )
            files.append((f"{city}/{stem}", rgb, small))
    return sorted(files)  # aachen before bonn


def test_cityscapes_maps_ids_and_scales(tmp_path):
    files = _make_cityscapes(tmp_path)
    data = load_cityscapes(tmp_path, "val", scale=0.5)
    assert data.num_classes == 19 and data.class_names == CITYSCAPES_CLASSES
    assert data.ids == tuple(f[0] for f in files)
    assert data.images.shape == (3, 3, 4, 6)
    expected_map = {0: 255, 4: 255, 16: 255, 7: 0, 26: 13, 33: 18}
    for i, (_, _, small) in enumerate(files):
        expected = np.vectorize(expected_map.get)(small)
        np.testing.assert_array_equal(data.labels[i], expected)
    full = load_cityscapes(tmp_path, "val", scale=1.0, max_images=2)
    assert full.ids == (files[0][0], files[1][0])
    np.testing.assert_allclose(full.images[1], files[1][1].transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_cityscapes_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        load_cityscapes(tmp_path)
    files = _make_cityscapes(tmp_path)
    city, stem = files[0][0].split("/")
    (tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError, match="gtFine_labelIds"):
        load_cityscapes(tmp_path)
    with pytest.raises(FileNotFoundError, match="train"):
        load_cityscapes(tmp_path, "train")
