"""Every registered network: card vs paper, build, forward/backward, the shared interface, seeded init,
its task and pretrained_cfg; the registry's tasks and its separation of card fields from builder keywords.

Parametrised by name only: cards and models are built inside the tests, so collecting costs nothing.
"""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.registry import NORMALISATION, TASKS, get_entry, parse_figure, register_model, verify_card

from conftest import logits_of, smallest_of_each_family

MODELS = vz.list_models()
# The classifier interface (logits (N, classes), forward_features/forward_head, reset_classifier, the
# classification trainer); other tasks' networks are tested in their own files (test_unet.py).
CLASSIFIERS = vz.list_models(task="classification")
# Above this many forward MACs the paper-size pass is forward only (CPU time), and marked slow.
BACKWARD_MAC_LIMIT = 1e9
# Over 20 s at 28×28 on a 2-core CPU (measured 36 s; senet154 18–55 s, with the machine loaded).
SLOW_SMALL_GREY = {"senet154", "vit_h_14"}


# The seeded initialisation (same seed → same weights, another seed → others) is code a family shares:
# the small-grey test builds each family's smallest member three times to check it, the others once.
SEEDED_INIT = set(smallest_of_each_family(CLASSIFIERS))


def _slow_if(name: str, slow: bool):
    return pytest.param(name, marks=pytest.mark.slow) if slow else name


def _over_a_gmac(name: str) -> bool:
    """By the paper's own figure, read from the entry without building the network."""
    figure = parse_figure(get_entry(name).paper_macs)
    return figure is not None and figure[0] > BACKWARD_MAC_LIMIT


@pytest.mark.parametrize("name", MODELS)
def test_card_matches_paper(name):
    card = vz.model_card(name)
    for key in ("name", "family", "paper", "year", "input_size", "params", "macs",
                "paper_params", "paper_macs"):
        assert key in card
    assert card["task"] == get_entry(name).task
    assert card["params"] > 0 and card["macs"] > 0
    ok, why = verify_card(card)
    assert ok, f"{name}: {why}"


@pytest.mark.parametrize("name", [_slow_if(name, _over_a_gmac(name)) for name in CLASSIFIERS])
def test_paper_size_forward_backward(name):
    card = vz.model_card(name)
    torch.manual_seed(0)
    model = vz.create_model(name)
    x = torch.randn(2, *card["input_size"])
    model.train()  # batch statistics: untrained running statistics overflow in 1000-layer nets
    if card["macs"] <= BACKWARD_MAC_LIMIT:
        out = logits_of(model(x))
        out.float().square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        with torch.no_grad():
            out = logits_of(model(x))
    assert out.shape == (len(x), card["num_classes"])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [_slow_if(name, name in SLOW_SMALL_GREY) for name in CLASSIFIERS])
def test_small_grey_input_interface_and_seeded_init(name):
    states = []
    for seed in (0, 0, 1) if name in SEEDED_INIT else (0,):
        torch.manual_seed(seed)
        model = vz.create_model(name, num_classes=10, in_chans=1, image_size=28)
        states.append(model.state_dict())
    if name in SEEDED_INIT:
        floating = [k for k, v in states[0].items() if v.is_floating_point() and v.numel() > 1]
        assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
        assert any(not torch.equal(states[0][k], states[2][k]) for k in floating)
        model.load_state_dict(states[0])
    x = torch.randn(3, 1, 28, 28)
    model.train()
    out = logits_of(model(x))
    assert out.shape == (3, 10)
    out.float().logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.get_classifier().parameters())
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.dim() >= 2 and features.shape[0] == 3
        torch.testing.assert_close(model.forward_head(features), model(x))
        # forward = forward_head ∘ forward_features holds (above): the head alone shows what reset_classifier did
        pre = model.forward_head(features, pre_logits=True)
        model.reset_classifier(5)
        assert model.forward_head(features).shape == (3, 5)
        model.reset_classifier(0)
        torch.testing.assert_close(model.forward_head(features), pre)
        model.reset_classifier(4)   # a removed head can be put back
        assert model.forward_head(features).shape == (3, 4)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="resnet18"):
        vz.create_model("resnet19")


def test_list_models_pattern():
    assert vz.list_models("resnet*") == [n for n in MODELS if n.startswith("resnet")]


def test_count_macs_against_torchvision():
    """The notes' and torchvision's published MACs: resnet18 1.82 G, alexnet 0.71 G, vgg16 15.5 G."""
    import torchvision
    for name, macs in (("resnet18", 1.82e9), ("alexnet", 0.71e9), ("vgg16", 15.5e9)):
        tv = getattr(torchvision.models, name)()
        assert abs(vz.count_macs(tv, (3, 224, 224)) - macs) / macs < 0.01, name



