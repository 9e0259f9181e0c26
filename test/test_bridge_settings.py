"""The node's parameters: config/llm_bridge.yaml and the code agree, and bad values are named."""

from pathlib import Path

import pytest
from param_files import read_params

from duse_ros.bridge.settings import DEFAULTS, PARAMETERS, BridgeSettings

YAML_PATH = Path(__file__).resolve().parents[1] / "config" / "llm_bridge.yaml"


def test_yaml_defaults_equal_code_defaults():
    params = read_params(YAML_PATH)
    assert params.keys() == DEFAULTS.keys()
    for name, default in DEFAULTS.items():
        assert (params[name], type(params[name])) == (default, type(default)), name


def test_every_parameter_is_described_once():
    names = [p.name for p in PARAMETERS]
    assert len(names) == len(set(names))
    assert all(p.description for p in PARAMETERS)


def test_defaults_make_valid_settings_without_llm_calls():
    settings = BridgeSettings.from_parameters({})
    assert not settings.llm.enabled
    assert settings.stabiliser.min_confidence == DEFAULTS["min_confidence"]
    assert settings.llm.api_key_env == DEFAULTS["llm.api_key_env"]


def test_an_integer_is_taken_for_a_float_parameter():
    settings = BridgeSettings.from_parameters({"dwell_s": 2, "llm.timeout_s": 3})
    assert settings.stabiliser.dwell_s == 2.0 and isinstance(settings.llm.timeout_s, float)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"dwell_s": True}, "'dwell_s' must be float"),
        ({"trend_length": 2.5}, "'trend_length' must be int"),
        ({"use_smoothed": 1}, "'use_smoothed' must be bool"),
        ({"log_prompts": "loud"}, "'log_prompts' must be one of"),
        ({"emotion_reliability": "sometimes"}, "'emotion_reliability' must be one of"),
        ({"untrained_readings": "trust"}, "'untrained_readings' must be one of"),
        ({"heartbeat_s": -1.0}, "'heartbeat_s' must be >= 0"),
        ({"prompt_topic": ""}, "'prompt_topic' must not be empty"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"llm.base_url": "ftp://example.org/v1"}, "llm.base_url"),
        ({"llm.timeout_s": 0.0}, "llm.timeout_s"),
        ({"llm.max_retries": -1}, "llm.max_retries"),
        ({"no_such_parameter": 1}, "unknown parameters"),
    ],
)
def test_bad_values_are_value_errors_naming_the_parameter(values, match):
    with pytest.raises(ValueError, match=match):
        BridgeSettings.from_parameters(values)
