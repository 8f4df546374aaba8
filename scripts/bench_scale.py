"""Scale benchmark: a synthetic Kaggle-shaped competition of N clips through every stage, on this machine.

    python scripts/bench_scale.py --clips 2000 --seconds 5 [--format wav|mp3|ogg] [--workdir DIR] [--keep]

Synthesises N distinct clips (10 classes of varied content: tones, chords, noise bands, pulses and chirps
with random pitch, rate and level; no two files are copies, so the page cache does not flatter decoding)
in the manifest layout (``train.csv`` id,label,group + ``train/``, a ``test/`` folder of N/10 clips and
``sample_submission.csv``), then runs, in this process: features (cold) -> folds -> one epoch of ``cnn``
on fold 0 (validation and test predictions included) -> ``src.predict`` on the test folder. Ends with one
line::

    clips/s <extraction> segments/s <training> peak_rss_gb <max over the run> cache_gb <size>

``peak_rss_gb`` is the larger of this process's and its worker processes' peak resident set sizes
(``getrusage``); synthesis runs first in separate, small processes. ``peak_anon_gb`` in the JSON is the main
process's peak anonymous memory (its own allocations, without the memory-mapped cache pages it read). Per-stage timings are
printed and written to ``<workdir>/bench_scale.json``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLASSES = [f"c{i}" for i in range(10)]
SR = 16000


def synth(cls: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One clip of class ``cls``: a class-specific texture with random pitch, rate, level and background noise."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110.0 * 2 ** (cls / 2.5) * rng.uniform(0.9, 1.1)
    kind = cls % 5
    if kind == 0:  # tone with vibrato
        y = np.sin(2 * np.pi * f0 * t + rng.uniform(2, 6) * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
    elif kind == 1:  # chord
        y = sum(np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 6.3)) for r in (1.0, 1.26, 1.5))
    elif kind == 2:  # band-limited noise bursts
        y = np.convolve(rng.standard_normal(len(t)), np.hanning(int(SR / f0) + 2), "same") * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
    elif kind == 3:  # pulse train
        y = (np.sin(2 * np.pi * f0 * t) * np.exp(-((t * rng.uniform(2, 6)) % 1.0) * 8))
    else:  # chirp
        y = np.sin(2 * np.pi * f0 * (1 + rng.uniform(1, 3) * t / seconds) * t)
    y = y / max(np.abs(y).max(), 1e-6) * rng.uniform(0.2, 0.9) + rng.normal(0, rng.uniform(0.005, 0.05), len(t))
    return np.clip(y, -1, 1).astype(np.float32)


def write_audio(path: Path, y: np.ndarray, rate: int, fmt: str) -> None:
    """Write in 1-s blocks: libsndfile 1.2's Vorbis encoder segfaults on one large write (a 60-s stereo ogg here)."""
    import soundfile as sf

    subtype = {"wav": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}[fmt]
    with sf.SoundFile(str(path), "w", rate, 1 if y.ndim == 1 else y.shape[1], format=fmt.upper(), subtype=subtype) as f:
        for s in range(0, len(y), rate):
            f.write(y[s:s + rate])


def _write_one(job: tuple[Path, int, float, int, str]) -> None:
    path, cls, seconds, seed, fmt = job
    write_audio(path, synth(cls, seconds, np.random.default_rng(seed)), SR, fmt)


def make_competition(root: Path, n: int, seconds: float, fmt: str, workers: int) -> Path:
    """Write the clips (in parallel) and the manifest, test folder, sample submission and config; return the config."""
    import pandas as pd

    data = root / "data" / "bench"
    (data / "train").mkdir(parents=True, exist_ok=True)
    (data / "test").mkdir(parents=True, exist_ok=True)
    n_test = max(n // 10, 10)
    ids = [f"clip{i:06d}" for i in range(n)]
    labels = [i % len(CLASSES) for i in range(n)]
    jobs = [(data / "train" / f"{cid}.{fmt}", c, seconds, i, fmt) for i, (cid, c) in enumerate(zip(ids, labels))]
    test_ids = [f"test{j:06d}" for j in range(n_test)]
    jobs += [(data / "test" / f"{tid}.{fmt}", j % len(CLASSES), seconds, 10**7 + j, fmt) for j, tid in enumerate(test_ids)]
    with mp.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_write_one, jobs, chunksize=64):
            pass
    pd.DataFrame({"id": ids, "label": [CLASSES[c] for c in labels], "group": [f"g{i // 4}" for i in range(n)]}).to_csv(
        data / "train.csv", index=False)
    pd.DataFrame({"id": test_ids, "label": CLASSES[0]}).to_csv(data / "sample_submission.csv", index=False)
    cfg = root / "configs" / "bench.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text(f"""[competition]
