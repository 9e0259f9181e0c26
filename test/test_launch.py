"""The launch files, executed without ROS's launch packages: each file's own code runs against
recording stand-ins (launch_stubs.py), with the arguments a user would give, and what it would
start (nodes, parameters, remappings, lifecycle events, environment, included files) is checked
against the repository. test_launch_pipelines.py runs them for real where launch_testing is
installed."""

from __future__ import annotations

import re
import types
from pathlib import Path

import launch_stubs as stubs
import lifecycle_msgs.msg
import pytest
from param_files import read_params

from duse_ros.affect.settings import PARAMETERS as AFFECT_SETTINGS
from duse_ros.bridge.settings import PARAMETERS as BRIDGE_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = ROOT / "launch"
CONFIG_DIR = ROOT / "config"
LAUNCH_FILES = sorted(p.name for p in LAUNCH_DIR.glob("*.launch.py"))
SHARE = "<share:duse_ros>"
AFFECT_TOPICS = {"image_raw", "audio", "emotion_state"}  # affect_node's relative topics


def resolve(value, context: stubs.LaunchContext) -> str:
    """A substitution as launch would resolve it, with `<share:duse_ros>` for the package share."""
    if isinstance(value, str):
        return value
    if isinstance(value, stubs.LaunchConfiguration):
        return value.perform(context)
    if isinstance(value, stubs.FindPackageShare):
        return f"<share:{value.package}>"
    if isinstance(value, stubs.PathJoinSubstitution):
        return "/".join(resolve(part, context) for part in value.parts)
    if isinstance(value, (list, tuple)):
        return "".join(resolve(part, context) for part in value)
    raise AssertionError(f"cannot resolve {value!r}")


def local_path(resolved: str) -> Path:
    """<share:duse_ros>/config/x.yaml -> the repo's config/x.yaml (CMake installs both directories)."""
    assert resolved.startswith(SHARE), resolved
    return ROOT / resolved[len(SHARE) :].lstrip("/")


class Launch:
    """One launch file run with `given` arguments, its includes followed (sharing the context)."""

    def __init__(self, name: str, given: dict[str, str] | None = None, inherited: dict[str, str] | None = None):
        self.name = name
        self.module = stubs.load_launch_file(LAUNCH_DIR / name)
        stubs.LaunchConfiguration.created = []
        with stubs.stub_modules():
            self.description = self.module.generate_launch_description()
        self.declared = {
            e.args[0] if e.args else e.kwargs["name"]: e
            for e in self.description.entities
            if isinstance(e, stubs.KINDS["DeclareLaunchArgument"])
        }
        defaults = {
            name: resolve(d.kwargs.get("default_value", ""), stubs.LaunchContext({}))
            for name, d in self.declared.items()
        }
        # as launch does: declared defaults, unless the including file or the user set a value
        self.context = stubs.LaunchContext({**defaults, **(inherited or {}), **(given or {})})
        self.entities = list(stubs.walk(self.description.entities, self.context))
        self.asked_for = set(stubs.LaunchConfiguration.created)
        self.includes: list[tuple[str, dict[str, str], Launch]] = []
        for include in self.of_kind("IncludeLaunchDescription"):
            source = include.args[0]
            target = Path(resolve(source.args[0], self.context)).name
            passed = {k: resolve(v, self.context) for k, v in include.kwargs.get("launch_arguments", [])}
            self.includes.append((target, passed, Launch(target, passed, inherited=self.context.arguments)))
        if inherited is None:  # what a user gives must be an argument of this file or of one it includes
            for name in given or {}:
                assert name in self.accepted(), f"{self.name} takes no argument {name!r}"

    def accepted(self) -> set[str]:
        return set(self.declared).union(*(inc.accepted() for *_, inc in self.includes))

    def of_kind(self, kind: str) -> list:
        return [e for e in self.entities if type(e).__name__ == kind]

    def nodes(self, recursive: bool = True) -> list:
        own = self.of_kind("LifecycleNode") + self.of_kind("Node")
        return own + ([n for *_, inc in self.includes for n in inc.nodes()] if recursive else [])

    def node(self, executable: str):
        (node,) = [n for n in self.nodes() if n.executable == executable]
        return node

    def parameters(self, node) -> tuple[list[str], dict]:
        """(parameter files, overrides) a node is given."""
        files, overrides = [], {}
        for item in node.parameters:
            if isinstance(item, dict):
                overrides.update(item)
            else:
                files.append(self.resolve_in_tree(item))
        return files, overrides

    def resolve_in_tree(self, value) -> str:
        for launch in [self] + [inc for *_, inc in self.includes]:
            try:
                return resolve(value, launch.context)
            except KeyError:
                continue
        raise AssertionError(f"cannot resolve {value!r} in {self.name}")


