"""Node parameter tables, without ROS: one `ParameterSpec` per parameter, and the checks a node
applies when a value is set (at start-up, from a params file, or live with `ros2 param set`).

Each node keeps one tuple of specs (duse_ros/affect/settings.py, duse_ros/bridge/settings.py);
nodes/common.py turns a spec into a ParameterDescriptor (description, range, choices) and
rejects a value with the reason `check` gives. Adding a parameter is one line in a table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Value = bool | int | float | str


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Value
    description: str
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    choices: tuple[str, ...] = ()  # allowed values of a string
    live: bool = False  # applied at once when set while running
    read_only: bool = False  # fixed at start-up (no later change can take effect)

    def __post_init__(self) -> None:
        reason = self.check(self.default)
        if reason:
            raise ValueError(f"default of parameter {self.name!r}: {reason}")

    def full_description(self) -> str:
        """The description with the allowed values and when a change takes effect."""
        text = self.description
        if self.choices:
            text += f" (one of: {', '.join(self.choices)})"
        if self.read_only:
            text += " [set at start-up only]"
        elif not self.live:
            text += " [takes effect at configure]"
        return text

    def check(self, value: object) -> str:
        """'' when `value` is acceptable, else why not (naming the parameter)."""
        if not _same_kind(value, self.default):
            return f"parameter {self.name!r} must be {type(self.default).__name__}, got {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return f"parameter {self.name!r} must be finite, got {value!r}"
            if self.low is not None and value < self.low:
                return f"parameter {self.name!r} must be >= {self.low:g}, got {value!r}"
            if self.high is not None and value > self.high:
                return f"parameter {self.name!r} must be <= {self.high:g}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"parameter {self.name!r} must be one of {', '.join(self.choices)}; got {value!r}"
        return ""


def defaults(specs: Iterable[ParameterSpec]) -> dict[str, Value]:
    return {s.name: s.default for s in specs}


def check_all(specs: Iterable[ParameterSpec], values: Mapping[str, object]) -> dict[str, Value]:
    """Defaults overlaid with `values`, each checked; ValueError names the first bad one."""
    table = {s.name: s for s in specs}
    unknown = set(values) - set(table)
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)}")
    merged = {name: values.get(name, spec.default) for name, spec in table.items()}
    for name, spec in table.items():
        reason = spec.check(merged[name])
        if reason:
            raise ValueError(reason)
        if isinstance(spec.default, float):
            merged[name] = float(merged[name])
    return merged


def _same_kind(value: object, default: object) -> bool:
    # A float parameter takes an int (`-p dwell_s:=2`); bool is never taken for a number.
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
