"""How entangled a generator's latent space is: Karras, Laine, Aila, "A Style-Based Generator Architecture for
Generative Adversarial Networks", CVPR 2019, Sec. 4.1 (perceptual path length, Eqs. 2–3) and Sec. 4.2
(linear separability).

Perceptual path length (`perceptual_path_length`): the mean, over pairs of latents and a point t ~ U(0, 1)
on the path between them, of the perceptual distance between the images at t and t + ε, divided by ε²:

    l_Z = E[ d(G(slerp(z₁, z₂; t)), G(slerp(z₁, z₂; t + ε))) / ε² ]          (Eq. 2; slerp in Z)
    l_W = E[ d(g(lerp(f(z₁), f(z₂); t)), g(lerp(f(z₁), f(z₂); t + ε))) / ε² ]  (Eq. 3; lerp in W)

with ε = 1e-4 (the paper's value). The paper's d is LPIPS, a squared distance of normalised VGG features;
the notes call it "the quadratic distance". Here d(x, y) = ‖φ(x)/‖φ(x)‖ − φ(y)/‖φ(y)‖‖², the sum of
squared differences of the L2-normalised features φ of a reference classifier (``normalize=False``:
of the raw features, for closed-form checks), so d grows as ε² and l is independent of ε for small ε.
Both images of a pair get the same noise inputs, as the paper's code does. The paper's code also drops
the pairs below the 1st and above the 99th percentile of d before averaging; ``trim=0.01`` does that,
off by default (it biases closed-form values). The "end" variant (t ∈ {0, 1}) is ``endpoints=True``.

Linear separability (`linear_separability`): the paper labels generated images with an attribute
classifier, keeps the half of them it is most confident about, fits a linear SVM to predict the label
from the latent (z or w), and reports exp(Σ_attributes H(Y | X)), X the SVM's side of the hyperplane
and Y the classifier's label: 1 when every attribute is linearly separable in the latent space, 2^A
for A attributes independent of it. The SVM here is scikit-learn's `LinearSVC` default problem,
solved in torch (no scikit-learn at run time): min ½(‖w‖² + b²) + C Σ max(0, 1 − yᵢ(w·xᵢ + b))²
(squared hinge, the intercept penalised as LinearSVC's intercept_scaling = 1), C = 1, by L-BFGS in
float64; as the paper's code, it is evaluated on the very samples it was fitted to.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.runtime import evaluating

SPACES = ("z", "w")


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """a + t (b − a), t a number or a tensor broadcasting against a's leading dimension (N,)."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    return a + (b - a) * (t[:, None] if t.dim() == 1 else t)


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b (N, D): the unit vector at angle t·θ from
    â towards b̂ on their great circle, θ = ∠(a, b); the paper's code normalises first, as StyleGAN's
    mapping network normalises z (pixel norm), so only directions matter."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    t = t[:, None] if t.dim() == 1 else t
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cosine = (a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    towards_b = b - cosine * a                     # the great circle's tangent at a
    towards_b = towards_b / towards_b.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    angle = t * torch.acos(cosine)
    point = a * torch.cos(angle) + towards_b * torch.sin(angle)
    return point / point.norm(dim=-1, keepdim=True)


def _images(generator: nn.Module, latents: torch.Tensor, space: str, noise_inputs) -> torch.Tensor:
    """G at Z latents or g at W latents; through the synthesis network (shared noise) where there is one."""
    synthesis = getattr(generator, "synthesis", None)
    if synthesis is None:
        return generator(latents)
    w = generator.mapping(latents) if space == "z" else latents
    ws = w[:, None, :].expand(-1, generator.num_layers, -1)
    return synthesis(ws, noise_inputs=noise_inputs) if noise_inputs is not None else synthesis(ws)


def _distances(features: Callable, first: torch.Tensor, second: torch.Tensor, normalize: bool) -> torch.Tensor:
    both = features(torch.cat([first, second])).flatten(1).double()
    if normalize:
        both = both / both.norm(dim=1, keepdim=True).clamp_min(1e-12)
    a, b = both.chunk(2)
    return (a - b).square().sum(1)


@torch.no_grad()
def perceptual_path_length(generator: nn.Module, features: Callable[[torch.Tensor], torch.Tensor], *, n: int,
                           epsilon: float = 1e-4, space: str = "z", batch_size: int = 64,
                           generator_rng: torch.Generator | None = None, normalize: bool = True,
                           endpoints: bool = False, trim: float = 0.0) -> float:
    """l_Z (``space="z"``) or l_W (``"w"``) over `n` pairs; see the module docstring.

    `generator` has `latent_dim` and is called on z (N, latent_dim); for ``space="w"`` (and to share the
    noise between the images of a pair) it has StyleGAN's `mapping`, `synthesis` (called on ws
    (N, num_layers, w_dim), taking ``noise_inputs``; its `draw_noise` draws them) and `num_layers`.
    `features` maps images to (N, F) (or maps, flattened). Latents, t and noise come from
    `generator_rng` (a CPU torch.Generator; None: the global RNG). Runs in eval mode, without gradients.
    """
    if space not in SPACES:
        raise UsageError(f"space={space!r}: perceptual path length is measured in \"z\" or \"w\"")
    if space == "w" and not hasattr(generator, "mapping"):
        raise UsageError("space=\"w\" needs a generator with a mapping network (StyleGAN); use space=\"z\"")
    if n < 1 or not epsilon > 0 or not 0 <= trim < 0.5:
        raise UsageError(f"perceptual path length needs n ≥ 1, ε > 0 and trim in [0, 0.5); got n={n}, "
                         f"epsilon={epsilon}, trim={trim}")
    reference = next(generator.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.get_default_dtype()
    distances = []
    with evaluating(generator):
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            z = torch.randn((2, count, generator.latent_dim), generator=generator_rng, dtype=dtype)
            if endpoints:
                t = torch.randint(0, 2, (count,), generator=generator_rng).to(dtype)
            else:
                t = torch.rand((count,), generator=generator_rng, dtype=dtype)
            z, t = z.to(device), t.to(device)
            draw_noise = getattr(getattr(generator, "synthesis", None), "draw_noise", None)
            noise = None
            if draw_noise is not None:
                noise = [torch.cat([m, m]) for m in draw_noise(count, like=z, generator=generator_rng)]
            if space == "z":
                path = torch.cat([slerp(z[0], z[1], t), slerp(z[0], z[1], t + epsilon)])
            else:
                w1, w2 = generator.mapping(z[0]), generator.mapping(z[1])
                path = torch.cat([lerp(w1, w2, t), lerp(w1, w2, t + epsilon)])
            first, second = _images(generator, path, space, noise).chunk(2)
            distances.append(_distances(features, first, second, normalize) / epsilon ** 2)
    values = torch.cat(distances)
    if trim:
        low, high = torch.quantile(values, torch.tensor([trim, 1 - trim], dtype=values.dtype))
        values = values[(values >= low) & (values <= high)]
    return float(values.mean())


def _fit_linear_svm(x: torch.Tensor, y: torch.Tensor, c: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LinearSVC's primal problem (squared hinge, penalised intercept) for y ∈ {−1, +1}; returns (w, b)."""
    params = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    augmented = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                                  tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        margins = (1 - y * (augmented @ params)).clamp_min(0)
        loss = 0.5 * params.square().sum() + c * margins.square().sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return params.detach()[:-1], params.detach()[-1]


def conditional_entropy(y: torch.Tensor, x: torch.Tensor) -> float:
    """H(Y | X) in nats for two discrete label vectors: Σ_x p(x) H(Y | X = x)."""
    total = 0.0
    for value in torch.unique(x):
        chosen = y[x == value]
        p = torch.unique(chosen, return_counts=True)[1].double() / len(chosen)
        total += len(chosen) / len(y) * float(-(p * p.log()).sum())
    return total


def linear_separability(latents: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor | None = None, *,
                        keep: float = 0.5, c: float = 1.0, max_iter: int = 500) -> float:
    """exp(Σ_a H(Y_a | X_a)) over the attributes a (see the module docstring).

    `latents` (N, D); `labels` (N,) or (N, A) binary labels given by a classifier; `confidence` of the
    same shape (the classifier's probability of the label it gave): the `keep` fraction of samples it
    is most confident about are kept per attribute (the paper: half). Without `confidence` every
    sample is used. Standardising the latents is left to the caller (the paper's code does not).
    """
    labels = labels[:, None] if labels.dim() == 1 else labels
    if confidence is not None:
        confidence = confidence[:, None] if confidence.dim() == 1 else confidence
        if confidence.shape != labels.shape:
            raise UsageError(f"confidence {tuple(confidence.shape)} must have the labels' shape {tuple(labels.shape)}")
    if latents.dim() != 2 or len(latents) != len(labels):
        raise UsageError(f"linear separability takes latents (N, D) and N labels; got {tuple(latents.shape)} "
                         f"and {tuple(labels.shape)}")
    if not 0 < keep <= 1:
        raise UsageError(f"keep={keep}: the fraction of most confident samples kept, in (0, 1]")
    x_all = latents.detach().double().cpu()
    total = 0.0
    for a in range(labels.shape[1]):
        y, x = labels[:, a].cpu(), x_all
        if confidence is not None:
            order = confidence[:, a].cpu().argsort(descending=True)[:max(2, math.ceil(keep * len(y)))]
            y, x = y[order], x[order]
        values = torch.unique(y)
        if len(values) > 2:
            raise UsageError(f"attribute {a}: linear separability needs binary labels; got {len(values)} values")
        if len(values) < 2:       # one class only: the label is known without the latent
            continue
        signs = torch.where(y == values[1], 1.0, -1.0).double()
        w, b = _fit_linear_svm(x, signs, c, max_iter)
        side = (x @ w + b > 0).long()
        total += conditional_entropy(y, side)
    return math.exp(total)
