"""duse-eval-bag: replay a rosbag2 through the real nodes and score what they publish.

    duse-eval-bag BAG [--model NAME_OR_CONFIG] [--labels CSV] [--out DIR] [--realtime [--rate R]]

affect_node and llm_bridge_node run in processes of their own and the bag is played to them over
DDS (loopback only). Each run is isolated: its nodes live under a namespace of its own
(/duse_eval/run_<pid>_<n>, /clock and /diagnostics remapped into it) and, unless ROS_DOMAIN_ID
is set, on a DDS domain that no other evaluation on this machine holds. Two ways to play:

- as fast as the model keeps up (default): a frame that completes a window is held back until
  the node has answered all but `--queue-depth - 1` of the windows before it, so the node's
  queue never overflows; face detection runs in lockstep with the frames (face_detect_sync), so
  the same bag gives the same report at any machine load;
- `--realtime`: every message at its recorded time (scaled by --rate); windows the model cannot
  keep up with are dropped by the node, as on a robot, and counted.

Either way /clock carries the bag's time and the nodes run with use_sim_time. Which windows must
come is known in advance: the player cuts the frame stamps with the node's own windowing rules.
No wait is open-ended: a window the node cannot answer any more (every frame taken, the model
idle) is given up within a second or two, the whole replay is bounded by the bag's own length
(--max-replay-factor), and a node that answers nothing stops the run with the reason.
The EmotionStates, DialoguePrompts and the labels go to DIR/output_bag; DIR/report.json holds UAR,
WAR (null, with `uar_reason`, when no window could be scored), per-class recall, where every
offered window went (`accounting`: answered with or without a reading, dropped by the node's
queue, stale, never cut by the node, unanswered), frames lost on the way, and the latency from a
window's last frame leaving the player to its EmotionState arriving (p50/p95);
DIR/confusion.png and DIR/timeline.png show them.

Image topics: sensor_msgs/Image (any encoding the node reads) or CompressedImage. Audio topics:
duse_ros/AudioChunk, or audio_common AudioDataStamped / AudioStamped, converted to AudioChunk by
the player (the format of AudioDataStamped comes from the bag's AudioInfo topic, else --audio-*).
Labels: --labels CSV (seconds from the bag's origin), else the bag's /emotion_label topic.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# DDS stays on this machine (before rclpy loads); the domain is chosen per run (claim_domain).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.affect import settings as affect_settings  # noqa: E402
from duse_ros.io.images import IMAGE_MESSAGES, ImageMessage  # noqa: E402
from duse_ros.io.labels import LabelError, Span, read_labels_csv, spans_from_messages  # noqa: E402
from duse_ros.io.rosbag import (  # noqa: E402
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
from duse_ros.timebase import NS, stamp_to_ns  # noqa: E402
from duse_ros.tools import compare, providers  # noqa: E402
from duse_ros.tools.bag_player import (  # noqa: E402
    AudioAdapter,
    EvalError,
    Player,
    Sent,
    frame_stamp,
    int_or_none,
    play_messages,
    send,
)
from duse_ros.tools.evaluate import percentiles_ms, plot_timeline, score_states  # noqa: E402
from duse_ros.tools.processes import node_command, stop  # noqa: E402

# Topics in the output bag carry this prefix whatever run namespace produced them.
NAMESPACE = "/duse_eval"
DEFAULTS = affect_settings.DEFAULTS
# Domains an evaluation claims when ROS_DOMAIN_ID is not set: one lock file per domain.
DOMAINS = range(64, 101)
_run_numbers = itertools.count()


def claim_domain() -> int:
    """ROS_DOMAIN_ID when it is set; else the first of DOMAINS whose lock no other evaluation on
    this machine holds (held until this process ends), set in the environment for rclpy and the
    nodes. Two evaluations at once never share /clock."""
    if os.environ.get("ROS_DOMAIN_ID"):
        return int(os.environ["ROS_DOMAIN_ID"])
    for domain in DOMAINS:
        lock = open(Path(tempfile.gettempdir()) / f"duse-eval-domain-{domain}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _held_locks.append(lock)
        os.environ["ROS_DOMAIN_ID"] = str(domain)
        return domain
    raise EvalError(f"every DDS domain {DOMAINS.start}-{DOMAINS.stop - 1} is held by another evaluation")


_held_locks: list = []


def _shadow_windower(spec, args):
    """The node's windowing, on frame stamps alone: which frames complete a window."""
    from duse_ros.affect.windowing import Windower

    return Windower(num_frames=spec.num_frames, span_s=args.span_s, stride_s=args.stride_s, max_gap_s=args.max_gap_s)


