"""Output stage of the pipeline: occupied voxels, PointCloud2 packing, markers, dense grid, message builders.

Hand-computed checks on a tiny grid, then an end-to-end round trip: the messages built with rosbags' classes are
written into an MCAP rosbag2 and decoded back with the independent ``mcap`` + ``mcap-ros2-support`` readers.
"""

from __future__ import annotations

import array
import json
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.vocabulary import SemanticClass, Vocabulary
from occ_ros.pipeline.messages import (
    MessageTypes,
    dense_grid_msg,
    grid_description_msg,
    marker_array_msg,
    message_types_from_modules,
    pointcloud2_msg,
    rclpy_byte_array,
    rosbags_message_types,
)
from occ_ros.pipeline.outputs import (
    DENSE_GRID_LAYOUT,
    POINT_STEP,
    RateLimiter,
    VoxelCloud,
    class_cubes,
    dense_grid,
    grid_description,
    occupied_voxels,
    pack_cloud,
    pointcloud2_fields,
)

# A 4 x 4 x 2 grid: x in [-1, 1] by 0.5, y in [-2, 2] by 1.0, z in [0, 1] by 0.5.
GRID = GridSpec((-1.0, -2.0, 0.0), (1.0, 2.0, 1.0), (0.5, 1.0, 0.5))
VOCAB = Vocabulary(
    "tiny",
    (
        SemanticClass("wall", (255, 0, 0), ("wall",)),
        SemanticClass("car", (0, 128, 255), ("car",)),
        SemanticClass("tree", (1, 2, 3), ("tree",)),
        SemanticClass("free", (255, 255, 255)),
    ),
)
FREE = 3

# Voxels in C-order of (i, j, k), with their hand-computed centres, labels and packed colours.
EXPECTED_INDEX = [(0, 0, 0), (0, 0, 1), (2, 3, 0), (3, 1, 1)]
EXPECTED_LABELS = [1, 0, 2, 0]
EXPECTED_CENTRES = [(-0.75, -1.5, 0.25), (-0.75, -1.5, 0.75), (0.25, 1.5, 0.25), (0.75, -0.5, 0.75)]
EXPECTED_RGB = [0x000080FF, 0x00FF0000, 0x00010203, 0x00FF0000]


def tiny_labels() -> np.ndarray:
    labels = np.full(GRID.shape, FREE, dtype=np.uint8)
    # assigned out of order on purpose: the cloud must come out in C-order
    labels[3, 1, 1] = 0
    labels[2, 3, 0] = 2
    labels[0, 0, 0] = 1
    labels[0, 0, 1] = 0
    return labels


def tiny_confidence() -> np.ndarray:
    conf = np.full(GRID.shape, 0.9, dtype=np.float32)
    conf[2, 3, 0] = 0.2
    conf[1, 1, 1] = 0.99  # a free voxel, very confident
    return conf


# ---------------------------------------------------------------------- occupied voxels
def test_grid_shape() -> None:
    assert GRID.shape == (4, 4, 2)


def test_occupied_voxels_hand_computed() -> None:
    cloud = occupied_voxels(tiny_labels(), tiny_confidence(), GRID, VOCAB)
    assert len(cloud) == 4
    assert cloud.points.dtype == np.float32 and cloud.points.shape == (4, 3)
    assert cloud.labels.dtype == np.uint8 and cloud.confidence.dtype == np.float32 and cloud.rgb.dtype == np.uint32
    np.testing.assert_array_equal(cloud.points, np.array(EXPECTED_CENTRES, dtype=np.float32))
    assert cloud.labels.tolist() == EXPECTED_LABELS
    assert cloud.rgb.tolist() == EXPECTED_RGB
    np.testing.assert_allclose(cloud.confidence, [0.9, 0.9, 0.2, 0.9])
    # the centre formula of the grid module, in C order
    np.testing.assert_allclose(cloud.points, GRID.indices_to_centers(np.array(EXPECTED_INDEX)), atol=1e-6)


OCC3D_LABELS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "occ3d_sample" / "labels.npz"


