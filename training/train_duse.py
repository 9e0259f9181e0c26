"""Train DuSE's prompts, MLP and LSEA on a video emotion dataset, offline.

    python -m training.train_duse --model duse-vitb16-normal --clip-weights /data/clip/ViT-B-16.pt \
        --train-ann /data/DFEW/set_1/train.txt --test-ann /data/DFEW/set_1/test.txt \
        --data-root /data/DFEW/clips --out-dir runs/dfew_set1_b16_normal

    python -m training.train_duse --model duse-tiny --synthetic --epochs 2 --out-dir /tmp/duse_try

Adam (lr 1e-3, cosine decay over the epochs), batch 16, fp16 autocast on CUDA. After each epoch
the test split is scored: WAR (accuracy) and UAR (mean per-class recall). The best epoch (by
--select) is written with duse_ros.checkpoint.save_checkpoint to <out-dir>/best.json (+ the
.safetensors of the trainable weights; the training history rides in the JSON), and the whole
history to metrics.json; curves.png (loss, UAR, WAR) and confusion.png (best epoch) need
matplotlib. `--synthetic` writes a small generated dataset under <out-dir>/synthetic instead of
reading one. Nothing is downloaded: CLIP weights come from --clip-weights (a file).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.checkpoint import save_checkpoint  # noqa: E402
from duse_ros.models import build_model  # noqa: E402
from duse_ros.models.losses import build_loss  # noqa: E402
from training.datasets import VideoClipDataset, make_synthetic_dataset, read_annotation  # noqa: E402

log = logging.getLogger("train_duse")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="duse-vitb16-normal", help="a registered DuSE config name or a checkpoint .json")
    p.add_argument("--clip-weights", default=None, help="open_clip checkpoint file of the frozen CLIP")
    p.add_argument("--class-set", default=None, help="dfew | ferv39k | mafw (default: the config's)")
    p.add_argument("--train-ann", type=Path, help="annotation file of the training split")
    p.add_argument("--test-ann", type=Path, help="annotation file of the test split")
    p.add_argument("--data-root", type=Path, default=None, help="clip paths are relative to it (default: each file's folder)")
    p.add_argument("--label-base", type=int, default=1, help="the label number of the first class (DFEW: 1)")
    p.add_argument("--synthetic", action="store_true", help="generate and use a small synthetic dataset")
    p.add_argument("--out-dir", type=Path, default=Path("runs/duse"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--loss", choices=["ce", "focal"], default="ce")
    p.add_argument("--focal-gamma", type=float, default=2.0)
    p.add_argument("--select", choices=["uar", "war"], default="uar", help="metric that picks the best epoch")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (logs only)")
    args = p.parse_args(argv)
    if not args.synthetic and (args.train_ann is None or args.test_ann is None):
        p.error("give --train-ann and --test-ann, or --synthetic")
    return args


def scores(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, float, np.ndarray]:
    """UAR (mean recall over the classes present), WAR (accuracy) and the confusion matrix
    (rows: true class, columns: predicted)."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(axis=1)
    present = support > 0
    uar = float((np.diag(confusion)[present] / support[present]).mean())
    war = float(np.diag(confusion).sum() / max(1, support.sum()))
    return uar, war, confusion


