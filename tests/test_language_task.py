"""The language task (tasks/language.py) through the engine and the command line: parallel streams
and BPTT windows, the carried state, exact resume, the measures, `eval` and `sample` of a run."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.metrics.language import bits_per_char, word_perplexity_from_bpc
from visionzoo.registry import create_model
from visionzoo.tasks.language import dynamic_measures, language_measures, stream_loss, stream_matrix, windows

from conftest import assert_one_line_exit_2, assert_same_weights, cli_here, interrupt_after

WORDS = "in the beginning god created heaven and earth was without form void darkness upon face of deep".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(8)) + ".\n" for _ in range(60)))
    return path


def settings(corpus) -> dict:
    return dict(model="lstm_lm", data=f"text:{corpus}", model_args={"hidden_size": 16, "num_layers": 2}, bptt=8,
                batch_size=4, epochs=2, optimizer="adam", lr=0.01, weight_decay=0.0, clip_grad=1.0, amp="off", seed=0)


def flags(corpus) -> list[str]:
    return ["--model", "lstm_lm", "--data", f"text:{corpus}", "--model-arg", "hidden_size=16", "--model-arg",
            "num_layers=2", "--bptt", "8", "--batch-size", "4", "--epochs", "2", "--optimizer", "adam", "--lr", "0.01",
            "--weight-decay", "0", "--clip-grad", "1", "--amp", "off", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("language") / "run"
    assert main(["train", *flags(corpus), "--out", str(out)]) == 0
    return out


def test_streams_overlap_by_one_token_and_windows_cover_every_prediction_once():
    tokens = torch.arange(23)
    matrix = stream_matrix(tokens, 4)                   # 4 rows of (23 − 1) // 4 + 1 = 6 tokens
    assert matrix.tolist()[1] == [5, 6, 7, 8, 9, 10] and torch.equal(matrix[:-1, -1], matrix[1:, 0])
    targets = torch.cat([t for _, t in windows(matrix, 2)], 1)
    assert sorted(targets.flatten().tolist()) == list(range(1, 21))
    for inputs, target in windows(matrix, 2):
        assert torch.equal(inputs + 1, target)          # each input predicts the token after it


def test_each_window_continues_its_stream_where_the_last_stopped(corpus):
    trainer = Trainer(TrainConfig(**settings(corpus), quiet=True))
    task = trainer.task
    batches = list(task.train_batches(0, 0))
    assert len(batches) == task.windows == trainer.steps_per_epoch
    for (inputs, targets), (following, _) in zip(batches, batches[1:]):
        assert torch.equal(inputs[:, 1:], targets[:, :-1]) and torch.equal(following[:, 0], targets[:, -1])
    # a resumed epoch's batches are the uninterrupted epoch's from that step on
    assert all(torch.equal(a[0], b[0]) for a, b in zip(task.train_batches(0, 3), batches[3:]))
    stream = torch.cat([inputs[0] for inputs, _ in batches])
    assert torch.equal(stream, task.data.train[:len(stream)])


def test_the_state_is_carried_between_windows_and_reset_at_each_epoch(corpus):
    trainer = Trainer(TrainConfig(**settings(corpus), quiet=True))
    task, model = trainer.task, trainer.model
    batches = task.train_batches(0, 0)
    first, second = next(batches), next(batches)
    generator = torch.Generator()
    task.training_step(first, "model", generator)
    carried = task.training_step(second, "model", generator)
    # the second window's loss is that of its positions in one pass over both windows
    both = torch.cat([first[0], second[0]], 1)
    logits, _ = model(both)
    expected = F.cross_entropy(logits[:, 8:].flatten(0, 1), second[1].flatten())
    assert carried.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not task.state[0][0].requires_grad          # detached: truncated BPTT
    next(task.train_batches(1, 0))
    assert task.state is None


def test_measures_follow_the_definitions(corpus):
    model = Trainer(TrainConfig(**settings(corpus), quiet=True)).model.eval()
    tokens = torch.randint(0, model.vocab_size, (41,))
    nats, count = stream_loss(model, tokens, bptt=100, streams=1, device=torch.device("cpu"))
    with torch.no_grad():
        logits, _ = model(tokens[None, :-1])
    assert count == 40 and nats / count / math.log(2) == pytest.approx(bits_per_char(logits, tokens[None, 1:]),
                                                                        rel=1e-6)
    measures = language_measures(nats, count, tokens=41, chars=41, words=8)
    assert measures["bpc"] == pytest.approx(nats / count / math.log(2))
    assert measures["perplexity"] == pytest.approx(word_perplexity_from_bpc(measures["bpc"], 41 / 8))
    # a word model: its perplexity per word is e^(loss), its bpc the bits spread over the characters
    words = language_measures(nats, count, tokens=41, chars=200, words=41)
    assert words["perplexity"] == pytest.approx(math.exp(nats / count))
    assert words["bpc"] == pytest.approx(nats / math.log(2) / count * 41 / 200)


def test_run_summary_sample_and_model_json(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "language" and summary["test_bpc"] > 0 and summary["test_perplexity"] > 1
    assert summary["test_loss"] < math.log(len(WORDS))          # better than chance over the characters
    assert summary["test_bpc"] == pytest.approx(summary["test_loss"] / math.log(2))   # character level
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["vocab"]["level"] == "char" and meta["bptt"] == 8 and meta["kwargs"]["num_classes"] == len(
        meta["vocab"]["symbols"])
    body = (run_dir / "sample.txt").read_text().split(" chars:\n", 1)[1]   # the test text's first 50, 500 drawn
    assert len(body) == 50 + 500 + 1 and set(body) <= set(meta["vocab"]["symbols"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "train_bpc", "val_loss", "val_bpc"} <= set(records[0])


def test_interrupted_run_resumes_bit_identical(corpus, run_dir, tmp_path):
    interrupt_after(settings(corpus), 5, tmp_path / "stopped")
    checkpoint = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step_in_epoch"] == 6 and checkpoint["task"]["carried"] is not None
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_weights(run_dir, tmp_path / "stopped")


def test_eval_json_has_the_contract_keys(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--split", "val", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"split", "n", "bpc", "perplexity", "loss"} <= set(report) and report["split"] == "val"
    summary = json.loads((run_dir / "summary.json").read_text())
    # the saved network is the best epoch's: eval on val repeats that epoch's validation
    assert report["loss"] == pytest.approx(summary["best_val_loss"], abs=1e-12)
    assert main(["eval", str(run_dir), "--quiet"]) == 0
    assert "bpc" in capsys.readouterr().out


def test_eval_by_dynamic_evaluation_repeats_the_runs_test(corpus, tmp_path, capsys):
    run = tmp_path / "dynamic"
    summary = Trainer(TrainConfig(**{**settings(corpus), "epochs": 1, "dynamic_eval": 0.1}, quiet=True,
                                  out=str(run))).run()
    assert main(["eval", str(run), "--json", "--quiet", "--dynamic-eval", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bpc"] == pytest.approx(summary["test_bpc"], rel=1e-9)
    assert report["bpc_static"] == pytest.approx(summary["test_bpc_static"], rel=1e-9)
    assert report["dynamic_eval"] == 0.1 and report["bpc"] != report["bpc_static"]


def test_sample_command_writes_seeded_continuations(run_dir, tmp_path, capsys):
    command = ["sample", str(run_dir), "--prompt", "in the", "--n", "2", "--length", "40", "--seed", "3"]
    assert main([*command, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    written = (tmp_path / "a" / "samples.txt").read_text()
    assert written.count("--- sample") == 2 and "in the" in printed
    assert main([*command, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert (tmp_path / "b" / "samples.txt").read_text() == written        # the seed decides the draws
    # a large bias leaves only the most probable token: every seed draws the same text
    greedy = [*command[:-2], "--bias", "1000", "--json"]
    texts = []
    for seed in ("1", "2"):
        assert main([*greedy, "--seed", seed, "--out", str(tmp_path / seed)]) == 0
        texts.append(json.loads(capsys.readouterr().out)["samples"])
    assert texts[0] == texts[1] and texts[0][0] == texts[0][1]


def test_sample_prompt_outside_the_vocabulary_is_one_line(run_dir, tmp_path):
    refused = cli_here("sample", run_dir, "--prompt", "In the Q", "--out", tmp_path / "x")
    assert_one_line_exit_2(refused, "--prompt", "'I' 'Q'")


def test_dynamic_evaluation_and_word_level(corpus, tmp_path):
    summary = Trainer(TrainConfig(**{**settings(corpus), "epochs": 1, "level": "word", "dynamic_eval": 0.1},
                                  quiet=True, out=str(tmp_path / "words"))).run()
    assert summary["dynamic_eval"] and summary["test_bpc"] != summary["test_bpc_static"]
    # word level: perplexity per word is e^(loss per word)
    assert summary["test_perplexity"] == pytest.approx(math.exp(summary["test_loss"]))
    assert summary["test_perplexity_static"] == pytest.approx(math.exp(summary["test_loss_static"]))


def test_train_and_test_limits_keep_the_first_lines_of_their_splits(corpus):
    task = Trainer(TrainConfig(**settings(corpus), train_limit=20, test_limit=2, quiet=True)).task
    lines = corpus.read_text().split("\n")   # 60 lines: 54 train, 3 val, 3 test (cut at line ends)
    assert task.data.vocab.decode(task.data.train) == "\n".join(lines[:20]) + "\n"
    assert task.data.vocab.decode(task.data.test) == "\n".join(lines[57:59]) + "\n"
    assert task.data.chars["test"] == len(task.data.test) and len(task.data.val) == len("\n".join(lines[54:57])) + 1


def test_image_options_and_oversized_windows_are_refused(corpus):
    with pytest.raises(UsageError, match="--mixup is an image option"):
        Trainer(TrainConfig(**settings(corpus), mixup=0.2, quiet=True))
    with pytest.raises(UsageError, match="--batch-size 4 × --bptt 1000"):
        Trainer(TrainConfig(**{**settings(corpus), "bptt": 1000}, quiet=True))


def test_the_training_bits_per_character_divide_the_bits_per_token_by_the_characters_per_token(corpus):
    # BPC = Σ −log₂ P / characters = (nats per token / ln 2) / (characters per token): a token of c characters
    # spreads its bits over c of them
    trainer = Trainer(TrainConfig(**settings(corpus), quiet=True))
    task = trainer.task
    task.train_chars_per_token = 4.0
    step = task.training_step(next(task.train_batches(0, 0)), "model", torch.Generator())
    assert step.sums["bpc"].item() == pytest.approx(step.sums["loss"].item() / math.log(2) / 4.0)


def _tiny_lm(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_model("lstm_lm", num_classes=6, hidden_size=8, num_layers=2, **kwargs).eval()


def test_evaluation_windows_carry_the_state_so_each_stream_is_scored_as_one_pass():
    """stream_loss reads B streams in windows of T with the state carried across windows: its Σ −ln P and count
    are those of one uninterrupted pass over each row of stream_matrix (written here without windows)."""
    model = _tiny_lm()
    tokens = torch.randint(0, 6, (46,), generator=torch.Generator().manual_seed(1))
    rows = stream_matrix(tokens, 3)                    # 3 rows of (46 − 1) // 3 + 1 = 16 tokens, 45 predictions
    nats, count = stream_loss(model, tokens, bptt=4, streams=3, device=torch.device("cpu"))
    with torch.no_grad():
        logits, _ = model(rows[:, :-1])
    expected = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum")
    assert count == 45 and nats == pytest.approx(expected.item(), rel=1e-5)


def test_dynamic_measures_with_no_learning_are_the_measures_of_one_static_stream():
    """dynamic_measures at lr = 0 is static evaluation of the text as one stream: the same loss, BPC and perplexity as
    language_measures of stream_loss over that one stream (N − 1 predictions of an N-token split)."""
    model = _tiny_lm()
    tokens = torch.randint(0, 6, (40,), generator=torch.Generator().manual_seed(2))
    nats, count = stream_loss(model, tokens, bptt=100, streams=1, device=torch.device("cpu"))
    static = language_measures(nats, count, tokens=40, chars=40, words=7)
    dynamic = dynamic_measures(model, tokens, 0.0, bptt=6, chars=40, words=7)
    assert dynamic["n"] == count == 39
    for key in ("loss", "bpc", "perplexity"):
        assert dynamic[key] == pytest.approx(static[key], rel=1e-5), key
