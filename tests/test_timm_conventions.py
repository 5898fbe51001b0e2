"""timm's create_model conventions (registry.create_model, weights.load_pretrained, cli --version):
the pretrained flag, keywords refused before building, img_size / drop_rate / drop_path_rate /
global_pool, the adaptation of a weights file to other classes and input channels (against timm's
own adapt_input_conv), and the pretrained_cfg keys."""
import inspect
import re
import warnings

import pytest
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv as timm_adapt_input_conv
from torch import nn

import visionzoo as vz
from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.layers.drop import DropPath
from visionzoo.registry import accepted_keywords, get_entry
from visionzoo.weights import adapt_input_conv

CLASSIFIERS = vz.list_models(task="classification")


def test_pretrained_false_is_none_and_true_is_refused_in_one_line():
    torch.manual_seed(0)
    plain = vz.create_model("lenet5")
    torch.manual_seed(0)
    flagged = vz.create_model("lenet5", pretrained=False)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), flagged.state_dict().values()))
    with pytest.raises(UsageError, match="hosts no weights") as caught:
        vz.create_model("lenet5", pretrained=True)
    assert "\n" not in str(caught.value) and "pretrained=" in str(caught.value)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_an_unknown_keyword_is_refused_up_front_naming_the_model(name):
    with pytest.raises(UsageError, match=rf"^{name} takes no keyword bogus_option; it takes .*num_classes"):
        vz.create_model(name, bogus_option=1)


@pytest.mark.parametrize("name", vz.list_models())
def test_every_builders_keyword_chain_can_be_followed(name):
    entry = get_entry(name)
    accepted = accepted_keywords(name)
    own = {n for n, p in inspect.signature(entry.builder).parameters.items() if p.kind is not p.VAR_KEYWORD}
    assert own <= accepted
    assert set(entry.defaults) <= accepted


def test_a_keyword_the_chain_fixes_itself_is_refused():
    # cifar_resnet passes stem="small" to ResNet: stem= from the caller would be given twice.
    assert "stem" in accepted_keywords("resnet18") and "stem" not in accepted_keywords("resnet20_cifar")
    with pytest.raises(UsageError, match="resnet20_cifar takes no keyword stem"):
        vz.create_model("resnet20_cifar", stem="imagenet")


def test_keywords_reached_through_a_block_depend_on_the_block():
    # Pre-activation blocks take kernels and dropout; post-activation ones take groups.
    assert {"kernels", "dropout"} <= accepted_keywords("preact_resnet18") and "groups" not in \
        accepted_keywords("preact_resnet18")
    assert "groups" in accepted_keywords("resnet18") and "kernels" not in accepted_keywords("resnet18")


def test_img_size_is_image_size():
    model = vz.create_model("resnet18", num_classes=10, in_chans=1, img_size=28)
    assert model.conv1.kernel_size == (3, 3)        # the small-input stem
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)
    assert vz.create_model("lenet", img_size=28).pretrained_cfg["input_size"] == (1, 28, 28)
    with pytest.raises(UsageError, match="img_size or image_size"):
        vz.create_model("resnet18", img_size=28, image_size=28)


@pytest.mark.parametrize("name, dropout_of", [
    ("resnet20_cifar", lambda m: m.head_drop),
    ("vit_tiny_patch4_28", lambda m: m.head_drop),
    ("mobilenet_v2", lambda m: m.classifier[0]),
    ("nf_resnet50", lambda m: m.head_drop),
])
def test_drop_rate_is_the_dropout_before_the_classifier(name, dropout_of):
    torch.manual_seed(0)
    model = vz.create_model(name, num_classes=4, in_chans=1, image_size=28, drop_rate=0.5).train()
    dropout = dropout_of(model)
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.5
    features = model.forward_features(torch.rand(2, 1, 28, 28))
    pre = model.forward_head(features, pre_logits=True)
    dropped = (pre == 0).float().mean()
    assert 0.3 < dropped < 0.7


def test_drop_rate_is_refused_where_no_dropout_precedes_the_classifier():
    with pytest.raises(UsageError, match="^lenet has no dropout right before its classifier"):
        vz.create_model("lenet", drop_rate=0.2)
    with pytest.raises(UsageError, match="drop_rate=1.5"):
        vz.create_model("resnet20_cifar", drop_rate=1.5)


def test_drop_path_rate_is_stochastic_depth_where_the_family_has_it():
    model = vz.create_model("resnet20_cifar", drop_path_rate=0.2)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates[-1] == pytest.approx(0.2) and rates[0] < rates[-1]
    with pytest.raises(UsageError, match="^vgg11 has no stochastic depth"):
        vz.create_model("vgg11", drop_path_rate=0.1)


