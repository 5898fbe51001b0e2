"""Loading weights: visionzoo safetensors checkpoints and torchvision/timm twin state_dicts.

Nothing from outside is unpickled: safetensors is read as tensors, and a `.pth`/`.pt` file is
read with ``torch.load(weights_only=True)``. A `model.json` is checked field by field (`check_meta`:
types, class count, input size, one positive mean/std per channel, each within a ceiling) and its
network is first built on the meta device, so that its size is known, and compared with the
safetensors header, before any weight is allocated.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .core.errors import DataError, UsageError
from .core.io import torch_load_refusing_pickles

MAX_CLASSES = 1 << 17          # ImageNet-21k has 21,841
MAX_CHANNELS = 64
MAX_SIDE = 8192                # pixels of an input side
MAX_PARAMS = 1 << 30           # elements of all weights and buffers (4 GiB of float32; ViT-H/14 has 2^29.2)
MAX_META_BYTES = 16 << 20
MAX_EVAL_BATCH = 1 << 16       # model.json's evaluation batch


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or a state_dict `.pt`; weights holding NaN or ±inf are refused
    (a diverged network: evaluated, it reports a null loss and chance accuracy as if trained)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UsageError(f"weights file {path} does not exist")
    if path.suffix != ".safetensors":
        state = torch_load_refusing_pickles(path)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise UsageError(f"{path} does not hold a state_dict")
    else:
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors' own errors: truncated or malformed file
            raise DataError(f"cannot read weights from {path}: {str(exc).splitlines()[0]}") from None
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise DataError(f"{path}: {name} holds NaN or infinite values, so the network was saved after it "
                            "diverged; train it again (e.g. with a lower --lr or --clip-grad)")
    return state


def load_pretrained(model: nn.Module, name: str, path: str | Path, *, resize_first_conv: bool = False) -> None:
    """Load our own checkpoint, or a twin's state_dict converted from whichever source fits.

    A file that fits but for the classifier (another class count) or the first convolution's input
    channels is adapted as timm's ``load_pretrained`` does, with one warning saying so: the
    classifier keeps its fresh initialisation, and an RGB first convolution becomes
    `adapt_input_conv`'s. With `resize_first_conv`, a first convolution of another kernel size (an
    ImageNet 7×7 stem for a small-input 3×3 stem) is mapped by `resize_kernel` too.
    """
    from .registry import convert_state_dict, get_entry
    state = read_state_dict(path)
    own = model.state_dict()
    candidates = [("visionzoo", state)]
    for source in get_entry(name).twins:
        try:
            candidates.append((source, convert_state_dict(name, state, source)))
        except (KeyError, ValueError):
            continue
    for source, converted in candidates:
        if set(converted) == set(own) and all(converted[k].shape == own[k].shape for k in own):
            model.load_state_dict(converted)
            return
    for source, converted in candidates:
        adapted = _adapted_state(model, converted, own, resize_first_conv)
        if adapted is not None:
            state_dict, notes = adapted
            model.load_state_dict(state_dict)
            warnings.warn(f"{path}: {'; '.join(notes)}", stacklevel=3)
            return
    missing = sorted(set(own) - set(state))[:3]
    if missing:
        why = f"keys such as {missing} are missing"
    else:
        differ = [k for k in own if state[k].shape != own[k].shape]
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in differ][:2]
        first_conv = f"{(getattr(model, 'pretrained_cfg', None) or {}).get('first_conv')}.weight"
        if first_conv in differ and state[first_conv].shape[2:] != own[first_conv].shape[2:]:
            why = (f"shapes differ ({'; '.join(shapes)}): the file's first convolution is an ImageNet stem, the "
                   "model's a small-input one; fine-tune with --finetune-stem keep (build the network with the "
                   "file's stem) or --finetune-stem map (resize its kernels onto the small stem)")
        else:
            why = f"shapes differ ({'; '.join(shapes)}); build the model with the file's settings"
    raise UsageError(f"{path} does not fit {name}: {why} "
                     f"(twins: {', '.join(get_entry(name).twins) or 'none'})")


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """An RGB first convolution's (O, 3, k, k) weight for `in_chans` input channels, as timm does:
    one channel sums the three (a grey image's response equals the RGB one's for R = G = B);
    more channels tile R, G, B and scale by 3 / in_chans, keeping the response's scale."""
    if weight.shape[1] != 3:
        raise UsageError(f"the first convolution of the weights takes {weight.shape[1]} channels; "
                         "only an RGB (3-channel) one can be adapted to other input channels")
    work = weight.float()
    if in_chans == 1:
        adapted = work.sum(1, keepdim=True)
    else:
        adapted = work.repeat(1, math.ceil(in_chans / 3), 1, 1)[:, :in_chans] * (3 / in_chans)
    return adapted.to(weight.dtype)


