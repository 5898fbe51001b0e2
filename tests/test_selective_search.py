"""Selective search (Uijlings et al. 2013) over Felzenszwalb–Huttenlocher segments, and proposal files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchvision.ops import box_iou

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data.proposals import felzenszwalb_segmentation, load_proposals, selective_search


def colour_image(background, shapes, size=(96, 128)) -> torch.Tensor:
    """(3, H, W) float image: a flat background and flat-coloured masks painted in order."""
    image = torch.empty((3, *size))
    image[:] = torch.tensor(background)[:, None, None]
    for mask, colour in shapes:
        image[:, mask] = torch.tensor(colour)[:, None]
    return image


def rectangle(size, x1, y1, x2, y2) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[y1:y2, x1:x2] = True
    return mask


def three_shapes(size=(128, 128)):
    yy, xx = torch.meshgrid(torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32),
                            indexing="ij")
    masks = [rectangle(size, 15, 10, 60, 50),
             (yy - 90) ** 2 + (xx - 40) ** 2 < 20 ** 2,
             (yy > 60) & (yy < 115) & (xx > 70) & (xx - 70 < yy - 60)]
    image = colour_image([0.2, 0.3, 0.25], zip(masks, [[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.2, 0.9]]), size)
    noise = 0.03 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    return (image + noise).clamp(0, 1), masks


def tight_box(mask: torch.Tensor) -> list[float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return [cols.min().item(), rows.min().item(), cols.max().item() + 1.0, rows.max().item() + 1.0]


# --- Felzenszwalb & Huttenlocher --------------------------------------------------------------

@pytest.mark.parametrize("sigma, min_size", [(0.0, 20), (0.8, 150)])
def test_flat_rectangles_are_segmented_exactly(sigma, min_size):
    """Unsmoothed, each flat area is one component. Smoothed, the blurred rings along the edges
    (flat along the edge, so Int = 0 and k/|C| keeps them apart) are components of their own until
    the min_size pass joins them, along their lightest edge, to the side they resemble."""
    size = (60, 80)
    first, second = rectangle(size, 5, 8, 30, 40), rectangle(size, 45, 20, 75, 55)
    image = colour_image([0.1, 0.1, 0.1], [(first, [0.9, 0.2, 0.2]), (second, [0.2, 0.2, 0.9])], size)
    labels = felzenszwalb_segmentation(image, k=100, sigma=sigma, min_size=min_size)
    assert labels.shape == size and labels.dtype == torch.int64
    assert sorted(labels.unique().tolist()) == [0, 1, 2]
    for mask in (first, second, ~(first | second)):
        assert (labels == labels[mask][0]).equal(mask)


def test_regions_are_connected_and_at_least_min_size():
    image, _ = three_shapes()
    for min_size in (20, 80):
        labels = felzenszwalb_segmentation(image, k=50, min_size=min_size).numpy()
        for region in range(labels.max() + 1):
            mask = labels == region
            assert mask.sum() >= min_size
            _, pieces = ndimage.label(mask, structure=np.ones((3, 3)))   # 8-connected, as the graph
            assert pieces == 1


def test_larger_k_gives_no_more_regions():
    shapes, _ = three_shapes()
    texture = torch.rand((3, 64, 64), generator=torch.Generator().manual_seed(1))
    for image in (shapes, texture, (texture * 255).to(torch.uint8)):
        counts = [int(felzenszwalb_segmentation(image, k=k, min_size=1).max()) + 1 for k in (10, 50, 200, 800, 5000)]
        assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


@pytest.mark.parametrize("third, regions", [(8.5, [0, 0, 0]), (9.5, [0, 0, 1])])
def test_merging_compares_the_edge_with_both_components_int_plus_k_over_size(third, regions):
    """Eq. 3–5 by hand on a 1×3 grey strip 0, 4, `third` (0–255 units), k = 5: the edge of weight 4 joins
    the first two pixels (4 ≤ 0 + 5/1 for both), so Int = 4 and their threshold is 4 + 5/2 = 6.5; the
    last pixel's is 5/1. An edge of 4.5 is below both and merges; one of 5.5 is below 6.5 only and must not."""
    image = torch.tensor([0.0, 4.0, third], dtype=torch.float64).view(1, 1, 3) / 255
    assert felzenszwalb_segmentation(image, k=5, sigma=0, min_size=1)[0].tolist() == regions


def test_bad_segmentation_arguments():
    with pytest.raises(UsageError, match="k > 0"):
        felzenszwalb_segmentation(torch.zeros(3, 8, 8), k=0)
    with pytest.raises(UsageError, match="one \\(C, H, W\\) image"):
        felzenszwalb_segmentation(torch.zeros(2, 3, 8, 8))


