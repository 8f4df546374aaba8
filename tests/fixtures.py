"""Builders for tiny, real-format competitions on disk (no network, no real data).

Each builder writes data in the exact on-disk layout an adapter in ``src/data.py``
reads, plus a workspace config, and returns a :class:`Comp`. Clips are short
(default 0.5 s at 8 kHz) so a full features -> folds -> train chain takes seconds.

Signatures (all paths are created; ``root`` is usually ``tmp_path``)::

    write_toml(path, sections: dict[str, dict]) -> Path
        minimal TOML writer (str/int/float/bool/list/inline-table values; None = key left out)

    synth_clip(cls: str, sr: int, seconds: float, rng, pitch: float = 1.0) -> np.ndarray
        float32 mono clip; classes "low" (200 Hz tone), "high" (1.6 kHz tone), "pulse"
        (4 Hz noise bursts), "chirp" (rising sweep); anything else: a tone keyed on its name

    make_audio_competition(root, *, name="tiny", layout="manifest", classes=("low","high","pulse"),
                           n_per_class=4, n_test=4, sr=8000, seconds=0.5, lengths=None,
                           formats=(".wav",), stereo=False, groups_per_class=2, seed=0,
                           file_sr=None, data=None, audio=None, folds=None, train=None) -> Comp
        layout "manifest": data/<name>/{train/*.ext, train.csv (id,label,artist), test/*.ext,
                            sample_submission.csv (id,label)}
        layout "folders":  data/<name>/train/<class>/*.ext (+ the same test/ and sample_submission)
        ``formats`` is cycled over the training clips (e.g. (".wav",".au",".mp3",".flac",".ogg"));
        ``lengths`` (seconds) is cycled likewise; ``file_sr`` writes the files at another rate than
        the config's ``sample_rate`` (tests resampling); ``stereo`` adds a silent right channel;
        ``data``/``audio``/``folds``/``train`` dicts override config keys. Default audio params: n_fft 256, hop 64, n_mels 32,
        segment 0.25 s / hop 0.25 s.

    make_tabular_competition(root, *, name="tab", classes=("a","b","c"), n_per_class=12, n_features=6,
                             duplicate_pairs=True, n_test=6, seed=0, data=None, folds=None, train=None) -> Comp
        data/<name>/features.csv (filename, length, f0.., label) [+ test.csv, sample_submission.csv].
        With ``duplicate_pairs``: row ``dup_same_b`` copies ``dup_same_a``'s features and label,
        row ``dup_cross_b`` copies ``dup_cross_a``'s features under another label
        (``Comp.extra["same_pair"]``, ``Comp.extra["cross_pair"]``).

    make_arrays_competition(root, *, name="arr", classes=("blues","rock","jazz","pop"), n_train=40,
                            n_holdout=12, n_test=8, melgrams=True, feature="mfccs", seed=0) -> Comp
        data/<name>/{train,valid,test}/mfccs/{X,labels}.npy (X (n,26), string labels; test unlabelled)
        and melgrams/X.npy (n, 21, 128) stored as (n, frames, mels) like the course data.

    make_image_competition(root, *, name="img", classes=("a","b"), n_per_class=6, size=(16, 24), seed=0) -> Comp
        data/<name>/train/<class>/*.png (grey spectrogram-like stripes).

    make_multilabel_competition(root, *, style="freesound", name=None, classes=("low","high","pulse","chirp"),
                                n_train=24, n_test=4, sr=8000, seconds=1.0, soundscape_seconds=3.0, seed=0,
                                data=None, audio=None, folds=None, train=None, test=None) -> Comp
        Overlapping events: each clip sums the synth_clip of 1-2 classes (at random levels).
        style "freesound": data/<name>/{train.csv (fname, labels "a,b", author), train/*.wav, test/*.wav,
                           sample_submission.csv (fname, one column per class)}; label_separator ","
        style "birdclef":  data/<name>/{train.csv (filename "<primary>/<id>.ogg", primary_label,
                           secondary_labels "['b']", author), train_audio/<primary>/*.ogg,
                           test_soundscapes/*.ogg (soundscape_seconds long; [test] window_seconds = seconds),
                           sample_submission.csv (row_id "<soundscape>_<end>", one column per class)}
        style "binary":    like freesound, but train.csv has one 0/1 column per class
        ``Comp.train`` has id and labels (a list per row); ``extra["classes"]``, ``extra["test_rows"]``.

    Comp(config: Path, root: Path, train: pd.DataFrame, test_ids: list[str], extra: dict)
        ``train`` has id, label (and artist/path where the layout has them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

SF_FORMATS = {".wav": "WAV", ".au": "AU", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
DEFAULT_AUDIO = {"sample_rate": 8000, "n_fft": 256, "hop_length": 64, "n_mels": 32,
                 "segment_seconds": 0.25, "segment_hop_seconds": 0.25}


@dataclass
class Comp:
    """A generated competition: its config file, data folder and ground truth."""

    config: Path
    root: Path
    train: pd.DataFrame
    test_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- config


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def write_toml(path: str | Path, sections: dict[str, dict]) -> Path:
    """Write ``{section: {key: value}}`` as TOML (keys whose value is None are left out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in kv.items() if v is not None]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _config(root: Path, name: str, data: dict, audio: dict | None = None, folds: dict | None = None,
            train: dict | None = None, competition: dict | None = None, features: dict | None = None) -> Path:
    sections = {
        "competition": {"name": name, "task": "classification", "metric": "accuracy", "targets": ["label"], **(competition or {})},
        "data": {"root": f"../data/{name}", **data},
        "folds": {"n_splits": 2, "seed": 7, **(folds or {})},
    }
    if audio is not None:
        sections["audio"] = audio
    if train:
        sections["train"] = train
    if features:
        sections["features"] = features
    return write_toml(Path(root) / "configs" / f"{name}.toml", sections)


