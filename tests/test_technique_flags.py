"""Every training-technique flag of `visionzoo train` runs and is recorded in config.json; bad
values exit 2 with one line; a run with EMA, plateau and batch augmentations resumes exactly; the
EMA weights are the ones evaluated and saved; a student that copies its teacher has no distillation loss.

The flags run in groups of compatible options (one short run each) to keep the suite fast.
"""
import json

import pytest
import torch
from safetensors.torch import load_file

from visionzoo.cli.main import main
from visionzoo.engine.trainer import TrainConfig, Trainer

from conftest import assert_one_line_exit_2, cli_here

QUICK = ["--model", "highway_fc", "--data", "digits", "--epochs", "1", "--train-limit", "256",
         "--batch-size", "128", "--amp", "off", "--quiet"]


def train(out, *flags):
    code = main(["train", *QUICK, "--out", str(out), *map(str, flags)])
    return code, (json.loads((out / "config.json").read_text()) if code == 0 else None)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "run"
    assert train(out)[0] == 0
    return out


GROUPS = {
    "augmentation": (["--scale-jitter", "1.0,1.25", "--fancy-pca", "0.1", "--random-erasing", "0.5",
                      "--cutout", "3", "--mixup", "0.2", "--cutmix", "1.0"],
                     dict(scale_jitter="1.0,1.25", fancy_pca=0.1, random_erasing=0.5, cutout=3, mixup=0.2,
                          cutmix=1.0)),
    "optimisation": (["--lr", "0.2", "--optimizer", "rmsprop", "--schedule", "multistep", "--milestones", "1,3",
                      "--wd-mode", "decoupled", "--agc", "0.01", "--ema", "0.99", "--lr-scale-batch", "256"],
                     dict(optimizer="rmsprop", schedule="multistep", milestones=[1, 3], wd_mode="decoupled",
                          agc=0.01, ema=0.99, lr_scale_batch=256)),
    "plateau": (["--optimizer", "adam", "--lr", "0.001", "--schedule", "plateau", "--plateau-patience", "0",
                 "--early-stop", "3", "--test-tta", "flip"],
                dict(optimizer="adam", schedule="plateau", plateau_patience=0, early_stop=3, test_tta="flip")),
    "distillation": (["--teacher", "SOURCE", "--kd-temperature", "3", "--kd-alpha", "0.7"],
                     dict(teacher="SOURCE", kd_temperature=3.0, kd_alpha=0.7)),
    "feature extraction": (["--finetune", "SOURCE", "--freeze-backbone"], dict(finetune="SOURCE", freeze_backbone=True)),
    "fine-tuning": (["--finetune", "SOURCE", "--backbone-lr-mult", "0.1", "--sync-bn"],
                    dict(finetune="SOURCE", backbone_lr_mult=0.1, sync_bn=True)),
}


@pytest.mark.parametrize("group", GROUPS)
def test_flags_run_and_are_recorded(tmp_path, source_run, group):
    flags, recorded = GROUPS[group]
    code, config = train(tmp_path / "run", *[str(source_run) if f == "SOURCE" else f for f in flags])
    assert code == 0
    for key, value in recorded.items():
        assert config[key] == (str(source_run) if value == "SOURCE" else value), key
    resolved = config["resolved"]
    if group == "optimisation":   # linear scaling rule: 0.2 · 128/256
        assert resolved["lr"] == pytest.approx(0.1) and resolved["wd_mode"] == "decoupled"
    if group == "augmentation":   # the eigen-decomposition is saved with the run
        assert len(resolved["fancy_pca"]["eigenvalues"]) == 1 and resolved["fancy_pca"]["eigenvalues"][0] > 0
    if group == "plateau":
        summary = json.loads((tmp_path / "run/summary.json").read_text())
        per_class = summary["test_per_class_top1"]
        assert len(per_class) == 10 and min(per_class.values()) <= summary["test_top1"] <= max(per_class.values())
    if group == "feature extraction":
        source, tuned = load_file(str(source_run / "model.safetensors")), load_file(str(tmp_path / "run/model.safetensors"))
        frozen = [k for k in source if not k.startswith("classifier")]   # highway_fc's head
        assert frozen and all(torch.equal(source[k], tuned[k]) for k in frozen)
        assert resolved["finetune_source_classes"] == 10


