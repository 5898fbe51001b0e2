"""Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015) and Faster R-CNN (Ren, He, Girshick, Sun, "Faster
R-CNN: Towards Real-Time Object Detection with Region Proposal Networks", NeurIPS 2015).

Backbone: any zoo classifier, cut after its deepest feature stage of stride at most
``feature_stride`` (16: VGG-16's conv5_3, ZF's conv5, ResNet's conv4_x — the "C4" layout of He et
al., CVPR 2016, Appendix A); the layers after it are dropped, and the forward pass stops there.

Fast R-CNN (Fig. 1): RoI max pooling of each proposal to a fixed grid (Sec. 2.1; 7×7 for VGG-16,
6×6 for ZF), two fully connected layers fc6, fc7 (taken over from the classifier, dropout included,
when its shapes fit: the paper initialises them from the ImageNet network) or, for a ResNet (``box_head
="res5"``), RoI pooling to 14×14 and the classifier's last stage then a global average; then two
sibling outputs, a softmax over K + 1 classes (0 = background) and per-class box offsets. The
multi-task loss (Eq. 1) L = L_cls(p, u) + λ·[u ≥ 1]·L_loc(t^u, v), λ = 1: cross-entropy averaged
over the sampled RoIs plus the smooth-L1 (Eq. 2–3) of the true class's 4 offsets summed and divided
by the number of sampled RoIs. Offsets are Eq. 2's parameterisation scaled by (10, 10, 5, 5) (the
paper normalises the targets to unit variance; these are the fixed scales its code and torchvision
use). Mini-batches (Sec. 2.3): `box_batch_size_per_image` = 64 RoIs per image (2 images × 64 = the
paper's 128), 25 % foreground with IoU ≥ 0.5, background with IoU in [0.1, 0.5), the ground-truth
boxes added to the proposals. torchvision takes background in [0, 0.5): ``bg_iou_low=0``.
Initialisation (Sec. 2.3): classification N(0, 0.01²), box regression N(0, 0.001²), biases 0.
Test time (Sec. 2.4 and 4): per-class NMS at 0.3 (`box_nms_thresh`), scores above 0.05, at most
100 detections per image.

Faster R-CNN adds the Region Proposal Network (Sec. 3.1, Fig. 3) on the shared map: a 3×3
convolution (as wide as the map: 512 for VGG-16, 256 for ZF) and ReLU, then two sibling 1×1
convolutions giving, at every position, k objectness scores and 4k offsets of k anchors (3 scales
× 3 ratios; 128², 256², 512² pixels for the 600-pixel images of the paper). The paper's 2k-way
softmax is k logistic scores here (torchvision's; the paper notes either works). Training (Sec.
3.1.2–3.1.3): an anchor is positive at IoU ≥ 0.7 with a ground-truth box (the paper: > 0.7; torchvision's
≥) or as a box's best anchor, negative below 0.3, else ignored; 256 anchors per image, at most half positive. The loss (Eq. 1)
(1/N_cls)·Σ L_cls + λ·(1/N_reg)·Σ p*·L_reg with N_cls = 256, N_reg ≈ 2400 and λ = 10 weighs both
terms about equally; as torchvision, both are divided by the number of sampled anchors (λ/N_reg =
10/2400 ≈ 1/256). Proposals: decoded anchors, the `rpn_pre_nms_top_n` best by objectness (12000
training / 6000 testing, the paper's code), clipped to the image, NMS at 0.7, the best
2000 (training) or 300 (testing) kept. Smooth-L1 β is 1 (the paper's Eq. 3) in both losses;
torchvision (and the paper's code for the RPN) use β = 1/9: ``rpn_smooth_l1_beta``,
``box_smooth_l1_beta``. The paper ignores anchors crossing the image border in training;
torchvision (and this implementation) keep them.

Training schemes (Sec. 3.2): approximate joint training is the default (the four losses
summed; proposals are treated as fixed boxes, no gradient through their coordinates). The 4-step
alternating training is `set_training_stage(k)`: 1 the RPN and the backbone; 2 the Fast R-CNN head
and a fresh backbone (its state as built, i.e. the ImageNet initialisation), on proposals of the
stage-1 RPN running on its own frozen stage-1 backbone; 3 the RPN's own layers only, on the stage-2
backbone, now shared and frozen; 4 the Fast R-CNN head only, the shared layers frozen. Each stage
returns only the losses of what it trains; frozen parts stay in inference mode. A state_dict saved
during stage 2 (it holds the frozen stage-1 backbone as ``rpn_backbone``) loads into a fresh
detector in stage 2, so a run resumes there. Sampling draws from the `generator` passed to forward
(or ``model.generator``; else the global stream, in torchvision's order).

No resizing happens inside (torchvision's GeneralizedRCNNTransform): images arrive at their final
size, normalised; boxes are clipped to the image. With weights copied (`torchvision_to_ours`),
``faster_rcnn_vgg16`` gives the proposals and detections of torchvision's `FasterRCNN` built on
the same VGG-16 layers without FPN and with RoI max pooling (tests/test_rcnn.py).

Registered (the papers print no parameter counts): ``faster_rcnn_vgg16`` (137.07 M parameters for
21 classes: VGG-16 conv1_1–conv5_3 14.71 M, RPN 2.38 M, fc6/fc7 119.55 M, outputs 0.43 M),
``faster_rcnn_zf`` (59.29 M), ``faster_rcnn_resnet50`` (C4, 33.21 M), ``fast_rcnn_vgg16``
(134.69 M), ``fast_rcnn_zf`` (58.69 M); and for 128×128 grey scenes on a CPU ``faster_rcnn_small``
and ``fast_rcnn_small``: ResNet-9 at quarter width (resnet9_slim) to stride 8, anchors of 16, 32 and
64 pixels × 3 ratios, a 256-256 two-FC head on 7×7 RoIs (2.25 M and 2.10 M parameters).

On the meta device (model cards), where NMS and data-dependent indexing cannot run, the RPN keeps
its `rpn_post_nms_top_n_test` best anchors: the MAC count is that of 300 RoIs per image (a Fast
R-CNN given no proposals there: of selective search's 2000).
"""
from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..layers.detection import (
    BELOW_LOW,
    BETWEEN,
    DEFAULT_CLAMP,
    Anchors,
    batched_nms,
    box_iou,
    check_boxes,
    clip_boxes_to_image,
    decode_boxes,
    encode_boxes,
    match_boxes,
    nms,
    remove_small_boxes,
    roi_pool,
    sample_labels,
    smooth_l1,
)
from ..registry import create_model, register_model

