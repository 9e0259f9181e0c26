"""sensor_msgs/Image and CompressedImage to RGB: every encoding with known pixels, row padding,
byte order, and every malformed message raising ConversionError.

Images are encoded by hand here (numpy channel shuffles, BT.601 formulas, Bayer mosaics) rather
than with the cv2 calls the converter uses, so a wrong conversion code would show.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from duse_ros.io.conversions import ConversionError
from duse_ros.io.images import SUPPORTED_IMAGE_ENCODINGS, compressed_to_rgb, image_to_rgb


@dataclass
class Img:
    """Stand-in with exactly sensor_msgs/Image's payload fields."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes
    is_bigendian: int = 0


@dataclass
class Comp:
    """Stand-in with sensor_msgs/CompressedImage's payload fields."""

    format: str
    data: bytes


H, W = 4, 6
RGB = np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)


def pack(rows: np.ndarray, encoding: str, pad: int = 0, pad_byte: int = 0xAB, **extra) -> Img:
    """Image message from (H, row_bytes) uint8 rows, each followed by `pad` junk bytes."""
    rows = np.ascontiguousarray(rows).reshape(rows.shape[0], -1).view(np.uint8)
    padded = np.full((rows.shape[0], rows.shape[1] + pad), pad_byte, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    height = extra.pop("height", rows.shape[0])
    width = extra.pop("width", W)
    return Img(height=height, width=width, encoding=encoding, step=padded.shape[1], data=padded.tobytes(), **extra)


# ---- lossless 8-bit encodings --------------------------------------------------------------

ALPHA = np.full((H, W, 1), 200, dtype=np.uint8)
PACKED_8BIT = {
    "rgb8": RGB,
    "bgr8": RGB[..., ::-1],
    "rgba8": np.concatenate([RGB, ALPHA], axis=2),
    "bgra8": np.concatenate([RGB[..., ::-1], ALPHA], axis=2),
}


@pytest.mark.parametrize("pad", [0, 5, 64])
@pytest.mark.parametrize("encoding", sorted(PACKED_8BIT))
def test_packed_8bit_exact(encoding, pad):
    out = image_to_rgb(pack(PACKED_8BIT[encoding], encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_mono8_replicates_grey():
    grey = RGB[..., 1]
    out = image_to_rgb(pack(grey, "mono8", pad=3))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_output_owns_its_memory():
    data = bytearray(PACKED_8BIT["rgb8"].tobytes())
    out = image_to_rgb(Img(H, W, "rgb8", W * 3, data))
    data[:] = bytes(len(data))
    np.testing.assert_array_equal(out, RGB)
    out[0, 0] = 1  # writable


def test_encoding_name_is_case_and_space_insensitive():
    np.testing.assert_array_equal(image_to_rgb(pack(PACKED_8BIT["bgr8"], " BGR8 ")), RGB)


# ---- 16-bit encodings ----------------------------------------------------------------------

MONO16 = np.array(
    [
        [0, 1, 128, 129, 257, 385],
        [386, 32767, 32768, 65407, 65408, 65535],
        [4095, 1000, 2000, 3000, 4000, 100],
        [12345, 23456, 34567, 45678, 56789, 60000],
    ],
    dtype=np.uint16,
)


def full_range_8bit(values: np.ndarray, bits: int = 16) -> np.ndarray:
    """round(v * 255 / (2**bits - 1)) in exact integer arithmetic, saturated."""
    top = (1 << bits) - 1
    return np.minimum((values.astype(np.int64) * 255 * 2 + top) // (2 * top), 255).astype(np.uint8)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 2, 7])
def test_mono16_scaling_and_byte_order(big_endian, pad):
    rows = MONO16.astype(">u2" if big_endian else "<u2")
    out = image_to_rgb(pack(rows, "mono16", pad=pad, is_bigendian=int(big_endian)))
    np.testing.assert_array_equal(out, np.repeat(full_range_8bit(MONO16)[..., None], 3, axis=2))


def test_mono16_byte_order_matters():
    rows = MONO16.astype(">u2")
    as_big = image_to_rgb(pack(rows, "mono16", is_bigendian=1))
    as_little = image_to_rgb(pack(rows, "mono16", is_bigendian=0))
    assert not np.array_equal(as_big, as_little)


def test_mono16_significant_bits_for_12_bit_sensors():
    values = np.minimum(MONO16, 4095)
    out = image_to_rgb(pack(values.astype("<u2"), "mono16"), significant_bits=12)
    np.testing.assert_array_equal(out[..., 0], full_range_8bit(values, bits=12))
    saturated = image_to_rgb(pack(np.full((2, W), 5000, "<u2"), "mono16", height=2), significant_bits=12)
    assert (saturated == 255).all()


@pytest.mark.parametrize(
    "encoding,order", [("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0]), ("rgba16", [0, 1, 2, 3]), ("bgra16", [2, 1, 0, 3])]
)
def test_colour_16bit(encoding, order):
    rgb16 = np.random.default_rng(3).integers(0, 65536, (H, W, 3)).astype(np.uint16)
    full = np.concatenate([rgb16, np.full((H, W, 1), 65535, np.uint16)], axis=2)[..., order]
    out = image_to_rgb(pack(full.astype(">u2"), encoding, pad=4, is_bigendian=1))
    np.testing.assert_array_equal(out, full_range_8bit(rgb16))


# ---- Bayer ---------------------------------------------------------------------------------


def bayer_mosaic(colour, pattern: str, height=8, width=8, dtype=np.uint8) -> np.ndarray:
    """Raw sensor image of a uniform colour; `pattern` names the top-left 2x2 block, e.g. 'rggb'."""
    index = {"r": 0, "g": 1, "b": 2}
    raw = np.empty((height, width), dtype=dtype)
    for dy in range(2):
        for dx in range(2):
            raw[dy::2, dx::2] = colour[index[pattern[2 * dy + dx]]]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_uniform_colour(pattern):
    colour = (200, 90, 30)  # distinct channels: a wrong pattern swaps red and blue
    out = image_to_rgb(pack(bayer_mosaic(colour, pattern), f"bayer_{pattern}8", pad=3, width=8))
    np.testing.assert_array_equal(out, np.broadcast_to(np.array(colour, np.uint8), (8, 8, 3)))
    colour16 = (51400, 23130, 7710)  # 200, 90, 30 times 257
    raw16 = bayer_mosaic(colour16, pattern, dtype=np.uint16)
    out16 = image_to_rgb(pack(raw16.astype(">u2"), f"bayer_{pattern}16", width=8, is_bigendian=1))
    np.testing.assert_array_equal(out16, out)


# ---- YUV -----------------------------------------------------------------------------------


def bt601_limited(rgb: np.ndarray) -> np.ndarray:
    """RGB -> (Y, U, V) uint8, ITU-R BT.601 video range, the inverse of OpenCV's YUV2RGB_* decoders."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255.0 for i in range(3))
    y = 16 + 219 * (0.299 * r + 0.587 * g + 0.114 * b)
    u = 128 + 224 * (-0.168736 * r - 0.331264 * g + 0.5 * b)
    v = 128 + 224 * (0.5 * r - 0.418688 * g - 0.081312 * b)
    return np.clip(np.rint(np.stack([y, u, v], axis=-1)), 0, 255).astype(np.uint8)


# 2x2 blocks of one colour, so 4:2:2 and 4:2:0 chroma subsampling lose nothing.
BLOCK_COLOURS = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [224, 172, 105]]], dtype=np.uint8
)  # last: a skin tone
YUV_RGB = BLOCK_COLOURS.repeat(2, axis=0).repeat(2, axis=1)  # (4, 6, 3)
YUV_TOLERANCE = 2  # levels: rounding of Y/U/V to integers here plus OpenCV's fixed-point decode


def yuv422(order: str) -> np.ndarray:
    yuv = bt601_limited(YUV_RGB)
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    out = np.empty((H, W // 2, 4), dtype=np.uint8)
    parts = {"y0": y[:, 0::2], "y1": y[:, 1::2], "u": u[:, 0::2], "v": v[:, 0::2]}
    for i, name in enumerate(order.split()):
        out[..., i] = parts[name]
    return out.reshape(H, W * 2)


def yuv420sp(chroma_order: str) -> np.ndarray:
    yuv = bt601_limited(YUV_RGB)
    luma = yuv[..., 0]
    u, v = yuv[0::2, 0::2, 1], yuv[0::2, 0::2, 2]
    pair = np.stack([v, u] if chroma_order == "vu" else [u, v], axis=-1).reshape(H // 2, W)
    return np.concatenate([luma, pair], axis=0)


YUV_CASES = {
    "yuv422": lambda: yuv422("u y0 v y1"),
    "uyvy": lambda: yuv422("u y0 v y1"),
    "yuv422_yuy2": lambda: yuv422("y0 u y1 v"),
    "yuyv": lambda: yuv422("y0 u y1 v"),
    "nv21": lambda: yuv420sp("vu"),
    "nv12": lambda: yuv420sp("uv"),
}


@pytest.mark.parametrize("pad", [0, 6])
@pytest.mark.parametrize("encoding", sorted(YUV_CASES))
def test_yuv_known_colours(encoding, pad):
    rows = YUV_CASES[encoding]()
    out = image_to_rgb(pack(rows, encoding, pad=pad, height=H))
    assert out.shape == (H, W, 3)
    diff = np.abs(out.astype(int) - YUV_RGB.astype(int))
    assert diff.max() <= YUV_TOLERANCE, f"{encoding}: max error {diff.max()}"


def test_nv12_and_nv21_differ_only_in_chroma_order():
    msg = pack(yuv420sp("uv"), "nv12", height=H)
    swapped = pack(yuv420sp("uv"), "nv21", height=H)
    assert not np.array_equal(image_to_rgb(msg), image_to_rgb(swapped))


def test_every_supported_encoding_is_tested():
    tested = (
        set(PACKED_8BIT)
        | set(YUV_CASES)
        | {"mono8", "mono16", "rgb16", "bgr16", "rgba16", "bgra16"}
        | {f"bayer_{p}{d}" for p in ("rggb", "bggr", "gbrg", "grbg") for d in (8, 16)}
    )
    assert tested == set(SUPPORTED_IMAGE_ENCODINGS)


# ---- real sensor_msgs objects --------------------------------------------------------------


def test_real_sensor_msgs_image_and_compressed():
    import sensor_msgs.msg as msgs

    image = msgs.Image()
    image.height, image.width, image.encoding = H, W, "bgr8"
    padded = np.zeros((H, W * 3 + 10), np.uint8)
    padded[:, : W * 3] = PACKED_8BIT["bgr8"].reshape(H, -1)
    image.step = padded.shape[1]
    image.data = padded.tobytes()  # rclpy stores uint8[] as array.array('B')
    np.testing.assert_array_equal(image_to_rgb(image), RGB)

    mono = msgs.Image(
        height=H, width=W, encoding="mono16", is_bigendian=1, step=W * 2, data=MONO16.astype(">u2").tobytes()
    )
    np.testing.assert_array_equal(image_to_rgb(mono)[..., 2], full_range_8bit(MONO16))

    compressed = msgs.CompressedImage(
        format="rgb8; png compressed bgr8", data=cv2.imencode(".png", RGB[..., ::-1])[1].tobytes()
    )
    np.testing.assert_array_equal(compressed_to_rgb(compressed), RGB)


# ---- compressed ----------------------------------------------------------------------------

BIG = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)  # blocks compress well


def encoded(ext: str, image: np.ndarray, *params) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8", "", "PNG"])
def test_png_exact(fmt):
    out = compressed_to_rgb(Comp(fmt, encoded(".png", BIG[..., ::-1])))
    np.testing.assert_array_equal(out, BIG)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg_close(fmt):
    # one colour per 16x16 JPEG macroblock; the decoder's chroma upsampling blurs colour across
    # block edges, so compare the inner 8x8 of each block
    blocks = YUV_RGB.repeat(8, axis=0).repeat(8, axis=1)
    out = compressed_to_rgb(Comp(fmt, encoded(".jpg", blocks[..., ::-1], cv2.IMWRITE_JPEG_QUALITY, 95)))
    rows, cols = (np.arange(n) % 16 for n in blocks.shape[:2])
    inner = ((rows >= 4) & (rows < 12))[:, None] & ((cols >= 4) & (cols < 12))[None, :]
    diff = np.abs(out.astype(int) - blocks.astype(int))[inner]
    assert diff.max() <= 4, diff.max()


def test_grey_jpeg_becomes_grey_rgb():
    grey = BIG[..., 1]
    out = compressed_to_rgb(Comp("mono8; jpeg compressed mono8", encoded(".jpg", grey, cv2.IMWRITE_JPEG_QUALITY, 100)))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0].astype(int) - grey.astype(int)).mean() < 2


def test_png_alpha_is_dropped_and_16bit_scaled_like_mono16():
    bgra = np.concatenate([BIG[..., ::-1], np.full(BIG.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(compressed_to_rgb(Comp("bgra8; png compressed bgr8", encoded(".png", bgra))), BIG)
    mono16 = np.tile(MONO16, (2, 2))
    out = compressed_to_rgb(Comp("mono16; png compressed ", encoded(".png", mono16)))
    np.testing.assert_array_equal(out[..., 0], full_range_8bit(mono16))


def test_png_stored_in_rgb_order_is_not_swapped():
    out = compressed_to_rgb(Comp("rgb8; png compressed rgb8", encoded(".png", BIG)))
    np.testing.assert_array_equal(out, BIG)


# ---- malformed input -----------------------------------------------------------------------

GOOD = pack(RGB, "rgb8")


@pytest.mark.parametrize(
    "msg,words",
    [
        (Img(H, W, "rgb8", W * 3, GOOD.data[:-1]), ["Image.data", "truncated", str(H * W * 3)]),
        (Img(H, W, "rgb8", W * 3, GOOD.data[: W * 3]), ["Image.data", "truncated"]),
        (Img(H, W, "rgb8", W * 3, GOOD.data + b"\0"), ["Image.data", "longer"]),
        (Img(H, W, "rgb8", W * 3 - 1, GOOD.data), ["Image.step", "width * bytes_per_pixel", str(W * 3)]),
        (Img(H, W, "mono16", W, GOOD.data[: H * W]), ["Image.step", str(W * 2)]),
        (Img(H, W, "rgb9", W * 3, GOOD.data), ["Image.encoding", "'rgb9'", "Supported"]),
        (Img(H, W, "16UC1", W * 2, bytes(H * W * 2)), ["Image.encoding", "depth"]),
        (Img(H, W, "", W * 3, GOOD.data), ["Image.encoding"]),
        (Img(0, W, "rgb8", W * 3, b""), ["zero size", "height=0"]),
        (Img(H, 0, "rgb8", 0, b""), ["zero size", "width=0"]),
        (Img(H, 5, "yuv422", 10, bytes(H * 10)), ["even width", "width=5"]),
        (Img(3, W, "nv21", W, bytes(W * 4)), ["even height"]),
        (Img(H, W, "nv21", W, bytes(H * W)), ["Image.data", "height * 3/2 * step", str(H * W * 3 // 2)]),
        (Img(H, W, "rgb8", W * 3, [300] * (H * W * 3)), ["Image.data", "0..255"]),
        (Img(H, W, "rgb8", W * 3, np.zeros(H * W * 3, np.float32)), ["Image.data", "uint8"]),
        (Img(H, W, "rgb8", W * 3, "not bytes"), ["Image.data"]),
    ],
)
def test_malformed_images(msg, words):
    with pytest.raises(ConversionError) as caught:
        image_to_rgb(msg)
    for word in words:
        assert word in str(caught.value), str(caught.value)


JPEG = encoded(".jpg", BIG[..., ::-1])
PNG = encoded(".png", BIG[..., ::-1])


@pytest.mark.parametrize(
    "msg,words",
    [
        (Comp("jpeg", b""), ["CompressedImage.data", "empty"]),
        (Comp("jpeg", b"this is not an image at all"), ["signature", "corrupt"]),
        (Comp("jpeg", JPEG[: len(JPEG) // 2]), ["JPEG", "truncated or corrupt"]),
        (Comp("jpeg", JPEG[:40]), ["JPEG", "truncated or corrupt"]),
        (Comp("png", PNG[: len(PNG) // 2]), ["PNG", "truncated or corrupt"]),
        (Comp("png", PNG[:60] + bytes(20) + PNG[80:]), ["PNG", "truncated or corrupt"]),
        (Comp("h264", JPEG), ["'h264'", "jpeg, png"]),
        (Comp("rgb8; theora compressed", JPEG), ["'theora'"]),
        (Comp("16UC1; compressedDepth png", PNG), ["compressedDepth", "colour topic"]),
    ],
)
def test_malformed_compressed(msg, words):
    with pytest.raises(ConversionError) as caught:
        compressed_to_rgb(msg)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_conversion_error_is_a_value_error():
    assert issubclass(ConversionError, ValueError)
