"""``[data] merge_classes`` / ``min_class_count`` (labels, errors, stale fold files) and ``python -m src.study data``."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
from fixtures import make_audio_competition, make_regression_competition, make_tabular_competition, write_toml
from train_helpers import _write_folds

from src.config import load_config, signature_diff
from src.data import load_dataset
from src.errors import ConfigError, DataError, FoldError
from src.features import prepare
from src.folds import load_folds_for

FIVE = ("a", "b", "c", "d", "e")


def with_data(config: Path, name: str, **data) -> Path:
    """A copy of ``config`` beside it (same relative data root) with ``[data]`` keys set."""
    raw = tomllib.loads(config.read_text())
    raw["data"].update(data)
    return write_toml(config.with_name(name), raw)


def test_merge_then_drop_rare_classes(tmp_path):
    comp = make_tabular_competition(tmp_path, classes=FIVE, n_per_class=6, duplicate_pairs=False, n_test=0)
    cfg = load_config(with_data(comp.config, "m.toml", merge_classes={"ab": ["a", "b"], "cd": ["c", "d"]}, min_class_count=7))
    ds = load_dataset(cfg)
    assert ds.classes == ["ab", "cd"] and sorted(set(ds.train["label"])) == ["ab", "cd"] and len(ds.train) == 24
    assert len(ds.arrays["train"]) == 30  # feature rows are selected by the fold/row machinery, not here
    assert ds.class_changes["dropped"] == {"e": 6} and ds.class_changes["after"] == {"ab": 12, "cd": 12}
    assert ds.class_changes["before"] == dict.fromkeys(FIVE, 6)
    assert ds.labels().tolist() == [0] * 12 + [1] * 12


def test_merge_into_an_existing_class_keeps_configured_order(tmp_path):
    comp = make_tabular_competition(tmp_path, duplicate_pairs=False, n_test=0)
    cfg = load_config(with_data(comp.config, "m.toml", classes=["c", "b", "a"], merge_classes={"b": ["b", "a"]}))
    ds = load_dataset(cfg)
    assert ds.classes == ["c", "b"] and ds.train["label"].value_counts().to_dict() == {"b": 24, "c": 12}


@pytest.mark.parametrize("data, match", [
    ({"merge_classes": {"ab": ["a", "x"]}}, r"merge_classes\.ab = \['a', 'x'\]: unknown class\(es\) \['x'\].*known classes are \['a', 'b', 'c'\]"),
    ({"merge_classes": {"ab": []}}, "lists no class"),
    ({"merge_classes": {"c": ["a", "b"]}}, "'c' is an existing class not in its own list"),
    ({"merge_classes": {"x": ["a"], "y": ["a", "b"]}}, "class 'a' is listed under both 'x' and 'y'"),
    ({"min_class_count": 13}, r"only \[\] remain"),
])
def test_bad_merge_or_drop_is_an_error(tmp_path, data, match):
    comp = make_tabular_competition(tmp_path, duplicate_pairs=False, n_test=0)
    with pytest.raises(DataError, match=match):
        load_dataset(load_config(with_data(comp.config, "bad.toml", **data)))


def test_merge_on_regression_is_a_config_error(tmp_path):
    comp = make_regression_competition(tmp_path)
    with pytest.raises(ConfigError, match="classification only"):
        load_config(with_data(comp.config, "r.toml", min_class_count=2))


def test_merge_and_drop_make_a_fold_file_stale(tmp_path):
    """Both keys enter the data signature; a fold file made before is refused (labels differ / rows are gone)."""
    comp = make_tabular_competition(tmp_path, classes=FIVE, n_per_class=6, duplicate_pairs=False, n_test=0)
    plain = load_config(comp.config)
    _write_folds(prepare(plain, tmp_path), tmp_path)
    merged = load_config(with_data(comp.config, "tab.toml", merge_classes={"ab": ["a", "b"]}))  # same name: same fold file
    assert signature_diff(plain.to_dict(), merged.to_dict()) == ["data.merge_classes"]
    assert signature_diff(plain.to_dict(), plain.to_dict() | {}) == []
    with pytest.raises(FoldError, match="is stale: 12 of 30 row.*'a' in the file, 'ab' in the data"):
        load_folds_for(prepare(merged, tmp_path), tmp_path)
    dropped = load_config(with_data(comp.config, "tab.toml", merge_classes={"ab": ["a", "b"], "cd": ["c", "d"]}, min_class_count=7))
    assert signature_diff(plain.to_dict(), dropped.to_dict()) == ["data.merge_classes", "data.min_class_count"]
    with pytest.raises(FoldError, match=r"does not match the data \(30 fold rows vs 24 training rows"):
        load_folds_for(prepare(dropped, tmp_path), tmp_path)


def test_old_runs_without_the_new_keys_keep_their_signature(tmp_path):
    """A run recorded before the keys existed has the same inputs as one at their neutral defaults."""
    comp = make_tabular_competition(tmp_path, n_test=0)
    new = load_config(comp.config).to_dict()
    old = {**new, "data": {k: v for k, v in new["data"].items() if k not in ("merge_classes", "min_class_count")}}
    assert signature_diff(old, new) == []


def test_study_data_on_audio(tmp_path):
    from src.study.__main__ import main

    comp = make_audio_competition(tmp_path, classes=("low", "high", "pulse"), n_per_class=3, n_test=2, lengths=[0.5, 0.75, 1.0])
    cfg = with_data(comp.config, "tiny.toml", merge_classes={"tone": ["low", "high"]})
    out = tmp_path / "rep"
    main(["data", "--config", str(cfg), "--workdir", str(tmp_path), "--out", str(out), "--examples", "1"])
    names = {p.name for p in out.iterdir()}
    assert {"classes.png", "durations.png", "examples_tone.png", "examples_pulse.png", "table.csv", "table.md"} <= names
    table = pd.read_csv(out / "table.csv").set_index("class")
    assert table.loc["low", "status"] == "merged into tone" and table.loc["tone", "n_clips_after"] == 6
    assert table.loc["tone", "n_clips_before"] == 0 and table.loc["pulse", "n_clips_after"] == 3
    assert table.loc["tone", "min_s"] == pytest.approx(0.5) and table.loc["tone", "max_s"] == pytest.approx(1.0)


def test_study_data_on_arrays_does_histograms_only(arrays, tmp_path):
    from src.study.__main__ import main

    out = tmp_path / "rep"
    main(["data", "--config", str(arrays.config), "--workdir", str(tmp_path), "--out", str(out)])
    assert {p.name for p in out.iterdir()} == {"classes.png", "table.csv", "table.md"}
    assert "need audio" in (out / "table.md").read_text()
    assert pd.read_csv(out / "table.csv")["n_clips_after"].sum() == 40
