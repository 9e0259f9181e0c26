"""ROS message payloads to numpy arrays: camera images to RGB uint8, microphone audio to float32 mono.

ROS-free: every function reads only the message's fields (duck typing), so a real
`sensor_msgs.msg.Image` works and so does any object with the same attributes.

Images (`image_to_rgb`) follow cv_bridge's `imgmsg_to_cv2(msg, "rgb8")`: the same size checks,
the same byte swap for big-endian 16-bit data and the same `cv2.cvtColor` codes (taken from
cv_bridge's `getConversionCodes`, vision_opencv rolling), so lossless encodings give identical
pixels. 16-bit encodings are scaled to 8 bits the way cv_bridge does it, `round(v * 255 / 65535)`,
unless `significant_bits` says the sensor fills fewer bits (see `image_to_rgb`).

Compressed images (`compressed_to_rgb`) are decoded with `cv2.imdecode(..., IMREAD_UNCHANGED)`,
as cv_bridge's `compressed_imgmsg_to_cv2` does (no EXIF rotation).

Audio (`audio_to_mono`) decodes interleaved integer or float samples, averages the channels and
resamples with an alias-free polyphase windowed-sinc filter (`StreamResampler`). Three message
layouts have adapters: duse_ros/AudioChunk, audio_common_msgs/AudioDataStamped (ros-drivers
audio_common, ROS 2 branch) and audio_common_msgs/AudioStamped (mgonzs13 audio_common).

Every malformed input raises `ConversionError` (a ValueError) whose message names the field, what
was expected and what came.
"""

from __future__ import annotations

import array
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import cv2
import numpy as np


class ConversionError(ValueError):
    """A message that cannot be converted; the text names the field and what was wrong."""


# --------------------------------------------------------------------------------------------
# Raw images
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageLayout:
    channels: int  # channels of the array view (2 for packed 4:2:2, 1 for 4:2:0 planes)
    bytes_per_channel: int  # 1 or 2
    code: int | None  # cv2.cvtColor code to RGB; None: the bytes are RGB already
    planar_420: bool = False

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.bytes_per_channel


