"""AffectPipeline without ROS: windows in, readings out, and preprocessing reused across windows."""

import gc
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

from duse_ros.affect.pipeline import MODALITY_AUDIO, MODALITY_VIDEO, AffectPipeline, PipelineConfig
from duse_ros.affect.preprocess import frames_to_tensor
from duse_ros.affect.stats import LatencyReservoir
from duse_ros.affect.windowing import Windower
from duse_ros.models import build_model
from duse_ros.timebase import NS


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
    frames = _frames(30 * 4)  # 4 s: windows at frames 56, 71, 86, 101, 116
    for stamp, frame in frames:
        pipeline.add_frame(stamp, frame)
    assert collect.done.wait(20), f"only {len(collect.readings)} readings"
    assert [r.window_end_ns for r in collect.readings] == [frames[i][0] for i in (56, 71, 86, 101, 116)]
    for r in collect.readings:
        assert r.modality == MODALITY_VIDEO and r.frames_used == 16
        assert np.isclose(r.probabilities.sum(), 1.0, atol=1e-5)
    assert [r.smoothing_count for r in collect.readings] == [1, 2, 2, 2, 2]


def test_crop_cache_reuses_only_the_exact_box_and_equals_a_fresh_pass(video_pipeline):
    pipeline, _ = video_pipeline
    cache = pipeline._crops
    windower = Windower()
    window = None
    for stamp, frame in _frames(60):
        windower.add_frame(stamp, frame)
        cache.add(stamp, frame, (8, 8, 32, 32), version=1)
        window = windower.poll() or window
    assert cache.counters["crops_on_arrival"] == 60
    boxes = [(8, 8, 32, 32)] * 16
    tensor = cache.video(window, boxes, version=1)
    assert cache.counters["crops_reused"] == 16 and cache.counters["crops_at_window"] == 0
    crops = [f[8:40, 8:40] for f in window.frames]
    assert np.array_equal(tensor.numpy(), frames_to_tensor(crops, pipeline.spec).numpy())
    # Three frames' boxes moved by one pixel: those three are made afresh, the rest reused.
    moved = list(boxes)
    for i in (0, 7, 15):
        moved[i] = (9, 8, 32, 32)
    tensor = cache.video(window, moved, version=2)
    assert cache.counters["crops_at_window"] == 3 and cache.counters["crops_reused"] == 29
    crops = [f[y : y + s, x : x + s] for f, (x, y, s, _) in zip(window.frames, moved)]
    assert np.array_equal(tensor.numpy(), frames_to_tensor(crops, pipeline.spec).numpy())
    # An answer from an older track version never replaces a newer one.
    cache.video(window, boxes, version=1)
    assert cache.counters["crops_at_window"] == 6
    cache.video(window, moved, version=2)
    assert cache.counters["crops_at_window"] == 6, "version 2's crops must have stayed"


def test_crop_cache_refresh_recrops_only_frames_whose_box_changed(video_pipeline):
    pipeline, _ = video_pipeline
    cache = pipeline._crops
    frames = _frames(10)
    for stamp, frame in frames:
        cache.add(stamp, frame, None if stamp >= frames[6][0] else (0, 0, 16, 16), version=1)
    asked = []

    def boxes_of(stamps, shapes):
        asked.extend(stamps)
        return [(0, 0, 16, 16) if t < frames[4][0] else (2, 2, 16, 16) for t in stamps], 2

    cache.refresh(frames[2][0], boxes_of)
    assert asked == [t for t, _ in frames[2:]]
    # Frames 4 and 5 moved, 6..9 had no box yet; 2 and 3 are unchanged.
    assert cache.counters["crops_after_keyframe"] == 6


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


def test_a_model_gets_the_audio_its_spec_asks_for_ending_at_the_window_end():
    """A model whose spec reads 3 s of audio, behind a 2 s window of frames: its forward gets
    3 s of samples, the last one just before the window's last frame."""
    model = build_model("tiny-random-av", audio_s=3.0)
    rate = model.input_spec.audio_rate
    heard = []
    model.register_forward_pre_hook(lambda _, args, kwargs: heard.append(kwargs["audio"].clone()), with_kwargs=True)
    collect = _Collect(expected=2)
    pipeline = AffectPipeline(model, PipelineConfig(face_mode="full_frame", span_s=2.0), collect)
    pipeline.start()
    try:
        a0 = -3 * NS  # the microphone was on 3 s before the camera; sample i has value i
        pipeline.add_audio(a0, np.arange(rate * 8, dtype=np.float32))
        frames = _frames(75)
        for stamp, frame in frames:
            pipeline.add_frame(stamp, frame)
        assert collect.done.wait(20), f"only {len(collect.readings)} readings"
    finally:
        pipeline.stop()
    assert [r.window_end_ns for r in collect.readings] == [frames[56][0], frames[71][0]]
    for reading, audio in zip(collect.readings, heard):
        assert reading.audio_samples_used == 3 * rate and audio.shape == (1, 3 * rate)
        last = round((reading.window_end_ns - a0) * rate / NS) - 1  # the sample just before the end
        assert audio[0].tolist() == list(range(last - 3 * rate + 1, last + 1))


