"""Compression reference points on Fashion-MNIST, next to Han et al.'s LeNet results.

Deep Compression (Han, Mao, Dally, ICLR 2016), Tables 2–3 on MNIST: LeNet-300-100 pruned to 8 %
of its weights (12×) and compressed 40× with 6-bit shared weights, LeNet-5 (the Caffe LeNet,
20-50-500, our `lenet`) to 8 % (12×) and 39× with 8-bit conv / 5-bit fc weights; 5-bit relative
indices; < 0.1 pp accuracy lost. XNOR-Net (Rastegari et al., ECCV 2016): BWN/XNOR ≈32× smaller
weights. Per network this script trains a float baseline, then runs
  prune   Han's per-layer sparsities, 2 prune → retrain rounds of 2 epochs (CSR, float32 values),
  deep    the pruned model → k-means weight sharing → centroid fine-tuning → Huffman + CSR,
  bwn / xnor   binarised inner layers, fine-tuned,
  twn / ttq    ternary inner layers (TWN, TTQ), fine-tuned, 2 bits per weight,
with `visionzoo.compress.pipeline.compress` (what `visionzoo compress` runs) and writes a
markdown table. LeNet-300-100 is the zoo's `lenet300_100` (784-300-100-10, ReLU). The VGG-style
network is `vgg11_bn` with Han's VGG-16 per-layer sparsities (13× pruned, 49× Deep Compression,
+0.33 pp top-1 on ImageNet) mapped stage by stage.

    python benchmarks/compression.py --out runs/compression [--train-limit 12000] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from visionzoo.compress.pipeline import Options, compress
from visionzoo.compress.retrain import RetrainSettings
from visionzoo.engine.trainer import train
from visionzoo.weights import load_checkpoint

# Deep Compression Tables 2–3: the fraction of weights kept per layer → sparsity = 1 − kept.
HAN = {
    "lenet300_100": {"sparsity": {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}, "conv_bits": 6, "fc_bits": 6, "conv": False,
                     "paper": {"pruned": "12×", "deep": "40×", "top1_float": 0.9836, "top1_deep": 0.9842}},
    "lenet": {"sparsity": {"features.0": 0.34, "features.3": 0.88, "fc1.0": 0.92, "fc2": 0.81},
              "conv_bits": 8, "fc_bits": 5, "conv": True,
              "paper": {"pruned": "12×", "deep": "39×", "top1_float": 0.9920, "top1_deep": 0.9926}},
    # A VGG-style network: Han et al.'s VGG-16 row (Table 5, ImageNet) mapped onto VGG-11's layers
    # stage by stage (conv1_1, conv2_1, conv3_1, conv3_2, conv4_1, conv4_2, conv5_1, conv5_2, fc6-8).
    "vgg11_bn": {"sparsity": {"features.0": 0.42, "features.4": 0.66, "features.8": 0.47, "features.11": 0.76,
                              "features.15": 0.68, "features.18": 0.73, "features.22": 0.65, "features.25": 0.71,
                              "classifier.0": 0.96, "classifier.3": 0.96, "classifier.6": 0.77},
                 "conv_bits": 8, "fc_bits": 5, "conv": True,
                 "paper": {"pruned": "13×", "deep": "49×", "top1_float": 0.6850, "top1_deep": 0.6883}},
}


def run_network(name: str, out: Path, args) -> list[dict]:
    base = out / name / "float"
    if not (base / "summary.json").exists():
        train(model=name, data="fashion-mnist", epochs=args.epochs, batch_size=128, lr=args.lr,
              train_limit=args.train_limit, amp="off", out=str(base), quiet=True)
    summary = json.loads((base / "summary.json").read_text())
    float_bytes = (base / "model.safetensors").stat().st_size
    han = HAN[name]
    settings = RetrainSettings(epochs=2, lr=0.01, batch_size=128, train_limit=args.train_limit, device="cpu")
    pruning = dict(layer_sparsity=han["sparsity"], conv_index_bits=5, fc_index_bits=5)
    runs = [("prune", base, Options(iterations=2, sensitivity=True, retrain=settings, **pruning)),
            # the pruned model is pruned again at the same sparsities (its zeros are the smallest
            # weights, so the masks are the same), then shared and fine-tuned
            ("deep", out / name / "prune", Options(conv_bits=han["conv_bits"], fc_bits=han["fc_bits"], finetune_epochs=1,
                                                   retrain=replace(settings, epochs=0), **pruning)),
            ("bwn", base, Options(mode="bwn", retrain=settings)),
            ("xnor", base, Options(mode="xnor", retrain=settings)),
            ("twn", base, Options(ternary_mode="twn", retrain=settings)),
            # TTQ's scale gradients are sums over a layer's weights: Adam's step does not grow with them
            ("ttq", base, Options(ternary_mode="ttq", retrain=replace(settings, optimizer="adam", lr=1e-3)))]
    if han["conv"]:  # Li et al.'s filter removal: half of each removable convolution's filters
        runs.append(("channels", base, Options(channel_ratio=0.5, retrain=settings)))
    runs = [run for run in runs if run[0] in args.methods]
    rows = [{"network": name, "method": "float32", "top1": summary["test_top1"], "bytes": float_bytes,
             "ratio": 1.0, "param_reduction": 1.0, "macs": summary["macs"], "macs_nonzero": summary["macs"],
             "speedup": 1.0, "seconds": summary["train_seconds"]}]
    for label, source, options in runs:
        started = time.perf_counter()
        method = {"bwn": "binarize", "xnor": "binarize", "twn": "ternary", "ttq": "ternary"}.get(label, label)
        report = compress(source, method, out / name / label, options)
        rows.append({"network": name, "method": label, "top1": report["top1_after"],
                     "bytes": report["bytes_after"], "ratio": float_bytes / report["bytes_after"],
                     "param_reduction": report["param_reduction"],
                     "weight_memory_saving": report["details"].get("memory_saving"),
                     "macs": report["macs_after"], "macs_nonzero": report["macs_nonzero_after"],
                     "speedup": inference_speedup(base, out / name / label, summary_input(base)),
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def summary_input(run: Path) -> tuple:
    return tuple(json.loads((run / "model.json").read_text())["input_size"])


def inference_speedup(float_run: Path, compressed: Path, input_size, batch: int = 512, repeats: int = 15) -> float:
    """Median forward time of the float network over that of the decoded compressed one, interleaved
    in one process so that the machine's load affects both alike."""
    networks = [load_checkpoint(float_run)[0], load_checkpoint(compressed)[0]]
    x = torch.randn(batch, *input_size)
    times = [[], []]
    with torch.no_grad():
        for _ in range(repeats):
            for network, spent in zip(networks, times):
                started = time.perf_counter()
                network(x)
                spent.append(time.perf_counter() - started)
    return statistics.median(times[0]) / statistics.median(times[1])


