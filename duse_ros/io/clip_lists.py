"""Clip lists: the annotation files of video emotion datasets (DFEW, FERV39k, MAFW) and the clip
lists `duse-make-bag` takes, one implementation for training and the bag tools.

A line is `<clip> [<frame count>] <label>`, separated by spaces or commas; `#` starts a comment
and one header row is allowed. The clip is a frames folder or a video file below `root`; the label
is a class index counted from `label_base` (DFEW, MAFW: 1), or a class name or a common word for
one (`happy`, `sad`, ...: `duse_ros.classes.LABEL_ALIASES`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from duse_ros.classes import LABEL_ALIASES


class ClipListError(ValueError):
    """A clip list, or a clip it names, is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class ClipEntry:
    path: Path
    label: int
    source: str = ""  # "<annotation file>:<line>", for error messages

    @property
    def key(self) -> str:
        return str(self.path)


def _label_index(field: str, class_names: Sequence[str] | None, label_base: int) -> int | None:
    """The class index of a label field, or None when it is neither a number nor a class name."""
    try:
        return int(field) - label_base
    except ValueError:
        pass
    if class_names is None:
        return None
    name = LABEL_ALIASES.get(field.lower(), field.lower())
    return list(class_names).index(name) if name in class_names else None


def read_clip_list(
    path: str | Path,
    root: str | Path | None = None,
    label_base: int = 1,
    class_names: Sequence[str] | None = None,
    clip_format: str = "{}",
    skip_labels: Sequence[int] = (),
) -> list[ClipEntry]:
    """Parse an annotation file. `clip_format` turns the clip field into a path below `root`
    (DFEW: "{:05d}" for its numeric video names); `skip_labels` are raw label values to leave
    out (DFEW's 0 marks clips without a single label)."""
    path = Path(path)
    if not path.is_file():
        raise ClipListError(f"annotation file {path} does not exist")
    root = Path(root) if root is not None else path.parent
    entries: list[ClipEntry] = []
    header_allowed = True
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(fields) < 2:
            raise ClipListError(f"{where}: expected '<clip> [<frames>] <label>', got {line!r}")
        label = _label_index(fields[-1], class_names, label_base)
        if label is None:
            if header_allowed:
                header_allowed = False
                continue
            raise ClipListError(
                f"{where}: label {fields[-1]!r} is neither a number nor a class name"
                + (f" of {list(class_names)}" if class_names else "")
            )
        header_allowed = False
        if fields[-1].lstrip("-").isdigit() and int(fields[-1]) in skip_labels:
            continue
        if class_names is not None and not 0 <= label < len(class_names):
            raise ClipListError(
                f"{where}: label {fields[-1]} is outside {label_base}..{label_base + len(class_names) - 1}"
            )
        clip = fields[0]
        try:
            clip = clip_format.format(int(clip)) if clip.isdigit() else clip_format.format(clip)
        except (ValueError, IndexError) as e:
            raise ClipListError(f"{where}: clip name {clip!r} does not fit clip_format {clip_format!r}: {e}") from None
        entries.append(ClipEntry(root / clip, label, where))
    if not entries:
        raise ClipListError(f"{path} lists no clips")
    return entries
