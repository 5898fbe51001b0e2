"""The GAN chapter's experiments (experiments/gan.py): DiscoGAN's toy domains, the Fig. 2 variants on the engine,
the pieces the experiments measure with, their smoke runs, and the DCGAN speed benchmark's reference loop."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from visionzoo.core.errors import UsageError
from visionzoo.data.generative import (
    TOY_DOMAIN_MODES,
    TOY_DOMAIN_STD,
    covered_modes,
    load_generative_data,
    mode_coverage,
    ring_modes,
)
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.experiments import gan as gan_experiments
from visionzoo.experiments.base import HELD, INCONCLUSIVE, NOT_HELD
from visionzoo.experiments.report import reproduce
from visionzoo.models.gan import GAN
from visionzoo.registry import create_model
from visionzoo.tasks.generative import sample

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gan_speed.py"
_spec = importlib.util.spec_from_file_location("gan_speed", _SCRIPT)
gan_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gan_speed)

TINY = dict(optimizer="adam", lr=1e-3, betas=[0.5, 0.999], weight_decay=0.0, schedule="constant", amp="off",
            keep="last", quiet=True, seed=0, model_args={})


@pytest.fixture(scope="module")
def fmnist():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")


# ---- the toy domains -------------------------------------------------------------------------------------
def test_toy_domains_are_a_5_and_a_10_mode_mixture_half_each():
    data = load_generative_data("toy-domains", seed=3, val_size=1000)
    modes_a, modes_b = data.domain_modes
    assert (len(modes_a), len(modes_b)) == TOY_DOMAIN_MODES
    assert data.domains == ("A", "B") and data.kind == "points" and data.input_size == (2,)
    assert torch.equal(data.modes, torch.cat([modes_a, modes_b]))
    for points, labels in ((data.train, data.train_labels), (data.test, data.test_labels), (data.val, data.val_labels)):
        assert int((labels == 0).sum()) == len(labels) - len(labels) // 2
        assert 0.3 < labels[:100].double().mean() < 0.7                   # shuffled: a prefix holds both domains
        for domain, modes in enumerate((modes_a, modes_b)):
            mine = points[labels == domain]
            distance, nearest = torch.cdist(mine, modes).min(1)
            assert distance.max() < 6 * TOY_DOMAIN_STD                     # every point near one of its modes
            assert len(nearest.unique()) == len(modes)                     # every mode drawn
            offsets = mine - modes[nearest]
            assert offsets.std().item() == pytest.approx(TOY_DOMAIN_STD, rel=0.05)
    # the test split is the same for every seed, the training points follow the seed
    other = load_generative_data("toy-domains", seed=4, val_size=None)
    assert torch.equal(other.test, data.test) and not torch.equal(other.train, data.train)
    assert other.val is None
    assert torch.equal(load_generative_data("toy-domains", seed=3, val_size=None).train, data.train)


def test_covered_modes_names_the_modes_that_mode_coverage_counts():
    modes = ring_modes()
    points = torch.cat([modes[0].repeat(500, 1), modes[3].repeat(300, 1), modes[5].repeat(7, 1),
                        torch.tensor([[0.0, 0.0]]).repeat(193, 1)])   # 193 far from every mode
    covered, quality = covered_modes(points, modes, 0.02)
    assert covered == [0, 3]                   # mode 5's 7 samples are under 20 of 2 500 (8 of 1 000)
    assert quality == pytest.approx(807 / 1000)
    assert mode_coverage(points, modes, 0.02) == (2, quality)


# ---- Kim et al.'s Fig. 2 models on the engine ------------------------------------------------------------------
def _disco(variant: str) -> Trainer:
    return Trainer(TrainConfig(**{**TINY, "model": "discogan_mlp_2d", "data": "toy-domains", "epochs": 1,
                                  "batch_size": 32, "train_limit": 128, "val_size": 200, "test_limit": 200,
                                  "fid_samples": 200, "disco_variant": variant}))


@pytest.mark.parametrize("variant, trained", [("gan", {"generator_ab", "discriminator_b"}),
                                              ("reconstruction", {"generator_ab", "generator_ba", "discriminator_b"}),
                                              ("discogan", {"generator_ab", "generator_ba", "discriminator_a",
                                                            "discriminator_b"})])
def test_disco_variants_train_exactly_the_networks_of_their_figure(variant, trained):
    trainer = _disco(variant)
    before = {name: [p.detach().clone() for p in getattr(trainer.model, name).parameters()]
              for name in ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")}
    summary = trainer.run()
    for name, weights in before.items():
        changed = any(not torch.equal(a, b) for a, b in zip(weights, getattr(trainer.model, name).parameters()))
        assert changed == (name in trained), name
    # the measures: the modes of B that G_AB(A) covers, each epoch and at the end
    assert 0 <= summary["test_modes_covered"] <= TOY_DOMAIN_MODES[1] and 0 <= summary["test_high_quality"] <= 1
    assert set(trainer.history[0]) >= {"val_modes_covered", "val_high_quality"}


def test_disco_variant_and_toy_domain_refusals():
    with pytest.raises(UsageError, match="--disco-variant gan"):
        Trainer(TrainConfig(**{**TINY, "model": "gan_mlp_2d", "data": "ring8", "epochs": 1, "batch_size": 32,
                               "train_limit": 64, "val_size": 100, "disco_variant": "gan"}))
    with pytest.raises(UsageError, match="toy-domains"):
        Trainer(TrainConfig(**{**TINY, "model": "discogan_mlp_2d", "data": "ring8", "epochs": 1, "batch_size": 32,
                               "train_limit": 64, "val_size": 100}))
    with pytest.raises(UsageError, match="--g-fakes reuse: DiscoGAN"):
        Trainer(TrainConfig(**{**TINY, "model": "discogan_mlp_2d", "data": "toy-domains", "epochs": 1,
                               "batch_size": 32, "train_limit": 64, "val_size": 100, "g_fakes": "reuse"}))


# ---- what the experiments measure with --------------------------------------------------------------------
class _Shift(nn.Module):
    """G(z) = c + W z with W = 0: every sample is c, whatever z."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(latent_dim, 2)
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, 0.5)

    def forward(self, z, labels=None):
        return self.linear(z)


