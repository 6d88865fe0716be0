"""Training: pseudo-labels, the network and its losses (import name occ_training)."""
