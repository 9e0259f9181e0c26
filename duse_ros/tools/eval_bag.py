"""duse-eval-bag: replay a rosbag2 through the real nodes and score what they publish.

    duse-eval-bag BAG [--model NAME_OR_CONFIG] [--labels CSV] [--out DIR] [--realtime [--rate R]]

affect_node and llm_bridge_node run in processes of their own and the bag is played to them over
DDS (loopback only), under the namespace /duse_eval. Two ways to play:

- as fast as the model keeps up (default): a frame that completes a window is held back until
  the node has answered all but `--queue-depth - 1` of the windows before it, so the node's
  queue never overflows and no window is dropped; a window that never comes is counted in
  `dropped` (after --window-timeout-s);
- `--realtime`: every message at its recorded time (scaled by --rate); windows the model cannot
  keep up with are dropped by the node, as on a robot, and counted.

Either way /clock carries the bag's time and the nodes run with use_sim_time. Which windows must
come is known in advance: the player cuts the frame stamps with the node's own windowing rules.
The EmotionStates, DialoguePrompts and the labels go to DIR/output_bag; DIR/report.json holds UAR,
WAR, per-class recall, windows, dropped and the latency from a window's last frame leaving the
player to its EmotionState arriving (p50/p95); DIR/confusion.png and DIR/timeline.png show them.

Image topics: sensor_msgs/Image (any encoding the node reads) or CompressedImage. Audio topics:
duse_ros/AudioChunk, or audio_common AudioDataStamped / AudioStamped, converted to AudioChunk by
the player (the format of AudioDataStamped comes from the bag's AudioInfo topic, else --audio-*).
Labels: --labels CSV (seconds from the bag's origin), else the bag's /emotion_label topic.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

# DDS stays on this machine, on a domain of this tool's own unless one is given (before rclpy loads).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "64")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.io.labels import LabelError, read_labels_csv, spans_from_messages  # noqa: E402
from duse_ros.io.rosbag import (  # noqa: E402
    AUDIO_CHUNK,
    AUDIO_DATA_STAMPED,
    AUDIO_INFO,
    COMPRESSED_IMAGE,
    LABEL_TOPIC,
    LABEL_TYPE,
    ORIGIN_KEY,
    BagError,
    BagFile,
    BagWriter,
    select_streams,
)
from duse_ros.metrics import plot_confusion, recall_table  # noqa: E402
from duse_ros.share import share_path  # noqa: E402
from duse_ros.timebase import NS
from duse_ros.tools import compare, providers  # noqa: E402
from duse_ros.tools.evaluate import percentiles_ms, plot_timeline, score_states  # noqa: E402
from duse_ros.tools.processes import node_command, stop  # noqa: E402

NAMESPACE = "/duse_eval"


class EvalError(RuntimeError):
    """The replay could not run (a node did not start, ...); the message says why."""


class AudioAdapter:
    """Bag audio messages to duse_ros/AudioChunk for the node (which reads that type everywhere)."""

    def __init__(self, bag: BagFile, msgtype: str, info_topic: str | None, args):
        self.bag, self.msgtype = bag, msgtype
        self.channels, self.rate, self.fmt = args.audio_channels, args.audio_rate, args.audio_format
        if info_topic is not None:  # the capture node's AudioInfo beats the command line
            for _, _, _, raw in bag.messages([info_topic]):
                info = bag.deserialize(raw, AUDIO_INFO)
                self.channels, self.rate = int(info.channels), int(info.sample_rate)
                self.fmt = info.sample_format or self.fmt
                break

    def __call__(self, raw: bytes):
        """(stamp ns, AudioChunk or raw CDR), or None for a message that cannot be converted."""
        from duse_ros.io.audio import audio_data_stamped_to_mono, audio_stamped_to_mono
        from duse_ros.io.conversions import ConversionError
        from duse_ros.msg import AudioChunk

        if self.msgtype == AUDIO_CHUNK:
            return raw
        msg = self.bag.deserialize(raw, self.msgtype)
        try:
            if self.msgtype == AUDIO_DATA_STAMPED:
                mono = audio_data_stamped_to_mono(
                    msg, channels=self.channels, sample_rate=self.rate, sample_format=self.fmt
                )
                rate = self.rate
            else:
                mono, rate = audio_stamped_to_mono(msg), int(msg.audio.info.rate)
        except ConversionError:
            return None  # counted by the caller
        chunk = AudioChunk(sample_rate=rate, channels=1, sample_format="F32LE", data=np.asarray(mono, "<f4").tobytes())
        chunk.header.stamp.sec, chunk.header.stamp.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
        chunk.header.frame_id = msg.header.frame_id
        return chunk


class Player:
    """The tool's own rclpy node: plays the bag, keeps what the nodes publish, paces the replay."""

    def __init__(self, compressed: bool, uses_audio: bool, depth: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image

        from duse_ros.msg import AudioChunk, DialoguePrompt, EmotionState

        self.rclpy, self.Clock = rclpy, Clock
        self.node = rclpy.create_node("duse_eval_player", namespace=NAMESPACE)
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(
            CompressedImage if compressed else Image, "image_raw/compressed" if compressed else "image_raw", qos
        )
        self.audio_pub = self.node.create_publisher(AudioChunk, "audio", qos) if uses_audio else None
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10)
        self.states: list = []
        self.arrivals: list[float] = []
        self.prompts: list = []
        self.diagnostics: dict[str, str] = {}
        self.node.create_subscription(EmotionState, "emotion_state", self._on_state, QoSProfile(depth=1000))
        self.node.create_subscription(DialoguePrompt, "dialogue_prompt", self.prompts.append, QoSProfile(depth=1000))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.clock_ns = 0
        self._anchor = (time.monotonic(), 0)  # (wall, bag ns) the free-running clock counts from
        self.rate = 1.0

    def _on_state(self, msg) -> None:
        self.states.append(msg)
        self.arrivals.append(time.monotonic())

    def _on_diagnostics(self, arr) -> None:
        for status in arr.status:
            if diag.is_affect_status(status.name):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def inputs_matched(self, topics: list[str], readers: int) -> bool:
        """affect_node's diagnostics count the publishers its subscriptions have matched, and the
        readers its EmotionState publisher has matched (this player, and the bridge): a reading
        published before a reader matched would be lost to it."""
        key = diag.output_subscribers_key(f"{NAMESPACE}/emotion_state")
        return int(self.diagnostics.get(key, 0)) >= readers and all(
            int(self.diagnostics.get(diag.input_publishers_key(f"{NAMESPACE}/{t}"), 0)) > 0 for t in topics
        )

    def spin_until(self, done, timeout: float, procs: list[subprocess.Popen]) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            for p in procs:
                if p.poll() is not None:
                    log = Path(p.log_path)
                    tail = "\n".join(log.read_text().splitlines()[-8:]) if log.is_file() else ""
                    raise EvalError(
                        f"{p.args[2]} exited (code {p.returncode}) during the replay; its log, {log}, ends:\n{tail}"
                    )
            self.run_clock()
            self.rclpy.spin_once(self.node, timeout_sec=0.01)
        return True

    def tick_clock(self, ns: int) -> None:
        """/clock to bag time `ns` (never backwards); the clock runs on from there while waiting."""
        self._anchor = (time.monotonic(), max(ns, self.clock_ns))
        if ns > self.clock_ns:
            self.clock_ns = ns
            msg = self.Clock()
            msg.clock.sec, msg.clock.nanosec = ns // NS, ns % NS
            self.clock_pub.publish(msg)

    def run_clock(self) -> None:
        """While the player waits, sim time goes on at the playback rate, so the nodes' timers
        (diagnostics, the bridge's heartbeat) keep running."""
        wall, ns = self._anchor
        now = ns + int((time.monotonic() - wall) * self.rate * NS)
        if now >= self.clock_ns + NS // 50:
            self.tick_clock(now)
            self._anchor = (wall, ns)

    def close(self) -> None:
        self.node.destroy_node()


