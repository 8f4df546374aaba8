"""Fold-aware hyper-parameter tuning with Optuna.

``python -m src.tune --config C --model mlp --trials 40 [--timeout 3600] [--folds 0 1 2 3 4]``
``python -m src.tune --model mlp --show``
``python -m src.tune --config C --model mlp_seed --grid optimizer=sgd,adam,adamw,adagrad,rmsprop``

Why it is built this way:

* **Objective = mean validation metric over the chosen folds of the shared fold file**, so a
  tuned score is comparable to every other run on the same folds. Per-fold scores are stored on
  each trial (user attrs ``fold_scores``/``fold_metrics``) so comparison tools can test tuned
  models fold by fold.
* **Two pruning levels.** Inside a fold, the per-epoch validation metric is reported at step
  ``fold_position * epoch_cap + epoch`` (same step = same fold and epoch in every trial) to a
  median or Hyperband pruner. Across folds, after each finished fold, Optuna's
  ``WilcoxonPruner`` compares the trial's per-fold scores with the best trial's on the same
  folds, so a clearly worse trial stops after two folds instead of five.
* **Storage.** SQLite ``optuna_studies/<study>.db`` by default (re-running the command continues
  the study), any RDB URL (``postgresql://...``) for several workers. Heartbeats mark a trial
  whose process died as failed and Optuna's ``RetryHeartbeatStaleTrialCallback`` re-queues it with
  the same parameters; a trial stopped by Ctrl-C/SIGTERM is re-queued at the next start.
* **Features are computed once** per process (``src.features.prepare``) and shared by all trials.
* **Reproducibility.** Seeded sampler; the study records the workspace config, the fold file and
  its hash, the base train config and the code version. ``load_params`` refuses parameters tuned
  on other folds, data or another model.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from . import cli
from .artifacts import code_version, read_json, save_figure, setup_logging, write_csv
from .config import WorkspaceConfig, load_config, signature_diff
from .errors import TuneError
from .features import Prepared, prepare
from .folds import fold_numbers, fold_path, load_folds_for
from .metrics import greater_is_better
from .models import get_spec
from .runs import fold_column
from .settings import TrainConfig, add_train_flags, flag_values
from .studies import export_best, finished, studies_dir
from .train import check_train_config, resolve_train_config, run_training
from .tune_space import ConstrainedTrial, SpaceOverrides, apply_params, parse_grid, parse_overrides

log = logging.getLogger(__name__)



# ----------------------------------------------------------------------------- fold-aware objective


class FoldWilcoxon:
    """Fold-level pruning: Optuna's WilcoxonPruner on per-fold scores against the best trial.

    The study's own pruner sees per-epoch values (epoch-level pruning); this one sees the per-fold
    scores stored in user attrs, presented to ``WilcoxonPruner.prune`` as the intermediate values of
    the current and the best trial (fold number = instance id, as its documentation asks).
    One-sided Wilcoxon p-values cannot go below 0.25 / 0.125 / 0.0625 / 0.031 with 2 / 3 / 4 / 5
    paired folds: ``p_threshold`` 0.3 prunes after two folds that are both worse than the best trial's.
    """

    def __init__(self, p_threshold: float = 0.3, n_startup_steps: int = 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.pruner = optuna.pruners.WilcoxonPruner(p_threshold=p_threshold, n_startup_steps=n_startup_steps)

    def should_prune(self, study: optuna.Study, number: int, scores: dict[int, float]) -> bool:
        try:
            best = study.best_trial
        except ValueError:  # no finished trial yet
            return False
        best_scores = {int(k): float(v) for k, v in best.user_attrs.get("fold_scores", {}).items()}
        if not best_scores or best.number == number:
            return False
        current = SimpleNamespace(number=number, intermediate_values=dict(scores))
        view = SimpleNamespace(best_trial=SimpleNamespace(number=best.number, intermediate_values=best_scores),
                               direction=study.direction)
        return self.pruner.prune(view, current)  # type: ignore[arg-type]


@dataclass
class Objective:
    """One trial = one ``run_training`` over the chosen folds with the trial's parameters."""

    cfg: WorkspaceConfig
    prep: Prepared
    base: TrainConfig
    folds: list[int]
    workdir: Path
    study_name: str
    overrides: SpaceOverrides
    grid: dict[str, list[Any]] | None = None
    fold_pruner: FoldWilcoxon | None = None
    keep_runs: bool = False
    arms: dict[str, dict[str, Any]] | None = None  # named grid points: grid key "arm" -> the parameters it stands for
    watch: Callable[[optuna.Trial], contextlib.AbstractContextManager] | None = None  # a context around each trial's training

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's flat parameters: grid values, or the model's space under the user's overrides."""
        if self.grid is not None:
            params = {k: trial.suggest_categorical(k, v) for k, v in self.grid.items()}
            if self.arms is not None:  # a controlled study (src.study): the arm's name stands for its parameters
                params = {**self.arms[params.pop("arm")], **params}
            used: set[str] = set(params)
        else:
            space = get_spec(self.base.model).space
            if space is None:
                raise TuneError(f"model {self.base.model!r} has no search space: add space= to its register() in "
                                f"src/models.py, or use --grid")
            ct = ConstrainedTrial(trial, self.overrides)
            params = space(ct)
            used = ct.used
        params.update({k: v for k, v in self.overrides.fixed.items() if k not in used})
        return params

    def __call__(self, trial: optuna.Trial) -> float:
        params = self.suggest(trial)
        tc = apply_params(self.base, params)
        tc.folds, tc.run_id = list(self.folds), f"tune-{self.study_name}-t{trial.number}"
        for key, val in {"train_params": params, "fold_scores": {}, "fold_metrics": {}, "interrupted": False,
                         "pruned_at": None, "run_id": tc.run_id, "code_version": code_version(),
                         "worker": f"{os.uname().nodename}:{os.getpid()}"}.items():
            trial.set_user_attr(key, val)  # reset: a retried trial inherits the failed one's attrs
        self._drop_retried_run(trial)
        scores: dict[int, float] = {}
        position = {k: i for i, k in enumerate(self.folds)}

        def on_epoch(fold: int, epoch: int, value: float) -> None:
            trial.report(float(value), position[fold] * tc.epochs + epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_at", {"fold": fold, "epoch": epoch, "by": "epoch"})
                raise optuna.TrialPruned(f"fold {fold} epoch {epoch}: {tc.metric or 'metric'} {value:.4f}")

        def on_fold(fold: int, best: dict) -> None:
            scores[fold] = float(best[tc.metric])
            trial.set_user_attr("fold_scores", {str(k): v for k, v in scores.items()})
            metrics = dict(trial.user_attrs.get("fold_metrics", {}))
            metrics[str(fold)] = {k: float(v) for k, v in best.items()}
            trial.set_user_attr("fold_metrics", metrics)
            if self.fold_pruner is not None and len(scores) < len(self.folds) \
                    and self.fold_pruner.should_prune(trial.study, trial.number, scores):
                trial.set_user_attr("pruned_at", {"fold": fold, "epoch": None, "by": "fold"})
                raise optuna.TrialPruned(f"after fold {fold}: per-fold scores worse than the best trial's")

        tc.metric = tc.metric or self.cfg.competition.metric
        t0 = time.perf_counter()
        try:
            with self.watch(trial) if self.watch is not None else contextlib.nullcontext():
                run_dir = run_training(self.cfg, tc, self.workdir, prep=self.prep, on_epoch=on_epoch, on_fold=on_fold)
            trial.set_user_attr("mean_metrics", read_json(run_dir / "metrics.json")["mean"])
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # re-queued at the next start (see requeue_interrupted)
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
            if not self.keep_runs:
                shutil.rmtree(self.workdir / "runs" / tc.run_id, ignore_errors=True)
        return float(np.mean([scores[k] for k in self.folds]))

    def _drop_retried_run(self, trial: optuna.Trial) -> None:
        """Every trial trains from scratch: remove a stale folder of the same name (a study deleted and
        re-created) and, for a retry of a killed trial, the dead trial's half-written run folder."""
        runs = self.workdir / "runs"
        shutil.rmtree(runs / f"tune-{self.study_name}-t{trial.number}", ignore_errors=True)
        me = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
        failed = me.system_attrs.get("failed_trial") if me is not None else None
        if failed is not None and not self.keep_runs:
            shutil.rmtree(runs / f"tune-{self.study_name}-t{failed}", ignore_errors=True)


# ----------------------------------------------------------------------------- storage and study


def rdb_url(url: str) -> str:
    """``postgresql://`` names psycopg2 explicitly where only it is installed (SQLAlchemy 2.1 defaults to psycopg 3)."""
    if url.startswith("postgresql://") and _has("psycopg2") and not _has("psycopg"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def open_storage(url: str | None, db_path: Path, heartbeat: int, grace: int | None, max_retry: int) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats, so trials of dead processes are failed and retried, never lost."""
    kwargs: dict[str, Any] = {}
    if url is None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{db_path.resolve()}"
        kwargs = {"connect_args": {"timeout": 120}}  # several local workers share the file
    elif url.startswith("postgresql"):
        kwargs = {"pool_pre_ping": True}
        url = rdb_url(url)
    import sqlalchemy.exc

    for attempt in range(5):  # workers starting together on an empty database race to create its tables
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=grace,
                heartbeat_stale_trial_callback=_retry_callback(max_retry))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if attempt == 4:
                raise TuneError(f"cannot open storage {url.split('@')[-1]}: {exc}") from None
            log.warning("storage not ready (%s); retrying", type(exc).__name__)
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _retry_callback(max_retry: int) -> Any:
    """Optuna's re-queue-with-the-same-parameters callback (``failed_trial`` system attr = the dead trial)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def requeue_interrupted(study: optuna.Study, max_retry: int) -> int:
    """Re-queue trials that failed because their worker was interrupted (Ctrl-C, SIGTERM) and not yet retried."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    cb = _retry_callback(max_retry)
    n = 0
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            cb(study, t)
            n += 1
    return n


def study_meta(cfg: WorkspaceConfig, base: TrainConfig, fold_file: Path, fold_sha: str, folds: list[int],
               ov: SpaceOverrides, grid: dict | None) -> dict[str, Any]:
    return {
        "model": base.model, "metric": base.metric, "folds": folds, "fold_file": str(fold_file),
        "fold_sha256": fold_sha, "workspace": cfg.to_dict(), "config_path": str(cfg.path),
        "train_base": dataclasses.asdict(base), "overrides": ov.to_dict(), "grid": grid,
        "code_version": code_version(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def check_or_record_meta(study: optuna.Study, meta: dict[str, Any]) -> None:
    """A study continues only on the same model, metric, folds and data; otherwise name a new --study."""
    old = study.user_attrs
    if "fold_sha256" not in old:
        for k, v in meta.items():
            study.set_user_attr(k, v)
        return
    for key in ("model", "metric", "fold_sha256", "folds"):
        if old.get(key) != meta[key]:
            raise TuneError(f"study {study.study_name!r} was created with {key}={old.get(key)!r}, now {meta[key]!r}; "
                            f"continue it with the same settings or pick a new --study NAME")
    if signature_diff(old["workspace"], meta["workspace"]):
        raise TuneError(f"study {study.study_name!r} was created on other data/audio/feature settings "
                        f"({old['config_path']}); pick a new --study NAME")
    if old.get("code_version") != meta["code_version"]:
        log.warning("study %s was started at code version %s, continuing at %s", study.study_name,
                    old.get("code_version"), meta["code_version"])


def make_sampler(kind: str, seed: int | None, grid: dict | None, fixed: dict[str, Any] | None = None) -> optuna.samplers.BaseSampler:
    """Seeded TPE (default) or random sampler, with ``--fix`` values supplied by a PartialFixedSampler; or a grid."""
    if grid is not None:
        return optuna.samplers.GridSampler(grid, seed=seed)
    if kind == "random":
        base: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed)
    elif kind == "tpe":
        base = optuna.samplers.TPESampler(seed=seed)
    else:
        raise TuneError(f"--sampler {kind}: the grid sampler is chosen with --grid KEY=V1,V2,...")
    scalars = {k: v for k, v in (fixed or {}).items() if v is None or isinstance(v, (bool, int, float, str))}
    if not scalars:
        return base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.PartialFixedSampler(scalars, base)


def make_pruner(kind: str, startup: int, warmup: int, max_resource: int) -> optuna.pruners.BasePruner:
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=max_resource)
    return optuna.pruners.NopPruner()


# ----------------------------------------------------------------------------- reporting


def _elapsed(t: FrozenTrial) -> float:
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return float("nan")


def progress_line(t: FrozenTrial) -> str:
    scores = " ".join(f"{float(v):.4f}" for v in t.user_attrs.get("fold_scores", {}).values())
    where = t.user_attrs.get("pruned_at") or {}
    state = t.state.name + (f" ({where.get('by')}-level, fold {where.get('fold')}" +
                            (f" epoch {where['epoch']})" if where.get("epoch") else ")") if where else "")
    value = "-" if t.value is None else f"{t.value:.4f}"
    retry = f" retry of #{t.system_attrs['failed_trial']}" if "failed_trial" in t.system_attrs else ""
    return f"trial {t.number} {state}{retry}: value {value} folds [{scores}] {_elapsed(t):.1f}s params {t.params}"





TABLE_METRICS = {"classification": ("accuracy", "macro_f1"), "multilabel": ("roc_auc", "cmap", "lwlrap", "macro_f1"),
                 "regression": ("spearman", "rmse")}


def table_metrics(study: optuna.Study) -> tuple[str, ...]:
    """The mean-over-folds metrics shown per trial: those of the task the trials were scored on (a multi-label
    study has no accuracy), recognised from the first trial that recorded its mean metrics."""
    for t in study.get_trials(deepcopy=False):
        mm = t.user_attrs.get("mean_metrics")
        if mm:
            return next((names for names in TABLE_METRICS.values() if names[0] in mm), TABLE_METRICS["classification"])
    return TABLE_METRICS["classification"]


def trial_table(study: optuna.Study) -> pd.DataFrame:
    rows, names = [], table_metrics(study)
    for t in study.get_trials(deepcopy=False):
        mm = t.user_attrs.get("mean_metrics", {})
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     **{f"fold{k}": v for k, v in t.user_attrs.get("fold_scores", {}).items()},
                     **{n: mm.get(n) for n in names}, "seconds": _elapsed(t), "params": json.dumps(t.params, default=str)})
    return pd.DataFrame(rows)


def grid_table(study: optuna.Study, keys: list[str]) -> pd.DataFrame:
    """One row per grid point: the task's summary metrics (accuracy, macro-F1 for classification; means over folds)
    and wall time of the run."""
    rows, names = [], table_metrics(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        mm = t.user_attrs.get("mean_metrics", {})
        rows.append({**{k: t.params.get(k) for k in keys}, **{n: mm.get(n) for n in names},
                     "value": t.value, "seconds": t.user_attrs.get("seconds", _elapsed(t)), "trial": t.number})
    df = pd.DataFrame(rows, columns=[*keys, *names, "value", "seconds", "trial"])
    return df.sort_values(keys, kind="stable").reset_index(drop=True) if len(df) else df


def importances(study: optuna.Study) -> dict[str, float]:
    try:
        return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:  # too few finished trials, or a single value per parameter
        log.info("parameter importances not available yet: %s", exc)
        return {}


def save_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optimisation history, parameter importances and slice plots as PNG next to the study."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    made = []
    for name, fn in (("history", ovm.plot_optimization_history), ("importances", ovm.plot_param_importances),
                     ("slice", ovm.plot_slice)):
        path = out_dir / f"{study.study_name}_{name}.png"
        try:
            ax = fn(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("%s plot skipped: %s", name, exc)
            continue
        save_figure(path, np.ravel(ax)[0].figure)
        made.append(path)
    return made


def show(study: optuna.Study, out_dir: Path, plots: bool = True) -> str:
    """Text summary: best value and params, the trial table, parameter importances."""
    lines = [f"study {study.study_name}: {finished(study)} finished trial(s), direction {study.direction.name.lower()}"]
    try:
        best = study.best_trial
        lines += [f"best value {best.value:.4f} (trial {best.number})", f"best params {best.params}",
                  f"best train params {best.user_attrs.get('train_params')}"]
    except ValueError:
        lines.append("no completed trial yet")
    with pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_rows", 500):
        lines.append(trial_table(study).to_string(index=False))
    imp = importances(study)
    if imp:
        lines.append("parameter importances: " + ", ".join(f"{k} {v:.3f}" for k, v in imp.items()))
    if plots:
        lines += [f"plot: {p}" for p in save_plots(study, out_dir)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser("tune", "Fold-aware Optuna tuning; studies in optuna_studies/ (see README: Tuning). Every train setting "
                            "below is the base of every trial; the model's search space (or --grid) varies the rest.")
    cli.add_common(ap)
    ap.add_argument("--model", required=True, help="registered model name or any timm model name")
    ap.add_argument("--study", help="study name (default: the model name; with --grid: <model>-grid-<keys>)")
    ap.add_argument("--storage", help="RDB URL, e.g. postgresql://user:pw@host/db (default: sqlite optuna_studies/<study>.db)")
    ap.add_argument("--show", action="store_true", help="print the study (best, trials, importances), save plots, exit")
    ap.add_argument("--trials", type=int, help="target number of finished (complete+pruned) trials in the study "
                    "(default 20; with --grid: the grid size)")
    ap.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    ap.add_argument("--sampler", choices=["tpe", "random"], default="tpe", help="sampler (--grid chooses the grid sampler)")
    ap.add_argument("--sampler-seed", dest="sampler_seed", type=int, default=0, help="sampler seed (offset by the trials already run)")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="grid study over these values (others at defaults)")
    ap.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE", help="pin a parameter, e.g. --fix optimizer=adamw")
    ap.add_argument("--narrow", action="append", default=[], metavar="KEY=LO:HI|A,B", help="narrow a range or the choices")
    ap.add_argument("--space", help="TOML/JSON file with [fix] and [narrow] tables")
    ap.add_argument("--pruner", choices=["median", "hyperband", "none"], help="epoch-level pruner (default median; none with --grid)")
    ap.add_argument("--fold-pruner", dest="fold_pruner", choices=["wilcoxon", "none"],
                    help="fold-level pruner (default wilcoxon; none with --grid)")
    ap.add_argument("--wilcoxon-p", dest="wilcoxon_p", type=float, default=0.3, help="fold pruner p threshold")
    ap.add_argument("--pruner-startup", dest="pruner_startup", type=int, default=5, help="trials before the median pruner acts")
    ap.add_argument("--pruner-warmup", dest="pruner_warmup", type=int, default=3, help="epochs of the first fold never pruned")
    ap.add_argument("--heartbeat", type=int, default=10, help="seconds between trial heartbeats")
    ap.add_argument("--grace", type=int, help="seconds without heartbeat before a trial counts as dead (default 2x heartbeat)")
    ap.add_argument("--max-retry", dest="max_retry", type=int, default=2, help="retries of a trial whose worker died")
    ap.add_argument("--keep-runs", dest="keep_runs", action="store_true", help="keep every trial's runs/tune-<study>-t<n>/ folder")
    ap.add_argument("--no-plots", dest="study_plots", action="store_false", help="no PNG plots of the study")
    ap.add_argument("--verbose", action="store_true", help="log every epoch")
    add_train_flags(ap, skip={"model", "model_params", "plots", "run_id"})
    return ap


def default_study_name(model: str, grid: dict | None) -> str:
    return f"{model}-grid-{'-'.join(grid)}" if grid else model


@dataclass
class StudyOptions:
    """How a study runs (storage, budget, sampler, pruners, worker health), apart from what each trial trains."""

    storage: str | None = None
    trials: int | None = None
    timeout: float | None = None
    sampler: str = "tpe"
    sampler_seed: int = 0
    pruner: str | None = None
    fold_pruner: str | None = None
    wilcoxon_p: float = 0.3
    pruner_startup: int = 5
    pruner_warmup: int = 3
    heartbeat: int = 10
    grace: int | None = None
    max_retry: int = 2
    keep_runs: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StudyOptions:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def tune(args: argparse.Namespace) -> optuna.Study:
    """The command line's study: train settings from the flags, then :func:`run_tuning`."""
    cfg = load_config(args.config, args.workdir)
    grid = parse_grid(args.grid) or None
    ov = parse_overrides(args.fix, args.narrow, args.space)
    name = args.study or default_study_name(args.model, grid)
    workdir = Path(args.workdir)
    base, sources = resolve_train_config(cfg, args.model, {**flag_values(args), "plots": False}, workdir=workdir)
    check_train_config(cfg, base, sources)
    return run_tuning(cfg, base, workdir, name, grid, ov, StudyOptions.from_args(args))


def run_tuning(cfg: WorkspaceConfig, base: TrainConfig, workdir: Path, name: str, grid: dict[str, list[Any]] | None,
               ov: SpaceOverrides, opts: StudyOptions, prep: Prepared | None = None,
               arms: dict[str, dict[str, Any]] | None = None,
               watch: Callable[[optuna.Trial], contextlib.AbstractContextManager] | None = None) -> optuna.Study:
    """Create or continue study ``name`` and run trials until ``opts.trials`` finished ones or ``opts.timeout``.

    The one home of a study's run, shared by ``src.tune`` and the controlled studies of ``src.study``
    (which name their grid points: ``arms`` maps the grid key ``arm`` to parameters, and ``watch(trial)``
    is a context around each trial's training).
    """
    sdir = studies_dir(workdir)
    prep = prep or prepare(cfg, workdir)  # once: every trial reads these cached features
    ffile = Path(base.fold_file) if base.fold_file else fold_path(cfg, workdir)
    fdf, fsha = load_folds_for(prep, workdir, ffile)
    base.fold_file = str(ffile.resolve())
    folds = list(base.folds) if base.folds else fold_numbers(fdf, fold_column(base.repeat))
    study = open_study(opts, name, sdir, grid, ov, base, len(folds))
    check_or_record_meta(study, study_meta(cfg, base, ffile, fsha, folds, ov, grid))
    n_req = requeue_interrupted(study, opts.max_retry)
    if n_req:
        log.info("re-queued %d interrupted trial(s)", n_req)
    fold_kind = opts.fold_pruner or ("none" if grid else "wilcoxon")
    objective = Objective(cfg, prep, base, folds, workdir, name, ov, grid,
                          FoldWilcoxon(opts.wilcoxon_p) if fold_kind == "wilcoxon" else None, opts.keep_runs, arms, watch)
    target = opts.trials or (int(np.prod([len(v) for v in grid.values()])) if grid else 20)
    run_study(study, objective, target, opts.timeout, sdir / f"{name}.json")
    return study


def open_study(opts: StudyOptions, name: str, sdir: Path, grid: dict | None, ov: SpaceOverrides, base: TrainConfig,
               n_folds: int) -> optuna.Study:
    """Create or load the study. The sampler seed is offset by the trials already in it, so a resumed study
    does not replay the configurations it has tried (a seeded sampler restarted the same way would)."""
    storage = open_storage(opts.storage, sdir / f"{name}.db", opts.heartbeat, opts.grace, opts.max_retry)
    seed = opts.sampler_seed if opts.storage is None else opts.sampler_seed + os.getpid()  # distinct workers
    pruner_kind = opts.pruner or ("none" if grid else "median")
    study = optuna.create_study(
        storage=storage, study_name=name, load_if_exists=True,
        direction="maximize" if greater_is_better(base.metric) else "minimize",
        sampler=make_sampler(opts.sampler, seed, grid, ov.fixed),
        pruner=make_pruner(pruner_kind, opts.pruner_startup, opts.pruner_warmup, base.epochs * n_folds))
    n_old = len(study.get_trials(deepcopy=False))
    if n_old and not grid:
        study.sampler = make_sampler(opts.sampler, seed + n_old, grid, ov.fixed)
    return study


def run_study(study: optuna.Study, objective: Objective, target: int, timeout: float | None, export: Path) -> None:
    remaining = target - finished(study)
    if remaining <= 0:
        log.info("study %s already has %d finished trial(s) (--trials %d): nothing to run", study.study_name, finished(study), target)
        export_best(study, export)
        return
    log.info("study %s: %d finished, running up to %d more (folds %s, epoch cap %d)", study.study_name,
             finished(study), remaining, objective.folds, objective.base.epochs)

    def report(st: optuna.Study, t: FrozenTrial) -> None:
        log.info(progress_line(t))
        if t.state == TrialState.COMPLETE:
            export_best(st, export)

    stop = optuna.study.MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED))
    with cli.sigterm_as_interrupt():  # a stopped worker's trial is recorded, then re-queued next time
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[report, stop], gc_after_trial=False)
    export_best(study, export)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress line replaces Optuna's
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # Wilcoxon, matplotlib plots
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("src.train").setLevel(logging.WARNING)
    sdir = studies_dir(args.workdir)
    if args.show:
        name = args.study or default_study_name(args.model, parse_grid(args.grid) or None)
        db = sdir / f"{name}.db"
        if args.storage is None and not db.is_file():
            raise TuneError(f"no study at {db}", f"run python -m src.tune --config CONFIG --model {args.model} first")
        study = optuna.load_study(study_name=name, storage=args.storage or f"sqlite:///{db.resolve()}")
        print(show(study, sdir, args.study_plots))
        return
    study = tune(args)
    grid = parse_grid(args.grid)
    if grid:
        table = grid_table(study, list(grid))
        write_csv(sdir / f"{study.study_name}_table.csv", table)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"table: {sdir / f'{study.study_name}_table.csv'}")
    else:
        print(show(study, sdir, args.study_plots))


if __name__ == "__main__":
    cli.run_command(main)
