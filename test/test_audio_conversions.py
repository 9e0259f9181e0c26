"""Audio chunks to float32 mono at the model rate: sample formats, channel mixing, resampling
quality (frequency, amplitude, anti-aliasing, chunked = one-shot), the three message layouts the
affect node accepts, and every malformed input raising ConversionError."""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from duse_ros.io.audio import (
    AUDIO_MESSAGES,
    AUDIO_TYPES,
    PORTAUDIO_FORMATS,
    PcmFormat,
    audio_chunk_to_mono,
    audio_data_stamped_to_mono,
    audio_stamped_to_mono,
    audio_to_mono,
)
from duse_ros.io.conversions import ConversionError
from duse_ros.io.resample import StreamResampler, resample

# ---- formats and channels ------------------------------------------------------------------


def test_s16le_full_scale():
    values = np.array([-32768, -16384, 0, 16384, 32767], dtype="<i2")
    out = audio_to_mono(values.tobytes(), "S16LE", 1, 16000)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1.0, -0.5, 0.0, 0.5, 32767 / 32768])


@pytest.mark.parametrize(
    "fmt,dtype,values,expected",
    [
        ("S32LE", "<i4", [-(2**31), 0, 2**30, 2**31 - 1], [-1.0, 0.0, 0.5, (2**31 - 1) / 2**31]),
        ("F32LE", "<f4", [-1.0, -0.25, 0.0, 0.75], [-1.0, -0.25, 0.0, 0.75]),
        ("U8", "u1", [0, 64, 128, 255], [-1.0, -0.5, 0.0, 127 / 128]),
        ("S8", "i1", [-128, -64, 0, 127], [-1.0, -0.5, 0.0, 127 / 128]),
    ],
)
def test_other_formats(fmt, dtype, values, expected):
    out = audio_to_mono(np.array(values, dtype=dtype).tobytes(), fmt, 1, 16000)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def test_float_input_is_clipped_to_unit_range():
    out = audio_to_mono(np.array([-3.0, 2.0, 0.5], "<f4").tobytes(), "F32LE", 1, 16000)
    np.testing.assert_array_equal(out, [-1.0, 1.0, 0.5])


@pytest.mark.parametrize("name", ["int16", "INT16", "s16le", " S16LE "])
def test_format_aliases(name):
    assert audio_to_mono(np.array([16384], "<i2").tobytes(), name, 1, 16000)[0] == 0.5


def test_little_endian_regardless_of_host():
    raw = bytes([0x00, 0x40])  # 0x4000 = 16384 little-endian
    assert audio_to_mono(raw, "S16LE", 1, 16000)[0] == 0.5


@pytest.mark.parametrize(
    "container",
    [
        lambda v: v.tobytes(),
        lambda v: bytearray(v.tobytes()),
        lambda v: memoryview(v.tobytes()),
        lambda v: array.array("B", v.tobytes()),
        lambda v: np.frombuffer(v.tobytes(), np.uint8),  # raw bytes
        lambda v: v,
        lambda v: array.array("h", v.tolist()),
        lambda v: v.tolist(),  # sample values
    ],
)
def test_byte_and_value_containers(container):
    values = np.array([-32768, 0, 16384, -8192], dtype=np.int16)
    out = audio_to_mono(container(values), "S16LE", 1, 16000)
    np.testing.assert_array_equal(out, [-1.0, 0.0, 0.5, -0.25])


def test_channels_are_averaged():
    stereo = np.array([[0.5, -0.5], [1.0, 0.0], [0.25, 0.75]], dtype="<f4")
    np.testing.assert_allclose(audio_to_mono(stereo.tobytes(), "F32LE", 2, 16000), [0.0, 0.5, 0.5])
    six = np.arange(12, dtype="<i2").reshape(2, 6) * 1000
    np.testing.assert_allclose(audio_to_mono(six.tobytes(), "S16LE", 6, 16000), six.mean(axis=1) / 32768, rtol=1e-6)


# ---- resampling ----------------------------------------------------------------------------


