"""Video networks (task "video"): optical flow, Ji et al.'s 3-D CNN layer by layer against the paper's
map sizes and parameter counts, the torchvision twins of the 18-layer video ResNets, the small CPU
variants, and MACs of 3-D convolutions counted by hand."""
import math

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.core.profile import count_macs, count_params
from visionzoo.layers.optical_flow import optical_flow, spatial_gradients
from visionzoo.registry import get_entry

from conftest import randomise_batchnorm

SMALL = ["c3d_small", "r3d_small", "r2plus1d_small", "single_frame_cnn", "early_fusion_cnn"]
TWINS = ["r3d_18", "mc3_18", "r2plus1d_18"]


def textured_pair(dx, dy, side=48):
    """A smooth textured image and the same image moved by (dx, dy) pixels (x right, y down)."""
    y, x = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                          indexing="ij")

    def texture(x, y):
        return (0.5 + 0.2 * torch.sin(2 * math.pi * x / 13 + 0.3) * torch.cos(2 * math.pi * y / 11)
                + 0.15 * torch.sin(2 * math.pi * (x + y) / 17))
    return texture(x, y)[None].float(), texture(x - dx, y - dy)[None].float()


# ------------------------------------------------------------------ optical flow
@pytest.mark.parametrize("method", ["horn_schunck", "lucas_kanade"])
@pytest.mark.parametrize("shift", [(0.5, 0.0), (0.0, -0.5), (1.0, 0.0), (0.3, -0.7)])
def test_flow_of_a_translation_is_the_shift_in_the_interior(method, shift):
    a, b = textured_pair(*shift)
    flow = optical_flow(a, b, method)
    assert flow.shape == (1, 2, 48, 48)
    interior = flow[0, :, 8:-8, 8:-8]
    # First-order derivatives of a sinusoid of period ≥ 11 px: the error grows with the shift; 0.1 px at 1 px.
    for component, expected in zip(interior, shift):
        assert (component - expected).abs().max() < 0.1


@pytest.mark.parametrize("method", ["horn_schunck", "lucas_kanade"])
def test_flow_signs_and_zero_motion(method):
    a, _ = textured_pair(0, 0)
    assert optical_flow(a, a, method).abs().max() == 0
    right, down = optical_flow(*textured_pair(0.5, 0.5), method)[0, :, 8:-8, 8:-8].mean((1, 2))
    left, up = optical_flow(*textured_pair(-0.5, -0.5), method)[0, :, 8:-8, 8:-8].mean((1, 2))
    assert right > 0.4 and down > 0.4 and left < -0.4 and up < -0.4


