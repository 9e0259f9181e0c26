"""AudioStream (ROS-free): continuous resampling with stamps, restarts, and the input limits that
keep a hostile chunk from allocating anything."""

from __future__ import annotations

import numpy as np
import pytest

from duse_ros.affect.audio_stream import AudioRefused, AudioStream
from duse_ros.io.resample import MAX_PHASES, StreamResampler
from duse_ros.timebase import NS


def tone(rate: int, seconds: float, hz: float = 440.0, start_s: float = 0.0) -> np.ndarray:
    t = start_s + np.arange(int(round(rate * seconds))) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_chunks_make_one_continuous_stream_with_counted_stamps():
    stream = AudioStream(16000)
    outputs, stamps = [], []
    for i in range(10):  # 10 x 0.1 s at 48 kHz
        stamp, out = stream.push(5 * NS + i * NS // 10, tone(48000, 0.1, start_s=i * 0.1), 48000)
        outputs.append(out)
        stamps.append(stamp)
    total = sum(o.size for o in outputs)
    assert 16000 - 60 <= total <= 16000 and stream.restarts == 0  # all but the filter's half length
    counted = np.cumsum([0] + [o.size for o in outputs[:-1]])
    assert stamps == [5 * NS + int(n) * NS // 16000 for n in counted]
    joined = np.concatenate(outputs)  # zero-phase: output n is the input at n / 16 kHz
    assert np.allclose(joined[2000:3000], tone(16000, 1.0)[2000:3000], atol=2e-3)


def test_a_stamp_jump_or_a_new_rate_restarts_the_stream_and_is_counted():
    stream = AudioStream(16000)
    stream.push(0, tone(16000, 0.1), 16000)
    stamp, _ = stream.push(NS, tone(16000, 0.1), 16000)  # 0.9 s missing
    assert stream.restarts == 1 and stamp == NS
    stream.push(NS + NS // 10, tone(48000, 0.1), 48000)
    assert stream.restarts == 2


@pytest.mark.parametrize("rate", [2**32 - 1, 1000003, 999, 1, 0])
def test_rates_outside_the_limits_are_refused_before_anything_is_allocated(rate):
    stream = AudioStream(16000)
    with pytest.raises(AudioRefused, match="outside the accepted 1000..384000 Hz") as err:
        stream.push(0, np.zeros(10, np.float32), rate)
    assert err.value.kind == "sample_rate" and stream.refused["sample_rate"] == 1
    assert stream._resampler is None


def test_long_chunks_are_refused_and_limits_are_configurable():
    stream = AudioStream(16000, min_rate=8000, max_rate=48000, max_chunk_s=0.5)
    with pytest.raises(AudioRefused, match="more than audio.max_chunk_s") as err:
        stream.check(16000, 8001)
    assert err.value.kind == "chunk_too_long"
    stream.check(16000, 8000)  # exactly the limit: taken
    with pytest.raises(AudioRefused):
        stream.check(96000, 10)
    assert dict(stream.refused) == {"chunk_too_long": 1, "sample_rate": 1}


@pytest.mark.parametrize("rate", [1000003 // 3, 383999, 44101, 1009])
def test_awkward_rates_get_a_bounded_filter_and_a_near_ratio(rate):
    """A prime-ish rate's exact ratio to 16 kHz would need up to 16000 phases (hundreds of MB of
    taps); the nearest ratio within MAX_PHASES is used instead, off by a few ppm."""
    r = StreamResampler(rate, 16000)
    assert max(r.up, r.down) <= MAX_PHASES and not r.exact
    assert abs(r.up / r.down / (16000 / rate) - 1) < 5e-5
    assert r._taps.nbytes < 2 * 2**20
    out = r.process(tone(rate, 0.5))
    # All but the filter's half length: about 50 samples of the lower rate.
    assert 8000 - 0.06 * 16000 < out.size <= 8000 and np.isfinite(out).all() and np.abs(out).max() < 0.6


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000, 192000, 384000])
def test_common_rates_stay_exact(rate):
    assert StreamResampler(rate, 16000).exact
