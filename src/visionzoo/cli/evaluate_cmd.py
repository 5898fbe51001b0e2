"""`visionzoo eval CHECKPOINT`: the model rebuilt from model.json + safetensors, on a split."""
from __future__ import annotations

import json


def run_eval(args) -> int:
    from ..data.datasets import load_data
    from ..data.loader import Normalizer
    from ..train.evaluate import evaluate
    from ..train.trainer import resolve_device
    from ..weights import load_checkpoint
    model, meta = load_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    data_args = dict(meta.get("data_args", {}))
    data = load_data(args.data or meta["data"], data_dir=args.data_dir, **data_args)
    channels_last = meta.get("eval", {}).get("channels_last", False)
    import torch
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    result = evaluate(model, data.split(args.split), Normalizer(meta["mean"], meta["std"]),
                      batch_size=args.batch_size or meta.get("eval", {}).get("batch_size", 500),
                      device=device, channels_last=channels_last)
    result = {"split": args.split, **result, "model": meta["name"], "data": args.data or meta["data"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{meta['name']} on {result['data']} {args.split} ({result['n']} images): "
              f"top1 {result['top1']:.4f}  top5 {result['top5']:.4f}  loss {result['loss']:.4f}")
    return 0


def add_commands(commands) -> None:
    p = commands.add_parser("eval", help="evaluate a trained checkpoint (run directory or .safetensors)")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="data set spec (default: the one it was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(run=run_eval)
