"""The shipped parameter files agree with the node's code defaults."""

from pathlib import Path

from param_files import read_params

from duse_ros.nodes.affect_node import DEFAULTS

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_duse_video_yaml_equals_code_defaults():
    assert read_params(CONFIG / "duse_video.yaml") == DEFAULTS


def test_av_yaml_sets_only_known_parameters_with_the_right_types():
    params = read_params(CONFIG / "av_pipeline.yaml")
    for key, value in params.items():
        assert key in DEFAULTS, f"av_pipeline.yaml sets unknown parameter {key!r}"
        assert type(value) is type(DEFAULTS[key]), f"{key}: {type(value).__name__} vs {type(DEFAULTS[key]).__name__}"
