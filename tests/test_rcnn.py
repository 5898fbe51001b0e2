"""Fast and Faster R-CNN (models/rcnn.py): twins of torchvision's `FasterRCNN` (same backbone, no FPN, RoI
max pooling) giving the same proposals, detections and — with the same sampled anchors and RoIs —
the same losses; the training step; the papers' sampling rules; the alternating training's stages;
custom anchors; bad targets and missing proposals refused."""
import copy

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import DataError, UsageError
from visionzoo.layers.detection import box_iou
from visionzoo.models.rcnn import torchvision_twin
from visionzoo.registry import convert_state_dict
from visionzoo.weights import model_from_meta

from conftest import randomise_batchnorm

PARTS = ("backbone", "rpn", "roi_heads")


def twins(name, body_of, side, **kwargs):
    """Our detector (weights converted from the twin's, random BN statistics) and its torchvision twin."""
    torch.manual_seed(0)
    ours = vz.create_model(name, **kwargs)
    theirs = torchvision_twin(ours, body_of(ours))
    ours.load_state_dict(convert_state_dict(name, theirs.state_dict(), "torchvision"))
    images = torch.randn(2, ours.pretrained_cfg["input_size"][0], side, side)
    randomise_batchnorm(ours.backbone, images)
    theirs.backbone.load_state_dict({k[len("body.features."):]: v for k, v in ours.backbone.state_dict().items()})
    return ours, theirs, images


def small_body(ours):
    return ours.backbone.body.features


def assert_same_detections(ours, theirs, images):
    with torch.no_grad():
        found = ours.eval()(images)
        proposals_theirs = theirs.eval().rpn(theirs.transform(list(images))[0],
                                             {"0": theirs.backbone(images)})[0]
        expected = theirs(list(images))
    for a, b, c in zip(ours.last_proposals, proposals_theirs, ours.propose(images)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        assert torch.equal(a, c)
    for a, b in zip(found, expected):
        assert len(a["boxes"]) > 0
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=1e-4)
        assert torch.equal(a["labels"], b["labels"])


def test_small_twin_gives_torchvisions_proposals_and_detections():
    ours, theirs, images = twins("faster_rcnn_small", small_body, 128)
    assert_same_detections(ours, theirs, images)


@pytest.mark.slow
def test_vgg16_twin_gives_torchvisions_proposals_and_detections():
    # 21 near-uniform scores of random weights lie under the default 0.05
    ours, theirs, images = twins("faster_rcnn_vgg16", lambda m: m.backbone.body.features[:30], 160,
                                 box_score_thresh=0.01)
    assert_same_detections(ours, theirs, images)


TARGETS = [{"boxes": torch.tensor([[10.0, 20, 50, 60], [60, 60, 120, 100]]), "labels": torch.tensor([1, 3])},
           {"boxes": torch.tensor([[30.0, 30, 60, 90]]), "labels": torch.tensor([10])}]


def test_small_twin_losses_equal_torchvisions_with_the_same_samples():
    # Both draw their samples from the global stream in the same order (per image: positives, then
    # negatives; the RPN's, then the head's), so one seed gives both the same anchors and RoIs.
    beta = 1 / 9
    ours, theirs, images = twins("faster_rcnn_small", small_body, 128, rpn_smooth_l1_beta=beta,
                                 box_smooth_l1_beta=beta, bg_iou_low=0.0)
    torch.manual_seed(3)
    losses = ours.train()(images, copy.deepcopy(TARGETS))
    torch.manual_seed(3)
    expected = theirs.train()(list(images), copy.deepcopy(TARGETS))
    assert set(losses) == set(expected)
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key], rtol=1e-5, atol=1e-6)
    assert losses["loss_box_reg"] > 0 and losses["loss_rpn_box_reg"] > 0


