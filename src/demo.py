"""The embedded default job: ``python -m src.demo``. Needs no download.

Synthesises a small audio competition in the Kaggle layout under
``data/demo/`` (``train/*.wav``, ``train.csv`` with an artist column,
unlabelled ``test/*.wav``, ``sample_submission.csv``), then runs
features -> folds -> MLP and CNN on every fold -> ensemble -> submission and
prints the CV table. Classes differ in timbre, pitch and rhythm; each class
has several "artists" whose clips share a pitch/tempo signature, and folds are
grouped by artist, so the CV score measures generalisation to new artists.

``python -m src.demo --multilabel`` runs the multi-label counterpart (``configs/demo_multilabel.toml``,
``data/demo_multilabel/``): training clips hold 1-3 overlapping events, the test set is BirdCLEF-shaped (long
soundscapes predicted per 5-s window, ``row_id = <soundscape>_<end>``, one probability column per class), and the
submission is scored against hidden window labels by macro ROC-AUC, cmAP and lwlrap.
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


def _up_to_date(root: Path, marker: Path, want: dict) -> bool:
    """True when ``root`` holds a complete copy made with these parameters (its marker, written last, says so);
    otherwise whatever is there is removed, to be written afresh."""
    if marker.is_file() and read_json(marker) == want:
        log.info("demo data already in %s", root)
        return True
    if root.exists():
        shutil.rmtree(root)
    return False


def synthesize(root: Path, n_per_class: int = 60, n_test: int = 64, artists_per_class: int = 6, seed: int = 0) -> None:
    """Write the demo competition (skipped when a complete copy of this version exists)."""
    import soundfile as sf

    marker = root / "demo.json"
    want = {"version": DEMO_VERSION, "n_per_class": n_per_class, "n_test": n_test, "artists": artists_per_class, "seed": seed}
    if _up_to_date(root, marker, want):
        return
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


# ----------------------------------------------------------------------------- the multi-label demo (--multilabel)

ML_CONFIG = CONFIG.parent / "demo_multilabel.toml"
ML_VERSION = 1
ML_WINDOW = 5  # seconds per test window, as the config's [test] window_seconds


def synth_events(labels: list[str], sigs: dict[str, tuple[float, float]], rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Overlapping sound events: the classes' clips summed, the first at 0 dB and the others at -6..0 dB; noise alone
    when ``labels`` is empty (a window where nothing calls)."""
    n = int(seconds * SR)
    y = rng.normal(0, 0.05, n)
    for k, c in enumerate(labels):
        y = y + synth_clip(c, *sigs[c], rng, seconds)[:n] * (1.0 if k == 0 else 10 ** (rng.uniform(-6, 0) / 20))
    return (0.7 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def _label_set(rng: np.random.Generator, sizes: tuple[int, ...], p: tuple[float, ...]) -> list[str]:
    """A random set of classes whose size is drawn from ``sizes`` with probabilities ``p``."""
    k = int(rng.choice(sizes, p=p))
    return [CLASSES[i] for i in rng.choice(len(CLASSES), size=k, replace=False)]


def synthesize_multilabel(root: Path, n_train: int = 120, n_soundscapes: int = 4, soundscape_seconds: int = 30,
                          sites: int = 6, seed: int = 0) -> None:
    """Write the multi-label demo (skipped when a complete copy of this version exists).

    ``train/*.wav``: 2-s clips of 1-3 overlapping events recorded at one of ``sites`` sites (each class sounds a little
    different per site; folds are grouped by site); ``train.csv`` (filename, labels "a,b", artist = site).
    ``test_soundscapes/*.wav``: long recordings from two unseen sites, 0-2 events per ``ML_WINDOW``-s window;
    ``sample_submission.csv`` (row_id ``<soundscape>_<end>``, one probability column per class) and the hidden
    ``test_solution.csv`` (the same rows, 0/1 per class), the BirdCLEF layout.
    """
    import soundfile as sf

    marker = root / "demo.json"
    want = {"version": ML_VERSION, "n_train": n_train, "n_soundscapes": n_soundscapes, "seconds": soundscape_seconds,
            "sites": sites, "seed": seed}
    if _up_to_date(root, marker, want):
        return
    rng = np.random.default_rng(seed)
    site_sigs = [{c: (rng.uniform(*PITCH[c]), rng.uniform(1.0, 3.0)) for c in CLASSES} for _ in range(sites + 2)]
    (root / "train").mkdir(parents=True)
    (root / "test_soundscapes").mkdir(parents=True)
    rows = []
    for i in range(n_train):
        labels, site = _label_set(rng, (1, 2, 3), (0.45, 0.4, 0.15)), i % sites
        sf.write(root / "train" / f"c{i:04d}.wav", synth_events(labels, site_sigs[site], rng, 2.0), SR)
        rows.append({"filename": f"c{i:04d}.wav", "labels": ",".join(labels), "artist": f"site{site}"})
    solution = []
    for j in range(n_soundscapes):  # soundscapes come from sites never seen in training
        sid, sigs = f"soundscape_{j:02d}", site_sigs[sites + j % 2]
        parts = []
        for end in range(ML_WINDOW, soundscape_seconds + 1, ML_WINDOW):
            labels = _label_set(rng, (0, 1, 2), (0.2, 0.5, 0.3))
            parts.append(synth_events(labels, sigs, rng, ML_WINDOW))
            solution.append({"row_id": f"{sid}_{end}", **{c: int(c in labels) for c in CLASSES}})
        sf.write(root / "test_soundscapes" / f"{sid}.wav", np.concatenate(parts), SR)
    write_csv(root / "train.csv", pd.DataFrame(rows))
    solution_df = pd.DataFrame(solution)
    write_csv(root / "sample_submission.csv", solution_df.assign(**{c: 0.0 for c in CLASSES}))
    write_csv(root / "test_solution.csv", solution_df)  # hidden labels, to score the submission
    write_json(marker, want)


def run_multilabel_demo(workdir: Path, epochs: int = 20, fresh: bool = True, synth: dict | None = None) -> dict[str, Path]:
    """Synthesise the multi-label demo, then folds -> MLP and CNN -> mean ensemble -> windowed submission.

    ``synth``: keyword arguments of :func:`synthesize_multilabel` (the tests make a smaller one)."""
    return _pipeline(workdir, ML_CONFIG, "demo_multilabel", lambda root: synthesize_multilabel(root, **(synth or {})),
                     "demo-ml", "multi-label demo: mean of MLP and CNN", epochs, fresh)


def _pipeline(workdir: Path, source: Path, data_name: str, synth, prefix: str, message: str, epochs: int,
              fresh: bool) -> dict[str, Path]:
    """The demo's stages, shared by both demos: data -> features -> folds -> MLP + CNN -> mean ensemble -> submission."""
    from .config import load_config
    from .ensemble import ensemble
    from .features import prepare
    from .submit import submit

    t0 = time.perf_counter()
    config = _workdir_config(workdir, source)
    data_root = (config.parent / f"../data/{data_name}").resolve()  # the config's [data] root
    synth(data_root)
    prep = prepare(load_config(config), workdir)
    log.info("features ready (%.1fs)", time.perf_counter() - t0)
    fp = _write_folds(prep, workdir)
    runs = _train_runs(prep, workdir, prefix, epochs, fresh)
    ens = ensemble([str(r) for r in runs], f"{prefix}-ens", workdir)
    sub = submit(str(ens), f"{prefix}-ens", message, workdir)
    return {"config": config, "data": data_root, "folds": fp, "runs": runs, "ensemble": ens, "submission": sub,
            "seconds": time.perf_counter() - t0}


def score_windows(submission: Path, solution: Path) -> dict[str, float]:
    """Macro ROC-AUC, padded cmAP and lwlrap of a windowed submission against the hidden 0/1 solution (rows by row_id)."""
    from .metrics import lwlrap, macro_roc_auc, padded_cmap

    sol = pd.read_csv(solution).set_index("row_id")
    sub = pd.read_csv(submission).set_index("row_id").loc[sol.index, sol.columns]
    Y, P = sol.to_numpy(float), sub.to_numpy(float)  # (n_windows, C)
    return {"roc_auc": macro_roc_auc(Y, P), "cmap": padded_cmap(Y, P), "lwlrap": lwlrap(Y, P), "rows": len(sol)}


def cv_table(run_dirs: list[Path], extra: tuple[str, ...] = ("macro_f1",)) -> pd.DataFrame:
    rows = []
    for rd in run_dirs:
        m = read_json(rd / "metrics.json")
        metric = m["metric"]
        row = {"run": rd.name, "model": read_json(rd / "config.json")["train"]["model"]}
        if "folds" in m:
            row[f"{metric} mean±std"] = f"{m['mean'][metric]:.4f} ± {m['std'][metric]:.4f}"
            row.update({f"fold{k}": round(v[metric], 4) for k, v in m["folds"].items()})
        row[f"OOF {metric}"] = round(m["oof"][metric], 4)
        row.update({f"OOF {k}": round(m["oof"][k], 4) for k in extra})
        rows.append(row)
    return pd.DataFrame(rows)


def _workdir_config(workdir: Path, source: Path) -> Path:
    """The demo's config inside ``workdir``; a workdir other than the repo gets its own copy of the repo's file."""
    config = workdir / "configs" / source.name
    if not config.is_file():
        config.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, config)
    return config


