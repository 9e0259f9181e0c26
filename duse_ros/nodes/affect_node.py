"""affect_node: camera (and microphone) in, one duse_ros/EmotionState per window out.

A lifecycle node: configure loads and validates the model and parameters, activate subscribes and
starts inference, deactivate stops both. With `autostart` (default) it walks itself to active.

    ros2 run duse_ros affect_node --ros-args -p model:=duse-vitb16-normal -p clip_weights:=/models/ViT-B-16.pt
    python -m duse_ros.nodes.affect_node --ros-args --params-file config/duse_video.yaml
"""

from __future__ import annotations

from duse_ros.nodes import startup

if __name__ == "__main__":  # python -m: a stop signal during the imports below is noted, not raised
    startup.hold_signals()

import dataclasses
import linecache
import time
import traceback
from collections import Counter
from pathlib import Path

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import RegionOfInterest

from duse_ros.affect import diagnostics as diag
from duse_ros.affect import settings as affect_settings
from duse_ros.affect.audio_stream import AudioRefused, AudioStream
from duse_ros.affect.host_memory import set_heap_policy
from duse_ros.affect.hri import Keyframe, unmapped
from duse_ros.affect.onnx_model import load_onnx_model
from duse_ros.affect.pipeline import LIVE as PIPELINE_LIVE
from duse_ros.affect.pipeline import AffectPipeline, PipelineConfig, Reading
from duse_ros.affect.stats import ArrivalMeter, LatencyReservoir, RateMeter
from duse_ros.classes import valence_arousal
from duse_ros.io.audio import AUDIO_CHUNK, AUDIO_MESSAGES, PcmFormat
from duse_ros.io.conversions import ConversionError
from duse_ros.io.images import IMAGE, IMAGE_MESSAGES, image_message
from duse_ros.loading import load_model
from duse_ros.models.registry import UnknownModelError
from duse_ros.msg import AudioChunk, EmotionState
from duse_ros.nodes.common import (
    check_parameter_changes,
    declare_table,
    diagnostic_array,
    diagnostic_status,
    message_class,
    ns_to_stamp,
    release_memory,
    run_node,
    seconds_to_duration,
    sensor_qos,
    stamp_to_ns,
)
from duse_ros.nodes.debug_image import DebugImageOutput
from duse_ros.nodes.hri_io import HRI_PACKAGE_HINT, HriFaceInput, HriOutput, import_hri_msgs
from duse_ros.weights import WeightsError

# Every parameter, its default, range and meaning: duse_ros/affect/settings.py (one table).
DEFAULTS = affect_settings.DEFAULTS

WARN_THROTTLE_S = 5.0
# Below this share of the camera's frames (by their stamps) arriving, frames are being lost on the
# way; the warning is logged once when it starts (again only after it cleared, at most this often).
MIN_ARRIVAL_FRACTION = 0.5
FRAME_LOSS_LOG_EVERY_S = 60.0
# Configure failures that a user's input causes (model:=, a config or checkpoint file, a value):
# these types always, and a ValueError when our own code raised it (see user_caused).
USER_ERRORS = (UnknownModelError, WeightsError, OSError)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
MAX_PLAUSIBLE_AGE_S = 3600.0


# torch's own intra-op thread count (one per core, or OMP_NUM_THREADS), read before this node sets
# any, so that torch_threads: 0 brings it back after another value was configured.
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def set_torch_threads(threads: int) -> int:
    """Size torch's process-wide intra-op pool: `threads`, or torch's default for 0. Returns the size."""
    torch.set_num_threads(threads or TORCH_DEFAULT_THREADS)
    return torch.get_num_threads()


def user_caused(error: BaseException) -> bool:
    """Is a configure failure the user's to fix (one line says it all) rather than a bug (whose
    traceback belongs in the log)? A wrong model name, weights file or unreadable path is; so is a
    ValueError that a `raise` statement of duse_ros raised, since ours name the value at fault. A
    ValueError from inside torch, numpy or the standard library, or from a builtin our code called
    (int("x"), a reshape), is not: it is a bug in how we called them."""
    if isinstance(error, USER_ERRORS):
        return True
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    source = tb.tb_frame.f_code.co_filename
    ours = Path(source).resolve().is_relative_to(PACKAGE_DIR)
    return ours and linecache.getline(source, tb.tb_lineno).lstrip().startswith("raise")


