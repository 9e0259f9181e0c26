"""The player duse-eval-bag plays a bag with, to affect_node or to another provider (providers.py).

`Player` is the tool's own rclpy node (publishers, /clock, what the nodes answer); `AudioAdapter`
turns the bag's audio messages into duse_ros/AudioChunk; `play_messages` walks the bag's messages,
paced by the recording or not, and `send` publishes one and counts it in a `Sent`. rclpy loads only
when a Player is made, so importing this module stays cheap.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from duse_ros.affect import diagnostics as diag
from duse_ros.io.images import IMAGE_MESSAGES, ImageMessage
from duse_ros.io.rosbag import AUDIO_CHUNK, AUDIO_INFO, BagFile
from duse_ros.timebase import NS, sec_nanosec, stamp_to_ns


class EvalError(RuntimeError):
    """The replay could not run (a node did not start, ...); the message says why."""


class AudioAdapter:
    """Bag audio messages to duse_ros/AudioChunk for the node (which reads that type everywhere)."""

    def __init__(self, bag: BagFile, msgtype: str, info_topic: str | None, args):
        from duse_ros.io.audio import AUDIO_MESSAGES, PcmFormat

        self.bag, self.msgtype, self.audio = bag, msgtype, AUDIO_MESSAGES[msgtype]
        self.format = PcmFormat(args.audio_rate, args.audio_channels, args.audio_format)
        if info_topic is not None:  # the capture node's AudioInfo beats the command line
            for _, _, _, raw in bag.messages([info_topic]):
                info = bag.deserialize(raw, AUDIO_INFO)
                self.format = PcmFormat(
                    int(info.sample_rate), int(info.channels), info.sample_format or self.format.sample_format
                )
                break

    @classmethod
    def for_streams(cls, bag: BagFile, streams, args) -> AudioAdapter:
        """The adapter of the bag's chosen audio stream (select_streams), with its AudioInfo if any."""
        return cls(bag, streams.audio.msgtype, streams.audio_info.name if streams.audio_info else None, args)

    def __call__(self, raw: bytes):
        """An AudioChunk (the raw CDR as it is when the bag holds AudioChunk already), or None for a
        message that cannot be converted."""
        from duse_ros.io.conversions import ConversionError
        from duse_ros.msg import AudioChunk

        if self.msgtype == AUDIO_CHUNK:
            return raw
        msg = self.bag.deserialize(raw, self.msgtype)
        try:
            mono, rate = self.audio.to_mono(msg, self.format)  # the audio family's table (io/audio.py)
        except ConversionError:
            return None  # counted by the caller
        chunk = AudioChunk(sample_rate=rate, channels=1, sample_format="F32LE", data=np.asarray(mono, "<f4").tobytes())
        chunk.header.stamp.sec, chunk.header.stamp.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
        chunk.header.frame_id = msg.header.frame_id
        return chunk


class Player:
    """The tool's own rclpy node: plays the bag, keeps what the nodes publish, paces the replay."""

    def __init__(self, namespace: str, image: ImageMessage, uses_audio: bool, depth: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from duse_ros.msg import AudioChunk, DialoguePrompt, EmotionState
        from duse_ros.nodes.common import message_class

        self.rclpy, self.Clock, self.namespace = rclpy, Clock, namespace
        self.node = rclpy.create_node("duse_eval_player", namespace=namespace)
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(message_class(image.type_name), image.topic("image_raw"), qos)
        self.audio_pub = self.node.create_publisher(AudioChunk, "audio", qos) if uses_audio else None
        self.clock_pub = self.node.create_publisher(Clock, "clock", 10)  # the nodes' /clock, remapped
        self.states: list = []
        self.arrivals: list[float] = []
        self.prompts: list = []
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_seen = 0  # affect-pipeline statuses received
        self.node.create_subscription(EmotionState, "emotion_state", self._on_state, QoSProfile(depth=1000))
        self.node.create_subscription(DialoguePrompt, "dialogue_prompt", self.prompts.append, QoSProfile(depth=1000))
        self.node.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 10)
        self.clock_ns = 0
        self._anchor = (time.monotonic(), 0)  # (wall, bag ns) the free-running clock counts from
        self.rate = 1.0

    def _on_state(self, msg) -> None:
        self.states.append(msg)
        self.arrivals.append(time.monotonic())

    def _on_diagnostics(self, arr) -> None:
        values = diag.affect_values(arr.status)
        if values is not None:
            self.diagnostics = values
            self.diagnostics_seen += 1

    def inputs_matched(self, topics: list[str], readers: int) -> bool:
        """affect_node's diagnostics count the publishers its subscriptions have matched, and the
        readers its EmotionState publisher has matched (this player, and the bridge): a reading
        published before a reader matched would be lost to it."""
        key = diag.output_subscribers_key(f"{self.namespace}/emotion_state")
        return int(self.diagnostics.get(key, 0)) >= readers and all(
            int(self.diagnostics.get(diag.input_publishers_key(f"{self.namespace}/{t}"), 0)) > 0 for t in topics
        )

    def count(self, key: str) -> int:
        return int_or_none(self.diagnostics.get(key)) or 0

    def frames_taken(self) -> int:
        """Frames the node has taken off the wire: into its windower, or refused as malformed."""
        return self.count(diag.FRAMES_IN) + sum(
            self.count(k) for k in ("malformed.image", "malformed.image_pipeline_error")
        )

    def audio_taken(self) -> int:
        """Audio messages the node has taken off the wire: into its windower, or refused."""
        return self.count("window.audio_chunks_in") + sum(
            self.count(k) for k in ("malformed.audio", "malformed.audio_pipeline_error")
        )

    def model_idle(self) -> bool:
        """Every window the node submitted has left its inference queue."""
        done = sum(
            self.count(f"inference.{k}")
            for k in ("completed", "errors", "dropped_queue_full", "dropped_stale", "dropped_shutdown")
        )
        return self.count("inference.submitted") <= done

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
            msg.clock.sec, msg.clock.nanosec = sec_nanosec(ns)
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