def resize_kernel(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Convolution kernels (O, I, k, k) resampled to `size` (antialiased bilinear), scaled by the
    ratio of the areas so that each filter's response to a smooth input keeps its size: a 7×7
    ImageNet stem mapped onto a 3×3 small-input stem."""
    import torch.nn.functional as F
    resized = F.interpolate(weight.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    scale = (weight.shape[2] * weight.shape[3]) / (size[0] * size[1])
    return (resized * scale).to(weight.dtype)


def _adapted_state(model: nn.Module, state: dict, own: dict, resize_first_conv: bool = False
                   ) -> tuple[dict, list[str]] | None:
    """`state` for `model` with its classifier kept fresh and its first convolution adapted where
    only those differ (names from ``pretrained_cfg``); None if anything else differs."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier")
    heads = (heads,) if isinstance(heads, str) else tuple(heads or ())
    first_conv_weight = f"{cfg.get('first_conv')}.weight"

    def in_head(key: str) -> bool:
        return any(key.startswith(f"{head}.") for head in heads)

    if {k for k in state if not in_head(k)} != {k for k in own if not in_head(k)}:
        return None
    adapted, notes = {}, []
    for key, tensor in own.items():
        found = state.get(key)
        if found is not None and found.shape == tensor.shape:
            adapted[key] = found
        elif in_head(key):
            adapted[key] = tensor
            note = f"classifier {', '.join(heads)} replaced (a fresh one for the model's classes)"
            if note not in notes:
                notes.append(note)
        elif key == first_conv_weight and found is not None and found.dim() == 4 \
                and found.shape[0] == tensor.shape[0] and (found.shape[2:] == tensor.shape[2:] or resize_first_conv):
            weight = found if found.shape[1] == tensor.shape[1] else adapt_input_conv(found, tensor.shape[1])
            if found.shape[1] != tensor.shape[1]:
                notes.append(f"first convolution {cfg['first_conv']} adapted from {found.shape[1]} to "
                             f"{tensor.shape[1]} input channels (timm's adapt_input_conv)")
            if weight.shape[2:] != tensor.shape[2:]:
                weight = resize_kernel(weight, tuple(tensor.shape[2:]))
                notes.append(f"first convolution's {found.shape[2]}×{found.shape[3]} kernels resized to the "
                             f"small-input stem's {tensor.shape[2]}×{tensor.shape[3]}")
            adapted[key] = weight
        else:
            return None
    return adapted, notes


# the tasks whose runs' model.json holds the data's normalisation and input size: tasks.base.ImageTask's (a test
# keeps the two equal; this module sits below tasks and cannot ask them)
IMAGE_TASKS = ("classification", "segmentation", "detection", "video", "viewpoint")
IMAGE_RUN_KEYS = ("data", "input_size", "mean", "std")


