"""visionzoo.attacks: each attack by its defining property, adversarial training, `visionzoo attack`."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionzoo.attacks import FGSM, LBFGS, PGD, Normalized, OnePixel, RandomNoise, SubstituteAttack
from visionzoo.attacks.base import per_sample_norm
from visionzoo.data.datasets import load_data
from visionzoo.data.loader import Normalizer
from visionzoo.tasks.adversarial import AdversarialTraining, goodfellow_objective

from conftest import assert_one_line_exit_2, cli_here


@pytest.fixture(scope="module")
def digits():
    """A small MLP trained for 150 full-batch Adam steps on the 8×8 digits (≈ 95 % test accuracy),
    seen from pixel space through `Normalized`, and 64 test images it classifies."""
    data = load_data("digits", val_size=0.1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model = Normalized(net, data.mean, data.std)
    images, labels = data.train.images.float() / 255, data.train.labels
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    x, y = data.test.images[:64].float() / 255, data.test.labels[:64]
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.85
    return model, x, y, data


def all_attacks(model, data):
    seeds = data.val.images[:30].float() / 255
    return {
        "fgsm": FGSM(model, 0.1), "noise": RandomNoise(model, 0.1),
        "pgd": PGD(model, 0.1, 0.02, 10, restarts=2), "pgd_l2": PGD(model, 0.5, 0.1, 10, norm="l2"),
        "pgd_targeted": PGD(model, 0.1, 0.02, 10, target="least_likely"),
        "lbfgs": LBFGS(model, 0.1, search_steps=2, max_iter=10),
        "onepixel": OnePixel(model, pixels=2, popsize=20, max_iter=3, eps=0.1),
        "substitute": SubstituteAttack(model, 0.1, seeds, 10, rounds=2, epochs=2),
    }


ATTACKS = ["fgsm", "noise", "pgd", "pgd_l2", "pgd_targeted", "lbfgs", "onepixel", "substitute"]


@pytest.mark.parametrize("name", ATTACKS)
def test_result_in_eps_ball_and_valid_pixel_range(digits, name):
    model, x, y, data = digits
    attack = all_attacks(model, data)[name]
    x_adv = attack(x, y)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    norm = "l2" if name == "pgd_l2" else "linf"
    assert per_sample_norm(x_adv - x, norm).max() <= attack.eps + 1e-5
    assert (x_adv != x).any()


class ModeRecorder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.frozen, self.seen = model, nn.BatchNorm1d(1), []

    def forward(self, x):
        self.seen.append(self.training)
        return self.model(x)


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_during_attack_and_every_module_mode_restored(digits, name, training):
    model, x, y, data = digits
    recorder = ModeRecorder(copy.deepcopy(model))
    recorder.train(training)
    recorder.frozen.eval()  # a submodule whose own mode differs from its parent's must keep it
    all_attacks(recorder, data)[name](x[:8], y[:8])
    assert (recorder.seen or name == "noise") and not any(recorder.seen)  # the noise asks nothing
    assert recorder.training == training and recorder.model.training == training
    assert not recorder.frozen.training


@pytest.mark.parametrize("name", ["pgd", "onepixel"])
def test_zoo_network_runs_channels_last_inside_the_attack_and_gets_its_weights_back(name):
    import visionzoo as vz
    torch.manual_seed(0)
    model = Normalized(vz.create_model("lenet", num_classes=10, in_chans=1), [0.5], [0.25]).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    before = {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()}
    layouts = []
    hook = model.model.features[0].register_forward_hook(
        lambda module, inputs, output: layouts.append(output.is_contiguous(memory_format=torch.channels_last)))
    attack = {"pgd": PGD(model, 0.1, 0.02, 3), "onepixel": OnePixel(model, popsize=8, max_iter=2)}[name]
    x_adv = attack(x, y)
    hook.remove()
    assert layouts and all(layouts) and x_adv.shape == x.shape
    for n, p in model.named_parameters():  # the very tensors of before, with their strides
        assert p.data_ptr() == before[n][0] and p.stride() == before[n][1]
    with torch.no_grad():  # and the same function: channels_last changes the layout, not the maths
        plain = model(x_adv)
        with_layout = model.model(((x_adv - 0.5) / 0.25).contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(plain, with_layout, rtol=1e-5, atol=1e-5)


def test_normalized_standardises_pixels_before_the_network():
    net = nn.Conv2d(3, 2, 1)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    p = torch.rand(2, 3, 4, 4)
    expected = net((p - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(Normalized(net, mean, std)(p), expected)


def test_fgsm_on_a_linear_model_is_the_closed_form():
    """Two classes, logits Wx: ∇ₓCE = p_wrong·(w_wrong − w_true), so x̃ = x + ε·sign(w_wrong − w_true)."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x = torch.full((4, 3, 2, 2), 0.5)
    y = torch.tensor([0, 1, 0, 1])
    w = linear[1].weight.detach()
    direction = torch.stack([w[1 - label] - w[label] for label in y]).sign().view_as(x)
    assert torch.equal(FGSM(linear, 0.1)(x, y), x + 0.1 * direction)
    # Targeted: the step goes toward the target, the opposite direction.
    assert torch.equal(FGSM(linear, 0.1, targeted=True)(x, 1 - y), x + 0.1 * direction)