def test_the_repo_has_the_expected_launch_files():
    assert {
        "affect_pipeline.launch.py",
        "video_pipeline.launch.py",
        "av_pipeline.launch.py",
        "full_stack.launch.py",
    } <= set(LAUNCH_FILES)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_argument_is_declared_with_a_description_in_the_same_file(name):
    launch = Launch(name)
    assert launch.asked_for, f"{name} reads no launch argument"
    assert launch.asked_for <= set(launch.declared), (
        f"{name}: undeclared {sorted(launch.asked_for - set(launch.declared))}"
    )
    for arg_name, declared in launch.declared.items():
        assert declared.kwargs.get("description", "").strip(), f"{name}: {arg_name} has no description (--show-args)"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_files_a_launch_file_names_exist(name):
    launch = Launch(name)
    for node in launch.nodes():
        files, _ = launch.parameters(node)
        for path in files:
            read_params(local_path(path))  # one '/**' entry: applies in any namespace
    for target, _, _ in launch.includes:
        assert (LAUNCH_DIR / target).is_file(), f"{name} includes missing {target}"


def _installed_programs() -> list[str]:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    programs = re.search(r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}\)", cmake, re.S)
    assert programs
    return programs.group(1).split()


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_node_executables_are_installed_programs(name):
    for node in Launch(name).nodes():
        assert node.package == "duse_ros"
        assert (ROOT / "scripts" / node.executable).is_file()
        assert f"scripts/{node.executable}" in _installed_programs()


@pytest.mark.parametrize("name", ["affect_pipeline.launch.py", "video_pipeline.launch.py", "av_pipeline.launch.py"])
def test_affect_node_is_a_lifecycle_node_whose_topics_follow_the_arguments(name):
    given = {
        "image_topic": "/camera/color/image_raw",
        "audio_topic": "/mic",
        "emotion_topic": "/emotions",
        "namespace": "robot1",
    }
    launch = Launch(name, given)
    node = launch.node("affect_node")
    assert type(node).__name__ == "LifecycleNode"
    remaps = {topic: launch.resolve_in_tree(target) for topic, target in node.remappings}
    # every relative topic can be moved; the compressed stream follows the image base topic
    assert remaps == {"image_raw": "/camera/color/image_raw", "audio": "/mic", "emotion_state": "/emotions"}
    assert set(remaps) == AFFECT_TOPICS
    assert launch.resolve_in_tree(node.namespace) == "robot1"
    defaults = Launch(name).node("affect_node")
    assert {t: Launch(name).resolve_in_tree(v) for t, v in defaults.remappings} == {t: t for t in AFFECT_TOPICS}


def test_parameter_arguments_override_the_config_only_when_given():
    launch = Launch("affect_pipeline.launch.py")
    files, overrides = launch.parameters(launch.node("affect_node"))
    assert files == [f"{SHARE}/config/duse_video.yaml"]
    assert overrides == {"use_sim_time": False, "autostart": False}  # launch drives the lifecycle
    given = {
        "model": "duse-tiny",
        "clip_weights": "/w.pt",
        "device": "cuda",
        "image_compressed": "true",
        "use_sim_time": "true",
    }
    launch = Launch("affect_pipeline.launch.py", given)
    _, overrides = launch.parameters(launch.node("affect_node"))
    assert overrides == {
        "model": "duse-tiny",
        "clip_weights": "/w.pt",
        "device": "cuda",
        "image_compressed": True,
        "use_sim_time": True,
        "autostart": False,
    }
    table = {spec.name: spec for spec in AFFECT_SETTINGS}
    for name, value in overrides.items():
        if name != "use_sim_time":
            assert name in table and type(value) is type(table[name].default), name
    with pytest.raises(ValueError, match="image_compressed"):
        Launch("affect_pipeline.launch.py", {"image_compressed": "yes"})


