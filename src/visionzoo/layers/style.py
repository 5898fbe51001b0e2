"""StyleGAN's building blocks: Karras, Laine, Aila, "A Style-Based Generator Architecture for Generative
Adversarial Networks", CVPR 2019 (Sec. 2, Eq. 1; Fig. 1(b)), with the parts it takes from ProGAN
(Karras, Aila, Laine, Lehtinen, "Progressive Growing of GANs", ICLR 2018, Sec. 3 and 4.1) and the R1
penalty it trains with (Mescheder, Geiger, Nowozin, "Which Training Methods for GANs do actually
Converge?", ICML 2018, Eq. 9).

- `EqualizedLinear`, `EqualizedConv2d`: ProGAN's equalised learning rate (Sec. 4.1): weights drawn
  from N(0, 1) and scaled at run time by the He constant gain/√fan_in, so that Adam's step size is
  the same for every layer. A learning-rate multiplier λ (StyleGAN's mapping network: λ = 0.01)
  draws the weights from N(0, 1/λ²) and scales them (and the bias) by λ: the function at
  initialisation is unchanged and every update is λ times smaller.
  `EqualizedConv2d.upsampled` and `.downsampled` are the paper's code's fused resampling
  (`upscale2d_conv2d`, `conv2d_downscale2d`): ×2 nearest upsampling then the k×k convolution is one
  stride-2 transposed convolution, and the convolution then 2×2 average pooling one stride-2
  convolution, each with the (k+1)×(k+1) kernel that sums the k×k kernel over a 2×2 window — the same
  function (up to rounding) with 4/9 of the multiply-adds at k = 3.
- `PixelNorm`: ProGAN's pixelwise feature normalisation, x / √(mean(x²) + ε), applied to z before
  the mapping network.
- `adaptive_instance_norm` and `AdaIN`: Eq. 1, AdaIN(x_i, y) = y_s,i (x_i − μ(x_i)) / σ(x_i) + y_b,i;
  the style y = (y_s, y_b) is the learned affine transform "A" of w, its y_s bias initialised to 1.
- `NoiseInjection`: the noise input "B" of Fig. 1(b): a single-channel Gaussian image added to every
  feature map with a learned per-channel scale, initialised to zero (StyleGAN's code).
- `Blur2d`: the [1, 2, 1] low-pass filter after each upsampling (Sec. 2, citing Zhang's
  "Making convolutional networks shift-invariant again").
- `MinibatchStdDev`: ProGAN's minibatch standard deviation (Sec. 3) in the discriminator.
- `r1_penalty`: E‖∇_x D(x)‖² on real data; the discriminator's loss adds γ/2 times it (the paper
  trains FFHQ with γ = 10).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)   # the He gain StyleGAN's code uses before every leaky ReLU


class EqualizedLinear(nn.Module):
    """y = x (c·W)ᵀ + λ·b with W ~ N(0, 1/λ²) and c = gain·λ/√in_features (equalised learning rate)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, bias_init: float = 0.0,
                 gain: float = 1.0, lr_multiplier: float = 1.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_multiplier)) if bias else None
        self.weight_gain = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.bias_gain
        return F.linear(x, self.weight * self.weight_gain, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_multiplier={self.bias_gain}"


class EqualizedConv2d(nn.Module):
    """A stride-1 "same" convolution with an equalised learning rate: W ~ N(0, 1) scaled by gain/√(C_in·k²)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 gain: float = 1.0):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.kernel_size // 2)

    def _window_summed_weight(self) -> torch.Tensor:
        """The (k+1)×(k+1) kernel whose taps are the sums of the scaled k×k kernel over each 2×2 window."""
        w = F.pad(self.weight * self.weight_gain, (1, 1, 1, 1))
        return w[..., 1:, 1:] + w[..., :-1, 1:] + w[..., 1:, :-1] + w[..., :-1, :-1]

    def upsampled(self, x: torch.Tensor) -> torch.Tensor:
        """self(×2 nearest upsampling of x), as one transposed convolution (which flips its kernel)."""
        weight = self._window_summed_weight().flip(-2, -1).transpose(0, 1)
        return F.conv_transpose2d(x, weight, self.bias, stride=2, padding=self.kernel_size // 2)

    def downsampled(self, x: torch.Tensor) -> torch.Tensor:
        """2×2 average pooling of self(x), as one stride-2 convolution."""
        return F.conv2d(x, self._window_summed_weight() / 4, self.bias, stride=2, padding=self.kernel_size // 2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class PixelNorm(nn.Module):
    """x / √(mean over features of x² + ε): every latent (or pixel's feature vector) on the sphere of radius √dim."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(self.dim, keepdim=True) + self.eps)


def adaptive_instance_norm(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                           eps: float = 1e-8) -> torch.Tensor:
    """Eq. 1: each channel of each sample normalised to zero mean and unit (biased) standard deviation
    over its pixels, then scaled by `scale` and shifted by `bias` (both (N, C))."""
    normalised = F.instance_norm(x, eps=eps)   # (x − μ) / √(σ² + ε), σ² biased: one fused kernel
    return torch.addcmul(bias[:, :, None, None], normalised, scale[:, :, None, None])


class AdaIN(nn.Module):
    """AdaIN with its affine transform "A": style (y_s, y_b) = A(w), y_s's bias initialised to 1 so a
    fresh layer passes the normalised features through unscaled."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.channels = channels
        self.affine = EqualizedLinear(w_dim, 2 * channels)
        with torch.no_grad():
            self.affine.bias[:channels].fill_(1.0)

    def style(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_s, y_b), each (N, C), for the latents w (N, w_dim)."""
        scale, bias = self.affine(w).chunk(2, dim=1)
        return scale, bias

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return adaptive_instance_norm(x, *self.style(w))


class NoiseInjection(nn.Module):
    """x + s_c · noise: one noise image (N, 1, H, W) for all channels, a learned scale per channel (zero at first)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight[None, :, None, None] * noise


class Blur2d(nn.Module):
    """Depthwise [1, 2, 1]ᵀ[1, 2, 1] / 16 filter, zero padded: a low-pass after upsampling."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 16.0)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(x, self.kernel.to(x.dtype).expand(channels, 1, 3, 3), padding=1, groups=channels)


class MinibatchStdDev(nn.Module):
    """ProGAN's minibatch standard deviation: one extra feature map holding, for each group of
    `group_size` samples, the standard deviation over the group averaged over features and pixels.

    Samples are grouped as ProGAN's code does (sample i belongs to group i mod (N / G)); G is the
    largest divisor of the batch not above `group_size`, so any batch size works.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = next(g for g in range(min(self.group_size, n), 0, -1) if n % g == 0)
        grouped = x.reshape(group, n // group, c, h, w)
        # the biased variance over the group written out: Tensor.var over dim 0 of a channels_last batch is
        # about four times slower on the CPU
        centred = grouped - grouped.mean(0)
        std = (centred.square().mean(0) + self.eps).sqrt()                 # (N/G, C, H, W)
        feature = std.mean((1, 2, 3)).repeat(group)                       # sample i ↦ group i mod N/G
        return torch.cat([x, feature[:, None, None, None].expand(n, 1, h, w)], dim=1)


def r1_penalty(discriminator: nn.Module, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mescheder et al.'s R1: the batch mean of ‖∇_x D(x)‖² at the real images, differentiable in D's
    parameters (the graph is kept). The discriminator's loss adds γ/2 times it (StyleGAN: γ = 10 on FFHQ)."""
    real = real.detach().requires_grad_(True)
    logits = discriminator(real, labels)
    gradient, = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return gradient.square().flatten(1).sum(1).mean()
