"""Bad input around fold files: malformed or hand-edited files, bad ``python -m src.folds`` flags, and a fold
file that went stale because the data changed (labels, groups, regression targets) after it was made.

Every case must end in a :class:`~src.errors.FoldError` that names the file, the line/id/column and the fix;
none may reach a CV score.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fixtures import make_regression_competition, make_tabular_competition
from test_ensemble import fake_probs, write_fake_run

from src import cli
from src.config import load_config
from src.data import load_dataset
from src.ensemble import ensemble
from src.errors import FoldError
from src.folds import fold_path, load_folds, read_fold_file
from src.folds import main as folds_main


def _fold_file(path, fold: list, **extra: list) -> None:
    n = len(fold)
    df = pd.DataFrame({"id": [f"c{i:02d}" for i in range(n)], "label": ["a", "b"] * (n // 2) + ["a"] * (n % 2),
                       "group": [f"g{i}" for i in range(n)], "fold": fold, **extra})
    df.to_csv(path, index=False)


GOOD = [0, 1, 2, 3, 4] * 4  # 20 rows, 5 folds of 4


@pytest.mark.parametrize("value, match", [
    ("x", r"line 5 \(id 'c03'\), column 'fold': 'x' is not a fold number \(1 such row"),
    ("1.5", r"line 5 \(id 'c03'\), column 'fold': '1.5' is not a fold number"),
    ("", r"line 5 \(id 'c03'\), column 'fold': '' is not a fold number"),
    ("7", r"line 5 \(id 'c03'\), column 'fold': fold 7 is outside 0\.\.5 \(fold numbers must be 0\.\.k-1; "
            r"the column has k=6: \[0, 1, 2, 3, 4, 7\]\)"),
    ("-1", r"line 5 \(id 'c03'\), column 'fold': fold -1 is outside 0\.\.5"),
])
def test_hand_edited_fold_value_is_named(tmp_path, value, match):
    """A typo used to crash with a TypeError; a 7 used to make a one-row fold that entered the CV mean."""
    fold = [str(v) for v in GOOD]
    fold[3] = value
    path = tmp_path / "f_k5.csv"
    _fold_file(path, fold)
    with pytest.raises(FoldError, match=match) as exc:
        read_fold_file(path)
    assert str(path) in str(exc.value) and "python -m src.folds --force" in exc.value.fix


def test_one_row_fold_and_single_fold_are_refused(tmp_path):
    path = tmp_path / "f.csv"
    _fold_file(path, [0, 1] * 5 + [2])  # fold 2 has one row
    with pytest.raises(FoldError, match=r"line 12 \(id 'c10'\), column 'fold': fold 2 holds only 1 row\(s\); every fold needs at least 2"):
        read_fold_file(path)
    _fold_file(path, [0] * 6)
    with pytest.raises(FoldError, match=r"column 'fold': every row is in fold 0; a fold file needs at least 2 folds"):
        read_fold_file(path)


def test_repeat_columns_duplicate_ids_and_missing_columns(tmp_path):
    path = tmp_path / "f.csv"
    _fold_file(path, GOOD, fold_r1=GOOD[:-1] + [9])
    with pytest.raises(FoldError, match=r"line 21 \(id 'c19'\), column 'fold_r1': fold 9 is outside"):
        read_fold_file(path)
    df = pd.read_csv(path, dtype=str).drop(columns="fold_r1")
    df.loc[4, "id"] = "c00"
    df.to_csv(path, index=False)
    with pytest.raises(FoldError, match=r"line 6: id 'c00' appears more than once"):
        read_fold_file(path)
    df.drop(columns="group").to_csv(path, index=False)
    with pytest.raises(FoldError, match="has no column 'group'"):
        read_fold_file(path)
    path.write_text("")
    with pytest.raises(FoldError, match="not a readable CSV fold file"):
        read_fold_file(path)


def test_ensemble_refuses_a_run_on_a_hand_edited_fold_file(tmp_path):
    """The run contract's reader (runs.load_fold_table) goes through read_fold_file, so compare/ensemble refuse it too."""
    y = np.arange(30) % 2
    fold = [str(v) for v in np.arange(30) % 5]
    fold[12] = "7"
    ff = tmp_path / "folds" / "fake_k5.csv"
    ff.parent.mkdir()
    pd.DataFrame({"id": [f"c{i}" for i in range(30)], "label": np.array(["a", "b"])[y], "group": [f"g{i}" for i in range(30)],
                  "fold": fold}).to_csv(ff, index=False)
    for name in ("a", "b"):
        write_fake_run(tmp_path, name, fake_probs(y, 0.8, n_classes=2), ff, y, classes=["a", "b"], n_test=4)
    with pytest.raises(FoldError, match=r"line 14 \(id 'c12'\), column 'fold': fold 7 is outside 0\.\.5"):
        ensemble(["a", "b"], "e", tmp_path)


# ----------------------------------------------------------------------------- python -m src.folds flags


