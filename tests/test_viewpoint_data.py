"""The `renders` viewpoint data (data/viewpoint.py): shapes, label ranges, determinism, fixed test
split, user mesh folders and their errors."""
from __future__ import annotations

import itertools
import tarfile

import pytest
import torch

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data import viewpoint
from visionzoo.data.render import box, render, superquadric, write_off


@pytest.fixture
def small_sets(monkeypatch):
    monkeypatch.setattr(viewpoint, "RENDER_SIZES", (60, 20))
    monkeypatch.setattr(viewpoint, "GENERATION_CHUNK", 25)   # several chunks, so chunking is exercised


def test_shapes_classes_and_label_ranges(small_sets):
    bundle = viewpoint.load_render_data("renders", image_size=32)
    assert bundle.classes == sorted(viewpoint.CATEGORY_BUILDERS)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (54, 6, 20)
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == torch.int64 and split.labels.shape[1] == 4
        category, angles = split.labels[:, 0], split.labels[:, 1:]
        assert category.min() >= 0 and category.max() < len(bundle.classes)
        assert angles.min() >= 0 and angles.max() <= 359
    elevation, inplane = bundle.train.labels[:, 2], bundle.train.labels[:, 3]
    signed = lambda a: torch.where(a > 180, a - 360, a)
    assert signed(elevation).min() >= -10 and signed(elevation).max() <= 40
    assert signed(inplane).abs().max() <= 15
    assert len(bundle.mean) == 3 and len(bundle.std) == 3


def test_generation_is_deterministic_and_the_test_split_ignores_the_seed(small_sets):
    a = viewpoint.load_render_data("renders", seed=0, image_size=32)
    viewpoint._builtin.cache_clear()
    b = viewpoint.load_render_data("renders", seed=1, image_size=32)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    together = lambda bundle: torch.cat([bundle.train.labels, bundle.val.labels])
    assert torch.equal(together(a).sort(0).values, together(b).sort(0).values)
    assert not torch.equal(a.val.labels, b.val.labels)


def test_train_and_test_draw_different_viewpoints_and_backgrounds():
    pools = [[box((0, 0.2, 0), (1, 0.5, 0.5))]]
    train_images, train_labels = viewpoint.render_set(pools, 30, viewpoint.TRAIN_SEED, 32)
    test_images, test_labels = viewpoint.render_set(pools, 30, viewpoint.TEST_SEED, 32)
    assert not torch.equal(train_labels, test_labels)
    # Corner pixels are background (the object stays near the centre): no test background repeats a training one.
    corners = lambda images: images[:, :, :2, :2].reshape(len(images), -1).float()
    assert torch.cdist(corners(test_images), corners(train_images)).min() > 0


def test_labels_are_the_rendered_viewpoint(monkeypatch):
    # One image redone from its own label (whole degrees), at the same distance and centre, differs from
    # the stored one only by the rounding of its angles, the pixel noise and the background (black here).
    monkeypatch.setattr(viewpoint, "CENTRE_JITTER", 0.0)
    monkeypatch.setattr(viewpoint, "DISTANCE_RANGE", (3.0, 3.0))
    shape = superquadric(0.3, 0.3, (0.3, 1.0, 0.5))
    pools = [[shape]]
    monkeypatch.setattr(viewpoint, "backgrounds", lambda generator, n, size: torch.zeros(n, 3, size, size))
    images, labels = viewpoint.render_set(pools, 4, 7, 48)
    signed = lambda a: torch.where(a > 180, a - 360, a).float()
    for image, label in zip(images, labels):
        _, alpha = render([shape], label[1:2].float(), signed(label[2:3]), signed(label[3:4]), torch.tensor([3.0]),
                          size=48, fov=viewpoint.FIELD_OF_VIEW)
        drawn = image.float().sum(0) > 30          # a lit surface gives ≥ 0.2·0.2·255 ≈ 10 per channel
        expected = alpha[0, 0] > 0
        assert (drawn ^ expected).float().sum() < 0.1 * expected.float().sum()


def test_user_mesh_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(viewpoint, "RENDER_SIZES", (20, 10))
    for category, shape in (("bar", box((0, 0.5, 0), (0.2, 1, 0.2))), ("blob", superquadric(0.5, 1.0, (1, 0.5, 0.3)))):
        (tmp_path / category).mkdir()
        write_off(shape, tmp_path / category / "a.off")
    bundle = viewpoint.load_render_data(f"renders:{tmp_path}", image_size=24, val_size=4)
    assert bundle.classes == ["bar", "blob"]
    assert bundle.train.images.shape == (16, 3, 24, 24) and len(bundle.test) == 10