# ----------------------------------------------------------------------------- audio


def synth_clip(cls: str, sr: int, seconds: float, rng: np.random.Generator, pitch: float = 1.0) -> np.ndarray:
    """A short synthetic clip whose class is audible in pitch or rhythm."""
    t = np.arange(int(round(seconds * sr))) / sr
    if cls == "low":
        y = np.sin(2 * np.pi * 200 * pitch * t)
    elif cls == "high":
        y = np.sin(2 * np.pi * 1600 * pitch * t)
    elif cls == "pulse":
        y = rng.normal(0, 1, t.size) * (((t * 4 * pitch) % 1.0) < 0.2)
    elif cls == "chirp":
        y = np.sin(2 * np.pi * (300 + 1500 * t / max(seconds, 1e-3)) * pitch * t)
    else:
        f = 150 + (sum(map(ord, cls)) * 37) % 2500
        y = np.sin(2 * np.pi * f * pitch * t)
    y = y + rng.normal(0, 0.05, t.size)
    return (0.6 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def write_clip(path: Path, y: np.ndarray, sr: int, stereo: bool = False) -> Path:
    """Write mono ``y`` (or a stereo pair: left ``y``, right silent) in the format of the suffix."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.stack([y, np.zeros_like(y)], axis=1) if stereo else y
    sf.write(str(path), data, sr, format=SF_FORMATS[path.suffix.lower()])
    return path


def _cycle(seq: Iterable[Any], i: int) -> Any:
    seq = list(seq)
    return seq[i % len(seq)]


def make_audio_competition(root: str | Path, *, name: str = "tiny", layout: str = "manifest",
                           classes: tuple[str, ...] = ("low", "high", "pulse"), n_per_class: int = 4,
                           n_test: int = 4, sr: int = 8000, seconds: float = 0.5,
                           lengths: Iterable[float] | None = None, formats: Iterable[str] = (".wav",),
                           stereo: bool = False, groups_per_class: int = 2, seed: int = 0,
                           file_sr: int | None = None, data: dict | None = None, audio: dict | None = None, folds: dict | None = None,
                           train: dict | None = None, features: dict | None = None) -> Comp:
    """Write a tiny labelled audio competition (see the module docstring for the layout)."""
    root = Path(root)
    droot = root / "data" / name
    rng = np.random.default_rng(seed)
    fsr = file_sr or sr  # rate the files are written at; the config asks for ``sr``
    lengths = list(lengths or [seconds])
    rows, k = [], 0
    for c in classes:
        for i in range(n_per_class):
            cid, ext = f"{c}{i:02d}", _cycle(formats, k)
            artist = f"{c}_a{i % groups_per_class}"
            pitch = 1.0 + 0.05 * (i % groups_per_class)
            rel = Path("train") / (c if layout == "folders" else "") / f"{cid}{ext}"
            write_clip(droot / rel, synth_clip(c, fsr, _cycle(lengths, k), rng, pitch), fsr, stereo)
            rows.append({"id": cid, "label": c, "artist": artist, "path": str(droot / rel)})
            k += 1
    train_df = pd.DataFrame(rows)
    test_ids = [f"t{j:03d}" for j in range(n_test)]
    for j, tid in enumerate(test_ids):
        write_clip(droot / "test" / f"{tid}{_cycle(formats, j)}", synth_clip(classes[j % len(classes)], fsr, seconds, rng), fsr, stereo)
    dcfg: dict[str, Any] = {"kind": "audio", "layout": layout, "train_dir": "train"}
    if layout == "manifest":
        train_df[["id", "label", "artist"]].to_csv(droot / "train.csv", index=False)
        dcfg.update(manifest="train.csv", group_column="artist")
    if n_test:
        pd.DataFrame({"id": test_ids, "label": classes[0]}).to_csv(droot / "sample_submission.csv", index=False)
        dcfg.update(test_dir="test", sample_submission="sample_submission.csv")
    dcfg.update(data or {})
    cfg = _config(root, name, dcfg, {**DEFAULT_AUDIO, "sample_rate": sr, **(audio or {})}, folds, train, features=features)
    return Comp(cfg, droot, train_df, test_ids, {"sr": sr, "classes": list(classes)})


# ----------------------------------------------------------------------------- tabular


def make_tabular_competition(root: str | Path, *, name: str = "tab", classes: tuple[str, ...] = ("a", "b", "c"),
                             n_per_class: int = 12, n_features: int = 6, duplicate_pairs: bool = True,
                             n_test: int = 6, seed: int = 0, data: dict | None = None,
                             folds: dict | None = None, train: dict | None = None) -> Comp:
    """A GTZAN-features-like CSV: class-separated Gaussian features, optional duplicate rows."""
    root = Path(root)
    droot = root / "data" / name
    droot.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (len(classes), n_features))
    feats = [f"f{j}" for j in range(n_features)]

    def block(n: int, prefix: str, labelled: bool) -> pd.DataFrame:
        lab = np.repeat(np.arange(len(classes)), int(np.ceil(n / len(classes))))[:n]
        X = centers[lab] + rng.normal(0, 1, (n, n_features))
        df = pd.DataFrame(X, columns=feats)
        df.insert(0, "length", 66149)
        df.insert(0, "filename", [f"{prefix}{i:04d}.wav" for i in range(n)])
        if labelled:
            df["label"] = [classes[i] for i in lab]
        return df

    df = block(n_per_class * len(classes), "r", True)
    extra: dict[str, Any] = {"features": feats}
    if duplicate_pairs:  # fresh rows (not copies of existing ones) so each pair is exactly two rows
        x_same, x_cross = centers[0] + rng.normal(0, 1, n_features), centers[1] + rng.normal(0, 1, n_features)
        dup = pd.DataFrame([x_same, x_same, x_cross, x_cross], columns=feats)
        dup.insert(0, "length", 66149)
        dup.insert(0, "filename", ["dup_same_a.wav", "dup_same_b.wav", "dup_cross_a.wav", "dup_cross_b.wav"])
        dup["label"] = [classes[0], classes[0], classes[1], classes[2 % len(classes)]]
        df = pd.concat([df, dup], ignore_index=True)
        extra.update(same_pair=["dup_same_a.wav", "dup_same_b.wav"], cross_pair=["dup_cross_a.wav", "dup_cross_b.wav"])
    df.to_csv(droot / "features.csv", index=False)
    dcfg: dict[str, Any] = {"kind": "tabular", "train_csv": "features.csv", "id_column": "filename", "drop_columns": ["length"]}
    test_ids: list[str] = []
    if n_test:
        tdf = block(n_test, "t", False)
        tdf.to_csv(droot / "test.csv", index=False)
        test_ids = tdf["filename"].tolist()
        pd.DataFrame({"filename": test_ids, "label": classes[0]}).to_csv(droot / "sample_submission.csv", index=False)
        dcfg.update(test_csv="test.csv", sample_submission="sample_submission.csv")
    dcfg.update(data or {})
    cfg = _config(root, name, dcfg, folds=folds, train=train)
    return Comp(cfg, droot, df[["filename", "label"]].rename(columns={"filename": "id"}), test_ids, extra)


# ----------------------------------------------------------------------------- arrays


def make_arrays_competition(root: str | Path, *, name: str = "arr", classes: tuple[str, ...] = ("blues", "rock", "jazz", "pop"),
                            n_train: int = 40, n_holdout: int = 12, n_test: int = 8, melgrams: bool = True,
                            feature: str = "mfccs", seed: int = 0, folds: dict | None = None) -> Comp:
    """The 4-genre course layout: <split>/mfccs/{X,labels}.npy (+ melgrams/), string labels."""
    root = Path(root)
    droot = root / "data" / name
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (len(classes), 26))
    labels_of = {}
    for split, n, labelled in (("train", n_train, True), ("valid", n_holdout, True), ("test", n_test, False)):
        if not n:
            continue
        lab = np.arange(n) % len(classes)
        y = np.array(classes)[lab]
        labels_of[split] = y
        (droot / split / "mfccs").mkdir(parents=True)
        np.save(droot / split / "mfccs" / "X.npy", (centers[lab] + rng.normal(0, 1, (n, 26))).astype(np.float32))
        if labelled:
            np.save(droot / split / "mfccs" / "labels.npy", y)
        if melgrams:
            (droot / split / "melgrams").mkdir(parents=True)
            mel = (rng.normal(0, 1, (n, 21, 128)) + lab[:, None, None] * 0.5).astype(np.float32)
            np.save(droot / split / "melgrams" / "X.npy", mel)
            if labelled:
                np.save(droot / split / "melgrams" / "labels.npy", y)
    dcfg = {"kind": "arrays", "array_feature": feature, "train_split": "train",
            "holdout_splits": ["valid"] if n_holdout else [], "test_split": "test" if n_test else ""}
    cfg = _config(root, name, dcfg, folds=folds)
    train = pd.DataFrame({"id": [f"train_{i:06d}" for i in range(n_train)], "label": labels_of["train"]})
    return Comp(cfg, droot, train, [f"test_{i:06d}" for i in range(n_test)], {"labels": labels_of})


# ----------------------------------------------------------------------------- images


def make_image_competition(root: str | Path, *, name: str = "img", classes: tuple[str, ...] = ("a", "b"),
                           n_per_class: int = 6, size: tuple[int, int] = (16, 24), seed: int = 0) -> Comp:
    """Grey PNGs, one folder per class; class ``k`` has horizontal stripes of period ``k + 2``."""
    from PIL import Image

    root = Path(root)
    droot = root / "data" / name
    rng = np.random.default_rng(seed)
    rows = []
    for k, c in enumerate(classes):
        (droot / "train" / c).mkdir(parents=True)
        for i in range(n_per_class):
            stripes = ((np.arange(size[0]) // (k + 2)) % 2)[:, None] * np.ones(size[1])
            img = np.clip(200 * stripes + rng.normal(0, 20, size), 0, 255).astype(np.uint8)
            p = droot / "train" / c / f"{c}{i:02d}.png"
            Image.fromarray(img).save(p)
            rows.append({"id": p.stem, "label": c, "path": str(p)})
    cfg = _config(root, name, {"kind": "images", "layout": "folders", "train_dir": "train", "image_size": list(size)})
    return Comp(cfg, droot, pd.DataFrame(rows), [], {"size": size})


# ----------------------------------------------------------------------------- bad-input builders


def write_stereo_clip(path: Path, left: np.ndarray, right: np.ndarray, sr: int) -> Path:
    """Write a two-channel file with the given left and right signals (e.g. ``right = -left``)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.stack([left, right], axis=1), sr, format=SF_FORMATS[path.suffix.lower()])
    return path


