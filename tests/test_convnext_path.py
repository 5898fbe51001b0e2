"""ConvNeXt's modernisation path (Liu et al. 2022, Fig. 2) and ViT_C (Xiao et al. 2021): each step
changes one design decision, the ends are ResNet-50 and ConvNeXt-T, the cost moves as Fig. 2 says;
ViT_C's convolutional stem has ViT_P's token grid and cost. Figures per step: test_zoo.py's cards."""
from dataclasses import fields

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.profile import count_macs, count_params
from visionzoo.layers.norm import LayerNorm2d
from visionzoo.models.convnext_path import PATH, PathBlock, PathConfig, path_configs
from visionzoo.models.vit_convstem import ConvStem, small_image_strides
from visionzoo.registry import parse_figure

STEPS = path_configs()


def _meta(name, **kwargs):
    with torch.device("meta"):
        return vz.create_model(name, **kwargs)


def test_every_step_changes_exactly_the_switch_it_names():
    previous = PathConfig()
    for (name, cfg), (_, change, _) in zip(STEPS[1:], PATH[1:]):
        changed = {f.name for f in fields(PathConfig) if getattr(cfg, f.name) != getattr(previous, f.name)}
        assert changed == set(change), name
        previous = cfg


def test_the_path_starts_at_resnet50():
    ours, resnet50 = _meta(STEPS[0][0]), _meta("resnet50")
    assert count_params(ours) == count_params(resnet50)
    assert count_macs(ours, (3, 224, 224)) == count_macs(resnet50, (3, 224, 224))


def test_the_path_ends_at_convnext_tiny_without_layer_scale():
    ours, tiny = _meta(STEPS[-1][0]), _meta("convnext_tiny")
    layer_scale = sum(depth * dim for depth, dim in zip((3, 3, 9, 3), (96, 192, 384, 768)))
    assert count_params(tiny) - count_params(ours) == layer_scale
    assert count_macs(ours, (3, 224, 224)) == count_macs(tiny, (3, 224, 224))


def test_the_cost_moves_the_way_figure_2_says():
    measured = [vz.model_card(name)["macs"] for name, _ in STEPS]
    printed = [parse_figure(macs)[0] for _, _, macs in PATH]
    for k in range(1, len(PATH)):
        if printed[k] != printed[k - 1]:
            assert (measured[k] > measured[k - 1]) == (printed[k] > printed[k - 1]), STEPS[k][0]


def _blocks(name):
    return [m for m in _meta(name).modules() if isinstance(m, PathBlock)]


@pytest.mark.parametrize("step, activations, norms", [
    ("convnext_path_8_gelu", 3, 3), ("convnext_path_9_fewer_activations", 1, 3),
    ("convnext_path_10_fewer_norms", 1, 1)])
def test_micro_design_leaves_one_activation_and_one_norm(step, activations, norms):
    for block in _blocks(step):
        modules = list(block.modules())
        # the activation after the addition counts with the branch's
        assert sum(isinstance(m, nn.GELU) for m in modules) == activations
        assert sum(isinstance(m, (nn.BatchNorm2d, LayerNorm2d)) and m not in block.shortcut.modules()
                   for m in modules) == norms


def test_the_depthwise_conv_moves_to_the_front_and_grows_to_7x7():
    before, after = _blocks("convnext_path_5_inverted_bottleneck")[1], _blocks("convnext_path_7_kernel7")[1]
    first, moved = before.branch[0], after.branch[0]
    assert isinstance(first, nn.Conv2d) and first.kernel_size == (1, 1)
    assert moved.kernel_size == (7, 7) and moved.groups == moved.in_channels


def test_layer_norm_replaces_every_batch_norm():
    assert not any(isinstance(m, nn.BatchNorm2d) for m in _meta("convnext_path_11_layer_norm").modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in _meta("convnext_path_10_fewer_norms").modules())


@pytest.mark.parametrize("name", [name for name, _ in STEPS[::4]])
def test_every_step_reduces_by_4_8_16_32(name):
    assert [stage["reduction"] for stage in _meta(name).feature_info] == [4, 8, 16, 32]


# ---- ViT_C --------------------------------------------------------------------------------------

def test_the_conv_stem_gives_the_patchify_stems_token_grid():
    stem = ConvStem(3, (24, 48, 96, 192), (2, 2, 2, 2), 192)
    assert stem(torch.randn(1, 3, 224, 224)).shape == (1, 14 * 14, 192)
    assert stem.patch_size == 16


def test_vit_c_trades_one_block_for_its_stem_at_the_same_cost():
    conv, patchify = vz.model_card("vit_c_1gf"), vz.model_card("vit_p_1gf")
    assert len(_meta("vit_c_1gf").blocks) == len(_meta("vit_p_1gf").blocks) - 1
    assert abs(conv["macs"] / patchify["macs"] - 1) < 0.05


def test_small_images_keep_a_stride_4_stem():
    assert small_image_strides((2, 2, 2, 2)) == (2, 2, 1, 1)
    assert small_image_strides((2, 2, 1, 2, 1, 2)) == (2, 2, 1, 1, 1, 1)
    model = vz.create_model("vit_c_1gf", num_classes=10, in_chans=1, image_size=28)
    assert model.patch_embed(torch.randn(2, 1, 28, 28)).shape == (2, 49, 192)
