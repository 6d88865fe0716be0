"""SemanticKITTI semantic scene completion: voxel file IO, label maps and a dataset reader.

Layout (official KITTI odometry + SemanticKITTI voxels)::

    ROOT/sequences/NN/image_2/NNNNNN.{png,jpg}  left colour camera (CAM2)
    ROOT/sequences/NN/calib.txt                 P0..P3 (3x4) and Tr (3x4, Velodyne -> rectified cam0)
    ROOT/sequences/NN/poses.txt                 3x4 cam0 poses in the first cam0 frame, one per image
    ROOT/sequences/NN/times.txt                 frame times, seconds, one per image
    ROOT/sequences/NN/voxels/NNNNNN.{bin,label,invalid,occluded}
    ROOT/sequences/NN/velodyne/NNNNNN.bin       LiDAR scans (evaluation ground truth only: read_scan)
    ROOT/sequences/NN/labels/NNNNNN.label       per-point labels of the scans (read_scan_labels)

Voxel files hold a 256x256x32 grid, flattened C-order as ``[x, y, z]`` (x forward, y left,
z up) in the Velodyne frame, lower corner (0, -25.6, -2) m, 0.2 m voxels
(:data:`SEMANTICKITTI_GRID`). ``.bin`` / ``.invalid`` / ``.occluded`` are bit-packed, most
significant bit first (bit 7 of byte 0 is voxel 0); ``.label`` is one little-endian uint16
raw SemanticKITTI id per voxel. ``.camera_mask`` (ours, written by :mod:`occ_ros.eval.lidar_gt`) is
bit-packed like ``.invalid``: 1 = the voxel centre projects into image_2 in front of the camera.
The ego frame of the reader's samples is the Velodyne frame.

Label ids: *raw* ids (10 car, 252 moving-car, ...) are stored in files; *learning* ids 0..19
are the evaluation classes (0 = empty in completion, 255 = ignore); our vocabulary
(``config/vocabularies/semantickitti.yaml``) puts learning ids 1..19 at 0..18 and ``free`` at 19.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera, CameraRig, config_path, default_frame_id
from occ_ros.core.semantickitti_labels import (
    LEARNING_CLASS_NAMES,
    NUM_LEARNING_CLASSES,
    OFFICIAL_CLASS_NAMES,
    SemanticKittiConfig,
    completion_lut,
    load_semantickitti_config,
    remap_completion,
)
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import IGNORE_LABEL, DatasetReader, LabelFileError, OccupancyLabels, Sample
from occ_ros.io.atomic import atomic_write_bytes

#: Voxel grid shape [x, y, z] of every SemanticKITTI voxel file.
VOXEL_SHAPE: tuple[int, int, int] = (256, 256, 32)
NUM_VOXELS = VOXEL_SHAPE[0] * VOXEL_SHAPE[1] * VOXEL_SHAPE[2]
#: The SSC volume in the Velodyne frame.
SEMANTICKITTI_GRID = GridSpec((0.0, -25.6, -2.0), (51.2, 25.6, 4.4), (0.2, 0.2, 0.2))
#: Voxel file kinds (= file suffixes without the dot); all but ``label`` are bit-packed.
PACKED_KINDS = ("bin", "invalid", "occluded", "camera_mask")
VOXEL_KINDS = (*PACKED_KINDS, "label")
#: Image file suffixes accepted in ``image_2`` (the official data is PNG; re-encoded copies are JPEG).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VOCABULARY_CONFIG = ("vocabularies", "semantickitti.yaml")
CAMERA_NAME = "CAM2"


# ---------------------------------------------------------------------------------------------- voxel IO
def unpack_bits(packed: np.ndarray) -> np.ndarray:
    """(N,) packed bytes -> (8N,) uint8 0/1, most significant bit first (official ``unpack``)."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8).reshape(-1), bitorder="big")


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`unpack_bits`: any-shape 0/1 (or bool), size a multiple of 8, flattened
    C-order -> (size/8,) uint8, most significant bit first."""
    flat = np.asarray(bits).reshape(-1)
    if flat.size % 8:
        raise ValueError(f"cannot bit-pack {flat.size} values: the count must be a multiple of 8")
    if flat.dtype != np.bool_ and flat.size and not np.all((flat == 0) | (flat == 1)):
        raise ValueError("bit-packing expects 0/1 values")
    return np.packbits(flat.astype(bool), bitorder="big")


def _kind_of(path: Path, kind: str | None) -> str:
    kind = kind if kind is not None else path.suffix.lstrip(".")
    if kind not in VOXEL_KINDS:
        raise ValueError(f"{path}: unknown voxel file kind {kind!r}; expected one of {VOXEL_KINDS}")
    return kind


def read_voxels(path: str | Path, kind: str | None = None) -> np.ndarray:
    """Read a SemanticKITTI voxel file as a (256, 256, 32) array indexed [x, y, z].

    Args:
        path: the file; ``kind`` defaults to its suffix (bin, label, invalid, occluded).
    Returns:
        uint8 0/1 for bit-packed kinds, uint16 raw SemanticKITTI ids for ``label``.
    Raises:
        LabelFileError: naming the file, when it is missing or has the wrong size.
    """
    path = Path(path)
    kind = _kind_of(path, kind)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(f"{path}: file not found (expected a SemanticKITTI .{kind} voxel file)") from None
    except OSError as err:
        raise LabelFileError(f"{path}: cannot read ({err.strerror})") from None
    if kind == "label":
        expected = NUM_VOXELS * 2
        if len(raw) != expected:
            raise LabelFileError(f"{path}: {len(raw)} bytes, expected {expected} (256*256*32 uint16 labels)")
        return np.frombuffer(raw, dtype="<u2").astype(np.uint16).reshape(VOXEL_SHAPE)
    expected = NUM_VOXELS // 8
    if len(raw) != expected:
        raise LabelFileError(f"{path}: {len(raw)} bytes, expected {expected} (256*256*32 bits, bit-packed)")
    return unpack_bits(np.frombuffer(raw, dtype=np.uint8)).reshape(VOXEL_SHAPE)


def write_voxels(path: str | Path, array: np.ndarray, kind: str | None = None) -> None:
    """Write a (256, 256, 32) [x, y, z] array in the official format of ``kind`` (default: suffix).

    Packed kinds take 0/1 or bool; ``label`` takes raw ids 0..65535 (written as uint16 LE).
    """
    path = Path(path)
    kind = _kind_of(path, kind)
    arr = np.asarray(array)
    if arr.shape != VOXEL_SHAPE:
        raise ValueError(f"{path}: voxel array has shape {arr.shape}, expected {VOXEL_SHAPE}")
    if kind == "label":
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 0xFFFF)):
            raise ValueError(f"{path}: labels must be integers in 0..65535, got {arr.dtype}")
        data = arr.astype("<u2").tobytes()
    else:
        data = pack_bits(arr).tobytes()
    atomic_write_bytes(path, data)


# ---------------------------------------------------------------------------------------------- label maps
# SemanticKittiConfig, load_semantickitti_config, completion_lut, remap_completion: occ_ros.core.semantickitti_labels


_LEARNING_TO_VOCAB = np.full(256, -1, dtype=np.int16)
_LEARNING_TO_VOCAB[1:NUM_LEARNING_CLASSES] = np.arange(NUM_LEARNING_CLASSES - 1)
_LEARNING_TO_VOCAB[0] = NUM_LEARNING_CLASSES - 1
_LEARNING_TO_VOCAB[IGNORE_LABEL] = IGNORE_LABEL
_VOCAB_TO_LEARNING = np.full(256, -1, dtype=np.int16)
_VOCAB_TO_LEARNING[: NUM_LEARNING_CLASSES - 1] = np.arange(1, NUM_LEARNING_CLASSES)
_VOCAB_TO_LEARNING[NUM_LEARNING_CLASSES - 1] = 0
_VOCAB_TO_LEARNING[IGNORE_LABEL] = IGNORE_LABEL


def _apply_uint8_lut(labels: np.ndarray, lut: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{what} labels must be integers, got {labels.dtype}")
    if labels.size == 0:
        return np.zeros(labels.shape, dtype=np.uint8)
    out = lut[np.clip(labels, 0, 255)]
    bad = (labels < 0) | (labels > 255) | (out < 0)
    if bad.any():
        raise ValueError(f"invalid {what} label values {np.unique(labels[bad]).tolist()[:20]}")
    return out.astype(np.uint8)


def learning_to_vocab(labels: np.ndarray) -> np.ndarray:
    """Learning ids -> vocabulary indices (uint8): 1..19 -> 0..18, 0 -> 19 (free), 255 -> 255."""
    return _apply_uint8_lut(labels, _LEARNING_TO_VOCAB, "learning (0..19, 255)")


def vocab_to_learning(labels: np.ndarray) -> np.ndarray:
    """Vocabulary indices -> learning ids (uint8): 0..18 -> 1..19, 19 (free) -> 0, 255 -> 255."""
    return _apply_uint8_lut(labels, _VOCAB_TO_LEARNING, "vocabulary (0..19, 255)")


def learning_to_raw(labels: np.ndarray, config: SemanticKittiConfig | str | Path | None = None) -> np.ndarray:
    """Learning ids 0..19 -> uint16 raw ids through ``learning_map_inv`` (what a submission stores)."""
    cfg = load_semantickitti_config(config)
    lut = np.array([cfg.learning_map_inv[i] for i in range(NUM_LEARNING_CLASSES)], dtype=np.uint16)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or (labels.size and (labels.min() < 0 or labels.max() >= NUM_LEARNING_CLASSES)):
        bad = np.unique(labels[(labels < 0) | (labels >= NUM_LEARNING_CLASSES)]).tolist() if labels.size else []
        found = bad[:20] or labels.dtype
        raise ValueError(f"learning ids must be integers 0..{NUM_LEARNING_CLASSES - 1}, found {found}")
    return lut[labels]


def prediction_path(root: str | Path, sequence: str, frame: str) -> Path:
    """``ROOT/sequences/NN/predictions/F.label``: where the official SSC evaluation looks for a prediction."""
    return Path(root) / "sequences" / sequence / "predictions" / f"{frame}.label"


def write_prediction(
    path: str | Path, semantics: np.ndarray, config: SemanticKittiConfig | str | Path | None = None
) -> Path:
    """Write (256, 256, 32) [x, y, z] vocabulary labels as an official prediction file (atomic).

    Vocabulary indices go to learning ids (``free`` -> 0) and then to raw ids through ``learning_map_inv``,
    stored as little-endian uint16 in the order of the official voxel files.

    Raises:
        ValueError: naming the file, for a wrong shape or a value that is no vocabulary class (255 included:
            a prediction must say something about every voxel).
    """
    path = Path(path)
    semantics = np.asarray(semantics)
    if semantics.shape != VOXEL_SHAPE:
        raise ValueError(f"{path}: prediction has shape {semantics.shape}, expected {VOXEL_SHAPE} [x, y, z]")
    if semantics.dtype.kind in "iu" and np.any(semantics == IGNORE_LABEL):
        raise ValueError(f"{path}: prediction holds 255 (unknown); every voxel needs a class or free")
    try:
        raw = learning_to_raw(vocab_to_learning(semantics), config)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_voxels(path, raw, "label")
    return path


def semantickitti_vocabulary() -> Vocabulary:
    """The shipped SemanticKITTI vocabulary (19 classes in learning-id order, then ``free``)."""
    return _vocabulary_cached(str(config_path(*VOCABULARY_CONFIG)))


@functools.lru_cache(maxsize=4)
def _vocabulary_cached(path: str) -> Vocabulary:
    return Vocabulary.from_yaml(path)


# ---------------------------------------------------------------------------------------------- text files
def read_calib(path: str | Path) -> dict[str, np.ndarray]:
    """KITTI ``calib.txt`` -> key (P0..P3, Tr) -> (3, 4) float64. Raises naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: calibration file not found (expected P0..P3 and Tr lines)") from None
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, values = line.partition(":")
        if not sep:
            raise ValueError(f"{path}:{lineno}: expected 'KEY: 12 numbers', got {line[:60]!r}")
        try:
            nums = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: non-numeric values in {key.strip()!r}") from None
        if nums.size != 12:
            raise ValueError(f"{path}:{lineno}: {key.strip()!r} has {nums.size} numbers, expected 12 (a 3x4 matrix)")
        out[key.strip()] = nums.reshape(3, 4)
    return out


