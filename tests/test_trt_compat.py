"""TensorRT compatibility report: support tables, node checks, failures naming op / node / family."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from occ_export.trt_compat import (  # noqa: E402
    FAMILIES,
    TRTCompatError,
    check_trt_compat,
    compat_report,
    support_table,
)

FLOAT, INT64, UINT8 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.UINT8


def _model(nodes, inputs, outputs, initializers=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in extra_opsets)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _head_nodes(logits: str, classes_axis: int = 1) -> list:
    """labels = uint8(float(argmax)), confidence = max(softmax) over the class axis (opset 17 attributes)."""
    return [
        helper.make_node("ArgMax", [logits], ["argmax"], name="argmax", axis=classes_axis, keepdims=0),
        helper.make_node("Cast", ["argmax"], ["argmax_f"], name="argmax_to_float", to=FLOAT),
        helper.make_node("Cast", ["argmax_f"], ["labels"], name="labels_to_uint8", to=UINT8),
        helper.make_node("Softmax", [logits], ["probs"], name="softmax", axis=classes_axis),
        helper.make_node("ReduceMax", ["probs"], ["confidence"], name="confidence", axes=[classes_axis], keepdims=0),
    ]


def _supported_model():
    """Conv -> Relu -> Resize (linear) -> GridSample (4-D) -> class head with a uint8 output."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Resize", ["r", "", "scales"], ["up"], name="up", mode="linear"),
        helper.make_node("GridSample", ["up", "grid"], ["logits"], name="sample", align_corners=0),
        *_head_nodes("logits"),
    ]
    return _model(
        nodes,
        [_vi("x", FLOAT, [1, 3, 8, 8]), _vi("grid", FLOAT, [1, 5, 6, 2])],
        [_vi("labels", UINT8, [1, 5, 6]), _vi("confidence", FLOAT, [1, 5, 6])],
        [w, scales],
    )


def _grid_sample_model(rank: int, opset: int = 20):
    spatial = [4, 5, 6][: rank - 2]
    out = [2, 3, 4][: rank - 2]
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name=f"gs{rank}d", mode="linear")
    return _model(
        [node],
        [_vi("x", FLOAT, [1, 2, *spatial]), _vi("grid", FLOAT, [1, *out, rank - 2])],
        [_vi("y", FLOAT, [1, 2, *out])],
        opset=opset,
    )


# ---------------------------------------------------------------------------------------------- tables
def test_support_tables_record_their_sources_and_opset_ranges():
    for family in FAMILIES:
        table = support_table(family)
        assert table.sources and all(s.location and s.version for s in table.sources)
    assert support_table("8.6").sources[0].commit == "6d0ab7be324d02c7feb3a306b6fdbeae84f71ddc"
    assert (support_table("8.6").opset_max, support_table("10").opset_max, support_table("11").opset_max) == (
        17,
        24,
        25,
    )
    assert support_table("10.x") is support_table("10")
    # the matrices' facts our graph depends on
    assert "UINT8" in support_table("10").ops["Cast"].types and "UINT8" not in support_table("8.6").ops["Cast"].types
    assert support_table("8.6").ops["LayerNormalization"].supported  # 8.6 changelog over the 8.5 matrix
    assert not support_table("10").ops["DFT"].supported and support_table("11").ops["DFT"].since == "11.2"
    assert "Swish" not in support_table("10").ops and support_table("11").ops["Swish"].supported
    with pytest.raises(ValueError, match=r"unknown TensorRT family '9\.2'.*8\.6"):
        support_table("9.2")


# ---------------------------------------------------------------------------------------------- reports
def test_a_supported_graph_passes_every_family(tmp_path):
    model = _supported_model()
    onnx.checker.check_model(model, full_check=True)
    report = check_trt_compat(model)
    assert report.ok and report.failures() == [] and report.opset == 17
    assert report.op_types() == {n.op_type for n in model.graph.node}
    assert report.row("Cast").count == 2
    for row in report.rows:
        assert row.status == dict.fromkeys(FAMILIES, "supported"), row
    # a path works as well as a ModelProto
    path = tmp_path / "ok.onnx"
    onnx.save(model, str(path))
    assert compat_report(path).model == str(path) and compat_report(str(path)).ok
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        compat_report(tmp_path / "absent.onnx")


