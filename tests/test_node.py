"""occupancy_node without ROS: parameters, frame assembly from real (rosbags) messages, the node's ROS-free core
(publishing, skips, diagnostics, model fallback), the launch file, the RViz config and the mypy setup.

rclpy, message_filters, tf2_ros and the message packages cannot be installed here; the one test that needs them
is skipped with that reason and runs where ROS 2 is sourced.
"""

from __future__ import annotations

import ast
import importlib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from occ_ros.core.frames import FrameSkipped, SkipReason
from occ_ros.core.grid import GridSpec
from occ_ros.core.preprocess import PreprocessConfig
from occ_ros.core.rig import NUSCENES_CAMERAS, Camera
from occ_ros.core.tf_buffer import matrix_from_transform as transform_matrix
from occ_ros.core.transforms import invert_transform
from occ_ros.core.undistort import MAPS
from occ_ros.core.vocabulary import Vocabulary
from occ_ros.inference.backend import BackendError, InferenceBackend, InferenceTiming, RuntimeSettings, backend_options
from occ_ros.inference.model_info import ModelInfo
from occ_ros.io.rosbag import camera_info_msg, compressed_image_msg, image_msg, transform_stamped
from occ_ros.node import params as P
from occ_ros.node.params import CameraParams, NodeParams, ParamError
from occ_ros.node.runtime import open_model, subscribed_topics
from occ_ros.pipeline.messages import rosbags_message_types
from occ_ros.pipeline.pipeline import OccupancyPipeline, PipelineConfig
from occ_ros.session import (
    FrameAssembler,
    LoadedModel,
    OccupancySession,
    OutputSinks,
    WarnThrottle,
    diagnostic_level_bytes,
    forward_python_logging,
)
from occ_ros.session.session import PIPELINE_SKIP_LOGGER

REPO = Path(__file__).resolve().parents[1]
PARAM_FILE = REPO / "config" / "occupancy.param.yaml"
LAUNCH_FILE = REPO / "launch" / "occupancy.launch.py"
RVIZ_FILE = REPO / "config" / "rviz" / "occupancy.rviz"
NODE_DOC = REPO / "docs" / "node.md"
NO_ROS = "rclpy is not installable here (no ROS 2 on this machine); runs where ROS 2 Humble/Jazzy is sourced"

T0 = 1_700_000_000_000_000_000
CAMS = ("CAM_FRONT", "CAM_BACK")
W, H = 48, 32  # the fake model's input size: images pass the pipeline's size checks unscaled
GRID = GridSpec.named("demo")
VOCAB = Vocabulary.occ3d()
INFO = ModelInfo(grid=GRID, vocabulary=VOCAB, cameras=CAMS, preprocess=PreprocessConfig(H, W))
K = np.array([[30.0, 0.0, 23.5], [0.0, 30.0, 15.5], [0.0, 0.0, 1.0]])
# optical frame (x right, y down, z forward) 1.5 m above base_link, looking forward / backward
FRONT_FROM_BASE = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.5], [1.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])
YAW180 = np.diag([-1.0, -1.0, 1.0, 1.0])
CAMERAS = {
    "CAM_FRONT": Camera("CAM_FRONT", "cam_front_optical_frame", W, H, K, FRONT_FROM_BASE),
    "CAM_BACK": Camera("CAM_BACK", "cam_back_optical_frame", W, H, K, FRONT_FROM_BASE @ YAW180),
}
OCCUPIED = [(10, 20, 3, 0), (10, 21, 3, 0), (40, 40, 1, 5), (70, 5, 7, 11)]  # (i, j, k, class)


# ---------------------------------------------------------------------- fixtures
class FakeBackend(InferenceBackend):
    """A model of INFO that predicts OCCUPIED (everything else free); optionally held: with a ``gate``, every call
    waits until the test opens it (a slow backend whose slowness the test controls, not the machine's speed)."""

    name = "onnxruntime"

    def __init__(self, gate: threading.Event | None = None, info: ModelInfo = INFO) -> None:
        super().__init__("models/fake.onnx", info)
        self.gate = gate
        self.calls = 0

    @property
    def provider(self) -> str:
        return "FakeExecutionProvider"

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(60), "the test never opened the gate"  # catches a hang only
        labels = np.full((1, *GRID.shape), VOCAB.free_index, np.uint8)
        for i, j, k, c in OCCUPIED:
            labels[0, i, j, k] = c
        return {"labels": labels, "confidence": np.full(labels.shape, 0.9, np.float32)}, InferenceTiming(0, 0, 0)


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def images(stamp: int, compressed: bool = False) -> list[Any]:
    make = compressed_image_msg if compressed else image_msg
    return [make(rgb(i), stamp, CAMERAS[name].frame_id) for i, name in enumerate(CAMS)]


def infos(stamp: int = T0) -> dict[str, Any]:
    return {name: camera_info_msg(CAMERAS[name], stamp) for name in CAMS}


