"""Face identities over synthetic box sequences (BoxTracker), and several faces per window
(MultiFaceTrack): crossing paths, a face leaving and coming back, detector misses."""

from __future__ import annotations

import numpy as np
import pytest

from duse_ros.affect.faces import MultiFaceTrack
from duse_ros.affect.tracking import BoxTracker
from duse_ros.affect.windowing import Window
from duse_ros.timebase import NS

KEY_NS = NS // 5  # keyframes at 5 Hz of stream time


def box_at(x: float, y: float, side: int = 60):
    return (int(round(x)), int(round(y)), side, side)


def test_two_faces_crossing_paths_keep_their_ids():
    """A walks right, B walks left, on nearly the same row: their boxes overlap at the crossing
    (IoU > 0.5 there), so overlap alone would swap them; their motion keeps them apart."""
    tracker = BoxTracker(lifetime_s=1.0)
    ids_a, ids_b = [], []
    overlaps = []
    for k in range(30):
        a, b = box_at(100 + 12 * k, 200), box_at(460 - 12 * k, 206)
        overlaps.append(_iou(a, b))
        # The detector's order is not the faces' order: shuffle it.
        boxes = [a, b] if k % 3 else [b, a]
        ids, dead = tracker.update(k * KEY_NS, boxes)
        got = dict(zip(boxes, ids))
        ids_a.append(got[a])
        ids_b.append(got[b])
        assert dead == []
    assert max(overlaps) > 0.5, "the paths must really cross"
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]
    assert tracker.births == 2 and tracker.deaths == 0


def _iou(a, b):
    from duse_ros.affect.boxes import iou

    return iou(a, b)


def test_detector_misses_shorter_than_the_lifetime_keep_the_id():
    tracker = BoxTracker(lifetime_s=1.0)
    seen = []
    for k in range(20):
        missed = k in (5, 6, 7, 12)  # 0.6 s without a detection, then one more miss
        ids, _ = tracker.update(k * KEY_NS, [] if missed else [box_at(100 + 5 * k, 100)])
        seen += ids
    assert set(seen) == {1} and tracker.births == 1 and tracker.deaths == 0


def test_a_face_that_leaves_and_comes_back_gets_a_new_id_never_an_old_one():
    tracker = BoxTracker(lifetime_s=1.0)
    first, _ = tracker.update(0, [box_at(100, 100)])
    for k in range(1, 4):
        tracker.update(k * KEY_NS, [box_at(100, 100)])
    # Gone for 2 s (longer than the lifetime), then back at the same place.
    deaths = []
    for k in range(4, 14):
        deaths += tracker.update(k * KEY_NS, [])[1]
    assert deaths == first and tracker.live_ids == []
    back, _ = tracker.update(14 * KEY_NS, [box_at(100, 100)])
    assert back != first and back == [2]
    # A reset (a new stream) forgets the faces but never hands an id out twice.
    tracker.reset()
    again, _ = tracker.update(0, [box_at(100, 100)])
    assert again == [3] and tracker.births == 3 and tracker.deaths == 2


def test_a_jump_across_the_picture_is_a_new_face_not_the_old_one_moving():
    tracker = BoxTracker(lifetime_s=1.0)
    a, _ = tracker.update(0, [box_at(50, 100)])
    b, _ = tracker.update(KEY_NS, [box_at(500, 100)])
    assert a != b and sorted(tracker.live_ids) == sorted(a + b)
    # A box of a very different size at the same place is another face too (one behind the other).
    c, _ = tracker.update(2 * KEY_NS, [box_at(50, 100, side=150), box_at(500, 100)])
    assert c[1] == b[0] and c[0] not in a + b


def test_lifetime_must_be_positive():
    with pytest.raises(ValueError, match="lifetime_s"):
        BoxTracker(lifetime_s=0)


