"""nuScenes keyframes (+ Occ3D-nuScenes ground truth) as :class:`Sample` s.

Reads the official nuScenes JSON tables directly (no nuscenes-devkit):
``ROOT/<version>/{scene,sample,sample_data,calibrated_sensor,sensor,ego_pose,log}.json``, images at
``ROOT/<sample_data.filename>`` (e.g. ``samples/CAM_FRONT/<...>.jpg``), and Occ3D ground truth at
``GT_ROOT/<scene name>/<sample token>/labels.npz`` (default ``GT_ROOT = ROOT/gts``).

Frames: nuScenes stores quaternions as (w, x, y, z); ``calibrated_sensor`` gives each sensor's
pose in the ego frame (ego_from_sensor), ``ego_pose`` the ego pose in ``global``
(world_from_ego) at one sample_data's timestamp. As in Occ3D, a sample's ego frame is the ego
pose at its LIDAR_TOP keyframe; each camera's own ego pose (at its exposure, up to ~40 ms away)
is in ``extras["camera_world_from_ego"]``.

``Sample.extras`` of this reader:

- ``lidar_ego_position``: (3,) float64, LIDAR_TOP position in the ego frame (calibrated_sensor translation).
- ``ego_from_lidar``: (4, 4) float64, LIDAR_TOP pose in the ego frame.
- ``lidar_path``: :class:`~pathlib.Path` of the LIDAR_TOP keyframe file (float32 x5 per point, LiDAR frame).
- ``lidar_stamp_ns``: int, LIDAR_TOP keyframe timestamp (ns).
- ``camera_world_from_ego``: camera name -> (4, 4) float64, world_from_ego at that camera's timestamp.
- ``location``: the log's map location (e.g. ``singapore-onenorth``).
- ``scene_token``: the scene's token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import NUSCENES_CAMERAS, Camera, CameraRig, default_frame_id
from occ_ros.core.transforms import invert_transform, transform_from_quaternion
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.datasets.sample import DatasetReader, LabelFileError, OccupancyLabels, Sample, load_labels

#: Tables the reader needs, in ``ROOT/<version>/``.
NUSCENES_TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose", "log")
#: The sensor channel whose keyframe defines a sample's ego frame (as in Occ3D).
LIDAR_CHANNEL = "LIDAR_TOP"
#: Occ3D-nuScenes ground-truth voxel shape [x, y, z].
OCC3D_SHAPE = (200, 200, 16)


class NuScenesFormatError(ValueError):
    """A nuScenes table is malformed or inconsistent (the message names the file and the row)."""


def pose_from_nuscenes(translation: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """(4, 4) float64 from a nuScenes translation (3,) and quaternion in nuScenes order (w, x, y, z)."""
    w, x, y, z = (float(v) for v in rotation_wxyz)
    return transform_from_quaternion([float(v) for v in translation], [x, y, z, w])


def _int_field(row: Mapping[str, Any], key: str, table: Path) -> int:
    """``int(row[key])``, or an error naming the table and the row."""
    try:
        return int(row[key])
    except (KeyError, TypeError, ValueError):
        raise NuScenesFormatError(f"{table}: row {row.get('token')} has no integer {key!r}") from None


@dataclass(frozen=True)
class _Data:
    """The parts of one keyframe ``sample_data`` row the reader uses."""

    token: str
    filename: str
    timestamp_us: int
    calibrated_sensor_token: str
    ego_pose_token: str
    width: int
    height: int


@dataclass(frozen=True)
class _Frame:
    scene: str
    scene_token: str
    location: str
    token: str
    index: int
    timestamp_us: int
    data: Mapping[str, _Data]  # channel -> keyframe sample_data


class NuScenesReader(DatasetReader):
    """nuScenes keyframes in scene order, with Occ3D ground truth when present.

    Args:
        root: the nuScenes root (holds ``<version>/`` and ``samples/``).
        version: table folder, e.g. ``v1.0-mini`` or ``v1.0-trainval``.
        gt_root: Occ3D ``gts`` folder (``<scene>/<token>/labels.npz``); None: ``ROOT/gts`` if it
            exists, else no ground truth; False: never load ground truth. A given path must exist.
        scenes: scene names to read, in that order; None: every scene, in ``scene.json`` order.
        cameras: camera channels, in rig order (default: the six nuScenes cameras).
        vocabulary: the label vocabulary (a :class:`Vocabulary`, ``"occ3d"`` or a YAML path).
        require_gt: with a ground-truth folder, a sample without ``labels.npz`` is an error
            (:class:`LabelFileError` naming the file); False: such samples get ``gt=None``.

    Samples: ``scene`` = scene name, ``frame`` = sample token, ``index`` = position in the scene,
    ``stamp_ns`` = sample timestamp, ``world_from_ego`` = ego pose of the LIDAR_TOP keyframe,
    ``grid`` = :meth:`GridSpec.occ3d`. Extras are listed in the module docstring.
    """

    kind = "nuscenes"

    def __init__(
        self,
        root: str | Path,
        version: str = "v1.0-mini",
        gt_root: str | Path | bool | None = None,
        scenes: Iterable[str] | None = None,
        cameras: Sequence[str] = NUSCENES_CAMERAS,
        vocabulary: Vocabulary | str | Path = "occ3d",
        require_gt: bool = True,
    ) -> None:
        self.root = Path(root)
        self.version = version
        self.cameras: tuple[str, ...] = tuple(cameras)
        if not self.cameras:
            raise ValueError("NuScenesReader needs at least one camera")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"NuScenesReader: camera names repeat: {list(self.cameras)}")
        self.vocabulary = vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary.load(vocabulary)
        self.grid = GridSpec.occ3d()
        self.require_gt = bool(require_gt)
        self.gt_root = self._resolve_gt_root(gt_root)
        self.table_dir = self.root / version
        if not self.table_dir.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            raise FileNotFoundError(
                f"nuScenes version folder {self.table_dir} not found "
                f"(root {self.root} {'holds ' + str(present) if self.root.is_dir() else 'does not exist'})"
            )
        self._frames: list[_Frame] = []
        self._calibrated: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # token -> (ego_from_sensor, K)
        self._ego_poses: dict[str, np.ndarray] = {}  # token -> world_from_ego
        self._camera_cache: dict[tuple[str, str, int, int], Camera] = {}
        self._build_index(None if scenes is None else list(scenes))

    # ------------------------------------------------------------------ construction
    def _resolve_gt_root(self, gt_root: str | Path | bool | None) -> Path | None:
        if gt_root is False:
            return None
        if gt_root is None:
            default = self.root / "gts"
            return default if default.is_dir() else None
        path = self.root / "gts" if gt_root is True else Path(gt_root)
        if not path.is_dir():
            raise FileNotFoundError(f"Occ3D ground-truth folder {path} not found (pass gt_root=False to read without)")
        return path

    def _table(self, name: str) -> list[dict[str, Any]]:
        path = self.table_dir / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"nuScenes table {path} not found (a {self.version} release has {NUSCENES_TABLES})")
        try:
            with path.open("rb") as f:
                rows = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise NuScenesFormatError(f"cannot read nuScenes table {path}: {err}") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise NuScenesFormatError(f"nuScenes table {path}: expected a JSON list of objects")
        return rows

    def _build_index(self, scene_names: list[str] | None) -> None:
        path = {name: self.table_dir / f"{name}.json" for name in NUSCENES_TABLES}
        tables = {name: self._table(name) for name in ("scene", "sample", "log", "sensor", "calibrated_sensor")}
        current = "scene"
        try:
            scenes_by_name = {r["name"]: r for r in tables["scene"]}
            current = "log"
            location = {r["token"]: str(r.get("location", "")) for r in tables["log"]}
            current = "sample"
            samples = {r["token"]: r for r in tables["sample"]}
            current = "sensor"
            channel_of_sensor = {r["token"]: str(r["channel"]) for r in tables["sensor"]}
            current = "calibrated_sensor"
            calib_rows = {r["token"]: r for r in tables["calibrated_sensor"]}
            channel_of_calib = {t: channel_of_sensor.get(r["sensor_token"]) for t, r in calib_rows.items()}
        except KeyError as err:
            raise NuScenesFormatError(f"nuScenes table {path[current]}: a row lacks the field {err}") from None
        del tables

        if scene_names is None:
            chosen = list(scenes_by_name.values())
        else:
            unknown = [n for n in scene_names if n not in scenes_by_name]
            if unknown:
                raise ValueError(f"scenes {unknown} are not in {path['scene']} ({len(scenes_by_name)} scenes)")
            chosen = [scenes_by_name[n] for n in scene_names]

        # Walk each scene's sample chain: first_sample_token, then sample.next.
        try:
            order = self._walk_scenes(chosen, samples, path["sample"])
        except KeyError as err:
            raise NuScenesFormatError(
                f"nuScenes tables {path['scene']} / {path['sample']}: a row lacks the field {err}"
            ) from None
        wanted_samples = {row["token"] for _, row, _ in order}
        channels = set(self.cameras) | {LIDAR_CHANNEL}

        # Keyframe sample_data of the wanted samples and channels (one pass; the table may hold millions).
        keyframes: dict[tuple[str, str], _Data] = {}
        try:
            for r in self._table("sample_data"):
                if not r["is_key_frame"] or r["sample_token"] not in wanted_samples:
                    continue
                channel = channel_of_calib.get(r["calibrated_sensor_token"])
                if channel not in channels:
                    continue
                key = (r["sample_token"], channel)
                if key in keyframes:
                    raise NuScenesFormatError(
                        f"{path['sample_data']}: sample {key[0]} has two key-frame {channel} rows "
                        f"({keyframes[key].token}, {r['token']})"
                    )
                keyframes[key] = _Data(
                    token=r["token"],
                    filename=r["filename"],
                    timestamp_us=int(r["timestamp"]),
                    calibrated_sensor_token=r["calibrated_sensor_token"],
                    ego_pose_token=r["ego_pose_token"],
                    width=int(r.get("width") or 0),
                    height=int(r.get("height") or 0),
                )
        except KeyError as err:
            raise NuScenesFormatError(f"nuScenes table {path['sample_data']}: a row lacks the field {err}") from None

        for scene, row, index in order:
            data: dict[str, _Data] = {}
            for channel in (*self.cameras, LIDAR_CHANNEL):
                found = keyframes.get((row["token"], channel))
                if found is None:
                    raise NuScenesFormatError(
                        f"{path['sample_data']}: sample {row['token']} (scene {scene['name']!r}) has no key-frame "
                        f"{channel} row; expected one per camera in {list(self.cameras)} and {LIDAR_CHANNEL}"
                    )
                if channel != LIDAR_CHANNEL and (found.width <= 0 or found.height <= 0):
                    raise NuScenesFormatError(
                        f"{path['sample_data']}: {channel} row {found.token} has no image width/height"
                    )
                data[channel] = found
            self._frames.append(
                _Frame(
                    scene=str(scene["name"]),
                    scene_token=str(scene["token"]),
                    location=location.get(scene.get("log_token", ""), ""),
                    token=str(row["token"]),
                    index=index,
                    timestamp_us=_int_field(row, "timestamp", path["sample"]),
                    data=data,
                )
            )

        # Calibrations and ego poses the keyframes refer to.
        for frame in self._frames:
            for channel, d in frame.data.items():
                token = d.calibrated_sensor_token
                if token in self._calibrated:
                    continue
                r = calib_rows[token]
                try:
                    ego_from_sensor = pose_from_nuscenes(r["translation"], r["rotation"])
                    K = None
                    if channel != LIDAR_CHANNEL:
                        K = np.asarray(r["camera_intrinsic"], dtype=np.float64)
                        if K.shape != (3, 3):
                            raise ValueError(f"camera_intrinsic must be 3x3, got shape {K.shape}")
                except (KeyError, ValueError, TypeError) as err:
                    raise NuScenesFormatError(f"{path['calibrated_sensor']}: row {token} ({channel}): {err}") from None
                self._calibrated[token] = (ego_from_sensor, K)
        needed = {d.ego_pose_token for frame in self._frames for d in frame.data.values()}
        try:
            for r in self._table("ego_pose"):
                if r["token"] in needed:
                    self._ego_poses[r["token"]] = pose_from_nuscenes(r["translation"], r["rotation"])
        except (KeyError, ValueError, TypeError) as err:
            raise NuScenesFormatError(f"{path['ego_pose']}: bad row: {err}") from None
        missing = needed - set(self._ego_poses)
        if missing:
            raise NuScenesFormatError(
                f"{path['ego_pose']}: {len(missing)} ego poses referenced by key frames are missing, "
                f"e.g. {min(missing)}"
            )

    @staticmethod
    def _walk_scenes(
        chosen: list[dict[str, Any]], samples: Mapping[str, dict[str, Any]], sample_path: Path
    ) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
        """(scene row, sample row, index in scene) of every sample, following first_sample_token and next."""
        order: list[tuple[dict[str, Any], dict[str, Any], int]] = []
        for scene in chosen:
            name = scene["name"]
            token = scene.get("first_sample_token", "")
            seen: set[str] = set()
            while token:
                if token in seen:
                    raise NuScenesFormatError(f"{sample_path}: the next links of scene {name!r} loop at {token}")
                if token not in samples:
                    raise NuScenesFormatError(
                        f"{sample_path}: sample {token} (linked from scene {name!r}) is not in the table"
                    )
                row = samples[token]
                if row.get("scene_token", scene["token"]) != scene["token"]:
                    raise NuScenesFormatError(
                        f"{sample_path}: sample {token} is linked from scene {name!r} "
                        f"but names scene_token {row['scene_token']}"
                    )
                seen.add(token)
                order.append((scene, row, len(seen) - 1))
                token = row.get("next", "")
        return order

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._frames)

    def scenes(self) -> dict[str, list[int]]:
        """Scene name -> sample indices in time order."""
        out: dict[str, list[int]] = {}
        for i, frame in enumerate(self._frames):
            out.setdefault(frame.scene, []).append(i)
        return out

    def poses(self) -> dict[str, np.ndarray]:
        """Scene name -> (T, 4, 4) world_from_ego (LIDAR_TOP keyframe ego poses), in time order."""
        return {
            scene: np.stack([self._ego_poses[self._frames[i].data[LIDAR_CHANNEL].ego_pose_token] for i in idx])
            for scene, idx in self.scenes().items()
        }

    def keys(self) -> list[str]:
        """``<scene>/<sample token>`` of every sample, in reader order."""
        return [f"{f.scene}/{f.token}" for f in self._frames]

    def gt_path(self, index: int) -> Path | None:
        """Where the Occ3D ``labels.npz`` of sample ``index`` lives, or None without a GT folder."""
        if self.gt_root is None:
            return None
        frame = self._frames[index]
        return self.gt_root / frame.scene / frame.token / "labels.npz"

    def _camera(self, name: str, d: _Data) -> Camera:
        key = (name, d.calibrated_sensor_token, d.width, d.height)
        cam = self._camera_cache.get(key)
        if cam is None:
            ego_from_cam, K = self._calibrated[d.calibrated_sensor_token]
            assert K is not None  # cameras always have intrinsics (checked when indexing)
            cam = Camera(
                name=name,
                frame_id=default_frame_id(name),
                width=d.width,
                height=d.height,
                K=K,
                cam_from_ego=invert_transform(ego_from_cam),
            )
            self._camera_cache[key] = cam
        return cam

    def _image(self, name: str, d: _Data) -> np.ndarray:
        import cv2

        path = self.root / d.filename
        if not path.is_file():
            raise FileNotFoundError(f"{name} image {path} not found (sample_data {d.token})")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{name} image {path} could not be decoded")
        if bgr.shape[:2] != (d.height, d.width):
            raise ValueError(
                f"{name} image {path} is {bgr.shape[1]}x{bgr.shape[0]}, sample_data {d.token} says {d.width}x{d.height}"
            )
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _gt(self, index: int) -> OccupancyLabels | None:
        path = self.gt_path(index)
        if path is None:
            return None
        if not path.is_file():
            if not self.require_gt:
                return None
            frame = self._frames[index]
            raise LabelFileError(
                f"{path}: Occ3D ground truth of sample {frame.token} (scene {frame.scene!r}) not found, "
                f"although {self.gt_root} holds ground truth "
                "(pass require_gt=False to allow gaps, gt_root=False to skip ground truth)"
            )
        return load_labels(
            path, num_classes=len(self.vocabulary), shape=OCC3D_SHAPE, require_masks=True, grid=self.grid
        )

    def load(self, index: int, images: bool = True) -> Sample:
        """Sample ``index``; ``images=False`` skips decoding (the ground truth is still read)."""
        if not 0 <= index < len(self._frames):
            raise IndexError(f"{self.kind} reader: index {index} out of range 0..{len(self._frames) - 1}")
        frame = self._frames[index]
        cams = [frame.data[name] for name in self.cameras]
        lidar = frame.data[LIDAR_CHANNEL]
        ego_from_lidar = self._calibrated[lidar.calibrated_sensor_token][0]
        return Sample(
            dataset=self.kind,
            scene=frame.scene,
            frame=frame.token,
            index=frame.index,
            stamp_ns=frame.timestamp_us * 1000,
            rig=CameraRig(tuple(self._camera(name, d) for name, d in zip(self.cameras, cams, strict=True))),
            images={name: self._image(name, d) for name, d in zip(self.cameras, cams, strict=True)} if images else {},
            image_stamps_ns={name: d.timestamp_us * 1000 for name, d in zip(self.cameras, cams, strict=True)},
            world_from_ego=self._ego_poses[lidar.ego_pose_token].copy(),
            grid=self.grid,
            vocabulary=self.vocabulary,
            gt=self._gt(index),
            extras={
                "lidar_ego_position": ego_from_lidar[:3, 3].copy(),
                "ego_from_lidar": ego_from_lidar.copy(),
                "lidar_path": self.root / lidar.filename,
                "lidar_stamp_ns": lidar.timestamp_us * 1000,
                "camera_world_from_ego": {
                    name: self._ego_poses[d.ego_pose_token].copy() for name, d in zip(self.cameras, cams, strict=True)
                },
                "location": frame.location,
                "scene_token": frame.scene_token,
            },
        )
