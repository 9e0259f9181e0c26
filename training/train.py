"""Train any duse_ros emotion model (DuSE, BHGap, ...) on a video (+ audio) emotion dataset.

    python -m training.train --config training/configs/duse_dfew.yaml --data /data/DFEW --fold 1
    python -m training.train --config training/configs/duse_dfew.yaml --data /data/DFEW --fold all   # 5-fold
    torchrun --nproc_per_node 4 -m training.train --config training/configs/bhgap_mafw.yaml --data /data/MAFW --fold 2

A recipe is a YAML file (training/configs/); every key can be overridden on the command line,
top-level ones as `--key value` (`--epochs 5 --lr 3e-4`) and any key as `--set a.b=value`
(`--set data.fps=25 --set augment.rotation_deg=0`). Values are read as YAML.

Protocol: a validation split is carved from the training fold (stratified by class, seeded);
each epoch is scored on it and the best epoch (by `select`) is kept. The test fold is scored
once, at the end, with that checkpoint. Outputs in `out_dir`:
  best.json + best.safetensors   the selected checkpoint (the affect node's `model` parameter)
  last.json + last.safetensors + last_state.safetensors   resumable state (`--resume`)
  history.json, metrics.jsonl, curves.png, tensorboard/   per-epoch train loss, val UAR/WAR
  test.json, test.md, test_confusion.png                  the test fold (like training/evaluate.py)

Loss: the model's classification logits (DuSE: softmax over its video-text similarities) with
cross-entropy or focal loss, plus every auxiliary loss the model returns from
`forward_with_aux` (BHGap's alignment terms, already weighted by its config).

Multi-GPU: run under torchrun; each process trains on its share of every epoch
(DistributedSampler) and rank 0 validates, tests and writes. One GPU and CPU run the same code.
Runs are repeatable: the model's initialisation, the shuffling, the augmentation and the
frames sampled all follow `seed` (and the epoch), so two CPU runs give identical metrics and a
resumed run continues the same sequence.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.checkpoint import load_trainable, save_checkpoint  # noqa: E402
from duse_ros.classes import get_class_set  # noqa: E402
from duse_ros.loading import load_model  # noqa: E402
from duse_ros.metrics import Scores, plot_confusion, recall_table, score  # noqa: E402
from duse_ros.models import get_config  # noqa: E402
from duse_ros.models.losses import build_loss  # noqa: E402
from training.augment import ClipAugment  # noqa: E402
from training.datasets import VideoClipDataset, check_entries, clip_length, stratified_split  # noqa: E402
from training.layouts import load_split, resolve_layout  # noqa: E402

log = logging.getLogger("train")

# Every recipe key and its default. Recipes (YAML) and the command line override these.
DEFAULTS: dict = {
    "model": "duse-tiny",  # registered config name or a checkpoint .json (fine-tuning)
    "model_overrides": {},  # config keys for build_model (clip_weights, class_set, n_prompts, ...)
    "clip_weights": None,  # shorthand for model_overrides.clip_weights
    "data": {"layout": "generic"},  # see training/layouts.py; any layout key can be overridden
    "fold": 1,  # 1..5, 0 for a single official split (FERV39k), or "all"
    "val_fraction": 0.1,  # of each class of the training fold, held out for model selection
    "span_s": 2.0,  # seconds the 16 frames span; null = the whole clip (the papers')
    "audio_s": None,  # seconds of audio per clip (audio-visual models); null = span_s
    "epochs": 20,
    "batch_size": 16,
    "optimizer": "adam",  # adam | adamw
    "lr": 1.0e-3,
    "weight_decay": 0.0,
    "scheduler": "cosine",  # cosine | none (cosine decays per step to 0 over the run)
    "warmup_epochs": 0,
    "loss": "ce",  # ce | focal
    "focal_gamma": 2.0,
    "amp": True,  # fp16 autocast + grad scaling on CUDA (CPU is always fp32)
    "grad_clip": 0.0,  # max grad norm; 0 = off
    "augment": {},  # training/augment.py options; false = no augmentation
    "select": "uar",  # uar | war: the validation score that picks the checkpoint
    "inputs": "all",  # all | video | audio: feed an audio-visual model one modality only (ablations)
    "seed": 0,
    "workers": 4,
    "device": "auto",  # auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)
    "out_dir": "runs/train",
    "tensorboard": True,
    "progress": True,
    "find_unused_parameters": False,  # DDP: set for models that skip parameters in some steps
}


# ---------------------------------------------------------------------------------------------- recipe
def _set_key(recipe: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = recipe
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {key!r} is not a section")
    node[keys[-1]] = value


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_recipe(path: str | Path | None) -> dict:
    if path is None:
        return copy.deepcopy(DEFAULTS)
    path = Path(path)
    try:
        recipe = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"recipe {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"recipe {path} is not valid YAML: {e}") from None
    unknown = sorted(set(recipe) - set(DEFAULTS))
    if unknown:
        raise KeyError(f"recipe {path}: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    return _merge(DEFAULTS, recipe)


def parse_args(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe YAML (training/configs/NAME.yaml)")
    p.add_argument("--data", dest="data_dir", help="dataset directory (the layout's paths are relative to it)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/last.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any recipe key")
    for key, default in DEFAULTS.items():
        if not isinstance(default, dict):
            p.add_argument(
                f"--{key.replace('_', '-')}",
                dest=key,
                default=None,
                metavar=key.upper(),
                help=f"recipe key {key} (default {default!r})",
            )
    args = p.parse_args(argv)
    recipe = load_recipe(args.config)
    for key, default in DEFAULTS.items():
        value = None if isinstance(default, dict) else getattr(args, key)
        if value is not None:
            recipe[key] = yaml.safe_load(value)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        if key.split(".")[0] not in DEFAULTS:
            p.error(f"--set {key}: unknown recipe key {key.split('.')[0]!r}")
        _set_key(recipe, key, yaml.safe_load(value))
    if args.data_dir is None:
        p.error("--data DIR is required")
    recipe["data_dir"] = args.data_dir
    recipe["resume"] = args.resume
    recipe["config_file"] = args.config
    return recipe


# ---------------------------------------------------------------------------------------------- set-up
def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} asked for, but CUDA is not available here (use --device cpu)")
        return torch.device("cuda", local_rank if name == "cuda" else int(name.split(":")[1]))
    return torch.device(name)


def build(recipe: dict, class_set: str | None = None, span_s: float | None = None):
    """The model the recipe names, initialised from its seed."""
    overrides = dict(recipe.get("model_overrides") or {})
    if recipe.get("clip_weights"):
        overrides["clip_weights"] = recipe["clip_weights"]
    name = recipe["model"]
    registered = get_config(name) if not str(name).endswith(".json") else {}
    if "seed" in registered:
        overrides.setdefault("seed", int(recipe["seed"]))
    if "span_s" in registered:
        overrides.setdefault("span_s", span_s if span_s is not None else recipe["span_s"])
    if class_set and "class_set" in registered:
        overrides.setdefault("class_set", class_set)
    torch.manual_seed(int(recipe["seed"]))
    return load_model(name, **overrides)


class TrainStep(nn.Module):
    """The model's training forward (logits and summed auxiliary losses) as `forward`, so DDP
    syncs the gradients of every part that `forward_with_aux` uses."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video, audio):
        out = self.model.forward_with_aux(video, audio)
        aux = out.extras.get("aux_losses", {}) if out.extras else {}
        total = sum(aux.values()) if aux else out.logits.new_zeros(())
        return out.logits, total, {k: float(v.detach()) for k, v in aux.items()}


