"""The sequence-regression task: the adding problem's data (`adding:T`), the recurrent regressors, the task
through the engine and the command line (keys, `eval`, exact resume, refusals), and the long-dependency
experiment that trains through it (gradient norms per step, the smoke budget)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import visionzoo as vz
from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.data.synthetic_sequences import ADDING_BASELINE_MSE, adding_problem, load_sequence_data
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.experiments.base import Context, get_experiment
from visionzoo.experiments.recurrent import hidden_gradient_norms, initial_network
from visionzoo.layers.recurrent import torch_twin_network
from visionzoo.tasks.sequence_regression import regression_measures

from conftest import assert_one_line_exit_2, assert_same_weights, cli_here, interrupt_after, train_flags

SETTINGS = dict(model="gru_regressor", data="adding:12", epochs=2, batch_size=32, train_limit=256, val_size=64,
                test_limit=48, optimizer="adam", lr=0.01, schedule="constant", weight_decay=0.0, clip_grad=1.0,
                amp="off", seed=0, model_args={"hidden_size": 8})


# ---- data ------------------------------------------------------------------------------------

def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    x, y = adding_problem(50, 12, torch.Generator().manual_seed(0))
    values, markers = x[..., 0], x[..., 1]
    assert x.shape == (50, 12, 2) and (markers.sum(1) == 2).all()
    assert (markers[:, :6].sum(1) == 1).all() and (markers[:, 6:].sum(1) == 1).all()
    assert ((values >= 0) & (values < 1)).all()
    first, second = markers[:, :6].argmax(1), 6 + markers[:, 6:].argmax(1)
    rows = torch.arange(50)
    torch.testing.assert_close(y, values[rows, first] + values[rows, second])
    # the variance baseline: predicting 1 costs Var(u₁ + u₂) = 1/6
    _, y = adding_problem(20000, 12, torch.Generator().manual_seed(1))
    assert float((y - 1).square().mean()) == pytest.approx(ADDING_BASELINE_MSE, abs=0.01)


def test_adding_problem_markers_cover_every_allowed_position():
    # Both halves in full: the first marker anywhere in 0 … T//2 − 1, the second anywhere in T//2 … T − 1
    # (the last step included, so the first value may have to be carried across T − 1 steps).
    x, _ = adding_problem(2000, 11, torch.Generator().manual_seed(2))
    markers = x[..., 1]
    first, second = markers[:, :5].argmax(1), 5 + markers[:, 5:].argmax(1)
    assert set(first.tolist()) == set(range(5)) and set(second.tolist()) == set(range(5, 11))
    assert ((second - first) == 10).any()


def test_adding_splits_are_fixed_streams_and_validation_is_carved_with_the_seed():
    a, b = load_sequence_data("adding:6", val_size=100, seed=0), load_sequence_data("adding:6", val_size=100, seed=1)
    assert torch.equal(a.test.inputs, b.test.inputs) and (a.length, a.features, a.outputs) == (6, 2, 1)
    assert len(a.val) == 100 and not torch.equal(a.val.targets, b.val.targets)
    # train + val is the same fixed set whatever the seed
    pooled = [torch.sort(torch.cat([d.train.targets, d.val.targets])).values for d in (a, b)]
    assert torch.equal(*pooled)
    x, y = a.val.fetch(torch.arange(5))
    torch.testing.assert_close(y, (x[..., 0] * x[..., 1]).sum(1))


@pytest.mark.parametrize("spec, text", [("adding:1", "at least 2"), ("adding:ten", "integer"),
                                        ("adding", "unknown sequence data set")])
def test_bad_specs_are_refused_in_one_line(spec, text):
    with pytest.raises(UsageError, match=text) as caught:
        load_sequence_data(spec)
    assert "\n" not in str(caught.value)


# ---- networks --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, cell", [("rnn_regressor", "elman"), ("lstm_regressor", "lstm"),
                                        ("gru_regressor", "gru")])
def test_regressor_is_its_cell_network_then_a_linear_read_out_of_the_last_step(name, cell):
    torch.manual_seed(0)
    model = vz.create_model(name, hidden_size=5).double()
    assert model.rnn.cell == cell and vz.model_card(name)["task"] == "sequence-regression"
    x = torch.randn(3, 7, 2, dtype=torch.double)
    outputs, _ = torch_twin_network(model.rnn).double()(x)
    expected = outputs[:, -1] @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected)
    assert name in vz.list_models(task="sequence-regression")


# ---- the task through the engine and the command line ------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequence-regression") / "run"
    assert main(["train", *train_flags(SETTINGS), "--quiet", "--out", str(out)]) == 0
    return out


def test_run_reports_mse_and_monitors_it(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "sequence-regression" and summary["test_n"] == 48
    assert summary["test_mse"] == summary["test_loss"] > 0 and summary["test_r2"] < 1
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and {"val_mse", "val_r2", "train_loss"} <= set(records[0])
    assert summary["best_val_mse"] == min(r["val_mse"] for r in records)
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["task"] == "sequence-regression" and (meta["features"], meta["length"]) == (2, 12)
    assert (run_dir / "curves.png").stat().st_size > 0


def test_eval_json_repeats_the_best_validation(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--split", "val"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"split", "n", "mse", "loss", "r2", "model", "data"} <= set(report)
    assert report["n"] == 64 and report["model"] == "gru_regressor" and report["data"] == "adding:12"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["mse"] == pytest.approx(summary["best_val_mse"], abs=1e-12)
    assert main(["eval", str(run_dir)]) == 0
    assert "mse" in capsys.readouterr().out


def test_interrupted_run_resumes_bit_identical(run_dir, tmp_path):
    interrupt_after(SETTINGS, 5, tmp_path / "stopped")
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_weights(run_dir, tmp_path / "stopped")


def test_loss_is_the_mean_squared_error_and_measures_are_r2():
    trainer = Trainer(TrainConfig(**SETTINGS, quiet=True))
    task = trainer.task
    batch = task.prepare(next(iter(task.train_batches(0, 0))), torch.Generator().manual_seed(0))
    inputs, targets = batch
    step = task.training_step(batch, "model", torch.Generator())
    with torch.no_grad():
        expected = F.mse_loss(task.net(inputs)[:, 0], targets)
    assert step.loss.item() == pytest.approx(expected.item(), rel=1e-6) and step.count == 32
    measures = regression_measures(trainer.model, task.data.val, batch_size=10, device="cpu")
    with torch.no_grad():
        predictions = trainer.model(task.data.val.inputs)[:, 0]
    y = task.data.val.targets.double()
    mse = (predictions.double() - y).square().mean().item()
    assert measures["mse"] == pytest.approx(mse, rel=1e-6)
    assert measures["r2"] == pytest.approx(1 - mse / y.var(unbiased=False).item(), rel=1e-6)


@pytest.mark.parametrize("extra, text", [(["--mixup", "0.2"], "image option"),
                                         (["--data", "adding:0"], "at least 2")])
def test_refused_options_are_one_line_exit_2(extra, text):
    assert_one_line_exit_2(cli_here("train", *train_flags(SETTINGS), "--quiet", *extra), text)


def test_chance_loss_is_the_mse_of_the_best_constant():
    """The best constant prediction is the training targets' mean; its MSE, (1/N) Σ (y − ȳ)², is chance_loss."""
    task = Trainer(TrainConfig(**SETTINGS, quiet=True)).task
    y = task.data.train.targets.double()
    assert task.chance_loss == pytest.approx(((y - y.mean()) ** 2).mean().item(), rel=1e-9)


