"""The `visionzoo train` options that change the network itself: their option groups, and their
application to a freshly built model.

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
from ..core.options import at_least, option, option_group, positive, within
from ..layers.activation import ACTIVATIONS
from ..layers.init import INIT_SCHEMES, WEIGHTED, first_convolution, initialise, whiten_first_conv
from ..layers.norm import NORMS
from ..layers.variants import STRUCTURE_FIELDS, finish_variant, parse_drop_block, reshape_variant
from .pretrain import pretrain_autoencoder

PRETRAINING = ("none", "autoencoder")
POOLING = ("stochastic",)
LSUV_BATCH = 256
WHITEN_IMAGES = 1024
RATE = within("[0, 1)")


@option_group("initialisation", "of every Conv/Linear weight; biases 0 (visionzoo.layers.init)")
class InitialisationOptions:
    init: str = option("paper", "paper (default: the network's own), zero, normal/uniform (std --init-std), "
                                "xavier_* (Var 2/(n_in+n_out)), he_fan_in/he_fan_out (Var 2/n), orthogonal, "
                                "lsuv (orthogonal, then unit output variance layer by layer on a data batch), "
                                "dirac (identity)", choices=INIT_SCHEMES)
    init_std: float = option(0.01, "σ of normal/uniform (default {default})", metavar="STD", check=positive)
    whiten: bool = option(False, "set the first convolution to the whitening of the training images' patches "
                                 "(± the eigenvectors of their covariance / √eigenvalue) and freeze it")
    pretrain: str = option("none", "autoencoder: greedy layer-wise auto-encoder pre-training on the unlabelled "
                                   "training images, then supervised training (chain networks: lenet, vgg*, …)",
                           choices=PRETRAINING)
    pretrain_epochs: int = option(1, "epochs per layer (default {default})", metavar="N", check=at_least(1))
    pretrain_noise: float = option(0.0, "denoising auto-encoders: mask this fraction of each layer's input "
                                        "(default {default})", metavar="NU", check=RATE)


@option_group("normalisation and activations")
class NormalisationOptions:
    norm: str | None = option(None, "replace the network's feature-map normalisation: batch, batch_manual (BN with "
                                    "the notes' hand-derived backward pass), layer (GroupNorm G=1), "
                                    "instance (G=C), group (G=32), none; weight/spectral reparametrise every "
                                    "Conv/Linear weight instead (any network)", choices=NORMS)
    act: str | None = option(None, "replace every activation module (prelu: per channel, prelu_shared: one slope; "
                                   "maxout widens the layer before it k-fold and keeps the max)", choices=ACTIVATIONS)
    maxout_k: int = option(2, "maxout pieces (default {default})", metavar="K", check=at_least(2))
    pool: str | None = option(None, "stochastic pooling in place of every max-pooling layer", choices=POOLING)


def _check_drop_block(value) -> None:
    parse_drop_block(value)  # raises, naming --drop-block


@option_group("regularisation")
class RegularisationOptions:
    dropout: float | None = option(None, "rate of every dropout layer (inverted dropout); networks without one "
                                         "get it on the classifier's input", metavar="P", check=RATE)
    drop_connect: float | None = option(None, "DropConnect on every Linear layer's weights", metavar="P", check=RATE)
    drop_block: list | None = option(None, "DropBlock after the residual blocks of the last two stages, e.g. 3,0.1",
                                     metavar="SIZE,P", parse=parse_drop_block, check=_check_drop_block)
    drop_path: float | None = option(None, "stochastic depth: drop rate of the last residual block, linear in depth",
                                     metavar="P", check=RATE)
    max_norm: float | None = option(None, "after every step, clamp each unit's incoming weight norm to ≤ C",
                                    metavar="C", check=positive)


def builder_kwargs(cfg) -> dict:
    """Keyword arguments for the network's builder: stochastic depth, if asked for and supported."""
    if not cfg.drop_path:
        return {}
    from ..registry import create_model
    try:
        with torch.device("meta"):
            create_model(cfg.model, drop_path_rate=cfg.drop_path, **cfg.model_args)
    except (TypeError, ValueError):   # create_model's own line names the model; say which have it
        raise UsageError(f"--drop-path: {cfg.model} has no stochastic depth; residual, ConvNeXt, EfficientNet, "
                         "NFNet, ViT and Mixer networks have") from None
    return {"drop_path_rate": cfg.drop_path}


def structure_options(cfg) -> dict:
    """What `rebuild_model` needs to give a checkpoint's model the trained network's modules."""
    return {key: getattr(cfg, key) for key in STRUCTURE_FIELDS}


def apply_model_options(model: nn.Module, cfg, *, input_size, input_batches, device, resume: bool = False,
                        log=print) -> nn.Module:
    """Everything `cfg` asks of the model, in the order of the module docstring. On `resume` the
    weights come from the checkpoint, so initialisation and pre-training are skipped.
    `input_batches(batch_size, epoch)` yields the task's network inputs from its training split."""
    reshape_variant(model, structure_options(cfg), input_size)
    model.to(device)
    if not resume and cfg.init != "paper":
        batch = next(input_batches(LSUV_BATCH)) \
            if cfg.init == "lsuv" else None
        initialise(model, cfg.init, cfg.init_std, batch)
    if getattr(cfg, "whiten", False):  # after --init, which would overwrite it; frozen on resume too
        if resume:
            first_convolution(model).weight.requires_grad_(False)
        else:
            whiten_first_conv(model, next(input_batches(WHITEN_IMAGES)))
    if not resume and cfg.pretrain == "autoencoder":
        epochs = itertools.count()  # a fresh shuffle for every pass over the images
        report = pretrain_autoencoder(
            model, lambda: input_batches(cfg.batch_size, next(epochs)),
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
