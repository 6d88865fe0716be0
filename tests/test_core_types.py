"""GridSpec, Vocabulary, CameraRig and transforms, checked against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import NUSCENES_CAMERAS, Camera, CameraRig
from occ_ros.core.transforms import (
    invert_transform,
    is_rigid,
    quaternion_from_transform,
    transform_from_quaternion,
    transform_points,
)
from occ_ros.core.vocabulary import OCC3D, Vocabulary
from occ_ros.io import rosbag as rio

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


# ---------------------------------------------------------------------------- GridSpec
def test_occ3d_grid_matches_the_official_layout():
    g = GridSpec.occ3d()
    assert g.shape == (200, 200, 16)
    assert g.num_voxels == 640_000
    # voxel [0,0,0] spans [-40,-39.6] x [-40,-39.6] x [-1,-0.6]; its centre:
    np.testing.assert_allclose(g.indices_to_centers(np.array([0, 0, 0])), [-39.8, -39.8, -0.8])
    np.testing.assert_allclose(g.indices_to_centers(np.array([199, 199, 15])), [39.8, 39.8, 5.2])
    # the ego origin lies in voxel (100, 100, 2): x=0 is the lower edge of index 100, z=0 in [-0.2, 0.2)
    idx, inside = g.points_to_indices(np.array([[0.0, 0.0, 0.0], [40.0, 0, 0], [-40.0, 0, 0], [0, 0, -1.01]]))
    assert idx[0].tolist() == [100, 100, 2]
    assert inside.tolist() == [True, False, True, False]  # half-open: the upper face is outside


def test_demo_grid_and_centres_roundtrip():
    g = GridSpec.demo()
    assert g.shape == (80, 80, 8)
    centers = g.voxel_centers()
    assert centers.shape == (80, 80, 8, 3)
    idx, inside = g.points_to_indices(centers.reshape(-1, 3))
    assert inside.all()
    np.testing.assert_array_equal(g.flat_index(idx), np.arange(g.num_voxels))


def test_grid_rejects_inconsistent_specs():
    with pytest.raises(ValueError, match="whole number"):
        GridSpec((0, 0, 0), (1, 1, 1), (0.3, 0.5, 0.5))
    with pytest.raises(ValueError, match="must exceed"):
        GridSpec((0, 0, 0), (0, 1, 1), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="shape"):
        GridSpec.from_dict({**GridSpec.occ3d().to_dict(), "shape": [200, 200, 15]})
    with pytest.raises(ValueError, match="unknown grid preset"):
        GridSpec.named("kitti")
    assert GridSpec.from_dict(GridSpec.demo().to_dict()) == GridSpec.demo()


# ---------------------------------------------------------------------------- Vocabulary
def test_occ3d_vocabulary_is_the_official_order():
    expected = [
        "others",
        "barrier",
        "bicycle",
        "bus",
        "car",
        "construction_vehicle",
        "motorcycle",
        "pedestrian",
        "traffic_cone",
        "trailer",
        "truck",
        "driveable_surface",
        "other_flat",
        "sidewalk",
        "terrain",
        "manmade",
        "vegetation",
        "free",
    ]
    assert OCC3D.names == expected
    assert OCC3D.free_index == 17 and OCC3D.num_semantic == 17
    assert OCC3D.index("car") == 4
    assert OCC3D.colors().shape == (18, 3)
    assert OCC3D.dynamic_mask()[[2, 3, 4, 5, 6, 7, 9, 10]].all()
    assert not OCC3D.dynamic_mask()[[0, 1, 8, 11, 12, 13, 14, 15, 16, 17]].any()
    assert all(p for p in OCC3D.prompts())


def test_vocabulary_yaml_roundtrip_and_errors(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(OCC3D.to_dict(), sort_keys=False))
    assert Vocabulary.from_yaml(path) == OCC3D
    path.write_text(
        "name: indoor\nclasses:\n  - {name: floor, color: [1, 2, 3], prompts: [floor]}\n"
        "  - {name: free, color: [255, 255, 255]}\n"
    )
    v = Vocabulary.load(path)
    assert v.names == ["floor", "free"] and v.free_index == 1
    path.write_text("classes:\n  - {name: floor, color: [1, 2, 3]}\n  - {name: free, color: [0, 0, 0]}\n")
    with pytest.raises(ValueError, match=r"\['floor'\] have no text prompts"):
        Vocabulary.load(path).prompts()
    path.write_text("classes:\n  - {name: floor, color: [1, 2, 3]}\n  - {name: wall, color: [1, 2, 3]}\n")
    with pytest.raises(ValueError, match=f"{path}.*last class must be 'free'"):
        Vocabulary.load(path)
    path.write_text("classes:\n  - {name: floor, colour: [1, 2, 3]}\n")
    with pytest.raises(ValueError, match="needs 'name' and 'color'"):
        Vocabulary.load(path)
    with pytest.raises(ValueError, match="cannot read vocabulary"):
        Vocabulary.load(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------- transforms
def test_quaternion_conversions_follow_ros_xyzw():
    # 90 deg about z: (x, y, z, w) = (0, 0, sin 45, cos 45); it maps +x to +y
    T = transform_from_quaternion([1.0, 2.0, 3.0], [0, 0, np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(transform_points(T, np.array([1.0, 0, 0])), [1.0, 3.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(quaternion_from_transform(T), [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    with pytest.raises(ValueError, match="not unit length"):
        transform_from_quaternion([0, 0, 0], [0, 0, 0, 2.0])
    rng = np.random.default_rng(0)
    for _ in range(5):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        T[:3, 3] = rng.normal(size=3)
        np.testing.assert_allclose(invert_transform(T), np.linalg.inv(T), atol=1e-12)
        assert is_rigid(T)
    assert not is_rigid(np.diag([1.0, 1.0, -1.0, 1.0]))  # a reflection
    assert not is_rigid(np.full((4, 4), np.nan))


# ---------------------------------------------------------------------------- CameraRig
def _front_camera() -> Camera:
    # Looking along ego +x from 1.5 m height: optical z = ego x, optical x = -ego y, optical y = -ego z.
    cam_from_ego = np.array([[0, -1, 0, 0], [0, 0, -1, 1.5], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    K = np.array([[100.0, 0, 49.5], [0, 100.0, 29.5], [0, 0, 1]])
    return Camera("CAM_FRONT", "cam_front_optical_frame", 100, 60, K, cam_from_ego)


def test_camera_projection_by_hand():
    cam = _front_camera()
    # A point 10 m ahead at camera height projects to the principal point.
    uv, depth = cam.project(np.array([[10.0, 0.0, 1.5], [10.0, 1.0, 1.5], [10.0, 0.0, 0.5], [-5.0, 0, 0]]))
    np.testing.assert_allclose(uv[0], [49.5, 29.5])
    np.testing.assert_allclose(uv[1], [39.5, 29.5])  # 1 m to the left -> 10 px to the left
    np.testing.assert_allclose(uv[2], [49.5, 39.5])  # 1 m lower -> 10 px down
    np.testing.assert_allclose(depth, [10, 10, 10, -5])
    np.testing.assert_allclose(cam.center_ego, [0, 0, 1.5])
    dirs, z = cam.pixel_rays()
    assert dirs.shape == (60, 100, 3)
    np.testing.assert_allclose(dirs[29, 49] / z[29, 49], [0.0, 0.0, 1.0], atol=0.01)


def test_camera_resize_keeps_pixel_centres_consistent():
    cam = _front_camera()
    small = cam.resized(50, 30)
    pts = np.array([[10.0, 2.0, 0.3], [7.0, -1.0, 2.0]])
    uv_big, _ = cam.project(pts)
    uv_small, _ = small.project(pts)
    # a pixel centre u in the big image is at (u + 0.5) / 2 - 0.5 in the half-size image
    np.testing.assert_allclose(uv_small, (uv_big + 0.5) / 2 - 0.5)


def test_camera_rejects_bad_calibration():
    cam = _front_camera()
    with pytest.raises(ValueError, match="CAM_FRONT.*K"):
        Camera("CAM_FRONT", "f", 100, 60, np.full((3, 3), np.nan), cam.cam_from_ego)
    with pytest.raises(ValueError, match="not a rigid"):
        Camera("CAM_FRONT", "f", 100, 60, cam.K, np.diag([2.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="unique"):
        CameraRig((cam, cam))


def test_rig_yaml_roundtrip(tmp_path):
    rig = CameraRig.nuscenes()
    assert rig.names == list(NUSCENES_CAMERAS)
    (tmp_path / "rig.yaml").write_text(yaml.safe_dump(rig.to_dict(), sort_keys=False))
    back = CameraRig.from_file(tmp_path / "rig.yaml")
    assert back == rig
    assert back["CAM_BACK"].frame_id == "cam_back_optical_frame"


def test_rig_from_ros_camera_info_and_tf():
    cam = _front_camera()
    info = rio.camera_info_msg(cam, 123)
    tf = rio.transform_stamped(cam.ego_from_cam, 123, "base_link", cam.frame_id)
    rig = CameraRig.from_camera_infos([cam.name], [info], [rio.matrix_from_transform(tf)])
    np.testing.assert_allclose(rig[0].K, cam.K)
    np.testing.assert_allclose(rig[0].cam_from_ego, cam.cam_from_ego, atol=1e-12)
    assert rig[0].frame_id == "cam_front_optical_frame"


# ---------------------------------------------------------------------------- the real nuScenes keyframe
nuscenes = pytest.mark.skipif(not (FIXTURES / "nuscenes_sample").is_dir(), reason="../shared/fixtures not present")


@nuscenes
def test_shipped_nuscenes_rig_equals_the_fixture_calibration():
    fixture = CameraRig.from_nuscenes_calib(FIXTURES / "nuscenes_sample" / "calib.json")
    shipped = CameraRig.nuscenes()
    for a, b in zip(fixture, shipped, strict=False):
        assert a.name == b.name and (a.width, a.height) == (b.width, b.height) == (1600, 900)
        np.testing.assert_allclose(a.K, b.K, atol=1e-5)
        np.testing.assert_allclose(a.cam_from_ego, b.cam_from_ego, atol=1e-8)


@nuscenes
def test_real_lidar_projects_into_the_six_real_images():
    root = FIXTURES / "nuscenes_sample"
    calib = json.loads((root / "calib.json").read_text())
    rig = CameraRig.from_nuscenes_calib(root / "calib.json")
    lidar2ego = np.array(calib["lidar"]["lidar2ego"])
    points = np.fromfile(root / calib["lidar"]["file"], dtype=np.float32).reshape(-1, 5)[:, :3]
    assert points.shape[0] == 34_688
    ego = transform_points(lidar2ego, points)
    speeds = []
    for cam in rig:
        uv, depth = cam.project(ego)
        visible = (depth > 1.0) & cam.in_image(uv)
        assert 2_800 <= visible.sum() <= 5_000, (cam.name, visible.sum())
        # The fixture's lidar2cam includes the ego motion between the two exposures:
        # lidar2cam = cam_from_ego @ [ego(t_cam) <- ego(t_lidar)] @ lidar2ego. Recover that motion.
        lidar2cam = np.array(calib["cameras"][cam.name]["lidar2cam"])
        motion = invert_transform(cam.cam_from_ego) @ lidar2cam @ invert_transform(lidar2ego)
        assert is_rigid(motion)
        dt = calib["cameras"][cam.name]["timestamp_s"] - calib["timestamp_s"]
        assert Rotation.from_matrix(motion[:3, :3]).magnitude() < np.deg2rad(0.2)
        if abs(dt) > 5e-3:
            speeds.append(-motion[:3, 3] / dt)  # the ego moved forward by v * dt between the exposures
        else:
            assert np.linalg.norm(motion[:3, 3]) < 0.05
    # One constant velocity explains every camera: about 9.3 m/s forward, same within 5 cm/s.
    speeds = np.array(speeds)
    assert len(speeds) >= 4
    assert 5.0 < np.median(speeds[:, 0]) < 15.0
    assert np.abs(speeds - np.median(speeds, axis=0)).max() < 0.35
