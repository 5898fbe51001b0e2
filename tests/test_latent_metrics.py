"""Perceptual path length and linear separability (Karras et al., CVPR 2019, Sec. 4): slerp/lerp by their
definitions, PPL in closed form for linear generators, its ε-independence and quadratic scaling, and
linear separability at its two extremes and against scikit-learn's LinearSVC."""
import math

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.metrics.latent import (
    _fit_linear_svm,
    conditional_entropy,
    lerp,
    linear_separability,
    perceptual_path_length,
    slerp,
)


def test_slerp_moves_at_constant_angular_speed_on_the_unit_sphere():
    a, b = torch.randn(2, 5, 7, dtype=torch.float64)
    angle = torch.acos((a / a.norm(dim=1, keepdim=True) * b / b.norm(dim=1, keepdim=True)).sum(1))
    for t in (0.0, 0.3, 1.0):
        point = slerp(a, b, t)
        torch.testing.assert_close(point.norm(dim=1), torch.ones(5, dtype=torch.float64))
        from_a = torch.acos((point * a / a.norm(dim=1, keepdim=True)).sum(1).clamp(-1, 1))
        to_b = torch.acos((point * b / b.norm(dim=1, keepdim=True)).sum(1).clamp(-1, 1))
        torch.testing.assert_close(from_a, t * angle, atol=1e-6, rtol=0)
        torch.testing.assert_close(to_b, (1 - t) * angle, atol=1e-6, rtol=0)
    ts = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    torch.testing.assert_close(slerp(a, b, ts)[2], slerp(a[2:3], b[2:3], 0.5)[0])
    torch.testing.assert_close(lerp(a, b, ts), a + (b - a) * ts[:, None])