def _shadow_windower(spec, args):
    """The node's windowing, on frame stamps alone: which frames complete a window."""
    from duse_ros.affect.windowing import Windower

    return Windower(num_frames=spec.num_frames, span_s=args.span_s, stride_s=args.stride_s, max_gap_s=args.max_gap_s)


def replay(bag: BagFile, streams, model, args, out_dir: Path) -> dict:
    import rclpy

    spec = model.input_spec
    compressed = streams.image.msgtype == COMPRESSED_IMAGE
    uses_audio = spec.uses_audio and streams.audio is not None
    audio = (
        AudioAdapter(bag, streams.audio.msgtype, streams.audio_info.name if streams.audio_info else None, args)
        if uses_audio
        else None
    )
    topics = [streams.image.name] + ([streams.audio.name] if uses_audio else [])
    # Enough reader history for every message between two windows, twice over.
    span_s = max(1e-3, (bag.end_ns - bag.start_ns) / NS)
    per_stride = sum(bag.topics[t].count for t in topics) / span_s * args.stride_s
    depth = int(max(50, 4 * per_stride))
    node_params = {
        "model": args.model,
        "image_compressed": compressed,
        "qos.reliability": "reliable",
        "qos.depth": depth,
        "queue_depth": args.queue_depth,
        "use_sim_time": True,
        "no_face_policy": "publish",
        "span_s": args.span_s,
        "stride_s": args.stride_s,
        "max_gap_s": args.max_gap_s,
        "diagnostics_period_s": 0.5,
    }
    if not args.realtime:  # the player waits for the model, so sim time may run ahead of the windows
        node_params["max_window_age_s"] = 0.0
    if args.clip_weights:
        node_params["clip_weights"] = args.clip_weights
    if args.face_mode:
        node_params["face_mode"] = args.face_mode
    logs = {name: (out_dir / f"{name}.log").open("w") for name in ("affect_node", "llm_bridge_node")}
    procs = [
        subprocess.Popen(
            node_command("duse_ros.nodes.affect_node", node_params, NAMESPACE, args.param),
            stdout=logs["affect_node"],
            stderr=subprocess.STDOUT,
        )
    ]
    if not args.no_bridge:
        procs.append(
            subprocess.Popen(
                node_command("duse_ros.nodes.llm_bridge_node", {"use_sim_time": True}, NAMESPACE, args.bridge_param),
                stdout=logs["llm_bridge_node"],
                stderr=subprocess.STDOUT,
            )
        )
    for proc, name in zip(procs, logs):
        proc.log_path = out_dir / f"{name}.log"
    rclpy.init()
    player = Player(compressed, uses_audio, depth)
    player.rate = args.rate if args.realtime else 1.0
    # Sim time before the bag starts, so the nodes' timers run while they come up.
    player.tick_clock(bag.start_ns - int(args.startup_timeout_s * 2 * NS))
    send_time: dict[int, float] = {}
    expected: list[int] = []  # window end stamps the node must answer, in order
    answered: set[int] = set()
    malformed_audio = frames = audio_msgs = 0
    try:
        ready = player.spin_until(
            lambda: (
                player.image_pub.get_subscription_count() >= args.image_subscribers
                and (not uses_audio or player.audio_pub.get_subscription_count() > 0)
                and player.node.count_publishers(f"{NAMESPACE}/emotion_state") > 0
                and (
                    args.no_bridge
                    or (
                        player.node.count_subscribers(f"{NAMESPACE}/emotion_state") >= 2
                        and player.node.count_publishers(f"{NAMESPACE}/dialogue_prompt") > 0
                    )
                )
            ),
            args.startup_timeout_s,
            procs,
        )
        node_topics = ["image_raw/compressed" if compressed else "image_raw"] + (["audio"] if uses_audio else [])
        readers = 1 if args.no_bridge else 2
        ready = ready and player.spin_until(
            lambda: player.inputs_matched(node_topics, readers), args.startup_timeout_s, procs
        )
        if not ready:
            raise EvalError(
                f"affect_node did not come up within {args.startup_timeout_s:g} s; see {out_dir / 'affect_node.log'}"
            )
        shadow = _shadow_windower(spec, args)
        outstanding: deque[int] = deque()

        def settle(limit: int, timeout: float) -> None:
            """Wait until fewer than `limit` expected windows are unanswered (or give up on the oldest)."""
            while len(outstanding) >= limit:
                got = player.spin_until(lambda: _drain(outstanding, answered, player) < limit, timeout, procs)
                if not got:
                    outstanding.popleft()  # never came: counted as dropped below

        from tqdm import tqdm

        total = sum(bag.topics[t].count for t in topics)
        start_wall, start_log = None, None
        with tqdm(total=total, unit="msg", desc="duse-eval-bag", disable=args.quiet) as progress:
            for topic, msgtype, log_ns, raw in bag.messages(topics):
                if start_wall is None:
                    start_wall, start_log = time.monotonic(), log_ns
                if args.realtime:
                    due = start_wall + (log_ns - start_log) / NS / args.rate
                    while (wait := due - time.monotonic()) > 0:
                        player.run_clock()
                        rclpy.spin_once(player.node, timeout_sec=min(wait, 0.02))
                player.tick_clock(log_ns)
                if topic == streams.image.name:
                    msg = bag.deserialize(raw, msgtype)
                    stamp = int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)
                    shadow.add_frame(stamp, _EMPTY)
                    window = shadow.poll()
                    if window is not None:
                        if not args.realtime:
                            settle(args.queue_depth, args.window_timeout_s)
                        expected.append(window.end_ns)
                        outstanding.append(window.end_ns)
                    player.image_pub.publish(raw)
                    send_time.setdefault(stamp, time.monotonic())
                    frames += 1
                else:
                    chunk = audio(raw)
                    if chunk is None:
                        malformed_audio += 1
                    else:
                        player.audio_pub.publish(chunk)
                        audio_msgs += 1
                rclpy.spin_once(player.node, timeout_sec=0.0)
                progress.update(1)
        settle(1, args.window_timeout_s)  # the last windows
        replay_s = time.monotonic() - (start_wall or time.monotonic())
        # Final counters: diagnostics that have seen every frame.
        player.spin_until(lambda: int(player.diagnostics.get(diag.FRAMES_IN, -1)) >= frames, 5.0, procs)
        if not args.no_bridge:  # prompts follow their EmotionState; give the last one a moment
            player.spin_until(lambda: False, 0.5, procs)
    finally:
        player.close()
        rclpy.try_shutdown()
        for p in procs:
            stop(p)
        for f in logs.values():
            f.close()
    latencies = [arr - send_time[_end(s)] for s, arr in zip(player.states, player.arrivals) if _end(s) in send_time]
    received = {_end(s) for s in player.states}
    return {
        "states": player.states,
        "prompts": player.prompts,
        "expected": expected,
        "missing": [e for e in expected if e not in received],
        "latencies_s": latencies,
        "diagnostics": player.diagnostics,
        "frames": frames,
        "audio_messages": audio_msgs,
        "malformed_audio": malformed_audio,
        "replay_s": replay_s,
    }


