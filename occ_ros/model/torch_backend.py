"""PyTorch backend, for development: a ``.ckpt`` checkpoint run eagerly, optionally in fp16 or as a CUDA graph.

It runs :class:`~occ_ros.model.deployed.DeployedNetwork`, the module the ONNX export traces, so its outputs
are the exported graph's. Needs torch (the ONNX Runtime and TensorRT backends do not).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from occ_ros.inference.backend import BackendError, InferenceBackend, InferenceTiming, check_threads
from occ_ros.inference.model_info import INPUT_NAMES, REQUIRED_OUTPUTS


class TorchBackend(InferenceBackend):
    """A checkpoint in PyTorch.

    Args:
        path: the ``.ckpt`` file.
        device: ``cpu`` or ``cuda[:N]``.
        half: run the network in float16 (CUDA only; the inputs stay float32).
        cuda_graph: capture the forward pass once as a CUDA graph and replay it (CUDA only).
        outputs: deployed outputs, ``labels`` and ``confidence`` first.
        cameras: camera names for the model info (default: the checkpoint's).
        threads: torch's intra-op CPU threads, ``torch.set_num_threads`` (process-wide: every torch call of this
            process uses them from then on); 0 = leave torch's setting (by default one per physical core).
    Raises:
        BackendError: torch missing, an unreadable checkpoint, a bad ``threads`` (named), or fp16 / CUDA graphs
            asked for on a CPU.
    """

    name = "torch"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        half: bool = False,
        cuda_graph: bool = False,
        outputs: Sequence[str] = REQUIRED_OUTPUTS,
        cameras: Sequence[str] | None = None,
        threads: int = 0,
    ) -> None:
        try:
            threads = check_threads(threads)
        except ValueError as err:
            raise BackendError(f"{path}: {err}") from None
        try:
            import torch
        except ImportError:
            raise BackendError(f"{path}: the torch backend needs PyTorch (pip install torch)") from None
        from occ_ros.model.checkpoint import CheckpointError, load_checkpoint
        from occ_ros.model.deployed import DeployedNetwork

        if (half or cuda_graph) and not device.startswith("cuda"):
            raise BackendError(f"{path}: fp16 and CUDA graphs need a CUDA device, got device={device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"{path}: device {device!r} asked for, but PyTorch sees no CUDA GPU")
        try:
            bundle = load_checkpoint(path, device)
            info = bundle.model_info(outputs, cameras)
        except CheckpointError as err:
            raise BackendError(str(err)) from None
        super().__init__(path, info)
        if threads:
            torch.set_num_threads(threads)
        self.settings = {"threads": torch.get_num_threads()}
        self._torch = torch
        self.device = torch.device(device)
        self.half = half
        self.bundle = bundle
        self.module = DeployedNetwork(bundle.model, info.outputs, half=half).to(self.device).eval()
        self._graph: Any = None
        self._static_in: dict[str, Any] = {}
        self._static_out: tuple[Any, ...] = ()
        if cuda_graph:
            self._capture()

    @property
    def provider(self) -> str:
        torch = self._torch
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        mode = ("fp16" if self.half else "fp32") + (" cuda-graph" if self._graph is not None else " eager")
        return f"torch {torch.__version__} {mode} on {where}"

    def _capture(self) -> None:
        torch = self._torch
        feeds = self.example_feeds()
        self._static_in = {k: torch.from_numpy(feeds[k]).to(self.device) for k in INPUT_NAMES}
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):  # warm up on a side stream before capture (cuDNN autotuning, allocator)
                self.module(*(self._static_in[k] for k in INPUT_NAMES))
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self._graph):
            self._static_out = self.module(*(self._static_in[k] for k in INPUT_NAMES))

    def _run(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], InferenceTiming]:
        torch = self._torch
        cuda = self.device.type == "cuda"

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize(self.device)

        t0 = time.perf_counter()
        if self._graph is not None:
            for k in INPUT_NAMES:
                self._static_in[k].copy_(torch.from_numpy(feeds[k]), non_blocking=False)
            inputs = tuple(self._static_in[k] for k in INPUT_NAMES)
        else:
            inputs = tuple(torch.from_numpy(feeds[k]).to(self.device) for k in INPUT_NAMES)
        sync()
        t1 = time.perf_counter()
        with torch.no_grad():
            if self._graph is not None:
                self._graph.replay()
                values = self._static_out
            else:
                values = self.module(*inputs)
        sync()
        t2 = time.perf_counter()
        outputs = {name: v.cpu().numpy() for name, v in zip(self.info.outputs, values, strict=True)}
        t3 = time.perf_counter()
        if not cuda:  # no device: the "copies" are views
            return outputs, InferenceTiming(0.0, t3 - t0, 0.0)
        return outputs, InferenceTiming(t1 - t0, t2 - t1, t3 - t2)
