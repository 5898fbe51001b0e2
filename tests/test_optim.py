"""Optimisation techniques by their defining property: AGC, EMA, linear scaling, weight-decay
modes, multistep/plateau schedules (with resume), early stopping with the best weights restored."""
import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.engine.agc import AGC_EPS, adaptive_clip_, clipped_parameters, unitwise_norm
from visionzoo.engine.ema import ModelEMA
from visionzoo.engine.optim import build_optimizer, scaled_lr
from visionzoo.engine.schedules import LRSchedule, lr_factor
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.tasks import classification as task_module
from visionzoo.weights import read_state_dict


def opt_cfg(**kw):
    base = dict(lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=0.01, wd_mode=None, backbone_lr_mult=1.0)
    return SimpleNamespace(**{**base, **kw})


def test_agc_clips_exactly_the_units_above_lambda_and_spares_the_classifier():
    torch.manual_seed(0)
    model = vz.create_model("highway_fc", num_classes=10)
    clipping = 0.05
    for p in model.parameters():  # unit ratios ‖G_i‖/‖W_i‖ spread uniformly over [0, 2λ]
        direction = torch.randn_like(p)
        direction /= unitwise_norm(direction)
        scale = torch.rand(p.shape[0] if p.ndim > 1 else 1, *[1] * (p.ndim - 1)) * 2 * clipping
        p.grad = direction * unitwise_norm(p.detach()).clamp_min(AGC_EPS) * scale
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    adaptive_clip_(clipped_parameters(model), clipping)
    head = {n for n, p in model.named_parameters() if any(p is q for q in model.get_classifier().parameters())}
    assert head
    clipped = kept = 0
    for name, p in model.named_parameters():
        if name in head:
            assert torch.equal(p.grad, before[name])
            continue
        ratio = unitwise_norm(before[name]) / unitwise_norm(p.detach()).clamp_min(AGC_EPS)
        over = (ratio > clipping).expand_as(p)
        clipped += int(over.any())
        kept += int((~over).any())
        torch.testing.assert_close(p.grad[~over], before[name][~over], rtol=0, atol=0)
        # a clipped unit keeps its direction and has ‖G_i‖ = λ·max(‖W_i‖, ε)
        new_ratio = unitwise_norm(p.grad) / unitwise_norm(p.detach()).clamp_min(AGC_EPS)
        assert torch.allclose(new_ratio[ratio > clipping], torch.tensor(clipping), rtol=1e-4)
    assert clipped > 2 and kept > 2   # both cases occurred


def test_ema_equals_the_recursive_formula():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, 0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))          # moves BN's running statistics and step count
        ema.update(model)
        for k, v in model.state_dict().items():
            expected[k] = 0.9 * expected[k] + 0.1 * v if v.is_floating_point() else v.clone()
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_linear_scaling_rule_multiplies_the_rate_by_b_over_256():
    assert scaled_lr(0.1, 1024, 256) == pytest.approx(0.4) and scaled_lr(0.1, 64, 256) == pytest.approx(0.025)
    assert scaled_lr(0.1, 1024, None) == 0.1   # the trainer's resolved rate: tests/test_technique_flags.py


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("nesterov", torch.optim.SGD),
                                       ("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_optimizer_choices(name, cls):
    optimizer = build_optimizer(vz.create_model("lenet"), opt_cfg(optimizer=name))
    assert type(optimizer) is cls
    assert all(g.get("nesterov", False) == (name == "nesterov") for g in optimizer.param_groups)


@pytest.mark.parametrize("name", ["sgd", "nesterov"])
def test_fused_sgd_updates_bit_for_bit_as_the_foreach_one(name):
    torch.manual_seed(0)
    ours_model = vz.create_model("resnet9_slim", image_size=16)
    reference_model = copy.deepcopy(ours_model)
    ours = build_optimizer(ours_model, opt_cfg(optimizer=name))
    weights = [p for p in reference_model.parameters() if p.ndim > 1]
    others = [p for p in reference_model.parameters() if p.ndim <= 1]
    reference = torch.optim.SGD([{"params": weights, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}],
                                lr=0.1, momentum=0.9, nesterov=name == "nesterov", foreach=True)
    assert ours.defaults["fused"] and not reference.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in ours_model.parameters()]
        for model, optimizer in ((ours_model, ours), (reference_model, reference)):
            for parameter, grad in zip(model.parameters(), grads):
                parameter.grad = grad.clone()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_model.parameters(), reference_model.parameters()))


