"""`compress(checkpoint, method, out)`: one compression method applied to a trained checkpoint.

Methods (each followed by retraining with the zoo's trainer, `retrain.py`):
- ``prune``: magnitude pruning, iterative with the dropout-ratio adjustment (Han et al. 2015),
  stored as CSR with relative indices (Deep Compression Sec. 2);
- ``deep``: the Deep Compression pipeline (Han, Mao, Dally, ICLR 2016, Fig. 1): pruning →
  trained quantisation with weight sharing → Huffman coding, in the sparse format;
- ``kmeans``: weight sharing alone (dense codes; Deep Compression Sec. 3);
- ``binarize``: BWN or XNOR-Net (Rastegari et al., ECCV 2016);
- ``ternary``: TWN (Li & Liu 2016) or TTQ (Zhu et al., ICLR 2017), 2 bits per weight;
- ``channels``: whole filters removed (Li et al., ICLR 2017);
- ``distill``: a smaller zoo network trained on the checkpoint's soft targets (Hinton et al. 2015).

The result is `model.vzc` (`fileformat.py`), which `visionzoo eval` and `load_checkpoint` read
back as a dense model, and a report: per weight layer its parameters, non-zeros, sparsity,
distinct values, MACs (dense and on the non-zeros only), bytes as float32 and as stored, and the
notes' compression rate r = nb / (n log₂ k + kb) (Deep Compression Eq. 1, b = 32) next to the
actual ratio; for the whole model the same counts and the accuracies before and after on the
test split, the compressed accuracy measured on the model decoded from the written file.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.options import set_away_from_default
from ..core.profile import count_macs, count_params, layer_table
from . import prune as pruning
from .fileformat import LayerCoding, load_compressed, save_compressed
from .quantize import INITS, CentroidHook, layer_bits, share_weights
from .retrain import RetrainSettings, retrain, run_trainer

PRUNING = ("sparsity", "layer_sparsity", "iterations", "sensitivity")
SPARSE_STORAGE = ("conv_index_bits", "fc_index_bits", "huffman")
SHARING = ("conv_bits", "fc_bits", "init", "finetune_epochs", "finetune_lr", "huffman")
# the options (fields of `Options`) each method reads besides the retraining's; another method's is refused
METHOD_OPTIONS = {"prune": PRUNING + SPARSE_STORAGE, "deep": PRUNING + SPARSE_STORAGE + SHARING, "kmeans": SHARING,
                  "binarize": ("mode",), "ternary": ("ternary_mode",), "distill": ("student", "temperature", "alpha"),
                  "channels": ("channel_ratio",)}
METHODS = tuple(METHOD_OPTIONS)
# kmeans fine-tunes the centroids instead of retraining: --finetune-epochs and --finetune-lr replace these
NOT_RETRAINED = {"kmeans": ("epochs", "lr", "optimizer")}
SENSITIVITY_LEVELS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


@dataclass
class Options:
    """Everything a method can be asked for; `visionzoo compress --help` documents each."""
    sparsity: float = 0.9
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    iterations: int = 1
    sensitivity: bool = False
    scan_limit: int = 2000
    conv_bits: int = 8
    fc_bits: int = 5
    conv_index_bits: int = 8
    fc_index_bits: int = 5
    init: str = "linear"
    finetune_epochs: int = 1
    finetune_lr: float = 1e-3
    finetune_optimizer: str = "sgd"
    huffman: bool = True
    mode: str = "bwn"
    ternary_mode: str = "twn"
    channel_ratio: float = 0.5
    student: str | None = None
    temperature: float = 4.0
    alpha: float = 0.9
    retrain: RetrainSettings = field(default_factory=RetrainSettings)

    def validate(self, method: str) -> None:
        if method not in METHODS:
            raise UsageError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
        for key in ("conv_bits", "fc_bits", "conv_index_bits", "fc_index_bits"):
            if not 1 <= getattr(self, key) <= 16:
                raise UsageError(f"--{key.replace('_', '-')} must lie in 1..16, got {getattr(self, key)}")
        if self.init not in INITS:
            raise UsageError(f"--init {self.init!r}: choose one of {', '.join(INITS)}")
        if not 0 <= self.sparsity < 1:
            raise UsageError(f"--sparsity must lie in [0, 1), got {self.sparsity}")
        if not 0 < self.channel_ratio < 1:
            raise UsageError(f"--channel-ratio must lie in (0, 1), got {self.channel_ratio}")
        if self.iterations < 1:
            raise UsageError(f"--iterations must be at least 1, got {self.iterations}")
        if self.mode not in ("bwn", "xnor"):
            raise UsageError(f"--mode {self.mode!r}: choose bwn or xnor")
        if self.ternary_mode not in ("twn", "ttq"):
            raise UsageError(f"--ternary-mode {self.ternary_mode!r}: choose twn or ttq")
        self._refuse_other_methods_options(method)
        if method == "distill":
            self._validate_student()
        if not 0 < self.temperature:
            raise UsageError(f"--temperature must be positive, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise UsageError(f"--alpha must lie in [0, 1], got {self.alpha}")

    def _refuse_other_methods_options(self, method: str) -> None:
        """An option only other methods read, set away from its default, is refused, not ignored."""
        others = [name for name in dict.fromkeys(name for names in METHOD_OPTIONS.values() for name in names)
                  if name not in METHOD_OPTIONS[method]]
        for name in set_away_from_default(self, others):
            users = [other for other, names in METHOD_OPTIONS.items() if name in names]
            flag = "no-huffman" if name == "huffman" else name.replace("_", "-")
            raise UsageError(f"--{flag} is an option of --method {', '.join(users)}; --method {method} does "
                             "not use it: leave it out")
        for name in set_away_from_default(self.retrain, NOT_RETRAINED.get(method, ())):
            raise UsageError(f"--{name}: --method {method} does not retrain; its centroid fine-tuning takes "
                             "--finetune-epochs and --finetune-lr")

    def _validate_student(self) -> None:
        from ..registry import get_entry
        if not self.student:
            raise UsageError("--method distill needs --student NAME, the smaller zoo network to train")
        try:
            get_entry(self.student)
        except ValueError as exc:
            raise UsageError(f"--student: {exc}") from None
        if self.retrain.epochs < 1:
            raise UsageError("--method distill trains the student: give --epochs 1 or more")


@dataclass
class Compressed:
    model: nn.Module
    meta: dict
    codings: dict[str, LayerCoding] = field(default_factory=dict)
    transforms: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    history: list = field(default_factory=list)


def _targets(model, options: Options) -> dict[str, float]:
    try:
        return pruning.resolve_targets(model, options.sparsity, options.layer_sparsity)
    except ValueError as exc:
        raise UsageError(f"--sparsity/--layer-sparsity: {exc}") from None


def _index_bits(layer, options: Options) -> int:
    return options.conv_index_bits if pruning.is_conv(layer) else options.fc_index_bits


def _prune_and_retrain(model, meta, options: Options, accuracy) -> tuple[dict, dict, list]:
    targets = _targets(model, options)
    details = {"targets": targets}
    if options.sensitivity:
        details["sensitivity"] = {"sparsities": list(SENSITIVITY_LEVELS),
                                  "top1": pruning.sensitivity_scan(model, accuracy, SENSITIVITY_LEVELS)}
    original_dropout = pruning.dropout_ratios(model)
    connections = {n: m.weight.numel() for n, m in pruning.weight_layers(model).items()}
    history, masks = [], {}
    for step_targets in pruning.schedule(targets, options.iterations):
        masks = pruning.prune(model, step_targets)
        details["dropout"] = pruning.adjust_dropout(model, original_dropout, connections)
        history += retrain(model, meta, options.retrain, [pruning.MaskHook(model, masks)])
    return masks, details, history


def _prune(model, meta, options, accuracy) -> Compressed:
    _, details, history = _prune_and_retrain(model, meta, options, accuracy)
    layers = pruning.weight_layers(model)
    codings = {n: LayerCoding("sparse", sparse=True, index_bits=_index_bits(layers[n], options),
                              huffman=options.huffman)
               for n, s in details["targets"].items() if s > 0}
    return Compressed(model, meta, codings, details=details, history=history)


def _weight_histogram(weight: torch.Tensor, keep, bins: int = 80) -> dict:
    values = (weight.detach()[keep] if keep is not None else weight.detach().flatten()).float().cpu()
    counts = torch.histc(values, bins, values.min().item(), values.max().item())
    return {"low": values.min().item(), "high": values.max().item(), "counts": counts.int().tolist()}


def _share(model, meta, options: Options, masks) -> tuple[dict, list, dict]:
    """Weight sharing and centroid fine-tuning; also returns, per layer, the histogram of the weights
    before sharing and the codebook before and after fine-tuning (Deep Compression Figs. 4 and 6)."""
    layers = pruning.weight_layers(model)
    histograms = {n: _weight_histogram(layer.weight, (masks or {}).get(n)) for n, layer in layers.items()}
    shared = share_weights(model, options.conv_bits, options.fc_bits, options.init, masks,
                           seed=options.retrain.seed)
    initial = {n: s.codebook.tolist() for n, s in shared.items()}
    history = retrain(model, meta, finetune_settings(options), [CentroidHook(model, shared)])
    codebooks = {}
    for name, s in shared.items():
        codes = s.codes.flatten()
        used = torch.unique(codes)  # a centroid that attracted no weight has no value to read back
        # every weight of a cluster holds its centroid, so scattering them by code reads the codebook
        final = torch.zeros(len(s.codebook)).scatter_(0, codes.cpu(), layers[name].weight.detach().flatten().cpu())
        codebooks[name] = {"initial": [initial[name][c] for c in used.tolist()], "final": final[used].tolist(),
                           "histogram": histograms[name], "reserved_zero": s.reserved_zero}
    codings = {n: LayerCoding("shared", sparse=s.reserved_zero,
                              bits=layer_bits(layers[n], options.conv_bits, options.fc_bits),
                              index_bits=_index_bits(layers[n], options), huffman=options.huffman)
               for n, s in shared.items()}
    return codings, history, codebooks


def finetune_settings(options: Options) -> RetrainSettings:
    """Centroid fine-tuning's trainer settings. By default plain SGD without momentum or weight
    decay, which with `CentroidHook` is Deep Compression's update (Sec. 3.3): every centroid moves
    by −η times the summed gradient of its weights."""
    plain = options.finetune_optimizer == "sgd"
    return dataclasses.replace(options.retrain, epochs=options.finetune_epochs, lr=options.finetune_lr,
                               optimizer=options.finetune_optimizer, weight_decay=0.0,
                               momentum=0.0 if plain else options.retrain.momentum)


def _deep(model, meta, options, accuracy) -> Compressed:
    masks, details, history = _prune_and_retrain(model, meta, options, accuracy)
    masks = {n: m for n, m in masks.items() if details["targets"][n] > 0}
    codings, finetune_history, codebooks = _share(model, meta, options, masks)
    details.update(init=options.init, conv_bits=options.conv_bits, fc_bits=options.fc_bits, codebooks=codebooks)
    return Compressed(model, meta, codings, details=details, history=history + finetune_history)


def _kmeans(model, meta, options, accuracy) -> Compressed:
    codings, history, codebooks = _share(model, meta, options, None)
    details = {"init": options.init, "conv_bits": options.conv_bits, "fc_bits": options.fc_bits,
               "codebooks": codebooks}
    return Compressed(model, meta, codings, details=details, history=history)


def _binarize(model, meta, options, accuracy) -> Compressed:
    from ..layers.binary import binarize, weight_memory_bits
    from .binarize import binary_layer_names, materialize
    bits_before = weight_memory_bits(model)
    binarize(model, options.mode)
    history = retrain(model, meta, options.retrain)
    materialize(model)
    codings = {n: LayerCoding("binary") for n in binary_layer_names(model)}
    details = {"mode": options.mode, "binary_layers": list(codings),
               "weight_bits_before": bits_before, "weight_bits_after": weight_memory_bits(model),
               "memory_saving": bits_before / weight_memory_bits(model)}
    return Compressed(model, meta, codings, [["binarize", options.mode]], details, history)


def _ternary(model, meta, options, accuracy) -> Compressed:
    from ..layers.ternary import ternarize, weight_memory_bits
    from .ternary import materialize, ternary_layer_names
    bits_before = weight_memory_bits(model)
    ternarize(model, options.ternary_mode)
    history = retrain(model, meta, options.retrain)
    scales = materialize(model)
    codings = {n: LayerCoding("ternary") for n in ternary_layer_names(model)}
    details = {"ternary_mode": options.ternary_mode, "ternary_layers": scales,
               "weight_bits_before": bits_before, "weight_bits_after": weight_memory_bits(model),
               "memory_saving": bits_before / weight_memory_bits(model)}
    return Compressed(model, meta, codings, [["ternarize", options.ternary_mode]], details, history)


def _channels(model, meta, options, accuracy) -> Compressed:
    from .channels import prune_channels
    plan = prune_channels(model, options.channel_ratio, meta["input_size"])
    history = retrain(model, meta, options.retrain)
    details = {"channel_ratio": options.channel_ratio,
               "kept_filters": {producer: kept for producer, _, _, kept in plan}}
    return Compressed(model, meta, transforms=[["channels", plan]], details=details, history=history)


def _distill(model, meta, options, checkpoint) -> Compressed:
    trainer = run_trainer(meta, options.retrain, model=options.student, model_args={},
                          teacher=str(checkpoint), kd_temperature=options.temperature, kd_alpha=options.alpha)
    details = {"student": options.student, "teacher": meta["name"], "temperature": options.temperature,
               "alpha": options.alpha, "teacher_params": count_params(model)}
    return Compressed(trainer.model, trainer.model_meta(), details=details, history=trainer.history)


def compression_rate(n: int, k: int, b: int = 32) -> float:
    """The notes' r = nb / (n log₂ k + kb): n weights of b bits against log₂ k-bit codes and k b-bit values."""
    return n * b / (n * math.log2(k) + k * b)