def read_poses(path: str | Path) -> np.ndarray:
    """KITTI ``poses.txt`` (one row-major 3x4 per line) -> (N, 4, 4) float64."""
    path = Path(path)
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: poses file not found (expected one 3x4 cam0 pose per frame)") from None
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    for i, row in enumerate(rows):
        if len(row) != 12:
            raise ValueError(f"{path}:{i + 1}: {len(row)} numbers, expected 12 (a row-major 3x4 pose)")
        try:
            poses[i, :3, :] = np.array([float(v) for v in row]).reshape(3, 4)
        except ValueError:
            raise ValueError(f"{path}:{i + 1}: non-numeric pose values") from None
    return poses


def read_times(path: str | Path) -> np.ndarray:
    """KITTI ``times.txt`` (seconds, one per line) -> (N,) int64 nanoseconds."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: times file not found (expected one time in seconds per frame)") from None
    try:
        secs = np.array([float(v) for v in lines], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: expected one number (seconds) per line") from None
    return np.round(secs * 1e9).astype(np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image: a PNG from its header, without decoding; anything else via cv2."""
    with path.open("rb") as f:
        head = f.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    image = _read_image(path)
    return image.shape[1], image.shape[0]


def _read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: cannot read image (missing or not an image)")
    return np.ascontiguousarray(image[..., ::-1])