def markdown(rows: list[dict]) -> str:
    lines = ["| network | method | test top-1 | Δ vs float (pp) | bytes on disk | ratio vs float32 | weights kept "
             "| MACs (on non-zeros) | forward speed-up | Han et al. (LeNets: MNIST; VGG-16: ImageNet) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        base = next(r for r in rows if r["network"] == row["network"] and r["method"] == "float32")
        paper = HAN[row["network"]]["paper"]
        reference = {"prune": f"{paper['pruned']} fewer weights", "deep": f"{paper['deep']}, "
                     f"{100 * (paper['top1_deep'] - paper['top1_float']):+.2f} pp"}.get(row["method"], "")
        kept = f"{100 / row['param_reduction']:.1f} % ({row['param_reduction']:.1f}×)" \
            if row["method"] in ("prune", "deep", "channels") else "100 %"
        macs = f"{row['macs']:,} ({row['macs_nonzero']:,})" if "macs" in row else "-"
        speedup = f"{row['speedup']:.2f}×" if "speedup" in row else "-"
        lines.append(f"| {row['network']} | {row['method']} | {row['top1']:.4f} | "
                     f"{100 * (row['top1'] - base['top1']):+.2f} | {row['bytes']:,} | {row['ratio']:.1f}× | "
                     f"{kept} | {macs} | {speedup} | {reference} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/compression")
    parser.add_argument("--networks", nargs="+", default=["lenet300_100", "lenet"], choices=sorted(HAN))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--train-limit", type=int, default=12000)
    parser.add_argument("--methods", nargs="+", default=["prune", "deep", "bwn", "xnor", "twn", "ttq", "channels"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    rows = [row for name in args.networks for row in run_network(name, out, args)]
    previous = out / "compression.json"  # rows of earlier invocations that this one did not redo
    if previous.exists():
        redone = {(row["network"], row["method"]) for row in rows}
        rows = [row for row in json.loads(previous.read_text()) if (row["network"], row["method"]) not in redone] + rows
    (out / "compression.json").write_text(json.dumps(rows, indent=2))
    (out / "compression.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
