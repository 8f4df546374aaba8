"""Controlled studies: one switch varied; initial weights, data order, folds and epochs held equal.

``python -m src.study optimizers --config configs/music4_mfcc.toml --model mlp_seed --epochs 20 [--arms adam,sgd] [--check-repeat]``

Studies and their default arms (the course assignments' values; ``--arms`` picks others):

* ``optimizers``      sgd, adam, adamw, adagrad, rmsprop          (train setting ``optimizer``)
* ``activations``     relu, gelu, silu, elu, tanh, sigmoid        (model parameter ``activation``)
* ``schedulers``      none, step, cosine, onecycle, plateau       (train setting ``scheduler``)
* ``batchnorm``       off, on                                     (model parameter ``batch_norm``)
* ``regularisation``  none, wd, dropout, both                     (``weight_decay`` = --reg-weight-decay, model ``dropout`` = --reg-dropout)
* ``batch_size``      16, 32, 64, 128 (with seconds per epoch)    (train setting ``batch_size``)
* ``patience``        off, 3, 5, 10 (early stopping)               (train setting ``patience``; off = never stops)

Each arm is one point of ``src.tune``'s grid (a GridSampler study whose key ``arm`` names the arm's
parameters) and so one ``src.train.run_training`` over the chosen folds: no second loop or grid.
Fold k of every arm starts from seed + k: the same initial weights where the architecture is the
same, and the same data order. A probe records both as training actually runs (columns ``init_sha``
and ``order_sha``: a hash of each fold's initial state dict and of the inputs of its first epoch);
a mismatch where they must agree is an error. ``--check-repeat [ARM]`` re-runs one arm and compares
its per-epoch losses for exact equality (expected on CPU, where training is deterministic).

Writes ``reports/<study>/``: ``table.csv`` + ``table.md`` (accuracy and macro-F1 mean ± sd over folds at
clip level, wall time, epochs to converge, stopped epoch, seconds per epoch) and ``curves.png`` (train
loss, validation loss and validation metric per epoch, one line per arm, mean over folds). The same
command again continues the study (finished arms are kept, see runs/tune-study-*); ``--fresh`` starts over.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import shutil
import time
import typing
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.trial import TrialState

from .. import cli
from ..artifacts import file_sha256, save_figure, stable_hash
from ..config import WorkspaceConfig, data_signature, load_config
from ..errors import ConfigError, RunError
from ..features import Prepared, prepare
from ..folds import fold_path
from ..inference import Wrapped, resolve_device
from ..models import ACTIVATIONS, REGISTRY, ModelSpec, get_spec
from ..runs import RunArtifacts, load_run
from ..settings import FIELDS, TrainConfig, add_train_flags, flag_values, route_params
from ..studies import studies_dir
from ..train import check_train_config, resolve_train_config
from ..tune import StudyOptions, run_tuning
from ..tune_space import SpaceOverrides, parse_overrides
from .report import report_dir, write_table

log = logging.getLogger(__name__)

STUDIES = ("optimizers", "activations", "schedulers", "batchnorm", "regularisation", "batch_size", "patience")
ArmFn = Callable[[str, argparse.Namespace, TrainConfig], dict[str, Any]]


# ----------------------------------------------------------------------------- what each study varies


def _choices(field: str) -> list[str]:
    """The allowed values of a ``Literal`` train setting, from its one declaration in src.settings."""
    return [a for a in typing.get_args(typing.get_type_hints(TrainConfig)[field]) if a]


def _one_of(key: str, choices: list[str]) -> ArmFn:
    def arm(name: str, args: argparse.Namespace, base: TrainConfig) -> dict[str, Any]:
        if name not in choices:
            raise ConfigError(f"--arms {name!r}: not a known {key}", f"choose from {', '.join(choices)}")
        return {key: name}
    return arm


def _batchnorm(name: str, args: argparse.Namespace, base: TrainConfig) -> dict[str, Any]:
    on = {"on": True, "true": True, "off": False, "false": False}
    if name.lower() not in on:
        raise ConfigError(f"--arms {name!r}: the batchnorm arms are on and off", "e.g. --arms off,on")
    return {"batch_norm": on[name.lower()]}


def _regularisation(name: str, args: argparse.Namespace, base: TrainConfig) -> dict[str, Any]:
    wd, p = args.reg_weight_decay, args.reg_dropout
    arms = {"none": (0.0, 0.0), "wd": (wd, 0.0), "dropout": (0.0, p), "both": (wd, p)}
    if name not in arms:
        raise ConfigError(f"--arms {name!r}: the regularisation arms are {', '.join(arms)}",
                          "set the values with --reg-weight-decay and --reg-dropout")
    return {"weight_decay": float(arms[name][0]), "dropout": float(arms[name][1])}


def _positive_int(name: str, what: str) -> int:
    if not name.isdigit() or int(name) < 1:
        raise ConfigError(f"--arms {name!r} is not a {what}", "give positive integers, e.g. --arms 16,64")
    return int(name)


def _batch_size(name: str, args: argparse.Namespace, base: TrainConfig) -> dict[str, Any]:
    return {"batch_size": _positive_int(name, "batch size")}


def _patience(name: str, args: argparse.Namespace, base: TrainConfig) -> dict[str, Any]:
    """``off``: patience beyond the epoch budget, so early stopping never triggers."""
    return {"patience": base.epochs + 1 if name == "off" else _positive_int(name, "patience (or off)")}


@dataclass(frozen=True)
class Switch:
    """What a study varies: the parameter names, the default arms, and how an arm's name becomes parameters."""

    varies: tuple[str, ...]
    defaults: tuple[str, ...]
    arm: ArmFn