_EMPTY = np.zeros((0,), np.uint8)


def _end(state) -> int:
    return int(state.window_end.sec) * NS + int(state.window_end.nanosec)


def _drain(outstanding: deque, answered: set, player: Player) -> int:
    """Mark the windows answered so far; any older window still open is skipped by the node
    only if a later one came first (states arrive in window order)."""
    for s in player.states[len(answered) :]:
        answered.add(_end(s))
    while outstanding and outstanding[0] in answered:
        outstanding.popleft()
    if outstanding and any(e in answered for e in list(outstanding)[1:]):
        while outstanding and outstanding[0] not in answered:
            outstanding.popleft()  # overtaken: it will never come
        while outstanding and outstanding[0] in answered:
            outstanding.popleft()
    return len(outstanding)


def _load_spans(bag: BagFile, args, classes: list[str]):
    origin = int(bag.custom_data.get(ORIGIN_KEY, bag.start_ns))
    if args.labels:
        return read_labels_csv(args.labels, classes, origin), origin, str(args.labels)
    if LABEL_TOPIC in bag.topics:
        events = [(t, bag.deserialize(raw, LABEL_TYPE).data) for _, _, t, raw in bag.messages([LABEL_TOPIC])]
        return (
            spans_from_messages(events, bag.end_ns, f"{bag.path} {LABEL_TOPIC}", classes),
            origin,
            f"{bag.path}:{LABEL_TOPIC}",
        )
    return [], origin, None


