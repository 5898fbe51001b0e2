"""Every registered network: card vs paper, build, forward/backward, the shared interface, seeded init."""
import pytest
import torch

import visionzoo as vz
from visionzoo.registry import verify_card

from conftest import logits_of

MODELS = vz.list_models()
# Above this many forward MACs the paper-size pass is forward only (CPU time).
BACKWARD_MAC_LIMIT = 1e9


@pytest.mark.parametrize("name", MODELS)
def test_card_matches_paper(name):
    card = vz.model_card(name)
    for key in ("name", "family", "paper", "year", "input_size", "params", "macs",
                "paper_params", "paper_macs"):
        assert key in card
    assert card["params"] > 0 and card["macs"] > 0
    ok, why = verify_card(card)
    assert ok, f"{name}: {why}"


@pytest.mark.parametrize("name", MODELS)
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


@pytest.mark.parametrize("name", MODELS)
def test_small_grey_input_interface_and_seeded_init(name):
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        model = vz.create_model(name, num_classes=10, in_chans=1, image_size=28)
        states.append(model.state_dict())
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
        pre = model.forward_head(features, pre_logits=True)
        model.reset_classifier(5)
        assert model(x).shape == (3, 5)
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pre)
        model.reset_classifier(4)   # a removed head can be put back
        assert model(x).shape == (3, 4)


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


def _trainer_cases() -> list[str]:
    """The cheapest network of each family, plus the cheapest of each family's networks with their
    own objective or aux heads.

    Every network's 28×28×1 forward/backward is tested above; through the whole trainer it is
    enough to cover each family and each way a network can shape the loss.
    """
    cheapest: dict[tuple[str, bool], tuple[int, str]] = {}
    for name in MODELS:
        card = vz.model_card(name)
        with torch.device("meta"):
            model = vz.create_model(name)
        key = (card["family"], hasattr(model, "training_loss") or hasattr(model, "aux_weight"))
        if card["macs"] < cheapest.get(key, (float("inf"), ""))[0]:
            cheapest[key] = (card["macs"], name)
    return sorted(name for _, name in cheapest.values())


@pytest.mark.parametrize("name", _trainer_cases())
def test_trains_through_the_trainer_on_small_grey_images(name, tmp_path):
    """`visionzoo train --model NAME` works (two steps on 28×28×1 fake data, then val and test)."""
    from visionzoo.engine.trainer import train
    summary = train(model=name, data="fake", epochs=1, batch_size=8, train_limit=16, val_size=16,
                    quiet=True, out=str(tmp_path), eval_batch_size=100)
    assert summary["test_n"] == 200 and 0 <= summary["test_top1"] <= 1
    assert (tmp_path / "model.safetensors").exists()
