"""The model registry: every network of the notes under one name, with its paper's figures.

`register_model` records a builder with the paper it comes from, its task and the paper's own
parameter and MAC counts; `create_model` builds it, `model_card` measures it next to those
figures (on the meta device, once per name: cards are built on demand and cached).

Every created network carries timm's ``pretrained_cfg`` (alias ``default_cfg``): input size,
mean and std of the data set it is trained on (ImageNet's unless its entry names another),
number of classes, ``first_conv`` and ``classifier`` (dotted module names), ``fixed_input_size``.
``create_model(name, features_only=True, out_indices=…)`` returns its stage feature maps instead
(models/features.py).
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
from torch import nn

from .core.errors import UsageError

TASKS = ("classification", "detection", "segmentation", "video", "viewpoint", "generative", "language",
         "translation", "cloze")
# Per-channel (mean, std) of the data sets an entry can name; None means ImageNet.
NORMALISATION = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered network: card metadata, and in `defaults` the builder keywords of this name."""
    name: str
    builder: Callable[..., nn.Module]
    family: str
    paper: str
    year: int
    input_size: tuple[int, int, int]
    num_classes: int
    paper_params: float | str | None
    paper_macs: float | str | None
    task: str = "classification"
    dataset: str | None = None
    twins: dict[str, str] = field(default_factory=dict)
    converters: dict[str, Callable[[dict], dict]] = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    mismatch_reason: str | None = None


# Card fields a builder parameter may not be named after: a builder keyword of that name could
# never be bound through register_model, which would take it as metadata. (num_classes is both:
# create_model passes the entry's value to the builder.)
_METADATA_ONLY = frozenset(f.name for f in fields(ModelEntry)) - {"builder", "defaults", "num_classes"}

_REGISTRY: dict[str, ModelEntry] = {}


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def _check_builder_keywords(key: str, builder: Callable, defaults: dict) -> None:
    """Metadata and builder keywords of one entry must not mix: refuse a builder parameter named
    like a card field, and a default the builder has no parameter for."""
    parameters = inspect.signature(builder).parameters
    shadowed = sorted(_METADATA_ONLY & set(parameters))
    if shadowed:
        raise RuntimeError(f"model {key!r}: builder {builder.__name__} has parameters named like card "
                           f"fields ({', '.join(shadowed)}); rename them")
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(defaults) - set(parameters))
        if unknown:
            raise RuntimeError(f"model {key!r}: {', '.join(unknown)} is neither a card field nor a "
                               f"parameter of {builder.__name__}")


