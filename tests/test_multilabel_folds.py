"""The multi-label fold audit: iterative stratification over groups (src.folds.assign_folds_multilabel) keeps groups
whole, reaches every validation fold with every class that can reach it, spreads each class's positives evenly,
and the fold file / audit written by ``python -m src.folds`` carry the "a|b" labels and per-class counts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures import make_multilabel_competition

from src import cli
from src.config import load_config
from src.errors import FoldError
from src.features import prepare
from src.folds import assign_folds_multilabel, fold_path, load_folds_for, positive_coverage
from src.folds import main as folds_main

K = 5
MAX_GROUP = 4


def label_matrix(seed: int, n: int = 200, n_classes: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Y (n, C): class j has round(linspace(60, 5)[j]) positive rows drawn at random (~2 labels a row, some rows
    none); groups of 1..4 consecutive rows, like several clips of one recording or one author."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, n_classes), np.float32)
    for c, f in enumerate(np.linspace(60, 5, n_classes).round().astype(int)):
        Y[rng.choice(n, f, replace=False), c] = 1
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, MAX_GROUP + 1)))
    sizes[-1] -= sum(sizes) - n
    groups = np.repeat([f"g{i:03d}" for i in range(len(sizes))], sizes)
    return Y, groups


def _counts(Y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """(C, k) positive rows of each class in each validation fold."""
    return np.stack([(Y[fold == f] > 0).sum(0) for f in range(K)], axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_groups_whole_and_every_reachable_class_in_every_fold(seed):
    Y, groups = label_matrix(seed)
    fold = assign_folds_multilabel(Y, groups, K, seed)
    assert fold.shape == (200,) and set(fold) == set(range(K))
    assert (pd.Series(fold).groupby(groups).nunique() == 1).all()  # a group is never split
    counts = _counts(Y, fold)
    for c in range(Y.shape[1]):
        n_groups = len(set(groups[Y[:, c] > 0]))
        if n_groups >= K:
            assert (counts[c] > 0).all(), (c, counts[c], n_groups)
    # the audit agrees and has nothing to warn about
    table, warnings = positive_coverage(pd.DataFrame({"group": groups, "fold": fold}), Y, [f"c{j}" for j in range(12)], K)
    assert warnings == []
    assert table["fold"]["c0"] == counts[0].tolist()
    rows = np.bincount(fold, minlength=K)
    assert np.abs(rows - 200 / K).max() <= 0.25 * 200 / K  # fold sizes stay near n/k as well


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_positives_per_fold_near_total_over_k(seed):
    """Bound tested: |positives of class c in fold f - total_c / k| <= total_c / (2k) + 4, and for the rarest class
    (placed first) <= m_c, its most positives in one group.

    Why it holds: in class c's round every group still holding c goes to the fold that wants the most c; a fold
    that receives one drops by at most m_c (<= 4, the largest group), so the spread of the folds' wants never grows
    beyond max(spread at the start of the round, m_c), and the wants sum to 0 at the end. The rarest class starts at
    spread 0, hence <= m_c. Later classes start with positives already placed by rarer classes' rounds (groups hold
    several classes), which nothing steers: the total_c / (2k) allowance covers that (measured over 200 seeds of this
    generator: worst 9 for total 60 (bound 10), 6 for 30 (bound 7)). Mean deviation is checked against random
    group folds to show the stratification does work."""
    Y, groups = label_matrix(seed)
    fold = assign_folds_multilabel(Y, groups, K, seed)
    counts = _counts(Y, fold)
    total = (Y > 0).sum(0)
    dev = np.abs(counts - total[:, None] / K)  # (C, k)
    assert (dev.max(1) <= total / (2 * K) + MAX_GROUP).all(), (dev.max(1), total)
    rarest = int(np.argmin(total))
    m = max((Y[groups == g, rarest] > 0).sum() for g in set(groups))
    assert dev[rarest].max() <= m
    g_codes, g = np.unique(groups, return_inverse=True)
    random_fold = np.random.default_rng(seed).integers(0, K, len(g_codes))[g]
    random_dev = np.abs(_counts(Y, random_fold) - total[:, None] / K)
    assert dev.mean() < 0.7 * random_dev.mean(), (dev.mean(), random_dev.mean())  # measured: 0.69 vs 2.0 mean


def test_deterministic_for_a_seed():
    Y, groups = label_matrix(7)
    a = assign_folds_multilabel(Y, groups, K, 11)
    np.testing.assert_array_equal(a, assign_folds_multilabel(Y, groups, K, 11))
    assert (a != assign_folds_multilabel(Y, groups, K, 12)).any()


def test_too_few_groups_is_a_fold_error():
    Y = np.eye(4, dtype=np.float32)
    with pytest.raises(FoldError, match="only 3 groups for 5 folds"):
        assign_folds_multilabel(Y, np.array(["a", "a", "b", "c"]), 5, 0)


# ----------------------------------------------------------------------------- python -m src.folds


@pytest.fixture
def freesound_folds(tmp_path, capsys):
    """A Freesound-shaped fixture after ``python -m src.folds --n-splits 3`` (in-process, as the CLI runs it)."""
    comp = make_multilabel_competition(tmp_path, style="freesound", n_train=18, n_test=0)
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as info:
        cli.run_command(folds_main, ["--config", str(comp.config), "--workdir", str(work), "--n-splits", "3"])
        raise SystemExit(0)
    assert info.value.code == 0
    return comp, work, capsys.readouterr().out


def test_fold_file_and_audit(freesound_folds):
    comp, work, out = freesound_folds
    path = fold_path(load_config(comp.config), work, 3)
    folds = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(folds.columns) == ["id", "label", "group", "fold"]
    want = ["|".join(sorted(ls)) for ls in comp.train["labels"]]  # classes sorted from the data: chirp|high|low|pulse
    assert folds["label"].tolist() == want
    assert (folds.groupby("group")["fold"].nunique() == 1).all()
    audit = json.loads(path.with_suffix(".json").read_text())
    fold = folds["fold"].astype(int).to_numpy()
    for c in ["chirp", "high", "low", "pulse"]:
        has = folds["label"].str.split("|").apply(lambda ls, c=c: c in ls).to_numpy()
        assert audit["class_counts"]["fold"][c] == [int((has & (fold == f)).sum()) for f in range(3)]
    assert audit["n_splits"] == 3 and audit["sha256"]
    assert "positives of class / fold" in out and "chirp" in out  # the per-class table is printed too


def test_load_folds_refuses_a_changed_label(freesound_folds):
    comp, work, _ = freesound_folds
    cfg = load_config(comp.config)
    load_folds_for(prepare(cfg, work, workers=1), work, fold_path(cfg, work, 3))  # unchanged: accepted
    path = comp.root / "train.csv"
    df = pd.read_csv(path)
    df.loc[4, "labels"] = ",".join(reversed(df.loc[4, "labels"].split(",")))  # same set, other order: not a change
    df.to_csv(path, index=False)
    load_folds_for(prepare(cfg, work, workers=1), work, fold_path(cfg, work, 3))
    old = df.loc[5, "labels"]
    df.loc[5, "labels"] = "pulse" if old != "pulse" else "low"
    df.to_csv(path, index=False)
    with pytest.raises(FoldError, match="is stale") as info:
        load_folds_for(prepare(cfg, work, workers=1), work, fold_path(cfg, work, 3))
    assert "line 7" in str(info.value) and "c005.wav" in str(info.value)


def test_duplicate_clips_share_a_group_and_the_audit_shows_their_label_sets(tmp_path):
    """Two identical clips with different label sets (binary 0/1 columns): one group, one fold, and the
    audit lists their labels as the fold file writes them ("high|pulse"), not one 0/1 target column."""
    from train_helpers import _write_folds

    comp = make_multilabel_competition(tmp_path, style="binary", n_train=12, n_test=0)
    (comp.root / "train" / "c002.wav").write_bytes((comp.root / "train" / "c000.wav").read_bytes())
    cfg = load_config(comp.config)
    path = _write_folds(prepare(cfg, tmp_path / "work", workers=1), tmp_path / "work")
    folds = pd.read_csv(path, dtype=str)
    assert folds.loc[0, "group"] == folds.loc[2, "group"] and folds.loc[0, "fold"] == folds.loc[2, "fold"]
    dup = json.loads(path.with_suffix(".json").read_text())["duplicates"]
    assert len(dup) == 1 and sorted(dup[0]["ids"]) == ["c000.wav", "c002.wav"]
    assert sorted(dup[0]["labels"]) == sorted(folds.loc[[0, 2], "label"]), dup  # e.g. ["chirp|low", "high|pulse"]
