"""The segmentation task through the engine and the command line: a run's keys, exact resume, `eval`
and `segment`, the weight map in the loss, refused classification options."""
import json

import pytest
import torch
from PIL import Image

from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.metrics import confusion_matrix, scores_from_confusion
from visionzoo.tasks.segmentation import pixel_loss, predict

from conftest import assert_one_line_exit_2, assert_same_weights, cli_here, interrupt_after

SETTINGS = dict(model="unet_small", data="lv-phantom", epochs=2, batch_size=16, lr=0.01, optimizer="adamw",
                train_limit=48, val_size=16, test_limit=16, eval_batch_size=16, amp="off", seed=0,
                model_args={"base_width": 4})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "run"
    Trainer(TrainConfig(**SETTINGS, quiet=True, out=str(out))).run()
    return out


def test_run_reports_the_segmentation_keys_and_pictures(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["test_n"] == 16
    for key in ("test_dice", "test_iou", "test_pixel_acc", "test_loss"):
        assert 0 <= summary[key] <= (1 if key != "test_loss" else 10)
    assert set(summary["test_dice_per_class"]) == {"background", "myocardium", "cavity"}
    assert (run_dir / "segmentation.png").stat().st_size > 0 and (run_dir / "curves.png").exists()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and "val_dice" in records[0]


def test_interrupted_run_resumes_bit_identical(run_dir, tmp_path):
    interrupt_after(SETTINGS, 4, tmp_path / "stopped")
    Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "stopped")).run()
    assert_same_weights(run_dir, tmp_path / "stopped")


def test_eval_json_has_the_contract_keys(run_dir):
    result = cli_here("eval", run_dir, "--json", "--split", "val")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("split", "n", "dice", "iou", "pixel_acc", "dice_per_class", "iou_per_class", "loss"):
        assert key in report
    assert report["split"] == "val" and report["n"] == 16
    assert report["dice"] == pytest.approx(scores_from_report(report), abs=1e-12)


def scores_from_report(report) -> float:
    defined = [v for k, v in report["dice_per_class"].items() if k != "background" and v is not None]
    return sum(defined) / len(defined)


def test_segment_writes_overlays_masks_and_index(run_dir, tmp_path):
    result = cli_here("segment", run_dir, "--index", 0, "--index", 3, "--out", tmp_path / "seg", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [e["name"] for e in report["images"]] == ["test_0", "test_3"]
    for entry in report["images"]:
        assert (tmp_path / "seg" / entry["picture"]).exists()
        mask = Image.open(tmp_path / "seg" / entry["mask"])
        assert mask.mode == "P" and mask.size == (64, 64)
    assert "test_3.png" in (tmp_path / "seg" / "index.html").read_text()


def test_segment_an_image_of_another_size(run_dir, tmp_path):
    picture = tmp_path / "slice.png"
    Image.fromarray((torch.rand(50, 70) * 255).byte().numpy()).save(picture)
    result = cli_here("segment", run_dir, "--image", picture, "--out", tmp_path / "seg")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "seg" / "masks" / "slice.png").size == (70, 50)


def test_bad_inputs_are_one_line_exit_2(run_dir, tmp_path):
    for args, text in ((["segment", run_dir, "--index", "5000", "--out", tmp_path / "x"], "split has images"),
                       (["segment", run_dir, "--image", tmp_path / "missing.png", "--out", tmp_path / "x"], "no such"),
                       (["segment", run_dir, "--image", tmp_path / "a.png", "--index", "0", "--out", tmp_path / "x"],
                        "--index: not allowed with argument --image"),
                       (["detect", run_dir, "--out", tmp_path / "x"], "`visionzoo detect` needs a detection run"),
                       (["segment", run_dir, "--out", run_dir / "summary.json"], "is a file; give a directory"),
                       (["eval", run_dir, run_dir], "one segmentation run"),
                       (["train", "--model", "unet_small", "--data", "lv-phantom", "--mixup", "0.2", "--epochs", "1"],
                        "classification option")):
        assert_one_line_exit_2(cli_here(*args), text)


