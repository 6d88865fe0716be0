"""The latest-frame worker: inference on its own thread, never more than one frame waiting.

A producer (the node's sync callback, or replay) calls :meth:`LatestFrameWorker.submit`; a single daemon
thread runs ``process`` on the newest submitted item. There is one *pending slot*: an item submitted while
another is still pending replaces it, and the replaced one goes to ``on_drop`` (counted in
:attr:`~LatestFrameWorker.dropped`; the pipeline records it as ``SkipReason.SUPERSEDED``). So a backend
slower than the cameras drops old frames instead of growing a queue: at any time the worker holds at most
the item being processed plus the pending one, and after a burst it processes the newest item.

Every submitted item ends up exactly once in one of: processed (``process`` returned), failed (``process``
raised; the exception went to ``on_error`` and the worker kept running), dropped (replaced, or discarded
by :meth:`~LatestFrameWorker.stop`), pending, or in progress::

    submitted == processed + failed + dropped + pending + busy

``run_inline=True`` runs ``process`` on the submitting thread instead (no thread, nothing is ever
dropped): for ``occ replay --rate max``, where every frame should be processed in order.

Thread safety: ``submit`` may be called from any number of threads; ``process`` never runs concurrently
with itself. Callbacks (``on_drop``, ``on_error``) run without the worker's lock held: ``on_drop`` on the
submitting (or stopping) thread, ``on_error`` on the worker thread. Exceptions raised by the callbacks are
logged and swallowed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LatestFrameWorker"]

T = TypeVar("T")

_log = logging.getLogger(__name__)


class LatestFrameWorker(Generic[T]):
    """Runs ``process`` on the newest submitted item, on one daemon thread (or inline).

    Args:
        process: called with each item taken from the pending slot.
        on_drop: called with each item that is never processed (replaced by a newer one, or pending at
            :meth:`stop`, or submitted after :meth:`stop`).
        on_error: called as ``on_error(item, exc)`` when ``process`` raises an :class:`Exception` (without
            it the exception is logged). ``BaseException`` s such as ``KeyboardInterrupt`` propagate.
        name: the thread's name.
        run_inline: no thread: :meth:`submit` calls ``process`` before it returns.
    """

    def __init__(
        self,
        process: Callable[[T], None],
        on_drop: Callable[[T], None] | None = None,
        on_error: Callable[[T, BaseException], None] | None = None,
        name: str = "occ-inference",
        run_inline: bool = False,
    ) -> None:
        self._process = process
        self._on_drop = on_drop
        self._on_error = on_error
        self._name = name
        self._inline = bool(run_inline)
        self._cv = threading.Condition(threading.Lock())
        self._inline_lock = threading.Lock()  # inline mode: process never runs concurrently
        self._pending: list[T] = []  # the pending slot: [] or [item] (T may itself be None)
        self._busy = False
        self._started = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._submitted = 0
        self._processed = 0
        self._failed = 0
        self._dropped = 0

    # ------------------------------------------------------------------ state
    @property
    def name(self) -> str:
        """The worker thread's name."""
        return self._name

    @property
    def run_inline(self) -> bool:
        """Whether ``process`` runs on the submitting thread."""
        return self._inline

    @property
    def running(self) -> bool:
        """Started and not stopped (inline mode: not stopped)."""
        with self._cv:
            return (self._started or self._inline) and not self._stopping

    @property
    def submitted(self) -> int:
        """Items passed to :meth:`submit`."""
        with self._cv:
            return self._submitted

    @property
    def processed(self) -> int:
        """Items whose ``process`` call returned normally."""
        with self._cv:
            return self._processed

    @property
    def failed(self) -> int:
        """Items whose ``process`` call raised."""
        with self._cv:
            return self._failed

    @property
    def dropped(self) -> int:
        """Items never processed: replaced by a newer item or discarded by :meth:`stop`."""
        with self._cv:
            return self._dropped

    @property
    def pending(self) -> int:
        """Items waiting in the slot: 0 or 1."""
        with self._cv:
            return len(self._pending)

    @property
    def busy(self) -> bool:
        """Whether ``process`` is running right now."""
        with self._cv:
            return self._busy

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker thread (no-op if running or inline). An item submitted earlier is processed.

        Raises:
            RuntimeError: after :meth:`stop` (a worker is not restartable).
        """
        with self._cv:
            if self._stopping:
                raise RuntimeError(f"worker {self._name!r} was stopped; create a new one")
            if self._inline or self._started:
                return
            self._started = True
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 5.0, drain: bool = False) -> bool:
        """Stop: the item in progress finishes, the pending one is dropped (``on_drop``), the thread is joined.

        Args:
            timeout: seconds to wait for the thread (and, with ``drain``, as long again for the pending item).
            drain: process the pending item first instead of dropping it: the end of a recording, whose newest
                frame must not be lost; a shutdown drops it.
        Returns:
            True when the thread has ended (or there is none); False when ``process`` is still running after
            ``timeout`` seconds (the daemon thread then ends after that item).
        """
        if drain:
            with self._cv:
                if self._started and not self._stopping:
                    self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)
        with self._cv:
            self._stopping = True
            leftover = self._pending
            self._pending = []
            self._dropped += len(leftover)
            self._cv.notify_all()
            thread = self._thread
        for item in leftover:
            self._call_on_drop(item)
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or in progress; False if ``timeout`` seconds passed first.

        A worker that was never started with an item pending stays busy: this then waits out ``timeout``.
        """
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    # ------------------------------------------------------------------ producer side
    def submit(self, item: T) -> None:
        """Hand ``item`` over; never waits for processing (inline mode: processes it first).

        A pending item is replaced (``on_drop(old)``). After :meth:`stop` the item itself is dropped.
        """
        if self._inline:
            self._submit_inline(item)
            return
        replaced: list[T] = []
        with self._cv:
            self._submitted += 1
            if self._stopping:
                replaced = [item]
            else:
                replaced = self._pending
                self._pending = [item]
                self._cv.notify_all()
            self._dropped += len(replaced)
        for old in replaced:
            self._call_on_drop(old)

    def _submit_inline(self, item: T) -> None:
        """Inline mode: process ``item`` on this thread (serialized with other inline submissions)."""
        with self._cv:
            self._submitted += 1
            if self._stopping:
                self._dropped += 1
                stopped = True
            else:
                stopped = False
        if stopped:
            self._call_on_drop(item)
            return
        with self._inline_lock:
            with self._cv:
                self._busy = True
            ok = False
            try:
                ok = self._run_one(item)
            finally:
                self._finish(ok)

    # ------------------------------------------------------------------ worker side
    def _run(self) -> None:
        """The worker thread: take the newest pending item, process it, repeat until stopped."""
        while True:
            with self._cv:
                while not self._pending and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                item = self._pending.pop()
                self._busy = True
            ok = False
            try:
                ok = self._run_one(item)
            finally:
                del item  # do not keep the last frame alive while idle
                self._finish(ok)

    def _finish(self, ok: bool) -> None:
        """Count the item just run and leave the busy state (one lock section: the counts always add up)."""
        with self._cv:
            if ok:
                self._processed += 1
            else:
                self._failed += 1
            self._busy = False
            self._cv.notify_all()

    def _run_one(self, item: T) -> bool:
        """``process(item)``; True when it returned, False when it raised (routed to ``on_error``)."""
        try:
            self._process(item)
        except Exception as exc:
            if self._on_error is None:
                _log.error("worker %s: processing failed: %r", self._name, exc, exc_info=exc)
            else:
                try:
                    self._on_error(item, exc)
                except Exception:
                    _log.exception("worker %s: on_error callback raised", self._name)
            return False
        return True

    def _call_on_drop(self, item: T) -> None:
        """``on_drop(item)``, logging (not raising) its exceptions."""
        if self._on_drop is None:
            return
        try:
            self._on_drop(item)
        except Exception:
            _log.exception("worker %s: on_drop callback raised", self._name)
