"""Stabilisation on scripted EmotionState sequences: flicker, steady, fade to no-face, hysteresis."""

import pytest

from duse_ros.bridge.stabiliser import (
    REASON_LOW_CONFIDENCE,
    REASON_NO_FACE,
    REASON_NO_READINGS,
    REASON_UNTRAINED,
    UNKNOWN,
    EmotionSample,
    Stabiliser,
    StabiliserConfig,
)
from duse_ros.timebase import NS

STEP_S = 0.25  # one reading per 250 ms of stream time
T0_NS = 1_700_000_000 * NS


def reading(i: int, label: str, confidence: float = 0.8, **kw) -> EmotionSample:
    if label == "no_face":
        return EmotionSample(T0_NS + int(i * STEP_S * NS), "no_face", 0.0, has_reading=False, **kw)
    return EmotionSample(T0_NS + int(i * STEP_S * NS), label, confidence, has_reading=True, **kw)


def feed(stab: Stabiliser, readings) -> list:
    """(index, state) for every reading that changed the stable state."""
    changes = []
    for i, r in enumerate(readings):
        state = stab.observe(r)
        if state is not None:
            changes.append((i, state))
    return changes


def config(**kw) -> StabiliserConfig:
    return StabiliserConfig(**{"min_confidence": 0.4, "hysteresis": 0.1, "dwell_s": 1.0, **kw})


def test_steady_emotion_gives_one_change_after_the_dwell():
    stab = Stabiliser(config())
    changes = feed(stab, [reading(i, "happiness", 0.7 + 0.01 * (i % 3)) for i in range(40)])
    assert len(changes) == 1
    index, state = changes[0]
    assert index == 4  # readings 0..4 span exactly 1.0 s of stamps
    assert state.emotion == "happiness" and state.unknown_reason == ""
    assert state.since_ns == T0_NS and state.duration_s == pytest.approx(1.0)
    assert state.confidence == pytest.approx((0.7 + 0.71 + 0.72 + 0.7 + 0.71) / 5)
    # Later readings extend the duration without another change.
    assert stab.state.duration_s == pytest.approx(39 * STEP_S)


def test_flicker_between_two_labels_never_produces_a_change():
    stab = Stabiliser(config())
    assert feed(stab, [reading(i, "happiness" if i % 2 else "sadness", 0.9) for i in range(200)]) == []
    assert stab.state is None


def test_flicker_after_a_stable_state_keeps_that_state():
    stab = Stabiliser(config())
    steady = [reading(i, "neutral") for i in range(8)]
    flicker = [reading(i, "anger" if i % 3 == 0 else "neutral", 0.95) for i in range(8, 200)]
    changes = feed(stab, steady + flicker)
    assert [s.emotion for _, s in changes] == ["neutral"]
    assert stab.state.emotion == "neutral"


def test_fade_to_no_face_gives_one_unknown_change():
    stab = Stabiliser(config())
    steady = [reading(i, "happiness", 0.85) for i in range(8)]
    fading = [reading(8 + i, "happiness", c) for i, c in enumerate((0.7, 0.6, 0.5, 0.45))]  # still >= min
    unsure = [reading(12 + i, "happiness", 0.3) for i in range(2)]  # below min
    gone = [reading(14 + i, "no_face") for i in range(12)]
    changes = feed(stab, steady + fading + unsure + gone)
    assert [s.emotion for _, s in changes] == ["happiness", UNKNOWN]
    index, unknown = changes[1]
    # The unsure readings and the no-face ones form one unknown stretch; 1 s after it began.
    assert index == 12 + 4
    assert unknown.unknown_reason == REASON_NO_FACE  # the latest cause
    assert unknown.confidence == 0.0
    assert unknown.trend == ("happiness", UNKNOWN)


def test_low_confidence_alone_is_unknown_not_a_guess():
    stab = Stabiliser(config())
    changes = feed(stab, [reading(i, "fear", 0.2) for i in range(10)])
    assert [(s.emotion, s.unknown_reason) for _, s in changes] == [(UNKNOWN, REASON_LOW_CONFIDENCE)]


def test_hysteresis_band_cannot_unseat_or_seat_a_state():
    stab = Stabiliser(config())
    # 0.45 is above min_confidence but below min_confidence + hysteresis: not enough to start a state.
    assert feed(stab, [reading(i, "sadness", 0.45) for i in range(10)]) == []
    feed(stab, [reading(i, "happiness", 0.8) for i in range(10, 16)])
    assert stab.state.emotion == "happiness"
    # A challenger in the band holds for long: still happiness.
    assert feed(stab, [reading(i, "sadness", 0.45) for i in range(16, 40)]) == []
    # The state itself holds with the same band confidence, and it resets a real challenger.
    mixed = [reading(i, "sadness", 0.6) if i % 4 else reading(i, "happiness", 0.45) for i in range(40, 81)]
    assert feed(stab, mixed) == []
    # A challenger above the band for the dwell time wins.
    changes = feed(stab, [reading(i, "sadness", 0.6) for i in range(81, 91)])
    assert [(i, s.emotion) for i, s in changes] == [(4, "sadness")]


