"""NuScenesReader on a tiny nuScenes tree in the official table format, built from the real keyframe.

The tree (in tmp_path) holds scene-0061 with three keyframes: the real one (sample
ca9a282c9e77460f8360f564131a8af5, its six JPEGs, LiDAR sweep, calibration and ego pose from
``../shared/fixtures/nuscenes_sample/calib.json``) and two more with the ego moved forward, plus a
one-sample second scene. Per-camera ego poses are recovered from the fixture's ``lidar2cam`` (which
includes the ego motion between exposures). The real Occ3D ``labels.npz`` is the ground truth.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import NUSCENES_CAMERAS, CameraRig
from occ_ros.core.transforms import invert_transform, make_transform, transform_points
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets.nuscenes import NuScenesFormatError, NuScenesReader
from occ_ros.datasets.sample import LabelFileError

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
NUSC = FIXTURES / "nuscenes_sample"
OCC3D_GT = FIXTURES / "occ3d_sample" / "labels.npz"
REAL_TOKEN = "ca9a282c9e77460f8360f564131a8af5"
VERSION = "v1.0-mini"

pytestmark = pytest.mark.skipif(
    not (NUSC / "calib.json").is_file() or not OCC3D_GT.is_file(),
    reason="../shared/fixtures (nuscenes_sample, occ3d_sample) not present",
)


def _token(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def _wxyz(matrix: Any) -> list[float]:
    """nuScenes quaternion (w, x, y, z) of a 4x4's rotation (projected onto a rotation)."""
    x, y, z, w = Rotation.from_matrix(np.asarray(matrix, dtype=np.float64)[:3, :3]).as_quat()
    return [float(w), float(x), float(y), float(z)]


def _matrix_from_wxyz(translation: list[float], q: list[float]) -> np.ndarray:
    """Hamilton quaternion (w, x, y, z) -> 4x4, written out independently of the reader and scipy."""
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    return make_transform(rot, translation)


def _stamp_us(filename: str) -> int:
    return int(re.search(r"__(\d{16})\.", filename).group(1))  # type: ignore[union-attr]


