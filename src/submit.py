"""Write a Kaggle submission CSV from a run: ``python -m src.submit RUN [--name NAME] [--message MSG] [--threshold T]``.

Later, ``python -m src.submit --score NAME.csv --public 0.81 [--private 0.80]`` records the
leaderboard score next to the CV score in ``submissions/index.csv``.

The CSV copies ``sample_submission.csv`` exactly: the same ids in the same
order and the same columns. If the sample has one column besides the id, it
gets class labels (argmax, names from the run's class list); if its columns
are the class names, it gets probabilities. A multilabel run always gets one
probability column per class (its sigmoid outputs, rows not summing to 1). A
windowed test set (``[test] window_seconds``, BirdCLEF) gets one row per window
of every test file, in file then time order, since the sample lists only some
windows; every id of the sample must be among them. The file is validated before
it is written and recorded in ``submissions/index.csv``.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import cli
from .artifacts import setup_logging, write_csv
from .errors import SubmissionError
from .runs import load_run

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["file", "time", "runs", "cv_metric", "cv_score", "message", "public_score", "private_score"]


def _is_probability_column(values: pd.Series, classes: list[str]) -> bool:
    """A single value column holds P(positive class) when the task is binary and the sample's values are numbers, not labels."""
    if len(classes) != 2:
        return False
    as_str = values.astype(str)
    if as_str.isin(classes).all():
        return False
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


TASKS = ("classification", "multilabel", "regression")


def _task(task: str) -> str:
    """The run's task, checked (a bool from an old caller would otherwise be read as a wrong task)."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    return task


def build_submission(test_pred: np.ndarray, test_ids: list[str], sample: pd.DataFrame, id_col: str,
                     classes: list[str], task: str, threshold: float | None = None, windowed: bool = False) -> pd.DataFrame:
    """Fill the sample submission's columns from test predictions (rows aligned with ``test_ids``).

    Rows: the sample's ids in its order; for a windowed test set (``windowed``, BirdCLEF) every test row in the
    run's order (file, then time), since the sample lists only some windows; each of its ids must be among them.
    Classification: labels from the run's class list (argmax, or for two classes ``classes[1]`` when
    P(classes[1]) >= ``threshold``), or the probabilities where the sample has one column per class; a binary
    competition whose sample has one numeric column gets P(classes[1]). Multilabel: always one probability column
    per class (sigmoid outputs as they are, not renormalised), never an argmax label.
    """
    task = _task(task)
    if len(test_ids) != len(test_pred):
        raise SubmissionError(f"{len(test_pred)} test predictions for {len(test_ids)} test ids")
    check_test_rows(test_pred, test_ids, task)
    pos = pd.Series(np.arange(len(test_ids)), index=test_ids)
    if pos.index.duplicated().any():
        raise SubmissionError(f"duplicated test id(s) {pos.index[pos.index.duplicated()].unique()[:5].tolist()} in the run's test rows")
    sample_ids = sample[id_col].astype(str)
    if windowed:
        _check_covered(pd.Series(list(test_ids)), sample_ids, "the run's test rows",
                       "re-run the features and the run with the current [test] window_seconds / row_id_template and test files")
    order = np.arange(len(test_ids)) if windowed else pos.reindex(sample_ids).to_numpy()
    if np.isnan(order.astype(float)).any():
        lost = sample_ids[np.isnan(order.astype(float))].tolist()
        raise SubmissionError(f"{len(lost)} sample submission id(s) have no test prediction (e.g. {lost[:3]})")
    pred = test_pred[order.astype(int)]
    ids = np.asarray(test_ids, dtype=object) if windowed else sample_ids.to_numpy()
    value_cols = [c for c in sample.columns if c != id_col]
    if task == "multilabel":
        return _probability_columns(pred, ids, id_col, sample, classes, threshold)
    if task == "classification":
        out = _classification_columns(pred, ids, id_col, sample, value_cols, classes, threshold)
        if out is not None:
            return out
    elif len(value_cols) == pred.shape[1]:
        out = pd.DataFrame({id_col: ids})
        for j, c in enumerate(value_cols):
            out[c] = pred[:, j]
        return out
    raise SubmissionError(f"cannot map predictions onto sample submission columns {value_cols} "
                          f"(classes {classes}): expected one label column or one column per class")


def _probability_columns(pred: np.ndarray, ids: np.ndarray, id_col: str, sample: pd.DataFrame, classes: list[str],
                         threshold: float | None) -> pd.DataFrame:
    """Multilabel: one probability column per class in the sample's column order (a label column would lose the other labels)."""
    value_cols = [c for c in sample.columns if c != id_col]
    if threshold is not None:
        raise SubmissionError("--threshold turns binary probabilities into labels; a multilabel submission holds probabilities",
                              "leave --threshold out")
    if sorted(value_cols) != sorted(classes):
        missing, extra = [c for c in classes if c not in value_cols], [c for c in value_cols if c not in classes]
        raise SubmissionError(f"a multilabel run is written as one probability column per class, but the sample submission's "
                              f"columns {value_cols[:6]} are not the run's classes (classes without a column: {missing[:5]}, "
                              f"columns that are no class: {extra[:5]})",
                              "train on the competition's class list ([data] classes) so it matches the sample's columns")
    return _class_columns(pred, ids, id_col, sample, classes)


