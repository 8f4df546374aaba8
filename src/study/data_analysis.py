"""Data analysis: class counts before/after merging and dropping, clip durations, example spectrograms per class.

``python -m src.study data --config C [--out DIR] [--examples 1]`` writes ``reports/data/``:

* ``classes.png``: training rows per class as labelled (left; bars coloured by what ``[data] merge_classes``
  and ``min_class_count`` do to them) and as trained (right);
* ``durations.png``: clip durations of the training (and test) clips, from the file headers (``soundfile.info``);
* ``examples_<class>.png``: per class, ``--examples`` clips as log-mel, chromagram and their beat-synchronised
  versions, computed exactly as the feature cache computes them (``src.features.SequenceExtractor``);
* ``table.csv`` / ``table.md``: per class, clips before and after, and the mean/min/max duration.

Tabular and array data get the class histograms and the table only: durations and spectrograms need audio.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli
from ..config import WorkspaceConfig, load_config
from ..data import Dataset, load_dataset
from .report import report_dir, write_table

log = logging.getLogger(__name__)
STUDIES = ("data",)
FATE_COLOURS = {"kept": "tab:blue", "merged": "tab:orange", "dropped": "tab:grey", "new": "tab:green"}


def add_arguments(ap: argparse.ArgumentParser, name: str) -> None:
    cli.add_common(ap)
    ap.add_argument("--out", help="report folder (default: <workdir>/reports/data)")
    ap.add_argument("--examples", type=int, default=1, help="example clips per class in the spectrogram figures (0: none)")


def run(args: argparse.Namespace) -> Path:
    cfg = load_config(args.config, args.workdir)
    out = report_dir(args.workdir, "data", args.out)
    raw, ds = load_both(cfg)
    durations = clip_durations(raw) if cfg.data.kind == "audio" else None
    table = class_table(cfg, raw, ds, durations)
    plot_class_counts(table, out / "classes.png", cfg)
    notes = [f"Data: {cfg.data.kind}, {len(raw.train)} training rows as labelled, {len(ds.train)} as trained, "
             f"{len(ds.classes)} classes ({cfg.path.name})."]
    if cfg.data.merge_classes or cfg.data.min_class_count:
        notes.append(f"[data] merge_classes = {dict(cfg.data.merge_classes)}, min_class_count = {cfg.data.min_class_count}; "
                     f"dropped: {ds.class_changes.get('dropped', {}) or 'none'}.")
    if len(ds.holdout) and ds.targets[0] in ds.holdout:
        notes.append(f"Labelled holdout: {len(ds.holdout)} rows, per class {ds.holdout[ds.targets[0]].value_counts().to_dict()}.")
    if durations is not None and durations["seconds"].notna().any():
        a, mean = cfg.audio, float(durations["seconds"].mean())
        n_seg = 1 + max(0, int((min(mean, a.max_seconds or mean) - a.segment_seconds) // a.segment_hop_seconds))
        notes.append(f"Mean clip {mean:.1f} s: ~{n_seg} segment(s) of {a.segment_seconds:g} s (hop {a.segment_hop_seconds:g} s) per clip.")
    if durations is None:
        notes.append(f"Durations and example spectrograms need audio; [data] kind is {cfg.data.kind!r}: class histograms only.")
    else:
        plot_durations(durations, out / "durations.png", cfg)
        bad = durations[durations["seconds"].isna()]
        if len(bad):
            notes.append(f"{len(bad)} file(s) without a readable duration: {bad['id'].tolist()[:10]}.")
        if args.examples > 0:
            paths = write_examples(cfg, ds, out, args.examples)
            notes.append(f"Example spectrograms: {', '.join(p.name for p in paths)}.")
    write_table(out, table, title=f"Classes of {cfg.name}", notes="\n\n".join(notes))
    log.info("data study of %s: %d classes -> %s", cfg.name, len(ds.classes), out)
    return out


def load_both(cfg: WorkspaceConfig) -> tuple[Dataset, Dataset]:
    """The data as labelled (merging and dropping switched off) and as the runs see it (the config as it is)."""
    plain = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, merge_classes={}, min_class_count=0))
    return load_dataset(plain), load_dataset(cfg)


# ----------------------------------------------------------------------------- numbers


def clip_durations(ds: Dataset) -> pd.DataFrame:
    """Duration in seconds of every training and test file, from its header (cheap: nothing is decoded);
    librosa's reader for formats soundfile cannot open; NaN (and a warning) for a file neither can read."""
    import soundfile as sf

    rows = []
    for split in ("train", "test"):
        df = ds.frame(split)
        labels = df[ds.targets[0]] if split == "train" else pd.Series("", index=df.index)
        for i, p, lab in zip(df["id"], df.get("path", []), labels):
            try:
                sec = float(sf.info(p).duration)
            except (RuntimeError, OSError, sf.LibsndfileError):
                sec = _librosa_duration(p)
            rows.append({"split": split, "id": i, "label": lab, "seconds": sec})
    return pd.DataFrame(rows, columns=["split", "id", "label", "seconds"])