@dataclass
class Sent:
    """What the player sent: counts, and when each frame stamp first left (for latencies)."""

    send_time: dict[int, float] = field(default_factory=dict)  # frame stamp -> when it left
    frames: int = 0
    audio_messages: int = 0
    malformed_audio: int = 0  # audio messages that could not be converted, not sent
    last_audio_ns: int = -1  # the newest header stamp of the audio sent
    started: float | None = None  # when the first message was played


# One message as BagFile.messages yields it: (topic, msgtype, log time ns, raw CDR).
Message = tuple[str, str, int, bytes]


def play_messages(
    player: Player,
    bag: BagFile,
    topics: list[str],
    sent: Sent,
    handle: Callable[[Message], None],
    *,
    rate: float,
    realtime: bool,
    quiet: bool,
    idle: Callable[[], None] | None = None,
) -> None:
    """Every message of `topics` in log order to `handle`, under a progress bar. With `realtime`,
    each waits for its recorded time (scaled by `rate`) while /clock runs on, the node spins and
    `idle` is called; then /clock is set to its log time. The node spins once after each."""
    from tqdm import tqdm

    total = sum(bag.topics[t].count for t in topics)
    start_log = None
    with tqdm(total=total, unit="msg", desc="duse-eval-bag", disable=quiet) as progress:
        for message in bag.messages(topics):
            log_ns = message[2]
            if start_log is None:
                sent.started, start_log = time.monotonic(), log_ns
            if realtime:
                due = sent.started + (log_ns - start_log) / NS / rate
                while (wait := due - time.monotonic()) > 0:
                    player.run_clock()
                    if idle is not None:
                        idle()
                    player.rclpy.spin_once(player.node, timeout_sec=min(wait, 0.02))
            player.tick_clock(log_ns)
            handle(message)
            player.rclpy.spin_once(player.node, timeout_sec=0.0)
            progress.update(1)


def frame_stamp(bag: BagFile, message: Message) -> int:
    """The header stamp of an image message, in ns."""
    _, msgtype, _, raw = message
    return stamp_to_ns(bag.deserialize(raw, msgtype).header.stamp)


def send(
    player: Player, sent: Sent, bag: BagFile, message: Message, audio: AudioAdapter | None, stamp: int | None = None
) -> None:
    """Publish one played message and count it in `sent`: a frame (with the first send time of its
    stamp, given when the caller has read it already), or an audio message converted by `audio`
    (one that cannot be is counted, not sent)."""
    _, msgtype, _, raw = message
    if msgtype in IMAGE_MESSAGES:
        stamp = frame_stamp(bag, message) if stamp is None else stamp
        player.image_pub.publish(raw)
        sent.send_time.setdefault(stamp, time.monotonic())
        sent.frames += 1
        return
    chunk = audio(raw)
    if chunk is None:
        sent.malformed_audio += 1
    else:
        player.audio_pub.publish(chunk)
        sent.audio_messages += 1
        sent.last_audio_ns = max(sent.last_audio_ns, stamp_to_ns(bag.deserialize(raw, msgtype).header.stamp))


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
