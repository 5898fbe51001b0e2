"""Importing this module registers every experiment (one module per experiment or group)."""
from . import (activations, adversarial, arithmetic, batchnorm, calibration, depth, dropout_ensemble,  # noqa: F401
               efficiency, initialisation, nin_gap, overfitting, sweeps, transformations)