@pytest.mark.skipif(not OCC3D_LABELS.exists(), reason="../shared/fixtures not present")
def test_occupied_voxels_of_a_real_occ3d_grid_match_nonzero_and_the_grid_centres() -> None:
    """~39k voxels of the official Occ3D file, against ``np.nonzero`` + ``GridSpec.indices_to_centers`` (the
    straightforward way), also for a non-contiguous (transposed-back) label array and a confidence grid."""
    with np.load(OCC3D_LABELS) as npz:
        labels = npz["semantics"]
    grid, vocabulary = GridSpec.named("occ3d"), Vocabulary.occ3d()
    confidence = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    index = np.nonzero(labels != vocabulary.free_index)
    for lab in (labels, np.ascontiguousarray(labels.transpose(2, 1, 0)).transpose(2, 1, 0)):
        cloud = occupied_voxels(lab, confidence, grid, vocabulary)
        np.testing.assert_array_equal(
            cloud.points, grid.indices_to_centers(np.stack(index, axis=-1)).astype(np.float32)
        )
        np.testing.assert_array_equal(cloud.labels, labels[index])
        np.testing.assert_array_equal(cloud.confidence, confidence[index])
        colors = vocabulary.colors().astype(np.uint32)[labels[index]]
        np.testing.assert_array_equal(cloud.rgb, (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2])
        assert cloud.rgb.flags.writeable


def test_confidence_filter_off_by_default_and_on_when_asked() -> None:
    labels, conf = tiny_labels(), tiny_confidence()
    assert len(occupied_voxels(labels, conf, GRID, VOCAB)) == 4  # low-confidence voxel kept by default
    filtered = occupied_voxels(labels, conf, GRID, VOCAB, min_confidence=0.5)
    assert len(filtered) == 3
    assert filtered.labels.tolist() == [1, 0, 0]  # the tree voxel (0.2) is dropped, order kept
    np.testing.assert_array_equal(filtered.points[2], np.array(EXPECTED_CENTRES[3], dtype=np.float32))
    assert len(occupied_voxels(labels, conf, GRID, VOCAB, min_confidence=0.2)) == 4  # threshold is inclusive


def test_no_confidence_means_ones() -> None:
    cloud = occupied_voxels(tiny_labels(), None, GRID, VOCAB)
    assert cloud.confidence.tolist() == [1.0] * 4
    assert len(occupied_voxels(tiny_labels(), None, GRID, VOCAB, min_confidence=0.5)) == 4
    assert len(occupied_voxels(tiny_labels(), None, GRID, VOCAB, min_confidence=1.5)) == 0


def test_free_voxels_never_published() -> None:
    all_free = np.full(GRID.shape, FREE, dtype=np.uint8)
    cloud = occupied_voxels(all_free, np.ones(GRID.shape, np.float32), GRID, VOCAB, min_confidence=0.0)
    assert len(cloud) == 0 and cloud.points.shape == (0, 3)
    assert FREE not in occupied_voxels(tiny_labels(), tiny_confidence(), GRID, VOCAB).labels.tolist()


def test_occupied_voxels_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        occupied_voxels(np.zeros((4, 4, 3), np.uint8), None, GRID, VOCAB)
    with pytest.raises(ValueError, match="vocabulary"):
        occupied_voxels(np.full(GRID.shape, 4, np.uint8), None, GRID, VOCAB)
    with pytest.raises(ValueError, match="confidence"):
        occupied_voxels(tiny_labels(), np.ones((4, 4), np.float32), GRID, VOCAB)


def test_published_voxels_are_the_non_free_voxels() -> None:
    """The "same voxels as occ predict" property at the output stage: every non-free label, nothing else."""
    grid, vocab = GridSpec.demo(), Vocabulary.occ3d()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(vocab), size=grid.shape).astype(np.uint8)
    labels[rng.random(grid.shape) < 0.8] = vocab.free_index
    confidence = rng.random(grid.shape).astype(np.float32)  # low confidences are published by default
    cloud = occupied_voxels(labels, confidence, grid, vocab)
    non_free = labels != vocab.free_index
    assert len(cloud) == int(np.count_nonzero(non_free)) > 0
    np.testing.assert_array_equal(cloud.labels, labels[non_free])  # boolean indexing is C-order too
    np.testing.assert_array_equal(cloud.confidence, confidence[non_free])
    idx, inside = grid.points_to_indices(cloud.points)  # every centre maps back to its own voxel
    assert inside.all()
    np.testing.assert_array_equal(idx, np.argwhere(non_free))
    packed = pack_cloud(cloud)
    assert packed.size == len(cloud) * POINT_STEP


