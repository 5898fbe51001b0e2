"""The engine: one training loop for every task (trainer.py), with the generic techniques it
applies — optimisers and weight decay (optim.py), learning-rate schedules (schedules.py), EMA,
AGC, fine-tuning, the network options (model_options.py), named recipes, training diagnostics."""
