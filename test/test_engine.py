"""The inference engine, ROS-free: results, batching, the bounded queue, failures, stop, devices.

Timing never decides an outcome: a gated model blocks inside its forward until the test
releases it, so which jobs are pending, dropped or batched is exact.
"""

import contextlib
import logging
import threading
import time
import types
import weakref

import numpy as np
import pytest
import torch

from duse_ros.affect.engine import (
    CudaGraphCapture,
    CudaGraphs,
    EagerCapture,
    ForwardCache,
    InferenceEngine,
    Job,
    Result,
    normalises_on_device,
    resolve_device,
    resolve_precision,
)
from duse_ros.affect.preprocess import FramePreprocessor, normalisation
from duse_ros.models import AffectModel, ModelOutput, build_model

WAIT_S = 10.0


class Collector:
    """on_result sink the test can wait on."""

    def __init__(self):
        self.results: list[Result] = []
        self._cond = threading.Condition()

    def __call__(self, result: Result) -> None:
        with self._cond:
            self.results.append(result)
            self._cond.notify_all()

    def wait_for(self, n: int) -> list[Result]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.results) >= n, WAIT_S), (
                f"got {len(self.results)} results, expected {n}"
            )
            return list(self.results)


class GatedModel(AffectModel):
    """Wraps a real model; each forward announces itself on `entered`, then waits for
    `release`. Forwards whose index is in `fail_calls` raise after the gate."""

    def __init__(self, inner: AffectModel, fail_calls=()):
        super().__init__()
        self.inner = inner
        self.model_id, self.class_names, self.input_spec = inner.model_id, inner.class_names, inner.input_spec
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.batch_sizes: list[int] = []
        self.fail_calls = set(fail_calls)

    def forward(self, video=None, audio=None):
        call = len(self.batch_sizes)
        self.batch_sizes.append((video if video is not None else audio).shape[0])
        self.entered.release()
        assert self.release.wait(WAIT_S), "test never released the gate"
        if call in self.fail_calls:
            raise RuntimeError("boom")
        return self.inner(video=video, audio=audio)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=WAIT_S), "the worker never entered forward"


class ConstModel(AffectModel):
    """Returns fixed logits for every row, wrapped in ModelOutput."""

    def __init__(self, logits):
        super().__init__()
        self.model_id, self.class_names = "const", [f"c{i}" for i in range(len(logits))]
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, video=None, audio=None):
        b = (video if video is not None else audio).shape[0]
        return ModelOutput(logits=self.logits.expand(b, -1))


@pytest.fixture(scope="module")
def video_model():
    return build_model("tiny-random-video").eval()


@pytest.fixture(scope="module")
def av_model():
    return build_model("tiny-random-av").eval()


def make_job(key, video=True, audio=False, frames=16, size=112, samples=32000):
    g = torch.Generator().manual_seed(key)
    return Job(
        key=key,
        video=torch.randn(frames, 3, size, size, generator=g) if video else None,
        audio=torch.randn(samples, generator=g) * 0.1 if audio else None,
        meta={"window": key},
    )


def direct(model, job) -> np.ndarray:
    with torch.inference_mode():
        logits = model(
            video=None if job.video is None else job.video.unsqueeze(0),
            audio=None if job.audio is None else job.audio.unsqueeze(0),
        )
    return torch.softmax(logits.float(), dim=-1)[0].numpy()


@pytest.fixture
def engines():
    """Engines a test starts are stopped however the test ends."""
    started = []

    def make(model, **kwargs):
        kwargs.setdefault("on_result", Collector())
        engine = InferenceEngine(model, **kwargs)
        started.append(engine)
        return engine, kwargs["on_result"]

    yield make
    for engine in started:
        if isinstance(engine.model, GatedModel):
            engine.model.release.set()
        engine.stop()


