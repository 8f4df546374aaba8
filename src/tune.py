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
import ast
import dataclasses
import json
import logging
import os
import shutil
import signal
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from .artifacts import code_version, read_json, save_figure, setup_logging, write_csv, write_json
from .config import WorkspaceConfig, load_config
from .features import Prepared, prepare
from .folds import fold_path, load_folds
from .metrics import greater_is_better
from .models import get_spec
from .train import TrainConfig, build_train_config, fold_column, run_training

log = logging.getLogger(__name__)

STUDIES_DIR = "optuna_studies"
# TrainConfig fields a search space or --fix may not set: they identify the run, not the recipe.
_RESERVED = {"model", "run_id", "folds", "fold_file", "repeat", "model_params", "device", "metric"}


class TuneError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- search-space overrides


@dataclass
class SpaceOverrides:
    """User edits of a model's search space, without touching src/models.py.

    ``fixed[name] = value`` pins a suggested parameter (or sets any train/model parameter the space
    does not suggest, e.g. ``label_smoothing``); ``narrow[name]`` is ``(low, high)`` for a numeric
    parameter or a list of choices (for categorical or numeric parameters).
    """

    fixed: dict[str, Any] = field(default_factory=dict)
    narrow: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"fixed": self.fixed, "narrow": {k: list(v) for k, v in self.narrow.items()}}


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets, so ``hidden=[64,32],[128]`` gives two values."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def _key_value(pair: str, flag: str) -> tuple[str, str]:
    if "=" not in pair:
        raise TuneError(f"{flag} {pair!r}: expected KEY=VALUE")
    key, val = pair.split("=", 1)
    return key.strip(), val.strip()


def parse_narrow_value(text: str) -> Any:
    """``1e-4:1e-2`` -> (1e-4, 1e-2) range; ``adam,adamw`` -> list of choices."""
    if ":" in text and not text.startswith(("[", "(")):
        lo, hi = text.split(":", 1)
        return (_literal(lo), _literal(hi))
    return [_literal(v) for v in split_top_level(text)]


def parse_overrides(fix: list[str], narrow: list[str], space_file: str | None = None) -> SpaceOverrides:
    """Command-line ``--fix``/``--narrow`` pairs on top of an optional TOML/JSON file with [fix] and [narrow]."""
    ov = SpaceOverrides()
    if space_file:
        path = Path(space_file)
        if not path.is_file():
            raise TuneError(f"--space {path}: file not found")
        raw = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        unknown = sorted(set(raw) - {"fix", "narrow"})
        if unknown:
            raise TuneError(f"{path}: unknown section(s) {unknown}; use [fix] and [narrow]")
        ov.fixed.update(raw.get("fix", {}))
        for k, v in raw.get("narrow", {}).items():
            ov.narrow[k] = (v["low"], v["high"]) if isinstance(v, dict) else list(v)
    for pair in fix:
        k, v = _key_value(pair, "--fix")
        ov.fixed[k] = _literal(v)
    for pair in narrow:
        k, v = _key_value(pair, "--narrow")
        ov.narrow[k] = parse_narrow_value(v)
    bad = sorted(set(ov.fixed) & _RESERVED)
    if bad:
        raise TuneError(f"--fix {bad}: these identify the run, not the recipe; use --folds/--fold-file/--device/--metric")
    return ov


