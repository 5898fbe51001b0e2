"""The training techniques of `TrainConfig` beyond the basic loop: their validation and the
batch augmentation they configure (see data/augment.py, optim.py, schedules.py, agc.py, ema.py,
distill.py and finetune.py for the methods themselves)."""
from __future__ import annotations

from ..data.augment import Augmentation, pca_basis
from ..core.errors import UsageError
from ..tasks.classification import TTA_MODES
from .optim import WD_MODES

PCA_SAMPLE = 10_000   # images whose pixels estimate the colour covariance
PCA_BATCH = 500       # read and summed this many at a time


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """'SMIN,SMAX' → (SMIN, SMAX)."""
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r}: write two numbers as MIN,MAX, e.g. 1.0,1.3") from None
    return low, high


def validate_techniques(cfg) -> None:
    """One clear line for every setting of augmentation, optimisation, losses and transfer that cannot work."""
    def fail(message):
        raise UsageError(message)
    if cfg.scale_jitter is not None:
        low, high = parse_pair(cfg.scale_jitter, "--scale-jitter")
        if not 1 <= low <= high:
            fail(f"--scale-jitter {cfg.scale_jitter}: need 1 ≤ SMIN ≤ SMAX (factors of the image side; crops keep the size)")
    for option, value in (("--fancy-pca", cfg.fancy_pca), ("--mixup", cfg.mixup), ("--cutmix", cfg.cutmix),
                          ("--cutout", cfg.cutout), ("--kd-temperature", cfg.kd_temperature)):
        if value < 0 or (option == "--kd-temperature" and value == 0):
            fail(f"{option} must be positive, got {value}")
    for option, value in (("--random-erasing", cfg.random_erasing), ("--kd-alpha", cfg.kd_alpha)):
        if not 0 <= value <= 1:
            fail(f"{option} is a probability/weight in [0, 1], got {value}")
    if cfg.test_tta not in TTA_MODES:
        fail(f"--test-tta {cfg.test_tta!r}: choose one of {', '.join(TTA_MODES)}")
    if cfg.ema is not None and not 0 < cfg.ema < 1:
        fail(f"--ema is a decay in (0, 1) such as 0.999, got {cfg.ema}")
    for option, value in (("--agc", cfg.agc), ("--lr-scale-batch", cfg.lr_scale_batch),
                          ("--early-stop", cfg.early_stop), ("--backbone-lr-mult", cfg.backbone_lr_mult)):
        if value is not None and not value > 0:
            fail(f"{option} must be positive, got {value}")
    if cfg.plateau_patience < 0:
        fail(f"--plateau-patience must be ≥ 0, got {cfg.plateau_patience}")
    if cfg.wd_mode is not None and cfg.wd_mode not in WD_MODES:
        fail(f"--wd-mode {cfg.wd_mode!r}: choose one of {', '.join(WD_MODES)}")
    if cfg.optimizer == "adamw" and cfg.wd_mode == "l2":
        fail("--optimizer adamw decouples weight decay by definition; for Adam with L2 use --optimizer adam --wd-mode l2")
    if sorted(cfg.milestones) != list(cfg.milestones) or any(m <= 0 for m in cfg.milestones):
        fail(f"--milestones {cfg.milestones}: give increasing positive epochs, e.g. 30,60,80")
    if cfg.schedule == "multistep" and not cfg.milestones:
        fail("--schedule multistep needs --milestones, e.g. --milestones 30,60,80")
    if cfg.adv and (cfg.mixup or cfg.cutmix or cfg.teacher):
        fail("--adv cannot be combined with --mixup/--cutmix/--teacher: adversarial training uses hard labels")
    if cfg.freeze_backbone and not cfg.finetune:
        fail("--freeze-backbone needs --finetune CHECKPOINT: a random backbone is no feature extractor")


def check_model_fits(cfg, model) -> None:
    """Mixing and distillation need plain logits and cross-entropy: not a network with its own objective."""
    if hasattr(model, "training_loss") and (cfg.mixup or cfg.cutmix or cfg.teacher):
        raise UsageError(f"--mixup/--cutmix/--teacher: {cfg.model} trains with its own objective (hard labels only)")


def build_augmentation(cfg, data, flip: bool) -> Augmentation:
    """The run's Augmentation; fancy PCA's eigen-decomposition comes from (a seeded sample of) the training split."""
    import torch
    pca = None
    if cfg.fancy_pca:
        index = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:PCA_SAMPLE]
        pca = pca_basis(data.train.fetch(chunk)[0] for chunk in index.sort().values.split(PCA_BATCH))
    return Augmentation(crop=cfg.crop, flip=flip,
                        scale_jitter=parse_pair(cfg.scale_jitter, "--scale-jitter") if cfg.scale_jitter else None,
                        fancy_pca=cfg.fancy_pca, pca=pca, random_erasing=cfg.random_erasing, cutout=cfg.cutout,
                        cutout_fill=tuple(255.0 * m for m in data.mean), mixup=cfg.mixup, cutmix=cfg.cutmix)
