"""Importing this module registers every experiment (one module per experiment or group)."""
from . import (  # noqa: F401
               activations,
               adversarial,
               arithmetic,
               batchnorm,
               calibration,
               compression,
               depth,
               dropout_ensemble,
               efficiency,
               family_table,
               initialisation,
               nin_gap,
               overfitting,
               segmentation,
               sweeps,
               transformations,
)
