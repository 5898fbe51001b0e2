"""Batched augmentations, each by its defining property."""
import math

import pytest
import torch

from visionzoo.data import augment
from visionzoo.data.augment import (
    ERASE_AREA,
    ERASE_ASPECT,
    Augmentation,
    cutmix,
    cutout,
    fancy_pca,
    mixup,
    pca_basis,
    random_erasing,
    scale_jitter,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def changed_box(before, after):
    """(top, left, height, width) of the changed pixels, asserting that they form a rectangle."""
    changed = (before != after).any(0)
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    if len(rows) == 0:
        return None
    top, left, h, w = rows[0].item(), cols[0].item(), len(rows), len(cols)
    assert changed[top:top + h, left:left + w].all() and changed.sum() == h * w
    return top, left, h, w


def test_random_erasing_boxes_obey_algorithm_1():
    x = torch.full((400, 3, 20, 24), -1.0)           # random values lie in [0, 255]: every erased pixel changes
    erased = random_erasing(x, 0.5, gen())
    boxes = [changed_box(a, b) for a, b in zip(x, erased)]
    count = sum(b is not None for b in boxes)
    assert 150 < count < 250                          # p = 0.5
    for box in filter(None, boxes):
        _, _, h, w = box
        assert ERASE_AREA[0] <= h * w / (20 * 24) <= ERASE_AREA[1]
        assert ERASE_ASPECT <= h / w <= 1 / ERASE_ASPECT
    values = erased[x != erased]
    assert values.min() >= 0 and values.max() <= 255 and values.std() > 50   # random values, not a constant
    assert torch.equal(random_erasing(x, 0.5, gen()), erased)             # seeded


def test_random_erasing_draws_both_tall_and_wide_boxes():
    # Zhong et al., Algorithm 1: r_e ~ U(r₁, 1/r₁), so boxes taller than wide occur as well as wider than tall.
    x = torch.full((400, 1, 24, 24), -1.0)
    boxes = [changed_box(a, b) for a, b in zip(x, random_erasing(x, 1.0, gen(4)))]
    tall = sum(h > w for _, _, h, w in filter(None, boxes))
    wide = sum(h < w for _, _, h, w in filter(None, boxes))
    assert tall > 40 and wide > 40


def test_cutout_zeroes_a_size_square_clipped_at_the_borders():
    x = torch.full((300, 1, 16, 16), 7.0)
    out = cutout(x, 6, gen())
    interior = 0
    for a, b in zip(x, out):
        top, left, h, w = changed_box(a, b)
        assert (b[:, top:top + h, left:left + w] == 0).all() and h <= 6 and w <= 6
        if 0 < top and top + h < 16 and 0 < left and left + w < 16:
            interior += 1
            assert h == w == 6
    assert interior > 50


def test_cutout_centre_may_be_any_pixel_so_squares_are_cut_off_at_every_border():
    # DeVries & Taylor 2017: the centre is uniform over the whole image, the square clipped where it
    # leaves it; a centre on the first row/column leaves 6 − 3 = 3 of the 6, one on the last leaves 4.
    x = torch.full((400, 1, 16, 16), 7.0)
    boxes = [changed_box(a, b) for a, b in zip(x, cutout(x, 6, gen(5)))]
    assert min(h for top, _, h, _ in boxes if top == 0) == 3
    assert min(w for _, left, _, w in boxes if left == 0) == 3
    assert min(h for top, _, h, _ in boxes if top + h == 16) == 4
    assert min(w for _, left, _, w in boxes if left + w == 16) == 4


def test_mixup_is_a_convex_combination_of_pairs_with_soft_targets():
    x = torch.randn(32, 3, 8, 8, generator=gen(1))
    y = torch.nn.functional.one_hot(torch.arange(32) % 10, 10).float()
    mixed, soft, lam = mixup(x, y, 0.4, gen(2))
    assert 0 <= lam <= 1
    torch.testing.assert_close(soft.sum(1), torch.ones(32))
    for i in range(32):  # find the partner j: x̃_i = λx_i + (1 − λ)x_j
        residual = (mixed[i] - lam * x[i]) / (1 - lam)
        j = min(range(32), key=lambda k: (residual - x[k]).abs().max().item())
        torch.testing.assert_close(mixed[i], lam * x[i] + (1 - lam) * x[j])
        torch.testing.assert_close(soft[i], lam * y[i] + (1 - lam) * y[j])


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_lambda_is_the_pasted_area_fraction(seed):
    n, h, w = 8, 12, 10
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, h, w)   # image i is constant i
    y = torch.nn.functional.one_hot(torch.arange(n), n).float()
    mixed, soft, lam = cutmix(x, y, 1.0, gen(seed))
    torch.testing.assert_close(soft.sum(1), torch.ones(n))
    for i in range(n):
        partner = int((soft[i] - lam * y[i]).argmax())
        if partner == i:  # paired with itself: nothing changes
            assert (mixed[i] == i).all()
            continue
        assert (mixed[i] == i).all(0).float().mean().item() == pytest.approx(lam)
        assert ((mixed[i] == i) | (mixed[i] == partner)).all()
        assert soft[i, i].item() == pytest.approx(lam) and soft[i, partner].item() == pytest.approx(1 - lam)


