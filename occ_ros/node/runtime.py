"""The node's ROS-free helpers around the session: model loading with fallback, backend options, subscribed
topics, and the dispatch of log lines onto an rclpy logger.

Everything the node *does* with frames lives in :class:`occ_ros.session.OccupancySession`, shared with
``occ replay``; :mod:`.occupancy_node` wires it to rclpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from occ_ros.inference.backend import BackendError, InferenceBackend, backend_for, backend_options, open_backend
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


def settings_note(backend: InferenceBackend, params: ModelParams) -> str | None:
    """A note naming the parameters among ``threads`` / ``spinning`` that were set (away from their defaults) but
    do not apply to the loaded backend (spinning: torch; both: tensorrt), so were not passed to it."""
    defaults = ModelParams()
    unused = [
        f"{name}: {getattr(params, name)!r}"
        for name in params.runtime().unused(backend.name)
        if getattr(params, name) != getattr(defaults, name)
    ]
    if not unused:
        return None
    return f"parameters {', '.join(unused)} do not apply to the {backend.name} backend; ignored"


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
            precision = params.precision if param == "model" else ""
            options = backend_options(name, params.runtime(), precision=precision)
            loaded = opener(path, name, device=device, warmup=params.warmup, **options)
        except (BackendError, OSError, ValueError) as err:
            reasons.append(f"parameter {param!r} ({model or 'the shipped demo checkpoint'}): {err}")
            continue
        notes = [
            precision_warning(loaded, params.precision) if param == "model" else None,
            settings_note(loaded, params),
        ]
        warnings = tuple(note for note in notes if note)
        return LoadedModel(loaded, fallback=index > 0, reasons=tuple(reasons), warnings=warnings)
    hint = "" if params.fallback_model else " (set parameter 'fallback_model' to run another model instead)"
    raise BackendError("no model could be loaded" + hint + ":\n  " + "\n  ".join(reasons))


def subscribed_topics(params: NodeParams) -> Sequence[tuple[str, str, str]]:
    """``(camera, image topic, info topic)`` the node subscribes to (``/compressed`` appended when compressed):
    the inputs of the session these parameters configure."""
    return [(c.name, c.image_topic, c.info_topic) for c in params.session_config().cameras]
