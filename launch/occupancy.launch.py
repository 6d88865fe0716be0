"""Launch ``occupancy_node`` (and RViz with ``rviz:=true``).

    ros2 launch occ_ros occupancy.launch.py model:=/path/model.onnx use_sim_time:=true
    ros2 launch occ_ros occupancy.launch.py namespace:=/perception rviz:=true \
        camera_remaps:="/cam_front/image_raw:=/sensing/front/image_raw,/cam_front/camera_info:=/sensing/front/info"
    ros2 launch occ_ros occupancy.launch.py lifecycle:=true     # then: ros2 lifecycle set /occupancy_node configure

Arguments (``ros2 launch occ_ros occupancy.launch.py --show-args``):

* ``config``: parameter file (default: the installed ``share/occ_ros/config/occupancy.param.yaml``);
* ``model``, ``backend``: override the file's ``model`` / ``backend`` when not empty;
* ``namespace``: pushed onto the node (and RViz), e.g. ``/perception`` -> ``/perception/occupancy_node/voxels``;
* ``use_sim_time``: ``true`` for ``ros2 bag play --clock``;
* ``camera_remaps``: ``FROM:=TO`` topic remappings separated by commas, applied to the node. Camera topics can
  also be set per camera in the parameter file (``camera.<NAME>.image_topic`` / ``info_topic``); remaps are for
  wiring an unchanged config to another driver. With ``compressed: true`` the node subscribes to
  ``<image_topic>/compressed``, so remap that name;
* ``rviz``, ``rviz_config``: start RViz2 with the shipped config (``share/occ_ros/config/rviz/occupancy.rviz``);
* ``lifecycle``: ``true`` starts ``occupancy_lifecycle_node`` (a managed node, as a ``launch_ros`` ``LifecycleNode``
  action) instead of ``occupancy_node``: it starts unconfigured and waits for ``configure`` and ``activate``
  (``ros2 lifecycle set``, a lifecycle manager, or ``autostart``);
* ``autostart``: with ``lifecycle:=true``, configure at launch and activate after the first successful configure
  (launch_ros' lifecycle events).

Lifetime: ``occupancy_node`` is required. When it exits with code 0 the launch shuts down (RViz too) and
``ros2 launch`` exits 0; when it fails (e.g. a bad ``model``: it logs FATAL and exits 1) the launch shuts down and
``ros2 launch`` exits 1. RViz2 is not required: closing it leaves the node running. With ``rviz:=true`` but no
rviz2 installed the launch fails before starting anything.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, GroupAction, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.events import matches_action
from launch.events.process import ProcessExited
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node, PushRosNamespace
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from occ_ros.node.params import NODE_NAME, parse_remaps

PACKAGE = "occ_ros"
LIFECYCLE_EXECUTABLE = "occupancy_lifecycle_node"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _as_bool(text: str, argument: str) -> bool:
    value = text.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"launch argument {argument!r}: expected true or false, got {text!r}")
    return value in _TRUE


class NodeFailed(RuntimeError):
    """``occupancy_node`` exited with a non-zero code: the launch fails (``ros2 launch`` exits 1)."""


def _on_node_exit(event: ProcessExited, context: LaunchContext) -> Shutdown | None:
    """``occupancy_node`` is required: its exit ends the launch, and a failure fails it.

    A plain ``Shutdown`` ends ``ros2 launch`` with exit code 0 whatever the reason. An exception raised in an event
    handler is what makes ``LaunchService.run()`` return 1 (humble / jazzy ``run_async``: it logs "Caught exception
    in launch ...: <message>", shuts everything down and returns 1), so a failed node raises :class:`NodeFailed`.
    Killed by a signal, or a clean exit, while the launch is already shutting down (Ctrl-C, SIGTERM / SIGKILL
    escalation) is the shutdown itself, not a failure, and needs no second ``Shutdown`` (with a ``LifecycleNode``,
    whose ROS adapter is already stopped then, it raised "Cannot shutdown a ROS adapter that is not running").
    """
    code = event.returncode
    if code <= 0 and context.is_shutdown:  # stopped by the shutdown itself; a second Shutdown would be an error
        return None
    if code != 0:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise NodeFailed(f"{NODE_NAME} (required) {how}: shutting down; its log above says why")
    return Shutdown(reason=f"{NODE_NAME} (required) exited")


def _check_rviz2() -> None:
    """Fail, before anything is started, when ``rviz:=true`` cannot start RViz2.

    Checked like launch_ros does when the RViz ``Node`` executes (``ExecutableInPackage``: the ament index prefix,
    then ``<prefix>/lib/rviz2/rviz2``), but before any action is returned: an RViz failure while the node is
    already starting aborted the launch and left ``occupancy_node`` running as an orphan.
    """
    hint = "install it (apt install ros-$ROS_DISTRO-rviz2) or run without RViz: rviz:=false"
    try:
        libexec = os.path.join(get_package_prefix("rviz2"), "lib", "rviz2")
    except PackageNotFoundError:
        raise RuntimeError(f"rviz:=true but rviz2 is not installed (not in the ament index); {hint}") from None
    if shutil.which("rviz2", path=libexec) is None:
        raise RuntimeError(f"rviz:=true but there is no rviz2 executable in {libexec}; {hint}")


def _autostart(node: LifecycleNode) -> list[Any]:
    """Configure ``node`` now, and activate it once a configure has succeeded (the first time only: a later
    deactivate or cleanup stays as it was asked). A failed configure leaves it unconfigured, its log says why."""

    def change(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    configured = OnStateTransition(
        target_lifecycle_node=node,
        start_state="configuring",
        goal_state="inactive",
        entities=[change(Transition.TRANSITION_ACTIVATE)],
        handle_once=True,
    )
    return [RegisterEventHandler(configured), change(Transition.TRANSITION_CONFIGURE)]


def _launch_setup(context: LaunchContext) -> list[Any]:
    """The actions, once the arguments are known (overrides only for arguments that were given)."""

    def arg(name: str) -> str:
        return str(LaunchConfiguration(name).perform(context))

    use_sim_time = _as_bool(arg("use_sim_time"), "use_sim_time")
    rviz = _as_bool(arg("rviz"), "rviz")
    lifecycle = _as_bool(arg("lifecycle"), "lifecycle")
    autostart = _as_bool(arg("autostart"), "autostart")
    if autostart and not lifecycle:
        raise ValueError("launch argument 'autostart': only with lifecycle:=true (occupancy_node always starts)")
    if rviz:
        _check_rviz2()  # before any action exists: a missing rviz2 starts nothing
    overrides: dict[str, Any] = {"use_sim_time": use_sim_time}
    for name in ("model", "backend"):
        if arg(name):
            overrides[name] = arg(name)
    actions: list[Any] = []
    namespace = arg("namespace")
    if namespace:
        actions.append(PushRosNamespace(namespace))
    if rviz:
        # The RViz config names the node's topics relative (occupancy_node/voxels), so they follow the namespace.
        # Not required (no on_exit): closing RViz leaves the node running. Listed before the node, so that an
        # error resolving it (when its action executes) is raised before the node's process is started.
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", arg("rviz_config")],
                parameters=[{"use_sim_time": use_sim_time}],
                output="screen",
            )
        )
    node_arguments: dict[str, Any] = {
        "package": PACKAGE,
        "name": NODE_NAME,
        "parameters": [arg("config"), overrides],
        "remappings": parse_remaps(arg("camera_remaps")),
        "output": "screen",
        "emulate_tty": True,
        "on_exit": _on_node_exit,  # required: see _on_node_exit
    }
    if not lifecycle:
        actions.append(Node(executable=NODE_NAME, **node_arguments))
        return [GroupAction(actions)]
    # LifecycleNode needs a namespace: "" is the pushed one (PushRosNamespace above), or the root
    node = LifecycleNode(executable=LIFECYCLE_EXECUTABLE, namespace="", **node_arguments)
    actions.append(node)
    if autostart:
        actions += _autostart(node)  # after the node: its action registers the ChangeState handler
    return [GroupAction(actions)]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=os.path.join(share, "config", "occupancy.param.yaml"),
                description="occupancy_node parameter file (/**: ros__parameters: ...)",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description="model file (.onnx, .engine/.plan, .ckpt) overriding the config's `model`; '' = keep",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="auto | onnxruntime | tensorrt | torch, overriding the config's `backend`; '' = keep",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node (and RViz)"),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="true: follow /clock (ros2 bag play --clock)"
            ),
            DeclareLaunchArgument(
                "camera_remaps",
                default_value="",
                description="topic remaps FROM:=TO separated by commas, e.g. /cam_front/image_raw:=/front/image",
            ),
            DeclareLaunchArgument("rviz", default_value="false", description="true: also start RViz2"),
            DeclareLaunchArgument(
                "rviz_config",
                default_value=os.path.join(share, "config", "rviz", "occupancy.rviz"),
                description="RViz2 config for rviz:=true",
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                description="true: start occupancy_lifecycle_node, a lifecycle node that waits for configure/activate",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="false",
                description="with lifecycle:=true: configure at launch, activate after the first successful configure",
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
