"""The launch file's behaviour, the lookup of the shipped files and package.xml's ROS dependencies, without ROS 2.

``launch/occupancy.launch.py`` is loaded from its path while small fakes of ``launch``, ``launch_ros`` and
``ament_index_python`` stand in ``sys.modules``. Each fake constructor takes exactly the keyword arguments of the
Jazzy one (launch / launch_ros ``jazzy`` branches, including what ``Node`` passes on to ``ExecuteProcess``,
``ExecuteLocal`` and ``Action``), so a misspelt or unknown argument fails here as it would under ROS 2.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from occ_ros.core import resources

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "occupancy.launch.py"


# ---------------------------------------------------------------------- fakes of launch, launch_ros, ament_index
# Signatures of the Jazzy constructors (keyword-only where they are).
def _declare_launch_argument(name, *, default_value=None, description=None, choices=None, condition=None) -> None: ...
def _group_action(actions, *, scoped=True, forwarding=True, launch_configurations=None, condition=None) -> None: ...
def _opaque_function(*, function, args=None, kwargs=None, condition=None) -> None: ...
def _shutdown(*, reason="reason not given", condition=None) -> None: ...
def _launch_description(initial_entities=None, *, deprecated_reason=None) -> None: ...
def _launch_configuration(variable_name, *, default=None) -> None: ...
def _push_ros_namespace(namespace, *, condition=None) -> None: ...
def _process_exited(*, returncode, action, name, cmd, cwd, env, pid) -> None: ...
def _emit_event(*, event, condition=None) -> None: ...
def _register_event_handler(event_handler, *, condition=None) -> None: ...
def _change_state(*, lifecycle_node_matcher, transition_id) -> None: ...
def _on_state_transition(
    *,
    entities,
    target_lifecycle_node=None,
    transition=None,
    start_state=None,
    goal_state=None,
    matcher=None,
    handle_once=False,  # launch.EventHandler's, through **kwargs
) -> None: ...


def _node(
    *,
    # launch_ros.actions.Node
    executable,
    package=None,
    name=None,
    namespace=None,
    exec_name=None,
    parameters=None,
    remappings=None,
    ros_arguments=None,
    arguments=None,
    # launch.actions.ExecuteProcess (cmd and name are set by Node)
    prefix=None,
    cwd=None,
    env=None,
    additional_env=None,
    # launch.actions.ExecuteLocal
    shell=False,
    sigterm_timeout=None,
    sigkill_timeout=None,
    emulate_tty=False,
    output="log",
    output_format=None,
    cached_output=False,
    log_cmd=False,
    on_exit=None,
    respawn=False,
    respawn_delay=None,
    respawn_max_retries=-1,
    # launch.Action
    condition=None,
) -> None: ...


def _lifecycle_node(**kwargs: Any) -> None:
    """launch_ros.actions.LifecycleNode (humble and jazzy): Node's arguments, with ``name`` and ``namespace``
    required (its signature below)."""


_lifecycle_node.__signature__ = inspect.signature(_node).replace(  # type: ignore[attr-defined]
    parameters=[
        p.replace(default=inspect.Parameter.empty) if p.name in ("name", "namespace") else p
        for p in inspect.signature(_node).parameters.values()
    ]
)


class Fake:
    """A constructor call, checked against the signature in ``_stub`` (TypeError as the real one would raise)."""

    _stub: Callable[..., None]
    created: list[Fake]  # every instance, in order (set per test by the `fakes` fixture)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args: dict[str, Any] = dict(inspect.signature(self._stub).bind(*args, **kwargs).arguments)
        self.created.append(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args})"


class FakeContext:
    """The part of ``launch.LaunchContext`` the launch file uses."""

    def __init__(self, launch_configurations: dict[str, str], is_shutdown: bool = False) -> None:
        self.launch_configurations = launch_configurations
        self.is_shutdown = is_shutdown


class FakePackageNotFoundError(KeyError):
    """``ament_index_python.packages.PackageNotFoundError`` (a KeyError)."""


class Fakes:
    """The fake modules, their classes and the ament index they answer from (package -> prefix)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[Fake] = []
        self.prefixes: dict[str, Path] = {}

        def fake(name: str, stub: Callable[..., None], **members: Any) -> type[Fake]:
            return type(name, (Fake,), {"_stub": staticmethod(stub), "created": self.created, **members})

        self.Node = fake("Node", _node)
        self.Shutdown = fake("Shutdown", _shutdown)
        self.GroupAction = fake("GroupAction", _group_action)
        self.OpaqueFunction = fake("OpaqueFunction", _opaque_function)
        self.DeclareLaunchArgument = fake("DeclareLaunchArgument", _declare_launch_argument)
        self.ProcessExited = fake("ProcessExited", _process_exited, returncode=property(lambda e: e.args["returncode"]))
        self.LifecycleNode = fake("LifecycleNode", _lifecycle_node)
        self.EmitEvent = fake("EmitEvent", _emit_event)
        self.RegisterEventHandler = fake("RegisterEventHandler", _register_event_handler)
        self.OnStateTransition = fake("OnStateTransition", _on_state_transition)
        self.ChangeState = fake("ChangeState", _change_state)

        def matches_action(target_action: Any) -> Callable[[Any], bool]:
            return lambda action: action is target_action

        def perform(substitution: Fake, context: FakeContext) -> str:
            return context.launch_configurations[substitution.args["variable_name"]]

        launch_configuration = fake("LaunchConfiguration", _launch_configuration, perform=perform)
        self.PushRosNamespace = fake("PushRosNamespace", _push_ros_namespace)

        def get_package_prefix(package_name: str) -> str:
            if package_name not in self.prefixes:
                raise FakePackageNotFoundError(f"package '{package_name}' not found")
            return str(self.prefixes[package_name])

        def get_package_share_directory(package_name: str, print_warning: bool = True) -> str:
            return os.path.join(get_package_prefix(package_name), "share", package_name)

        modules: dict[str, dict[str, Any]] = {
            "launch": {},
            "launch.actions": {
                "DeclareLaunchArgument": self.DeclareLaunchArgument,
                "EmitEvent": self.EmitEvent,
                "GroupAction": self.GroupAction,
                "OpaqueFunction": self.OpaqueFunction,
                "RegisterEventHandler": self.RegisterEventHandler,
                "Shutdown": self.Shutdown,
            },
            "launch.events": {"matches_action": matches_action},
            "launch.events.process": {"ProcessExited": self.ProcessExited},
            "launch.launch_context": {"LaunchContext": FakeContext},
            "launch.launch_description": {"LaunchDescription": fake("LaunchDescription", _launch_description)},
            "launch.substitutions": {"LaunchConfiguration": launch_configuration},
            "launch_ros": {},
            "launch_ros.actions": {
                "LifecycleNode": self.LifecycleNode,
                "Node": self.Node,
                "PushRosNamespace": self.PushRosNamespace,
            },
            "launch_ros.event_handlers": {"OnStateTransition": self.OnStateTransition},
            "launch_ros.events": {},
            "launch_ros.events.lifecycle": {"ChangeState": self.ChangeState},
            # lifecycle_msgs/msg/Transition ids (lifecycle_msgs' Transition.msg)
            "lifecycle_msgs": {},
            "lifecycle_msgs.msg": {"Transition": types.SimpleNamespace(TRANSITION_CONFIGURE=1, TRANSITION_ACTIVATE=3)},
            "ament_index_python": {},
            "ament_index_python.packages": {
                "PackageNotFoundError": FakePackageNotFoundError,
                "get_package_prefix": get_package_prefix,
                "get_package_share_directory": get_package_share_directory,
            },
        }
        for name, members in modules.items():
            module = types.ModuleType(name)
            module.__dict__.update(members)
            monkeypatch.setitem(sys.modules, name, module)

    def nodes(self) -> list[Fake]:
        return [f for f in self.created if isinstance(f, self.Node | self.LifecycleNode)]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Fakes:
    fakes = Fakes(monkeypatch)
    fakes.prefixes["occ_ros"] = tmp_path / "install" / "occ_ros"
    return fakes


