"""`make demo`: the affect pipeline end to end on an embedded default, no camera needed.

1. writes a short recorded stream (rosbag2, MCAP) built from the bundled portrait: a face that
   moves, leaves the picture for three seconds and returns, with a voice-like tone throughout;
2. starts the real nodes in their own processes: affect_node and llm_bridge_node;
3. replays the bag over real DDS (loopback only) in real time;
4. prints every EmotionState and DialoguePrompt as it arrives, then records the states to a bag
   and draws their timeline (PNG) under demo_output/, beside a few frames of the node's live view
   (~/debug_image: boxes, ids, landmarks, readings) as live_view_<t>.png.

    python -m duse_ros.tools.demo [--model fer2013-minixception] [--bag existing_bag] [--out demo_output]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

# DDS stays on this machine, on a domain of the demo's own (before rclpy loads).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "62")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from duse_ros.affect import diagnostics as diag  # noqa: E402
from duse_ros.affect import settings as affect_settings  # noqa: E402
from duse_ros.io.demo_stream import AUDIO_TOPIC, CAMERA, IMAGE_TOPIC, read_bag, write_demo_bag  # noqa: E402
from duse_ros.io.rosbag import BagWriter  # noqa: E402
from duse_ros.msg import AudioChunk, DialoguePrompt, EmotionState  # noqa: E402
from duse_ros.nodes.common import message_class  # noqa: E402
from duse_ros.timebase import NS, stamp_to_ns  # noqa: E402
from duse_ros.tools.evaluate import plot_timeline  # noqa: E402
from duse_ros.tools.processes import node_command, stop  # noqa: E402

DEFAULT_MODEL = affect_settings.DEFAULTS["model"]
MODALITY = {
    EmotionState.MODALITY_NONE: "none",
    EmotionState.MODALITY_VIDEO: "video",
    EmotionState.MODALITY_AUDIO: "audio",
    EmotionState.MODALITY_AUDIO_VISUAL: "audio+video",
}


def _start(module: str, params: dict[str, object], log: Path) -> subprocess.Popen:
    return subprocess.Popen(node_command(module, params), stdout=log.open("w"), stderr=subprocess.STDOUT)


def _stamp_s(t) -> float:
    return stamp_to_ns(t) / NS


class DemoPeer:
    """The demo's own node: plays the bag, prints and keeps what the pipeline publishes."""

    def __init__(self):
        self.node = rclpy.create_node("duse_demo_player")
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            IMAGE_TOPIC: self.node.create_publisher(message_class(CAMERA.type_name), CAMERA.topic("image_raw"), qos),
            AUDIO_TOPIC: self.node.create_publisher(AudioChunk, "audio", qos),
        }
        self.states: list[EmotionState] = []
        self.prompts: list[DialoguePrompt] = []
        self.t0: float | None = None
        self.node.create_subscription(EmotionState, "emotion_state", self._on_state, qos)
        self.node.create_subscription(DialoguePrompt, "dialogue_prompt", self._on_prompt, qos)
        self.live_views: dict[int, Image] = {}  # the first live view frame of each second of stream
        self.node.create_subscription(Image, "/affect_node/debug_image", self._on_live_view, 5)
        self._diagnostics: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, arr: DiagnosticArray) -> None:
        values = diag.affect_values(arr.status)
        if values is not None:
            self._diagnostics = values

    def node_matched(self, readers: int) -> bool:
        """affect_node's diagnostics count the publishers each of its subscriptions (image, and audio
        for an audio-visual model) has matched, and the readers of its EmotionStates (this peer, and
        the bridge when it runs)."""
        counts = [v for k, v in self._diagnostics.items() if diag.is_input_publishers_key(k)]
        output = int(self._diagnostics.get(diag.output_subscribers_key("/emotion_state"), 0))
        return bool(counts) and all(int(v) > 0 for v in counts) and output >= readers

    def spin_until(self, done, timeout: float, procs: list[subprocess.Popen]) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                return False
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return True

    def _on_state(self, s: EmotionState) -> None:
        if not self.states:
            print(
                f"{'t (s)':>6}  {'modality':<11} {'face':<4}  {'label':<15} {'conf':>5}  "
                f"{'smoothed':<15} {'conf':>5}  {'model ms':>8}"
            )
        self.states.append(s)
        t = _stamp_s(s.window_end) - (self.t0 or 0.0)
        print(
            f"{t:6.2f}  {MODALITY.get(s.modality, '?'):<11} {'yes' if s.face_found else 'no':<4}  "
            f"{s.label:<15} {s.confidence:5.2f}  {s.smoothed_label or '-':<15} {s.smoothed_confidence:5.2f}  "
            f"{_stamp_s(s.inference_latency) * 1e3:8.1f}"
        )

    def _on_live_view(self, msg: Image) -> None:
        self.live_views.setdefault(stamp_to_ns(msg.header.stamp) // NS, msg)

    def save_live_views(self, run_dir: Path, count: int = 4) -> list[Path]:
        """`count` live view frames spread over the run, as PNGs named by their stream time."""
        import cv2
        import numpy as np

        seconds = sorted(self.live_views)
        picked = [seconds[round(i * (len(seconds) - 1) / max(count - 1, 1))] for i in range(min(count, len(seconds)))]
        paths = []
        for second in dict.fromkeys(picked):
            msg = self.live_views[second]
            rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
            path = run_dir / f"live_view_{_stamp_s(msg.header.stamp) - (self.t0 or 0.0):05.2f}s.png"
            cv2.imwrite(str(path), cv2.cvtColor(rgb.reshape(msg.height, msg.width, 3), cv2.COLOR_RGB2BGR))
            paths.append(path)
        return paths

    def _on_prompt(self, p: DialoguePrompt) -> None:
        self.prompts.append(p)
        indent = "\n" + " " * 13
        system = indent.join(textwrap.wrap(p.system_prompt.strip(), 100))
        user = indent.join(textwrap.wrap(p.user_prompt.strip(), 100))
        print(
            f"\n  >> DialoguePrompt ({p.reason}, {p.language}): emotion={p.emotion} conf={p.confidence:.2f} "
            f"(no LLM endpoint: this is what would be sent)\n     system: {system}\n     user:   {user}\n"
        )

    def play(self, messages: list[tuple[str, str, int, bytes]], rate: float) -> None:
        """Publish each raw message at its recorded time offset (scaled by `rate`)."""
        start_wall, start_bag = time.monotonic(), messages[0][2]
        for topic, _, stamp, raw in messages:
            due = start_wall + (stamp - start_bag) / NS / rate
            while (wait := due - time.monotonic()) > 0:
                rclpy.spin_once(self.node, timeout_sec=wait)  # serve subscriptions while waiting
            self.pubs[topic].publish(raw)


def _untrained(model: str, clip_weights: str) -> bool:
    """Whether `model` would run with random weights (a missing weights file is the node's to report)."""
    from duse_ros.loading import load_model

    try:
        return bool(load_model(model, **({"clip_weights": clip_weights} if clip_weights else {})).untrained)
    except Exception:  # noqa: BLE001 - affect_node says what is wrong with the model, in its log
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="registered model name or checkpoint .json (default: the trained FER2013 CNN)",
    )
    ap.add_argument("--clip-weights", default="", help="open_clip checkpoint for DuSE models")
    ap.add_argument("--bag", type=Path, help="replay this rosbag2 instead of the generated demo stream")
    ap.add_argument("--out", type=Path, default=Path("demo_output"))
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed")
    ap.add_argument("--no-bridge", action="store_true", help="do not start llm_bridge_node")
    args = ap.parse_args(argv)

    run_dir = args.out / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    bag = args.bag or write_demo_bag(run_dir / "input_stream")
    messages = sorted(read_bag(bag), key=lambda m: m[2])
    messages = [m for m in messages if m[0] in (IMAGE_TOPIC, AUDIO_TOPIC)]
    if not messages:
        print(f"{bag} holds no {IMAGE_TOPIC} or {AUDIO_TOPIC} messages", file=sys.stderr)
        return 2
    print(
        f"duse_ros demo: replaying {bag} ({len(messages)} messages, "
        f"{(messages[-1][2] - messages[0][2]) / NS:.1f} s) into affect_node [{args.model}] over loopback DDS, "
        f"domain {os.environ['ROS_DOMAIN_ID']}\n"
    )

    node_params = {
        "model": args.model,
        "image_compressed": CAMERA.compressed,
        "qos.reliability": "reliable",
        "qos.depth": 50,
    }
    if args.clip_weights:
        node_params["clip_weights"] = args.clip_weights
    procs = [_start("duse_ros.nodes.affect_node", node_params, run_dir / "affect_node.log")]
    if not args.no_bridge:
        # The stream is short: a new emotion is reported after 1 s, and no heartbeats.
        bridge: dict[str, object] = {"dwell_s": 1.0, "heartbeat_s": 0.0}
        if _untrained(args.model, args.clip_weights):
            # A random-weight model is never confident, so the bridge's usual threshold would only
            # ever report "unknown (too uncertain)". Lowered to show labelled prompts; the prompts
            # still carry the untrained-weights warning.
            bridge.update({"min_confidence": 0.0, "hysteresis": 0.0})
        procs.append(_start("duse_ros.nodes.llm_bridge_node", bridge, run_dir / "llm_bridge_node.log"))

    rclpy.init()
    peer = DemoPeer()
    try:
        # A video-only model has no audio subscription: the image input and the output suffice.
        ready = peer.spin_until(
            lambda: (
                peer.pubs[IMAGE_TOPIC].get_subscription_count() > 0 and peer.node.count_publishers("emotion_state") > 0
            ),
            60,
            procs,
        )
        if not ready:
            print(
                "affect_node did not come up; its log:\n" + (run_dir / "affect_node.log").read_text(), file=sys.stderr
            )
            return 1
        # The node's readers must also have matched ours (and the bridge the node's writer) before
        # the first frame goes out.
        readers = 1 if args.no_bridge else 2
        peer.spin_until(lambda: peer.node_matched(readers), 20, procs)
        peer.t0 = messages[0][2] / NS
        peer.play(messages, args.rate)
        # Let the last windows through inference: wait until states stop coming for 2 s.
        last = -1
        while last != len(peer.states):
            last = len(peer.states)
            peer.spin_until(lambda: len(peer.states) > last, 2.0, procs)
    finally:
        for p in procs:
            stop(p)
        with BagWriter(run_dir / "emotion_states") as recorder:
            for s in peer.states:
                recorder.write(
                    "/emotion_state", stamp_to_ns(s.window_end), serialize_message(s), "duse_ros/msg/EmotionState"
                )
        peer.node.destroy_node()
        rclpy.try_shutdown()

    readings = [st for st in peer.states if len(st.class_names)]
    if readings:
        model = readings[0].model_id + (" (UNTRAINED: random weights)" if readings[0].untrained else "")
        plot_timeline(
            peer.states,
            [],
            list(readings[0].class_names),
            int((peer.t0 or 0.0) * NS),
            run_dir / "emotion_timeline.png",
            title=f"EmotionState timeline: {model}",
        )
    live_views = peer.save_live_views(run_dir)
    modalities = Counter(MODALITY.get(s.modality, "?") for s in peer.states)
    untrained = any(s.untrained for s in peer.states)
    print(
        f"\n{len(peer.states)} EmotionState messages ({', '.join(f'{k}: {v}' for k, v in modalities.items())}), "
        f"{len(peer.prompts)} dialogue prompts."
    )
    print(
        f"Recorded to {run_dir / 'emotion_states'} (rosbag2, MCAP); timeline: {run_dir / 'emotion_timeline.png'}; "
        f"node logs in {run_dir}."
    )
    if live_views:
        print(f"Live view frames (~/debug_image): {', '.join(p.name for p in live_views)}")
    if untrained:
        print(
            "\nNOTE: the model's weights are UNTRAINED (random init), so the labels above mean nothing. The demo "
            "shows the plumbing: windows, face crops, the audio fallback while the face is away, smoothing "
            "and prompts. Train a checkpoint with training/ and pass --model path/to/checkpoint.json."
        )
    return 0 if peer.states else 1


if __name__ == "__main__":
    sys.exit(main())