def test_5d_grid_sample_fails_before_tensorrt_11_2():
    model = _grid_sample_model(5)
    report = compat_report(model)
    status = report.row("GridSample").status
    assert status["8.6"].startswith("unsupported: input rank 5")
    assert status["10"].startswith("unsupported: input rank 5") and "gs5d" in status["10"]
    assert status["11"].startswith("restricted: rank-5 (3-D) GridSample needs TensorRT >= 11.2")
    assert report.graph["8.6"].startswith("unsupported: opset 20")  # GridSample-20 is the N-D version
    assert check_trt_compat(model, ["11"]).ok and compat_report(model, "11").families == ("11",)
    with pytest.raises(TRTCompatError) as err:
        check_trt_compat(model, ["10"])
    message = str(err.value)
    assert "TensorRT 10.x" in message and "GridSample" in message and "'gs5d'" in message
    assert not err.value.report.ok and {f.family for f in err.value.report.failures()} == {"10"}
    # the 4-D one is fine from 10.0 on
    assert check_trt_compat(_grid_sample_model(4), ["10", "11"]).ok
    assert compat_report(_grid_sample_model(4, opset=16)).ok


def test_ops_missing_from_the_matrices_and_custom_ops_fail_by_name():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("MyVoxelPool", ["r"], ["p"], name="pool_plugin", domain="com.example"),
        helper.make_node("Unique", ["x"], ["u"], name="uniq"),
    ]
    model = _model(
        nodes,
        [_vi("x", FLOAT, [4])],
        [_vi("p", FLOAT, None), _vi("u", FLOAT, None)],
        extra_opsets=["com.example"],
    )
    report = compat_report(model)
    assert not report.ok
    assert report.row("MyVoxelPool").domain == "com.example"
    failures = {(f.family, f.op_type, f.node) for f in report.failures()}
    for family in FAMILIES:
        assert (family, "MyVoxelPool", "pool_plugin") in failures and (family, "Unique", "uniq") in failures
        assert report.row("Relu").status[family] == "supported"
    assert "custom op of domain 'com.example'" in report.row("MyVoxelPool").status["10"]
    with pytest.raises(TRTCompatError, match=r"TensorRT 8\.6: Unique node 'uniq': unsupported"):
        check_trt_compat(model)

    # Swish (opset 24) is in no matrix before 11.0
    swish = _model(
        [helper.make_node("Swish", ["x"], ["y"], name="act")], [_vi("x", FLOAT, [4])], [_vi("y", FLOAT, [4])], opset=24
    )
    status = compat_report(swish).row("Swish").status
    assert status["8.6"] == "unsupported: Swish is not in the TensorRT 8.6 operator matrix [node act]"
    assert status["10"].startswith("unsupported: Swish is not in the TensorRT 10.x operator matrix")
    assert status["11"] == "supported"
    assert compat_report(swish).graph["10"].startswith("restricted: opset 24 needs a later 10.x")


def test_uint8_labels_need_a_float_cast_on_tensorrt_8_6():
    logits = _vi("logits", FLOAT, [1, 5, 6])
    direct = _model(
        [
            helper.make_node("ArgMax", ["logits"], ["idx"], name="argmax", axis=1, keepdims=0),
            helper.make_node("Cast", ["idx"], ["labels"], name="to_uint8", to=UINT8),
        ],
        [logits],
        [_vi("labels", UINT8, [1, 6])],
    )
    report = compat_report(direct)
    assert report.row("Cast").status["8.6"].startswith("unsupported: cast INT64 -> UINT8: TensorRT 8.6")
    assert report.row("Cast").status["10"].startswith("restricted: cast INT64 -> UINT8")
    assert [(f.family, f.node) for f in report.failures()] == [("8.6", "to_uint8")]
    assert check_trt_compat(direct, ["10", "11"]).ok
    # a UINT8 tensor inside the network is unsupported everywhere
    inner = _model(
        [
            helper.make_node("Cast", ["logits"], ["u8"], name="to_uint8", to=UINT8),
            helper.make_node("Cast", ["u8"], ["back"], name="to_float", to=FLOAT),
        ],
        [logits],
        [_vi("back", FLOAT, [1, 5, 6])],
    )
    failing = {(f.family, f.node) for f in compat_report(inner).failures()}
    assert failing == {(f, n) for f in FAMILIES for n in ("to_uint8", "to_float")}