class TfTable:
    """A dict-backed TransformLookup that records its calls; a missing pair raises like tf2 would."""

    def __init__(self) -> None:
        self.poses = {("base_link", c.frame_id): invert_transform(c.cam_from_ego) for c in CAMERAS.values()}
        self.calls: list[tuple[str, str, int, float]] = []

    def __call__(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        self.calls.append((target, source, stamp_ns, timeout_s))
        if (target, source) not in self.poses:
            raise LookupError(f'"{source}" passed to lookupTransform argument source_frame does not exist')
        return self.poses[(target, source)]


def node_params(**overrides: Any) -> NodeParams:
    values: dict[str, Any] = {"cameras": list(CAMS), **overrides}
    return P.from_ros_parameters(values)


class Sink:
    """Publishers that keep what they receive; ``subscribers`` is what marker_subscribers answers."""

    def __init__(self, subscribers: int = 1) -> None:
        self.msgs: dict[str, list[Any]] = {
            "cloud": [],
            "markers": [],
            "grid": [],
            "grid_description": [],
            "costmap": [],
        }
        self.subscribers = subscribers

    def publishers(self) -> OutputSinks:
        return OutputSinks(
            cloud=self.msgs["cloud"].append,
            markers=self.msgs["markers"].append,
            grid=self.msgs["grid"].append,
            grid_description=self.msgs["grid_description"].append,
            costmap=self.msgs["costmap"].append,
            marker_subscribers=lambda: self.subscribers,
        )


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_core(
    sink: Sink | None = None,
    tf: TfTable | None = None,
    backend: InferenceBackend | None = None,
    clock: Clock | None = None,
    run_inline: bool = True,
    fallback: bool = False,
    **overrides: Any,
) -> tuple[OccupancySession, Sink, list[tuple[str, str]]]:
    sink = sink or Sink()
    log: list[tuple[str, str]] = []
    loaded = LoadedModel(backend or FakeBackend(), fallback=fallback, reasons=("model: broken",) if fallback else ())
    core = OccupancySession(
        node_params(**overrides).session_config(),
        loaded,
        rosbags_message_types(),
        sink.publishers(),
        tf or TfTable(),
        lambda level, text: log.append((level, text)),
        clock=clock or Clock(),
        run_inline=run_inline,
    )
    return core, sink, log


# ---------------------------------------------------------------------- parameters
def test_defaults_are_the_documented_ones() -> None:
    p = P.from_ros_parameters({})
    assert p.camera_names == NUSCENES_CAMERAS
    assert p.cameras[0] == CameraParams("CAM_FRONT", "/cam_front/image_raw", "/cam_front/camera_info", "")
    assert p.model.model == "" and p.model.backend == "auto" and p.model.device == "cpu"
    assert p.model.fallback_model == "" and p.model.fallback_backend == "onnxruntime"
    assert not p.compressed and p.sync.slop_s == 0.05 and p.sync.queue_size == 10
    assert p.base_frame == p.frame_id == "base_link"
    assert p.outputs.cloud and p.outputs.markers and p.outputs.grid
    assert p.outputs.min_confidence is None  # off: exactly the voxels of `occ predict`
    assert p.outputs.markers_period_s == 0.5
    assert (p.qos.reliability, p.qos.durability, p.qos.depth) == ("reliable", "volatile", 1)
    assert (p.qos.reliability_policy, p.qos.durability_policy) == ("RELIABLE", "VOLATILE")


def test_shipped_param_file_loads_and_matches_the_defaults() -> None:
    assert yaml.safe_load(PARAM_FILE.read_text())["/**"]["ros__parameters"]  # the /**: ros__parameters layout
    assert P.load_param_file(PARAM_FILE) == P.from_ros_parameters({})


def test_specs_cover_every_parameter_with_a_valid_default() -> None:
    fixed = P.specs()
    names = [spec.name for spec in fixed]
    assert len(names) == len(set(names)) == len(P.PARAMS)
    for spec in P.specs(["CAM_X"]):
        assert spec.check(spec.default) == spec.default, spec.name
        assert spec.description
        assert spec.default != [], "rclpy cannot type an empty list parameter"
    with_cameras = P.specs(["CAM_X"])
    assert with_cameras[: len(fixed)] == fixed
    assert [s.name for s in with_cameras[len(fixed) :]] == [f"camera.CAM_X.{k}" for k in P.CAMERA_KEYS]
    assert {s.name: s.default for s in with_cameras}["camera.CAM_X.image_topic"] == "/cam_x/image_raw"


def test_every_value_survives_a_param_file(tmp_path: Path) -> None:
    """Non-default values through a param file (``occ replay --params``' path) into NodeParams."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    cameras: [CAM_FRONT, CAM_BACK]\n    compressed: true\n    frame_id: grid\n"
        "    outputs: {min_confidence: 0.3}\n    qos: {depth: 3}\n    camera: {CAM_BACK: {frame_id: back_optical}}\n"
    )
    p = P.load_param_file(path)
    assert p == node_params(
        **{
            "compressed": True,
            "outputs.min_confidence": 0.3,
            "frame_id": "grid",
            "qos.depth": 3,
            "camera.CAM_BACK.frame_id": "back_optical",
        }
    )
    assert p.outputs.min_confidence == 0.3 and p.qos.depth == 3 and p.frame_id == "grid"
    assert p.cameras[1] == CameraParams("CAM_BACK", "/cam_back/image_raw", "/cam_back/camera_info", "back_optical")
    assert p.cameras[0].subscribed_topic(p.compressed) == "/cam_front/image_raw/compressed"
    assert subscribed_topics(p)[1] == ("CAM_BACK", "/cam_back/image_raw/compressed", "/cam_back/camera_info")


def test_an_integer_is_a_valid_double() -> None:
    assert node_params(**{"sync.slop_s": 1}).sync.slop_s == 1.0


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("sync.slop_s", -0.1, "a number > 0"),
        ("sync.slop_s", 0.0, "a number > 0"),
        ("sync.slop_s", "0.1", "a number > 0"),
        ("sync.queue_size", 0, "an integer >= 1"),
        ("backend", "tflite", "one of ['auto', 'onnxruntime', 'tensorrt', 'torch']"),
        ("precision", "fp8", "one of"),
        ("qos.reliability", "RELIABLE", "one of ['reliable', 'best_effort']"),
        ("qos.depth", 0, ">= 1"),
        ("outputs.min_confidence", 1.5, "<= 1"),
        ("outputs.cloud", "yes", "true or false"),
        ("outputs.markers_rate_hz", float("nan"), "a number"),
        ("threads", 1.5, "an integer"),
        ("threads", -1, "an integer >= 0"),
        ("spinning", "off", "true or false"),
        ("tf_timeout_s", -1, ">= 0"),
        ("device", "gpu", "cpu, cuda or cuda:N"),
        ("base_frame", "", "a tf frame id"),
        ("frame_id", "/map", "no leading '/'"),
        ("camera.CAM_FRONT.image_topic", "cam front/image", "a ROS topic name"),
        ("camera.CAM_BACK.info_topic", "/cam_back/", "a ROS topic name"),
        ("camera.CAM_BACK.frame_id", "cam back", "a tf frame id"),
        ("cameras", [], "at least one camera"),
        ("cameras", ["CAM FRONT"], "must start with a letter"),
        ("cameras", ["A", "B", "A"], "unique"),
        ("cameras", "CAM_FRONT", "a list of camera names"),
    ],
)
def test_a_bad_value_names_the_parameter_and_what_was_expected(name: str, value: Any, expected: str) -> None:
    with pytest.raises(ParamError) as err:
        node_params(**{name: value})
    assert f"parameter {name!r}" in str(err.value)
    assert expected in str(err.value)


def test_every_bad_parameter_is_reported_at_once() -> None:
    with pytest.raises(ParamError) as err:
        node_params(**{"qos.depth": -1, "backend": "x", "precision": "int8"})
    assert len(err.value.problems) == 2 and "2 bad parameters" in str(err.value)
    with pytest.raises(ParamError, match="int8 is a TensorRT engine's precision"):
        node_params(backend="torch", precision="int8")


def test_param_files_are_strict_about_names(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: true\n    cameras: [CAM_FRONT]\n"
        "    sync: {slop: 0.1}\n    camera: {CAM_LEFT: {image_topic: /l}}\n"
        "occupancy_node:\n  ros__parameters:\n    base_frame: ego\n"
        "other_node:\n  ros__parameters:\n    base_frame: nope\n"
    )
    with pytest.raises(ParamError) as err:
        P.load_param_file(path)
    text = str(err.value)
    assert str(path) in text and "unknown parameter 'sync.slop'" in text
    assert "'camera.CAM_LEFT.image_topic' (camera 'CAM_LEFT' is not in 'cameras' ['CAM_FRONT'])" in text
    values = P.param_file_values(path)
    assert values["base_frame"] == "ego" and values["use_sim_time"] is True  # node section over /**, not others
    path.write_text("occupancy_node:\n  base_frame: ego\n")
    with pytest.raises(ParamError, match="no 'ros__parameters'"):
        P.load_param_file(path)
    path.write_text("/other:\n  ros__parameters: {}\n")
    with pytest.raises(ParamError, match="no section for node 'occupancy_node'"):
        P.load_param_file(path)


def test_model_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = P.resolve_model_path("")
    assert shipped.name == "demo.ckpt" and shipped.is_file()
    monkeypatch.setenv("OCC_TEST_MODELS", "/opt/models")
    assert P.resolve_model_path("$OCC_TEST_MODELS/m.onnx") == Path("/opt/models/m.onnx")
    assert P.resolve_model_path("~/m.engine") == Path.home() / "m.engine"


def test_parse_remaps() -> None:
    assert P.parse_remaps("") == []
    text = " /cam_front/image_raw:=/front/image , /cam_back/camera_info:=/back/info /a:=b"
    assert P.parse_remaps(text) == [
        ("/cam_front/image_raw", "/front/image"),
        ("/cam_back/camera_info", "/back/info"),
        ("/a", "b"),
    ]
    with pytest.raises(ValueError, match="camera_remaps: expected FROM:=TO pairs.*'/a=/b'"):
        P.parse_remaps("/a=/b")
    with pytest.raises(ValueError, match="camera_remaps"):
        P.parse_remaps(":=/b")


# ---------------------------------------------------------------------- frame assembly (rosbags messages)
def assembler(tf: TfTable | None = None, **kwargs: Any) -> FrameAssembler:
    cams = kwargs.pop("cameras", node_params().session_config().cameras)
    return FrameAssembler(cams, "base_link", tf or TfTable(), **kwargs)


def test_a_complete_frame() -> None:
    tf = TfTable()
    a = assembler(tf, received_clock=lambda: 42)
    for name, info in infos().items():
        a.update_info(name, info)
    frame = a.assemble(images(T0 + 5))
    assert frame.stamp_ns == T0 + 5 and frame.received_ns == 42
    assert list(frame.cameras) == list(CAMS)
    for name in CAMS:
        cam = frame.cameras[name]
        assert cam.info is a.info(name) and cam.tf_error == ""
        np.testing.assert_allclose(cam.base_from_optical, invert_transform(CAMERAS[name].cam_from_ego))
    assert [c[:3] for c in tf.calls] == [("base_link", CAMERAS[n].frame_id, T0 + 5) for n in CAMS]
    by_name = a.assemble({"CAM_BACK": images(T0 + 9)[1]})
    assert by_name.stamp_ns == T0 + 9 and list(by_name.cameras) == ["CAM_BACK"]


def pipeline() -> OccupancyPipeline:
    return OccupancyPipeline(FakeBackend(), PipelineConfig(CAMS))


def skip_reason(frame: Any) -> SkipReason:
    with pytest.raises(FrameSkipped) as err:
        pipeline().process(frame)
    return err.value.reason


def test_the_pipeline_accepts_an_assembled_frame() -> None:
    a = assembler()
    for name, info in infos().items():
        a.update_info(name, info)
    result = pipeline().process(a.assemble(images(T0)))
    assert len(result.cloud) == len(OCCUPIED)


def test_missing_camera_info_skips_the_frame() -> None:
    a = assembler()
    a.update_info("CAM_FRONT", infos()["CAM_FRONT"])
    frame = a.assemble(images(T0))
    assert frame.cameras["CAM_BACK"].info is None
    assert skip_reason(frame) is SkipReason.NO_CAMERA_INFO


def test_a_tf_failure_skips_the_frame_and_says_why() -> None:
    tf = TfTable()
    del tf.poses[("base_link", "cam_back_optical_frame")]
    a = assembler(tf)
    for name, info in infos().items():
        a.update_info(name, info)
    frame = a.assemble(images(T0))
    back = frame.cameras["CAM_BACK"]
    assert back.base_from_optical is None
    assert "base_link <- cam_back_optical_frame" in back.tf_error and "does not exist" in back.tf_error
    assert skip_reason(frame) is SkipReason.NO_TF
    tf.poses[("base_link", "cam_back_optical_frame")] = np.eye(3)  # a lookup returning garbage
    assert "shape (3, 3)" in a.assemble(images(T0)).cameras["CAM_BACK"].tf_error


def test_a_missing_camera_skips_the_frame() -> None:
    a = assembler()
    for name, info in infos().items():
        a.update_info(name, info)
    frame = a.assemble([images(T0)[0], None])
    assert list(frame.cameras) == ["CAM_FRONT"]
    assert skip_reason(frame) is SkipReason.MISSING_CAMERA
    with pytest.raises(FrameSkipped) as err:
        a.assemble([None, None])
    assert err.value.reason is SkipReason.MISSING_CAMERA
    with pytest.raises(ValueError, match="got 1 images for 2 cameras"):
        a.assemble([images(T0)[0]])


def test_frame_id_override_and_empty_frame_id() -> None:
    tf = TfTable()
    cams = node_params(**{"camera.CAM_BACK.frame_id": "cam_front_optical_frame"}).cameras
    a = assembler(tf, cameras=cams)
    imgs = images(T0)
    imgs[0].header.frame_id = ""
    frame = a.assemble(imgs)
    assert "set parameter 'camera.CAM_FRONT.frame_id'" in frame.cameras["CAM_FRONT"].tf_error
    assert tf.calls[-1][1] == "cam_front_optical_frame"  # CAM_BACK looked up with the override
    assert frame.cameras["CAM_BACK"].base_from_optical is not None


def test_one_frame_waits_for_tf_at_most_tf_timeout_s() -> None:
    clock = Clock(0.0)
    waits: list[float] = []

    def slow_missing(target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        waits.append(timeout_s)
        clock.now += timeout_s  # tf2 waits out the timeout, then raises
        raise LookupError("timed out")

    a = assembler(slow_missing, tf_timeout_s=0.2, clock=clock)  # type: ignore[arg-type]
    a.assemble(images(T0))
    assert waits == [0.2, 0.0] and clock.now == pytest.approx(0.2)


def test_transform_matrix_from_a_transform_message() -> None:
    pose = invert_transform(CAMERAS["CAM_BACK"].cam_from_ego)
    msg = transform_stamped(pose, T0, "base_link", "cam_back_optical_frame")
    np.testing.assert_allclose(transform_matrix(msg), pose, atol=1e-12)
    np.testing.assert_allclose(transform_matrix(msg.transform), pose, atol=1e-12)
    msg.transform.rotation.w = 0.0
    msg.transform.rotation.z = 0.0
    with pytest.raises(ValueError, match="base_link <- cam_back_optical_frame.*not unit length"):
        transform_matrix(msg)


def test_camera_info_of_an_unknown_camera_is_refused() -> None:
    with pytest.raises(KeyError, match="CAM_SIDE.*not configured"):
        assembler().update_info("CAM_SIDE", infos()["CAM_FRONT"])


# ---------------------------------------------------------------------- the node's core
def feed(core: OccupancySession, stamp: int, compressed: bool = False, **replaced: Any) -> None:
    """One synchronized set: every camera's image, then its CameraInfo (``CAM_FRONT=None`` drops that image,
    ``CAM_FRONT_info=msg`` replaces that CameraInfo)."""
    imgs = dict(zip(CAMS, images(stamp, compressed), strict=True))
    cams = dict(infos(stamp))
    for key, value in replaced.items():
        if key.endswith("_info"):
            cams[key[: -len("_info")]] = value
        else:
            imgs[key] = value
    core.on_synchronized(*(imgs[c] for c in CAMS), *(cams[c] for c in CAMS))


def started_core(**kwargs: Any) -> tuple[OccupancySession, Sink, list[tuple[str, str]]]:
    core, sink, log = make_core(**kwargs)
    core.start()
    return core, sink, log


def test_a_frame_publishes_every_output_in_the_base_frame() -> None:
    core, sink, log = started_core()
    assert len(sink.msgs["grid_description"]) == 1  # latched, once at start
    feed(core, T0)
    (cloud,) = sink.msgs["cloud"]
    assert cloud.header.frame_id == "base_link" and cloud.width == len(OCCUPIED)
    assert (cloud.header.stamp.sec, cloud.header.stamp.nanosec) == divmod(T0, 10**9)
    (grid,) = sink.msgs["grid"]
    assert [(d.label, d.size) for d in grid.layout.dim] == list(zip("xyz", GRID.shape, strict=True))
    labels = np.asarray(grid.data).reshape(GRID.shape)
    assert [(i, j, k, int(labels[i, j, k])) for i, j, k, _ in OCCUPIED] == OCCUPIED
    (markers,) = sink.msgs["markers"]
    assert sum(len(m.points) for m in markers.markers) == len(OCCUPIED)
    (costmap,) = sink.msgs["costmap"]
    assert costmap.header.frame_id == "base_link" and (costmap.info.width, costmap.info.height) == GRID.shape[:2]
    assert core.published == {"voxels": 1, "markers": 1, "grid": 1, "grid_description": 1, "costmap": 1}
    assert not [entry for entry in log if entry[0] != "info"]
    assert core.stop()


def test_a_synchronized_image_and_camera_info_set_carries_its_own_calibration() -> None:
    """The node's synchronizer delivers 2N messages (images, then CameraInfo, in camera order): no CameraInfo has to
    arrive earlier, as in `occ replay`."""
    core, sink, log = make_core()
    core.start()
    ordered = [infos()[name] for name in core.assembler.names]
    core.on_synchronized(*images(T0), *ordered)
    (cloud,) = sink.msgs["cloud"]
    assert cloud.width == len(OCCUPIED)
    assert core.stats.snapshot().skipped_total == 0
    assert core.stop()


def test_compressed_images_and_a_renamed_output_frame() -> None:
    core, sink, _ = started_core(compressed=True, frame_id="occupancy_grid")
    feed(core, T0, compressed=True)
    assert sink.msgs["cloud"][0].header.frame_id == "occupancy_grid"
    assert '"frame_id": "occupancy_grid"' in sink.msgs["grid_description"][0].data


def test_markers_only_when_subscribed_and_rate_limited_on_message_time() -> None:
    """The marker rate is counted in frame stamps, not on the wall clock: the node under sim time and `occ replay`
    of the same bag send markers with the same frames, however fast each runs."""
    clock = Clock()
    sink = Sink(subscribers=0)
    core, _, _ = started_core(sink=sink, clock=clock, **{"outputs.markers_rate_hz": 2.0})
    feed(core, T0)
    assert sink.msgs["markers"] == [] and len(sink.msgs["cloud"]) == 1
    sink.subscribers = 1
    feed(core, T0 + 1)
    clock.now += 10.0  # wall time does not matter
    feed(core, T0 + 100_000_000)  # 0.1 s of message time later: within 0.5 s of the last marker array
    feed(core, T0 + 600_000_000)
    assert len(sink.msgs["markers"]) == 2 and len(sink.msgs["cloud"]) == 4
    stamps = [m.markers[-1].header.stamp for m in sink.msgs["markers"]]
    assert [s.sec * 10**9 + s.nanosec for s in stamps] == [T0 + 1, T0 + 600_000_000]
    assert {m.ns for m in sink.msgs["markers"][0].markers if m.action == 0} == {"occupancy"}


def test_output_toggles_and_the_marker_cap() -> None:
    off = {"outputs.cloud": False, "outputs.grid": False, "outputs.max_marker_voxels": 2}
    core, sink, _ = started_core(**off)
    feed(core, T0)
    assert sink.msgs["cloud"] == sink.msgs["grid"] == sink.msgs["grid_description"] == []
    assert sum(len(m.points) for m in sink.msgs["markers"][0].markers) == 2
    assert core.markers_left_out == len(OCCUPIED) - 2


def test_min_confidence_filters_when_asked() -> None:
    core, sink, _ = started_core(**{"outputs.min_confidence": 0.95})
    feed(core, T0)
    assert sink.msgs["cloud"][0].width == 0


def test_a_camera_with_lens_distortion_is_undistorted_not_skipped() -> None:
    core, sink, log = started_core()
    built = MAPS.builds
    for stamp in (T0, T0 + 100):
        distorted = camera_info_msg(CAMERAS["CAM_FRONT"], stamp)
        distorted.d = np.array([-0.351, 0.12, 0.001, -0.001, -0.02])  # plumb_bob: a real wide-angle lens
        feed(core, stamp, CAM_FRONT_info=distorted)
    assert len(sink.msgs["cloud"]) == 2 and core.stats.snapshot().skipped_total == 0
    assert MAPS.builds == built + 1  # undistorted, with the map built once for the calibration
    assert not [entry for entry in log if entry[0] != "info"]


def bad_frames(core: OccupancySession, tf: TfTable) -> dict[SkipReason, int]:
    """Feed a good frame, one frame per kind of bad input, and a good frame; returns the expected skip counts."""
    feed(core, T0)  # good
    feed(core, T0)  # duplicate stamp
    feed(core, T0 - 1)  # out of order
    feed(core, T0 + 10, CAM_BACK=None)  # a camera missing
    wrong = images(T0 + 20)[1]
    wrong.encoding = "yuv422"
    feed(core, T0 + 20, CAM_BACK=wrong)
    small = image_msg(np.zeros((H // 2, W // 2, 3), np.uint8), T0 + 30, "cam_front_optical_frame")
    feed(core, T0 + 30, CAM_FRONT=small)
    del tf.poses[("base_link", "cam_back_optical_frame")]
    feed(core, T0 + 40)
    tf.poses[("base_link", "cam_back_optical_frame")] = invert_transform(CAMERAS["CAM_BACK"].cam_from_ego)
    nan_info = camera_info_msg(CAMERAS["CAM_FRONT"], T0)
    nan_info.k[0] = float("nan")
    feed(core, T0 + 50, CAM_FRONT_info=nan_info)
    foo_info = camera_info_msg(CAMERAS["CAM_BACK"], T0)
    foo_info.distortion_model = "foo"  # a lens model the preprocessing cannot undo: refused, not pinhole
    foo_info.d = np.array([-0.35, 0.12, 0.0, 0.0, 0.0])
    feed(core, T0 + 55, CAM_BACK_info=foo_info)
    broken = images(T0 + 60)[0]
    broken.header = None  # a message that is not an Image at all
    feed(core, T0 + 60, CAM_FRONT=broken)
    feed(core, T0 + 70)  # good again
    return {
        SkipReason.STAMP_ORDER: 2,
        SkipReason.MISSING_CAMERA: 1,
        SkipReason.ENCODING: 1,
        SkipReason.IMAGE_SIZE: 1,
        SkipReason.NO_TF: 1,
        SkipReason.BAD_CALIBRATION: 1,
        SkipReason.UNSUPPORTED_DISTORTION: 1,
        SkipReason.CORRUPT_IMAGE: 1,
    }


def test_every_bad_frame_is_warned_counted_and_skipped_and_the_node_goes_on() -> None:
    tf = TfTable()
    core, sink, log = started_core(tf=tf)
    expected = bad_frames(core, tf)
    snap = core.stats.snapshot()
    for reason, count in expected.items():
        assert snap.skipped[reason.value] == count, reason
    assert snap.processed == len(sink.msgs["cloud"]) == 2
    assert snap.received == 11
    warned = "\n".join(text for level, text in log if level == "warn")
    for reason in expected:
        assert f"skipped ({reason.value})" in warned
    assert "cam_back_optical_frame" in warned and "'yuv422'" in warned
    assert "camera 'CAM_BACK': unsupported distortion_model 'foo'" in warned
    values = dict(core.diagnostics().values)
    assert values["skipped no_tf"] == "1" and values["frames processed"] == "2"
    assert values["skipped unsupported_distortion"] == "1"


def test_warnings_are_throttled_per_reason() -> None:
    clock = Clock()
    core, _, log = started_core(clock=clock)
    for i in range(5):
        feed(core, T0 + i, CAM_BACK=None)
    feed(core, T0 + 10)
    feed(core, T0 + 10)  # a stamp_order warning is not held back by the missing_camera ones
    clock.now += 5.0
    feed(core, T0 + 20, CAM_BACK=None)
    warns = [text for level, text in log if level == "warn"]
    assert len(warns) == 3
    assert "4 more missing_camera skips since the last report" in warns[2]
    assert core.stats.snapshot().skipped["missing_camera"] == 6

    throttle = WarnThrottle(1.0, clock)
    assert throttle("a") == (True, 0) and throttle("a") == (False, 0) and throttle("b") == (True, 0)
    clock.now -= 10  # a clock jumping back never silences a reason
    assert throttle("a") == (True, 1)


def test_a_slow_backend_drops_old_frames_and_processes_the_newest() -> None:
    gate = threading.Event()
    core, sink, _ = started_core(backend=FakeBackend(gate=gate), run_inline=False)
    for i in range(6):
        feed(core, T0 + i)  # the backend is held on whichever frame it took first: the others replace each other
    gate.set()
    assert core.worker.wait_idle(timeout=60)
    assert core.stop()
    w = core.worker
    # at most the held frame and the newest pending one are processed, whatever the machine's speed
    assert w.submitted == 6 and w.processed + w.dropped == 6 and w.processed in (1, 2) and w.dropped >= 4
    assert core.stats.snapshot().skipped["superseded"] == w.dropped
    last = sink.msgs["cloud"][-1].header.stamp
    assert last.sec * 10**9 + last.nanosec == T0 + 5


def test_an_unexpected_error_is_logged_and_the_worker_goes_on() -> None:
    sink = Sink()
    core, _, log = started_core(sink=sink)
    calls = {"n": 0}

    def flaky(msg: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("publisher gone")
        sink.msgs["cloud"].append(msg)

    core.sinks.cloud = flaky
    feed(core, T0)
    feed(core, T0 + 1)
    assert core.worker.failed == 1 and len(sink.msgs["cloud"]) == 1
    assert any(level == "error" and "publisher gone" in text for level, text in log)


class FailingBackend(FakeBackend):
    """A backend whose runtime raises (as onnxruntime or CUDA do, not a BackendError) while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        if self.failing:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super()._run(feeds)