_GIRSHICK = "Girshick. Fast R-CNN. ICCV 2015"
_REN = ("Ren, He, Girshick, Sun. Faster R-CNN: Towards Real-Time Object Detection with Region Proposal "
        "Networks. NeurIPS 2015")
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BOX_HEADS = ("fc", "res5")
META_PROPOSALS = 2000
# The alternating scheme's stages (Sec. 3.2): which parts train, and which losses are computed.
STAGE_TRAINS = {
    None: {"backbone": True, "rpn": True, "roi_heads": True},
    1: {"backbone": True, "rpn": True, "roi_heads": False},
    2: {"backbone": True, "rpn": False, "roi_heads": True},
    3: {"backbone": False, "rpn": True, "roi_heads": False},
    4: {"backbone": False, "rpn": False, "roi_heads": True},
}


def _on_meta(x: torch.Tensor) -> bool:
    return x.device.type == "meta"


class _StageReached(Exception):
    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output


class BackboneTrunk(nn.Module):
    """A zoo classifier's ``forward_features`` stopped at the output of one stage module: the
    shared convolutional map (B, C, H/stride, W/stride)."""

    def __init__(self, body: nn.Module, stage: str, out_channels: int, stride: int):
        super().__init__()
        self.body, self.stage = body, stage
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def stop(module, args, output):
            raise _StageReached(output)

        hook = self.body.get_submodule(self.stage).register_forward_hook(stop)
        try:
            self.body.forward_features(x)
        except _StageReached as reached:
            return self.body.stage_map(reached.output, tuple(x.shape[-2:]))
        finally:
            hook.remove()
        raise RuntimeError(f"{type(self.body).__name__}: stage module {self.stage!r} did not run")


def _drop_modules_after_stage(trunk: BackboneTrunk, input_size) -> None:
    """Replace by nn.Identity every module holding tensors that the trunk never calls (the layers
    after its stage, the classifier), so that the detector holds only what it runs."""
    called = set()
    hooks = [module.register_forward_pre_hook(partial(lambda name, *_: called.add(name), name))
             for name, module in trunk.body.named_modules() if name]
    stand_ins = {name: torch.empty_like(tensor, device="meta")
                 for name, tensor in (*trunk.named_parameters(), *trunk.named_buffers())}
    try:
        with torch.no_grad():
            torch.func.functional_call(trunk, stand_ins, (torch.empty(1, *input_size, device="meta"),))
    finally:
        for hook in hooks:
            hook.remove()
    dropped = []
    for name, module in list(trunk.body.named_modules()):
        unused = name and not any(c == name or c.startswith(name + ".") for c in called)
        holds_tensors = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        if unused and holds_tensors and not any(name.startswith(d + ".") for d in dropped):
            parent, _, child = name.rpartition(".")
            setattr(trunk.body.get_submodule(parent) if parent else trunk.body, child, nn.Identity())
            dropped.append(name)


