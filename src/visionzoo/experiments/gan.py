"""The GAN chapter's claims as experiments (notes 003, "GAN", "GAN - Mode Collapse Problem", "DCGAN", "Disco GAN").

Every network is trained through the engine (the generative task, tasks/generative.py):
- `gan-losses` — Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014, Sec. 3 and Algorithm 1:
  early in training D rejects G's samples with confidence and the minimax loss log(1 − D(G(z)))
  saturates, where the non-saturating −log D(G(z)) gives "much stronger gradients early in learning".
  Measured twice on Metz et al.'s ring of 8 Gaussians: G's gradient norm under each loss against a
  discriminator trained alone on G's initial samples (the engine with k so large that G never steps),
  and the mode-coverage curves of training with each loss (k = 1) and with k = 5 discriminator steps.
- `mode-collapse` — Metz, Poole, Pfau, Sohl-Dickstein, "Unrolled GANs", ICLR 2017, Fig. 1 (the notes'
  Fig. 22): the plain GAN's samples at several epochs (the same noise each time), the modes it covers
  and whether the covered set moves (the generator hopping between modes). The mode-covering variant,
  chosen for costing nothing more: mixup applied to the discriminator with α = 0.2, the setting of
  Zhang et al.'s own GAN toys ("mixup", ICLR 2018, Sec. 3.5, Fig. 5).
- `dcgan-guidelines` — Radford, Metz, Chintala, ICLR 2016, Sec. 3: the five architecture guidelines, each
  switched off alone (`dcgan`'s builder switches), FID (Heusel et al., NeurIPS 2017, Eq. 6) in the
  penultimate features of a small reference classifier (LeNet-5's 84) trained first, on Fashion-MNIST.
- `dcgan-latent` — the same paper's Fig. 4 (interpolation between two z in 9 steps) and Fig. 7 (vector
  arithmetic on the average z of three samples per concept, the result Y shown with 8 neighbours
  Y + U(−0.25, 0.25) noise); concepts are classes as the reference classifier sees them. The paper's
  claim measured: arithmetic on averaged z is stable where single samples were not ("experiments
  working on only single samples per concept were unstable, but averaging the Z vector for three
  examples showed consistent and stable generations"): the share of Y's 8 neighbours classified as
  G(Y) is, for averaged z, compared with single z. The full budget trains the `fmnist-dcgan` recipe's
  networks for its epochs (its weights' average sampled); the smaller budgets the guidelines' small one.
- `discogan-toy` — Kim et al., "Learning to Discover Cross-Domain Relations with GANs", ICML 2017, Sec. 4.1
  (Figs. 3 and 4): the standard GAN, the GAN with a reconstruction loss and DiscoGAN (Fig. 2a–c;
  --disco-variant) mapping the 5-mode domain A to the 10-mode domain B (`toy-domains`); the modes of B
  that G_AB(A) covers, and the distinct B modes the 5 A modes land in.

Only full budgets give verdicts on training (quick runs see a few hundred steps, smoke runs a handful).
"""
from __future__ import annotations

import itertools
import statistics

import torch
from torch import nn

from ..data.generative import covered_modes, load_generative_data
from ..engine.recipes import RECIPES
from ..tasks.generative import ReferenceFeatures, sample, to_uint8, translate
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered

GAN_ARMS = (("minimax", 1), ("non-saturating", 1), ("non-saturating", 5))
MIXUP_ALPHA = 0.2          # Zhang et al.'s GAN toys
SNAPSHOTS = 6              # columns of the mode-collapse strip
SNAPSHOT_SAMPLES = 2000
GUIDELINE_ARMS = (("all guidelines", {}), ("pooling, not strided", {"strided": False}),
                  ("no batchnorm", {"batchnorm": False}), ("hidden FC layers", {"hidden_fc": True}),
                  ("LeakyReLU in G", {"g_activation": "leaky_relu"}), ("ReLU in D", {"d_activation": "relu"}))
INTERPOLATION_STEPS = 9    # DCGAN's Fig. 4
ARITHMETIC_NOISE = 0.25    # DCGAN's Fig. 7: uniform noise of this scale around Y
CONCEPT_SAMPLES = 3        # z vectors averaged per concept
DISCO_VARIANTS = (("GAN", "gan"), ("GAN + reconstruction", "reconstruction"), ("DiscoGAN", "discogan"))


