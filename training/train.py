"""Train any duse_ros emotion model (DuSE, BHGap, ...) on a video (+ audio) emotion dataset.

    python -m training.train --config training/configs/duse_dfew.yaml --data /data/DFEW --fold 1
    python -m training.train --config training/configs/duse_dfew.yaml --data /data/DFEW --fold all   # 5-fold
    torchrun --nproc_per_node 4 -m training.train --config training/configs/bhgap_mafw.yaml --data /data/MAFW --fold 2

A recipe is a YAML file (training/configs/); every key can be overridden on the command line,
top-level ones as `--key value` (`--epochs 5 --lr 3e-4`) and any key as `--set a.b=value`
(`--set data.fps=25 --set augment.rotation_deg=0`). Values are read as YAML.

Protocol: a validation split is carved from the training fold (`val_fraction`, stratified by
class, seeded); each epoch is scored on it and the epoch `select` names is kept: the best
validation UAR or WAR, the last epoch, or a fixed epoch number. `val_fraction: 0` trains on the
whole fold (then `select` is `last` or an epoch number). Before the first epoch every clip of
the fold (train, validation, test) is checked readable, so a corrupt file stops the run at once.
The test fold is scored once, at the end, with the kept checkpoint. Outputs in `out_dir`:
  best.json + best.safetensors   the kept checkpoint (the affect node's `model` parameter)
  last.json + last.safetensors + last_state.safetensors   resumable state (`--resume`)
  history.json, metrics.jsonl, curves.png, tensorboard/   per-epoch train loss, val UAR/WAR
  test.json, test.md, test_confusion.png                  the test fold (like training/evaluate.py)

Loss: the model's classification logits (DuSE: softmax over its video-text similarities) with
cross-entropy or focal loss, plus every auxiliary loss the model returns from
`forward_with_aux` (BHGap's alignment terms, already weighted by its config).

Multi-GPU: run under torchrun; `batch_size` is the global batch, divided among the processes;
each process trains on its share of every epoch (DistributedSampler) and rank 0 validates,
tests and writes. A frozen backbone without its weights file is refused unless
`--allow-random-backbone` is given (smoke runs and tests). One GPU and CPU run the same code.
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
from dataclasses import dataclass, field
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
from training.datasets import (  # noqa: E402
    DatasetError,
    VideoClipDataset,
    check_clips,
    check_entries,
    clip_length,
    stratified_split,
)
from training.folds import run_folds  # noqa: E402
from training.layouts import load_split, resolve_layout  # noqa: E402

log = logging.getLogger("train")

# Every recipe key and its default. Recipes (YAML) and the command line override these.
DEFAULTS: dict = {
    "model": "duse-tiny",  # registered config name or a checkpoint .json (fine-tuning)
    "model_overrides": {},  # config keys for build_model (clip_weights, class_set, n_prompts, ...)
    "clip_weights": None,  # shorthand for model_overrides.clip_weights
    "data": {"layout": "generic"},  # see training/layouts.py; any layout key can be overridden
    "fold": 1,  # 1..5, 0 for a single official split (FERV39k), or "all"
    "val_fraction": 0.1,  # of each class of the training fold, held out for model selection; 0 = none
    "span_s": 2.0,  # seconds the 16 frames span; null = the whole clip (the papers')
    "audio_s": None,  # seconds of audio per clip (audio-visual models); null = the model's, else span_s
    "epochs": 20,
    "batch_size": 16,  # the global batch: under torchrun each process takes batch_size / processes
    "optimizer": "adam",  # adam | adamw
    "lr": 1.0e-3,
    "weight_decay": 0.0,
    # cosine: half a cosine from lr to 0 over the run, updated every step (our choice: the DuSE
    # paper names no schedule); cosine_epoch: the same, updated once per epoch (BHGap's
    # reference); none: constant. Any warm-up comes first.
    "scheduler": "cosine",
    "warmup_epochs": 0,
    "loss": "ce",  # ce | focal
    "focal_gamma": 2.0,
    "amp": True,  # fp16 autocast + grad scaling on CUDA (CPU is always fp32)
    "grad_clip": 0.0,  # max grad norm; 0 = off
    "augment": {},  # training/augment.py options; false = no augmentation
    "select": "uar",  # uar | war (best validation epoch) | last | an epoch number: the checkpoint kept
    "inputs": "all",  # all | video | audio: feed an audio-visual model one modality only (ablations)
    "seed": 0,
    "workers": 4,
    "device": "auto",  # auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)
    "out_dir": "runs/train",
    "tensorboard": True,
    "progress": True,
    "find_unused_parameters": False,  # DDP: set for models that skip parameters in some steps
    "allow_random_backbone": False,  # train on a random frozen backbone (smoke runs, tests): --allow-random-backbone
}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("cosine", "cosine_epoch", "none")
SELECTIONS = ("uar", "war", "last")


class RecipeError(ValueError):
    """A recipe key or the combination of keys cannot run; the message names the key."""


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
    except UnicodeDecodeError as e:
        raise RecipeError(f"recipe {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {path} is not valid YAML: {' '.join(str(e).split())}") from None
    unknown = sorted(set(recipe) - set(DEFAULTS))
    if unknown:
        raise RecipeError(f"recipe {path}: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    return _merge(DEFAULTS, recipe)


def parse_args(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe YAML (training/configs/NAME.yaml)")
    p.add_argument("--data", dest="data_dir", help="dataset directory (the layout's paths are relative to it)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/last.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any recipe key")
    p.add_argument(
        "--allow-random-backbone",
        action="store_true",
        default=None,
        help="train although a frozen backbone has no weights file (smoke runs, tests)",
    )
    for key, default in DEFAULTS.items():
        if not isinstance(default, dict) and key != "allow_random_backbone":
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
        if key == "allow_random_backbone":
            continue  # a flag, applied last
        if value is not None:
            recipe[key] = yaml.safe_load(value)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        if key.split(".")[0] not in DEFAULTS:
            p.error(f"--set {key}: unknown recipe key {key.split('.')[0]!r}")
        _set_key(recipe, key, yaml.safe_load(value))
    if args.allow_random_backbone:
        recipe["allow_random_backbone"] = True
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
    if "audio_s" in registered and recipe.get("audio_s"):  # the model's log-mel length follows the clips' audio
        overrides.setdefault("audio_s", float(recipe["audio_s"]))
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
    if all("val_uar" in h for h in history):
        ax_score.plot(epochs, [100 * h["val_uar"] for h in history], marker="o", label="UAR")
        ax_score.plot(epochs, [100 * h["val_war"] for h in history], marker="o", label="WAR")
        ax_score.set(xlabel="epoch", ylabel="%", title="validation")
        ax_score.legend()
    else:  # val_fraction 0: no validation split, the learning rate instead
        ax_score.plot(epochs, [h["lr"] for h in history], marker="o")
        ax_score.set(xlabel="epoch", ylabel="learning rate", title="no validation split (val_fraction 0)")
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


# ---------------------------------------------------------------------------------------------- the run, step by step
@dataclass
class Context:
    """Where and how this process trains."""

    rank: int
    world: int
    device: torch.device
    amp: bool
    progress: bool
    seed: int
    out_dir: Path

    @property
    def main_process(self) -> bool:
        return self.rank == 0


@dataclass
class Splits:
    fold: int
    classes: list[str]
    train: list
    val: list
    test: list


@dataclass
class Loaders:
    train_set: VideoClipDataset
    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    sampler: object
    shuffle: torch.Generator


def set_up(recipe: dict) -> Context:
    rank, world, local_rank = distributed()
    device = pick_device(str(recipe["device"]), local_rank)
    seed = int(recipe["seed"])
    out_dir = Path(recipe["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    return Context(
        rank=rank,
        world=world,
        device=device,
        amp=bool(recipe["amp"]) and device.type == "cuda",
        progress=bool(recipe["progress"]) and rank == 0,
        seed=seed,
        out_dir=out_dir,
    )


def check_recipe(recipe: dict, world: int) -> None:
    """The recipe keys whose errors would otherwise surface mid-run, checked before anything loads."""
    fraction = float(recipe["val_fraction"])
    if not 0.0 <= fraction < 1.0:
        raise RecipeError(f"val_fraction must be in [0, 1), got {fraction}")
    select, epochs = recipe["select"], int(recipe["epochs"])
    if isinstance(select, bool) or not (
        select in SELECTIONS or (isinstance(select, int) and 1 <= select <= max(1, epochs))
    ):
        raise RecipeError(f"select {select!r}: expected one of {SELECTIONS} or an epoch number in 1..{epochs}")
    if fraction == 0 and select in ("uar", "war"):
        raise RecipeError(
            f"select {select!r} picks the best validation epoch, but val_fraction 0 holds no validation clips: "
            "set select to 'last' or an epoch number"
        )
    if recipe["scheduler"] not in SCHEDULERS:
        raise RecipeError(f"scheduler {recipe['scheduler']!r}: expected one of {SCHEDULERS}")
    if recipe["optimizer"] not in OPTIMIZERS:
        raise RecipeError(f"optimizer {recipe['optimizer']!r}: expected one of {sorted(OPTIMIZERS)}")
    per_process_batch(int(recipe["batch_size"]), world)


def per_process_batch(batch_size: int, world: int) -> int:
    """`batch_size` is the global batch: each of the `world` processes takes an equal share."""
    if batch_size < 1 or batch_size % world:
        raise RecipeError(
            f"batch_size {batch_size} is the global batch and must divide evenly among the {world} processes"
        )
    return batch_size // world


def load_splits(recipe: dict, layout: dict) -> Splits:
    """The fold's train / validation / test entries: validation carved from the training fold
    (none when val_fraction is 0), no clip in two splits, every listed clip present."""
    fold = int(recipe["fold"])
    classes = list(get_class_set(layout["class_set"]).classes)
    data_dir = Path(recipe["data_dir"])
    fold_train = load_split(data_dir, layout, "train", fold, classes)
    test = load_split(data_dir, layout, "test", fold, classes)
    train_entries, val = stratified_split(fold_train, float(recipe["val_fraction"]), int(recipe["seed"]))
    if float(recipe["val_fraction"]) > 0 and not val:
        raise DatasetError(
            f"fold {fold}: no class has two or more training clips, so no validation split can be "
            f"carved from its {len(fold_train)} clips (val_fraction 0 trains on them all)"
        )
    leaked = {e.key for e in val + train_entries} & {e.key for e in test}
    if leaked:
        raise DatasetError(
            f"{len(leaked)} clips are in both the training and the test split of fold {fold}, e.g. {sorted(leaked)[0]}"
        )
    for entries in (train_entries, val, test):
        check_entries(entries)
    return Splits(fold, classes, train_entries, val, test)


def node_span(recipe: dict, splits: Splits, fps: float) -> float:
    """The span the deployed node should use (it goes into the model config and the checkpoint):
    the recipe's, or for whole-clip sampling the median training clip's duration."""
    if recipe["span_s"] is not None:
        return float(recipe["span_s"])
    durations = [n / f for n, f in (clip_length(e.path, fps) for e in splits.train)]
    return round(statistics.median(durations), 3)


def refuse_random_backbone(model, recipe: dict) -> None:
    """Training prompts on a random frozen backbone learns nothing a user wants: refuse it unless
    the recipe says so (`--allow-random-backbone`, as the smoke recipes and tests do)."""
    missing = model.random_backbones()
    if missing and not recipe.get("allow_random_backbone"):
        raise RecipeError(
            f"{model.model_id}: no {' or '.join(missing)} given, so its frozen backbone would be random; "
            f"name the weights file(s) (--set model_overrides.KEY=FILE; DuSE: --clip-weights FILE) "
            "or pass --allow-random-backbone for a smoke run"
        )


def make_loaders(recipe: dict, splits: Splits, model, fps: float, node_span_s: float, context: Context) -> Loaders:
    augment = ClipAugment.from_dict(recipe["augment"]) if recipe["augment"] is not False else None
    options = dict(
        spec=model.input_spec,
        num_classes=len(splits.classes),
        fps=fps,
        span_s=recipe["span_s"],
        audio_s=recipe["audio_s"] or model.input_spec.audio_s or node_span_s,  # what the node will cut
        seed=context.seed,
    )
    train_set = VideoClipDataset(splits.train, train=True, augment=augment, **options)
    batch = per_process_batch(int(recipe["batch_size"]), context.world)
    loader_options = dict(num_workers=int(recipe["workers"]), pin_memory=context.device.type == "cuda")
    shuffle = torch.Generator()
    world, rank = context.world, context.rank
    sampler = (
        DistributedSampler(train_set, world, rank, shuffle=True, seed=context.seed, drop_last=True)
        if world > 1
        else RandomSampler(train_set, generator=shuffle)
    )
    train = DataLoader(
        train_set, batch_size=batch, sampler=sampler, drop_last=len(train_set) // world > batch, **loader_options
    )

    def evaluation(entries):
        dataset = VideoClipDataset(entries, train=False, **options)
        return DataLoader(dataset, batch_size=batch, sampler=SequentialSampler(dataset), **loader_options)

    return Loaders(
        train_set, train, evaluation(splits.val) if splits.val else None, evaluation(splits.test), sampler, shuffle
    )


def lr_factor(kind: str, step: int, steps_per_epoch: int, epochs: int, warmup_epochs: int) -> float:
    """The learning rate's multiplier at optimiser step `step` (0-based): a linear warm-up over
    `warmup_epochs`, then `none` (constant), `cosine` (half a cosine to zero over the remaining
    steps, updated every step) or `cosine_epoch` (the same curve, updated once per epoch)."""
    warmup = warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if kind == "none":
        return 1.0
    if kind == "cosine":
        progress = (step - warmup) / max(1, epochs * steps_per_epoch - warmup)
    else:
        progress = (step // steps_per_epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(recipe: dict, trainable: list, steps_per_epoch: int):
    optimizer = OPTIMIZERS[recipe["optimizer"]](
        trainable, lr=float(recipe["lr"]), weight_decay=float(recipe["weight_decay"])
    )
    kind, epochs, warmup = recipe["scheduler"], int(recipe["epochs"]), int(recipe["warmup_epochs"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(kind, step, steps_per_epoch, epochs, warmup)
    )
    return optimizer, scheduler


def wrap_for_training(model, recipe: dict, context: Context) -> nn.Module:
    step_module = TrainStep(model)
    if context.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[context.device.index] if context.device.type == "cuda" else None,
            find_unused_parameters=bool(recipe["find_unused_parameters"]),
        )
    return step_module


def build_for_run(recipe: dict, layout: dict, splits: Splits, node_span_s: float, context: Context):
    """The recipe's model on the run's device, refused when its backbone is random (unless
    allowed) or its classes are not the ones the dataset's labels index."""
    model = build(recipe, class_set=layout["class_set"], span_s=node_span_s).to(context.device)
    refuse_random_backbone(model, recipe)
    if list(model.class_names) != splits.classes:
        raise RecipeError(
            f"model {model.model_id} has classes {model.class_names}, the {layout['class_set']} "
            f"labels index {splits.classes}: set model_overrides.class_set"
        )
    return model


