"""The model registry: every network of the notes under one name, with its paper's figures.

`register_model` records a builder with the paper it comes from, its task and the paper's own
parameter and MAC counts; `create_model` builds it, `model_card` measures it next to those
figures (on the meta device, once per name: cards are built on demand and cached); `model_cards`
keeps them across processes in a JSON file ($VISIONZOO_CACHE or ~/.cache/visionzoo), keyed by
the builder's entry and source, so that `visionzoo models` lists the zoo in seconds.

Every created network carries timm's ``pretrained_cfg`` (alias ``default_cfg``): input size,
mean and std of the data set it is trained on (ImageNet's unless its entry names another),
number of classes, ``first_conv`` and ``classifier`` (dotted module names), ``fixed_input_size``,
``crop_pct`` and ``interpolation``. `create_model` follows timm's conventions: ``pretrained``
False/None/a file (True is refused: no weights are hosted), ``img_size``, ``drop_rate``,
``drop_path_rate``, ``global_pool``, and unknown keywords refused before anything is built.
``create_model(name, features_only=True, out_indices=…)`` returns its stage feature maps instead
(models/features.py).
"""
from __future__ import annotations

import ast
import difflib
import fnmatch
import hashlib
import inspect
import json
import os
import re
import textwrap
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .core.errors import UsageError

