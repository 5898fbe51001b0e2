"""A registered network turned into a trained variant: `--act`, `--norm`, `--pool`, `--dropout`,
`--drop-connect`, `--drop-block` applied to its modules (the papers are cited where each swap lives:
layers/activation.py, norm.py, pooling.py, drop.py).

`STRUCTURE_FIELDS` is what model.json's "options" records; `rebuild_model` gives an untrained copy
the trained network's modules, so that a checkpoint loads without the training code.
"""
from __future__ import annotations

from torch import nn

from ..core.errors import UsageError
from .activation import add_maxout, swap_activation
from .drop import add_drop_block, add_drop_connect, set_dropout
from .norm import WEIGHT_NORMS, has_feature_norm, reparametrise_weights, swap_norm
from .pooling import swap_max_pool

STRUCTURE_FIELDS = ("act", "maxout_k", "norm", "pool", "dropout", "drop_connect", "drop_block")


def parse_drop_block(value) -> list | None:
    """'SIZE,P' (or a pair) → [size, p]."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        size, prob = int(parts[0]), float(parts[1])
        if len(parts) != 2:
            raise ValueError
    except (ValueError, IndexError, TypeError):
        raise UsageError(f"--drop-block {value!r}: write SIZE,P, e.g. 3,0.1") from None
    if size < 1 or not 0 <= prob < 1:
        raise UsageError(f"--drop-block {value!r}: SIZE must be ≥ 1 and P in [0, 1)")
    return [size, prob]


def reshape_variant(model: nn.Module, options: dict, input_size) -> None:
    if options.get("act") == "maxout":
        add_maxout(model, options["maxout_k"])
    elif options.get("act"):
        swap_activation(model, options["act"], input_size)
    norm = options.get("norm")
    if norm in WEIGHT_NORMS and has_feature_norm(model):  # they replace feature-map normalisation
        swap_norm(model, "none")
    elif norm and norm not in WEIGHT_NORMS:
        swap_norm(model, norm)
    if options.get("pool"):
        swap_max_pool(model)
    if options.get("drop_connect"):
        add_drop_connect(model, options["drop_connect"])
    if options.get("drop_block"):
        size, prob = parse_drop_block(options["drop_block"])
        add_drop_block(model, size, prob, input_size)


def finish_variant(model: nn.Module, options: dict) -> None:
    if options.get("dropout") is not None:
        set_dropout(model, options["dropout"])
    if options.get("norm") in WEIGHT_NORMS:
        reparametrise_weights(model, options["norm"])


def rebuild_model(model: nn.Module, options: dict, input_size) -> nn.Module:
    """The modules of a trained variant (model.json's "options"), without its initialisation."""
    reshape_variant(model, options, input_size)
    finish_variant(model, options)
    return model