def test_weight_map_weighs_the_loss():
    logits = torch.randn(2, 3, 8, 8)
    masks = torch.randint(0, 3, (2, 8, 8))
    masks[0, 0, 0] = 255
    weights = torch.rand(2, 8, 8)
    per_pixel = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255, reduction="none")
    labelled = (masks != 255).sum()
    assert pixel_loss(logits, masks) == pytest.approx((per_pixel.sum() / labelled).item())
    assert pixel_loss(logits, masks, weights) == pytest.approx(((per_pixel * weights).sum() / labelled).item())


def test_predict_pads_to_the_divisor_and_crops_back():
    import visionzoo as vz
    model = vz.create_model("unet_small", num_classes=3, in_chans=1, base_width=4).eval()
    x = torch.randn(1, 1, 50, 70)
    with torch.no_grad():
        out = predict(model, x)
        assert out.shape == (1, 3, 50, 70)
        padded = torch.nn.functional.pad(x, (0, 10, 0, 14), mode="reflect")
        torch.testing.assert_close(out, model(padded)[..., :50, :70])
    scores = scores_from_confusion(confusion_matrix(out.argmax(1), out.argmax(1), 3))
    assert scores["pixel_acc"] == 1.0
    with torch.no_grad():   # smaller than the pad (F.pad's reflection refuses it): the reflection repeats
        tiny = torch.randn(1, 1, 1, 2)
        torch.testing.assert_close(predict(model, tiny), model(tiny[..., [0] * 16, :][..., [0, 1] * 8])[..., :1, :2])


class Wrapper(torch.nn.Module):
    """Calls a network without carrying its attributes, as DistributedDataParallel does."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_predict_reads_the_layout_from_the_network_and_runs_its_wrapper(padding):
    import visionzoo as vz
    model = vz.create_model("unet", num_classes=2, in_chans=1, base_width=2, depth=2, padding=padding).eval()
    wrapper = Wrapper(model)
    calls = []
    wrapper.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 1, 30, 26)
    with torch.no_grad():
        through_wrapper = predict(model, x, run=wrapper)
        torch.testing.assert_close(through_wrapper, predict(model, x))
    assert through_wrapper.shape == (1, 2, 30, 26) and calls


def test_pixel_loss_smooths_labels_as_cross_entropy_does():
    logits = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    masks = torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(1))
    masks[1, :2] = 255
    expected = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255, label_smoothing=0.2)
    assert pixel_loss(logits, masks, label_smoothing=0.2).item() == pytest.approx(expected.item(), rel=1e-6)
    assert pixel_loss(logits, masks, label_smoothing=0.2).item() != pytest.approx(pixel_loss(logits, masks).item())


def test_evaluate_loss_is_the_mean_over_labelled_pixels_of_the_whole_split():
    """Batches of 2, 2 and 1 masks with different numbers of void pixels: the loss is the cross-entropy averaged over
    every labelled pixel of the split (not over images or batches), the pixel accuracy over the same pixels."""
    from visionzoo.data.datasets import TensorSplit
    from visionzoo.data.loader import Normalizer
    from visionzoo.tasks.segmentation import evaluate
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8, generator=generator)
    masks = torch.randint(0, 3, (5, 6, 6), generator=generator)
    for k in range(5):
        masks[k].view(-1)[: 7 * k] = 255   # image k has 7k void pixels
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 3, 1)
    normalizer = Normalizer([0.5], [0.25])
    result = evaluate(model, TensorSplit(images, masks), normalizer, num_classes=3, batch_size=2)
    with torch.no_grad():
        logits = model(normalizer(images))
    labelled = masks != 255
    expected = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255)
    assert result["n"] == 5
    assert result["loss"] == pytest.approx(expected.item(), rel=1e-6)
    assert result["pixel_acc"] == pytest.approx((logits.argmax(1) == masks)[labelled].double().mean().item())
