"""Ensemble runs that share a fold file: ``python -m src.ensemble RUN RUN ... [--name NAME]``.

Reads only run artifacts (``config.json``, ``oof.npy``, ``test.npy``,
``holdout.npy``, ``metrics.json``) and writes a new run folder under the same
contract, so an ensemble can be submitted, compared or ensembled again.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .artifacts import code_version, read_json, setup_logging, write_json, write_npy
from .metrics import compute_metrics

log = logging.getLogger(__name__)


class EnsembleError(ValueError):
    pass


@dataclass
class RunArtifacts:
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
    raise EnsembleError(f"run {run!r} not found (looked for {p}/config.json and {q}/config.json); list runs with: ls runs/")


def load_run(run: str | Path, workdir: str | Path = ".") -> RunArtifacts:
    root = resolve_run(run, workdir)
    for f in ("oof.npy", "test.npy", "metrics.json"):
        if not (root / f).is_file():
            raise EnsembleError(f"{root}/{f} missing: the run is unfinished; resume it with python -m src.train ... --run-id {root.name}")
    hold = root / "holdout.npy"
    return RunArtifacts(root.name, root, read_json(root / "config.json"), np.load(root / "oof.npy"), np.load(root / "test.npy"),
                        np.load(hold) if hold.is_file() else None, read_json(root / "metrics.json"))


def check_compatible(runs: list[RunArtifacts]) -> None:
    """Refuse runs whose fold files, rows or class lists differ; say which."""
    ref = runs[0]
    for r in runs[1:]:
        for key, what in (("fold_sha256", "fold file"), ("fold_column", "fold column (repeat)"), ("train_ids_sha256", "training row ids"),
                          ("classes", "class list"), ("targets", "targets"), ("task", "task")):
            if r.config.get(key) != ref.config.get(key):
                raise EnsembleError(f"runs {ref.name} and {r.name} have a different {what} "
                                    f"({ref.config.get(key)!r} vs {r.config.get(key)!r}); only runs on the same data and folds can be combined")
        if r.oof.shape != ref.oof.shape or r.test.shape != ref.test.shape:
            raise EnsembleError(f"runs {ref.name} and {r.name} have different prediction shapes: "
                                f"oof {ref.oof.shape} vs {r.oof.shape}, test {ref.test.shape} vs {r.test.shape}")


def mean_probs(mats: list[np.ndarray], weights: np.ndarray | None = None) -> np.ndarray:
    w = np.ones(len(mats)) / len(mats) if weights is None else np.asarray(weights) / np.sum(weights)
    return np.tensordot(w, np.stack(mats), axes=1).astype(np.float32)


def labels_from_folds(config: dict, classification: bool) -> np.ndarray:
    """Ground truth for OOF scoring, read from the fold file the runs share."""
    import pandas as pd

    folds = pd.read_csv(config["fold_file"], dtype={"id": str}, keep_default_na=False)
    if classification:
        idx = {c: i for i, c in enumerate(config["classes"])}
        return folds["label"].astype(str).map(idx).to_numpy()
    raise EnsembleError("regression ensembles need the targets: not supported by the fold file alone")


def ensemble(run_names: list[str], name: str | None = None, workdir: str | Path = ".") -> Path:
    runs = [load_run(r, workdir) for r in run_names]
    if len(runs) < 2:
        raise EnsembleError("give at least two runs to ensemble")
    check_compatible(runs)
    ref = runs[0]
    classification = ref.config["task"] == "classification"
    y = labels_from_folds(ref.config, classification)
    have = ~np.any([np.isnan(r.oof).any(1) for r in runs], axis=0)
    oof = mean_probs([r.oof for r in runs])
    test = mean_probs([r.test for r in runs])
    scores = {r.name: compute_metrics(classification, y[have], r.oof[have], ref.config["targets"]) for r in runs}
    ens = compute_metrics(classification, y[have], oof[have], ref.config["targets"])
    name = name or f"ens-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    root = Path(workdir) / "runs" / name
    root.mkdir(parents=True, exist_ok=True)
    write_npy(root / "oof.npy", oof)
    write_npy(root / "test.npy", test)
    metrics = {"metric": ref.metrics["metric"], "level": "clip", "method": "mean", "members": scores, "oof": ens,
               "weights": {r.name: 1 / len(runs) for r in runs}, "n_rows_scored": int(have.sum())}
    if all(r.holdout is not None for r in runs):
        write_npy(root / "holdout.npy", mean_probs([r.holdout for r in runs]))
    write_json(root / "metrics.json", metrics)
    cfg = {k: ref.config[k] for k in ("workspace", "fold_file", "fold_sha256", "fold_column", "task", "classes", "targets",
                                      "n_train", "n_test", "n_holdout", "train_ids_sha256") if k in ref.config}
    write_json(root / "config.json", {**cfg, "run_id": name, "members": [str(r.root) for r in runs], "method": "mean",
                                      "code_version": code_version(), "train": {"model": "ensemble"}})
    return root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Average the probabilities of runs that share a fold file.")
    ap.add_argument("runs", nargs="+", help="run ids (under runs/) or run folders")
    ap.add_argument("--name", help="name of the ensemble run folder")
    ap.add_argument("--workdir", default=".")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        root = ensemble(args.runs, args.name, args.workdir)
    except EnsembleError as exc:
        raise SystemExit(f"error: {exc}") from None
    m = read_json(root / "metrics.json")
    metric = m["metric"]
    width = max(len(n) for n in [*m["members"], root.name])
    print(f"{'run':<{width}}  OOF {metric} (clip level)")
    for n, s in m["members"].items():
        print(f"{n:<{width}}  {s[metric]:.4f}")
    print(f"{root.name:<{width}}  {m['oof'][metric]:.4f}  <- ensemble ({m['method']}), written to {root}")


if __name__ == "__main__":
    main()