class ReplayStopped(Exception):
    """The replay ended before the bag did; the message is the reason, which the report keeps."""


@dataclass
class Plan:
    """What one replay plays, to which namespace, with which reader depth."""

    namespace: str
    image: ImageMessage  # the bag's camera type: the node subscribes to the same (image_compressed)
    uses_audio: bool
    topics: list[str]  # the bag's topics to play
    depth: int
    bag_s: float
    audio: AudioAdapter | None


@dataclass
class Playback(Sent):
    """What the player sent and what became of the windows it offered."""

    expected: list[int] = field(default_factory=list)  # window end stamps the node must answer, in order
    frames_before: dict[int, int] = field(default_factory=dict)  # window end -> frames sent up to it
    given_up: dict[int, str] = field(default_factory=dict)  # window end -> why the player stopped waiting
    stopped: str | None = None
    replay_s: float = 0.0


def run_namespace(args) -> str:
    return args.namespace or f"{NAMESPACE}/run_{os.getpid()}_{next(_run_numbers)}"


def plan_replay(bag: BagFile, streams, model, args) -> Plan:
    spec = model.input_spec
    uses_audio = spec.uses_audio and streams.audio is not None
    topics = [streams.image.name] + ([streams.audio.name] if uses_audio else [])
    bag_s = max(1e-3, (bag.end_ns - bag.start_ns) / NS)
    # Reader history for every message the player may have in flight (a stride per window the
    # node may hold), twice over: a full history would drop the oldest frames silently.
    per_stride = sum(bag.topics[t].count for t in topics) / bag_s * args.stride_s
    depth = int(max(50, 4 * (args.queue_depth + 1) * per_stride))
    audio = AudioAdapter.for_streams(bag, streams, args) if uses_audio else None
    return Plan(
        namespace=run_namespace(args),
        image=IMAGE_MESSAGES[streams.image.msgtype],
        uses_audio=uses_audio,
        topics=topics,
        depth=depth,
        bag_s=bag_s,
        audio=audio,
    )


def node_parameters(plan: Plan, args) -> dict[str, object]:
    params = {
        "model": args.model,
        "image_compressed": plan.image.compressed,
        "qos.reliability": "reliable",
        "qos.depth": plan.depth,
        "queue_depth": args.queue_depth,
        "use_sim_time": True,
        "no_face_policy": "publish",
        "span_s": args.span_s,
        "stride_s": args.stride_s,
        "max_gap_s": args.max_gap_s,
        "diagnostics_period_s": 0.5,
    }
    if not args.realtime:
        # The player waits for the model, so sim time may run ahead of the windows; and each
        # keyframe's faces are found before the next frame is taken, whatever the pace.
        params["max_window_age_s"] = 0.0
        params["face_detect_sync"] = True
    if args.clip_weights:
        params["clip_weights"] = args.clip_weights
    if args.runtime:
        params["runtime"] = args.runtime
    if args.face_mode:
        params["face_mode"] = args.face_mode
    return params


