"""Evaluation: ten-crop views, flip/multi-scale TTA and ensembles as averages of softmaxes,
per-class accuracy, and `visionzoo eval` with several checkpoints."""
import json
import math

import pytest
import torch
from torch import nn

from visionzoo.cli.main import main
from visionzoo.data.datasets import TensorSplit, load_data
from visionzoo.data.loader import Normalizer
from visionzoo.tasks.classification import MULTISCALE, evaluate, log_probabilities, members, tencrop_views

from conftest import assert_one_line_exit_2, cli_here

IDENTITY = Normalizer([0.0], [1 / 255])   # leaves pixel values as they are


class Linear(nn.Module):
    def __init__(self, seed, side=6, classes=4):
        super().__init__()
        self.fc = nn.Linear(side * side, classes)
        torch.nn.init.normal_(self.fc.weight, std=0.003, generator=torch.Generator().manual_seed(seed))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_tencrop_gives_four_corners_the_centre_and_their_mirrors():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    crops = tencrop_views(x, padding=1)
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    expected = [padded[..., :6, :6], padded[..., :6, 2:], padded[..., 2:, :6], padded[..., 2:, 2:],
                padded[..., 1:7, 1:7]]
    assert len(crops) == 10
    for crop, window in zip(crops[:5], expected):
        assert torch.equal(crop, window)
    # the other five are the mirrors of these (torchvision orders them as crops of the mirrored image)
    mirrors = [crop.flip(-1) for crop in crops[:5]]
    assert sorted(next(i for i, m in enumerate(mirrors) if torch.equal(view, m)) for view in crops[5:]) == [0, 1, 2, 3, 4]


def test_ensemble_and_flip_average_the_softmaxes():
    x = torch.rand(5, 1, 6, 6) * 255
    models = [Linear(0), Linear(1)]
    log_p = log_probabilities(members(models, [IDENTITY] * 2, "none"), x)
    mean = (models[0](x).softmax(1) + models[1](x).softmax(1)) / 2
    torch.testing.assert_close(log_p.exp(), mean)
    log_p = log_probabilities(members(models[:1], [IDENTITY], "flip"), x, tta="flip")
    torch.testing.assert_close(log_p.exp(), (models[0](x).softmax(1) + models[0](x.flip(3)).softmax(1)) / 2)


def test_multiscale_uses_dense_evaluation_where_the_network_has_it():
    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append(tuple(x.shape[-2:]))
            return x.mean((1, 2, 3))[:, None].repeat(1, 3)

    class WithDense(Linear):
        def __init__(self):
            super().__init__(0)
            self.dense_copy = Dense()

        def dense(self):
            return self.dense_copy

    plain, dense = Linear(0), WithDense()
    x = torch.rand(3, 1, 6, 6) * 255
    for model in (plain, dense):
        log_probabilities(members([model], [IDENTITY], "multiscale"), x, tta="multiscale")
    sides = sorted({round(6 * s) for s in MULTISCALE})
    assert sorted(set(dense.dense_copy.seen)) == [(s, s) for s in sides]   # whole rescaled images
    assert len(dense.dense_copy.seen) == 2 * len(MULTISCALE)               # each with its mirror


def test_per_class_accuracy_and_loss_of_the_averaged_prediction():
    g = torch.Generator().manual_seed(3)
    split = TensorSplit(torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8, generator=g),
                        torch.randint(0, 4, (40,), generator=g))
    models = [Linear(0), Linear(1)]
    result = evaluate(models, split, [IDENTITY] * 2, num_classes=4, batch_size=16)
    x = split.images.float()
    mean = sum(m(x).softmax(1) for m in models) / 2
    predicted = mean.argmax(1)
    assert result["top1"] == pytest.approx((predicted == split.labels).float().mean().item())
    assert result["loss"] == pytest.approx(-mean[torch.arange(40), split.labels].log().mean().item(), rel=1e-5)
    for k in range(4):
        in_class = split.labels == k
        assert result["per_class_top1"][k] == pytest.approx((predicted[in_class] == k).float().mean().item())


def saved_run(directory, data, seed):
    """A run directory as `visionzoo train` leaves it (model.safetensors + model.json), untrained."""
    from visionzoo.core.io import write_json, write_safetensors
    from visionzoo.data.datasets import load_data
    from visionzoo.registry import create_model
    bundle = load_data(data, val_size=0.1)
    kwargs = {"num_classes": len(bundle.classes), "in_chans": bundle.input_size[0], "image_size": bundle.input_size[-1]}
    torch.manual_seed(seed)
    write_safetensors(directory / "model.safetensors", create_model("highway_fc", **kwargs).state_dict())
    write_json(directory / "model.json", {
        "name": "highway_fc", "kwargs": kwargs, "classes": bundle.classes, "mean": bundle.mean, "std": bundle.std,
        "input_size": list(bundle.input_size), "data": data, "data_args": {"val_size": 0.1}})
    return directory


@pytest.mark.parametrize("tta", ["multicrop", "multiscale"])
def test_eval_command_ensembles_with_tta_and_reports_errors_and_per_class_accuracy(tmp_path, tta, capsys):
    runs = [str(saved_run(tmp_path / f"r{seed}", "digits", seed)) for seed in (0, 1)]
    assert main(["eval", *runs, "--tta", tta, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"split", "n", "top1", "top5", "loss"} <= set(report) and report["n"] == len(load_data("digits").test)
    assert report["top1_error"] == pytest.approx(1 - report["top1"]) and len(report["models"]) == 2
    assert len(report["per_class_top1"]) == 10 and math.isfinite(report["loss"])
    assert_one_line_exit_2(cli_here("eval", runs[0], saved_run(tmp_path / "other", "fake", 2)), "ensemble")


def test_top5_counts_a_label_among_the_five_highest_scores():
    # top-5 (AlexNet, Sec. 6): right when the true class is one of the five most probable; 7 classes whose
    # scores are fixed (class k scores −k), true labels 0..6, so labels 0..4 are top-5 hits and 5, 6 misses
    class Ranked(nn.Module):
        def forward(self, x):
            return -torch.arange(7.0).expand(len(x), 7)
    split = TensorSplit(torch.zeros(7, 1, 2, 2, dtype=torch.uint8), torch.arange(7))
    result = evaluate(Ranked(), split, IDENTITY, batch_size=4)
    assert result["top1"] == pytest.approx(1 / 7) and result["top5"] == pytest.approx(5 / 7)


def test_tencrop_pads_by_an_eighth_of_the_side_and_multiscale_mirrors_left_right():
    # AlexNet's ten patches of the image zero-padded by side/8; VGG's scales each with its horizontal mirror
    from visionzoo.tasks.classification import views
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    crops = views(x, "tencrop")
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    assert torch.equal(crops[0], padded[..., :16, :16]) and torch.equal(crops[3], padded[..., 4:, 4:])
    scaled = views(x, "multiscale")
    assert len(scaled) == 2 * len(MULTISCALE)
    for view, mirror in zip(scaled[::2], scaled[1::2]):
        assert torch.equal(mirror, view.flip(-1))