class _Logit(nn.Module):
    def __init__(self, bias: float):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        nn.init.constant_(self.linear.weight, 0.3)
        nn.init.constant_(self.linear.bias, bias)

    def forward(self, x, labels=None):
        return self.linear(x).squeeze(1)


@pytest.mark.parametrize("bias", [-6.0, 0.0, 2.0])
def test_generator_gradient_ratio_is_d_over_one_minus_d(bias):
    """With every sample at one point of logit l, the minimax gradient is σ(l) × and the non-saturating one
    (1 − σ(l)) × the same vector: their norms' ratio is σ(l)/(1 − σ(l)) = e^l (Goodfellow et al.'s saturation)."""
    model = GAN(_Shift(4), _Logit(bias), latent_dim=4, num_classes=0, output_shape=(2,))
    norms = gan_experiments.generator_gradient_norms(model, 64, seed=0)
    logit = 0.3 * 0.5 * 2 + bias
    assert norms["minimax"] / norms["non-saturating"] == pytest.approx(math.exp(logit), rel=1e-5)
    assert norms["d_of_g"] == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-6)


def test_hops_count_changes_of_the_covered_set_between_partial_covers():
    assert gan_experiments.hops([[0], [0], [0, 1]]) == 1
    assert gan_experiments.hops([[0], [4], [2]]) == 2
    assert gan_experiments.hops([[], [3], [], [5]]) == 0                  # no cover on one side: not a hop
    assert gan_experiments.hops([list(range(8)), [1], list(range(8))]) == 0   # all modes: no collapse to hop from


def test_snapshot_epochs_spread_from_the_first_to_the_last():
    assert gan_experiments.snapshot_epochs(1) == [1]
    assert gan_experiments.snapshot_epochs(4) == [1, 2, 3, 4]
    spread = gan_experiments.snapshot_epochs(30)
    assert len(spread) == 6 and spread[0] == 1 and spread[-1] == 30


def test_sample_snapshots_hold_the_generator_as_it_was_at_those_epochs():
    hook = gan_experiments.SampleSnapshots([1, 2], n=50, seed=5)
    trainer = Trainer(TrainConfig(**{**TINY, "model": "gan_mlp_2d", "data": "ring8", "epochs": 2, "batch_size": 32,
                                     "train_limit": 64, "val_size": 100, "test_limit": 100, "fid_samples": 100}))
    trainer.hooks.append(hook)
    trainer.run()
    assert set(hook.points) == {1, 2}
    assert torch.equal(hook.points[2], sample(trainer.model, 50, seed=5))   # the last epoch's network is kept
    assert not torch.equal(hook.points[1], hook.points[2])                # it moved in between


def test_interpolation_is_nine_even_steps_with_both_ends():
    z0, z1 = torch.randn(5), torch.randn(5)
    path = gan_experiments.interpolate(z0, z1)
    assert path.shape == (9, 5)
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1)
    steps = path[1:] - path[:-1]
    assert torch.allclose(steps, ((z1 - z0) / 8).expand_as(steps), atol=1e-6)


