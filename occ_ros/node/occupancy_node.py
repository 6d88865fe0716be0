"""``occupancy_node``: the rclpy driver of :class:`~occ_ros.session.OccupancySession` (topics, tf, diagnostics).

This module is deliberately thin: it declares the parameters of :mod:`.params` (their descriptors come from the
table there: :func:`~occ_ros.node.params.descriptor`), creates subscriptions,
publishers, the tf buffer and the diagnostic updater, and forwards every callback to the session, where all
decisions live (tested without ROS, and run by ``occ replay`` too). See docs/node.md for topics, parameters, QoS
and the threading model.

Two executables share one implementation (:class:`OccupancyDriver`, one method per lifecycle step):
``occupancy_node`` (:class:`OccupancyNode`, configured and activated in its constructor, the default) and
``occupancy_lifecycle_node`` (:class:`OccupancyLifecycleNode`, an ``rclpy.lifecycle`` managed node that waits for
``configure`` / ``activate``; ``lifecycle:=true`` in the launch file).

Images are decoded by the pipeline's own decoder (:func:`occ_ros.io.images.image_to_rgb`), not cv_bridge: one
implementation for raw and compressed images in the node and in ``occ replay`` (so both give the same labels),
which honours ``step`` padding and turns every bad image into a counted skip instead of a cv_bridge exception.

Importing this module needs ROS 2 (rclpy, message_filters, tf2_ros, diagnostic_updater, the message packages);
without it the import fails with an :class:`ImportError` saying so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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
    from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState, TransitionCallbackReturn
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
    debug_topics,
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
STARTUP_ERRORS = (ParamError, BackendError, ValueError, ParameterException, NameValidationException)
"""What a failed configure raises: logged (fatal in the plain node, an error in the lifecycle node), never a crash."""


class NodeStartupError(RuntimeError):
    """The node cannot start (bad parameters, no loadable model); already logged as fatal."""


class OccupancyDriver(Node):
    """The one setup of both node classes: each lifecycle step is one method here, called by
    :class:`OccupancyNode` (all of them in its constructor) and by :class:`OccupancyLifecycleNode` (one per
    transition). Never instantiated itself.

    * :meth:`_init_driver` (constructor): log forwarding, message types, the diagnostic updater;
    * :meth:`_configure`: parameters, model and backend (the engine build or load), tf, publishers
      (:meth:`_create_publishers`), the session;
    * :meth:`_activate`: the worker starts, ``~/grid_description`` is published, subscriptions
      (:meth:`_subscribe`);
    * :meth:`_deactivate`: subscriptions destroyed, the worker stopped (the frame in progress finishes and is
      published, the pending one is dropped);
    * :meth:`_cleanup`: the session closed (backend released), publishers and tf destroyed: back to nothing
      configured.

    Every publisher is made by :meth:`_publisher` (a lifecycle publisher in the lifecycle node) and every
    subscription goes into ``self._subs`` (destroyed on deactivate).
    """

    # ------------------------------------------------------------------ construction
    def _init_driver(self) -> None:
        """The parts that live as long as the node (the updater declares its parameter once per node)."""
        self.params: NodeParams | None = None
        self.core: OccupancySession | None = None
        self.tf_listener: TransformListener | None = None
        self._pubs: list[Publisher] = []
        self._subs: list[Any] = []  # rclpy subscriptions, destroyed on deactivate
        self._active = False
        self._declared: dict[str, str] = {}  # parameter -> what rclpy rejected at its declaration ("" = nothing)
        # occ_ros' Python logging (worker errors, backend notes) goes to this node's logger, i.e. /rosout.
        self._unforward_logging = forward_python_logging(self._log)
        self.types = message_types_from_modules(
            sensor_msgs.msg,
            std_msgs.msg,
            visualization_msgs.msg,
            geometry_msgs.msg,
            builtin_interfaces.msg,
            rclpy_byte_array,
            nav_msgs_msg=nav_msgs.msg,
        )
        self.updater = Updater(self)
        self.updater.setHardwareID("none")
        self.updater.add(FunctionDiagnosticTask(DIAGNOSTIC_TASK, self._diagnose))
        # diagnostic_updater's own timer runs on the node's clock, which under use_sim_time stops with /clock: a
        # stalled bag would silence /diagnostics exactly when the inputs go stale. Tick it on the steady clock.
        self.destroy_timer(self.updater.timer)
        self.updater.timer = self.create_timer(
            self.updater.period, self.updater.update, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )

    # ------------------------------------------------------------------ lifecycle steps
    def _configure(self) -> None:
        """Parameters, model, tf, publishers and the session (its worker not started yet).

        Raises:
            one of :data:`STARTUP_ERRORS`: nothing is left configured (the caller runs :meth:`_cleanup`).
        """
        self.params = params = self._read_parameters()
        loaded = open_model(params.model)
        try:
            # tf: the listener's subscriptions run in their own reentrant group, so a lookup waiting in the
            # synchronizer callback (tf_timeout_s) does not block the transforms it waits for.
            self.tf_buffer = Buffer(node=self)
            self.tf_listener = TransformListener(self.tf_buffer, self)
            sinks = self._create_publishers(query_engine(loaded.backend.info, params.session_config())[0] is not None)
            config = params.session_config()
            # the session (its input watch, warnings and diagnostics) names the topics as subscribed: after
            # remapping and namespacing
            resolved = tuple(
                replace(
                    c,
                    image_topic=self.resolve_topic_name(c.image_topic),
                    info_topic=self.resolve_topic_name(c.info_topic),
                )
                for c in config.cameras
            )
            self.core = OccupancySession(
                replace(config, cameras=resolved),
                loaded,
                self.types,
                sinks,
                self._lookup,
                self._log,
                stamp_clock=self._now_ns,
            )
        except BaseException:
            loaded.backend.close()
            raise
        for level, note in self.core.startup_notes():
            self._log(level, note)
        device = params.model.fallback_device if loaded.fallback else params.model.device
        self.updater.setHardwareID(f"{loaded.backend.name}@{device}")

    def _activate(self) -> None:
        """Start the worker (before the first frame can arrive) and publish the description, then subscribe."""
        if self.core is None:
            raise RuntimeError("activate before configure")
        self.core.start()
        self._subscribe()
        self._active = True

    def _deactivate(self) -> None:
        """Destroy the subscriptions, then stop the worker: the frame in progress finishes and is published, the
        pending one is dropped (counted ``superseded``)."""
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self.core is not None and not self.core.stop(timeout=5.0):
            self.get_logger().warning("the inference worker was still busy after 5 s; leaving it to finish")

    def _cleanup(self) -> None:
        """Back to nothing configured: deactivate, close the session (the backend and its GPU memory are
        released), destroy the publishers and the tf listener. Safe on a partial configure."""
        if self._active or self._subs:
            self._deactivate()
        core, self.core = self.core, None
        if core is not None and not core.close(timeout=5.0):
            self.get_logger().warning("the inference worker was still busy after 5 s; the backend stays open")
        for pub in self._pubs:
            self._drop_publisher(pub)
        self._pubs = []
        if self.tf_listener is not None:
            self.tf_listener.unregister()
            self.tf_listener = None
        self.updater.setHardwareID("none")

    # ------------------------------------------------------------------ parameters
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
        """Declare ``spec`` (once per node: a lifecycle node configures again after cleanup); a value rclpy
        rejects (wrong type, out of range) is noted in ``rejected``, at every configure, and the parameter
        declared with its default, so that every bad parameter is reported at once."""
        if spec.name not in self._declared:
            problem = ""
            try:
                self.declare_parameter(spec.name, spec.default, ros_descriptor(descriptor(spec)))
            except (InvalidParameterTypeException, InvalidParameterValueException) as err:
                problem = f"parameter {spec.name!r}: expected {spec.expected()} ({err})"
                self.declare_parameter(spec.name, spec.default, ros_descriptor(descriptor(spec)), ignore_override=True)
            self._declared[spec.name] = problem
        if self._declared[spec.name]:
            rejected.append(self._declared[spec.name])

    # ------------------------------------------------------------------ publishers and subscriptions
    def _output_qos(self, params: NodeParams) -> QoSProfile:
        qos = params.qos
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=qos.depth,
            reliability=ReliabilityPolicy[qos.reliability_policy],
            durability=DurabilityPolicy[qos.durability_policy],
        )

    def _create_publishers(self, answers_queries: bool = False) -> OutputSinks:
        """The output publishers (``answers_queries``: the model has features and prompts and ``query.enabled``;
        else the session says at startup why not, and ``~/query/voxels`` is not advertised)."""
        assert self.params is not None
        out, qos = self.params.outputs, self._output_qos(self.params)
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
        if answers_queries:
            sinks.query = self._publisher(sensor_msgs.msg.PointCloud2, "~/query/voxels", qos).publish
        if out.processing_time:  # Autoware's debug topics: reliable, volatile, depth 1
            debug = {
                name: self._publisher(std_msgs.msg.Float64, f"~/{name}", QoSProfile(depth=1)) for name in debug_topics()
            }
            sinks.processing_time = lambda name, msg: debug[name].publish(msg)
        return sinks

    def _publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Publisher:
        pub = self._new_publisher(msg_type, topic, qos)
        self._pubs.append(pub)
        return pub

    def _new_publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Publisher:
        """A plain publisher (the lifecycle node makes lifecycle publishers, which publish only while active)."""
        return self.create_publisher(msg_type, topic, qos)

    def _drop_publisher(self, pub: Publisher) -> None:
        self.destroy_publisher(pub)

    def _subscribe(self) -> None:
        assert self.params is not None and self.core is not None
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
            self._subs += [image.sub, info.sub]
            self.get_logger().info(f"camera {camera}: images {watched.image_topic}, camera_info {watched.info_topic}")
        self.sync = message_filters.ApproximateTimeSynchronizer(
            [*self._image_filters, *self._info_filters], params.sync.queue_size, params.sync.slop_s
        )
        self.sync.registerCallback(self.core.on_synchronized)
        # ~/query (std_msgs/String, a prompt name; reliable, depth 1) only when the model answers queries
        if self.core.query_engine is not None and self.core.sinks.query is not None:
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
            self._subs.append(self.create_subscription(std_msgs.msg.String, "~/query", self._on_query, qos))

    # ------------------------------------------------------------------ callbacks
    def _arrived(self, msg: Any, topic: str) -> None:
        core = self.core
        if core is not None:
            core.on_input(topic)

    def _on_query(self, msg: Any) -> None:
        core = self.core
        if core is not None:
            core.on_query(msg.data)

    def _lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """tf2: the pose of ``source`` in ``target`` at ``stamp_ns``, waiting up to ``timeout_s``."""
        at = Time(nanoseconds=int(stamp_ns), clock_type=ClockType.ROS_TIME)
        timeout = Duration(nanoseconds=int(max(0.0, timeout_s) * 1e9))
        return matrix_from_transform(self.tf_buffer.lookup_transform(target, source, at, timeout))

    def _now_ns(self) -> int:
        """The node's clock (ROS time: ``/clock`` under ``use_sim_time``), for ``~/debug/pipeline_latency_ms``."""
        return int(self.get_clock().now().nanoseconds)

    def _diagnose(self, stat: Any) -> Any:
        """diagnostic_updater task: the session's report into the DiagnosticStatusWrapper; OK with the lifecycle
        state while not active (deliberately idle, not a fault)."""
        core = self.core
        if core is None or not self._active:
            state = "unconfigured" if core is None else "inactive"
            stat.summary(diagnostic_level_bytes(0), f"{state}: not processing (lifecycle)")
            return stat
        report: DiagnosticReport = core.diagnostics()
        stat.summary(diagnostic_level_bytes(report.level), report.message)
        for key, value in report.values:
            stat.add(key, value)
        return stat

    def _log(self, level: str, text: str) -> None:
        log_to(self.get_logger(), level, text)  # one call site per severity (rclpy requires it)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the worker (the frame in progress finishes), release the backend, then destroy the node (also
        after a failed start)."""
        self._cleanup()
        self._unforward_logging()
        self.destroy_node()


class OccupancyNode(OccupancyDriver):
    """Synchronized camera images (and ``~/query``) in; ``~/voxels``, ``~/markers``, ``~/grid``,
    ``~/grid_description``, ``~/costmap``, ``~/query/voxels``, ``~/debug/...`` and ``/diagnostics`` out.
    Configured and activated in its constructor.

    Raises:
        NodeStartupError: invalid parameters or no loadable model (the reason is logged as fatal first and the
            node is destroyed).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_driver()
        try:
            self._configure()
            self._activate()
        except STARTUP_ERRORS as err:
            self.get_logger().fatal(f"cannot start: {err}")
            self.shutdown()
            raise NodeStartupError(str(err)) from err


