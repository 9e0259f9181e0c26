"""Face detection (real Haar cascade on a real photo), tracking, crops and thread safety."""

import threading
import time

import cv2
import numpy as np
import pytest

from duse_ros.affect.boxes import Detection, crop, iou, square_crop_box
from duse_ros.affect.faces import FaceDetector, FaceKeyframes, HaarFaceDetector, MultiFaceTrack
from duse_ros.affect.windowing import Window
from duse_ros.io.samples import load_sample_face
from duse_ros.timebase import NS

KEY = NS // 5  # keyframes at 5 Hz

# duse_ros/data/astronaut.jpg: NASA's portrait of Eileen Collins (public domain; see the README
# there). Her face is at about x 174-272, y 64-162 in the 512x512 photo.
ASTRO_FACE_CENTRE = (223, 113)


@pytest.fixture(scope="module")
def astronaut():
    img = load_sample_face()
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    return img


@pytest.fixture(scope="module")
def haar():
    return HaarFaceDetector()


def centre(b):
    return (b[0] + b[2] / 2, b[1] + b[3] / 2)


def near(p, q, tol):
    return abs(p[0] - q[0]) <= tol and abs(p[1] - q[1]) <= tol


# ------------------------------------------------------------------------ real detector
def test_haar_finds_the_real_face(haar, astronaut):
    assert isinstance(haar, FaceDetector)
    boxes = haar.detect(astronaut)
    assert len(boxes) == 1
    ((x, y, w, h),) = boxes
    assert near(centre(boxes[0]), ASTRO_FACE_CENTRE, 12)
    assert 80 <= w <= 120 and 80 <= h <= 120


def test_haar_boxes_in_full_resolution_coordinates(haar, astronaut):
    """Detection runs at 320 px wide; boxes come back in the 1024x768 frame's own pixels."""
    canvas = np.full((768, 1024, 3), 90, np.uint8)
    canvas[200:712, 400:912] = astronaut
    boxes = haar.detect(canvas)
    assert len(boxes) == 1
    assert near(centre(boxes[0]), (400 + ASTRO_FACE_CENTRE[0], 200 + ASTRO_FACE_CENTRE[1]), 15)
    # Grey input works too.
    grey = cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)
    assert len(haar.detect(grey)) == 1


def test_haar_no_face(haar, astronaut):
    rng = np.random.default_rng(0)
    faceless = astronaut.copy()
    faceless[:260] = faceless[:260].mean(axis=(0, 1)).astype(np.uint8)  # head and shoulders painted over
    upside_down = np.ascontiguousarray(np.flipud(astronaut))  # a frontal detector must not fire
    for img in (
        faceless,
        upside_down,
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.zeros((480, 640, 3), np.uint8),
    ):
        assert haar.detect(img) == []


def test_haar_largest_face_chosen_by_track(haar, astronaut):
    """Two real faces (the photo's face at two scales): the track picks the larger one."""
    face = astronaut[30:230, 130:330]
    img = np.full((480, 640, 3), 120, np.uint8)
    img[90:390, 20:320] = cv2.resize(face, (300, 300))  # big, on the left
    img[200:350, 420:570] = cv2.resize(face, (150, 150))  # small, on the right
    boxes = haar.detect(img)
    assert len(boxes) == 2
    track = MultiFaceTrack(haar)
    (b,) = track.update(0, img).values()
    assert b is not None and b[0] < 320 and b[2] > 100
    assert b == max(boxes, key=lambda q: q[2] * q[3])


def test_haar_bad_cascade():
    with pytest.raises(FileNotFoundError):
        HaarFaceDetector(cascade="no_such_cascade.xml")


# ------------------------------------------------------------------------ track logic (test double)
class ScriptedDetector:
    """Returns boxes from a script keyed by the frame's marker pixel."""

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def detect(self, rgb):
        self.calls += 1
        return list(self.script.get(int(rgb[0, 0, 0]), []))


def img(key=0, h=480, w=640):
    f = np.zeros((h, w, 3), np.uint8)
    f[0, 0, 0] = key
    return f


