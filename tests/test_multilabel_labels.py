"""Multi-label targets (src.multilabel.label_matrix through src.data.load_dataset) on the three fixture styles:
the matrices and class lists, and every bad label or bad config key as one clear error naming file, line and id."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import make_audio_competition, make_multilabel_competition

from src import cli
from src.config import ConfigError, load_config
from src.data import DataError, load_dataset
from src.folds import main as folds_main
from src.multilabel import label_strings

CLASSES = ["low", "high", "pulse", "chirp"]  # the fixture's default classes
NO_TEST = {"sample_submission": "", "test_dir": ""}  # the windowed BirdCLEF test set is not what these tests read


def _comp(tmp_path: Path, style: str, **kw):
    n_test = {"n_test": 0} if style != "birdclef" else {"data": {**NO_TEST, **kw.pop("data", {})}}
    return make_multilabel_competition(tmp_path, style=style, n_train=12, **n_test, **kw)


def _expected(comp, classes: list[str], secondary: float = 1.0) -> np.ndarray:
    """The matrix from the fixture's own label lists: first label primary, the others ``secondary``."""
    Y = np.zeros((len(comp.train), len(classes)), np.float32)
    for r, labels in enumerate(comp.train["labels"]):
        for k, c in enumerate(labels):
            Y[r, classes.index(c)] = max(Y[r, classes.index(c)], 1.0 if k == 0 else secondary)
    return Y


def _edit(comp, row: int, column: str, value) -> Path:
    path = comp.root / "train.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(path, index=False)
    return path