def _inputs(batch: dict, spec, device: torch.device, inputs: str = "all"):
    if inputs not in ("all", "video", "audio"):
        raise ValueError(f"inputs {inputs!r}: expected 'all', 'video' or 'audio'")
    use_video = spec.uses_video and inputs in ("all", "video")
    use_audio = spec.uses_audio and inputs in ("all", "audio")
    video = batch["video"].to(device, non_blocking=True) if use_video else None
    audio = batch["audio"].to(device, non_blocking=True) if use_audio else None
    return video, audio


@torch.no_grad()
def predict(
    model, loader, device: torch.device, amp: bool, progress: bool, desc: str = "eval", inputs: str = "all"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, predictions, probabilities) over a loader, in eval mode."""
    model.eval()
    labels, predictions, probabilities = [], [], []
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for batch in tqdm(loader, desc=f"  {desc}", leave=False, disable=not progress):
            logits = model(*_inputs(batch, model.input_spec, device, inputs)).float()
            probabilities.append(logits.softmax(dim=-1).cpu())
            predictions.append(logits.argmax(dim=-1).cpu())
            labels.append(batch["label"])
    return torch.cat(labels).numpy(), torch.cat(predictions).numpy(), torch.cat(probabilities).numpy()


def write_report(scores: Scores, out_dir: Path, stem: str, title: str, extra: dict | None = None) -> dict:
    """<stem>.json, <stem>.md (per-class recall table) and <stem>_confusion.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**(extra or {}), **scores.as_dict()}
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(f"# {title}\n\n{recall_table(scores)}\n")
    plot_confusion(
        scores,
        out_dir / f"{stem}_confusion.png",
        title=f"{title}: UAR {100 * scores.uar:.2f}%  WAR {100 * scores.war:.2f}%",
    )
    return report


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    ax_score.plot(epochs, [100 * h["val_uar"] for h in history], marker="o", label="UAR")
    ax_score.plot(epochs, [100 * h["val_war"] for h in history], marker="o", label="WAR")
    ax_score.set(xlabel="epoch", ylabel="%", title="validation")
    ax_score.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Logger:
    """metrics.jsonl always; TensorBoard when the `tensorboard` package is installed."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.jsonl = (out_dir / "metrics.jsonl").open("a")
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                log.warning(
                    "TensorBoard logs are off: the `tensorboard` package is not installed "
                    "(pip install tensorboard, or pip install .[train]); metrics.jsonl has the same numbers"
                )

    def scalars(self, step: int, values: dict) -> None:
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.jsonl.close()
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------------------- resumable state
def save_state(path: Path, optimizer, scheduler, scaler, meta: dict) -> None:
    """Optimizer tensors in safetensors, everything else in the checkpoint JSON: no pickle."""
    state = optimizer.state_dict()
    tensors = {
        f"optimizer.{index}.{key}": value.detach().cpu().contiguous()
        for index, slots in state["state"].items()
        for key, value in slots.items()
        if isinstance(value, torch.Tensor)
    }
    scalars = {
        f"{index}.{key}": value
        for index, slots in state["state"].items()
        for key, value in slots.items()
        if not isinstance(value, torch.Tensor)
    }
    save_file(tensors, str(path))
    meta.update(
        optimizer_groups=state["param_groups"],
        optimizer_scalars=scalars,
        scheduler=scheduler.state_dict() if scheduler is not None else None,
        scaler=scaler.state_dict() if scaler.is_enabled() else None,
    )


def load_state(path: Path, meta: dict, optimizer, scheduler, scaler) -> None:
    tensors = load_file(str(path))
    state: dict = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta.get("optimizer_scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if meta.get("scaler") is not None and scaler.is_enabled():
        scaler.load_state_dict(meta["scaler"])


# ---------------------------------------------------------------------------------------------- the run
def train(recipe: dict) -> dict:
    """One fold; returns the run's summary (also written to out_dir/summary.json)."""
    rank, world, local_rank = distributed()
    main_process = rank == 0
    device = pick_device(str(recipe["device"]), local_rank)
    amp = bool(recipe["amp"]) and device.type == "cuda"
    progress = bool(recipe["progress"]) and main_process
    seed = int(recipe["seed"])
    out_dir = Path(recipe["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)

    layout = resolve_layout(recipe.get("data") or {})
    fold = int(recipe["fold"])
    classes = list(get_class_set(layout["class_set"]).classes)
    data_dir = Path(recipe["data_dir"])
    fold_train = load_split(data_dir, layout, "train", fold, classes)
    test_entries = load_split(data_dir, layout, "test", fold, classes)
    train_entries, val_entries = stratified_split(fold_train, float(recipe["val_fraction"]), seed)
    if not val_entries:
        raise ValueError(
            f"fold {fold}: no class has two or more training clips, so no validation split can be "
            f"carved from its {len(fold_train)} clips"
        )
    leaked = {e.key for e in val_entries + train_entries} & {e.key for e in test_entries}
    if leaked:
        raise ValueError(
            f"{len(leaked)} clips are in both the training and the test split of fold {fold}, e.g. {sorted(leaked)[0]}"
        )
    for entries in (train_entries, val_entries, test_entries):
        check_entries(entries)

    span_s = recipe["span_s"]
    fps = float(layout["fps"])
    # The span the deployed node should use (it goes into the model config and the checkpoint):
    # the recipe's, or for whole-clip sampling the median training clip's duration.
    if span_s is None:
        durations = [n / f for n, f in (clip_length(e.path, fps) for e in train_entries)]
        node_span_s = round(statistics.median(durations), 3)
    else:
        node_span_s = float(span_s)
    model = build(recipe, class_set=layout["class_set"], span_s=node_span_s).to(device)
    spec = model.input_spec
    if list(model.class_names) != classes:
        raise ValueError(
            f"model {model.model_id} has classes {model.class_names}, the {layout['class_set']} "
            f"labels index {classes}: set model_overrides.class_set"
        )
    augment = ClipAugment.from_dict(recipe["augment"]) if recipe["augment"] is not False else None
    options = dict(
        spec=spec, num_classes=len(classes), fps=fps, span_s=span_s, audio_s=recipe["audio_s"] or node_span_s, seed=seed
    )
    train_set = VideoClipDataset(train_entries, train=True, augment=augment, **options)
    val_set = VideoClipDataset(val_entries, train=False, **options)
    test_set = VideoClipDataset(test_entries, train=False, **options)

    workers = int(recipe["workers"])
    batch_size = int(recipe["batch_size"])
    loader_options = dict(num_workers=workers, pin_memory=device.type == "cuda")
    shuffle = torch.Generator()
    sampler = (
        DistributedSampler(train_set, world, rank, shuffle=True, seed=seed, drop_last=True)
        if world > 1
        else RandomSampler(train_set, generator=shuffle)
    )
    train_loader = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=len(train_set) // world > batch_size,
        **loader_options,
    )
    val_loader = DataLoader(val_set, batch_size=batch_size, sampler=SequentialSampler(val_set), **loader_options)
    test_loader = DataLoader(test_set, batch_size=batch_size, sampler=SequentialSampler(test_set), **loader_options)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if recipe["optimizer"] not in optimizers:
        raise ValueError(f"optimizer {recipe['optimizer']!r}: expected one of {sorted(optimizers)}")
    optimizer = optimizers[recipe["optimizer"]](
        trainable, lr=float(recipe["lr"]), weight_decay=float(recipe["weight_decay"])
    )
    epochs = int(recipe["epochs"])
    steps_per_epoch = max(1, len(train_loader))
    total_steps, warmup = epochs * steps_per_epoch, int(recipe["warmup_epochs"]) * steps_per_epoch

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if recipe["scheduler"] == "none":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    if recipe["scheduler"] not in ("cosine", "none"):
        raise ValueError(f"scheduler {recipe['scheduler']!r}: expected 'cosine' or 'none'")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    criterion = build_loss(recipe["loss"], gamma=float(recipe["focal_gamma"])).to(device)
    step_module = TrainStep(model)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(recipe["find_unused_parameters"]),
        )

    public_recipe = {k: v for k, v in recipe.items() if k not in ("resume",)}
    run_info = {
        "recipe": public_recipe,
        "fold": fold,
        "span_s": node_span_s,
        "frame_sampling": "whole clip" if span_s is None else f"{span_s} s window",
        "splits": {"train": len(train_set), "val": len(val_set), "test": len(test_set)},
    }
    history: list[dict] = []
    best: dict | None = None
    start_epoch = 1
    if recipe.get("resume"):
        last = out_dir / "last.json"
        meta = json.loads(last.read_text())
        load_trainable(model, load_file(str(out_dir / "last.safetensors")), source=str(last))
        load_state(out_dir / "last_state.safetensors", meta["training"], optimizer, scheduler, scaler)
        history, best = meta["training"]["history"], meta["training"]["best"]
        start_epoch = meta["training"]["epoch"] + 1
        log.info("resumed from %s at epoch %d", last, start_epoch)

    logger = Logger(out_dir, bool(recipe["tensorboard"])) if main_process else None
    if main_process:
        log.info(
            "%s on %s%s (x%d): %d trainable parameters; fold %d: %d train / %d val / %d test clips; frames: %s",
            model.model_id,
            device,
            " fp16" if amp else "",
            world,
            sum(p.numel() for p in trainable),
            fold,
            len(train_set),
            len(val_set),
            len(test_set),
            run_info["frame_sampling"],
        )
    best_path = out_dir / "best.json"
    if best is None and main_process:  # epochs == 0 (or a crash before the first epoch): the initial weights
        save_checkpoint(model, best_path, extra={**run_info, "epoch": 0, "best": None})

    step = (start_epoch - 1) * steps_per_epoch
    for epoch in range(start_epoch, epochs + 1):
        started = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)  # anything random inside the model (modality dropout)
        shuffle.manual_seed(seed * 100_003 + epoch)
        train_set.set_epoch(epoch)
        if world > 1:
            sampler.set_epoch(epoch)
        model.train()
        total, seen, aux_totals = 0.0, 0, {}
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
        for batch in bar:
            video, audio = _inputs(batch, spec, device, recipe["inputs"])
            label = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits, aux, aux_values = step_module(video, audio)
                loss = criterion(logits.float(), label) + aux
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"epoch {epoch}, step {step}: loss is {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if float(recipe["grad_clip"]) > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trainable, float(recipe["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            total += loss.item() * len(label)
            seen += len(label)
            for key, value in aux_values.items():
                aux_totals[key] = aux_totals.get(key, 0.0) + value * len(label)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if world > 1:
            torch.distributed.barrier()
        if not main_process:
            continue
        labels, predictions, _ = predict(model, val_loader, device, amp, progress, "val", recipe["inputs"])
        val = score(labels, predictions, classes)
        record = {
            "epoch": epoch,
            "train_loss": total / max(1, seen),
            "val_uar": val.uar,
            "val_war": val.war,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            **{f"aux_{k}": v / max(1, seen) for k, v in aux_totals.items()},
        }
        history.append(record)
        improved = best is None or record[f"val_{recipe['select']}"] > best[f"val_{recipe['select']}"]
        if improved:
            best = record
            save_checkpoint(model, best_path, extra={**run_info, "epoch": epoch, "best": best, "val": val.as_dict()})
        logger.scalars(epoch, {k: v for k, v in record.items() if k != "epoch"})
        log.info(
            "epoch %d: loss %.4f, val UAR %.2f%% WAR %.2f%%%s (%.0f s)",
            epoch,
            record["train_loss"],
            100 * val.uar,
            100 * val.war,
            " (best, saved)" if improved else "",
            record["seconds"],
        )
        meta = {**run_info, "epoch": epoch, "history": history, "best": best}
        save_state(out_dir / "last_state.safetensors", optimizer, scheduler, scaler, meta)
        save_checkpoint(model, out_dir / "last.json", extra=meta)
        (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")

    summary: dict = {}
    if main_process:
        # The test fold, once, with the selected checkpoint.
        selected = load_model(
            str(best_path), **({"clip_weights": recipe["clip_weights"]} if recipe.get("clip_weights") else {})
        )
        selected.to(device)
        labels, predictions, _ = predict(selected, test_loader, device, amp, progress, "test", recipe["inputs"])
        test = score(labels, predictions, classes)
        title = f"{model.model_id}, fold {fold}, test"
        write_report(
            test,
            out_dir,
            "test",
            title,
            extra={"checkpoint": str(best_path), "fold": fold, "selected_epoch": best["epoch"] if best else 0},
        )
        plot_curves(history, out_dir / "curves.png")
        logger.close()
        summary = {
            "model": model.model_id,
            "fold": fold,
            "checkpoint": str(best_path),
            "span_s": node_span_s,
            "best": best,
            "history": history,
            "test": test.as_dict(),
            "class_names": classes,
        }
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info(
            "fold %d test (epoch %s): UAR %.2f%%, WAR %.2f%%\n%s",
            fold,
            best["epoch"] if best else 0,
            100 * test.uar,
            100 * test.war,
            recall_table(test),
        )
    if world > 1:
        torch.distributed.barrier()
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    recipe = parse_args(argv)
    if str(recipe["fold"]) == "all":
        from training.crossval import run_folds

        return run_folds(recipe)
    summary = train(recipe)
    if summary:
        test = summary["test"]
        print(
            f"fold {summary['fold']} test: UAR {100 * test['uar']:.2f}%  WAR {100 * test['war']:.2f}%  "
            f"-> {summary['checkpoint']}"
        )
    return summary


if __name__ == "__main__":
    main()
