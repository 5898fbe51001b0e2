"""`visionzoo eval` of a viewpoint run (Render for CNN, Su et al., ICCV 2015): the azimuth bin's
top-1, the median geodesic error between predicted and true rotations and Acc_π/6 (Tulsiani &
Malik's scores, as the paper's Table 2 reports them), overall and per category, and the loss."""
from __future__ import annotations

from .report import print_evaluation


def run_viewpoint_eval(args, model, meta: dict) -> int:
    """A viewpoint run's model and model.json (weights.load_checkpoint) evaluated on a split of its data."""
    from ..data.loader import Normalizer
    from ..tasks.viewpoint import evaluate, load_viewpoint_data
    from .evaluate_cmd import trained_data
    model, device, spec, data, classes = trained_data(args, model, meta, load_viewpoint_data, "categories")
    result = evaluate(model, data.split(args.split), Normalizer(meta["mean"], meta["std"]), classes=classes,
                      batch_size=args.batch_size or meta.get("eval", {}).get("batch_size", 500), device=device,
                      form=meta.get("viewpoint_loss", "geometric"), sigma=meta.get("viewpoint_sigma"),
                      tilt_weight=meta.get("tilt_weight", 1.0))
    result = {"split": args.split, "n": result["n"], "top1": result["top1"],
              "median_angle_error": result["median_angle_error"], "acc_pi6": result["acc_pi6"],
              "median_azimuth_error": result["median_azimuth_error"],
              "loss": result["loss"], "median_angle_error_per_category": result["median_angle_error_per_category"],
              "acc_pi6_per_category": result["acc_pi6_per_category"], "model": meta["name"], "data": spec}
    rows = {}
    for name in classes:
        median, accuracy = result["median_angle_error_per_category"][name], result["acc_pi6_per_category"][name]
        rows[name] = "no images" if median is None else f"median error {median:.2f}°  acc_pi6 {accuracy:.4f}"
    return print_evaluation(args, result, "images", f"top1 (azimuth bin) {result['top1']:.4f}  median angle error "
                            f"{result['median_angle_error']:.2f}°  median azimuth error "
                            f"{result['median_azimuth_error']:.2f}°  acc_pi6 {result['acc_pi6']:.4f}  "
                            f"loss {result['loss']:.4f}", rows)
