"""Video data: moving-fmnist's motions and its claim that no single frame tells them, the Moving MNIST
reader, clip augmentation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import ks_2samp
from torch import nn

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data import datasets, video
from visionzoo.data.video import (
    MOTION_CLASSES,
    ClipAugmentation,
    ClipNormalizer,
    label_permutation,
    load_video_data,
    moving_clips,
    moving_fmnist_splits,
    render,
    spatial_crop,
    swap,
    temporal_crop,
    trajectories,
)

K = len(MOTION_CLASSES)
CLASS = {name: k for k, name in enumerate(MOTION_CLASSES)}


def blobs(count: int, value: int = 200, seed: int = 0) -> torch.Tensor:
    """Asymmetric 28×28 test objects: a filled rectangle of random size with a notch, all pixels = value."""
    generator = torch.Generator().manual_seed(seed)
    objects = torch.zeros(count, 1, 28, 28, dtype=torch.uint8)
    for i in range(count):
        h, w = torch.randint(8, 20, (2,), generator=generator).tolist()
        objects[i, 0, 14 - h // 2:14 + (h + 1) // 2, 14 - w // 2:14 + (w + 1) // 2] = value
        objects[i, 0, 14 - h // 2:14, 14:14 + (w + 1) // 2] = 0
    return objects


def centroid(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mass, column, row) of (..., H, W) frames, pixel centres at index + 0.5."""
    weights = frames.double()
    mass = weights.sum((-2, -1))
    cols = torch.arange(frames.shape[-1], dtype=torch.float64) + 0.5
    rows = torch.arange(frames.shape[-2], dtype=torch.float64) + 0.5
    return mass, (weights * cols).sum((-2, -1)) / mass, (weights.sum(-1) * rows).sum(-1) / mass


@pytest.fixture
def small_sets(monkeypatch):
    monkeypatch.setattr(video, "MOVING_FMNIST_SIZES", (90, 27))


# --- rendering and motion ---------------------------------------------------------------------

def test_render_places_scales_and_turns_clockwise():
    dot = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    dot[0, 0, 13:15, 20:22] = 255                     # centred 7 px right of the object's centre
    one = lambda v: torch.tensor([[float(v)]])
    cases = {  # (x, y, log-scale, angle) → expected (mass factor, column, row) on the 64-px canvas
        (0, 0, 0, 0): (1, 39, 32), (5, -3, 0, 0): (1, 44, 29), (0, 0, 0, math.pi / 2): (1, 32, 39),
        (0, 0, math.log(2), 0): (4, 46, 32), (0, 0, 0, -math.pi / 2): (1, 32, 25)}
    for (x, y, s, a), (factor, col, row) in cases.items():
        frame = render(dot, one(x), one(y), one(s), one(a))[0, 0, 0]
        mass, c, r = centroid(frame)
        assert (c.item(), r.item()) == pytest.approx((col, row), abs=0.05), (x, y, s, a)
        assert mass.item() == pytest.approx(factor * 4 * 255, rel=0.02)
    # the same canvas at another resolution: positions scale with the side
    mass, c, r = centroid(render(dot, one(0), one(0), one(0), one(0), size=32)[0, 0, 0])
    assert (c.item(), r.item()) == pytest.approx((39 / 2, 32 / 2), abs=0.05)


def test_every_class_moves_as_named_and_only_so():
    labels = torch.arange(K).repeat(20)
    path = trajectories(labels, 8, torch.Generator().manual_seed(1))
    axes = {"x": 0, "y": 1, "log_scale": 2, "angle": 3}
    for k, name in enumerate(MOTION_CLASSES):
        rows = labels == k
        for axis, index in axes.items():
            steps = path[axis][rows].diff(dim=1)
            sign = video.MOTIONS[name][index]
            if sign == 0:
                assert torch.all(steps.abs() < 1e-5), (name, axis)
            else:   # constant speed in the named direction
                assert torch.all(steps * sign > 0), (name, axis)
                assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-4)


