"""StyleGAN's figures and their claims (notes 003, "Style GAN"; Karras, Laine, Aila, "A Style-Based Generator
Architecture for Generative Adversarial Networks", CVPR 2019, Figs. 3, 4, 5 and 8).

A small StyleGAN (`stylegan_small`, 28×28 Fashion-MNIST) is trained through the engine (the generative
task: non-saturating loss, R1 with γ = 1, style-mixing regularisation 0.9; Adam with the paper's
β = (0, 0.99) and its low-resolution rate 0.001), then drawn as the paper draws it:
- style mixing (Fig. 3): rows are sources A, columns sources B; in each of three blocks the styles of
  one group — coarse (7²), middle (14²), fine (28²) — are copied from B, the rest taken from A;
- noise (Figs. 4–5): the same latents with noise in all layers, none, fine layers only, coarse layers
  only, and the per-pixel standard deviation over 16 noise draws;
- truncation in W (Fig. 8): ψ ∈ {1, 0.7, 0.5, 0, −0.5, −1}.

What the figures claim is measured on 64 latents: copying the coarse styles from B moves the image's
large-scale layout (the mean squared difference of 4×4-pooled images, each standardised, so that
brightness and contrast — Fashion-MNIST's "colour scheme" — do not count) towards B's more than
copying the fine ones does, and keeps less of A's; resampling the noise changes an image much less
than resampling its latent (pixel variances: the noise only adds stochastic detail); and the images'
diversity (mean squared pixel difference of pairs) shrinks with |ψ| down to one image at ψ = 0. The perceptual path lengths in Z and in W (metrics/latent.py; pixel features, 2×2-pooled, L2-
normalised, as no reference classifier is trained here) are recorded beside, not judged: the paper's
l_W < l_Z for this generator (Table 3) is a claim about fully trained networks. For the same reason
only the full budget gives a verdict: after the quick budget's 126 steps (2 000 images, 2 epochs) the
fine layers, next to the output, still shape most of each image and copying coarse styles changes
little (measured: layout distance to B 1.26 for coarse, 0.48 for fine), while the noise and truncation
claims already hold.

`draw_stylegan_figures(generator, out, seed)` draws and measures any StyleGAN generator (a run's).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..core import figures
from ..metrics.latent import perceptual_path_length
from ..models.stylegan import (
    STYLE_GROUPS,
    TRUNCATION_PSIS,
    StyleGenerator,
    latents,
    noise_variants,
    stochastic_variation,
    style_mixing_images,
    truncation_sweep,
)
from .base import Context, Outcome, experiment, verdict
from .common import train_registered

NOISE_COLUMNS = (("all", "noise in all layers"), ("none", "no noise"), ("fine", "fine noise only"),
                 ("coarse", "coarse noise only"))
MEASURE_LATENTS = 64


def _mosaic(rows: list[list[torch.Tensor | None]], pad: int = 2) -> torch.Tensor:
    """A grid of (C, H, W) images in [−1, 1] (None: blank) as one (H', W', C) array in [0, 1]."""
    sample = next(image for row in rows for image in row if image is not None)
    channels, height, width = sample.shape
    canvas = torch.ones(channels, len(rows) * (height + pad) + pad, len(rows[0]) * (width + pad) + pad)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is not None:
                top, left = pad + r * (height + pad), pad + c * (width + pad)
                canvas[:, top:top + height, left:left + width] = (image.float().cpu() + 1) / 2
    return canvas.clamp(0, 1).permute(1, 2, 0)


def _show(ax, mosaic: torch.Tensor, title: str) -> None:
    grey = mosaic.shape[2] == 1
    pixels = mosaic.numpy()
    ax.imshow(pixels[..., 0] if grey else pixels, cmap="gray" if grey else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _mean_square(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).square().mean())


def _layout(images: torch.Tensor) -> torch.Tensor:
    """The large-scale layout of images: 4×4-pooled, each standardised (its brightness and contrast removed)."""
    pooled = F.avg_pool2d(images.float(), 4).flatten(1)
    return (pooled - pooled.mean(1, keepdim=True)) / pooled.std(1, keepdim=True).clamp_min(1e-6)


def _diversity(images: torch.Tensor) -> float:
    """Mean squared difference between the images of distinct pairs."""
    flat = images.flatten(1).float()
    n = len(flat)
    return float(torch.cdist(flat, flat).square().sum() / (n * (n - 1) * flat.shape[1]))


def style_mixing_figure(generator: StyleGenerator, path: Path, seed: int, *, sources_a: int = 3,
                        sources_b: int = 5) -> None:
    grid = style_mixing_images(generator, latents(generator, sources_a, seed), latents(generator, sources_b, seed + 1),
                               noise_seed=seed)
    fig, axes = figures.subplots(1, 3, figsize=(3.2 * 3, 3.6), layout="constrained", squeeze=False)
    for ax, group in zip(axes[0], STYLE_GROUPS):
        rows = [[None, *grid["b"]]] + [[grid["a"][i], *grid[group][i]] for i in range(sources_a)]
        sides = "×".join(map(str, generator.synthesis.group_resolutions(group)))
        _show(ax, _mosaic(rows), f"{group} styles ({sides} px) from B")
        ax.set_xlabel("source B →", fontsize=8)
        ax.set_ylabel("← source A", fontsize=8)
    figures.save_figure(fig, path)


def noise_figure(generator: StyleGenerator, path: Path, seed: int, count: int = 4) -> None:
    z = latents(generator, count, seed + 2)
    variants = noise_variants(generator, z, noise_seed=seed)
    spread = stochastic_variation(generator, z, realisations=16, seed=seed).float().std(1)
    spread = spread / spread.amax().clamp_min(1e-12) * 2 - 1      # shown on the same grey scale
    fig, axes = figures.subplots(1, 1, figsize=(1.3 * 5, 1.3 * count + 0.6), layout="constrained", squeeze=False)
    rows = [[variants[key][i] for key, _ in NOISE_COLUMNS] + [spread[i]] for i in range(count)]
    _show(axes[0, 0], _mosaic(rows), "all · none · fine only · coarse only · std over 16 noise draws")
    figures.save_figure(fig, path)


def truncation_figure(generator: StyleGenerator, path: Path, seed: int, count: int = 6) -> None:
    sweep = truncation_sweep(generator, latents(generator, count, seed + 3), noise_seed=seed)
    fig, axes = figures.subplots(1, 1, figsize=(1.2 * count + 0.6, 1.2 * len(TRUNCATION_PSIS)),
                                 layout="constrained", squeeze=False)
    _show(axes[0, 0], _mosaic([list(row) for row in sweep]), "truncation in W")
    axes[0, 0].set_ylabel("ψ = " + ", ".join(f"{psi:g}" for psi in TRUNCATION_PSIS) + " (top to bottom)", fontsize=8)
    figures.save_figure(fig, path)


def stylegan_measures(generator: StyleGenerator, seed: int, n: int = MEASURE_LATENTS) -> dict:
    """The figures' claims as numbers (see the module docstring), on `n` seeded latents."""
    a, b = latents(generator, n, seed + 10), latents(generator, n, seed + 11)
    pairs = style_mixing_images(generator, a, b, noise_seed=seed, pairwise=True)   # A_i with B_i
    to_b = {group: _mean_square(_layout(pairs[group]), _layout(pairs["b"])) for group in STYLE_GROUPS}
    to_a = {group: _mean_square(_layout(pairs[group]), _layout(pairs["a"])) for group in STYLE_GROUPS}
    noise_draws = stochastic_variation(generator, a[:16], realisations=8, seed=seed).float()
    noise_variance = float(noise_draws.var(1).mean())           # over noise, latent fixed
    latent_variance = float(noise_draws[:, 0].var(0).mean())    # over latents, noise fixed
    sweep = truncation_sweep(generator, a, noise_seed=seed)
    diversity = {f"{psi:g}": _diversity(images) for psi, images in zip(TRUNCATION_PSIS, sweep)}

    def pooled_pixels(images):
        return F.avg_pool2d(images.float(), 2).flatten(1)
    rng = torch.Generator().manual_seed(seed)
    ppl = {space: perceptual_path_length(generator, pooled_pixels, n=n, space=space, generator_rng=rng)
           for space in ("z", "w")}
    return {"mixing_distance_to_b": to_b, "mixing_distance_to_a": to_a, "noise_variance": noise_variance,
            "latent_variance": latent_variance, "truncation_diversity": diversity, "ppl_pixels": ppl}


