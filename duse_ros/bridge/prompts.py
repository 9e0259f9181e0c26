"""Prompt templates (YAML, one file per language) and the prompts built from a stable state.

Templates are trusted configuration; the user's utterance is not. The utterance is cleaned
(control and invisible format characters dropped, whitespace collapsed, length-limited), quoted
as a JSON string and put into the user prompt only. Placeholders are filled in a single pass, so
text inside a filled value (e.g. an utterance containing "{emotion}") is never expanded, and the
bridge itself never acts on what the utterance says.

A template file holds (see config/prompts_en.yaml):
    language: en
    system_known / system_unknown: system prompt when the emotion is known / unknown
    user_with_utterance / user_without_utterance: user prompt with / without recent speech
    untrained_note: text for {untrained_note} when the reading comes from random weights
    unknown_reasons: {no_face: ..., low_confidence: ..., untrained: ..., no_readings: ...}
    emotion_names: {happiness: ..., ...}   (optional; labels not listed are used as they are)
    trend_separator: " -> "                (optional)
    no_value: "n/a"                        (optional; {valence}/{arousal} when the readings carry none)
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..share import share_dirs
from .stabiliser import UNKNOWN, UNKNOWN_REASONS, StableState

_SYSTEM_FIELDS = frozenset(
    {"emotion", "confidence_pct", "duration_s", "trend", "untrained_note", "unknown_reason", "people_present"}
    | {"valence", "arousal"}  # signed, -1..+1, derived from the class probabilities
)
_USER_FIELDS = frozenset({"emotion", "utterance"})
# template key -> (placeholders it may use, placeholders it must use)
_TEMPLATES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # {untrained_note} is required: a reading from random weights must never be presented silently.
    "system_known": (_SYSTEM_FIELDS, frozenset({"untrained_note"})),
    "system_unknown": (_SYSTEM_FIELDS, frozenset({"untrained_note"})),
    "user_with_utterance": (_USER_FIELDS, frozenset({"utterance"})),
    "user_without_utterance": (_USER_FIELDS - {"utterance"}, frozenset()),
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
_ELLIPSIS = "\u2026"


class TemplateError(ValueError):
    """A prompt template file is missing, unreadable or incomplete; the message names file and key."""


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    language: str


@dataclass(frozen=True)
class PromptTemplates:
    path: Path
    language: str
    templates: dict[str, str]  # keys of _TEMPLATES
    untrained_note: str
    unknown_reasons: dict[str, str]  # every one of UNKNOWN_REASONS
    emotion_names: dict[str, str]
    trend_separator: str
    no_value: str = "n/a"

    def signed(self, value: float) -> str:
        """{valence}/{arousal} text: '+0.62', or no_value when the readings carry none."""
        return self.no_value if math.isnan(value) else f"{value:+.2f}"

    def emotion_name(self, label: str) -> str:
        return self.emotion_names.get(label, label)

    def trend_text(self, trend: tuple[str, ...]) -> str:
        return self.trend_separator.join(self.emotion_name(label) for label in trend)


def load_templates(path: str | Path) -> PromptTemplates:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: cannot read prompt templates: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping of template keys, got {type(data).__name__}")

    def text(key: str, required: bool = True, default: str = "") -> str:
        value = data.get(key, None if required else default)
        if not isinstance(value, str):
            raise TemplateError(f"{path}: key {key!r} must be a string, got {value!r}")
        return value

    def mapping(key: str, required: bool) -> dict[str, str]:
        value = data.get(key, None if required else {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise TemplateError(f"{path}: key {key!r} must map names to strings, got {value!r}")
        return value

    templates = {key: text(key) for key in _TEMPLATES}
    for key, (allowed, required) in _TEMPLATES.items():
        used = set(_PLACEHOLDER.findall(templates[key]))
        if used - allowed:
            raise TemplateError(
                f"{path}: key {key!r} uses unknown placeholders {sorted(used - allowed)}; allowed: {sorted(allowed)}"
            )
        if required - used:
            raise TemplateError(f"{path}: key {key!r} must contain {sorted('{' + r + '}' for r in required - used)}")
    unknown_reasons = mapping("unknown_reasons", required=True)
    missing = [r for r in UNKNOWN_REASONS if r not in unknown_reasons]
    if missing:
        raise TemplateError(f"{path}: key 'unknown_reasons' lacks {missing}")
    language = text("language")
    if not language:
        raise TemplateError(f"{path}: key 'language' must not be empty")
    return PromptTemplates(
        path=path,
        language=language,
        templates=templates,
        untrained_note=text("untrained_note"),
        unknown_reasons=unknown_reasons,
        emotion_names=mapping("emotion_names", required=False),
        trend_separator=text("trend_separator", required=False, default=" -> "),
        no_value=text("no_value", required=False, default="n/a"),
    )


def sanitize_utterance(text: str, max_chars: int) -> str:
    """The utterance as plain single-line text of at most `max_chars` characters."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    kept = []
    for ch in unicodedata.normalize("NFC", text):
        if ch.isspace():
            kept.append(" ")
        # Cc: terminal escapes, NUL...; Cf: bidi overrides and zero-width characters that can hide
        # text from a human reading the log; Cs/Co/Cn: surrogates, private use, unassigned.
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(ch)
    cleaned = " ".join("".join(kept).split())
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars - 1].rstrip() + _ELLIPSIS
    return cleaned