@pytest.mark.parametrize(
    "name,video,audio",
    [
        ("tiny-random-video", True, False),
        ("tiny-random-av", True, True),
        ("tiny-random-av", False, True),  # no face in the window: audio only
    ],
    ids=["video", "audio-visual", "audio-only"],
)
def test_results_match_a_direct_forward(engines, video_model, av_model, name, video, audio):
    model = video_model if name == "tiny-random-video" else av_model
    engine, sink = engines(model)
    engine.start()
    job = make_job(7, video=video, audio=audio)
    assert engine.submit(job)
    (result,) = sink.wait_for(1)
    assert result.error is None and result.job is job and result.job.meta == {"window": 7}
    assert result.probabilities.dtype == np.float32
    assert result.probabilities.shape == (len(model.class_names),)
    np.testing.assert_allclose(result.probabilities, direct(model, job), rtol=0, atol=1e-6)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.batch_size == 1 and result.latency_s > 0
    snap = engine.stats.snapshot()
    assert (snap.submitted, snap.completed, snap.errors, snap.pending, snap.in_flight) == (1, 1, 0, 0, 0)
    assert snap.device == "cpu" and snap.precision == "fp32"
    assert snap.latency_p50_s == pytest.approx(result.latency_s)


def test_same_structure_jobs_batch_and_match_one_by_one(engines, av_model):
    gated = GatedModel(av_model)
    engine, sink = engines(gated, queue_depth=4, max_batch=4)
    engine.start()
    jobs = [make_job(k, video=True, audio=True) for k in range(4)]
    engine.submit(jobs[0])
    gated.wait_entered()  # the worker holds job 0; 1..3 wait in the queue
    for job in jobs[1:]:
        assert engine.submit(job)
    gated.release.set()
    results = sink.wait_for(4)
    assert [r.job.key for r in results] == [0, 1, 2, 3]
    assert [r.batch_size for r in results] == [1, 3, 3, 3]
    assert gated.batch_sizes == [1, 3]
    assert engine.stats.snapshot().batch_histogram == {1: 1, 3: 1}
    for r in results:
        np.testing.assert_allclose(r.probabilities, direct(av_model, r.job), rtol=0, atol=1e-5)


def test_a_forward_never_exceeds_max_batch(engines, video_model):
    gated = GatedModel(video_model)
    engine, sink = engines(gated, queue_depth=6, max_batch=4)
    engine.start()
    engine.submit(make_job(0, frames=2, size=32))
    gated.wait_entered()
    for k in range(1, 7):
        engine.submit(make_job(k, frames=2, size=32))
    gated.release.set()
    results = sink.wait_for(7)
    assert [r.job.key for r in results] == list(range(7))
    assert gated.batch_sizes == [1, 4, 2]
    assert engine.stats.snapshot().batch_histogram == {1: 1, 2: 1, 4: 1}


def test_structure_changes_split_batches_and_keep_order(engines, av_model):
    gated = GatedModel(av_model)
    engine, sink = engines(gated, queue_depth=4, max_batch=4)
    engine.start()
    engine.submit(make_job(0, video=True, audio=True))
    gated.wait_entered()
    # A face is lost for two windows, then found again.
    engine.submit(make_job(1, video=True, audio=True))
    engine.submit(make_job(2, video=False, audio=True))
    engine.submit(make_job(3, video=False, audio=True))
    engine.submit(make_job(4, video=True, audio=True))
    gated.release.set()
    results = sink.wait_for(5)
    assert [r.job.key for r in results] == [0, 1, 2, 3, 4]
    assert gated.batch_sizes == [1, 1, 2, 1]
    for r in results:
        assert r.error is None
        np.testing.assert_allclose(r.probabilities, direct(av_model, r.job), rtol=0, atol=1e-5)


def test_full_queue_drops_the_oldest_pending_job(engines, video_model):
    gated = GatedModel(video_model)
    engine, sink = engines(gated, queue_depth=2, max_batch=4)
    engine.start()
    assert engine.submit(make_job(1, frames=2, size=32))
    gated.wait_entered()  # job 1 is in the forward
    assert engine.submit(make_job(2, frames=2, size=32))
    assert engine.submit(make_job(3, frames=2, size=32))
    snap = engine.stats.snapshot()
    assert (snap.pending, snap.in_flight, snap.dropped_queue_full) == (2, 1, 0)
    assert engine.submit(make_job(4, frames=2, size=32))  # pushes out job 2
    snap = engine.stats.snapshot()
    assert (snap.pending, snap.dropped_queue_full) == (2, 1)
    gated.release.set()
    results = sink.wait_for(3)
    assert [r.job.key for r in results] == [1, 3, 4]
    assert gated.batch_sizes == [1, 2]
    snap = engine.stats.snapshot()
    assert (
        snap.submitted,
        snap.completed,
        snap.dropped_queue_full,
        snap.dropped_shutdown,
        snap.errors,
        snap.pending,
        snap.in_flight,
    ) == (4, 3, 1, 0, 0, 0, 0)