def _claims(measures: dict) -> dict[str, bool]:
    to_b, to_a = measures["mixing_distance_to_b"], measures["mixing_distance_to_a"]
    diversity = measures["truncation_diversity"]
    return {
        "coarse styles carry more of B than fine ones": to_b["coarse"] < to_b["fine"] and to_a["coarse"] > to_a["fine"],
        "noise varies an image less than its latent does": measures["noise_variance"] < 0.5 * measures["latent_variance"],
        "diversity shrinks with |ψ| to one image at ψ = 0":
            diversity["1"] > diversity["0.7"] > diversity["0.5"] > diversity["0"] <= 1e-6 * diversity["1"]
            and diversity["-1"] > diversity["-0.5"] > diversity["0"],
    }


def draw_stylegan_figures(generator: StyleGenerator, out: Path, seed: int = 0) -> tuple[list[str], dict]:
    """The three figures into `out` (file names returned) and the measures behind the claims."""
    was_training = generator.training
    generator.eval()
    try:
        names = ["stylegan-mixing.png", "stylegan-noise.png", "stylegan-truncation.png"]
        style_mixing_figure(generator, out / names[0], seed)
        noise_figure(generator, out / names[1], seed)
        truncation_figure(generator, out / names[2], seed)
        return names, stylegan_measures(generator, seed)
    finally:
        generator.train(was_training)


