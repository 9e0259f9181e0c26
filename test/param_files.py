"""Reading ROS 2 parameter files the way the nodes see them, for tests that compare them with code."""

from pathlib import Path

import yaml


def flatten(tree: dict, prefix: str = "") -> dict:
    """ROS params-file nesting (`llm: {base_url: ...}`) to dotted names (`llm.base_url`)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_params(path: Path) -> dict:
    """The dotted parameters of a file's single node entry. The entry must be `/**`, so the file
    applies whatever namespace or name a launch file gives the node."""
    doc = yaml.safe_load(Path(path).read_text())
    assert list(doc) == ["/**"], f"{path}: use one '/**:' entry so namespaced nodes still match, not {list(doc)}"
    return flatten(doc["/**"]["ros__parameters"])