def test_full_frames_are_preprocessed_on_arrival_not_when_the_window_is_due(video_pipeline):
    pipeline, collect = video_pipeline
    pipeline.start()
    frames = _frames(30 * 4)
    for stamp, frame in frames:
        pipeline.add_frame(stamp, frame)
    assert collect.done.wait(20)
    counts = pipeline._crops.counters
    assert counts["crops_on_arrival"] == len(frames), "each frame once, on arrival"
    assert counts["crops_at_window"] == 0 and counts["crops_reused"] == 16 * 5, "nothing left for window time"
    assert len(pipeline._crops) <= 2.25 * 30 + 1, "cache must stay within the window buffer's span"


@pytest.mark.parametrize("detect_hz", [5.0, 30.0])
def test_detect_mode_windows_find_their_crops_ready_and_exact(detect_hz):
    """A face moving 1 px a frame: keyframes at 5 Hz (boxes interpolated between them) or on
    every frame. With the face thread keeping up (waited for after each frame), every window's
    16 crops are ready when it falls due (none made on its critical path), and they are exactly
    the crops of the track's boxes at that moment. A frame that completes a window is never a
    keyframe: at 30 Hz every other frame is one."""

    class PixelDetector:  # the face box's x is written into the frame's first pixel
        def __init__(self):
            self.seen = []

        def detect(self, rgb):
            self.seen.append(int(rgb[0, 1, 0]))
            return [(int(rgb[0, 0, 0]), 30, 24, 24)]

    detector = PixelDetector()
    model = build_model("tiny-random-video")  # random weights: plumbing only
    collect = _Collect(expected=4)
    pipeline = AffectPipeline(
        model,
        PipelineConfig(
            face_mode="detect", face_detect_hz=detect_hz, face_min_size=16, queue_depth=32, smoothing_window=0
        ),
        collect,
        detector=detector,
    )
    submitted = []
    windows = []  # the window being processed (a job keeps no frames)
    real_process, real_submit = pipeline._process, pipeline.engine.submit

    def process(window):
        windows.append(window)
        return real_process(window)

    def submit(job):
        expected, found = pipeline.track.crops_for_window(windows[-1])
        submitted.append(
            (windows[-1].end_ns, found, job.video.numpy(), frames_to_tensor(expected, pipeline.spec).numpy())
        )
        return real_submit(job)

    pipeline._process, pipeline.engine.submit = process, submit
    pipeline.start()
    try:
        rng = np.random.default_rng(1)
        stamps = []
        for k in range(30 * 3 + 15):
            frame = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
            frame[0, 0, 0], frame[0, 1, 0] = 10 + k, k
            stamp = int(k * NS / 30)
            stamps.append(stamp)
            pipeline.add_frame(stamp, frame)
            assert pipeline._keyframer.wait_idle(10)
        assert collect.done.wait(20)
    finally:
        pipeline.stop()
    counts = pipeline._crops.counters
    assert len(submitted) == 4 and all(found for _, found, _, _ in submitted)
    for _, _, video, expected in submitted:
        assert np.array_equal(video, expected)
    assert counts["crops_at_window"] == 0 and counts["crops_reused"] == 4 * 16
    assert counts["crops_after_keyframe"] > 0, "interpolation must have moved some boxes"
    window_frames = {stamps.index(end) for end, _, _, _ in submitted}
    assert not window_frames & set(detector.seen), "a frame that completes a window must not be a keyframe"
    if detect_hz == 30.0:
        assert sorted(detector.seen) == sorted(set(range(len(stamps))) - window_frames)


