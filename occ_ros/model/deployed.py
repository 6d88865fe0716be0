"""The deployed network: :class:`OccupancyNetwork` plus its in-graph post-processing.

One module serves the ONNX export (``occ export`` traces it) and the PyTorch inference backend, so every backend
computes ``labels`` and ``confidence`` the same way (I/O contract in :mod:`occ_ros.inference.model_info`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .network import OccupancyNetwork, decision_logits


class DeployedNetwork(nn.Module):
    """:class:`OccupancyNetwork` with the deployed outputs computed in the graph.

    Args:
        model: the network (eval mode).
        outputs: output names in order, ``("labels", "confidence")`` plus optionally ``logits`` and ``features``.
        half: run the network in float16 (an "FP16 ONNX" for TensorRT 11's strongly typed builds). The inputs stay
            float32 and are cast inside; the projection of voxels into the images stays float32 (the view
            transform does that itself); ``confidence``, ``logits`` and ``features`` are returned as float32.
    """

    def __init__(self, model: OccupancyNetwork, outputs: Sequence[str], half: bool = False) -> None:
        super().__init__()
        self.model = model.half() if half else model
        self.outputs = tuple(outputs)
        self.fp16 = half

    def forward(self, images: torch.Tensor, K: torch.Tensor, cam_from_ego: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, N, 3, H, W), (B, N, 3, 3), (B, N, 4, 4) float32 -> the outputs of ``self.outputs``, in order.

        ``logits`` (B, C, X, Y, Z) = the decision scores, semantic logits + the model's ``decision_bias``
        (:func:`~occ_ros.model.network.decision_logits`); ``labels`` (B, X, Y, Z) uint8 = their argmax over
        classes; ``confidence`` (B, X, Y, Z) = softmax probability of that class, computed as
        ``1 / sum_c exp(l_c - max_c l_c)`` (no full softmax tensor).
        """
        x = images.half() if self.fp16 else images
        out = self.model(x, K, cam_from_ego)
        logits = decision_logits(out["semantics"].float(), self.model.decision_bias)  # (B, C, X, Y, Z)
        top = logits.amax(dim=1, keepdim=True)
        confidence = 1.0 / torch.exp(logits - top).sum(dim=1)
        # via float: TensorRT 8.6 casts to UINT8 only from FP32 / FP16 (its DataType docs), not from the INT32/64
        # index ArgMax gives; class indices < 256 are exact in float32
        labels = logits.argmax(dim=1).float().to(torch.uint8)
        values = {"labels": labels, "confidence": confidence, "logits": logits}
        if "features" in self.outputs:
            values["features"] = out["features"].float()
        return tuple(values[name] for name in self.outputs)