@pytest.mark.parametrize("flags, message", [
    (["--scale-jitter", "0.5,1.2"], "--scale-jitter"), (["--scale-jitter", "big"], "--scale-jitter"),
    (["--random-erasing", "1.5"], "--random-erasing"), (["--mixup", "-1"], "--mixup"),
    (["--ema", "1.0"], "--ema"), (["--agc", "0"], "--agc"), (["--wd-mode", "l1"], "--wd-mode"),
    (["--optimizer", "adamw", "--wd-mode", "l2"], "adamw"), (["--schedule", "multistep"], "--milestones"),
    (["--milestones", "5,2", "--schedule", "multistep"], "--milestones"), (["--milestones", "a"], "--milestones"),
    (["--freeze-backbone"], "--finetune"), (["--kd-alpha", "2"], "--kd-alpha"), (["--early-stop", "0"], "--early-stop"),
    (["--whiten"], "no convolution"), (["--teacher", "/nonexistent"], "does not exist"), (["--finetune", "/nonexistent"], "does not exist"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, flags, message):
    assert_one_line_exit_2(cli_here("train", *QUICK, "--out", tmp_path / "bad", *flags), message)


def test_resume_with_ema_plateau_and_augmentations_is_exact(tmp_path):
    options = dict(model="highway_fc", data="digits", epochs=2, batch_size=64, train_limit=128, amp="off", quiet=True,
                   ema=0.9, schedule="plateau", plateau_patience=0, mixup=0.4, random_erasing=0.5, cutmix=1.0,
                   fancy_pca=0.1, scale_jitter="1.0,1.3", agc=0.05, keep="last")   # the last epoch's EMA is saved
    Trainer(TrainConfig(**options, out=str(tmp_path / "whole"))).run()
    first = Trainer(TrainConfig(**options, out=str(tmp_path / "halves")))
    first._write_start()
    first.train_epoch()
    first.end_epoch(0.0)                 # writes the checkpoint of epoch 1, then the process "dies"
    Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "halves")).run()
    for name in ("model.safetensors", "best.safetensors"):
        whole, halves = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "halves" / name))
        assert all(torch.equal(whole[k], halves[k]) for k in whole), name
    lrs = [[json.loads(line)["lr"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
           for run in ("whole", "halves")]
    assert lrs[0] == lrs[1]


def test_whitened_first_convolution_stays_fixed_through_training_and_resume(tmp_path):
    from visionzoo.layers.init import first_convolution
    options = dict(model="lenet", data="digits", image_size=28, epochs=2, batch_size=64, train_limit=128, amp="off",
                   quiet=True, whiten=True, out=str(tmp_path / "run"))
    trainer = Trainer(TrainConfig(**options))
    first = first_convolution(trainer.model)
    whitened, second = first.weight.detach().clone(), trainer.model.features[3].weight.detach().clone()
    assert not first.weight.requires_grad
    trainer._write_start()
    trainer.train_epoch()
    trainer.end_epoch(0.0)
    assert torch.equal(first.weight, whitened) and not torch.equal(trainer.model.features[3].weight, second)
    resumed = Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "run"))
    assert not first_convolution(resumed.model).weight.requires_grad
    resumed.run()
    assert torch.equal(load_file(str(tmp_path / "run/model.safetensors"))["features.0.weight"], whitened)


def test_final_test_accuracy_uses_the_asked_test_time_augmentation(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--test-tta", "flip")[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_tta"] == "flip"
    capsys.readouterr()
    results = {}
    for tta in ("flip", "none"):
        assert main(["eval", str(out), "--tta", tta, "--json"]) == 0
        results[tta] = json.loads(capsys.readouterr().out)["top1"]
    assert summary["test_top1"] == results["flip"]
    assert results["flip"] != results["none"]  # the flipped view changes the predictions of this network


def test_test_limit_evaluates_the_first_n_test_images(tmp_path):
    from visionzoo.data.datasets import load_data
    assert train(tmp_path / "run", "--test-limit", "40")[0] == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_n"] == 40 < len(load_data("digits").test)


def snapshot(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_ema_weights_are_the_ones_evaluated_and_saved(tmp_path, monkeypatch):
    import visionzoo.tasks.classification as task_module
    monkeypatch.setattr(task_module, "plot_curves", lambda *a, **k: None)
    monkeypatch.setattr(task_module, "plot_confusion", lambda *a, **k: None)
    decay = 0.8
    trainer = Trainer(TrainConfig(model="resnet20_cifar", model_args={"layers": [1, 1, 1]}, data="digits", epochs=1,
                                  batch_size=64, train_limit=192, val_size=64, amp="off", quiet=True, ema=decay,
                                  out=str(tmp_path / "run")))
    average = snapshot(trainer.model)    # e₀: the initial weights (ema.py copies the model)
    trained = []                         # the weights after every optimiser step
    trainer.optimizer.register_step_post_hook(lambda *_: trained.append(snapshot(trainer.model)))
    evaluated, evaluate = [], task_module.evaluate   # the weights of every evaluation
    monkeypatch.setattr(task_module, "evaluate",
                        lambda model, *a, **k: evaluated.append(snapshot(model)) or evaluate(model, *a, **k))
    trainer.run()
    assert len(trained) == 3
    for weights in trained:  # e ← d·e + (1 − d)·w for parameters and BN statistics; the step count copied
        average = {k: decay * e + (1 - decay) * weights[k] if e.is_floating_point() else weights[k]
                   for k, e in average.items()}
    saved = load_file(str(tmp_path / "run/model.safetensors"))
    assert any(k.endswith("running_var") for k in saved) and any(k.endswith("num_batches_tracked") for k in saved)
    for state in (saved, *evaluated):    # saved, validated and tested: the average
        assert state.keys() == average.keys()
        for k in average:
            torch.testing.assert_close(state[k], average[k], msg=lambda message: f"{k}: {message}")
    assert len(evaluated) == 2           # the validation split, then the test split
    moved = [k for k in average if average[k].is_floating_point() and not torch.equal(trained[0][k], trained[-1][k])]
    assert moved and all(not torch.allclose(saved[k], trained[-1][k]) for k in moved)  # not the raw weights


def test_a_student_that_copies_its_teacher_starts_with_zero_distillation_loss(tmp_path, source_run):
    # One step of 128 images (train loss = the first step's loss), pure soft targets (α = 1): T²·KL
    # between the teacher's and the student's softened outputs on the same augmented batch.
    losses = {}
    for student, start in (("copy", ["--finetune", source_run]), ("fresh", [])):
        code, _ = train(tmp_path / student, "--teacher", source_run, "--kd-alpha", "1", "--kd-temperature", "4",
                        "--train-limit", "128", *start)
        assert code == 0
        losses[student] = json.loads((tmp_path / student / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
    assert losses["copy"] == pytest.approx(0, abs=1e-6)
    assert losses["fresh"] > 0.01    # ≈ 0.026 for this barely trained teacher
