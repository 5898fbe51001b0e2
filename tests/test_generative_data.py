"""Generative data (data/generative.py): the 2-D mixtures, mode coverage, the optimal discriminator
against one trained by plain SGD, edge maps, and the Fashion-MNIST specs (class subsets, DiscoGAN's two
unpaired domains)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from visionzoo.core.errors import UsageError
from visionzoo.data import generative as generative_data
from visionzoo.data.datasets import FASHION_CLASSES, TensorSplit, load_data
from visionzoo.data.generative import (
    _parse_classes,
    edge_map,
    from_gan_range,
    gaussian_pdf,
    grid_modes,
    load_generative_data,
    mode_coverage,
    optimal_discriminator,
    ring_modes,
    to_gan_range,
)


def test_ring8_is_metz_et_als_mixture():
    data = load_generative_data("ring8")
    assert data.kind == "points" and data.train.shape == (100_000, 2) and data.test.shape == (10_000, 2)
    assert data.train.dtype == torch.float32 and data.input_size == (2,)
    torch.testing.assert_close(data.modes.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(data.modes[:, 1], data.modes[:, 0]).remainder(2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(8) * (math.pi / 4))
    offsets = data.train - data.modes[data.train_labels]
    assert offsets.std().item() == pytest.approx(0.02, rel=0.02)
    assert (torch.cdist(data.train, data.modes).argmin(1) == data.train_labels).all()
    assert data.train_labels.bincount().min() > 12_000   # about 100 000 / 8 each


def test_point_sets_follow_the_seed_and_the_test_split_does_not():
    a, b, c = (load_generative_data("ring8", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert torch.equal(a.test, c.test)
    assert not torch.equal(a.train[:10_000], a.test)


def test_grid25_modes_and_spread():
    data = load_generative_data("grid25")
    assert sorted(set(data.modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len(data.modes) == 25 and data.mode_std == 0.05
    assert (data.train - data.modes[data.train_labels]).std().item() == pytest.approx(0.05, rel=0.02)
    torch.testing.assert_close(grid_modes(3, 1.0)[4], torch.zeros(2))


def test_mode_coverage_of_the_data_a_collapsed_generator_and_misses():
    modes, std = ring_modes(), 0.02
    data = load_generative_data("ring8")
    covered, good = mode_coverage(data.test, modes, std)
    # All modes; within 3σ of a 2-D Gaussian's mean lies 1 − exp(−9/2) of its mass.
    assert covered == 8 and good == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert mode_coverage(modes[3] + 0.01 * torch.randn(500, 2), modes, std) == (1, 1.0)
    assert mode_coverage(torch.zeros(100, 2), modes, std) == (0, 0.0)   # the ring's centre: far from every mode


def test_a_mode_counts_as_covered_from_20_of_2500_samples():
    modes, std = ring_modes(), 0.02
    points = modes[0].repeat(2500, 1)
    points[:19] = modes[1]
    assert mode_coverage(points, modes, std)[0] == 1
    points[:20] = modes[1]
    assert mode_coverage(points, modes, std)[0] == 2


def test_optimal_discriminator_is_what_training_d_reaches():
    """Goodfellow et al.'s inner loop (Fig. 1b): D trained on a fixed p_g converges to p_data/(p_data+p_g)."""
    torch.manual_seed(0)
    real_mean, real_std, fake_mean, fake_std = 0.0, 1.0, 1.5, 0.7
    best = optimal_discriminator(gaussian_pdf(real_mean, real_std), gaussian_pdf(fake_mean, fake_std))
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    optimiser = torch.optim.Adam(net.parameters(), lr=5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # 400 steps of a 32-unit MLP: on a busy CPU, thread barriers cost 30× the work
    try:
        for _ in range(400):
            real = torch.randn(256, 1) * real_std + real_mean
            fake = torch.randn(256, 1) * fake_std + fake_mean
            # −V(D, G) of the notes: −[log D(x) + log(1 − D(G(z)))], with D = sigmoid(logit)
            loss = nn.functional.softplus(-net(real)).mean() + nn.functional.softplus(net(fake)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    x = torch.linspace(-1.5, 2.5, 81)[:, None]
    with torch.no_grad():
        learned = torch.sigmoid(net(x))
    assert (learned - best(x)).abs().max() < 0.05
    # the same network trained on another p_g would not be close: D* depends on p_g
    other = optimal_discriminator(gaussian_pdf(real_mean, real_std), gaussian_pdf(-1.0, 0.7))
    assert (learned - other(x)).abs().max() > 0.3


def test_optimal_discriminator_is_one_half_when_the_generator_matches():
    same = optimal_discriminator(gaussian_pdf(0.3, 2.0), gaussian_pdf(0.3, 2.0))
    torch.testing.assert_close(same(torch.linspace(-5, 5, 11)), torch.full((11,), 0.5))


def test_edge_map_marks_the_outline_of_a_square():
    image = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    image[..., 4:12, 4:12] = 200
    edges = edge_map(image)[0, 0]
    assert edges.dtype == torch.uint8 and set(edges.unique().tolist()) == {0, 255}
    assert edges[8, 8] == 0 and edges[0, 0] == 0                           # inside, far outside
    assert edges[8, 3] == edges[8, 4] == edges[3, 8] == edges[11, 8] == 255   # across the border
    assert edge_map(torch.full((1, 1, 8, 8), 90, dtype=torch.uint8)).max() == 0   # a flat image has none


def test_edge_map_equals_the_sobel_filter_as_convolutions():
    images = torch.randint(0, 256, (4, 3, 20, 20), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x = images.float() / 255
    binomial = torch.tensor([1.0, 2.0, 1.0])
    smoothed = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                    (binomial[:, None] * binomial / 16).expand(3, 1, 3, 3), groups=3)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.T])[:, None].repeat(3, 1, 1, 1)
    gradients = nn.functional.conv2d(nn.functional.pad(smoothed, (1, 1, 1, 1), mode="replicate"), kernels, groups=3)
    magnitude = gradients.unflatten(1, (3, 2)).square().sum(2).sqrt().amax(1, keepdim=True)
    expected = (magnitude > 0.25 * magnitude.amax((2, 3), keepdim=True)).to(torch.uint8) * 255
    assert torch.equal(edge_map(images, threshold=0.25), expected.expand(-1, 3, -1, -1))


