"""Where each dataset keeps its annotation files and clips, and how its lines read.

A layout is a dict of paths relative to the dataset directory (`--data`), with `{fold}` for
fold-numbered files. Every key can be overridden from a recipe's `data:` section or the command
line (`--set data.train_ann=...`), for copies that were unpacked or re-extracted differently.

- dfew: the DFEW release. `EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`,
  rows `video_name,label` with labels 1..7 = happy, sad, neutral, angry, surprise, disgust, fear
  (0 marks clips without a single label: left out); frames in `Clip/clip_224x224/<5-digit id>/`.
- ferv39k: the official split, `EmoLabel/train_All.csv` and `EmoLabel/test_All.csv`, rows
  `<scene>/<...>/<clip> <Label>` with the label as a word (Angry, Disgust, Fear, Happy, Neutral,
  Sad, Surprise); face crops in `2_ClipsforFaceCrop/`.
- mafw: five folds of the single-label set, `Train & Test Set/single/no_caption/set_{fold}/{train,test}.txt`,
  rows `<clip> <label>` with labels 1..11 in MAFW's order (or names); clips as video files (with
  their audio) in `data/clips/`, `<clip>` with or without its extension (`clip_format`).
- generic: `set_{fold}/train.txt` and `set_{fold}/test.txt` beside the clips (the synthetic sets).
"""

from __future__ import annotations

from pathlib import Path

from duse_ros.classes import get_class_set
from duse_ros.io.clip_lists import ClipEntry, read_clip_list

from .datasets import DatasetError

LAYOUTS: dict[str, dict] = {
    "dfew": {
        "class_set": "dfew",
        "folds": 5,
        "label_base": 1,
        "skip_labels": [0],
        "fps": 30.0,
        "train_ann": "EmoLabel_DataSplit/train(single-labeled)/set_{fold}.csv",
        "test_ann": "EmoLabel_DataSplit/test(single-labeled)/set_{fold}.csv",
        "clip_root": "Clip/clip_224x224",
        "clip_format": "{:05d}",
    },
    "ferv39k": {
        "class_set": "ferv39k",
        "folds": 0,
        "label_base": 0,
        "skip_labels": [],
        "fps": 30.0,
        "train_ann": "EmoLabel/train_All.csv",
        "test_ann": "EmoLabel/test_All.csv",
        "clip_root": "2_ClipsforFaceCrop",
        "clip_format": "{}",
    },
    "mafw": {
        "class_set": "mafw",
        "folds": 5,
        "label_base": 1,
        "skip_labels": [],
        "fps": 25.0,
        "train_ann": "Train & Test Set/single/no_caption/set_{fold}/train.txt",
        "test_ann": "Train & Test Set/single/no_caption/set_{fold}/test.txt",
        "clip_root": "data/clips",
        "clip_format": "{}",
    },
    "generic": {
        "class_set": "dfew",
        "folds": 5,
        "label_base": 1,
        "skip_labels": [],
        "fps": 8.0,
        "train_ann": "set_{fold}/train.txt",
        "test_ann": "set_{fold}/test.txt",
        "clip_root": ".",
        "clip_format": "{}",
    },
}


def resolve_layout(options: dict) -> dict:
    """The named layout (`options["layout"]`) with `options` laid over it."""
    name = options.get("layout", "generic")
    if name not in LAYOUTS:
        raise KeyError(f"data.layout {name!r} is unknown; known: {sorted(LAYOUTS)}")
    return {**LAYOUTS[name], **{k: v for k, v in options.items() if v is not None}}


def fold_numbers(layout: dict) -> list[int]:
    """[1..folds], or [0] for a dataset with one official split."""
    return list(range(1, int(layout["folds"]) + 1)) if int(layout["folds"]) > 0 else [0]


def load_split(data_dir: str | Path, layout: dict, split: str, fold: int, class_names: list[str]) -> list[ClipEntry]:
    """Entries of `split` ("train" or "test") of fold `fold`, checked against the class set."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"dataset directory {data_dir} does not exist")
    if int(layout["folds"]) > 0 and not 1 <= fold <= int(layout["folds"]):
        raise DatasetError(f"{layout.get('layout')}: fold {fold} is outside 1..{layout['folds']}")
    expected = list(get_class_set(layout["class_set"]).classes)
    if list(class_names) != expected:
        raise DatasetError(
            f"the model's classes {list(class_names)} are not the {layout['class_set']} "
            f"class set {expected} that this layout's labels index"
        )
    annotation = data_dir / layout[f"{split}_ann"].format(fold=fold)
    try:
        return read_clip_list(
            annotation,
            data_dir / layout["clip_root"],
            label_base=int(layout["label_base"]),
            class_names=class_names,
            clip_format=layout["clip_format"],
            skip_labels=[int(v) for v in layout["skip_labels"]],
        )
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"annotation file {annotation} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8"
        ) from None
