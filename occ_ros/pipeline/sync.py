"""Streaming ApproximateTime synchronization (message_filters' Python algorithm) and a stamp-order guard.

:class:`ApproximateTimeSync` is a ROS-free, integer-nanosecond port of ``ApproximateTimeSynchronizer.add``
from ros2/message_filters (``src/message_filters/__init__.py``), so that ``occ replay`` groups camera
messages exactly like the node's ``message_filters.ApproximateTimeSynchronizer``. Per call, for the
input ``name`` receiving a message stamped ``t``:

1. the message is stored in that input's queue, a dict keyed by stamp (a message with a stamp already
   queued *replaces* the earlier one, which keeps its dict position); while the queue holds more than
   ``queue_size`` messages the one with the *smallest stamp* is deleted (possibly the new message itself
   when it arrives late). Only the receiving input's queue is trimmed: the queues of the other inputs
   shrink only when they receive messages or take part in a set;
2. for every *other* input, the candidates are its queued stamps ``s`` with ``|s - t| <= slop``, sorted
   by ``|s - t|`` (a stable sort: ties keep queue insertion order). If an input has no candidate, no set
   is emitted;
3. the combinations are visited in ``itertools.product`` order over those candidate lists (the first
   input varies slowest), with ``t`` inserted at the receiving input's position; the first combination
   with ``max - min < slop`` (**strict**) whose messages are all still queued is emitted and its messages
   are deleted from their queues. At most one set is emitted per call.

Details of the ROS 2 implementation kept on purpose:

* Candidates are admitted with ``<= slop`` but a set needs a spread ``< slop``: two messages exactly
  ``slop`` apart never synchronize, and ``slop == 0`` synchronizes nothing (rejected here, see below).
* ``slop`` is a float in seconds there, converted by ``rclpy.duration.Duration(seconds=slop)``, i.e.
  ``int(slop * 1e9)`` (truncated); :func:`slop_ns_from_seconds` does the same conversion. Stamps are
  ``rclpy.time.Time`` compared through their nanoseconds, which is what the integers here are.
* Messages are never emitted twice and never reordered: a late message whose peers were already used in
  an earlier set just waits in its queue until it is evicted.

One deliberate difference, with identical results: instead of materializing the whole product, the
combinations are walked depth-first in the same order and a branch is abandoned as soon as its partial
spread reaches ``slop`` (adding stamps can only widen it), so a 6-camera rig with full queues stays cheap.
Headerless messages (``allow_headerless``) are not supported: callers always pass a header stamp.

:class:`StampGuard` rejects frames whose stamp is not newer than the last accepted one (duplicates and
out-of-order sets after synchronization), raising :class:`~.frames.FrameSkipped` with
:attr:`~.frames.SkipReason.STAMP_ORDER`, and resets itself on a large jump backwards (a bag loop or a
simulation restart) instead of rejecting everything until time catches up again.

Thread safety: both classes guard their state with a lock, so ``add`` / ``check`` / ``accept`` may be
called from several threads (the node's subscription callbacks run in whatever executor it uses).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from occ_ros.core.frames import FrameSkipped, SkipReason

__all__ = ["ApproximateTimeSync", "StampGuard", "slop_ns_from_seconds"]

_NS_PER_S = 1_000_000_000


def slop_ns_from_seconds(slop_s: float) -> int:
    """``slop`` in seconds -> integer nanoseconds, truncating like ``rclpy.duration.Duration(seconds=slop)``."""
    return int(slop_s * _NS_PER_S)


class ApproximateTimeSync:
    """message_filters' ``ApproximateTimeSynchronizer`` over named inputs, stamps in integer nanoseconds.

    Args:
        names: input names (camera names), in the order message_filters would receive its filters; the
            order decides which combination wins when several are within ``slop``.
        slop_ns: the synchronizer's ``slop``; a set's spread (max - min stamp) must be strictly smaller.
        queue_size: messages kept per input (message_filters' ``queue_size``).

    Raises:
        ValueError: no or duplicate names, ``slop_ns <= 0`` (message_filters would never emit a set) or
            ``queue_size < 1``.

    Thread safety: all methods take an internal lock.
    """

    def __init__(self, names: Sequence[str], slop_ns: int, queue_size: int = 10) -> None:
        names = tuple(names)
        if not names:
            raise ValueError("ApproximateTimeSync needs at least one input name")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate input names: {list(names)}")
        if int(slop_ns) <= 0:
            raise ValueError(f"slop_ns must be > 0 (got {slop_ns}): a set needs max - min stamp < slop")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1 (got {queue_size})")
        self._names = names
        self._index = {name: i for i, name in enumerate(names)}
        self._slop_ns = int(slop_ns)
        self._queue_size = int(queue_size)
        self._lock = threading.Lock()
        self._queues: list[dict[int, Any]] = [{} for _ in names]
        self._evicted = dict.fromkeys(names, 0)
        self._replaced = dict.fromkeys(names, 0)
        self._emitted = 0

    # ------------------------------------------------------------------ properties
    @property
    def names(self) -> tuple[str, ...]:
        """The input names, in input order."""
        return self._names

    @property
    def slop_ns(self) -> int:
        """The slop in nanoseconds."""
        return self._slop_ns

    @property
    def queue_size(self) -> int:
        """Messages kept per input."""
        return self._queue_size

    @property
    def evicted(self) -> dict[str, int]:
        """Per input, messages deleted unused by the ``queue_size`` limit (cumulative; a copy)."""
        with self._lock:
            return dict(self._evicted)

    @property
    def replaced(self) -> dict[str, int]:
        """Per input, queued messages overwritten unused by a later message with the same stamp (a copy)."""
        with self._lock:
            return dict(self._replaced)

    @property
    def emitted(self) -> int:
        """Complete sets returned so far."""
        with self._lock:
            return self._emitted

    def queued(self) -> dict[str, list[int]]:
        """Per input, the stamps waiting in its queue (in queue order)."""
        with self._lock:
            return {name: list(q) for name, q in zip(self._names, self._queues, strict=True)}

    # ------------------------------------------------------------------ operations
    def reset(self, clear_counters: bool = False) -> int:
        """Empty every queue (e.g. after a time jump); returns how many queued messages were discarded.

        Discarded messages are not added to :attr:`evicted`; ``clear_counters`` also zeroes the counters.
        """
        with self._lock:
            discarded = sum(len(q) for q in self._queues)
            for q in self._queues:
                q.clear()
            if clear_counters:
                self._evicted = dict.fromkeys(self._names, 0)
                self._replaced = dict.fromkeys(self._names, 0)
                self._emitted = 0
            return discarded

    def add(self, name: str, stamp_ns: int, msg: Any) -> dict[str, tuple[int, Any]] | None:
        """Queue ``msg`` of input ``name`` stamped ``stamp_ns``; return the set it completes, if any.

        Returns:
            ``{input name: (stamp_ns, msg)}`` for every input, in input order, or None.
        Raises:
            KeyError: ``name`` is not one of :attr:`names`.
        """
        try:
            i = self._index[name]
        except KeyError:
            raise KeyError(f"unknown sync input {name!r}; inputs: {list(self._names)}") from None
        stamp = int(stamp_ns)
        with self._lock:
            queue = self._queues[i]
            if stamp in queue:
                self._replaced[name] += 1
            queue[stamp] = msg
            while len(queue) > self._queue_size:
                del queue[min(queue)]
                self._evicted[name] += 1
            if stamp not in queue:
                # message_filters still walks the product here, but every combination then fails its
                # "all messages still queued" test: nothing is emitted.
                return None
            slop = self._slop_ns
            candidates: list[list[int]] = []
            for j, other in enumerate(self._queues):
                if j == i:
                    continue
                near = [(s, abs(s - stamp)) for s in other if abs(s - stamp) <= slop]
                if not near:
                    return None
                near.sort(key=lambda sd: sd[1])  # stable: ties keep queue order, like sorted() there
                candidates.append([s for s, _ in near])
            chosen = _first_within(candidates, stamp, stamp, slop)
            if chosen is None:
                return None
            chosen.insert(i, stamp)
            out: dict[str, tuple[int, Any]] = {}
            for name_j, q, s in zip(self._names, self._queues, chosen, strict=True):
                out[name_j] = (s, q.pop(s))
            self._emitted += 1
            return out


def _first_within(candidates: list[list[int]], lo: int, hi: int, slop: int) -> list[int] | None:
    """The first combination in ``itertools.product(*candidates)`` order whose spread, together with the
    range ``[lo, hi]`` already chosen, is ``< slop``; depth-first with pruning (same result as the product)."""
    if not candidates:
        return [] if hi - lo < slop else None
    head, rest = candidates[0], candidates[1:]
    for s in head:
        new_lo, new_hi = min(lo, s), max(hi, s)
        if new_hi - new_lo >= slop:
            continue  # every completion of this prefix is at least as wide
        tail = _first_within(rest, new_lo, new_hi, slop)
        if tail is not None:
            return [s, *tail]
    return None


class StampGuard:
    """Rejects frame stamps that are not newer than the last accepted one; resets on a big jump back.

    Use :meth:`check` when a synchronized frame arrives (before it is handed to the latest-frame worker,
    so duplicates are counted as ``stamp_order`` rather than ``superseded``) and :meth:`accept` once it is
    taken, or :meth:`admit` for both at once.

    Args:
        jump_back_ns: a stamp at least this much *older* than the last accepted one is not an out-of-order
            message but a time jump (a bag played in a loop, a simulator restart, ``/clock`` reset): the
            guard forgets the last stamp, counts the jump in :attr:`jumps` and lets the frame through.
            None disables this (every older stamp is then skipped until time passes the last accepted
            stamp again, which after a bag loop means the whole next pass). Default: 1 s, far beyond any
            camera's out-of-order delivery and far below a bag's length.
        on_jump: called as ``on_jump(last_ns, new_ns)`` on such a reset (e.g. to reset the sync queues and
            the tf buffer); called with the guard's lock released.

    Thread safety: methods take an internal lock; :meth:`admit` is atomic.
    """

    def __init__(
        self,
        jump_back_ns: int | None = _NS_PER_S,
        on_jump: Callable[[int, int], None] | None = None,
    ) -> None:
        if jump_back_ns is not None and int(jump_back_ns) <= 0:
            raise ValueError(f"jump_back_ns must be > 0 or None (got {jump_back_ns})")
        self._jump_back_ns = None if jump_back_ns is None else int(jump_back_ns)
        self._on_jump = on_jump
        self._lock = threading.Lock()
        self._last_ns: int | None = None
        self._jumps = 0
        self._rejected = 0

    @property
    def last_ns(self) -> int | None:
        """The last accepted stamp (None: none yet, or just reset)."""
        with self._lock:
            return self._last_ns

    @property
    def jumps(self) -> int:
        """Backward jumps of at least ``jump_back_ns`` that reset the guard."""
        with self._lock:
            return self._jumps

    @property
    def rejected(self) -> int:
        """Stamps :meth:`check` rejected."""
        with self._lock:
            return self._rejected

    def check(self, stamp_ns: int) -> None:
        """Accept-or-raise test of ``stamp_ns`` (does not record it: call :meth:`accept` for that).

        Raises:
            FrameSkipped: ``SkipReason.STAMP_ORDER`` when ``stamp_ns`` is a duplicate of or older than the
                last accepted stamp (and not a jump back, see ``jump_back_ns``); the detail names both.
        """
        jumped = self._check_locked(int(stamp_ns), record=False)
        if jumped is not None and self._on_jump is not None:
            self._on_jump(jumped, int(stamp_ns))

    def accept(self, stamp_ns: int) -> None:
        """Record ``stamp_ns`` as the last accepted stamp (after a successful :meth:`check`)."""
        with self._lock:
            self._last_ns = int(stamp_ns)

    def admit(self, stamp_ns: int) -> None:
        """:meth:`check` and :meth:`accept` atomically (raises like :meth:`check`)."""
        jumped = self._check_locked(int(stamp_ns), record=True)
        if jumped is not None and self._on_jump is not None:
            self._on_jump(jumped, int(stamp_ns))

    def reset(self) -> None:
        """Forget the last accepted stamp (the next stamp is accepted whatever it is)."""
        with self._lock:
            self._last_ns = None

    def _check_locked(self, stamp: int, record: bool) -> int | None:
        """Check (and optionally record) ``stamp``; returns the previous stamp when a jump reset happened."""
        with self._lock:
            last = self._last_ns
            jumped: int | None = None
            if last is not None and stamp <= last:
                back = last - stamp
                if self._jump_back_ns is not None and back >= self._jump_back_ns:
                    self._jumps += 1
                    self._last_ns = None
                    jumped = last
                else:
                    self._rejected += 1
                    if back == 0:
                        detail = f"duplicate stamp {stamp} ns (last accepted {last} ns)"
                    else:
                        detail = f"out-of-order stamp {stamp} ns, {back} ns older than the last accepted {last} ns"
                    raise FrameSkipped(SkipReason.STAMP_ORDER, detail)
            if record:
                self._last_ns = stamp
            return jumped
