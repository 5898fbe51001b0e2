"""Detection data: fmnist-scenes, voc:PATH and coco:PATH trees the tests write, box augmentation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data import detection
from visionzoo.data.detection import (
    VOC_CLASSES,
    BoxAugmentation,
    DetectionSplit,
    is_detection_data,
    load_detection_data,
    move_with_boxes,
    render_scenes,
    stack_images,
)


def blob_sources(values: list[int], per_value: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """28×28 sources: ellipses of varied extent, flat at `values[c]` for class c (so a pixel tells the class)."""
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    images, labels = [], []
    for c, value in enumerate(values):
        for i in range(per_value):
            ry, rx = 6 + 2 * i, 12 - 2 * i
            inside = ((yy - 13.5) / ry) ** 2 + ((xx - 13.5) / rx) ** 2 <= 1
            images.append((inside * value).to(torch.uint8)[None])
            labels.append(c)
    return torch.stack(images), torch.tensor(labels)


def tight_box(mask: torch.Tensor) -> list[float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return [cols.min().item(), rows.min().item(), cols.max().item() + 1.0, rows.max().item() + 1.0]


# --- fmnist-scenes ----------------------------------------------------------------------------

def test_scene_boxes_are_the_tight_boxes_of_the_objects():
    sources, labels = blob_sources([60, 120, 180, 240])
    images, targets = render_scenes(sources, labels, 60, seed=3)
    assert images.shape == (60, 1, 128, 128) and images.dtype == torch.uint8
    singles = 0
    for image, target in zip(images[:, 0], targets):
        boxes = target["boxes"]
        assert boxes.dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert 1 <= len(boxes) <= detection.MAX_OBJECTS and len(target["labels"]) == len(boxes)
        covered = torch.zeros_like(image, dtype=torch.bool)
        for (x1, y1, x2, y2), label in zip(boxes.long().tolist(), target["labels"].tolist()):
            covered[y1:y2, x1:x2] = True
            inside = image[y1:y2, x1:x2] > 0
            # Tight: every edge row and column of the box holds a lit pixel.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert 18 <= max(x2 - x1, y2 - y1) <= 68   # 20–64 px, plus the bilinear fringe
        assert not (image > 0)[~covered].any()   # no lit pixel outside every box
        if len(boxes) == 1:
            singles += 1
            assert boxes[0].tolist() == tight_box(image > 0)
            # The flat interior of the pasted blob gives its value, hence its class.
            assert image.max().item() == [60, 120, 180, 240][target["labels"].item() - 1]
    assert singles > 5


def test_every_box_stays_mostly_uncovered_by_the_others():
    sources, labels = blob_sources([200])
    _, targets = render_scenes(sources, labels, 200, seed=5)
    counts = [len(t["boxes"]) for t in targets]
    assert set(counts) == set(range(1, detection.MAX_OBJECTS + 1))
    worst = 0.0
    for target in targets:
        boxes = target["boxes"].long().tolist()
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            others = torch.zeros((128, 128), dtype=torch.bool)
            for j, (a1, b1, a2, b2) in enumerate(boxes):
                if j != i:
                    others[b1:b2, a1:a2] = True
            worst = max(worst, others[y1:y2, x1:x2].float().mean().item())
    # The rule is ≤ 30 % shared on the planned boxes; the rendered ones may differ by a pixel.
    assert 0.1 < worst <= 0.35


def test_scene_streams_are_seeded_and_prefix_stable(monkeypatch):
    monkeypatch.setattr(detection, "GENERATION_CHUNK", 20)   # the long stream spans two chunks
    sources, labels = blob_sources([90, 200])
    short_images, short_targets = render_scenes(sources, labels, 30, seed=1)
    long_images, long_targets = render_scenes(sources, labels, detection.GENERATION_CHUNK + 10, seed=1)
    other, _ = render_scenes(sources, labels, 30, seed=2)
    assert torch.equal(short_images, long_images[:30])
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(short_targets, long_targets))
    assert not torch.equal(short_images, other)


@pytest.fixture
def fake_fashion(monkeypatch):
    """Fashion-MNIST replaced by blobs: training images at value 100, test images at 250."""
    train_sources, train_labels = blob_sources([100] * 10, per_value=1)
    test_sources, test_labels = blob_sources([250] * 10, per_value=1)

    def load(name, data_dir, download):
        return ((train_sources.numpy(), train_labels.numpy()), (test_sources.numpy(), test_labels.numpy()),
                list(detection.FASHION_CLASSES))
    monkeypatch.setattr(detection, "_load_idx_set", load)
    monkeypatch.setattr(detection, "SCENE_COUNTS", (40, 12))
    detection._scenes.cache_clear()
    yield
    detection._scenes.cache_clear()


def test_fmnist_scenes_splits(fake_fashion):
    data = load_detection_data("fmnist-scenes", val_size=8, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 8, 12)
    assert data.input_size == (1, 128, 128) and data.classes == detection.FASHION_CLASSES
    assert set(data.train.names).isdisjoint(data.val.names)
    # The test scenes come from the test images only, the training and validation ones never do.
    assert data.test.images.max() == 250 and data.train.images.max() <= 100 and data.val.images.max() <= 100
    again = load_detection_data("fmnist-scenes", val_size=8, seed=0)
    other = load_detection_data("fmnist-scenes", val_size=8, seed=1)
    assert again.val.names == data.val.names and other.val.names != data.val.names
    assert sorted(other.train.names + other.val.names) == sorted(data.train.names + data.val.names)
    pixels = data.train.images.float() / 255
    assert data.mean[0] == pytest.approx(pixels.mean().item(), rel=1e-4)
    assert data.std[0] == pytest.approx(pixels.std().item(), rel=1e-3)
    # As for classification sets: a fraction, or a count; a count above a fifth of the set becomes a tenth.
    assert len(load_detection_data("fmnist-scenes", val_size=0.25).val) == 10
    assert len(load_detection_data("fmnist-scenes", val_size=5000).val) == 4
    smaller = load_detection_data("fmnist-scenes", val_size=8, train_size=20, image_size=64)
    assert len(smaller.train) == 20 and smaller.input_size == (1, 64, 64)
    assert max(max(t["boxes"][:, 2:].max().item(), 0) for t in smaller.train.targets) <= 64


def test_fetch_and_take_copy(fake_fashion):
    split = load_detection_data("fmnist-scenes", val_size=8).test
    images, targets = split.fetch(torch.tensor([3, 1]))
    assert [image.shape for image in images] == [(1, 128, 128)] * 2
    assert torch.equal(images[0], split.images[3]) and torch.equal(targets[1]["boxes"], split.targets[1]["boxes"])
    targets[0]["boxes"] += 5
    images[0] += 1
    assert not torch.equal(targets[0]["boxes"], split.targets[3]["boxes"])
    assert not torch.equal(images[0], split.images[3])
    part = split.take([4, 2])
    assert isinstance(part, DetectionSplit) and len(part) == 2 and part.names == [split.names[4], split.names[2]]
    assert torch.equal(stack_images(images), torch.stack(images))
    with pytest.raises(UsageError, match="different sizes"):
        stack_images([torch.zeros(1, 4, 4), torch.zeros(1, 5, 4)])


def test_spec_recognition_and_unknown_spec():
    assert is_detection_data("fmnist-scenes") and is_detection_data("voc:/x") and is_detection_data("coco:/y")
    assert not is_detection_data("fashion-mnist")
    with pytest.raises(UsageError, match="unknown detection data set"):
        load_detection_data("fmnist-boxes")


@pytest.mark.usefixtures("fmnist_available")
def test_real_fashion_mnist_scenes_take_class_plus_one(monkeypatch):
    from visionzoo.data.datasets import _load_idx_set
    (train_images, train_labels), _, _ = _load_idx_set("fashion-mnist", None, False)
    sources, labels = torch.from_numpy(train_images[:200]), torch.from_numpy(train_labels[:200])
    images, targets = render_scenes(sources, labels, 40, seed=0)
    every_label = torch.cat([t["labels"] for t in targets])
    assert every_label.min() >= 1 and every_label.max() <= 10
    assert set(every_label.tolist()) <= set((labels + 1).tolist())
    for image, target in zip(images[:, 0], targets):
        if len(target["boxes"]) == 1:
            assert target["boxes"][0].tolist() == tight_box(image > 0)


# --- voc:PATH ---------------------------------------------------------------------------------

def voc_xml(width: int, height: int, objects: list[tuple], extra: str = "") -> str:
    parts = [f"{extra}<annotation><filename>x.jpg</filename><size><width>{width}</width>"
             f"<height>{height}</height><depth>3</depth></size>"]
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox>"
                     f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


VOC_IMAGES = {   # id: (width, height, [(class, 1-based inclusive box, difficult)])
    "000001": (80, 60, [("dog", (11, 21, 40, 50), False), ("person", (51, 6, 70, 45), True),
                        ("pottedplant", (75, 10, 75, 20), False)]),   # xmin = xmax: one column, 1 px wide
    "000002": (64, 48, [("car", (1, 1, 64, 48), False)]),
    "000003": (72, 50, [("cat", (31, 11, 60, 40), False)]),
    "000004": (60, 60, [("bird", (5, 5, 24, 30), False), ("bird", (35, 30, 55, 55), False)]),
    "000005": (50, 70, [("bottle", (10, 20, 30, 60), False)]),
}


def write_voc(root, images=VOC_IMAGES, lists=None):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, (width, height, objects) in images.items():
        pixels = np.full((height, width, 3), 30, dtype=np.uint8)
        for _, (xmin, ymin, xmax, ymax), _ in objects:
            pixels[ymin - 1:ymax, xmin - 1:xmax] = 230   # the box's pixels, VOC's inclusive 1-based corners
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(width, height, objects))
    lists = lists or {"trainval": ["000001", "000002", "000003", "000004"], "test": ["000005"]}
    for name, ids in lists.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_tree_boxes_labels_difficult(tmp_path):
    root = write_voc(tmp_path / "VOC2007")
    data = load_detection_data(f"voc:{root}", val_size=1, seed=0, image_size=40)
    assert data.classes == VOC_CLASSES and data.input_size == (3, 40, 40)
    assert sorted(data.train.names + data.val.names) == ["000001", "000002", "000003", "000004"]
    assert data.test.names == ["000005"] and len(data.val) == 1
    every = {name: (split.images[i], split.targets[i]) for split in (data.train, data.val, data.test)
             for i, name in enumerate(split.names)}
    for image_id, (width, height, objects) in VOC_IMAGES.items():
        image, target = every[image_id]
        sx, sy = 40 / width, 40 / height
        expected = [[(xmin - 1) * sx, (ymin - 1) * sy, xmax * sx, ymax * sy] for _, (xmin, ymin, xmax, ymax), _ in objects]
        assert torch.allclose(target["boxes"], torch.tensor(expected), atol=1e-4)
        assert target["labels"].tolist() == [VOC_CLASSES.index(name) + 1 for name, _, _ in objects]
        assert target["difficult"].tolist() == [d for *_, d in objects]
        # The bright box drawn in the file sits where the converted box says, after the resize.
        x1, y1, x2, y2 = (round(v) for v in expected[0])
        grey = image.float().mean(0)
        assert grey[y1 + 1:y2 - 1, x1 + 1:x2 - 1].min() > 180


def test_voc_split_lists(tmp_path):
    root = write_voc(tmp_path / "VOC2012", lists={"train": ["000001", "000002", "000003"], "val": ["000004", "000005"]})
    data = load_detection_data(f"voc:{root}", val_size=1, image_size=32)
    assert sorted(data.test.names) == ["000004", "000005"]   # no test.txt: VOC's val is the test split
    assert sorted(data.train.names + data.val.names) == ["000001", "000002", "000003"]
    train_only = load_detection_data(f"voc:{root}", val_size=1, image_size=32, train_size=1)
    assert len(train_only.train) == 1
    tiny = write_voc(tmp_path / "tiny", lists={"train": ["000001"], "val": ["000002"]})
    with pytest.raises(UsageError, match="leave none for training"):
        load_detection_data(f"voc:{tiny}")


def test_train_size_subset_never_overlaps_the_validation_split(tmp_path):
    """--train-size picks its images from what the validation split left, not from the whole pool."""
    root = write_voc(tmp_path / "VOC2007")
    for seed in range(4):
        data = load_detection_data(f"voc:{root}", val_size=1, image_size=16, train_size=2, seed=seed)
        assert len(data.train) == 2 and len(data.val) == 1
        assert set(data.train.names).isdisjoint(data.val.names)


@pytest.mark.parametrize("objects, message", [
    ([("dog", (48, 240, 40, 371), False)],
     r"000001\.xml: object 1 box \(48, 240, 40, 371\) has zero or negative width"),
    ([("dog", (5, 5, 20, 20), False), ("cat", (5, 30, 20, 9), False)], r"object 2 box .* has zero or negative height"),
    ([("dog", (5, 5, 95, 20), False)], r"object 1 box \(5, 5, 95, 20\) lies outside the 80×60 image"),
    ([("dog", (5, 5, "nan", 20), False)], r"object 1 box .* is not finite"),
    ([("dragon", (5, 5, 20, 20), False)], r"object 1 has class 'dragon'"),
    ([("dog", (5, 5, "wide", 20), False)], r"object 1 <xmax>: 'wide' is not a number"),
])
def test_voc_bad_boxes_are_one_line_errors(tmp_path, objects, message):
    root = write_voc(tmp_path / "VOC2007")
    (root / "Annotations" / "000001.xml").write_text(voc_xml(80, 60, objects))
    with pytest.raises(DataError, match=message) as caught:
        load_detection_data(f"voc:{root}", val_size=1)
    assert "\n" not in str(caught.value)


def test_voc_refuses_entities_and_missing_trees(tmp_path):
    root = write_voc(tmp_path / "VOC2007")
    bomb = '<!DOCTYPE a [<!ENTITY x "xxxxxxxx">]>'
    (root / "Annotations" / "000002.xml").write_text(voc_xml(64, 48, [("car", (1, 1, 64, 48), False)], bomb))
    with pytest.raises(DataError, match=r"000002\.xml: holds a <!DOCTYPE or <!ENTITY"):
        load_detection_data(f"voc:{root}", val_size=1)
    with pytest.raises(UsageError, match="did you mean voc:"):
        load_detection_data(f"voc:{tmp_path}", val_size=1)
    (root / "Annotations" / "000003.xml").unlink()
    (root / "Annotations" / "000002.xml").write_text(voc_xml(64, 48, [("car", (1, 1, 64, 48), False)]))
    with pytest.raises(DataError, match=r"000003\.xml: missing"):
        load_detection_data(f"voc:{root}", val_size=1)


def test_voc_images_must_exist_and_match_their_annotation(tmp_path):
    root = write_voc(tmp_path / "VOC2007")
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(root / "JPEGImages" / "000003.jpg")
    with pytest.raises(DataError, match=r"000003\.jpg: image of 30×30 pixels but its annotation says 72×50"):
        load_detection_data(f"voc:{root}", val_size=1)
    (root / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(DataError, match=r"000003\.jpg: image missing"):
        load_detection_data(f"voc:{root}", val_size=1)
    (root / "JPEGImages" / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"000003\.jpg: cannot decode image"):
        load_detection_data(f"voc:{root}", val_size=1)


# --- coco:PATH --------------------------------------------------------------------------------

COCO_CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def write_coco(root, train_annotations=None):
    (root / "annotations").mkdir(parents=True)
    sizes = {"train2017": [(1, 80, 60), (2, 64, 48), (3, 50, 50), (4, 70, 40)], "val2017": [(10, 60, 60)]}
    for folder, images in sizes.items():
        (root / folder).mkdir()
        for image_id, width, height in images:
            Image.fromarray(np.full((height, width), 90, dtype=np.uint8)).save(root / folder / f"{image_id:012d}.png")
    annotations = {
        "train2017": train_annotations or [
            {"id": 1, "image_id": 1, "category_id": 18, "bbox": [10.5, 20, 30, 25], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 80, 60], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 20, 10], "iscrowd": 0},
            {"id": 4, "image_id": 4, "category_id": 1, "bbox": [60, 30, 10.4, 10.4], "iscrowd": 0}],
        "val2017": [{"id": 9, "image_id": 10, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 0}]}
    for folder, images in sizes.items():
        content = {"images": [{"id": i, "file_name": f"{i:012d}.png", "width": w, "height": h} for i, w, h in images],
                   "annotations": annotations[folder], "categories": COCO_CATEGORIES}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(content))
    return root


def test_coco_tree_boxes_labels_crowd(tmp_path):
    root = write_coco(tmp_path / "coco")
    data = load_detection_data(f"coco:{root}", val_size=1, image_size=20)
    assert data.classes == ["person", "car", "dog"]   # labels 1..3 in increasing category id
    assert data.input_size == (3, 20, 20) and data.test.names == ["000000000010.png"]
    every = {name: split.targets[i] for split in (data.train, data.val, data.test) for i, name in enumerate(split.names)}
    assert len(every) == 5
    first = every["000000000001.png"]
    scale = torch.tensor([20 / 80, 20 / 60, 20 / 80, 20 / 60])
    assert torch.allclose(first["boxes"], torch.tensor([[10.5, 20, 40.5, 45], [0, 0, 80, 60]]) * scale)
    assert first["labels"].tolist() == [3, 1] and first["iscrowd"].tolist() == [False, True]
    assert not first["difficult"].any()
    assert len(every["000000000003.png"]["boxes"]) == 0   # an image without annotations keeps no box
    # A box sticking out by less than a pixel (rounding in the file) is clipped to the image.
    assert torch.allclose(every["000000000004.png"]["boxes"],
                          torch.tensor([[60, 30, 70, 40]]) * torch.tensor([20 / 70, 20 / 40, 20 / 70, 20 / 40]))
    assert torch.allclose(data.test.targets[0]["boxes"], torch.tensor([[1, 2, 4, 6]]) * (20 / 60))


@pytest.mark.parametrize("bbox, clipped", [([-0.5, -0.25, 10, 12], [0, 0, 9.5, 11.75]),
                                            ([-1.0, 3, 11, 5], [0, 3, 10, 8])])
def test_boxes_sticking_out_left_or_top_by_at_most_a_pixel_are_clipped_to_zero(tmp_path, bbox, clipped):
    """EDGE_TOLERANCE on the low edges too: x1, y1 in [−1, 0) become 0 (a VOC xmin of 0 gives x1 = −1)."""
    annotation = {"id": 7, "image_id": 1, "category_id": 1, "bbox": bbox, "iscrowd": 0}
    root = write_coco(tmp_path / "coco", train_annotations=[annotation])
    data = load_detection_data(f"coco:{root}", val_size=1, image_size=20)
    every = {name: split.targets[i] for split in (data.train, data.val) for i, name in enumerate(split.names)}
    scale = torch.tensor([20 / 80, 20 / 60, 20 / 80, 20 / 60])
    assert torch.allclose(every["000000000001.png"]["boxes"], torch.tensor([clipped]) * scale)


@pytest.mark.parametrize("annotation, message", [
    ({"bbox": [10, 10, 0, 5]}, r"instances_train2017\.json: annotation id 7 \(image '000000000001\.png'\) "
                               r"box \[10, 10, 0, 5\] has zero or negative width"),
    ({"bbox": [70, 10, 20, 5]}, r"box \[70, 10, 20, 5\] lies outside the 80×60 image"),
    ({"category_id": 99}, r"annotation id 7 .* has category_id 99"),
    ({"image_id": 42}, r"annotation id 7 refers to image id 42"),
])
def test_coco_bad_annotations_are_one_line_errors(tmp_path, annotation, message):
    bad = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0, **annotation}
    root = write_coco(tmp_path / "coco", train_annotations=[bad])
    with pytest.raises(DataError, match=message):
        load_detection_data(f"coco:{root}", val_size=1)


def test_coco_refuses_a_category_id_given_twice(tmp_path):
    root = write_coco(tmp_path / "coco")
    for path in (root / "annotations").iterdir():
        content = json.loads(path.read_text())
        content["categories"].append({"id": 1, "name": "another person"})
        path.write_text(json.dumps(content))
    with pytest.raises(DataError, match="instances_.*json: category id 1 is given twice"):
        load_detection_data(f"coco:{root}", val_size=1)


def test_coco_refuses_file_names_outside_its_folder(tmp_path):
    root = write_coco(tmp_path / "coco")
    path = root / "annotations" / "instances_val2017.json"
    content = json.loads(path.read_text())
    content["images"][0]["file_name"] = "../train2017/000000000001.png"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match="points outside"):
        load_detection_data(f"coco:{root}", val_size=1)
    with pytest.raises(UsageError, match="no annotations/ folder"):
        load_detection_data(f"coco:{root / 'train2017'}")


# --- augmentation -----------------------------------------------------------------------------

def rectangle_scene(box: list[int], size: tuple[int, int] = (48, 64)) -> tuple[torch.Tensor, dict]:
    image = torch.zeros((1, *size), dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 255
    target = {"boxes": torch.tensor([box], dtype=torch.float32), "labels": torch.tensor([4]),
              "difficult": torch.tensor([True])}
    return image, target


def test_flip_twice_is_the_identity():
    image, target = rectangle_scene([5, 7, 20, 30])
    image = torch.rand((3, 48, 64))
    once, flipped = move_with_boxes(image, target, flip=True)
    assert torch.equal(flipped["boxes"], torch.tensor([[44.0, 7, 59, 30]]))   # x ↦ W − x
    twice, back = move_with_boxes(once, flipped, flip=True)
    assert torch.equal(twice, image) and torch.equal(back["boxes"], target["boxes"])
    assert back["labels"].tolist() == [4] and back["difficult"].tolist() == [True]


def test_augmented_boxes_follow_the_drawn_rectangles():
    augment = BoxAugmentation(flip=True, scale=(0.7, 1.3))
    generator = torch.Generator().manual_seed(0)
    boxes = [[8, 6, 30, 20], [20, 14, 50, 40], [2, 2, 62, 46], [40, 30, 60, 44]]
    scenes = [rectangle_scene(box) for box in boxes] * 8
    images = torch.stack([image for image, _ in scenes])
    for _ in range(3):
        moved_images, moved = augment(images, [target for _, target in scenes], generator)
        assert moved_images.shape == images.shape and moved_images.dtype == torch.uint8
        for image, target in zip(moved_images, moved):
            lit = image[0] > 127
            if len(target["boxes"]) == 0:   # dropped: most of the rectangle left the canvas
                assert lit.sum() < 0.5 * min((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
                continue
            assert target["labels"].tolist() == [4] and target["difficult"].tolist() == [True]
            box = target["boxes"][0]
            assert box[0] >= 0 and box[1] >= 0 and box[2] <= 64 and box[3] <= 48
            assert torch.allclose(box, torch.tensor(tight_box(lit)), atol=1.0)


def test_horizontal_flip_has_probability_one_half():
    """BoxAugmentation flips each image with probability ½: over 400 seeded draws about half are mirrored."""
    image, target = rectangle_scene([5, 7, 20, 30])
    images, targets = image.expand(400, -1, -1, -1), [target] * 400
    _, moved = BoxAugmentation(flip=True, scale=None)(images, targets, torch.Generator().manual_seed(0))
    flipped = sum(torch.equal(t["boxes"], torch.tensor([[44.0, 7, 59, 30]])) for t in moved)
    kept = sum(torch.equal(t["boxes"], target["boxes"]) for t in moved)
    assert flipped + kept == 400 and 150 < flipped < 250   # Binomial(400, ½): 200 ± 10


def test_boxes_losing_most_of_their_area_are_dropped():
    image, target = rectangle_scene([0, 0, 10, 10])
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 10, 40, 30]]), "labels": torch.tensor([1, 2]),
              "difficult": torch.tensor([False, True])}
    # Scale 1.5 and a crop from the bottom-right corner: the first box (15×15 after scaling) leaves
    # the 48×64 canvas entirely, the second (30×30 at 30..60, 15..45) keeps 28×21 of it (65 %).
    _, moved = move_with_boxes(image, target, scale=1.5, offset=(1.0, 1.0))
    assert moved["labels"].tolist() == [2] and moved["difficult"].tolist() == [True]
    assert torch.allclose(moved["boxes"], torch.tensor([[30.0 - 32, 15 - 24, 60 - 32, 45 - 24]]).clamp_min(0))


def test_boxes_keeping_under_30_percent_of_their_area_are_dropped_the_others_kept():
    # KEEP_AREA: scale 2 turns the 48×64 canvas into 96×128 and offset (0, 0) keeps its top-left
    # 48×64; the three boxes, 20×20 after scaling from x = 54, 57, 59, keep 50 %, 35 % and 25 % of it.
    assert detection.KEEP_AREA == 0.3
    image = torch.zeros((1, 48, 64), dtype=torch.uint8)
    target = {"boxes": torch.tensor([[27.0, 5, 37, 15], [28.5, 5, 38.5, 15], [29.5, 5, 39.5, 15]]),
              "labels": torch.tensor([1, 2, 3])}
    _, moved = move_with_boxes(image, target, scale=2.0, offset=(0.0, 0.0))
    assert moved["labels"].tolist() == [1, 2]
    assert torch.allclose(moved["boxes"], torch.tensor([[54.0, 10, 64, 30], [57, 10, 64, 30]]))


@pytest.mark.parametrize(("offset", "box"), [((0.0, 1.0), [36, 4, 56, 20]), ((1.0, 0.0), [4, 28, 24, 44])])
def test_crop_offset_moves_rows_and_columns_each_by_its_own_fraction(offset, box):
    # offset = (rows, columns) of the slack: scale 2 leaves 48 rows and 64 columns of it, so the window
    # starts at row 48·offset[0] and column 64·offset[1]; both boxes land on 8..48 × 8..40.
    image, target = rectangle_scene(box)
    moved_image, moved = move_with_boxes(image, target, scale=2.0, offset=offset)
    assert moved["labels"].tolist() == [4]
    assert torch.allclose(moved["boxes"], torch.tensor([[8.0, 8, 48, 40]]))
    assert torch.allclose(moved["boxes"][0], torch.tensor(tight_box(moved_image[0] > 127)), atol=1.0)
