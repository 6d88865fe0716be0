"""Open-vocabulary voxel queries: the one matching rule of ``occ query`` and of the node's ``~/query`` (numpy only).

Rule (:func:`query_scores`), for a unit query embedding ``q`` and the unit embeddings of the vocabulary's class
prompts (the alternatives):

1. score: the cosine of each voxel's CLIP-head feature with ``q``;
2. the query must win: its score is at least the best score of every class prompt that is not a near-duplicate
   of it (cosine < :data:`~occ_ros.core.prompts.NEAR_DUPLICATE` with ``q``), as in LangOcc's retrieval;
3. the voxel is occupied (predicted class not free);
4. class consistency: when some class prompts are near-duplicates of the query (the query *is* one of the
   vocabulary's classes, e.g. ``car``), the voxel's predicted class must be one of those classes; a query
   outside the vocabulary is decided by its features alone;
5. the score reaches the decision threshold (the prompt's, chosen on a validation sequence at export;
   ``-1`` = none).

Steps 4 and 5 were added in issue 23: without them the "car" query of ``make demo`` matched more road than car
(docs/results.md, "Open-vocabulary queries", has the before / after precision and recall).

Frames: voxel centres are in the grid's (base) frame, as every other output (:mod:`.outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.prompts import NEAR_DUPLICATE, NO_THRESHOLD, PromptError, PromptTable, unit_rows

from .outputs import FLOAT32, UINT8, pointcloud2_fields

__all__ = [
    "QUERY_CLOUD_DTYPE",
    "QUERY_POINT_STEP",
    "QueryCloud",
    "QueryEngine",
    "pack_query_cloud",
    "query_cloud",
    "query_pointcloud2_fields",
    "query_scores",
]


def query_scores(
    features: np.ndarray,
    labels: np.ndarray,
    free_index: int,
    query: np.ndarray,
    class_embeddings: np.ndarray,
    class_indices: np.ndarray | None = None,
    threshold: float = NO_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine score of each voxel to the query, and which voxels match it (the rule of the module docstring).

    Args:
        features: (D, X, Y, Z) per-voxel CLIP-head features (any length; normalised here).
        labels: (X, Y, Z) predicted classes.
        free_index: the vocabulary's free class.
        query: (D,) query embedding (normalised here).
        class_embeddings: (K, D) embeddings of the vocabulary's class prompts (normalised here).
        class_indices: (K,) vocabulary index of each class prompt (step 4); None: no class consistency.
        threshold: decision threshold on the score (step 5).
    Returns:
        score: (X, Y, Z) float32 cosine to the query; match: (X, Y, Z) bool.
    Raises:
        ValueError: shapes that do not fit (naming them).
    """
    features = np.asarray(features)
    if features.ndim != 4:
        raise ValueError(f"features must be (D, X, Y, Z), got shape {features.shape}")
    d = features.shape[0]
    labels = np.asarray(labels)
    if labels.shape != features.shape[1:]:
        raise ValueError(f"labels have shape {labels.shape}, features {features.shape} (D, X, Y, Z)")
    q = unit_rows(np.asarray(query, dtype=np.float32).reshape(-1))
    classes = unit_rows(np.asarray(class_embeddings, dtype=np.float32).reshape(-1, d))
    if q.shape[0] != d:
        raise ValueError(f"the query embedding has {q.shape[0]} values, the features {d} channels")
    flat = features.reshape(d, -1).astype(np.float32, copy=False)
    norms = np.maximum(np.linalg.norm(flat, axis=0), np.float32(1e-12))
    score = (q @ flat) / norms
    similar = classes @ q
    others = classes[similar < NEAR_DUPLICATE]
    match = (labels.reshape(-1) != free_index) & (score >= np.float32(threshold))
    if class_indices is not None:
        own = np.asarray(class_indices).reshape(-1)[similar >= NEAR_DUPLICATE]
        if len(own):
            match &= np.isin(labels.reshape(-1), own)
    candidates = np.flatnonzero(match)  # step 2 only where steps 3-5 hold: the same matches, far less work
    if len(others) and len(candidates):
        best_other = (others @ flat[:, candidates]).max(axis=0) / norms[candidates]
        match[candidates] = score[candidates] >= best_other
    return score.reshape(labels.shape).astype(np.float32), match.reshape(labels.shape)


# ---------------------------------------------------------------------- the output cloud
@dataclass(frozen=True)
class QueryCloud:
    """The voxels matching a query in one frame, M of them, in C-order of their index.

    Attributes:
        points: (M, 3) float32 voxel centres in the grid's (base) frame, metres.
        score: (M,) float32 cosine of each voxel's feature with the query.
        labels: (M,) uint8 predicted class of each voxel.
    """

    points: np.ndarray
    score: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.score.shape[0])


