"""Training: the trainer, its schedules, checkpoints, evaluation and plots."""
