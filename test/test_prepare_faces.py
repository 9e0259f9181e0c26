"""training/prepare_faces.py on a tiny video set: face crops from the project's detector, the
audio taken out of the videos, cached and resumable, and read back by the training loader."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from duse_ros.affect.faces import HaarFaceDetector
from duse_ros.io.clip_lists import read_clip_list
from duse_ros.models import build_model
from training import prepare_faces
from training.datasets import VideoClipDataset, read_wav
from training.layouts import resolve_layout

av = pytest.importorskip("av", reason="PyAV writes the test videos and reads their audio")
logging.getLogger().setLevel(logging.ERROR)
FACE = Path(__file__).resolve().parents[1] / "duse_ros" / "data" / "astronaut.jpg"
RATE, TONE, FPS, FRAMES = 16000, 440.0, 8, 16


def _write_video(path: Path, frames: list[np.ndarray], tone: float | None) -> None:
    """An mpeg4 video (RGB frames at 8 fps) with, when `tone` is given, 2 s of a mono AAC tone."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=FPS)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=RATE, layout="mono") if tone else None
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            t = np.arange(2 * RATE) / RATE
            wave = (0.5 * np.sin(2 * np.pi * tone * t)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
            chunk.sample_rate = RATE
            for packet in audio.encode(chunk):
                container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)


@pytest.fixture(scope="module")
def video_set(tmp_path_factory) -> Path:
    """Generic layout, one fold: a clip with a face moving 7 px a frame (with sound) and a clip
    of noise without a face (silent video)."""
    root = tmp_path_factory.mktemp("videos")
    (root / "clips").mkdir()
    face = cv2.resize(cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB), (200, 200))
    rng = np.random.default_rng(0)
    moving = []
    for i in range(FRAMES):
        canvas = np.full((240, 400, 3), 90, np.uint8)
        x = 10 + 7 * i
        canvas[20:220, x : x + 200] = face
        moving.append(canvas)
    _write_video(root / "clips" / "face.mp4", moving, TONE)
    _write_video(root / "clips" / "noise.mp4", [rng.integers(0, 255, (240, 400, 3), np.uint8)] * FRAMES, None)
    (root / "set_1").mkdir()
    (root / "set_1" / "train.txt").write_text("clips/face.mp4 1\n")
    (root / "set_1" / "test.txt").write_text("clips/noise.mp4 2\n")
    return root


LAYOUT = resolve_layout({"layout": "generic", "folds": 1})


def test_crops_follow_the_face_and_the_audio_comes_out_of_the_video(video_set, tmp_path):
    data = tmp_path / "set"
    shutil.copytree(video_set, data)
    counts = prepare_faces.prepare(data, LAYOUT, progress=False, size=96)
    assert counts == {"clips": 2, "written": 2, "cached": 0, "fallback": 1, "no_audio": 1}
    folder = data / "faces" / "clips" / "face.mp4"
    crops = sorted(folder.glob("*.jpg"))
    assert len(crops) == FRAMES
    detector = HaarFaceDetector(detect_width=0)
    for path in crops:  # the face moved 7 px a frame: every crop followed it
        crop = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert crop.shape == (96, 96, 3)
        found = detector.detect(crop)
        assert found, f"{path.name}: no face in the crop"
        x, _, w, _ = max(found, key=lambda b: b[2] * b[3])
        assert w > 96 / 3 and abs(x + w / 2 - 48) < 96 / 10, (path.name, found)  # large and centred
    samples = read_wav(folder.with_name("face.mp4.wav"), RATE)
    assert abs(samples.size - 2 * RATE) < RATE // 4
    spectrum = np.abs(np.fft.rfft(samples[2000:30000]))
    assert abs(np.argmax(spectrum) * RATE / 28000 - TONE) < 3
    manifest = [json.loads(line) for line in (data / "faces" / "faces.jsonl").read_text().splitlines()]
    by_clip = {Path(r["clip"]).name: r for r in manifest}
    assert by_clip["face.mp4"]["with_face"] == FRAMES and not by_clip["face.mp4"]["fallback"]
    assert by_clip["noise.mp4"]["fallback"] and by_clip["noise.mp4"]["audio_s"] is None

    # The training loader reads the crops and their audio in place of the videos.
    entries = read_clip_list(data / "set_1" / "train.txt", data / "faces", class_names=list("abcdefg"))
    spec = build_model("tiny-random-av").input_spec
    item = VideoClipDataset(entries, spec, 7, train=False, fps=FPS, span_s=None, audio_s=2.0)[0]
    assert item["video"].shape == (16, 3, spec.image_size, spec.image_size) and item["audio"].shape == (2 * RATE,)


def test_finished_clips_are_cached_and_an_interrupted_clip_is_redone(video_set, tmp_path):
    data = tmp_path / "set"
    shutil.copytree(video_set, data)
    calls = []

    def counting_detector():
        detector = prepare_faces.default_detector()
        original = detector.detect
        detector.detect = lambda rgb: calls.append(1) or original(rgb)
        return detector

    prepare_faces.prepare(data, LAYOUT, progress=False, size=64, detector_factory=counting_detector)
    assert len(calls) == 2 * FRAMES
    again = prepare_faces.prepare(data, LAYOUT, progress=False, size=64, detector_factory=counting_detector)
    assert again["written"] == 0 and again["cached"] == 2 and len(calls) == 2 * FRAMES  # nothing decoded twice
    # A crash mid-clip leaves only a .partial folder: the clip is redone, the finished one kept.
    folder = data / "faces" / "clips" / "face.mp4"
    folder.rename(folder.with_name("face.mp4.partial"))
    (folder.with_name("face.mp4.partial") / "00003.jpg").write_bytes(b"half")
    resumed = prepare_faces.prepare(data, LAYOUT, progress=False, size=64, detector_factory=counting_detector)
    assert (resumed["written"], resumed["cached"]) == (1, 1) and len(calls) == 3 * FRAMES
    assert not folder.with_name("face.mp4.partial").exists()
    assert cv2.imread(str(folder / "00003.jpg")) is not None


def test_boxes_between_detections_are_interpolated_and_held_at_the_ends():
    class Fixed:
        def __init__(self):
            self.seen = []

        def detect(self, rgb):
            i = int(rgb[0, 0, 0])
            self.seen.append(i)
            return [(10 * i, 0, 10 + i, 10 + i)] if i not in (0, 4) else []

    frames = [np.full((20, 20, 3), i, np.uint8) for i in range(9)]
    detector = Fixed()
    boxes = prepare_faces.face_boxes(frames, detector, every=2)
    assert detector.seen == [0, 2, 4, 6, 8]  # frames 0 and 4 find nothing
    assert boxes[:3] == [(20, 0, 12, 12, 0)] * 3  # held before the first detection
    assert boxes[3:7] == [(30, 0, 13, 13, 0), (40, 0, 14, 14, 0), (50, 0, 15, 15, 0), (60, 0, 16, 16, 0)]  # 2 -> 6
    assert boxes[7:] == [(70, 0, 17, 17, 0), (80, 0, 18, 18, 0)]
    assert prepare_faces.face_boxes(frames, type("Blind", (), {"detect": lambda self, rgb: []})(), 3) == [None] * 9