def make_numbered_folders_competition(root: str | Path, *, name: str = "numbered",
                                      classes: tuple[str, ...] = ("classical", "rock"), n_per_class: int = 3,
                                      test_folders: tuple[str, ...] = ("a", "b"), n_test_per_folder: int = 2,
                                      sr: int = 8000, seed: int = 0) -> Comp:
    """Folders layout whose file names repeat in every folder (``classical/0.wav``, ``rock/0.wav``, ...).

    ``test/<folder>/<i>.wav`` likewise, and no sample submission, so the test ids come from the listing.
    ``Comp.train`` holds the expected ids (path relative to ``train/`` without extension).
    """
    root = Path(root)
    droot = root / "data" / name
    rng = np.random.default_rng(seed)
    rows = []
    for c in classes:
        for i in range(n_per_class):
            p = write_clip(droot / "train" / c / f"{i}.wav", synth_clip(c, sr, 0.5, rng), sr)
            rows.append({"id": f"{c}/{i}", "label": c, "path": str(p)})
    test_ids = []
    for f in test_folders:
        for i in range(n_test_per_folder):
            write_clip(droot / "test" / f / f"{i}.wav", synth_clip(classes[i % len(classes)], sr, 0.5, rng), sr)
            test_ids.append(f"{f}/{i}")
    dcfg = {"kind": "audio", "layout": "folders", "train_dir": "train", "test_dir": "test"}
    cfg = _config(root, name, dcfg, dict(DEFAULT_AUDIO, sample_rate=sr))
    return Comp(cfg, droot, pd.DataFrame(rows), test_ids, {"classes": list(classes)})


