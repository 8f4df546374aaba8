"""Data adapters: turn a real on-disk layout into one table of rows.

Every adapter returns a :class:`Dataset` whose ``train`` / ``test`` /
``holdout`` frames share the columns ``id``, ``group`` and, for labelled
splits, the target column(s); audio and image rows also carry ``path``.
Feature-vector layouts (tabular CSV, ``X.npy`` arrays) carry their matrices in
``Dataset.arrays``. Nothing here decodes audio: that is the feature stage's
job (``src.features``), which also handles corrupt clips.

Ids are unique by construction:

* manifest, tabular and sample-submission rows: the id column, read as text (``'00012'`` stays so);
* the ``folders`` layout, and a test folder listed without a sample submission: the file stem
  (``blues.00000``) when every stem of the listing is unique; when two files share a stem
  (``classical/1.mp3`` and ``rock/1.mp3``) every id of that listing is the path relative to the
  listed folder without extension (``classical/1``), and with the extension where even that
  collides (``a/0.flac`` beside ``a/0.wav``);
* the arrays layout: ``<split>_<index:06d>``.

Folder listings follow symbolic links to folders (``/kaggle/input`` is read-only, so class folders
are often linked into a writable tree); each real folder is listed once, so a link loop ends.

Bad input is a :class:`DataError` naming the file, the row (1-based CSV line and id) and the column
or key. Files that the data names but that are missing, or are folders, are listed together in one
error; with ``[data] on_corrupt = "skip"`` they are kept in ``Dataset.missing`` and
``src.features.prepare`` skips them with the same policy as corrupt clips.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import AUDIO_EXTENSIONS, WorkspaceConfig
from .errors import DataError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test", "holdout")
LISTING_LIMIT = 20  # bad files named one by one in an error; the rest are counted
SKIP_FIX = ("or set [data] on_corrupt = 'skip' to skip them (training rows are dropped, test rows are predicted "
            "with the training prior; all are listed in the run)")


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
    # files the data names that are absent or folders (split, id, path, error); only with on_corrupt = "skip"
    missing: list[dict] = field(default_factory=list)
    source: dict[str, Path] = field(default_factory=dict)  # split -> the CSV its rows came from (for line numbers)
    # [data] merge_classes / min_class_count: training rows per class before and after, what was merged and dropped
    class_changes: dict = field(default_factory=dict)
    # multilabel: split -> (n_rows, n_classes) float32 label matrix (src.multilabel)
    label_matrix: dict[str, np.ndarray] = field(default_factory=dict)

    def frame(self, split: str) -> pd.DataFrame:
        return getattr(self, split)

    def labels(self, split: str = "train") -> np.ndarray:
        """Integer class indices (classification), the (n, C) label matrix (multilabel) or float targets (regression)."""
        if self.label_matrix:
            return self.label_matrix.get(split, np.zeros((0, len(self.classes)), np.float32))
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


def format_listing(records: list[dict], limit: int | None = LISTING_LIMIT) -> str:
    """``  split/id: path: error`` lines for bad files, the first ``limit`` of them (None: all) and a count of the rest."""
    lines = [f"  {r['split'] + '/' if r['split'] else ''}{r['id']}: {r['path']}: {r['error']}" for r in records[:limit]]
    if limit is not None and len(records) > limit:
        lines.append(f"  ... and {len(records) - limit} more")
    return "\n".join(lines)


def _read_csv(path: Path, require_rows: bool = False, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose failures name the file: empty, unparsable, not text, or (``require_rows``) no rows."""
    try:
        df = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (0 bytes or only blank lines)",
                        "re-download or re-export it; a CSV needs a header line and one line per row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {str(exc).strip()}",
                        "fix the line named (a stray comma or quote), or re-export the file as comma-separated UTF-8") from None
    if require_rows and not len(df):
        raise DataError(f"{path}: the CSV has a header but no rows", "re-download or re-export it with its data rows")
    return df


# ----------------------------------------------------------------------------- files


def _raise(exc: OSError) -> None:
    raise exc  # os.walk would otherwise skip an unreadable folder without a word


