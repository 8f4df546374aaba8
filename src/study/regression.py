"""Regression: one model per target vs one multitask model vs fine-tuning a genre classifier.

``python -m src.study regression --config C [--targets a,b] [--source-run RUN | --init-checkpoint PATH]
[--model M] [--epochs N] [--folds K ...]`` trains, all through ``src.train.run_training``:

* ``single``: one model per target;
* ``multitask``: one model for all targets, the loss a weighted sum over targets (``task_weights``, equal by default);
* ``transfer``: the multitask model started from a classification checkpoint (``init_checkpoint``): with
  ``--source-run``, fold k starts from the source run's ``fold<k>.pt`` when the source's folds hold the same
  clips (then every arm uses the source's fold assignment, so fold k's validation clips were never in the
  source model's training set either); otherwise every fold starts from the source's first fold checkpoint,
  and the table says that it may have seen (the class labels of) the validation clips.

Every arm uses one fold assignment: the source run's when it matches, else the config's fold file, else folds
made here (``src.folds.make_folds``). Each arm gets its copy of it under ``<workdir>/reports/regression/folds/`` because
a fold file's ``label`` column holds the bins of the arm's first target (``src.folds`` checks it). Writes ``table.csv`` /
``table.md`` (Spearman per target and their mean, fold mean ± sd, clip level, plus the pooled OOF value) and
``folds.csv`` (every fold's numbers). Run ids are ``<prefix>-<arm>``: running the study again resumes them.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cli
from ..artifacts import read_json, write_csv
from ..config import WorkspaceConfig, load_config
from ..errors import CheckpointError, ConfigError, FoldError
from ..features import Prepared, prepare
from ..folds import fold_path, load_folds, make_folds, read_fold_file, strata
from ..metrics import regression_metrics
from ..models import get_spec
from ..runs import RunArtifacts, fold_file_path, load_run
from ..settings import parse_pairs
from .report import REPORTS_DIR, report_dir, write_table

log = logging.getLogger(__name__)
STUDIES = ("regression",)


@dataclass
class Job:
    """One ``run_training`` call: a run id, its folds (None: all) and its starting checkpoint."""

    run_id: str
    folds: list[int] | None
    init_checkpoint: str = ""


@dataclass
class Arm:
    kind: str  # single | multitask | transfer
    name: str  # <prefix>-<arm>: the run id, or the runs' common stem (its fold file's name)
    targets: list[str]
    jobs: list[Job]
    roots: list[Path] = field(default_factory=list)


@dataclass
class Source:
    """Where the transfer arm starts: a run's fold checkpoints or one checkpoint file."""

    model: str
    model_params: dict
    run: RunArtifacts | None = None
    checkpoint: Path | None = None


def add_arguments(ap: argparse.ArgumentParser, name: str) -> None:
    cli.add_common(ap)
    ap.add_argument("--targets", help="comma-separated target columns; None: the config's [competition] targets")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--source-run", help="a classification run whose fold checkpoints start the transfer arm (same model)")
    src.add_argument("--init-checkpoint", help="one fold<k>.pt that starts every fold of the transfer arm")
    ap.add_argument("--model", help="model of every arm; None: the source's model, else cnn")
    ap.add_argument("--epochs", type=int, help="epochs per fold; None: the config's [train]")
    ap.add_argument("--folds", type=int, nargs="+", help="folds to train; None: all")
    ap.add_argument("--task-weights", type=float, nargs="+", help="loss weight per target of the multitask/transfer arms; None: equal")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a model parameter or train setting, every arm")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train; None: the config's [train], else auto")
    ap.add_argument("--run-prefix", default="regression", help="run ids are <prefix>-<arm>; the same prefix resumes finished folds")
    ap.add_argument("--out", help="report folder; None: <workdir>/reports/regression")