def register_model(name: str | None = None, *, family: str, paper: str, year: int,
                   input_size=(3, 224, 224), num_classes: int = 1000,
                   paper_params: float | str | None = None, paper_macs: float | str | None = None,
                   task: str = "classification", dataset: str | None = None,
                   twins: dict[str, str] | None = None,
                   converters: dict[str, Callable[[dict], dict]] | None = None,
                   mismatch_reason: str | None = None, **defaults):
    """Decorator registering a builder `fn(num_classes, in_chans, **kwargs) -> nn.Module`.

    Paper figures are numbers, or strings as printed ("1.7M", "3.8G") so that their rounding
    is known to `verify_card`. `task` is one of TASKS; `dataset` names the data set whose
    statistics (NORMALISATION) go into ``pretrained_cfg`` (None: ImageNet). `twins` maps a source
    ("torchvision", "timm") to the twin's name there; `converters` maps a source to a function
    turning the twin's state_dict into ours (identity when absent). Extra keyword arguments are
    bound as defaults of this registered configuration, so one builder can serve several names
    (``register_model("vgg16", cfg="D")(_vgg)``).
    """
    _check_task(task)
    if dataset is not None and dataset not in NORMALISATION:
        raise UsageError(f"unknown dataset {dataset!r}; choose one of {', '.join(NORMALISATION)}")

    def wrap(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise RuntimeError(f"model {key!r} registered twice")
        _check_builder_keywords(key, fn, defaults)
        _REGISTRY[key] = ModelEntry(
            name=key, builder=fn, family=family, paper=paper, year=year, input_size=tuple(input_size),
            num_classes=num_classes, paper_params=paper_params, paper_macs=paper_macs, task=task,
            dataset=dataset, twins=dict(twins or {}), converters=dict(converters or {}),
            defaults=defaults, mismatch_reason=mismatch_reason)
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


def list_models(pattern: str | None = None, *, task: str | None = None) -> list[str]:
    """Sorted registered names, filtered by an fnmatch pattern such as ``"resnet*"`` and a task."""
    if task is not None:
        _check_task(task)
    _load_all()
    return [name for name, entry in sorted(_REGISTRY.items())
            if (pattern is None or fnmatch.fnmatch(name, pattern)) and task in (None, entry.task)]


def create_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None,
                 pretrained: str | None = None, features_only: bool = False, out_indices=None,
                 **kwargs) -> nn.Module:
    """Build a registered network; with no arguments, the paper's own configuration.

    `pretrained` is a path to a visionzoo checkpoint (safetensors) or a torchvision/timm
    state_dict of the twin architecture, converted on the fly. ``image_size=S`` tells networks
    that adapt to small inputs (e.g. a 3×3 stride-1 stem below 64 px) what they will see; it is
    dropped for networks that work at any size unchanged. ``features_only=True`` returns a
    `FeatureExtractor` whose forward gives the stage feature maps `out_indices` selects (timm's
    semantics: None every stage, n the last n, or a sequence of indices).
    """
    entry = get_entry(name)
    if out_indices is not None and not features_only:
        raise UsageError("out_indices selects the stages of features_only=True")
    image_size = kwargs.get("image_size")
    if "image_size" in kwargs and "image_size" not in inspect.signature(entry.builder).parameters:
        kwargs.pop("image_size")
    num_classes = entry.num_classes if num_classes is None else num_classes
    in_chans = entry.input_size[0] if in_chans is None else in_chans
    model = entry.builder(num_classes=num_classes, in_chans=in_chans, **{**entry.defaults, **kwargs})
    side = entry.input_size[1:] if image_size is None else (image_size, image_size)
    model.pretrained_cfg = model.default_cfg = _pretrained_cfg(entry, model, (in_chans, *side), num_classes)
    if pretrained is not None:
        from .weights import load_pretrained
        load_pretrained(model, name, pretrained)
    if features_only:
        if not hasattr(model, "stage_modules"):
            raise UsageError(f"{name} ({entry.task}) has no feature stages")
        from .models.features import FeatureExtractor
        return FeatureExtractor(model, out_indices)
    return model


def _pretrained_cfg(entry: ModelEntry, model: nn.Module, input_size, num_classes: int) -> dict:
    """timm's pretrained_cfg keys for `model` as built: its input size and normalisation, classes,
    first convolution (in module order) and classifier."""
    mean, std = NORMALISATION[entry.dataset or "imagenet"]
    channels = input_size[0]
    if len(mean) != channels:  # built for other channels than the data set's: its channel average
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    first_conv = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    return {"architecture": entry.name, "input_size": tuple(input_size), "mean": mean, "std": std,
            "num_classes": num_classes, "first_conv": first_conv,
            "classifier": getattr(model, "classifier_name", None),
            "fixed_input_size": getattr(model, "fixed_input_size", False)}


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
    """Name, task, family, paper, year, input size, measured params/MACs and the paper's figures."""
    if name in _CARD_CACHE:
        return dict(_CARD_CACHE[name])
    from .core.profile import count_macs, count_params
    entry = get_entry(name)
    with torch.device("meta"):
        model = create_model(name)
    card = {
        "name": name, "task": entry.task, "family": entry.family, "paper": entry.paper, "year": entry.year,
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
