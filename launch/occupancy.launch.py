"""Launch ``occupancy_node`` (and RViz with ``rviz:=true``).

    ros2 launch occ_ros occupancy.launch.py model:=/path/model.onnx use_sim_time:=true
    ros2 launch occ_ros occupancy.launch.py namespace:=/perception rviz:=true \
        camera_remaps:="/cam_front/image_raw:=/sensing/front/image_raw,/cam_front/camera_info:=/sensing/front/info"

Arguments (``ros2 launch occ_ros occupancy.launch.py --show-args``):

* ``config``: parameter file (default: the installed ``share/occ_ros/config/occupancy.param.yaml``);
* ``model``, ``backend``: override the file's ``model`` / ``backend`` when not empty;
* ``namespace``: pushed onto the node (and RViz), e.g. ``/perception`` -> ``/perception/occupancy_node/voxels``;
* ``use_sim_time``: ``true`` for ``ros2 bag play --clock``;
* ``camera_remaps``: ``FROM:=TO`` topic remappings separated by commas, applied to the node. Camera topics can
  also be set per camera in the parameter file (``camera.<NAME>.image_topic`` / ``info_topic``); remaps are for
  wiring an unchanged config to another driver. With ``compressed: true`` the node subscribes to
  ``<image_topic>/compressed``, so remap that name;
* ``rviz``, ``rviz_config``: start RViz2 with the shipped config (``share/occ_ros/config/rviz/occupancy.rviz``).
"""

from __future__ import annotations

import os
from typing import Any

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

from occ_ros.node.params import NODE_NAME, parse_remaps

PACKAGE = "occ_ros"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _as_bool(text: str, argument: str) -> bool:
    value = text.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"launch argument {argument!r}: expected true or false, got {text!r}")
    return value in _TRUE


def _launch_setup(context: LaunchContext) -> list[Any]:
    """The actions, once the arguments are known (overrides only for arguments that were given)."""

    def arg(name: str) -> str:
        return str(LaunchConfiguration(name).perform(context))

    use_sim_time = _as_bool(arg("use_sim_time"), "use_sim_time")
    overrides: dict[str, Any] = {"use_sim_time": use_sim_time}
    for name in ("model", "backend"):
        if arg(name):
            overrides[name] = arg(name)
    actions: list[Any] = []
    namespace = arg("namespace")
    if namespace:
        actions.append(PushRosNamespace(namespace))
    actions.append(
        Node(
            package=PACKAGE,
            executable=NODE_NAME,
            name=NODE_NAME,
            parameters=[arg("config"), overrides],
            remappings=parse_remaps(arg("camera_remaps")),
            output="screen",
            emulate_tty=True,
        )
    )
    if _as_bool(arg("rviz"), "rviz"):
        # The RViz config names the node's topics relative (occupancy_node/voxels), so they follow the namespace.
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
            OpaqueFunction(function=_launch_setup),
        ]
    )
