"""The video task through the engine and the command line: a run's keys and pictures, exact resume,
`eval` of a video run, the loss, refused options."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visionzoo.cli.main import main
from visionzoo.data import video
from visionzoo.data.video import MOTION_CLASSES
from visionzoo.engine.trainer import TrainConfig, Trainer

from conftest import assert_one_line_exit_2, assert_same_weights, cli_here, interrupt_after, train_flags

SETTINGS = dict(model="c3d_small", data="moving-fmnist", frames=8, image_size=32, clip_frames=6, time_reverse=True,
                epochs=2, batch_size=16, lr=0.01, optimizer="adamw", train_limit=64, val_size=16, test_limit=24,
                eval_batch_size=32, amp="off", seed=0)



@pytest.fixture(scope="module")
def small_clips(fmnist_available_module):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(video, "MOVING_FMNIST_SIZES", (120, 27))
        yield


@pytest.fixture(scope="module")
def fmnist_available_module():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")


@pytest.fixture(scope="module")
def run_dir(small_clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "run"
    assert main(["train", *train_flags(SETTINGS), "--quiet", "--out", str(out)]) == 0
    return out


def test_run_reports_the_video_keys_and_pictures(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "video" and summary["test_n"] == 24 and not summary["channels_last"]
    assert 0 <= summary["test_top1"] <= summary["test_top5"] <= 1 and summary["test_loss"] > 0
    assert list(summary["test_per_class_top1"]) == MOTION_CLASSES
    for picture in ("clips.png", "confusion.png", "curves.png"):
        assert (run_dir / picture).stat().st_size > 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and "val_top1" in records[0]
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["task"] == "video" and meta["input_size"] == [1, 6, 32, 32] and meta["clip_frames"] == 6
    assert meta["data_args"]["frames"] == 8 and meta["kwargs"]["frames"] == 6


def test_interrupted_run_resumes_bit_identical(run_dir, tmp_path):
    interrupt_after(SETTINGS, 5, tmp_path / "stopped")
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_weights(run_dir, tmp_path / "stopped")


def test_eval_json_has_the_contract_keys(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--split", "val", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("split", "n", "top1", "top5", "loss", "per_class_top1", "model", "data"):
        assert key in report
    assert report["split"] == "val" and report["n"] == 16 and report["model"] == "c3d_small"
    summary = json.loads((run_dir / "summary.json").read_text())
    # the saved network is the best epoch's: eval on val repeats that epoch's validation
    assert report["top1"] == pytest.approx(summary["best_val_top1"], abs=1e-12)
    assert main(["eval", str(run_dir), "--quiet"]) == 0
    assert "top1" in capsys.readouterr().out


def test_loss_is_cross_entropy_with_the_runs_label_smoothing(small_clips, tmp_path):
    trainer = Trainer(TrainConfig(**{**SETTINGS, "label_smoothing": 0.3}, quiet=True))
    task = trainer.task
    batch = task.prepare(next(iter(task.train_batches(0, 0))), torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    step = task.training_step(batch, "model", torch.Generator())
    clips, labels = batch
    torch.manual_seed(1)
    expected = F.cross_entropy(task.net(task.normalizer(clips)), labels, label_smoothing=0.3)
    assert step.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert clips.shape[2] == 6 and step.count == len(labels) == 16


@pytest.mark.parametrize("extra, text", [
    (["--mixup", "0.2"], "image classification option"),
    (["--clip-frames", "12"], "have 8 frames"),
    (["--frames", "1"], "at least 2 frames"),
])
def test_refused_options_are_one_line_exit_2(small_clips, extra, text):
    settings = {key: value for key, value in SETTINGS.items() if key not in ("clip_frames", "time_reverse")}
    assert_one_line_exit_2(cli_here("train", *train_flags(settings), "--quiet", *extra), text)


def test_moving_mnist_is_refused_for_classification(tmp_path):
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, np.zeros((4, 10, 16, 16), dtype=np.uint8))
    refused = cli_here("train", "--model", "c3d_small", "--data", f"moving-mnist:{path}", "--val-size", "2", "--quiet")
    assert_one_line_exit_2(refused, "no labels", "moving-fmnist")


def test_eval_refuses_image_only_options(run_dir):
    for extra, text in ((["--tta", "flip"], "--tta"), ([str(run_dir)], "one video run")):
        assert_one_line_exit_2(cli_here("eval", run_dir, *extra), text)


def test_training_top1_counts_the_clips_whose_argmax_is_their_label(small_clips):
    trainer = Trainer(TrainConfig(**SETTINGS, quiet=True))
    task = trainer.task
    clips, labels = task.prepare(next(iter(task.train_batches(0, 0))), torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    step = task.training_step((clips, labels), "model", torch.Generator())
    torch.manual_seed(1)   # the same dropout masks
    right = (task.net(task.normalizer(clips)).argmax(1) == labels).sum().item()
    assert 0 < right and step.sums["top1"].item() == right and step.count == len(labels) == 16


def test_clip_frames_equal_to_the_clip_length_are_accepted(small_clips):
    trainer = Trainer(TrainConfig(**{**SETTINGS, "clip_frames": 8}, quiet=True))
    assert trainer.task.input_size[1] == 8


def test_clips_are_mirrored_by_default_and_not_with_flip_off(small_clips):
    """--flip unset means on for moving-fmnist (its motions have mirror images); --no-flip turns it off."""
    assert Trainer(TrainConfig(**SETTINGS, quiet=True)).task.augmentation.flip is True
    assert Trainer(TrainConfig(**SETTINGS, flip=False, quiet=True)).task.augmentation.flip is False