def _list_files(folder: Path, exts: tuple[str, ...]) -> tuple[list[Path], dict[Path, str]]:
    """Files named ``*<ext>`` under ``folder``, following symlinked folders, each real folder once.

    ``Path.rglob`` does not follow links to folders on Python 3.11, so linked class folders would be
    missed. Also returns the entries that carry such a name but are no file (a folder ``x.wav/``, a
    broken link), with the reason, so they are reported instead of silently left out.
    """
    files: list[Path] = []
    bad: dict[Path, str] = {}
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_raise):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            log.warning("%s: this folder was already listed (symbolic link loop, or a second link to it); not listed again", dirpath)
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        here = Path(dirpath)
        for name in [n for n in dirnames if Path(n).suffix.lower() in exts]:
            bad[here / name] = "is a directory, not a file"
            dirnames.remove(name)
        for name in filenames:
            p = here / name
            if p.suffix.lower() in exts:
                if p.is_file():
                    files.append(p)
                else:
                    bad[p] = "is not a regular file (broken symbolic link?)"
    return sorted(files), bad


def _listing_ids(entries: list[Path], folder: Path) -> list[str]:
    """Stems if they are unique, else relative paths without extension, else with it (see the module docstring)."""
    rel = [p.relative_to(folder) for p in entries]
    for kind, ids in (("file stems", [r.stem for r in rel]),
                      ("relative paths without extension", [r.with_suffix("").as_posix() for r in rel]),
                      ("relative paths", [r.as_posix() for r in rel])):
        if len(set(ids)) == len(ids):
            if kind != "file stems":
                log.info("%s: file names repeat across sub-folders, so ids are %s (e.g. %r)", folder, kind, ids[0])
            return ids
    raise AssertionError(f"{folder}: two listed entries have the same relative path")


def _folder_frame(folder: Path, exts: tuple[str, ...], split: str, target: str | None, problems: list[dict]) -> pd.DataFrame:
    """One row per file under ``folder``; with ``target`` the label is the first sub-folder (the class)."""
    files, bad = _list_files(folder, exts)
    if target and not files:
        raise DataError(f"{folder}: no {'/'.join(exts)} files found",
                        "the 'folders' layout expects <train_dir>/<class>/<file>; check [data] train_dir and layout")
    entries = sorted([*files, *bad])
    ids = _listing_ids(entries, folder)
    df = pd.DataFrame({"id": ids, "path": [str(p) for p in entries]})
    if target:
        parts = [p.relative_to(folder).parts for p in entries]
        flat = [p for p, pa in zip(entries, parts) if len(pa) < 2]
        if flat:
            raise DataError(f"{folder}: layout 'folders' needs files inside one sub-folder per class; {flat[0]} is not",
                            "move the files into <train_dir>/<class>/, or use layout = 'manifest' with a train.csv")
        df.insert(1, target, [pa[0] for pa in parts])
    problems += [{"split": split, "id": i, "path": str(p), "error": bad[p]} for i, p in zip(ids, entries) if p in bad]
    return df


def _load_files(cfg: WorkspaceConfig) -> Dataset:
    d = cfg.data
    exts = AUDIO_EXTENSIONS if d.kind == "audio" else IMAGE_EXTENSIONS
    train_dir = cfg.resolve(d.train_dir)
    problems: list[dict] = []  # every missing file of every split, reported together
    source: dict[str, Path] = {}
    if d.layout == "folders":
        label = None if d.targets_csv else cfg.competition.targets[0]  # with targets_csv a folder is no class
        train = _folder_frame(train_dir, exts, "train", label, problems)
    else:
        source["train"] = cfg.resolve(d.manifest)
        train = _read_manifest(cfg, source["train"], train_dir, exts, problems)
    if d.targets_csv:
        source["targets"] = cfg.resolve(d.targets_csv)
        train = _join_targets(cfg, train, source["targets"])
    test = pd.DataFrame(columns=["id", "path"])
    sample = _read_sample_submission(cfg)
    if d.test_dir:
        test_dir = cfg.resolve(d.test_dir)
        if cfg.test.window_seconds:  # long files predicted per window: the rows come from the files, not the sample
            test = list_windows(cfg, test_dir, exts, problems)
        elif sample is not None:
            ids = sample[d.id_column].astype(str).tolist()
            test = pd.DataFrame({"id": ids, "path": _resolve_paths(cfg, test_dir, ids, ids, "test", exts, problems)})
            source["test"] = cfg.resolve(d.sample_submission)
        else:
            test = _folder_frame(test_dir, exts, "test", None, problems)
    return Dataset(train=train, test=test, holdout=pd.DataFrame(columns=["id"]), classes=list(cfg.data.classes),
                   targets=list(cfg.competition.targets), sample_submission=sample,
                   missing=_report_missing(cfg, problems), source=source)


