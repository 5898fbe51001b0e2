"""The Fréchet distance (metrics.generative): against pytorch-fid and torchmetrics, exact on diagonal
covariances, the sample statistics, the refusal of too few samples, and the FID Inception loaded from
a weights file of pytorch-fid's layout, against pytorch-fid's own network on the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from visionzoo import metrics
from visionzoo.core.errors import DataError, UsageError
from visionzoo.metrics.generative import (
    FIDInception,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    load_fid_inception,
)


def _random_spd(dims: int, rank: int, generator: torch.Generator) -> torch.Tensor:
    factor = torch.randn(dims, rank, generator=generator, dtype=torch.float64)
    return factor @ factor.T / rank + 0.01 * torch.eye(dims, dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")   # pytorch-fid's call of scipy's sqrtm
@pytest.mark.parametrize("dims", [2, 5, 64])
def test_equals_pytorch_fid_on_random_spd_matrices(dims):
    from pytorch_fid.fid_score import calculate_frechet_distance
    generator = torch.Generator().manual_seed(dims)
    mu1, mu2 = torch.randn(2, dims, generator=generator, dtype=torch.float64)
    sigma1, sigma2 = _random_spd(dims, 2 * dims, generator), _random_spd(dims, dims + 3, generator)
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    theirs = calculate_frechet_distance(mu1.numpy(), sigma1.numpy(), mu2.numpy(), sigma2.numpy())
    assert ours == pytest.approx(float(theirs), rel=1e-6)
    assert isinstance(ours, float)


def test_equals_torchmetrics_fid_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class GivenFeatures(nn.Module):   # the "images" fed to torchmetrics are the feature vectors themselves
        num_features = 6

        def forward(self, x):
            return x

    generator = torch.Generator().manual_seed(3)
    real = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    fake = torch.randn(250, 6, generator=generator, dtype=torch.float64) * 1.5 + 0.3
    reference = FrechetInceptionDistance(feature=GivenFeatures(), normalize=True).double()
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert fid_from_features(fake, real) == pytest.approx(float(reference.compute()), rel=1e-6)


def test_exact_on_diagonal_covariances():
    a, b = torch.tensor([4.0, 1.0, 0.25, 9.0]), torch.tensor([1.0, 1.0, 4.0, 0.0])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0, 3.0])
    expected = (mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()   # 5 + (1 + 0 + 2.25 + 9)
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(float(expected), abs=1e-12)


def test_zero_between_equal_gaussians_even_with_a_singular_covariance():
    generator = torch.Generator().manual_seed(0)
    sigma = _random_spd(10, 3, generator) - 0.01 * torch.eye(10, dtype=torch.float64)   # rank 3
    mu = torch.randn(10, generator=generator, dtype=torch.float64)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    shifted = frechet_distance(mu, sigma, mu + 2, sigma)
    assert shifted == pytest.approx(40.0, abs=1e-9)   # ‖μ₁ − μ₂‖² = 10 · 2²


def test_symmetric_and_float64():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(200, 8, generator=generator)
    b = torch.randn(200, 8, generator=generator) * 0.5
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-10)
    mu, sigma = feature_statistics(a)
    assert mu.dtype == sigma.dtype == torch.float64


def test_statistics_are_the_mean_and_unbiased_covariance():
    features = np.random.default_rng(0).normal(size=(50, 4))
    mu, sigma = feature_statistics(torch.from_numpy(features))
    np.testing.assert_allclose(mu.numpy(), features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(features, rowvar=False), rtol=1e-12)


@pytest.mark.parametrize("count", [3, 4])
def test_fewer_samples_than_feature_dimensions_is_refused_in_one_line(count):
    with pytest.raises(UsageError, match=rf"FID needs more samples \(N\) than feature dimensions \(F\): N={count}, F=4") \
            as caught:
        feature_statistics(torch.randn(count, 4))
    assert "\n" not in str(caught.value)


def test_mismatched_sizes_are_refused():
    with pytest.raises(UsageError, match="one feature size"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))


def test_exported_from_metrics():
    assert metrics.frechet_distance is frechet_distance


def _random_inception_state(seed: int) -> dict:
    """FID-Inception-shaped weights with batch-norm statistics and scales that are not the defaults, and
    He-scaled convolutions (std √(2/fan_in)) so the pool3 features still depend on the input."""
    torch.manual_seed(seed)
    state = FIDInception().state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):
            state[key] = torch.randn_like(value) * (2 / value[0].numel()) ** 0.5
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean") or key.endswith("bn.bias"):
            state[key] = torch.randn_like(value) * 0.1
        elif key.endswith("bn.weight"):
            state[key] = torch.rand_like(value) + 0.5
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}   # as pytorch-fid's file


def test_loaded_inception_gives_pytorch_fids_pool3_features(tmp_path, monkeypatch):
    import pytorch_fid.inception as reference
    state = _random_inception_state(0)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    # pytorch-fid fetches its weights by URL: hand it the same random file instead.
    monkeypatch.setattr(reference, "load_state_dict_from_url", lambda *args, **kwargs: torch.load(path))
    theirs = reference.InceptionV3([reference.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    ours = load_fid_inception(path)
    images = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs(images)[0].flatten(1)
        got = ours(images)
    assert got.shape == (2, 2048)
    # The comparison means something only if the features depend on the input far beyond the tolerance
    # (the resizing and the [0, 1] → [−1, 1] scaling are then checked too).
    assert (expected[0] - expected[1]).abs().mean() > 100 * (1e-4 + 1e-4 * expected.abs().mean())
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training


def test_a_file_of_other_shapes_is_refused_naming_it(tmp_path):
    state = _random_inception_state(1)
    state["fc.weight"] = torch.zeros(1000, 2048)   # torchvision's ImageNet head, not the FID graph's 1008
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match=r"inception\.pth: not the FID Inception's weights \(wrong shape fc\.weight\)"):
        load_fid_inception(path)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="junk.pth: not a readable PyTorch weights file"):
        load_fid_inception(tmp_path / "junk.pth")
    with pytest.raises(DataError, match="no such file"):
        load_fid_inception(tmp_path / "absent.pth")