def layer_report(model: nn.Module, input_size, codings: dict[str, LayerCoding], stored: dict[str, int]
                 ) -> list[dict]:
    """One row per weight layer: counts, MACs, bytes as float32 and as stored, r next to actual."""
    layers = pruning.weight_layers(model)
    depth = max((name.count(".") + 1 for name in layers), default=1)
    macs = {row["layer"]: row["macs"] for row in layer_table(model, input_size, depth)}
    rows = []
    for name, layer in layers.items():
        weight = layer.weight.detach()
        n, nonzero = weight.numel(), int(torch.count_nonzero(weight))
        coding = codings.get(name, LayerCoding())
        row = {"layer": name, "type": type(layer).__name__, "shape": list(weight.shape), "params": n,
               "nonzero": nonzero, "sparsity": 1 - nonzero / n, "storage": coding.kind,
               "distinct_values": int(torch.unique(weight).numel()),
               "macs": macs.get(name, 0), "macs_nonzero": round(macs.get(name, 0) * nonzero / n),
               "bytes_float32": 4 * n, "bytes_stored": stored[name + ".weight"]}
        row["ratio_actual"] = row["bytes_float32"] / row["bytes_stored"]
        if coding.kind == "shared":
            row.update(bits=coding.bits, k=1 << coding.bits,
                       rate_formula=compression_rate(n, 1 << coding.bits))
        if coding.sparse:
            row["index_bits"] = coding.index_bits
        rows.append(row)
    return rows


