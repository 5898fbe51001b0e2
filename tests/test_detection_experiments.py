"""The Faster R-CNN tables as experiments (experiments/detection.py) and what they run on: the detection
task's --scene-count and --training-scheme unshared, the optimiser's momentum for parameters that start
late (the alternating training's frozen parts), the interleaved timing."""
from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from visionzoo.data import detection
from visionzoo.engine.optim import build_optimizer
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.experiments import detection as experiments
from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD, Context, get_experiment

from conftest import assert_one_line_exit_2, cli_here

SMALL = dict(model="faster_rcnn_small", data="fmnist-scenes", image_size=64, epochs=2, batch_size=4, lr=0.01,
             val_size=4, test_limit=4, eval_batch_size=8, amp="off", seed=0, quiet=True)


@pytest.fixture(scope="module")
def small_scenes():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")
    with pytest.MonkeyPatch.context() as patch:   # the test split is rendered whole: keep it small
        patch.setattr(detection, "SCENE_COUNTS", (40, 12))
        yield


def test_interleaved_timing_runs_every_step_on_an_image_before_the_next_and_takes_medians():
    calls = []

    def sleeper(name, seconds):
        def step(index):
            calls.append((name, index))
            time.sleep(seconds)
        return step

    ms = experiments.interleaved_ms({"short": sleeper("short", 0.002), "long": sleeper("long", 0.012)}, 3)
    assert calls == [("short", 0), ("long", 0), ("short", 1), ("long", 1), ("short", 2), ("long", 2)]
    assert 2 <= ms["short"] < ms["long"] and ms["long"] >= 12


def test_a_parameter_first_trained_after_others_have_stepped_gets_plain_sgd_momentum():
    # torch's fused SGD refused a group whose momentum buffers were partly missing (TypeError)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    reference = copy.deepcopy(model)
    cfg = TrainConfig(optimizer="nesterov", lr=0.1, momentum=0.9, weight_decay=0.0)
    ours = build_optimizer(model, cfg)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True, foreach=False)
    x = torch.randn(8, 3)
    late_start = model[1].weight.detach().clone()
    for step in range(4):
        for net, optimizer in ((model, ours), (reference, plain)):
            net[1].requires_grad_(step >= 2)   # the second layer frozen for the first two steps
            optimizer.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert not torch.equal(model[1].weight, late_start)   # the late layer moved


def test_scene_count_sets_the_training_scenes_and_leaves_the_test_split(small_scenes):
    fewer = Trainer(TrainConfig(**SMALL, scene_count=10))
    default = Trainer(TrainConfig(**SMALL))
    assert len(fewer.task.data.train) == 10 and len(default.task.data.train) == 40
    assert torch.equal(fewer.task.data.test.images, default.task.data.test.images)
    assert fewer.task.model_meta()["data_args"]["train_size"] == 10   # eval rebuilds the same validation split


def test_staged_schemes_need_the_last_weights_and_an_rpn(small_scenes, tmp_path):
    flags = ["--model", "faster_rcnn_small", "--data", "fmnist-scenes", "--image-size", "64", "--scene-count", "8",
             "--val-size", "4", "--epochs", "1", "--quiet"]
    assert_one_line_exit_2(cli_here("train", *flags, "--training-scheme", "unshared", "--out", tmp_path / "a"),
                           "add --keep last")
    flags[1] = "fast_rcnn_small"
    refused = cli_here("train", *flags, "--training-scheme", "unshared", "--keep", "last", "--out", tmp_path / "b")
    assert_one_line_exit_2(refused, "trains an RPN")


@pytest.mark.slow   # about 20 s: two runs through the engine
def test_unshared_training_is_the_alternating_run_halfway_on_two_backbones(small_scenes):
    settings = dict(SMALL, scene_count=8, schedule="constant", keep="last", epochs=1, training_scheme="unshared")
    unshared = Trainer(TrainConfig(**settings))
    unshared.run()
    shared = Trainer(TrainConfig(**{**settings, "epochs": 2, "training_scheme": "alternating"}))
    shared.run()

    def measured(record):
        return {key: value for key, value in record.items() if key.startswith(("train_", "val_"))}

    # 2 steps per epoch: stages 1, 2 | 3, 4 against 1 | 2; the same first epoch, weights and validation alike
    assert len(shared.history) == 2 and measured(shared.history[0]) == measured(unshared.history[0])
    assert unshared.model.training_stage == 2 and shared.model.training_stage == 4
    assert shared.model.rpn_backbone is None and unshared.model.rpn_backbone is not None
    assert not all(torch.equal(a, b) for a, b in zip(unshared.model.rpn_backbone.state_dict().values(),
                                                      unshared.model.backbone.state_dict().values()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rpn-vs-selective-search", "shared-vs-unshared"])
def test_the_experiments_run_at_the_smoke_budget(small_scenes, tmp_path, name):
    started = time.process_time()   # CPU time: the wall time of a shared machine says little
    outcome = get_experiment(name).run(Context("smoke", tmp_path, seed=0, quiet=True))
    assert time.process_time() - started < 60   # the smoke budget
    assert outcome.verdict in (HELD, NOT_HELD, INCONCLUSIVE) and len(outcome.table) == 2
    for row in outcome.table:
        assert 0 <= row["test_map50"] <= 1 and 0 < row["proposal_ms"] <= row["detection_ms"] + 1e-9
    assert all((tmp_path / figure).stat().st_size > 0 for figure in outcome.figures)
    if name == "rpn-vs-selective-search":
        ss, rpn = outcome.table
        assert 0 < ss["proposals_per_image"] <= 2000 and 0 < rpn["proposals_per_image"] <= 300
        assert outcome.data["proposal_speedup"] == pytest.approx(ss["proposal_ms"] / rpn["proposal_ms"])
    else:
        shared, unshared = outcome.table
        assert (shared["backbones"], unshared["backbones"]) == (1, 2)
        assert shared["epochs"] == 2 * unshared["epochs"]