def test_training_step_gives_finite_losses_and_gradients_everywhere():
    torch.manual_seed(0)
    model = vz.create_model("faster_rcnn_small").train()
    losses = model(torch.randn(2, 1, 128, 128), TARGETS, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for part in PARTS:
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, part


def test_sampling_is_reproducible_with_a_generator():
    torch.manual_seed(0)
    model = vz.create_model("faster_rcnn_small").train()
    images = torch.randn(2, 1, 128, 128)
    first, second = (model(images, TARGETS, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    model.generator = torch.Generator().manual_seed(5)
    third = model(images, TARGETS)
    for key in first:
        assert torch.equal(first[key], second[key]) and torch.equal(first[key], third[key])


def test_fast_rcnn_sampling_follows_the_paper():
    # 64 RoIs per image, at most 25 % foreground (IoU ≥ 0.5, its box's class), background IoU in [0.1, 0.5).
    model = vz.create_model("fast_rcnn_small")
    truth = TARGETS[0]
    generator = torch.Generator().manual_seed(0)
    proposals = torch.rand(500, 2) * 100
    proposals = torch.cat((proposals, proposals + 5 + torch.rand(500, 2) * 60), 1)
    boxes, labels, _ = model.roi_heads.sample([proposals], [truth], generator)
    boxes, labels = boxes[0], labels[0]
    assert len(boxes) == 64 and (labels > 0).sum() <= 16 and (labels > 0).sum() > 0
    iou, index = box_iou(truth["boxes"], boxes).max(0)
    foreground = labels > 0
    assert (iou[foreground] >= 0.5).all() and torch.equal(labels[foreground], truth["labels"][index[foreground]])
    assert ((iou[~foreground] >= 0.1) & (iou[~foreground] < 0.5)).all()


def test_fast_rcnn_trains_and_detects_on_given_proposals():
    torch.manual_seed(0)
    model = vz.create_model("fast_rcnn_small")
    assert model.rpn is None
    images = torch.randn(2, 1, 128, 128)
    proposals = [torch.tensor([[0.0, 0, 64, 64], [10, 20, 52, 58], [64, 64, 128, 128]]), torch.tensor([[5.0, 5, 90, 90]])]
    losses = model.train()(images, TARGETS, proposals=proposals)
    assert set(losses) == {"loss_classifier", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        found = model.eval()(images, proposals=proposals)
    assert len(found) == 2 and all(d["boxes"].shape[1] == 4 for d in found)
    with pytest.raises(UsageError, match="needs proposals"):
        model(images)


@pytest.mark.parametrize("scales, ratios", [((32,), (1.0,)), ((8, 16, 32, 64), (0.25, 0.5, 1.0, 2.0, 4.0))])
def test_custom_anchors_of_any_count_work(scales, ratios):
    torch.manual_seed(0)
    model = vz.create_model("faster_rcnn_small", anchor_scales=scales, anchor_ratios=ratios)
    assert model.rpn.head.cls_logits.out_channels == len(scales) * len(ratios)
    images = torch.randn(2, 1, 112, 128)
    losses = model.train()(images, TARGETS)
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        model.eval()(images)
    assert all(len(p) > 0 and (p[:, 2] <= 128).all() and (p[:, 3] <= 112).all() for p in model.last_proposals)


@pytest.mark.parametrize("box, what", [([30.0, 30, 30, 60], "degenerate"), ([30.0, 30, 140, 60], "outside"),
                                       ([float("nan"), 0, 10, 10], "not finite")])
def test_bad_target_boxes_are_refused_naming_the_box(box, what):
    model = vz.create_model("faster_rcnn_small").train()
    targets = [{"boxes": torch.tensor([box]), "labels": torch.tensor([1])}]
    with pytest.raises(DataError, match=f"targets\\[0\\]: box 0 .*{what}"):
        model(torch.randn(1, 1, 128, 128), targets)


def test_an_image_without_objects_trains_as_background():
    model = vz.create_model("faster_rcnn_small").train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    losses = model(torch.randn(1, 1, 128, 128), empty)
    assert losses["loss_rpn_box_reg"] == 0 and losses["loss_box_reg"] == 0 and torch.isfinite(losses["loss_classifier"])


def _trained_parts(model, stage):
    model.zero_grad(set_to_none=True)
    losses = model(torch.randn(2, 1, 128, 128), TARGETS, generator=torch.Generator().manual_seed(stage))
    sum(losses.values()).backward()
    return set(losses), {part for part in PARTS
                         if any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters())}


def test_alternating_training_stages_train_what_the_paper_says():
    torch.manual_seed(0)
    model = vz.create_model("faster_rcnn_small").train()
    built = copy.deepcopy(model.backbone.state_dict())
    rpn_losses, head_losses = {"loss_objectness", "loss_rpn_box_reg"}, {"loss_classifier", "loss_box_reg"}
    # 1: the RPN on the ImageNet-initialised backbone
    assert model.set_training_stage(1) == {"backbone": True, "rpn": True, "roi_heads": False}
    assert _trained_parts(model, 1) == (rpn_losses, {"backbone", "rpn"})
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.01)   # stands for stage 1's updates
    stage_one = copy.deepcopy(model.backbone.state_dict())
    # 2: Fast R-CNN with its own backbone, restarted from its initialisation, on the stage-1 RPN's proposals
    assert model.set_training_stage(2) == {"backbone": True, "rpn": False, "roi_heads": True}
    assert all(torch.equal(v, built[k]) for k, v in model.backbone.state_dict().items())
    assert all(torch.equal(v, stage_one[k]) for k, v in model.rpn_backbone.state_dict().items())
    assert _trained_parts(model, 2) == (head_losses, {"backbone", "roi_heads"})
    assert all(p.grad is None for p in model.rpn_backbone.parameters())
    # a checkpoint of stage 2 resumes in stage 2, both backbones restored
    resumed = vz.create_model("faster_rcnn_small")
    resumed.load_state_dict(model.state_dict())
    assert resumed.training_stage == 2 and resumed.set_training_stage(2)["rpn"] is False
    assert all(torch.equal(v, stage_one[k]) for k, v in resumed.rpn_backbone.state_dict().items())
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in resumed.backbone.state_dict().items())
    # and so does the description of a run's weights saved then (an unshared run's, which ends in stage 2)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    described = model_from_meta({"name": "faster_rcnn_small"}, shapes=shapes)
    assert described.training_stage == 2 and described.rpn_backbone is not None
    assert set(described.state_dict()) == set(shapes)
    # 3: the RPN's own layers on the shared, frozen stage-2 backbone
    assert model.set_training_stage(3) == {"backbone": False, "rpn": True, "roi_heads": False}
    assert model.rpn_backbone is None
    assert _trained_parts(model, 3) == (rpn_losses, {"rpn"})
    # 4: the Fast R-CNN layers, the shared ones frozen
    assert model.set_training_stage(4) == {"backbone": False, "rpn": False, "roi_heads": True}
    assert _trained_parts(model, 4) == (head_losses, {"roi_heads"})
    assert not model.backbone.training   # frozen batch norm keeps its statistics
    assert model.set_training_stage(None) == dict.fromkeys(PARTS, True)
    with pytest.raises(UsageError, match="training stage 5"):
        model.set_training_stage(5)


def test_backbones_are_cut_at_stride_16_and_vgg_like_heads_start_from_the_classifiers_fc_layers():
    with torch.device("meta"):
        vgg = vz.create_model("faster_rcnn_vgg16")
        resnet = vz.create_model("faster_rcnn_resnet50")
    assert (vgg.backbone.stride, vgg.backbone.out_channels, vgg.roi_heads.roi_output_size) == (16, 512, 7)
    assert (resnet.backbone.stride, resnet.backbone.out_channels, resnet.roi_heads.roi_output_size) == (16, 1024, 14)
    assert isinstance(resnet.backbone.body.layer4, nn.Identity) and resnet.roi_heads.box_head.out_features == 2048
    assert vgg.backbone(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 512, 14, 14)
    torch.manual_seed(1)
    classifier = vz.create_model("zfnet")
    torch.manual_seed(1)
    detector = vz.create_model("fast_rcnn_zf")
    assert detector.roi_heads.roi_output_size == 6 and detector.backbone.out_channels == 256
    assert torch.equal(detector.roi_heads.box_head.fc6.weight, classifier.classifier[0].weight)
    assert torch.equal(detector.roi_heads.box_head.fc7.weight, classifier.classifier[3].weight)


def test_detectors_are_listed_under_the_detection_task():
    names = vz.list_models(task="detection")
    assert {"faster_rcnn_vgg16", "faster_rcnn_zf", "faster_rcnn_resnet50", "fast_rcnn_vgg16", "fast_rcnn_zf",
            "faster_rcnn_small", "fast_rcnn_small"} <= set(names)
    assert 136e6 < vz.model_card("faster_rcnn_vgg16")["params"] < 138e6
