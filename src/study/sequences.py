"""Sequence models on sequence recipes: every model x recipe trained on the same folds and compared fold by fold.

``python -m src.study sequences --config C [--models lstm,crnn] [--recipes logmel,chroma,logmel_beat,logmel+chroma]
[--epochs N] [--folds K ...] [--overfit-batch 2]``

Each model x recipe is one ``src.train.run_training`` with the train setting ``recipe`` (the feature cache
builds each recipe once: ``src.features``), run id ``<prefix>-<config>-<model>-<recipe>-e<epochs>``; calling the
command again resumes (finished folds are kept). A sanity row trains the first model on the first recipe with
``overfit_batches`` (``--overfit-batch N``: a few fixed batches for training and validation; a net that cannot fit
them has a bug or a too-small learning rate). The runs are then compared by ``src.compare`` (paired fold-by-fold
tests, Holm-corrected) and the study writes ``reports/sequences/``: ``table.csv`` / ``table.md`` (per run: input
shape, mean ± sd over folds of accuracy and macro-F1, the last epoch's training loss, training seconds and the
corrected p-value against the best), ``compare.json`` / ``report.md`` (the comparison and every run's confusion
matrix and curves).
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli
from ..artifacts import read_json, stable_hash
from ..config import WorkspaceConfig, load_config
from ..errors import ConfigError
from ..features import RECIPES, Prepared, prepare, run_recipe
from ..models import get_spec
from ..settings import parse_pairs
from .report import report_dir, write_table

log = logging.getLogger(__name__)
STUDIES = ("sequences",)
SEQUENCE_CHOICES = [r for r in RECIPES if r != "musicnn"]


def add_arguments(ap: argparse.ArgumentParser, name: str) -> None:
    cli.add_common(ap)
    ap.add_argument("--out", help="report folder (default: <workdir>/reports/sequences)")
    ap.add_argument("--models", default="lstm,crnn", help="comma-separated spectrogram models")
    ap.add_argument("--recipes", default="logmel,chroma,logmel_beat,logmel+chroma",
                    help=f"comma-separated recipes, of {SEQUENCE_CHOICES}")
    ap.add_argument("--epochs", type=int, default=10, help="maximum epochs per fold (early stopping as configured)")
    ap.add_argument("--folds", type=int, nargs="+", help="folds to train (default: every fold of the fold file)")
    ap.add_argument("--overfit-batch", type=int, default=2, metavar="N",
                    help="sanity row: the first model on the first recipe fits N fixed batches (fold 0); 0: skip")
    ap.add_argument("--overfit-epochs", type=int, default=30, help="epochs of the sanity row")
    ap.add_argument("--param", action="append", default=[], metavar="[MODEL.]KEY=VALUE",
                    help="a train setting or model parameter for every run (lr=1e-3, hidden=64), or for one model's runs "
                         "(crnn.channels=[16,32,32])")
    ap.add_argument("--run-prefix", default="seq", help="prefix of the run ids")
    ap.add_argument("--no-report", action="store_true", help="skip the per-run report pages (confusion matrices, curves)")


def run(args: argparse.Namespace) -> Path:
    cfg = load_config(args.config, args.workdir)
    models, recipes = parse_choices(cfg, args.models, args.recipes)
    scopes = sorted({k.partition(".")[0] for k in parse_pairs(args.param) if "." in k} - set(models))
    if scopes:
        raise ConfigError(f"--param {scopes[0]}.KEY=VALUE: {scopes[0]!r} is not one of --models {models}",
                          "scope a parameter by a model of the study (crnn.channels=[16,32,32]) or leave the scope out")
    out = report_dir(args.workdir, "sequences", args.out)
    prep = prepare(cfg, args.workdir)
    sanity = train(cfg, prep, args, models[0], recipes[0], overfit=args.overfit_batch) if args.overfit_batch else None  # first: cheap
    runs: dict[str, Path] = {}
    for model in models:
        for recipe in recipes:
            runs[f"{model}/{recipe}"] = train(cfg, prep, args, model, recipe)
    res = compare_runs(runs, args, out)
    rows = [row(label, root, res, "cross-validation") for label, root in runs.items()]
    if sanity is not None:
        rows.append(row(f"{models[0]}/{recipes[0]}", sanity, None, f"overfit {args.overfit_batch} batch(es)"))
    table = pd.DataFrame(rows)
    notes = notes_for(cfg, args, res)
    write_table(out, table, title=f"Sequence models x recipes on {cfg.name}", notes=notes)
    log.info("sequences study: %d run(s) -> %s", len(table), out)
    return out


def parse_choices(cfg: WorkspaceConfig, models: str, recipes: str) -> tuple[list[str], list[str]]:
    """The models (spectrogram input, fed the config's audio) and recipes asked for, refused before any training."""
    ms = [m.strip() for m in models.split(",") if m.strip()]
    rs = [r.strip() for r in recipes.split(",") if r.strip()]
    bad = [r for r in rs if r not in SEQUENCE_CHOICES]
    if bad or not rs or not ms:
        raise ConfigError(f"--recipes {recipes!r} / --models {models!r}: " + (f"unknown recipe(s) {bad}" if bad else "an empty list"),
                          f"choose recipes from {SEQUENCE_CHOICES} and at least one model, e.g. --models lstm,crnn")
    for m in ms:
        spec = get_spec(m)
        if spec.input != "spec":
            raise ConfigError(f"--models {m}: {spec.describe()} does not take spectrogram sequences",
                              "choose spectrogram models, e.g. lstm, crnn or cnn")
        for r in rs:
            run_recipe(spec.recipe, _Recipe(m, r))  # a model with its own fixed recipe refuses the others, here
    if cfg.data.kind != "audio" and rs != ["logmel"]:
        raise ConfigError(f"--recipes {rs}: recipes other than logmel are computed from audio; [data] kind is {cfg.data.kind!r}",
                          "use a config with audio data, or --recipes logmel")
    return ms, rs


class _Recipe:
    """The two train settings :func:`src.features.run_recipe` reads, for checking a choice before any run exists."""

    def __init__(self, model: str, recipe: str):
        self.model, self.recipe = model, recipe


def run_id(cfg: WorkspaceConfig, args: argparse.Namespace, model: str, recipe: str, overfit: int = 0) -> str:
    """``<prefix>-<config>-<model>-<recipe>-e<epochs>[-overfit<N>][-<hash of --param>]``: the same call resumes its runs,
    another --param gets other runs."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", recipe)
    epochs = args.overfit_epochs if overfit else args.epochs
    params = model_params(args.param, model)
    return (f"{args.run_prefix}-{cfg.name}-{model}-{slug}-e{epochs}" + (f"-overfit{overfit}" if overfit else "")
            + (f"-p{stable_hash(params, 6)}" if params else ""))


def train(cfg: WorkspaceConfig, prep: Prepared, args: argparse.Namespace, model: str, recipe: str, overfit: int = 0) -> Path:
    """One run through ``src.train.run_training``; the model's own recipe is written as ``''`` (as a plain run has it),
    so the run is the same model as one trained without ``--recipe``."""
    from ..train import resolve_train_config, run_training

    own = get_spec(model).recipe
    flags = {"epochs": args.overfit_epochs if overfit else args.epochs, "recipe": "" if recipe == own else recipe,
             "run_id": run_id(cfg, args, model, recipe, overfit)}
    if args.folds:
        flags["folds"] = list(args.folds)
    if overfit:
        flags.update(overfit_batches=overfit, folds=list(args.folds or [0])[:1])
    tc, sources = resolve_train_config(cfg, model, flags, model_params(args.param, model), None, args.workdir)
    log.info("sequences: %s on %s (%s)", model, recipe, tc.run_id)
    return run_training(cfg, tc, args.workdir, prep, sources=sources)


def model_params(pairs: list[str], model: str) -> dict:
    """``--param`` values for ``model``'s runs: unscoped ones, and ``<model>.KEY=VALUE`` ones with the scope removed."""
    out = {}
    for key, value in parse_pairs(pairs).items():
        scope, dot, name = key.partition(".")
        if not dot:
            out[key] = value
        elif scope == model:
            out[name] = value
    return out


def compare_runs(runs: dict[str, Path], args: argparse.Namespace, out: Path) -> dict | None:
    """``src.compare`` over the runs (labelled model/recipe): its JSON and report pages in ``out``; None for one run."""
    if len(runs) < 2:
        return None
    if len(args.folds or [0, 1]) < 2:
        log.warning("one fold: no paired comparison (src.compare needs at least 2 paired fold scores)")
        return None
    from ..compare import compare, write_outputs

    res = compare([f"{label}={root}" for label, root in runs.items()], args.workdir)
    write_outputs(res, out, args.workdir, with_report=not args.no_report)
    return res


def row(label: str, root: Path, res: dict | None, kind: str) -> dict:
    """A table row of one run (``label`` = model/recipe): its scores from the comparison (or, for the sanity row,
    its own metrics)."""
    cfg, metrics = read_json(root / "config.json"), read_json(root / "metrics.json")
    status = read_json(root / "fold_status.json")
    folds = metrics["folds_done"]
    model, _, recipe = label.partition("/")
    shape = _input_shape(root, folds[0])
    out = {"model": model, "recipe": recipe, "rows": kind, "input": "x".join(map(str, shape)) if shape else "",
           "folds": len(folds), "epochs": cfg["train"]["epochs"],
           "train_loss_last": float(np.mean([metrics["history"][str(k)][-1]["train_loss"] for k in folds])),
           "train_s": round(sum(float(status.get(str(k), {}).get("seconds", 0.0)) for k in folds), 1)}
    found = next((r for r in (res or {}).get("table", []) if r["model"] == label), None)
    for name in ("accuracy", "macro_f1"):
        if found is not None:
            out[name], out[f"{name}_sd"] = found[name]
        else:
            out[name], out[f"{name}_sd"] = metrics["mean"].get(name, np.nan), metrics["std"].get(name, np.nan)
    out["p_vs_best"] = _p_vs_best(label, res)
    out["run"] = root.name
    return out


def _input_shape(root: Path, fold: int) -> list[int]:
    import torch

    ckpt = torch.load(root / f"fold{fold}.pt", map_location="cpu", weights_only=False)
    return list(ckpt.get("input_shape") or [])


def _p_vs_best(label: str, res: dict | None) -> float:
    """Holm-adjusted corrected t-test p-value of this model against the best one of the comparison (NaN: it is the best)."""
    if not res:
        return float("nan")
    sign = 1 if res["greater_is_better"] else -1
    best = max(res["table"], key=lambda r: sign * r[res["metric"]][0])["model"]
    for p in res["pairs"]:
        if {p["a"], p["b"]} == {label, best} and label != best:
            return float(p["corrected_t"]["p_holm"])
    return float("nan")


def notes_for(cfg: WorkspaceConfig, args: argparse.Namespace, res: dict | None) -> str:
    lines = [f"Clip-level scores, mean and sd (ddof=1) over folds of the shared fold file; at most {args.epochs} epochs per fold "
             f"(early stopping: patience of the config's [train]); input = feature bins x frames (beat recipes: x beats).",
             "p_vs_best: corrected resampled t-test against the best row, Holm-adjusted over all pairs (src.compare); "
             "the overfit row trains and validates on the same few batches (its accuracy is a fit, not a CV score)."]
    if res is not None:
        lines.append("Pairwise verdicts:\n\n" + "\n".join(f"- {p['verdict'].splitlines()[0]}" for p in res["pairs"]))
    return "\n\n".join(lines)
