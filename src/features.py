"""Feature cache: decode every clip once, keep log-mel segments and clip summaries on disk.

``python -m src.features --config configs/x.toml`` fills
``cache/features/<name>-<hash>/``::

    clips.csv         split, id, path, ok, error, seg_start, n_segments
    logmel.npy        (n_segments, n_mels, seg_frames) float16 log-mel dB, memory-mapped
    seg_clip.npy      (n_segments,) clip index of each segment
    mfcc_stats.npy    (n_clips, 2 * n_mfcc) mean/std of the MFCCs over the clip
    chroma_stats.npy  (n_clips, 24) mean/std of the 12 chroma bins
    meta.json         parameters and timing; written last, marks the cache complete

Other spectrogram recipes get their own entry ``cache/features/<name>-<recipe>-<hash>/`` with the same
files, ``logmel.npy`` holding that recipe's segments: ``musicnn`` (src.embeddings), ``chroma`` (12 x T
chromagram frames, segmented like logmel), ``logmel_beat`` / ``chroma_beat`` (frames averaged / median-
aggregated between the beats librosa's tracker finds; segments of :data:`SEGMENT_BEATS` beats) and
``logmel+chroma`` (both stacked on the feature axis, (n_mels + 12) x T). A run picks one with the train
setting ``recipe`` (:func:`run_recipe`).

Segments never straddle clips, and every segment keeps its clip index, so
folds (made per clip) can never split a clip. Extraction runs on all cores.

What the cache key trusts: the hash covers the audio parameters and, for every
clip, its split, path, size, mtime, inode and ctime (``os.stat``; no content is
read). A file whose path, size, mtime, inode and ctime are all unchanged is
taken to have unchanged content. Rewriting a file in place changes its ctime,
and ``os.utime`` / ``touch -d`` can restore the mtime but not the ctime, which
only the kernel sets; replacing it by rename changes the inode. What the key
does not catch: content changed with the system clock set back to the old
ctime, or a file system that keeps no ctime/inode (some network or FUSE
mounts report constant values); delete ``cache/features/`` after such edits.
Copying or re-mounting the data (new inodes) makes a new cache, never a stale one.
A missing file enters the key as missing, so restoring it gives a new cache.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import cli
from .artifacts import atomic_path, read_json, setup_logging, stable_hash, write_csv, write_json, write_npy
from .audio import AudioError, load_audio
from .config import AudioConfig, WorkspaceConfig, load_config
from .data import SPLITS, DataError, Dataset, format_listing, load_dataset
from .errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Items:
    """Model inputs for one split: ``X[i]`` belongs to row ``row[i]`` of the split's frame."""

    X: np.ndarray  # (n_items, D) vectors or (n_items, H, W) spectrograms; may be a memmap
    row: np.ndarray  # (n_items,) int64
    n_rows: int


# ----------------------------------------------------------------------------- extraction (worker side)

_EXTRACTOR = None


