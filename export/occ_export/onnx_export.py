"""``occ export --checkpoint C --out model.onnx``: a checkpoint -> one verified, self-describing ONNX file.

The exported graph is :class:`DeployedNetwork`: the network plus its post-processing, so only the small
``labels`` (uint8) and ``confidence`` tensors leave the GPU (I/O contract in :mod:`occ_ros.inference.model_info`).
Shapes are static, the opset is >= 17, the weights live inside the one file, and the
:class:`~occ_ros.inference.model_info.ModelInfo` (grid, vocabulary, camera order, input size, normalisation,
training-config hash, version) is stored in the file's metadata.

Before the file is written it must pass three checks (:func:`export_onnx`):

1. ``onnx.checker`` (full check, with shape inference);
2. the TensorRT compatibility report (:mod:`occ_export.trt_compat`) for TensorRT 8.6, 10.x and 11.x;
3. parity with PyTorch through ONNX Runtime on real frames (:func:`parity_check`): argmax agreement, max logit
   and confidence differences.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occ_ros.core.prompts import PromptTable
from occ_ros.inference.engine_meta import sha256_file
from occ_ros.inference.model_info import INPUT_NAMES, METADATA_KEY, ModelInfo, ModelInfoError
from occ_ros.io.atomic import atomic_write_bytes, atomic_write_text
from occ_ros.model.checkpoint import CheckpointError, ModelBundle, load_checkpoint
from occ_ros.model.deployed import DeployedNetwork
from occ_ros.model.network import OccupancyNetwork, decision_logits

DEFAULT_OPSET = 17
MIN_AGREEMENT = 0.999
"""Parity threshold: the fraction of voxels whose ONNX Runtime argmax equals PyTorch's (fp32 export)."""
MAX_PROTO_BYTES = 2**31 - 1
"""protobuf's limit for one file without external data."""


class ExportError(RuntimeError):
    """An export that failed a check (names the file and the check)."""


def example_inputs(model: OccupancyNetwork) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracing inputs of the model's static shapes (values do not matter for a static graph)."""
    images, K, cam_from_ego = model.example_inputs(1)
    return images.float(), K.float().contiguous(), cam_from_ego.float().contiguous()


def to_onnx(bundle: ModelBundle, info: ModelInfo, opset: int = DEFAULT_OPSET, half: bool = False) -> Any:
    """Trace ``bundle``'s network into an ``onnx.ModelProto`` with ``info`` in its metadata (not yet checked).

    The TorchScript-based exporter (``dynamo=False``) gives a static, constant-folded graph of standard ONNX ops;
    the torch.export-based one needs onnxscript, which this project does not depend on.
    """
    import io
    import warnings

    import onnx

    if opset < DEFAULT_OPSET:
        raise ExportError(f"opset {opset} is too old: the export needs opset >= {DEFAULT_OPSET}")
    model = bundle.model.to("cpu").eval()
    wrapper = DeployedNetwork(model, info.outputs, half=half).eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            wrapper,
            example_inputs(model),
            buffer,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
            input_names=list(INPUT_NAMES),
            output_names=list(info.outputs),
        )
    if half:  # leave the caller's model as it was
        model.float()
    proto = onnx.load_model_from_string(buffer.getvalue())
    proto.producer_name = "occ_ros"
    proto.producer_version = info.version
    proto.doc_string = (
        f"occ_ros occupancy network: {info.num_cameras} cameras {info.image_size[1]}x{info.image_size[0]} -> "
        f"{'x'.join(map(str, info.grid.shape))} voxels, {len(info.vocabulary)} classes"
    )
    onnx.helper.set_model_props(proto, {METADATA_KEY: info.to_json()})
    _declare_static_outputs(proto, info)
    return proto


def _declare_static_outputs(proto: Any, info: ModelInfo) -> None:
    """Write the outputs' static shapes into the graph's declarations (the tracer leaves them unset);
    ``onnx.checker``'s full check then verifies them against shape inference."""
    shapes = info.output_shapes()
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for size in shapes[output.name]:
            dims.add().dim_value = int(size)


