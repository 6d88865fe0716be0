"""Synthetic world: procedural scenes, ray-cast cameras and ground-truth occupancy (import name occ_training.synth)."""
