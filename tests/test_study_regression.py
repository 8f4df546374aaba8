"""python -m src.study regression, and [data] targets_csv / targets_key (targets joined from a second CSV)."""
from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from fixtures import make_audio_competition, write_toml
from train_helpers import _train, _write_folds, no_plots

from src.config import load_config
from src.data import load_dataset
from src.errors import ConfigError, DataError
from src.study.__main__ import main as study_main

FREQ = {"low": 200.0, "high": 1600.0, "pulse": 800.0}


def regression_config(comp, path, targets=("pitch", "energy"), data=None, table=None):
    """A regression config over ``comp``'s clips (folders layout), targets from a second CSV keyed by file name."""
    rng = np.random.default_rng(1)
    names = [f"{i}.wav" for i in comp.train["id"]]
    rows = pd.DataFrame({"filename": names + ["not_a_clip.wav"],
                         "pitch": [FREQ[c] + rng.normal(0, 20) for c in comp.train["label"]] + [1.0],
                         "energy": list(rng.normal(0, 1, len(names))) + [0.0], "note": "x"})
    (table if table is not None else rows).to_csv(comp.root / "targets.csv", index=False)
    raw = tomllib.loads(comp.config.read_text())
    raw["competition"] = {"name": path.stem, "task": "regression", "metric": "spearman", "targets": list(targets)}
    raw["data"] = {**raw["data"], "root": str(comp.root), "targets_csv": "targets.csv", "targets_key": "filename", **(data or {})}
    return write_toml(path, raw), rows


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    return make_audio_competition(tmp_path_factory.mktemp("regcomp"), layout="folders", n_test=0)


def test_targets_csv_joins_on_file_name(comp, tmp_path):
    path, rows = regression_config(comp, tmp_path / "reg.toml")
    ds = load_dataset(load_config(path))
    assert ds.train["id"].tolist() == sorted(comp.train["id"])  # folder listing: ids are stems, the folder is no label
    want = rows.set_index("filename").loc[[f"{i}.wav" for i in ds.train["id"]], ["pitch", "energy"]].to_numpy(np.float32)
    np.testing.assert_allclose(ds.labels("train"), want)  # the extra table row (no file) is left out


@pytest.mark.parametrize("case, error, pattern", [
    ("bad_target", DataError, r"targets\.csv: column\(s\) \['tempo'\] not found"),
    ("bad_key", DataError, r"targets\.csv: column\(s\) \['file'\] not found"),
    ("text_cell", DataError, r"targets\.csv line 3 \(key '.*\.wav'\), column 'pitch': 'fast' is not a number"),
    ("missing_row", DataError, r"1 training file\(s\) have no row whose 'filename' is their id or file name"),
    ("duplicate_key", DataError, r"targets\.csv line \d+: key '.*' \(column 'filename'\) appears more than once"),
    ("no_key", ConfigError, r"targets_csv and targets_key go together"),
    ("missing_file", ConfigError, r"\[data\] targets_csv = 'nope\.csv': file .* does not exist"),
])
def test_targets_csv_is_validated(comp, tmp_path, case, error, pattern):
    _, rows = regression_config(comp, tmp_path / "probe.toml")
    targets, data, table = ("pitch", "energy"), None, None
    if case == "bad_target":
        targets = ("pitch", "tempo")
    elif case == "bad_key":
        data = {"targets_key": "file"}
    elif case == "text_cell":
        table = rows.astype({"pitch": object})
        table.loc[1, "pitch"] = "fast"
    elif case == "missing_row":
        table = rows.iloc[1:]
    elif case == "duplicate_key":
        table = pd.concat([rows, rows.iloc[[2]]])
    elif case == "no_key":
        data = {"targets_key": ""}
    elif case == "missing_file":
        data = {"targets_csv": "nope.csv"}
    path, _ = regression_config(comp, tmp_path / "reg.toml", targets, data, table)
    with pytest.raises(error, match=pattern):
        load_dataset(load_config(path))


def test_targets_csv_refused_for_tabular_data(tabular, tmp_path):
    raw = tomllib.loads(tabular.config.read_text())
    raw["data"] |= {"root": str(tabular.root), "targets_csv": "features.csv", "targets_key": "filename"}
    with pytest.raises(ConfigError, match="targets_csv / targets_key apply to audio and images data; kind is 'tabular'"):
        load_config(write_toml(tmp_path / "t.toml", raw))


def _study_args(path, work, out):
    return ["regression", "--config", str(path), "--workdir", str(work), "--source-run", "src-cnn", "--epochs", "2",
            "--device", "cpu", "--run-prefix", "t", "--out", str(out)]


