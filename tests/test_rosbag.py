"""Tests for occ_ros.io.rosbag: bags written with rosbags, checked with an independent MCAP/CDR decoder."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import yaml

from occ_ros.core.rig import Camera, CameraRig
from occ_ros.io import rosbag as rio

mcap_reader = pytest.importorskip("mcap.reader")
mcap_ros2_decoder = pytest.importorskip("mcap_ros2.decoder")

T0 = 1_700_000_000_123_456_789  # ns; not a whole second, so sec/nanosec splitting is exercised
DT = 100_000_000  # 10 Hz
S45 = math.sqrt(0.5)  # sin 45° = cos 45°

# 90° yaw about +z plus a translation, written out by hand: its quaternion is (0, 0, sin 45°, cos 45°).
ODOM_FROM_BASE = np.array(
    [
        [0.0, -1.0, 0.0, 1.5],
        [1.0, 0.0, 0.0, -0.25],
        [0.0, 0.0, 1.0, 2.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
ODOM_FROM_BASE_QUAT = (0.0, 0.0, S45, S45)

# Optical frame (x right, y down, z forward) of a forward-looking camera 1.5 m above base_link.
CAM_FROM_EGO_FRONT = np.array(
    [
        [0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, -1.0, 1.5],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _rig() -> CameraRig:
    K = np.array([[20.0, 0.0, 15.5], [0.0, 21.0, 11.5], [0.0, 0.0, 1.0]])
    # The left camera looks along +y: ego_from_left = yaw(+90°) applied after the front camera mount.
    yaw90 = np.array([[0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    cam_from_ego_left = CAM_FROM_EGO_FRONT @ yaw90.T
    return CameraRig(
        (
            Camera("CAM_FRONT", "cam_front_optical_frame", 32, 24, K, CAM_FROM_EGO_FRONT),
            Camera("CAM_LEFT", "cam_left_optical_frame", 32, 24, K, cam_from_ego_left),
        )
    )


def _frame(cam_index: int, frame: int, height: int = 24, width: int = 32) -> np.ndarray:
    """Smooth, distinct RGB test image (JPEG-friendly)."""
    v, u = np.mgrid[0:height, 0:width]
    img = np.stack(
        [
            20 + u * 180 // (width - 1) + 15 * frame,
            v * 200 // (height - 1),
            np.full_like(u, 60 + 80 * cam_index),
        ],
        axis=-1,
    )
    return img.astype(np.uint8)


def _write_demo_bag(path: Path, storage: str = "mcap", version: Literal[8, 9] = 8) -> dict:
    """2 cameras x 3 frames of Image, CompressedImage, CameraInfo; one /tf_static; /tf per frame."""
    rig = _rig()
    expected: dict = {"raw": {}, "stamps": {}}
    with rio.BagWriter(path, storage=storage, version=version) as bag:
        static = [rio.transform_stamped(cam.ego_from_cam, T0, "base_link", cam.frame_id) for cam in rig.cameras]
        bag.write("/tf_static", rio.tf_message(static), T0)
        for frame in range(3):
            stamp = T0 + frame * DT
            for idx, cam in enumerate(rig.cameras):
                topic = f"/{cam.name.lower()}"
                rgb = _frame(idx, frame)
                expected["raw"][(topic, stamp)] = rgb
                bag.write(f"{topic}/image_raw", rio.image_msg(rgb, stamp, cam.frame_id), stamp)
                bag.write(
                    f"{topic}/image_raw/compressed",
                    rio.compressed_image_msg(rgb, stamp, cam.frame_id, quality=95),
                    stamp,
                )
                bag.write(f"{topic}/camera_info", rio.camera_info_msg(cam, stamp), stamp)
            bag.write("/tf", rio.tf_message([rio.transform_stamped(ODOM_FROM_BASE, stamp, "odom", "base_link")]), stamp)
    expected["rig"] = rig
    return expected


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("bags") / "demo"
    return path, _write_demo_bag(path)


def _mcap_messages(bag_dir: Path) -> list:
    files = sorted(bag_dir.glob("*.mcap"))
    assert len(files) == 1, f"expected one .mcap in {bag_dir}, found {files}"
    with open(files[0], "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[mcap_ros2_decoder.DecoderFactory()])
        return list(reader.iter_decoded_messages())


def _stamp_ns(stamp) -> int:  # type: ignore[no-untyped-def]
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# ---------------------------------------------------------------------- independent MCAP decoding
def test_mcap_schemas_and_counts(demo_bag: tuple[Path, dict]) -> None:
    path, _ = demo_bag
    msgs = _mcap_messages(path)
    schemas = {channel.topic: schema.name for schema, channel, _, _ in msgs}
    assert schemas == {
        "/cam_front/image_raw": "sensor_msgs/msg/Image",
        "/cam_front/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        "/cam_front/camera_info": "sensor_msgs/msg/CameraInfo",
        "/cam_left/image_raw": "sensor_msgs/msg/Image",
        "/cam_left/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        "/cam_left/camera_info": "sensor_msgs/msg/CameraInfo",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/tf_static": "tf2_msgs/msg/TFMessage",
    }
    counts = Counter(channel.topic for _, channel, _, _ in msgs)
    assert counts["/tf_static"] == 1
    assert all(counts[t] == 3 for t in schemas if t != "/tf_static")
    assert all(channel.message_encoding == "cdr" for _, channel, _, _ in msgs)
    assert all(schema.encoding == "ros2msg" for schema, _, _, _ in msgs)


def test_mcap_log_time_equals_header_stamp(demo_bag: tuple[Path, dict]) -> None:
    path, _ = demo_bag
    for _, channel, message, decoded in _mcap_messages(path):
        header = decoded.transforms[0].header if channel.topic.startswith("/tf") else decoded.header
        assert message.log_time == message.publish_time == _stamp_ns(header.stamp), channel.topic
    stamps = sorted({m.log_time for _, _, m, _ in _mcap_messages(path)})
    assert stamps == [T0, T0 + DT, T0 + 2 * DT]
    assert T0 // 1_000_000_000 == 1_700_000_000 and T0 % 1_000_000_000 == 123_456_789


def test_mcap_raw_images_round_trip_exactly(demo_bag: tuple[Path, dict]) -> None:
    path, expected = demo_bag
    seen = 0
    for _, channel, message, decoded in _mcap_messages(path):
        if not channel.topic.endswith("/image_raw"):
            continue
        ref = expected["raw"][(channel.topic[: -len("/image_raw")], message.log_time)]
        assert decoded.encoding == "rgb8"
        assert (decoded.height, decoded.width, decoded.step, decoded.is_bigendian) == (24, 32, 96, 0)
        pixels = np.frombuffer(bytes(decoded.data), dtype=np.uint8).reshape(24, 32, 3)
        np.testing.assert_array_equal(pixels, ref)
        assert decoded.header.frame_id == f"{channel.topic.split('/')[1]}_optical_frame"
        seen += 1
    assert seen == 6


def test_mcap_jpeg_round_trip_is_close(demo_bag: tuple[Path, dict]) -> None:
    import cv2

    path, expected = demo_bag
    seen = 0
    for _, channel, message, decoded in _mcap_messages(path):
        if not channel.topic.endswith("/compressed"):
            continue
        assert decoded.format == "rgb8; jpeg compressed bgr8"
        data = bytes(decoded.data)
        assert data[:3] == b"\xff\xd8\xff"  # JPEG SOI marker
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # independent of image_to_rgb
        assert bgr is not None
        ref = expected["raw"][(channel.topic[: -len("/image_raw/compressed")], message.log_time)]
        err = np.abs(bgr[..., ::-1].astype(int) - ref.astype(int))
        assert err.mean() < 2.5 and err.max() < 20, (err.mean(), err.max())
        # Channel order matters: swapping R and B would be far off for these images.
        assert np.abs(bgr.astype(int) - ref.astype(int)).mean() > 20
        seen += 1
    assert seen == 6


def test_mcap_camera_info_values(demo_bag: tuple[Path, dict]) -> None:
    path, expected = demo_bag
    rig = expected["rig"]
    seen = 0
    for _, channel, _, decoded in _mcap_messages(path):
        if not channel.topic.endswith("/camera_info"):
            continue
        cam = rig[channel.topic.split("/")[1].upper()]
        assert decoded.header.frame_id == cam.frame_id
        assert (decoded.width, decoded.height) == (32, 24)
        assert decoded.distortion_model == "plumb_bob"
        assert list(decoded.d) == [0.0] * 5
        assert list(decoded.k) == [20.0, 0.0, 15.5, 0.0, 21.0, 11.5, 0.0, 0.0, 1.0]
        assert list(decoded.r) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        assert list(decoded.p) == [20.0, 0.0, 15.5, 0.0, 0.0, 21.0, 11.5, 0.0, 0.0, 0.0, 1.0, 0.0]
        assert (decoded.binning_x, decoded.binning_y) == (0, 0)
        roi = decoded.roi
        assert (roi.x_offset, roi.y_offset, roi.width, roi.height, roi.do_rectify) == (0, 0, 0, 0, False)
        seen += 1
    assert seen == 6


def test_mcap_tf_values(demo_bag: tuple[Path, dict]) -> None:
    path, _ = demo_bag
    tf_msgs = [(m, d) for _, c, m, d in _mcap_messages(path) if c.topic == "/tf"]
    assert len(tf_msgs) == 3
    for message, decoded in tf_msgs:
        (tf,) = decoded.transforms
        assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
        assert _stamp_ns(tf.header.stamp) == message.log_time
        t, q = tf.transform.translation, tf.transform.rotation
        assert (t.x, t.y, t.z) == pytest.approx((1.5, -0.25, 2.0), abs=1e-12)
        assert (q.x, q.y, q.z, q.w) == pytest.approx(ODOM_FROM_BASE_QUAT, abs=1e-12)


def test_mcap_tf_static_camera_poses(demo_bag: tuple[Path, dict]) -> None:
    path, _ = demo_bag
    (decoded,) = [d for _, c, _, d in _mcap_messages(path) if c.topic == "/tf_static"]
    by_child = {tf.child_frame_id: tf for tf in decoded.transforms}
    assert set(by_child) == {"cam_front_optical_frame", "cam_left_optical_frame"}
    front = by_child["cam_front_optical_frame"]
    assert front.header.frame_id == "base_link"
    # Front optical frame in base_link: origin 1.5 m up; optical z = ego x, x = -ego y, y = -ego z.
    # Rotation matrix columns (-y, -z, x) -> quaternion (-1/2, 1/2, -1/2, 1/2) (w >= 0).
    t, q = front.transform.translation, front.transform.rotation
    assert (t.x, t.y, t.z) == pytest.approx((0.0, 0.0, 1.5), abs=1e-12)
    assert (q.x, q.y, q.z, q.w) == pytest.approx((-0.5, 0.5, -0.5, 0.5), abs=1e-12)


def test_mcap_channel_qos_metadata(demo_bag: tuple[Path, dict]) -> None:
    path, _ = demo_bag
    channels = {c.topic: c for _, c, _, _ in _mcap_messages(path)}
    static_qos = yaml.safe_load(channels["/tf_static"].metadata["offered_qos_profiles"])
    assert static_qos[0]["durability"] == 1  # TRANSIENT_LOCAL in rosbag2 <= v8's integer encoding
    assert static_qos[0]["reliability"] == 1  # RELIABLE
    tf_qos = yaml.safe_load(channels["/tf"].metadata["offered_qos_profiles"])
    assert tf_qos[0]["durability"] == 2  # VOLATILE


# ---------------------------------------------------------------------- rosbag2 metadata
@pytest.mark.parametrize("version", [8, 9])
def test_metadata_yaml_tf_static_is_transient_local(tmp_path: Path, version: Literal[8, 9]) -> None:
    path = tmp_path / "bag"
    with rio.BagWriter(path, version=version) as bag:
        bag.write("/tf_static", rio.tf_message([rio.transform_stamped(np.eye(4), T0, "base_link", "cam")]), T0)
        bag.write("/tf", rio.tf_message([rio.transform_stamped(ODOM_FROM_BASE, T0, "odom", "base_link")]), T0)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == version
    assert meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["bag.mcap"]
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert topics["/tf_static"]["message_count"] == 1
    assert topics["/tf_static"]["topic_metadata"]["type"] == "tf2_msgs/msg/TFMessage"
    qos_static = topics["/tf_static"]["topic_metadata"]["offered_qos_profiles"]
    qos_tf = topics["/tf"]["topic_metadata"]["offered_qos_profiles"]
    if version == 8:  # a YAML string inside YAML, integer enums (what Humble/Iron parse)
        assert isinstance(qos_static, str)
        qos_static, qos_tf = yaml.safe_load(qos_static), yaml.safe_load(qos_tf)
        assert qos_static[0]["durability"] == 1 and qos_tf[0]["durability"] == 2
    else:  # a YAML list with enum names (Jazzy+)
        assert qos_static[0]["durability"] == "transient_local" and qos_tf[0]["durability"] == "volatile"


def test_rosbags_reader_sees_transient_local(demo_bag: tuple[Path, dict]) -> None:
    from rosbags.interfaces import ConnectionExtRosbag2, QosDurability
    from rosbags.rosbag2 import Reader

    path, _ = demo_bag
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert reader.message_count == 1 + 3 + 6 * 3
    static_ext, image_ext = conns["/tf_static"].ext, conns["/cam_front/image_raw"].ext
    assert isinstance(static_ext, ConnectionExtRosbag2) and isinstance(image_ext, ConnectionExtRosbag2)
    assert static_ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
    assert image_ext.offered_qos_profiles[0].durability == QosDurability.VOLATILE


# ---------------------------------------------------------------------- read_messages / sqlite3
def test_read_messages_mcap_round_trip(demo_bag: tuple[Path, dict]) -> None:
    path, expected = demo_bag
    got = list(rio.read_messages(path, topics=["/cam_left/image_raw", "/cam_left/image_raw/compressed"]))
    assert [g[0] for g in got].count("/cam_left/image_raw") == 3
    for topic, msgtype, stamp, msg in got:
        assert topic.startswith("/cam_left/")
        ref = expected["raw"][("/cam_left", stamp)]
        assert rio.ns_from_stamp(msg.header.stamp) == stamp
        rgb = rio.image_to_rgb(msg)
        if msgtype == "sensor_msgs/msg/Image":
            np.testing.assert_array_equal(rgb, ref)
        else:
            assert msgtype == "sensor_msgs/msg/CompressedImage"
            assert np.abs(rgb.astype(int) - ref.astype(int)).mean() < 2.5
    # A filter matching nothing yields nothing (rosbags' Reader treats an empty connection list as "all").
    assert list(rio.read_messages(path, topics=["/nope"])) == []


def test_sqlite3_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sq"
    rig = _rig()
    cam = rig[0]
    rgb = _frame(0, 1)
    with rio.BagWriter(path, storage="sqlite3") as bag:
        bag.write("/tf_static", rio.tf_message([rio.transform_stamped(cam.ego_from_cam, T0, "base_link", "c")]), T0)
        for i in range(2):
            bag.write("/img", rio.image_msg(rgb, T0 + i, cam.frame_id), T0 + i)
            bag.write("/info", rio.camera_info_msg(cam, T0 + i), T0 + i)
        assert bag.topics == {
            "/tf_static": "tf2_msgs/msg/TFMessage",
            "/img": "sensor_msgs/msg/Image",
            "/info": "sensor_msgs/msg/CameraInfo",
        }
    assert (path / "sq.db3").is_file() and (path / "metadata.yaml").is_file()
    got = list(rio.read_messages(path))
    assert [(t, s) for t, _, s, _ in got] == [
        ("/tf_static", T0),
        ("/img", T0),
        ("/info", T0),
        ("/img", T0 + 1),
        ("/info", T0 + 1),
    ]
    np.testing.assert_array_equal(rio.image_to_rgb(got[1][3]), rgb)
    info = got[2][3]
    np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), cam.K)
    np.testing.assert_allclose(rio.matrix_from_transform(got[0][3].transforms[0]), cam.ego_from_cam, atol=1e-12)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "sqlite3"


# ---------------------------------------------------------------------- BagWriter errors
def test_bag_writer_refuses_existing_path(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))):
        rio.BagWriter(tmp_path)


def test_bag_writer_argument_and_topic_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage"):
        rio.BagWriter(tmp_path / "x", storage="rosbag1")
    with pytest.raises(RuntimeError, match="not open"):
        rio.BagWriter(tmp_path / "y").write("/a", rio.stamp_from_ns(0), 0)
    with rio.BagWriter(tmp_path / "z") as bag:
        bag.write("/a", rio.tf_message([]), 1)
        with pytest.raises(TypeError, match="tf2_msgs/msg/TFMessage"):
            bag.write("/a", rio.image_msg(_frame(0, 0), 1, "f"), 1)
        with pytest.raises(TypeError, match="not a rosbags message"):
            bag.write("/b", object(), 1)


# ---------------------------------------------------------------------- stamps and transforms
def test_stamp_conversions() -> None:
    stamp = rio.stamp_from_ns(T0)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert rio.ns_from_stamp(stamp) == T0
    assert rio.ns_from_stamp(rio.stamp_from_ns(np.int64(5))) == 5
    with pytest.raises(ValueError, match="range"):
        rio.stamp_from_ns(-1)
    with pytest.raises(ValueError, match="range"):
        rio.stamp_from_ns(2**31 * 1_000_000_000)


def test_transform_stamped_and_back() -> None:
    msg = rio.transform_stamped(ODOM_FROM_BASE, T0, "odom", "base_link")
    assert msg.__msgtype__ == "geometry_msgs/msg/TransformStamped"
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
    r = msg.transform.rotation
    assert (r.x, r.y, r.z, r.w) == pytest.approx(ODOM_FROM_BASE_QUAT, abs=1e-12)
    np.testing.assert_allclose(rio.matrix_from_transform(msg), ODOM_FROM_BASE, atol=1e-12)
    np.testing.assert_allclose(rio.matrix_from_transform(msg.transform), ODOM_FROM_BASE, atol=1e-12)


def test_matrix_from_transform_rejects_non_unit_quaternion() -> None:
    msg = rio.transform_stamped(np.eye(4), 0, "map", "odom")
    msg.transform.rotation.w = 0.0  # all-zero quaternion, a classic uninitialised-message bug
    with pytest.raises(ValueError, match=r"map <- odom.*not unit length"):
        rio.matrix_from_transform(msg)


def test_transform_stamped_rejects_non_rigid() -> None:
    with pytest.raises(ValueError, match="rigid"):
        rio.transform_stamped(np.diag([2.0, 1.0, 1.0, 1.0]), 0, "a", "b")


# ---------------------------------------------------------------------- image conversions
def _raw(encoding: str, data: np.ndarray, height: int, width: int, step: int) -> rio.Image:
    return rio.Image(
        header=rio.Header(stamp=rio.stamp_from_ns(0), frame_id="f"),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.asarray(data, dtype=np.uint8).reshape(-1),
    )


def test_image_msg_fields() -> None:
    rgb = _frame(1, 2, height=5, width=7)
    msg = rio.image_msg(rgb, T0, "cam")
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (5, 7, 21, "rgb8", 0)
    assert msg.header.frame_id == "cam" and rio.ns_from_stamp(msg.header.stamp) == T0
    rgb[0, 0] = 0  # the message holds a copy
    assert msg.data[:3].tolist() == _frame(1, 2, height=5, width=7)[0, 0].tolist()
    with pytest.raises(ValueError, match="uint8"):
        rio.image_msg(rgb.astype(np.float32), 0, "cam")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        rio.image_msg(rgb[..., 0], 0, "cam")


def test_image_to_rgb_bgr8_mono8_rgba8_bgra8() -> None:
    # 2x2 image: red, green / blue, white
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    bgr = np.array([[[0, 0, 255], [0, 255, 0]], [[255, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(rio.image_to_rgb(_raw("bgr8", bgr, 2, 2, 6)), rgb)
    np.testing.assert_array_equal(rio.image_to_rgb(_raw("rgb8", rgb, 2, 2, 6)), rgb)
    alpha = np.full((2, 2, 1), 7, dtype=np.uint8)
    np.testing.assert_array_equal(rio.image_to_rgb(_raw("rgba8", np.concatenate([rgb, alpha], -1), 2, 2, 8)), rgb)
    np.testing.assert_array_equal(rio.image_to_rgb(_raw("bgra8", np.concatenate([bgr, alpha], -1), 2, 2, 8)), rgb)
    mono = np.array([[0, 10], [200, 255]], dtype=np.uint8)
    out = rio.image_to_rgb(_raw("mono8", mono, 2, 2, 2))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(mono[..., None], 3, axis=-1))


def test_image_to_rgb_honours_row_padding_and_copies() -> None:
    rgb = _frame(0, 0, height=3, width=5)
    padded = np.zeros((3, 20), dtype=np.uint8)  # step 20 > 15
    padded[:, :15] = rgb.reshape(3, 15)
    padded[:, 15:] = 99
    out = rio.image_to_rgb(_raw("rgb8", padded, 3, 5, 20))
    np.testing.assert_array_equal(out, rgb)
    msg = rio.image_msg(rgb, 0, "f")
    out = rio.image_to_rgb(msg)
    out[:] = 0
    assert msg.data.any()  # the returned array does not alias the message buffer
    assert out.flags.writeable


def test_image_to_rgb_accepts_bytes_data() -> None:
    rgb = _frame(0, 0, height=2, width=3)
    msg = _raw("rgb8", rgb, 2, 3, 9)
    msg.data = rgb.tobytes()  # type: ignore[assignment]  # rclpy-style buffer instead of a numpy array
    np.testing.assert_array_equal(rio.image_to_rgb(msg), rgb)


def test_image_to_rgb_errors() -> None:
    with pytest.raises(ValueError, match="'16UC1'"):
        rio.image_to_rgb(_raw("16UC1", np.zeros(8), 2, 2, 4))
    with pytest.raises(ValueError, match=r"11 bytes, expected height \* step = 2 \* 6 = 12"):
        rio.image_to_rgb(_raw("rgb8", np.zeros(11), 2, 2, 6))
    with pytest.raises(ValueError, match="13 bytes"):
        rio.image_to_rgb(_raw("bgr8", np.zeros(13), 2, 2, 6))
    with pytest.raises(ValueError, match="step 5"):
        rio.image_to_rgb(_raw("rgb8", np.zeros(10), 2, 2, 5))
    bad = rio.compressed_image_msg(_frame(0, 0), 0, "f")
    bad.data = np.frombuffer(b"not a jpeg at all", dtype=np.uint8)
    with pytest.raises(ValueError, match="cannot decode"):
        rio.image_to_rgb(bad)
    bad.format = "16UC1; compressedDepth png"
    with pytest.raises(ValueError, match="depth"):
        rio.image_to_rgb(bad)


def test_compressed_png_is_lossless_and_format_string() -> None:
    rgb = _frame(1, 1)
    msg = rio.compressed_image_msg(rgb, T0, "cam", fmt="png")
    assert msg.format == "rgb8; png compressed bgr8"
    assert bytes(msg.data[:8]) == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(rio.image_to_rgb(msg), rgb)
    with pytest.raises(ValueError, match="'webp'"):
        rio.compressed_image_msg(rgb, 0, "cam", fmt="webp")
    with pytest.raises(ValueError, match="quality"):
        rio.compressed_image_msg(rgb, 0, "cam", quality=0)


def test_camera_info_msg_fields() -> None:
    cam = _rig()[1]
    info = rio.camera_info_msg(cam, T0)
    assert info.__msgtype__ == "sensor_msgs/msg/CameraInfo"
    assert info.header.frame_id == "cam_left_optical_frame"
    np.testing.assert_array_equal(np.asarray(info.p).reshape(3, 4)[:, :3], cam.K)
    np.testing.assert_array_equal(np.asarray(info.p).reshape(3, 4)[:, 3], 0.0)
    assert rio.typestore().serialize_cdr(info, info.__msgtype__)  # serialisable as built


def test_typestore_is_cached_humble() -> None:
    assert rio.typestore() is rio.typestore()
    assert "sensor_msgs/msg/CompressedImage" in rio.typestore().types
