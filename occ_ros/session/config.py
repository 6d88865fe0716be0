""":class:`SessionConfig`: what an occupancy session needs to know, as a plain dataclass (ROS-free).

The node builds it from its parameters (:meth:`occ_ros.node.params.NodeParams.session_config`), ``occ replay``
from the same parameters or from a bag config (``ReplaySetup.from_bag_config`` in :mod:`occ_ros.replay`). Nothing here
knows where the messages come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from occ_ros.pipeline.costmap import CostmapConfig

NODE_NAME = "occupancy_node"
"""The node's name; its outputs are ``~/<name>``, i.e. ``/<namespace>/occupancy_node/<name>``."""

OUTPUT_NAMES = ("voxels", "markers", "grid", "grid_description", "costmap", "query/voxels")
"""The outputs, by their private topic names (``~/voxels`` ...; ``~/query/voxels`` answers ``~/query``)."""

MARKER_NAMESPACE = "occupancy"
"""``Marker.ns`` of every cube list."""


def output_topics(namespace: str = "", node_name: str = NODE_NAME) -> dict[str, str]:
    """The absolute output topics of a node ``node_name`` in ``namespace``: what the node publishes and what
    ``occ replay`` records (``{"voxels": "/occupancy_node/voxels", ...}``; ``/perception/occupancy_node/...`` in
    namespace ``/perception``)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return {name: f"{ns}/{node_name}/{name}" for name in OUTPUT_NAMES}


@dataclass(frozen=True)
class CameraInput:
    """One camera's inputs.

    Attributes:
        name: camera name (the model's camera order uses these names).
        image_topic: the topic its images arrive on (``.../compressed`` for compressed images).
        info_topic: its CameraInfo topic.
        frame_id: optical frame for the tf lookup; "" = the image's ``header.frame_id`` (a leading ``/`` is
            dropped, as tf2 frame ids have none).
    """

    name: str
    image_topic: str
    info_topic: str
    frame_id: str = ""


@dataclass(frozen=True)
class SessionConfig:
    """Settings of an :class:`~occ_ros.session.session.OccupancySession`.

    Attributes:
        cameras: the cameras in the model's input order.
        base_frame: the grid's frame; each camera's extrinsic is ``base_frame <- optical frame``.
        frame_id: ``header.frame_id`` of the outputs ("" = ``base_frame``).
        tf_timeout_s: how long one frame may wait for its camera transforms in total, s.
        cloud, markers, grid: which outputs are built (``grid`` includes ``grid_description``).
        processing_time: publish each frame's stage times and latency (``~/debug/...``, see
            :func:`occ_ros.session.session.debug_topics`).
        markers_period_s: at most one MarkerArray per this many seconds of *message time* (frame stamps, so the
            node under sim time and ``occ replay`` emit markers on the same frames); 0 = every frame.
        max_marker_voxels: cap on the cubes in one MarkerArray.
        min_confidence: publish only voxels at least this confident (None = every non-free voxel).
        input_timeout_s: an input topic with no message for this long (wall clock) is reported silent.
        warn_period_s: at most one warning per reason per this many seconds.
        backend_error_after: the diagnostics go to ERROR when the backend failed on this many frames in a row
            (WARN from the first failure; a processed frame resets the count).
        costmap: build ``~/costmap`` (``nav_msgs/OccupancyGrid``).
        costmap_config: its height band, obstacle classes, confidence threshold and camera-view rule.
        query: answer ``~/query`` with ``~/query/voxels`` (when the model has features and prompt embeddings).
        query_threshold: a fixed decision threshold (cosine) for every prompt; None = each prompt's calibrated
            one from the model's metadata.
    """

    cameras: tuple[CameraInput, ...]
    base_frame: str = "base_link"
    frame_id: str = ""
    tf_timeout_s: float = 0.0
    cloud: bool = True
    markers: bool = True
    grid: bool = True
    processing_time: bool = True
    markers_period_s: float = 0.5
    max_marker_voxels: int = 50_000
    min_confidence: float | None = None
    input_timeout_s: float = 2.0
    warn_period_s: float = 5.0
    backend_error_after: int = 5
    # --- ~/costmap (issue 23)
    costmap: bool = True
    costmap_config: CostmapConfig = field(default_factory=CostmapConfig)
    query: bool = True
    query_threshold: float | None = None

    def __post_init__(self) -> None:
        cameras = tuple(self.cameras)
        if not cameras:
            raise ValueError("SessionConfig: at least one camera is needed")
        names = [c.name for c in cameras]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"SessionConfig: camera names must be unique, repeated: {repeated}")
        object.__setattr__(self, "cameras", cameras)
        for name in ("tf_timeout_s", "markers_period_s", "input_timeout_s", "warn_period_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"SessionConfig.{name}: expected a finite number >= 0, got {value!r}")
        if self.backend_error_after < 1:
            raise ValueError(f"SessionConfig.backend_error_after: expected >= 1, got {self.backend_error_after}")
        if self.query_threshold is not None and not -1.0 <= self.query_threshold <= 1.0:
            raise ValueError(f"SessionConfig.query_threshold: expected a cosine in [-1, 1], got {self.query_threshold}")
        if self.max_marker_voxels < 1:
            raise ValueError(f"SessionConfig.max_marker_voxels: expected >= 1, got {self.max_marker_voxels}")

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def output_frame(self) -> str:
        """``header.frame_id`` of every output."""
        return self.frame_id or self.base_frame

    def input_topics(self) -> list[str]:
        """Every subscribed topic: the cameras' image topics, then their CameraInfo topics."""
        return [c.image_topic for c in self.cameras] + [c.info_topic for c in self.cameras]
