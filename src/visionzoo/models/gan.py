"""Generative adversarial networks of the notes: GAN, DCGAN, conditional GAN and DiscoGAN (generator and
discriminator pairs; the generative task trains them, see tasks/generative.py).

- GAN: Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014, Sec. 5: multilayer perceptrons;
  on MNIST a generator of rectifier hidden layers and a maxout discriminator trained with dropout
  (`gan_mlp`: the released configuration's z 100 → 1200 → 1200 → 784 generator and 240-unit,
  5-piece maxout discriminator, dropout 0.2 on its input and 0.5 on its hidden layers). The toy of
  Metz, Poole, Pfau, Sohl-Dickstein, "Unrolled Generative Adversarial Networks", ICLR 2017, App. A
  (`gan_mlp_2d`): z 256 → two ReLU layers of 128 → a 2-D point; the discriminator two ReLU layers of
  128 → one logit.
- DCGAN: Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
  Generative Adversarial Networks", ICLR 2016, Sec. 3 (the five guidelines) and Fig. 1 (z 100 projected
  to 4 × 4 × 1024, fractionally-strided convolutions to 8 × 8 × 512, 16 × 16 × 256, 32 × 32 × 128 and
  64 × 64 × 3); weights from N(0, 0.02) (Sec. 4). `dcgan`; `cdcgan` its conditional version.
- Conditional GAN: Mirza & Osindero, "Conditional Generative Adversarial Nets", arXiv 1411.1784, 2014,
  Sec. 3 and 4.1 (MNIST): y fed to both networks. `cgan_mlp`: z 100 → 200 and y → 1000 rectifier units,
  joined in 1200 → 784; the discriminator maps x to a maxout layer of 240 units × 5 pieces and y to 50
  units × 5 pieces, joined in 240 units × 4 pieces → one logit; dropout 0.5.
- DiscoGAN: Kim, Cha, Kim, Lee, Kim, "Learning to Discover Cross-Domain Relations with Generative
  Adversarial Networks", ICML 2017, Sec. 3 and 4 (Fig. 2c): two generators G_AB, G_BA, each an
  encoder of 4 × 4 stride-2 convolutions with leaky ReLU and a decoder of 4 × 4 fractionally-strided
  convolutions with ReLU (batch normalisation between, none on the first layer), and two
  discriminators D_A, D_B, each the encoder and one more 4 × 4 convolution to a logit (`discogan`,
  64 × 64 as the paper; 28 or 32 through ``image_size``). `discogan_mlp_2d`: the same four networks as
  MLPs on 2-D points, for the paper's toy comparison (Fig. 3).

The container (`GAN`, `DiscoGAN`) holds ``generator`` and ``discriminator`` (the losses are the task's),
``latent_dim``, ``num_classes`` (0: unconditional; otherwise both networks take labels (B,) int64 and
see them one-hot: concatenated to z and to the discriminator's input, as image planes for the
convolutional discriminator), ``output_shape`` (C, H, W) or (D,), ``kind``; ``forward(z, labels)`` is
the generator. Generated images are in [−1, 1] (Tanh output; the papers on MNIST used a sigmoid in
[0, 1], Tanh here so that every generator meets one contract), points are unbounded. The latent prior
is N(0, I) (`sample_latent`; DCGAN drew z uniformly, Goodfellow et al. and Mirza & Osindero too:
the normal prior of later practice, e.g. the PyTorch DCGAN example, is used for all). A registry card
measures the generator only: its parameters, and its MACs for one latent vector (a conditional
generator for class 0; DiscoGAN: G_AB on one image) — `card_module`, `card_input_size`.

DCGAN's guidelines can be switched off one at a time (`dcgan` keywords, for the ablation experiment):
``strided=False`` replaces each stride-2 convolution of the discriminator by a 3 × 3 stride-1
convolution and 2 × 2 max pooling, and each fractionally-strided one of the generator by nearest ×2
upsampling and a 3 × 3 convolution; ``batchnorm=False`` removes every batch normalisation;
``hidden_fc=True`` adds a fully connected hidden layer of 1024 units after z in the generator and
before the logit in the discriminator (which then ends flattened → 1024 → 1 instead of its last
convolution); ``g_activation="leaky_relu"`` (instead of ReLU) and ``d_activation="relu"`` (instead of
LeakyReLU 0.2). Sizes: 4 · 2ⁿ pixels start from 4 × 4 (32, 64: the paper's ladder), 7 · 2ⁿ from 7 × 7
(28: Fashion-MNIST, 7 → 14 → 28). ``width`` is the generator's last hidden width (128 in Fig. 1; it
doubles at each coarser scale), the discriminator mirrors it. At 28 × 28 the ladder has two steps where
Fig. 1 has four: ``g_extra_convs`` / ``d_extra_convs`` add 3 × 3 stride-1 convolutions (batch norm and the
network's activation each) at the coarsest scale — in the generator after the projection, in the
discriminator before the logit — so that two of each give the paper's four convolutions per network
without going below 7 × 7 (still all-convolutional: no pooling, no hidden fully connected layer).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.errors import UsageError
from ..layers.activation import Maxout
from ..registry import register_model

KINDS = ("gan", "discogan", "stylegan")
ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_SLOPE = 0.2
INIT_STD = 0.02
# Starting sides of the convolutional ladders: the paper's 4 × 4 (32, 64, …) and 7 × 7 for 28-pixel images.
START_SIDES = (4, 7)

_GOODFELLOW = ("I. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu, D. Warde-Farley, S. Ozair, A. Courville, "
               "Y. Bengio. Generative Adversarial Nets. NeurIPS 2014")
_METZ = "L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein. Unrolled Generative Adversarial Networks. ICLR 2017"
_RADFORD = ("A. Radford, L. Metz, S. Chintala. Unsupervised Representation Learning with Deep Convolutional "
            "Generative Adversarial Networks. ICLR 2016")
_MIRZA = "M. Mirza, S. Osindero. Conditional Generative Adversarial Nets. arXiv:1411.1784, 2014"
_KIM = ("T. Kim, M. Cha, H. Kim, J. K. Lee, J. Kim. Learning to Discover Cross-Domain Relations with "
        "Generative Adversarial Networks. ICML 2017")


def one_hot(labels: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor | None:
    """Labels (B,) as one-hot rows in `like`'s dtype; None for an unconditional network (num_classes 0).

    Built by comparison rather than F.one_hot, so that it also runs on the meta device (cards)."""
    if num_classes == 0:
        if labels is not None:
            raise UsageError("this GAN is unconditional (num_classes=0): call it without labels")
        return None
    if labels is None:
        raise UsageError(f"this conditional GAN needs labels (B,) in 0..{num_classes - 1}")
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(like.dtype)


def _activation(kind: str, who: str) -> nn.Module:
    if kind not in ACTIVATIONS:
        raise UsageError(f"{who}={kind!r}; choose one of {', '.join(ACTIVATIONS)}")
    return nn.ReLU() if kind == "relu" else nn.LeakyReLU(LEAKY_SLOPE)


def normal_init_(module: nn.Module, std: float = INIT_STD) -> None:
    """DCGAN's initialisation (Sec. 4): weights from N(0, std), biases 0; batch-norm scales N(1, std)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)