class LinearGenerator(nn.Module):
    """G(z) = A z: an 'image' that is a linear function of the latent."""

    def __init__(self, matrix):
        super().__init__()
        self.latent_dim = matrix.shape[1]
        self.linear = nn.Linear(matrix.shape[1], matrix.shape[0], bias=False, dtype=matrix.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(matrix)

    def forward(self, z):
        return self.linear(z)


def _identity(images):
    return images


def test_ppl_in_z_of_a_linear_generator_in_closed_form():
    # In 2-D the angle θ between two Gaussian latents is uniform on [0, π] and slerp's direction at t
    # is uniform and independent of it: E‖A dp/dt‖² = E[θ²] · ‖A‖_F² / 2 = (π²/3) ‖A‖_F² / 2.
    matrix = torch.tensor([[2.0, 0.5], [-1.0, 1.0], [0.3, 0.0]], dtype=torch.float64)
    generator = LinearGenerator(matrix)
    ppl = perceptual_path_length(generator, _identity, n=20_000, batch_size=5000, normalize=False,
                                 generator_rng=torch.Generator().manual_seed(0))
    expected = math.pi ** 2 / 3 * matrix.square().sum().item() / 2
    assert ppl == pytest.approx(expected, rel=0.03)


def test_ppl_is_independent_of_epsilon_and_quadratic_in_the_distance():
    matrix = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    values = {}
    for epsilon in (1e-2, 1e-4):
        for scale in (1.0, 3.0):
            values[epsilon, scale] = perceptual_path_length(
                LinearGenerator(scale * matrix), _identity, n=500, epsilon=epsilon, normalize=False,
                generator_rng=torch.Generator().manual_seed(5))
    assert values[1e-2, 1.0] == pytest.approx(values[1e-4, 1.0], rel=1e-3)
    assert values[1e-4, 3.0] == pytest.approx(9 * values[1e-4, 1.0], rel=1e-6)
    # Normalised features: a generator's overall scale no longer matters.
    normalised = [perceptual_path_length(LinearGenerator(s * matrix), _identity, n=200,
                                         generator_rng=torch.Generator().manual_seed(5)) for s in (1.0, 3.0)]
    assert normalised[0] == pytest.approx(normalised[1], rel=1e-6)


class LinearSynthesis(nn.Module):
    """g(ws) = B w, one layer."""

    def __init__(self, matrix):
        super().__init__()
        self.out = LinearGenerator(matrix)

    def forward(self, ws):
        return self.out(ws[:, 0])


class LinearStyleGenerator(nn.Module):
    """f(z) = M z, g(ws) = B w (one layer): PPL in W is E‖B M (z₂ − z₁)‖² = 2 ‖B M‖_F²."""

    def __init__(self, mapping, synthesis, synthesis_class=LinearSynthesis):
        super().__init__()
        self.latent_dim, self.num_layers = mapping.shape[1], 1
        self.mapping = LinearGenerator(mapping)
        self.synthesis = synthesis_class(synthesis)


def test_ppl_in_w_lerps_between_the_mapped_latents():
    rng = torch.Generator().manual_seed(2)
    mapping = torch.randn(3, 3, dtype=torch.float64, generator=rng)
    synthesis = torch.randn(2, 3, dtype=torch.float64, generator=rng)
    generator = LinearStyleGenerator(mapping, synthesis)
    ppl = perceptual_path_length(generator, _identity, n=40_000, batch_size=10_000, space="w", normalize=False,
                                 generator_rng=torch.Generator().manual_seed(0))
    assert ppl == pytest.approx(2 * (synthesis @ mapping).square().sum().item(), rel=0.03)


class NoisySynthesis(LinearSynthesis):
    """g(ws, noise) = B w + noise: per-image noise inputs, drawn by `draw_noise` as StyleGAN's synthesis."""

    def draw_noise(self, count, like, generator=None):
        return [torch.randn(count, self.out.linear.out_features, generator=generator, dtype=like.dtype)]

    def forward(self, ws, noise_inputs=None):
        noise = noise_inputs[0] if noise_inputs is not None else self.draw_noise(len(ws), ws)[0]
        return super().forward(ws) + noise


def test_ppl_shares_the_noise_inputs_between_the_two_images_of_a_pair():
    """The paper's code feeds both images of a pair the same noise, so the noise cancels: PPL is that of
    the same generator without noise (and 0 where the two latents of a pair map to the same w)."""
    rng = torch.Generator().manual_seed(3)
    mapping = torch.randn(3, 3, dtype=torch.float64, generator=rng)
    synthesis = torch.randn(2, 3, dtype=torch.float64, generator=rng)
    noiseless = LinearStyleGenerator(mapping, synthesis)
    noisy = LinearStyleGenerator(mapping, synthesis, NoisySynthesis)
    for space in ("z", "w"):
        def ppl(generator):
            return perceptual_path_length(generator, _identity, n=300, batch_size=300, space=space,
                                          normalize=False, generator_rng=torch.Generator().manual_seed(0))
        assert ppl(noisy) == pytest.approx(ppl(noiseless), rel=1e-6)
    constant = LinearStyleGenerator(torch.zeros(3, 3, dtype=torch.float64), synthesis, NoisySynthesis)   # w = 0
    assert perceptual_path_length(constant, _identity, n=50, normalize=False,
                                  generator_rng=torch.Generator().manual_seed(0)) == 0.0


def test_ppl_trim_drops_both_tails_of_the_distances():
    """Karras et al.'s code keeps the distances between the 1st and the 99th percentile: a huge outlier
    (the first pair's features scaled by 1000) leaves the trimmed mean as it was."""
    generator = LinearGenerator(torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))

    def with_outlier(images):   # images = [first images; second images]: rows 0 and n are the first pair
        scale = torch.ones(len(images), 1, dtype=images.dtype)
        scale[0] = scale[len(images) // 2] = 1000.0
        return images * scale

    def ppl(features, trim):
        return perceptual_path_length(generator, features, n=200, batch_size=200, normalize=False, trim=trim,
                                      generator_rng=torch.Generator().manual_seed(0))

    assert ppl(with_outlier, 0.0) > 100 * ppl(_identity, 0.0)   # untrimmed, the outlier dominates
    assert ppl(with_outlier, 0.01) == pytest.approx(ppl(_identity, 0.01), rel=0.05)


def test_ppl_on_stylegan_in_both_spaces_and_refusals():
    torch.manual_seed(0)
    generator = vz.create_model("stylegan_small").generator
    def features(images):
        return nn.functional.avg_pool2d(images, 4).flatten(1)
    values = [perceptual_path_length(generator, features, n=8, batch_size=8, space=space,
                                     generator_rng=torch.Generator().manual_seed(0)) for space in ("z", "w")]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert generator.training      # put back in its mode
    with pytest.raises(UsageError, match="space"):
        perceptual_path_length(generator, features, n=4, space="x")
    with pytest.raises(UsageError, match="mapping"):
        perceptual_path_length(LinearGenerator(torch.eye(2)), _identity, n=4, space="w")


def test_conditional_entropy():
    y = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1])
    assert conditional_entropy(y, y) == 0.0
    assert conditional_entropy(y, torch.zeros(8)) == pytest.approx(math.log(2))
    assert conditional_entropy(y, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])) == pytest.approx(math.log(2))
    # x = 0 → y ∈ {0, 0, 1}: H = ln 3 − (2/3) ln 2, weighted 3/8; x = 1 → y ∈ {0, 0, 1, 1, 1}: weighted 5/8.
    x = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    y = torch.tensor([0, 0, 1, 0, 0, 1, 1, 1])
    def h(*p):
        return -sum(q * math.log(q) for q in p)
    assert conditional_entropy(y, x) == pytest.approx(3 / 8 * h(2 / 3, 1 / 3) + 5 / 8 * h(2 / 5, 3 / 5))


