"""Recording stand-ins for the parts of ROS 2's `launch`/`launch_ros` API our launch files use, so
the launch files themselves can be executed (and their descriptions inspected) on a machine
without the launch packages. Each stand-in keeps its constructor arguments; substitutions keep
what they would resolve, and `LaunchConfiguration.perform` reads the arguments a test gives.
test_launch_pipelines.py runs the same files under the real launch stack where it is installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path


class Recorded:
    """Any launch action, event or event handler: its arguments, for inspection."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __getattr__(self, name):  # kwargs read as attributes: node.parameters, handler.entities ...
        try:
            return self.__dict__["kwargs"][name]
        except KeyError:
            raise AttributeError(name) from None


def _kind(name: str) -> type:
    return type(name, (Recorded,), {})


class LaunchConfiguration:
    created: list[str] = []  # every name a launch file asked for, whether performed or passed on

    def __init__(self, variable_name: str, default=None):
        self.name = variable_name
        LaunchConfiguration.created.append(variable_name)

    def perform(self, context: LaunchContext) -> str:
        if self.name not in context.arguments:
            raise KeyError(f"launch argument {self.name!r} was never given or declared")
        context.performed.add(self.name)
        return context.arguments[self.name]


class FindPackageShare:
    def __init__(self, package: str):
        self.package = package


class PathJoinSubstitution:
    def __init__(self, parts: list):
        self.parts = list(parts)


class LaunchDescription:
    def __init__(self, entities=()):
        self.entities = list(entities)


class LaunchContext:
    """The arguments a launch would have (declared defaults, then the given values)."""

    def __init__(self, arguments: dict[str, str]):
        self.arguments = dict(arguments)
        self.performed: set[str] = set()


NAMES = {
    "launch": ["LaunchDescription", "LaunchContext"],
    "launch.actions": [
        "DeclareLaunchArgument",
        "IncludeLaunchDescription",
        "OpaqueFunction",
        "RegisterEventHandler",
        "EmitEvent",
        "LogInfo",
        "SetEnvironmentVariable",
        "GroupAction",
    ],
    "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution"],
    "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
    "launch_ros.actions": ["Node", "LifecycleNode"],
    "launch_ros.substitutions": ["FindPackageShare"],
    "launch_ros.event_handlers": ["OnStateTransition"],
    "launch_ros.events.lifecycle": ["ChangeState"],
}
KINDS = {name: _kind(name) for names in NAMES.values() for name in names}
KINDS.update(
    {
        "LaunchConfiguration": LaunchConfiguration,
        "PathJoinSubstitution": PathJoinSubstitution,
        "FindPackageShare": FindPackageShare,
        "LaunchDescription": LaunchDescription,
        "LaunchContext": LaunchContext,
    }
)


@contextmanager
def stub_modules():
    """sys.modules holds the stand-ins (and only them) for the launch packages while active."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("launch", "launch_ros")}
    for k in saved:
        del sys.modules[k]
    parents = {"launch", "launch_ros", "launch_ros.events"}
    for module_name in sorted(set(NAMES) | parents):
        module = types.ModuleType(module_name)
        for name in NAMES.get(module_name, []):
            setattr(module, name, KINDS[name])
        sys.modules[module_name] = module
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ("launch", "launch_ros")]:
            del sys.modules[k]
        sys.modules.update(saved)


def load_launch_file(path: Path) -> types.ModuleType:
    with stub_modules():
        spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.replace('.', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def walk(entities, context: LaunchContext):
    """Every entity of a description, depth first: OpaqueFunctions at the top level run in
    `context` (as launch runs them while it starts); the entities of event handlers are listed
    but not run (they run only when their event comes)."""
    for entity in entities:
        yield entity
        if isinstance(entity, KINDS["OpaqueFunction"]):
            with stub_modules():
                produced = entity.function(context) or []
            yield from walk(produced, context)
        elif isinstance(entity, KINDS["RegisterEventHandler"]):
            handler = entity.args[0] if entity.args else entity.event_handler
            yield handler
            yield from handler.entities