def test_a_failing_forward_gives_error_results_and_the_engine_goes_on(engines, video_model, caplog, capture_logs):
    gated = GatedModel(video_model, fail_calls={1})
    engine, sink = engines(gated, queue_depth=2)
    engine.start()
    engine.submit(make_job(0, frames=2, size=32))
    gated.wait_entered()
    engine.submit(make_job(1, frames=2, size=32))
    engine.submit(make_job(2, frames=2, size=32))  # 1 and 2 share the failing forward
    with capture_logs("duse_ros.affect.engine", logging.ERROR):
        gated.release.set()
        results = sink.wait_for(3)
    ok, failed = results[0], results[1:]
    assert ok.error is None
    for r in failed:
        assert r.error == "RuntimeError: boom"
        assert r.probabilities.shape == (0,) and r.batch_size == 2
    assert "forward failed" in caplog.text
    engine.submit(make_job(3, frames=2, size=32))
    (*_, after) = sink.wait_for(4)
    assert after.job.key == 3 and after.error is None
    snap = engine.stats.snapshot()
    assert (snap.submitted, snap.completed, snap.errors) == (4, 2, 2)
    assert snap.batch_histogram == {1: 2, 2: 1}


def test_model_output_and_non_finite_logits(engines):
    engine, sink = engines(ConstModel([0.0, float("nan")]))
    engine.start()
    engine.submit(make_job(0, frames=1, size=8))
    (bad,) = sink.wait_for(1)
    assert bad.error == "FloatingPointError: model produced non-finite logits"

    engine, sink = engines(ConstModel([0.0, np.log(3.0)]))  # ModelOutput is unwrapped
    engine.start()
    engine.submit(make_job(0, video=False, audio=True, samples=100))
    (good,) = sink.wait_for(1)
    np.testing.assert_allclose(good.probabilities, [0.25, 0.75], atol=1e-6)


def test_a_raising_callback_is_counted_and_the_worker_survives(engines, video_model):
    sink = Collector()

    def on_result(result):
        if result.job.key == 0:
            raise KeyError("subscriber bug")
        sink(result)

    engine, _ = engines(video_model, on_result=on_result)
    engine.start()
    engine.submit(make_job(0, frames=2, size=32))
    engine.submit(make_job(1, frames=2, size=32))
    (result,) = sink.wait_for(1)  # results come in order: job 0 was delivered first
    assert result.job.key == 1
    snap = engine.stats.snapshot()
    assert (snap.completed, snap.callback_errors) == (2, 1)


def test_stop_drops_pending_finishes_the_forward_and_is_idempotent(engines, video_model, caplog, capture_logs):
    gated = GatedModel(video_model)
    engine, sink = engines(gated, queue_depth=2, name="engine-under-test")
    engine.stop()  # before start: nothing to do
    engine.start()
    assert engine.running
    engine.submit(make_job(0, frames=2, size=32))
    gated.wait_entered()
    engine.submit(make_job(1, frames=2, size=32))
    engine.submit(make_job(2, frames=2, size=32))
    with capture_logs("duse_ros.affect.engine", logging.WARNING):
        engine.stop(timeout=0.05, cancel=False)  # the forward is blocked: the join times out
    assert "still running" in caplog.text
    assert not engine.running
    assert engine.submit(make_job(3, frames=2, size=32)) is False
    gated.release.set()
    (result,) = sink.wait_for(1)  # the forward in flight still delivers
    assert result.job.key == 0
    engine.stop()
    engine.stop()
    assert not [t for t in threading.enumerate() if t.name == "engine-under-test"]
    snap = engine.stats.snapshot()
    assert (snap.submitted, snap.completed, snap.dropped_shutdown, snap.pending, snap.in_flight) == (4, 1, 3, 0, 0)

    engine.start()  # a lifecycle node activates again after deactivating
    engine.submit(make_job(4, frames=2, size=32))
    assert sink.wait_for(2)[-1].job.key == 4
    engine.stop()
    assert not [t for t in threading.enumerate() if t.name == "engine-under-test"]