def test_count_macs_of_a_vision_transformer_by_hand_and_as_on_meta():
    """Every block: QKV, projection and MLP 12·T·D² (mlp_dim 4D), and attention's QKᵀ and AV 2·T²·D, which
    the fused CPU attention kernel hid from the counter on a real model."""
    dim, classes = 48, 10
    kwargs = dict(image_size=32, embed_dim=dim, depth=2, num_heads=3, mlp_dim=4 * dim, num_classes=classes)
    model = vz.create_model("vit_b_16", **kwargs)
    patch = model.patch_embed.proj.kernel_size[0]       # the small-input patch this size gets
    patches = (32 // patch) ** 2
    tokens = patches + 1                                # and the class token
    patch_embedding = patches * dim * 3 * patch * patch
    block = 12 * tokens * dim ** 2 + 2 * tokens ** 2 * dim
    expected = patch_embedding + 2 * block + dim * classes   # the head reads the class token
    with torch.device("meta"):
        on_meta = vz.count_macs(vz.create_model("vit_b_16", **kwargs), (3, 32, 32))
    assert vz.count_macs(model, (3, 32, 32)) == on_meta == expected


FAMILIES = sorted({get_entry(name).family for name in CLASSIFIERS})


def _trainer_cases(family: str) -> list[str]:
    """The cheapest network of the family, and the cheapest of its networks with their own
    objective or aux heads.

    Every network's 28×28×1 forward/backward is tested above; through the whole trainer it is
    enough to cover each family and each way a network can shape the loss.
    """
    cheapest: dict[bool, tuple[int, str]] = {}
    for name in (n for n in CLASSIFIERS if get_entry(n).family == family):
        macs = vz.model_card(name)["macs"]
        with torch.device("meta"):
            model = vz.create_model(name)
        own_loss = hasattr(model, "training_loss") or hasattr(model, "aux_weight")
        if macs < cheapest.get(own_loss, (float("inf"), ""))[0]:
            cheapest[own_loss] = (macs, name)
    return sorted(name for _, name in cheapest.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_trains_through_the_trainer_on_small_grey_images(family, tmp_path):
    """`visionzoo train --model NAME` works (two steps on 28×28×1 fake data, then val and test)."""
    from visionzoo.engine.trainer import train
    for name in _trainer_cases(family):
        out = tmp_path / name
        summary = train(model=name, data="fake", epochs=1, batch_size=8, train_limit=16, val_size=16,
                        quiet=True, out=str(out), eval_batch_size=100)
        assert summary["test_n"] == 200 and 0 <= summary["test_top1"] <= 1, name
        assert (out / "model.safetensors").exists(), name


def test_every_network_has_one_task_and_list_models_filters_by_it():
    by_task = {task: vz.list_models(task=task) for task in TASKS}
    assert sorted(sum(by_task.values(), [])) == MODELS
    assert {"resnet50", "vit_b_16", "lenet"} <= set(by_task["classification"])
    assert vz.list_models("resnet*", task="classification") == [
        n for n in by_task["classification"] if n.startswith("resnet")]
    with pytest.raises(UsageError, match="classification, detection, segmentation"):
        vz.list_models(task="colouring")
    with pytest.raises(UsageError, match="colouring"):
        register_model("colourer", family="x", paper="x", year=2024, task="colouring")


def test_card_fields_and_builder_keywords_cannot_be_confused():
    def takes_task(num_classes=10, in_chans=3, task="x"):
        raise AssertionError("never built")

    def takes_width(num_classes=10, in_chans=3, width=1):
        raise AssertionError("never built")

    with pytest.raises(RuntimeError, match="task"):
        register_model("zoo_test_shadowed", family="x", paper="x", year=2024)(takes_task)
    with pytest.raises(RuntimeError, match="widht"):
        register_model("zoo_test_typo", family="x", paper="x", year=2024, widht=2)(takes_width)
    assert vz.list_models("zoo_test_*") == []


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_pretrained_cfg_names_the_input_conv_and_the_classifier(name):
    """timm's keys: first_conv is the Conv2d reading the image, classifier the module that
    get_classifier returns; input size, classes and normalisation are those the model is built for."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = vz.create_model(name)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg["input_size"] == entry.input_size and cfg["num_classes"] == entry.num_classes
    assert (cfg["mean"], cfg["std"]) == NORMALISATION[entry.dataset or "imagenet"]
    if cfg["first_conv"] is None:   # a fully connected network
        assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    else:
        first_conv = model.get_submodule(cfg["first_conv"])
        assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == entry.input_size[0]
    classifier = model.get_classifier()
    expected = list(classifier) if isinstance(classifier, nn.ModuleList) else [classifier]   # MCDNN's columns
    named = [model.get_submodule(n) for n in
             (cfg["classifier"] if isinstance(cfg["classifier"], tuple) else (cfg["classifier"],))]
    assert len(named) == len(expected) and all(a is b for a, b in zip(named, expected))


def test_pretrained_cfg_follows_the_built_variant():
    cfg = vz.create_model("resnet18", num_classes=10, in_chans=1, image_size=28).pretrained_cfg
    assert cfg["input_size"] == (1, 28, 28) and cfg["num_classes"] == 10
    grey_mean = sum(NORMALISATION["imagenet"][0]) / 3
    assert cfg["mean"] == (grey_mean,) and len(cfg["std"]) == 1
    assert vz.create_model("resnet20_cifar").pretrained_cfg["mean"] == NORMALISATION["cifar10"][0]
