"""Detection operations against their reference ops (torchvision) and their defining properties."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from visionzoo.core.errors import DataError, UsageError
from visionzoo.layers.detection import (
    BELOW_LOW,
    BETWEEN,
    Anchors,
    boxes_to_regions,
    check_boxes,
    decode_boxes,
    encode_boxes,
    make_anchors,
    match_boxes,
    regions_to_boxes,
    roi_align,
    roi_max_pool,
    roi_pool,
    sample_labels,
    smooth_l1,
)


def random_boxes(count: int, size: float, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    corner = torch.rand(count, 2, generator=generator, dtype=dtype) * size * 0.8
    extent = torch.rand(count, 2, generator=generator, dtype=dtype) * size * 0.5 + 1.0
    return torch.cat((corner, corner + extent), dim=1)


def random_regions(count: int, images: int, size: float, generator: torch.Generator) -> torch.Tensor:
    """(r, c, h, w) regions, some reaching past the image and some at half-pixel positions."""
    top_left = torch.rand(count, 2, generator=generator) * size * 1.1 - 0.1 * size
    extent = torch.rand(count, 2, generator=generator) * size * 0.7 + 0.5
    halves = torch.randint(0, 2 * int(size), (count // 4, 4), generator=generator).float() / 2
    top_left[: count // 4], extent[: count // 4] = halves[:, :2], halves[:, 2:] + 0.5
    batch = torch.randint(0, images, (count, 1), generator=generator).float()
    return torch.cat((batch, top_left, extent), dim=1)


@pytest.mark.parametrize(
    "spatial_scale, output_size, dtype",
    [
        (1 / 16, (7, 7), torch.float32),
        (0.5, (3, 5), torch.float32),
        (1.0, 2, torch.float64),
        (1 / 8, (6, 6), torch.float64),
    ],
)
def test_roi_max_pool_equals_torchvision_roi_pool(spatial_scale, output_size, dtype):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 11, 13, generator=generator, dtype=dtype)
    image = 13 / spatial_scale
    regions = random_regions(60, 2, image, generator).to(dtype)
    ours = roi_max_pool(features, regions, output_size, spatial_scale)
    reference = torchvision.ops.roi_pool(features, regions_to_boxes(regions), output_size, spatial_scale)
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_roi_max_pool_by_the_notes_definition():
    """A 4×4 region on an unscaled map cut into 2×2 sub-windows of 2×2 cells (inclusive ends: +1 cell)."""
    features = torch.arange(64.0).reshape(1, 1, 8, 8)
    # (r, c, h, w) = (1, 2, 3, 3): box (2, 1, 5, 4), cells rows 1..4 and columns 2..5 inclusive.
    pooled = roi_max_pool(features, torch.tensor([[0.0, 1, 2, 3, 3]]), (2, 2), 1.0)
    expected = torch.tensor([[features[0, 0, 1:3, 2:4].max(), features[0, 0, 1:3, 4:6].max()],
                             [features[0, 0, 3:5, 2:4].max(), features[0, 0, 3:5, 4:6].max()]])
    assert torch.equal(pooled[0, 0], expected)


def test_roi_max_pool_outside_map_gives_zero_and_gradients_reach_the_maxima():
    features = torch.randn(1, 2, 5, 5, requires_grad=True)
    regions = torch.tensor([[0.0, 100, 100, 10, 10], [0.0, 0, 0, 4, 4]])
    pooled = roi_max_pool(features, regions, (2, 2), 1.0)
    assert torch.equal(pooled[0], torch.zeros(2, 2, 2))
    pooled.sum().backward()
    reference = features.detach().clone().requires_grad_(True)
    torchvision.ops.roi_pool(reference, regions_to_boxes(regions), (2, 2), 1.0).sum().backward()
    torch.testing.assert_close(features.grad, reference.grad)


def test_roi_pool_wrapper_accepts_lists_and_matches_the_region_form():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 4, 9, 9, generator=generator)
    per_image = [random_boxes(5, 140, generator), random_boxes(3, 140, generator)]
    stacked = torch.cat([torch.cat((torch.full((len(b), 1), float(i)), b), 1) for i, b in enumerate(per_image)])
    from_list = roi_pool(features, per_image, 7, 1 / 16)
    assert torch.equal(from_list, roi_pool(features, stacked, (7, 7), 1 / 16))
    assert torch.equal(from_list, roi_max_pool(features, boxes_to_regions(stacked), 7, 1 / 16))


def test_roi_align_interpolates_a_linear_map_exactly():
    """Bilinear sampling of f(y, x) = x at cell centres: each output cell is the mean x of its samples, the
    centre of its bin in feature coordinates (aligned=True: pixel x sits at feature x·s − 0.5)."""
    features = torch.arange(16.0).repeat(16, 1)[None, None]  # value = column index
    box = torch.tensor([[0.0, 8.0, 8.0, 24.0, 24.0]])  # feature columns 4 … 12 at scale 1/2
    pooled = roi_align(features, box, (2, 4), 0.5, sampling_ratio=2, aligned=True)
    bin_centres = 4 - 0.5 + (torch.arange(4) + 0.5) * 2
    torch.testing.assert_close(pooled[0, 0], bin_centres.expand(2, 4))


def test_regions_and_boxes_round_trip():
    regions = torch.tensor([[1.0, 2, 3, 4, 5]])
    assert torch.equal(regions_to_boxes(regions), torch.tensor([[1.0, 3, 2, 8, 6]]))
    assert torch.equal(boxes_to_regions(regions_to_boxes(regions)), regions)


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0, 1 / 9, 0.0])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_smooth_l1_equals_torch(beta, reduction):
    generator = torch.Generator().manual_seed(2)
    prediction = torch.randn(50, 4, generator=generator) * 2
    target = torch.randn(50, 4, generator=generator)
    expected = F.smooth_l1_loss(prediction, target, reduction=reduction, beta=beta)
    torch.testing.assert_close(smooth_l1(prediction, target, beta, reduction), expected)


def test_smooth_l1_is_the_notes_piecewise_formula():
    d = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.25, 0.999, 1.0, 2.5])
    expected = torch.tensor([0.5 * x**2 if abs(x) < 1 else abs(x) - 0.5 for x in d.tolist()])
    torch.testing.assert_close(smooth_l1(d, torch.zeros_like(d), reduction="none"), expected)
    with pytest.raises(UsageError, match="reduction='max'"):
        smooth_l1(d, d, reduction="max")


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_equals_torchvision_and_decode_inverts_it(weights):
    generator = torch.Generator().manual_seed(3)
    boxes, reference = random_boxes(40, 300, generator), random_boxes(40, 300, generator)
    coder = BoxCoder(weights)
    deltas = encode_boxes(boxes, reference, weights)
    torch.testing.assert_close(deltas, coder.encode_single(boxes, reference), rtol=0, atol=0)
    torch.testing.assert_close(decode_boxes(deltas, reference, weights), boxes, rtol=1e-5, atol=1e-3)


def test_encode_is_the_rcnn_parameterisation():
    reference = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), w 20, h 40
    box = torch.tensor([[15.0, 30.0, 55.0, 50.0]])  # centre (35, 40), w 40, h 20
    expected = torch.tensor([[15 / 20, 0.0, math.log(2.0), math.log(0.5)]])
    torch.testing.assert_close(encode_boxes(box, reference), expected)


def test_decode_equals_torchvision_for_many_classes_and_clamps():
    generator = torch.Generator().manual_seed(4)
    reference = random_boxes(30, 200, generator)
    deltas = torch.randn(30, 4 * 5, generator=generator)
    deltas[0, 2] = 50.0  # would overflow exp without the clamp
    weights = (10.0, 10.0, 5.0, 5.0)
    ours = decode_boxes(deltas, reference, weights)
    assert ours.shape == (30, 20) and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, BoxCoder(weights).decode_single(deltas, reference), rtol=0, atol=0)
    with pytest.raises(UsageError, match=r"got \(30, 6\)"):
        decode_boxes(torch.zeros(30, 6), reference)


def test_check_boxes_names_the_place_and_the_box():
    check_boxes(torch.tensor([[0.0, 0, 10, 10], [5, 5, 32, 20]]), (20, 32), "a.xml")
    cases = {
        "degenerate": torch.tensor([[0.0, 0, 10, 10], [4, 4, 4, 9]]),
        "outside": torch.tensor([[0.0, 0, 33, 10]]),
        "finite": torch.tensor([[0.0, 0, float("nan"), 10]]),
    }
    for word, boxes in cases.items():
        with pytest.raises(DataError, match=rf"^scene 7\.xml: box \d .*{word}") as caught:
            check_boxes(boxes, (20, 32), "scene 7.xml")
        assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match="shape"):
        check_boxes(torch.zeros(3, 5), (20, 32), "x")


@pytest.mark.parametrize(
    "scales, ratios, feature, image",
    [((128, 256, 512), (0.5, 1.0, 2.0), (5, 7), (80, 112)), ((32, 50), (0.7, 1.3), (4, 3), (64, 60))],
)
def test_anchors_equal_torchvision_anchor_generator(scales, ratios, feature, image):
    generator = AnchorGenerator(sizes=(tuple(scales),), aspect_ratios=(tuple(ratios),))
    images = ImageList(torch.zeros(1, 3, *image), [image])
    expected = generator(images, [torch.zeros(1, 8, *feature)])[0]
    stride = (image[0] // feature[0], image[1] // feature[1])
    ours = make_anchors(feature, stride, scales, ratios)
    assert torch.equal(ours, expected)
    assert Anchors(tuple(scales), tuple(ratios)).per_location == generator.num_anchors_per_location()[0]


def test_anchor_templates_have_the_paper_areas_and_ratios():
    templates = Anchors().templates()  # rounding to whole pixels moves areas and ratios by up to 2 %
    widths, heights = templates[:, 2] - templates[:, 0], templates[:, 3] - templates[:, 1]
    areas = torch.tensor([128.0, 256, 512] * 3) ** 2
    torch.testing.assert_close(widths * heights, areas, rtol=0.02, atol=0)
    torch.testing.assert_close(heights / widths, torch.tensor([0.5] * 3 + [1.0] * 3 + [2.0] * 3), rtol=0.02, atol=0)
    with pytest.raises(UsageError, match="must be non-empty"):
        Anchors(scales=())


@pytest.mark.parametrize("positives, negatives, batch, fraction", [(300, 5000, 256, 0.5), (20, 5000, 256, 0.5),
                                                                   (40, 30, 64, 0.25), (0, 10, 64, 0.25),
                                                                   (40, 30, 10, 0.25)])  # ⌊2.5⌋ = 2 positives
def test_sample_labels_counts_fraction_and_membership(positives, negatives, batch, fraction):
    labels = torch.cat((torch.randint(1, 4, (positives,)), torch.zeros(negatives, dtype=torch.long),
                        torch.full((50,), -1)))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    positive, negative = sample_labels(labels, batch, fraction, torch.Generator().manual_seed(6))
    assert len(positive) == min(positives, int(batch * fraction))
    assert len(negative) == min(negatives, batch - len(positive))
    assert (labels[positive] >= 1).all() and (labels[negative] == 0).all()
    assert len(set(positive.tolist())) == len(positive) and len(set(negative.tolist())) == len(negative)
    reference = BalancedPositiveNegativeSampler(batch, fraction)
    reference_positive, reference_negative = reference([labels])
    assert (len(positive), len(negative)) == (int(reference_positive[0].sum()), int(reference_negative[0].sum()))


def test_sample_labels_is_seeded_and_uniform():
    labels = torch.tensor([1] * 10 + [0] * 10)
    first = sample_labels(labels, 4, 0.5, torch.Generator().manual_seed(7))
    again = sample_labels(labels, 4, 0.5, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    counts = torch.zeros(20)
    generator = torch.Generator().manual_seed(8)
    for _ in range(500):
        positive, _ = sample_labels(labels, 4, 0.5, generator)
        counts[positive] += 1
    assert counts[:10].min() > 60 and counts[:10].max() < 140  # each of 10 picked 2/10 of 500 = 100 times


@pytest.mark.parametrize("allow_low_quality", [False, True])
def test_match_boxes_equals_torchvision_matcher(allow_low_quality):
    generator = torch.Generator().manual_seed(9)
    truth, predictions = random_boxes(6, 100, generator), random_boxes(200, 100, generator)
    iou = torchvision.ops.box_iou(truth, predictions)
    iou[:, :3] = iou[:, 3:6]  # ties
    expected = Matcher(0.7, 0.3, allow_low_quality_matches=allow_low_quality)(iou.clone())
    ours = match_boxes(iou, 0.7, 0.3, allow_low_quality)
    assert torch.equal(ours, expected)
    assert {BELOW_LOW, BETWEEN} <= set(ours.tolist())


def test_match_boxes_thresholds_are_inclusive_at_high_and_low():
    # Faster R-CNN Sec. 3.1.2: IoU ≥ 0.7 is foreground, < 0.3 background, [0.3, 0.7) ignored; the
    # boundaries go as torchvision's Matcher puts them
    iou = torch.tensor([[0.7, 0.3, 0.69, 0.29, 0.5]])
    assert match_boxes(iou, 0.7, 0.3).tolist() == [0, BETWEEN, BETWEEN, BELOW_LOW, BETWEEN]
    assert torch.equal(match_boxes(iou, 0.7, 0.3), Matcher(0.7, 0.3)(iou.clone()))


def test_match_boxes_without_ground_truth_is_background():
    assert match_boxes(torch.zeros(0, 4), 0.7, 0.3).tolist() == [BELOW_LOW] * 4
    with pytest.raises(UsageError, match="low <= high"):
        match_boxes(torch.zeros(1, 4), 0.3, 0.7)
