"""The generative task through the engine and the command line: the losses against their definitions,
Algorithm 1's k, mixup for the discriminator, a DCGAN run's keys, checkpoint and exact resume, `sample`
and `eval` of generative runs."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from visionzoo.cli.main import main
from visionzoo.core.errors import UsageError
from visionzoo.core.io import read_torch
from visionzoo.data.augment import _beta
from visionzoo.data.datasets import TensorSplit
from visionzoo.data.generative import ring_modes
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.tasks import generative
from visionzoo.tasks.generative import (
    discriminator_loss,
    generator_loss,
    mixup_discriminator_loss,
    reconstruction_distance,
)

from conftest import (
    assert_one_line_exit_2,
    assert_same_weights,
    cli_here,
    interrupt_after,
    run_recording_losses,
    train_flags,
)

GAN = dict(model="dcgan", data="fashion-mnist", model_args={"width": 8}, epochs=2, batch_size=32, train_limit=128,
           val_size=100, test_limit=100, fid_samples=100, eval_batch_size=100, optimizer="adam", lr=2e-4,
           betas=[0.5, 0.999], weight_decay=0.0, schedule="constant", amp="off", seed=0)



@pytest.fixture(scope="module")
def fmnist():
    from visionzoo.data.datasets import find_fashion_mnist
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")


@pytest.fixture(scope="module")
def reference(fmnist, tmp_path_factory):
    """A small classifier whose 84 penultimate features give FID."""
    out = tmp_path_factory.mktemp("reference") / "lenet"
    assert main(["train", "--model", "lenet5", "--data", "fashion-mnist", "--epochs", "1", "--train-limit", "300",
                 "--val-size", "100", "--batch-size", "100", "--lr", "0.05", "--amp", "off", "--quiet",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    assert main(["train", *train_flags(GAN), "--fid-reference", str(reference), "--quiet", "--out", str(out)]) == 0
    return out


# ---- the losses ----------------------------------------------------------------------------------------
def test_discriminator_loss_is_the_negated_value_function_and_ln4_at_the_equilibrium():
    real, fake = torch.randn(7), torch.randn(5)
    expected = F.binary_cross_entropy_with_logits(real, torch.ones(7)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros(5))
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    # D = 1/2 everywhere (p_g = p_data): V(D*, G*) = −log 4 (Goodfellow et al., Theorem 1)
    assert discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(4), rel=1e-7)
    # stable where a naive log(sigmoid) underflows
    assert torch.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


@pytest.mark.parametrize("kind", ["minimax", "non-saturating"])
def test_generator_loss_gradients_have_the_signs_and_sizes_the_notes_state(kind):
    logits = torch.tensor([-12.0, -4.0, 0.0, 4.0, 12.0], requires_grad=True)
    generator_loss(logits, kind).backward()
    p = torch.sigmoid(logits.detach().double())   # the definitions in float64, where 1 − σ(12) is resolved
    # d/dl of log(1 − σ(l)) is −σ(l); of −log σ(l) it is −(1 − σ(l)); both averaged over the batch
    expected = -(p if kind == "minimax" else 1 - p) / len(p)
    assert torch.allclose(logits.grad.double(), expected, rtol=1e-4, atol=1e-7)
    assert (logits.grad < 0).all()   # descending either loss raises D(G(z))
    value = generator_loss(logits.detach(), kind).item()
    reference = torch.log1p(-p).mean() if kind == "minimax" else -torch.log(p).mean()
    assert value == pytest.approx(reference.item(), rel=1e-5)


def test_minimax_saturates_where_d_rejects_the_samples_and_non_saturating_does_not():
    rejected = torch.tensor([-10.0], requires_grad=True)   # D(G(z)) ≈ 4.5e-5: early in training
    minimax, = torch.autograd.grad(generator_loss(rejected, "minimax"), rejected)
    strong, = torch.autograd.grad(generator_loss(rejected, "non-saturating"), rejected)
    assert abs(minimax.item()) < 1e-4 and abs(strong.item()) > 0.99
    # in D's output p itself: d/dp log(1 − p) = −1/(1 − p) ≈ −1, d/dp −log p = −1/p, huge
    p = torch.tensor([1e-4], requires_grad=True)
    flat, = torch.autograd.grad(torch.log1p(-p).sum(), p)
    steep, = torch.autograd.grad(-torch.log(p).sum(), p)
    assert flat.item() == pytest.approx(-1, rel=1e-3) and steep.item() == pytest.approx(-1e4, rel=1e-3)


def test_mixup_loss_is_binary_cross_entropy_against_the_target_lambda():
    logits = torch.randn(9)
    for lam in (0.0, 0.3, 1.0):
        expected = F.binary_cross_entropy_with_logits(logits, torch.full((9,), lam))
        assert mixup_discriminator_loss(logits, lam).item() == pytest.approx(expected.item(), rel=1e-6)
    assert mixup_discriminator_loss(logits, 1.0).item() == pytest.approx(F.softplus(-logits).mean().item())
    per_example = torch.rand(9)
    expected = F.binary_cross_entropy_with_logits(logits, per_example)
    assert mixup_discriminator_loss(logits, per_example).item() == pytest.approx(expected.item(), rel=1e-6)


def test_reconstruction_distances():
    x, y = torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    assert reconstruction_distance(x, y, "mse").item() == pytest.approx(F.mse_loss(x, y).item())
    assert reconstruction_distance(x, y, "l1").item() == pytest.approx(F.l1_loss(x, y).item())
    assert reconstruction_distance(x, x, "cosine").item() == pytest.approx(0, abs=1e-6)
    assert reconstruction_distance(x, -x, "cosine").item() == pytest.approx(2, abs=1e-6)
    assert reconstruction_distance(x, x + 0.05, "hinge").item() == 0   # under the margin
    assert reconstruction_distance(x, x + 0.3, "hinge").item() == pytest.approx(0.2, rel=1e-5)
    # 1 − cos over each whole image, then the batch mean; |x − y| beyond the 0.1 margin per value
    cosines = [(a * b).sum() / (a.norm() * b.norm()) for a, b in zip(x, y)]
    assert reconstruction_distance(x, y, "cosine").item() == pytest.approx(1 - sum(cosines).item() / 4, rel=1e-5)
    hinge = sum(max(0.0, abs(a - b) - 0.1) for a, b in zip(x.flatten().tolist(), y.flatten().tolist())) / x.numel()
    assert reconstruction_distance(x, y, "hinge").item() == pytest.approx(hinge, rel=1e-5)


# ---- the task on the engine ------------------------------------------------------------------------------
def _trainer(**changes) -> Trainer:
    return Trainer(TrainConfig(**{**GAN, "fid_reference": "none", "quiet": True, **changes}))


def test_algorithm_1_steps_the_discriminator_k_times_per_generator_step(fmnist):
    trainer = _trainer(d_steps=3, epochs=2, train_limit=96)   # 2 epochs of 3 steps of 32
    trainer.run()

    def updates(phase: str) -> set[int]:
        return {int(state["step"]) for state in trainer.optimizers[phase].state.values()}
    assert updates("discriminator") == {6} and updates("generator") == {2}   # after steps 3 and 6
    assert [trainer.task.phases(step) for step in range(3)] == [["discriminator"]] * 2 + [["discriminator",
                                                                                           "generator"]]
    record = trainer.history[0]
    assert 0 < record["train_d_real"] < 1 and 0 < record["train_d_fake"] < 1
    assert record["train_loss"] == pytest.approx(record["train_d_loss"] + record["train_g_loss"], rel=1e-9)
    # no FID reference: nothing to select an epoch by, the last one is kept
    assert trainer.task.monitor_mode == "last" and trainer.best["epoch"] == 2


def test_the_discriminator_trains_on_mixed_examples_with_target_lambda(fmnist):
    trainer = _trainer(d_mixup=0.4)
    task, model = trainer.task, trainer.model
    real, labels = task.prepare(next(iter(task.train_batches(0, 0))), None)
    torch.manual_seed(0)
    step = task.training_step((real, labels), "discriminator", torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(3)
    z = torch.randn(len(real), model.latent_dim, generator=replay)
    lam = _beta(0.4, replay, len(real))
    weight = lam.view(-1, 1, 1, 1)
    with torch.no_grad():
        fake = model.generator(z)
        expected = mixup_discriminator_loss(model.discriminator(weight * real + (1 - weight) * fake), lam)
    # one λ per pair of real and generated examples, each in (0, 1)
    assert lam.shape == (len(real),) and len(lam.unique()) == len(real) and ((lam > 0) & (lam < 1)).all()
    assert step.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_generator_phase_leaves_the_discriminator_without_gradients(fmnist):
    trainer = _trainer()
    task = trainer.task
    batch = task.prepare(next(iter(task.train_batches(0, 0))), None)
    step = task.training_step(batch, "generator", torch.Generator().manual_seed(0))
    step.loss.backward()
    assert all(p.grad is None for p in trainer.model.discriminator.parameters())
    assert all(p.grad is not None for p in trainer.model.generator.parameters())
    assert all(p.requires_grad for p in trainer.model.discriminator.parameters())


@pytest.mark.parametrize("g_fakes, d_steps, forwards", [("fresh", 1, 2), ("reuse", 1, 1), ("fresh", 2, 3), ("reuse", 2, 2)])
def test_reused_fakes_are_the_discriminator_steps_judged_by_the_updated_discriminator(fmnist, g_fakes, d_steps,
                                                                                       forwards):
    trainer = _trainer(g_fakes=g_fakes, d_steps=d_steps)
    task, model = trainer.task, trainer.model
    outputs = []
    model.generator.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    batches = iter(task.train_batches(0, 0))
    for step in range(d_steps):   # Algorithm 1's k discriminator steps, the generator's after the last
        batch = task.prepare(next(batches), None)
        generator = torch.Generator().manual_seed(step)
        for phase in task.phases(step):
            output = task.training_step(batch, phase, generator)
            if phase == "generator":
                with torch.no_grad():   # the discriminator as the discriminator phase left it
                    judged = model.discriminator(outputs[-1 if g_fakes == "fresh" else d_steps - 1])
                assert output.loss.item() == pytest.approx(generator_loss(judged).item(), rel=1e-6)
            trainer._optimise(phase, output.loss)
    assert len(outputs) == forwards
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    assert task._fakes is None   # the graph is let go after the generator's step


def test_run_reports_fid_samples_and_per_epoch_curves(run_dir, reference):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "generative" and summary["test_n"] == 100
    assert summary["test_fid"] > 0 and summary["test_fid_floor"] > 0
    assert summary["fid_reference"]["path"] == str(reference.resolve())
    assert len(summary["fid_reference"]["sha256"]) == 64
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_d_loss", "train_g_loss", "train_d_real", "train_d_fake", "val_fid", "val_d_loss"):
        assert key in records[0]
    assert summary["best_val_fid"] == min(r["val_fid"] for r in records)
    with Image.open(run_dir / "samples.png") as picture:
        assert picture.size == (8 * 28 + 9 * 2,) * 2   # 8 × 8 samples, 2-pixel gutters
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["task"] == "generative" and meta["input_size"] == [1, 28, 28] and meta["latent_dim"] == 100
    assert "num_classes" not in meta["kwargs"]   # an unconditional network


def test_checkpoint_holds_both_networks_and_both_optimisers(run_dir):
    state = read_torch(run_dir / "checkpoint.pt")
    assert set(state["optimizers"]) == {"discriminator", "generator"}
    assert any(k.startswith("generator.") for k in state["model"])
    assert any(k.startswith("discriminator.") for k in state["model"])
    betas = {group["betas"] for opt in state["optimizers"].values() for group in opt["param_groups"]}
    assert betas == {(0.5, 0.999)}


@pytest.mark.slow   # a second run, interrupted and resumed: 40 s on a busy 2-core machine
def test_interrupted_run_resumes_bit_identical(run_dir, reference, tmp_path):
    interrupt_after(dict(**GAN, fid_reference=str(reference)), 5, tmp_path / "stopped")
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--quiet"]) == 0
    assert_same_weights(run_dir, tmp_path / "stopped")
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["test_fid"] == \
        json.loads((run_dir / "summary.json").read_text())["test_fid"]


# ---- sample and eval ---------------------------------------------------------------------------------------
def test_eval_json_repeats_the_runs_test_fid(run_dir, capsys):
    assert main(["eval", str(run_dir), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["split"] == "test" and report["n"] == 100 and report["model"] == "dcgan"
    assert report["fid"] == pytest.approx(summary["test_fid"], rel=1e-9)
    assert report["fid_floor"] > 0 and report["fid_reference"] == summary["fid_reference"]


def test_sample_writes_a_grid_and_one_png_per_sample(run_dir, tmp_path, capsys):
    out = tmp_path / "samples"
    assert main(["sample", str(run_dir), "--n", "6", "--seed", "3", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6 and report["files"][0] == "grid.png"
    for i in range(6):
        with Image.open(out / "samples" / f"{i:04d}.png") as picture:
            assert picture.size == (28, 28) and picture.mode == "L"
    # the same seed gives the same samples
    again = tmp_path / "again"
    assert main(["sample", str(run_dir), "--n", "6", "--seed", "3", "--out", str(again)]) == 0
    assert (again / "samples" / "0005.png").read_bytes() == (out / "samples" / "0005.png").read_bytes()


@pytest.mark.parametrize("extra, text", [
    (["--truncation", "0.7"], "--truncation"),
    (["--class", "1"], "unconditional"),
    (["--prompt", "In the beginning"], "language runs"),
])
def test_sample_refuses_options_the_run_has_no_use_for(run_dir, tmp_path, extra, text):
    assert_one_line_exit_2(cli_here("sample", run_dir, "--out", tmp_path / "x", *extra), text)


def test_sample_refuses_an_out_that_is_a_file_and_a_run_of_another_task(run_dir, reference, tmp_path):
    (tmp_path / "file").write_text("x")
    assert_one_line_exit_2(cli_here("sample", run_dir, "--out", tmp_path / "file"), "is a file; give a directory")
    assert_one_line_exit_2(cli_here("sample", reference, "--out", tmp_path / "x"), "holds a classification network",
                           "`visionzoo sample` needs a generative run")


def test_conditional_samples_one_row_per_class(fmnist, tmp_path, capsys):
    out = tmp_path / "cgan"
    settings = {**GAN, "model": "cdcgan", "data": "fashion-mnist:Bag,Sneaker", "epochs": 1, "train_limit": 64,
                "val_size": 200}
    assert main(["train", *train_flags(settings), "--fid-reference", "none", "--quiet", "--out", str(out)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["kwargs"]["num_classes"] == 2 and meta["classes"] == ["Bag", "Sneaker"]
    assert main(["sample", str(out), "--n", "6", "--out", str(tmp_path / "rows")]) == 0
    with Image.open(tmp_path / "rows" / "grid.png") as grid:
        assert grid.size == (3 * 28 + 4 * 2, 2 * 28 + 3 * 2)   # two classes, three each
    assert main(["sample", str(out), "--n", "2", "--class", "Sneaker", "--out", str(tmp_path / "one"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["class"] == ["Sneaker"]
    assert_one_line_exit_2(cli_here("eval", out), "--fid-reference none")


def test_class_accuracy_matches_classes_by_name():
    class Reference:
        classes = ["T-shirt/top", "Trouser", "Bag"]
        path = "ref"

        def predict(self, images):   # the class index written into each image's first pixel
            return images[:, 0, 0, 0].long()

    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor([2, 1, 2, 0])   # generated for Bag, Trouser, Bag, Trouser
    assert generative.class_accuracy(Reference(), images, ["Bag", "Trouser"]) == 0.75
    with pytest.raises(UsageError, match="does not know the class 'Sneaker'"):
        generative.class_accuracy(Reference(), images, ["Sneaker"])


def test_points_record_the_mode_coverage_every_epoch(tmp_path):
    trainer = Trainer(TrainConfig(model="gan_mlp_2d", data="ring8", epochs=2, batch_size=64, train_limit=256,
                                  val_size=500, test_limit=500, fid_samples=500, optimizer="adam", lr=1e-3,
                                  weight_decay=0.0, schedule="constant", amp="off", quiet=True, out=str(tmp_path / "r")))
    summary = trainer.run()
    assert [set(r) >= {"val_modes_covered", "val_high_quality"} for r in trainer.history] == [True, True]
    assert 0 <= summary["test_modes_covered"] <= 8 and 0 <= summary["test_high_quality"] <= 1
    assert (tmp_path / "r" / "modes.png").stat().st_size > 0
    assert json.loads((tmp_path / "r" / "model.json").read_text())["output_shape"] == [2]


def test_discogan_losses_are_the_notes_sums(fmnist):
    trainer = _trainer(model="discogan", data="fmnist-bags-shoes", model_args={"width": 8}, image_size=32,
                       val_size=1000, reconstruction_loss="l1")
    task, model = trainer.task, trainer.model
    x_a, x_b = task.prepare(next(iter(task.train_batches(0, 0))), None)
    assert len(x_a) == len(x_b) == 32   # one minibatch from each unpaired domain
    torch.manual_seed(0)
    generator_step = task.training_step((x_a, x_b), "generator", torch.Generator())
    torch.manual_seed(0)
    x_ab, x_ba = model.generator_ab(x_a), model.generator_ba(x_b)
    # L_G = L_GAB + L_GBA, L_GAB = −log D_B(G_AB(x_A)) + d(x_A, G_BA(G_AB(x_A))) (non-saturating form)
    expected = (F.softplus(-model.discriminator_b(x_ab)).mean() + F.l1_loss(model.generator_ba(x_ab), x_a)
                + F.softplus(-model.discriminator_a(x_ba)).mean() + F.l1_loss(model.generator_ab(x_ba), x_b))
    assert set(generator_step.losses) == {"gan_ab", "reconstruction_a", "gan_ba", "reconstruction_b"}
    assert generator_step.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.manual_seed(0)
    discriminator_step = task.training_step((x_a, x_b), "discriminator", torch.Generator())
    torch.manual_seed(0)
    with torch.no_grad():
        x_ab, x_ba = model.generator_ab(x_a), model.generator_ba(x_b)
        # L_D = L_DA + L_DB, each −[log D(x) + log(1 − D(G(·)))]
        expected = discriminator_loss(model.discriminator_a(x_a), model.discriminator_a(x_ba)) + \
            discriminator_loss(model.discriminator_b(x_b), model.discriminator_b(x_ab))
    assert discriminator_step.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_limited_two_domain_test_split_keeps_the_first_images_of_both_domains(fmnist):
    """fmnist-bags-shoes stores A's images before B's: --test-limit 9 keeps the first 5 bags and the first 4 shoes
    (the first 9 test images would all be bags, and DiscoGAN's test would have nothing to translate into)."""
    settings = dict(model="discogan", data="fmnist-bags-shoes", model_args={"width": 8}, image_size=32,
                    val_size=1000)
    whole, limited = _trainer(**settings).task.domains["test"], _trainer(**settings, test_limit=9).task.domains["test"]
    for domain, count in zip(range(2), (5, 4)):
        assert torch.equal(limited[domain].images, whole[domain].images[:count])
    with pytest.raises(UsageError, match="^the test split holds no shoes images: give a larger --test-limit$"):
        _trainer(**settings, test_limit=1)


def _ring_losses(compile_: str, out, compile_players: str = "all") -> tuple[Trainer, torch.Tensor]:
    trainer = Trainer(TrainConfig(model="gan_mlp_2d", data="ring8", epochs=1, batch_size=64, train_limit=256,
                                  val_size=500, test_limit=500, fid_samples=500, optimizer="adam", lr=1e-3,
                                  weight_decay=0.0, schedule="constant", amp="off", quiet=True, out=str(out),
                                  compile=compile_, compile_players=compile_players))
    return trainer, run_recording_losses(trainer)


@pytest.mark.slow   # Inductor compiles the players' forward and backward: about 20 s
@pytest.mark.parametrize("compile_players", ["all", "generators"])
def test_compile_compiles_the_players_the_phases_call_and_keeps_their_losses(tmp_path, compile_players):
    eager_trainer, eager = _ring_losses("off", tmp_path / "eager")
    try:
        compiled_trainer, compiled = _ring_losses("on", tmp_path / "compiled", compile_players)
    finally:
        torch._dynamo.reset()
    players, model = compiled_trainer.task.players, compiled_trainer.model
    assert players.generator._orig_mod is model.generator
    if compile_players == "all":
        assert players.discriminator._orig_mod is model.discriminator
    else:   # the discriminator's phases call the plain module
        assert players.discriminator is model.discriminator
    assert eager_trainer.task.players.generator is eager_trainer.model.generator
    assert len(eager) == 8 and len(set(eager.tolist())) > 2   # 4 steps of D and G, the weights moving
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)


