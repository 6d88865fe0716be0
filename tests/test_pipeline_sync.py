"""occ_ros.pipeline sync / worker / stats: ApproximateTime sync, stamp guard, latest-frame worker, statistics."""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from typing import Any

import numpy as np
import pytest

from occ_ros.core.frames import FrameSkipped, SkipReason
from occ_ros.datasets.rosbag_reader import synchronize
from occ_ros.pipeline.stats import DIAG_ERROR, DIAG_OK, DIAG_WARN, TOTAL_STAGE, PipelineStats
from occ_ros.pipeline.sync import ApproximateTimeSync, StampGuard, slop_ns_from_seconds
from occ_ros.pipeline.worker import LatestFrameWorker

MS = 1_000_000


def stamps_of(out: dict[str, tuple[int, Any]] | None) -> dict[str, int] | None:
    return None if out is None else {k: v[0] for k, v in out.items()}


# ====================================================================== reference transcription
class _ReferenceSync:
    """A literal transcription of ros2/message_filters' ``ApproximateTimeSynchronizer.add`` (integer stamps).

    Materializes the whole ``itertools.product`` like the original, so it checks the pruned search.
    """

    def __init__(self, n: int, slop: int, queue_size: int) -> None:
        self.queues: list[dict[int, Any]] = [{} for _ in range(n)]
        self.slop, self.queue_size = slop, queue_size

    def add(self, index: int, stamp: int, msg: Any) -> list[tuple[int, Any]] | None:
        my_queue = self.queues[index]
        my_queue[stamp] = msg
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
        search = self.queues[:index] + self.queues[index + 1 :]
        stamps = []
        for queue in search:
            topic = [(s, abs(s - stamp)) for s in queue if not abs(s - stamp) > self.slop]
            if not topic:
                return None
            stamps.append(sorted(topic, key=lambda x: x[1]))
        for vv_t in itertools.product(*[[s for s, _ in st] for st in stamps]):
            vv = list(vv_t)
            vv.insert(index, stamp)
            qt = list(zip(self.queues, vv, strict=True))
            if max(vv) - min(vv) < self.slop and all(t in q for q, t in qt):
                out = [(t, q[t]) for q, t in qt]
                for q, t in qt:
                    del q[t]
                return out
        return None


# ====================================================================== ApproximateTimeSync
def test_exact_set_and_input_order() -> None:
    sync = ApproximateTimeSync(["a", "b", "c"], slop_ns=5 * MS)
    assert sync.add("c", 100 * MS, "c0") is None
    assert sync.add("a", 100 * MS, "a0") is None
    out = sync.add("b", 100 * MS, "b0")
    assert out == {"a": (100 * MS, "a0"), "b": (100 * MS, "b0"), "c": (100 * MS, "c0")}
    assert list(out) == ["a", "b", "c"]
    assert sync.queued() == {"a": [], "b": [], "c": []}
    assert sync.emitted == 1


def test_single_input_emits_immediately() -> None:
    sync = ApproximateTimeSync(["only"], slop_ns=1)
    assert sync.add("only", 7, "m") == {"only": (7, "m")}


def test_slop_boundary_strict() -> None:
    """Candidates are admitted at |dt| <= slop, but a set needs max - min < slop (strict), like ROS 2."""
    sync = ApproximateTimeSync(["a", "b"], slop_ns=10)
    assert sync.add("a", 0, "a0") is None
    assert sync.add("b", 10, "b10") is None  # exactly slop apart: never a set
    assert sync.add("b", 11, "b11") is None  # beyond slop: not even a candidate
    assert stamps_of(sync.add("b", 9, "b9")) == {"a": 0, "b": 9}
    assert sync.queued() == {"a": [], "b": [10, 11]}


def test_slop_from_seconds_truncates_like_rclpy_duration() -> None:
    assert slop_ns_from_seconds(0.1) == 100_000_000
    assert slop_ns_from_seconds(0.05) == 50_000_000
    assert slop_ns_from_seconds(1.5e-9) == 1  # int(seconds * 1e9): truncation, not rounding
    assert slop_ns_from_seconds(0.0) == 0


def test_candidates_by_distance_then_product_order() -> None:
    """The first product combination within slop wins, not the tightest one."""
    sync = ApproximateTimeSync(["a", "b", "c"], slop_ns=10)
    base = 1000
    for name, s in [("a", base - 6), ("a", base + 8), ("b", base + 7), ("b", base - 9)]:
        assert sync.add(name, s, f"{name}{s}") is None
    # a candidates by distance: -6, +8; b: +7, -9. Product order: (-6,+7) spread 13, (-6,-9) spread 9 < 10.
    assert stamps_of(sync.add("c", base, "c")) == {"a": base - 6, "b": base - 9, "c": base}
    assert sync.queued() == {"a": [base + 8], "b": [base + 7], "c": []}


