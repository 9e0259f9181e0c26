"""duse-eval-bag for any expression provider, not only affect_node.

A provider is either a command this tool starts (`--provider-command`, any program: a ROS4HRI
recogniser's launch, a script) or a process already running (`--provider-topic` alone). It reads
the replayed camera (and microphone) and publishes one of:
- `--provider-output duse`: duse_ros/EmotionState on `--provider-topic` (default: the run's
  namespace + /emotion_state); a label outside the class set is counted apart, unscored;
- `--provider-output hri`: hri_msgs/Expression on /humans/faces/<id>/expression, with its faces on
  /humans/faces/tracked (REP-155). Every expression topic in the graph is followed (so a face id
  that never appears on /tracked is seen, counted and left unscored); names map to our classes
  through affect/hri.py's one table, and names with no class are counted apart, unscored.

The command line may use {namespace}, {image_topic}, {audio_topic} and {emotion_topic}; the same
values are in its environment as DUSE_EVAL_NAMESPACE, DUSE_EVAL_IMAGE_TOPIC, ... A provider's
windowing is its own, so the bag plays at its recorded pace (--realtime) and each reading is a
"window" of the report: scored against the label span at its stamp (an Expression is an instant:
window_start = window_end = its stamp), latency from the frame with that stamp leaving the player to
the reading's arrival. A reading without a header stamp takes the bag time at its arrival (counted,
no latency); a provider that falls silent shows as `longest_silence_s`.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from duse_ros.timebase import NS, sec_nanosec, stamp_to_ns
from duse_ros.tools.bag_player import AudioAdapter, EvalError, Player, Sent, play_messages, send

if TYPE_CHECKING:
    from duse_ros.io.images import ImageMessage

OUTPUTS = ("duse", "hri")
_EXPRESSION_PREFIX = "/humans/faces/"
_EXPRESSION_SUFFIX = "/expression"
_GRAPH_POLL_S = 0.25


def add_arguments(ap) -> None:
    group = ap.add_argument_group("other expression providers (instead of affect_node)")
    group.add_argument(
        "--provider-command",
        action="append",
        default=[],
        metavar="CMD",
        help="start this command as the provider (may use {namespace} {image_topic} {audio_topic} {emotion_topic})",
    )
    group.add_argument("--provider-output", choices=OUTPUTS, default="duse", help="what the provider publishes")
    group.add_argument(
        "--provider-topic",
        default="",
        help="EmotionState topic the provider fills (default {namespace}/emotion_state); alone, without "
        "--provider-command: evaluate a process already running",
    )
    group.add_argument("--provider-name", default="", help="name in the report (default: the command's first word)")
    group.add_argument("--provider-classes", default="dfew", help="class set the labels and readings use")
    group.add_argument(
        "--provider-settle-s", type=float, default=2.0, help="after the bag, wait this long for late readings"
    )


def wanted(args) -> bool:
    return bool(args.provider_command or args.provider_topic or args.provider_output != "duse")


def topics(args, namespace: str, image: ImageMessage) -> dict[str, str]:
    return {
        "namespace": namespace,
        "image_topic": image.topic(f"{namespace}/image_raw"),
        "audio_topic": f"{namespace}/audio",
        "emotion_topic": args.provider_topic or f"{namespace}/emotion_state",
    }


def start(command: str, names: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The provider command, its placeholders filled, in a process of its own with its log."""
    try:
        argv = shlex.split(command.format(**names))
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"--provider-command {command!r}: {e}; placeholders: {sorted(names)}") from None
    env = {**os.environ, **{f"DUSE_EVAL_{k.upper()}": v for k, v in names.items()}}
    log = log_path.open("w")
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    except OSError as e:
        raise ValueError(f"--provider-command {command!r} cannot start: {e}") from None
    finally:
        log.close()
    proc.log_path = log_path
    return proc


def provider_name(args) -> str:
    if args.provider_name:
        return args.provider_name
    if args.provider_command:
        words = [Path(w).name for w in shlex.split(args.provider_command[0])]
        # `python script.py ...`: the script names the provider, not the interpreter
        named = [w for w in words if not re.fullmatch(r"python[\d.]*|-[a-zA-Z]", w)]
        return (named or words)[0]
    return args.provider_topic or "ros4hri"


