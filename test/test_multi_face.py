"""Several people at once without ROS: one job of N clips per window, one Reading per face with its
id and box, smoothing per face, and the engine's N-clip jobs equal to N single forwards."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from duse_ros.affect.engine import InferenceEngine, Job
from duse_ros.affect.pipeline import MODALITY_AUDIO_VISUAL, MODALITY_VIDEO, AffectPipeline, PipelineConfig
from duse_ros.loading import load_model
from duse_ros.timebase import NS

# Three faces of different sizes at fixed places; the detector lists them in a scrambled order.
FACES = [(40, 60, 48, 48), (300, 40, 90, 90), (180, 200, 64, 64)]


class ThreeFaces:
    def detect(self, rgb):
        return [FACES[2], FACES[0], FACES[1]]


class Sink:
    def __init__(self, expected: int):
        self.readings, self.done, self.expected = [], threading.Event(), expected
        self._lock = threading.Lock()

    def __call__(self, reading):
        with self._lock:
            self.readings.append(reading)
            if len(self.readings) >= self.expected:
                self.done.set()


def run(max_faces: int, expected: int, model: str = "tiny-random-video", frames: int = 120, smoothing: int = 3):
    sink = Sink(expected)
    pipeline = AffectPipeline(
        load_model(model),
        PipelineConfig(
            face_mode="detect", max_faces=max_faces, face_detect_hz=5.0, queue_depth=16, smoothing_window=smoothing
        ),
        sink,
        detector=ThreeFaces(),
    )
    jobs = []
    real_submit = pipeline.engine.submit
    pipeline.engine.submit = lambda job: jobs.append(job) or real_submit(job)
    pipeline.start()
    try:
        rng = np.random.default_rng(3)
        rate = pipeline.spec.audio_rate
        if pipeline.spec.uses_audio:
            pipeline.add_audio(0, (0.1 * rng.standard_normal(rate * (frames // 30 + 1))).astype(np.float32))
        for k in range(frames):
            pipeline.add_frame(k * NS // 30, rng.integers(0, 256, (360, 480, 3), dtype=np.uint8))
            assert pipeline._keyframer.wait_idle(10)
        assert sink.done.wait(30), f"{len(sink.readings)} readings"
    finally:
        pipeline.stop()
    return pipeline, jobs, sink.readings


def test_each_face_of_a_window_gets_a_reading_from_one_job():
    pipeline, jobs, readings = run(max_faces=4, expected=3 * 5)  # 120 frames: windows at 56, 71, ..., 116
    assert len(jobs) == 5
    for job in jobs:
        assert tuple(job.video.shape[:2]) == (3, 16), "a window's three faces form one job of three clips"
    by_window: dict[int, list] = {}
    for r in readings:
        by_window.setdefault(r.window_index, []).append(r)
    for window_readings in by_window.values():
        assert len(window_readings) == 3
        assert len({r.window_end_ns for r in window_readings}) == 1
        ids = [r.face_id for r in window_readings]
        assert len(set(ids)) == 3 and all(i.startswith("f") for i in ids)
        # Largest first, and each box is where that face is (no smoothing moves a still face).
        assert [r.face_box for r in window_readings] == [FACES[1], FACES[2], FACES[0]]
        for r in window_readings:
            assert r.modality == MODALITY_VIDEO and r.face_found and r.image_size == (480, 360)
            assert np.isclose(r.probabilities.sum(), 1.0, atol=1e-5)
    # The same face keeps its id from window to window.
    id_of_box = {}
    for r in readings:
        assert id_of_box.setdefault(r.face_box, r.face_id) == r.face_id
    # Smoothing runs per face: each face's count grows 1, 2, 3, 3, 3 whatever the others do.
    for face_id in set(id_of_box.values()):
        assert [r.smoothing_count for r in readings if r.face_id == face_id] == [1, 2, 3, 3, 3]
    diag = pipeline.diagnostics()
    assert diag["face.tracks"] == 3 and diag["face.track_births"] == 3 and diag["face.track_deaths"] == 0
    assert diag["pipeline.readings"] == 15


def test_one_face_keeps_todays_single_clip_job():
    _, jobs, readings = run(max_faces=1, expected=5)
    assert all(job.video.dim() == 4 for job in jobs), "max_faces 1: (T, 3, S, S) as before"
    assert {r.face_box for r in readings} == {FACES[1]} and len({r.face_id for r in readings}) == 1


def test_audio_visual_faces_share_the_windows_audio():
    _, jobs, readings = run(max_faces=2, expected=2 * 2, model="tiny-random-av", frames=80)
    assert jobs and all(job.video.shape[0] == 2 and job.audio.dim() == 1 for job in jobs)
    assert all(r.modality == MODALITY_AUDIO_VISUAL and r.audio_samples_used > 0 for r in readings)


@pytest.mark.parametrize("model", ["tiny-random-video", "tiny-random-av"])
def test_a_job_of_n_clips_equals_n_single_jobs(model):
    net = load_model(model)
    results = []
    engine = InferenceEngine(net, queue_depth=16, max_batch=8, on_result=results.append)
    torch.manual_seed(0)
    spec = net.input_spec
    clips = torch.randn(3, spec.num_frames, 3, spec.image_size, spec.image_size)
    audio = torch.randn(spec.audio_rate) if spec.uses_audio else None
    engine.start()
    try:
        engine.submit(Job(0, clips, audio))
        for i in range(3):
            engine.submit(Job(i + 1, clips[i], audio))
        deadline = threading.Event()
        for _ in range(200):
            if len(results) == 4:
                break
            deadline.wait(0.05)
    finally:
        engine.stop()
    assert len(results) == 4 and all(r.error is None for r in results)
    grouped = results[0].probabilities
    assert grouped.shape == (3, len(net.class_names))
    singles = np.stack([r.probabilities for r in results[1:]])
    np.testing.assert_allclose(grouped, singles, atol=1e-5)
