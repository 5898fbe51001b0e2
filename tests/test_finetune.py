"""Transfer learning: weights carried over, head replaced, frozen backbone untouched by a step."""
import pytest
import torch

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.engine.finetune import freeze_backbone, load_for_finetuning


def test_head_is_replaced_when_the_number_of_classes_differs(tmp_path):
    torch.manual_seed(0)
    source = vz.create_model("lenet", num_classes=5)
    torch.save(source.state_dict(), tmp_path / "source.pth")
    target = vz.create_model("lenet", num_classes=10)
    assert load_for_finetuning(target, "lenet", tmp_path / "source.pth") == 5
    head = target.classifier_name
    for key, value in target.state_dict().items():
        if key.startswith(head):
            assert value.shape[0] == 10
        else:
            assert torch.equal(value, source.state_dict()[key])


def test_twin_weights_are_converted(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(1)
    twin = torchvision.models.shufflenet_v2_x0_5(num_classes=7)
    torch.save(twin.state_dict(), tmp_path / "twin.pth")
    target = vz.create_model("shufflenet_v2_x0_5", num_classes=3)
    assert load_for_finetuning(target, "shufflenet_v2_x0_5", tmp_path / "twin.pth") == 7
    assert torch.equal(target.conv1[0].weight, twin.conv1[0].weight) and target.fc.out_features == 3


def test_weights_of_another_network_are_refused(tmp_path):
    torch.save(vz.create_model("highway_fc").state_dict(), tmp_path / "other.pth")
    with pytest.raises(UsageError, match="classifier|does not fit"):
        load_for_finetuning(vz.create_model("lenet"), "lenet", tmp_path / "other.pth")


def test_weights_of_another_class_count_load_with_a_fresh_classifier_as_timm_does(tmp_path):
    from safetensors.torch import save_file
    source = vz.create_model("lenet5", num_classes=10).state_dict()
    save_file(source, str(tmp_path / "ten.safetensors"))
    with pytest.warns(UserWarning, match="classifier .* replaced"):
        model = vz.create_model("lenet5", num_classes=3, pretrained=str(tmp_path / "ten.safetensors"))
    head = model.pretrained_cfg["classifier"]
    for key, value in model.state_dict().items():
        if not key.startswith(f"{head}."):
            assert torch.equal(value, source[key]), key
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_freeze_backbone_leaves_backbone_weights_and_bn_statistics_unchanged_after_a_step():
    torch.manual_seed(2)
    model = vz.create_model("resnet9_slim", num_classes=10, in_chans=1, image_size=16)
    freeze_backbone(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.get_classifier().parameters()}
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 16, 16)), torch.arange(8))
    loss.backward()
    optimizer.step()
    head = model.classifier_name
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(head) for k in changed)
    assert any("running_mean" in k for k in before)   # the network does have BN statistics to protect


# ImageNet weights onto small grey images (issue 28, item 2)

def _imagenet_resnet18_file(tmp_path):
    import torchvision
    torch.manual_seed(0)
    path = tmp_path / "tv_resnet18.pth"
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("stem", ["keep", "map"])
def test_imagenet_weights_fine_tune_onto_small_grey_images(tmp_path, stem):
    from visionzoo.engine.trainer import TrainConfig, Trainer
    from visionzoo.weights import adapt_input_conv, resize_kernel
    path, state = _imagenet_resnet18_file(tmp_path)
    cfg = TrainConfig(model="resnet18", data="digits", image_size=32, finetune=str(path), finetune_stem=stem,
                      epochs=1, batch_size=32, train_limit=64, val_size=32, quiet=True, device="cpu")
    with pytest.warns(UserWarning, match="adapted from 3 to 1 input channels"):
        trainer = Trainer(cfg)
    conv1 = trainer.model.state_dict()["conv1.weight"]
    grey = adapt_input_conv(state["conv1.weight"], 1)
    expected = grey if stem == "keep" else resize_kernel(grey, (3, 3))
    assert conv1.shape == expected.shape == ((64, 1, 7, 7) if stem == "keep" else (64, 1, 3, 3))
    torch.testing.assert_close(conv1.contiguous(), expected)
    torch.testing.assert_close(trainer.model.state_dict()["layer1.0.conv1.weight"].contiguous(),
                               state["layer1.0.conv1.weight"])
    assert trainer.model.get_classifier().out_features == 10


def test_resize_kernel_keeps_a_constant_filters_response():
    from visionzoo.weights import resize_kernel
    kernel = torch.full((2, 1, 7, 7), 0.5)
    resized = resize_kernel(kernel, (3, 3))
    torch.testing.assert_close(resized.sum((2, 3)), kernel.sum((2, 3)))
    torch.testing.assert_close(resized, torch.full((2, 1, 3, 3), 0.5 * 49 / 9))


def test_a_mismatched_stem_names_the_option(tmp_path):
    from visionzoo.weights import load_pretrained
    path, _ = _imagenet_resnet18_file(tmp_path)
    model = vz.create_model("resnet18", num_classes=1000, in_chans=3, image_size=28)
    with pytest.raises(UsageError, match="--finetune-stem keep"):
        load_pretrained(model, "resnet18", path)
