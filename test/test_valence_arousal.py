"""Valence and arousal derived from class probabilities (duse_ros/classes.py), the one table that
EmotionState and hri_msgs/Expression both use, and the hri expression names read back as classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from duse_ros.affect.hri import CLASSES_OF_EXPRESSION, EXPRESSIONS, class_of_expression, expression_of
from duse_ros.classes import CLASS_SETS, VALENCE_AROUSAL, valence_arousal

DFEW = list(CLASS_SETS["dfew"].classes)


def test_every_class_of_every_class_set_has_a_position_in_range():
    for class_set in CLASS_SETS.values():
        for c in class_set.classes:
            v, a = VALENCE_AROUSAL[c]
            assert -1.0 <= v <= 1.0 and -1.0 <= a <= 1.0


def test_valence_arousal_is_the_expectation_of_the_class_positions():
    one_hot = np.eye(len(DFEW))[DFEW.index("happiness")]
    assert valence_arousal(DFEW, one_hot) == pytest.approx(VALENCE_AROUSAL["happiness"])
    mix = np.zeros(len(DFEW))
    mix[DFEW.index("happiness")] = mix[DFEW.index("sadness")] = 0.5
    expected = [(VALENCE_AROUSAL["happiness"][i] + VALENCE_AROUSAL["sadness"][i]) / 2 for i in (0, 1)]
    assert valence_arousal(DFEW, mix) == pytest.approx(expected)
    # The same distribution in another class order gives the same numbers.
    order = list(reversed(DFEW))
    assert valence_arousal(order, mix[::-1]) == pytest.approx(expected)


def test_no_distribution_or_an_unplaced_class_gives_nan_not_zero():
    # (0, 0) would read as a calm neutral face; NaN says there is no value.
    assert all(math.isnan(x) for x in valence_arousal(DFEW, []))
    assert all(math.isnan(x) for x in valence_arousal(["neutral", "boredom"], [0.5, 0.5]))
    with pytest.raises(ValueError, match="3 probabilities for 7 classes"):
        valence_arousal(DFEW, [0.2, 0.3, 0.5])


def test_expression_uses_the_same_table():
    probs = np.full(len(DFEW), 1 / len(DFEW))
    _, _, v, a = expression_of(DFEW, probs)
    assert (v, a) == pytest.approx(valence_arousal(DFEW, probs))


def test_hri_names_map_back_to_our_classes_and_the_rest_is_unmappable():
    # Every name we publish reads back as a class that publishes it (anxiety shares "scared" with fear).
    for ours, hri in EXPRESSIONS.items():
        back = class_of_expression(hri)
        assert back is not None and EXPRESSIONS[back] == hri, (ours, hri)
    assert class_of_expression("scared") == "fear"
    assert class_of_expression(" Happy ") == "happiness"
    assert class_of_expression("furious") == "anger"
    for name in ("bored", "confused", "pleading", "asleep", ""):
        assert class_of_expression(name) is None
    assert set(CLASSES_OF_EXPRESSION.values()) <= set(VALENCE_AROUSAL)


def test_the_stable_state_carries_the_mean_affect_of_its_recent_readings_and_prompts_say_it():
    from duse_ros.bridge.prompts import build_prompt, load_templates, template_file_for
    from duse_ros.bridge.stabiliser import EmotionSample, Stabiliser, StabiliserConfig
    from duse_ros.timebase import NS

    stabiliser = Stabiliser(StabiliserConfig(dwell_s=0.5))
    changed = None
    for i, v in enumerate([0.2, 0.4, 0.6]):
        got = stabiliser.observe(EmotionSample(i * NS // 4, "happiness", 0.9, True, valence=v, arousal=-v))
        changed = got or changed
    assert changed.valence == pytest.approx(0.4) and changed.arousal == pytest.approx(-0.4)
    en = load_templates(template_file_for("en", ""))
    system = build_prompt(en, changed, None, 100).system
    assert "Valence +0.40" in system and "arousal -0.40" in system
    # Readings without affect (older publishers, NaN) leave it unknown, and the prompt says so.
    plain = Stabiliser(StabiliserConfig(dwell_s=0.0)).observe(EmotionSample(0, "sadness", 0.9, True))
    assert math.isnan(plain.valence) and "Valence unknown" in build_prompt(en, plain, None, 100).system
    with pytest.raises(ValueError, match="valence"):
        EmotionSample(0, "sadness", 0.9, True, valence=1.5)
