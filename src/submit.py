"""Write a Kaggle submission CSV from a run: ``python -m src.submit RUN [--name NAME] [--message MSG] [--threshold T]``.

Later, ``python -m src.submit --score NAME.csv --public 0.81 [--private 0.80]`` records the
leaderboard score next to the CV score in ``submissions/index.csv``.

The CSV copies ``sample_submission.csv`` exactly: the same ids in the same
order and the same columns. If the sample has one column besides the id, it
gets class labels (argmax, names from the run's class list); if its columns
are the class names, it gets probabilities. The file is validated before it is
written and recorded in ``submissions/index.csv``.
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


def build_submission(test_pred: np.ndarray, test_ids: list[str], sample: pd.DataFrame, id_col: str,
                     classes: list[str], classification: bool, threshold: float | None = None) -> pd.DataFrame:
    """Fill the sample submission's columns from test predictions (rows aligned with ``test_ids``).

    Labels come from the run's class list: argmax, or for two classes ``classes[1]`` when
    P(classes[1]) >= ``threshold``. A binary competition whose sample has one numeric column
    gets P(classes[1]) there.
    """
    if len(test_ids) != len(test_pred):
        raise SubmissionError(f"{len(test_pred)} test predictions for {len(test_ids)} test ids")
    check_test_rows(test_pred, test_ids, classification)
    pos = pd.Series(np.arange(len(test_ids)), index=test_ids)
    if pos.index.duplicated().any():
        raise SubmissionError(f"duplicated test id(s) {pos.index[pos.index.duplicated()].unique()[:5].tolist()} in the run's test rows")
    order = pos.reindex(sample[id_col].astype(str)).to_numpy()
    if np.isnan(order.astype(float)).any():
        lost = sample[id_col].astype(str)[np.isnan(order.astype(float))].tolist()
        raise SubmissionError(f"{len(lost)} sample submission id(s) have no test prediction (e.g. {lost[:3]})")
    pred = test_pred[order.astype(int)]
    value_cols = [c for c in sample.columns if c != id_col]
    if classification and len(value_cols) == 1 and _is_probability_column(sample[value_cols[0]], classes):
        out = pd.DataFrame({id_col: sample[id_col].astype(str).to_numpy(), value_cols[0]: pred[:, 1]})
        return out
    if classification and len(value_cols) == 1 and threshold is not None:
        if len(classes) != 2:
            raise SubmissionError(f"--threshold needs two classes, the run has {len(classes)}: {classes}")
        labels = np.asarray(classes, dtype=object)[(pred[:, 1] >= threshold).astype(int)]
        return pd.DataFrame({id_col: sample[id_col].astype(str).to_numpy(), value_cols[0]: labels})
    out = pd.DataFrame({id_col: sample[id_col].astype(str).to_numpy()})
    if classification and sorted(value_cols) == sorted(classes):
        for j, c in enumerate(classes):
            out[c] = pred[:, j]
        return out[sample.columns.tolist()]
    if len(value_cols) == 1 and classification:
        out[value_cols[0]] = np.asarray(classes, dtype=object)[pred.argmax(1)]
        return out
    if not classification and len(value_cols) == pred.shape[1]:
        for j, c in enumerate(value_cols):
            out[c] = pred[:, j]
        return out
    raise SubmissionError(f"cannot map predictions onto sample submission columns {value_cols} "
                          f"(classes {classes}): expected one label column or one column per class")


def check_test_rows(test_pred: np.ndarray, test_ids: list[str], classification: bool) -> None:
    """Refuse prediction rows that have no answer: argmax turns a NaN row or an all-zero probability row
    into the first class, which then passes every check on the written file (labels are valid names)."""
    pred = np.asarray(test_pred, dtype=np.float64).reshape(len(test_pred), -1)
    fix = "re-train or resume the run (a diverged fold averages NaN into test.npy); never submit these rows"
    bad = ~np.isfinite(pred).all(1)
    if bad.any():
        r = int(np.argmax(bad))
        raise SubmissionError(f"test.npy row {r} (id {test_ids[r]!r}) holds NaN/inf ({int(bad.sum())} such row(s))", fix)
    zero = (pred <= 0).all(1) if classification else np.zeros(len(pred), bool)
    if zero.any():
        r = int(np.argmax(zero))
        raise SubmissionError(f"test.npy row {r} (id {test_ids[r]!r}) has all-zero probabilities ({int(zero.sum())} such row(s))", fix)


def validate_submission(sub: pd.DataFrame, sample: pd.DataFrame, id_col: str, classes: list[str] | None = None,
                        prob_tol: float = 1e-3) -> None:
    """Refuse anything Kaggle would reject or score wrongly; the message says what and where."""
    if list(sub.columns) != list(sample.columns):
        missing = [c for c in sample.columns if c not in sub.columns]
        extra = [c for c in sub.columns if c not in sample.columns]
        raise SubmissionError(f"columns {list(sub.columns)} differ from sample submission {list(sample.columns)} "
                              f"(missing {missing}, extra {extra}, or wrong order)")
    ids = _check_ids(sub[id_col].astype(str), sample[id_col].astype(str))
    values = sub.drop(columns=[id_col])
    nan_rows = values.isna().any(axis=1).to_numpy() | np.isinf(values.select_dtypes("number").to_numpy(np.float64)).any(1)
    if nan_rows.any():
        r = int(np.argmax(nan_rows))
        raise SubmissionError(f"{int(nan_rows.sum())} row(s) with empty, inf or NaN values, first at row {r + 2} (id {ids.iloc[r]!r})")
    if classes and sorted(values.columns) == sorted(classes):
        _check_probability_rows(values.to_numpy(float), ids, prob_tol)
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
        raise SubmissionError(f"{len(missing)} id(s) missing (e.g. {missing[:3]}) and {len(extra)} unexpected id(s) (e.g. {extra[:3]})")
    if not (ids.to_numpy() == want.to_numpy()).all():
        r = int(np.argmax(ids.to_numpy() != want.to_numpy()))
        raise SubmissionError(f"ids are not in the sample submission's order: row {r + 2} has {ids.iloc[r]!r}, expected {want.iloc[r]!r}")
    return ids


def _check_probability_rows(arr: np.ndarray, ids: pd.Series, prob_tol: float) -> None:
    """One column per class: every value in [0, 1] and every row summing to 1 (an all-zero row sums to 0)."""
    out_of_range = (arr < -prob_tol) | (arr > 1 + prob_tol)
    if out_of_range.any():
        r = int(np.argmax(out_of_range.any(1)))
        raise SubmissionError(f"{int(out_of_range.any(1).sum())} row(s) have probabilities outside [0, 1], first at row {r + 2} (id {ids.iloc[r]!r})")
    sums = arr.sum(1)
    bad = np.abs(sums - 1) > prob_tol
    if bad.any():
        r = int(np.argmax(bad))
        raise SubmissionError(f"probabilities of {int(bad.sum())} row(s) do not sum to 1, first at row {r + 2} (sum {sums[r]:.4f}), "
                              f"id {ids.iloc[r]!r}")


def submit(run: str, name: str | None = None, message: str = "", workdir: str | Path = ".", threshold: float | None = None) -> Path:
    """Build, validate, write and index the submission for a run."""
    from .config import load_config
    from .data import load_dataset

    art = load_run(run, workdir)
    cfg = load_config(art.config["workspace"]["path"])
    ds = load_dataset(cfg)
    if ds.sample_submission is None:
        raise SubmissionError(f"{cfg.path}: [data] sample_submission is not set; a submission needs the competition's sample_submission.csv")
    classification = art.config["task"] == "classification"
    sub = build_submission(art.test, ds.test["id"].tolist(), ds.sample_submission, cfg.data.id_column,
                           art.config["classes"], classification, threshold)
    validate_submission(sub, ds.sample_submission, cfg.data.id_column, art.config["classes"] if classification else None)
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