def plot(history: list[dict], confusion: np.ndarray, class_names: list[str], out_dir: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed: no plots")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["test_loss"] for h in history], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_score.plot(epochs, [100 * h["uar"] for h in history], marker="o", label="UAR")
    ax_score.plot(epochs, [100 * h["war"] for h in history], marker="o", label="WAR")
    ax_score.set(xlabel="epoch", ylabel="%", title="test UAR / WAR")
    ax_score.legend()
    fig.tight_layout()
    curves = out_dir / "curves.png"
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    recall = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = 2 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised), best epoch")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{confusion[i, j]}", ha="center", va="center",
                    color="white" if recall[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    matrix = out_dir / "confusion.png"
    fig.savefig(matrix, dpi=100)
    plt.close(fig)
    return [curves, matrix]


def evaluate(model, loader, criterion, device, amp, progress: bool) -> tuple[float, np.ndarray, np.ndarray]:
    model.eval()
    losses, predictions, labels = [], [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for video, label in tqdm(loader, desc="  test", leave=False, disable=not progress):
            video, label = video.to(device, non_blocking=True), label.to(device)
            logits = model(video)
            losses.append(criterion(logits, label).item() * len(label))
            predictions.append(logits.argmax(dim=1).cpu())
            labels.append(label.cpu())
    count = sum(len(x) for x in labels)
    return sum(losses) / count, torch.cat(predictions).numpy(), torch.cat(labels).numpy()


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        args.train_ann, args.test_ann = make_synthetic_dataset(out_dir / "synthetic", seed=args.seed)
    overrides = {k: v for k, v in (("clip_weights", args.clip_weights), ("class_set", args.class_set)) if v is not None}
    model = build_model(args.model, **overrides)
    device = torch.device(args.device)
    amp = device.type == "cuda" and not args.no_amp
    model.to(device)
    num_classes = len(model.class_names)

    train_set = VideoClipDataset(read_annotation(args.train_ann, args.data_root, args.label_base),
                                 model.input_spec, num_classes, train=True)
    test_set = VideoClipDataset(read_annotation(args.test_ann, args.data_root, args.label_base),
                                model.input_spec, num_classes, train=False)
    loader_options = dict(batch_size=args.batch_size, num_workers=args.workers, pin_memory=device.type == "cuda",
                          persistent_workers=args.workers > 0)
    train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > args.batch_size, **loader_options)
    test_loader = DataLoader(test_set, shuffle=False, **loader_options)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, args.epochs))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    criterion = build_loss(args.loss, gamma=args.focal_gamma).to(device)
    progress = not args.no_progress
    log.info("%s: %d trainable parameters, %d train / %d test clips, %s%s", model.model_id,
             sum(p.numel() for p in trainable), len(train_set), len(test_set), device, " fp16" if amp else "")

    history, best, best_confusion = [], None, None
    checkpoint = out_dir / "best.json"
    for epoch in range(1, args.epochs + 1):
        model.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{args.epochs}", leave=False, disable=not progress)
        for video, label in bar:
            video, label = video.to(device, non_blocking=True), label.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = criterion(model(video), label)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"epoch {epoch}: loss is {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(label)
            seen += len(label)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        scheduler.step()
        test_loss, predictions, labels = evaluate(model, test_loader, criterion, device, amp, progress)
        uar, war, confusion = scores(predictions, labels, num_classes)
        record = {"epoch": epoch, "train_loss": total / max(1, seen), "test_loss": test_loss, "uar": uar, "war": war,
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
        history.append(record)
        improved = best is None or record[args.select] > best[args.select]
        if improved:
            best, best_confusion = record, confusion
            extra = {"best": best, "history": history, "confusion": confusion.tolist(),
                     "train_ann": str(args.train_ann), "test_ann": str(args.test_ann),
                     "args": {k: str(v) for k, v in vars(args).items()}}
            save_checkpoint(model, checkpoint, extra=extra)
        log.info("epoch %d: train loss %.4f, test loss %.4f, UAR %.2f%%, WAR %.2f%%%s", epoch, record["train_loss"],
                 test_loss, 100 * uar, 100 * war, " (best, saved)" if improved else "")
        summary = {"model": model.model_id, "checkpoint": str(checkpoint), "select": args.select, "best": best,
                   "history": history, "best_confusion": best_confusion.tolist(), "class_names": model.class_names}
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary["plots"] = [str(p) for p in plot(history, best_confusion, model.class_names, out_dir)]
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    summary = train(args)
    best = summary["best"]
    print(f"best epoch {best['epoch']}: UAR {100 * best['uar']:.2f}%  WAR {100 * best['war']:.2f}%  "
          f"-> {summary['checkpoint']}")
    return summary


if __name__ == "__main__":
    main()