name = "bench"
[data]
kind = "audio"
root = "../data/bench"
layout = "manifest"
manifest = "train.csv"
train_dir = "train"
test_dir = "test"
sample_submission = "sample_submission.csv"
extension = ".{fmt}"
group_column = "group"
[audio]
sample_rate = {SR}
n_fft = 1024
hop_length = 256
n_mels = 64
segment_seconds = 2.5
segment_hop_seconds = 2.5
[folds]
n_splits = 5
dedup = false
""")
    return cfg


def peak_rss_gb() -> float:
    """Peak resident set size of this process and of its (finished) children, in GB (Linux: ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20


class AnonSampler:
    """Peak anonymous resident memory of this process (``RssAnon`` in /proc/self/status, sampled every 0.2 s).

    ``ru_maxrss`` also counts the pages of the memory-mapped cache that were read (file-backed, dropped by the
    kernel under pressure), so it grows with the cache even when the process's own allocations do not."""

    def __init__(self) -> None:
        import threading

        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            text = Path("/proc/self/status").read_text()
            kb = int(next(line.split()[1] for line in text.splitlines() if line.startswith("RssAnon:")))
            self.peak_kb = max(self.peak_kb, kb)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 2**20


def folder_gb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30


def run_stages(cfg_path: Path, root: Path, workers: int | None) -> dict:
    """features -> folds -> one cnn epoch on fold 0 -> predict; the timings and throughputs of each."""
    from src.artifacts import file_sha256, write_csv, write_json
    from src.config import load_config
    from src.features import prepare
    from src.folds import fold_path, make_folds
    from src.settings import TrainConfig
    from src.train import run_training

    cfg = load_config(cfg_path)
    out: dict = {}
    t0 = time.perf_counter()
    prep = prepare(cfg, root, workers)
    out["features_s"] = time.perf_counter() - t0
    n_clips = len(prep.ds.train) + len(prep.ds.test)
    out["clips_per_s"] = n_clips / out["features_s"]
    t0 = time.perf_counter()
    folds, report = make_folds(prep)
    path = fold_path(cfg, root)
    write_csv(path, folds)
    write_json(path.with_suffix(".json"), {**report, "sha256": file_sha256(path)})
    out["folds_s"] = time.perf_counter() - t0
    tc = TrainConfig(model="cnn", epochs=1, folds=[0], run_id="bench-cnn", device="auto", plots=False, batch_size=64)
    t0 = time.perf_counter()
    run = run_training(cfg, tc, root, prep)
    out["train_s"] = time.perf_counter() - t0
    fold = json.loads((run / "fold0_metrics.json").read_text())
    hist = fold["history"][0]
    items = prep.items("spec", "train")
    n_train_segments = int((folds["fold"].to_numpy()[items.row] != 0).sum())
    meta = json.loads(next((root / "cache" / "features").glob("bench-*/meta.json")).read_text())
    out.update(epoch_s=hist["seconds"], train_s_epoch=hist["train_seconds"], train_segments=n_train_segments,
               segments_per_s=hist["train_items_per_s"], val_accuracy=hist["val_accuracy"], **fold["timing"],
               decode_worker_s=meta.get("decode_worker_seconds"), featurise_worker_s=meta.get("featurise_worker_seconds"))
    out["predict_s"] = _predict(run, cfg, root)
    out["cache_gb"] = folder_gb(root / "cache" / "features")
    return out


def _predict(run: Path, cfg, root: Path) -> float:
    from src.predict import main as predict_main

    t0 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        predict_main([run.name, str(cfg.resolve(cfg.data.test_dir)), "--out", str(root / "predictions.csv")])
    finally:
        os.chdir(cwd)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=2000, help="training clips (the test set adds a tenth)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of every clip")
    ap.add_argument("--format", choices=["wav", "mp3", "ogg"], default="wav")
    ap.add_argument("--workdir", type=Path, default=None, help="default: /tmp/bench_scale-<clips>-<format>")
    ap.add_argument("--workers", type=int, default=None, help="feature extraction workers (default: all cores)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (default: deleted at the end)")
    args = ap.parse_args()
    root = args.workdir or Path(f"/tmp/bench_scale-{args.clips}-{args.format}")
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    # synthesis in child processes that exit before the stages (their peak RSS, < 0.2 GB, is below the stages')
    child = mp.get_context("spawn").Process(target=make_competition, args=(root, args.clips, args.seconds, args.format, os.cpu_count() or 1))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"synthesis failed (exit code {child.exitcode})")
    cfg = root / "configs" / "bench.toml"
    synth_s = time.perf_counter() - t0
    sampler = AnonSampler()
    stats = {"clips": args.clips, "seconds": args.seconds, "format": args.format, "synth_s": synth_s, **run_stages(cfg, root, args.workers)}
    stats["peak_rss_gb"], stats["peak_anon_gb"] = peak_rss_gb(), sampler.stop()
    (root / "bench_scale.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(f"clips/s {stats['clips_per_s']:.1f} segments/s {stats['segments_per_s']:.1f} "
          f"peak_rss_gb {stats['peak_rss_gb']:.2f} cache_gb {stats['cache_gb']:.3f}")


if __name__ == "__main__":
    main()
