"""Render for CNN's data claims: the `renders` training-set knobs (data/viewpoint.py, the viewpoint
task's --render-* options) and the experiments on them (experiments/viewpoint.py)."""
from __future__ import annotations

import json

import pytest
import torch

from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.data import viewpoint
from visionzoo.data.render import box, superquadric
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.experiments import viewpoint as experiments
from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD, Context, get_experiment
from visionzoo.metrics.viewpoint import accuracy_within, median_angle_error


@pytest.fixture
def small_sets(monkeypatch):
    monkeypatch.setattr(viewpoint, "RENDER_SIZES", (60, 20))
    monkeypatch.setattr(viewpoint, "GENERATION_CHUNK", 25)   # several chunks, so the streams cross chunks
    viewpoint._builtin.cache_clear()
    viewpoint._builtin_test.cache_clear()


@pytest.fixture
def drawn(monkeypatch):
    """Every call of the renderer: the meshes it drew and their coverage alpha."""
    calls = []
    original = viewpoint.render

    def recording(meshes, *args, **kwargs):
        colour, alpha = original(meshes, *args, **kwargs)
        calls.append((list(meshes), alpha))
        return colour, alpha

    monkeypatch.setattr(viewpoint, "render", recording)
    return calls


def same_bundle(a, b) -> bool:
    return all(torch.equal(getattr(a, s).images, getattr(b, s).images) and
               torch.equal(getattr(a, s).labels, getattr(b, s).labels) for s in ("train", "val", "test"))


# ---- the data knobs ------------------------------------------------------------------------------------

def test_the_default_knobs_are_the_unchanged_set(small_sets):
    default = viewpoint.load_render_data("renders", image_size=24)
    categories, train, test = viewpoint._builtin_pools()
    # The knobs spelled out, and "instances" at least every category's count, make the very same bytes ...
    spelled = viewpoint.load_render_data("renders", image_size=24, train_size=60, instances=max(map(len, train)),
                                         background="crops")
    assert same_bundle(default, spelled)
    # ... which are the renderer's own sets of all training and all test meshes, as before the knobs.
    x_train, y_train = viewpoint.render_set(train, 60, viewpoint.TRAIN_SEED, 24)
    x_test, y_test = viewpoint.render_set(test, 20, viewpoint.TEST_SEED, 24)
    assert torch.equal(torch.cat([default.train.labels, default.val.labels]).sort(0).values, y_train.sort(0).values)
    assert torch.equal(default.test.images, x_test) and torch.equal(default.test.labels, y_test)
    assert default.classes == categories


def test_the_training_size_knob_sets_the_training_renderings_and_leaves_the_test_set(small_sets):
    fewer = viewpoint.load_render_data("renders", image_size=24, train_size=30, val_size=5)
    assert (len(fewer.train), len(fewer.val), len(fewer.test)) == (25, 5, 20)
    viewpoint._builtin_test.cache_clear()      # made again, not read from the cache
    default = viewpoint.load_render_data("renders", image_size=24, val_size=5)
    assert torch.equal(fewer.test.images, default.test.images) and len(default.train) + len(default.val) == 60


def test_plain_backgrounds_are_one_grey_per_image_and_all_else_is_the_crops_set(monkeypatch, drawn):
    monkeypatch.setattr(viewpoint, "PIXEL_NOISE", (0.0, 0.0))   # the flat background is then exactly flat
    pools = [[box((0, 0.2, 0), (1, 0.5, 0.5))], [superquadric(0.3, 0.3, (0.3, 1.0, 0.5))]]
    plain, plain_labels = viewpoint.render_set(pools, 12, 5, 24, background="plain")
    alpha = drawn[-1][1][:, 0]
    crops, crops_labels = viewpoint.render_set(pools, 12, 5, 24)
    assert torch.equal(plain_labels, crops_labels) and torch.equal(drawn[-1][1][:, 0], alpha)
    outside, inside = alpha == 0, alpha == 1
    assert outside.any(1).any(1).all() and inside.any(1).any(1).all()
    for image, textured, out, obj in zip(plain, crops, outside, inside):
        background = image[:, out]
        assert (background == background[0, 0]).all()                  # one value, in all three channels: grey
        assert textured[:, out].float().std() > 3                       # a texture there with the crops
        assert torch.equal(image[:, obj], textured[:, obj])             # the object itself is the same
    grey = plain[:, 0][outside].float() / 255
    low, high = viewpoint.PLAIN_GREY
    assert grey.min() >= low - 1 / 255 and grey.max() <= high + 1 / 255


