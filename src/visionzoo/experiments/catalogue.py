"""Importing this module registers every experiment (one module per experiment or group)."""
from . import arithmetic, efficiency, overfitting  # noqa: F401
