"""Leakage-safe folds: stratified, group-aware k-fold, saved once and shared by every model.

``python -m src.folds --config configs/x.toml`` writes ``folds/<name>_k<k>.csv``
(columns ``id, label, group, fold`` and, with repeats, ``fold_r1 ...``) plus a
``.json`` audit: how the groups were made, the duplicate audit, the per-class
row counts of every validation fold and a warning for each class missing from one.

Groups come from ``[data] group_column`` or ``group_pattern``; with
``[folds] dedup = true`` rows whose feature vectors are identical or nearly so
are merged into one group, so a duplicated clip can never sit on both sides of
a split (the public GTZAN features table has 14 such pairs).

:func:`read_fold_file` is the one reader of fold files and refuses a malformed one
(a fold value that is not a number, a fold number outside ``0..k-1``, a one-row
fold); :func:`load_folds` also refuses a file that no longer matches the data
(other ids, order, labels or groups).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import cli
from .artifacts import file_sha256, setup_logging, write_csv, write_json
from .config import WorkspaceConfig, load_config
from .errors import FoldError

log = logging.getLogger(__name__)
FOLD_COLUMN = re.compile(r"^fold(_r\d+)?$")
REQUIRED_COLUMNS = ("id", "label", "group", "fold")
MIN_FOLD_ROWS = 2


def check_fold_counts(n_splits: int, n_repeats: int = 1) -> None:
    """Refuse k < 2 (one 'fold' trains on nothing) and fewer than one repeat (no fold column at all)."""
    if n_splits < 2:
        raise FoldError(f"--n-splits / [folds] n_splits = {n_splits}: k-fold needs at least 2 folds",
                        "use 5 (the usual choice) or 10")
    if n_repeats < 1:
        raise FoldError(f"--n-repeats / [folds] n_repeats = {n_repeats}: needs at least 1 (1 = plain k-fold, 3 = three repeats)",
                        "leave it out for plain k-fold, or pass --n-repeats 3 for repeated k-fold")


def assign_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Greedy stratified group k-fold.

    Groups are placed largest first (ties in seeded random order) into the fold
    where their classes are currently scarcest relative to each class's total.
    For singleton groups this is exact: per-class counts across folds differ by
    at most one. A group is never split.
    """
    check_fold_counts(n_splits)
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


def audit_vectors(prep: Any, ids: pd.Series) -> np.ndarray | None:
    """The vectors the duplicate audit compares: features for tabular/arrays, MFCC+chroma stats for audio."""
    if prep.cfg.data.kind == "images":
        return None
    items = prep.items("vector" if prep.cfg.data.kind != "arrays" or prep.ds.arrays["train"].ndim == 2 else "spec", "train")
    X = np.asarray(items.X).reshape(len(items.row), -1)
    out = np.full((len(ids), X.shape[1]), np.nan)
    out[items.row] = X
    return out


