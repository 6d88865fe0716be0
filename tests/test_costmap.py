"""``~/costmap`` (nav_msgs/OccupancyGrid) built ROS-free: hand-built grids with known cells, the message decoded
independently (rosbags CDR round trip, mcap-ros2-support), the synthetic ground truth, and the session's sink.

Every expected value here is written down by hand or computed with plain numpy from the ground-truth file, not
by the code under test.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.vocabulary import SURFACE_CLASS_NAMES, SemanticClass, Vocabulary
from occ_ros.pipeline.costmap import (
    CostmapBuilder,
    CostmapConfig,
    band_layers,
    camera_view_columns,
    column_rays,
    costmap_cells,
    costmap_info,
    obstacle_classes,
    visible_columns,
)
from occ_ros.pipeline.messages import costmap_msg, message_types_from_modules, rosbags_message_types

OCC3D = Vocabulary.occ3d()
FREE = OCC3D.free_index  # 17
CAR, ROAD, VEGETATION, MANMADE = (OCC3D.index(n) for n in ("car", "driveable_surface", "vegetation", "manmade"))

# x in [-2, 2) by 0.5 (X = 8), y in [-1, 2) by 0.5 (Y = 6: not square, so a transposed map cannot pass),
# z in [-0.5, 3.0) by 0.5 (7 layers: [-0.5, 0), [0, 0.5), [0.5, 1), [1, 1.5), [1.5, 2), [2, 2.5), [2.5, 3)).
GRID = GridSpec((-2.0, -1.0, -0.5), (2.0, 2.0, 3.0), (0.5, 0.5, 0.5))
X, Y, Z = 8, 6, 7
# The default band (0.2, 2.0) m overlaps layers 1..4 ([0, 0.5) reaches above 0.2; [2.0, 2.5) starts at 2.0).
BAND = [False, True, True, True, True, False, False]


def free_grid() -> np.ndarray:
    return np.full((X, Y, Z), FREE, dtype=np.uint8)


def decode(msg) -> dict[tuple[float, float], int]:
    """Cell centre (x, y) in the message frame -> value, from the message fields alone (map_server's convention:
    row-major, x fastest, ``data[row * width + col]``, cell (col, row) at origin + ((col, row) + 0.5) * resolution)."""
    w, h, r = msg.info.width, msg.info.height, msg.info.resolution
    ox, oy = msg.info.origin.position.x, msg.info.origin.position.y
    data = np.asarray(msg.data, dtype=np.int8)
    assert data.shape == (w * h,)
    return {
        (round(ox + (col + 0.5) * r, 6), round(oy + (row + 0.5) * r, 6)): int(data[row * w + col])
        for row in range(h)
        for col in range(w)
    }


# ---------------------------------------------------------------------- the vocabulary's surfaces
def test_the_occ3d_surfaces_are_the_four_ground_classes_and_vegetation_and_manmade_are_obstacles():
    assert [c.name for c in OCC3D.classes if c.surface] == ["driveable_surface", "other_flat", "sidewalk", "terrain"]
    table = obstacle_classes(OCC3D)
    obstacles = [n for n, o in zip(OCC3D.names, table, strict=True) if o]
    assert obstacles == [
        "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
        "traffic_cone", "trailer", "truck", "manmade", "vegetation",
    ]  # fmt: skip
    kitti = Vocabulary.load("semantickitti")
    assert [c.name for c in kitti.classes if c.surface] == ["road", "parking", "sidewalk", "other_ground", "terrain"]


def test_the_surface_flag_round_trips_and_old_dicts_keep_their_meaning():
    # defaults are not written: old hashes and metadata unchanged
    assert all(set(c) == {"name", "color", "prompts", "dynamic"} for c in OCC3D.to_dict()["classes"])
    assert Vocabulary.from_dict(OCC3D.to_dict()) == OCC3D
    custom = Vocabulary(
        "robot",
        (
            SemanticClass("floor", (1, 1, 1), ("floor",), surface=True),
            SemanticClass("terrain", (2, 2, 2), ("grass",), surface=False),  # overrides the name's default
            SemanticClass("box", (3, 3, 3), ("box",)),
            SemanticClass("free", (4, 4, 4)),
        ),
    )
    assert [c.surface for c in custom.classes] == [True, False, False, False]
    data = custom.to_dict()
    assert [c.get("surface") for c in data["classes"]] == [True, False, None, None]
    assert Vocabulary.from_dict(data) == custom
    assert "terrain" in SURFACE_CLASS_NAMES and "vegetation" not in SURFACE_CLASS_NAMES


def test_an_unknown_obstacle_class_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"'carr' is not a class of vocabulary 'occ3d'; valid: \['others', "):
        obstacle_classes(OCC3D, ("car", "carr"))
    with pytest.raises(ValueError, match="'free' is free space"):
        obstacle_classes(OCC3D, ("free",))
    with pytest.raises(ValueError, match="'auto' stands alone"):
        CostmapConfig(obstacle_classes=("auto", "car"))
    with pytest.raises(ValueError, match="costmap.max_height"):
        CostmapConfig(min_height=1.0, max_height=1.0)


# ---------------------------------------------------------------------- hand-built grids
def test_the_band_is_the_layers_whose_extent_overlaps_it():
    assert band_layers(GRID, 0.2, 2.0).tolist() == BAND
    assert band_layers(GRID, 0.0, 0.5).tolist() == [False, True, False, False, False, False, False]
    with pytest.raises(ValueError, match=r"band \(3.5, 4.0\) m does not overlap the grid's z range \[-0.5, 3.0\]"):
        band_layers(GRID, 3.5, 4.0)


def test_an_obstacle_in_the_band_is_100_at_its_exact_cell_and_the_message_says_where():
    labels = free_grid()
    # a car voxel at (x, y, z) = (0.75, 1.25, 1.25): i = (0.75 + 2) / 0.5 = 5, j = (1.25 + 1) / 0.5 = 4, k = 3
    labels[5, 4, 3] = CAR
    cells = costmap_cells(labels, GRID, OCC3D)
    assert cells.shape == (Y, X) and cells.dtype == np.int8
    assert cells[4, 5] == 100
    assert (cells == 100).sum() == 1 and (cells == 0).sum() == X * Y - 1  # every other column: free evidence

    msg = costmap_msg(rosbags_message_types(), cells, costmap_info(GRID), 1_700_000_000_000_000_123, "base_link")
    assert msg.header.frame_id == "base_link"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123)
    assert (msg.info.width, msg.info.height) == (8, 6)
    assert msg.info.resolution == pytest.approx(0.5)
    p, q = msg.info.origin.position, msg.info.origin.orientation
    assert (p.x, p.y, p.z) == (-2.0, -1.0, 0.0) and (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)
    assert np.asarray(msg.data).dtype == np.int8
    assert msg.data[4 * 8 + 5] == 100  # data[row * width + col]
    cells_by_centre = decode(msg)
    assert [xy for xy, v in cells_by_centre.items() if v == 100] == [(0.75, 1.25)]


def test_obstacles_above_or_below_the_band_are_not_occupied_and_flat_classes_are_free():
    labels = free_grid()
    labels[0, 0, 5] = CAR  # [2.0, 2.5) m: above the band -> free (the band's voxels are free)
    labels[1, 0, 0] = CAR  # [-0.5, 0) m: below the band
    labels[2, 0, 1] = ROAD  # a surface class in the band
    labels[3, 0, :] = ROAD  # a whole column of road
    labels[4, 0, 1] = VEGETATION  # vegetation in the band: an obstacle
    labels[5, 0, 4] = MANMADE  # [1.5, 2.0): in the band
    cells = costmap_cells(labels, GRID, OCC3D)
    assert cells[0, :6].tolist() == [0, 0, 0, 0, 100, 100]
    # only cars as obstacles: vegetation and manmade are evidence of free space then
    only_cars = costmap_cells(labels, GRID, OCC3D, CostmapConfig(obstacle_classes=("car",)))
    assert only_cars[0, :6].tolist() == [0, 0, 0, 0, 0, 0]
    # a lower band catches the low car, a higher one the high car
    assert costmap_cells(labels, GRID, OCC3D, CostmapConfig(-0.3, 0.1))[0, 1] == 100
    assert costmap_cells(labels, GRID, OCC3D, CostmapConfig(2.1, 2.4))[0, 0] == 100


def test_columns_without_observed_voxels_are_unknown():
    labels = free_grid()
    labels[5, 4, 3] = CAR
    observed = np.ones((X, Y, Z), dtype=bool)
    observed[0, 0, :] = False  # no voxel of the column observed
    observed[1, 0, 1:5] = False  # only voxels outside the band observed
    observed[5, 4, 3] = False  # the car is not observed: no obstacle, and the rest of its band is free
    observed[2, 0, :] = False
    observed[2, 0, 2] = True  # one observed free voxel in the band is free evidence
    cells = costmap_cells(labels, GRID, OCC3D, observed=observed)
    assert cells[0, :3].tolist() == [-1, -1, 0]
    assert cells[4, 5] == 0
    columns = np.ones((X, Y), dtype=bool)
    columns[7, 5] = False  # an (X, Y) column mask works the same
    assert costmap_cells(labels, GRID, OCC3D, observed=columns)[5, 7] == -1
    with pytest.raises(ValueError, match="observed must be"):
        costmap_cells(labels, GRID, OCC3D, observed=np.ones((Y, X), dtype=bool))


def test_confidence_below_the_threshold_is_no_evidence_and_a_doubtful_obstacle_is_unknown():
    labels = free_grid()
    labels[5, 4, 3] = CAR
    labels[6, 4, 3] = CAR
    confidence = np.full((X, Y, Z), 0.9, dtype=np.float32)
    confidence[6, 4, 3] = 0.3  # a doubtful car
    confidence[0, 0, 1:5] = 0.1  # a column of doubtful free space
    cfg = CostmapConfig(min_confidence=0.5)
    cells = costmap_cells(labels, GRID, OCC3D, cfg, confidence=confidence)
    assert (cells[4, 5], cells[4, 6], cells[0, 0], cells[1, 1]) == (100, -1, -1, 0)
    # without a threshold, confidence does not matter
    assert costmap_cells(labels, GRID, OCC3D, confidence=confidence)[4, 6] == 100


def test_bad_grids_and_labels_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="square voxel columns"):
        costmap_info(GridSpec((0, 0, 0), (2, 2, 2), (0.5, 1.0, 0.5)))
    with pytest.raises(ValueError, match="labels have shape"):
        costmap_cells(np.zeros((X, Y, Z + 1), np.uint8), GRID, OCC3D)
    with pytest.raises(ValueError, match=r"labels span 18..18; the vocabulary has 18 classes"):
        costmap_cells(np.full((X, Y, Z), 18, np.uint8), GRID, OCC3D)
    with pytest.raises(ValueError, match="cells have shape"):
        costmap_msg(rosbags_message_types(), np.zeros((X, Y), np.int8), costmap_info(GRID), 0, "base_link")


def _forward_camera() -> Camera:
    """A 90-degree camera 1 m above base_link looking along +x (optical z = ego x, optical x = -ego y, y = -z)."""
    ego_from_cam = np.eye(4)
    ego_from_cam[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    ego_from_cam[:3, 3] = [0.0, 0.0, 1.0]
    K = np.array([[100.0, 0.0, 99.5], [0.0, 100.0, 49.5], [0.0, 0.0, 1.0]])
    return Camera("CAM_FRONT", "cam_front_optical_frame", 200, 100, K, np.linalg.inv(ego_from_cam))


def test_columns_outside_every_cameras_view_are_unknown_for_predictions():
    rig = CameraRig((_forward_camera(),))
    view = camera_view_columns(GRID, rig, np.array(BAND))
    assert view.shape == (X, Y)
    # column centres x = -1.75 .. 1.75 (i), y = -0.75 .. 1.75 (j); seen iff x > 0 and |y| < x (90 degrees), more or
    # less at the edges (the band's voxel centres at z = 0.25 .. 1.75 are looked at from z = 1)
    assert not view[:4].any()  # behind the camera (x < 0)
    assert view[7, 1] and view[5, 1] and view[7, 4]  # (1.75, -0.25), (0.75, -0.25), (1.75, 1.25)
    assert not view[4, 5]  # (0.25, 1.75): 82 degrees to the left
    labels = free_grid()
    labels[7, 1, 2] = CAR
    labels[0, 0, 2] = CAR  # behind the camera: the network's guess is not an obstacle
    builder = CostmapBuilder(GRID, OCC3D)
    cells = builder(labels, None, rig)
    assert (cells[1, 7], cells[0, 0], cells[1, 5]) == (100, -1, 0)
    assert builder.view(rig) is builder.view(rig)  # cached per rig
    off = CostmapBuilder(GRID, OCC3D, CostmapConfig(camera_view=False))
    assert off(labels, None, rig)[0, 0] == 100


def test_a_ray_sees_up_to_and_including_its_first_blocking_column():
    # a 2 x 3 map (flat index i * 3 + j); ray 0 runs 0 -> 1 -> 2 (then leaves), ray 1 runs 5 -> 4 -> 3
    rays = np.array([[0, 1, 2, -1], [5, 4, 3, -1]])
    blocking = np.zeros((2, 3), dtype=bool)
    blocking[0, 1] = True  # flat 1
    seen = visible_columns(rays, blocking)
    assert seen.tolist() == [[True, True, False], [True, True, True]]


def test_columns_the_predictions_own_obstacles_hide_from_every_camera_are_unknown():
    # 1 m columns: x in [-1, 11) (i = x + 1), y in [-5, 5) (j = y + 5); the forward camera sits at (0, 0, 1)
    grid = GridSpec((-1.0, -5.0, -0.5), (11.0, 5.0, 3.0), (1.0, 1.0, 0.5))
    rig = CameraRig((_forward_camera(),))
    labels = np.full(grid.shape, FREE, dtype=np.uint8)
    labels[6, 5, 3] = CAR  # the column x in [5, 6), y in [0, 1): seen between 0 and 11.3 degrees to the left
    cells = CostmapBuilder(grid, OCC3D)(labels, None, rig)  # (Y, X)
    assert cells[5, 6] == 100
    assert cells[5, 4] == 0  # (3.5, 0.5), in front of the car
    # straight behind it: x in [7, 11), y in [0, 1), i.e. 0 to 8.1 degrees; every ray there crossed the car's cell
    # (at x in [5, 6) such a ray has 0 <= y < 0.86)
    assert (cells[5, 8:] == -1).all()
    assert cells[8, 9] == 0  # (8.5, 3.5), 22 degrees to the left: beside it, seen
    assert cells[4, 9] == 0  # (8.5, -0.5): just right of the shadow
    rays = column_rays(grid, rig)
    # the longest crossing, from (0, 0) to the corner (11, -5) m 24 degrees right, visits at most 12 + 5 + 1 columns;
    # that corner's column (i, j) = (11, 0) is reached
    assert rays.shape[1] <= 18 and (rays[:, -1] >= 0).any()
    assert 11 * 10 + 0 in rays and rays.min() == -1
    unoccluded = CostmapBuilder(grid, OCC3D, CostmapConfig(occlusion=False))(labels, None, rig)
    assert (unoccluded[5, 8:] == 0).all()


# ---------------------------------------------------------------------- the message, decoded independently
def test_the_rosbags_message_round_trips_through_cdr():
    from occ_ros.io.rosbag import typestore

    labels = free_grid()
    labels[5, 4, 3] = CAR
    observed = np.ones((X, Y), dtype=bool)
    observed[0, 5] = False
    cells = costmap_cells(labels, GRID, OCC3D, observed=observed)
    msg = costmap_msg(rosbags_message_types(), cells, costmap_info(GRID), 42, "base_link")
    store = typestore()
    raw = store.serialize_cdr(msg, "nav_msgs/msg/OccupancyGrid")
    back = store.deserialize_cdr(raw, "nav_msgs/msg/OccupancyGrid")
    assert back.header.frame_id == "base_link" and back.header.stamp.nanosec == 42
    assert (back.info.map_load_time.sec, back.info.map_load_time.nanosec) == (0, 42)
    assert (back.info.width, back.info.height, back.info.resolution) == (8, 6, 0.5)
    np.testing.assert_array_equal(np.asarray(back.data), cells.reshape(-1))
    values = decode(back)
    assert values[(0.75, 1.25)] == 100 and values[(-1.75, 1.75)] == -1 and values[(-1.75, -0.75)] == 0


def test_the_message_decodes_with_mcap_ros2(tmp_path: Path):
    pytest.importorskip("mcap_ros2.decoder")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.rosbag2 import StoragePlugin, Writer

    from occ_ros.io.rosbag import typestore

    labels = free_grid()
    labels[5, 4, 3] = CAR
    cells = costmap_cells(labels, GRID, OCC3D)
    msg = costmap_msg(rosbags_message_types(), cells, costmap_info(GRID), 7, "base_link")
    store = typestore()
    with Writer(tmp_path / "bag", version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/occupancy_node/costmap", "nav_msgs/msg/OccupancyGrid", typestore=store)
        writer.write(conn, 7, store.serialize_cdr(msg, "nav_msgs/msg/OccupancyGrid"))
    (path,) = sorted((tmp_path / "bag").glob("*.mcap"))
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        ((schema, channel, _, decoded),) = list(reader.iter_decoded_messages())
    assert schema.name == "nav_msgs/msg/OccupancyGrid" and channel.topic == "/occupancy_node/costmap"
    assert [xy for xy, v in decode(decoded).items() if v == 100] == [(0.75, 1.25)]


def test_rclpy_style_modules_get_an_int8_array():
    """The node passes rclpy's ``nav_msgs.msg``: the builder then hands ``int8[]`` over as ``array.array('b')``."""

    class Msg:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    names = "Header PointCloud2 PointField Marker MarkerArray UInt8MultiArray MultiArrayLayout MultiArrayDimension"
    names += " String Point Pose Quaternion Vector3 ColorRGBA Time Duration OccupancyGrid MapMetaData Float64"
    module = SimpleNamespace(**{n: type(n, (Msg,), {}) for n in names.split()})
    types = message_types_from_modules(module, module, module, module, module, nav_msgs_msg=module)
    cells = np.array([[-1, 0], [100, 0]], dtype=np.int8)
    info = costmap_info(GridSpec((0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.5)))
    msg = costmap_msg(types, cells, info, 0, "base_link")
    assert msg.data.typecode == "b" and list(msg.data) == [-1, 0, 100, 0]
    assert type(msg.info.width) is int and type(msg.info.resolution) is float
    no_nav = message_types_from_modules(module, module, module, module, module)
    with pytest.raises(ValueError, match="no nav_msgs classes"):
        costmap_msg(no_nav, cells, info, 0, "base_link")


