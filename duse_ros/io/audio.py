"""Microphone messages to float32 mono (ROS-free: any object with the message's fields works).

`audio_to_mono` decodes interleaved integer or float samples, averages the channels and resamples
(`duse_ros.io.resample`). Three message layouts have adapters: duse_ros/AudioChunk,
audio_common_msgs/AudioDataStamped (ros-drivers audio_common, ROS 2 branch) and
audio_common_msgs/AudioStamped (mgonzs13 audio_common).

`AUDIO_MESSAGES` is the one table of the audio message family, by type name: what the header
says a message holds (the size check before decoding), the conversion, and a builder of a message
from samples. The node, the `audio.type` parameter's choices, rosbag I/O and duse-make-bag read it.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from duse_ros.io.conversions import ConversionError, byte_buffer, positive_int
from duse_ros.io.resample import resample

# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SampleFormat:
    dtype: np.dtype
    full_scale: float  # value that maps to 1.0
    offset: float = 0.0  # the zero level (128 for unsigned 8-bit)


_SAMPLE_FORMATS: dict[str, _SampleFormat] = {
    "S16LE": _SampleFormat(np.dtype("<i2"), 32768.0),
    "S32LE": _SampleFormat(np.dtype("<i4"), 2147483648.0),
    "F32LE": _SampleFormat(np.dtype("<f4"), 1.0),
    "U8": _SampleFormat(np.dtype("u1"), 128.0, 128.0),
    "S8": _SampleFormat(np.dtype("i1"), 128.0),
}
_SAMPLE_FORMAT_ALIASES = {"INT16": "S16LE", "INT32": "S32LE", "FLOAT32": "F32LE", "UINT8": "U8", "INT8": "S8"}
SUPPORTED_SAMPLE_FORMATS: tuple[str, ...] = tuple(_SAMPLE_FORMATS)


def _sample_format(name: Any) -> _SampleFormat:
    key = str(name).strip().upper()
    key = _SAMPLE_FORMAT_ALIASES.get(key, key)
    if key not in _SAMPLE_FORMATS:
        raise ConversionError(
            f"sample_format {name!r} is not supported; use one of {', '.join(SUPPORTED_SAMPLE_FORMATS)} "
            "(little-endian, interleaved)"
        )
    return _SAMPLE_FORMATS[key]


def _decode_samples(samples: Any, fmt: _SampleFormat, source: str) -> np.ndarray:
    """Interleaved samples in the format's dtype (native byte order).

    Bytes-like input (bytes, bytearray, memoryview, array.array('B'), uint8 numpy arrays) is the
    raw little-endian encoding. Any other array or list holds sample values (e.g. the typed
    int16_data/float32_data arrays of audio_common_msgs/AudioStamped).
    """
    raw = (
        isinstance(samples, (bytes, bytearray, memoryview))
        or (isinstance(samples, array.array) and samples.typecode == "B")
        or (isinstance(samples, np.ndarray) and samples.dtype == np.uint8)
    )
    if raw:
        buf = byte_buffer(samples, source)
        size = fmt.dtype.itemsize
        if buf.size % size:
            raise ConversionError(
                f"{source} has {buf.size} bytes, not a multiple of the {size}-byte sample size of {fmt.dtype.str}"
            )
        return np.frombuffer(buf, dtype=fmt.dtype).astype(fmt.dtype.newbyteorder("="), copy=False)
    try:
        values = np.asarray(samples)
    except (TypeError, ValueError) as error:
        raise ConversionError(f"{source} is not an array of samples: {error}") from None
    if values.dtype == object or values.dtype.kind not in "iuf" or values.ndim > 1:
        raise ConversionError(
            f"{source} must be a flat array of numbers; got dtype {values.dtype}, shape {values.shape}"
        )
    values = values.reshape(-1)
    if fmt.dtype.kind in "iu":
        if values.dtype.kind == "f":
            raise ConversionError(f"{source} holds floats but the sample format is integer ({fmt.dtype.str})")
        info = np.iinfo(fmt.dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ConversionError(
                f"{source} holds values in [{values.min()}, {values.max()}], "
                f"outside {fmt.dtype.name} [{info.min}, {info.max}]"
            )
    return values.astype(fmt.dtype.newbyteorder("="), copy=False)


def audio_to_mono(
    samples: Any,
    sample_format: Any,
    channels: Any,
    sample_rate: Any,
    target_rate: Any = None,
    *,
    source: str = "audio data",
) -> np.ndarray:
    """Interleaved audio as float32 mono in [-1, 1] at `target_rate` (at `sample_rate` when None).

    `sample_format`: S16LE, S32LE, F32LE, U8 (offset binary, 128 = silence) or S8; int16, int32,
    float32, uint8, int8 are accepted as aliases. Integers are divided by their full scale
    (32768, 2**31, 128); floats are clipped to [-1, 1] and must be finite. Channels are averaged.
    This resamples one buffer in isolation (zero padding at both ends); for a stream of chunks
    convert each chunk with `target_rate=None` and feed one `StreamResampler` per stream.
    """
    fmt = _sample_format(sample_format)
    channels = positive_int(channels, "channels")
    sample_rate = positive_int(sample_rate, "sample_rate")
    target_rate = sample_rate if target_rate is None else positive_int(target_rate, "target_rate")
    values = _decode_samples(samples, fmt, source)
    if values.size == 0:
        raise ConversionError(f"{source} is empty: no samples to convert")
    if values.size % channels:
        raise ConversionError(
            f"{source} has {values.size} samples ({values.size * fmt.dtype.itemsize} bytes), not a multiple of "
            f"channels={channels} (frames of {channels * fmt.dtype.itemsize} bytes): the chunk is cut mid-frame "
            "or channels is wrong"
        )
    if fmt.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            raise ConversionError(f"{source} holds {int((~finite).sum())} NaN or infinite samples")
    frames = values.reshape(-1, channels)
    mono = frames.mean(axis=1, dtype=np.float64) if channels > 1 else frames[:, 0].astype(np.float64)
    mono = ((mono - fmt.offset) / fmt.full_scale).astype(np.float32)
    if fmt.dtype.kind == "f":
        np.clip(mono, -1.0, 1.0, out=mono)
    if target_rate == sample_rate:
        return mono
    return resample(mono, sample_rate, target_rate)


# ---- message adapters ----------------------------------------------------------------------


def audio_chunk_to_mono(msg: Any, target_rate: Any = None) -> np.ndarray:
    """duse_ros/msg/AudioChunk (sample_rate, channels, sample_format, data) to float32 mono."""
    return audio_to_mono(
        msg.data, msg.sample_format, msg.channels, msg.sample_rate, target_rate, source="AudioChunk.data"
    )


def audio_data_stamped_to_mono(
    msg: Any,
    *,
    channels: Any,
    sample_rate: Any,
    sample_format: Any = "S16LE",
    coding_format: str = "wave",
    target_rate: Any = None,
) -> np.ndarray:
    """audio_common_msgs/AudioDataStamped (ros-drivers audio_common, ROS 2 branch) to float32 mono.

    The message holds only `header` and `audio.data` (uint8[]); the format comes from the
    capture node's AudioInfo (topic `audio_info`) or its parameters: `channels`, `sample_rate`,
    `sample_format` (GStreamer names such as S16LE) and `coding_format`. audio_capture's default
    `format` parameter is "mp3", which duse_ros cannot decode: run it with format:=wave.
    """
    coding = str(coding_format).strip().lower()
    if coding not in ("wave", "wav", "raw", "pcm", ""):
        raise ConversionError(
            f"AudioInfo.coding_format {coding_format!r}: duse_ros needs raw PCM; start audio_capture with "
            "format:=wave (its default is mp3)"
        )
    return audio_to_mono(
        msg.audio.data, sample_format, channels, sample_rate, target_rate, source="AudioDataStamped.audio.data"
    )


# PortAudio sample-format flags used by mgonzs13/audio_common's AudioInfo.format, and the
# AudioData array each one fills (audio_capturer_node.cpp).
PORTAUDIO_FORMATS: dict[int, tuple[str, str]] = {
    1: ("F32LE", "float32_data"),  # paFloat32
    2: ("S32LE", "int32_data"),  # paInt32
    8: ("S16LE", "int16_data"),  # paInt16
    16: ("S8", "int8_data"),  # paInt8
    32: ("U8", "uint8_data"),  # paUInt8
}


def audio_stamped_to_mono(msg: Any, target_rate: Any = None) -> np.ndarray:
    """audio_common_msgs/AudioStamped (mgonzs13 audio_common) to float32 mono.

    Layout: header, audio{audio_data{float32_data, int32_data, int16_data, int8_data,
    uint8_data}, info{format, channels, rate, chunk}}; `info.format` is a PortAudio flag
    (see PORTAUDIO_FORMATS) naming which typed array carries the interleaved samples.
    """
    info = msg.audio.info
    fmt = int(info.format)
    if fmt not in PORTAUDIO_FORMATS:
        known = ", ".join(f"{code} ({name})" for code, (name, _) in PORTAUDIO_FORMATS.items())
        raise ConversionError(
            f"AudioStamped.audio.info.format={fmt} is not a supported PortAudio format; expected one of {known}"
        )
    sample_format, field = PORTAUDIO_FORMATS[fmt]
    values = getattr(msg.audio.audio_data, field)
    if len(values) == 0:
        filled = [name for _, name in PORTAUDIO_FORMATS.values() if len(getattr(msg.audio.audio_data, name, ())) > 0]
        raise ConversionError(
            f"AudioStamped.audio.audio_data.{field} is empty although info.format={fmt} selects it"
            + (f"; data is in {', '.join(filled)}" if filled else "")
        )
    return audio_to_mono(
        values, sample_format, info.channels, info.rate, target_rate, source=f"AudioStamped.audio.audio_data.{field}"
    )


# ---- the audio message family ---------------------------------------------------------------


_STAMPED_ARRAYS = {
    "float32_data": "float32",
    "int32_data": "int32",
    "int16_data": "int16",
    "int8_data": "int8",
    "uint8_data": "uint8",
}
AUDIO_CHUNK = "duse_ros/msg/AudioChunk"
AUDIO_DATA_STAMPED = "audio_common_msgs/msg/AudioDataStamped"  # ros-drivers/audio_common
AUDIO_STAMPED = "audio_common_msgs/msg/AudioStamped"  # mgonzs13/audio_common
PA_INT16 = 8  # PortAudio's paInt16 (PORTAUDIO_FORMATS)


@dataclass(frozen=True)
class PcmFormat:
    """The format of a stream whose messages do not carry it: AudioDataStamped's comes from the
    capture node's AudioInfo or its parameters (affect_node's audio.* parameters)."""

    sample_rate: int = 16000
    channels: int = 1
    sample_format: str = "S16LE"


@dataclass(frozen=True)
class AudioMessage:
    """One audio message type. `types` maps type names to message classes (a rosbags typestore's
    `types`, or a dict of rclpy classes); `frames` are int16 samples, shape (samples, channels)."""

    type_name: str
    option: str  # duse-make-bag's --audio-msg value
    layout: str | None  # the audio_common variant (io/rosbag.py AUDIO_COMMON_LAYOUTS); None: duse_ros's own
    extent: Callable[[Any, PcmFormat], tuple[int, int]]  # (sample rate, samples per channel at most), header only
    to_mono: Callable[[Any, PcmFormat], tuple[np.ndarray, int]]  # (float32 mono, its sample rate)
    build: Callable[[Mapping[str, Any], Any, np.ndarray, int], Any]  # (types, header, frames, rate) -> message


def _chunk_extent(msg: Any, fmt: PcmFormat) -> tuple[int, int]:
    return int(msg.sample_rate), len(msg.data) // max(1, int(msg.channels))


def _chunk_to_mono(msg: Any, fmt: PcmFormat) -> tuple[np.ndarray, int]:
    return audio_chunk_to_mono(msg), int(msg.sample_rate)


def _chunk_build(types: Mapping[str, Any], header: Any, frames: np.ndarray, rate: int) -> Any:
    data = np.frombuffer(frames.astype("<i2").tobytes(), np.uint8)
    return types[AUDIO_CHUNK](
        header=header, sample_rate=rate, channels=frames.shape[1], sample_format="S16LE", data=data
    )


def _data_stamped_extent(msg: Any, fmt: PcmFormat) -> tuple[int, int]:
    return int(fmt.sample_rate), len(msg.audio.data) // max(1, int(fmt.channels))


def _data_stamped_to_mono(msg: Any, fmt: PcmFormat) -> tuple[np.ndarray, int]:
    mono = audio_data_stamped_to_mono(
        msg, channels=fmt.channels, sample_rate=fmt.sample_rate, sample_format=fmt.sample_format
    )
    return mono, int(fmt.sample_rate)


def _data_stamped_build(types: Mapping[str, Any], header: Any, frames: np.ndarray, rate: int) -> Any:
    data = types["audio_common_msgs/msg/AudioData"](data=np.frombuffer(frames.astype("<i2").tobytes(), np.uint8))
    return types[AUDIO_DATA_STAMPED](header=header, audio=data)


def _stamped_extent(msg: Any, fmt: PcmFormat) -> tuple[int, int]:
    data = msg.audio.audio_data
    longest = max(len(getattr(data, field)) for _, field in PORTAUDIO_FORMATS.values())
    return int(msg.audio.info.rate), longest // max(1, int(msg.audio.info.channels))


def _stamped_to_mono(msg: Any, fmt: PcmFormat) -> tuple[np.ndarray, int]:
    return audio_stamped_to_mono(msg), int(msg.audio.info.rate)


def _stamped_build(types: Mapping[str, Any], header: Any, frames: np.ndarray, rate: int) -> Any:
    arrays = {field: np.zeros(0, np.dtype(dtype)) for field, dtype in _STAMPED_ARRAYS.items()}
    arrays["int16_data"] = frames.reshape(-1).astype(np.int16)
    info = types["audio_common_msgs/msg/AudioInfo"](
        format=PA_INT16, channels=frames.shape[1], rate=rate, chunk=frames.shape[0]
    )
    audio = types["audio_common_msgs/msg/Audio"](
        audio_data=types["audio_common_msgs/msg/AudioData"](**arrays), info=info
    )
    return types[AUDIO_STAMPED](header=header, audio=audio)


AUDIO_MESSAGES: dict[str, AudioMessage] = {
    m.type_name: m
    for m in (
        AudioMessage(AUDIO_CHUNK, "chunk", None, _chunk_extent, _chunk_to_mono, _chunk_build),
        AudioMessage(
            AUDIO_DATA_STAMPED,
            "audio_data_stamped",
            "ros-drivers",
            _data_stamped_extent,
            _data_stamped_to_mono,
            _data_stamped_build,
        ),
        AudioMessage(AUDIO_STAMPED, "audio_stamped", "mgonzs13", _stamped_extent, _stamped_to_mono, _stamped_build),
    )
}
AUDIO_TYPES: tuple[str, ...] = tuple(AUDIO_MESSAGES)
