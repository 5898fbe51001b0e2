"""The detection task through the engine and the command line: a run's keys and pictures, exact resume,
`eval` and `detect` of a detection run, the proposals moving with the augmented image, the Fast
R-CNN's proposals, refused options."""
from __future__ import annotations

import json

import pytest
import torch

from visionzoo.cli.main import main
from visionzoo.data import detection
from visionzoo.tasks.detection import loss_mode, with_proposals, without_proposals

from conftest import assert_one_line_exit_2, assert_same_weights, cli_here, interrupt_after, train_flags

SETTINGS = dict(model="faster_rcnn_small", data="fmnist-scenes", image_size=64, epochs=2, batch_size=4, lr=0.01,
                train_limit=16, val_size=8, test_limit=8, eval_batch_size=8, amp="off", seed=0)



@pytest.fixture(scope="module")
def small_scenes():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")
    with pytest.MonkeyPatch.context() as patch:   # eval reads whole splits: keep them small
        patch.setattr(detection, "SCENE_COUNTS", (40, 12))
        patch.setattr(detection, "SCENE_VAL", 8)
        yield


@pytest.fixture(scope="module")
def run_dir(small_scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("detection") / "run"
    assert main(["train", *train_flags(SETTINGS), "--quiet", "--out", str(out)]) == 0
    return out


def test_a_run_reports_the_detection_keys_and_pictures(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "detection" and summary["test_n"] == 8
    assert 0 <= summary["test_map"] <= summary["test_map50"] <= 1 and 0 <= summary["test_voc07_map"] <= 1
    assert len(summary["test_ap_per_class"]) == 10 and summary["test_loss"] > 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    # the monitored mAP is a validation-only metric; the four losses are recorded on both sides
    assert "val_map50" in records[0] and "train_map50" not in records[0]
    for key in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert records[0][f"train_{key}"] >= 0 and records[0][f"val_{key}"] >= 0
    assert records[0]["train_loss"] == pytest.approx(sum(records[0][f"train_{key}"] for key in (
        "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")))
    assert (run_dir / "detections.png").stat().st_size > 0 and (run_dir / "curves.png").exists()
    assert json.loads((run_dir / "model.json").read_text())["kwargs"]["num_classes"] == 11   # K + background


def test_an_interrupted_run_resumes_bit_identical(run_dir, tmp_path):
    interrupt_after(SETTINGS, 3, tmp_path / "stopped")
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_weights(run_dir, tmp_path / "stopped")


def test_eval_json_has_the_contract_keys(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--split", "val"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("split", "n", "map50", "voc07_map", "map", "ap_per_class", "loss"):
        assert key in report
    assert report["n"] == 8 and report["split"] == "val"
    assert set(report["ap_per_class"]) == set(json.loads((run_dir / "model.json").read_text())["classes"])


def test_detect_writes_pictures_and_detections_json(run_dir, tmp_path, capsys):
    out = tmp_path / "detected"
    assert main(["detect", str(run_dir), "--index", "1", "--score-threshold", "0", "--out", str(out), "--json"]) == 0
    report = json.loads((out / "detections.json").read_text())
    assert [image["name"] for image in report["images"]] == ["test_1"] and (out / "test_1.png").stat().st_size > 0
    for found in report["images"][0]["detections"]:
        x1, y1, x2, y2 = found["box"]
        assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 64 and found["label"] in report["classes"]
    assert_one_line_exit_2(cli_here("detect", run_dir, "--index", "99", "--out", out), "--index 99", "has images 0..")


def test_a_picture_file_gets_its_boxes_in_its_own_pixels(run_dir, tmp_path):
    from PIL import Image
    path = tmp_path / "wide.png"
    Image.fromarray((torch.rand(40, 160) * 255).byte().numpy(), "L").save(path)
    out = tmp_path / "file"
    assert main(["detect", str(run_dir), "--image", str(path), "--score-threshold", "0", "--out", str(out)]) == 0
    for found in json.loads((out / "detections.json").read_text())["images"][0]["detections"]:
        x1, y1, x2, y2 = found["box"]
        assert x2 <= 160 + 1e-3 and y2 <= 40 + 1e-3   # mapped back from the network's 64×64 input


def test_proposals_travel_with_the_true_boxes_through_the_augmentation():
    target = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 40.0]]), "labels": torch.tensor([3]),
              "difficult": torch.tensor([False])}
    proposals = torch.tensor([[0.0, 0.0, 20.0, 20.0], [32.0, 8.0, 60.0, 60.0]])
    image = torch.zeros(1, 64, 64, dtype=torch.uint8)
    moved_image, moved = detection.move_with_boxes(image, with_proposals(target, proposals), flip=True)
    back = without_proposals(moved)
    assert torch.equal(back["labels"], target["labels"]) and torch.equal(back["difficult"], target["difficult"])
    assert torch.equal(back["boxes"], torch.tensor([[34.0, 10.0, 54.0, 40.0]]))       # mirrored: x → 64 − x
    assert torch.equal(back["proposals"], torch.tensor([[44.0, 0.0, 64.0, 20.0], [4.0, 8.0, 32.0, 60.0]]))