# --- selective search -------------------------------------------------------------------------

def test_each_shape_has_a_proposal():
    image, masks = three_shapes()
    boxes = selective_search(image)
    truth = torch.tensor([tight_box(mask) for mask in masks])
    assert (box_iou(truth, boxes).max(1).values >= 0.9).all()
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 128).all()
    assert len(torch.unique(boxes, dim=0)) == len(boxes)
    assert [0.0, 0.0, 128.0, 128.0] in boxes.tolist()   # the hierarchy's top: the whole image


def test_ranking_is_seeded_and_the_set_is_not():
    image, _ = three_shapes()
    settings = dict(strategies=("colour+size+fill+texture", "size+fill", "texture"), ks=(50, 100))
    first, again, other = (selective_search(image, seed=s, **settings) for s in (0, 0, 1))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, other.tolist()))
    assert len(selective_search(image, max_boxes=5, **settings)) == 5
    # More strategies and ks never lose a box of the single-strategy run.
    single = set(map(tuple, selective_search(image).tolist()))
    assert single <= set(map(tuple, first.tolist()))


def test_grey_images_and_bad_strategies():
    grey = torch.zeros((1, 64, 64), dtype=torch.uint8)
    grey[0, 10:40, 20:50] = 200
    boxes = selective_search(grey, ks=(50,))
    assert (box_iou(torch.tensor([[20.0, 10, 50, 40]]), boxes).max() >= 0.9)
    with pytest.raises(UsageError, match="unknown term 'shape'"):
        selective_search(grey, strategies=("colour+shape",))


def strip(colours, widths) -> torch.Tensor:
    """(3, 1, W) image: flat runs of the given RGB colours and widths, left to right."""
    return torch.cat([torch.tensor(c)[:, None, None].expand(3, 1, w) for c, w in zip(colours, widths)], 2)


def hierarchy(image, strategy: str, seed: int = 0) -> torch.Tensor:
    """Every box of one strategy on flat, far-apart colours: each run is one initial region (k = 1, no blur)."""
    return selective_search(image, strategies=(strategy,), ks=(1,), sigma=0.0, seed=seed)


def box_set(boxes: torch.Tensor) -> set[tuple[float, ...]]:
    return set(map(tuple, boxes.tolist()))


def test_size_similarity_merges_the_smallest_pair_first():
    """s_size = 1 − (|r_i| + |r_j|)/|im|: runs of 3, 1 and 2 pixels; (1, 2) scores 1 − 3/6 > (3, 1)'s 1 − 4/6."""
    image = strip([[0.1] * 3, [0.5] * 3, [0.9] * 3], [3, 1, 2])
    assert box_set(hierarchy(image, "size")) == {(0, 0, 3, 1), (3, 0, 4, 1), (4, 0, 6, 1), (3, 0, 6, 1), (0, 0, 6, 1)}


def test_colour_similarity_is_the_histogram_intersection():
    """s_colour = Σ min(c_i, c_j): flat runs share one bin per equal channel, so the left pair (2 of 3
    channels alike) scores 2/3 and merges before the right pair (1 of 3)."""
    image = strip([[0.1, 0.1, 0.1], [0.1, 0.1, 0.9], [0.9, 0.9, 0.9]], [2, 2, 2])
    assert box_set(hierarchy(image, "colour")) == {(0, 0, 2, 1), (2, 0, 4, 1), (4, 0, 6, 1), (0, 0, 4, 1), (0, 0, 6, 1)}


def test_fill_similarity_prefers_the_pair_whose_box_they_fill():
    """s_fill = 1 − (|BB_ij| − |r_i| − |r_j|)/|im| on a 4×4 image: the two top 2×2 squares fill their
    2×4 box (1), each with the bottom 2×4 half leaves 4 of a 4×4 box empty (1 − 4/16)."""
    image = torch.empty((3, 4, 4))
    image[:, :2, :2] = torch.tensor([0.1, 0.1, 0.1])[:, None, None]
    image[:, :2, 2:] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    image[:, 2:] = torch.tensor([0.1, 0.9, 0.9])[:, None, None]
    assert box_set(hierarchy(image, "fill")) == {(0, 0, 2, 2), (2, 0, 4, 2), (0, 2, 4, 4), (0, 0, 4, 2), (0, 0, 4, 4)}