def query_cloud(score: np.ndarray, match: np.ndarray, labels: np.ndarray, grid: GridSpec) -> QueryCloud:
    """The matching voxels of :func:`query_scores` as centres, scores and predicted classes."""
    index = np.argwhere(np.asarray(match))
    points = grid.indices_to_centers(index).astype(np.float32).reshape(-1, 3)
    flat = tuple(index.T)
    return QueryCloud(points, np.asarray(score)[flat].astype(np.float32), np.asarray(labels)[flat].astype(np.uint8))


QUERY_POINT_STEP = 20
"""Bytes per point of ``~/query/voxels`` (see :data:`QUERY_CLOUD_DTYPE`)."""

QUERY_CLOUD_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "score", "label"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "u1"],
        "offsets": [0, 4, 8, 12, 16],
        "itemsize": QUERY_POINT_STEP,
    }
)
"""One point of ``~/query/voxels`` (little endian): ``x, y, z`` float32 at 0/4/8 (base frame, metres), ``score``
float32 at 12 (cosine to the query), ``label`` uint8 at 16 (predicted class), 3 padding bytes (zero)."""

_QUERY_FIELD_CODES = {"x": FLOAT32, "y": FLOAT32, "z": FLOAT32, "score": FLOAT32, "label": UINT8}


def query_pointcloud2_fields() -> list[tuple[str, int, int, int]]:
    """The fields as ``(name, offset, sensor_msgs/PointField datatype, count)``, in offset order."""
    return pointcloud2_fields(QUERY_CLOUD_DTYPE, _QUERY_FIELD_CODES)


def pack_query_cloud(cloud: QueryCloud) -> np.ndarray:
    """(M * QUERY_POINT_STEP,) uint8 little-endian PointCloud2 ``data`` of a query cloud."""
    n = len(cloud)
    packed = np.zeros(n, dtype=QUERY_CLOUD_DTYPE)
    points = np.asarray(cloud.points, dtype=np.float32).reshape(n, 3)
    packed["x"], packed["y"], packed["z"] = points[:, 0], points[:, 1], points[:, 2]
    packed["score"] = np.asarray(cloud.score, dtype=np.float32)
    packed["label"] = np.asarray(cloud.labels, dtype=np.uint8)
    return packed.view(np.uint8).reshape(-1)


# ---------------------------------------------------------------------- the runtime side
class QueryEngine:
    """A model's prompt table and the rule: prompt name + one frame's outputs -> the matching voxels.

    Args:
        table: the model's prompts (``ModelInfo.prompts``).
        class_names: the vocabulary's class names in label order.
        free_index: the free class.
        grid: the output grid.
        threshold: a fixed decision threshold for every prompt; None = each prompt's calibrated one.
    """

    def __init__(
        self,
        table: PromptTable,
        class_names: list[str],
        free_index: int,
        grid: GridSpec,
        threshold: float | None = None,
    ) -> None:
        self.table = table
        self.free_index = int(free_index)
        self.grid = grid
        self.fixed_threshold = threshold
        self._classes = table.class_embeddings()
        self._class_indices = table.class_indices(class_names)

    @property
    def names(self) -> list[str]:
        return self.table.names

    def threshold(self, name: str) -> float:
        """The decision threshold used for prompt ``name``."""
        return self.table.threshold(name) if self.fixed_threshold is None else float(self.fixed_threshold)

    def check(self, name: str) -> str:
        """``name`` if the table knows it.

        Raises:
            PromptError: naming the known prompts.
        """
        self.table.get(name)
        return name

    def __call__(self, name: str, features: np.ndarray, labels: np.ndarray) -> QueryCloud:
        """The voxels matching prompt ``name`` in one frame (``features`` (D, X, Y, Z), ``labels`` (X, Y, Z)).

        Raises:
            PromptError: an unknown prompt name.
        """
        prompt = self.table.get(name)
        if prompt.embedding.shape[-1] != np.asarray(features).shape[0]:
            raise PromptError(
                f"prompt {name!r} has {prompt.embedding.shape[-1]} values, the features {np.asarray(features).shape[0]}"
            )
        score, match = query_scores(
            features,
            labels,
            self.free_index,
            prompt.embedding,
            self._classes,
            self._class_indices,
            self.threshold(name),
        )
        return query_cloud(score, match, labels, self.grid)
