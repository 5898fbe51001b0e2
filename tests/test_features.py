"""Backbone features with timm's semantics: every classifier's feature_info describes the maps that
``create_model(name, features_only=True)`` returns; real maps of a representative subset have the
papers' stage widths and strides; timm twins have timm's stages; resnet50's maps are those of
torchvision's feature extractor on the same weights."""
import math

import pytest
import torch

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.registry import get_entry

from conftest import randomise_batchnorm

CLASSIFIERS = vz.list_models(task="classification")
# Over a thousand layers: seconds of meta-device forward passes each.
SLOW = {"resnet1202_cifar", "preact_resnet1001"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [])
                                  for n in CLASSIFIERS])
def test_feature_info_describes_the_features_only_maps(name):
    """Shapes on the meta device at the card's input size: one map per stage, of its declared
    channels and no larger than the input side over its reduction; reductions never decrease."""
    with torch.device("meta"):
        extractor = vz.create_model(name, features_only=True).eval()
    info = extractor.feature_info
    assert info and [sorted(stage) for stage in info] == [["module", "num_chs", "reduction"]] * len(info)
    assert info == extractor.model.feature_info
    reductions = [stage["reduction"] for stage in info]
    assert reductions == sorted(reductions) and reductions[0] >= 1
    assert len({stage["module"] for stage in info}) == len(info)
    for stage in info:
        extractor.model.get_submodule(stage["module"])
    channels, height, width = extractor.pretrained_cfg["input_size"]
    with torch.no_grad():
        maps = extractor(torch.empty(2, channels, height, width, device="meta"))
    assert [tuple(m.shape[:2]) for m in maps] == [(2, stage["num_chs"]) for stage in info]
    for m, stage in zip(maps, info):
        assert m.dim() == 4 and 1 <= m.shape[-2] <= math.ceil(height / stage["reduction"]), stage


# The stage widths and strides of the papers' tables (and timm's feature_info), at 64 px.
EXPECTED = {
    "resnet50": ([64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    "efficientnet_b0": ([16, 24, 40, 112, 320], [2, 4, 8, 16, 32]),
    "vit_s_16": ([384] * 12, [16] * 12),
    "convnext_tiny": ([96, 192, 384, 768], [4, 8, 16, 32]),
    "densenet121": ([64, 256, 512, 1024, 1024], [2, 4, 8, 16, 32]),
    "mobilenet_v2": ([16, 24, 32, 96, 320], [2, 4, 8, 16, 32]),
    "vgg16": ([64, 128, 256, 512, 512, 512], [1, 2, 4, 8, 16, 32]),
}
SIDE = 64


@pytest.mark.parametrize("name", EXPECTED)
def test_real_maps_have_the_papers_widths_and_strides(name):
    torch.manual_seed(0)
    extractor = vz.create_model(name, features_only=True, image_size=SIDE).eval()
    channels, strides = EXPECTED[name]
    assert [stage["num_chs"] for stage in extractor.feature_info] == channels
    assert [stage["reduction"] for stage in extractor.feature_info] == strides
    with torch.no_grad():
        maps = extractor(torch.randn(1, 3, SIDE, SIDE))
    assert [tuple(m.shape) for m in maps] == [(1, c, SIDE // s, SIDE // s) for c, s in zip(channels, strides)]
    assert all(torch.isfinite(m).all() and m.std() > 0 for m in maps)


def test_out_indices_select_stages_as_timm_does():
    with torch.device("meta"):
        model = vz.create_model("resnet50")
        last_two = vz.create_model("resnet50", features_only=True, out_indices=2)
        chosen = vz.create_model("resnet50", features_only=True, out_indices=(-1, 1))
    assert last_two.feature_info == model.feature_info[3:]
    assert chosen.feature_info == [model.feature_info[1], model.feature_info[4]]   # network order
    with torch.no_grad():
        maps = chosen(torch.empty(1, 3, 224, 224, device="meta"))
    assert [m.shape[1] for m in maps] == [256, 2048]
    for bad in (6, (5,), (-6,), ()):
        with pytest.raises(UsageError, match="out_indices"):
            vz.create_model("resnet50", features_only=True, out_indices=bad)
    with pytest.raises(UsageError, match="features_only"):
        vz.create_model("resnet50", out_indices=(1,))


def test_vit_maps_are_the_patch_tokens_in_image_order():
    """Map position (r, c) is the token of patch r·W/P + c after the class token, as PatchEmbed
    flattens the patch grid row by row."""
    torch.manual_seed(0)
    extractor = vz.create_model("vit_ti_16", features_only=True, out_indices=(3,), image_size=SIDE).eval()
    tokens = {}
    hook = extractor.model.blocks[3].register_forward_hook(lambda m, a, out: tokens.setdefault("z", out))
    with torch.no_grad():
        (grid,) = extractor(torch.randn(1, 3, SIDE, SIDE))
    hook.remove()
    side = SIDE // 16
    for r, c in ((0, 0), (0, 3), (2, 1), (3, 3)):
        torch.testing.assert_close(grid[0, :, r, c], tokens["z"][0, 1 + r * side + c])


def test_a_stage_output_changed_in_place_is_caught():
    """A stage module whose output a later layer overwrites in place cannot give its map."""
    with torch.device("meta"):
        model = vz.create_model("densenet121")
    model.stage_modules = lambda: ["features.norm5"]   # relu5 rectifies norm5's output in place
    with pytest.raises(RuntimeError, match="in place"):
        model.feature_info


TIMM_TWINS = [name for name in CLASSIFIERS if "timm" in get_entry(name).twins]


@pytest.mark.parametrize("name", TIMM_TWINS)
def test_stages_match_the_timm_twin(name):
    """Same number of stages, and timm's channels and reductions at its default out_indices."""
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        theirs = timm.create_model(get_entry(name).twins["timm"], pretrained=False, features_only=True)
        ours = vz.create_model(name, features_only=True, out_indices=theirs.feature_info.out_indices)
    assert len(ours.model.feature_info) == len(theirs.feature_info.info)
    assert [stage["num_chs"] for stage in ours.feature_info] == theirs.feature_info.channels()
    assert [stage["reduction"] for stage in ours.feature_info] == theirs.feature_info.reduction()


def test_resnet50_maps_are_torchvisions_feature_extractor_outputs():
    """The twin's weights converted into ours: every stage map equals the output of the node of
    the same name in torchvision's create_feature_extractor."""
    from torchvision.models import resnet50
    from torchvision.models.feature_extraction import create_feature_extractor
    torch.manual_seed(0)
    x = torch.randn(2, 3, SIDE, SIDE)
    twin = randomise_batchnorm(resnet50(), torch.randn(4, 3, SIDE, SIDE))
    ours = vz.create_model("resnet50", features_only=True).eval()
    ours.model.load_state_dict(vz.convert_state_dict("resnet50", twin.state_dict(), "torchvision"))
    names = [stage["module"] for stage in ours.feature_info]
    reference = create_feature_extractor(twin, return_nodes=names)
    with torch.no_grad():
        expected, maps = reference(x), ours(x)
    assert names == ["relu", "layer1", "layer2", "layer3", "layer4"]
    for name, m in zip(names, maps):
        assert expected[name].std() > 1e-3
        torch.testing.assert_close(m, expected[name], atol=1e-4, rtol=1e-4)