def _import_msg(type_name: str):
    package = type_name.split("/")[0]
    try:
        return message_class(type_name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"audio.type {type_name!r}: message package {package!r} is not installed "
            f"(install ros-$ROS_DISTRO-{package.replace('_', '-')} or use duse_ros/msg/AudioChunk)"
        ) from None


class AffectNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("affect_node", **kwargs)
        # Start-up values the table refuses keep their default and fail configure, saying why.
        self._parameter_errors = declare_table(self, affect_settings.PARAMETERS)
        self._live = {name: self.p(name) for name in affect_settings.LIVE}
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._configured = False
        self._refused: Counter[str] = Counter()
        self._reading_age = LatencyReservoir(256)
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
        self._arrivals = ArrivalMeter()
        self._frame_loss_logged_at: float | None = None  # monotonic time of the last loss warning
        self._frame_loss = False
        self._audio_stream: AudioStream | None = None
        self._audio_msg_type = AudioChunk
        self._audio = AUDIO_MESSAGES[AUDIO_CHUNK]  # the audio message family's entry for audio.type
        self._image = IMAGE_MESSAGES[IMAGE]  # the image message family's entry for image_compressed
        self._pcm_format = PcmFormat()  # audio.* parameters: the format of messages that do not carry it
        self._hri_msgs = import_hri_msgs()
        self._hri_out: HriOutput | None = None
        self._hri_in: HriFaceInput | None = None
        self._debug: DebugImageOutput | None = None  # ~/debug_image (own face detection only)
        self._failure = ""  # why the last lifecycle transition failed ("" when it did not)
        self._failure_timer = None
        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    def p(self, name: str):
        return self.get_parameter(name).value

    # ------------------------------------------------------------------ parameters
    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Every value against the table; a configure-time parameter only while unconfigured."""

        def refuse(spec) -> str:
            if self._configured and not spec.live:
                return (
                    f"parameter {spec.name!r} takes effect at configure: run lifecycle deactivate "
                    "(if active) and cleanup, set it, then configure"
                )
            return ""

        result = check_parameter_changes(affect_settings.BY_NAME, params, refuse)
        if not result.successful:
            self.get_logger().warning(f"parameter change refused: {result.reason}")
        return result

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Live parameters take effect at once."""
        for p in params:  # a start-up value refused earlier has now been set right
            self._parameter_errors.pop(p.name, None)
        changes = {p.name: p.value for p in params if p.name in self._live}
        self._live.update(changes)
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.update(**{k: v for k, v in changes.items() if k in PIPELINE_LIVE})
        stream = self._audio_stream
        if stream is not None:
            stream.min_rate, stream.max_rate = self._live["audio.min_sample_rate"], self._live["audio.max_sample_rate"]
            stream.max_chunk_s = self._live["audio.max_chunk_s"]
        if "diagnostics_period_s" in changes and self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(changes["diagnostics_period_s"], self._publish_diagnostics)
        if changes:
            self.get_logger().info(f"applied {', '.join(f'{k}={v!r}' for k, v in changes.items())}")

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._parameter_errors:
            self._report_failure(
                "configure",
                "invalid parameters (set valid values, then configure): " + "; ".join(self._parameter_errors.values()),
            )
            return TransitionCallbackReturn.FAILURE
        try:
            config = PipelineConfig(**{name: self.p(name) for name in PipelineConfig.names()})
            audio_type = self.p("audio.type")
            set_torch_threads(self.p("torch_threads"))
            self.get_logger().info(set_heap_policy(self.p("malloc_keep_mb")))
            overrides = {
                name: self.p(name) for name in ("clip_weights", "visual_weights", "audio_weights") if self.p(name)
            }  # frozen-encoder files: only those given replace the model config's
            if self.p("runtime") == "onnxruntime":  # ORT places the graph itself: the engine hands it host tensors
                self._model = load_onnx_model(
                    self.p("model"), device=self.p("device"), threads=self.p("torch_threads"), **overrides
                )
                config = dataclasses.replace(config, device="cpu")
            else:
                self._model = load_model(self.p("model"), **overrides)
            if self._model.input_spec.uses_audio:  # an uninstalled audio message package fails here, not later
                self._audio_msg_type = AudioChunk if audio_type == AUDIO_CHUNK else _import_msg(audio_type)
                self._audio = AUDIO_MESSAGES[audio_type]
                self._pcm_format = PcmFormat(
                    self.p("audio.sample_rate"), self.p("audio.channels"), self.p("audio.sample_format")
                )
            if config.face_source == "ros4hri" and self._hri_msgs is None:
                raise ValueError(f"face_source 'ros4hri' needs hri_msgs: {HRI_PACKAGE_HINT}")
            self._pipeline = AffectPipeline(
                self._model, config, self._publish_reading, stamp_age=self._stamp_age_s, on_faces=self._on_faces
            )
        except Exception as e:  # any bad parameter, config or checkpoint: stay unconfigured, say why
            # A wrong model name, file or value is the user's to fix: one line says it all. Anything
            # else is a bug, and its traceback is logged for the report.
            trace = "" if user_caused(e) else traceback.format_exc()
            self._report_failure("configure", f"{type(e).__name__}: {e}", trace)
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self._clear_failure()
        self._state_pub = self.create_lifecycle_publisher(EmotionState, "emotion_state", 10)
        self._configure_hri_output(config)
        if config.face_mode == "detect" and config.face_source == "own":
            self._debug = DebugImageOutput(self)
        spec = self._model.input_spec
        self.get_logger().info(
            f"model {self._model.model_id} ({len(self._model.class_names)} classes, "
            f"{'audio-visual' if spec.uses_audio else 'video'}, {spec.num_frames} frames at {spec.image_size}px) "
            f"on {config.device}; checkpoint: {self._model.checkpoint or 'none'}"
        )
        if self._model.untrained:
            self.get_logger().warning(
                f"{self._model.model_id} has UNTRAINED (random) weights: its readings mean nothing"
            )
        trained_span = self._model.config().get("span_s")  # the clip span the model's frames were sampled over
        if trained_span and abs(float(trained_span) - config.span_s) > 1e-3:
            self.get_logger().warning(
                f"span_s mismatch: {self._model.model_id} was trained on 16 frames over {float(trained_span):g} s, "
                f"this node spreads them over span_s={config.span_s:g} s; set span_s:={float(trained_span):g} to match"
            )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:  # the model moves to its device here: CUDA out of memory or a vanished GPU fail it
            self._pipeline.start()
            qos = sensor_qos(self.p("qos.reliability"), self.p("qos.depth"))
            self._image = image_message(self.p("image_compressed"))
            # image_transport's convention: the compressed stream is `<base>/compressed` of the
            # (remapped) base topic, so `-r image_raw:=/camera/color/image_raw` moves both.
            base = self.resolve_topic_name("image_raw") if self._image.compressed else "image_raw"
            self._subscribe(message_class(self._image.type_name), self._image.topic(base), self._on_image, qos)
            if self._pipeline.external is not None:
                self._hri_in = HriFaceInput(
                    self,
                    self._hri_msgs,
                    self._pipeline.external,
                    self._malformed_input,
                    self.p("qos.reliability"),
                    self.p("qos.depth"),
                )
            if self._model.input_spec.uses_audio:
                self._audio_stream = AudioStream(
                    self._model.input_spec.audio_rate,
                    min_rate=self._live["audio.min_sample_rate"],
                    max_rate=self._live["audio.max_sample_rate"],
                    max_chunk_s=self._live["audio.max_chunk_s"],
                )
                self._subscribe(self._audio_msg_type, "audio", self._on_audio, qos)
            self._last_frame_wall = None
            self._arrivals, self._frame_loss = ArrivalMeter(), False
            self._timer = self.create_timer(self._live["diagnostics_period_s"], self._publish_diagnostics)
        except Exception as e:  # noqa: BLE001 - stay inactive and say why
            self._report_failure(
                "activate", f"on device {self.p('device')!r}: {type(e).__name__}: {e}", traceback.format_exc()
            )
            self._teardown_stream()
            return TransitionCallbackReturn.FAILURE
        self._clear_failure()
        return super().on_activate(state)

    def _report_failure(self, step: str, reason: str, trace: str = "") -> None:
        """A failed transition: logged (with the traceback caught), and an ERROR on /diagnostics so a
        robot's monitor sees why the node is not running."""
        self.get_logger().error(f"{step} failed: {reason}" + (f"\n{trace}" if trace else ""))
        self._failure = f"{step} failed: {reason}"[:1000]
        self._publish_failure()
        if self._failure_timer is None:  # repeated, like any diagnostics, until a transition succeeds
            self._failure_timer = self.create_timer(self._live["diagnostics_period_s"], self._publish_failure)

    def _publish_failure(self) -> None:
        if self._failure:
            status = diagnostic_status(
                diag.status_name(self.get_name()),
                self.get_fully_qualified_name(),
                DiagnosticStatus.ERROR,
                self._failure,
                {"model": self.p("model")},
            )
            self._diag_pub.publish(diagnostic_array(self, [status]))

    def _clear_failure(self) -> None:
        self._failure = ""
        if self._failure_timer is not None:
            self.destroy_timer(self._failure_timer)
            self._failure_timer = None

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
        self._clear_failure()
        self._teardown_stream()
        self._release()

    def _release(self) -> None:
        """Drop the model, the pipeline and everything they hold, and give the memory back."""
        if self._state_pub is not None:
            self.destroy_lifecycle_publisher(self._state_pub)
        if self._hri_out is not None:
            self._hri_out.close()
            self._hri_out = None
        if self._debug is not None:
            self._debug.close()
            self._debug = None
        self._state_pub = self._pipeline = self._model = self._audio_stream = None
        self._configured = False
        release_memory()

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
            interrupt = getattr(self._model, "interrupt", None)  # a run inside ONNX Runtime ends at its next node
            if interrupt is not None:
                interrupt()
            self._pipeline.stop()
            if interrupt is not None:
                self._model.resume()
        if self._hri_in is not None:
            self._hri_in.close()
            self._hri_in = None
        self._audio_stream = None

    # ------------------------------------------------------------------ input
    def _on_incompatible(self, topic: str, info) -> None:
        self._qos_incompatible[topic] += 1
        self.get_logger().warning(
            f"a publisher on {self.resolve_topic_name(topic)} has QoS incompatible with this subscription "
            f"(policy {info.last_policy_kind.name}, qos.reliability={self.p('qos.reliability')}): "
            "camera drivers often publish best_effort; set qos.reliability to match the publisher",
            throttle_duration_sec=WARN_THROTTLE_S,
        )

    def _malformed_input(self, kind: str, error: Exception) -> None:
        self._malformed[kind] += 1
        self.get_logger().warning(
            f"dropped malformed {kind} message ({self._malformed[kind]} so far): {error}",
            throttle_duration_sec=WARN_THROTTLE_S,
        )

    def _refuse(self, kind: str, reason: str) -> None:
        self._refused[kind] += 1
        self.get_logger().warning(
            f"refused {kind} ({self._refused[kind]} so far): {reason}", throttle_duration_sec=WARN_THROTTLE_S
        )

    def _on_image(self, msg) -> None:
        self._rates["image"].tick()
        self._last_frame_wall = time.monotonic()
        self._arrivals.add(stamp_to_ns(msg.header.stamp))
        image = self._image
        pixels = image.pixels(msg)
        if pixels > self._live["max_image_pixels"]:
            self._refuse(
                "image_too_large",
                f"a frame of {pixels} pixels, more than max_image_pixels = {self._live['max_image_pixels']}",
            )
            return
        try:
            rgb = image.to_rgb(msg)
        except ConversionError as e:
            self._malformed_input("image", e)
            return
        if rgb.shape[0] * rgb.shape[1] > self._live["max_image_pixels"]:  # a codec whose header was not read
            self._refuse(
                "image_too_large",
                f"a frame of {rgb.shape[1]}x{rgb.shape[0]} pixels, more than "
                f"max_image_pixels = {self._live['max_image_pixels']}",
            )
            return
        self._frame_id = msg.header.frame_id
        self._guarded("image", self._pipeline.add_frame, stamp_to_ns(msg.header.stamp), rgb)

    def _on_audio(self, msg) -> None:
        self._rates["audio"].tick()
        audio, fmt = self._audio, self._pcm_format
        stream = self._audio_stream
        if stream is None:
            return
        try:  # limits first: the header alone says what decoding would allocate
            stream.check(*audio.extent(msg, fmt))
        except AudioRefused as e:
            self._refuse(f"audio_{e.kind}", str(e))
            return
        try:
            mono, rate = audio.to_mono(msg, fmt)
        except ConversionError as e:
            self._malformed_input("audio", e)
            return
        try:
            stamp_ns, samples = stream.push(stamp_to_ns(msg.header.stamp), mono, rate)
        except (AudioRefused, ConversionError) as e:
            self._malformed_input("audio", e)
            return
        if samples.size:
            self._guarded("audio", self._pipeline.add_audio, stamp_ns, samples)

    def _guarded(self, kind: str, step, *args) -> None:
        """A message that gets past conversion but breaks a later step is dropped and counted like a
        malformed one, with the traceback in the log: the node keeps streaming."""
        try:
            step(*args)
        except Exception as e:  # noqa: BLE001 - one bad message must not end the executor
            self._malformed[f"{kind}_pipeline_error"] += 1
            self.get_logger().error(
                f"{kind} message broke the pipeline ({self._malformed[f'{kind}_pipeline_error']} "
                f"so far): {type(e).__name__}: {e}",
                throttle_duration_sec=WARN_THROTTLE_S,
            )

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
        msg.valence, msg.arousal = valence_arousal(r.class_names, r.probabilities)
        msg.smoothed_valence, msg.smoothed_arousal = valence_arousal(r.class_names, r.smoothed_probabilities)
        msg.face_found = r.face_found
        msg.face_id = r.face_id
        if r.face_box is not None:
            x, y, w, h = (int(v) for v in r.face_box)
            msg.face_roi = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
        msg.image_width, msg.image_height = (int(v) for v in r.image_size)
        msg.frames_used, msg.audio_samples_used = r.frames_used, r.audio_samples_used
        msg.audio_sample_rate = r.audio_rate if r.audio_samples_used else 0
        msg.inference_latency = seconds_to_duration(r.latency_s)
        age = self._stamp_age_s(r.window_end_ns)
        if age is not None:
            self._reading_age.add(age)
        pub.publish(msg)
        hri = self._hri_out
        if hri is not None:
            hri.on_reading(r, self._frame_id)
        debug = self._debug
        if debug is not None:
            debug.on_reading(r)

    def _on_faces(self, keyframe: Keyframe) -> None:
        """On the face thread, after each keyframe: the ROS4HRI face topics and the live view."""
        hri, debug = self._hri_out, self._debug
        if hri is not None:
            hri.on_faces(keyframe, self._frame_id)
        if debug is not None:
            debug.on_keyframe(keyframe, self._frame_id)

    def _configure_hri_output(self, config: PipelineConfig) -> None:
        if not self.p("ros4hri_output") or config.face_mode != "detect":
            return
        if self._hri_msgs is None:
            self.get_logger().info(
                f"ROS4HRI outputs off: {HRI_PACKAGE_HINT} (EmotionState still carries face_id and face_roi)"
            )
            return
        missing = unmapped(self._model.class_names)
        if missing:
            self.get_logger().warning(
                f"ROS4HRI outputs off: {self._model.model_id}'s classes {missing} have no "
                "hri_msgs/Expression counterpart (duse_ros/affect/hri.py EXPRESSIONS)"
            )
            return
        self._hri_out = HriOutput(
            self, self._hri_msgs, publish_tracked=config.face_source == "own", margin=config.face_margin
        )

    def _stamp_age_s(self, stamp_ns: int) -> float | None:
        """How old data stamped `stamp_ns` is by this node's clock (ROS time: sim time under a
        bag replay); None when the clocks are plainly unrelated (a bag played without sim time)."""
        age = (self.get_clock().now().nanoseconds - stamp_ns) / 1e9
        return age if -1.0 <= age <= MAX_PLAUSIBLE_AGE_S else None

    def _frame_loss_text(self, values: dict[str, object]) -> str:
        """Frames lost between the camera and this node, judged from their stamps: the text for
        diagnostics (and, once per episode, the log), or "" while the frames arrive."""
        assessed = self._arrivals.assess()
        if assessed is None:
            return ""
        source_hz, fraction = assessed
        values[diag.IMAGE_SOURCE_FPS] = f"{source_hz:.1f}"
        values[diag.IMAGE_ARRIVAL_FRACTION] = f"{fraction:.2f}"
        lossy = fraction < MIN_ARRIVAL_FRACTION
        if not lossy:
            self._frame_loss = False
            return ""
        text = (
            f"frames lost in transport: {fraction:.0%} of the camera's {source_hz:.0f} fps arrive (by their stamps). "
            "Likely cause: large raw images over Fast DDS's default transport (a 512 KB shared-memory "
            "segment). Fix: give the camera's publisher the shared-memory profile too "
            "(FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_shm.xml), or subscribe to the compressed "
            "topic (image_compressed:=true)"
        )
        now = time.monotonic()
        if not self._frame_loss and (
            self._frame_loss_logged_at is None or now - self._frame_loss_logged_at >= FRAME_LOSS_LOG_EVERY_S
        ):
            self.get_logger().warning(text)
            self._frame_loss_logged_at = now
        self._frame_loss = True
        return text

    def _publish_diagnostics(self) -> None:
        if self._pipeline is None:
            return
        values: dict[str, object] = {
            "model": self._model.model_id,
            "untrained": self._model.untrained,
            "inference.runtime": getattr(self._model, "runtime", "torch"),
            "inference.provider": getattr(self._model, "provider", f"torch {self.p('device')}"),
            "torch_threads": torch.get_num_threads(),
            diag.IMAGE_FPS: f"{self._rates['image'].rate_hz():.1f}",
            diag.AUDIO_CHUNKS_PER_S: f"{self._rates['audio'].rate_hz():.1f}",
        }
        # Who publishes on each input: 0 means a wrong topic name or a QoS mismatch.
        values.update({diag.input_publishers_key(sub.topic_name): sub.get_publisher_count() for sub in self._subs})
        if self._state_pub is not None:
            values[diag.output_subscribers_key(self._state_pub.topic_name)] = self._state_pub.get_subscription_count()
        values.update({f"malformed.{k}": v for k, v in sorted(self._malformed.items())})
        values.update({f"qos_incompatible.{k}": v for k, v in sorted(self._qos_incompatible.items())})
        values.update({f"refused.{k}": v for k, v in sorted(self._refused.items())})
        if self._audio_stream is not None:
            values["input.audio_stream_restarts"] = self._audio_stream.restarts
        values.update(self._pipeline.diagnostics())
        # Data age when its reading was published: now (node clock) - window_end.
        p50, p95 = self._reading_age.percentiles(50, 95)
        values["reading.age_p50_ms"] = "n/a" if p50 is None else f"{p50 * 1e3:.0f}"
        values["reading.age_p95_ms"] = "n/a" if p95 is None else f"{p95 * 1e3:.0f}"
        since = None if self._last_frame_wall is None else time.monotonic() - self._last_frame_wall
        loss = self._frame_loss_text(values)
        if since is None:
            level, message = DiagnosticStatus.WARN, "waiting for the first frame"
        elif since > self._live["stall_timeout_s"]:
            level, message = (
                DiagnosticStatus.WARN,
                f"camera stalled: no frame for {since:.1f} s" + (f"; before that, {loss}" if loss else ""),
            )
        elif loss:
            level, message = DiagnosticStatus.WARN, loss
        else:
            level, message = DiagnosticStatus.OK, "streaming"
        # hardware_id names the sensor (the camera's frame_id) or, before the first frame, this node;
        # the model is a value ("model") like the rest.
        hardware = self._frame_id or self.get_fully_qualified_name()
        status = diagnostic_status(diag.status_name(self.get_name()), hardware, level, message, values)
        self._diag_pub.publish(diagnostic_array(self, [status]))


def main() -> None:
    run_node(AffectNode)


if __name__ == "__main__":
    main()
