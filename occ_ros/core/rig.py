"""The camera rig: one type for every camera set-up, from datasets, ROS or the synthetic world.

Frames (docs/conventions.md): ego = base_link (x forward, y left, z up); each camera's
optical frame has x right, y down, z forward. ``cam_from_ego`` maps ego points into the
optical frame; ``K`` maps optical-frame points to pixels, with pixel (0, 0) the centre
of the top-left pixel (OpenCV / ROS CameraInfo convention).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.core.transforms import invert_transform, is_rigid, transform_points


def default_frame_id(name: str) -> str:
    """Optical frame id for a camera name, e.g. CAM_FRONT -> cam_front_optical_frame."""
    return f"{name.lower()}_optical_frame"


#: ``CameraInfo.distortion_model`` values meaning "no distortion" (the image is already pinhole).
PINHOLE_MODELS = ("", "none")
#: Distortion models the preprocessing undistorts (ROS ``sensor_msgs/distortion_models``), and how many
#: coefficients ``D`` each takes: plumb_bob and rational_polynomial are OpenCV's ``k1 k2 p1 p2 [k3 [k4 k5 k6
#: [s1 s2 s3 s4 [tx ty]]]]`` (ROS sends 5 and 8), equidistant is OpenCV's fisheye ``k1 k2 k3 k4``.
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (4, 5, 8, 12, 14),
    "rational_polynomial": (4, 5, 8, 12, 14),
    "equidistant": (4,),
}


class UnsupportedDistortion(ValueError):
    """A camera whose ``distortion_model`` is neither pinhole nor one of :data:`DISTORTION_MODELS`."""


def _check_distortion(model: str, D: np.ndarray, where: str) -> tuple[str, np.ndarray]:
    """(model, D) validated; the model lower-cased, ``none`` spelled ``""``; D (n,) float64."""
    model = str(model).strip().lower()
    if model == "none":
        model = ""
    D = np.array(D, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(D)):
        raise ValueError(f"{where}: distortion coefficients D must be finite, got {D.tolist()}")
    if model == "":
        if np.any(D != 0):  # coefficients of an unnamed model: there is no telling how to undo them
            raise UnsupportedDistortion(
                f"{where}: non-zero distortion coefficients D = {D.tolist()} without a distortion_model"
            )
        return model, np.zeros(0)
    if model not in DISTORTION_MODELS:
        known = ", ".join(repr(m) for m in (*DISTORTION_MODELS, *PINHOLE_MODELS))
        raise UnsupportedDistortion(f"{where}: unsupported distortion_model {model!r} (supported: {known})")
    counts = DISTORTION_MODELS[model]
    if len(D) == 0:  # a model without coefficients: nothing to undo
        D = np.zeros(counts[0])
    if len(D) not in counts:
        takes = " or ".join(map(str, counts))
        raise ValueError(f"{where}: distortion_model {model!r} takes {takes} coefficients, D = {D.tolist()}")
    return model, D


@dataclass(frozen=True, eq=False)
class Camera:
    """A camera mounted on the ego vehicle: pinhole intrinsics ``K``, optionally with lens distortion.

    The geometry (:meth:`project`, :meth:`pixel_rays`, the network's intrinsics) is always the pinhole model ``K``:
    that of the *undistorted* image. A camera with distortion (``distortion_model`` and non-zero ``D``, as in ROS
    ``CameraInfo``) delivers distorted images; :func:`occ_ros.core.preprocess.preprocess` undistorts them to ``K``
    (:mod:`occ_ros.core.undistort`) before anything else, so every stage sees a pinhole image.

    Attributes:
        name: camera name, e.g. ``CAM_FRONT``; topics are ``/<name lower-case>/...``.
        frame_id: the optical frame's tf id.
        width, height: image size in pixels.
        K: (3, 3) intrinsics.
        cam_from_ego: (4, 4) transform from ego (base_link) to the optical frame.
        distortion_model: ``""`` (default, also ``"none"``): no distortion; else one of :data:`DISTORTION_MODELS`
            (``plumb_bob``, ``rational_polynomial``, ``equidistant``). Any other name raises
            :class:`UnsupportedDistortion`.
        D: (n,) distortion coefficients in ROS / OpenCV order (empty for no distortion).
    """

    name: str
    frame_id: str
    width: int
    height: int
    K: np.ndarray
    cam_from_ego: np.ndarray
    distortion_model: str = ""
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        K = np.array(self.K, dtype=np.float64)
        T = np.array(self.cam_from_ego, dtype=np.float64)
        where = f"camera {self.name!r}"
        model, D = _check_distortion(self.distortion_model, self.D, where)
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"{where}: image size must be positive, got {self.width}x{self.height}")
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError(f"{where}: K must be a finite 3x3 matrix, got {K.tolist()}")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
            raise ValueError(f"{where}: K is not a pinhole intrinsic matrix (fx, fy > 0, last row 0 0 1): {K.tolist()}")
        if not is_rigid(T):
            raise ValueError(f"{where}: cam_from_ego is not a rigid 4x4 transform: {T.tolist()}")
        K.flags.writeable = False
        T.flags.writeable = False
        D.flags.writeable = False
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "cam_from_ego", T)
        object.__setattr__(self, "distortion_model", model)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (
            (self.name, self.frame_id, self.width, self.height)
            == (other.name, other.frame_id, other.width, other.height)
            and np.array_equal(self.K, other.K)
            and np.array_equal(self.cam_from_ego, other.cam_from_ego)
            and self.distortion_model == other.distortion_model
            and np.array_equal(self.D, other.D)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def is_distorted(self) -> bool:
        """Whether images need undistorting: a distortion model with a non-zero coefficient."""
        return self.distortion_model != "" and bool(np.any(self.D != 0))

    # ------------------------------------------------------------------ geometry
    @property
    def ego_from_cam(self) -> np.ndarray:
        return invert_transform(self.cam_from_ego)

    @property
    def center_ego(self) -> np.ndarray:
        """Optical centre in the ego frame, (3,)."""
        return self.ego_from_cam[:3, 3]

    def project(self, points_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ego-frame points into the image.

        Args:
            points_ego: (N, 3) ego-frame points.
        Returns:
            uv: (N, 2) pixel coordinates (x right, y down); meaningless where depth <= 0.
            depth: (N,) z in the optical frame, metres.
        """
        cam = transform_points(self.cam_from_ego, points_ego)
        depth = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = cam @ self.K.T
            uv = uvw[:, :2] / uvw[:, 2:3]
        return uv, depth

    def in_image(self, uv: np.ndarray) -> np.ndarray:
        """(N,) bool: pixel coordinates inside the image (pixel centres at integers)."""
        return (uv[:, 0] >= -0.5) & (uv[:, 0] < self.width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < self.height - 0.5)

    def pixel_rays(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Rays through pixel centres, in the optical frame.

        Returns:
            dirs: (H', W', 3) unit directions, rows top to bottom (H' = ceil(H / stride)).
            z_per_unit: (H', W') the optical z of each unit direction (depth = t * z_per_unit).
        """
        u = np.arange(0, self.width, stride, dtype=np.float64)
        v = np.arange(0, self.height, stride, dtype=np.float64)
        uu, vv = np.meshgrid(u, v)
        pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1)
        dirs = pix @ np.linalg.inv(self.K).T
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        return dirs, dirs[..., 2]

    def undistorted(self) -> Camera:
        """The camera of this camera's undistorted images (:mod:`occ_ros.core.undistort`): same ``K``, no distortion."""
        if not self.distortion_model:
            return self
        return Camera(self.name, self.frame_id, self.width, self.height, self.K, self.cam_from_ego)

    def resized(self, width: int, height: int) -> Camera:
        """The same camera with its image resampled to ``width`` x ``height`` (intrinsics scaled).

        The distortion coefficients act on normalised coordinates, so they stay as they are.
        """
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, :] *= sx
        K[1, :] *= sy
        # Pixel centres sit at integers: scaling about the image corner shifts them by half a pixel.
        K[0, 2] = (self.K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (self.K[1, 2] + 0.5) * sy - 0.5
        return Camera(self.name, self.frame_id, width, height, K, self.cam_from_ego, self.distortion_model, self.D)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frame_id": self.frame_id,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "cam_from_ego": self.cam_from_ego.tolist(),
            "distortion_model": self.distortion_model,
            "D": self.D.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Camera:
        """A camera from :meth:`to_dict` output; ``distortion_model`` / ``D`` are optional (absent: no distortion,
        as in rigs and checkpoints written before they existed)."""
        required = {"name", "width", "height", "K", "cam_from_ego"}
        missing = required - set(data)
        if missing:
            raise ValueError(f"{source}: camera entry is missing {sorted(missing)}")
        name = str(data["name"])
        try:
            return cls(
                name=name,
                frame_id=str(data.get("frame_id") or default_frame_id(name)),
                width=int(data["width"]),
                height=int(data["height"]),
                K=np.asarray(data["K"], dtype=np.float64),
                cam_from_ego=np.asarray(data["cam_from_ego"], dtype=np.float64),
                distortion_model=str(data.get("distortion_model") or ""),
                D=np.asarray(data.get("D") or [], dtype=np.float64),
            )
        except UnsupportedDistortion as err:
            raise UnsupportedDistortion(f"{source}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None


@dataclass(frozen=True)
class CameraRig:
    """An ordered set of cameras; the order is the network's camera order."""

    cameras: tuple[Camera, ...]

    def __post_init__(self) -> None:
        cams = tuple(self.cameras)
        if not cams:
            raise ValueError("a camera rig needs at least one camera")
        names = [c.name for c in cams]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        object.__setattr__(self, "cameras", cams)

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.cameras)

    def __getitem__(self, key: int | str) -> Camera:
        if isinstance(key, str):
            for cam in self.cameras:
                if cam.name == key:
                    return cam
            raise KeyError(f"no camera named {key!r} in rig; cameras: {self.names}")
        return self.cameras[key]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def is_distorted(self) -> bool:
        """Whether any camera's images need undistorting."""
        return any(c.is_distorted for c in self.cameras)

    def undistorted(self) -> CameraRig:
        """The rig of the undistorted images (every camera's :meth:`Camera.undistorted`)."""
        return CameraRig(tuple(c.undistorted() for c in self.cameras))

    def resized(self, width: int, height: int) -> CameraRig:
        return CameraRig(tuple(c.resized(width, height) for c in self.cameras))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"cameras": [c.to_dict() for c in self.cameras]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> CameraRig:
        if not isinstance(data, Mapping) or not isinstance(data.get("cameras"), list):
            raise ValueError(f"{source}: a rig needs a 'cameras' list")
        return cls(tuple(Camera.from_dict(c, f"{source} cameras[{i}]") for i, c in enumerate(data["cameras"])))

    @classmethod
    def from_file(cls, path: str | Path) -> CameraRig:
        """Load a rig from YAML or JSON (``{cameras: [...]}``)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except OSError as err:
            raise ValueError(f"cannot read rig file {path}: {err.strerror}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_nuscenes_calib(cls, path: str | Path, order: Sequence[str] | None = None) -> CameraRig:
        """Rig from a nuScenes-style ``calib.json`` (``cameras: {NAME: {cam2img, cam2ego, image_size_wh}}``).

        ``cam2ego`` is the camera's pose in ego (ego_from_cam); ``order`` defaults to NUSCENES_CAMERAS.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read nuScenes calibration {path}: {err}") from None
        cams_data = data.get("cameras")
        if not isinstance(cams_data, Mapping):
            raise ValueError(f"{path}: expected a 'cameras' mapping of camera name -> calibration")
        names = list(order) if order is not None else [n for n in NUSCENES_CAMERAS if n in cams_data]
        cameras = []
        for name in names:
            if name not in cams_data:
                raise ValueError(f"{path}: camera {name!r} not found; present: {sorted(cams_data)}")
            entry = cams_data[name]
            for key in ("cam2img", "cam2ego", "image_size_wh"):
                if key not in entry:
                    raise ValueError(f"{path}: cameras.{name} is missing {key!r}")
            width, height = entry["image_size_wh"]
            ego_from_cam = np.asarray(entry["cam2ego"], dtype=np.float64)
            cameras.append(
                Camera(
                    name=name,
                    frame_id=default_frame_id(name),
                    width=int(width),
                    height=int(height),
                    K=np.asarray(entry["cam2img"], dtype=np.float64)[:3, :3],
                    cam_from_ego=invert_transform(ego_from_cam),
                )
            )
        return cls(tuple(cameras))

    @classmethod
    def from_camera_infos(
        cls, names: Iterable[str], camera_infos: Iterable[Any], ego_from_optical: Iterable[np.ndarray]
    ) -> CameraRig:
        """Rig from ROS ``sensor_msgs/CameraInfo`` messages and tf transforms.

        Args:
            names: camera names, in rig order.
            camera_infos: CameraInfo messages (rclpy or rosbags; fields ``k``, ``width``, ``height``,
                ``header.frame_id``, and ``distortion_model`` / ``d`` where present: absent means no distortion).
                ``k`` is the camera's intrinsics (the rig's ``K``, also of the undistorted image); ``r`` and ``p``
                (stereo rectification) are not used: the tf optical frame is the unrectified camera's.
            ego_from_optical: per camera, the 4x4 pose of ``header.frame_id`` in base_link
                (tf2 ``lookup_transform(base_link, frame_id)`` as a matrix).
        Raises:
            UnsupportedDistortion: a ``distortion_model`` the preprocessing cannot undo (or ``d`` without one).
            ValueError: other invalid calibration (NaN, degenerate, wrong coefficient count, non-rigid pose).
        """
        cameras = []
        for name, info, ego_from_cam in zip(names, camera_infos, ego_from_optical, strict=False):
            K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
            d = getattr(info, "d", None)
            if not np.all(np.isfinite(ego_from_cam)) or not is_rigid(ego_from_cam):
                raise ValueError(f"camera {name!r}: transform base_link <- {info.header.frame_id} is not rigid")
            cameras.append(
                Camera(
                    name=name,
                    frame_id=str(info.header.frame_id),
                    width=int(info.width),
                    height=int(info.height),
                    K=K,
                    cam_from_ego=invert_transform(np.asarray(ego_from_cam, dtype=np.float64)),
                    distortion_model=str(getattr(info, "distortion_model", "") or ""),
                    D=np.asarray([] if d is None else d, dtype=np.float64),
                )
            )
        return cls(tuple(cameras))

    @classmethod
    def nuscenes(cls) -> CameraRig:
        """nuScenes' six cameras at 1600x900, shipped in ``config/rigs/nuscenes.yaml``."""
        return cls.from_file(config_path("rigs", "nuscenes.yaml"))


NUSCENES_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


def config_path(*parts: str) -> Path:
    """Path of a file in the package's ``config/`` (installed copy or source tree)."""
    from occ_ros.core.resources import config_dir

    return config_dir().joinpath(*parts)


def surround_rig(num_cameras: int, height: int, width: int, mount_height: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A ring of ``num_cameras`` identical cameras at equal yaw steps (camera 0 looks down +x), for example inputs
    (warm-up, export tracing, FLOP counts, benchmarks).

    The focal length and mounting are deliberately not round numbers: with round ones, grid points of a
    symmetric grid land exactly on image edges (u = -0.5 or W - 0.5), where the visibility test is a tie that
    float rounding decides differently in different runtimes.

    Returns:
        K: (N, 3, 3) float32, horizontal field of view ~70 degrees, principal point near the image centre.
        cam_from_ego: (N, 4, 4) float32, cameras ``mount_height`` metres up on a 0.37 m circle around ego (0.37, 0).
    """
    f = 0.7 * width * 1.0137
    K = np.array([[f, 0.0, (width - 1) / 2 + 0.31], [0.0, f, (height - 1) / 2 - 0.17], [0.0, 0.0, 1.0]])
    # optical (x right, y down, z forward) from a camera-body frame with the ego axes (x forward, y left, z up)
    optical_from_body = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    mats = []
    for i in range(num_cameras):
        yaw = 2 * np.pi * i / num_cameras
        c, s = np.cos(yaw), np.sin(yaw)
        ego_from_body = np.array(
            [[c, -s, 0, 0.37 + 0.37 * c], [s, c, 0, 0.37 * s], [0, 0, 1, mount_height], [0, 0, 0, 1]]
        )
        mats.append(optical_from_body @ invert_transform(ego_from_body))
    K32 = np.broadcast_to(K, (num_cameras, 3, 3)).astype(np.float32)
    return K32, np.asarray(mats, dtype=np.float32)
