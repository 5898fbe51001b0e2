"""`visionzoo eval` of a video run (task "video"): top-1/top-5 accuracy, loss and per-class top-1 of a
trained clip classifier on a split of its video data set (data/video.py), as text or one JSON object."""
from __future__ import annotations

from .report import measures_text, print_evaluation


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
    rows = {name: f"{accuracy:.4f}" for name, accuracy in result["per_class_top1"].items()}
    return print_evaluation(args, result, "clips", measures_text(result, "top1", "top5", "loss"), rows)