def install_rviz2(fakes: Fakes, tmp_path: Path, executable: bool = True) -> Path:
    """An rviz2 package in the fake ament index, with ``lib/rviz2/rviz2`` unless ``executable`` is false."""
    prefix = tmp_path / "opt" / "ros"
    (prefix / "lib" / "rviz2").mkdir(parents=True)
    if executable:
        (prefix / "lib" / "rviz2" / "rviz2").write_text("#!/bin/sh\n")
        (prefix / "lib" / "rviz2" / "rviz2").chmod(0o755)
    fakes.prefixes["rviz2"] = prefix
    return prefix


def load_launch_file() -> types.ModuleType:
    """The launch file as a module (its folder `launch/` would shadow the `launch` package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("occupancy_launch_under_test", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_setup(fakes: Fakes, **arguments: str) -> list[Any]:
    """``generate_launch_description()``, then its OpaqueFunction with the declared defaults and ``arguments``."""
    description = load_launch_file().generate_launch_description()
    entities = description.args["initial_entities"]
    configs = {
        e.args["name"]: e.args.get("default_value", "") for e in entities if isinstance(e, fakes.DeclareLaunchArgument)
    }
    assert set(arguments) <= set(configs), set(arguments) - set(configs)
    configs.update(arguments)
    (opaque,) = [e for e in entities if isinstance(e, fakes.OpaqueFunction)]
    fakes.created.clear()
    result: list[Any] = opaque.args["function"](FakeContext(configs))
    return result


def exited(fakes: Fakes, returncode: int) -> Fake:
    return fakes.ProcessExited(
        returncode=returncode, action=None, name="occupancy_node-1", cmd=["occupancy_node"], cwd=None, env=None, pid=1
    )


# ---------------------------------------------------------------------- launch file: rviz2
def test_rviz_without_rviz2_fails_before_any_node_is_created(fakes: Fakes) -> None:
    with pytest.raises(RuntimeError, match="rviz2") as info:
        run_setup(fakes, rviz="true")
    message = str(info.value)
    assert "ros-$ROS_DISTRO-rviz2" in message and "rviz:=false" in message
    assert fakes.nodes() == [], "a Node was created although the launch fails"


def test_rviz_with_an_rviz2_package_but_no_executable_fails_before_any_node(fakes: Fakes, tmp_path: Path) -> None:
    prefix = install_rviz2(fakes, tmp_path, executable=False)
    with pytest.raises(RuntimeError, match="rviz2") as info:
        run_setup(fakes, rviz="true")
    assert str(prefix / "lib" / "rviz2") in str(info.value)
    assert fakes.nodes() == []


def test_rviz_with_rviz2_starts_rviz_first_not_required(fakes: Fakes, tmp_path: Path) -> None:
    install_rviz2(fakes, tmp_path)
    (group,) = run_setup(fakes, rviz="true", namespace="/perception")
    assert isinstance(group, fakes.GroupAction)
    actions = group.args["actions"]
    nodes = [a for a in actions if isinstance(a, fakes.Node)]
    assert [n.args["executable"] for n in nodes] == ["rviz2", "occupancy_node"]  # rviz first: see the launch file
    rviz, node = nodes
    assert rviz.args["package"] == "rviz2" and rviz.args["arguments"][0] == "-d"
    assert rviz.args["arguments"][1].endswith(os.path.join("config", "rviz", "occupancy.rviz"))
    assert "on_exit" not in rviz.args, "rviz2 must not be required: its exit would end the node"
    assert callable(node.args["on_exit"])
    assert isinstance(actions[0], fakes.PushRosNamespace) and actions[0].args["namespace"] == "/perception"


def test_without_rviz_only_the_node_and_no_rviz2_lookup(fakes: Fakes) -> None:
    (group,) = run_setup(fakes)  # no rviz2 in the fake index: not asked for
    (node,) = [a for a in group.args["actions"] if isinstance(a, fakes.Node)]
    assert node.args["package"] == "occ_ros" and node.args["name"] == "occupancy_node"
    config, overrides = node.args["parameters"]
    assert config.endswith(os.path.join("config", "occupancy.param.yaml"))
    assert overrides == {"use_sim_time": False}


# ---------------------------------------------------------------------- launch file: the node is required
def on_exit(fakes: Fakes) -> Callable[[Fake, FakeContext], Any]:
    (group,) = run_setup(fakes, model="/no/such/model.onnx")
    (node,) = [a for a in group.args["actions"] if isinstance(a, fakes.Node)]
    handler = node.args.get("on_exit")
    assert callable(handler), "occupancy_node has no on_exit handler: its failure would not end the launch"
    return handler


@pytest.mark.parametrize("returncode", [1, -9])
def test_a_failed_node_fails_the_launch(fakes: Fakes, returncode: int) -> None:
    """An exception from an event handler is what makes LaunchService.run() shut down and return 1."""
    handler = on_exit(fakes)
    with pytest.raises(Exception, match="occupancy_node") as info:
        handler(exited(fakes, returncode), FakeContext({}))
    assert str(abs(returncode)) in str(info.value)


def test_a_node_failing_while_the_launch_shuts_down_still_fails_it(fakes: Fakes) -> None:
    with pytest.raises(Exception, match="exited with code 1"):
        on_exit(fakes)(exited(fakes, 1), FakeContext({}, is_shutdown=True))


def test_a_node_stopped_by_the_launch_shutdown_is_not_a_failure(fakes: Fakes) -> None:
    """Ctrl-C: launch signals the node (SIGINT, then SIGTERM / SIGKILL after the timeouts)."""
    assert on_exit(fakes)(exited(fakes, -15), FakeContext({}, is_shutdown=True)) is None


def test_a_node_exiting_cleanly_during_the_shutdown_asks_for_no_second_shutdown(fakes: Fakes) -> None:
    """SIGINT from the launch's shutdown: the node exits 0; another Shutdown made launch_ros' ROS adapter (started by a
    LifecycleNode action) raise "Cannot shutdown a ROS adapter that is not running" under Jazzy."""
    assert on_exit(fakes)(exited(fakes, 0), FakeContext({}, is_shutdown=True)) is None


def test_a_node_exiting_cleanly_shuts_the_launch_down(fakes: Fakes) -> None:
    handler = on_exit(fakes)
    result = handler(exited(fakes, 0), FakeContext({}))
    actions = result if isinstance(result, list | tuple) else [result]
    assert len(actions) == 1 and isinstance(actions[0], fakes.Shutdown)
    assert "occupancy_node" in actions[0].args["reason"]


# ---------------------------------------------------------------------- launch file: lifecycle:=true
def test_the_plain_node_is_the_default(fakes: Fakes) -> None:
    (group,) = run_setup(fakes)
    assert [type(a).__name__ for a in group.args["actions"]] == ["Node"]
    assert group.args["actions"][0].args["executable"] == "occupancy_node"


def test_lifecycle_starts_the_lifecycle_executable_as_a_lifecycle_node(fakes: Fakes) -> None:
    (group,) = run_setup(fakes, lifecycle="true", namespace="/perception", model="/m.onnx")
    actions = group.args["actions"]
    assert isinstance(actions[0], fakes.PushRosNamespace) and actions[0].args["namespace"] == "/perception"
    (node,) = actions[1:]  # no autostart: nothing configures it
    assert isinstance(node, fakes.LifecycleNode)
    args = node.args
    assert args["executable"] == "occupancy_lifecycle_node" and args["package"] == "occ_ros"
    assert args["name"] == "occupancy_node" and args["namespace"] == ""  # "" = the pushed namespace
    assert args["parameters"][1] == {"use_sim_time": False, "model": "/m.onnx"}
    assert callable(args["on_exit"])  # required, as the plain node
    assert not [f for f in fakes.created if isinstance(f, fakes.EmitEvent)]


def test_autostart_configures_then_activates_once_configured(fakes: Fakes) -> None:
    (group,) = run_setup(fakes, lifecycle="true", autostart="true")
    node, register, configure = group.args["actions"]
    assert isinstance(node, fakes.LifecycleNode)
    # configure, emitted after the node action (which registers launch_ros' ChangeState handler when it executes)
    assert isinstance(configure, fakes.EmitEvent)
    event = configure.args["event"]
    assert isinstance(event, fakes.ChangeState) and event.args["transition_id"] == 1  # TRANSITION_CONFIGURE
    assert event.args["lifecycle_node_matcher"](node) and not event.args["lifecycle_node_matcher"](register)
    # activate, when a configure ends in inactive: not after a deactivate (active -> deactivating -> inactive),
    # and only the first time
    assert isinstance(register, fakes.RegisterEventHandler)
    handler = register.args["event_handler"]
    assert isinstance(handler, fakes.OnStateTransition)
    assert handler.args["target_lifecycle_node"] is node
    assert (handler.args["start_state"], handler.args["goal_state"]) == ("configuring", "inactive")
    assert handler.args["handle_once"] is True
    (activate,) = handler.args["entities"]
    assert activate.args["event"].args["transition_id"] == 3  # TRANSITION_ACTIVATE
    assert activate.args["event"].args["lifecycle_node_matcher"](node)


def test_autostart_without_lifecycle_is_refused(fakes: Fakes) -> None:
    with pytest.raises(ValueError, match="autostart.*lifecycle:=true"):
        run_setup(fakes, autostart="true")
    with pytest.raises(ValueError, match="'lifecycle': expected true or false"):
        run_setup(fakes, lifecycle="maybe")


def test_a_failed_lifecycle_node_fails_the_launch_too(fakes: Fakes) -> None:
    (group,) = run_setup(fakes, lifecycle="true")
    (node,) = [a for a in group.args["actions"] if isinstance(a, fakes.LifecycleNode)]
    with pytest.raises(Exception, match="exited with code 1"):
        node.args["on_exit"](exited(fakes, 1), FakeContext({}))


# ---------------------------------------------------------------------- shipped files (config/, models/)
@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The source-tree and ``sys.prefix`` candidates miss (an installed module, another prefix); no env override."""
    monkeypatch.setattr(resources, "__file__", str(tmp_path / "site" / "occ_ros" / "core" / "resources.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.delenv("OCC_ROS_MODELS_DIR", raising=False)
    monkeypatch.delenv("OCC_ROS_CONFIG_DIR", raising=False)
    return tmp_path


def colcon_share(fakes: Fakes, tmp_path: Path) -> Path:
    """``install/occ_ros/share/occ_ros`` as colcon builds it, with models/demo.ckpt and config/rigs/."""
    share = tmp_path / "install" / "occ_ros" / "share" / "occ_ros"
    (share / "models").mkdir(parents=True)
    (share / "models" / "demo.ckpt").write_bytes(b"ckpt")
    (share / "config" / "rigs").mkdir(parents=True)
    return share


def test_models_dir_asks_the_ament_index(fakes: Fakes, elsewhere: Path) -> None:
    share = colcon_share(fakes, elsewhere)
    assert resources.models_dir() == share / "models"
    assert resources.config_dir() == share / "config"


def test_the_env_override_wins_over_the_ament_index(
    fakes: Fakes, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    colcon_share(fakes, elsewhere)
    mine = elsewhere / "mine"
    (mine / "rigs").mkdir(parents=True)
    (mine / "demo.ckpt").write_bytes(b"ckpt")
    monkeypatch.setenv("OCC_ROS_MODELS_DIR", str(mine))
    monkeypatch.setenv("OCC_ROS_CONFIG_DIR", str(mine))
    assert resources.models_dir() == mine == resources.config_dir()


def test_the_error_names_every_place_looked_in(fakes: Fakes, elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCC_ROS_MODELS_DIR", str(elsewhere / "override"))
    with pytest.raises(FileNotFoundError) as info:
        resources.models_dir()
    message = str(info.value)
    for place in (
        elsewhere / "override",
        elsewhere / "site" / "models",
        elsewhere / "venv" / "share" / "occ_ros" / "models",
        elsewhere / "install" / "occ_ros" / "share" / "occ_ros" / "models",
    ):
        assert str(place) in message, place
    assert "OCC_ROS_MODELS_DIR" in message


def test_the_error_says_when_the_ament_index_is_unavailable(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ament_index_python", None)  # import fails: ROS 2 not sourced
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", None)
    with pytest.raises(FileNotFoundError, match="ament index: not available") as info:
        resources.config_dir()
    assert str(elsewhere / "venv" / "share" / "occ_ros" / "config") in str(info.value)


def test_the_error_says_when_occ_ros_is_not_in_the_ament_index(fakes: Fakes, elsewhere: Path) -> None:
    del fakes.prefixes["occ_ros"]
    with pytest.raises(FileNotFoundError, match="ament index: occ_ros is not in it"):
        resources.models_dir()


# ---------------------------------------------------------------------- package.xml
# Python modules whose ROS package has another name.
ROS_PACKAGE_OF = {"tf2_ros": "tf2_ros_py"}
# Third-party modules that are not ROS packages (rosdep keys: python3-*, checked by tests/test_packaging.py).
NOT_ROS = {"numpy", "yaml"}
# Declared ROS packages that no file imports, and why.
USED_WITHOUT_IMPORT = {
    "diagnostic_msgs": "the type of /diagnostics; the node fills its DiagnosticStatus through diagnostic_updater",
}
FIRST_PARTY = {"occ_ros", "occ_training", "occ_export"}


def ros_imports() -> dict[str, set[str]]:
    """ROS package -> the files importing it, over the node, the resource lookup and the launch files."""
    files = [
        *REPO.glob("occ_ros/node/*.py"),
        *REPO.glob("occ_ros/session/*.py"),
        REPO / "occ_ros" / "core" / "resources.py",
    ]
    files += REPO.glob("launch/*.py")
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top in NOT_ROS:
                    continue
                found.setdefault(ROS_PACKAGE_OF.get(top, top), set()).add(path.relative_to(REPO).as_posix())
    return found


def declared(kind: str) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {(e.text or "").strip() for tag in (kind, "depend") for e in root.findall(tag)}


def test_every_imported_ros_package_is_declared() -> None:
    imported = ros_imports()
    assert {"rclpy", "tf2_ros_py", "launch", "launch_ros", "ament_index_python"} <= set(imported)  # the scan works
    missing = {pkg: sorted(files) for pkg, files in imported.items() if pkg not in declared("exec_depend")}
    assert not missing, f"imported but not an <exec_depend> of package.xml: {missing}"


def test_every_declared_ros_package_is_imported() -> None:
    ros = {d for d in declared("exec_depend") if not d.startswith("python3-")}
    unused = ros - set(ros_imports()) - set(USED_WITHOUT_IMPORT)
    assert not unused, f"<exec_depend> never imported by the node or the launch file: {sorted(unused)}"
    assert set(USED_WITHOUT_IMPORT) <= ros, "an allow-listed package is no longer declared: drop it from the list"


def test_launch_tests_have_their_test_depends() -> None:
    assert {"launch_testing", "launch_testing_ros", "launch_pytest", "python3-pytest"} <= declared("test_depend")
