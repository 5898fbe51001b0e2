"""AlexNet, ZFNet, VGG and NiN: their defining properties, and a torchvision AlexNet file loaded by
`create_model(pretrained=...)`. Twin logits: test_twins.py."""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.layers.lrn import LocalResponseNorm


def _convs(model):
    return [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]


# --- Local response normalisation -------------------------------------------------------------

def test_lrn_equals_torch_with_alpha_times_n():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 7) * 40
    for size in (5, 3):
        ours = LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=2.0)(x)
        theirs = nn.LocalResponseNorm(size, alpha=size * 1e-4, beta=0.75, k=2.0)(x)
        torch.testing.assert_close(ours, theirs)


def test_lrn_formula_by_hand():
    """b_i = a_i / (k + α Σ_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j²)^β, AlexNet's k, n, α, β."""
    torch.manual_seed(0)
    a = torch.randn(1, 7, 2, 3, dtype=torch.float64) * 50
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    channels = a.shape[1]
    expected = torch.empty_like(a)
    for i in range(channels):
        window = a[:, max(0, i - n // 2):min(channels - 1, i + n // 2) + 1]
        expected[:, i] = a[:, i] / (k + alpha * window.square().sum(1)) ** beta
    torch.testing.assert_close(LocalResponseNorm()(a), expected)


# --- AlexNet and ZFNet ---------------------------------------------------------------------------

def test_alexnet_original_two_towers_as_groups():
    model = vz.create_model("alexnet_original")
    convs = _convs(model)
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert tuple(convs[1].weight.shape) == (256, 48, 5, 5)
    assert tuple(convs[3].weight.shape) == (384, 192, 3, 3)
    assert tuple(convs[4].weight.shape) == (256, 192, 3, 3)
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [f.out_features for f in fcs] == [4096, 4096, 1000]
    # ReLU → LRN → overlapping 3×3/2 max-pool after conv1 and conv2.
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d",
                         "Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert all((p.kernel_size, p.stride) == (3, 2) for p in pools) and len(pools) == 3
    assert all(isinstance(m, nn.Dropout) and m.p == 0.5 for m in (model.classifier[2], model.classifier[5]))


def test_alexnet_original_neurons_per_layer_at_227():
    """Fig. 2: 186,624–64,896–64,896–43,264 neurons in conv2–conv5 (conv1: 55×55×96)."""
    model = vz.create_model("alexnet_original").eval()
    sizes = []
    for conv in _convs(model):
        conv.register_forward_hook(lambda m, i, o: sizes.append(o[0].numel()))
    with torch.no_grad():
        model(torch.zeros(1, 3, 227, 227))
    assert sizes == [55 * 55 * 96, 186_624, 64_896, 64_896, 43_264]


def test_alexnet_paper_init():
    torch.manual_seed(0)
    model = vz.create_model("alexnet_original")
    layers = _convs(model) + [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [float(layer.bias.detach().mean()) for layer in layers] == [0, 1, 0, 1, 1, 1, 1, 0]
    assert all(abs(float(layer.weight.detach().std()) - 0.01) < 1e-3 for layer in layers)


def test_zfnet_map_sizes():
    """Fig. 3: 7×7/2 conv1 → 110, pool → 55, 5×5/2 conv2 → 26, pool → 13, pool → 6."""
    model = vz.create_model("zfnet").eval()
    assert (_convs(model)[0].kernel_size, _convs(model)[0].stride) == ((7, 7), (2, 2))
    sides, x = [], torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                sides.append(x.shape[-1])
    assert sides == [110, 55, 26, 13, 13, 13, 13, 6]
    assert sum(isinstance(m, LocalResponseNorm) for m in model.features) == 2


@pytest.mark.parametrize("name", ["alexnet", "alexnet_original", "zfnet", "vgg11", "vgg16_c"])
@pytest.mark.parametrize("size", [28, 32])
def test_small_input_keeps_a_real_map(name, size):
    model = vz.create_model(name, num_classes=10, in_chans=1, image_size=size).eval()
    with torch.no_grad():
        features = model.forward_features(torch.zeros(1, 1, size, size))
    side = features.shape[-1]
    assert side >= 2
    assert model.avgpool.output_size <= side  # pooled down (or kept), never blown up


# --- VGG -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,layers,conv1", [("vgg11", 11, 0), ("vgg11_lrn", 11, 0), ("vgg13", 13, 0),
                                               ("vgg16_c", 16, 3), ("vgg16", 16, 0), ("vgg19", 19, 0)])
def test_vgg_table1_weight_layers(name, layers, conv1):
    with torch.device("meta"):
        model = vz.create_model(name)
    convs = _convs(model)
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert len(convs) + len(fcs) == layers
    assert sum(c.kernel_size == (1, 1) for c in convs) == conv1
    assert all(c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    assert isinstance(model.features[2], LocalResponseNorm) == (name == "vgg11_lrn")


def test_vgg_dense_evaluation():
    torch.manual_seed(0)
    model = vz.create_model("vgg11", num_classes=10).eval()
    dense = model.dense().eval()
    assert not any(isinstance(m, nn.Linear) for m in dense.modules())
    assert [c.kernel_size for c in dense.classifier if isinstance(c, nn.Conv2d)] == [(7, 7), (1, 1), (1, 1)]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (dense(x) - model(x)).abs().max() <= 1e-4
        for h, w in ((256, 256), (384, 320)):
            scores = dense(torch.randn(1, 3, h, w))
            assert scores.shape == (1, 10) and torch.isfinite(scores).all()
            score_map = dense.classifier(dense.features(torch.zeros(1, 3, h, w)))
            assert score_map.shape[-2:] == (h // 32 - 6, w // 32 - 6)


# --- Network in Network --------------------------------------------------------------------------

@pytest.mark.parametrize("name,blocks,classes", [("nin_cifar10", 3, 10), ("nin_imagenet", 4, 1000)])
def test_nin_has_no_linear_layer(name, blocks, classes):
    with torch.device("meta"):
        model = vz.create_model(name)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    mlpconvs = [m for m in model.features if isinstance(m, nn.Sequential)]
    assert len(mlpconvs) == blocks
    assert all(c.kernel_size == (1, 1) for block in mlpconvs for c in block[2::2])
    assert model.classifier.kernel_size == (1, 1) and model.classifier.out_channels == classes


def test_nin_cifar10_configuration():
    model = vz.create_model("nin_cifar10").eval()
    mlpconvs = [m for m in model.features if isinstance(m, nn.Sequential)]
    assert [b[0].kernel_size[0] for b in mlpconvs] == [5, 5, 3]
    assert [b[0].out_channels for b in mlpconvs] == [192, 192, 192]
    assert sum(isinstance(m, nn.Dropout) for m in model.features) == 2
    with torch.no_grad():
        features = model.forward_features(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 192, 8, 8)


# --- Weights of the torchvision twin ------------------------------------------------------------

def test_pretrained_torchvision_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(num_classes=10).eval()
    path = tmp_path / "alexnet.pth"
    torch.save(theirs.state_dict(), path)
    ours = vz.create_model("alexnet", num_classes=10, pretrained=str(path)).eval()
    x = torch.randn(2, 3, 63, 63)   # the smallest input every AlexNet layer sees as a 2×2 map or more
    with torch.no_grad():
        expected = theirs(x)
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-5 * expected.abs().max())
