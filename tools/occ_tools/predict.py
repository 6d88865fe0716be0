"""``occ predict`` and ``occ query``: a trained model over any dataset reader.

``occ predict`` writes Occ3D-format ``OUT/<scene>/<frame>/labels.npz`` (``semantics``, uint8 ``[x, y, z]``, on the
model's grid, which the file stores: :mod:`occ_ros.io.labels`) that ``occ eval`` scores. ``occ query`` scores every
predicted-occupied voxel against a text prompt through the CLIP-feature head (LangOcc) and writes the matching voxels
and a picture.

Models: a PyTorch checkpoint (``.ckpt``), an exported ONNX file (``.onnx``, ONNX Runtime) or a TensorRT engine
(``.engine``), all behind :class:`~occ_ros.inference.backend.InferenceBackend`. Every backend is fed by the one
:func:`~occ_ros.core.preprocess.preprocess` with the model's own settings (its :class:`ModelInfo`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.grid import GridSpec, upsample_labels
from occ_ros.core.preprocess import NetworkInput, preprocess
from occ_ros.datasets import open_dataset
from occ_ros.datasets.sample import LABELS_FILE, DatasetReader, OccupancyLabels, Sample, save_labels
from occ_ros.inference.backend import BackendError, InferenceBackend, backend_for, open_backend
from occ_ros.inference.model_info import ModelInfo
from occ_ros.io.atomic import atomic_savez_compressed, atomic_write_text
from occ_ros.pipeline.query import query_scores

QUERY_FILE = "query.npz"


def open_model_and_data(
    model: str | Path,
    data: str | Path,
    kind: str = "auto",
    dataset_config: str | None = None,
    device: str = "cpu",
    load_gt: bool = False,
    backend: str = "auto",
    features: bool = False,
    sequences: list[str] | None = None,
) -> tuple[InferenceBackend, DatasetReader]:
    """The model (any backend) and the dataset, checked against each other before any frame is predicted.

    Args:
        model: ``.ckpt`` (PyTorch), ``.onnx`` (ONNX Runtime) or ``.engine`` (TensorRT).
        backend: ``auto`` (by suffix) or a name of :data:`~occ_ros.inference.backend.BACKEND_NAMES`.
        features: the CLIP-head ``features`` output is needed (``occ query``).
        sequences: only these sequences of a SemanticKITTI root.
    Raises:
        BackendError: the model cannot be loaded, or lacks a requested output.
        ModelInfoError: naming both sides when the data's vocabulary, camera count or image size do not fit, or when
            the model's grid is neither the data's grid nor a whole-factor coarsening of it (naming both grids).
    """
    options: dict[str, Any] = {}
    if features and backend_for(model, backend) == "torch":
        options["outputs"] = ("labels", "confidence", "features")
    loaded = open_backend(model, backend, device=device, **options)
    if features and "features" not in loaded.info.outputs:
        hint = "export it with `occ export --queries`" if loaded.name != "torch" else "train with loss.clip > 0"
        raise BackendError(f"{model}: the model has no CLIP-feature output ({hint})")
    reader_options: dict[str, Any] = {"config": dataset_config} if dataset_config else {}
    if sequences:
        reader_options["sequences"] = sequences
    reader = open_dataset(data, kind, load_gt=load_gt, **reader_options)
    first = reader.load(0, images=False)
    loaded.info.check_data(first.vocabulary, first.rig, str(model), grid=first.grid, data=str(data))
    return loaded, reader


def prepare(backend: InferenceBackend, sample: Sample) -> NetworkInput:
    """A dataset sample -> the model's input, through the one preprocessing with the model's own settings."""
    return preprocess(sample.images, sample.rig, backend.info.preprocess)


def _frames(reader: DatasetReader, limit: int | None) -> Iterator[int]:
    count = len(reader) if not limit else min(limit, len(reader))
    yield from range(count)


@dataclass
class PredictSummary:
    frames: int
    seconds: float
    out: Path


def on_dataset_grid(labels: np.ndarray, model_grid: GridSpec, dataset_grid: GridSpec | None) -> np.ndarray:
    """The network's labels on the dataset's grid: as they are, or upsampled when the network's grid coarsens it."""
    factor = None if dataset_grid is None else model_grid.coarsening_of(dataset_grid)
    return labels if factor in (None, 1) else upsample_labels(labels, int(factor))