def _write_folds(prep, workdir: Path) -> Path:
    """The shared fold file and its audit, as ``python -m src.folds`` writes them."""
    from .artifacts import file_sha256
    from .folds import fold_path, make_folds

    folds, report = make_folds(prep)
    fp = fold_path(prep.cfg, workdir)
    write_csv(fp, folds)
    report["sha256"] = file_sha256(fp)
    write_json(fp.with_suffix(".json"), report)
    return fp


def _train_runs(prep, workdir: Path, prefix: str, epochs: int, fresh: bool) -> list[Path]:
    """An MLP (clip vectors) and a light CNN (log-mel segments) on every fold."""
    from .train import TrainConfig, run_training

    runs = []
    # a lighter CNN than the default keeps the demo within a few minutes on 2 CPU cores
    for model, params in (("mlp", {}), ("cnn", {"convs": 1, "channels": [8, 16, 32, 64]})):
        rid = f"{prefix}-{model}"
        if fresh and (workdir / "runs" / rid).exists():
            shutil.rmtree(workdir / "runs" / rid)
        tc = TrainConfig(model=model, epochs=epochs if model == "mlp" else min(epochs, 12), patience=4, batch_size=32,
                         lr=2e-3 if model == "mlp" else 4e-3, run_id=rid, model_params=params)
        runs.append(run_training(prep.cfg, tc, workdir, prep))
    return runs


