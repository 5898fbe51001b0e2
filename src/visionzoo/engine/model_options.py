"""The `visionzoo train` options that change the network itself, applied to a freshly built model.

Order: the architecture variants (`--act`, `--norm` swap, `--pool`, `--drop-connect`,
`--drop-block`), then the initialisation (`--init`, LSUV on a data batch; `--whiten`, the first
convolution set to the training patches' whitening and frozen, train/init.py), unsupervised
pre-training (`--pretrain`), and last the classifier dropout hook and the weight
reparametrisations (`--norm weight|spectral`: they wrap the weights `--init` has set).
`--drop-path` is the builders' own ``drop_path_rate`` (stochastic depth, layers/drop.py).
`--max-norm c` is max-norm regularisation, Srivastava et al., JMLR 2014, Sec. 5.1: after every
optimiser step each unit's incoming weight vector is projected onto the ball ‖w‖₂ ≤ c (every
Conv/Linear layer; with weight normalisation, |g| ≤ c).

`STRUCTURE_FIELDS` are saved in model.json, so `layers.variants.rebuild_model` gives a loaded
checkpoint the trained network's modules (see weights.load_checkpoint).
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from ..core.errors import UsageError
from ..layers.activation import ACTIVATIONS
from ..layers.norm import NORMS
from ..layers.variants import STRUCTURE_FIELDS, finish_variant, parse_drop_block, reshape_variant
from ..layers.init import INIT_SCHEMES, WEIGHTED, first_convolution, initialise, whiten_first_conv
from .pretrain import pretrain_autoencoder

PRETRAINING = ("none", "autoencoder")
POOLING = ("stochastic",)
LSUV_BATCH = 256
WHITEN_IMAGES = 1024


def validate_model_options(cfg) -> None:
    choices = {"init": INIT_SCHEMES, "pretrain": PRETRAINING, "norm": NORMS, "act": ACTIVATIONS,
               "pool": POOLING}
    for key, allowed in choices.items():
        value = getattr(cfg, key)
        if value is not None and value not in allowed:
            raise UsageError(f"--{key} {value!r}: choose one of {', '.join(allowed)}")
    for key in ("dropout", "drop_connect", "drop_path", "pretrain_noise"):
        value = getattr(cfg, key)
        if value is not None and not 0 <= value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must lie in [0, 1), got {value}")
    for key in ("init_std", "max_norm"):
        value = getattr(cfg, key)
        if value is not None and not value > 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {value}")
    if cfg.maxout_k < 2:
        raise UsageError(f"--maxout-k must be at least 2, got {cfg.maxout_k}")
    if cfg.pretrain_epochs < 1:
        raise UsageError(f"--pretrain-epochs must be at least 1, got {cfg.pretrain_epochs}")
    if cfg.max_norm and cfg.norm == "spectral":
        raise UsageError("--max-norm with --norm spectral: W/σ(W) has no per-unit norm to clamp; use one of them")
    cfg.drop_block = parse_drop_block(cfg.drop_block)


def builder_kwargs(cfg) -> dict:
    """Keyword arguments for the network's builder: stochastic depth, if asked for and supported."""
    if not cfg.drop_path:
        return {}
    from ..registry import create_model
    try:
        with torch.device("meta"):
            create_model(cfg.model, drop_path_rate=cfg.drop_path, **cfg.model_args)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--drop-path: {cfg.model} has no stochastic depth ({exc}); residual, "
                         "ConvNeXt, EfficientNet, NFNet, ViT and Mixer networks have") from None
    return {"drop_path_rate": cfg.drop_path}


def structure_options(cfg) -> dict:
    """What `rebuild_model` needs to give a checkpoint's model the trained network's modules."""
    return {key: getattr(cfg, key) for key in STRUCTURE_FIELDS}


def _image_batches(split, normalizer, batch_size: int, seed: int, device, epoch: int = 0):
    from ..data.loader import train_batches
    for images, _ in train_batches(split, batch_size, seed=seed, epoch=epoch, device=device):
        yield normalizer(images)


def apply_model_options(model: nn.Module, cfg, *, data, normalizer, device, resume: bool = False,
                        log=print) -> nn.Module:
    """Everything `cfg` asks of the model, in the order of the module docstring. On `resume` the
    weights come from the checkpoint, so initialisation and pre-training are skipped."""
    reshape_variant(model, structure_options(cfg), data.input_size)
    model.to(device)
    if not resume and cfg.init != "paper":
        batch = next(_image_batches(data.train, normalizer, LSUV_BATCH, cfg.seed, device)) \
            if cfg.init == "lsuv" else None
        initialise(model, cfg.init, cfg.init_std, batch)
    if getattr(cfg, "whiten", False):  # after --init, which would overwrite it; frozen on resume too
        if resume:
            first_convolution(model).weight.requires_grad_(False)
        else:
            whiten_first_conv(model, next(_image_batches(data.train, normalizer, WHITEN_IMAGES, cfg.seed, device)))
    if not resume and cfg.pretrain == "autoencoder":
        epochs = itertools.count()  # a fresh shuffle for every pass over the images
        report = pretrain_autoencoder(
            model, lambda: _image_batches(data.train, normalizer, cfg.batch_size, cfg.seed, device, next(epochs)),
            epochs=cfg.pretrain_epochs, noise=cfg.pretrain_noise)
        for row in report:
            log(f"pretrained {row['layer']}: reconstruction loss {row['loss_before']:.4f} → {row['loss_after']:.4f}")
    finish_variant(model, structure_options(cfg))
    return model


def max_norm_(model: nn.Module, c: float) -> None:
    """Project each unit's incoming weight vector onto ‖w‖₂ ≤ c."""
    with torch.no_grad():
        for layer in model.modules():
            if not isinstance(layer, WEIGHTED):
                continue
            parametrised = getattr(layer, "parametrizations", {})
            if "weight" in parametrised:  # weight norm: ‖g v/‖v‖‖ = |g|
                parametrised.weight.original0.clamp_(-c, c)
                continue
            rows = layer.weight.flatten(1)
            scale = (c / rows.norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
            layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.dim() - 1)))


def after_optimizer(optimizer, model: nn.Module, cfg) -> None:
    """Hooks on the optimiser: max-norm after every step."""
    if cfg.max_norm:
        optimizer.register_step_post_hook(lambda opt, args, kwargs: max_norm_(model, cfg.max_norm))