def _librosa_duration(path: str) -> float:
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(librosa.get_duration(path=path))
    except Exception as exc:  # audioread raises many types; the file is named and the study goes on
        log.warning("%s: no duration (%s: %s)", path, type(exc).__name__, exc)
        return float("nan")


def class_table(cfg: WorkspaceConfig, raw: Dataset, ds: Dataset, durations: pd.DataFrame | None) -> pd.DataFrame:
    """One row per class name, as labelled or as trained: what happened to it, its clips before and after, and the
    duration of its clips (a merged class: of its members' clips)."""
    target = raw.targets[0]
    final = dict(zip(ds.train["id"], ds.train[target]))  # id -> class as trained (dropped ids are absent)
    before, after = raw.train[target].value_counts(), ds.train[target].value_counts()
    sec = dict(zip(durations["id"], durations["seconds"])) if durations is not None else {}
    merged_into = {m: new for new, members in cfg.data.merge_classes.items() for m in members}
    rows = []
    for name in dict.fromkeys([*raw.classes, *ds.classes]):
        members = [m for m, n in merged_into.items() if n == name and m != name]
        into = merged_into.get(name, name)
        if name not in raw.classes:
            ids = pd.Series([i for i, c in final.items() if c == name], dtype=str)
            fate, status = "new", "merged from " + " + ".join(members)
        else:
            ids = raw.train.loc[raw.train[target] == name, "id"]
            fate = "dropped" if into not in ds.classes else ("merged" if into != name else "kept")
            status = {"kept": "kept" + (", absorbs " + " + ".join(members) if members else ""),
                      "merged": f"merged into {into}",
                      "dropped": (f"merged into {into}, " if into != name else "") + f"dropped (< {cfg.data.min_class_count} rows)"}[fate]
        d = np.array([sec.get(i, np.nan) for i in ids], dtype=float)
        have = d[~np.isnan(d)]
        rows.append({"class": name, "status": status, "fate": fate, "n_clips_before": int(before.get(name, 0)),
                     "n_clips_after": int(after.get(name, 0)), "mean_s": float(have.mean()) if len(have) else np.nan,
                     "min_s": float(have.min()) if len(have) else np.nan, "max_s": float(have.max()) if len(have) else np.nan})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- figures