def build_nuscenes(root: Path) -> dict[str, Any]:
    """Write the tiny nuScenes tree under ``root``; returns what the tests compare against."""
    calib = json.loads((NUSC / "calib.json").read_text())
    ego2global = np.array(calib["ego2global"])
    lidar2ego = np.array(calib["lidar"]["lidar2ego"])
    lidar_file = calib["lidar"]["file"]
    lidar_us = _stamp_us(lidar_file)
    # ego(t_cam) <- ego(t_lidar), from the fixture's lidar2cam (see tests/test_core_types.py).
    motion = {
        name: np.array(c["cam2ego"]) @ np.array(c["lidar2cam"]) @ invert_transform(lidar2ego)
        for name, c in calib["cameras"].items()
    }

    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in ("scene", "sample", "sample_data")}
    tables["log"] = [
        {
            "token": _token("log"),
            "logfile": "n015-2018-07-24-11-22-45+0800",
            "vehicle": "n015",
            "date_captured": "2018-07-24",
            "location": "singapore-onenorth",
        }
    ]
    tables["ego_pose"] = []
    channels = [*NUSCENES_CAMERAS, "LIDAR_TOP", "RADAR_FRONT"]
    tables["sensor"] = [
        {"token": _token("sensor", ch), "channel": ch, "modality": ch.split("_")[0].lower().replace("cam", "camera")}
        for ch in channels
    ]
    tables["calibrated_sensor"] = [
        {
            "token": _token("calib", name),
            "sensor_token": _token("sensor", name),
            "translation": np.array(c["cam2ego"])[:3, 3].tolist(),
            "rotation": _wxyz(c["cam2ego"]),
            "camera_intrinsic": c["cam2img"],
        }
        for name, c in calib["cameras"].items()
    ]
    tables["calibrated_sensor"] += [
        {
            "token": _token("calib", "LIDAR_TOP"),
            "sensor_token": _token("sensor", "LIDAR_TOP"),
            "translation": lidar2ego[:3, 3].tolist(),
            "rotation": _wxyz(lidar2ego),
            "camera_intrinsic": [],
        },
        {
            "token": _token("calib", "RADAR_FRONT"),
            "sensor_token": _token("sensor", "RADAR_FRONT"),
            "translation": [3.4, 0.0, 0.5],
            "rotation": [1.0, 0.0, 0.0, 0.0],
            "camera_intrinsic": [],
        },
    ]

    # scene-0061: the real keyframe, then two more 0.5 s apart with the ego 4.65 m further ahead.
    # A second (made-up) scene reuses the real data 20 s later.
    scene_samples = {
        "scene-0061": [REAL_TOKEN, _token("sample", 1), _token("sample", 2)],
        "scene-0103": [_token("sample", 3)],
    }
    world_from_ego: dict[str, np.ndarray] = {}
    offsets: dict[str, int] = {}
    for s_i, (scene_name, tokens) in enumerate(scene_samples.items()):
        scene_token = _token("scene", scene_name)
        tables["scene"].append(
            {
                "token": scene_token,
                "log_token": _token("log"),
                "nbr_samples": len(tokens),
                "first_sample_token": tokens[0],
                "last_sample_token": tokens[-1],
                "name": scene_name,
                "description": "tiny test scene",
            }
        )
        for k, tok in enumerate(tokens):
            step = k + 40 * s_i
            offsets[tok] = step * 500_000
            world_from_ego[tok] = ego2global @ make_transform(np.eye(3), [4.65 * step, 0.0, 0.0])
            tables["sample"].append(
                {
                    "token": tok,
                    "timestamp": lidar_us + offsets[tok],
                    "prev": tokens[k - 1] if k else "",
                    "next": tokens[k + 1] if k + 1 < len(tokens) else "",
                    "scene_token": scene_token,
                }
            )
            gt_dir = root / "gts" / scene_name / tok
            gt_dir.mkdir(parents=True)
            shutil.copyfile(OCC3D_GT, gt_dir / "labels.npz")

    all_tokens = [t for tokens in scene_samples.values() for t in tokens]
    files = {name: c["file"] for name, c in calib["cameras"].items()} | {"LIDAR_TOP": lidar_file}
    for ch in [*NUSCENES_CAMERAS, "LIDAR_TOP"]:
        sd_tokens = [_token("sd", ch, t) for t in all_tokens]
        for k, tok in enumerate(all_tokens):
            stamp = _stamp_us(files[ch]) + offsets[tok]
            folder = "LIDAR_TOP" if ch == "LIDAR_TOP" else ch
            name = files[ch] if tok == REAL_TOKEN else files[ch].replace(str(_stamp_us(files[ch])), str(stamp))
            rel = f"samples/{folder}/{name}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to(NUSC / files[ch])
            pose = world_from_ego[tok] if ch == "LIDAR_TOP" else world_from_ego[tok] @ invert_transform(motion[ch])
            tables["ego_pose"].append(
                {
                    "token": sd_tokens[k],
                    "timestamp": stamp,
                    "rotation": _wxyz(pose),
                    "translation": pose[:3, 3].tolist(),
                }
            )
            is_cam = ch != "LIDAR_TOP"
            tables["sample_data"].append(
                {
                    "token": sd_tokens[k],
                    "sample_token": tok,
                    "ego_pose_token": sd_tokens[k],
                    "calibrated_sensor_token": _token("calib", ch),
                    "timestamp": stamp,
                    "fileformat": "jpg" if is_cam else "pcd",
                    "is_key_frame": True,
                    "height": 900 if is_cam else 0,
                    "width": 1600 if is_cam else 0,
                    "filename": rel,
                    "prev": sd_tokens[k - 1] if k else "",
                    "next": sd_tokens[k + 1] if k + 1 < len(sd_tokens) else "",
                }
            )
    # Rows the reader must skip: CAM_FRONT sweeps (not key frames) and a radar key frame per sample.
    for tok in all_tokens:
        for ch, key in (("CAM_FRONT", False), ("RADAR_FRONT", True)):
            sd = _token("sweep", ch, tok)
            tables["ego_pose"].append({"token": sd, "timestamp": 0, "rotation": [1, 0, 0, 0], "translation": [0, 0, 0]})
            tables["sample_data"].append(
                {
                    "token": sd,
                    "sample_token": tok,
                    "ego_pose_token": sd,
                    "calibrated_sensor_token": _token("calib", ch),
                    "timestamp": lidar_us + offsets[tok] + 40_000,
                    "fileformat": "jpg" if key is False else "pcd",
                    "is_key_frame": key,
                    "height": 900 if ch == "CAM_FRONT" else 0,
                    "width": 1600 if ch == "CAM_FRONT" else 0,
                    "filename": f"sweeps/{ch}/{sd}.jpg",
                    "prev": "",
                    "next": "",
                }
            )

    rng = random.Random(7)
    (root / VERSION).mkdir()
    for name, rows in tables.items():
        rng.shuffle(rows)
        (root / VERSION / f"{name}.json").write_text(json.dumps(rows, indent=0))
    assert [r["token"] for r in tables["sample"]] != all_tokens  # the reader must follow the next links
    return {
        "calib": calib,
        "tokens": scene_samples,
        "world_from_ego": world_from_ego,
        "motion": motion,
        "files": files,
    }


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    root = tmp_path / "nuscenes"
    root.mkdir()
    return root, build_nuscenes(root)


