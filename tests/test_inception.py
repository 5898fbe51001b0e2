"""Inception family: GoogLeNet's Table 1 layer by layer, BN-Inception's Fig. 5 widths, Reduction-A's
k, l, m, n, GoogLeNet's input transform as torchvision's, the auxiliary-loss contract and residual
scaling. Twin logits: test_twins.py."""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.profile import layer_table
from visionzoo.layers import inception as L

from conftest import randomise_batchnorm

# Table 1 of Szegedy et al. 2015 (002_*.txt of the notes): layer → (output C, H, params in K, ops in M).
# "convolution 3×3/1" is our conv2 (3×3 reduce, 1×1) + conv3. The table counts weights only, with
# K = 1024 (3a: 163,328 weights = 159.5K; 1000K for the 1024 × 1000 linear layer).
TABLE1 = {
    "conv1": (64, 112, 2.7, 34), "maxpool1": (64, 56, None, None), "conv2+conv3": (192, 56, 112, 360),
    "maxpool2": (192, 28, None, None), "inception3a": (256, 28, 159, 128),
    "inception3b": (480, 28, 380, 304), "maxpool3": (480, 14, None, None),
    "inception4a": (512, 14, 364, 73), "inception4b": (512, 14, 437, 88),
    "inception4c": (512, 14, 463, 100), "inception4d": (528, 14, 580, 119),
    "inception4e": (832, 14, 840, 170), "maxpool4": (832, 7, None, None),
    "inception5a": (832, 7, 1072, 54), "inception5b": (1024, 7, 1388, 71), "fc": (1000, None, 1000, 1),
}
# Slips in the printed table, not in the network: 4c's 463K contradicts its own 100M ops
# (463K × 14² = 93M; its filter columns give 498K, and 498K × 14² = 100M), and 5a's 1072K / 54M
# contradict its filter columns (1018K, 51M — the widths torchvision and the Caffe model use).
PARAM_ERRATA, OPS_ERRATA = {"inception4c", "inception5a"}, {"inception5a"}


@pytest.fixture(scope="module")
def googlenet_rows():
    with torch.device("meta"):
        model = vz.create_model("googlenet_paper", aux_logits=False)
    rows = {r["layer"]: r for r in layer_table(model, (3, 224, 224), depth=1)}
    conv2, conv3 = rows["conv2"], rows["conv3"]
    rows["conv2+conv3"] = {"output": conv3["output"], "params": conv2["params"] + conv3["params"],
                           "macs": conv2["macs"] + conv3["macs"]}
    return rows


@pytest.mark.parametrize("layer", TABLE1)
def test_googlenet_paper_matches_table1(googlenet_rows, layer):
    """Output size, params (±2 %, the table's figures are rounded) and ops (MACs) of every row."""
    channels, side, params_k, ops_m = TABLE1[layer]
    row = googlenet_rows[layer]
    assert row["output"] == ([channels] if side is None else [channels, side, side])
    if params_k is not None and layer not in PARAM_ERRATA:
        assert row["params"] / 1024 == pytest.approx(params_k, rel=0.02)
    if ops_m is not None and layer not in OPS_ERRATA:
        assert row["macs"] / 1e6 == pytest.approx(ops_m, rel=0.02, abs=0.5)


def test_googlenet_paper_totals_and_layout():
    """Table 1 sums to 6.8M (K = 1024, weights only) and 1.5G ops; the paper network has no BN."""
    with torch.device("meta"):
        paper = vz.create_model("googlenet_paper", aux_logits=False)
        ours = vz.create_model("googlenet", aux_logits=False)
    weights = sum(p.numel() for n, p in paper.named_parameters() if n.endswith("weight"))
    assert weights / 1024 / 1000 == pytest.approx(6.8, abs=0.05)
    assert vz.count_macs(paper, (3, 224, 224)) == pytest.approx(1.5e9, rel=0.01)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert ours.inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's layout


def test_bn_inception_fig5_widths():
    """Fig. 5: 3c and 4e halve the grid; 4c–4e are 608/608/1056 wide (the figure prints 576)."""
    with torch.device("meta"):
        model = vz.create_model("bn_inception")
    rows = {r["layer"]: r["output"] for r in layer_table(model, (3, 224, 224), depth=1)}
    expected = {"inception3a": (256, 28), "inception3b": (320, 28), "inception3c": (576, 14),
                "inception4a": (576, 14), "inception4b": (576, 14), "inception4c": (608, 14),
                "inception4d": (608, 14), "inception4e": (1056, 7), "inception5a": (1024, 7),
                "inception5b": (1024, 7)}
    for name, (channels, side) in expected.items():
        assert rows[name] == [channels, side, side], name


@pytest.mark.parametrize("cin, klmn, cout", [(384, (192, 224, 256, 384), 1024),   # Inception-v4
                                             (256, (192, 192, 256, 384), 896),    # Inception-ResNet-v1
                                             (320, (256, 256, 384, 384), 1088)])  # Inception-ResNet-v2
def test_reduction_a_table1(cin, klmn, cout):
    with torch.device("meta"):
        out = L.reduction_a(cin, *klmn)(torch.empty(1, cin, 35, 35))
    assert out.shape == (1, cout, 17, 17)


def test_residual_branch_is_scaled():
    """y = ReLU(x + s · W·concat(branches)): with s = 0 the block is ReLU(x); s scales the branch."""
    torch.manual_seed(0)
    block = L.InceptionResNetBlock(16, [(8, 1)], [(8, 1), (8, 3)], scale=0.0).eval()
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x.relu())
        branch = block.conv2d(L.Mixed.forward(block, x))
        block.scale, block.relu = 0.2, nn.Identity()
        torch.testing.assert_close(block(x), x + 0.2 * branch)


