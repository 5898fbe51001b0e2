"""Learning-rate schedules as one multiplier of the base rate per optimisation step.

Linear warmup in one of two forms: `zero` (from near zero, (t+1)/T of the rate at step t < T) or
`goyal` (Goyal et al., Accurate, Large Minibatch SGD, 2017, Sec. 2.2, "gradual warmup": start at
the small-batch rate η and rise by a constant amount per iteration to kη, k = B/B₀ of the linear
scaling rule, at the end of the warmup; as a multiplier of the peak kη, from 1/k to 1), followed by step decay (×γ every `step_size` epochs), multi-step decay (×γ
at each milestone epoch, as in ResNet's ÷10 at 32k and 48k iterations), cosine annealing
(Loshchilov & Hutter, SGDR, 2017, Eq. 5 without restarts: η_min + (η − η_min)(1 + cos(πt/T))/2,
η_min = `final_factor`·η), one-cycle (Smith & Topin, Super-Convergence, 2018: linear rise from
0.04η to the peak over `pct_start` of training, then the same cosine down), a constant rate, or
reduce-on-plateau (×γ when the validation loss has not improved for `patience` epochs, as in
AlexNet's "divide the learning rate by 10 when the validation error stopped improving", Sec. 5), or
the Transformer's inverse square root (`rsqrt`: Vaswani et al., Attention Is All You Need, 2017, Sec. 5.3,
lrate = d_model^−0.5 · min(step^−0.5, step · warmup^−1.5) with steps counted from 1; as a multiplier of
its peak d_model^−0.5 · warmup^−0.5, reached at the end of the warmup: step / warmup, then
(warmup / step)^0.5 — the zero-form warmup followed by the decay).
"""
from __future__ import annotations

import math

SCHEDULES = ("step", "multistep", "plateau", "cosine", "onecycle", "constant", "rsqrt")
ANNEALING = ("cosine", "onecycle")   # the schedules that end at final_factor of the peak (--lr-floor)
WARMUP_FORMS = ("zero", "goyal")
PLATEAU_THRESHOLD = 1e-4   # relative improvement that counts, as torch's ReduceLROnPlateau


def lr_factor(step: int, *, total_steps: int, steps_per_epoch: int, schedule: str,
              warmup_steps: int = 0, step_size: int = 30, gamma: float = 0.1,
              pct_start: float = 0.25, final_factor: float = 0.0, milestones=(),
              warmup_from: float | None = None) -> float:
    """The multiplier of the peak rate at optimisation step `step`. `warmup_from` (Goyal's 1/k)
    makes the warmup linear from that factor at step 0 to 1 at `warmup_steps`; None is the zero form."""
    if warmup_steps and step < warmup_steps:
        if warmup_from is None:
            return (step + 1) / warmup_steps
        return warmup_from + (1 - warmup_from) * step / warmup_steps
    if schedule == "rsqrt":
        return math.sqrt(max(warmup_steps, 1) / (step + 1))
    if schedule in ("constant", "plateau"):   # plateau reductions are applied by LRSchedule
        return 1.0
    if schedule == "multistep":
        return gamma ** sum(step // steps_per_epoch >= m for m in milestones)
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


class LRSchedule:
    """The multiplier given to LambdaLR: lr_factor(step) × the plateau reductions so far.

    A callable object rather than a function, so LambdaLR's state_dict carries its attributes
    (best loss, epochs without improvement, reduction) into the checkpoint and back on resume.
    """

    def __init__(self, *, patience: int = 2, **schedule):
        self.schedule = schedule
        self.patience = patience
        self.reduction = 1.0
        self.best_loss = math.inf
        self.bad_epochs = 0

    def __call__(self, step: int) -> float:
        return lr_factor(step, **self.schedule) * self.reduction

    def epoch_end(self, val_loss: float, scheduler) -> None:
        """Plateau: count an epoch without improvement; past `patience` of them, multiply the rate by γ now."""
        if self.schedule["schedule"] != "plateau":
            return
        if val_loss < self.best_loss * (1 - PLATEAU_THRESHOLD):
            self.best_loss, self.bad_epochs = val_loss, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.reduction *= self.schedule.get("gamma", 0.1)
            self.bad_epochs = 0
            for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
                group["lr"] = base * self(scheduler.last_epoch)