def start_nodes(plan: Plan, args, out_dir: Path) -> list[subprocess.Popen]:
    """affect_node (and llm_bridge_node) under the run's namespace, their /clock and /diagnostics
    remapped into it, each logging to DIR/<name>.log."""
    remaps = {"/clock": f"{plan.namespace}/clock", "/diagnostics": f"{plan.namespace}/diagnostics"}
    commands = {
        "affect_node": node_command(
            "duse_ros.nodes.affect_node", node_parameters(plan, args), plan.namespace, args.param, remaps
        )
    }
    if not args.no_bridge:
        commands["llm_bridge_node"] = node_command(
            "duse_ros.nodes.llm_bridge_node", {"use_sim_time": True}, plan.namespace, args.bridge_param, remaps
        )
    procs = []
    for name, cmd in commands.items():
        log_path = out_dir / f"{name}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log_path
        procs.append(proc)
    return procs


def wait_until_ready(player: Player, plan: Plan, args, procs: list[subprocess.Popen], out_dir: Path) -> None:
    """Until affect_node (and the bridge) matched the player's publishers and readers, as the
    node's own diagnostics report them."""
    ns = plan.namespace
    ready = player.spin_until(
        lambda: (
            player.image_pub.get_subscription_count() >= args.image_subscribers
            and (not plan.uses_audio or player.audio_pub.get_subscription_count() > 0)
            and player.node.count_publishers(f"{ns}/emotion_state") > 0
            and (
                args.no_bridge
                or (
                    player.node.count_subscribers(f"{ns}/emotion_state") >= 2
                    and player.node.count_publishers(f"{ns}/dialogue_prompt") > 0
                )
            )
        ),
        args.startup_timeout_s,
        procs,
    )
    node_topics = [plan.image.topic("image_raw")] + (["audio"] if plan.uses_audio else [])
    readers = 1 if args.no_bridge else 2
    ready = ready and player.spin_until(
        lambda: player.inputs_matched(node_topics, readers), args.startup_timeout_s, procs
    )
    if not ready:
        raise EvalError(
            f"affect_node did not come up within {args.startup_timeout_s:g} s; see {out_dir / 'affect_node.log'}"
        )


class Pacer:
    """Waits for the windows the node owes, never open-endedly: a window is given up when the
    node has taken every frame up to it, its model is idle and two more diagnostics came without
    it, or after --window-timeout-s; the replay stops when the node answered none of its first
    windows, or ran past the bag's own length times --max-replay-factor."""

    GIVE_UP_FIRST = 3  # windows given up, none answered: the node answers nothing

    def __init__(self, player: Player, plan: Plan, playback: Playback, args, procs):
        self.player, self.plan, self.pb, self.args, self.procs = player, plan, playback, args, procs
        self.outstanding: deque[int] = deque()
        self.answered: set[int] = set()
        self.all_sent = False
        self.budget_s = 60.0 + args.max_replay_factor * plan.bag_s
        self.deadline = time.monotonic() + self.budget_s

    def offer(self, end_ns: int) -> None:
        self.pb.expected.append(end_ns)
        self.pb.frames_before[end_ns] = self.pb.frames + 1  # the frame that completes it is next
        self.outstanding.append(end_ns)

    def _node_done_with(self, end_ns: int) -> bool:
        p = self.player
        audio_in = not self.plan.uses_audio or (
            (self.all_sent or self.pb.last_audio_ns >= end_ns) and p.audio_taken() >= self.pb.audio_messages
        )
        return audio_in and p.frames_taken() >= self.pb.frames_before[end_ns] and p.model_idle()

    def settle(self, limit: int) -> None:
        """Until fewer than `limit` offered windows are unanswered."""
        waited_since, idle_since = time.monotonic(), None
        while _drain(self.outstanding, self.answered, self.player) >= limit:
            oldest, now = self.outstanding[0], time.monotonic()
            if now > self.deadline:
                raise ReplayStopped(
                    f"the replay ran past {self.budget_s:.0f} s (60 s + --max-replay-factor "
                    f"{self.args.max_replay_factor:g} x the bag's {self.plan.bag_s:.1f} s)"
                )
            reason = None
            if self._node_done_with(oldest):
                idle_since = self.player.diagnostics_seen if idle_since is None else idle_since
                if self.player.diagnostics_seen >= idle_since + 2:
                    reason = "the node took every frame up to it and its model went idle without answering"
            else:
                idle_since = None
            if reason is None and now - waited_since > self.args.window_timeout_s:
                reason = f"no answer within --window-timeout-s {self.args.window_timeout_s:g}"
            if reason is None:
                self.player.spin_until(lambda: False, 0.05, self.procs)
                continue
            self.pb.given_up[oldest] = reason
            self.outstanding.popleft()
            waited_since, idle_since = time.monotonic(), None
            if not self.answered and len(self.pb.given_up) >= self.GIVE_UP_FIRST:
                raise ReplayStopped(
                    f"affect_node answered none of the first {len(self.pb.given_up)} windows ({reason}); "
                    f"its counters: {_node_summary(self.player.diagnostics)}"
                )


