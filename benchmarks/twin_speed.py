"""Our networks against their torchvision/timm twins: img/s ratios ours/twin (issue 6, item 2).

Each row is one `visionzoo bench MODEL --compare SOURCE` (visionzoo.bench.benchmark): both
networks in one process, timings interleaved, median of the repeats. Settings: 224² batch 16 in
fp32 + channels_last and in bf16 autocast + channels_last, and the small-image setting 3×64×64
(our networks switch to their small-input stems below 64 px, where the twins have no
counterpart; 64 px is the smallest size at which both are the same network — `same_work`
checks the MAC counts — and 96 px for the Inception networks, which need at least 75 px). Every setting is run `--runs` times so that a ratio below 1 can be told
from the noise of a shared CPU; the ratio of process CPU time per step is printed beside the
wall-time ratio because, on a loaded machine, wall time mostly measures waiting for a core.

    .venv/bin/python benchmarks/twin_speed.py [--models resnet18,resnet50] [--runs 2] [--repeats 3]
        [--settings fp32_224,bf16_224,fp32_64] [--all-twins] [--threads N] [--jsonl results.jsonl]
"""
from __future__ import annotations

import argparse
import json
import sys

from visionzoo.bench import BenchConfig, benchmark
from visionzoo.registry import get_entry, list_models

CORE = ("resnet18", "resnet50", "mobilenet_v2", "densenet121", "efficientnet_b0", "vit_b_16")
SETTINGS = {
    "fp32_224": dict(input_size=(3, 224, 224), dtype="fp32", channels_last=True),
    "bf16_224": dict(input_size=(3, 224, 224), dtype="bf16", channels_last=True),
    "fp32_64": dict(input_size=(3, 64, 64), dtype="fp32", channels_last=True),
    # The Inception networks' stems leave nothing for their last 3×3 convolutions below 75 px.
    "fp32_96": dict(input_size=(3, 96, 96), dtype="fp32", channels_last=True),
}


def twin_source(name: str) -> str:
    twins = get_entry(name).twins
    return "torchvision" if "torchvision" in twins else "timm"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated names (default: the six of the issue)")
    parser.add_argument("--all-twins", action="store_true", help="every registered network with a twin")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--jsonl", help="append every result as one JSON line here")
    args = parser.parse_args()
    if args.all_twins:
        models = [n for n in list_models() if get_entry(n).twins]
    else:
        models = args.models.split(",") if args.models else list(CORE)
    print("| model | twin | setting | run | train img/s ours | twin | ratio | by CPU time "
          "| infer img/s ours | twin | ratio | by CPU time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for name in models:
        for setting in args.settings.split(","):
            for run in range(1, args.runs + 1):
                cfg = BenchConfig(name, batch_size=args.batch_size, compare=twin_source(name), warmup=args.warmup,
                                  repeats=args.repeats, threads=args.threads, **SETTINGS[setting])
                try:
                    r = benchmark(cfg)
                except Exception as exc:  # one network that cannot run this setting must not stop the table
                    print(f"| {name} | | {setting} | {run} | failed: {str(exc).splitlines()[0][:120]} |", flush=True)
                    break
                note = "" if r["same_work"] else " (different MACs)"
                print(f"| {name} | {r['twin_source']} {r['twin']}{note} | {setting} | {run} "
                      f"| {r['train_img_s']:.1f} | {r['twin_train_img_s']:.1f} | {r['train_ratio']:.3f} "
                      f"| {r['train_cpu_ratio']:.3f} | {r['infer_img_s']:.1f} | {r['twin_infer_img_s']:.1f} "
                      f"| {r['infer_ratio']:.3f} | {r['infer_cpu_ratio']:.3f} |", flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as out:
                        out.write(json.dumps({"setting": setting, "run": run, **r}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