SWITCHES: dict[str, Switch] = {
    "optimizers": Switch(("optimizer",), ("sgd", "adam", "adamw", "adagrad", "rmsprop"), _one_of("optimizer", _choices("optimizer"))),
    "activations": Switch(("activation",), ("relu", "gelu", "silu", "elu", "tanh", "sigmoid"), _one_of("activation", list(ACTIVATIONS))),
    "schedulers": Switch(("scheduler",), ("none", "step", "cosine", "onecycle", "plateau"), _one_of("scheduler", _choices("scheduler"))),
    "batchnorm": Switch(("batch_norm",), ("off", "on"), _batchnorm),
    "regularisation": Switch(("weight_decay", "dropout"), ("none", "wd", "dropout", "both"), _regularisation),
    "batch_size": Switch(("batch_size",), ("16", "32", "64", "128"), _batch_size),
    "patience": Switch(("patience",), ("off", "3", "5", "10"), _patience),
}


# one help line per sub-command, derived from the switches (python -m src.study --help)
HELP = {name: f"controlled study of {' + '.join(sw.varies)}: arms {', '.join(sw.defaults)}" for name, sw in SWITCHES.items()}


def study_arms(study: str, args: argparse.Namespace, base: TrainConfig) -> dict[str, dict[str, Any]]:
    """Arm name -> the parameters it sets, in the order given (``--arms`` or the study's defaults)."""
    sw = SWITCHES[study]
    names = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else list(sw.defaults)
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"--arms {args.arms!r}: give distinct arm names", f"e.g. --arms {','.join(sw.defaults[:2])}")
    return {n: sw.arm(n, args, base) for n in names}


def _takes(spec: ModelSpec, key: str) -> bool:
    ok = spec.accepted_params()
    return ok is None or key in ok


def _applies(spec: ModelSpec, key: str) -> bool:
    return all(need in spec.capabilities | set(spec.tasks) for need in FIELDS[key].metadata["applies"])