class _Extractor:
    """Holds the torchaudio transforms; one per worker process."""

    def __init__(self, a: AudioConfig):
        import librosa
        import torch
        import torchaudio

        self.a = a
        self.torch = torch
        self.window = torch.hann_window(a.n_fft)
        self.mel = torchaudio.transforms.MelScale(n_mels=a.n_mels, sample_rate=a.sample_rate, f_min=a.fmin,
                                                  f_max=a.fmax, n_stft=a.n_fft // 2 + 1, norm="slaney", mel_scale="slaney")
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=a.top_db)
        self.dct = torchaudio.functional.create_dct(a.n_mfcc, a.n_mels, norm="ortho")  # (n_mels, n_mfcc)
        self.chroma_fb = torch.from_numpy(librosa.filters.chroma(sr=a.sample_rate, n_fft=a.n_fft)).float()  # (12, F)
        self.seg = max(1, round(a.segment_seconds * a.sample_rate / a.hop_length))
        self.seg_hop = max(1, round(a.segment_hop_seconds * a.sample_rate / a.hop_length))

    def __call__(self, path: str, window: tuple[float, float] | None = None) -> dict:
        """The clip's features, with the seconds spent decoding (+ resampling) and featurising (the cache's meta.json sums them)."""
        a = self.a
        t0 = time.perf_counter()
        try:
            y = load_audio(path, a.sample_rate, a.max_seconds, a.silence_threshold, window)
        except AudioError as exc:
            return {"error": exc.problem}
        t1 = time.perf_counter()
        out = self.from_signal(y)
        return {**out, "decode_s": t1 - t0, "featurise_s": time.perf_counter() - t1}

    def from_signal(self, y: np.ndarray) -> dict:
        """Segments and clip statistics of a decoded clip (src.predict streams the same steps over long files)."""
        logmel, mfcc, chroma = self.spectra(self.power(y))
        stats = lambda m: self.torch.cat([m.mean(dim=1), m.std(dim=1, unbiased=False)]).numpy()
        return {"segments": self.segments(logmel.numpy()), "mfcc": stats(mfcc), "chroma": stats(chroma)}

    def power(self, y: np.ndarray):
        """(F, T) power spectrogram; frame t is centred on sample t * hop (reflect padding at the ends)."""
        with self.torch.no_grad():
            # = torchaudio.transforms.Spectrogram(power=2), but |z|^2 as re^2 + im^2 is ~5x faster on CPU
            z = self.torch.stft(self.torch.from_numpy(y), self.a.n_fft, self.a.hop_length, window=self.window, center=True,
                                pad_mode="reflect", return_complex=True)
            return z.real ** 2 + z.imag ** 2

    def mel_db(self, power):
        """(n_mels, T) log-mel in dB before the ``top_db`` floor (= AmplitudeToDB(stype="power") without top_db)."""
        import torchaudio

        with self.torch.no_grad():
            return torchaudio.functional.amplitude_to_DB(self.mel(power), 10.0, 1e-10, 0.0, None)

    def spectra(self, power, top: float | None = None) -> tuple:
        """(log-mel (n_mels, T) dB, MFCC (n_mfcc, T), chroma (12, T)) of a power spectrogram. The log-mel is floored
        ``top_db`` below ``top``: by default its own maximum (a clip's, in the cache); a stream over a long file
        passes the whole file's, so every chunk is floored as the whole file would be."""
        torch = self.torch
        with torch.no_grad():
            db = self.mel_db(power)
            logmel = torch.maximum(db, (db.amax() if top is None else torch.tensor(top, dtype=db.dtype)) - self.a.top_db)
            mfcc = self.dct.T @ logmel  # (n_mfcc, T)
            chroma = self.chroma_fb @ power  # (12, T)
            chroma = chroma / chroma.amax(dim=0, keepdim=True).clamp_min(1e-10)
        return logmel, mfcc, chroma

    def segments(self, logmel: np.ndarray) -> np.ndarray:
        """(n_mels, T) -> (n_seg, n_mels, seg); a short clip is padded with its minimum."""
        T = logmel.shape[1]
        if T < self.seg:
            logmel = np.pad(logmel, ((0, 0), (0, self.seg - T)), constant_values=float(logmel.min()))
            T = self.seg
        starts = range(0, T - self.seg + 1, self.seg_hop)
        return np.stack([logmel[:, s:s + self.seg] for s in starts]).astype(np.float16)


def _init_worker() -> None:
    import signal

    import torch

    torch.set_num_threads(1)  # one process per core; no oversubscription
    # the parent's SIGTERM handler (src.cli: SIGTERM as KeyboardInterrupt) is inherited by fork: the pool's shutdown
    # would print a KeyboardInterrupt traceback per worker; workers just end
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _extract(item: str | tuple[str, float, float]) -> dict:
    """One clip: a path, or (path, start_s, end_s) for a window of a long test file (only the window is decoded)."""
    return _EXTRACTOR(item[0], window=item[1:]) if isinstance(item, tuple) else _EXTRACTOR(item)


# ----------------------------------------------------------------------------- sequence recipes (worker side)

SEQUENCE_RECIPES = ("chroma", "logmel_beat", "chroma_beat", "logmel+chroma")
SEGMENT_BEATS = 8  # beats per beat-synchronised segment (~4 s at 120 bpm, near the usual 3-s segment)
FALLBACK_BPM = 120.0  # the grid a clip gets where the tracker finds fewer than two beats


