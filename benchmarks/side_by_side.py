"""Interleaved speed comparison of two networks doing the same work (ours against a reference).

Each repeat times `steps` training steps (forward, loss, backward, SGD step) or inference forwards
of one network, then of the other, so that a slow moment of the machine hits both; the medians of
`repeats` such rates are compared as ratio = ours / reference (> 1: ours faster). Timings on this
machine vary ±30 % between runs: only the ratio within one run means something.
"""
from __future__ import annotations

import statistics
import time

import torch


def rate(model, x, loss_fn, *, train: bool, steps: int, dtype: str) -> float:
    """Samples per second over `steps` training steps or inference forwards of `model` on batch `x`."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if train else None
    model.train(train)
    started = time.perf_counter()
    for _ in range(steps):
        if train:
            with autocast:
                output = model(x)
            loss = loss_fn(output.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad(), autocast:
                model(x)
    return steps * len(x) / (time.perf_counter() - started)


def compare(ours, reference, x, loss_fn, *, repeats: int, steps: int, dtype: str) -> dict:
    """{"train": (ours, reference), "infer": (ours, reference)}: median samples/s, interleaved repeats."""
    found = {}
    for mode in ("train", "infer"):
        train = mode == "train"
        for model in (ours, reference):   # warm-up: allocator, one-off kernels
            rate(model, x, loss_fn, train=train, steps=1, dtype=dtype)
        rates = ([], [])
        for _ in range(repeats):
            for slot, model in enumerate((ours, reference)):
                rates[slot].append(rate(model, x, loss_fn, train=train, steps=steps, dtype=dtype))
        found[mode] = tuple(statistics.median(r) for r in rates)
    return found


def table_row(name: str, params: tuple[int, int], found: dict) -> str:
    """A markdown row: name, parameter counts, then train and inference rates with their ratios."""
    cells = [name, f"{params[0]:,} / {params[1]:,}"]
    for mode in ("train", "infer"):
        ours, theirs = found[mode]
        cells += [f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.3f}"]
    return "| " + " | ".join(cells) + " |"
