"""Pseudo-labels: simulated teachers, lifting, densification, and the resumable `occ labels` job."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from occ_ros.core.config import ConfigError, from_mapping
from occ_ros.core.grid import GridSpec
from occ_ros.core.rig import Camera, CameraRig
from occ_ros.core.transforms import invert_transform, make_transform, yaw_transform
from occ_ros.core.vocabulary import OCC3D, SemanticClass, Vocabulary
from occ_ros.datasets.sample import IGNORE_LABEL, load_labels
from occ_ros.datasets.synth import SynthReader
from occ_ros.eval.occ3d import Occ3DMetric
from occ_tools.cli import main
from occ_training.labels.depth_calibration import CalibrationConfig
from occ_training.labels.lifting import LiftedFrame, LiftingConfig, backproject, densify, lift_frame, vote
from occ_training.labels.pipeline import (
    LabelConfig,
    LabelError,
    PseudoLabeller,
    default_workers,
    load_label_settings,
    run_labels,
    shard_scenes,
    uncalibrated_scale_shift,
)
from occ_training.synth.sequence import generate
from occ_training.teachers.base import SemanticMap, TeacherError
from occ_training.teachers.simulated import (
    SimDepthConfig,
    SimDepthTeacher,
    SimSegmentationConfig,
    SimSegmentationTeacher,
    degrade_segmentation,
)

# Optical frame from ego: x right = -y ego, y down = -z ego, z forward = +x ego.
OPTICAL_FROM_EGO = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("labels") / "seq", frames=7, seed=5, progress=False)


def _front_camera(width: int = 40, height: int = 30, height_m: float = 1.5) -> Camera:
    K = np.array([[20.0, 0, (width - 1) / 2], [0, 20.0, (height - 1) / 2], [0, 0, 1]])
    ego_from_cam = invert_transform(OPTICAL_FROM_EGO)
    ego_from_cam[:3, 3] = (0.0, 0.0, height_m)
    return Camera("CAM_FRONT", "cam_front", width, height, K, invert_transform(ego_from_cam))


# ---------------------------------------------------------------------------------------- simulated teachers
def test_simulated_segmentation_is_mostly_right_and_degrades_as_configured(sequence):
    reader = SynthReader(sequence)
    sample = reader.load(2)
    truth = reader.semantics_2d(2)
    noisy = SimSegmentationTeacher(sequence).segment(sample)
    clean_config = SimSegmentationConfig(boundary_jitter=0, confusions=(), miss_probability=0, boundary_width=0)
    clean = SimSegmentationTeacher(sequence, config=clean_config).segment(sample)
    agree_noisy, agree_clean = [], []
    for name, gt in truth.items():
        seen = gt != IGNORE_LABEL
        labels_clean, conf_clean = clean[name].labels()
        np.testing.assert_array_equal(labels_clean, gt)  # no noise: the truth, confidence 0.9
        assert np.allclose(conf_clean[seen], 0.9)
        labels, conf = noisy[name].labels()
        agree_noisy.append(np.mean(labels[seen] == gt[seen]))
        agree_clean.append(1.0)
        assert noisy[name].probs.shape == (*gt.shape, OCC3D.num_semantic)
        assert np.all(noisy[name].probs.sum(-1) <= 1 + 1e-6)
    assert 0.6 < np.mean(agree_noisy) < 0.99


def test_confusions_relabel_whole_regions_and_small_objects_vanish():
    labels = np.full((60, 100), OCC3D.index("driveable_surface"), dtype=np.uint8)
    labels[10:40, 10:50] = OCC3D.index("truck")  # a big truck
    labels[5:7, 80:82] = OCC3D.index("traffic_cone")  # 4 pixels: small
    always = SimSegmentationConfig(
        boundary_jitter=0,
        confusions=(("truck", "car", 1.0),),
        small_area=0.001,  # 10 px at width 100
        miss_probability=1.0,
        boundary_width=0,
    )
    out, conf = degrade_segmentation(labels, OCC3D, always, np.random.default_rng(0)).labels()
    assert np.all(out[10:40, 10:50] == OCC3D.index("car"))
    assert np.allclose(conf[10:40, 10:50], always.confused_confidence)
    assert np.all(out[5:7, 80:82] == IGNORE_LABEL)
    assert np.all(out[50:, :] == OCC3D.index("driveable_surface"))


def test_simulated_relative_depth_is_an_affine_of_inverse_depth(sequence):
    reader = SynthReader(sequence)
    sample = reader.load(1)
    exact = SimDepthConfig(kind="relative", noise=0.0, edge_blur=0.0)
    teacher = SimDepthTeacher(sequence, exact)
    maps = teacher.estimate(sample)
    truth = reader.depth(1)
    for name, (scale, shift) in teacher.true_scale_shift(sample).items():
        d = maps[name].to_metric(scale, shift)
        surface = truth[name] > 0
        np.testing.assert_allclose(d[surface], truth[name][surface], rtol=1e-4)
    # Different cameras / frames get different unknowns, and the draw does not depend on call order.
    pairs = set(teacher.true_scale_shift(sample).values()) | set(teacher.true_scale_shift(reader.load(2)).values())
    assert len(pairs) == 12
    again = SimDepthTeacher(sequence, exact).estimate(sample)
    np.testing.assert_array_equal(again["CAM_BACK"].values, maps["CAM_BACK"].values)


def test_simulated_teachers_refuse_samples_of_another_world(sequence, tmp_path):
    other = replace(SynthReader(sequence).load(0), stamp_ns=1)
    with pytest.raises(TeacherError, match="not a frame of the synthetic sequence"):
        SimDepthTeacher(sequence).estimate(other)
    with pytest.raises(TeacherError, match="occ synth"):
        SimSegmentationTeacher(tmp_path)


def test_a_vocabulary_without_prompts_is_refused(sequence):
    bare = Vocabulary("bare", (SemanticClass("thing", (1, 2, 3)), SemanticClass("free", (0, 0, 0))))
    with pytest.raises(ValueError, match="no text prompts"):
        SimSegmentationTeacher(sequence, vocabulary=bare)


# ---------------------------------------------------------------------------------------- geometry
def test_backproject_matches_hand_computed_points():
    cam = _front_camera()
    depth = np.zeros((30, 40), dtype=np.float32)
    depth[14, 19] = 10.0  # ~centre pixel (cx = 19.5, cy = 14.5)
    depth[0, 39] = 4.0  # top right
    points, pixels = backproject(depth, cam)
    assert pixels.tolist() == [39, 14 * 40 + 19]
    # top right: u - cx = 19.5, v - cy = -14.5 -> optical (3.9, -2.9, 4) -> ego (4, -3.9, 1.5 + 2.9)
    np.testing.assert_allclose(points[0], [4.0, -3.9, 4.4], atol=1e-12)
    np.testing.assert_allclose(points[1], [10.0, 0.25, 1.5 + 0.25], atol=1e-12)


def test_vote_is_confidence_weighted_and_counts_frames():
    grid = GridSpec((0, 0, 0), (2, 1, 1), (1, 1, 1))
    points = np.array([[0.5, 0.5, 0.5]] * 3 + [[1.5, 0.5, 0.5]])
    labels = np.array([1, 2, 2, 0])
    weights = np.array([0.9, 0.4, 0.4, 1.0])
    voxels, votes, counts, support = vote(grid, points, labels, weights, 3, sources=np.array([0, 0, 5, 5]))
    assert voxels.tolist() == [0, 1]
    np.testing.assert_allclose(votes, [[0, 0.9, 0.8], [1.0, 0, 0]])
    assert counts.tolist() == [3, 1] and support.tolist() == [2, 1]
    # frame ids far apart (no dense frames x voxels table): the same answer
    far = vote(grid, points, labels, weights, 3, sources=np.array([0, 0, 1 << 30, 1 << 30]))
    assert far[0].tolist() == [0, 1] and far[2].tolist() == [3, 1] and far[3].tolist() == [2, 1]
    # points outside the grid do not vote; none inside: no voxel
    outside = vote(grid, points + 10.0, labels, weights, 3, sources=np.array([0, 1, 2, 3]))
    assert outside[0].size == 0 and outside[1].shape == (0, 3)


def _wall_frame(x_world: float, label: int, ego_x: float, rig: CameraRig) -> LiftedFrame:
    """A frame whose camera sees a wall at world x = ``x_world`` (every pixel), from ego at ``ego_x``."""
    cam = rig["CAM_FRONT"]
    depth = np.full((cam.height, cam.width), x_world - ego_x, dtype=np.float32)
    labels = np.full((cam.height, cam.width), label, dtype=np.uint8)
    conf = np.full((cam.height, cam.width), 0.9, dtype=np.float32)
    pose = yaw_transform(ego_x, 0.0, 0.0, 0.0)
    config = LiftingConfig(max_depth=100)
    return lift_frame({"CAM_FRONT": labels}, {"CAM_FRONT": conf}, {"CAM_FRONT": depth}, rig, pose, config)


def test_static_classes_accumulate_and_dynamic_ones_come_only_from_the_key_frame():
    rig = CameraRig((_front_camera(),))
    grid = GridSpec.demo()
    car, wall = OCC3D.index("car"), OCC3D.index("manmade")
    # Frames 0..4, ego moving +1 m per frame. A static wall at x = 20 is seen by every frame; a car is seen
    # at x = 12 in frame 0 only (it has moved on), and must not appear in frame 2's labels.
    frames = {j: _wall_frame(20.0, wall, float(j), rig) for j in range(1, 5)}
    frames[0] = _wall_frame(12.0, car, 0.0, rig)
    config = LiftingConfig(window=2, dynamic_window=0, min_support=2)
    labels = densify(2, frames, rig, grid, OCC3D, config)
    sem = labels.semantics
    # Wall at world x = 20 -> key ego x = 18 -> voxel i = (18 + 32) / 0.8 = 62.5 -> 62.
    assert np.all(np.isin(np.unique(sem[62]), [wall, OCC3D.free_index])) and np.any(sem[62] == wall)
    assert not np.any(sem == car), "a dynamic object from another frame smeared into the key frame"
    # The camera sees the wall, not behind it; the space in front of it is observed.
    assert labels.mask_camera[62].any() and not labels.mask_camera[64:, 30:50].any()
    assert labels.mask_camera[45, 40, 2]  # 4 m ahead at camera height: seen, free
    assert sem[45, 40, 2] == OCC3D.free_index


def test_dynamic_objects_of_the_key_frame_are_kept():
    rig = CameraRig((_front_camera(),))
    car = OCC3D.index("car")
    frames = {j: _wall_frame(20.0, OCC3D.index("manmade"), float(j), rig) for j in range(3)}
    frames[1] = _wall_frame(12.0, car, 1.0, rig)
    labels = densify(1, frames, rig, GridSpec.demo(), OCC3D, LiftingConfig(window=1, min_support=2))
    assert np.any(labels.semantics == car)


def test_depth_spread_votes_along_the_ray_but_carves_to_the_estimate():
    rig = CameraRig((_front_camera(),))
    cam = rig["CAM_FRONT"]
    grid = GridSpec.demo()
    wall = OCC3D.index("manmade")
    depth = np.full((cam.height, cam.width), 10.0, dtype=np.float32)
    labels = np.full((cam.height, cam.width), wall, dtype=np.uint8)
    conf = np.full((cam.height, cam.width), 0.9, dtype=np.float32)
    config = LiftingConfig(max_depth=100, depth_spread=(-0.1, 0.1), min_support=1, window=0)
    frame = lift_frame({"CAM_FRONT": labels}, {"CAM_FRONT": conf}, {"CAM_FRONT": depth}, rig, np.eye(4), config)
    n = cam.height * cam.width
    assert len(frame) == 3 * n and int(frame.primary_mask.sum()) == n
    # Depth is along the optical axis (ego x): one pixel's three points lie on its ray at ego x = 9, 10, 11 m.
    one = np.flatnonzero((frame.pixels[:, 0] == 15) & (frame.pixels[:, 1] == 20))
    np.testing.assert_allclose(np.sort(frame.points[one, 0]), [9.0, 10.0, 11.0], atol=1e-9)
    assert frame.primary_mask[one].tolist() == [True, False, False]
    sem = densify(0, {0: frame}, rig, grid, OCC3D, config).semantics
    # Voxel x index (x + 32) / 0.8: all three planes hold the wall, since rays stop short of 10 m and never
    # carve the copies in front of or behind the estimate.
    for x in (9.0, 10.0, 11.0):
        assert np.any(sem[int((x + 32) / 0.8)] == wall), x
    keep = frame.primary_mask
    primary_only = LiftedFrame(
        frame.points[keep],
        frame.labels[keep],
        frame.weights[keep],
        frame.cameras[keep],
        frame.pixels[keep],
        frame.world_from_ego,
    )
    plain = densify(0, {0: primary_only}, rig, grid, OCC3D, config).semantics
    assert not np.any(plain[int((11.0 + 32) / 0.8)] == wall) and np.any(plain[int((10.0 + 32) / 0.8)] == wall)
    with pytest.raises(ValueError, match="depth_spread"):
        LiftingConfig(depth_spread=(0.0, 0.1))


def test_lifting_config_validation():
    with pytest.raises(ValueError, match="window"):
        LiftingConfig(window=-1)
    with pytest.raises(ValueError, match="multiple of pixel_stride"):
        LiftingConfig(pixel_stride=2, ray_stride=3)
    with pytest.raises(ValueError, match="carve_stride .* multiple of pixel_stride"):
        LiftingConfig(pixel_stride=2, ray_stride=2, carve_stride=3)
    with pytest.raises(ValueError, match="carve_stride"):
        LiftingConfig(carve_stride=-1)
    # 0 (the default) carves along the camera-mask rays, so a coarse pixel_stride needs nothing else
    assert LiftingConfig(pixel_stride=8, ray_stride=8).carve_every == 8
    assert LiftingConfig(ray_stride=4, carve_stride=2).carve_every == 2
    with pytest.raises(ConfigError, match="unknown keys \\['windw'\\]"):
        from_mapping(LiftingConfig, {"windw": 3}, "labels.yaml: lifting")
    with pytest.raises(ConfigError, match="lifting.window: expected int"):
        from_mapping(LiftingConfig, {"window": "four"}, "lifting")


def test_uncalibrated_mapping_stretches_the_percentiles_over_the_depth_range():
    values = np.linspace(0.0, 1.0, 101, dtype=np.float32)[None, :]
    ss = uncalibrated_scale_shift(values, np.ones_like(values, bool), min_depth=1.0, max_depth=50.0)
    assert ss.scale * 0.02 + ss.shift == pytest.approx(1 / 50)
    assert ss.scale * 0.98 + ss.shift == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- the job
def _labeller(sequence: Path, window: int, depth: str = "metric") -> PseudoLabeller:
    seg = SimSegmentationTeacher(sequence)
    dep = SimDepthTeacher(sequence, SimDepthConfig(kind=depth))  # type: ignore[arg-type]
    return PseudoLabeller(seg, dep, LabelConfig(lifting=LiftingConfig(window=window)))


def _miou(pred_dir: Path, reader: SynthReader) -> float:
    metric = Occ3DMetric(OCC3D, mask="camera")
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        pred = load_labels(pred_dir / sample.scene / sample.frame / "labels.npz")
        metric.update(pred.semantics, sample.gt.semantics, sample.gt.mask_camera)
    return metric.compute().miou


def test_labels_are_occ3d_files_and_densification_helps(sequence, tmp_path):
    reader = SynthReader(sequence)
    single = run_labels(reader, tmp_path / "single", _labeller(sequence, 0), progress=False)
    dense = run_labels(reader, tmp_path / "dense", _labeller(sequence, 3), progress=False)
    assert single.written == dense.written == len(reader)
    labels = load_labels(tmp_path / "dense" / reader.scene / "000003" / "labels.npz", 18, reader.grid.shape)
    assert labels.mask_camera is not None and labels.mask_camera.any()
    manifest = json.loads((tmp_path / "dense" / "labels.json").read_text())
    assert manifest["config"]["lifting"]["window"] == 3
    miou_single, miou_dense = _miou(tmp_path / "single", reader), _miou(tmp_path / "dense", reader)
    assert miou_dense > miou_single + 1.0, (miou_single, miou_dense)
    assert miou_dense > 20.0


def test_a_crash_loses_no_finished_frame_and_a_rerun_continues(sequence, tmp_path):
    reader = SynthReader(sequence)
    out = tmp_path / "labels"

    class Crash(RuntimeError):
        pass

    def crash_after_three(sample, seconds):
        if sample.index == 2:
            raise Crash

    with pytest.raises(Crash):
        run_labels(reader, out, _labeller(sequence, 1), progress=False, on_frame=crash_after_three)
    done = sorted(p.parent.name for p in out.rglob("labels.npz"))
    assert done == ["000000", "000001", "000002"]
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix not in (".npz", ".json")]
    first = (out / reader.scene / "000001" / "labels.npz").read_bytes()
    again = run_labels(reader, out, _labeller(sequence, 1), progress=False)
    assert (again.skipped, again.written) == (3, len(reader) - 3)
    assert (out / reader.scene / "000001" / "labels.npz").read_bytes() == first
    # A full rerun writes each remaining frame exactly as an uninterrupted run does.
    fresh = tmp_path / "fresh"
    run_labels(reader, fresh, _labeller(sequence, 1), progress=False)
    for name in ("000004", "000006"):
        a = np.load(out / reader.scene / name / "labels.npz")
        b = np.load(fresh / reader.scene / name / "labels.npz")
        np.testing.assert_array_equal(a["semantics"], b["semantics"])
    # A rerun with another configuration is refused instead of mixing labels.
    with pytest.raises(LabelError, match="different config"):
        run_labels(reader, out, _labeller(sequence, 2), progress=False)


def _relative_labeller(sequence: Path) -> PseudoLabeller:
    """Relative depth calibrated per frame, at a small working size (the arithmetic of the preset, less of it)."""
    seg = SimSegmentationTeacher(sequence)
    dep = SimDepthTeacher(sequence, SimDepthConfig(kind="relative"))
    small = CalibrationConfig(max_width=64, search_width=64, refine_iters=10)
    return PseudoLabeller(seg, dep, LabelConfig(lifting=LiftingConfig(window=2), calibrator=small))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("labels.npz"))}


def test_calibrating_ahead_in_threads_writes_the_same_labels(sequence, tmp_path):
    reader = SynthReader(sequence)
    inline = run_labels(reader, tmp_path / "inline", _relative_labeller(sequence), progress=False, workers=0)
    threaded = run_labels(reader, tmp_path / "threads", _relative_labeller(sequence), progress=False, workers=2)
    assert inline.written == threaded.written == len(reader)
    assert threaded.calibration == inline.calibration  # every frame's scale and shift, bit for bit
    assert _files(tmp_path / "threads") == _files(tmp_path / "inline")
    assert not [t for t in threading.enumerate() if t.name.startswith("occ-labels")]
    # Resuming with frames missing in the middle (each needs its own window of calibrations) gives them back.
    for name in ("000002", "000005"):
        (tmp_path / "threads" / reader.scene / name / "labels.npz").unlink()
    again = run_labels(reader, tmp_path / "threads", _relative_labeller(sequence), progress=False, workers=3)
    assert (again.written, again.skipped) == (2, len(reader) - 2)
    assert _files(tmp_path / "threads") == _files(tmp_path / "inline")
    with pytest.raises(LabelError, match="workers"):
        run_labels(reader, tmp_path / "bad", _relative_labeller(sequence), progress=False, workers=-1)


def test_default_workers_count_the_cores_each_torchrun_rank_has():
    assert default_workers(cores=2, environ={}) == 2
    assert default_workers(cores=16, environ={}) == 2  # calibrations are a few frames ahead, not a wide pool
    assert default_workers(cores=1, environ={}) == 0  # one worker is no faster than the main thread alone
    assert default_workers(cores=2, environ={"LOCAL_WORLD_SIZE": "2"}) == 0
    assert default_workers(cores=8, environ={"LOCAL_WORLD_SIZE": "4"}) == 2
    with pytest.raises(LabelError, match="LOCAL_WORLD_SIZE"):
        default_workers(cores=2, environ={"LOCAL_WORLD_SIZE": "two"})


def test_a_failed_calibration_in_a_thread_stops_the_job_and_keeps_what_was_written(sequence, tmp_path, monkeypatch):
    from occ_training.labels import pipeline

    real = pipeline.fit_scale_shift

    def fail_on_frame_4(frames, targets, rig, config):
        if np.allclose(frames[targets[0]].world_from_ego, poses[4]):
            raise ValueError("frame 4: calibration failed")
        return real(frames, targets, rig, config)

    reader = SynthReader(sequence)
    poses = [reader.load(i, images=False).world_from_ego for i in range(len(reader))]
    monkeypatch.setattr(pipeline, "fit_scale_shift", fail_on_frame_4)
    out = tmp_path / "labels"
    with pytest.raises(ValueError, match="frame 4"):
        run_labels(reader, out, _relative_labeller(sequence), progress=False, workers=2)
    # key frame 2 needs frame 4's depth (window 2): frames 0 and 1 were written, atomically, and nothing else
    assert sorted(p.parent.name for p in out.rglob("labels.npz")) == ["000000", "000001"]
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix not in (".npz", ".json")]
    assert not [t for t in threading.enumerate() if t.name.startswith("occ-labels")]


def test_shards_split_scenes_between_ranks(sequence, tmp_path):
    assert shard_scenes(["c", "a", "b"], 0, 2) == ["a", "c"]
    assert shard_scenes(["c", "a", "b"], 1, 2) == ["b"]
    with pytest.raises(LabelError):
        shard_scenes(["a"], 2, 2)
    reader = SynthReader(sequence)
    idle = run_labels(reader, tmp_path / "out", _labeller(sequence, 0), shard=(1, 2), progress=False)
    assert idle.written == 0 and idle.scenes == []


def test_frames_without_a_pose_are_refused(sequence, tmp_path):
    reader = SynthReader(sequence)
    labeller = _labeller(sequence, 0)
    bad = replace(reader.load(0), world_from_ego=np.full((4, 4), np.nan))
    with pytest.raises(LabelError, match="no valid ego pose"):
        labeller.teach(bad)
    skewed = replace(reader.load(0), world_from_ego=make_transform(np.diag([1.0, 2.0, 1.0]), [0, 0, 0]))
    with pytest.raises(LabelError, match=reader.scene):
        labeller.teach(skewed)


def test_cli_labels_then_eval(sequence, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["labels", "--data", str(sequence), "--out", str(out), "--depth", "metric", "--window", "2", "--quiet"]
    assert main(args) == 0
    assert "7 frames written" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 frames written, 7 already done" in capsys.readouterr().out
    assert main(["eval", "--pred", str(out), "--gt", str(sequence / "gts"), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["samples"] == 7


def test_cli_errors_name_the_problem(sequence, tmp_path, capsys):
    args = ["labels", "--data", str(sequence), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*args, "--teacher", "hf", "--depth-model", str(tmp_path / "nowhere")]) == 1
    assert "--seg-model" in capsys.readouterr().err
    assert main([*args, "--teacher", "hf", "--seg-model", str(tmp_path / "nowhere"), "--depth-model", "x"]) == 1
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("lifting: {windw: 2}\n")
    assert main([*args, "--config", str(bad)]) == 1
    assert "windw" in capsys.readouterr().err and str(bad) in capsys.readouterr().err + str(bad)
    assert main(["labels", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert main([*args, "--threads", "-1"]) == 1
    assert "--threads" in capsys.readouterr().err
    assert main([*args, "--workers", "-1"]) == 1
    assert "--workers" in capsys.readouterr().err


def test_cli_labels_runs_with_the_threads_asked_for(sequence, tmp_path, monkeypatch):
    import torch

    from occ_training.labels import pipeline

    seen = []
    real = pipeline.run_labels

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "run_labels", spy)
    before = torch.get_num_threads()
    args = ["labels", "--data", str(sequence), "--depth", "metric", "--window", "0", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # default: one thread
    assert main([*args, "--out", str(tmp_path / "b"), "--threads", "0"]) == 0  # torch's own setting
    assert seen == [1, before]
    assert torch.get_num_threads() == before  # restored after the command


def test_default_settings_file_matches_the_dataclass_defaults():
    from occ_ros.core.resources import config_dir

    label, sim = load_label_settings(config_dir() / "labels" / "default.yaml")
    assert label.lifting == LiftingConfig()
    assert label.calibration == "frame"
    assert sim.segmentation == SimSegmentationConfig()
    assert sim.depth == SimDepthConfig()


def test_semantic_map_from_labels_round_trips():
    labels = np.array([[0, 3], [IGNORE_LABEL, 16]], dtype=np.uint8)
    sm = SemanticMap.from_labels(labels, np.array([[0.9, 0.6], [0.0, 0.7]]), 17)
    back, conf = sm.labels()
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(conf, [[0.9, 0.6], [0.0, 0.7]])


def test_calibration_window_is_contiguous_and_in_time_order():
    from occ_training.labels.pipeline import calibration_window

    assert calibration_window(5, 10, (-1, 1)) == ([4, 5, 6], 1)
    assert calibration_window(0, 10, (-1, 1)) == ([0, 1], 0)
    assert calibration_window(9, 10, (-2, 1)) == ([7, 8, 9], 2)
    assert calibration_window(3, 10, (2,)) == ([3, 4, 5], 0)


def test_a_sequence_constant_affine_stays_fixed_over_frames(sequence):
    reader = SynthReader(sequence)
    per_frame = SimDepthTeacher(sequence)
    per_sequence = SimDepthTeacher(sequence, SimDepthConfig(affine_per="sequence"))
    a, b = (per_sequence.true_scale_shift(reader.load(i)) for i in (0, 3))
    assert a == b and len(set(a.values())) == 6
    assert per_frame.true_scale_shift(reader.load(0)) != per_frame.true_scale_shift(reader.load(3))


def test_simulated_clip_features_answer_text_queries(sequence):
    from occ_training.teachers.base import class_text_embeddings
    from occ_training.teachers.simulated import SimFeatureTeacher

    reader = SynthReader(sequence)
    teacher = SimFeatureTeacher(sequence)
    text = class_text_embeddings(teacher, OCC3D)  # (17, D)
    assert text.shape == (17, teacher.config.dim)
    np.testing.assert_allclose(np.linalg.norm(teacher.embed_text(["car", "a purple cow"]), axis=1), 1, rtol=1e-5)
    # A prompt is closer to its own class than to any other; unrelated text is close to none.
    car = teacher.embed_text(["sedan"])[0] @ text.T
    assert np.argmax(car) == OCC3D.index("car") and car.max() > 0.8
    assert (teacher.embed_text(["a purple cow"])[0] @ text.T).max() < 0.6
    feats = teacher.features(reader.load(2))
    truth = reader.semantics_2d(2)["CAM_FRONT"]
    fmap = feats["CAM_FRONT"].features
    assert fmap.shape == (14, 25, teacher.config.dim)  # 8 px cells at 200 px width (64 at 1600)
    # Per-cell open-vocabulary argmax agrees with the majority class of most cells.
    pred = np.argmax(fmap @ text.T, axis=-1)
    centre = truth[4::8, 4::8][: fmap.shape[0], : fmap.shape[1]]
    seen = centre != IGNORE_LABEL
    assert np.mean(pred[seen] == centre[seen]) > 0.8


def test_labels_from_the_bag_match_labels_from_the_files(sequence, tmp_path):
    from occ_ros.core.rig import config_path
    from occ_ros.datasets.rosbag_reader import RosbagReader

    bag = RosbagReader(sequence / "bag", config_path("datasets", "synth_bag.yaml"))
    files = SynthReader(sequence)
    run_labels(bag, tmp_path / "bag", _labeller(sequence, 1), progress=False)
    run_labels(files, tmp_path / "files", _labeller(sequence, 1), progress=False)
    from_bag = sorted((tmp_path / "bag").rglob("labels.npz"))
    from_files = sorted((tmp_path / "files").rglob("labels.npz"))
    assert len(from_bag) == len(from_files) == len(files)
    for a, b in zip(from_bag, from_files, strict=True):
        sa, sb = np.load(a)["semantics"], np.load(b)["semantics"]
        assert np.mean(sa == sb) > 0.999


def test_sequence_calibration_targets_are_evenly_spaced():
    from occ_training.labels.depth_calibration import sequence_targets

    assert sequence_targets(5, 8) == [0, 1, 2, 3, 4]
    assert sequence_targets(24, 4) == [0, 8, 15, 23]


def test_consistent_depth_keeps_what_other_frames_confirm():
    """A wall 10 m ahead seen from x = 0 and from x = 1 (9 m ahead there): a pixel of frame 0 whose depth is 10 m
    lands on the other frame's wall at 9 m and is confirmed; one at 12 m (a bad estimate) lands at 11 m where the
    other frame says 9 m and is not."""
    from occ_training.labels.lifting import consistent_depth

    cam = _front_camera()
    wall = np.full((cam.height, cam.width), 10.0, np.float32)
    wall[5, 7] = 12.0  # wrong
    wall[0, 0] = 0.0  # unknown stays unknown
    other = np.full_like(wall, 9.0)
    moved = yaw_transform(1.0, 0.0, 0.0, 0.0)
    out = consistent_depth(wall, cam, np.eye(4), [(other, moved)], tolerance=0.05, min_views=1)
    assert out[5, 7] == 0.0 and out[0, 0] == 0.0
    # Column u lands at u' = 19.5 + (u - 19.5) * 10 / 9 in the other view (row v: 14.5 + (v - 14.5) * 10 / 9), so
    # columns 0, 1, 38, 39 and rows 0, 29 leave its image and are not confirmed; everything well inside is.
    inside = np.zeros_like(wall, dtype=bool)
    inside[2:28, 3:37] = True
    inside[5, 7] = False
    assert np.all(out[inside] == 10.0)
    assert not out[:, [0, 1, 38, 39]].any() and not out[[0, 29], :].any()
    # two confirmations needed, one given: nothing survives; a second neighbour that agrees restores them
    assert not consistent_depth(wall, cam, np.eye(4), [(other, moved)], 0.05, 2).any()
    again = consistent_depth(wall, cam, np.eye(4), [(other, moved), (wall, np.eye(4))], 0.05, 2)
    assert again[15, 20] == 10.0 and again[5, 7] == 0.0
    with pytest.raises(ValueError, match="consistency_neighbours"):
        LiftingConfig(consistency_neighbours=(0, 1))
