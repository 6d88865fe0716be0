"""The camera-only occupancy network: image backbone, voxel-sampling view transform, BEV/3D necks and heads."""
