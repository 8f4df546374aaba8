"""CPU throughput of a spectrogram run, PyTorch vs onnxruntime, 1 vs 2 threads: ``python scripts/bench_onnx.py [RUN]``.

Why: code competitions give a fixed CPU budget for thousands of files. Two measurements:

* network: one fold's network on random log-mel segments of the run's input shape, in batches of
  ``src.predict.BATCH_SIZE`` -> segments (clips) per second;
* end to end: ``src.predict`` on a synthetic 60-s wav (decode, resample, log-mel, every fold, aggregate) ->
  60-s files per hour. A 60-s file is ``1 + (60 - segment) / hop`` segments times the run's folds.

The run is copied to a temporary workdir and exported there (the run folder itself is left untouched).
Prints a Markdown table; ``--json PATH`` also writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.export import TOLERANCE, export_run, ort_session, random_input  # noqa: E402
from src.inference import load_fold_model  # noqa: E402
from src.predict import BATCH_SIZE, load_predictor, make_plan, predict_files  # noqa: E402

log = logging.getLogger("bench_onnx")


def timed(fn, min_seconds: float) -> tuple[int, float]:
    """(calls, seconds) of calling ``fn`` repeatedly for at least ``min_seconds``, after one warm-up call."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return n, time.perf_counter() - t0


def bench_network(pt: Path, onnx: Path, threads: int, seconds: float) -> dict[str, float]:
    """Segments per second through one fold's network: torch (eager, no_grad) and onnxruntime."""
    torch.set_num_threads(threads)
    model, meta = load_fold_model(pt)
    x = random_input(model, meta, BATCH_SIZE)  # (B, n_mels, T)
    sess, xn = ort_session(onnx, threads), x.numpy()

    def run_torch():
        with torch.no_grad():
            model(x)

    out = {}
    for name, fn in (("torch", run_torch), ("onnxruntime", lambda: sess.run(None, {"x": xn}))):
        n, dt = timed(fn, seconds)
        out[name] = n * BATCH_SIZE / dt
    return out


def bench_files(run: Path, workdir: Path, wav: Path, threads: int, repeats: int) -> dict[str, float]:
    """60-s files per hour through ``src.predict`` (features + every fold), torch and onnxruntime."""
    torch.set_num_threads(threads)
    out = {}
    for name, onnx in (("torch", False), ("onnxruntime", True)):
        pred = load_predictor(run, workdir, "cpu", onnx=onnx)
        plan = make_plan(pred, workdir)
        predict_files(pred, plan, [wav])  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            predict_files(pred, plan, [wav])
        out[name] = 3600 * repeats / (time.perf_counter() - t0)
    return out


def synth_wav(path: Path, seconds: float, sr: int) -> Path:
    """A 60-s mix of tones and noise (its content does not change the cost)."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 3 * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(path, y.astype(np.float32), sr)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="runs/p-cnn2", help="a finished spectrogram run folder (default: runs/p-cnn2)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=5.0, help="time per network measurement")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the 60-s file per end-to-end measurement")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    src = Path(args.run)
    cfg = json.loads((src / "config.json").read_text())
    audio = cfg["workspace"]["audio"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = shutil.copytree(src, work / "runs" / src.name)
        paths = export_run(run, work)
        n_seg = 1 + int((60 - audio["segment_seconds"]) // audio["segment_hop_seconds"])
        wav = synth_wav(work / "sixty.wav", 60.0, audio["sample_rate"])
        rows = []
        for th in args.threads:
            net = bench_network(run / "fold0.pt", paths[0], th, args.seconds)
            files = bench_files(run, work, wav, th, args.repeats)
            for name in ("torch", "onnxruntime"):
                rows.append({"backend": name, "threads": th, "segments_per_s": net[name],
                             "files_per_hour_network": 3600 * net[name] / (n_seg * len(paths)), "files_per_hour_end_to_end": files[name]})
    print(f"run {src.name} ({cfg['train']['model']}, {len(paths)} folds), {n_seg} segments of {audio['segment_seconds']:g} s "
          f"(hop {audio['segment_hop_seconds']:g} s) per 60-s file, batch {BATCH_SIZE}, ONNX tolerance {TOLERANCE:g}")
    print("| backend | threads | segments/s (one fold) | 60-s files/h (networks only) | 60-s files/h (end to end) |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [r["backend"], r["threads"], *(f"{r[k]:.0f}" for k in ("segments_per_s", "files_per_hour_network", "files_per_hour_end_to_end"))]
        print("| " + " | ".join(map(str, cells)) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
