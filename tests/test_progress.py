"""Progress of long commands (core/progress.py), the model-card cache, reproduce's Ctrl-C, TensorBoard."""
import io
import json
import os
import signal
import subprocess
import sys

import pytest

from visionzoo import registry
from visionzoo.core.errors import UsageError
from visionzoo.core.progress import progress

from conftest import cli_process

FAKE_RUN = ["train", "--model", "lenet", "--data", "fake", "--batch-size", "16", "--seed", "1"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_not_a_terminal_periodic_and_final():
    stream, calls = io.StringIO(), []

    def status():
        calls.append(1)
        return {"loss": 0.5}
    shown = progress(total=4, desc="work", unit="steps", status=status, every=1e-9, stream=stream)
    with shown:
        for _ in range(4):
            shown.update()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("work: 1/4 steps (25%), loss 0.5,") and "left" in lines[0]
    assert lines[-1].startswith("work: 4/4 steps, loss 0.5, done in")
    assert len(lines) == 4 and len(calls) == 4   # 3 periodic (the 4th step is the final line's) + final


def test_status_is_read_only_when_a_line_is_shown():
    stream, calls = io.StringIO(), []
    shown = progress(range(50), desc="x", status=lambda: calls.append(1) or {}, every=3600, stream=stream)
    assert list(shown) == list(range(50))
    assert len(calls) == 1 and stream.getvalue().count("\n") == 1   # the final line only


def test_quiet_prints_nothing_and_a_failure_prints_no_final_line():
    stream = io.StringIO()
    assert list(progress(range(3), quiet=True, stream=stream, every=1e-9)) == [0, 1, 2]
    with pytest.raises(RuntimeError), progress(total=3, desc="y", stream=stream, every=3600) as shown:
        shown.update()
        raise RuntimeError
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    stream = Terminal()
    with progress(total=3, desc="bar here", stream=stream) as shown:
        shown.update(3)
    drawn = stream.getvalue()
    assert drawn.startswith("\rbar here:") and "0/3" in drawn   # tqdm's bar, redrawn in place
    assert "done in" not in drawn


def test_progress_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("VISIONZOO_PROGRESS_SECONDS", "0.25")
    assert progress(total=1, stream=io.StringIO()).every == 0.25
    monkeypatch.setenv("VISIONZOO_PROGRESS_SECONDS", "soon")
    with pytest.raises(UsageError, match="VISIONZOO_PROGRESS_SECONDS='soon'"):
        progress(total=1, stream=io.StringIO())


# ---- the model-card cache -------------------------------------------------------------------

@pytest.fixture
def counted_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(registry, "_CARD_CACHE", {})
    built = []
    build = registry._build

    def counting(entry, *args):
        built.append(entry.name)
        return build(entry, *args)
    monkeypatch.setattr(registry, "_build", counting)
    return built


NAMES = ["lenet5", "lenet300_100"]


def test_second_call_reads_the_cache_without_building(counted_builds, monkeypatch):
    first = registry.model_cards(NAMES)
    assert sorted(counted_builds) == sorted(NAMES)
    assert registry.card_cache_path().exists()
    monkeypatch.setattr(registry, "_CARD_CACHE", {})   # a new process: only the file is left
    assert registry.model_cards(NAMES) == first
    assert sorted(counted_builds) == sorted(NAMES)     # nothing built again
    assert first[0]["params"] == 60_000                # LeNet-5's published count, measured


def test_corrupt_or_stale_cache_is_measured_again(counted_builds, monkeypatch):
    expected = registry.model_cards(NAMES)
    path = registry.card_cache_path()
    path.write_text('{"version": 1, "cards": {"lenet5": ')   # cut short
    monkeypatch.setattr(registry, "_CARD_CACHE", {})
    assert registry.model_cards(NAMES) == expected
    assert len(counted_builds) == 4
    assert json.loads(path.read_text())["cards"].keys() == set(NAMES)   # rewritten whole
    stored = json.loads(path.read_text())
    stored["cards"]["lenet5"]["key"] = "measured from other code"
    stored["cards"]["lenet5"]["card"]["params"] = 1
    path.write_text(json.dumps(stored))
    monkeypatch.setattr(registry, "_CARD_CACHE", {})
    assert registry.model_cards(NAMES) == expected
    assert counted_builds[4:] == ["lenet5"]


def test_card_key_follows_the_entry():
    entry = registry.get_entry("vgg16")
    assert registry.card_key("vgg16") == registry.card_key("vgg16")
    assert registry.card_key("vgg16") != registry.card_key("vgg19")   # same builder, other cfg
    assert entry.builder is registry.get_entry("vgg19").builder


def test_list_models_by_family():
    resnets = registry.list_models(family="resnet")
    assert resnets and all(registry.get_entry(n).family == "resnet" for n in resnets)
    assert set(resnets) == {n for n in registry.list_models() if registry.get_entry(n).family == "resnet"}
    assert registry.list_models("lenet*", family="resnet") == []
    with pytest.raises(UsageError, match="unknown family 'resnets'; did you mean resnet"):
        registry.list_models(family="resnets")


def test_models_json_keeps_stdout_pure_and_reports_on_stderr(tmp_path):
    env = {"VISIONZOO_CACHE": str(tmp_path)}
    first = cli_process("models", "lenet*", "--family", "lenet", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert [c["name"] for c in json.loads(first.stdout)] == ["lenet", "lenet300_100", "lenet5"]
    assert "measuring model cards: 3/3 models, done in" in first.stderr
    again = cli_process("models", "lenet*", "--json", env=env)
    assert again.stdout == first.stdout and again.stderr == ""   # all from the cache


# ---- long commands ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A training run with stderr captured (no terminal), plain progress lines every 50 ms."""
    run = tmp_path_factory.mktemp("progress") / "run"
    result = cli_process(*FAKE_RUN, "--epochs", "2", "--out", run, "--tensorboard", "--tensorboard-every", "4",
                         "--diagnostics", env={"VISIONZOO_PROGRESS_SECONDS": "0.05"})
    assert result.returncode == 0, result.stderr
    return run, result


def test_train_prints_plain_progress_lines_when_stderr_is_a_log(logged_run):
    _, result = logged_run
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert lines, result.stderr
    for line in lines:
        count = line.split(": ")[1].split(" ")[0]
        step, total = map(int, count.split("/"))
        assert 0 < step <= total == 33 and ", loss " in line and ", img/s " in line
    assert {line.split(":")[0] for line in lines} <= {"epoch 1/2", "epoch 2/2"}
    assert "\r" not in result.stderr   # no bar redrawn in place
    assert "epoch   2/2" in result.stdout   # the epoch lines stay on stdout


def test_eval_json_stays_pure_with_progress_on_stderr(logged_run):
    run, _ = logged_run
    evaluated = cli_process("eval", run, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n"] == 200
    assert "evaluating: 200/200 images, done in" in evaluated.stderr
    assert cli_process("eval", run, "--json", "--quiet").stderr == ""


def test_bench_json_stays_pure_with_progress_on_stderr():
    bench = cli_process("bench", "lenet5", "--json", "--repeats", "2", "--warmup", "1", "--batch-size", "4")
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["repeats"] == 2
    assert "timing: 2/2 repeats, done in" in bench.stderr


def test_tensorboard_tags_grouped_per_step_and_per_epoch(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run, _ = logged_run
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "lr/model", "train_epoch/loss", "train_epoch/top1", "val/loss", "val/top1",
            "test/top1", "test/loss"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(4, 67, 4))   # every 4 of 2 × 33 steps
    assert [e.step for e in events.Scalars("val/top1")] == [33, 66]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("val/loss")] == pytest.approx([m["val_loss"] for m in metrics])
    diagnostics = json.loads((run / "diagnostics.json").read_text())["layers"]
    grad = diagnostics["features.0"]["grad_norm"]
    logged = events.Scalars("diagnostics/grad_norm/features.0")
    assert [e.step for e in logged] == grad["step"]
    assert [e.value for e in logged] == pytest.approx(grad["value"])
    assert {f"diagnostics/{p}/features.0" for p in ("p15", "p50", "p85")} <= tags


def test_reproduce_ctrl_c_exits_130_and_says_how_to_continue(tmp_path):
    out = tmp_path / "exp"
    process = subprocess.Popen([sys.executable, "-m", "visionzoo", "reproduce", "degradation", "--budget", "smoke",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               # as a terminal's foreground job: Ctrl-C not ignored even if this process ignores it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in process.stderr:   # interrupt during its second training run
        seen.append(line)
        if line.startswith("training plain56_cifar"):
            break
    else:
        pytest.fail(f"no training run announced: {''.join(seen)}")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and str(out) in stderr
    assert "Traceback" not in stderr and not (out / "results.json").exists()
