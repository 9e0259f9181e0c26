"""The inference engine: one worker thread runs an AffectModel on windows from a bounded queue.

ROS-free. The node submits a `Job` per window from its executor thread; `submit` never blocks.
When the model is slower than the windows arrive, the queue holds at most `queue_depth` pending
jobs and a new job pushes out the oldest pending one (counted as `dropped_queue_full`): the
robot wants the newest reading, not a growing backlog.

The worker takes up to `max_batch` pending jobs at a time. Consecutive jobs with the same input
structure (which of video/audio are present, and their shapes and dtypes) run as one forward
of shape (B, T, 3, H, W) / (B, S); a change of structure (a face appears or is lost for an
audio-visual model) starts a new batch. Results are therefore delivered in submission order.
A job may carry several clips of one window (one per face: video (N, T, 3, H, W), the audio
shared by all N); its clips always share one forward, and its result holds N rows.

Threading:
- `on_result(result)` is called on the worker thread. The node publishes from it directly
  (rclpy's `Publisher.publish` is thread-safe); the callback must be quick and must not call
  `stop()` expecting a join (a stop from the worker thread only signals). An exception in it is
  logged and counted (`callback_errors`); the worker keeps going.
- PyTorch's intra-op thread pool is process-wide. The engine leaves `torch.set_num_threads`
  to the caller (the node, from a parameter or OMP_NUM_THREADS): set it before `start()`.
- Autocast and inference mode are entered on the worker thread, so they never leak into the
  caller's threads.

Precision (`precision`): "fp32"; "fp16" (CUDA: autocast float16; CPU: fp32, with one warning,
as CPU fp16 matmuls are emulated and slow); "bf16" (autocast bfloat16, on CUDA cards that have
it, i.e. Ampere, Hopper, Jetson Orin, and on CPU; an older GPU gets fp16 with one warning).
Softmax is taken in fp32. The mamba_ssm scan gets its inputs in the autocast dtype (models/ssm.py).

Near the hardware, on CUDA:
- Video may arrive as uint8 crops (T, 3, S, S) (`FramePreprocessor(normalise=False)`): a quarter
  of the bytes, copied from pinned memory without blocking, normalised on the device with the
  model's mean/std (`preprocess.normalise_on_device`, inside the captured graph; on CPU the same
  function runs).
- Each input structure (shapes and dtypes of one batch, so per face count) is captured once in
  a CUDA graph (`ForwardCache` with `CudaGraphCapture`) and replayed: a ViT's ~100 kernels are
  then one launch instead of each paying its own. A capture that fails (an op that syncs with
  the host) leaves that structure eager, logged once. On CPU the same cache runs eagerly.
The model-running step is `_run_model`, kept apart from batching, transfer and softmax so that
another runtime can take its place.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from duse_ros.affect.preprocess import normalisation, normalise_on_device
from duse_ros.affect.stats import LatencyReservoir
from duse_ros.models.base import AffectModel, ModelOutput

log = logging.getLogger(__name__)


@dataclass
class Job:
    key: int  # the caller's id (e.g. the window index)
    video: torch.Tensor | None  # (T, 3, H, W) float32, preprocessed, or (N, T, 3, H, W): N clips
    # (faces) of one window; uint8 crops of the same shapes are normalised by the engine; None: audio only
    audio: torch.Tensor | None  # (S,) float32 mono waveform, shared by a job's clips; None: video only
    meta: Any = None  # passed through to the Result untouched
    deadline: float | None = None  # time.monotonic() after which the job is skipped, not run


@dataclass
class Result:
    job: Job
    probabilities: np.ndarray  # (C,) float32 softmax in the model's class order, (N, C) for a job of
    # N clips; empty on error
    latency_s: float  # wall time of the forward of this job's batch
    batch_size: int  # jobs in that forward
    error: str | None = None  # "ExceptionType: message" when the forward failed


@dataclass(frozen=True)
class EngineSnapshot:
    """Counters since construction. Every submitted job ends as exactly one of completed,
    errors, dropped_queue_full or dropped_shutdown, or is still pending/in flight."""

    submitted: int
    completed: int  # delivered with probabilities
    errors: int  # delivered with an error (the forward raised or gave non-finite values)
    dropped_queue_full: int  # pushed out of the queue by a newer job
    dropped_shutdown: int  # pending at stop(), cancelled in flight by stop(), or submitted while stopped
    dropped_stale: int  # past their deadline when the worker reached them (max_window_age_s)
    callback_errors: int  # on_result raised
    pending: int
    in_flight: int
    latency_p50_s: float | None  # per forward (batch), over the most recent forwards
    latency_p95_s: float | None
    device: str
    precision: str  # what the forwards actually run: fp32, fp16 or bf16 (autocast)
    batch_histogram: dict[int, int] = field(default_factory=dict)  # batch size -> forwards run


class EngineStats:
    """Thread-safe counters the engine updates and diagnostics read through `snapshot()`."""

    def __init__(self, device: str, precision: str, latency_capacity: int = 1024):
        self._lock = threading.Lock()
        self._device, self._precision = device, precision
        self._counts = Counter()
        self._batches: Counter[int] = Counter()
        self.latency = LatencyReservoir(latency_capacity)

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[counter] += n

    def record_forward(self, batch_size: int, latency_s: float, ok: bool) -> None:
        with self._lock:
            self._batches[batch_size] += 1
            self._counts["completed" if ok else "errors"] += batch_size
        if ok:
            self.latency.add(latency_s)

    def snapshot(self) -> EngineSnapshot:
        p50, p95 = self.latency.percentiles(50, 95)
        with self._lock:
            c = self._counts
            return EngineSnapshot(
                submitted=c["submitted"],
                completed=c["completed"],
                errors=c["errors"],
                dropped_queue_full=c["dropped_queue_full"],
                dropped_shutdown=c["dropped_shutdown"],
                dropped_stale=c["dropped_stale"],
                callback_errors=c["callback_errors"],
                pending=c["pending"],
                in_flight=c["in_flight"],
                latency_p50_s=p50,
                latency_p95_s=p95,
                device=self._device,
                precision=self._precision,
                batch_histogram=dict(sorted(self._batches.items())),
            )


def resolve_device(device: str) -> torch.device:
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'; anything else, or a
    CUDA device this machine lacks, raises ValueError saying what to set instead."""
    spec = str(device).strip().lower()
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"invalid device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device type {dev.type!r} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}): set device to 'cpu' or 'auto', "
            "or install a CUDA build of torch on a machine with an NVIDIA driver"
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= count:
        raise ValueError(
            f"device {device!r} requested but this machine has {count} CUDA device(s): use cuda:0..cuda:{count - 1}"
        )
    return torch.device("cuda", index)


PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision the engine runs for `precision` on `device` (see the module docstring);
    a fallback is logged once per engine, an unknown name raises ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"invalid precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if device.type == "cpu" and precision == "fp16":
        log.warning("precision fp16 requested on cpu: running fp32 (CPU fp16 is emulated and slow; bf16 works on CPU)")
        return "fp32"
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        log.warning("precision bf16 requested on %s, which has no bf16: running fp16", device)
        return "fp16"
    return precision


def normalises_on_device(device: str) -> bool:
    """Whether an engine on `device` ('cpu', 'cuda', 'auto', ...) should get uint8 crops and
    normalise them itself (CUDA), rather than normalised float32 (CPU: numpy does it cheaper)."""
    return resolve_device(device).type == "cuda"


def input_structure(video: torch.Tensor | None, audio: torch.Tensor | None) -> tuple:
    """Shapes and dtypes of one batch: what a captured forward is fixed to."""

    def describe(t: torch.Tensor | None):
        return None if t is None else (tuple(t.shape), t.dtype)

    return describe(video), describe(audio)


Forward = Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]


class EagerCapture:
    """The capture on CPU: nothing to capture, the forward runs as it is."""

    def capture(self, run: Forward, video: torch.Tensor | None, audio: torch.Tensor | None) -> Forward:
        return run


class CudaGraphs:
    """torch.cuda's graph API, the one part of `CudaGraphCapture` that needs a GPU."""

    def __init__(self):
        self._pool = None

    def capture(self, fn: Callable[[], torch.Tensor], warmup_iters: int):
        # Warm-up on a side stream (cuBLAS handles, autotuning, lazy caches such as DuSE's text
        # features), then capture. One memory pool serves every graph: each replay rewrites all
        # of its intermediates from its static inputs and the weights, and its output is cloned
        # at once, so graphs replayed in any order never read each other's memory.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup_iters):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = fn()
        return graph, output


