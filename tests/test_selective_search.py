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
