"""One occupancy session, driven by the rclpy node and by ``occ replay`` alike (ROS-free).

* :mod:`.config` - :class:`SessionConfig` (cameras, frames, outputs), the node name and output topics;
* :mod:`.assembler` - a synchronized set of images + CameraInfo + tf -> :class:`~occ_ros.core.frames.FrameSet`;
* :mod:`.inputs` - per-topic arrival counts and ages: which input is silent;
* :mod:`.session` - :class:`OccupancySession`: stamp guard, latest-frame worker, pipeline, outputs, warnings and
  diagnostics.

Only :mod:`.config` (standard library only) is imported with the package: the launch file and the parameter
module read the node name and the config types without pulling in the inference stack. The other names load on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import MARKER_NAMESPACE, NODE_NAME, CameraInput, SessionConfig, output_topics

if TYPE_CHECKING:
    from .assembler import FrameAssembler, TransformLookup
    from .inputs import InputMonitor, InputState
    from .session import (
        LATENCY_TOPIC,
        PROCESSING_TIME_STAGES,
        DiagnosticReport,
        LoadedModel,
        LogForwarder,
        OccupancySession,
        OutputSinks,
        WarnThrottle,
        debug_topics,
        diagnostic_level_bytes,
        forward_python_logging,
        processing_time_topic,
    )

_LAZY = {
    "FrameAssembler": ".assembler",
    "TransformLookup": ".assembler",
    "InputMonitor": ".inputs",
    "InputState": ".inputs",
    "DiagnosticReport": ".session",
    "LoadedModel": ".session",
    "LogForwarder": ".session",
    "OccupancySession": ".session",
    "OutputSinks": ".session",
    "WarnThrottle": ".session",
    "LATENCY_TOPIC": ".session",
    "PROCESSING_TIME_STAGES": ".session",
    "debug_topics": ".session",
    "processing_time_topic": ".session",
    "diagnostic_level_bytes": ".session",
    "forward_python_logging": ".session",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LATENCY_TOPIC",
    "MARKER_NAMESPACE",
    "NODE_NAME",
    "PROCESSING_TIME_STAGES",
    "CameraInput",
    "DiagnosticReport",
    "FrameAssembler",
    "InputMonitor",
    "InputState",
    "LoadedModel",
    "LogForwarder",
    "OccupancySession",
    "OutputSinks",
    "SessionConfig",
    "TransformLookup",
    "WarnThrottle",
    "debug_topics",
    "diagnostic_level_bytes",
    "forward_python_logging",
    "output_topics",
    "processing_time_topic",
]