def run_predict(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    kind: str = "auto",
    dataset_config: str | None = None,
    device: str = "cpu",
    limit: int | None = None,
    progress: bool = True,
    on_frame: Callable[[Sample, dict[str, np.ndarray]], None] | None = None,
    backend: str = "auto",
    sequences: list[str] | None = None,
) -> PredictSummary:
    """Predict every frame of a dataset into ``OUT/<scene>/<frame>/labels.npz`` (atomic writes), and into the
    dataset's official prediction format where it has one (SemanticKITTI: ``OUT/sequences/NN/predictions/F.label``).

    Raises:
        BackendError: the model file is missing / corrupt or cannot be loaded by the backend.
        ModelInfoError: its vocabulary, camera count, image size or grid do not match the data (naming both).
    """
    predictor, reader = open_model_and_data(
        model, data, kind, dataset_config, device, False, backend, sequences=sequences
    )
    out = Path(out)
    grid = predictor.info.grid
    start = time.perf_counter()
    indices = list(_frames(reader, limit))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc="predict", unit="frame")
    for i in indices:
        sample = reader.load(i)
        result = predictor(prepare(predictor, sample))
        reader.write_prediction(out, sample, on_dataset_grid(result["labels"], predictor.info.grid, sample.grid))
        save_labels(out / sample.scene / sample.frame / LABELS_FILE, OccupancyLabels(result["labels"], grid=grid))
        if on_frame is not None:
            on_frame(sample, result)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    manifest = {
        "model": str(model),
        "backend": predictor.name,
        "provider": predictor.provider,
        "data": str(data),
        "frames": len(indices),
        "step": predictor.info.step,
    }
    predictor.close()
    atomic_write_text(out / "predict.json", json.dumps(manifest, indent=1))
    return PredictSummary(len(indices), time.perf_counter() - start, out)


# ---------------------------------------------------------------------------------------- occ query
def text_embedding(info: ModelInfo, data: str | Path | None, texts: list[str], where: str = "model") -> np.ndarray:
    """(T, D) unit text embeddings in the space the model's CLIP head was distilled into (the training-side text
    encoder: the runtime reads the embeddings ``occ export --queries`` stored instead). ``data`` is not needed
    for the simulated encoder (kept for callers that pass it)."""
    enc = info.text_encoder
    if not enc or not info.clip_dim:
        raise BackendError(f"{where}: this model has no CLIP-feature head (clip_dim = 0); train with loss.clip > 0")
    if enc.get("kind") == "sim":
        from occ_ros.core.config import from_mapping
        from occ_training.teachers.simulated import SimFeatureConfig, SimTextEncoder

        return SimTextEncoder(info.vocabulary, from_mapping(SimFeatureConfig, enc.get("features", {}))).embed_text(
            texts
        )
    if enc.get("kind") == "hf" and enc.get("feature_model"):
        from occ_training.teachers.hf import MaskClipTeacher

        return MaskClipTeacher(enc["feature_model"]).embed_text(texts)
    raise BackendError(f"{where}: unknown text encoder {enc!r}")


@dataclass
class QuerySummary:
    """``frames`` queried, ``matches`` over all of them (every voxel), and the picture's frame
    (``picture_frame``: frame, voxels shown, scope)."""

    frames: int
    matches: int
    picture: Path | None
    out: Path
    picture_frame: dict[str, Any] | None = None