def test_flow_is_batched_and_refuses_bad_input():
    pairs = [textured_pair(0.5, 0), textured_pair(0, 0.5)]
    a, b = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    batched = optical_flow(a[:, None], b[:, None])
    torch.testing.assert_close(batched[1:], optical_flow(a[1:], b[1:]))
    with pytest.raises(UsageError, match="farneback"):
        optical_flow(a, b, "farneback")
    with pytest.raises(UsageError, match="grey frames"):
        optical_flow(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_gradients_of_a_ramp():
    y, x = torch.meshgrid(torch.arange(6.0), torch.arange(5.0), indexing="ij")
    gradient_x, gradient_y = spatial_gradients(2 * x - 3 * y)
    assert torch.all(gradient_x[:, 1:-1] == 2) and torch.all(gradient_y[1:-1] == -3)
    assert torch.all(gradient_x[:, 0] == 1)   # replicated border: half a one-sided difference


# ------------------------------------------------------------------ Ji et al. 3-D CNN
# Sec. 3.2 of the paper: (maps per set or channel count, frames of gray/grad channels, of flow channels, H, W).
PAPER_MAPS = {"C2": (2 * 3, 5, 2 * 2, 4, 54, 34), "S3": (6, 5, 4, 4, 27, 17), "C4": (18, 3, 12, 2, 21, 12),
              "S5": (18, 3, 12, 2, 7, 4)}


def test_ji3dcnn_map_sizes_are_the_papers():
    model = vz.create_model("ji3dcnn").eval()
    with torch.no_grad():
        maps = model.feature_maps(torch.rand(2, 1, 7, 60, 40))
    frames, flow = maps["H1"]
    assert frames.shape == (2, 3, 7, 60, 40) and flow.shape == (2, 2, 6, 60, 40)   # 3·7 + 2·6 = 33 maps
    for layer, (channels, t, flow_channels, flow_t, h, w) in PAPER_MAPS.items():
        assert maps[layer][0].shape == (2, channels, t, h, w), layer
        assert maps[layer][1].shape == (2, flow_channels, flow_t, h, w), layer
    # C2: 23 maps per set (5+5+5+4+4), 2 sets; C4: 13 per set, 6 sets; S5: 78 maps.
    assert (3 * 5 + 2 * 4) * 2 == 46 and (3 * 3 + 2 * 2) * 6 == 18 * 3 + 12 * 2 == 78
    assert maps["C6"].shape == (2, 128, 1, 1)
    assert model(torch.rand(2, 1, 7, 60, 40)).shape == (2, 3)


def test_ji3dcnn_parameters_per_layer_are_the_papers():
    model = vz.create_model("ji3dcnn")

    def params(*names):
        return sum(count_params(model.get_submodule(n)) for n in names)
    assert params("hardwired") == 0
    assert params("c2_frames", "c2_flow") == 1_480
    assert params("s3_frames", "s3_flow") == 92
    assert params("c4_frames", "c4_flow") == 3_810
    assert params("s5_frames", "s5_flow") == 156
    assert params("fc") == 384
    # The paper's 289,536 for C6 counts a bias per 7×4 kernel; one per output map computes the same.
    assert params("c6") == 128 * 78 * 7 * 4 + 128 == 289_536 - 128 * 77
    assert count_params(model) == 295_458 - 128 * 77


def test_ji3dcnn_hardwired_channels():
    """Gray is the clip, gradients are those of each frame, and a clip moving right by half a pixel per
    frame has optflow-x ≈ 0.5 and optflow-y ≈ 0."""
    frames = [textured_pair(0.5 * t, 0, side=48)[1] for t in range(7)]
    clip = torch.stack(frames, 1)[:, None]                    # (1, 1, 7, 48, 48)
    hardwired = vz.create_model("ji3dcnn", image_size=48).hardwired
    gray_channels, flow = hardwired(clip)
    torch.testing.assert_close(gray_channels[:, 0], clip[:, 0])
    gradient_x, gradient_y = spatial_gradients(clip[0, 0, 3])
    torch.testing.assert_close(gray_channels[0, 1, 3], gradient_x)
    torch.testing.assert_close(gray_channels[0, 2, 3], gradient_y)
    interior = flow[0, :, :, 8:-8, 8:-8]
    assert (interior[0] - 0.5).abs().max() < 0.1 and interior[1].abs().max() < 0.1


def test_ji3dcnn_other_clip_sizes_and_refusals():
    model = vz.create_model("ji3dcnn", frames=16, image_size=64, num_classes=10)
    assert model.c6.kernel_size == (7, 8)   # S5's maps: 58×58 → 29×29 → 23×24 → 7×8
    with torch.no_grad():
        assert model(torch.rand(1, 1, 16, 64, 64)).shape == (1, 10)
    smallest = vz.create_model("ji3dcnn", frames=6, image_size=(24, 22))
    out = smallest(torch.rand(2, 1, 6, 24, 22))
    assert out.shape == (2, 3)
    out.square().sum().backward()
    assert smallest.c2_flow.weight.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="frames=T, image_size"):
        model(torch.rand(2, 1, 7, 60, 40))
    with pytest.raises(UsageError, match="at least 6 frames"):
        vz.create_model("ji3dcnn", frames=5)
    with pytest.raises(UsageError, match="at least 6 frames"):
        vz.create_model("ji3dcnn", image_size=(23, 22))
    with pytest.raises(UsageError, match="in_chans=1"):
        vz.create_model("ji3dcnn", in_chans=3)


# ------------------------------------------------------------------ torchvision twins
@pytest.mark.parametrize("name", TWINS)
def test_twin_logits_are_torchvisions(name):
    import torchvision
    torch.manual_seed(0)
    twin = torchvision.models.get_model(get_entry(name).twins["torchvision"], weights=None, num_classes=400)
    with torch.no_grad():
        for p in twin.parameters():   # biases and BN scales start constant: make every one matter
            p.add_(torch.randn_like(p), alpha=0.1)
    randomise_batchnorm(twin, torch.randn(4, 3, 8, 32, 32))
    model = vz.create_model(name).eval()
    model.load_state_dict(vz.convert_state_dict(name, twin.state_dict(), "torchvision"))
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected, got = twin(x), model(x)
    scale = expected.abs().max()
    assert (expected[0] - expected[1]).abs().max() > 1e-3 * scale
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)


