"""Windowing of a camera (and microphone) stream into fixed-size model windows. ROS-free.

A `Windower` keeps a ring buffer of timestamped frames, bounded by time (`buffer_s`) and by count
(`max_frames`), and an audio ring buffer of timestamped chunks. All timing is DATA time: the
source header stamps in nanoseconds, never the wall clock, so a bag played at any rate, or a
stream that stalls, gives the same windows.

Sampling (the standard DFER 16-segment sampling, anchored on the newest frame)
    A window holds T = `num_frames` frames spread evenly over the last `span_s`: the span is split
    into T segments of `span_s / T` and the frame nearest each segment's centre is taken. The
    segments are laid so that the last one is centred on the newest frame, i.e. the target stamps
    are  t_k = newest - (T - 1 - k) * span_s / T,  k = 0..T-1,  and the window's last frame IS
    the newest frame (window end = the stamp of the frame that triggered it, so end-to-end
    latency is measured from the newest data). First to last frame covers (T - 1) / T * span_s
    (1.875 s for the defaults). A frame is used twice only when the stream is slower than
    T / span_s frames per second (8 fps for the defaults) or has a hole (< max_gap_s) inside the
    span; such windows are counted in `windows_with_repeats`.

Emission
    The first window after a (re)start is emitted as soon as the buffer reaches back to the first
    target stamp within about half a frame period (for the defaults: at the 57th frame at 30 fps,
    the 29th at 15 fps). Later windows follow every `stride_s` of data time on a fixed grid
    (first window end + k * stride_s): a window is due at the first frame whose stamp is at or
    after the grid point, less a quarter frame period of jitter tolerance; missed grid points
    (a hole in the stream) are skipped, never emitted late in a burst. `poll()` returns at most
    one window per call and never the same window twice; with no new frames it returns None, so a
    stalled stream simply produces no windows.

Stream faults (all counted in `counters`, none raises)
    - duplicate stamp (== newest): frame dropped (`duplicate_stamps`);
    - stamp older than the newest by at most `reorder_tolerance_s` (default 0: never): frame
      dropped (`out_of_order_drops`);
    - stamp going further backwards (a bag that loops, a clock reset): everything is reset,
      frames, audio and any window waiting for audio (`backwards_resets`); the next window only
      holds frames that arrived after the reset;
    - a forward jump larger than `max_gap_s`: the frame buffer is reset (`gap_resets`), the audio
      buffer is kept (it is trimmed by time and its own discontinuities are handled below).
    Every window's frames come from the buffer after the last reset, so no window is ever stale.

Audio
    Chunks (float32 mono at `audio_rate`, stamp = first sample) are placed on a sample timeline
    by their stamps: a chunk whose stamp is within `audio_jitter_s` of the end of the previous
    chunk is taken as contiguous (stamp jitter tolerated), a later one leaves a gap
    (`audio_gaps`), an earlier one overlaps (`audio_overlaps`: the already-buffered samples are
    kept, the new chunk's overlapping head is dropped), and one that starts before the previous
    chunk started resets the audio buffer (`audio_backwards_resets`). A window's audio ends at its
    last frame, as a live microphone only ever hears the past: it is the round(audio_s * rate)
    samples before round((end_ns - t0) * rate), where t0 is the timeline origin and `audio_s`
    is the seconds of audio the model reads (None, the default: `span_s`, what the model was
    trained on; e.g. 5.12 s against a 2 s span), reaching back before the first frame.
    `audio_start_ns` is the exact time of its first sample (within half a sample of
    end_ns - audio_s). Uncovered samples are zeros when the covered fraction of that stretch is
    at least `min_audio_coverage`; otherwise the window's audio is None
    (`windows_without_audio`, `audio_low_coverage`): after a start, a model with a long audio_s
    gets its first windows without audio until the microphone has been heard for that long.
    Audio usually lags the video a little (a chunk is published after its last sample). A window
    whose audio does not yet reach its end is held back while the audio is less than
    `audio_wait_s` behind it and returned by a later `poll()` (call poll after `add_audio` too)
    once the audio covers it, or once the frames have moved `audio_wait_s` past its end, whichever
    comes first. Audio that is further behind than that (a dead microphone) does not delay
    windows.

Memory
    Frames older than newest - `buffer_s` are dropped, and at most `max_frames` are kept. Audio
    older than `audio_buffer_s` (default max(buffer_s, audio_s) + audio_wait_s + 1 s) before the
    newest frame (or the newest audio sample, if that is older) is dropped; audio running ahead of
    the frames is kept, but never more than `max_audio_s` (default 30 s, ~2 MB at 16 kHz) in all,
    and at most `max_audio_chunks` chunks. Frames are stored by reference (not copied): the caller
    must not modify an array after handing it over. Audio chunks are copied.

Thread safety: every public method takes the instance's lock, so frames and audio may be added
from different threads.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

import numpy as np

from duse_ros.affect.audio_timeline import AudioTimeline, round_div
from duse_ros.timebase import NS

COUNTER_NAMES = (
    "frames_in",  # frames handed to add_frame
    "frames_buffered",  # frames accepted into the buffer
    "duplicate_stamps",  # frames dropped: same stamp as the newest
    "out_of_order_drops",  # frames dropped: slightly older than the newest (reorder tolerance)
    "backwards_resets",  # resets of everything: a frame stamp went backwards
    "gap_resets",  # frame-buffer resets: a forward jump longer than max_gap_s
    "manual_resets",  # reset() calls
    "count_evictions",  # frames dropped by the max_frames bound (stream faster than expected)
    "windows_emitted",  # windows returned by poll()
    "windows_incomplete",  # a window was due but the buffer no longer reached the span (count bound)
    "windows_with_repeats",  # windows that use a frame twice (slow stream or a hole in the span)
    "stride_skips",  # grid points passed without a window (a hole in the stream)
    "audio_chunks_in",  # chunks handed to add_audio
    "audio_empty_chunks",  # chunks with no samples (ignored)
    "audio_backwards_resets",  # audio-buffer resets: a chunk started before the previous one
    "audio_overlaps",  # chunks overlapping the buffered audio (overlapping head dropped)
    "audio_gaps",  # chunks starting after the end of the buffered audio (hole left)
    "audio_chunks_evicted",  # chunks dropped by the time/count bound
    "windows_with_audio",  # windows returned with audio
    "windows_without_audio",  # windows returned with audio None although audio was requested
    "audio_low_coverage",  # ... of which: some audio, but coverage < min_audio_coverage
    "audio_zero_filled",  # windows with audio whose holes were filled with zeros
    "audio_waits",  # windows held back waiting for audio
    "pending_dropped",  # held-back windows discarded by a reset
)


@dataclass
class Window:
    """T frames (and the matching audio) of one model window."""

    index: int  # 0, 1, 2, ... per Windower since creation (not reset by resets)
    stamps_ns: list[int]  # T frame stamps (source header stamps, ns), ascending (non-decreasing if repeats)
    frames: list[np.ndarray]  # T frames as given to add_frame (not copied)
    start_ns: int  # first frame stamp
    end_ns: int  # last frame stamp == the newest frame when the window was due
    audio: np.ndarray | None = None  # float32 mono at audio_rate: the audio_s seconds before end_ns
    audio_rate: int = 16000
    audio_start_ns: int | None = None  # exact time of audio[0] (within half a sample of where it starts)
    audio_coverage: float = 0.0  # fraction of the audio span that real samples covered (0 when none)
    repeated_frames: int = 0  # how many of the T frames repeat the previous one
    reset_epoch: int = 0  # number of buffer resets before this window (any reason)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS


class Windower:
    """Ring buffers of frames and audio cut into model windows; see the module docstring."""

    def __init__(
        self,
        num_frames: int = 16,
        span_s: float = 2.0,
        stride_s: float = 0.5,
        max_gap_s: float = 0.5,
        use_audio: bool = False,
        audio_rate: int = 16000,
        min_audio_coverage: float = 0.9,
        buffer_s: float | None = None,
        *,
        max_frames: int | None = None,
        reorder_tolerance_s: float = 0.0,
        audio_jitter_s: float = 0.01,
        audio_wait_s: float = 0.3,
        audio_buffer_s: float | None = None,
        max_audio_s: float = 30.0,
        max_audio_chunks: int = 4096,
        audio_s: float | None = None,
    ):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if not span_s > 0 or not stride_s > 0 or not max_gap_s > 0:
            raise ValueError("span_s, stride_s and max_gap_s must be > 0")
        if audio_rate <= 0:
            raise ValueError(f"audio_rate must be > 0, got {audio_rate}")
        if audio_s is not None and not audio_s > 0:
            raise ValueError(f"audio_s must be > 0 or None, got {audio_s}")
        if not 0.0 <= min_audio_coverage <= 1.0:
            raise ValueError(f"min_audio_coverage must be in [0, 1], got {min_audio_coverage}")
        self.num_frames = int(num_frames)
        self.span_s = float(span_s)
        self.stride_s = float(stride_s)
        self.max_gap_s = float(max_gap_s)
        self.use_audio = bool(use_audio)
        self.audio_rate = int(audio_rate)
        self.audio_s = self.span_s if audio_s is None else float(audio_s)  # what the model was trained on
        self.min_audio_coverage = float(min_audio_coverage)
        self.buffer_s = float(buffer_s) if buffer_s is not None else self.span_s + 0.25
        if self.buffer_s < self.span_s * (self.num_frames - 1) / self.num_frames:
            raise ValueError(f"buffer_s={self.buffer_s} is shorter than the window ({self.span_s} s)")
        self.max_frames = (
            int(max_frames) if max_frames is not None else max(4 * self.num_frames, math.ceil(self.buffer_s * 120))
        )
        self.reorder_tolerance_s = float(reorder_tolerance_s)
        self.audio_jitter_s = float(audio_jitter_s)
        # A window may wait for its audio at most this long (data time), and less than a stride.
        self.audio_wait_s = max(0.0, min(float(audio_wait_s), 0.9 * self.stride_s))
        self.audio_buffer_s = (
            float(audio_buffer_s)
            if audio_buffer_s is not None
            else max(self.buffer_s, self.audio_s) + self.audio_wait_s + 1.0
        )
        self.max_audio_s = max(float(max_audio_s), self.audio_buffer_s)
        self.max_audio_chunks = int(max_audio_chunks)

        self._span_ns = int(round(self.span_s * NS))
        self._stride_ns = int(round(self.stride_s * NS))
        self._gap_ns = int(round(self.max_gap_s * NS))
        self._buffer_ns = int(round(self.buffer_s * NS))
        self._reorder_ns = int(round(self.reorder_tolerance_s * NS))
        self._wait_ns = int(round(self.audio_wait_s * NS))
        # Offsets of the T target stamps before the newest frame: (T - 1 - k) * span / T.
        self._offsets_ns = [
            round_div((self.num_frames - 1 - k) * self._span_ns, self.num_frames) for k in range(self.num_frames)
        ]

        self.counters: dict[str, int] = {name: 0 for name in COUNTER_NAMES}
        self.last_reset_reason: str | None = None
        self.reset_epoch = 0
        self._lock = threading.RLock()
        self._next_index = 0
        # Frame ring buffer (parallel deques; stamps strictly increasing).
        self._stamps: deque[int] = deque()
        self._frames: deque[np.ndarray] = deque()
        self._intervals: deque[int] = deque(maxlen=15)  # recent frame intervals, for the period
        self._next_due_ns: int | None = None  # None: waiting for the first window after a reset
        self._pending: deque[Window] = deque()  # windows held back for their audio
        self._audio = AudioTimeline(
            self.audio_rate,
            self.counters,
            jitter_samples=int(round(self.audio_jitter_s * self.audio_rate)),
            keep_samples=int(round(self.audio_buffer_s * self.audio_rate)),
            max_samples=int(round(self.max_audio_s * self.audio_rate)),
            max_chunks=self.max_audio_chunks,
        )

    # ------------------------------------------------------------------ state helpers
    def _reset_frames(self) -> None:
        self._stamps.clear()
        self._frames.clear()
        self._intervals.clear()
        self._next_due_ns = None
        self.reset_epoch += 1

    def _reset_all(self, reason: str) -> None:
        self._reset_frames()
        self._audio.reset()
        self.counters["pending_dropped"] += len(self._pending)
        self._pending.clear()
        self.last_reset_reason = reason

    def reset(self, reason: str) -> None:
        """Drop everything buffered (frames, audio, windows waiting for audio)."""
        with self._lock:
            self.counters["manual_resets"] += 1
            self._reset_all(reason)

    # ------------------------------------------------------------------ introspection
    @property
    def buffer_len(self) -> int:
        """Frames held."""
        return len(self._frames)

    @property
    def audio_buffer_samples(self) -> int:
        """Audio samples held."""
        return self._audio.samples

    @property
    def audio_buffer_chunks(self) -> int:
        return self._audio.chunks

    @property
    def pending_windows(self) -> int:
        """Windows held back waiting for their audio."""
        return len(self._pending)

    def _period_ns(self) -> int | None:
        if not self._intervals:
            return None
        s = sorted(self._intervals)
        return s[len(s) // 2]

    # ------------------------------------------------------------------ frames
    def add_frame(self, stamp_ns: int, frame: np.ndarray) -> None:
        """Buffer one frame (RGB uint8, any size). Faults are handled and counted, never raised."""
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.counters["frames_in"] += 1
            if self._stamps:
                newest = self._stamps[-1]
                if stamp_ns == newest:
                    self.counters["duplicate_stamps"] += 1
                    return
                if stamp_ns < newest:
                    if newest - stamp_ns <= self._reorder_ns:
                        self.counters["out_of_order_drops"] += 1
                        return
                    self.counters["backwards_resets"] += 1
                    self._reset_all("backwards")
                elif stamp_ns - newest > self._gap_ns:
                    self.counters["gap_resets"] += 1
                    self._reset_frames()
                    self.last_reset_reason = "gap"
                else:
                    self._intervals.append(stamp_ns - newest)
            self._stamps.append(stamp_ns)
            self._frames.append(frame)
            self.counters["frames_buffered"] += 1
            # Bound by time, then by count.
            cutoff = stamp_ns - self._buffer_ns
            while self._stamps[0] < cutoff:
                self._stamps.popleft()
                self._frames.popleft()
            while len(self._frames) > self.max_frames:
                self._stamps.popleft()
                self._frames.popleft()
                self.counters["count_evictions"] += 1

    def _covers(self, newest: int, period: int) -> bool:
        """Does the buffer reach back to the first target stamp (within ~half a period)?"""
        first_target = newest - self._offsets_ns[0]
        return self._stamps[0] <= first_target + (6 * period) // 10

    def _build_window(self) -> Window:
        stamps = list(self._stamps)
        newest = stamps[-1]
        picked: list[int] = []
        for off in self._offsets_ns:
            t = newest - off
            i = bisect_left(stamps, t)
            if i >= len(stamps):
                i = len(stamps) - 1
            elif i > 0 and t - stamps[i - 1] <= stamps[i] - t:  # ties go to the earlier frame
                i -= 1
            picked.append(i)
        repeats = sum(1 for a, b in zip(picked, picked[1:]) if a == b)
        if repeats:
            self.counters["windows_with_repeats"] += 1
        sel = [stamps[i] for i in picked]
        w = Window(
            index=self._next_index,
            stamps_ns=sel,
            frames=[self._frames[i] for i in picked],
            start_ns=sel[0],
            end_ns=sel[-1],
            audio_rate=self.audio_rate,
            repeated_frames=repeats,
            reset_epoch=self.reset_epoch,
        )
        self._next_index += 1
        return w

    def _due_window(self) -> Window | None:
        """Build the window that is due at the newest frame, if any, and advance the grid."""
        if len(self._stamps) < 2:
            return None
        newest = self._stamps[-1]
        period = self._period_ns() or 1
        jitter = period // 4
        if self._next_due_ns is None:
            if not self._covers(newest, period):
                return None
            self._next_due_ns = newest
        if newest < self._next_due_ns - jitter:
            return None
        # Advance the grid past the newest frame (skipped points are counted, not emitted late).
        self._next_due_ns += self._stride_ns
        while self._next_due_ns - jitter <= newest:
            self._next_due_ns += self._stride_ns
            self.counters["stride_skips"] += 1
        if not self._covers(newest, period):
            self.counters["windows_incomplete"] += 1
            return None
        return self._build_window()

    def poll(self) -> Window | None:
        """The next window when one is due, else None. Call after each add_frame (and add_audio)."""
        with self._lock:
            if self._pending:
                w = self._pending[0]
                if self._audio_ready(w) or self._stamps and self._stamps[-1] >= w.end_ns + self._wait_ns:
                    return self._finish(self._pending.popleft())
            w = self._due_window()
            if w is None:
                return None
            if self.use_audio:
                if self._pending or self._should_wait(w):
                    self.counters["audio_waits"] += 1
                    self._pending.append(w)
                    if len(self._pending) > 1:  # never more than one held back: release the oldest
                        return self._finish(self._pending.popleft())
                    return None
            return self._finish(w)

    # ------------------------------------------------------------------ audio
    def add_audio(self, stamp_ns: int, samples: np.ndarray) -> None:
        """Buffer one chunk: float32 mono at audio_rate; stamp = time of its first sample."""
        x = np.array(samples, dtype=np.float32, copy=True).reshape(-1)
        with self._lock:
            self.counters["audio_chunks_in"] += 1
            if x.size == 0:
                self.counters["audio_empty_chunks"] += 1
                return
            self._audio.add(int(stamp_ns), x, self._stamps[-1] if self._stamps else None)

    def _audio_ready(self, w: Window) -> bool:
        """Has the buffered audio reached the window's end?"""
        return self._audio.reaches(w.end_ns)

    def _should_wait(self, w: Window) -> bool:
        """Hold the window back for audio that is late, but not for audio that is missing."""
        if self._wait_ns <= 0 or self._audio_ready(w):
            return False
        audio_end_ns = self._audio.end_ns()
        if audio_end_ns is None:
            return False  # no audio at all: nothing to wait for
        return w.end_ns - audio_end_ns <= self._wait_ns

    def _finish(self, w: Window) -> Window:
        if self.use_audio:
            audio, start, coverage = self._audio.cut(w.end_ns, int(round(self.audio_s * self.audio_rate)))
            w.audio_coverage = coverage
            if audio is not None and coverage >= self.min_audio_coverage and coverage > 0:
                w.audio, w.audio_start_ns = audio, start
                self.counters["windows_with_audio"] += 1
                if coverage < 1.0:
                    self.counters["audio_zero_filled"] += 1
            else:
                self.counters["windows_without_audio"] += 1
                if coverage > 0:
                    self.counters["audio_low_coverage"] += 1
        self.counters["windows_emitted"] += 1
        return w