def _folds_cli(comp, tmp_path: Path, capsys) -> str:
    """Run ``python -m src.folds`` in-process the way a user does; returns stderr after checking one error line, exit 2."""
    with pytest.raises(SystemExit) as info:
        cli.run_command(folds_main, ["--config", str(comp.config), "--workdir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("error: ")]) == 1, err
    return err


# ----------------------------------------------------------------------------- matrices


def test_freesound_separator_labels(tmp_path):
    comp = _comp(tmp_path, "freesound")
    ds = load_dataset(load_config(comp.config))
    assert ds.classes == sorted(CLASSES)  # no [data] classes: sorted from the data
    Y = ds.labels("train")
    assert Y.shape == (12, 4) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, _expected(comp, ds.classes))
    assert set(np.unique(Y)) == {0.0, 1.0}
    strings = label_strings(Y, ds.classes)
    assert strings[0] == "|".join(sorted(comp.train["labels"][0]))  # fold-file label: positives in class order


def test_freesound_class_order_from_config(tmp_path):
    order = ["pulse", "low", "chirp", "high", "unused"]
    comp = _comp(tmp_path, "freesound", data={"classes": order})
    ds = load_dataset(load_config(comp.config))
    assert ds.classes == order
    np.testing.assert_array_equal(ds.labels("train"), _expected(comp, order))
    assert ds.labels("train")[:, 4].sum() == 0  # a listed class without rows: a zero column (and a warning)


def test_binary_columns(tmp_path):
    comp = _comp(tmp_path, "binary")
    ds = load_dataset(load_config(comp.config))
    assert ds.classes == CLASSES  # the order of [competition] targets
    np.testing.assert_array_equal(ds.labels("train"), _expected(comp, CLASSES))


def test_birdclef_secondary_labels_weighted_half(tmp_path):
    comp = _comp(tmp_path, "birdclef")
    ds = load_dataset(load_config(comp.config))
    assert ds.classes == sorted(CLASSES)
    Y = ds.labels("train")
    np.testing.assert_array_equal(Y, _expected(comp, ds.classes, secondary=0.5))
    assert set(np.unique(Y)) == {0.0, 0.5, 1.0}
    assert ((Y == 1).sum(1) == 1).all()  # exactly one primary label per row


def test_birdclef_label_both_primary_and_secondary_keeps_weight_one(tmp_path):
    comp = _comp(tmp_path, "birdclef")
    df = pd.read_csv(comp.root / "train.csv")
    _edit(comp, 1, "secondary_labels", f"['{df['primary_label'][1]}', 'chirp']")
    ds = load_dataset(load_config(comp.config))
    Y, classes = ds.labels("train"), ds.classes
    assert Y[1, classes.index(df["primary_label"][1])] == 1.0
    assert Y[1, classes.index("chirp")] == 0.5


# ----------------------------------------------------------------------------- bad labels


def _assert_names(err: str, path: Path, line: int, rid: str, *more: str) -> None:
    for needle in (str(path), f"line {line}", repr(rid), *more):
        assert needle in err, (needle, err)


def test_empty_label_cell(tmp_path, capsys):
    comp = _comp(tmp_path, "freesound")
    path = _edit(comp, 4, "labels", "")
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    _assert_names(str(info.value), path, 6, "c004.wav", "'labels'", "no label")  # row 4 -> line 6 (header is line 1)
    _assert_names(_folds_cli(comp, tmp_path, capsys), path, 6, "c004.wav")


def test_separator_only_cell_is_empty_too(tmp_path):
    comp = _comp(tmp_path, "freesound")
    path = _edit(comp, 2, "labels", " , ")
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    _assert_names(str(info.value), path, 4, "c002.wav", "no label")


def test_label_not_in_classes(tmp_path, capsys):
    comp = _comp(tmp_path, "freesound", data={"classes": CLASSES})
    path = _edit(comp, 3, "labels", "low,chrip")
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    _assert_names(str(info.value), path, 5, "c003.wav", "'chrip'", "[data] classes")
    _assert_names(_folds_cli(comp, tmp_path, capsys), path, 5, "c003.wav", "chrip")


def test_secondary_label_not_in_classes(tmp_path):
    comp = _comp(tmp_path, "birdclef", data={"classes": CLASSES})
    path = _edit(comp, 5, "secondary_labels", "['owl']")
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    rid = pd.read_csv(path)["filename"][5]
    _assert_names(str(info.value), path, 7, rid, "'owl'", "'secondary_labels'")


@pytest.mark.parametrize("cell", ["['chirp'", "chirp", "[1, 2]"])
def test_malformed_secondary_list(tmp_path, capsys, cell):
    comp = _comp(tmp_path, "birdclef")
    path = _edit(comp, 2, "secondary_labels", cell)
    rid = pd.read_csv(path)["filename"][2]
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    _assert_names(str(info.value), path, 4, rid, "'secondary_labels'", "not a list of labels")
    _assert_names(_folds_cli(comp, tmp_path, capsys), path, 4, rid)


def test_binary_column_holding_two(tmp_path, capsys):
    comp = _comp(tmp_path, "binary")
    path = _edit(comp, 1, "high", "2")
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    _assert_names(str(info.value), path, 3, "c001.wav", "'high'", "not 0 or 1")
    _assert_names(_folds_cli(comp, tmp_path, capsys), path, 3, "c001.wav")


def test_binary_row_of_zeros(tmp_path, capsys):
    comp = _comp(tmp_path, "binary")
    for c in CLASSES:
        path = _edit(comp, 6, c, "0")
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    _assert_names(str(info.value), path, 8, "c006.wav", "every class column is 0")
    _assert_names(_folds_cli(comp, tmp_path, capsys), path, 8, "c006.wav")


# ----------------------------------------------------------------------------- bad config keys


def test_label_separator_on_classification_task(tmp_path, capsys):
    comp = make_audio_competition(tmp_path, n_per_class=2, n_test=0, data={"label_separator": ","})
    with pytest.raises(ConfigError, match="label_separator apply to task = 'multilabel'"):
        load_config(comp.config)
    assert "label_separator" in _folds_cli(comp, tmp_path, capsys)


def test_secondary_weight_without_secondary_column(tmp_path, capsys):
    comp = _comp(tmp_path, "freesound", data={"secondary_weight": 0.5})
    with pytest.raises(ConfigError, match="secondary_weight is set but no secondary_labels_column"):
        load_config(comp.config)
    assert "secondary_labels_column" in _folds_cli(comp, tmp_path, capsys)


def test_secondary_weight_above_one(tmp_path, capsys):
    comp = _comp(tmp_path, "birdclef", data={"secondary_weight": 1.5})
    with pytest.raises(ConfigError, match=r"secondary_weight = 1.5: must be in \[0, 1\]"):
        load_config(comp.config)
    assert "secondary_weight = 1.5" in _folds_cli(comp, tmp_path, capsys)
