"""Evaluate prediction files against ground-truth files (what ``occ eval`` runs).

Pairing: ``pred`` and ``gt`` are each a ``.npz`` file or a directory. Directories are searched
recursively for ``*.npz`` and matched by each file's path relative to its root; ``occ synth``
writes ground truth as ``DIR/gts/<scene>/<frame>/labels.npz`` and predictors write the same
relative layout under their own root. A ground-truth file without a prediction, or the reverse,
is an error that lists the offending paths: nothing is silently skipped.

Loading is the slow part (zlib); files are read on a small thread pool (``np.load`` releases the
GIL while inflating) while the main thread accumulates the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.vocabulary import OCC3D, Vocabulary
from occ_ros.datasets.sample import DatasetReader, LabelFileError, OccupancyLabels, load_labels

from .occ3d import Occ3DMetric, Occ3DResult
from .rayiou import RayIoUMetric, RayIoUResult

#: Show at most this many paths in a pairing error.
_MAX_LISTED = 10


@dataclass(frozen=True)
class LabelPair:
    """A ground-truth file and its prediction; ``key`` is the path relative to the roots."""

    key: str
    gt: Path
    pred: Path


def _npz_files(root: Path) -> dict[str, Path]:
    if root.is_file():
        return {root.name: root}
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.npz"))}
    if not files:
        raise LabelFileError(f"{root}: no .npz label files found (searched recursively)")
    return files


def _listing(keys: list[str], root: Path) -> str:
    shown = "\n  ".join(str(root / k) for k in keys[:_MAX_LISTED])
    more = f"\n  ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"\n  {shown}{more}"


def pair_label_files(pred: str | Path, gt: str | Path) -> list[LabelPair]:
    """Match prediction files to ground-truth files (see the module docstring).

    Two single files are paired directly. Raises:
        FileNotFoundError: a root does not exist.
        LabelFileError: a directory has no ``.npz`` files, or files lack their counterpart
            (the message lists them).
    """
    pred, gt = Path(pred), Path(gt)
    if pred.is_file() and gt.is_file():
        return [LabelPair(gt.name, gt, pred)]
    if pred.is_file() != gt.is_file() and pred.exists() and gt.exists():
        raise LabelFileError(f"--pred {pred} and --gt {gt} must both be files or both be directories")
    gt_files = _npz_files(gt)
    pred_files = _npz_files(pred)
    missing = sorted(set(gt_files) - set(pred_files))
    extra = sorted(set(pred_files) - set(gt_files))
    if missing:
        raise LabelFileError(
            f"{len(missing)} ground-truth file(s) have no prediction under {pred} "
            f"(expected the same relative path):{_listing(missing, pred)}"
        )
    if extra:
        raise LabelFileError(f"{len(extra)} prediction file(s) have no ground truth under {gt}:{_listing(extra, pred)}")
    return [LabelPair(k, gt_files[k], pred_files[k]) for k in sorted(gt_files)]


def load_pair(
    pair: LabelPair, vocabulary: Vocabulary = OCC3D, require_masks: bool = True
) -> tuple[OccupancyLabels, OccupancyLabels]:
    """Read and validate both files of a pair: (prediction, ground truth)."""
    n = len(vocabulary)
    gt = load_labels(pair.gt, num_classes=n, require_masks=require_masks)
    pred = load_labels(pair.pred, num_classes=n, shape=gt.shape)
    return pred, gt


def iter_pairs(
    pairs: list[LabelPair], vocabulary: Vocabulary = OCC3D, require_masks: bool = True, workers: int = 2
) -> Iterator[tuple[LabelPair, OccupancyLabels, OccupancyLabels]]:
    """Yield (pair, prediction, ground truth) in order, loading ahead on ``workers`` threads."""
    if workers <= 1:
        for pair in pairs:
            yield (pair, *load_pair(pair, vocabulary, require_masks))
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead = 4 * workers
        futures = [pool.submit(load_pair, p, vocabulary, require_masks) for p in pairs[:ahead]]
        for i, pair in enumerate(pairs):
            pred, gt = futures[i].result()
            futures[i] = None  # type: ignore[call-overload]  # free the arrays
            if i + ahead < len(pairs):
                futures.append(pool.submit(load_pair, pairs[i + ahead], vocabulary, require_masks))
            yield pair, pred, gt


#: key of a pair -> (T, 3) RayIoU origins in that frame's ego frame.
OriginsLookup = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class EvalReport:
    """Everything ``occ eval`` computed."""

    occ3d: Occ3DResult
    rayiou: RayIoUResult | None = None

    def to_dict(self) -> dict[str, object]:
        out = self.occ3d.to_dict()
        if self.rayiou is not None:
            out["rayiou"] = self.rayiou.to_dict()
        return out


def evaluate(
    pred: str | Path,
    gt: str | Path,
    mask: str = "camera",
    vocabulary: Vocabulary = OCC3D,
    rayiou_origins: OriginsLookup | None = None,
    grid: GridSpec | None = None,
    progress: bool = False,
    workers: int = 2,
) -> EvalReport:
    """Occ3D mIoU/IoU (and RayIoU when ``rayiou_origins`` is given) of every matched file pair.

    Args:
        pred, gt: files or directories (see :func:`pair_label_files`).
        mask: ``camera``, ``lidar`` or ``none``.
        rayiou_origins: maps a pair's key to its (T, 3) query origins; enables RayIoU.
        grid: the label grid (needed for RayIoU; default Occ3D's, or the demo grid for 80x80x8 labels).
    Raises:
        LabelFileError / FileNotFoundError / ValueError, naming the file at fault.
    """
    from tqdm import tqdm

    pairs = pair_label_files(pred, gt)
    metric = Occ3DMetric(vocabulary, mask=mask)
    gt_shape: tuple[int, int, int] | None = None
    for pair, p, g in tqdm(
        iter_pairs(pairs, vocabulary, require_masks=mask != "none", workers=workers),
        total=len(pairs),
        desc="eval",
        unit="frame",
        disable=not progress,
    ):
        try:
            metric.update(p.semantics, g.semantics, g.mask_camera, g.mask_lidar)
        except ValueError as err:
            raise LabelFileError(f"{pair.pred} vs {pair.gt}: {err}") from None
        gt_shape = g.shape
    ray_result = None
    if rayiou_origins is not None and gt_shape is not None:
        origins = [rayiou_origins(pair.key) for pair in pairs]  # fails early, naming the frame
        ray_metric = RayIoUMetric(grid or _grid_for(gt_shape), vocabulary)
        _rayiou_parallel(ray_metric, pairs, origins, workers, progress)
        ray_result = ray_metric.compute()
    return EvalReport(metric.compute(), ray_result)


def _rayiou_chunk(metric: RayIoUMetric, pairs: list[LabelPair], origins: list[np.ndarray]) -> RayIoUMetric:
    """RayIoU counts of a chunk of frames (runs in a worker process; files were validated before)."""
    metric.reset()
    for pair, o in zip(pairs, origins, strict=True):
        pred, gt = load_pair(pair, metric.vocabulary, require_masks=False)
        metric.update(pred.semantics, gt.semantics, o)
    return metric


def _rayiou_parallel(
    metric: RayIoUMetric, pairs: list[LabelPair], origins: list[np.ndarray], workers: int, progress: bool
) -> None:
    """Accumulate RayIoU over all pairs into ``metric``, on ``workers`` processes (ray casting holds the GIL)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    chunk = max(1, min(8, len(pairs) // max(1, 4 * workers)))
    spans = [(i, min(i + chunk, len(pairs))) for i in range(0, len(pairs), chunk)]
    bar = tqdm(total=len(pairs), desc="RayIoU", unit="frame", disable=not progress)
    if workers <= 1 or len(pairs) < 8:  # starting worker processes costs more than a few frames
        for a, b in spans:
            metric.merge(_rayiou_chunk(_fresh(metric), pairs[a:b], origins[a:b]))
            bar.update(b - a)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_rayiou_chunk, _fresh(metric), pairs[a:b], origins[a:b]): b - a for a, b in spans}
            for fut in as_completed(futures):
                metric.merge(fut.result())
                bar.update(futures[fut])
    bar.close()


def _fresh(metric: RayIoUMetric) -> RayIoUMetric:
    return RayIoUMetric(metric.grid, metric.vocabulary, metric.thresholds, metric.directions)


def _grid_for(shape: tuple[int, int, int]) -> GridSpec:
    for grid in (GridSpec.occ3d(), GridSpec.demo()):
        if grid.shape == tuple(shape):
            return grid
    raise ValueError(f"no known grid has shape {shape}; pass the grid explicitly")


def origins_from_reader(reader: DatasetReader, max_origins: int = 8) -> tuple[OriginsLookup, GridSpec]:
    """RayIoU origins for every frame of a dataset, keyed like the label files.

    Keys are ``<scene>/<frame>/labels.npz`` (the Occ3D layout under a ``gts`` root). Each frame's
    origins are the LiDAR positions of its scene's frames (:func:`~occ_ros.eval.rayiou.rayiou_origins`);
    the LiDAR position comes from the sample extras ``lidar_ego_position`` (nuScenes' when absent).
    """
    from .rayiou import NUSCENES_LIDAR_IN_EGO, rayiou_origins

    table: dict[str, tuple[str, int]] = {}
    poses: dict[str, np.ndarray] = {}
    lidar: dict[str, np.ndarray] = {}
    grid: GridSpec | None = None
    for scene, indices in reader.scenes().items():
        samples = [reader.load(i, images=False) for i in indices]
        poses[scene] = np.stack([s.world_from_ego for s in samples])
        first = samples[0]
        lidar[scene] = np.asarray(first.extras.get("lidar_ego_position", NUSCENES_LIDAR_IN_EGO), dtype=np.float64)
        grid = grid or first.grid
        for pos, s in enumerate(samples):
            table[f"{s.scene}/{s.frame}/labels.npz"] = (scene, pos)
    if grid is None:
        raise ValueError(f"{reader.kind} dataset has no samples with a grid; RayIoU needs one")
    eval_grid = grid

    def lookup(key: str) -> np.ndarray:
        try:
            scene, pos = table[key]
        except KeyError:
            raise LabelFileError(
                f"{key}: no frame of that scene/frame in the {reader.kind} dataset; RayIoU needs its ego poses"
            ) from None
        return rayiou_origins(poses[scene], pos, lidar[scene], eval_grid, max_origins=max_origins)

    return lookup, eval_grid


def origins_from_dataset(dataset: str | Path | None, gt: str | Path) -> tuple[OriginsLookup, GridSpec]:
    """RayIoU origins from a dataset directory (default: the ``occ synth`` directory holding ``gt``)."""
    from occ_ros.datasets import open_dataset

    if dataset is None:
        gt = Path(gt)
        candidate = gt.parent if gt.is_dir() else None
        if candidate is None or not (candidate / "meta.json").exists():
            raise ValueError("--rayiou needs the ego poses of the sequence: pass --dataset DIR")
        dataset = candidate
    return origins_from_reader(open_dataset(dataset, load_gt=False))