def test_start_twice_is_an_error(engines, video_model):
    engine, _ = engines(video_model)
    engine.start()
    with pytest.raises(RuntimeError, match="already running"):
        engine.start()


def test_warmup_is_neither_delivered_nor_counted(engines, video_model):
    engine, sink = engines(video_model)
    engine.start(warmup=make_job(0, frames=2, size=32))
    snap = engine.stats.snapshot()
    assert (snap.submitted, snap.completed, snap.batch_histogram) == (0, 0, {})
    assert sink.results == []


def test_malformed_jobs_and_arguments_are_rejected(video_model):
    engine = InferenceEngine(video_model, on_result=Collector())
    with pytest.raises(ValueError, match="neither"):
        engine.submit(Job(key=0, video=None, audio=None))
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        engine.submit(Job(key=0, video=torch.zeros(1, 16, 4, 8, 8), audio=None))  # 4 channels
    with pytest.raises(ValueError, match=r"\(N, T, 3, H, W\)"):
        engine.submit(Job(key=0, video=torch.zeros(1, 1, 16, 3, 8, 8), audio=None))
    with pytest.raises(ValueError, match=r"\(S,\)"):
        engine.submit(Job(key=0, video=None, audio=torch.zeros(1, 100)))
    with pytest.raises(ValueError, match="audio must be float32, got torch.float64"):
        engine.submit(Job(key=0, video=None, audio=torch.zeros(100, dtype=torch.float64)))
    with pytest.raises(TypeError, match="on_result"):
        InferenceEngine(video_model)
    with pytest.raises(ValueError, match="queue_depth"):
        InferenceEngine(video_model, queue_depth=0, on_result=print)
    with pytest.raises(ValueError, match="max_batch"):
        InferenceEngine(video_model, max_batch=0, on_result=print)


