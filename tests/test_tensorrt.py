"""TensorRT export and runtime: everything that can be checked without TensorRT, plus real builds where it exists.

Without TensorRT: the engine cache key and its mismatch reports, sidecars (round trip, missing / corrupt), the
runtime check (another TensorRT version or GPU), I/O shape and dtype checks, the TensorRT family of a version, the
build plan per family and precision (TensorRT 11's FP16-ONNX and Q/DQ requirements, on small runnable ONNX graphs
made here), GPU precision support, trtexec commands, cache reuse / rebuild / refuse, calibration feeds from a real
synthetic dataset and its rosbag, calibration-cache provenance, the INT8 calibrator with a stub TensorRT module, and
the backend / builder failing cleanly where TensorRT is missing.

The thin TensorRT layer (build_engine's TensorRT calls, TensorRTBackend's load / run) is driven through a stand-in of
the TensorRT Python API it uses, whose "engine" runs the ONNX with onnxruntime on a fake GPU's memory. The tests at
the end build and run real engines and skip without TensorRT.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from occ_export.int8_calibration import (
    CalibrationError,
    calibration_cache_onnx,
    calibration_feeds,
    calibration_indices,
    make_entropy_calibrator,
    write_calibration_meta,
    write_calibration_npz,
)
from occ_export.tensorrt_build import (
    BuildError,
    BuildSettings,
    build_engine,
    cache_decision,
    local_trt_family,
    onnx_summary,
    plan_build,
    precision_supported,
    trt_family,
    trtexec_command,
    trtexec_for,
    write_sidecar_for_engine,
)
from occ_ros.core.grid import GridSpec
from occ_ros.core.preprocess import NetworkInput, PreprocessConfig, preprocess
from occ_ros.core.vocabulary import OCC3D
from occ_ros.datasets import open_dataset
from occ_ros.inference.backend import BackendError, open_backend
from occ_ros.inference.engine_meta import (
    EngineKey,
    EngineSidecar,
    SidecarError,
    check_engine_runtime,
    check_io_shapes,
    normalize_compute_capability,
    normalize_trt_version,
    parse_cuda_device,
    provider_string,
    read_sidecar,
    runtime_mismatch,
    sha256_file,
    sidecar_path,
    tensor_spec,
    trt_dtype_to_numpy,
    write_sidecar,
)
from occ_ros.inference.model_info import ModelInfo
from occ_ros.inference.tensorrt_backend import CudaDevice, TensorRTBackend, open_cuda

REPO = Path(__file__).resolve().parents[1]
SYNTH_BAG_CONFIG = REPO / "config" / "datasets" / "synth_bag.yaml"
SHA = "ab" * 32
OTHER_SHA = "cd" * 32
TRT_SKIP_REASON = "TensorRT is not installable here: its libraries come only from NVIDIA's index"


# ---------------------------------------------------------------------------------------------- helpers
def small_info(cameras: tuple[str, ...] = ("CAM_A", "CAM_B"), height: int = 32, width: int = 48) -> ModelInfo:
    """2 cameras of 48x32 network images, an 8x8x2 grid: images (1,2,3,32,48), labels (1,8,8,2)."""
    return ModelInfo(
        grid=GridSpec((-4.0, -4.0, -1.0), (4.0, 4.0, 1.0), (1.0, 1.0, 1.0)),
        vocabulary=OCC3D,
        cameras=cameras,
        preprocess=PreprocessConfig(height, width),
        config_hash="0" * 64,
        version="test",
    )


def make_onnx(
    path: Path,
    info: ModelInfo,
    fp16: bool = False,
    qdq: bool = False,
    metadata: str | None = "info",
    confidence_shape: tuple[int, ...] | None = None,
) -> Path:
    """A tiny runnable occ_ros-contract graph (opset 17): every input feeds the outputs.

    confidence = sigmoid(mean(images * W) + mean(K) + mean(cam_from_ego)) broadcast to (1, X, Y, Z),
    labels = uint8(confidence > 0.5). ``fp16``: W is float16 and the image branch runs in half (3 float16 weight
    elements vs 2 float32 ones: an "FP16 ONNX"); ``qdq``: the image mean goes through QuantizeLinear /
    DequantizeLinear. ``metadata``: "info" = ``info.to_json()``, None = no metadata, else that raw string.
    """
    shapes = info.input_shapes()
    out_shape = confidence_shape or info.output_shapes()["confidence"]
    wtype = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    inits = [
        helper.make_tensor("W", wtype, [1, 1, 3, 1, 1], [1.0, 0.5, 0.25]),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("out_shape", TensorProto.INT64, [len(out_shape)], list(out_shape)),
    ]
    nodes = []
    image = "images"
    if fp16:
        nodes.append(helper.make_node("Cast", ["images"], ["images_h"], to=TensorProto.FLOAT16))
        image = "images_h"
    nodes += [
        helper.make_node("Mul", [image, "W"], ["weighted"]),
        helper.make_node("ReduceMean", ["weighted"], ["m_img_raw"], keepdims=0),
    ]
    m_img = "m_img_raw"
    if fp16:
        nodes.append(helper.make_node("Cast", ["m_img_raw"], ["m_img_f"], to=TensorProto.FLOAT))
        m_img = "m_img_f"
    if qdq:
        inits += [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
            helper.make_tensor("zero", TensorProto.INT8, [], [0]),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [m_img, "scale", "zero"], ["m_q"]),
            helper.make_node("DequantizeLinear", ["m_q", "scale", "zero"], ["m_dq"]),
        ]
        m_img = "m_dq"
    nodes += [
        helper.make_node("ReduceMean", ["K"], ["m_k"], keepdims=0),
        helper.make_node("ReduceMean", ["cam_from_ego"], ["m_c"], keepdims=0),
        helper.make_node("Sum", [m_img, "m_k", "m_c"], ["s"]),
        helper.make_node("Mul", ["s", "half"], ["s_half"]),
        helper.make_node("Expand", ["s_half", "out_shape"], ["expanded"], name="expand"),
        helper.make_node("Sigmoid", ["expanded"], ["confidence"]),
        helper.make_node("Greater", ["confidence", "half"], ["positive"]),
        helper.make_node("Cast", ["positive"], ["labels"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_occ",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)) for name, shape in shapes.items()],
        [
            helper.make_tensor_value_info("labels", TensorProto.UINT8, list(out_shape)),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, list(out_shape)),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, {"occ_ros": info.to_json() if metadata == "info" else metadata})
    onnx.save(model, str(path))
    return path


def sidecar_for(info: ModelInfo, key: EngineKey | None = None) -> EngineSidecar:
    key = key or EngineKey(SHA, "10.3.0", "8.7", "fp16")
    return EngineSidecar(
        key=key,
        inputs={n: tensor_spec(s, np.float32) for n, s in info.input_shapes().items()},
        outputs={
            "labels": tensor_spec(info.output_shapes()["labels"], np.uint8),
            "confidence": tensor_spec(info.output_shapes()["confidence"], np.float32),
        },
        model=info.to_dict(),
        workspace_mib=2048,
        timing_cache="/tmp/model.engine.timing.cache",
        strongly_typed=False,
        trtexec="trtexec --onnx=m.onnx --saveEngine=model.engine --fp16",
    )


@pytest.fixture
def info() -> ModelInfo:
    return small_info()


@pytest.fixture
def onnx_files(tmp_path: Path, info: ModelInfo) -> dict[str, Path]:
    return {
        "fp32": make_onnx(tmp_path / "fp32.onnx", info),
        "fp16": make_onnx(tmp_path / "fp16.onnx", info, fp16=True),
        "qdq": make_onnx(tmp_path / "qdq.onnx", info, qdq=True),
        "qdq_fp16": make_onnx(tmp_path / "qdq_fp16.onnx", info, fp16=True, qdq=True),
    }


# ---------------------------------------------------------------------------------------------- cache key
def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000  # several read chunks would not be needed; 1.28 MB crosses the 1 MiB chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("10.3.0", "10.3.0"), ("10.3.0.30", "10.3.0"), ("8.6.1.post1", "8.6.1"), ("10.3", "10.3.0"), ("11", "11.0.0")],
)
def test_normalize_trt_version(raw: str, normalized: str) -> None:
    assert normalize_trt_version(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "normalized"), [("8.7", "8.7"), ("sm_87", "8.7"), ("87", "8.7"), ("sm_120", "12.0"), ((7, 5), "7.5")]
)
def test_normalize_compute_capability(raw: str | tuple[int, int], normalized: str) -> None:
    assert normalize_compute_capability(raw) == normalized


def test_bad_versions_and_capabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="not a TensorRT version"):
        normalize_trt_version("latest")
    with pytest.raises(ValueError, match="not a GPU compute capability"):
        normalize_compute_capability("orin")


def test_engine_key_normalizes_and_reports_each_differing_field_with_both_values() -> None:
    key = EngineKey(SHA, "10.3.0.30", "sm_87", "fp16")
    assert (key.trt_version, key.compute_capability) == ("10.3.0", "8.7")
    assert key == EngineKey(SHA, "10.3.0", "8.7", "fp16")
    assert key.diff(EngineKey(SHA, "10.3.0", "8.7", "fp16")) == []
    other = EngineKey(OTHER_SHA, "10.4.0", "8.7", "int8")
    assert key.diff(other) == [
        ("onnx_sha256", SHA, OTHER_SHA),
        ("trt_version", "10.3.0", "10.4.0"),
        ("precision", "fp16", "int8"),
    ]
    assert key.describe_diff(other, "existing", "wanted")[2] == "precision: existing fp16, wanted int8"
    assert EngineKey.from_dict(key.to_dict()) == key
    with pytest.raises(ValueError, match="precision"):
        EngineKey(SHA, "10.3.0", "8.7", "bf16")
    with pytest.raises(ValueError, match="64 hex digits"):
        EngineKey("abc", "10.3.0", "8.7", "fp16")


# ---------------------------------------------------------------------------------------------- sidecar
def test_sidecar_round_trip(tmp_path: Path, info: ModelInfo) -> None:
    engine = tmp_path / "model.engine"
    sidecar = sidecar_for(info)
    path = write_sidecar(engine, sidecar)
    assert path == sidecar_path(engine) == tmp_path / "model.engine.json"
    data = json.loads(path.read_text())
    assert data["format"] == "occ_ros.engine" and data["key"]["precision"] == "fp16"
    assert data["inputs"]["images"] == {"shape": [1, 2, 3, 32, 48], "dtype": "float32"}
    assert data["outputs"]["labels"] == {"shape": [1, 8, 8, 2], "dtype": "uint8"}
    assert data["build"]["workspace_mib"] == 2048 and data["build"]["trtexec"].startswith("trtexec")
    loaded = read_sidecar(engine)
    assert loaded == sidecar
    assert loaded.model_info() == info
    assert list(tmp_path.iterdir()) == [path]  # atomic write: no temp file left behind


def test_missing_sidecar_says_how_to_get_one(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(SidecarError, match="occ export --engine") as err:
        read_sidecar(engine)
    assert isinstance(err.value, BackendError) and "model.engine.json" in str(err.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "format": "other"}, "field 'format'"),
        (lambda d: {**d, "format_version": 99}, "upgrade occ_ros"),
        (lambda d: {k: v for k, v in d.items() if k != "key"}, "field 'key' is missing"),
        (lambda d: {**d, "key": {k: v for k, v in d["key"].items() if k != "precision"}}, "key.precision"),
        (lambda d: {**d, "key": {**d["key"], "precision": "fp8"}}, "bad field 'key'"),
        (lambda d: {**d, "inputs": {"images": {"shape": [1]}}}, "field 'inputs'['images']"),
        (lambda d: {**d, "outputs": {"labels": {"shape": ["x"], "dtype": "uint8"}}}, "field 'outputs'['labels']"),
        (lambda d: {**d, "model": []}, "field 'model'"),
        (lambda d: {**d, "build": {"workspace_mib": "lots"}}, "field 'build'"),
    ],
)
def test_corrupt_sidecar_errors_name_file_and_field(tmp_path: Path, info: ModelInfo, mutate, expected: str) -> None:
    engine = tmp_path / "model.engine"
    data = sidecar_for(info).to_dict()
    broken = mutate(data)
    sidecar_path(engine).write_text(broken if isinstance(broken, str) else json.dumps(broken))
    with pytest.raises(SidecarError) as err:
        read_sidecar(engine)
    assert "model.engine.json" in str(err.value) and expected in str(err.value)


def test_sidecar_with_bad_model_metadata_names_the_field(tmp_path: Path, info: ModelInfo) -> None:
    sidecar = sidecar_for(info)
    sidecar.model = {**sidecar.model, "cameras": []}
    write_sidecar(tmp_path / "m.engine", sidecar)
    with pytest.raises(SidecarError, match="field 'model'"):
        read_sidecar(tmp_path / "m.engine").model_info(str(sidecar_path(tmp_path / "m.engine")))


# ---------------------------------------------------------------------------------------------- runtime checks
def test_runtime_mismatch_names_both_sides(info: ModelInfo) -> None:
    sidecar = sidecar_for(info)  # TensorRT 10.3.0, sm_87
    assert runtime_mismatch(sidecar, "10.3.0", "8.7") == []
    assert runtime_mismatch(sidecar, "10.3.0.30", "sm_87") == []  # the build number does not matter
    [version] = runtime_mismatch(sidecar, "10.4.0", "8.7")
    assert "TensorRT 10.3.0" in version and "TensorRT 10.4.0" in version
    [gpu] = runtime_mismatch(sidecar, "10.3.0", "8.6")
    assert "8.7 (sm_87)" in gpu and "8.6 (sm_86)" in gpu
    assert len(runtime_mismatch(sidecar, "8.6.1", "7.2")) == 2


def test_check_engine_runtime_raises_backend_error(info: ModelInfo) -> None:
    sidecar = sidecar_for(info)
    check_engine_runtime(sidecar, "10.3.0", "8.7", "m.engine")
    with pytest.raises(BackendError) as err:
        check_engine_runtime(sidecar, "10.4.1", "8.9", "/models/m.engine")
    text = str(err.value)
    assert text.startswith("/models/m.engine:")
    for part in ("10.3.0", "10.4.1", "sm_87", "sm_89", "occ export --engine"):
        assert part in text


def test_check_io_shapes(info: ModelInfo) -> None:
    inputs = dict(info.input_shapes())
    outputs = dict(info.output_shapes())
    check_io_shapes(inputs, outputs, info, "m.engine")
    check_io_shapes({**inputs, "images": (-1, 2, 3, 32, 48)}, outputs, info, "m.engine")  # dynamic input
    check_io_shapes(inputs, {**outputs, "logits": (1, 18, 8, 8, 2)}, info, "m.engine")  # extra output: unused
    with pytest.raises(BackendError, match=r"output 'confidence' has shape \(1, 8, 8, 4\).*\(1, 8, 8, 2\)"):
        check_io_shapes(inputs, {**outputs, "confidence": (1, 8, 8, 4)}, info, "m.engine")
    with pytest.raises(BackendError, match=r"input 'K' has shape \(1, 3, 3, 3\)"):
        check_io_shapes({**inputs, "K": (1, 3, 3, 3)}, outputs, info, "m.engine")
    with pytest.raises(BackendError, match="no output 'labels'"):
        check_io_shapes(inputs, {"confidence": outputs["confidence"]}, info, "m.engine")
    with pytest.raises(BackendError, match=r"inputs \['depth'\]"):
        check_io_shapes({**inputs, "depth": (1,)}, outputs, info, "m.engine")
    with pytest.raises(BackendError, match="output 'labels' has shape"):
        check_io_shapes(inputs, {**outputs, "labels": (-1, 8, 8, 2)}, info, "m.engine")  # outputs must be static


def test_dtype_mapping_and_tensor_specs() -> None:
    assert trt_dtype_to_numpy("FLOAT") == np.float32
    assert trt_dtype_to_numpy("DataType.HALF") == np.float16
    assert trt_dtype_to_numpy(types.SimpleNamespace(name="UINT8")) == np.uint8  # an enum member like trt.DataType
    assert trt_dtype_to_numpy("INT64") == np.int64 and trt_dtype_to_numpy("BOOL") == np.bool_
    with pytest.raises(BackendError, match="BF16"):
        trt_dtype_to_numpy("BF16")
    assert tensor_spec((1, 2), types.SimpleNamespace(name="HALF")) == {"shape": [1, 2], "dtype": "float16"}
    assert tensor_spec([3], "uint8") == {"shape": [3], "dtype": "uint8"}
    assert tensor_spec((4,), np.float32) == {"shape": [4], "dtype": "float32"}


def test_devices_and_provider_string() -> None:
    assert parse_cuda_device("cuda") == 0 and parse_cuda_device("cuda:1") == 1 and parse_cuda_device("CUDA:2") == 2
    for bad in ("cpu", "gpu", "cuda:x"):
        with pytest.raises(BackendError, match="onnxruntime backend"):
            parse_cuda_device(bad)
    assert provider_string("10.3.0", "Orin", "8.7") == "TensorRT 10.3.0 on Orin (sm_87)"


# ---------------------------------------------------------------------------------------------- families, GPUs
@pytest.mark.parametrize(
    ("version", "family"),
    [("8.6.1", "8.6"), ("8.6.2.3", "8.6"), ("10.0.1", "10"), ("10.3.0.30", "10"), ("11.0.0", "11"), ("12.1", "11")],
)
def test_trt_family(version: str, family: str) -> None:
    assert trt_family(version) == family


@pytest.mark.parametrize(("version", "message"), [("8.5.3", "too old"), ("7.2.3", "too old"), ("9.2.0", "9.x")])
def test_trt_family_refuses_unsupported_versions(version: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        trt_family(version)


@pytest.mark.parametrize(
    ("precision", "cc", "ok"),
    [
        ("fp32", "5.0", True),
        ("fp16", "5.3", True),  # Jetson Nano
        ("fp16", "6.0", True),  # P100
        ("fp16", "6.1", False),  # P4: INT8 but no fast FP16
        ("fp16", "6.2", True),  # Jetson TX2
        ("fp16", "5.2", False),
        ("fp16", "8.7", True),  # Orin
        ("int8", "6.1", True),
        ("int8", "6.0", False),
        ("int8", "6.2", False),  # TX2 has no INT8
        ("int8", "5.3", False),
        ("int8", "7.2", True),  # Xavier
        ("int8", "12.0", True),
    ],
)
def test_precision_supported(precision: str, cc: str, ok: bool) -> None:
    if ok:
        assert precision_supported(precision, cc, "GPU")
    else:
        with pytest.raises(BuildError) as err:
            precision_supported(precision, cc, "Jetson TX2")
        assert "Jetson TX2" in str(err.value) and precision.upper() in str(err.value) and cc in str(err.value)


# ---------------------------------------------------------------------------------------------- ONNX summary
def test_the_test_graphs_are_valid_and_run(onnx_files: dict[str, Path], info: ModelInfo) -> None:
    import onnxruntime as ort

    feeds = {n: np.full(s, 0.1, dtype=np.float32) for n, s in info.input_shapes().items()}
    for path in onnx_files.values():
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        labels, confidence = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        assert labels.dtype == np.uint8 and labels.shape == (1, 8, 8, 2) and confidence.shape == (1, 8, 8, 2)
        assert np.all(labels == 1) and np.all(confidence > 0.5)


def test_onnx_summary(onnx_files: dict[str, Path], info: ModelInfo, tmp_path: Path) -> None:
    fp32 = onnx_summary(onnx_files["fp32"])
    assert fp32.sha256 == sha256_file(onnx_files["fp32"])
    assert fp32.inputs["images"] == ((1, 2, 3, 32, 48), "float32")
    assert fp32.outputs["labels"] == ((1, 8, 8, 2), "uint8")
    assert fp32.weight_elements == {"float32": 4} and fp32.float_dtypes == ["float32"]
    assert not fp32.is_fp16 and not fp32.has_qdq and fp32.model_info == info and fp32.metadata_error == ""
    fp16 = onnx_summary(onnx_files["fp16"])
    assert fp16.weight_elements == {"float16": 3, "float32": 1} and fp16.is_fp16 and not fp16.has_qdq
    qdq = onnx_summary(onnx_files["qdq"])
    assert qdq.has_qdq and not qdq.is_fp16
    bare = onnx_summary(make_onnx(tmp_path / "bare.onnx", info, metadata=None))
    assert bare.model_info is None and "metadata_props key 'occ_ros'" in bare.metadata_error
    garbled = onnx_summary(make_onnx(tmp_path / "garbled.onnx", info, metadata="{]"))
    assert garbled.model_info is None and "not JSON" in garbled.metadata_error
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(BuildError, match="not a readable ONNX model"):
        onnx_summary(tmp_path / "junk.onnx")
    with pytest.raises(BuildError, match="no such ONNX file"):
        onnx_summary(tmp_path / "missing.onnx")


def test_fp16_inputs_make_an_fp16_onnx(tmp_path: Path, info: ModelInfo) -> None:
    path = make_onnx(tmp_path / "m.onnx", info)
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, str(path))
    assert onnx_summary(path).is_fp16


# ---------------------------------------------------------------------------------------------- build plans
def _plan(onnx_path: Path, family: str, precision: str, tmp_path: Path, **settings: object):
    resolved = BuildSettings(precision=precision, **settings).resolved(tmp_path / "model.engine")  # type: ignore[arg-type]
    return plan_build(resolved, family, onnx_summary(onnx_path))


def test_plan_fp32_and_fp16_per_family(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    fp32, fp16 = onnx_files["fp32"], onnx_files["fp16"]
    plan = _plan(fp32, "8.6", "fp32", tmp_path)
    assert plan.ok and plan.network_flags == ("EXPLICIT_BATCH",) and plan.builder_flags == ()
    plan = _plan(fp32, "8.6", "fp16", tmp_path)
    assert plan.ok and plan.network_flags == ("EXPLICIT_BATCH",) and plan.builder_flags == ("FP16",)
    assert not plan.strongly_typed
    plan = _plan(fp32, "10", "fp32", tmp_path)
    assert plan.ok and plan.network_flags == () and plan.builder_flags == ()
    plan = _plan(fp32, "10", "fp16", tmp_path)  # weakly typed: deprecated since 10.12, still available
    assert plan.ok and plan.builder_flags == ("FP16",) and any("10.12" in n for n in plan.notes)
    plan = _plan(fp16, "10", "fp16", tmp_path)  # an FP16 ONNX builds strongly typed on 10
    assert plan.ok and plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == () and plan.strongly_typed
    plan = _plan(fp32, "11", "fp32", tmp_path)
    assert plan.ok and plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == () and plan.strongly_typed
    plan = _plan(fp16, "11", "fp16", tmp_path)
    assert plan.ok and plan.builder_flags == () and plan.strongly_typed and not plan.needs_calibrator


def test_plan_trt11_fp16_needs_an_fp16_onnx(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    plan = _plan(onnx_files["fp32"], "11", "fp16", tmp_path)
    assert not plan.ok
    [error] = plan.errors
    assert "FP32 ONNX" in error and "--half" in error and "strongly typed" in error and "fp32.onnx" in error


def test_plan_trt11_int8_needs_qdq_nodes(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    plan = _plan(onnx_files["fp32"], "11", "int8", tmp_path, calib=tmp_path)
    [error] = plan.errors
    assert "QuantizeLinear / DequantizeLinear" in error and "Model Optimizer" in error
    plan = _plan(onnx_files["qdq"], "11", "int8", tmp_path, calib=tmp_path)
    assert plan.ok and plan.builder_flags == () and plan.strongly_typed and not plan.needs_calibrator
    assert any("--calib is not used" in n for n in plan.notes)


@pytest.mark.parametrize("family", ["8.6", "10"])
def test_plan_int8_calibration_on_weakly_typed_families(onnx_files: dict[str, Path], tmp_path: Path, family) -> None:
    fp32 = onnx_files["fp32"]
    plan = _plan(fp32, family, "int8", tmp_path)
    [error] = plan.errors
    assert "needs calibration data" in error and "--calib DIR|BAG" in error and "model.engine.calib.cache" in error
    plan = _plan(fp32, family, "int8", tmp_path, calib=tmp_path / "data")
    assert plan.ok and plan.builder_flags == ("INT8", "FP16") and plan.needs_calibrator and not plan.calib_from_cache
    cache = tmp_path / "model.engine.calib.cache"
    cache.write_bytes(b"TRT-1234-EntropyCalibration2\n")  # a cache of unknown provenance is used, with a warning
    plan = _plan(fp32, family, "int8", tmp_path)
    assert plan.ok and plan.needs_calibrator and plan.calib_from_cache
    assert any("does not record which ONNX" in n for n in plan.notes)
    write_calibration_meta(cache, sha256_file(fp32), "data", 64)
    plan = _plan(fp32, family, "int8", tmp_path)
    assert plan.ok and plan.calib_from_cache and not any("does not record" in n for n in plan.notes)
    write_calibration_meta(cache, OTHER_SHA, "data", 64)  # scales of another ONNX: never used silently
    plan = _plan(fp32, family, "int8", tmp_path)
    [error] = plan.errors
    assert "was made for another ONNX" in error and "cdcdcdcdcdcd" in error and "--calib DIR|BAG" in error
    plan = _plan(fp32, family, "int8", tmp_path, calib=tmp_path / "data")
    assert plan.ok and plan.recalibrate and not plan.calib_from_cache and any("recalibrating" in n for n in plan.notes)
    cache.unlink()
    plan = _plan(onnx_files["qdq"], family, "int8", tmp_path)  # explicit quantization: no calibrator
    assert plan.ok and plan.builder_flags == ("INT8", "FP16") and not plan.needs_calibrator
    plan = _plan(onnx_files["fp16"], family, "int8", tmp_path, calib=tmp_path)
    assert any("INT8 calibration needs the FP32 ONNX" in e for e in plan.errors)


def test_plan_trt10_qdq_fp16_onnx_is_strongly_typed(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    plan = _plan(onnx_files["qdq_fp16"], "10", "int8", tmp_path)
    assert plan.ok and plan.strongly_typed and plan.builder_flags == () and not plan.needs_calibrator


@pytest.mark.parametrize("family", ["8.6", "10", "11"])
def test_plan_refuses_fp32_from_an_fp16_onnx(onnx_files: dict[str, Path], tmp_path: Path, family: str) -> None:
    plan = _plan(onnx_files["fp16"], family, "fp32", tmp_path)
    assert any("FP16 ONNX" in e and "without --half" in e for e in plan.errors)


def test_plan_checks_metadata_and_shapes(tmp_path: Path, info: ModelInfo) -> None:
    plan = _plan(make_onnx(tmp_path / "bare.onnx", info, metadata=None), "10", "fp32", tmp_path)
    assert any("occ export" in e and "'occ_ros'" in e for e in plan.errors)
    wrong = make_onnx(tmp_path / "wrong.onnx", info, confidence_shape=(1, 8, 8, 3))
    plan = _plan(wrong, "10", "fp32", tmp_path)
    assert any("output 'confidence' has shape (1, 8, 8, 3)" in e and "(1, 8, 8, 2)" in e for e in plan.errors)
    with pytest.raises(ValueError, match="family"):
        plan_build(BuildSettings(), "9", onnx_summary(make_onnx(tmp_path / "ok.onnx", info)))


def test_build_settings_validation_and_defaults(tmp_path: Path) -> None:
    settings = BuildSettings()
    assert (settings.precision, settings.workspace_mib, settings.calib_frames, settings.on_mismatch) == (
        "fp32",
        2048,
        64,
        "rebuild",
    )
    resolved = settings.resolved(tmp_path / "m.engine")
    assert resolved.timing_cache == tmp_path / "m.engine.timing.cache"
    assert resolved.calib_cache == tmp_path / "m.engine.calib.cache"
    assert BuildSettings(timing_cache="t.cache").resolved(tmp_path / "m.engine").timing_cache == Path("t.cache")  # type: ignore[arg-type]
    assert not hasattr(settings, "reuse_mismatched")
    for bad in ({"precision": "int4"}, {"workspace_mib": 0}, {"calib_frames": 0}, {"on_mismatch": "reuse"}):
        with pytest.raises(ValueError):
            BuildSettings(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- trtexec
def _args(command: str) -> list[str]:
    return shlex.split(command)


def test_trtexec_commands_per_family(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    fp32, fp16 = onnx_files["fp32"], onnx_files["fp16"]
    args = _args(trtexec_command(fp32, engine, BuildSettings(precision="fp16"), "8.6"))
    assert args[0] == "trtexec" and f"--onnx={fp32}" in args and f"--saveEngine={engine}" in args
    assert "--memPoolSize=workspace:2048" in args and f"--timingCacheFile={engine}.timing.cache" in args
    assert "--fp16" in args and "--stronglyTyped" not in args and "--int8" not in args
    args = _args(trtexec_command(fp32, engine, BuildSettings(precision="fp16", workspace_mib=512), "10"))
    assert "--fp16" in args and "--memPoolSize=workspace:512" in args and "--stronglyTyped" not in args
    args = _args(trtexec_command(fp16, engine, BuildSettings(precision="fp16"), "10"))
    assert "--stronglyTyped" in args and "--fp16" not in args
    settings = BuildSettings(precision="int8", calib=tmp_path, calib_cache=tmp_path / "calib.cache")
    args = _args(trtexec_command(fp32, engine, settings, "10"))
    assert "--int8" in args and "--fp16" in args and f"--calib={tmp_path / 'calib.cache'}" in args
    args = _args(trtexec_command(fp16, engine, BuildSettings(precision="fp16"), "11"))
    assert not {"--fp16", "--int8", "--stronglyTyped"} & set(args) and not any(a.startswith("--calib") for a in args)
    args = _args(trtexec_command(onnx_files["qdq"], engine, BuildSettings(precision="int8"), "11"))
    assert not {"--fp16", "--int8"} & set(args)
    args = _args(trtexec_command(onnx_files["qdq"], engine, BuildSettings(precision="int8"), "10"))
    assert "--int8" in args and not any(a.startswith("--calib") for a in args)  # Q/DQ: no calibration cache


def test_trtexec_command_quotes_paths(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    engine = tmp_path / "my models" / "model.engine"
    command = trtexec_command(onnx_files["fp32"], engine, BuildSettings(), "10")
    assert f"--saveEngine={engine}" in _args(command) and "'" in command


def test_trtexec_for_without_tensorrt_lists_each_family(
    no_tensorrt: None, onnx_files: dict[str, Path], tmp_path: Path
) -> None:
    engine = tmp_path / "model.engine"
    assert local_trt_family() is None
    settings = BuildSettings(precision="fp16")
    first, second = trtexec_for(onnx_files["fp32"], engine, settings).split("\n")
    assert first.endswith("  # TensorRT 8.6, TensorRT 10.x") and "--fp16" in shlex.split(first, comments=True)
    assert second.startswith("# TensorRT 11+: not buildable at fp16:") and "--half" in second
    lines = trtexec_for(onnx_files["fp16"], engine, settings).split("\n")
    assert [line.rsplit("# ", 1)[1] for line in lines] == ["TensorRT 8.6", "TensorRT 10.x", "TensorRT 11+"]
    assert "--fp16" in lines[0] and "--stronglyTyped" in lines[1] and "--fp16" not in lines[2]
    assert trtexec_for(onnx_files["fp32"], engine, settings, "10") == trtexec_command(
        onnx_files["fp32"], engine, settings, "10"
    )
    assert trtexec_for(onnx_files["fp32"], engine, settings, "11").startswith("# TensorRT 11+: not buildable")


# ---------------------------------------------------------------------------------------------- engine cache
def test_cache_decision_reuses_only_a_matching_engine(tmp_path: Path, info: ModelInfo) -> None:
    engine = tmp_path / "model.engine"
    key = EngineKey(SHA, "10.3.0", "8.7", "fp16")
    assert cache_decision(engine, key).action == "build"
    engine.write_bytes(b"serialized plan")
    rebuild = cache_decision(engine, key)
    assert rebuild.action == "rebuild" and "no sidecar" in rebuild.reasons[0]
    sidecar = sidecar_for(info, key)
    sidecar.engine_sha256 = sha256_file(engine)
    write_sidecar(engine, sidecar)
    assert cache_decision(engine, key).reuse
    assert cache_decision(engine, key, on_mismatch="refuse").reuse
    wanted = EngineKey(OTHER_SHA, "10.3.0", "8.6", "fp16")
    decision = cache_decision(engine, wanted)
    assert decision.action == "rebuild" and decision.reasons == (
        f"onnx_sha256: existing {SHA}, wanted {OTHER_SHA}",
        "compute_capability: existing 8.7, wanted 8.6",
    )
    with pytest.raises(BuildError, match="rebuild policy 'refuse'") as err:
        cache_decision(engine, wanted, on_mismatch="refuse")
    assert "compute_capability: existing 8.7, wanted 8.6" in str(err.value)
    engine.write_bytes(b"another plan")  # replaced behind the sidecar's back
    assert "changed since its sidecar" in cache_decision(engine, key).reasons[0]


def test_write_sidecar_for_a_trtexec_engine(onnx_files: dict[str, Path], tmp_path: Path, info: ModelInfo) -> None:
    engine = tmp_path / "model.engine"
    settings = BuildSettings(precision="fp16")
    with pytest.raises(BuildError, match="no such engine file"):
        write_sidecar_for_engine(onnx_files["fp16"], engine, settings, "11.0.0", "8.7")
    engine.write_bytes(b"plan from trtexec")
    path = write_sidecar_for_engine(onnx_files["fp16"], engine, settings, "11.0.0", "sm_87", "Orin")
    sidecar = read_sidecar(engine)
    assert path == sidecar_path(engine)
    assert sidecar.key == EngineKey(sha256_file(onnx_files["fp16"]), "11.0.0", "8.7", "fp16")
    assert sidecar.model_info() == info and sidecar.strongly_typed and sidecar.gpu_name == "Orin"
    assert sidecar.inputs["images"] == {"shape": [1, 2, 3, 32, 48], "dtype": "float32"}
    assert sidecar.trtexec.startswith("trtexec --onnx=") and "--fp16" not in sidecar.trtexec
    assert cache_decision(engine, sidecar.key).reuse
    with pytest.raises(BuildError, match="strongly typed"):  # TRT 11 fp16 from an FP32 ONNX
        write_sidecar_for_engine(onnx_files["fp32"], engine, settings, "11.0.0", "8.7")


def test_occ_export_trtexec_built_writes_the_sidecar(onnx_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    """The documented path for engines built on a Jetson with trtexec: the CLI describes them afterwards."""
    from occ_tools.cli import main

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan from trtexec")
    onnx_path = str(onnx_files["fp16"])
    args = ["export", "--onnx", onnx_path, "--engine", str(engine), "--precision", "fp16"]
    assert main([*args, "--trtexec-built", "10.3.0", "8.7", "--gpu-name", "Orin"]) == 0
    assert "compute capability 8.7" in capsys.readouterr().out
    sidecar = read_sidecar(engine)
    assert sidecar.key == EngineKey(sha256_file(onnx_files["fp16"]), "10.3.0", "8.7", "fp16")
    assert sidecar.gpu_name == "Orin"


# ---------------------------------------------------------------------------------------------- calibration data
@pytest.mark.parametrize(
    ("count", "limit", "indices"),
    [(3, 64, [0, 1, 2]), (10, 3, [0, 4, 9]), (100, 5, [0, 25, 50, 74, 99]), (5, 1, [0]), (0, 4, [])],
)
def test_calibration_indices(count: int, limit: int, indices: list[int]) -> None:
    assert calibration_indices(count, limit) == indices


def test_calibration_indices_need_a_positive_limit() -> None:
    with pytest.raises(CalibrationError, match="at least 1"):
        calibration_indices(10, 0)


SYNTH_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


@pytest.fixture(scope="module")
def synth_sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from occ_training.synth.sequence import generate

    return generate(tmp_path_factory.mktemp("synth") / "seq", frames=3, seed=5, preset="demo", progress=False)


def synth_info(height: int = 48) -> ModelInfo:
    """The synthetic rig's 6 cameras (200x112) into 96 x ``height`` network images."""
    return small_info(cameras=SYNTH_CAMERAS, height=height, width=96)