def tone(freq, rate, seconds=1.0, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def level_db(signal, freq, rate):
    """Amplitude of the component at `freq` in dB re full-scale sine (Hann window, 1 Hz bins)."""
    window = np.hanning(signal.size)
    spectrum = np.abs(np.fft.rfft(signal * window)) / (window.sum() / 2)
    k = int(round(freq * signal.size / rate))
    return 20 * np.log10(spectrum[max(k - 2, 0) : k + 3].max() + 1e-12)


@pytest.mark.parametrize("source", [48000, 44100, 22050, 8000])
def test_440hz_keeps_frequency_and_amplitude(source):
    out = resample(tone(440, source, 2.0), source, 16000)
    assert out.size == 32000
    core = out[800:-800]  # away from the zero-padded ends
    spectrum = np.abs(np.fft.rfft(core * np.hanning(core.size)))
    peak_hz = np.argmax(spectrum) * 16000 / core.size
    assert abs(peak_hz - 440) < 16000 / core.size
    rms = np.sqrt(np.mean(core.astype(np.float64) ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    # and sample by sample against the ideal 16 kHz sine
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(out.size) / 16000)
    assert np.abs(out - ideal)[800:-800].max() < 1e-3


@pytest.mark.parametrize("source", [48000, 44100])
def test_anti_aliasing_when_going_to_16k(source):
    # An 8.1 kHz tone is above 16 kHz's Nyquist (8 kHz) and would fold onto 7.9 kHz; 12 kHz
    # would fold onto 4 kHz. Plain decimation keeps them at full level, the filter removes them.
    for freq, alias in [(8100, 7900), (12000, 4000), (20000, 4000)]:
        out = resample(tone(freq, source, 2.0), source, 16000)[1000:-1000]
        assert level_db(out, alias, 16000) < -70, (freq, level_db(out, alias, 16000))
    if source == 48000:
        naive = tone(8100, source, 2.0)[::3][1000:-1000]
        assert level_db(naive, 7900, 16000) > -10  # the 0.5-amplitude alias the filter prevents
    # The passband is flat to 90 % of 8 kHz; a real 7.9 kHz tone lies in the transition band
    # (7.2-8 kHz) and is attenuated, by design, rather than risking aliases.
    for freq, (low, high) in [(1000, (-6.05, -5.95)), (7000, (-6.1, -5.9)), (7900, (-80, -20))]:
        out = resample(tone(freq, source, 2.0), source, 16000)[1000:-1000]
        assert low < level_db(out, freq, 16000) < high, (freq, level_db(out, freq, 16000))


@pytest.mark.parametrize(
    "source,target", [(48000, 16000), (44100, 16000), (8000, 16000), (16000, 16000), (22050, 16000)]
)
def test_chunked_stream_equals_one_shot(source, target):
    signal = np.random.default_rng(0).standard_normal(source // 2).astype(np.float32) * 0.1
    whole = resample(signal, source, target)
    resampler = StreamResampler(source, target)
    cuts = np.sort(np.random.default_rng(1).choice(signal.size, 30, replace=False))
    pieces = [resampler.process(chunk) for chunk in np.split(signal, cuts)] + [resampler.flush()]
    streamed = np.concatenate(pieces)
    assert streamed.size == whole.size == -(-signal.size * target // source)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_one_sample_chunks_and_empty_chunks():
    signal = np.random.default_rng(2).standard_normal(3000).astype(np.float32)
    resampler = StreamResampler(44100, 16000)
    pieces = [resampler.process(signal[i : i + 1]) for i in range(signal.size)]
    pieces += [resampler.process(np.zeros(0, np.float32)), resampler.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), resample(signal, 44100, 16000), atol=1e-6)


def test_stream_lag_is_small_and_flush_resets():
    resampler = StreamResampler(48000, 16000)
    first = resampler.process(np.zeros(480, np.float32))  # 10 ms in
    assert 160 - 4 * 16 <= first.size < 160  # under 4 ms held back
    resampler.flush()
    again = resampler.process(np.zeros(480, np.float32))
    assert again.size == first.size


def test_audio_to_mono_resamples_and_equal_rates_pass_through():
    raw = (tone(440, 48000) * 32767).astype("<i2").tobytes()
    out = audio_to_mono(raw, "S16LE", 1, 48000, 16000)
    assert out.size == 16000 and out.dtype == np.float32
    same = audio_to_mono(raw, "S16LE", 1, 48000, 48000)
    assert same.size == 48000


# ---- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(samples=b"\x00\x01\x02", sample_format="S16LE", channels=1, sample_rate=16000), ["3 bytes", "2-byte"]),
        (dict(samples=bytes(6), sample_format="S16LE", channels=2, sample_rate=16000), ["3 samples", "channels=2"]),
        (dict(samples=bytes(12), sample_format="S32LE", channels=2, sample_rate=16000), ["channels=2", "8 bytes"]),
        (
            dict(samples=bytes(4), sample_format="S24LE", channels=1, sample_rate=16000),
            ["sample_format", "S24LE", "S16LE"],
        ),
        (dict(samples=bytes(4), sample_format="mp3", channels=1, sample_rate=16000), ["sample_format"]),
        (dict(samples=bytes(4), sample_format="S16LE", channels=0, sample_rate=16000), ["channels", "positive"]),
        (dict(samples=bytes(4), sample_format="S16LE", channels=1, sample_rate=0), ["sample_rate", "positive"]),
        (dict(samples=bytes(4), sample_format="S16LE", channels=1, sample_rate=-48000), ["sample_rate"]),
        (dict(samples=bytes(4), sample_format="S16LE", channels=1, sample_rate=44100.5), ["sample_rate", "integer"]),
        (dict(samples=bytes(4), sample_format="S16LE", channels=1, sample_rate=16000, target_rate=0), ["target_rate"]),
        (dict(samples=b"", sample_format="S16LE", channels=1, sample_rate=16000), ["empty"]),
        (
            dict(
                samples=np.array([0.0, np.nan], "<f4").tobytes(), sample_format="F32LE", channels=1, sample_rate=16000
            ),
            ["NaN"],
        ),
        (dict(samples=[0, 40000], sample_format="S16LE", channels=1, sample_rate=16000), ["outside int16"]),
        (dict(samples=[0.1, 0.2], sample_format="S16LE", channels=1, sample_rate=16000), ["floats", "integer"]),
        (dict(samples="abc", sample_format="S16LE", channels=1, sample_rate=16000), ["array of numbers"]),
    ],
)
def test_malformed_audio(kwargs, words):
    with pytest.raises(ConversionError) as caught:
        audio_to_mono(**kwargs)
    for word in words:
        assert word in str(caught.value), str(caught.value)


# ---- message layouts -----------------------------------------------------------------------


@dataclass
class Header:
    stamp: tuple = (0, 0)
    frame_id: str = "mic"


@dataclass
class AudioChunk:
    """duse_ros/msg/AudioChunk's fields."""

    sample_rate: int
    channels: int
    sample_format: str
    data: bytes
    header: Header = field(default_factory=Header)


def stereo_s16(seconds=0.5, rate=48000):
    left = tone(440, rate, seconds)
    return (np.stack([left, left], axis=1) * 32767).astype("<i2")


def test_audio_chunk_adapter():
    samples = stereo_s16()
    out = audio_chunk_to_mono(AudioChunk(48000, 2, "S16LE", samples.tobytes()), target_rate=16000)
    assert out.size == 8000
    assert level_db(out[400:-400], 440, 16000) == pytest.approx(20 * np.log10(0.5), abs=0.05)
    with pytest.raises(ConversionError, match="AudioChunk.data"):
        audio_chunk_to_mono(AudioChunk(48000, 2, "S16LE", samples.tobytes()[:-2]))


def test_audio_chunk_adapter_on_generated_message():
    import duse_ros.msg as msg_module

    msg = msg_module.AudioChunk(
        sample_rate=48000, channels=2, sample_format=msg_module.AudioChunk.FORMAT_S16LE, data=stereo_s16(0.1).tobytes()
    )
    assert audio_chunk_to_mono(msg, 16000).size == 1600


def test_audio_data_stamped_adapter():
    # ros-drivers audio_common (ROS 2): AudioDataStamped{header, audio: AudioData{uint8[] data}}
    msg = SimpleNamespace(header=Header(), audio=SimpleNamespace(data=array.array("B", stereo_s16().tobytes())))
    out = audio_data_stamped_to_mono(msg, channels=2, sample_rate=48000, sample_format="S16LE", target_rate=16000)
    assert out.size == 8000
    with pytest.raises(ConversionError, match="format:=wave"):
        audio_data_stamped_to_mono(msg, channels=2, sample_rate=48000, coding_format="mp3")
    with pytest.raises(ConversionError, match="AudioDataStamped.audio.data"):
        audio_data_stamped_to_mono(msg, channels=7, sample_rate=48000)


def audio_stamped(fmt: int, channels=1, rate=16000, **arrays):
    """mgonzs13 audio_common: AudioStamped{header, audio: Audio{audio_data: AudioData{float32_data,
    int32_data, int16_data, int8_data, uint8_data}, info: AudioInfo{format, channels, rate, chunk}}}
    with rclpy's array types for each field."""
    typecodes = {"float32_data": "f", "int32_data": "i", "int16_data": "h", "int8_data": "b", "uint8_data": "B"}
    data = SimpleNamespace(**{name: array.array(code, arrays.get(name, [])) for name, code in typecodes.items()})
    count = max(len(v) for v in vars(data).values()) // channels
    info = SimpleNamespace(format=fmt, channels=channels, rate=rate, chunk=count)
    return SimpleNamespace(header=Header(), audio=SimpleNamespace(audio_data=data, info=info))


@pytest.mark.parametrize(
    "fmt,name,values,expected",
    [
        (8, "int16_data", [-32768, 16384], [-1.0, 0.5]),
        (1, "float32_data", [-0.25, 0.5], [-0.25, 0.5]),
        (2, "int32_data", [-(2**31), 2**30], [-1.0, 0.5]),
        (16, "int8_data", [-128, 64], [-1.0, 0.5]),
        (32, "uint8_data", [0, 192], [-1.0, 0.5]),
    ],
)
def test_audio_stamped_adapter_formats(fmt, name, values, expected):
    assert PORTAUDIO_FORMATS[fmt][1] == name
    out = audio_stamped_to_mono(audio_stamped(fmt, **{name: values}))
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_audio_stamped_adapter_stereo_and_resampling():
    samples = stereo_s16(0.5, 44100).reshape(-1).tolist()
    out = audio_stamped_to_mono(audio_stamped(8, channels=2, rate=44100, int16_data=samples), target_rate=16000)
    assert out.size == 8000


def test_audio_stamped_adapter_malformed():
    with pytest.raises(ConversionError, match=r"int16_data is empty.*float32_data"):
        audio_stamped_to_mono(audio_stamped(8, float32_data=[0.1, 0.2]))
    with pytest.raises(ConversionError, match=r"info.format=4 .*8 \(S16LE\)"):
        audio_stamped_to_mono(audio_stamped(4, int32_data=[1, 2]))  # paInt24: never published
    with pytest.raises(ConversionError, match="channels=2"):
        audio_stamped_to_mono(audio_stamped(8, channels=2, int16_data=[1, 2, 3]))
    with pytest.raises(ConversionError, match="sample_rate"):
        audio_stamped_to_mono(audio_stamped(8, rate=0, int16_data=[1, 2]))


@pytest.mark.parametrize("type_name", list(AUDIO_MESSAGES))
def test_the_audio_table_builds_sizes_and_converts_each_type(type_name):
    """One entry per message type: a message built from samples reads back (size from the header
    alone, then the samples), through the typestore layout the entry names."""
    from duse_ros.io.rosbag import typestore

    audio = AUDIO_MESSAGES[type_name]
    store = typestore(audio.layout)
    t = store.types
    frames = (np.arange(-800, 800, dtype=np.int16).reshape(-1, 2) * 37).astype(np.int16)  # 800 stereo frames
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=5, nanosec=7), frame_id="mic")
    msg = audio.build(t, header, frames, 22050)
    assert msg.__msgtype__ == type_name
    fmt = PcmFormat(sample_rate=22050, channels=2, sample_format="S16LE")  # AudioDataStamped's AudioInfo
    rate, most = audio.extent(msg, fmt)  # an upper bound before decoding: bytes for byte layouts
    assert rate == 22050 and 800 <= most <= 800 * 2
    mono, rate = audio.to_mono(msg, fmt)
    assert rate == 22050
    np.testing.assert_allclose(mono, frames.astype(np.float64).mean(axis=1) / 32768, atol=1e-6)


def test_every_reader_of_audio_types_reads_the_one_table():
    from duse_ros.affect.settings import BY_NAME
    from duse_ros.io import rosbag
    from duse_ros.tools import make_bag

    assert BY_NAME["audio.type"].choices == AUDIO_TYPES == tuple(AUDIO_MESSAGES) == rosbag.AUDIO_TYPES
    assert BY_NAME["audio.type"].default == AUDIO_TYPES[0] == "duse_ros/msg/AudioChunk"
    assert {m.type_name for m in make_bag.AUDIO_MSGS.values()} == set(AUDIO_TYPES)
    assert {t for t, layout in rosbag.DEFAULT_LAYOUT.items() if t in AUDIO_TYPES} == {
        t for t, m in AUDIO_MESSAGES.items() if m.layout
    }
    assert all(m.layout is None or m.layout in rosbag.AUDIO_COMMON_LAYOUTS for m in AUDIO_MESSAGES.values())
