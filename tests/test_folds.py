"""Fold logic: property tests of assign_folds over many seeds, make_folds (dedup, repeats), load_folds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src import cli
from src.artifacts import read_json
from src.config import load_config
from src.data import DataError, load_dataset
from src.features import Prepared, prepare
from src.folds import FoldError, assign_folds, fold_numbers, fold_path, load_folds, make_folds, read_fold_file
from src.folds import main as folds_main

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled_rows(draw, singleton_groups: bool):
    """(labels, groups, n_splits, seed) with at least n_splits groups."""
    n_splits = draw(st.integers(2, 6))
    n_classes = draw(st.integers(1, 5))
    per_class = draw(st.lists(st.integers(1, 25), min_size=n_classes, max_size=n_classes))
    labels = np.repeat([f"c{i}" for i in range(n_classes)], per_class)
    n = len(labels)
    if singleton_groups:
        groups = np.array([f"g{i}" for i in range(n)])
    else:
        n_groups = draw(st.integers(1, n))
        groups = np.array([f"g{draw(st.integers(0, n_groups - 1))}" for _ in range(n)])
    seed = draw(st.integers(0, 2**31 - 1))
    perm = np.random.default_rng(seed).permutation(n)  # rows in arbitrary order, not sorted by class
    return labels[perm], groups[perm], n_splits, seed


@SETTINGS
@given(labelled_rows(singleton_groups=True))
def test_singleton_groups_are_exactly_stratified(case):
    labels, groups, n_splits, seed = case
    if len(set(groups)) < n_splits:
        with pytest.raises(FoldError, match="n_splits"):
            assign_folds(labels, groups, n_splits, seed)
        return
    fold = assign_folds(labels, groups, n_splits, seed)
    assert fold.shape == (len(labels),)  # each row gets exactly one fold
    assert set(fold.tolist()) == set(range(n_splits))  # every fold is used
    table = pd.crosstab(labels, fold).reindex(columns=range(n_splits), fill_value=0).to_numpy()
    spread = table.max(1) - table.min(1)
    assert spread.max() <= 1, f"per-class fold counts differ by more than one:\n{table}"


@SETTINGS
@given(labelled_rows(singleton_groups=False))
def test_groups_never_straddle_folds(case):
    labels, groups, n_splits, seed = case
    if len(set(groups)) < n_splits:
        with pytest.raises(FoldError):
            assign_folds(labels, groups, n_splits, seed)
        return
    fold = assign_folds(labels, groups, n_splits, seed)
    assert len(fold) == len(labels) and fold.min() >= 0 and fold.max() < n_splits
    per_group = pd.Series(fold).groupby(groups).nunique()
    assert (per_group == 1).all(), f"groups split across folds: {per_group[per_group > 1].index.tolist()}"
    assert set(fold.tolist()) == set(range(n_splits)), "a fold is empty although there are enough groups"
    # same seed -> same folds
    assert np.array_equal(fold, assign_folds(labels, groups, n_splits, seed))


def test_different_seeds_give_different_folds():
    labels = np.repeat(["a", "b", "c"], 20)
    groups = np.arange(60).astype(str)
    folds = {tuple(assign_folds(labels, groups, 5, s)) for s in range(5)}
    assert len(folds) == 5


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(FoldError, match="only 2 groups for 3 folds"):
        assign_folds(np.array(["a", "b", "a", "b"]), np.array(["x", "x", "y", "y"]), 3, 0)


# ----------------------------------------------------------------------------- make_folds on real layouts


def _prep_tabular(comp) -> Prepared:
    cfg = load_config(comp.config)
    return Prepared(cfg, load_dataset(cfg))


def test_duplicate_audit_merges_identical_rows(tabular, workdir):
    prep = _prep_tabular(tabular)
    folds, report = make_folds(prep)
    by_id = folds.set_index("id")
    for pair in (tabular.extra["same_pair"], tabular.extra["cross_pair"]):
        assert by_id.loc[pair, "fold"].nunique() == 1, f"duplicate pair {pair} split across folds"
        assert by_id.loc[pair, "group"].nunique() == 1
    reported = sorted(sorted(d["ids"]) for d in report["duplicates"])
    assert reported == sorted([sorted(tabular.extra["same_pair"]), sorted(tabular.extra["cross_pair"])])
    cross = [d for d in report["duplicates"] if sorted(d["ids"]) == sorted(tabular.extra["cross_pair"])][0]
    assert len(set(cross["labels"])) == 2  # the cross-label pair is reported with both labels
    # no other rows were merged: groups = rows - 2
    assert report["n_groups"] == len(folds) - 2


def test_dedup_off_keeps_rows_apart(tabular):
    prep = _prep_tabular(tabular)
    prep.cfg.folds.dedup = False
    folds, report = make_folds(prep)
    assert report["duplicates"] == [] and folds["group"].nunique() == len(folds)


def test_cli_writes_fold_file_and_audit_json(tabular, workdir, capsys):
    folds_main(["--config", str(tabular.config), "--workdir", str(workdir), "--n-repeats", "2"])
    cfg = load_config(tabular.config)
    path = fold_path(cfg, workdir)
    assert path.name == "tab_k2.csv"
    folds = pd.read_csv(path, dtype={"id": str})
    assert list(folds.columns) == ["id", "label", "group", "fold", "fold_r1"]
    assert not (folds["fold"] == folds["fold_r1"]).all(), "repeat column fold_r1 equals fold"
    audit = read_json(path.with_suffix(".json"))
    ids = sorted(sorted(d["ids"]) for d in audit["duplicates"])
    assert sorted(tabular.extra["cross_pair"]) in ids and sorted(tabular.extra["same_pair"]) in ids
    for col in ("fold", "fold_r1"):
        by_id = folds.set_index("id")[col]
        assert by_id.loc[tabular.extra["cross_pair"]].nunique() == 1
    from src.artifacts import file_sha256

    assert audit["sha256"] == file_sha256(path)
    assert audit["class_counts"]["fold"] == {c: pd.crosstab(folds["label"], folds["fold"]).loc[c].tolist() for c in "abc"}
    assert set(audit["class_counts"]) == {"fold", "fold_r1"} and audit["warnings"] == []
    before = path.read_bytes()
    with pytest.raises(SystemExit) as exc:  # never overwritten silently
        cli.run_command(folds_main, ["--config", str(tabular.config), "--workdir", str(workdir)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "tab_k2.csv exists" in err and "--force" in err
    assert path.read_bytes() == before


def test_repeated_columns_differ(tabular):
    folds, report = make_folds(_prep_tabular(tabular), n_repeats=3)
    assert {"fold", "fold_r1", "fold_r2"} <= set(folds.columns)
    assert not (folds["fold"] == folds["fold_r1"]).all()
    assert not (folds["fold_r1"] == folds["fold_r2"]).all()
    assert report["n_repeats"] == 3


def test_same_seed_same_folds_different_seed_different(tabular):
    prep = _prep_tabular(tabular)
    a, _ = make_folds(prep, seed=1)
    b, _ = make_folds(prep, seed=1)
    c, _ = make_folds(prep, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not (a["fold"] == c["fold"]).all()


def test_group_column_keeps_artists_together(tiny_audio_prep):
    comp, prep, _ = tiny_audio_prep
    folds, report = make_folds(prep)
    assert report["group_source"] == "artist"
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    assert folds["group"].nunique() <= comp.train["artist"].nunique()


def test_group_pattern_groups_rows_and_names_unmatched_ids(tmp_path):
    from fixtures import make_tabular_competition

    comp = make_tabular_competition(tmp_path / "a", duplicate_pairs=False, data={"group_pattern": r"(\d)\.wav$"})
    folds, report = make_folds(_prep_tabular(comp))
    assert report["group_source"] == r"(\d)\.wav$"
    last_digit = folds["id"].str[-5]
    assert (folds["group"] == last_digit).all()
    assert (folds.groupby(last_digit)["fold"].nunique() == 1).all()
    bad = make_tabular_competition(tmp_path / "b", data={"group_pattern": r"^r(\d+)"})
    with pytest.raises(DataError, match=r"group_pattern .* does not match id 'dup_same_a.wav'"):
        load_dataset(load_config(bad.config))


def test_load_folds_refuses_changed_ids(tabular, workdir):
    cfg = load_config(tabular.config)
    folds_main(["--config", str(tabular.config), "--workdir", str(workdir)])
    ds = load_dataset(cfg)
    folds, sha = load_folds(cfg, ds.train["id"], workdir)
    assert len(folds) == len(ds.train) and len(sha) == 64
    # the data changes: one row dropped
    csv = tabular.root / "features.csv"
    df = pd.read_csv(csv)
    df.iloc[1:].to_csv(csv, index=False)
    ds2 = load_dataset(cfg)
    with pytest.raises(FoldError, match=r"python -m src\.folds"):
        load_folds(cfg, ds2.train["id"], workdir)
    # same rows, different order
    df.iloc[::-1].to_csv(csv, index=False)
    with pytest.raises(FoldError, match="order changed"):
        load_folds(cfg, load_dataset(cfg).train["id"], workdir)


def test_load_folds_missing_file_says_how_to_make_it(tabular, workdir):
    cfg = load_config(tabular.config)
    with pytest.raises(FoldError, match=r"python -m src\.folds --config"):
        load_folds(cfg, load_dataset(cfg).train["id"], workdir)


def test_audio_folds_dedup_uses_clip_features(tmp_path):
    """Two byte-identical clips under different ids (and artists) end up in one group."""
    import shutil

    from fixtures import make_audio_competition

    comp = make_audio_competition(tmp_path, n_test=0)
    man = pd.read_csv(comp.root / "train.csv")
    shutil.copy(comp.root / "train" / "low00.wav", comp.root / "train" / "copy00.wav")
    man = pd.concat([man, pd.DataFrame([{"id": "copy00", "label": "high", "artist": "someone_else"}])], ignore_index=True)
    man.to_csv(comp.root / "train.csv", index=False)
    prep = prepare(load_config(comp.config), tmp_path / "work", workers=1)
    folds, report = make_folds(prep)
    by_id = folds.set_index("id")
    assert by_id.loc["low00", "fold"] == by_id.loc["copy00", "fold"]
    assert any(sorted(d["ids"]) == ["copy00", "low00"] for d in report["duplicates"])


# ----------------------------------------------------------------------------- duplicates, coverage, fold numbers


def test_duplicate_pairs_share_a_fold_for_every_seed_and_k(tabular):
    """The audit's merged groups must reach assign_folds: with 2 folds and one seed a pair lands together half
    the time by chance, so check many seeds, several k and every repeat column."""
    prep = _prep_tabular(tabular)
    pairs = (tabular.extra["same_pair"], tabular.extra["cross_pair"])
    for k in (2, 3, 4, 5):
        for seed in range(12):
            folds, _ = make_folds(prep, n_splits=k, n_repeats=2, seed=seed)
            by_id = folds.set_index("id")
            for pair in pairs:
                for col in ("fold", "fold_r1"):
                    assert by_id.loc[pair, col].nunique() == 1, f"k={k} seed={seed} {col}: duplicate pair {pair} split"


def test_class_missing_from_validation_folds_is_warned_and_audited(tmp_path, caplog):
    """k=5 with a class of 3 rows: two validation folds have no row of it; say so and record the counts."""
    from fixtures import make_tabular_competition

    comp = make_tabular_competition(tmp_path, duplicate_pairs=False, n_test=0)
    csv = comp.root / "features.csv"
    df = pd.read_csv(csv)
    keep = (df["label"] != "c") | (df.groupby("label").cumcount() < 3)
    df[keep].to_csv(csv, index=False)
    with caplog.at_level("WARNING", logger="src.folds"):
        folds, report = make_folds(_prep_tabular(comp), n_splits=5)
    counts = report["class_counts"]["fold"]
    assert counts["c"] == pd.crosstab(folds["label"], folds["fold"]).loc["c"].tolist()
    assert sum(counts["c"]) == 3 and counts["c"].count(0) == 2 and all(0 not in counts[c] for c in "ab")
    missing = [k for k, v in enumerate(counts["c"]) if v == 0]
    assert len(report["warnings"]) == 1 and f"class 'c' (3 rows in 3 group(s)) is absent from validation fold(s) {missing}" in report["warnings"][0]
    assert report["warnings"][0] in caplog.text


def test_fold_numbers_and_typed_fold_columns(tmp_path):
    path = tmp_path / "f.csv"
    pd.DataFrame({"id": ["007", "8", "9", "10", "11", "12"], "label": "a", "group": ["01"] * 6,
                  "fold": [2, 0, 1, 2, 0, 1], "fold_r1": [0, 0, 0, 1, 1, 1]}).to_csv(path, index=False)
    folds = read_fold_file(path)
    assert folds["id"].tolist()[0] == "007" and folds["group"].iloc[0] == "01"  # ids and groups stay text
    assert folds["fold"].dtype == np.int64 and folds["fold_r1"].dtype == np.int64
    assert fold_numbers(folds, "fold") == [0, 1, 2] and fold_numbers(folds, "fold_r1") == [0, 1]
    with pytest.raises(FoldError, match="no column 'fold_r2'"):
        fold_numbers(folds, "fold_r2")