def check_switch(study: str, model: str, given: dict[str, Any], fixed: dict[str, Any]) -> None:
    """The model must have what the study varies (else name the models that do); nothing may pin it."""
    spec = get_spec(model)
    varies = SWITCHES[study].varies
    train, params = route_params(dict.fromkeys(varies))
    has = lambda s: all(_applies(s, k) for k in train) and all(_takes(s, k) for k in params)  # noqa: E731
    if not has(spec):
        missing = [k for k in train if not _applies(spec, k)] + [k for k in params if not _takes(spec, k)]
        models = sorted(n for n, s in REGISTRY.items() if has(s))
        raise ConfigError(f"study {study} varies {', '.join(missing)}, which {spec.describe()} does not have",
                          f"choose a model that has it: {', '.join(models)}")
    pinned = sorted(set(varies) & (set(given) | set(fixed)))
    if pinned:
        raise ConfigError(f"study {study} varies {', '.join(pinned)}: it cannot also be set for every arm",
                          "leave it out, or choose the arms with --arms")


# ----------------------------------------------------------------------------- the identical-start probe


def state_hash(module: torch.nn.Module) -> tuple[str, str]:
    """(hash of the state dict's tensors in registration order, hash of their shapes = the architecture).

    Names are left out: a Dropout layer shifts the index-based names of an ``nn.Sequential`` without adding a
    weight, and the arms with and without it must still compare as one architecture.
    """
    h, arch = hashlib.sha256(), []
    for t in module.state_dict().values():
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        arch.append(list(t.shape))
    return h.hexdigest()[:16], stable_hash(arch, 16)


class Probe:
    """Records, while a trial trains, each fold's initial weights and first-epoch inputs as training really ran them.

    A global forward pre-hook (installed only inside :meth:`watch`) sees every :class:`Wrapped` model. Its first
    training-mode call comes before any optimiser step, so the state dict is the initial one; the inputs of its
    training-mode calls until its first evaluation are the first epoch's batches in the order the model saw them.
    Observing the run, not re-deriving the seeding, is what makes this a check of the guarantee.
    """

    def __init__(self, on_trial: Callable[[str], None] | None = None):
        self.records: list[dict[str, Any]] = []
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a new fold model -> its record
        self.on_trial = on_trial

    def hook(self, module: torch.nn.Module, inputs: tuple) -> None:
        if not isinstance(module, Wrapped):
            return
        rec = self._seen.get(module)
        if rec is None:
            if not module.training:
                return
            init, arch = state_hash(module)
            rec = {"init": init, "arch": arch, "order": hashlib.sha256(), "rows": 0, "open": True}
            self._seen[module] = rec
            self.records.append(rec)
        if rec["open"] and module.training:
            x = inputs[0]  # (B, D) or (B, n_mels, T): the batch as the model receives it
            rec["order"].update(x.detach().float().cpu().contiguous().numpy().tobytes())
            rec["rows"] += len(x)
        elif rec["open"]:
            rec["open"] = False  # first evaluation: epoch 1 is over

    @contextlib.contextmanager
    def watch(self, trial: optuna.Trial) -> Iterator[None]:
        """Around one trial's training; on success the per-fold hashes become the trial's user attr ``probe``."""
        self.records = []
        handle = torch.nn.modules.module.register_module_forward_pre_hook(self.hook)
        try:
            yield
        finally:
            handle.remove()
        trial.set_user_attr("probe", [{"init": r["init"], "arch": r["arch"], "order": r["order"].hexdigest()[:16],
                                       "rows": r["rows"]} for r in self.records])
        if self.on_trial is not None:
            self.on_trial(trial.params.get("arm", ""))


# ----------------------------------------------------------------------------- running a study


@dataclass
class Arm:
    """One finished arm: its parameters, run folder (histories, metrics), wall time and probe records per fold."""

    name: str
    params: dict[str, Any]
    run: RunArtifacts
    seconds: float
    probe: list[dict[str, Any]]


@dataclass
class Context:
    """Everything one invocation shares between the study, its repeat check and the report."""

    study: str
    cfg: WorkspaceConfig
    base: TrainConfig
    workdir: Path
    name: str
    arms: dict[str, dict[str, Any]]
    ov: SpaceOverrides
    prep: Prepared