class ConstrainedTrial:
    """An ``optuna.Trial`` whose suggestions obey :class:`SpaceOverrides`.

    The model's space function calls ``suggest_*`` as usual. A fixed value inside the space is
    recorded under the space's own distribution (the study's ``PartialFixedSampler`` supplies it),
    so studies stay consistent when a user pins a parameter halfway; a fixed value outside the space
    is used as is (it shows in the trial's ``train_params``). A narrowed parameter gets the user's
    range or choices. Everything else is forwarded to the real trial.
    """

    def __init__(self, trial: optuna.Trial, ov: SpaceOverrides):
        self._trial, self._ov = trial, ov
        self.used: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def _narrowed(self, name: str, suggest: Any, *args: Any, **kw: Any) -> Any:
        self.used.add(name)
        try:
            return suggest(name, *args, **kw)
        except ValueError as exc:  # Optuna: a categorical's choices cannot change within a study
            raise TuneError(f"--narrow {name}: {exc} This study already sampled {name} differently; "
                            f"start a new one with --study NAME") from None

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> Any:
        if name in self._ov.fixed:
            self.used.add(name)
            v = self._ov.fixed[name]
            inside = isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
            return self._trial.suggest_float(name, low, high, step=step, log=log) if inside else v
        if name in self._ov.narrow:
            rng = self._ov.narrow[name]
            if isinstance(rng, list):
                return self._narrowed(name, self._trial.suggest_categorical, rng)
            return self._narrowed(name, self._trial.suggest_float, float(rng[0]), float(rng[1]), step=step, log=log)
        return self._trial.suggest_float(name, low, high, step=step, log=log)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> Any:
        if name in self._ov.fixed:
            self.used.add(name)
            v = self._ov.fixed[name]
            inside = isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
            return self._trial.suggest_int(name, low, high, step=step, log=log) if inside else v
        if name in self._ov.narrow:
            rng = self._ov.narrow[name]
            if isinstance(rng, list):
                return self._narrowed(name, self._trial.suggest_categorical, [int(v) for v in rng])
            return self._narrowed(name, self._trial.suggest_int, int(rng[0]), int(rng[1]), step=step, log=log)
        return self._trial.suggest_int(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        if name in self._ov.fixed:
            self.used.add(name)
            v = self._ov.fixed[name]
            return self._trial.suggest_categorical(name, choices) if v in list(choices) else v
        if name in self._ov.narrow:
            sub = self._ov.narrow[name]
            if not isinstance(sub, list):
                raise TuneError(f"--narrow {name}: categorical parameter (choices {list(choices)}); give a list: {name}=a,b")
            return self._narrowed(name, self._trial.suggest_categorical, sub)
        return self._trial.suggest_categorical(name, choices)


def parse_grid(pairs: list[str]) -> dict[str, list[Any]]:
    """``--grid optimizer=sgd,adam --grid batch_size=1,2,4`` -> {name: values} (scalars only: Optuna's grid)."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        k, v = _key_value(pair, "--grid")
        values = [_literal(x) for x in split_top_level(v)]
        bad = [x for x in values if not (x is None or isinstance(x, (bool, int, float, str)))]
        if bad or not values:
            raise TuneError(f"--grid {k}: values must be scalars (numbers, strings, booleans); got {v!r}")
        if k in _RESERVED:
            raise TuneError(f"--grid {k}: not a tunable parameter")
        grid[k] = values
    return grid


def apply_params(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """Flat parameters -> TrainConfig: TrainConfig fields are set, everything else goes to model_params."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - _RESERVED
    tc = dataclasses.replace(base, model_params=dict(base.model_params))
    for k, v in params.items():
        if k in fields:
            setattr(tc, k, v)
        else:
            tc.model_params[k] = v
    return tc


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

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's flat parameters: grid values, or the model's space under the user's overrides."""
        if self.grid is not None:
            params = {k: trial.suggest_categorical(k, v) for k, v in self.grid.items()}
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


def studies_dir(workdir: str | Path) -> Path:
    return Path(workdir) / STUDIES_DIR


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


def data_signature(workspace: dict[str, Any]) -> dict[str, Any]:
    """The parts of a workspace config that define the inputs (paths left out: moving the data is harmless)."""
    out = {s: dict(workspace.get(s, {})) for s in ("competition", "data", "audio", "features")}
    for sec in out.values():
        for k in [k for k in sec if k in ("root", "path") or k.endswith(("_dir", "_csv", "_path"))]:
            sec.pop(k)
    return out


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
    if data_signature(old["workspace"]) != data_signature(meta["workspace"]):
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


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


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


def export_best(study: optuna.Study, out: Path) -> dict[str, Any] | None:
    """Best trial + the study's provenance -> optuna_studies/<study>.json (what ``--params best`` reads)."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    meta = study.user_attrs
    doc = {
        "study": study.study_name, "model": meta.get("model"), "metric": meta.get("metric"),
        "direction": study.direction.name.lower(), "best_value": best.value, "best_trial": best.number,
        "params": best.params, "train_params": best.user_attrs.get("train_params", {}),
        "fold_scores": best.user_attrs.get("fold_scores", {}), "fold_metrics": best.user_attrs.get("fold_metrics", {}),
        "folds": meta.get("folds"), "fold_file": meta.get("fold_file"), "fold_sha256": meta.get("fold_sha256"),
        "workspace": meta.get("workspace"), "train_base": meta.get("train_base"),
        "code_version": best.user_attrs.get("code_version", meta.get("code_version")),
        "n_finished": finished(study), "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out, doc)
    return doc


def trial_table(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        mm = t.user_attrs.get("mean_metrics", {})
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     **{f"fold{k}": v for k, v in t.user_attrs.get("fold_scores", {}).items()},
                     "accuracy": mm.get("accuracy"), "macro_f1": mm.get("macro_f1"), "seconds": _elapsed(t),
                     "params": json.dumps(t.params, default=str)})
    return pd.DataFrame(rows)


def grid_table(study: optuna.Study, keys: list[str]) -> pd.DataFrame:
    """One row per grid point: accuracy, macro-F1 (means over folds) and wall time of the run."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        mm = t.user_attrs.get("mean_metrics", {})
        rows.append({**{k: t.params.get(k) for k in keys}, "accuracy": mm.get("accuracy"), "macro_f1": mm.get("macro_f1"),
                     "value": t.value, "seconds": t.user_attrs.get("seconds", _elapsed(t)), "trial": t.number})
    df = pd.DataFrame(rows, columns=[*keys, "accuracy", "macro_f1", "value", "seconds", "trial"])
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


# ----------------------------------------------------------------------------- --params best (used by src.train)


def load_params(spec: str, cfg: WorkspaceConfig, fold_sha256: str, model: str, workdir: str | Path = ".") -> dict[str, Any]:
    """Resolve ``--params best|PATH.json|PATH.db`` to the flat parameter dict of the best trial.

    ``best`` means ``<workdir>/optuna_studies/<model>.json`` (exported from ``<model>.db`` if only
    the study exists). Refuses parameters tuned for another model, on another fold file (hash) or
    on other data/audio/feature settings, because mixing them would silently change what the CV
    score means. Returns TrainConfig fields and model parameters in one dict (see ``apply_params``).
    """
    sdir = studies_dir(workdir)
    path = sdir / f"{model}.json" if spec == "best" else Path(spec)
    if path.suffix == ".db" or (spec == "best" and not path.is_file() and (sdir / f"{model}.db").is_file()):
        db = path if path.suffix == ".db" else sdir / f"{model}.db"
        study = optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db.resolve()}")
        path = db.with_suffix(".json")
        if export_best(study, path) is None:
            raise TuneError(f"{db}: study {db.stem!r} has no completed trial yet")
    if not path.is_file():
        raise TuneError(f"--params {spec}: {path} not found; tune first: python -m src.tune --config {cfg.path} --model {model}")
    doc = read_json(path)
    if doc.get("model") != model:
        raise TuneError(f"{path} holds parameters tuned for model {doc.get('model')!r}, not {model!r}")
    if doc.get("fold_sha256") != fold_sha256:
        raise TuneError(f"{path} was tuned on {doc.get('fold_file')} (sha256 {str(doc.get('fold_sha256'))[:12]}…), "
                        f"but the current fold file has sha256 {fold_sha256[:12]}…; re-tune on these folds or pass "
                        f"the matching --fold-file")
    old, new = data_signature(doc.get("workspace") or {}), data_signature(cfg.to_dict())
    if old != new:
        diff = sorted(f"{s}.{k}" for s in new for k in set(old.get(s, {})) | set(new[s]) if old.get(s, {}).get(k) != new[s].get(k))
        raise TuneError(f"{path} was tuned on other settings ({', '.join(diff)} differ from {cfg.path}); re-tune")
    if doc.get("code_version") != code_version():
        log.warning("%s was tuned at code version %s; now %s", path, doc.get("code_version"), code_version())
    return dict(doc["train_params"])


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Fold-aware Optuna tuning; studies in optuna_studies/ (see README: Tuning).")
    ap.add_argument("--config", help="workspace TOML (not needed with --show)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--study", help="study name (default: the model name; with --grid: <model>-grid-<keys>)")
    ap.add_argument("--storage", help="RDB URL, e.g. postgresql://user:pw@host/db (default: sqlite optuna_studies/<study>.db)")
    ap.add_argument("--show", action="store_true", help="print the study (best, trials, importances), save plots, exit")
    ap.add_argument("--trials", type=int, help="target number of finished (complete+pruned) trials in the study "
                    "(default 20; with --grid: the grid size)")
    ap.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    ap.add_argument("--folds", type=int, nargs="+", help="folds to evaluate each trial on (default: all)")
    ap.add_argument("--fold-file", dest="fold_file")
    ap.add_argument("--epochs", type=int, help="per-trial epoch cap per fold (default: the config's [train] epochs)")
    ap.add_argument("--patience", type=int)
    ap.add_argument("--seed", type=int, help="training seed (identical in every trial)")
    ap.add_argument("--metric")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
    ap.add_argument("--sampler-seed", dest="sampler_seed", type=int, default=0)
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="grid study over these values (others at defaults)")
    ap.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE", help="pin a parameter, e.g. --fix optimizer=adamw")
    ap.add_argument("--narrow", action="append", default=[], metavar="KEY=LO:HI|A,B", help="narrow a range or the choices")
    ap.add_argument("--space", help="TOML/JSON file with [fix] and [narrow] tables")
    ap.add_argument("--pruner", choices=["median", "hyperband", "none"], help="epoch-level pruner (default median; none with --grid)")
    ap.add_argument("--fold-pruner", dest="fold_pruner", choices=["wilcoxon", "none"], help="fold-level pruner (default wilcoxon; none with --grid)")
    ap.add_argument("--wilcoxon-p", dest="wilcoxon_p", type=float, default=0.3)
    ap.add_argument("--pruner-startup", dest="pruner_startup", type=int, default=5, help="trials before the median pruner acts")
    ap.add_argument("--pruner-warmup", dest="pruner_warmup", type=int, default=3, help="epochs of the first fold never pruned")
    ap.add_argument("--heartbeat", type=int, default=10, help="seconds between trial heartbeats")
    ap.add_argument("--grace", type=int, help="seconds without heartbeat before a trial counts as dead (default 2x heartbeat)")
    ap.add_argument("--max-retry", dest="max_retry", type=int, default=2)
    ap.add_argument("--keep-runs", dest="keep_runs", action="store_true", help="keep every trial's runs/tune-<study>-t<n>/ folder")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("--verbose", action="store_true", help="log every epoch")
    return ap


