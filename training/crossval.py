"""Every fold of a dataset, one after another, and the mean +- std of UAR and WAR.

    python -m training.crossval --config training/configs/duse_dfew.yaml --data /data/DFEW
    python -m training.train    --config training/configs/duse_dfew.yaml --data /data/DFEW --fold all   # the same

Takes train.py's options. Fold K trains into `<out_dir>/fold<K>/`; the summary goes to
`<out_dir>/crossval.json` and `<out_dir>/crossval.md` (one row per fold, then mean +- std, the
population std over the folds). Folds already finished (their summary.json exists) are reused,
so an interrupted cross-validation restarts where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.layouts import fold_numbers, resolve_layout  # noqa: E402
from training.train import parse_args, train  # noqa: E402

log = logging.getLogger("crossval")


def summary_table(rows: list[dict]) -> str:
    uar = np.array([r["uar"] for r in rows]) * 100
    war = np.array([r["war"] for r in rows]) * 100
    lines = ["| fold | UAR | WAR |", "|---|---:|---:|"]
    lines += [f"| {r['fold']} | {100 * r['uar']:.2f} | {100 * r['war']:.2f} |" for r in rows]
    lines.append(f"| mean +- std | {uar.mean():.2f} +- {uar.std():.2f} | {war.mean():.2f} +- {war.std():.2f} |")
    return "\n".join(lines)


def run_folds(recipe: dict) -> dict:
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
            summary = train(run)
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


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run_folds(parse_args(argv))


if __name__ == "__main__":
    main()
