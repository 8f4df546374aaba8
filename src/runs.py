"""The run folder: the one artifact contract that training and ensembling write and every later stage reads.

``runs/<run_id>/`` holds::

    config.json        workspace config, train config, fold file + sha256, fold column, classes,
                       targets, task, training-id hash, code version, skipped clips
    fold<k>.pt         best checkpoint of fold k (with the fold's normalisation statistics);
                       fold<k>.joblib instead for a scikit-learn head (src.heads)
    fold<k>_preds.npz  val_rows, val (OOF rows of fold k), test, holdout: resuming and merging
    fold<k>_metrics.json  best-epoch metrics and per-epoch history of fold k
    fold_status.json   per fold: status (running/done/failed/interrupted), times, error
    oof.npy            (n_train, C) out-of-fold predictions, row-aligned with the fold file
    test.npy           (n_test, C) test predictions averaged over folds
    holdout.npy        (n_holdout, C) predictions on a labelled holdout split, if any
    metrics.json       metric, level, per-fold metrics, mean/std (ddof=1), pooled OOF metrics
    curves.png, confusion.png

Here live both sides of it: :class:`RunFolder` (status, resume) and :func:`finalize` (assemble the
per-fold files) for writers; :func:`load_run`, :func:`load_fold_table` and :func:`model_key` for
readers; and :func:`check_compatible`, the single answer to "can these runs be combined or resumed?".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import file_sha256, read_json, stable_hash, write_json, write_npy
from .errors import EnsembleError, RunError, WorkspaceError
from .folds import read_fold_file
from .metrics import compute_metrics

log = logging.getLogger(__name__)

# What two runs must share to be combined, compared or resumed: config.json key -> what it means.
COMPAT_KEYS: dict[str, str] = {
    "fold_sha256": "fold file", "fold_column": "fold column (repeat)", "train_ids_sha256": "training row ids",
    "classes": "class list", "targets": "targets", "task": "task",
}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fold_column(repeat: int) -> str:
    """The fold file column of repeat ``repeat`` of repeated k-fold (``fold``, ``fold_r1``, ...)."""
    return "fold" if repeat == 0 else f"fold_r{repeat}"


def ids_hash(ids: Any) -> str:
    return stable_hash(list(map(str, ids)), n=16)


def fold_files(root: Path, k: int) -> list[str]:
    """The per-fold files of the contract for fold k: its model file (``.pt`` or ``.joblib``), predictions and metrics."""
    model = next((n for n in (f"fold{k}.pt", f"fold{k}.joblib") if (Path(root) / n).is_file()), f"fold{k}.pt")
    return [model, f"fold{k}_preds.npz", f"fold{k}_metrics.json"]


def check_compatible(a: dict, b: dict, names: tuple[str, str], keys: list[str] | None = None,
                     error: type[WorkspaceError] = EnsembleError, fix: str = "only runs on the same data and folds can be combined") -> None:
    """Refuse two run configs that differ in any of ``keys`` (default: all of :data:`COMPAT_KEYS`); say which."""
    for key in keys or list(COMPAT_KEYS):
        if a.get(key) != b.get(key):
            raise error(f"runs {names[0]} and {names[1]} have a different {COMPAT_KEYS.get(key, key)} "
                        f"({a.get(key)!r} vs {b.get(key)!r})", fix)


# ----------------------------------------------------------------------------- write side


class RunFolder:
    """Per-fold status of a run folder; a fold is done when its status says so and its predictions exist."""

    def __init__(self, root: Path):
        self.root = Path(root)
        path = self.root / "fold_status.json"
        self.status: dict[str, dict] = read_json(path) if path.is_file() else {}

    def set_status(self, k: int, **kw: Any) -> None:
        self.status.setdefault(str(k), {}).update(kw)
        write_json(self.root / "fold_status.json", self.status)

    def done(self, k: int) -> bool:
        return self.status.get(str(k), {}).get("status") == "done" and (self.root / f"fold{k}_preds.npz").is_file()

    def any_done(self) -> bool:
        return any(self.done(int(k)) for k in self.status)


def finalize(root: Path, ds: Any, task: str, folds: list[int], metric: str, plots: bool = True) -> dict:
    """Assemble oof/test/holdout from the per-fold files of ``folds``; write metrics.json (and plots)."""
    n_out = len(ds.classes) if task != "regression" else len(ds.targets)
    oof = np.full((len(ds.train), n_out), np.nan, dtype=np.float32)
    tests, holdouts, per_fold, histories = [], [], {}, {}
    for k in folds:
        p = np.load(root / f"fold{k}_preds.npz")
        oof[p["val_rows"]] = p["val"]
        tests.append(p["test"])
        holdouts.append(p["holdout"])
        fm = read_json(root / f"fold{k}_metrics.json")
        per_fold[str(k)], histories[k] = fm["best"], fm["history"]
    write_npy(root / "oof.npy", oof)
    write_npy(root / "test.npy", np.mean(tests, axis=0).astype(np.float32))
    y = ds.labels("train")
    have = ~np.isnan(oof).any(1)
    metrics = {"metric": metric, "level": "clip", "level_note": "scores are per row (clip); segment_accuracy is per segment",
               "folds": per_fold, "folds_done": folds, **fold_summary(per_fold),
               "oof": compute_metrics(task, y[have], oof[have], ds.targets), "skipped": ds.skipped}
    if task == "multilabel" and have.any():
        metrics["oof_thresholds"] = oof_thresholds(y[have], oof[have])
    if len(ds.holdout):
        hold = np.mean(holdouts, axis=0).astype(np.float32)
        write_npy(root / "holdout.npy", hold)
        metrics["holdout"] = compute_metrics(task, ds.labels("holdout"), hold, ds.targets)
    metrics["history"] = {str(k): h for k, h in histories.items()}
    write_json(root / "metrics.json", metrics)
    if plots:
        from .plots import plot_confusion, plot_curves

        plot_curves({str(k): h for k, h in histories.items()}, metric, root / "curves.png")
        if task == "classification":
            plot_confusion(y[have], oof[have].argmax(1), ds.classes, root / "confusion.png")
    return metrics


def oof_thresholds(Y: np.ndarray, P: np.ndarray) -> dict[str, dict[str, float]]:
    """Multilabel: the threshold maximising micro/macro F1 on the OOF predictions, with that (optimistic) F1."""
    from .metrics import tune_threshold

    out = {}
    for average in ("micro", "macro"):
        t, f1 = tune_threshold(Y, P, average)
        out[f"{average}_f1"] = {"threshold": t, "f1": f1, "note": "tuned on these OOF predictions: optimistic"}
    return out


def fold_summary(per_fold: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``mean`` and ``std`` (ddof=1, 0 for one fold) over folds of every metric, as training and ensembles report them."""
    keys = [a for a in next(iter(per_fold.values())) if a != "epoch"]
    vals = {a: np.array([m[a] for m in per_fold.values()], dtype=np.float64) for a in keys}
    return {"mean": {a: float(v.mean()) for a, v in vals.items()},
            "std": {a: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for a, v in vals.items()}}


