"""Multi-label targets: the (n_rows, n_classes) label matrix from the three ways competitions write them.

* one column holding several labels split on ``[data] label_separator`` (Freesound: ``"Bark,Walk_and_footsteps"``);
* BirdCLEF's ``primary_label`` plus ``[data] secondary_labels_column`` holding a Python-list string
  (``"['barswa', 'comsan']"``), the secondary labels weighted ``[data] secondary_weight`` (a weaker target);
* several 0/1 target columns, one per class (``[competition] targets = ["Bark", "Walk", ...]``).

Every row needs at least one positive label; a label outside ``[data] classes`` (when it is given), an
unparsable list or a value other than 0/1 is a :class:`DataError` naming the file, line, id and column.
The fold file's ``label`` column holds each row's positive classes joined by :data:`JOIN`, so a change of
labels makes a fold file stale like any relabelling.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from .config import WorkspaceConfig
from .errors import DataError

JOIN = "|"  # fold files: "Bark|Walk_and_footsteps"


def _where(path: Path | None, df: pd.DataFrame, r: int, column: str) -> str:
    """``file line L (id X), column C`` for row position r of a frame read from ``path``."""
    line = f" line {int(df.index[r]) + 2}" if path is not None else f" row {r + 1}"
    return f"{path or 'training data'}{line} (id {df['id'].iloc[r]!r}), column {column!r}"


def _split(cell: object, sep: str) -> list[str]:
    if pd.isna(cell):
        return []
    parts = str(cell).split(sep) if sep else [str(cell)]
    return [p.strip() for p in parts if p.strip()]


def _secondary(cell: object, where: str) -> list[str]:
    """``"['a', 'b']"`` (BirdCLEF), ``"[]"`` or empty -> list of labels; anything else is an error."""
    if pd.isna(cell) or str(cell).strip() in ("", "[]"):
        return []
    try:
        value = ast.literal_eval(str(cell))
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: {cell!r} is not a list of labels", "write it as a Python list string, e.g. \"['barswa', 'comsan']\" or []")
    return [v.strip() for v in value if v.strip()]


def _from_label_columns(cfg: WorkspaceConfig, df: pd.DataFrame, path: Path | None) -> tuple[list[list[str]], list[list[str]]]:
    """(primary labels, secondary labels) per row from the label column (and the secondary column)."""
    d, target = cfg.data, cfg.competition.targets[0]
    primary = [_split(v, d.label_separator) for v in df[target]]
    secondary: list[list[str]] = [[] for _ in range(len(df))]
    if d.secondary_labels_column:
        if d.secondary_labels_column not in df.columns:
            raise DataError(f"{path}: [data] secondary_labels_column {d.secondary_labels_column!r} not found; columns are {list(df.columns)[:15]}",
                            "fix the column name")
        secondary = [_secondary(v, _where(path, df, r, d.secondary_labels_column)) for r, v in enumerate(df[d.secondary_labels_column])]
    empty = [r for r, p in enumerate(primary) if not p]
    if empty:
        raise DataError(f"{_where(path, df, empty[0], target)}: no label ({len(empty)} row(s) without one)",
                        "every training row needs at least one label: fill it in or remove the row")
    return primary, secondary


def _from_binary_columns(cfg: WorkspaceConfig, df: pd.DataFrame, path: Path | None) -> np.ndarray:
    cols = list(cfg.competition.targets)
    values = df[cols].apply(pd.to_numeric, errors="coerce")
    bad = ~values.isin([0, 1]).to_numpy()
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{_where(path, df, r, cols[c])}: {df[cols[c]].iloc[r]!r} is not 0 or 1",
                        "one 0/1 column per class: 1 where the class is present")
    Y = values.to_numpy(dtype=np.float32)
    empty = np.flatnonzero(Y.sum(1) == 0)
    if len(empty):
        raise DataError(f"{_where(path, df, int(empty[0]), cols[0])}: every class column is 0 ({len(empty)} such row(s))",
                        "every training row needs at least one positive class: fix or remove the row")
    return Y


def label_matrix(cfg: WorkspaceConfig, df: pd.DataFrame, classes: list[str], path: Path | None = None) -> tuple[np.ndarray, list[str]]:
    """(Y, classes): Y (n_rows, n_classes) float32 in [0, 1]; classes from ``[data] classes`` or sorted from the data."""
    if len(cfg.competition.targets) > 1:
        return _from_binary_columns(cfg, df, path), list(cfg.competition.targets)
    primary, secondary = _from_label_columns(cfg, df, path)
    found = sorted({c for row in primary + secondary for c in row})
    classes = list(classes) or found
    idx = {c: i for i, c in enumerate(classes)}
    Y = np.zeros((len(df), len(classes)), dtype=np.float32)
    for r, (prim, sec) in enumerate(zip(primary, secondary)):
        for labels, weight, col in ((sec, cfg.data.secondary_weight, cfg.data.secondary_labels_column),
                                    (prim, 1.0, cfg.competition.targets[0])):
            unknown = [c for c in labels if c not in idx]
            if unknown:
                raise DataError(f"{_where(path, df, r, col)}: label(s) {unknown} are not in [data] classes ({len(classes)} classes)",
                                "add them to [data] classes, or fix the label (a typo, or the wrong label_separator?)")
            Y[r, [idx[c] for c in labels]] = np.maximum(Y[r, [idx[c] for c in labels]], weight)
    if len(classes) < 2:
        raise DataError(f"{path}: need at least 2 classes, found {classes}", "check [competition] targets and [data] label_separator")
    return Y, classes


def label_strings(Y: np.ndarray, classes: list[str]) -> np.ndarray:
    """Each row's positive classes joined by :data:`JOIN` (the fold file's ``label`` column)."""
    names = np.asarray(classes, dtype=object)
    return np.array([JOIN.join(names[row > 0]) for row in Y], dtype=object)


def matrix_from_strings(texts, classes: list[str]) -> tuple[np.ndarray, tuple[int, str] | None]:
    """The inverse of :func:`label_strings`: (Y (n, C) 0/1, None), or (partial Y, (row, label)) for the first label
    that is not in ``classes``."""
    idx = {c: i for i, c in enumerate(classes)}
    Y = np.zeros((len(texts), len(classes)), dtype=np.float32)
    for r, text in enumerate(texts):
        for name in filter(None, str(text).split(JOIN)):
            if name not in idx:
                return Y, (r, name)
            Y[r, idx[name]] = 1.0
    return Y, None
