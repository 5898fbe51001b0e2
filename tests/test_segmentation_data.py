"""Segmentation data: generated sets, seg-folder trees, joint augmentation, U-Net's weight map."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data import datasets
from visionzoo.data import segmentation as seg
from visionzoo.data.segmentation import (
    IGNORE_INDEX,
    PairAugmentation,
    elastic_deform,
    elastic_grid,
    fmnist_mask_splits,
    is_segmentation_data,
    load_segmentation_data,
    lv_phantom,
    paste_canvases,
)
from visionzoo.data.weight_map import class_balance, connected_components, distance_to, unet_weight_map

FMNIST_PRESENT = datasets.find_fashion_mnist() is not None


@pytest.fixture
def small_sets(monkeypatch):
    monkeypatch.setattr(seg, "PHANTOM_SIZES", (120, 30))
    monkeypatch.setattr(seg, "FMNIST_MASK_SIZES", (60, 20))


# --- lv-phantom -------------------------------------------------------------------------------

def test_phantom_is_deterministic_and_anatomical():
    images, masks = lv_phantom(24, 7)
    again, again_masks = lv_phantom(24, 7)
    other, _ = lv_phantom(24, 8)
    assert torch.equal(images, again) and torch.equal(masks, again_masks) and not torch.equal(images, other)
    assert images.shape == (24, 1, 64, 64) and images.dtype == torch.uint8
    assert masks.shape == (24, 64, 64) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) == {0, 1, 2}
    # The myocardium encloses the cavity: no cavity pixel touches background, 4-neighbours included.
    cavity, background = masks == 2, masks == 0
    grown = F.max_pool2d(cavity[:, None].float(), 3, 1, 1)[:, 0].bool()
    assert not (grown & background).any()
    for image, mask in zip(images[:, 0].float(), masks):
        assert (mask == 1).any() and (mask == 2).any()
        assert image[mask == 2].mean() > image[mask == 1].mean() + 20   # bright blood, dark muscle


def test_phantom_is_not_a_threshold():
    """Bright structures outside the left ventricle (right ventricle, fat) exist: the cavity is not
    'the bright pixels', so a network has to use shape and context."""
    images, masks = lv_phantom(32, 3)
    pixels = images[:, 0].float()
    outside = masks == 0
    threshold = torch.stack([pixels[i][masks[i] == 2].mean() * 0.9 for i in range(len(masks))])
    bright_outside = ((pixels > threshold[:, None, None]) & outside).flatten(1).sum(1)
    assert (bright_outside > 20).float().mean() > 0.5


def test_phantom_bundle_splits(small_sets):
    first = load_segmentation_data("lv-phantom", seed=0, val_size=0.25)
    second = load_segmentation_data("lv-phantom", seed=1, val_size=0.25)
    assert first.classes == ["background", "myocardium", "cavity"]
    assert (len(first.train), len(first.val), len(first.test)) == (90, 30, 30)
    assert torch.equal(first.test.images, second.test.images) and torch.equal(first.test.labels, second.test.labels)
    assert not torch.equal(first.val.images, second.val.images)
    def pooled(bundle):
        return sorted(torch.cat([bundle.train.images, bundle.val.images]).flatten(1).sum(1).tolist())
    assert pooled(first) == pooled(second)     # the same training set, carved differently
    train_images, _ = lv_phantom(120, seg.TRAIN_SEED)
    assert not any(torch.equal(t, train_images[0]) for t in first.test.images)
    x = first.train.images.double() / 255
    assert first.mean == pytest.approx([x.mean().item()]) and first.std == pytest.approx([x.std().item()])
    assert first.input_size == (1, 64, 64)


def test_image_size_resizes_images_and_masks_nearest(small_sets):
    bundle = load_segmentation_data("lv-phantom", image_size=32)
    assert bundle.train.images.shape[1:] == (1, 32, 32) and bundle.train.labels.shape[1:] == (32, 32)
    assert set(bundle.test.labels.unique().tolist()) <= {0, 1, 2}
    _, masks = lv_phantom(30, seg.TEST_SEED)
    assert torch.equal(bundle.test.labels, F.interpolate(masks[:, None].float(), size=32, mode="nearest-exact")
                       [:, 0].long())


def test_specs_and_unknown_spec():
    assert is_segmentation_data("lv-phantom") and is_segmentation_data("seg-folder:/x")
    assert not is_segmentation_data("fashion-mnist") and not is_segmentation_data("folder:/x")
    with pytest.raises(UsageError, match="lv-phantom, fmnist-masks, cells, seg-folder:PATH"):
        load_segmentation_data("cityscapes")


# --- fmnist-masks -----------------------------------------------------------------------------

def test_test_canvases_come_from_test_images_only(small_sets):
    blank = torch.zeros(5, 1, 28, 28, dtype=torch.uint8)
    bright = torch.full((5, 1, 28, 28), 200, dtype=torch.uint8)
    (_, train_masks), (_, test_masks) = fmnist_mask_splits(blank, bright)
    assert not train_masks.any() and test_masks.flatten(1).any(1).all()
    (_, train_masks), (_, test_masks) = fmnist_mask_splits(bright, blank)
    assert train_masks.flatten(1).any(1).all() and not test_masks.any()


def test_pasted_objects_are_their_silhouettes():
    squares = torch.full((3, 1, 28, 28), 220, dtype=torch.uint8)
    images, masks = paste_canvases(squares, 40, seed=5)
    assert images.shape == (40, 1, 64, 64) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) == {0, 1}
    pixels = images[:, 0].float()
    # Inside a silhouette the image shows the object (220 ± pixel noise, edges excepted) ...
    interior = F.avg_pool2d(masks[:, None].float(), 3, 1, 1)[:, 0] == 1
    assert (pixels[interior] - 220).abs().median() < 12
    # ... and every canvas holds at least one object scaled at least 1× (a ≥ 27×27 square after resampling).
    assert (masks.flatten(1).sum(1) >= 27 * 27).all()
    # ... and at most three objects scaled at most 2× (56 px, 57 after resampling).
    assert (masks.flatten(1).sum(1) <= 3 * 57 * 57).all()
    assert torch.equal(paste_canvases(squares, 40, seed=5)[0], images)


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Fashion-MNIST not installed")
def test_fmnist_masks_bundle(small_sets):
    first = load_segmentation_data("fmnist-masks", seed=0, val_size=10)
    second = load_segmentation_data("fmnist-masks", seed=3, val_size=10)
    assert first.classes == ["background", "object"]
    assert (len(first.train), len(first.val), len(first.test)) == (50, 10, 20)
    assert torch.equal(first.test.images, second.test.images) and torch.equal(first.test.labels, second.test.labels)
    assert first.train.images.shape[1:] == (1, 64, 64) and set(first.train.labels.unique().tolist()) == {0, 1}


def test_missing_fashion_mnist_same_message(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(UsageError) as classification:
        datasets.load_data("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(UsageError) as segmentation:
        load_segmentation_data("fmnist-masks", data_dir=tmp_path)
    assert str(segmentation.value) == str(classification.value)


# --- seg-folder:PATH --------------------------------------------------------------------------

def write_pairs(folder, count, *, mask_mode="P", size=(20, 16), labels=3, colour=True, seed=0, start=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(start, start + count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3) if colour else (size[1], size[0])).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"img{i:03d}.png")
        mask = rng.integers(0, labels, (size[1], size[0])).astype(np.uint8)
        mask[0, 0] = IGNORE_INDEX
        picture = Image.fromarray(mask, mode="L")
        if mask_mode == "P":
            picture = picture.convert("P")
            picture.putpalette([v for k in range(256) for v in (k * 37 % 256, k * 91 % 256, k * 13 % 256)])
        picture.save(folder / "masks" / f"img{i:03d}.png")
        written.append((pixels, mask))
    return written


def test_seg_folder_flat_palette_masks_and_class_names(tmp_path):
    written = write_pairs(tmp_path, 10, mask_mode="P")
    (tmp_path / "classes.txt").write_text("background\nroad\ncar\n\nsky\n")
    first = load_segmentation_data(f"seg-folder:{tmp_path}", seed=0, val_size=0.25)
    second = load_segmentation_data(f"seg-folder:{tmp_path}", seed=4, val_size=0.25)
    assert first.classes == ["background", "road", "car", "sky"]
    assert (len(first.train), len(first.val), len(first.test)) == (6, 2, 2)
    assert torch.equal(first.test.labels, second.test.labels)
    assert first.input_size == (3, 16, 20)
    every = {tuple(m.flatten().tolist()) for _, m in written}
    loaded = torch.cat([first.train.labels, first.val.labels, first.test.labels])
    assert {tuple(m.flatten().tolist()) for m in loaded} == every
    images = {tuple(p.flatten().tolist()) for p, _ in written}
    assert all(tuple(i.permute(1, 2, 0).flatten().tolist()) in images for i in first.train.images)


def test_seg_folder_grey_masks_split_trees_and_resize(tmp_path):
    write_pairs(tmp_path / "train", 6, mask_mode="L", labels=4, colour=False, seed=1)
    write_pairs(tmp_path / "val", 2, mask_mode="L", labels=2, colour=False, seed=2, start=100)
    write_pairs(tmp_path / "test", 3, mask_mode="L", labels=2, colour=False, seed=3, start=200)
    bundle = load_segmentation_data(f"seg-folder:{tmp_path}", image_size=8)
    assert bundle.classes == ["background", "class1", "class2", "class3"]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 2, 3)
    assert bundle.train.images.shape == (6, 1, 8, 8) and bundle.train.labels.shape == (6, 8, 8)
    assert set(bundle.train.labels.unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}


def test_seg_folder_needs_image_size_for_mixed_sizes(tmp_path):
    write_pairs(tmp_path, 3, size=(20, 16))
    write_pairs(tmp_path, 3, size=(12, 12), start=10)
    with pytest.raises(UsageError, match="different sizes.*--image-size"):
        load_segmentation_data(f"seg-folder:{tmp_path}")
    assert load_segmentation_data(f"seg-folder:{tmp_path}", image_size=10, val_size=1).input_size == (3, 10, 10)


def _break(tmp_path, how: str):
    from PIL import Image
    write_pairs(tmp_path, 5)
    if how == "image without mask":
        (tmp_path / "masks" / "img002.png").unlink()
        return DataError, "images/img002.png"
    if how == "mask without image":
        (tmp_path / "images" / "img002.png").unlink()
        return DataError, "masks/img002.png"
    if how == "size mismatch":
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "masks" / "img001.png")
        return DataError, "masks/img001.png"
    if how == "label beyond classes.txt":
        (tmp_path / "classes.txt").write_text("background\nthing\n")
        return DataError, "masks/img000.png: label 2"
    if how == "RGB mask":
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(tmp_path / "masks" / "img003.png")
        return DataError, "masks/img003.png: mask of mode RGB"
    if how == "a class named twice":
        (tmp_path / "classes.txt").write_text("background\nroad\nroad\n")
        return DataError, "classes.txt: the class 'road' is named twice"
    if how == "classes.txt not UTF-8":
        (tmp_path / "classes.txt").write_bytes(b"back\xffground\nthing\n")
        return DataError, "classes.txt: not UTF-8 text"
    if how == "every pixel void":
        for mask in (tmp_path / "masks").iterdir():
            Image.fromarray(np.full((16, 20), IGNORE_INDEX, np.uint8)).save(mask)
        return DataError, "every pixel of the training masks is 255"
    if how == "undecodable":
        (tmp_path / "images" / "img004.png").write_bytes(b"not a png at all")
        return DataError, "images/img004.png: cannot decode"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["image without mask", "mask without image", "size mismatch",
                                 "label beyond classes.txt", "RGB mask", "undecodable", "classes.txt not UTF-8",
                                 "every pixel void", "a class named twice"])
def test_seg_folder_errors_name_the_file(tmp_path, how):
    error, text = _break(tmp_path, how)
    with pytest.raises(error, match=text):
        load_segmentation_data(f"seg-folder:{tmp_path}")


def test_seg_folder_empty_or_missing(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(UsageError, match=f"{tmp_path}: no images"):
        load_segmentation_data(f"seg-folder:{tmp_path}")
    with pytest.raises(UsageError, match="not a directory"):
        load_segmentation_data(f"seg-folder:{tmp_path / 'nowhere'}")
    (tmp_path / "images").rmdir()
    with pytest.raises(UsageError, match="images is missing"):
        load_segmentation_data(f"seg-folder:{tmp_path}")


# --- joint augmentation -----------------------------------------------------------------------

def _pairs(n=16, size=32, seed=0):
    """Masks of blobs with labels 0..3, and images equal to 50 × the mask."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 4, (n, 1, size // 8, size // 8), generator=generator).float()
    masks = F.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()
    return (masks * 50).to(torch.uint8)[:, None], masks