def test_a_failing_backend_is_a_counted_skip_warned_then_an_error_and_the_node_goes_on() -> None:
    """The backend raising mid-run: each frame is a `backend` skip, logged (throttled); /diagnostics goes WARN at the
    first failure, ERROR after `diagnostics.backend_error_after` in a row, and back once frames are processed."""
    clock = Clock()
    backend = FailingBackend()
    core, sink, log = started_core(
        backend=backend, clock=clock, input_timeout_s=100.0, **{"diagnostics.backend_error_after": 3}
    )
    feed(core, T0)
    assert core.diagnostics().level == 0
    backend.failing = True
    feed(core, T0 + 1)
    report = core.diagnostics()
    assert report.level == 1
    assert report.message == (
        "the inference backend failed on the last 1 frame(s): onnxruntime RuntimeError: CUDA error: an illegal memory "
        "access was encountered"
    )
    feed(core, T0 + 2)
    assert core.diagnostics().level == 1
    feed(core, T0 + 3)
    report = core.diagnostics()
    assert report.level == 2
    assert report.message.startswith("the inference backend failed on the last 3 frames (ERROR from 3 in a row): ")
    assert dict(report.values)["skipped backend"] == "3"
    assert dict(report.values)["backend failures in a row"] == "3"
    snap = core.stats.snapshot()
    assert snap.skipped["backend"] == 3 and snap.processed == 1
    assert core.worker.failed == 0  # a counted skip, not an unexpected error
    errors = [text for level, text in log if level == "error"]
    assert len(errors) == 1  # throttled per reason
    assert errors[0] == (
        f"frame {T0 + 1} ns skipped (backend): onnxruntime RuntimeError: CUDA error: an illegal memory access was "
        "encountered"
    )
    backend.failing = False
    feed(core, T0 + 4)  # the next good frame resets the count: no longer an error
    report = core.diagnostics()
    assert report.level == 1 and report.message.startswith("3 frame(s) skipped in the last 5 s, last: backend: ")
    assert dict(report.values)["backend failures in a row"] == "0"
    clock.now += 5.1  # the skips leave the warn_period_s window
    feed(core, T0 + 5)
    report = core.diagnostics()
    assert report.level == 0 and report.message.startswith("3 frames processed")
    assert len(sink.msgs["cloud"]) == 3
    assert P.from_ros_parameters({}).session_config().backend_error_after == 5  # the default