def study_name(study: str, base: TrainConfig, arms: dict, ov: SpaceOverrides, cfg: WorkspaceConfig, fold_sha: str) -> str:
    """``study-<study>-<model>-<hash>``: the same command continues its study, any other setting starts a new one."""
    key = {"arms": arms, "fixed": ov.fixed, "inputs": data_signature(cfg.to_dict()), "folds": fold_sha,
           "train": {k: v for k, v in dataclasses.asdict(base).items() if k not in ("run_id", "plots")}}
    return f"study-{study}-{base.model}-{stable_hash(key, 8)}"


def drop_study(workdir: Path, name: str) -> None:
    """Forget a study: its Optuna database and export, and the run folders of its trials."""
    sdir = studies_dir(workdir)
    for path in (sdir / f"{name}.db", sdir / f"{name}.json"):
        path.unlink(missing_ok=True)
    for run in (workdir / "runs").glob(f"tune-{name}-t*"):
        shutil.rmtree(run, ignore_errors=True)


def run_arms(ctx: Context, name: str, arms: dict[str, dict[str, Any]], probe: Probe) -> list[Arm]:
    """The arms as one grid study of src.tune (runs kept: their histories are the curves), read back in arm order."""
    opts = StudyOptions(keep_runs=True)
    study = run_tuning(ctx.cfg, ctx.base, ctx.workdir, name, {"arm": list(arms)}, ctx.ov, opts, ctx.prep, arms, probe.watch)
    (studies_dir(ctx.workdir) / f"{name}.json").unlink(missing_ok=True)  # src.tune's best-trial export: not this study's result
    done = {t.params["arm"]: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    missing = [a for a in arms if a not in done]
    if missing:
        raise RunError(f"study {name}: arm(s) {missing} did not finish", "run the command again to train them")
    out = []
    for arm, t in ((a, done[a]) for a in arms):
        try:
            run = load_run(t.user_attrs["run_id"], ctx.workdir)
        except RunError:
            raise RunError(f"the run folder of arm {arm} (runs/{t.user_attrs['run_id']}) is gone or unfinished",
                           "start the study over with --fresh") from None
        out.append(Arm(arm, arms[arm], run, float(t.user_attrs.get("seconds", np.nan)), t.user_attrs.get("probe", [])))
    return out


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """One progress line per arm instead of one per epoch (as src.tune does), restored afterwards."""
    train_log, level, verbosity = logging.getLogger("src.train"), logging.getLogger("src.train").level, optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        train_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            yield
    finally:
        train_log.setLevel(level)
        optuna.logging.set_verbosity(verbosity)


def run(args: argparse.Namespace) -> Path:
    """Train every arm (or continue), optionally re-run one, then write the table and the curves."""
    t0 = time.perf_counter()
    ctx = make_context(args)
    out = report_dir(ctx.workdir, args.study, args.out)
    warm_up()
    if args.fresh:
        drop_study(ctx.workdir, ctx.name)
    from tqdm.auto import tqdm

    with quiet(args.verbose), tqdm(total=len(ctx.arms), desc=args.study, unit="arm") as bar:
        arms = run_arms(ctx, ctx.name, ctx.arms, Probe(lambda arm: bar.update(1)))
        repeat = check_repeat(ctx, arms, args.check_repeat) if args.check_repeat is not None else None
    table = arm_table(arms, ctx)
    plot_arm_curves(arms, ctx.base.metric, out / "curves.png", f"{args.study}: {ctx.base.model} on {ctx.cfg.name}")
    problems, seed_notes = seed_check(arms, ctx)
    if repeat is not None:
        seed_notes.append(repeat[0])
        problems += repeat[1]
    notes = report_notes(ctx, arms, seed_notes, time.perf_counter() - t0)
    write_table(out, table, title=f"Controlled study: {args.study} ({ctx.base.model}, {ctx.cfg.name})", notes=notes)
    print(table.to_string(index=False))
    if problems:
        raise RunError("the arms did not start alike: " + "; ".join(problems) + f" (see {out / 'table.md'})",
                       "the comparison is not controlled: report this as a bug in the seeding of src.train")
    return out


def warm_up() -> None:
    """Pay one-off lazy imports before the first arm, so they do not inflate its wall time: the deterministic-algorithms
    switch that src.train sets per run imports torch's compiler stack on first use (seconds on a busy CPU)."""
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(),
                                       warn_only=torch.is_deterministic_algorithms_warn_only_enabled())