def test_node_checks_constant_inputs_modes_and_subgraphs():
    axes = _vi("axes", INT64, [1])
    nodes = [
        helper.make_node("Unsqueeze", ["x", "axes"], ["u"], name="dyn_unsqueeze"),
        helper.make_node("Resize", ["x", "", "scales"], ["r"], name="cubic", mode="cubic"),
        helper.make_node("MaxPool", ["x4"], ["m", "mi"], name="pool_idx", kernel_shape=[2, 2]),
    ]
    model = _model(
        nodes,
        [_vi("x", FLOAT, [1, 2, 4]), axes, _vi("x4", FLOAT, [1, 1, 4, 4])],
        [_vi("u", FLOAT, None), _vi("r", FLOAT, None), _vi("m", FLOAT, None), _vi("mi", INT64, None)],
        [numpy_helper.from_array(np.array([1, 1, 2], np.float32), "scales")],
    )
    report = compat_report(model)
    for family in FAMILIES:
        assert "`axes` ('axes') must be" in report.row("Unsqueeze").status[family]
        assert report.row("Resize").status[family].startswith("unsupported: mode 'cubic'")
        assert "`Indices` output" in report.row("MaxPool").status[family]

    # ops inside If branches are reported; branch outputs must have different names
    def branch(name, value):
        const = helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array([value], np.float32)))
        return helper.make_graph([const], f"b{value}", [], [_vi(name, FLOAT, [1])])

    cond = _vi("cond", TensorProto.BOOL, [])
    ok_if = helper.make_node(
        "If", ["cond"], ["y"], name="choose", then_branch=branch("a", 1), else_branch=branch("b", 2)
    )
    report = compat_report(_model([ok_if], [cond], [_vi("y", FLOAT, [1])]))
    assert report.op_types() == {"If", "Constant"} and report.row("Constant").count == 2
    assert report.ok and report.row("If").status["10"] == "supported"
    same = helper.make_node("If", ["cond"], ["y"], name="same", then_branch=branch("a", 1), else_branch=branch("a", 2))
    assert (
        "same tensor names ['a']"
        in compat_report(_model([same], [cond], [_vi("y", FLOAT, [1])])).row("If").status["11"]
    )


# ---------------------------------------------------------------------------------------------- the network
TINY: dict[str, Any] = {
    "backbone_channels": 8,
    "feature_channels": 8,
    "bev_channels": 8,
    "conv3d_channels": 4,
    "z_samples": 2,
}


@pytest.fixture(scope="module")
def occupancy_onnx(tmp_path_factory) -> Path:
    """The tiny occupancy network exported like tests/test_model.py, with the labels / confidence head appended."""
    torch = pytest.importorskip("torch")
    from occ_ros.model.network import ModelConfig, OccupancyNetwork

    torch.manual_seed(0)
    model = OccupancyNetwork(ModelConfig(**TINY)).eval()
    path = tmp_path_factory.mktemp("onnx") / "occ.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            model.example_inputs(1),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["images", "K", "cam_from_ego"],
            output_names=["semantics", "density"],
        )
    proto = onnx.load(str(path))
    graph = proto.graph
    grid = [int(d.dim_value) for d in graph.output[0].type.tensor_type.shape.dim[2:]]
    graph.node.extend(_head_nodes("semantics"))
    del graph.output[:]
    graph.output.extend([_vi("labels", UINT8, [1, *grid]), _vi("confidence", FLOAT, [1, *grid])])
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def test_report_of_the_exported_network_lists_exactly_its_ops_and_is_ok(occupancy_onnx):
    proto = onnx.load(str(occupancy_onnx))
    op_types = {n.op_type for n in proto.graph.node}
    assert {"GridSample", "ArgMax", "Cast", "Softmax", "ReduceMax", "Conv", "Resize"} <= op_types
    report = check_trt_compat(occupancy_onnx)
    assert report.ok and report.opset == 17 and report.families == FAMILIES
    assert report.op_types() == op_types
    assert {r.op_type: r.count for r in report.rows} == {
        t: sum(n.op_type == t for n in proto.graph.node) for t in op_types
    }
    for op in ("GridSample", "ArgMax", "Softmax", "ReduceMax", "Cast", "Resize"):
        assert report.row(op).status == dict.fromkeys(FAMILIES, "supported"), op

    markdown = report.to_markdown()
    assert "| Op | Nodes | TensorRT 8.6 | TensorRT 10.x | TensorRT 11.x |" in markdown
    assert all(f"| {op} | " in markdown for op in op_types) and "6d0ab7be" in markdown
    data = json.loads(report.to_json())
    assert data["ok"] is True and data["opset"] == 17 and data["failures"] == []
    assert {o["op_type"] for o in data["ops"]} == op_types
    assert set(data["families"]) == set(FAMILIES) and all(f["ok"] for f in data["families"].values())


def test_the_appended_head_computes_labels_and_confidence(occupancy_onnx):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(occupancy_onnx), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    feeds["K"][..., :, :] = np.array([[80.0, 0, 99.5], [0, 80.0, 55.5], [0, 0, 1]], np.float32)
    labels, confidence = session.run(None, feeds)
    assert labels.dtype == np.uint8 and confidence.dtype == np.float32 and labels.shape == confidence.shape
    assert labels.max() < 18 and np.all((confidence > 0) & (confidence <= 1))