def link_class_folders(comp: Comp, store: str | Path, loop: bool = True) -> list[Path]:
    """Move every class folder of a folders-layout ``comp`` to ``store`` and put a symbolic link in its place.

    Kaggle's ``/kaggle/input`` is read-only, so people link class folders into a writable tree. With
    ``loop`` a link back to ``train/`` is added inside the first class folder (a symlink loop).
    Returns the links.
    """
    import shutil

    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    links = []
    for d in sorted(p for p in (comp.root / "train").iterdir() if p.is_dir()):
        shutil.move(str(d), str(store / d.name))
        d.symlink_to(store / d.name, target_is_directory=True)
        links.append(d)
    if loop and links:
        (store / links[0].name / "loop").symlink_to(comp.root / "train", target_is_directory=True)
    return links


def make_image_manifest_competition(root: str | Path, *, name: str = "imgm", classes: tuple[str, ...] = ("a", "b"),
                                    n_per_class: int = 6, size: tuple[int, int] = (16, 24), data: dict | None = None) -> Comp:
    """:func:`make_image_competition` in the manifest layout: ``train.csv`` (id, label, file = '<class>/<id>.png')."""
    comp = make_image_competition(root, name=name, classes=classes, n_per_class=n_per_class, size=size)
    man = comp.train.assign(file=[f"{lab}/{i}.png" for i, lab in zip(comp.train["id"], comp.train["label"])])
    man[["id", "label", "file"]].to_csv(comp.root / "train.csv", index=False)
    dcfg = {"kind": "images", "layout": "manifest", "train_dir": "train", "manifest": "train.csv",
            "path_column": "file", "image_size": list(size), **(data or {})}
    return Comp(_config(Path(root), name, dcfg), comp.root, comp.train, [], comp.extra)