def test_each_players_epoch_loss_is_the_mean_of_its_own_updates_whatever_k(fmnist):
    """With k = 3 the generator updates once per 3 minibatches: the epoch's g_loss is the mean of the generator
    updates' losses (each standing for its k minibatches), d_loss the mean of the discriminator updates'."""
    trainer = _trainer(d_steps=3, epochs=1, train_limit=96)   # 3 steps of 32: D, D, D then G
    losses = run_recording_losses(trainer)
    record = trainer.history[0]
    assert len(losses) == 4
    assert record["train_g_loss"] == pytest.approx(losses[3].item(), rel=1e-6)
    assert record["train_d_loss"] == pytest.approx(losses[:3].mean().item(), rel=1e-6)


def test_the_discriminator_phase_reports_d_on_the_real_and_on_the_generated_examples(fmnist):
    """d_real is the batch mean of D(x) = σ(l) on the real minibatch, d_fake that of D(G(z)), d_loss
    −[E log D(x) + E log(1 − D(G(z)))], each summed over the n examples."""
    trainer = _trainer()
    task, model = trainer.task, trainer.model
    real, labels = task.prepare(next(iter(task.train_batches(0, 0))), None)
    step = task.training_step((real, labels), "discriminator", torch.Generator().manual_seed(3))
    z = torch.randn(len(real), model.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        d_real = torch.sigmoid(model.discriminator(real).double())
        d_fake = torch.sigmoid(model.discriminator(model.generator(z)).double())
    n = len(real)
    assert step.sums["d_real"].item() == pytest.approx(d_real.mean().item() * n, rel=1e-5)
    assert step.sums["d_fake"].item() == pytest.approx(d_fake.mean().item() * n, rel=1e-5)
    assert step.sums["d_loss"].item() == pytest.approx(-(d_real.log().mean() + (1 - d_fake).log().mean()).item() * n,
                                                       rel=1e-5)


def test_a_conditional_gan_generates_for_the_minibatchs_labels_and_is_judged_with_them(fmnist):
    """Mirza & Osindero, Eq. (2): both phases condition G and D on the same y, the real minibatch's labels."""
    trainer = _trainer(model="cdcgan", data="fashion-mnist:Bag,Sneaker", train_limit=64, val_size=200)
    task, model = trainer.task, trainer.model
    real, labels = task.prepare(next(iter(task.train_batches(0, 0))), None)
    assert set(labels.tolist()) == {0, 1}
    d_step = task.training_step((real, labels), "discriminator", torch.Generator().manual_seed(5))
    g_step = task.training_step((real, labels), "generator", torch.Generator().manual_seed(6))
    with torch.no_grad():
        fake = model.generator(torch.randn(len(real), model.latent_dim, generator=torch.Generator().manual_seed(5)),
                               labels)
        expected_d = discriminator_loss(model.discriminator(real, labels), model.discriminator(fake, labels))
        fake = model.generator(torch.randn(len(real), model.latent_dim, generator=torch.Generator().manual_seed(6)),
                               labels)
        expected_g = generator_loss(model.discriminator(fake, labels))
    assert d_step.loss.item() == pytest.approx(expected_d.item(), rel=1e-5)
    assert g_step.loss.item() == pytest.approx(expected_g.item(), rel=1e-5)


def test_samples_become_pixels_as_x_plus_1_times_127_5_rounded_and_clamped():
    values = torch.tensor([-1.5, -1.0, 100.7 / 127.5 - 1, 200.2 / 127.5 - 1, 1.0, 1.7]).view(1, 1, 1, 6)
    assert generative.to_uint8(values).flatten().tolist() == [0, 0, 101, 200, 255, 255]


def _points_trainer(**changes) -> Trainer:
    return Trainer(TrainConfig(**{**dict(model="gan_mlp_2d", data="ring8", epochs=1, batch_size=64, train_limit=256,
                                         val_size=500, test_limit=500, fid_samples=500, optimizer="adam", lr=1e-3,
                                         weight_decay=0.0, schedule="constant", amp="off", quiet=True), **changes}))


@pytest.mark.parametrize("gan_loss", ["minimax", "non-saturating"])
def test_validation_losses_are_the_players_losses_on_held_out_data_and_seeded_samples(gan_loss):
    """Each epoch's val_d_loss is −[E log D(x) + E log(1 − D(G(z)))] on the validation points against samples from
    the run's seeded noise, val_g_loss the chosen generator loss on those samples, d_real/d_fake D's means."""
    trainer = _points_trainer(gan_loss=gan_loss)
    task, model = trainer.task, trainer.model
    result = task.evaluate(model, "val")
    real = generative.first(task.splits["val"], 500)[0].float()
    fake = generative.sample(model, 500, seed=trainer.cfg.seed)
    model.eval()
    with torch.no_grad():
        d_real, d_fake = (torch.sigmoid(model.discriminator(x).double()) for x in (real, fake))
    g_loss = (1 - d_fake).log().mean() if gan_loss == "minimax" else -d_fake.log().mean()
    assert result["d_loss"] == pytest.approx(-(d_real.log().mean() + (1 - d_fake).log().mean()).item(), rel=1e-5)
    assert result["g_loss"] == pytest.approx(g_loss.item(), rel=1e-5)
    assert result["d_real"] == pytest.approx(d_real.mean().item(), rel=1e-5)
    assert result["d_fake"] == pytest.approx(d_fake.mean().item(), rel=1e-5)


def test_the_final_test_draws_its_samples_from_noise_apart_from_the_validation_noise():
    """sample_scores measures n samples of the noise seeded seed + SAMPLE_SEED_OFFSET, not the validation's seed."""
    class Spread(nn.Module):   # G(z) = (2, 0) + 0.6 z: the draws decide which samples fall within 3σ of a mode
        def forward(self, z, labels=None):
            return torch.tensor([2.0, 0.0]) + 0.6 * z

    model = SimpleNamespace(generator=Spread(), latent_dim=2, num_classes=0)
    modes, std = ring_modes(), 0.2
    splits = {"test": TensorSplit(torch.zeros(400, 2), torch.zeros(400, dtype=torch.int64))}
    scores = generative.sample_scores(model, splits, "test", n=400, seed=3, reference=None, classes=[],
                                      modes=(modes, std))
    test_samples = generative.sample(model, 400, seed=3 + generative.SAMPLE_SEED_OFFSET)
    validation_samples = generative.sample(model, 400, seed=3)
    assert scores == {"n": 400, **generative.coverage(test_samples, modes, std)}
    assert scores["high_quality"] != generative.coverage(validation_samples, modes, std)["high_quality"]