def test_calibration_feeds_from_a_synthetic_dataset(synth_sequence: Path) -> None:
    info = synth_info()
    feeds = list(calibration_feeds(synth_sequence, info, limit=2))
    assert len(feeds) == 2  # 3 frames, 2 wanted: frames 0 and 2
    for feed in feeds:
        assert {k: v.shape for k, v in feed.items()} == {
            "images": (1, 6, 3, 48, 96),
            "K": (1, 6, 3, 3),
            "cam_from_ego": (1, 6, 4, 4),
        }
        assert all(v.dtype == np.float32 and v.flags["C_CONTIGUOUS"] for v in feed.values())
    reader = open_dataset(synth_sequence, load_gt=False)
    last = reader.load(2)
    expected = preprocess(last.images, last.rig, info.preprocess)
    np.testing.assert_array_equal(feeds[1]["images"][0], expected.images)
    assert not np.array_equal(feeds[0]["images"], feeds[1]["images"])
    # By hand: 200x112 scaled by 96/200 = 0.48 to 96x54, the top 54 - 48 = 6 rows cut.
    cam = last.rig[0]
    fx, fy, cx, cy = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
    want_K = [[fx * 0.48, 0, (cx + 0.5) * 0.48 - 0.5], [0, fy * 0.48, (cy + 0.5) * 0.48 - 0.5 - 6], [0, 0, 1]]
    np.testing.assert_allclose(feeds[1]["K"][0, 0], want_K, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(feeds[1]["cam_from_ego"][0, 0], cam.cam_from_ego, atol=1e-6)


def test_calibration_feeds_from_the_rosbag_match_the_folder(synth_sequence: Path) -> None:
    info = synth_info()
    from_folder = list(calibration_feeds(synth_sequence, info, limit=2))
    from_bag = list(calibration_feeds(synth_sequence / "bag", info, limit=2, dataset_config=SYNTH_BAG_CONFIG))
    assert len(from_bag) == 2
    for a, b in zip(from_folder, from_bag, strict=True):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_allclose(a["K"], b["K"], atol=1e-4)
        np.testing.assert_allclose(a["cam_from_ego"], b["cam_from_ego"], atol=1e-5)


def test_calibration_feeds_check_the_camera_count_and_image_size(synth_sequence: Path) -> None:
    with pytest.raises(CalibrationError) as err:
        calibration_feeds(synth_sequence, small_info(cameras=SYNTH_CAMERAS[:5], width=96), limit=2)
    assert "the model takes 5 cameras" in str(err.value) and "has 6" in str(err.value)
    with pytest.raises(CalibrationError, match="camera 'CAM_FRONT' gives 200x112 images"):
        calibration_feeds(synth_sequence, synth_info(height=64), limit=2)  # 54 rows after scaling < 64


def test_write_calibration_npz_for_model_optimizer(synth_sequence: Path, tmp_path: Path) -> None:
    feeds = list(calibration_feeds(synth_sequence, synth_info(), limit=3))
    path = write_calibration_npz(iter(feeds), tmp_path / "calib.npz")
    with np.load(path) as npz:
        assert sorted(npz.files) == ["K", "cam_from_ego", "images"]
        assert npz["images"].shape == (3, 6, 3, 48, 96) and npz["images"].dtype == np.float32
        np.testing.assert_array_equal(npz["K"][2], feeds[2]["K"][0])
    with pytest.raises(CalibrationError, match="no calibration frames"):
        write_calibration_npz([], tmp_path / "empty.npz")


def test_occ_export_calib_npz_writes_the_model_optimizer_data(synth_sequence: Path, tmp_path: Path) -> None:
    """The CLI path the TensorRT 11 INT8 hint names: calibration frames of a dataset, preprocessed for the ONNX."""
    from occ_tools.cli import main

    model = make_onnx(tmp_path / "synth.onnx", synth_info())
    out = tmp_path / "calib.npz"
    args = ["export", "--onnx", str(model), "--calib", str(synth_sequence), "--calib-npz", str(out)]
    assert main([*args, "--calib-frames", "2"]) == 0
    expected = list(calibration_feeds(synth_sequence, synth_info(), limit=2))
    with np.load(out) as npz:
        assert npz["images"].shape == (2, 6, 3, 48, 96)
        np.testing.assert_array_equal(npz["images"][1], expected[1]["images"][0])
    wrong = make_onnx(tmp_path / "two_cameras.onnx", small_info())  # 2 cameras: the 6-camera sequence cannot fit
    assert main(["export", "--onnx", str(wrong), "--calib", str(synth_sequence), "--calib-npz", str(out)]) != 0


# ---------------------------------------------------------------------------------------------- calibrator
class StubCalibratorBase:
    """Stands in for ``tensorrt.IInt8EntropyCalibrator2``."""

    def __init__(self) -> None:
        self.base_initialised = True


STUB_TRT = types.SimpleNamespace(IInt8EntropyCalibrator2=StubCalibratorBase)


class FakeDevice:
    """Records allocations and uploads instead of touching a GPU."""

    def __init__(self) -> None:
        self.allocs: dict[int, int] = {}
        self.uploads: list[tuple[int, np.ndarray]] = []
        self.freed: list[int] = []
        self._next = 0x1000

    def alloc(self, nbytes: int) -> int:
        ptr, self._next = self._next, self._next + 0x10000
        self.allocs[ptr] = nbytes
        return ptr

    def upload(self, ptr: int, array: np.ndarray) -> None:
        assert array.nbytes == self.allocs[ptr]
        self.uploads.append((ptr, array.copy()))

    def free(self, ptr: int) -> None:
        self.freed.append(ptr)


def _feed(value: float, cameras: int = 2) -> dict[str, np.ndarray]:
    return {
        "images": np.full((1, cameras, 3, 4, 6), value, dtype=np.float32),
        "K": np.full((1, cameras, 3, 3), value, dtype=np.float32),
        "cam_from_ego": np.full((1, cameras, 4, 4), value, dtype=np.float32),
    }


def test_calibrator_feeds_batches_into_device_buffers(tmp_path: Path) -> None:
    device = FakeDevice()
    calibrator = make_entropy_calibrator(STUB_TRT, [_feed(1.0), _feed(2.0)], tmp_path / "calib.cache", device)
    assert StubCalibratorBase in type(calibrator).__mro__ and calibrator.base_initialised
    assert calibrator.get_batch_size() == 1
    names = ["images", "K", "cam_from_ego"]
    first = calibrator.get_batch(names)
    assert len(first) == 3 and len(set(first)) == 3
    assert [device.allocs[p] for p in first] == [2 * 3 * 4 * 6 * 4, 2 * 9 * 4, 2 * 16 * 4]
    second = calibrator.get_batch(list(reversed(names)))  # TensorRT may ask in any order
    assert second == list(reversed(first))  # the same buffers, no new allocations
    assert len(device.allocs) == 3
    assert calibrator.get_batch(names) is None and calibrator.batches == 2 and calibrator.error is None
    uploaded = {(ptr, float(a.flat[0])) for ptr, a in device.uploads}
    assert uploaded == {(p, 1.0) for p in first} | {(p, 2.0) for p in first}
    calibrator.free()
    assert sorted(device.freed) == sorted(first)


def test_calibrator_cache_round_trip(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "calib.cache"
    calibrator = make_entropy_calibrator(STUB_TRT, None, cache, FakeDevice())
    assert calibrator.read_calibration_cache() is None
    assert calibrator.get_batch(["images"]) is None  # no data: only a cache can calibrate
    calibrator.write_calibration_cache(memoryview(b"TRT-8601-EntropyCalibration2\nimages: 3c010a14\n"))
    assert cache.read_bytes().startswith(b"TRT-8601-EntropyCalibration2")
    assert sorted(p.name for p in cache.parent.iterdir()) == ["calib.cache"]
    again = make_entropy_calibrator(STUB_TRT, [_feed(1.0)], cache, FakeDevice())
    assert again.read_calibration_cache() == cache.read_bytes()


def test_calibrator_records_bad_feeds_instead_of_crashing_tensorrt(tmp_path: Path) -> None:
    calibrator = make_entropy_calibrator(STUB_TRT, [_feed(1.0)], tmp_path / "c.cache", FakeDevice())
    assert calibrator.get_batch(["images", "depth"]) is None
    assert isinstance(calibrator.error, CalibrationError) and "'depth'" in str(calibrator.error)
    calibrator = make_entropy_calibrator(
        STUB_TRT, [_feed(1.0), _feed(1.0, cameras=3)], tmp_path / "c.cache", FakeDevice()
    )
    assert calibrator.get_batch(["images"]) is not None
    assert calibrator.get_batch(["images"]) is None and "first batch had" in str(calibrator.error)

    def failing():
        yield _feed(1.0)
        raise CalibrationError("frame 1 unreadable")

    calibrator = make_entropy_calibrator(STUB_TRT, failing(), tmp_path / "c.cache", FakeDevice())
    assert calibrator.get_batch(["images"]) is not None and calibrator.get_batch(["images"]) is None
    assert "frame 1 unreadable" in str(calibrator.error)


def test_calibrator_on_real_calibration_feeds(synth_sequence: Path, tmp_path: Path) -> None:
    device = FakeDevice()
    feeds = calibration_feeds(synth_sequence, synth_info(), limit=3)
    calibrator = make_entropy_calibrator(STUB_TRT, feeds, tmp_path / "c.cache", device)
    while calibrator.get_batch(["images", "K", "cam_from_ego"]) is not None:
        pass
    assert calibrator.batches == 3 and calibrator.error is None and len(device.uploads) == 9
    assert sorted(device.allocs.values()) == [6 * 9 * 4, 6 * 16 * 4, 6 * 3 * 48 * 96 * 4]


# ---------------------------------------------------------------------------------------------- a fake TensorRT
# The thin TensorRT layer (engine build, backend load / run) driven through a stand-in for the documented Python API
# surface it uses: Builder / create_network / OnnxParser.parse_from_file / builder config (memory pool, flags, timing
# cache, int8_calibrator) / build_serialized_network, Runtime.deserialize_cuda_engine, the named I/O tensor API and
# execute_async_v3. The "engine" runs the ONNX with onnxruntime, reading and writing the fake GPU's memory.
class FakeGpu(CudaDevice):
    """Device memory as numpy byte arrays; ``alloc`` hands out fake addresses."""

    kind = "fake"
    memory: dict[int, np.ndarray] = {}

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        self.name, self.compute_capability = "FakeGPU", "8.7"
        self._next = 0x10000
        self.closed = False

    @property
    def stream_handle(self) -> int:
        return 42

    def alloc(self, nbytes: int) -> int:
        ptr, self._next = self._next, self._next + nbytes + 256
        FakeGpu.memory[ptr] = np.zeros(nbytes, dtype=np.uint8)
        return ptr

    def free(self, ptr: int) -> None:
        FakeGpu.memory.pop(ptr, None)

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def h2d_async(self, ptr: int, array: np.ndarray) -> None:
        FakeGpu.memory[ptr][: array.nbytes] = array.reshape(-1).view(np.uint8)

    def d2h_async(self, array: np.ndarray, ptr: int) -> None:
        array.reshape(-1).view(np.uint8)[:] = FakeGpu.memory[ptr][: array.nbytes]

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 INT64 UINT8 BOOL BF16")
TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
NP_TO_TRT = {"float32": DataType.FLOAT, "float16": DataType.HALF, "uint8": DataType.UINT8, "int64": DataType.INT64}


def fake_tensorrt(version: str = "10.3.0", fast_fp16: bool = True) -> types.SimpleNamespace:
    """A ``tensorrt`` stand-in of the given version (11+: no precision builder flags, no calibrator)."""
    trt = types.SimpleNamespace(__version__=version, DataType=DataType, TensorIOMode=TensorIOMode)
    eleven = int(version.split(".")[0]) >= 11
    trt.built = []  # (network flags, config) of every build
    trt.parser_fails_on = None

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    trt.Logger = Logger
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace() if eleven else types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    if not eleven:
        trt.IInt8EntropyCalibrator2 = StubCalibratorBase

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
            self.name, self.shape, self.dtype = name, shape, NP_TO_TRT[dtype]

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.onnx = flags, ""
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self.outputs[i]

    class ParserError:
        def __init__(self, node: int, name: str, op: str) -> None:
            self._node, self._name, self._op = node, name, op

        def desc(self) -> str:
            return f"no importer for op {self._op}"

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:
            return self._name

        def node_operator(self) -> str:
            return self._op

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[ParserError] = []

        def parse_from_file(self, path: str) -> bool:
            summary = onnx_summary(path)
            model = onnx.load(path)
            for i, node in enumerate(model.graph.node):
                if node.op_type == trt.parser_fails_on:
                    self.errors.append(ParserError(i, node.name, node.op_type))
            self.network.onnx = path
            self.network.inputs = [Tensor(n, s, d) for n, (s, d) in summary.inputs.items()]
            self.network.outputs = [Tensor(n, s, d) for n, (s, d) in summary.outputs.items()]
            return not self.errors

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

    trt.OnnxParser = OnnxParser

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return b"FAKE-TIMING-CACHE"

    class Config:
        def __init__(self) -> None:
            self.pools: dict[str, int] = {}
            self.flags: list[str] = []
            self.timing = TimingCache(b"")
            self.int8_calibrator: Any = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.data not in (b"", b"FAKE-TIMING-CACHE"):
                return False
            self.timing = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.timing

    class Builder:
        def __init__(self, logger: Logger) -> None:
            if not eleven:
                self.platform_has_fast_fp16 = fast_fp16
                self.platform_has_fast_int8 = True

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            trt.built.append((network.flags, config))
            calibrator = config.int8_calibrator
            if calibrator is not None and calibrator.read_calibration_cache() is None:
                names = [t.name for t in network.inputs]
                while calibrator.get_batch(names) is not None:
                    pass
                calibrator.write_calibration_cache(b"FAKE-CALIBRATION")
            io = {t.name: [list(t.shape), t.dtype.name, t in network.inputs] for t in network.inputs + network.outputs}
            return b"FAKEPLAN" + json.dumps({"onnx": network.onnx, "io": io}).encode()

    trt.Builder = Builder

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.engine.io[name][0])

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            return True

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            import onnxruntime as ort

            def view(name: str) -> np.ndarray:
                shape, dtype, _ = self.engine.io[name]
                np_dtype = trt_dtype_to_numpy(dtype)
                nbytes = int(np.prod(shape)) * np_dtype.itemsize
                return FakeGpu.memory[self.addresses[name]][:nbytes].view(np_dtype).reshape(shape)

            session = ort.InferenceSession(self.engine.onnx, providers=["CPUExecutionProvider"])
            inputs = [n for n, (_, _, is_input) in self.engine.io.items() if is_input]
            results = session.run(None, {n: view(n) for n in inputs})
            for out, value in zip(session.get_outputs(), results, strict=True):
                view(out.name)[...] = value
            return True

    class Engine:
        def __init__(self, payload: dict) -> None:
            self.onnx, self.io = payload["onnx"], payload["io"]
            self.names = list(self.io)

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if self.io[name][2] else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.io[name][0])

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType[self.io[name][1]]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            if not data.startswith(b"FAKEPLAN"):
                return None
            return Engine(json.loads(data[len(b"FAKEPLAN") :]))

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    """Install a fake ``tensorrt`` and a fake GPU; returns a function that swaps in another fake version."""
    import occ_export.tensorrt_build as build_module
    import occ_ros.inference.tensorrt_backend as backend_module

    gpus: list[FakeGpu] = []

    def open_fake(index: int = 0) -> FakeGpu:
        gpus.append(FakeGpu(index))
        return gpus[-1]

    monkeypatch.setattr(backend_module, "open_cuda", open_fake)
    monkeypatch.setattr(build_module, "open_cuda", open_fake)

    def install(version: str = "10.3.0", fast_fp16: bool = True) -> types.SimpleNamespace:
        trt = fake_tensorrt(version, fast_fp16)
        trt.gpus = gpus
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