def test_a_random_frame_has_the_same_distribution_in_every_class():
    """The phase of every axis at a random frame is uniform over the frame times, moving or held, so the
    per-class distributions of (x, y, log-scale) at random frames agree."""
    frames, n = 8, 9000
    labels = torch.arange(K).repeat(n // K)
    path = trajectories(labels, frames, torch.Generator().manual_seed(2))
    pick = torch.randint(frames, (len(labels),), generator=torch.Generator().manual_seed(3))
    for axis in ("x", "y", "log_scale"):
        values = path[axis][torch.arange(len(labels)), pick].numpy()
        for k in range(K):   # two-sample Kolmogorov–Smirnov: class k against all the others
            assert ks_2samp(values[labels == k], values[labels != k]).pvalue > 1e-3, (axis, MOTION_CLASSES[k])
    # while at a known time the moving classes sit apart: the information is in the time course
    first = path["x"][:, 0]
    assert first[labels == CLASS["right"]].mean() - first[labels == CLASS["left"]].mean() < -15


def test_clips_are_deterministic_balanced_and_shaped():
    sources = blobs(12)
    clips, labels = moving_clips(sources, 40, seed=5, frames=6, size=32)
    again, same = moving_clips(sources, 40, seed=5, frames=6, size=32)
    other, _ = moving_clips(sources, 40, seed=6, frames=6, size=32)
    assert clips.shape == (40, 1, 6, 32, 32) and clips.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(clips, again) and torch.equal(labels, same) and not torch.equal(clips, other)
    counts = labels.bincount(minlength=K)
    assert counts.max() - counts.min() <= 1


def test_test_clips_come_from_test_images_only():
    (train, _), (test, _) = moving_fmnist_splits(blobs(10, value=100), blobs(10, value=220, seed=1), (27, 18),
                                                 frames=4, size=32)
    assert train.max() <= 100 and test.max() > 100


def frame_features(frames: torch.Tensor) -> np.ndarray:
    """Pixel statistics of (N, H, W) frames: mass, centroid, second moments, mean and peak intensity."""
    mass, col, row = centroid(frames)
    weights = frames.double()
    cols = torch.arange(frames.shape[-1], dtype=torch.float64) + 0.5
    rows = torch.arange(frames.shape[-2], dtype=torch.float64) + 0.5
    dc, dr = cols - col[:, None, None], rows[:, None] - row[:, None, None]
    moments = [(weights * m).sum((-2, -1)) / mass for m in (dc * dc, dr * dr, dc * dr)]
    return torch.stack([mass.log(), col, row, *moments, frames.double().amax((-2, -1))], 1).numpy()


def test_pixel_statistics_of_a_frame_are_at_chance_those_of_the_clip_are_not():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    sources = blobs(60)
    (train, y_train), (test, y_test) = moving_fmnist_splits(sources[:30], sources[30:], (900, 450), frames=6,
                                                            size=32)
    pick = lambda clips, seed: clips[torch.arange(len(clips)), 0,
                                     torch.randint(clips.shape[2], (len(clips),),
                                                   generator=torch.Generator().manual_seed(seed))]
    single = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    single.fit(frame_features(pick(train, 0)), y_train.numpy())
    chance = 1 / K
    assert single.score(frame_features(pick(test, 1)), y_test.numpy()) < chance + 0.05
    # the same statistics of the first and last frames side by side: time tells the motion
    both = lambda clips: np.concatenate([frame_features(clips[:, 0, 0]), frame_features(clips[:, 0, -1])], 1)
    course = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    course.fit(both(train), y_train.numpy())
    assert course.score(both(test), y_test.numpy()) > 0.5


class FramesAsChannels(nn.Module):
    """Early fusion: the T frames of a grey clip as the input channels of a small 2-D CNN."""
    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, K))

    def forward(self, x):
        return self.net(x.flatten(1, 2))


