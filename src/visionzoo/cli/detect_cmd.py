"""`visionzoo detect RUN`: a trained detector's boxes drawn on images, with the detections as JSON, and
`eval` for detection runs (`map50`, `map`, `voc07_map`, AP per class).

`detect` runs on images of the run's data set (`--index`, repeatable; the first eight of the
test split by default) or on image files (`--image`, resized to the network's input size, the
boxes mapped back to the file's pixels) and writes, into `--out`, one PNG per image with its
labelled, scored boxes above `--score-threshold` (and, for data set images, the true boxes
dashed) and `detections.json` (boxes as x1 y1 x2 y2 in the image's pixels, class names, scores).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UsageError
from ..core.rundir import make_directory
from .drawing import add_drawing_arguments, chosen_indices, load_run_of_task, read_image_argument
from .report import measures_text, print_evaluation


def _fast_rcnn_refused(meta: dict, what: str) -> None:
    if meta.get("proposals"):
        raise UsageError(f"{meta['name']} is a Fast R-CNN: it needs region proposals for every image; {what} "
                         "is for detectors with an RPN (faster_rcnn_*); `eval` computes its proposals")


def run_detection_eval(args, model, meta: dict) -> int:
    """`visionzoo eval` of a detection run: mAP in the three styles and AP per class on a split."""
    from ..data.detection import load_detection_data
    from ..data.loader import Normalizer
    from ..tasks.detection import evaluate, split_proposals
    from .evaluate_cmd import trained_data
    model, device, spec, data, classes = trained_data(args, model, meta, load_detection_data)
    split = data.split(args.split)
    proposals = split_proposals(split, meta["proposals"], args.split) if meta.get("proposals") else None
    result = evaluate(model, split, Normalizer(meta["mean"], meta["std"]), classes=classes, proposals=proposals,
                      batch_size=args.batch_size or meta.get("eval", {}).get("batch_size", 64), device=device,
                      channels_last=meta.get("eval", {}).get("channels_last", False),
                      score_threshold=meta.get("score_threshold", 0.05))
    result = {"split": args.split, "n": result["n"], "map50": result["map50"], "voc07_map": result["voc07_map"],
              "map": result["map"], "loss": result["loss"], "ap_per_class": result["ap_per_class"],
              "detections": result["detections"], "model": meta["name"], "data": spec}
    rows = {name: "no true boxes in this split" if ap is None else f"AP50 {ap:.4f}"
            for name, ap in result["ap_per_class"].items()}
    return print_evaluation(args, result, "images", measures_text(result, "map50", "map", "voc07_map", "loss"), rows)


def _resized(image, size: tuple[int, int]):
    """The image resized to the network's input size (antialiased bilinear) and the (sx, sy) that maps
    boxes on it back to the file's pixels."""
    import torch.nn.functional as F
    height, width = image.shape[-2:]
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].round().clamp(0, 255).byte(), (width / size[1], height / size[0])


def run_detect(args) -> int:
    import torch

    from ..core.io import write_json
    from ..core.runtime import evaluating, resolve_device
    from ..data.loader import Normalizer
    from ..tasks.detection import plot_detections
    device = resolve_device(args.device)
    model, meta = load_run_of_task(args.run_dir, device, "detection", "detect",
                                   "--model faster_rcnn_small --data fmnist-scenes")
    _fast_rcnn_refused(meta, "`detect`")
    classes, (channels, height, width) = meta["classes"], meta["input_size"]
    normalizer = Normalizer(meta["mean"], meta["std"])
    threshold = meta.get("score_threshold", 0.05) if args.score_threshold is None else args.score_threshold
    if args.image:
        items = []
        for path in args.image:
            image, scale = _resized(read_image_argument(Path(path), channels), (height, width))
            items.append((Path(path).stem, image, None, scale))
    else:
        from ..data.detection import load_detection_data
        data = load_detection_data(meta["data"], data_dir=args.data_dir, **dict(meta.get("data_args", {})))
        split = data.split(args.split)
        indices = chosen_indices(args, split)
        images, targets = split.fetch(torch.tensor(indices))
        items = [(f"{args.split}_{i}", images[k], targets[k], (1.0, 1.0)) for k, i in enumerate(indices)]
    out = make_directory(args.out)
    report = []
    with torch.no_grad(), evaluating(model):
        for name, image, truth, (sx, sy) in items:
            found = model(normalizer(image[None].to(device), meta.get("eval", {}).get("channels_last", False)))[0]
            keep = found["scores"] >= threshold
            found = {key: value[keep].float().cpu() if key != "labels" else value[keep].cpu()
                     for key, value in found.items() if key in ("boxes", "labels", "scores")}
            plot_detections(image[None].cpu(), [found], classes, out / f"{name}.png",
                            f"{meta['name']}: {name}", truths=None if truth is None else [truth],
                            score_threshold=threshold)
            scale = torch.tensor([sx, sy, sx, sy])
            report.append({"name": name, "picture": f"{name}.png", "detections": [
                {"box": [round(v, 2) for v in (box * scale).tolist()], "label": classes[label - 1],
                 "score": round(score, 4)}
                for box, label, score in zip(found["boxes"], found["labels"].tolist(), found["scores"].tolist())]})
    write_json(out / "detections.json", {"model": meta["name"], "classes": classes, "score_threshold": threshold,
                                         "images": report})
    if args.json:
        print(json.dumps({"out": str(out), "images": report}))
    else:
        count = sum(len(entry["detections"]) for entry in report)
        print(f"{count} detections on {len(report)} images in {out} (detections.json, one PNG per image)")
    return 0


def add_commands(commands) -> None:
    from ..core.options import argument, at_least
    p = commands.add_parser("detect", help="draw a detection run's boxes on images, with the detections as JSON")
    p.add_argument("run_dir", metavar="RUN", help="run directory (or model.safetensors) of a detector")
    add_drawing_arguments(p, "the PNGs and detections.json")
    p.add_argument("--score-threshold", type=argument(float, at_least(0)), metavar="S",
                   help="draw and list detections scoring at least S (default: the run's)")
    p.set_defaults(run=run_detect)
