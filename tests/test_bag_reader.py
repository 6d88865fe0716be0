"""Tests for occ_ros.datasets.rosbag_reader and occ_ros.core.tf_buffer: real rosbag2 bags (MCAP and sqlite3)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.tf_buffer import (
    ConnectivityError,
    ExtrapolationError,
    FrameNotFoundError,
    TransformBuffer,
    TransformError,
    slerp,
)
from occ_ros.core.transforms import invert_transform, make_transform, yaw_transform
from occ_ros.core.undistort import undistort
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets.rosbag_reader import (
    BagConfig,
    BagConfigError,
    RosbagReader,
    _cdr_header,
    default_info_topic,
    synchronize,
)
from occ_ros.io import rosbag as rio

REPO = Path(__file__).resolve().parents[1]
SYNTH_CONFIG = REPO / "config" / "datasets" / "synth_bag.yaml"
EXAMPLE_CONFIG = REPO / "config" / "datasets" / "rosbag_example.yaml"
MS = 1_000_000
T0 = 1_700_000_000_000_000_000 + 123_456_789  # ns, not a whole second


# ====================================================================== the synthetic sequence
@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from occ_training.synth.sequence import generate

    out = tmp_path_factory.mktemp("synth") / "seq"
    generate(out, frames=3, seed=0, preset="demo", compressed=True, progress=False)
    return out, json.loads((out / "meta.json").read_text())


@pytest.fixture(scope="module")
def synth_sqlite(synth: tuple[Path, dict]) -> Path:
    """The synthetic bag copied message by message into a sqlite3 bag."""
    root, _ = synth
    out = root.parent / "bag_sqlite3"
    with rio.BagWriter(out, storage="sqlite3") as bag:
        for topic, _, log_ns, msg in rio.read_messages(root / "bag"):
            bag.write(topic, msg, log_ns)
    return out


def _synth_bag(synth: tuple[Path, dict], synth_sqlite: Path, storage: str) -> Path:
    return synth[0] / "bag" if storage == "mcap" else synth_sqlite


def _png_rgb(root: Path, meta: dict, frame: str, cam: str) -> np.ndarray:
    bgr = cv2.imread(str(root / "images" / meta["scene"] / frame / f"{cam}.png"), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # PNGs are read by OpenCV as BGR


def _via_tf(ego_from_cam: np.ndarray) -> np.ndarray:
    """What a transform becomes after a trip through a TransformStamped (rotation as a unit quaternion)."""
    return rio.matrix_from_transform(rio.transform_stamped(ego_from_cam, T0, "base_link", "x"))


def _assert_rig_close(actual: CameraRig, expected: CameraRig) -> None:
    assert actual.names == expected.names
    for a, e in zip(actual, expected, strict=True):
        assert (a.name, a.frame_id, a.width, a.height) == (e.name, e.frame_id, e.width, e.height)
        np.testing.assert_array_equal(a.K, e.K)
        # The bag carries the extrinsics as tf quaternions: exact up to that round trip...
        np.testing.assert_allclose(a.ego_from_cam, _via_tf(e.ego_from_cam), rtol=0, atol=1e-12)
        # ...which re-orthonormalizes rotations given to 9 digits (nuScenes' calibration): ~4e-8 from meta.json.
        np.testing.assert_allclose(a.cam_from_ego, e.cam_from_ego, rtol=0, atol=1e-7)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synth_bag_matches_ground_truth(synth: tuple[Path, dict], synth_sqlite: Path, storage: str) -> None:
    root, meta = synth
    bag = _synth_bag(synth, synth_sqlite, storage)
    reader = RosbagReader(bag, SYNTH_CONFIG)
    assert len(reader) == len(meta["frames"]) == 3
    report = reader.sync_report
    assert (report.samples, report.reference_messages, report.dropped_sync, report.tf_failures) == (3, 3, 0, 0)
    assert report.dropped == [] and set(report.unused.values()) == {0}
    expected_rig = CameraRig.from_dict(meta["rig"])
    for i, frame in enumerate(meta["frames"]):
        s = reader[i]
        assert (s.dataset, s.scene, s.frame, s.index) == ("rosbag", bag.name, f"{i:06d}", i)
        assert s.stamp_ns == frame["stamp_ns"]
        assert s.image_stamps_ns == {name: frame["stamp_ns"] for name in expected_rig.names}
        np.testing.assert_allclose(s.world_from_ego, np.array(frame["odom_from_base_link"]), rtol=0, atol=1e-9)
        _assert_rig_close(s.rig, expected_rig)
        assert s.grid == GridSpec.demo() and s.vocabulary is OCC3D and s.gt is None
        assert list(s.images) == expected_rig.names
        for name, img in s.images.items():
            assert img.dtype == np.uint8 and img.shape == (112, 200, 3)
            np.testing.assert_array_equal(img, _png_rgb(root, meta, frame["name"], name))
    poses = reader.poses()[bag.name]
    np.testing.assert_allclose(poses, [f["odom_from_base_link"] for f in meta["frames"]], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(reader.stamps_ns, [f["stamp_ns"] for f in meta["frames"]])
    reader.close()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_synth_bag_compressed_images(synth: tuple[Path, dict], synth_sqlite: Path, storage: str) -> None:
    root, meta = synth
    data = yaml.safe_load(SYNTH_CONFIG.read_text())
    for cam in data["cameras"]:
        cam["image_topic"] += "/compressed"
    data["scene"] = meta["scene"]
    config = BagConfig.from_dict(data)
    assert config.cameras[0].image_topic == "/cam_front/image_raw/compressed"
    with RosbagReader(_synth_bag(synth, synth_sqlite, storage), config) as reader:
        assert len(reader) == 3
        s = reader.load(2)
        assert s.scene == meta["scene"] and s.key == f"{meta['scene']}/000002"
        for name, img in s.images.items():
            png = _png_rgb(root, meta, "000002", name)
            assert img.shape == png.shape and img.dtype == np.uint8
            diff = np.abs(img.astype(np.int16) - png.astype(np.int16))
            assert diff.mean() < 4.0, (name, diff.mean())  # JPEG quality 90


def test_load_without_images_and_pickling(synth: tuple[Path, dict]) -> None:
    root, meta = synth
    reader = RosbagReader(root / "bag", str(SYNTH_CONFIG))
    s = reader.load(1, images=False)
    assert s.images == {} and s.stamp_ns == meta["frames"][1]["stamp_ns"]
    assert reader.scenes() == {"bag": [0, 1, 2]}
    clone = pickle.loads(pickle.dumps(reader))  # e.g. for DataLoader workers: no open handle travels
    np.testing.assert_array_equal(clone.load(1).images["CAM_BACK"], _png_rgb(root, meta, "000001", "CAM_BACK"))
    with pytest.raises(IndexError):
        reader.load(3)
    assert len(list(reader)) == 3
    reader.close()


def test_cdr_header_fast_path_matches_deserialization() -> None:
    store = rio.typestore()
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    for msg in (rio.image_msg(rgb, T0, "cam_x_optical_frame"), rio.compressed_image_msg(rgb, T0 + 1, "f")):
        for little in (True, False):
            raw = store.serialize_cdr(msg, type(msg).__msgtype__, little_endian=little)
            assert _cdr_header(raw) == (rio.ns_from_stamp(msg.header.stamp), msg.header.frame_id)
    assert _cdr_header(b"\x00\x0a\x00\x00" + bytes(16)) is None  # unknown encapsulation: caller deserializes


# ====================================================================== hand-made bags
K = np.array([[10.0, 0.0, 3.5], [0.0, 10.0, 2.5], [0.0, 0.0, 1.0]])
OPTICAL_FROM_FLU = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])
CAMS = ("CAM_A", "CAM_B", "CAM_C")


def _camera(index: int) -> Camera:
    """Camera ``index`` at 1.5 m, yawed by 90° * index."""
    ego_from_cam = yaw_transform(0.5 * index, 0.1, 1.5, math.pi / 2 * index) @ invert_transform(OPTICAL_FROM_FLU)
    name = CAMS[index]
    return Camera(name, f"{name.lower()}_optical_frame", 8, 6, K, invert_transform(ego_from_cam))


def _pixels(cam: int, frame: int) -> np.ndarray:
    img = np.zeros((6, 8, 3), dtype=np.uint8)
    img[..., 0] = 10 + 40 * cam
    img[..., 1] = 5 + 20 * frame
    img[..., 2] = np.arange(8, dtype=np.uint8)[None, :]
    return img


def _pose(t_ns: int) -> np.ndarray:
    """odom <- base_link along a curve: x = 2 m/s, yaw = 0.3 rad/s (linear in time)."""
    t = (t_ns - T0) / 1e9
    return yaw_transform(2.0 * t, 0.0, 0.0, 0.3 * t)


def _write_bag(
    path: Path,
    storage: str = "mcap",
    frames: int = 5,
    period_ms: int = 100,
    offsets_ms: dict[str, float] | None = None,
    missing: dict[str, set[int]] | None = None,
    tf_period_ms: int = 50,
    tf_span: tuple[int, int] | None = None,
    via_mid: bool = False,
    skip_topics: tuple[str, ...] = (),
    distortion: dict[str, tuple[str, np.ndarray]] | None = None,
) -> dict:
    """3 cameras of raw 8x6 images, camera_info per image, /tf odom <- base_link, /tf_static base <- optical.

    Returns the images written: ``{(camera, header stamp): rgb}``. Record times lag header stamps by 7 ms.
    """
    offsets_ms = offsets_ms or {}
    missing = missing or {}
    cams = [_camera(i) for i in range(3)]
    for name, (model, D) in (distortion or {}).items():
        c = cams[CAMS.index(name)]
        cams[CAMS.index(name)] = Camera(c.name, c.frame_id, c.width, c.height, c.K, c.cam_from_ego, model, D)
    out: list[tuple[int, str, object]] = []
    images: dict[tuple[str, int], np.ndarray] = {}
    for f in range(frames):
        for i, cam in enumerate(cams):
            if f in missing.get(cam.name, set()):
                continue
            stamp = T0 + f * period_ms * MS + int(round(offsets_ms.get(cam.name, 0.0) * MS))
            rgb = _pixels(i, f)
            images[(cam.name, stamp)] = rgb
            prefix = f"/{cam.name.lower()}"
            out.append((stamp + 7 * MS, f"{prefix}/image_raw", rio.image_msg(rgb, stamp, cam.frame_id)))
            out.append((stamp + 7 * MS, f"{prefix}/camera_info", rio.camera_info_msg(cam, stamp)))
    lo, hi = tf_span or (-100, frames * period_ms + 100)
    for t_ms in range(lo, hi + 1, tf_period_ms):
        stamp = T0 + t_ms * MS
        pose = _pose(stamp)
        if via_mid:  # odom <- odom_mid (dynamic) <- base_link (static)
            tfs = [rio.transform_stamped(pose @ invert_transform(MID_FROM_BASE), stamp, "odom", "odom_mid")]
        else:
            tfs = [rio.transform_stamped(pose, stamp, "odom", "base_link")]
        out.append((stamp, "/tf", rio.tf_message(tfs)))
    static = [rio.transform_stamped(c.ego_from_cam, T0, "base_link", c.frame_id) for c in cams]
    if via_mid:
        static.append(rio.transform_stamped(MID_FROM_BASE, T0, "odom_mid", "base_link"))
    out.append((T0 - 500 * MS, "/tf_static", rio.tf_message(static)))
    out.sort(key=lambda x: x[0])
    with rio.BagWriter(path, storage=storage) as bag:
        for log_ns, topic, msg in out:
            if topic not in skip_topics:
                bag.write(topic, msg, log_ns)
    return {"images": images, "rig": CameraRig(tuple(cams))}


MID_FROM_BASE = make_transform(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]), (0.3, -0.2, 0.7))


def _config(slop_s: float = 0.05, **extra: object) -> BagConfig:
    data: dict = {
        "cameras": [
            {"name": n, "image_topic": f"/{n.lower()}/image_raw", "info_topic": f"/{n.lower()}/camera_info"}
            for n in CAMS
        ],
        "sync": {"slop_s": slop_s},
    }
    data.update(extra)
    return BagConfig.from_dict(data, source="test.yaml")


def test_camera_info_distortion_reaches_the_rig(tmp_path: Path) -> None:
    D = np.array([-0.35, 0.12, 0.001, -0.001, -0.02])
    written = _write_bag(tmp_path / "bag", distortion={"CAM_B": ("plumb_bob", D)})
    sample = RosbagReader(tmp_path / "bag", _config()).load(0)
    assert sample.rig["CAM_B"].distortion_model == "plumb_bob" and sample.rig["CAM_B"].is_distorted
    np.testing.assert_array_equal(sample.rig["CAM_B"].D, D)
    _assert_rig_close(sample.rig, written["rig"])
    assert not sample.rig["CAM_A"].is_distorted  # plumb_bob with zero D: nothing to undo
    # for the teachers: images undistorted to K, the rig without distortion; undistorted cameras untouched
    flat = sample.undistorted()
    assert not flat.rig.is_distorted and flat.rig["CAM_B"].D.size == 0
    np.testing.assert_array_equal(flat.rig["CAM_B"].K, sample.rig["CAM_B"].K)
    assert flat.images["CAM_A"] is sample.images["CAM_A"]
    np.testing.assert_array_equal(flat.images["CAM_B"], undistort(sample.images["CAM_B"], sample.rig["CAM_B"]))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_jittered_cameras_are_synchronized(tmp_path: Path, storage: str) -> None:
    written = _write_bag(tmp_path / "bag", storage, offsets_ms={"CAM_B": 3.0, "CAM_C": -4.5})
    reader = RosbagReader(tmp_path / "bag", _config())
    assert len(reader) == 5 and reader.sync_report.dropped == []
    for f in range(5):
        s = reader.load(f)
        ref = T0 + f * 100 * MS
        assert s.stamp_ns == ref
        assert s.image_stamps_ns == {"CAM_A": ref, "CAM_B": ref + 3 * MS, "CAM_C": ref - 4_500_000}
        for name, img in s.images.items():
            np.testing.assert_array_equal(img, written["images"][(name, s.image_stamps_ns[name])])
        # Pose at the reference stamp, between two /tf samples 50 ms apart (interpolated).
        np.testing.assert_allclose(s.world_from_ego, _pose(ref), atol=1e-12)
        _assert_rig_close(s.rig, written["rig"])
        logs = s.extras["log_stamps_ns"]
        assert isinstance(logs, dict) and logs["CAM_B"] == ref + 10 * MS  # record time = stamp + 7 ms


def test_missing_frame_and_offset_beyond_slop_are_dropped_and_reported(tmp_path: Path) -> None:
    # CAM_C lacks frame 2; CAM_B's frame 3 arrives 80 ms late (> 50 ms slop).
    path = tmp_path / "bag"
    frames, period = 6, 200  # 200 ms apart so that the late message is still nearest to frame 3
    _write_bag(path, frames=frames, period_ms=period, offsets_ms={"CAM_C": -2.0}, missing={"CAM_C": {2}})
    late = tmp_path / "late"
    written = _write_bag(late, frames=frames, period_ms=period, missing={"CAM_B": {3}})
    reader = RosbagReader(path, _config())
    report = reader.sync_report
    assert len(reader) == 5 and report.samples == 5 and report.reference_messages == 6
    assert report.unmatched == {"CAM_B": 0, "CAM_C": 1} and report.dropped_sync == 1
    (drop,) = report.dropped
    assert drop.stamp_ns == T0 + 2 * period * MS and drop.reason == "unmatched"
    assert "CAM_C" in drop.detail and "slop" in drop.detail and "CAM_B" not in drop.detail
    assert report.unused["CAM_A"] == 1 and report.unused["CAM_C"] == 0
    assert [s.stamp_ns for s in reader] == [T0 + f * period * MS for f in (0, 1, 3, 4, 5)]
    assert "1 dropped by sync" in report.summary()

    # Rewrite CAM_B's frame 3 80 ms late in a second bag: frame 3 is dropped.
    with rio.BagWriter(tmp_path / "late2") as bag:
        for topic, _, log_ns, msg in rio.read_messages(late):
            bag.write(topic, msg, log_ns)
        cam = _camera(1)
        stamp = T0 + 3 * period * MS + 80 * MS
        bag.write("/cam_b/image_raw", rio.image_msg(_pixels(1, 3), stamp, cam.frame_id), stamp)
    reader = RosbagReader(tmp_path / "late2", _config())
    assert [s.stamp_ns for s in reader] == [T0 + f * period * MS for f in (0, 1, 2, 4, 5)]
    (drop,) = reader.sync_report.dropped
    assert drop.stamp_ns == T0 + 3 * period * MS and "CAM_B: nearest message 80.000 ms away > slop 50 ms" in drop.detail
    assert reader.sync_report.unused["CAM_B"] == 1
    np.testing.assert_array_equal(reader[3].images["CAM_B"], written["images"][("CAM_B", T0 + 4 * period * MS)])


def test_each_message_is_used_once(tmp_path: Path) -> None:
    # CAM_B runs 40 ms early and misses frame 1: its message at 160 ms is nearest to both the 100 ms (60 ms away)
    # and 200 ms (40 ms away) reference messages; the 200 ms one is nearer and keeps it, 100 ms is dropped.
    _write_bag(tmp_path / "bag", frames=4, offsets_ms={"CAM_B": -40.0}, missing={"CAM_B": {1}})
    reader = RosbagReader(tmp_path / "bag", _config(slop_s=0.06))
    report = reader.sync_report
    assert [s.stamp_ns for s in reader] == [T0, T0 + 200 * MS, T0 + 300 * MS]
    assert report.conflicts == {"CAM_B": 1, "CAM_C": 0} and report.unmatched == {"CAM_B": 0, "CAM_C": 0}
    (drop,) = report.dropped
    assert drop.stamp_ns == T0 + 100 * MS and drop.reason == "conflict" and "CAM_B" in drop.detail
    b_stamps = [s.image_stamps_ns["CAM_B"] for s in reader]
    assert b_stamps == [T0 - 40 * MS, T0 + 160 * MS, T0 + 260 * MS]


def test_synchronize_policy() -> None:
    ref = np.array([0, 100, 200, 300])
    accepted, match, reason = synchronize(ref, {"B": np.array([2, 98, 160, 420]), "C": np.array([])}, slop_ns=50)
    np.testing.assert_array_equal(match["B"], [0, 1, 2, -1])
    np.testing.assert_array_equal(reason["B"], [0, 0, 0, 1])
    np.testing.assert_array_equal(reason["C"], [1, 1, 1, 1])
    assert not accepted.any()
    accepted, match, reason = synchronize(ref, {"B": np.array([150])}, slop_ns=50)  # equidistant: earlier ref wins
    np.testing.assert_array_equal(match["B"], [-1, 0, -1, -1])
    np.testing.assert_array_equal(reason["B"], [1, 0, 2, 1])


def test_tf_failures_are_reported(tmp_path: Path) -> None:
    # /tf only covers 150..450 ms: the frames at 0 and 100 ms cannot be posed.
    _write_bag(tmp_path / "bag", frames=5, tf_span=(150, 450))
    reader = RosbagReader(tmp_path / "bag", _config())
    report = reader.sync_report
    assert len(reader) == 3 and report.tf_failures == 2 and report.dropped_sync == 0
    assert [d.reason for d in report.dropped] == ["tf", "tf"]
    assert "odom <- base_link" in report.dropped[0].detail and "extrapolation" in report.dropped[0].detail
    assert "2 by tf" in report.summary()
    # A tolerance of 100 ms lets the 100 ms frame use the first /tf sample; 0 ms is still too far.
    reader = RosbagReader(tmp_path / "bag", _config(tf={"tolerance_s": 0.1}))
    assert len(reader) == 4 and reader.sync_report.tf_failures == 1
    np.testing.assert_allclose(reader[0].world_from_ego, _pose(T0 + 150 * MS), atol=1e-12)


def test_multi_hop_tf_chain_in_bag(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", frames=3, storage="sqlite3", via_mid=True)
    reader = RosbagReader(tmp_path / "bag", _config())
    assert len(reader) == 3
    for s in reader:
        np.testing.assert_allclose(s.world_from_ego, _pose(s.stamp_ns), atol=1e-9)
    assert reader.transforms.parent("base_link") == "odom_mid"


# ====================================================================== bag errors
def test_missing_topic_error_lists_bag_topics(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", frames=2, skip_topics=("/cam_c/camera_info",))
    with pytest.raises(ValueError) as info:
        RosbagReader(tmp_path / "bag", _config())
    msg = str(info.value)
    assert str(tmp_path / "bag") in msg and "test.yaml" in msg
    assert "/cam_c/camera_info (CAM_C info_topic)" in msg
    assert "/cam_a/image_raw  [sensor_msgs/msg/Image]" in msg and "/tf  [tf2_msgs/msg/TFMessage]" in msg
    assert "/cam_b/camera_info  [sensor_msgs/msg/CameraInfo]" in msg


def test_wrong_topic_type_and_other_bag_errors(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", frames=2)
    cfg = _config().to_dict()
    cfg["cameras"][1]["image_topic"] = "/cam_b/camera_info"
    with pytest.raises(
        ValueError,
        match=r"/cam_b/camera_info \(CAM_B image_topic\) has type "
        r"sensor_msgs/msg/CameraInfo; expected sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage",
    ):
        RosbagReader(tmp_path / "bag", BagConfig.from_dict(cfg))
    cfg = _config().to_dict()
    cfg["cameras"][0]["info_topic"] = "/cam_a/image_raw"
    with pytest.raises(ValueError, match="expected sensor_msgs/msg/CameraInfo"):
        RosbagReader(tmp_path / "bag", BagConfig.from_dict(cfg))
    with pytest.raises(ValueError, match=r"no tf path from map \(frames.fixed\) to base_link"):
        RosbagReader(tmp_path / "bag", _config(frames={"fixed": "map"}))
    with pytest.raises(ValueError, match="CAM_A: no tf path from base_link to its optical frame 'wrong_frame'"):
        cfg = _config().to_dict()
        cfg["cameras"][0]["frame_id"] = "wrong_frame"
        RosbagReader(tmp_path / "bag", BagConfig.from_dict(cfg))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RosbagReader(tmp_path / "nope", _config())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a rosbag2 bag"):
        RosbagReader(tmp_path / "empty", _config())
    _write_bag(tmp_path / "no_tf", frames=2, skip_topics=("/tf",))
    with pytest.raises(ValueError, match="no tf path from odom"):
        RosbagReader(tmp_path / "no_tf", _config())


def test_camera_info_topic_without_messages(tmp_path: Path) -> None:
    from rosbags.rosbag2 import Writer

    src = tmp_path / "bag"
    _write_bag(src, frames=2)
    store = rio.typestore()
    with Writer(tmp_path / "empty_info", version=8) as writer:
        conns: dict[str, Any] = {}
        for topic, msgtype, log_ns, msg in rio.read_messages(src):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            if topic != "/cam_b/camera_info":
                writer.write(conns[topic], log_ns, store.serialize_cdr(msg, msgtype))
    with pytest.raises(ValueError, match="CAM_B: camera_info topic /cam_b/camera_info has no messages"):
        RosbagReader(tmp_path / "empty_info", _config())


def test_frame_id_override(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", frames=2)
    cfg = _config().to_dict()
    cfg["cameras"][0]["frame_id"] = "cam_b_optical_frame"  # pretend CAM_A's driver stamps the wrong frame
    s = RosbagReader(tmp_path / "bag", BagConfig.from_dict(cfg)).load(0, images=False)
    assert s.rig["CAM_A"].frame_id == "cam_b_optical_frame"
    np.testing.assert_allclose(s.rig["CAM_A"].cam_from_ego, _camera(1).cam_from_ego, atol=1e-12)


# ====================================================================== config
def test_config_defaults_and_round_trip(tmp_path: Path) -> None:
    cfg = BagConfig.from_dict({"cameras": [{"name": "FRONT", "image_topic": "front/image_raw/compressed"}]})
    assert cfg.cameras[0].image_topic == "/front/image_raw/compressed"
    assert cfg.cameras[0].info_topic == "/front/camera_info" and cfg.cameras[0].frame_id is None
    assert (cfg.slop_s, cfg.reference, cfg.fixed_frame, cfg.base_frame) == (0.05, "FRONT", "odom", "base_link")
    assert (cfg.tf_topic, cfg.tf_static_topic, cfg.tf_tolerance_s) == ("/tf", "/tf_static", 0.0)
    assert cfg.vocabulary is OCC3D and cfg.grid is None and cfg.scene is None
    assert default_info_topic("/a/b/image_rect") == "/a/b/camera_info"
    full = _config(slop_s=0.02, grid="occ3d", scene="s1", frames={"fixed": "map"}, sync={"reference": "CAM_B"})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(full.to_dict()))
    again = BagConfig.from_yaml(path)
    assert again.to_dict() == full.to_dict() and again.grid == GridSpec.occ3d() and again.reference == "CAM_B"
    assert again.fixed_frame == "map" and again.source == str(path)


def test_shipped_configs_load() -> None:
    example = BagConfig.from_yaml(EXAMPLE_CONFIG)
    assert example.names == ["CAM_FRONT", "CAM_LEFT"] and example.cameras[1].frame_id == "cam_left_optical_frame"
    assert example.grid == GridSpec.occ3d()
    # every key the loader knows is documented (present) in the example
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert set(data) | {"scene"} == {"cameras", "sync", "frames", "tf", "vocabulary", "grid", "scene"}
    assert "scene:" in EXAMPLE_CONFIG.read_text()
    synth = BagConfig.from_yaml(SYNTH_CONFIG)
    assert synth.names == list(CameraRig.nuscenes().names) and synth.grid == GridSpec.demo()


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("cameras: [", "is not valid YAML"),
        ("- 1\n- 2", "expected a mapping"),
        ("sync: {slop_s: 0.1}", "missing required key 'cameras'"),
        ("cameras: []", "cameras: expected a non-empty list"),
        ("cameras: [{name: A}]", r"cameras\[0\]: missing required key 'image_topic'"),
        ("cameras: [{name: A, image_topic: /a, colour: red}]", r"unknown key\(s\) cameras\[0\]\.colour"),
        ("cameras: [{name: A, image_topic: /a}]\nsnyc: {}", r"unknown key\(s\) snyc"),
        ("cameras: [{name: A, image_topic: /a}]\nsync: {slop: 1}", r"unknown key\(s\) sync\.slop"),
        ("cameras: [{name: A, image_topic: /a}]\nsync: {slop_s: -1}", "sync.slop_s must be a number >= 0"),
        ("cameras: [{name: A, image_topic: /a}]\nsync: {slop_s: fast}", "sync.slop_s: expected a number"),
        ("cameras: [{name: A, image_topic: /a}]\nsync: {reference: B}", "sync.reference: 'B' is not a camera"),
        ("cameras: [{name: A, image_topic: /a}, {name: A, image_topic: /b}]", r"repeated: \['A'\]"),
        ("cameras: [{name: A, image_topic: 3}]", r"cameras\[0\]\.image_topic: expected a non-empty string"),
        ("cameras: [{name: A, image_topic: /a}]\ngrid: huge", "grid: unknown grid preset 'huge'"),
        ("cameras: [{name: A, image_topic: /a}]\ngrid: {range_min: [0, 0, 0]}", "grid: grid spec is missing"),
        ("cameras: [{name: A, image_topic: /a}]\nvocabulary: nope.yaml", "vocabulary: cannot read vocabulary"),
        ("cameras: [{name: A, image_topic: /a}]\nframes: {fixed: x, base: x}", "frames.fixed and frames.base"),
        ("cameras: [{name: A, image_topic: /a}]\ntf: [1]", "tf: expected a mapping"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(BagConfigError, match=pattern) as info:
        BagConfig.from_yaml(path)
    assert str(path) in str(info.value)


def test_config_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(BagConfigError, match="not found"):
        BagConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(BagConfigError, match="not found"):
        RosbagReader(tmp_path, tmp_path / "missing.yaml")


# ====================================================================== TransformBuffer
def _yaw(deg: float, xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    return yaw_transform(*xyz, math.radians(deg))


def test_tf_interpolation_translation_and_slerp() -> None:
    buf = TransformBuffer()
    buf.add("odom", "base_link", 1000, _yaw(0.0, (0.0, 0.0, 0.0)))
    buf.add("odom", "base_link", 2000, _yaw(90.0, (2.0, -4.0, 1.0)))
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 1500), _yaw(45.0, (1.0, -2.0, 0.5)), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 1250), _yaw(22.5, (0.5, -1.0, 0.25)), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 2000), _yaw(90.0, (2.0, -4.0, 1.0)), atol=1e-15)
    # the inverse direction
    np.testing.assert_allclose(
        buf.lookup("base_link", "odom", 1500), invert_transform(_yaw(45.0, (1.0, -2.0, 0.5))), atol=1e-12
    )
    # shortest arc: 170° -> -170° passes through 180°, not 0°
    buf2 = TransformBuffer()
    buf2.add("a", "b", 0, _yaw(170.0))
    buf2.add("a", "b", 10, _yaw(-170.0))
    np.testing.assert_allclose(buf2.lookup("a", "b", 5), _yaw(180.0), atol=1e-12)
    q = slerp(np.array([0, 0, 0, 1.0]), np.array([0, 0, 1.0, 0]), 0.5)  # identity -> 180° yaw: 90°
    np.testing.assert_allclose(q, [0, 0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-15)


def test_tf_multi_hop_through_common_ancestor_and_static() -> None:
    buf = TransformBuffer()
    # map <- odom (dynamic), odom <- mid (dynamic), mid <- base_link (static), base_link <- cam_a / cam_b (static)
    buf.add("map", "odom", 0, _yaw(10.0, (5.0, 0.0, 0.0)))
    buf.add("map", "odom", 100, _yaw(10.0, (5.0, 0.0, 0.0)))
    buf.add("odom", "mid", 100, _yaw(30.0, (1.0, 1.0, 0.0)))
    buf.add("odom", "mid", 0, _yaw(0.0, (0.0, 0.0, 0.0)))  # out of time order on purpose
    buf.add("mid", "base_link", 0, MID_FROM_BASE, static=True)
    cam_a, cam_b = _yaw(90.0, (1.0, 0.0, 1.5)), _yaw(-90.0, (0.0, 1.0, 1.5))
    buf.add("base_link", "cam_a", 0, cam_a, static=True)
    buf.add("base_link", "cam_b", 0, cam_b, static=True)
    odom_mid = _yaw(15.0, (0.5, 0.5, 0.0))
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 50), odom_mid @ MID_FROM_BASE, atol=1e-12)
    np.testing.assert_allclose(
        buf.lookup("map", "cam_a", 50), _yaw(10.0, (5.0, 0.0, 0.0)) @ odom_mid @ MID_FROM_BASE @ cam_a, atol=1e-12
    )
    # siblings: through base_link; static-only chains hold at any time
    np.testing.assert_allclose(buf.lookup("cam_a", "cam_b", 10**15), invert_transform(cam_a) @ cam_b, atol=1e-12)
    np.testing.assert_allclose(buf.lookup("cam_b", "cam_b", 5), np.eye(4))
    assert buf.frames == ["base_link", "cam_a", "cam_b", "map", "mid", "odom"]
    with pytest.raises(TransformError):  # after the last odom stamp (100): no extrapolation
        buf.lookup("map", "cam_b", 101)
    # a static transform is replaced by a later one
    buf.add("base_link", "cam_b", 0, cam_a, static=True)
    np.testing.assert_allclose(buf.lookup("cam_a", "cam_b", 0), np.eye(4), atol=1e-12)


def test_tf_errors() -> None:
    buf = TransformBuffer()
    buf.add("odom", "base_link", 1_000_000_000, np.eye(4))
    buf.add("odom", "base_link", 2_000_000_000, np.eye(4))
    buf.add("other_root", "x", 0, np.eye(4), static=True)
    with pytest.raises(ExtrapolationError) as info:
        buf.lookup("odom", "base_link", 2_500_000_000)
    err = info.value
    assert isinstance(err, TransformError) and isinstance(err, LookupError)
    msg = str(err)
    assert "odom <- base_link" in msg and "1.000000000 s" in msg and "2.000000000 s" in msg and "future" in msg
    assert (err.first_ns, err.last_ns, err.stamp_ns) == (1_000_000_000, 2_000_000_000, 2_500_000_000)
    with pytest.raises(ExtrapolationError, match="past"):
        buf.lookup("base_link", "odom", 999_999_999)
    # a tolerance clamps to the nearest sample
    np.testing.assert_array_equal(buf.lookup("odom", "base_link", 2_000_000_100, tolerance_ns=100), np.eye(4))
    assert TransformBuffer(tolerance_ns=100).tolerance_ns == 100
    with pytest.raises(FrameNotFoundError, match="'nowhere' does not exist"):
        buf.lookup("odom", "nowhere", 1_500_000_000)
    with pytest.raises(ConnectivityError, match="not connected"):
        buf.lookup("odom", "x", 1_500_000_000)
    with pytest.raises(ValueError, match="already has parent"):
        buf.add("map", "base_link", 0, np.eye(4))
    with pytest.raises(ValueError, match="recorded as dynamic"):
        buf.add("odom", "base_link", 0, np.eye(4), static=True)
    with pytest.raises(ValueError, match="loop"):
        buf.add("base_link", "odom", 0, np.eye(4))
    with pytest.raises(ValueError, match="not a rigid"):
        buf.add("odom", "y", 0, np.diag([2.0, 1.0, 1.0, 1.0]))


def test_tf_single_sample_and_repeated_stamps() -> None:
    buf = TransformBuffer()
    buf.add("a", "b", 100, _yaw(0.0, (1.0, 0.0, 0.0)))
    np.testing.assert_allclose(buf.lookup("a", "b", 100)[:3, 3], [1.0, 0.0, 0.0])
    with pytest.raises(ExtrapolationError):
        buf.lookup("a", "b", 101)
    buf.add("a", "b", 100, _yaw(0.0, (3.0, 0.0, 0.0)))  # same stamp again: the later sample wins
    buf.add("a", "b", 50, _yaw(0.0, (0.0, 0.0, 0.0)))
    np.testing.assert_allclose(buf.lookup("a", "b", 75)[:3, 3], [1.5, 0.0, 0.0])
    np.testing.assert_allclose(buf.lookup("a", "b", 100)[:3, 3], [3.0, 0.0, 0.0])