def train_and_score(net, train, y_train, test, y_test, *, single_frame: bool, steps: int = 200) -> float:
    """Adam on batches of 32 (one random frame per clip when `single_frame`), test accuracy."""
    generator = torch.Generator().manual_seed(0)
    frames = train.shape[2]

    def inputs(clips):
        if single_frame:
            clips = clips[torch.arange(len(clips)), :, torch.randint(frames, (len(clips),), generator=generator)]
        return clips.float() / 255 * 3 - 0.5
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(steps):
        index = torch.randint(len(train), (32,), generator=generator)
        loss = F.cross_entropy(net(inputs(train[index])), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (net(inputs(test)).argmax(1) == y_test).float().mean().item()


@pytest.mark.slow
def test_a_single_frame_network_stays_at_chance_a_clip_network_does_not(fmnist_available):
    """The data set's claim on real Fashion-MNIST objects: the same small CNN trained on random single
    frames stays at chance, trained on whole clips (frames as channels) it learns the motions."""
    (train_images, _), (test_images, _), _ = datasets._load_idx_set("fashion-mnist", None, False)
    torch.manual_seed(0)
    (train, y_train), (test, y_test) = moving_fmnist_splits(
        torch.from_numpy(train_images[:2000]), torch.from_numpy(test_images[:500]), (1800, 450), frames=8, size=32)
    frame_net = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                              nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, K))
    chance = 1 / K
    assert train_and_score(frame_net, train, y_train, test, y_test, single_frame=True) < chance + 0.06
    assert train_and_score(FramesAsChannels(8), train, y_train, test, y_test, single_frame=False) > 0.5


# --- loading ----------------------------------------------------------------------------------

def test_moving_fmnist_bundle(small_sets, fmnist_available):
    first = load_video_data("moving-fmnist", seed=0, val_size=9)
    second = load_video_data("moving-fmnist", seed=3, val_size=9)
    assert first.classes == MOTION_CLASSES and (len(first.train), len(first.val), len(first.test)) == (81, 9, 27)
    assert first.train.images.shape[1:] == (1, 16, 64, 64) and first.input_size == (1, 16, 64, 64)
    assert torch.equal(first.test.images, second.test.images) and torch.equal(first.test.labels, second.test.labels)
    assert not torch.equal(first.val.labels, second.val.labels) or not torch.equal(first.val.images,
                                                                                   second.val.images)
    assert first.mean[0] == pytest.approx(first.train.images.double().div(255).mean().item(), abs=1e-6)
    assert first.std[0] == pytest.approx(first.train.images.double().div(255).std().item(), abs=1e-6)
    small = load_video_data("moving-fmnist", frames=5, image_size=24, val_size=9)
    assert small.train.images.shape[1:] == (1, 5, 24, 24)


def test_unknown_spec_and_short_clips():
    with pytest.raises(UsageError, match="unknown video data set 'fashion-mnist'; choose one of moving-fmnist"):
        load_video_data("fashion-mnist")
    with pytest.raises(UsageError, match="at least 2 frames"):
        load_video_data("moving-fmnist", frames=1)


def test_missing_fashion_mnist_same_message(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(UsageError) as classification:
        datasets.load_data("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(UsageError) as clips:
        load_video_data("moving-fmnist", data_dir=tmp_path)
    assert str(clips.value) == str(classification.value)


def test_moving_mnist_reader(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 15, 64, 64), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, array)
    data = load_video_data(f"moving-mnist:{path}", val_size=2)
    assert data.classes == ["clip"] and data.input_size == (1, 20, 64, 64)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 2, 3)
    assert all(int(split.labels.abs().sum()) == 0 for split in (data.train, data.val, data.test))
    originals = {array[:, i].tobytes() for i in range(15)}   # every clip is one of the file's, frames in order
    seen = [clip[0].numpy().tobytes() for split in (data.train, data.val, data.test) for clip in split.images]
    assert set(seen) == originals and len(seen) == 15
    again = load_video_data(f"moving-mnist:{path}", val_size=2, seed=4)
    assert torch.equal(data.test.images, again.test.images)
    short = load_video_data(f"moving-mnist:{path}", val_size=2, frames=10, image_size=32)
    assert short.input_size == (1, 10, 32, 32)


@pytest.mark.parametrize("content, text", [
    (b"not an array at all", "not a NumPy .npy array file"),
    (np.zeros((20, 4, 64, 64), dtype=np.float32), "float32 array of shape (20, 4, 64, 64); Moving MNIST is uint8"),
    (np.zeros((20, 64, 64), dtype=np.uint8), "array of shape (20, 64, 64)"),
])
def test_bad_moving_mnist_files_name_the_file(tmp_path, content, text):
    path = tmp_path / "clips.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(DataError) as error:
        load_video_data(f"moving-mnist:{path}")
    assert str(path) in str(error.value) and text in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UsageError, match="no such file"):
        load_video_data(f"moving-mnist:{tmp_path / 'absent.npy'}")


