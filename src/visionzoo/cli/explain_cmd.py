"""`visionzoo explain CHECKPOINT --method …`: pictures of what a trained network computes.

Each method writes PNGs into --out and adds them to the directory's index.html; the papers behind
the methods are named in the modules of visionzoo.explain. `--method` takes one method or a
comma-separated list; `--metric` adds the deletion/insertion areas (Petsiuk et al. 2018) of every
saliency map made, next to those of a random map.
"""
from __future__ import annotations

import argparse
import sys
from functools import cached_property
from pathlib import Path

import torch

from ..core.errors import UsageError
from ..core.io import json_text
from ..core.options import argument, at_least, positive
from .arguments import add_data_dir, add_device, add_json, add_split
from .drawing import read_image_argument

METHODS = ("filters", "receptive-field", "patches", "occlusion", "cam", "gradcam", "guided", "saliency",
           "neighbours")


class _Session:
    """The checkpoint, the image being explained and the data set, loaded when first needed."""

    def __init__(self, args):
        from ..core.runtime import resolve_device
        from ..data.loader import Normalizer
        from ..weights import CLASSIFIER_EXAMPLE, check_task, load_checkpoint
        self.args = args
        self.model, self.meta = load_checkpoint(args.checkpoint)
        check_task(self.meta, args.checkpoint, "classification", "explain", CLASSIFIER_EXAMPLE)
        self.device = resolve_device(args.device)
        self.model.to(self.device)
        self.classes = self.meta.get("classes") or [str(i) for i in range(self.model.num_classes)]
        self.normalizer = Normalizer(self.meta["mean"], self.meta["std"])
        self.input_size = tuple(self.meta["input_size"])
        self.out = Path(args.out)
        self.scores: dict[str, dict] = {}
        self.curves: dict[str, dict] = {}

    @cached_property
    def data(self):
        from ..data.datasets import load_data, trained_data_args
        return load_data(self.meta["data"], data_dir=self.args.data_dir, lazy=True,
                         **trained_data_args(self.meta, self.meta["data"]))

    @cached_property
    def sample(self) -> tuple[torch.Tensor, int | None, str]:
        """(uint8 image (C, H, W), true label or None, where it came from)."""
        if self.args.image:
            return _read_image(self.args.image, self.input_size), None, Path(self.args.image).name
        split = self.data.split(self.args.split)
        index = self.args.index
        if not 0 <= index < len(split):
            raise UsageError(f"--index {index}: the {self.args.split} split has {len(split)} images "
                             f"(0..{len(split) - 1})")
        images, labels = split.fetch(torch.tensor([index]))
        return images[0], int(labels[0]), f"{self.args.split} image {index}"

    @cached_property
    def x(self) -> torch.Tensor:
        return self.normalizer(self.sample[0][None].to(self.device))

    @cached_property
    def probabilities(self) -> torch.Tensor:
        from ..explain.attribution import logits
        from ..explain.hooks import evaluating
        with evaluating(self.model), torch.no_grad():
            return torch.softmax(logits(self.model, self.x).float(), 1)[0].cpu()

    @cached_property
    def target(self) -> int:
        target = int(self.probabilities.argmax()) if self.args.target_class is None else self.args.target_class
        if not 0 <= target < len(self.classes):
            raise UsageError(f"--class {target}: the network has classes 0..{len(self.classes) - 1}")
        return target

    def title(self, method: str) -> str:
        predicted = int(self.probabilities.argmax())
        true = self.sample[1]
        return (f"{method} of '{self.classes[self.target]}' · predicted {self.classes[predicted]} "
                f"(p={self.probabilities[predicted]:.2f}) · true {self.classes[true] if true is not None else '?'}"
                f" · {self.sample[2]}")

    def batches(self, split: str):
        from ..explain.patches import normalised_batches
        return normalised_batches(self.data.split(split), self.normalizer, self.args.limit, 256, self.device)

    def field_rows(self):
        from ..explain.receptive import trace_receptive_fields
        return trace_receptive_fields(self.model, self.input_size)


def _read_image(path: str, input_size) -> torch.Tensor:
    from torchvision.transforms.v2.functional import resize

    channels, height, width = input_size
    return resize(read_image_argument(Path(path), channels), [height, width], antialias=True)


def _entry(file: str, method: str, caption: str, metrics: dict | None = None) -> dict:
    return {"file": file, "method": method, "caption": caption, **({"metrics": metrics} if metrics else {})}