def _change_states(launch: Launch) -> list[int]:
    return [e.event.kwargs["transition_id"] for e in launch.of_kind("EmitEvent")]


def _handlers(launch: Launch) -> dict[tuple[str, str], object]:
    return {(h.kwargs.get("start_state"), h.kwargs.get("goal_state")): h for h in launch.of_kind("OnStateTransition")}


class LifecycleEvents:
    """Launch's event loop for one lifecycle node, as far as our handlers use it: each state
    transition goes to every registered OnStateTransition whose target, start and goal states
    match; a handler made with handle_once is unregistered after it handles one (launch's
    EventHandler.handle); OpaqueFunction entities run with the event in `context.locals`. The
    ChangeState requests the handlers emit are collected."""

    def __init__(self, launch: Launch):
        self.handlers = list(launch.of_kind("OnStateTransition"))
        self.requested: list[int] = []

    def transition(self, start: str, goal: str) -> list[int]:
        self.requested = []
        for handler in list(self.handlers):
            wanted = {"start_state": start, "goal_state": goal}
            if any(handler.kwargs.get(k) not in (None, v) for k, v in wanted.items()):
                continue
            if handler.kwargs.get("handle_once"):
                self.handlers.remove(handler)
            self._run(handler.entities, types.SimpleNamespace(start_state=start, goal_state=goal))
        return self.requested

    def _run(self, entities, event) -> None:
        for entity in entities:
            if type(entity).__name__ == "EmitEvent":
                self.requested.append(entity.event.kwargs["transition_id"])
            elif type(entity).__name__ == "OpaqueFunction":
                context = stubs.LaunchContext({})
                context.locals = types.SimpleNamespace(event=event)
                with stubs.stub_modules():
                    self._run(entity.function(context) or [], event)


def test_launch_configures_then_activates_once_unless_autostart_is_off():
    Transition = lifecycle_msgs.msg.Transition
    launch = Launch("affect_pipeline.launch.py")
    node = launch.node("affect_node")
    assert _change_states(launch) == [Transition.TRANSITION_CONFIGURE]
    events = LifecycleEvents(launch)
    assert {h.target_lifecycle_node for h in events.handlers} == {node}
    assert events.transition("configuring", "inactive") == [Transition.TRANSITION_ACTIVATE]
    assert events.transition("activating", "active") == []
    # The README's way to change a configure-time parameter: deactivate, cleanup, set, configure.
    # The node must stay inactive, so that `ros2 lifecycle set ... activate` is the user's to give.
    for start, goal in (("deactivating", "inactive"), ("cleaningup", "unconfigured"), ("configuring", "inactive")):
        assert events.transition(start, goal) == [], f"{start} -> {goal} triggered a lifecycle change"
    assert not Launch("affect_pipeline.launch.py", {"autostart": "false"}).of_kind("EmitEvent")
    assert ("configuring", None) not in _handlers(Launch("affect_pipeline.launch.py", {"autostart": "false"}))


def test_autostart_gives_up_when_launch_own_configure_fails():
    """A failed first configure is reported; a later configure by hand does not activate either."""
    events = LifecycleEvents(Launch("affect_pipeline.launch.py"))
    assert events.transition("configuring", "unconfigured") == []
    assert events.transition("configuring", "inactive") == []


@pytest.mark.parametrize(
    "step,start,goal", [("configure", "configuring", "unconfigured"), ("activate", "activating", "inactive")]
)
def test_a_failed_transition_is_reported_and_can_end_launch(step, start, goal):
    handler = _handlers(Launch("affect_pipeline.launch.py"))[(start, goal)]
    assert [type(e).__name__ for e in handler.entities] == ["LogInfo"]
    assert f"failed to {step}" in handler.entities[0].msg
    handler = _handlers(Launch("affect_pipeline.launch.py", {"exit_on_failure": "true"}))[(start, goal)]
    log, fail = handler.entities
    with pytest.raises(RuntimeError, match=f"affect_node failed to {step}"):  # launch exits 1 on it
        fail.function(stubs.LaunchContext({}))