def test_windows_waiting_for_the_model_keep_no_camera_frames_alive():
    # Under load jobs wait in the queue for seconds. A job used to hold its whole window, frames
    # included: 16 full-size camera frames (0.9 MB each at 640x480) per queued job, beyond the ring
    # buffer that bounds them, and the node's RSS swung with the queue.
    model = build_model("tiny-random-video")  # random weights: plumbing only
    pipeline = AffectPipeline(
        model, PipelineConfig(face_mode="full_frame", queue_depth=32, smoothing_window=0), _Collect(10**6)
    )
    gate = threading.Event()
    real_forward = pipeline.engine._forward

    def blocked_forward(*args):
        gate.wait(60)
        return real_forward(*args)

    pipeline.engine._forward = blocked_forward
    pipeline.start()
    try:
        frames = _frames(30 * 10)
        refs = [weakref.ref(frame) for _, frame in frames]
        for stamp, frame in frames:
            pipeline.add_frame(stamp, frame)
        del frames, frame
        queued = len(pipeline.engine._pending)
        assert queued >= 10, f"only {queued} windows queued: the test needs a long queue"
        alive = sum(ref() is not None for ref in refs)
        # What may hold frames: the ring buffer (and the crop cache over the same span) and the one
        # window whose forward is blocked.
        bound = pipeline.windower.buffer_len + model.input_spec.num_frames
        assert alive <= bound, f"{alive} frames alive with {queued} windows queued (ring + forward: {bound})"
    finally:
        gate.set()
        pipeline.stop()


@pytest.mark.slow  # a soak: 3500 windows under tracemalloc
def test_python_allocations_stay_flat_over_thousands_of_windows():
    # A slow leak (a list that grows per window or per frame, a cache that is never pruned) shows
    # in an hour-long run as RSS creep; here it shows as Python allocations that outlive their
    # window. One window per frame. The latency reservoirs keep their last 1024 samples, which
    # would read as growth until full: here they keep 16, full before measuring.
    model = build_model("tiny-random-video")  # random weights: plumbing only
    readings = [0]  # counted, not kept
    counted = threading.Condition()

    def on_reading(reading):
        with counted:
            readings[0] += 1
            counted.notify_all()

    pipeline = AffectPipeline(
        model,
        PipelineConfig(face_mode="full_frame", span_s=0.5, stride_s=1 / 30, queue_depth=4, smoothing_window=3),
        on_reading,
    )
    pipeline.end_to_end = LatencyReservoir(16)
    pipeline.engine.stats.latency = LatencyReservoir(16)
    frames = [frame for _, frame in _frames(8, shape=(24, 32, 3))]
    pipeline.start()

    def feed(first: int, count: int) -> None:
        """One frame (one window) at a time; the engine drops what it cannot keep up with, but the
        feed goes on only once one reading per eight windows has come out (371 of 3000), however
        busy the machine."""
        start = readings[0]
        for k in range(first, first + count):
            pipeline.add_frame(int(k * NS / 30), frames[k % len(frames)].copy())
            with counted:
                wanted = start + max(0, k - first - 30) // 8  # after the first window's 0.5 s of frames
                assert counted.wait_for(lambda: readings[0] >= wanted, timeout=30), (
                    f"no reading for 30 s after frame {k}: {readings[0]} of {wanted}"
                )

    def settled() -> int:
        """Traced bytes with the pipeline stopped (worker joined, nothing in flight), then go on."""
        pipeline.stop()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        pipeline.start()
        return traced

    tracemalloc.start()
    try:
        feed(0, 500)
        before, readings_before = settled(), readings[0]
        feed(500, 3000)
        grown = settled() - before
    finally:
        tracemalloc.stop()
        pipeline.stop()
    measured = readings[0] - readings_before
    assert measured >= 300, f"only {measured} readings while measuring: the test measured too little"
    assert grown < 64 * 1024, f"Python allocations grew by {grown / 1024:.0f} KB over {measured} readings"


def test_the_pipeline_takes_live_what_the_parameter_table_marks_live_and_refuses_the_rest(video_pipeline):
    from duse_ros.affect import settings

    pipeline, _ = video_pipeline
    live = {name for name in settings.LIVE if name in PipelineConfig.names()}
    assert live  # the table marks pipeline settings live
    pipeline.update(**{name: settings.DEFAULTS[name] for name in live})
    for name in set(PipelineConfig.names()) - live:
        if name in settings.DEFAULTS:
            with pytest.raises(ValueError, match="not changeable while running"):
                pipeline.update(**{name: settings.DEFAULTS[name]})
