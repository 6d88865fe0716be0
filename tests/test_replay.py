"""``occ replay`` and the ROS-free pipeline it shares with the node: same labels as ``occ predict``, outputs that an
independent MCAP decoder reads, and every kind of bad input skipped, counted and survived."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from occ_ros.core.frames import CameraMessage, FrameSet, FrameSkipped, SkipReason
from occ_ros.core.grid import GridSpec, upsample_labels
from occ_ros.core.resources import models_dir
from occ_ros.datasets.sample import LABELS_FILE, OccupancyLabels, load_labels, save_labels
from occ_ros.datasets.synth import SynthReader
from occ_ros.inference.backend import open_backend
from occ_ros.io.rosbag import BagWriter, camera_info_msg, image_msg, tf_message, transform_stamped
from occ_ros.pipeline.pipeline import OccupancyPipeline
from occ_ros.replay import ReplayError, replay
from occ_tools.cli import main

pytest.importorskip("onnxruntime")
mcap_reader = pytest.importorskip("mcap.reader")
mcap_ros2 = pytest.importorskip("mcap_ros2.decoder")

CKPT = models_dir() / "demo.ckpt"


@pytest.fixture(scope="module")
def sequence(synth_world: Path) -> Path:
    """3 synthetic frames with their rosbag2 recording (raw rgb8 images, camera_info, tf): tests/conftest.py's."""
    return synth_world


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "demo.onnx"
    assert main(["export", "--checkpoint", str(CKPT), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def replayed(sequence, onnx_model, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("out")
    args = ["replay", "--bag", str(sequence / "bag"), "--model", str(onnx_model), "--out", str(work / "out")]
    args += ["--gt", str(sequence), "--json", str(work / "metrics.json"), "--predictions", str(work / "pred")]
    args += ["--timings", str(work / "timings.csv")]
    assert main([*args, "--quiet"]) == 0
    return work


def _column(data: np.ndarray, fields: dict, name: str, dtype: str) -> np.ndarray:
    """One PointCloud2 field of every point, from the (points, point_step) byte matrix and the decoded fields."""
    offset = fields[name].offset
    return data[:, offset : offset + np.dtype(dtype).itemsize].copy().view(dtype).reshape(-1)


def _mcap_messages(bag_dir: Path) -> dict[str, list]:
    """topic -> decoded messages, read with the independent mcap + mcap-ros2-support decoder."""
    files = sorted(bag_dir.glob("*.mcap"))
    assert len(files) == 1
    out: dict[str, list] = {}
    with open(files[0], "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[mcap_ros2.DecoderFactory()])
        for _schema, channel, _message, decoded in reader.iter_decoded_messages():
            out.setdefault(channel.topic, []).append(decoded)
    return out


def test_replay_gives_the_labels_of_occ_predict_frame_by_frame(sequence, onnx_model, replayed, tmp_path):
    assert main(["predict", "--model", str(onnx_model), "--data", str(sequence), "--out", str(tmp_path / "p")]) == 0
    reader = SynthReader(sequence)
    for i in range(len(reader)):
        sample = reader.load(i, images=False)
        offline = np.load(tmp_path / "p" / sample.scene / sample.frame / "labels.npz")["semantics"]
        replay = np.load(replayed / "pred" / str(sample.stamp_ns) / "labels.npz")["semantics"]
        np.testing.assert_array_equal(replay, offline)
    metrics = json.loads((replayed / "metrics.json").read_text())
    assert metrics["synchronized"] == metrics["processed"] == 3
    assert not any(metrics["skipped"].values())
    assert metrics["accuracy"]["frames"] == 3 and 0 < metrics["accuracy"]["miou"] <= 100
    for stage in ("decode", "calibration", "preprocess", "inference", "postprocess"):
        assert metrics["stages_ms"][stage]["p50_ms"] >= 0 and metrics["stages_ms"][stage]["p99_ms"] >= 0


def test_per_frame_timings_are_one_csv_row_per_frame_whose_stages_add_up_to_the_total(sequence, replayed):
    lines = (replayed / "timings.csv").read_text().splitlines()
    header = lines[0].split(",")
    stages = ["decode_ms", "calibration_ms", "preprocess_ms", "inference_ms", "postprocess_ms"]
    assert header[0] == "stamp_ns" and set(stages) | {"total_ms"} == set(header[1:])
    rows = [dict(zip(header, map(float, line.split(",")), strict=True)) for line in lines[1:]]
    stamps = [int(line.split(",")[0]) for line in lines[1:]]
    reader = SynthReader(sequence)
    assert stamps == [reader.load(i, images=False).stamp_ns for i in range(len(reader))]
    for r in rows:
        assert all(r[s] >= 0 for s in stages)
        assert r["total_ms"] == pytest.approx(sum(r[s] for s in stages), abs=0.01)  # 3-decimal rounding only


def test_the_output_bag_is_an_indexed_mcap_with_ros2_schemas_as_foxglove_reads_it(replayed):
    """Foxglove opens an MCAP by its summary (chunk indexes, channels, schemas) and decodes ``ros2msg`` / ``cdr``."""
    (path,) = sorted((replayed / "out").glob("*.mcap"))
    with open(path, "rb") as f:
        summary = mcap_reader.make_reader(f).get_summary()
    assert summary is not None and summary.chunk_indexes and summary.statistics is not None
    assert summary.statistics.message_count > 0
    schemas = {s.name: s for s in summary.schemas.values()}
    assert {"sensor_msgs/msg/PointCloud2", "visualization_msgs/msg/MarkerArray", "tf2_msgs/msg/TFMessage"} <= set(
        schemas
    )
    assert all(s.encoding == "ros2msg" and s.data for s in schemas.values())
    assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}


def test_the_output_bag_decodes_with_mcap_ros2_and_holds_the_predicted_voxels(sequence, replayed):
    topics = _mcap_messages(replayed / "out")
    assert {
        "/occupancy_node/voxels",
        "/occupancy_node/grid",
        "/occupancy_node/markers",
        "/occupancy_node/grid_description",
    } <= set(topics)
    assert "/tf_static" in topics and "/tf" in topics
    reader = SynthReader(sequence)
    clouds = topics["/occupancy_node/voxels"]
    assert len(clouds) == 3
    for i, cloud in enumerate(clouds):
        sample = reader.load(i, images=False)
        labels = np.load(replayed / "pred" / str(sample.stamp_ns) / "labels.npz")["semantics"]
        stamp = cloud.header.stamp.sec * 1_000_000_000 + cloud.header.stamp.nanosec
        assert stamp == sample.stamp_ns and cloud.header.frame_id == "base_link"
        fields = {f.name: f for f in cloud.fields}
        assert {"x", "y", "z", "rgb", "label", "confidence"} <= set(fields)
        data = np.frombuffer(bytes(cloud.data), dtype=np.uint8).reshape(cloud.width, cloud.point_step)

        # exactly the non-free voxels occ predict writes, at their centres, with their classes
        occupied = np.argwhere(labels != 17)
        assert cloud.width == len(occupied)
        xyz = np.stack([_column(data, fields, a, "<f4") for a in "xyz"], axis=1)
        centres = sample.grid.indices_to_centers(occupied)
        # published in C order of the voxel index, like np.argwhere
        np.testing.assert_allclose(xyz, centres, atol=1e-4)
        np.testing.assert_array_equal(_column(data, fields, "label", "u1"), labels[tuple(occupied.T)])
    grid = topics["/occupancy_node/grid"][0]
    assert [d.label for d in grid.layout.dim] == ["x", "y", "z"] and [d.size for d in grid.layout.dim] == [80, 80, 8]
    description = json.loads(topics["/occupancy_node/grid_description"][0].data)
    assert description["grid"]["shape"] == [80, 80, 8]


def test_the_output_bag_holds_a_costmap_per_frame_whose_occupied_cells_are_predicted_obstacles(sequence, replayed):
    """``/occupancy_node/costmap`` (nav_msgs/OccupancyGrid): base_link, one cell per voxel column, and its 100s are
    columns where the predicted labels hold an obstacle class between 0.2 and 2.0 m (checked with numpy)."""
    (path,) = sorted((replayed / "out").glob("*.mcap"))
    with open(path, "rb") as f:
        summary = mcap_reader.make_reader(f).get_summary()
    channels = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
    assert channels["/occupancy_node/costmap"] == "nav_msgs/msg/OccupancyGrid"
    maps = _mcap_messages(replayed / "out")["/occupancy_node/costmap"]
    reader = SynthReader(sequence)
    assert len(maps) == 3
    marked = 0
    for i, grid_map in enumerate(maps):
        sample = reader.load(i, images=False)
        stamp = grid_map.header.stamp.sec * 1_000_000_000 + grid_map.header.stamp.nanosec
        assert stamp == sample.stamp_ns and grid_map.header.frame_id == "base_link"
        info = grid_map.info
        assert (info.width, info.height, info.resolution) == (80, 80, pytest.approx(0.8))
        assert (info.origin.position.x, info.origin.position.y) == (-32.0, -32.0)
        cells = np.asarray(grid_map.data, dtype=np.int8).reshape(info.height, info.width)  # [row = y, col = x]
        assert set(np.unique(cells).tolist()) <= {-1, 0, 100}
        labels = np.load(replayed / "pred" / str(sample.stamp_ns) / "labels.npz")["semantics"]
        # demo grid z layers: [-1.0, -0.2), [-0.2, 0.6), [0.6, 1.4), [1.4, 2.2), ...: layers 1..3 meet (0.2, 2.0)
        obstacle_ids = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16]  # all but the 4 surfaces and free
        predicted = np.isin(labels[:, :, 1:4], obstacle_ids).any(axis=2)  # (X, Y)
        occupied = cells.T == 100
        assert occupied.any() and not (occupied & ~predicted).any()
        marked += int(occupied.sum())
    assert marked > 0


def test_the_output_bag_holds_the_processing_times_and_the_bag_clock_latency(sequence, replayed):
    """The node's ~/debug topics, one message per frame: stage times that add up, and a latency that is the bag
    clock (the log time the frame's outputs were written at) minus the frame's stamp, as the voxels say."""
    (path,) = sorted((replayed / "out").glob("*.mcap"))
    log_times: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[mcap_ros2.DecoderFactory()])
        for _schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=True):
            log_times.setdefault(channel.topic, []).append(message.log_time)
            if channel.topic.startswith("/occupancy_node/debug/"):
                values.setdefault(channel.topic, []).append(decoded.data)
    stages = ("decode", "calibration", "preprocess", "inference", "postprocess", "total", "wait", "publish")
    topics = {f"/occupancy_node/debug/processing_time/{s}_ms" for s in stages} | {
        "/occupancy_node/debug/pipeline_latency_ms"
    }
    assert set(values) == topics
    assert all(len(v) == 3 for v in values.values())
    ms = {s: values[f"/occupancy_node/debug/processing_time/{s}_ms"] for s in stages}
    for i in range(3):
        assert all(ms[s][i] >= 0 for s in stages) and ms["inference"][i] > 0
        parts = sum(ms[s][i] for s in ("decode", "calibration", "preprocess", "inference", "postprocess"))
        assert ms["total"][i] == pytest.approx(parts, abs=1e-6)
    reader = SynthReader(sequence)
    stamps = [reader.load(i, images=False).stamp_ns for i in range(len(reader))]
    expected = [(log - stamp) / 1e6 for log, stamp in zip(log_times["/occupancy_node/voxels"], stamps, strict=True)]
    assert values["/occupancy_node/debug/pipeline_latency_ms"] == pytest.approx(expected, abs=1e-9)
    assert log_times["/occupancy_node/debug/pipeline_latency_ms"] == log_times["/occupancy_node/voxels"]