def test_twin_training_gradients_are_torchvisions():
    # The residual sum is taken in place as torchvision's is: autograd must accept it, and a training
    # step (batch statistics) must give every parameter torchvision's gradient. MC3-18, the smallest
    # twin, has blocks of both 3-D and 2-D convolutions, with and without a projection shortcut.
    import torchvision
    name = "mc3_18"
    torch.manual_seed(0)
    twin = torchvision.models.get_model(get_entry(name).twins["torchvision"], weights=None, num_classes=5)
    model = vz.create_model(name, num_classes=5)
    model.load_state_dict(vz.convert_state_dict(name, twin.state_dict(), "torchvision"))
    x, labels = torch.randn(2, 3, 4, 16, 16), torch.tensor([1, 3])
    for network in (twin, model):
        nn.functional.cross_entropy(network(x), labels).backward()
    expected = vz.convert_state_dict(name, {key: p.grad for key, p in twin.named_parameters()}, "torchvision")
    got = {key: p.grad for key, p in model.named_parameters()}
    assert expected.keys() == got.keys()
    for key in got:
        scale = expected[key].abs().max()
        assert scale > 0, key
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-4 * scale, msg=key)


def test_twin_parameter_counts():
    counts = {name: vz.model_card(name)["params"] for name in TWINS}
    assert counts == {"r3d_18": 33_371_472, "mc3_18": 11_695_440, "r2plus1d_18": 31_505_325}


# ------------------------------------------------------------------ small variants and the 2-D baselines
@pytest.mark.parametrize("name", SMALL)
def test_small_variants_forward_backward(name):
    torch.manual_seed(0)
    model = vz.create_model(name)
    assert get_entry(name).input_size == (1, 16, 64, 64)
    x = torch.randn(2, 1, 16, 64, 64)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.get_classifier().parameters())
    assert vz.model_card(name)["macs"] < 60e6
    model.reset_classifier(4)
    assert model(x).shape == (2, 4)


def test_single_frame_cnn_reads_only_the_middle_frame():
    model = vz.create_model("single_frame_cnn").eval()
    x = torch.randn(1, 1, 16, 64, 64)
    changed = x.clone()
    changed[:, :, :8] = torch.randn(1, 1, 8, 64, 64)
    changed[:, :, 9:] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(changed), model(x))
        changed[:, :, 8] += 1
        assert not torch.allclose(model(changed), model(x))


def test_early_fusion_reads_every_frame():
    model = vz.create_model("early_fusion_cnn").eval()
    assert model.features[0].in_channels == 16
    x = torch.randn(1, 1, 16, 64, 64, requires_grad=True)
    model(x).sum().backward()
    assert (x.grad.abs().sum((0, 1, 3, 4)) > 0).all()
    with pytest.raises(UsageError, match="frames=T"):
        model(torch.randn(1, 1, 8, 64, 64))


def test_c3d_layout_and_refusal():
    with torch.device("meta"):
        model = vz.create_model("c3d")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.MaxPool3d) for m in model.modules()) == 5
    assert model.fc6[0].in_features == 512 * 1 * 4 * 4 and model.fc7[0].out_features == 4096
    with pytest.raises(UsageError, match="frames=T"):
        vz.create_model("c3d_small")(torch.randn(1, 1, 8, 64, 64))


# ------------------------------------------------------------------ MACs and the registry
def test_macs_of_3d_convolutions_by_hand():
    conv = nn.Conv3d(4, 6, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), groups=2)
    # Output 8×8×8 positions, 6 maps, each reading 2 input channels × 3·5·5 taps; pools count nothing.
    assert count_macs(nn.Sequential(conv, nn.MaxPool3d(2)), (4, 8, 16, 16)) == 8 * 8 * 8 * 6 * 2 * 75
    transposed = nn.ConvTranspose3d(2, 3, 3, stride=2)
    assert count_macs(transposed, (2, 4, 4, 4)) == 4 ** 3 * 2 * 3 * 27   # every input tap scattered to 27 outputs
    # Ji et al.: C2 46 maps × 54·34 × 147 taps, C4 78 × 21·12 × 126, C6 128 × 78 × 28 (hardwired layer: none).
    expected = 46 * 54 * 34 * 147 + 78 * 21 * 12 * 126 + 128 * 78 * 28 + 128 * 3
    assert vz.model_card("ji3dcnn")["macs"] == expected