def test_untrained_readings_are_marked_or_ignored():
    marked = Stabiliser(config())
    ((_, state),) = feed(marked, [reading(i, "surprise", untrained=True) for i in range(6)])
    assert state.emotion == "surprise" and state.untrained
    ignored = Stabiliser(config(untrained_as_unknown=True))
    ((_, state),) = feed(ignored, [reading(i, "surprise", untrained=True) for i in range(6)])
    assert (state.emotion, state.unknown_reason) == (UNKNOWN, REASON_UNTRAINED)


def test_gap_in_stamps_restarts_dwell_and_duration():
    stab = Stabiliser(config(max_gap_s=1.0))
    before_gap = [reading(i, "anger") for i in range(3)]  # 0.5 s of anger
    after_gap = [reading(i, "anger") for i in range(20, 23)]  # 4.5 s later, 0.5 s more
    assert feed(stab, before_gap + after_gap) == []  # never 1 s without a break
    assert stab.gaps == 1
    feed(stab, [reading(i, "anger") for i in range(23, 30)])
    assert stab.state.emotion == "anger"
    feed(stab, [reading(i, "anger") for i in range(60, 62)])
    assert stab.state.duration_s == pytest.approx(STEP_S)  # restarted at reading 60


def test_stamps_going_backwards_are_counted_and_restart_the_duration():
    stab = Stabiliser(config())
    feed(stab, [reading(i, "neutral") for i in range(20)])
    assert stab.state.duration_s == pytest.approx(19 * STEP_S)
    assert feed(stab, [reading(i, "neutral") for i in range(0, 3)]) == []  # a looping bag
    assert stab.stamps_backwards == 1
    assert stab.state.emotion == "neutral"
    assert stab.state.duration_s == pytest.approx(2 * STEP_S)


def test_expire_makes_the_state_unknown_once():
    stab = Stabiliser(config())
    feed(stab, [reading(i, "happiness") for i in range(6)])
    state = stab.expire()
    assert (state.emotion, state.unknown_reason) == (UNKNOWN, REASON_NO_READINGS)
    assert stab.expire() is None
    # Readings coming back: a new state after the dwell, as usual.
    ((_, back),) = feed(stab, [reading(i, "happiness") for i in range(10, 16)])
    assert back.emotion == "happiness"
    assert back.trend == ("happiness", UNKNOWN, "happiness")


def test_trend_keeps_the_last_states():
    stab = Stabiliser(config(trend_length=3, dwell_s=0.0))
    for i, label in enumerate(["anger", "sadness", "neutral", "happiness"]):
        stab.observe(reading(i, label))
    assert stab.state.trend == ("sadness", "neutral", "happiness")


def test_confidence_is_the_mean_of_the_last_dwell_period():
    stab = Stabiliser(config())
    feed(stab, [reading(i, "happiness", 0.9) for i in range(10)])
    feed(stab, [reading(i, "happiness", 0.5) for i in range(10, 15)])  # the last 1 s: five readings
    assert stab.state.confidence == pytest.approx(0.5)


@pytest.mark.parametrize(
    "field, value",
    [("min_confidence", 1.5), ("hysteresis", 0.7), ("dwell_s", -1.0), ("max_gap_s", 0.0), ("trend_length", 0)],
)
def test_bad_config_is_a_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        StabiliserConfig(**{field: value})


@pytest.mark.parametrize("confidence", [float("nan"), -0.1, 1.5])
def test_bad_reading_is_a_value_error(confidence):
    with pytest.raises(ValueError, match="confidence"):
        EmotionSample(T0_NS, "happiness", confidence, has_reading=True)


def test_unknown_from_start_up_lasts_from_the_first_reading_not_from_stamp_zero():
    """Regression: the start-up UNKNOWN (no readings yet) began at stamp 0, and no-face readings
    extending it showed durations of decades ("held 1796219671.8 s")."""
    stab = Stabiliser(config())
    start = stab.expire()
    assert (start.emotion, start.duration_s) == (UNKNOWN, 0.0)
    feed(stab, [reading(i, "no_face") for i in range(3)])  # no face: still UNKNOWN
    assert stab.state.emotion == UNKNOWN
    assert stab.state.since_ns == reading(0, "no_face").stamp_ns
    assert stab.state.duration_s == pytest.approx(2 * STEP_S)
