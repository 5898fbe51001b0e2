"""Short runs (issue 28, item 4): the default peak rate scales with the run's length, and an epoch whose
finite loss explodes is reported in the log and in its record."""
from __future__ import annotations

import math

import pytest

from visionzoo.engine.optim import FULL_RATE_STEPS, PEAK_LR, SHORTEST_RUN_FRACTION, default_lr
from visionzoo.engine.recipes import RECIPES, apply_recipe
from visionzoo.engine.trainer import DIVERGENCE_FACTOR, TrainConfig, Trainer


def test_default_rate_is_the_peak_for_long_runs_and_proportional_below():
    assert default_lr(FULL_RATE_STEPS) == default_lr(10 * FULL_RATE_STEPS) == PEAK_LR
    half = FULL_RATE_STEPS // 2
    assert default_lr(half) == pytest.approx(PEAK_LR * half / FULL_RATE_STEPS)
    assert default_lr(1) == pytest.approx(PEAK_LR * SHORTEST_RUN_FRACTION)
    rates = [default_lr(steps) for steps in range(1, 2 * FULL_RATE_STEPS)]
    assert rates == sorted(rates)


def test_trainer_scales_only_a_rate_nobody_gave():
    small = dict(model="lenet", data="fake", batch_size=50, epochs=2, quiet=True, val_size=100)
    trainer = Trainer(TrainConfig(**small))
    assert trainer.total_steps < FULL_RATE_STEPS
    assert trainer.lr == pytest.approx(default_lr(trainer.total_steps)) and trainer.lr < PEAK_LR
    assert Trainer(TrainConfig(**small, lr=0.3)).lr == 0.3
    # the recipes give their rate: the demo's fmnist93 keeps Page's 0.2 whatever its length
    assert apply_recipe("fmnist93", {})["lr"] == RECIPES["fmnist93"].values["lr"] == 0.2


def test_a_finite_explosion_is_warned_about_and_recorded(capsys):
    cfg = TrainConfig(model="resnet9_slim", data="fake", batch_size=60, epochs=1, lr=2.0, optimizer="sgd",
                      schedule="constant", amp="off", val_size=100, label_smoothing=0.0)
    trainer = Trainer(cfg)
    trainer.run()
    record = trainer.history[0]
    assert math.isfinite(record["val_loss"]) and record["val_loss"] > DIVERGENCE_FACTOR * math.log(10)
    assert "diverging" in record["warning"]
    assert capsys.readouterr().out.count("warning: ") == 1


def test_a_training_loss_ten_times_the_first_epochs_is_divergence():
    trainer = Trainer(TrainConfig(model="lenet", data="fake", batch_size=50, epochs=1, quiet=True, val_size=100))
    calm = {"train_loss": 2.3, "val_loss": 2.3}
    assert trainer._divergence(calm) is None
    trainer.history.append(calm)
    assert trainer._divergence({"train_loss": 2.3 * DIVERGENCE_FACTOR * 0.9, "val_loss": 2.0}) is None
    assert "training loss" in trainer._divergence({"train_loss": 2.3 * DIVERGENCE_FACTOR * 1.1, "val_loss": 2.0})


def test_small_budget_default_learns(fmnist_available):
    cfg = TrainConfig(model="lenet", train_limit=2000, epochs=2, val_size=1000, test_limit=1000, quiet=True)
    trainer = Trainer(cfg)
    summary = trainer.run()
    assert summary["test_top1"] > 0.2   # chance is 0.1
    assert not any("warning" in record for record in trainer.history)


def test_divergence_compares_training_with_the_first_epoch_and_validation_with_a_uniform_guess():
    # the training loss against the FIRST epoch's (not the last one's); the validation loss against ln K (K = 10)
    trainer = Trainer(TrainConfig(model="lenet", data="fake", batch_size=50, epochs=1, quiet=True, val_size=100))
    trainer.history += [{"train_loss": 1.0, "val_loss": 1.0}, {"train_loss": 5.0, "val_loss": 1.0}]
    assert "training loss" in trainer._divergence({"train_loss": DIVERGENCE_FACTOR * 1.2, "val_loss": 1.0})
    trainer.history[:] = [{"train_loss": 0.1, "val_loss": 0.1}]
    uniform = math.log(10)
    assert trainer._divergence({"train_loss": 0.1, "val_loss": DIVERGENCE_FACTOR * uniform * 0.9}) is None
    assert "validation loss" in trainer._divergence({"train_loss": 0.1, "val_loss": DIVERGENCE_FACTOR * uniform * 1.1})
