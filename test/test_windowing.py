"""Windower: sampling, stride, stream faults and audio cutting on synthetic stamps (data time only)."""

import threading

import numpy as np
import pytest

from duse_ros.affect.windowing import NS, Window, Windower

RATE = 16000
T0 = 1_234_567_891  # an arbitrary start stamp, so nothing lines up with round numbers by luck


def stamp(i, fps, t0=T0):
    return t0 + round(i * NS / fps)


def frame(i, tag=0):
    """A tiny frame that says which frame it is (and which segment of the stream)."""
    f = np.zeros((2, 2, 3), np.uint8)
    f[0, 0, 0] = i % 256
    f[0, 0, 1] = (i // 256) % 256
    f[0, 0, 2] = tag
    return f


def frame_id(f):
    return int(f[0, 0, 0]) + 256 * int(f[0, 0, 1]), int(f[0, 0, 2])


def feed(w, stamps, tag=0, first_id=0):
    """Add frames, polling after each; returns [(frame index in `stamps`, window)]."""
    out = []
    for k, s in enumerate(stamps):
        w.add_frame(s, frame(first_id + k, tag))
        win = w.poll()
        if win is not None:
            out.append((k, win))
    return out


def expected_indices(stamps, end_i, T=16, span_s=2.0):
    """Independent reference: targets end - (T-1-k)*span/T, nearest frame, ties to the earlier."""
    s = np.asarray(stamps[: end_i + 1], dtype=np.int64)
    end = s[-1]
    idx = []
    for k in range(T):
        t = end - round((T - 1 - k) * span_s * NS / T)
        idx.append(int(np.argmin(np.abs(s - t))))
    return idx


@pytest.mark.parametrize("fps,first_at,stride_frames", [(30, 56, [15]), (15, 28, [8, 7])])
def test_sampling_and_stride_exact(fps, first_at, stride_frames):
    n = int(12 * fps)
    stamps = [stamp(i, fps) for i in range(n)]
    w = Windower(num_frames=16, span_s=2.0, stride_s=0.5)
    out = feed(w, stamps)
    period = NS / fps
    # First window as soon as the buffer reaches back to the first target (within half a period).
    assert out[0][0] == first_at
    for k, win in out:
        assert isinstance(win, Window)
        assert len(win.frames) == len(win.stamps_ns) == 16
        # Nearest frame to each evenly spaced target, the last one being the newest frame.
        assert [frame_id(f)[0] for f in win.frames] == expected_indices(stamps, k)
        assert win.stamps_ns == [stamps[i] for i in expected_indices(stamps, k)]
        assert win.end_ns == stamps[k] and win.start_ns == win.stamps_ns[0]
        d = np.diff(win.stamps_ns)
        assert np.all(d > 0)  # no repeats at >= 8 fps
        assert np.all(np.abs(d - 0.125 * NS) <= period + 1)  # segment = 125 ms, +- one frame
        targets = [win.end_ns - (15 - j) * 0.125 * NS for j in range(16)]
        assert np.all(np.abs(np.asarray(win.stamps_ns) - targets) <= period / 2 + 1)
        assert win.repeated_frames == 0 and win.audio is None
        assert abs(win.duration_s - 1.875) <= period / NS
    # Stride in data time: each window at the first frame at/after the 0.5 s grid point.
    ends = [k for k, _ in out]
    steps = np.diff(ends).tolist()
    assert set(steps) == set(stride_frames)
    for j, k in enumerate(ends):
        grid = stamps[first_at] + j * 0.5 * NS
        assert stamps[k] >= grid - period / 4 and stamps[k - 1] < grid - period / 4
    assert [win.index for _, win in out] == list(range(len(out)))
    assert w.counters["windows_emitted"] == len(out)
    # 12 s of stream: one window at ~1.87 s, then one per 0.5 s.
    assert len(out) == 1 + int((stamps[-1] - stamps[first_at]) / (0.5 * NS) + 0.25 / fps)


def test_no_wall_clock(monkeypatch):
    """Timing comes from the stamps only: the same stamps fed at any pace give the same windows."""
    import time

    def boom(*a, **k):
        raise AssertionError("the windower must not read the clock")

    for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns"):
        monkeypatch.setattr(time, name, boom)
    stamps = [stamp(i, 30) for i in range(150)]
    a = [(k, win.stamps_ns) for k, win in feed(Windower(), stamps)]
    monkeypatch.undo()
    b = []
    w = Windower()
    for k, s in enumerate(stamps):
        w.add_frame(s, frame(k))
        if k % 7 == 0:
            time.sleep(0.001)
        win = w.poll()
        if win is not None:
            b.append((k, win.stamps_ns))
    assert a == b and len(a) == 7


def test_slow_stream_repeats_frames():
    """Below T/span (8 fps for 16 frames over 2 s) a frame has to be used twice: counted."""
    stamps = [stamp(i, 5) for i in range(40)]
    w = Windower()
    out = feed(w, stamps)
    assert out and all(len(win.frames) == 16 for _, win in out)
    assert all(win.repeated_frames > 0 for _, win in out)
    assert w.counters["windows_with_repeats"] == len(out)
    assert all(np.all(np.diff(win.stamps_ns) >= 0) for _, win in out)


def test_duplicates_dropped():
    stamps = [stamp(i, 30) for i in range(120)]
    clean = [(win.stamps_ns, win.end_ns) for _, win in feed(Windower(), stamps)]
    w = Windower()
    got = []
    for k, s in enumerate(stamps):
        for rep in range(2):  # every frame delivered twice
            w.add_frame(s, frame(k, tag=rep))
            win = w.poll()
            if win is not None:
                got.append(win)
    assert [(win.stamps_ns, win.end_ns) for win in got] == clean
    assert all(frame_id(f)[1] == 0 for win in got for f in win.frames)  # the first copy is kept
    assert w.counters["duplicate_stamps"] == 120
    assert w.counters["frames_in"] == 240 and w.counters["frames_buffered"] == 120


def test_backwards_resets_everything_and_next_window_is_post_reset():
    w = Windower(use_audio=True)
    fps = 30
    first = [stamp(i, fps) for i in range(100)]  # 3.3 s
    for k in range(0, 40):  # audio for the first loop
        w.add_audio(T0 + k * NS // 10, np.ones(1600, np.float32))
    out1 = feed(w, first, tag=1)
    assert out1 and w.audio_buffer_samples > 0
    # The bag loops: stamps start again from the beginning.
    reset_at = len(first)
    out2 = feed(w, first, tag=2, first_id=reset_at)
    assert w.counters["backwards_resets"] == 1
    assert w.last_reset_reason == "backwards"
    assert w.counters["audio_chunks_in"] == 40
    # Next window only after the buffer refilled (57 frames) and it holds only post-reset frames.
    assert out2[0][0] == 56
    for _, win in out2:
        assert all(frame_id(f)[1] == 2 for f in win.frames)
        assert win.reset_epoch == out1[0][1].reset_epoch + 1
        assert win.audio is None  # the old loop's audio was dropped with the reset
    assert w.counters["windows_without_audio"] == len(out2)
    # Window indices keep counting across resets.
    assert out2[0][1].index == out1[-1][1].index + 1


def test_small_reorder_tolerated_when_configured():
    w = Windower(reorder_tolerance_s=0.05)
    stamps = [stamp(i, 30) for i in range(80)]
    feed(w, stamps[:70])
    w.add_frame(stamps[68], frame(999))  # a late frame, 67 ms old
    assert w.counters["out_of_order_drops"] == 1 and w.counters["backwards_resets"] == 0
    w.add_frame(stamps[10], frame(999))  # far back: a reset
    assert w.counters["backwards_resets"] == 1 and w.buffer_len == 1


def test_gap_resets_frame_buffer():
    fps = 30
    before = [stamp(i, fps) for i in range(90)]
    after = [before[-1] + int(0.8 * NS) + round(i * NS / fps) for i in range(90)]
    w = Windower(max_gap_s=0.5)
    out1 = feed(w, before, tag=1)
    out2 = feed(w, after, tag=2)
    assert len(out1) == 3
    assert w.counters["gap_resets"] == 1 and w.last_reset_reason == "gap"
    assert out2[0][0] == 56  # refilled from scratch
    for _, win in out2:
        assert min(win.stamps_ns) >= after[0]
        assert all(frame_id(f)[1] == 2 for f in win.frames)
    # A gap below max_gap_s does not reset (the nearest frames fill the hole; may repeat).
    w2 = Windower(max_gap_s=0.5)
    feed(w2, before)
    feed(w2, [before[-1] + int(0.3 * NS) + round(i * NS / fps) for i in range(60)])
    assert w2.counters["gap_resets"] == 0


def test_stall_produces_nothing_and_never_a_stale_window():
    fps = 30
    stamps = [stamp(i, fps) for i in range(70)]
    w = Windower()
    out = feed(w, stamps)
    assert len(out) == 1
    # The camera stalls: polling goes on (a timer), nothing comes out, ever.
    assert all(w.poll() is None for _ in range(1000))
    # It comes back 5 s later (data time): a gap reset, and no window until the buffer refilled.
    later = [stamps[-1] + 5 * NS + round(i * NS / fps) for i in range(60)]
    out2 = feed(w, later)
    assert [k for k, _ in out2] == [56]
    assert min(out2[0][1].stamps_ns) >= later[0]


def test_count_bound_and_incomplete_windows():
    # A stream much faster than the count bound allows: old frames are evicted by count.
    w = Windower(max_frames=64)
    out = feed(w, [stamp(i, 120) for i in range(600)])
    assert w.buffer_len <= 64 and w.counters["count_evictions"] > 0
    assert out == []  # 64 frames at 120 fps never reach back 1.875 s: no window, and no crash
    w2 = Windower(max_frames=240)
    out2 = feed(w2, [stamp(i, 120) for i in range(600)])
    assert out2 and w2.counters["count_evictions"] > 0 and w2.buffer_len <= 240


def test_manual_reset():
    w = Windower()
    stamps = [stamp(i, 30) for i in range(200)]
    out1 = feed(w, stamps[:100])
    w.reset("model reload")
    assert w.buffer_len == 0 and w.counters["manual_resets"] == 1
    assert w.last_reset_reason == "model reload"
    out2 = feed(w, stamps[100:])
    assert out2[0][0] == 56 and out2[0][1].index == out1[-1][1].index + 1


# ---------------------------------------------------------------------------------- audio
def ramp_chunks(a0, n_chunks, chunk=1600, rate=RATE, first=0):
    """Chunks of a ramp: sample number i (from the ramp's start a0) has value i."""
    for c in range(first, first + n_chunks):
        yield a0 + round(c * chunk * NS / rate), np.arange(c * chunk, (c + 1) * chunk, dtype=np.float32)


def expected_cut(win, a0, rate=RATE, audio_s=2.0):
    """Independent reference: the audio_s seconds (default: the 2 s span) before the last frame."""
    s1 = round((win.end_ns - a0) * rate / NS)
    s0 = s1 - round(audio_s * rate)
    return np.arange(s0, s1, dtype=np.float32), a0 + round(s0 * NS / rate)


def test_audio_cut_exact_to_the_sample_audio_first():
    fps = 30
    a0 = T0 - int(0.3 * NS) + 12345  # audio starts before the video, on its own grid
    w = Windower(use_audio=True, audio_rate=RATE)
    for s, x in ramp_chunks(a0, 70):  # 7 s of audio, all before the frames
        w.add_audio(s, x)
    out = feed(w, [stamp(i, fps) for i in range(180)])
    assert len(out) >= 8
    for _, win in out:
        exp, start = expected_cut(win, a0)
        assert win.audio is not None and win.audio.dtype == np.float32
        np.testing.assert_array_equal(win.audio, exp)
        assert win.audio_start_ns == start and abs(win.audio_start_ns - (win.end_ns - 2 * NS)) <= NS / RATE / 2
        assert win.audio_rate == RATE and win.audio_coverage == 1.0
        # the span the model was trained on, not the first-to-last frame's 15/16 of it
        assert len(win.audio) == 2 * RATE and win.duration_s == pytest.approx(1.875, abs=0.02)
    assert w.counters["windows_with_audio"] == len(out) and w.counters["audio_gaps"] == 0


def test_audio_arriving_after_frames_is_waited_for():
    """Each chunk arrives 150 ms after its last sample: windows wait for it, then come out exact."""
    fps = 30
    a0 = T0 - int(0.5 * NS)  # heard before the first frame, so no window's audio needs zeros
    chunks = list(ramp_chunks(a0, 120))
    stamps = [stamp(i, fps) for i in range(300)]
    w = Windower(use_audio=True, audio_wait_s=0.3)
    out, ci = [], 0
    for k, s in enumerate(stamps):
        # deliver every chunk whose end is at least 150 ms before this frame
        while ci < len(chunks) and chunks[ci][0] + round(1600 * NS / RATE) + int(0.15 * NS) <= s:
            w.add_audio(*chunks[ci])
            ci += 1
            win = w.poll()
            if win is not None:
                out.append((k, win))
        w.add_frame(s, frame(k))
        win = w.poll()
        if win is not None:
            out.append((k, win))
    assert len(out) >= 15
    assert w.counters["audio_waits"] >= len(out) - 1
    assert w.counters["windows_without_audio"] == 0 and w.counters["audio_zero_filled"] == 0
    for k, win in out:
        np.testing.assert_array_equal(win.audio, expected_cut(win, a0)[0])
        assert stamps[k] - win.end_ns <= int(0.3 * NS)  # waited less than audio_wait_s
    assert [win.index for _, win in out] == list(range(len(out)))


def test_missing_audio_does_not_hold_windows_forever():
    w = Windower(use_audio=True, audio_wait_s=0.3)
    out = feed(w, [stamp(i, 30) for i in range(120)])  # the microphone never speaks
    assert [k for k, _ in out] == [56, 71, 86, 101, 116]  # on time, not delayed
    assert all(win.audio is None for _, win in out)
    assert w.counters["windows_without_audio"] == len(out)
    # A microphone that stopped long ago: no waiting either.
    w2 = Windower(use_audio=True, audio_wait_s=0.3)
    for s, x in ramp_chunks(T0, 5):
        w2.add_audio(s, x)
    out2 = feed(w2, [stamp(i, 30) for i in range(120)])
    assert [k for k, _ in out2] == [56, 71, 86, 101, 116] and all(win.audio is None for _, win in out2)
    # the first two windows' 2 s still overlap that 0.5 s of audio (by 0.5 s and by 0.13 s)
    assert w2.counters["audio_low_coverage"] == 2


def test_audio_jittered_stamps_stay_contiguous():
    rng = np.random.default_rng(1)
    a0 = T0 - NS
    w = Windower(use_audio=True, audio_jitter_s=0.01)
    for s, x in ramp_chunks(a0, 300, chunk=320):  # 20 ms chunks, stamps jittered +-4 ms
        w.add_audio(s + int(rng.integers(-4_000_000, 4_000_001)), x)
    out = feed(w, [stamp(i, 30) for i in range(100)])
    assert w.counters["audio_gaps"] == 0 and w.counters["audio_overlaps"] == 0
    assert out
    for _, win in out:
        # Contiguous: the jitter never tears or duplicates samples...
        assert np.all(np.diff(win.audio) == 1)
        # ...and the cut is off by at most the first chunk's jitter (the timeline's origin).
        exp = expected_cut(win, a0)[0]
        assert len(win.audio) == len(exp) and abs(win.audio[0] - exp[0]) <= 64


def test_audio_gap_zero_filled_and_overlap_dropped():
    a0 = T0 - int(0.5 * NS)
    w = Windower(use_audio=True, min_audio_coverage=0.9)
    chunks = list(ramp_chunks(a0, 30))  # 100 ms chunks
    for c, (s, x) in enumerate(chunks):
        if c == 10:
            continue  # one lost chunk: 100 ms of 2 s
        w.add_audio(s, x)
        if c == 15:  # a chunk sent again, shifted by 50 samples: overlaps what is there
            w.add_audio(s + round(50 * NS / RATE), x[50:] * 0 - 1)
    out = feed(w, [stamp(i, 30) for i in range(60)])
    assert w.counters["audio_gaps"] == 1 and w.counters["audio_overlaps"] == 1
    ((_, win),) = out
    exp, _ = expected_cut(win, a0)
    hole = (exp >= 16000) & (exp < 17600)
    np.testing.assert_array_equal(win.audio[~hole], exp[~hole])  # the overlap did not overwrite
    assert np.all(win.audio[hole] == 0)
    assert win.audio_coverage == pytest.approx(1 - 1600 / len(exp))
    assert w.counters["audio_zero_filled"] == 1


AUDIO_S = 5.12  # a model that reads more audio than the 2 s the frames span (bhgap-vitb16-ref)


def test_audio_s_gives_that_much_audio_ending_at_the_window_end():
    fps = 30
    a0 = T0 - int(4 * NS) + 12345  # 4 s of audio before the first frame, on its own grid
    w = Windower(span_s=2.0, use_audio=True, audio_rate=RATE, audio_s=AUDIO_S)
    for s, x in ramp_chunks(a0, 120):
        w.add_audio(s, x)
    out = feed(w, [stamp(i, fps) for i in range(180)])
    assert len(out) >= 8
    n = round(AUDIO_S * RATE)
    for _, win in out:
        end = round((win.end_ns - a0) * RATE / NS)  # the same end sample as without audio_s
        assert win.audio is not None and len(win.audio) == n == 81920
        np.testing.assert_array_equal(win.audio, np.arange(end - n, end, dtype=np.float32))
        assert win.audio_start_ns == a0 + round((end - n) * NS / RATE)
        assert abs(win.audio_start_ns - (win.end_ns - round(AUDIO_S * NS))) <= NS / RATE / 2
        assert win.audio_start_ns < win.start_ns - 3 * NS  # it reaches back before the frames
        assert win.audio_coverage == 1.0 and win.duration_s < 2.0


def test_audio_s_coverage_is_over_the_whole_stretch():
    """The microphone was heard 2.5 s before the first frame: the first window's 5.12 s reach
    0.745 s further back than that; the missing head is zeros, and counts against coverage."""
    a0 = T0 - int(2.5 * NS)
    covered = {}
    for min_coverage in (0.9, 0.8):
        w = Windower(use_audio=True, audio_s=AUDIO_S, min_audio_coverage=min_coverage)
        for s, x in ramp_chunks(a0, 80):
            w.add_audio(s, x)
        (k, win), *_ = feed(w, [stamp(i, 30) for i in range(60)])
        head = round((a0 - (win.end_ns - round(AUDIO_S * NS))) * RATE / NS)  # samples before a0
        assert k == 56 and win.audio_coverage == pytest.approx(1 - head / round(AUDIO_S * RATE))
        covered[min_coverage] = win
    assert covered[0.9].audio is None and 0.8 < covered[0.9].audio_coverage < 0.9
    win = covered[0.8].audio
    assert np.all(win[:head] == 0) and np.array_equal(win[head:], np.arange(0, len(win) - head, dtype=np.float32))


def test_audio_s_live_stream_keeps_enough_audio():
    """Frames and 20 ms chunks as a robot delivers them (each chunk 150 ms after its last
    sample), one minute: once the microphone has been heard for audio_s, every window has all
    of its audio, exact, and the buffer stays bounded."""
    fps, chunk = 30, 320
    w = Windower(use_audio=True, audio_s=AUDIO_S, audio_wait_s=0.3)
    chunks = list(ramp_chunks(T0, 60 * RATE // chunk + 10, chunk=chunk))
    out, ci, max_audio = [], 0, 0
    for i in range(60 * fps):
        s = stamp(i, fps)
        while ci < len(chunks) and chunks[ci][0] + round(chunk * NS / RATE) + int(0.15 * NS) <= s:
            w.add_audio(*chunks[ci])
            ci += 1
            if (win := w.poll()) is not None:
                out.append(win)
        w.add_frame(s, frame(i))
        if (win := w.poll()) is not None:
            out.append(win)
        max_audio = max(max_audio, w.audio_buffer_samples)
    heard = [win for win in out if win.end_ns - T0 >= round(AUDIO_S * NS) + NS // 30]
    assert len(heard) > 100 and w.counters["audio_waits"] >= len(heard)
    for win in heard:
        end = round((win.end_ns - T0) * RATE / NS)
        np.testing.assert_array_equal(win.audio, np.arange(end - 81920, end, dtype=np.float32))
    assert max_audio <= (w.audio_buffer_s + 0.5) * RATE and w.audio_buffer_s >= AUDIO_S + w.audio_wait_s


def test_low_audio_coverage_gives_none():
    w = Windower(use_audio=True, min_audio_coverage=0.9)
    for c, (s, x) in enumerate(ramp_chunks(T0, 30)):
        if c % 3 != 0:  # a third of the audio only
            w.add_audio(s, x)
    out = feed(w, [stamp(i, 30) for i in range(60)])
    ((_, win),) = out
    assert win.audio is None and win.audio_start_ns is None
    assert 0.5 < win.audio_coverage < 0.9
    assert w.counters["windows_without_audio"] == 1 and w.counters["audio_low_coverage"] == 1


def test_audio_backwards_resets_audio_only():
    w = Windower(use_audio=True)
    for s, x in ramp_chunks(T0, 20):
        w.add_audio(s, x)
    w.add_audio(T0, np.zeros(1600, np.float32))  # the mic's clock restarted
    assert w.counters["audio_backwards_resets"] == 1
    assert w.audio_buffer_samples == 1600


def test_memory_bounded_over_ten_minutes():
    """10 min of 30 fps frames and 20 ms audio chunks: the buffers never grow past their bounds."""
    fps, minutes = 30, 10
    w = Windower(use_audio=True)
    frame_bound = int(np.ceil(w.buffer_s * fps)) + 1
    # audio_buffer_s before the newest frame; slack: one frame period (audio is added before
    # the frame at the same time), the chunk straddling the cutoff and the chunk ahead
    audio_bound = int(w.audio_buffer_s * RATE) + RATE // fps + 2 * 320 + 1
    f = np.zeros((4, 4, 3), np.uint8)
    chunk = np.zeros(320, np.float32)
    n_frames = fps * 60 * minutes
    windows = 0
    max_frames = max_audio = max_chunks = 0
    ci = 0
    for i in range(n_frames):
        s = stamp(i, fps)
        while T0 + ci * 20_000_000 <= s:
            w.add_audio(T0 + ci * 20_000_000, chunk)
            ci += 1
        w.add_frame(s, f)
        if w.poll() is not None:
            windows += 1
        max_frames = max(max_frames, w.buffer_len)
        max_audio = max(max_audio, w.audio_buffer_samples)
        max_chunks = max(max_chunks, w.audio_buffer_chunks)
        if i == fps * 60:
            after_one_minute = (max_frames, max_audio, max_chunks)
    assert max_frames <= frame_bound
    assert max_audio <= audio_bound and max_chunks <= audio_bound // 320 + 1
    assert (max_frames, max_audio, max_chunks) == after_one_minute  # no growth after minute 1
    assert w.pending_windows == 0
    assert windows == 1 + (n_frames - 57) // 15
    assert w.counters["windows_with_audio"] == windows


def test_threads_smoke():
    """Audio from one thread, frames and polls from another: no exception, sane output."""
    w = Windower(use_audio=True)
    errors = []
    fps = 30
    n = 600

    def audio():
        try:
            for s, x in ramp_chunks(T0, 200, chunk=160):
                w.add_audio(s, x)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    th = threading.Thread(target=audio)
    th.start()
    wins = []
    for i in range(n):
        w.add_frame(stamp(i, fps), frame(i))
        win = w.poll()
        if win is not None:
            wins.append(win)
    th.join()
    assert not errors and wins
    assert all(len(x.frames) == 16 for x in wins)
    assert [x.index for x in wins] == list(range(len(wins)))


def test_bad_parameters():
    with pytest.raises(ValueError):
        Windower(num_frames=0)
    with pytest.raises(ValueError):
        Windower(stride_s=0)
    with pytest.raises(ValueError):
        Windower(min_audio_coverage=1.5)
    with pytest.raises(ValueError):
        Windower(audio_s=0.0)
    with pytest.raises(ValueError):
        Windower(span_s=2.0, buffer_s=1.0)
