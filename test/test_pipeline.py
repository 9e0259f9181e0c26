"""AffectPipeline without ROS: windows in, readings out, and preprocessing reused across windows."""
import threading

import numpy as np
import pytest

from duse_ros.models import build_model
from duse_ros.pipeline import MODALITY_AUDIO, MODALITY_VIDEO, AffectPipeline, PipelineConfig
from duse_ros.preprocess import frames_to_tensor
from duse_ros.windowing import Windower

NS = 1_000_000_000


def _frames(n: int, fps: float = 30.0, shape=(48, 64, 3)):
    rng = np.random.default_rng(0)
    return [(int(i * NS / fps), rng.integers(0, 256, shape, dtype=np.uint8)) for i in range(n)]


class _Collect:
    def __init__(self, expected: int):
        self.readings, self.done, self.expected = [], threading.Event(), expected

    def __call__(self, reading):
        self.readings.append(reading)
        if len(self.readings) >= self.expected:
            self.done.set()


@pytest.fixture
def video_pipeline():
    model = build_model("tiny-random-video")  # random weights: plumbing only
    config = PipelineConfig(face_mode="full_frame", queue_depth=32, smoothing_window=2)
    collect = _Collect(expected=5)
    pipeline = AffectPipeline(model, config, collect)
    yield pipeline, collect
    pipeline.stop()


def test_windows_become_readings_in_order(video_pipeline):
    pipeline, collect = video_pipeline
    pipeline.start()
    frames = _frames(30 * 4)   # 4 s: windows at frames 56, 71, 86, 101, 116
    for stamp, frame in frames:
        pipeline.add_frame(stamp, frame)
    assert collect.done.wait(20), f"only {len(collect.readings)} readings"
    assert [r.window_end_ns for r in collect.readings] == [frames[i][0] for i in (56, 71, 86, 101, 116)]
    for r in collect.readings:
        assert r.modality == MODALITY_VIDEO and r.frames_used == 16
        assert np.isclose(r.probabilities.sum(), 1.0, atol=1e-5)
    assert [r.smoothing_count for r in collect.readings] == [1, 2, 2, 2, 2]


def test_preprocessing_is_reused_across_windows_and_equals_a_fresh_pass(video_pipeline):
    pipeline, _ = video_pipeline
    calls = []
    real = pipeline._preprocess
    pipeline._preprocess = lambda crops: calls.append(len(crops)) or real(crops)
    windower = Windower()
    for stamp, frame in _frames(30 * 3):
        windower.add_frame(stamp, frame)
        window = windower.poll()
        if window is None:
            continue
        tensor = pipeline._video_tensor(window, list(window.frames))
        assert np.array_equal(tensor.numpy(), frames_to_tensor(window.frames, pipeline.spec).numpy())
    # Window 1 preprocesses all 16 frames; each later window only the 4 frames new to it.
    assert calls == [16, 4, 4]


def test_a_crop_that_is_not_a_view_of_its_frame_is_never_taken_from_the_cache(video_pipeline):
    pipeline, _ = video_pipeline
    windower = Windower()
    window = None
    for stamp, frame in _frames(60):
        windower.add_frame(stamp, frame)
        window = windower.poll() or window
    views = [f[8:40, 8:40] for f in window.frames]
    pipeline._video_tensor(window, views)
    copies = [np.ascontiguousarray(255 - v) for v in views]   # same shape, other pixels, not views
    tensor = pipeline._video_tensor(window, copies)
    assert np.array_equal(tensor.numpy(), frames_to_tensor(copies, pipeline.spec).numpy())


def test_audio_visual_model_falls_back_on_audio_without_a_face():
    class NoFaces:
        def detect(self, rgb):
            return []
    model = build_model("tiny-random-av")
    collect = _Collect(expected=1)
    pipeline = AffectPipeline(model, PipelineConfig(face_mode="detect"), collect, detector=NoFaces())
    pipeline.start()
    try:
        rate = model.input_spec.audio_rate
        pipeline.add_audio(0, np.zeros(rate * 3, np.float32))
        for stamp, frame in _frames(70):
            pipeline.add_frame(stamp, frame)
        assert collect.done.wait(20)
    finally:
        pipeline.stop()
    reading = collect.readings[0]
    assert reading.modality == MODALITY_AUDIO and not reading.face_found
    assert reading.frames_used == 0 and reading.audio_samples_used > 0


def test_full_frames_are_preprocessed_on_arrival_not_when_the_window_is_due(video_pipeline):
    pipeline, collect = video_pipeline
    sizes = []
    real = pipeline._preprocess
    pipeline._preprocess = lambda crops: sizes.append(len(crops)) or real(crops)
    pipeline.start()
    frames = _frames(30 * 4)
    for stamp, frame in frames:
        pipeline.add_frame(stamp, frame)
    assert collect.done.wait(20)
    assert sizes == [1] * len(frames), "each frame once, on arrival; nothing left for window time"
    assert len(pipeline._preprocessed) <= 2.5 * 30, "cache must stay within the window's span"
