"""Submission building, every validation failure, the index and leaderboard-score recording."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures import make_tabular_competition
from test_ensemble import fake_probs, write_fake_run, write_fold_file

from src import cli
from src.ensemble import ensemble
from src.runs import load_run
from src.submit import SubmissionError, build_submission, main, record_score, submit, validate_submission

IDS = ["t0", "t1", "t2", "t3"]
CL = ["blues", "jazz", "rock"]
LABEL_SAMPLE = pd.DataFrame({"id": IDS, "label": "blues"})
PROB_SAMPLE = pd.DataFrame({"id": IDS, "rock": 0.0, "blues": 0.0, "jazz": 0.0})
P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]], np.float32)


def test_labels_from_class_list_in_sample_order():
    sub = build_submission(P[::-1], IDS[::-1], LABEL_SAMPLE, "id", CL, "classification")  # predictions in another order
    assert sub["id"].tolist() == IDS and sub["label"].tolist() == ["blues", "jazz", "rock", "blues"]
    validate_submission(sub, LABEL_SAMPLE, "id", CL)


def test_probability_columns_follow_sample_column_order():
    sub = build_submission(P, IDS, PROB_SAMPLE, "id", CL, "classification")
    assert list(sub.columns) == ["id", "rock", "blues", "jazz"]
    np.testing.assert_allclose(sub[["blues", "jazz", "rock"]].to_numpy(), P)
    validate_submission(sub, PROB_SAMPLE, "id", CL)


def test_binary_probability_column_and_threshold():
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]], np.float32)
    sample = pd.DataFrame({"id": IDS, "target": 0.5})
    sub = build_submission(p, IDS, sample, "id", ["no", "yes"], "classification")
    np.testing.assert_allclose(sub["target"], p[:, 1])
    validate_submission(sub, sample, "id", ["no", "yes"])
    lab = pd.DataFrame({"id": IDS, "target": "no"})
    assert build_submission(p, IDS, lab, "id", ["no", "yes"], "classification")["target"].tolist() == ["no", "yes", "no", "yes"]
    assert build_submission(p, IDS, lab, "id", ["no", "yes"], "classification", threshold=0.4)["target"].tolist() == ["no", "yes", "yes", "yes"]
    with pytest.raises(SubmissionError, match="needs two classes"):
        build_submission(P, IDS, LABEL_SAMPLE, "id", CL, "classification", threshold=0.5)
    bad = sub.copy()
    bad.loc[2, "target"] = 1.5
    with pytest.raises(SubmissionError, match=r"not probabilities in \[0, 1\], first at row 4"):
        validate_submission(bad, sample, "id", ["no", "yes"])


def _ok() -> pd.DataFrame:
    return build_submission(P, IDS, LABEL_SAMPLE, "id", CL, "classification")


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s.iloc[:3], r"1 id\(s\) missing"),
    (lambda s: pd.concat([s, pd.DataFrame({"id": ["zz"], "label": ["rock"]})], ignore_index=True), r"unexpected id\(s\) \(e.g. \['zz'\]\)"),
    (lambda s: s.assign(id=["t0", "t0", "t2", "t3"]), r"duplicated id\(s\) \['t0'\]"),
    (lambda s: s.iloc[[1, 0, 2, 3]].reset_index(drop=True), "not in the sample submission's order: row 2"),
    (lambda s: s.assign(label=["blues", None, "rock", "jazz"]), "NaN values, first at row 3"),
    (lambda s: s.rename(columns={"label": "genre"}), r"missing \['label'\], extra \['genre'\]"),
    (lambda s: s[["label", "id"]], "wrong order"),
    (lambda s: s.assign(label=["blues", "techno", "rock", "jazz"]), r"\['techno'\] are not in the class list"),
])
def test_every_label_validation_failure(mutate, match):
    with pytest.raises(SubmissionError, match=match):
        validate_submission(mutate(_ok()), LABEL_SAMPLE, "id", CL)


def test_probability_validation_failures():
    sub = build_submission(P, IDS, PROB_SAMPLE, "id", CL, "classification")
    bad = sub.copy()
    bad.loc[1, "jazz"] = 0.5
    with pytest.raises(SubmissionError, match=r"do not sum to 1, first at row 3 \(sum 0.7000\)"):
        validate_submission(bad, PROB_SAMPLE, "id", CL)
    neg = sub.copy()
    neg.loc[0, ["blues", "rock"]] = [1.2, -0.3]
    with pytest.raises(SubmissionError, match=r"outside \[0, 1\], first at row 2"):
        validate_submission(neg, PROB_SAMPLE, "id", CL)
    nan = sub.copy()
    nan.loc[3, "rock"] = np.nan
    with pytest.raises(SubmissionError, match="NaN"):
        validate_submission(nan, PROB_SAMPLE, "id", CL)


def test_build_refuses_missing_predictions_and_unmappable_columns():
    with pytest.raises(SubmissionError, match="4 test predictions for 3 test ids"):
        build_submission(P, IDS[:3], LABEL_SAMPLE, "id", CL, "classification")
    with pytest.raises(SubmissionError, match=r"have no test prediction \(e.g. \['t3'\]\)"):
        build_submission(P, ["t0", "t1", "t2", "x"], LABEL_SAMPLE, "id", CL, "classification")
    with pytest.raises(SubmissionError, match="cannot map predictions"):
        build_submission(P, IDS, pd.DataFrame({"id": IDS, "a": 0, "b": 0}), "id", CL, "classification")


def test_submit_end_to_end_index_and_score(tmp_path, capsys):
    comp = make_tabular_competition(tmp_path, n_test=6)
    ff, y = write_fold_file(tmp_path, n=30, classes=["a", "b", "c"])
    test = fake_probs(np.arange(6) % 3, 1.0, seed=4)
    write_fake_run(tmp_path, "r1", fake_probs(y, 0.8), ff, y, test=test, classes=["a", "b", "c"], workspace_path=str(comp.config))
    path = submit("r1", "first", "hello", tmp_path)
    sub = pd.read_csv(path, dtype=str)
    sample = pd.read_csv(comp.root / "sample_submission.csv", dtype=str)
    assert sub["filename"].tolist() == sample["filename"].tolist() == comp.test_ids
    assert sub["label"].tolist() == ["a", "b", "c", "a", "b", "c"]
    main(["r1", "--name", "second", "--workdir", str(tmp_path)])
    idx = pd.read_csv(tmp_path / "submissions/index.csv", dtype=str, keep_default_na=False)
    assert idx["file"].tolist() == ["first.csv", "second.csv"] and idx.loc[0, "message"] == "hello"
    assert float(idx.loc[0, "cv_score"]) == pytest.approx(float((fake_probs(y, 0.8).argmax(1) == y).mean()))
    main(["--score", "first.csv", "--public", "0.81", "--workdir", str(tmp_path)])
    assert "public 0.81" in capsys.readouterr().out
    idx = pd.read_csv(tmp_path / "submissions/index.csv", dtype=str, keep_default_na=False)
    assert idx.loc[0, "public_score"] == "0.81" and idx.loc[1, "public_score"] == ""
    record_score(tmp_path, "second", None, 0.79)
    assert pd.read_csv(tmp_path / "submissions/index.csv").loc[1, "private_score"] == 0.79
    with pytest.raises(SubmissionError, match="nope.csv is not in"):
        record_score(tmp_path, "nope.csv", 0.5)


def test_submit_refuses_wrong_test_rows(tmp_path, capsys):
    comp = make_tabular_competition(tmp_path, n_test=6)
    ff, y = write_fold_file(tmp_path, n=30, classes=["a", "b", "c"])
    write_fake_run(tmp_path, "r1", fake_probs(y, 0.8), ff, y, test=fake_probs(np.arange(5) % 3, 1.0), classes=["a", "b", "c"],
                   workspace_path=str(comp.config))
    with pytest.raises(SystemExit) as exc:
        cli.run_command(main, ["r1", "--workdir", str(tmp_path)])
    assert exc.value.code == 2 and "error: run r1 has 5 test prediction(s)" in capsys.readouterr().err
    assert not (tmp_path / "submissions/index.csv").exists()


# ----------------------------------------------------------------------------- rows without an answer


@pytest.mark.parametrize("row, match", [
    ([np.nan, 0.5, 0.5], r"test\.npy row 2 \(id 't2'\) holds NaN/inf \(1 such row"),
    ([np.inf, 0.0, 0.0], r"test\.npy row 2 \(id 't2'\) holds NaN/inf"),
    ([0.0, 0.0, 0.0], r"test\.npy row 2 \(id 't2'\) has all-zero probabilities \(1 such row"),
])
@pytest.mark.parametrize("sample", [LABEL_SAMPLE, PROB_SAMPLE], ids=["labels", "probabilities"])
def test_rows_without_an_answer_are_refused(row, match, sample):
    """A NaN or all-zero row used to become argmax 0 = 'blues', a valid label that passed validation."""
    p = P.copy()
    p[2] = row
    with pytest.raises(SubmissionError, match=match) as exc:
        build_submission(p, IDS, sample, "id", CL, "classification")
    assert "re-train or resume the run" in exc.value.fix


def test_validation_refuses_inf_and_all_zero_probability_rows():
    reg_sample = pd.DataFrame({"id": IDS, "tempo": 0.0})
    reg = build_submission(np.array([[1.0], [2.0], [3.0], [4.0]]), IDS, reg_sample, "id", [], "regression")
    validate_submission(reg, reg_sample, "id")
    with pytest.raises(SubmissionError, match=r"1 row\(s\) with empty, inf or NaN values, first at row 4 \(id 't2'\)"):
        validate_submission(reg.assign(tempo=[1.0, 2.0, np.inf, 4.0]), reg_sample, "id")
    with pytest.raises(SubmissionError, match="NaN/inf"):
        build_submission(np.array([[1.0], [np.nan], [3.0], [4.0]]), IDS, reg_sample, "id", [], "regression")
    sub = build_submission(P, IDS, PROB_SAMPLE, "id", CL, "classification")
    sub.loc[1, CL] = 0.0
    with pytest.raises(SubmissionError, match=r"do not sum to 1, first at row 3 \(sum 0\.0000\), id 't1'"):
        validate_submission(sub, PROB_SAMPLE, "id", CL)


def test_submit_refuses_a_run_with_a_nan_test_row(tmp_path):
    comp = make_tabular_competition(tmp_path, n_test=6)
    ff, y = write_fold_file(tmp_path, n=30, classes=["a", "b", "c"])
    test = fake_probs(np.arange(6) % 3, 1.0, seed=4)
    test[4] = np.nan
    write_fake_run(tmp_path, "r1", fake_probs(y, 0.8), ff, y, test=test, classes=["a", "b", "c"], workspace_path=str(comp.config))
    with pytest.raises(SubmissionError, match=rf"test\.npy row 4 \(id '{comp.test_ids[4]}'\) holds NaN/inf"):
        submit("r1", "nan", "", tmp_path)
    assert not (tmp_path / "submissions/nan.csv").exists() and not (tmp_path / "submissions/index.csv").exists()


def test_ensemble_submission_records_fold_std_with_ddof_1(tmp_path):
    """Training reports std over folds with ddof=1; the ensemble's metrics.json and the index's cv_std must agree."""
    comp = make_tabular_competition(tmp_path, n_test=6)
    ff, y = write_fold_file(tmp_path, n=60, classes=["a", "b", "c"])
    for name, acc, seed in (("m1", 0.8, 1), ("m2", 0.6, 2)):
        write_fake_run(tmp_path, name, fake_probs(y, acc, seed=seed), ff, y, test=fake_probs(np.arange(6) % 3, 0.9, seed=seed),
                       classes=["a", "b", "c"], workspace_path=str(comp.config))
    ens = load_run(ensemble(["m1", "m2"], "ens", tmp_path), tmp_path)
    folds = pd.read_csv(ff)["fold"].to_numpy()
    per_fold = [float((ens.oof[folds == k].argmax(1) == y[folds == k]).mean()) for k in range(5)]
    assert len(set(per_fold)) > 1  # the folds differ, so ddof matters
    assert ens.metrics["std"]["accuracy"] == pytest.approx(np.std(per_fold, ddof=1), rel=1e-12)
    assert ens.metrics["std"]["accuracy"] != pytest.approx(np.std(per_fold, ddof=0), rel=1e-6)
    assert ens.metrics["mean"]["accuracy"] == pytest.approx(np.mean(per_fold))
    submit("ens", "ens", "ddof", tmp_path)
    idx = pd.read_csv(tmp_path / "submissions/index.csv", dtype=str, keep_default_na=False)
    assert float(idx.loc[0, "cv_std"]) == pytest.approx(np.std(per_fold, ddof=1), rel=1e-12)
    assert idx.loc[0, "runs"] == "ens (mean: m1 m2)"
