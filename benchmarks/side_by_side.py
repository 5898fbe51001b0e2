"""Interleaved speed comparison of two networks doing the same work (ours against a reference).

Each repeat times `steps` training steps (forward, loss, backward, SGD step) or inference forwards
of each network in turn, so that a slow moment of the machine hits both; the order rotates from one
repeat to the next (and reverses every other round), so that no network always runs first or always
follows the same one. Each network keeps one optimiser for the whole comparison, warmed up before
timing, as in a training run: its momentum buffers are not allocated again inside the timed steps.
ratio = the median over repeats of ours / reference within the repeat (> 1: ours faster): pairing
cancels the machine's slow drifts, which the ratio of two medians does not. Timings on this machine
vary ±30 % between runs: only the ratio within one run means something. ``clock="cpu"`` counts the
process's CPU seconds instead of wall seconds: on a machine shared by more processes than cores, wall
time measures mostly the scheduler's share, CPU time the work (with one thread they are the same on
an idle machine; with several, CPU time also counts the threads' waiting).

`control`, a copy of the reference, joins the rotation as an A/A test: its ratio to the reference
should be 1, and its distance from 1 is how far this run can resolve a difference.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def rate(model, x, loss_fn, *, optimizer: torch.optim.Optimizer | None, steps: int, dtype: str,
         clock: str = "wall") -> float:
    """Samples per (`clock`) second over `steps` training steps (with `optimizer`) or inference forwards
    (without)."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    train = optimizer is not None
    model.train(train)
    now = CLOCKS[clock]
    started = now()
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
    return steps * len(x) / (now() - started)


def rotation(count: int, repeat: int) -> list[int]:
    """The running order of `count` networks in repeat `repeat`: every network takes every place, and
    follows every other one, equally often over 2·count repeats."""
    order = [(index + repeat) % count for index in range(count)]
    return order[::-1] if (repeat // count) % 2 else order


def compare(ours, reference, x, loss_fn, *, repeats: int, steps: int, dtype: str, control=None,
            clock: str = "wall") -> dict:
    """{"train": (ours, reference, ratio, control ratio), "infer": (…)}: median samples/s of ours and
    the reference, the median paired ratio ours / reference, and control / reference (None without
    a control)."""
    models = [ours, reference] + ([control] if control is not None else [])
    optimizers = [torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) for model in models]
    found = {}
    for mode in ("train", "infer"):
        slots = [optimizer if mode == "train" else None for optimizer in optimizers]
        for model, optimizer in zip(models, slots):   # warm-up: allocator, one-off kernels, momentum buffers
            rate(model, x, loss_fn, optimizer=optimizer, steps=1, dtype=dtype, clock=clock)
        rates = [[] for _ in models]
        for repeat in range(repeats):
            for slot in rotation(len(models), repeat):
                rates[slot].append(rate(models[slot], x, loss_fn, optimizer=slots[slot], steps=steps, dtype=dtype,
                                        clock=clock))
        paired = [statistics.median(a / b for a, b in zip(rates[slot], rates[1])) for slot in range(len(models))]
        found[mode] = (statistics.median(rates[0]), statistics.median(rates[1]), paired[0],
                       paired[2] if control is not None else None)
    return found


def table_row(name: str, params: tuple[int, int], found: dict) -> str:
    """A markdown row: name, parameter counts, then train and inference rates with their ratios (and the
    control's ratio where there is one)."""
    cells = [name, f"{params[0]:,} / {params[1]:,}"]
    for mode in ("train", "infer"):
        ours, theirs, ratio, control = found[mode]
        cells += [f"{ours:.1f}", f"{theirs:.1f}", f"{ratio:.3f}"] + ([] if control is None else [f"{control:.3f}"])
    return "| " + " | ".join(cells) + " |"


def add_comparison_options(parser, *, repeats: int, steps: int) -> None:
    """The options every side-by-side benchmark takes: precision, repeats, steps, threads, the A/A control
    and the clock."""
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--control", action="store_true", help="time a copy of the reference too (A/A)")
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))


def start_table(args, setting: str, first: str, reference: str, unit: str) -> None:
    """Set --threads, then print the run's setting and the markdown table's header."""
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {setting}, {args.dtype}, median of "
          f"{args.repeats} interleaved repeats, {unit} per {args.clock} second")
    control = " | A/A" if args.control else ""
    print(f"| {first} | params ours / {reference} | train {unit}/s ours | {reference} | ratio{control} "
          f"| infer {unit}/s ours | {reference} | ratio{control} |")
    print("| --- " * (8 + 2 * args.control) + "|", flush=True)


def compare_row(args, name: str, ours, reference, x, loss_fn, *, per_sample: int = 1) -> None:
    """Compare the two networks with the command line's settings and print their row; rates are of
    samples × `per_sample` (tokens per sequence, say)."""
    found = compare(ours, reference, x, loss_fn, repeats=args.repeats, steps=args.steps, dtype=args.dtype,
                    control=copy.deepcopy(reference) if args.control else None, clock=args.clock)
    scaled = {mode: (ours_rate * per_sample, reference_rate * per_sample, ratio, control)
              for mode, (ours_rate, reference_rate, ratio, control) in found.items()}
    params = tuple(sum(p.numel() for p in m.parameters()) for m in (ours, reference))
    print(table_row(name, params, scaled), flush=True)