def window_for(stamps, frames=None, h=480, w=640):
    frames = frames or [img(0, h, w) for _ in stamps]
    return Window(index=0, stamps_ns=list(stamps), frames=frames, start_ns=stamps[0], end_ns=stamps[-1])


def test_interpolation_hold_and_expiry():
    tr = FaceKeyframes(max_age_s=0.5, smoothing=0.0)
    assert tr.box_at(0) is None  # empty track
    tr.record(0, (100, 100, 50, 50))
    tr.record(int(0.2 * NS), (200, 120, 70, 70))
    assert tr.box_at(0) == (100, 100, 50, 50)
    assert tr.box_at(int(0.1 * NS)) == (150, 110, 60, 60)  # halfway
    assert tr.box_at(int(0.05 * NS)) == (125, 105, 55, 55)  # a quarter
    # Held after the last keyframe (and before the first) up to max_age_s, then gone.
    assert tr.box_at(int(0.7 * NS)) == (200, 120, 70, 70)
    assert tr.box_at(int(0.71 * NS)) is None
    assert tr.box_at(-int(0.5 * NS)) == (100, 100, 50, 50)
    assert tr.box_at(-int(0.51 * NS)) is None


def test_miss_keyframe_means_no_face_near_it():
    tr = FaceKeyframes(max_age_s=0.5, smoothing=0.0)
    tr.record(0, (100, 100, 50, 50))
    tr.record(int(0.2 * NS), None)  # detector ran, no face
    assert tr.box_at(int(0.05 * NS)) == (100, 100, 50, 50)  # nearer to the hit: held
    assert tr.box_at(int(0.15 * NS)) is None  # nearer to the miss
    assert tr.box_at(int(0.3 * NS)) is None


def test_no_interpolation_across_long_holes():
    tr = FaceKeyframes(max_age_s=0.5, smoothing=0.0)
    tr.record(0, (100, 100, 50, 50))
    tr.record(int(1.5 * NS), (300, 100, 50, 50))
    assert tr.box_at(int(0.3 * NS)) == (100, 100, 50, 50)  # held from the nearer, not blended
    assert tr.box_at(int(0.75 * NS)) is None  # 0.75 s from either: nothing


def test_face_choice_by_score_and_persistence_resists_a_larger_flicker():
    """One face: the one seen steadily is read, not the largest box. A larger false positive on
    every third keyframe (the Haar failure on the bundled portrait) never takes the reading; a
    steady newcomer does not steal it while the followed face stays, and takes over once it goes."""
    face, flicker, newcomer = (100, 100, 60, 60), (300, 200, 200, 200), (400, 100, 66, 66)
    det = ScriptedDetector(
        {
            1: [Detection(face, 0.99)],
            2: [Detection(flicker, 0.95), Detection(face, 0.99)],
            3: [Detection(newcomer, 0.999), Detection(face, 0.97)],
            4: [Detection(newcomer, 0.999)],
        }
    )
    tr = MultiFaceTrack(det, max_faces=1, smoothing=0.0)
    read = [list(tr.update(k * KEY, img(2 if k % 3 == 2 else 1)).values()) for k in range(12)]
    assert read == [[face]] * 12
    assert tr.counters["faces_not_read"] == 4  # the flicker, counted
    read = [list(tr.update((12 + k) * KEY, img(3)).values()) for k in range(6)]
    assert read == [[face]] * 6
    assert list(tr.update(18 * KEY, img(4)).values()) == [newcomer]
    # Without history: the higher score wins, then the larger box (unscored detectors score 1).
    tr2 = MultiFaceTrack(ScriptedDetector({1: [Detection(flicker, 0.8), Detection(face, 0.99)]}), smoothing=0.0)
    assert list(tr2.update(0, img(1)).values()) == [face]
    tr3 = MultiFaceTrack(ScriptedDetector({1: [face, flicker]}), smoothing=0.0)
    assert list(tr3.update(0, img(1)).values()) == [flicker]