def build_trunk(backbone: str, in_chans: int, feature_stride: int = 16, backbone_weights=None):
    """(trunk, the classifier's modules after the trunk's stage by name, the classifier): `backbone`
    cut after its deepest stage of reduction ≤ `feature_stride`."""
    body = create_model(backbone, in_chans=in_chans, pretrained=backbone_weights)
    if not hasattr(body, "stage_modules"):
        raise UsageError(f"backbone {backbone} has no feature stages; choose a classifier (`visionzoo models`)")
    info = body.feature_info
    eligible = [i for i, stage in enumerate(info) if stage["reduction"] <= feature_stride]
    if not eligible:
        strides = sorted({stage["reduction"] for stage in info})
        raise UsageError(f"backbone {backbone}: no stage of stride ≤ {feature_stride} (its strides: {strides})")
    index = eligible[-1]
    later = {stage["module"]: body.get_submodule(stage["module"]) for stage in info[index + 1:]}
    classifier = getattr(body, "classifier", None)
    trunk = BackboneTrunk(body, info[index]["module"], info[index]["num_chs"], info[index]["reduction"])
    _drop_modules_after_stage(trunk, body.pretrained_cfg["input_size"])
    return trunk, later, classifier


class TwoFCHead(nn.Module):
    """RoI features → flatten → fc6 → ReLU → (dropout) → fc7 → ReLU → (dropout) (Fast R-CNN's VGG-16 layers)."""

    def __init__(self, in_features: int, representation_size: int, dropout: float = 0.0):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = dropout
        self.out_features = representation_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(F.relu(self.fc6(x.flatten(1))), self.dropout, self.training)
        return F.dropout(F.relu(self.fc7(x)), self.dropout, self.training)


class StageHead(nn.Module):
    """RoI features → a classifier's later stage (ResNet's conv5_x) → global average (He et al. 2016, App. A)."""

    def __init__(self, stage: nn.Module, out_features: int):
        super().__init__()
        self.stage, self.out_features = stage, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x).mean((2, 3))


class FastRCNNPredictor(nn.Module):
    """The two sibling outputs: K + 1 class scores and 4·(K + 1) box offsets (Sec. 2.3's initialisation)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, 0.0, 0.01)
        nn.init.normal_(self.bbox_pred.weight, 0.0, 0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 even under autocast: box offsets in bfloat16 would move boxes by whole pixels
        return self.cls_score(x).float(), self.bbox_pred(x).float()


class RPNHead(nn.Module):
    """3×3 convolution + ReLU, then k objectness logits and 4k offsets per position (Fig. 3)."""

    def __init__(self, in_channels: int, num_anchors: int, channels: int | None = None):
        super().__init__()
        channels = channels or in_channels
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(channels, num_anchors * 4, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):   # Sec. 3.1.3: N(0, 0.01²), biases 0
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H·W·k) logits and (B, H·W·k, 4) offsets, ordered as the anchors: position, then anchor."""
        x = F.relu(self.conv(features))
        batch, _, height, width = features.shape
        logits = self.cls_logits(x).permute(0, 2, 3, 1).reshape(batch, -1)
        deltas = self.bbox_pred(x).view(batch, -1, 4, height, width).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
        return logits.float(), deltas.float()   # float32 even under autocast, as the predictor's