class FacesInView:
    """How many faces the newest window shows ({people_present}). A window's readings (one per face)
    share its end stamp and arrive one by one, so while a window is still arriving the count is the
    larger of it and the window before. A reading without a face (None) is a window without any: the
    count drops to 0 at once, never naming a face that has left."""

    def __init__(self) -> None:
        self._stamp_ns: int | None = None
        self._faces: set[str] = set()
        self._previous: set[str] = set()

    def observe(self, stamp_ns: int, face_id: str | None) -> None:
        """`face_id`: the reading's face ("" when the face has no id), None when it saw no face."""
        if face_id is None:
            self._stamp_ns, self._faces, self._previous = stamp_ns, set(), set()
            return
        if stamp_ns != self._stamp_ns:
            self._stamp_ns, self._faces, self._previous = stamp_ns, set(), self._faces
        self._faces.add(face_id)

    @property
    def count(self) -> int:
        return max(len(self._faces), len(self._previous)) if self._faces else 0


def build_prompt(
    templates: PromptTemplates,
    state: StableState,
    utterance: str | None,
    max_utterance_chars: int,
    people_present: int = 1,
) -> Prompt:
    """`utterance`: the latest user speech, raw (None or blank: none). `people_present`: faces the
    camera sees now ({people_present} in the system templates)."""
    known = state.emotion != UNKNOWN
    values = {
        "emotion": templates.emotion_name(state.emotion),
        "confidence_pct": str(round(100 * state.confidence)),
        "duration_s": f"{state.duration_s:.0f}",
        "trend": templates.trend_text(state.trend),
        "untrained_note": templates.untrained_note if state.untrained else "",
        "unknown_reason": "" if known else templates.unknown_reasons[state.unknown_reason],
        "people_present": str(int(people_present)),
        "valence": templates.signed(state.valence),
        "arousal": templates.signed(state.arousal),
    }
    system = _fill(templates.templates["system_known" if known else "system_unknown"], values)
    user_values = {"emotion": values["emotion"]}
    cleaned = sanitize_utterance(utterance, max_utterance_chars) if utterance else ""
    if cleaned:
        # Quoted as a JSON string: inner quotes and backslashes are escaped, so the utterance
        # cannot end the quote early and pass for the template's own words.
        user_values["utterance"] = json.dumps(cleaned, ensure_ascii=False)
        user = _fill(templates.templates["user_with_utterance"], user_values)
    else:
        user = _fill(templates.templates["user_without_utterance"], user_values)
    return Prompt(system=system, user=user, language=templates.language)


def _fill(template: str, values: dict[str, str]) -> str:
    # One pass: the values are never scanned for placeholders themselves.
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    # An empty value (e.g. no untrained note) must not leave a run of blank lines behind.
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text).strip()


def candidate_config_dirs() -> list[Path]:
    """Where default config files are looked for, in order: the source tree this module was
    imported from (a checkout, or a symlink install), the ament share directory of the installed
    package (`ros2 run`), and `<prefix>/share/duse_ros/config` of this interpreter (a venv)."""
    return [root / "config" for root in share_dirs()]


def resolve_config_file(name: str) -> Path:
    """An existing path as given (absolute, or relative to the working directory), else `name`
    looked up in candidate_config_dirs()."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    tried = [given]
    if not given.is_absolute():
        for directory in candidate_config_dirs():
            candidate = directory / name
            if candidate.is_file():
                return candidate
            tried.append(candidate)
    raise TemplateError(f"config file {name!r} not found; tried {[str(p) for p in tried]}")


def template_file_for(language: str, template_file: str) -> Path:
    """The template file to load: `template_file` when set, else prompts_<language>.yaml."""
    return resolve_config_file(template_file or f"prompts_{language}.yaml")