def test_distance_ties_keep_queue_order() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_ns=10)
    sync.add("a", 96, "early")
    sync.add("a", 104, "late")
    assert sync.add("b", 100, "b") == {"a": (96, "early"), "b": (100, "b")}
    sync2 = ApproximateTimeSync(["a", "b"], slop_ns=10)
    sync2.add("a", 104, "late")  # inserted first: first in queue order
    sync2.add("a", 96, "early")
    assert sync2.add("b", 100, "b") == {"a": (104, "late"), "b": (100, "b")}


def test_queue_eviction_of_oldest_stamp() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_ns=5, queue_size=3)
    for s in (0, 10, 20, 30):
        assert sync.add("a", s, s) is None
    assert sync.queued()["a"] == [10, 20, 30]
    assert sync.evicted == {"a": 1, "b": 0}
    # b@5: a@10 is a candidate (|dt| = 5) but the spread 5 is not < 5.
    assert sync.add("b", 5, "b5") is None
    # A late a@5 is the oldest stamp of a full queue: evicted at once, nothing is emitted.
    assert sync.add("a", 5, "a5") is None
    assert sync.evicted == {"a": 2, "b": 0}
    assert sync.queued() == {"a": [10, 20, 30], "b": [5]}


def test_duplicate_stamp_replaces_message() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_ns=5)
    sync.add("a", 100, "first")
    sync.add("a", 100, "second")
    assert sync.replaced == {"a": 1, "b": 0}
    assert sync.add("b", 101, "b") == {"a": (100, "second"), "b": (101, "b")}


def test_out_of_order_arrival_across_inputs() -> None:
    period = 33 * MS
    sync = ApproximateTimeSync(["a", "b"], slop_ns=5 * MS)
    assert sync.add("a", 0, "a0") is None
    assert sync.add("a", period, "a1") is None
    assert stamps_of(sync.add("b", period + MS, "b1")) == {"a": period, "b": period + MS}
    guard = StampGuard()
    guard.admit(period)
    # The older frame completes afterwards: sets come out of stamp order, and StampGuard skips it.
    late = sync.add("b", MS, "b0")
    assert stamps_of(late) == {"a": 0, "b": MS}
    with pytest.raises(FrameSkipped) as err:
        guard.admit(0)
    assert err.value.reason is SkipReason.STAMP_ORDER


def test_missing_camera_never_completes_and_peers_are_evicted() -> None:
    sync = ApproximateTimeSync(["a", "b", "c"], slop_ns=5 * MS, queue_size=10)
    for k in range(30):
        assert sync.add("a", k * 33 * MS, k) is None
        assert sync.add("b", k * 33 * MS + MS, k) is None
    assert sync.evicted == {"a": 20, "b": 20, "c": 0}
    queued = sync.queued()
    assert queued["a"] == [k * 33 * MS for k in range(20, 30)]
    assert queued["c"] == []
    # The camera comes back: its first message completes the newest pending frame.
    assert stamps_of(sync.add("c", 29 * 33 * MS, "c")) == {"a": 29 * 33 * MS, "b": 29 * 33 * MS + MS, "c": 29 * 33 * MS}


def test_reset_and_counters() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_ns=5, queue_size=1)
    sync.add("a", 0, 0)
    sync.add("a", 100, 1)
    sync.add("b", 50, 2)
    assert sync.reset() == 2
    assert sync.queued() == {"a": [], "b": []}
    assert sync.evicted == {"a": 1, "b": 0}  # cumulative unless asked
    sync.reset(clear_counters=True)
    assert sync.evicted == {"a": 0, "b": 0}


def test_validation() -> None:
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSync(["a", "b"], slop_ns=0)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSync(["a", "b"], slop_ns=1, queue_size=0)
    with pytest.raises(ValueError, match="duplicate"):
        ApproximateTimeSync(["a", "a"], slop_ns=1)
    with pytest.raises(ValueError):
        ApproximateTimeSync([], slop_ns=1)
    with pytest.raises(KeyError, match="unknown"):
        ApproximateTimeSync(["a"], slop_ns=1).add("z", 0, None)