def describe_run(recipe: dict, splits: Splits, node_span_s: float, context: Context) -> dict:
    """What the checkpoints record about the run."""
    return {
        "recipe": {k: v for k, v in recipe.items() if k != "resume"},
        "fold": splits.fold,
        "span_s": node_span_s,
        "frame_sampling": "whole clip" if recipe["span_s"] is None else f"{recipe['span_s']} s window",
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "batch_size": {
            "global": int(recipe["batch_size"]),
            "per_process": per_process_batch(int(recipe["batch_size"]), context.world),
        },
    }


@dataclass
class Trainer:
    """The run's state: one epoch of optimisation at a time (every process), then validation,
    the checkpoint kept and the resumable state (the main process)."""

    recipe: dict
    context: Context
    model: nn.Module
    loaders: Loaders
    run_info: dict
    step_module: nn.Module = None
    trainable: list = field(default_factory=list)
    optimizer: torch.optim.Optimizer = None
    scheduler: object = None
    scaler: torch.amp.GradScaler = None
    criterion: nn.Module = None
    step: int = 0
    history: list = field(default_factory=list)
    best: dict | None = None
    logger: Logger | None = None

    def __post_init__(self):
        recipe, context = self.recipe, self.context
        self.step_module = wrap_for_training(self.model, recipe, context)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer, self.scheduler = make_optimizer(recipe, self.trainable, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(context.device.type, enabled=context.amp)
        self.criterion = build_loss(recipe["loss"], gamma=float(recipe["focal_gamma"])).to(context.device)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.loaders.train))

    @property
    def best_path(self) -> Path:
        return self.context.out_dir / "best.json"

    def resume(self) -> int:
        """Weights, optimiser, scheduler, scaler, history and kept record from out_dir/last.json;
        returns the next epoch."""
        out_dir = self.context.out_dir
        last = out_dir / "last.json"
        meta = json.loads(last.read_text())["training"]
        load_trainable(self.model, load_file(str(out_dir / "last.safetensors")), source=str(last))
        load_state(out_dir / "last_state.safetensors", meta, self.optimizer, self.scheduler, self.scaler)
        self.history, self.best = meta["history"], meta["best"]
        self.step = meta["epoch"] * self.steps_per_epoch
        log.info("resumed from %s at epoch %d", last, meta["epoch"] + 1)
        return meta["epoch"] + 1

    def start(self, splits: Splits) -> None:
        """Log the run and open the metric logs (main process)."""
        recipe, context, model = self.recipe, self.context, self.model
        if not context.main_process:
            return
        self.logger = Logger(context.out_dir, bool(recipe["tensorboard"]))
        log.info(
            "%s on %s%s (x%d, batch %d per process): %d trainable parameters; fold %d: %d train / %d val / "
            "%d test clips; frames: %s; keeps: %s",
            model.model_id,
            context.device,
            " fp16" if context.amp else "",
            context.world,
            self.run_info["batch_size"]["per_process"],
            sum(p.numel() for p in self.trainable),
            splits.fold,
            len(splits.train),
            len(splits.val),
            len(splits.test),
            self.run_info["frame_sampling"],
            f"epoch {recipe['select']}" if isinstance(recipe["select"], int) else recipe["select"],
        )

    def run_epoch(self, epoch: int, epochs: int) -> dict:
        """Train one epoch; returns its record (loss, auxiliary losses, learning rate, seconds)."""
        recipe, context, loaders = self.recipe, self.context, self.loaders
        started = time.perf_counter()
        torch.manual_seed(context.seed * 100_003 + epoch)  # anything random inside the model (modality dropout)
        loaders.shuffle.manual_seed(context.seed * 100_003 + epoch)
        loaders.train_set.set_epoch(epoch)
        if context.world > 1:
            loaders.sampler.set_epoch(epoch)
        self.model.train()
        lr = self.optimizer.param_groups[0]["lr"]
        total, seen, aux_totals = 0.0, 0, {}
        bar = tqdm(loaders.train, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not context.progress)
        for batch in bar:
            video, audio = _inputs(batch, self.model.input_spec, context.device, recipe["inputs"])
            label = batch["label"].to(context.device, non_blocking=True)
            with torch.autocast(context.device.type, dtype=torch.float16, enabled=context.amp):
                logits, aux, aux_values = self.step_module(video, audio)
                loss = self.criterion(logits.float(), label) + aux
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"epoch {epoch}, step {self.step}: loss is {loss.item()}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if float(recipe["grad_clip"]) > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.trainable, float(recipe["grad_clip"]))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            total += loss.item() * len(label)
            seen += len(label)
            for key, value in aux_values.items():
                aux_totals[key] = aux_totals.get(key, 0.0) + value * len(label)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if context.world > 1:
            torch.distributed.barrier()
        return {
            "epoch": epoch,
            "train_loss": total / max(1, seen),
            "lr": lr,
            "seconds": time.perf_counter() - started,
            **{f"aux_{k}": v / max(1, seen) for k, v in aux_totals.items()},
        }

    def end_epoch(self, record: dict, classes: list[str]) -> None:
        """Main process: score the validation split (if any), keep the epoch `select` names,
        write the resumable state and the history."""
        recipe, context, model = self.recipe, self.context, self.model
        val = None
        if self.loaders.val is not None:
            labels, predictions, _ = predict(
                model, self.loaders.val, context.device, context.amp, context.progress, "val", recipe["inputs"]
            )
            val = score(labels, predictions, classes)
            record.update(val_uar=val.uar, val_war=val.war)
        self.history.append(record)
        epoch = record["epoch"]
        kept = selects(recipe["select"], record, self.best)
        if kept:
            self.best = record
            extra = {**self.run_info, "epoch": epoch, "best": record, **({"val": val.as_dict()} if val else {})}
            save_checkpoint(model, self.best_path, extra=extra)
        self.logger.scalars(epoch, {k: v for k, v in record.items() if k != "epoch"})
        log.info(
            "epoch %d: loss %.4f%s%s (%.0f s)",
            epoch,
            record["train_loss"],
            f", val UAR {100 * val.uar:.2f}% WAR {100 * val.war:.2f}%" if val else "",
            " (kept, saved)" if kept else "",
            record["seconds"],
        )
        out_dir = context.out_dir
        meta = {**self.run_info, "epoch": epoch, "history": self.history, "best": self.best}
        save_state(out_dir / "last_state.safetensors", self.optimizer, self.scheduler, self.scaler, meta)
        save_checkpoint(model, out_dir / "last.json", extra=meta)
        (out_dir / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")


def selects(select, record: dict, best: dict | None) -> bool:
    """Whether this epoch's weights become the kept checkpoint: the best validation score so far
    (uar | war), every epoch until the last (last), or exactly epoch N."""
    if select == "last":
        return True
    if isinstance(select, int):
        return record["epoch"] == select
    return best is None or record[f"val_{select}"] > best[f"val_{select}"]


def train(recipe: dict) -> dict:
    """One fold; returns the run's summary (also written to out_dir/summary.json)."""
    context = set_up(recipe)
    check_recipe(recipe, context.world)
    layout = resolve_layout(recipe.get("data") or {})
    fps = float(layout["fps"])
    splits = load_splits(recipe, layout)
    node_span_s = node_span(recipe, splits, fps)
    model = build_for_run(recipe, layout, splits, node_span_s, context)
    workers = max(1, int(recipe["workers"]))
    check_clips(
        splits.train, splits.val + splits.test, model.input_spec, fps, recipe["span_s"], workers, context.progress
    )
    trainer = Trainer(
        recipe,
        context,
        model,
        make_loaders(recipe, splits, model, fps, node_span_s, context),
        describe_run(recipe, splits, node_span_s, context),
    )
    start_epoch = trainer.resume() if recipe.get("resume") else 1
    trainer.start(splits)
    epochs = int(recipe["epochs"])
    for epoch in range(start_epoch, epochs + 1):
        record = trainer.run_epoch(epoch, epochs)
        if context.main_process:
            trainer.end_epoch(record, splits.classes)
    summary: dict = {}
    if context.main_process:
        if trainer.best is None:  # epochs: 0 scores the initial weights; a crash never leaves them as best.json
            save_checkpoint(model, trainer.best_path, extra={**trainer.run_info, "epoch": 0, "best": None})
        summary = finish(trainer, splits, node_span_s)
        trainer.logger.close()
    if context.world > 1:
        torch.distributed.barrier()
    return summary


def score_test_fold(trainer: Trainer, splits: Splits):
    """Score the test fold once, with the kept checkpoint as it loads from disk."""
    recipe, context = trainer.recipe, trainer.context
    selected = load_model(
        str(trainer.best_path), **({"clip_weights": recipe["clip_weights"]} if recipe.get("clip_weights") else {})
    )
    selected.to(context.device)
    labels, predictions, _ = predict(
        selected, trainer.loaders.test, context.device, context.amp, context.progress, "test", recipe["inputs"]
    )
    return score(labels, predictions, splits.classes)


def finish(trainer: Trainer, splits: Splits, node_span_s: float) -> dict:
    """The test fold scored with the kept checkpoint; reports, curves and summary.json written."""
    test = score_test_fold(trainer, splits)
    out_dir, best, model_id = trainer.context.out_dir, trainer.best, trainer.model.model_id
    checkpoint = str(trainer.best_path)
    write_report(
        test,
        out_dir,
        "test",
        f"{model_id}, fold {splits.fold}, test",
        extra={"checkpoint": checkpoint, "fold": splits.fold, "selected_epoch": best["epoch"] if best else 0},
    )
    plot_curves(trainer.history, out_dir / "curves.png")
    summary = {
        "model": model_id,
        "fold": splits.fold,
        "checkpoint": checkpoint,
        "span_s": node_span_s,
        "best": best,
        "history": trainer.history,
        "test": test.as_dict(),
        "class_names": splits.classes,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "fold %d test (epoch %s): UAR %.2f%%, WAR %.2f%%\n%s",
        splits.fold,
        best["epoch"] if best else 0,
        100 * test.uar,
        100 * test.war,
        recall_table(test),
    )
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    recipe = parse_args(argv)
    if str(recipe["fold"]) == "all":
        return run_folds(recipe, train)
    summary = train(recipe)
    if summary:
        test = summary["test"]
        print(
            f"fold {summary['fold']} test: UAR {100 * test['uar']:.2f}%  WAR {100 * test['war']:.2f}%  "
            f"-> {summary['checkpoint']}"
        )
    return summary


def cli(entry=main) -> None:
    """Run `entry` as a command: a dataset or recipe error is one line on stderr (exit status 1),
    not a traceback."""
    try:
        entry()
    except (DatasetError, RecipeError, FileNotFoundError) as e:
        sys.exit(f"{Path(sys.argv[0]).stem}: error: {e}")


if __name__ == "__main__":
    cli()
