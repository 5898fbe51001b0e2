"""Knowledge distillation (Hinton, Vinyals & Dean. Distilling the Knowledge in a Neural Network. 2015).

The student matches the teacher's soft targets q_i = exp(z_i/T) / Σ_j exp(z_j/T) at a high
temperature T; since the gradient of the soft term scales as 1/T², it is multiplied by T² so
that the soft and hard terms keep their relative weight whatever T (Sec. 2). The hard term is the
ordinary cross-entropy at T = 1 with weight 1 − α, and the student is evaluated at T = 1.
`visionzoo train --teacher RUN --kd-temperature T --kd-alpha α` (DistillationOptions).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.errors import UsageError
from ..core.options import option, option_group, positive, within
from ..data.loader import Normalizer

KD_TEMPERATURE, KD_ALPHA = 4.0, 0.9   # the default temperature T and weight α of the soft targets


@option_group("knowledge distillation", "loss α·T²·KL(teacher‖student at T) + (1 − α)·CE")
class DistillationOptions:
    teacher: str | None = option(None, "trained run directory or .safetensors (eval mode, no gradient)", metavar="RUN")
    kd_temperature: float = option(KD_TEMPERATURE, "softmax temperature (default {default})", metavar="T", check=positive)
    kd_alpha: float = option(KD_ALPHA, "weight of the soft targets (default {default})", metavar="A",
                             check=within("[0, 1]", "the weight of the soft targets"))

    def check_combination(self) -> None:
        if not self.teacher and (self.kd_temperature, self.kd_alpha) != (KD_TEMPERATURE, KD_ALPHA):
            given = "--kd-temperature" if self.kd_temperature != KD_TEMPERATURE else "--kd-alpha"
            raise UsageError(f"{given} sets the distillation from a --teacher; give --teacher RUN, or leave it out")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = KD_TEMPERATURE, alpha: float = KD_ALPHA,
                      label_smoothing: float = 0.0, hard_loss: torch.Tensor | None = None) -> torch.Tensor:
    """α·T²·KL(q_teacher,T ‖ q_student,T) + (1 − α)·CE(student, targets), both batch means.

    `targets` are class indices or per-class probabilities (mixup/CutMix soft targets).
    `hard_loss`, when given, replaces the CE term (e.g. CE plus auxiliary heads' losses).
    The teacher's logits are treated as constants.
    """
    student_logits = student_logits.float()
    soft_teacher = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    log_soft_student = F.log_softmax(student_logits / temperature, dim=1)
    soft = F.kl_div(log_soft_student, soft_teacher, reduction="batchmean") * temperature ** 2
    if alpha == 1.0:
        return soft
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing) if hard_loss is None else hard_loss
    return alpha * soft + (1.0 - alpha) * hard


class Teacher:
    """A trained network in eval mode, without gradients, fed with its own input normalisation."""

    def __init__(self, source: str | Path, device, num_classes: int, input_size):
        from ..weights import CLASSIFIER_EXAMPLE, check_task, load_checkpoint
        model, meta = load_checkpoint(source)
        check_task(meta, source, "classification", "train --teacher", CLASSIFIER_EXAMPLE)
        classes = meta.get("kwargs", {}).get("num_classes")
        if classes != num_classes:
            raise UsageError(f"--teacher {source}: it predicts {classes} classes, the data has {num_classes}; "
                             "distil from a teacher trained on the same classes")
        if list(meta.get("input_size", input_size)) != list(input_size):
            raise UsageError(f"--teacher {source}: it takes inputs {tuple(meta['input_size'])}, the data gives "
                             f"{tuple(input_size)}; pass the teacher's --image-size")
        self.model = model.to(device).eval().requires_grad_(False)
        self.normalizer = Normalizer(meta["mean"], meta["std"])

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits for images in pixel units (uint8 or float 0–255, as the augmentation leaves them)."""
        return self.model(self.normalizer(pixels)).float()
