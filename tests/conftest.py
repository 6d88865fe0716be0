"""Suite-wide test set-up.

With ROS 2 sourced, pytest loads the launch_pytest / launch_testing plugins, and importing ``launch`` calls
``logging.setLoggerClass(LaunchLogger)``: every logger created afterwards, occ_ros' module loggers included, stops
propagating to its parents. The node's own process never imports launch, so the tests restore the standard
propagation of occ_ros' loggers (what ``caplog`` and the node's log forwarding rely on).

``synth_world``: the one small synthetic sequence (3 frames, seed 3, the demo preset, with its rosbag2 recording)
that the dataset, synth, export and replay tests share, rendered once per session instead of once per module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _occ_ros_loggers_propagate() -> Iterator[None]:
    launch_class = logging.getLoggerClass()
    if launch_class is logging.Logger:
        yield  # no launch imported: nothing to undo
        return
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "occ_ros" or name.startswith("occ_ros.")) and isinstance(logger, logging.Logger):
            logger.propagate = True
    logging.setLoggerClass(logging.Logger)  # loggers a test creates are standard ones too
    try:
        yield
    finally:
        logging.setLoggerClass(launch_class)


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic frames (seed 3, demo preset): images, depth, semantics, ground truth and the rosbag2 recording.

    Shared by several modules: read it, never write into it (copy what a test needs to change).
    """
    from occ_training.synth.sequence import generate

    return generate(tmp_path_factory.mktemp("synth_world") / "seq", frames=3, seed=3, preset="demo", progress=False)
