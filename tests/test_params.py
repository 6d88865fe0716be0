"""The one parameter table of occupancy_node (occ_ros/node/params.py) and everything derived from it: the rclpy
declarations, the validation, the dataclass defaults, and the generated param file, JSON schema and docs table.

The rclpy tests run where ROS 2 is sourced (``source /work/ros2_jazzy/occ_env.sh`` here); the schema tests need
``jsonschema`` (the dev extra).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from occ_ros.core.config import flatten_keys
from occ_ros.core.rig import NUSCENES_CAMERAS
from occ_ros.node import param_docs
from occ_ros.node import params as P
from occ_ros.node.params import Descriptor, ParamError, ParamSpec

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gen_params.py"
INT64_MAX = 9223372036854775807


def _spec(name: str) -> ParamSpec:
    (spec,) = [s for s in P.specs(["CAM_X"]) if s.name == name]
    return spec


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("gen_params", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- generated files
def test_the_generated_files_are_current() -> None:
    assert param_docs.stale(REPO) == [], "the parameter table changed: run .venv/bin/python scripts/gen_params.py"


def test_check_names_each_stale_file_and_writing_fixes_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for rel in (param_docs.PARAM_FILE, param_docs.NODE_DOC):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    doc = tmp_path / param_docs.NODE_DOC
    doc.write_text(doc.read_text().replace("| `qos.depth` |", "| `qos.depth_old` |"))
    script = _script()

    assert script.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "docs/node.md is stale" in err and "schema/occupancy_node.schema.json is stale" in err  # missing
    assert "config/occupancy.param.yaml" not in err  # copied current

    assert script.main(["--root", str(tmp_path)]) == 0
    assert script.main(["--check", "--root", str(tmp_path)]) == 0
    assert doc.read_text() == (REPO / param_docs.NODE_DOC).read_text()
    assert (tmp_path / param_docs.SCHEMA_FILE).read_text() == (REPO / param_docs.SCHEMA_FILE).read_text()


def test_the_doc_without_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="params:begin"):
        param_docs.with_docs_table("# no table here\n")


def test_adding_a_parameter_is_one_table_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = ParamSpec("outputs.extra_hz", 5.0, "a new rate, Hz", minimum=1.0, maximum=10.0)
    monkeypatch.setattr(P, "PARAMS", (*P.PARAMS, extra))

    assert "      # a new rate, Hz [>= 1 and <= 10]\n      extra_hz: 5.0\n" in param_docs.param_file_text()
    outputs = param_docs.schema()["definitions"]["occupancy_node"]["properties"]["outputs"]["properties"]
    assert outputs["extra_hz"] == {
        "type": "number",
        "description": "a new rate, Hz",
        "default": 5.0,
        "minimum": 1.0,
        "maximum": 10.0,
    }
    assert "| `outputs.extra_hz` | double | `5.0` | >= 1 and <= 10 | a new rate, Hz |" in param_docs.docs_table()
    P.from_ros_parameters({"outputs.extra_hz": 2.0}, strict=True)  # known, in range
    with pytest.raises(ParamError, match=r"parameter 'outputs.extra_hz': expected a number >= 1 and <= 10, got 11"):
        P.from_ros_parameters({"outputs.extra_hz": 11})
    assert P.descriptor(extra).floating_point_range == (1.0, 10.0, 0.0)


def test_the_param_file_layout() -> None:
    text = (REPO / param_docs.PARAM_FILE).read_text()
    assert "/**:\n  ros__parameters:\n" in text
    assert "    sync:\n      # ApproximateTimeSynchronizer slop" in text
    assert "      slop_s: 0.05\n" in text
    assert "    qos:\n      # reliability of `~/voxels`, `~/markers`, `~/grid` [reliable | best_effort]\n" in text
    assert (
        "      CAM_BACK:\n        image_topic: /cam_back/image_raw\n        info_topic: /cam_back/camera_info\n" in text
    )
    assert all(len(line) <= 120 for line in text.splitlines())
    values = P.param_file_values(REPO / param_docs.PARAM_FILE)
    assert values["cameras"] == list(NUSCENES_CAMERAS) and values["precision"] == "" and values["threads"] == 1


@pytest.mark.parametrize("value", ["", "true", "cuda:0", "a b", "#x", "0.5", "/cam/image_raw", 1e-05, 2.0, 7, False])
def test_yaml_values_load_back_to_themselves(value: Any) -> None:
    assert yaml.safe_load(f"k: {param_docs.yaml_value(value)}")["k"] == value
    assert yaml.safe_load(f"k: {param_docs.yaml_value([str(value), 'B'])}")["k"] == [str(value), "B"]


def test_the_docs_table_rows() -> None:
    table = param_docs.docs_table()
    assert "| `sync.slop_s` | double | `0.05` | > 0 | ApproximateTimeSynchronizer slop" in table
    assert "| `backend` | string | `auto` | `auto`, `onnxruntime`, `tensorrt`, `torch` |" in table
    assert "| `camera.<NAME>.image_topic` | string | `/<name lower>/image_raw` |" in table
    assert "names camera.&lt;NAME>.*" in table  # an HTML-like tag outside code spans is escaped
    lines = table.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("| `cameras`"))) + 1 == lines.index(
        next(x for x in lines if x.startswith("| `camera.<NAME>.image_topic`"))
    )


# ---------------------------------------------------------------------- declarations
def test_descriptors_of_a_double_an_int_and_a_choice() -> None:
    slop = _spec("sync.slop_s")
    assert P.descriptor(slop) == Descriptor(
        name="sync.slop_s",
        type=3,
        default=0.05,
        description=slop.description,
        additional_constraints="a number > 0",
        read_only=True,
        dynamic_typing=True,
        floating_point_range=(0.0, math.inf, 0.0),
        integer_range=None,
        choices=(),
    )
    depth = _spec("qos.depth")
    assert P.descriptor(depth) == Descriptor(
        name="qos.depth",
        type=2,
        default=1,
        description=depth.description,
        additional_constraints="an integer >= 1",
        read_only=True,
        dynamic_typing=False,
        floating_point_range=None,
        integer_range=(1, INT64_MAX, 0),
    )
    backend = P.descriptor(_spec("backend"))
    assert (backend.type, backend.default, backend.dynamic_typing) == (4, "auto", False)
    assert backend.choices == ("auto", "onnxruntime", "tensorrt", "torch")
    assert backend.additional_constraints == "one of ['auto', 'onnxruntime', 'tensorrt', 'torch']"
    assert backend.floating_point_range is None and backend.integer_range is None
    confidence = P.descriptor(_spec("outputs.min_confidence"))
    assert confidence.floating_point_range == (0.0, 1.0, 0.0)
    assert confidence.additional_constraints == "a number >= 0 and <= 1"
    cameras = P.descriptor(_spec("cameras"))
    assert cameras.type == 9 and cameras.default == list(NUSCENES_CAMERAS)
    topic = P.descriptor(_spec("camera.CAM_X.info_topic"))
    assert (topic.name, topic.type, topic.default) == ("camera.CAM_X.info_topic", 4, "/cam_x/camera_info")
    assert topic.description == "`sensor_msgs/CameraInfo` topic of camera `CAM_X`"
    assert all(P.descriptor(s).read_only for s in P.specs(["CAM_X"]))


def test_the_dataclass_defaults_are_the_tables() -> None:
    assert P.ModelParams() == P.ModelParams(
        model="",
        backend="auto",
        device="cpu",
        precision="",
        threads=1,
        spinning=True,
        warmup=True,
        fallback_model="",
        fallback_backend="onnxruntime",
        fallback_device="cpu",
    )
    assert P.SyncParams() == P.SyncParams(0.05, 10)
    assert P.OutputParams() == P.OutputParams(True, True, True, 2.0, 50000, None)
    assert P.QosParams() == P.QosParams("reliable", "volatile", 1)
    node = P.NodeParams(P.ModelParams(), ())
    assert (node.compressed, node.base_frame, node.frame_id) == (False, "base_link", "base_link")
    assert (node.tf_timeout_s, node.input_timeout_s) == (0.05, 2.0)
    assert P.CameraParams("A", "/a", "/a_info").frame_id == ""
    assert P.from_ros_parameters({"cameras": ["A"]}) == replace(
        node, cameras=(P.CameraParams("A", "/a/image_raw", "/a/camera_info"),)
    )


def test_a_dataclass_field_must_match_its_table_row() -> None:
    with pytest.raises(TypeError, match="'sync.slop_s': the table's default 0.05 is not a int"):
        P.table_default("sync.slop_s", int)


# ---------------------------------------------------------------------- validation from the table
def test_ranges_choices_and_formats_come_from_the_row() -> None:
    spec = ParamSpec("x.rate", 1.0, "d", minimum=0.5, maximum=2.0)
    assert spec.check(2) == 2.0
    with pytest.raises(ValueError, match=r"parameter 'x.rate': expected a number >= 0.5 and <= 2, got 3"):
        spec.check(3)
    device = ParamSpec("x.device", "cpu", "d", pattern=P.DEVICE)
    assert device.check("cuda:1") == "cuda:1"
    for bad in ("gpu", "cuda:", "cpu\n"):
        with pytest.raises(ValueError, match="expected cpu, cuda or cuda:N"):
            device.check(bad)
    names = ParamSpec("x.names", ["a"], "d", pattern=P.CAMERA_NAME, min_items=1, unique_items=True)
    for bad in ([], ["a", "a"], ["1a"], "a"):
        with pytest.raises(ValueError, match="parameter 'x.names': expected a list of strings"):
            names.check(bad)


def test_a_cross_field_rule_stays() -> None:
    with pytest.raises(ParamError, match="int8 is a TensorRT engine's precision"):
        P.from_ros_parameters({"backend": "torch", "precision": "int8"})
    assert P.from_ros_parameters({"backend": "tensorrt", "precision": "int8"}).model.precision == "int8"


# ---------------------------------------------------------------------- the JSON schema
def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = param_docs.schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _file(**ros_parameters: Any) -> dict[str, Any]:
    return {"/**": {"ros__parameters": ros_parameters}}


def test_the_schema_is_autoware_shaped() -> None:
    schema = yaml.safe_load((REPO / param_docs.SCHEMA_FILE).read_text())  # JSON is YAML
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["properties"]["/**"]["properties"]["ros__parameters"] == {"$ref": "#/definitions/occupancy_node"}
    assert schema["required"] == ["/**"]
    node = schema["definitions"]["occupancy_node"]["properties"]
    assert node["sync"]["properties"]["slop_s"] == {
        "type": "number",
        "description": "ApproximateTimeSynchronizer slop: a frame's image stamps must spread less than this, s",
        "default": 0.05,
        "exclusiveMinimum": 0.0,
    }
    assert node["qos"]["properties"]["reliability"]["enum"] == ["reliable", "best_effort"]
    assert node["threads"]["type"] == "integer" and node["threads"]["minimum"] == 0 and node["threads"]["default"] == 1
    assert node["spinning"]["type"] == "boolean" and node["spinning"]["default"] is True
    assert "session.intra_op.allow_spinning" in node["spinning"]["description"]
    assert node["cameras"]["minItems"] == 1 and node["cameras"]["uniqueItems"] is True


def test_the_generated_param_file_validates_against_the_schema() -> None:
    validator = _validator()
    validator.validate(yaml.safe_load((REPO / param_docs.PARAM_FILE).read_text()))
    validator.validate(_file(sync={"slop_s": 1}, use_sim_time=True))  # partial; an int is a number


@pytest.mark.parametrize(
    ("ros_parameters", "why"),
    [
        ({"sync": {"slop_s": -1.0}}, "less than or equal to the minimum of 0.0"),
        ({"sync": {"slop_s": 0.0}}, "less than or equal to the minimum of 0.0"),
        ({"outputs": {"min_confidence": 1.5}}, "greater than the maximum of 1.0"),
        ({"qos": {"reliability": "RELIABLE"}}, "is not one of ['reliable', 'best_effort']"),
        ({"backend": "tflite"}, "is not one of"),
        ({"qos": {"depth": 0}}, "less than the minimum of 1"),
        ({"threads": 1.5}, "is not of type 'integer'"),
        ({"threads": -1}, "less than the minimum of 0"),
        ({"spinning": "off"}, "is not of type 'boolean'"),
        ({"device": "gpu"}, "does not match"),
        ({"sync": {"slop": 0.1}}, "Additional properties are not allowed ('slop' was unexpected)"),
        ({"cameras": []}, "should be non-empty"),
        ({"cameras": ["A", "A"]}, "non-unique elements"),
        ({"cameras": ["CAM FRONT"]}, "does not match"),
        ({"camera": {"CAM FRONT": {"frame_id": ""}}}, "does not match"),
        ({"camera": {"CAM_X": {"image_topic": "cam x/image"}}}, "does not match"),
        ({"camera": {"CAM_X": {"topic": "/x"}}}, "('topic' was unexpected)"),
    ],
)
def test_the_schema_rejects_what_the_node_rejects(ros_parameters: dict[str, Any], why: str) -> None:
    errors = list(_validator().iter_errors(_file(**ros_parameters)))
    assert errors and any(why in e.message for e in errors), [e.message for e in errors]
    flat = flatten_keys(ros_parameters)
    with pytest.raises(ParamError):
        P.from_ros_parameters({"cameras": ["CAM_X"], **flat}, strict=True)


def test_the_schema_wants_the_node_section() -> None:
    errors = [e.message for e in _validator().iter_errors({"/**": {"sync": {}}})]
    assert any("'ros__parameters' is a required property" in e for e in errors), errors


# ---------------------------------------------------------------------- rclpy (a real ROS 2)
def _ros() -> Any:
    try:
        importlib.import_module("rclpy.node")
        return importlib.import_module("occ_ros.node.occupancy_node")
    except ImportError as err:
        pytest.skip(f"needs a sourced ROS 2 (rclpy and the node's message packages): {err}")


def test_the_rclpy_descriptor_of_a_table_row() -> None:
    node_module = _ros()
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    assert node_module.ros_descriptor(P.descriptor(_spec("sync.slop_s"))) == ParameterDescriptor(
        name="sync.slop_s",
        type=3,
        description=_spec("sync.slop_s").description,
        additional_constraints="a number > 0",
        read_only=True,
        dynamic_typing=True,
        floating_point_range=[FloatingPointRange(from_value=0.0, to_value=math.inf, step=0.0)],
        integer_range=[],
    )
    assert node_module.ros_descriptor(P.descriptor(_spec("qos.depth"))).integer_range == [
        IntegerRange(from_value=1, to_value=INT64_MAX, step=0)
    ]
    backend = node_module.ros_descriptor(P.descriptor(_spec("backend")))
    assert backend.floating_point_range == [] and backend.integer_range == []
    assert backend.additional_constraints == "one of ['auto', 'onnxruntime', 'tensorrt', 'torch']"


def test_rclpy_declares_the_rows_and_enforces_their_ranges() -> None:
    node_module = _ros()
    import rclpy
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    rclpy.init()
    try:
        overrides = [Parameter("sync.slop_s", value=1), Parameter("qos.depth", value=0)]
        node = Node("param_table_test", parameter_overrides=overrides)
        for name in ("sync.slop_s", "qos.depth", "backend"):
            spec = _spec(name)
            descriptor = node_module.ros_descriptor(P.descriptor(spec))
            if name == "qos.depth":
                with pytest.raises(InvalidParameterValueException, match="out of range"):
                    node.declare_parameter(name, spec.default, descriptor)
                continue
            node.declare_parameter(name, spec.default, descriptor)
        assert node.get_parameter("sync.slop_s").value == 1  # dynamically typed: an integer is taken
        described = node.describe_parameter("sync.slop_s")
        assert described.read_only and described.floating_point_range[0].from_value == 0.0
        assert "ApproximateTimeSynchronizer" in described.description
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_the_node_reports_every_parameter_rclpy_and_the_table_reject() -> None:
    node_module = _ros()
    import rclpy
    from rclpy.parameter import Parameter

    rclpy.init()
    try:
        overrides = [
            Parameter("sync.slop_s", value=-1.0),  # rclpy: out of range
            Parameter("qos.depth", value=0),  # rclpy: out of range
            Parameter("backend", value="tflite"),  # the table: not a choice
        ]
        with pytest.raises(node_module.NodeStartupError) as err:
            node_module.OccupancyNode(parameter_overrides=overrides)
        text = str(err.value)
        assert "3 bad parameters" in text
        assert "parameter 'sync.slop_s': expected a number > 0" in text
        assert "parameter 'qos.depth': expected an integer >= 1" in text
        assert "parameter 'backend': expected one of ['auto', 'onnxruntime', 'tensorrt', 'torch'], got 'tflite'" in text
    finally:
        rclpy.try_shutdown()