def test_diagnostics_report() -> None:
    core, _, _ = make_core()
    report = core.diagnostics()
    values = dict(report.values)
    assert report.level == 1 and report.message == "no frames received yet"
    assert values["backend"] == "onnxruntime" and values["provider"] == "FakeExecutionProvider"
    assert values["silent inputs"] == "none"  # not yet: input_timeout_s has not passed since the start
    assert values["input /cam_front/image_raw"] == values["input /cam_back/camera_info"] == "never received"
    for key in ("worker dropped", "skipped superseded", "skipped no_tf", "published voxels", "last problem"):
        assert key in values
    core.start()
    feed(core, T0)
    report = core.diagnostics()
    values = dict(report.values)
    assert report.level == 0 and values["silent inputs"] == "none"
    for stage in ("wait", "decode", "calibration", "preprocess", "inference", "postprocess", "publish"):
        assert f"{stage} p50 [ms]" in values
    fallback, _, _ = make_core(fallback=True)
    feed(fallback, T0)
    report = fallback.diagnostics()
    assert report.level == 1 and "fallback model" in report.message
    assert (
        "warn",
        "running the FALLBACK model; the configured model failed: model: broken",
    ) in fallback.startup_notes()
    assert diagnostic_level_bytes(2) == b"\x02" and diagnostic_level_bytes(7) == b"\x03"


