"""Bridge (ROS-free): prompt events on change, heartbeat and staleness; utterance age; log text."""

import json
import re

import pytest

from duse_ros.bridge.core import REASON_CHANGE, REASON_HEARTBEAT, Bridge, describe
from duse_ros.bridge.prompts import load_templates, template_file_for
from duse_ros.bridge.settings import BridgeSettings
from duse_ros.bridge.stabiliser import REASON_NO_READINGS, UNKNOWN, EmotionSample
from duse_ros.timebase import NS


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_bridge(**params) -> tuple[Bridge, FakeClock]:
    settings = BridgeSettings.from_parameters({"dwell_s": 0.5, "heartbeat_s": 10.0, "stale_s": 5.0, **params})
    clock = FakeClock()
    return Bridge(settings, load_templates(template_file_for(settings.language, "")), clock), clock


def steady(bridge: Bridge, label: str, start_s: float, count: int = 5, untrained: bool = False) -> list:
    events = []
    for i in range(count):
        event = bridge.on_reading(EmotionSample(int((start_s + 0.25 * i) * NS), label, 0.9, True, untrained, "camera"))
        if event is not None:
            events.append(event)
    return events


def test_a_change_gives_one_event_with_prompt_text():
    bridge, _ = make_bridge()
    (event,) = steady(bridge, "sadness", 0.0)
    assert event.reason == REASON_CHANGE
    assert event.state.emotion == "sadness" and event.state.frame_id == "camera"
    assert "sadness" in event.prompt.system and event.prompt.language == "en"
    assert bridge.prompts == {REASON_CHANGE: 1}


def test_heartbeat_repeats_the_state_after_the_period_without_a_change():
    bridge, clock = make_bridge()
    assert bridge.tick() is None  # nothing stable yet: no heartbeat
    steady(bridge, "neutral", 0.0)
    clock.now += 9.9
    bridge.on_reading(EmotionSample(int(2 * NS), "neutral", 0.9, True))  # keeps the node fresh
    assert bridge.tick() is None
    clock.now += 0.1
    event = bridge.tick()
    assert (event.reason, event.state.emotion) == (REASON_HEARTBEAT, "neutral")
    assert bridge.tick() is None  # the heartbeat restarted the period
    assert bridge.prompts == {REASON_CHANGE: 1, REASON_HEARTBEAT: 1}


def test_heartbeat_off_and_stale_off():
    bridge, clock = make_bridge(heartbeat_s=0.0, stale_s=0.0)
    steady(bridge, "neutral", 0.0)
    clock.now += 1e6
    assert bridge.tick() is None


def test_no_readings_for_stale_s_makes_the_state_unknown_once():
    bridge, clock = make_bridge(heartbeat_s=0.0)
    steady(bridge, "happiness", 0.0)
    clock.now += 4.9
    assert bridge.tick() is None
    clock.now += 0.1
    event = bridge.tick()
    assert (event.reason, event.state.emotion, event.state.unknown_reason) == (
        REASON_CHANGE,
        UNKNOWN,
        REASON_NO_READINGS,
    )
    assert "no emotion readings" in event.prompt.system
    assert bridge.tick() is None


def test_utterance_is_quoted_while_fresh_and_dropped_when_old():
    bridge, clock = make_bridge(utterance_max_age_s=20.0, heartbeat_s=5.0, stale_s=0.0)
    bridge.on_utterance('I lost my keys "again"')
    (event,) = steady(bridge, "sadness", 0.0)
    assert json.dumps('I lost my keys "again"') in event.prompt.user
    clock.now += 20.5
    event = bridge.tick()
    assert event.reason == REASON_HEARTBEAT and "keys" not in event.prompt.user


def test_untrained_readings_are_flagged_in_the_log_line_and_prompt():
    bridge, _ = make_bridge()
    (event,) = steady(bridge, "anger", 0.0, untrained=True)
    assert "UNTRAINED" in describe(event, full=False)
    assert bridge.templates.untrained_note in event.prompt.system


def test_describe_is_one_line_or_the_full_prompt():
    bridge, _ = make_bridge()
    (event,) = steady(bridge, "happiness", 0.0)
    line = describe(event, full=False)
    assert "\n" not in line
    assert re.fullmatch(r"prompt \[change\] happiness 90%, held 0\.5 s, trend: happiness", line)
    full = describe(event, full=True)
    assert full.startswith(line) and event.prompt.system in full and event.prompt.user in full


@pytest.mark.parametrize("heartbeat_s, stale_s, period", [(10.0, 5.0, 0.5), (1.0, 0.0, 0.25), (0.0, 0.0, 0.5)])
def test_tick_period_is_fine_enough(heartbeat_s, stale_s, period):
    bridge, _ = make_bridge(heartbeat_s=heartbeat_s, stale_s=stale_s)
    assert bridge.tick_period_s == period