def _saliency_entry(session, method: str, heatmap: torch.Tensor, file: str, label: str,
                    picture=None) -> dict:
    """Save the overlay (or the given picture), score the (H, W) map when --metric is set. A constant
    map ranks no pixel first: its caption says so and it gets no deletion/insertion areas."""
    from ..explain.attribution import is_constant
    from ..explain.render import save_heatmap
    constant = is_constant(heatmap)
    title = session.title(method) + (f" · CONSTANT MAP ({float(heatmap.max()):.3g} everywhere): it explains "
                                      "nothing" if constant else "")
    if picture is None:
        save_heatmap(session.out / file, session.sample[0], heatmap, title, label,
                     signed=bool(heatmap.min() < 0))
    else:
        picture(session.out / file, title)
    if not session.args.metric:
        return _entry(file, method, title)
    return _entry(file, method, title, {"constant": True} if constant else _score(session, method, heatmap))


def _score(session, method: str, heatmap: torch.Tensor) -> dict:
    """Deletion/insertion AUCs of one (H, W) map, kept with their curves for the report."""
    from ..explain.faithfulness import deletion_insertion
    metrics, curves = deletion_insertion(session.model, session.x, session.target, heatmap.to(session.device))
    session.scores[method] = metrics
    session.curves[method] = {mode: curve.tolist() for mode, curve in curves.items()}
    return metrics