class RegionProposalNetwork(nn.Module):
    """Anchors, the RPN head, proposal selection and the RPN's losses (Sec. 3.1)."""

    def __init__(self, in_channels: int, stride: int, anchor_scales=(128, 256, 512), anchor_ratios=(0.5, 1.0, 2.0),
                 channels: int | None = None, pre_nms_top_n_train: int = 12000, pre_nms_top_n_test: int = 6000,
                 post_nms_top_n_train: int = 2000, post_nms_top_n_test: int = 300, nms_thresh: float = 0.7,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, smooth_l1_beta: float = 1.0, min_size: float = 1e-3):
        super().__init__()
        self.anchors = Anchors(tuple(float(s) for s in anchor_scales), tuple(float(r) for r in anchor_ratios))
        self.stride = stride
        self.head = RPNHead(in_channels, self.anchors.per_location, channels)
        self.pre_nms_top_n = {True: pre_nms_top_n_train, False: pre_nms_top_n_test}
        self.post_nms_top_n = {True: post_nms_top_n_train, False: post_nms_top_n_test}
        self.nms_thresh, self.min_size = nms_thresh, min_size
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.smooth_l1_beta = smooth_l1_beta

    def forward(self, features: torch.Tensor, image_size, targets: list[dict] | None = None,
                generator: torch.Generator | None = None, training: bool | None = None):
        """(proposals: one (P_i, 4) tensor per image, losses: {} or the two RPN losses when `targets` are given).

        `training` picks the training or testing proposal counts (default: the module's mode)."""
        training = self.training if training is None else training
        logits, deltas = self.head(features)
        anchors = self.anchors(features.shape[-2:], self.stride, features.device, deltas.dtype)
        proposals = self.select(anchors, logits.detach(), deltas.detach(), image_size, training)
        if targets is None:
            return proposals, {}
        return proposals, self.losses(anchors, logits, deltas, targets, generator)

    def select(self, anchors, logits, deltas, image_size, training: bool) -> list[torch.Tensor]:
        """The best `pre_nms_top_n` anchors by objectness, decoded, clipped, small ones removed, NMS, the best
        `post_nms_top_n`."""
        pre, post = self.pre_nms_top_n[training], self.post_nms_top_n[training]
        if _on_meta(logits):   # no NMS on the meta device: the cost of `post` proposals
            top = logits.topk(min(post, logits.shape[1]), dim=1).indices
            return [decode_boxes(d[i], anchors[i], RPN_WEIGHTS) for d, i in zip(deltas, top)]
        top = logits.topk(min(pre, logits.shape[1]), dim=1).indices
        proposals = []
        for image_logits, image_deltas, index in zip(logits, deltas, top):
            boxes = clip_boxes_to_image(decode_boxes(image_deltas[index], anchors[index], RPN_WEIGHTS), image_size)
            scores = image_logits[index]
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores = boxes[keep], scores[keep]
            keep = nms(boxes, scores, self.nms_thresh)[:post]
            proposals.append(boxes[keep])
        return proposals

    def losses(self, anchors, logits, deltas, targets: list[dict], generator) -> dict:
        """Binary cross-entropy over the sampled anchors and smooth-L1 of the positives' offsets, both
        divided by the number of sampled anchors."""
        sampled_logits, sampled_labels, positive_deltas, positive_targets = [], [], [], []
        for image_logits, image_deltas, target in zip(logits, deltas, targets):
            truth = target["boxes"].to(anchors.dtype)
            matches = match_boxes(box_iou(truth, anchors), self.fg_iou_thresh, self.bg_iou_thresh,
                                  allow_low_quality=True)
            labels = (matches >= 0).to(anchors.dtype)
            labels[matches == BETWEEN] = -1.0
            positive, negative = sample_labels(labels, self.batch_size_per_image, self.positive_fraction, generator)
            sampled = torch.cat((positive, negative))
            sampled_logits.append(image_logits[sampled])
            sampled_labels.append(labels[sampled])
            positive_deltas.append(image_deltas[positive])
            positive_targets.append(encode_boxes(truth[matches[positive]], anchors[positive], RPN_WEIGHTS))
        sampled_logits, sampled_labels = torch.cat(sampled_logits), torch.cat(sampled_labels)
        count = max(len(sampled_logits), 1)
        box_loss = smooth_l1(torch.cat(positive_deltas), torch.cat(positive_targets), self.smooth_l1_beta) / count
        return {"loss_objectness": F.binary_cross_entropy_with_logits(sampled_logits, sampled_labels),
                "loss_rpn_box_reg": box_loss}