def test_a_silent_camera_is_named_in_a_throttled_warning_and_in_the_diagnostics() -> None:
    """One image topic never publishes: the synchronizer never fires, so only the per-topic arrival watch can say
    which input is missing (it used to report "camera_info missing" for every camera)."""
    clock = Clock()
    core, _, log = started_core(clock=clock)
    talking = ["/cam_front/image_raw", "/cam_front/camera_info", "/cam_back/camera_info"]
    for _ in range(30):  # 3 s at 10 Hz
        clock.now += 0.1
        for topic in talking:
            core.on_input(topic)
    report = core.diagnostics()
    values = dict(report.values)
    assert report.level == 1 and report.message == "silent input(s): /cam_back/image_raw"
    assert values["silent inputs"] == "/cam_back/image_raw"
    assert values["input /cam_back/image_raw"] == "never received"
    assert values["input /cam_front/image_raw"] == "30 received, last 0.00 s ago"
    warns = [text for level, text in log if level == "warn"]
    assert len(warns) == 1 and warns[0].startswith("silent input(s): /cam_back/image_raw (no message yet, 0 so far).")
    clock.now += 1.0
    core.diagnostics()  # throttled: no second warning within warn_period_s
    assert len([1 for level, _ in log if level == "warn"]) == 1
    # a topic that stops is reported once it has been quiet for input_timeout_s (2 s by default)
    core.on_input("/cam_back/image_raw")
    for _ in range(25):
        clock.now += 0.1
        for topic in talking[1:]:
            core.on_input(topic)
    silent = dict(core.diagnostics().values)["silent inputs"]
    assert silent == "/cam_front/image_raw, /cam_back/image_raw"
    assert dict(core.diagnostics().values)["input /cam_front/image_raw"] == "30 received, last 3.50 s ago"
    # a stopped bag: every input silent, one short line instead of the list
    clock.now += 10.0
    assert core.diagnostics().message.startswith("silent input(s): /cam_front/image_raw, /cam_back/image_raw, ")
    assert log[-1][1].startswith("every input is silent: no message on any of the 4 input topics for 10.0 s (e.g. ")