def run(args: argparse.Namespace) -> Path:
    """Plan the arms, train them (resuming finished folds), write the table."""
    cfg = load_config(args.config, args.workdir)
    if cfg.competition.task != "regression":
        raise ConfigError(f"{cfg.path}: [competition] task is {cfg.competition.task!r}; this study needs continuous targets",
                          "use a regression config (task = 'regression', targets = [...]), e.g. configs/gtzan_regression.toml")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else list(cfg.competition.targets)
    if not targets:
        raise ConfigError(f"--targets {args.targets!r} names no column", "e.g. --targets tempo,spectral_centroid_mean")
    out = report_dir(args.workdir, "regression", args.out)
    source = resolve_source(args)
    model = args.model or (source.model if source else "cnn")
    if source and model != source.model:
        raise ConfigError(f"--model {model} differs from the transfer source's model {source.model}: fine-tuning needs the same network",
                          f"leave --model out (it defaults to {source.model}) or pick a source trained with {model}")
    prep = prepare(with_targets(cfg, targets), args.workdir)
    fold, origin, matched = fold_assignment(prep, source, args.workdir)
    arms = plan_arms(targets, source, matched, args.run_prefix, args.folds or sorted(set(fold.tolist())))
    params = {**(source.model_params if source else {}), **parse_pairs(args.param)}
    for arm in arms:
        train_arm(arm, cfg, fold, args, model, params)
    rows, per_fold = summarise(arms, prep, targets)
    write_csv(out / "folds.csv", per_fold)
    write_table(out, rows, title=f"Regression on {cfg.name}: Spearman per target (fold mean ± sd, clip level)",
                notes=notes(prep, model, origin, source, matched))
    return out


# ----------------------------------------------------------------------------- plan


def with_targets(cfg: WorkspaceConfig, targets: list[str]) -> WorkspaceConfig:
    """The config with other ``[competition] targets`` (one arm's)."""
    return dataclasses.replace(cfg, competition=dataclasses.replace(cfg.competition, targets=list(targets)))


def resolve_source(args: argparse.Namespace) -> Source | None:
    """The transfer source: a single-network run with fold checkpoints, or one checkpoint file; None: no transfer arm."""
    if args.init_checkpoint:
        from ..pretrained import torch_load

        path = Path(args.init_checkpoint)
        if not path.is_file():
            raise CheckpointError(f"--init-checkpoint {path}: file not found", "pass a runs/<id>/fold<k>.pt of src.train")
        ckpt = torch_load(path)
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise CheckpointError(f"{path} is not a fold checkpoint of src.train (no 'model')", "pass a runs/<id>/fold<k>.pt")
        return Source(ckpt["model"], dict(ckpt.get("model_params") or {}), checkpoint=path)
    if not args.source_run:
        return None
    art = load_run(args.source_run, args.workdir)
    train = art.config.get("train", {})
    if art.config.get("members") or train.get("model") == "ensemble":
        raise CheckpointError(f"run {art.name} is an ensemble: it has no checkpoint of its own to fine-tune",
                              "pass one of its member runs as --source-run")
    if get_spec(train["model"]).kind == "sklearn":
        raise CheckpointError(f"run {art.name} is a scikit-learn head ({train['model']}): there is no network to fine-tune",
                              "pass a run of a network (cnn, musicnn_msd, ...) as --source-run")
    return Source(train["model"], dict(train.get("model_params") or {}), run=art)


def fold_assignment(prep: Prepared, source: Source | None, workdir: str | Path) -> tuple[np.ndarray, str, bool]:
    """Fold per training row for every arm, where it came from, and whether it is the source run's."""
    ids = prep.ds.train["id"].astype(str)
    if source and source.run is not None:
        path = fold_file_path(source.run, workdir)
        col = source.run.config.get("fold_column", "fold")
        src = read_fold_file(path, columns=[col])
        by_id = dict(zip(src["id"], src[col]))
        if set(by_id) == set(ids):
            return check_groups(prep, ids.map(by_id).to_numpy(), path), f"source run {source.run.name}'s folds ({path.name}, column {col})", True
        log.warning("source run %s's folds hold other clips (%d of %d ids in common): its fold checkpoints cannot be matched",
                    source.run.name, len(set(by_id) & set(ids)), len(ids))
    own = fold_path(prep.cfg, workdir)
    if own.is_file():
        folds, _ = load_folds(prep.cfg, ids, workdir, own)  # ids and order; the label column is rewritten per arm
        return check_groups(prep, folds["fold"].to_numpy(), own), f"the config's fold file {own.name}", False
    folds, _ = make_folds(prep)
    return folds["fold"].to_numpy(), f"made here with src.folds (seed {prep.cfg.folds.seed}, {prep.cfg.folds.n_splits} folds, "\
        f"stratified on bins of {prep.ds.targets[0]})", False


def check_groups(prep: Prepared, fold: np.ndarray, path: Path) -> np.ndarray:
    """Every group of the data must sit in one fold: a group split over folds would leak."""
    spread = pd.Series(fold).groupby(prep.ds.train["group"].to_numpy()).nunique()
    if (spread > 1).any():
        raise FoldError(f"{path}: group {spread[spread > 1].index[0]!r} of this data is split over folds there",
                        "use folds made for this data (python -m src.folds --config ...), without --source-run")
    return fold


