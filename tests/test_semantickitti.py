"""SemanticKITTI: voxel IO, label maps, the reader and the official SSC metric.

Expected values are computed by hand (or by straightforward loops written here), never by the
code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from occ_ros.datasets.sample import IGNORE_LABEL, LabelFileError
from occ_ros.datasets.semantickitti import (
    LEARNING_CLASS_NAMES,
    OFFICIAL_CLASS_NAMES,
    SEMANTICKITTI_GRID,
    VOXEL_SHAPE,
    SemanticKittiReader,
    check_scan_pair,
    completion_lut,
    learning_to_vocab,
    load_semantickitti_config,
    pack_bits,
    read_scan,
    read_scan_labels,
    read_voxels,
    remap_completion,
    semantickitti_vocabulary,
    unpack_bits,
    vocab_to_learning,
    write_voxels,
)
from occ_ros.eval.runner import evaluate_semantickitti
from occ_ros.eval.ssc import SSCMetric, format_table
from occ_tools.cli import main

# KITTI odometry sequence 00 calibration (real numbers).
KITTI_P = {
    "P0": [718.856, 0, 607.1928, 0, 0, 718.856, 185.2157, 0, 0, 0, 1, 0],
    "P1": [718.856, 0, 607.1928, -386.1448, 0, 718.856, 185.2157, 0, 0, 0, 1, 0],
    "P2": [718.856, 0, 607.1928, 45.38225, 0, 718.856, 185.2157, -0.1130887, 0, 0, 1, 0.003779761],
    "P3": [718.856, 0, 607.1928, -337.2877, 0, 718.856, 185.2157, 2.369057, 0, 0, 1, 0.004915215],
    "Tr": [
        4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02,
        -7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02,
        9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01,
    ],
}  # fmt: skip
# Simple calibration for hand computation: fx = fy = 700, cx = 600, cy = 180, CAM2 0.06 m right
# of cam0 (P2[0, 3] = 700 * 0.06 = 42); Tr = exact axis swap velo (x fwd, y left, z up) -> camera
# (x right, y down, z fwd) plus translation (0, -0.08, -0.27).
SIMPLE_P = {
    "P0": [700, 0, 600, 0, 0, 700, 180, 0, 0, 0, 1, 0],
    "P1": [700, 0, 600, -378, 0, 700, 180, 0, 0, 0, 1, 0],
    "P2": [700, 0, 600, 42, 0, 700, 180, 0, 0, 0, 1, 0],
    "P3": [700, 0, 600, -336, 0, 700, 180, 0, 0, 0, 1, 0],
    "Tr": [0, -1, 0, 0, 0, 0, -1, -0.08, 1, 0, 0, -0.27],
}
IDENTITY_POSE = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.12e}" for v in values)


def write_sequence(
    root: Path,
    name: str,
    calib: dict[str, list[float]],
    poses: list[list[float]],
    times: list[float],
    n_images: int,
    size: tuple[int, int],
    voxels: dict[int, tuple[np.ndarray, np.ndarray]],
) -> Path:
    """An official-layout sequence: image_2 PNGs (pure red), calib/poses/times, voxel files."""
    seq = root / "sequences" / name
    (seq / "image_2").mkdir(parents=True)
    (seq / "calib.txt").write_text("".join(f"{k}: {_fmt(v)}\n" for k, v in calib.items()))
    (seq / "poses.txt").write_text("".join(_fmt(p) + "\n" for p in poses))
    (seq / "times.txt").write_text("".join(f"{t:.6e}\n" for t in times))
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 2] = 255  # BGR red
    image[0, 0] = (255, 0, 0)  # BGR blue top-left pixel
    for i in range(n_images):
        assert cv2.imwrite(str(seq / "image_2" / f"{i:06d}.png"), image)
    if voxels:
        (seq / "voxels").mkdir()
    for frame, (label, invalid) in voxels.items():
        write_voxels(seq / "voxels" / f"{frame:06d}.label", label)
        write_voxels(seq / "voxels" / f"{frame:06d}.invalid", invalid)
        write_voxels(seq / "voxels" / f"{frame:06d}.bin", (label > 0).astype(np.uint8))
    return seq


def _gt_frame() -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros(VOXEL_SHAPE, np.uint16)
    invalid = np.zeros(VOXEL_SHAPE, np.uint8)
    label[0, 0, 0] = 10  # car -> learning 1 -> vocab 0
    label[0, 0, 1] = 252  # moving-car -> car -> vocab 0
    label[0, 0, 2] = 40  # road -> 9 -> vocab 8
    label[0, 0, 3] = 52  # other-structure -> learning 0 -> 255 in completion
    label[0, 0, 4] = 1  # outlier -> 255
    label[0, 0, 5] = 0  # empty -> free (vocab 19)
    label[1, 2, 3] = 81  # traffic-sign -> 19 -> vocab 18, but invalid below
    label[9, 9, 9] = 60  # lane-marking -> road -> vocab 8
    invalid[0, 0, 6] = 1
    invalid[1, 2, 3] = 1
    return label, invalid


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kitti")
    write_sequence(
        root, "00", KITTI_P,
        poses=[IDENTITY_POSE, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1.0], IDENTITY_POSE],
        times=[0.0, 0.103665, 0.207328], n_images=3, size=(1241, 376),
        voxels={0: (np.zeros(VOXEL_SHAPE, np.uint16), np.zeros(VOXEL_SHAPE, np.uint8))},
    )  # fmt: skip
    poses = [
        IDENTITY_POSE,
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2.0],  # cam0 moved 2 m along its z (forward)
        [1, 0, 0, 1.0, 0, 1, 0, 0, 0, 0, 1, 0],  # cam0 moved 1 m along its x (right)
        [0, 0, 1, 0, 0, 1, 0, 0, -1, 0, 0, 0],  # cam0 rotated +90 deg about its y (down)
        IDENTITY_POSE,
        IDENTITY_POSE,
    ]
    write_sequence(
        root, "08", SIMPLE_P, poses=poses, times=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], n_images=6, size=(64, 24),
        voxels={0: _gt_frame(), 5: (np.zeros(VOXEL_SHAPE, np.uint16), np.ones(VOXEL_SHAPE, np.uint8))},
    )  # fmt: skip
    return root


# ---------------------------------------------------------------------------------------------- bits & files
def test_bit_order_msb_first() -> None:
    bits = unpack_bits(np.array([0b10100000, 0b00000001], np.uint8))
    assert bits.dtype == np.uint8
    assert bits.tolist() == [1, 0, 1, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0, 1]
    assert pack_bits(np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])).tolist() == [0b10100000, 1]
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 64, dtype=np.uint8)
    assert np.array_equal(unpack_bits(pack_bits(bits)), bits)
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_bits(np.ones(7, np.uint8))
    with pytest.raises(ValueError, match="0/1"):
        pack_bits(np.full(8, 2, np.uint8))


def test_packed_file_layout_xyz(tmp_path: Path) -> None:
    data = np.zeros(256 * 256 * 32 // 8, np.uint8)
    data[0] = 0b10100000  # voxels 0 and 2 -> [0, 0, 0] and [0, 0, 2]
    data[4] = 0b10000000  # voxel 32 -> [0, 1, 0] (z runs fastest, 32 per column)
    data[1024] = 0b01000000  # voxel 8193 = 1 * 256 * 32 + 1 -> [1, 0, 1]
    data[-1] = 0b00000001  # last voxel -> [255, 255, 31]
    path = tmp_path / "000000.invalid"
    path.write_bytes(data.tobytes())
    vox = read_voxels(path)
    assert vox.shape == (256, 256, 32) and vox.dtype == np.uint8
    assert sorted(map(tuple, np.argwhere(vox).tolist())) == [(0, 0, 0), (0, 0, 2), (0, 1, 0), (1, 0, 1), (255, 255, 31)]
    write_voxels(tmp_path / "copy.occluded", vox)
    assert (tmp_path / "copy.occluded").read_bytes() == data.tobytes()


def test_label_file_is_uint16_little_endian(tmp_path: Path) -> None:
    label = np.zeros(VOXEL_SHAPE, np.uint16)
    label[0, 0, 1] = 252
    label[0, 0, 2] = 258
    path = tmp_path / "x.label"
    write_voxels(path, label)
    raw = path.read_bytes()
    assert len(raw) == 256 * 256 * 32 * 2
    assert raw[:6] == bytes([0, 0, 252, 0, 2, 1])  # 258 = 0x0102, little-endian
    assert np.array_equal(read_voxels(path), label)


def test_voxel_file_errors(tmp_path: Path) -> None:
    short = tmp_path / "000000.bin"
    short.write_bytes(b"\x00" * 100)
    with pytest.raises(LabelFileError, match=r"000000\.bin.*100 bytes, expected 262144"):
        read_voxels(short)
    bad_label = tmp_path / "000000.label"
    bad_label.write_bytes(b"\x00" * 262144)  # a packed size is wrong for labels
    with pytest.raises(LabelFileError, match=r"000000\.label.*expected 4194304"):
        read_voxels(bad_label)
    with pytest.raises(LabelFileError, match=r"missing\.invalid.*not found"):
        read_voxels(tmp_path / "missing.invalid")
    with pytest.raises(ValueError, match="kind"):
        read_voxels(tmp_path / "x.npy")
    with pytest.raises(ValueError, match="shape"):
        write_voxels(tmp_path / "y.bin", np.zeros((256, 256, 16), np.uint8))


# ---------------------------------------------------------------------------------------------- label maps
def test_official_learning_map_and_split() -> None:
    cfg = load_semantickitti_config()
    expected = {0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10,
                48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0,
                252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5}  # fmt: skip
    assert cfg.learning_map == expected
    assert cfg.split == {"train": [0, 1, 2, 3, 4, 5, 6, 7, 9, 10], "valid": [8], "test": list(range(11, 22))}
    assert cfg.learning_map_inv[5] == 20 and cfg.class_name(19) == "traffic-sign"
    assert cfg.learning_ignore[0] is True and not any(cfg.learning_ignore[i] for i in range(1, 20))
    assert load_semantickitti_config(Path(cfg.source)).learning_map == expected  # user path


def test_completion_lut_official_rule() -> None:
    lut = completion_lut()
    assert lut[0] == 0  # only raw "empty" stays empty
    for raw in (1, 52, 99):  # map to learning 0 -> invalid in completion
        assert lut[raw] == 255
    assert lut[10] == 1 and lut[252] == 1 and lut[60] == 9 and lut[259] == 5
    raw = np.array([[0, 10, 252], [40, 52, 81]], np.uint16)
    assert remap_completion(raw).tolist() == [[0, 1, 1], [9, 255, 19]]
    with pytest.raises(ValueError, match=r"\[7, 300\]"):
        remap_completion(np.array([0, 7, 300, 10], np.uint16))


def test_vocabulary_and_conversions() -> None:
    vocab = semantickitti_vocabulary()
    cfg = load_semantickitti_config()
    assert len(vocab) == 20 and vocab.free_index == 19 and vocab.names[-1] == "free"
    assert tuple(vocab.names[:-1]) == LEARNING_CLASS_NAMES
    assert vocab.names[0] == "car" and vocab.names[18] == "traffic_sign"
    assert vocab.classes[0].color == (100, 150, 245)  # official car BGR [245, 150, 100]
    for i in range(19):  # every colour is the official BGR colour reversed
        bgr = cfg.color_map_bgr[cfg.learning_map_inv[i + 1]]
        assert vocab.classes[i].color == (bgr[2], bgr[1], bgr[0])
        assert vocab.names[i].replace("_", "-") == cfg.class_name(i + 1)
    assert all(vocab.prompts())
    learning = np.array([0, 1, 5, 19, 255], np.uint8)
    assert learning_to_vocab(learning).tolist() == [19, 0, 4, 18, 255]
    assert vocab_to_learning(np.array([19, 0, 4, 18, 255], np.uint8)).tolist() == [0, 1, 5, 19, 255]
    with pytest.raises(ValueError, match="20"):
        learning_to_vocab(np.array([20], np.uint8))
    with pytest.raises(ValueError, match="200"):
        vocab_to_learning(np.array([200], np.uint8))


# ---------------------------------------------------------------------------------------------- reader
def test_reader_selection_and_fields(kitti_root: Path) -> None:
    reader = SemanticKittiReader(kitti_root)
    assert len(reader) == 3  # frames with voxels/*.label: 00/0, 08/0, 08/5
    assert [(s.scene, s.frame, s.index) for s in (reader.load(i, images=False) for i in range(3))] == [
        ("00", "000000", 0),
        ("08", "000000", 0),
        ("08", "000005", 1),
    ]
    assert reader.scenes() == {"00": [0], "08": [1, 2]}
    every_all = SemanticKittiReader(kitti_root, every="all")
    assert len(every_all) == 9
    assert every_all.load(1, images=False).gt is None  # 00/000001 has no labels
    assert len(SemanticKittiReader(kitti_root, sequences=[8], every=5)) == 2

    s = reader[0]
    assert s.dataset == "semantickitti" and s.grid == SEMANTICKITTI_GRID
    assert SEMANTICKITTI_GRID.shape == (256, 256, 32)
    assert s.rig.names == ["CAM2"]
    image = s.images["CAM2"]
    assert image.shape == (376, 1241, 3) and image.dtype == np.uint8
    assert image[5, 5].tolist() == [255, 0, 0] and image[0, 0].tolist() == [0, 0, 255]  # RGB
    later = reader.load(2, images=False)
    assert later.stamp_ns == 500_000_000 and later.image_stamps_ns == {"CAM2": 500_000_000}
    assert SemanticKittiReader(kitti_root, every="all").load(1, images=False).stamp_ns == 103_665_000


def test_reader_camera_real_kitti_calibration(kitti_root: Path) -> None:
    cam = SemanticKittiReader(kitti_root, sequences=["00"]).load(0, images=False).rig["CAM2"]
    P2 = np.array(KITTI_P["P2"]).reshape(3, 4)
    Tr = np.vstack([np.array(KITTI_P["Tr"]).reshape(3, 4), [0, 0, 0, 1]])
    assert np.allclose(cam.K, P2[:, :3]) and (cam.width, cam.height) == (1241, 376)
    pts = np.array([[10.0, 1.0, 0.5], [25.0, -4.0, -1.2]])
    uv, depth = cam.project(pts)
    for p, (u, v), d in zip(pts, uv, depth, strict=True):  # the standard KITTI projection P2 @ Tr @ X
        x = P2 @ Tr @ np.append(p, 1.0)
        assert u == pytest.approx(x[0] / x[2], abs=1e-6) and v == pytest.approx(x[1] / x[2], abs=1e-6)
        assert d == pytest.approx(x[2], abs=1e-9)  # P2's last row is [0 0 1 tz]: depth = homogeneous w


def test_reader_camera_and_poses_by_hand(kitti_root: Path) -> None:
    reader = SemanticKittiReader(kitti_root, sequences=["08"], every="all")
    cam = reader.load(0, images=False).rig["CAM2"]
    assert cam.K.tolist() == [[700, 0, 600], [0, 700, 180], [0, 0, 1]]
    # velo (10, 1, 0.5) -> cam0 (-1, -0.5 - 0.08, 10 - 0.27) -> cam2 (-1 + 0.06, -0.58, 9.73)
    uv, depth = cam.project(np.array([[10.0, 1.0, 0.5]]))
    assert depth[0] == pytest.approx(9.73)
    assert uv[0, 0] == pytest.approx(600 + 700 * -0.94 / 9.73)
    assert uv[0, 1] == pytest.approx(180 + 700 * -0.58 / 9.73)
    # cam0 centre = -R^T t = (0.27, 0, -0.08); P2[0, 3] > 0 puts CAM2 0.06 m left of cam0 (+y)
    assert np.allclose(cam.center_ego, [0.27, 0.06, -0.08])

    poses = [reader.load(i, images=False).world_from_ego for i in range(4)]
    assert np.allclose(poses[0], np.eye(4))
    expected_1 = np.eye(4)
    expected_1[0, 3] = 2.0  # cam0 forward (z) = velodyne forward (x)
    assert np.allclose(poses[1], expected_1)
    expected_2 = np.eye(4)
    expected_2[1, 3] = -1.0  # cam0 right (x) = velodyne -y
    assert np.allclose(poses[2], expected_2)
    # +90 deg about cam0 y (down) = -90 deg about velodyne z (up): x -> -y
    assert np.allclose(poses[3][:3, :3], [[0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    assert np.allclose(reader.poses()["08"][1], expected_1)


def test_reader_pose_real_tr(kitti_root: Path) -> None:
    pose = SemanticKittiReader(kitti_root, sequences=["00"], every="all").load(1, images=False).world_from_ego
    R = np.array(KITTI_P["Tr"]).reshape(3, 4)[:, :3]
    # cam0 moved 1 m along its z: the velodyne moves along R^-1 (0, 0, 1) ~ (1, 0, 0), no rotation
    assert np.allclose(pose[:3, :3], np.eye(3), atol=1e-9)
    assert np.allclose(pose[:3, 3], np.linalg.solve(R, [0, 0, 1.0]), atol=1e-9)
    assert pose[0, 3] == pytest.approx(1.0, abs=1e-4)


def test_reader_ground_truth(kitti_root: Path) -> None:
    s = SemanticKittiReader(kitti_root, sequences=["08"]).load(0, images=False)
    gt = s.gt
    assert gt is not None and gt.semantics.shape == (256, 256, 32) and gt.mask_camera is None
    sem = gt.semantics
    assert [sem[0, 0, k] for k in range(7)] == [0, 0, 8, 255, 255, 19, 255]
    assert sem[1, 2, 3] == 255  # traffic sign, but invalid
    assert sem[9, 9, 9] == 8  # lane marking -> road
    assert sem[100, 100, 10] == 19  # empty -> free
    assert gt.mask_lidar is not None
    assert not gt.mask_lidar[0, 0, 6] and not gt.mask_lidar[1, 2, 3]
    assert int(gt.mask_lidar.sum()) == 256 * 256 * 32 - 2
    assert int(np.count_nonzero(sem == IGNORE_LABEL)) == 4
    all_invalid = SemanticKittiReader(kitti_root, sequences=["08"]).load(1, images=False).gt
    assert all_invalid is not None and np.all(all_invalid.semantics == 255) and not all_invalid.mask_lidar.any()


def _small_sequence(root: Path, **overrides: object) -> Path:
    args: dict[str, object] = dict(
        calib=SIMPLE_P, poses=[IDENTITY_POSE] * 2, times=[0.0, 0.1], n_images=2, size=(16, 8),
        voxels={0: (np.zeros(VOXEL_SHAPE, np.uint16), np.zeros(VOXEL_SHAPE, np.uint8))},
    )  # fmt: skip
    args.update(overrides)
    return write_sequence(root, "03", **args)  # type: ignore[arg-type]


def test_reader_errors(tmp_path: Path) -> None:
    no_p2 = {k: v for k, v in SIMPLE_P.items() if k != "P2"}
    _small_sequence(tmp_path / "a", calib=no_p2)
    with pytest.raises(ValueError, match=r"calib\.txt.*P2"):
        SemanticKittiReader(tmp_path / "a")

    _small_sequence(tmp_path / "b", poses=[IDENTITY_POSE])
    with pytest.raises(ValueError, match=r"poses\.txt: 1 poses.*000001"):
        SemanticKittiReader(tmp_path / "b")

    seq = _small_sequence(tmp_path / "c")
    (seq / "voxels" / "000000.invalid").unlink()
    reader = SemanticKittiReader(tmp_path / "c")
    with pytest.raises(LabelFileError, match=r"000000\.invalid"):
        reader.load(0, images=False)

    label = np.zeros(VOXEL_SHAPE, np.uint16)
    label[3, 3, 3] = 7  # not a SemanticKITTI id
    seq = _small_sequence(tmp_path / "d", voxels={0: (label, np.zeros(VOXEL_SHAPE, np.uint8))})
    with pytest.raises(LabelFileError, match=r"000000\.label.*\[7\]"):
        SemanticKittiReader(tmp_path / "d").load(0, images=False)

    _small_sequence(tmp_path / "e", voxels={})
    with pytest.raises(ValueError, match="voxels"):
        SemanticKittiReader(tmp_path / "e", sequences=[3], every="labels")
    assert len(SemanticKittiReader(tmp_path / "e", every="all")) == 2
    auto = SemanticKittiReader(tmp_path / "e")  # default "auto": no voxels anywhere -> every image frame
    assert auto.every == "all" and len(auto) == 2 and auto.load(0, images=False).gt is None
    with pytest.raises(FileNotFoundError, match="sequences"):
        SemanticKittiReader(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- SSC metric
def reference_scores(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, object]:
    """Straightforward SSC scores: per-class loops over boolean masks."""
    p, g = pred[valid], gt[valid]
    ious = []
    for c in range(1, 20):
        tp = np.sum((p == c) & (g == c))
        fp = np.sum((p == c) & (g != c))
        fn = np.sum((p != c) & (g == c))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
    both = np.sum((p > 0) & (g > 0))
    return {
        "per_class": ious,
        "miou": sum(ious) / 19,
        "precision": both / np.sum(p > 0),
        "recall": both / np.sum(g > 0),
        "completion": both / np.sum((p > 0) | (g > 0)),
    }


def test_ssc_hand_computed() -> None:
    metric = SSCMetric()
    metric.update(np.array([1, 2, 2, 1, 0]), np.array([1, 1, 2, 0, 0]))
    r = metric.compute()
    # conf[pred, gt]: (1,1) (2,1) (2,2) (1,0) (0,0)
    assert r.per_class["car"] == pytest.approx(1 / 3)  # tp 1, fp 1 (pred 1 on gt 0), fn 1
    assert r.per_class["bicycle"] == pytest.approx(1 / 2)  # tp 1, fp 1, fn 0
    assert r.per_class["motorcycle"] == 0.0  # absent from both: 0, as officially
    assert r.miou == pytest.approx((1 / 3 + 1 / 2) / 19)
    assert r.precision == pytest.approx(3 / 4)
    assert r.recall == pytest.approx(1.0)
    assert r.iou_completion == pytest.approx(3 / 4)
    assert r.samples == 1
    assert r.confusion[1, 2] == 1 and r.confusion.sum() == 5  # gt 1 predicted as 2 (gt rows x pred columns)
    d = r.to_dict()
    assert d["miou"] == 4.39 and d["per_class"]["car"] == 33.33 and d["iou_completion"] == 75.0
    # the official class keys (evaluate_completion.py: labels[learning_map_inv[i]]), not our snake_case
    cfg = load_semantickitti_config()
    assert list(d["per_class"]) == [cfg.class_name(i) for i in range(1, 20)] == list(OFFICIAL_CLASS_NAMES)
    assert "other-ground" in d["per_class"] and "traffic-sign" in d["per_class"]
    assert "other_ground" not in d["per_class"]
    table = format_table(r)
    assert "car" in table and "33.33" in table and "75.00" in table


def test_ssc_ignore_and_invalid_masking() -> None:
    metric = SSCMetric()
    gt = np.array([1, 1, 2, 0, 0, 255, 3, 0])
    pred = np.array([1, 2, 2, 1, 0, 5, 3, 4])
    invalid = np.array([0, 0, 0, 0, 0, 0, 1, 1], np.uint8)  # last two ignored, gt 255 ignored
    metric.update(pred, gt, invalid)
    r = metric.compute()
    assert r.per_class["car"] == pytest.approx(1 / 3) and r.per_class["motorcycle"] == 0.0
    assert r.per_class["other-vehicle"] == 0.0 and r.per_class["truck"] == 0.0
    assert r.iou_completion == pytest.approx(3 / 4) and r.confusion.sum() == 5
    metric.reset()
    assert metric.compute().samples == 0 and metric.confusion.sum() == 0


def test_ssc_matches_reference_over_frames() -> None:
    rng = np.random.default_rng(42)
    metric = SSCMetric()
    preds, gts, valids = [], [], []
    for _ in range(3):
        gt = rng.integers(0, 12, (8, 8, 4))
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, 20, gt.shape))
        invalid = (rng.random(gt.shape) < 0.1).astype(np.uint8)
        metric.update(pred, gt, invalid)
        preds.append(pred)
        gts.append(gt)
        valids.append((gt != 255) & (invalid == 0))
    r = metric.compute()
    ref = reference_scores(np.concatenate(preds), np.concatenate(gts), np.concatenate(valids))
    assert list(r.per_class.values()) == pytest.approx(ref["per_class"], rel=1e-9, abs=1e-12)
    assert r.miou == pytest.approx(ref["miou"], rel=1e-9)
    assert r.precision == pytest.approx(ref["precision"], rel=1e-6)
    assert r.recall == pytest.approx(ref["recall"], rel=1e-6)
    assert r.iou_completion == pytest.approx(ref["completion"], rel=1e-12)
    assert r.samples == 3


def test_ssc_update_raw_and_errors() -> None:
    metric = SSCMetric()
    pred_raw = np.array([10, 252, 40, 0, 52], np.uint16)
    gt_raw = np.array([252, 10, 60, 1, 1], np.uint16)  # outlier (1) -> 255: ignored
    metric.update_raw(pred_raw, gt_raw)  # pred 52 -> 255 is fine where GT is ignored
    r = metric.compute()
    assert r.per_class["car"] == pytest.approx(1.0) and r.per_class["road"] == pytest.approx(1.0)
    assert r.confusion.sum() == 3 and r.confusion[1, 1] == 2 and r.confusion[9, 9] == 1
    with pytest.raises(ValueError, match=r"\[52\]"):
        metric.update_raw(np.array([52, 0], np.uint16), np.array([10, 0], np.uint16))
    with pytest.raises(ValueError, match=r"\[7\]"):
        metric.update_raw(np.array([7, 0], np.uint16), np.array([10, 0], np.uint16))
    with pytest.raises(ValueError, match=r"0\.\.19.*\[20\]"):
        metric.update(np.array([20, 0]), np.array([1, 0]))
    with pytest.raises(ValueError, match=r"\[-1\]"):
        metric.update(np.array([-1, 0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="shape"):
        metric.update(np.zeros(3, int), np.zeros(3, int), invalid=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="integer"):
        metric.update(np.zeros(3), np.zeros(3, int))
    assert metric.samples == 1


def _write_eval_frame(seq_dir: Path, frame: str, gt: np.ndarray, invalid: np.ndarray, pred: np.ndarray) -> None:
    write_voxels(seq_dir / "voxels" / f"{frame}.label", gt)
    write_voxels(seq_dir / "voxels" / f"{frame}.invalid", invalid)
    write_voxels(seq_dir / "predictions" / f"{frame}.label", pred)


def test_evaluate_semantickitti_folders(tmp_path: Path) -> None:
    seq = tmp_path / "sequences" / "08"
    (seq / "voxels").mkdir(parents=True)
    (seq / "predictions").mkdir()
    gt = np.zeros(VOXEL_SHAPE, np.uint16)
    pred = np.zeros(VOXEL_SHAPE, np.uint16)
    invalid = np.zeros(VOXEL_SHAPE, np.uint8)
    gt[0, 0, 0], pred[0, 0, 0] = 10, 10  # car / car
    gt[0, 0, 1], pred[0, 0, 1] = 10, 40  # car / road
    gt[0, 0, 2], pred[0, 0, 2] = 40, 40  # road / road
    pred[0, 0, 3] = 50  # empty / building
    pred[0, 0, 4], invalid[0, 0, 4] = 10, 1  # invalid: ignored
    _write_eval_frame(seq, "000000", gt, invalid, pred)
    gt2 = np.zeros(VOXEL_SHAPE, np.uint16)
    gt2[5, 5, 5] = 252  # moving car, predicted empty
    _write_eval_frame(seq, "000005", gt2, np.zeros(VOXEL_SHAPE, np.uint8), np.zeros(VOXEL_SHAPE, np.uint16))

    r = evaluate_semantickitti(tmp_path, tmp_path, progress=False)
    assert r.samples == 2
    assert r.per_class["car"] == pytest.approx(1 / 3)  # tp 1, fn 2 (road, empty)
    assert r.per_class["road"] == pytest.approx(1 / 2)  # tp 1, fp 1
    assert r.per_class["building"] == 0.0
    assert r.miou == pytest.approx((1 / 3 + 1 / 2) / 19)
    assert r.precision == pytest.approx(3 / 4) and r.recall == pytest.approx(3 / 4)
    assert r.iou_completion == pytest.approx(3 / 5)
    assert evaluate_semantickitti(tmp_path, tmp_path, sequences=[8], progress=False).to_dict() == r.to_dict()
    out = tmp_path / "ssc.json"
    argv = ["eval", "--benchmark", "semantickitti", "--pred", str(tmp_path), "--gt", str(tmp_path)]
    assert main([*argv, "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["iou_completion"] == 60.0 and doc["miou"] == round((1 / 3 + 1 / 2) / 19 * 100, 2)

    (seq / "predictions" / "000005.label").rename(seq / "predictions" / "000010.label")
    with pytest.raises(LabelFileError, match=r"missing prediction.*000005\.label.*without ground truth.*000010"):
        evaluate_semantickitti(tmp_path, tmp_path, progress=False)
    (seq / "predictions" / "000010.label").unlink()
    (seq / "predictions" / "000005.label").write_bytes(b"\x00" * 10)
    with pytest.raises(LabelFileError, match=r"predictions/000005\.label.*10 bytes"):
        evaluate_semantickitti(tmp_path, tmp_path, progress=False)


def test_miou_over_present_classes_and_camera_mask(tmp_path: Path) -> None:
    seq = tmp_path / "sequences" / "08"
    (seq / "voxels").mkdir(parents=True)
    (seq / "predictions").mkdir()
    gt = np.zeros(VOXEL_SHAPE, np.uint16)
    pred = np.zeros(VOXEL_SHAPE, np.uint16)
    gt[0, 0, 0], pred[0, 0, 0] = 10, 10  # car / car, in the frustum
    gt[0, 0, 1], pred[0, 0, 1] = 40, 40  # road / road, in the frustum
    gt[0, 0, 2], pred[0, 0, 2] = 40, 50  # road / building, outside the frustum
    pred[0, 0, 3] = 10  # empty / car, outside the frustum
    _write_eval_frame(seq, "000000", gt, np.zeros(VOXEL_SHAPE, np.uint8), pred)
    camera = np.zeros(VOXEL_SHAPE, np.uint8)
    camera[0, 0, :2] = 1
    camera[5:, :, :] = 1  # empty voxels in the frustum: true negatives
    write_voxels(seq / "voxels" / "000000.camera_mask", camera)

    full = evaluate_semantickitti(tmp_path, tmp_path, progress=False)
    # Full grid: car tp 1 fp 1 -> 1/2; road tp 1 fn 1 -> 1/2; building fp 1 -> 0 (absent from the GT).
    assert full.present == ("car", "road")
    assert full.miou_present == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert full.miou == pytest.approx((1 / 2 + 1 / 2) / 19)
    frustum = evaluate_semantickitti(tmp_path, tmp_path, progress=False, mask="camera")
    assert frustum.per_class["car"] == pytest.approx(1.0) and frustum.per_class["road"] == pytest.approx(1.0)
    assert frustum.miou_present == pytest.approx(1.0) and frustum.iou_completion == pytest.approx(1.0)
    assert "mIoU (2 present)" in format_table(frustum)

    out = tmp_path / "ssc.json"
    argv = ["eval", "--benchmark", "semantickitti", "--pred", str(tmp_path), "--gt", str(tmp_path), "--quiet"]
    assert main([*argv, "--mask", "camera", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["miou_present"] == 100.0 and doc["present"] == ["car", "road"]
    (seq / "voxels" / "000000.camera_mask").unlink()
    with pytest.raises(LabelFileError, match=r"without a camera mask.*000000\.camera_mask"):
        evaluate_semantickitti(tmp_path, tmp_path, progress=False, mask="camera")


def test_write_prediction_official_layout(tmp_path: Path) -> None:
    """Vocabulary labels -> raw uint16 ids via learning_map_inv, read back with plain numpy as the
    semantic-kitti-api does (np.fromfile(uint16), flat index x * 256 * 32 + y * 32 + z)."""
    from occ_ros.datasets.semantickitti import prediction_path, semantickitti_vocabulary, write_prediction

    vocab = semantickitti_vocabulary()
    semantics = np.full(VOXEL_SHAPE, vocab.free_index, np.uint8)
    semantics[1, 2, 3] = vocab.index("car")  # learning 1 -> raw 10
    semantics[255, 0, 31] = vocab.index("traffic_sign")  # learning 19 -> raw 81
    semantics[0, 255, 0] = vocab.index("road")  # learning 9 -> raw 40
    path = write_prediction(prediction_path(tmp_path, "04", "000007"), semantics)
    assert path == tmp_path / "sequences" / "04" / "predictions" / "000007.label"
    flat = np.fromfile(path, dtype=np.uint16)
    assert flat.size == 256 * 256 * 32
    assert flat[1 * 8192 + 2 * 32 + 3] == 10 and flat[255 * 8192 + 31] == 81 and flat[255 * 32] == 40
    assert np.count_nonzero(flat) == 3  # free -> learning 0 -> raw 0
    bad = semantics.copy()
    bad[0, 0, 0] = 255
    with pytest.raises(ValueError, match=r"000008\.label.*255"):
        write_prediction(prediction_path(tmp_path, "04", "000008"), bad)
    with pytest.raises(ValueError, match=r"000009\.label.*shape"):
        write_prediction(prediction_path(tmp_path, "04", "000009"), semantics[:, :, :16])
    assert not (tmp_path / "sequences" / "04" / "predictions" / "000008.label").exists()


# ---------------------------------------------------------------------------------------------- kitti_mini & odd input
# Real SemanticKITTI data, read in place (licence: never copied into the repository).
KITTI_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "kitti_mini"
kitti_mini = pytest.mark.skipif(
    not (KITTI_MINI / "sequences").is_dir(), reason="../shared/fixtures/kitti_mini not present"
)
# image_2 sizes listed in kitti_mini/README.md
MINI_SIZES = {"00": (1241, 376), "01": (1241, 376), "02": (1241, 376), "04": (1226, 370), "05": (1226, 370),
              "06": (1226, 370), "07": (1226, 370), "09": (1226, 370)}  # fmt: skip


def _calib_by_hand(path: Path) -> dict[str, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        key, values = line.split(":")
        out[key] = np.array([float(v) for v in values.split()]).reshape(3, 4)
    return out


@kitti_mini
def test_kitti_mini_frames_images_and_camera() -> None:
    reader = SemanticKittiReader(KITTI_MINI)  # no voxels/ anywhere: "auto" reads every image_2 frame
    assert reader.every == "all" and len(reader) == 80
    assert {name: len(idx) for name, idx in reader.scenes().items()} == {name: 10 for name in MINI_SIZES}
    for name, indices in reader.scenes().items():
        sample = reader.load(indices[0])
        assert sample.gt is None and sample.rig.names == ["CAM2"]
        cam = sample.rig["CAM2"]
        width, height = MINI_SIZES[name]
        assert (cam.width, cam.height) == (width, height)
        assert sample.images["CAM2"].shape == (height, width, 3)
        calib = _calib_by_hand(KITTI_MINI / "sequences" / name / "calib.txt")
        P2 = calib["P2"]
        Tr4 = np.vstack([calib["Tr"], [0, 0, 0, 1]])
        assert np.array_equal(cam.K, P2[:, :3])
        # P2 = K [I | t]: t by hand, row by row from the bottom (K is upper triangular)
        tz = P2[2, 3]
        ty = (P2[1, 3] - P2[1, 2] * tz) / P2[1, 1]
        tx = (P2[0, 3] - P2[0, 2] * tz) / P2[0, 0]
        expected = np.eye(4)
        expected[:3, 3] = (tx, ty, tz)
        assert np.allclose(cam.cam_from_ego, expected @ Tr4, rtol=0, atol=1e-12)
        # The stereo baseline: CAM2 sits -P2[0,3]/P2[0,0] (~6 cm, to the left) from cam0 along x; the
        # rest of t is P2's few-mm rectification offset (P2[2,3] != 0).
        assert -tx == pytest.approx(-P2[0, 3] / P2[0, 0], abs=0.006)
        assert abs(tx) > 0.05
        # The fixture's scans were cropped with P2 @ Tr4: every point projects into image_2, in front.
        pts = read_scan(KITTI_MINI / "sequences" / name / "velodyne" / f"{sample.frame}.bin")[:, :3].astype(float)
        uv, depth = cam.project(pts)
        uvw = (P2 @ Tr4 @ np.c_[pts, np.ones(len(pts))].T).T
        assert np.allclose(uv, uvw[:, :2] / uvw[:, 2:], rtol=0, atol=1e-6)
        assert np.allclose(depth, uvw[:, 2], rtol=0, atol=1e-9)
        assert np.all(depth > 0)
        assert np.all((uv >= 0) & (uv < [width, height]))
        poses = reader.poses()[name]
        assert poses.shape == (10, 4, 4) and np.allclose(poses[0], np.eye(4), atol=1e-6)


@kitti_mini
def test_occ_inspect_kitti_mini(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(KITTI_MINI)]) == 0
    out = capsys.readouterr().out
    assert "80 samples" in out and "CAM2" in out and "1241x376" in out and "ground truth: no" in out


def test_reader_reads_jpeg_images(tmp_path: Path) -> None:
    seq = _small_sequence(tmp_path, voxels={})
    for png in sorted((seq / "image_2").glob("*.png")):
        assert cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, 100])
        png.unlink()
    reader = SemanticKittiReader(tmp_path)
    assert reader.every == "all" and len(reader) == 2
    s = reader[1]
    cam = s.rig["CAM2"]
    assert (cam.width, cam.height) == (16, 8) and s.images["CAM2"].shape == (8, 16, 3)
    assert np.abs(s.images["CAM2"][4, 8].astype(int) - [255, 0, 0]).max() <= 8  # RGB red, up to JPEG error
    (seq / "image_2" / "000001.png").write_bytes((seq / "image_2" / "000001.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"image_2: frame 000001 has two images"):
        SemanticKittiReader(tmp_path)


def test_reader_odd_input_names_the_file(tmp_path: Path) -> None:
    no_tr = {k: v for k, v in SIMPLE_P.items() if k != "Tr"}
    _small_sequence(tmp_path / "a", calib=no_tr, voxels={})
    with pytest.raises(ValueError, match=r"03/calib\.txt: no Tr line"):
        SemanticKittiReader(tmp_path / "a")
    _small_sequence(tmp_path / "b", poses=[IDENTITY_POSE] * 3, voxels={})  # 3 poses, 2 images
    with pytest.raises(ValueError, match=r"03/poses\.txt: 3 poses, expected 2"):
        SemanticKittiReader(tmp_path / "b")
    _small_sequence(tmp_path / "c", times=[0.0], voxels={})
    with pytest.raises(ValueError, match=r"03/times\.txt: 1 times, expected 2"):
        SemanticKittiReader(tmp_path / "c")


def test_scan_readers_and_length_check(tmp_path: Path) -> None:
    points = np.arange(20, dtype="<f4").reshape(5, 4)  # 5 points
    (tmp_path / "000000.bin").write_bytes(points.tobytes())
    labels = np.array([40, 10 | (3 << 16), 252, 0, 1], "<u4")
    (tmp_path / "000000.label").write_bytes(labels.tobytes())
    assert np.array_equal(read_scan(tmp_path / "000000.bin"), points)
    assert read_scan_labels(tmp_path / "000000.label", num_points=5).tolist() == [40, 196618, 252, 0, 1]
    assert check_scan_pair(tmp_path / "000000.bin", tmp_path / "000000.label") == 5

    (tmp_path / "000000.label").write_bytes(labels[:4].tobytes())  # one label short
    with pytest.raises(LabelFileError, match=r"000000\.label: 16 bytes = 4 labels, but .*000000\.bin has 5 points"):
        check_scan_pair(tmp_path / "000000.bin", tmp_path / "000000.label")
    with pytest.raises(LabelFileError, match=r"000000\.label: 4 labels, but .*000000\.bin has 5 points"):
        read_scan_labels(tmp_path / "000000.label", num_points=5, scan=tmp_path / "000000.bin")
    (tmp_path / "000001.bin").write_bytes(b"\x00" * 17)
    with pytest.raises(LabelFileError, match=r"000001\.bin: 17 bytes, not a multiple of 16"):
        read_scan(tmp_path / "000001.bin")
    with pytest.raises(LabelFileError, match=r"000001\.label: file not found"):
        check_scan_pair(tmp_path / "000000.bin", tmp_path / "000001.label")


def test_reader_gt_root_and_camera_mask(tmp_path: Path) -> None:
    _small_sequence(tmp_path / "data", voxels={})
    gt_dir = tmp_path / "gt" / "sequences" / "03" / "voxels"
    gt_dir.mkdir(parents=True)
    label = np.zeros(VOXEL_SHAPE, np.uint16)
    label[1, 1, 1] = 40  # road
    invalid = np.zeros(VOXEL_SHAPE, np.uint8)
    invalid[2, 2, 2] = 1
    camera = np.zeros(VOXEL_SHAPE, np.uint8)
    camera[1, 1, 1] = camera[2, 2, 2] = camera[3, 3, 3] = 1
    write_voxels(gt_dir / "000001.label", label)
    write_voxels(gt_dir / "000001.invalid", invalid)
    write_voxels(gt_dir / "000001.camera_mask", camera)
    reader = SemanticKittiReader(tmp_path / "data", gt_root=tmp_path / "gt")
    assert reader.every == "labels" and len(reader) == 1
    s = reader.load(0, images=False)
    assert s.frame == "000001" and s.gt is not None and s.gt.mask_camera is not None
    assert s.gt.semantics[1, 1, 1] == 8 and s.gt.semantics[2, 2, 2] == 255 and s.gt.semantics[3, 3, 3] == 19
    assert sorted(map(tuple, np.argwhere(s.gt.mask_camera).tolist())) == [(1, 1, 1), (3, 3, 3)]  # minus invalid
    with pytest.raises(FileNotFoundError, match="nowhere/sequences"):
        SemanticKittiReader(tmp_path / "data", gt_root=tmp_path / "nowhere")