def _write_output_bag(path: Path, result: dict, spans) -> None:
    from rclpy.serialization import serialize_message

    from duse_ros.io.labels import spans_to_messages

    with BagWriter(path) as out:
        for s in result["states"]:
            out.write(f"{NAMESPACE}/emotion_state", _end(s), serialize_message(s), "duse_ros/msg/EmotionState")
        for p in result["prompts"]:
            out.write(
                f"{NAMESPACE}/dialogue_prompt",
                int(p.header.stamp.sec) * NS + int(p.header.stamp.nanosec),
                serialize_message(p),
                "duse_ros/msg/DialoguePrompt",
            )
        for t, text in spans_to_messages(spans):
            out.write(LABEL_TOPIC, t, out.store.types[LABEL_TYPE](data=text))


def default_model() -> str:
    from duse_ros.nodes.affect_node import DEFAULTS

    return str(DEFAULTS["model"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="duse-eval-bag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("bag", type=Path)
    ap.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        help="registered model name or checkpoint .json (default: affect_node's); several with --compare",
    )
    ap.add_argument(
        "--compare",
        action="store_true",
        help="evaluate every --model and --provider-command on the bag; one table and plot (see tools/compare.py)",
    )
    ap.add_argument("--clip-weights", default="", help="open_clip checkpoint for DuSE models")
    ap.add_argument(
        "--labels", type=Path, help="CSV of start,end,label spans (default: the bag's /emotion_label topic)"
    )
    ap.add_argument("--out", type=Path, help="output folder (default: eval_output/<bag name>)")
    ap.add_argument("--image-topic", help="the bag's camera topic (needed when it has several)")
    ap.add_argument("--audio-topic", help="the bag's microphone topic (needed when it has several)")
    ap.add_argument(
        "--realtime",
        action="store_true",
        help="play at the recorded pace (windows may drop) instead of as fast as the model keeps up",
    )
    ap.add_argument("--rate", type=float, default=1.0, help="--realtime playback speed")
    ap.add_argument("--smoothed", action="store_true", help="score smoothed_label instead of label")
    ap.add_argument("--face-mode", choices=("detect", "full_frame"), help="affect_node face_mode (default: the node's)")
    ap.add_argument("--queue-depth", type=int, default=2, help="affect_node queue_depth")
    ap.add_argument("--span-s", type=float, default=2.0)
    ap.add_argument("--stride-s", type=float, default=0.5)
    ap.add_argument("--max-gap-s", type=float, default=0.5)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="more affect_node parameters")
    ap.add_argument("--no-bridge", action="store_true", help="do not start llm_bridge_node")
    ap.add_argument(
        "--bridge-param", action="append", default=[], metavar="NAME=VALUE", help="llm_bridge_node parameters"
    )
    ap.add_argument(
        "--image-subscribers",
        type=int,
        default=1,
        metavar="N",
        help="wait for N subscribers of the replayed images before playing (affect_node, plus "
        "any recorder or viewer of your own that must see the first frame)",
    )
    ap.add_argument("--audio-channels", type=int, default=1, help="AudioDataStamped without AudioInfo in the bag")
    ap.add_argument("--audio-rate", type=int, default=16000, help="AudioDataStamped without AudioInfo in the bag")
    ap.add_argument("--audio-format", default="S16LE", help="AudioDataStamped without AudioInfo in the bag")
    ap.add_argument("--window-timeout-s", type=float, default=60.0, help="give up on a window after this long")
    ap.add_argument("--startup-timeout-s", type=float, default=90.0)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    providers.add_arguments(ap)
    args = ap.parse_args(argv)
    args.model = args.models[-1] if args.models else None
    if not args.compare and (len(args.models) > 1 or len(args.provider_command) > 1):
        ap.error("several --model or --provider-command need --compare")
    if args.queue_depth < 1 or args.rate <= 0:
        ap.error("--queue-depth must be >= 1 and --rate > 0")
    return args