def make_context(args: argparse.Namespace) -> Context:
    """Settings as src.tune resolves them (config [train] < flags), the arms, and the checks before any training."""
    cfg = load_config(args.config, args.workdir)
    workdir = Path(args.workdir)
    given = flag_values(args)
    base, sources = resolve_train_config(cfg, args.model, {**given, "plots": False}, workdir=workdir)
    ov = parse_overrides(args.fix, [])
    check_switch(args.study, base.model, given, ov.fixed)
    check_train_config(cfg, base, sources)
    arms = study_arms(args.study, args, base)
    if args.check_repeat and args.check_repeat not in arms:
        raise ConfigError(f"--check-repeat {args.check_repeat!r} is not an arm of this study", f"choose one of {list(arms)}")
    prep = prepare(cfg, workdir)
    ffile = Path(base.fold_file) if base.fold_file else fold_path(cfg, workdir)
    fsha = file_sha256(ffile) if ffile.is_file() else ""  # a re-made fold file starts a new study
    return Context(args.study, cfg, base, workdir, study_name(args.study, base, arms, ov, cfg, fsha), arms, ov, prep)


# ----------------------------------------------------------------------------- checks


def seed_check(arms: list[Arm], ctx: Context) -> tuple[list[str], list[str]]:
    """(problems, notes). Every arm should start from the same weights and see the same first epoch. Where they do
    not, arms of another architecture (batch_norm adds weights) or batch size (augmentation drawn per batch) may
    legitimately differ; arms of the same architecture / batch size must still agree, else the study is not controlled."""
    recorded = [a for a in arms if len(a.probe) == len(a.run.metrics["folds_done"])]
    if len(recorded) < len(arms):
        return [], [f"Identical start: not recorded for arm(s) {[a.name for a in arms if a not in recorded]} "
                    "(trained by an older version; --fresh re-trains)."]
    problems, notes = [], []
    for what, key, why, by in (("initial weights", "init", "architecture", lambda a: tuple(r["arch"] for r in a.probe)),
                               ("first-epoch data order", "order", "batch size",
                                lambda a: a.params.get("batch_size", ctx.base.batch_size))):
        if _agree(recorded, key):
            notes.append(f"Identical {what} per fold in every arm: yes (column {key}_sha).")
            continue
        groups: dict[Any, list[Arm]] = {}
        for a in recorded:
            groups.setdefault(by(a), []).append(a)
        bad = [g for g in groups.values() if not _agree(g, key)]
        problems += [f"{what} differ among arms {[a.name for a in g]} of one {why}" for g in bad]
        notes.append(f"Identical {what} per fold in every arm: no; they differ between arms of another {why} (expected) "
                     f"and {'DIFFER' if bad else 'agree'} among arms of the same {why} (column {key}_sha).")
    return problems, notes


def _agree(arms: list[Arm], key: str) -> bool:
    return all([r[key] for r in a.probe] == [r[key] for r in arms[0].probe] for a in arms)