# ---------------------------------------------------------------------- the synthetic ground truth
def test_the_costmap_of_the_ground_truth_marks_every_ground_truth_obstacle_column(synth_world: Path):
    from occ_ros.io.labels import load_labels

    files = sorted((synth_world / "gts").glob("*/*/labels.npz"))
    assert files
    for path in files:
        gt = np.load(path)
        semantics, mask = gt["semantics"], gt["mask_camera"].astype(bool)
        grid = load_labels(path).grid
        # independently: the obstacle classes by name, the band from the layers' z edges
        surfaces_and_free = {"driveable_surface", "other_flat", "sidewalk", "terrain", "free"}
        obstacle_ids = [i for i, n in enumerate(OCC3D.names) if n not in surfaces_and_free]
        z_lo = grid.range_min[2] + np.arange(semantics.shape[2]) * grid.voxel_size[2]
        in_band = (z_lo + grid.voxel_size[2] > 0.2) & (z_lo < 2.0)
        obstacle = np.isin(semantics, obstacle_ids) & mask & in_band[None, None, :]
        expected = obstacle.any(axis=2)  # (X, Y)
        assert expected.sum() > 10, "the synthetic scene has obstacles in view"
        seen = (mask & in_band[None, None, :]).any(axis=2)

        cells = costmap_cells(semantics, grid, OCC3D, observed=mask)
        occupied = cells.T == 100  # (X, Y)
        np.testing.assert_array_equal(occupied, expected)  # every GT obstacle column, and nothing else
        np.testing.assert_array_equal(cells.T == -1, ~seen)  # unknown exactly where the band was not observed
        assert ((cells.T == 0) == (seen & ~expected)).all()