def test_global_pool_max_avg_and_none():
    torch.manual_seed(0)
    model = vz.create_model("resnet20_cifar", global_pool="max").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(model(x), model.fc(features.amax((2, 3))))
    model.global_pool = "avg"
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.fc(features.mean((2, 3))))
    unpooled = vz.create_model("resnet20_cifar", global_pool="", num_classes=0).eval()
    with torch.no_grad():
        assert unpooled(x).shape == (2, 64, 8, 8)
    with pytest.raises(UsageError, match="num_classes=0"):
        vz.create_model("resnet20_cifar", global_pool="")
    with pytest.raises(UsageError, match="choose"):
        vz.create_model("resnet20_cifar", global_pool="avgmax")
    with pytest.raises(UsageError, match="^vit_tiny_patch4_28's head is not global average pooling"):
        vz.create_model("vit_tiny_patch4_28", global_pool="max")


@pytest.mark.parametrize("in_chans", [1, 2, 4, 7])
def test_adapt_input_conv_is_timms(in_chans):
    weight = torch.randn(8, 3, 5, 5)
    torch.testing.assert_close(adapt_input_conv(weight, in_chans), timm_adapt_input_conv(in_chans, weight.clone()))


def test_adapt_input_conv_refuses_a_first_conv_that_is_not_rgb():
    with pytest.raises(UsageError, match="only an RGB"):
        adapt_input_conv(torch.randn(8, 2, 3, 3), 1)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("in_chans", [1, 3, 5])
def test_a_file_for_other_classes_and_channels_is_adapted_as_timm_does(tmp_path, suffix, in_chans):
    torch.manual_seed(0)
    source = vz.create_model("resnet20_cifar", num_classes=10)
    state = source.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(1)
    fresh = vz.create_model("resnet20_cifar", num_classes=4, in_chans=in_chans)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(1)
        model = vz.create_model("resnet20_cifar", num_classes=4, in_chans=in_chans, pretrained=str(path))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "classifier fc replaced" in messages[0]
    assert ("adapted from 3 to" in messages[0]) == (in_chans != 3)
    loaded = model.state_dict()
    torch.testing.assert_close(loaded["conv1.weight"], timm_adapt_input_conv(in_chans, state["conv1.weight"].clone()))
    torch.testing.assert_close(loaded["fc.weight"], fresh.state_dict()["fc.weight"])
    for key in state:
        if not key.startswith(("fc.", "conv1.")):
            assert torch.equal(loaded[key], state[key]), key


def test_a_file_differing_elsewhere_is_still_refused(tmp_path):
    state = vz.create_model("resnet20_cifar").state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(16, 16, 1, 1)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(UsageError, match="does not fit resnet20_cifar"):
        vz.create_model("resnet20_cifar", num_classes=4, pretrained=str(path))


def test_the_adaptation_reads_a_twins_file(tmp_path):
    """A torchvision state_dict (converted names) for a grey, 10-class ViT."""
    torchvision = pytest.importorskip("torchvision")
    twin = torchvision.models.VisionTransformer(28, 4, 2, 2, 16, 32, num_classes=7)
    path = tmp_path / "twin.pth"
    torch.save(twin.state_dict(), path)
    with pytest.warns(UserWarning, match="first convolution patch_embed.proj adapted from 3 to 1"):
        model = vz.create_model("vit_b_16", image_size=28, num_classes=10, in_chans=1, pretrained=str(path),
                                embed_dim=16, depth=2, num_heads=2, mlp_dim=32)
    torch.testing.assert_close(model.patch_embed.proj.weight, twin.conv_proj.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.blocks[1].mlp.fc2.weight, twin.encoder.layers[1].mlp[3].weight)


@pytest.mark.parametrize("name", ["resnet18", "vit_s_16", "resnet20_cifar", "lenet5"])
def test_pretrained_cfg_has_timms_keys(name):
    cfg = vz.create_model(name).pretrained_cfg
    for key in ("mean", "std", "input_size", "crop_pct", "interpolation", "first_conv", "classifier",
                "num_classes", "fixed_input_size"):
        assert key in cfg, key
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]
    assert cfg["interpolation"] in ("bilinear", "bicubic")
    # Small data sets are used uncropped; ImageNet's evaluation centre-crops 87.5 %.
    assert cfg["crop_pct"] == (1.0 if get_entry(name).dataset else 0.875)


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"visionzoo {re.escape(vz.__version__)} \(torch {re.escape(torch.__version__)}\)", line)


def test_without_readable_source_the_builders_own_refusal_is_translated(monkeypatch):
    import visionzoo.registry as registry

    def unreadable(name, kwargs=None):
        raise OSError("could not get source code")
    monkeypatch.setattr(registry, "accepted_keywords", unreadable)
    with pytest.raises(UsageError, match="^resnet20_cifar takes no keyword bogus_option$"):
        vz.create_model("resnet20_cifar", bogus_option=1)
    assert vz.create_model("resnet20_cifar", num_classes=3, drop_path_rate=0.1).fc.out_features == 3