def test_fast_dds_profile_for_raw_images_by_default_and_overridable():
    launch = Launch("affect_pipeline.launch.py")
    env = launch.node("affect_node").additional_env
    profile = env["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert profile == f"{SHARE}/config/fastdds_large_shm.xml" and local_path(profile).is_file()
    assert "<segment_size>8388608</segment_size>" in local_path(profile).read_text()
    assert Launch("affect_pipeline.launch.py", {"fastdds_profile": "/my/profile.xml"}).node(
        "affect_node"
    ).additional_env == {"FASTDDS_DEFAULT_PROFILES_FILE": "/my/profile.xml"}
    assert Launch("affect_pipeline.launch.py", {"fastdds_profile": ""}).node("affect_node").additional_env is None


@pytest.mark.parametrize(
    "wrapper,config", [("video_pipeline.launch.py", "duse_video.yaml"), ("av_pipeline.launch.py", "av_pipeline.yaml")]
)
def test_wrappers_pick_their_config_and_leave_the_model_to_it(wrapper, config):
    launch = Launch(wrapper)
    ((target, passed, _),) = launch.includes
    assert target == "affect_pipeline.launch.py" and set(passed) == {
        "config"
    }  # a model passed down would mask the file's
    files, overrides = launch.parameters(launch.node("affect_node"))
    assert files == [f"{SHARE}/config/{config}"] and "model" not in overrides


@pytest.mark.parametrize("pipeline", ["video", "av"])
def test_full_stack_declares_and_passes_every_pipeline_argument(pipeline):
    given = {"pipeline": pipeline, "model": "tiny-random-video", "use_sim_time": "true", "image_topic": "/cam"}
    launch = Launch("full_stack.launch.py", given)
    affect = Launch("affect_pipeline.launch.py")
    passed_through = set(affect.declared) - {"config"}
    assert passed_through <= set(launch.declared)
    for name in passed_through:
        assert resolve(launch.declared[name].kwargs["default_value"], stubs.LaunchContext({})) == resolve(
            affect.declared[name].kwargs["default_value"], stubs.LaunchContext({})
        ), name
    ((target, passed, _),) = launch.includes
    assert target == f"{pipeline}_pipeline.launch.py"
    assert set(passed) == passed_through and passed["image_topic"] == "/cam"
    _, overrides = launch.parameters(launch.node("affect_node"))
    assert overrides["model"] == "tiny-random-video" and overrides["use_sim_time"] is True
    bridge = launch.node("llm_bridge_node")
    files, bridge_overrides = launch.parameters(bridge)
    assert files == [f"{SHARE}/config/llm_bridge.yaml"] and bridge_overrides == {"use_sim_time": True}
    assert {t: launch.resolve_in_tree(v) for t, v in bridge.remappings} == {"emotion_state": "emotion_state"}
    assert launch.declared["pipeline"].kwargs["choices"] == ["video", "av"]


def test_bridge_arguments_name_bridge_parameters_and_override_only_when_given():
    module = Launch("full_stack.launch.py").module
    bridge_params = set(read_params(CONFIG_DIR / "llm_bridge.yaml"))
    assert set(module.BRIDGE_PARAMETERS.values()) <= bridge_params <= {p.name for p in BRIDGE_SETTINGS}
    launch = Launch("full_stack.launch.py", {"llm_model": "qwen", "language": "zh"})
    _, overrides = launch.parameters(launch.node("llm_bridge_node"))
    assert overrides == {"llm.model": "qwen", "language": "zh", "use_sim_time": False}


def test_cmake_installs_launch_and_config_into_the_package_share():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    installs = re.findall(r"install\(DIRECTORY([^)]*)DESTINATION share/\$\{PROJECT_NAME\}", cmake)
    assert any({"launch", "config"} <= set(words.split()) for words in installs), installs