class OccupancyLifecycleNode(LifecycleNode, OccupancyDriver):
    """The same node as a managed (lifecycle) node: it starts unconfigured; each transition runs one step of
    :class:`OccupancyDriver` (see docs/node.md, "Lifecycle node"). Its output publishers are lifecycle
    publishers: they publish only while active. A failed configure logs the reason and leaves the node
    unconfigured (alive: fix the cause, configure again)."""

    def __init__(self, **kwargs: Any) -> None:
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._init_driver()

    def _new_publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Publisher:
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def _drop_publisher(self, pub: Publisher) -> None:
        if isinstance(pub, LifecyclePublisher):
            self.destroy_lifecycle_publisher(pub)
        else:
            self.destroy_publisher(pub)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except STARTUP_ERRORS as err:
            self.get_logger().error(f"cannot configure: {err}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        except Exception as err:  # a bug: rclpy would turn it into ERROR without a word
            self.get_logger().error(f"configure failed: {type(err).__name__}: {err}")
            return TransitionCallbackReturn.ERROR  # on_error cleans up
        self.get_logger().info("configured: model loaded; activate to subscribe and publish")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers first: the description goes out
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        try:
            self._activate()
        except Exception as err:  # a bug: rclpy would turn it into ERROR without a word
            self.get_logger().error(f"activate failed: {type(err).__name__}: {err}")
            return TransitionCallbackReturn.ERROR  # on_error cleans up
        self.get_logger().info("active: subscribed")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.get_logger().info("cleaned up: backend released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()  # after an exception in a transition: back to unconfigured
        return super().on_error(state)


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


def _spin(make_node: Callable[[], OccupancyDriver], args: list[str] | None) -> int:
    """Spin ``make_node()`` on a multi-threaded executor until shutdown; 1 when the node could not start."""
    rclpy.init(args=args)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    node: OccupancyDriver | None = None
    code = 0
    try:
        node = make_node()
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


def main(args: list[str] | None = None) -> int:
    """``ros2 run occ_ros occupancy_node``: the node, configured and active from the start."""
    return _spin(OccupancyNode, args)


def lifecycle_main(args: list[str] | None = None) -> int:
    """``ros2 run occ_ros occupancy_lifecycle_node``: the lifecycle node, unconfigured until told
    (``ros2 lifecycle set /occupancy_node configure``, then ``activate``)."""
    return _spin(OccupancyLifecycleNode, args)


if __name__ == "__main__":
    sys.exit(main())