def plan_arms(targets: list[str], source: Source | None, matched: bool, prefix: str, folds: list[int]) -> list[Arm]:
    """single per target, multitask (with 2+ targets), transfer (with a source): their run ids, folds and checkpoints."""
    arms = [Arm("single", f"{prefix}-single-{t}", [t], [Job(f"{prefix}-single-{t}", folds)]) for t in targets]
    if len(targets) > 1:
        arms.append(Arm("multitask", f"{prefix}-multitask", targets, [Job(f"{prefix}-multitask", folds)]))
    if source is None:
        return arms
    if source.checkpoint is not None:
        jobs = [Job(f"{prefix}-transfer", folds, str(source.checkpoint))]
    elif matched:  # fold k from the source's fold k: it never trained on fold k's clips
        jobs = [Job(f"{prefix}-transfer-f{k}", [k], str(source_checkpoint(source.run, k))) for k in folds]
    else:
        first = source.run.metrics["folds_done"][0]
        jobs = [Job(f"{prefix}-transfer", folds, str(source_checkpoint(source.run, first)))]
    arms.append(Arm("transfer", f"{prefix}-transfer", targets, jobs))
    return arms


def source_checkpoint(art: RunArtifacts, k: int) -> Path:
    path = art.root / f"fold{k}.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: source run {art.name} has no checkpoint for fold {k}",
                              f"train that fold of the source (python -m src.train ... --run-id {art.name} --folds {k}) or leave --folds {k} out")
    return path


# ----------------------------------------------------------------------------- train


def arm_fold_file(prep: Prepared, fold: np.ndarray, workdir: str | Path, name: str) -> Path:
    """The shared fold assignment as a fold file of this arm's data (label = bins of its first target, as src.folds checks).

    It lives at ``<workdir>/reports/regression/folds/<prefix>-<arm>.csv`` whatever ``--out`` is, as an absolute path: the
    path is a train setting of the run, so a second call (resuming, or another ``--out``) must name the same file."""
    ds = prep.ds
    df = pd.DataFrame({"id": ds.train["id"], "label": strata(prep.cfg, ds.train[ds.targets]), "group": ds.train["group"], "fold": fold})
    path = (Path(workdir) / REPORTS_DIR / "regression" / "folds" / f"{name}.csv").resolve()
    write_csv(path, df)
    return path


def train_arm(arm: Arm, cfg: WorkspaceConfig, fold: np.ndarray, args: argparse.Namespace, model: str, params: dict) -> None:
    """Every job of the arm through src.train.run_training (finished folds of an earlier call are kept)."""
    from ..train import resolve_train_config, run_training

    cfg_arm = with_targets(cfg, arm.targets)
    prep = prepare(cfg_arm, args.workdir)
    fold_file = arm_fold_file(prep, fold, args.workdir, arm.name)
    for job in arm.jobs:
        flags: dict = {"run_id": job.run_id, "fold_file": str(fold_file), "folds": job.folds}
        flags.update({k: v for k, v in (("epochs", args.epochs), ("device", args.device), ("init_checkpoint", job.init_checkpoint)) if v})
        if len(arm.targets) > 1 and get_spec(model).kind == "torch":  # a scikit-learn head has no loss to weight
            flags["task_weights"] = list(args.task_weights or [1.0] * len(arm.targets))
        tc, sources = resolve_train_config(cfg_arm, model, flags, params, None, args.workdir)
        log.info("regression study: %s arm, run %s (targets %s)", arm.kind, job.run_id, arm.targets)
        arm.roots.append(run_training(cfg_arm, tc, args.workdir, prep, sources=sources))


# ----------------------------------------------------------------------------- table


def fold_rows(arm: Arm) -> list[dict]:
    """Per fold and target: the best-epoch (selected) and last-epoch validation Spearman, and the fold's training time."""
    rows = []
    for root in arm.roots:
        status = read_json(root / "fold_status.json")
        for k in read_json(root / "metrics.json")["folds_done"]:
            fm = read_json(root / f"fold{k}_metrics.json")
            for t in arm.targets:
                rows.append({"arm": arm.kind, "run": root.name, "fold": int(k), "target": t, "spearman_best": fm["best"][f"spearman_{t}"],
                             "spearman_last_epoch": fm["history"][-1][f"val_spearman_{t}"], "best_epoch": fm["best"]["epoch"],
                             "seconds": status[str(k)].get("seconds", float("nan"))})
    return rows


