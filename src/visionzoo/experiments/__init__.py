"""`visionzoo reproduce`: the claims of the lecture notes as runnable experiments (see base.py)."""
from .base import BUDGETS, EXPERIMENTS, Experiment, Outcome, all_experiments, get_experiment
from .report import reproduce

__all__ = ["BUDGETS", "EXPERIMENTS", "Experiment", "Outcome", "all_experiments", "get_experiment", "reproduce"]