def _resolve(folder: Path, rel: str, file_id: str, extension: str, exts: tuple[str, ...]) -> tuple[Path, str]:
    """The file an entry names (as given, + ``[data] extension``, + any known one), and ``""``;
    or, when there is none, the path it should have had and what is wrong."""
    candidates = [folder / rel] + ([folder / f"{rel}{extension}"] if extension else []) + [folder / f"{rel}{e}" for e in exts]
    for c in candidates:
        if c.is_file():
            return c, ""
    known = (*exts, extension.lower()) if extension else exts
    for c in candidates:
        if c.suffix.lower() in known and c.is_dir():
            return c, "is a directory, not a file"
    expected = candidates[0] if Path(rel).suffix.lower() in known or not extension else candidates[1]
    tried = ", ".join(c.relative_to(folder).as_posix() for c in candidates[:4])
    return expected, f"no file for id {file_id!r} (tried {tried}, ...)"


def _resolve_paths(cfg: WorkspaceConfig, folder: Path, ids: list[str], rels: list[str], split: str,
                   exts: tuple[str, ...], problems: list[dict]) -> list[str]:
    """Paths of the entries; the ones that do not resolve are appended to ``problems``."""
    out = []
    for file_id, rel in zip(ids, rels):
        path, problem = _resolve(folder, rel, file_id, cfg.data.extension, exts)
        if problem:
            problems.append({"split": split, "id": file_id, "path": str(path), "error": problem})
        out.append(str(path))
    return out


def _report_missing(cfg: WorkspaceConfig, problems: list[dict]) -> list[dict]:
    """All missing files in one error; with ``on_corrupt = "skip"`` they go on to the feature stage's skip policy."""
    if not problems:
        return []
    what = f"{len(problems)} file(s) are missing or not regular files:\n{format_listing(problems)}"
    if cfg.data.on_corrupt == "error":
        raise DataError(what, "restore the files or fix [data] train_dir / test_dir / extension / path_column; " + SKIP_FIX)
    log.warning("%s\n[data] on_corrupt = 'skip': these rows will be skipped like unusable clips", what)
    return problems


def _read_manifest(cfg: WorkspaceConfig, path: Path, folder: Path, exts: tuple[str, ...], problems: list[dict]) -> pd.DataFrame:
    d = cfg.data
    df = _read_csv(path, require_rows=True, dtype={d.id_column: str})
    needed = [d.id_column] + ([] if d.targets_csv else list(cfg.competition.targets))
    needed += [c for c in (d.group_column, d.path_column) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not found; columns are {list(df.columns)} "
                        "(fix [data] id_column / [competition] targets / group_column / path_column)")
    out = df.rename(columns={d.id_column: "id"}).copy()
    out["id"] = out["id"].astype(str)
    rel = out[d.path_column].astype(str) if d.path_column else out["id"]
    out["path"] = _resolve_paths(cfg, folder, out["id"].tolist(), rel.tolist(), "train", exts, problems)
    return out