def run_demo(workdir: Path, epochs: int = 20, fresh: bool = True) -> dict[str, Path]:
    return _pipeline(workdir, CONFIG, "demo", synthesize, "demo", "demo: mean of MLP and CNN", epochs, fresh)


def _print_locations(out: dict, plots: str) -> None:
    print(f"\nWhere everything went ({out['seconds']:.0f}s in all):")
    print(f"  data + config : {out['data']}  /  {out['config']}")
    print(f"  fold file     : {out['folds']}")
    for r in out["runs"]:
        print(f"  run           : {r}  (config.json, fold<k>.pt, oof.npy, test.npy, metrics.json, {plots})")
    print(f"  ensemble      : {out['ensemble']}")
    print(f"  submission    : {out['submission']}  (index: {out['submission'].parent / 'index.csv'})")


def main_multilabel(workdir: Path, epochs: int) -> None:
    out = run_multilabel_demo(workdir, epochs)
    table = cv_table([*out["runs"], out["ensemble"]], extra=("lwlrap", "cmap"))
    test = score_windows(out["submission"], out["data"] / "test_solution.csv")
    pd.set_option("display.width", 200)
    print("\nCross-validation (multi-label, 5 folds grouped by recording site; clip level):")
    print(table.to_string(index=False))
    print(f"\nHidden test set: {test['rows']} windows of {ML_WINDOW} s from soundscapes of unseen sites; the submission scores "
          f"macro ROC-AUC {test['roc_auc']:.4f}, cmAP {test['cmap']:.4f}, lwlrap {test['lwlrap']:.4f}")
    _print_locations(out, "curves.png")


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("demo", "Synthesize a small audio competition and run the whole pipeline on it.")
    cli.add_common(ap, config=False)
    ap.add_argument("--epochs", type=int, default=20, help="epoch cap of the MLP (the CNN is capped at 12)")
    ap.add_argument("--multilabel", action="store_true",
                    help="the multi-label demo instead: overlapping events, BirdCLEF-style 5-s windows of long test soundscapes")
    args = ap.parse_args(argv)
    setup_logging()
    if args.multilabel:
        main_multilabel(Path(args.workdir), args.epochs)
        return
    out = run_demo(Path(args.workdir), args.epochs)
    table = cv_table([*out["runs"], out["ensemble"]])
    sol = pd.read_csv(out["data"] / "test_solution.csv")
    sub = pd.read_csv(out["submission"])
    test_acc = float((sub.set_index("id")["label"] == sol.set_index("id")["label"]).mean())
    pd.set_option("display.width", 200)
    print("\nCross-validation (5 folds grouped by artist; clip level):")
    print(table.to_string(index=False))
    print(f"\nHidden test accuracy of the submission (unseen artists): {test_acc:.4f}")
    _print_locations(out, "curves.png, confusion.png")


if __name__ == "__main__":
    cli.run_command(main)