class RoIHeads(nn.Module):
    """RoI pooling, the box head and the predictor; Fast R-CNN's sampling, loss and test-time detections."""

    def __init__(self, box_head: nn.Module, num_classes: int, stride: int, roi_output_size: int = 7,
                 batch_size_per_image: int = 64, positive_fraction: float = 0.25, fg_iou_thresh: float = 0.5,
                 bg_iou_high: float = 0.5, bg_iou_low: float = 0.1, score_thresh: float = 0.05,
                 nms_thresh: float = 0.3, detections_per_img: int = 100, smooth_l1_beta: float = 1.0,
                 box_weights=BOX_WEIGHTS):
        super().__init__()
        self.box_head = box_head
        self.box_predictor = FastRCNNPredictor(box_head.out_features, num_classes)
        self.stride, self.roi_output_size = stride, roi_output_size
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.fg_iou_thresh, self.bg_iou_high, self.bg_iou_low = fg_iou_thresh, bg_iou_high, bg_iou_low
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.smooth_l1_beta, self.box_weights = smooth_l1_beta, tuple(box_weights)

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor], image_size,
                targets: list[dict] | None = None, generator: torch.Generator | None = None):
        """Losses {"loss_classifier", "loss_box_reg"} when `targets` are given, else one dict of
        boxes, labels and scores per image."""
        if targets is not None:
            proposals, labels, regression_targets = self.sample(proposals, targets, generator)
        class_logits, box_deltas = self.predict(features, proposals)
        if targets is not None:
            return self.losses(class_logits, box_deltas, labels, regression_targets)
        return self.detections(class_logits, box_deltas, proposals, image_size)

    def predict(self, features, proposals):
        # in float32: box corners in bfloat16 (autocast) would snap to whole pixels or worse
        pooled = roi_pool(features.float(), [p.float() for p in proposals], self.roi_output_size, 1.0 / self.stride)
        return self.box_predictor(self.box_head(pooled))

    def sample(self, proposals, targets, generator):
        """Per image: the proposals and the true boxes, labelled (class at IoU ≥ fg, 0 for background in
        [bg_low, bg_high), else ignored), `batch_size_per_image` of them drawn with a `positive_fraction` of
        foreground; their labels and regression targets."""
        sampled_boxes, sampled_labels, regression_targets = [], [], []
        for boxes, target in zip(proposals, targets):
            truth = target["boxes"].to(boxes.dtype)
            boxes = torch.cat((boxes, truth))
            iou = box_iou(truth, boxes)
            matches = match_boxes(iou, self.fg_iou_thresh, self.bg_iou_high)
            labels = target["labels"].to(torch.long)[matches.clamp(min=0)] if len(truth) else torch.zeros_like(matches)
            labels[matches == BELOW_LOW] = 0
            labels[matches == BETWEEN] = -1
            if len(truth) and self.bg_iou_low > 0:
                labels[(matches == BELOW_LOW) & (iou.max(dim=0).values < self.bg_iou_low)] = -1
            positive, negative = sample_labels(labels, self.batch_size_per_image, self.positive_fraction, generator)
            sampled = torch.cat((positive, negative))
            matched = truth[matches[sampled].clamp(min=0)] if len(truth) else boxes[sampled]
            sampled_boxes.append(boxes[sampled])
            sampled_labels.append(labels[sampled])
            regression_targets.append(encode_boxes(matched, boxes[sampled], self.box_weights))
        return sampled_boxes, sampled_labels, regression_targets

    def losses(self, class_logits, box_deltas, labels, regression_targets) -> dict:
        """Eq. 1 with λ = 1: cross-entropy over the sampled RoIs, smooth-L1 of the true class's offsets
        (foreground only) summed and divided by the number of sampled RoIs."""
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        foreground = torch.where(labels > 0)[0]
        deltas = box_deltas.view(len(box_deltas), -1, 4)[foreground, labels[foreground]]
        box_loss = smooth_l1(deltas, regression_targets[foreground], self.smooth_l1_beta) / max(len(labels), 1)
        return {"loss_classifier": F.cross_entropy(class_logits, labels), "loss_box_reg": box_loss}

    def detections(self, class_logits, box_deltas, proposals, image_size) -> list[dict]:
        """Per image: every class's decoded box with its softmax score, clipped; scores above
        `score_thresh`; empty boxes dropped; NMS per class; the best `detections_per_img`."""
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        boxes = decode_boxes(box_deltas, torch.cat(proposals).to(box_deltas.dtype), self.box_weights, DEFAULT_CLAMP)
        scores = F.softmax(class_logits, -1)
        found = []
        for image_boxes, image_scores in zip(boxes.split(counts), scores.split(counts)):
            image_boxes = clip_boxes_to_image(image_boxes.view(-1, num_classes, 4), image_size)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=image_boxes.device).repeat(len(image_scores))
            image_scores = image_scores[:, 1:].reshape(-1)
            if _on_meta(image_boxes):
                found.append({"boxes": image_boxes, "labels": labels, "scores": image_scores})
                continue
            keep = torch.where(image_scores > self.score_thresh)[0]
            image_boxes, image_scores, labels = image_boxes[keep], image_scores[keep], labels[keep]
            keep = remove_small_boxes(image_boxes, 1e-2)
            image_boxes, image_scores, labels = image_boxes[keep], image_scores[keep], labels[keep]
            keep = batched_nms(image_boxes, image_scores, labels, self.nms_thresh)[:self.detections_per_img]
            found.append({"boxes": image_boxes[keep], "labels": labels[keep], "scores": image_scores[keep]})
        return found


class FastRCNN(nn.Module):
    """Backbone → RoI heads on given proposals (Fig. 1). forward(images, targets=None, proposals=…):
    training → {"loss_classifier", "loss_box_reg"}; eval → one {"boxes", "labels", "scores"} per image."""

    def __init__(self, backbone: BackboneTrunk, roi_heads: RoIHeads, num_classes: int):
        super().__init__()
        self.backbone, self.roi_heads, self.num_classes = backbone, roi_heads, num_classes
        self.rpn: RegionProposalNetwork | None = None
        self.generator: torch.Generator | None = None

    def check_targets(self, images: torch.Tensor, targets: list[dict] | None) -> None:
        if targets is None:
            raise UsageError(f"{type(self).__name__} in training mode needs targets (one dict of boxes and "
                             "labels per image); call model.eval() to detect")
        if len(targets) != len(images):
            raise UsageError(f"{len(images)} images but {len(targets)} targets; give one per image")
        for k, target in enumerate(targets):
            if not _on_meta(target["boxes"]):
                check_boxes(target["boxes"], tuple(images.shape[-2:]), f"targets[{k}]")

    def check_proposals(self, images: torch.Tensor, proposals) -> list[torch.Tensor]:
        if proposals is None and _on_meta(images):   # a model card: the cost of selective search's 2000 boxes
            side = torch.tensor([images.shape[-1], images.shape[-2]] * 2, dtype=images.dtype, device=images.device)
            return [torch.rand(META_PROPOSALS, 4, dtype=images.dtype, device=images.device) * side] * len(images)
        if proposals is None:
            raise UsageError(f"{type(self).__name__} needs proposals (one (P, 4) tensor of x1 y1 x2 y2 boxes per "
                             "image): selective search's or boxes from a file")
        if len(proposals) != len(images):
            raise UsageError(f"{len(images)} images but {len(proposals)} proposal sets; give one per image")
        return [clip_boxes_to_image(p.to(images.dtype).reshape(-1, 4), tuple(images.shape[-2:])) for p in proposals]

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None, generator: torch.Generator | None = None):
        generator = self.generator if generator is None else generator
        image_size = tuple(images.shape[-2:])
        proposals = self.check_proposals(images, proposals)
        if self.training:
            self.check_targets(images, targets)
        features = self.backbone(images)
        return self.roi_heads(features, proposals, image_size, targets if self.training else None, generator)


