"""The trainer end to end through the CLI: run directory, eval, resume after kill -9, NaN, Ctrl-C, DDP."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from visionzoo.core.io import read_torch

from conftest import assert_one_line_exit_2, assert_same_weights, cli_here, cli_process

RUN_FILES = ["config.json", "metrics.jsonl", "summary.json", "model.safetensors", "model.json",
             "checkpoint.pt", "curves.png", "confusion.png"]
FAKE = ["train", "--model", "lenet", "--data", "fake", "--batch-size", "16", "--seed", "3", "--quiet"]


def metrics(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.slow
def test_fashion_mnist_run_directory_and_eval_matches_summary(tmp_path, fmnist_available):
    run = tmp_path / "r"
    result = cli_process("train", "--model", "lenet", "--data", "fashion-mnist", "--epochs", "1", "--out", run)
    assert result.returncode == 0, result.stderr
    assert "test top1" in result.stdout and "epoch   1/1" in result.stdout
    for name in RUN_FILES:
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    for key in ("model", "data", "epochs", "params", "test_top1", "test_top5", "test_loss",
                "train_seconds", "best_epoch"):
        assert key in summary
    assert summary["test_top1"] > 0.75  # one epoch of LeNet on Fashion-MNIST
    record = metrics(run)[0]
    assert set(record) >= {"epoch", "train_loss", "train_top1", "val_loss", "val_top1", "lr"}
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "lenet" and config["resolved"]["val_images"] == 5000
    model_meta = json.loads((run / "model.json").read_text())
    assert model_meta["classes"][0] == "T-shirt/top" and len(model_meta["mean"]) == 1
    for target in (run, run / "model.safetensors"):
        evaluated = cli_process("eval", target, "--json")
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        assert report["split"] == "test" and report["n"] == 10000
        assert (report["top1"], report["top5"], report["loss"]) == \
               (summary["test_top1"], summary["test_top5"], summary["test_loss"])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    result = cli_process(*FAKE, "--epochs", "6", "--out", run)
    assert result.returncode == 0, result.stderr
    return run


def _wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.002)


@pytest.mark.parametrize("kill_after", ["checkpoint.pt", "metrics.jsonl"])
def test_kill_9_then_resume_is_bit_identical(tmp_path, reference_run, kill_after):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "visionzoo", *FAKE, "--epochs", "6",
                                "--checkpoint-every", "5", "--out", str(run)])
    _wait_for(run / kill_after, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    resumed = cli_process("train", "--resume", run, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(run, reference_run)
    assert metrics(run) == metrics(reference_run)


def test_ctrl_c_saves_exits_130_and_resumes(tmp_path, reference_run):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "visionzoo", *FAKE, "--epochs", "6", "--out", str(run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run / "metrics.jsonl", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted: checkpoint saved" in err
    state = read_torch(run / "checkpoint.pt")
    assert state["epoch"] >= 1
    resumed = cli_process("train", "--resume", run, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(run, reference_run)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = cli_process(*FAKE, "--epochs", "2", "--lr", "1e12", "--label-smoothing", "0", "--amp", "off",
                         "--checkpoint-every", "1", "--out", run)
    assert result.returncode == 1
    assert "loss became" in result.stderr and "last good checkpoint" in result.stderr
    state = read_torch(run / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "summary.json").exists()


def test_bad_usage_exits_2_with_one_line(tmp_path):
    saved_run = tmp_path / "saved"
    saved_run.mkdir()
    (saved_run / "config.json").write_text(json.dumps({"model": "lenet", "epochs": 1, "lr": 0.1}))
    for args, text in ((["train", "--model", "resnet19"], "resnet18"),
                       (["train", "--resume", saved_run, "--model", "lenet", "--epochs", "5"], "--epochs would change"),
                       (["train", "--epochs", "0"], "--epochs"),
                       (["train", "--resume", tmp_path], "config.json"),
                       (["eval", tmp_path / "missing"], "does not exist"),
                       (["train", "--model-arg", "oops"], "KEY=VALUE"),
                       (["frobnicate"], "invalid choice")):
        assert_one_line_exit_2(cli_here(*args), text)
    # the same through a process of its own: nothing else reaches stderr from the start to the exit
    assert_one_line_exit_2(cli_process("train", "--epochs", "0"), "--epochs")


def test_two_process_ddp_matches_one_process(tmp_path):
    common = ["train", "--model", "lenet", "--data", "digits", "--image-size", "28", "--epochs", "1",
              "--batch-size", "64", "--amp", "off", "--crop", "0", "--no-flip", "--quiet",
              "--label-smoothing", "0", "--lr", "0.02"]
    single = cli_process(*common, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", "-m", "visionzoo", *common, "--out",
                             str(tmp_path / "two")], capture_output=True, text=True, timeout=600, env=env)
    assert double.returncode == 0, double.stderr[-2000:]
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2 and one["test_n"] == two["test_n"]
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-4, rtol=1e-3)
    assert abs(one["test_top1"] - two["test_top1"]) <= 0.01
    assert metrics(tmp_path / "one")[0]["train_loss"] == pytest.approx(metrics(tmp_path / "two")[0]["train_loss"], rel=1e-4)


def test_atomic_writes_get_an_ordinary_files_mode_and_leave_nothing_on_failure(tmp_path):
    from visionzoo.core.io import write_atomic, write_json, write_safetensors
    write_json(tmp_path / "a.json", {"x": 1})
    write_safetensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.json", "w.safetensors"):   # not mkstemp's private 0600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name

    def broken(tmp):
        Path(tmp).write_text("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "b.json", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "w.safetensors"]


@pytest.mark.parametrize("model, args, data", [
    ("gru_regressor", ["--train-limit", "64", "--test-limit", "64"], "adding:50"),        # its task's default
    ("gan_mlp_2d", ["--train-limit", "256", "--fid-reference", "none"], "ring8"),         # the one its card names
])
def test_a_run_without_data_trains_on_its_default_and_records_it(tmp_path, model, args, data):
    run = tmp_path / "r"
    done = cli_here("train", "--model", model, "--epochs", "1", "--batch-size", "32", "--quiet", "--out", run, *args)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["data"] == data
    assert json.loads((run / "model.json").read_text())["data"] == data
