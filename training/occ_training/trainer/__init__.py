"""``occ train``: typed configs, the training data, the objective, DDP, checkpoints and the training loop."""
