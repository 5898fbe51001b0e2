"""U-Net (Ronneberger et al. 2015): Fig. 1's sizes and channels, its parameter count, the size
arithmetic, the options, He initialisation, mirror padding and overlap-tile (Fig. 2), and the
encoder U-Net against segmentation_models_pytorch's layout."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.core.profile import count_params
from visionzoo.models.unet import UNet, mirror_pad, overlap_tile

# Fig. 1, in the order the layers run: (channels, side) after every 3×3 convolution, max-pool and
# up-convolution, then the 1×1 output convolution.
FIG1 = [(64, 570), (64, 568), (64, 284), (128, 282), (128, 280), (128, 140), (256, 138), (256, 136),
        (256, 68), (512, 66), (512, 64), (512, 32), (1024, 30), (1024, 28),
        (512, 56), (512, 54), (512, 52), (256, 104), (256, 102), (256, 100),
        (128, 200), (128, 198), (128, 196), (64, 392), (64, 390), (64, 388), (2, 388)]


def _run_recording(model, x, kinds=(nn.Conv2d, nn.MaxPool2d, nn.ConvTranspose2d)):
    """Forward `x`; the (channels, side) output of every module of `kinds`, in call order."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append((out.shape[1], out.shape[-1])))
             for m in model.modules() if isinstance(m, kinds)]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def test_fig1_sizes_and_channels():
    with torch.device("meta"):
        model = vz.create_model("unet")
        out, seen = _run_recording(model, torch.empty(1, 1, 572, 572))
    assert seen == FIG1
    assert out.shape == (1, 2, 388, 388)
    assert model.output_size(572) == 388 and model.margin(572) == 92 and model.valid_input_size(388) == 572


def test_parameter_count_is_fig1s():
    """Counted from Fig. 1's channels: 3×3 convs, 2×2 up-convs and the 1×1 head, with biases."""
    widths = [64, 128, 256, 512, 1024]
    convs = [(1, 64), (64, 64)] + [(c, 2 * c) for c in widths[:-1]] + [(2 * c, 2 * c) for c in widths[:-1]]
    convs += [(2 * c, c) for c in widths[:-1]] + [(c, c) for c in widths[:-1]]   # expanding path
    expected = sum(9 * a * b + b for a, b in convs)
    expected += sum(4 * 2 * c * c + c for c in widths[:-1])   # up-convolutions halving the channels
    expected += 64 * 2 + 2
    with torch.device("meta"):
        assert count_params(vz.create_model("unet")) == expected
    assert round(expected / 1e6, 2) == 31.03   # the figure usually quoted


SMALL_CONFIGS = [dict(depth=2), dict(depth=3), dict(depth=2, upsample="bilinear"), dict(depth=3, upsample="bilinear"),
                 dict(depth=2, padding="same"), dict(depth=2, padding="same", upsample="bilinear")]


@pytest.mark.parametrize("config", SMALL_CONFIGS, ids=str)
def test_size_arithmetic_matches_the_layers(config):
    """output_size accepts exactly the sides on which every max-pool sees an even size and no map
    vanishes, and predicts the forward's; valid_input_size is the smallest accepted side reaching
    an output, margin is (input − output) / 2."""
    with torch.device("meta"):
        model = UNet(2, 1, base_width=2, **config)
    for side in range(1, 80):
        try:
            expected = model.output_size(side)
        except UsageError:
            expected = None
        pooled = []
        hook = model.pool.register_forward_pre_hook(lambda m, args: pooled.append(args[0].shape[-1]))
        model.output_size = lambda side: side   # bypass the check: run the layers as they are
        try:
            out = model(torch.empty(1, 1, side, side, device="meta")).shape[-1]
        except RuntimeError:   # a map vanished
            out = None
        finally:
            hook.remove()
            del model.output_size
        if expected is None:
            assert out is None or out <= 0 or any(p % 2 for p in pooled), side
        else:
            assert out == expected and all(p % 2 == 0 for p in pooled), side
            assert model.margin(side) * 2 == side - expected
    for target in range(1, 40):
        side = model.valid_input_size(target)
        assert model.output_size(side) >= target
        for smaller in range(1, side):
            try:
                assert model.output_size(smaller) < target
            except UsageError:
                pass


