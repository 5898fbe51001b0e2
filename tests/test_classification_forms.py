"""The two forms of three classification techniques: label smoothing (PyTorch's uniform ε/K or the
notes' ε/(K − 1)), warmup (from near zero or Goyal et al.'s gradual warmup from η to kη) and VGG's
scale jittering (one S per batch or per image)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionzoo.core.errors import UsageError
from visionzoo.data.augment import Augmentation, scale_jitter
from visionzoo.engine.schedules import lr_factor
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.tasks.classification import classification_loss, smoothed_targets
from visionzoo.tasks.techniques import check_model_fits

K, EPS = 5, 0.2


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- label smoothing -------------------------------------------------------------------------------

def test_uniform_form_puts_one_minus_eps_plus_eps_over_k_on_the_true_class():
    q = smoothed_targets(torch.tensor([0, 3]), K, EPS, "uniform")
    torch.testing.assert_close(q.sum(1), torch.ones(2))
    assert q[1, 3].item() == pytest.approx(1 - EPS + EPS / K)
    others = q[1][torch.arange(K) != 3]
    torch.testing.assert_close(others, torch.full((K - 1,), EPS / K))


def test_notes_form_puts_one_minus_eps_on_the_true_class_and_eps_over_k_minus_one_elsewhere():
    q = smoothed_targets(torch.tensor([0, 3]), K, EPS, "notes")
    torch.testing.assert_close(q.sum(1), torch.ones(2))
    assert q[1, 3].item() == pytest.approx(1 - EPS)
    others = q[1][torch.arange(K) != 3]
    torch.testing.assert_close(others, torch.full((K - 1,), EPS / (K - 1)))


def test_smoothing_of_soft_targets_is_linear_and_sums_to_one():
    a, b = smoothed_targets(torch.tensor([1]), K, EPS, "notes"), smoothed_targets(torch.tensor([4]), K, EPS, "notes")
    mixed = 0.3 * F.one_hot(torch.tensor([1]), K).float() + 0.7 * F.one_hot(torch.tensor([4]), K).float()
    q = smoothed_targets(mixed, K, EPS, "notes")  # mixup's targets smoothed = the smoothed targets mixed
    torch.testing.assert_close(q, 0.3 * a + 0.7 * b)
    torch.testing.assert_close(q.sum(1), torch.ones(1))


def test_uniform_loss_is_pytorch_label_smoothing_and_notes_loss_is_the_cross_entropy_to_its_targets():
    logits, labels = torch.randn(6, K, generator=gen(0)), torch.arange(6) % K
    loss, _ = classification_loss(logits, labels, nn.Identity(), EPS)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels, label_smoothing=EPS))
    loss, _ = classification_loss(logits, labels, nn.Identity(), EPS, smoothing_form="notes")
    q = smoothed_targets(labels, K, EPS, "notes")
    torch.testing.assert_close(loss, -(q * logits.log_softmax(1)).sum(1).mean())
    assert not torch.isclose(loss, F.cross_entropy(logits, labels, label_smoothing=EPS))  # the forms differ


def test_notes_form_reaches_the_auxiliary_heads():
    model = nn.Identity()
    model.aux_weight = 0.4
    logits, aux, labels = torch.randn(4, K, generator=gen(1)), torch.randn(4, K, generator=gen(2)), torch.arange(4)
    loss, returned = classification_loss((logits, [aux]), labels, model, EPS, smoothing_form="notes")
    q = smoothed_targets(labels, K, EPS, "notes")
    expected = -(q * logits.log_softmax(1)).sum(1).mean() - 0.4 * (q * aux.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(loss, expected)
    assert returned is logits


def test_notes_form_is_refused_for_networks_with_their_own_objective():
    class OwnObjective(nn.Module):
        def training_loss(self, output, labels, label_smoothing=0.0):
            raise AssertionError("not called")

    cfg = TrainConfig(model="capsnet", label_smoothing=0.1, label_smoothing_form="notes")
    with pytest.raises(UsageError, match="--label-smoothing-form notes"):
        check_model_fits(cfg, OwnObjective())
    check_model_fits(TrainConfig(model="capsnet", label_smoothing=0.1), OwnObjective())  # the default form passes


# --- warmup ------------------------------------------------------------------------------------------

def factors(**kw):
    return [lr_factor(s, total_steps=100, steps_per_epoch=10, schedule="constant", **kw) for s in range(100)]


def test_goyal_warmup_rises_linearly_from_one_over_k_to_one():
    k, warmup = 8, 20
    f = factors(warmup_steps=warmup, warmup_from=1 / k)
    assert f[0] == pytest.approx(1 / k)             # η = kη · 1/k at the first step
    increments = [b - a for a, b in zip(f[:warmup], f[1:warmup + 1])]
    assert increments == pytest.approx([(1 - 1 / k) / warmup] * warmup)  # a constant amount per iteration
    assert set(f[warmup:]) == {1.0}                 # kη after the warmup
    zero = factors(warmup_steps=warmup)             # the default form, unchanged
    assert zero[:warmup] == pytest.approx([(i + 1) / warmup for i in range(warmup)])


def test_goyal_warmup_starts_the_trainer_at_the_small_batch_rate(tmp_path):
    cfg = TrainConfig(model="lenet", data="digits", image_size=16, epochs=2, batch_size=64, lr=0.05, lr_scale_batch=16,
                      warmup_epochs=1, warmup_form="goyal", schedule="constant", train_limit=256, val_size=64,
                      quiet=True, device="cpu")
    cfg.validate()
    trainer = Trainer(cfg)
    assert trainer.lr == pytest.approx(0.05 * 64 / 16)                       # kη
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)   # starts at η
    for _ in range(trainer.steps_per_epoch):
        trainer.optimizer.step()  # no gradients: the weights stay, the schedule advances
        trainer.scheduler.step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.2)    # kη after the warmup epoch


@pytest.mark.parametrize("changes, message", [
    (dict(warmup_epochs=1), "needs --lr-scale-batch"),
    (dict(lr_scale_batch=256), "needs --lr-scale-batch"),
    (dict(lr_scale_batch=256, warmup_epochs=1, batch_size=128), "k ≤ 1"),
])
def test_goyal_warmup_is_refused_without_a_k_above_one(changes, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(warmup_form="goyal", **changes).validate()


# --- scale jittering ------------------------------------------------------------------------------

def column_ramps(n, h=24, w=24):
    return torch.arange(w, dtype=torch.float32).expand(n, 1, h, w).clone()


def magnifications(out):
    """S' = resized side / side of each image, read from the ramp's step (its interior is linear)."""
    steps = out[:, 0, 0, 1:-1].diff(dim=1)
    return 1 / steps.median(dim=1).values


def test_per_image_scale_jitter_rescales_each_image_by_its_own_s():
    x = column_ramps(16)
    per_image = magnifications(scale_jitter(x, 1.2, 1.8, gen(0), per_image=True))
    per_batch = magnifications(scale_jitter(x, 1.2, 1.8, gen(0)))
    assert per_batch.round(decimals=3).unique().numel() == 1
    assert per_image.round(decimals=3).unique().numel() > 4          # different images, different scales
    assert per_image.min() >= 1.2 - 1 / 24 and per_image.max() <= 1.8 + 1 / 24


def test_per_image_scale_jitter_is_a_function_of_the_generator():
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=gen(1))
    first = scale_jitter(x, 1.0, 1.5, gen(7), per_image=True)
    assert first.dtype == torch.uint8 and first.shape == x.shape
    assert torch.equal(first, scale_jitter(x, 1.0, 1.5, gen(7), per_image=True))
    assert not torch.equal(first, scale_jitter(x, 1.0, 1.5, gen(8), per_image=True))


def test_augmentation_passes_the_per_image_choice_on():
    x, labels = column_ramps(16), torch.zeros(16, dtype=torch.long)
    images, _ = Augmentation(scale_jitter=(1.2, 1.8), scale_jitter_per_image=True)(x, labels, 2, gen(3))
    assert magnifications(images).round(decimals=3).unique().numel() > 1
    images, _ = Augmentation(scale_jitter=(1.2, 1.8))(x, labels, 2, gen(3))
    assert magnifications(images).round(decimals=3).unique().numel() == 1


def test_capsnet_training_reconstructs_from_the_true_class_capsule_not_the_longest(monkeypatch):
    # Sabour et al. 2017, Sec. 4.1: during training every digit capsule but that of the TRUE label is masked
    # before the decoder (at test time, the longest); loss = margin loss + 0.0005 · Σ (reconstruction − image)²
    from visionzoo.layers.capsule import margin_loss
    from visionzoo.models.capsnet import RECONSTRUCTION_WEIGHT, min_max_rescaled
    from visionzoo.registry import create_model
    torch.manual_seed(0)
    model = create_model("capsnet").train()
    images = torch.rand(2, 1, 28, 28)
    capsules = torch.randn(2, 10, 16)
    lengths = capsules.norm(dim=-1)
    labels = (lengths.argmax(1) + 1) % 10             # never the longest capsule
    decoded = []
    reconstruct = model.reconstruct
    monkeypatch.setattr(model, "reconstruct",
                        lambda caps, classes: decoded.append(classes) or reconstruct(caps, classes))
    with torch.no_grad():
        loss, _ = model.training_loss((lengths, capsules, images), labels)
        squared = (reconstruct(capsules, labels) - min_max_rescaled(images)).square().sum(1).mean()
    assert len(decoded) == 1 and torch.equal(decoded[0], labels)
    assert loss.item() == pytest.approx((margin_loss(lengths, labels) + RECONSTRUCTION_WEIGHT * squared).item(),
                                        rel=1e-5)