def test_one_instance_draws_every_training_rendering_of_a_category_from_its_first_mesh(small_sets, drawn):
    categories, train, test = viewpoint._builtin_pools()
    bundle = viewpoint.load_render_data("renders", image_size=16, instances=1)
    first = {id(meshes[0]): k for k, meshes in enumerate(train)}
    training_meshes = {id(m) for meshes in train for m in meshes}
    used = [id(m) for meshes, _ in drawn for m in meshes if id(m) in training_meshes]
    assert len(used) == 60 and set(used) <= set(first) and len(set(used)) == len(categories)
    testing = [id(m) for meshes, _ in drawn for m in meshes if id(m) not in training_meshes]
    assert len(testing) == 20 and set(testing) <= {id(m) for meshes in test for m in meshes}
    # Only the meshes changed: the viewpoints (labels) are those of the set of all meshes.
    drawn.clear()
    every = viewpoint.load_render_data("renders", image_size=16)
    assert torch.equal(every.train.labels, bundle.train.labels)
    assert len({id(m) for meshes, _ in drawn for m in meshes if id(m) in training_meshes}) > len(categories)


def test_three_instances_are_the_first_three_of_each_category():
    pools = [[box((0, 0, 0), (1, 1, 1))] * 5, [box((0, 0, 0), (1, 2, 1))]]
    assert [len(p) for p in viewpoint.first_instances(pools, 3)] == [3, 1]
    assert viewpoint.first_instances(pools, 3)[0] == pools[0][:3] and viewpoint.first_instances(pools, None) is pools


@pytest.mark.parametrize("knobs, named", [({"background": "grey"}, "--render-backgrounds"),
                                          ({"instances": 0}, "--render-instances"),
                                          ({"train_size": 0}, "--render-train-size")])