def _node_summary(values: dict[str, str]) -> str:
    keys = (diag.FRAMES_IN, "malformed.image", "window.windows_emitted", "inference.completed", "inference.errors")
    return ", ".join(f"{k} {values.get(k, 0)}" for k in keys)


def play(player: Player, plan: Plan, bag: BagFile, streams, model, args, pacer: Pacer) -> None:
    """Every message of the played topics, in log order: paced by the recording (--realtime) or
    held back at each window until the node keeps up."""
    pb, shadow = pacer.pb, _shadow_windower(model.input_spec, args)

    def handle(message) -> None:
        stamp = None
        if message[0] == streams.image.name:
            stamp = frame_stamp(bag, message)
            shadow.add_frame(stamp, _EMPTY)
            window = shadow.poll()
            if window is not None:
                if not args.realtime:
                    pacer.settle(args.queue_depth)
                pacer.offer(window.end_ns)
        send(player, pb, bag, message, plan.audio, stamp)

    play_messages(player, bag, plan.topics, pb, handle, rate=args.rate, realtime=args.realtime, quiet=args.quiet)


def finish(player: Player, pacer: Pacer, args, procs) -> None:
    """The last windows, then diagnostics that have seen every frame (or say how many were lost),
    then a moment for the bridge's last prompt."""
    pb = pacer.pb
    pacer.all_sent = True
    pacer.settle(1)
    seen = player.diagnostics_seen
    player.spin_until(lambda: player.frames_taken() >= pb.frames or player.diagnostics_seen >= seen + 3, 10.0, procs)
    if not args.no_bridge:  # prompts follow their EmotionState
        player.spin_until(lambda: False, 0.5, procs)


def replay(bag: BagFile, streams, model, args, out_dir: Path) -> dict:
    """Plan, start the nodes, wait for them, play, finish; whatever happens the nodes are stopped
    and what came back is returned (with `stopped` saying why a replay ended early)."""
    import rclpy

    plan = plan_replay(bag, streams, model, args)
    procs = start_nodes(plan, args, out_dir)
    rclpy.init()
    player = Player(plan.namespace, plan.image, plan.uses_audio, plan.depth)
    player.rate = args.rate if args.realtime else 1.0
    # Sim time before the bag starts, so the nodes' timers run while they come up.
    player.tick_clock(bag.start_ns - int(args.startup_timeout_s * 2 * NS))
    pb = Playback()
    try:
        wait_until_ready(player, plan, args, procs, out_dir)
        pacer = Pacer(player, plan, pb, args, procs)
        try:
            play(player, plan, bag, streams, model, args, pacer)
            finish(player, pacer, args, procs)
        except ReplayStopped as e:
            pb.stopped = str(e)
        pb.replay_s = time.monotonic() - (pb.started or time.monotonic())
    finally:
        player.close()
        rclpy.try_shutdown()
        for p in procs:
            stop(p)
    first_state: dict[int, float] = {}
    for s, arrival in zip(player.states, player.arrivals):
        first_state.setdefault(_end(s), arrival)
    latencies = [arrival - pb.send_time[end] for end, arrival in first_state.items() if end in pb.send_time]
    return {
        "states": player.states,
        "prompts": player.prompts,
        "playback": pb,
        "latencies_s": latencies,
        "diagnostics": player.diagnostics,
    }