def _class_columns(pred: np.ndarray, ids: np.ndarray, id_col: str, sample: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One probability column per class, mapped by name, in the sample's column order."""
    out = pd.DataFrame({id_col: ids, **{c: pred[:, j] for j, c in enumerate(classes)}})
    return out[sample.columns.tolist()]


def _classification_columns(pred: np.ndarray, ids: np.ndarray, id_col: str, sample: pd.DataFrame, value_cols: list[str],
                            classes: list[str], threshold: float | None) -> pd.DataFrame | None:
    """Single-label output: P(positive) column, thresholded or argmax labels, or one probability column per class."""
    if len(value_cols) == 1 and _is_probability_column(sample[value_cols[0]], classes):
        return pd.DataFrame({id_col: ids, value_cols[0]: pred[:, 1]})
    if len(value_cols) == 1 and threshold is not None:
        if len(classes) != 2:
            raise SubmissionError(f"--threshold needs two classes, the run has {len(classes)}: {classes}")
        labels = np.asarray(classes, dtype=object)[(pred[:, 1] >= threshold).astype(int)]
        return pd.DataFrame({id_col: ids, value_cols[0]: labels})
    if sorted(value_cols) == sorted(classes):
        return _class_columns(pred, ids, id_col, sample, classes)
    if len(value_cols) == 1:
        return pd.DataFrame({id_col: ids, value_cols[0]: np.asarray(classes, dtype=object)[pred.argmax(1)]})
    return None


def check_test_rows(test_pred: np.ndarray, test_ids: list[str], task: str) -> None:
    """Refuse prediction rows that have no answer: argmax turns a NaN row or an all-zero probability row
    into the first class, which then passes every check on the written file (labels are valid names).
    A multilabel row of all-zero probabilities is an answer (no class present); NaN never is."""
    task = _task(task)
    pred = np.asarray(test_pred, dtype=np.float64).reshape(len(test_pred), -1)
    fix = "re-train or resume the run (a diverged fold averages NaN into test.npy); never submit these rows"
    bad = ~np.isfinite(pred).all(1)
    if bad.any():
        r = int(np.argmax(bad))
        raise SubmissionError(f"test.npy row {r} (id {test_ids[r]!r}) holds NaN/inf ({int(bad.sum())} such row(s))", fix)
    zero = (pred <= 0).all(1) if task == "classification" else np.zeros(len(pred), bool)
    if zero.any():
        r = int(np.argmax(zero))
        raise SubmissionError(f"test.npy row {r} (id {test_ids[r]!r}) has all-zero probabilities ({int(zero.sum())} such row(s))", fix)


def validate_submission(sub: pd.DataFrame, sample: pd.DataFrame, id_col: str, classes: list[str] | None = None,
                        prob_tol: float = 1e-3, task: str = "classification", windowed: bool = False) -> None:
    """Refuse anything Kaggle would reject or score wrongly; the message says what and where.

    ``classes``: check the values against the run's classes (labels, or probability columns). ``task`` multilabel:
    probability columns in [0, 1] that need not sum to 1. ``windowed``: the sample lists only some of the test
    windows, so the submission's ids must cover the sample's (any order, more allowed) instead of equalling them."""
    task = _task(task)
    if list(sub.columns) != list(sample.columns):
        missing = [c for c in sample.columns if c not in sub.columns]
        extra = [c for c in sub.columns if c not in sample.columns]
        raise SubmissionError(f"columns {list(sub.columns)} differ from sample submission {list(sample.columns)} "
                              f"(missing {missing}, extra {extra}, or wrong order)",
                              "write the sample's columns in the sample's order (python -m src.submit does)")
    if windowed:
        ids = _check_covered(sub[id_col].astype(str), sample[id_col].astype(str), "the submission",
                             "predict every window of every test file (python -m src.submit RUN writes them all)")
    else:
        ids = _check_ids(sub[id_col].astype(str), sample[id_col].astype(str))
    values = sub.drop(columns=[id_col])
    nan_rows = values.isna().any(axis=1).to_numpy() | np.isinf(values.select_dtypes("number").to_numpy(np.float64)).any(1)
    if nan_rows.any():
        r = int(np.argmax(nan_rows))
        raise SubmissionError(f"{int(nan_rows.sum())} row(s) with empty, inf or NaN values, first at row {r + 2} (id {ids.iloc[r]!r})")
    if classes and sorted(values.columns) == sorted(classes):
        _check_probability_rows(values.to_numpy(float), ids, prob_tol, sums_to_one=task != "multilabel")
    elif classes and task == "multilabel":
        raise SubmissionError(f"a multilabel submission needs one probability column per class; columns are {list(values.columns)[:6]}")
    elif classes and values.shape[1] == 1 and _is_probability_column(sample[values.columns[0]], classes):
        v = pd.to_numeric(values.iloc[:, 0], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v < 0) | (v > 1)
        if bad.any():
            r = int(np.argmax(bad))
            raise SubmissionError(f"{int(bad.sum())} row(s) are not probabilities in [0, 1], first at row {r + 2} (id {ids.iloc[r]!r})")
    elif classes and values.shape[1] == 1:
        unknown = sorted(set(values.iloc[:, 0].astype(str)) - set(classes))
        if unknown:
            raise SubmissionError(f"label(s) {unknown[:5]} are not in the class list {classes}")


def _check_ids(ids: pd.Series, want: pd.Series) -> pd.Series:
    """The sample's ids, each once, in the sample's order (Kaggle matches rows by id but some scorers by position)."""
    dup = ids[ids.duplicated()]
    if len(dup):
        raise SubmissionError(f"duplicated id(s) {dup.unique()[:5].tolist()}")
    missing, extra = sorted(set(want) - set(ids)), sorted(set(ids) - set(want))
    if missing or extra:
        raise SubmissionError(f"{len(missing)} id(s) missing (e.g. {missing[:3]}) and {len(extra)} unexpected id(s) (e.g. {extra[:3]})",
                              "write exactly the sample submission's ids, each once, in its order")
    if not (ids.to_numpy() == want.to_numpy()).all():
        r = int(np.argmax(ids.to_numpy() != want.to_numpy()))
        raise SubmissionError(f"ids are not in the sample submission's order: row {r + 2} has {ids.iloc[r]!r}, expected {want.iloc[r]!r}")
    return ids


def _check_covered(ids: pd.Series, want: pd.Series, what: str, fix: str) -> pd.Series:
    """Windowed test sets: every id of the sample among ``ids``, each of those once (the sample lists only some windows)."""
    dup = ids[ids.duplicated()]
    if len(dup):
        raise SubmissionError(f"{what} repeat(s) row id {dup.iloc[0]!r} ({dup.nunique()} id(s) appear more than once)", fix)
    lost = want[~want.isin(set(ids))]
    if len(lost):
        raise SubmissionError(f"{what} lack(s) row id {lost.iloc[0]!r} of the sample submission (line {int(lost.index[0]) + 2}; "
                              f"{len(lost)} of its {len(want)} id(s) missing); its row ids look like {ids.iloc[0] if len(ids) else None!r}",
                              fix)
    return ids


def _check_probability_rows(arr: np.ndarray, ids: pd.Series, prob_tol: float, sums_to_one: bool = True) -> None:
    """One column per class: every value in [0, 1] and (single-label) every row summing to 1 (an all-zero row sums to 0)."""
    out_of_range = (arr < -prob_tol) | (arr > 1 + prob_tol)
    if out_of_range.any():
        r = int(np.argmax(out_of_range.any(1)))
        raise SubmissionError(f"{int(out_of_range.any(1).sum())} row(s) have probabilities outside [0, 1], first at row {r + 2} (id {ids.iloc[r]!r})")
    if not sums_to_one:
        return
    sums = arr.sum(1)
    bad = np.abs(sums - 1) > prob_tol
    if bad.any():
        r = int(np.argmax(bad))
        raise SubmissionError(f"probabilities of {int(bad.sum())} row(s) do not sum to 1, first at row {r + 2} (sum {sums[r]:.4f}), "
                              f"id {ids.iloc[r]!r}")


def submit(run: str, name: str | None = None, message: str = "", workdir: str | Path = ".", threshold: float | None = None) -> Path:
    """Build, validate, write and index the submission for a run."""
    from .config import load_config
    from .data import load_dataset, sample_id_column

    art = load_run(run, workdir)
    cfg = load_config(art.config["workspace"]["path"])
    ds = load_dataset(cfg)
    if ds.sample_submission is None:
        raise SubmissionError(f"{cfg.path}: [data] sample_submission is not set; a submission needs the competition's sample_submission.csv")
    task, windowed = art.config["task"], bool(cfg.test.window_seconds)
    id_col = sample_id_column(cfg, ds.sample_submission)
    _check_run_rows(art, cfg, len(ds.test))
    sub = build_submission(art.test, ds.test["id"].tolist(), ds.sample_submission, id_col, art.config["classes"], task, threshold, windowed)
    validate_submission(sub, ds.sample_submission, id_col, art.config["classes"] if task != "regression" else None, task=task, windowed=windowed)
    name = name or f"{art.name}"
    path = Path(workdir) / "submissions" / f"{name}.csv"
    write_csv(path, sub)
    metric = art.metrics["metric"]
    cv = art.metrics.get("oof", {}).get(metric)
    members = [Path(m).name for m in art.config.get("members", [])]
    record = {"file": path.name, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "runs": art.name + (f" ({art.config.get('method', 'ensemble')}: {' '.join(members)})" if members else ""),
              "cv_metric": metric, "cv_score": cv, "message": message, "public_score": "", "private_score": "",
              "cv_std": art.metrics.get("std", {}).get(metric, "")}
    append_index(Path(workdir) / "submissions" / "index.csv", record)
    return path


def _check_run_rows(art, cfg, n_test: int) -> None:
    """The run predicted this test set: the same [test] windows (they define the rows) and as many rows."""
    was = art.config.get("workspace", {}).get("test", {}) or {}
    now = {"window_seconds": cfg.test.window_seconds, "row_id_template": cfg.test.row_id_template}
    changed = [k for k in ("window_seconds", "row_id_template") if k in was and was[k] != now[k]]
    fix = f"re-train (or re-predict) run {art.name} with the current config, or restore its [test] settings"
    if changed:
        raise SubmissionError(f"run {art.name} was made with [test] {', '.join(f'{k} = {was[k]!r}' for k in changed)}; "
                              f"{cfg.path} now has {', '.join(f'{k} = {now[k]!r}' for k in changed)}", fix)
    if len(art.test) != n_test:
        raise SubmissionError(f"run {art.name} has {len(art.test)} test prediction(s), the test set of {cfg.path} has {n_test} row(s)", fix)


def record_score(workdir: str | Path, file: str, public: float | None, private: float | None = None) -> dict:
    """Write the leaderboard score(s) of an earlier submission into ``submissions/index.csv`` (latest row for the file)."""
    path = Path(workdir) / "submissions" / "index.csv"
    if not path.is_file():
        raise SubmissionError(f"{path} does not exist: submit something first")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    name = Path(file).name if str(file).endswith(".csv") else f"{Path(file).name}.csv"
    rows = np.flatnonzero(df["file"].to_numpy() == name)
    if not len(rows):
        raise SubmissionError(f"{name} is not in {path} (files there: {df['file'].tolist()[-5:]})")
    r = rows[-1]
    if public is not None:
        df.loc[r, "public_score"] = str(public)
    if private is not None:
        df.loc[r, "private_score"] = str(private)
    write_csv(path, df)
    return df.iloc[r].to_dict()


def append_index(path: Path, record: dict) -> None:
    """Rewrite the index atomically with the new record appended."""
    new = pd.DataFrame([{k: "" if v is None else str(v) for k, v in record.items()}])
    if path.is_file():
        new = pd.concat([pd.read_csv(path, dtype=str, keep_default_na=False), new], ignore_index=True)
    write_csv(path, new[INDEX_COLUMNS + [c for c in new.columns if c not in INDEX_COLUMNS]])


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("submit", "Write submissions/<name>.csv from a run, validated against sample_submission.csv.")
    ap.add_argument("run", nargs="?", help="run id (under runs/) or run folder")
    ap.add_argument("--name", help="file name without .csv (default: the run id)")
    ap.add_argument("--message", "-m", default="", help="what this submission is (matched to leaderboard scores later)")
    ap.add_argument("--threshold", type=float, help="binary label output: predict classes[1] when its probability >= this (default: argmax)")
    ap.add_argument("--score", metavar="FILE", help="record leaderboard scores of an earlier submission (with --public/--private) instead")
    ap.add_argument("--public", type=float, help="public leaderboard score (with --score)")
    ap.add_argument("--private", type=float, help="private leaderboard score (with --score)")
    cli.add_common(ap, config=False)
    args = ap.parse_args(argv)
    setup_logging()
    if args.score:
        if args.public is None and args.private is None:
            raise SubmissionError("--score needs a score", "add --public X and/or --private Y")
        row = record_score(args.workdir, args.score, args.public, args.private)
        print(f"recorded {row['file']}: public {row['public_score']}, private {row['private_score']} (CV {row['cv_score']})")
        return
    if not args.run:
        raise SubmissionError("no run given", "python -m src.submit RUN [-m MESSAGE] (or --score FILE --public X)")
    path = submit(args.run, args.name, args.message, args.workdir, args.threshold)
    print(f"wrote {path} (validated against sample_submission.csv; recorded in {path.parent / 'index.csv'})")


if __name__ == "__main__":
    cli.run_command(main)