# ----------------------------------------------------------------------------- regression (tabular)


def make_regression_competition(root: str | Path, *, name: str = "reg", n_train: int = 40, n_features: int = 4,
                                seed: int = 0, folds: dict | None = None) -> Comp:
    """A tabular regression competition: data/<name>/features.csv (filename, f0.., tempo), target ``tempo``
    linear in the features plus noise; config task ``regression``, metric ``rmse``. No test split."""
    root = Path(root)
    droot = root / "data" / name
    droot.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n_train, n_features))
    feats = [f"f{j}" for j in range(n_features)]
    df = pd.DataFrame(X, columns=feats)
    df.insert(0, "filename", [f"r{i:04d}.wav" for i in range(n_train)])
    df["tempo"] = 100 + 10 * X[:, 0] + rng.normal(0, 1, n_train)
    df.to_csv(droot / "features.csv", index=False)
    dcfg = {"kind": "tabular", "train_csv": "features.csv", "id_column": "filename"}
    cfg = _config(root, name, dcfg, folds=folds, competition={"task": "regression", "metric": "rmse", "targets": ["tempo"]})
    return Comp(cfg, droot, df[["filename", "tempo"]].rename(columns={"filename": "id"}), [], {"features": feats})


# ----------------------------------------------------------------------------- multi-label