# ----------------------------------------------------------------------------- read side


@dataclass
class RunArtifacts:
    """What a finished run (or ensemble) left: its config, predictions and metrics."""

    name: str
    root: Path
    config: dict
    oof: np.ndarray
    test: np.ndarray
    holdout: np.ndarray | None
    metrics: dict


def resolve_run(run: str | Path, workdir: str | Path = ".") -> Path:
    """Accept a run folder path or a run id under ``<workdir>/runs``."""
    p = Path(run)
    if (p / "config.json").is_file():
        return p
    q = Path(workdir) / "runs" / str(run)
    if (q / "config.json").is_file():
        return q
    raise RunError(f"run {run!r} not found (looked for {p}/config.json and {q}/config.json)",
                   f"list the runs with: ls {Path(workdir) / 'runs'}")


def load_run(run: str | Path, workdir: str | Path = ".") -> RunArtifacts:
    root = resolve_run(run, workdir)
    for f in ("oof.npy", "test.npy", "metrics.json"):
        if not (root / f).is_file():
            raise RunError(f"{root}/{f} missing: the run is unfinished",
                           f"resume it with python -m src.train ... --run-id {root.name}")
    hold = root / "holdout.npy"
    return RunArtifacts(root.name, root, read_json(root / "config.json"), np.load(root / "oof.npy"), np.load(root / "test.npy"),
                        np.load(hold) if hold.is_file() else None, read_json(root / "metrics.json"))


