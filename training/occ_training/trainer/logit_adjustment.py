"""Post-hoc logit adjustment: undo part of the class weighting when turning scores into labels.

Class-weighted cross-entropy (ENet weights ``w_c``,
:func:`~occ_training.rendering.losses.class_weights_from_frequencies`) trains logits whose softmax approximates
``p(c | x) * w_c`` up to normalisation, so the argmax favours rare classes by ``log w_c``: good for their
recall, but a camera-only network then paints objects into the free space around and behind them. Subtracting
``tau * log w_c`` before the argmax (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021) trades
that recall back for precision; ``tau = 1`` removes the weighting entirely, ``tau = 0`` keeps it. The network
never sees 3D ground truth, so ``tau`` is chosen on the validation sequences' *pseudo-labels* (the training
targets), with the Occ3D mIoU that evaluation uses.

The chosen bias becomes the network's ``decision_bias`` buffer, which every backend (PyTorch, ONNX, TensorRT)
adds in the graph (:func:`~occ_ros.model.network.decision_logits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from occ_ros.core.vocabulary import Vocabulary
from occ_ros.eval.occ3d import Occ3DMetric


def adjustment_bias(class_weights: torch.Tensor, tau: float) -> torch.Tensor:
    """(C,) decision bias ``-tau * log(w_c)`` for (C,) positive class weights."""
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.dim() != 1 or bool((weights <= 0).any()):
        raise ValueError(f"adjustment_bias: need (C,) positive class weights, got {tuple(weights.shape)}")
    return -float(tau) * torch.log(weights)


@dataclass(frozen=True)
class AdjustmentChoice:
    """The outcome of :func:`choose_adjustment`.

    Attributes:
        tau: the chosen strength (the smallest of the best-scoring candidates).
        bias: (C,) the decision bias for ``tau``.
        miou: candidate tau -> Occ3D mIoU (percent) of the adjusted labels against the reference labels.
        frames: how many frames were scored.
    """

    tau: float
    bias: torch.Tensor
    miou: dict[float, float]
    frames: int


def choose_adjustment(
    frames: Iterable[tuple[torch.Tensor, np.ndarray, np.ndarray]],
    class_weights: torch.Tensor,
    vocabulary: Vocabulary,
    taus: Sequence[float],
) -> AdjustmentChoice:
    """Pick the tau whose adjusted argmax best matches the reference labels (Occ3D mIoU, masked voxels).

    Args:
        frames: per frame ``(logits, labels, mask)``: (C, X, Y, Z) semantic logits, (X, Y, Z) integer reference
            labels (e.g. pseudo-labels; values >= C are ignored) and the (X, Y, Z) bool mask of scored voxels.
        class_weights: (C,) the weights the network was trained with.
        taus: candidate strengths (>= 0).
    Raises:
        ValueError: no candidates, or no frame to score.
    """
    if not taus:
        raise ValueError("choose_adjustment: no candidate tau")
    candidates = sorted({float(t) for t in taus})
    biases = {tau: adjustment_bias(class_weights, tau) for tau in candidates}
    metrics = {tau: Occ3DMetric(vocabulary, mask="none") for tau in candidates}
    count = 0
    for logits, labels, mask in frames:
        keep = np.asarray(mask, dtype=bool) & (np.asarray(labels) < len(vocabulary))
        target = np.asarray(labels)[keep]
        for tau in candidates:
            pred = (logits + biases[tau].to(logits.dtype).reshape(-1, 1, 1, 1)).argmax(dim=0).cpu().numpy()
            metrics[tau].update(pred[keep], target)
        count += 1
    if not count:
        raise ValueError("choose_adjustment: no frame to score")
    scores = {tau: metrics[tau].compute().miou for tau in candidates}
    finite = {t: v for t, v in scores.items() if not np.isnan(v)}
    tau = min(finite, key=lambda t: (-finite[t], t)) if finite else candidates[0]
    return AdjustmentChoice(tau=tau, bias=biases[tau], miou=scores, frames=count)