_U8, _U16 = 1, 2
# The codes are cv_bridge's (src/cv_bridge.cpp, getConversionCodes, "to RGB" column). OpenCV
# names Bayer patterns by the 2x2 block starting at the second row and column, hence
# bayer_rggb -> BayerBG as in cv_bridge.
_IMAGE_LAYOUTS: dict[str, _ImageLayout] = {
    "rgb8": _ImageLayout(3, _U8, None),
    "bgr8": _ImageLayout(3, _U8, cv2.COLOR_BGR2RGB),
    "rgba8": _ImageLayout(4, _U8, cv2.COLOR_RGBA2RGB),
    "bgra8": _ImageLayout(4, _U8, cv2.COLOR_BGRA2RGB),
    "mono8": _ImageLayout(1, _U8, cv2.COLOR_GRAY2RGB),
    "rgb16": _ImageLayout(3, _U16, None),
    "bgr16": _ImageLayout(3, _U16, cv2.COLOR_BGR2RGB),
    "rgba16": _ImageLayout(4, _U16, cv2.COLOR_RGBA2RGB),
    "bgra16": _ImageLayout(4, _U16, cv2.COLOR_BGRA2RGB),
    "mono16": _ImageLayout(1, _U16, cv2.COLOR_GRAY2RGB),
    "bayer_rggb8": _ImageLayout(1, _U8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _ImageLayout(1, _U8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _ImageLayout(1, _U8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _ImageLayout(1, _U8, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": _ImageLayout(1, _U16, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": _ImageLayout(1, _U16, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": _ImageLayout(1, _U16, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": _ImageLayout(1, _U16, cv2.COLOR_BayerGB2RGB),
    # 4:2:2 packed. "yuv422" is UYVY and "yuv422_yuy2" is YUYV in sensor_msgs; "uyvy"/"yuyv" are
    # the newer names for the same byte orders. BT.601 limited range, as OpenCV decodes them.
    "yuv422": _ImageLayout(2, _U8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": _ImageLayout(2, _U8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _ImageLayout(2, _U8, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": _ImageLayout(2, _U8, cv2.COLOR_YUV2RGB_YUY2),
    # 4:2:0 semi-planar: `height` rows of Y, then height/2 rows of interleaved chroma (VU for
    # nv21, UV for nv12), every row `step` bytes long.
    "nv21": _ImageLayout(1, _U8, cv2.COLOR_YUV2RGB_NV21, planar_420=True),
    "nv12": _ImageLayout(1, _U8, cv2.COLOR_YUV2RGB_NV12, planar_420=True),
}

SUPPORTED_IMAGE_ENCODINGS: tuple[str, ...] = tuple(_IMAGE_LAYOUTS)

_NO_COLOUR_HINT = {
    "16uc1": "a depth image (16UC1): subscribe to the camera's colour topic instead",
    "32fc1": "a depth image (32FC1): subscribe to the camera's colour topic instead",
}


def _byte_buffer(data: Any, field: str) -> np.ndarray:
    """The bytes of a uint8[] message field as a flat uint8 array, without copying when possible."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, array.array):
        if data.typecode not in ("B", "b"):
            raise ConversionError(f"{field} must hold bytes (uint8[]); got array.array of typecode {data.typecode!r}")
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ConversionError(f"{field} must be uint8 bytes; got a numpy array of dtype {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (list, tuple)):
        values = np.asarray(data)
        if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255):
            raise ConversionError(f"{field} must hold byte values 0..255; got a list with values outside that range")
        return values.astype(np.uint8).reshape(-1)
    raise ConversionError(
        f"{field} must be bytes, array.array('B'), a uint8 numpy array or a list of bytes; got {type(data).__name__}"
    )


def _scale_16_to_8(image: np.ndarray, significant_bits: int) -> np.ndarray:
    # convertScaleAbs rounds to nearest and saturates, like cv::Mat::convertTo in cv_bridge; with
    # the default 16 bits this is round(v * 255 / 65535) exactly (checked for all 65536 values).
    return cv2.convertScaleAbs(image, alpha=255.0 / ((1 << significant_bits) - 1))


def image_to_rgb(msg: Any, *, significant_bits: int = 16) -> np.ndarray:
    """A sensor_msgs/Image as a new (height, width, 3) uint8 RGB array.

    Reads `height`, `width`, `encoding`, `is_bigendian`, `step` and `data`. Rows may be padded
    (`step` larger than the row); `is_bigendian` matters only for 16-bit encodings.
    16-bit encodings (mono16, rgb16, bgr16, rgba16, bgra16, bayer_*16) become 8-bit by
    `round(v * 255 / (2**significant_bits - 1))`, saturating. The default 16 is cv_bridge's
    full-range scaling. Sensors that put 10- or 12-bit values in the low bits of mono16 look
    nearly black that way: pass `significant_bits=12` (for 0..4095) to use the full 8-bit range.
    A fixed scale, not per-frame min/max stretching, keeps brightness steady from frame to frame.
    """
    encoding = str(msg.encoding).strip().lower()
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(
            f"Image has zero size: height={height}, width={width} (encoding {msg.encoding!r}); "
            "the driver published an empty frame"
        )
    layout = _IMAGE_LAYOUTS.get(encoding)
    if layout is None:
        hint = _NO_COLOUR_HINT.get(encoding, "")
        raise ConversionError(
            f"Image.encoding {msg.encoding!r} is not supported"
            + (f": it is {hint}" if hint else "")
            + f". Supported: {', '.join(SUPPORTED_IMAGE_ENCODINGS)}"
        )
    if not 1 <= significant_bits <= 16:
        raise ConversionError(f"significant_bits must be in 1..16; got {significant_bits}")

    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ConversionError(
            f"Image.step={step} is smaller than width * bytes_per_pixel = {width} * {layout.bytes_per_pixel} "
            f"= {row_bytes} for encoding {encoding!r}"
        )
    rows = height
    if layout.planar_420:
        if height % 2 or width % 2:
            raise ConversionError(
                f"Image of encoding {encoding!r} needs an even height and width; got {height}x{width}"
            )
        rows = height * 3 // 2
    elif layout.channels == 2 and width % 2:
        raise ConversionError(f"Image of encoding {encoding!r} (4:2:2) needs an even width; got width={width}")
    buf = _byte_buffer(msg.data, "Image.data")
    expected = rows * step
    if buf.size != expected:
        what = "height * 3/2 * step" if layout.planar_420 else "height * step"
        verdict = "truncated" if buf.size < expected else "longer than its header says"
        raise ConversionError(
            f"Image.data has {buf.size} bytes but {what} = {expected} (height={height}, step={step}, "
            f"encoding {encoding!r}): the message is {verdict}"
        )

    # Row view: (rows, row_bytes) over the buffer, padding skipped, no copy.
    plane = buf.reshape(rows, step)[:, :row_bytes]
    if layout.planar_420:
        luma = plane[:height]
        chroma = plane[height:].reshape(height // 2, width // 2, 2)
        return cv2.cvtColorTwoPlane(luma, chroma, layout.code)
    if layout.bytes_per_channel == 1:
        image = plane.reshape(height, width, layout.channels) if layout.channels > 1 else plane
        return image.copy() if layout.code is None else cv2.cvtColor(image, layout.code)

    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
    image = np.ascontiguousarray(plane).view(dtype).astype(np.uint16, copy=False)
    image = image.reshape(height, width, layout.channels) if layout.channels > 1 else image.reshape(height, width)
    if layout.code is not None:
        image = cv2.cvtColor(image, layout.code)  # at 16 bits first, then scale: cv_bridge's order
    return _scale_16_to_8(image, significant_bits)


# --------------------------------------------------------------------------------------------
# Compressed images
# --------------------------------------------------------------------------------------------

_SIGNATURES = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
_CODEC_ALIASES = ("jpeg", "jpg", "mjpg", "mjpeg", "png", "tiff", "tif")


def _check_format_codec(fmt: str) -> None:
    """Reject a CompressedImage.format that names a codec duse_ros cannot decode.

    compressed_image_transport writes "<original encoding>; <codec> compressed <stored encoding>",
    e.g. "rgb8; jpeg compressed bgr8"; many drivers write just "jpeg" or "png"; some leave it empty.
    The decoder is chosen from the data's signature, not from this string.
    """
    spec = fmt.split(";", 1)[1] if ";" in fmt else fmt
    words = spec.split()
    if words and words[0] not in _CODEC_ALIASES:
        raise ConversionError(
            f"CompressedImage.format {fmt!r} names codec {words[0]!r}; duse_ros decodes jpeg, png and tiff. "
            "Publish the camera with image_transport's 'compressed' transport or as a raw Image"
        )


def compressed_to_rgb(msg: Any, *, significant_bits: int = 16) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg, png or tiff) as a new (H, W, 3) uint8 RGB array.

    Reads `format` and `data`. The codec comes from the data's signature; `format` is checked for
    a codec duse_ros cannot decode (video codecs, compressedDepth). Grey images become grey RGB;
    an alpha channel is dropped; 16-bit PNG/TIFF is scaled as in `image_to_rgb`.
    """
    fmt = str(msg.format).strip().lower()
    if "compresseddepth" in fmt:
        raise ConversionError(
            f"CompressedImage.format {msg.format!r} is a compressedDepth (depth) image: subscribe to the "
            "camera's colour topic, e.g. .../image_raw/compressed"
        )
    _check_format_codec(fmt)
    buf = _byte_buffer(msg.data, "CompressedImage.data")
    if buf.size == 0:
        raise ConversionError(f"CompressedImage.data is empty (format {msg.format!r})")
    head = buf[:8].tobytes()
    found = next((codec for codec, sigs in _SIGNATURES.items() if head.startswith(sigs)), None)
    if found is None:
        raise ConversionError(
            f"CompressedImage.data ({buf.size} bytes, format {msg.format!r}) does not start with a JPEG, PNG "
            f"or TIFF signature (first bytes {head.hex(' ')}): the data is corrupt or in another codec"
        )
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConversionError(
            f"CompressedImage.data ({buf.size} bytes) starts like {found.upper()} but cannot be decoded "
            f"(format {msg.format!r}): the image is truncated or corrupt"
        )
    if image.dtype == np.uint16:
        image = _scale_16_to_8(image, significant_bits)
    elif image.dtype != np.uint8:
        raise ConversionError(f"CompressedImage decodes to {image.dtype} pixels; duse_ros takes 8- or 16-bit images")
    # OpenCV codecs store colour as BGR. An image compressed from RGB bytes without swapping says
    # so in its format ("... compressed rgb8"); its decoded "BGR" is then RGB already.
    stored_rgb = "compressed rgb" in fmt
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 3:
        return image.copy() if stored_rgb else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB if stored_rgb else cv2.COLOR_BGRA2RGB)
    raise ConversionError(f"CompressedImage decodes to {image.shape[2]} channels; expected 1, 3 or 4")


def image_pixels(msg: Any) -> int:
    """width x height of an Image or CompressedImage from its header alone (for JPEG and PNG the
    codec header; 0 when it cannot tell), so an oversized frame is refused before decoding."""
    if hasattr(msg, "encoding"):
        return max(0, int(msg.width)) * max(0, int(msg.height))
    try:
        head = _byte_buffer(msg.data, "CompressedImage.data")[:65536].tobytes()
    except ConversionError:
        return 0
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:  # IHDR: width, height
        return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")
    if head.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(head) and head[i] == 0xFF:
            marker, length = head[i + 1], int.from_bytes(head[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(head[i + 5 : i + 7], "big") * int.from_bytes(head[i + 7 : i + 9], "big")
            i += 2 + length
    return 0


def to_rgb(msg: Any) -> np.ndarray:
    """RGB uint8 array from either a sensor_msgs/Image or a sensor_msgs/CompressedImage."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg)
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg)
    raise ConversionError(
        f"{type(msg).__name__} is neither an Image (no 'encoding') nor a CompressedImage (no 'format')"
    )


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


def _positive_int(value: Any, field: str) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ConversionError(f"{field} must be a positive integer; got {value!r}") from None
    if not math.isfinite(as_float) or as_float <= 0 or as_float != int(as_float):
        raise ConversionError(f"{field} must be a positive integer; got {value!r}")
    return int(as_float)


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
        buf = _byte_buffer(samples, source)
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
    channels = _positive_int(channels, "channels")
    sample_rate = _positive_int(sample_rate, "sample_rate")
    target_rate = sample_rate if target_rate is None else _positive_int(target_rate, "target_rate")
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


# ---- resampling ----------------------------------------------------------------------------

# Alias-free design: the stopband starts at the lower rate's Nyquist frequency, the passband
# ends at 90 % of it, 80 dB stopband attenuation (Kaiser window). For 48 kHz -> 16 kHz: flat to
# 7.2 kHz, >= 80 dB down from 8 kHz, 303 taps per output sample.
PASSBAND_FRACTION = 0.90
STOPBAND_ATTENUATION_DB = 80.0
_BLOCK = 1024  # outputs computed per gather in StreamResampler.process
# Filter phases at most: the filter holds ~100 taps per phase, so rates whose exact ratio to the
# target needs more (16000/1000003 would need 1e8 taps, 400 MB) use the nearest ratio within it.
# Every common rate (8k..192k, 11.025k multiples) to 16 kHz is exact within 640 phases.
MAX_PHASES = 1024


def _bounded_ratio(source_rate: int, target_rate: int) -> Fraction:
    """target/source as up/down, exact when both fit in MAX_PHASES, else the nearest that does."""
    exact = Fraction(target_rate, source_rate)
    if max(exact.numerator, exact.denominator) <= MAX_PHASES:
        return exact
    if exact <= 1:
        ratio = exact.limit_denominator(MAX_PHASES)
    else:
        ratio = 1 / Fraction(source_rate, target_rate).limit_denominator(MAX_PHASES)
    if ratio == 0 or max(ratio.numerator, ratio.denominator) > MAX_PHASES:  # beyond 1:MAX_PHASES
        raise ConversionError(
            f"sample_rate {source_rate} Hz to {target_rate} Hz is a ratio beyond "
            f"1:{MAX_PHASES}; resample the source nearer the target rate"
        )
    return ratio


@functools.lru_cache(maxsize=16)
def _polyphase_taps(up: int, down: int) -> tuple[np.ndarray, int]:
    """Per-phase taps (up, K) float32, reversed for a dot product with the input window in time
    order, and the prototype filter's half length at the upsampled rate."""
    nyquist = 0.5 / max(up, down)  # lower Nyquist, cycles per upsampled sample
    transition = (1.0 - PASSBAND_FRACTION) * nyquist
    cutoff = nyquist - transition / 2
    atten = STOPBAND_ATTENUATION_DB
    beta = 0.1102 * (atten - 8.7)  # Kaiser's formulas (Oppenheim & Schafer 7.6)
    length = int(math.ceil((atten - 7.95) / (2.285 * 2 * math.pi * transition))) + 1
    half = length // 2
    n = np.arange(-half, half + 1, dtype=np.float64)
    prototype = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(2 * half + 1, beta)
    prototype *= up / prototype.sum()  # unit DC gain after zero-stuffing by `up`
    taps_per_phase = -(-prototype.size // up)
    padded = np.zeros(taps_per_phase * up)
    padded[: prototype.size] = prototype
    # phase p, tap k multiplies x[base - k]; reversed so row p dots x[base-K+1 .. base]
    phases = padded.reshape(taps_per_phase, up).T[:, ::-1]
    return np.ascontiguousarray(phases, dtype=np.float32), half


class StreamResampler:
    """Rational-ratio polyphase resampler that keeps state between chunks.

    Feeding a signal in chunks gives the same output as resampling it in one piece: output
    sample n is the windowed-sinc interpolation of the input at time n * sample_rate / target_rate,
    zero-phase, so outputs lag the input by the filter's half length (about 3 ms for any rate to
    16 kHz) until `flush`.
    """

    def __init__(self, sample_rate: Any, target_rate: Any):
        source_rate = _positive_int(sample_rate, "sample_rate")
        target = _positive_int(target_rate, "target_rate")
        self.sample_rate, self.target_rate = source_rate, target
        ratio = _bounded_ratio(source_rate, target)
        self.up, self.down = ratio.numerator, ratio.denominator
        # False when the exact ratio would need more than MAX_PHASES filter phases: then the
        # nearest ratio within that bound is used (off by at most a few ppm for rates >= 1 kHz).
        self.exact = ratio == Fraction(target, source_rate)
        self._taps, self._half = _polyphase_taps(self.up, self.down)
        # Outputs per gather: bounded so a long filter never needs a large temporary.
        self._block = max(1, min(_BLOCK, (1 << 20) // self._taps.shape[1]))
        self._reset()

    def _reset(self) -> None:
        width = self._taps.shape[1]
        self._buffer = np.zeros(width - 1, dtype=np.float32)  # zeros before the first sample
        self._buffer_start = -(width - 1)  # absolute index of _buffer[0]
        self._next_output = 0
        self._inputs = 0

    def _base(self, n: int) -> int:
        return (n * self.down + self._half) // self.up  # newest input sample output n needs

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk of float mono samples; returns every output now computable."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.up == self.down:
            return samples.copy()
        self._buffer = np.concatenate([self._buffer, samples])
        self._inputs += samples.size
        newest = self._buffer_start + self._buffer.size - 1
        end = ((newest + 1) * self.up - self._half - 1) // self.down + 1  # outputs with base(n) <= newest
        first = self._next_output
        out = np.empty(max(0, end - first), dtype=np.float32)
        width = self._taps.shape[1]
        if out.size == 0:
            return out
        windows = np.lib.stride_tricks.sliding_window_view(self._buffer, width)  # view, no copy
        # Output n = dot(input window ending at base(n), taps of phase p(n)): gathered in blocks of
        # outputs (a few MB at most), one einsum each, no per-sample Python loop.
        for block in range(first, end, self._block):
            n = np.arange(block, min(block + self._block, end), dtype=np.int64)
            p = n * self.down + self._half
            starts = p // self.up - (width - 1) - self._buffer_start
            out[block - first : block - first + n.size] = np.einsum(
                "ij,ij->i", windows[starts], self._taps[p % self.up]
            )
        self._next_output = max(end, first)
        keep_from = self._base(self._next_output) - (width - 1) - self._buffer_start
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._buffer_start += keep_from
        return out

    def flush(self) -> np.ndarray:
        """The remaining outputs (input continued with zeros) up to ceil(inputs * up / down); resets."""
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._inputs * self.up // self.down)
        missing = total - self._next_output
        if missing <= 0:
            self._reset()
            return np.zeros(0, dtype=np.float32)
        newest = self._buffer_start + self._buffer.size - 1
        pad = max(0, self._base(total - 1) - newest)
        tail = self.process(np.zeros(pad, dtype=np.float32))[:missing]
        self._reset()
        return tail


def resample(samples: np.ndarray, sample_rate: Any, target_rate: Any) -> np.ndarray:
    """Resample one buffer of float mono samples; output length ceil(len * target / source)."""
    resampler = StreamResampler(sample_rate, target_rate)
    head = resampler.process(samples)
    return np.concatenate([head, resampler.flush()])


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