@pytest.mark.parametrize("steps", [2, 5])  # 2·α stays inside the ball; 5·α > ε is projected back onto it
@pytest.mark.parametrize("targeted", [False, True])
def test_l2_pgd_on_a_linear_model_steps_along_the_normalised_gradient(steps, targeted):
    """Two classes, logits Wx: ∇ₓCE of sample i is p_wrong·(w_wrong − w_true), so every ℓ2 step
    α·g/‖g‖₂ goes along the same unit vector uᵢ and the projection onto the ℓ2 ball only shortens
    δ: x̃ = x + min(k·α, ε)·uᵢ. A sign step, a reversed step or one normalised over the whole batch
    lands elsewhere."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    x = 0.4 + 0.2 * torch.rand(4, 3, 2, 2)  # different inputs: gradients of different lengths
    y = torch.tensor([0, 1, 0, 1])
    w = linear[1].weight.detach()
    direction = torch.stack([w[1 - label] - w[label] for label in y])
    unit = (direction / direction.norm(dim=1, keepdim=True)).view_as(x)
    eps, alpha = 0.3, 0.08
    expected = x + min(steps * alpha, eps) * unit
    assert expected.min() > 0 and expected.max() < 1  # the [0, 1] box never binds
    # Targeted to the other class: descending its loss goes the same way.
    attack = PGD(linear, eps, alpha, steps, norm="l2", random_start=False, target=1 - y if targeted else None)
    torch.testing.assert_close(attack(x, y), expected, rtol=0, atol=1e-6)


def test_fgsm_is_one_pgd_step_of_size_eps_from_x(digits):
    """Madry et al.: FGSM is the one-step approximation of the inner maximisation (the CLI's
    targeted FGSM relies on it)."""
    model, x, y, _ = digits
    assert torch.equal(FGSM(model, 0.1)(x, y), PGD(model, 0.1, 0.1, 1, random_start=False)(x, y))
    targets = (y + 3) % 10
    assert torch.equal(FGSM(model, 0.1, targeted=True)(x, targets),
                       PGD(model, 0.1, 0.1, 1, random_start=False, target=targets)(x, y))


def test_fgsm_hurts_far_more_than_the_random_noise_control_of_the_same_size(digits):
    model, x, y, _ = digits
    with torch.no_grad():
        fgsm_acc = (model(FGSM(model, 0.15)(x, y)).argmax(1) == y).float().mean()
        noise_acc = (model(RandomNoise(model, 0.15)(x, y)).argmax(1) == y).float().mean()
    assert fgsm_acc < noise_acc - 0.3


def test_targeted_pgd_reaches_the_target_far_more_often_than_chance(digits):
    model, x, y, _ = digits
    generator = torch.Generator().manual_seed(5)
    attack = PGD(model, 0.2, 0.02, 30, target="random", generator=generator)
    x_adv = attack(x, y)
    targets = (y + torch.randint(1, 10, y.shape, generator=torch.Generator().manual_seed(5))) % 10
    with torch.no_grad():
        reached = (model(x_adv).argmax(1) == targets).float().mean()
    assert reached > 0.5  # chance: 1/9 of the wrong classes, 1/10 overall


def _outcome(model, x_adv, y):
    with torch.no_grad():
        logits = model(x_adv)
    return logits.argmax(1) != y, F.cross_entropy(logits, y, reduction="none")


def test_restarts_never_do_worse_than_one_start_for_any_sample(digits):
    model, x, y, _ = digits
    single = PGD(model, 0.05, 0.01, 5, restarts=1, seed=3)(x, y)
    multi = PGD(model, 0.05, 0.01, 5, restarts=4, seed=3)(x, y)
    fooled_1, loss_1 = _outcome(model, single, y)
    fooled_4, loss_4 = _outcome(model, multi, y)
    assert not (fooled_1 & ~fooled_4).any()
    same = fooled_1 == fooled_4
    assert (loss_4[same] >= loss_1[same] - 1e-5).all()
    assert (fooled_4 & ~fooled_1).any() or (loss_4 > loss_1 + 1e-4).any()  # restarts did find more


def one_pixel_model():
    """Logits of a one-pixel image p, with d = p − 0.5: (0, −d/2, −10 + 24.75·(d + 0.2)).
    At d = −0.2 class 1 just beats class 0 (fooled, CE to class 0 ≈ 0.74, class 2 far behind);
    at d = +0.2 class 0 wins with classes 1 and 2 close behind (not fooled, yet CE ≈ 1.03)."""
    linear = nn.Linear(1, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0], [-0.5], [24.75]]))
        linear.bias.copy_(torch.tensor([0.0, 0.25, -10 - 24.75 * 0.3]))
    return nn.Sequential(nn.Flatten(), linear)


class ScriptedStarts(PGD):
    """PGD whose restarts start from the given offsets, in order, instead of random points of the ball."""

    def __init__(self, *args, starts, **kwargs):
        super().__init__(*args, **kwargs)
        self.starts = iter(starts)

    def random_delta(self, x):
        return torch.full_like(x, next(self.starts))


def test_a_restart_that_fools_the_model_is_not_replaced_by_one_that_does_not():
    """Madry et al.'s restarts keep the worst case per sample: fooling the model ranks before the
    loss, so a later restart with a higher loss that is still classified correctly loses."""
    model, x, y = one_pixel_model(), torch.full((1, 1, 1, 1), 0.5), torch.tensor([0])
    fooled, loss = _outcome(model, torch.cat([x - 0.2, x + 0.2]), torch.cat([y, y]))
    assert fooled.tolist() == [True, False] and loss[1] > loss[0] + 0.2   # the premise
    # α is tiny: each restart ends next to its start
    x_adv = ScriptedStarts(model, 0.3, 1e-3, 1, restarts=2, starts=[-0.2, 0.2])(x, y)
    assert abs(x_adv.item() - 0.3) < 0.01


def test_targeted_restarts_keep_the_lowest_loss_to_the_target():
    """Targeted, neither restart reaches the target: the one with the lower cross-entropy to the
    target (−CE ranked highest) is kept, not the one farthest from it."""
    model, x, y, target = one_pixel_model(), torch.full((1, 1, 1, 1), 0.5), torch.tensor([0]), torch.tensor([2])
    with torch.no_grad():
        logits = model(torch.cat([x + 0.2, x - 0.2]))
    to_target = F.cross_entropy(logits, torch.cat([target, target]), reduction="none")
    assert (logits.argmax(1) != 2).all() and to_target[0] < to_target[1] - 5   # the premise
    x_adv = ScriptedStarts(model, 0.3, 1e-3, 1, restarts=2, target=target, starts=[0.2, -0.2])(x, y)
    assert abs(x_adv.item() - 0.7) < 0.01


def test_l2_random_starts_are_uniform_in_the_ball():
    """A uniform point of the d-dimensional ℓ2 ball of radius ε has P(‖δ‖₂ ≤ ε·q^(1/d)) = q: its
    radius is ε·u^(1/d) (ε·u would crowd the centre: median ε/2 instead of ε·0.5^(1/d) ≈ 0.94ε)."""
    eps, d = 0.5, 12
    radius = per_sample_norm(PGD(nn.Identity(), eps, 0.1, 1, norm="l2", seed=0).random_delta(
        torch.zeros(4000, 3, 2, 2)), "l2")
    assert radius.max() <= eps + 1e-6
    for q in (0.1, 0.5, 0.9):
        assert (radius <= eps * q ** (1 / d)).float().mean().item() == pytest.approx(q, abs=0.03)


def test_lbfgs_reaches_the_label_inside_the_box(digits):
    model, x, y, _ = digits
    x, y = x[:16], y[:16]
    attack = LBFGS(model, target="least_likely", search_steps=4, max_iter=30)
    x_adv = attack(x, y)
    with torch.no_grad():
        logits = model(x)
        reached = model(x_adv).argmax(1) == logits.argmin(1)
    assert reached.float().mean() >= 0.75 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_lbfgs_search_over_c_shrinks_the_perturbation(digits):
    """Further steps of the search over c keep, per sample, only a smaller successful r."""
    model, x, y, _ = digits
    x, y = x[:16], y[:16]
    short = LBFGS(model, target="least_likely", search_steps=1, max_iter=30)(x, y)
    long = LBFGS(model, target="least_likely", search_steps=5, max_iter=30)(x, y)
    with torch.no_grad():
        target = model(x).argmin(1)
        both = (model(short).argmax(1) == target) & (model(long).argmax(1) == target)
    assert both.sum() >= 8
    short_size, long_size = ((a - x).flatten(1).norm(dim=1)[both] for a in (short, long))
    assert (long_size <= short_size + 1e-6).all() and long_size.mean() < short_size.mean()


def test_untargeted_lbfgs_never_aims_at_the_true_label():
    """Without a target, l is the nearest wrong label: on a misclassified image whose runner-up is the
    true class, that is the predicted class, so the result stays misclassified."""
    linear = nn.Linear(2, 3)
    with torch.no_grad():   # logits (2·p₀ + 0.1, 2·p₁, −5)
        linear.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
        linear.bias.copy_(torch.tensor([0.1, 0.0, -5.0]))
    model, x, y = nn.Sequential(nn.Flatten(), linear), torch.full((1, 1, 1, 2), 0.5), torch.tensor([1])
    with torch.no_grad():
        assert model(x).topk(2, 1).indices.tolist() == [[0, 1]]   # predicted 0, runner-up the true label 1
        assert model(LBFGS(model, search_steps=2, max_iter=20)(x, y)).argmax(1).tolist() == [0]


class ScriptedSearch(LBFGS):
    """L-BFGS whose minimiser returns the given perturbations, one per step of the search over c."""

    def __init__(self, model, perturbations, **kwargs):
        super().__init__(model, search_steps=len(perturbations), **kwargs)
        self.perturbations = iter(perturbations)

    def _minimise(self, x, labels, c, lower, upper):
        return x + next(self.perturbations)


def test_lbfgs_keeps_the_smallest_successful_perturbation_of_the_search():
    """Szegedy et al.: the closest x + r classified as l, so of all minimisers reached along the search
    over c the smallest successful r is returned, not the last one."""
    linear = nn.Linear(1, 2)
    with torch.no_grad():   # class 1 (the runner-up of the clean 0.4) from pixel value 0.5 on
        linear.weight.copy_(torch.tensor([[0.0], [10.0]]))
        linear.bias.copy_(torch.tensor([0.0, -5.0]))
    model, x, y = nn.Sequential(nn.Flatten(), linear), torch.full((1, 1, 1, 1), 0.4), torch.tensor([0])
    # reached, reached (smallest), reached, not reached
    x_adv = ScriptedSearch(model, [0.4, 0.15, 0.3, 0.05])(x, y)
    assert x_adv.item() == pytest.approx(0.55)


@pytest.mark.parametrize("target", [None, "random"])
def test_differential_evolution_best_fitness_never_worsens_stops_at_the_threshold_and_is_returned(digits, target):
    model, x, y, _ = digits
    attack = OnePixel(model, pixels=3, popsize=30, max_iter=15, target=target)
    x_adv = attack(x[:16], y[:16])
    history = attack.history
    assert history.shape[1] == 16 and len(history) >= 2
    assert (history[1:] <= history[:-1] + 1e-7).all()
    assert (history[-1] < history[0]).any()
    stop = 0.1 if target else 0.05  # 1 − 90 % target probability; 5 % true-class probability
    stopped = len(history) - 1 < 15
    assert not stopped or (history[-1] < stop).all()
    assert ((x_adv - x[:16]).abs().amax(1) > 0).flatten(1).sum(1).max() <= 3  # at most d pixels
    # the image returned is the population's best: its fitness is the last generation's best
    with torch.no_grad():
        probability = attack.logits(x_adv).float().softmax(1)
    fitness = 1 - probability if target else probability.gather(1, y[:16, None])   # targeted: some class is it
    assert ((fitness - history[-1][:, None]).abs() < 1e-5).any(1).all()


def test_substitute_attack_counts_queries_and_transfers(digits):
    model, x, y, data = digits
    seeds = data.val.images[:20].float() / 255
    attack = SubstituteAttack(model, 0.2, seeds, 10, rounds=3, epochs=5)
    x_adv = attack(x, y)
    assert attack.queries == 20 * 2 ** (3 - 1) == attack.training_set_size
    queries = attack.queries
    attack(x, y)  # fitted once: attacking more images asks the oracle nothing
    assert attack.queries == queries
    with torch.no_grad():
        transfer = (model(x_adv).argmax(1) != y).float().mean()
        noise = (model(RandomNoise(model, 0.2)(x, y)).argmax(1) != y).float().mean()
    assert transfer > noise


class LabelsOnly(nn.Module):
    """The oracle's decisions and nothing else: a detached one-hot of its argmax, rescaled."""

    def __init__(self, model, num_classes):
        super().__init__()
        self.model, self.num_classes = model, num_classes

    def forward(self, x):
        with torch.no_grad():
            label = self.model(x).argmax(1)
        return 7.0 * F.one_hot(label, self.num_classes).float() - 3.0


