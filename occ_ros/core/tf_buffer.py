"""An offline, ROS-free transform buffer: the counterpart of tf2's ``BufferCore`` for recorded data.

Frames form a tree (each child has one parent), as in tf2. Every edge stores either one static
transform (valid at any time; a later ``add`` replaces it, as on ``/tf_static``) or a time series of
dynamic transforms. A lookup walks both frames up to their common ancestor and composes the edges;
a dynamic edge is evaluated between its two bracketing samples with linear interpolation of the
translation and spherical linear interpolation (slerp) of the rotation, exactly what tf2 does.

Conventions (docs/conventions.md): transforms are 4x4 float64 ``b_from_a`` matrices
(``p_b = b_from_a @ p_a``); ``add(parent, child, ..., parent_from_child)`` takes what a
``TransformStamped`` with ``header.frame_id = parent``, ``child_frame_id = child`` carries, and
``lookup(target, source, t)`` returns ``target_from_source`` (tf2's ``lookup_transform(target, source, t)``).
Stamps are integer nanoseconds.

Per edge, samples are kept in sorted numpy arrays (built lazily after the last ``add``), so a
lookup costs O(chain length x log N) with ``np.searchsorted``, never a pass over all messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from occ_ros.core.transforms import invert_transform, is_rigid, transform_from_quaternion

__all__ = [
    "ConnectivityError",
    "ConnectivityException",
    "ExtrapolationError",
    "ExtrapolationException",
    "FrameNotFoundError",
    "LookupException",
    "TransformBuffer",
    "TransformError",
    "slerp",
]

_NS_PER_S = 1e9


class TransformError(LookupError):
    """A transform cannot be looked up (base class of the tf2-like exceptions below)."""


class FrameNotFoundError(TransformError):
    """A frame is unknown to the buffer (tf2 ``LookupException``)."""


class ConnectivityError(TransformError):
    """Both frames exist but lie in different trees (tf2 ``ConnectivityException``)."""


class ExtrapolationError(TransformError):
    """The requested time lies outside the recorded range of an edge of the chain (tf2 ``ExtrapolationException``).

    Attributes:
        parent, child: the edge that cannot be evaluated.
        stamp_ns: requested time.
        first_ns, last_ns: the recorded range of that edge.
    """

    def __init__(self, message: str, parent: str, child: str, stamp_ns: int, first_ns: int, last_ns: int) -> None:
        super().__init__(message)
        self.parent, self.child = parent, child
        self.stamp_ns, self.first_ns, self.last_ns = stamp_ns, first_ns, last_ns


# tf2's names, for readers who know them.
LookupException = FrameNotFoundError
ConnectivityException = ConnectivityError
ExtrapolationException = ExtrapolationError


def _fmt_s(ns: int) -> str:
    return f"{ns / _NS_PER_S:.9f} s"


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w), shortest arc; returns a unit (4,)."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are the same rotation: take the shorter way round
        q1, dot = -q1, -dot
    if dot > 0.9999995:  # nearly identical: lerp avoids dividing by sin(~0)
        q = q0 + alpha * (q1 - q0)
    else:
        theta = np.arccos(min(dot, 1.0))
        s = np.sin(theta)
        q = (np.sin((1.0 - alpha) * theta) / s) * q0 + (np.sin(alpha * theta) / s) * q1
    return q / np.linalg.norm(q)


@dataclass
class _Edge:
    """Samples of ``parent_from_child`` for one child frame."""

    parent: str
    static: bool
    pending_stamps: list[int] = field(default_factory=list)
    pending_matrices: list[np.ndarray] = field(default_factory=list)
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (N,) sorted, unique
    translations: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (N, 3)
    quats: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # (N, 4) x, y, z, w
    matrices: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))  # (N, 4, 4)

    def finalize(self) -> None:
        """Merge pending samples into the sorted arrays (a repeated stamp keeps the sample added last)."""
        if not self.pending_stamps:
            return
        stamps = np.concatenate([self.stamps, np.asarray(self.pending_stamps, dtype=np.int64)])
        mats = np.concatenate([self.matrices, np.stack(self.pending_matrices)])
        self.pending_stamps, self.pending_matrices = [], []
        # Stable sort, then keep the last of each run of equal stamps (= the latest add).
        order = np.argsort(stamps, kind="stable")
        stamps, mats = stamps[order], mats[order]
        keep = np.ones(len(stamps), dtype=bool)
        keep[:-1] = stamps[1:] != stamps[:-1]
        self.stamps, self.matrices = stamps[keep], mats[keep]
        self.translations = self.matrices[:, :3, 3].copy()
        self.quats = Rotation.from_matrix(self.matrices[:, :3, :3]).as_quat()

    @property
    def first_ns(self) -> int:
        return int(self.stamps[0])

    @property
    def last_ns(self) -> int:
        return int(self.stamps[-1])


class TransformBuffer:
    """Offline tf buffer: ``add`` transforms (static or stamped), then ``lookup`` at any recorded time.

    Args:
        tolerance_ns: how far (ns) a lookup may fall outside an edge's recorded range; such lookups
            use the nearest recorded sample (tf2 itself allows none: default 0).
    """

    def __init__(self, tolerance_ns: int = 0) -> None:
        if int(tolerance_ns) < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        self.tolerance_ns = int(tolerance_ns)
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent
        self._parents: set[str] = set()

    # ------------------------------------------------------------------ filling
    def add(self, parent: str, child: str, stamp_ns: int, parent_from_child: np.ndarray, static: bool = False) -> None:
        """Record ``parent_from_child`` (4x4 rigid, the pose of ``child`` in ``parent``) at ``stamp_ns``.

        Static transforms hold at any time; adding one again replaces it. Raises ValueError for a
        non-rigid matrix, a self-loop, a child given a second parent, or an edge that switches
        between static and dynamic.
        """
        parent, child = str(parent), str(child)
        T = np.asarray(parent_from_child, dtype=np.float64)
        if not parent or not child:
            raise ValueError(f"transform {parent!r} <- {child!r}: frame ids must not be empty")
        if parent == child:
            raise ValueError(f"transform {parent!r} <- {child!r}: a frame cannot be its own parent")
        if T.shape != (4, 4) or not is_rigid(T):
            raise ValueError(f"transform {parent} <- {child}: not a rigid 4x4 matrix: {T.tolist()}")
        edge = self._edges.get(child)
        if edge is None:
            self._check_no_cycle(parent, child)
            edge = self._edges[child] = _Edge(parent=parent, static=bool(static))
            self._parents.add(parent)
        elif edge.parent != parent:
            raise ValueError(
                f"frame {child!r} already has parent {edge.parent!r}; cannot also be a child of {parent!r} "
                "(tf frames form a tree)"
            )
        elif edge.static != bool(static):
            kinds = ("static", "dynamic") if edge.static else ("dynamic", "static")
            raise ValueError(f"transform {parent} <- {child} was recorded as {kinds[0]}; cannot add it as {kinds[1]}")
        if static:  # a static edge holds one transform: the latest published
            edge.pending_stamps, edge.pending_matrices = [0], [T]
            edge.stamps = np.zeros(0, dtype=np.int64)
            edge.matrices = np.zeros((0, 4, 4))
        else:
            edge.pending_stamps.append(int(stamp_ns))
            edge.pending_matrices.append(T)

    def _check_no_cycle(self, parent: str, child: str) -> None:
        frame: str | None = parent
        while frame is not None:
            if frame == child:
                raise ValueError(f"transform {parent} <- {child} would close a loop in the tf tree")
            edge = self._edges.get(frame)
            frame = edge.parent if edge is not None else None

    # ------------------------------------------------------------------ queries
    @property
    def frames(self) -> list[str]:
        """All frame ids, sorted."""
        return sorted(set(self._edges) | self._parents)

    def has_frame(self, frame: str) -> bool:
        return frame in self._edges or frame in self._parents

    def parent(self, frame: str) -> str | None:
        """Parent of ``frame`` (None for a root or an unknown frame)."""
        edge = self._edges.get(frame)
        return edge.parent if edge is not None else None

    def is_static(self, parent: str, child: str) -> bool:
        """Whether the direct edge ``parent <- child`` is static (KeyError if there is none)."""
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent:
            raise KeyError(f"no direct transform {parent} <- {child}")
        return edge.static

    def _chain(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        chain = [frame]
        edge = self._edges.get(frame)
        while edge is not None:
            chain.append(edge.parent)
            edge = self._edges.get(edge.parent)
        return chain

    def path(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames from ``source`` up to the common ancestor, and from ``target`` up to it (both inclusive).

        Raises:
            FrameNotFoundError: a frame is unknown. ConnectivityError: the frames are in different trees.
        """
        for frame in (target, source):
            if not self.has_frame(frame):
                raise FrameNotFoundError(
                    f"frame {frame!r} does not exist in the tf tree (lookup {target} <- {source}); "
                    f"known frames: {self.frames}"
                )
        up_source, up_target = self._chain(source), self._chain(target)
        on_target = {f: i for i, f in enumerate(up_target)}
        for i, frame in enumerate(up_source):
            if frame in on_target:
                return up_source[: i + 1], up_target[: on_target[frame] + 1]
        raise ConnectivityError(
            f"frames {target!r} and {source!r} are not connected in the tf tree: {source!r} has root "
            f"{up_source[-1]!r}, {target!r} has root {up_target[-1]!r}"
        )

    def _edge_at(self, child: str, stamp_ns: int, target: str, source: str, tolerance_ns: int) -> np.ndarray:
        """``parent_from_child`` of one edge at ``stamp_ns`` (4x4)."""
        edge = self._edges[child]
        edge.finalize()
        if edge.static:
            return edge.matrices[0]
        stamps = edge.stamps
        first, last = int(stamps[0]), int(stamps[-1])
        if stamp_ns < first - tolerance_ns or stamp_ns > last + tolerance_ns:
            when = "before the first" if stamp_ns < first else "after the last"
            gap = first - stamp_ns if stamp_ns < first else stamp_ns - last
            raise ExtrapolationError(
                f"lookup {target} <- {source} at {_fmt_s(stamp_ns)}: extrapolation into the "
                f"{'past' if stamp_ns < first else 'future'}, {gap / _NS_PER_S:.9f} s {when} transform "
                f"{edge.parent} <- {child} (recorded from {_fmt_s(first)} to {_fmt_s(last)}, "
                f"{len(stamps)} samples; tolerance {tolerance_ns / _NS_PER_S:g} s)",
                edge.parent,
                child,
                stamp_ns,
                first,
                last,
            )
        if stamp_ns <= first:
            return edge.matrices[0]
        if stamp_ns >= last:
            return edge.matrices[-1]
        hi = int(np.searchsorted(stamps, stamp_ns, side="left"))
        if stamps[hi] == stamp_ns:
            return edge.matrices[hi]
        lo = hi - 1
        t0, t1 = int(stamps[lo]), int(stamps[hi])
        alpha = (stamp_ns - t0) / (t1 - t0)
        out = np.eye(4)
        out[:3, 3] = edge.translations[lo] + alpha * (edge.translations[hi] - edge.translations[lo])
        out[:3, :3] = Rotation.from_quat(slerp(edge.quats[lo], edge.quats[hi], alpha)).as_matrix()
        return out

    def _root_from(self, chain: list[str], stamp_ns: int, target: str, source: str, tolerance_ns: int) -> np.ndarray:
        """``chain[-1]_from_chain[0]`` (4x4) composing the edges of ``chain`` at ``stamp_ns``."""
        out = np.eye(4)
        for child in reversed(chain[:-1]):  # from the ancestor down: ancestor_from_x = ... @ parent_from_child
            out = out @ self._edge_at(child, stamp_ns, target, source, tolerance_ns)
        return out

    def lookup(self, target: str, source: str, stamp_ns: int, tolerance_ns: int | None = None) -> np.ndarray:
        """``target_from_source`` (4x4 float64) at ``stamp_ns`` (tf2 ``lookup_transform(target, source, t)``).

        Args:
            tolerance_ns: overrides the buffer's extrapolation tolerance for this lookup.
        Raises:
            FrameNotFoundError: an unknown frame. ConnectivityError: the frames are not connected.
            ExtrapolationError: ``stamp_ns`` lies outside the recorded range of a dynamic edge on the path
                (message names the frames and the range).
        """
        tol = self.tolerance_ns if tolerance_ns is None else int(tolerance_ns)
        stamp_ns = int(stamp_ns)
        up_source, up_target = self.path(target, source)
        anc_from_source = self._root_from(up_source, stamp_ns, target, source, tol)
        if len(up_target) == 1:
            return anc_from_source
        anc_from_target = self._root_from(up_target, stamp_ns, target, source, tol)
        return invert_transform(anc_from_target) @ anc_from_source

    def __repr__(self) -> str:
        n_static = sum(e.static for e in self._edges.values())
        n_dynamic = len(self._edges) - n_static
        return f"TransformBuffer({len(self.frames)} frames, {n_static} static / {n_dynamic} dynamic edges)"


