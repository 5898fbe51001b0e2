"""StyleGAN: Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative Adversarial Networks",
CVPR 2019 — the style-based generator of Fig. 1(b), style mixing (Sec. 3.1, Fig. 3), stochastic
variation (Sec. 3.2, Figs. 4–5) and the truncation trick in W (Appendix B, Fig. 8); building blocks in
layers/style.py.

Generator (`StyleGenerator`):
- mapping network f (`MappingNetwork`): z pixel-normalised, then 8 fully connected layers with
  leaky ReLU 0.2, equalised learning rate with multiplier 0.01 (Appendix C), z and w of the same size;
- synthesis network g (`SynthesisNetwork`): a learned constant 4×4 input (7×7 for 28×28 images), then
  per resolution two "layers", each a 3×3 convolution (the first of a resolution after ×2 nearest
  upsampling — computed as one transposed convolution, the paper's code's fused `upscale2d_conv2d` — and,
  with ``blur=True``, followed by the [1, 2, 1] filter; the very first layer has no convolution),
  the noise input with a learned per-channel scale (zero at first), a bias, leaky ReLU and AdaIN whose
  style is an affine transform of w; a 1×1 "toRGB" convolution at the end. 2·(log₂ R − 1) layers:
  18 at 1024², 8 at 32², 6 at 28² (7², 14², 28²). No progressive growing: the paper grows FFHQ from 8²
  to 1024², a training schedule for large images rather than part of the architecture; at 32² the
  network trains at full resolution from the start (as StyleGAN2 does at every size);
- the running mean w̄ (`w_avg`), updated in training mode by every forward pass with decay 0.995;
- style-mixing regularisation (Sec. 3.1): in training mode, with probability `mixing_probability`
  (0.9 for FFHQ) a second z is drawn and its w drives every layer from a crossover layer drawn
  uniformly in [1, L) on: one draw per batch, as the paper's code. Both draws come from the
  ``generator=`` torch.Generator when given (reproducible), else from torch's global RNG;
- truncation in W (Appendix B): w' = w̄ + ψ (w − w̄) for the first `truncation_layers` layers (None: the
  network's `truncation_cutoff`: 8 for FFHQ, the paper's code's default, all layers for the small network).

Outputs are the linear toRGB values in training (the paper's generator has no Tanh); in eval mode they
are clipped to [−1, 1], which is what the paper's code does when it turns them into pixels.

Discriminator (`StyleDiscriminator`): ProGAN's, as StyleGAN keeps it: fromRGB (1×1), per resolution a
3×3 convolution with leaky ReLU, then (``blur=True``) the blur, a 3×3 convolution with 2×2 average pooling
and the bias and leaky ReLU after the pooling — the paper's code's order, `act(conv2d_downscale2d(blur(x)))`,
its convolution and pooling computed as one stride-2 convolution — and at 4²
(7²) the minibatch standard deviation, a 3×3 convolution and two dense layers to one logit; equalised
learning rate throughout. Losses (the task's): non-saturating, with the R1 penalty
(`layers.style.r1_penalty`) weighted by γ/2, γ = `StyleGAN.r1_gamma` (10 as the paper's FFHQ; 1 for the small
network: at 28² the paper's 10 led after 80 000 images and tied (two seeds) after 275 000, the fmnist-stylegan
recipe's images then; BENCHMARKS.md). StyleGAN applies R1 on every discriminator step
(`r1_interval=1`, the default); StyleGAN2's lazy regularisation (Karras et al., "Analyzing and Improving the
Image Quality of StyleGAN", CVPR 2020, Sec. 3.1) applies it every `r1_interval` steps (16 there) weighted
γ/2 · r1_interval, the same expected penalty. The R1 step's double backward costs about three plain
discriminator steps on the CPU, so lazy R1 (16) makes a training step about twice as fast there.

Channels per resolution: min(max_channels, channel_base / R) for R = 4·2^i, the paper's 512 up to 32²
then halving (16 at 1024²); the 7·2^i resolutions of 28² images take the channels of 4·2^i.

Depth at small sizes: 1024² has nine resolutions, 28² three (6 layers against 18), so the coarse
styles that set an image's layout get two layers where FFHQ's get four. As DCGAN's (models/gan.py),
``g_extra_convs`` adds that many style layers (3×3 convolution, noise, bias, leaky ReLU, AdaIN, each
with its own style) at the first resolution, counted among the coarse styles, and ``d_extra_convs``
that many 3×3 convolutions with leaky ReLU at the discriminator's first resolution, before the minibatch
standard deviation. Both 0 by default: the paper's networks; the fmnist-stylegan recipe adds four and two
(with them and four times the rate, test FID 7.90 → 3.84 in the same 28 minutes; BENCHMARKS.md) and turns
style mixing off (3.84 → 1.67: at 220 000 images the regularisation costs FID; the paper's Table 2 finds it
neutral at convergence).
``mapping_layers`` and ``mapping_lr_multiplier`` set the mapping network's depth and rate multiplier (8 and
0.01, the paper's; the multiplier at 0.1 trained worse in the recipe).

Registered (the card measures the generator, as `forward` is the generator: params and MACs are G's):
- ``stylegan_ffhq_1024``: the paper's FFHQ generator, z, w ∈ ℝ⁵¹², 1024² RGB, 18 layers: 26 212 019
  parameters (mapping 2 101 248, synthesis 24 110 771), the paper's "26.2M trainable parameters"
  (Sec. 2). The paper's code counts 26 219 627: it keeps a toRGB at every resolution for progressive
  growing (8 more 1×1 convolutions, 7 608 parameters); this one has the final toRGB only.
- ``stylegan_small``: Fashion-MNIST, 1×32×32 (``image_size=28``: 1×28×28), z, w ∈ ℝ¹²⁸, the same 8-layer
  mapping, 64 channels (32 at 32²): a CPU budget (``max_channels``, ``channel_base`` widen it). The
  fmnist-stylegan recipe takes ``channel_base=256``: 64, 32 and 16 channels at 7², 14² and 28², the paper's
  halving per doubling from a smaller base; ``channel_base=512, max_channels=128`` (128, 64, 32) trains
  1.35 × as many images per second on the CPU as 64 everywhere, and 256 twice as many again — in the
  recipe's 30 minutes 8 epochs of the narrow network beat 4 of the wider one (BENCHMARKS.md).

Figure helpers (pure functions of a generator, for the experiment and `visionzoo sample`):
`style_mixing_images` (Fig. 3), `noise_variants` (Fig. 5), `stochastic_variation` (Fig. 4),
`truncation_sweep` (Fig. 8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..layers.style import (
    LEAKY_GAIN,
    LEAKY_SLOPE,
    AdaIN,
    Blur2d,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    NoiseInjection,
    PixelNorm,
)
from ..registry import register_model
from .gan import check_extra_convs

NOISE_MODES = (True, False, "coarse", "fine")
STYLE_GROUPS = ("coarse", "middle", "fine")
TRUNCATION_PSIS = (1.0, 0.7, 0.5, 0.0, -0.5, -1.0)   # Fig. 8


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian draws from `generator` (on its own device) or the global RNG, moved to `like`'s device."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


class MappingNetwork(nn.Module):
    """f: Z → W, pixel norm then `num_layers` equalised-lr dense layers with leaky ReLU."""

    def __init__(self, latent_dim: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01):
        super().__init__()
        self.normalize = PixelNorm()
        self.layers = nn.ModuleList(
            EqualizedLinear(latent_dim if i == 0 else w_dim, w_dim, gain=LEAKY_GAIN, lr_multiplier=lr_multiplier)
            for i in range(num_layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.normalize(z)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LEAKY_SLOPE)
        return x


CONV_KINDS = ("none", "same", "upsampled")   # a StyleLayer's convolution: none (on the constant), 3×3, ×2 up + 3×3


class StyleLayer(nn.Module):
    """One layer of g: [upsample → conv (fused) → blur | conv] → noise → bias → leaky ReLU → AdaIN(·, A(w))."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, conv: str, blur: bool):
        super().__init__()
        if conv not in CONV_KINDS:
            raise ValueError(f"conv={conv!r}: one of {CONV_KINDS}")
        self.resolution, self.upsample = resolution, conv == "upsampled"
        self.conv = EqualizedConv2d(in_channels, out_channels, 3, bias=False, gain=LEAKY_GAIN) if conv != "none" else None
        self.blur = Blur2d() if blur and self.upsample else None
        self.noise = NoiseInjection(out_channels)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.adain = AdaIN(out_channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.upsample:
            x = self.conv.upsampled(x)
        elif self.conv is not None:
            x = self.conv(x)
        if self.blur is not None:
            x = self.blur(x)
        if noise is not None:
            x = self.noise(x, noise)
        x = F.leaky_relu(x + self.bias[None, :, None, None], LEAKY_SLOPE)
        return self.adain(x, w)


def _resolutions(image_size: int) -> list[int]:
    """start·2^i up to `image_size`, start in 4…7: [4, 8, 16, 32] for 32, [7, 14, 28] for 28."""
    start, doublings = image_size, 0
    while start > 7 and start % 2 == 0:
        start, doublings = start // 2, doublings + 1
    if not 4 <= start <= 7 or doublings == 0:
        raise UsageError(f"image_size={image_size}: StyleGAN needs a side of s·2^k with s in 4…7 and k ≥ 1 "
                         "(e.g. 28, 32, 64, 1024)")
    return [start << i for i in range(doublings + 1)]


def _group_sizes(count: int) -> tuple[int, int, int]:
    """How many resolutions are coarse, middle and fine: the paper's 4²–8², 16²–32², 64²–1024² at 1024²
    (2, 2, 5); with fewer resolutions fine and middle keep at least one each (32²: 4²–8², 16², 32²)."""
    coarse = min(2, count - 2)
    middle = min(2, count - coarse - 1)
    return coarse, middle, count - coarse - middle


class SynthesisNetwork(nn.Module):
    """g: the learned constant, two style layers per resolution, toRGB; `forward(ws (N, L, w_dim))`."""

    def __init__(self, *, image_size: int, out_channels: int, w_dim: int, channel_base: int, max_channels: int,
                 blur: bool = True, extra_convs: int = 0):
        super().__init__()
        self.resolutions = _resolutions(image_size)
        channels = [min(max_channels, channel_base // (4 << i)) for i in range(len(self.resolutions))]
        start = self.resolutions[0]
        self.const = nn.Parameter(torch.ones(1, channels[0], start, start))
        layers = []
        for i, resolution in enumerate(self.resolutions):
            first_in = channels[max(i - 1, 0)]
            layers.append(StyleLayer(first_in, channels[i], w_dim, resolution, conv="upsampled" if i else "none",
                                     blur=blur))
            for _ in range(1 + (extra_convs if i == 0 else 0)):
                layers.append(StyleLayer(channels[i], channels[i], w_dim, resolution, conv="same", blur=blur))
        self.layers = nn.ModuleList(layers)
        self.to_rgb = EqualizedConv2d(channels[-1], out_channels, 1)
        self.w_dim = w_dim
        sizes = _group_sizes(len(self.resolutions))
        bounds = [0, sizes[0], sizes[0] + sizes[1], len(self.resolutions)]
        # Layer indices of each group of styles: the layers of its resolutions (two each, the extra ones at the first).
        first_layer = [sum(layer.resolution < self.resolutions[k] for layer in layers) for k in bounds[:-1]]
        first_layer.append(len(layers))
        self.style_groups = {name: range(first_layer[i], first_layer[i + 1]) for i, name in enumerate(STYLE_GROUPS)}

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def group_resolutions(self, group: str) -> list[int]:
        return sorted({self.layers[i].resolution for i in self.style_groups[group]})

    def noisy_layers(self, noise: bool | str) -> set[int]:
        """The layers that get noise: all (True), none (False), "coarse" (the paper's 4²–32²: coarse and
        middle styles) or "fine" (64²–1024²)."""
        if noise is True:
            return set(range(self.num_layers))
        if noise is False:
            return set()
        if noise == "fine":
            return set(self.style_groups["fine"])
        if noise == "coarse":
            return set(self.style_groups["coarse"]) | set(self.style_groups["middle"])
        raise UsageError(f"noise={noise!r}: choose True, False, \"coarse\" or \"fine\"")

    def draw_noise(self, batch: int, *, like: torch.Tensor, generator: torch.Generator | None = None):
        """One noise image (batch, 1, R, R) per layer, R its resolution."""
        return [_randn((batch, 1, layer.resolution, layer.resolution), like, generator) for layer in self.layers]

    def forward(self, ws: torch.Tensor, *, noise: bool | str = True, noise_inputs=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if ws.dim() != 3 or ws.shape[1:] != (self.num_layers, self.w_dim):
            raise UsageError(f"synthesis takes ws of shape (N, {self.num_layers}, {self.w_dim}); got {tuple(ws.shape)}")
        if noise_inputs is not None and len(noise_inputs) != self.num_layers:
            raise UsageError(f"noise_inputs: {len(noise_inputs)} maps for {self.num_layers} layers")
        noisy = self.noisy_layers(noise)
        if noise_inputs is None:   # drawn before the layers run, so that torch.compile sees them as one graph
            noise_inputs = [_randn((len(ws), 1, layer.resolution, layer.resolution), ws, generator)
                            if i in noisy else None for i, layer in enumerate(self.layers)]
        x = self.const.repeat(len(ws), 1, 1, 1)   # not a view: a no-grad view of a parameter confuses hooks
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise_inputs[i] if i in noisy else None)
        return self.to_rgb(x)


class StyleGenerator(nn.Module):
    """G = g ∘ f with w̄, style mixing and truncation; see the module docstring for `forward`'s keywords."""

    def __init__(self, *, latent_dim: int, w_dim: int, image_size: int, out_channels: int, channel_base: int,
                 max_channels: int, mapping_layers: int = 8, mapping_lr_multiplier: float = 0.01, blur: bool = True,
                 extra_convs: int = 0, mixing_probability: float = 0.9, w_avg_decay: float = 0.995,
                 truncation_cutoff: int | None = None):
        super().__init__()
        if not 0 <= mixing_probability <= 1:
            raise UsageError(f"mixing_probability={mixing_probability}: a probability in [0, 1]")
        self.latent_dim, self.w_dim = latent_dim, w_dim
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(image_size=image_size, out_channels=out_channels, w_dim=w_dim,
                                          channel_base=channel_base, max_channels=max_channels, blur=blur,
                                          extra_convs=extra_convs)
        self.mixing_probability, self.w_avg_decay = mixing_probability, w_avg_decay
        self.truncation_cutoff = truncation_cutoff
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @property
    def num_layers(self) -> int:
        return self.synthesis.num_layers

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, w_dim) → ws (N, L, w_dim): the same w for every layer."""
        return w[:, None, :].expand(-1, self.num_layers, -1)

    def truncate(self, ws: torch.Tensor, psi: float, layers: int | None = None) -> torch.Tensor:
        """w̄ + ψ (w − w̄) in the first `layers` layers (None: `truncation_cutoff`, None there: all)."""
        layers = self.truncation_cutoff if layers is None else layers
        if psi == 1 or layers == 0:
            return ws
        layers = self.num_layers if layers is None else min(layers, self.num_layers)
        truncated = torch.lerp(self.w_avg.to(ws.dtype).expand_as(ws[:, :layers]), ws[:, :layers], psi)
        return torch.cat([truncated, ws[:, layers:]], dim=1)

    @staticmethod
    def mix(ws: torch.Tensor, ws_other: torch.Tensor, layers) -> torch.Tensor:
        """ws with the styles of `layers` (indices) taken from ws_other."""
        mixed = ws.clone()
        mixed[:, list(layers)] = ws_other[:, list(layers)]
        return mixed

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, *, truncation: float = 1.0,
                truncation_layers: int | None = None, mix_z: torch.Tensor | None = None,
                mix_layer: int | None = None, noise: bool | str = True, noise_inputs=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if labels is not None:
            raise UsageError("StyleGAN is unconditional: it takes no class labels")
        if (mix_z is None) != (mix_layer is None):
            raise UsageError("style mixing needs both mix_z and mix_layer (the first layer styled by mix_z)")
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(torch.lerp(w.detach().mean(0).to(self.w_avg.dtype), self.w_avg, self.w_avg_decay))
        ws = self.broadcast(w)
        if mix_z is None and self.training and self.mixing_probability > 0:
            device = generator.device if generator is not None else "cpu"
            if float(torch.rand((), generator=generator, device=device)) < self.mixing_probability:
                mix_z = _randn(z.shape, z, generator)
                # kept a tensor: as a Python int each crossover layer would be a graph of its own under torch.compile
                mix_layer = torch.randint(1, self.num_layers, (), generator=generator, device=device)
        if mix_z is not None:
            if not isinstance(mix_layer, torch.Tensor) and not 0 <= mix_layer <= self.num_layers:
                raise UsageError(f"mix_layer={mix_layer}: a layer in 0…{self.num_layers}")
            from_mix_z = torch.arange(self.num_layers, device=ws.device)[None, :, None] >= mix_layer
            ws = torch.where(from_mix_z, self.broadcast(self.mapping(mix_z)), ws)
        ws = self.truncate(ws, truncation, truncation_layers)
        images = self.synthesis(ws, noise=noise, noise_inputs=noise_inputs, generator=generator)
        return images if self.training else images.clamp(-1.0, 1.0)


class StyleDiscriminator(nn.Module):
    """ProGAN's discriminator with an equalised learning rate; `forward(x, labels=None) -> logits (N,)`."""

    def __init__(self, *, image_size: int, in_channels: int, channel_base: int, max_channels: int,
                 blur: bool = True, mbstd_group: int = 4, extra_convs: int = 0):
        super().__init__()
        resolutions = _resolutions(image_size)
        channels = [min(max_channels, channel_base // (4 << i)) for i in range(len(resolutions))]
        self.from_rgb = EqualizedConv2d(in_channels, channels[-1], 1, gain=LEAKY_GAIN)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(channels[i], channels[i], 3, gain=LEAKY_GAIN),
                           EqualizedConv2d(channels[i], channels[i - 1], 3, gain=LEAKY_GAIN)])
            for i in range(len(resolutions) - 1, 0, -1))
        self.blur = Blur2d() if blur else None
        self.mbstd = MinibatchStdDev(mbstd_group)
        start, top = resolutions[0], channels[0]
        self.extra_convs = nn.ModuleList(EqualizedConv2d(top, top, 3, gain=LEAKY_GAIN) for _ in range(extra_convs))
        self.final_conv = EqualizedConv2d(top + 1, top, 3, gain=LEAKY_GAIN)
        self.final_dense = EqualizedLinear(top * start * start, top, gain=LEAKY_GAIN)
        self.output = EqualizedLinear(top, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            raise UsageError("StyleGAN is unconditional: its discriminator takes no class labels")
        x = F.leaky_relu(self.from_rgb(x), LEAKY_SLOPE)
        for first, second in self.blocks:
            x = F.leaky_relu(first(x), LEAKY_SLOPE)
            if self.blur is not None:
                x = self.blur(x)
            x = F.leaky_relu(second.downsampled(x), LEAKY_SLOPE)
        for conv in self.extra_convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
        x = F.leaky_relu(self.final_conv(self.mbstd(x)), LEAKY_SLOPE)
        x = F.leaky_relu(self.final_dense(x.flatten(1)), LEAKY_SLOPE)
        return self.output(x).squeeze(1)


class StyleGAN(nn.Module):
    """The GAN container the generative task trains: `generator`, `discriminator`, `forward` = generator."""

    kind = "stylegan"

    def __init__(self, *, latent_dim: int, w_dim: int, image_size: int, channels: int, channel_base: int,
                 max_channels: int, mapping_layers: int = 8, mapping_lr_multiplier: float = 0.01, blur: bool = True,
                 mixing_probability: float = 0.9, truncation_cutoff: int | None = None, r1_gamma: float = 10.0,
                 r1_interval: int = 1, g_extra_convs: int = 0, d_extra_convs: int = 0):
        super().__init__()
        check_extra_convs(g_extra_convs=g_extra_convs, d_extra_convs=d_extra_convs)
        if r1_interval < 1:
            raise UsageError(f"r1_interval={r1_interval}: R1 every k ≥ 1 discriminator steps (1 = StyleGAN's "
                             "every step, 16 = StyleGAN2's lazy regularisation)")
        self.generator = StyleGenerator(latent_dim=latent_dim, w_dim=w_dim, image_size=image_size,
                                        out_channels=channels, channel_base=channel_base, max_channels=max_channels,
                                        mapping_layers=mapping_layers, mapping_lr_multiplier=mapping_lr_multiplier,
                                        blur=blur, extra_convs=g_extra_convs,
                                        mixing_probability=mixing_probability, truncation_cutoff=truncation_cutoff)
        self.discriminator = StyleDiscriminator(image_size=image_size, in_channels=channels,
                                                channel_base=channel_base, max_channels=max_channels, blur=blur,
                                                extra_convs=d_extra_convs)
        self.latent_dim, self.num_classes = latent_dim, 0
        self.output_shape = (channels, image_size, image_size)
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval

    @property
    def card_module(self) -> nn.Module:
        """What the registry's card measures: the generator, fed one z of `card_input_size`."""
        return self.generator

    @property
    def card_input_size(self) -> tuple[int]:
        return (self.latent_dim,)

    @property
    def style_mixing_probability(self) -> float:
        return self.generator.mixing_probability

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return self.generator(z, labels, **kwargs)


_PAPER = dict(family="StyleGAN", year=2019, task="generative",
              paper="Karras, Laine, Aila: A Style-Based Generator Architecture for Generative Adversarial Networks")


def _check_unconditional(num_classes: int) -> None:
    if num_classes:
        raise UsageError(f"StyleGAN is unconditional; num_classes={num_classes} must be 0")


@register_model("stylegan_ffhq_1024", **_PAPER, input_size=(3, 1024, 1024), num_classes=0, paper_params="26.2M")
def stylegan_ffhq_1024(num_classes: int = 0, in_chans: int = 3, image_size: int = 1024, latent_dim: int = 512,
                       mixing_probability: float = 0.9, r1_gamma: float = 10.0, r1_interval: int = 1,
                       blur: bool = True) -> StyleGAN:
    """The paper's FFHQ configuration: 18 layers, 512 channels up to 32², truncation on the first 8 layers."""
    _check_unconditional(num_classes)
    return StyleGAN(latent_dim=latent_dim, w_dim=latent_dim, image_size=image_size, channels=in_chans,
                    channel_base=16384, max_channels=512, blur=blur, mixing_probability=mixing_probability,
                    truncation_cutoff=8, r1_gamma=r1_gamma, r1_interval=r1_interval)


@register_model("stylegan_small", **_PAPER, input_size=(1, 32, 32), num_classes=0, dataset="fashion-mnist")
def stylegan_small(num_classes: int = 0, in_chans: int = 1, image_size: int = 32, latent_dim: int = 128,
                   channel_base: int = 1024, max_channels: int = 64, mixing_probability: float = 0.9,
                   r1_gamma: float = 1.0, r1_interval: int = 1, blur: bool = True, g_extra_convs: int = 0,
                   d_extra_convs: int = 0, mapping_layers: int = 8, mapping_lr_multiplier: float = 0.01) -> StyleGAN:
    """Fashion-MNIST at 32² (or 28²): the paper's mapping network and layers, narrower; truncation on all layers."""
    _check_unconditional(num_classes)
    return StyleGAN(latent_dim=latent_dim, w_dim=latent_dim, image_size=image_size, channels=in_chans,
                    channel_base=channel_base, max_channels=max_channels, blur=blur,
                    mixing_probability=mixing_probability, truncation_cutoff=None, r1_gamma=r1_gamma,
                    r1_interval=r1_interval, g_extra_convs=g_extra_convs, d_extra_convs=d_extra_convs,
                    mapping_layers=mapping_layers, mapping_lr_multiplier=mapping_lr_multiplier)


# ---- the paper's figures, as image tensors (N, C, H, W) in [−1, 1] -----------------------------------------

def latents(generator: StyleGenerator, count: int, seed: int) -> torch.Tensor:
    """`count` latents z ~ N(0, I) drawn from `seed`, on the generator's device and in its dtype."""
    draws = torch.randn((count, generator.latent_dim), generator=torch.Generator().manual_seed(seed))
    return draws.to(generator.w_avg)


@torch.no_grad()
def _render(generator: StyleGenerator, ws: torch.Tensor, noise_seed: int, noise: bool | str = True) -> torch.Tensor:
    """Images of ws with the noise of `noise_seed` (the same noise images for every sample of the batch)."""
    maps = generator.synthesis.draw_noise(1, like=ws, generator=torch.Generator().manual_seed(noise_seed))
    maps = [m.expand(len(ws), -1, -1, -1) for m in maps]
    return generator.synthesis(ws, noise=noise, noise_inputs=maps).clamp(-1.0, 1.0)


@torch.no_grad()
def style_mixing_images(generator: StyleGenerator, sources_a: torch.Tensor, sources_b: torch.Tensor, *,
                        noise_seed: int = 0, pairwise: bool = False) -> dict[str, torch.Tensor]:
    """Fig. 3: "a" and "b" are the sources' images; for each group in STYLE_GROUPS, an (A, B, C, H, W)
    tensor whose [i, j] has A_i's styles except that group's, copied from B_j (``pairwise=True``: only
    the pairs (A_i, B_i), an (N, C, H, W) tensor)."""
    was_training = generator.training
    generator.eval()
    try:
        ws_a = generator.broadcast(generator.mapping(sources_a))
        ws_b = generator.broadcast(generator.mapping(sources_b))
        result = {"a": _render(generator, ws_a, noise_seed), "b": _render(generator, ws_b, noise_seed)}
        rows, cols = len(ws_a), len(ws_b)
        if pairwise and rows != cols:
            raise UsageError(f"pairwise style mixing needs as many sources B as A; got {rows} and {cols}")
        for group in STYLE_GROUPS:
            layers = generator.synthesis.style_groups[group]
            if pairwise:
                result[group] = _render(generator, generator.mix(ws_a, ws_b, layers), noise_seed)
                continue
            mixed = generator.mix(ws_a.repeat_interleave(cols, 0), ws_b.repeat(rows, 1, 1), layers)
            result[group] = _render(generator, mixed, noise_seed).unflatten(0, (rows, cols))
        return result
    finally:
        generator.train(was_training)


@torch.no_grad()
def noise_variants(generator: StyleGenerator, z: torch.Tensor, *, noise_seed: int = 0) -> dict[str, torch.Tensor]:
    """Fig. 5: the same latents with noise in all layers, none, fine layers only and coarse layers only."""
    was_training = generator.training
    generator.eval()
    try:
        ws = generator.broadcast(generator.mapping(z))
        return {name: _render(generator, ws, noise_seed, mode)
                for name, mode in (("all", True), ("none", False), ("fine", "fine"), ("coarse", "coarse"))}
    finally:
        generator.train(was_training)


@torch.no_grad()
def stochastic_variation(generator: StyleGenerator, z: torch.Tensor, realisations: int = 8,
                         seed: int = 0) -> torch.Tensor:
    """Fig. 4: (N, realisations, C, H, W) images of each latent under different noise draws."""
    was_training = generator.training
    generator.eval()
    try:
        ws = generator.broadcast(generator.mapping(z))
        return torch.stack([_render(generator, ws, seed + k) for k in range(realisations)], dim=1)
    finally:
        generator.train(was_training)


@torch.no_grad()
def truncation_sweep(generator: StyleGenerator, z: torch.Tensor, psis=TRUNCATION_PSIS, *,
                     truncation_layers: int | None = None, noise_seed: int = 0) -> torch.Tensor:
    """Fig. 8: (len(psis), N, C, H, W) images of the latents truncated towards w̄ by each ψ."""
    was_training = generator.training
    generator.eval()
    try:
        ws = generator.broadcast(generator.mapping(z))
        return torch.stack([_render(generator, generator.truncate(ws, psi, truncation_layers), noise_seed)
                            for psi in psis])
    finally:
        generator.train(was_training)

