"""Generative adversarial networks on the engine (the notes' GAN chapter, `003_…`).

- Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014: the value function of Eq. (1),
  V(D, G) = E_x log D(x) + E_z log(1 − D(G(z))), which D ascends and G descends, trained by
  Algorithm 1. One engine step draws one fresh minibatch of m real examples (and the task draws
  fresh noise for each phase); its "discriminator" phase is one of Algorithm 1's k inner
  discriminator updates, and every k-th step (`--d-steps k`) also runs the "generator" phase,
  the generator update with its own fresh noise. So k engine steps are one iteration of the
  algorithm's outer loop, and k = 1 (the paper's choice) steps D then G on every minibatch.
  `--g-fakes reuse` runs the generator update on the last discriminator update's samples instead of
  fresh noise, as Radford et al.'s DCGAN code and the PyTorch DCGAN example do (one generator forward
  per iteration instead of two; the samples are judged by the discriminator just updated).
  The generator loss is either the minimax one of Algorithm 1, log(1 − D(G(z))), or the
  non-saturating −log D(G(z)) of the paper's Sec. 3 ("Rather than training G to minimize
  log(1 − D(G(z))) we can train G to maximize log D(G(z))"), the default. With D = σ(l) for
  the discriminator's logit l, log D = −softplus(−l) and log(1 − D) = −softplus(l), which is
  how they are computed (stable for any l).
- Mirza & Osindero, Conditional Generative Adversarial Nets, 2014, Eq. (2): y is fed to G and D
  (a network with `num_classes` > 0); the generator is conditioned on the labels of the
  step's real minibatch, so y follows the data's class frequencies.
- Kim et al., Learning to Discover Cross-Domain Relations with GANs (DiscoGAN), ICML 2017, as the
  notes write it: L_G = L_GAB + L_GBA, L_GAB = GAN_GAB + R_GAB with R_GAB = d(x_A, G_BA(G_AB(x_A)))
  (`--reconstruction-loss`: d is mse, l1, cosine (1 − cosine similarity per image) or hinge
  (max(0, |x − y| − 0.1) summed like l1)), and L_D = L_DA + L_DB; one phase trains both
  discriminators, the other both generators. `--disco-variant` trains the paper's other two models of
  Fig. 2 instead: "gan" (G_AB against D_B alone) and "reconstruction" (that plus R_GAB through G_BA).
  On two domains of points (toy-domains) the measure is where G_AB sends A: the modes of B covered and
  the high-quality share.
- Zhang et al., mixup, ICLR 2018, Sec. 3.5 (`--d-mixup α`): the discriminator is trained on
  λx_real + (1 − λ)G(z) with target λ, λ ~ Beta(α, α) drawn for every pair — the objective's
  expectation over (x, z, λ) estimated per example; one λ per minibatch, as for classifiers, made
  each of D's steps nearly all-real or all-fake at α = 0.2 — and its loss is
  −[λ log D(x̃) + (1 − λ) log(1 − D(x̃))].
- Heusel et al., GANs Trained by a Two Time-Scale Update Rule, NeurIPS 2017, Eq. (6): the
  Fréchet distance of Gaussians fitted to features of real and generated images. The features
  are the penultimate layer of a reference classifier trained on the same data (`--fid-reference
  RUN`, else $VISIONZOO_CACHE/fid-reference/<data>/); `fid_floor` is the distance between as many
  training and test images, the value a perfect generator would reach with that sample size.
- Metz et al., Unrolled GANs, ICLR 2017 (the ring of 8 Gaussians): for 2-D point data, the modes
  covered and the share of high-quality samples each epoch are the mode-collapse curves.

Images are mapped from [0, 255] to [−1, 1] (x/127.5 − 1, the generator's Tanh range): the
normaliser with mean = std = 0.5 per channel. Generated images are rounded to uint8 before their
features are taken, as when they are saved. Each epoch the validation split measures the losses
on held-out real examples against seeded noise, and the FID of 2 000 samples against the
validation images (the monitored metric); for points, the mode coverage (modes covered is
monitored). GAN training runs in one process.
"""
from __future__ import annotations

import inspect
import math
import os
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.figures import save_figure, subplots
from ..core.io import file_digest, write_atomic
from ..core.options import at_least, option, option_group, positive
from ..core.runtime import autocast, evaluating
from ..data.augment import _beta
from ..data.datasets import SPLITS, TensorSplit, fill_splits
from ..data.loader import Normalizer, epoch_order, steps_per_epoch, train_batches
from ..registry import get_entry
from .base import CLASSIFICATION_OPTIONS, StepOutput, Task

GAN_LOSSES = ("non-saturating", "minimax")
GENERATOR_FAKES = ("fresh", "reuse")
COMPILED_PLAYERS = ("all", "generators")
# Kim et al.'s Fig. 2: (a) G_AB judged by D_B alone, (b) with A's reconstruction through G_BA, (c) DiscoGAN
DISCO_VARIANTS = ("discogan", "reconstruction", "gan")
DISTANCES = ("mse", "l1", "cosine", "hinge")
HINGE_MARGIN = 0.1            # the hinge distance ignores per-pixel differences below this (of the [−1, 1] range)
VAL_SAMPLES = 2000            # samples of each epoch's validation FID and losses
GRID_SAMPLES = 64             # samples.png of an unconditional run: an 8 × 8 grid
GRID_PER_CLASS = 8            # samples.png of a conditional run: one row of 8 per class
SAMPLE_SEED_OFFSET = 7919     # the final test's noise is seeded apart from the validation noise
PPL_PAIRS = 1000              # StyleGAN's perceptual path length: pairs of the final test (the paper: 100 000)


def _reference_check(value) -> str | None:
    return None if value == "none" or Path(value).expanduser().exists() else "no such run directory"