def _join_targets(cfg: WorkspaceConfig, train: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``[data] targets_csv``: each training row's target columns from a second CSV, matched on ``targets_key``.

    A key names a row by its id or by its file name (``blues.00000.wav`` for ``genres/blues/blues.00000.wav``,
    whose id is ``blues.00000``): a features table names files, a folder listing gives stems. Table rows
    that match no file are left out (a 500-clip table for 50 files); a file without a table row is an error.
    """
    key, targets = cfg.data.targets_key, list(cfg.competition.targets)
    table = _read_csv(path, require_rows=True, dtype={key: str})
    missing = [c for c in [key, *targets] if c not in table.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} not found; columns are {list(table.columns)[:15]}",
                        "fix [data] targets_key or [competition] targets")
    clash = [t for t in targets if t in train.columns]
    if clash:
        raise DataError(f"{cfg.resolve(cfg.data.manifest)}: target column(s) {clash} are in the manifest and in [data] targets_csv {path}",
                        "keep the targets in one place: remove targets_csv, or those manifest columns")
    keys = table[key].astype(str)
    dup = keys[keys.duplicated()]
    if len(dup):
        raise DataError(f"{path} line {int(dup.index[0]) + 2}: key {dup.iloc[0]!r} (column {key!r}) appears more than once",
                        "a key must name one row: remove the repeated rows")
    line = pd.Series(np.arange(len(table)), index=keys.to_numpy())
    by_id, by_name = train["id"].map(line), train["path"].map(lambda p: Path(p).name).map(line)
    at = by_id.fillna(by_name)
    if at.isna().any() or at.duplicated().any():
        bad = train[at.isna() | at.duplicated(keep=False)]
        what = "no row" if at.isna().any() else "the same row as another file"
        raise DataError(f"{path}: {len(bad)} training file(s) have {what} whose {key!r} is their id or file name "
                        f"(e.g. id {bad['id'].iloc[0]!r}, file {Path(bad['path'].iloc[0]).name!r})",
                        "add their rows to the table, or remove the files (or their manifest rows)")
    rows = table.iloc[at.astype(int).to_numpy()]
    _check_target_cells(cfg, rows, path, key, targets)
    log.info("%s: targets %s for %d training file(s) (%d table row(s) match no file)", path, targets, len(train), len(table) - len(train))
    return train.assign(**{t: rows[t].to_numpy() for t in targets})


def _check_target_cells(cfg: WorkspaceConfig, rows: pd.DataFrame, path: Path, key: str, targets: list[str]) -> None:
    """An empty target cell (or, for regression, a non-numeric one) in the joined rows, named by CSV line, key and column."""
    cells = rows[targets]
    bad = cells.isna() if cfg.has_classes else cells.apply(pd.to_numeric, errors="coerce").isna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        what = "is empty" if cfg.has_classes else "is not a number"
        raise DataError(f"{path} line {int(rows.index[r]) + 2} (key {rows[key].iloc[r]!r}), column {targets[c]!r}: "
                        f"{cells.iloc[r, c]!r} {what} ({int(bad.to_numpy().sum())} such cell(s) in the training rows)",
                        "fix or fill the cell(s), or remove those files")


def _read_sample_submission(cfg: WorkspaceConfig) -> pd.DataFrame | None:
    if not cfg.data.sample_submission:
        return None
    path = cfg.resolve(cfg.data.sample_submission)
    id_col = sample_id_column(cfg, _read_csv(path, nrows=0))
    sample = _read_csv(path, dtype={id_col: str})
    if id_col not in sample.columns:
        raise DataError(f"{path}: id column {cfg.data.id_column!r} not found; columns are {list(sample.columns)}")
    return sample


def sample_id_column(cfg: WorkspaceConfig, sample: pd.DataFrame) -> str:
    """The sample submission's id column: ``[data] id_column``; for a windowed test set whose sample lacks it (BirdCLEF:
    training rows are named by ``filename``, submission rows by ``row_id``), the sample's first column."""
    if cfg.data.id_column in sample.columns or not cfg.test.window_seconds:
        return cfg.data.id_column
    return str(sample.columns[0])


def list_windows(cfg: WorkspaceConfig, folder: Path, exts: tuple[str, ...], problems: list[dict]) -> pd.DataFrame:
    """One test row per ``[test] window_seconds`` window of every file under ``folder``, in file order then time order.

    Columns: ``id`` (``[test] row_id_template``), ``path``, ``file`` (the file's listing id), ``start_s``, ``end_s``.
    Durations come from the file headers (soundfile.info; nothing is decoded). A trailing part of at least half a
    window becomes a last window padded with zeros past the end of the file; a shorter one is dropped (logged);
    BirdCLEF soundscapes are whole multiples of 5 s, so neither happens there. Unreadable headers go to ``problems``."""
    files, bad = _list_files(folder, exts)
    entries = sorted([*files, *bad])
    rows: list[dict] = []
    w, template = float(cfg.test.window_seconds), cfg.test.row_id_template
    for file_id, path in zip(_listing_ids(entries, folder), entries):
        seconds = bad.get(path) or _duration(path)
        if isinstance(seconds, str):
            problems.append({"split": "test", "id": file_id, "path": str(path), "error": seconds})
            continue
        for k, start in enumerate(_window_starts(path, seconds, w)):
            rows.append({"id": _row_id(cfg, template, file_id, k, start, start + w), "path": str(path), "file": file_id,
                         "start_s": start, "end_s": start + w})
    df = pd.DataFrame(rows, columns=["id", "path", "file", "start_s", "end_s"])
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"[test] row_id_template {template!r} gives the same row id {dup.iloc[0]!r} to two windows "
                        f"(window_seconds = {w})", "add {index} to the template, or use whole-second windows")
    log.info("%s: %d test file(s) -> %d window row(s) of %g s", folder, len(entries), len(df), w)
    return df


