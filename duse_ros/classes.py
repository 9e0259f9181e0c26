"""Emotion class sets and the text that describes each class (the one place that owns them).

Label order follows each dataset's own annotation files, so an index read from a label file
maps straight to a class here:
- DFEW (and FERV39k, whose released labels use the same seven names): 7 basic emotions.
- MAFW: the same seven in MAFW's order plus four compound ones, 11 in all.
- FER2013: the seven classes of the FER2013 image set in its label order (0 angry ... 6 neutral),
  which is the output order of the trained default model; `FER2013_NAMES` maps its names to
  duse_ros's vocabulary.

`VALENCE_AROUSAL` places each class on the valence/arousal plane; `valence_arousal` turns a class
distribution into the two numbers EmotionState and hri_msgs/Expression carry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Visible facial changes per class, used as the fixed words of DuSE's text prompts.
DESCRIPTIONS: dict[str, str] = {
    "happiness": "raised cheeks, the corners of the mouth pulled up into a smile, crow's feet by the eyes",
    "sadness": "inner eyebrows drawn up and together, drooping upper eyelids, lip corners pulled down",
    "neutral": "relaxed face muscles, eyes open normally, mouth closed and at rest",
    "anger": "eyebrows lowered and pulled together, glaring eyes, lips pressed tight or bared teeth",
    "surprise": "eyebrows raised high, eyes opened wide, jaw dropped with the mouth open",
    "disgust": "nose wrinkled, upper lip raised, cheeks pushed up and brows lowered",
    "fear": "eyebrows raised and drawn together, upper eyelids raised, lips stretched back",
    "contempt": "one corner of the mouth tightened and raised on one side of the face",
    "anxiety": "tense forehead, darting eyes, lips pressed or bitten, restless small movements",
    "helplessness": "eyebrows raised in the middle, mouth slightly open, gaze lowered, slack face",
    "disappointment": "lowered gaze, lip corners pulled down, a slight frown and a sigh",
}


@dataclass(frozen=True)
class ClassSet:
    name: str
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.classes)

    def descriptions(self) -> list[str]:
        return [DESCRIPTIONS[c] for c in self.classes]

    def index(self, label: str) -> int:
        try:
            return self.classes.index(label)
        except ValueError:
            raise KeyError(f"class {label!r} is not in class set {self.name!r} {list(self.classes)}") from None


# FER2013's label names, in its label order, and the duse_ros class each one is.
FER2013_NAMES: dict[str, str] = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}

# Words datasets use for a class, and the class they mean (label files name classes loosely).
LABEL_ALIASES = {
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "surprised": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "anxious": "anxiety",
    "helpless": "helplessness",
    "disappointed": "disappointment",
}

_BASIC7 = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")

CLASS_SETS: dict[str, ClassSet] = {
    "dfew": ClassSet("dfew", _BASIC7),
    "ferv39k": ClassSet("ferv39k", _BASIC7),
    "fer2013": ClassSet("fer2013", tuple(FER2013_NAMES.values())),
    "mafw": ClassSet(
        "mafw",
        (
            "anger",
            "disgust",
            "fear",
            "happiness",
            "neutral",
            "sadness",
            "surprise",
            "contempt",
            "anxiety",
            "helplessness",
            "disappointment",
        ),
    ),
}


def get_class_set(name: str) -> ClassSet:
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise KeyError(f"unknown class set {name!r}; known: {sorted(CLASS_SETS)}") from None


# Where each class sits on Russell's circumplex of affect (J. A. Russell, "A circumplex model of
# affect", J. Personality and Social Psychology 39(6), 1980): (valence, arousal), each -1..+1,
# pleasant/unpleasant and activated/deactivated. The coordinates are duse_ros's own placement of
# each category word in the quadrant and at the rough angle Russell's affect words take, rounded to
# 0.1; they were not fitted to data. A reading's valence and arousal are the expectation of these
# coordinates under its class probabilities (sum_c p_c * v_c): a summary DERIVED FROM CATEGORICAL
# PROBABILITIES, not a regressed valence/arousal estimate. The one table (EmotionState, Expression).
VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happiness": (0.8, 0.5),
    "sadness": (-0.7, -0.4),
    "anger": (-0.6, 0.7),
    "surprise": (0.2, 0.8),
    "disgust": (-0.7, 0.3),
    "fear": (-0.6, 0.8),
    "contempt": (-0.5, 0.2),
    "anxiety": (-0.5, 0.6),
    "helplessness": (-0.6, -0.3),
    "disappointment": (-0.6, -0.2),
}


def valence_arousal(class_names: Sequence[str], probabilities) -> tuple[float, float]:
    """(valence, arousal) of one class distribution, each in [-1, 1]; (nan, nan) when there is no
    distribution (no reading, smoothing off) or a class has no place in VALENCE_AROUSAL."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if p.size == 0 or any(c not in VALENCE_AROUSAL for c in class_names):
        return math.nan, math.nan
    if p.size != len(class_names):
        raise ValueError(f"{p.size} probabilities for {len(class_names)} classes")
    va = np.array([VALENCE_AROUSAL[c] for c in class_names])  # (C, 2)
    valence, arousal = np.clip(p @ va, -1.0, 1.0)
    return float(valence), float(arousal)
