"""Learning-rate schedules as one multiplier of the base rate per optimisation step.

Linear warmup (Goyal et al.: start small, reach η after the warmup epochs) followed by
step decay (×γ every `step_size` epochs), cosine annealing, one-cycle (Smith: linear rise to the
peak over `pct_start` of training, then cosine down), or a constant rate.
"""
from __future__ import annotations

import math

SCHEDULES = ("step", "cosine", "onecycle", "constant")


def lr_factor(step: int, *, total_steps: int, steps_per_epoch: int, schedule: str,
              warmup_steps: int = 0, step_size: int = 30, gamma: float = 0.1,
              pct_start: float = 0.25, final_factor: float = 0.0) -> float:
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** ((step // steps_per_epoch) // step_size)
    if schedule == "cosine":
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if schedule == "onecycle":
        peak = max(1, int(pct_start * total_steps))
        if step < peak:
            return 0.04 + 0.96 * step / peak
        t = (step - peak) / max(1, total_steps - peak)
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