def test_flips_are_exact_and_joint():
    images, masks = _pairs()
    for augmentation, dim in ((PairAugmentation(flip=True, elastic_sigma=0), -1),
                              (PairAugmentation(flip=False, vflip=True, elastic_sigma=0), -2)):
        out_images, out_masks = augmentation(images, masks, torch.Generator().manual_seed(1))
        flipped = torch.tensor([torch.equal(o, i.flip(dim)) and not torch.equal(o, i)
                                for o, i in zip(out_images, images)])
        kept = torch.tensor([torch.equal(o, i) for o, i in zip(out_images, images)])
        assert (flipped | kept).all() and flipped.any() and kept.any()
        assert torch.equal(out_images[:, 0], (out_masks * 50).to(torch.uint8))


def test_crop_moves_image_and_mask_together_and_pads_with_void():
    images, masks = _pairs()
    out_images, out_masks = PairAugmentation(flip=False, crop=4, elastic_sigma=0)(
        images, masks, torch.Generator().manual_seed(2))
    void = out_masks == IGNORE_INDEX
    assert void.any()
    assert torch.equal(out_images[:, 0][~void], (out_masks[~void] * 50).to(torch.uint8))
    assert (out_images[:, 0][void] == 0).all()


def test_crop_windows_take_every_offset_from_0_to_twice_the_padding():
    """Padding p and a random window: all (2p + 1)² offsets occur, each the same for image and mask."""
    n, side, padding = 300, 8, 2
    position = torch.arange(1, side * side + 1).view(side, side)   # 0 is left for the padding
    images, masks = position.to(torch.uint8).expand(n, 1, side, side), position.expand(n, side, side)
    out_images, out_masks = seg.pair_crop(images, masks, padding, torch.Generator().manual_seed(0))
    assert torch.equal(out_images[:, 0].long(), torch.where(out_masks == IGNORE_INDEX, 0, out_masks))
    # The window's pixel (p, p) is the original pixel (top, left): its value tells the offset.
    centre = out_masks[:, padding, padding] - 1
    offsets = set(zip((centre // side).tolist(), (centre % side).tolist()))
    assert offsets == {(top, left) for top in range(2 * padding + 1) for left in range(2 * padding + 1)}


def test_elastic_deformation_keeps_labels_aligned():
    images, masks = _pairs(n=16, size=64)
    out_images, out_masks = elastic_deform(images, masks, 2.0, torch.Generator().manual_seed(3))
    assert out_images.dtype == torch.uint8 and set(out_masks.unique().tolist()) <= {0, 1, 2, 3}
    assert (out_masks != masks).float().mean() > 0.01             # it does deform
    # The bilinear image equals 50 × the nearest-neighbour mask except next to a label edge.
    differs = out_images[:, 0].long() != out_masks * 50
    high = F.max_pool2d(out_masks[:, None].float(), 3, 1, 1)[:, 0]
    low = -F.max_pool2d(-out_masks[:, None].float(), 3, 1, 1)[:, 0]
    assert not (differs & (high == low)).any()
    assert differs.float().mean() < 0.25


def test_elastic_displacements_follow_the_paper():
    """Displacements at the 3×3 lattice points are N(0, σ²) pixels, interpolated smoothly between them."""
    sigma, n, size = 3.0, 4000, 33
    field = elastic_grid(n, size, size, sigma, torch.Generator().manual_seed(4), "cpu")
    identity = elastic_grid(1, size, size, 0.0, torch.Generator(), "cpu")
    displacement = (field - identity) * (size - 1) / 2                      # pixels
    lattice = displacement[:, ::16, ::16]                                    # rows/cols 0, 16, 32
    assert lattice.mean().abs() < 0.05 * sigma
    assert lattice.std().item() == pytest.approx(sigma, rel=0.03)
    assert displacement.abs().amax(dim=(1, 2, 3)).max() < 10 * sigma        # no wild extrapolation
    assert torch.equal(identity, elastic_grid(1, size, size, 0.0, torch.Generator(), "cpu"))


def test_elastic_x_and_y_displacements_are_independent_fields():
    # Ronneberger et al. Sec. 3.1: a random displacement vector per lattice point, so the horizontal and
    # vertical displacements are separate draws (uncorrelated), not one field used twice.
    sigma, n, size = 3.0, 500, 33
    field = elastic_grid(n, size, size, sigma, torch.Generator().manual_seed(5), "cpu")
    identity = elastic_grid(1, size, size, 0.0, torch.Generator(), "cpu")
    dx, dy = ((field - identity) * (size - 1) / 2).unbind(-1)             # pixels
    assert (dx - dy).abs().max().item() > sigma
    correlation = torch.corrcoef(torch.stack([dx[:, ::16, ::16].flatten(), dy[:, ::16, ::16].flatten()]))[0, 1]
    assert abs(correlation.item()) < 0.1


def test_elastic_displacements_are_sigma_pixels_along_both_axes_of_a_non_square_image():
    """The field is in pixels of each axis (align_corners=True: 2/(size − 1) per pixel), so on a 5 × 65
    image the row and the column displacements at the lattice points both have standard deviation σ."""
    sigma, n, height, width = 3.0, 3000, 5, 65
    field = elastic_grid(n, height, width, sigma, torch.Generator().manual_seed(6), "cpu")
    identity = elastic_grid(1, height, width, 0.0, torch.Generator(), "cpu")
    dx = (field - identity)[..., 0] * (width - 1) / 2
    dy = (field - identity)[..., 1] * (height - 1) / 2
    assert dx[:, ::2, ::32].std().item() == pytest.approx(sigma, rel=0.03)
    assert dy[:, ::2, ::32].std().item() == pytest.approx(sigma, rel=0.03)


def test_augmentation_is_seeded():
    images, masks = _pairs()
    augmentation = PairAugmentation(flip=True, vflip=True, crop=3, elastic_sigma=2.0)
    a = augmentation(images, masks, torch.Generator().manual_seed(9))
    b = augmentation(images, masks, torch.Generator().manual_seed(9))
    c = augmentation(images, masks, torch.Generator().manual_seed(10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert set(a[1].unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}


# --- weight map -------------------------------------------------------------------------------

@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_scipy(connectivity):
    generator = torch.Generator().manual_seed(connectivity)
    masks = (torch.rand(6, 30, 30, generator=generator) < 0.5).long() * torch.randint(
        1, 3, (6, 30, 30), generator=generator)
    masks[0, :5] = IGNORE_INDEX
    masks[1] = 1            # one component filling the image, no background at all
    labels, count = connected_components(masks, connectivity=connectivity)
    structure = np.ones((3, 3)) if connectivity == 8 else None
    for mask, label, n in zip(masks.numpy(), labels.numpy(), count.tolist()):
        expected = 0
        for k in (1, 2):
            reference, found = ndimage.label(mask == k, structure=structure)
            expected += found
            # the same partition: each reference component is exactly one of ours
            assert len(set(zip(reference[reference > 0], label[reference > 0]))) == found
        assert n == expected and set(np.unique(label[label > 0])) == set(range(1, n + 1))
        assert (label[(mask == 0) | (mask == IGNORE_INDEX)] == 0).all()


def test_distance_transform_matches_scipy():
    objects = torch.rand(5, 23, 31, generator=torch.Generator().manual_seed(0)) < 0.04
    distances = distance_to(objects)
    for target, got in zip(objects.numpy(), distances.numpy()):
        np.testing.assert_allclose(got, ndimage.distance_transform_edt(~target), atol=1e-5)
    assert torch.isinf(distance_to(torch.zeros(1, 4, 4, dtype=torch.bool))).all()


def test_two_squares_with_a_gap():
    mask = torch.zeros(1, 40, 40, dtype=torch.int64)
    mask[0, 10:20, 10:20] = 1          # left square: columns 10..19
    mask[0, 10:20, 22:32] = 1          # right square: columns 22..31 — the gap is columns 20 and 21
    weights = unet_weight_map(mask, 2, w0=10.0, sigma=5.0)[0]
    background, objects = (mask == 0).sum().item(), (mask == 1).sum().item()
    w_background, w_object = 1.0, background / objects
    for row in (10, 15, 19):
        for column in (20, 21):
            d1, d2 = sorted((column - 19, 22 - column))
            expected = w_background + 10.0 * math.exp(-(d1 + d2) ** 2 / (2 * 5.0 ** 2))
            assert weights[row, column].item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(weights[mask[0] == 1], torch.tensor(w_object))
    # Far from both squares (≥ 20 px from each) the separation term has vanished.
    assert weights[39, 0].item() == pytest.approx(w_background, abs=10.0 * math.exp(-40 ** 2 / 50))


def test_default_weight_map_uses_the_papers_w0_10_and_sigma_5():
    """Ronneberger et al. set w0 = 10 and σ = 5 px: the defaults give Eq. 2 with those values in a gap."""
    mask = torch.zeros(1, 30, 30, dtype=torch.int64)
    mask[0, 5:15, 5:12] = 1
    mask[0, 5:15, 15:22] = 1      # a 3-column gap: columns 12, 13, 14
    weights = unet_weight_map(mask, 2)[0]
    for column, (d1, d2) in ((12, (1, 3)), (13, (2, 2))):
        assert weights[10, column].item() == pytest.approx(1.0 + 10.0 * math.exp(-(d1 + d2) ** 2 / 50), rel=1e-5)


def test_single_object_gets_no_separation_term():
    mask = torch.zeros(2, 20, 20, dtype=torch.int64)
    mask[0, 5:9, 5:9] = 1
    weights = unet_weight_map(mask, 2)
    assert torch.allclose(weights[0][mask[0] == 0], torch.tensor(1.0))
    assert torch.allclose(weights[0][mask[0] == 1], torch.tensor((400 - 16) / 16))
    assert torch.equal(weights[1], torch.ones(20, 20))   # all background


def test_weight_map_against_brute_force_reference():
    generator = torch.Generator().manual_seed(11)
    coarse = torch.randint(0, 3, (3, 1, 6, 6), generator=generator).float()
    masks = F.interpolate(coarse, size=(24, 24), mode="nearest")[:, 0].long()
    masks[:, 11] = 0                    # cut objects in two, making touching pairs
    masks[2, 0, :3] = IGNORE_INDEX
    weights = unet_weight_map(masks, 3, w0=7.0, sigma=3.0)
    for mask, got in zip(masks.numpy(), weights.numpy()):
        distances = []
        for k in (1, 2):
            components, found = ndimage.label(mask == k)
            distances += [ndimage.distance_transform_edt(components != j) for j in range(1, found + 1)]
        stacked = np.sort(np.stack(distances + [np.full(mask.shape, np.inf)] * 2), axis=0)
        separation = 7.0 * np.exp(-(stacked[0] + stacked[1]) ** 2 / (2 * 3.0 ** 2))
        counts = np.array([(mask == k).sum() for k in range(3)], dtype=float)
        balance = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0)
        expected = np.where(mask == IGNORE_INDEX, 0, balance[np.minimum(mask, 2)])
        expected = expected + np.where(mask == 0, separation, 0)
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_fixed_class_weights_and_class_balance():
    masks = torch.tensor([[[0, 0, 0, 1]], [[0, 2, 2, IGNORE_INDEX]]])
    balance = class_balance(masks, 4)
    assert torch.allclose(balance, torch.tensor([1.0, 4.0, 2.0, 0.0]))
    weights = unet_weight_map(masks, 4, w0=0.0, class_weights=balance)
    assert torch.allclose(weights, torch.tensor([[[1.0, 1.0, 1.0, 4.0]], [[1.0, 2.0, 2.0, 0.0]]]))