# ---------------------------------------------------------------------- PointCloud2 packing
HAND_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "rgb", "label", "confidence"],
        "formats": ["<f4", "<f4", "<f4", "<u4", "u1", "<f4"],
        "offsets": [0, 4, 8, 12, 16, 20],
        "itemsize": 24,
    }
)


def test_pointcloud2_fields() -> None:
    assert POINT_STEP == 24
    assert pointcloud2_fields() == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
        ("rgb", 12, 7, 1),
        ("label", 16, 2, 1),
        ("confidence", 20, 7, 1),
    ]


def test_pack_cloud_bytes() -> None:
    cloud = occupied_voxels(tiny_labels(), tiny_confidence(), GRID, VOCAB)
    data = pack_cloud(cloud)
    assert data.dtype == np.uint8 and data.shape == (4 * 24,)
    decoded = np.frombuffer(data.tobytes(), dtype=HAND_DTYPE)
    np.testing.assert_array_equal(np.stack([decoded["x"], decoded["y"], decoded["z"]], 1), cloud.points)
    assert decoded["rgb"].tolist() == EXPECTED_RGB
    assert decoded["label"].tolist() == EXPECTED_LABELS
    np.testing.assert_array_equal(decoded["confidence"], cloud.confidence)
    # first point, byte by byte: x y z f32, rgb bits, label, 3 zero padding bytes, confidence f32
    expected = struct.pack("<fffIB3xf", -0.75, -1.5, 0.25, 0x000080FF, 1, np.float32(0.9))
    assert data[:24].tobytes() == expected
    # the rgb field read as the FLOAT32 it is declared as carries the same bits (RViz / PCL convention)
    as_float = np.frombuffer(data.tobytes(), dtype="<f4").reshape(4, 6)[:, 3]
    assert as_float.view("<u4").tolist() == EXPECTED_RGB


def test_pack_empty_cloud() -> None:
    empty = occupied_voxels(np.full(GRID.shape, FREE, np.uint8), None, GRID, VOCAB)
    assert pack_cloud(empty).shape == (0,)


# ---------------------------------------------------------------------- markers
def striped_cloud() -> VoxelCloud:
    labels = np.tile(np.array([0, 0, 1, 0, 1, 2, 0, 0, 1, 0], dtype=np.uint8), 10)  # 60 / 30 / 10
    points = np.zeros((100, 3), dtype=np.float32)
    points[:, 0] = np.arange(100)
    return VoxelCloud(points, labels, np.ones(100, np.float32), np.zeros(100, np.uint32))


def test_class_cubes_uncapped() -> None:
    cloud = striped_cloud()
    cubes, left_out = class_cubes(cloud, VOCAB, max_voxels=1000)
    assert left_out == 0
    assert [c.class_index for c in cubes] == [0, 1, 2]
    assert [c.name for c in cubes] == ["wall", "car", "tree"]
    assert cubes[1].rgba == pytest.approx((0.0, 128 / 255, 1.0, 1.0))
    for c in cubes:  # each class's voxels in cloud order
        np.testing.assert_array_equal(c.points[:, 0], np.nonzero(cloud.labels == c.class_index)[0])
    assert class_cubes(cloud, VOCAB, max_voxels=None)[1] == 0


