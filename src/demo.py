"""The embedded default job: ``python -m src.demo``. Needs no download.

Synthesises a small audio competition in the Kaggle layout under
``data/demo/`` (``train/*.wav``, ``train.csv`` with an artist column,
unlabelled ``test/*.wav``, ``sample_submission.csv``), then runs
features -> folds -> MLP and CNN on every fold -> ensemble -> submission and
prints the CV table. Classes differ in timbre, pitch and rhythm; each class
has several "artists" whose clips share a pitch/tempo signature, and folds are
grouped by artist, so the CV score measures generalisation to new artists.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import cli
from .artifacts import read_json, setup_logging, write_csv, write_json

log = logging.getLogger(__name__)
CLASSES = ["chime", "drone", "pluck", "beat"]
SR = 16000
DEMO_VERSION = 2
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.toml"


def _envelope(t: np.ndarray, rate: float, decay: float, phase: float) -> np.ndarray:
    """Repeating exponentially decaying hits, ``rate`` per second."""
    return np.exp(-decay * ((t * rate + phase) % 1.0) / rate)


def synth_clip(cls: str, artist_pitch: float, artist_tempo: float, rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = artist_pitch * rng.uniform(0.94, 1.06)
    phase = rng.uniform()
    if cls == "drone":  # low, sustained, a few soft harmonics, slow tremolo
        y = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h ** 2 for h in (1, 2, 3))
        y *= 0.8 + 0.2 * np.sin(2 * np.pi * 0.5 * artist_tempo * t)
    elif cls == "pluck":  # mid pitch, bright harmonics, decaying plucks
        y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 9)) * _envelope(t, artist_tempo, 6.0, phase)
    elif cls == "chime":  # high, inharmonic bell partials, slow hits
        y = sum(np.sin(2 * np.pi * f0 * r * t) * a for r, a in ((1, 1), (2.76, 0.5), (5.4, 0.25))) * _envelope(t, artist_tempo / 2, 3.0, phase)
    else:  # beat: noise bursts with a low thump, fast rhythm
        env = _envelope(t, artist_tempo * 2, 25.0, phase)
        y = rng.normal(0, 0.5, t.size) * env + np.sin(2 * np.pi * 60 * t) * env
    y = y / (np.abs(y).max() + 1e-9)
    y = y + rng.normal(0, rng.uniform(0.02, 0.45), t.size)  # noise at varying SNR
    return (0.7 * y / np.abs(y).max()).astype(np.float32)


PITCH = {"drone": (70, 200), "pluck": (150, 420), "chime": (380, 1100), "beat": (60, 60)}  # overlapping on purpose


def synthesize(root: Path, n_per_class: int = 60, n_test: int = 64, artists_per_class: int = 6, seed: int = 0) -> None:
    """Write the demo competition (skipped when a complete copy of this version exists)."""
    import soundfile as sf

    marker = root / "demo.json"
    want = {"version": DEMO_VERSION, "n_per_class": n_per_class, "n_test": n_test, "artists": artists_per_class, "seed": seed}
    if marker.is_file() and read_json(marker) == want:
        log.info("demo data already in %s", root)
        return
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    artists = {c: [(rng.uniform(*PITCH[c]), rng.uniform(1.0, 3.0)) for _ in range(artists_per_class + 2)] for c in CLASSES}
    rows, test_rows = [], []
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir(parents=True)
    for c in CLASSES:
        for i in range(n_per_class):
            a = i % artists_per_class
            cid = f"{c[:2]}{i:03d}"
            sf.write(root / "train" / f"{cid}.wav", synth_clip(c, *artists[c][a], rng), SR)
            rows.append({"id": cid, "label": c, "artist": f"{c}_artist{a}"})
    for j in range(n_test):  # test clips come from artists never seen in training
        c = CLASSES[j % len(CLASSES)]
        tid = f"t{j:04d}"
        sf.write(root / "test" / f"{tid}.wav", synth_clip(c, *artists[c][artists_per_class + j % 2], rng), SR)
        test_rows.append({"id": tid, "label": c})
    write_csv(root / "train.csv", pd.DataFrame(rows))
    write_csv(root / "sample_submission.csv", pd.DataFrame({"id": [r["id"] for r in test_rows], "label": CLASSES[0]}))
    write_csv(root / "test_solution.csv", pd.DataFrame(test_rows))  # hidden labels, to check the submission
    write_json(marker, want)


def cv_table(run_dirs: list[Path]) -> pd.DataFrame:
    rows = []
    for rd in run_dirs:
        m = read_json(rd / "metrics.json")
        metric = m["metric"]
        row = {"run": rd.name, "model": read_json(rd / "config.json")["train"]["model"]}
        if "folds" in m:
            row[f"{metric} mean±std"] = f"{m['mean'][metric]:.4f} ± {m['std'][metric]:.4f}"
            row.update({f"fold{k}": round(v[metric], 4) for k, v in m["folds"].items()})
        row[f"OOF {metric}"] = round(m["oof"][metric], 4)
        row["OOF macro_f1"] = round(m["oof"]["macro_f1"], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def run_demo(workdir: Path, epochs: int = 20, fresh: bool = True) -> dict[str, Path]:
    from .artifacts import file_sha256
    from .config import load_config
    from .ensemble import ensemble
    from .features import prepare
    from .folds import fold_path, make_folds
    from .submit import submit
    from .train import TrainConfig, run_training

    t0 = time.perf_counter()
    config = workdir / "configs" / "demo.toml"
    if not config.is_file():  # a workdir other than the repo gets its own copy of the demo config
        config.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CONFIG, config)
    data_root = (config.parent / "../data/demo").resolve()
    synthesize(data_root)
    cfg = load_config(config)
    prep = prepare(cfg, workdir)
    log.info("features ready (%.1fs)", time.perf_counter() - t0)
    folds, report = make_folds(prep)
    fp = fold_path(cfg, workdir)
    write_csv(fp, folds)
    report["sha256"] = file_sha256(fp)
    write_json(fp.with_suffix(".json"), report)
    runs = []
    # a lighter CNN than the default keeps the demo within a few minutes on 2 CPU cores
    for model, params in (("mlp", {}), ("cnn", {"convs": 1, "channels": [8, 16, 32, 64]})):
        rid = f"demo-{model}"
        if fresh and (workdir / "runs" / rid).exists():
            shutil.rmtree(workdir / "runs" / rid)
        tc = TrainConfig(model=model, epochs=epochs if model == "mlp" else min(epochs, 12), patience=4, batch_size=32,
                         lr=2e-3 if model == "mlp" else 4e-3, run_id=rid, model_params=params)
        runs.append(run_training(cfg, tc, workdir, prep))
    ens = ensemble([str(r) for r in runs], "demo-ens", workdir)
    sub = submit(str(ens), "demo-ens", "demo: mean of MLP and CNN", workdir)
    return {"config": config, "data": data_root, "folds": fp, "runs": runs, "ensemble": ens, "submission": sub,
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("demo", "Synthesize a small audio competition and run the whole pipeline on it.")
    cli.add_common(ap, config=False)
    ap.add_argument("--epochs", type=int, default=20, help="epoch cap of the MLP (the CNN is capped at 12)")
    args = ap.parse_args(argv)
    setup_logging()
    out = run_demo(Path(args.workdir), args.epochs)
    table = cv_table([*out["runs"], out["ensemble"]])
    sol = pd.read_csv(out["data"] / "test_solution.csv")
    sub = pd.read_csv(out["submission"])
    test_acc = float((sub.set_index("id")["label"] == sol.set_index("id")["label"]).mean())
    pd.set_option("display.width", 200)
    print("\nCross-validation (5 folds grouped by artist; clip level):")
    print(table.to_string(index=False))
    print(f"\nHidden test accuracy of the submission (unseen artists): {test_acc:.4f}")
    print(f"\nWhere everything went ({out['seconds']:.0f}s in all):")
    print(f"  data + config : {out['data']}  /  {out['config']}")
    print(f"  fold file     : {out['folds']}")
    for r in out["runs"]:
        print(f"  run           : {r}  (config.json, fold<k>.pt, oof.npy, test.npy, metrics.json, curves.png, confusion.png)")
    print(f"  ensemble      : {out['ensemble']}")
    print(f"  submission    : {out['submission']}  (index: {out['submission'].parent / 'index.csv'})")


if __name__ == "__main__":
    cli.run_command(main)
