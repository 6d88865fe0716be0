"""Pipeline statistics for diagnostics (``diagnostic_updater``) and replay metrics.

:class:`PipelineStats` counts frames received, processed and skipped (per :class:`~.frames.SkipReason`),
keeps the last problem, and per-stage latencies in bounded windows (``collections.deque(maxlen=window)``,
so memory is constant however long the node runs). :meth:`PipelineStats.snapshot` turns that into a frozen
:class:`StatsSnapshot` (p50 / p99 / mean / max in milliseconds over the window, ``numpy.percentile``'s
default linear interpolation); :meth:`PipelineStats.diagnostic_values` and
:meth:`PipelineStats.diagnostic_level` feed a ``diagnostic_updater`` task (``stat.summary(level, message)``
and ``stat.add(key, value)`` for each pair).

Diagnostic level (evaluated at the time of the call, with the injected monotonic clock; no state is
consumed, so several readers see the same level):

* ERROR (2): frames arrive (some input within the last ``stall_s`` seconds) but none was processed for
  ``stall_s`` seconds (counting from the first input when nothing was ever processed): e.g. the backend
  fails on every frame, or every frame is skipped.
* WARN (1): no input for ``stall_s`` seconds (or none yet); or at least one *problem* skip in the last
  ``warn_period_s`` seconds. ``superseded`` drops (the latest-frame policy working as designed with a
  backend slower than the cameras) are counted and reported but are not problems unless
  ``warn_on_superseded``; they also do not overwrite ``last_problem``.
* OK (0) otherwise.

:meth:`PipelineStats.backend_failures` counts the frames the backend failed on since the last processed frame (the
session raises the level on it: WARN at the first, ERROR after ``diagnostics.backend_error_after`` in a row).

"Input" is any of :meth:`~PipelineStats.record_received`, :meth:`~PipelineStats.record_processed`,
:meth:`~PipelineStats.record_skip` / :meth:`~PipelineStats.record_drop`.

Thread safety: every method takes one internal lock (recording is O(1); percentiles are computed on copies
outside the lock), so the sync callbacks, the worker thread and the diagnostics timer may share one object.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from occ_ros.core.frames import SkipReason

__all__ = ["DIAG_ERROR", "DIAG_OK", "DIAG_WARN", "TOTAL_STAGE", "LatencyStats", "PipelineStats", "StatsSnapshot"]

DIAG_OK, DIAG_WARN, DIAG_ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus OK, WARN, ERROR (bytes there)
TOTAL_STAGE = "end_to_end"  # the key of the end-to-end latency in to_dict() / diagnostic values


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one stage: ``count`` samples recorded in all; the rest over the last ``window`` of them."""

    count: int
    window: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @staticmethod
    def from_seconds(count: int, values: list[float]) -> LatencyStats:
        """Summarize ``values`` (seconds, non-empty) as milliseconds."""
        ms = np.asarray(values, dtype=np.float64) * 1e3
        p50, p99 = np.percentile(ms, [50.0, 99.0])
        return LatencyStats(count, len(values), float(p50), float(p99), float(ms.mean()), float(ms.max()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "count": self.count,
            "window": self.window,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
        }


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of :class:`PipelineStats`.

    Attributes:
        received: frames that entered the pipeline (:meth:`PipelineStats.record_received`).
        processed: frames that produced output.
        skipped: every :class:`SkipReason` value -> frames skipped or dropped for it (zeros included).
        last_problem: ``(reason value, detail)`` of the latest problem skip, or None.
        stages: stage name -> latency, in first-recorded order (only stages with samples).
        total: end-to-end latency of processed frames, or None before the first one.
    """

    received: int
    processed: int
    skipped: dict[str, int] = field(default_factory=dict)
    last_problem: tuple[str, str] | None = None
    stages: dict[str, LatencyStats] = field(default_factory=dict)
    total: LatencyStats | None = None

    @property
    def skipped_total(self) -> int:
        """Frames skipped or dropped, all reasons together."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (metrics files)."""
        return {
            "received": self.received,
            "processed": self.processed,
            "skipped_total": self.skipped_total,
            "skipped": dict(self.skipped),
            "last_problem": None
            if self.last_problem is None
            else {"reason": self.last_problem[0], "detail": self.last_problem[1]},
            "stages": {name: s.to_dict() for name, s in self.stages.items()},
            TOTAL_STAGE: None if self.total is None else self.total.to_dict(),
        }


class PipelineStats:
    """Thread-safe counters and bounded latency windows of the pipeline (see the module docstring).

    Args:
        window: samples kept per stage (and recent problem skips kept for the WARN rule).
        warn_period_s: a problem skip keeps the level at WARN for this long.
        stall_s: ERROR when frames arrive but none was processed for this long; WARN when no frame arrived
            for this long.
        warn_on_superseded: count latest-frame drops (``superseded``) as problems too.
        clock: monotonic time in seconds (injectable for tests).
    """

    def __init__(
        self,
        window: int = 1000,
        *,
        warn_period_s: float = 5.0,
        stall_s: float = 5.0,
        warn_on_superseded: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if int(window) < 1:
            raise ValueError(f"window must be >= 1 (got {window})")
        self._window = int(window)
        self._warn_period_s = float(warn_period_s)
        self._stall_s = float(stall_s)
        self._warn_on_superseded = bool(warn_on_superseded)
        self._clock = clock
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        """(Re)initialize every counter and window (caller holds the lock or is the constructor)."""
        self._received = 0
        self._processed = 0
        self._skipped = {reason.value: 0 for reason in SkipReason}
        self._last_problem: tuple[str, str] | None = None
        self._stages: dict[str, deque[float]] = {}
        self._stage_counts: dict[str, int] = {}
        self._total: deque[float] = deque(maxlen=self._window)
        self._problem_times: deque[float] = deque(maxlen=self._window)
        self._first_input: float | None = None
        self._last_input: float | None = None
        self._last_processed: float | None = None
        self._backend_failures = 0  # consecutive: reset by the next processed frame
        self._last_backend_error = ""

    @property
    def window(self) -> int:
        """Samples kept per latency window."""
        return self._window

    # ------------------------------------------------------------------ recording
    def _input_locked(self, now: float) -> None:
        if self._first_input is None:
            self._first_input = now
        self._last_input = now

    def record_received(self) -> None:
        """A frame entered the pipeline (a complete synchronized set)."""
        now = self._clock()
        with self._lock:
            self._received += 1
            self._input_locked(now)

    def record_stage(self, stage: str, seconds: float) -> None:
        """One stage's duration for one frame (non-finite values are ignored)."""
        if not math.isfinite(seconds):
            return
        with self._lock:
            samples = self._stages.get(stage)
            if samples is None:
                samples = self._stages[stage] = deque(maxlen=self._window)
                self._stage_counts[stage] = 0
            samples.append(float(seconds))
            self._stage_counts[stage] += 1

    def record_processed(self, total_seconds: float) -> None:
        """A frame produced output; ``total_seconds`` is its end-to-end latency (non-finite: not sampled)."""
        now = self._clock()
        with self._lock:
            self._processed += 1
            self._last_processed = now
            self._backend_failures = 0
            self._input_locked(now)
            if math.isfinite(total_seconds):
                self._total.append(float(total_seconds))

    def record_skip(self, reason: SkipReason, detail: str = "") -> None:
        """A frame produced no output because of ``reason`` (``detail``: camera / topic / field)."""
        reason = SkipReason(reason)
        now = self._clock()
        with self._lock:
            self._skipped[reason.value] += 1
            self._input_locked(now)
            if reason is SkipReason.BACKEND:
                self._backend_failures += 1
                self._last_backend_error = detail
            if self._is_problem(reason):
                self._last_problem = (reason.value, detail)
                self._problem_times.append(now)

    def record_drop(self, reason: SkipReason = SkipReason.SUPERSEDED, detail: str = "") -> None:
        """A frame dropped unprocessed (by default by the latest-frame policy); same as :meth:`record_skip`."""
        self.record_skip(reason, detail)

    def reset(self) -> None:
        """Forget everything (e.g. between replay runs)."""
        with self._lock:
            self._init_state()

    def _is_problem(self, reason: SkipReason) -> bool:
        return reason is not SkipReason.SUPERSEDED or self._warn_on_superseded

    # ------------------------------------------------------------------ reading
    def backend_failures(self) -> tuple[int, str]:
        """``(count, detail)``: frames the backend failed on since the last processed frame, and the latest error."""
        with self._lock:
            return self._backend_failures, self._last_backend_error

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of all counters, with latency summaries over the windows."""
        with self._lock:
            received, processed = self._received, self._processed
            skipped = dict(self._skipped)
            last_problem = self._last_problem
            stage_samples = {name: (self._stage_counts[name], list(s)) for name, s in self._stages.items()}
            total_samples = list(self._total)
        stages = {name: LatencyStats.from_seconds(count, values) for name, (count, values) in stage_samples.items()}
        total = LatencyStats.from_seconds(processed, total_samples) if total_samples else None
        return StatsSnapshot(received, processed, skipped, last_problem, stages, total)

    def diagnostic_values(self) -> list[tuple[str, str]]:
        """``(key, value)`` strings for a ``diagnostic_msgs/KeyValue`` list (stable keys, every reason listed)."""
        snap = self.snapshot()
        values = [
            ("frames received", str(snap.received)),
            ("frames processed", str(snap.processed)),
            ("frames skipped", str(snap.skipped_total)),
            ("backend failures in a row", str(self.backend_failures()[0])),
        ]
        values += [(f"skipped {reason}", str(count)) for reason, count in snap.skipped.items()]
        problem = "none" if snap.last_problem is None else f"{snap.last_problem[0]}: {snap.last_problem[1]}"
        values.append(("last problem", problem))
        named = list(snap.stages.items())
        if snap.total is not None:
            named.append((TOTAL_STAGE, snap.total))
        for name, s in named:
            values += [
                (f"{name} p50 [ms]", f"{s.p50_ms:.2f}"),
                (f"{name} p99 [ms]", f"{s.p99_ms:.2f}"),
                (f"{name} mean [ms]", f"{s.mean_ms:.2f}"),
                (f"{name} max [ms]", f"{s.max_ms:.2f}"),
            ]
        return values

    def diagnostic_level(self) -> tuple[int, str]:
        """``(level, message)``: 0 OK, 1 WARN, 2 ERROR by the rules in the module docstring."""
        now = self._clock()
        with self._lock:
            first_input, last_input = self._first_input, self._last_input
            last_processed, processed = self._last_processed, self._processed
            last_problem = self._last_problem
            recent = sum(1 for t in self._problem_times if now - t <= self._warn_period_s)
            total = list(self._total)
        problem = "" if last_problem is None else f"{last_problem[0]}: {last_problem[1]}"
        if last_input is None or first_input is None:
            return DIAG_WARN, "no frames received yet"
        if now - last_input >= self._stall_s:
            return DIAG_WARN, f"no frames for {now - last_input:.1f} s"
        since = last_processed if last_processed is not None else first_input
        if now - since >= self._stall_s:
            what = "processed yet" if last_processed is None else f"processed for {now - since:.1f} s"
            suffix = f" (last problem: {problem})" if problem else ""
            return DIAG_ERROR, f"frames arrive but none {what}{suffix}"
        if recent:
            return DIAG_WARN, f"{recent} frame(s) skipped in the last {self._warn_period_s:g} s, last: {problem}"
        message = f"{processed} frames processed"
        if total:
            message += f", end-to-end p50 {float(np.percentile(total, 50.0)) * 1e3:.1f} ms"
        return DIAG_OK, message