def _weights_bytes(checkpoint: Path) -> int:
    path = Path(checkpoint)
    for name in ("model.safetensors", "model.vzc"):
        if path.is_dir() and (path / name).exists():
            return (path / name).stat().st_size
    return path.stat().st_size


def compress(checkpoint, method: str, out, options: Options | None = None) -> dict:
    """Compress a trained checkpoint into `out`/model.vzc; returns the report (compress.json)."""
    from ..core.io import write_json
    from ..core.runtime import resolve_device
    from ..data.datasets import load_data
    from ..data.loader import Normalizer
    from ..tasks.classification import evaluate
    from ..weights import CLASSIFIER_EXAMPLE, check_task, load_checkpoint
    from .plots import plot_report
    options = options or Options()
    options.validate(method)
    model, meta = load_checkpoint(checkpoint)
    check_task(meta, checkpoint, "classification", "compress", CLASSIFIER_EXAMPLE)
    device = resolve_device(options.retrain.device)
    data_args = meta.get("data_args", {})
    data = load_data(meta["data"], data_dir=options.retrain.data_dir, val_size=data_args.get("val_size", 5000),
                     seed=data_args.get("seed", 0), image_size=data_args.get("image_size"))
    normalizer = Normalizer(meta["mean"], meta["std"])

    def accuracy(network, split=data.test):
        return evaluate(network.to(device), split, normalizer, device=device)["top1"]

    scan_split = data.val.take(torch.arange(min(options.scan_limit, len(data.val))))
    input_size = tuple(meta["input_size"])
    params_before, macs_before = count_params(model), count_macs(model, input_size)
    top1_before = accuracy(model)
    steps = {"prune": _prune, "deep": _deep, "kmeans": _kmeans, "binarize": _binarize, "ternary": _ternary,
             "channels": _channels}
    if method == "distill":
        result = _distill(model, meta, options, checkpoint)
    else:
        result = steps[method](model, meta, options, lambda network: accuracy(network, scan_split))
    out = Path(out)
    descriptors = save_compressed(out / "model.vzc", result.model.cpu(), result.meta, result.codings,
                                  result.transforms)
    stored = {d["name"]: d["bytes"] for d in descriptors}
    decoded, _ = load_compressed(out / "model.vzc")
    input_size = tuple(result.meta["input_size"])
    params = count_params(decoded)
    nonzero = sum(int(torch.count_nonzero(p)) for p in decoded.parameters())
    macs_after = count_macs(decoded, input_size)
    layers = layer_report(decoded, input_size, result.codings, stored)
    report = {"method": method, "checkpoint": str(checkpoint), "model": result.meta["name"],
              "data": meta["data"], "params": params, "nonzero": nonzero, "sparsity": 1 - nonzero / params,
              "params_before": params_before, "param_reduction": params_before / max(nonzero, 1),
              "top1_before": top1_before, "top1_after": accuracy(decoded),
              "bytes_before": _weights_bytes(checkpoint), "bytes_after": (out / "model.vzc").stat().st_size,
              "macs_before": macs_before, "macs_after": macs_after,
              "macs_nonzero_after": macs_after - sum(r["macs"] - r["macs_nonzero"] for r in layers),
              "layers": layers, "details": result.details,
              "retraining": [{**record, "epoch": i + 1, "stage_epoch": record["epoch"]}
                             for i, record in enumerate(result.history)],
              "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "retrain"}
              | {"retrain": dataclasses.asdict(options.retrain)}}
    report["compression_ratio"] = report["bytes_before"] / report["bytes_after"]
    report["plots"] = plot_report(report, out)
    write_json(out / "compress.json", report)
    return report