TASKS = ("classification", "detection", "segmentation", "video", "viewpoint", "generative", "language",
         "translation", "cloze", "sequence-regression")
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
    default_data: str | None = None   # the --data a run trains on when none is given, where not its task's default


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
                   mismatch_reason: str | None = None, default_data: str | None = None, **defaults):
    """Decorator registering a builder `fn(num_classes, in_chans, **kwargs) -> nn.Module`.

    Paper figures are numbers, or strings as printed ("1.7M", "3.8G") so that their rounding
    is known to `verify_card`. `task` is one of TASKS; `dataset` names the data set whose
    statistics (NORMALISATION) go into ``pretrained_cfg`` (None: ImageNet); `default_data` the `--data` a
    run of it trains on when none is given (None: its task's default). `twins` maps a source
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
            defaults=defaults, mismatch_reason=mismatch_reason, default_data=default_data)
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


def list_models(pattern: str | None = None, *, task: str | None = None, family: str | None = None) -> list[str]:
    """Sorted registered names, filtered by an fnmatch pattern such as ``"resnet*"``, a task and a family."""
    if task is not None:
        _check_task(task)
    _load_all()
    if family is not None and family not in families():
        known = families()
        close = difflib.get_close_matches(family, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(known)}"
        raise UsageError(f"unknown family {family!r}; {hint}")
    return [name for name, entry in sorted(_REGISTRY.items())
            if (pattern is None or fnmatch.fnmatch(name, pattern)) and task in (None, entry.task)
            and family in (None, entry.family)]


def families() -> list[str]:
    """Sorted family names of the registered networks."""
    _load_all()
    return sorted({entry.family for entry in _REGISTRY.values()})


def create_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None,
                 pretrained: str | bool | None = None, features_only: bool = False, out_indices=None,
                 **kwargs) -> nn.Module:
    """Build a registered network; with no arguments, the paper's own configuration.

    `pretrained` is a path to a visionzoo checkpoint (safetensors) or a torchvision/timm
    state_dict of the twin architecture, converted on the fly; False or None means none, and True
    is refused (visionzoo hosts no weights). A file made for another class count or input channels
    is adapted as timm does (`weights.load_pretrained`). ``image_size=S`` (timm: ``img_size``)
    tells networks that adapt to small inputs (e.g. a 3×3 stride-1 stem below 64 px) what they will
    see; it is dropped for networks that work at any size unchanged. timm's ``drop_rate`` (dropout
    before the classifier; a network whose builder has its own ``drop_rate``, such as DenseNet's
    dropout after every convolution, gets it as its own), ``drop_path_rate`` (stochastic depth) and ``global_pool`` ("avg",
    "max", or "" with num_classes=0 for the unpooled map) are taken where the network has that
    part, and refused in one line where it has not. Any other keyword must be one the builder
    takes (`accepted_keywords`); an unknown one is refused before anything is built.
    ``features_only=True`` returns a `FeatureExtractor` whose forward gives the stage feature maps
    `out_indices` selects (timm's semantics: None every stage, n the last n, or a sequence of indices).
    """
    entry = get_entry(name)
    if out_indices is not None and not features_only:
        raise UsageError("out_indices selects the stages of features_only=True")
    pretrained = _pretrained_file(pretrained)
    if "img_size" in kwargs:
        if "image_size" in kwargs:
            raise UsageError("give img_size or image_size (the same thing), not both")
        kwargs["image_size"] = kwargs.pop("img_size")
    drop_rate, global_pool = kwargs.pop("drop_rate", None), kwargs.pop("global_pool", None)
    if drop_rate is not None and _builder_takes(entry, "drop_rate", kwargs):
        kwargs["drop_rate"], drop_rate = drop_rate, None   # the network's own dropout rate (e.g. DenseNet's)
    _check_keywords(entry, kwargs)
    image_size = kwargs.get("image_size")
    num_classes = entry.num_classes if num_classes is None else num_classes
    in_chans = entry.input_size[0] if in_chans is None else in_chans
    model = _build(entry, num_classes, in_chans, kwargs)
    if drop_rate is not None:
        _set_drop_rate(model, name, drop_rate)
    if global_pool is not None:
        _set_global_pool(model, name, global_pool, num_classes)
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


def _build(entry: ModelEntry, num_classes: int, in_chans: int, kwargs: dict) -> nn.Module:
    try:
        return entry.builder(num_classes=num_classes, in_chans=in_chans, **{**entry.defaults, **kwargs})
    except TypeError as exc:   # a keyword the up-front check could not judge
        found = re.search(r"unexpected keyword argument '(\w+)'|multiple values for (?:keyword )?argument '(\w+)'",
                          str(exc))
        keyword = found and (found[1] or found[2])
        if keyword in kwargs:
            raise UsageError(f"{entry.name} takes no keyword {keyword}") from None
        raise


def _pretrained_file(pretrained):
    """timm's pretrained flag or a weights file: False/None → None, a path → itself, True refused."""
    if pretrained is True:
        raise UsageError("pretrained=True: visionzoo hosts no weights; give a file instead, "
                         "pretrained=\"path.pth\" or \"path.safetensors\" (ours or the torchvision/timm twin's)")
    return None if pretrained is False else pretrained


# Keywords create_model itself takes, besides the builder's.
CREATE_KEYWORDS = ("num_classes", "in_chans", "pretrained", "features_only", "out_indices", "img_size",
                   "drop_rate", "global_pool")


def _builder_takes(entry: ModelEntry, keyword: str, kwargs: dict) -> bool:
    try:
        return keyword in accepted_keywords(entry.name, kwargs)
    except (OSError, RuntimeError):
        return keyword in inspect.signature(entry.builder).parameters


def _check_keywords(entry: ModelEntry, kwargs: dict) -> None:
    """Refuse, before building, a keyword no builder in the chain takes; drop image_size where no
    builder takes it (the network works at any size)."""
    try:
        accepted = accepted_keywords(entry.name, kwargs)
    except (OSError, RuntimeError):   # source unreadable: the builder's own TypeError is translated
        accepted = set(kwargs) | {n for n in inspect.signature(entry.builder).parameters if n != "image_size"}
    if "image_size" in kwargs and "image_size" not in accepted:
        kwargs.pop("image_size")
    if "drop_path_rate" in kwargs and "drop_path_rate" not in accepted:
        raise UsageError(f"{entry.name} has no stochastic depth; drop_path_rate does not apply to it")
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        takes = sorted((accepted - {"num_classes", "in_chans"}) | set(CREATE_KEYWORDS))
        raise UsageError(f"{entry.name} takes no keyword {', '.join(unknown)}; it takes {', '.join(takes)}")


def accepted_keywords(name: str, kwargs: dict | None = None) -> frozenset[str]:
    """Every keyword ``create_model(name, …)`` may pass to the builder: the builder's own parameters
    and, where it forwards ``**kwargs``, those of each callee, followed through the source (classes,
    ``super().__init__``, a block class passed as a keyword such as ``block=BasicBlock``), less the
    ones each call site fixes itself. `kwargs` are the caller's, which may choose such a block.

    RuntimeError when a forwarding chain cannot be followed: a family must keep it readable.
    """
    entry = get_entry(name)
    bound = {**entry.defaults, **(kwargs or {})}
    return frozenset(_accepted(entry.builder, bound, owner=None))


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _accepted(target: Callable, bound: dict, owner: type | None) -> set[str]:
    """Keywords `target` (a function, or a class whose __init__ runs with `owner` as the instance's
    class) takes, directly or through its ``**kwargs``."""
    if isinstance(target, type):
        owner = target
        defining = next(c for c in target.__mro__ if "__init__" in vars(c))
        if defining is object or defining is nn.Module:
            return set()
        return _accepted_by_function(vars(defining)["__init__"], bound, owner, defining)
    return _accepted_by_function(target, bound, owner, None)


def _accepted_by_function(function: Callable, bound: dict, owner: type | None, defining: type | None) -> set[str]:
    parameters = inspect.signature(function).parameters
    named = {n for n, p in parameters.items() if p.kind in _NAMED} - {"self"}
    var_keyword = next((n for n, p in parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    if var_keyword is None:
        return named
    calls = _forwarding_calls(function, var_keyword)
    if not calls:
        raise RuntimeError(f"{function.__qualname__} takes **{var_keyword} but passes it to no call")
    accepted = set(named)
    for call in calls:
        callee = _resolve_callee(call.func, function, bound, parameters, owner, defining)
        fixed = {k.arg: k.value for k in call.keywords if k.arg is not None}
        callee_bound = {**bound, **{k: _resolve_name(v, function) for k, v in fixed.items()
                                    if _resolve_name(v, function) is not None}}
        if isinstance(callee, tuple):   # super().__init__ or a method of the instance's class
            callee_function, callee_defining = callee
            below = _accepted_by_function(callee_function, callee_bound, owner, callee_defining)
        else:
            below = _accepted(callee, callee_bound, None)
        positional = _positional_names(callee, len(call.args)) if not any(
            isinstance(a, ast.Starred) for a in call.args) else set()
        accepted |= below - set(fixed) - positional
    return accepted


def _forwarding_calls(function: Callable, var_keyword: str) -> list[ast.Call]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    if not (tree.body and getattr(tree.body[0], "name", None) == function.__name__):
        raise OSError(f"the source of {function.__qualname__} changed since it was imported")
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == var_keyword
                    for k in node.keywords)]


def _resolve_name(node: ast.expr, function: Callable):
    if isinstance(node, ast.Name):
        value = function.__globals__.get(node.id)
        return value if callable(value) else None
    return None


def _resolve_callee(func: ast.expr, function: Callable, bound: dict, parameters, owner, defining):
    where = function.__qualname__
    if isinstance(func, ast.Attribute) and func.attr == "__init__" and isinstance(func.value, ast.Call) \
            and isinstance(func.value.func, ast.Name) and func.value.func.id == "super" and owner is not None:
        mro = owner.__mro__
        for cls in mro[mro.index(defining) + 1:]:
            if "__init__" in vars(cls):
                return vars(cls)["__init__"], cls
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self" \
            and owner is not None:   # a method, as the instance's class resolves it (e.g. make_branch)
        cls = next((c for c in owner.__mro__ if func.attr in vars(c)), None)
        if cls is not None and inspect.isfunction(vars(cls)[func.attr]):
            return vars(cls)[func.attr], cls
    if isinstance(func, ast.Name):
        if func.id in parameters:   # a callable passed in, e.g. ResNet's block
            value = bound.get(func.id, parameters[func.id].default)
            if callable(value):
                return value
        else:
            value = _resolve_name(func, function)
            if value is not None:
                return value
    raise RuntimeError(f"{where}: cannot tell where its keyword arguments go ({ast.unparse(func)})")


def _positional_names(callee, count: int) -> set[str]:
    function = callee[0] if isinstance(callee, tuple) else callee
    if isinstance(function, type):
        function = next(vars(c)["__init__"] for c in function.__mro__ if "__init__" in vars(c))
    names = [n for n, p in inspect.signature(function).parameters.items() if n != "self"
             and p.kind in (*_NAMED, inspect.Parameter.POSITIONAL_ONLY)]
    return set(names[:count])


def _set_drop_rate(model: nn.Module, name: str, rate: float) -> None:
    """timm's drop_rate: the dropout right before the classifier (a fresh one on a pool → linear head)."""
    from .models.base import ImageClassifier
    if not 0 <= rate < 1:
        raise UsageError(f"drop_rate={rate}: a dropout probability in [0, 1)")
    head_drop = getattr(model, "head_drop", None)
    if isinstance(head_drop, nn.Dropout):
        head_drop.p = rate
        return
    if type(model).forward_head is ImageClassifier.forward_head:
        model.head_drop = nn.Dropout(rate)
        return
    parent_name, _, child = getattr(model, "classifier_name", "").rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else None
    if isinstance(parent, nn.Sequential) and child.isdigit() and int(child) > 0 \
            and isinstance(parent[int(child) - 1], nn.Dropout):
        parent[int(child) - 1].p = rate
        return
    raise UsageError(f"{name} has no dropout right before its classifier; drop_rate does not apply to it")


GLOBAL_POOLS = ("avg", "max", "")


def _set_global_pool(model: nn.Module, name: str, pool: str, num_classes: int) -> None:
    """timm's global_pool on a global-average-pool → linear head: "avg", "max", or "" (no pooling,
    for num_classes=0: the head returns the feature map)."""
    from .models.base import ImageClassifier
    if pool not in GLOBAL_POOLS:
        raise UsageError(f"global_pool={pool!r}: choose \"avg\", \"max\" or \"\"")
    if type(model).forward_head is not ImageClassifier.forward_head:
        raise UsageError(f"{name}'s head is not global average pooling then the classifier; "
                         "global_pool does not apply to it")
    if pool == "" and num_classes != 0:
        raise UsageError("global_pool=\"\" leaves the feature map unpooled; pair it with num_classes=0")
    model.global_pool = pool
    if pool == "":
        model.reset_classifier(0)


# Families whose published evaluation resizes bicubically (timm's configurations); the rest bilinearly.
BICUBIC_FAMILIES = frozenset({"vit", "mixer", "convnext", "efficientnet", "nfnet"})


def _pretrained_cfg(entry: ModelEntry, model: nn.Module, input_size, num_classes: int) -> dict:
    """timm's pretrained_cfg keys for `model` as built: its input size and normalisation, classes,
    first convolution (in module order) and classifier, and the evaluation resize: ``crop_pct``
    (centre crop / resized side: ImageNet's 0.875; 1.0 for the small data sets, used uncropped) and
    ``interpolation``."""
    mean, std = NORMALISATION[entry.dataset or "imagenet"]
    channels = input_size[0]
    if len(mean) != channels:  # built for other channels than the data set's: its channel average
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    first_conv = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    return {"architecture": entry.name, "input_size": tuple(input_size), "mean": mean, "std": std,
            "num_classes": num_classes, "first_conv": first_conv,
            "classifier": getattr(model, "classifier_name", None),
            "fixed_input_size": getattr(model, "fixed_input_size", False),
            "crop_pct": 1.0 if entry.dataset else 0.875,
            "interpolation": "bicubic" if entry.family in BICUBIC_FAMILIES else "bilinear"}


def convert_state_dict(name: str, state_dict: dict, source: str) -> dict:
    """Turn a torchvision or timm twin's state_dict into one for ``create_model(name)``."""
    entry = get_entry(name)
    if source not in entry.twins:
        have = ", ".join(entry.twins) or "none"
        raise UsageError(f"{name} has no {source!r} twin (twins: {have})")
    convert = entry.converters.get(source)
    return dict(convert(state_dict)) if convert else dict(state_dict)


_CARD_CACHE: dict[str, dict] = {}
CARD_CACHE_FILE = "model_cards.json"
_CARD_CACHE_VERSION = 1
# Code every card's figures depend on besides the builder's own module: the building blocks, the
# shared model base and the counters. A change there makes every cached card stale.
_SHARED_SOURCES = ("layers", "models/base.py", "core/profile.py")


def model_card(name: str) -> dict:
    """Name, task, family, paper, year, input size, measured params/MACs and the paper's figures."""
    if name not in _CARD_CACHE:
        _CARD_CACHE[name] = _measure_card(name)
    return dict(_CARD_CACHE[name])


def _measure_card(name: str) -> dict:
    from .core.profile import count_macs, count_params
    entry = get_entry(name)
    with torch.device("meta"):
        model = create_model(name)
    # A network may name the part its card measures and that part's input (a GAN: its generator and z).
    measured = getattr(model, "card_module", model)
    return {
        "name": name, "task": entry.task, "family": entry.family, "paper": entry.paper, "year": entry.year,
        "input_size": list(entry.input_size), "num_classes": entry.num_classes,
        "params": count_params(measured),
        "macs": count_macs(measured, getattr(model, "card_input_size", entry.input_size)),
        "paper_params": entry.paper_params, "paper_macs": entry.paper_macs,
        "twins": dict(entry.twins), "mismatch_reason": entry.mismatch_reason,
    }


def card_cache_path() -> Path:
    """Where `model_cards` keeps measured cards: $VISIONZOO_CACHE or ~/.cache/visionzoo."""
    root = os.environ.get("VISIONZOO_CACHE") or Path.home() / ".cache" / "visionzoo"
    return Path(root) / CARD_CACHE_FILE


def _source_digest(path: Path) -> bytes:
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(path.parent).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.digest()


_SHARED_DIGEST: list[bytes] = []


def card_key(name: str) -> str:
    """What a cached card of `name` was measured from: the card's entry (builder keywords, paper
    figures, …), the source of the builder's module and of the code shared by every network."""
    entry = get_entry(name)
    if not _SHARED_DIGEST:
        package = Path(__file__).parent
        _SHARED_DIGEST.append(b"".join(_source_digest(package / part) for part in _SHARED_SOURCES))
    digest = hashlib.sha256(_SHARED_DIGEST[0])
    digest.update(repr((_CARD_CACHE_VERSION, torch.__version__, entry.name, entry.family, entry.paper, entry.year,
                        entry.input_size, entry.num_classes, entry.paper_params, entry.paper_macs, entry.task,
                        sorted(entry.twins.items()), entry.mismatch_reason, sorted(entry.defaults.items(), key=str),
                        entry.builder.__module__, entry.builder.__qualname__)).encode())
    module = inspect.getmodule(entry.builder)
    source = getattr(module, "__file__", None)
    digest.update(Path(source).read_bytes() if source else inspect.getsource(entry.builder).encode())
    return digest.hexdigest()


_CARD_FIELDS = frozenset(("name", "task", "family", "paper", "year", "input_size", "num_classes", "params", "macs",
                          "paper_params", "paper_macs", "twins", "mismatch_reason"))


def _read_card_cache(path: Path) -> dict:
    """The cached cards by name; an unreadable, corrupt or foreign file counts as empty."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not (isinstance(stored, dict) and stored.get("version") == _CARD_CACHE_VERSION
            and isinstance(stored.get("cards"), dict)):
        return {}
    return {name: item for name, item in stored["cards"].items()
            if isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("card"), dict)}


def model_cards(names: list[str], *, quiet: bool = True) -> list[dict]:
    """The cards of `names`, measured once and then read from the cache file (`card_cache_path`):
    a card is measured again when its `card_key` changed (stale) or the file is corrupt. The file is
    rewritten atomically when anything was measured; an unwritable cache only costs the speed."""
    from .core.io import write_json
    from .core.progress import progress
    path = card_cache_path()
    stored = _read_card_cache(path)
    keys = {name: card_key(name) for name in names}
    stale = [name for name in names if not (name in stored and stored[name]["key"] == keys[name]
                                            and set(stored[name]["card"]) == _CARD_FIELDS)]
    for name in progress(stale, desc="measuring model cards", quiet=quiet or not stale, unit="models"):
        stored[name] = {"key": keys[name], "card": _CARD_CACHE[name] if name in _CARD_CACHE else _measure_card(name)}
    cards = []
    for name in names:
        _CARD_CACHE[name] = stored[name]["card"]
        cards.append(json.loads(json.dumps(stored[name]["card"])))   # a copy the caller may change
    if stale:
        try:
            write_json(path, {"version": _CARD_CACHE_VERSION, "cards": stored})
        except OSError:
            pass
    return cards


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