_EMPTY = np.zeros((0,), np.uint8)


def _end(state) -> int:
    return stamp_to_ns(state.window_end)


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


def account(pb: Playback, states: list, node: dict[str, str]) -> dict:
    """Where every offered window went. The node's counters say how many it dropped and why;
    which windows those were, only the node knows, so the parts are counts."""
    offered = pb.expected
    by_end: dict[int, list] = {}
    for s in states:
        by_end.setdefault(_end(s), []).append(s)
    answered = [e for e in offered if e in by_end]
    with_reading = sum(1 for e in answered if any(s.modality for s in by_end[e]))
    missing = len(offered) - len(answered)
    parts = {
        "dropped_by_node_queue": int_or_none(node.get(diag.DROPPED_QUEUE_FULL)) or 0,
        "dropped_stale_by_node": int_or_none(node.get("inference.dropped_stale")) or 0,
        "inference_errors": int_or_none(node.get("inference.errors")) or 0,
    }
    emitted = int_or_none(node.get("window.windows_emitted"))
    parts["not_cut_by_node"] = max(0, len(offered) - emitted) if emitted is not None else 0
    node_explained = min(missing, sum(parts.values()))
    out = {
        "offered": len(offered),
        "answered_with_reading": with_reading,
        "answered_no_reading": len(answered) - with_reading,
        **parts,
        "unanswered": missing - node_explained,
        "states_for_windows_not_offered": sum(len(v) for e, v in by_end.items() if e not in set(offered)),
        "given_up": {str(e): why for e, why in pb.given_up.items() if e not in by_end},
    }
    out["balanced"] = (
        out["offered"] == (with_reading + out["answered_no_reading"] + node_explained + out["unanswered"])
        and sum(parts.values()) <= missing
    )
    return out


def _load_spans(bag: BagFile, args, classes: list[str]):
    origin = int(bag.custom_data.get(ORIGIN_KEY, bag.start_ns))
    if args.labels:
        return read_labels_csv(args.labels, classes, origin), origin, str(args.labels)
    if LABEL_TOPIC in bag.topics:
        if bag.topics[LABEL_TOPIC].msgtype != LABEL_TYPE:
            raise LabelError(
                f"{bag.path}: label topic {LABEL_TOPIC} has type {bag.topics[LABEL_TOPIC].msgtype}, "
                f"expected {LABEL_TYPE}; give --labels CSV instead"
            )
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
                stamp_to_ns(p.header.stamp),
                serialize_message(p),
                "duse_ros/msg/DialoguePrompt",
            )
        for t, text in spans_to_messages(spans):
            out.write(LABEL_TOPIC, t, out.store.types[LABEL_TYPE](data=text))