# ---- shared settings -------------------------------------------------------------------------------------
def _adam(lr: float) -> dict:
    return dict(optimizer="adam", lr=lr, betas=[0.5, 0.999], weight_decay=0.0, schedule="constant", keep="last")


def _ring_settings(ctx: Context, **changes) -> dict:
    """gan_mlp_2d on ring8 as the ring8-gan recipe (Adam 1e-3, β1 0.5), smaller epochs for more curve points."""
    return {**_adam(1e-3), "data": "ring8", "model_args": {}, "epochs": ctx.pick(2, 15, 40),
            "batch_size": ctx.pick(128, 512, 512), "train_limit": ctx.pick(1024, 20000, None),
            "val_size": ctx.pick(500, 2000, 2000), "test_limit": 2500, "fid_samples": 2500, **changes}


def _curve(history: list[dict], key: str) -> list[float]:
    return [record[f"val_{key}"] for record in history]


def _early_mean(values: list[float]) -> float:
    """The mean over the first half of training (at least one epoch)."""
    return statistics.fmean(values[:max(1, len(values) // 2)])


# ---- gan-losses ------------------------------------------------------------------------------------------
def generator_gradient_norms(model: nn.Module, n: int, seed: int) -> dict:
    """‖∇_θg‖ of the minimax and the non-saturating generator losses on n seeded latents, and D's mean output
    on those samples: the networks as given (both in eval mode)."""
    from ..tasks.generative import generator_loss
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    norms = {}
    with torch.enable_grad():
        was_training = model.training
        model.eval()
        try:
            for kind in ("minimax", "non-saturating"):
                logits = model.discriminator(model.generator(z.to(next(model.parameters()).device)))
                grads = torch.autograd.grad(generator_loss(logits, kind), list(model.generator.parameters()))
                norms[kind] = float(torch.sqrt(sum(g.double().square().sum() for g in grads)))
            d_fake = float(torch.sigmoid(logits.detach().double()).mean())
        finally:
            model.train(was_training)
    return {**norms, "d_of_g": d_fake}


def _plot_curves(ctx: Context, name: str, curves: dict[str, list[dict]], title: str) -> str:
    fig, axes = figure(1, 2, width=4.6, height=3.4)
    for label, history in curves.items():
        epochs = [r["epoch"] for r in history]
        axes[0, 0].plot(epochs, _curve(history, "modes_covered"), marker="o", ms=3, label=label)
        axes[0, 1].plot(epochs, _curve(history, "high_quality"), marker="o", ms=3, label=label)
    axes[0, 0].set_ylim(-0.3, 8.3)
    axes[0, 0].set_title(f"{title}: modes covered (of 8)", fontsize=9)
    axes[0, 1].set_title("share of high-quality samples (within 3σ of a mode)", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return save_figure(fig, ctx, name)


@experiment("gan-losses", notes="003", heading="GAN",
            claim="With the minimax generator loss log(1 − D(G(z))) G learns slowly early in training, when D rejects "
                  "its samples with confidence and the loss saturates; the non-saturating −log D(G(z)) gives strong "
                  "gradients there (Goodfellow et al., Sec. 3); k, the discriminator steps per generator step, is a "
                  "hyperparameter (Algorithm 1, k = 1 in the paper)")
def gan_losses(ctx: Context) -> Outcome:
    # D alone against G's initial samples: k larger than the run's steps, so the generator never steps
    _, alone = train_registered(ctx, "gan_mlp_2d", "gan-losses-d-alone",
                                **_ring_settings(ctx, epochs=ctx.pick(1, 2, 2), d_steps=10 ** 9))
    norms = generator_gradient_norms(alone.model, SNAPSHOT_SAMPLES, ctx.seed)
    ratio = norms["minimax"] / max(norms["non-saturating"], 1e-300)
    curves, rows, summaries = {}, [], {}
    for loss, k in GAN_ARMS:
        label = f"{loss}, k = {k}"
        summary, trainer = train_registered(ctx, "gan_mlp_2d", f"gan-losses-{loss}-k{k}",
                                            **_ring_settings(ctx, gan_loss=loss, d_steps=k))
        curves[label], summaries[label] = trainer.history, summary
        modes, quality = _curve(trainer.history, "modes_covered"), _curve(trainer.history, "high_quality")
        rows.append({"arm": label, "early_modes": round(_early_mean(modes), 3),
                     "early_high_quality": round(_early_mean(quality), 4),
                     "final_modes": summary["test_modes_covered"], "final_high_quality": summary["test_high_quality"]})
    names = [_plot_curves(ctx, "gan-losses.png", curves, "minimax vs non-saturating, k")]
    minimax, strong = rows[0], rows[1]
    saturates = ratio < 0.5 and norms["d_of_g"] < 0.5
    faster = strong["early_high_quality"] >= minimax["early_high_quality"]
    settings = _ring_settings(ctx)
    return Outcome(
        verdict(saturates and faster, conclusive=ctx.budget == "full"),
        f"Against a discriminator trained alone on G's first samples (mean D(G(z)) {norms['d_of_g']:.3f}), G's "
        f"gradient norm is {norms['minimax']:.3g} under the minimax loss and {norms['non-saturating']:.3g} under the "
        f"non-saturating one (ratio {ratio:.3g}): {'it saturates' if saturates else 'no saturation seen'}. "
        "Over the first half of training the share of high-quality samples was "
        + ", ".join(f"{r['arm']} {r['early_high_quality']:.3f}" for r in rows)
        + "; modes covered at the end " + ", ".join(f"{r['arm']} {r['final_modes']:.0f}" for r in rows)
        + f". The non-saturating loss {'learnt at least as fast as' if faster else 'learnt slower than'} the minimax one."
        + ("" if ctx.budget == "full" else " Only the full budget is judged."),
        f"gan_mlp_2d on ring8 (Metz et al.'s networks; Adam 1e-3, β1 0.5), {settings['epochs']} epochs of "
        f"{settings['train_limit'] or 100000} points, batch {settings['batch_size']}; the discriminator alone for the first "
        "one or two epochs; modes covered and the high-quality share of 2 000 validation samples "
        "per epoch (PacGAN's rule: within 3σ, ≥ 20 of 2 500 per mode); the final numbers on 2 500 test samples. "
        "With k = 5, an epoch has a fifth as many generator steps.",
        {"gradient_norms": norms, "gradient_ratio": ratio, "arms": rows,
         "curves": {label: [{k: r[k] for k in ("epoch", "val_modes_covered", "val_high_quality", "train_d_fake")}
                            for r in history] for label, history in curves.items()}},
        names, rows)


# ---- mode-collapse ---------------------------------------------------------------------------------------
class SampleSnapshots:
    """A Trainer hook: the generator's samples of the same seeded noise at the end of the chosen epochs."""

    def __init__(self, epochs: list[int], n: int, seed: int):
        self.epochs, self.n, self.seed = set(epochs), n, seed
        self.points: dict[int, torch.Tensor] = {}

    def on_epoch_end(self, trainer, record: dict) -> None:
        if record["epoch"] in self.epochs:
            self.points[record["epoch"]] = sample(trainer.eval_model, self.n, seed=self.seed, device=trainer.device)


def snapshot_epochs(epochs: int, count: int = SNAPSHOTS) -> list[int]:
    """Up to `count` epochs spread evenly from the first to the last."""
    return sorted({round(1 + i * (epochs - 1) / max(count - 1, 1)) for i in range(count)})


def hops(covered: list[list[int]]) -> int:
    """How often the set of covered modes changes between consecutive snapshots where both cover some mode
    but not all of them: the generator moving from modes to others."""
    return sum(1 for before, after in itertools.pairwise(covered)
               if before and after and set(before) != set(after) and len(before) < 8 and len(after) < 8)


@experiment("mode-collapse", notes="003", heading="GAN - Mode Collapse Problem",
            claim="A GAN on a mixture of Gaussians collapses: its generator covers a few modes at a time and hops "
                  "between them as training goes on instead of spreading over all of them (Metz et al.'s figure); "
                  "mixup on the discriminator covers more modes")
def mode_collapse(ctx: Context) -> Outcome:
    data = load_generative_data("ring8", seed=ctx.seed, val_size=None)
    epochs = _ring_settings(ctx)["epochs"] * 2
    shown = snapshot_epochs(epochs)
    arms = {"GAN": {}, f"GAN, mixup on D (α = {MIXUP_ALPHA})": {"d_mixup": MIXUP_ALPHA}}
    snapshots, histories = {}, {}
    for index, (label, changes) in enumerate(arms.items()):
        hook = SampleSnapshots(shown, SNAPSHOT_SAMPLES, ctx.seed + 1)
        _, trainer = train_registered(ctx, "gan_mlp_2d", f"mode-collapse-{index}", hooks=(hook,),
                                      **_ring_settings(ctx, epochs=epochs, **changes))
        snapshots[label], histories[label] = hook.points, trainer.history
    covered = {label: [covered_modes(points[e], data.modes, data.mode_std)[0] for e in shown]
               for label, points in snapshots.items()}
    fig, axes = figure(len(arms), len(shown), width=2.1, height=2.2)
    real = data.test[:SNAPSHOT_SAMPLES]
    for row, label in enumerate(arms):
        for col, epoch in enumerate(shown):
            ax, points = axes[row, col], snapshots[label][epoch]
            ax.scatter(real[:, 0], real[:, 1], s=1, c="0.8")
            ax.scatter(points[:, 0], points[:, 1], s=1, c="tab:blue")
            ax.scatter(data.modes[:, 0], data.modes[:, 1], s=12, marker="x", c="crimson")
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"epoch {epoch}: {len(covered[label][col])} modes", fontsize=8)
        axes[row, 0].set_ylabel(label, fontsize=8)
    names = [save_figure(fig, ctx, "mode-collapse-strip.png"),
             _plot_curves(ctx, "mode-collapse-curves.png", histories, "GAN vs mixup")]
    plain, mixed = list(arms)
    mean_modes = {label: statistics.fmean(_curve(h, "modes_covered")) for label, h in histories.items()}
    collapsed = sum(len(c) < 8 for c in covered[plain]) >= len(shown) / 2
    moved = hops(covered[plain])
    better = mean_modes[mixed] > mean_modes[plain]
    rows = [{"arm": label, "snapshot_epochs": shown, "modes_covered_at_snapshots": [len(c) for c in covered[label]],
             "covered_sets": covered[label], "hops": hops(covered[label]), "mean_modes_per_epoch": mean_modes[label]}
            for label in arms]
    return Outcome(
        verdict(collapsed and moved > 0 and better, conclusive=ctx.budget == "full"),
        f"The plain GAN covered {', '.join(str(len(c)) for c in covered[plain])} of 8 modes at epochs "
        f"{', '.join(map(str, shown))} (covered sets {covered[plain]}; the set moved {moved} times); with mixup on D "
        f"{', '.join(str(len(c)) for c in covered[mixed])}. Modes covered per epoch on average: plain "
        f"{mean_modes[plain]:.2f}, mixup {mean_modes[mixed]:.2f}. "
        + ("Collapse and hopping seen" if collapsed and moved else "No collapse-and-hop pattern")
        + f"; mixup {'covered more' if better else 'did not cover more'}."
        + ("" if ctx.budget == "full" else " Only the full budget is judged."),
        f"gan_mlp_2d on ring8, non-saturating loss, k = 1, {epochs} epochs as in gan-losses; samples of the same "
        f"{SNAPSHOT_SAMPLES} latents after epochs {shown}. Mode-covering variant chosen: mixup for the discriminator "
        f"(--d-mixup {MIXUP_ALPHA}, Zhang et al.'s toy setting), at no extra cost; more discriminator steps are "
        "measured in gan-losses.",
        {"arms": rows, "curves": {label: [{k: r[k] for k in ("epoch", "val_modes_covered", "val_high_quality")}
                                          for r in history] for label, history in histories.items()}},
        names, [{k: v for k, v in r.items() if k != "covered_sets"} for r in rows])


# ---- DCGAN on Fashion-MNIST: the reference classifier, the guidelines, the latent figures ---------------------
def train_fid_reference(ctx: Context):
    """A LeNet-5 on Fashion-MNIST through the engine (Adam 3e-3; measured at the smoke size, 2 000 images for
    one epoch: test top-1 0.72 in 5 s), written to out/runs/fid-reference at every budget (the GAN runs read it
    from there); returns its directory and summary."""
    out = ctx.out / "runs" / "fid-reference"
    summary, _ = train_registered(ctx, "lenet5", "fid-reference", data="fashion-mnist", epochs=ctx.pick(1, 2, 3),
                                  train_limit=ctx.pick(2000, 10000, None), val_size=ctx.pick(100, 1000, 5000),
                                  test_limit=ctx.pick(500, 2000, None), batch_size=ctx.pick(50, 128, 128),
                                  **_adam(3e-3), out=str(out))
    return out, summary


def _dcgan_settings(ctx: Context, reference, **switches) -> dict:
    return {**_adam(2e-4), "data": "fashion-mnist", "fid_reference": str(reference),
            "model_args": {"width": ctx.pick(8, 16, 32), **switches}, "epochs": ctx.pick(1, 2, 3),
            "batch_size": ctx.pick(32, 64, 64), "train_limit": ctx.pick(128, 4000, 20000),
            "val_size": ctx.pick(100, 500, 2000), "test_limit": ctx.pick(100, 2000, 10000),
            "fid_samples": ctx.pick(100, 2000, 10000), "eval_batch_size": 500}


@experiment("dcgan-guidelines", notes="003", heading="DCGAN",
            claim="DCGAN's five architecture guidelines (strided convolutions instead of pooling, batchnorm in G and "
                  "D, no fully connected hidden layers, ReLU in G, LeakyReLU in D) each help: switching any one off "
                  "gives worse samples (higher FID)")
def dcgan_guidelines(ctx: Context) -> Outcome:
    reference, reference_summary = train_fid_reference(ctx)
    rows = []
    for index, (label, switches) in enumerate(GUIDELINE_ARMS):
        summary, _ = train_registered(ctx, "dcgan", f"dcgan-guidelines-{index}",
                                      **_dcgan_settings(ctx, reference, **switches))
        rows.append({"arm": label, "switches": switches, "fid": summary["test_fid"],
                     "fid_floor": summary["test_fid_floor"], "train_seconds": summary["train_seconds"]})
    baseline = rows[0]["fid"]
    helped = {row["arm"]: row["fid"] > baseline for row in rows[1:]}
    fig, axes = figure(1, 1, width=6.0, height=3.4)
    axes[0, 0].barh([r["arm"] for r in rows][::-1], [r["fid"] for r in rows][::-1], color="tab:blue")
    axes[0, 0].axvline(rows[0]["fid_floor"], color="0.4", ls="--", label="fid_floor (train vs test images)")
    axes[0, 0].set_xlabel("test FID (LeNet-5 features; lower is better)")
    axes[0, 0].legend(fontsize=7)
    names = [save_figure(fig, ctx, "dcgan-guidelines.png")]
    settings = _dcgan_settings(ctx, reference)
    return Outcome(
        verdict(all(helped.values()), conclusive=ctx.budget == "full"),
        "Test FID per arm: " + ", ".join(f"{r['arm']} {r['fid']:.4g}" for r in rows)
        + f" (fid_floor {rows[0]['fid_floor']:.4g}). Switching off a guideline raised FID for "
        f"{sum(helped.values())} of {len(helped)}: "
        + "; ".join(f"{arm}: {'yes' if worse else 'no'}" for arm, worse in helped.items()) + "."
        + ("" if ctx.budget == "full" else " Only the full budget is judged."),
        f"dcgan at 28 × 28 (7 → 14 → 28), width {settings['model_args']['width']}, {settings['epochs']} epochs of "
        f"{settings['train_limit']} Fashion-MNIST images, batch {settings['batch_size']}, Adam 2e-4 β1 0.5, "
        f"non-saturating loss, k = 1; FID of {settings['fid_samples']} samples against the test images in the 84 "
        f"penultimate features of a LeNet-5 trained first (test top-1 {reference_summary['test_top1']:.3f}); the "
        "last epoch's generator.",
        {"arms": rows, "helped": helped, "reference": {"test_top1": reference_summary["test_top1"]}}, names, rows)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int = INTERPOLATION_STEPS) -> torch.Tensor:
    """(steps, D) points evenly spaced on the segment from z0 to z1, both ends included (DCGAN's Fig. 4)."""
    weights = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    return (1 - weights) * z0 + weights * z1


def concept_vectors(latents: torch.Tensor, predicted: torch.Tensor, count: int = CONCEPT_SAMPLES) -> dict[int, torch.Tensor]:
    """Per class with at least `count` samples: the (count, D) latents of its first `count` samples."""
    return {int(c): latents[predicted == c][:count] for c in predicted.unique() if int((predicted == c).sum()) >= count}


def arithmetic_neighbours(y: torch.Tensor, count: int, scale: float, seed: int) -> torch.Tensor:
    """(1 + count, D): Y, then Y plus uniform noise in [−scale, scale] (DCGAN's Fig. 7)."""
    noise = (torch.rand(count, len(y), generator=torch.Generator().manual_seed(seed)) * 2 - 1) * scale
    return torch.cat([y[None], y + noise])


def _images(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        was_training = model.training
        model.eval()
        try:
            return model.generator(z.to(next(model.parameters()).device)).float().cpu()
        finally:
            model.train(was_training)


def arithmetic_consistency(model: nn.Module, reference: ReferenceFeatures, concepts: dict[int, torch.Tensor],
                           triples: list[tuple[int, int, int]], seed: int, averaged: bool) -> float:
    """Over concept triples (a, b, c): Y = z_a − z_b + z_c with each z the average of the concept's latents
    (or its first latent), and the share of Y's 8 noisy neighbours that the reference classifies as G(Y)."""
    agree = []
    for index, (a, b, c) in enumerate(triples):
        pick = (lambda k: concepts[k].mean(0)) if averaged else (lambda k: concepts[k][0])
        y = pick(a) - pick(b) + pick(c)
        labels = reference.predict(to_uint8(_images(model, arithmetic_neighbours(y, 8, ARITHMETIC_NOISE,
                                                                                  seed + index))))
        agree.append(float((labels[1:] == labels[0]).double().mean()))
    return statistics.fmean(agree) if agree else float("nan")


def _grid(ax, images: torch.Tensor, columns: int, title: str) -> None:
    """Images in [−1, 1], row by row, `columns` to a row, drawn grey."""
    from torchvision.utils import make_grid
    grid = make_grid(to_uint8(images), nrow=columns, padding=2, pad_value=255)
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


@experiment("dcgan-latent", notes="003", heading="DCGAN",
            claim="DCGAN's latent space is smooth (interpolations change the image gradually, Fig. 4) and supports "
                  "vector arithmetic; averaging the z of three samples per concept makes the arithmetic stable where "
                  "single samples were not (Sec. 6.3, Fig. 7)")
def dcgan_latent(ctx: Context) -> Outcome:
    reference_dir, reference_summary = train_fid_reference(ctx)
    settings = _dcgan_settings(ctx, reference_dir)
    if ctx.budget == "full":   # the paper's claims are about a trained DCGAN: the fmnist-dcgan recipe's
        recipe = {key: value for key, value in RECIPES["fmnist-dcgan"].values.items() if key != "model"}
        settings = {**settings, **recipe, "train_limit": None, "recipe": "fmnist-dcgan"}
    _, trainer = train_registered(ctx, "dcgan", "dcgan-latent", **settings)
    model = trainer.model
    reference = ReferenceFeatures(reference_dir, device=trainer.device)
    rng = torch.Generator().manual_seed(ctx.seed)
    # Fig. 4: rows of 9 steps between two latents; smoothness = the largest step's share of a row's mean step
    pairs = ctx.pick(4, 8, 8)
    ends = torch.randn(2, pairs, model.latent_dim, generator=rng)
    rows_z = torch.cat([interpolate(ends[0, i], ends[1, i]) for i in range(pairs)])
    rows_images = _images(model, rows_z).view(pairs, INTERPOLATION_STEPS, *model.output_shape)
    steps = (rows_images[:, 1:] - rows_images[:, :-1]).flatten(2).norm(dim=2)
    jump = float((steps.amax(1) / steps.mean(1).clamp_min(1e-12)).mean())
    # Fig. 7: concepts are classes as the reference sees the samples
    latents = torch.randn(ctx.pick(200, 2000, 5000), model.latent_dim, generator=rng)
    predicted = reference.predict(to_uint8(_images(model, latents)))
    concepts = concept_vectors(latents, predicted)
    ordered = sorted(concepts, key=lambda c: -int((predicted == c).sum()))
    triples = list(itertools.permutations(ordered, 3))[:ctx.pick(6, 30, 60)]
    consistency = {kind: arithmetic_consistency(model, reference, concepts, triples, ctx.seed, kind == "averaged")
                   for kind in ("averaged", "single")}
    fig, axes = figure(1, 3, width=4.0, height=4.2)
    _grid(axes[0, 0], rows_images.flatten(0, 1), INTERPOLATION_STEPS, "interpolation between two z (rows of 9)")
    names_shown = "none: fewer than three classes among the samples"
    if triples:
        a, b, c = triples[0]
        # rows: the concept's three samples, then G(their average z); columns: a, b, c
        columns = torch.stack([torch.cat([concepts[k], concepts[k].mean(0, keepdim=True)]) for k in (a, b, c)], 1)
        y = concepts[a].mean(0) - concepts[b].mean(0) + concepts[c].mean(0)
        result = arithmetic_neighbours(y, 8, ARITHMETIC_NOISE, ctx.seed)[[1, 2, 3, 4, 0, 5, 6, 7, 8]]   # Y centred
        names_shown = " − ".join(reference.classes[k] for k in (a, b)) + f" + {reference.classes[c]}"
        _grid(axes[0, 1], _images(model, columns.flatten(0, 1)), 3, "3 samples per concept, last row: G(mean z)")
        _grid(axes[0, 2], _images(model, result), 3, f"{names_shown}: G(Y) centred, Y ± 0.25 around")
    else:
        for ax in axes[0, 1:]:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no vector arithmetic:\nfewer than three classes\namong the samples", ha="center",
                    va="center", fontsize=9)
    names = [save_figure(fig, ctx, "dcgan-latent.png")]
    stable = bool(triples) and consistency["averaged"] >= consistency["single"]
    arithmetic = (f"Vector arithmetic over {len(triples)} concept triples: the reference gives Y's ±0.25 neighbours "
                  f"G(Y)'s class {consistency['averaged']:.3f} of the time with averaged z, {consistency['single']:.3f} "
                  f"with single z ({'averaging is at least as stable' if stable else 'single z were more stable'})"
                  if triples else "No vector arithmetic: the samples fell in fewer than three classes (with three "
                                  "samples each) of the reference")
    return Outcome(
        verdict(stable, conclusive=ctx.budget == "full" and bool(triples)),
        f"Interpolation: the largest of a row's 8 steps is {jump:.2f}× its mean step (1 = perfectly even). "
        f"{arithmetic}. Shown: {names_shown}." + ("" if ctx.budget == "full" else " Only the full budget is judged."),
        (f"the fmnist-dcgan recipe's run ({settings['epochs']} epochs of the training split, dcgan "
         f"{', '.join(f'{key} {value}' for key, value in settings['model_args'].items())}, its weights' average "
         "sampled)" if ctx.budget == "full" else
         f"dcgan as in dcgan-guidelines (all guidelines; {settings['epochs']} epochs of {settings['train_limit']} "
         f"images, width {settings['model_args']['width']})") + "; concepts = classes that a LeNet-5 (test top-1 "
        f"{reference_summary['test_top1']:.3f}) gives {len(latents)} samples, the first three of each averaged; "
        "Y's neighbours Y + U(−0.25, 0.25) noise, as the paper's Fig. 7.",
        {"interpolation_jump": jump, "consistency": consistency, "triples": triples,
         "concept_sizes": {reference.classes[c]: int((predicted == c).sum()) for c in ordered}},
        names, [{"z": kind, "neighbours_agreeing": value} for kind, value in consistency.items()])


# ---- discogan-toy ----------------------------------------------------------------------------------------
def _disco_settings(ctx: Context, variant: str) -> dict:
    return {**_adam(1e-3), "data": "toy-domains", "model_args": {}, "disco_variant": variant,
            "epochs": ctx.pick(2, 10, 30), "batch_size": 256, "train_limit": ctx.pick(2048, 20000, None),
            "val_size": ctx.pick(500, 2000, 2000), "test_limit": 5000, "fid_samples": 2500}


def landing_modes(model: nn.Module, data, n: int) -> dict[int, int]:
    """For each mode of A: the mode of B nearest to where G_AB sends most of its test points."""
    a_points = data.test[data.test_labels == 0][:n]
    modes_a, modes_b = data.domain_modes
    source = torch.cdist(a_points, modes_a).argmin(1)
    target = torch.cdist(translate(model, a_points, "ab"), modes_b).argmin(1)
    return {int(m): int(target[source == m].mode().values) for m in source.unique()}


@experiment("discogan-toy", notes="003", heading="Disco GAN",
            claim="On two unpaired 2-D mixtures (A: 5 modes, B: 10) a GAN maps A's modes onto few of B's (mode "
                  "collapse), a GAN with a reconstruction loss still collapses, and DiscoGAN's two coupled "
                  "reconstructions send A's modes to distinct modes of B (Kim et al., Figs. 3 and 4)")
def discogan_toy(ctx: Context) -> Outcome:
    data = load_generative_data("toy-domains", seed=ctx.seed, val_size=None)
    rows, translated = [], {}
    for label, variant in DISCO_VARIANTS:
        summary, trainer = train_registered(ctx, "discogan_mlp_2d", f"discogan-toy-{variant}",
                                            **_disco_settings(ctx, variant))
        landed = landing_modes(trainer.model, data, 2500)
        a_points = data.test[data.test_labels == 0][:2500]
        translated[label] = (a_points, translate(trainer.model, a_points, "ab"))
        rows.append({"model": label, "modes_of_b_covered": summary["test_modes_covered"],
                     "high_quality": summary["test_high_quality"], "distinct_landing_modes": len(set(landed.values())),
                     "landing": landed})
    fig, axes = figure(1, len(rows), width=3.4, height=3.4)
    modes_a, modes_b = data.domain_modes
    for ax, row in zip(axes[0], rows):
        a_points, ab = translated[row["model"]]
        source = torch.cdist(a_points, modes_a).argmin(1)
        ax.scatter(modes_b[:, 0], modes_b[:, 1], s=60, marker="x", c="0.3")
        ax.scatter(ab[:, 0], ab[:, 1], s=2, c=source.numpy(), cmap="tab10", vmin=0, vmax=9)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_title(f"{row['model']}: {row['modes_of_b_covered']:.0f} of 10 B modes", fontsize=8)
    names = [save_figure(fig, ctx, "discogan-toy.png")]
    gan, reconstruction, disco = rows
    held = disco["modes_of_b_covered"] > gan["modes_of_b_covered"] \
        and disco["modes_of_b_covered"] >= reconstruction["modes_of_b_covered"]
    settings = _disco_settings(ctx, "discogan")
    return Outcome(
        verdict(held, conclusive=ctx.budget == "full"),
        "Modes of B covered by G_AB(A) (of 10; A has 5): "
        + ", ".join(f"{r['model']} {r['modes_of_b_covered']:.0f} (A's 5 modes land in {r['distinct_landing_modes']} "
                    f"distinct B modes, {r['high_quality']:.0%} high quality)" for r in rows)
        + f". DiscoGAN {'covers more than the GAN and at least as many as GAN + reconstruction' if held else 'does not cover more'}."
        + ("" if ctx.budget == "full" else " Only the full budget is judged."),
        f"discogan_mlp_2d (G_AB, G_BA, D_A, D_B: two ReLU layers of 128) on toy-domains (A: 5 Gaussians on a circle "
        f"of radius 1, B: 10 on radius 2, σ 0.05; our layout of the paper's 5- and 10-mode domains), "
        f"--disco-variant gan / reconstruction / discogan (Fig. 2a–c), MSE reconstruction, Adam 1e-3 β1 0.5, "
        f"batch 256, {settings['epochs']} epochs; coverage by PacGAN's rule on 2 500 test points of A.",
        {"arms": rows}, names, [{k: v for k, v in r.items() if k != "landing"} for r in rows])