class ProviderListener:
    """On the player's node: every reading the provider publishes, turned into an EmotionState of
    `classes` (so scoring, the timeline and the output bag are the same as for affect_node), with
    its arrival time; what cannot be scored is counted."""

    def __init__(self, node, output: str, emotion_topic: str, classes: list[str], clock_ns, on_state):
        from rclpy.qos import QoSProfile

        # Here, not at the top: duse-eval-bag's import stays free of torch (affect/hri.py needs it).
        from duse_ros.affect.hri import FACES_TRACKED, class_of_expression

        self._tracked_topic, self._class_of = FACES_TRACKED, class_of_expression
        self.node, self.output, self.classes = node, output, list(classes)
        self._clock_ns, self._on_state = clock_ns, on_state
        self._qos = QoSProfile(depth=1000)
        self.tracked_ever: set[str] = set()
        self.faces_read: Counter[str] = Counter()
        self.untracked: Counter[str] = Counter()  # face id -> expressions on a face never on /tracked
        self.unmapped: Counter[str] = Counter()  # expression name -> count
        self.unstamped = 0
        self._expression_subs: dict[str, object] = {}
        self._pending_untracked: list[tuple[str, object, float]] = []
        self._next_poll = 0.0
        if output == "hri":
            from duse_ros.nodes.hri_io import import_hri_msgs

            self.msgs = import_hri_msgs()
            node.create_subscription(self.msgs.IdsList, self._tracked_topic, self._on_tracked, self._qos)
        else:
            from duse_ros.msg import EmotionState

            node.create_subscription(EmotionState, emotion_topic, self._on_emotion_state, self._qos)
            self._emotion_topic = emotion_topic

    # ---------------------------------------------------------------- readiness and the graph
    def poll_graph(self) -> None:
        """Follow every /humans/faces/<id>/expression topic that appears (hri output)."""
        if self.output != "hri" or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + _GRAPH_POLL_S
        for name, _ in self.node.get_topic_names_and_types():
            if name.startswith(_EXPRESSION_PREFIX) and name.endswith(_EXPRESSION_SUFFIX):
                face_id = name[len(_EXPRESSION_PREFIX) : -len(_EXPRESSION_SUFFIX)]
                if face_id and "/" not in face_id and face_id not in self._expression_subs:
                    self._expression_subs[face_id] = self.node.create_subscription(
                        self.msgs.Expression, name, lambda m, f=face_id: self._on_expression(f, m), self._qos
                    )

    def outputs_matched(self) -> bool:
        """The provider's output is there and this node reads it (a reading sent earlier is lost).
        hri: a publisher of /humans/faces/tracked or of a face's expression (a ROS4HRI pipeline
        makes a face's publishers only when it sees the face, that is once frames flow), and every
        expression topic seen so far matched."""
        self.poll_graph()
        if self.output == "hri":
            return (bool(self._expression_subs) or self.node.count_publishers(self._tracked_topic) > 0) and all(
                s.get_publisher_count() > 0 for s in self._expression_subs.values()
            )
        return self.node.count_publishers(self._emotion_topic) > 0

    # ---------------------------------------------------------------- readings
    def _stamp(self, stamp_ns: int) -> tuple[int, bool]:
        if stamp_ns:
            return stamp_ns, False
        self.unstamped += 1
        return self._clock_ns(), True

    def _on_emotion_state(self, msg) -> None:
        from duse_ros.tools.evaluate import MODALITY_NONE

        if msg.modality != MODALITY_NONE:
            if msg.label not in self.classes:  # a provider with classes of its own
                self.unmapped[msg.label or "(empty)"] += 1
                return
            # Its probabilities in the order of `classes` (the timeline plots them by index).
            given = dict(zip(msg.class_names, msg.probabilities))
            msg.class_names = self.classes
            msg.probabilities = [float(given.get(c, math.nan)) for c in self.classes]
        end, unstamped = self._stamp(stamp_to_ns(msg.window_end) or stamp_to_ns(msg.header.stamp))
        if unstamped or not stamp_to_ns(msg.window_end):
            msg.window_end = _time(end)
        if not stamp_to_ns(msg.window_start):
            msg.window_start = msg.window_end
        self.faces_read[msg.face_id] += 1
        self._on_state(msg, unstamped)

    def _on_tracked(self, msg) -> None:
        self.tracked_ever.update(str(i) for i in msg.ids)
        # Expressions that came before their face's first /tracked message are now known tracked.
        pending, self._pending_untracked = self._pending_untracked, []
        for face_id, expression, arrival in pending:
            self._on_expression(face_id, expression, arrival)

    def _on_expression(self, face_id: str, msg, arrival: float | None = None) -> None:
        if face_id not in self.tracked_ever:
            self._pending_untracked.append((face_id, msg, time.monotonic() if arrival is None else arrival))
            return
        name = str(msg.expression).strip()
        ours = self._class_of(name)
        if ours is None or ours not in self.classes:
            self.unmapped[name or "(empty)"] += 1
            return
        end, unstamped = self._stamp(stamp_to_ns(msg.header.stamp))
        self.faces_read[face_id] += 1
        self._on_state(self._as_emotion_state(face_id, msg, ours, end), unstamped, arrival)

    def _as_emotion_state(self, face_id: str, msg, label: str, end_ns: int):
        """An Expression as an EmotionState: an instant (start = end), the class's probability its
        confidence, the other classes' NaN (an Expression does not say them)."""
        from duse_ros.msg import EmotionState

        confidence = float(msg.confidence)
        state = EmotionState(modality=EmotionState.MODALITY_VIDEO, face_found=True, face_id=face_id)
        state.header.stamp = state.window_start = state.window_end = _time(end_ns)
        state.header.frame_id = msg.header.frame_id
        state.class_names = self.classes
        state.probabilities = [confidence if c == label else math.nan for c in self.classes]
        state.label, state.confidence = label, confidence
        state.valence, state.arousal = float(msg.valence), float(msg.arousal)
        state.smoothed_valence = state.smoothed_arousal = math.nan
        state.model_id = "ros4hri"
        return state

    def finish(self) -> None:
        """Expressions of faces never listed on /tracked: counted, not scored."""
        for face_id, _, _ in self._pending_untracked:
            self.untracked[face_id] += 1
        self._pending_untracked = []

    def report(self) -> dict:
        return {
            "provider_output": self.output,
            "faces_followed": sorted(f for f in self.faces_read if f),
            "readings_by_face": dict(sorted(self.faces_read.items())),
            "readings_unstamped": self.unstamped,
            "expressions_unmapped": dict(sorted(self.unmapped.items())),
            "expressions_untracked_face": dict(sorted(self.untracked.items())),
        }


