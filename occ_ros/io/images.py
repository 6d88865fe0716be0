"""Decoding of sensor_msgs images (raw and compressed) to RGB arrays: no rosbags, no ROS, numpy + OpenCV.

The node (rclpy messages) and ``occ replay`` / the bag reader (rosbags messages) decode with this one function; the
messages are duck-typed (``encoding``, ``height``, ``width``, ``step``, ``data``; ``format`` for CompressedImage).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


class UnsupportedEncodingError(ValueError):
    """An image encoding or compressed format this decoder does not read (as opposed to damaged data)."""


# encoding -> (channels, cv2 conversion to RGB or None when already RGB)
_RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}


def _as_bytes_array(data: Any) -> np.ndarray:
    """1-D uint8 view of a message's ``data`` (numpy array, bytes, array.array or list)."""
    if isinstance(data, np.ndarray):
        arr = data.reshape(-1)
        return arr if arr.dtype == np.uint8 else arr.view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def image_to_rgb(msg: Any, copy: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB array from a sensor_msgs Image or CompressedImage.

    ``copy=False`` lets an ``rgb8`` image come back as a read-only view of the message's buffer (no 4 MB copy per
    1600x900 camera); the caller must then not keep it beyond the message's lifetime or write to it. Other
    encodings are converted, hence always fresh arrays.

    Image encodings: rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 (replicated). Honours ``step``
    (row padding). CompressedImage: anything OpenCV decodes (JPEG, PNG, ...), except compressedDepth.
    Raises:
        UnsupportedEncodingError: an encoding / compressed format it does not read.
        ValueError: a data length other than ``height * step``, or
            undecodable compressed data.
    """
    data = _as_bytes_array(msg.data)
    if hasattr(msg, "format"):  # CompressedImage
        fmt = str(msg.format)
        if "compresseddepth" in fmt.lower():
            raise UnsupportedEncodingError(f"compressed image format {fmt!r} is a depth image, not a colour image")
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            raise ValueError(f"cannot decode compressed image (format {fmt!r}, {data.size} bytes)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    encoding = str(msg.encoding)
    if encoding not in _RAW_ENCODINGS:
        raise UnsupportedEncodingError(f"unsupported image encoding {encoding!r}; supported: {sorted(_RAW_ENCODINGS)}")
    channels, conversion = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels
    if height <= 0 or width <= 0:
        raise ValueError(f"{encoding} image has an empty size {width}x{height}")
    if step < row_bytes:
        raise ValueError(f"{encoding} image {width}x{height}: step {step} < width * {channels} = {row_bytes}")
    if data.size != height * step:
        raise ValueError(
            f"{encoding} image {width}x{height}: data has {data.size} bytes, expected height * step = "
            f"{height} * {step} = {height * step}"
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    if conversion is None:
        view = rows.reshape(height, width, channels)
        if copy:
            return view.copy()
        view.flags.writeable = False
        return view
    img = np.ascontiguousarray(rows.reshape(height, width, channels) if channels > 1 else rows)
    return cv2.cvtColor(img, conversion)