def _is_count(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_meta(meta, where: str) -> None:
    """Raise DataError, naming `where` and the field, unless `meta` is a well-formed model description."""
    def bad(what: str):
        return DataError(f"{where}: {what}; not a visionzoo model description (write it again with visionzoo)")
    if not isinstance(meta, dict):
        raise bad("not a JSON object")
    if not isinstance(meta.get("name"), str):
        raise bad("no network \"name\"")
    kwargs = meta.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise bad("\"kwargs\" is not an object")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and len(classes) <= MAX_CLASSES
                                    and all(isinstance(name, (str, int)) for name in classes)):
        raise bad(f"\"classes\" is not a list of at most {MAX_CLASSES} names")
    if "num_classes" in kwargs:
        if not _is_count(kwargs["num_classes"], 1, MAX_CLASSES):
            raise bad(f"num_classes {kwargs['num_classes']!r} is not a count in 1..{MAX_CLASSES}")
        if classes is not None and meta.get("task", "classification") == "classification" \
                and len(classes) != kwargs["num_classes"]:
            raise bad(f"{len(classes)} class names for num_classes {kwargs['num_classes']}")
    if "in_chans" in kwargs and not _is_count(kwargs["in_chans"], 1, MAX_CHANNELS):
        raise bad(f"in_chans {kwargs['in_chans']!r} is not a count in 1..{MAX_CHANNELS}")
    for key in ("image_size", "img_size"):
        if key in kwargs and not (_is_count(kwargs[key], 1, MAX_SIDE) or kwargs[key] is None):
            raise bad(f"{key} {kwargs[key]!r} is not a side in 1..{MAX_SIDE}")
    size = meta.get("input_size")
    sides = 3 if meta.get("task") == "video" else 2   # a video network's input: channels, frames, height, width
    if size is not None and not (isinstance(size, list) and len(size) == 1 + sides
                                 and _is_count(size[0], 1, MAX_CHANNELS)
                                 and all(_is_count(side, 1, MAX_SIDE) for side in size[1:])):
        what = "frames, height, width" if sides == 3 else "height, width"
        raise bad(f"input_size {size!r} is not [channels ≤ {MAX_CHANNELS}, {what} ≤ {MAX_SIDE}]")
    for key in ("mean", "std"):
        values = meta.get(key)
        if values is None:
            continue
        if not (isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 and math.isfinite(v) for v in values)):
            raise bad(f"{key} {values!r} is not a list of finite numbers")
        if size is not None and len(values) != size[0]:
            raise bad(f"{len(values)} {key} values for {size[0]} input channels")
    if meta.get("std") is not None and not all(v > 0 for v in meta["std"]):
        raise bad(f"std {meta['std']} must be positive")
    if meta.get("options") is not None and not isinstance(meta["options"], dict):
        raise bad("\"options\" is not an object")
    for key in ("task", "data"):
        if key in meta and not isinstance(meta[key], str):
            raise bad(f"\"{key}\" {meta[key]!r} is not a name")
    missing = [key for key in IMAGE_RUN_KEYS if key not in meta]
    if meta.get("task") in IMAGE_TASKS and missing:   # written by `visionzoo train`, which writes them all
        raise bad(f"no \"{missing[0]}\" for its {meta['task']} network")
    data_args, evaluation = meta.get("data_args", {}), meta.get("eval", {})
    if not isinstance(data_args, dict) or not all(
            value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0)
            for key, value in data_args.items() if key in ("val_size", "seed", "image_size")):
        raise bad(f"\"data_args\" {data_args!r} is not an object of val_size, seed and image_size numbers")
    if not isinstance(evaluation, dict) or not _is_count(evaluation.get("batch_size", 1), 1, MAX_EVAL_BATCH) \
            or not isinstance(evaluation.get("channels_last", False), bool):
        raise bad(f"\"eval\" {evaluation!r} is not an object of a batch_size in 1..{MAX_EVAL_BATCH} and a "
                  "channels_last switch")


CLASSIFIER_EXAMPLE = "--model lenet5 --data fashion-mnist"   # trains a run for the commands that take classifiers


def check_task(meta: dict, path, task: str, command: str, example: str) -> None:
    """UsageError unless `meta` describes a network of `task`: `visionzoo {command}` needs a run of it, and
    `example` is a training command that makes one."""
    found = meta.get("task", "classification")
    if found != task:
        raise UsageError(f"{path} holds a {found} network ({meta.get('name')}); `visionzoo {command}` needs a "
                         f"{task} run (e.g. {example})")


def check_data_fits(meta: dict, data, spec: str) -> None:
    """UsageError unless the data set `spec` (a loaded DataBundle) has the input channels and classes of
    the model `meta` describes (e.g. --data cifar10 for a network trained on grey images)."""
    channels = (meta.get("input_size") or [None])[0]
    found = data.input_size[0]
    if channels is not None and found != channels:
        raise UsageError(f"--data {spec}: its images have {found} channel(s), the network takes {channels}; "
                         "give a data set like the one it was trained on")
    classes = meta.get("classes")
    if classes and meta.get("task", "classification") == "classification" and len(data.classes) > len(classes):
        raise UsageError(f"--data {spec}: {len(data.classes)} classes, the network knows {len(classes)}")


