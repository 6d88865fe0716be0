"""Differentiable volume rendering of the occupancy volumes: rays, samplers, fields, renderer, losses."""