def test_device_strings(monkeypatch, video_model):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available.*'cpu' or 'auto'"):
            resolve_device(spec)
    with pytest.raises(ValueError, match="invalid device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="'mps' is not supported"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="CUDA is not available"):
        InferenceEngine(video_model, device="cuda", on_result=print)


def test_precision_fp16_on_cpu_runs_fp32_with_one_warning_and_bf16_runs_bf16(video_model, caplog, capture_logs):
    with capture_logs("duse_ros.affect.engine", logging.WARNING):
        engine = InferenceEngine(video_model, device="cpu", precision="fp16", on_result=print)
    assert engine.precision == "fp32" and engine.stats.snapshot().precision == "fp32"
    assert caplog.text.count("precision fp16 requested on cpu") == 1
    assert InferenceEngine(video_model, device="cpu", precision="bf16", on_result=print).precision == "bf16"
    with pytest.raises(ValueError, match="invalid precision 'half'"):
        InferenceEngine(video_model, device="cpu", precision="half", on_result=print)


def test_bf16_on_a_gpu_without_bf16_falls_back_to_fp16(monkeypatch, caplog, capture_logs):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a Turing card, say
    with capture_logs("duse_ros.affect.engine", logging.WARNING):
        assert resolve_precision("bf16", torch.device("cuda", 0)) == "fp16"
    assert "has no bf16: running fp16" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("bf16", torch.device("cuda", 0)) == "bf16"
    assert resolve_precision("fp16", torch.device("cuda", 0)) == "fp16"


# Autocast keeps the logits within this fraction of the largest fp32 logit (at least 1) of fp32.
# Measured on CPU bf16 (8 significant bits): 0.3 % (tiny-random-av), 0.7 % (bhgap-tiny), 0.75 %
# (duse-tiny, logits up to 7.4); fp16 (11 bits) on CUDA is tighter.
PRECISION_RTOL = {"fp32": 2e-3, "fp16": 0.01, "bf16": 0.02}  # fp32 on CUDA: cuDNN convs may use TF32


def centred_log(p: np.ndarray) -> np.ndarray:
    """The logits a softmax came from, up to the constant it drops (centred per row)."""
    logp = np.log(p.astype(np.float64))
    return logp - logp.mean(axis=-1, keepdims=True)


def assert_logits_close(probabilities: np.ndarray, reference: np.ndarray, precision: str) -> None:
    got, want = centred_log(probabilities), centred_log(reference)
    tol = PRECISION_RTOL[precision] * max(1.0, np.abs(want).max())
    assert np.abs(got - want).max() <= tol, f"{precision}: logits off by {np.abs(got - want).max():.4g} > {tol:.4g}"


@pytest.mark.parametrize("name", ["tiny-random-av", "bhgap-tiny", "duse-tiny"])
def test_bf16_autocast_on_cpu_stays_within_tolerance_of_fp32(engines, name):
    logging.disable(logging.WARNING)
    try:
        model = build_model(name).eval()
    finally:
        logging.disable(logging.NOTSET)
    spec = model.input_spec
    engine, sink = engines(model, precision="bf16", queue_depth=2)
    engine.start()
    job = make_job(5, video=spec.uses_video, audio=spec.uses_audio, size=spec.image_size)
    engine.submit(job)
    (result,) = sink.wait_for(1)
    assert result.error is None
    want = direct(model, job)
    assert not np.array_equal(result.probabilities, want)  # bf16 did run
    assert_logits_close(result.probabilities, want, "bf16")


def test_uint8_crops_are_normalised_by_the_engine_like_the_numpy_preprocessing(engines, video_model):
    """What a CUDA engine gets (uint8 crops, normalised on the device) gives the same result as
    what a CPU engine gets (numpy-normalised float32), here with the CPU running both."""
    spec = video_model.input_spec
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(4)]
    crops = FramePreprocessor(spec, normalise=False)(frames)
    normalised = FramePreprocessor(spec)(frames)
    assert crops.dtype == torch.uint8 and crops.shape == normalised.shape
    engine, sink = engines(video_model, queue_depth=2)
    engine.start()
    engine.submit(Job(0, crops, None))
    engine.submit(Job(1, torch.stack([crops, crops]), None))  # two faces of one window
    first, second = sink.wait_for(2)
    assert first.error is None and second.error is None
    np.testing.assert_allclose(first.probabilities, direct(video_model, Job(0, normalised, None)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(second.probabilities, np.stack([first.probabilities] * 2), rtol=0, atol=1e-6)
    assert normalises_on_device("cpu") is False
    with pytest.raises(ValueError, match="float32 \\(normalised\\) or uint8"):
        engine.submit(Job(2, crops.to(torch.int16), None))


class RecordingCapture:
    """A capture stand-in: counts captures and hands back a forward that counts its calls."""

    def __init__(self, fail_for=()):
        self.captured: list[tuple] = []
        self.calls = 0
        self.fail_for = set(fail_for)

    def capture(self, run, video, audio):
        key = tuple(video.shape)
        if key in self.fail_for:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captured.append(key)

        def forward(v, a):
            self.calls += 1
            return run(v, a)

        return forward


def test_forward_cache_captures_each_new_shape_once_and_replays_known_ones(caplog, capture_logs):
    def run(video, audio):
        return video.flatten(1).sum(1, keepdim=True)

    capture = RecordingCapture(fail_for={(3, 2, 3, 4, 4)})
    cache = ForwardCache(run, capture, max_entries=4)
    one, four = torch.ones(1, 2, 3, 4, 4), torch.ones(4, 2, 3, 4, 4)
    assert cache(one, None).tolist() == [[96.0]]
    assert cache(2 * one, None).tolist() == [[192.0]]  # same shape: replayed, with the new input
    assert capture.captured == [(1, 2, 3, 4, 4)] and capture.calls == 2
    cache(four, None)  # a new face count: a new capture
    cache(four.half(), None)  # the same shape in another dtype is another structure
    assert capture.captured == [(1, 2, 3, 4, 4), (4, 2, 3, 4, 4), (4, 2, 3, 4, 4)]
    assert dict(cache.counters) == {"captures": 3, "replays": 1}
    with capture_logs("duse_ros.affect.engine", logging.WARNING):
        assert cache(torch.ones(3, 2, 3, 4, 4), None).shape == (3, 1)  # capture fails: eager, logged
        cache(torch.ones(3, 2, 3, 4, 4), None)  # and stays eager, without another try or log
        cache(torch.ones(5, 2, 3, 4, 4), None)  # a fifth structure: past max_entries, eager
    assert caplog.text.count("capturing the forward") == 1
    assert dict(cache.counters) == {"captures": 3, "replays": 1, "eager": 3}
    assert len(capture.captured) == 3


class ReplayingGraphs:
    """torch.cuda's graph API as CudaGraphCapture uses it, on CPU: `capture` runs the function
    (warm-up and capture), and `replay` re-runs the captured function on the same static
    buffers into the same output tensor, as a CUDA graph replays its kernels."""

    def __init__(self):
        self.warmups = 0

    def capture(self, fn, warmup_iters):
        for _ in range(warmup_iters):
            fn()
            self.warmups += 1
        output = fn()
        return types.SimpleNamespace(replay=lambda: output.copy_(fn())), output


def test_cuda_graph_capture_copies_new_inputs_in_and_returns_a_copy_of_the_output(av_model):
    graphs = ReplayingGraphs()

    def run(video, audio):
        return av_model(video=video, audio=audio)

    jobs = [make_job(k, video=True, audio=True) for k in range(3)]
    batches = [(j.video.unsqueeze(0), j.audio.unsqueeze(0)) for j in jobs]
    with torch.inference_mode():  # as the engine's _forward runs it
        replay = CudaGraphCapture(graphs, warmup_iters=2).capture(run, *batches[0])
        assert graphs.warmups == 2
        outs = [replay(v, a) for v, a in batches]
        for (v, a), out in zip(batches, outs):
            torch.testing.assert_close(out, run(v, a), rtol=0, atol=1e-6)
    assert not torch.equal(outs[0], outs[1])  # each replay saw its own inputs
    assert outs[0].data_ptr() != outs[1].data_ptr()  # and a result is not overwritten by the next
    assert isinstance(EagerCapture().capture(run, *batches[0]), type(run))


class StandInCudaStreams:
    """The torch.cuda stream and graph calls CudaGraphs makes, on CPU, enforcing what capture
    needs: warm-up runs on a side stream that first waited for the current one, the current stream
    waits for the warm-up before capture, and every graph shares one memory pool."""

    def __init__(self):
        self.default = types.SimpleNamespace(name="default", waits=[])
        self.current = self.default
        self.runs = []  # (stream name, capturing) of each call of the captured function
        self.pools = []
        self.capturing = None

    def install(self, monkeypatch):
        for name in ("Stream", "current_stream", "stream", "graph_pool_handle", "CUDAGraph", "graph"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

    def Stream(self):  # noqa: N802 (torch's name)
        stream = types.SimpleNamespace(name=f"side{len(self.pools)}", waits=[])
        stream.wait_stream = stream.waits.append
        return stream

    def current_stream(self):
        self.default.wait_stream = self.default.waits.append
        return self.current

    @contextlib.contextmanager
    def stream(self, stream):
        assert stream.waits == [self.default], "a side stream must wait for the current one first"
        before, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = before

    def graph_pool_handle(self):
        return object()

    def CUDAGraph(self):  # noqa: N802
        return types.SimpleNamespace(replays=0)

    @contextlib.contextmanager
    def graph(self, graph, pool=None):
        assert self.current is self.default and self.default.waits, "capture must follow the warm-up"
        assert pool is not None
        self.pools.append(pool)
        self.capturing = graph
        try:
            yield
        finally:
            self.capturing = None

    def record(self, fn):
        def run():
            self.runs.append((self.current.name, self.capturing is not None))
            return fn()

        return run


def test_cuda_graphs_warm_up_on_a_side_stream_then_capture_into_one_pool(monkeypatch):
    cuda = StandInCudaStreams()
    cuda.install(monkeypatch)
    graphs = CudaGraphs()
    first_graph, out = graphs.capture(cuda.record(lambda: torch.ones(2)), warmup_iters=3)
    assert torch.equal(out, torch.ones(2))
    assert cuda.runs == [("side0", False)] * 3 + [("default", True)]
    assert len(cuda.default.waits) == 1 and cuda.default.waits[0].name == "side0"
    second_graph, _ = graphs.capture(cuda.record(lambda: torch.zeros(1)), warmup_iters=1)
    assert second_graph is not first_graph and cuda.pools[0] is cuda.pools[1]  # one pool for all


def test_a_cuda_engine_copies_from_pinned_memory_without_blocking(engines, video_model, monkeypatch):
    engine, _ = engines(video_model)  # a CPU engine, then pointed at a GPU it never uses
    engine.device = torch.device("cuda", 0)
    pinned, moves = set(), []

    def pin_memory(t):
        copy = t.clone()
        pinned.add(id(copy))
        return copy

    def to(t, device, non_blocking=False):
        assert id(t) in pinned or not non_blocking, "a non-blocking copy must come from pinned memory"
        moves.append((device, non_blocking))
        return t

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", to)
    video = torch.ones(2, 3)
    assert torch.equal(engine._to_device(video), video) and engine._to_device(None) is None
    assert moves == [(torch.device("cuda", 0), True)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda-graphs"])
def test_cuda_matches_cpu(engines, precision, graphs):
    model = build_model("tiny-random-av").eval()  # a copy of its own: the engine moves it to the GPU
    reference = build_model("tiny-random-av").eval()
    jobs = [make_job(k, video=True, audio=True) for k in range(3)] + [make_job(3, video=False, audio=True)]
    crops = torch.randint(0, 256, (16, 3, 112, 112), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))
    jobs.append(Job(4, crops, jobs[0].audio))  # uint8 crops: pinned copy, normalised on the GPU
    engine, sink = engines(model, device="cuda", precision=precision, queue_depth=len(jobs), cuda_graphs=graphs)
    engine.start(warmup=make_job(100, video=True, audio=True))
    for job in jobs:
        assert engine.submit(job)
    results = sink.wait_for(len(jobs))
    assert [r.job.key for r in results] == [j.key for j in jobs]
    scale, shift = (torch.from_numpy(c).view(3, 1, 1) for c in normalisation(model.input_spec))
    for r in results:
        job = r.job
        if job.video is not None and job.video.dtype == torch.uint8:
            job = Job(job.key, job.video.float() * scale + shift, job.audio)
        assert r.error is None and r.probabilities.dtype == np.float32
        assert_logits_close(r.probabilities, direct(reference, job), precision)
    snap = engine.stats.snapshot()
    assert snap.device.startswith("cuda") and snap.precision == precision
    # One more window alone: the warm-up's structure, so a graph replay when graphs are on.
    replays = engine.forwards.counters["replays"]
    extra = make_job(5, video=True, audio=True)
    engine.submit(extra)
    last = sink.wait_for(len(jobs) + 1)[-1]
    assert last.job is extra and last.error is None
    assert_logits_close(last.probabilities, direct(reference, extra), precision)
    counters = engine.forwards.counters  # with graphs off the same cache runs eagerly, as on CPU
    assert counters["captures"] >= 3 and counters["replays"] == replays + 1 and counters["eager"] == 0


def test_stop_cancels_a_forward_at_its_next_layer(engines, video_model):
    """stop() need not wait for a whole forward: the next module call inside it raises, the
    worker ends at once, and the jobs are counted as dropped at shutdown, never delivered."""
    gated = GatedModel(video_model)
    engine, sink = engines(gated, name="engine-cancel")
    engine.start()
    engine.submit(make_job(0, frames=2, size=32))
    gated.wait_entered()  # inside the forward, before the inner model's layers
    stopper = threading.Thread(target=engine.stop, kwargs={"timeout": WAIT_S})
    stopper.start()
    deadline = time.monotonic() + WAIT_S
    while not engine._stopping.is_set():  # stop() has signalled; now let the forward go on
        assert time.monotonic() < deadline
        time.sleep(0.001)
    gated.release.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive() and not [t for t in threading.enumerate() if t.name == "engine-cancel"]
    snap = engine.stats.snapshot()
    assert (snap.completed, snap.errors, snap.dropped_shutdown, snap.in_flight) == (0, 0, 1, 0)
    assert sink.results == []
    engine.start()  # and it runs again afterwards, hooks not doubled
    engine.submit(make_job(1, frames=2, size=32))
    assert sink.wait_for(1)[0].job.key == 1
    assert all(len(m._forward_pre_hooks) == 1 for m in gated.modules())


def test_jobs_past_their_deadline_are_skipped_and_counted(engines, video_model):
    gated = GatedModel(video_model)
    engine, sink = engines(gated, queue_depth=4, max_batch=4)
    engine.start()
    engine.submit(make_job(0, frames=2, size=32))
    gated.wait_entered()
    now = time.monotonic()
    engine.submit(Job(1, make_job(1, frames=2, size=32).video, None, deadline=now - 1.0))  # already too old
    engine.submit(Job(2, make_job(2, frames=2, size=32).video, None, deadline=now + 60.0))
    gated.release.set()
    results = sink.wait_for(2)
    assert [r.job.key for r in results] == [0, 2]
    snap = engine.stats.snapshot()
    assert (snap.completed, snap.dropped_stale, snap.pending, snap.in_flight) == (2, 1, 0, 0)


def test_a_finished_job_is_released_while_the_engine_waits_for_the_next(engines, video_model):
    # The worker used to keep its last batch (jobs and clips) referenced until the next job came:
    # 9.6 MB per DuSE clip, held for as long as the camera was quiet.
    done = threading.Event()
    engine, _ = engines(video_model, on_result=lambda result: done.set())
    engine.start()
    job = make_job(1, frames=2, size=32)
    clip = weakref.ref(job.video)
    assert engine.submit(job)
    del job
    assert done.wait(30), "no result"
    deadline = time.monotonic() + 10  # the worker finishes its callback loop, then waits
    while clip() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    released = clip() is None
    assert released, "the idle engine still holds the finished job's clip"
    assert engine.running


def test_a_pipeline_for_a_gpu_sends_uint8_crops_and_reads_what_the_cpu_pipeline_reads(monkeypatch):
    """The pipeline's GPU branch (uint8 crops for the engine to normalise), run on CPU by
    telling it the engine normalises on the device: the same readings as the float32 path."""
    from duse_ros.affect import pipeline as pipeline_module
    from duse_ros.affect.pipeline import AffectPipeline, PipelineConfig
    from duse_ros.timebase import NS

    rng = np.random.default_rng(0)
    frames = [(int(i * NS / 30), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for i in range(30 * 3)]

    def readings(on_device: bool):
        monkeypatch.setattr(pipeline_module, "normalises_on_device", lambda device: on_device)
        model = build_model("tiny-random-video").eval()
        got, done, jobs = [], threading.Event(), []

        def collect(reading):
            got.append(reading)
            if len(got) >= 3:
                done.set()

        pipeline = AffectPipeline(model, PipelineConfig(face_mode="full_frame", queue_depth=32), collect)
        submit = pipeline.engine.submit
        monkeypatch.setattr(pipeline.engine, "submit", lambda job: jobs.append(job.video.dtype) or submit(job))
        pipeline.start()
        try:
            for stamp, frame in frames:
                pipeline.add_frame(stamp, frame)
            assert done.wait(30), f"only {len(got)} readings"
        finally:
            pipeline.stop()
        return [r.probabilities for r in got[:3]], set(jobs)

    on_gpu, gpu_dtypes = readings(True)
    on_cpu, cpu_dtypes = readings(False)
    assert gpu_dtypes == {torch.uint8} and cpu_dtypes == {torch.float32}
    np.testing.assert_allclose(np.stack(on_gpu), np.stack(on_cpu), rtol=0, atol=1e-6)


def test_a_restarted_engine_captures_again(engines, video_model):
    """start() moves the model (DuSE rebuilds its cached tensors then), so captures made before
    a stop are not replayed after the next start."""
    engine, sink = engines(video_model)
    engine.forwards.capturer = capture = RecordingCapture()
    engine.start()
    engine.submit(make_job(0, frames=2, size=32))
    sink.wait_for(1)
    engine.submit(make_job(1, frames=2, size=32))
    sink.wait_for(2)
    assert len(capture.captured) == 1 and capture.calls == 2
    engine.stop()
    engine.start()
    engine.submit(make_job(2, frames=2, size=32))
    assert sink.wait_for(3)[-1].error is None
    assert len(capture.captured) == 2 and capture.calls == 3
