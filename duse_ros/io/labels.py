"""Emotion label spans: `start,end,label` CSV files, and the label topic inside a bag.

A labels CSV has one span per row, times in seconds from the input's time origin (the video's
t = 0; in a bag, the `duse_ros.time_origin_ns` of its metadata or else the bag's start):

    start,end,label
    0.0,4.5,happiness
    4.5,9.0,neutral

The header row is optional; blank lines and lines starting with '#' are skipped. Spans may leave
gaps (unlabelled time) but may not overlap, and every label must be a known class. Errors name the
file and the line.

A window is labelled by the span that holds its midpoint (first to last frame stamp); windows whose
midpoint falls in no span are not scored.
"""

from __future__ import annotations

import csv
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from duse_ros.timebase import NS

MAX_TIME_NS = 2**63 - 1  # rosbag2 times are signed 64-bit nanoseconds


class LabelError(ValueError):
    """A labels file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Span:
    start_ns: int  # bag time
    end_ns: int  # exclusive
    label: str


def _seconds(text: str, where: str, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{where}: {field} {text!r} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise LabelError(f"{where}: {field} {text!r} is not a finite number of seconds")
    return value


def check_spans(
    spans: Sequence[Span], classes: Iterable[str] | None, source: str, where: Sequence[str] | None = None
) -> list[Span]:
    """Sorted spans; LabelError on an empty or reversed span, an unknown class or an overlap."""
    known = None if classes is None else list(classes)
    where = list(where) if where is not None else [source] * len(spans)
    for span, at in zip(spans, where):
        if span.end_ns <= span.start_ns:
            raise LabelError(f"{at}: span end {span.end_ns / NS:g} s is not after its start {span.start_ns / NS:g} s")
        if known is not None and span.label not in known:
            raise LabelError(f"{at}: unknown class {span.label!r}; known classes: {', '.join(known)}")
    order = sorted(range(len(spans)), key=lambda i: spans[i].start_ns)
    for a, b in zip(order, order[1:]):
        if spans[b].start_ns < spans[a].end_ns:
            raise LabelError(
                f"{where[b]}: span {spans[b].start_ns / NS:g}-{spans[b].end_ns / NS:g} s "
                f"({spans[b].label}) overlaps {spans[a].start_ns / NS:g}-{spans[a].end_ns / NS:g} s "
                f"({spans[a].label}) from {where[a]}"
            )
    return [spans[i] for i in order]


def read_labels_csv(path: str | Path, classes: Iterable[str] | None = None, origin_ns: int = 0) -> list[Span]:
    """Spans of a `start,end,label` CSV, shifted to bag time by `origin_ns`, sorted by start."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise LabelError(f"{path}: cannot read labels ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise LabelError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the labels as UTF-8 CSV") from None
    spans, where = [], []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        at = f"{path}:{number}"
        if len(cells) != 3:
            raise LabelError(f"{at}: expected 'start,end,label', got {','.join(cells)!r}")
        if not spans and cells[0].lower() == "start":
            continue  # the header row
        start, end = _seconds(cells[0], at, "start"), _seconds(cells[1], at, "end")
        span = Span(origin_ns + int(round(start * NS)), origin_ns + int(round(end * NS)), cells[2])
        for name, value, ns in (("start", start, span.start_ns), ("end", end, span.end_ns)):
            if not 0 <= ns <= MAX_TIME_NS:
                raise LabelError(f"{at}: {name} {value:g} s lies outside the times a bag can hold")
        spans.append(span)
        where.append(at)
    if not spans:
        raise LabelError(f"{path}: no label spans")
    return check_spans(spans, classes, str(path), where)


def spans_to_messages(spans: Sequence[Span]) -> list[tuple[int, str]]:
    """(bag time, text) for the label topic: the class at each span start, "" where a gap begins."""
    events: list[tuple[int, str]] = []
    for i, s in enumerate(spans):
        events.append((s.start_ns, s.label))
        if i + 1 == len(spans) or spans[i + 1].start_ns > s.end_ns:
            events.append((s.end_ns, ""))
    return events


def spans_from_messages(
    events: Sequence[tuple[int, str]], end_ns: int, source: str, classes: Iterable[str] | None = None
) -> list[Span]:
    """The inverse of `spans_to_messages`; a last open span ends at `end_ns` (the bag's end)."""
    spans = []
    ordered = sorted(events)
    for (t, label), nxt in zip(ordered, ordered[1:] + [(max(end_ns, ordered[-1][0] + 1) if ordered else end_ns, "")]):
        if label and nxt[0] > t:
            spans.append(Span(t, nxt[0], label))
    return check_spans(spans, classes, source)


class SpanIndex:
    """Which span holds a time."""

    def __init__(self, spans: Sequence[Span]):
        self.spans = sorted(spans, key=lambda s: s.start_ns)
        self._starts = [s.start_ns for s in self.spans]

    def label_at(self, t_ns: int) -> str | None:
        i = bisect_right(self._starts, t_ns) - 1
        if i >= 0 and t_ns < self.spans[i].end_ns:
            return self.spans[i].label
        return None

    def window_label(self, start_ns: int, end_ns: int) -> str | None:
        return self.label_at((start_ns + end_ns) // 2)
