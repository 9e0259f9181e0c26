"""The bridge follows one person among several faces, with hysteresis, and says how many are present."""

from __future__ import annotations

import pytest

from duse_ros.bridge.core import Bridge
from duse_ros.bridge.people import PersonSelector, Sighting, face_score
from duse_ros.bridge.prompts import load_templates, template_file_for
from duse_ros.bridge.settings import BridgeSettings
from duse_ros.bridge.stabiliser import EmotionSample
from duse_ros.timebase import NS

STEP = NS // 2  # one window per 0.5 s


def feed(selector: PersonSelector, k: int, scores: dict[str, float]) -> set[str]:
    """One window's readings; returns the faces whose readings passed."""
    return {f for f, s in scores.items() if selector.observe(Sighting(f, k * STEP, s))}


def test_scores_follow_the_rule():
    image = (640, 480)
    big, small = (0, 0, 200, 200), (300, 200, 40, 40)
    assert face_score("largest", big, image) > face_score("largest", small, image)
    centred, corner = (300, 220, 40, 40), (0, 0, 200, 200)
    assert face_score("most_central", centred, image) > 0.95 > face_score("most_central", corner, image)
    assert face_score("largest", big, (0, 0)) == 0.0  # size unknown


def test_the_largest_face_is_followed_and_a_flicker_does_not_switch():
    sel = PersonSelector("largest", margin=0.25, switch_s=1.5)
    assert feed(sel, 0, {"f1": 0.10, "f2": 0.05}) == {"f1"}
    # f2 grows past f1 by more than the margin on two windows, then falls back: no switch.
    assert feed(sel, 1, {"f1": 0.10, "f2": 0.14}) == {"f1"}
    assert feed(sel, 2, {"f1": 0.10, "f2": 0.14}) == {"f1"}
    assert feed(sel, 3, {"f1": 0.10, "f2": 0.11}) == {"f1"}, "inside the margin: no challenge"
    assert feed(sel, 4, {"f1": 0.10, "f2": 0.14}) == {"f1"}, "the 1.5 s count started over"
    # Now it stays ahead for 1.5 s of stamps (4 windows): the bridge switches, once.
    for k in (5, 6):
        assert feed(sel, k, {"f1": 0.10, "f2": 0.14}) == {"f1"}
    # f1's reading of this window came before the switch; from f2's reading on, f2 is followed.
    assert feed(sel, 7, {"f1": 0.10, "f2": 0.14}) == {"f1", "f2"}
    assert sel.followed == "f2" and sel.switches == 1 and sel.present() == 2
    # Back to f1 needs the same: f1 only slightly larger again does nothing.
    assert feed(sel, 8, {"f1": 0.15, "f2": 0.14}) == {"f2"}


def test_a_followed_face_that_leaves_is_replaced_at_once_and_present_counts_faces():
    sel = PersonSelector("most_central", forget_s=1.0)
    feed(sel, 0, {"f1": 0.9, "f2": 0.2, "f3": 0.1})
    assert sel.followed == "f1" and sel.present() == 3
    for k in range(1, 5):  # f1 leaves the picture; f2 and f3 stay
        passed = feed(sel, k, {"f2": 0.2, "f3": 0.1})
    assert sel.followed == "f2" and passed == {"f2"} and sel.present() == 2


def test_a_named_face_id_is_followed_and_readings_without_a_face_pass():
    sel = PersonSelector("abc")
    assert feed(sel, 0, {"abc": 0.01, "xyz": 0.9}) == {"abc"}
    assert sel.observe(Sighting("", 0, 0.0)), "full-frame or no-face readings are about everyone"
    with pytest.raises(ValueError):
        PersonSelector("")


def test_the_bridge_speaks_about_the_followed_person_and_how_many_are_present():
    settings = BridgeSettings.from_parameters({"dwell_s": 0.5, "person_switch_s": 10.0})
    bridge = Bridge(settings, load_templates(template_file_for("en", "")), clock=lambda: 0.0)
    events = []
    for k in range(4):
        stamp = k * STEP
        # The larger face looks happy, the smaller one angry: only happiness reaches the prompt.
        for face, label, score in (("f1", "happiness", 0.2), ("f2", "anger", 0.05)):
            event = bridge.on_reading(EmotionSample(stamp, label, 0.9, True), Sighting(face, stamp, score))
            if event is not None:
                events.append(event)
    assert [e.state.emotion for e in events] == ["happiness"]
    assert "Faces in view: 2" in events[0].prompt.system
    assert bridge.other_people_readings == 4
