"""`visionzoo train --recipe`: the recipe's values first, explicit options win, recorded in config.json."""
import json

import pytest

from visionzoo.cli.main import main
from visionzoo.engine.recipes import RECIPES, apply_recipe
from visionzoo.engine.trainer import TrainConfig, Trainer

from conftest import assert_one_line_exit_2, cli_here


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_train_config(name):
    cfg = TrainConfig(**apply_recipe(name, {}))
    cfg.validate()
    assert cfg.recipe == name and cfg.epochs == RECIPES[name].values["epochs"]


def test_explicit_options_win_and_a_recipe_s_widths_stay_with_its_model():
    merged = apply_recipe("fmnist95", {"epochs": 1, "model_args": {}})
    assert merged["epochs"] == 1 and merged["model_args"] == RECIPES["fmnist95"].values["model_args"] != {}
    assert merged["lr"] == RECIPES["fmnist95"].values["lr"]
    other_model = apply_recipe("fmnist95", {"model": "lenet", "model_args": {}})
    assert other_model["model"] == "lenet" and other_model["model_args"] == {}


def test_recipe_is_recorded_in_config_json(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "fmnist95", "--data", "fake", "--epochs", "1", "--batch-size", "16",
            "--model-arg", "widths=[4,4,8,8]", "--train-limit", "64", "--val-size", "16", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "fmnist95" and config["model"] == "resnet9"
    assert config["epochs"] == 1 and config["batch_size"] == 16 and config["model_args"] == {"widths": [4, 4, 8, 8]}
    assert config["label_smoothing"] == RECIPES["fmnist95"].values["label_smoothing"]


def test_list_prints_every_recipe_and_an_unknown_name_is_exit_2(capsys):
    assert main(["train", "--recipe", "list"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in RECIPES)
    assert_one_line_exit_2(cli_here("train", "--recipe", "fmnist99"), "fmnist93")


def test_ema_zero_switches_off_a_recipe_s_average(tmp_path):
    argv = ["train", "--recipe", "fmnist-dcgan", "--model", "gan_mlp_2d", "--data", "ring8", "--ema", "0", "--epochs", "1",
            "--train-limit", "64", "--val-size", "64", "--batch-size", "32", "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["ema"] == 0
    small = {"model": "gan_mlp_2d", "data": "ring8", "model_args": {}, "train_limit": 64, "val_size": 64}
    assert Trainer(TrainConfig(**apply_recipe("fmnist-dcgan", small))).ema is not None
    assert Trainer(TrainConfig(**apply_recipe("fmnist-dcgan", {**small, "ema": 0.0}))).ema is None
