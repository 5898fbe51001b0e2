"""Render for CNN's viewpoint network, its geometry-aware loss, the viewpoint metrics and the viewpoint
task through the engine and the command line (a small fake data set of the `renders` layout)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import visionzoo as vz
from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.data.datasets import DataBundle, TensorSplit
from visionzoo.engine.trainer import Interrupted, TrainConfig, Trainer
from visionzoo.metrics import (
    accuracy_within,
    angle_error,
    circular_difference,
    geodesic_distance,
    median_angle_error,
    rotation_from_viewpoint,
)
from visionzoo.models.render_for_cnn import select_category
from visionzoo.tasks import viewpoint as task_module
from visionzoo.tasks.viewpoint import (
    PAPER_SOFT_LABELS,
    geometry_aware_loss,
    mirror_viewpoints,
    soft_viewpoint_labels,
    viewpoint_loss,
)

from conftest import assert_one_line_exit_2, cli_here

CATEGORIES = ["box", "wedge", "arch"]


# ---- the network ---------------------------------------------------------------------------------

def test_every_category_has_three_heads_of_360_bins():
    model = vz.create_model("render_for_cnn", num_classes=4)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4, 3, 360)
    assert vz.model_card("render_for_cnn")["task"] == "viewpoint"
    with torch.device("meta"):   # the paper's CaffeNet network at its 227×227 input, without the memory
        paper = vz.create_model("render_for_cnn_alexnet")
        assert paper(torch.empty(1, 3, 227, 227)).shape == (1, 12, 3, 360)
        assert paper.heads["azimuth"].out_features == 12 * 360 and paper.num_features == 4096
        resnet = vz.create_model("render_for_cnn_resnet18", num_classes=2, image_size=32)
        assert resnet(torch.empty(2, 3, 32, 32)).shape == (2, 2, 3, 360)
    assert vz.create_model("render_for_cnn", base_width=4).trunk[0].out_channels == 4
    with pytest.raises(UsageError, match="base_width"):
        vz.create_model("render_for_cnn_alexnet", base_width=4)


def test_the_true_categorys_head_alone_is_used_and_trained():
    torch.manual_seed(0)
    model = vz.create_model("render_for_cnn", num_classes=3, base_width=4).eval()
    x, categories = torch.randn(4, 3, 16, 16), torch.tensor([2, 0, 2, 1])
    everything = model(x)
    chosen = select_category(everything, categories)
    assert all(torch.equal(chosen[i], everything[i, c]) for i, c in enumerate(categories.tolist()))
    torch.testing.assert_close(model.viewpoint_logits(x, categories), chosen)
    # one image of category 1: only category 1's rows of each head receive a gradient
    loss = viewpoint_loss(model.viewpoint_logits(x[:1], torch.tensor([1])), torch.tensor([[10, 5, 350]]))
    loss.backward()
    for head in model.heads.values():
        rows = head.weight.grad.view(3, 360, -1).abs().sum((1, 2))
        assert rows[1] > 0 and rows[0] == 0 and rows[2] == 0


def test_a_zoo_classifier_without_a_linear_head_is_refused_in_one_line():
    with pytest.raises(UsageError, match="backbone=squeezenet1_0 .*linear classifier") as caught:
        vz.create_model("render_for_cnn", backbone="squeezenet1_0")
    assert "\n" not in str(caught.value)


# ---- the geometry-aware loss -----------------------------------------------------------------------

def test_with_sigma_zero_the_loss_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(5, 360), torch.tensor([0, 17, 180, 359, 42])
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(geometry_aware_loss(logits, target, 0.0), expected)
    torch.testing.assert_close(geometry_aware_loss(logits, target, 1e-3), expected)   # the limit σ → 0
    assert not torch.allclose(geometry_aware_loss(logits, target, 5.0), expected)


def test_soft_labels_are_normalised_circular_and_windowed():
    labels = soft_viewpoint_labels(torch.tensor([0, 200]), 360, 5.0, bandwidth=15)
    torch.testing.assert_close(labels.sum(1), torch.ones(2))
    assert labels[0, 0] == labels[0].max() and labels[0, 3] == pytest.approx(labels[0, 357].item())
    assert labels[0, 15] > 0 and labels[0, 16] == 0 and labels[0, 344] == 0 and labels[0, 345] > 0
    assert labels[1, 203] / labels[1, 200] == pytest.approx(math.exp(-3 / 5), rel=1e-5)


def test_the_loss_is_minimised_by_the_soft_label_distribution():
    target = torch.tensor([3, 250])
    soft = soft_viewpoint_labels(target, 360, 5.0, dtype=torch.float64)   # full support: log is finite
    best = soft.log().requires_grad_()
    loss = geometry_aware_loss(best.double(), target, 5.0)
    loss.backward()
    assert best.grad.abs().max() < 1e-6   # ∂L/∂logits = softmax − soft label = 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        other = best.detach() + 0.3 * torch.randn(best.shape, generator=generator, dtype=torch.float64)
        assert geometry_aware_loss(other, target, 5.0) > loss


def test_a_guess_near_the_truth_costs_less_than_a_far_one_around_the_circle():
    target = torch.tensor([0])

    def cost(guess_bin):
        return geometry_aware_loss(8.0 * F.one_hot(torch.tensor([guess_bin]), 360).float(), target, 5.0).item()

    near = [cost(b) for b in range(0, 31)]
    assert all(a < b for a, b in zip(near, near[1:]))   # strictly increasing with the circular distance
    far = [cost(b) for b in range(30, 181, 30)]   # exp(−d/σ) vanishes in float32 out here: not decreasing
    assert all(a <= b for a, b in zip(far, far[1:])) and near[-1] < far[-1]
    assert cost(359) == pytest.approx(cost(1)) and cost(350) == pytest.approx(cost(10))   # wraps 359 → 0
    assert cost(359) < cost(5)


def test_the_three_angles_losses_are_summed_with_the_papers_settings():
    torch.manual_seed(1)
    logits, bins = torch.randn(3, 3, 360), torch.tensor([[0, 10, 355], [90, 0, 1], [359, 20, 0]])
    expected = sum(geometry_aware_loss(logits[:, k], bins[:, k], *PAPER_SOFT_LABELS[angle])
                   for k, angle in enumerate(("azimuth", "elevation", "inplane")))
    torch.testing.assert_close(viewpoint_loss(logits, bins), expected)
    plain = sum(F.cross_entropy(logits[:, k], bins[:, k]) for k in range(3))
    torch.testing.assert_close(viewpoint_loss(logits, bins, "softmax"), plain)
    torch.testing.assert_close(viewpoint_loss(logits, bins, sigma=0.0), plain)


def test_the_tilt_weight_scales_only_the_elevation_and_in_plane_losses():
    torch.manual_seed(2)
    logits, bins = torch.randn(4, 3, 360), torch.tensor([[0, 10, 355], [90, 0, 1], [359, 20, 0], [180, 350, 12]])
    parts = [geometry_aware_loss(logits[:, k], bins[:, k], *PAPER_SOFT_LABELS[angle])
             for k, angle in enumerate(("azimuth", "elevation", "inplane"))]
    torch.testing.assert_close(viewpoint_loss(logits, bins, tilt_weight=0.1), parts[0] + 0.1 * (parts[1] + parts[2]))
    torch.testing.assert_close(viewpoint_loss(logits, bins, tilt_weight=0.0), parts[0])
    plain = [F.cross_entropy(logits[:, k], bins[:, k]) for k in range(3)]
    torch.testing.assert_close(viewpoint_loss(logits, bins, "softmax", tilt_weight=0.5),
                               plain[0] + 0.5 * (plain[1] + plain[2]))


# ---- the metrics -----------------------------------------------------------------------------------

def test_identical_viewpoints_have_no_error_and_the_error_is_symmetric():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(50, 3, generator=generator, dtype=torch.float64) * 360
    b = torch.rand(50, 3, generator=generator, dtype=torch.float64) * 360
    torch.testing.assert_close(angle_error(a, a), torch.zeros(50, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(angle_error(a, b), angle_error(b, a))
    assert ((angle_error(a, b) >= 0) & (angle_error(a, b) <= 180)).all()


@pytest.mark.parametrize("first, second, expected", [(10, 40, 30), (350, 10, 20), (0, 180, 180), (90, 270, 180)])
def test_a_pure_azimuth_or_inplane_difference_is_that_angle(first, second, expected):
    azimuths = torch.tensor([[first, 0.0, 0.0]]), torch.tensor([[second, 0.0, 0.0]])
    assert angle_error(*azimuths).item() == pytest.approx(expected, abs=1e-6)
    inplanes = torch.tensor([[0.0, 0.0, first]]), torch.tensor([[0.0, 0.0, second]])
    assert angle_error(*inplanes).item() == pytest.approx(expected, abs=1e-6)
    assert angle_error(torch.tensor([first]), torch.tensor([second])).item() == pytest.approx(expected)
    assert circular_difference(torch.tensor(first), torch.tensor(second)).item() == pytest.approx(expected)


def test_rotation_and_geodesic_distance_match_scipy():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    generator = torch.Generator().manual_seed(1)
    views = torch.rand(20, 2, 3, generator=generator, dtype=torch.float64) * torch.tensor([360.0, 100.0, 60.0]) \
        - torch.tensor([0.0, 50.0, 30.0])
    theirs = rotation.from_euler("ZXZ", torch.stack([views[..., 2], views[..., 1] - 90, -views[..., 0]], -1)
                                 .reshape(-1, 3).numpy(), degrees=True)
    ours = rotation_from_viewpoint(views)
    torch.testing.assert_close(ours.reshape(-1, 3, 3), torch.from_numpy(theirs.as_matrix()))
    first, second = rotation.from_matrix(ours[:, 0].numpy()), rotation.from_matrix(ours[:, 1].numpy())
    expected = torch.from_numpy((first.inv() * second).magnitude()).rad2deg()
    torch.testing.assert_close(geodesic_distance(ours[:, 0], ours[:, 1]), expected)


def test_median_and_accuracy_within_pi_over_6():
    errors = torch.tensor([40.0, 5.0, 29.9, 30.0, 10.0, 100.0])
    assert median_angle_error(errors) == pytest.approx((29.9 + 30.0) / 2)   # even count: mean of the middle two
    assert median_angle_error(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert accuracy_within(errors) == pytest.approx(3 / 6)   # strictly below 30°
    assert accuracy_within(errors, math.pi / 2) == pytest.approx(5 / 6)
    assert math.isnan(median_angle_error(torch.zeros(0)))


def test_an_error_of_exactly_the_threshold_is_a_miss():
    """Tulsiani & Malik: Acc_θ is the fraction of errors *less than* θ; at θ itself the viewpoint is wrong."""
    for threshold in (math.pi / 6, math.pi / 4, math.pi / 2):
        at = math.degrees(threshold)   # 30° (to float rounding), 45°, 90°
        errors = torch.tensor([at, math.nextafter(at, 0.0), 0.0, math.nextafter(at, 180.0)], dtype=torch.float64)
        assert accuracy_within(errors, threshold) == pytest.approx(2 / 4)


def test_a_mirrored_image_gets_the_mirrored_viewpoint():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    labels = torch.tensor([[1, 30, 350, 10], [0, 200, 20, 0]])
    flipped, relabelled = mirror_viewpoints(images, labels, torch.tensor([True, False]))
    assert torch.equal(flipped[0], images[0].flip(2)) and torch.equal(flipped[1], images[1])
    assert relabelled.tolist() == [[1, 330, 350, 350], [0, 200, 20, 0]]
    again, back = mirror_viewpoints(flipped, relabelled, torch.tensor([True, False]))
    assert torch.equal(again, images) and torch.equal(back, labels)


# ---- the task, the engine and the command line ------------------------------------------------------

def fake_renders(spec, *, data_dir=None, val_size=0.1, seed=0, image_size=None, train_size=None, instances=None,
                 background="crops"):
    """A stand-in of data/viewpoint.py's `renders` layout: uint8 (N, 3, 16, 16), labels (N, 4) =
    (category, azimuth, elevation mod 360, in-plane mod 360); the test split fixed, val carved with the seed."""
    def make(n, stream):
        generator = torch.Generator().manual_seed(stream)
        labels = torch.stack([torch.randint(0, len(CATEGORIES), (n,), generator=generator),
                              torch.randint(0, 360, (n,), generator=generator),
                              torch.randint(-10, 40, (n,), generator=generator) % 360,
                              torch.randint(-15, 16, (n,), generator=generator) % 360], 1)
        images = torch.randint(0, 256, (n, 3, 16, 16), generator=generator, dtype=torch.uint8)
        return TensorSplit(images, labels)
    train, test = make(96, 1), make(24, 2)
    count = int(val_size) if val_size >= 1 else max(1, round(val_size * len(train)))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return DataBundle("fake-renders", train.take(order[count:]), train.take(order[:count]), test, list(CATEGORIES),
                      mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


@pytest.fixture(scope="module", autouse=True)
def fake_data():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(task_module, "load_viewpoint_data", fake_renders)
        yield


def config(out, **overrides) -> TrainConfig:
    settings = dict(model="render_for_cnn", data="fake-renders", epochs=2, batch_size=8, lr=0.01, optimizer="adamw",
                    train_limit=48, val_size=16, test_limit=16, eval_batch_size=16, amp="off", quiet=True,
                    out=str(out), seed=0, model_args={"base_width": 4})
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("viewpoint") / "run"
    code = main(["train", "--model", "render_for_cnn", "--data", "fake-renders", "--epochs", "2", "--batch-size", "8",
                 "--lr", "0.01", "--optimizer", "adamw", "--train-limit", "48", "--val-size", "16", "--test-limit",
                 "16", "--eval-batch-size", "16", "--amp", "off", "--quiet", "--model-arg", "base_width=4",
                 "--out", str(out)])
    assert code == 0
    return out


def test_a_cli_run_writes_the_viewpoint_summary_and_pictures(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "viewpoint" and summary["test_n"] == 16
    for key in ("test_top1", "test_acc_pi6"):
        assert 0 <= summary[key] <= 1
    assert 0 <= summary["test_median_angle_error"] <= 180 and summary["test_loss"] > 0
    assert 0 <= summary["test_median_azimuth_error"] <= 180   # the azimuth alone: Render for CNN's headline error
    assert set(summary["test_median_angle_error_per_category"]) == set(CATEGORIES)
    assert (run_dir / "viewpoints.png").stat().st_size > 0 and (run_dir / "curves.png").exists()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and {"val_acc_pi6", "val_top1", "val_loss"} <= set(records[0])
    assert "warning" not in records[0]   # the loss of a uniform guess is 3 ln 360, not ln K
    assert json.loads((run_dir / "model.json").read_text())["task"] == "viewpoint"


def test_eval_json_has_the_contract_keys_and_matches_the_summary(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("split", "n", "top1", "median_angle_error", "acc_pi6", "loss", "median_angle_error_per_category",
                "median_azimuth_error", "model", "data"):
        assert key in report
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["n"] == 24 and report["split"] == "test"   # eval reads the whole test split, not --test-limit's
    assert main(["eval", str(run_dir), "--json", "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 16
    assert summary["test_n"] == 16


def test_eval_refuses_classifier_options_in_one_line(run_dir):
    assert_one_line_exit_2(cli_here("eval", run_dir, "--tta", "flip"), "--tta is for classifiers")
    assert_one_line_exit_2(cli_here("eval", run_dir, run_dir), "ensembles are for classifiers")


def test_an_interrupted_run_resumes_bit_identical(run_dir, tmp_path):
    stopped = Trainer(config(tmp_path / "stopped"))
    original = stopped.task.training_step

    def interrupt_after_4_steps(*args):
        if stopped.global_step == 4:
            stopped.stop_requested = True
        return original(*args)

    stopped.task.training_step = interrupt_after_4_steps
    with pytest.raises(Interrupted):
        stopped.run()
    Trainer(TrainConfig(quiet=True), resume=str(tmp_path / "stopped")).run()
    from safetensors.torch import load_file
    first = load_file(str(run_dir / "model.safetensors"))   # the same settings, run without a stop
    again = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_flip_mirrors_images_with_their_labels_and_classification_options_are_refused(tmp_path):
    trainer = Trainer(config(tmp_path / "flip", flip=True, crop=0))
    images, labels = trainer.task.data.train.fetch(torch.arange(8))
    shown, relabelled = trainer.task.prepare((images, labels), torch.Generator().manual_seed(0))
    mirrored = ~(relabelled == labels).all(1)
    assert mirrored.any() and (~mirrored).any()
    assert torch.equal(shown[mirrored], images[mirrored].flip(3))
    assert torch.equal(relabelled[mirrored, 1], (-labels[mirrored, 1]) % 360)
    with pytest.raises(UsageError, match="--mixup is a classification option"):
        Trainer(config(tmp_path / "mixup", mixup=0.2))


def test_the_geometric_loss_learns_a_viewpoint_signal():
    """On images whose azimuth is drawn in them (a bright column at x ∝ θ), a few dozen steps bring the
    median azimuth error far below chance (90°)."""
    torch.manual_seed(0)
    n, side = 256, 16
    azimuth = torch.randint(0, 360, (n,))
    images = torch.zeros(n, 3, side, side)
    images[torch.arange(n), :, :, (azimuth * side // 360)] = 1.0
    labels = torch.stack([torch.zeros(n, dtype=torch.long), azimuth, torch.zeros(n, dtype=torch.long),
                          torch.zeros(n, dtype=torch.long)], 1)
    model = vz.create_model("render_for_cnn", num_classes=1, base_width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        index = torch.randint(0, n, (32,))
        loss = viewpoint_loss(model.viewpoint_logits(images[index], labels[index, 0]), labels[index, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model.viewpoint_logits(images, labels[:, 0])[:, 0].argmax(-1)
    assert median_angle_error(circular_difference(predicted, azimuth)) < 45


# ---- the task's pieces with known answers ----------------------------------------------------------------

def test_a_given_sigma_sets_the_window_to_the_ceiling_of_three_sigma():
    assert task_module.soft_label_settings(2.5) == {angle: (2.5, 8) for angle in ("azimuth", "elevation", "inplane")}
    assert task_module.soft_label_settings(None) == PAPER_SOFT_LABELS


def test_labels_are_split_into_category_and_bins_modulo_360():
    categories, bins = task_module.split_labels(torch.tensor([[2, -30, -10, 365], [1, 0, 359, 720]]))
    assert categories.tolist() == [2, 1] and bins.tolist() == [[330, 350, 5], [0, 359, 0]]


def test_predicted_viewpoints_are_the_argmax_bins_in_degrees():
    logits = torch.zeros(1, 3, 36)
    logits[0, 0, 9], logits[0, 1, 0], logits[0, 2, 35] = 1.0, 1.0, 1.0
    assert task_module.predicted_viewpoints(logits).tolist() == [[90.0, 0.0, 350.0]]   # 36 bins of 10°
    assert task_module.predicted_viewpoints(torch.eye(360)[[7, 0, 359]][None]).tolist() == [[7.0, 0.0, 359.0]]


class FixedViews(torch.nn.Module):
    """A stand-in network: image i (its first pixel holds i) gets, for every category's head, logits peaked at the
    bins of `views[i]` (azimuth, elevation, in-plane)."""

    def __init__(self, views, categories: int = 3):
        super().__init__()
        self.logits = torch.stack([F.one_hot(torch.tensor(view), 360).float() * 20 for view in views])
        self.categories = categories

    def forward(self, x):
        index = (x[:, 0, 0, 0] * 255).round().long()   # Normalizer(mean 0, std 1): pixel / 255
        return self.logits[index][:, None].expand(-1, self.categories, -1, -1)


def test_evaluate_scores_a_known_set_of_predictions():
    """Errors 0°, 20° (azimuth), 40° (azimuth), 100° (in-plane, azimuth right): top-1 (azimuth bin) 2/4, median
    error 30°, Acc_π/6 2/4 (errors below 30°), median azimuth error 10°; per category (box: images 0, 1; wedge: 2, 3;
    arch: none) medians 10° and 70°, Acc_π/6 1 and 0. The loss is the mean over the images."""
    from visionzoo.data.datasets import TensorSplit
    from visionzoo.data.loader import Normalizer
    labels = torch.tensor([[0, 10, 0, 0], [0, 100, 0, 0], [1, 200, 0, 0], [1, 300, 0, 0]])
    views = [[10, 0, 0], [120, 0, 0], [240, 0, 0], [300, 0, 100]]
    images = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(4, dtype=torch.uint8)
    model = FixedViews(views)
    result = task_module.evaluate(model, TensorSplit(images, labels), Normalizer([0.0] * 3, [1.0] * 3),
                                  classes=CATEGORIES, batch_size=3)
    assert result["n"] == 4 and result["top1"] == 0.5
    assert result["median_angle_error"] == pytest.approx(30.0) and result["acc_pi6"] == 0.5
    assert result["median_azimuth_error"] == pytest.approx(10.0)
    assert result["median_angle_error_per_category"] == pytest.approx({"box": 10.0, "wedge": 70.0, "arch": None})
    assert result["acc_pi6_per_category"] == {"box": 1.0, "wedge": 0.0, "arch": None}
    logits = model(images.float() / 255)[:, 0]
    assert result["loss"] == pytest.approx(viewpoint_loss(logits, labels[:, 1:]).item(), rel=1e-6)


def test_training_step_counts_errors_below_30_degrees_and_exact_azimuth_bins(tmp_path):
    from visionzoo.data.loader import Normalizer
    task = Trainer(config(tmp_path / "run", crop=0)).task
    labels = torch.tensor([[0, 10, 0, 0], [0, 100, 0, 0], [1, 200, 0, 0], [1, 300, 0, 0]])
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(4, dtype=torch.uint8)
    task.net, task.normalizer = FixedViews([[10, 0, 0], [120, 0, 0], [240, 0, 0], [300, 0, 100]]), \
        Normalizer([0.0] * 3, [1.0] * 3)
    step = task.training_step((images, labels), "model", torch.Generator())
    assert step.count == 4 and step.sums["acc_pi6"].item() == 2 and step.sums["top1"].item() == 2


def test_chance_loss_is_the_loss_of_a_uniform_guess_with_the_tilt_weight(tmp_path):
    task = Trainer(config(tmp_path / "run", tilt_weight=0.1)).task
    uniform = torch.zeros(2, 3, 360)
    bins = torch.tensor([[0, 10, 355], [90, 0, 1]])
    assert task.chance_loss == pytest.approx(viewpoint_loss(uniform, bins, tilt_weight=0.1).item(), rel=1e-6)
    assert task.chance_loss == pytest.approx(viewpoint_loss(uniform, bins, "softmax", tilt_weight=0.1).item(), rel=1e-6)


def test_viewpoint_heads_start_from_normal_0_0_01_and_zero_bias():
    """Sec. 4.2 / the released model: the per-angle C × 360 heads are initialised N(0, 0.01²), biases 0."""
    torch.manual_seed(0)
    model = vz.create_model("render_for_cnn", base_width=4)
    for head in model.heads.values():
        n = head.weight.numel()
        assert abs(head.weight.std().item() / 0.01 - 1) < 5 / math.sqrt(2 * n) and not head.bias.any()


def test_caffenet_biases_are_one_in_conv2_conv4_conv5_and_the_fc_layers():
    """AlexNet Sec. 5 (CaffeNet's trunk): biases 1 in conv2, conv4, conv5, fc6 and fc7; 0 in conv1 and conv3."""
    trunk = vz.create_model("render_for_cnn_alexnet", num_classes=1, image_size=67).trunk
    layers = [m for m in trunk.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 7
    assert [float(m.bias.detach().unique()) for m in layers] == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_small_trunk_pools_to_a_4x4_map_before_its_fully_connected_layer():
    """The small trunk's FC layer sees a 4 × 4 map (where each feature is), not a global average."""
    model = vz.create_model("render_for_cnn", base_width=4)
    pool = next(m for m in model.trunk if isinstance(m, torch.nn.AdaptiveAvgPool2d))
    fc = next(m for m in model.trunk if isinstance(m, torch.nn.Linear))
    assert pool(torch.randn(1, 32, 8, 8)).shape == (1, 32, 4, 4) and fc.in_features == 32 * 16