def ladder(image_size: int, who: str = "DCGAN") -> tuple[int, int]:
    """(start side, number of ×2 steps) with start · 2^steps = image_size, start 4 or 7, steps ≥ 1."""
    for start in START_SIDES:
        steps = round(math.log2(image_size / start)) if image_size >= start else 0
        if steps >= 1 and start * 2 ** steps == image_size:
            return start, steps
    raise UsageError(f"{who} image_size={image_size}: give 4·2ⁿ or 7·2ⁿ pixels (8, 14, 16, 28, 32, 56, 64, 128, …)")


class _CardView(nn.Module):
    """What a card measures of a conditional generator: its pass for class 0."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z, torch.zeros(len(z), dtype=torch.long, device=z.device))


class GAN(nn.Module):
    """A generator and a discriminator; forward(z, labels=None) = generator(z, labels)."""

    kind = "gan"

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, latent_dim: int, num_classes: int,
                 output_shape: tuple[int, ...]):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim, self.num_classes, self.output_shape = latent_dim, num_classes, tuple(output_shape)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, labels)

    def sample_latent(self, count: int, *, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """`count` latent vectors from the prior N(0, I)."""
        return torch.randn(count, self.latent_dim, generator=generator, device=device)

    @property
    def card_module(self) -> nn.Module:
        """What a registry card measures (registry._measure_card): the generator, on `card_input_size`."""
        return self.generator if self.num_classes == 0 else _CardView(self.generator)

    @property
    def card_input_size(self) -> tuple[int]:
        return (self.latent_dim,)


# ---------------------------------------------------------------------------------------------------------------
# Multilayer perceptrons (Goodfellow et al.; Metz et al.'s 2-D toy; Mirza & Osindero)


class MLPGenerator(nn.Module):
    """[z, one-hot y] → hidden ReLU layers → prod(output_shape), Tanh for images (none for points)."""

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], hidden: tuple[int, ...], num_classes: int = 0,
                 tanh: bool = True):
        super().__init__()
        self.num_classes, self.output_shape = num_classes, tuple(output_shape)
        layers, width = [], latent_dim + num_classes
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, math.prod(output_shape)))
        layers += [nn.Tanh()] if tanh else []
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        condition = one_hot(labels, self.num_classes, z)
        x = z if condition is None else torch.cat([z, condition], 1)
        return self.net(x).view(len(z), *self.output_shape)


class MLPDiscriminator(nn.Module):
    """[x flattened, one-hot y] → hidden layers → one logit. ``pieces`` > 1: maxout units (Goodfellow et
    al.'s MNIST discriminator), else ReLU; dropout on the input and on every hidden layer's output."""

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...], num_classes: int = 0, pieces: int = 1,
                 input_dropout: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        layers, width = [nn.Dropout(input_dropout)] if input_dropout else [], math.prod(input_shape) + num_classes
        for units in hidden:
            layers += [nn.Linear(width, units * pieces), Maxout(pieces) if pieces > 1 else nn.ReLU()]
            layers += [nn.Dropout(dropout)] if dropout else []
            width = units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        condition = one_hot(labels, self.num_classes, x)
        return self.net(x if condition is None else torch.cat([x, condition], 1)).squeeze(1)


class MirzaGenerator(nn.Module):
    """Mirza & Osindero's MNIST generator: z → 200 ReLU and y → 1000 ReLU, joined → 1200 ReLU (dropout) → image."""

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.num_classes, self.output_shape = num_classes, tuple(output_shape)
        self.noise = nn.Sequential(nn.Linear(latent_dim, 200), nn.ReLU())
        self.label = nn.Sequential(nn.Linear(num_classes, 1000), nn.ReLU())
        self.joint = nn.Sequential(nn.Linear(1200, 1200), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(1200, math.prod(output_shape)), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        joint = torch.cat([self.noise(z), self.label(one_hot(labels, self.num_classes, z))], 1)
        return self.joint(joint).view(len(z), *self.output_shape)


class MirzaDiscriminator(nn.Module):
    """Mirza & Osindero's MNIST discriminator: x → maxout 240 × 5 and y → maxout 50 × 5, joined → maxout
    240 × 4 → one logit; dropout 0.5 after every maxout layer."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.image = nn.Sequential(nn.Linear(math.prod(input_shape), 240 * 5), Maxout(5), nn.Dropout(dropout))
        self.label = nn.Sequential(nn.Linear(num_classes, 50 * 5), Maxout(5), nn.Dropout(dropout))
        self.joint = nn.Sequential(nn.Linear(290, 240 * 4), Maxout(4), nn.Dropout(dropout), nn.Linear(240, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        joint = torch.cat([self.image(x), self.label(one_hot(labels, self.num_classes, x))], 1)
        return self.joint(joint).squeeze(1)


# ---------------------------------------------------------------------------------------------------------------
# Convolutional ladders (DCGAN; DiscoGAN's encoders, decoders and discriminators)


def _up_step(in_chans: int, out_chans: int, strided: bool, bias: bool) -> list[nn.Module]:
    """×2: a 4 × 4 stride-2 fractionally-strided convolution, or nearest upsampling and a 3 × 3 convolution."""
    if strided:
        return [nn.ConvTranspose2d(in_chans, out_chans, 4, 2, 1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_chans, out_chans, 3, 1, 1, bias=bias)]


def _down_layers(in_chans: int, widths: list[int], *, strided: bool, batchnorm: bool, activation: str,
                 who: str) -> list[nn.Module]:
    """÷2 per width: a 4 × 4 stride-2 convolution (or 3 × 3 stride-1 and 2 × 2 max pooling), batch norm
    except on the first layer (DCGAN: not on the discriminator's input), the activation."""
    layers, channels = [], in_chans
    for index, width in enumerate(widths):
        norm = batchnorm and index > 0
        layers.append(nn.Conv2d(channels, width, 4, 2, 1, bias=not norm) if strided
                      else nn.Conv2d(channels, width, 3, 1, 1, bias=not norm))
        layers += [nn.BatchNorm2d(width)] if norm else []
        layers.append(_activation(activation, who))
        layers += [] if strided else [nn.MaxPool2d(2)]
        channels = width
    return layers


def _same_scale_convs(channels: int, count: int, *, batchnorm: bool, activation: str, who: str) -> list[nn.Module]:
    """``count`` 3 × 3 stride-1 convolutions of ``channels`` → ``channels``, each with batch norm and the activation."""
    layers = []
    for _ in range(count):
        layers.append(nn.Conv2d(channels, channels, 3, 1, 1, bias=not batchnorm))
        layers += [nn.BatchNorm2d(channels)] if batchnorm else []
        layers.append(_activation(activation, who))
    return layers


def _up_layers(widths: list[int], out_chans: int, *, strided: bool, batchnorm: bool, activation: str,
               who: str) -> list[nn.Module]:
    """×2 from widths[0] through widths[1:] to out_chans; batch norm and the activation on every step
    but the last, which ends in Tanh."""
    layers = []
    for cin, cout in zip(widths, widths[1:]):
        layers += _up_step(cin, cout, strided, bias=not batchnorm)
        layers += [nn.BatchNorm2d(cout)] if batchnorm else []
        layers.append(_activation(activation, who))
    return layers + _up_step(widths[-1], out_chans, strided, bias=True) + [nn.Tanh()]


class DCGenerator(nn.Module):
    """z (and one-hot y) → projection to start × start × widths[0] (and ``extra_convs`` 3 × 3 convolutions
    there) → ×2 steps → image in [−1, 1]."""

    def __init__(self, latent_dim: int, out_chans: int, image_size: int, width: int = 128, num_classes: int = 0, *,
                 strided: bool = True, batchnorm: bool = True, hidden_fc: bool = False, activation: str = "relu",
                 fc_units: int = 1024, extra_convs: int = 0):
        super().__init__()
        start, steps = ladder(image_size)
        self.num_classes, self.start = num_classes, start
        widths = [width * 2 ** (steps - 1 - i) for i in range(steps)]
        inputs = latent_dim + num_classes
        project: list[nn.Module] = []
        if hidden_fc:
            project += [nn.Linear(inputs, fc_units, bias=not batchnorm)]
            project += [nn.BatchNorm1d(fc_units)] if batchnorm else []
            project += [_activation(activation, "g_activation"), nn.Linear(fc_units, widths[0] * start * start,
                                                                             bias=not batchnorm),
                        nn.Unflatten(1, (widths[0], start, start))]
        else:   # "just a matrix multiplication" reshaped (Sec. 3): a start × start transposed convolution of 1 × 1
            project += [nn.Unflatten(1, (inputs, 1, 1)), nn.ConvTranspose2d(inputs, widths[0], start, bias=not batchnorm)]
        project += [nn.BatchNorm2d(widths[0])] if batchnorm else []
        project.append(_activation(activation, "g_activation"))
        project += _same_scale_convs(widths[0], extra_convs, batchnorm=batchnorm, activation=activation,
                                     who="g_activation")
        self.project = nn.Sequential(*project)
        self.body = nn.Sequential(*_up_layers(widths, out_chans, strided=strided, batchnorm=batchnorm,
                                              activation=activation, who="g_activation"))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        condition = one_hot(labels, self.num_classes, z)
        return self.body(self.project(z if condition is None else torch.cat([z, condition], 1)))


class DCDiscriminator(nn.Module):
    """Image (and one-hot y as constant planes) → ÷2 steps to start × start (and ``extra_convs`` 3 × 3
    convolutions there) → one logit (a start × start convolution: the flattened map into one output; with
    ``hidden_fc``, flattened → fc_units → 1)."""

    def __init__(self, in_chans: int, image_size: int, width: int = 128, num_classes: int = 0, *,
                 strided: bool = True, batchnorm: bool = True, hidden_fc: bool = False,
                 activation: str = "leaky_relu", fc_units: int = 1024, extra_convs: int = 0):
        super().__init__()
        start, steps = ladder(image_size)
        self.num_classes = num_classes
        widths = [width * 2 ** i for i in range(steps)]
        layers = _down_layers(in_chans + num_classes, widths, strided=strided, batchnorm=batchnorm,
                              activation=activation, who="d_activation")
        layers += _same_scale_convs(widths[-1], extra_convs, batchnorm=batchnorm, activation=activation,
                                    who="d_activation")
        if hidden_fc:
            layers += [nn.Flatten(), nn.Linear(widths[-1] * start * start, fc_units),
                       _activation(activation, "d_activation"), nn.Linear(fc_units, 1)]
        else:
            layers += [nn.Conv2d(widths[-1], 1, start), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        condition = one_hot(labels, self.num_classes, x)
        if condition is not None:
            x = torch.cat([x, condition[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        return self.net(x).squeeze(1)


class DiscoTranslator(nn.Module):
    """DiscoGAN's generator: encoder (4 × 4 stride-2 convolutions, leaky ReLU, BN but on the first) to
    start × start, decoder (4 × 4 fractionally-strided convolutions, BN, ReLU) back, Tanh: image → image."""

    def __init__(self, in_chans: int, image_size: int, width: int = 64):
        super().__init__()
        _, steps = ladder(image_size, "DiscoGAN")
        widths = [width * 2 ** i for i in range(steps)]
        self.encoder = nn.Sequential(*_down_layers(in_chans, widths, strided=True, batchnorm=True,
                                                   activation="leaky_relu", who="DiscoGAN"))
        self.decoder = nn.Sequential(*_up_layers(widths[::-1], in_chans, strided=True, batchnorm=True,
                                                 activation="relu", who="DiscoGAN"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DiscoGAN(nn.Module):
    """G_AB, G_BA, D_A, D_B (Kim et al., Fig. 2c). ``generator`` is G_AB and ``discriminator`` D_B, the
    network judging G_AB's outputs (read-only aliases, so each module is saved once); forward(x) = G_AB(x)."""

    kind = "discogan"
    latent_dim = 0
    num_classes = 0

    def __init__(self, generator_ab: nn.Module, generator_ba: nn.Module, discriminator_a: nn.Module,
                 discriminator_b: nn.Module, output_shape: tuple[int, ...]):
        super().__init__()
        self.generator_ab, self.generator_ba = generator_ab, generator_ba
        self.discriminator_a, self.discriminator_b = discriminator_a, discriminator_b
        self.output_shape = tuple(output_shape)

    @property
    def generator(self) -> nn.Module:
        return self.generator_ab

    @property
    def discriminator(self) -> nn.Module:
        return self.discriminator_b

    def translate(self, x: torch.Tensor, direction: str = "ab") -> torch.Tensor:
        """x_AB = G_AB(x_A) (direction "ab") or x_BA = G_BA(x_B) ("ba")."""
        if direction not in ("ab", "ba"):
            raise UsageError(f"translate direction={direction!r}; choose \"ab\" (A → B) or \"ba\" (B → A)")
        return (self.generator_ab if direction == "ab" else self.generator_ba)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator_ab(x)

    @property
    def card_module(self) -> nn.Module:
        """What a registry card measures (registry._measure_card): G_AB, on one image."""
        return self.generator_ab

    @property
    def card_input_size(self) -> tuple[int, ...]:
        return self.output_shape


# ---------------------------------------------------------------------------------------------------------------
# Builders


def _check_latent(latent_dim: int) -> None:
    if latent_dim < 1:
        raise UsageError(f"latent_dim={latent_dim}: the generator needs at least one latent dimension")


def _check_unconditional(name: str, num_classes: int) -> None:
    if num_classes:
        raise UsageError(f"{name} is unconditional: num_classes={num_classes} does not apply (use 0)")


@register_model(family="gan", paper=_GOODFELLOW, year=2014, input_size=(1, 28, 28), num_classes=0,
                task="generative", dataset="mnist")
def gan_mlp(num_classes: int = 0, in_chans: int = 1, image_size: int = 28, latent_dim: int = 100,
            hidden: tuple[int, ...] = (1200, 1200), d_units: tuple[int, ...] = (240, 240), pieces: int = 5,
            input_dropout: float = 0.2, dropout: float = 0.5) -> GAN:
    """Goodfellow et al.'s MNIST GAN: ReLU MLP generator, maxout discriminator with dropout.
    ``num_classes`` > 0 feeds one-hot labels to both (concatenated to z and to the flattened image)."""
    _check_latent(latent_dim)
    shape = (in_chans, image_size, image_size)
    return GAN(MLPGenerator(latent_dim, shape, tuple(hidden), num_classes),
               MLPDiscriminator(shape, tuple(d_units), num_classes, pieces, input_dropout, dropout),
               latent_dim=latent_dim, num_classes=num_classes, output_shape=shape)


@register_model(family="gan", paper=_METZ, year=2017, input_size=(2,), num_classes=0, task="generative",
                default_data="ring8")
def gan_mlp_2d(num_classes: int = 0, in_chans: int = 2, latent_dim: int = 256, hidden: int = 128) -> GAN:
    """Metz et al.'s toy GAN for the ring of Gaussians: `in_chans` is the dimension of the points."""
    _check_latent(latent_dim)
    shape = (in_chans,)
    return GAN(MLPGenerator(latent_dim, shape, (hidden, hidden), num_classes, tanh=False),
               MLPDiscriminator(shape, (hidden, hidden), num_classes),
               latent_dim=latent_dim, num_classes=num_classes, output_shape=shape)


def check_extra_convs(**counts: int) -> None:
    """Refuse a negative count of added 3 × 3 convolutions (DCGAN's and StyleGAN's g_/d_extra_convs)."""
    for name, count in counts.items():
        if count < 0:
            raise UsageError(f"{name}={count}: give the number of 3 × 3 convolutions to add (≥ 0)")


@register_model(family="dcgan", paper=_RADFORD, year=2016, input_size=(3, 64, 64), num_classes=0, task="generative")
def dcgan(num_classes: int = 0, in_chans: int = 3, image_size: int = 64, latent_dim: int = 100, width: int = 128,
          strided: bool = True, batchnorm: bool = True, hidden_fc: bool = False, g_activation: str = "relu",
          d_activation: str = "leaky_relu", g_extra_convs: int = 0, d_extra_convs: int = 0) -> GAN:
    """DCGAN (Fig. 1 at 64 × 64; 28 or 32 for Fashion-MNIST), the guidelines as switches (module docstring).
    ``num_classes`` > 0 makes it conditional (as `cdcgan`)."""
    _check_latent(latent_dim)
    check_extra_convs(g_extra_convs=g_extra_convs, d_extra_convs=d_extra_convs)
    switches = dict(strided=strided, batchnorm=batchnorm, hidden_fc=hidden_fc)
    model = GAN(DCGenerator(latent_dim, in_chans, image_size, width, num_classes, activation=g_activation,
                            extra_convs=g_extra_convs, **switches),
                DCDiscriminator(in_chans, image_size, width, num_classes, activation=d_activation,
                                extra_convs=d_extra_convs, **switches),
                latent_dim=latent_dim, num_classes=num_classes, output_shape=(in_chans, image_size, image_size))
    normal_init_(model)
    return model


@register_model(family="cgan", paper=_MIRZA + "; DCGAN networks: " + _RADFORD, year=2014, input_size=(1, 28, 28),
                num_classes=10, task="generative", dataset="fashion-mnist")
def cdcgan(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, latent_dim: int = 100,
           width: int = 64) -> GAN:
    """The conditional objective on DCGAN's networks: one-hot y concatenated to z, and to the
    discriminator's input as constant planes; half DCGAN's width by default (28 × 28 grey images)."""
    if num_classes < 1:
        raise UsageError(f"cdcgan is conditional: num_classes={num_classes}; give the number of classes (≥ 1)")
    return dcgan(num_classes, in_chans, image_size, latent_dim, width)


@register_model(family="cgan", paper=_MIRZA, year=2014, input_size=(1, 28, 28), num_classes=10, task="generative",
                dataset="mnist")
def cgan_mlp(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, latent_dim: int = 100,
             dropout: float = 0.5) -> GAN:
    """Mirza & Osindero's MNIST networks (Sec. 4.1)."""
    _check_latent(latent_dim)
    if num_classes < 1:
        raise UsageError(f"cgan_mlp is conditional: num_classes={num_classes}; give the number of classes (≥ 1)")
    shape = (in_chans, image_size, image_size)
    return GAN(MirzaGenerator(latent_dim, shape, num_classes, dropout), MirzaDiscriminator(shape, num_classes, dropout),
               latent_dim=latent_dim, num_classes=num_classes, output_shape=shape)


@register_model(family="discogan", paper=_KIM, year=2017, input_size=(3, 64, 64), num_classes=0, task="generative",
                default_data="fmnist-bags-shoes")
def discogan(num_classes: int = 0, in_chans: int = 3, image_size: int = 64, width: int = 64) -> DiscoGAN:
    """DiscoGAN's convolutional networks (64 × 64: widths 64, 128, 256, 512 down to 4 × 4)."""
    _check_unconditional("discogan", num_classes)
    shape = (in_chans, image_size, image_size)
    model = DiscoGAN(DiscoTranslator(in_chans, image_size, width), DiscoTranslator(in_chans, image_size, width),
                     DCDiscriminator(in_chans, image_size, width), DCDiscriminator(in_chans, image_size, width), shape)
    normal_init_(model)
    return model


@register_model(family="discogan", paper=_KIM, year=2017, input_size=(2,), num_classes=0, task="generative",
                default_data="toy-domains")
def discogan_mlp_2d(num_classes: int = 0, in_chans: int = 2, hidden: int = 128) -> DiscoGAN:
    """The four DiscoGAN networks as MLPs on `in_chans`-dimensional points (the toy of Fig. 3)."""
    _check_unconditional("discogan_mlp_2d", num_classes)
    shape = (in_chans,)
    layers = (hidden, hidden)
    return DiscoGAN(MLPGenerator(in_chans, shape, layers, tanh=False), MLPGenerator(in_chans, shape, layers, tanh=False),
                    MLPDiscriminator(shape, layers), MLPDiscriminator(shape, layers), shape)