# --- augmentation and normalisation -----------------------------------------------------------

def test_label_permutations_are_involutions_that_swap_the_named_classes():
    mirror = label_permutation(MOTION_CLASSES, video.MIRRORED)
    reverse = label_permutation(MOTION_CLASSES, video.REVERSED)
    for permutation in (mirror, reverse):
        assert torch.equal(permutation[permutation], torch.arange(K))
    named = lambda permutation: {MOTION_CLASSES[k]: MOTION_CLASSES[int(v)] for k, v in enumerate(permutation)
                                 if k != v}
    assert named(mirror) == {"left": "right", "right": "left", "clockwise": "anticlockwise",
                             "anticlockwise": "clockwise"}
    assert named(reverse) == {**named(mirror), "up": "down", "down": "up", "zoom in": "zoom out",
                              "zoom out": "zoom in"}
    assert torch.equal(label_permutation(["clip"], video.REVERSED), torch.tensor([0]))


def test_mirrored_clip_is_the_mirrored_motion():
    """A mirrored clip is what the mirrored object makes on the mirrored path (x → −x, angle → −angle):
    left becomes right and clockwise anticlockwise, as the label permutation says."""
    labels = torch.tensor([CLASS["left"], CLASS["clockwise"], CLASS["up"]])
    path = trajectories(labels, 5, torch.Generator().manual_seed(0))
    objects = blobs(3)
    clips = render(objects, **path, size=32)
    mirrored_path = {**path, "x": -path["x"], "angle": -path["angle"]}
    expected = render(objects.flip(-1), **mirrored_path, size=32)
    mirror = label_permutation(MOTION_CLASSES, video.MIRRORED)
    flipped, new_labels = swap(clips, labels, torch.ones(3, dtype=torch.bool), -1, mirror)
    assert (flipped.int() - expected.int()).abs().max() <= 1
    assert [MOTION_CLASSES[k] for k in new_labels] == ["right", "anticlockwise", "up"]
    for k, name in enumerate(["right", "anticlockwise", "up"]):   # the mirrored path moves as its new label
        signs = torch.tensor(video.MOTIONS[name], dtype=torch.float32)
        steps = torch.stack([mirrored_path[a][k].diff().mean() for a in ("x", "y", "log_scale", "angle")])
        assert torch.all(torch.sign(steps.round(decimals=4)) == signs)


def test_flip_twice_is_identity_and_only_the_chosen_change():
    clips = torch.randint(0, 256, (6, 1, 4, 8, 8), dtype=torch.uint8)
    labels = torch.arange(6)
    chosen = torch.tensor([1, 0, 1, 0, 1, 1], dtype=torch.bool)
    reverse = label_permutation(MOTION_CLASSES, video.REVERSED)
    for dim in (-1, 2):
        once, once_labels = swap(clips, labels, chosen, dim, reverse)
        twice, twice_labels = swap(once, once_labels, chosen, dim, reverse)
        assert torch.equal(twice, clips) and torch.equal(twice_labels, labels)
        assert torch.equal(once[~chosen], clips[~chosen]) and torch.equal(once[chosen], clips[chosen].flip(dim))
    assert once_labels.tolist() == [1, 1, 3, 3, 5, 4]   # reversed in time: right, down, anticlockwise, clockwise


def test_temporal_and_spatial_crops_are_windows_of_the_clip():
    clips = torch.randint(0, 256, (5, 2, 7, 9, 9), dtype=torch.uint8)
    cut = temporal_crop(clips, 3, torch.Generator().manual_seed(0))
    assert cut.shape == (5, 2, 3, 9, 9)
    for clip, window in zip(clips, cut):   # consecutive frames, the same start for both channels
        assert any(torch.equal(window, clip[:, s:s + 3]) for s in range(5))
    moved = spatial_crop(clips, 2, torch.Generator().manual_seed(0))
    padded = F.pad(clips, (2, 2, 2, 2))
    for clip, window in zip(padded, moved):   # one offset for every frame of a clip
        assert any(torch.equal(window, clip[..., t:t + 9, s:s + 9]) for t in range(5) for s in range(5))


