"""The camera rig of a frame, from its CameraInfo messages and tf extrinsics, rebuilt only when they change.

The node and replay receive CameraInfo with every image and extrinsics from tf at every stamp, but both almost
never change. :class:`RigCache` keys the validated :class:`~occ_ros.core.rig.CameraRig` on the exact calibration
values (intrinsics, distortion model and coefficients, image size, optical frame, extrinsic bytes), so the rig is
rebuilt (and checked again) only when the calibration really changes (``rebuilds`` counts how often).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from occ_ros.core.frames import CameraMessage, FrameSkipped, SkipReason
from occ_ros.core.rig import CameraRig, UnsupportedDistortion


def _calibration_key(cameras: Sequence[CameraMessage]) -> bytes:
    """Digest of every value the rig is built from (cameras with CameraInfo and extrinsics only)."""
    digest = hashlib.sha1()
    for cam in cameras:
        info: Any = cam.info
        digest.update(cam.name.encode())
        digest.update(str(info.header.frame_id).encode())
        digest.update(np.asarray([int(info.width), int(info.height)], dtype=np.int64).tobytes())
        digest.update(np.asarray(info.k, dtype=np.float64).tobytes())
        digest.update(str(getattr(info, "distortion_model", "") or "").encode() + b"\0")
        d = getattr(info, "d", None)
        digest.update(np.asarray([] if d is None else d, dtype=np.float64).tobytes())
        digest.update(np.asarray(cam.base_from_optical, dtype=np.float64).tobytes())
    return digest.digest()


class RigCache:
    """The validated rig of the latest calibration.

    Attributes:
        rebuilds: how many times a rig was built (1 for a static calibration).
    """

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._rig: CameraRig | None = None
        self.rebuilds = 0

    def rig_for(self, cameras: Sequence[CameraMessage]) -> CameraRig:
        """The rig of these cameras, in this order.

        Raises:
            FrameSkipped: ``NO_CAMERA_INFO`` (a camera has no CameraInfo yet), ``NO_TF`` (its extrinsic lookup
                failed), ``UNSUPPORTED_DISTORTION`` (a ``distortion_model`` the preprocessing cannot undo, or
                coefficients without a model), ``BAD_CALIBRATION`` (NaN / degenerate intrinsics, NaN distortion or a
                coefficient count the model does not take, a non-rigid or NaN extrinsic).
        """
        for cam in cameras:
            if cam.info is None:
                raise FrameSkipped(SkipReason.NO_CAMERA_INFO, f"camera {cam.name!r}: no CameraInfo received yet")
            if cam.base_from_optical is None:
                detail = cam.tf_error or "no transform"
                raise FrameSkipped(SkipReason.NO_TF, f"camera {cam.name!r}: extrinsics unavailable: {detail}")
        try:
            key = _calibration_key(cameras)
        except (TypeError, ValueError) as err:
            raise FrameSkipped(SkipReason.BAD_CALIBRATION, f"unreadable CameraInfo / transform: {err}") from None
        if key == self._key and self._rig is not None:
            return self._rig
        poses = [np.asarray(c.base_from_optical, dtype=np.float64) for c in cameras]
        try:
            rig = CameraRig.from_camera_infos([c.name for c in cameras], [c.info for c in cameras], poses)
        except UnsupportedDistortion as err:
            raise FrameSkipped(SkipReason.UNSUPPORTED_DISTORTION, str(err)) from None
        except ValueError as err:
            raise FrameSkipped(SkipReason.BAD_CALIBRATION, str(err)) from None
        self._key, self._rig = key, rig
        self.rebuilds += 1
        return rig
