"""Config loading: every shipped config loads; bad configs fail naming the key and the fix."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fixtures import make_audio_competition, make_tabular_competition, write_toml
from src.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def _rewrite(config: Path, edit) -> Path:
    """Load the TOML, let ``edit`` change the dict, write it back."""
    raw = tomllib.loads(config.read_text())
    edit(raw)
    return write_toml(config, raw)


@pytest.fixture
def audio_cfg(tmp_path):
    return make_audio_competition(tmp_path, n_per_class=1, groups_per_class=1, n_test=1).config


def test_valid_config_resolves_paths_relative_to_the_file(audio_cfg):
    cfg = load_config(audio_cfg)
    assert cfg.data.root == (audio_cfg.parent / "../data/tiny").resolve()
    assert cfg.resolve("train.csv").is_file()
    assert cfg.audio.sample_rate == 8000 and cfg.folds.n_splits == 2
    assert cfg.to_dict()["data"]["root"] == str(cfg.data.root)  # JSON-able for config.json


@pytest.mark.parametrize("name", ["demo", "gtzan_audio", "gtzan_features", "music4_mfcc", "kaggle_example"])
def test_shipped_configs_parse_and_only_fail_on_missing_data(name):
    """Shipped configs have no unknown keys; without the data they fail on the data root only."""
    path = REPO / "configs" / f"{name}.toml"
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        msg = str(exc)
        assert "does not exist" in msg and ("root" in msg or "_dir" in msg or "csv" in msg or "split" in msg or "manifest" in msg or "sample_submission" in msg), msg
        assert "unknown" not in msg
    else:
        assert cfg.name


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda r: r["competition"].pop("name"), r"\[competition\].*name"),
        (lambda r: r["data"].pop("root"), r"\[data\] root is required"),
        (lambda r: r.pop("data"), r"missing section \[data\]"),
        (lambda r: r["competition"].update(metric="auc_roc"), r"metric = 'auc_roc' is unknown.*accuracy"),
        (lambda r: r["competition"].update(task="ranking"), r"task = 'ranking'"),
        (lambda r: r["competition"].update(task="regression"), r"metric = 'accuracy' is unknown for regression.*spearman"),
        (lambda r: r["data"].update(smaple_rate=1), r"unknown key\(s\) \['smaple_rate'\] in \[data\]"),
        (lambda r: r["audio"].update(sample_rte=1), r"unknown key\(s\) \['sample_rte'\] in \[audio\]"),
        (lambda r: r.update(extras={"a": 1}), r"unknown section\(s\) \['extras'\]"),
        (lambda r: r["data"].update(kind="video"), r"kind = 'video'"),
        (lambda r: r["data"].update(layout="flat"), r"layout = 'flat'"),
        (lambda r: r["data"].update(on_corrupt="ignore"), r"on_corrupt = 'ignore'"),
        (lambda r: r["data"].update(root="../nowhere"), r"\[data\] root: folder .*nowhere does not exist"),
        (lambda r: r["data"].update(manifest="trian.csv"), r"\[data\] manifest = 'trian.csv': file .* does not exist"),
        (lambda r: r["data"].update(test_dir="tset"), r"\[data\] test_dir = 'tset': folder .* does not exist"),
        (lambda r: r["data"].update(sample_submission="ss.csv"), r"\[data\] sample_submission = 'ss.csv'"),
        (lambda r: r["data"].update(group_pattern="(unclosed"), r"group_pattern is not a valid regex"),
        (lambda r: r["audio"].update(segment_seconds=0.0), r"segment_seconds"),
        (lambda r: r["folds"].update(n_splits=1), r"n_splits = 1"),
        (lambda r: r.update(features={"vector": ["mfcc_stats", "zcr"]}), r"unknown entries \['zcr'\]"),
    ],
    ids=["no-name", "no-root", "no-data", "metric", "task", "regr-metric", "unknown-data-key", "unknown-audio-key",
         "unknown-section", "kind", "layout", "on_corrupt", "root-path", "manifest-path", "test-dir", "sample-sub",
         "regex", "segment", "n_splits", "vector"],
)
def test_bad_config_names_the_key(audio_cfg, edit, pattern):
    _rewrite(audio_cfg, edit)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(audio_cfg)
    assert str(audio_cfg) in str(info.value) or "tiny.toml" in str(info.value)  # names the file


def test_tabular_missing_train_csv(tmp_path):
    cfg = make_tabular_competition(tmp_path, n_test=0).config
    _rewrite(cfg, lambda r: r["data"].update(train_csv="missing.csv"))
    with pytest.raises(ConfigError, match=r"train_csv = 'missing.csv'"):
        load_config(cfg)
    _rewrite(cfg, lambda r: r["data"].pop("train_csv"))
    with pytest.raises(ConfigError, match=r"needs train_csv"):
        load_config(cfg)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[competition\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
