"""Occupancy metrics in torchmetrics' update/compute shape: Occ3D mIoU/IoU, RayIoU, SemanticKITTI SSC."""
