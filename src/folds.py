"""Leakage-safe folds: stratified, group-aware k-fold, saved once and shared by every model.

``python -m src.folds --config configs/x.toml`` writes ``folds/<name>_k<k>.csv``
(columns ``id, label, group, fold`` and, with repeats, ``fold_r1 ...``) plus a
``.json`` with how the groups were made and the duplicate audit.

Groups come from ``[data] group_column`` or ``group_pattern``; with
``[folds] dedup = true`` rows whose feature vectors are identical or nearly so
are merged into one group, so a duplicated clip can never sit on both sides of
a split (the public GTZAN features table has 14 such pairs).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import file_sha256, setup_logging, write_csv, write_json
from .config import WorkspaceConfig, load_config

log = logging.getLogger(__name__)


class FoldError(ValueError):
    """The fold file is missing or no longer matches the data."""


def assign_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Greedy stratified group k-fold.

    Groups are placed largest first (ties in seeded random order) into the fold
    where their classes are currently scarcest relative to each class's total.
    For singleton groups this is exact: per-class counts across folds differ by
    at most one. A group is never split.
    """
    rng = np.random.default_rng(seed)
    y_codes, y = np.unique(labels, return_inverse=True)
    g_codes, g = np.unique(groups, return_inverse=True)
    n_cls, n_grp = len(y_codes), len(g_codes)
    counts = np.zeros((n_grp, n_cls), dtype=np.int64)
    np.add.at(counts, (g, y), 1)
    if n_grp < n_splits:
        raise FoldError(f"only {n_grp} groups for {n_splits} folds: lower [folds] n_splits")
    order = rng.permutation(n_grp)
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    class_tot = counts.sum(0).astype(float)
    fold_cls = np.zeros((n_splits, n_cls))
    fold_size = np.zeros(n_splits)
    group_fold = np.empty(n_grp, dtype=np.int64)
    for gi in order:
        c = counts[gi]
        # scarcity cost per fold; tie-break on fold size, then at random
        cost = (fold_cls[:, c > 0] / class_tot[c > 0]).sum(1) if c.any() else np.zeros(n_splits)
        key = np.lexsort((rng.random(n_splits), fold_size, np.round(cost, 12)))
        f = key[0]
        group_fold[gi] = f
        fold_cls[f] += c
        fold_size[f] += c.sum()
    return group_fold[g]


def duplicate_groups(X: np.ndarray, tolerance: float) -> np.ndarray:
    """Component id per row, joining rows whose standardised vectors are within ``tolerance``."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import radius_neighbors_graph

    X = np.asarray(X, dtype=np.float64)
    sd = X.std(0)
    Z = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
    graph = radius_neighbors_graph(Z, radius=max(tolerance, 1e-12), mode="connectivity", include_self=False)
    _, comp = connected_components(graph, directed=False)
    return comp


def audit_vectors(prep, ids: pd.Series) -> np.ndarray | None:
    """The vectors the duplicate audit compares: features for tabular/arrays, MFCC+chroma stats for audio."""
    if prep.cfg.data.kind == "images":
        return None
    items = prep.items("vector" if prep.cfg.data.kind != "arrays" or prep.ds.arrays["train"].ndim == 2 else "spec", "train")
    X = np.asarray(items.X).reshape(len(items.row), -1)
    out = np.full((len(ids), X.shape[1]), np.nan)
    out[items.row] = X
    return out


def make_folds(prep, n_splits: int | None = None, n_repeats: int | None = None, seed: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Fold table for the training rows of a prepared dataset, and the audit report."""
    cfg: WorkspaceConfig = prep.cfg
    ds = prep.ds
    fc = cfg.folds
    n_splits, n_repeats = n_splits or fc.n_splits, n_repeats or fc.n_repeats
    seed = fc.seed if seed is None else seed
    df = ds.train
    target = ds.targets[0]
    labels = df[target].astype(str).to_numpy() if cfg.is_classification else _bin_targets(df[ds.targets].to_numpy(float))
    groups = df["group"].astype(str).to_numpy()
    report: dict = {"group_source": cfg.data.group_column or cfg.data.group_pattern or "id", "duplicates": []}
    if fc.dedup:
        X = audit_vectors(prep, df["id"])
        if X is not None:
            groups, report["duplicates"] = _merge_duplicates(df, groups, X, fc.dedup_tolerance, target)
    out = pd.DataFrame({"id": df["id"], "label": df[target] if cfg.is_classification else labels, "group": groups})
    for r in range(n_repeats):
        out["fold" if r == 0 else f"fold_r{r}"] = assign_folds(labels, groups, n_splits, seed + r)
    report.update(n_splits=n_splits, n_repeats=n_repeats, seed=seed, n_rows=len(out), n_groups=int(pd.Series(groups).nunique()))
    return out, report


