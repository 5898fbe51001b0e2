"""Fashion-MNIST training-techniques ablation: a baseline against the baseline plus one technique.

The baseline is the default recipe without any augmentation or regulariser (no crop, no flip,
no label smoothing); each other row adds exactly one `visionzoo train` option to it, at equal
budget (same network, epochs, training subset, batch, learning rate). Every row is the mean (and
the two values) of the test top-1 over seeds 0 and 1 on the full 10 000-image test split.
Prints each command and a Markdown table; writes the run directories and ablation.json under --out.
A benchmark, not a test.

    .venv/bin/python benchmarks/ablation.py [--model lenet] [--epochs 2] [--limit 10000]
        [--seeds 0 1] [--only NAME ...] [--out runs/ablation]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

BASELINE = ["--crop", "0", "--no-flip", "--label-smoothing", "0"]
TECHNIQUES = {
    "baseline": [],
    "+ random crop (pad 2)": ["--crop", "2"],
    "+ horizontal flip": ["--flip"],
    "+ scale jitter 1.0–1.25": ["--scale-jitter", "1.0,1.25"],
    "+ fancy PCA 0.1 (grey: brightness)": ["--fancy-pca", "0.1"],
    "+ random erasing p 0.5": ["--random-erasing", "0.5"],
    "+ cutout 8": ["--cutout", "8"],
    "+ mixup α 0.2": ["--mixup", "0.2"],
    "+ CutMix α 1.0": ["--cutmix", "1.0"],
    "+ label smoothing 0.1": ["--label-smoothing", "0.1"],
    "+ EMA 0.99": ["--ema", "0.99"],
}


def train(run: Path, flags: list[str]) -> dict:
    """The run's summary; a run directory that already has one is reused (an interrupted ablation goes on)."""
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text())
    command = ["train", *flags, "--quiet", "--out", str(run)]
    print("$ " + shlex.join(["visionzoo", *command]), file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "visionzoo", *command], check=True, capture_output=True, text=True)
    return json.loads((run / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10000, help="seeded training subset")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="+", choices=list(TECHNIQUES), help="rows to run (default all)")
    parser.add_argument("--out", default="runs/ablation")
    args = parser.parse_args()
    out = Path(args.out)
    common = ["--model", args.model, "--data", "fashion-mnist", "--epochs", str(args.epochs),
              "--train-limit", str(args.limit), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
              "--amp", "off", *BASELINE]
    results = {}
    print(f"| {args.model}, {args.epochs} epochs on {args.limit} images | test top-1 (mean) | seeds "
          f"{', '.join(map(str, args.seeds))} | Δ vs baseline | training s (mean) |\n| --- | --- | --- | --- | --- |",
          flush=True)
    for index, (name, flags) in enumerate(TECHNIQUES.items()):
        if args.only and name not in args.only:
            continue
        summaries = [train(out / f"{index:02d}-seed{seed}", [*common, *flags, "--seed", str(seed)])
                     for seed in args.seeds]
        top1 = [s["test_top1"] for s in summaries]
        results[name] = {"flags": flags, "test_top1": top1, "mean": sum(top1) / len(top1),
                         "train_seconds": [s["train_seconds"] for s in summaries]}
        delta = results[name]["mean"] - results["baseline"]["mean"] if "baseline" in results else float("nan")
        print(f"| {name} | {results[name]['mean']:.4f} | {' / '.join(f'{t:.4f}' for t in top1)} | {delta:+.4f} | "
              f"{sum(results[name]['train_seconds']) / len(top1):.0f} |", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ablation.json").write_text(json.dumps({"common": common, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