def model_from_meta(meta: dict, where: str = "model.json", shapes: dict | None = None) -> nn.Module:
    """The untrained network that `model.json`'s description names, with the trained variant's modules.

    `meta` is checked (`check_meta`) and the network first built on the meta device: one of more than
    MAX_PARAMS elements, or whose state_dict differs from `shapes` (name → shape, e.g. read from a
    safetensors header), is refused before anything is allocated. A network whose modules depend on its
    training state (a Faster R-CNN saved with its unshared RPN backbone) makes them from the tensor names
    through its `adapt_to_weights(names)`.
    """
    check_meta(meta, where)
    with torch.device("meta"):
        skeleton = _adapted(_build(meta, where), shapes)
    state = skeleton.state_dict()
    elements = sum(tensor.numel() for tensor in state.values())
    if elements > MAX_PARAMS:
        raise DataError(f"{where}: the network it describes has {elements:,} elements, above the "
                        f"{MAX_PARAMS:,} a model file may ask for")
    if shapes is not None:
        _compare_shapes({name: tuple(tensor.shape) for name, tensor in state.items()}, shapes, where)
    return _adapted(_build(meta, where), shapes)


def _adapted(model: nn.Module, shapes: dict | None) -> nn.Module:
    adapt = getattr(model, "adapt_to_weights", None)
    if adapt is not None and shapes is not None:
        adapt(set(shapes))
    return model


def _build(meta: dict, where: str) -> nn.Module:
    from .registry import create_model
    try:
        model = create_model(meta["name"], **meta.get("kwargs", {}))
        if meta.get("options"):  # the trained variant's modules (--act, --norm, …)
            from .layers.variants import rebuild_model
            rebuild_model(model, meta["options"], meta.get("input_size"))
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise DataError(f"{where}: cannot build the network it describes ({str(exc).splitlines()[0]})") from None
    return model


def _compare_shapes(expected: dict, found: dict, where: str) -> None:
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        names = ", ".join((missing or unexpected)[:3])
        raise DataError(f"{where}: the weights {'lack' if missing else 'hold unexpected'} tensors such as {names}; "
                        "they belong to another network or settings")
    for name, shape in expected.items():
        if tuple(found[name]) != shape:
            raise DataError(f"{where}: {name} has shape {tuple(found[name])} in the weights but {shape} in the "
                            "network model.json describes")


def safetensors_shapes(path: Path) -> dict:
    """Tensor name → shape from a safetensors header, without reading a tensor."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except Exception as exc:  # safetensors' own errors: truncated or malformed header
        raise DataError(f"cannot read weights from {path}: {str(exc).splitlines()[0]}") from None


def read_meta(path: Path) -> dict:
    """A `model.json`, bounded in size and parsed; the caller checks its fields."""
    if path.stat().st_size > MAX_META_BYTES:
        raise DataError(f"{path}: larger than {MAX_META_BYTES >> 20} MB; not a visionzoo model description")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a visionzoo model description ({exc})") from None


# Readers of the other containers a trained model is saved in, by file suffix (a toolkit above
# adds its own: compress/fileformat.py registers ".vzc" when visionzoo is imported).
CHECKPOINT_READERS: dict[str, Callable[[Path], tuple[nn.Module, dict]]] = {}


def register_checkpoint_reader(suffix: str, read: Callable[[Path], tuple[nn.Module, dict]]) -> None:
    CHECKPOINT_READERS[suffix] = read


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from `model.json` + `model.safetensors` alone (run dir or file),
    or from another registered container such as `model.vzc` (a file or its directory)."""
    path = Path(path)
    for suffix, read in CHECKPOINT_READERS.items():
        if path.suffix == suffix or (path.is_dir() and (path / f"model{suffix}").exists()
                                     and not (path / "model.safetensors").exists()):
            return read(path)
    weights = path / "model.safetensors" if path.is_dir() else path
    meta_path = weights.with_name("model.json")
    if not weights.exists():
        raise UsageError(f"{weights} does not exist; give a run directory or its model.safetensors")
    if not meta_path.exists():
        beside = f" beside {weights}" if path.is_file() else ""
        raise UsageError(f"{meta_path} is missing{beside}: it says how to rebuild the model; give a run directory, "
                         "or the model.safetensors in one")
    meta = read_meta(meta_path)
    shapes = safetensors_shapes(weights) if weights.suffix == ".safetensors" else None
    model = model_from_meta(meta, str(meta_path), shapes)
    try:
        model.load_state_dict(read_state_dict(weights))
    except RuntimeError as exc:
        raise DataError(f"{weights} does not fit the network {meta_path} describes "
                        f"({str(exc).splitlines()[-1].strip()})") from None
    model.eval()
    return model, meta
