"""Adversarial examples and robustness (notes 000 and 003): every attack maps pixel images in
[0, 1] and their labels to adversarial images, `attack(x, y) -> x_adv`; ε is in pixels."""
from .base import Attack, Normalized, choose_targets, evaluating
from .gradient import FGSM, PGD, RandomNoise
from .lbfgs import LBFGS
from .onepixel import OnePixel
from .substitute import SubstituteAttack

__all__ = ["Attack", "Normalized", "choose_targets", "evaluating", "FGSM", "PGD", "RandomNoise", "LBFGS",
           "OnePixel", "SubstituteAttack"]