# ---------------------------------------------------------------------- the session publishes it
def test_the_session_publishes_the_costmap_and_a_bad_class_stops_it_at_start():
    from occ_ros.pipeline.outputs import occupied_voxels
    from occ_ros.pipeline.pipeline import FrameResult
    from occ_ros.session import CameraInput, OccupancySession, OutputSinks, SessionConfig

    info = SimpleNamespace(
        grid=GRID, vocabulary=OCC3D, num_cameras=1, cameras=("CAM_FRONT",), outputs=("labels", "confidence")
    )
    backend = SimpleNamespace(info=info, path="fake.onnx", name="fake", provider="cpu", close=lambda: None)
    sent: list = []
    config = SessionConfig((CameraInput("CAM_FRONT", "/cam_front/image_raw", "/cam_front/camera_info"),))
    session = OccupancySession(
        config, backend, rosbags_message_types(), OutputSinks(costmap=sent.append), lambda *a: np.eye(4)
    )
    labels = free_grid()
    labels[7, 1, 3] = CAR  # (1.75, -0.25): in front of the camera
    labels[0, 0, 2] = CAR  # behind the camera
    conf = np.ones(labels.shape, np.float32)
    rig = CameraRig((_forward_camera(),))
    result = FrameResult(5_000_000_000, labels, conf, occupied_voxels(labels, conf, GRID, OCC3D), rig=rig)
    assert session.publish(result) == ["costmap"]
    (msg,) = sent
    assert msg.header.frame_id == "base_link" and msg.header.stamp.sec == 5
    values = decode(msg)
    assert values[(1.75, -0.25)] == 100 and values[(-1.75, -0.75)] == -1 and values[(1.25, -0.25)] == 0
    assert session.published["costmap"] == 1

    from dataclasses import replace

    bad = replace(config, costmap_config=CostmapConfig(obstacle_classes=("tree",)))
    with pytest.raises(ValueError, match="'tree' is not a class of vocabulary 'occ3d'"):
        OccupancySession(bad, backend, rosbags_message_types(), OutputSinks(), lambda *a: np.eye(4))
    off = OccupancySession(
        replace(config, costmap=False), backend, rosbags_message_types(), OutputSinks(costmap=sent.append),
        lambda *a: np.eye(4),
    )  # fmt: skip
    assert off.publish(result) == [] and len(sent) == 1


