"""Every twin the registry lists: the torchvision or timm network, its weights converted by
`convert_state_dict`, gives the same logits in our network (eval mode)."""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.registry import get_entry

from conftest import randomise_batchnorm

# Video twins read clips, not images: tests/test_video_models.py checks them; detectors return boxes:
# tests/test_rcnn.py checks them.
TWINS = [(name, source) for name in vz.list_models() for source in get_entry(name).twins
         if get_entry(name).task not in ("video", "detection")]

# The smallest input side at which every convolution wider than 1×1 sees at least a 2×2 map, so
# that each of its taps meets the data (test_input_side checks it); the default suits the networks
# that downsample 32×. ConvNeXt pads odd maps where torchvision drops a row, so its maps stay even;
# ViT and Mixer keep the twin's patch size from 64 px up, on a grid of whole patches.
SMALLEST_SIDE = {"alexnet": 63, "vgg": 32, "googlenet": 47, "inception_v3": 107, "inception_v4": 107,
                 "inception_resnet_v2": 107, "senet154": 35, "squeezenet": 37, "densenet": 61, "convnext": 64,
                 "vit": 64, "vit_h_14": 70, "mixer": 64}
DEFAULT_SIDE = 33
# Built for one input size: position embeddings or token-mixing weights follow it.
FIXED_SIZE_FAMILIES = {"vit", "mixer"}

# timm's Inception-v3 has no auxiliary classifier.
OUR_KWARGS = {("inception_v3", "timm"): {"aux_logits": False}}

# Over 1 GMAC per image at the side above (test_input_side checks it), or over 20 s on a 2-core CPU.
SLOW = {"convnext_base", "convnext_large", "inception_resnet_v2", "inception_v4", "mixer_b16_224",
        "mixer_l16_224", "senet154", "vit_b_16", "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2"}


def input_side(name):
    return SMALLEST_SIDE.get(name, SMALLEST_SIDE.get(get_entry(name).family, DEFAULT_SIDE))


def twin_kwargs(name, source):
    """The twin built for the test's input side where the network is built for one input size."""
    if get_entry(name).family not in FIXED_SIZE_FAMILIES:
        return {}
    return {"image_size" if source == "torchvision" else "img_size": input_side(name)}


def our_kwargs(name, source):
    fixed_size = {"image_size": input_side(name)} if get_entry(name).family in FIXED_SIZE_FAMILIES else {}
    return {**fixed_size, **OUR_KWARGS.get((name, source), {})}


def build_twin(name, source):
    """The twin with our classifier: timm's ViT-L/32 and ViT-H/14 default to none (their weights
    are ImageNet-21k features)."""
    entry = get_entry(name)
    kwargs = {"num_classes": entry.num_classes, **twin_kwargs(name, source)}
    if source == "torchvision":
        import torchvision
        return torchvision.models.get_model(entry.twins[source], weights=None, **kwargs)
    timm = pytest.importorskip("timm")
    return timm.create_model(entry.twins[source], pretrained=False, **kwargs)


def randomise_constant_parameters(model):
    """Add noise to every parameter initialised (nearly) to one value — biases, norms' scales,
    zero-initialised heads and residual gains, 1e-6 layer scales — so that each of them matters
    to the logits and none is interchangeable with another."""
    with torch.no_grad():
        for p in model.parameters():
            if p.max() - p.min() < 1e-3:
                p.add_(torch.randn_like(p), alpha=0.1)


def twin_params():
    return [pytest.param(name, source, id=f"{name}-{source}",
                         marks=[pytest.mark.slow] if name in SLOW else [])
            for name, source in TWINS]


@pytest.mark.parametrize("name, source", twin_params())
def test_twin_logits(name, source):
    torch.manual_seed(0)
    side = input_side(name)
    x = torch.randn(2, 3, side, side)
    twin = build_twin(name, source)
    randomise_constant_parameters(twin)
    randomise_batchnorm(twin, torch.randn(8, 3, side, side))
    model = vz.create_model(name, **our_kwargs(name, source)).eval()
    model.load_state_dict(vz.convert_state_dict(name, twin.state_dict(), source))
    with torch.no_grad():
        expected, got = twin(x), model(x)
    scale = expected.abs().max()
    # The logits depend on the image, far above the tolerance: comparing biases alone proves little.
    assert (expected[0] - expected[1]).abs().max() > 1e-3 * scale
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted({name for name, _ in TWINS}))
def test_input_side(name):
    """Every convolution wider than 1×1 sees a 2×2 map or more, and a network over 1 GMAC per
    image at that side is marked slow."""
    side = input_side(name)
    with torch.device("meta"):
        model = vz.create_model(name, **our_kwargs(name, None)).eval()
    sides = []
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d) and max(conv.kernel_size) > 1:
            conv.register_forward_pre_hook(lambda module, args: sides.append(min(args[0].shape[-2:])))
    model(torch.empty(1, 3, side, side, device="meta"))
    assert sides and min(sides) >= 2
    assert name in SLOW or vz.count_macs(model, (3, side, side)) <= 1e9


def test_tables_name_registered_twins():
    names = {name for name, _ in TWINS}
    families = {get_entry(name).family for name in names}
    assert set(SMALLEST_SIDE) <= names | families
    assert SLOW <= names
    assert set(OUR_KWARGS) <= set(TWINS)
