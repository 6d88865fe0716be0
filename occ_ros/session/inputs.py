"""Per-topic arrival watch: which input topics deliver, how often, and which are silent (ROS-free).

The synchronizer only calls back with complete sets, so a camera that never publishes leaves no trace there:
every frame just never happens. :class:`InputMonitor` sees each message *before* the synchronizer (the node
registers it as a second callback on each ``message_filters.Subscriber``; ``occ replay`` calls it for each bag
record), so diagnostics and warnings can name the silent topic.

Ages are measured on an injected monotonic clock (wall time), not on message stamps or the ROS clock: under
``use_sim_time`` a stalled bag stops ``/clock`` too, and a silent input must still show as silent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class InputState:
    """One topic at one moment: ``count`` messages so far, the last ``age_s`` seconds ago (None: never)."""

    topic: str
    count: int
    age_s: float | None

    def describe(self) -> str:
        """``"12 received, last 0.08 s ago"`` / ``"never received"``."""
        if self.age_s is None:
            return "never received"
        return f"{self.count} received, last {self.age_s:.2f} s ago"


class InputMonitor:
    """Counts the messages of each input topic and tells which are silent.

    A topic is *silent* when it has delivered nothing for ``timeout_s`` seconds, counting from the monitor's
    creation (the node's start) when it never delivered.

    Args:
        topics: the watched topics, in the order they are reported.
        timeout_s: silence threshold, s.
        clock: monotonic seconds.
    Thread safety: one lock; :meth:`arrived` is O(1).
    """

    def __init__(
        self, topics: Sequence[str], timeout_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.topics = tuple(dict.fromkeys(topics))
        self.timeout_s = float(timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._counts = dict.fromkeys(self.topics, 0)
        self._last: dict[str, float] = {}

    def arrived(self, topic: str) -> None:
        """A message of ``topic`` arrived now (an unknown topic is ignored)."""
        now = self._clock()
        with self._lock:
            if topic in self._counts:
                self._counts[topic] += 1
                self._last[topic] = now

    def states(self) -> list[InputState]:
        """Every watched topic's count and age, in :attr:`topics` order."""
        now = self._clock()
        with self._lock:
            return [
                InputState(t, self._counts[t], None if t not in self._last else max(0.0, now - self._last[t]))
                for t in self.topics
            ]

    def silent(self) -> list[InputState]:
        """The topics with nothing for ``timeout_s`` (never received ones once ``timeout_s`` has passed)."""
        since_start = self._clock() - self._start
        return [
            s
            for s in self.states()
            if (s.age_s is None and since_start >= self.timeout_s)
            or (s.age_s is not None and s.age_s >= self.timeout_s)
        ]
