"""Lens undistortion: a camera's distorted image -> the pinhole image of its own ``K`` (the first step of preprocess).

:func:`~occ_ros.core.preprocess.preprocess` calls :func:`undistort` for every camera whose
:attr:`~occ_ros.core.rig.Camera.is_distorted`, so training, export, the node and replay all undistort the same way.

* ``plumb_bob`` / ``rational_polynomial``: OpenCV's ``cv2.initUndistortRectifyMap``; ``equidistant``:
  ``cv2.fisheye.initUndistortRectifyMap``; then ``cv2.remap`` (bilinear, black outside the source image).
* The new camera matrix is ``K`` itself and the rectification rotation the identity. The undistorted image is the
  pinhole image of the rig's ``K`` in the camera's own (tf) optical frame, so all downstream geometry (network
  intrinsics, projections, rays) is unchanged. ROS ``image_proc`` instead rectifies to ``P`` (and rotates by ``R``
  for stereo); using ``K`` keeps the result independent of how the calibration tool chose ``P`` and needs no
  frame other than the one tf knows. An ``image_rect`` input therefore comes with the CameraInfo of the rectified
  image (``k`` = ``P``'s 3x3, zero ``d``).
* Preprocessing undistorts at the network's resolution: the image is first scaled (area-averaged) to the network
  width, which is an image of the same lens with scaled intrinsics (:meth:`~occ_ros.core.rig.Camera.resized`: the
  coefficients act on normalised coordinates), then remapped straight to the pinhole intrinsics the network is
  given. That is one remap of the small image (about 3 ms for 704 x 396) instead of one of the full frame (about
  11 ms for 1600 x 900 on two cores).
* The maps are built once per calibration (model, ``D``, ``K``, target ``K``, image size) and kept in a small LRU
  cache (:data:`MAPS`, ``builds`` counts builds). A camera without distortion, or with an all-zero ``D``, is never
  remapped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .rig import Camera

_Key = tuple[str, bytes, bytes, bytes, int, int]


def _calibration_key(cam: Camera, new_K: np.ndarray) -> _Key:
    return (cam.distortion_model, cam.D.tobytes(), cam.K.tobytes(), new_K.tobytes(), cam.width, cam.height)


def undistortion_maps(cam: Camera, new_K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps (fixed-point ``CV_16SC2`` + ``CV_16UC1``) from ``cam``'s distorted image to the pinhole
    image of ``new_K`` (default ``cam.K``), same size. Built every call; :class:`UndistortCache` keeps them."""
    import cv2

    size = (cam.width, cam.height)
    new_K = cam.K if new_K is None else np.asarray(new_K, dtype=np.float64)
    if cam.distortion_model == "equidistant":
        map1, map2 = cv2.fisheye.initUndistortRectifyMap(cam.K, cam.D, np.eye(3), new_K, size, cv2.CV_16SC2)
    else:  # plumb_bob, rational_polynomial: OpenCV's coefficient vector of 4, 5, 8, 12 or 14
        map1, map2 = cv2.initUndistortRectifyMap(cam.K, cam.D, np.eye(3), new_K, size, cv2.CV_16SC2)
    map1.flags.writeable = False
    map2.flags.writeable = False
    return map1, map2


class UndistortCache:
    """Undistortion maps per calibration, least recently used dropped beyond ``capacity`` (thread-safe).

    Attributes:
        builds: how many maps were built (once per calibration while it stays cached).
    """

    def __init__(self, capacity: int = 16) -> None:
        self._capacity = capacity
        self._maps: OrderedDict[_Key, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    def maps(self, cam: Camera, new_K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        new_K = cam.K if new_K is None else np.asarray(new_K, dtype=np.float64)
        key = _calibration_key(cam, new_K)
        with self._lock:
            found = self._maps.get(key)
            if found is not None:
                self._maps.move_to_end(key)
                return found
            found = undistortion_maps(cam, new_K)
            self.builds += 1
            self._maps[key] = found
            while len(self._maps) > self._capacity:
                self._maps.popitem(last=False)
            return found

    def undistort(self, image: np.ndarray, cam: Camera, new_K: np.ndarray | None = None) -> np.ndarray:
        """(H, W, C) image of ``cam`` -> the pinhole image of ``new_K`` (default ``cam.K``), same size; the image
        itself when ``cam`` is not distorted."""
        if not cam.is_distorted:
            return image
        import cv2

        map1, map2 = self.maps(cam, new_K)
        return cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


#: The process-wide cache :func:`undistort` (and so :func:`~occ_ros.core.preprocess.preprocess`) uses.
MAPS = UndistortCache()


def undistort(image: np.ndarray, cam: Camera, new_K: np.ndarray | None = None) -> np.ndarray:
    """``image`` of ``cam`` undistorted to the pinhole image of ``new_K`` (default ``cam.K``; :data:`MAPS`' maps)."""
    return MAPS.undistort(image, cam, new_K)
