"""Alias-free resampling of a mono stream: a polyphase windowed-sinc filter that keeps its state
across chunks (`StreamResampler`), and `resample` for one buffer."""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import numpy as np

from duse_ros.io.conversions import ConversionError, positive_int

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
        source_rate = positive_int(sample_rate, "sample_rate")
        target = positive_int(target_rate, "target_rate")
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