def test_cutmix_box_sides_are_the_square_root_of_one_minus_lambda(monkeypatch):
    # Yun et al. 2019, Eq. 2: r_w = W·√(1 − λ), r_h = H·√(1 − λ), so an unclipped box covers 1 − λ of the image.
    monkeypatch.setattr(augment, "_beta", lambda alpha, generator, size=None: 0.75)
    n, h, w = 4, 16, 12
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, h, w)
    y = torch.nn.functional.one_hot(torch.arange(n), n).float()
    sides, inside = set(), 0
    for seed in range(40):
        mixed, _, lam = cutmix(x, y, 1.0, gen(seed))
        box = next(filter(None, (changed_box(a, b) for a, b in zip(x, mixed))), None)
        if box is not None:
            sides.add(box[2:])
            inside += box[2:] == (8, 6)
            assert box[2] <= 8 and box[3] <= 6   # clipped boxes only lose rows or columns
            assert lam == pytest.approx(1 - box[2] * box[3] / (h * w))
    assert inside >= 5   # unclipped: 8 × 6 of 16 × 12, a quarter of the image


def test_fancy_pca_adds_a_per_image_constant_shift_along_the_eigenvectors():
    g = gen(3)
    base = torch.randn(500, 3, generator=g) @ torch.tensor([[40., 10, 0], [0, 20, 5], [0, 0, 3]]) + 128
    images = base.clamp(0, 255).to(torch.uint8).T.reshape(3, 500, 1, 1).permute(1, 0, 2, 3).expand(500, 3, 2, 2)
    values, vectors = pca_basis(images)
    cov = torch.cov(images.double().div(255).transpose(0, 1).reshape(3, -1)).float()
    torch.testing.assert_close(vectors @ torch.diag(values) @ vectors.T, cov, atol=1e-6, rtol=1e-4)
    x = torch.rand(4, 3, 5, 5, generator=g) * 255
    shifted = fancy_pca(x, values, vectors, 0.1, gen(4))
    shift = shifted - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-4)   # constant per image
    coefficients = vectors.T @ shift[:, :, 0, 0].T / 255     # components along p_i: α_i·λ_i
    alpha = coefficients / values[:, None]
    expected = torch.randn((4, 3), generator=gen(4)).T * 0.1
    torch.testing.assert_close(alpha, expected, atol=1e-4, rtol=1e-3)


def test_scale_jitter_keeps_the_size_and_crops_an_upscaled_window():
    x = torch.randint(0, 256, (5, 3, 12, 12), dtype=torch.uint8, generator=gen(5))
    out = scale_jitter(x, 1.2, 1.5, gen(6))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(scale_jitter(x, 1.0, 1.0, gen(6)), x)     # S = 1: the image itself


def test_scale_jitter_magnifies_a_ramp_by_one_s_in_the_range_per_batch_and_crops_inside_it():
    n, h, w, s_min, s_max = 16, 32, 48, 1.2, 1.8
    ramps = torch.stack([torch.arange(w, dtype=torch.float32).expand(h, w),             # channel 0: x = column
                         torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)])   # channel 1: x = row
    x = ramps.expand(n, 2, h, w)
    scales = []
    for seed in range(12):
        out = scale_jitter(x, s_min, s_max, gen(seed))
        torch.testing.assert_close(out[:, 0], out[:, 0, :1].expand(n, h, w))   # still ramps along one axis
        torch.testing.assert_close(out[:, 1], out[:, 1, :, :1].expand(n, h, w))
        measured = []
        for ramp, size in ((out[:, 0, 0, :], w), (out[:, 1, :, 0], h)):
            steps = ramp.diff(dim=1)
            step = steps.median()
            off = ~torch.isclose(steps, step, rtol=0, atol=1e-4)
            assert off.sum(1).max() <= 1 and (steps[off] < step).all()   # a clamped border pixel at most
            scale = 1 / step.item()            # one S for the whole batch: every image has the same step
            big = round(size * scale)          # the image was resized to an integer side S·size
            assert size * scale == pytest.approx(big, abs=1e-3)
            # where the middle pixel samples the resized image: (offset + j + ½)/S − ½ for x = index
            middle = size // 2
            offsets = (ramp[:, middle] + 0.5) * big / size - 0.5 - middle
            torch.testing.assert_close(offsets, offsets.round(), rtol=0, atol=1e-3)
            assert offsets.round().min() >= 0 and offsets.round().max() <= big - size   # the window lies inside
            assert offsets.round().unique().numel() > 1                                  # placed at random
            measured.append(big / size)
        assert s_min - 0.5 / h <= measured[0] <= s_max + 0.5 / h
        assert measured[0] == pytest.approx(measured[1], abs=0.5 / w + 0.5 / h)   # the aspect ratio kept
        scales.append(measured[0])
    assert max(scales) - min(scales) > (s_max - s_min) / 2   # S is drawn anew for each batch


def test_augmentation_pipeline_is_seeded_and_mixing_gives_probabilities():
    x = torch.randint(0, 256, (16, 3, 10, 10), dtype=torch.uint8, generator=gen(7))
    labels = torch.arange(16) % 4
    policy = Augmentation(crop=2, flip=True, scale_jitter=(1.0, 1.3), fancy_pca=0.1, pca=pca_basis(x),
                          random_erasing=0.5, cutout=3, mixup=0.2, cutmix=1.0)
    images, targets = policy(x, labels, 4, gen(8))
    again, targets_again = policy(x, labels, 4, gen(8))
    assert torch.equal(images, again) and torch.equal(targets, targets_again)
    assert images.shape == x.shape and targets.shape == (16, 4)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    plain, hard = Augmentation()(x, labels, 4, gen(8))
    assert torch.equal(plain, x) and torch.equal(hard, labels)
    assert math.isfinite(images.float().sum().item())
