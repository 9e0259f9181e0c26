"""Every fold of a dataset, one after another, and the mean +- std of UAR and WAR.

    python -m training.crossval --config training/configs/duse_dfew.yaml --data /data/DFEW
    python -m training.train    --config training/configs/duse_dfew.yaml --data /data/DFEW --fold all   # the same

Takes train.py's options. Fold K trains into `<out_dir>/fold<K>/`; the summary goes to
`<out_dir>/crossval.json` and `<out_dir>/crossval.md` (training/folds.py).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.folds import run_folds  # noqa: E402
from training.train import cli, parse_args, train  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run_folds(parse_args(argv), train)


if __name__ == "__main__":
    cli(main)