def _duration(path: Path) -> float | str:
    """Seconds of audio from the file header (soundfile.info, librosa's fallback for formats it lacks); else the problem."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception as exc:  # soundfile's errors vary by format; try the fallback, then name both
        try:
            import librosa

            return float(librosa.get_duration(path=str(path)))
        except Exception as exc2:  # audioread's errors vary by backend
            return f"cannot read the audio header: soundfile: {exc}; librosa: {exc2}"


def _window_starts(path: Path, seconds: float, w: float) -> list[float]:
    """Start times of a file's windows: the whole ones, plus a last padded one where at least half a window is left."""
    n = int(np.floor(seconds / w + 1e-6))
    rest = seconds - n * w
    if rest >= w / 2 - 1e-6:
        n += 1
        log.info("%s: last window %.2f-%.2f s holds %.2f s of audio; padded with silence", path, (n - 1) * w, n * w, rest)
    elif rest > 1e-3:
        log.info("%s: trailing %.2f s (< half a %g-s window) not predicted", path, rest, w)
    if n == 0:
        log.warning("%s: %.2f s long, shorter than half a %g-s window: no test row", path, seconds, w)
    return [k * w for k in range(n)]


def _row_id(cfg: WorkspaceConfig, template: str, file_id: str, k: int, start: float, end: float) -> str:
    """A window's row id from ``[test] row_id_template`` ({file}, {start}, {end} in whole seconds, {index})."""
    try:
        return template.format(file=file_id, start=int(round(start)), end=int(round(end)), index=k)
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"{cfg.path}: [test] row_id_template {template!r} cannot be filled: {type(exc).__name__}: {exc}",
                        "use only the fields {file}, {start}, {end} and {index}, e.g. '{file}_{end}'") from None


# ----------------------------------------------------------------------------- tabular


def _load_tabular(cfg: WorkspaceConfig) -> Dataset:
    d = cfg.data
    path = cfg.resolve(d.train_csv)
    df = _read_csv(path, require_rows=True, dtype={d.id_column: str})  # ids stay text: '00012' must not become 12
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
    source = {"train": path}
    test = pd.DataFrame(columns=["id"])
    if d.test_csv:
        tpath = source["test"] = cfg.resolve(d.test_csv)
        tdf = _read_csv(tpath, dtype={d.id_column: str})
        miss = [c for c in [d.id_column] + features if c not in tdf.columns]
        if miss:
            raise DataError(f"{tpath}: column(s) {miss[:10]} of the training features are missing")
        test = pd.DataFrame({"id": tdf[d.id_column].astype(str)})
        arrays["test"] = _numeric_matrix(tdf, features, tpath, d.id_column)
    ds = Dataset(train=train, test=test, holdout=pd.DataFrame(columns=["id"]), classes=list(d.classes),
                 targets=targets, arrays=arrays, sample_submission=_read_sample_submission(cfg), source=source)
    ds.feature_names = features  # type: ignore[attr-defined]
    return ds


def _feature_columns(cfg: WorkspaceConfig, df: pd.DataFrame, path: Path, exclude: set[str]) -> list[str]:
    """Configured feature columns, else every numeric column; a wholly text column is left out (and logged)."""
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
    cols, text = [], []
    for c in df.columns:
        if c not in drop:
            (cols if _is_numeric_column(df[c]) else text).append(c)
    if text:
        log.info("%s: text column(s) %s are not used as features (list them in [data] drop_columns to say so)", path, text)
    if not cols:
        raise DataError(f"{path}: no numeric feature columns left after excluding {sorted(drop)}")
    return cols


def _is_numeric_column(s: pd.Series) -> bool:
    """Numeric, or numeric except for a few cells: such a column is a feature whose bad cells are an error
    (``_numeric_matrix``), not a column to drop. Mostly or wholly text is not a feature."""
    if pd.api.types.is_numeric_dtype(s):
        return True
    values = s.dropna()
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().mean() > 0.5