# ------------------------------------------------------------------------ several faces per window
def window(start_ns: int, frames: int = 16, period_ns: int = NS // 8, shape=(480, 640, 3)) -> Window:
    stamps = [start_ns + i * period_ns for i in range(frames)]
    image = np.zeros(shape, np.uint8)
    return Window(index=0, stamps_ns=stamps, frames=[image] * frames, start_ns=stamps[0], end_ns=stamps[-1])


def test_each_face_of_a_window_gets_its_own_boxes_and_a_late_one_waits_for_a_full_window():
    track = MultiFaceTrack(None, max_faces=4, smoothing=0.0)
    for k in range(25):  # 5 s of keyframes; C appears at 2 s
        boxes = [box_at(40 + k, 100), box_at(400, 120, side=90)]
        if k >= 10:
            boxes.append(box_at(250, 300, side=50))
        track.record(k * KEY_NS, boxes)
    assert track.counters["tracks"] == 3 and track.counters["track_births"] == 3
    # Ids in the order the faces were first chosen (largest first): B 1, A 2, C 3.
    early = track.faces_for_window(window(int(1.4 * NS)))  # 1.4 .. 3.275 s: C was born at 2.0 s
    assert [f.face_id for f in early] == [1, 2], "largest first; C has no full window yet"
    late = track.faces_for_window(window(int(1.6 * NS)))  # C's boxes are held 0.5 s before its birth
    assert [f.face_id for f in late] == [1, 2, 3]
    by_id = {f.face_id: f for f in late}
    # A's box at the window's last frame (3.475 s: between keyframes 17 and 18, interpolated).
    assert by_id[2].face_box == (57, 100, 60, 60)  # x = 40 + 17.375, rounded
    assert by_id[1].face_box == (400, 120, 90, 90) and by_id[3].face_box == (250, 300, 50, 50)
    assert all(len(f.crop_boxes) == 16 for f in late)
    # Crop boxes are squares around each face's own box.
    x, y, s, _ = by_id[3].crop_boxes[-1]
    assert x <= 250 and y <= 300 and x + s >= 300 and y + s >= 350
    # max_faces caps a window, the largest kept.
    capped = MultiFaceTrack(None, max_faces=1, smoothing=0.0)
    for k in range(25):
        capped.record(k * KEY_NS, [box_at(40, 100), box_at(400, 120, side=90)])
    assert [f.face_box for f in capped.faces_for_window(window(int(2.5 * NS)))] == [(400, 120, 90, 90)]


def test_a_face_missed_on_too_many_keyframes_drops_out_of_the_window_but_keeps_its_id():
    track = MultiFaceTrack(None, max_faces=2, smoothing=0.0, lifetime_s=2.0)
    for k in range(30):
        boxes = [box_at(100, 100)]
        if not 12 <= k < 20:  # B unseen from 2.4 s to 4.0 s: shorter than its 2 s lifetime
            boxes.append(box_at(400, 100))
        track.record(k * KEY_NS, boxes)
    ids = [f.face_id for f in track.faces_for_window(window(int(2.2 * NS)))]  # 2.2 .. 4.075 s
    assert ids == [1], "B had a box on too few of this window's frames"
    ids = [f.face_id for f in track.faces_for_window(window(int(3.8 * NS)))]
    assert sorted(ids) == [1, 2], "B came back under its own id"
    assert track.counters["track_births"] == 2 and track.counters["track_deaths"] == 0


def test_stamps_going_back_reset_the_faces_and_ids_go_on():
    track = MultiFaceTrack(None, max_faces=2)
    for k in range(10):
        track.record(100 * NS + k * KEY_NS, [box_at(100, 100)])
    assert track.record(0, [box_at(300, 300)]) == {2: (300, 300, 60, 60)}
    assert track.counters["track_resets"] == 1 and track.face_ids() == [2]


def test_a_detector_stall_is_not_a_miss():
    """No keyframe for 3 s (the detector fell behind): the face found again in place keeps its id."""
    tracker = BoxTracker(lifetime_s=1.0)
    first, _ = tracker.update(0, [box_at(100, 100)])
    again, dead = tracker.update(3 * NS, [box_at(104, 100)])
    assert again == first and dead == [] and tracker.births == 1
