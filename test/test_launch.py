"""The launch files, checked without ROS's launch packages: each is parsed with ast, and what it
names (launch arguments, files, executables, topics, parameters) is checked against the repo.
test_launch_pipelines.py runs them for real where launch_testing is installed."""
from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from param_files import read_params

from duse_ros.bridge.settings import PARAMETERS as BRIDGE_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = ROOT / "launch"
CONFIG_DIR = ROOT / "config"
LAUNCH_FILES = sorted(p.name for p in LAUNCH_DIR.glob("*.launch.py"))
UNKNOWN = object()  # a value only known at launch time (a substitution)


@dataclass
class Declared:
    default: object
    choices: object


@dataclass
class NodeAction:
    executable: object
    package: object
    remappings: list[tuple[object, object]]  # (node's topic, launch argument that renames it)


@dataclass
class Include:
    targets: list[str]  # launch file names it may include (one per choice of a LaunchConfiguration part)
    arguments: list[object]


@dataclass
class LaunchFile:
    name: str
    constants: dict[str, ast.expr] = field(default_factory=dict)  # module-level NAME = literal
    assigned: dict[str, ast.expr] = field(default_factory=dict)  # NAME = expr anywhere (include paths)
    declared: dict[str, Declared] = field(default_factory=dict)
    used: set[object] = field(default_factory=set)
    nodes: list[NodeAction] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    strings: set[str] = field(default_factory=set)


def _call_name(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")


class _Scanner(ast.NodeVisitor):
    """Visits every call with the bindings of the comprehensions around it: a name bound by
    `for name, (default, text) in ARGUMENTS.items()` resolves once per entry of ARGUMENTS."""

    def __init__(self, constants: dict[str, ast.expr]):
        self.constants = constants
        self.bindings: list[list[dict[str, ast.expr]]] = [[{}]]  # per comprehension depth: every binding
        self.calls: list[tuple[ast.Call, list[dict[str, ast.expr]]]] = []

    def _elements(self, iterable: ast.expr) -> list[ast.expr]:
        method = None
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) and not iterable.args:
            method, iterable = iterable.func.attr, iterable.func.value
        source = self.constants.get(iterable.id) if isinstance(iterable, ast.Name) else None
        if isinstance(source, ast.Dict) and method in (None, "keys", "values", "items"):
            if method == "values":
                return list(source.values)
            if method == "items":
                return [ast.Tuple(elts=[k, v]) for k, v in zip(source.keys, source.values)]
            return list(source.keys)
        if isinstance(source, (ast.Tuple, ast.List)) and method is None:
            return list(source.elts)
        raise AssertionError(f"line {iterable.lineno}: a comprehension in a launch file must iterate over a "
                             "module-level literal, so its launch argument names can be checked")

    def _comprehension(self, node: ast.AST) -> None:
        envs = self.bindings[-1]
        for generator in node.generators:
            envs = [env | _bind(generator.target, item) for env in envs for item in self._elements(generator.iter)]
        self.bindings.append(envs)
        self.generic_visit(node)
        self.bindings.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Call(self, node: ast.Call) -> None:
        self.calls.append((node, self.bindings[-1]))
        self.generic_visit(node)


def _bind(target: ast.expr, value: ast.expr) -> dict[str, ast.expr]:
    if isinstance(target, ast.Name):
        return {target.id: value}
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
        return {k: v for t, e in zip(target.elts, value.elts) for k, v in _bind(t, e).items()}
    return {}


def _value(expr: ast.expr | None, env: dict[str, ast.expr], constants: dict[str, ast.expr]) -> object:
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.Name) and expr.id in env:
        return _value(env[expr.id], {}, constants)
    if isinstance(expr, ast.Name) and expr.id in constants:
        return _value(constants[expr.id], {}, constants)
    if isinstance(expr, (ast.List, ast.Tuple)):
        return [_value(e, env, constants) for e in expr.elts]
    return UNKNOWN


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | None:
    return call.args[position] if len(call.args) > position else _keyword(call, name)


