"""llm_bridge_node: EmotionState (or, with input ros4hri, hri_msgs/Expression) in, DialoguePrompt
out, and optionally an LLM reply.

    ros2 run duse_ros llm_bridge_node --ros-args -p llm.base_url:=http://127.0.0.1:8000/v1
    python -m duse_ros.nodes.llm_bridge_node --ros-args -p log_prompts:=full

The logic lives in duse_ros.bridge (ROS-free); this file converts messages and publishes. LLM
requests run on the bridge's worker thread, so a slow or dead endpoint never holds up the
EmotionState subscription; replies and exchanges are published from that thread.
"""

from __future__ import annotations

from duse_ros.nodes import startup

if __name__ == "__main__":  # python -m: a stop signal during the imports below is noted, not raised
    startup.hold_signals()

import sys
from collections import Counter

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String

from duse_ros.bridge.core import Bridge, PromptEvent, describe
from duse_ros.bridge.llm_client import ChatClient, EndpointStats, log_excerpt, public_url
from duse_ros.bridge.people import Sighting, face_score
from duse_ros.bridge.prompts import load_templates, template_file_for
from duse_ros.bridge.settings import NODE_NAME, PARAMETERS, BridgeSettings
from duse_ros.bridge.stabiliser import EmotionSample
from duse_ros.bridge.worker import LatestOnlyWorker
from duse_ros.msg import DialoguePrompt, EmotionState, LLMExchange
from duse_ros.nodes.common import (
    check_parameter_changes,
    declare_table,
    diagnostic_array,
    diagnostic_status,
    ns_to_stamp,
    run_node,
    seconds_to_duration,
    sensor_qos,
    stamp_to_ns,
)
from duse_ros.nodes.hri_io import HRI_PACKAGE_HINT, HriExpressionInput, import_hri_msgs, reading_from_expression

BY_NAME = {spec.name: spec for spec in PARAMETERS}
_QUEUE_DEPTH = 10
_WORKER_JOIN_S = 1.0
_LOG_THROTTLE_S = 5.0


class ConfigError(ValueError):
    """A parameter or the template file is unusable; the node cannot start."""


def reading_from_msg(msg: EmotionState, use_smoothed: bool) -> EmotionSample:
    """ValueError when the message cannot be a reading (e.g. confidence out of range)."""
    smoothed = use_smoothed and msg.smoothing_count > 0 and msg.smoothed_label
    label, confidence = (msg.smoothed_label, msg.smoothed_confidence) if smoothed else (msg.label, msg.confidence)
    valence, arousal = (msg.smoothed_valence, msg.smoothed_arousal) if smoothed else (msg.valence, msg.arousal)
    stamp_ns = stamp_to_ns(msg.window_end) or stamp_to_ns(msg.header.stamp)
    return EmotionSample(
        stamp_ns=stamp_ns,
        label=label,
        confidence=float(confidence),
        has_reading=msg.modality != EmotionState.MODALITY_NONE,
        untrained=msg.untrained,
        frame_id=msg.header.frame_id,
        valence=float(valence),
        arousal=float(arousal),
    )


def sighting_from_msg(msg: EmotionState, rule: str) -> Sighting:
    """Whose face the reading is about, scored by the person rule (largest when following an id)."""
    roi = msg.face_roi
    score = face_score(
        rule or "largest", (roi.x_offset, roi.y_offset, roi.width, roi.height), (msg.image_width, msg.image_height)
    )
    return Sighting(msg.face_id, stamp_to_ns(msg.window_end) or stamp_to_ns(msg.header.stamp), score)


class LLMBridgeNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        errors = declare_table(self, PARAMETERS)
        if errors:
            raise ConfigError("; ".join(errors.values()))
        try:
            self.settings = settings = BridgeSettings.from_parameters(self._values())
            templates = load_templates(template_file_for(settings.language, settings.template_file))
        except ValueError as exc:  # TemplateError is one too
            raise ConfigError(str(exc)) from None
        self.bridge = Bridge(settings, templates)
        self.malformed = 0
        self._hri_msgs = None
        if settings.input == "ros4hri":
            self._hri_msgs = import_hri_msgs()
            if self._hri_msgs is None:
                raise ConfigError(f"input 'ros4hri' needs hri_msgs: {HRI_PACKAGE_HINT}")
        # ros4hri input: unmapped names, unstamped messages. Counted from 0: an empty Counter's
        # update() stores the first reading's flags as bools, and diagnostics then said 'False'.
        self.expressions = Counter(unmapped=0, unstamped=0)

        # Transient local: a dialogue manager that starts later still gets the current prompt.
        prompt_qos = QoSProfile(depth=_QUEUE_DEPTH, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._prompt_pub = self.create_publisher(DialoguePrompt, settings.prompt_topic, prompt_qos)
        self._reply_pub = self.create_publisher(String, settings.reply_topic, _QUEUE_DEPTH)
        self._exchange_pub = self.create_publisher(LLMExchange, settings.exchange_topic, _QUEUE_DEPTH)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", _QUEUE_DEPTH)
        self._hri_in = None
        if self._hri_msgs is not None:
            self._hri_in = HriExpressionInput(
                self, self._hri_msgs, self._on_expression, settings.emotion_reliability, _QUEUE_DEPTH
            )
        else:
            self.create_subscription(
                EmotionState,
                settings.emotion_topic,
                self._on_emotion,
                sensor_qos(settings.emotion_reliability, _QUEUE_DEPTH),
            )
        if settings.utterance_topic:
            self.create_subscription(String, settings.utterance_topic, self._on_utterance, _QUEUE_DEPTH)
        self._tick_timer = self.create_timer(self.bridge.tick_period_s, self._on_tick)
        self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self.llm_stats = EndpointStats(enabled=settings.llm.enabled)
        self._client: ChatClient | None = None
        self._worker: LatestOnlyWorker | None = None
        if settings.llm.enabled:
            self._client = ChatClient(settings.llm)
            self._worker = LatestOnlyWorker(self._call_llm, self._on_worker_error, name="llm-request")
            key_note = "with an API key" if self._client.has_api_key else "without an API key"
            self.get_logger().info(
                f"LLM endpoint {public_url(settings.llm.base_url)} model "
                f"{settings.llm.model or '(server default)'}, {key_note}"
            )
        else:
            self.get_logger().info("no llm.base_url: publishing prompts only, no LLM calls")
        source = (
            "hri_msgs/Expression of the faces on /humans/faces/tracked"
            if self._hri_in is not None
            else f"EmotionState from '{self.resolve_topic_name(settings.emotion_topic)}'"
        )
        self.get_logger().info(f"templates {templates.path} ({templates.language}); {source}")

    def _values(self, changes: dict | None = None) -> dict:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS} | (changes or {})

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Each value against the table, then the whole set as settings (min_confidence +
        hysteresis <= 1, ...); read-only ones never reach here (rclpy refuses them)."""
        result = check_parameter_changes(BY_NAME, params)
        if result.successful:
            try:
                BridgeSettings.from_parameters(self._values({p.name: p.value for p in params}))
            except ValueError as exc:
                result = SetParametersResult(successful=False, reason=str(exc))
        if not result.successful:
            self.get_logger().warning(f"parameter change refused: {result.reason}")
        return result

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Live parameters (stabilisation, heartbeat, staleness, utterances, logging) apply at once."""
        self.settings = settings = BridgeSettings.from_parameters(self._values())
        self.bridge.settings = settings
        self.bridge.stabiliser.config = settings.stabiliser
        self.destroy_timer(self._tick_timer)
        self._tick_timer = self.create_timer(self.bridge.tick_period_s, self._on_tick)
        self.get_logger().info("applied " + ", ".join(f"{p.name}={p.value!r}" for p in params))

    def close(self) -> None:
        """Stop the LLM worker (run_node calls this before destroy_node). A request still hanging
        is left to its daemon thread, which publishes and logs nothing once stopping."""
        if self._worker is not None and not self._worker.stop(_WORKER_JOIN_S):
            self.get_logger().info("stopping with an LLM request in flight: not waiting for its answer")

    def _on_emotion(self, msg: EmotionState) -> None:
        try:
            reading = reading_from_msg(msg, self.settings.use_smoothed)
        except ValueError as exc:
            self.malformed += 1
            self.get_logger().warning(f"malformed EmotionState dropped: {exc}", throttle_duration_sec=_LOG_THROTTLE_S)
            return
        sighting = sighting_from_msg(msg, self.bridge.people.rule) if msg.face_found else None
        event = self.bridge.on_reading(reading, sighting)
        if event is not None:
            self._publish_prompt(event)

    def _on_expression(self, face_id: str, msg, roi) -> None:
        try:
            got = reading_from_expression(
                msg, face_id, roi, self.bridge.people.rule, self.get_clock().now().nanoseconds
            )
        except ValueError as exc:
            self.malformed += 1
            self.get_logger().warning(f"malformed Expression dropped: {exc}", throttle_duration_sec=_LOG_THROTTLE_S)
            return
        self.expressions.update(unmapped=got.unmapped, unstamped=got.unstamped)
        if got.unstamped:
            self.get_logger().warning(
                f"Expression of face {face_id} has no header stamp: using its arrival time "
                f"({self.expressions['unstamped']} so far)",
                throttle_duration_sec=_LOG_THROTTLE_S,
            )
        event = self.bridge.on_reading(got.sample, got.sighting)
        if event is not None:
            self._publish_prompt(event)

    def _on_utterance(self, msg: String) -> None:
        self.bridge.on_utterance(msg.data)

    def _on_tick(self) -> None:
        event = self.bridge.tick()
        if event is not None:
            self._publish_prompt(event)

    def _publish_prompt(self, event: PromptEvent) -> None:
        state, prompt = event.state, event.prompt
        msg = DialoguePrompt()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = state.frame_id
        msg.emotion = state.emotion
        msg.confidence = state.confidence
        msg.emotion_duration = seconds_to_duration(state.duration_s)
        msg.emotion_stamp = ns_to_stamp(state.latest_ns)
        msg.trend = " -> ".join(state.trend)
        msg.system_prompt = prompt.system
        msg.user_prompt = prompt.user
        msg.language = prompt.language
        msg.reason = event.reason
        self._prompt_pub.publish(msg)
        if self.settings.log_prompts != "off":
            self.get_logger().info(describe(event, full=self.settings.log_prompts == "full"))
        wants_llm = event.reason == DialoguePrompt.REASON_CHANGE or self.settings.call_llm_on_heartbeat
        if self._worker is not None and wants_llm and self._worker.submit(msg) is not None:
            self.llm_stats.record_superseded()

    def _call_llm(self, prompt: DialoguePrompt) -> None:
        """On the worker thread: one request (with retries), then publish its outcome."""
        worker = self._worker
        result = self._client.complete(
            prompt.system_prompt,
            prompt.user_prompt,
            keep_trying=lambda: not worker.has_pending(),
            cancel=worker.stop_event,
        )
        if self._stopping():  # nobody left to tell
            return
        self.llm_stats.record(result)
        exchange = LLMExchange()
        exchange.header.stamp = self.get_clock().now().to_msg()
        exchange.header.frame_id = prompt.header.frame_id
        exchange.prompt = prompt
        exchange.base_url = public_url(self.settings.llm.base_url)
        exchange.model = self.settings.llm.model
        exchange.success = result.success
        exchange.reply = result.reply
        exchange.error = result.error
        exchange.attempts = result.attempts
        exchange.latency = seconds_to_duration(result.latency_s)
        try:
            self._exchange_pub.publish(exchange)
            if result.success:
                self._reply_pub.publish(String(data=result.reply))
        except Exception as exc:  # noqa: BLE001 - counted and said; the next request may well publish
            detail = f"{type(exc).__name__}: {log_excerpt(self._client.redact(str(exc)))}"
            self.llm_stats.record_unpublished(f"exchange not published: {detail}")
            self.get_logger().error(
                f"LLM exchange not published ({self.llm_stats.unpublished} so far): {detail}",
                throttle_duration_sec=_LOG_THROTTLE_S,
            )
            return
        # Replies and errors come from outside: logged as a bounded, escaped excerpt, never whole.
        if result.success:
            repaired = f" ({result.repaired} unencodable characters replaced)" if result.repaired else ""
            self.get_logger().info(f"LLM reply ({result.latency_s:.2f} s){repaired}: {log_excerpt(result.reply)}")
        else:
            self.get_logger().warning(
                f"LLM request failed after {result.attempts} attempt(s): {log_excerpt(result.error)}",
                throttle_duration_sec=_LOG_THROTTLE_S,
            )

    def _stopping(self) -> bool:
        """The node is shutting down: close() stopped the worker, or a signal shut the context."""
        return (self._worker is not None and self._worker.stop_event.is_set()) or not self.context.ok()

    def _on_worker_error(self, exc: BaseException) -> None:
        if self._stopping():
            return  # publishing after shutdown began fails with "context is invalid": that is the stop
        self.get_logger().error(f"LLM worker error: {self._client.redact(repr(exc))}")

    def _publish_diagnostics(self) -> None:
        stabiliser, llm = self.bridge.stabiliser, self.llm_stats.snapshot()
        state = stabiliser.state
        values = {
            "stable_emotion": "none yet" if state is None else state.emotion,
            "emotion_states_received": stabiliser.readings + self.bridge.other_people_readings + self.malformed,
            "person_followed": self.bridge.people.followed or "none yet",
            "people_present": self.bridge.people.present(),
            "person_switches": self.bridge.people.switches,
            "readings_about_other_people": self.bridge.other_people_readings,
            "emotion_states_malformed": self.malformed,
            "input": self.settings.input,
            **(
                {
                    "faces_tracked": len(self._hri_in.tracked),
                    "expressions_unmapped": self.expressions["unmapped"],
                    "expressions_unstamped": self.expressions["unstamped"],
                }
                if self._hri_in is not None
                else {}
            ),
            "stamps_backwards": stabiliser.stamps_backwards,
            "stamp_gaps": stabiliser.gaps,
            "prompts_published": sum(self.bridge.prompts.values()),
            "prompts_change": self.bridge.prompts[DialoguePrompt.REASON_CHANGE],
            "prompts_heartbeat": self.bridge.prompts[DialoguePrompt.REASON_HEARTBEAT],
            **llm,
        }
        if not self.settings.llm.enabled:
            level, message = DiagnosticStatus.OK, "prompts only (no llm.base_url)"
        elif self.llm_stats.healthy:
            level, message = DiagnosticStatus.OK, f"LLM endpoint {llm['llm_endpoint_state']}"
        else:
            level, message = DiagnosticStatus.WARN, f"LLM endpoint {llm['llm_endpoint_state']}: {llm['llm_last_error']}"
        status = diagnostic_status(
            f"{self.get_fully_qualified_name()}: LLM bridge",
            public_url(self.settings.llm.base_url),
            level,
            message,
            values,
        )
        self._diag_pub.publish(diagnostic_array(self, [status]))


def main() -> None:
    try:
        run_node(LLMBridgeNode)
    except ConfigError as exc:
        sys.exit(f"[FATAL] [{NODE_NAME}]: {exc}")


if __name__ == "__main__":
    main()