def test_small_faces_skipped_and_a_crowd_bounded_by_max_faces():
    crowd = [Detection((10 + 70 * (i % 9), 10 + 70 * (i // 9), 50, 50), 0.9 + 0.001 * i) for i in range(40)]
    tiny = [Detection((600, 400, 20, 20), 0.999)]
    tr = MultiFaceTrack(ScriptedDetector({1: crowd + tiny}), max_faces=3, smoothing=0.0, min_face_size=24)
    found = tr.update(0, img(1))
    assert len(found) == 3
    # The most salient: on a first keyframe, the highest scores.
    assert sorted(found.values()) == sorted(d.box for d in crowd[-3:])
    assert tr.counters["faces_too_small"] == 1
    assert tr.counters["faces_over_cap"] == 40 - 32 and tr.counters["faces_not_read"] == 32 - 3
    assert [f for f, _ in tr.read_faces()] == list(found)


def test_smoothing_blends_consecutive_boxes_of_one_face():
    tr = FaceKeyframes(smoothing=0.5)
    tr.record(0, (100, 100, 60, 60))
    assert tr.record(int(0.2 * NS), (110, 100, 60, 60)) == (105, 100, 60, 60)
    # A box that does not overlap is not this face's motion: no blending.
    assert tr.record(int(0.4 * NS), (400, 300, 60, 60)) == (400, 300, 60, 60)


def test_backwards_stamp_resets_track():
    det = ScriptedDetector({1: [(100, 100, 50, 50)], 2: [(300, 300, 50, 50)]})
    tr = MultiFaceTrack(det, smoothing=0.0)
    for k in range(10):
        tr.update(10 * NS + k * NS // 5, img(1))
    found = tr.update(0, img(2))  # the bag looped
    assert tr.counters["track_resets"] == 1 and tr.face_ids() == list(found)
    assert list(found.values()) == [(300, 300, 50, 50)]
    assert tr.crop_boxes([0], [(480, 640)], tr.face_ids()[0])[0] == [(288, 288, 75, 75)]


def test_history_bounded():
    tr = FaceKeyframes(history_s=5.0)
    for k in range(2000):  # 400 s at 5 Hz
        tr.record(k * NS // 5, (100, 100, 50, 50))
    assert tr.num_keyframes <= 26


def test_crops_for_window_face_found_and_not():
    det = ScriptedDetector({1: [(100, 100, 40, 40)], 0: []})
    tr = MultiFaceTrack(det, margin=0.25, max_age_s=0.5, smoothing=0.0)
    stamps = [int(k * 0.125 * NS) for k in range(16)]  # 1.875 s window
    tr.update(int(0.0 * NS), img(1))
    tr.update(int(0.4 * NS), img(1))
    tr.update(int(0.8 * NS), img(0))
    tr.update(int(1.2 * NS), img(0))
    tr.update(int(1.6 * NS), img(0))
    # Frames 0..4 (<= 0.6 s, nearer the hits) have a box: 5 of 16 < half: no face, no crops.
    crops, found = tr.crops_for_window(window_for(stamps))
    assert (crops, found) == ([], False)
    assert tr.counters["windows_without_face"] == 1
    crops, found = tr.crops_for_window(window_for(stamps), min_face_fraction=0.25)
    assert found and len(crops) == 16
    # Every crop: square 60x60 (40 * 1.5) at (90, 90); frames without a box take the nearest's.
    assert all(c.shape == (60, 60, 3) for c in crops)


def test_crops_are_views_and_resizable():
    det = ScriptedDetector({1: [(100, 100, 40, 40)]})
    tr = MultiFaceTrack(det, smoothing=0.0)
    frames = [img(1) for _ in range(16)]
    frames[3][110, 110] = 255
    stamps = [int(k * 0.125 * NS) for k in range(16)]
    for s in stamps[::4]:
        tr.update(s, frames[0])
    win = window_for(stamps, frames)
    crops, found = tr.crops_for_window(win)
    assert found and all(np.shares_memory(c, f) for c, f in zip(crops, frames))
    assert np.array_equal(crops[3], frames[3][90:150, 90:150])
    crops, _ = tr.crops_for_window(win, size=112)
    assert all(c.shape == (112, 112, 3) for c in crops)


@pytest.mark.parametrize(
    "box,shape,expect",
    [
        ((100, 100, 40, 40), (480, 640), (90, 90, 60, 60)),  # margin 0.25 each side: 1.5x, centred
        ((0, 0, 40, 40), (480, 640), (0, 0, 60, 60)),  # top-left corner: shifted inside
        ((610, 450, 30, 30), (480, 640), (595, 435, 45, 45)),  # bottom-right corner: shifted inside
        ((100, 50, 40, 80), (480, 640), (60, 30, 120, 120)),  # tall box: square on the longer side
        ((0, 0, 400, 460), (480, 640), (0, 0, 480, 480)),  # larger than the image: clamped
    ],
)
def test_square_crop_box_margins_and_borders(box, shape, expect):
    got = square_crop_box(box, shape, margin=0.25)
    assert got == expect
    x, y, s, s2 = got
    assert s == s2 and x >= 0 and y >= 0 and x + s <= shape[1] and y + s <= shape[0]
    # The crop holds the whole box (as far as the image does).
    bx, by, bw, bh = box
    assert x <= bx and y <= by and x + s >= min(bx + bw, shape[1]) and y + s >= min(by + bh, shape[0])


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 10, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_thread_safety_smoke():
    """update() from a worker thread (a slow detector) while windows ask for crops."""

    class SlowDetector:
        def detect(self, rgb):
            time.sleep(0.002)
            k = int(rgb[0, 0, 0])
            return [(100 + k, 100, 50, 50)]

    tr = MultiFaceTrack(SlowDetector(), smoothing=0.5)
    latest = [0]
    stop = threading.Event()
    errors = []
    updates = [0]

    def worker():
        try:
            k = 0
            while not stop.is_set():
                tr.update(k * NS // 5, img(k % 50))
                latest[0] = k * NS // 5
                k += 1
                updates[0] = k
        except Exception as e:  # pragma: no cover
            errors.append(e)

    th = threading.Thread(target=worker)
    th.start()
    deadline = time.monotonic() + 30  # generous: only a hung worker gets near it
    while updates[0] < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    found = 0
    for _ in range(400):  # reads while the worker keeps updating
        stamps = [latest[0] - int((15 - j) * 0.05 * NS) for j in range(16)]
        crops, ok = tr.crops_for_window(window_for(stamps))
        if ok:
            found += 1
            assert len(crops) == 16 and all(c.shape[0] == c.shape[1] for c in crops)
    stop.set()
    th.join()
    assert not errors and found > 10 and updates[0] > 3


def test_aligned_track_carries_the_roll_into_each_window_crop_box():
    """face_align: each crop box carries the face's roll (from the eye landmarks, interpolated
    between keyframes like the box) and `crop` cuts it upright; without align, plain boxes."""
    level = np.array([[40, 60], [60, 60], [50, 70], [42, 80], [58, 80]], np.float32)  # eyes level
    tilted = level.copy()
    tilted[1, 1] -= 20  # the left eye 20 px higher over 20 px: the face turned 45 degrees
    det = ScriptedDetector(
        {1: [Detection((30, 40, 40, 50), 0.99, level)], 2: [Detection((30, 40, 40, 50), 0.99, tilted)]}
    )
    stamps = [int(k * 0.05 * NS) for k in range(16)]
    for align, expect in ((True, (0.0, 22.5, 45.0)), (False, None)):
        tr = MultiFaceTrack(det, smoothing=0.0, align=align)
        tr.update(0, img(1))
        tr.update(int(0.4 * NS), img(2))
        tr.update(int(0.8 * NS), img(2))
        (face,) = tr.faces_for_window(window_for(stamps))
        if expect is None:
            assert all(len(b) == 4 for b in face.crop_boxes)
            continue
        rolls = [b[4] for b in face.crop_boxes]
        assert (rolls[0], rolls[4], rolls[8]) == expect  # 0 s, 0.2 s (halfway), 0.4 s
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[60:62, 20:80] = 255  # a horizontal bar through the crop's centre
        square = face.crop_boxes[8]
        upright, plain = crop(frame, square, 64), crop(frame, square[:4], 64)
        rows_plain = np.nonzero(plain.max(axis=(1, 2)))[0]
        rows_turned = np.nonzero(upright.max(axis=(1, 2)))[0]
        assert np.ptp(rows_plain) < 6 < np.ptp(rows_turned), "the bar is turned by the face's roll"
