"""Every parameter of llm_bridge_node: name, default and meaning, in one place.

config/llm_bridge.yaml holds the same defaults (a test checks that they agree); the node declares
these parameters and hands their values to BridgeSettings.from_parameters, which validates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..params import ParameterSpec, check_all
from .llm_client import LLMConfig
from .stabiliser import StabiliserConfig

NODE_NAME = "llm_bridge_node"

LOG_PROMPTS = ("off", "summary", "full")
RELIABILITY = ("reliable", "best_effort")
UNTRAINED_READINGS = ("mark", "unknown")
# duse: EmotionState on emotion_topic; ros4hri: hri_msgs/Expression on /humans/faces/<id>/expression
# for the faces on /humans/faces/tracked (any ROS4HRI expression provider; needs hri_msgs).
INPUTS = ("duse", "ros4hri")


P = ParameterSpec
_RO = {"read_only": True}  # needs a restart: topics, templates and the endpoint are set up once

PARAMETERS: tuple[ParameterSpec, ...] = (
    P(
        "input",
        "duse",
        "readings from: duse (EmotionState on emotion_topic) | ros4hri (hri_msgs/Expression of the "
        "faces on /humans/faces/tracked; needs hri_msgs)",
        choices=INPUTS,
        **_RO,
    ),
    P("emotion_topic", "emotion_state", "EmotionState input topic", **_RO),
    P(
        "emotion_reliability",
        "reliable",
        "QoS reliability of the EmotionState subscription",
        choices=RELIABILITY,
        **_RO,
    ),
    P("prompt_topic", "dialogue_prompt", "DialoguePrompt output topic", **_RO),
    P(
        "utterance_topic",
        "user_utterance",
        "std_msgs/String input with the user's latest speech; empty: not subscribed",
        **_RO,
    ),
    P("reply_topic", "llm_reply", "std_msgs/String output with the LLM's reply", **_RO),
    P("exchange_topic", "llm_exchange", "LLMExchange output: each request and its outcome", **_RO),
    P("language", "en", "template language; picks prompts_<language>.yaml when template_file is empty", **_RO),
    P(
        "template_file",
        "",
        "prompt template YAML: a path, or a file name looked up in the package's config dirs; "
        "empty: prompts_<language>.yaml",
        **_RO,
    ),
    P("person", "largest", "whom to follow when several faces are read: largest | most_central | a face id", **_RO),
    P("person_margin", 0.25, "another face must score this much better (relative) to take over", 0.0, 100.0, **_RO),
    P("person_switch_s", 1.5, "... for this long (EmotionState stamps) before the bridge switches", 0.0, 3600.0, **_RO),
    P("use_smoothed", True, "use EmotionState's smoothed label and confidence when the affect node smooths", live=True),
    P("min_confidence", 0.4, "readings below this count as an unknown emotion", 0.0, 1.0, live=True),
    P(
        "hysteresis",
        0.1,
        "a label other than the current one needs min_confidence + hysteresis to count",
        0.0,
        1.0,
        live=True,
    ),
    P(
        "dwell_s",
        1.5,
        "seconds (EmotionState stamps) a new emotion must hold before it is reported",
        0.0,
        3600.0,
        live=True,
    ),
    P(
        "max_gap_s",
        2.0,
        "a gap in EmotionState stamps longer than this restarts dwell and duration",
        0.001,
        3600.0,
        live=True,
    ),
    P(
        "stale_s",
        5.0,
        "no EmotionState for this long (node clock): the emotion becomes unknown; 0: never",
        0.0,
        86400.0,
        live=True,
    ),
    P("trend_length", 4, "stable emotions listed in the trend, newest last", 1, 100, **_RO),
    P(
        "untrained_readings",
        "mark",
        "readings from untrained (random) weights: mark (say so in the prompt) or unknown (ignore them)",
        choices=UNTRAINED_READINGS,
        live=True,
    ),
    P(
        "heartbeat_s",
        10.0,
        "re-publish the current prompt after this long without a change; 0: never",
        0.0,
        86400.0,
        live=True,
    ),
    P("max_utterance_chars", 300, "longer utterances are cut to this many characters", 1, 100000, live=True),
    P(
        "utterance_max_age_s",
        30.0,
        "an utterance older than this is left out of prompts; 0: no limit",
        0.0,
        86400.0,
        live=True,
    ),
    P("log_prompts", "summary", "log each published prompt", choices=LOG_PROMPTS, live=True),
    P("diagnostics_period_s", 1.0, "period of the /diagnostics status", 0.05, 3600.0, **_RO),
    P("llm.base_url", "", "OpenAI-compatible base URL ending in /v1; empty: no LLM calls", **_RO),
    P("llm.model", "", "model name the endpoint serves; empty: left out of the request", **_RO),
    P(
        "llm.api_key_env",
        "DUSE_LLM_API_KEY",
        "name of the environment variable holding the API key; empty or unset: no key",
        **_RO,
    ),
    P("llm.timeout_s", 10.0, "seconds per request attempt", 0.01, 3600.0, **_RO),
    P("llm.max_retries", 2, "retries after a timeout, connection error or HTTP 408/429/5xx", 0, 100, **_RO),
    P("llm.backoff_s", 0.5, "wait before the first retry, doubled for each further one", 0.0, 60.0, **_RO),
    P("llm.max_tokens", 128, "max_tokens of each request", 1, 1000000, **_RO),
    P("llm.temperature", 0.7, "sampling temperature of each request", 0.0, 2.0, **_RO),
    P("llm.call_on_heartbeat", False, "also send heartbeat prompts to the LLM (default: changes only)", live=True),
)

DEFAULTS: dict[str, bool | int | float | str] = {p.name: p.default for p in PARAMETERS}


@dataclass(frozen=True)
class BridgeSettings:
    input: str
    emotion_topic: str
    emotion_reliability: str
    prompt_topic: str
    utterance_topic: str
    reply_topic: str
    exchange_topic: str
    language: str
    template_file: str
    use_smoothed: bool
    person: str
    person_margin: float
    person_switch_s: float
    stale_s: float
    heartbeat_s: float
    max_utterance_chars: int
    utterance_max_age_s: float
    log_prompts: str
    diagnostics_period_s: float
    call_llm_on_heartbeat: bool
    stabiliser: StabiliserConfig
    llm: LLMConfig

    @classmethod
    def from_parameters(cls, values: Mapping[str, object]) -> BridgeSettings:
        """Validated settings; ValueError names the parameter at fault."""
        v = check_all(PARAMETERS, values)  # types, ranges and choices, naming the parameter
        if v["diagnostics_period_s"] <= 0:
            raise ValueError(f"parameter 'diagnostics_period_s' must be > 0, got {v['diagnostics_period_s']}")
        if v["max_utterance_chars"] < 1:
            raise ValueError(f"parameter 'max_utterance_chars' must be >= 1, got {v['max_utterance_chars']}")
        for name in ("emotion_topic", "prompt_topic", "reply_topic", "exchange_topic", "language", "person"):
            if not v[name]:
                raise ValueError(f"parameter {name!r} must not be empty")
        return cls(
            input=v["input"],
            emotion_topic=v["emotion_topic"],
            emotion_reliability=v["emotion_reliability"],
            prompt_topic=v["prompt_topic"],
            utterance_topic=v["utterance_topic"],
            reply_topic=v["reply_topic"],
            exchange_topic=v["exchange_topic"],
            language=v["language"],
            template_file=v["template_file"],
            use_smoothed=v["use_smoothed"],
            person=v["person"],
            person_margin=float(v["person_margin"]),
            person_switch_s=float(v["person_switch_s"]),
            stale_s=float(v["stale_s"]),
            heartbeat_s=float(v["heartbeat_s"]),
            max_utterance_chars=v["max_utterance_chars"],
            utterance_max_age_s=float(v["utterance_max_age_s"]),
            log_prompts=v["log_prompts"],
            diagnostics_period_s=float(v["diagnostics_period_s"]),
            call_llm_on_heartbeat=v["llm.call_on_heartbeat"],
            # The configs' own errors name the parameter (their fields carry the parameter names).
            stabiliser=StabiliserConfig(
                min_confidence=float(v["min_confidence"]),
                hysteresis=float(v["hysteresis"]),
                dwell_s=float(v["dwell_s"]),
                max_gap_s=float(v["max_gap_s"]),
                trend_length=v["trend_length"],
                untrained_as_unknown=v["untrained_readings"] == "unknown",
            ),
            llm=LLMConfig(
                base_url=v["llm.base_url"].strip(),
                model=v["llm.model"],
                api_key_env=v["llm.api_key_env"],
                timeout_s=float(v["llm.timeout_s"]),
                max_retries=v["llm.max_retries"],
                backoff_s=float(v["llm.backoff_s"]),
                max_tokens=v["llm.max_tokens"],
                temperature=float(v["llm.temperature"]),
            ),
        )