class FasterRCNN(FastRCNN):
    """Shared backbone → RPN → RoI heads (Fig. 2). forward(images, targets=None): training → the RPN's
    {"loss_objectness", "loss_rpn_box_reg"} and the head's {"loss_classifier", "loss_box_reg"} (those of
    the current alternating stage); eval → one {"boxes", "labels", "scores"} per image, the RPN's
    proposals in `last_proposals`. Given `proposals`, the RPN is bypassed (a Fast R-CNN on those boxes)."""

    def __init__(self, backbone: BackboneTrunk, rpn: RegionProposalNetwork, roi_heads: RoIHeads, num_classes: int):
        super().__init__(backbone, roi_heads, num_classes)
        self.rpn = rpn
        self.rpn_backbone: BackboneTrunk | None = None
        self.training_stage: int | None = None
        self.last_proposals: list[torch.Tensor] | None = None
        # The backbone as built (ImageNet initialisation), for stage 2's fresh start; not in state_dict.
        self._initial_backbone = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
        self.register_load_state_dict_pre_hook(
            lambda module, state_dict, prefix, *args: self.adapt_to_weights(state_dict, prefix))

    def adapt_to_weights(self, names, prefix: str = "") -> None:
        """Weights saved during stage 2 (or after an unshared run) hold the frozen stage-1 backbone: make its
        place and enter stage 2 (without restarting the backbone, which the weights fill), so that training
        resumes there and `visionzoo eval` finds the RPN's own backbone."""
        if self.rpn_backbone is None and any(key.startswith(prefix + "rpn_backbone.") for key in names):
            self.rpn_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
            self._enter_stage(2)

    def propose(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The RPN's test-time proposals for `images` (no gradient)."""
        with torch.no_grad():
            features = self.rpn_backbone(images) if self.rpn_backbone is not None else self.backbone(images)
            return self.rpn(features, tuple(images.shape[-2:]), training=False)[0]

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None, generator: torch.Generator | None = None):
        generator = self.generator if generator is None else generator
        image_size = tuple(images.shape[-2:])
        if proposals is not None:
            return super().forward(images, targets, proposals, generator)
        if not self.training:
            features = self.backbone(images)
            rpn_features = self.rpn_backbone(images) if self.rpn_backbone is not None else features
            self.last_proposals = self.rpn(rpn_features, image_size)[0]
            return self.roi_heads(features, self.last_proposals, image_size)
        self.check_targets(images, targets)
        trains = STAGE_TRAINS[self.training_stage]
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains["backbone"]):
            features = self.backbone(images)
        losses = {}
        if trains["rpn"]:
            proposals, losses = self.rpn(features, image_size, targets, generator)
        if not trains["roi_heads"]:
            return losses
        if not trains["rpn"]:   # stages 2 and 4: the frozen RPN's training-time proposals
            with torch.no_grad():
                rpn_features = self.rpn_backbone(images) if self.rpn_backbone is not None else features
                proposals = self.rpn(rpn_features, image_size, training=True)[0]
        return {**losses, **self.roi_heads(features, proposals, image_size, targets, generator)}

    def set_training_stage(self, stage: int | None) -> dict[str, bool]:
        """Enter a stage of the 4-step alternating training (None: approximate joint training); returns
        which parameter groups train ({"backbone", "rpn", "roi_heads"} → bool). Entering stage 2 keeps the
        stage-1 backbone frozen for the RPN's proposals and restarts the detector's backbone from its state
        as built; stage 3 drops that copy: the RPN then runs on the detector's (shared, frozen) backbone.
        Calling it again with the current stage changes nothing (the task calls it every step)."""
        if stage not in STAGE_TRAINS:
            raise UsageError(f"training stage {stage!r}: choose 1, 2, 3, 4 (alternating training) or None (joint)")
        if stage != self.training_stage:
            if stage == 2:
                self.rpn_backbone = copy.deepcopy(self.backbone).requires_grad_(False).eval()
                self.backbone.load_state_dict(self._initial_backbone)
            else:
                self.rpn_backbone = None
            self._enter_stage(stage)
        return dict(STAGE_TRAINS[stage])

    def _enter_stage(self, stage: int | None) -> None:
        self.training_stage = stage
        for part, on in STAGE_TRAINS[stage].items():
            getattr(self, part).requires_grad_(on)
        self.train(self.training)

    def train(self, mode: bool = True):
        """Frozen parts (of the current alternating stage) stay in inference mode: their batch statistics
        and dropout do not change."""
        super().train(mode)
        for part, on in STAGE_TRAINS[self.training_stage].items():
            if not on:
                getattr(self, part).eval()
        if self.rpn_backbone is not None:
            self.rpn_backbone.eval()
        return self