@pytest.fixture(scope="module")
def study(comp, tmp_path_factory):
    """A genre-like source run (cnn, classification on the same clips) and the study with --source-run."""
    work = tmp_path_factory.mktemp("regwork")
    from src.features import prepare

    cls_cfg = load_config(comp.config)
    prep = prepare(cls_cfg, work, workers=1)
    _write_folds(prep, work)
    _train(cls_cfg, prep, work, "cnn", "src-cnn", epochs=2)
    path, _ = regression_config(comp, work / "configs" / "tinyreg.toml")
    out = work / "reports" / "reg"
    with no_plots():
        study_main(_study_args(path, work, out))
    return work, out


def test_study_table_has_every_arm(study):
    work, out = study
    table = pd.read_csv(out / "table.csv")
    assert table["arm"].tolist() == ["one model per target", "one multitask model", "multitask, fine-tuned from the source"]
    for col in ("pitch", "energy", "mean", "pitch, last epoch", "mean, last epoch", "pooled OOF pitch", "pooled OOF mean", "train s"):
        assert table[col].notna().all(), col
    assert table["pitch"].str.match(r"^-?\d\.\d{3} ± \d\.\d{3}$").all()
    assert (table["folds"] == 2).all()
    md = (out / "table.md").read_text()
    assert "src-cnn/fold<k>.pt" in md and "never saw fold k's clips" in md
    per_fold = pd.read_csv(out / "folds.csv")
    assert set(per_fold["run"]) == {"t-single-pitch", "t-single-energy", "t-multitask", "t-transfer-f0", "t-transfer-f1"}
    assert len(per_fold) == 2 * 2 + 2 * 2 + 2 * 2  # (single 1 target x 2 runs + multitask 2 + transfer 2) x 2 folds


def test_second_call_resumes_with_another_out(study):
    """The runs' fold files live under <workdir>/reports/regression/folds whatever --out is: a second call resumes."""
    work, out = study
    with no_plots():
        study_main(_study_args(work / "configs" / "tinyreg.toml", work, work / "elsewhere"))
    assert pd.read_csv(work / "elsewhere" / "table.csv").equals(pd.read_csv(out / "table.csv"))
    assert sorted(p.name for p in (work / "reports" / "regression" / "folds").iterdir()) == \
        ["t-multitask.csv", "t-single-energy.csv", "t-single-pitch.csv", "t-transfer.csv"]


def test_transfer_starts_each_fold_from_the_same_source_fold(study):
    from src.artifacts import read_json
    from src.folds import read_fold_file

    work, out = study
    src = read_fold_file(work / "folds" / "tiny_k2.csv").set_index("id")["fold"]
    for k in (0, 1):
        cfg = read_json(work / "runs" / f"t-transfer-f{k}" / "config.json")
        assert cfg["train"]["init_checkpoint"].endswith(f"src-cnn/fold{k}.pt")
        assert cfg["train"]["folds"] == [k] and cfg["train"]["task_weights"] == [1.0, 1.0]
        used = read_fold_file(cfg["fold_file"]).set_index("id")["fold"]
        assert used.to_dict() == src.loc[used.index].to_dict()  # every arm uses the source's fold assignment
    single = read_json(work / "runs" / "t-single-pitch" / "config.json")
    assert single["targets"] == ["pitch"] and single["train"]["init_checkpoint"] == ""


def test_study_refuses_a_classification_config(comp, tmp_path, capsys):
    from src.cli import run_command

    with pytest.raises(SystemExit) as exc:
        run_command(study_main, ["regression", "--config", str(comp.config), "--workdir", str(tmp_path)])
    assert exc.value.code == 2
    assert "this study needs continuous targets" in capsys.readouterr().err


def test_plan_without_matching_folds_or_with_one_checkpoint(study):
    """Unmatched folds: one transfer run from the source's first fold checkpoint; --init-checkpoint: that file for every fold."""
    from src.errors import CheckpointError
    from src.runs import load_run
    from src.study.regression import Source, plan_arms

    work, _ = study
    art = load_run("src-cnn", work)
    arms = plan_arms(["pitch"], Source("cnn", {}, run=art), False, "p", [0, 1])
    assert [a.kind for a in arms] == ["single", "transfer"]  # one target: no separate multitask arm
    (job,) = arms[-1].jobs
    assert job.run_id == "p-transfer" and job.folds == [0, 1] and job.init_checkpoint.endswith("src-cnn/fold0.pt")
    arms = plan_arms(["pitch", "energy"], Source("cnn", {}, checkpoint=work / "x.pt"), False, "p", [1])
    assert [a.kind for a in arms] == ["single", "single", "multitask", "transfer"] and arms[-1].jobs[0].init_checkpoint.endswith("x.pt")
    with pytest.raises(CheckpointError, match=r"fold7\.pt not found: source run src-cnn has no checkpoint for fold 7"):
        plan_arms(["pitch"], Source("cnn", {}, run=art), True, "p", [7])
