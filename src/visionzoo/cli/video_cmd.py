"""`visionzoo eval` of a video run (task "video"): top-1/top-5 accuracy, loss and per-class top-1 of a
trained clip classifier on a split of its video data set (data/video.py), as text or one JSON object."""
from __future__ import annotations

import json


def run_video_eval(args, model, meta: dict) -> int:
    """A video run's model and model.json (weights.load_checkpoint) evaluated on a split of its data."""
    from ..data.video import ClipNormalizer, load_video_data
    from ..tasks.classification import evaluate
    from .evaluate_cmd import trained_data
    model, device, spec, data, classes = trained_data(args, model, meta, load_video_data)
    normalizer = ClipNormalizer(meta["mean"], meta["std"], meta.get("clip_frames"))
    result = evaluate(model, data.split(args.split), normalizer, device=device, num_classes=len(classes),
                      batch_size=args.batch_size or meta.get("eval", {}).get("batch_size", 500), quiet=args.quiet)
    result = {"split": args.split, "n": result["n"], "top1": result["top1"], "top5": result["top5"],
              "loss": result["loss"], "per_class_top1": dict(zip(classes, result["per_class_top1"])),
              "model": meta["name"], "data": spec}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{meta['name']} on {spec} {args.split} ({result['n']} clips): top1 {result['top1']:.4f}  "
          f"top5 {result['top5']:.4f}  loss {result['loss']:.4f}")
    width = max(len(name) for name in classes)
    for name, accuracy in result["per_class_top1"].items():
        print(f"  {name:<{width}}  {accuracy:.4f}")
    return 0
