"""Batch normalisation with the notes' hand-derived backward pass (`--norm batch_manual`), and BN's
inference statistics from the population (Ioffe & Szegedy, Algorithm 2: `recalibrate_batchnorm`)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.layers.batchnorm import BatchNorm2dManual, BatchNormFunction, recalibrate_batchnorm
from visionzoo.layers.norm import swap_norm
from visionzoo.layers.variants import rebuild_model

from conftest import assert_one_line_exit_2, cli_here

EPS = 1e-5


def plain_batch_norm(x, gamma, beta, eps=EPS):
    """Algorithm 1 as four tensor expressions, differentiated by autograd."""
    mu = x.mean((0, 2, 3), keepdim=True)
    var = ((x - mu) ** 2).mean((0, 2, 3), keepdim=True)
    x_hat = (x - mu) / torch.sqrt(var + eps)
    return gamma.view(1, -1, 1, 1) * x_hat + beta.view(1, -1, 1, 1)


def float64_inputs(seed=0, shape=(4, 3, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    gamma = (torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    beta = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()
    upstream = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, gamma, beta, upstream


def test_notes_backward_equals_autograd_of_the_plain_formula():
    x, gamma, beta, upstream = float64_inputs()
    y, mu, var = BatchNormFunction.apply(x, gamma, beta, EPS)
    manual = torch.autograd.grad(y, (x, gamma, beta), upstream)
    reference_y = plain_batch_norm(x, gamma, beta)
    reference = torch.autograd.grad(reference_y, (x, gamma, beta), upstream)
    torch.testing.assert_close(y, reference_y, rtol=1e-12, atol=1e-12)
    for got, want in zip(manual, reference):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mu, x.mean((0, 2, 3)))
    torch.testing.assert_close(var, x.var((0, 2, 3), unbiased=False))
    assert not mu.requires_grad and not var.requires_grad


def test_notes_backward_passes_gradcheck():
    x, gamma, beta, _ = float64_inputs(1, (3, 2, 3, 2))
    assert torch.autograd.gradcheck(lambda a, g, b: BatchNormFunction.apply(a, g, b, EPS)[0], (x, gamma, beta))


def twins(**kwargs):
    """nn.BatchNorm2d and BatchNorm2dManual with the same (non-trivial) weights."""
    torch.manual_seed(0)
    reference = nn.BatchNorm2d(3, **kwargs)
    if reference.affine:
        with torch.no_grad():
            reference.weight.uniform_(0.5, 1.5)
            reference.bias.normal_()
    manual = BatchNorm2dManual(3, **kwargs)
    manual.load_state_dict(reference.state_dict())
    return reference, manual


def step(module, x, upstream):
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(upstream)
    grads = [x.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    return y.detach(), grads


@pytest.mark.parametrize("kwargs", [{}, {"momentum": None}, {"momentum": 0.3, "eps": 1e-3},
                                    {"affine": False}, {"track_running_stats": False}],
                         ids=["default", "cumulative", "momentum-eps", "no-affine", "no-running-stats"])
def test_manual_module_matches_nn_batchnorm2d_in_train_and_eval_mode(kwargs):
    reference, manual = twins(**kwargs)
    assert list(manual.state_dict()) == list(reference.state_dict())
    g = torch.Generator().manual_seed(1)
    for mode in ("train", "train", "train", "eval"):
        reference.train(mode == "train")
        manual.train(mode == "train")
        x = torch.randn(6, 3, 4, 4, generator=g) * 3 + 2
        upstream = torch.randn(6, 3, 4, 4, generator=g)
        (y_ref, grads_ref), (y_man, grads_man) = step(reference, x, upstream), step(manual, x, upstream)
        torch.testing.assert_close(y_man, y_ref)
        for got, want in zip(grads_man, grads_ref):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(manual.state_dict()[key], value)


def test_weights_interchange_with_nn_batchnorm2d():
    reference, _ = twins()
    reference.train()(torch.randn(8, 3, 4, 4) + 5)  # non-trivial running statistics
    manual = BatchNorm2dManual(3)
    manual.load_state_dict(reference.state_dict())
    back = nn.BatchNorm2d(3)
    back.load_state_dict(manual.state_dict())
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(manual.eval()(x), reference.eval()(x))
    torch.testing.assert_close(back.eval()(x), reference(x))


def test_norm_batch_manual_gives_the_network_the_same_loss_and_gradients():
    torch.manual_seed(0)
    model = vz.create_model("resnet20_cifar", num_classes=10, in_chans=1, layers=[1, 1, 1])
    manual = vz.create_model("resnet20_cifar", num_classes=10, in_chans=1, layers=[1, 1, 1])
    rebuild_model(manual, {"norm": "batch_manual"}, (1, 8, 8))
    count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, BatchNorm2dManual) for m in manual.modules()) == count
    manual.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 10
    losses = [F.cross_entropy(net.train()(x), y) for net in (model, manual)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p), q in zip(model.named_parameters(), manual.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_swap_to_batch_manual_counts_every_feature_norm():
    model = vz.create_model("wrn16_4", num_classes=10, in_chans=1, widen_factor=1)  # fused BN-ReLU units
    assert swap_norm(model, "batch_manual") > 0
    assert all(type(m) is BatchNorm2dManual for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    model.train()(torch.randn(2, 1, 8, 8)).sum().backward()


def population_statistics(batches, conv1, bn1, conv2):
    """μ = E[μ_B] and σ² = m/(m−1)·E[σ²_B] of both BN inputs, by hand: BN1 normalises with each
    batch's own statistics while BN2's inputs are measured (Algorithm 2 uses the training network)."""
    stats = {1: [], 2: []}
    for x in batches:
        h1 = conv1(x)
        stats[1].append((h1.mean((0, 2, 3)), h1.var((0, 2, 3), unbiased=False), h1.numel() // h1.shape[1]))
        mu, var = h1.mean((0, 2, 3), keepdim=True), h1.var((0, 2, 3), unbiased=False, keepdim=True)
        normalised = (h1 - mu) / torch.sqrt(var + bn1.eps) * bn1.weight.view(1, -1, 1, 1) + bn1.bias.view(1, -1, 1, 1)
        h2 = conv2(F.relu(normalised))  # dropout is not applied: it stays in evaluation mode
        stats[2].append((h2.mean((0, 2, 3)), h2.var((0, 2, 3), unbiased=False), h2.numel() // h2.shape[1]))
    result = {}
    for layer, rows in stats.items():
        m = rows[0][2]
        result[layer] = (torch.stack([r[0] for r in rows]).mean(0), m / (m - 1) * torch.stack([r[1] for r in rows]).mean(0))
    return result


@pytest.mark.parametrize("norm", [nn.BatchNorm2d, BatchNorm2dManual])
def test_recalibration_gives_the_population_statistics_of_algorithm_2(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), norm(4, momentum=0.3), nn.ReLU(), nn.Dropout(0.5),
                          nn.Conv2d(4, 3, 1), norm(3))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.normal_()
    model.train()
    model[3].eval()  # a mode of its own, to be kept
    batches = [torch.randn(5, 2, 6, 6) * (i + 1) + i for i in range(4)]
    assert recalibrate_batchnorm(model, batches) == len(batches)
    with torch.no_grad():
        expected = population_statistics(batches, model[0], model[1], model[4])
    for layer, bn in ((1, model[1]), (2, model[5])):
        torch.testing.assert_close(bn.running_mean, expected[layer][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, expected[layer][1], rtol=1e-5, atol=1e-6)
    assert model[1].momentum == 0.3 and model[5].momentum == 0.1
    assert [m.training for m in model] == [True, True, True, False, True, True]


def test_recalibration_refuses_nothing_to_do():
    with pytest.raises(UsageError, match="no batch normalisation"):
        recalibrate_batchnorm(nn.Sequential(nn.Conv2d(1, 1, 1)), [torch.zeros(1, 1, 2, 2)])
    bn = nn.BatchNorm2d(1)
    bn.running_mean.fill_(3.0)
    with pytest.raises(UsageError, match="no training batches"):
        recalibrate_batchnorm(nn.Sequential(bn), [])
    assert bn.running_mean.item() == 3.0  # untouched


def saved_bn_run(directory):
    """A run directory as `visionzoo train` leaves it, of an untrained network with BN (running
    statistics 0 and 1, far from the data's)."""
    from visionzoo.core.io import write_json, write_safetensors
    from visionzoo.data.datasets import load_data
    bundle = load_data("digits", val_size=0.1)
    kwargs = {"num_classes": len(bundle.classes), "in_chans": 1, "layers": [1, 1, 1]}
    torch.manual_seed(0)
    write_safetensors(directory / "model.safetensors", vz.create_model("resnet20_cifar", **kwargs).state_dict())
    write_json(directory / "model.json", {
        "name": "resnet20_cifar", "kwargs": kwargs, "classes": bundle.classes, "mean": bundle.mean,
        "std": bundle.std, "input_size": list(bundle.input_size), "data": "digits",
        "data_args": {"val_size": 0.1, "seed": 0}})
    return directory, bundle


def test_eval_refuses_dynamic_evaluation_for_a_classifier_in_one_line(tmp_path):
    run, _ = saved_bn_run(tmp_path / "run")
    refused = cli_here("eval", run, "--dynamic-eval", "0.1", "--device", "cpu")
    assert_one_line_exit_2(refused, "--dynamic-eval is for language runs")


def test_eval_bn_recalibrate_evaluates_with_the_training_population_statistics(tmp_path, capsys):
    import json

    from visionzoo.cli.main import main
    from visionzoo.data.loader import Normalizer, train_batches
    from visionzoo.tasks.classification import evaluate
    from visionzoo.weights import load_checkpoint
    run, bundle = saved_bn_run(tmp_path / "run")
    assert main(["eval", str(run), "--bn-recalibrate", "--batch-size", "100", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    model, meta = load_checkpoint(run)
    normalizer = Normalizer(meta["mean"], meta["std"])
    recalibrate_batchnorm(model, (normalizer(x) for x, _ in train_batches(bundle.train, 100, seed=0, epoch=0)))
    expected = evaluate(model, bundle.test, normalizer, batch_size=100)
    assert report["bn_recalibrated"] is True
    assert report["top1"] == pytest.approx(expected["top1"]) and report["loss"] == pytest.approx(expected["loss"])
    assert main(["eval", str(run), "--batch-size", "100", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] != pytest.approx(expected["loss"])  # the flag matters


def test_train_bn_recalibrate_saves_the_population_statistics(tmp_path, monkeypatch):
    from visionzoo.cli.main import main
    from visionzoo.engine.trainer import Trainer
    from visionzoo.tasks import classification
    from visionzoo.weights import load_checkpoint
    monkeypatch.setattr(classification, "plot_curves", lambda *a, **k: None)
    monkeypatch.setattr(classification, "plot_confusion", lambda *a, **k: None)
    trainers, finish = [], Trainer.finish
    monkeypatch.setattr(Trainer, "finish", lambda self: trainers.append(self) or finish(self))
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet20_cifar", "--model-arg", "layers=[1,1,1]", "--data", "digits",
                 "--epochs", "1", "--train-limit", "64", "--batch-size", "32", "--val-size", "64", "--quiet",
                 "--device", "cpu", "--norm", "batch_manual", "--bn-recalibrate", "--out", str(out)]) == 0
    model, _ = load_checkpoint(out)
    task = trainers[0].task
    images = task.normalizer(task.data.train.fetch(torch.arange(len(task.data.train)))[0])
    with torch.no_grad():  # the stem BN sees conv1 of every training image; equal batches: E[μ_B] = the mean
        expected = model.conv1(images).mean((0, 2, 3))
    assert isinstance(model.bn1, BatchNorm2dManual)
    torch.testing.assert_close(model.bn1.running_mean, expected, rtol=1e-4, atol=1e-5)
    refused = cli_here("train", "--model", "lenet", "--data", "digits", "--image-size", "16", "--bn-recalibrate",
                       "--epochs", "1", "--train-limit", "64", "--val-size", "64", "--quiet", "--device", "cpu")
    assert_one_line_exit_2(refused, "--bn-recalibrate: lenet has no batch normalisation")