def test_merged_histograms_are_size_weighted_means():
    """Eq. 4: C | A | B | D of 2, 1, 5, 4 pixels; A and B share two channels' bins and merge first.
    Their third channel then weighs A 1/6 and B 5/6, so with colour + size D (sharing B's bin) scores
    5/18 + 1 − 10/12 against C's (sharing A's) 1/18 + 1 − 8/12 and joins next. Unweighted
    halves (1/6 each) would pick C."""
    c, a, b, d = [0.1, 0.1, 0.3], [0.5, 0.5, 0.3], [0.5, 0.5, 0.7], [0.9, 0.9, 0.7]
    boxes = box_set(hierarchy(strip([c, a, b, d], [2, 1, 5, 4]), "colour+size"))
    assert {(2, 0, 8, 1), (2, 0, 12, 1)} <= boxes and (0, 0, 8, 1) not in boxes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_are_ranked_by_rnd_times_hierarchy_position(seed):
    """Sec. 4.2: the hierarchy's j-th box of n gets position n + 1 − j (the whole image 1) and the value
    RND × position, RND from the seeded stream; boxes come out in increasing value."""
    image = strip([[0.1] * 3, [0.5] * 3, [0.9] * 3], [3, 1, 2])
    # the size strategy's hierarchy: the initial runs, then (1, 2) merged, then everything
    order = [(0, 0, 3, 1), (3, 0, 4, 1), (4, 0, 6, 1), (3, 0, 6, 1), (0, 0, 6, 1)]
    values = np.random.default_rng(seed).random(5) * np.arange(5, 0, -1)
    expected = [order[i] for i in np.argsort(values)]
    assert [tuple(b) for b in hierarchy(image, "size", seed).tolist()] == expected


def test_texture_responses_are_positive_parts_of_oriented_derivatives():
    """θ = 0, 45°, …, 315°: max(0, cos θ ∂x + sin θ ∂y), scaled by the largest. A ramp along x has ∂y = 0,
    so an interior pixel gives cos θ⁺; the same ramp along y gives sin θ⁺."""
    from visionzoo.data.proposals import _texture_responses
    ramp = (torch.arange(16.0).repeat(16, 1) / 15)[None].double().numpy()
    angles = np.arange(8) * np.pi / 4
    along_x = _texture_responses(ramp).reshape(8, 16, 16)[:, 8, 8]
    along_y = _texture_responses(ramp.transpose(0, 2, 1)).reshape(8, 16, 16)[:, 8, 8]
    np.testing.assert_allclose(along_x, np.maximum(0, np.cos(angles)), atol=1e-6)
    np.testing.assert_allclose(along_y, np.maximum(0, np.sin(angles)), atol=1e-6)


# --- proposals from a file --------------------------------------------------------------------

def test_load_proposals_from_json_and_npz(tmp_path):
    boxes = {"000005": [[1.5, 2, 30, 40], [0, 0, 10, 10]], "000007": []}
    (tmp_path / "p.json").write_text(json.dumps(boxes))
    loaded = load_proposals(tmp_path / "p.json")
    assert loaded["000005"].dtype == torch.float32
    assert loaded["000005"].tolist() == boxes["000005"] and loaded["000007"].shape == (0, 4)
    np.savez(tmp_path / "p.npz", **{name: np.asarray(rows, dtype=np.float32).reshape(-1, 4)
                                     for name, rows in boxes.items()})
    from_npz = load_proposals(tmp_path / "p.npz")
    assert all(torch.equal(from_npz[name], loaded[name]) for name in boxes)


@pytest.mark.parametrize("content, message", [
    ({"a.jpg": [[5, 5, 5, 9]]}, r"p\.json: image 'a\.jpg' proposal 1 \(5, 5, 5, 9\) has zero or negative width"),
    ({"a.jpg": [[0, 0, 4, 4], [5, 9, 8, 2]]}, r"proposal 2 \(5, 9, 8, 2\) has zero or negative height"),
    ({"a.jpg": [[-3, 0, 4, 4]]}, r"starts at a negative coordinate"),
    ({"a.jpg": [[0, 0, 4]]}, r"shape \(1, 3\)"),
    ([[0, 0, 4, 4]], r"must be an object"),
])
def test_bad_proposal_files_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "p.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=message):
        load_proposals(tmp_path / "p.json")


def test_non_finite_and_missing_proposal_files(tmp_path):
    (tmp_path / "p.json").write_text('{"a": [[0, 0, NaN, 4]]}')
    with pytest.raises(DataError, match="is not finite"):
        load_proposals(tmp_path / "p.json")
    with pytest.raises(UsageError, match="no such proposals file"):
        load_proposals(tmp_path / "absent.json")