def test_a_training_steps_sums_hold_the_batchs_total_squared_error():
    """StepOutput's sums are per-batch totals the engine divides by the summed count: Σ_n (ŷ_n − y_n)²."""
    trainer = Trainer(TrainConfig(**SETTINGS, quiet=True))
    task = trainer.task
    inputs, targets = task.prepare(next(iter(task.train_batches(0, 0))), torch.Generator().manual_seed(0))
    step = task.training_step((inputs, targets), "model", torch.Generator())
    with torch.no_grad():
        total = (task.net(inputs)[:, 0] - targets).double().square().sum()
    assert step.count == 32 and step.sums["loss"].item() == pytest.approx(total.item(), rel=1e-5)


# ---- the long-dependency experiment -----------------------------------------------------------

def test_hidden_gradient_norms_follow_the_chain_rule():
    torch.manual_seed(0)
    model = vz.create_model("rnn_regressor", hidden_size=6).double()
    x, y = adding_problem(4, 5, torch.Generator().manual_seed(0))
    x, y = x.double(), y.double()
    norms = hidden_gradient_norms(model, x, y)
    # at the last step ∂L/∂h_T = 2(ŷ − y)/B · w; one step back it is multiplied by diag(1 − h_T²) U
    cell = model.rnn.cells[0]
    with torch.no_grad():
        outputs, _ = model.rnn(x)
        prediction = model.head(outputs[:, -1])[:, 0]
        last = (2 * (prediction - y) / len(y))[:, None] * model.head.weight
        before = (last * (1 - outputs[:, -1].square())) @ cell.weight_hh
    assert norms[-1] == pytest.approx(float(last.norm(dim=1).mean()), rel=1e-9)
    assert norms[-2] == pytest.approx(float(before.norm(dim=1).mean()), rel=1e-9)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_the_network_probed_at_initialisation_is_the_one_the_engine_starts_from():
    trainer = Trainer(TrainConfig(**{**SETTINGS, "model": "lstm_regressor", "seed": 3}, quiet=True))
    drawn = initial_network("lstm_regressor", 8, 3)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(), drawn.state_dict().values()))


def test_smoke_budget_trains_every_cell_through_the_engine(tmp_path):
    outcome = get_experiment("long-dependency").run(Context("smoke", tmp_path, 0, quiet=True))
    assert [row["cell"] for row in outcome.table] == ["Elman RNN", "LSTM", "GRU"]
    assert all(row["T"] == 10 and row["test_mse"] > 0 for row in outcome.table)
    assert all(len(curve) == 3 and curve[-1][0] == 30 for curve in outcome.data["curves"].values())
    assert (tmp_path / "long-dependency.png").stat().st_size > 0 and "engine" in outcome.setup