def test_fake_trt_build_reuse_rebuild_refuse_and_run(fake_trt, onnx_files: dict[str, Path], tmp_path: Path) -> None:
    trt = fake_trt("10.3.0")
    engine, messages = tmp_path / "model.engine", list[str]()
    settings = BuildSettings(precision="fp16", workspace_mib=256)
    result = build_engine(onnx_files["fp32"], engine, settings, log=messages.append)
    assert not result.reused and result.key == EngineKey(sha256_file(onnx_files["fp32"]), "10.3.0", "8.7", "fp16")
    flags, config = trt.built[-1]
    assert flags == 0 and config.flags == ["FP16"] and config.pools == {"WORKSPACE": 256 << 20}
    assert (tmp_path / "model.engine.timing.cache").read_bytes() == b"FAKE-TIMING-CACHE"
    assert any("trtexec --onnx=" in m and "--fp16" in m for m in messages)
    sidecar = read_sidecar(engine)
    assert sidecar.key == result.key and sidecar.builder_flags == ["FP16"] and sidecar.gpu_name == "FakeGPU"
    assert sidecar.inputs["images"] == {"shape": [1, 2, 3, 32, 48], "dtype": "float32"}
    assert sidecar.outputs["labels"] == {"shape": [1, 8, 8, 2], "dtype": "uint8"}
    assert sidecar.engine_sha256 == sha256_file(engine) and all(g.closed for g in trt.gpus)

    assert result.summary().startswith(f"engine: built {engine} (TensorRT 10.3.0, sm_87, fp16) in ")
    assert trtexec_for(onnx_files["fp32"], engine, settings) == result.trtexec  # the local TensorRT's family

    messages.clear()
    again = build_engine(onnx_files["fp32"], engine, settings, log=messages.append)
    assert again.reused and len(trt.built) == 1 and any(m.startswith("reusing") for m in messages)
    assert again.summary().startswith(f"engine: reused {engine} (TensorRT 10.3.0, sm_87, fp16;")
    rebuilt = build_engine(onnx_files["fp32"], engine, BuildSettings(workspace_mib=256), log=None)
    assert not rebuilt.reused and rebuilt.reasons == ("precision: existing fp16, wanted fp32",)
    assert "rebuilt because: precision: existing fp16, wanted fp32" in rebuilt.summary()
    with pytest.raises(BuildError, match="precision: existing fp32, wanted fp16"):
        build_engine(onnx_files["fp32"], engine, BuildSettings(precision="fp16", on_mismatch="refuse"), log=None)
    assert read_sidecar(engine).key.precision == "fp32"  # refused: left as it was

    with TensorRTBackend(engine) as backend:
        assert backend.provider == "TensorRT 10.3.0 on FakeGPU (sm_87)"
        feeds = backend.example_feeds()
        outputs = backend.run(feeds)
        single = backend(NetworkInput(feeds["images"][0], feeds["K"][0], feeds["cam_from_ego"][0]))
        timing = backend.last_timing
    import onnxruntime as ort

    ref = ort.InferenceSession(str(onnx_files["fp32"]), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert outputs["labels"].dtype == np.uint8 and outputs["confidence"].dtype == np.float32
    np.testing.assert_array_equal(outputs["labels"], ref[0])
    np.testing.assert_allclose(outputs["confidence"], ref[1], rtol=1e-6)
    assert single["labels"].shape == (8, 8, 2)
    assert timing is not None and min(timing.h2d, timing.compute, timing.d2h) >= 0 and timing.total > 0
    assert trt.gpus[-1].closed


def test_fake_trt_eleven_builds_strongly_typed(fake_trt, onnx_files: dict[str, Path], tmp_path: Path) -> None:
    trt = fake_trt("11.0.0")
    engine = tmp_path / "h.engine"
    result = build_engine(onnx_files["fp16"], engine, BuildSettings(precision="fp16"), log=None)
    flags, config = trt.built[-1]
    assert flags == 1 << 1 and config.flags == [] and result.plan.strongly_typed  # STRONGLY_TYPED, no FP16 flag
    assert read_sidecar(engine).strongly_typed and "--fp16" not in result.trtexec
    with pytest.raises(BuildError, match="--half"):
        build_engine(onnx_files["fp32"], tmp_path / "x.engine", BuildSettings(precision="fp16"), log=None)
    with pytest.raises(BuildError, match="QuantizeLinear"):
        build_engine(onnx_files["fp32"], tmp_path / "x.engine", BuildSettings(precision="int8"), log=None)
    build_engine(onnx_files["qdq"], tmp_path / "q.engine", BuildSettings(precision="int8"), log=None)
    assert trt.built[-1][1].int8_calibrator is None and trt.built[-1][1].flags == []
    assert not (tmp_path / "x.engine").exists()


def test_fake_trt_int8_calibration_on_a_synthetic_dataset(fake_trt, synth_sequence: Path, tmp_path: Path) -> None:
    trt = fake_trt("8.6.1")
    onnx_path = make_onnx(tmp_path / "synth.onnx", synth_info())
    engine = tmp_path / "int8.engine"
    settings = BuildSettings(precision="int8", calib=synth_sequence, calib_frames=2)
    result = build_engine(onnx_path, engine, settings, log=None)
    flags, config = trt.built[-1]
    assert flags == 1 << 0 and config.flags == ["INT8", "FP16"]  # EXPLICIT_BATCH on 8.6
    assert result.calibration_batches == 2 and config.int8_calibrator.batches == 2
    assert (tmp_path / "int8.engine.calib.cache").read_bytes() == b"FAKE-CALIBRATION"
    assert f"--calib={tmp_path / 'int8.engine.calib.cache'}" in shlex.split(result.trtexec)
    assert calibration_cache_onnx(tmp_path / "int8.engine.calib.cache") == sha256_file(onnx_path)
    engine.unlink()  # a rebuild now calibrates from the cache, without data
    again = build_engine(onnx_path, engine, BuildSettings(precision="int8"), log=None)
    assert again.calibration_batches == 0 and trt.built[-1][1].int8_calibrator is not None
    retrained = make_onnx(tmp_path / "retrained.onnx", dataclasses.replace(synth_info(), step=1000))
    with pytest.raises(BuildError, match="made for another ONNX"):  # the cache holds the old model's scales
        build_engine(retrained, engine, BuildSettings(precision="int8"), log=None)
    result = build_engine(retrained, engine, settings, log=None)
    assert not result.reused and result.calibration_batches == 2
    assert calibration_cache_onnx(tmp_path / "int8.engine.calib.cache") == sha256_file(retrained)


def test_fake_trt_build_failures(fake_trt, onnx_files: dict[str, Path], tmp_path: Path, synth_sequence: Path) -> None:
    trt = fake_trt("10.3.0", fast_fp16=False)
    with pytest.raises(BuildError, match="no fast FP16 on the GPU FakeGPU"):
        build_engine(onnx_files["fp32"], tmp_path / "a.engine", BuildSettings(precision="fp16"), log=None)
    trt = fake_trt("10.3.0")
    trt.parser_fails_on = "Expand"
    with pytest.raises(BuildError, match=r"ONNX parser failed:\n  node 'expand' \(Expand\): no importer for op Expand"):
        build_engine(onnx_files["fp32"], tmp_path / "a.engine", BuildSettings(), log=None)
    trt.parser_fails_on = None
    with pytest.raises(BuildError, match="INT8 calibration data .*the model takes 2 cameras"):
        # the data has 6 cameras, the ONNX 2: caught before TensorRT runs the calibrator
        build_engine(onnx_files["fp32"], tmp_path / "a.engine", BuildSettings("int8", calib=synth_sequence), log=None)
    assert not (tmp_path / "a.engine").exists()
    (tmp_path / "a.engine.timing.cache").write_bytes(b"timing cache of another GPU")
    messages: list[str] = []
    build_engine(onnx_files["fp32"], tmp_path / "a.engine", BuildSettings(), log=messages.append)
    assert any("from another TensorRT / GPU or damaged" in m for m in messages)
    assert (tmp_path / "a.engine.timing.cache").read_bytes() == b"FAKE-TIMING-CACHE"


def test_fake_trt_backend_refuses_engines_it_cannot_trust(
    fake_trt, onnx_files: dict[str, Path], tmp_path: Path, info: ModelInfo
) -> None:
    fake_trt("10.3.0")
    engine = tmp_path / "model.engine"
    build_engine(onnx_files["fp32"], engine, BuildSettings(), log=None)
    fake_trt("10.4.0")  # TensorRT upgraded after the build
    with pytest.raises(BackendError, match="built with TensorRT 10.3.0, this machine has TensorRT 10.4.0"):
        TensorRTBackend(engine)
    fake_trt("10.3.0")
    data = engine.read_bytes()
    engine.write_bytes(data.replace(b"FAKEPLAN", b"GARBAGE!"))
    with pytest.raises(BackendError, match="engine sha256 differs"):
        TensorRTBackend(engine)
    sidecar = read_sidecar(engine)
    sidecar.engine_sha256 = ""  # e.g. a hand-written sidecar
    write_sidecar(engine, sidecar)
    with pytest.raises(BackendError, match="corrupt or built by another TensorRT"):
        TensorRTBackend(engine)
    engine.write_bytes(data)
    other = small_info(height=64)  # the sidecar describes another model than the engine holds
    sidecar.model = other.to_dict()
    write_sidecar(engine, sidecar)
    with pytest.raises(BackendError, match=r"input 'images' has shape \(1, 2, 3, 32, 48\).*\(1, 2, 3, 64, 48\)"):
        TensorRTBackend(engine)


# ---------------------------------------------------------------------------------------------- no TensorRT here
@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorrt`` fail even where TensorRT is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_backend_without_tensorrt_gives_the_install_hint(no_tensorrt: None, tmp_path: Path, info: ModelInfo) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    write_sidecar(engine, sidecar_for(info))
    with pytest.raises(BackendError) as err:
        TensorRTBackend(engine)
    text = str(err.value)
    assert "TensorRT is not installed" in text and "JetPack" in text and "pip install tensorrt" in text
    assert "onnxruntime backend" in text and str(engine) in text
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        open_backend(engine, device="cuda", warmup=False)


def test_backend_refuses_the_cpu_and_unknown_options(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(BackendError, match="only on an NVIDIA GPU"):
        TensorRTBackend(engine, device="cpu")
    with pytest.raises(BackendError, match=r"takes no options, got \['half'\]"):
        TensorRTBackend(engine, half=True)


def test_open_cuda_without_cuda_python_or_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch: Any
    try:
        import torch
    except ImportError:  # a torch-free deployment: cuda-python is then the only way to the GPU
        torch = None
    if torch is not None and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendError, match="cuda-python"):
        open_cuda(0)


def test_build_without_tensorrt_says_to_build_on_the_target(
    no_tensorrt: None, onnx_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(BuildError) as err:
        from occ_export.tensorrt_build import build_engine

        build_engine(onnx_files["fp32"], tmp_path / "m.engine", BuildSettings(), log=None)
    assert "TensorRT is not installed" in str(err.value) and "on the Jetson" in str(err.value)
    assert not (tmp_path / "m.engine").exists()


# ---------------------------------------------------------------------------------------------- real TensorRT
def _trt_or_skip():
    trt = pytest.importorskip("tensorrt", reason=TRT_SKIP_REASON)
    try:
        open_cuda(0)
    except BackendError as err:
        pytest.skip(f"TensorRT is installed but no GPU is reachable: {err}")
    return trt


def test_real_build_reuse_and_run(onnx_files: dict[str, Path], tmp_path: Path, info: ModelInfo) -> None:
    _trt_or_skip()
    import onnxruntime as ort

    from occ_export.tensorrt_build import build_engine

    engine = tmp_path / "model.engine"
    result = build_engine(onnx_files["fp32"], engine, BuildSettings(workspace_mib=256), log=None)
    assert not result.reused and engine.is_file() and result.sidecar == sidecar_path(engine)
    assert (tmp_path / "model.engine.timing.cache").is_file()
    again = build_engine(onnx_files["fp32"], engine, BuildSettings(workspace_mib=256), log=None)
    assert again.reused and again.key == result.key
    with TensorRTBackend(engine) as backend:
        assert backend.provider.startswith("TensorRT ")
        feeds = backend.example_feeds()
        outputs = backend.run(feeds)
        timing = backend.last_timing
    ref = ort.InferenceSession(str(onnx_files["fp32"]), providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_array_equal(outputs["labels"], ref[0])
    np.testing.assert_allclose(outputs["confidence"], ref[1], atol=1e-5)
    assert timing is not None and min(timing.h2d, timing.compute, timing.d2h) >= 0


def test_real_fp16_build_per_family(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    trt = _trt_or_skip()
    from occ_export.tensorrt_build import build_engine

    family = trt_family(trt.__version__)
    onnx_path = onnx_files["fp16"] if family == "11" else onnx_files["fp32"]
    result = build_engine(
        onnx_path, tmp_path / "h.engine", BuildSettings(precision="fp16", workspace_mib=256), log=None
    )
    assert read_sidecar(tmp_path / "h.engine").key.precision == "fp16"
    assert result.plan.strongly_typed == (family == "11")
    with TensorRTBackend(tmp_path / "h.engine") as backend:
        out = backend.run(backend.example_feeds())
    assert out["labels"].dtype == np.uint8 and out["confidence"].dtype == np.float32


def test_real_engine_refused_for_another_precision_with_on_mismatch_refuse(
    onnx_files: dict[str, Path], tmp_path: Path
) -> None:
    _trt_or_skip()
    from occ_export.tensorrt_build import build_engine

    engine = tmp_path / "model.engine"
    build_engine(onnx_files["fp32"], engine, BuildSettings(workspace_mib=256), log=None)
    with pytest.raises(BuildError, match="precision: existing fp32, wanted int8"):
        build_engine(onnx_files["qdq"], engine, BuildSettings(precision="int8", on_mismatch="refuse"), log=None)