def test_l2_decay_goes_through_momentum_and_decoupled_decay_does_not():
    w0 = torch.tensor([[1.0, -2.0]])
    grads = torch.tensor([[0.5, 0.25]])
    results = {}
    for mode in ("l2", "decoupled"):
        layer = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(w0)
        optimizer = build_optimizer(layer, opt_cfg(wd_mode=mode))
        layer.weight.grad = grads.clone()
        optimizer.step()
        results[mode] = (layer.weight.detach().clone(), optimizer.state[layer.weight]["momentum_buffer"])
    w_l2, buffer_l2 = results["l2"]
    w_dec, buffer_dec = results["decoupled"]
    torch.testing.assert_close(buffer_l2, grads + 0.01 * w0)               # λw inside the gradient
    torch.testing.assert_close(buffer_dec, grads)                          # gradient alone
    torch.testing.assert_close(w_dec, w0 * (1 - 0.1 * 0.01) - 0.1 * grads)   # w(1 − ηλ) − η·g
    torch.testing.assert_close(w_l2, w0 - 0.1 * (grads + 0.01 * w0))


def test_adam_with_decoupled_decay_is_adamw():
    assert type(build_optimizer(nn.Linear(2, 2), opt_cfg(optimizer="adam", wd_mode="decoupled"))) is torch.optim.AdamW
    assert type(build_optimizer(nn.Linear(2, 2), opt_cfg(optimizer="adam", wd_mode="l2"))) is torch.optim.Adam


def test_backbone_learns_at_a_multiple_of_the_head_rate():
    model = vz.create_model("lenet")
    optimizer = build_optimizer(model, opt_cfg(backbone_lr_mult=0.1))
    head = {id(p) for p in model.get_classifier().parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1
        assert group["lr"] == pytest.approx(0.1 if in_head.pop() else 0.01)


def test_multistep_multiplies_by_gamma_at_each_milestone():
    f = [lr_factor(s, total_steps=100, steps_per_epoch=10, schedule="multistep", milestones=[3, 7], gamma=0.5)
         for s in range(100)]
    assert set(f[:30]) == {1.0} and set(f[30:70]) == {0.5} and set(f[70:]) == {0.25}


def test_plateau_reduces_after_patience_and_survives_a_checkpoint():
    def scheduler_for(schedule):
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    schedule = LRSchedule(patience=2, total_steps=100, steps_per_epoch=10, schedule="plateau", gamma=0.1)
    scheduler = scheduler_for(schedule)
    rates = []
    for loss in [1.0, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85, 0.85, 0.85]:
        scheduler.optimizer.step()
        scheduler.step()
        schedule.epoch_end(loss, scheduler)
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
    # 0.9 is the best at epoch 2; epochs 3, 4 do not improve (patience 2), epoch 5 is the third → ×0.1
    assert rates == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01])
    restored = LRSchedule(patience=2, total_steps=100, steps_per_epoch=10, schedule="plateau", gamma=0.1)
    resumed = scheduler_for(restored)
    resumed.load_state_dict(copy.deepcopy(scheduler.state_dict()))
    assert (restored.reduction, restored.best_loss, restored.bad_epochs) == \
           (schedule.reduction, schedule.best_loss, schedule.bad_epochs)
    assert restored(resumed.last_epoch) == pytest.approx(0.01)


@pytest.mark.parametrize("seed", range(3))
def test_plateau_reduces_when_torchs_reduce_lr_on_plateau_does(seed):
    """Its rule is PyTorch's (mode min, relative threshold 1e-4, no cooldown): losses that improve by
    less than the threshold, or tie, count as epochs without improvement."""
    generator = torch.Generator().manual_seed(seed)
    losses, loss = [], 1.0
    for _ in range(30):   # mostly gains under the threshold, some ties, a few real gains
        loss *= [1.0, 1 - 5e-5, 1 - 5e-5, 1 - 5e-5, 1 - 3e-4][int(torch.randint(5, (1,), generator=generator))]
        losses.append(loss)
    schedule = LRSchedule(patience=2, total_steps=100, steps_per_epoch=1, schedule="plateau", gamma=0.5)
    ours = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), schedule)
    torchs = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(torchs, factor=0.5, patience=2)
    for loss in losses:
        schedule.epoch_end(loss, ours)
        reference.step(loss)
        assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(torchs.param_groups[0]["lr"])
    assert torchs.param_groups[0]["lr"] < 1.0   # a reduction happened