def test_class_cubes_cap_is_proportional_strided_and_deterministic() -> None:
    cloud = striped_cloud()
    cubes, left_out = class_cubes(cloud, VOCAB, max_voxels=10)
    assert left_out == 90
    assert [len(c.points) for c in cubes] == [6, 3, 1]
    members0 = np.nonzero(cloud.labels == 0)[0]  # 60 voxels -> every 10th
    np.testing.assert_array_equal(cubes[0].points[:, 0], members0[[0, 10, 20, 30, 40, 50]])
    members1 = np.nonzero(cloud.labels == 1)[0]
    np.testing.assert_array_equal(cubes[1].points[:, 0], members1[[0, 10, 20]])
    again, _ = class_cubes(cloud, VOCAB, max_voxels=10)
    for a, b in zip(cubes, again, strict=True):
        np.testing.assert_array_equal(a.points, b.points)


def test_class_cubes_largest_remainder_and_zero_cap() -> None:
    labels = np.repeat(np.array([0, 1, 2], np.uint8), 5)
    cloud = VoxelCloud(np.zeros((15, 3), np.float32), labels, np.ones(15, np.float32), np.zeros(15, np.uint32))
    cubes, left_out = class_cubes(cloud, VOCAB, max_voxels=4)
    assert [len(c.points) for c in cubes] == [2, 1, 1] and left_out == 11  # exactly the cap
    cubes, left_out = class_cubes(cloud, VOCAB, max_voxels=2)
    assert sum(len(c.points) for c in cubes) == 2 and left_out == 13
    assert class_cubes(cloud, VOCAB, max_voxels=0) == ([], 15)
    with pytest.raises(ValueError):
        class_cubes(cloud, VOCAB, max_voxels=-1)


# ---------------------------------------------------------------------- dense grid, description, rate limit
def test_dense_grid_layout() -> None:
    labels = tiny_labels()
    dense = dense_grid(labels.astype(np.int64), GRID)
    assert dense.dtype == np.uint8 and dense.flags.c_contiguous and dense.shape == (4, 4, 2)
    flat = dense.reshape(-1)
    _, ny, nz = GRID.shape
    for (i, j, k), label in zip(EXPECTED_INDEX, EXPECTED_LABELS, strict=True):
        assert flat[(i * ny + j) * nz + k] == label  # the documented flat index
    assert "(i*Y + j)*Z + k" in DENSE_GRID_LAYOUT
    with pytest.raises(ValueError):
        dense_grid(np.full((2, 2), 1, np.uint8))


def test_grid_description_is_json() -> None:
    desc = grid_description((GRID, VOCAB), frame_id="base_link")
    again = json.loads(json.dumps(desc))
    assert again == desc
    assert GridSpec.from_dict(desc["grid"]) == GRID
    assert desc["free_index"] == FREE and desc["frame_id"] == "base_link"
    assert [c["name"] for c in desc["classes"]] == ["wall", "car", "tree", "free"]
    assert desc["classes"][1]["color"] == [0, 128, 255]
    assert desc["dims"] == [
        {"label": "x", "size": 4, "stride": 32},
        {"label": "y", "size": 4, "stride": 8},
        {"label": "z", "size": 2, "stride": 2},
    ]
    assert desc["layout"] == DENSE_GRID_LAYOUT
    info = SimpleNamespace(grid=GRID, vocabulary=VOCAB)  # a ModelInfo duck
    assert grid_description(info)["classes"] == desc["classes"]  # type: ignore[arg-type]


def test_rate_limiter() -> None:
    limiter = RateLimiter(1.0)
    assert [limiter.ready(t) for t in (10.0, 10.5, 10.99, 11.0, 11.5, 12.2)] == [True, False, False, True, False, True]
    assert limiter.ready(3.0)  # clock jumped back (bag loop)
    assert not limiter.ready(3.1)
    limiter.reset()
    assert limiter.ready(3.2)
    unlimited = RateLimiter(0.0)
    assert all(unlimited.ready(5.0) for _ in range(3))


# ---------------------------------------------------------------------- rclpy-style classes
class _StrictMsg:
    """Stand-in for an rclpy message: keyword construction with defaults, rejects numpy values like rclpy does."""

    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            _check_plain(value, f"{type(self).__name__}.{name}")
            setattr(self, name, value)


def _check_plain(value: Any, where: str) -> None:
    assert not isinstance(value, (np.ndarray, np.generic)), f"{where} is a numpy {type(value).__name__}"
    if isinstance(value, list):
        for item in value:
            _check_plain(item, where)