def _filters(session) -> list[dict]:
    from torch import nn

    from ..explain.filters import first_layer_tiles, per_channel_tiles
    from ..explain.hooks import find_layer
    from ..explain.render import save_tiles
    if session.args.layer is None:
        name, conv = next(((n, m) for n, m in session.model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
        if conv is None:
            raise UsageError("the network has no Conv2d layer to show")
    else:
        name, conv = find_layer(session.model, session.args.layer)
        if not isinstance(conv, nn.Conv2d):
            raise UsageError(f"--layer {name} is a {type(conv).__name__}, not a Conv2d")
    first = name == next(n for n, m in session.model.named_modules() if isinstance(m, nn.Conv2d))
    title = f"{name}: {tuple(conv.weight.shape)} kernels"
    if first:  # colour kernels as colour pictures, grey ones signed around zero
        tiles = first_layer_tiles(conv)
        rows = [tiles[i:i + 12] for i in range(0, len(tiles), 12)]
        grey = conv.in_channels != 3
        labels = [f"kernels {i * 12}–{i * 12 + len(row) - 1}" for i, row in enumerate(rows)]
        save_tiles(session.out / f"filters-{name}.png", rows, labels, title,
                   cmap="coolwarm" if grey else "gray", symmetric=grey)
    else:
        rows = per_channel_tiles(conv)
        save_tiles(session.out / f"filters-{name}.png", rows, [f"out {i}" for i in range(len(rows))],
                   title + " (columns: input channels)", cmap="coolwarm", symmetric=True)
    return [_entry(f"filters-{name}.png", "filters", title)]


def _receptive_field(session) -> list[dict]:
    from ..explain.receptive import field_of_layer
    from ..explain.render import save_boxes
    rows = session.field_rows()
    if session.args.layer:
        chosen = [r for r in rows if r.name == session.args.layer]
        field_of_layer(rows, session.args.layer)  # a clear error when the layer has no map
    else:
        resampling = [r for r in rows if r.geometry is not None]
        most = min(12, len(resampling))  # spread over the depth, the deepest layer included
        chosen = [resampling[round(i * (len(resampling) - 1) / max(1, most - 1))] for i in range(most)]
    if not chosen:
        raise UsageError("no convolution or pooling layer was traced")
    boxes = []
    for row in chosen:
        unit = tuple(session.args.unit) if session.args.unit else (row.output[-2] // 2, row.output[-1] // 2)
        if not (0 <= unit[0] < row.output[-2] and 0 <= unit[1] < row.output[-1]):
            raise UsageError(f"--unit {unit[0]} {unit[1]}: {row.name} has a {row.output[-2]}×{row.output[-1]} map")
        size = "×".join(f"{v:g}" for v in dict.fromkeys(row.field.size))
        boxes.append((f"{row.name} unit {unit}: r={size}, j={row.field.jump[0]:g}", row.field.box(*unit)))
    which = f"unit {tuple(session.args.unit)}" if session.args.unit else "the centre unit"
    title = f"receptive fields of {which}, {session.sample[2]}"
    save_boxes(session.out / "receptive-field.png", session.sample[0], boxes, title)
    return [_entry("receptive-field.png", "receptive-field", title + ": " + "; ".join(b[0] for b in boxes))]


def _patches(session) -> list[dict]:
    from ..explain.hooks import capture, evaluating, find_layer
    from ..explain.patches import crop_to_field, top_activations
    from ..explain.receptive import field_of_layer
    from ..explain.render import save_tiles
    name, layer = find_layer(session.model, session.args.layer)
    field = field_of_layer(session.field_rows(), name)
    split = session.data.split(session.args.split)
    with evaluating(session.model), torch.no_grad(), capture(layer) as record:
        session.model(session.x)  # tells the layer's channel count
    if record.activation is None or record.activation.dim() != 4:
        raise UsageError(f"--layer {name} gives no feature map")
    count = record.activation.shape[1]
    channels = session.args.channel or list(range(min(8, count)))
    if not all(0 <= c < count for c in channels):
        raise UsageError(f"--channel: {name} has channels 0..{count - 1}")
    best = top_activations(session.model, layer, session.batches(session.args.split), channels)
    tiles, captions = [], []
    for channel in channels:
        row_tiles, row_captions = [], []
        for score, index, row, col in best[channel]:
            image, label = split.fetch(torch.tensor([index]))
            patch = crop_to_field(image[0], field, row, col).numpy()
            row_tiles.append(patch[0] if patch.shape[0] == 1 else patch[:3].transpose(1, 2, 0))
            row_captions.append(f"{session.classes[int(label[0])]} {score:.2g}")
        tiles.append(row_tiles)
        captions.append(row_captions)
    searched = min(len(split), session.args.limit)
    title = (f"{name}: top-{len(tiles[0])} {session.args.split} images per channel (of {searched}),"
             f" cropped to the {field.size[0]:g}-pixel receptive field")
    save_tiles(session.out / f"patches-{name}.png", tiles, [f"channel {c}" for c in channels], title, captions)
    return [_entry(f"patches-{name}.png", "patches", title)]


def _occlusion(session) -> list[dict]:
    from ..explain.occlusion import occlusion
    scores, sensitivity = occlusion(session.model, session.x, session.target, size=session.args.occluder)
    return [_saliency_entry(session, "occlusion", sensitivity, "occlusion.png",
                            f"drop in P(class) when covered ({scores.shape[0]}×{scores.shape[1]} squares)")]


def _cam(session) -> list[dict]:
    from ..explain.attribution import class_activation_map, upsample
    cam = upsample(class_activation_map(session.model, session.x, session.target), session.x.shape[-2:])
    return [_saliency_entry(session, "cam", cam.cpu(), "cam.png", "Σ_k w_k f_k (CAM)")]


def _gradcam(session) -> list[dict]:
    from ..explain.attribution import grad_cam, upsample
    from ..explain.hooks import find_layer
    name, _ = find_layer(session.model, session.args.layer)
    cam = upsample(grad_cam(session.model, session.x, session.target, name), session.x.shape[-2:])
    return [_saliency_entry(session, "gradcam", cam.cpu(), "gradcam.png", f"Grad-CAM of {name}")]


def _guided(session) -> list[dict]:
    from ..explain.attribution import grad_cam, guided_backprop, upsample
    from ..explain.hooks import find_layer
    from ..explain.render import save_gradient_image
    name, _ = find_layer(session.model, session.args.layer)
    guided = guided_backprop(session.model, session.x, session.target).cpu()
    cam = upsample(grad_cam(session.model, session.x, session.target, name), session.x.shape[-2:]).cpu()
    entries = []
    for method, gradient in (("guided", guided), ("guided-gradcam", guided * cam)):
        file = f"{method}.png"
        entries.append(_saliency_entry(
            session, method, gradient.abs().amax(0), file, "",
            picture=lambda path, title, g=gradient: save_gradient_image(path, session.sample[0], g, title)))
    return entries


def _saliency(session) -> list[dict]:
    from ..explain.attribution import saliency
    heatmap = saliency(session.model, session.x, session.target).cpu()
    return [_saliency_entry(session, "saliency", heatmap, "saliency.png", "max_c |∂y/∂x|")]


def _neighbours(session) -> list[dict]:
    from ..explain.hooks import evaluating
    from ..explain.neighbours import embed, embed_batches, nearest
    from ..explain.render import save_tiles
    train = session.data.train
    bank = embed_batches(session.model, session.batches("train"))
    queries = [(session.sample[0], session.sample[1], session.sample[2])]
    if not session.args.image:  # a few more test images make the picture of Krizhevsky et al. Fig. 4
        split = session.data.split(session.args.split)
        for index in range(session.args.index + 1, min(session.args.index + 5, len(split))):
            images, labels = split.fetch(torch.tensor([index]))
            queries.append((images[0], int(labels[0]), f"{session.args.split} image {index}"))
    with evaluating(session.model), torch.no_grad():
        features = embed(session.model, session.normalizer(torch.stack([q[0] for q in queries]).to(session.device)))
    distances, indices = nearest(features.cpu(), bank, k=6)
    show = lambda image: image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).numpy()
    tiles, captions = [], []
    for (image, label, _), row_d, row_i in zip(queries, distances, indices):
        found_images, found_labels = train.fetch(row_i)
        tiles.append([show(image)] + [show(found) for found in found_images])
        captions.append([f"query: {session.classes[label] if label is not None else '?'}"] +
                        [f"{session.classes[int(y)]} d={d:.2f}" for y, d in zip(found_labels, row_d)])
    title = f"nearest training images in pre-logit feature space (of {len(bank)})"
    save_tiles(session.out / "neighbours.png", tiles, [q[2] for q in queries], title, captions)
    return [_entry("neighbours.png", "neighbours", title)]


HANDLERS = {"filters": _filters, "receptive-field": _receptive_field, "patches": _patches,
            "occlusion": _occlusion, "cam": _cam, "gradcam": _gradcam, "guided": _guided,
            "saliency": _saliency, "neighbours": _neighbours}


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"--method {text!r}: choose from {', '.join(METHODS)} (comma-separated)")
    return methods


def _score_random(session) -> None:
    """The reference every saliency map must beat: a seeded random ranking of the pixels."""
    _score(session, "random", torch.rand(session.x.shape[-2:], generator=torch.Generator().manual_seed(0)))


def run_explain(args) -> int:
    from ..core.rundir import claim_output
    # one process at a time, and no temporary file of a killed run left; the pictures of several calls
    # gather in one index.html by design, so an existing directory is added to, not refused
    with claim_output(args.out, ()):
        return _explain(args)


def _explain(args) -> int:
    from ..explain.render import add_to_index, save_curves
    methods = _methods(args.method)
    if args.image and args.index_given:
        raise UsageError("give --image PATH or --index I, not both")
    for option, value in (("--limit", args.limit), ("--occluder", args.occluder)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be a positive number, got {value}")
    session = _Session(args)
    session.out.mkdir(parents=True, exist_ok=True)
    from ..explain.attribution import NotApplicable
    entries, skipped = [], {}
    for method in methods:
        try:
            entries += HANDLERS[method](session)
        except NotApplicable as exc:   # the other methods still run
            skipped[method] = str(exc)
    if not entries:
        raise UsageError(f"--method {args.method}: no method applies to this network ({'; '.join(skipped.values())})")
    for method, why in skipped.items():
        print(f"{method}: skipped: {why}", file=sys.stderr)
    if session.scores:
        _score_random(session)
        save_curves(session.out / "faithfulness.png", session.curves, session.title("deletion / insertion"))
        entries.append(_entry("faithfulness.png", "random",
                              "deletion (lower is better) and insertion (higher is better) curves of every "
                              "map; the table's row of this picture is a random map, the reference",
                              session.scores["random"]))
    add_to_index(session.out, entries, f"{session.meta['name']} on {session.meta['data']}: explanations", skipped)
    report = {"out": str(session.out), "files": [e["file"] for e in entries] + ["index.html"],
              "metrics": session.scores, "skipped": skipped}
    if args.json:
        print(json_text(report))
    else:
        for entry in entries:
            print(f"{session.out / entry['file']}: {entry['caption']}")
        for method, scores in session.scores.items():
            print(f"{method:<16} deletion AUC {scores['deletion_auc']:.4f} (lower is better)  "
                  f"insertion AUC {scores['insertion_auc']:.4f} (higher is better)")
        print(f"open {session.out / 'index.html'}")
    return 0


class _IndexAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        namespace.index = values
        namespace.index_given = True


def add_commands(commands) -> None:
    p = commands.add_parser("explain", help="explain a trained checkpoint: filters, receptive fields, "
                                            "patches, occlusion, CAM, Grad-CAM, guided, saliency, neighbours")
    p.add_argument("checkpoint", help="run directory or its model.safetensors")
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}, or a comma-separated list "
                                                   "(e.g. occlusion,cam,gradcam,guided,saliency --metric)")
    p.add_argument("--image", metavar="PATH", help="explain this image file (resized to the network's input)")
    p.add_argument("--index", type=argument(int, at_least(0)), default=0, action=_IndexAction, metavar="I",
                   help="explain this image of --split (default 0)")
    add_split(p, help="split of --index and of the top-activating patches (default test)")
    p.add_argument("--class", dest="target_class", type=argument(int, at_least(0)), metavar="K", help="class to explain (default: the predicted one)")
    p.add_argument("--layer", metavar="NAME", help="module name (default: the last Conv2d; the first for filters)")
    p.add_argument("--unit", type=int, nargs=2, metavar=("ROW", "COL"),
                   help="receptive-field: the unit of --layer to draw (default: the centre of each map)")
    p.add_argument("--channel", type=int, action="append", metavar="C", help="channel for patches, repeatable (default 0..7)")
    p.add_argument("--occluder", type=argument(int, positive), metavar="SIDE", help="side of the grey occluding square (default a quarter of the image)")
    p.add_argument("--metric", action="store_true", help="deletion / insertion AUC of every saliency map")
    p.add_argument("--limit", type=argument(int, positive), default=10000, metavar="N",
                   help="images searched for patches and neighbours (default 10000)")
    add_data_dir(p)
    add_device(p)
    add_json(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the PNGs and index.html")
    p.set_defaults(run=run_explain, index_given=False)
