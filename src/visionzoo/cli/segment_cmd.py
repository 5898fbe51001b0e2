"""`visionzoo segment RUN`: a trained segmentation network's masks drawn over images, and `eval` for
segmentation runs.

`segment` labels test images of the run's data set (`--index`, repeatable; the first eight by
default) or image files (`--image`, any size: a network without padding predicts through the
overlap-tile strategy, a padded one on the reflection-padded image) and writes, into `--out`,
one PNG per image with the image, the true mask (data set images) and the predicted mask side by
side, the predicted index masks as palette PNGs (`masks/`), and `index.html` linking them.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

from ..core.rundir import make_directory
from .drawing import add_drawing_arguments, chosen_indices, load_run_of_task, read_image_argument
from .report import measures_text, print_evaluation


def run_segmentation_eval(args, model, meta: dict) -> int:
    """`visionzoo eval` of a segmentation run: loss, Dice, IoU, pixel accuracy, per class."""
    from ..data.loader import Normalizer
    from ..data.segmentation import load_segmentation_data
    from ..tasks.segmentation import evaluate, finite_or_none
    from .evaluate_cmd import trained_data
    model, device, spec, data, classes = trained_data(args, model, meta, load_segmentation_data)
    result = evaluate(model, data.split(args.split), Normalizer(meta["mean"], meta["std"]),
                      num_classes=len(classes), batch_size=args.batch_size or meta.get("eval", {}).get("batch_size", 64),
                      device=device, channels_last=meta.get("eval", {}).get("channels_last", False))
    result = {"split": args.split, "n": result["n"], "dice": result["dice"], "iou": result["iou"],
              "pixel_acc": result["pixel_acc"], "loss": result["loss"],
              "dice_per_class": dict(zip(classes, finite_or_none(result["dice_per_class"]))),
              "iou_per_class": dict(zip(classes, finite_or_none(result["iou_per_class"]))),
              "model": meta["name"], "data": spec}
    rows = {name: "undefined (in neither truth nor prediction)" if dice is None else f"dice {dice:.4f}  iou {iou:.4f}"
            for (name, dice), iou in zip(result["dice_per_class"].items(), result["iou_per_class"].values())}
    return print_evaluation(args, result, "images", measures_text(result, "dice", "iou", "pixel_acc", "loss"), rows)


def _write_mask(path: Path, mask) -> None:
    import torch
    from PIL import Image

    from ..core.io import write_atomic
    from ..tasks.segmentation import MASK_COLOURS
    image = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    image.putpalette(MASK_COLOURS.flatten().tolist())
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def run_segment(args) -> int:
    import torch

    from ..core.io import write_json, write_text
    from ..core.runtime import evaluating, resolve_device
    from ..data.loader import Normalizer
    from ..data.segmentation import load_segmentation_data
    from ..metrics import confusion_matrix, scores_from_confusion
    from ..tasks.segmentation import finite_or_none, plot_segmentations, predict
    device = resolve_device(args.device)
    model, meta = load_run_of_task(args.run_dir, device, "segmentation", "segment",
                                   "--model unet_small --data lv-phantom")
    classes, channels = meta["classes"], meta["input_size"][0]
    normalizer = Normalizer(meta["mean"], meta["std"])
    if args.image:
        items = [(Path(p).stem, read_image_argument(Path(p), channels), None) for p in args.image]
    else:
        data = load_segmentation_data(meta["data"], data_dir=args.data_dir, **dict(meta.get("data_args", {})))
        split = data.split(args.split)
        indices = chosen_indices(args, split)
        images, masks = split.fetch(torch.tensor(indices))
        items = [(f"{args.split}_{i}", images[k], masks[k]) for k, i in enumerate(indices)]
    out = make_directory(args.out)
    report = []
    with torch.no_grad(), evaluating(model):
        for name, image, truth in items:
            x = normalizer(image[None].to(device), meta.get("eval", {}).get("channels_last", False))
            predicted = predict(model, x).argmax(1)[0].cpu()
            entry = {"name": name, "picture": f"{name}.png", "mask": f"masks/{name}.png",
                     "size": list(image.shape[-2:])}
            title = f"{meta['name']}: {name}"
            if truth is not None:
                scores = scores_from_confusion(confusion_matrix(predicted, truth, len(classes)))
                entry.update(dice=None if math.isnan(scores["dice"]) else scores["dice"],
                             dice_per_class=dict(zip(classes, finite_or_none(scores["dice_per_class"]))))
                title += f" (Dice {scores['dice']:.3f})" if entry["dice"] is not None else ""
            plot_segmentations(image[None], None if truth is None else truth[None], predicted[None], classes,
                               out / entry["picture"], title)
            _write_mask(out / entry["mask"], predicted)
            report.append(entry)
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(e["picture"])}"><img src="{html.escape(e["picture"])}" height="220"></a></td>'
        f'<td>{html.escape(e["name"])}<br>{e["size"][0]}×{e["size"][1]} px<br>'
        f'{"Dice %.4f" % e["dice"] if e.get("dice") is not None else ""}<br>'
        f'<a href="{html.escape(e["mask"])}">predicted mask (palette PNG)</a></td></tr>' for e in report)
    write_text(out / "index.html", f"<!doctype html><meta charset='utf-8'><title>{html.escape(meta['name'])} "
               f"segmentations</title><h1>{html.escape(meta['name'])}: {len(report)} images</h1>"
               f"<p>classes: {html.escape(', '.join(classes))}</p><table>{rows}</table>\n")
    write_json(out / "segmentations.json", {"model": meta["name"], "classes": classes, "images": report})
    if args.json:
        print(json.dumps({"out": str(out), "images": report}))
    else:
        print(f"{len(report)} segmentations in {out}; open {out / 'index.html'}")
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("segment", help="draw a segmentation run's predicted masks over images")
    p.add_argument("run_dir", metavar="RUN", help="run directory (or model.safetensors) of a segmentation network")
    add_drawing_arguments(p, "the PNGs and index.html")
    p.set_defaults(run=run_segment)
