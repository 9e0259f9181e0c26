"""Trainable parameters of every named DuSE configuration, without weights.

Each model is built on PyTorch's meta device (shapes only, no memory, no weights file): a
second or so for all of them, ViT-L/14 included.

    python -m training.count_params [--markdown] [names ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duse_ros.loading import load_model  # noqa: E402
from duse_ros.models import get_config, list_configs  # noqa: E402


def count(name: str) -> dict:
    with torch.device("meta"):
        model = load_model(name)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    config = model.config()
    return {
        "name": name,
        "backbone": config["backbone"],
        "prompt": config["prompt"],
        "strategy": config["strategy"],
        "M": model.prompts.depth,
        "M_V": model.prompts.vision_depth,
        "aggregator": config["aggregator"],
        "prompts": sum(v for n, v in trainable.items() if n == "prompts.text"),
        "mlp": sum(v for n, v in trainable.items() if n.startswith("prompts.mlp.")),
        "lsea": sum(v for n, v in trainable.items() if n.startswith("lsea.")),
        "trainable": sum(trainable.values()),
        "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="configurations (default: every registered DuSE one)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # "random CLIP" warnings: no weights is the point here
    names = args.names or [n for n in list_configs() if get_config(n)["arch"] == "duse"]
    rows = [count(n) for n in names]
    columns = [
        "name",
        "backbone",
        "prompt",
        "strategy",
        "M",
        "M_V",
        "aggregator",
        "prompts",
        "mlp",
        "lsea",
        "trainable",
        "frozen",
    ]
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print(
            "|"
            + "|".join(
                "---:" if c in ("M", "M_V", "prompts", "mlp", "lsea", "trainable", "frozen") else "---" for c in columns
            )
            + "|"
        )
        for r in rows:
            print("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in columns) + " |")
    else:
        widths = {
            c: max(len(c), *(len(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])) for r in rows)) for c in columns
        }
        print("  ".join(c.ljust(widths[c]) for c in columns))
        for r in rows:
            print(
                "  ".join(
                    (f"{r[c]:,}".rjust(widths[c]) if isinstance(r[c], int) else str(r[c]).ljust(widths[c]))
                    for c in columns
                )
            )
    return rows


if __name__ == "__main__":
    main()
