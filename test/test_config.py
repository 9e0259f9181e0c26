"""The shipped parameter files agree with the node's code defaults."""
from pathlib import Path

import yaml

from duse_ros.nodes.affect_node import DEFAULTS

CONFIG = Path(__file__).resolve().parents[1] / "config"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _params(name: str) -> dict:
    doc = yaml.safe_load((CONFIG / name).read_text())
    (node_key, body), = doc.items()
    return _flatten(body["ros__parameters"])


def test_duse_video_yaml_equals_code_defaults():
    assert _params("duse_video.yaml") == DEFAULTS


def test_av_yaml_sets_only_known_parameters_with_the_right_types():
    params = _params("av_pipeline.yaml")
    for key, value in params.items():
        assert key in DEFAULTS, f"av_pipeline.yaml sets unknown parameter {key!r}"
        assert type(value) is type(DEFAULTS[key]), f"{key}: {type(value).__name__} vs {type(DEFAULTS[key]).__name__}"
