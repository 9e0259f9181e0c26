"""duse-eval-bag --compare: several models and providers over one bag, side by side.

Each entry (every --model, then every --provider-command, or the --provider-topic process) is
evaluated as on its own, into OUT/<n>-<name>/; OUT/compare.md and OUT/compare.json hold one row per
entry (UAR, WAR, per-class recall, latency p50/p95, windows answered) and OUT/compare.png shows
them. With a provider among the entries every entry plays the bag at its recorded pace (a
provider's windows are its own, so it cannot be paced by the player), so all latencies are
measured under the same load. An entry that fails keeps its row, with the error.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from duse_ros.tools import providers

COLUMNS = ("uar", "war", "latency_ms_p50", "latency_ms_p95", "windows_received", "windows", "dropped")


def entries(args) -> list[tuple[str, str]]:
    """(kind, value) per entry: ("model", name), ("provider", command) or ("topic", topic)."""
    out = [("model", m) for m in args.models]
    out += [("provider", c) for c in args.provider_command]
    if args.provider_topic and not args.provider_command:
        out.append(("topic", args.provider_topic))
    return out


def entry_args(args, kind: str, value: str, out_dir: Path):
    one = copy.copy(args)
    one.out = out_dir
    if kind == "model":
        one.model, one.provider_command, one.provider_topic, one.provider_output = value, [], "", "duse"
    else:
        one.model, one.provider_command = None, [value] if kind == "provider" else []
    return one


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:40] or "entry"


def run_compare(args, run_one: Callable, errors: tuple[type[BaseException], ...]) -> dict:
    """Evaluate every entry with `run_one(args) -> report`; write the table and the plot."""
    todo = entries(args)
    if len(todo) < 2:
        raise ValueError("--compare needs at least two entries (--model, --provider-command)")
    if any(kind != "model" for kind, _ in todo):
        args.realtime = True
    base = Path(args.out or Path("eval_output") / (args.bag.name + "_compare"))
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (kind, value) in enumerate(todo):
        one = entry_args(args, kind, value, base / f"{i}-{_slug(value if kind != 'provider' else value.split()[-1])}")
        name = value if kind == "model" else providers.provider_name(one)
        try:
            report = run_one(one)
        except errors as e:
            rows.append({"entry": name, "kind": kind, "error": str(e).splitlines()[0]})
            continue
        rows.append(
            {
                "entry": name,
                "kind": kind,
                "model_id": report["model_id"],
                "untrained": report["untrained"],
                "mode": report["mode"],
                "stopped": report.get("stopped"),  # a run that ended early (its reason), else None
                **{c: report[c] for c in COLUMNS},
                "per_class_recall": report["per_class_recall"],
                "out_dir": report["out_dir"],
            }
        )
    table = {"bag": str(args.bag), "labels": str(args.labels) if args.labels else None, "entries": rows}
    (base / "compare.json").write_text(json.dumps(table, indent=2) + "\n")
    (base / "compare.md").write_text(markdown(rows))
    failed = sum("error" in r for r in rows)
    plot(rows, base / "compare.png", f"{args.bag.name}: {len(rows)} entries" + (f", {failed} failed" if failed else ""))
    table["out_dir"] = str(base)
    return table


def _classes(rows: list[dict]) -> list[str]:
    """Classes some entry has a recall for (classes absent from the labels have none anywhere)."""
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(c for c, v in r.get("per_class_recall", {}).items() if v is not None))
    return list(seen)


def _pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _ms(x) -> str:
    return "—" if x is None else f"{x:.0f}"


def answered(row: dict) -> str:
    """Windows answered: received of those due (a provider's readings are all it answered)."""
    if row.get("windows") is None:
        return "—"
    return f"{row['windows_received']}/{row['windows']}"


def markdown(rows: list[dict]) -> str:
    classes = _classes(rows)
    head = ["entry", "UAR %", "WAR %", *[f"{c} %" for c in classes], "latency p50 ms", "p95 ms", "windows answered"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = (
            r["entry"]
            + (" (UNTRAINED)" if r.get("untrained") else "")
            + (" (stopped early)" if r.get("stopped") else "")
        )
        if "error" in r:
            lines.append("| " + " | ".join([name, f"failed: {r['error']}"] + [""] * (len(head) - 2)) + " |")
            continue
        recall = r["per_class_recall"]
        cells = [name, _pct(r["uar"]), _pct(r["war"]), *[_pct(recall.get(c)) for c in classes]]
        cells += [_ms(r["latency_ms_p50"]), _ms(r["latency_ms_p95"]), answered(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """Three panels: UAR, WAR and per-class recall per entry; latency p50/p95; windows answered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from duse_ros.metrics import save_figure

    ok = [r for r in rows if "error" not in r]
    names = [r["entry"] + (" *" if r.get("untrained") else "") for r in ok]
    metrics = ["uar", "war", *_classes(ok)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), gridspec_kw={"width_ratios": [3, 1.3, 1]})
    x = np.arange(len(metrics))
    width = 0.8 / max(len(ok), 1)
    for i, r in enumerate(ok):
        values = [r[m] if m in ("uar", "war") else r["per_class_recall"].get(m) for m in metrics]
        heights = [np.nan if v is None else 100 * v for v in values]
        axes[0].bar(x + i * width - 0.4 + width / 2, heights, width, label=names[i])
    axes[0].set_xticks(x, [m.upper() if m in ("uar", "war") else m for m in metrics], rotation=30, ha="right")
    axes[0].set(ylabel="%", ylim=(0, 100), title="UAR, WAR, recall per class")
    axes[0].legend(fontsize=8)
    y = np.arange(len(ok))
    for k, (key, label) in enumerate((("latency_ms_p50", "p50"), ("latency_ms_p95", "p95"))):
        axes[1].barh(y + (k - 0.5) * 0.4, [np.nan if r[key] is None else r[key] for r in ok], 0.4, label=label)
    axes[1].set_yticks(y, names)
    axes[1].set(xlabel="ms", title="latency")
    axes[1].legend(fontsize=8)
    axes[2].barh(y, [r["windows_received"] or 0 for r in ok])
    axes[2].set_yticks(y, [""] * len(ok))
    axes[2].set(xlabel="windows answered", title="windows")
    fig.suptitle(title + ("  (* untrained: random weights)" if any(r.get("untrained") for r in ok) else ""))
    return save_figure(fig, path)
