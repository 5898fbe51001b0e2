"""`visionzoo eval CHECKPOINT [CHECKPOINT ...]`: models rebuilt from model.json + safetensors,
evaluated on a split, with test-time augmentation; several checkpoints form an ensemble that
averages their softmax outputs. Reports top-1/top-5 accuracy and error, loss, per-class accuracy."""
from __future__ import annotations

from ..core.errors import UsageError
from ..core.io import json_text
from ..core.options import argument, positive
from .arguments import add_data_dir, add_device, add_json, add_quiet, add_split, add_trained_data


def evaluated_layout(meta: dict):
    """The memory format a run's model was evaluated in (model.json's eval.channels_last)."""
    import torch
    return torch.channels_last if meta.get("eval", {}).get("channels_last") else torch.contiguous_format


def trained_data(args, model, meta: dict, load, word: str = "classes"):
    """What every task's `eval` starts with: the device, the model on it in the layout it was evaluated
    in, and the split's data (`load(spec, data_dir=, **data_args)`) checked against the network's
    classes and channels. Returns (model, device, spec, data, classes)."""
    from ..core.runtime import resolve_device
    device = resolve_device(args.device)
    model = model.to(device, memory_format=evaluated_layout(meta))
    spec = args.data or meta["data"]
    data = load(spec, data_dir=args.data_dir, **dict(meta.get("data_args", {})))
    classes = meta["classes"]
    if len(data.classes) != len(classes) or data.input_size[0] != meta["input_size"][0]:
        raise UsageError(f"--data {spec} has {len(data.classes)} {word} of {data.input_size[0]} channel(s), the "
                         f"network {len(classes)} of {meta['input_size'][0]}; evaluate on data like its training data")
    return model, device, spec, data, classes


def evaluate_task(args, loaded: list, task: str) -> int:
    """A run of another task than classification: its own evaluation (cli/<task>_cmd.py), one run at a
    time and without the classifier's test-time options."""
    if len(loaded) > 1:
        raise UsageError(f"ensembles are for classifiers; evaluate one {task} run at a time")
    if args.tta != "none":
        raise UsageError(f"--tta is for classifiers; a {task} run is evaluated on its data as they are")
    if args.bn_recalibrate:
        raise UsageError(f"--bn-recalibrate is for classifiers; a {task} run keeps the BN statistics it trained")
    if task == "segmentation":
        from .segment_cmd import run_segmentation_eval as run
    elif task == "viewpoint":
        from .viewpoint_cmd import run_viewpoint_eval as run
    elif task == "video":
        from .video_cmd import run_video_eval as run
    elif task == "language":
        from .language_cmd import run_language_eval as run
    elif task == "generative":
        from .generative_cmd import run_generative_eval as run
    elif task == "detection":
        from .detect_cmd import run_detection_eval as run
    elif task == "translation":
        from .translate_cmd import run_translation_eval as run
    elif task == "cloze":
        from .cloze_cmd import run_cloze_eval as run
    elif task == "sequence-regression":
        from .sequence_regression_cmd import run_sequence_regression_eval as run
    else:
        raise UsageError(f"this visionzoo cannot evaluate a {task} run yet")
    return run(args, *loaded[0])