def _strict_module(*names: str) -> SimpleNamespace:
    return SimpleNamespace(**{n: type(n, (_StrictMsg,), {}) for n in names})


def test_builders_with_rclpy_style_classes() -> None:
    types = message_types_from_modules(
        _strict_module("PointCloud2", "PointField"),
        _strict_module(
            "Header", "UInt8MultiArray", "MultiArrayLayout", "MultiArrayDimension", "String", "ColorRGBA", "Float64"
        ),
        _strict_module("Marker", "MarkerArray"),
        _strict_module("Point", "Pose", "Quaternion", "Vector3"),
        _strict_module("Time", "Duration"),
    )
    assert types.byte_array is rclpy_byte_array and types.complete is None
    cloud = occupied_voxels(tiny_labels(), tiny_confidence(), GRID, VOCAB)
    pc = pointcloud2_msg(types, cloud, 1_500_000_000, "base_link")
    assert isinstance(pc.data, array.array) and pc.data.typecode == "B"
    assert pc.data.tobytes() == pack_cloud(cloud).tobytes()
    assert type(pc.width) is int and type(pc.is_dense) is bool
    assert (pc.header.stamp.sec, pc.header.stamp.nanosec) == (1, 500_000_000)
    cubes, _ = class_cubes(cloud, VOCAB, 100)
    ma = marker_array_msg(types, cubes, 1_500_000_000, "base_link", GRID.voxel_size)
    assert type(ma.markers[1].points[0].x) is float and type(ma.markers[1].color.g) is float
    grid = dense_grid_msg(types, tiny_labels())
    assert isinstance(grid.data, array.array) and type(grid.layout.dim[0].size) is int


# ---------------------------------------------------------------------- end to end through MCAP
_NUMPY_OF_FIELD = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}

TOPICS = {
    "/occupancy_node/voxels": "sensor_msgs/msg/PointCloud2",
    "/occupancy_node/markers": "visualization_msgs/msg/MarkerArray",
    "/occupancy_node/grid": "std_msgs/msg/UInt8MultiArray",
    "/occupancy_node/grid_description": "std_msgs/msg/String",
}


def _write_bag(path: Path, messages: dict[str, Any], stamp_ns: int) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from occ_ros.io.rosbag import typestore

    store = typestore()
    writer = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
    with writer:
        for topic, msg in messages.items():
            msgtype = TOPICS[topic]
            assert type(msg).__msgtype__ == msgtype
            conn = writer.add_connection(topic, msgtype, typestore=store)  # embeds the msgdef (self-describing)
            writer.write(conn, stamp_ns, store.serialize_cdr(msg, msgtype))
    files = sorted(path.glob("*.mcap"))
    assert len(files) == 1
    return files[0]


def _read_mcap(path: Path) -> dict[str, tuple[str, Any]]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, tuple[str, Any]] = {}
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, _message, decoded in reader.iter_decoded_messages():
            assert schema is not None and schema.encoding == "ros2msg"
            out[channel.topic] = (schema.name, decoded)
    return out


