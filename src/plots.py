"""Plots people would rather look at than read: training curves and confusion matrices (runs, reports, ensembles)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .artifacts import save_figure  # noqa: E402


def plot_curves(histories: dict[str, list[dict]], metric: str, path: str | Path, title: str = "") -> bool:
    """Train/validation loss and the validation metric per epoch, one colour per fold; False when there is no history."""
    hist = {k: h for k, h in histories.items() if h}
    if not hist:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, h in sorted(hist.items(), key=lambda kv: int(kv[0])):
        ep = [e["epoch"] for e in h]
        line, = ax1.plot(ep, [e["train_loss"] for e in h], label=f"fold {k} train")
        ax1.plot(ep, [e["val_loss"] for e in h], "--", color=line.get_color())
        if f"val_{metric}" in h[0]:
            ax2.plot(ep, [e[f"val_{metric}"] for e in h], color=line.get_color(), label=f"fold {k}")
    prefix = f"{title}: " if title else ""
    ax1.set(xlabel="epoch", ylabel="loss", title=f"{prefix}loss (solid train, dashed validation)")
    ax2.set(xlabel="epoch", ylabel=metric, title=f"{prefix}validation {metric} (clip level)")
    ax2.legend(fontsize=7)
    save_figure(path, fig)
    return True


def plot_confusion(y: np.ndarray, pred: np.ndarray, classes: list[str], path: str | Path, title: str = "OOF, clip level") -> np.ndarray:
    """Counts and row-normalised (recall) confusion matrices side by side; returns the counts."""
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    cm = confusion_matrix(y, pred, labels=np.arange(len(classes)))
    n = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(2.0 + 1.2 * n, 1.0 + 0.55 * n))
    ConfusionMatrixDisplay(cm, display_labels=classes).plot(ax=axes[0], colorbar=False, cmap="Blues", xticks_rotation=45)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ConfusionMatrixDisplay(norm, display_labels=classes).plot(ax=axes[1], colorbar=False, cmap="Blues", xticks_rotation=45,
                                                              values_format=".2f")
    axes[0].set_title(f"{title}: counts")
    axes[1].set_title(f"{title}: normalised by true class")
    save_figure(path, fig)
    return cm
