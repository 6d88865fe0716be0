"""The node's ROS-free helpers around the session: model loading with fallback, backend options, subscribed
topics, and the dispatch of log lines onto an rclpy logger.

Everything the node *does* with frames lives in :class:`occ_ros.session.OccupancySession`, shared with
``occ replay``; :mod:`.occupancy_node` wires it to rclpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from occ_ros.inference.backend import BackendError, InferenceBackend, backend_for, open_backend
from occ_ros.session.session import LoadedModel

from .params import ModelParams, NodeParams, resolve_model_path


def log_to(logger: Any, level: str, text: str) -> None:
    """``text`` at ``level`` (``debug`` ... ``fatal``; anything else is a warning) on an rclpy logger.

    Each severity is called from its own line: rclpy's ``RcutilsLogger.log`` fixes the severity of each call
    site (file, function, line) at its first call and raises ``ValueError: Logger severity cannot be changed
    between calls`` when one site logs another severity later, so a shared ``getattr(logger, level)(text)``
    breaks on the second severity.
    """
    if level == "debug":
        logger.debug(text)
    elif level == "info":
        logger.info(text)
    elif level == "error":
        logger.error(text)
    elif level == "fatal":
        logger.fatal(text)
    else:
        logger.warning(text)


def backend_options(backend: str, precision: str, threads: int) -> dict[str, Any]:
    """``open_backend`` keyword options for a backend name from the node's parameters.

    Raises:
        BackendError: int8 asked of the torch backend.
    """
    if backend == "onnxruntime":
        return {"threads": int(threads)} if threads else {}
    if backend == "torch":
        if precision == "int8":
            raise BackendError("parameter 'precision': int8 is a TensorRT engine's precision; torch runs fp32 or fp16")
        return {"half": precision == "fp16"}
    return {}


def precision_warning(backend: InferenceBackend, precision: str) -> str | None:
    """A note when a file-defined precision (onnxruntime, tensorrt) differs from the ``precision`` parameter."""
    if not precision or backend.name == "torch":
        return None
    actual = getattr(backend, "precision", None)
    if actual is None and backend.name == "onnxruntime":
        return (
            f"parameter 'precision' is {precision!r}, but an ONNX model runs the precision it was exported with "
            f"({backend.path}); the parameter is ignored"
        )
    if actual is not None and str(actual) != precision:
        return f"parameter 'precision' is {precision!r}, but {backend.path} was built for {actual}; running {actual}"
    return None


def open_model(params: ModelParams, opener: Callable[..., InferenceBackend] = open_backend) -> LoadedModel:
    """Load ``model`` (warmed up); if it fails and ``fallback_model`` is set, load that instead.

    Args:
        params: the model parameters.
        opener: :func:`~occ_ros.inference.backend.open_backend` (injectable for tests).
    Raises:
        BackendError: nothing could be loaded; the message names the parameter(s) and every reason.
    """
    candidates = [("model", params.model, params.backend, params.device)]
    if params.fallback_model:
        candidates.append(("fallback_model", params.fallback_model, params.fallback_backend, params.fallback_device))
    reasons: list[str] = []
    for index, (param, model, backend, device) in enumerate(candidates):
        try:
            path: Path = resolve_model_path(model)
            name = backend_for(path, backend)
            options = backend_options(name, params.precision if param == "model" else "", params.threads)
            loaded = opener(path, name, device=device, warmup=params.warmup, **options)
        except (BackendError, OSError, ValueError) as err:
            reasons.append(f"parameter {param!r} ({model or 'the shipped demo checkpoint'}): {err}")
            continue
        note = precision_warning(loaded, params.precision) if param == "model" else None
        return LoadedModel(loaded, fallback=index > 0, reasons=tuple(reasons), warnings=(note,) if note else ())
    hint = "" if params.fallback_model else " (set parameter 'fallback_model' to run another model instead)"
    raise BackendError("no model could be loaded" + hint + ":\n  " + "\n  ".join(reasons))



def subscribed_topics(params: NodeParams) -> Sequence[tuple[str, str, str]]:
    """``(camera, image topic, info topic)`` the node subscribes to (``/compressed`` appended when compressed):
    the inputs of the session these parameters configure."""
    return [(c.name, c.image_topic, c.info_topic) for c in params.session_config().cameras]

