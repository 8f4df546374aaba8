"""Trials per hour and the compute the pruners save: one model, two fresh studies, same budget.

    python scripts/bench_tuning.py --config configs/gtzan_features.toml --model mlp --minutes 10
    python scripts/bench_tuning.py --config configs/gtzan_audio_study.toml --model cnn --minutes 10 --epochs 5 \
        --folds 0 1 2 --pruner-startup 2      # unknown flags are passed to src.tune (both studies)
    python scripts/bench_tuning.py ... --trials 10   # same trial count instead of the same time

Use ``--trials`` (no more than the sampler's 10 random start-up trials) when the machine is shared: both
studies then evaluate the same seeded configurations, so the epoch ratio is the pruners' saving on identical
work and does not depend on the load; trials/hour still does.

Runs ``python -m src.tune`` twice with the same sampler seed, folds and epoch cap: once with the
default pruners (median per epoch + Wilcoxon per fold), once with ``--pruner none --fold-pruner none``.
Each study is new (``bench-<model>-pruned`` / ``bench-<model>-nopruning``; old ones are deleted).
Reported per study: finished trials (complete/pruned), trials/hour, epochs trained per trial (an epoch
is one ``trial.report``), best value. The saving is the ratio of epochs per trial, and of trials/hour.
Results go to ``<workdir>/reports/bench_tuning-<model>.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent


def run_study(args: argparse.Namespace, label: str, extra: list[str]) -> dict:
    name = f"bench-{args.model}-{label}"
    sdir = Path(args.workdir) / "optuna_studies"
    for old in sdir.glob(f"{name}.*"):
        old.unlink()
    cmd = [sys.executable, "-m", "src.tune", "--config", args.config, "--workdir", args.workdir, "--model", args.model,
           "--study", name, "--no-plots", *extra]
    if args.trials:
        cmd += ["--trials", str(args.trials)]
    else:
        cmd += ["--trials", "100000", "--timeout", str(args.minutes * 60)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.folds:
        cmd += ["--folds", *map(str, args.folds)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{(sdir / f'{name}.db').resolve()}")
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    pruned = [t for t in done if t.state == TrialState.PRUNED]
    epochs = sum(len(t.intermediate_values) for t in done)
    trial_seconds = sum(t.user_attrs.get("seconds", 0.0) for t in done)
    return {
        "study": name, "pruners": label, "wall_seconds": round(wall, 1), "trial_seconds": round(trial_seconds, 1),
        "finished": len(done), "complete": len(complete), "pruned": len(pruned),
        "pruned_by_fold": sum(1 for t in pruned if (t.user_attrs.get("pruned_at") or {}).get("by") == "fold"),
        "trials_per_hour": round(3600 * len(done) / max(trial_seconds, 1e-9), 1),
        "epochs": epochs, "epochs_per_trial": round(epochs / max(len(done), 1), 2),
        "best_value": study.best_value if complete else None,
        "best_params": study.best_params if complete else None,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--minutes", type=float, default=10.0, help="time budget of each study")
    ap.add_argument("--trials", type=int, help="finished trials per study instead of a time budget")
    ap.add_argument("--epochs", type=int, help="per-trial epoch cap per fold (default: the config's)")
    ap.add_argument("--folds", type=int, nargs="+")
    args, passthrough = ap.parse_known_args(argv)  # other src.tune flags (e.g. --pruner-startup 2) go to both studies
    pruned = run_study(args, "pruned", passthrough)
    plain = run_study(args, "nopruning", [*passthrough, "--pruner", "none", "--fold-pruner", "none"])
    out = {"model": args.model, "config": args.config, "minutes": None if args.trials else args.minutes,
           "trials": args.trials, "epochs_cap": args.epochs,
           "folds": args.folds, "tune_args": passthrough, "pruned": pruned, "nopruning": plain,
           "epochs_per_trial_ratio": round(pruned["epochs_per_trial"] / max(plain["epochs_per_trial"], 1e-9), 3),
           "trials_per_hour_ratio": round(pruned["trials_per_hour"] / max(plain["trials_per_hour"], 1e-9), 2)}
    path = Path(args.workdir) / "reports" / f"bench_tuning-{args.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(path)
    cols = ("pruners", "finished", "complete", "pruned", "pruned_by_fold", "trials_per_hour", "epochs_per_trial", "best_value")
    print(" | ".join(cols))
    for r in (pruned, plain):
        print(" | ".join(str(r[c]) for c in cols))
    print(f"pruned/unpruned: epochs per trial x{out['epochs_per_trial_ratio']}, trials per hour x{out['trials_per_hour_ratio']} -> {path}")


if __name__ == "__main__":
    main()
