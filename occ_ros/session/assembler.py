"""Synchronized camera messages + the latest CameraInfo + tf -> one :class:`~occ_ros.core.frames.FrameSet`
(ROS-free).

The session's synchronized-set callback hands the images to :meth:`FrameAssembler.assemble` after their CameraInfo
went to :meth:`FrameAssembler.update_info`. Nothing here decides whether a frame is usable: a
missing image, CameraInfo or transform is recorded in the FrameSet (a camera left out, ``info=None``,
``base_from_optical=None`` + ``tf_error``) and the pipeline skips the frame with the matching
:class:`~occ_ros.core.frames.SkipReason`, so the node and ``occ replay`` count problems in one place.

tf is reached through a plain callable (:data:`TransformLookup`): in the node a thin wrapper around
``tf2_ros.Buffer.lookup_transform``, in ``occ replay`` :meth:`occ_ros.core.tf_buffer.TransformBuffer.lookup` over the
bag's ``/tf`` and ``/tf_static``; tests pass a dict-backed function.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from occ_ros.core.frames import CameraMessage, FrameSet, FrameSkipped, SkipReason, stamp_ns

from .config import CameraInput

TransformLookup = Callable[[str, str, int, float], np.ndarray]
"""``lookup(target_frame, source_frame, stamp_ns, timeout_s)`` -> (4, 4) ``target_from_source`` (the pose of
``source_frame`` in ``target_frame``, tf2's ``lookup_transform(target, source, time)``); raises on failure, the
exception's text says why."""


class FrameAssembler:
    """Builds FrameSets for the configured cameras (thread-safe: CameraInfo and image callbacks may run on
    different executor threads).

    Args:
        cameras: the cameras in the model's input order (their names and optional frame id overrides).
        base_frame: the grid's frame; each camera's extrinsic is ``lookup(base_frame, optical frame, stamp)``.
        lookup: the tf lookup (see :data:`TransformLookup`).
        tf_timeout_s: total time one frame may wait for its transforms: each lookup gets what is left of it, so
            a frame with tf missing for every camera waits ``tf_timeout_s`` once, not once per camera.
        clock: monotonic seconds (for the tf deadline).
        received_clock: monotonic nanoseconds stamped into ``FrameSet.received_ns``.
    """

    def __init__(
        self,
        cameras: Sequence[CameraInput],
        base_frame: str,
        lookup: TransformLookup,
        tf_timeout_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        received_clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if not cameras:
            raise ValueError("FrameAssembler needs at least one camera")
        self.cameras = tuple(cameras)
        self.names = tuple(c.name for c in self.cameras)
        self.base_frame = base_frame
        self.lookup = lookup
        self.tf_timeout_s = max(0.0, float(tf_timeout_s))
        self._clock = clock
        self._received_clock = received_clock
        self._lock = threading.Lock()
        self._infos: dict[str, Any] = {}

    # ------------------------------------------------------------------ CameraInfo
    def update_info(self, camera: str, info: Any) -> None:
        """Keep ``info`` as ``camera``'s latest CameraInfo.

        Raises:
            KeyError: ``camera`` is not configured (names the configured ones).
        """
        if camera not in self.names:
            raise KeyError(f"camera {camera!r} is not configured (cameras: {list(self.names)})")
        with self._lock:
            self._infos[camera] = info

    def info(self, camera: str) -> Any | None:
        """``camera``'s latest CameraInfo (None: none received yet)."""
        with self._lock:
            return self._infos.get(camera)

    # ------------------------------------------------------------------ images
    def assemble(self, images: Sequence[Any | None] | Mapping[str, Any]) -> FrameSet:
        """One FrameSet from one synchronized set of images.

        Args:
            images: in camera order (the synchronizer callback's arguments), or ``name -> image``; None / absent
                entries leave the camera out of the set (the pipeline then skips it as ``missing_camera``).
        Returns:
            The FrameSet, stamped with the first present camera's header stamp (the first camera's, normally).
        Raises:
            FrameSkipped: ``missing_camera`` when no image at all is given, ``corrupt_image`` when the reference
                image has no readable header stamp (nothing else to stamp the frame with).
            ValueError: a sequence whose length is not the number of cameras.
        """
        by_name = self._by_name(images)
        present = [name for name in self.names if by_name.get(name) is not None]
        if not present:
            raise FrameSkipped(SkipReason.MISSING_CAMERA, f"no image from any camera of {list(self.names)}")
        try:
            reference_ns = stamp_ns(by_name[present[0]].header.stamp)
        except (AttributeError, TypeError, ValueError) as err:
            raise FrameSkipped(
                SkipReason.CORRUPT_IMAGE, f"camera {present[0]!r}: unreadable header stamp: {err}"
            ) from None
        received_ns = int(self._received_clock())
        deadline = self._clock() + self.tf_timeout_s
        with self._lock:
            infos = dict(self._infos)
        messages = {}
        for cam in self.cameras:
            image = by_name.get(cam.name)
            if image is None:
                continue
            pose, error = self._extrinsic(cam, image, reference_ns, deadline)
            messages[cam.name] = CameraMessage(cam.name, image, infos.get(cam.name), pose, error)
        return FrameSet(stamp_ns=reference_ns, cameras=messages, received_ns=received_ns)

    def _by_name(self, images: Sequence[Any | None] | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(images, Mapping):
            return dict(images)
        if len(images) != len(self.names):
            raise ValueError(f"got {len(images)} images for {len(self.names)} cameras {list(self.names)}")
        return dict(zip(self.names, images, strict=True))

    def optical_frame(self, cam: CameraInput, image: Any) -> str:
        """The frame to look up for ``image``: the camera's ``frame_id`` if set, else its ``header.frame_id``, without
        a leading ``/`` (tf2 frame ids have none; ROS 1 drivers still write one)."""
        frame = cam.frame_id or str(getattr(getattr(image, "header", None), "frame_id", "") or "")
        return frame.lstrip("/")

    def _extrinsic(
        self, cam: CameraInput, image: Any, reference_ns: int, deadline: float
    ) -> tuple[np.ndarray | None, str]:
        """``(base_from_optical, "")`` or ``(None, why)``."""
        frame = self.optical_frame(cam, image)
        if not frame:
            return None, (
                f"image has an empty header.frame_id; set parameter 'camera.{cam.name}.frame_id' to its optical frame"
            )
        try:
            at_ns = stamp_ns(image.header.stamp)
        except (AttributeError, TypeError, ValueError):
            at_ns = reference_ns
        timeout = max(0.0, deadline - self._clock())
        try:
            pose = np.asarray(self.lookup(self.base_frame, frame, at_ns, timeout), dtype=np.float64)
        except Exception as err:  # tf2's LookupException, ExtrapolationException, ... or a test's KeyError
            text = str(err) or type(err).__name__
            return None, f"tf {self.base_frame} <- {frame} at {at_ns} ns: {text}"
        if pose.shape != (4, 4):
            return None, f"tf {self.base_frame} <- {frame}: the lookup returned shape {pose.shape}, not (4, 4)"
        return pose, ""