# ---------------------------------------------------------------------------------------------- bad input
def _frame(reader: SynthReader, i: int, **change) -> FrameSet:
    """A FrameSet of synthetic frame ``i`` built from real rosbags messages, with per-camera changes."""
    sample = reader.load(i)
    cameras = {}
    for cam in sample.rig:
        image = image_msg(sample.images[cam.name], sample.stamp_ns, cam.frame_id)
        info = camera_info_msg(cam, sample.stamp_ns)
        pose = np.linalg.inv(cam.cam_from_ego)
        cameras[cam.name] = CameraMessage(cam.name, image, info, pose)
    for name, fields in change.items():
        cameras[name] = CameraMessage(**{**cameras[name].__dict__, **fields}) if fields is not None else None
    return FrameSet(sample.stamp_ns, {k: v for k, v in cameras.items() if v is not None})


def test_every_kind_of_bad_frame_is_warned_counted_and_skipped_and_the_pipeline_goes_on(sequence, onnx_model, caplog):
    reader = SynthReader(sequence)
    pipeline = OccupancyPipeline(open_backend(onnx_model))
    good = _frame(reader, 0)
    pipeline.process(good)
    front = good.cameras["CAM_FRONT"]
    image = front.image
    bad_encoding = SimpleNamespace(
        **{
            **{k: getattr(image, k) for k in ("header", "height", "width", "step", "is_bigendian", "data")},
            "encoding": "16UC1",
        }
    )
    truncated = SimpleNamespace(
        **{
            **{k: getattr(image, k) for k in ("header", "height", "width", "step", "is_bigendian", "encoding")},
            "data": np.asarray(image.data)[:100],
        }
    )
    small = image_msg(np.zeros((50, 200, 3), np.uint8), good.stamp_ns, "cam_front_optical_frame")
    small_info = SimpleNamespace(
        **{
            **{
                k: getattr(front.info, k)
                for k in ("header", "k", "d", "p", "r", "distortion_model", "binning_x", "binning_y", "roi")
            },
            "width": 200,
            "height": 50,
        }
    )
    nan_info = SimpleNamespace(
        **{**{k: getattr(front.info, k) for k in ("header", "width", "height")}, "k": np.full(9, np.nan)}
    )
    foo_info = SimpleNamespace(
        **{
            **{k: getattr(front.info, k) for k in ("header", "width", "height", "k")},
            "distortion_model": "foo",  # a lens model nobody can undo: refused, never read as pinhole
            "d": np.array([-0.35, 0.12, 0.0, 0.0, 0.0]),
        }
    )
    sheared = front.base_from_optical.copy()
    sheared[0, 1] += 0.5
    cases = {
        SkipReason.MISSING_CAMERA: {"CAM_BACK": None},
        SkipReason.ENCODING: {"CAM_FRONT": {"image": bad_encoding}},
        SkipReason.CORRUPT_IMAGE: {"CAM_FRONT": {"image": truncated}},
        SkipReason.IMAGE_SIZE: {"CAM_FRONT": {"image": small, "info": small_info}},
        SkipReason.NO_CAMERA_INFO: {"CAM_FRONT": {"info": None}},
        SkipReason.NO_TF: {"CAM_FRONT": {"base_from_optical": None, "tf_error": "base_link -> cam_front: no path"}},
        SkipReason.BAD_CALIBRATION: {"CAM_FRONT": {"info": nan_info}},
        SkipReason.UNSUPPORTED_DISTORTION: {"CAM_FRONT": {"info": foo_info}},
    }
    caplog.set_level(logging.WARNING)
    for reason, change in cases.items():
        frame = _frame(reader, 1, **change)
        with pytest.raises(FrameSkipped) as err:
            pipeline.process(frame)
        assert err.value.reason == reason, (reason, err.value)
        assert reason.value in caplog.text  # the warning
        snap = pipeline.stats.snapshot()
        assert snap.skipped[reason.value] == 1 and snap.last_problem[0] == reason.value  # the diagnostics entry
        pipeline.process(_frame(reader, 2))  # and it keeps going
    # damaged JPEG data is a corrupt image, not an unknown format (the format names a codec the decoder reads)
    jpeg = SimpleNamespace(header=image.header, format="rgb8; jpeg compressed bgr8", data=np.arange(64, dtype=np.uint8))
    with pytest.raises(FrameSkipped) as err:
        pipeline.process(_frame(reader, 1, CAM_FRONT={"image": jpeg}))
    assert err.value.reason == SkipReason.CORRUPT_IMAGE
    # a degenerate extrinsic (not rigid) is a bad calibration too
    with pytest.raises(FrameSkipped) as err:
        pipeline.process(_frame(reader, 1, CAM_FRONT={"base_from_optical": sheared}))
    assert err.value.reason == SkipReason.BAD_CALIBRATION
    assert pipeline.stats.snapshot().processed == 1 + len(cases)
    assert pipeline.rigs.rebuilds <= 3  # the rig is rebuilt only when the calibration changes


