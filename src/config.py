"""Workspace config: one TOML file describes one competition.

Every command takes ``--config``, or finds the workspace's default (:func:`default_config`:
``$AUDIO_WS_CONFIG``, else ``config = "configs/<name>.toml"`` in ``<workdir>/workspace.toml``), so a
workspace that works on one competition does not repeat it (``python -m src.tune --model vgg16``).
Relative paths in the file are resolved against the directory that holds the config file, so a
config can be moved together with its data.

Every section is a strict pydantic dataclass: a value of the wrong type (``n_mels = 64.7``,
``dedup = "no"``, ``n_splits = "5"``), a value outside its choices and an unknown key fail at load
time with the section, key and value named; ``[train]`` is checked against the train settings
(``src.settings``). ``configs/kaggle_example.toml`` documents every key (a test checks it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError
from pydantic.dataclasses import dataclass

from .errors import ConfigError

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
REGRESSION_METRICS = ("spearman", "rmse")
# multi-label (src.metrics): macro ROC-AUC over classes with positives (BirdCLEF 2024-25), padded cmAP (BirdCLEF 2023),
# label-weighted label-ranking average precision (Freesound 2019), micro/macro F1 at a 0.5 threshold
MULTILABEL_METRICS = ("roc_auc", "cmap", "lwlrap", "micro_f1", "macro_f1")
TASK_METRICS = {"classification": CLASSIFICATION_METRICS, "multilabel": MULTILABEL_METRICS, "regression": REGRESSION_METRICS}
DATA_KINDS = ("audio", "tabular", "arrays", "images")
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3")
STRICT = ConfigDict(extra="forbid", strict=True)
ENV_CONFIG = "AUDIO_WS_CONFIG"
# Input settings added after runs existed: at this value they change nothing, so they stay out of the data
# signature (old runs, fold files and studies, recorded without them, stay valid); any other value enters it.
NEUTRAL_KEYS = {("data", "merge_classes"): {}, ("data", "min_class_count"): 0, ("data", "targets_key"): "",
                ("data", "label_separator"): "", ("data", "secondary_labels_column"): "", ("data", "secondary_weight"): 1.0,
                ("test", "window_seconds"): None, ("test", "row_id_template"): "{file}_{end}"}
REMOVED_KEYS = {("data", "label_column"): "the label column is named by [competition] targets = ['<column>']"}


@dataclass(config=STRICT)
class CompetitionConfig:
    name: str
    slug: str = ""
    task: Literal["classification", "multilabel", "regression"] = "classification"
    metric: Literal["accuracy", "balanced_accuracy", "macro_f1", "spearman", "rmse", "roc_auc", "cmap", "lwlrap", "micro_f1"] = "accuracy"
    targets: list[str] = field(default_factory=lambda: ["label"])


@dataclass(config=STRICT)
class DataConfig:
    kind: Literal["audio", "tabular", "arrays", "images"]
    root: Path
    # audio / images: "folders" (one sub-folder per class) or "manifest" (CSV id,label)
    layout: Literal["folders", "manifest"] = "folders"
    train_dir: str = "train"
    manifest: str = ""
    test_dir: str = ""
    sample_submission: str = ""
    id_column: str = "id"
    group_column: str = ""
    group_pattern: str = ""  # regex on the id; group = first capture group
    path_column: str = ""  # manifest column holding a relative file path
    extension: str = ""  # manifest ids without extension get this one
    # audio / images: targets from a second CSV (e.g. a features table), joined on its column targets_key,
    # whose values are the rows' ids or file names (blues.00000 or blues.00000.wav)
    targets_csv: str = ""
    targets_key: str = ""
    image_size: list[PositiveInt] = field(default_factory=lambda: [128, 128])  # images: (height, width)
    classes: list[str] = field(default_factory=list)
    # classification: merge classes ({"rock_metal" = ["rock", "metal"]}), then drop classes with fewer training rows
    merge_classes: dict[str, list[str]] = field(default_factory=dict)
    min_class_count: NonNegativeInt = 0  # 0: keep every class
    # multilabel: one target column holding several labels split on label_separator ("Bark,Walk"), and/or
    # BirdCLEF's primary + secondary labels (a Python-list string "['a', 'b']") weighted secondary_weight;
    # or several 0/1 target columns, one per class
    label_separator: str = ""
    secondary_labels_column: str = ""
    secondary_weight: float = 1.0
    on_corrupt: Literal["error", "skip"] = "error"  # skip: skipped files are listed in the run (skipped files are listed in the run)
    # tabular: CSV with numeric feature columns
    train_csv: str = ""
    test_csv: str = ""
    feature_columns: list[str] = field(default_factory=list)  # empty: all numeric
    drop_columns: list[str] = field(default_factory=list)
    # arrays: <root>/<split>/<array_feature>/{X,labels}.npy
    array_feature: Literal["mfccs", "melgrams"] = "mfccs"
    train_split: str = "train"
    holdout_splits: list[str] = field(default_factory=list)
    test_split: str = ""


@dataclass(config=STRICT)
class AudioConfig:
    sample_rate: PositiveInt = 22050
    n_fft: PositiveInt = 2048
    hop_length: PositiveInt = 512
    n_mels: PositiveInt = 128
    n_mfcc: PositiveInt = 13
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    segment_seconds: PositiveFloat = 3.0
    segment_hop_seconds: PositiveFloat = 3.0
    max_seconds: PositiveFloat | None = None  # crop long clips (None: keep all)
    silence_threshold: float = 1e-4  # peak amplitude below this = silent clip


@dataclass(config=STRICT)
class FoldsConfig:
    n_splits: int = 5
    n_repeats: PositiveInt = 1
    seed: int = 42
    dedup: bool = True  # put identical / near-identical rows in one group
    dedup_tolerance: float = 1e-6  # max standardized L2 distance for "near-identical"


@dataclass(config=STRICT)
class FeaturesConfig:
    # feature-vector models on audio data use these cached clip summaries
    # clip summaries vector models see on audio data: MFCC/chroma mean+std, or frozen musicnn embeddings (mean+std, 400-d)
    vector: list[Literal["mfcc_stats", "chroma_stats", "musicnn_msd", "musicnn_mtt", "musicnn_msd_pool", "musicnn_mtt_pool"]] = field(
        default_factory=lambda: ["mfcc_stats", "chroma_stats"])


@dataclass(config=STRICT)
class TestConfig:
    # long test files (soundscapes) predicted per window: one submission row per window, id from the template
    # ({file}: file stem, {end}/{start}: window end/start in whole seconds, {index}: window number from 0)
    window_seconds: PositiveFloat | None = None
    row_id_template: str = "{file}_{end}"


@dataclasses.dataclass
class WorkspaceConfig:
    path: Path
    competition: CompetitionConfig
    data: DataConfig
    audio: AudioConfig
    folds: FoldsConfig
    features: FeaturesConfig
    train: dict[str, Any] = field(default_factory=dict)  # [train]: validated TrainConfig overrides
    test: TestConfig = field(default_factory=TestConfig)

    @property
    def name(self) -> str:
        return self.competition.name

    @property
    def task(self) -> str:
        return self.competition.task

    @property
    def is_classification(self) -> bool:
        """Single-label classification (softmax over classes)."""
        return self.competition.task == "classification"

    @property
    def is_multilabel(self) -> bool:
        return self.competition.task == "multilabel"

    @property
    def has_classes(self) -> bool:
        """Predictions are one probability per class (single- or multi-label), not target values."""
        return self.competition.task != "regression"

    def resolve(self, rel: str) -> Path:
        return (self.data.root / rel) if rel else self.data.root

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def from_dict(cls, ws: dict[str, Any]) -> WorkspaceConfig:
        """The inverse of :meth:`to_dict`: a config as a run's config.json recorded it (the TOML file and the data
        need not exist). Raises KeyError/TypeError/pydantic's ValidationError for a record this version cannot read."""
        return cls(path=Path(ws.get("path", ".")), competition=CompetitionConfig(**ws["competition"]),
                   data=DataConfig(**{**ws["data"], "root": Path(ws["data"]["root"])}), audio=AudioConfig(**ws.get("audio", {})),
                   folds=FoldsConfig(**ws.get("folds", {})), features=FeaturesConfig(**ws.get("features", {})),
                   train=dict(ws.get("train", {})), test=TestConfig(**ws.get("test", {})))