def _event_mix(labels: list[str], sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """The sum of each label's synth_clip at a random level in [0.5, 1]: overlapping events."""
    y = sum(rng.uniform(0.5, 1.0) * synth_clip(c, sr, seconds, rng) for c in labels)
    return (0.9 * y / max(np.abs(y).max(), 1e-6)).astype(np.float32)


def _ml_labels(classes: tuple[str, ...], i: int, rng: np.random.Generator) -> list[str]:
    """One or two labels; the first cycles over the classes so every class is frequent."""
    first = classes[i % len(classes)]
    if i % 2:
        return [first]
    return [first, str(rng.choice([c for c in classes if c != first]))]


def make_multilabel_competition(root: str | Path, *, style: str = "freesound", name: str | None = None,
                                classes: tuple[str, ...] = ("low", "high", "pulse", "chirp"), n_train: int = 24, n_test: int = 4,
                                sr: int = 8000, seconds: float = 1.0, soundscape_seconds: float = 3.0, seed: int = 0,
                                data: dict | None = None, audio: dict | None = None, folds: dict | None = None,
                                train: dict | None = None, test: dict | None = None) -> Comp:
    """A tiny Freesound-, BirdCLEF- or 0/1-column-shaped multi-label competition (see the module docstring)."""
    root, name = Path(root), name or style
    droot = root / "data" / name
    rng = np.random.default_rng(seed)
    birdclef = style == "birdclef"
    rows = []
    for i in range(n_train):
        labels = _ml_labels(classes, i, rng)
        cid = f"c{i:03d}"
        rel = Path("train_audio") / labels[0] / f"{cid}.ogg" if birdclef else Path("train") / f"{cid}.wav"
        write_clip(droot / rel, _event_mix(labels, sr, seconds, rng), sr)
        rows.append({"id": cid, "labels": labels, "author": f"a{i % 6}", "rel": rel.as_posix()})
    train_df = pd.DataFrame(rows)
    comp_cfg = {"task": "multilabel", "metric": "roc_auc", "targets": ["labels"]}
    dcfg: dict[str, Any] = {"kind": "audio", "layout": "manifest", "manifest": "train.csv", "group_column": "author"}
    test_cfg: dict[str, Any] = {}
    if birdclef:
        manifest = pd.DataFrame({"filename": [r.split("/", 1)[1] for r in train_df["rel"]],
                                 "primary_label": [ls[0] for ls in train_df["labels"]],
                                 "secondary_labels": [str(ls[1:]) for ls in train_df["labels"]], "author": train_df["author"]})
        comp_cfg["targets"] = ["primary_label"]
        dcfg.update(train_dir="train_audio", id_column="filename", secondary_labels_column="secondary_labels",
                    secondary_weight=0.5, test_dir="test_soundscapes", sample_submission="sample_submission.csv")
        test_cfg = {"window_seconds": seconds}
        test_ids, test_rows = [], []
        for j in range(n_test):
            sid = f"soundscape_{j}"
            n_win = int(round(soundscape_seconds / seconds))
            y = np.concatenate([_event_mix(_ml_labels(classes, j + w, rng), sr, seconds, rng) for w in range(n_win)])
            write_clip(droot / "test_soundscapes" / f"{sid}.ogg", y, sr)
            test_ids.append(sid)
            test_rows += [f"{sid}_{int(round((w + 1) * seconds))}" for w in range(n_win)]
        pd.DataFrame({"row_id": test_rows, **{c: 0.0 for c in classes}}).to_csv(droot / "sample_submission.csv", index=False)
    else:
        manifest = pd.DataFrame({"fname": train_df["id"] + ".wav", "author": train_df["author"]})
        if style == "binary":
            for c in classes:
                manifest[c] = [int(c in ls) for ls in train_df["labels"]]
            comp_cfg["targets"] = list(classes)
        else:
            manifest["labels"] = [",".join(ls) for ls in train_df["labels"]]
            dcfg["label_separator"] = ","
        dcfg.update(train_dir="train", id_column="fname")
        test_ids = [f"t{j:03d}.wav" for j in range(n_test)]
        for j, tid in enumerate(test_ids):
            write_clip(droot / "test" / tid, _event_mix(_ml_labels(classes, j, rng), sr, seconds, rng), sr)
        if n_test:
            pd.DataFrame({"fname": test_ids, **{c: 0.0 for c in classes}}).to_csv(droot / "sample_submission.csv", index=False)
            dcfg.update(test_dir="test", sample_submission="sample_submission.csv")
        test_rows = test_ids
    manifest.to_csv(droot / "train.csv", index=False)
    dcfg.update(data or {})
    cfg = _config(root, name, dcfg, {**DEFAULT_AUDIO, "sample_rate": sr, **(audio or {})}, folds, train, competition=comp_cfg)
    if test_cfg or test:
        import tomllib

        write_toml(cfg, {**tomllib.loads(cfg.read_text()), "test": {**test_cfg, **(test or {})}})
    return Comp(cfg, droot, train_df[["id", "labels", "author"]], test_ids, {"classes": list(classes), "test_rows": test_rows, "sr": sr})
