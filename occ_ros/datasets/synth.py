"""Reader of the synthetic sequences that ``occ synth`` writes (format ``occ_ros.synth``).

Layout of a sequence directory DIR (docs/synthetic_world.md)::

    DIR/meta.json                                  scene, preset, seed, grid, vocabulary, rig, ego poses
    DIR/images/<scene>/<frame>/<CAM>.png           RGB, 8 bit
    DIR/depth/<scene>/<frame>/<CAM>.png            uint16, metres * 256 (0 = no surface), optical-axis depth
    DIR/semantics/<scene>/<frame>/<CAM>.png        uint8 label of the surface seen (255 = sky)
    DIR/gts/<scene>/<frame>/labels.npz             Occ3D: semantics, mask_lidar, mask_camera, uint8 [x, y, z]; grid
    DIR/bag/                                       rosbag2 (MCAP): images, camera_info, /tf, /tf_static

The format constants and depth encoding live here, in the runtime package, so that the writer
(``occ_training.synth.sequence``) and every reader share one definition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import CameraRig
from occ_ros.core.vocabulary import Vocabulary

from .sample import DatasetReader, Sample, load_labels

FORMAT = "occ_ros.synth"
FORMAT_VERSION = 1
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
DEPTH_SCALE = 256.0  # KITTI convention: uint16 = metres * 256


def encode_depth(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint16 (metres * 256, saturating at 255.99 m; 0 stays 'no surface')."""
    return np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def decode_depth(encoded: np.ndarray) -> np.ndarray:
    """uint16 -> float32 metres (0 = no surface)."""
    return encoded.astype(np.float32) / DEPTH_SCALE


def load_meta(root: str | Path) -> dict[str, Any]:
    """Read ``DIR/meta.json`` of a synthetic sequence, checking its format."""
    path = Path(root) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {root} is not a synthetic sequence written by `occ synth`"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path}: format is {found!r}, expected {FORMAT!r}")
    return meta


def _read_png(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FileNotFoundError(f"{path}: missing or unreadable PNG")
    return image


class SynthReader(DatasetReader):
    """Samples of one ``occ synth`` sequence, in frame order.

    Sample extras: ``lidar_ego_position`` (3,) metres, the simulated LIDAR_TOP in the ego frame.
    """

    kind = "synth"

    def __init__(self, root: str | Path, load_gt: bool = True) -> None:
        self.root = Path(root)
        self.meta = load_meta(self.root)
        self.scene: str = self.meta["scene"]
        self.rig = CameraRig.from_dict(self.meta["rig"], source=str(self.root / "meta.json"))
        self.grid = GridSpec.from_dict(self.meta["grid"])
        self.vocabulary = Vocabulary.from_dict(self.meta["vocabulary"], source=str(self.root / "meta.json"))
        self.frames: list[dict[str, Any]] = list(self.meta["frames"])
        self.load_gt = load_gt
        self.lidar_ego_position = np.asarray(self.meta.get("lidar_ego_position", (0.0, 0.0, 0.0)), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.frames)

    def _frame_dir(self, kind: str, index: int) -> Path:
        return self.root / kind / self.scene / self.frames[index]["name"]

    def gt_path(self, index: int) -> Path:
        return self._frame_dir("gts", index) / "labels.npz"

    def load(self, index: int, images: bool = True) -> Sample:
        frame = self.frames[index]
        stamp = int(frame["stamp_ns"])
        imgs: dict[str, np.ndarray] = {}
        if images:
            for cam in self.rig:
                bgr = _read_png(self._frame_dir("images", index) / f"{cam.name}.png", cv2.IMREAD_COLOR)
                imgs[cam.name] = np.ascontiguousarray(bgr[:, :, ::-1])
        gt = None
        if self.load_gt:
            gt = load_labels(self.gt_path(index), num_classes=len(self.vocabulary), require_masks=True, grid=self.grid)
        return Sample(
            dataset=self.kind,
            scene=self.scene,
            frame=frame["name"],
            index=index,
            stamp_ns=stamp,
            rig=self.rig,
            images=imgs,
            image_stamps_ns={cam.name: stamp for cam in self.rig},
            world_from_ego=np.asarray(frame["odom_from_base_link"], dtype=np.float64),
            grid=self.grid,
            vocabulary=self.vocabulary,
            gt=gt,
            extras={"lidar_ego_position": self.lidar_ego_position},
        )

    def depth(self, index: int) -> dict[str, np.ndarray]:
        """Camera name -> (H, W) float32 optical-axis depth in metres (0 = no surface)."""
        d = self._frame_dir("depth", index)
        return {cam.name: decode_depth(_read_png(d / f"{cam.name}.png", cv2.IMREAD_UNCHANGED)) for cam in self.rig}

    def semantics_2d(self, index: int) -> dict[str, np.ndarray]:
        """Camera name -> (H, W) uint8 label of the surface seen (255 = sky)."""
        d = self._frame_dir("semantics", index)
        return {cam.name: _read_png(d / f"{cam.name}.png", cv2.IMREAD_UNCHANGED) for cam in self.rig}

    def scenes(self) -> dict[str, list[int]]:
        return {self.scene: list(range(len(self)))}

    def poses(self) -> dict[str, np.ndarray]:
        return {self.scene: np.stack([np.asarray(f["odom_from_base_link"], dtype=np.float64) for f in self.frames])}