def test_the_validation_loss_pass_leaves_batch_norm_statistics_and_modes_alone():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Dropout(0.5))
    net.eval()
    before = net[1].running_mean.clone()
    with loss_mode(net):
        assert net.training and not net[1].training and not net[2].training
        net(torch.randn(4, 1, 8, 8))
    assert torch.equal(net[1].running_mean, before) and not net.training


def test_fast_rcnn_trains_on_selective_search_proposals(small_scenes, tmp_path):
    settings = {**SETTINGS, "model": "fast_rcnn_small", "epochs": 1, "train_limit": 8}
    out = tmp_path / "fast"
    assert main(["train", *train_flags(settings), "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert summary["task"] == "detection" and config["resolved"]["proposals"] == "selective-search"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "train_loss_objectness" not in records[0] and records[0]["train_loss_classifier"] > 0


def test_classification_options_and_an_alternating_fast_rcnn_are_refused(small_scenes, tmp_path):
    for option in (["--mixup", "0.2"], ["--gauss-noise", "0.1"]):
        refused = cli_here("train", *train_flags(SETTINGS), *option, "--out", tmp_path / "a")
        assert_one_line_exit_2(refused, f"{option[0]} is a classification option")
    settings = {**SETTINGS, "model": "fast_rcnn_small", "training_scheme": "alternating"}
    assert_one_line_exit_2(cli_here("train", *train_flags(settings), "--out", tmp_path / "b"), "trains an RPN")


@pytest.mark.slow   # two processes each render the scene set and build the detector: ≈ 30 s
def test_two_process_ddp_trains_a_detector(small_scenes, tmp_path):
    import os
    import subprocess
    import sys
    flags = train_flags({**SETTINGS, "epochs": 1})
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "visionzoo", "train", *flags, "--quiet", "--out", str(tmp_path / "two")],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["task"] == "detection" and 0 <= summary["test_map50"] <= 1
    assert main(["eval", str(tmp_path / "two"), "--json"]) == 0


def test_fast_rcnn_background_starts_at_iou_0_1_inclusive():
    # Fast R-CNN Sec. 2.3: background RoIs have their maximum IoU in [0.1, 0.5); below 0.1 they are ignored
    from torch import nn

    from visionzoo.models.rcnn import RoIHeads

    class Head(nn.Module):
        out_features = 4
    heads = RoIHeads(Head(), num_classes=3, stride=16, batch_size_per_image=64, bg_iou_low=0.1, bg_iou_high=0.5)
    truth = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 1.0],      # IoU 10/100 = 0.1 exactly: background
                              [0.0, 0.0, 10.0, 0.5]])     # IoU 0.05: ignored
    boxes, labels, _ = heads.sample([proposals], [{"boxes": truth, "labels": torch.tensor([2])}],
                                    torch.Generator().manual_seed(0))
    kept = {tuple(box.tolist()): int(label) for box, label in zip(boxes[0], labels[0])}
    assert kept == {(0.0, 0.0, 10.0, 1.0): 0, (0.0, 0.0, 10.0, 10.0): 2}


def test_box_decoding_undoes_encoding_with_unequal_weights_as_torchvision_does():
    # Faster R-CNN Eq. 2 with per-coordinate weights (w_x, w_y, w_w, w_h): equal to torchvision's BoxCoder
    from torchvision.models.detection._utils import BoxCoder

    from visionzoo.layers.detection import decode_boxes, encode_boxes
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(6, 2, generator=g) * 50
    reference = torch.cat([reference, reference + 5 + torch.rand(6, 2, generator=g) * 40], 1)
    deltas = torch.randn(6, 4, generator=g) * 0.5
    weights = (10.0, 8.0, 5.0, 3.0)
    decoded = decode_boxes(deltas, reference, weights)
    torch.testing.assert_close(decoded, BoxCoder(weights).decode_single(deltas, reference))
    torch.testing.assert_close(encode_boxes(decoded, reference, weights), deltas, atol=1e-4, rtol=1e-4)


# ---- evaluate / detect / validation_losses on a stand-in detector (no training) ------------------------------

class FixedDetector(torch.nn.Module):
    """A stand-in detector: in evaluation, image i (its first pixel holds i) gets `outputs[i]`; in training, one loss
    per image equal to that first pixel, averaged over the batch as a detector's losses are."""

    def __init__(self, outputs=()):
        super().__init__()
        self.outputs = outputs

    def forward(self, images, targets=None, generator=None):
        index = (images[:, 0, 0, 0] * 255).round().long().tolist()   # Normalizer(mean 0, std 1): pixel / 255
        if self.training:
            return {"loss_classifier": images[:, 0, 0, 0].mean() * 255, "loss_box_reg": torch.tensor(1.0)}
        return [self.outputs[i] for i in index]


