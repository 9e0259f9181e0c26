"""Score a trained checkpoint on a dataset split: UAR, WAR, per-class recall, confusion matrix.

    python -m training.evaluate --checkpoint runs/dfew1/best.json --data /data/DFEW --fold 1
    python -m training.evaluate --checkpoint best.json --data /data/MAFW --fold 3 --clip-weights ViT-L-14.pt

The dataset layout, frame rate and clip span come from the recipe that trained the checkpoint
(stored in its JSON); `--layout` and `--set data.KEY=VALUE` override them. Writes, under
`--out-dir` (default: beside the checkpoint, `eval_<split>_fold<K>/`): `<split>.json`
(scores, confusion, support), `<split>.md` (the per-class recall table, like the DuSE paper's
Table II) and `<split>_confusion.png`. train.py writes the same for its test fold.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.checkpoint import read_config  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402
from duse_ros.metrics import recall_table, score  # noqa: E402
from training.datasets import VideoClipDataset, check_entries  # noqa: E402
from training.layouts import load_split, resolve_layout  # noqa: E402
from training.train import cli, pick_device, predict, write_report  # noqa: E402

log = logging.getLogger("evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint .json (train.py's best.json)")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--fold", type=int, default=None, help="fold (default: the one the checkpoint was trained on)")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--layout", default=None, help="dataset layout (default: the training recipe's)")
    p.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE", help="override a layout key")
    p.add_argument("--clip-weights", default=None, help="open_clip weights file of the frozen CLIP (DuSE)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    checkpoint = Path(args.checkpoint)
    training = read_config(checkpoint).get("training") or {}
    recipe = training.get("recipe") or {}
    data = dict(recipe.get("data") or {})
    if args.layout:
        data = {"layout": args.layout}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("data."):
            raise SystemExit(f"--set expects data.KEY=VALUE, got {item!r}")
        data[key[len("data.") :]] = yaml.safe_load(value)
    layout = resolve_layout(data)
    fold = args.fold if args.fold is not None else int(training.get("fold", 1))

    model = load_model(str(checkpoint), **({"clip_weights": args.clip_weights} if args.clip_weights else {}))
    device = pick_device(args.device, 0)
    model.to(device)
    classes = list(model.class_names)
    entries = load_split(args.data, layout, args.split, fold, classes)
    check_entries(entries)
    span_s = recipe.get("span_s", model.config().get("span_s"))
    dataset = VideoClipDataset(
        entries,
        model.input_spec,
        len(classes),
        train=False,
        fps=float(layout["fps"]),
        span_s=span_s,
        audio_s=recipe.get("audio_s") or model.input_spec.audio_s or training.get("span_s"),
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    amp = device.type == "cuda" and not args.no_amp
    labels, predictions, _ = predict(model, loader, device, amp, not args.no_progress, args.split)
    scores = score(labels, predictions, classes)
    out_dir = Path(args.out_dir) if args.out_dir else checkpoint.parent / f"eval_{args.split}_fold{fold}"
    title = f"{model.model_id}, fold {fold}, {args.split}"
    report = write_report(
        scores,
        out_dir,
        args.split,
        title,
        extra={
            "checkpoint": str(checkpoint),
            "data": str(args.data),
            "fold": fold,
            "layout": layout,
            "clips": len(dataset),
        },
    )
    print(recall_table(scores))
    print(f"{args.split} fold {fold}: UAR {100 * scores.uar:.2f}%  WAR {100 * scores.war:.2f}%  -> {out_dir}")
    return report


if __name__ == "__main__":
    cli(main)