@pytest.mark.parametrize("seed", range(40))
def test_matches_message_filters_transcription(seed: int) -> None:
    """Random streams (jitter, drops, duplicates, late and out-of-order arrival): same sets, same queues."""
    rng = random.Random(seed)
    n = rng.randint(2, 5)
    names = [f"cam{i}" for i in range(n)]
    slop = rng.choice([3, 10, 20, 40])
    queue_size = rng.randint(1, 6)
    sync = ApproximateTimeSync(names, slop_ns=slop, queue_size=queue_size)
    ref = _ReferenceSync(n, slop, queue_size)
    events = []
    for k in range(60):
        for i in range(n):
            if rng.random() < 0.1:
                continue  # dropped message
            stamp = k * 33 + rng.randint(-12, 12)
            arrival = stamp + rng.randint(0, 60)
            events.append((arrival, i, stamp))
            if rng.random() < 0.05:
                events.append((arrival + rng.randint(0, 5), i, stamp))  # duplicate stamp
    events.sort()
    emitted = 0
    for seq, (_, i, stamp) in enumerate(events):
        got = sync.add(names[i], stamp, seq)
        want = ref.add(i, stamp, seq)
        if want is None:
            assert got is None
        else:
            emitted += 1
            assert got == dict(zip(names, want, strict=True))
        assert list(sync.queued().values()) == [list(q) for q in ref.queues]
    assert sync.emitted == emitted


def test_agrees_with_offline_synchronize() -> None:
    """On a regular 30 Hz rig with small jitter, streaming and offline ApproximateTime give the same sets."""
    rng = np.random.default_rng(0)
    names = ["front", "left", "right"]
    n, period, slop = 90, 33_333_333, 10 * MS
    base = 1_700_000_000 * 1_000_000_000
    stamps = {cam: base + np.arange(n, dtype=np.int64) * period + rng.integers(-2 * MS, 2 * MS, n) for cam in names}
    missing = {"front": {5, 40}, "left": {12, 13, 60}, "right": {12, 77}}
    kept = {cam: np.array([s for k, s in enumerate(stamps[cam]) if k not in missing[cam]]) for cam in names}

    accepted, match, _ = synchronize(kept["front"], {c: kept[c] for c in names[1:]}, slop)
    offline = {
        (int(kept["front"][r]), *(int(kept[c][match[c][r]]) for c in names[1:])) for r in np.flatnonzero(accepted)
    }

    events = [
        (int(s) + int(rng.integers(0, 25 * MS)), names.index(cam), cam, int(s)) for cam in names for s in kept[cam]
    ]
    events.sort()
    sync = ApproximateTimeSync(names, slop_ns=slop, queue_size=10)
    streamed = set()
    for _, _, cam, s in events:
        out = sync.add(cam, s, None)
        if out is not None:
            streamed.add(tuple(out[c][0] for c in names))
    assert len(offline) == n - len(set().union(*missing.values()))
    assert streamed == offline


# ====================================================================== StampGuard
def test_stamp_guard_duplicate_and_out_of_order() -> None:
    guard = StampGuard()
    guard.admit(1000)
    with pytest.raises(FrameSkipped) as dup:
        guard.check(1000)
    assert dup.value.reason is SkipReason.STAMP_ORDER
    assert "duplicate" in dup.value.detail and "1000" in dup.value.detail
    with pytest.raises(FrameSkipped) as old:
        guard.check(900)
    assert old.value.reason is SkipReason.STAMP_ORDER
    assert "900" in old.value.detail and "1000" in old.value.detail
    assert guard.rejected == 2
    guard.check(1001)  # check alone does not record
    assert guard.last_ns == 1000
    guard.accept(1001)
    assert guard.last_ns == 1001
    with pytest.raises(FrameSkipped):
        guard.admit(1001)


def test_stamp_guard_jump_back_resets() -> None:
    jumps: list[tuple[int, int]] = []
    guard = StampGuard(jump_back_ns=1000, on_jump=lambda last, new: jumps.append((last, new)))
    guard.admit(5000)
    with pytest.raises(FrameSkipped):
        guard.admit(4001)  # 999 ns back: out of order
    guard.admit(4000)  # exactly jump_back_ns back: a time jump, accepted
    assert guard.jumps == 1 and jumps == [(5000, 4000)]
    assert guard.last_ns == 4000
    guard.admit(4033)
    guard.reset()
    guard.admit(1)
    assert guard.last_ns == 1


