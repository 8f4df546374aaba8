"""Benchmark the feature cache: log-mel extraction throughput, cached re-read speed, peak memory.

    python scripts/bench_features.py --clips 1000 [--source ../shared/data/gtzan_full30/genres_original]

Builds a folders-layout dataset of ``--clips`` thirty-second clips by copying real
GTZAN clips (or synthesising noise when no source is given) into a temp folder, then
times ``src.features.prepare`` cold (decode + featurise) and warm (cache hit), and
reports the peak resident memory of this process and its workers.
Targets (issue 2): >= 40 clips/s cold on 2 cores, >= 50x faster warm, < 2 GB peak.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.config import load_config  # noqa: E402
from src.features import prepare  # noqa: E402


def make_dataset(root: Path, n: int, source: Path | None) -> None:
    import soundfile as sf

    files = sorted(source.rglob("*.wav")) if source else []
    rng = np.random.default_rng(0)
    for i in range(n):
        cls = f"c{i % 10}"
        dst = root / "train" / cls / f"{cls}.{i:05d}.wav"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if files:
            shutil.copy(files[i % len(files)], dst)
        else:
            sf.write(dst, (rng.standard_normal(30 * 22050) * 0.1).astype(np.float32), 22050, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/gtzan_full30/genres_original")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    src = args.source if args.source and args.source.is_dir() else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_dataset(tmp / "data", args.clips, src)
        (tmp / "bench.toml").write_text(
            '[competition]\nname = "bench"\n[data]\nkind = "audio"\nroot = "data"\nlayout = "folders"\ntrain_dir = "train"\n'
            "[audio]\nsample_rate = 22050\nn_mels = 128\nsegment_seconds = 3.0\nsegment_hop_seconds = 3.0\n")
        cfg = load_config(tmp / "bench.toml")
        t0 = time.perf_counter()
        prep = prepare(cfg, tmp, args.workers)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        prep2 = prepare(cfg, tmp, args.workers)
        items = prep2.items("spec", "train")
        n_seg = len(items.row)
        checksum = sum(float(items.X[np.arange(s, min(s + 512, n_seg))].sum()) for s in range(0, n_seg, 512))  # read all back
        warm = time.perf_counter() - t0
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out = {"clips": args.clips, "source": str(src or "synthetic noise"), "cold_seconds": round(cold, 2),
               "cold_clips_per_s": round(args.clips / cold, 1), "warm_seconds_incl_reading_all_segments": round(warm, 3),
               "warm_speedup": round(cold / warm, 1), "segments": int(n_seg), "checksum": round(checksum, 1), "peak_rss_main_mb": round(peak_self),
               "peak_rss_worker_mb": round(peak_kids), "cache_mb": round(sum(f.stat().st_size for f in prep.cache.iterdir()) / 2**20)}
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