@option_group("generative", "GANs: Algorithm 1, the losses, FID features")
class GenerativeOptions:
    d_steps: int = option(1, "k of Goodfellow et al.'s Algorithm 1: discriminator updates, each on a fresh "
                             "minibatch, per generator update (default {default})", metavar="K", check=positive)
    gan_loss: str = option("non-saturating", "generator loss: non-saturating −log D(G(z)) (default) or minimax "
                                             "log(1 − D(G(z)))", choices=GAN_LOSSES)
    g_fakes: str = option("fresh", "the generator step's samples: fresh noise as Algorithm 1 (default) or reuse "
                                   "the last discriminator step's fakes, as the DCGAN paper's code and the PyTorch "
                                   "DCGAN example do (one generator forward per iteration instead of two)",
                          choices=GENERATOR_FAKES)
    compile_players: str = option("all", "under --compile, the players compiled: all (default) or the generators "
                                         "alone — on the 2-core CPU the compiled discriminator made fmnist-stylegan's "
                                         "step slower (BENCHMARKS.md)", choices=COMPILED_PLAYERS)
    reconstruction_loss: str = option("mse", "DiscoGAN's distance d(x_A, G_BA(G_AB(x_A))) (default {default})",
                                      choices=DISTANCES)
    disco_variant: str = option("discogan", "two-domain models of Kim et al.'s Fig. 2: discogan (both directions), "
                                            "reconstruction (G_AB, D_B and A's reconstruction through G_BA) or gan "
                                            "(G_AB and D_B alone)", choices=DISCO_VARIANTS)
    d_mixup: float = option(0.0, "train the discriminator on λ·real + (1 − λ)·fake with target λ ~ Beta(α, α) "
                                 "(mixup for GANs; 0 = off)", metavar="α", check=at_least(0))
    fid_reference: str | None = option(None, "classification run whose penultimate features give FID (default: "
                                             "$VISIONZOO_CACHE/fid-reference/<data>; none = no FID)", metavar="RUN",
                                       check=_reference_check)
    fid_samples: int = option(10000, "generated and real images of the final FID (default {default})", metavar="N",
                              check=positive)


# ---- the losses ----------------------------------------------------------------------------------
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−[E log D(x) + E log(1 − D(G(z)))] of Algorithm 1's discriminator update (the mean over each batch)."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """The generator's loss from D's logits on its samples: minimax E log(1 − D(G(z))) = −E softplus(l),
    which saturates where D rejects the samples (its gradient σ(l) → 0), or non-saturating
    −E log D(G(z)) = E softplus(−l), whose gradient 1 − σ(l) → 1 there."""
    if kind == "minimax":
        return -F.softplus(fake_logits.float()).mean()
    if kind == "non-saturating":
        return F.softplus(-fake_logits.float()).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def mixup_discriminator_loss(mixed_logits: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D's (N,) logits on λ·real + (1 − λ)·fake against the soft target λ (mixup,
    Sec. 3.5); λ a number or one per example."""
    logits = mixed_logits.float()
    return (lam * F.softplus(-logits) + (1 - lam) * F.softplus(logits)).mean()


def reconstruction_distance(x: torch.Tensor, y: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """DiscoGAN's d(x, x_ABA), averaged over the batch: mse and l1 per value, cosine 1 − cos per example,
    hinge max(0, |x − y| − HINGE_MARGIN) per value."""
    x, y = x.float(), y.float()
    if kind == "mse":
        return F.mse_loss(y, x)
    if kind == "l1":
        return F.l1_loss(y, x)
    if kind == "cosine":
        return (1 - F.cosine_similarity(x.flatten(1), y.flatten(1), dim=1)).mean()
    if kind == "hinge":
        return (torch.abs(x - y) - HINGE_MARGIN).clamp_min(0).mean()
    raise ValueError(f"unknown distance {kind!r}; choose one of {', '.join(DISTANCES)}")


# ---- samples, features, FID ----------------------------------------------------------------------
def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [−1, 1] as uint8 pixels, rounded as when saved."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def balanced_labels(n: int, num_classes: int) -> torch.Tensor | None:
    """0, 1, …, K − 1, 0, 1, … (None for an unconditional network)."""
    return torch.arange(n) % num_classes if num_classes else None


@torch.no_grad()
def generate(generator: nn.Module, n: int, *, latent_dim: int, seed: int, labels: torch.Tensor | None = None,
             device="cpu", batch_size: int = 500, **generator_kwargs) -> torch.Tensor:
    """`n` samples of `generator` (float, on the CPU) in eval mode, the noise seeded on the CPU (so the same
    on every device); `labels` (n,) for a conditional one. A generator that draws noise of its own
    (StyleGAN's per-layer noise inputs: its forward takes `generator=`) draws it from the same seeded
    stream after the latents, batch by batch: the same samples for the same seed and batch size."""
    rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, latent_dim, generator=rng)
    if "generator" in inspect.signature(generator.forward).parameters:
        generator_kwargs = {"generator": rng, **generator_kwargs}
    out = []
    with evaluating(generator):
        for start in range(0, n, batch_size):
            z = noise[start:start + batch_size].to(device)
            y = None if labels is None else labels[start:start + batch_size].to(device)
            out.append(generator(z, y, **generator_kwargs).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def reference_key(spec: str) -> str:
    """The data set whose reference classifier gives FID features for `spec`: every image spec of
    data/generative.py is made of Fashion-MNIST images."""
    base = spec.split(":", 1)[0]
    return "fashion-mnist" if base.startswith("fmnist") else base


def default_reference(spec: str) -> Path:
    root = Path(os.environ.get("VISIONZOO_CACHE") or Path.home() / ".cache" / "visionzoo")
    return root / "fid-reference" / reference_key(spec)


class ReferenceFeatures:
    """A trained classifier's penultimate features (`forward_head(…, pre_logits=True)`) of uint8 images,
    resized (antialiased bilinear) to the classifier's input size where theirs differs."""

    def __init__(self, run: str | Path, *, device, batch_size: int = 500):
        from ..weights import load_checkpoint
        self.path = Path(run).expanduser()
        model, meta = load_checkpoint(self.path)
        if meta.get("task", "classification") != "classification":
            raise UsageError(f"--fid-reference {run}: a {meta.get('task')} run; give a classification run "
                             "(e.g. `visionzoo train --recipe fid-reference-fmnist`)")
        weights = self.path / "model.safetensors" if self.path.is_dir() else self.path
        self.sha256 = file_digest(weights, "sha256")
        self.model, self.meta, self.device, self.batch_size = model.to(device).eval(), meta, device, batch_size
        self.normalizer = Normalizer(meta["mean"], meta["std"])
        self.input_size = tuple(meta["input_size"])
        self.classes = list(meta["classes"])

    def record(self) -> dict:
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "model": self.meta["name"]}

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.input_size
        if images.shape[1] != channels:
            raise UsageError(f"the FID reference {self.path} takes {channels}-channel images, the generator makes "
                             f"{images.shape[1]}-channel ones; train a reference on this data")
        x = self.normalizer(images.to(self.device))
        if tuple(x.shape[-2:]) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        return x

    @property
    def dims(self) -> int:
        """The number of features (of one blank image)."""
        return self.features(torch.zeros(1, *self.input_size, dtype=torch.uint8)).shape[1]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, F) float64 features of images (N, C, H, W): uint8, or float pixel values in [0, 255]."""
        out = [self.model.forward_head(self.model.forward_features(self._inputs(images[i:i + self.batch_size])),
                                       pre_logits=True).double().cpu()
               for i in range(0, len(images), self.batch_size)]
        return torch.cat(out).flatten(1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The reference's class predictions (N,) of uint8 images."""
        return torch.cat([self.model(self._inputs(images[i:i + self.batch_size])).argmax(1).cpu()
                          for i in range(0, len(images), self.batch_size)])


