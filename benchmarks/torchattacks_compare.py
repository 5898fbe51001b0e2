"""Our attacks against torchattacks on the same checkpoint, images, ε, steps and seed.

PGD (Madry et al., ICLR 2018): ℓ∞, random start, one restart, α and steps as given — robust
accuracy should agree within 1 pp; the wall-time ratio ours/theirs is measured in one process,
the two implementations alternating over the same batches so that machine load hits both alike.
One-pixel (Su et al., IEEE TEVC 2019): d = 1, population 400, 100 generations, F = 0.5 for
both; torchattacks runs SciPy's differential evolution one image at a time (stopping at the first
misclassification), ours evolves every image's population in one batched search (stopping when
the true class's probability falls below 5 %), so its success rate can only be equal or higher.
A benchmark, not a test; needs `.venv/bin/pip install torchattacks`.

    .venv/bin/python benchmarks/torchattacks_compare.py RUN_DIR [--n 1000] [--eps 0.1]
        [--alpha 0.01] [--steps 40] [--onepixel-n 100]
"""
from __future__ import annotations

import argparse
import time

import torch

from visionzoo.attacks import PGD, Normalized, OnePixel
from visionzoo.data.datasets import load_data
from visionzoo.weights import load_checkpoint


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def timed(attack, batches):
    """Adversarial images for every batch and the seconds spent in the attack."""
    started = time.perf_counter()
    adversarial = [attack(x, y) for x, y in batches]
    return torch.cat(adversarial), time.perf_counter() - started


def compare(name, ours, theirs, batches, model, labels, rounds: int) -> None:
    """Alternate ours/theirs `rounds` times; report robust accuracy and median seconds."""
    our_seconds, their_seconds = [], []
    for _ in range(rounds):
        our_x, seconds = timed(ours, batches)
        our_seconds.append(seconds)
        their_x, seconds = timed(theirs, batches)
        their_seconds.append(seconds)
    ours_s, theirs_s = sorted(our_seconds)[rounds // 2], sorted(their_seconds)[rounds // 2]
    print(f"| {name} | {accuracy(model, our_x, labels):.4f} | {accuracy(model, their_x, labels):.4f} | "
          f"{ours_s:.1f} | {theirs_s:.1f} | {ours_s / theirs_s:.2f} |", flush=True)


def main() -> None:
    import torchattacks
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=1000, help="test images for PGD")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds for PGD")
    parser.add_argument("--onepixel-n", type=int, default=100, help="test images for the one-pixel attack")
    args = parser.parse_args()

    network, meta = load_checkpoint(args.run)
    model = Normalized(network, meta["mean"], meta["std"]).eval()
    data = load_data(meta["data"], **meta.get("data_args", {}))
    images, labels = data.test.fetch(torch.arange(args.n))
    images = images.float() / 255
    batches = list(zip(images.split(args.batch_size), labels.split(args.batch_size)))
    torch.manual_seed(0)
    print(f"{meta['name']} on {meta['data']}: clean accuracy {accuracy(model, images, labels):.4f} on {args.n} test images")
    print("| attack | robust acc (ours) | robust acc (torchattacks) | ours s | torchattacks s | time ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    compare(f"PGD-{args.steps} ℓ∞ ε={args.eps} α={args.alpha}",
            PGD(model, args.eps, args.alpha, args.steps, seed=0),
            torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True),
            batches, model, labels, args.rounds)
    few = [(images[:args.onepixel_n], labels[:args.onepixel_n])]
    compare("one-pixel d=1, pop 400, 100 generations",
            OnePixel(model, pixels=1, popsize=400, max_iter=100, seed=0),
            torchattacks.OnePixel(model, pixels=1, steps=100, popsize=400, inf_batch=400),
            few, model, labels[:args.onepixel_n], 1)


if __name__ == "__main__":
    main()