def pooled_oof(arm: Arm, prep: Prepared, targets: list[str]) -> dict[str, float]:
    """Spearman of the OOF predictions pooled over folds (every clip once), per target and their mean."""
    idx = {t: j for j, t in enumerate(targets)}
    oof = np.full((len(prep.ds.train), len(targets)), np.nan)
    for root in arm.roots:
        names = read_json(root / "config.json")["targets"]
        for k in read_json(root / "metrics.json")["folds_done"]:
            p = np.load(root / f"fold{k}_preds.npz")
            for j, t in enumerate(names):
                oof[p["val_rows"], idx[t]] = p["val"][:, j]
    have = ~np.isnan(oof).any(1)
    m = regression_metrics(prep.ds.labels("train")[have], oof[have], targets)
    return {t: m[f"spearman_{t}"] for t in targets} | {"mean": m["spearman"]}


def summarise(arms: list[Arm], prep: Prepared, targets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per arm (the single-target runs together as 'one model per target'); and the long per-fold table."""
    per_fold = pd.DataFrame([r for arm in arms for r in fold_rows(arm)])
    groups = {"single": [a for a in arms if a.kind == "single"]} | {a.kind: [a] for a in arms if a.kind != "single"}
    label = {"single": "one model per target", "multitask": "one multitask model", "transfer": "multitask, fine-tuned from the source"}
    rows = []
    for kind, members in groups.items():
        merged = Arm(kind, kind, targets, [], [r for a in members for r in a.roots])
        d = per_fold[per_fold["arm"] == kind]
        best = d.pivot_table(index="fold", columns="target", values="spearman_best")[targets]
        last = d.pivot_table(index="fold", columns="target", values="spearman_last_epoch")[targets]
        pooled = pooled_oof(merged, prep, targets)
        row = {"arm": label[kind], "runs": ", ".join(sorted({r.name for r in merged.roots})), "folds": len(best)}
        row |= {t: pm(best[t]) for t in targets} | {"mean": pm(best.mean(1))}
        row |= {f"{t}, last epoch": pm(last[t]) for t in targets} | {"mean, last epoch": pm(last.mean(1))}
        row |= {f"pooled OOF {t}": f"{pooled[t]:.3f}" for t in targets} | {"pooled OOF mean": f"{pooled['mean']:.3f}"}
        row["train s"] = f"{d.drop_duplicates(['run', 'fold'])['seconds'].sum():.0f}"  # the folds' recorded training time
        rows.append(row)
    return pd.DataFrame(rows), per_fold


def pm(v: pd.Series) -> str:
    """``mean ± sd`` over folds (sd with ddof=1; one fold: no sd)."""
    v = v.dropna()
    if len(v) < 2:
        return f"{v.mean():.3f}" if len(v) else ""
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def notes(prep: Prepared, model: str, origin: str, source: Source | None, matched: bool) -> str:
    """The table's notes: data size, fold origin, how to read the columns, and what the transfer arm started from."""
    n = len(prep.ds.train)
    lines = [f"- {n} clips, model {model}; every arm uses one fold assignment: {origin}. Scores are per clip (segment predictions averaged).",
             "- Per-target columns: Spearman of the selected (best validation) epoch, mean ± sd over folds; `mean`: of the per-fold mean over "
             "targets. The epoch is selected on the same validation fold, so these are optimistic: the `last epoch` columns have no selection. "
             "`pooled OOF`: Spearman over all clips at once (each predicted by the model that did not train on it).",
             f"- Fold-level Spearman on ~{n // max(1, prep.cfg.folds.n_splits)} clips is very noisy (its sd is the honest error bar)."]
    if source is None:
        lines.append("- No transfer arm: pass --source-run (a classification run) or --init-checkpoint.")
    elif source.checkpoint is not None:
        lines.append(f"- Transfer: every fold starts from {source.checkpoint}; which clips it trained on is unknown to this study.")
    elif matched:
        lines.append(f"- Transfer: fold k starts from {source.run.name}/fold<k>.pt, trained on the other folds' clips with their "
                     f"{source.run.config.get('targets', ['label'])[0]!r} labels: it never saw fold k's clips. It did see the "
                     "training clips' labels; that is no leakage of these targets, but the source used the same audio.")
    else:
        lines.append(f"- Transfer: the source's folds hold other clips, so every fold starts from {source.run.name}'s first fold "
                     "checkpoint, which may have trained on (the labels of) some validation clips here: read that row with care.")
    return "\n".join(lines) + "\n"