def test_clip_grad_scales_the_global_gradient_norm_down_to_the_limit_keeping_its_direction():
    trainer = Trainer(TrainConfig(model="lenet", data="digits", image_size=16, epochs=1, batch_size=32,
                                  train_limit=64, optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0,
                                  schedule="constant", clip_grad=0.5, amp="off", quiet=True, device="cpu"))
    phase = next(iter(trainer.optimizers))
    params = list(trainer.trained_modules[phase].parameters())
    before = [p.detach().clone() for p in params]
    torch.manual_seed(0)
    directions = [torch.randn_like(p) for p in params]
    trainer._optimise(phase, 100 * sum((p * d).sum() for p, d in zip(params, directions)))   # ‖g‖ ≫ 0.5
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, params)])   # plain SGD at rate 1: the gradient
    gradient = 100 * torch.cat([d.flatten() for d in directions])
    assert step.norm().item() == pytest.approx(0.5, rel=1e-4)
    torch.testing.assert_close(step, gradient * 0.5 / gradient.norm(), rtol=1e-4, atol=1e-7)


def test_unitwise_norm_is_the_norm_of_each_output_unit():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 2, 2)
    norms = unitwise_norm(weight)
    assert norms.shape == (4, 1, 1, 1)
    for unit in range(4):
        assert norms[unit].item() == pytest.approx(weight[unit].square().sum().sqrt().item())
    bias = torch.randn(5)
    assert unitwise_norm(bias).item() == pytest.approx(bias.square().sum().sqrt().item())   # a vector is one unit


def _script_val_top1(monkeypatch, trainer, scores):
    """Make `trainer`'s validation top-1 follow `scores` (test evaluations untouched)."""
    scripted, real_evaluate = iter(scores), task_module.evaluate

    def evaluate(model, split, *args, **kwargs):
        result = real_evaluate(model, split, *args, **kwargs)
        return {**result, "top1": next(scripted)} if split is trainer.data.val else result

    monkeypatch.setattr(task_module, "evaluate", evaluate)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_keep_tests_and_saves_the_best_or_the_last_epochs_weights(monkeypatch, tmp_path, keep):
    trainer = Trainer(TrainConfig(model="highway_fc", data="digits", epochs=3, batch_size=64, train_limit=128,
                                  keep=keep, amp="off", quiet=True, out=str(tmp_path)))
    _script_val_top1(monkeypatch, trainer, [0.5, 0.9, 0.6])   # best at epoch 2 of 3
    snapshots = []
    trainer.hooks.append(SimpleNamespace(on_epoch_end=lambda t, record: snapshots.append(
        {k: v.clone() for k, v in t.model.state_dict().items()})))
    summary = trainer.run()
    expected = snapshots[1] if keep == "best" else snapshots[2]
    saved = read_state_dict(tmp_path / "model.safetensors")
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    assert not all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in expected)
    assert summary["best_epoch"] == 2 and summary["kept"] == keep


def test_early_stop_stops_after_patience_and_keeps_the_best_weights(monkeypatch):
    trainer = Trainer(TrainConfig(model="highway_fc", data="digits", epochs=5, batch_size=64, train_limit=128,
                                  early_stop=2, amp="off", quiet=True))
    _script_val_top1(monkeypatch, trainer, [0.5, 0.6, 0.55, 0.6, 0.9])   # best at epoch 2; 3, 4 do not beat it
    snapshots = []
    trainer.hooks.append(SimpleNamespace(on_epoch_end=lambda t, record: snapshots.append(
        {k: v.clone() for k, v in t.model.state_dict().items()})))
    summary = trainer.run()
    assert summary["epochs_run"] == 4 and summary["stopped_early"] and summary["best_epoch"] == 2
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(snapshots[3][k], snapshots[1][k]) for k in final)
    assert len(trainer.history) == 4


def test_rmsprop_is_inception_v3s_decay_0_9_and_epsilon_1():
    # Szegedy et al., Rethinking the Inception Architecture, Sec. 8: RMSProp with decay 0.9 and ε = 1.0
    optimizer = build_optimizer(nn.Linear(3, 2), opt_cfg(optimizer="rmsprop"))
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert optimizer.defaults["alpha"] == 0.9 and optimizer.defaults["eps"] == 1.0
