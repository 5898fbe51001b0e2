"""Issue 27's GPU figures in one call of the lent device machine (prepared and tested on the CPU).

A session lent a GPU has 15 minutes of device time in all, the machine's start included; this script
takes what issue 27 asks for in one command of at most 10 minutes, writing every figure to a JSON-lines
file and printing a table last (the device tool returns the end of the output):

1. the CUDA-only tests (tests/test_fast_path.py: no host synchronisation inside the training step
   under `torch.cuda.set_sync_debug_mode("error")`, compiled and eager; tests/test_resident_data.py: the
   training split kept on the card gives the per-step copy's batches, and drawing one never waits);
2. the data path alone (issue 27 item 1): images per second of one epoch of Fashion-MNIST's training
   batches made ready for the step (normalised, on the card), copied from the host per step against
   gathered from the split kept on the card;
3. the recipes on the card (`fmnist94`, `fmnist95`; seeds 0–2 of fmnist94 with the default
   `--compile auto`, seed 0 again with `--compile off` — the compile's gain or loss — and with the
   per-step copy of the batches instead of the split kept on the card — that one's gain —, fmnist95
   once): training seconds and test top-1 from each run's summary.json;
4. the twin table at 224² batch 128, bf16 autocast, channels_last (ours / torchvision or timm, training
   and inference img/s, the achieved fraction of the card's bf16 peak per row from `bench --peak`).

On the device machine (the data copied beforehand into a git-ignored folder of the checkout that the
call carries, e.g. `mkdir -p .gpu-data && cp /usr/share/datasets/fashion-mnist/*.gz .gpu-data/`):

    PYTHONPATH=src python benchmarks/gpu_session.py --data-dir .gpu-data --out $OUT

`--smoke` shrinks every step (one epoch on 512 images, batch 8 at 64²) to check the script on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from visionzoo.bench import BenchConfig, benchmark
from visionzoo.registry import get_entry

TWINS = ("resnet50", "efficientnet_b0", "vit_b_16", "resnet18", "mobilenet_v2", "densenet121")
# (recipe, seed, --compile, where the training batches come from: "auto", the split kept on the device off the
# CPU, or "per-step copy", each batch copied from the host as before)
RECIPE_RUNS = (("fmnist94", 0, "auto", "auto"), ("fmnist94", 1, "auto", "auto"), ("fmnist94", 2, "auto", "auto"),
               ("fmnist94", 0, "off", "auto"), ("fmnist94", 0, "auto", "per-step copy"),
               ("fmnist95", 0, "auto", "auto"))
# `visionzoo` with no split kept on the device (a budget of 0 bytes): the batches copied from the host each step
PER_STEP_COPY = ("import sys; from visionzoo.data import loader; loader.RESIDENT_SHARE = 0; "
                 "from visionzoo.cli.main import main; sys.exit(main(sys.argv[1:]))")


def record(path: Path, row: dict) -> None:
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")


def cuda_tests(results: Path) -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fast_path.py",
                           "tests/test_resident_data.py", "-k", "cuda or compile"], capture_output=True, text=True)
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    record(results, {"step": "cuda tests", "returncode": done.returncode, "summary": tail[0],
                     "seconds": round(time.perf_counter() - started, 1)})
    print(done.stdout[-3000:], flush=True)


def loader_rates(results: Path, data_dir: str | None, smoke: bool) -> None:
    """fmnist94's batches (256, 1 000 validation images held out) drawn for an epoch and normalised, after
    one epoch of warm-up each: the per-step copy from the host, then the split kept on the device."""
    from visionzoo.data.datasets import load_data
    from visionzoo.data.loader import Normalizer, train_batches
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_data("fashion-mnist", data_dir=data_dir, val_size=1000, train_limit=512 if smoke else None)
    normalize = Normalizer(data.mean, data.std)
    for resident in (False, True):
        for epoch in range(2):
            started, images = time.perf_counter(), 0
            for batch, _ in train_batches(data.train, 256, seed=0, epoch=epoch, device=device, resident=resident):
                normalize(batch)
                images += len(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        row = {"step": "loader", "data_path": "resident" if resident else "per-step copy", "device": str(device),
               "images": images, "seconds": round(seconds, 4), "images_per_s": round(images / seconds)}
        record(results, row)
        print(json.dumps(row), flush=True)


def recipe_runs(results: Path, out: Path, data_dir: str | None, smoke: bool) -> None:
    for recipe, seed, compile_mode, data_path in RECIPE_RUNS:
        run_dir = out / f"{recipe}-s{seed}-{compile_mode}{'-per-step' if data_path != 'auto' else ''}"
        entry = ["-m", "visionzoo"] if data_path == "auto" else ["-c", PER_STEP_COPY]
        command = [sys.executable, *entry, "train", "--recipe", recipe, "--seed", str(seed),
                   "--compile", compile_mode, "--out", str(run_dir), "--quiet"]
        command += ["--data-dir", data_dir] if data_dir else []
        command += ["--epochs", "1", "--train-limit", "512", "--test-limit", "500"] if smoke else []
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        row = {"step": "recipe", "recipe": recipe, "seed": seed, "compile_option": compile_mode,
               "data_path": data_path, "returncode": done.returncode,
               "command_seconds": round(time.perf_counter() - started, 1)}
        summary = run_dir / "summary.json"
        if done.returncode == 0 and summary.exists():
            values = json.loads(summary.read_text())
            row.update({key: values.get(key) for key in ("test_top1", "train_seconds", "compile", "amp", "device")})
        else:
            row["error"] = (done.stdout + done.stderr).strip().splitlines()[-1:]
        record(results, row)
        print(json.dumps(row), flush=True)


def twin_table(results: Path, smoke: bool) -> None:
    size, batch = ((3, 64, 64), 8) if smoke else ((3, 224, 224), 128)
    for name in TWINS[:2] if smoke else TWINS:
        twin = "torchvision" if "torchvision" in get_entry(name).twins else "timm"
        cfg = BenchConfig(name, input_size=size, batch_size=batch, dtype="bf16", channels_last=True, compare=twin,
                          peak=not smoke, warmup=1 if smoke else 5, repeats=2 if smoke else 20)
        try:
            row = {"step": "twin", **benchmark(cfg)}
        except Exception as exc:   # one network that cannot run must not stop the table
            row = {"step": "twin", "model": name, "error": str(exc).splitlines()[0][:200]}
        record(results, row)
        print(json.dumps({key: row.get(key) for key in ("model", "train_ratio", "infer_ratio", "error")}), flush=True)


def table(results: Path) -> str:
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    lines = [f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}, torch {torch.__version__}"]
    for row in rows:
        if row["step"] == "cuda tests":
            lines.append(f"cuda tests: {row['summary']} (rc {row['returncode']}, {row['seconds']} s)")
        elif row["step"] == "recipe":
            lines.append(f"{row['recipe']} seed {row['seed']} --compile {row['compile_option']}, data "
                         f"{row.get('data_path', 'auto')}: top-1 {row.get('test_top1')} "
                         f"train {row.get('train_seconds')} s (compiled: {row.get('compile')}; command "
                         f"{row['command_seconds']} s){' ' + str(row['error']) if 'error' in row else ''}")
        elif row["step"] == "loader":
            lines.append(f"data path {row['data_path']} on {row['device']}: {row['images_per_s']} img/s "
                         f"({row['images']} images in {row['seconds']} s)")
        else:
            # GFLOP/s per row, to divide by the card's bf16 peak; peak_fraction is against bench's own 3×3 conv
            keys = ("train_ratio", "infer_ratio", "train_img_s", "twin_train_img_s", "infer_img_s", "twin_infer_img_s",
                    "train_gflop_s", "infer_gflop_s", "peak_gflop_s", "train_peak_fraction", "infer_peak_fraction")
            shown = ", ".join(f"{key} {row[key]:.3f}" for key in keys if isinstance(row.get(key), float))
            lines.append(f"twin {row.get('model')}: {shown or row.get('error')}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-session"), help="folder for results and runs")
    parser.add_argument("--data-dir", help="folder holding the four Fashion-MNIST .gz files")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, to check the script on a CPU")
    parser.add_argument("--steps", default="tests,loader,recipes,twins",
                        help="comma-separated: tests, loader, recipes, twins")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "gpu_session.jsonl"
    steps = args.steps.split(",")
    if "tests" in steps:
        cuda_tests(results)
    if "loader" in steps:
        loader_rates(results, args.data_dir, args.smoke)
    if "recipes" in steps:
        recipe_runs(results, out / "runs", args.data_dir, args.smoke)
    if "twins" in steps:
        twin_table(results, args.smoke)
    print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
