"""The bridge without ROS: readings and utterances in, prompt events out.

The node feeds it EmotionState readings and user utterances and calls `tick()` from a timer;
each returned PromptEvent is one DialoguePrompt to publish (and maybe one LLM request).
`clock` is monotonic seconds, used only for what has no source stamp: staleness, heartbeat and
utterance age. Emotion timing (dwell, duration) comes from the readings' stamps.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .people import PersonSelector, Sighting
from .prompts import FacesInView, Prompt, PromptTemplates, build_prompt
from .settings import BridgeSettings
from .stabiliser import EmotionSample, Stabiliser, StableState

REASON_CHANGE = "change"  # DialoguePrompt.REASON_CHANGE
REASON_HEARTBEAT = "heartbeat"  # DialoguePrompt.REASON_HEARTBEAT

_MAX_TICK_PERIOD_S = 0.5


@dataclass(frozen=True)
class PromptEvent:
    state: StableState
    prompt: Prompt
    reason: str


class Bridge:
    def __init__(
        self, settings: BridgeSettings, templates: PromptTemplates, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.stabiliser = Stabiliser(settings.stabiliser)
        self.people = PersonSelector(
            settings.person, settings.person_margin, settings.person_switch_s, forget_s=settings.stabiliser.max_gap_s
        )
        self.other_people_readings = 0  # readings about faces the bridge does not follow
        self.faces_in_view = FacesInView()
        self._clock = clock
        self._last_reading_at = clock()  # the node's start counts as the last sign of life
        self._last_prompt_at: float | None = None
        self._utterance: tuple[float, str] | None = None  # (received at, raw text)
        self.prompts: Counter[str] = Counter()  # by reason

    @property
    def tick_period_s(self) -> float:
        """How often the node should call tick(): fine enough for the heartbeat and staleness."""
        periods = [p / 4 for p in (self.settings.heartbeat_s, self.settings.stale_s) if p > 0]
        return min([_MAX_TICK_PERIOD_S, *periods])

    def on_reading(self, reading: EmotionSample, sighting: Sighting | None = None) -> PromptEvent | None:
        """`sighting`: whose face the reading is about (several people: see bridge/people.py);
        None when the reading saw no face."""
        self._last_reading_at = self._clock()
        self.faces_in_view.observe(reading.stamp_ns, None if sighting is None else sighting.face_id)
        if sighting is not None and not self.people.observe(sighting):
            self.other_people_readings += 1
            return None
        changed = self.stabiliser.observe(reading)
        return None if changed is None else self._event(changed, REASON_CHANGE)

    def on_utterance(self, text: str) -> None:
        """Keep the latest utterance; it is quoted into the next prompts while it is fresh."""
        self._utterance = (self._clock(), text)

    def tick(self) -> PromptEvent | None:
        now = self._clock()
        stale_s = self.settings.stale_s
        if stale_s > 0 and now - self._last_reading_at >= stale_s:
            expired = self.stabiliser.expire()
            if expired is not None:
                return self._event(expired, REASON_CHANGE)
        state = self.stabiliser.state
        heartbeat_s = self.settings.heartbeat_s
        if (
            state is not None
            and heartbeat_s > 0
            and self._last_prompt_at is not None
            and now - self._last_prompt_at >= heartbeat_s
        ):
            return self._event(state, REASON_HEARTBEAT)
        return None

    def _event(self, state: StableState, reason: str) -> PromptEvent:
        self._last_prompt_at = self._clock()
        self.prompts[reason] += 1
        prompt = build_prompt(
            self.templates,
            state,
            self._fresh_utterance(),
            self.settings.max_utterance_chars,
            people_present=self.faces_in_view.count,
        )
        return PromptEvent(state, prompt, reason)

    def _fresh_utterance(self) -> str | None:
        if self._utterance is None:
            return None
        received_at, text = self._utterance
        max_age = self.settings.utterance_max_age_s
        return text if max_age == 0 or self._clock() - received_at <= max_age else None


def describe(event: PromptEvent, full: bool) -> str:
    """A readable log line (and with `full`, the prompt text) for one prompt event."""
    state = event.state
    if state.unknown_reason:
        what = f"unknown ({state.unknown_reason})"
    else:
        what = f"{state.emotion} {state.confidence:.0%}"
    line = f"prompt [{event.reason}] {what}, held {state.duration_s:.1f} s, trend: {' -> '.join(state.trend)}"
    if state.untrained:
        line += " [UNTRAINED WEIGHTS: reading means nothing]"
    if full:
        line += f"\n--- system ({event.prompt.language}) ---\n{event.prompt.system}\n--- user ---\n{event.prompt.user}"
    return line
