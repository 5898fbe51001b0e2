"""The classification task's batch augmentation: its options, the Augmentation they configure (the
methods themselves are in data/augment.py), and the checks that the network can train with it."""
from __future__ import annotations

from ..core.errors import UsageError
from ..core.options import at_least, option, option_group, within
from ..data.augment import Augmentation, pca_basis

PCA_SAMPLE = 10_000   # images whose pixels estimate the colour covariance
PCA_BATCH = 500       # read and summed this many at a time


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """'SMIN,SMAX' → (SMIN, SMAX)."""
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        raise UsageError(f"{option} {text!r}: write two numbers as MIN,MAX, e.g. 1.0,1.3") from None
    return low, high


def _scale_range(text: str) -> str | None:
    low, high = parse_pair(text, "--scale-jitter")
    if not 1 <= low <= high:
        return "need 1 ≤ SMIN ≤ SMAX (factors of the image side; crops keep the size)"
    return None


@option_group("augmentation")
class AugmentationOptions:
    crop: int = option(2, "random crop with this zero padding (default {default}; 0 = off)", check=at_least(0))
    flip: bool | None = option(None, "horizontal flips (default: on, off for digit data sets)")
    scale_jitter: str | None = option(None, "rescale each batch by S ∈ [SMIN, SMAX] ≥ 1, crop back (VGG)",
                                      metavar="SMIN,SMAX", check=_scale_range)
    scale_jitter_per: str = option("batch", "draw S once per batch (default, as before) or per image (as VGG)",
                                   choices=("batch", "image"))
    fancy_pca: float = option(0.0, "AlexNet lighting noise along the RGB principal components (0.1)",
                              metavar="STD", check=at_least(0))
    gauss_noise: float = option(0.0, "add N(0, STD²) noise per pixel (pixels in [0, 1], clamped): vicinal risk "
                                "minimisation (Chapelle et al.)", metavar="STD", check=at_least(0))
    random_erasing: float = option(0.0, "erase a random rectangle with probability P (Zhong et al.)", metavar="P",
                                   check=within("[0, 1]", "a probability"))
    cutout: int = option(0, "mask a SIZE×SIZE square (at the data mean)", metavar="SIZE", check=at_least(0))
    mixup: float = option(0.0, "mixup with λ ~ Beta(α, α), soft targets", metavar="α", check=at_least(0))
    cutmix: float = option(0.0, "CutMix with λ ~ Beta(α, α), area-corrected", metavar="α", check=at_least(0))


def check_model_fits(cfg, model) -> None:
    """Mixing and distillation need plain logits and cross-entropy: not a network with its own objective."""
    if hasattr(model, "training_loss") and (cfg.mixup or cfg.cutmix or cfg.teacher):
        raise UsageError(f"--mixup/--cutmix/--teacher: {cfg.model} trains with its own objective (hard labels only)")
    if hasattr(model, "training_loss") and cfg.label_smoothing and cfg.label_smoothing_form != "uniform":
        raise UsageError(f"--label-smoothing-form {cfg.label_smoothing_form}: {cfg.model} trains with its own "
                         "objective, which smooths the uniform way; leave the form at uniform")


def build_augmentation(cfg, data, flip: bool) -> Augmentation:
    """The run's Augmentation; fancy PCA's eigen-decomposition comes from (a seeded sample of) the training split."""
    import torch
    pca = None
    if cfg.fancy_pca:
        index = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:PCA_SAMPLE]
        pca = pca_basis(data.train.fetch(chunk)[0] for chunk in index.sort().values.split(PCA_BATCH))
    return Augmentation(crop=cfg.crop, flip=flip,
                        scale_jitter=parse_pair(cfg.scale_jitter, "--scale-jitter") if cfg.scale_jitter else None,
                        scale_jitter_per_image=cfg.scale_jitter_per == "image",
                        fancy_pca=cfg.fancy_pca, gauss_noise=cfg.gauss_noise, pca=pca, random_erasing=cfg.random_erasing, cutout=cfg.cutout,
                        cutout_fill=tuple(255.0 * m for m in data.mean), mixup=cfg.mixup, cutmix=cfg.cutmix)
