"""``occupancy_node``: the rclpy driver of :class:`~occ_ros.session.OccupancySession` (topics, tf, diagnostics).

This module is deliberately thin: it declares the parameters of :mod:`.params` (their descriptors come from the
table there: :func:`~occ_ros.node.params.descriptor`), creates subscriptions,
publishers, the tf buffer and the diagnostic updater, and forwards every callback to the session, where all
decisions live (tested without ROS, and run by ``occ replay`` too). See docs/node.md for topics, parameters, QoS
and the threading model.

Images are decoded by the pipeline's own decoder (:func:`occ_ros.io.images.image_to_rgb`), not cv_bridge: one
implementation for raw and compressed images in the node and in ``occ replay`` (so both give the same labels),
which honours ``step`` padding and turns every bad image into a counted skip instead of a cv_bridge exception.

Importing this module needs ROS 2 (rclpy, message_filters, tf2_ros, diagnostic_updater, the message packages);
without it the import fails with an :class:`ImportError` saying so.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

try:
    import builtin_interfaces.msg
    import geometry_msgs.msg
    import message_filters
    import nav_msgs.msg
    import rclpy
    import sensor_msgs.msg
    import std_msgs.msg
    import visualization_msgs.msg
    from diagnostic_updater import FunctionDiagnosticTask, Updater
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.clock import Clock, ClockType
    from rclpy.duration import Duration
    from rclpy.exceptions import (
        InvalidParameterTypeException,
        InvalidParameterValueException,
        NameValidationException,
        ParameterException,
    )
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.publisher import Publisher
    from rclpy.qos import (
        DurabilityPolicy,
        HistoryPolicy,
        QoSProfile,
        ReliabilityPolicy,
        qos_profile_sensor_data,
    )
    from rclpy.time import Time
    from tf2_ros import Buffer, TransformListener
except ImportError as _err:  # no ROS 2 here: say what is missing and how to get it
    raise ImportError(
        f"occupancy_node needs ROS 2 (rclpy, message_filters, tf2_ros, diagnostic_updater, sensor_msgs, std_msgs, "
        f"geometry_msgs, visualization_msgs, nav_msgs): {_err}. Source a ROS 2 Humble/Jazzy install "
        f"(source /opt/ros/$ROS_DISTRO/setup.bash) and build occ_ros with colcon; `occ replay` runs the same "
        f"pipeline without ROS."
    ) from _err

import numpy as np

from occ_ros.core.tf_buffer import matrix_from_transform
from occ_ros.inference.backend import BackendError
from occ_ros.pipeline.messages import message_types_from_modules, rclpy_byte_array
from occ_ros.session import (
    DiagnosticReport,
    OccupancySession,
    OutputSinks,
    diagnostic_level_bytes,
    forward_python_logging,
)
from occ_ros.session.session import query_engine

from .params import (
    NODE_NAME,
    Descriptor,
    NodeParams,
    ParamError,
    ParamSpec,
    camera_name_problems,
    camera_specs,
    descriptor,
    specs,
)
from .runtime import log_to, open_model, subscribed_topics

EXECUTOR_THREADS = 4
DIAGNOSTIC_TASK = "occupancy"


class NodeStartupError(RuntimeError):
    """The node cannot start (bad parameters, no loadable model); already logged as fatal."""


class OccupancyNode(Node):
    """Synchronized camera images in; ``~/voxels``, ``~/markers``, ``~/grid``, ``~/grid_description``,
    ``~/costmap`` and ``/diagnostics`` out.

    Raises:
        NodeStartupError: invalid parameters or no loadable model (the reason is logged as fatal first and the
            node is destroyed).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        # occ_ros' Python logging (worker errors, backend notes) goes to this node's logger, i.e. /rosout.
        self._unforward_logging = forward_python_logging(self._log)
        try:
            self._setup()
        except (ParamError, BackendError, ValueError, ParameterException, NameValidationException) as err:
            self.get_logger().fatal(f"cannot start: {err}")
            self.shutdown()
            raise NodeStartupError(str(err)) from err

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        self.params = self._read_parameters()
        params = self.params
        loaded = open_model(params.model)
        self.types = message_types_from_modules(
            sensor_msgs.msg,
            std_msgs.msg,
            visualization_msgs.msg,
            geometry_msgs.msg,
            builtin_interfaces.msg,
            rclpy_byte_array,
            nav_msgs_msg=nav_msgs.msg,
        )
        # tf: the listener's subscriptions run in their own reentrant group, so a lookup waiting in the
        # synchronizer callback (tf_timeout_s) does not block the transforms it waits for.
        self.tf_buffer = Buffer(node=self)
        self.tf_listener = TransformListener(self.tf_buffer, self)

        self._pubs: list[Publisher] = []
        sinks = self._create_publishers(query_engine(loaded.backend.info, params.session_config())[0] is not None)
        config = params.session_config()
        # the session (its input watch, warnings and diagnostics) names the topics as subscribed: after remapping
        # and namespacing
        resolved = tuple(
            replace(
                c, image_topic=self.resolve_topic_name(c.image_topic), info_topic=self.resolve_topic_name(c.info_topic)
            )
            for c in config.cameras
        )
        self.core = OccupancySession(
            replace(config, cameras=resolved), loaded, self.types, sinks, self._lookup, self._log
        )
        for level, note in self.core.startup_notes():
            self._log(level, note)

        self.updater = Updater(self)
        device = params.model.fallback_device if loaded.fallback else params.model.device
        self.updater.setHardwareID(f"{loaded.backend.name}@{device}")
        self.updater.add(FunctionDiagnosticTask(DIAGNOSTIC_TASK, self._diagnose))
        # diagnostic_updater's own timer runs on the node's clock, which under use_sim_time stops with /clock: a
        # stalled bag would silence /diagnostics exactly when the inputs go stale. Tick it on the steady clock.
        self.destroy_timer(self.updater.timer)
        self.updater.timer = self.create_timer(
            self.updater.period, self.updater.update, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )

        self.core.start()  # the worker runs before the first frame can arrive
        self._subscribe()
        self._subscribe_query()

    def _read_parameters(self) -> NodeParams:
        """Declare the fixed parameters, then the per-camera ones of ``cameras``; validate them all.

        Raises:
            ParamError: every bad parameter: those rclpy rejects against their descriptors (type, range) and
                those :func:`~occ_ros.node.params.from_ros_parameters` rejects.
        """
        rejected: list[str] = []
        for spec in specs():
            self._declare(spec, rejected)
        names = self.get_parameter("cameras").value
        problems = camera_name_problems(names)
        if problems:
            raise ParamError(rejected + problems)
        for name in names:
            for spec in camera_specs(name):
                self._declare(spec, rejected)
        values = {spec.name: self.get_parameter(spec.name).value for spec in specs(names)}
        try:
            params = NodeParams.from_ros_parameters(values)
        except ParamError as err:
            raise ParamError(rejected + err.problems) from None
        if rejected:
            raise ParamError(rejected)
        return params

    def _declare(self, spec: ParamSpec, rejected: list[str]) -> None:
        """Declare ``spec``; a value rclpy rejects (wrong type, out of range) is noted in ``rejected`` and the
        parameter declared with its default, so that every bad parameter is reported at once."""
        try:
            self.declare_parameter(spec.name, spec.default, ros_descriptor(descriptor(spec)))
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            rejected.append(f"parameter {spec.name!r}: expected {spec.expected()} ({err})")
            self.declare_parameter(spec.name, spec.default, ros_descriptor(descriptor(spec)), ignore_override=True)

    def _output_qos(self) -> QoSProfile:
        qos = self.params.qos
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=qos.depth,
            reliability=ReliabilityPolicy[qos.reliability_policy],
            durability=DurabilityPolicy[qos.durability_policy],
        )

    def _create_publishers(self, answers_queries: bool = False) -> OutputSinks:
        out, qos = self.params.outputs, self._output_qos()
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        sinks = OutputSinks()
        if out.cloud:
            sinks.cloud = self._publisher(sensor_msgs.msg.PointCloud2, "~/voxels", qos).publish
        if out.markers:
            markers = self._publisher(visualization_msgs.msg.MarkerArray, "~/markers", qos)
            sinks.markers = markers.publish
            sinks.marker_subscribers = markers.get_subscription_count
        if out.grid:
            sinks.grid = self._publisher(std_msgs.msg.UInt8MultiArray, "~/grid", qos).publish
            sinks.grid_description = self._publisher(std_msgs.msg.String, "~/grid_description", latched).publish
        if self.params.costmap.enabled:
            # reliable + transient-local, depth 1 (map_server's QoS): a late Nav2 StaticLayer gets the last costmap
            sinks.costmap = self._publisher(nav_msgs.msg.OccupancyGrid, "~/costmap", latched).publish
        if answers_queries:  # the model has features and prompts, query.enabled (else the session says why not)
            sinks.query = self._publisher(sensor_msgs.msg.PointCloud2, "~/query/voxels", qos).publish
        return sinks

    def _publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Publisher:
        pub = self.create_publisher(msg_type, topic, qos)
        self._pubs.append(pub)
        return pub

    def _subscribe(self) -> None:
        params = self.params
        image_type = sensor_msgs.msg.CompressedImage if params.compressed else sensor_msgs.msg.Image
        # Images and CameraInfo of every camera go into one ApproximateTimeSynchronizer (2N inputs), the pairing
        # image_transport's CameraSubscriber makes and the one `occ replay` replays. One mutually exclusive group:
        # the synchronizer sees the messages one at a time, in order.
        group = MutuallyExclusiveCallbackGroup()
        self._image_filters = []
        self._info_filters = []
        # subscribe by the configured names (rcl applies the remaps); the session holds the resolved ones
        topics = zip(subscribed_topics(params), self.core.config.cameras, strict=True)
        for (camera, image_topic, info_topic), watched in topics:
            image = message_filters.Subscriber(
                self, image_type, image_topic, qos_profile=qos_profile_sensor_data, callback_group=group
            )
            info = message_filters.Subscriber(
                self, sensor_msgs.msg.CameraInfo, info_topic, qos_profile=qos_profile_sensor_data, callback_group=group
            )
            # each message is also counted on arrival, outside the synchronizer, so a silent topic can be named
            image.registerCallback(self._arrived, watched.image_topic)
            info.registerCallback(self._arrived, watched.info_topic)
            self._image_filters.append(image)
            self._info_filters.append(info)
            self.get_logger().info(f"camera {camera}: images {watched.image_topic}, camera_info {watched.info_topic}")
        self.sync = message_filters.ApproximateTimeSynchronizer(
            [*self._image_filters, *self._info_filters], params.sync.queue_size, params.sync.slop_s
        )
        self.sync.registerCallback(self.core.on_synchronized)

    def _subscribe_query(self) -> None:
        """``~/query`` (``std_msgs/String``, a prompt name; reliable, depth 1) when the model answers queries;
        otherwise the session logged why at startup, and neither ``~/query`` nor ``~/query/voxels`` exists."""
        if self.core.query_engine is None or self.core.sinks.query is None:
            return
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(std_msgs.msg.String, "~/query", self._on_query, qos)  # the node keeps it

    def _on_query(self, msg: Any) -> None:
        self.core.on_query(msg.data)

    # ------------------------------------------------------------------ callbacks
    def _arrived(self, msg: Any, topic: str) -> None:
        self.core.on_input(topic)

    def _lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """tf2: the pose of ``source`` in ``target`` at ``stamp_ns``, waiting up to ``timeout_s``."""
        at = Time(nanoseconds=int(stamp_ns), clock_type=ClockType.ROS_TIME)
        timeout = Duration(nanoseconds=int(max(0.0, timeout_s) * 1e9))
        return matrix_from_transform(self.tf_buffer.lookup_transform(target, source, at, timeout))

    def _diagnose(self, stat: Any) -> Any:
        """diagnostic_updater task: the session's report into the DiagnosticStatusWrapper."""
        report: DiagnosticReport = self.core.diagnostics()
        stat.summary(diagnostic_level_bytes(report.level), report.message)
        for key, value in report.values:
            stat.add(key, value)
        return stat

    def _log(self, level: str, text: str) -> None:
        log_to(self.get_logger(), level, text)  # one call site per severity (rclpy requires it)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the worker (the frame in progress finishes), then destroy the node (also after a failed start)."""
        core = getattr(self, "core", None)
        if core is not None and not core.close(timeout=5.0):
            self.get_logger().warning("the inference worker was still busy after 5 s; leaving it to finish")
        self._unforward_logging()
        self.destroy_node()


def ros_descriptor(d: Descriptor) -> ParameterDescriptor:
    """The ``rcl_interfaces/ParameterDescriptor`` of a table row's declaration (:func:`.params.descriptor`)."""
    floats, ints = d.floating_point_range, d.integer_range
    return ParameterDescriptor(
        name=d.name,
        type=d.type,
        description=d.description,
        additional_constraints=d.additional_constraints,
        read_only=d.read_only,
        dynamic_typing=d.dynamic_typing,
        floating_point_range=[FloatingPointRange(from_value=floats[0], to_value=floats[1], step=floats[2])]
        if floats
        else [],
        integer_range=[IntegerRange(from_value=ints[0], to_value=ints[1], step=ints[2])] if ints else [],
    )


def main(args: list[str] | None = None) -> int:
    """``ros2 run occ_ros occupancy_node``: spin the node on a multi-threaded executor until shutdown."""
    rclpy.init(args=args)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    node: OccupancyNode | None = None
    code = 0
    try:
        node = OccupancyNode()
        executor.add_node(node)
        executor.spin()
    except NodeStartupError:
        code = 1  # the reason was logged as fatal
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # no more callbacks; then the worker stops and the node goes
        if node is not None:
            node.shutdown()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