def _numeric_matrix(df: pd.DataFrame, cols: list[str], path: Path, id_col: str) -> np.ndarray:
    """The feature columns as float32; a text cell, NaN or inf is an error naming its CSV line, id and column."""
    num = df[cols].apply(pd.to_numeric, errors="coerce")
    text = (num.isna() & df[cols].notna()).to_numpy()
    if text.any():
        r, c = np.argwhere(text)[0]
        raise DataError(f"{path}: {int(text.sum())} non-numeric feature value(s); first at line {r + 2} "
                        f"(id {df[id_col].iloc[r]!r}), column {cols[c]!r}: {df[cols[c]].iloc[r]!r}",
                        "fix or impute the cell(s); a text column that is not a feature goes in [data] drop_columns")
    X = num.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} NaN/inf feature value(s); first at row {r + 2} "
                        f"(id {df[id_col].iloc[r]!r}), column {cols[c]!r}. Impute or drop them before training.")
    return X.astype(np.float32)


# ----------------------------------------------------------------------------- arrays

NPY_FIX = ("re-save it as a plain numeric array, e.g. np.save(path, np.asarray(x, dtype=np.float32)) "
           "(labels: a 1-D array of class names); pickled object arrays are not loaded")


@dataclass
class _SplitArrays:
    df: pd.DataFrame
    X: np.ndarray
    file: Path
    stored: tuple[int, ...]  # item shape as stored in the file


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    """``np.load`` without pickles (a pickle runs code): an object array or a non-.npy file is a DataError."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        kind = "holds Python objects (an object/pickled array)" if re.search("object|pickle", str(exc)) else "is not a readable .npy file"
        raise DataError(f"{path}: {kind}: {exc}", NPY_FIX) from None


def _load_labels(yp: Path, n_rows: int, folder: Path) -> np.ndarray:
    y = _load_npy(yp, mmap=False)
    if y.ndim != 1:
        raise DataError(f"{yp}: labels are not 1-D: shape {y.shape}",
                        "save one label per row, e.g. np.save(path, y.argmax(axis=1)) for one-hot labels, y.ravel() for (n, 1)")
    if len(y) != n_rows:
        raise DataError(f"{folder}: X.npy has {n_rows} rows but labels.npy has {len(y)}")
    return y.astype(str)


def _load_split_arrays(cfg: WorkspaceConfig, split: str, labelled: bool) -> _SplitArrays:
    folder = cfg.resolve(split) / cfg.data.array_feature
    xp, yp = folder / "X.npy", folder / "labels.npy"
    if not xp.is_file():
        raise DataError(f"{xp} not found ([data] array_feature = {cfg.data.array_feature!r}; "
                        f"the layout is <root>/<split>/<mfccs|melgrams>/X.npy)")
    X = _load_npy(xp, mmap=True)
    if X.dtype.kind not in "biuf" or X.ndim < 2:
        raise DataError(f"{xp}: expected a numeric array of shape (n_items, ...), got dtype {X.dtype}, shape {X.shape}", NPY_FIX)
    df = pd.DataFrame({"id": [f"{Path(split).name}_{i:06d}" for i in range(len(X))]})
    if labelled or yp.is_file():
        if not yp.is_file():
            raise DataError(f"{yp} not found: a labelled split needs labels.npy beside X.npy")
        df[cfg.competition.targets[0]] = _load_labels(yp, len(X), folder)
    stored = tuple(X.shape[1:])
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 3 and cfg.data.array_feature == "melgrams":
        X = X.transpose(0, 2, 1)  # stored (n, frames, mels) -> (n, mels, frames)
    bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
    if bad.any():
        raise DataError(f"{xp}: {int(bad.sum())} row(s) contain NaN/inf, first at index {int(np.argmax(bad))}")
    return _SplitArrays(df, X, xp, stored)


def _check_shape(train: _SplitArrays, other: _SplitArrays) -> None:
    """Every split must hold items of train's shape: found at load time, not after fold 0 has trained."""
    if other.stored != train.stored:
        raise DataError(f"{other.file}: items have shape {other.stored}, but {train.file} has {train.stored}",
                        "every split must hold the same features; regenerate the odd file with the training split's parameters")


