"""``occ replay`` on small hand-made bags with a fake backend: missing camera topics, the marker rate, no partial
output when a replay fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_node import CAMERAS, CAMS, GRID, OCCUPIED, T0, VOCAB, FakeBackend, images, infos

from occ_ros.core.transforms import invert_transform
from occ_ros.io.labels import LABELS_FILE, OccupancyLabels, load_labels, save_labels
from occ_ros.io.rosbag import BagWriter, read_messages, tf_message, transform_stamped
from occ_ros.replay import ReplayError, replay
from occ_tools.cli import main

FRAMES = 3
PERIOD_NS = 100_000_000  # 10 Hz


def write_bag(path: Path, cameras: tuple[str, ...] = CAMS, frames: int = FRAMES) -> Path:
    """A rosbag2 (sqlite3) with /tf_static and, for each camera in ``cameras``, its images and CameraInfo."""
    with BagWriter(path, storage="sqlite3") as writer:
        statics = [
            transform_stamped(invert_transform(CAMERAS[name].cam_from_ego), T0, "base_link", CAMERAS[name].frame_id)
            for name in CAMS
        ]
        writer.write("/tf_static", tf_message(statics), T0)
        for n in range(frames):
            stamp = T0 + n * PERIOD_NS
            imgs = dict(zip(CAMS, images(stamp), strict=True))
            cams = infos(stamp)
            for name in cameras:
                topic = f"/{name.lower()}"
                writer.write(f"{topic}/camera_info", cams[name], stamp)
                writer.write(f"{topic}/image_raw", imgs[name], stamp)
    return path


def test_a_complete_bag_replays_every_frame(tmp_path: Path) -> None:
    summary = replay(write_bag(tmp_path / "bag"), FakeBackend(), tmp_path / "out", progress=False)
    assert summary.synchronized == summary.processed == FRAMES


def leftovers(folder: Path) -> list[str]:
    """What a replay left in ``folder`` besides the input bag."""
    return sorted(p.name for p in folder.iterdir() if p.name != "bag")


def test_a_camera_missing_from_the_bag_is_named_before_any_message_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rosbags.highlevel import AnyReader

    import occ_ros.replay

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bag's messages were read")

    bag = write_bag(tmp_path / "bag", cameras=("CAM_FRONT",))
    monkeypatch.setattr(AnyReader, "messages", never)
    monkeypatch.setattr(occ_ros.replay, "open_backend", lambda *args, **kwargs: FakeBackend())
    args = ["replay", "--bag", str(bag), "--model", "fake.onnx", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    missing = "/cam_back/image_raw, /cam_back/camera_info"
    assert err.startswith(f"occ replay: error: {bag} has no topic {missing}: no frame can be synchronized without ")
    assert "  /cam_front/image_raw  [sensor_msgs/msg/Image]" in err  # what the bag has
    assert leftovers(tmp_path) == []


def test_no_synchronized_frame_is_an_error_and_writes_no_bag(tmp_path: Path) -> None:
    """Every topic is there, but the cameras' stamps never fall within the slop of each other."""
    bag = tmp_path / "bag"
    with BagWriter(bag, storage="sqlite3") as writer:
        for n in range(FRAMES):
            stamp = T0 + n * PERIOD_NS
            for offset, name in enumerate(CAMS):
                shifted = stamp + offset * PERIOD_NS // 2  # 50 ms apart: outside the default 0.05 s slop
                topic = f"/{name.lower()}"
                writer.write(f"{topic}/camera_info", infos(shifted)[name], shifted)
                writer.write(f"{topic}/image_raw", images(shifted)[CAMS.index(name)], shifted)
    with pytest.raises(ReplayError, match=r"no frame could be synchronized from 12 messages \(messages per input: "):
        replay(bag, FakeBackend(), tmp_path / "out", progress=False)
    assert leftovers(tmp_path) == []


def test_a_marker_rate_of_zero_writes_markers_for_every_frame(tmp_path: Path) -> None:
    summary = replay(write_bag(tmp_path / "bag"), FakeBackend(), tmp_path / "out", marker_rate_hz=0, progress=False)
    assert summary.processed == FRAMES
    markers = [m for m in read_messages(tmp_path / "out") if m[0] == "/occupancy_node/markers"]
    assert len(markers) == FRAMES
    assert leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failing_replay_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    import occ_ros.replay

    bag = write_bag(tmp_path / "bag")
    stamp = occ_ros.replay.ns_from_stamp
    calls = {"n": 0}

    def failing(value: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2 * len(CAMS) + 1:  # the first frame is through; fail on the second
            raise error
        return stamp(value)

    monkeypatch.setattr(occ_ros.replay, "ns_from_stamp", failing)
    with pytest.raises(type(error)):
        replay(bag, FakeBackend(), tmp_path / "out", predictions=tmp_path / "pred", progress=False)
    assert leftovers(tmp_path) == []


def stamped_ground_truth(folder: Path, classes: list[tuple[int, int, int, int]] = OCCUPIED) -> Path:
    """``<stamp_ns>/labels.npz`` per frame of :func:`write_bag`: the fake model's voxels (``classes``), every voxel
    observed."""
    for n in range(FRAMES):
        semantics = np.full(GRID.shape, VOCAB.free_index, np.uint8)
        for i, j, k, c in classes:
            semantics[i, j, k] = c
        seen = np.ones(GRID.shape, bool)
        save_labels(folder / str(T0 + n * PERIOD_NS) / LABELS_FILE, OccupancyLabels(semantics, seen, seen, GRID))
    return folder


def test_replay_scores_against_a_folder_of_stamped_label_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`occ replay --gt` takes a folder of <stamp_ns>/labels.npz files (what `--predictions` writes) as well as a
    dataset folder."""
    import occ_ros.replay

    monkeypatch.setattr(occ_ros.replay, "open_backend", lambda *args, **kwargs: FakeBackend())
    bag = write_bag(tmp_path / "bag")
    gt = stamped_ground_truth(tmp_path / "gt")
    args = ["replay", "--bag", str(bag), "--model", "fake.onnx", "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*args, "--gt", str(gt), "--predictions", str(tmp_path / "pred")]) == 0
    assert "accuracy: mIoU 100.00  IoU 100.00 over 3 frames (camera mask)" in capsys.readouterr().out
    # what --predictions wrote is itself such a folder (without masks it is no ground truth: the error names it)
    again = ["replay", "--bag", str(bag), "--model", "fake.onnx", "--out", str(tmp_path / "out2"), "--quiet"]
    assert main([*again, "--gt", str(tmp_path / "pred")]) == 1
    assert "mask_camera" in capsys.readouterr().err
    unnamed = tmp_path / "unnamed"
    save_labels(unnamed / "frame_a" / LABELS_FILE, load_labels(next(gt.rglob(LABELS_FILE))))
    assert main([*again, "--gt", str(unnamed)]) == 1
    err = capsys.readouterr().err
    assert f"frame_a/{LABELS_FILE}: a folder of label files is matched to the replayed frames by stamp" in err
    assert not (tmp_path / "out2").exists()
