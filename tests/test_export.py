"""``occ export`` (checkpoint -> verified ONNX), the inference backends behind one interface, and ``occ predict``
with an ONNX model. The shipped models/demo.ckpt is exported and compared with PyTorch on real synthetic frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from occ_ros.core.preprocess import preprocess
from occ_ros.core.resources import models_dir
from occ_ros.datasets.synth import SynthReader
from occ_ros.inference.backend import BackendError, open_backend
from occ_ros.inference.model_info import METADATA_KEY, ModelInfo
from occ_ros.model.checkpoint import load_checkpoint
from occ_tools.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
CKPT = models_dir() / "demo.ckpt"
RIG = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]


@pytest.fixture(scope="module")
def sequence(synth_world: Path) -> Path:
    """3 synthetic frames of a seed the demo model never saw (seed 3, tests/conftest.py; no labels needed)."""
    return synth_world


@pytest.fixture(scope="module")
def exported(sequence, tmp_path_factory) -> Path:
    """models/demo.ckpt exported by the CLI with the CLIP features, parity-checked on the sequence."""
    out = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    args = ["export", "--checkpoint", str(CKPT), "--out", str(out), "--features", "--data", str(sequence)]
    assert main([*args, "--frames", "3"]) == 0
    return out


def test_export_is_one_static_checked_file_with_its_metadata(exported):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # single file: every initializer carries its data
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    assert not [p for p in exported.parent.iterdir() if p.suffix not in (".onnx", ".json")]

    # static shapes on every input and output: the demo rig, 112x200 images, the 80x80x8 grid
    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]

    assert {i.name: dims(i) for i in proto.graph.input} == {
        "images": [1, 6, 3, 112, 200],
        "K": [1, 6, 3, 3],
        "cam_from_ego": [1, 6, 4, 4],
    }
    outputs = {o.name: (dims(o), o.type.tensor_type.elem_type) for o in proto.graph.output}
    assert outputs == {
        "labels": ([1, 80, 80, 8], onnx.TensorProto.UINT8),
        "confidence": ([1, 80, 80, 8], onnx.TensorProto.FLOAT),
        "features": ([1, 64, 80, 80, 8], onnx.TensorProto.FLOAT),
    }
    # the metadata is the checkpoint's: grid, vocabulary, camera order, preprocessing, provenance
    meta = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_json(meta[METADATA_KEY])
    bundle = load_checkpoint(CKPT)
    assert info.grid == bundle.config.grid_spec and info.grid.shape == (80, 80, 8)
    assert info.vocabulary.names == bundle.vocabulary.names and info.vocabulary.names[-1] == "free"
    assert list(info.cameras) == RIG
    assert info.preprocess == bundle.preprocess and info.image_size == (112, 200)
    assert info.config_hash == bundle.config_hash and len(info.config_hash) == 64
    assert info.step == bundle.step > 0 and info.clip_dim == bundle.config.clip_dim == 64


def test_export_report_has_parity_and_trt_compat(exported):
    report = json.loads(exported.with_name(exported.name + ".report.json").read_text())
    parity = report["parity"]
    assert parity["frames"] == 3 and parity["voxels"] == 3 * 80 * 80 * 8
    assert parity["agreement"] >= 0.999 and parity["ok"]
    assert 0 <= parity["max_logit_diff"] < 1e-3
    assert report["trt_compat"]["ok"]
    assert "GridSample" in report["op_types"] and "ArgMax" in report["op_types"]


def test_onnxruntime_outputs_are_the_network_argmax_and_softmax(exported, sequence):
    """Hand-computed from the PyTorch logits: labels = argmax, confidence = max softmax probability."""
    backend = open_backend(exported)
    assert backend.name == "onnxruntime" and backend.provider == "CPUExecutionProvider"
    reader = SynthReader(sequence)
    sample = reader.load(1)
    net = preprocess(sample.images, sample.rig, backend.info.preprocess)
    out = backend(net)
    bundle = load_checkpoint(CKPT)
    with torch.no_grad():
        logits = bundle.model(*(torch.from_numpy(a)[None] for a in (net.images, net.K, net.cam_from_ego)))
    # the decision scores: semantic logits + the checkpoint's decision bias (logit adjustment), by hand
    bias = bundle.model.decision_bias.double().numpy()
    logits = logits["semantics"][0].double().numpy() + bias[:, None, None, None]
    probs = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
    assert out["labels"].dtype == np.uint8 and out["labels"].shape == (80, 80, 8)
    assert (out["labels"] == logits.argmax(axis=0)).mean() >= 0.999
    np.testing.assert_allclose(out["confidence"], probs.max(axis=0), atol=1e-4)
    assert out["features"].shape == (64, 80, 80, 8)
    timing = backend.last_timing
    assert timing is not None and timing.h2d == timing.d2h == 0.0 and timing.compute > 0


def test_occ_predict_with_the_onnx_model_matches_the_checkpoint(exported, sequence, tmp_path, capsys):
    for name, model in (("onnx", exported), ("ckpt", CKPT)):
        assert main(["predict", "--model", str(model), "--data", str(sequence), "--out", str(tmp_path / name)]) == 0
    manifest = json.loads((tmp_path / "onnx" / "predict.json").read_text())
    assert manifest["backend"] == "onnxruntime" and manifest["provider"] == "CPUExecutionProvider"
    files = sorted((tmp_path / "onnx").rglob("labels.npz"))
    assert len(files) == 3
    same = total = 0
    for f in files:
        a = np.load(f)["semantics"]
        b = np.load(tmp_path / "ckpt" / f.relative_to(tmp_path / "onnx"))["semantics"]
        same += int((a == b).sum())
        total += a.size
    assert same / total >= 0.999


def test_occ_query_runs_on_the_onnx_features(exported, sequence, tmp_path):
    assert (
        main(["query", "--model", str(exported), "--data", str(sequence), "--text", "car", "--out", str(tmp_path)]) == 0
    )
    summary = json.loads((tmp_path / "query.json").read_text())
    assert summary["frames"] == 3 and summary["matches"] > 0


def test_torch_backend_runs_the_same_deployed_outputs(sequence):
    backend = open_backend(CKPT, warmup=False)
    assert backend.name == "torch" and backend.info.outputs == ("labels", "confidence")
    sample = SynthReader(sequence).load(0)
    net = preprocess(sample.images, sample.rig, backend.info.preprocess)
    out = backend(net)
    model = load_checkpoint(CKPT).model
    with torch.no_grad():
        logits = model(*(torch.from_numpy(a)[None] for a in (net.images, net.K, net.cam_from_ego)))
    scores = logits["semantics"][0] + model.decision_bias[:, None, None, None]
    np.testing.assert_array_equal(out["labels"], scores.argmax(0).numpy())


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_models_get_errors_naming_the_file_and_the_mismatch(exported, tmp_path):
    with pytest.raises(BackendError, match="no such model file"):
        open_backend(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(BackendError, match=f"{corrupt}.*cannot load"):
        open_backend(corrupt)
    # a valid ONNX without occ_ros metadata (not made by occ export)
    plain = tmp_path / "plain.onnx"
    proto = onnx.load(str(exported))
    del proto.metadata_props[:]
    onnx.save(proto, str(plain))
    with pytest.raises(BackendError, match="no 'occ_ros' metadata.*occ export"):
        open_backend(plain)
    with pytest.raises(BackendError, match="suffix"):
        open_backend(tmp_path / "model.bin")
    backend = open_backend(exported, warmup=False)
    feeds = backend.example_feeds()
    feeds["images"] = feeds["images"][:, :5]
    with pytest.raises(BackendError, match=r"'images' has shape \(1, 5, 3, 112, 200\).*\(1, 6, 3, 112, 200\)"):
        backend.run(feeds)


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")  # ONNX Runtime's own
def test_a_gpu_provider_that_does_not_load_is_an_error_and_the_caller_can_fall_back(exported):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(
        BackendError, match=r"did not load \['CUDAExecutionProvider'\].*loaded: \['CPUExecutionProvider'\]"
    ):
        open_backend(exported, device="cuda")
    with pytest.raises(BackendError):  # no TensorRT here: the caller's fallback (the node's) takes the next one
        open_backend(exported, "tensorrt", warmup=False)
    assert open_backend(exported, "onnxruntime", warmup=False).name == "onnxruntime"


def test_export_refuses_a_model_that_fails_parity_and_keeps_it_for_inspection(sequence, tmp_path):
    from occ_export.onnx_export import ExportError, export_onnx

    out = tmp_path / "strict.onnx"
    with pytest.raises(ExportError, match="parity"):
        export_onnx(CKPT, out, parity_data=sequence, parity_frames=1, min_agreement=1.5)
    assert not out.exists() and (tmp_path / "strict.rejected.onnx").exists()
    report = json.loads((tmp_path / "strict.onnx.report.json").read_text())
    assert report["onnx"] is None and "parity" in report["problems"][0]


def test_data_that_does_not_fit_the_model_names_both_sides(exported, sequence):
    from occ_ros.core.rig import CameraRig
    from occ_ros.core.vocabulary import Vocabulary
    from occ_ros.inference.model_info import ModelInfoError

    info = open_backend(exported, warmup=False).info
    sample = SynthReader(sequence).load(0, images=False)
    info.check_data(sample.vocabulary, sample.rig)  # the data it was made for fits
    with pytest.raises(ModelInfoError, match=r"demo.onnx: the model takes 6 cameras.*the data has 5"):
        info.check_data(sample.vocabulary, CameraRig(tuple(list(sample.rig)[:5])), str(exported))
    other = Vocabulary.from_dict(
        {"name": "two", "classes": [{"name": "car", "color": [1, 2, 3]}, {"name": "free", "color": [0, 0, 0]}]}
    )
    with pytest.raises(ModelInfoError, match=r"vocabulary 'occ3d' \(18 classes.*the data's 'two' \(2 classes"):
        info.check_data(other, sample.rig)


def test_the_runtime_path_needs_no_torch(exported, sequence):
    """ONNX Runtime inference from dataset frames in a process where importing torch fails."""
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from occ_ros.core.preprocess import preprocess
from occ_ros.datasets.synth import SynthReader
from occ_ros.inference.backend import open_backend
backend = open_backend({str(exported)!r})
sample = SynthReader({str(sequence)!r}).load(0)
out = backend(preprocess(sample.images, sample.rig, backend.info.preprocess))
assert out["labels"].shape == (80, 80, 8), out["labels"].shape
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_half_export_is_an_fp16_onnx_for_strongly_typed_builds(sequence, tmp_path):
    from occ_export.onnx_export import export_onnx

    result = export_onnx(CKPT, tmp_path / "half.onnx", half=True, parity_data=sequence, parity_frames=1)
    proto = onnx.load(str(result.path))
    floats = {
        t.data_type
        for t in proto.graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer if t.name in conv_weights)
    assert onnx.TensorProto.FLOAT16 in floats
    # the I/O contract is unchanged: float32 in, uint8 / float32 out
    assert [i.type.tensor_type.elem_type for i in proto.graph.input] == [onnx.TensorProto.FLOAT] * 3
    assert result.parity is not None and result.parity.reference == "pytorch fp32"
    assert result.parity.agreement >= 0.99 and result.parity.threshold == 0.99


def test_occ_bench_reports_percentiles_and_writes_json(exported, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--model", str(exported), "--iterations", "4", "--warmup", "1", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "p50" in text and "p99" in text and "CPUExecutionProvider" in text
    result = json.loads(out.read_text())
    assert result["backend"] == "onnxruntime" and result["iterations"] == 4 and len(result["latencies_ms"]) == 4
    assert result["p50_ms"] == pytest.approx(float(np.percentile(result["latencies_ms"], 50)))
    assert result["copy_share"] == 0.0  # the CPU provider copies nothing
    assert main(["bench", "--model", str(CKPT), "--precision", "fp16"]) == 1
    assert "CUDA" in capsys.readouterr().err
