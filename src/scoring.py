"""Per-fold scores recomputed from saved OOF predictions on the shared fold file.

The same numbers as a trained run's ``metrics["folds"]``, and available for ensembles too; used by
``src.ensemble`` (member and ensemble summaries), ``src.compare`` (paired tests) and ``src.report``.
A *model* is one or more runs: repeats on other fold columns (repeated k-fold) and seed repeats on
the same column (see ``src.compare``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import TASK_METRICS
from .errors import EnsembleError
from .metrics import compute_metrics
from .runs import RunArtifacts, load_fold_table


def per_fold_metrics(y: np.ndarray, oof: np.ndarray, folds: np.ndarray, targets: list[str],
                     task: str = "classification") -> dict[str, dict[str, float]]:
    """Metrics of each fold's OOF rows (rows without OOF, i.e. NaN, are left out).

    ``y`` is (n,) class indices for ``classification`` and (n, C) 0/1 truth for ``multilabel``; a multi-label
    fold's ROC-AUC is the mean over the classes with positives *in that fold* (``src.metrics.macro_roc_auc``).
    """
    have = ~np.isnan(oof).any(1)
    return {str(int(k)): compute_metrics(task, y[have & (folds == k)], oof[have & (folds == k)], targets)
            for k in np.unique(folds[have])}


def task_metrics(task: str) -> tuple[str, ...]:
    """The per-fold metrics compared and reported for a task: the competition metrics plus log loss
    (binary cross-entropy per class for multilabel)."""
    if task == "classification":
        return ("accuracy", "balanced_accuracy", "macro_f1", "log_loss")
    return (*TASK_METRICS[task], "log_loss")


def task_of(run: RunArtifacts) -> str:
    """The run's task as recorded in config.json (``classification`` | ``multilabel`` | ``regression``)."""
    return run.config.get("task", "classification")


def row_correctness(run: RunArtifacts, y: np.ndarray) -> np.ndarray | None:
    """Per-row OOF correctness (1/0, NaN without OOF) for McNemar; None for multi-label runs, where a row has
    several labels and no single "right or wrong" (argmax correctness would be meaningless)."""
    if task_of(run) != "classification":
        return None
    have = ~np.isnan(run.oof).any(1)
    corr = np.full(len(y), np.nan)
    corr[have] = (run.oof[have].argmax(1) == y[have]).astype(float)
    return corr