def _box_head(trunk: BackboneTrunk, later: dict, classifier, box_head: str, roi_output_size: int | None,
              representation_size: int, head_dropout: float):
    """(box head, RoI output size): the classifier's fc6/fc7 when they fit a two-FC head (their weights
    copied, as Fast R-CNN initialises them), a fresh two-FC head otherwise, or ResNet's conv5_x (`res5`)."""
    if box_head == "res5":
        if not later:
            raise UsageError("box_head='res5' runs the backbone's next stage on each RoI; this backbone has none")
        name, stage = next(iter(later.items()))
        channels = dict((s["module"], s["num_chs"]) for s in trunk.body.feature_info)[name]
        return StageHead(stage, channels), roi_output_size or 14
    if box_head != "fc":
        raise UsageError(f"box_head={box_head!r}; choose one of {', '.join(BOX_HEADS)}")
    linears = [m for m in classifier if isinstance(m, nn.Linear)] if isinstance(classifier, nn.Sequential) else []
    pool = getattr(getattr(trunk.body, "avgpool", None), "output_size", None)
    size = roi_output_size or (pool if isinstance(pool, int) and linears else 7)
    head = TwoFCHead(trunk.out_channels * size * size, representation_size, head_dropout)
    if len(linears) >= 3 and linears[0].weight.shape == head.fc6.weight.shape \
            and linears[1].weight.shape == head.fc7.weight.shape:
        with torch.no_grad():
            for ours, theirs in ((head.fc6, linears[0]), (head.fc7, linears[1])):
                ours.weight.copy_(theirs.weight)
                ours.bias.copy_(theirs.bias)
    return head, size


def rcnn(num_classes: int = 21, in_chans: int = 3, backbone: str = "vgg16", backbone_weights=None,
         feature_stride: int = 16, rpn: bool = True, box_head: str = "fc", roi_output_size: int | None = None,
         representation_size: int = 4096, head_dropout: float = 0.5, anchor_scales=(128, 256, 512),
         anchor_ratios=(0.5, 1.0, 2.0), rpn_channels: int | None = None, rpn_pre_nms_top_n_train: int = 12000,
         rpn_pre_nms_top_n_test: int = 6000, rpn_post_nms_top_n_train: int = 2000, rpn_post_nms_top_n_test: int = 300,
         rpn_nms_thresh: float = 0.7, rpn_fg_iou_thresh: float = 0.7, rpn_bg_iou_thresh: float = 0.3,
         rpn_batch_size_per_image: int = 256, rpn_positive_fraction: float = 0.5, rpn_smooth_l1_beta: float = 1.0,
         box_batch_size_per_image: int = 64, box_positive_fraction: float = 0.25, box_fg_iou_thresh: float = 0.5,
         bg_iou_high: float = 0.5, bg_iou_low: float = 0.1, box_score_thresh: float = 0.05,
         box_nms_thresh: float = 0.3, box_detections_per_img: int = 100, box_smooth_l1_beta: float = 1.0):
    """A Faster R-CNN (``rpn=True``) or Fast R-CNN (``rpn=False``, proposals given) on a zoo classifier.

    `num_classes` counts the background (K + 1: 21 for VOC). `backbone_weights`: the classifier's
    weights (a visionzoo checkpoint or its torchvision/timm twin's state_dict)."""
    if num_classes < 2:
        raise UsageError(f"num_classes={num_classes} counts the background: at least 2 (one class + background)")
    trunk, later, classifier = build_trunk(backbone, in_chans, feature_stride, backbone_weights)
    head, size = _box_head(trunk, later, classifier, box_head, roi_output_size, representation_size, head_dropout)
    roi_heads = RoIHeads(head, num_classes, trunk.stride, size, box_batch_size_per_image, box_positive_fraction,
                         box_fg_iou_thresh, bg_iou_high, bg_iou_low, box_score_thresh, box_nms_thresh,
                         box_detections_per_img, box_smooth_l1_beta)
    if not rpn:
        return FastRCNN(trunk, roi_heads, num_classes)
    proposer = RegionProposalNetwork(trunk.out_channels, trunk.stride, anchor_scales, anchor_ratios, rpn_channels,
                                     rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test, rpn_post_nms_top_n_train,
                                     rpn_post_nms_top_n_test, rpn_nms_thresh, rpn_fg_iou_thresh, rpn_bg_iou_thresh,
                                     rpn_batch_size_per_image, rpn_positive_fraction, rpn_smooth_l1_beta)
    return FasterRCNN(trunk, proposer, roi_heads, num_classes)


class TwinRoIMaxPool(nn.Module):
    """torchvision's box_roi_pool interface around RoI max pooling of the single feature map."""

    def __init__(self, output_size: int, stride: int):
        super().__init__()
        self.output_size, self.stride = output_size, stride

    def forward(self, features, proposals, image_shapes):
        return roi_pool(features["0"], proposals, self.output_size, 1.0 / self.stride)