# ---------------------------------------------------------------------------------------------- parity
@dataclass
class ParityReport:
    """ONNX Runtime against PyTorch on the same frames.

    Attributes:
        frames: frames compared.
        voxels: voxels compared (frames x grid).
        agreement: fraction of voxels with the same argmax class.
        max_logit_diff, mean_logit_diff: over all logits, absolute.
        max_confidence_diff: over all voxels, absolute.
        threshold: the agreement required; ``ok`` = agreement >= threshold.
        reference: what ONNX Runtime was compared with (``pytorch fp32``).
    """

    frames: int
    voxels: int
    agreement: float
    max_logit_diff: float
    mean_logit_diff: float
    max_confidence_diff: float
    threshold: float = MIN_AGREEMENT
    reference: str = "pytorch fp32"
    per_frame_agreement: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.frames > 0 and self.agreement >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["ok"] = self.ok
        return data

    def summary(self) -> str:
        return (
            f"parity vs {self.reference} on {self.frames} frames ({self.voxels} voxels): argmax agreement "
            f"{100 * self.agreement:.4f}% (need >= {100 * self.threshold:.1f}%), max |logit diff| "
            f"{self.max_logit_diff:.3g}, mean {self.mean_logit_diff:.3g}, max |confidence diff| "
            f"{self.max_confidence_diff:.3g}"
        )


def _expose_logits(proto: Any) -> Any:
    """A copy of the exported graph that also outputs the logits the ``labels`` ArgMax reads (named ``logits``)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    graph = copy.graph
    if any(o.name == "logits" for o in graph.output):
        return copy
    argmax = [n for n in graph.node if n.op_type == "ArgMax"]
    if len(argmax) != 1:
        raise ExportError(f"expected one ArgMax (the labels) in the exported graph, found {len(argmax)}")
    graph.node.append(onnx.helper.make_node("Identity", [argmax[0].input[0]], ["logits"], name="parity_logits"))
    graph.output.append(onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None))
    return copy


def parity_check(
    bundle: ModelBundle,
    proto: Any,
    feeds: Iterable[Mapping[str, np.ndarray]],
    threshold: float = MIN_AGREEMENT,
) -> ParityReport:
    """Run PyTorch (fp32) and ONNX Runtime (CPU) on the same frames and compare their outputs.

    Args:
        bundle: the checkpoint's network (run in fp32 eval mode on the CPU).
        proto: the exported ``onnx.ModelProto``.
        feeds: batched network inputs (``images``, ``K``, ``cam_from_ego``), e.g. real dataset frames.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(_expose_logits(proto).SerializeToString(), providers=["CPUExecutionProvider"])
    model = bundle.model.to("cpu").float().eval()
    agree = total = 0
    max_logit = max_conf = 0.0
    sum_logit = 0.0
    logit_count = 0
    per_frame = []
    for feed in feeds:
        labels, confidence, logits = session.run(["labels", "confidence", "logits"], {k: feed[k] for k in INPUT_NAMES})
        with torch.no_grad():
            ref = model(*(torch.from_numpy(np.asarray(feed[k], dtype=np.float32)) for k in INPUT_NAMES))
        # the deployed decision scores: logits + the checkpoint's decision bias (logit adjustment)
        ref_logits = decision_logits(ref["semantics"].float(), model.decision_bias).numpy()
        ref_labels = ref_logits.argmax(axis=1).astype(np.uint8)
        ref_conf = 1.0 / np.exp(ref_logits - ref_logits.max(axis=1, keepdims=True)).sum(axis=1)
        same = int((labels == ref_labels).sum())
        agree += same
        total += labels.size
        per_frame.append(same / labels.size)
        diff = np.abs(logits.astype(np.float64) - ref_logits)
        max_logit = max(max_logit, float(diff.max()))
        sum_logit += float(diff.sum())
        logit_count += diff.size
        max_conf = max(max_conf, float(np.abs(confidence - ref_conf).max()))
    frames = len(per_frame)
    return ParityReport(
        frames=frames,
        voxels=total,
        agreement=agree / total if total else 0.0,
        max_logit_diff=max_logit,
        mean_logit_diff=sum_logit / logit_count if logit_count else 0.0,
        max_confidence_diff=max_conf,
        threshold=threshold,
        per_frame_agreement=per_frame,
    )


# ---------------------------------------------------------------------------------------------- the command
@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    sha256: str
    bytes: int
    info: ModelInfo
    op_types: list[str]
    compat: Any
    parity: ParityReport | None
    seconds: float
    report_path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "onnx": str(self.path),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "model": self.info.to_dict(),
            "op_types": self.op_types,
            "trt_compat": self.compat.to_dict(),
            "parity": None if self.parity is None else self.parity.to_dict(),
            "seconds": self.seconds,
        }