def multilabel_class_scores(Y: np.ndarray, P: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Per class of a multi-label run: average precision and ROC-AUC (NaN for a class without positives or
    without negatives in ``Y``), support = number of positive rows."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    pos = Y > 0
    out = {}
    for i, c in enumerate(classes):
        n_pos = int(pos[:, i].sum())
        ok = 0 < n_pos < len(pos)
        out[c] = {"ap": float(average_precision_score(pos[:, i], P[:, i])) if n_pos else float("nan"),
                  "roc_auc": float(roc_auc_score(pos[:, i], P[:, i])) if ok else float("nan"), "support": n_pos}
    return out


def check_finite(run: RunArtifacts, folds: np.ndarray, oof_only: bool = False) -> None:
    """Refuse a run whose predictions hold NaN/inf where numbers must be: averaging carries a NaN into an
    ensemble's test rows (and from there into a submission as the first class), an inf row swamps every other
    member, and a NaN OOF row inside a trained fold silently drops out of the fold's score. OOF rows that are
    NaN in every column for a *whole* fold are legitimate (a fold not trained)."""
    fix = f"re-train or resume run {run.name} (python -m src.train ... --run-id {run.name}); a diverged fold predicts NaN"
    for what, arr in (("test.npy", run.test), ("holdout.npy", run.holdout)):
        if arr is not None and not oof_only:
            _refuse_rows(run, what, ~np.isfinite(arr).all(1), "NaN/inf", fix)
    empty = np.isnan(run.oof).all(1)
    _refuse_rows(run, "oof.npy", np.isinf(run.oof).any(1) | (np.isnan(run.oof).any(1) & ~empty), "inf or a partly NaN row", fix)
    for k in np.unique(folds):
        in_k = folds == k
        if empty[in_k].any() and not empty[in_k].all():
            _refuse_rows(run, "oof.npy", empty & in_k, f"NaN inside fold {k}, whose other rows have predictions "
                         "(an untrained fold is NaN in all its rows)", fix)


def _refuse_rows(run: RunArtifacts, what: str, bad: np.ndarray, problem: str, fix: str) -> None:
    if bad.any():
        rows = np.flatnonzero(bad)
        raise EnsembleError(f"run {run.name}: {what} has {problem} in {rows.size} row(s) (rows {rows[:5].tolist()})", fix)


@dataclass
class Model:
    """One model: its runs by fold column, with per-fold scores and OOF correctness per column."""

    label: str
    runs: dict[str, RunArtifacts]
    scores: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # column -> fold -> metrics
    correct: dict[str, np.ndarray] = field(default_factory=dict)  # column -> per-row correctness (NaN: no OOF); none for multilabel
    segment: dict[str, dict[int, float]] = field(default_factory=dict)  # column -> fold -> segment accuracy
    seeds: dict[str, list[RunArtifacts]] = field(default_factory=dict)  # column -> further seed runs (explicit label only)

    def all_runs(self) -> list[RunArtifacts]:
        return [r for col, first in self.runs.items() for r in (first, *self.seeds.get(col, []))]

    def fold_scores(self, metric: str, columns: list[str]) -> np.ndarray:
        return np.array([self.scores[c][k][metric] for c in columns for k in sorted(self.scores[c])])


def score_run(r: RunArtifacts, workdir: str | Path) -> tuple[dict[int, dict[str, float]], np.ndarray | None, dict[int, float]]:
    """(fold -> metrics, per-row correctness with NaN where no OOF (None for multilabel), fold -> segment accuracy) of one run."""
    y, folds = load_fold_table(r, workdir)
    if len(y) != len(r.oof):
        raise EnsembleError(f"run {r.name}: oof.npy has {len(r.oof)} rows but its fold file has {len(y)}",
                            "re-train the run on the current fold file")
    check_finite(r, folds, oof_only=True)
    scores = {int(k): v for k, v in per_fold_metrics(y, r.oof, folds, r.config.get("targets", []), task_of(r)).items()}
    corr = row_correctness(r, y)
    seg = {int(k): v["segment_accuracy"] for k, v in r.metrics.get("folds", {}).items() if "segment_accuracy" in v}
    return scores, corr, seg


def score_models(models: list[Model], workdir: str | Path) -> None:
    """Per-fold metrics and per-row correctness from each run's OOF on its fold column (means over seed runs)."""
    for m in models:
        for col, first in m.runs.items():
            runs = [first, *m.seeds.get(col, [])]
            parts = [score_run(r, workdir) for r in runs]
            folds = [sorted(p[0]) for p in parts]
            if any(f != folds[0] for f in folds):
                raise EnsembleError(f"seed runs {[r.name for r in runs]} of {m.label} cover different folds {folds}; train every fold of each")
            m.scores[col] = {k: {name: float(np.mean([p[0][k][name] for p in parts])) for name in parts[0][0][k]} for k in folds[0]}
            if all(p[1] is not None for p in parts):  # classification: majority of seeds right
                corr = np.mean([p[1] for p in parts], axis=0)  # NaN where any seed lacks the row
                m.correct[col] = np.where(np.isnan(corr), np.nan, (corr > 0.5).astype(float))
            if all(p[2] for p in parts):
                m.segment[col] = {k: float(np.mean([p[2][k] for p in parts])) for k in parts[0][2]}


def fold_sizes(run: RunArtifacts, workdir: str | Path) -> tuple[float, float]:
    """(mean training rows, mean test rows) per fold of the run's fold column."""
    _, folds = load_fold_table(run, workdir)
    n_test = float(np.mean(np.bincount(np.unique(folds, return_inverse=True)[1])))
    return len(folds) - n_test, n_test