def _section(cls: type, raw: Any, section: str, path: Path) -> Any:
    """Validate one section strictly; every problem is named by key and value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{section}] must be a table, got {raw!r}", f"write it as a [{section}] section")
    for (sec, key), fix in REMOVED_KEYS.items():
        if sec == section and key in raw:
            raise ConfigError(f"{path}: [{section}] {key} is not a setting", fix)
    try:
        return cls(**raw)
    except ValidationError as exc:
        from .settings import describe

        known = ", ".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"{path}: [{section}] " + "; ".join(describe(e) for e in exc.errors()),
                          f"fix the value(s) in the config; valid keys of [{section}]: {known}") from None


def default_config(explicit: str | Path | None, workdir: str | Path = ".") -> Path:
    """``--config`` if given, else ``$AUDIO_WS_CONFIG``, else ``config`` in ``<workdir>/workspace.toml``."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    ws = Path(workdir) / "workspace.toml"
    if ws.is_file():
        try:
            rel = tomllib.loads(ws.read_text()).get("config")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{ws}: not valid TOML: {exc}", 'write one line: config = "configs/<name>.toml"') from None
        if not isinstance(rel, str) or not rel:
            raise ConfigError(f"{ws} has no 'config' key", 'write one line: config = "configs/<name>.toml"')
        return (ws.parent / rel).resolve()
    raise ConfigError("no --config given and no workspace default",
                      f"pass --config configs/<name>.toml, set ${ENV_CONFIG}, or write config = \"configs/<name>.toml\" "
                      f"into {ws}")