def test_same_padding_keeps_the_size_of_divisible_inputs():
    model = vz.create_model("unet_small", num_classes=3)
    assert model.padding == "same" and model.size_divisor == 16
    for side in (32, 48):
        assert model(torch.randn(2, 1, side, side)).shape == (2, 3, side, side)
    with pytest.raises(UsageError, match="multiple of 16"):
        model(torch.randn(1, 1, 40, 40))
    assert model.valid_input_size(40) == 48 and model.margin(48) == 0


def test_bilinear_upsampling_replaces_the_up_convolution_by_a_3x3_conv():
    transpose = UNet(2, 1, base_width=8, depth=3, padding="same")
    bilinear = UNet(2, 1, base_width=8, depth=3, padding="same", upsample="bilinear")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in bilinear.modules())
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in bilinear.upsampling.modules()
            if isinstance(m, nn.Conv2d)] == [(64, 32, (3, 3)), (32, 16, (3, 3)), (16, 8, (3, 3))]
    assert count_params(bilinear) - count_params(transpose) == sum(5 * c * c // 2 for c in (64, 32, 16))
    x = torch.randn(1, 1, 32, 32)
    assert bilinear(x).shape == transpose(x).shape == (1, 2, 32, 32)


def _expanding_inputs(model, x):
    """The maps each expanding block receives, each upsampling's output and each contracting block's."""
    seen = {"expanding": [], "upsampling": [], "contracting": []}
    hooks = [m.register_forward_hook(lambda m, args, out, key=key: seen[key].append((args[0], out)))
             for key in seen for m in getattr(model, key)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_skip_connections_concatenate_the_cropped_contracting_map():
    """With skips each expanding block reads [centre crop of the contracting map, upsampled map]
    (Fig. 1's "copy and crop"); without, the upsampled map alone."""
    x = torch.randn(1, 1, 92, 92)
    with_skips = UNet(2, 1, base_width=4, depth=3)
    seen = _expanding_inputs(with_skips, x)
    for (received, _), (_, upsampled), (_, contracted) in zip(seen["expanding"], seen["upsampling"],
                                                               reversed(seen["contracting"][:-1])):
        side = upsampled.shape[-1]
        offset = (contracted.shape[-1] - side) // 2
        assert offset > 0
        crop = contracted[..., offset:offset + side, offset:offset + side]
        torch.testing.assert_close(received, torch.cat([crop, upsampled], 1), rtol=0, atol=0)
    without = UNet(2, 1, base_width=4, depth=3, skip=False)
    assert [block[0].in_channels for block in without.expanding] == [16, 8, 4]
    seen = _expanding_inputs(without, x)
    assert all(received is upsampled for (received, _), (_, upsampled) in zip(seen["expanding"], seen["upsampling"]))
    assert without(x).shape == with_skips(x).shape == (1, 2, 4, 4)


def test_batch_norm_variant():
    model = UNet(2, 1, base_width=4, depth=2, norm="batch", padding="same")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 * (2 * 2 + 1)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d) and m is not model.head)