def test_separable_labels_score_one_and_independent_labels_two():
    rng = torch.Generator().manual_seed(0)
    latents = torch.randn(3000, 8, generator=rng)
    direction = torch.randn(8, generator=rng)
    score = latents @ direction
    latents = latents[(score - 0.3).abs() > 0.5][:2000]      # a margin: separable with room to spare
    separable = (latents @ direction > 0.3).long()
    assert linear_separability(latents, separable) == pytest.approx(1.0, abs=1e-9)
    independent = torch.randint(0, 2, (2000,), generator=rng)
    assert linear_separability(latents, independent) == pytest.approx(2.0, abs=0.05)
    # Two attributes: the exponent sums their entropies.
    both = torch.stack([separable, independent], 1)
    assert linear_separability(latents, both) == pytest.approx(linear_separability(latents, independent), rel=1e-6)


def test_separability_keeps_the_most_confident_half():
    rng = torch.Generator().manual_seed(1)
    latents = torch.randn(1000, 4, generator=rng)
    latents[:, 0] += torch.where(latents[:, 0] > 0, 0.5, -0.5)     # a margin around the plane x₀ = 0
    labels = (latents[:, 0] > 0).long()
    confidence = torch.rand(1000, generator=rng)
    noisy = torch.where(confidence < 0.5, torch.randint(0, 2, (1000,), generator=rng), labels)
    # The unconfident half carries random labels; dropping it leaves a separable set.
    assert linear_separability(latents, noisy, confidence) == pytest.approx(1.0, abs=1e-9)
    assert linear_separability(latents, noisy) > 1.3
    with pytest.raises(UsageError, match="binary"):
        linear_separability(latents, torch.randint(0, 3, (1000,), generator=rng))
    with pytest.raises(UsageError, match="keep"):
        linear_separability(latents, labels, confidence, keep=0.0)


def test_the_svm_solves_linearsvcs_problem():
    svm = pytest.importorskip("sklearn.svm")
    rng = torch.Generator().manual_seed(3)
    x = torch.randn(400, 5, dtype=torch.float64, generator=rng)
    y = torch.where(x @ torch.randn(5, dtype=torch.float64, generator=rng) + 0.3 * torch.randn(
        400, dtype=torch.float64, generator=rng) > 0, 1.0, -1.0)
    reference = svm.LinearSVC(C=1.0, tol=1e-10, max_iter=100_000).fit(x.numpy(), y.numpy())
    w, b = _fit_linear_svm(x, y, 1.0, 500)
    torch.testing.assert_close(w, torch.from_numpy(reference.coef_[0]), atol=1e-4, rtol=1e-4)
    assert b.item() == pytest.approx(reference.intercept_[0], abs=1e-4)