def matrix_from_transform(msg_transform: Any) -> np.ndarray:
    """(4, 4) ``parent_from_child`` from a geometry_msgs Transform or TransformStamped (rclpy or rosbags).

    Raises:
        ValueError: the rotation quaternion is not unit length (e.g. all zeros); names the frames when it can.
    """
    where = ""
    if hasattr(msg_transform, "transform"):  # TransformStamped
        where = f"transform {msg_transform.header.frame_id} <- {msg_transform.child_frame_id}: "
        msg_transform = msg_transform.transform
    t, q = msg_transform.translation, msg_transform.rotation
    try:
        return transform_from_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
    except ValueError as err:
        raise ValueError(f"{where}{err}") from None


def add_tf_message(buffer: TransformBuffer, msg: Any, static: bool) -> None:
    """Add every transform of a ``tf2_msgs/TFMessage`` (``/tf`` or ``/tf_static``, rclpy or rosbags) to ``buffer``.

    Raises:
        ValueError: a transform that is not rigid or would close a cycle (names both frames).
    """
    for tfs in msg.transforms:
        stamp = int(tfs.header.stamp.sec) * 1_000_000_000 + int(tfs.header.stamp.nanosec)
        buffer.add(
            str(tfs.header.frame_id).lstrip("/"),
            str(tfs.child_frame_id).lstrip("/"),
            stamp,
            matrix_from_transform(tfs),
            static=static,
        )