def _remove_rows(path: Path, keep) -> None:  # type: ignore[no-untyped-def]
    rows = json.loads(path.read_text())
    path.write_text(json.dumps([r for r in rows if keep(r)]))


# ---------------------------------------------------------------------------- samples and geometry
def test_samples_follow_scene_and_next_links(tree):
    root, info = tree
    reader = NuScenesReader(root)
    assert reader.kind == "nuscenes" and len(reader) == 4
    expected = [t for tokens in info["tokens"].values() for t in tokens]
    assert reader.keys() == [f"{s}/{t}" for s, tokens in info["tokens"].items() for t in tokens]
    assert reader.scenes() == {"scene-0061": [0, 1, 2], "scene-0103": [3]}
    metas = [reader.load(i, images=False) for i in range(len(reader))]
    assert [m.frame for m in metas] == expected
    assert [(m.scene, m.index) for m in metas] == [
        ("scene-0061", 0),
        ("scene-0061", 1),
        ("scene-0061", 2),
        ("scene-0103", 0),
    ]
    assert all(m.images == {} and m.dataset == "nuscenes" for m in metas)
    assert np.all(np.diff([m.stamp_ns for m in metas[:3]]) == 500_000_000)
    poses = reader.poses()
    assert poses["scene-0061"].shape == (3, 4, 4)
    for m in metas:  # translations are ~1000 m in the global frame
        np.testing.assert_allclose(m.world_from_ego, info["world_from_ego"][m.frame], rtol=0, atol=1e-9 * 2000)
    # The ego moves 4.65 m forward per step, in the ego frame.
    np.testing.assert_allclose(
        (invert_transform(poses["scene-0061"][0]) @ poses["scene-0061"][2])[:3, 3], [9.3, 0, 0], atol=1e-6
    )
    # Scene selection keeps the requested order.
    picked = NuScenesReader(root, scenes=["scene-0103", "scene-0061"])
    assert [picked.load(i, images=False).frame for i in range(4)] == expected[3:] + expected[:3]
    with pytest.raises(ValueError, match=r"scene-9999.*scene\.json"):
        NuScenesReader(root, scenes=["scene-9999"])