def test_replay_survives_duplicate_stamps_and_a_corrupt_record(sequence, onnx_model, tmp_path):
    """A bag where frame 1 is recorded twice (duplicate stamps) and one image record is garbage."""
    reader = SynthReader(sequence)
    bag = tmp_path / "bad_bag"
    with BagWriter(bag, storage="sqlite3") as writer:
        first = reader.load(0)
        writer.write(
            "/tf_static",
            tf_message(
                transform_stamped(np.linalg.inv(c.cam_from_ego), first.stamp_ns, "base_link", c.frame_id)
                for c in first.rig
            ),
            first.stamp_ns,
        )
        order = [0, 1, 1, 2]
        for n, i in enumerate(order):
            sample = reader.load(i)
            log = sample.stamp_ns + n  # log times strictly increase
            for cam in sample.rig:
                topic = f"/{cam.name.lower()}"
                writer.write(f"{topic}/camera_info", camera_info_msg(cam, sample.stamp_ns), log)
                writer.write(
                    f"{topic}/image_raw", image_msg(sample.images[cam.name], sample.stamp_ns, cam.frame_id), log
                )
    _corrupt_one_image_record(bag)
    args = ["replay", "--bag", str(bag), "--model", str(onnx_model), "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*args, "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    # frame 1 twice: the copy is a duplicate stamp; frame 2 lost its CAM_BACK image to the corrupt record
    assert metrics["skipped"]["corrupt_record"] == 1 and metrics["skipped"]["stamp_order"] == 1
    assert metrics["synchronized"] == 3 and metrics["processed"] == 2  # frames 0 and 1 went through


def _regridded(sequence: Path, dst: Path, grid: GridSpec, factor: int = 0) -> Path:
    """A ground-truth dataset: ``sequence``'s meta.json on ``grid``, with its ground truth upsampled by ``factor`` onto
    ``grid`` (0: no ground-truth files)."""
    meta = json.loads((sequence / "meta.json").read_text())
    meta["grid"] = grid.to_dict()
    dst.mkdir(parents=True)
    (dst / "meta.json").write_text(json.dumps(meta))
    if factor:
        for src in (sequence / "gts").rglob(LABELS_FILE):
            gt = load_labels(src)
            masks = {name: upsample_labels(getattr(gt, name), factor) for name in ("mask_camera", "mask_lidar")}
            fine = OccupancyLabels(upsample_labels(gt.semantics, factor), grid=grid, **masks)
            save_labels(dst / src.relative_to(sequence), fine)
    return dst


def test_replay_refuses_ground_truth_on_another_grid_naming_both_grids(sequence, onnx_model, tmp_path):
    shifted = GridSpec((-24.0, -32.0, -1.0), (40.0, 32.0, 5.4), (0.8, 0.8, 0.8))  # the same shape 8 m forward
    other = _regridded(sequence, tmp_path / "other", shifted)
    with pytest.raises(ReplayError) as info:
        replay(sequence / "bag", onnx_model, tmp_path / "out", gt=other, progress=False)
    text = str(info.value)
    assert text.startswith(f"grid mismatch: the model {onnx_model} has grid ")
    assert "80x80x8 voxels of 0.8 m over x [-32, 32] y [-32, 32] z [-1, 5.4] m" in text  # the model's
    assert f"the ground truth {other} has grid 80x80x8 voxels of 0.8 m over x [-24, 40] y [-32, 32]" in text
    assert not (tmp_path / "out").exists()  # refused before the bag was read


def test_replay_scores_a_finer_ground_truth_grid_through_upsampled_labels(sequence, onnx_model, replayed, tmp_path):
    fine = GridSpec((-32.0, -32.0, -1.0), (32.0, 32.0, 5.4), (0.4, 0.4, 0.4))  # the demo volume at 0.4 m
    finer = _regridded(sequence, tmp_path / "fine", fine, factor=2)
    summary = replay(sequence / "bag", onnx_model, tmp_path / "out", gt=finer, progress=False)
    before = json.loads((replayed / "metrics.json").read_text())["accuracy"]
    assert summary.accuracy is not None and summary.accuracy["frames"] == before["frames"] == 3
    # every voxel counted 8 times on both sides: the same scores
    assert summary.accuracy["miou"] == pytest.approx(before["miou"]) and summary.accuracy["iou"] == before["iou"]


def test_replay_gt_takes_the_dataset_folder_or_its_label_folder(sequence, onnx_model, replayed, tmp_path):
    """--gt DIR (the fixture `replayed`) and --gt DIR/gts (the label folder `occ eval --gt` takes) score the same."""
    summary = replay(sequence / "bag", onnx_model, tmp_path / "out", gt=sequence / "gts", progress=False)
    before = json.loads((replayed / "metrics.json").read_text())["accuracy"]
    assert summary.accuracy == before and before["frames"] == 3


def _corrupt_one_image_record(bag: Path) -> None:
    """Truncate the CDR payload of the last CAM_BACK image record (sqlite3 storage: one row per message)."""
    import sqlite3

    db = sorted(bag.glob("*.db3"))[0]
    with sqlite3.connect(db) as con:
        (topic_id,) = con.execute("SELECT id FROM topics WHERE name = '/cam_back/image_raw'").fetchone()
        rows = con.execute("SELECT id FROM messages WHERE topic_id = ? ORDER BY timestamp", (topic_id,)).fetchall()
        con.execute("UPDATE messages SET data = ? WHERE id = ?", (b"\x00\x01\x00\x00garbage", rows[-1][0]))


def test_realtime_replay_drops_what_a_slow_backend_cannot_take_and_processes_the_last_frame(
    sequence, onnx_model, tmp_path, monkeypatch
):
    """--rate realtime: frames arrive with the recording's 12 Hz timing through the latest-frame worker. Time is an
    input: the replay is paced by a fake clock (its sleeps advance it at once), and the backend's first frame is held
    until every frame of the bag has been handed over (an Event, not a sleep), so nothing here depends on the
    machine's speed: the frames that arrive meanwhile replace each other (``superseded``, not queued), and the newest
    one, pending when the bag ends, is processed, not lost."""
    import threading

    from occ_ros.replay import replay
    from occ_ros.session import OccupancySession

    frames = 3  # the shared world: the held frame, one that arrives meanwhile and is replaced, the last one
    backend = open_backend(onnx_model, warmup=False)
    run = backend._run
    handed_over = {"n": 0}
    all_in = threading.Event()
    calls = {"n": 0}

    on_synchronized = OccupancySession.on_synchronized

    def counting(self, *messages):
        on_synchronized(self, *messages)
        handed_over["n"] += 1
        if handed_over["n"] == frames:
            all_in.set()

    def held(feeds):
        calls["n"] += 1
        if calls["n"] == 1:
            assert all_in.wait(120), "the replay never handed over every frame"
        return run(feeds)

    monkeypatch.setattr(OccupancySession, "on_synchronized", counting)
    backend._run = held  # type: ignore[method-assign]
    stamps = sorted(SynthReader(sequence, load_gt=False).load(i, images=False).stamp_ns for i in range(frames))
    fake = {"now": 100.0, "slept": []}

    def sleep(seconds: float) -> None:
        fake["slept"].append(seconds)
        fake["now"] += seconds

    clock = (lambda: fake["now"], sleep)
    summary = replay(sequence / "bag", backend, tmp_path / "out", rate="realtime", progress=False, clock=clock)
    # paced at the recording's timing: the replay clock slept exactly the bag's span, never the wall clock
    assert sum(fake["slept"]) == pytest.approx((stamps[-1] - stamps[0]) / 1e9, abs=1e-6)  # 2 frame periods at 12 Hz
    assert summary.synchronized == frames
    assert summary.processed + summary.skipped["superseded"] == frames
    # one frame was held, the newest was pending at the end; every frame in between was replaced while waiting
    assert summary.processed in (1, 2) and summary.skipped["superseded"] >= frames - 2
    processed = [stamp for stamp, _ in summary.frame_timings]
    assert processed[-1] == stamps[-1]  # the last frame of the bag is processed


def _raw_mcap(bag_dir: Path) -> dict[str, list[bytes]]:
    """topic -> the CDR payloads of its messages in log order, read with the mcap reader (no decoding)."""
    (path,) = sorted(bag_dir.glob("*.mcap"))
    out: dict[str, list[bytes]] = {}
    with open(path, "rb") as f:
        for _schema, channel, message in mcap_reader.make_reader(f).iter_messages(log_time_order=True):
            out.setdefault(channel.topic, []).append(bytes(message.data))
    return out


def test_the_node_and_occ_replay_run_one_session_and_publish_the_same_messages(sequence, onnx_model, tmp_path):
    """Parity: the bag through the node's callbacks, set up as the node sets itself up (the shipped parameter file
    with a model override, the node's model loading, an input watch per topic, a synchronizer over images + their
    CameraInfo), with rosbags message classes, gives byte-identical output messages, frame by frame and topic by
    topic, to `occ replay` with its defaults. (The synchronizer here is the replay's ApproximateTimeSync: the real
    message_filters one runs in the launch tests, where ROS 2 is installed.)"""
    from rosbags.highlevel import AnyReader

    from occ_ros.core.tf_buffer import TransformBuffer, add_tf_message
    from occ_ros.io.rosbag import ns_from_stamp, typestore
    from occ_ros.node.params import from_ros_parameters, param_file_values
    from occ_ros.node.runtime import open_model
    from occ_ros.pipeline.messages import rosbags_message_types
    from occ_ros.pipeline.sync import ApproximateTimeSync, slop_ns_from_seconds
    from occ_ros.session import OccupancySession, OutputSinks, output_topics

    # --- occ replay, as a user runs it
    assert (
        main(["replay", "--bag", str(sequence / "bag"), "--model", str(onnx_model), "--out", str(tmp_path / "r")]) == 0
    )
    replayed = _raw_mcap(tmp_path / "r")

    # --- the node's callbacks
    repo = Path(__file__).resolve().parents[1]
    values = param_file_values(repo / "config" / "occupancy.param.yaml")
    values.pop("use_sim_time", None)
    params = from_ros_parameters({**values, "model": str(onnx_model)}, strict=True)
    store = typestore()
    published: dict[str, list[bytes]] = {}
    topics = output_topics()

    def publisher(name: str):
        def publish(msg) -> None:
            published.setdefault(topics[name], []).append(store.serialize_cdr(msg, type(msg).__msgtype__))

        return publish

    sinks = OutputSinks(*(publisher(n) for n in ("voxels", "markers", "grid", "grid_description", "costmap")))
    tf = TransformBuffer()
    session = OccupancySession(
        params.session_config(),
        open_model(params.model),
        rosbags_message_types(store),
        sinks,
        lambda target, source, stamp, timeout: tf.lookup(target, source, stamp),
        run_inline=True,
    )
    inputs = session.config.input_topics()
    sync = ApproximateTimeSync(inputs, slop_ns_from_seconds(params.sync.slop_s), params.sync.queue_size)
    session.start()
    with AnyReader([sequence / "bag"], default_typestore=store) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic in ("/tf", "/tf_static"):
                add_tf_message(tf, msg, conn.topic == "/tf_static")
            elif conn.topic in inputs:
                session.on_input(conn.topic)
                done = sync.add(conn.topic, ns_from_stamp(msg.header.stamp), msg)
                if done is not None:
                    session.on_synchronized(*(done[t][1] for t in inputs))
    assert session.stop()

    always = set(topics.values()) - {topics["query/voxels"]}  # ~/query/voxels only answers a query (none here)
    assert set(published) == always and len(published[topics["voxels"]]) == 3
    for topic, messages in published.items():
        assert replayed[topic] == messages, topic
    assert session.stats.snapshot().skipped_total == 0