def test_bad_knobs_are_refused_in_one_line(knobs, named):
    with pytest.raises(UsageError) as error:
        viewpoint.load_render_data("renders", **knobs)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_run_records_its_knobs_and_eval_rebuilds_its_data(small_sets, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = TrainConfig(model="render_for_cnn", data="renders", image_size=24, epochs=2, batch_size=16, lr=0.01,
                      optimizer="adamw", val_size=10, eval_batch_size=16, amp="off", quiet=True, out=str(out),
                      keep="last", model_args={"base_width": 4}, render_train_size=50, render_instances=1,
                      render_backgrounds="plain", tilt_weight=0.1)
    trainer = Trainer(cfg)
    summary = trainer.run()
    assert len(trainer.task.data.train) == 40
    data_args = json.loads((out / "model.json").read_text())["data_args"]
    assert {k: data_args[k] for k in ("train_size", "instances", "background")} == \
        {"train_size": 50, "instances": 1, "background": "plain"}
    # eval on the validation split sees the images the run validated on (plain backgrounds, one mesh),
    # so it reproduces the last epoch's validation loss (keep=last).
    assert main(["eval", str(out), "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10
    assert report["loss"] == pytest.approx(trainer.history[-1]["val_loss"], rel=1e-5)
    # The experiments' per-image errors are the task's evaluation, image by image.
    azimuth, geodesic = experiments.per_image_errors(trainer)
    assert len(azimuth) == summary["test_n"] == 20
    assert median_angle_error(azimuth) == pytest.approx(summary["test_median_azimuth_error"])
    assert median_angle_error(geodesic) == pytest.approx(summary["test_median_angle_error"])
    assert accuracy_within(geodesic) == pytest.approx(summary["test_acc_pi6"])


# ---- the experiments ------------------------------------------------------------------------------------

def test_median_gap_of_a_shift_is_the_shift_and_of_equal_errors_zero():
    errors = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 90
    shifted = experiments.median_gap(errors + 10, errors, seed=0)
    assert shifted["gap"] == pytest.approx(10) and shifted["low"] == pytest.approx(10)
    assert shifted["high"] == pytest.approx(10)     # paired: every resample moves both medians together
    same = experiments.median_gap(errors, errors, seed=0)
    assert same["gap"] == same["low"] == same["high"] == 0


def test_median_gap_interval_holds_the_gap_and_narrows_with_more_images():
    generator = torch.Generator().manual_seed(1)
    widths = []
    for n in (100, 2500):
        worse = torch.rand(n, generator=generator, dtype=torch.float64) * 100
        better = torch.rand(n, generator=generator, dtype=torch.float64) * 80
        gap = experiments.median_gap(worse, better, seed=0)
        assert gap["low"] <= gap["gap"] <= gap["high"]
        widths.append(gap["high"] - gap["low"])
    assert widths[1] < widths[0] / 2      # the interval of a median shrinks as 1/√n


def fake_arms(monkeypatch, medians: dict[str, float]):
    """Replace training by arms whose per-image azimuth errors are centred on `medians` (by arm label)."""
    base = torch.linspace(-20, 20, 501, dtype=torch.float64)

    def arm(ctx, label, run_name, settings):
        errors = (medians[label] + base).clamp(0, 180)
        row = {"arm": label, "median_azimuth_error": float(errors.quantile(0.5)),
               "median_angle_error": float(errors.quantile(0.5)) + 1, "acc_pi6": float((errors < 30).double().mean()),
               "test_images": len(errors), "train_seconds": 0.0}
        return row, errors
    monkeypatch.setattr(experiments, "_arm", arm)


@pytest.mark.parametrize("geometric, softmax, expected", [(20, 35, HELD), (35, 20, NOT_HELD), (20, 20, NOT_HELD),
                                                          (85, 88, INCONCLUSIVE)])
def test_the_loss_verdict(monkeypatch, tmp_path, geometric, softmax, expected):
    fake_arms(monkeypatch, {"geometric loss": geometric, "softmax loss": softmax})
    outcome = get_experiment("geometry-aware-loss").run(Context("quick", tmp_path, 0, quiet=True))
    assert outcome.verdict == expected
    assert [r["viewpoint_loss"] for r in outcome.table] == ["geometric", "softmax"]
    assert (tmp_path / outcome.figures[0]).stat().st_size > 0


@pytest.mark.parametrize("one, three, every, plain, expected", [
    (40, 30, 25, 35, HELD),
    (40, 30, 25, 25, NOT_HELD),          # backgrounds make no difference
    (25, 25, 25, 40, NOT_HELD),          # the number of meshes makes none
    (40, 20, 30, 40, NOT_HELD),          # all meshes clearly worse than three
    (80, 85, 86, 88, INCONCLUSIVE)])     # nothing learnt
def test_the_renders_verdict(monkeypatch, tmp_path, one, three, every, plain, expected):
    fake_arms(monkeypatch, {"1 mesh, crops": one, "3 meshes, crops": three, "all meshes, crops": every,
                            "all meshes, plain": plain})
    outcome = get_experiment("more-renders-help").run(Context("quick", tmp_path, 0, quiet=True))
    assert outcome.verdict == expected
    assert [(r["meshes_per_category"], r["backgrounds"]) for r in outcome.table] == \
        [(1, "crops"), (3, "crops"), ("all", "crops"), ("all", "plain")]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["geometry-aware-loss", "more-renders-help"])
def test_the_smoke_budget_trains_every_arm(name, tmp_path):
    outcome = get_experiment(name).run(Context("smoke", tmp_path, 0, quiet=True))
    assert len(outcome.table) == (2 if name == "geometry-aware-loss" else 4)
    for row in outcome.table:
        assert row["test_images"] == 256 and 0 <= row["median_azimuth_error"] <= 180 and 0 <= row["acc_pi6"] <= 1
    assert outcome.verdict == INCONCLUSIVE or outcome.data["trained_enough"]
