"""Workspace config: one TOML file describes one competition.

Every command takes ``--config``. Relative paths in the file are resolved
against the directory that holds the config file, so a config can be moved
together with its data. Validation happens here, at load time, so a typo
fails before any decoding or training starts.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
REGRESSION_METRICS = ("spearman", "rmse")
DATA_KINDS = ("audio", "tabular", "arrays", "images")
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3")


class ConfigError(ValueError):
    """A config key is missing, mistyped or points at nothing."""


@dataclass
class CompetitionConfig:
    name: str
    slug: str = ""
    task: str = "classification"  # classification | regression
    metric: str = "accuracy"
    targets: list[str] = field(default_factory=lambda: ["label"])


@dataclass
class DataConfig:
    kind: str  # audio | tabular | arrays | images
    root: Path
    # audio / images: "folders" (one sub-folder per class) or "manifest" (CSV id,label)
    layout: str = "folders"
    train_dir: str = "train"
    manifest: str = ""
    test_dir: str = ""
    sample_submission: str = ""
    id_column: str = "id"
    label_column: str = "label"
    group_column: str = ""
    group_pattern: str = ""  # regex on the id; group = first capture group
    path_column: str = ""  # manifest column holding a relative file path
    extension: str = ""  # manifest ids without extension get this one
    image_size: list[int] = field(default_factory=lambda: [128, 128])  # images: (height, width)
    classes: list[str] = field(default_factory=list)
    on_corrupt: str = "error"  # error | skip (skipped files are listed in the run)
    # tabular: CSV with numeric feature columns
    train_csv: str = ""
    test_csv: str = ""
    feature_columns: list[str] = field(default_factory=list)  # empty: all numeric
    drop_columns: list[str] = field(default_factory=list)
    # arrays: <root>/<split>/<array_feature>/{X,labels}.npy
    array_feature: str = "mfccs"  # mfccs | melgrams
    train_split: str = "train"
    holdout_splits: list[str] = field(default_factory=list)
    test_split: str = ""


@dataclass
class AudioConfig:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    n_mfcc: int = 13
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    segment_seconds: float = 3.0
    segment_hop_seconds: float = 3.0
    max_seconds: float | None = None  # crop long clips (None: keep all)
    silence_threshold: float = 1e-4  # peak amplitude below this = silent clip


@dataclass
class FoldsConfig:
    n_splits: int = 5
    n_repeats: int = 1
    seed: int = 42
    dedup: bool = True  # put identical / near-identical rows in one group
    dedup_tolerance: float = 1e-6  # max standardized L2 distance for "near-identical"


@dataclass
class FeaturesConfig:
    # feature-vector models on audio data use these cached clip summaries
    vector: list[str] = field(default_factory=lambda: ["mfcc_stats", "chroma_stats"])


@dataclass
class WorkspaceConfig:
    path: Path
    competition: CompetitionConfig
    data: DataConfig
    audio: AudioConfig
    folds: FoldsConfig
    features: FeaturesConfig
    train: dict[str, Any] = field(default_factory=dict)  # default TrainConfig overrides

    @property
    def name(self) -> str:
        return self.competition.name

    @property
    def is_classification(self) -> bool:
        return self.competition.task == "classification"

    def resolve(self, rel: str) -> Path:
        return (self.data.root / rel) if rel else self.data.root

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _section(cls: type, raw: dict[str, Any], section: str, path: Path) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown} in [{section}]; valid keys: {sorted(known)}"
        )
    try:
        return cls(**raw)
    except TypeError as exc:  # missing required key
        raise ConfigError(f"{path}: [{section}] {exc}") from None


def load_config(path: str | Path) -> WorkspaceConfig:
    """Read and validate a workspace config; raise ConfigError naming the bad key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (pass --config configs/<name>.toml)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for req in ("competition", "data"):
        if req not in raw:
            raise ConfigError(f"{path}: missing section [{req}]")
    allowed = {"competition", "data", "audio", "folds", "features", "train"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {extra}; valid: {sorted(allowed)}")
    data_raw = dict(raw["data"])
    if "root" not in data_raw:
        raise ConfigError(f"{path}: [data] root is required (folder holding the data)")
    data_raw["root"] = (path.parent / data_raw["root"]).resolve()
    cfg = WorkspaceConfig(
        path=path.resolve(),
        competition=_section(CompetitionConfig, raw["competition"], "competition", path),
        data=_section(DataConfig, data_raw, "data", path),
        audio=_section(AudioConfig, raw.get("audio", {}), "audio", path),
        folds=_section(FoldsConfig, raw.get("folds", {}), "folds", path),
        features=_section(FeaturesConfig, raw.get("features", {}), "features", path),
        train=dict(raw.get("train", {})),
    )
    validate(cfg)
    return cfg


def _check_path(cfg: WorkspaceConfig, key: str, rel: str, want_dir: bool) -> None:
    if not rel:
        return
    p = cfg.resolve(rel)
    ok = p.is_dir() if want_dir else p.is_file()
    if not ok:
        what = "folder" if want_dir else "file"
        raise ConfigError(f"{cfg.path}: [data] {key} = {rel!r}: {what} {p} does not exist")


def validate(cfg: WorkspaceConfig) -> None:
    c, d, p = cfg.competition, cfg.data, cfg.path
    if c.task not in ("classification", "regression"):
        raise ConfigError(f"{p}: [competition] task = {c.task!r}; expected 'classification' or 'regression'")
    valid = CLASSIFICATION_METRICS if c.task == "classification" else REGRESSION_METRICS
    if c.metric not in valid:
        raise ConfigError(f"{p}: [competition] metric = {c.metric!r} is unknown for {c.task}; expected one of {list(valid)}")
    if not c.targets:
        raise ConfigError(f"{p}: [competition] targets must name at least one column")
    if c.task == "classification" and len(c.targets) != 1:
        raise ConfigError(f"{p}: [competition] classification takes exactly one target column, got {c.targets}")
    if d.kind not in DATA_KINDS:
        raise ConfigError(f"{p}: [data] kind = {d.kind!r}; expected one of {list(DATA_KINDS)}")
    if not d.root.is_dir():
        raise ConfigError(f"{p}: [data] root: folder {d.root} does not exist (download the data or fix the path; relative paths are relative to the config file)")
    if d.layout not in ("folders", "manifest"):
        raise ConfigError(f"{p}: [data] layout = {d.layout!r}; expected 'folders' or 'manifest'")
    if d.on_corrupt not in ("error", "skip"):
        raise ConfigError(f"{p}: [data] on_corrupt = {d.on_corrupt!r}; expected 'error' or 'skip'")
    if d.kind in ("audio", "images"):
        _check_path(cfg, "train_dir", d.train_dir, True)
        _check_path(cfg, "test_dir", d.test_dir, True)
        if d.layout == "manifest":
            if not d.manifest:
                raise ConfigError(f"{p}: [data] layout = 'manifest' needs manifest = 'train.csv'")
            _check_path(cfg, "manifest", d.manifest, False)
    if d.kind == "tabular":
        if not d.train_csv:
            raise ConfigError(f"{p}: [data] kind = 'tabular' needs train_csv = '<file>.csv'")
        _check_path(cfg, "train_csv", d.train_csv, False)
        _check_path(cfg, "test_csv", d.test_csv, False)
    if d.kind == "arrays":
        _check_path(cfg, "train_split", d.train_split, True)
        for s in d.holdout_splits:
            _check_path(cfg, "holdout_splits", s, True)
        _check_path(cfg, "test_split", d.test_split, True)
    _check_path(cfg, "sample_submission", d.sample_submission, False)
    if d.group_pattern:
        import re

        try:
            re.compile(d.group_pattern)
        except re.error as exc:
            raise ConfigError(f"{p}: [data] group_pattern is not a valid regex: {exc}") from None
    a = cfg.audio
    if a.segment_seconds <= 0 or a.segment_hop_seconds <= 0:
        raise ConfigError(f"{p}: [audio] segment_seconds and segment_hop_seconds must be > 0")
    if cfg.folds.n_splits < 2:
        raise ConfigError(f"{p}: [folds] n_splits = {cfg.folds.n_splits}; need at least 2")
    unknown_vec = set(cfg.features.vector) - {"mfcc_stats", "chroma_stats"}
    if unknown_vec:
        raise ConfigError(f"{p}: [features] vector has unknown entries {sorted(unknown_vec)}; valid: ['mfcc_stats', 'chroma_stats']")
