"""The cloze task (tasks/cloze.py) through the engine and the command line: the readers learn an easy
cloze far above chance, batches and exact resume, chance_loss, `visionzoo eval` of a run."""
from __future__ import annotations

import json
import math

import pytest
import torch

from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.tasks.cloze import collate

from conftest import assert_same_weights, interrupt_after
from test_cloze import write_questions

SMALL = {"embedding": 32, "hidden_size": 32, "attention_size": 32}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The readers' many small step-by-step operations: on a CPU shared with other work two threads wait on
    each other at every one (measured 20× slower than one thread on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    return write_questions(tmp_path_factory.mktemp("cloze") / "questions")


def settings(questions, model: str = "attentive_reader", **extra) -> dict:
    return dict(model=model, data=f"cnn-qa:{questions}", model_args=dict(SMALL), batch_size=16, epochs=8,
                optimizer="adam", lr=0.01, weight_decay=0.0, schedule="onecycle", amp="off", seed=0, **extra)


def flags(questions) -> list[str]:
    return ["--model", "attentive_reader", "--data", f"cnn-qa:{questions}", "--model-arg", "embedding=32",
            "--model-arg", "hidden_size=32", "--model-arg", "attention_size=32", "--batch-size", "16", "--epochs", "8",
            "--optimizer", "adam", "--lr", "0.01", "--weight-decay", "0", "--schedule", "onecycle", "--amp", "off",
            "--quiet"]


@pytest.fixture(scope="module")
def run_dir(questions, tmp_path_factory):
    out = tmp_path_factory.mktemp("cloze-run") / "run"
    assert main(["train", *flags(questions), "--out", str(out)]) == 0
    return out


def test_the_attentive_reader_learns_the_easy_cloze_far_above_chance(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    # three candidates, the answer never the most frequent: chance 1/3, frequency baselines 0
    assert summary["task"] == "cloze" and summary["test_top1"] > 0.9 and summary["test_loss"] < math.log(3) / 4
    assert summary["test_max_frequency_top1"] == 0 and summary["test_n"] == 60
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["entities"] == 6 and meta["kwargs"]["num_classes"] == 6
    assert meta["kwargs"]["vocab_size"] == len(meta["vocab"]["symbols"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "train_top1", "val_loss", "val_top1"} <= set(records[0])


@pytest.mark.parametrize("model", ["multipass_reader", "singlepass_reader"])
def test_the_notes_readers_learn_the_easy_cloze_above_chance(questions, model):
    summary = Trainer(TrainConfig(**{**settings(questions, model), "epochs": 12}, quiet=True)).run()
    assert summary["test_top1"] > 0.8


def test_chance_loss_is_the_mean_log_of_the_candidates(questions):
    task = Trainer(TrainConfig(**settings(questions), quiet=True)).task
    assert task.chance_loss == pytest.approx(math.log(3))        # every generated document has three entities
    assert task.describe_data().startswith("300 train / 60 val / 60 test questions")


def test_every_question_is_trained_once_an_epoch_and_a_resumed_epoch_repeats_its_batches(questions):
    task = Trainer(TrainConfig(**settings(questions), quiet=True)).task
    batches = list(task.train_batches(0, 0))
    assert len(batches) == 300 // 16
    answers = torch.cat([b[4] for b in batches])
    assert len(answers) == 288 and all(torch.equal(a[0], b[0]) for a, b in zip(task.train_batches(0, 5), batches[5:]))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(task.train_batches(1, 0), batches))   # reshuffled
    document, query, segments, candidates, answer = batches[0]
    assert ((document == 0) == (segments == -1)).all() and candidates[torch.arange(16), answer].all()
    assert candidates.sum(1).tolist() == [3] * 16


def test_collate_pads_and_flags_the_candidates(questions):
    task = Trainer(TrainConfig(**settings(questions), quiet=True)).task
    encoded = task.encoded_train[:2]
    document, query, segments, candidates, answer = collate(encoded, 6, torch.device("cpu"))
    for row, example in enumerate(encoded):
        n = len(example.document)
        assert torch.equal(document[row, :n], example.document) and (document[row, n:] == 0).all()
        assert candidates[row].nonzero().flatten().tolist() == sorted(example.candidates.tolist())
        assert answer[row] == example.answer


def test_an_interrupted_run_resumes_bit_identical(questions, tmp_path):
    short = {**settings(questions), "epochs": 2}           # 18 steps an epoch: stopped in the second
    whole = Trainer(TrainConfig(**short, quiet=True, out=str(tmp_path / "whole")))
    whole.run()
    interrupt_after(short, 25, tmp_path / "stopped")
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_weights(tmp_path / "whole", tmp_path / "stopped")


def test_eval_json_has_the_contract_keys_and_repeats_validation(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--split", "val", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"top1", "split", "n", "loss"} <= set(report) and report["split"] == "val" and report["n"] == 60
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["top1"] == pytest.approx(summary["best_val_top1"], abs=1e-12)
    assert main(["eval", str(run_dir), "--quiet"]) == 0
    assert "top1" in capsys.readouterr().out


def test_image_options_are_refused(questions):
    with pytest.raises(UsageError, match="--mixup is an image option; a cloze run"):
        Trainer(TrainConfig(**settings(questions), mixup=0.2, quiet=True))


def test_chance_loss_averages_the_log_of_each_questions_candidates(questions):
    # a uniform guess among a question's c candidates loses ln c: the chance loss is the mean of ln c, not ln of
    # the mean c (questions of 2 and 8 candidates: (ln 2 + ln 8)/2 = ln 4, not ln 5)
    from types import SimpleNamespace
    task = Trainer(TrainConfig(**settings(questions), quiet=True)).task
    task.encoded_val = [SimpleNamespace(candidates=list(range(2))), SimpleNamespace(candidates=list(range(8)))]
    assert task.chance_loss == pytest.approx(math.log(4))


def test_answer_loss_sums_the_cross_entropy_over_the_candidates_and_counts_the_right_answers():
    """Σ_n −ln p(a_n), p the softmax over the candidates only (the others' logits −∞), and the number of
    questions whose highest logit is the answer."""
    from visionzoo.tasks.cloze import answer_loss
    logits = torch.tensor([[2.0, 1.0, float("-inf"), 0.0], [0.0, 3.0, float("-inf"), float("-inf")],
                           [1.0, 1.0, float("-inf"), 5.0]])
    answers = torch.tensor([0, 0, 3])
    nats, right = answer_loss(logits, answers)
    expected = -(math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1)) + math.log(1 / (1 + math.exp(3)))
                 + math.log(math.exp(5) / (2 * math.e + math.exp(5))))
    assert nats.item() == pytest.approx(expected, rel=1e-6) and right.item() == 2


def test_a_training_steps_loss_is_the_mean_over_its_questions(questions):
    task = Trainer(TrainConfig(**settings(questions), quiet=True)).task
    batch = next(iter(task.train_batches(0, 0)))
    output = task.training_step(batch, "train", torch.Generator())
    document, query, segments, candidates, answers = batch
    with torch.no_grad():
        log_p = task.net(document, query, candidates, segments).log_softmax(1)
    expected = -log_p[torch.arange(len(answers)), answers].mean()
    assert output.count == 16 and output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.sums["loss"].item() == pytest.approx(16 * expected.item(), rel=1e-5)