def test_a_camera_count_other_than_the_models_is_refused() -> None:
    with pytest.raises(ValueError, match="parameter 'cameras' lists 3 cameras.*takes 2"):
        make_core(cameras=["CAM_FRONT", "CAM_BACK", "CAM_SIDE"])
    core, _, _ = make_core(cameras=["FRONT", "BACK"])
    assert any(level == "warn" and "position by position" in note for level, note in core.startup_notes())


# ---------------------------------------------------------------------- model loading
class Opener:
    """open_backend stand-in: paths in ``broken`` fail; records every call."""

    def __init__(self, *broken: str) -> None:
        self.broken = broken
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, path: Path, backend: str, **kwargs: Any) -> InferenceBackend:
        self.calls.append((str(path), backend, kwargs))
        if str(path) in self.broken:
            raise BackendError(f"{path}: TensorRT 10.3 engine, this machine has 8.6")
        return FakeBackend()


def test_the_fallback_model_loads_when_the_model_fails() -> None:
    opener = Opener("/m/model.engine")
    params = P.ModelParams(model="/m/model.engine", fallback_model="/m/model.onnx", threads=2, precision="fp16")
    loaded = open_model(params, opener)
    assert loaded.fallback and "parameter 'model' (/m/model.engine)" in loaded.reasons[0]
    assert opener.calls == [
        ("/m/model.engine", "tensorrt", {"device": "cpu", "warmup": True}),
        ("/m/model.onnx", "onnxruntime", {"device": "cpu", "warmup": True, "threads": 2, "spinning": True}),
    ]
    direct = open_model(P.ModelParams(model="/m/model.onnx", precision="fp16"), Opener())
    assert not direct.fallback and "ONNX model runs the precision it was exported with" in direct.warnings[0]


class FakeEngine(FakeBackend):
    name = "tensorrt"


class FakeTorch(FakeBackend):
    name = "torch"