def test_temporal_crop_starts_anywhere_from_the_first_to_the_last_window():
    # Every window of `frames` consecutive frames is possible: starts 0 … T − frames, the last included.
    clips = torch.arange(7, dtype=torch.uint8).view(1, 1, 7, 1, 1).expand(300, 2, 7, 2, 2)   # frame t holds t
    starts = temporal_crop(clips, 3, torch.Generator().manual_seed(1))[:, 0, 0, 0, 0]
    assert set(starts.tolist()) == set(range(5))


def test_augmentation_is_seeded_and_keeps_labels_with_their_clips():
    labels = torch.arange(K).repeat(4)
    path = trajectories(labels, 8, torch.Generator().manual_seed(0))
    clips = render(blobs(len(labels)), **path, size=32)
    augment = ClipAugmentation(MOTION_CLASSES, frames=6, crop=2, flip=True, reverse=True)
    first = augment(clips, labels, torch.Generator().manual_seed(9))
    second = augment(clips, labels, torch.Generator().manual_seed(9))
    other = augment(clips, labels, torch.Generator().manual_seed(10))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])
    assert first[0].shape == (len(labels), 1, 6, 32, 32)
    # every augmented clip still moves as its label says: horizontal centroid drift of left/right clips
    _, col, row = centroid(first[0][:, 0].float())
    drift_x, drift_y = col[:, -1] - col[:, 0], row[:, -1] - row[:, 0]
    for name, drift, sign in (("left", drift_x, -1), ("right", drift_x, 1), ("up", drift_y, -1),
                              ("down", drift_y, 1)):
        assert torch.all(drift[first[1] == CLASS[name]] * sign > 0), name


def test_clip_normalizer_per_channel_and_centre_window():
    clips = torch.randint(0, 256, (3, 2, 8, 4, 4), dtype=torch.uint8)
    normalise = ClipNormalizer([0.25, 0.5], [0.5, 2.0], frames=4)
    x = normalise(clips)
    assert x.shape == (3, 2, 4, 4, 4)
    expected = (clips[:, :, 2:6].float() / 255 - torch.tensor([0.25, 0.5]).view(1, 2, 1, 1, 1)) \
        / torch.tensor([0.5, 2.0]).view(1, 2, 1, 1, 1)
    assert torch.allclose(x, expected)
    assert ClipNormalizer([0.0, 0.0], [1.0, 1.0])(clips).shape == clips.shape


def test_spatial_crop_takes_every_offset_from_zero_to_twice_the_padding():
    """Each of the (2p + 1)² windows of the padded frame is possible: a clip's centre pixel lands up to p pixels
    from the centre in either direction, the same place in every frame."""
    clips = torch.zeros(400, 1, 2, 5, 5, dtype=torch.uint8)
    clips[..., 2, 2] = 255
    moved = spatial_crop(clips, 2, torch.Generator().manual_seed(0))
    frame = moved[:, 0, 0]
    rows, cols = frame.amax(2).argmax(1), frame.amax(1).argmax(1)
    assert set(rows.tolist()) == set(range(5)) and set(cols.tolist()) == set(range(5))
    assert torch.equal(moved[:, :, 0], moved[:, :, 1])


@pytest.mark.parametrize("flip, reverse, name, swapped", [(True, False, "left", "right"),
                                                          (False, True, "up", "down")])
def test_each_flip_turns_about_half_the_clips_and_their_labels(flip, reverse, name, swapped):
    """The mirror and the time reversal each happen with probability ½ per clip: about half of 2 000 clips of one
    motion come out flipped, and exactly those carry the swapped label."""
    clips = torch.tensor([[0, 1], [2, 3]], dtype=torch.uint8).view(1, 1, 2, 1, 2).repeat(2000, 1, 1, 1, 1)
    labels = torch.full((2000,), CLASS[name])
    augment = ClipAugmentation(MOTION_CLASSES, flip=flip, reverse=reverse)
    out, new_labels = augment(clips, labels, torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0, 0] != 0
    assert torch.equal(out[flipped], clips[flipped].flip(-1 if flip else 2))
    assert torch.equal(out[~flipped], clips[~flipped])
    assert torch.equal(new_labels, torch.where(flipped, CLASS[swapped], CLASS[name]))
    assert 0.45 < flipped.double().mean().item() < 0.55
