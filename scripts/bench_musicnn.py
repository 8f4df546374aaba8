"""musicnn embedding throughput on this CPU, and a tagging sanity check on real clips.

    python scripts/bench_musicnn.py [--models MSD_musicnn MTT_musicnn] [--clips DIR] [--threads 2]

* throughput: ``embed`` on random 187-frame patches, patches/s per batch size, and the same as
  30-s clips/s (10 patches per clip without overlap, 19 with the 50 % hop of 93 frames);
  "cold" adds decoding + resampling to 16 kHz + the log-mel recipe per clip (measured on the clips).
* tags: the top-5 tags (patch probabilities averaged over the clip) of every ``<genre>/<clip>.wav``
  under ``--clips`` (default: the 14 full 30-s GTZAN clips in ../shared/data/gtzan_full30, read only).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from src.musicnn import load_musicnn, musicnn_input, tags  # noqa: E402


def throughput(name: str, batch_sizes: list[int], patches: int = 32, repeats: int = 5) -> dict[int, tuple[float, float]]:
    """(patches/s, patches per CPU-second) per batch size: the best of ``repeats`` runs of ``patches`` patches
    (the best run is the least disturbed one on a shared machine)."""
    net = load_musicnn(name)
    out = {}
    for bs in batch_sizes:
        x = torch.rand(bs, 187, 96) * 4
        steps = max(1, patches // bs)
        best_wall = best_cpu = float("inf")
        with torch.inference_mode():
            net.embed(x)  # warm-up
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(steps):
                    net.embed(x)
                best_wall = min(best_wall, time.perf_counter() - w0)
                best_cpu = min(best_cpu, time.process_time() - c0)
        out[bs] = (steps * bs / best_wall, steps * bs / best_cpu)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["MSD_musicnn", "MTT_musicnn", "MSD_vgg"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "data" / "gtzan_full30" / "genres_original"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")

    import librosa

    clips = sorted(Path(args.clips).glob("*/*.wav")) if args.clips else []
    specs, t_spec = {}, 0.0
    for c in clips:
        t0 = time.perf_counter()
        y, _ = librosa.load(str(c), sr=16000)
        specs[c] = musicnn_input(y)
        t_spec += time.perf_counter() - t0
    if clips:
        print(f"decode + resample + log-mel: {t_spec / len(clips) * 1000:.0f} ms per 30-s clip ({len(clips)} clips)")

    print("\nembedding throughput (eval, torch.inference_mode):")
    for name in args.models:
        res = throughput(name, args.batch_sizes)
        best = max(v[0] for v in res.values())
        row = ", ".join(f"batch {bs}: {w:.1f}/s ({c:.1f} per CPU-s)" for bs, (w, c) in res.items())
        cold = f"; cold (with decoding) {1 / (10 / best + t_spec / len(clips)):.2f}" if clips else ""
        print(f"  {name:12s} patches {row}\n  {'':12s} ->  cached spectrograms: {best / 10:.2f} clips/s (hop 187), "
              f"{best / 19:.2f} clips/s (hop 93){cold}")

    if clips:
        for name in ("MSD_musicnn", "MTT_musicnn"):
            net = load_musicnn(name)
            names = tags(name)
            print(f"\ntop-5 {name} tags (mean over the clip's 10 patches):")
            for c, x in specs.items():
                with torch.inference_mode():
                    p = torch.sigmoid(net(torch.from_numpy(x))).mean(0).numpy()
                top = np.argsort(-p)[:5]
                print(f"  {c.parent.name:10s} {c.name:18s} " + ", ".join(f"{names[i]} {p[i]:.2f}" for i in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
