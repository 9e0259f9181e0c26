"""Turns a jittery stream of per-window emotion readings into a stable state worth speaking about.

Rules, all measured on the readings' own stamps (EmotionState.window_end), never on arrival time:
- A reading is evidence for one state: its label, or UNKNOWN when the window had no face, the
  reading is below `min_confidence`, or (optionally) the weights are untrained.
- Hysteresis: the current state keeps its support down to `min_confidence`; any other label must
  reach `min_confidence + hysteresis` to challenge it. A challenger in between counts for nothing.
- Dwell: a challenger becomes the state once its consecutive supporting readings span `dwell_s`.
  A reading for the current state or for another challenger starts the count again, so a flicker
  between two labels never produces a change.
- A gap in stamps longer than `max_gap_s`, or a stamp that goes backwards (a bag that loops, a
  clock reset), drops the challenger and restarts the state's duration.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ..timebase import NS

UNKNOWN = "unknown"
# The label EmotionState carries when no reading was made (EmotionState.LABEL_NO_FACE).
LABEL_NO_FACE = "no_face"

# Why the state is UNKNOWN (StableState.unknown_reason); prompt templates name each one.
REASON_NO_FACE = "no_face"
REASON_LOW_CONFIDENCE = "low_confidence"
REASON_UNTRAINED = "untrained"
REASON_NO_READINGS = "no_readings"
UNKNOWN_REASONS = (REASON_NO_FACE, REASON_LOW_CONFIDENCE, REASON_UNTRAINED, REASON_NO_READINGS)

# Supporting readings kept for the state's mean confidence; bounds memory whatever the rate.
_MAX_SUPPORT = 512


@dataclass(frozen=True)
class EmotionSample:
    """One EmotionState reduced to what the stabiliser needs."""

    stamp_ns: int  # window_end of the reading
    label: str  # class label; "" or LABEL_NO_FACE when no reading was made
    confidence: float  # 0..1
    has_reading: bool  # False for MODALITY_NONE
    untrained: bool = False
    frame_id: str = ""
    # Derived from the class probabilities (EmotionState/Expression valence, arousal); NaN: none.
    valence: float = math.nan
    arousal: float = math.nan

    def __post_init__(self) -> None:
        if not (math.isfinite(self.confidence) and 0.0 <= self.confidence <= 1.0):
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence!r}")
        for name in ("valence", "arousal"):
            value = getattr(self, name)
            if not (math.isnan(value) or -1.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [-1, 1] or NaN, got {value!r}")
        if self.stamp_ns < 0:
            raise ValueError(f"stamp must be non-negative, got {self.stamp_ns} ns")


@dataclass(frozen=True)
class StableState:
    emotion: str  # a class label or UNKNOWN
    confidence: float  # mean over supporting readings of the last dwell period; 0 for UNKNOWN
    since_ns: int  # stamp of the first reading of this stretch
    latest_ns: int  # stamp of the latest supporting reading
    trend: tuple[str, ...]  # recent states, oldest first, ending with this one
    unknown_reason: str = ""  # one of UNKNOWN_REASONS when emotion is UNKNOWN
    untrained: bool = False  # the latest supporting reading came from random weights
    frame_id: str = ""
    # Means over the same readings as `confidence`, of those that carry them; NaN for UNKNOWN or none.
    valence: float = math.nan
    arousal: float = math.nan

    @property
    def duration_s(self) -> float:
        return (self.latest_ns - self.since_ns) / NS


@dataclass(frozen=True)
class StabiliserConfig:
    min_confidence: float = 0.4
    hysteresis: float = 0.1
    dwell_s: float = 1.5
    max_gap_s: float = 2.0
    trend_length: int = 4
    untrained_as_unknown: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.hysteresis <= 1.0 - self.min_confidence:
            raise ValueError(f"hysteresis must be in [0, 1 - min_confidence], got {self.hysteresis}")
        if self.dwell_s < 0:
            raise ValueError(f"dwell_s must be >= 0, got {self.dwell_s}")
        if self.max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be > 0, got {self.max_gap_s}")
        if self.trend_length < 1:
            raise ValueError(f"trend_length must be >= 1, got {self.trend_length}")


@dataclass
class _Stretch:
    """Consecutive readings supporting one label (the state's, or a challenger's)."""

    label: str
    since_ns: int
    latest_ns: int
    unknown_reason: str
    untrained: bool
    frame_id: str
    support: deque = field(default_factory=lambda: deque(maxlen=_MAX_SUPPORT))  # (stamp_ns, confidence, v, a)
    stamped: bool = True  # False: begun before any reading (no stamp yet); the first one starts it

    def add(self, reading: EmotionSample, unknown_reason: str) -> None:
        if not self.stamped:
            self.since_ns, self.stamped = reading.stamp_ns, True
        self.latest_ns = reading.stamp_ns
        self.unknown_reason = unknown_reason
        self.untrained = reading.untrained
        self.frame_id = reading.frame_id
        self.support.append((reading.stamp_ns, reading.confidence, reading.valence, reading.arousal))


class Stabiliser:
    def __init__(self, config: StabiliserConfig) -> None:
        self.config = config
        self._state: _Stretch | None = None
        self._challenger: _Stretch | None = None
        self._trend: deque[str] = deque(maxlen=config.trend_length)
        self._last_stamp_ns: int | None = None
        self.readings = 0
        self.stamps_backwards = 0
        self.gaps = 0

    @property
    def state(self) -> StableState | None:
        return None if self._state is None else self._snapshot(self._state)

    def observe(self, reading: EmotionSample) -> StableState | None:
        """Feed one reading; returns the new state when the stable emotion changed, else None."""
        self.readings += 1
        self._check_continuity(reading.stamp_ns)
        evidence = self._evidence(reading)
        if evidence is None:
            return None
        label, unknown_reason = evidence
        if self._state is not None and label == self._state.label:
            self._challenger = None
            self._state.add(reading, unknown_reason)
            return None
        if self._challenger is None or self._challenger.label != label:
            self._challenger = _Stretch(
                label, reading.stamp_ns, reading.stamp_ns, unknown_reason, reading.untrained, reading.frame_id
            )
        self._challenger.add(reading, unknown_reason)
        if self._challenger.latest_ns - self._challenger.since_ns >= self.config.dwell_s * NS:
            return self._promote(self._challenger)
        return None

    def expire(self) -> StableState | None:
        """The readings stopped arriving: the state becomes UNKNOWN (no_readings) at once."""
        if (
            self._state is not None
            and self._state.label == UNKNOWN
            and self._state.unknown_reason == REASON_NO_READINGS
        ):
            return None
        stamp = self._last_stamp_ns
        # Before any reading there is no stamp to start from: the stretch starts at the first one.
        return self._promote(
            _Stretch(UNKNOWN, stamp or 0, stamp or 0, REASON_NO_READINGS, False, "", stamped=stamp is not None)
        )

    def _check_continuity(self, stamp_ns: int) -> None:
        last, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
        if last is None:
            return
        if stamp_ns < last:
            self.stamps_backwards += 1
        elif stamp_ns - last > self.config.max_gap_s * NS:
            self.gaps += 1
        else:
            return
        # Time is discontinuous: nothing measured across the break can count as dwell or duration.
        self._challenger = None
        if self._state is not None:
            self._state.since_ns = self._state.latest_ns = stamp_ns
            self._state.support.clear()

    def _evidence(self, reading: EmotionSample) -> tuple[str, str] | None:
        """(label, unknown_reason) this reading supports, or None inside the hysteresis band."""
        cfg = self.config
        if not reading.has_reading or reading.label in ("", LABEL_NO_FACE):
            return UNKNOWN, REASON_NO_FACE
        if reading.untrained and cfg.untrained_as_unknown:
            return UNKNOWN, REASON_UNTRAINED
        if reading.confidence < cfg.min_confidence:
            return UNKNOWN, REASON_LOW_CONFIDENCE
        holds_state = self._state is not None and reading.label == self._state.label
        if not holds_state and reading.confidence < cfg.min_confidence + cfg.hysteresis:
            return None
        return reading.label, ""

    def _promote(self, stretch: _Stretch) -> StableState:
        self._state, self._challenger = stretch, None
        self._trend.append(stretch.label)
        return self._snapshot(stretch)

    def _snapshot(self, stretch: _Stretch) -> StableState:
        confidence, valence, arousal = self._recent_means(stretch)
        return StableState(
            emotion=stretch.label,
            confidence=confidence,
            since_ns=stretch.since_ns,
            latest_ns=stretch.latest_ns,
            trend=tuple(self._trend),
            unknown_reason=stretch.unknown_reason if stretch.label == UNKNOWN else "",
            untrained=stretch.untrained,
            frame_id=stretch.frame_id,
            valence=valence,
            arousal=arousal,
        )

    def _recent_means(self, stretch: _Stretch) -> tuple[float, float, float]:
        """Mean confidence, valence and arousal of the supporting readings of the last dwell
        period, so a heartbeat reports the person now; (0, NaN, NaN) for UNKNOWN."""
        if stretch.label == UNKNOWN:
            return 0.0, math.nan, math.nan
        start = stretch.latest_ns - self.config.dwell_s * NS
        recent = [row for row in stretch.support if row[0] >= start]
        if not recent:
            return 0.0, math.nan, math.nan
        return (sum(r[1] for r in recent) / len(recent), _nanmean(r[2] for r in recent), _nanmean(r[3] for r in recent))


def _nanmean(values) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