def test_real_keyframe_matches_the_fixture(tree):
    root, info = tree
    calib = info["calib"]
    sample = NuScenesReader(root)[0]
    assert sample.frame == REAL_TOKEN and sample.key == f"scene-0061/{REAL_TOKEN}"
    assert sample.grid == GridSpec.occ3d() and sample.vocabulary == OCC3D
    # Rig: names in nuScenes order, optical frame ids, K exactly cam2img, cam_from_ego = inv(cam2ego).
    assert sample.rig.names == list(NUSCENES_CAMERAS)
    fixture_rig = CameraRig.from_nuscenes_calib(NUSC / "calib.json")
    cal_rows = {r["token"]: r for r in json.loads((root / VERSION / "calibrated_sensor.json").read_text())}
    for cam, ref in zip(sample.rig, fixture_rig, strict=True):
        c = calib["cameras"][cam.name]
        assert (cam.name, cam.frame_id, cam.width, cam.height) == (ref.name, ref.frame_id, ref.width, ref.height)
        assert cam.frame_id == f"{cam.name.lower()}_optical_frame" and (cam.width, cam.height) == (1600, 900)
        np.testing.assert_allclose(cam.K, np.array(c["cam2img"]), rtol=0, atol=1e-9)
        np.testing.assert_array_equal(cam.K, ref.K)
        # calib.json's matrices were rounded to float32 (rotation orthonormal to ~5e-8 only), so the
        # quaternion tables reproduce them to ~1e-7; the reader itself is exact to the quaternion.
        np.testing.assert_allclose(cam.cam_from_ego, invert_transform(np.array(c["cam2ego"])), rtol=0, atol=2e-7)
        np.testing.assert_allclose(cam.cam_from_ego, ref.cam_from_ego, rtol=0, atol=2e-7)
        row = cal_rows[_token("calib", cam.name)]
        exact = np.linalg.inv(_matrix_from_wxyz(row["translation"], row["rotation"]))
        np.testing.assert_allclose(cam.cam_from_ego, exact, rtol=0, atol=1e-9)
    # Images: RGB, 900x1600, equal to the decoded JPEG with channels swapped.
    for name in NUSCENES_CAMERAS:
        img = sample.images[name]
        assert img.shape == (900, 1600, 3) and img.dtype == np.uint8
        bgr = cv2.imread(str(NUSC / info["files"][name]), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(img, bgr[..., ::-1])
        assert sample.image_stamps_ns[name] == _stamp_us(info["files"][name]) * 1000
        assert sample.image_stamps_ns[name] == round(calib["cameras"][name]["timestamp_s"] * 1e6) * 1000
    assert list(sample.images) == sample.rig.names
    # Time and pose: the sample (= LiDAR) time, the ego pose at the LiDAR time.
    assert sample.stamp_ns == round(calib["timestamp_s"] * 1e6) * 1000 == sample.extras["lidar_stamp_ns"]
    np.testing.assert_allclose(sample.world_from_ego, np.array(calib["ego2global"]), rtol=0, atol=2e-7)
    # Extras.
    lidar2ego = np.array(calib["lidar"]["lidar2ego"])
    np.testing.assert_array_equal(sample.extras["lidar_ego_position"], lidar2ego[:3, 3])
    np.testing.assert_allclose(sample.extras["ego_from_lidar"], lidar2ego, rtol=0, atol=2e-7)
    assert sample.extras["lidar_path"] == root / "samples" / "LIDAR_TOP" / calib["lidar"]["file"]
    assert sample.extras["location"] == "singapore-onenorth"
    # Per-camera ego poses reproduce the fixture's lidar2cam (which includes the motion between exposures).
    cam_poses = sample.extras["camera_world_from_ego"]
    assert list(cam_poses) == list(NUSCENES_CAMERAS)
    for cam in sample.rig:
        lidar2cam = (
            cam.cam_from_ego
            @ invert_transform(cam_poses[cam.name])
            @ sample.world_from_ego
            @ sample.extras["ego_from_lidar"]
        )
        np.testing.assert_allclose(lidar2cam, np.array(calib["cameras"][cam.name]["lidar2cam"]), rtol=0, atol=2e-5)
    # Ground truth: the official Occ3D file, read with both masks.
    with np.load(OCC3D_GT) as npz:
        for key in ("semantics", "mask_camera", "mask_lidar"):
            np.testing.assert_array_equal(sample.gt.arrays()[key], npz[key])
    assert sample.gt.shape == (200, 200, 16)


def test_real_lidar_lands_in_the_real_images(tree):
    """LiDAR -> ego with the reader's calibration, projected with the reader's rig: thousands of hits."""
    root, _ = tree
    sample = NuScenesReader(root).load(0, images=False)
    points = np.fromfile(sample.extras["lidar_path"], dtype=np.float32).reshape(-1, 5)[:, :3]
    assert points.shape[0] == 34_688
    ego = transform_points(sample.extras["ego_from_lidar"], points)
    world = transform_points(sample.world_from_ego, ego)
    for cam in sample.rig:
        cam_pose = sample.extras["camera_world_from_ego"][cam.name]
        # Approximate (ego at the LiDAR time) and exact (ego at this camera's exposure) geometry.
        for pts in (ego, transform_points(invert_transform(cam_pose), world)):
            uv, depth = cam.project(pts)
            visible = (depth > 1.0) & cam.in_image(uv)
            assert 2_800 <= visible.sum() <= 5_000, (cam.name, visible.sum())
        # The camera's ego pose is the LiDAR-time pose moved by the car's ~9.3 m/s forward motion.
        dt = (sample.image_stamps_ns[cam.name] - sample.stamp_ns) * 1e-9
        shift = (invert_transform(sample.world_from_ego) @ cam_pose)[:3, 3]
        assert np.linalg.norm(shift) < 0.5 and abs(shift[1]) < 0.05
        if abs(dt) > 5e-3:
            assert 5.0 < shift[0] / dt < 15.0, (cam.name, shift, dt)


# ---------------------------------------------------------------------------- options and errors
def test_missing_ground_truth_file(tree):
    root, info = tree
    token = info["tokens"]["scene-0061"][1]
    gt = root / "gts" / "scene-0061" / token / "labels.npz"
    gt.unlink()
    reader = NuScenesReader(root)
    assert reader.load(0, images=False).gt is not None
    with pytest.raises(LabelFileError, match=re.escape(str(gt))):
        reader.load(1, images=False)
    assert NuScenesReader(root, require_gt=False).load(1, images=False).gt is None
    assert NuScenesReader(root, gt_root=False).load(0, images=False).gt is None
    shutil.rmtree(root / "gts")
    assert NuScenesReader(root).load(0, images=False).gt is None  # no gts folder: no ground truth
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "elsewhere"))):
        NuScenesReader(root, gt_root=root / "elsewhere")


