"""One real multi-camera keyframe from a folder: the cameras' JPEGs, a LiDAR sweep and a nuScenes-style ``calib.json``.

This is the format of ``../shared/fixtures/nuscenes_sample`` (one nuScenes keyframe exported with every transform
needed to project between its sensors)::

    calib.json      {"timestamp_s": float, "ego2global": 4x4,
                     "lidar": {"file": NAME, "lidar2ego": 4x4, "point_format": ...},
                     "cameras": {CAM: {"file": NAME, "timestamp_s": float, "image_size_wh": [W, H],
                                       "cam2img": 3x3, "cam2ego": 4x4, "lidar2cam": 4x4}}}
    <CAM>.jpg ...   undistorted images
    <LIDAR>.bin     float32 (x, y, z, intensity, ring) per point, LiDAR frame

:func:`load_keyframe` reads it into a :class:`Keyframe`; :meth:`Keyframe.frame_set` turns it into the node's input
(sensor_msgs CompressedImage with the original JPEG bytes, CameraInfo from the calibration, camera poses), so the
real image path, real geometry and real sizes run through the same pipeline as the node and ``occ replay``.

Frames: the rig is in the ego frame (``base_link``); ``lidar2cam`` includes the ego motion between the LiDAR and
each camera's exposure, so :meth:`Keyframe.lidar_points_for` projects the sweep exactly as nuScenes' devkit does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.transforms import transform_points

#: (x, y, z, intensity, ring) float32 per point
LIDAR_VALUES_PER_POINT = 5


@dataclass
class Keyframe:
    """A real keyframe: rig, JPEG bytes per camera, LiDAR sweep.

    Attributes:
        root: the folder.
        rig: cameras (ego frame), nuScenes order.
        stamp_ns: the keyframe's stamp (``calib.json`` ``timestamp_s``).
        jpeg: camera name -> the JPEG file's bytes.
        lidar: (N, 3) float64 LiDAR points in the LiDAR frame (empty when the folder has no sweep).
        lidar_to_cam: camera name -> 4x4 LiDAR-to-camera transform (with the ego motion between exposures).
    """

    root: Path
    rig: CameraRig
    stamp_ns: int
    jpeg: dict[str, bytes]
    lidar: np.ndarray
    lidar_to_cam: dict[str, np.ndarray] = field(default_factory=dict)

    def images(self) -> dict[str, np.ndarray]:
        """Camera name -> (H, W, 3) uint8 RGB, decoded with OpenCV."""
        import cv2

        out = {}
        for name, data in self.jpeg.items():
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{self.root}: the image of {name} is not a decodable JPEG")
            out[name] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return out

    def lidar_points_for(self, camera: Camera) -> np.ndarray:
        """(N, 3) LiDAR points placed in the ego frame *as this camera saw the scene* (``ego_from_cam @ lidar2cam``),
        so that ``camera.project`` of them is the exact LiDAR-to-image projection."""
        return transform_points(camera.ego_from_cam @ self.lidar_to_cam[camera.name], self.lidar)

    def frame_set(self, stamp_ns: int | None = None) -> Any:
        """The node's input for this keyframe (a :class:`~occ_ros.core.frames.FrameSet`): per camera a
        CompressedImage (the JPEG bytes, as image_transport's compressed plugin records them), its CameraInfo and
        its pose in ego."""
        from occ_ros.core.frames import CameraMessage, FrameSet
        from occ_ros.io.rosbag import camera_info_msg, compressed_image_from_bytes

        stamp = self.stamp_ns if stamp_ns is None else stamp_ns
        cameras = {
            cam.name: CameraMessage(
                cam.name,
                compressed_image_from_bytes(self.jpeg[cam.name], stamp, cam.frame_id),
                camera_info_msg(cam, stamp),
                cam.ego_from_cam,
            )
            for cam in self.rig
        }
        return FrameSet(stamp, cameras)


def load_keyframe(root: str | Path) -> Keyframe:
    """Read a keyframe folder (see the module docstring).

    Raises:
        ValueError: a missing or malformed ``calib.json`` entry or file, naming it.
    """
    root = Path(root)
    calib_path = root / "calib.json"
    try:
        calib = json.loads(calib_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{calib_path}: cannot read the keyframe calibration: {err}") from None
    rig = CameraRig.from_nuscenes_calib(calib_path)
    cameras = calib["cameras"]
    jpeg, lidar_to_cam = {}, {}
    for cam in rig:
        entry = cameras[cam.name]
        if "file" not in entry:
            raise ValueError(f"{calib_path}: cameras.{cam.name} has no 'file'")
        path = root / entry["file"]
        if not path.is_file():
            raise ValueError(f"{calib_path}: cameras.{cam.name}.file {path.name!r} not found in {root}")
        jpeg[cam.name] = path.read_bytes()
        if "lidar2cam" in entry:
            lidar_to_cam[cam.name] = np.asarray(entry["lidar2cam"], dtype=np.float64)
    lidar = np.zeros((0, 3))
    lidar_entry = calib.get("lidar")
    if isinstance(lidar_entry, dict) and "file" in lidar_entry:
        path = root / lidar_entry["file"]
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % LIDAR_VALUES_PER_POINT:
            raise ValueError(
                f"{path}: {raw.size} float32 values is not a whole number of "
                f"{LIDAR_VALUES_PER_POINT}-value (x, y, z, intensity, ring) points"
            )
        lidar = raw.reshape(-1, LIDAR_VALUES_PER_POINT)[:, :3].astype(np.float64)
    if "timestamp_s" not in calib:
        raise ValueError(f"{calib_path}: no 'timestamp_s'")
    stamp_ns = int(round(float(calib["timestamp_s"]) * 1e6)) * 1000  # nuScenes stamps are microseconds
    return Keyframe(root, rig, stamp_ns, jpeg, lidar, lidar_to_cam)