def report_path_for(out: Path) -> Path:
    """Where the export report of ``out`` goes: ``model.onnx`` -> ``model.onnx.report.json``."""
    return out.with_name(out.name + ".report.json")


def export_onnx(
    checkpoint: str | Path | ModelBundle,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    half: bool = False,
    logits: bool = False,
    features: bool = False,
    cameras: Sequence[str] | None = None,
    parity_data: str | Path | None = None,
    parity_frames: int = 8,
    kind: str = "auto",
    dataset_config: str | None = None,
    min_agreement: float = MIN_AGREEMENT,
    families: Sequence[str] = ("8.6", "10", "11"),
    prompts: PromptTable | None = None,
) -> ExportResult:
    """Export, check, and write ``out`` atomically (plus ``out.report.json``).

    Args:
        checkpoint: a ``.ckpt`` path or a loaded bundle.
        half: an FP16 ONNX (see :class:`DeployedNetwork`); parity is then reported against fp32 PyTorch with the
            threshold lowered to 0.99 unless ``min_agreement`` says otherwise.
        logits, features: also output the semantic logits / the CLIP-head features.
        prompts: the prompt table for open-vocabulary queries on the vehicle, stored in the metadata
            (``ModelInfo.prompts``; built by ``occ_tools.queries.prompt_table``, which owns the text encoder);
            implies ``features``.
        cameras: camera names in input order (default: the checkpoint's, else the parity data's rig's).
        parity_data: a dataset folder or bag for the parity check (any reader); None skips the check (reported).
    Raises:
        ExportError: a failed check (the rejected graph is kept next to ``out`` as ``*.rejected.onnx``).
    """
    import onnx

    from occ_export.int8_calibration import calibration_feeds
    from occ_export.trt_compat import compat_report

    start = time.perf_counter()
    out = Path(out)
    bundle = checkpoint if isinstance(checkpoint, ModelBundle) else load_checkpoint(checkpoint)
    names = ["labels", "confidence"] + (["logits"] if logits else [])
    features = features or prompts is not None
    if features:
        if not bundle.config.clip_dim:
            raise ExportError(f"{bundle.path}: --features needs a CLIP-feature head, the model has clip_dim = 0")
        names.append("features")
    if cameras is None and not bundle.cameras and parity_data is not None:
        from occ_ros.datasets import open_dataset

        options: dict[str, Any] = {"config": dataset_config} if dataset_config else {}
        cameras = open_dataset(parity_data, kind, **options).load(0, images=False).rig.names
    try:
        info = bundle.model_info(names, cameras)
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    if prompts is not None:
        try:
            info = info.with_prompts(prompts)
        except ModelInfoError as err:
            raise ExportError(f"{bundle.path}: {err}") from None
    proto = to_onnx(bundle, info, opset, half)

    problems = []
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        problems.append(f"onnx.checker: {err}")
    serialized = proto.SerializeToString()
    if len(serialized) > MAX_PROTO_BYTES:
        problems.append(f"the model is {len(serialized)} bytes, over protobuf's 2 GiB single-file limit")
    compat = compat_report(proto, families)
    if not compat.ok:
        problems.append("TensorRT compatibility: " + "; ".join(compat.failures()))
    parity = None
    if parity_data is not None:
        threshold = min_agreement if not half or min_agreement != MIN_AGREEMENT else 0.99
        feeds = calibration_feeds(parity_data, info, limit=parity_frames, kind=kind, dataset_config=dataset_config)
        parity = parity_check(bundle, proto, feeds, threshold)
        if not parity.ok:
            problems.append(parity.summary())

    report = report_path_for(out)
    if problems:
        rejected = out.with_name(out.stem + ".rejected.onnx")
        atomic_write_bytes(rejected, serialized)
        partial = {"onnx": None, "rejected": str(rejected), "problems": problems, "trt_compat": compat.to_dict()}
        partial["parity"] = None if parity is None else parity.to_dict()
        atomic_write_text(report, json.dumps(partial, indent=1))
        raise ExportError(f"{out}: export rejected ({rejected} kept for inspection):\n  " + "\n  ".join(problems))
    atomic_write_bytes(out, serialized)
    result = ExportResult(
        path=out,
        sha256=sha256_file(out),
        bytes=len(serialized),
        info=info,
        op_types=sorted({n.op_type for n in proto.graph.node}),
        compat=compat,
        parity=parity,
        seconds=time.perf_counter() - start,
        report_path=report,
    )
    atomic_write_text(report, json.dumps(result.to_dict(), indent=1))
    return result
