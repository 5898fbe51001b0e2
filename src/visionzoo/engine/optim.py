"""Optimisers, weight decay, and the learning rate of a global batch.

- SGD with heavy-ball or Nesterov momentum, RMSprop, Adam and AdamW (torch.optim).
- Weight decay on weights only (biases and normalisation parameters are left free), either as
  L2 in the loss (`l2`: λw added to the gradient, so it passes through momentum/Adam's scaling)
  or decoupled (`decoupled`, Loshchilov & Hutter, Decoupled Weight Decay Regularization, 2019,
  Alg. 1–2: w ← w − η·λ·w applied next to the update; for Adam this is AdamW).
- The linear scaling rule (Goyal et al., Accurate, Large Minibatch SGD, 2017, Sec. 2.1):
  η = η₀·B/256 for a global batch B of all workers together.
- Fine-tuning: the backbone may learn at `backbone_lr_mult`·η while the new head learns at η.
- The default peak rate (no --lr given): Page's 0.2 for a batch of 256 (How to train your ResNet,
  2018), scaled down linearly below `FULL_RATE_STEPS` optimisation steps in all, to no less than
  a tenth of it (0.02, which learned in every short run measured). Measured (issue 28,
  resnet9_slim on 2 000 Fashion-MNIST images, 7 epochs of 8 steps, one-cycle): peak 0.2 exploded
  (validation loss 4 487 in epoch 1, test top-1 0.10), 0.05 spiked (701, 0.45), 0.02 learned (0.75);
  a run of ~220 steps at 0.2 spiked too and recovered only in its annealing half.
"""
from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "nesterov", "rmsprop", "adam", "adamw")
WD_MODES = ("l2", "decoupled")


PEAK_LR = 0.2
FULL_RATE_STEPS = 560
SHORTEST_RUN_FRACTION = 0.1


def default_lr(total_steps: int) -> float:
    """The peak rate of a run given no --lr: PEAK_LR × total_steps / FULL_RATE_STEPS, clamped to
    [SHORTEST_RUN_FRACTION, 1] × PEAK_LR."""
    return PEAK_LR * min(1.0, max(SHORTEST_RUN_FRACTION, total_steps / FULL_RATE_STEPS))


def scaled_lr(lr: float, global_batch: int, reference_batch: int | None) -> float:
    """η₀·B/B_ref (linear scaling rule); η₀ unchanged without a reference batch."""
    return lr * global_batch / reference_batch if reference_batch else lr


def resolved_wd_mode(optimizer: str, wd_mode: str | None) -> str:
    """AdamW is Adam with decoupled decay; every other optimiser takes L2 unless told otherwise."""
    return wd_mode or ("decoupled" if optimizer == "adamw" else "l2")


def head_parameters(model) -> set[int]:
    """ids of the classifier's parameters (the layer `reset_classifier` replaces), empty if none."""
    get_classifier = getattr(model, "get_classifier", None)
    return {id(p) for p in get_classifier().parameters()} if get_classifier else set()


def _decoupled_decay(optimizer, args, kwargs) -> None:
    # Step pre-hook: w ← w·(1 − η·λ) before the optimiser's own update, as in AdamW.
    with torch.no_grad():
        for group in optimizer.param_groups:
            decay = group.get("decoupled_weight_decay", 0.0)
            if decay:
                torch._foreach_mul_(group["params"], 1.0 - group["lr"] * decay)


def _start_late_momentum(optimizer, args, kwargs) -> None:
    # Step pre-hook: torch's fused SGD takes a group's momentum buffers all or none, so a parameter whose
    # first gradient comes after others have stepped (one frozen for the first stages, as in Faster R-CNN's
    # alternating training) gets a zero buffer, which makes the same first update as none: buf = μ·0 + g.
    for group in optimizer.param_groups:
        state = [optimizer.state[p].get("momentum_buffer") for p in group["params"]]
        if group["momentum"] and any(buf is not None for buf in state):
            for p, buf in zip(group["params"], state):
                if buf is None and p.grad is not None:
                    optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)


def build_optimizer(model, cfg, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimiser of `cfg` over trainable parameters, grouped by (decayed?, head?)."""
    lr = (PEAK_LR if cfg.lr is None else cfg.lr) if lr is None else lr
    mode = resolved_wd_mode(cfg.optimizer, getattr(cfg, "wd_mode", None))
    adam = cfg.optimizer in ("adam", "adamw")
    native_decoupled = adam and mode == "decoupled"      # torch's AdamW
    head = head_parameters(model)
    backbone_mult = getattr(cfg, "backbone_lr_mult", 1.0)
    groups = []
    for decayed in (True, False):
        for in_head in (False, True):
            params = [p for p in model.parameters() if p.requires_grad and (p.ndim > 1) == decayed
                      and (id(p) in head) == in_head]
            if not params:
                continue
            decay = cfg.weight_decay if decayed else 0.0
            group = {"params": params, "lr": lr * (1.0 if in_head else backbone_mult),
                     "weight_decay": decay if mode == "l2" or native_decoupled else 0.0}
            if mode == "decoupled" and not native_decoupled:
                group["decoupled_weight_decay"] = decay
            groups.append(group)
    if adam:
        # Fused Adam rounds differently from foreach on the CPU (~1e-7 per step), which would change
        # the bits of every documented CPU run; on CUDA it is the fast path.
        on_cuda = any(p.is_cuda for p in model.parameters())
        optimizer_class = torch.optim.AdamW if native_decoupled else torch.optim.Adam
        betas = getattr(cfg, "betas", None)   # torch's (0.9, 0.999) unless given (GANs: β1 = 0.5)
        return optimizer_class(groups, lr=lr, **({"betas": tuple(betas)} if betas else {}),
                               **({"fused": True} if on_cuda else {"foreach": True}))
    if cfg.optimizer == "rmsprop":
        # Szegedy et al. (Inception-v3, Sec. 8) train with RMSProp, decay 0.9, ε = 1.0.
        optimizer = torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1.0, momentum=cfg.momentum, foreach=True)
    else:
        # The fused kernel computes SGD's update bit for bit as foreach does, in a third of the time.
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.optimizer == "nesterov",
                                    fused=True)
        optimizer.register_step_pre_hook(_start_late_momentum)
    if mode == "decoupled":
        optimizer.register_step_pre_hook(_decoupled_decay)
    return optimizer