@cache
def parse(name: str) -> LaunchFile:
    tree = ast.parse((LAUNCH_DIR / name).read_text(), filename=name)
    lf = LaunchFile(name)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            lf.constants[stmt.targets[0].id] = stmt.value
    lf.assigned = {n.targets[0].id: n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}
    aliases = {"LaunchConfiguration"} | {alias for alias, value in lf.assigned.items()  # arg = LaunchConfiguration
                                         if isinstance(value, ast.Name) and value.id == "LaunchConfiguration"}
    lf.strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    def config_name(expr: ast.expr | None, env: dict) -> object:
        is_config = isinstance(expr, ast.Call) and _call_name(expr) in aliases
        return _value(_argument(expr, 0, "variable_name"), env, lf.constants) if is_config else UNKNOWN

    scanner = _Scanner(lf.constants)
    scanner.visit(tree)
    includes = []  # resolved last: a file picked by a launch argument needs that argument's choices
    for call, envs in scanner.calls:
        kind = _call_name(call)
        for env in envs:
            if kind == "DeclareLaunchArgument":
                lf.declared[_value(_argument(call, 0, "name"), env, lf.constants)] = Declared(
                    _value(_keyword(call, "default_value"), env, lf.constants),
                    _value(_keyword(call, "choices"), env, lf.constants))
            elif kind in aliases:
                lf.used.add(config_name(call, env))
            elif kind == "Node":
                remaps = _keyword(call, "remappings")
                lf.nodes.append(NodeAction(
                    _value(_keyword(call, "executable"), env, lf.constants),
                    _value(_keyword(call, "package"), env, lf.constants),
                    [(_value(pair.elts[0], env, lf.constants), config_name(pair.elts[1], env))
                     for pair in (remaps.elts if isinstance(remaps, ast.List) else [])]))
            elif kind == "IncludeLaunchDescription":
                includes.append((call, env))
    lf.includes = [_include(call, env, lf, config_name) for call, env in includes]
    return lf


def _include(call: ast.Call, env: dict, lf: LaunchFile, config_name) -> Include:
    source = _argument(call, 0, "launch_description_source")
    assert isinstance(source, ast.Call), f"{lf.name}: include the launch file through a *LaunchDescriptionSource"
    location = _argument(source, 0, "launch_file_path")
    if isinstance(location, ast.Name):
        location = lf.assigned.get(location.id, location)
    if isinstance(location, ast.Call):  # PathJoinSubstitution([...])
        location = location.args[0]
    parts = location.elts if isinstance(location, ast.List) else [location]
    last = _value(parts[-1], env, lf.constants)
    assert isinstance(last, str) and last.endswith(".launch.py"), f"{lf.name}: cannot tell which file is included"
    prefix = config_name(parts[-2], env) if len(parts) > 1 else UNKNOWN
    if prefix is UNKNOWN:
        targets = [last]
    else:  # <share>/launch/ + LaunchConfiguration(prefix) + suffix: one file per allowed value
        choices = lf.declared[prefix].choices
        assert isinstance(choices, list), f"{lf.name}: launch argument {prefix!r} picks a file, so it needs choices"
        targets = [f"{choice}{last}" for choice in choices]
    arguments = _keyword(call, "launch_arguments")
    if isinstance(arguments, ast.Call) and isinstance(arguments.func, ast.Attribute):  # {...}.items()
        arguments = arguments.func.value
    names = [_value(k, env, lf.constants) for k in arguments.keys] if isinstance(arguments, ast.Dict) else []
    return Include(targets, names)


def declared_through_includes(name: str) -> set[object]:
    """Launch arguments a file accepts: its own and those of the files it includes."""
    lf = parse(name)
    return set(lf.declared).union(*(declared_through_includes(t) for inc in lf.includes for t in inc.targets))


def _topics_in_source(path: Path) -> set[str]:
    """Topic names given as literals to create_subscription/create_*publisher/_subscribe."""
    calls = (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call))
    return {c.args[1].value for c in calls
            if _call_name(c) in ("create_subscription", "create_publisher", "create_lifecycle_publisher", "_subscribe")
            and len(c.args) > 1 and isinstance(c.args[1], ast.Constant)}


NODE_TOPICS = {
    "affect_node": _topics_in_source(ROOT / "duse_ros" / "nodes" / "affect_node.py"),
    "llm_bridge_node": {p.default for p in BRIDGE_SETTINGS if p.name.endswith("_topic")},
}
all_nodes = [(f, i) for f in LAUNCH_FILES for i in range(len(parse(f).nodes))]


