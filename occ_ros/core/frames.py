"""What enters the pipeline: one synchronized multi-camera frame, and why a frame can be skipped.

Messages are duck-typed: rclpy messages in the node and rosbags messages in replay have the same field names
(``header.stamp.sec``, ``encoding``, ``data``, ``k``, ...), so the pipeline never imports either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class SkipReason(str, Enum):
    """Why a frame produced no output (diagnostics and replay metrics count each)."""

    MISSING_CAMERA = "missing_camera"  # a configured camera has no image in the set
    ENCODING = "encoding"  # an image encoding / compressed format that cannot be decoded
    CORRUPT_IMAGE = "corrupt_image"  # undecodable or truncated image data
    IMAGE_SIZE = "image_size"  # image size differs from its CameraInfo or does not fit the model input
    NO_CAMERA_INFO = "no_camera_info"  # no CameraInfo received for a camera yet
    NO_TF = "no_tf"  # the camera's extrinsics could not be looked up
    BAD_CALIBRATION = "bad_calibration"  # NaN / degenerate intrinsics or distortion, a non-rigid extrinsic
    UNSUPPORTED_DISTORTION = "unsupported_distortion"  # a CameraInfo distortion_model preprocessing cannot undo
    STAMP_ORDER = "stamp_order"  # a stamp not newer than the last processed one (out of order or duplicate)
    CORRUPT_RECORD = "corrupt_record"  # a bag record that does not deserialize (replay)
    BACKEND = "backend"  # the inference backend failed on this frame
    SUPERSEDED = "superseded"  # dropped by the latest-frame policy: a newer frame arrived first


class FrameSkipped(Exception):
    """A frame the pipeline refuses; ``reason`` is counted, ``detail`` names the camera / topic / field."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CameraMessage:
    """One camera's share of a frame.

    Attributes:
        name: camera name (the model's camera order uses these names).
        image: ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (rclpy or rosbags).
        info: the camera's latest ``sensor_msgs/CameraInfo`` (None: none received yet).
        base_from_optical: (4, 4) pose of the image's optical frame in the base frame at the image stamp, from
            tf (None: the lookup failed; ``tf_error`` says why).
        tf_error: the lookup's error message when ``base_from_optical`` is None.
    """

    name: str
    image: Any
    info: Any | None
    base_from_optical: np.ndarray | None
    tf_error: str = ""


@dataclass(frozen=True)
class FrameSet:
    """A synchronized set of camera messages.

    Attributes:
        stamp_ns: the frame's stamp (the reference camera's header stamp), nanoseconds.
        cameras: camera name -> its message; a configured camera may be missing (the frame is then skipped).
        received_ns: when the set was complete (monotonic clock, for end-to-end latency).
    """

    stamp_ns: int
    cameras: dict[str, CameraMessage] = field(default_factory=dict)
    received_ns: int = 0


def stamp_ns(header_stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (``sec``, ``nanosec``)."""
    return int(header_stamp.sec) * 1_000_000_000 + int(header_stamp.nanosec)