def test_bad_mesh_in_user_folder_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(viewpoint, "RENDER_SIZES", (20, 10))
    (tmp_path / "chair").mkdir()
    (tmp_path / "chair" / "broken.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    with pytest.raises(DataError) as error:
        viewpoint.load_render_data(f"renders:{tmp_path}")
    assert str(tmp_path / "chair" / "broken.obj") in str(error.value) and "\n" not in str(error.value)


def test_bad_specs(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        viewpoint.load_render_data(f"renders:{tmp_path / 'absent'}")
    with pytest.raises(UsageError, match="no mesh files"):
        viewpoint.load_render_data(f"renders:{tmp_path}")
    with pytest.raises(UsageError, match="unknown viewpoint data set"):
        viewpoint.load_render_data("renderz")


def test_cgal_meshes_absent_is_empty(tmp_path):
    assert viewpoint.cgal_meshes(tmp_path / "absent.tar.gz") == {}


def test_a_bin_is_read_as_its_angle_and_the_soft_label_window_is_the_ceiling_of_three_sigma():
    # Render for CNN: bin v of 360 one-degree bins is the angle v° (labels are the bins themselves), a coarser head's
    # bin k is k·360/bins; with a given σ the soft labels reach ⌈3σ⌉ bins either side
    from visionzoo.tasks.viewpoint import ANGLES, predicted_viewpoints, soft_label_settings
    logits = torch.full((1, 3, 360), -5.0)
    logits[0, 0, 30], logits[0, 1, 5], logits[0, 2, 359] = 1.0, 1.0, 1.0
    assert predicted_viewpoints(logits).tolist() == [[30.0, 5.0, 359.0]]
    coarse = torch.zeros(1, 3, 36)
    coarse[0, :, 3] = 1.0
    assert predicted_viewpoints(coarse).tolist() == [[30.0, 30.0, 30.0]]
    assert soft_label_settings(1.5) == {angle: (1.5, 5) for angle in ANGLES}


@pytest.fixture
def viewpoints(monkeypatch):
    """Every call of the renderer: the angles (B, 3) = (θ, φ, ψ) in degrees and the lights (B, 3) it was given."""
    calls = []
    original = viewpoint.render

    def recording(meshes, azimuth, elevation, inplane, *args, **kwargs):
        calls.append((torch.stack([azimuth, elevation, inplane], 1), kwargs["light"]))
        return original(meshes, azimuth, elevation, inplane, *args, **kwargs)

    monkeypatch.setattr(viewpoint, "render", recording)
    return calls


def test_labels_are_the_rendered_angles_rounded_to_whole_degrees_mod_360(viewpoints):
    """(θ, φ, ψ) each rounded to the nearest whole degree, negative ones taken mod 360 (φ = −5.6° is 354)."""
    pools = [[box((0, 0.2, 0), (1, 0.5, 0.5))], [superquadric(0.3, 0.3, (0.3, 1.0, 0.5))]]
    _, labels = viewpoint.render_set(pools, 60, 5, 16)
    angles = torch.cat([angles for angles, _ in viewpoints])
    assert (angles[:, 1:] < 0).any() and (angles.frac().abs() > 0.5).any()
    expected = [[round(a) % 360 for a in row] for row in angles.tolist()]
    assert labels[:, 1:].tolist() == expected


def test_each_image_is_lit_from_a_random_direction_of_the_cameras_hemisphere(viewpoints):
    """One unit light direction per image, towards the camera's side (z > 0 in the camera frame: the renderer's
    default light (0, 0, 1) is the camera's own), varying from image to image."""
    _, _ = viewpoint.render_set([[box((0, 0.2, 0), (1, 0.5, 0.5))]], 60, 5, 16)
    light = torch.cat([light for _, light in viewpoints])
    assert light.shape == (60, 3)
    torch.testing.assert_close(light.norm(dim=1), torch.ones(60))
    assert (light[:, 2] > 0).all()
    assert (light[:, 0] > 0.3).any() and (light[:, 0] < -0.3).any() and (light[:, 1] > 0.3).any()


def test_the_test_instances_are_the_last_three_of_twelve_and_never_trained_on(monkeypatch):
    """Render for CNN holds out shapes: each category's instances 0 … 8 train, 9 … 11 test. (A stand-in builder
    makes its k-th mesh a box k + 1 times as long as it is wide, so each mesh tells which one it is.)"""
    made = itertools.count()
    monkeypatch.setattr(viewpoint, "CATEGORY_BUILDERS",
                        dict.fromkeys(("b", "a"), lambda rng: box((0, 0, 0), (1.0, 1.0, 1.0 + next(made)))))
    categories, train, test = viewpoint.procedural_pools()

    def made_as(mesh) -> int:
        extent = mesh.vertices.amax(0) - mesh.vertices.amin(0)
        return round((extent[2] / extent[0]).item()) - 1
    assert categories == ["a", "b"]
    assert [[made_as(m) for m in meshes] for meshes in train] == [list(range(9)), list(range(12, 21))]
    assert [[made_as(m) for m in meshes] for meshes in test] == [[9, 10, 11], [21, 22, 23]]


def test_the_cgal_elephant_is_held_out_for_testing_and_the_other_animals_train(monkeypatch):
    """Of the four CGAL quadrupeds, bull, camel and cow join `animal`'s training meshes, the elephant its test ones."""
    if not viewpoint.CGAL_DATA.exists():
        pytest.skip("libcgal-demo not installed")
    monkeypatch.setattr(viewpoint, "procedural_pools", lambda: (["animal", "car"], [[], []], [[], []]))
    categories, train, test = viewpoint.builtin_pools()
    assert (len(train[0]), len(test[0])) == (3, 1) and train[1] == test[1] == []
    with tarfile.open(viewpoint.CGAL_DATA) as tar:   # an OFF file's counts line: vertices, faces, edges
        counts = {name: int(tar.extractfile(f"data/meshes/{name}.off").read().split()[1])
                  for name in ("bull", "camel", "cow", "elephant")}
    assert len(test[0][0].vertices) == counts["elephant"]
    assert sorted(len(m.vertices) for m in train[0]) == sorted(counts[name] for name in ("bull", "camel", "cow"))