def longest_silence_s(stamps_ns: list[int], start_ns: int, end_ns: int) -> float:
    """The longest stretch of the bag (its own time) without a reading, start and end included."""
    points = [start_ns, *sorted(s for s in stamps_ns if start_ns <= s <= end_ns), end_ns]
    return round(max(b - a for a, b in zip(points, points[1:])) / NS, 3)


def _time(ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def replay(bag, streams, args, out_dir: Path, classes: list[str], namespace: str) -> dict:
    """Play the bag at its recorded pace to the provider under `namespace` and keep its readings;
    the same result keys as eval_bag.replay (expected windows: none known in advance, so every
    reading is one)."""
    import rclpy

    from duse_ros.io.images import IMAGE_MESSAGES
    from duse_ros.tools.processes import stop

    if args.provider_output == "hri":  # before anything starts
        from duse_ros.nodes.hri_io import HRI_PACKAGE_HINT, import_hri_msgs

        if import_hri_msgs() is None:
            raise ValueError(f"--provider-output hri needs hri_msgs: {HRI_PACKAGE_HINT}")

    image = IMAGE_MESSAGES[streams.image.msgtype]
    uses_audio = streams.audio is not None
    audio = AudioAdapter.for_streams(bag, streams, args) if uses_audio else None
    names = topics(args, namespace, image)
    procs = [start(cmd, names, out_dir / f"provider_{i}.log") for i, cmd in enumerate(args.provider_command)]
    bag_topics = [streams.image.name] + ([streams.audio.name] if uses_audio else [])
    rclpy.init()
    player = Player(namespace, image, uses_audio, depth=100)
    player.rate = args.rate
    states, arrivals, unstamped = [], [], []

    def on_state(msg, was_unstamped: bool, arrival: float | None = None) -> None:
        states.append(msg)
        arrivals.append(time.monotonic() if arrival is None else arrival)
        unstamped.append(was_unstamped)

    listener = None
    sent = Sent()
    try:
        listener = ProviderListener(
            player.node, args.provider_output, names["emotion_topic"], classes, lambda: player.clock_ns, on_state
        )
        player.tick_clock(bag.start_ns - int(args.startup_timeout_s * 2 * NS))
        ready = player.spin_until(
            lambda: player.image_pub.get_subscription_count() >= args.image_subscribers and listener.outputs_matched(),
            args.startup_timeout_s,
            procs,
        )
        if not ready:
            logs = ", ".join(str(p.log_path) for p in procs) or "(no command: is the provider running?)"
            raise EvalError(
                f"the provider did not come up within {args.startup_timeout_s:g} s (a reader of "
                f"{names['image_topic']} and its {args.provider_output} output); see {logs}"
            )
        play_messages(
            player,
            bag,
            bag_topics,
            sent,
            lambda message: send(player, sent, bag, message, audio),
            rate=args.rate,
            realtime=True,
            quiet=args.quiet,
            idle=listener.poll_graph,
        )
        replay_s = time.monotonic() - (sent.started or time.monotonic())
        player.spin_until(lambda: listener.poll_graph() and False, args.provider_settle_s, procs)
        listener.finish()
    finally:
        player.close()
        rclpy.try_shutdown()
        for p in procs:
            stop(p)
    latencies = [
        arrival - sent.send_time[stamp_to_ns(s.window_end)]
        for s, arrival, bad in zip(states, arrivals, unstamped)
        if not bad and stamp_to_ns(s.window_end) in sent.send_time
    ]
    return {
        "states": states,
        "prompts": [],
        "expected": [stamp_to_ns(s.window_end) for s in states],
        "missing": [],
        "latencies_s": latencies,
        "diagnostics": {},
        "frames": sent.frames,
        "audio_messages": sent.audio_messages,
        "malformed_audio": sent.malformed_audio,
        "replay_s": replay_s,
        "provider": {
            **listener.report(),
            "longest_silence_s": longest_silence_s(
                [stamp_to_ns(s.window_end) for s in states], bag.start_ns, bag.end_ns
            ),
        },
    }