@pytest.mark.parametrize("flags, match", [
    (["--n-splits", "0"], r"--n-splits / \[folds\] n_splits = 0: k-fold needs at least 2 folds"),
    (["--n-splits", "1"], r"--n-splits / \[folds\] n_splits = 1: k-fold needs at least 2 folds"),
    (["--n-repeats", "0"], r"--n-repeats / \[folds\] n_repeats = 0: needs at least 1"),
    (["--n-repeats", "-1"], r"--n-repeats / \[folds\] n_repeats = -1: needs at least 1"),
])
def test_cli_refuses_bad_fold_counts(tabular, workdir, capsys, flags, match):
    """--n-splits 0 used to mean the default 5, 1 wrote a one-fold file, --n-repeats 0 a file without a fold column."""
    with pytest.raises(SystemExit) as exc:
        cli.run_command(folds_main, ["--config", str(tabular.config), "--workdir", str(workdir), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(match, err), err
    assert not (workdir / "folds").exists() or not list((workdir / "folds").iterdir())


def test_cli_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        folds_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m src.folds")
    for flag, text in (("--config", "workspace TOML"), ("--workdir", "folder holding"), ("--n-splits", "number of folds k"),
                       ("--n-repeats", "repeated k-fold"), ("--seed", "seed of the first fold column"),
                       ("--force", "overwrite an existing fold file")):
        assert re.search(rf"{flag}\b[^-]*?{text}", out), f"{flag}: no help text"


# ----------------------------------------------------------------------------- stale fold files


def _made(comp, workdir):
    cfg = load_config(comp.config)
    folds_main(["--config", str(comp.config), "--workdir", str(workdir)])
    return cfg


def _check(cfg, workdir):
    ds = load_dataset(cfg)
    return load_folds(cfg, ds.train["id"], workdir, labels=ds.train[ds.targets[0]], groups=ds.train["group"])


def test_relabelled_rows_make_the_fold_file_stale(tabular, workdir):
    """Same ids, same order, other labels: train would score the new labels, compare the old ones."""
    cfg = _made(tabular, workdir)
    folds, sha = _check(cfg, workdir)  # unchanged data passes
    assert len(sha) == 64
    csv = tabular.root / "features.csv"
    df = pd.read_csv(csv)
    rows = [3, 17, 25]
    df.loc[rows, "label"] = df.loc[rows, "label"].map({"a": "b", "b": "c", "c": "a"})
    df.to_csv(csv, index=False)
    with pytest.raises(FoldError, match=r"tab_k2\.csv is stale: 3 of 40 row\(s\) have another label in the data "
                                        r"\(e\.g\. line 5 id 'r0003\.wav': 'a' in the file, 'b' in the data") as exc:
        _check(cfg, workdir)
    assert "--force" in exc.value.fix and "refused" in exc.value.fix
    ds = load_dataset(cfg)
    load_folds(cfg, ds.train["id"], workdir)  # without labels= only ids and order are compared (old callers)


def test_changed_groups_make_the_fold_file_stale(tmp_path):
    """Folds made with one row per group; the config then groups rows by the id's last digit: those groups straddle folds."""
    comp = make_tabular_competition(tmp_path, duplicate_pairs=False)
    workdir = tmp_path / "work"
    cfg = _made(comp, workdir)
    text = comp.config.read_text().replace('[data]\n', '[data]\ngroup_pattern = "(\\\\d)\\\\.wav$"\n')
    comp.config.write_text(text)
    cfg = load_config(comp.config)
    assert cfg.data.group_pattern
    with pytest.raises(FoldError, match=r"is stale: 10 group\(s\) of the data \(36 rows\) are split over several fold-file groups, "
                                        r"so they can sit on both sides of a split \(e\.g\. group '0': ids \['r0000\.wav', 'r0010\.wav'"):
        _check(cfg, workdir)


def test_finer_groups_and_merged_duplicates_are_not_stale(tabular, workdir):
    """Fold-file groups may be coarser than the data's (the duplicate audit merges them): not a change."""
    cfg = _made(tabular, workdir)
    folds, _ = _check(cfg, workdir)
    assert folds["group"].nunique() == len(folds) - 2


def test_regression_target_bins_are_compared(tmp_path):
    comp = make_regression_competition(tmp_path)
    workdir = tmp_path / "work"
    cfg = _made(comp, workdir)
    folds, _ = _check(cfg, workdir)
    assert set(folds["label"]) == {"0", "1", "2", "3", "4"}
    csv = comp.root / "features.csv"
    df = pd.read_csv(csv)
    lo, hi = int(df["tempo"].idxmin()), int(df["tempo"].idxmax())
    df.loc[[lo, hi], "tempo"] = df.loc[[hi, lo], "tempo"].to_numpy()  # swapped: same quantiles, two rows change bin
    df.to_csv(csv, index=False)
    first, second = sorted([(lo, "'0' in the file, '4'"), (hi, "'4' in the file, '0'")])
    with pytest.raises(FoldError, match=r"is stale: 2 of 40 row\(s\) have another target bin in the data \(e\.g\. "
                                        rf"line {first[0] + 2} id 'r{first[0]:04d}\.wav': {first[1]} in the data, "
                                        rf"line {second[0] + 2} id 'r{second[0]:04d}\.wav': {second[1]} in the data\)"):
        _check(cfg, workdir)


def test_stale_error_reaches_the_command_line_as_one_error_line(tabular, workdir, capsys):
    cfg = _made(tabular, workdir)
    assert fold_path(cfg, workdir).is_file()

    def stage(argv):
        _check(cfg, workdir)

    csv = tabular.root / "features.csv"
    df = pd.read_csv(csv)
    df.loc[0, "label"] = "c"
    df.to_csv(csv, index=False)
    with pytest.raises(SystemExit) as exc:
        cli.run_command(stage, [])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is stale: 1 of 40 row(s)" in err and " — re-create it: python -m src.folds" in err