def run(args: argparse.Namespace) -> dict:
    from duse_ros.classes import get_class_set
    from duse_ros.loading import load_model

    provider = providers.wanted(args)
    if provider:  # another program reads the bag: its windows are its own, so the bag plays at its pace
        args.realtime, args.no_bridge, args.model = True, True, None
    else:
        args.model = args.model or default_model()
    with BagFile(args.bag) as bag:
        streams = select_streams(bag, args.image_topic, args.audio_topic)
        # Read every record once before any node starts: a truncated or damaged bag fails here.
        for _ in bag.messages([t.name for t in (streams.image, streams.audio, streams.audio_info) if t]):
            pass
        if provider:
            model = _ProviderModel(providers.provider_name(args), get_class_set(args.provider_classes).classes)
        else:
            model = load_model(args.model, **({"clip_weights": args.clip_weights} if args.clip_weights else {}))
        classes = list(model.class_names)
        spans, origin, labels_source = _load_spans(bag, args, classes)
        out_dir = args.out or Path("eval_output") / bag.path.name
        out_dir.mkdir(parents=True, exist_ok=True)
        output_bag = out_dir / "output_bag"
        if output_bag.exists():
            raise FileExistsError(f"{output_bag} exists; choose a new --out")
        large_shm_profile = share_path("config", "fastdds_large_shm.xml")
        if streams.image.msgtype != COMPRESSED_IMAGE and large_shm_profile is not None:
            # Raw frames are larger than Fast DDS's default shared-memory segment (see README).
            os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(large_shm_profile))
        if provider:
            kit = (Player, AudioAdapter, EvalError, NAMESPACE)
            result = providers.replay(bag, streams, args, out_dir, classes, kit)
        else:
            result = replay(bag, streams, model, args, out_dir)
        bag_name = str(bag.path)
    _write_output_bag(output_bag, result, spans)
    states = result["states"]
    inference = [s.inference_latency.sec + s.inference_latency.nanosec / NS for s in states if s.modality]
    p50, p95 = percentiles_ms(result["latencies_s"])
    i50, i95 = percentiles_ms(inference)
    node_values = result["diagnostics"]
    report = {
        "bag": bag_name,
        "model": args.model,
        "model_id": model.model_id,
        "untrained": model.untrained if model.untrained is None else bool(model.untrained),
        "mode": "realtime" if args.realtime else "as_fast_as_model",
        "rate": args.rate if args.realtime else None,
        "labels": labels_source,
        "scored_on": "smoothed_label" if args.smoothed else "label",
        "uar": None,
        "war": None,
        "per_class_recall": {},
        "support": {},
        "windows": len(result["expected"]),
        "windows_received": len(states),
        "dropped": len(result["missing"]),
        "dropped_by_node_queue": _int(node_values.get(diag.DROPPED_QUEUE_FULL)),
        "windows_scored": 0,
        "windows_unlabelled": 0,
        "no_reading": 0,
        "latency_ms_p50": p50,
        "latency_ms_p95": p95,
        "inference_ms_p50": i50,
        "inference_ms_p95": i95,
        "frames_sent": result["frames"],
        "frames_received_by_node": _int(node_values.get(diag.FRAMES_IN)),
        "audio_messages_sent": result["audio_messages"],
        "audio_messages_unconvertible": result["malformed_audio"],
        "dialogue_prompts": len(result["prompts"]),
        "replay_s": round(result["replay_s"], 3),
        "replay_frames_per_s": round(result["frames"] / result["replay_s"], 2) if result["replay_s"] > 0 else None,
        "origin_ns": origin,
        "output_bag": str(output_bag),
    }
    if provider:  # what only a provider run knows; what only affect_node reports is None
        report.update(provider=model.model_id, provider_command=args.provider_command, **result["provider"])
    if spans:
        scored = score_states(states, spans, classes, args.smoothed)
        report.update(
            uar=scored.scores.uar,
            war=scored.scores.war,
            windows_scored=len(scored.truths),
            windows_unlabelled=scored.unlabelled,
            no_reading=scored.no_reading,
            per_class_recall={c: scored.scores.per_class_recall[c] for c in classes},
            support={c: scored.scores.support[c] for c in classes},
            confusion={"classes": list(scored.scores.per_class_recall), "counts": scored.scores.confusion.tolist()},
        )
        plot_confusion(
            scored.scores,
            out_dir / "confusion.png",
            f"{model.model_id}{' (UNTRAINED)' if model.untrained else ''}: "
            f"UAR {100 * scored.scores.uar:.1f}%  WAR {100 * scored.scores.war:.1f}%",
        )
        report["recall_table"] = recall_table(scored.scores)
    plot_timeline(
        states,
        spans,
        classes,
        origin,
        out_dir / "timeline.png",
        f"{bag.path.name}: {model.model_id}{' (UNTRAINED: random weights)' if model.untrained else ''}",
    )
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["out_dir"] = str(out_dir)
    return report