def _settings(ctx: Context) -> dict:
    return dict(data="fashion-mnist", image_size=None, epochs=ctx.pick(1, 2, 3), batch_size=ctx.pick(16, 32, 32),
                train_limit=ctx.pick(64, 2000, 10000), val_size=ctx.pick(64, 1000, 5000),
                test_limit=ctx.pick(64, 1000, None), fid_reference="none", optimizer="adam", lr=0.001,
                betas=[0.0, 0.99], weight_decay=0.0, schedule="constant", amp="off", keep="last",
                model_args=ctx.pick({"max_channels": 16, "latent_dim": 32}, {}, {}))


@experiment("stylegan-figures", notes="003", heading="Style GAN",
            claim="StyleGAN's styles and noise separate what they control: copying coarse styles from B brings B's "
                  "large-scale aspects and fine styles only details (Fig. 3); noise inputs add stochastic variation "
                  "only (Figs. 4–5); truncation towards the mean w trades variety for typicality, all images being "
                  "the mean image at ψ = 0 (Fig. 8)")
def stylegan_figures(ctx: Context) -> Outcome:
    settings = _settings(ctx)
    summary, trainer = train_registered(ctx, "stylegan_small", "stylegan", **settings)
    generator = trainer.model.generator
    names, measures = draw_stylegan_figures(generator, ctx.out, ctx.seed)
    claims = _claims(measures)
    rows = [{"claim": claim, "held": held} for claim, held in claims.items()]
    to_b, to_a = measures["mixing_distance_to_b"], measures["mixing_distance_to_a"]
    return Outcome(
        verdict(all(claims.values()), conclusive=ctx.budget == "full"),
        "Layout distance of the mixed image to B / to A: "
        + ", ".join(f"{g} {to_b[g]:.4f} / {to_a[g]:.4f}" for g in STYLE_GROUPS)
        + f"; pixel variance over noise draws {measures['noise_variance']:.5f} vs over latents "
        f"{measures['latent_variance']:.5f}; diversity by ψ "
        + ", ".join(f"{psi} {value:.4f}" for psi, value in measures["truncation_diversity"].items())
        + f". Perceptual path length (pooled pixels) in Z {measures['ppl_pixels']['z']:.1f}, in W "
        f"{measures['ppl_pixels']['w']:.1f}. " + "; ".join(f"{c}: {'yes' if h else 'no'}" for c, h in claims.items())
        + ". Only the full budget is judged: the paper's claims are about a trained generator, and in the first "
        "hundred steps the fine layers, next to the output, shape most of the image.",
        f"stylegan_small on Fashion-MNIST (28×28), {settings}; the generator of the last epoch; "
        f"{MEASURE_LATENTS} seeded latents, fixed noise.",
        {"measures": measures, "claims": claims, "train_seconds": summary.get("train_seconds")}, names, rows)
