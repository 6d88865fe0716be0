"""Evaluate prediction files against ground-truth files (what ``occ eval`` runs).

Ground truth (``gt``, ``occ eval --gt``, as ``occ replay --gt``): a ``labels.npz`` file, a folder of them, or a
dataset folder whose reader provides ground truth (an ``occ synth`` folder or a nuScenes root with Occ3D labels):
its ``gts/`` folder (:func:`ground_truth_labels`).

Pairing: ``pred`` and ``gt`` are each a ``.npz`` file or a directory. Directories are searched
recursively for ``*.npz`` and matched by each file's path relative to its root; ``occ synth``
writes ground truth as ``DIR/gts/<scene>/<frame>/labels.npz`` and predictors write the same
relative layout under their own root. A ground-truth file without a prediction, or the reverse,
is an error that lists the offending paths: nothing is silently skipped.

Grids: every file stores its grid (:mod:`occ_ros.io.labels`; official Occ3D files mean Occ3D's). A prediction is
scored on its ground truth's grid: the same grid, or a whole-factor coarsening of it that is upsampled (a network on
a coarser grid than its dataset); any other grid is an error naming both grids and both files.

Loading is the slow part (zlib); files are read on a small thread pool (``np.load`` releases the
GIL while inflating) while the main thread accumulates the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec, coarsening_factor, upsample_labels
from occ_ros.core.semantickitti_labels import SemanticKittiConfig
from occ_ros.core.vocabulary import OCC3D, Vocabulary
from occ_ros.datasets.sample import SEMANTICS_KEY, DatasetReader, LabelFileError, OccupancyLabels, load_labels
from occ_ros.datasets.semantickitti import read_voxels

from .occ3d import Occ3DMetric, Occ3DResult
from .rayiou import RayIoUMetric, RayIoUResult
from .ssc import SSCMetric, SSCResult

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


def is_dataset_folder(path: str | Path) -> bool:
    """An ``occ synth`` folder (``meta.json``) or a nuScenes root (``v1.0-*/``): the datasets whose Occ3D ground truth
    is a ``gts/<scene>/<frame>/labels.npz`` folder."""
    path = Path(path)
    return path.is_dir() and ((path / "meta.json").is_file() or any(p.is_dir() for p in path.glob("v1.0-*")))


def ground_truth_labels(gt: str | Path) -> Path:
    """The ground-truth label file or folder ``gt`` stands for: itself, or a dataset folder's ``gts/``.

    Raises:
        LabelFileError: a dataset folder without a ``gts/`` folder.
    """
    gt = Path(gt)
    if not is_dataset_folder(gt):
        return gt
    labels = gt / "gts"
    if not labels.is_dir():
        raise LabelFileError(
            f"{gt} is a dataset folder without ground truth: no gts/ folder of <scene>/<frame>/labels.npz files"
        )
    return labels


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
    """Read and validate both files of a pair: (prediction, ground truth), the prediction on the ground truth's grid.

    A prediction whose grid coarsens the ground truth's by a whole factor (a network on a coarser grid than its
    dataset, e.g. models/kitti.ckpt's 0.4 m under SemanticKITTI's 0.2 m) is upsampled to it, as ``occ predict``
    does for a dataset's official files. Files without a grid (written before label files stored theirs) must
    have the ground truth's shape.

    Raises:
        LabelFileError: naming the file(s) at fault; for a grid mismatch, both files and both grids.
    """
    n = len(vocabulary)
    gt = load_labels(pair.gt, num_classes=n, require_masks=require_masks)
    pred = load_labels(pair.pred, num_classes=n)
    return on_gt_grid(pred, gt, pair), gt


def on_gt_grid(pred: OccupancyLabels, gt: OccupancyLabels, pair: LabelPair) -> OccupancyLabels:
    """``pred`` on ``gt``'s grid: as it is, or upsampled when its grid coarsens the ground truth's.

    Raises:
        LabelFileError: naming both files and both grids when the prediction's grid is neither the ground truth's
            nor a whole-factor coarsening of it; naming the prediction when the shapes differ and a grid is unknown.
    """
    if pred.grid is None or gt.grid is None:
        if pred.shape != gt.shape:
            raise LabelFileError(f"{pair.pred}: {SEMANTICS_KEY} has shape {pred.shape}, expected {gt.shape}")
        return pred
    try:
        factor = coarsening_factor(pred.grid, gt.grid, f"the prediction {pair.pred}", f"the ground truth {pair.gt}")
    except ValueError as err:
        raise LabelFileError(str(err)) from None
    if factor == 1:
        return pred
    return OccupancyLabels(upsample_labels(pred.semantics, factor), grid=gt.grid)


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
        pred, gt: files or directories (see :func:`pair_label_files`); ``gt`` may be a dataset folder
            (:func:`ground_truth_labels`).
        mask: ``camera``, ``lidar`` or ``none``.
        rayiou_origins: maps a pair's key to its (T, 3) query origins; enables RayIoU.
        grid: the dataset's label grid (for RayIoU): every ground-truth file that stores a grid must be on it.
            Default: the ground truth's stored grid, else Occ3D's or the demo grid by shape.
    Predictions are scored on the ground truth's grid (:func:`load_pair`: a prediction on a whole-factor coarsening
    of it is upsampled; any other grid is an error naming both grids and both files).
    Raises:
        LabelFileError / FileNotFoundError / ValueError, naming the file at fault.
    """
    from tqdm import tqdm

    pairs = pair_label_files(pred, ground_truth_labels(gt))
    metric = Occ3DMetric(vocabulary, mask=mask)
    gt_shape: tuple[int, int, int] | None = None
    gt_grid, grid_source = grid, "the dataset's grid"
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
        if g.grid is not None and gt_grid is not None and g.grid != gt_grid and rayiou_origins is not None:
            raise LabelFileError(
                f"grid mismatch: the ground truth {pair.gt} has grid {g.grid.describe()}, but {grid_source} is "
                f"{gt_grid.describe()}; RayIoU casts rays through one grid"
            )
        if gt_grid is None and g.grid is not None:
            gt_grid, grid_source = g.grid, f"the grid of {pair.gt}"
    ray_result = None
    if rayiou_origins is not None and gt_shape is not None:
        origins = [rayiou_origins(pair.key) for pair in pairs]  # fails early, naming the frame
        ray_metric = RayIoUMetric(gt_grid or _grid_for(gt_shape), vocabulary)
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
    """RayIoU origins from a dataset directory (default: ``gt`` itself when it is an ``occ synth`` directory, else
    the ``occ synth`` directory holding it)."""
    from occ_ros.datasets import open_dataset

    if dataset is None:
        gt = Path(gt)
        candidate = (gt if is_dataset_folder(gt) else gt.parent) if gt.is_dir() else None
        if candidate is None or not (candidate / "meta.json").exists():
            raise ValueError("--rayiou needs the ego poses of the sequence: pass --dataset DIR")
        dataset = candidate
    return origins_from_reader(open_dataset(dataset, load_gt=False))


