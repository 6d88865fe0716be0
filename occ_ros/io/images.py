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


#: libjpeg's DCT-scaled decodes: factor -> OpenCV imdecode flag.
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def is_jpeg(msg: Any) -> bool:
    """Whether ``msg`` is a CompressedImage holding a JPEG (by its data's SOI marker ``FF D8 FF``, not ``format``)."""
    if not hasattr(msg, "format"):
        return False
    head = _as_bytes_array(msg.data)[:3]
    return head.size == 3 and bytes(head) == b"\xff\xd8\xff"


def image_to_rgb(msg: Any, copy: bool = True, reduction: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB array from a sensor_msgs Image or CompressedImage.

    ``copy=False`` lets an ``rgb8`` image come back as a read-only view of the message's buffer (no 4 MB copy per
    1600x900 camera); the caller must then not keep it beyond the message's lifetime or write to it. Other
    encodings are converted, hence always fresh arrays.

    ``reduction`` 2, 4 or 8 decodes a JPEG CompressedImage (:func:`is_jpeg`) that many times smaller per axis with
    libjpeg's DCT scaling (OpenCV ``IMREAD_REDUCED_COLOR_r``): ``ceil(W / r) x ceil(H / r)``, each pixel about the
    average of an ``r x r`` block (pixel centres at ``(u + 0.5) / r - 0.5``), in about half the CPU time of the
    full decode for a 1600x900 image (the entropy decoding remains). Every other message comes back at full size
    whatever ``reduction`` says (PNG has no DCT scaling); the caller checks :func:`is_jpeg` to know which it gets.

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
        if reduction not in (1, *_REDUCED_FLAGS):
            raise ValueError(f"reduction must be 1, 2, 4 or 8, got {reduction!r}")
        flag = _REDUCED_FLAGS[reduction] if reduction > 1 and is_jpeg(msg) else cv2.IMREAD_COLOR
        bgr = cv2.imdecode(data, flag) if data.size else None
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