def test_threads_and_spinning_set_for_a_backend_without_them_are_named_in_a_warning() -> None:
    def engine_opener(path: Path, backend: str, **kwargs: Any) -> InferenceBackend:
        assert backend == "tensorrt" and set(kwargs) == {"device", "warmup"}  # nothing CPU-side is passed
        return FakeEngine()

    set_both = open_model(P.ModelParams(model="/m/a.engine", threads=4, spinning=False), engine_opener)
    assert set_both.warnings == (
        "parameters threads: 4, spinning: False do not apply to the tensorrt backend; ignored",
    )
    assert open_model(P.ModelParams(model="/m/a.engine"), engine_opener).warnings == ()  # defaults: no noise
    calls: list[dict[str, Any]] = []

    def torch_opener(path: Path, backend: str, **kwargs: Any) -> InferenceBackend:
        calls.append(kwargs)
        return FakeTorch()

    note = open_model(P.ModelParams(model="/m/a.ckpt", threads=3, spinning=False), torch_opener).warnings
    assert calls == [{"device": "cpu", "warmup": True, "threads": 3, "half": False}]
    assert note == ("parameters spinning: False do not apply to the torch backend; ignored",)


def test_no_loadable_model_is_one_clear_error() -> None:
    params = P.ModelParams(model="/m/a.engine", fallback_model="/m/b.onnx")
    with pytest.raises(BackendError) as err:
        open_model(params, Opener("/m/a.engine", "/m/b.onnx"))
    assert "parameter 'model' (/m/a.engine)" in str(err.value)
    assert "parameter 'fallback_model' (/m/b.onnx)" in str(err.value)
    with pytest.raises(BackendError, match=r"(?s)set parameter 'fallback_model'.*suffix '\.tflite'"):
        open_model(P.ModelParams(model="/m/a.tflite"), Opener())


def test_backend_options() -> None:
    runtime = RuntimeSettings(threads=4, spinning=False)
    assert backend_options("torch", runtime, "fp16") == {"threads": 4, "half": True}
    assert backend_options("onnxruntime", runtime) == {"threads": 4, "spinning": False}
    assert backend_options("onnxruntime", RuntimeSettings(), providers=["cuda"]) == {
        "threads": 0,
        "spinning": True,
        "providers": ["cuda"],
    }
    assert backend_options("tensorrt", runtime, "fp16") == {}
    assert backend_options("torch", RuntimeSettings(), cuda_graph=True) == {
        "threads": 0,
        "half": False,
        "cuda_graph": True,
    }
    with pytest.raises(BackendError, match="precision 'int8'"):
        backend_options("torch", RuntimeSettings(), "int8")