def test_messages_decode_with_mcap_ros2(tmp_path: Path) -> None:
    types: MessageTypes = rosbags_message_types()
    labels, conf = tiny_labels(), tiny_confidence()
    cloud = occupied_voxels(labels, conf, GRID, VOCAB)
    cubes, left_out = class_cubes(cloud, VOCAB, max_voxels=100)
    assert left_out == 0
    stamp = 1_700_000_000_123_456_789
    messages = {
        "/occupancy_node/voxels": pointcloud2_msg(types, cloud, stamp, "base_link"),
        "/occupancy_node/markers": marker_array_msg(types, cubes, stamp, "base_link", GRID.voxel_size, lifetime_s=0.25),
        "/occupancy_node/grid": dense_grid_msg(types, labels),
        "/occupancy_node/grid_description": grid_description_msg(types, grid_description((GRID, VOCAB), "base_link")),
    }
    decoded = _read_mcap(_write_bag(tmp_path / "bag", messages, stamp))
    assert {topic: name for topic, (name, _) in decoded.items()} == TOPICS

    # PointCloud2: header, layout, and the data decoded with the decoded fields' offsets
    _, pc = decoded["/occupancy_node/voxels"]
    assert pc.header.frame_id == "base_link"
    assert (pc.header.stamp.sec, pc.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert (pc.height, pc.width, pc.point_step, pc.row_step) == (1, 4, 24, 96)
    assert pc.is_dense and not pc.is_bigendian
    fields = {f.name: (f.offset, f.datatype, f.count) for f in pc.fields}
    assert fields == {n: (o, d, c) for n, o, d, c in pointcloud2_fields()}
    raw = bytes(pc.data)
    assert len(raw) == pc.row_step
    dtype = np.dtype(
        {
            "names": list(fields),
            "formats": [_NUMPY_OF_FIELD[d] for _, d, _ in fields.values()],
            "offsets": [o for o, _, _ in fields.values()],
            "itemsize": pc.point_step,
        }
    )
    points = np.frombuffer(raw, dtype=dtype)
    np.testing.assert_array_equal(np.stack([points["x"], points["y"], points["z"]], 1), cloud.points)
    np.testing.assert_array_equal(points["x"], np.array([c[0] for c in EXPECTED_CENTRES], np.float32))
    assert points["label"].tolist() == EXPECTED_LABELS
    np.testing.assert_array_equal(points["confidence"], cloud.confidence)
    assert points["rgb"].view("<u4").tolist() == EXPECTED_RGB  # float32 field holding the packed bits

    # MarkerArray: DELETEALL first, then one CUBE_LIST per class, coloured, sized, identity pose
    _, ma = decoded["/occupancy_node/markers"]
    assert [(m.type, m.action) for m in ma.markers] == [(6, 3), (6, 0), (6, 0), (6, 0)]
    assert [m.id for m in ma.markers[1:]] == [0, 1, 2]
    assert all(m.ns == "occupancy" and m.header.frame_id == "base_link" for m in ma.markers)
    wall, car, tree = ma.markers[1:]
    assert (car.color.r, car.color.g, car.color.b, car.color.a) == pytest.approx((0.0, 128 / 255, 1.0, 1.0))
    assert (wall.color.r, wall.color.g, wall.color.b) == pytest.approx((1.0, 0.0, 0.0))
    assert (wall.scale.x, wall.scale.y, wall.scale.z) == (0.5, 1.0, 0.5)
    assert (wall.pose.orientation.w, wall.pose.position.x) == (1.0, 0.0)
    assert (wall.lifetime.sec, wall.lifetime.nanosec) == (0, 250_000_000)
    assert [(p.x, p.y, p.z) for p in wall.points] == [EXPECTED_CENTRES[1], EXPECTED_CENTRES[3]]
    assert [(p.x, p.y, p.z) for p in car.points] == [EXPECTED_CENTRES[0]]
    assert [(p.x, p.y, p.z) for p in tree.points] == [EXPECTED_CENTRES[2]]

    # dense grid: dims (std_msgs stride convention) and C-order data
    _, grid = decoded["/occupancy_node/grid"]
    dims = [(d.label, d.size, d.stride) for d in grid.layout.dim]
    assert dims == [("x", 4, 32), ("y", 4, 8), ("z", 2, 2)]
    assert grid.layout.data_offset == 0
    data = np.frombuffer(bytes(grid.data), dtype=np.uint8)
    np.testing.assert_array_equal(data.reshape(4, 4, 2), labels)
    s1, s2 = dims[1][2], dims[2][2]
    for (i, j, k), label in zip(EXPECTED_INDEX, EXPECTED_LABELS, strict=True):
        assert data[grid.layout.data_offset + s1 * i + s2 * j + k] == label  # the std_msgs accessor formula

    # grid description: JSON with the grid spec and classes
    _, desc_msg = decoded["/occupancy_node/grid_description"]
    desc = json.loads(desc_msg.data)
    assert GridSpec.from_dict(desc["grid"]) == GRID
    assert [c["name"] for c in desc["classes"]] == VOCAB.names
