"""Write a Kaggle submission CSV from a run: ``python -m src.submit RUN [--name NAME] [--message MSG]``.

The CSV copies ``sample_submission.csv`` exactly: the same ids in the same
order and the same columns. If the sample has one column besides the id, it
gets class labels (argmax, names from the run's class list); if its columns
are the class names, it gets probabilities. The file is validated before it is
written and recorded in ``submissions/index.csv``.
"""
from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import write_csv
from .ensemble import load_run

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["file", "time", "runs", "cv_metric", "cv_score", "message", "public_score", "private_score"]


class SubmissionError(ValueError):
    pass


def build_submission(test_pred: np.ndarray, test_ids: list[str], sample: pd.DataFrame, id_col: str,
                     classes: list[str], classification: bool) -> pd.DataFrame:
    """Fill the sample submission's columns from test predictions (rows aligned with ``test_ids``)."""
    if len(test_ids) != len(test_pred):
        raise SubmissionError(f"{len(test_pred)} test predictions for {len(test_ids)} test ids")
    pos = pd.Series(np.arange(len(test_ids)), index=test_ids)
    order = pos.reindex(sample[id_col].astype(str)).to_numpy()
    if np.isnan(order.astype(float)).any():
        raise SubmissionError("sample submission ids missing from the test predictions")
    pred = test_pred[order.astype(int)]
    out = pd.DataFrame({id_col: sample[id_col].astype(str).to_numpy()})
    value_cols = [c for c in sample.columns if c != id_col]
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


def validate_submission(sub: pd.DataFrame, sample: pd.DataFrame, id_col: str, classes: list[str] | None = None,
                        prob_tol: float = 1e-3) -> None:
    """Refuse anything Kaggle would reject or score wrongly; the message says what and where."""
    if list(sub.columns) != list(sample.columns):
        missing = [c for c in sample.columns if c not in sub.columns]
        extra = [c for c in sub.columns if c not in sample.columns]
        raise SubmissionError(f"columns {list(sub.columns)} differ from sample submission {list(sample.columns)} "
                              f"(missing {missing}, extra {extra}, or wrong order)")
    ids, want = sub[id_col].astype(str), sample[id_col].astype(str)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise SubmissionError(f"duplicated id(s) {dup.unique()[:5].tolist()}")
    missing, extra = sorted(set(want) - set(ids)), sorted(set(ids) - set(want))
    if missing or extra:
        raise SubmissionError(f"{len(missing)} id(s) missing (e.g. {missing[:3]}) and {len(extra)} unexpected id(s) (e.g. {extra[:3]})")
    if not (ids.to_numpy() == want.to_numpy()).all():
        r = int(np.argmax(ids.to_numpy() != want.to_numpy()))
        raise SubmissionError(f"ids are not in the sample submission's order: row {r + 2} has {ids.iloc[r]!r}, expected {want.iloc[r]!r}")
    values = sub.drop(columns=[id_col])
    nan_rows = values.isna().any(axis=1).to_numpy()
    if nan_rows.any():
        r = int(np.argmax(nan_rows))
        raise SubmissionError(f"{int(nan_rows.sum())} row(s) with empty/NaN values, first at row {r + 2} (id {ids.iloc[r]!r})")
    if classes and sorted(values.columns) == sorted(classes):
        sums = values.to_numpy(float).sum(1)
        bad = np.abs(sums - 1) > prob_tol
        if bad.any():
            r = int(np.argmax(bad))
            raise SubmissionError(f"probabilities of {int(bad.sum())} row(s) do not sum to 1, first at row {r + 2} (sum {sums[r]:.4f})")
    elif classes and values.shape[1] == 1:
        unknown = sorted(set(values.iloc[:, 0].astype(str)) - set(classes))
        if unknown:
            raise SubmissionError(f"label(s) {unknown[:5]} are not in the class list {classes}")


def submit(run: str, name: str | None = None, message: str = "", workdir: str | Path = ".") -> Path:
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
                           art.config["classes"], classification)
    validate_submission(sub, ds.sample_submission, cfg.data.id_column, art.config["classes"] if classification else None)
    name = name or f"{art.name}"
    path = Path(workdir) / "submissions" / f"{name}.csv"
    write_csv(path, sub)
    metric = art.metrics["metric"]
    cv = art.metrics.get("oof", {}).get(metric)
    record = {"file": path.name, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "runs": " ".join(art.config.get("members", [art.name])) if "members" in art.config else art.name,
              "cv_metric": metric, "cv_score": cv, "message": message, "public_score": "", "private_score": ""}
    append_index(Path(workdir) / "submissions" / "index.csv", record)
    return path


def append_index(path: Path, record: dict) -> None:
    """Rewrite the index atomically with the new record appended."""
    new = pd.DataFrame([{k: "" if v is None else str(v) for k, v in record.items()}])
    if path.is_file():
        new = pd.concat([pd.read_csv(path, dtype=str, keep_default_na=False), new], ignore_index=True)
    write_csv(path, new[INDEX_COLUMNS + [c for c in new.columns if c not in INDEX_COLUMNS]])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write submissions/<name>.csv from a run, validated against sample_submission.csv.")
    ap.add_argument("run", help="run id (under runs/) or run folder")
    ap.add_argument("--name", help="file name without .csv (default: the run id)")
    ap.add_argument("--message", "-m", default="")
    ap.add_argument("--workdir", default=".")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        path = submit(args.run, args.name, args.message, args.workdir)
    except (SubmissionError, ValueError) as exc:
        raise SystemExit(f"error: submission refused: {exc}") from None
    print(f"wrote {path} (validated against sample_submission.csv; recorded in {path.parent / 'index.csv'})")


if __name__ == "__main__":
    main()
