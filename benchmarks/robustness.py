"""Fashion-MNIST robustness reference points: standard vs FGSM vs PGD adversarial training.

Trains one network three ways — standard; Goodfellow et al.'s FGSM objective J̃ (α = 0.5,
ICLR 2015 Sec. 5); Madry et al.'s PGD min-max (ICLR 2018, the notes' MNIST setting of 40 steps
of 0.01) — all at the training radius ε_train (pixels of [0, 1]), then measures each checkpoint's
test accuracy under FGSM and PGD-40 (α = 0.01) at ε = 0.1 and 0.3 with `visionzoo attack`.
Prints the commands it runs and a Markdown table; writes every run directory and attack.json
under --out. A benchmark, not a test: on CPU the PGD-trained run costs ~41× a standard one.

    .venv/bin/python benchmarks/robustness.py [--model lenet] [--epochs 5] [--lr 0.05] [--train-eps 0.1]
        [--train-steps 40] [--train-alpha 0.01] [--n 10000] [--limit N] [--out runs/robustness]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ATTACKS = [("fgsm", 0.1), ("fgsm", 0.3), ("pgd", 0.1), ("pgd", 0.3)]


def visionzoo(*args) -> str:
    command = [sys.executable, "-m", "visionzoo", *map(str, args)]
    print("$ " + shlex.join(["visionzoo", *map(str, args)]), file=sys.stderr, flush=True)
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (LeNet does not learn at the default 0.2)")
    parser.add_argument("--train-eps", type=float, default=0.1, help="ε of the adversarial training")
    parser.add_argument("--pgd-steps", type=int, default=40, help="PGD steps of the attack")
    parser.add_argument("--train-steps", type=int, default=40, help="PGD steps of the adversarial training")
    parser.add_argument("--train-alpha", type=float, default=0.01, help="PGD step size of the adversarial training")
    parser.add_argument("--n", type=int, default=10000, help="test images attacked")
    parser.add_argument("--limit", type=int, help="train on a seeded subset (quick look)")
    parser.add_argument("--out", default="runs/robustness")
    args = parser.parse_args()
    out = Path(args.out)
    recipes = {"standard": [], "FGSM-adv": ["--adv", "fgsm", "--adv-eps", args.train_eps],
               "PGD-adv": ["--adv", "pgd", "--adv-eps", args.train_eps, "--adv-alpha", args.train_alpha,
                           "--adv-steps", args.train_steps]}
    header = " | ".join(f"{method.upper()}{'-' + str(args.pgd_steps) if method == 'pgd' else ''} ε={eps}"
                        for method, eps in ATTACKS)
    rows = [f"| training (ε_train = {args.train_eps}) | clean | {header} | training s |",
            "| --- " * (len(ATTACKS) + 3) + "|"]
    print("\n".join(rows), flush=True)
    for name, flags in recipes.items():
        run = out / name
        limit = ["--train-limit", args.limit] if args.limit else []
        if not (run / "summary.json").exists():  # a finished run is reused when the script is run again
            visionzoo("train", "--model", args.model, "--data", "fashion-mnist", "--epochs", args.epochs,
                      "--lr", args.lr, *limit, *flags, "--quiet", "--out", run)
        summary = json.loads((run / "summary.json").read_text())
        cells = []
        for method, eps in ATTACKS:
            steps = ["--steps", args.pgd_steps, "--alpha", 0.01] if method == "pgd" else []
            report = json.loads(visionzoo("attack", run, "--method", method, "--eps", eps, *steps,
                                          "--n", args.n, "--out", out / f"{name}-{method}-{eps}", "--json"))
            cells.append(f"{report['robust_acc']:.4f}")
        print(f"| {name} | {report['clean_acc']:.4f} | {' | '.join(cells)} | {summary['train_seconds']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