class _ProviderModel:
    """What the report needs of a model, for a provider (its weights unknown: untrained None)."""

    def __init__(self, name: str, classes):
        self.model_id, self.class_names, self.untrained = name, list(classes), None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_ERRORS = (BagError, LabelError, FileExistsError, EvalError, KeyError, ValueError)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.compare:
            return _print_comparison(compare.run_compare(args, run, _ERRORS))
        report = run(args)
    except _ERRORS as e:
        print(f"duse-eval-bag: error: {e}", file=sys.stderr)
        return 2
    summary = {k: report[k] for k in ("windows", "dropped", "uar", "war", "latency_ms_p50", "latency_ms_p95")}
    print(json.dumps(summary))
    if report.get("recall_table"):
        print(report["recall_table"])
    if report["untrained"]:
        print(f"NOTE: {report['model_id']} has UNTRAINED (random) weights: these scores mean nothing.")
    print(f"report, plots and output bag in {report['out_dir']}")
    return 0


def _print_comparison(table: dict) -> int:
    print((Path(table["out_dir"]) / "compare.md").read_text(), end="")
    failed = [r["entry"] for r in table["entries"] if "error" in r]
    if any(r.get("untrained") for r in table["entries"]):
        print("NOTE: entries marked UNTRAINED have random weights: their scores mean nothing.")
    print(f"table and plot in {table['out_dir']} (compare.md, compare.json, compare.png)")
    if failed:
        print(f"duse-eval-bag: {len(failed)} entries failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