class CudaGraphCapture:
    """Captures a forward on static input buffers; the replay copies the new inputs into them,
    replays, and returns a copy of the static output. `graphs` is the graph API (CudaGraphs on a
    GPU; a test gives a stand-in with the same capture/replay contract)."""

    def __init__(self, graphs=None, warmup_iters: int = 2):
        self.graphs = CudaGraphs() if graphs is None else graphs
        self.warmup_iters = warmup_iters

    def capture(self, run: Forward, video: torch.Tensor | None, audio: torch.Tensor | None) -> Forward:
        static_video = None if video is None else video.clone()
        static_audio = None if audio is None else audio.clone()
        graph, static_out = self.graphs.capture(lambda: run(static_video, static_audio), self.warmup_iters)

        def replay(video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
            if static_video is not None:
                static_video.copy_(video)
            if static_audio is not None:
                static_audio.copy_(audio)
            graph.replay()
            return static_out.clone()

        return replay


class ForwardCache:
    """One captured forward per input structure (`input_structure`): a new structure is
    captured, a known one replayed. At most `max_entries` structures are captured; more, and a
    structure whose capture failed, run eagerly. Counters: captures, replays, eager."""

    def __init__(self, run: Forward, capture, max_entries: int = 16, name: str = "engine"):
        self.run, self.capturer, self.max_entries, self.name = run, capture, max_entries, name
        self._entries: dict[tuple, Forward | None] = {}
        self.counters = Counter()

    def clear(self) -> None:
        """Forget every capture: a graph reads the memory of whatever tensors the model held
        when it was captured (DuSE's cached text features, say), and moving the model or
        changing its weights replaces them."""
        self._entries.clear()

    def __call__(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        key = input_structure(video, audio)
        if key in self._entries:
            forward = self._entries[key]
            if forward is None:
                self.counters["eager"] += 1
                return self.run(video, audio)
            self.counters["replays"] += 1
            return forward(video, audio)
        if len(self._entries) >= self.max_entries:
            self.counters["eager"] += 1
            return self.run(video, audio)
        try:
            forward = self.capturer.capture(self.run, video, audio)
        except ForwardCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. an op that syncs with the host during capture
            log.warning(
                "%s: capturing the forward for %s failed (%s: %s); it runs eagerly",
                self.name,
                key,
                type(exc).__name__,
                exc,
            )
            self._entries[key] = None
            self.counters["eager"] += 1
            return self.run(video, audio)
        self._entries[key] = forward
        self.counters["captures"] += 1
        return forward(video, audio)


class ForwardCancelled(Exception):
    """Raised inside a forward (between two module calls) when the engine stops."""


def _structure(job: Job) -> tuple:
    """Jobs with equal structure can share one forward."""

    def describe(t: torch.Tensor | None, dims: int):
        return None if t is None else (tuple(t.shape[-dims:]), t.dtype)

    return describe(job.video, 4), describe(job.audio, 1)


def _validate(job: Job) -> None:
    if job.video is None and job.audio is None:
        raise ValueError(f"job {job.key}: needs video or audio, got neither")
    if job.video is not None and (
        job.video.dim() not in (4, 5) or job.video.shape[-3] != 3 or job.video.dim() == 5 and job.video.shape[0] < 1
    ):
        raise ValueError(f"job {job.key}: video must be (T, 3, H, W) or (N, T, 3, H, W), got {tuple(job.video.shape)}")
    if job.audio is not None and job.audio.dim() != 1:
        raise ValueError(f"job {job.key}: audio must be (S,), got {tuple(job.audio.shape)}")
    if job.video is not None and job.video.dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"job {job.key}: video must be float32 (normalised) or uint8 (crops), got {job.video.dtype}")
    if job.audio is not None and job.audio.dtype != torch.float32:
        raise ValueError(f"job {job.key}: audio must be float32, got {job.audio.dtype}")


def _clips(job: Job) -> int:
    return job.video.shape[0] if job.video is not None and job.video.dim() == 5 else 1


def _batch(jobs: list[Job]) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """(video (B, T, 3, H, W) or None, audio (B, S) or None, B) for same-structure jobs: one row
    per clip, a job's audio repeated for each of its clips."""
    counts = [_clips(j) for j in jobs]
    video = audio = None
    if jobs[0].video is not None:
        parts = [j.video if j.video.dim() == 5 else j.video.unsqueeze(0) for j in jobs]
        video = parts[0] if len(parts) == 1 else torch.cat(parts)
    if jobs[0].audio is not None:
        parts = [j.audio.unsqueeze(0).expand(n, -1) for j, n in zip(jobs, counts)]
        audio = parts[0].contiguous() if len(parts) == 1 else torch.cat(parts)
    return video, audio, sum(counts)


class InferenceEngine:
    """Runs `model` on submitted jobs on one worker thread; see the module docstring.

    device: 'cpu', 'cuda', 'cuda:N' or 'auto' (validated here, so a bad value fails at configure
    time). precision: fp32, fp16 or bf16 (module docstring). cuda_graphs: capture and replay
    fixed-shape forwards on CUDA. queue_depth: pending jobs kept (newest win).
    max_batch: clips one forward may take (a job of N clips counts N; one job always runs whole).
    on_result: required, called on the worker thread.
    """

    def __init__(
        self,
        model: AffectModel,
        device: str = "cpu",
        precision: str = "fp32",
        queue_depth: int = 2,
        max_batch: int = 4,
        on_result: Callable[[Result], None] | None = None,
        name: str = "duse-engine",
        cuda_graphs: bool = True,
    ):
        if on_result is None or not callable(on_result):
            raise TypeError("on_result is required: a callable taking a Result (called on the worker thread)")
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be >= 1, got {queue_depth}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.queue_depth, self.max_batch = int(queue_depth), int(max_batch)
        self.name = name
        self.stats = EngineStats(device=str(self.device), precision=self.precision)
        self._normalisation: tuple[torch.Tensor, torch.Tensor] | None = None  # on the device, when first needed
        capture = CudaGraphCapture() if cuda_graphs and self.device.type == "cuda" else EagerCapture()
        self.forwards = ForwardCache(self._normalise_and_run, capture, name=name)
        self._on_result = on_result
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._hooks: list = []
        self._logged = {"forward": False, "callback": False}  # log each kind of failure once, count all

    @property
    def running(self) -> bool:
        return self._running

    def start(self, warmup: Job | None = None) -> None:
        """Put the model in eval mode on the device, optionally run `warmup` once (its result is
        discarded and not counted: CUDA's first forward pays for kernel selection), and start
        the worker. Raises if the model fails to move or the warm-up forward fails."""
        with self._cond:
            if self._running:
                raise RuntimeError(f"{self.name} is already running")
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"{self.name}: the previous worker is still finishing a forward; call stop() again")
        self.model.eval()
        self.model.to(self.device)
        self.forwards.clear()  # .to() may have rebuilt tensors an earlier capture reads
        if warmup is not None:
            _validate(warmup)
            self._forward(*_batch([warmup]))
        # A forward checks for stop() before each module call: stopping waits one layer, not one
        # forward (a ViT-B/16 window takes 10-15 s on a small CPU).
        self._remove_hooks()
        self._hooks = [m.register_forward_pre_hook(self._check_stopping) for m in self.model.modules()]
        with self._cond:
            self._stopping.clear()
            self._running = True
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()

    def _check_stopping(self, module, args) -> None:
        if self._stopping.is_set() and threading.current_thread() is self._thread:
            raise ForwardCancelled

    def _remove_hooks(self) -> None:
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook.remove()

    def submit(self, job: Job) -> bool:
        """Queue `job` without blocking. If `queue_depth` jobs are already pending the oldest is
        dropped to make room. Returns False (job dropped, counted) when the engine is not running.
        Raises ValueError for a malformed job (no inputs, wrong dimensions or dtype): a caller's
        bug, reported at once rather than as a failed forward."""
        _validate(job)
        with self._cond:
            self.stats.add("submitted")
            if not self._running:
                self.stats.add("dropped_shutdown")
                return False
            if len(self._pending) >= self.queue_depth:
                self._pending.popleft()
                self.stats.add("dropped_queue_full")
            else:
                self.stats.add("pending")
            self._pending.append(job)
            self._cond.notify()
            return True

    def stop(self, timeout: float = 5.0, cancel: bool = True) -> None:
        """Drop pending jobs (counted as dropped_shutdown) and join the worker (up to `timeout` s).
        A forward in flight is cancelled at its next module call (its jobs counted as
        dropped_shutdown), or with cancel=False allowed to finish and deliver its results.
        Safe to call repeatedly, and from on_result (then it only signals)."""
        with self._cond:
            thread = self._thread
            if self._running:
                self._running = False
                if cancel:
                    self._stopping.set()
                dropped = len(self._pending)
                self._pending.clear()
                self.stats.add("dropped_shutdown", dropped)
                self.stats.add("pending", -dropped)
                self._cond.notify_all()
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning(
                "%s: a forward is still running %.1f s after stop(); its results will still be delivered",
                self.name,
                timeout,
            )
        else:
            with self._cond:
                if self._thread is thread:
                    self._thread = None
                    self._remove_hooks()

    def _work(self) -> None:
        while self._run_next():
            pass

    def _run_next(self) -> bool:
        """Wait for jobs and run them; False once stopped. The jobs are local to this call, so a
        finished batch's clips (9.6 MB per DuSE clip) are not held while the worker waits again."""
        taken = self._take()
        if taken is None:
            return False
        self._run_taken(taken)
        return True

    def _take(self) -> list[Job] | None:
        """The next jobs to run (None once stopped), waiting for one."""
        with self._cond:
            while self._running and not self._pending:
                self._cond.wait()
            if not self._running:
                return None
            # Up to max_batch clips (a window of N faces is N clips), but a job is never split.
            taken, clips = [], 0
            while self._pending and (not taken or clips + _clips(self._pending[0]) <= self.max_batch):
                taken.append(self._pending.popleft())
                clips += _clips(taken[-1])
            self.stats.add("pending", -len(taken))
            return taken

    def _run_taken(self, taken: list[Job]) -> None:
        now = time.monotonic()
        stale = sum(1 for job in taken if job.deadline is not None and job.deadline < now)
        if stale:
            taken = [job for job in taken if job.deadline is None or job.deadline >= now]
            self.stats.add("dropped_stale", stale)
        self.stats.add("in_flight", len(taken))
        groups: list[list[Job]] = []
        for job in taken:
            if groups and _structure(groups[-1][0]) == _structure(job):
                groups[-1].append(job)
            else:
                groups.append([job])
        for i, group in enumerate(groups):
            if i > 0 and not self._running:
                rest = sum(len(g) for g in groups[i:])
                self.stats.add("dropped_shutdown", rest)
                self.stats.add("in_flight", -rest)
                break
            self._run_batch(group)

    def _to_device(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """A host tensor on the engine's device: from pinned memory without blocking on CUDA
        (later work on the same stream waits for the copy)."""
        if t is None or self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def _normalise_and_run(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        """What a CUDA graph captures: uint8 video normalised on the device (so the graph's
        static input is the uint8 clip), then the model."""
        if video is not None and video.dtype == torch.uint8:
            if self._normalisation is None:  # the first (warm-up) forward, never inside a capture
                scale, shift = normalisation(self.model.input_spec)
                self._normalisation = (torch.from_numpy(scale).to(self.device), torch.from_numpy(shift).to(self.device))
            video = normalise_on_device(video, *self._normalisation)
        return self._run_model(video, audio)

    def _autocast(self):
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        # No weight-cast cache: it would hold tensors from outside a CUDA graph's capture.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    def _run_model(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        """The model-running step: device tensors in, logits (B, C) out, in inference mode.
        Everything else (batching, transfer, capture, softmax) stays outside it."""
        with torch.inference_mode(), self._autocast():
            out = self.model(video=video, audio=audio)
        return out.logits if isinstance(out, ModelOutput) else out

    def _forward(self, video: torch.Tensor | None, audio: torch.Tensor | None, n: int) -> np.ndarray:
        """Probabilities (n, C) float32 for one same-structure batch, from host tensors."""
        with torch.inference_mode():
            logits = self.forwards(self._to_device(video), self._to_device(audio))
        if logits.dim() != 2 or logits.shape[0] != n:
            raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for a batch of {n}")
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if not np.isfinite(probs).all():
            raise FloatingPointError("model produced non-finite logits")
        return probs

    def _run_batch(self, jobs: list[Job]) -> None:
        """One forward for `jobs`; latency_s covers host-to-device copy, forward and softmax,
        not the CPU-side stacking (that is engine overhead)."""
        t0 = time.perf_counter()
        try:
            video, audio, clips = _batch(jobs)
            t0 = time.perf_counter()
            probs, error = self._forward(video, audio, clips), None
        except ForwardCancelled:
            self.stats.add("dropped_shutdown", len(jobs))
            self.stats.add("in_flight", -len(jobs))
            return
        except Exception as exc:  # noqa: BLE001  (a failing model must not kill the worker)
            probs, error = None, f"{type(exc).__name__}: {exc}"
            self._log_once("forward", "%s: forward failed (later failures are counted, not logged)", self.name)
        latency = time.perf_counter() - t0
        self.stats.record_forward(len(jobs), latency, ok=error is None)
        self.stats.add("in_flight", -len(jobs))
        empty = np.empty(0, dtype=np.float32)
        row = 0
        for job in jobs:
            n = _clips(job)
            if probs is None:
                job_probs = empty
            elif job.video is not None and job.video.dim() == 5:
                job_probs = probs[row : row + n].copy()
            else:
                job_probs = probs[row].copy()
            row += n
            result = Result(job=job, probabilities=job_probs, latency_s=latency, batch_size=len(jobs), error=error)
            try:
                self._on_result(result)
            except Exception:  # noqa: BLE001  (a broken callback must not kill the worker)
                self.stats.add("callback_errors")
                self._log_once(
                    "callback",
                    "%s: on_result raised for job %s (later failures are counted, not logged)",
                    self.name,
                    job.key,
                )

    def _log_once(self, kind: str, msg: str, *args) -> None:
        if not self._logged[kind]:
            self._logged[kind] = True
            log.exception(msg, *args)
