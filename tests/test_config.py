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
        keys = ("root", "_dir", "csv", "split", "manifest", "sample_submission")
        assert "does not exist" in msg and any(k in msg for k in keys), msg
        assert "unknown" not in msg
    else:
        assert cfg.name


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda r: r["competition"].pop("name"), r"\[competition\] name = .*Field required"),
        (lambda r: r["data"].pop("root"), r"\[data\] root is required"),
        (lambda r: r.pop("data"), r"missing section \[data\]"),
        (lambda r: r["competition"].update(metric="auc_roc"), r"metric = 'auc_roc': Input should be 'accuracy'"),
        (lambda r: r["competition"].update(task="ranking"), r"task = 'ranking'"),
        (lambda r: r["competition"].update(task="regression"), r"metric = 'accuracy' is unknown for regression.*spearman"),
        (lambda r: r["data"].update(smaple_rate=1), r"\[data\] unknown setting 'smaple_rate'.*valid keys of \[data\]"),
        (lambda r: r["audio"].update(sample_rte=1), r"\[audio\] unknown setting 'sample_rte'"),
        (lambda r: r.update(extras={"a": 1}), r"unknown section\(s\) \['extras'\]"),
        (lambda r: r["data"].update(kind="video"), r"kind = 'video'"),
        (lambda r: r["data"].update(layout="flat"), r"layout = 'flat'"),
        (lambda r: r["data"].update(on_corrupt="ignore"), r"on_corrupt = 'ignore'"),
        (lambda r: r["data"].update(root="../nowhere"), r"\[data\] root: folder .*nowhere does not exist"),
        (lambda r: r["data"].update(manifest="trian.csv"), r"\[data\] manifest = 'trian.csv': file .* does not exist"),
        (lambda r: r["data"].update(test_dir="tset"), r"\[data\] test_dir = 'tset': folder .* does not exist"),
        (lambda r: r["data"].update(sample_submission="ss.csv"), r"\[data\] sample_submission = 'ss.csv'"),
        (lambda r: r["data"].update(group_pattern="(unclosed"), r"group_pattern is not a valid regex"),
        (lambda r: r["audio"].update(segment_seconds=0.0), r"segment_seconds = 0.0: Input should be greater than 0"),
        (lambda r: r["folds"].update(n_splits=1), r"n_splits = 1"),
        (lambda r: r.update(features={"vector": ["mfcc_stats", "zcr"]}), r"vector.1 = 'zcr': Input should be 'mfcc_stats', 'chroma_stats'"),
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


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda r: r["audio"].update(n_mels=64.7), r"\[audio\] n_mels = 64.7: Input should be a valid integer"),
        (lambda r: r["folds"].update(dedup="no"), r"\[folds\] dedup = 'no': Input should be a valid boolean"),
        (lambda r: r["folds"].update(n_splits="5"), r"\[folds\] n_splits = '5': Input should be a valid integer"),
        (lambda r: r.update(train={"epochz": 3}), r"\[train\]: unknown setting 'epochz'"),
        (lambda r: r.update(train={"lr": "fast"}), r"\[train\]: lr = 'fast': Input should be a valid number"),
        (lambda r: r.update(train={"optimizer": "adamm"}), r"optimizer = 'adamm': Input should be 'sgd'"),
        (lambda r: r["data"].update(label_column="genre"), r"\[data\] label_column is not a setting — the label column is named by"),
        (lambda r: r["audio"].update(sample_rate=-1), r"sample_rate = -1: Input should be greater than 0"),
    ],
    ids=["float-for-int", "string-for-bool", "string-for-int", "train-typo", "train-type", "train-choice", "removed-key", "negative"],
)
def test_config_values_are_type_checked(audio_cfg, edit, pattern):
    """Values that used to load silently (64.7 mels, dedup = "no" meaning on) or crash later are refused at load time."""
    _rewrite(audio_cfg, edit)
    with pytest.raises(ConfigError, match=pattern):
        load_config(audio_cfg)


def _documented_keys(text: str) -> dict[str, set[str]]:
    import re

    keys: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        m = re.match(r"\s*#?\s*\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"\s*#?\s*(\w+)\s*=", line)
        if m and section:
            keys.setdefault(section, set()).add(m.group(1))
    return keys


def test_example_config_documents_every_key():
    """configs/kaggle_example.toml claims to document every key: every field of every section (incl. [train]) appears."""
    import dataclasses

    from src import config as c
    from src.settings import FIELDS

    doc = _documented_keys((Path(__file__).resolve().parent.parent / "configs" / "kaggle_example.toml").read_text())
    sections = {"competition": c.CompetitionConfig, "data": c.DataConfig, "audio": c.AudioConfig, "folds": c.FoldsConfig,
                "features": c.FeaturesConfig, "test": c.TestConfig}
    missing = {s: sorted({f.name for f in dataclasses.fields(cls)} - doc.get(s, set())) for s, cls in sections.items()}
    missing["train"] = sorted(set(FIELDS) - {"model", "model_params", "run_id"} - doc.get("train", set()))
    assert not any(missing.values()), f"undocumented keys in configs/kaggle_example.toml: {missing}"


def test_workspace_default_config(audio_cfg, tmp_path, monkeypatch):
    """--config may be left out when workspace.toml (or $AUDIO_WS_CONFIG) names the competition's config."""
    from src.config import default_config

    monkeypatch.delenv("AUDIO_WS_CONFIG", raising=False)
    work = tmp_path / "ws"
    work.mkdir()
    with pytest.raises(ConfigError, match="no --config given.*workspace.toml"):
        load_config(None, work)
    (work / "workspace.toml").write_text(f'config = "{audio_cfg}"\n')
    assert load_config(None, work).path == Path(audio_cfg).resolve()
    monkeypatch.setenv("AUDIO_WS_CONFIG", str(audio_cfg))
    assert default_config(None, tmp_path) == Path(audio_cfg)
    assert default_config("other.toml", work) == Path("other.toml")  # an explicit --config wins