def segment_beats(a: AudioConfig) -> tuple[int, int]:
    """Beats per beat-synchronised segment and the hop between segments, in the config's overlap ratio
    (``segment_hop_seconds / segment_seconds``, as the time segments and musicnn's patches use)."""
    return SEGMENT_BEATS, max(1, round(SEGMENT_BEATS * a.segment_hop_seconds / a.segment_seconds))


def beat_frames(y: np.ndarray, a: AudioConfig) -> np.ndarray:
    """Beat positions in STFT frames (the config's hop) from ``librosa.beat.beat_track``; where it finds fewer
    than two beats (a short clip, no pulse) a steady :data:`FALLBACK_BPM` grid, so every clip yields a sequence."""
    import librosa

    _, beats = librosa.beat.beat_track(y=y, sr=a.sample_rate, hop_length=a.hop_length, units="frames")
    beats = np.asarray(beats, dtype=np.int64)
    if len(beats) < 2:
        step = max(1, round(60.0 / FALLBACK_BPM * a.sample_rate / a.hop_length))
        beats = np.arange(step, len(y) // a.hop_length + 1, step)
    return beats


def beat_sync(frames: np.ndarray, beats: np.ndarray, how: str = "mean") -> np.ndarray:
    """(F, T) -> (F, n_beats + 1): frames aggregated between consecutive beats (and before the first, after the last)."""
    import librosa

    return librosa.util.sync(frames, beats, aggregate=np.median if how == "median" else np.mean, pad=True, axis=-1)


class SequenceExtractor(_Extractor):
    """Per-clip extractor of a sequence recipe: the config's STFT, mel and chroma filters (as ``_Extractor``), then
    the recipe's frames cut into segments (time recipes: the config's segments; beat recipes: ``SEGMENT_BEATS``)."""

    def __init__(self, a: AudioConfig, recipe: str):
        super().__init__(a)
        self.recipe = recipe
        if recipe.endswith("_beat"):
            self.seg, self.seg_hop = segment_beats(a)

    def frames(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """``logmel`` (n_mels, T) in dB and ``chroma`` (12, T), each frame scaled to max 1, of a decoded clip: the
        logmel recipe's own spectra (``_Extractor.spectra``), so the recipes differ only in what follows."""
        logmel, _, chroma = self.spectra(self.power(y))
        return {"logmel": logmel.numpy(), "chroma": chroma.numpy()}

    def sequence(self, y: np.ndarray) -> np.ndarray:
        """The recipe's (F, T) frames of a clip: T STFT frames, or one column per beat interval for ``*_beat``."""
        f = self.frames(y)
        if self.recipe == "logmel+chroma":
            return np.concatenate([f["logmel"], f["chroma"]])  # (n_mels + 12, T)
        if self.recipe.endswith("_beat"):
            name = self.recipe.removesuffix("_beat")  # chroma: median between beats (robust to onsets), log-mel: mean
            return beat_sync(f[name], beat_frames(y, self.a), "median" if name == "chroma" else "mean")
        return f[self.recipe]

    def from_signal(self, y: np.ndarray) -> dict:
        """The recipe's segments of a decoded clip (``_Extractor.__call__`` decodes and calls this)."""
        return {"segments": self.segments(self.sequence(y))}  # (n_seg, F, seg)


# ----------------------------------------------------------------------------- cache (main side)


# ----------------------------------------------------------------------------- the wave recipe (worker side)
# src.waveaug trains on these waveforms; the cache entry itself lives here like every other recipe's

SCALE = 32767.0  # int16 full scale


def wave_geometry(a: AudioConfig) -> tuple[int, int, int]:
    """(frames per segment, frames between segment starts, samples per segment) of the log-mel cache."""
    seg = max(1, round(a.segment_seconds * a.sample_rate / a.hop_length))
    seg_hop = max(1, round(a.segment_hop_seconds * a.sample_rate / a.hop_length))
    return seg, seg_hop, (seg - 1) * a.hop_length + a.n_fft


def wave_params(a: AudioConfig) -> dict:
    """What the wave recipe stores, as the cache key sees it (:func:`recipe_params`)."""
    return {**asdict(a), "recipe": WAVE_RECIPE, "dtype": "int16", "segment_samples": wave_geometry(a)[2],
            "framing": "reflect pad n_fft/2, samples of frames s*seg_hop .. s*seg_hop+seg-1"}


class WaveExtractor(_Extractor):
    """Per-clip extractor of the wave recipe: the samples behind each log-mel segment ``_Extractor`` cuts."""

    def from_signal(self, y: np.ndarray) -> dict:
        a = self.a
        seg, seg_hop, L = wave_geometry(a)
        half = a.n_fft // 2
        padded = np.pad(y, half, mode="reflect" if len(y) > half else "constant")  # torch.stft(center=True)'s framing
        T = 1 + len(y) // a.hop_length  # frames of the clip's log-mel
        starts = range(0, max(T, seg) - seg + 1, seg_hop)
        need = (starts[-1]) * a.hop_length + L
        if len(padded) < need:  # a clip shorter than one segment: the cache pads its log-mel with its minimum, we with silence
            padded = np.pad(padded, (0, need - len(padded)))
        segs = np.stack([padded[s * a.hop_length: s * a.hop_length + L] for s in starts])  # (n_seg, L)
        return {"segments": np.clip(np.round(segs * SCALE), -32768, 32767).astype(np.int16)}


RECIPES = ("logmel", "musicnn", *SEQUENCE_RECIPES)
WAVE_RECIPE = "wave"  # int16 waveform of each log-mel segment (src.waveaug): built only when a waveform augmentation is on


def run_recipe(model_recipe: str, tc: object | None = None) -> str:
    """The spectrogram recipe a run's model is fed: the one home of this choice (train, predict, kernels).

    ``model_recipe`` is the model's own (``ModelSpec.recipe``); ``tc`` the run's train settings, whose
    ``recipe`` (``''``: the model's own) may choose another recipe of the config's audio for a model fed
    the config's log-mel. A model with its own fixed front end (musicnn) cannot be fed anything else."""
    chosen = getattr(tc, "recipe", "") or model_recipe
    if chosen != model_recipe and model_recipe != "logmel":
        raise ConfigError(f"--recipe {chosen}: model {getattr(tc, 'model', '?')} is fed its own fixed recipe {model_recipe!r} "
                          "(the front end its pretrained weights expect)", "leave --recipe out for this model")
    return chosen


def recipe_params(cfg: WorkspaceConfig, recipe: str) -> dict:
    """What a spectrogram recipe computes, as the cache key sees it: the config's ``[audio]`` for ``logmel``;
    a model family's fixed front end (src.embeddings) plus the config's cropping for the others."""
    if recipe == "logmel":
        return asdict(cfg.audio)
    if recipe in SEQUENCE_RECIPES:
        beats = dict(zip(("segment_beats", "segment_hop_beats"), segment_beats(cfg.audio))) if recipe.endswith("_beat") else {}
        return {**asdict(cfg.audio), "recipe": recipe, "chroma": "librosa.filters.chroma, max 1 per frame", **beats}
    if recipe == WAVE_RECIPE:
        return wave_params(cfg.audio)
    from .embeddings import recipe_params as family_params

    return family_params(recipe, cfg.audio)


def cache_dir(cfg: WorkspaceConfig, ds: Dataset, workdir: Path, recipe: str = "logmel") -> Path:
    """The cache folder for this recipe and these files (what the key trusts: see the module docstring)."""
    files = []
    for split in SPLITS:
        df = ds.frame(split)
        windows = zip(df["start_s"], df["end_s"]) if "start_s" in df else [()] * len(df)  # windowed test rows: the window too
        for p, win in zip(df.get("path", []), windows):
            try:
                st = os.stat(p)
            except FileNotFoundError:  # skipped with on_corrupt = "skip"; its return must change the key
                files.append((split, p, "missing", *win))
                continue
            files.append((split, p, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, *win))
    if recipe == "logmel":
        key = stable_hash({"audio": asdict(cfg.audio), "files": files, "v": 2})
        return Path(workdir) / "cache" / "features" / f"{cfg.name}-{key}"
    key = stable_hash({"recipe": recipe_params(cfg, recipe), "files": files, "v": 2})
    return Path(workdir) / "cache" / "features" / f"{cfg.name}-{recipe}-{key}"


def all_clips(ds: Dataset) -> pd.DataFrame:
    """Every row to extract; windowed test rows (``[test] window_seconds``) keep their window, NaN for whole clips."""
    parts = [ds.frame(s).reindex(columns=["id", "path", "start_s", "end_s"]).assign(split=s) for s in SPLITS if len(ds.frame(s))]
    clips = pd.concat(parts, ignore_index=True)
    return clips[["split", "id", "path"] + (["start_s", "end_s"] if clips["start_s"].notna().any() else [])]


def clip_items(clips: pd.DataFrame) -> list:
    """What each clip's extraction decodes: its path, or (path, start_s, end_s) for a window of a long test file."""
    if "start_s" not in clips:
        return clips["path"].tolist()
    return [p if np.isnan(a) else (p, float(a), float(b)) for p, a, b in zip(clips["path"], clips["start_s"], clips["end_s"])]


def build_cache(cfg: WorkspaceConfig, ds: Dataset, workdir: Path, workers: int | None = None, recipe: str = "logmel") -> Path:
    """Extract features for every clip unless a complete cache of this recipe exists. Returns the cache folder.

    One cache entry per spectrogram recipe, each built once and keyed by its own parameters: a model whose
    front end differs from the config's (musicnn: 16 kHz, 96 mels, its log compression) gets its own entry,
    never the other recipe's spectrograms."""
    if recipe not in (*RECIPES, WAVE_RECIPE):
        raise DataError(f"unknown spectrogram recipe {recipe!r}", f"use one of {list(RECIPES)}")
    out = cache_dir(cfg, ds, workdir, recipe)
    if (out / "meta.json").is_file():
        log.info("feature cache hit: %s", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    clips = all_clips(ds)
    workers = workers or min(os.cpu_count() or 1, max(1, len(clips) // 16))
    t0 = time.perf_counter()
    results = _run_extraction(make_extractor(cfg, recipe), clip_items(clips), workers, out, recipe)
    _write_cache(cfg, clips, results, out, time.perf_counter() - t0, workers, recipe)
    return out


def make_extractor(cfg: WorkspaceConfig, recipe: str):
    """The per-clip extractor of a recipe (a picklable callable path -> dict; forked workers inherit it)."""
    if recipe == "logmel":
        return _Extractor(cfg.audio)
    if recipe in SEQUENCE_RECIPES:
        return SequenceExtractor(cfg.audio, recipe)
    if recipe == WAVE_RECIPE:
        return WaveExtractor(cfg.audio)
    from .embeddings import FamilyExtractor

    return FamilyExtractor(recipe, cfg.audio)


def _run_extraction(extractor, paths: list, workers: int, out: Path, recipe: str = "logmel") -> list[dict]:
    """Stream segments to a raw file as they arrive so memory stays flat; keep the small stats."""
    from tqdm.auto import tqdm

    global _EXTRACTOR
    _EXTRACTOR = extractor  # built once here; forked workers inherit it (no re-import of torch/librosa)
    raw = out / "logmel.raw.tmp"
    with open(raw, "wb") as fh:
        if workers > 1:
            # fork, as torch's DataLoader does on Linux: workers only run single-threaded CPU ops
            with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
                it = pool.imap(_extract, paths, chunksize=4)
                return [_take(r, fh) for r in tqdm(it, total=len(paths), desc=recipe, unit="clip")]
        return [_take(_extract(p), fh) for p in tqdm(paths, desc=recipe, unit="clip")]


def _take(r: dict, fh) -> dict:
    if "segments" in r:
        seg = r.pop("segments")
        fh.write(np.ascontiguousarray(seg).tobytes())
        r["n_segments"], r["shape"], r["dtype"] = len(seg), seg.shape[1:], seg.dtype.str
    return r


def _write_cache(cfg: WorkspaceConfig, clips: pd.DataFrame, results: list[dict], out: Path, secs: float, workers: int,
                 recipe: str = "logmel") -> None:
    ok = np.array(["error" not in r for r in results])
    n_seg = np.array([r.get("n_segments", 0) for r in results], dtype=np.int64)
    clips = clips.assign(ok=ok, error=[r.get("error", "") for r in results],
                         seg_start=np.concatenate([[0], np.cumsum(n_seg)[:-1]]), n_segments=n_seg)
    shape = next((r["shape"] for r in results if "shape" in r), (cfg.audio.n_mels, 1))
    total = int(n_seg.sum())
    dtype = next((r["dtype"] for r in results if "dtype" in r), np.dtype(np.float16).str)  # int16 for the wave recipe
    _raw_to_npy(out / "logmel.raw.tmp", out / "logmel.npy", (total, *shape), dtype)
    write_npy(out / "seg_clip.npy", np.repeat(np.arange(len(clips)), n_seg).astype(np.int32))
    for key, dim in (("mfcc", 2 * cfg.audio.n_mfcc), ("chroma", 24)) if recipe == "logmel" else ():
        mat = np.full((len(clips), dim), np.nan, dtype=np.float32)
        for i, r in enumerate(results):
            if key in r:
                mat[i] = r[key]
        write_npy(out / f"{key}_stats.npy", mat)
    write_csv(out / "clips.csv", clips)
    write_json(out / "meta.json", {"recipe": recipe, "audio": recipe_params(cfg, recipe), "n_clips": len(clips), "n_segments": total,
                                   "n_errors": int((~ok).sum()), "seconds": round(secs, 3), "workers": workers,
                                   "clips_per_second": round(len(clips) / max(secs, 1e-9), 2), **_stage_seconds(results)})
    log.info("features: %d clips, %d segments in %.1fs (%.1f clips/s, %d workers) -> %s",
             len(clips), total, secs, len(clips) / max(secs, 1e-9), workers, out)


def _stage_seconds(results: list[dict]) -> dict[str, float]:
    """Worker-seconds spent decoding (+ resampling) and featurising, summed over clips (the rest of the wall time is
    writing, inter-process transfer and idle workers): where the next optimisation of this stage should look."""
    out = {}
    for key in ("decode_s", "featurise_s"):
        values = [r[key] for r in results if key in r]
        if values:
            out[key.replace("_s", "_worker_seconds")] = round(float(np.sum(values)), 3)
    return out


def _raw_to_npy(raw: Path, dst: Path, shape: tuple[int, ...], dtype: str = np.dtype(np.float16).str) -> None:
    """Prepend an .npy header to the streamed raw bytes (float16 segments; int16 for the wave recipe) (atomic)."""
    with atomic_path(dst) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
            with open(raw, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    raw.unlink()


# ----------------------------------------------------------------------------- reading


@dataclass
class Prepared:
    """A dataset plus its feature cache, after the corrupt-clip policy was applied."""

    cfg: WorkspaceConfig
    ds: Dataset
    cache: Path | None = None  # the logmel recipe's cache ([audio] of the config)
    workdir: Path = Path(".")
    caches: dict[str, Path] = field(default_factory=dict)  # other recipes' caches, built on first use

    def recipe_cache(self, recipe: str) -> Path:
        """The cache of ``recipe`` (built once, on first use, from the same clips)."""
        if recipe == "logmel":
            return self.cache
        if recipe not in self.caches:
            self.caches[recipe] = build_cache(self.cfg, self.ds, self.workdir, None, recipe)
        return self.caches[recipe]

    def items(self, input_kind: str, split: str, recipe: str = "logmel") -> Items:
        """Inputs for a model that takes ``vector`` or ``spec`` input (spectrograms of ``recipe``)."""
        n_rows = len(self.ds.frame(split))
        if recipe != "logmel" and self.cfg.data.kind != "audio":  # else arrays/images would silently stand in for it
            raise DataError(f"recipe {recipe!r} needs audio; [data] kind is {self.cfg.data.kind!r}",
                            "choose a model (or --recipe) for this data")
        if self.cfg.data.kind in ("tabular", "arrays"):
            X = self.ds.arrays.get(split)
            if X is None:
                return Items(np.zeros((0, 1), np.float32), np.zeros(0, np.int64), n_rows)
            want = 2 if input_kind == "vector" else 3
            if X.ndim != want:
                raise DataError(f"{self.cfg.path}: [data] {self.cfg.data.kind} features have shape {X.shape[1:]}, "
                                f"but this model needs {input_kind} input; choose a model for that input")
            return Items(X, np.arange(len(X)), n_rows)
        if self.cfg.data.kind == "images":
            if input_kind != "spec":
                raise DataError("image data feeds spectrogram (2-D) models only")
            df = self.ds.frame(split)
            skipped = {s["id"] for s in self.ds.skipped if s["split"] == split}
            rows = np.flatnonzero(~df["id"].isin(skipped).to_numpy())  # skipped test rows get the prior
            return Items(load_images(df.iloc[rows], self.cfg.data.image_size, split), rows.astype(np.int64), n_rows)
        return self._audio_items(input_kind, split, n_rows, recipe)

    def _audio_items(self, input_kind: str, split: str, n_rows: int, recipe: str = "logmel") -> Items:
        cache = self.recipe_cache(recipe)
        clips = pd.read_csv(cache / "clips.csv", keep_default_na=False, dtype={"id": str})
        clips = clips[clips["split"] == split]
        pos = pd.Series(np.arange(n_rows), index=self.ds.frame(split)["id"].to_numpy())
        clips = clips[clips["ok"] & clips["id"].isin(pos.index)]
        rows = pos.loc[clips["id"]].to_numpy()
        if input_kind == "vector":
            mats = [self.clip_vectors(v)[clips.index] for v in self.cfg.features.vector]
            return Items(np.concatenate(mats, axis=1), rows, n_rows)
        logmel = np.load(cache / "logmel.npy", mmap_mode="r")
        seg_idx = np.concatenate([np.arange(s, s + n) for s, n in zip(clips["seg_start"], clips["n_segments"])] or [np.zeros(0, int)])
        seg_rows = np.repeat(rows, clips["n_segments"].to_numpy())
        return Items(_MmapRows(logmel, seg_idx), seg_rows.astype(np.int64), n_rows)


    def clip_vectors(self, name: str) -> np.ndarray:
        """(n_clips, D) clip summaries of ``[features] vector`` entry ``name``, in the cache's clip order."""
        if name in ("mfcc_stats", "chroma_stats"):
            return np.load(self.cache / f"{name.split('_')[0]}_stats.npy")
        from .embeddings import clip_embedding_stats

        return clip_embedding_stats(self, name)


class _MmapRows:
    """A lazy row-subset of a memory-mapped array: ``X[idx]`` reads only those rows."""

    def __init__(self, base: np.ndarray, index: np.ndarray):
        self.base, self.index = base, index.astype(np.int64)
        self.shape = (len(index), *base.shape[1:])
        self.ndim = base.ndim

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx) -> np.ndarray:
        sel = self.index[idx]
        order = np.argsort(sel, kind="stable")  # sorted reads are sequential on disk
        out = np.empty((len(sel), *self.shape[1:]), dtype=np.float32)
        out[order] = self.base[sel[order]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[np.arange(len(self))]
        return arr if dtype is None else arr.astype(dtype)


def load_images(df: pd.DataFrame, size: list[int], split: str = "") -> np.ndarray:
    """Grey images scaled to ``size`` in [0, 1]; every unreadable image is named in one error, not just the first."""
    from PIL import Image

    out = np.empty((len(df), size[0], size[1]), dtype=np.float32)
    bad = []
    for i, p in enumerate(df["path"]):
        try:
            with Image.open(p) as im:
                out[i] = np.asarray(im.convert("L").resize((size[1], size[0])), dtype=np.float32) / 255.0
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # PIL's ways of saying "not a usable image"
            bad.append({"split": split, "id": df["id"].iloc[i], "path": p, "error": f"{type(exc).__name__}: {exc}"})
    if bad:
        listing = format_listing(bad)
        raise DataError(f"{len(bad)} image(s) cannot be read:\n{listing}",
                        "replace or remove the files (PNG/JPEG), or drop their rows from the manifest")
    return out


def prepare(cfg: WorkspaceConfig, workdir: str | Path = ".", workers: int | None = None) -> Prepared:
    """Load the dataset, build/read the feature cache, apply ``[data] on_corrupt``."""
    ds = load_dataset(cfg)
    if cfg.data.kind == "images":
        apply_on_corrupt(cfg, ds, ds.missing, "file")
    if cfg.data.kind != "audio":
        return Prepared(cfg, ds, workdir=Path(workdir))
    cache = build_cache(cfg, ds, Path(workdir), workers)
    clips = pd.read_csv(cache / "clips.csv", keep_default_na=False, dtype={"id": str})
    bad = clips[~clips["ok"].astype(bool)][["split", "id", "path", "error"]].to_dict("records")
    why_missing = {(m["split"], m["id"]): m["error"] for m in ds.missing}  # data.py knows why better than "file not found"
    for b in bad:
        b["error"] = why_missing.get((b["split"], b["id"]), b["error"])
    apply_on_corrupt(cfg, ds, bad, "clip")
    return Prepared(cfg, ds, cache, Path(workdir))


def apply_on_corrupt(cfg: WorkspaceConfig, ds: Dataset, bad: list[dict], noun: str) -> None:
    """The one place ``[data] on_corrupt`` acts, for unusable clips and missing files alike: ``error`` lists them
    all; ``skip`` records them in ``ds.skipped`` and drops their training/holdout rows (test rows stay: the
    submission needs every id, and a row without items is predicted with the training prior)."""
    if not bad:
        return
    listing = format_listing(bad, limit=None)  # every file, as the README promises; the run lists them too
    if cfg.data.on_corrupt == "error":
        raise DataError(f"{len(bad)} {noun}(s) cannot be used:\n{listing}\n"
                        "Fix or remove the files, or set [data] on_corrupt = 'skip' to skip them (they are listed in the run).")
    log.warning("skipping %d unusable %s(s) ([data] on_corrupt = 'skip'):\n%s", len(bad), noun, listing)
    ds.skipped = [{k: b[k] for k in ("split", "id", "path", "error")} for b in bad]
    for split in ("train", "holdout"):
        drop = {b["id"] for b in bad if b["split"] == split}
        if drop:
            setattr(ds, split, ds.frame(split)[~ds.frame(split)["id"].isin(drop)].reset_index(drop=True))


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("features", "Decode and featurise every clip once; cache log-mel segments, MFCC and chroma stats.")
    cli.add_common(ap)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--tags", choices=["MSD_musicnn", "MTT_musicnn"],
                    help="also tag every clip with this pretrained network (its own recipe's cache entry); writes <split>_tags.csv")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, args.workdir)
    t0 = time.perf_counter()
    prep = prepare(cfg, args.workdir, args.workers)
    if prep.cache is None:
        print(f"{cfg.data.kind} data needs no feature extraction; {len(prep.ds.train)} training rows loaded.")
        return
    meta = read_json(prep.cache / "meta.json")
    print(f"cache: {prep.cache}\n{meta['n_clips']} clips, {meta['n_segments']} segments, "
          f"{meta['n_errors']} unusable; extraction {meta['clips_per_second']} clips/s; this call {time.perf_counter() - t0:.2f}s")
    if args.tags:
        print_tags(prep, args.tags)


def print_tags(prep: Prepared, network: str, top: int = 3) -> None:
    """Mean tag probabilities per clip (every split), written as CSV beside the recipe's cache; the top tags printed."""
    from .embeddings import clip_tags

    for split in ("train", "test", "holdout"):
        table = clip_tags(prep, network, split)
        if not len(table):
            continue
        path = prep.recipe_cache("musicnn") / f"{network}_{split}_tags.csv"
        write_csv(path, table.reset_index(names="id"))
        for clip_id, row in table.iterrows():
            best = row.sort_values(ascending=False)[:top]
            print(f"{split}/{clip_id}: " + ", ".join(f"{tag} {p:.2f}" for tag, p in best.items()))
        print(f"{network} tags of {len(table)} {split} clip(s): {path}")


if __name__ == "__main__":
    cli.run_command(main)