def fid(reference: ReferenceFeatures, images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """The Fréchet distance between the reference's features of two sets of uint8 images."""
    from ..metrics.generative import fid_from_features
    return float(fid_from_features(reference.features(images_a), reference.features(images_b)))


def coverage(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict:
    from ..data.generative import mode_coverage
    covered, quality = mode_coverage(samples, modes, std)
    return {"modes_covered": float(covered), "high_quality": float(quality)}


def save_image_grid(images: torch.Tensor, path: Path, rows: int) -> None:
    """uint8 images (N, C, H, W) as a PNG grid of `rows` rows, 2-pixel grey gutters."""
    from PIL import Image
    from torchvision.utils import make_grid
    grid = make_grid(images, nrow=math.ceil(len(images) / rows), padding=2, pad_value=128)
    array = grid.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if images.shape[1] == 1 else array)
    write_atomic(path, lambda tmp: picture.save(tmp, format="PNG"))


def save_image(image: torch.Tensor, path: Path) -> None:
    from PIL import Image
    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if image.shape[0] == 1 else array)
    write_atomic(path, lambda tmp: picture.save(tmp, format="PNG"))


def plot_points(real: torch.Tensor, samples: torch.Tensor, modes: torch.Tensor, path: Path, title: str) -> None:
    fig, ax = subplots(figsize=(5, 5))
    ax.scatter(real[:, 0], real[:, 1], s=2, c="0.7", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:blue", label="samples")
    ax.scatter(modes[:, 0], modes[:, 1], s=40, marker="x", c="crimson", label="modes")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def carve_splits(data, *, val_size, seed: int) -> dict:
    """train / val / test TensorSplits of a GenerativeData: its own validation split where it has one (loaded
    with `val_size`), else one carved from train with the run's seed."""
    splits = {"train": TensorSplit(data.train, data.train_labels), "test": TensorSplit(data.test, data.test_labels)}
    if data.val is not None:
        return {**splits, "val": TensorSplit(data.val, data.val_labels)}
    return fill_splits(splits, val_size, seed)


def builder_keywords(name: str, values: dict) -> dict:
    """The entries of `values` that the builder of `name` takes (every one if it takes **kwargs)."""
    parameters = inspect.signature(get_entry(name).builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(values)
    return {key: value for key, value in values.items() if key in parameters}


def scale_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to [−1, 1], the generator's range: x/127.5 − 1."""
    return images.float() / 127.5 - 1


def first(split, n: int):
    """The first n examples of a split and their labels."""
    return split.fetch(torch.arange(min(n, len(split))))


def first_indices(split, n: int, two_domains: bool) -> torch.Tensor:
    """The indices of a split's first n examples; of two-domain data (A's examples stored before B's) the first
    ⌈n/2⌉ of A and the first ⌊n/2⌋ of B, so that a limited split keeps both domains."""
    if not two_domains:
        return torch.arange(n)
    a, b = (torch.nonzero(split.labels == domain).flatten() for domain in (0, 1))
    return torch.cat([a[:n - n // 2], b[:n // 2]])


def drawn(split, n: int, seed: int) -> torch.Tensor:
    """n examples of a split drawn without replacement, seeded."""
    return split.fetch(torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n])[0]


def split_domains(splits: dict) -> dict:
    """DiscoGAN's two unpaired sets per split: A (label 0) and B (label 1)."""
    return {name: (split.take(torch.nonzero(split.labels == 0).flatten()),
                   split.take(torch.nonzero(split.labels == 1).flatten()))
            for name, split in splits.items()}


def sample(model: nn.Module, n: int, *, seed: int, labels: torch.Tensor | None = None, device="cpu",
           batch_size: int = 500, **generator_kwargs) -> torch.Tensor:
    """n samples of a GAN container's generator (float, CPU); a conditional one's labels balanced unless given."""
    if labels is None and model.num_classes:
        labels = balanced_labels(n, model.num_classes)
    return generate(model.generator, n, latent_dim=model.latent_dim, seed=seed, labels=labels, device=device,
                    batch_size=batch_size, **generator_kwargs)


@torch.no_grad()
def translate(model: nn.Module, x: torch.Tensor, direction: str, *, device="cpu", batch_size: int = 500):
    """DiscoGAN's G_AB (direction "ab") or G_BA of scaled images x, in eval mode (float, CPU)."""
    network = model.generator_ab if direction == "ab" else model.generator_ba
    with evaluating(network):
        return torch.cat([network(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def sample_scores(model: nn.Module, splits: dict, split: str, *, n: int, seed: int, reference, classes,
                  modes=None, device="cpu", batch_size: int = 500) -> dict:
    """The final measures of a GAN on `split` (the run's test and `visionzoo eval` alike): n samples from the
    noise of seed + SAMPLE_SEED_OFFSET; for images `fid` against the split's first n images, `fid_floor`
    (n training images drawn with `seed` against the same images) and, for a conditional network,
    `class_accuracy` (the share of samples the reference classifies as their class); for points (`modes`
    = (modes, σ)) `modes_covered` and `high_quality`."""
    n = min(n, len(splits[split]))
    fake = sample(model, n, seed=seed + SAMPLE_SEED_OFFSET, device=device, batch_size=batch_size)
    result: dict = {"n": n}
    if modes is not None:
        return {**result, **coverage(fake, *modes)}
    if reference is None:
        return result
    real = first(splits[split], n)[0]
    train = drawn(splits["train"], n, seed)
    real_features, fake_uint8 = reference.features(real), to_uint8(fake)
    from ..metrics.generative import fid_from_features
    result["fid"] = fid_from_features(reference.features(fake_uint8), real_features)
    result["fid_floor"] = fid_from_features(reference.features(train), real_features)
    if model.num_classes:
        result["class_accuracy"] = class_accuracy(reference, fake_uint8, classes)
    if getattr(model, "kind", None) == "stylegan":
        result.update(path_lengths(model, reference, n=min(n, PPL_PAIRS), seed=seed, batch_size=batch_size))
    return result


def path_lengths(model: nn.Module, reference, *, n: int, seed: int, batch_size: int = 500) -> dict:
    """StyleGAN's perceptual path lengths (Karras et al., Sec. 4.1) over n pairs with ε = 1e-4: `ppl` in W
    (lerp) and `ppl_z` in Z (slerp), the squared distance of the reference's unit-normalised features of
    the unrounded images (rounding to pixels would hide an ε step)."""
    from ..metrics.latent import perceptual_path_length

    def features(images: torch.Tensor) -> torch.Tensor:
        return reference.features((images.float().clamp(-1, 1) + 1) * 127.5)
    return {key: perceptual_path_length(model.generator, features, n=n, space=space, batch_size=batch_size,
                                        generator_rng=torch.Generator().manual_seed(seed))
            for key, space in (("ppl", "w"), ("ppl_z", "z"))}


def translation_scores(model: nn.Module, domains: dict, split: str, *, n: int, reference, seed: int, device="cpu",
                       batch_size: int = 500):
    """DiscoGAN on `split`: `fid_ab` (G_AB of the first n A images against the first n B images), `fid_ba`,
    their mean `fid`, and `fid_floor` (the mean over the two domains of n drawn training images against the
    same images). Returns (the measures, (x_a, x_b, G_AB(x_a), G_BA(x_b)))."""
    a, b = domains[split]
    n = min(n, len(a), len(b))
    x_a, x_b = first(a, n)[0], first(b, n)[0]
    ab = translate(model, scale_images(x_a), "ab", device=device, batch_size=batch_size)
    ba = translate(model, scale_images(x_b), "ba", device=device, batch_size=batch_size)
    result: dict = {"n": n}
    if reference is not None:
        train_a, train_b = domains["train"]
        result["fid_ab"] = fid(reference, to_uint8(ab), x_b)
        result["fid_ba"] = fid(reference, to_uint8(ba), x_a)
        result["fid"] = (result["fid_ab"] + result["fid_ba"]) / 2
        result["fid_floor"] = (fid(reference, drawn(train_b, min(n, len(train_b)), seed), x_b)
                               + fid(reference, drawn(train_a, min(n, len(train_a)), seed), x_a)) / 2
    return result, (x_a, x_b, ab, ba)


def translated_coverage(model: nn.Module, domain_a, modes_b: torch.Tensor, std: float, *, n: int, device="cpu",
                        batch_size: int = 500):
    """Two-domain points (toy-domains): where G_AB sends the first n points of A — `modes_covered` of B's modes
    and the `high_quality` share. Returns (the measures, G_AB(x_A))."""
    n = min(n, len(domain_a))
    ab = translate(model, first(domain_a, n)[0].float(), "ab", device=device, batch_size=batch_size)
    return {"n": n, **coverage(ab, modes_b, std)}, ab


def translation_rows(model: nn.Module, x_a, x_b, ab, ba, *, device="cpu", count: int = GRID_PER_CLASS):
    """Six rows of uint8 images: x_A, G_AB(x_A), G_BA(G_AB(x_A)), x_B, G_BA(x_B), G_AB(G_BA(x_B))."""
    count = min(count, len(x_a))
    aba = translate(model, ab[:count], "ba", device=device)
    bab = translate(model, ba[:count], "ab", device=device)
    return torch.cat([x_a[:count], to_uint8(ab[:count]), to_uint8(aba), x_b[:count], to_uint8(ba[:count]),
                      to_uint8(bab)])


# The networks each kind's phases call (compiled under --compile).
PLAYERS = {"gan": ("generator", "discriminator"),
           "discogan": ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")}


class GenerativeTask(Task):
    """GANs (plain, DCGAN, conditional, StyleGAN) and DiscoGAN: the discriminator and generator phases
    of Algorithm 1, their losses, FID or mode coverage each epoch, samples at the end."""

    name = "generative"
    default_data = "fashion-mnist"
    record_keys = ("loss", "d_loss", "g_loss", "d_real", "d_fake")
    monitor, monitor_mode = "loss", "min"

    def __init__(self, cfg, *, device, rank, world, channels_last, amp, log):
        if world > 1:
            raise UsageError("GAN training runs in one process (its phases train parts of the network, which DDP "
                             "does not split); start it without torchrun")
        super().__init__(cfg, device=device, rank=rank, world=world, channels_last=channels_last, amp=amp, log=log)
        self.val_keys: tuple[str, ...] = ()
        self.reference: ReferenceFeatures | None = None
        self._d_sums: dict[str, torch.Tensor] = {}
        self._step = 0
        self._compile_players = False
        self._fakes: torch.Tensor | None = None   # --g-fakes reuse: the discriminator phase's fakes, with graph

    # ---- data and network ---------------------------------------------------------------------
    def load_data(self) -> None:
        from ..data.generative import load_generative_data
        cfg = self.cfg
        self.refuse_options(CLASSIFICATION_OPTIONS, "an image classification")
        self.data = load_generative_data(cfg.data, data_dir=cfg.data_dir, download=cfg.download, seed=cfg.seed,
                                         image_size=cfg.image_size, val_size=cfg.val_size)
        self.splits = carve_splits(self.data, val_size=cfg.val_size, seed=cfg.seed)
        self.full_splits = dict(self.splits)   # fid_floor draws from the whole training split, as `eval` does
        if cfg.train_limit and cfg.train_limit < len(self.splits["train"]):
            subset = torch.randperm(len(self.splits["train"]), generator=torch.Generator().manual_seed(cfg.seed))
            self.splits["train"] = self.splits["train"].take(subset[:cfg.train_limit])
        if cfg.test_limit and cfg.test_limit < len(self.splits["test"]):
            self.splits["test"] = self.splits["test"].take(first_indices(self.splits["test"], cfg.test_limit,
                                                                        bool(self.data.domains)))
        self.points = self.data.kind == "points"
        self.classes = list(self.data.classes)
        self.data_shape = tuple(self.data.input_size)
        self.input_size = self.data_shape
        if self.points:
            self.channels_last = False
            self.modes, self.mode_std = self.data.modes, self.data.mode_std
            self.val_keys = ("modes_covered", "high_quality")
            self.monitor, self.monitor_mode = "modes_covered", "max"
        else:
            self.normalizer = Normalizer([0.5] * self.data_shape[0], [0.5] * self.data_shape[0])
            self.reference = self._load_reference()
            if self.reference:
                self.val_keys = ("fid",)
                self.monitor, self.monitor_mode = "fid", "min"
            else:   # the players' losses say nothing of the samples' quality: keep the last epoch
                self.monitor_mode = "last"

    def _load_reference(self) -> ReferenceFeatures | None:
        cfg = self.cfg
        if cfg.fid_reference == "none":
            return None
        path = Path(cfg.fid_reference).expanduser() if cfg.fid_reference else default_reference(cfg.data)
        if not path.exists():
            raise UsageError(f"--data {cfg.data}: FID needs a reference classifier and {path} holds none; train one "
                             f"(visionzoo train --recipe fid-reference-fmnist --out {path}) or give --fid-reference "
                             "RUN, or --fid-reference none for no FID")
        return ReferenceFeatures(path, device=self.device, batch_size=cfg.eval_batch_size)

    @property
    def train_size(self) -> int:
        return self._domain_size() if getattr(self, "discogan", False) else len(self.splits["train"])

    def describe_data(self) -> str:
        what = "points" if self.points else "images"
        counts = " / ".join(f"{len(self.splits[name])} {name}" for name in SPLITS)
        return f"{counts} {what}" + (f", domains {' → '.join(self.data.domains)}" if self.data.domains else "")

    def build_model(self, **builder_kwargs) -> nn.Module:
        cfg = self.cfg
        # the data's classes for a conditional entry only: an unconditional one (dcgan) stays so unless
        # --model-arg num_classes=K asks otherwise
        wanted = {"num_classes": len(self.classes)} if get_entry(cfg.model).num_classes else {}
        wanted["in_chans"] = self.data_shape[0]   # a point network's dimension
        if not self.points:
            wanted["image_size"] = self.data_shape[-1]
        kwargs = {**builder_keywords(cfg.model, wanted), **builder_kwargs}
        model = self.build_network(kwargs)
        if not model.num_classes:     # an unconditional network: rebuilt from its entry's own num_classes
            kwargs.pop("num_classes", None)
        self.model_kwargs = kwargs
        self.kind = model.kind
        self.discogan = model.kind == "discogan"
        self.conditional = model.num_classes > 0
        if not self.discogan and cfg.disco_variant != "discogan":
            raise UsageError(f"--disco-variant {cfg.disco_variant} chooses among two-domain models; --model "
                             f"{cfg.model} is not one (try discogan_mlp_2d or discogan)")
        if self.discogan and cfg.g_fakes != "fresh":
            raise UsageError(f"--g-fakes {cfg.g_fakes}: DiscoGAN's generator step translates both domains itself; "
                             "use --g-fakes fresh")
        if self.discogan and self.points and self.data.domain_modes is None:
            raise UsageError(f"--model {cfg.model} translates between two domains; --data {cfg.data} is one "
                             "mixture: give toy-domains")
        if self.discogan and not self.data.domains:
            raise UsageError(f"--model {cfg.model} translates between two domains; give two-domain data such as "
                             "fmnist-bags-shoes or fmnist-edges-shoes")
        if self.discogan:
            self.domains = split_domains(self.splits)
            for split, pair in self.domains.items():
                for domain, images in zip(self.data.domains, pair):
                    if not len(images):
                        raise UsageError(f"the {split} split holds no {domain} images: give a larger "
                                         f"--{'test-limit' if split == 'test' else 'train-limit or --val-size'}")
        if self.conditional and model.num_classes != len(self.classes):
            raise UsageError(f"--model {cfg.model} is built for {model.num_classes} classes, --data {cfg.data} has "
                             f"{len(self.classes)}")
        if tuple(model.output_shape) != self.data_shape:
            raise UsageError(f"--model {cfg.model} makes samples of shape {tuple(model.output_shape)}, --data "
                             f"{cfg.data} holds {self.data_shape}; give --image-size or another model")
        if self.discogan:
            self.input_size = self.data_shape
        else:   # what the network's forward (the generator) takes: the MACs of one sample
            self.input_size = (model.latent_dim,)
        if self.reference:
            self._check_fid_sizes()
        return model

    def _check_fid_sizes(self) -> None:
        """Refuse, before training, validation or test splits too small for FID in the reference's features."""
        def size(split: str) -> int:
            return min(map(len, self.domains[split])) if self.discogan else len(self.splits[split])
        needed = self.reference.dims + 1
        for what, count in (("--val-size", min(VAL_SAMPLES, size("val"))),
                            ("--fid-samples/--test-limit", min(self.cfg.fid_samples, size("test")))):
            if count < needed:
                raise UsageError(f"{what} leaves {count} {'images per domain' if self.discogan else 'images'} for "
                                 f"FID in the {needed - 1} features of {self.reference.path}: give at least {needed}")

    def _domain_size(self) -> int:
        a, b = self.domains["train"]
        return min(len(a), len(b))

    def input_batches(self, batch_size: int, epoch: int = 0):
        """The discriminator's inputs: real training examples (domain A's for DiscoGAN), scaled as it sees them."""
        split = self.domains["train"][0] if self.discogan else self.splits["train"]
        for examples, _ in train_batches(split, batch_size, seed=self.cfg.seed, epoch=epoch, device=self.device):
            yield self.scale(examples)

    def compile(self, net: nn.Module) -> nn.Module:
        """`--compile`: the phases never call the container's forward, so it stays as it is and `attach`
        compiles the players they call. R1's double backward and evaluation run on the plain modules, which
        share the compiled ones' parameters."""
        self._compile_players = True
        return net

    def attach(self, model: nn.Module, net: nn.Module) -> None:
        super().attach(model, net)
        names = PLAYERS["discogan"] if model.kind == "discogan" else PLAYERS["gan"]

        def compiled(name: str) -> bool:
            return self._compile_players and (self.cfg.compile_players == "all" or name.startswith("generator"))
        self.players = SimpleNamespace(**{name: torch.compile(getattr(model, name)) if compiled(name)
                                          else getattr(model, name) for name in names})

    def optimized_modules(self) -> dict[str, nn.Module]:
        model = self.model
        if self.discogan:
            return {"discriminator": nn.ModuleList([model.discriminator_a, model.discriminator_b]),
                    "generator": nn.ModuleList([model.generator_ab, model.generator_ba])}
        return {"discriminator": model.discriminator, "generator": model.generator}

    def phases(self, step: int) -> list[str]:
        """Algorithm 1: the discriminator on every step, the generator after every k-th."""
        self._step = step   # StyleGAN's lazy R1 (r1_interval) regularises on every r1_interval-th step
        return ["discriminator", "generator"] if (step + 1) % self.cfg.d_steps == 0 else ["discriminator"]

    @property
    def chance_loss(self) -> float:
        return math.inf

    # ---- training -----------------------------------------------------------------------------
    def train_batches(self, epoch: int, start_step: int):
        cfg = self.cfg
        if not self.discogan:   # the classifiers' batches (kept on the device off the CPU)
            yield from train_batches(self.splits["train"], cfg.batch_size, seed=cfg.seed, epoch=epoch,
                                     start_step=start_step, device=self.device)
            return
        a, b = self.domains["train"]   # unpaired: each domain in its own seeded order
        batch_size = min(cfg.batch_size, len(a), len(b))
        order_a, order_b = epoch_order(len(a), cfg.seed, epoch), epoch_order(len(b), cfg.seed + 1, epoch)
        for step in range(start_step, steps_per_epoch(min(len(a), len(b)), batch_size)):
            window = slice(step * batch_size, (step + 1) * batch_size)
            yield a.fetch(order_a[window])[0].to(self.device), b.fetch(order_b[window])[0].to(self.device)

    def scale(self, examples: torch.Tensor) -> torch.Tensor:
        """uint8 images to [−1, 1] (points as they are)."""
        if self.points:
            return examples.float()
        return self.normalizer(examples, self.channels_last)

    def prepare(self, batch, generator):
        first, second = batch
        return (self.scale(first), self.scale(second)) if self.discogan else (self.scale(first), second)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.model.latent_dim, generator=generator, device=self.device)

    def training_step(self, batch, phase: str, generator) -> StepOutput:
        if self.discogan:
            return self._discogan_step(batch, phase)
        real, labels = batch
        y = labels if self.conditional else None
        model, players, n = self.model, self.players, len(real)
        # StyleGAN draws its style-mixing z and crossover layer from the step's generator: reproducible
        drawn = {"generator": generator} if self.kind == "stylegan" else {}
        if phase == "discriminator":
            z = self.noise(n, generator)
            # --g-fakes reuse keeps the generator's graph of the step's last fakes for the generator phase
            keep = self.cfg.g_fakes == "reuse" and "generator" in self.phases(self._step)
            with torch.set_grad_enabled(keep), autocast(self.device, self.amp):
                fake = players.generator(z, y, **drawn)
            self._fakes, fake = (fake if keep else None), fake.detach()
            if self.cfg.d_mixup:
                lam = _beta(self.cfg.d_mixup, generator, n).to(self.device)
                weight = lam.view(-1, *[1] * (real.dim() - 1)).to(real.dtype)
                with autocast(self.device, self.amp):
                    mixed_logits = players.discriminator(weight * real + (1 - weight) * fake.to(real.dtype), y)
                    with torch.no_grad():
                        real_logits, fake_logits = players.discriminator(real, y), players.discriminator(fake, y)
                loss = mixup_discriminator_loss(mixed_logits, lam)
            else:
                with autocast(self.device, self.amp):
                    real_logits, fake_logits = players.discriminator(real, y), players.discriminator(fake, y)
                loss = discriminator_loss(real_logits, fake_logits)
            losses = {"discriminator": loss}
            gamma = getattr(model, "r1_gamma", 0.0) if self.kind == "stylegan" else 0.0
            interval = getattr(model, "r1_interval", 1)
            if gamma and self._step % interval == 0:
                # StyleGAN's D: + γ/2 · E‖∇_x D(x)‖² at the real images (Mescheder et al.'s R1); lazily
                # (StyleGAN2) every `interval` steps, weighted by `interval` for the same expected penalty
                from ..layers.style import r1_penalty
                losses["r1"] = gamma / 2 * interval * r1_penalty(model.discriminator, real, y)
            return self._discriminator_output(losses, real_logits, fake_logits, n)
        fake, self._fakes = self._fakes, None
        with frozen(model.discriminator), autocast(self.device, self.amp):
            if fake is None:
                fake = players.generator(self.noise(n, generator), y, **drawn)
            fake_logits = players.discriminator(fake, y)
        return self._generator_output({"generator": generator_loss(fake_logits, self.cfg.gan_loss)}, n)

    def _discriminator_output(self, losses: dict, real_logits, fake_logits, n: int) -> StepOutput:
        """The sums of the discriminator phase: its GAN loss (without a regulariser), D's mean outputs."""
        detached = next(iter(losses.values())).detach().double()
        self._d_sums = {"d_loss": detached * n, "d_real": torch.sigmoid(real_logits.detach().double()).mean() * n,
                        "d_fake": torch.sigmoid(fake_logits.detach().double()).mean() * n}
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        return StepOutput(losses, {**self._d_sums, "g_loss": zero, "loss": detached * n}, n)

    def _generator_output(self, losses: dict, n: int) -> StepOutput:
        """The generator phase's output carries the discriminator phase's sums (the engine keeps only the
        last phase's); its own loss counts k times, standing for the k steps since the last one."""
        weight = self.cfg.d_steps * n
        g_sum = sum(losses.values()).detach().double() * weight
        d_sums = self._d_sums or dict.fromkeys(("d_loss", "d_real", "d_fake"), torch.zeros_like(g_sum))
        sums = {**d_sums, "g_loss": g_sum, "loss": d_sums["d_loss"] + g_sum}
        return StepOutput(losses, sums, n)

    def _discogan_step(self, batch, phase: str) -> StepOutput:
        """One phase of DiscoGAN, or of the other models of Kim et al.'s Fig. 2 (--disco-variant): those
        train G_AB against D_B only, "reconstruction" adding d(x_A, G_BA(G_AB(x_A)))."""
        x_a, x_b = batch
        model, players, n = self.model, self.players, len(x_a)
        both_ways = self.cfg.disco_variant == "discogan"
        if phase == "discriminator":
            with torch.no_grad(), autocast(self.device, self.amp):
                x_ab = players.generator_ab(x_a)
                x_ba = players.generator_ba(x_b) if both_ways else None
            with autocast(self.device, self.amp):
                judged = [(players.discriminator_a(x_a), players.discriminator_a(x_ba))] if both_ways else []
                judged.append((players.discriminator_b(x_b), players.discriminator_b(x_ab)))
            # L_D = L_DA + L_DB, each −[E log D(x) + E log(1 − D(G(·)))]
            loss = sum(discriminator_loss(real, fake) for real, fake in judged)
            return self._discriminator_output({"discriminator": loss}, torch.cat([real for real, _ in judged]),
                                              torch.cat([fake for _, fake in judged]), n)
        distance = self.cfg.reconstruction_loss
        with frozen(model.discriminator_a), frozen(model.discriminator_b), autocast(self.device, self.amp):
            x_ab = players.generator_ab(x_a)
            losses = {"gan_ab": None}
            if both_ways:
                x_ba = players.generator_ba(x_b)
                x_aba, x_bab = players.generator_ba(x_ab), players.generator_ab(x_ba)
                losses["reconstruction_a"] = reconstruction_distance(x_a, x_aba, distance)
                losses["gan_ba"] = generator_loss(players.discriminator_a(x_ba), self.cfg.gan_loss)
                losses["reconstruction_b"] = reconstruction_distance(x_b, x_bab, distance)
            elif self.cfg.disco_variant == "reconstruction":
                losses["reconstruction_a"] = reconstruction_distance(x_a, players.generator_ba(x_ab), distance)
            losses["gan_ab"] = generator_loss(players.discriminator_b(x_ab), self.cfg.gan_loss)
        return self._generator_output(losses, n)

    # ---- evaluation -----------------------------------------------------------------------------
    def samples(self, model: nn.Module, n: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n samples of `model`'s generator (float, CPU), conditioned on `labels` or on balanced classes."""
        return sample(model, n, seed=seed, labels=labels, device=self.device, batch_size=self.cfg.eval_batch_size)

    @torch.no_grad()
    def _losses(self, discriminators, pairs, labels=None) -> dict:
        """The two players' losses and D's mean outputs on held-out examples: `pairs` of (real, fake) scaled
        examples, one per discriminator (two for DiscoGAN, whose losses add)."""
        batch = self.cfg.eval_batch_size
        d_loss = g_loss = 0.0
        real_out, fake_out = [], []
        for discriminator, (real, fake) in zip(discriminators, pairs):
            def logits(x):
                return torch.cat([discriminator(x[i:i + batch].to(self.device),
                                                None if labels is None else labels[i:i + batch].to(self.device))
                                  .float().cpu() for i in range(0, len(x), batch)])
            with evaluating(discriminator):
                real_logits, fake_logits = logits(real), logits(fake)
            d_loss += discriminator_loss(real_logits, fake_logits).item()
            g_loss += generator_loss(fake_logits, self.cfg.gan_loss).item()
            real_out.append(torch.sigmoid(real_logits))
            fake_out.append(torch.sigmoid(fake_logits))
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss,
                "d_real": torch.cat(real_out).mean().item(), "d_fake": torch.cat(fake_out).mean().item()}

    def evaluate(self, model: nn.Module, split: str) -> dict:
        """The losses on up to VAL_SAMPLES held-out examples against as many samples from fixed noise, and
        their FID against those examples (mode coverage for points; translations for DiscoGAN)."""
        if self.discogan:
            a, b = self.domains[split]
            n = min(VAL_SAMPLES, len(a), len(b))
            x_a, x_b = first(a, n)[0], first(b, n)[0]
            scaled = (lambda x: x.float()) if self.points else scale_images
            ab, ba = (translate(model, scaled(x), direction, device=self.device,
                                batch_size=self.cfg.eval_batch_size) for x, direction in ((x_a, "ab"), (x_b, "ba")))
            result = self._losses((model.discriminator_a, model.discriminator_b),
                                  ((scaled(x_a), ba), (scaled(x_b), ab)))
            if self.points:   # where G_AB sends A's points among B's modes
                result.update(coverage(ab, self.data.domain_modes[1], self.mode_std))
            elif self.reference:
                result["fid"] = 0.5 * (fid(self.reference, to_uint8(ab), x_b) + fid(self.reference, to_uint8(ba), x_a))
            return result
        n = min(VAL_SAMPLES, len(self.splits[split]))
        real, labels = first(self.splits[split], n)
        labels = labels if model.num_classes else None
        fake = self.samples(model, n, self.cfg.seed, labels)
        result = self._losses((model.discriminator,), ((self.scale(real), fake),), labels)
        if self.points:
            result.update(coverage(fake, self.modes, self.mode_std))
        elif self.reference:
            result["fid"] = fid(self.reference, to_uint8(fake), real)
        return result

    def test(self, model: nn.Module, out, title: str) -> dict:
        cfg = self.cfg
        measured = {**self.full_splits, "test": self.splits["test"]}   # the floor draws from all training images
        if self.discogan and self.points:
            result = self._translated_coverage(model, split_domains(measured)["test"], out, title)
        elif self.discogan:
            result, shown = translation_scores(model, split_domains(measured), "test", n=cfg.fid_samples,
                                               reference=self.reference, device=self.device,
                                               batch_size=cfg.eval_batch_size, seed=cfg.seed)
            if out is not None:
                save_image_grid(translation_rows(model, *shown, device=self.device), out / "samples.png", rows=6)
        else:
            result = sample_scores(model, measured, "test", n=cfg.fid_samples, seed=cfg.seed,
                                   reference=self.reference, classes=self.classes,
                                   modes=(self.modes, self.mode_std) if self.points else None,
                                   device=self.device, batch_size=cfg.eval_batch_size)
            if out is not None and self.points:
                fake = self.samples(model, result["n"], cfg.seed + SAMPLE_SEED_OFFSET)
                plot_points(first(self.splits["test"], result["n"])[0], fake, self.modes, out / "modes.png",
                            f"{title}: {result['modes_covered']:.0f} of {len(self.modes)} modes, "
                            f"{result['high_quality']:.0%} high quality")
            elif out is not None:
                self.write_samples(model, out / "samples.png")
        shown = "  ".join(f"{key} {value:.4f}" for key, value in result.items() if isinstance(value, float))
        self.log(f"test {shown or 'no FID (--fid-reference none)'}  ({result['n']} samples)")
        summary = {f"test_{key}": value for key, value in result.items()}
        if self.reference:
            summary["fid_reference"] = self.reference.record()
        return summary

    def _translated_coverage(self, model: nn.Module, domains, out, title: str) -> dict:
        """Two-domain points: the modes of B that G_AB(x_A) covers and its high-quality share (modes.png: over B)."""
        a, b = domains
        modes_b = self.data.domain_modes[1]
        result, ab = translated_coverage(model, a, modes_b, self.mode_std, n=self.cfg.fid_samples, device=self.device,
                                         batch_size=self.cfg.eval_batch_size)
        n = result["n"]
        if out is not None:
            plot_points(first(b, n)[0], ab, modes_b, out / "modes.png",
                        f"{title}: G_AB(A) covers {result['modes_covered']:.0f} of {len(modes_b)} modes of B")
        return result

    def write_samples(self, model: nn.Module, path: Path) -> None:
        """samples.png: 64 samples, or one row of 8 per class for a conditional network."""
        if model.num_classes:
            labels = torch.arange(model.num_classes).repeat_interleave(GRID_PER_CLASS)
            images = to_uint8(self.samples(model, len(labels), self.cfg.seed, labels))
            save_image_grid(images, path, rows=model.num_classes)
        else:
            save_image_grid(to_uint8(self.samples(model, GRID_SAMPLES, self.cfg.seed)), path, rows=8)

    # ---- the run directory ----------------------------------------------------------------------
    def resolved(self) -> dict:
        return {"data_shape": list(self.data_shape), "num_classes": len(self.classes),
                **{f"{name}_examples": len(split) for name, split in self.splits.items()},
                "fid_reference": self.reference.record() if self.reference else None}

    def model_meta(self) -> dict:
        cfg = self.cfg
        meta = {"classes": self.classes, "data": cfg.data, "kind": self.kind, "latent_dim": self.model.latent_dim,
                "data_args": {"val_size": cfg.val_size, "seed": cfg.seed, "image_size": cfg.image_size},
                "domains": list(self.data.domains) if self.data.domains else None,
                "gan_loss": cfg.gan_loss, "generator_ema": cfg.ema, "fid_samples": cfg.fid_samples,
                "fid_reference": self.reference.record() if self.reference else None,
                "eval": {"batch_size": cfg.eval_batch_size, "channels_last": self.channels_last}}
        if self.points:
            return {**meta, "output_shape": list(self.data_shape)}
        return {**meta, "input_size": list(self.data_shape), "mean": [0.5] * self.data_shape[0],
                "std": [0.5] * self.data_shape[0]}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_gan_curves(history, path, self.val_keys)


@contextmanager
def frozen(module: nn.Module):
    """Within the block, `module`'s parameters take no gradient (the generator phase leaves D unchanged;
    autograd then computes no gradient for D's weights at all)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def class_accuracy(reference: ReferenceFeatures, images: torch.Tensor, classes: list[str]) -> float:
    """The share of conditional samples (balanced labels 0, 1, … in order) that the reference classifies as
    the class they were generated for; classes matched by name with the reference's."""
    missing = [name for name in classes if name not in reference.classes]
    if missing:
        raise UsageError(f"the FID reference {reference.path} does not know the class {missing[0]!r}")
    wanted = torch.tensor([reference.classes.index(name) for name in classes])[balanced_labels(len(images),
                                                                                                len(classes))]
    return (reference.predict(images) == wanted).double().mean().item()


def plot_gan_curves(history: list[dict], path, val_keys=()) -> None:
    """Per epoch: the two players' losses and D's outputs (train and val), then one panel per validation-only
    metric (FID, or modes covered and the high-quality share: the mode-collapse curves)."""
    if not history:
        return
    epochs = [r["epoch"] for r in history]
    panels = 2 + len(val_keys)
    fig, axes = subplots(1, panels, figsize=(4.2 * panels, 3.4), layout="constrained")
    for key, colour in (("d_loss", "tab:red"), ("g_loss", "tab:blue")):
        axes[0].plot(epochs, [r[f"train_{key}"] for r in history], color=colour, marker="o", ms=3,
                     label=f"train {key}")
        axes[0].plot(epochs, [r[f"val_{key}"] for r in history], color=colour, ls="--", marker="o", ms=3,
                     label=f"val {key}")
    axes[0].set_title("losses", fontsize=9)
    for key, colour in (("d_real", "tab:green"), ("d_fake", "tab:orange")):
        axes[1].plot(epochs, [r[f"train_{key}"] for r in history], color=colour, marker="o", ms=3,
                     label=f"train {key}")
    axes[1].axhline(0.5, color="0.6", lw=0.8)
    axes[1].set_ylim(0, 1)
    axes[1].set_title("D's mean output (0.5: D* when p_g = p_data)", fontsize=9)
    for ax, key in zip(axes[2:], val_keys):
        ax.plot(epochs, [r.get(f"val_{key}") for r in history], marker="o", ms=3, color="tab:purple")
        ax.set_title(f"val {key}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    save_figure(fig, path)