class Scenes:
    """A detection split: uint8 images whose first pixel is their index, with the given targets."""

    def __init__(self, targets):
        self.targets = targets
        self.images = torch.zeros(len(targets), 1, 8, 8, dtype=torch.uint8)
        self.images[:, 0, 0, 0] = torch.arange(len(targets), dtype=torch.uint8)

    def __len__(self):
        return len(self.targets)

    def fetch(self, index):
        return self.images[index], [self.targets[i] for i in index.tolist()]


def detections(boxes, scores, labels) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels, dtype=torch.long)}


def test_evaluate_reports_coco_map_over_ten_thresholds_voc07_and_ap_per_class_by_name():
    """Class "a" (label 1): one detection of IoU 0.82 → AP 1 at IoU .50…80 and 0 at .85…95 (map 0.7, map50 1).
    Class "b" (label 2): one of its two boxes found → COCO AP 51/101, VOC07 11-point 6/11. Class "c": no boxes."""
    from visionzoo.data.loader import Normalizer
    from visionzoo.tasks.detection import evaluate
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]),
              "labels": torch.tensor([1, 2, 2])}
    found = detections([[0.0, 0, 10, 8.2], [20, 20, 30, 30]], [0.9, 0.8], [1, 2])
    result = evaluate(FixedDetector([found]), Scenes([target]), Normalizer([0.0], [1.0]), classes=["a", "b", "c"],
                      batch_size=4, device="cpu", with_loss=False)
    assert result["map50"] == pytest.approx((1 + 51 / 101) / 2)
    assert result["map"] == pytest.approx((0.7 + 51 / 101) / 2)
    assert result["voc07_map"] == pytest.approx((1 + 6 / 11) / 2)
    assert result["ap_per_class"] == pytest.approx({"a": 1.0, "b": 51 / 101, "c": None})
    assert result["n"] == 1 and result["detections"] == 2


def test_detect_keeps_detections_scoring_exactly_the_threshold():
    from visionzoo.data.loader import Normalizer
    from visionzoo.tasks.detection import detect
    found = detections([[0.0, 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6]], [0.25, 0.5, 0.75], [1, 2, 3])
    kept = detect(FixedDetector([found]), Scenes([{}]), Normalizer([0.0], [1.0]), batch_size=1, device="cpu",
                  score_threshold=0.5)
    assert kept[0]["scores"].tolist() == [0.5, 0.75] and kept[0]["labels"].tolist() == [2, 3]


def test_validation_losses_are_averaged_over_images_not_batches():
    """Batches of 2, 2 and 1 images whose losses are their mean first pixel 0…4: the mean over the five images is
    2 (a mean of the batch means would be (0.5 + 2.5 + 4) / 3); `loss` is the sum of the detector's losses."""
    from visionzoo.data.loader import Normalizer
    from visionzoo.tasks.detection import validation_losses
    losses = validation_losses(FixedDetector(), Scenes([{}] * 5), Normalizer([0.0], [1.0]), batch_size=2,
                               device="cpu")
    assert losses == pytest.approx({"loss_classifier": 2.0, "loss_box_reg": 1.0, "loss": 3.0})


def test_alternating_training_gives_each_stage_an_equal_share_of_the_steps():
    """Faster R-CNN's 4-step training: stages 1, 2, 3, 4 over consecutive quarters of the run (halves, 1 and 2,
    when unshared)."""
    from types import SimpleNamespace

    from visionzoo.tasks.detection import DetectionTask
    task = DetectionTask.__new__(DetectionTask)
    task.data = SimpleNamespace(train=range(16))
    for scheme, expected in (("alternating", [1, 1, 2, 2, 3, 3, 4, 4]), ("unshared", [1, 1, 1, 1, 2, 2, 2, 2])):
        task.cfg = SimpleNamespace(training_scheme=scheme, epochs=2, batch_size=4)   # 2 epochs × 4 steps
        stages = []
        for step in range(8):
            task.phases(step)
            stages.append(task.stage)
        assert stages == expected


def test_chance_loss_is_that_of_a_uniform_guess():
    """A uniform guess over the K classes and the background costs ln(K + 1) in the head's cross-entropy, and
    ln 2 in the RPN's binary objectness loss (a Fast R-CNN has no RPN)."""
    import torch.nn.functional as F

    from visionzoo.tasks.detection import DetectionTask
    task = DetectionTask.__new__(DetectionTask)
    task.classes = ["a", "b", "c"]
    uniform_head = F.cross_entropy(torch.zeros(1, 4), torch.tensor([2])).item()
    uniform_objectness = F.binary_cross_entropy_with_logits(torch.zeros(1), torch.ones(1)).item()
    task.has_rpn = True
    assert task.chance_loss == pytest.approx(uniform_head + uniform_objectness)
    task.has_rpn = False
    assert task.chance_loss == pytest.approx(uniform_head)
