"""What the message converters share: the one error type, and checks of message fields.

`duse_ros.io.images` turns camera messages into RGB arrays, `duse_ros.io.audio` microphone
messages into float32 mono (resampled by `duse_ros.io.resample`). Every malformed input raises
`ConversionError` (a ValueError) whose message names the field, what was expected and what came.
"""

from __future__ import annotations

import array
import math
from typing import Any

import numpy as np


class ConversionError(ValueError):
    """A message that cannot be converted; the text names the field and what was wrong."""


def byte_buffer(data: Any, field: str) -> np.ndarray:
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


def positive_int(value: Any, field: str) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ConversionError(f"{field} must be a positive integer; got {value!r}") from None
    if not math.isfinite(as_float) or as_float <= 0 or as_float != int(as_float):
        raise ConversionError(f"{field} must be a positive integer; got {value!r}")
    return int(as_float)