def default_model() -> str:
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
        "--runtime",
        choices=("torch", "onnxruntime"),
        help="affect_node runtime (default: the node's); onnxruntime runs a duse-export .onnx --model",
    )
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
    ap.add_argument("--queue-depth", type=int, default=DEFAULTS["queue_depth"], help="affect_node queue_depth")
    ap.add_argument("--span-s", type=float, default=DEFAULTS["span_s"], help="affect_node span_s")
    ap.add_argument("--stride-s", type=float, default=DEFAULTS["stride_s"], help="affect_node stride_s")
    ap.add_argument("--max-gap-s", type=float, default=DEFAULTS["max_gap_s"], help="affect_node max_gap_s")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="more affect_node parameters")
    ap.add_argument("--no-bridge", action="store_true", help="do not start llm_bridge_node")
    ap.add_argument(
        "--namespace",
        help="the run's namespace, for a recorder or viewer of your own (default: /duse_eval/run_<pid>_<n>, "
        "unique to the run); /clock and /diagnostics are remapped into it",
    )
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
    ap.add_argument(
        "--window-timeout-s",
        type=float,
        default=60.0,
        help="give up on a window after this long at most (sooner once the node is idle without it)",
    )
    ap.add_argument(
        "--max-replay-factor",
        type=float,
        default=30.0,
        help="stop a replay running longer than 60 s + this many times the bag's length",
    )
    ap.add_argument("--startup-timeout-s", type=float, default=90.0)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    providers.add_arguments(ap)
    args = ap.parse_args(argv)
    args.model = args.models[-1] if args.models else None
    if not args.compare and (len(args.models) > 1 or len(args.provider_command) > 1):
        ap.error("several --model or --provider-command need --compare")
    if args.namespace is not None and not args.namespace.startswith("/"):
        ap.error(f"--namespace {args.namespace!r} must be absolute (start with /)")
    if args.queue_depth < 1 or not args.rate > 0:
        ap.error("--queue-depth must be >= 1 and --rate > 0")
    if not (args.window_timeout_s > 0 and args.max_replay_factor > 0 and args.startup_timeout_s > 0):
        ap.error("--window-timeout-s, --max-replay-factor and --startup-timeout-s must be > 0")
    return args


@dataclass
class Inputs:
    """Everything checked before any node starts."""

    bag: BagFile
    streams: object
    model: object
    classes: list[str]
    spans: list[Span]
    origin: int
    labels_source: str | None
    out_dir: Path


