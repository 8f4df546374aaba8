"""Data adapters: turn a real on-disk layout into one table of rows.

Every adapter returns a :class:`Dataset` whose ``train`` / ``test`` /
``holdout`` frames share the columns ``id``, ``group`` and, for labelled
splits, the target column(s); audio and image rows also carry ``path``.
Feature-vector layouts (tabular CSV, ``X.npy`` arrays) carry their matrices in
``Dataset.arrays``. Nothing here decodes audio: that is the feature stage's
job (``src.features``), which also handles corrupt clips.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import AUDIO_EXTENSIONS, WorkspaceConfig

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test", "holdout")


class DataError(ValueError):
    """The data on disk does not match the config or is unusable."""


@dataclass
class Dataset:
    train: pd.DataFrame
    test: pd.DataFrame
    holdout: pd.DataFrame
    classes: list[str]
    targets: list[str]
    # feature matrices for tabular / arrays data, keyed by split; row-aligned with the frames
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    sample_submission: pd.DataFrame | None = None
    skipped: list[dict] = field(default_factory=list)  # rows dropped with on_corrupt = "skip"

    def frame(self, split: str) -> pd.DataFrame:
        return getattr(self, split)

    def labels(self, split: str = "train") -> np.ndarray:
        """Integer class indices (classification) or float targets (regression)."""
        df = self.frame(split)
        if self.classes:
            idx = {c: i for i, c in enumerate(self.classes)}
            return df[self.targets[0]].map(idx).to_numpy(dtype=np.int64)
        return df[self.targets].to_numpy(dtype=np.float32)


def load_dataset(cfg: WorkspaceConfig) -> Dataset:
    """Dispatch on ``[data] kind`` and run the shared checks."""
    loader = {"audio": _load_files, "images": _load_files, "tabular": _load_tabular, "arrays": _load_arrays}[cfg.data.kind]
    ds = loader(cfg)
    _assign_groups(cfg, ds)
    _check(cfg, ds)
    return ds


# ----------------------------------------------------------------------------- files


def _list_files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _load_files(cfg: WorkspaceConfig) -> Dataset:
    d = cfg.data
    exts = AUDIO_EXTENSIONS if d.kind == "audio" else IMAGE_EXTENSIONS
    train_dir = cfg.resolve(d.train_dir)
    target = cfg.competition.targets[0]
    if d.layout == "folders":
        files = _list_files(train_dir, exts)
        if not files:
            raise DataError(f"{train_dir}: no {'/'.join(exts)} files found (expected <train_dir>/<class>/<file>)")
        train = pd.DataFrame({
            "id": [f.stem for f in files],
            target: [f.relative_to(train_dir).parts[0] for f in files],
            "path": [str(f) for f in files],
        })
        if any(len(f.relative_to(train_dir).parts) < 2 for f in files):
            raise DataError(f"{train_dir}: layout 'folders' needs files inside one sub-folder per class")
    else:
        train = _read_manifest(cfg, cfg.resolve(d.manifest), train_dir, exts, labelled=True)
    test = pd.DataFrame(columns=["id", "path"])
    sample = _read_sample_submission(cfg)
    if d.test_dir:
        test_dir = cfg.resolve(d.test_dir)
        if sample is not None:
            ids = sample[d.id_column].astype(str).tolist()
            test = pd.DataFrame({"id": ids, "path": [str(_find_file(test_dir, i, d.extension, exts)) for i in ids]})
        else:
            files = _list_files(test_dir, exts)
            test = pd.DataFrame({"id": [f.stem for f in files], "path": [str(f) for f in files]})
    return Dataset(train=train, test=test, holdout=pd.DataFrame(columns=["id"]), classes=list(cfg.data.classes),
                   targets=list(cfg.competition.targets), sample_submission=sample)


def _find_file(folder: Path, file_id: str, extension: str, exts: tuple[str, ...]) -> Path:
    """Resolve a manifest id to a file: as given, with the configured extension, or any known one."""
    candidates = [folder / file_id]
    if extension:
        candidates.append(folder / f"{file_id}{extension}")
    candidates += [folder / f"{file_id}{e}" for e in exts]
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(f"{folder}: no file for id {file_id!r} (tried {', '.join(p.name for p in candidates[:4])}, ...); "
                    "check [data] extension / path_column or the file list")


def _read_manifest(cfg: WorkspaceConfig, path: Path, folder: Path, exts: tuple[str, ...], labelled: bool) -> pd.DataFrame:
    d = cfg.data
    df = pd.read_csv(path, dtype={d.id_column: str})
    needed = [d.id_column] + (list(cfg.competition.targets) if labelled else [])
    needed += [c for c in (d.group_column, d.path_column) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not found; columns are {list(df.columns)} "
                        "(fix [data] id_column / [competition] targets / group_column / path_column)")
    out = df.rename(columns={d.id_column: "id"}).copy()
    out["id"] = out["id"].astype(str)
    rel = out[d.path_column].astype(str) if d.path_column else out["id"]
    out["path"] = [str(_find_file(folder, r, d.extension, exts)) for r in rel]
    return out


def _read_sample_submission(cfg: WorkspaceConfig) -> pd.DataFrame | None:
    if not cfg.data.sample_submission:
        return None
    path = cfg.resolve(cfg.data.sample_submission)
    sample = pd.read_csv(path, dtype={cfg.data.id_column: str})
    if cfg.data.id_column not in sample.columns:
        raise DataError(f"{path}: id column {cfg.data.id_column!r} not found; columns are {list(sample.columns)}")
    return sample


# ----------------------------------------------------------------------------- tabular


def _load_tabular(cfg: WorkspaceConfig) -> Dataset:
    d = cfg.data
    path = cfg.resolve(d.train_csv)
    df = pd.read_csv(path, dtype={d.id_column: str})  # ids stay text: '00012' must not become 12
    targets = list(cfg.competition.targets)
    needed = [d.id_column] + targets + [c for c in (d.group_column,) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not found; columns are {list(df.columns)[:12]}... "
                        "(fix [data] id_column / group_column or [competition] targets)")
    features = _feature_columns(cfg, df, path, exclude=set(needed))
    train = df[[c for c in needed]].rename(columns={d.id_column: "id"}).copy()
    train["id"] = train["id"].astype(str)
    arrays = {"train": _numeric_matrix(df, features, path, d.id_column)}
    test = pd.DataFrame(columns=["id"])
    if d.test_csv:
        tpath = cfg.resolve(d.test_csv)
        tdf = pd.read_csv(tpath, dtype={d.id_column: str})
        miss = [c for c in [d.id_column] + features if c not in tdf.columns]
        if miss:
            raise DataError(f"{tpath}: column(s) {miss[:10]} of the training features are missing")
        test = pd.DataFrame({"id": tdf[d.id_column].astype(str)})
        arrays["test"] = _numeric_matrix(tdf, features, tpath, d.id_column)
    ds = Dataset(train=train, test=test, holdout=pd.DataFrame(columns=["id"]), classes=list(d.classes),
                 targets=targets, arrays=arrays, sample_submission=_read_sample_submission(cfg))
    ds.feature_names = features  # type: ignore[attr-defined]
    return ds


def _feature_columns(cfg: WorkspaceConfig, df: pd.DataFrame, path: Path, exclude: set[str]) -> list[str]:
    d = cfg.data
    if d.feature_columns:
        missing = [c for c in d.feature_columns if c not in df.columns]
        if missing:
            raise DataError(f"{path}: [data] feature_columns {missing} not found")
        return list(d.feature_columns)
    drop = set(d.drop_columns) | exclude
    bad = [c for c in d.drop_columns if c not in df.columns]
    if bad:
        raise DataError(f"{path}: [data] drop_columns {bad} not found; columns are {list(df.columns)[:12]}...")
    cols = [c for c in df.columns if c not in drop and pd.api.types.is_numeric_dtype(df[c])]
    if not cols:
        raise DataError(f"{path}: no numeric feature columns left after excluding {sorted(drop)}")
    return cols


def _numeric_matrix(df: pd.DataFrame, cols: list[str], path: Path, id_col: str) -> np.ndarray:
    X = df[cols].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} NaN/inf feature value(s); first at row {r + 2} "
                        f"(id {df[id_col].iloc[r]!r}), column {cols[c]!r}. Impute or drop them before training.")
    return X.astype(np.float32)


# ----------------------------------------------------------------------------- arrays


def _load_split_arrays(cfg: WorkspaceConfig, split: str, labelled: bool) -> tuple[pd.DataFrame, np.ndarray]:
    folder = cfg.resolve(split) / cfg.data.array_feature
    xp, yp = folder / "X.npy", folder / "labels.npy"
    if not xp.is_file():
        raise DataError(f"{xp} not found ([data] array_feature = {cfg.data.array_feature!r}; "
                        f"the layout is <root>/<split>/<mfccs|melgrams>/X.npy)")
    X = np.load(xp, mmap_mode="r")
    df = pd.DataFrame({"id": [f"{Path(split).name}_{i:06d}" for i in range(len(X))]})
    if labelled or yp.is_file():
        if not yp.is_file():
            raise DataError(f"{yp} not found: a labelled split needs labels.npy beside X.npy")
        y = np.load(yp, allow_pickle=False)
        if len(y) != len(X):
            raise DataError(f"{folder}: X.npy has {len(X)} rows but labels.npy has {len(y)}")
        df[cfg.competition.targets[0]] = y.astype(str)
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 3 and cfg.data.array_feature == "melgrams":
        X = X.transpose(0, 2, 1)  # stored (n, frames, mels) -> (n, mels, frames)
    bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
    if bad.any():
        raise DataError(f"{xp}: {int(bad.sum())} row(s) contain NaN/inf, first at index {int(np.argmax(bad))}")
    return df, X


def _load_arrays(cfg: WorkspaceConfig) -> Dataset:
    d = cfg.data
    train, Xtr = _load_split_arrays(cfg, d.train_split, labelled=True)
    arrays = {"train": Xtr}
    holdout = pd.DataFrame(columns=["id"])
    if d.holdout_splits:
        parts = [_load_split_arrays(cfg, s, labelled=True) for s in d.holdout_splits]
        holdout = pd.concat([p[0] for p in parts], ignore_index=True)
        arrays["holdout"] = np.concatenate([p[1] for p in parts])
    test = pd.DataFrame(columns=["id"])
    if d.test_split:
        test, arrays["test"] = _load_split_arrays(cfg, d.test_split, labelled=False)
    return Dataset(train=train, test=test, holdout=holdout, classes=list(d.classes),
                   targets=list(cfg.competition.targets), arrays=arrays,
                   sample_submission=_read_sample_submission(cfg))


# ----------------------------------------------------------------------------- checks


def _assign_groups(cfg: WorkspaceConfig, ds: Dataset) -> None:
    """Group = configured column, else a regex capture on the id, else the id itself."""
    d = cfg.data
    df = ds.train
    if d.group_column:
        df["group"] = df[d.group_column].astype(str)
    elif d.group_pattern:
        pat = re.compile(d.group_pattern)
        groups = []
        for i in df["id"]:
            m = pat.search(i)
            if not m:
                raise DataError(f"[data] group_pattern {d.group_pattern!r} does not match id {i!r}")
            groups.append(m.group(1) if m.groups() else m.group(0))
        df["group"] = groups
    else:
        df["group"] = df["id"]


def _check(cfg: WorkspaceConfig, ds: Dataset) -> None:
    for split in SPLITS:
        df = ds.frame(split)
        dup = df["id"][df["id"].duplicated()]
        if len(dup):
            raise DataError(f"{split}: duplicate id(s) {dup.unique()[:5].tolist()} — ids must be unique")
    if not len(ds.train):
        raise DataError(f"{cfg.path}: the training split is empty")
    if cfg.is_classification:
        _check_classes(cfg, ds)
    else:
        for split in ("train", "holdout"):
            df = ds.frame(split)
            if len(df):
                vals = pd.to_numeric(df[ds.targets].stack(), errors="coerce")
                if vals.isna().any() or len(vals) != len(df) * len(ds.targets):
                    raise DataError(f"{split}: regression target(s) {ds.targets} contain missing or non-numeric values")
    if ds.sample_submission is not None and len(ds.test):
        _check_test_ids(cfg, ds)


def _check_classes(cfg: WorkspaceConfig, ds: Dataset) -> None:
    target = ds.targets[0]
    for split in ("train", "holdout"):
        df = ds.frame(split)
        if len(df) and df[target].isna().any():
            r = int(np.argmax(df[target].isna().to_numpy()))
            raise DataError(f"{split}: row {r} (id {df['id'].iloc[r]!r}) has no label in column {target!r}")
        if len(df):
            df[target] = df[target].astype(str)
    found = sorted(set(ds.train[target]))
    if not ds.classes:
        ds.classes = found
    unknown = sorted((set(ds.train[target]) | set(ds.holdout.get(target, pd.Series(dtype=str)))) - set(ds.classes))
    if unknown:
        bad = ds.train[ds.train[target].isin(unknown)]
        first = bad["id"].iloc[0] if len(bad) else "(holdout)"
        raise DataError(f"label(s) {unknown} (first at id {first!r}) are not in [data] classes = {ds.classes}; "
                        "add them to the class list or fix the labels")
    if len(ds.classes) < 2:
        raise DataError(f"need at least 2 classes, found {ds.classes}")


def _check_test_ids(cfg: WorkspaceConfig, ds: Dataset) -> None:
    sample_ids = set(ds.sample_submission[cfg.data.id_column].astype(str))
    test_ids = set(ds.test["id"])
    missing, extra = sorted(sample_ids - test_ids), sorted(test_ids - sample_ids)
    if missing or extra:
        raise DataError(f"test ids do not match {cfg.data.sample_submission}: {len(missing)} id(s) in the sample "
                        f"submission have no test row (e.g. {missing[:3]}), {len(extra)} test row(s) are not in "
                        f"the sample submission (e.g. {extra[:3]})")