def plot_class_counts(table: pd.DataFrame, path: Path, cfg: WorkspaceConfig) -> None:
    """Two panels: rows per class as labelled (coloured by fate) and as trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..artifacts import save_figure

    left = table[table["fate"] != "new"]
    right = table[table["n_clips_after"] > 0]
    width = max(8.0, 0.45 * (len(left) + len(right)) + 3)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(width, 4.2), gridspec_kw={"width_ratios": [max(len(left), 1), max(len(right), 1)]})
    ax1.bar(left["class"], left["n_clips_before"], color=[FATE_COLOURS[f] for f in left["fate"]])
    ax2.bar(right["class"], right["n_clips_after"], color=[FATE_COLOURS["new" if f == "new" else "kept"] for f in right["fate"]])
    handles, labels = [], []
    if cfg.data.min_class_count:  # the threshold applies after merging: drawn where it acts
        handles.append(ax2.axhline(cfg.data.min_class_count, color="tab:red", ls="--", lw=1))
        labels.append(f"min_class_count = {cfg.data.min_class_count}")
    if (right["fate"] == "new").any():
        handles.append(plt.Rectangle((0, 0), 1, 1, color=FATE_COLOURS["new"]))
        labels.append("merged class")
    if handles:
        ax2.legend(handles, labels, fontsize=8, loc="lower right", framealpha=0.9)
    names = [f for f in FATE_COLOURS if f != "new" and (left["fate"] == f).any()]
    if len(names) > 1:
        ax1.legend([plt.Rectangle((0, 0), 1, 1, color=FATE_COLOURS[f]) for f in names], names, fontsize=8, loc="lower right",
                   framealpha=0.9)
    ax1.set(title=f"as labelled: {int(left['n_clips_before'].sum())} training rows", ylabel="training rows")
    ax2.set(title=f"as trained: {int(right['n_clips_after'].sum())} rows, {len(right)} classes")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        for t in ax.get_xticklabels():
            t.set_ha("right")
    fig.suptitle(f"{cfg.name}: classes before and after [data] merge_classes / min_class_count")
    fig.tight_layout()
    save_figure(path, fig)


def plot_durations(durations: pd.DataFrame, path: Path, cfg: WorkspaceConfig) -> None:
    """Histogram of clip durations per split, with the segment length and any crop marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..artifacts import save_figure

    fig, ax = plt.subplots(figsize=(7, 3.6))
    d = durations.dropna(subset=["seconds"])
    bins = np.histogram_bin_edges(d["seconds"], bins=min(30, max(5, len(d) // 3))) if len(d) else 10
    for split, part in d.groupby("split", sort=False):
        ax.hist(part["seconds"], bins=bins, alpha=0.6, label=f"{split} ({len(part)} clips)")
    ax.axvline(cfg.audio.segment_seconds, color="tab:red", ls="--", lw=1, label=f"segment {cfg.audio.segment_seconds:g} s")
    if cfg.audio.max_seconds:
        ax.axvline(cfg.audio.max_seconds, color="k", ls=":", lw=1, label=f"max_seconds {cfg.audio.max_seconds:g}")
    ax.set(xlabel="clip duration (s)", ylabel="clips", title=f"{cfg.name}: clip durations (file headers)")
    ax.legend(fontsize=8)
    save_figure(path, fig)


def write_examples(cfg: WorkspaceConfig, ds: Dataset, out: Path, n: int) -> list[Path]:
    """``examples_<class>.png`` for every class (as trained): its first ``n`` clips by id."""
    from tqdm.auto import tqdm

    from ..features import SequenceExtractor

    ex = SequenceExtractor(cfg.audio, "chroma")
    target, paths = ds.targets[0], []
    for cls in tqdm(ds.classes, desc="examples", unit="class"):
        rows = ds.train[ds.train[target] == cls].sort_values("id").head(n)
        path = out / f"examples_{re.sub(r'[^A-Za-z0-9_.-]+', '_', cls)}.png"
        plot_example(cfg, ex, cls, rows, path)
        paths.append(path)
    return paths


def plot_example(cfg: WorkspaceConfig, ex, cls: str, rows: pd.DataFrame, path: Path) -> None:
    """Per clip a 2 x 2 block: log-mel (beats marked) and chromagram over time; both beat-synchronised below."""
    import matplotlib

    matplotlib.use("Agg")
    import librosa
    import librosa.display
    import matplotlib.pyplot as plt

    from ..artifacts import save_figure
    from ..audio import load_audio
    from ..features import beat_frames, beat_sync

    a = cfg.audio
    fig, axes = plt.subplots(2 * len(rows), 2, figsize=(10.5, 5.6 * len(rows)), squeeze=False)
    kw = {"sr": a.sample_rate, "hop_length": a.hop_length}
    for r, (clip_id, clip_path) in enumerate(zip(rows["id"], rows["path"])):
        y = load_audio(clip_path, a.sample_rate, a.max_seconds, a.silence_threshold)
        f = ex.frames(y)  # logmel (n_mels, T), chroma (12, T)
        beats = beat_frames(y, a)
        edges = librosa.frames_to_time(librosa.util.fix_frames(beats, x_min=0, x_max=f["logmel"].shape[1]), **kw)
        tempo = 60.0 / float(np.median(np.diff(edges[1:-1]))) if len(edges) > 3 else float("nan")
        mid = (edges[:-1] + edges[1:]) / 2  # specshow wants centres on both axes (its mel/chroma coordinates are centres)
        mel_kw = {**kw, "y_axis": "mel", "fmin": a.fmin, "fmax": a.fmax or a.sample_rate / 2}
        top, bottom = axes[2 * r], axes[2 * r + 1]
        im = librosa.display.specshow(f["logmel"], x_axis="time", ax=top[0], **mel_kw)
        for t in edges[1:-1]:
            top[0].axvline(t, color="k", lw=0.6, alpha=0.7, zorder=3)
        fig.colorbar(im, ax=top[0], format="%+2.0f dB")
        im = librosa.display.specshow(f["chroma"], x_axis="time", y_axis="chroma", ax=top[1], cmap="magma", **kw)
        fig.colorbar(im, ax=top[1])
        im = librosa.display.specshow(beat_sync(f["logmel"], beats), x_coords=mid, x_axis="time", ax=bottom[0], **mel_kw)
        fig.colorbar(im, ax=bottom[0], format="%+2.0f dB")
        im = librosa.display.specshow(beat_sync(f["chroma"], beats, "median"), x_coords=mid, x_axis="time", y_axis="chroma",
                                      ax=bottom[1], cmap="magma", **kw)
        fig.colorbar(im, ax=bottom[1])
        top[0].set_title(f"{clip_id}: log-mel ({a.n_mels} bands), beats marked")
        top[1].set_title(f"{clip_id}: chromagram (12 x {f['chroma'].shape[1]} frames)")
        bottom[0].set_title(f"beat-synchronised log-mel ({len(edges) - 1} beat intervals, ~{tempo:.0f} bpm)")
        bottom[1].set_title("beat-synchronised chromagram (median between beats)")
    fig.suptitle(f"class {cls}", fontsize=13)
    fig.tight_layout()
    save_figure(path, fig)