def prepare(bag: BagFile, args) -> Inputs:
    """Check the bag (every record read once: a truncated or damaged bag fails here), the model,
    the labels and the output folder before any node starts."""
    from duse_ros.classes import get_class_set
    from duse_ros.loading import load_model

    streams = select_streams(bag, args.image_topic, args.audio_topic)
    for _ in bag.messages([t.name for t in (streams.image, streams.audio, streams.audio_info) if t]):
        pass
    overrides = {"clip_weights": args.clip_weights} if args.clip_weights else {}
    if providers.wanted(args):
        model = _ProviderModel(providers.provider_name(args), get_class_set(args.provider_classes).classes)
    elif args.runtime == "onnxruntime":  # a .onnx file: its classes and input spec, verified here first
        from duse_ros.affect.onnx_model import load_onnx_model

        model = load_onnx_model(args.model, **overrides)
    else:
        model = load_model(args.model, **overrides)
    classes = list(model.class_names)
    spans, origin, labels_source = _load_spans(bag, args, classes)
    out_dir = args.out or Path("eval_output") / bag.path.name
    if out_dir.exists() and not out_dir.is_dir():
        raise EvalError(f"--out {out_dir} is an existing file; give a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvalError(f"cannot create the output folder {out_dir}: {e.strerror}") from None
    if (out_dir / "output_bag").exists():
        raise FileExistsError(f"{out_dir / 'output_bag'} exists; choose a new --out")
    return Inputs(bag, streams, model, classes, spans, origin, labels_source, out_dir)


def score_report(inputs: Inputs, states: list, answered: int, args) -> dict:
    """UAR, WAR, per-class recall and the confusion PNG; null scores with the reason when no
    window could be scored."""
    out = {"uar": None, "war": None, "uar_reason": None, "per_class_recall": {}, "support": {}}
    out.update(windows_scored=0, windows_unlabelled=0, no_reading=0)
    if not inputs.spans:
        out["uar_reason"] = f"no labels: give --labels CSV, or record {LABEL_TOPIC} in the bag"
        return out
    if not answered:
        out["uar_reason"] = "no offered window was answered by the node"
        return out
    scored = score_states(states, inputs.spans, inputs.classes, args.smoothed)
    out.update(windows_scored=len(scored.truths), windows_unlabelled=scored.unlabelled, no_reading=scored.no_reading)
    if not scored.truths:
        ends = [(_end(s) - inputs.origin) / NS for s in states]
        first, last = inputs.spans[0], inputs.spans[-1]
        out["uar_reason"] = (
            f"no answered window's middle lies inside a label span: labels cover "
            f"{(first.start_ns - inputs.origin) / NS:.2f} to {(last.end_ns - inputs.origin) / NS:.2f} s, windows end "
            f"between {min(ends):.2f} and {max(ends):.2f} s from the origin (check the labels' times and the stamps)"
        )
        return out
    out.update(
        uar=scored.scores.uar,
        war=scored.scores.war,
        per_class_recall={c: scored.scores.per_class_recall[c] for c in inputs.classes},
        support={c: scored.scores.support[c] for c in inputs.classes},
        confusion={"classes": list(scored.scores.per_class_recall), "counts": scored.scores.confusion.tolist()},
        recall_table=recall_table(scored.scores),
    )
    model = inputs.model
    plot_confusion(
        scored.scores,
        inputs.out_dir / "confusion.png",
        f"{model.model_id}{' (UNTRAINED)' if model.untrained else ''}: "
        f"UAR {100 * scored.scores.uar:.1f}%  WAR {100 * scored.scores.war:.1f}%",
    )
    return out


def build_report(inputs: Inputs, result: dict, args) -> dict:
    states, pb, node = result["states"], result["playback"], result["diagnostics"]
    accounting = account(pb, states, node)
    inference = [stamp_to_ns(s.inference_latency) / NS for s in states if s.modality]
    p50, p95 = percentiles_ms(result["latencies_s"])
    i50, i95 = percentiles_ms(inference)
    taken = int_or_none(node.get(diag.FRAMES_IN))
    malformed = int_or_none(node.get("malformed.image")) or 0
    answered = accounting["answered_with_reading"] + accounting["answered_no_reading"]
    report = {
        "bag": str(inputs.bag.path),
        "model": args.model,
        "model_id": inputs.model.model_id,
        "untrained": bool(inputs.model.untrained),
        "mode": "realtime" if args.realtime else "as_fast_as_model",
        "rate": args.rate if args.realtime else None,
        "stopped": pb.stopped,
        "labels": inputs.labels_source,
        "scored_on": "smoothed_label" if args.smoothed else "label",
        **score_report(inputs, states, answered, args),
        "windows": len(pb.expected),
        "windows_received": answered,
        "dropped": len(pb.expected) - answered,
        "dropped_by_node_queue": accounting["dropped_by_node_queue"],
        "accounting": accounting,
        "latency_ms_p50": p50,
        "latency_ms_p95": p95,
        "inference_ms_p50": i50,
        "inference_ms_p95": i95,
        "frames_sent": pb.frames,
        "frames_received_by_node": taken,
        "frames_malformed": malformed,
        "frames_lost": None if taken is None else pb.frames - taken - malformed,
        "audio_messages_sent": pb.audio_messages,
        "audio_messages_received_by_node": int_or_none(node.get("window.audio_chunks_in")),
        "audio_messages_unconvertible": pb.malformed_audio,
        "dialogue_prompts": len(result["prompts"]),
        "replay_s": round(pb.replay_s, 3),
        "replay_frames_per_s": round(pb.frames / pb.replay_s, 2) if pb.replay_s > 0 else None,
        "origin_ns": inputs.origin,
        "output_bag": str(inputs.out_dir / "output_bag"),
    }
    return report


def build_provider_report(inputs: Inputs, result: dict, args) -> dict:
    """The report of another provider (tools/providers.py): the same keys; every reading is a
    window it answered, and what only affect_node's diagnostics tell is None."""
    states = result["states"]
    p50, p95 = percentiles_ms(result["latencies_s"])
    return {
        "bag": str(inputs.bag.path),
        "model": None,
        "model_id": inputs.model.model_id,
        "untrained": None,  # unknown
        "mode": "realtime",
        "rate": args.rate,
        "stopped": None,
        "labels": inputs.labels_source,
        "scored_on": "smoothed_label" if args.smoothed else "label",
        **score_report(inputs, states, len(states), args),
        "windows": len(states),
        "windows_received": len(states),
        "dropped": None,
        "dropped_by_node_queue": None,
        "accounting": None,  # the node's counters: a provider has none we can read
        "latency_ms_p50": p50,
        "latency_ms_p95": p95,
        "inference_ms_p50": None,
        "inference_ms_p95": None,
        "frames_sent": result["frames"],
        "frames_received_by_node": None,
        "frames_malformed": None,
        "frames_lost": None,
        "audio_messages_sent": result["audio_messages"],
        "audio_messages_received_by_node": None,
        "audio_messages_unconvertible": result["malformed_audio"],
        "dialogue_prompts": 0,
        "replay_s": round(result["replay_s"], 3),
        "replay_frames_per_s": round(result["frames"] / result["replay_s"], 2) if result["replay_s"] > 0 else None,
        "origin_ns": inputs.origin,
        "output_bag": str(inputs.out_dir / "output_bag"),
        "provider": inputs.model.model_id,
        "provider_command": args.provider_command,
        **result["provider"],
    }


def run(args: argparse.Namespace) -> dict:
    """prepare -> replay -> output bag -> report and plots; returns the report."""
    provider = providers.wanted(args)
    if provider:  # another program reads the bag: its windows are its own, so the bag plays at its pace
        args.realtime, args.no_bridge, args.model = True, True, None
    else:
        args.model = args.model or default_model()
    claim_domain()
    with BagFile(args.bag) as bag:
        inputs = prepare(bag, args)
        large_shm_profile = share_path("config", "fastdds_large_shm.xml")
        if not IMAGE_MESSAGES[inputs.streams.image.msgtype].compressed and large_shm_profile is not None:
            # Raw frames are larger than Fast DDS's default shared-memory segment (see README).
            os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(large_shm_profile))
        if provider:
            result = providers.replay(bag, inputs.streams, args, inputs.out_dir, inputs.classes, run_namespace(args))
        else:
            result = replay(bag, inputs.streams, inputs.model, args, inputs.out_dir)
    _write_output_bag(inputs.out_dir / "output_bag", result, inputs.spans)
    report = (build_provider_report if provider else build_report)(inputs, result, args)
    model = inputs.model
    plot_timeline(
        result["states"],
        inputs.spans,
        inputs.classes,
        inputs.origin,
        inputs.out_dir / "timeline.png",
        f"{inputs.bag.path.name}: {model.model_id}{' (UNTRAINED: random weights)' if model.untrained else ''}",
    )
    (inputs.out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["out_dir"] = str(inputs.out_dir)
    return report


class _ProviderModel:
    """What the report needs of a model, for a provider (its weights unknown: untrained None)."""

    def __init__(self, name: str, classes):
        self.model_id, self.class_names, self.untrained = name, list(classes), None


_ERRORS = (BagError, LabelError, FileExistsError, EvalError, KeyError, ValueError, ImportError)


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
    if report["uar_reason"]:
        print(f"no score: {report['uar_reason']}")
    if report["untrained"]:
        print(f"NOTE: {report['model_id']} has UNTRAINED (random) weights: these scores mean nothing.")
    print(f"report, plots and output bag in {report['out_dir']}")
    if report["stopped"]:
        print(f"duse-eval-bag: stopped early: {report['stopped']}", file=sys.stderr)
        return 3
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