def run_eval(args) -> int:
    import torch

    from ..core.probe import check_trained_input
    from ..core.runtime import resolve_device
    from ..data.datasets import load_data, trained_data_args
    from ..data.loader import Normalizer
    from ..tasks.classification import evaluate
    from ..weights import check_data_fits, load_checkpoint
    device = resolve_device(args.device)
    loaded = [load_checkpoint(path) for path in args.checkpoint]
    meta = loaded[0][1]
    task = meta.get("task", "classification")
    if args.dynamic_eval and task != "language":
        raise UsageError(f"--dynamic-eval is for language runs; a {task} run is evaluated as it was trained")
    if task != "classification":
        return evaluate_task(args, loaded, task)
    for path, (_, other) in zip(args.checkpoint[1:], loaded[1:]):
        if other.get("classes") != meta.get("classes") or other.get("input_size") != meta.get("input_size"):
            raise UsageError(f"{path}: its classes or input size differ from {args.checkpoint[0]}'s; "
                             "an ensemble needs networks of the same task")
    channels_last = all(m.get("eval", {}).get("channels_last", False) for _, m in loaded)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = [model.to(device, memory_format=fmt) for model, _ in loaded]
    normalizers = [Normalizer(m["mean"], m["std"]) for _, m in loaded]
    spec = args.data or meta["data"]
    data = load_data(spec, data_dir=args.data_dir, lazy=True, **trained_data_args(meta, spec))
    check_data_fits(meta, data, spec)
    for model, model_meta in loaded:
        check_trained_input(model, data.input_size, model_meta["input_size"], f"--data {spec}")
    classes = meta.get("classes") or data.classes
    batch_size = args.batch_size or meta.get("eval", {}).get("batch_size", 500)
    if args.bn_recalibrate:
        recalibrate(models, normalizers, data.train, batch_size, seed=meta.get("data_args", {}).get("seed", 0),
                    device=device, channels_last=channels_last)
    result = evaluate(models, data.split(args.split), normalizers, tta=args.tta,
                      batch_size=batch_size, device=device, channels_last=channels_last, num_classes=len(classes),
                      quiet=args.quiet)
    per_class = dict(zip(classes, result.pop("per_class_top1")))
    result.pop("confusion")
    names = [m["name"] for _, m in loaded]
    result = {"split": args.split, **result, "top1_error": 1 - result["top1"], "top5_error": 1 - result["top5"],
              "per_class_top1": per_class, "tta": args.tta, "models": names, "model": names[0],
              "data": args.data or meta["data"], "bn_recalibrated": args.bn_recalibrate}
    if args.json:
        print(json_text(result))
        return 0
    what = names[0] if len(names) == 1 else f"ensemble of {len(names)} ({', '.join(names)})"
    print(f"{what} on {result['data']} {args.split} ({result['n']} images, tta {args.tta}): "
          f"top1 {result['top1']:.4f}  top5 {result['top5']:.4f}  loss {result['loss']:.4f}  "
          f"(error top1 {result['top1_error']:.4f}, top5 {result['top5_error']:.4f})")
    width = max(len(str(c)) for c in classes)
    for name, accuracy in per_class.items():
        print(f"  {name:<{width}}  {accuracy:.4f}")
    return 0


def recalibrate(models, normalizers, train, batch_size: int, *, seed: int, device, channels_last: bool) -> None:
    """BN's population statistics over the (unaugmented) training split, for every network (Alg. 2)."""
    from ..data.loader import train_batches
    from ..layers.batchnorm import recalibrate_batchnorm
    for model, normalizer in zip(models, normalizers):
        batches = train_batches(train, batch_size, seed=seed, epoch=0, device=device)  # equal m: last partial dropped
        recalibrate_batchnorm(model, (normalizer(images, channels_last) for images, _ in batches))


def add_commands(commands) -> None:
    from ..tasks.classification import TTA_ALIASES, TTA_MODES
    p = commands.add_parser("eval", help="evaluate trained checkpoints (run directories or .safetensors); "
                                         "several form an ensemble")
    p.add_argument("checkpoint", nargs="+", help="run directory or model.safetensors; several = ensemble "
                                                 "(softmax outputs averaged)")
    add_trained_data(p)
    add_data_dir(p)
    add_split(p)
    p.add_argument("--tta", default="none", choices=TTA_MODES + tuple(TTA_ALIASES),
                   help="test-time augmentation: flip (+mirror), tencrop = multicrop (corners, centre, mirrors), "
                        "multiscale (rescaled inputs, dense evaluation where the network has it)")
    p.add_argument("--batch-size", type=argument(int, positive))
    p.add_argument("--bn-recalibrate", action="store_true",
                   help="first set every BN's running statistics to the training split's population estimates "
                        "(one pass: μ = E[μ_B], σ² = m/(m−1)·E[σ²_B], Ioffe & Szegedy Alg. 2)")
    p.add_argument("--dynamic-eval", type=argument(float, positive), metavar="LR",
                   help="language runs: Graves' dynamic evaluation — the split read as one stream, one SGD step "
                        "of rate LR after each window (the static figures beside it)")
    add_device(p)
    add_json(p)
    add_quiet(p)
    p.set_defaults(run=run_eval)
