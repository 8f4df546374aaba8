"""Where the time of cold feature extraction goes, per audio format, on distinct files.

    python scripts/profile_extraction.py [--clips 200] [--seconds 30] [--rate 44100] [--stereo] [--formats wav mp3 ogg]

Synthesises ``--clips`` distinct clips per format (bench_scale's varied content; no copies), then

1. profiles one process over the first 40 clips stage by stage: open + decode (soundfile), mono mix,
   resample to the config's rate (soxr via librosa), STFT power, mel + dB, MFCC/chroma statistics, segmenting;
2. times the whole feature stage (``src.features.prepare``, all cores) on every clip: cold clips/s.

Prints a table per format and writes ``<workdir>/profile_extraction.json``. The config is the workspace default
(22 050 Hz, n_fft 2048, hop 512, 128 mels, 3-s segments, ``max_seconds`` = 30).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_scale import synth, write_audio  # noqa: E402

STAGES = ("decode", "mono", "resample", "stft", "mel_db", "stats", "segments")


def _write(job: tuple[Path, int, float, int, str, int, bool]) -> None:
    path, cls, seconds, seed, fmt, rate, stereo = job
    rng = np.random.default_rng(seed)
    y = synth(cls, seconds, rng)  # at bench_scale.SR; resampled to the file rate by repetition-free interpolation below
    n = int(seconds * rate)
    y = np.interp(np.linspace(0, len(y) - 1, n), np.arange(len(y)), y).astype(np.float32)
    if stereo:
        y = np.stack([y, np.roll(y, 37) * 0.8], axis=1)
    write_audio(path, y, rate, fmt)


def make_files(folder: Path, n: int, seconds: float, fmt: str, rate: int, stereo: bool) -> list[Path]:
    """The clips, synthesised unless a previous run left them (``--reuse``: before/after comparisons on the same files)."""
    (folder / "train").mkdir(parents=True, exist_ok=True)
    jobs = [(folder / "train" / f"c{i % 10}" / f"clip{i:05d}.{fmt}", i % 10, seconds, i, fmt, rate, stereo) for i in range(n)]
    if all(j[0].is_file() for j in jobs):
        return [j[0] for j in jobs]
    for j in jobs:
        j[0].parent.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool() as pool:
        list(pool.imap_unordered(_write, jobs, chunksize=8))
    return [j[0] for j in jobs]


def profile_stages(files: list[Path], a) -> dict[str, float]:
    """Mean seconds per clip of each stage, one process, one torch thread (as a feature worker runs)."""
    import librosa
    import soundfile as sf
    import torch

    from src.features import _Extractor

    try:
        from src.audio import to_mono
    except ImportError:  # code before the BLAS mono mix (a before/after comparison in an older checkout)
        to_mono = lambda d: d.mean(axis=1)  # noqa: E731
    torch.set_num_threads(1)
    ex = _Extractor(a)
    t = dict.fromkeys(STAGES, 0.0)
    for path in files:
        t0 = time.perf_counter()
        with sf.SoundFile(str(path)) as f:
            frames = int(np.ceil(a.max_seconds * f.samplerate)) if a.max_seconds else -1
            data, sr = f.read(frames=frames, dtype="float32", always_2d=True), f.samplerate
        t1 = time.perf_counter()
        y = to_mono(data)
        t2 = time.perf_counter()
        if sr != a.sample_rate:
            y = librosa.resample(y, orig_sr=sr, target_sr=a.sample_rate, res_type="soxr_hq").astype(np.float32)
        t3 = time.perf_counter()
        power = ex.power(y)
        t4 = time.perf_counter()
        logmel, mfcc, chroma = ex.spectra(power)
        t5 = time.perf_counter()
        _ = torch.cat([mfcc.mean(dim=1), mfcc.std(dim=1), chroma.mean(dim=1), chroma.std(dim=1)])
        t6 = time.perf_counter()
        ex.segments(logmel.numpy())
        t7 = time.perf_counter()
        for k, d in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
            t[k] += d
    return {k: v / len(files) for k, v in t.items()}


def whole_stage(folder: Path) -> tuple[float, int]:
    """Cold ``src.features.prepare`` on the folder (folders layout): (seconds, clips)."""
    from src.config import load_config
    from src.features import prepare

    cfg_path = folder / "profile.toml"
    cfg_path.write_text('[competition]\nname = "profile"\n[data]\nkind = "audio"\nroot = "."\nlayout = "folders"\n'
                        'train_dir = "train"\n[audio]\nmax_seconds = 30.0\n[folds]\ndedup = false\n')
    cfg = load_config(cfg_path)
    t0 = time.perf_counter()
    prep = prepare(cfg, folder)
    return time.perf_counter() - t0, len(prep.ds.train)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=44100, help="sample rate of the files (the config resamples to 22 050)")
    ap.add_argument("--stereo", action="store_true")
    ap.add_argument("--formats", nargs="+", default=["wav", "mp3", "ogg"])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/profile_extraction"))
    ap.add_argument("--reuse", action="store_true", help="keep the clips a previous run wrote there (only the feature cache is deleted)")
    args = ap.parse_args()
    from src.config import AudioConfig

    a = AudioConfig(max_seconds=30.0)
    report = {}
    for fmt in args.formats:
        folder = args.workdir / fmt
        shutil.rmtree(folder if not args.reuse else folder / "cache", ignore_errors=True)
        files = make_files(folder, args.clips, args.seconds, fmt, args.rate, args.stereo)
        stages = profile_stages(files[:40], a)
        seconds, n = whole_stage(folder)
        report[fmt] = {"per_clip_ms": {k: round(v * 1000, 2) for k, v in stages.items()}, "one_process_clips_s": 1 / sum(stages.values()),
                       "prepare_clips_s": n / seconds, "prepare_seconds": seconds}
        print(f"{fmt}: " + "  ".join(f"{k} {v * 1000:.1f} ms" for k, v in stages.items())
              + f"  | one process {1 / sum(stages.values()):.1f} clips/s | prepare (all cores) {n / seconds:.1f} clips/s")
    (args.workdir / "profile_extraction.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
