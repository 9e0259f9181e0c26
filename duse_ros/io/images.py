"""Camera messages to RGB uint8 arrays (ROS-free: any object with the message's fields works).

`image_to_rgb` follows cv_bridge's `imgmsg_to_cv2(msg, "rgb8")`: the same size checks, the same
byte swap for big-endian 16-bit data and the same `cv2.cvtColor` codes (taken from cv_bridge's
`getConversionCodes`, vision_opencv rolling), so lossless encodings give identical pixels. 16-bit
encodings are scaled to 8 bits the way cv_bridge does it, `round(v * 255 / 65535)`, unless
`significant_bits` says the sensor fills fewer bits. `compressed_to_rgb` decodes with
`cv2.imdecode(..., IMREAD_UNCHANGED)`, as cv_bridge's `compressed_imgmsg_to_cv2` does (no EXIF
rotation).

`IMAGE_MESSAGES` is the one table of the camera message family, by type name: the image_transport
topic a type travels on, what the header says a frame holds (the size check before decoding), the
conversion to RGB, and a builder of a message from RGB pixels. The node (`image_compressed`),
rosbag I/O, duse-make-bag, the demo and duse-eval-bag read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from duse_ros.io.conversions import ConversionError, byte_buffer

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
    buf = byte_buffer(msg.data, "Image.data")
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
    buf = byte_buffer(msg.data, "CompressedImage.data")
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


# --------------------------------------------------------------------------------------------
# The image message family
# --------------------------------------------------------------------------------------------

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
# What compressed_image_transport writes for a bgr8 frame encoded by OpenCV from RGB pixels.
_JPEG_FORMAT = "rgb8; jpeg compressed bgr8"
DEFAULT_JPEG_QUALITY = 90


@dataclass(frozen=True)
class ImageMessage:
    """One camera message type. `types` maps type names to message classes (a rosbags typestore's
    `types`, or a dict of rclpy classes); `rgb` is a (height, width, 3) uint8 array."""

    type_name: str
    transport: str  # image_transport's name: "raw" travels on the base topic, others on <base>/<transport>
    pixels: Callable[[Any], int]  # width x height from the header alone (0: cannot tell), before decoding
    to_rgb: Callable[..., np.ndarray]  # (msg, *, significant_bits=16) -> (H, W, 3) uint8 RGB
    build: Callable[..., Any]  # (types, header, rgb, jpeg_quality=DEFAULT_JPEG_QUALITY) -> message; raw: bgr8

    @property
    def compressed(self) -> bool:
        """What affect_node's `image_compressed` parameter says for this type."""
        return self.transport != "raw"

    def topic(self, base: str) -> str:
        """The topic this type travels on beside the camera's base topic, as image_transport names it
        (`image_raw` -> `image_raw/compressed`); a remap of the base topic moves every transport."""
        return base if self.transport == "raw" else f"{base}/{self.transport}"


def _byte_array(cls: Any, data: np.ndarray) -> Any:
    # rosbags' classes (they carry __msgtype__) serialise uint8[] from numpy arrays; rclpy's copy a
    # numpy array element by element (50 ms for a VGA frame) but take bytes at once.
    return data if hasattr(cls, "__msgtype__") else data.tobytes()


def _raw_pixels(msg: Any) -> int:
    return max(0, int(msg.width)) * max(0, int(msg.height))


def _raw_build(types: Mapping[str, Any], header: Any, rgb: np.ndarray, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Any:
    cls, bgr = types[IMAGE], cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    data = _byte_array(cls, bgr.reshape(-1))
    return cls(header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3, data=data)


def _compressed_pixels(msg: Any) -> int:
    """For JPEG and PNG the codec header's size; 0 when it cannot tell."""
    try:
        head = byte_buffer(msg.data, "CompressedImage.data")[:65536].tobytes()
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


def _compressed_build(
    types: Mapping[str, Any], header: Any, rgb: np.ndarray, jpeg_quality: int = DEFAULT_JPEG_QUALITY
) -> Any:
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ConversionError(f"JPEG encoding failed for a {rgb.shape[1]}x{rgb.shape[0]} frame")
    cls = types[COMPRESSED_IMAGE]
    return cls(header=header, format=_JPEG_FORMAT, data=_byte_array(cls, jpeg.reshape(-1)))


IMAGE_MESSAGES: dict[str, ImageMessage] = {
    m.type_name: m
    for m in (
        ImageMessage(IMAGE, "raw", _raw_pixels, image_to_rgb, _raw_build),
        ImageMessage(COMPRESSED_IMAGE, "compressed", _compressed_pixels, compressed_to_rgb, _compressed_build),
    )
}
IMAGE_TYPES: tuple[str, ...] = tuple(IMAGE_MESSAGES)


def image_message(compressed: bool) -> ImageMessage:
    """The entry affect_node's `image_compressed` parameter selects."""
    return IMAGE_MESSAGES[COMPRESSED_IMAGE if compressed else IMAGE]