# ---------------------------------------------------------------------------------------------- SemanticKITTI
def _label_stems(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.iterdir() if p.suffix == ".label"}


def _progress(items: list[tuple[Path, Path]], enabled: bool) -> Iterable[tuple[Path, Path]]:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return items
    return tqdm(items, desc="SSC eval", unit="frame")


def evaluate_semantickitti(
    pred_root: str | Path,
    gt_root: str | Path,
    sequences: Sequence[int | str] | None = None,
    progress: bool = True,
    config: SemanticKittiConfig | str | Path | None = None,
    mask: str = "lidar",
) -> SSCResult:
    """Official SSC evaluation over a folder of predictions.

    Pairs every ``GT_ROOT/sequences/NN/voxels/F.label`` (with ``F.invalid`` beside it) with
    ``PRED_ROOT/sequences/NN/predictions/F.label`` (raw uint16 ids, the official submission layout).

    Args:
        sequences: sequence numbers or names (default: every GT sequence with ``voxels/*.label``).
        mask: ``lidar`` (official: every voxel not ``invalid``) or ``camera`` (also only voxels of
            ``F.camera_mask``, the image_2 frustum).
    Raises:
        LabelFileError: listing missing prediction files or prediction files without ground truth,
            or naming a file of the wrong size or with unknown label ids.
    """
    if mask not in ("lidar", "camera"):
        raise ValueError(f"mask must be 'lidar' or 'camera', got {mask!r}")
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    gt_seq_root = gt_root / "sequences"
    if sequences is None:
        if not gt_seq_root.is_dir():
            raise LabelFileError(f"{gt_seq_root}: not found (expected GT_ROOT/sequences/NN/voxels/*.label)")
        names = sorted(
            p.name for p in gt_seq_root.iterdir() if p.is_dir() and p.name.isdigit() and _label_stems(p / "voxels")
        )
    else:
        names = [f"{int(s):02d}" for s in sequences]
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
    extra: list[str] = []
    for name in names:
        gt_dir = gt_seq_root / name / "voxels"
        pred_dir = pred_root / "sequences" / name / "predictions"
        gt_stems = _label_stems(gt_dir)
        if not gt_stems:
            raise LabelFileError(f"{gt_dir}: no ground-truth .label files for sequence {name}")
        pred_stems = _label_stems(pred_dir)
        missing.extend(str(pred_dir / f"{s}.label") for s in sorted(gt_stems - pred_stems))
        extra.extend(str(pred_dir / f"{s}.label") for s in sorted(pred_stems - gt_stems))
        pairs.extend((gt_dir / f"{s}.label", pred_dir / f"{s}.label") for s in sorted(gt_stems))
    if not pairs:
        raise LabelFileError(f"{gt_seq_root}: no sequences with voxels/*.label ground truth")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing prediction file(s): " + ", ".join(missing[:10]))
    if extra:
        problems.append(f"{len(extra)} prediction file(s) without ground truth: " + ", ".join(extra[:10]))
    if mask == "camera":
        no_mask = [str(g.with_suffix(".camera_mask")) for g, _ in pairs if not g.with_suffix(".camera_mask").is_file()]
        if no_mask:
            problems.append(
                f"{len(no_mask)} ground-truth frame(s) without a camera mask (build them with `occ gt --from-lidar`, "
                "or evaluate with mask 'lidar'): " + ", ".join(no_mask[:10])
            )
    if problems:
        raise LabelFileError("; ".join(problems) + (" ..." if len(missing) > 10 or len(extra) > 10 else ""))

    metric = SSCMetric()
    for gt_path, pred_path in _progress(pairs, progress):
        gt_raw = read_voxels(gt_path, "label")
        invalid = read_voxels(gt_path.with_suffix(".invalid"), "invalid")
        if mask == "camera":
            invalid = invalid | (read_voxels(gt_path.with_suffix(".camera_mask"), "camera_mask") == 0)
        pred_raw = read_voxels(pred_path, "label")
        try:
            metric.update_raw(pred_raw, gt_raw, invalid, config=config)
        except ValueError as err:
            raise LabelFileError(f"{pred_path} (ground truth {gt_path}): {err}") from None
    return metric.compute()
