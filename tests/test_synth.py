"""The synthetic world: rendering and ground truth agree geometrically, masks, determinism, bag, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import CameraRig
from occ_ros.core.transforms import transform_points
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets.synth import decode_depth, load_meta
from occ_tools.cli import main as occ
from occ_training.synth.ground_truth import frame_ground_truth
from occ_training.synth.render import NO_SURFACE, freeze, render_camera
from occ_training.synth.sequence import generate, get_preset
from occ_training.synth.shapes import box, ground_rect
from occ_training.synth.textures import Material
from occ_training.synth.world import C, SceneObject, custom_world

FREE = OCC3D.free_index


@pytest.fixture(scope="module")
def sequence(synth_world: Path) -> Path:
    return synth_world  # 3 frames, seed 3, demo preset (tests/conftest.py)


def _backprojection_agreement(
    rig: CameraRig, depth: dict[str, np.ndarray], sem: dict[str, np.ndarray], semantics: np.ndarray, grid: GridSpec
):
    """Lift every pixel with depth into the ego frame; return (in occupied voxel, in voxel of its class) rates."""
    occupied_hits = class_hits = total = 0
    for cam in rig:
        d, s = depth[cam.name], sem[cam.name]
        dirs, z_per_unit = cam.pixel_rays()
        valid = d > 0
        pts = transform_points(cam.ego_from_cam, dirs[valid] * (d[valid] / z_per_unit[valid])[:, None])
        idx, inside = grid.points_to_indices(pts)
        labels = semantics[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
        total += int(inside.sum())
        occupied_hits += int((labels != FREE).sum())
        class_hits += int((labels == s[valid][inside]).sum())
    return occupied_hits / total, class_hits / total, total


def _aligned_world():
    """A scene whose class boundaries lie on demo-grid voxel faces (0.8 m lattice from -32, z from -1).

    Vertical faces sit 1 cm inside their object's voxels, so that a back-projected point cannot fall on
    the wrong side of a voxel face by rounding.
    """
    e = 0.01
    ground = [
        ground_rect(-32, 32, -4.0 - e, 4.0 + e, 0.0, C["driveable_surface"], Material.ASPHALT),
        box((64, 2.4 - 2 * e, 0.15), (0, 5.2, 0.075), C["sidewalk"], Material.SIDEWALK, bottom_in_gt=False),
        box((64, 2.4 - 2 * e, 0.15), (0, -5.2, 0.075), C["sidewalk"], Material.SIDEWALK, bottom_in_gt=False),
        ground_rect(-32, 8.0 + e, 6.4 - e, 32, 0.0, C["terrain"], Material.GRASS),
        ground_rect(16.0 - e, 32, 6.4 - e, 32, 0.0, C["terrain"], Material.GRASS),
        ground_rect(8.0 + e, 16.0 - e, 16.0 - e, 32, 0.0, C["terrain"], Material.GRASS),
        ground_rect(8.0 + e, 16.0 - e, 6.4 - e, 8.0 + e, 0.0, C["terrain"], Material.GRASS),
        ground_rect(-32, 32, -32, -6.4 + e, 0.0, C["other_flat"], Material.PARKING),
    ]
    objects = [SceneObject(s) for s in ground]
    # a building on [8, 16] x [8, 16], a car floating in the voxel layers [0.6, 2.2], a wall behind the ego
    objects.append(
        SceneObject(box((8 - 2 * e, 8 - 2 * e, 9), (12, 12, 4.5), C["manmade"], Material.FACADE, bottom_in_gt=False))
    )
    objects.append(
        SceneObject(box((4.0 - 2 * e, 1.6 - 2 * e, 1.6 - 2 * e), (8.4, -1.6, 1.4), C["car"], Material.PAINT))
    )
    objects.append(
        SceneObject(box((0.8 - 2 * e, 8.0, 2.2 - 2 * e), (-12.4, 0.0, 1.7), C["manmade"], Material.CONCRETE))
    )
    return custom_world(objects)


def test_rendered_depth_and_classes_agree_with_gt_voxels_in_an_aligned_world():
    preset = get_preset("demo")
    rig, grid = preset.rig(), preset.grid_spec()
    world = _aligned_world()
    scene = freeze(world, 0.0)
    views = {c.name: render_camera(scene, c, world.ego.pose(0.0)) for c in rig}
    gt = frame_ground_truth(world, scene, 0.0, grid, rig, FREE)
    occ_rate, class_rate, n = _backprojection_agreement(
        rig, {k: v.depth for k, v in views.items()}, {k: v.semantics for k, v in views.items()}, gt.semantics, grid
    )
    assert n > 50_000
    assert occ_rate >= 0.999
    assert class_rate >= 0.99, class_rate


def test_rendered_depth_and_classes_agree_with_gt_in_the_urban_world(sequence):
    meta = load_meta(sequence)
    rig = CameraRig.from_dict(meta["rig"])
    grid = GridSpec.from_dict(meta["grid"])
    for frame in meta["frames"]:
        name = frame["name"]
        depth = {
            c.name: decode_depth(
                cv2.imread(str(sequence / "depth" / meta["scene"] / name / f"{c.name}.png"), cv2.IMREAD_UNCHANGED)
            )
            for c in rig
        }
        sem = {
            c.name: cv2.imread(
                str(sequence / "semantics" / meta["scene"] / name / f"{c.name}.png"), cv2.IMREAD_UNCHANGED
            )
            for c in rig
        }
        gt = np.load(sequence / "gts" / meta["scene"] / name / "labels.npz")
        occ_rate, class_rate, _ = _backprojection_agreement(rig, depth, sem, gt["semantics"], grid)
        # Geometry is exact; classes differ only where 0.8 m voxels straddle two surfaces (kerbs, wall feet).
        assert occ_rate >= 0.99, occ_rate
        assert class_rate >= 0.88, class_rate


def test_camera_mask_stops_at_walls():
    preset = get_preset("demo")
    rig, grid = preset.rig(), preset.grid_spec()
    wall_x = 10.6  # a 0.4 m thick wall across the whole grid, taller than the grid, inside the voxels [10.4, 11.2)
    objects = [
        SceneObject(ground_rect(-40, 40, -40, 40, 0.0, C["driveable_surface"], Material.ASPHALT)),
        SceneObject(box((0.4, 80, 6.0), (wall_x + 0.2, 0, 3.0), C["manmade"], Material.CONCRETE)),
    ]
    world = custom_world(objects)
    scene = freeze(world, 0.0)
    gt = frame_ground_truth(world, scene, 0.0, grid, rig, FREE)
    wall_i = int((wall_x - grid.range_min[0]) / grid.voxel_size[0])  # 53
    occupied = gt.semantics != FREE
    assert occupied[wall_i, 40, 1:6].all()  # the wall is in the GT
    # Nothing behind the wall is visible.
    assert gt.mask_camera[wall_i + 1 :].sum() == 0
    # The wall's near face above the road layer and the road in front of it are visible (the road voxels
    # hide the wall's foot, which shares their layer); nothing under the road is visible.
    assert gt.mask_camera[wall_i, 38:42, 2:6].all()
    x5 = int((5.0 - grid.range_min[0]) / grid.voxel_size[0])
    assert gt.mask_camera[x5, 40, 1] and gt.semantics[x5, 40, 1] == C["driveable_surface"]
    assert gt.mask_camera[:, :, 0].sum() == 0
    # LiDAR: the beams also stop at the wall
    assert gt.mask_lidar[wall_i + 1 :].sum() == 0 and gt.mask_lidar[wall_i, 40, 2]


def test_urban_sequence_has_many_classes_and_valid_files(sequence):
    meta = load_meta(sequence)
    assert len(meta["classes_present"]) >= 12, meta["classes_present"]
    assert len(meta["frames"]) == 3
    stamps = [f["stamp_ns"] for f in meta["frames"]]
    assert np.allclose(np.diff(stamps), 1e9 / 12, atol=1)
    poses = np.array([f["odom_from_base_link"] for f in meta["frames"]])
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all((step > 6.0 / 12) & (step < 9.5 / 12))  # the ego drives at 6-9 m/s
    for frame in meta["frames"]:
        labels = np.load(sequence / "gts" / meta["scene"] / frame["name"] / "labels.npz")
        assert sorted(labels.files) == ["grid", "mask_camera", "mask_lidar", "semantics"]
        assert json.loads(str(labels["grid"])) == meta["grid"]  # the label file carries its grid
        for key in ("mask_camera", "mask_lidar", "semantics"):
            assert labels[key].dtype == np.uint8 and labels[key].shape == (80, 80, 8)
        assert labels["semantics"].max() <= FREE
        assert set(np.unique(labels["mask_camera"])) <= {0, 1}
        colours = []
        for cam in meta["rig"]["cameras"]:
            rgb = cv2.imread(str(sequence / "images" / meta["scene"] / frame["name"] / f"{cam['name']}.png"))
            assert rgb.shape == (112, 200, 3)
            colours.append(rgb.reshape(-1, 3))
            sem = cv2.imread(
                str(sequence / "semantics" / meta["scene"] / frame["name"] / f"{cam['name']}.png"), cv2.IMREAD_UNCHANGED
            )
            assert set(np.unique(sem)) <= set(range(17)) | {NO_SURFACE}
        colours = np.concatenate(colours)
        assert colours.std() > 20 and len(np.unique(colours, axis=0)) > 2000  # textured and shaded, not flat


def test_same_seed_gives_byte_identical_ground_truth(sequence, tmp_path):
    again = generate(tmp_path / "again", frames=2, seed=3, preset="demo", progress=False)
    meta = load_meta(sequence)
    for frame in load_meta(again)["frames"]:
        rel = Path("gts") / meta["scene"] / frame["name"] / "labels.npz"
        assert (again / rel).read_bytes() == (sequence / rel).read_bytes()
    other = generate(tmp_path / "other", frames=1, seed=4, preset="demo", progress=False)
    a = np.load(sequence / "gts" / meta["scene"] / "000000" / "labels.npz")["semantics"]
    b = np.load(other / "gts" / "synth_0004" / "000000" / "labels.npz")["semantics"]
    assert not np.array_equal(a, b)


def test_bag_decodes_with_an_independent_mcap_reader(sequence):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    bag_files = list((sequence / "bag").glob("*.mcap"))
    assert len(bag_files) == 1 and (sequence / "bag" / "metadata.yaml").is_file()
    counts: dict[str, int] = {}
    types: dict[str, str] = {}
    first_image = None
    tf_translations: list[list[float]] = []
    with open(bag_files[0], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            types[channel.topic] = schema.name
            if hasattr(decoded, "header"):  # TFMessage has no header; its transforms are checked below
                assert message.log_time == decoded.header.stamp.sec * 10**9 + decoded.header.stamp.nanosec
            if channel.topic == "/cam_front/image_raw" and first_image is None:
                first_image = np.frombuffer(bytes(decoded.data), np.uint8).reshape(decoded.height, decoded.width, 3)
                assert decoded.encoding == "rgb8" and decoded.header.frame_id == "cam_front_optical_frame"
            if channel.topic == "/tf":
                (t,) = decoded.transforms
                assert (t.header.frame_id, t.child_frame_id) == ("odom", "base_link")
                tf_translations.append([t.transform.translation.x, t.transform.translation.y])
            if channel.topic == "/tf_static":
                assert len(decoded.transforms) == 6
                assert {t.child_frame_id for t in decoded.transforms} == {
                    f"{c.lower()}_optical_frame"
                    for c in [
                        "CAM_FRONT",
                        "CAM_FRONT_RIGHT",
                        "CAM_FRONT_LEFT",
                        "CAM_BACK",
                        "CAM_BACK_LEFT",
                        "CAM_BACK_RIGHT",
                    ]
                }
    meta = load_meta(sequence)
    for cam in ["cam_front", "cam_front_right", "cam_front_left", "cam_back", "cam_back_left", "cam_back_right"]:
        assert types[f"/{cam}/image_raw"] == "sensor_msgs/msg/Image" and counts[f"/{cam}/image_raw"] == 3
        assert types[f"/{cam}/camera_info"] == "sensor_msgs/msg/CameraInfo" and counts[f"/{cam}/camera_info"] == 3
    assert types["/tf"] == types["/tf_static"] == "tf2_msgs/msg/TFMessage"
    assert counts["/tf"] == 3 and counts["/tf_static"] == 1
    png = cv2.cvtColor(
        cv2.imread(str(sequence / "images" / meta["scene"] / "000000" / "CAM_FRONT.png")), cv2.COLOR_BGR2RGB
    )
    np.testing.assert_array_equal(first_image, png)
    np.testing.assert_allclose(tf_translations, [np.array(f["odom_from_base_link"])[:2, 3] for f in meta["frames"]])


# ---------------------------------------------------------------------------- bad input
def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_cli_rejects_bad_arguments_cleanly(tmp_path, capsys):
    assert occ(["synth", "--out", str(tmp_path / "a"), "--preset", "kitti", "--quiet"]) == 1
    assert "unknown preset 'kitti'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        occ(["synth", "--out", str(tmp_path / "b"), "--frames", "0"])
    assert exc.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0 and not Path("/proc/self").exists(), reason="needs /proc")
def test_cli_reports_unwritable_output(tmp_path, capsys):
    assert occ(["synth", "--out", "/proc/occ_synth_out", "--frames", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot write to /proc" in err
    # an existing output is kept unless --force
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert occ(["synth", "--out", str(tmp_path / "taken"), "--frames", "1", "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_a_crash_mid_run_leaves_nothing_that_looks_complete(tmp_path):
    def crash(index: int, seconds: float) -> None:
        if index == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        generate(tmp_path / "seq", frames=3, seed=0, progress=False, on_frame=crash)
    assert _leftovers(tmp_path) == []
    # with --force, a failed run leaves the previous complete output in place
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "meta.json").write_text(json.dumps({"old": True}))
    with pytest.raises(RuntimeError):
        generate(tmp_path / "seq", frames=3, seed=0, progress=False, overwrite=True, on_frame=crash)
    assert _leftovers(tmp_path) == ["seq"] and json.loads((tmp_path / "seq" / "meta.json").read_text()) == {"old": True}
