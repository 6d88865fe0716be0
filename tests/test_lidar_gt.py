"""LiDAR-derived SemanticKITTI voxel ground truth (``occ gt --from-lidar``, occ_ros/eval/lidar_gt.py).

The synthetic sequence is small enough to compute every voxel by hand: two scans, frame 0 at the
origin and frame 1 one metre forward, every LiDAR ray axis-aligned. Grid: x [0, 51.2), y [-25.6, 25.6),
z [-2, 4.4) m, 0.2 m voxels, so a point (x, y, z) is in voxel (floor(x / 0.2), floor((y + 25.6) / 0.2),
floor((z + 2) / 0.2)); the sensor origin (0, 0, 0) lies in voxel (0, 128, 10).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from occ_ros.datasets.sample import LabelFileError
from occ_ros.datasets.semantickitti import VOXEL_SHAPE, SemanticKittiReader, read_scan, read_voxels
from occ_ros.eval.lidar_gt import Scan, accumulate_frame, build_lidar_gt
from occ_ros.eval.runner import evaluate_semantickitti
from occ_tools.cli import main

# Camera: fx = fy = 32, principal point (32, 24), 64 x 48 image, no baseline. Tr: the exact axis swap
# velo (x fwd, y left, z up) -> cam0 (x right, y down, z fwd), no translation (keeps the arithmetic exact).
W, H = 64, 48
CALIB = {
    "P0": [32, 0, 32, 0, 0, 32, 24, 0, 0, 0, 1, 0],
    "P2": [32, 0, 32, 0, 0, 32, 24, 0, 0, 0, 1, 0],
    "Tr": [0, -1, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0],
}
IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
FORWARD_1M = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1.0]  # cam0 1 m along its z = the Velodyne 1 m along x
ROAD, CAR, BUILDING, VEGETATION, OTHER_STRUCTURE, OUTLIER, MOVING_CAR = 40, 10, 50, 70, 52, 1, 252

# Scan 0 (frame 0's Velodyne frame): points and raw labels (upper 16 bits: instance, ignored).
SCAN0 = [
    ((10.05, 0.0, 0.0), ROAD),  # voxel (50, 128, 10)
    ((30.10, 0.0, 0.0), CAR),  # (150, 128, 10)
    ((30.15, 0.0, 0.0), CAR | (7 << 16)),  # (150, 128, 10), instance 7
    ((0.0, 5.05, 0.0), OTHER_STRUCTURE),  # (0, 153, 10): 2 x class 0 ...
    ((0.0, 5.10, 0.0), OTHER_STRUCTURE),
    ((0.0, 5.15, 0.0), VEGETATION),  # ... + 1 vegetation -> vegetation (class 0 does not vote)
    ((0.0, 0.0, 3.05), OUTLIER),  # (0, 128, 25): only class 0 -> occupied, class unknown (raw 1)
    ((20.10, 0.0, 0.0), MOVING_CAR),  # (100, 128, 10) in frame 0; must not appear in frame 1
]
# Scan 1 (frame 1's Velodyne frame = frame 0's + 1 m in x).
SCAN1 = [
    ((29.12, 0.0, 0.0), BUILDING),  # frame 0: (30.12, 0, 0) -> (150, 128, 10): car 2 vs building 1
    ((0.0, -3.05, 0.0), MOVING_CAR),  # frame 0: (1, -3.05, 0) -> (5, 112, 10); must not appear in frame 0
]


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.12e}" for v in values)


def write_lidar_sequence(root: Path, name: str = "00", scans: tuple[list, ...] = (SCAN0, SCAN1)) -> Path:
    """A SemanticKITTI-layout sequence with images, calib, poses, times, velodyne and labels."""
    seq = root / "sequences" / name
    for folder in ("image_2", "velodyne", "labels"):
        (seq / folder).mkdir(parents=True)
    (seq / "calib.txt").write_text("".join(f"{k}: {_fmt(v)}\n" for k, v in CALIB.items()))
    poses = [IDENTITY, FORWARD_1M, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2.0]][: len(scans)]
    (seq / "poses.txt").write_text("".join(_fmt(p) + "\n" for p in poses))
    (seq / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(len(scans))))
    for i, scan in enumerate(scans):
        assert cv2.imwrite(str(seq / "image_2" / f"{i:06d}.png"), np.zeros((H, W, 3), np.uint8))
        pts = np.array([[*p, 0.5] for p, _ in scan], "<f4")
        (seq / "velodyne" / f"{i:06d}.bin").write_bytes(pts.tobytes())
        (seq / "labels" / f"{i:06d}.label").write_bytes(np.array([lab for _, lab in scan], "<u4").tobytes())
    return seq


def _voxels(*ranges: tuple[object, object, object]) -> set[tuple[int, int, int]]:
    """Voxel sets from per-axis ints or ranges."""
    out = set()
    for rx, ry, rz in ranges:
        for i in rx if isinstance(rx, range) else [rx]:
            for j in ry if isinstance(ry, range) else [ry]:
                for k in rz if isinstance(rz, range) else [rz]:
                    out.add((int(i), int(j), int(k)))  # type: ignore[call-overload]
    return out


# Frame 0, by hand. Rays of scan 0 from (0, 0, 0): along +x to x-voxels 50 / 150 / 100, along +y to
# y-voxel 153, along +z to z-voxel 25. Rays of scan 1 from (1, 0, 0) (voxel (5, 128, 10)): along +x to
# x-voxel 150; along -y to y-voxel 112 (the origin lies on the y face, moving -y: starts in 127).
OCC0 = {(50, 128, 10): ROAD, (150, 128, 10): CAR, (0, 153, 10): VEGETATION, (0, 128, 25): OUTLIER,
        (100, 128, 10): CAR}  # fmt: skip
RAYS0 = _voxels((range(0, 150), 128, 10), (0, range(128, 153), 10), (0, 128, range(10, 25)), (5, range(113, 128), 10))
FREE0 = RAYS0 - set(OCC0)
# Frame 1 (everything 5 voxels lower in x): scan 0's origin is at (-1, 0, 0), outside the grid; its rays
# along x enter at voxel 0; those along y and z (at x = -1) and their points stay outside.
OCC1 = {(45, 128, 10): ROAD, (145, 128, 10): CAR, (0, 112, 10): CAR}  # moving car: frame 1's own point
RAYS1 = _voxels((range(0, 145), 128, 10), (0, range(113, 128), 10))
FREE1 = RAYS1 - set(OCC1)


def _expected_files(occupied: dict[tuple[int, int, int], int], free: set) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros(VOXEL_SHAPE, np.uint16)
    invalid = np.ones(VOXEL_SHAPE, np.uint8)
    for v, raw in occupied.items():
        label[v] = raw
        invalid[v] = 0
    for v in free:
        invalid[v] = 0
    return label, invalid


def _frustum_by_hand() -> np.ndarray:
    """Voxel centres in front of the camera that project into the 64 x 48 image (pixel centres at integers)."""
    x = (np.arange(256) + 0.5) * 0.2
    y = -25.6 + (np.arange(256) + 0.5) * 0.2
    z = -2.0 + (np.arange(32) + 0.5) * 0.2
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    u = 32 + 32 * (-Y) / X  # cam x = -velo y, cam y = -velo z, depth = velo x (> 0 for every centre)
    v = 24 + 32 * (-Z) / X
    return (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Path, Path]:
    data, out = tmp_path / "data", tmp_path / "out"
    write_lidar_sequence(data)
    report = build_lidar_gt(data, out)
    assert report.written == 2 and report.skipped == 0
    return data, out


def test_frames_by_hand(built: tuple[Path, Path]) -> None:
    _, out = built
    vox = out / "sequences" / "00" / "voxels"
    for frame, occupied, free in (("000000", OCC0, FREE0), ("000001", OCC1, FREE1)):
        label, invalid = _expected_files(occupied, free)
        got_label, got_invalid = read_voxels(vox / f"{frame}.label"), read_voxels(vox / f"{frame}.invalid")
        assert {tuple(v): int(got_label[tuple(v)]) for v in np.argwhere(got_label)} == occupied
        assert np.array_equal(got_label, label)
        assert set(map(tuple, np.argwhere(got_invalid == 0).tolist())) == set(occupied) | free
        assert np.array_equal(got_invalid, invalid)
    assert len(FREE0) == 150 + 24 + 14 + 15 - 2 and len(FREE1) == 145 + 15 - 1
    # Frame 1's moving car is absent from frame 0 (voxel unknown: its ray ends there, crossing nothing)
    # and frame 0's moving car at x-voxel 100 -> 95 left no smear in frame 1: there it is free.
    label0, invalid0 = read_voxels(vox / "000000.label"), read_voxels(vox / "000000.invalid")
    assert label0[5, 112, 10] == 0 and invalid0[5, 112, 10] == 1
    assert (95, 128, 10) in FREE1
    # .bin = frame t's own scan, voxelised
    assert set(map(tuple, np.argwhere(read_voxels(vox / "000000.bin")).tolist())) == set(OCC0)
    assert set(map(tuple, np.argwhere(read_voxels(vox / "000001.bin")).tolist())) == {(145, 128, 10), (0, 112, 10)}
    # camera frustum mask, identical for both frames
    frustum = _frustum_by_hand()
    assert frustum[50, 128, 10] and not frustum[0, 255, 10] and 0 < frustum.sum() < frustum.size
    for frame in ("000000", "000001"):
        assert np.array_equal(read_voxels(vox / f"{frame}.camera_mask") == 1, frustum)
    params = json.loads((out / "sequences" / "00" / "lidar_gt.json").read_text())
    assert params["window"] is None and params["max_rays"] is None and params["camera_only"] is False


def test_reader_and_ssc_eval_read_the_output(built: tuple[Path, Path]) -> None:
    data, out = built
    reader = SemanticKittiReader(data, every="labels", gt_root=out)
    assert len(reader) == 2
    gt = reader.load(0, images=False).gt
    assert gt is not None and gt.mask_lidar is not None and gt.mask_camera is not None
    sem = gt.semantics  # vocabulary indices: car 0, road 8, vegetation 14, free 19, ignore 255
    assert sem[150, 128, 10] == 0 and sem[50, 128, 10] == 8 and sem[0, 153, 10] == 14 and sem[100, 128, 10] == 0
    assert sem[0, 128, 25] == 255  # occupied by class-0 points only: not scored
    assert all(sem[v] == 19 for v in FREE0)
    assert int(np.count_nonzero(sem != 255)) == len(FREE0) + 4
    assert np.array_equal(gt.mask_lidar, read_voxels(out / "sequences/00/voxels/000000.invalid") == 0)
    assert np.array_equal(gt.mask_camera, gt.mask_lidar & _frustum_by_hand())
    # official SSC evaluation of the ground truth against itself: perfect completion
    pred = out / "sequences" / "00" / "predictions"
    pred.mkdir()
    for frame in ("000000", "000001"):
        shutil.copy(out / "sequences/00/voxels" / f"{frame}.label", pred / f"{frame}.label")
    result = evaluate_semantickitti(out, out, progress=False)
    assert result.samples == 2 and result.iou_completion == pytest.approx(1.0)
    assert result.per_class["car"] == pytest.approx(1.0) and result.per_class["road"] == pytest.approx(1.0)


def test_resume_and_parameter_guard(built: tuple[Path, Path]) -> None:
    data, out = built
    vox = out / "sequences" / "00" / "voxels"
    before = (vox / "000000.label").stat().st_mtime_ns
    assert build_lidar_gt(data, out).skipped == 2
    (vox / "000001.label").unlink()  # an unfinished frame: .label is written last
    report = build_lidar_gt(data, out)
    assert (report.written, report.skipped) == (1, 1) and (vox / "000001.label").is_file()
    assert (vox / "000000.label").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match=r"00/lidar_gt\.json: .*built with"):
        build_lidar_gt(data, out, window=0)
    (out / "sequences" / "00" / "lidar_gt.json").unlink()  # looks like official voxels now
    with pytest.raises(ValueError, match=r"00/voxels: holds \.label files that `occ gt` did not write"):
        build_lidar_gt(data, out)


def test_window_camera_only_and_ray_subset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_lidar_sequence(data)
    out = tmp_path / "w0"
    build_lidar_gt(data, out, frames=[0], window=0, camera_only=True)
    vox = out / "sequences" / "00" / "voxels"
    assert not (vox / "000001.label").exists()
    label, invalid = read_voxels(vox / "000000.label"), read_voxels(vox / "000000.invalid")
    # own scan only: no building vote, no scan-1 ray along -y at x-voxel 5
    own_rays = _voxels((range(0, 150), 128, 10), (0, range(128, 153), 10), (0, 128, range(10, 25)))
    known = np.zeros(VOXEL_SHAPE, bool)
    for v in set(OCC0) | own_rays:
        known[v] = True
    known &= _frustum_by_hand()
    assert np.array_equal(invalid == 0, known)
    assert label[150, 128, 10] == CAR and not known[0, 153, 10]  # outside the 90-degree field of view

    scans = [Scan(np.array([p for p, _ in SCAN0]), np.ones(len(SCAN0), np.uint8), np.zeros(len(SCAN0), bool))]
    full = accumulate_frame(scans, np.eye(4)[None], 0)
    sub = accumulate_frame(scans, np.eye(4)[None], 0, max_rays=1, rng=np.random.default_rng(1))
    assert sub.stats["rays"] == 1 and full.stats["rays"] == len(SCAN0)
    assert np.array_equal(sub.occupied, full.occupied)  # occupancy always uses every point
    assert not np.any(sub.free & ~full.free) and sub.free.sum() < full.free.sum()


def test_vote_ties_go_to_the_lower_class() -> None:
    pts = np.array([[10.05, 0.0, 0.0], [10.1, 0.0, 0.0], [12.05, 0.0, 0.0], [12.1, 0.0, 0.0], [12.15, 0.0, 0.0]])
    learning = np.array([9, 1, 0, 0, 0], np.uint8)  # road vs car tie; a class-0-only voxel
    gt = accumulate_frame([Scan(pts, learning, np.zeros(5, bool))], np.eye(4)[None], 0)
    assert gt.learning[50, 128, 10] == 1 and gt.learning[60, 128, 10] == 255 and gt.occupied[60, 128, 10]
    raw = gt.raw_labels()
    assert raw[50, 128, 10] == CAR and raw[60, 128, 10] == OUTLIER and raw[0, 128, 10] == 0
    assert gt.stats["occupied"] == 2 and gt.stats["free"] == 60 - 1


def test_odd_input_fails_before_writing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seq = write_lidar_sequence(data)
    label1 = seq / "labels" / "000001.label"
    label1.write_bytes(label1.read_bytes()[:4])  # 1 label for 2 points
    with pytest.raises(LabelFileError, match=r"labels/000001\.label: 4 bytes = 1 labels, but .*000001\.bin has 2"):
        build_lidar_gt(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    label1.write_bytes(np.array([BUILDING, 7], "<u4").tobytes())  # 7 is no SemanticKITTI id
    with pytest.raises(LabelFileError, match=r"000001\.label: unknown SemanticKITTI raw label ids \[7\]"):
        build_lidar_gt(data, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.label"))
    (seq / "velodyne" / "000001.bin").unlink()
    with pytest.raises(LabelFileError, match=r"velodyne/000001\.bin: file not found"):
        build_lidar_gt(data, tmp_path / "out")
    with pytest.raises(ValueError, match=r"no frames \[5\]"):
        build_lidar_gt(data, tmp_path / "out", frames=[5])


def test_occ_gt_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_lidar_sequence(data)
    argv = ["gt", "--data", str(data), "--out", str(out), "--quiet"]
    assert main(argv) == 1 and "--from-lidar" in capsys.readouterr().err
    assert main([*argv, "--from-lidar", "--sequences", "0"]) == 0
    assert "gt: 2 frames written, 0 already done" in capsys.readouterr().out
    assert main([*argv, "--from-lidar"]) == 0
    assert "gt: 0 frames written, 2 already done" in capsys.readouterr().out
    assert main(["gt", "--from-lidar", "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "nowhere/sequences: not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- real data
KITTI_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "kitti_mini"


@pytest.mark.skipif(not (KITTI_MINI / "sequences").is_dir(), reason="../shared/fixtures/kitti_mini not present")
def test_real_fixture_frame(tmp_path: Path) -> None:
    report = build_lidar_gt(KITTI_MINI, tmp_path, sequences=["00"], frames=[5])
    assert report.written == 1
    stats = report.frames["00/000005"]
    assert stats["points"] > 150_000 and stats["occupied"] > 1000 and stats["free"] > stats["occupied"]
    vox = tmp_path / "sequences" / "00" / "voxels"
    label, invalid = read_voxels(vox / "000005.label"), read_voxels(vox / "000005.invalid")
    occupied = (label > 0) & (invalid == 0)
    assert int(occupied.sum()) == stats["occupied"]
    assert int(((label == 0) & (invalid == 0)).sum()) == stats["free"]
    assert {ROAD, CAR, VEGETATION} <= set(np.unique(label[occupied]).tolist())
    # every point of frame 5's own scan is in an occupied voxel
    pts = read_scan(KITTI_MINI / "sequences" / "00" / "velodyne" / "000005.bin")[:, :3].astype(np.float64)
    idx = np.floor((pts - [0.0, -25.6, -2.0]) / 0.2).astype(int)
    inside = np.all((idx >= 0) & (idx < VOXEL_SHAPE), axis=1)
    assert inside.mean() > 0.99
    assert np.all(occupied[tuple(idx[inside].T)])
    # the camera sees most of what the LiDAR observed (the scans were cropped to image_2)
    camera = read_voxels(vox / "000005.camera_mask") == 1
    known = invalid == 0
    assert (camera & known).sum() > 0.85 * known.sum()

    reader = SemanticKittiReader(KITTI_MINI, sequences=["00"], every="labels", gt_root=tmp_path)
    assert len(reader) == 1
    sample = reader.load(0, images=False)
    assert sample.frame == "000005" and sample.gt is not None
    names = reader.vocabulary.names
    present = {names[c] for c in np.unique(sample.gt.semantics) if c != 255}
    assert {"road", "car", "vegetation", "free"} <= present
