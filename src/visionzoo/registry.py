"""The model registry: every network of the notes under one name, with its paper's figures.

`register_model` records a builder with the paper it comes from and the paper's own parameter
and MAC counts; `create_model` builds it, `model_card` measures it next to those figures.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .core.errors import UsageError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    paper: str
    year: int
    input_size: tuple[int, int, int]
    num_classes: int
    paper_params: float | str | None
    paper_macs: float | str | None
    twins: dict[str, str] = field(default_factory=dict)
    converters: dict[str, Callable[[dict], dict]] = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    mismatch_reason: str | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str | None = None, *, family: str, paper: str, year: int,
                   input_size=(3, 224, 224), num_classes: int = 1000,
                   paper_params: float | str | None = None, paper_macs: float | str | None = None,
                   twins: dict[str, str] | None = None,
                   converters: dict[str, Callable[[dict], dict]] | None = None,
                   mismatch_reason: str | None = None, **defaults):
    """Decorator registering a builder `fn(num_classes, in_chans, **kwargs) -> nn.Module`.

    Paper figures are numbers, or strings as printed ("1.7M", "3.8G") so that their rounding
    is known to `verify_card`. `twins` maps a source ("torchvision", "timm") to the twin's name there; `converters` maps a
    source to a function turning the twin's state_dict into ours (identity when absent).
    Extra keyword arguments are bound as defaults of this registered configuration, so one
    builder can serve several names (``register_model("vgg16", cfg="D")(_vgg)``).
    """

    def wrap(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise RuntimeError(f"model {key!r} registered twice")
        _REGISTRY[key] = ModelEntry(key, fn, family, paper, year, tuple(input_size), num_classes,
                                    paper_params, paper_macs, dict(twins or {}),
                                    dict(converters or {}), defaults, mismatch_reason)
        return fn

    return wrap


def _load_all():
    # Importing the families fills the registry.
    from . import models  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `visionzoo models`"
        raise UsageError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, filtered by an fnmatch pattern such as ``"resnet*"``."""
    _load_all()
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None,
                 pretrained: str | None = None, **kwargs) -> nn.Module:
    """Build a registered network; with no arguments, the paper's own configuration.

    `pretrained` is a path to a visionzoo checkpoint (safetensors) or a torchvision/timm
    state_dict of the twin architecture, converted on the fly. ``image_size=S`` tells networks
    that adapt to small inputs (e.g. a 3×3 stride-1 stem below 64 px) what they will see; it is
    dropped for networks that work at any size unchanged.
    """
    entry = get_entry(name)
    if "image_size" in kwargs and "image_size" not in inspect.signature(entry.builder).parameters:
        kwargs.pop("image_size")
    num_classes = entry.num_classes if num_classes is None else num_classes
    in_chans = entry.input_size[0] if in_chans is None else in_chans
    model = entry.builder(num_classes=num_classes, in_chans=in_chans, **{**entry.defaults, **kwargs})
    model.default_cfg = {"name": name, "input_size": (in_chans, *entry.input_size[1:]),
                         "num_classes": num_classes}
    if pretrained is not None:
        from .weights import load_pretrained
        load_pretrained(model, name, pretrained)
    return model


def convert_state_dict(name: str, state_dict: dict, source: str) -> dict:
    """Turn a torchvision or timm twin's state_dict into one for ``create_model(name)``."""
    entry = get_entry(name)
    if source not in entry.twins:
        have = ", ".join(entry.twins) or "none"
        raise UsageError(f"{name} has no {source!r} twin (twins: {have})")
    convert = entry.converters.get(source)
    return dict(convert(state_dict)) if convert else dict(state_dict)


_CARD_CACHE: dict[str, dict] = {}


def model_card(name: str) -> dict:
    """Name, family, paper, year, input size, measured params/MACs and the paper's figures."""
    if name in _CARD_CACHE:
        return dict(_CARD_CACHE[name])
    from .core.profile import count_macs, count_params
    entry = get_entry(name)
    with torch.device("meta"):
        model = create_model(name)
    card = {
        "name": name, "family": entry.family, "paper": entry.paper, "year": entry.year,
        "input_size": list(entry.input_size), "num_classes": entry.num_classes,
        "params": count_params(model), "macs": count_macs(model, entry.input_size),
        "paper_params": entry.paper_params, "paper_macs": entry.paper_macs,
        "twins": dict(entry.twins), "mismatch_reason": entry.mismatch_reason,
    }
    _CARD_CACHE[name] = card
    return dict(card)


PARAM_TOLERANCE, MAC_TOLERANCE = 0.01, 0.05
_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_figure(figure) -> tuple[float, float] | None:
    """A paper's figure and half a unit of its last printed digit: "1.7M" → (1.7e6, 0.05e6).

    Papers round ("ResNet-110: 1.7M"); a measured count within that rounding agrees with it.
    """
    if figure is None:
        return None
    if not isinstance(figure, str):
        return float(figure), 0.0
    number, unit = figure[:-1] if figure[-1] in _UNITS else figure, figure[-1] if figure[-1] in _UNITS else ""
    decimals = len(number.partition(".")[2])
    return float(number) * _UNITS[unit], 0.5 * 10 ** -decimals * _UNITS[unit]


def verify_card(card: dict) -> tuple[bool, str]:
    """Measured vs paper: params within 1 %, MACs within 5 % (or the paper's rounding),
    unless a reason for the difference is documented."""
    problems = []
    for key, tol in (("params", PARAM_TOLERANCE), ("macs", MAC_TOLERANCE)):
        parsed = parse_figure(card[f"paper_{key}"])
        if parsed is None:
            continue
        paper, rounding = parsed
        if abs(card[key] - paper) > max(tol * paper, rounding):
            problems.append(f"{key} {card[key] / paper - 1:+.1%}")
    if not problems:
        return True, "ok" if (card["paper_params"] or card["paper_macs"]) else "no paper figures"
    if card["mismatch_reason"]:
        return True, f"documented ({', '.join(problems)}): {card['mismatch_reason']}"
    return False, "MISMATCH " + ", ".join(problems)