def default_study_name(model: str, grid: dict | None) -> str:
    return f"{model}-grid-{'-'.join(grid)}" if grid else model


def tune(args: argparse.Namespace) -> optuna.Study:
    """Create or continue the study and run trials until --trials finished ones or --timeout."""
    cfg = load_config(args.config)
    try:
        get_spec(args.model)
    except KeyError as exc:
        raise TuneError(str(exc.args[0])) from None
    grid = parse_grid(args.grid) or None
    ov = parse_overrides(args.fix, args.narrow, args.space)
    name = args.study or default_study_name(args.model, grid)
    workdir, sdir = Path(args.workdir), studies_dir(args.workdir)
    prep = prepare(cfg, workdir)  # once: every trial reads these cached features
    ns = argparse.Namespace(model=args.model, param=[], epochs=args.epochs, patience=args.patience, seed=args.seed,
                            device=args.device, metric=args.metric, fold_file=args.fold_file)
    base = build_train_config(cfg, ns)
    base.metric = base.metric or cfg.competition.metric
    ffile = Path(args.fold_file) if args.fold_file else fold_path(cfg, workdir)
    fdf, fsha = load_folds(cfg, prep.ds.train["id"], workdir, ffile)
    base.fold_file = str(ffile.resolve())
    folds = list(args.folds) if args.folds else sorted(int(f) for f in set(fdf[fold_column(base.repeat)]))
    storage = open_storage(args.storage, sdir / f"{name}.db", args.heartbeat, args.grace, args.max_retry)
    seed = args.sampler_seed if args.storage is None else args.sampler_seed + os.getpid()  # distinct workers
    pruner_kind = args.pruner or ("none" if grid else "median")
    study = optuna.create_study(
        storage=storage, study_name=name, load_if_exists=True,
        direction="maximize" if greater_is_better(base.metric) else "minimize",
        sampler=make_sampler(args.sampler, seed, grid, ov.fixed),
        pruner=make_pruner(pruner_kind, args.pruner_startup, args.pruner_warmup, base.epochs * len(folds)))
    check_or_record_meta(study, study_meta(cfg, base, ffile, fsha, folds, ov, grid))
    n_req = requeue_interrupted(study, args.max_retry)
    if n_req:
        log.info("re-queued %d interrupted trial(s)", n_req)
    fold_kind = args.fold_pruner or ("none" if grid else "wilcoxon")
    objective = Objective(cfg, prep, base, folds, workdir, name, ov, grid,
                          FoldWilcoxon(args.wilcoxon_p) if fold_kind == "wilcoxon" else None, args.keep_runs)
    target = args.trials or (int(np.prod([len(v) for v in grid.values()])) if grid else 20)
    run_study(study, objective, target, args.timeout, sdir / f"{name}.json")
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
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[report, stop], gc_after_trial=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    export_best(study, export)


def _sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler stopping the worker) ends the trial like Ctrl-C: recorded, re-queued next time."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress line replaces Optuna's
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # Wilcoxon, matplotlib plots
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("src.train").setLevel(logging.WARNING)
    try:
        if args.show:
            name = args.study or default_study_name(args.model, parse_grid(args.grid) or None)
            sdir = studies_dir(args.workdir)
            db = sdir / f"{name}.db"
            if args.storage is None and not db.is_file():
                raise TuneError(f"no study at {db}: run python -m src.tune --config CONFIG --model {args.model} first")
            study = optuna.load_study(study_name=name, storage=args.storage or f"sqlite:///{db.resolve()}")
            print(show(study, sdir, args.plots))
            return
        if not args.config:
            raise TuneError("--config is required to tune (only --show works without it)")
        study = tune(args)
    except TuneError as exc:
        raise SystemExit(f"error: {exc}") from None
    sdir = studies_dir(args.workdir)
    grid = parse_grid(args.grid)
    if grid:
        table = grid_table(study, list(grid))
        write_csv(sdir / f"{study.study_name}_table.csv", table)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"table: {sdir / f'{study.study_name}_table.csv'}")
    else:
        print(show(study, sdir, args.plots))


if __name__ == "__main__":
    main()