def test_video_models_are_listed_by_task():
    names = vz.list_models(task="video")
    assert {"ji3dcnn", "c3d", "r3d_18", "mc3_18", "r2plus1d_18", *SMALL} <= set(names)
    assert not set(names) & set(vz.list_models(task="classification"))
    for name in names:
        assert len(get_entry(name).input_size) == 4


def test_ji3dcnn_subsampling_is_the_block_mean_times_a_coefficient_plus_a_bias_then_tanh():
    """S3/S5 (LeNet's subsampling): tanh(a · mean of each factor × factor block + b), a and b per map
    (channel and frame)."""
    from visionzoo.models.ji3dcnn import Subsampling
    torch.manual_seed(0)
    layer = Subsampling(channels=2, frames=3, factor=2)
    with torch.no_grad():
        layer.coefficient.normal_()
        layer.bias.normal_()
    x = torch.randn(4, 2, 3, 4, 6)
    blocks = x.reshape(4, 2, 3, 2, 2, 3, 2).mean((4, 6))     # (B, C, T, H/2, W/2)
    torch.testing.assert_close(layer(x), torch.tanh(layer.coefficient * blocks + layer.bias))


def test_ji3dcnn_every_convolution_is_followed_by_tanh():
    """Eq. 1–2: C2, C4 and C6 are tanh of their convolutions' outputs."""
    torch.manual_seed(0)
    model = vz.create_model("ji3dcnn", frames=6, image_size=(24, 22)).eval()
    convs = {"C2": (model.c2_frames, model.c2_flow), "C4": (model.c4_frames, model.c4_flow), "C6": (model.c6,)}
    raw = {layer: [] for layer in convs}
    for layer, modules in convs.items():
        for conv in modules:
            with torch.no_grad():
                conv.weight.mul_(10)   # pre-activations well outside tanh's linear range
            conv.register_forward_hook(lambda m, args, out, layer=layer: raw[layer].append(out))
    with torch.no_grad():
        maps = model.feature_maps(4 * torch.rand(2, 1, 6, 24, 22))
    for layer, outputs in raw.items():
        got = maps[layer] if isinstance(maps[layer], tuple) else (maps[layer],)
        assert len(got) == len(outputs)
        for out, pre in zip(got, outputs):
            assert pre.abs().max() > 1, layer   # tanh has something to squash
            torch.testing.assert_close(out, torch.tanh(pre))


def test_c3d_pool1_keeps_time_and_pool2_to_pool5_halve_it():
    """Fig. 3 and Sec. 3.2: pool1 is 1 × 2 × 2 ("not to merge the temporal signal too early"), pool2–5 are
    2 × 2 × 2, pool5 rounding up (7 → 4): (C, T, H, W) after each pool of a 3 × 16 × 112 × 112 clip."""
    with torch.device("meta"):
        model = vz.create_model("c3d")
        seen = []
        for m in model.modules():
            if isinstance(m, nn.MaxPool3d):
                m.register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape[1:])))
        model(torch.empty(1, 3, 16, 112, 112))
    assert seen == [(64, 16, 56, 56), (128, 8, 28, 28), (256, 4, 14, 14), (512, 2, 7, 7), (512, 1, 4, 4)]


@pytest.mark.parametrize("name", ["r3d_small", "r2plus1d_small"])
def test_video_resnets_initialise_as_torchvision(name):
    """torchvision's video ResNets: convolutions N(0, 2/fan_out) (He, fan-out mode: C_out · kernel volume), batch
    norm 1 and 0, the classifier N(0, 0.01²) with bias 0. Sample standard deviations within 5 standard errors."""
    torch.manual_seed(0)
    model = vz.create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert any(m.in_channels != m.out_channels for m in convs)
    for m in convs:
        fan_out = m.out_channels * math.prod(m.kernel_size)
        n = m.weight.numel()
        assert abs(m.weight.std().item() / math.sqrt(2 / fan_out) - 1) < 5 / math.sqrt(2 * n), m
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in norms)
    fc = model.get_classifier()
    assert abs(fc.weight.std().item() / 0.01 - 1) < 5 / math.sqrt(2 * fc.weight.numel()) and not fc.bias.any()