def test_the_repo_has_the_expected_launch_files():
    assert {"affect_pipeline.launch.py", "video_pipeline.launch.py", "av_pipeline.launch.py",
            "full_stack.launch.py"} <= set(LAUNCH_FILES)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_launch_configuration_is_declared_in_the_same_file(name):
    lf = parse(name)
    assert UNKNOWN not in lf.used, f"{name}: a LaunchConfiguration name is neither a literal nor from a literal"
    assert UNKNOWN not in lf.declared, f"{name}: a DeclareLaunchArgument name is neither a literal nor from a literal"
    assert lf.used, f"{name}: reads no launch argument (the scan found nothing)"
    assert lf.used <= set(lf.declared), f"{name}: undeclared {sorted(lf.used - set(lf.declared))}"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_files_named_in_a_launch_file_exist(name):
    lf = parse(name)
    configs = {s for s in lf.strings if re.fullmatch(r"[\w.-]+\.yaml", s)}
    launches = {t for inc in lf.includes for t in inc.targets}
    assert configs or launches, f"{name}: names no file (the scan found nothing)"
    assert not [c for c in configs if not (CONFIG_DIR / c).is_file()], f"{name}: missing config files"
    assert not [f for f in launches if not (LAUNCH_DIR / f).is_file()], f"{name}: missing launch files"
    for config in configs:
        read_params(CONFIG_DIR / config)  # one '/**' entry: applies in any namespace


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_include_arguments_are_declared_by_the_included_file(name):
    for inc in parse(name).includes:
        for target in inc.targets:
            missing = set(inc.arguments) - declared_through_includes(target)
            assert not missing, f"{name} passes {sorted(missing, key=str)} to {target}, which does not declare them"


def test_full_stack_can_include_every_pipeline():
    (include,) = parse("full_stack.launch.py").includes
    assert include.targets == ["video_pipeline.launch.py", "av_pipeline.launch.py"]


@pytest.mark.parametrize("name,index", all_nodes)
def test_node_executables_are_installed_programs(name, index):
    node = parse(name).nodes[index]
    cmake = (ROOT / "CMakeLists.txt").read_text()
    programs = re.search(r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}\)", cmake, re.S)
    assert node.package == "duse_ros"
    assert (ROOT / "scripts" / node.executable).is_file()
    assert programs and f"scripts/{node.executable}" in programs.group(1).split()


@pytest.mark.parametrize("name,index", all_nodes)
def test_remappings_rename_the_node_topics_and_default_to_them(name, index):
    lf = parse(name)
    node = lf.nodes[index]
    topics = NODE_TOPICS[node.executable]
    for topic, argument in node.remappings:
        assert topic in topics, f"{name}: remaps {topic!r}, which {node.executable} does not use ({sorted(topics)})"
        assert lf.declared[argument].default == topic, f"{name}: {argument} must default to {topic!r}: no remap"
    if node.executable == "affect_node":  # every relative topic of the node can be moved from the command line
        assert {t for t, _ in node.remappings} == {t for t in topics if not t.startswith("/")}
        assert {t for t, _ in node.remappings} == {"image_raw", "image_raw/compressed", "audio", "emotion_state"}


def _literal(name: str, constant: str) -> object:
    return ast.literal_eval(parse(name).constants[constant])


def test_affect_launch_arguments_name_affect_node_parameters():
    overridden = _literal("affect_pipeline.launch.py", "PARAMETER_ARGUMENTS")
    assert set(overridden) == {"model", "clip_weights", "device"}
    assert set(overridden) <= set(read_params(CONFIG_DIR / "duse_video.yaml"))
    for argument in overridden:  # empty: the config file's value stands
        assert parse("affect_pipeline.launch.py").declared[argument].default == ""


def test_bridge_launch_arguments_name_bridge_parameters():
    overridden = _literal("full_stack.launch.py", "BRIDGE_PARAMETERS")
    assert set(overridden.values()) <= set(read_params(CONFIG_DIR / "llm_bridge.yaml"))
    for argument in overridden:
        assert parse("full_stack.launch.py").declared[argument].default == ""


def test_wrappers_leave_the_model_to_their_config_file():
    # A model passed down by a wrapper would mask the model in the config file it picks.
    for wrapper in ("video_pipeline.launch.py", "av_pipeline.launch.py"):
        assert "model" not in itertools.chain.from_iterable(i.arguments for i in parse(wrapper).includes)


def test_cmake_installs_launch_and_config_into_the_package_share():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    installs = re.findall(r"install\(DIRECTORY([^)]*)DESTINATION share/\$\{PROJECT_NAME\}", cmake)
    assert any({"launch", "config"} <= set(words.split()) for words in installs), installs
