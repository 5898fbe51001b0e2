"""Importing this module registers every experiment (one module per experiment or group)."""
from . import activations, arithmetic, calibration, depth, dropout_ensemble, efficiency, nin_gap, overfitting  # noqa: F401