def test_substitute_attack_asks_the_oracle_for_labels_only(digits):
    """Papernot et al.'s Õ answers argmax_j O_j(x): an oracle with the same decisions but other
    outputs (and no gradient) leaves the substitute, its augmented training set and x̃ unchanged."""
    model, x, y, data = digits
    seeds = data.val.images[:20].float() / 255
    results = []
    for oracle in (model, LabelsOnly(model, 10)):
        attack = SubstituteAttack(oracle, 0.2, seeds, 10, rounds=3, epochs=5)
        results.append((attack(x, y), attack.substitute.state_dict(), attack.queries))
    (x_adv, weights, queries), (x_adv_labels, weights_labels, queries_labels) = results
    assert (x_adv != x).any() and torch.equal(x_adv, x_adv_labels) and queries == queries_labels
    assert all(torch.equal(weights[name], weights_labels[name]) for name in weights)


class Recording(nn.Module):
    """The model, remembering every batch it is asked about."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def test_jacobian_augmentation_steps_along_the_sign_of_the_labelled_logits_gradient():
    """Papernot et al., Algorithm 1: S₁ = {x + λ·sign(∂F_Õ(x)(x)/∂x)} ∪ S₀. For a linear substitute
    F(x) = Wx + b that gradient is the row W[Õ(x)]; the new points are what the oracle is asked next."""
    torch.manual_seed(0)
    oracle = Recording(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))
    substitute = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    weight = substitute[1].weight.detach().clone()
    seeds = 0.3 + 0.4 * torch.rand(10, 1, 3, 4)   # λ = 0.1 steps stay inside [0, 1]
    # epochs=0: the substitute is not trained, so its Jacobian is the W above
    SubstituteAttack(oracle, 0.1, seeds, 3, substitute=substitute, rounds=2, lam=0.1, epochs=0).fit()
    assert len(oracle.seen) == 2 and torch.equal(oracle.seen[0], seeds)
    labels = oracle.model(seeds).argmax(1)
    torch.testing.assert_close(oracle.seen[1], seeds + 0.1 * weight[labels].sign().view_as(seeds))


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_adversarial_training_batch_measures_eps_in_pixels(digits, method):
    """Standardised with std 0.3, an ε of 0.1 pixels is 0.1/0.3 standardised units."""
    model, x, y, data = digits
    normalizer = Normalizer([0.4], [0.3])
    cfg = type("Cfg", (), dict(adv=method, adv_eps=0.1, adv_alpha=0.03, adv_steps=5, adv_weight=0.5))
    standardised = normalizer((x * 255).round().to(torch.uint8))
    # The task's network takes standardised input; the MLP of the fixture does.
    batch, labels = AdversarialTraining(cfg).batch(model.model, normalizer, standardised, y,
                                                   torch.Generator().manual_seed(0))
    pixels = batch * 0.3 + 0.4
    if method == "fgsm":
        assert torch.equal(batch[:len(x)], standardised) and torch.equal(labels, torch.cat([y, y]))
        pixels = pixels[len(x):]
    clean = standardised * 0.3 + 0.4
    change = (pixels - clean).abs()
    assert change.max() <= 0.1 + 1e-5 and change.max() > 0.1 - 1e-5
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_goodfellow_objective_weighs_clean_and_adversarial_halves():
    logits = torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))

    def ce(output, target, model, label_smoothing):
        return F.cross_entropy(output, target), output
    loss, both = goodfellow_objective(ce, logits, labels, None, 0.0, 0.3)
    expected = 0.3 * F.cross_entropy(logits[:4], labels[:4]) + 0.7 * F.cross_entropy(logits[4:], labels[4:])
    assert torch.allclose(loss, expected) and torch.equal(both, logits)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_adversarial_training_step_trains_on_eps_close_examples_with_the_documented_loss(method):
    """One real step of `--adv`: the network, in training mode, sees [x; x̃] (FGSM) or x̃ alone (PGD),
    x̃ within ε of x in pixels and of higher loss, and the step's loss is α·CE(x) + (1 − α)·CE(x̃)
    (FGSM, Goodfellow et al. Sec. 5) or CE(x̃) (PGD, Madry et al. Eq. 2.1)."""
    from visionzoo.engine.trainer import TrainConfig, Trainer
    eps, weight = 0.1, 0.7
    trainer = Trainer(TrainConfig(model="lenet", data="fake", train_limit=16, batch_size=16, epochs=1, amp="off",
                                  crop=0, flip=False, label_smoothing=0.0, adv=method, adv_eps=eps,
                                  adv_alpha=0.04, adv_steps=3, adv_weight=weight, quiet=True))
    before = copy.deepcopy(trainer.model)
    seen = []
    hook = trainer.model.register_forward_hook(
        lambda module, inputs, output: seen.append((module.training, inputs[0].detach().clone())))
    trainer.train_epoch()  # 16 training images in batches of 16: one step
    hook.remove()
    trained = [batch for training, batch in seen if training]
    assert trainer.global_step == 1 and len(trained) == 1 and len(seen) > 1  # the adversary's passes: eval mode
    batch = trained[0]
    # The trainer feeds (p − mean)/std; each image seen, in pixels, matched to its nearest training image.
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (trainer.normalizer.mean, trainer.normalizer.std))
    pixels = batch * std + mean
    train_pixels = trainer.data.train.images.float() / 255
    distance, match = (pixels[:, None] - train_pixels[None]).abs().flatten(2).amax(2).min(1)
    n = len(train_pixels)
    labels = trainer.data.train.labels[match[-n:]]
    clean = train_pixels[match[-n:]]
    assert len(batch) == (2 * n if method == "fgsm" else n) and sorted(match[-n:].tolist()) == list(range(n))
    if method == "fgsm":  # the first half is x itself, the second its adversarial twin, row by row
        assert distance[:n].max() < 1e-5 and torch.equal(match[:n], match[n:])
    adversarial = pixels[-n:]
    change = (adversarial - clean).abs()
    assert change.max() <= eps + 1e-5 and adversarial.min() >= -1e-5 and adversarial.max() <= 1 + 1e-5
    if method == "fgsm":  # x̃ = x + ε·sign(∇ₓJ): every pixel away from the box's walls moves by ε
        assert (change > eps - 1e-5).float().mean() > 0.5
        expected = FGSM(Normalized(before, mean, std), eps)(pixels[:n].clamp(0, 1), labels)  # θ before the step
        torch.testing.assert_close(adversarial, expected, rtol=0, atol=1e-5)
    else:
        assert (change > 0).float().mean() > 0.9 and change.max() > eps / 2
    with torch.no_grad():  # recomputed from the recorded batch with the weights before the step
        logits = before(batch)
        clean_loss = F.cross_entropy(before((clean - mean) / std), labels)
    adversarial_loss = F.cross_entropy(logits[-n:], labels)
    assert adversarial_loss > clean_loss + 0.05  # the inner maximisation did raise the loss (≈ 0.25 here)
    if method == "fgsm":
        torch.testing.assert_close(F.cross_entropy(logits[:n], labels), clean_loss, rtol=1e-5, atol=1e-6)
        expected_loss = weight * clean_loss + (1 - weight) * adversarial_loss
    else:
        expected_loss = adversarial_loss
    loss = (trainer.running[0] / trainer.running[2]).float()  # the step's loss, as the trainer logged it
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("attack") / "run"
    result = cli_here("train", "--model", "lenet", "--data", "digits", "--image-size", "28", "--epochs", "1",
                      "--quiet", "--out", run)
    assert result.returncode == 0, result.stderr
    return run


def test_attack_command_writes_report_and_panda_figure(digits_run, tmp_path):
    out = tmp_path / "attack"
    result = cli_here("attack", digits_run, "--method", "pgd", "--eps", "0.1", "--steps", "5", "--n", "40",
                      "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("method", "eps", "n", "clean_acc", "robust_acc", "success_rate", "mean_linf", "mean_l2",
                "seconds", "queries"):
        assert key in report
    assert report["method"] == "pgd" and report["n"] == 40 and report["mean_linf"] <= 0.1 + 1e-6
    assert report["robust_acc"] < report["clean_acc"]
    assert json.loads((out / "attack.json").read_text()) == report
    assert (out / "attack.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attack_command_bad_usage_exits_2_with_one_line(digits_run):
    for args in (["--method", "pgd"], ["--method", "fgsm", "--eps", "2"],
                 ["--method", "noise", "--eps", "0.1", "--target", "3"], ["--method", "fgsm", "--eps", "0.1",
                 "--norm", "l2"], ["--method", "pgd", "--eps", "0.1", "--target", "10"]):
        assert_one_line_exit_2(cli_here("attack", digits_run, *args))


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_adversarial_training_runs_and_is_recorded(tmp_path, method):
    run = tmp_path / method
    result = cli_here("train", "--model", "lenet", "--data", "fake", "--train-limit", "64", "--batch-size", "16",
                      "--epochs", "1", "--quiet", "--adv", method, "--adv-eps", "0.2", "--adv-alpha", "0.05",
                      "--adv-steps", "2", "--adv-weight", "0.7", "--out", run)
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["adv"], config["adv_eps"], config["adv_alpha"], config["adv_steps"], config["adv_weight"]) == \
           (method, 0.2, 0.05, 2, 0.7)
