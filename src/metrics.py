"""Metrics for classification (probabilities in, class indices as truth) and regression."""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

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


def compute_metrics(classification: bool, y_true: np.ndarray, pred: np.ndarray, targets: list[str]) -> dict[str, float]:
    if classification:
        return classification_metrics(y_true, pred)
    return regression_metrics(y_true, pred, targets)