def _frame_numbers(folder: Path, suffix: str) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.iterdir() if p.suffix == suffix and p.stem.isdigit())


def image_files(folder: str | Path) -> dict[int, Path]:
    """Frame number -> image path of ``folder`` (``NNNNNN.png`` / ``.jpg`` / ``.jpeg``), sorted by number.

    Raises:
        ValueError: naming the folder when a frame has images in two formats (e.g. both .png and .jpg).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    out: dict[int, Path] = {}
    for p in folder.iterdir():
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit():
            number = int(p.stem)
            if number in out:
                raise ValueError(f"{folder}: frame {p.stem} has two images ({out[number].name}, {p.name}); keep one")
            out[number] = p
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------- LiDAR scans
#: Raw SemanticKITTI ids of moving objects (moving-car .. moving-other-vehicle).
MOVING_RAW_IDS = range(252, 260)


def _read_records(path: Path, dtype: str, per_record: int, expected: str) -> np.ndarray:
    """The little-endian ``dtype`` values of a binary per-point file, ``per_record`` of them per point.

    Raises:
        LabelFileError: naming the file, when it is missing or not a whole number of records (``expected`` says
            what a record is).
    """
    size = np.dtype(dtype).itemsize * per_record
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(f"{path}: file not found (expected {expected})") from None
    if len(raw) % size:
        raise LabelFileError(f"{path}: {len(raw)} bytes, not a multiple of {size} ({expected})")
    return np.frombuffer(raw, dtype=dtype)


def read_scan(path: str | Path) -> np.ndarray:
    """A KITTI Velodyne scan ``velodyne/F.bin`` -> (N, 4) float32 x, y, z (metres, Velodyne frame), remission.

    Raises:
        LabelFileError: naming the file, when it is missing or its size is not a multiple of 16 bytes.
    """
    values = _read_records(Path(path), "<f4", 4, "a Velodyne scan: float32 x, y, z, remission per point")
    return values.astype(np.float32).reshape(-1, 4)


def read_scan_labels(path: str | Path, num_points: int | None = None, scan: str | Path | None = None) -> np.ndarray:
    """Per-point SemanticKITTI labels ``labels/F.label`` -> (N,) uint32 (lower 16 bits: raw semantic id,
    upper 16 bits: instance id).

    Args:
        num_points: when given, the point count of the matching scan (``scan`` names it in errors).
    Raises:
        LabelFileError: naming the file(s) when it is missing, not whole uint32s, or its length does not match.
    """
    path = Path(path)
    labels = _read_records(path, "<u4", 1, "one uint32 label per point of its scan").astype(np.uint32)
    if num_points is not None and labels.size != num_points:
        raise LabelFileError(
            f"{path}: {labels.size} labels, but {scan or 'its scan'} has {num_points} points (expected one per point)"
        )
    return labels


def check_scan_pair(scan: str | Path, labels: str | Path) -> int:
    """Check from the file sizes alone (no reading) that ``labels`` has one uint32 per point of ``scan``.

    Returns:
        the point count.
    Raises:
        LabelFileError: naming the file that is missing or whose length does not match.
    """
    scan, labels = Path(scan), Path(labels)
    sizes = []
    for path, what in ((scan, "Velodyne scan"), (labels, "per-point .label file")):
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            raise LabelFileError(f"{path}: file not found (expected the {what} of this frame)") from None
    if sizes[0] % 16:
        raise LabelFileError(f"{scan}: {sizes[0]} bytes, not a multiple of 16 (float32 x, y, z, remission per point)")
    points = sizes[0] // 16
    if sizes[1] != 4 * points:
        raise LabelFileError(
            f"{labels}: {sizes[1]} bytes = {sizes[1] / 4:g} labels, but {scan} has {points} points "
            f"(expected {4 * points} bytes: one uint32 per point)"
        )
    return points


def camera_from_calib(calib: Mapping[str, np.ndarray], width: int, height: int, source: str = "calib") -> Camera:
    """CAM2 (left colour) with K = P2[:, :3] and cam_from_ego = [I | K^-1 P2[:, 3]] @ Tr (ego = Velodyne)."""
    missing = [k for k in ("P2", "Tr") if k not in calib]
    if missing:
        raise ValueError(f"{source}: no {' / '.join(missing)} line (expected 'P2: 12 numbers' and 'Tr: 12 numbers')")
    p2 = np.asarray(calib["P2"], dtype=np.float64)
    K = p2[:, :3].copy()
    cam2_from_cam0 = np.eye(4)
    cam2_from_cam0[:3, 3] = np.linalg.solve(K, p2[:, 3])
    cam0_from_velo = np.eye(4)
    cam0_from_velo[:3, :] = calib["Tr"]
    return Camera(CAMERA_NAME, default_frame_id(CAMERA_NAME), width, height, K, cam2_from_cam0 @ cam0_from_velo)


# ---------------------------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class _Sequence:
    name: str
    path: Path
    rig: CameraRig
    world_from_ego: np.ndarray  # (N, 4, 4) per frame number
    stamps_ns: np.ndarray  # (N,) per frame number
    images: dict[int, Path]  # frame number -> image_2 file
    voxels: Path  # folder of this sequence's voxel ground truth (under gt_root)


class SemanticKittiReader(DatasetReader):
    """Samples of SemanticKITTI sequences (official odometry layout), one camera (CAM2).

    Sample fields: ``scene`` = 2-digit sequence, ``frame`` = 6-digit frame number; images RGB
    uint8 (``image_2/F.png`` or ``.jpg``); ``world_from_ego`` = velo0_from_velo_i = inv(Tr) @ pose_i @ Tr
    (world = the first Velodyne frame); grid :data:`SEMANTICKITTI_GRID`; ``gt`` (when the frame has
    ``voxels/F.label``) in vocabulary indices with invalid and unlabeled voxels 255, ``mask_lidar`` =
    not invalid and ``mask_camera`` = ``voxels/F.camera_mask`` and not invalid (None without that file).
    ``extras``: ``frame_number`` (int), ``lidar_ego_position`` (zeros: the ego frame is the LiDAR), ``image_files``
    (camera -> the encoded image file, e.g. to send its bytes as a CompressedImage).
    ``poses.txt`` and ``times.txt`` must have exactly one line per image of ``image_2``.

    Args:
        root: dataset root (holding ``sequences/``).
        sequences: sequence numbers or names (default: every ``sequences/NN`` present).
        every: ``"labels"`` (frames with ``voxels/*.label``, every 5th frame as in SSC), ``"all"``
            (every frame with an image), an int N (frames with number % N == 0), or ``"auto"``
            (default: ``"labels"`` when some selected sequence has ``voxels/*.label``, else ``"all"``).
        vocabulary: must have SemanticKITTI's 20-class layout (default: the shipped one).
        config: label maps (default: the shipped ``semantic-kitti.yaml``).
        load_gt: read voxel ground truth (False: ``gt`` is always None, faster).
        gt_root: root of the voxel ground truth, ``GT_ROOT/sequences/NN/voxels/`` (default: ``root``),
            e.g. the output of ``occ gt --from-lidar``.
    """

    kind = "semantickitti"

    def __init__(
        self,
        root: str | Path,
        sequences: Sequence[int | str] | None = None,
        every: str | int = "auto",
        vocabulary: Vocabulary | str | Path | None = None,
        config: SemanticKittiConfig | str | Path | None = None,
        load_gt: bool = True,
        gt_root: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.gt_root = self.root if gt_root is None else Path(gt_root)
        seq_root = self.root / "sequences"
        if not seq_root.is_dir():
            raise FileNotFoundError(f"{seq_root}: not found (expected ROOT/sequences/NN/ of KITTI odometry)")
        if gt_root is not None and not (self.gt_root / "sequences").is_dir():
            raise FileNotFoundError(f"{self.gt_root / 'sequences'}: not found (expected GT_ROOT/sequences/NN/voxels/)")
        if isinstance(every, str) and every not in ("labels", "all", "auto"):
            raise ValueError(f"every must be 'labels', 'all', 'auto' or a positive int, got {every!r}")
        if not isinstance(every, str) and (not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be 'labels', 'all', 'auto' or a positive int, got {every!r}")
        self.load_gt = load_gt
        self.config = load_semantickitti_config(config)
        if vocabulary is None:
            self.vocabulary = semantickitti_vocabulary()
        elif isinstance(vocabulary, Vocabulary):
            self.vocabulary = vocabulary
        else:
            self.vocabulary = Vocabulary.load(vocabulary)
        if len(self.vocabulary) != NUM_LEARNING_CLASSES:
            raise ValueError(
                f"vocabulary {self.vocabulary.name!r} has {len(self.vocabulary)} classes; SemanticKITTI needs "
                f"{NUM_LEARNING_CLASSES} (19 learning classes in learning-id order, then free)"
            )
        explicit = sequences is not None
        if sequences is None:
            names = sorted(p.name for p in seq_root.iterdir() if p.is_dir() and p.name.isdigit())
        else:
            names = [f"{int(s):02d}" for s in sequences]
        if every == "auto":
            has_voxels = any(_frame_numbers(self._voxel_dir(name), ".label") for name in names)
            every = "labels" if has_voxels else "all"
        self.every = every
        self._sequences: list[_Sequence] = []
        self._samples: list[tuple[int, int, int]] = []  # (sequence slot, frame number, position in scene)
        for name in names:
            frames, seq = self._open_sequence(seq_root / name, explicit)
            if not frames or seq is None:
                continue
            slot = len(self._sequences)
            self._sequences.append(seq)
            self._samples.extend((slot, f, pos) for pos, f in enumerate(frames))
        if not self._samples:
            what = "voxels/*.label files" if every == "labels" else "images"
            raise ValueError(f"{self.root}: no frames with {what} in sequences {names or '(none found)'}")

    def _voxel_dir(self, name: str) -> Path:
        return self.gt_root / "sequences" / name / "voxels"

    def _open_sequence(self, path: Path, explicit: bool) -> tuple[list[int], _Sequence | None]:
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: sequence folder not found")
        image_dir = path / "image_2"
        image_paths = image_files(image_dir)
        images = list(image_paths)
        voxel_dir = self._voxel_dir(path.name)
        if self.every == "labels":
            frames = _frame_numbers(voxel_dir, ".label")
            if not frames:
                if explicit:
                    raise ValueError(
                        f"{voxel_dir}: no voxels/*.label files (test sequences have none; use every='all' for "
                        "images only, or build ground truth with `occ gt --from-lidar`)"
                    )
                return [], None
        else:
            frames = images if self.every == "all" else [f for f in images if f % int(self.every) == 0]
        if not images:
            raise FileNotFoundError(
                f"{image_dir}: no NNNNNN.png or .jpg images (expected the KITTI odometry colour images)"
            )
        missing = [f"{f:06d}" for f in frames if f not in image_paths]
        if missing:
            raise FileNotFoundError(f"{image_dir}: missing images for labelled frames: {missing[:10]}")
        # Cheap checks first: calibration and pose/time counts are validated before any image is opened.
        calib_path = path / "calib.txt"
        calib = read_calib(calib_path)
        missing_keys = [k for k in ("P2", "Tr") if k not in calib]
        if missing_keys:
            raise ValueError(
                f"{calib_path}: no {' / '.join(missing_keys)} line (expected 'P2: 12 numbers' and 'Tr: 12 numbers'; "
                "Tr is the Velodyne -> rectified cam0 transform of KITTI odometry)"
            )
        poses = read_poses(path / "poses.txt")
        stamps = read_times(path / "times.txt")
        needed = max(images) + 1
        if len(poses) != needed:
            raise ValueError(
                f"{path / 'poses.txt'}: {len(poses)} poses, expected {needed}: one line per image_2 frame "
                f"000000..{needed - 1:06d}"
            )
        if len(stamps) != needed:
            raise ValueError(
                f"{path / 'times.txt'}: {len(stamps)} times, expected {needed}: one line per image_2 frame "
                f"000000..{needed - 1:06d}"
            )
        width, height = _image_size(image_paths[frames[0]] if frames else image_paths[images[0]])
        camera = camera_from_calib(calib, width, height, source=str(calib_path))
        tr = np.eye(4)
        tr[:3, :] = calib["Tr"]
        world_from_ego = np.linalg.inv(tr) @ poses @ tr
        return frames, _Sequence(path.name, path, CameraRig((camera,)), world_from_ego, stamps, image_paths, voxel_dir)

    def __len__(self) -> int:
        return len(self._samples)

    def load(self, index: int, images: bool = True) -> Sample:
        if not 0 <= index < len(self._samples):
            raise IndexError(f"{self.kind} reader: index {index} out of range 0..{len(self) - 1}")
        slot, number, position = self._samples[index]
        seq = self._sequences[slot]
        frame = f"{number:06d}"
        camera = seq.rig[0]
        stamp = int(seq.stamps_ns[number])
        imgs: dict[str, np.ndarray] = {}
        if images:
            image_path = seq.images[number]
            image = _read_image(image_path)
            if image.shape[:2] != (camera.height, camera.width):
                raise ValueError(
                    f"{image_path}: image is {image.shape[1]}x{image.shape[0]}, "
                    f"but sequence {seq.name} images are {camera.width}x{camera.height}"
                )
            imgs[camera.name] = image
        gt = None
        if self.load_gt:
            label_path = seq.voxels / f"{frame}.label"
            if self.every == "labels" or label_path.is_file():
                gt = self.read_gt(label_path)
        return Sample(
            dataset=self.kind,
            scene=seq.name,
            frame=frame,
            index=position,
            stamp_ns=stamp,
            rig=seq.rig,
            images=imgs,
            image_stamps_ns={camera.name: stamp},
            world_from_ego=seq.world_from_ego[number].copy(),
            grid=SEMANTICKITTI_GRID,
            vocabulary=self.vocabulary,
            gt=gt,
            extras={
                "frame_number": number,
                "lidar_ego_position": np.zeros(3),
                "image_files": {camera.name: seq.images[number]},
            },
        )

    def read_gt(self, label_path: str | Path) -> OccupancyLabels:
        """Ground truth of ``voxels/F.label`` (+ ``F.invalid`` and, when present, ``F.camera_mask`` beside it)
        in vocabulary indices, (256, 256, 32) [x, y, z] in the Velodyne frame, on :data:`SEMANTICKITTI_GRID`."""
        label_path = Path(label_path)
        raw = read_voxels(label_path, "label")
        invalid = read_voxels(label_path.with_suffix(".invalid"), "invalid")
        try:
            learning = remap_completion(raw, self.config)
        except ValueError as err:
            raise LabelFileError(f"{label_path}: {err}") from None
        learning[invalid == 1] = IGNORE_LABEL
        mask_camera = None
        camera_path = label_path.with_suffix(".camera_mask")
        if camera_path.is_file():
            mask_camera = (read_voxels(camera_path, "camera_mask") == 1) & (invalid == 0)
        return OccupancyLabels(
            semantics=learning_to_vocab(learning),
            mask_camera=mask_camera,
            mask_lidar=invalid == 0,
            grid=SEMANTICKITTI_GRID,
        )

    def write_prediction(self, out: str | Path, sample: Sample, semantics: np.ndarray) -> Path:
        """The official SSC prediction of ``sample``: ``OUT/sequences/NN/predictions/F.label`` (raw uint16 ids)."""
        return write_prediction(prediction_path(out, sample.scene, sample.frame), semantics, self.config)

    def scenes(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, (slot, _, _) in enumerate(self._samples):
            out.setdefault(self._sequences[slot].name, []).append(i)
        return out

    def poses(self) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {}
        for slot, number, _ in self._samples:
            seq = self._sequences[slot]
            out.setdefault(seq.name, []).append(seq.world_from_ego[number])
        return {name: np.stack(p) for name, p in out.items()}


__all__ = [
    "CAMERA_NAME",
    "IMAGE_SUFFIXES",
    "MOVING_RAW_IDS",
    "LEARNING_CLASS_NAMES",
    "NUM_LEARNING_CLASSES",
    "NUM_VOXELS",
    "OFFICIAL_CLASS_NAMES",
    "SEMANTICKITTI_GRID",
    "VOXEL_KINDS",
    "VOXEL_SHAPE",
    "SemanticKittiConfig",
    "SemanticKittiReader",
    "camera_from_calib",
    "check_scan_pair",
    "image_files",
    "completion_lut",
    "learning_to_vocab",
    "load_semantickitti_config",
    "pack_bits",
    "read_calib",
    "read_poses",
    "read_scan",
    "read_scan_labels",
    "read_times",
    "read_voxels",
    "remap_completion",
    "semantickitti_vocabulary",
    "unpack_bits",
    "vocab_to_learning",
    "write_voxels",
]
