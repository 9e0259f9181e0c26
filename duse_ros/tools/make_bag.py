"""duse-make-bag: a video, a folder of frames or a clip list (plus audio and labels) -> a rosbag2.

    duse-make-bag talk.mp4 -o talk_bag --labels talk_labels.csv            # MCAP, Image + AudioChunk
    duse-make-bag frames/ --fps 25 --audio mic.wav --label happiness -o clip_bag --storage sqlite3
    duse-make-bag DFEW/set_1/test.txt --clip-list -o bags/ [--one-bag]     # one bag per clip, or one long bag
    duse-make-bag robot_bag --labels spans.csv -o relabelled               # re-label a bag, no replay
    duse-make-bag robot_bag --split-labels -o clips/                       # one bag per label span

Stamps come from the input's own timeline: a video frame is stamped origin + its presentation
time, an audio chunk origin + the time of its first sample, so the bag replays the clip exactly as
it was timed. Images are `sensor_msgs/Image` (bgr8) or, with --compressed, JPEG
`sensor_msgs/CompressedImage`; audio is `duse_ros/AudioChunk` (S16LE) or one of the audio_common
layouts (--audio-msg). Labels go on /emotion_label (std_msgs/String: the class at each span
start, "" where unlabelled time begins). Clips of a clip list joined into one bag are separated
by --gap-s of silence, longer than the node's max_gap_s, so no window spans two clips.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from duse_ros.classes import CLASS_SETS, get_class_set
from duse_ros.io.audio import AUDIO_MESSAGES
from duse_ros.io.clip_lists import ClipListError, read_clip_list
from duse_ros.io.conversions import ConversionError
from duse_ros.io.images import image_message
from duse_ros.io.labels import LabelError, read_labels_csv, spans_from_messages, spans_to_messages
from duse_ros.io.rosbag import (
    AUDIO_DATA_STAMPED,
    AUDIO_INFO,
    LABEL_TOPIC,
    LABEL_TYPE,
    ORIGIN_KEY,
    BagError,
    BagFile,
    BagWriter,
    typestore,
)
from duse_ros.io.sources import Source, SourceError, open_input, read_wav
from duse_ros.timebase import NS, sec_nanosec

DEFAULT_ORIGIN_S = 1_700_000_000
MAX_BAG_NS = 2**63 - 1  # rosbag2 times are signed 64-bit nanoseconds
# --audio-msg choices: the audio message family's table (duse_ros/io/audio.py)
AUDIO_MSGS = {m.option: m for m in AUDIO_MESSAGES.values()}


def all_class_names() -> list[str]:
    names: list[str] = []
    for cs in CLASS_SETS.values():
        names += [c for c in cs.classes if c not in names]
    return names


class _StreamWriter:
    """Writes one timeline of frames, audio chunks and label events into a BagWriter."""

    def __init__(self, writer: BagWriter, args: argparse.Namespace):
        self.w, self.args, self.store = writer, args, writer.store
        self.frames = self.audio_samples = 0
        t = self.store.types
        self.Header, self.Time = t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"]
        self.image = image_message(args.compressed)  # the image family's table (duse_ros/io/images.py)
        self.image_topic = args.image_topic or self.image.topic("/image_raw")
        self._audio_info_written = False

    def header(self, ns: int, frame_id: str):
        sec, nanosec = sec_nanosec(ns)
        return self.Header(stamp=self.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def frame(self, ns: int, rgb: np.ndarray) -> None:
        try:
            msg = self.image.build(self.store.types, self.header(ns, self.args.frame_id), rgb, self.args.jpeg_quality)
        except ConversionError:
            raise SourceError(f"JPEG encoding failed for the frame at {ns / NS:.3f} s") from None
        self.w.write(self.image_topic, ns, msg)
        self.frames += 1

    def audio_chunk(self, ns: int, pcm: np.ndarray, rate: int) -> None:
        t, audio, channels = self.store.types, AUDIO_MSGS[self.args.audio_msg], pcm.shape[1]
        if audio.type_name == AUDIO_DATA_STAMPED and not self._audio_info_written:
            # audio_capture publishes the format on audio_info, not in the messages
            info = t[AUDIO_INFO](
                channels=channels,
                sample_rate=rate,
                sample_format="S16LE",
                bitrate=16 * rate * channels,
                coding_format="wave",
            )
            self.w.write("/audio_info", ns, info)
            self._audio_info_written = True
        msg = audio.build(t, self.header(ns, "microphone"), pcm, rate)
        self.w.write(self.args.audio_topic, ns, msg)
        self.audio_samples += pcm.shape[0]

    def label(self, ns: int, text: str) -> None:
        self.w.write(LABEL_TOPIC, ns, self.store.types[LABEL_TYPE](data=text))

    def clip(self, source: Source, offset_ns: int, label_events: list[tuple[int, str]], progress) -> int:
        """Write one clip starting at bag time `offset_ns`; returns the bag time its content ends."""
        audio = source.audio
        chunks: list[tuple[int, int, int]] = []  # (bag ns, first sample, last sample)
        if audio is not None:
            n = max(1, int(round(audio.rate * self.args.audio_chunk_s)))
            start_ns = offset_ns + int(round(audio.start_s * NS))
            chunks = [
                (start_ns + k * NS // audio.rate, k, min(k + n, audio.pcm.shape[0]))
                for k in range(0, audio.pcm.shape[0], n)
            ]
        events = sorted(label_events)
        ai = li = 0
        last_ns, period_ns = offset_ns, 0

        def flush(until_ns: int | None) -> None:
            nonlocal ai, li
            while ai < len(chunks) and (until_ns is None or chunks[ai][0] <= until_ns):
                ns, a, b = chunks[ai]
                self.audio_chunk(ns, audio.pcm[a:b], audio.rate)
                ai += 1
            while li < len(events) and (until_ns is None or events[li][0] <= until_ns):
                self.label(*events[li])
                li += 1

        for t_s, rgb in source.frames():
            ns = offset_ns + int(round(t_s * NS))
            flush(ns)
            self.frame(ns, rgb)
            period_ns, last_ns = ns - last_ns, ns
            progress.update(1)
        if self.frames == 0:
            raise SourceError(f"{source.name}: no frames could be read")
        end_ns = last_ns + max(period_ns, 1)
        if audio is not None:
            end_ns = max(end_ns, offset_ns + int(round((audio.start_s + audio.duration_s) * NS)))
        flush(None)
        return end_ns


def _attach_audio(source: Source, args: argparse.Namespace) -> Source:
    if args.audio is not None:
        source.audio = read_wav(args.audio)  # a separate WAV replaces the file's own track
    if args.no_audio:
        source.audio = None
    return source


def make_from_inputs(args: argparse.Namespace) -> list[Path]:
    classes = list(get_class_set(args.class_set).classes) if args.class_set else all_class_names()
    origin_ns = int(round(args.start_time * NS))
    if args.clip_list:
        index_classes = list(get_class_set(args.class_set or "dfew").classes)
        try:
            entries = read_clip_list(args.input, args.data_root, args.label_base, index_classes)
        except UnicodeDecodeError as e:
            raise ClipListError(f"{args.input}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        clips = [(entry.path, index_classes[entry.label]) for entry in entries]
        sources = []
        for path, label in clips:
            src = open_input(path, args.fps, with_audio=not args.no_audio)
            src.label = label
            sources.append(src)
    else:
        src = _attach_audio(open_input(args.input, args.fps, with_audio=not args.no_audio), args)
        if args.label is not None:
            if args.label not in classes:
                raise LabelError(f"--label {args.label!r} is not a known class; known classes: {', '.join(classes)}")
            src.label = args.label
        sources = [src]
    spans = read_labels_csv(args.labels, classes, origin_ns) if args.labels else None

    layout = AUDIO_MSGS[args.audio_msg].layout
    custom = {"duse_ros.source": str(args.input)}
    outputs: list[Path] = []
    one_bag = args.one_bag or len(sources) == 1
    if not one_bag:
        args.output.mkdir(parents=True, exist_ok=True)
    total = sum(s.info.get("frames") or 0 for s in sources) or None
    with tqdm(total=total, unit="frame", desc="duse-make-bag", disable=args.quiet) as progress:
        writer = stream = None
        offset = origin_ns
        for i, src in enumerate(sources):
            if writer is None:
                path = args.output if one_bag else args.output / f"{i:05d}_{src.name}"
                writer = BagWriter(path, args.storage, typestore(layout), custom | {ORIGIN_KEY: str(offset)})
                stream = _StreamWriter(writer, args)
                outputs.append(path)
            events = spans_to_messages(spans) if spans is not None else []
            if src.label is not None:
                events = [(offset, src.label)]
            end = stream.clip(src, offset, events, progress)
            if src.label is not None:
                stream.label(end, "")
            if one_bag:
                offset = end + int(round(args.gap_s * NS))
            else:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()
    return outputs


def relabel_or_split(args: argparse.Namespace) -> list[Path]:
    """A bag in: copy it with new labels, or cut it into one bag per label span."""
    with BagFile(args.input) as bag:
        origin = int(bag.custom_data.get(ORIGIN_KEY, bag.start_ns))
        classes = list(get_class_set(args.class_set).classes) if args.class_set else all_class_names()
        if args.labels:
            spans = read_labels_csv(args.labels, classes, origin)
        elif LABEL_TOPIC in bag.topics:
            events = [(t, bag.deserialize(raw, LABEL_TYPE).data) for _, _, t, raw in bag.messages([LABEL_TOPIC])]
            spans = spans_from_messages(events, bag.end_ns, f"{bag.path} {LABEL_TOPIC}", classes)
        else:
            raise LabelError(f"{bag.path}: no {LABEL_TOPIC} topic; give --labels CSV")
        if args.split_labels:
            args.output.mkdir(parents=True, exist_ok=True)
            targets = [(s, args.output / f"{i:05d}_{s.label}") for i, s in enumerate(spans)]
        else:
            targets = [(None, args.output)]
        writers = []
        for span, path in targets:
            custom = dict(bag.custom_data) | {ORIGIN_KEY: str(span.start_ns if span else origin)}
            w = BagWriter(path, args.storage, bag.store, custom)
            for topic in bag.topics.values():
                if topic.name != LABEL_TOPIC:
                    w.add_topic(topic.name, topic.msgtype, qos=topic.qos)
            events = spans_to_messages([span] if span else spans)
            writers.append([span, w, events, 0])

        def flush(entry, until_ns):
            _, w, events, k = entry
            while k < len(events) and (until_ns is None or events[k][0] <= until_ns):
                w.write(LABEL_TOPIC, events[k][0], bag.store.types[LABEL_TYPE](data=events[k][1]))
                k += 1
            entry[3] = k

        try:
            for topic, msgtype, t, raw in tqdm(
                bag.messages(),
                total=sum(x.count for x in bag.topics.values()),
                unit="msg",
                desc="duse-make-bag",
                disable=args.quiet,
            ):
                if topic == LABEL_TOPIC:
                    continue
                for entry in writers:
                    span = entry[0]
                    if span is None or span.start_ns <= t < span.end_ns:
                        flush(entry, t)
                        entry[1].write(topic, t, raw, msgtype)
            for entry in writers:
                flush(entry, None)
        finally:
            for entry in writers:
                entry[1].close()
    return [path for _, path in targets]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="duse-make-bag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "input", type=Path, help="video file, folder of frames, clip list (--clip-list) or a rosbag2 to re-label/split"
    )
    ap.add_argument("-o", "--output", type=Path, required=True, help="new bag directory (a folder of bags for several)")
    ap.add_argument("--audio", type=Path, help="WAV file to use as the audio track (replaces the video's own)")
    ap.add_argument("--no-audio", action="store_true", help="leave the audio track out")
    labels = ap.add_mutually_exclusive_group()
    labels.add_argument("--label", help="one class for the whole input")
    labels.add_argument("--labels", type=Path, help="CSV of start,end,label spans (seconds from the input's start)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    ap.add_argument("--compressed", action="store_true", help="JPEG sensor_msgs/CompressedImage instead of raw Image")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate of a folder of frames")
    ap.add_argument("--clip-list", action="store_true", help="INPUT lists clips: '<clip> [<frames>] <label>' per line")
    ap.add_argument("--one-bag", action="store_true", help="clip list: one long bag instead of one bag per clip")
    ap.add_argument("--gap-s", type=float, default=1.0, help="time between clips in one long bag")
    ap.add_argument("--data-root", type=Path, help="clip list: folder the clip paths are relative to")
    ap.add_argument("--label-base", type=int, default=1, help="clip list: number of the first class (DFEW, MAFW: 1)")
    ap.add_argument(
        "--class-set", choices=sorted(CLASS_SETS), help="classes labels must come from (default: any known)"
    )
    ap.add_argument("--split-labels", action="store_true", help="INPUT is a bag: write one bag per label span")
    ap.add_argument("--image-topic", help="default /image_raw, or /image_raw/compressed with --compressed")
    ap.add_argument("--audio-topic", default="/audio")
    ap.add_argument(
        "--audio-msg",
        choices=sorted(AUDIO_MSGS),
        default="chunk",
        help="chunk = duse_ros/AudioChunk; audio_data_stamped = ros-drivers audio_common (+ /audio_info); "
        "audio_stamped = mgonzs13 audio_common",
    )
    ap.add_argument("--audio-chunk-s", type=float, default=0.1, help="audio seconds per message")
    ap.add_argument("--frame-id", default="camera_optical_frame")
    ap.add_argument("--start-time", type=float, default=DEFAULT_ORIGIN_S, help="bag time (s) of the input's t = 0")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """ValueError for numbers that would write a wrong bag (overlapping clips, one-sample audio
    messages, times past what a bag can hold)."""
    if not math.isfinite(args.start_time) or not 0 <= args.start_time * NS <= MAX_BAG_NS // 2:
        raise ValueError(f"--start-time {args.start_time:g} is not a bag time (0 to {MAX_BAG_NS // 2 // NS} s)")
    if not (math.isfinite(args.gap_s) and 0 <= args.gap_s <= 3600):
        raise ValueError(f"--gap-s {args.gap_s:g}: the time between clips must be 0 to 3600 s (clips may not overlap)")
    if not (math.isfinite(args.audio_chunk_s) and 0.001 <= args.audio_chunk_s <= 10):
        raise ValueError(f"--audio-chunk-s {args.audio_chunk_s:g}: audio seconds per message must be 0.001 to 10")
    if not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise ValueError(f"--fps {args.fps:g} must be above 0 and at most 1000")
    if not 0 <= args.jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality {args.jpeg_quality} must be 0 to 100")


def _remove_new(created: list[Path], output: Path, before: set[Path] | None) -> None:
    for path in created:
        shutil.rmtree(path, ignore_errors=True)
    if before is not None and output.is_dir():
        for path in set(output.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    created: list[Path] = []
    before: set[Path] | None = None
    try:
        check_args(args)
        is_bag = args.input.is_dir() and (args.input / "metadata.yaml").is_file()
        if args.split_labels and not is_bag:
            raise BagError(f"{args.input}: --split-labels needs a rosbag2 directory as input")
        # What this run makes is removed again if it fails: the output, or the new bags in an
        # existing folder of bags.
        before = set(args.output.iterdir()) if args.output.is_dir() else None
        if not args.output.exists():
            created.append(args.output)
        outputs = relabel_or_split(args) if is_bag else make_from_inputs(args)
    except (BagError, ClipListError, LabelError, SourceError, FileExistsError, KeyError, ValueError, OSError) as e:
        _remove_new(created, args.output, before)
        if isinstance(e, OSError) and not isinstance(e, FileExistsError):
            where = e.filename or args.output
            e = f"cannot write {where}: {e.strerror or e}" + (" (nothing was kept)" if created else "")
        print(f"duse-make-bag: error: {e}", file=sys.stderr)
        return 2
    except BaseException:  # Ctrl-C, a bug: still no half-written bag left to block the next run
        _remove_new(created, args.output, before)
        raise
    for path in outputs:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
