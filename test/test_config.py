"""The shipped parameter files agree with the node's code defaults."""

from pathlib import Path

import pytest
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


@pytest.mark.parametrize("name", ["duse_video.yaml", "av_pipeline.yaml"])
def test_a_config_header_names_the_model_the_file_sets(name):
    """duse_video.yaml's header once said "the DuSE video model" above model: fer2013-minixception."""
    text = (CONFIG / name).read_text()
    header = "\n".join(line for line in text.split("/**:")[0].splitlines() if line.startswith("#"))
    model = read_params(CONFIG / name)["model"]
    assert model in header, f"{name}'s header does not name its model {model!r}"
    first_line = header.splitlines()[0]
    assert "DuSE" not in first_line or model.startswith("duse"), first_line