def same_histories(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> tuple[bool, float, int]:
    """(every fold's per-epoch train/validation losses exactly equal, max |difference|, epochs compared)."""
    same, worst, n = a.keys() == b.keys(), 0.0, 0
    for k in set(a) & set(b):
        same &= len(a[k]) == len(b[k])
        for ea, eb in zip(a[k], b[k]):
            for key in ("train_loss", "val_loss"):
                same &= ea[key] == eb[key]
                worst = max(worst, abs(ea[key] - eb[key]))
            n += 1
    return bool(same), worst, n


def check_repeat(ctx: Context, arms: list[Arm], which: str) -> tuple[str, list[str]]:
    """Re-run one arm from scratch (its own study ``<name>-repeat``) and compare per-epoch losses exactly."""
    name = which or arms[0].name  # checked against the arms before any training (make_context)
    first = next(a for a in arms if a.name == name)
    rname = f"{ctx.name}-repeat"
    drop_study(ctx.workdir, rname)  # always a fresh re-run: comparing against an old repeat would prove nothing
    again = run_arms(ctx, rname, {name: first.params}, Probe())[0]
    same, worst, n = same_histories(first.run.metrics["history"], again.run.metrics["history"])
    same_start = [(r["init"], r["order"]) for r in first.probe] == [(r["init"], r["order"]) for r in again.probe]
    device = resolve_device(ctx.base.device).type
    verdict = "identical (exact float equality)" if same else f"DIFFERENT (max |difference| {worst:.3g})"
    text = (f"Repeat check on {device}: arm {name} re-run from scratch (runs/{again.run.name}); per-epoch train and validation "
            f"losses over {n} fold-epochs: {verdict}; initial weights and data order {'identical' if same_start else 'DIFFERENT'}.")
    problems = [] if (same and same_start) or device != "cpu" else [f"re-running arm {name} on CPU changed its losses"]
    if device != "cpu" and not same:
        text += " (CUDA kernels are not bit-reproducible; exact equality is only expected on CPU.)"
    return text, problems


# ----------------------------------------------------------------------------- report


def _epochs(arm: Arm) -> tuple[list[int], list[int], list[float]]:
    """(best epoch per fold, last epoch trained per fold, every epoch's seconds)."""
    m = arm.run.metrics
    folds = [str(k) for k in m["folds_done"]]
    return ([int(m["folds"][k]["epoch"]) for k in folds], [len(m["history"][k]) for k in folds],
            [e["seconds"] for k in folds for e in m["history"][k]])


def arm_table(arms: list[Arm], ctx: Context) -> pd.DataFrame:
    """One row per arm: scores (mean, sd over folds, clip level), holdout, times, epochs, identical-start hashes."""
    scores = ["accuracy", "macro_f1"] if ctx.cfg.is_classification else []
    scores += [ctx.base.metric] if ctx.base.metric not in scores else []
    rows = []
    for a in arms:
        m = a.run.metrics
        best, stopped, secs = _epochs(a)
        row: dict[str, Any] = {"arm": a.name, "setting": ", ".join(f"{k}={v}" for k, v in a.params.items())}
        for s in scores:
            row[s], row[f"{s}_sd"] = m["mean"][s], m["std"][s]
        if "holdout" in m:
            row[f"holdout_{scores[0]}"] = m["holdout"][scores[0]]
        row.update(seconds=round(a.seconds, 1), sec_per_epoch=round(float(np.mean(secs)), 3),
                   best_epoch=round(float(np.mean(best)), 1), stopped_epoch=round(float(np.mean(stopped)), 1),
                   init_sha=stable_hash([r["init"] for r in a.probe], 8) if a.probe else "",
                   order_sha=stable_hash([r["order"] for r in a.probe], 8) if a.probe else "")
        rows.append(row)
    return pd.DataFrame(rows)


def mean_curve(history: dict[str, list[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, mean over the folds still training at each epoch) of one history key."""
    length = max(len(h) for h in history.values())
    vals = np.full((len(history), length), np.nan)
    for i, h in enumerate(history.values()):
        vals[i, :len(h)] = [e.get(key, np.nan) for e in h]
    return np.arange(1, length + 1), np.nanmean(vals, axis=0)


def plot_arm_curves(arms: list[Arm], metric: str, path: Path, title: str) -> None:
    """Train loss, validation loss and the validation metric per epoch: one line per arm, mean over folds, one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("train_loss", "train loss"), ("val_loss", "validation loss"), (f"val_{metric}", f"validation {metric} (clip level)"))
    for a in arms:
        for ax, (key, _) in zip(axes, panels):
            ep, mean = mean_curve(a.run.metrics["history"], key)
            ax.plot(ep, mean, marker="." if len(ep) < 15 else None, label=a.name)
    for ax, (_, label) in zip(axes, panels):
        ax.set(xlabel="epoch", title=label)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"{title} — mean over folds (those still training at each epoch)", fontsize=10)
    save_figure(path, fig)


def report_notes(ctx: Context, arms: list[Arm], seed_notes: list[str], wall: float) -> str:
    """What the table's numbers are, how the arms were kept alike, and where their runs are."""
    b, cfg = ctx.base, ctx.cfg
    folds = arms[0].run.metrics["folds_done"]
    group = cfg.data.group_column or cfg.data.group_pattern
    lines = [
        f"Model `{b.model}` on `{cfg.name}` ({cfg.path}); folds {folds} of {Path(b.fold_file).name}; seed {b.seed} (fold k: seed + k); "
        f"up to {b.epochs} epochs; unless the arm sets them: patience {b.patience}, optimizer {b.optimizer}, lr {b.lr}, batch size "
        f"{b.batch_size}, weight decay {b.weight_decay}; device {resolve_device(b.device).type} (torch threads: {torch.get_num_threads()}); "
        f"selection metric {b.metric}.",
        f"Scores: best-epoch validation scores at clip level, mean and sd (ddof=1) over the {len(folds)} fold(s)"
        + ("; holdout_*: the fold models' mean prediction on the labelled holdout split." if "holdout" in arms[0].run.metrics else "."),
        f"Folds are grouped by `{group}`." if group else "Folds are not grouped beyond rows and duplicate sets: the config names no "
        "group column or pattern (the data has no track/artist ids), so rows of one recording or artist can sit in different folds "
        "and the CV scores are optimistic.",
        "seconds: wall time of the arm (all folds, with evaluation; other jobs on the machine inflate it); sec_per_epoch: mean epoch "
        "(training + validation pass); "
        "best_epoch: epoch of the best validation score (epochs to converge); stopped_epoch: last epoch trained; means over folds.",
        *seed_notes,
        "Curves: curves.png (one line per arm, mean over the folds still training at each epoch).",
        f"Runs: {', '.join(f'{a.name} = runs/{a.run.name}' for a in arms)}; Optuna study optuna_studies/{ctx.name}.db.",
        f"Wall time: {sum(a.seconds for a in arms):.0f} s of training over the arms; this command {wall:.0f} s "
        "(arms finished by an earlier run of the same command are read back, not re-trained).",
    ]
    return "\n".join(f"- {line}" for line in lines)


# ----------------------------------------------------------------------------- command line


def add_arguments(ap: argparse.ArgumentParser, name: str) -> None:
    cli.add_common(ap)
    ap.add_argument("--model", required=True, help="registered model name (it must have what the study varies)")
    ap.add_argument("--arms", help=f"comma-separated arms (default: {','.join(SWITCHES[name].defaults)})")
    ap.add_argument("--out", help="report folder (default: <workdir>/reports/<study>/)")
    ap.add_argument("--check-repeat", dest="check_repeat", nargs="?", const="", metavar="ARM",
                    help="re-run one arm (default: the first) and check its per-epoch losses are identical")
    ap.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE",
                    help="a model parameter or train setting for every arm, e.g. --fix hidden=[64]")
    ap.add_argument("--fresh", action="store_true", help="start over: forget the arms this same command trained before")
    ap.add_argument("--verbose", action="store_true", help="log every epoch")
    if name == "regularisation":
        ap.add_argument("--reg-weight-decay", dest="reg_weight_decay", type=float, default=1e-2, help="weight decay of the wd/both arms")
        ap.add_argument("--reg-dropout", dest="reg_dropout", type=float, default=0.3, help="dropout of the dropout/both arms")
    add_train_flags(ap, skip={"model", "model_params", "plots", "run_id"})