def test_gan_range_round_trip():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    scaled = to_gan_range(images)
    assert scaled.min() == -1 and scaled.max() == 1
    assert torch.equal(from_gan_range(scaled), images)
    assert from_gan_range(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


def test_bad_specs_are_refused_in_one_line():
    with pytest.raises(UsageError, match="ring8 holds 2-D points"):
        load_generative_data("ring8", image_size=28)
    with pytest.raises(UsageError, match="unknown generative data set 'mnist-shoes'; choose one of"):
        load_generative_data("mnist-shoes")


def test_unknown_class_lists_the_classes():
    with pytest.raises(UsageError, match=r"fashion-mnist:Bag,Hat: unknown class 'Hat'; .*8 Bag, 9 Ankle boot") \
            as caught:
        load_generative_data("fashion-mnist:Bag,Hat")
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def fashion(request):
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")
    return load_data("fashion-mnist", val_size=5000)


def _sorted_bytes(images: torch.Tensor) -> list[bytes]:
    return sorted(row.tobytes() for row in images.flatten(1).numpy())


def test_class_subset_relabels_in_the_order_given(fashion):
    data = load_generative_data("fashion-mnist:Bag,0")
    assert data.classes == ["Bag", "T-shirt/top"] and data.domains is None
    assert data.train_labels.bincount().tolist() == [6000, 6000] and data.val is None
    bags = fashion.test.images[fashion.test.labels == FASHION_CLASSES.index("Bag")]
    assert _sorted_bytes(data.test[data.test_labels == 0]) == _sorted_bytes(bags)
    assert _parse_classes("bag, 8,Ankle BOOT") == [8, 9]   # case-insensitive, once each


def test_bags_and_shoes_are_discogans_two_domains(fashion):
    data = load_generative_data("fmnist-bags-shoes", val_size=5000)
    assert data.domains == ("bags", "shoes") and data.classes == ["bags", "shoes"]
    images, labels = fashion.test.images, fashion.test.labels
    shoes = images[torch.isin(labels, torch.tensor([5, 7, 9]))]
    assert _sorted_bytes(data.test[data.test_labels == 0]) == _sorted_bytes(images[labels == 8])
    assert _sorted_bytes(data.test[data.test_labels == 1]) == _sorted_bytes(shoes)
    assert len(data.train) + len(data.val) == 24_000   # 6 000 bags and 18 000 shoes in the training images


def test_edges_and_shoes_come_from_disjoint_halves(fashion):
    data = load_generative_data("fmnist-edges-shoes", seed=3)
    edges, shoes = data.train[data.train_labels == 0], data.train[data.train_labels == 1]
    assert len(edges) == len(shoes) == 9000 and data.domains == ("edges", "shoes")
    assert set(edges.unique().tolist()) == {0, 255}
    edge_set = set(_sorted_bytes(edges))
    assert not edge_set & set(_sorted_bytes(edge_map(shoes)))   # no shoe of B has its edge map in A
    shoe_set = set(_sorted_bytes(fashion.train.images[torch.isin(fashion.train.labels, torch.tensor([5, 7, 9]))]))
    shoe_set |= set(_sorted_bytes(fashion.val.images[torch.isin(fashion.val.labels, torch.tensor([5, 7, 9]))]))
    assert set(_sorted_bytes(shoes)) <= shoe_set


def test_edges_and_shoes_test_split_is_the_same_for_every_seed(monkeypatch):
    """The test split's halves are drawn with a fixed seed (0), the training split's with the run's: runs of any
    seed are scored on the same edge maps and shoes. (Small random stand-ins for Fashion-MNIST's splits.)"""
    def split(seed: int) -> TensorSplit:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.tensor([5, 7, 9, 8])[torch.randint(4, (40,), generator=generator)]
        return TensorSplit(torch.randint(0, 256, (40, 1, 8, 8), generator=generator, dtype=torch.uint8), labels)
    monkeypatch.setattr(generative_data, "load_data",
                        lambda *args, **kwargs: SimpleNamespace(train=split(0), val=split(1), test=split(2)))
    a, b = (load_generative_data("fmnist-edges-shoes", seed=seed, val_size=10) for seed in (3, 4))
    assert torch.equal(a.test, b.test) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train, b.train)
