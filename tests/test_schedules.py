"""Learning-rate schedules and trainer options: each by its defining property."""
import json
import math

import pytest
import torch

from visionzoo.engine.schedules import lr_factor
from visionzoo.engine.trainer import TrainConfig, build_optimizer, train

SPE, TOTAL = 10, 100


def factors(schedule, **kw):
    return [lr_factor(s, total_steps=TOTAL, steps_per_epoch=SPE, schedule=schedule, **kw) for s in range(TOTAL)]


def test_warmup_is_linear_then_the_schedule_takes_over():
    f = factors("constant", warmup_steps=20)
    assert f[:20] == pytest.approx([(i + 1) / 20 for i in range(20)]) and set(f[20:]) == {1.0}


def test_step_decay_every_step_size_epochs():
    f = factors("step", step_size=3, gamma=0.1)
    assert f[29] == 1.0 and f[30] == pytest.approx(0.1) and f[60] == pytest.approx(0.01)


def test_cosine_goes_from_one_to_zero_monotonically():
    f = factors("cosine")
    assert f[0] == 1.0 and f[-1] < 1e-2 and all(a >= b for a, b in zip(f, f[1:]))
    assert f[TOTAL // 2] == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_a_floor_lifts_the_anneal_to_its_fraction_of_the_peak(schedule):
    floored, plain = factors(schedule, final_factor=0.2), factors(schedule)
    # SGDR's η_min + (η − η_min)·c for the same cosine term c: after the peak, an affine map of the floorless one
    peak = plain.index(max(plain))
    assert floored[peak:] == pytest.approx([0.2 + 0.8 * f for f in plain[peak:]]) and floored[-1] < 0.21


def test_onecycle_rises_to_the_peak_then_anneals():
    f = factors("onecycle", pct_start=0.25)
    peak = f.index(max(f))
    assert peak == 25 and f[0] < 0.1 and f[-1] < 1e-2
    assert all(a <= b for a, b in zip(f[:peak], f[1:peak + 1]))


def test_weight_decay_spares_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    groups = build_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert [len(g["params"]) for g in groups] == [1, 3] and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("options", [
    dict(optimizer="adamw", lr=1e-3, schedule="cosine", warmup_epochs=1, lr_floor=0.25),
    dict(optimizer="sgd", lr=0.2, schedule="step", step_size=1, gamma=0.5, clip_grad=1.0, tensorboard=True),
    dict(optimizer="nesterov", train_limit=320, crop=0, flip=False, channels_last="off", amp="off"),
])
def test_trainer_options_run_and_are_recorded(tmp_path, options):
    summary = train(model="lenet", data="fake", epochs=2, batch_size=32, quiet=True, out=str(tmp_path), **options)
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value in options.items():
        assert config[key] == value
    assert math.isfinite(summary["test_loss"]) and summary["test_top1"] > 0.5
    assert config["resolved"]["steps_per_epoch"] == (10 if options.get("train_limit") else 16)
    if options.get("lr_floor"):   # the last epoch's rate: the floor, not the schedule's zero
        last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["lr"] == pytest.approx(options["lr_floor"] * options["lr"], rel=0.05)
    if options.get("tensorboard"):
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