def load_config(path: str | Path | None, workdir: str | Path = ".") -> WorkspaceConfig:
    """Read and validate a workspace config (or the workspace default); raise ConfigError naming the bad key."""
    path = default_config(path, workdir)
    if not path.is_file():
        what = "a folder, not a TOML file" if path.is_dir() else "not found"
        raise ConfigError(f"config file {path}: {what}", "pass --config configs/<name>.toml")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", "fix the syntax at the line named") from None
    for req in ("competition", "data"):
        if req not in raw:
            raise ConfigError(f"{path}: missing section [{req}]", "see configs/kaggle_example.toml for every key")
    allowed = {"competition", "data", "audio", "folds", "features", "train", "test"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {extra}", f"valid sections: {sorted(allowed)}")
    data_raw = dict(raw["data"])
    if not isinstance(data_raw.get("root"), str):
        raise ConfigError(f"{path}: [data] root is required and must be a string", "root = \"../data/<comp>\" (relative to the config file)")
    data_raw["root"] = (path.parent / data_raw["root"]).resolve()
    from .settings import make_train_config

    train = dict(raw.get("train", {}))
    make_train_config({"model": "", **train}, f"{path}: [train]")  # types, choices, unknown keys
    cfg = WorkspaceConfig(
        path=path.resolve(),
        competition=_section(CompetitionConfig, raw["competition"], "competition", path),
        data=_section(DataConfig, data_raw, "data", path),
        audio=_section(AudioConfig, raw.get("audio", {}), "audio", path),
        folds=_section(FoldsConfig, raw.get("folds", {}), "folds", path),
        features=_section(FeaturesConfig, raw.get("features", {}), "features", path),
        train=train,
        test=_section(TestConfig, raw.get("test", {}), "test", path),
    )
    validate(cfg)
    return cfg


def data_signature(workspace: dict[str, Any]) -> dict[str, Any]:
    """The parts of a (JSON) workspace config that define the inputs; paths are left out (moving data is harmless)."""
    out = {s: dict(workspace.get(s, {})) for s in ("competition", "data", "audio", "features", "test")}
    for sec in out.values():
        for k in [k for k in sec if k in ("root", "path") or k.endswith(("_dir", "_csv", "_path"))]:
            sec.pop(k)
    for (s, k), neutral in NEUTRAL_KEYS.items():
        if out[s].get(k, neutral) == neutral:
            out[s].pop(k, None)
    return out


def signature_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``section.key`` of every input setting that differs between two workspace configs."""
    a, b = data_signature(old), data_signature(new)
    return sorted(f"{s}.{k}" for s in b for k in set(a.get(s, {})) | set(b[s]) if a.get(s, {}).get(k) != b[s].get(k))


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
    valid = TASK_METRICS[c.task]
    if c.metric not in valid:
        raise ConfigError(f"{p}: [competition] metric = {c.metric!r} is unknown for {c.task}; expected one of {list(valid)}")
    if not c.targets:
        raise ConfigError(f"{p}: [competition] targets must name at least one column")
    if c.task == "classification" and len(c.targets) != 1:
        raise ConfigError(f"{p}: [competition] classification takes exactly one target column, got {c.targets}",
                          "several labels per clip: task = 'multilabel' (one column per class, or one column with label_separator)")
    if c.task != "classification" and (d.merge_classes or d.min_class_count):
        raise ConfigError(f"{p}: [data] merge_classes / min_class_count apply to classification only; this task is {c.task}",
                          "remove them from [data]")
    _check_multilabel_keys(cfg)
    if not d.root.is_dir():
        raise ConfigError(f"{p}: [data] root: folder {d.root} does not exist",
                          "download the data or fix the path (relative paths are relative to the config file)")
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
    _check_targets_csv(cfg)
    if d.group_pattern:
        try:
            re.compile(d.group_pattern)
        except re.error as exc:
            raise ConfigError(f"{p}: [data] group_pattern is not a valid regex: {exc}") from None
    if cfg.folds.n_splits < 2:
        raise ConfigError(f"{p}: [folds] n_splits = {cfg.folds.n_splits}; need at least 2")


def _check_targets_csv(cfg: WorkspaceConfig) -> None:
    """``[data] targets_csv`` / ``targets_key``: both or neither, for file data only (tabular data has its targets inline)."""
    d, p = cfg.data, cfg.path
    if not (d.targets_csv or d.targets_key):
        return
    if d.kind not in ("audio", "images"):
        raise ConfigError(f"{p}: [data] targets_csv / targets_key apply to audio and images data; kind is {d.kind!r}",
                          "remove them: tabular and arrays data carry their targets themselves")
    if not (d.targets_csv and d.targets_key):
        raise ConfigError(f"{p}: [data] targets_csv and targets_key go together (got targets_csv = {d.targets_csv!r}, "
                          f"targets_key = {d.targets_key!r})", "name the CSV and its key column, e.g. targets_key = 'filename'")
    _check_path(cfg, "targets_csv", d.targets_csv, False)


def _check_multilabel_keys(cfg: WorkspaceConfig) -> None:
    """The multi-label keys apply to ``task = "multilabel"`` with one label column; 0/1 columns need none of them."""
    c, d, p = cfg.competition, cfg.data, cfg.path
    given = [k for k, v in (("label_separator", d.label_separator), ("secondary_labels_column", d.secondary_labels_column),
                            ("secondary_weight", d.secondary_weight != 1.0)) if v]
    if given and c.task != "multilabel":
        raise ConfigError(f"{p}: [data] {', '.join(given)} apply to task = 'multilabel'; this task is {c.task}",
                          "remove them, or set [competition] task = 'multilabel'")
    if given and len(c.targets) > 1:
        raise ConfigError(f"{p}: [data] {', '.join(given)} apply to one label column; [competition] targets names "
                          f"{len(c.targets)} (0/1 columns, one per class)", "remove them, or name the one label column")
    if "secondary_weight" in given and not d.secondary_labels_column:
        raise ConfigError(f"{p}: [data] secondary_weight is set but no secondary_labels_column", "name the column, e.g. 'secondary_labels'")
    if not 0.0 <= d.secondary_weight <= 1.0:
        raise ConfigError(f"{p}: [data] secondary_weight = {d.secondary_weight}: must be in [0, 1]",
                          "0.5 is common: a secondary label is a weaker target than the primary one")
    if c.task == "multilabel" and d.kind not in ("audio", "images", "tabular"):
        raise ConfigError(f"{p}: task = 'multilabel' needs labels in a CSV; [data] kind = {d.kind!r} has one label per item",
                          "use kind = 'audio' with a manifest")
    if cfg.test.window_seconds is not None and d.kind != "audio":
        raise ConfigError(f"{p}: [test] window_seconds applies to audio test files; kind is {d.kind!r}", "remove it")
