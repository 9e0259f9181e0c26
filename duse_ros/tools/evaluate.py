"""Scoring recorded EmotionStates against label spans, and their timeline plot. ROS-free: a state
is anything with EmotionState's fields (an rclpy message, or one read back from a bag by rosbags).

Each state is one window. Its true class is the span that holds the window's midpoint; windows
outside every span are not scored. Its prediction is `label` (or `smoothed_label` with
`use_smoothed`). A window the node could not read (no face for a video model: modality NONE) is
scored as a miss, in an extra `no_reading` column of the confusion matrix, so a model that sees
no face is not rewarded for the windows it skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from duse_ros.io.labels import Span, SpanIndex
from duse_ros.metrics import Scores, save_figure, score
from duse_ros.timebase import NS
from duse_ros.timebase import stamp_to_ns as stamp_ns

NO_READING = "no_reading"
MODALITY_NONE = 0


@dataclass
class Scored:
    scores: Scores
    classes: list[str]  # the model's classes (the confusion matrix may add NO_READING)
    truths: list[str]
    predictions: list[str]
    unlabelled: int  # windows outside every span
    no_reading: int  # labelled windows without a reading


def prediction(state, use_smoothed: bool = False) -> str:
    if state.modality == MODALITY_NONE:
        return NO_READING
    if use_smoothed and state.smoothed_label:
        return state.smoothed_label
    return state.label


def score_states(states: Sequence, spans: Sequence[Span], classes: Sequence[str], use_smoothed: bool = False) -> Scored:
    index = SpanIndex(spans)
    classes = list(classes)
    truths, predictions, unlabelled = [], [], 0
    for s in states:
        truth = index.window_label(stamp_ns(s.window_start), stamp_ns(s.window_end))
        if truth is None:
            unlabelled += 1
            continue
        truths.append(truth)
        predictions.append(prediction(s, use_smoothed))
    no_reading = predictions.count(NO_READING)
    names = classes + ([NO_READING] if no_reading else [])
    unknown = sorted({p for p in predictions if p not in names})
    if unknown:
        raise ValueError(f"states predict classes the model does not list: {unknown}")
    scores = score([names.index(t) for t in truths], [names.index(p) for p in predictions], names)
    return Scored(scores, classes, truths, predictions, unlabelled, no_reading)


def percentiles_ms(seconds: Sequence[float]) -> tuple[float | None, float | None]:
    if not len(seconds):
        return None, None
    p50, p95 = np.percentile(np.asarray(seconds, dtype=np.float64) * 1e3, [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def plot_timeline(
    states: Sequence, spans: Sequence[Span], classes: Sequence[str], origin_ns: int, path: str | Path, title: str = ""
) -> Path:
    """Per-class probability of every window (at its end stamp), with the label spans shaded in
    their class's colour and windows without a reading marked below the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(classes)
    colors = {c: plt.cm.tab20(i % 20) for i, c in enumerate(classes)}
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for span in spans:
        a, b = (span.start_ns - origin_ns) / NS, (span.end_ns - origin_ns) / NS
        ax.axvspan(a, b, color=colors.get(span.label, "grey"), alpha=0.18, lw=0)
        ax.text((a + b) / 2, 1.02, span.label, ha="center", va="bottom", fontsize=7, clip_on=False)
    ordered = sorted(states, key=lambda s: stamp_ns(s.window_end))
    if any(s.modality != MODALITY_NONE and len(s.probabilities) for s in ordered):
        # a window without a reading is a gap in every line, not a straight line across it
        t = np.array([(stamp_ns(s.window_end) - origin_ns) / NS for s in ordered])
        probs = np.array(
            [
                list(s.probabilities)
                if s.modality != MODALITY_NONE and len(s.probabilities)
                else [np.nan] * len(classes)
                for s in ordered
            ]
        )
        for i, c in enumerate(classes):
            ax.plot(t, probs[:, i], color=colors[c], lw=1.4, marker=".", ms=3, label=c)
    missing = [(stamp_ns(s.window_end) - origin_ns) / NS for s in states if s.modality == MODALITY_NONE]
    if missing:
        ax.plot(missing, [-0.03] * len(missing), "kx", ms=4, clip_on=False, label=NO_READING)
    ax.set(xlabel="time from the bag's origin (s)", ylabel="probability", ylim=(-0.05, 1.0))
    ax.set_title(title, pad=16)
    if ax.get_legend_handles_labels()[0]:  # nothing to name when no window came back
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return save_figure(fig, path)