def test_the_costmap_picture_has_the_orientation_of_the_bev_picture():
    from occ_ros.viz import bev_image, costmap_image

    labels = free_grid()
    labels[5, 4, 3] = CAR
    cells = costmap_cells(labels, GRID, OCC3D)
    picture, bev = costmap_image(cells), bev_image(labels, OCC3D)
    assert picture.shape == bev.shape == (X, Y, 3)
    ((row, col),) = np.argwhere(picture[:, :, 0] == 0).tolist()  # the one black (occupied) pixel
    ((bev_row, bev_col),) = np.argwhere((bev != 255).any(axis=2)).tolist()  # the one car-coloured pixel
    assert (row, col) == (bev_row, bev_col) == (X - 1 - 5, Y - 1 - 4)  # ego x up, y left
    observed = np.ones((X, Y), dtype=bool)
    observed[0, 0] = False
    grey = costmap_image(costmap_cells(labels, GRID, OCC3D, observed=observed))[:, :, 0]
    assert (grey[X - 1, Y - 1], grey[0, 0]) == (205, 254)  # unknown grey, free white (map_saver's levels)


# ---------------------------------------------------------------------- the node's parameters
def test_the_costmap_parameters_reach_the_session_and_bad_ones_are_named():
    from occ_ros.node.params import ParamError, from_ros_parameters, load_param_file

    shipped = load_param_file(Path(__file__).resolve().parents[1] / "config" / "occupancy.param.yaml")
    config = shipped.session_config()
    assert config.costmap and config.costmap_config == CostmapConfig()  # the file holds the defaults: 0.2-2.0 m, auto
    values = {
        "outputs.costmap": False,
        "costmap.min_height": 0.5,
        "costmap.max_height": 1.5,
        "costmap.obstacle_classes": ["car", "pedestrian"],
        "costmap.min_confidence": 0.4,
        "costmap.camera_view": False,
    }
    config = from_ros_parameters(values).session_config()
    assert not config.costmap
    assert config.costmap_config == CostmapConfig(0.5, 1.5, ("car", "pedestrian"), 0.4, False)
    with pytest.raises(ParamError) as err:
        from_ros_parameters({"costmap.max_height": 0.1, "costmap.obstacle_classes": ["auto", "car"]})
    assert "parameter 'costmap.max_height': expected more than costmap.min_height (0.2), got 0.1" in str(err.value)
    assert "parameter 'costmap.obstacle_classes': 'auto' stands alone" in str(err.value)
    with pytest.raises(ParamError, match="parameter 'costmap.min_confidence'"):
        from_ros_parameters({"costmap.min_confidence": 1.5})
