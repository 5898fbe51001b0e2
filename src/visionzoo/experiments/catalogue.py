"""Importing this module registers every experiment (one module per experiment or group)."""
from . import (activations, adversarial, arithmetic, batchnorm, calibration, compression, depth,  # noqa: F401
               dropout_ensemble, efficiency, family_table, initialisation, nin_gap, overfitting, sweeps,
               transformations)
