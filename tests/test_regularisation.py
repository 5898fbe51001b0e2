"""Dropout (inverted and classic), DropConnect, DropBlock, max-norm, stochastic depth, and one
short `visionzoo train` run per model option (recorded in config.json, rebuilt from model.json)."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.engine.model_options import after_optimizer, builder_kwargs
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.layers.drop import (
    ClassicDropout,
    DropBlock2d,
    DropConnectLinear,
    add_drop_block,
    add_drop_connect,
    drop_block_gamma,
    drop_path,
    set_dropout,
)
from visionzoo.weights import load_checkpoint

from conftest import assert_one_line_exit_2, cli_here

DRAWS = 4000


def test_inverted_and_classic_dropout_agree_in_expectation():
    torch.manual_seed(0)
    p, x = 0.4, torch.rand(1, 50) + 0.5
    batch = x.expand(DRAWS, 50)
    inverted, classic = nn.Dropout(p), ClassicDropout(p)
    for layer in (inverted, classic):
        dropped = (layer.train()(batch) == 0).float().mean().item()
        assert dropped == pytest.approx(p, abs=0.01)
        # The training-time mean is the test-time output, for each form.
        torch.testing.assert_close(layer(batch).mean(0, keepdim=True), layer.eval()(x), atol=0.04, rtol=0)
    # Classic at test time is q·x: the inverted form's test output scaled by q, so a layer W after
    # classic dropout equals q·W after inverted dropout — the same network in expectation.
    torch.testing.assert_close(classic.eval()(x), (1 - p) * inverted.eval()(x))


def test_drop_path_zeroes_whole_samples_and_scales_the_kept_ones_by_one_over_survival():
    """Stochastic depth, inverted form: a kept sample is x/(1 − p), so E[drop_path(x)] = x."""
    torch.manual_seed(0)
    p, x = 0.25, torch.rand(DRAWS, 3, 2, 2) + 0.5
    out = drop_path(x, p, training=True)
    kept = out.flatten(1).ne(0).all(1)
    assert out[~kept].eq(0).all()   # a dropped sample is zero everywhere
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.02)
    assert drop_path(torch.ones(DRAWS, 4), p, training=True).mean().item() == pytest.approx(1.0, abs=0.03)
    assert drop_path(x, p, training=False) is x


def test_set_dropout_sets_every_layer_or_drops_the_classifier_input():
    vgg = vz.create_model("vgg11", num_classes=10, in_chans=1, image_size=32)
    assert set_dropout(vgg, 0.2) == 2
    assert all(m.p == 0.2 for m in vgg.modules() if isinstance(m, nn.Dropout))
    lenet = vz.create_model("lenet", num_classes=10, in_chans=1)
    set_dropout(lenet, 0.5)
    seen = []
    lenet.fc2.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) and None)
    x = torch.randn(64, 1, 28, 28)
    lenet.train()(x)
    lenet.eval()(x)
    train_input, eval_input = seen
    active = eval_input > 0  # fc1's ReLU units that fired; dropout zeroes about half of them
    assert (train_input[active] == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    torch.testing.assert_close(train_input[active & (train_input > 0)], 2 * eval_input[active & (train_input > 0)])
    assert set(lenet.state_dict()) == set(vz.create_model("lenet", num_classes=10, in_chans=1).state_dict())


def test_drop_connect_drops_the_claimed_fraction_of_weights_and_keeps_the_expectation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    x = torch.randn(1, 20)
    expected = model(x)
    assert add_drop_connect(model, 0.3) == 2
    layer = model[0]
    assert isinstance(layer, DropConnectLinear)
    assert (layer.sampled_weight() == 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    first = model[0]
    mean = torch.stack([first(x) for _ in range(DRAWS)]).mean(0)
    torch.testing.assert_close(mean, nn.functional.linear(x, first.weight, first.bias), atol=0.05, rtol=0)
    torch.testing.assert_close(model.eval()(x), expected)  # inference: the plain weights
    with pytest.raises(UsageError, match="no fully-connected"):
        add_drop_connect(nn.Sequential(nn.Conv2d(1, 1, 1)), 0.1)


def test_drop_block_drops_whole_blocks_at_the_claimed_rate_and_keeps_the_expectation():
    torch.manual_seed(0)
    size, block, p = 12, 3, 0.1
    layer = DropBlock2d(block, p)
    x = torch.ones(200, 8, size, size)
    dropped = layer.dropped_mask(x)
    # Exact expectation from γ: unit i is dropped unless none of the n_i corners covering it is drawn.
    gamma = drop_block_gamma(p, block, size, size)
    corners = torch.ones(1, 1, size - block + 1, size - block + 1)
    covering = F.conv_transpose2d(corners, torch.ones(1, 1, block, block))
    expected = (1 - (1 - gamma) ** covering).mean().item()
    assert dropped.mean().item() == pytest.approx(expected, abs=0.004)
    assert dropped.mean().item() == pytest.approx(p, rel=0.15)  # Eq. 1's aim, up to block overlaps
    lone = torch.zeros(1, 1, size - block + 1, size - block + 1)
    lone[0, 0, 4, 5] = 1
    square = F.max_pool2d(F.pad(lone, (block - 1,) * 4), block, stride=1)
    assert square.sum() == block * block and square[0, 0, 4:7, 5:8].sum() == block * block
    out = layer.train()(x)
    assert out.mean().item() == pytest.approx(1.0, abs=1e-5)  # count(M)/count_ones(M) rescaling
    assert torch.equal(layer.eval()(x), x)


def test_drop_block_goes_after_the_residual_blocks_of_the_last_two_stages():
    model = vz.create_model("resnet20_cifar", num_classes=10, in_chans=1)
    assert add_drop_block(model, 3, 0.1, (1, 8, 8)) == 6  # 3 blocks in each of stages 2 and 3
    assert not any(isinstance(m, DropBlock2d) for m in model.layer1.modules())
    assert isinstance(model.layer3[2][1], DropBlock2d)
    with pytest.raises(UsageError, match="no residual blocks"):
        add_drop_block(vz.create_model("lenet", num_classes=10, in_chans=1), 3, 0.1, (1, 28, 28))


def test_max_norm_keeps_every_unit_within_the_ball_after_each_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    after_optimizer(optimizer, model, TrainConfig(max_norm=0.5))
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(16, 1, 8, 8)), torch.arange(16) % 10).backward()
        optimizer.step()
    norms = torch.cat([m.weight.flatten(1).norm(dim=1) for m in (model[0], model[3])])
    assert norms.max().item() <= 0.5 + 1e-5
    assert norms.max().item() == pytest.approx(0.5, abs=1e-4)  # the constraint was active


def test_drop_path_goes_to_builders_that_have_stochastic_depth():
    assert builder_kwargs(TrainConfig(model="resnet20_cifar", drop_path=0.2)) == {"drop_path_rate": 0.2}
    for name in ("lenet", "plain20_cifar"):
        with pytest.raises(UsageError, match="no stochastic depth"):
            builder_kwargs(TrainConfig(model=name, drop_path=0.2))


@pytest.fixture
def no_plots(monkeypatch):
    import visionzoo.tasks.classification as task_module
    monkeypatch.setattr(task_module, "plot_curves", lambda *a, **k: None)
    monkeypatch.setattr(task_module, "plot_confusion", lambda *a, **k: None)


LENET = ["--model", "lenet", "--image-size", "28"]
RESNET = ["--model", "resnet20_cifar", "--model-arg", "layers=[1,1,1]"]
# Every option at least once (each value of --init, --norm and --act is tested through the API).
FLAGS = [
    (LENET, ["--init", "lsuv", "--act", "prelu", "--pool", "stochastic", "--dropout", "0.3",
             "--drop-connect", "0.2", "--max-norm", "2"],
     {"init": "lsuv", "act": "prelu", "pool": "stochastic", "dropout": 0.3, "drop_connect": 0.2, "max_norm": 2.0}),
    (LENET, ["--init", "normal", "--init-std", "0.05", "--act", "maxout", "--maxout-k", "3", "--norm", "spectral"],
     {"init": "normal", "init_std": 0.05, "act": "maxout", "maxout_k": 3, "norm": "spectral"}),
    (LENET, ["--pretrain", "autoencoder", "--pretrain-epochs", "1", "--pretrain-noise", "0.2"],
     {"pretrain": "autoencoder", "pretrain_epochs": 1, "pretrain_noise": 0.2}),
    (RESNET, ["--init", "dirac", "--norm", "group", "--act", "elu", "--drop-block", "3,0.1", "--drop-path", "0.1"],
     {"init": "dirac", "norm": "group", "act": "elu", "drop_block": [3, 0.1], "drop_path": 0.1}),
    (RESNET, ["--norm", "weight", "--max-norm", "1.5"], {"norm": "weight", "max_norm": 1.5}),
]


def modules_of(model):
    """Every submodule's name, class and settings (p, block size, …), hooks' presence aside."""
    return [(name, type(m).__name__, m.extra_repr()) for name, m in model.named_modules()]


@pytest.mark.parametrize("model, flags, recorded", FLAGS, ids=[" ".join(f[::2]) for _, f, _ in FLAGS])
def test_every_model_option_trains_and_is_recorded(tmp_path, monkeypatch, no_plots, model, flags, recorded):
    trainers, finish = [], Trainer.finish
    monkeypatch.setattr(Trainer, "finish", lambda self: trainers.append(self) or finish(self))
    out = tmp_path / "run"
    status = main(["train", "--data", "digits", "--epochs", "1", "--train-limit", "64", "--batch-size", "32",
                   "--val-size", "64", "--quiet", "--out", str(out), *model, *flags])
    assert status == 0
    config = json.loads((out / "config.json").read_text())
    assert {key: config[key] for key in recorded} == recorded
    # model.json's options give the trained variant's modules: the same classes and settings (the
    # parameter-free ones too: stochastic pooling, dropout, DropConnect, DropBlock), the same outputs.
    rebuilt, _ = load_checkpoint(out)
    trained = trainers[0].eval_model.to(memory_format=torch.contiguous_format)
    assert modules_of(rebuilt) == modules_of(trained)
    x = torch.randn(8, *trainers[0].input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), trained.eval()(x))
        # In training the same draws give the same outputs: the dropout hook and the random layers are there.
        torch.manual_seed(1)
        sampled = trained.train()(x)
        torch.manual_seed(1)
        torch.testing.assert_close(rebuilt.train()(x), sampled)
        if {"pool", "dropout", "drop_connect", "drop_block", "drop_path"} & set(recorded):
            torch.manual_seed(2)  # not vacuous: other draws give other outputs
            assert not torch.equal(rebuilt(x), sampled)


@pytest.mark.parametrize("args, message", [
    (LENET + ["--init", "glorot"], "--init"),
    (LENET + ["--dropout", "1.5"], "--dropout"),
    (LENET + ["--drop-block", "3"], "--drop-block"),
    (LENET + ["--norm", "group"], "no feature-map normalisation"),
    (LENET + ["--max-norm", "-1"], "--max-norm"),
    (LENET + ["--drop-path", "0.1"], "no stochastic depth"),
    (RESNET + ["--act", "maxout"], "maxout"),
    (RESNET + ["--pretrain", "autoencoder"], "not a chain"),
])
def test_bad_model_options_exit_2_with_one_line(tmp_path, args, message):
    refused = cli_here("train", "--data", "digits", "--epochs", "1", "--train-limit", "64", "--quiet",
                       "--out", tmp_path / "run", *args)
    assert_one_line_exit_2(refused, message)
