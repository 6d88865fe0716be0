"""Teachers: 2D foundation models (and their simulated stand-ins) that the pseudo-labeller asks."""
