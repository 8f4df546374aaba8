"""Build a multi-label competition from the 50 shared GTZAN clips by mixing two genres per clip.

    python scripts/make_gtzan_mixtures.py --out data/gtzan_mix [--n-mixtures 200 --seed 0]

Each training clip is the sum of two real recordings of *different* genres, the second at a random
relative level (``--min-db``..0 dB after both are brought to the same RMS); its labels are both genres.
Written Freesound-style: ``train/*.wav`` + ``train.csv`` (``fname``, ``labels`` "blues,jazz", ``group``,
and the sources and gain for auditing), read by ``configs/gtzan_mix.toml``.

Why pools: with random pairs every source clip would link, through shared mixtures, into one connected
component, and no grouped k-fold could keep a recording out of two folds. So the 50 clips are split into 5
disjoint pools (one clip per genre per pool: 10 clips each), mixtures are made only inside a pool, and the
pool is the group: 5 groups -> 5 folds, each validation fold a disjoint set of source recordings.

The output folder must be git-ignored (the repo's ``/data/`` is); GTZAN audio never goes into the repo.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from src.artifacts import setup_logging, write_csv, write_json  # noqa: E402

log = logging.getLogger("make_gtzan_mixtures")
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "gtzan_audio_subset"
N_POOLS = 5


def pools(labels: pd.DataFrame, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Split the clips into N_POOLS disjoint pools holding one clip of every genre each."""
    out: list[list[pd.Series]] = [[] for _ in range(N_POOLS)]
    for genre, rows in labels.groupby("label", sort=True):
        if len(rows) < N_POOLS:
            raise SystemExit(f"genre {genre!r} has {len(rows)} clips; the pools need {N_POOLS} per genre")
        for p, i in enumerate(rng.permutation(len(rows))[:N_POOLS]):
            out[p].append(rows.iloc[i])
    return [pd.DataFrame(p).reset_index(drop=True) for p in out]


def genre_pairs(n_genres: int, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n`` unordered genre pairs, as even as possible: every pair once before any pair twice."""
    all_pairs = list(itertools.combinations(range(n_genres), 2))
    picked: list[tuple[int, int]] = []
    while len(picked) < n:
        picked += [all_pairs[i] for i in rng.permutation(len(all_pairs))]
    return [tuple(rng.permutation(p)) for p in picked[:n]]  # random order: which one is attenuated


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(y.astype(np.float64) ** 2)) + 1e-9)


def mix(a: np.ndarray, b: np.ndarray, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """``a`` plus ``b`` at ``gain_db`` relative to ``a`` (equal RMS first), the length of the shorter one.

    The longer source is cropped at a random offset; the sum is peak-normalised to 0.9 only if it would clip.
    """
    n = min(a.size, b.size)
    a = a[(o := int(rng.integers(0, a.size - n + 1))):o + n] / _rms(a)
    b = b[(o := int(rng.integers(0, b.size - n + 1))):o + n] / _rms(b)
    y = a + b * 10 ** (gain_db / 20)
    y = 0.1 * y / _rms(y)  # both kinds of mixture at the same loudness
    peak = np.abs(y).max()
    return (y * (0.9 / peak if peak > 0.9 else 1.0)).astype(np.float32)


def build(source: Path, out: Path, n_mixtures: int, seed: int, min_db: float) -> pd.DataFrame:
    """Write ``out/train/*.wav`` and ``out/train.csv``; return the manifest."""
    labels = pd.read_csv(source / "labels.csv")
    rng = np.random.default_rng(seed)
    genres = sorted(labels["label"].unique())
    per_pool = [n_mixtures // N_POOLS + (p < n_mixtures % N_POOLS) for p in range(N_POOLS)]
    (out / "train").mkdir(parents=True, exist_ok=True)
    rows, sr_seen = [], set()
    for p, pool in enumerate(pools(labels, rng)):
        clip = {r["label"]: r for _, r in pool.iterrows()}
        audio = {g: sf.read(source / clip[g]["path"], dtype="float32", always_2d=True) for g in genres}
        sr_seen |= {sr for _, sr in audio.values()}
        for i, (ga, gb) in enumerate(genre_pairs(len(genres), per_pool[p], rng)):
            (a, sr), (b, _) = audio[genres[ga]], audio[genres[gb]]
            gain = float(rng.uniform(min_db, 0.0))
            fname = f"mix_p{p}_{i:03d}.wav"
            y = mix(a.mean(1), b.mean(1), gain, rng)
            sf.write(out / "train" / fname, y, sr, subtype="PCM_16")
            rows.append({"fname": fname, "labels": ",".join(sorted((genres[ga], genres[gb]))), "group": f"pool{p}",
                         "source_a": clip[genres[ga]]["filename"], "source_b": clip[genres[gb]]["filename"],
                         "gain_b_db": round(gain, 2), "seconds": round(y.size / sr, 3)})
        log.info("pool %d: %d mixtures from %s", p, per_pool[p], ", ".join(pool["filename"]))
    if len(sr_seen) != 1:
        raise SystemExit(f"the source clips have several sample rates {sorted(sr_seen)}; resample them first")
    manifest = pd.DataFrame(rows)
    write_csv(out / "train.csv", manifest)
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output folder (git-ignored, e.g. data/gtzan_mix)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the GTZAN subset (genres/<genre>/*.wav + labels.csv)")
    ap.add_argument("--n-mixtures", type=int, default=200, help="mixtures in all, spread evenly over the 5 pools")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-db", type=float, default=-6.0, help="the second genre's level is drawn from [min-db, 0] dB")
    args = ap.parse_args(argv)
    setup_logging()
    if not (args.source / "labels.csv").is_file():
        raise SystemExit(f"no labels.csv in {args.source}: point --source at gtzan_audio_subset")
    if args.n_mixtures < N_POOLS:
        raise SystemExit(f"--n-mixtures must be at least {N_POOLS} (one per pool)")
    manifest = build(args.source, args.out, args.n_mixtures, args.seed, args.min_db)
    write_json(args.out / "mixtures.json", {"source": str(args.source), "n_mixtures": args.n_mixtures, "seed": args.seed,
                                             "min_db": args.min_db, "pools": N_POOLS})
    counts = manifest["labels"].str.split(",").explode().value_counts().sort_index()
    log.info("wrote %d mixtures (%.0f s of audio) to %s; positives per genre: %s", len(manifest), manifest["seconds"].sum(),
             args.out, json.dumps(counts.to_dict()))


if __name__ == "__main__":
    main()