def test_arithmetic_neighbours_and_concepts():
    y = torch.randn(6)
    around = gan_experiments.arithmetic_neighbours(y, 8, 0.25, seed=1)
    assert around.shape == (9, 6) and torch.equal(around[0], y)
    assert (around[1:] - y).abs().max() <= 0.25 and (around[1:] - y).abs().max() > 0.1
    assert torch.equal(around, gan_experiments.arithmetic_neighbours(y, 8, 0.25, seed=1))
    latents = torch.arange(14.0)[:, None].repeat(1, 2)
    predicted = torch.tensor([0, 1, 0, 2, 0, 1, 1, 0, 2, 3, 3, 3, 1, 2])
    concepts = gan_experiments.concept_vectors(latents, predicted)
    assert set(concepts) == {0, 1, 2, 3}
    assert concepts[0][:, 0].tolist() == [0, 2, 4] and concepts[2][:, 0].tolist() == [3, 8, 13]


# ---- the experiments' smoke runs ------------------------------------------------------------------------------
def _smoke(name: str, tmp_path) -> dict:
    from visionzoo.experiments import get_experiment
    result = reproduce(get_experiment(name), "smoke", tmp_path / name, quiet=True)
    assert result["verdict"] in (HELD, NOT_HELD, INCONCLUSIVE)
    saved = json.loads((tmp_path / name / "results.json").read_text())
    for figure in saved["figures"]:
        assert (tmp_path / name / figure).stat().st_size > 0
    return saved


def test_gan_losses_smoke(tmp_path):
    saved = _smoke("gan-losses", tmp_path)
    assert [row["arm"] for row in saved["data"]["arms"]] == ["minimax, k = 1", "non-saturating, k = 1",
                                                             "non-saturating, k = 5"]
    norms = saved["data"]["gradient_norms"]
    assert saved["data"]["gradient_ratio"] == pytest.approx(norms["minimax"] / norms["non-saturating"])


def test_mode_collapse_smoke(tmp_path):
    saved = _smoke("mode-collapse", tmp_path)
    assert len(saved["data"]["arms"]) == 2 and saved["figures"] == ["mode-collapse-strip.png", "mode-collapse-curves.png"]


def test_discogan_toy_smoke(tmp_path):
    saved = _smoke("discogan-toy", tmp_path)
    assert [row["model"] for row in saved["data"]["arms"]] == ["GAN", "GAN + reconstruction", "DiscoGAN"]


@pytest.mark.slow
def test_dcgan_guidelines_smoke(fmnist, tmp_path):
    saved = _smoke("dcgan-guidelines", tmp_path)
    arms = saved["data"]["arms"]
    assert len(arms) == 6 and all(arm["fid"] >= 0 for arm in arms)
    assert (tmp_path / "dcgan-guidelines" / "runs" / "fid-reference" / "model.safetensors").exists()


@pytest.mark.slow
def test_dcgan_latent_smoke(fmnist, tmp_path):
    saved = _smoke("dcgan-latent", tmp_path)
    assert saved["data"]["interpolation_jump"] >= 1


# ---- the speed benchmark's reference loop ---------------------------------------------------------------------
def test_the_example_loop_runs_copies_of_our_networks():
    torch.manual_seed(0)
    model = create_model("dcgan", in_chans=1, image_size=28, width=4)
    loop = gan_speed.ExampleLoop(model.generator, model.discriminator, model.latent_dim)
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        model.eval(), loop.net_d.eval(), loop.net_g.eval()
        assert torch.allclose(loop.net_d(images), torch.sigmoid(model.discriminator(images)))
        z = torch.randn(3, model.latent_dim)
        assert torch.equal(loop.net_g(z), model.generator(z))
    loop.net_d.train(), loop.net_g.train()
    ours = [p.detach().clone() for p in model.parameters()]
    assert loop.rate([images]) > 0
    assert all(torch.equal(a, b) for a, b in zip(ours, model.parameters()))          # ours untouched
    for network, original in ((loop.net_g, model.generator), (loop.net_d[0], model.discriminator)):
        assert any(not torch.equal(a, b) for a, b in zip(network.parameters(), original.parameters()))


def test_a_toy_domain_run_is_evaluated_and_sampled_as_translated_points(tmp_path, capsys):
    from visionzoo.cli.main import main
    out = tmp_path / "disco"
    summary = Trainer(TrainConfig(**{**TINY, "model": "discogan_mlp_2d", "data": "toy-domains", "epochs": 1,
                                     "batch_size": 32, "train_limit": 128, "val_size": 200, "fid_samples": 300,
                                     "out": str(out)})).run()
    assert (out / "modes.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    # eval rebuilds the run's test split and measures as the run's own test did
    assert (report["n"], report["modes_covered"], report["high_quality"]) == \
        (300, summary["test_modes_covered"], summary["test_high_quality"])
    assert main(["sample", str(out), "--n", "40", "--out", str(tmp_path / "drawn")]) == 0
    rows = (tmp_path / "drawn" / "samples.csv").read_text().splitlines()
    assert len(rows) == 40 and all(len(row.split(",")) == 2 for row in rows)
