"""Issue 26's smaller techniques: Gaussian-noise vicinal risk, FGSM's first-order objective, and the
closed-form experiments (dropout = ridge on linear regression, wᵀη = εmn)."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionzoo.data.augment import Augmentation, gaussian_noise
from visionzoo.experiments import closed_form
from visionzoo.experiments.base import HELD, Context, get_experiment
from visionzoo.tasks.adversarial import AdversarialTraining, first_order_objective


def test_gaussian_noise_has_the_asked_spread_in_pixel_space_and_stays_an_image():
    grey = torch.full((64, 1, 16, 16), 128, dtype=torch.uint8)
    noisy = gaussian_noise(grey, 0.05, torch.Generator().manual_seed(0))
    shift = noisy - 128
    assert abs(shift.mean().item()) < 0.2 and shift.std().item() == pytest.approx(0.05 * 255, rel=0.03)
    extreme = gaussian_noise(torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(100, 1, 1, 2), 0.5,
                             torch.Generator().manual_seed(1))
    assert extreme.min() == 0 and extreme.max() == 255  # clamped, not wrapped
    again = gaussian_noise(grey, 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    augmented, labels = Augmentation(gauss_noise=0.05)(grey, torch.zeros(64, dtype=torch.long), 10,
                                                     torch.Generator().manual_seed(0))
    assert torch.equal(augmented, noisy) and torch.equal(Augmentation()(grey, labels, 10, None)[0], grey)


def _cross_entropy(output, labels, model, smoothing):
    return F.cross_entropy(output, labels), output


def test_first_order_objective_is_fgsm_to_first_order_on_a_linear_model():
    """Two-class softmax on logits Wx + b: J = softplus(z), z = −(v·x + c), v = w_y − w_other. FGSM moves
    x by −ε·sign(v) (for label 0), so J(x̃) = softplus(z + ε‖v‖₁) exactly, and ‖∇ₓJ‖₁ = σ(z)‖v‖₁."""
    torch.manual_seed(0)
    model = nn.Linear(5, 2).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    labels = torch.zeros(8, dtype=torch.long)
    v = (model.weight[0] - model.weight[1]).detach()
    z = -(x @ v + (model.bias[0] - model.bias[1]).detach())
    alpha, gaps = 0.3, []
    for eps in (0.02, 0.01, 0.005):
        inputs = x.clone().requires_grad_()
        objective, _ = first_order_objective(_cross_entropy, model(inputs), labels, model, 0.0, inputs,
                                             torch.ones(()), eps, alpha)
        first_order = (F.softplus(z) + (1 - alpha) * eps * torch.sigmoid(z) * v.abs().sum()).mean()
        fgsm = (alpha * F.softplus(z) + (1 - alpha) * F.softplus(z + eps * v.abs().sum())).mean()
        torch.testing.assert_close(objective, first_order)
        gaps.append(float(fgsm - objective.detach()))
    assert all(gap > 0 for gap in gaps)   # softplus is convex: the first-order form lies below
    assert gaps[0] / gaps[1] == pytest.approx(4, rel=0.05) and gaps[1] / gaps[2] == pytest.approx(4, rel=0.05)


def test_first_order_training_backpropagates_through_the_input_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    cfg = SimpleNamespace(adv="fgsm_first_order", adv_eps=0.1, adv_alpha=0.01, adv_steps=1, adv_weight=0.5)
    training = AdversarialTraining(cfg)
    normalizer = SimpleNamespace(mean=(0.5,), std=(0.25,))
    x, labels = torch.randn(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    batch, batch_labels = training.batch(model, normalizer, x, labels, torch.Generator())
    assert torch.equal(batch, x) and batch.requires_grad and torch.equal(batch_labels, labels)
    loss, _ = training.objective(_cross_entropy, model(batch), labels, model, 0.0)
    loss.backward()
    # by hand: ∇ₓJ_i of a linear layer is Wᵀ(softmax − onehot); pixels are x·std + mean, so ∇_p = ∇ₓ / std
    weight, bias = model[1].weight.detach().requires_grad_(), model[1].bias.detach().requires_grad_()
    probabilities = torch.softmax(x.flatten(1) @ weight.T + bias, 1)
    per_example = (probabilities - F.one_hot(labels, 3)) @ weight
    expected = (F.cross_entropy(x.flatten(1) @ weight.T + bias, labels)
                + 0.5 * 0.1 * (per_example / 0.25).abs().sum(1).mean())
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(model[1].weight.grad, weight.grad)  # the penalty's own gradient included


def test_training_with_noise_and_first_order_fgsm_runs(tmp_path):
    from visionzoo.engine.trainer import train
    result = train(model="lenet", data="digits", image_size=16, epochs=1, batch_size=32, train_limit=96,
                    gauss_noise=0.05, adv="fgsm_first_order", adv_eps=0.05, out=str(tmp_path / "run"), quiet=True)
    assert result["epochs_run"] == 1 and 0 < result["test_loss"] < 10


def test_dropout_expectation_matches_sampling_and_differs_from_least_squares():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=generator, dtype=torch.float64), torch.randn(5, generator=generator,
                                                                                    dtype=torch.float64)
    w, p = torch.randn(3, generator=generator, dtype=torch.float64), 0.6
    masks = (torch.rand(200_000, 5, 3, generator=generator) < p).double()
    sampled = (y - ((masks * x) @ w)).square().sum(1).mean()
    exact = closed_form.expected_dropout_loss(x, y, w, p)
    assert float(exact) == pytest.approx(float(sampled), rel=0.01)
    torch.testing.assert_close(exact, closed_form.ridge_form_loss(x, y, w, p))
    ridge = closed_form.ridge_solution(x, y, p)
    torch.testing.assert_close(closed_form.dropout_minimiser(x, y, p), ridge)
    assert not torch.allclose(p * ridge, torch.linalg.lstsq(x, y[:, None]).solution[:, 0], rtol=1e-3)


def test_fgsm_growth_is_eps_times_l1_norm():
    w = torch.tensor([0.5, -2.0, 0.0, 1.5], dtype=torch.float64)
    growth, formula = closed_form.fgsm_growth(w, 0.1)
    assert growth == pytest.approx(0.1 * 4.0) and formula == pytest.approx(0.1 * 1.0 * 4)


@pytest.mark.parametrize("name", ["dropout-ridge", "fgsm-linear"])
def test_closed_form_experiments_hold_at_smoke(tmp_path: Path, name):
    outcome = get_experiment(name).run(Context("smoke", tmp_path, 0))
    assert outcome.verdict == HELD and outcome.table
