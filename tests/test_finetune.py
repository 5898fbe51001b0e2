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


def test_weights_of_another_class_count_name_the_shapes(tmp_path):
    from safetensors.torch import save_file
    save_file(vz.create_model("lenet5", num_classes=10).state_dict(), str(tmp_path / "ten.safetensors"))
    with pytest.raises(UsageError, match=r"shapes differ \(.*\(10, 84\) vs \(3, 84\)"):
        vz.create_model("lenet5", num_classes=3, pretrained=str(tmp_path / "ten.safetensors"))


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