def torchvision_twin(ours, body: nn.Module):
    """torchvision's FasterRCNN on a copy of `body` with our detector's anchors, proposal counts, sampling,
    thresholds, head sizes and RoI max pooling (the side-by-side reference of tests/test_rcnn.py and
    benchmarks/detection_speed.py)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class TwinNoResize(GeneralizedRCNNTransform):
        """Batching and (identity) normalisation without resizing: images arrive at their final size."""

        def resize(self, image, target=None):
            return image, target

    body = copy.deepcopy(body)
    body.out_channels = ours.backbone.out_channels
    rpn, heads = ours.rpn, ours.roi_heads
    size, channels = heads.roi_output_size, ours.backbone.out_channels
    twin = FasterRCNN(
        body, num_classes=None, rpn_anchor_generator=AnchorGenerator((rpn.anchors.scales,), (rpn.anchors.ratios,)),
        box_head=TwoMLPHead(channels * size * size, heads.box_head.out_features),
        box_predictor=FastRCNNPredictor(heads.box_head.out_features, ours.num_classes),
        rpn_pre_nms_top_n_train=rpn.pre_nms_top_n[True], rpn_pre_nms_top_n_test=rpn.pre_nms_top_n[False],
        rpn_post_nms_top_n_train=rpn.post_nms_top_n[True], rpn_post_nms_top_n_test=rpn.post_nms_top_n[False],
        rpn_nms_thresh=rpn.nms_thresh, rpn_batch_size_per_image=rpn.batch_size_per_image,
        rpn_fg_iou_thresh=rpn.fg_iou_thresh, rpn_bg_iou_thresh=rpn.bg_iou_thresh,
        box_fg_iou_thresh=heads.fg_iou_thresh, box_bg_iou_thresh=heads.bg_iou_high,
        box_score_thresh=heads.score_thresh, box_nms_thresh=heads.nms_thresh,
        box_detections_per_img=heads.detections_per_img, box_batch_size_per_image=heads.batch_size_per_image,
        box_positive_fraction=heads.positive_fraction)
    twin.roi_heads.box_roi_pool = TwinRoIMaxPool(size, ours.backbone.stride)   # its constructor takes RoIAlign only
    in_chans = next(ours.backbone.parameters()).shape[1]
    twin.transform = TwinNoResize(1, 1, [0.0] * in_chans, [1.0] * in_chans)
    return twin


def torchvision_to_ours(state_dict: dict) -> dict:
    """torchvision's `FasterRCNN` on a plain sequential backbone (``backbone.N.…``: VGG's ``features[:30]``) →
    ours: the backbone's layers under ``backbone.body.features.N``, the RPN's ``conv.0.0`` as ``conv``."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            key = "backbone.body.features." + key[len("backbone."):]
        out[key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")] = value
    return out


_DETECTION = dict(family="R-CNN", task="detection", num_classes=21)
_TWIN = dict(twins={"torchvision": "FasterRCNN"}, converters={"torchvision": torchvision_to_ours})
# The papers print no parameter or MAC counts for their detectors.
register_model("faster_rcnn_vgg16", **_DETECTION, **_TWIN, paper=_REN, year=2015, input_size=(3, 600, 600),
               backbone="vgg16")(rcnn)
register_model("faster_rcnn_zf", **_DETECTION, paper=_REN, year=2015, input_size=(3, 600, 600),
               backbone="zfnet")(rcnn)
register_model("faster_rcnn_resnet50", **_DETECTION, paper=_REN + " (ResNet-50 C4: He et al., CVPR 2016, App. A)",
               year=2016, input_size=(3, 600, 600), backbone="resnet50", box_head="res5", head_dropout=0.0)(rcnn)
register_model("fast_rcnn_vgg16", **_DETECTION, paper=_GIRSHICK, year=2015, input_size=(3, 600, 600),
               backbone="vgg16", rpn=False)(rcnn)
register_model("fast_rcnn_zf", **_DETECTION, paper=_GIRSHICK, year=2015, input_size=(3, 600, 600),
               backbone="zfnet", rpn=False)(rcnn)
# For 128×128 grey scenes of 20–64 pixel objects on a CPU: ResNet-9 (quarter width) to stride 8,
# anchors of 16, 32, 64 pixels, a 256-256 two-FC head on 7×7 RoIs.
_SMALL = dict(_DETECTION, num_classes=11, input_size=(1, 128, 128), dataset="fashion-mnist", backbone="resnet9_slim",
              anchor_scales=(16, 32, 64), representation_size=256, head_dropout=0.0, roi_output_size=7,
              rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000)
register_model("faster_rcnn_small", **_SMALL, **_TWIN, paper=_REN + " (small CPU variant)", year=2015)(rcnn)
register_model("fast_rcnn_small", **_SMALL, paper=_GIRSHICK + " (small CPU variant)", year=2015, rpn=False)(rcnn)