def test_missing_table_and_bad_version(tree):
    root, _ = tree
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "v1.0-trainval")) + r".*v1\.0-mini"):
        NuScenesReader(root, version="v1.0-trainval")
    (root / VERSION / "log.json").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / VERSION / "log.json"))):
        NuScenesReader(root)
    (root / VERSION / "log.json").write_text("{not json")
    with pytest.raises(NuScenesFormatError, match=re.escape(str(root / VERSION / "log.json"))):
        NuScenesReader(root)


def test_missing_image(tree):
    root, info = tree
    reader = NuScenesReader(root)
    path = reader.root / "samples" / "CAM_BACK"
    target = next(p for p in path.iterdir() if str(_stamp_us(info["files"]["CAM_BACK"]) + 1_000_000) in p.name)
    target.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(target))):
        reader.load(2)
    assert reader.load(2, images=False).frame == info["tokens"]["scene-0061"][2]


def test_sample_without_a_camera(tree):
    root, info = tree
    token = info["tokens"]["scene-0061"][1]
    table = root / VERSION / "sample_data.json"
    _remove_rows(table, lambda r: r["token"] != _token("sd", "CAM_BACK", token))
    with pytest.raises(NuScenesFormatError, match=re.escape(str(table)) + f".*{token}.*CAM_BACK"):
        NuScenesReader(root)
    # Without CAM_BACK in the rig the same tree reads fine, with the requested camera order.
    reader = NuScenesReader(root, cameras=("CAM_BACK_LEFT", "CAM_FRONT"))
    s = reader.load(1)
    assert s.rig.names == ["CAM_BACK_LEFT", "CAM_FRONT"] and list(s.images) == ["CAM_BACK_LEFT", "CAM_FRONT"]


def test_broken_next_link(tree):
    root, _ = tree
    table = root / VERSION / "sample.json"
    rows = json.loads(table.read_text())
    for r in rows:
        if r["token"] == REAL_TOKEN:
            r["next"] = "0" * 32
    table.write_text(json.dumps(rows))
    with pytest.raises(NuScenesFormatError, match=re.escape(str(table)) + ".*0{32}"):
        NuScenesReader(root)