@pytest.mark.parametrize(
    ("threads", "spinning", "message"),
    [
        (-1, True, "threads: expected an integer >= 0"),
        (1.5, True, "threads: expected"),
        (True, True, "threads"),
        (1, "no", "spinning: expected true or false"),
    ],
)
def test_runtime_settings_name_a_bad_value(threads: Any, spinning: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuntimeSettings(threads, spinning)


# ---------------------------------------------------------------------- launch file, RViz config, docs
def launch_arguments() -> dict[str, str]:
    tree = ast.parse(LAUNCH_FILE.read_text(), str(LAUNCH_FILE))
    declared = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            assert isinstance(node.args[0], ast.Constant)
            kw = {k.arg: k.value for k in node.keywords}
            assert "description" in kw
            default = kw["default_value"]
            declared[node.args[0].value] = default.value if isinstance(default, ast.Constant) else "<computed>"
    return declared


def test_the_launch_file_compiles_and_declares_its_arguments() -> None:
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
    args = launch_arguments()
    assert set(args) == {
        "config",
        "model",
        "backend",
        "namespace",
        "use_sim_time",
        "camera_remaps",
        "rviz",
        "rviz_config",
        "lifecycle",
        "autostart",
    }
    assert args["use_sim_time"] == "false" and args["rviz"] == "false" and args["model"] == ""
    assert args["lifecycle"] == "false" and args["autostart"] == "false"  # the plain node stays the default
    assert args["config"] == "<computed>"  # the installed share/occ_ros/config/occupancy.param.yaml
    tree = ast.parse(LAUNCH_FILE.read_text())
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_the_launch_file_type_checks(tmp_path: Path) -> None:
    """mypy with the project's settings on a copy (its folder `launch/` would shadow the `launch` package)."""
    api = pytest.importorskip("mypy.api")
    (tmp_path / "occupancy_launch.py").write_text(LAUNCH_FILE.read_text())
    (tmp_path / "occ_ros").symlink_to(REPO / "occ_ros")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        out, err, status = api.run(
            [
                "--config-file",
                str(REPO / "pyproject.toml"),
                "--cache-dir",
                str(tmp_path / ".mypy_cache"),
                "--follow-imports",
                "silent",
                "occupancy_launch.py",
            ]
        )
    finally:
        os.chdir(cwd)
    assert status == 0, out + err


def test_the_rviz_config_shows_voxels_markers_and_tf() -> None:
    config = yaml.safe_load(RVIZ_FILE.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    displays = {d["Class"]: d for d in manager["Displays"]}
    cloud = displays["rviz_default_plugins/PointCloud2"]
    assert cloud["Color Transformer"] == "RGB8" and cloud["Topic"]["Value"] == "occupancy_node/voxels"
    assert cloud["Topic"]["Reliability Policy"] == "Reliable"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "occupancy_node/markers"
    assert "rviz_default_plugins/TF" in displays


def test_the_node_doc_lists_every_parameter_and_topic() -> None:
    text = NODE_DOC.read_text()
    for spec in P.PARAMS:
        assert f"`{spec.name}`" in text, spec.name
    for key in P.CAMERA_KEYS:
        assert f"`camera.<NAME>.{key}`" in text
    debug = ("~/debug/processing_time/<stage>_ms", "~/debug/pipeline_latency_ms")
    for topic in ("~/voxels", "~/markers", "~/grid", "~/grid_description", "~/costmap", "/diagnostics", *debug):
        assert f"`{topic}`" in text
    for arg in launch_arguments():
        assert f"`{arg}`" in text, arg


def test_mypy_follows_rclpy_for_the_node() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    overrides = config["overrides"]
    follow = [o for o in overrides if "rclpy" in o["module"]]
    assert follow and follow[0].get("follow_untyped_imports") is True
    ignored = {m for o in overrides if o.get("ignore_missing_imports") for m in o["module"]}
    assert "rclpy" not in ignored and "rclpy.*" not in ignored
    assert {"message_filters", "tf2_ros", "diagnostic_updater", "launch", "launch_ros", "rcl_interfaces"} <= ignored


# ---------------------------------------------------------------------- the rclpy layer
def _ros_available() -> bool:
    try:
        importlib.import_module("rclpy.node")
        importlib.import_module("sensor_msgs.msg")
    except ImportError:
        return False
    return True


def test_the_node_module_fails_cleanly_without_ros() -> None:
    if _ros_available():
        pytest.skip("ROS 2 is installed here: the module imports")
    sys.modules.pop("occ_ros.node.occupancy_node", None)
    with pytest.raises(ImportError, match="occupancy_node needs ROS 2.*source /opt/ros"):
        importlib.import_module("occ_ros.node.occupancy_node")
    importlib.import_module("occ_ros.node")  # the package itself never needs rclpy


@pytest.mark.skipif(not _ros_available(), reason=NO_ROS)
def test_the_node_starts_publishes_its_description_and_shuts_down() -> None:  # pragma: no cover - needs ROS 2
    pytest.importorskip("torch")  # the default model is the shipped demo checkpoint
    import rclpy
    from rclpy.parameter import Parameter

    from occ_ros.node.occupancy_node import OccupancyNode

    rclpy.init()
    try:
        node = OccupancyNode(parameter_overrides=[Parameter("outputs.markers_rate_hz", value=1.0)])
        names = {name for name, _ in node.get_topic_names_and_types()}
        assert "/occupancy_node/grid_description" in names and "/occupancy_node/voxels" in names
        assert "/occupancy_node/costmap" in names
        assert node.core.published["grid_description"] == 1
        node.shutdown()
    finally:
        rclpy.try_shutdown()


def test_python_logging_reaches_the_node_logger_without_duplicate_skip_warnings() -> None:
    log: list[tuple[str, str]] = []
    undo = forward_python_logging(lambda level, text: log.append((level, text)))
    try:
        logging.getLogger("occ_ros.pipeline.worker").error("processing failed", exc_info=RuntimeError("boom"))
        logging.getLogger(PIPELINE_SKIP_LOGGER).warning("frame 1 skipped (no_tf): ...")
        logging.getLogger("occ_ros.inference").info("loaded")
        logging.getLogger("occ_ros.inference").debug("not forwarded")
    finally:
        undo()
    assert log == [
        ("error", "[occ_ros.pipeline.worker] processing failed: RuntimeError: boom"),
        ("info", "[occ_ros.inference] loaded"),
    ]
    assert logging.getLogger("occ_ros").propagate and not logging.getLogger("occ_ros").handlers


class ClosingBackend(FakeBackend):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_closing_ends_the_worker_thread_and_releases_the_backend() -> None:
    before = {t.name for t in threading.enumerate()}
    backend = ClosingBackend()
    core, _, _ = started_core(run_inline=False, backend=backend)
    assert "occ-inference" in {t.name for t in threading.enumerate()} - before
    assert core.close(timeout=5) and backend.closed
    assert "occ-inference" not in {t.name for t in threading.enumerate()} - before
    feed(core, T0)  # a late synchronizer callback after shutdown is dropped, not processed
    assert core.worker.dropped == 1 and backend.calls == 0


# ---------------------------------------------------------------------- logging onto rclpy's logger
class _CLogging:
    """rclpy's C extension, as far as ``RcutilsLogger`` uses it: severities, enabled-for, and the log call."""

    class RCUTILS_LOG_SEVERITY:  # noqa: N801 - the pybind11 enum's name
        RCUTILS_LOG_SEVERITY_UNSET = 0
        RCUTILS_LOG_SEVERITY_DEBUG = 10
        RCUTILS_LOG_SEVERITY_INFO = 20
        RCUTILS_LOG_SEVERITY_WARN = 30
        RCUTILS_LOG_SEVERITY_ERROR = 40
        RCUTILS_LOG_SEVERITY_FATAL = 50

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    def rclpy_logging_logger_is_enabled_for(self, name: str, severity: int) -> bool:
        return True

    def rclpy_logging_rcutils_log(self, severity: int, name: str, message: str, *caller: Any) -> None:
        self.records.append((int(severity), message))


def _rclpy_logger(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[tuple[int, str]]]:
    """A real ``rclpy.impl.rcutils_logger.RcutilsLogger``: rclpy's own Python source (the installed rclpy, or the
    rclpy-intellisense copy of its sources where ROS 2 is absent, with only the C extension replaced)."""
    import importlib.util
    import types

    if _ros_available():  # pragma: no cover - with ROS 2 sourced: the real thing, C extension included
        import rclpy.logging

        return rclpy.logging.get_logger("occ_ros_test"), []
    spec = importlib.util.find_spec("rclpy")
    if spec is None or spec.origin is None:
        pytest.skip("neither ROS 2 nor the rclpy sources (rclpy-intellisense, extra dev) are installed")
    root = Path(spec.origin).parent
    c_ext = _CLogging()
    package = types.ModuleType("rclpy")
    package.__path__ = [str(root)]
    impl = types.ModuleType("rclpy.impl")
    impl.__path__ = [str(root / "impl")]
    package.impl = impl  # type: ignore[attr-defined]
    singleton = types.ModuleType("rclpy.impl.implementation_singleton")
    singleton.rclpy_implementation = c_ext  # type: ignore[attr-defined]
    clock = types.ModuleType("rclpy.clock")
    clock.Clock = object  # type: ignore[attr-defined]  # only the throttle filter uses it
    for name in list(sys.modules):
        if name == "rclpy" or name.startswith("rclpy."):
            monkeypatch.delitem(sys.modules, name)
    for name, module in {
        "rclpy": package,
        "rclpy.impl": impl,
        "rclpy.impl.implementation_singleton": singleton,
        "rclpy.clock": clock,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    rcutils_logger = importlib.import_module("rclpy.impl.rcutils_logger")
    return rcutils_logger.RcutilsLogger("occ_ros_test"), c_ext.records


def test_every_severity_reaches_rclpys_logger_from_its_own_call_site(monkeypatch: pytest.MonkeyPatch) -> None:
    """rclpy fixes the severity of each call site: one shared dispatch line raised ``ValueError: Logger severity
    cannot be changed between calls`` on the node's first warning after its first info line."""
    from occ_ros.node.runtime import log_to

    logger, records = _rclpy_logger(monkeypatch)

    def one_site(level: str, text: str) -> None:  # the node's old dispatch: the stand-in must be as strict
        {"info": logger.info, "warn": logger.warning}[level](text)

    one_site("info", "first")
    with pytest.raises(ValueError, match="severity cannot be changed"):
        one_site("warn", "second")
    for _ in range(2):
        for level in ("info", "warn", "error", "debug", "fatal", "info", "warn"):
            log_to(logger, level, f"{level} line")
    if records or not _ros_available():
        assert [severity for severity, _ in records[1:]] == [20, 30, 40, 10, 50, 20, 30] * 2
        assert records[2] == (30, "warn line")