def run_query(
    model: str | Path,
    data: str | Path,
    text: str,
    out: str | Path,
    kind: str = "auto",
    dataset_config: str | None = None,
    device: str = "cpu",
    limit: int | None = None,
    picture_frame: int | None = None,
    backend: str = "auto",
    sequences: list[str] | None = None,
) -> QuerySummary:
    """``occ query``: per frame ``OUT/<scene>/<frame>/query.npz`` (``similarity``, ``match``, ``points``: (M, 3)
    ego-frame centres of the matching voxels) and ``OUT/query.png`` (bird's-eye view of one frame).

    ``text`` is a prompt name of the model's table (an ONNX exported with ``--queries``: its stored embedding and
    calibrated threshold, what the node uses) or any text (encoded here; no threshold). The match is
    :func:`occ_ros.pipeline.query.query_scores`, the node's rule. The picture shows one frame, every panel masked
    by the camera visibility of the ground truth when the data has one; ``QuerySummary.picture_frame`` says what
    it shows, ``matches`` counts every frame and every voxel."""
    from occ_ros import viz

    predictor, reader = open_model_and_data(
        model, data, kind, dataset_config, device, True, backend, features=True, sequences=sequences
    )
    info = predictor.info
    vocab = info.vocabulary
    from occ_tools.queries import class_prompt_table, query_embedding

    table = info.prompts if info.prompts is not None else class_prompt_table(info)
    query, threshold = query_embedding(info, table, text, str(model))
    classes, class_indices = table.class_embeddings(), table.class_indices(vocab.names)
    grid = info.grid
    out = Path(out)
    indices = list(_frames(reader, limit))
    show = picture_frame if picture_frame is not None else indices[len(indices) // 2]
    total = 0
    picture = None
    shown_frame: dict[str, Any] | None = None
    for i in indices:
        sample = reader.load(i)
        result = predictor(prepare(predictor, sample))
        sim, match = query_scores(
            result["features"], result["labels"], vocab.free_index, query, classes, class_indices, threshold
        )
        points = grid.indices_to_centers(np.argwhere(match)).astype(np.float32)
        atomic_savez_compressed(
            out / sample.scene / sample.frame / QUERY_FILE,
            similarity=sim.astype(np.float16),
            match=match,
            points=points,
        )
        total += int(match.sum())
        if i == show:
            picture = out / "query.png"
            mask = sample.gt.mask_camera if sample.gt is not None else None
            shown = match if mask is None else match & mask
            scope = "camera-visible voxels" if mask is not None else "all voxels"
            panels = [
                viz.bev_image(result["labels"], vocab, mask),
                _bev_match(result["labels"], shown, vocab.free_index, mask),
            ]
            titles = ["predicted semantics", f"query {text!r}: {int(shown.sum())} voxels (red)"]
            if sample.gt is not None:
                panels.insert(0, viz.bev_image(sample.gt.semantics, vocab, sample.gt.mask_camera))
                titles.insert(0, "ground truth")
            viz.legend_figure(
                picture,
                panels,
                titles,
                vocab,
                suptitle=f"{sample.scene} frame {sample.frame} ({scope}; threshold {threshold:g})",
            )
            shown_frame = {"frame": sample.frame, "voxels": int(shown.sum()), "scope": scope}
    record = {"text": text, "frames": len(indices), "matches": total, "threshold": threshold, "picture": shown_frame}
    atomic_write_text(out / "query.json", json.dumps(record))
    return QuerySummary(len(indices), total, picture, out, shown_frame)


def _bev_match(labels: np.ndarray, match: np.ndarray, free_index: int, mask: np.ndarray | None = None) -> np.ndarray:
    """(X, Y, 3) top-down picture in the layout of :func:`occ_ros.viz.bev_image`: grey = occupied, red = match;
    with ``mask`` (the camera visibility), only the masked voxels count, as in the ground-truth panel."""
    from occ_ros import viz

    if mask is not None:
        labels = np.where(mask, labels, free_index)
        match = match & mask
    occupied = viz.bev_labels(labels, free_index) != free_index
    hit = match.any(axis=2)
    rgb = np.full((*occupied.shape, 3), 255, dtype=np.uint8)
    rgb[occupied] = 170
    rgb[hit] = (220, 30, 30)
    return np.ascontiguousarray(rgb[::-1, ::-1])
