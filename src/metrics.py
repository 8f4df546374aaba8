"""Metrics for classification (probabilities in, class indices as truth), multi-label tagging
(probabilities in, a 0/1 — or secondary-weighted — label matrix as truth) and regression.

Multi-label definitions follow the competitions that made them:

* ``roc_auc``: macro ROC-AUC over the classes that have at least one positive (BirdCLEF 2024-25 drop the others);
* ``cmap``: padded class-wise mean average precision (BirdCLEF 2023): ``pad`` rows of all-ones are appended to
  truth and predictions, so a class without positives scores high instead of undefined, then macro AP;
* ``lwlrap``: label-weighted label-ranking average precision (Freesound 2019); equals scikit-learn's
  ``label_ranking_average_precision_score`` with each row weighted by its number of positive labels;
* ``micro_f1`` / ``macro_f1``: F1 at ``threshold`` (0.5); :func:`tune_threshold` finds the OOF-best one.

Truth above 0 counts as positive (a secondary label weighted 0.5 is a positive class).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    label_ranking_average_precision_score,
    log_loss,
    roc_auc_score,
)

CMAP_PAD = 5  # BirdCLEF 2023's padding rows

LOWER_IS_BETTER = {"rmse", "log_loss", "loss"}


def greater_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``probs`` (n, C) rows of class probabilities; ``y_true`` (n,) class indices."""
    pred = probs.argmax(1)
    labels = np.arange(probs.shape[1])
    p = np.clip(probs, 1e-15, 1.0)
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, average="macro", labels=labels, zero_division=0)),
        "log_loss": float(log_loss(y_true, p / p.sum(1, keepdims=True), labels=labels)),
    }


def regression_metrics(y_true: np.ndarray, pred: np.ndarray, targets: list[str]) -> dict[str, float]:
    """Spearman and RMSE per target and averaged over targets."""
    y_true, pred = np.atleast_2d(y_true.T).T, np.atleast_2d(pred.T).T
    out: dict[str, float] = {}
    rhos, rmses = [], []
    for j, t in enumerate(targets):
        rho = float(spearmanr(y_true[:, j], pred[:, j]).statistic) if np.std(pred[:, j]) > 0 else 0.0
        rmse = float(np.sqrt(np.mean((y_true[:, j] - pred[:, j]) ** 2)))
        out[f"spearman_{t}"], out[f"rmse_{t}"] = rho, rmse
        rhos.append(rho)
        rmses.append(rmse)
    out["spearman"], out["rmse"] = float(np.mean(rhos)), float(np.mean(rmses))
    return out


def macro_roc_auc(Y: np.ndarray, P: np.ndarray) -> float:
    """Mean one-vs-rest ROC-AUC over the classes with at least one positive and one negative row (NaN if none)."""
    pos = Y > 0
    keep = pos.any(0) & (~pos).any(0)
    if not keep.any():
        return float("nan")
    return float(roc_auc_score(pos[:, keep].astype(int), P[:, keep], average="macro"))


def padded_cmap(Y: np.ndarray, P: np.ndarray, pad: int = CMAP_PAD) -> float:
    """BirdCLEF 2023: append ``pad`` rows of ones to truth and predictions, then macro average precision."""
    ones = np.ones((pad, Y.shape[1]))
    return float(average_precision_score(np.vstack([(Y > 0).astype(int), ones]), np.vstack([P, ones]), average="macro"))


def lwlrap(Y: np.ndarray, P: np.ndarray) -> float:
    """Label-weighted label-ranking average precision: every positive label counts once (rows with none are left out)."""
    pos = (Y > 0).astype(int)
    weights = pos.sum(1)
    keep = weights > 0
    if not keep.any():
        return float("nan")
    return float(label_ranking_average_precision_score(pos[keep], P[keep], sample_weight=weights[keep]))


def multilabel_metrics(Y: np.ndarray, P: np.ndarray, threshold: float = 0.5, pad: int = CMAP_PAD) -> dict[str, float]:
    """``Y`` (n, C) truth (> 0: positive), ``P`` (n, C) independent per-class probabilities."""
    pos = (Y > 0).astype(int)
    hard = (P >= threshold).astype(int)
    p = np.clip(P, 1e-7, 1 - 1e-7)
    bce = -(pos * np.log(p) + (1 - pos) * np.log(1 - p)).mean()
    return {
        "roc_auc": macro_roc_auc(Y, P),
        "cmap": padded_cmap(Y, P, pad),
        "lwlrap": lwlrap(Y, P),
        "micro_f1": float(f1_score(pos, hard, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(pos, hard, average="macro", zero_division=0)),
        "log_loss": float(bce),
    }


def tune_threshold(Y: np.ndarray, P: np.ndarray, average: str = "micro") -> tuple[float, float]:
    """(threshold, F1) maximising micro/macro F1 over a grid of 0.02..0.98 — on OOF predictions, so the F1 is optimistic."""
    pos = (Y > 0).astype(int)
    grid = np.round(np.arange(0.02, 0.99, 0.02), 2)
    scores = [f1_score(pos, (P >= t).astype(int), average=average, zero_division=0) for t in grid]
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best])


def compute_metrics(task: str, y_true: np.ndarray, pred: np.ndarray, targets: list[str]) -> dict[str, float]:
    """Metrics of one task: ``classification``, ``multilabel`` or ``regression``."""
    if task == "classification":
        return classification_metrics(y_true, pred)
    if task == "multilabel":
        return multilabel_metrics(y_true, pred)
    if task == "regression":
        return regression_metrics(y_true, pred, targets)
    raise ValueError(f"task {task!r}: expected classification | multilabel | regression")