def test_googlenet_transform_input_is_torchvisions():
    """transform_input=True maps ImageNet-normalised inputs to the (x − 0.5)/0.5 scaling of the
    original Caffe weights, as torchvision's GoogLeNet does. In float64: torchvision scales with
    Python's double constants, we with float32 tensors, and the rounding would differ."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 47, 47, dtype=torch.float64)   # every convolution sees a 2×2 map or more
    twin = torchvision.models.googlenet(init_weights=True, transform_input=True).double()
    randomise_batchnorm(twin, torch.randn(8, 3, 47, 47, dtype=torch.float64))
    model = vz.create_model("googlenet", transform_input=True).double().eval()
    model.load_state_dict(vz.convert_state_dict("googlenet", twin.state_dict(), "torchvision"))
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x))


@pytest.mark.parametrize("name, heads, weight, side", [("googlenet", 2, 0.3, 64),
                                                       ("googlenet_paper", 2, 0.3, 64),
                                                       ("inception_v3", 1, 0.4, 75)])
def test_aux_loss_contract(name, heads, weight, side):
    """Training: (logits, [aux…]) and loss = CE + aux_weight · Σ CE(aux); eval: logits only.
    Small inputs, so the heads pool adaptively (the 28×28 case is in test_zoo)."""
    torch.manual_seed(0)
    model = vz.create_model(name, num_classes=10)
    assert model.aux_weight == weight
    x, y = torch.randn(2, 3, side, side), torch.tensor([1, 2])
    logits, aux = model.train()(x)
    assert logits.shape == (2, 10) and len(aux) == heads and all(a.shape == (2, 10) for a in aux)
    ce = nn.functional.cross_entropy
    loss = ce(logits, y) + weight * sum(ce(a, y) for a in aux)
    loss.backward()
    aux_params = [p for n, p in model.named_parameters() if n.startswith(("aux", "AuxLogits"))]
    assert aux_params and all(p.grad is not None for p in aux_params)
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    model.reset_classifier(5)
    assert all(a.shape == (2, 5) for a in model.train()(x)[1])
    no_aux = vz.create_model(name, num_classes=10, aux_logits=False)
    assert isinstance(no_aux.train()(x), torch.Tensor)
    assert not any(n.startswith(("aux", "AuxLogits")) for n, _ in no_aux.named_parameters())


@pytest.mark.parametrize("name, grid", [("googlenet", 7), ("bn_inception", 7), ("inception_v3", 6),
                                        ("inception_v4", 6), ("inception_resnet_v1", 6),
                                        ("inception_resnet_v2", 6)])
def test_small_input_stem_keeps_the_grid(name, grid):
    """28×28 meets the modules at 28×28: GoogLeNet ends at Table 1's 7×7, the 299-px nets at 6×6."""
    with torch.device("meta"):
        model = vz.create_model(name, in_chans=1, image_size=28).eval()
        assert model.forward_features(torch.empty(1, 1, 28, 28)).shape[-2:] == (grid, grid)



@pytest.mark.parametrize("name", ["v3_a", "v3_c", "v3_e", "v3_aux", "v4_a", "v4_c"])
def test_inception_modules_equal_their_torchvision_and_timm_twins(name):
    """Inception-v3's modules A (Fig. 5: average-pool branch), C (Fig. 6), E (Fig. 7: the 1×3 output before
    the 3×1) and the auxiliary head (5×5/3 average pool of the 17×17 grid), and Inception-v4's A and C
    (Figs. 4, 6: average pools that do not count the padding), each loaded with its twin's weights."""
    timm_v4 = pytest.importorskip("timm.models.inception_v4")
    tv = pytest.importorskip("torchvision.models.inception")
    ours = L
    pairs = {"v3_a": (lambda: ours.InceptionV3A(192, 32), lambda: tv.InceptionA(192, 32), (192, 5)),
             "v3_c": (lambda: ours.InceptionV3C(768, 128), lambda: tv.InceptionC(768, 128), (768, 5)),
             "v3_e": (lambda: ours.InceptionV3E(1280), lambda: tv.InceptionE(1280), (1280, 3)),
             "v3_aux": (lambda: ours.InceptionV3Aux(768, 10), lambda: tv.InceptionAux(768, 10), (768, 17)),
             "v4_a": (ours.inception_v4_a, timm_v4.InceptionA, (384, 5)),
             "v4_c": (ours.InceptionV4C, timm_v4.InceptionC, (1536, 3))}
    make_ours, make_twin, (channels, size) = pairs[name]
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, channels, size, size, generator=generator, dtype=torch.float64)
    twin = make_twin().double()
    for norm in twin.modules():  # timm's blocks default to ε = 1e-5; its inception_v4 model builds them with 1e-3
        if isinstance(norm, nn.BatchNorm2d):
            norm.eps = 1e-3
    randomise_batchnorm(twin, x)
    model = make_ours().double().eval()
    model.load_state_dict(twin.eval().state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x))


def test_googlenet_auxiliary_head_is_section_5s():
    """GoogLeNet Sec. 5: a 5×5/3 average pool (4×4 from the 14×14 grid, not an adaptive pool), 1×1 conv 128,
    FC 1024, dropout 70 %."""
    x = torch.randn(1, 2, 14, 14, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(L.aux_pool(x, 4), torch.nn.functional.avg_pool2d(x, 5, 3))
    head = L.GoogLeNetAux(512, 10)
    assert head.dropout.p == 0.7 and head.conv.conv.out_channels == 128 and head.fc1.out_features == 1024
