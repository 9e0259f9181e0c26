"""The names affect_node uses on /diagnostics, defined once for the node and for everything that
reads them (the demo, the bag tools, tests and benchmarks). Keys are `<group>.<counter>` strings;
the pipeline's own groups (`window.`, `inference.`, `face.`, `pipeline.`) come from its stages."""

from __future__ import annotations

from collections.abc import Iterable

STATUS_SUFFIX = "affect pipeline"

IMAGE_FPS = "input.image_fps"
IMAGE_SOURCE_FPS = "input.image_source_fps"  # the camera's rate by its frames' stamps
IMAGE_ARRIVAL_FRACTION = "input.image_arrival_fraction"  # share of the camera's frames that arrive
AUDIO_CHUNKS_PER_S = "input.audio_chunks_per_s"
FRAMES_IN = "window.frames_in"
GAP_RESETS = "window.gap_resets"
DROPPED_QUEUE_FULL = "inference.dropped_queue_full"
COMPLETED = "inference.completed"


def status_name(node_name: str) -> str:
    """The status name of the affect pipeline of the node called `node_name`."""
    return f"{node_name}: {STATUS_SUFFIX}"


def is_affect_status(name: str) -> bool:
    return name.endswith(STATUS_SUFFIX)


def input_publishers_key(topic: str) -> str:
    """How many publishers the node's subscription on `topic` (as the node resolves it) matched."""
    return f"input.{topic.lstrip('/')}.publishers"


def output_subscribers_key(topic: str) -> str:
    """How many subscriptions the node's EmotionState publisher on `topic` has matched (the
    readers that will get the next reading: a bridge, a recorder)."""
    return f"output.{topic.lstrip('/')}.subscribers"


def is_input_publishers_key(key: str) -> bool:
    return key.startswith("input.") and key.endswith(".publishers")


def affect_values(statuses: Iterable) -> dict[str, str] | None:
    """The key/values of the last affect-pipeline status among `statuses` (DiagnosticStatus-like)."""
    found = None
    for status in statuses:
        if is_affect_status(status.name):
            found = {kv.key: kv.value for kv in status.values}
    return found