def test_stamp_guard_without_jump_threshold_skips_forever() -> None:
    guard = StampGuard(jump_back_ns=None)
    guard.admit(10**12)
    for s in (0, 10**6, 10**11):
        with pytest.raises(FrameSkipped):
            guard.admit(s)
    assert guard.jumps == 0 and guard.rejected == 3
    with pytest.raises(ValueError):
        StampGuard(jump_back_ns=0)


# ====================================================================== LatestFrameWorker
class _GatedProcess:
    """A process fn that records items and blocks on an Event per item (no sleeps)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)
        self.started.set()
        assert self.gate.wait(10), "test gate never opened"


def _accounted(w: LatestFrameWorker[Any]) -> bool:
    return w.submitted == w.processed + w.failed + w.dropped + w.pending + int(w.busy)


def test_worker_latest_frame_after_burst() -> None:
    proc = _GatedProcess()
    dropped: list[int] = []
    w: LatestFrameWorker[int] = LatestFrameWorker(proc, on_drop=dropped.append)
    w.start()
    w.submit(0)
    assert proc.started.wait(10)  # item 0 is in progress, blocked on the gate
    for k in range(1, 30):
        w.submit(k)
        assert w.pending == 1
        assert _accounted(w)
    assert dropped == list(range(1, 29))
    assert w.dropped == 28 and w.busy
    proc.gate.set()
    assert w.wait_idle(10)
    assert proc.items == [0, 29]  # the newest frame after the burst
    assert (w.submitted, w.processed, w.failed, w.dropped, w.pending) == (30, 2, 0, 28, 0)
    assert w.stop()


class _Frame:
    """A frame whose live instances are counted (memory bound check)."""

    live = 0
    max_live = 0
    lock = threading.Lock()

    def __init__(self, k: int) -> None:
        self.k = k
        with _Frame.lock:
            _Frame.live += 1
            _Frame.max_live = max(_Frame.max_live, _Frame.live)

    def __del__(self) -> None:
        with _Frame.lock:
            _Frame.live -= 1


def test_worker_load_slow_backend_bounded() -> None:
    """Cameras faster than the backend: bounded live frames, pending <= 1, newest frame processed last."""
    processed: list[int] = []
    max_pending = 0

    def slow(frame: _Frame) -> None:
        processed.append(frame.k)
        time.sleep(0.01)  # slower than the producer; no timing is asserted

    w: LatestFrameWorker[_Frame] = LatestFrameWorker(slow)
    w.start()
    _Frame.live = _Frame.max_live = 0
    for k in range(60):
        w.submit(_Frame(k))
        max_pending = max(max_pending, w.pending)
        time.sleep(0.002)
    assert w.wait_idle(30)
    assert w.stop()
    assert max_pending <= 1
    assert _Frame.max_live <= 3  # in progress + pending + the one being created
    assert _Frame.live == 0
    assert processed[-1] == 59
    assert processed == sorted(processed)
    assert w.processed == len(processed) and w.dropped == 60 - len(processed)
    assert _accounted(w)


def test_worker_errors_keep_it_alive(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[tuple[int, BaseException]] = []
    done: list[int] = []

    def process(k: int) -> None:
        if k % 2:
            raise RuntimeError(f"bad {k}")
        done.append(k)

    w: LatestFrameWorker[int] = LatestFrameWorker(process, on_error=lambda k, e: errors.append((k, e)))
    w.start()
    for k in range(4):
        w.submit(k)
        assert w.wait_idle(10)
    assert done == [0, 2]
    assert [k for k, _ in errors] == [1, 3] and isinstance(errors[0][1], RuntimeError)
    assert (w.processed, w.failed) == (2, 2)
    assert w.stop()

    # Without on_error the exception is logged; a raising on_error is logged too.
    w2: LatestFrameWorker[int] = LatestFrameWorker(process)
    w2.start()
    with caplog.at_level(logging.ERROR, logger="occ_ros.pipeline.worker"):
        w2.submit(1)
        assert w2.wait_idle(10)
        w2.submit(2)
        assert w2.wait_idle(10)
    assert "bad 1" in caplog.text
    assert done[-1] == 2 and w2.failed == 1
    assert w2.stop()


def test_worker_stop_finishes_current_and_drops_pending() -> None:
    proc = _GatedProcess()
    dropped: list[int] = []
    w: LatestFrameWorker[int] = LatestFrameWorker(proc, on_drop=dropped.append, name="test-worker")
    w.start()
    thread = w._thread
    assert thread is not None and thread.daemon and thread.name == "test-worker"
    w.submit(0)
    assert proc.started.wait(10)
    w.submit(1)
    result: list[bool] = []
    stopper = threading.Thread(target=lambda: result.append(w.stop(timeout=10)))
    stopper.start()
    # stop() drops the pending item before joining, while item 0 is still in progress.
    for _ in range(1000):
        if dropped:
            break
        time.sleep(0.001)
    assert dropped == [1] and w.busy
    proc.gate.set()
    stopper.join(10)
    assert result == [True] and not thread.is_alive()
    assert proc.items == [0] and w.processed == 1
    w.submit(2)  # after stop: dropped, never processed
    assert dropped == [1, 2] and w.dropped == 2
    assert _accounted(w)
    with pytest.raises(RuntimeError):
        w.start()


def test_worker_stop_timeout_reports_stuck_process() -> None:
    proc = _GatedProcess()
    w: LatestFrameWorker[int] = LatestFrameWorker(proc)
    w.start()
    w.submit(0)
    assert proc.started.wait(10)
    assert w.stop(timeout=0.01) is False
    proc.gate.set()
    assert w.stop(timeout=10) is True


def test_worker_not_started_and_none_items() -> None:
    seen: list[Any] = []
    w: LatestFrameWorker[Any] = LatestFrameWorker(seen.append)
    w.submit(None)
    assert w.pending == 1
    assert w.wait_idle(0.01) is False  # never started: stays pending
    w.start()
    assert w.wait_idle(10)
    assert seen == [None]
    assert w.stop()


def test_worker_inline_mode() -> None:
    seen: list[int] = []
    errors: list[int] = []
    dropped: list[int] = []

    def process(k: int) -> None:
        if k == 3:
            raise ValueError("three")
        seen.append(k)

    before = threading.active_count()
    w: LatestFrameWorker[int] = LatestFrameWorker(
        process, on_drop=dropped.append, on_error=lambda k, e: errors.append(k), run_inline=True
    )
    w.start()
    assert threading.active_count() == before and w._thread is None
    for k in range(6):
        w.submit(k)
        assert seen[-1] == k or k == 3  # processed before submit returned
    assert seen == [0, 1, 2, 4, 5] and errors == [3] and dropped == []
    assert (w.submitted, w.processed, w.failed, w.dropped, w.pending) == (6, 5, 1, 0, 0)
    assert w.wait_idle(0) and w.running
    assert w.stop()
    w.submit(9)
    assert dropped == [9] and not w.running


# ====================================================================== PipelineStats
class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_stats_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(1)
    stats = PipelineStats(window=1000)
    pre = rng.gamma(2.0, 0.004, 500)
    backend = rng.gamma(3.0, 0.02, 500)
    for a, b in zip(pre, backend, strict=True):
        stats.record_stage("preprocess", float(a))
        stats.record_stage("backend", float(b))
        stats.record_processed(float(a + b))
    snap = stats.snapshot()
    assert list(snap.stages) == ["preprocess", "backend"]
    for name, values in (("preprocess", pre), ("backend", backend)):
        s = snap.stages[name]
        assert s.count == s.window == 500
        np.testing.assert_allclose(s.p50_ms, np.percentile(values * 1e3, 50))
        np.testing.assert_allclose(s.p99_ms, np.percentile(values * 1e3, 99))
        np.testing.assert_allclose(s.mean_ms, values.mean() * 1e3)
        np.testing.assert_allclose(s.max_ms, values.max() * 1e3)
    assert snap.total is not None
    np.testing.assert_allclose(snap.total.p99_ms, np.percentile((pre + backend) * 1e3, 99))
    assert snap.processed == 500


def test_stats_window_is_bounded() -> None:
    stats = PipelineStats(window=10)
    values = [float(v) for v in range(25)]
    for v in values:
        stats.record_stage("decode", v)
    stats.record_stage("decode", float("nan"))  # ignored
    s = stats.snapshot().stages["decode"]
    assert (s.count, s.window) == (25, 10)
    assert s.p50_ms == pytest.approx(np.percentile(np.array(values[-10:]) * 1e3, 50))
    assert s.max_ms == pytest.approx(24e3)
    assert len(stats._stages["decode"]) == 10
    with pytest.raises(ValueError):
        PipelineStats(window=0)


def test_stats_skip_counting_and_dict() -> None:
    stats = PipelineStats()
    stats.record_received()
    stats.record_skip(SkipReason.NO_TF, "CAM_LEFT: no transform base_link <- cam_left")
    stats.record_skip(SkipReason.STAMP_ORDER, "duplicate stamp 5 ns")
    stats.record_drop()  # superseded: counted, not a "problem"
    stats.record_drop(SkipReason.SUPERSEDED, "newer frame")
    snap = stats.snapshot()
    assert set(snap.skipped) == {r.value for r in SkipReason}
    assert snap.skipped["no_tf"] == 1 and snap.skipped["stamp_order"] == 1 and snap.skipped["superseded"] == 2
    assert snap.skipped_total == 4
    assert snap.last_problem == ("stamp_order", "duplicate stamp 5 ns")
    d = json.loads(json.dumps(snap.to_dict()))
    assert d["skipped_total"] == 4 and d["last_problem"]["reason"] == "stamp_order"
    assert d[TOTAL_STAGE] is None and d["received"] == 1
    stats.reset()
    assert stats.snapshot().skipped_total == 0 and stats.snapshot().last_problem is None


def test_stats_diagnostic_values() -> None:
    stats = PipelineStats()
    stats.record_stage("backend", 0.020)
    stats.record_processed(0.030)
    stats.record_skip(SkipReason.CORRUPT_IMAGE, "CAM_FRONT: truncated JPEG")
    values = dict(stats.diagnostic_values())
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in stats.diagnostic_values())
    assert values["frames processed"] == "1" and values["frames skipped"] == "1"
    assert values["skipped corrupt_image"] == "1" and values["skipped no_tf"] == "0"
    assert values["last problem"] == "corrupt_image: CAM_FRONT: truncated JPEG"
    assert values["backend p50 [ms]"] == "20.00"
    assert values[f"{TOTAL_STAGE} p99 [ms]"] == "30.00"


def test_stats_diagnostic_levels() -> None:
    clock = _Clock()
    stats = PipelineStats(warn_period_s=5.0, stall_s=3.0, clock=clock)
    assert stats.diagnostic_level() == (DIAG_WARN, "no frames received yet")

    stats.record_received()
    stats.record_processed(0.05)
    level, msg = stats.diagnostic_level()
    assert level == DIAG_OK and "1 frames processed" in msg

    # Latest-frame drops alone are not a problem.
    stats.record_drop()
    assert stats.diagnostic_level()[0] == DIAG_OK

    # A problem skip warns for warn_period_s.
    clock.t += 1.0
    stats.record_skip(SkipReason.NO_CAMERA_INFO, "CAM_BACK")
    level, msg = stats.diagnostic_level()
    assert level == DIAG_WARN and "no_camera_info: CAM_BACK" in msg
    for _ in range(6):
        clock.t += 1.0
        stats.record_processed(0.05)
    assert stats.diagnostic_level()[0] == DIAG_OK

    # Frames keep arriving but none is processed for stall_s: ERROR.
    for _ in range(4):
        clock.t += 1.0
        stats.record_received()
        stats.record_skip(SkipReason.BACKEND, "CUDA out of memory")
    level, msg = stats.diagnostic_level()
    assert level == DIAG_ERROR and "CUDA out of memory" in msg

    # Input stops: WARN (stale), not ERROR.
    clock.t += 10.0
    level, msg = stats.diagnostic_level()
    assert level == DIAG_WARN and "no frames for" in msg


def test_stats_error_when_nothing_ever_processed() -> None:
    clock = _Clock()
    stats = PipelineStats(stall_s=2.0, clock=clock)
    stats.record_received()
    assert stats.diagnostic_level()[0] == DIAG_OK  # just started: nothing processed yet is fine
    for _ in range(3):
        clock.t += 1.0
        stats.record_drop()  # only superseded drops: the backend never finishes a frame
    level, msg = stats.diagnostic_level()
    assert level == DIAG_ERROR and "none processed yet" in msg


def test_stats_warn_on_superseded_option() -> None:
    stats = PipelineStats(warn_on_superseded=True)
    stats.record_processed(0.01)
    stats.record_drop()
    assert stats.diagnostic_level()[0] == DIAG_WARN
    assert stats.snapshot().last_problem == ("superseded", "")


def test_stats_thread_safe_counts() -> None:
    stats = PipelineStats(window=50)

    def work() -> None:
        for _ in range(2000):
            stats.record_stage("s", 0.001)
            stats.record_processed(0.002)
            stats.record_skip(SkipReason.SUPERSEDED, "")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = stats.snapshot()
    assert snap.processed == 8000 and snap.skipped["superseded"] == 8000
    assert snap.stages["s"].count == 8000 and snap.stages["s"].window == 50
