"""Pseudo-labels from 2D foundation models: depth calibration, lifting and fusion into occupancy."""
