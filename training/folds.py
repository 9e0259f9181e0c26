"""Every fold of a dataset, one after another, and the mean +- std of UAR and WAR.

`run_folds(recipe, train_fold)` trains fold K into `<out_dir>/fold<K>/` with the one-fold trainer
it is given (training/train.py's `train`) and writes `<out_dir>/crossval.json` and
`<out_dir>/crossval.md` (one row per fold, then mean +- std, the population std over the folds).
Folds already finished (their summary.json exists) are reused, so an interrupted
cross-validation restarts where it stopped. It takes the trainer as an argument so that
train.py (`--fold all`) and crossval.py can both call it without importing each other.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.layouts import fold_numbers, resolve_layout

log = logging.getLogger("crossval")


def summary_table(rows: list[dict]) -> str:
    uar = np.array([r["uar"] for r in rows]) * 100
    war = np.array([r["war"] for r in rows]) * 100
    lines = ["| fold | UAR | WAR |", "|---|---:|---:|"]
    lines += [f"| {r['fold']} | {100 * r['uar']:.2f} | {100 * r['war']:.2f} |" for r in rows]
    lines.append(f"| mean +- std | {uar.mean():.2f} +- {uar.std():.2f} | {war.mean():.2f} +- {war.std():.2f} |")
    return "\n".join(lines)


def run_folds(recipe: dict, train_fold: Callable[[dict], dict]) -> dict:
    out_dir = Path(recipe["out_dir"])
    folds = fold_numbers(resolve_layout(recipe.get("data") or {}))
    rows = []
    for fold in folds:
        fold_dir = out_dir / f"fold{fold}"
        done = fold_dir / "summary.json"
        if done.is_file() and not recipe.get("resume"):
            summary = json.loads(done.read_text())
            log.info("fold %d: already trained (%s)", fold, done)
        else:
            run = copy.deepcopy(recipe)
            run.update(
                fold=fold, out_dir=str(fold_dir), resume=recipe.get("resume") and (fold_dir / "last.json").is_file()
            )
            summary = train_fold(run)
            if not summary:  # not the main process of a distributed run
                continue
        rows.append(
            {
                "fold": fold,
                "uar": summary["test"]["uar"],
                "war": summary["test"]["war"],
                "checkpoint": summary["checkpoint"],
            }
        )
    if not rows:
        return {}
    table = summary_table(rows)
    uar, war = np.array([r["uar"] for r in rows]), np.array([r["war"] for r in rows])
    result = {
        "folds": rows,
        "uar_mean": float(uar.mean()),
        "uar_std": float(uar.std()),
        "war_mean": float(war.mean()),
        "war_std": float(war.std()),
    }
    (out_dir / "crossval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "crossval.md").write_text(f"# {recipe['model']}: {len(rows)}-fold test scores\n\n{table}\n")
    print(table)
    print(
        f"{len(rows)} folds: UAR {100 * result['uar_mean']:.2f} +- {100 * result['uar_std']:.2f}%  "
        f"WAR {100 * result['war_mean']:.2f} +- {100 * result['war_std']:.2f}%"
    )
    return result
