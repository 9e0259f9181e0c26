"""Classification scores used by training, evaluation and bag replay (one implementation).

UAR (unweighted average recall) is the mean of per-class recalls over the classes that occur in
the labels; WAR (weighted average recall) is plain accuracy. Both are what DFEW, FERV39k and
MAFW papers report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Scores:
    uar: float
    war: float
    per_class_recall: dict[str, float | None]  # None for a class absent from the labels
    confusion: np.ndarray  # (C, C): rows are true classes, columns predictions
    support: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "uar": self.uar,
            "war": self.war,
            "per_class_recall": dict(self.per_class_recall),
            "support": dict(self.support),
            "confusion": self.confusion.tolist(),
        }


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} index out of range 0..{num_classes - 1}")
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return confusion


def score(labels: Sequence[int], predictions: Sequence[int], class_names: Sequence[str]) -> Scores:
    """UAR, WAR and per-class recall of integer predictions against integer labels."""
    confusion = confusion_matrix(labels, predictions, len(class_names))
    support = confusion.sum(axis=1)
    present = support > 0
    recalls = np.divide(np.diag(confusion), support, out=np.zeros(len(class_names)), where=present)
    uar = float(recalls[present].mean()) if present.any() else 0.0
    war = float(np.diag(confusion).sum() / support.sum()) if support.sum() else 0.0
    return Scores(
        uar=uar,
        war=war,
        per_class_recall={c: (float(r) if p else None) for c, r, p in zip(class_names, recalls, present)},
        confusion=confusion,
        support={c: int(s) for c, s in zip(class_names, support)},
    )


def recall_table(scores: Scores) -> str:
    """Markdown table of per-class recall (%), UAR and WAR, like the DuSE paper's Table II."""
    names = list(scores.per_class_recall)
    cells = ["-" if r is None else f"{100 * r:.2f}" for r in scores.per_class_recall.values()]
    head = "| " + " | ".join(names + ["UAR", "WAR"]) + " |"
    rule = "|" + "---|" * (len(names) + 2)
    row = "| " + " | ".join(cells + [f"{100 * scores.uar:.2f}", f"{100 * scores.war:.2f}"]) + " |"
    return "\n".join([head, rule, row])


def plot_confusion(scores: Scores, path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (counts in each cell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores.per_class_recall)
    counts = scores.confusion
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    size = 1.2 + 0.7 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if normalised[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(title or f"UAR {100 * scores.uar:.1f}%  WAR {100 * scores.war:.1f}%")
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall")
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG (creating its directory) and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