def _bin_targets(Y: np.ndarray, bins: int = 5) -> np.ndarray:
    """Regression: stratify on quantile bins of the first target."""
    q = np.quantile(Y[:, 0], np.linspace(0, 1, bins + 1)[1:-1])
    return np.digitize(Y[:, 0], q).astype(str)


def _merge_duplicates(df: pd.DataFrame, groups: np.ndarray, X: np.ndarray, tol: float, target: str) -> tuple[np.ndarray, list]:
    ok = np.isfinite(X).all(1)
    comp = np.full(len(df), -1)
    comp[ok] = duplicate_groups(X[ok], tol)
    dups = []
    parent = {g: g for g in groups}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for c in np.unique(comp[comp >= 0]):
        members = np.flatnonzero(comp == c)
        if len(members) < 2:
            continue
        dups.append({"ids": df["id"].iloc[members].tolist(), "labels": df[target].iloc[members].astype(str).tolist()})
        for m in members[1:]:
            parent[find(groups[m])] = find(groups[members[0]])
    merged = np.array([find(g) for g in groups])
    if dups:
        cross = sum(len(set(d["labels"])) > 1 for d in dups)
        log.warning("duplicate audit: %d set(s) of identical/near-identical rows (%d across labels) merged into shared groups", len(dups), cross)
    return merged, dups


def fold_path(cfg: WorkspaceConfig, workdir: str | Path = ".", n_splits: int | None = None) -> Path:
    return Path(workdir) / "folds" / f"{cfg.name}_k{n_splits or cfg.folds.n_splits}.csv"


def load_folds(cfg: WorkspaceConfig, train_ids: pd.Series, workdir: str | Path = ".", path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """Read the fold file and refuse it if it no longer matches the training rows. Returns (folds, sha256)."""
    path = Path(path) if path else fold_path(cfg, workdir)
    if not path.is_file():
        raise FoldError(f"{path} missing: run python -m src.folds --config {cfg.path}")
    folds = pd.read_csv(path, dtype={"id": str, "group": str}, keep_default_na=False)
    ids = train_ids.astype(str).to_numpy()
    if len(folds) != len(ids) or not (folds["id"].to_numpy() == ids).all():
        missing = sorted(set(ids) - set(folds["id"]))[:3]
        extra = sorted(set(folds["id"]) - set(ids))[:3]
        raise FoldError(f"{path} does not match the data ({len(folds)} fold rows vs {len(ids)} training rows; "
                        f"not in folds: {missing}, not in data: {extra}, or the order changed). "
                        f"Re-create it: python -m src.folds --config {cfg.path} --force (existing runs then no longer match)")
    return folds, file_sha256(path)


def main(argv: list[str] | None = None) -> None:
    from .features import prepare

    ap = argparse.ArgumentParser(description="Write stratified, group-aware k-fold splits to folds/<name>_k<k>.csv.")
    ap.add_argument("--config", required=True)
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--n-splits", type=int)
    ap.add_argument("--repeats", type=int, help="repeated k-fold: extra columns fold_r1, fold_r2, ...")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--force", action="store_true", help="overwrite an existing fold file")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config)
    path = fold_path(cfg, args.workdir, args.n_splits)
    if path.exists() and not args.force:
        raise SystemExit(f"{path} exists; every run depends on it. Use --force to re-create it.")
    prep = prepare(cfg, args.workdir)
    folds, report = make_folds(prep, args.n_splits, args.repeats, args.seed)
    write_csv(path, folds)
    report["sha256"] = file_sha256(path)
    write_json(path.with_suffix(".json"), report)
    table = pd.crosstab(folds["label"], folds["fold"])
    print(f"{path}: {len(folds)} rows, {report['n_groups']} groups, {len(report['duplicates'])} duplicate set(s)\n{table}")


if __name__ == "__main__":
    main()
