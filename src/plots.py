"""Plots people would rather look at than read: training curves, confusion matrices."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .artifacts import save_figure  # noqa: E402


def plot_curves(histories: dict[int, list[dict]], metric: str, path: str | Path) -> None:
    """Train/val loss and the validation metric per epoch, one line per fold."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, hist in sorted(histories.items()):
        ep = [h["epoch"] for h in hist]
        line, = ax1.plot(ep, [h["train_loss"] for h in hist], label=f"fold {k} train")
        ax1.plot(ep, [h["val_loss"] for h in hist], "--", color=line.get_color(), label=f"fold {k} val")
        ax2.plot(ep, [h[f"val_{metric}"] for h in hist], color=line.get_color(), label=f"fold {k}")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    ax2.set(xlabel="epoch", ylabel=metric, title=f"validation {metric} (clip level)")
    ax2.legend(fontsize=7)
    save_figure(path, fig)


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> None:
    """Counts annotated, colour = row-normalised recall."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=np.arange(len(classes)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.55 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (OOF, clip level)")
    save_figure(path, fig)