def test_dropout_at_the_end_of_the_contracting_path():
    model = UNet(2, 1, base_width=4, depth=2, padding="same", dropout=0.5)
    x = torch.randn(2, 1, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    with pytest.raises(UsageError, match="dropout"):
        UNet(dropout=1.0)


@pytest.mark.parametrize("option", [{"padding": "full"}, {"upsample": "nearest"}, {"norm": "group"}, {"depth": 0}])
def test_bad_options_are_refused(option):
    with pytest.raises(UsageError, match=f"U-Net {next(iter(option))}"):
        UNet(**option)


def test_he_initialisation():
    """Sec. 3: weights ~ N(0, 2/N), N incoming nodes: k·k·C_in for a convolution, C_in for the
    2×2 stride-2 up-convolution (one tap per output pixel); biases 0. Sample mean and standard
    deviation within 5 standard errors."""
    torch.manual_seed(0)
    model = vz.create_model("unet")
    checked = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            incoming = m.in_channels * (1 if isinstance(m, nn.ConvTranspose2d) else m.kernel_size[0] * m.kernel_size[1])
            std, n = math.sqrt(2 / incoming), m.weight.numel()
            assert abs(m.weight.mean().item()) < 5 * std / math.sqrt(n)
            assert abs(m.weight.std().item() / std - 1) < 5 / math.sqrt(2 * n)
            assert not m.bias.any()
            checked += 1
    assert checked == 2 * 9 + 4 + 1


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = vz.create_model("unet_small", num_classes=3)
    model.train()
    model(torch.randn(2, 1, 32, 32)).logsumexp(1).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("shape, pad", [((5, 7), 2), ((5, 7), (1, 3, 0, 4)), ((3, 4), 9), ((1, 6), (2, 0, 3, 1)),
                                        ((2, 2), (5, 6, 7, 8))])
def test_mirror_pad_is_numpy_reflect(shape, pad):
    x = torch.arange(math.prod(shape), dtype=torch.float32).reshape(1, 1, *shape)
    left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else pad
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    np.testing.assert_array_equal(mirror_pad(x, pad).numpy(), expected)


def test_mirror_pad_refuses_negative_pads():
    with pytest.raises(UsageError, match="pads"):
        mirror_pad(torch.zeros(1, 1, 4, 4), (1, -1, 0, 0))


def _one_pass(model, image):
    """The network once over the whole image, mirror-extended by numpy by its context margin (and at
    the bottom/right to a side it takes), cropped to the image."""
    margin, (height, width) = model.context_margin, image.shape[-2:]
    side = (lambda s: model.valid_input_size(s)) if model.padding == "valid" else \
        (lambda s: model.valid_input_size(s + 2 * margin))
    rows, columns = side(height), side(width)
    padded = np.pad(image.numpy(), ((0, 0), (0, 0), (margin, rows - height - margin),
                                    (margin, columns - width - margin)), mode="reflect")
    out = model(torch.from_numpy(padded))
    start = 0 if model.padding == "valid" else margin
    return out[..., start:start + height, start:start + width]


@pytest.mark.parametrize("config", [dict(depth=3), dict(depth=3, upsample="bilinear"), dict(depth=3, padding="same"),
                                    dict(depth=2, padding="same", upsample="bilinear", norm="batch")], ids=str)
def test_overlap_tile_equals_one_pass_over_the_mirrored_image(config):
    torch.manual_seed(0)
    model = UNet(3, 2, base_width=4, **config).eval()
    image = torch.randn(2, 2, 37, 45)   # odd sides, tiles smaller than the image
    smallest = model.valid_input_size(2 * model.context_margin + 2 * model.size_divisor)
    with torch.no_grad():
        reference = _one_pass(model, image)
        tiled = overlap_tile(model, image, tile=smallest, batch_size=5)
        whole = overlap_tile(model, image)
    assert tiled.shape == (2, 3, 37, 45)
    assert (tiled - reference).abs().max() < 1e-5
    assert (whole - reference).abs().max() < 1e-5


def test_overlap_tile_is_differentiable_and_checks_its_tile():
    model = UNet(2, 1, base_width=2, depth=3)   # its smallest input, 92, gives 4 < 8 output pixels
    image = torch.randn(1, 1, 9, 11, requires_grad=True)
    overlap_tile(model, image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="cannot take a side of 45"):
        overlap_tile(model, image, tile=45)
    with pytest.raises(UsageError, match="at least"):
        overlap_tile(model, image, tile=model.valid_input_size(1))


def test_paper_tiles_step_by_384():
    """572-pixel tiles give 388 outputs; they step by 384, a multiple of 16, over a 1000-pixel image."""
    with torch.device("meta"):
        model = vz.create_model("unet")
        counted = []
        model.register_forward_pre_hook(lambda m, args: counted.append(args[0].shape))
        out = overlap_tile(model, torch.empty(1, 1, 1000, 700), tile=572)
    assert out.shape == (1, 2, 1000, 700)
    assert counted == [(3 * 2, 1, 572, 572)]   # ⌈1000/384⌉ × ⌈700/384⌉ tiles in one batch


def _smp_unet_params(encoder_without_head: int, encoder_channels, decoder_channels, classes: int) -> int:
    """smp's Unet: per decoder block two bias-free 3×3 convs with BN (γ, β), the first over the
    upsampled map and the skip; a 3×3 head with bias."""
    head, *skips = encoder_channels[::-1]
    params, cin = encoder_without_head, head
    for skip, cout in zip([*skips, 0], decoder_channels):
        params += 9 * (cin + skip) * cout + 2 * cout + 9 * cout * cout + 2 * cout
        cin = cout
    return params + 9 * decoder_channels[-1] * classes + classes


def test_encoder_unet_has_smps_parameters():
    with torch.device("meta"):
        resnet18 = vz.create_model("resnet18")
        model = vz.create_model("unet_resnet18", num_classes=1)
    encoder = count_params(resnet18) - count_params(resnet18.fc)
    expected = _smp_unet_params(encoder, (64, 64, 128, 256, 512), (256, 128, 64, 32, 16), 1)
    assert count_params(model) == expected == 14_328_209


@pytest.mark.parametrize("side", [64, 96])
def test_encoder_unet_resnet18_shapes(side):
    model = vz.create_model("unet_resnet18", num_classes=4, in_chans=1)
    assert model(torch.randn(2, 1, side, side)).shape == (2, 4, side, side)


def test_encoder_unet_options_and_errors():
    for upsample in ("bilinear", "transpose"):
        model = vz.create_model("unet_resnet18", num_classes=2, upsample=upsample)
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    with pytest.raises(UsageError, match="multiple of the encoder's reduction 32"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(UsageError, match="needs 3"):
        vz.create_model("unet_resnet18", encoder="resnet9")
    model = vz.create_model("unet_resnet18", encoder="resnet9", decoder_channels=(64, 32, 16), num_classes=2)
    assert model.size_divisor == 8 and model(torch.randn(1, 3, 24, 24)).shape == (1, 2, 24, 24)
    with pytest.raises(UsageError, match="upsample"):
        vz.create_model("unet_resnet18", upsample="cubic")


def test_encoder_unet_drops_the_classifier_and_takes_other_encoders():
    with torch.device("meta"):
        vgg = vz.create_model("unet_vgg16_bn")
        features = vz.create_model("vgg16_bn").features
    assert not any(".classifier." in name for name, _ in vgg.named_parameters())
    center = 2 * (9 * 512 * 512 + 2 * 512)
    assert count_params(vgg) == _smp_unet_params(count_params(features), (128, 256, 512, 512, 512),
                                                 (256, 128, 64, 32, 16), 21) + center
    model = vz.create_model("unet_resnet18", encoder="mobilenet_v2", num_classes=3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_registered_segmentation_networks():
    names = vz.list_models(task="segmentation")
    assert {"unet", "unet_same", "unet_small", "unet_resnet18", "unet_resnet34", "unet_vgg16_bn"} <= set(names)
    with torch.device("meta"):
        model = vz.create_model("unet")
    assert model.pretrained_cfg["input_size"] == (1, 572, 572) and model.padding == "valid"
    with pytest.raises(UsageError, match="no feature stages"):
        vz.create_model("unet_small", features_only=True)


# 7 s: each build initialises VGG-16's 120 M-parameter classifier before dropping it.
SLOW_BUILDS = {"unet_vgg16_bn"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_BUILDS else name
                                  for name in vz.list_models(task="segmentation")])
def test_segmentation_network_seeded_init_and_logit_maps(name):
    """Same seed, same weights; another seed, others; logits (N, classes, H', W') for grey images."""
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        states.append(vz.create_model(name, num_classes=3, in_chans=1).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k, v in states[0].items() if v.is_floating_point())
    with torch.device("meta"):
        model = vz.create_model(name, num_classes=3, in_chans=1)
        side = model.valid_input_size(16)
        assert model(torch.empty(2, 1, side, side)).shape == (2, 3, model.output_size(side), model.output_size(side))


def test_overlap_tile_with_a_wider_margin_and_an_encoder_unet():
    """A margin wider by a multiple of the pooling factor (which keeps the pooling grid) changes nothing
    for a U-Net; an encoder U-Net (context_margin 0)
    tiles without overlap unless given one, and covers every pixel either way."""
    torch.manual_seed(0)
    model = UNet(2, 1, base_width=2, depth=2).eval()
    image = torch.randn(1, 1, 13, 10)
    with torch.no_grad():
        reference = overlap_tile(model, image)
        wider = overlap_tile(model, image, margin=model.context_margin + model.size_divisor)
        wider_tiles = overlap_tile(model, image, margin=model.context_margin + model.size_divisor, tile=model.valid_input_size(16))
    assert (wider - reference).abs().max() < 1e-5 and (wider_tiles - reference).abs().max() < 1e-5
    with pytest.raises(UsageError, match="margin"):
        overlap_tile(model, image, margin=model.context_margin - 1)
    encoder_unet = vz.create_model("unet_resnet18", encoder="resnet9", decoder_channels=(16, 8, 4), num_classes=2)
    with torch.no_grad():
        assert overlap_tile(encoder_unet.eval(), torch.randn(1, 3, 21, 30), tile=16, margin=4).shape == (1, 2, 21, 30)


def test_centre_crop_takes_the_central_window_of_each_axis():
    """Fig. 1's "copy and crop" on a map taller than wide: rows and columns each lose half their excess per side."""
    from visionzoo.models.unet import centre_crop
    x = torch.arange(2 * 9 * 14).reshape(2, 9, 14)
    torch.testing.assert_close(centre_crop(x, (5, 4)), x[:, 2:7, 5:9], rtol=0, atol=0)
    torch.testing.assert_close(centre_crop(x, (9, 14)), x, rtol=0, atol=0)


def test_dropout_acts_on_the_deepest_blocks_output():
    """Sec. 3.1's dropout "at the end of the contracting path": it reads the deepest block's output (not that
    block's pooled input), and the first up-convolution reads what it leaves."""
    torch.manual_seed(0)
    model = UNet(2, 1, base_width=4, depth=2, padding="same", dropout=0.5).train()
    seen = {}
    model.contracting[-1].register_forward_hook(lambda m, args, out: seen.update(deepest=out.clone()))
    model.dropout.register_forward_hook(lambda m, args, out: seen.update(read=args[0].clone(), left=out.clone()))
    model.upsampling[0].register_forward_hook(lambda m, args, out: seen.update(up=args[0].clone()))
    model(torch.randn(2, 1, 16, 16))
    torch.testing.assert_close(seen["read"], seen["deepest"], rtol=0, atol=0)
    torch.testing.assert_close(seen["up"], seen["left"], rtol=0, atol=0)
    assert (seen["left"] == 0).sum() > (seen["deepest"] == 0).sum()   # it dropped something


def test_batch_norm_sits_between_each_convolution_and_its_relu():
    """``norm="batch"``: conv → BN → ReLU, twice per block, so every block's output is a ReLU's (≥ 0) even in
    training mode, where BN alone gives both signs."""
    torch.manual_seed(0)
    model = UNet(2, 1, base_width=4, depth=2, padding="same", norm="batch").train()
    for block in (*model.contracting, *model.expanding):
        assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    outputs = []
    hooks = [block.register_forward_hook(lambda m, args, out: outputs.append(out.detach().clone()))
             for block in (*model.contracting, *model.expanding)]
    model(torch.randn(2, 1, 16, 16))
    for hook in hooks:
        hook.remove()
    assert len(outputs) == 5 and all(out.min() >= 0 and out.max() > 0 for out in outputs)


def test_encoder_decoder_block_reads_the_upsampled_map_before_the_skip():
    """segmentation_models_pytorch's DecoderBlock concatenates [upsampled, skip]: conv1's first in_chans input
    channels see the upsampled map, the rest the encoder map, so smp's weights mean the same here."""
    from visionzoo.models.unet import DecoderBlock
    torch.manual_seed(0)
    block = DecoderBlock(4, 3, 5, "nearest").eval()
    x, skip = torch.randn(1, 4, 3, 3), torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        block.conv1[0].weight[:, 4:] = 0        # the skip's channels switched off
        reference = block(x, skip)
        torch.testing.assert_close(block(x, torch.randn(1, 3, 6, 6)), reference, rtol=0, atol=0)
        assert not torch.allclose(block(torch.randn(1, 4, 3, 3), skip), reference)