def assign_folds_multilabel(Y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Iterative stratification (Sechidis et al. 2011) over groups, for multi-label rows.

    Each fold should receive 1/k of every class's positives. Repeatedly take the class whose positives sit in the
    fewest unplaced groups; place each unplaced group holding it (seeded random order) in the fold that lacks the
    most of the group's classes (so every class reaches every validation fold where it can), then that still
    wants the most of this class, then the most rows, then at random. Groups without positives fill the folds
    that want the most rows. A group is never split. (Choosing by groups, and coverage first, halved the folds
    missing a class on small dense random sets — 339 to 176 over 1 500 seeds — at the same balance.)
    """
    check_fold_counts(n_splits)
    rng = np.random.default_rng(seed)
    g_codes, g = np.unique(groups, return_inverse=True)
    n_grp = len(g_codes)
    if n_grp < n_splits:
        raise FoldError(f"only {n_grp} groups for {n_splits} folds: lower [folds] n_splits")
    pos = np.zeros((n_grp, Y.shape[1]), dtype=np.int64)
    np.add.at(pos, g, (Y > 0).astype(np.int64))
    size = np.bincount(g, minlength=n_grp).astype(float)
    want = np.tile(pos.sum(0) / n_splits, (n_splits, 1)).astype(float)  # (k, C) positives each fold still wants
    have = np.zeros((n_splits, Y.shape[1]))  # (k, C) positives placed
    want_rows = np.full(n_splits, len(g) / n_splits)
    group_fold = np.full(n_grp, -1)
    left = pos.copy()
    while (left.sum(0) > 0).any():
        n_groups = (left > 0).sum(0).astype(float)
        c = int(np.argmin(np.where(n_groups > 0, n_groups, np.inf)))
        for gi in rng.permutation(np.flatnonzero(left[:, c] > 0)):
            lacks = ((have == 0) & (pos[gi] > 0)).sum(1)  # (k,) classes of this group each fold has none of
            f = np.lexsort((rng.random(n_splits), -want_rows, -want[:, c], -lacks))[0]
            group_fold[gi], left[gi] = f, 0
            want[f] -= pos[gi]
            have[f] += pos[gi]
            want_rows[f] -= size[gi]
    for gi in rng.permutation(np.flatnonzero(group_fold < 0)):
        f = np.lexsort((rng.random(n_splits), -want_rows))[0]
        group_fold[gi] = f
        want_rows[f] -= size[gi]
    return group_fold[g]


def fold_labels(prep: Any) -> np.ndarray:
    """The fold file's ``label`` column for a prepared dataset (see :func:`strata`)."""
    cfg, ds = prep.cfg, prep.ds
    if cfg.is_multilabel:
        from .multilabel import label_strings

        return label_strings(ds.labels("train"), ds.classes)
    return strata(cfg, ds.train[ds.targets[0]] if cfg.is_classification else ds.train[ds.targets])


def strata(cfg: WorkspaceConfig, values: Any) -> np.ndarray:
    """What the folds stratify on and the fold file's ``label`` column holds: the class (classification),
    the positive classes joined by ``|`` (multilabel: given as such by :func:`fold_labels`) or the quantile
    bin of the first target (regression), so load_folds can recompute and compare it."""
    if cfg.is_multilabel:
        return np.asarray(values).astype(str)
    if cfg.is_classification:
        return pd.Series(np.asarray(values).reshape(len(values), -1)[:, 0]).astype(str).to_numpy()
    return _bin_targets(np.asarray(values, dtype=np.float64).reshape(len(values), -1))


def make_folds(prep: Any, n_splits: int | None = None, n_repeats: int | None = None, seed: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Fold table for the training rows of a prepared dataset, and the audit report.

    ``None`` means "the config's value"; 0 is an error, not a default (see :func:`check_fold_counts`).
    """
    cfg: WorkspaceConfig = prep.cfg
    fc = cfg.folds
    n_splits = fc.n_splits if n_splits is None else n_splits
    n_repeats = fc.n_repeats if n_repeats is None else n_repeats
    seed = fc.seed if seed is None else seed
    check_fold_counts(n_splits, n_repeats)
    df = prep.ds.train
    target = prep.ds.targets[0]
    labels = fold_labels(prep)
    groups = df["group"].astype(str).to_numpy()
    report: dict = {"group_source": cfg.data.group_column or cfg.data.group_pattern or "id", "duplicates": []}
    if fc.dedup:
        X = audit_vectors(prep, df["id"])
        if X is not None:
            shown = labels if cfg.is_multilabel else df[target].astype(str).to_numpy()  # multilabel: "a|b", not one column
            groups, report["duplicates"] = _merge_duplicates(df, groups, X, fc.dedup_tolerance, shown)
    out = pd.DataFrame({"id": df["id"], "label": labels, "group": groups})
    for r in range(n_repeats):
        col = "fold" if r == 0 else f"fold_r{r}"
        if cfg.is_multilabel:
            out[col] = assign_folds_multilabel(prep.ds.labels("train"), groups, n_splits, seed + r)
        else:
            out[col] = assign_folds(labels, groups, n_splits, seed + r)
    report.update(n_splits=n_splits, n_repeats=n_repeats, seed=seed, n_rows=len(out), n_groups=int(pd.Series(groups).nunique()))
    if cfg.is_multilabel:
        report["class_counts"], report["warnings"] = positive_coverage(out, prep.ds.labels("train"), prep.ds.classes, n_splits)
    else:
        report["class_counts"], report["warnings"] = class_coverage(out, n_splits, "class" if cfg.is_classification else "target bin")
    for w in report["warnings"]:
        log.warning("%s", w)
    return out, report


def class_coverage(folds: pd.DataFrame, n_splits: int, what: str = "class") -> tuple[dict, list[str]]:
    """Rows of each class in each validation fold, per fold column, and a warning for every class that is
    absent from some validation fold: those folds score the class with no examples (recall undefined,
    macro scores shifted), which a k larger than the class's row or group count causes silently."""
    counts: dict[str, dict[str, list[int]]] = {}
    warnings: list[str] = []
    for col in fold_columns(folds):
        table = pd.crosstab(folds["label"], folds[col]).reindex(columns=range(n_splits), fill_value=0)
        counts[col] = {str(c): [int(v) for v in row] for c, row in table.iterrows()}
        for c, row in counts[col].items():
            missing = [k for k, v in enumerate(row) if v == 0]
            if missing:
                n_groups = folds.loc[folds["label"] == c, "group"].nunique()
                warnings.append(f"{what} {c!r} ({sum(row)} rows in {n_groups} group(s)) is absent from validation fold(s) "
                                f"{missing} of column {col!r}: lower --n-splits or collect more {c!r} rows")
    return counts, warnings


def positive_coverage(folds: pd.DataFrame, Y: np.ndarray, classes: list[str], n_splits: int) -> tuple[dict, list[str]]:
    """Multilabel: positive rows of each class in each validation fold, per fold column; a warning for every class
    absent from a validation fold although it has positives in at least k groups (fewer cannot reach every fold)."""
    pos = Y > 0
    counts: dict[str, dict[str, list[int]]] = {}
    warnings: list[str] = []
    for col in fold_columns(folds):
        f = folds[col].to_numpy()
        table = np.stack([pos[f == k].sum(0) for k in range(n_splits)], axis=1)  # (C, k)
        counts[col] = {c: [int(v) for v in row] for c, row in zip(classes, table)}
        for j, c in enumerate(classes):
            missing = [k for k in range(n_splits) if table[j, k] == 0]
            n_groups = folds.loc[pos[:, j], "group"].nunique()
            if missing and n_groups >= n_splits:
                warnings.append(f"class {c!r} ({int(pos[:, j].sum())} positive rows in {n_groups} group(s)) is absent from "
                                f"validation fold(s) {missing} of column {col!r}")
            elif missing and pos[:, j].any():
                warnings.append(f"class {c!r} has positives in only {n_groups} group(s), fewer than {n_splits} folds: absent from "
                                f"validation fold(s) {missing} of column {col!r} (its per-fold ROC-AUC is undefined there)")
    return counts, warnings


def _bin_targets(Y: np.ndarray, bins: int = 5) -> np.ndarray:
    """Regression: stratify on quantile bins of the first target."""
    q = np.quantile(Y[:, 0], np.linspace(0, 1, bins + 1)[1:-1])
    return np.digitize(Y[:, 0], q).astype(str)


def _merge_duplicates(df: pd.DataFrame, groups: np.ndarray, X: np.ndarray, tol: float, shown: np.ndarray) -> tuple[np.ndarray, list]:
    """Union the groups of rows the duplicate audit joins; returns (merged group per row, the duplicate sets with
    ``shown``, each row's label text, so the audit can tell same-label from cross-label duplicates)."""
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
        dups.append({"ids": df["id"].iloc[members].tolist(), "labels": [str(v) for v in shown[members]]})
        for m in members[1:]:
            parent[find(groups[m])] = find(groups[members[0]])
    merged = np.array([find(g) for g in groups])
    if dups:
        cross = sum(len(set(d["labels"])) > 1 for d in dups)
        log.warning("duplicate audit: %d set(s) of identical/near-identical rows (%d across labels) merged into shared groups", len(dups), cross)
    return merged, dups


def fold_path(cfg: WorkspaceConfig, workdir: str | Path = ".", n_splits: int | None = None) -> Path:
    return Path(workdir) / "folds" / f"{cfg.name}_k{cfg.folds.n_splits if n_splits is None else n_splits}.csv"


# ----------------------------------------------------------------------------- reading


def fold_columns(folds: pd.DataFrame) -> list[str]:
    """The fold columns of a fold table: ``fold`` and the repeats ``fold_r1``, ``fold_r2``, ..."""
    return [c for c in folds.columns if FOLD_COLUMN.match(str(c))]


def fold_numbers(folds: pd.DataFrame, column: str = "fold") -> list[int]:
    """The fold numbers of ``column`` in a table from :func:`read_fold_file` (there: exactly ``0..k-1``)."""
    if column not in folds:
        raise FoldError(f"the fold table has no column {column!r} (fold columns: {fold_columns(folds)})",
                        "re-create the fold file with python -m src.folds --force (with --n-repeats for fold_r1, ...)")
    return sorted(int(v) for v in pd.unique(folds[column]))


def read_fold_file(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The one reader of fold files: ids, labels and groups stay text; every fold column must hold
    integers ``0..k-1`` (k = its number of folds) with at least 2 rows per fold.

    Why so strict: a hand-edited value (``7`` in a 5-fold file) would otherwise make a one-row
    "fold" that enters the CV mean and the averaged test predictions, and a typo crashes deep inside
    training with a TypeError. Fold columns come back as int64.
    """
    path = Path(path)
    if not path.is_file():
        raise FoldError(f"fold file {path} not found", "make it with python -m src.folds --config CONFIG")
    try:
        folds = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise FoldError(f"{path} is not a readable CSV fold file ({exc})", "re-create it with python -m src.folds --force") from exc
    for col in [*REQUIRED_COLUMNS, *(columns or [])]:
        if col not in folds:
            raise FoldError(f"{path} has no column {col!r} (columns: {list(folds.columns)})",
                            "re-create it with python -m src.folds --force (with --n-repeats for fold_r1, ...)")
    dup = folds["id"][folds["id"].duplicated()]
    if len(dup):
        r = int(dup.index[0])
        raise FoldError(f"{path} line {r + 2}: id {dup.iloc[0]!r} appears more than once ({len(dup)} repeated id(s))",
                        "re-create it with python -m src.folds --force")
    for col in fold_columns(folds):
        folds[col] = _fold_values(path, folds, col)
    return folds


def _fix_hand_edit(path: Path) -> str:
    return f"restore {path.name} (e.g. from git) or re-create it with python -m src.folds --force; fold numbers are 0..k-1"


def _fold_values(path: Path, folds: pd.DataFrame, col: str) -> pd.Series:
    """Column ``col`` as int64 after checking every value is an integer and the folds are 0..k-1 with >= 2 rows each."""
    raw = folds[col].str.strip()
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        r = int(np.argmax(bad))
        raise FoldError(f"{path} line {r + 2} (id {folds['id'].iloc[r]!r}), column {col!r}: {raw.iloc[r]!r} is not a fold number "
                        f"({int(bad.sum())} such row(s))", _fix_hand_edit(path))
    vals = num.astype(np.int64)
    present = np.unique(vals)
    k = len(present)
    if k < 2:
        raise FoldError(f"{path} column {col!r}: every row is in fold {int(present[0])}; a fold file needs at least 2 folds",
                        _fix_hand_edit(path))
    outside = (vals < 0) | (vals >= k)
    if outside.any():
        r = int(np.argmax(outside))
        raise FoldError(f"{path} line {r + 2} (id {folds['id'].iloc[r]!r}), column {col!r}: fold {vals[r]} is outside 0..{k - 1} "
                        f"(fold numbers must be 0..k-1; the column has k={k}: {present.tolist()})", _fix_hand_edit(path))
    sizes = np.bincount(vals, minlength=k)
    if (sizes < MIN_FOLD_ROWS).any():
        f = int(np.argmax(sizes < MIN_FOLD_ROWS))
        r = int(np.argmax(vals == f))
        raise FoldError(f"{path} line {r + 2} (id {folds['id'].iloc[r]!r}), column {col!r}: fold {f} holds only {sizes[f]} row(s); "
                        f"every fold needs at least {MIN_FOLD_ROWS}", _fix_hand_edit(path))
    return pd.Series(vals, index=folds.index, name=col)


def load_folds(cfg: WorkspaceConfig, train_ids: pd.Series, workdir: str | Path = ".", path: str | Path | None = None, *,
               labels: Any = None, groups: Any = None) -> tuple[pd.DataFrame, str]:
    """Read the fold file and refuse it if it no longer matches the training rows. Returns (folds, sha256).

    Always compared: the ids and their order. With ``labels`` (the data's first target per training
    row, e.g. ``ds.train[ds.targets[0]]``) the fold file's ``label`` column is compared too (the class;
    for regression the recomputed target bin); with ``groups`` (``ds.train["group"]``) every data group
    must sit inside one fold-file group. Why: relabelled rows make train and compare score different
    truths, and changed groups put one group on both sides of a split, with no other sign.
    """
    path = Path(path) if path else fold_path(cfg, workdir)
    folds = read_fold_file(path)
    ids = train_ids.astype(str).to_numpy()
    if len(folds) != len(ids) or not (folds["id"].to_numpy() == ids).all():
        missing = sorted(set(ids) - set(folds["id"]))[:3]
        extra = sorted(set(folds["id"]) - set(ids))[:3]
        raise FoldError(f"{path} does not match the data ({len(folds)} fold rows vs {len(ids)} training rows; "
                        f"not in folds: {missing}, not in data: {extra}, or the order changed)", _fix_stale(cfg))
    problems = [] if labels is None else _label_changes(cfg, folds, labels)
    problems += [] if groups is None else _group_changes(folds, groups)
    if problems:
        raise FoldError(f"{path} is stale: " + "; ".join(problems), _fix_stale(cfg))
    return folds, file_sha256(path)


def _fix_stale(cfg: WorkspaceConfig) -> str:
    return f"re-create it: python -m src.folds --config {cfg.path} --force (runs trained on the old file will then be refused)"


def _label_changes(cfg: WorkspaceConfig, folds: pd.DataFrame, labels: Any) -> list[str]:
    """Rows whose class (or, for regression, target bin) in the data differs from the fold file's ``label``."""
    now = strata(cfg, labels)
    old = folds["label"].to_numpy()
    diff = np.flatnonzero(old != now)
    if not diff.size:
        return []
    what = "label" if cfg.has_classes else "target bin"
    ex = ", ".join(f"line {r + 2} id {folds['id'].iloc[r]!r}: {str(old[r])!r} in the file, {str(now[r])!r} in the data"
                   for r in diff[:3])
    return [f"{diff.size} of {len(folds)} row(s) have another {what} in the data (e.g. {ex})"]


def _group_changes(folds: pd.DataFrame, groups: Any) -> list[str]:
    """Data groups whose rows sit in more than one fold-file group (fold-file groups may be coarser: duplicates merge them)."""
    g = pd.Series(np.asarray(groups).astype(str), index=folds.index)
    spread = folds["group"].groupby(g).nunique()
    split = spread[spread > 1].index
    if not len(split):
        return []
    rows = g.isin(split)
    ex = []
    for name in split[:2]:
        at = folds[(g == name).to_numpy()]
        ex.append(f"group {name!r}: ids {at['id'].tolist()[:4]} are in fold-file groups {sorted(set(at['group']))[:4]}")
    return [f"{len(split)} group(s) of the data ({int(rows.sum())} rows) are split over several fold-file groups, "
            f"so they can sit on both sides of a split (e.g. {'; '.join(ex)})"]


# ----------------------------------------------------------------------------- command


def load_folds_for(prep: Any, workdir: str | Path = ".", path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """:func:`load_folds` for a prepared dataset with every staleness check on: ids, order, labels and groups."""
    ds = prep.ds
    labels = fold_labels(prep) if prep.cfg.is_multilabel else ds.train[ds.targets[0]]
    return load_folds(prep.cfg, ds.train["id"], workdir, path, labels=labels, groups=ds.train["group"])


def main(argv: list[str] | None = None) -> None:
    from .features import prepare

    ap = cli.parser("folds", "Write stratified, group-aware k-fold splits to folds/<name>_k<k>.csv (+ a .json audit).")
    cli.add_common(ap)
    ap.add_argument("--n-splits", type=int, help="number of folds k, at least 2; None: [folds] n_splits of the config")
    ap.add_argument("--n-repeats", type=int, help="repeated k-fold: 1 = plain, r adds columns fold_r1 .. fold_r{r-1} "
                    "made with seeds seed+1 ..; None: [folds] n_repeats")
    ap.add_argument("--seed", type=int, help="seed of the first fold column; None: [folds] seed")
    ap.add_argument("--force", action="store_true", help="overwrite an existing fold file (runs trained on the old one are then refused)")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, args.workdir)
    n_splits = cfg.folds.n_splits if args.n_splits is None else args.n_splits
    n_repeats = cfg.folds.n_repeats if args.n_repeats is None else args.n_repeats
    check_fold_counts(n_splits, n_repeats)
    path = fold_path(cfg, args.workdir, n_splits)
    if path.exists() and not args.force:
        raise FoldError(f"{path} exists and every run trained on it depends on it",
                        "pass --force to re-create it (runs trained on the old file will then be refused)")
    folds, report = make_folds(prepare(cfg, args.workdir), n_splits, n_repeats, args.seed)
    write_csv(path, folds)
    report["sha256"] = file_sha256(path)
    write_json(path.with_suffix(".json"), report)
    table = (pd.DataFrame(report["class_counts"]["fold"]).T.rename_axis("positives of class / fold") if cfg.is_multilabel
             else pd.crosstab(folds["label"], folds["fold"]))
    print(f"{path}: {len(folds)} rows, {report['n_groups']} groups, {len(report['duplicates'])} duplicate set(s), "
          f"{len(report['warnings'])} warning(s) (see {path.with_suffix('.json').name})\n{table}")


if __name__ == "__main__":
    cli.run_command(main)