def _load_arrays(cfg: WorkspaceConfig) -> Dataset:
    d = cfg.data
    tr = _load_split_arrays(cfg, d.train_split, labelled=True)
    arrays = {"train": tr.X}
    holdout = pd.DataFrame(columns=["id"])
    if d.holdout_splits:
        parts = [_load_split_arrays(cfg, s, labelled=True) for s in d.holdout_splits]
        for p in parts:
            _check_shape(tr, p)
        holdout = pd.concat([p.df for p in parts], ignore_index=True)
        arrays["holdout"] = np.concatenate([p.X for p in parts])
    test = pd.DataFrame(columns=["id"])
    if d.test_split:
        te = _load_split_arrays(cfg, d.test_split, labelled=False)
        _check_shape(tr, te)
        test, arrays["test"] = te.df, te.X
    return Dataset(train=tr.df, test=test, holdout=holdout, classes=list(d.classes),
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
    elif cfg.is_multilabel:
        _check_multilabel(cfg, ds)
    else:
        for split in ("train", "holdout"):
            df = ds.frame(split)
            if len(df):
                vals = pd.to_numeric(df[ds.targets].stack(), errors="coerce")
                if vals.isna().any() or len(vals) != len(df) * len(ds.targets):
                    raise DataError(f"{split}: regression target(s) {ds.targets} contain missing or non-numeric values")
    if ds.sample_submission is not None and len(ds.test):
        _check_test_ids(cfg, ds)


def _check_multilabel(cfg: WorkspaceConfig, ds: Dataset) -> None:
    """The label matrix of every labelled split; the class list comes from the training rows (or [data] classes)."""
    from .multilabel import label_matrix

    Y, ds.classes = label_matrix(cfg, ds.train, ds.classes, ds.source.get("train"))
    ds.label_matrix = {"train": Y}
    if len(ds.holdout) and all(t in ds.holdout for t in ds.targets):
        ds.label_matrix["holdout"] = label_matrix(cfg, ds.holdout, ds.classes, ds.source.get("holdout"))[0]
    absent = [c for c, n in zip(ds.classes, (Y > 0).sum(0)) if n == 0]
    if absent:
        log.warning("class(es) %s of [data] classes have no positive training row: they cannot be learned", absent[:10])


def _check_classes(cfg: WorkspaceConfig, ds: Dataset) -> None:
    target = ds.targets[0]
    for split in ("train", "holdout"):
        df = ds.frame(split)
        if len(df) and df[target].isna().any():
            r = int(np.argmax(df[target].isna().to_numpy()))
            raise DataError(f"{_row_ref(ds, split, r)} has no label in column {target!r}",
                            "fill in the label or remove the row")
        if len(df):
            df[target] = df[target].astype(str)
    _check_label_spelling(ds, target)
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
    merge_and_drop_classes(cfg, ds)


def _check_merge(cfg: WorkspaceConfig, known: list[str]) -> dict[str, str]:
    """``[data] merge_classes`` as old class -> merged class, after checking every name (a typo would merge nothing)."""
    where = f"{cfg.path}: [data] merge_classes"
    fix = f"the known classes are {known}; write merge_classes = {{ new_name = [\"a\", \"b\"] }}"
    mapping: dict[str, str] = {}
    for new, members in cfg.data.merge_classes.items():
        unknown = [m for m in members if m not in known]
        if unknown or not members:
            raise DataError(f"{where}.{new} = {members}: " + (f"unknown class(es) {unknown}" if unknown else "lists no class"), fix)
        if new in known and new not in members:
            raise DataError(f"{where}.{new}: {new!r} is an existing class not in its own list {members}",
                            f"add {new!r} to the list to merge the others into it, or choose a new name; {fix}")
        for m in members:
            if m in mapping and mapping[m] != new:
                raise DataError(f"{where}: class {m!r} is listed under both {mapping[m]!r} and {new!r}", "list each class once")
            mapping[m] = new
    return mapping


def merge_and_drop_classes(cfg: WorkspaceConfig, ds: Dataset) -> None:
    """The one place labels change: ``[data] merge_classes`` renames classes into merged ones, then classes with fewer
    than ``[data] min_class_count`` training rows are dropped (their training and holdout rows leave the data; test
    rows stay). Both are input settings (``src.config.data_signature``): a fold file made before is refused as stale."""
    d, target = cfg.data, ds.targets[0]
    if not d.merge_classes and not d.min_class_count:
        return
    before = {c: int(n) for c, n in ds.train[target].value_counts().reindex(ds.classes, fill_value=0).items()}
    mapping = _check_merge(cfg, ds.classes)
    for split in ("train", "holdout"):
        if len(ds.frame(split)) and target in ds.frame(split):
            ds.frame(split)[target] = ds.frame(split)[target].replace(mapping)
    classes = list(dict.fromkeys(mapping.get(c, c) for c in ds.classes))  # [data] classes' order, merged at the first member
    classes = classes if d.classes else sorted(classes)
    counts = ds.train[target].value_counts().reindex(classes, fill_value=0)
    dropped = {c: int(n) for c, n in counts.items() if n < d.min_class_count}
    if dropped:
        log.warning("[data] min_class_count = %d: dropping class(es) with fewer training rows: %s", d.min_class_count, dropped)
        for split in ("train", "holdout"):
            df = ds.frame(split)
            if len(df) and target in df:
                setattr(ds, split, df[~df[target].isin(dropped)].reset_index(drop=True))
    ds.classes = [c for c in classes if c not in dropped]
    if len(ds.classes) < 2:
        raise DataError(f"{cfg.path}: after [data] merge_classes / min_class_count only {ds.classes} remain(s)",
                        f"lower min_class_count (training rows per class: {counts.to_dict()}) or merge fewer classes")
    after = {c: int(n) for c, n in ds.train[target].value_counts().reindex(ds.classes, fill_value=0).items()}
    ds.class_changes = {"before": before, "after": after, "merged": dict(d.merge_classes), "dropped": dropped,
                        "min_class_count": d.min_class_count}
    log.info("classes: %d labelled -> %d trained (merged %s, dropped %s)", len(before), len(ds.classes), dict(d.merge_classes), dropped)


def _check_test_ids(cfg: WorkspaceConfig, ds: Dataset) -> None:
    sample_ids = ds.sample_submission[sample_id_column(cfg, ds.sample_submission)].astype(str)
    test_ids = set(ds.test["id"])
    if cfg.test.window_seconds:  # the sample often lists only some windows: each of them must be a test row
        lost = sample_ids[~sample_ids.isin(test_ids)]
        if len(lost):
            raise DataError(f"{len(lost)} row id(s) of {cfg.data.sample_submission} name no window of the test files, first "
                            f"{lost.iloc[0]!r} (line {int(lost.index[0]) + 2}); the windows are named like {ds.test['id'].iloc[0]!r}",
                            "check [data] test_dir, [test] window_seconds and row_id_template ('{file}_{end}': file stem, "
                            "window end in seconds)")
        return
    sample_ids = set(sample_ids)
    missing, extra = sorted(sample_ids - test_ids), sorted(test_ids - sample_ids)
    if missing or extra:
        raise DataError(f"test ids do not match {cfg.data.sample_submission}: {len(missing)} id(s) in the sample "
                        f"submission have no test row (e.g. {missing[:3]}), {len(extra)} test row(s) are not in "
                        f"the sample submission (e.g. {extra[:3]})")


def _row_ref(ds: Dataset, split: str, r: int) -> str:
    """``<file>: line N (id 'x')`` for a row read from a CSV (header = line 1), else ``<split>: id 'x'``."""
    rid = ds.frame(split)["id"].iloc[r]
    src = ds.source.get(split)
    return f"{src}: line {r + 2} (id {rid!r})" if src else f"{split}: id {rid!r}"


def _check_label_spelling(ds: Dataset, target: str) -> None:
    """``'Rock '`` or ``'rock'`` beside ``'Rock'`` is a typo, not a class: refuse it rather than train a class of one row."""
    labelled = [(s, ds.frame(s)) for s in ("train", "holdout") if len(ds.frame(s)) and target in ds.frame(s)]
    counts = pd.concat([df[target] for _, df in labelled]).value_counts()
    spellings: dict[str, list[str]] = {}
    for lab in [*ds.classes, *counts.index]:
        same = spellings.setdefault(str(lab).strip().casefold(), [])
        if lab not in same:
            same.append(lab)
    for same in (s for s in spellings.values() if len(s) > 1):
        same.sort(key=lambda lab: (lab not in ds.classes, -counts.get(lab, 0)))  # a configured class, else the commonest
        common = same[0]
        rare = next((lab for lab in reversed(same) if lab != common and lab in counts.index), None)
        if rare is None:
            continue
        split, df = next((s, df) for s, df in labelled if (df[target] == rare).any())
        r = int(np.argmax((df[target] == rare).to_numpy()))
        raise DataError(f"{_row_ref(ds, split, r)}: label {rare!r} ({counts[rare]} row(s)) differs from {common!r} "
                        f"({counts.get(common, 0)} row(s)) only by surrounding whitespace or letter case",
                        f"correct the label to {common!r}; if they really are two classes, name them so they differ by more than that")
