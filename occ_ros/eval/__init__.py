"""Occupancy metrics in torchmetrics' update/compute shape: Occ3D mIoU/IoU, RayIoU, SemanticKITTI SSC, depth.

All are :class:`occ_ros.eval.metric.Metric` subclasses (declared sum-states, ``reset``, ``merge``, ``state_dict``)
and the IoU metrics share one confusion-matrix core (ground truth rows x prediction columns).
"""