def model_key(run: RunArtifacts) -> str:
    """What makes two runs 'the same model' apart from which repeat of the folds they used (see src.compare)."""
    if "model_key" in run.config:
        return run.config["model_key"]
    from .config import data_signature
    from .settings import DEFAULTS

    # a setting left at its default is the same as one recorded before the setting existed (e.g. ``recipe``)
    train = {k: v for k, v in run.config.get("train", {}).items()
             if k not in ("run_id", "repeat", "folds", "fold_file", "device") and v != getattr(DEFAULTS, k, object())}
    inputs = data_signature(run.config.get("workspace", {}))  # the same model on other features is another model
    return f"{train.get('model', '?')}-{stable_hash({'train': train, 'inputs': inputs}, 8)}"


def fold_file_path(run: RunArtifacts, workdir: str | Path = ".") -> Path:
    """The run's fold file: as recorded, relative to the workdir / the run's workspace / the current folder,
    or (for a run copied from another machine, e.g. a Kaggle kernel) ``folds/<file name>`` there.

    Refuses a file whose sha256 differs from the one recorded when the run was trained.
    """
    rec = Path(run.config["fold_file"])
    bases = [Path(workdir), run.root.parent.parent, Path(".")]
    cands = ([rec] if rec.is_absolute() else [b / rec for b in bases]) + [b / "folds" / rec.name for b in bases]
    seen = [p for p in cands if p.is_file()]
    for p in seen:
        if not run.config.get("fold_sha256") or file_sha256(p) == run.config["fold_sha256"]:
            return p
    if seen:
        raise EnsembleError(f"{seen[0]} has changed since run {run.name} was trained (sha256 differs from config.json "
                            f"fold_sha256): its OOF rows no longer match", "re-train the run or restore the fold file")
    raise EnsembleError(f"fold file {rec} of run {run.name} not found (looked in {sorted({str(c) for c in cands})})",
                        "pass --workdir pointing at the workspace that holds folds/")


def load_fold_table(run: RunArtifacts, workdir: str | Path = ".") -> tuple[np.ndarray, np.ndarray]:
    """(class index per training row, fold per row for the run's fold column), from the shared fold file."""
    path = fold_file_path(run, workdir)
    col = run.config.get("fold_column", "fold")
    folds = read_fold_file(path, columns=[col])
    if run.config["task"] == "regression":
        raise EnsembleError("regression runs cannot be scored from the fold file alone (it holds no targets)",
                            "compare or ensemble classification runs; regression scores are in each run's metrics.json")
    if run.config["task"] == "multilabel":
        return _multilabel_truth(folds["label"], run, path), folds[col].to_numpy()
    idx = {c: i for i, c in enumerate(run.config["classes"])}
    y = folds["label"].astype(str).map(idx)
    if y.isna().any():
        bad = folds["label"][y.isna()].unique()[:5].tolist()
        raise EnsembleError(f"{path}: label(s) {bad} are not in run {run.name}'s class list {run.config['classes']}",
                            "the fold file was made for other data: re-train the run on the current fold file")
    return y.to_numpy(int), folds[col].to_numpy()


def _multilabel_truth(labels: pd.Series, run: RunArtifacts, path: Path) -> np.ndarray:
    """(n_rows, C) 0/1 truth from the fold file's ``a|b`` label column (secondary weights count as positives)."""
    from .multilabel import matrix_from_strings

    Y, bad = matrix_from_strings(labels.fillna("").astype(str).tolist(), run.config["classes"])
    if bad is not None:
        raise EnsembleError(f"{path} line {bad[0] + 2}: label {bad[1]!r} is not in run {run.name}'s class list",
                            "the fold file was made for other data: re-train the run on the current fold file")
    return Y
