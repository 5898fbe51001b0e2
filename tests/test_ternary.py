"""Ternary weights (TWN, TTQ): the definitions, TTQ's gradients, 2-bit storage and the compress method."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.compress.fileformat import LayerCoding, load_compressed, pack_ternary, save_compressed, unpack_ternary
from visionzoo.compress.ternary import materialize, ternary_layer_names
from visionzoo.layers.ternary import (
    TTQ_THRESHOLD_FACTOR,
    TernaryConv2d,
    TernaryLinear,
    TrainedTernary,
    ternarize,
    ternary_codes,
    twn_scale,
    twn_threshold,
    weight_memory_bits,
)
from visionzoo.weights import load_checkpoint

META = {"name": "lenet", "kwargs": {"num_classes": 10, "in_chans": 1}, "input_size": [1, 28, 28]}


def lenet(seed=0):
    torch.manual_seed(seed)
    return vz.create_model("lenet", num_classes=10, in_chans=1).eval()


def test_twn_threshold_and_scale_follow_li_and_liu():
    weights = [0.1, -0.5, 1.0, -2.0, 0.05, 0.3]
    layer = TernaryLinear(6, 1, bias=False, mode="twn")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weights]))
    delta = 0.7 * sum(abs(w) for w in weights) / len(weights)
    kept = [w for w in weights if abs(w) > delta]
    alpha = sum(abs(w) for w in kept) / len(kept)
    expected = [alpha * (w > 0) - alpha * (w < 0) if abs(w) > delta else 0.0 for w in weights]
    x = torch.randn(3, 6)
    out = layer(x)
    torch.testing.assert_close(out, x @ torch.tensor([expected]).T)
    out.sum().backward()  # the gradient with respect to α·T goes to W unchanged
    torch.testing.assert_close(layer.weight.grad, x.sum(0, keepdim=True))


def test_twn_threshold_is_seven_tenths_of_the_mean_magnitude_and_strict():
    # Li & Liu Eq. 6: Δ = 0.7·E|W| and T_i = sign(W_i)·1(|W_i| > Δ). [1, −1, 1, 0.66]: E|W| = 0.915,
    # Δ = 0.6405 < 0.66, so 0.66 is kept (a factor of 0.75 would put Δ at 0.686 and drop it)
    weight = torch.tensor([1.0, -1.0, 1.0, 0.66])
    assert twn_threshold(weight).item() == pytest.approx(0.7 * 0.915)
    assert ternary_codes(weight, twn_threshold(weight)).tolist() == [1, -1, 1, 1]
    # a weight exactly at Δ is zeroed (the inequality is strict), and α averages only the kept ones
    at_threshold = torch.tensor([-1.0, -0.5, 0.5, 0.2])
    assert ternary_codes(at_threshold, 0.5).tolist() == [-1, 0, 0, 0]
    assert twn_scale(at_threshold, torch.tensor(0.5)).item() == 1.0


def test_ttq_gradients_are_the_papers():
    torch.manual_seed(0)
    latent = torch.randn(40, dtype=torch.float64, requires_grad=True)
    w_p = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    w_n = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(40, dtype=torch.float64)
    out = TrainedTernary.apply(latent, w_p, w_n, TTQ_THRESHOLD_FACTOR)
    delta = TTQ_THRESHOLD_FACTOR * latent.detach().abs().max()
    positive, negative = latent.detach() > delta, latent.detach() < -delta
    assert positive.any() and negative.any() and (~positive & ~negative).any()
    zero = torch.zeros((), dtype=torch.float64)
    assert torch.equal(out.detach(), torch.where(positive, w_p.detach(), torch.where(negative, -w_n.detach(), zero)))
    out.backward(upstream)
    torch.testing.assert_close(w_p.grad, upstream[positive].sum())       # Eq. 7
    torch.testing.assert_close(w_n.grad, -upstream[negative].sum())      # Eq. 7 by the chain rule (w_t = −W_n)
    scale = torch.where(positive, w_p.detach(), torch.where(negative, w_n.detach(), zero + 1))
    torch.testing.assert_close(latent.grad, scale * upstream)            # Eq. 8
    # the scales' gradients are the true derivatives: w_t is linear in W_p and W_n
    assert torch.autograd.gradcheck(lambda p, n: TrainedTernary.apply(latent.detach(), p, n, TTQ_THRESHOLD_FACTOR),
                                     (w_p.detach().requires_grad_(), w_n.detach().requires_grad_()))


def test_ttq_layer_trains_its_scales():
    torch.manual_seed(0)
    layer = TernaryConv2d(2, 3, 3, mode="ttq")
    latent = layer.weight.detach()
    delta = TTQ_THRESHOLD_FACTOR * latent.abs().max()
    torch.testing.assert_close(layer.positive_scale.detach(), latent[latent > delta].mean())
    torch.testing.assert_close(layer.negative_scale.detach(), -latent[latent < -delta].mean())
    layer(torch.randn(2, 2, 5, 5)).square().sum().backward()
    assert layer.positive_scale.grad != 0 and layer.negative_scale.grad != 0
    assert len(layer.ternary_weight().unique()) == 3


def test_two_bit_packing_round_trips_four_codes_per_byte():
    assert pack_ternary(torch.tensor([1, 0, -1, 1]).numpy()) == bytes([1 | 0 << 2 | 2 << 4 | 1 << 6])
    codes = torch.randint(-1, 2, (1001,), generator=torch.Generator().manual_seed(0)).numpy()
    packed = pack_ternary(codes)
    assert len(packed) == 251
    assert (unpack_ternary(packed, 1001) == codes).all()
    with pytest.raises(ValueError, match="code 3"):
        unpack_ternary(bytes([3]), 1)


def test_ternarize_keeps_first_and_last_layers_and_the_weight_names():
    real = lenet()
    model = ternarize(lenet(), "twn")
    assert ternary_layer_names(model) == ["features.3", "fc1.0"]
    assert type(model.features[0]) is nn.Conv2d and type(model.fc2) is nn.Linear
    model.load_state_dict(real.state_dict())  # TWN adds no parameters: a real checkpoint loads
    with pytest.raises(ValueError, match="ternary mode"):
        ternarize(lenet(), "xnor")


@pytest.mark.parametrize("mode", ["twn", "ttq"])
def test_ternary_vzc_round_trip_gives_identical_outputs_at_two_bits_per_weight(tmp_path, mode):
    model = ternarize(lenet(), mode)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
    materialize(model)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(expected, before)  # the stored weights are the layer's fixed point
    names = ternary_layer_names(model)
    descriptors = save_compressed(tmp_path / "model.vzc", model, META, {n: LayerCoding("ternary") for n in names},
                                  [["ternarize", mode]])
    loaded, _ = load_compressed(tmp_path)
    assert ternary_layer_names(loaded) == names
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    stored = {d["name"]: d["bytes"] for d in descriptors}
    for name in names:
        n = model.get_submodule(name).weight.numel()
        assert stored[name + ".weight"] == -(-n // 4) + 8  # 2 bits a weight, two float32 scales
    # the whole file: 2 bits per ternary weight, 32 per other value, plus a small header
    ternary = sum(model.get_submodule(n).weight.numel() for n in names)
    total = sum(t.numel() for t in model.state_dict().values())
    ideal = (2 * ternary + 64 * len(names)) / 8 + 4 * (total - ternary)
    assert weight_memory_bits(model) == 2 * ternary + 64 * len(names) + 32 * (
        model.features[0].weight.numel() + model.fc2.weight.numel())
    assert ideal < (tmp_path / "model.vzc").stat().st_size < ideal + 2048


def test_ternary_vzc_round_trip_of_layers_whose_weight_count_is_not_a_multiple_of_four(tmp_path):
    # LeNet-5's C3 groups hold 450 and 150 weights: their last byte of 2-bit codes is partly filled
    torch.manual_seed(0)
    model = ternarize(vz.create_model("lenet5", num_classes=10, in_chans=1).eval(), "twn")
    materialize(model)
    names = ternary_layer_names(model)
    assert any(model.get_submodule(n).weight.numel() % 4 for n in names)
    meta = {"name": "lenet5", "kwargs": {"num_classes": 10, "in_chans": 1}, "input_size": [1, 32, 32]}
    save_compressed(tmp_path / "model.vzc", model, meta, {n: LayerCoding("ternary") for n in names},
                    [["ternarize", "twn"]])
    loaded, _ = load_compressed(tmp_path)
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_encoder_refuses_weights_that_are_not_ternary(tmp_path):
    model = lenet()
    with pytest.raises(ValueError, match="ternarise them first"):
        save_compressed(tmp_path / "m.vzc", model, META, {"fc1.0": LayerCoding("ternary")})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from visionzoo.engine.trainer import train
    out = tmp_path_factory.mktemp("ternary") / "run"
    train(model="lenet", data="digits", image_size=16, epochs=1, batch_size=64, lr=0.05, train_limit=320,
          out=str(out), quiet=True)
    return out


@pytest.mark.parametrize("mode", ["twn", "ttq"])
def test_compress_cli_ternary_end_to_end(run_dir, tmp_path, capsys, mode):
    from visionzoo.cli.main import main
    out = tmp_path / mode
    code = main(["compress", str(run_dir), "--method", "ternary", "--ternary-mode", mode, "--epochs", "1",
                 "--train-limit", "128", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    details = report["details"]
    assert details["ternary_mode"] == mode and report["bytes_after"] < report["bytes_before"] / 10
    decoded, _ = load_checkpoint(out)
    assert details["weight_bits_after"] == weight_memory_bits(decoded) < details["weight_bits_before"] / 10
    for name in ("features.3", "fc1.0"):
        assert decoded.get_submodule(name).weight.unique().numel() <= 3
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == report["top1_after"]


def test_layers_match_their_real_twins_when_all_weights_share_one_magnitude():
    conv = TernaryConv2d(2, 3, 3, padding=1, mode="twn")
    with torch.no_grad():
        conv.weight.copy_(torch.where(torch.randn_like(conv.weight) > 0, 0.25, -0.25))
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
