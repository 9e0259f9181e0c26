"""affect_node: camera (and microphone) in, one duse_ros/EmotionState per window out.

A lifecycle node: configure loads and validates the model and parameters, activate subscribes and
starts inference, deactivate stops both. With `autostart` (default) it walks itself to active.

    ros2 run duse_ros affect_node --ros-args -p model:=duse-vitb16-normal -p clip_weights:=/models/ViT-B-16.pt
    python -m duse_ros.nodes.affect_node --ros-args --params-file config/duse_video.yaml
"""
from __future__ import annotations

import importlib
import time
from collections import Counter

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image

from duse_ros.audio_stream import AudioStream
from duse_ros.conversions import (ConversionError, audio_chunk_to_mono, audio_data_stamped_to_mono,
                                  audio_stamped_to_mono, to_rgb)
from duse_ros.models import build_model
from duse_ros.msg import AudioChunk, EmotionState
from duse_ros.nodes.common import (diagnostic_array, diagnostic_status, ns_to_stamp, run_node,
                                   seconds_to_duration, sensor_qos, stamp_to_ns)
from duse_ros.pipeline import AffectPipeline, PipelineConfig, Reading
from duse_ros.stats import RateMeter

# Every parameter and its default; config/duse_video.yaml holds the same values (a test checks).
DEFAULTS: dict[str, object] = {
    "model": "duse-vitb16-normal",     # registered configuration name, or a checkpoint's .json path
    "clip_weights": "",                # open_clip checkpoint file for the frozen CLIP ("" = random init)
    "device": "cpu",                   # cpu, cuda, cuda:N or auto
    "half": False,                     # fp16 autocast (CUDA only)
    "torch_threads": 0,                # torch intra-op threads for inference; 0 = torch's default
    "autostart": True,
    "image_compressed": False,         # subscribe to image_raw/compressed (sensor_msgs/CompressedImage)
    "qos.reliability": "best_effort",  # must be compatible with the camera driver's publisher
    "qos.depth": 5,
    "audio.type": "duse_ros/msg/AudioChunk",  # or audio_common_msgs/msg/AudioDataStamped | AudioStamped
    "audio.channels": 1,               # AudioDataStamped only (its format lives in AudioInfo)
    "audio.sample_rate": 16000,
    "audio.sample_format": "S16LE",
    "span_s": 2.0,
    "stride_s": 0.5,
    "max_gap_s": 0.5,
    "face_mode": "detect",
    "face_margin": 0.25,
    "face_detect_hz": 5.0,
    "face_detect_width": 320,
    "min_face_fraction": 0.5,
    "no_face_policy": "publish",
    "smoothing_window": 5,
    "queue_depth": 2,
    "max_batch": 4,
    "diagnostics_period_s": 1.0,
    "stall_timeout_s": 2.0,            # no frame for this long (wall time): diagnostics say "stalled"
}

AUDIO_TYPES = ("duse_ros/msg/AudioChunk", "audio_common_msgs/msg/AudioDataStamped",
               "audio_common_msgs/msg/AudioStamped")
WARN_THROTTLE_S = 5.0


def _import_msg(type_name: str):
    package, _, name = type_name.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ValueError(f"audio.type {type_name!r}: message package {package!r} is not installed "
                         f"(install ros-$ROS_DISTRO-{package.replace('_', '-')} or use duse_ros/msg/AudioChunk)") from None


class AffectNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("affect_node", **kwargs)
        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        self._pipeline: AffectPipeline | None = None
        self._state_pub = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._subs: list = []
        self._timer = None
        self._model = None
        self._frame_id = ""
        self._malformed: Counter[str] = Counter()
        self._qos_incompatible: Counter[str] = Counter()
        self._rates = {"image": RateMeter(), "audio": RateMeter()}
        self._last_frame_wall: float | None = None
        self._audio_stream: AudioStream | None = None
        self._audio_msg_type = AudioChunk
        self._audio_type = AUDIO_TYPES[0]
        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    def p(self, name: str):
        return self.get_parameter(name).value

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = PipelineConfig(**{name: self.p(name) for name in PipelineConfig.names()})
            audio_type = self.p("audio.type")
            if audio_type not in AUDIO_TYPES:
                raise ValueError(f"audio.type must be one of {AUDIO_TYPES}, got {audio_type!r}")
            sensor_qos(self.p("qos.reliability"), self.p("qos.depth"))  # validates both
            if self.p("torch_threads") < 0:
                raise ValueError(f"torch_threads must be >= 0 (0 = torch's default), got {self.p('torch_threads')}")
            if self.p("torch_threads"):
                torch.set_num_threads(self.p("torch_threads"))
            overrides = {"clip_weights": self.p("clip_weights")} if self.p("clip_weights") else {}
            self._model = build_model(self.p("model"), **overrides)
            if self._model.input_spec.uses_audio:  # an uninstalled audio message package fails here, not later
                self._audio_msg_type = AudioChunk if audio_type == AUDIO_TYPES[0] else _import_msg(audio_type)
                self._audio_type = audio_type
            self._pipeline = AffectPipeline(self._model, config, self._publish_reading)
        except Exception as e:  # any bad parameter, config or checkpoint: stay unconfigured, say why
            self.get_logger().error(f"configure failed: {type(e).__name__}: {e}")
            self._model = self._pipeline = None
            return TransitionCallbackReturn.FAILURE
        self._state_pub = self.create_lifecycle_publisher(EmotionState, "emotion_state", 10)
        spec = self._model.input_spec
        self.get_logger().info(
            f"model {self._model.model_id} ({len(self._model.class_names)} classes, "
            f"{'audio-visual' if spec.uses_audio else 'video'}, {spec.num_frames} frames at {spec.image_size}px) "
            f"on {config.device}; checkpoint: {self._model.checkpoint or 'none'}")
        if self._model.untrained:
            self.get_logger().warning(f"{self._model.model_id} has UNTRAINED (random) weights: its readings mean nothing")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._pipeline.start()
        qos = sensor_qos(self.p("qos.reliability"), self.p("qos.depth"))
        if self.p("image_compressed"):
            self._subscribe(CompressedImage, "image_raw/compressed", self._on_image, qos)
        else:
            self._subscribe(Image, "image_raw", self._on_image, qos)
        if self._model.input_spec.uses_audio:
            self._audio_stream = AudioStream(self._model.input_spec.audio_rate)
            self._subscribe(self._audio_msg_type, "audio", self._on_audio, qos)
        self._last_frame_wall = None
        self._timer = self.create_timer(self.p("diagnostics_period_s"), self._publish_diagnostics)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_stream()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown_stream()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        self._teardown_stream()
        self._release()

    def _release(self) -> None:
        if self._state_pub is not None:
            self.destroy_lifecycle_publisher(self._state_pub)
        self._state_pub = self._pipeline = self._model = None

    def _subscribe(self, msg_type, topic: str, callback, qos) -> None:
        events = SubscriptionEventCallbacks(incompatible_qos=lambda info, t=topic: self._on_incompatible(t, info))
        self._subs.append(self.create_subscription(msg_type, topic, callback, qos, event_callbacks=events))

    def _teardown_stream(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._pipeline is not None:
            self._pipeline.stop()

    # ------------------------------------------------------------------ input
    def _on_incompatible(self, topic: str, info) -> None:
        self._qos_incompatible[topic] += 1
        self.get_logger().warning(
            f"a publisher on {self.resolve_topic_name(topic)} has QoS incompatible with this subscription "
            f"(policy {info.last_policy_kind.name}, qos.reliability={self.p('qos.reliability')}): "
            "camera drivers often publish best_effort; set qos.reliability to match the publisher",
            throttle_duration_sec=WARN_THROTTLE_S)

    def _malformed_input(self, kind: str, error: Exception) -> None:
        self._malformed[kind] += 1
        self.get_logger().warning(f"dropped malformed {kind} message ({self._malformed[kind]} so far): {error}",
                               throttle_duration_sec=WARN_THROTTLE_S)

    def _on_image(self, msg) -> None:
        self._rates["image"].tick()
        self._last_frame_wall = time.monotonic()
        try:
            rgb = to_rgb(msg)
        except ConversionError as e:
            self._malformed_input("image", e)
            return
        self._frame_id = msg.header.frame_id
        self._guarded("image", self._pipeline.add_frame, stamp_to_ns(msg.header.stamp), rgb)

    def _on_audio(self, msg) -> None:
        self._rates["audio"].tick()
        audio_type = self._audio_type
        try:
            if audio_type == AUDIO_TYPES[0]:
                mono, rate = audio_chunk_to_mono(msg), int(msg.sample_rate)
            elif audio_type == AUDIO_TYPES[1]:
                rate = self.p("audio.sample_rate")
                mono = audio_data_stamped_to_mono(msg, channels=self.p("audio.channels"), sample_rate=rate,
                                                  sample_format=self.p("audio.sample_format"))
            else:
                mono, rate = audio_stamped_to_mono(msg), int(msg.audio.info.rate)
        except ConversionError as e:
            self._malformed_input("audio", e)
            return
        stamp_ns, samples = self._audio_stream.push(stamp_to_ns(msg.header.stamp), mono, rate)
        if samples.size:
            self._guarded("audio", self._pipeline.add_audio, stamp_ns, samples)

    def _guarded(self, kind: str, step, *args) -> None:
        """A message that gets past conversion but breaks a later step is dropped and counted like a
        malformed one, with the traceback in the log: the node keeps streaming."""
        try:
            step(*args)
        except Exception as e:  # noqa: BLE001 - one bad message must not end the executor
            self._malformed[f"{kind}_pipeline_error"] += 1
            self.get_logger().error(f"{kind} message broke the pipeline ({self._malformed[f'{kind}_pipeline_error']} "
                                    f"so far): {type(e).__name__}: {e}", throttle_duration_sec=WARN_THROTTLE_S)

    # ------------------------------------------------------------------ output
    def _publish_reading(self, r: Reading) -> None:
        """Called on the engine's worker thread (or the executor's, for no-face states)."""
        pub, model = self._state_pub, self._model
        if pub is None or model is None:
            return
        msg = EmotionState()
        msg.header.stamp = ns_to_stamp(r.window_end_ns)
        msg.header.frame_id = self._frame_id
        msg.window_start, msg.window_end = ns_to_stamp(r.window_start_ns), ns_to_stamp(r.window_end_ns)
        msg.model_id, msg.checkpoint, msg.untrained = model.model_id, model.checkpoint, bool(model.untrained)
        msg.modality = r.modality
        msg.class_names = r.class_names
        msg.probabilities = r.probabilities.tolist()
        msg.label, msg.confidence = r.label, r.confidence
        msg.smoothed_probabilities = r.smoothed_probabilities.tolist()
        msg.smoothed_label, msg.smoothed_confidence = r.smoothed_label, r.smoothed_confidence
        msg.smoothing_count = r.smoothing_count
        msg.face_found = r.face_found
        msg.frames_used, msg.audio_samples_used = r.frames_used, r.audio_samples_used
        msg.audio_sample_rate = r.audio_rate if r.audio_samples_used else 0
        msg.inference_latency = seconds_to_duration(r.latency_s)
        pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        if self._pipeline is None:
            return
        values: dict[str, object] = {
            "model": self._model.model_id, "untrained": self._model.untrained,
            "input.image_fps": f"{self._rates['image'].rate_hz():.1f}",
            "input.audio_chunks_per_s": f"{self._rates['audio'].rate_hz():.1f}",
        }
        # Who publishes on each input: 0 means a wrong topic name or a QoS mismatch.
        values.update({f"input.{sub.topic_name.lstrip('/')}.publishers": sub.get_publisher_count() for sub in self._subs})
        values.update({f"malformed.{k}": v for k, v in sorted(self._malformed.items())})
        values.update({f"qos_incompatible.{k}": v for k, v in sorted(self._qos_incompatible.items())})
        values.update(self._pipeline.diagnostics())
        since = None if self._last_frame_wall is None else time.monotonic() - self._last_frame_wall
        if since is None:
            level, message = DiagnosticStatus.WARN, "waiting for the first frame"
        elif since > self.p("stall_timeout_s"):
            level, message = DiagnosticStatus.WARN, f"camera stalled: no frame for {since:.1f} s"
        else:
            level, message = DiagnosticStatus.OK, "streaming"
        status = diagnostic_status(f"{self.get_name()}: affect pipeline", self._model.model_id, level, message, values)
        self._diag_pub.publish(diagnostic_array(self, [status]))


def main() -> None:
    run_node(AffectNode)


if __name__ == "__main__":
    main()
