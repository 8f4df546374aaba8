"""Train one model per fold and write the run's artifacts.

``python -m src.train --config configs/x.toml --model cnn [--folds 0 1] [--run-id ID]``

The loop is deliberately plain (``train_one_epoch``, ``evaluate``, ``predict``):
read it top to bottom. Per fold: normalisation statistics from the training
fold only, best checkpoint by the validation metric, early stopping,
segment predictions averaged to clip level. Re-running with the same
``--run-id`` resumes: finished folds are kept, the rest are trained.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import logging
import os
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from . import cli
from .artifacts import atomic_path, code_version, read_json, save_torch, setup_logging, write_json, write_npz
from .augment import crop_time, mix_batch, spec_augment
from .config import TASK_METRICS, WorkspaceConfig, load_config, signature_diff
from .errors import ConfigError, RunError
from .features import Items, Prepared, prepare, run_recipe
from .folds import fold_numbers, fold_path, load_folds_for
from .inference import Wrapped, aggregate, autocast, decode, predict, resolve_device
from .loader import batch_loader, epoch_plan, streaming_stats, take_rows
from .metrics import compute_metrics, greater_is_better
from .models import create_model, get_spec
from .optim import Step, optimisation
from .runs import RunFolder, check_compatible, finalize, fold_column, ids_hash, now
from .settings import (
    AUG_FIELDS,
    CLASSIFICATION,
    DEFAULTS,
    MULTILABEL,
    TrainConfig,
    add_train_flags,
    check_applicable,
    flag_values,
    make_train_config,
    parse_pairs,
    route_params,
)
from .studies import load_params
from .waveaug import check_settings as check_wave_settings
from .waveaug import fold_waves

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def input_stats(X, spec_input: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (vector) or per-frequency-bin (spec) mean/std of the training fold, read in chunks (src.loader)."""
    return streaming_stats(X, spec_input)


def epoch_batches(X, y: np.ndarray, tc: TrainConfig, rng: np.random.Generator, device: torch.device, fill: float,
                  weights: np.ndarray | None, waves: Callable | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's (inputs, targets) on ``device``: from the cache through src.loader's DataLoader (background workers,
    pinned memory), or with ``waves`` (src.waveaug) augmented audio turned into log-mel on the device."""
    from tqdm.auto import tqdm

    plan = epoch_plan(len(X), tc.batch_size, rng, weights)
    bar = tqdm(total=len(plan.batches), desc="train", unit="batch", leave=False, disable=None)  # rate and ETA on a terminal
    with bar:
        if waves is not None:
            for b, seed in zip(plan.batches, plan.seeds):
                yield waves(b, np.random.default_rng(int(seed)), device, fill), torch.from_numpy(y[b]).to(device)  # (B, n_mels, T)
                bar.update()
            return
        for xb, yb in batch_loader(X, y, plan, tc, fill, device):
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            bar.update()


def train_one_epoch(model: Wrapped, X: np.ndarray, y: np.ndarray, st: Step, tc: TrainConfig,
                    rng: np.random.Generator, device: torch.device, fill: float = 0.0, weights: np.ndarray | None = None,
                    waves: Callable | None = None) -> float:
    """One pass over the training items; with ``weights`` (class-balanced sampling) as many items drawn with replacement;
    with ``waves`` (src.waveaug: waveform augmentation on) each batch is augmented audio turned into log-mel there."""
    aug = tc
    model.train()
    total, n = 0.0, 0
    for xb, yb in epoch_batches(X, y, tc, rng, device, fill, weights, waves):
        if st.n_classes and (aug.mixup_alpha or aug.cutmix_alpha):
            xb, yb = mix_batch(xb, yb, aug, rng, st.n_classes)  # soft targets (B, C)
        if st.multilabel and tc.label_smoothing:
            yb = yb * (1 - tc.label_smoothing) + tc.label_smoothing / 2  # (B, C) towards 0.5
        with autocast(device, tc):
            loss = st.loss_fn(model(xb).float(), yb)
        st.opt.zero_grad(set_to_none=True)
        if st.scaler is not None:
            st.scaler.scale(loss).backward()
            st.scaler.unscale_(st.opt)
        else:
            loss.backward()
        if tc.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        st.scaler.step(st.opt) if st.scaler is not None else st.opt.step()
        if st.scaler is not None:
            st.scaler.update()
        if st.sched is not None and st.per_step:
            st.sched.step()
        total += loss.item() * len(xb)
        n += len(xb)
    return total / max(n, 1)


def evaluate(model: Wrapped, X: np.ndarray, y_items: np.ndarray, item_row: np.ndarray, y_rows: np.ndarray,
             loss_fn, tc: TrainConfig, task: str, targets: list[str], fill: np.ndarray,
             device: torch.device) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Item-level loss, row (clip)-level metrics, and (rows, clip-level predictions)."""
    out = predict(model, X, tc, device)
    if not np.isfinite(out).all():
        raise RunError(f"validation outputs are NaN/inf — training diverged (lr {tc.lr}, optimizer {tc.optimizer})",
                       "lower --lr, add --grad-clip 1.0, or check the inputs for extreme values")
    loss = float(loss_fn(torch.from_numpy(out), torch.from_numpy(y_items)).item())
    pred_items = decode(model, out, task)
    rows, local = np.unique(item_row, return_inverse=True)
    pred_rows = aggregate(pred_items, local, len(rows), fill, *clip_aggregation(tc, task))
    m = compute_metrics(task, y_rows[rows], pred_rows, targets)
    m["loss"] = loss
    if task == "classification":
        m["segment_accuracy"] = float((pred_items.argmax(1) == y_items).mean())
    return m, rows, pred_rows


# ----------------------------------------------------------------------------- one fold


@dataclass
class FoldData:
    """Items of one fold: lazy views of the memory-mapped cache (spectrograms; read batch by batch) or arrays (vectors)."""

    X_tr: np.ndarray
    y_tr: np.ndarray
    X_va: np.ndarray
    y_va: np.ndarray
    row_va: np.ndarray
    waves: Callable | None = None  # training batches from augmented audio (src.waveaug.WaveBatches); None: X_tr as cached


def fold_data(train: Items, y_rows: np.ndarray, fold_of_row: np.ndarray, k: int) -> FoldData:
    is_val = fold_of_row[train.row] == k
    tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    X_tr, X_va = take_rows(train.X, tr_idx), take_rows(train.X, va_idx)  # memory-mapped views for spectrograms: nothing read yet
    return FoldData(X_tr, y_rows[train.row[tr_idx]], X_va, y_rows[train.row[va_idx]], train.row[va_idx])


def overfit_subset(fd: FoldData, tc: TrainConfig) -> FoldData:
    """``--overfit-batch N``: a fixed set of N batches used for training and validation alike."""
    n = tc.overfit_batches * tc.batch_size
    return FoldData(fd.X_tr[:n], fd.y_tr[:n], fd.X_tr[:n], fd.y_tr[:n], np.arange(min(n, len(fd.X_tr))))


EpochHook = Callable[[int, int, float], None]  # (fold, epoch, validation metric); may raise to stop (Optuna pruning)


def build_model(prep: Prepared, tc: TrainConfig, fd: FoldData, n_out: int) -> Wrapped:
    """The network wrapped with this fold's normalisation statistics (and optional warm start)."""
    spec = get_spec(tc.model)
    spec_input = spec.input == "spec"
    x_mean, x_std = input_stats(fd.X_tr, spec_input)
    if not spec.normalize:  # the network normalises its own input (a trained input BatchNorm): identity statistics
        x_mean, x_std = np.zeros_like(x_mean), np.ones_like(x_std)
    y_mean = y_std = None
    if prep.cfg.task == "regression":
        y_mean, y_std = fd.y_tr.mean(0), fd.y_tr.std(0) + 1e-8
    if spec_input:
        shape = crop_time(fd.X_tr[:1], tc.crop_frames, None).shape[1:]
        params = dict(tc.model_params)
        if spec.recipe == "musicnn" and not os.environ.get("MUSICNN_WEIGHTS_DIR"):  # else $MUSICNN_WEIGHTS_DIR (a Kaggle dataset)
            params.setdefault("weights_dir", str(prep.workdir / "cache" / "pretrained" / "musicnn"))
        kw = {"in_chans": params.pop("in_chans", 1), "input_shape": shape}  # in_chans: what a timm backbone sees
    else:
        params = dict(tc.model_params)
        kw = {"in_features": fd.X_tr.shape[1]}
    net = create_model(tc.model, num_classes=n_out, **kw, **params)
    model = Wrapped(net, x_mean, x_std, spec_input, y_mean, y_std)
    if tc.init_checkpoint:
        from .pretrained import load_checkpoint_backbone

        load_checkpoint_backbone(model, tc.init_checkpoint)
        model.x_mean.copy_(torch.as_tensor(x_mean))  # this task's own statistics, not the source task's
        model.x_std.copy_(torch.as_tensor(x_std))
    return model


def fit_fold(prep: Prepared, tc: TrainConfig, fd: FoldData, k: int, device: torch.device, n_out: int,
             on_epoch: EpochHook | None = None) -> tuple[Wrapped, list[dict], dict]:
    """Train on one fold; return the best model (by the selection metric), the history and its metrics."""
    task = prep.cfg.task
    set_seed(tc.seed + k)
    rng = np.random.default_rng(tc.seed + k)
    if tc.overfit_batches:  # a fixed subset, no augmentation, no early stopping: the loss must reach ~0
        fd = overfit_subset(fd, tc)
        tc = dataclasses.replace(tc, **{f: 0 for f in AUG_FIELDS}, patience=tc.epochs + 1)
    model = build_model(prep, tc, fd, n_out).to(device)
    if device.type == "cuda" and tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if (tc.freq_mask or tc.time_mask) and model.spec_input:
        model.augment = functools.partial(spec_augment, cfg=tc)
    y_tr = fd.y_tr if task != "regression" else ((fd.y_tr - fd.y_tr.mean(0)) / (fd.y_tr.std(0) + 1e-8)).astype(np.float32)
    st, freezer = optimisation(model, tc, len(fd.X_tr), task, n_out, device)
    val_loss = nn.CrossEntropyLoss() if task == CLASSIFICATION else nn.BCEWithLogitsLoss() if task == MULTILABEL else _ScaledMSE(model)
    fill = _prior(fd.y_tr, n_out, task)
    weights = balanced_weights(fd.y_tr, n_out, task) if tc.balanced_sampling else None
    sign = 1 if greater_is_better(tc.metric) else -1
    best, best_state, best_m, history, since = -np.inf, None, {}, [], 0
    for epoch in range(1, tc.epochs + 1):
        t0 = time.perf_counter()
        if freezer is not None:
            freezer.apply(epoch)  # epochs count from 1
        tl = train_one_epoch(model, fd.X_tr, y_tr, st, tc, rng, device, float(model.x_mean.mean()), weights, fd.waves)
        t_train = time.perf_counter() - t0
        check_finite(tl, k, epoch, tc)
        m, _, _ = evaluate(model, fd.X_va, fd.y_va, fd.row_va, _rows_target(fd), val_loss, tc, task,
                           prep.ds.targets, fill, device)
        if st.sched is not None and not st.per_step:
            st.sched.step(m[tc.metric]) if tc.scheduler == "plateau" else st.sched.step()
        history.append({"epoch": epoch, "train_loss": tl, "val_loss": m["loss"], **{f"val_{a}": b for a, b in m.items() if a != "loss"},
                        "lr": st.opt.param_groups[-1]["lr"], "seconds": time.perf_counter() - t0, "train_seconds": t_train,
                        "train_items_per_s": len(fd.X_tr) / max(t_train, 1e-9)})
        log.info("fold %d epoch %3d  train_loss %.4f  val_loss %.4f  val_%s %.4f  (%.1fs)", k, epoch, tl, m["loss"], tc.metric,
                 m[tc.metric], history[-1]["seconds"])
        if on_epoch is not None:
            on_epoch(k, epoch, m[tc.metric])
        if sign * m[tc.metric] > best:
            best, best_m, since = sign * m[tc.metric], {**m, "epoch": epoch}, 0
            best_state = {a: b.detach().clone() for a, b in model.state_dict().items()}
        else:
            since += 1
            if since >= tc.patience:
                log.info("fold %d: early stop at epoch %d (best epoch %d)", k, epoch, best_m["epoch"])
                break
    if best_state is None:
        raise RunError(f"fold {k}: validation {tc.metric} never improved (NaN every epoch?)", "check the inputs and lower --lr")
    model.load_state_dict(best_state)
    model.augment = None
    return model, history, best_m


def check_finite(loss: float, k: int, epoch: int, tc: TrainConfig) -> None:
    """A NaN/inf training loss means the run diverged: stop with that diagnosis, not a later 'Input contains NaN'."""
    if not np.isfinite(loss):
        raise RunError(f"fold {k} epoch {epoch}: training loss is {loss} — training diverged (lr {tc.lr}, optimizer {tc.optimizer})",
                       "lower --lr, add --grad-clip 1.0, or check the inputs for extreme values")


class _ScaledMSE(nn.Module):
    """Validation MSE in standardised target units, matching the training loss."""

    def __init__(self, model: Wrapped):
        super().__init__()
        self.model = model

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out, (y - self.model.y_mean.cpu()) / self.model.y_std.cpu())


def _rows_target(fd: FoldData) -> np.ndarray:
    """Targets indexed by train row (only the validation rows are filled)."""
    n = int(fd.row_va.max()) + 1 if len(fd.row_va) else 0
    out = np.zeros((n, *fd.y_va.shape[1:]), dtype=fd.y_va.dtype)
    out[fd.row_va] = fd.y_va
    return out


def _prior(y: np.ndarray, n_out: int, task: str) -> np.ndarray:
    """Prediction for rows without usable audio: the training fold's class frequencies (or mean target/label vector)."""
    if task == "classification":
        return (np.bincount(y, minlength=n_out) / max(len(y), 1)).astype(np.float32)
    return y.mean(0).astype(np.float32)


def balanced_weights(y: np.ndarray, n_out: int, task: str) -> np.ndarray:
    """Sampling probability per training item: 1 / count of its class (multilabel: of its rarest positive class)."""
    if task == "classification":
        w = 1.0 / np.bincount(y, minlength=n_out)[y]
    else:
        pos = y > 0
        counts = np.maximum(pos.sum(0), 1)  # (C,)
        w = np.where(pos, 1.0 / counts, 0.0).max(1)  # rarest positive class; a row without positives keeps weight 0
        w = np.where(w > 0, w, 1.0 / len(y))
    return (w / w.sum()).astype(np.float64)


def clip_aggregation(tc: TrainConfig, task: str) -> tuple[str, bool]:
    """(how, normalise) of segment -> clip aggregation: the aggregate setting for class probabilities (renormalised
    for single-label only), the mean for regression targets."""
    return (tc.aggregate, task == "classification") if task != "regression" else ("mean", False)


# ----------------------------------------------------------------------------- a run


@dataclass
class FittedFold:
    """A fold's trained model as the run needs it: predictions on items, its history and best metrics, and how to save it."""

    predict: Callable[[np.ndarray], np.ndarray]  # items (B, D) or (B, n_mels, T) -> probabilities (classification) or targets
    history: list[dict]
    best: dict
    save: Callable[[Path, dict], None]  # (run folder, metadata) -> writes fold<k>.pt or fold<k>.joblib


def train_fold(prep: Prepared, tc: TrainConfig, run: RunFolder, items: dict[str, Items], fold_of_row: np.ndarray,
               k: int, device: torch.device, on_epoch: EpochHook | None = None) -> dict:
    """Train fold k and write its model (``fold<k>.pt`` / ``fold<k>.joblib``) and ``fold<k>_preds.npz`` atomically."""
    ds, task = prep.ds, prep.cfg.task
    n_out = len(ds.classes) if task != "regression" else len(ds.targets)
    fd = fold_data(items["train"], ds.labels("train"), fold_of_row, k)
    if not len(fd.X_va) or not len(fd.X_tr):
        raise RunError(f"fold {k} has no validation or no training rows in the fold file", "re-create the fold file")
    fd.waves = fold_waves(prep, tc, items["train"], fold_of_row, k, fd.X_tr)  # None unless a waveform augmentation is on
    spec = get_spec(tc.model)
    fit = fit_head_fold if spec.kind == "sklearn" else fit_net_fold
    fitted = fit(prep, tc, fd, k, device, n_out, on_epoch)
    fill = _prior(fd.y_tr, n_out, task)
    how = clip_aggregation(tc, task)
    preds: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for split in ("test", "holdout"):
        it = items[split]
        out = fitted.predict(it.X) if len(it.row) else np.zeros((0, n_out))
        preds[split] = aggregate(out, it.row, it.n_rows, fill, *how)
    rows, local = np.unique(fd.row_va, return_inverse=True)
    preds["val"] = aggregate(fitted.predict(fd.X_va), local, len(rows), fill, *how)
    fitted.save(run.root, {"model": tc.model, "model_params": tc.model_params, "input": spec.input, "n_out": n_out,
                           "in_features": fd.X_tr.shape[1] if spec.input == "vector" else None, "classes": ds.classes,
                           "input_shape": list(crop_time(fd.X_tr[:1], tc.crop_frames, None).shape[1:]) if spec.input == "spec" else None,
                           "recipe": run_recipe(spec.recipe, tc),
                           "targets": ds.targets, "fold": k, "best": fitted.best})
    timing = {"predict_seconds": round(time.perf_counter() - t0, 3),
              "predict_items": int(len(items["test"].row) + len(items["holdout"].row) + len(fd.row_va))}
    write_json(run.root / f"fold{k}_metrics.json", {"best": fitted.best, "history": fitted.history, "timing": timing})
    write_npz(run.root / f"fold{k}_preds.npz", val_rows=rows, val=preds["val"], test=preds["test"], holdout=preds["holdout"])
    return fitted.best


def fit_net_fold(prep: Prepared, tc: TrainConfig, fd: FoldData, k: int, device: torch.device, n_out: int,
                 on_epoch: EpochHook | None) -> FittedFold:
    """A network trained by :func:`fit_fold`; saved as ``fold<k>.pt`` (state dict with the fold's statistics)."""
    task = prep.cfg.task
    model, history, best = fit_fold(prep, tc, fd, k, device, n_out, on_epoch)

    def save(root: Path, meta: dict) -> None:
        save_torch(root / f"fold{k}.pt", {"state_dict": model.state_dict(), **meta})

    return FittedFold(lambda X: decode(model, predict(model, X, tc, device), task), history, best, save)


def fit_head_fold(prep: Prepared, tc: TrainConfig, fd: FoldData, k: int, device: torch.device, n_out: int,
                  on_epoch: EpochHook | None) -> FittedFold:
    """A scikit-learn head (src.heads) fitted on the training fold; one 'epoch' in the history; saved as ``fold<k>.joblib``."""
    import joblib

    from .heads import fit_head, head_predict

    task, spec = prep.cfg.task, get_spec(tc.model)
    classification = task == CLASSIFICATION  # the heads are single-label or regression (ModelSpec.tasks)
    t0 = time.perf_counter()
    est = fit_head(spec.builder(task=task, seed=tc.seed + k, **{**spec.defaults, **tc.model_params}), fd.X_tr, fd.y_tr)
    pred = lambda X: head_predict(est, X, n_out, classification)  # noqa: E731
    rows, local = np.unique(fd.row_va, return_inverse=True)
    fill = _prior(fd.y_tr, n_out, task)
    val = aggregate(pred(fd.X_va), local, len(rows), fill, *clip_aggregation(tc, task))
    m = compute_metrics(task, _rows_target(fd)[rows], val, prep.ds.targets)
    train_m = compute_metrics(task, fd.y_tr, pred(fd.X_tr), prep.ds.targets)
    loss = "log_loss" if classification else "rmse"
    history = [{"epoch": 1, "train_loss": train_m[loss], "val_loss": m[loss], **{f"val_{a}": b for a, b in m.items()},
                "seconds": time.perf_counter() - t0}]
    log.info("fold %d: %s val_%s %.4f (%.1fs)", k, tc.model, tc.metric, m[tc.metric], history[0]["seconds"])
    if on_epoch is not None:
        on_epoch(k, 1, m[tc.metric])

    def save(root: Path, meta: dict) -> None:
        with atomic_path(root / f"fold{k}.joblib") as tmp:
            joblib.dump({"estimator": est, **meta}, tmp)

    return FittedFold(pred, history, {**m, "epoch": 1}, save)


def run_training(cfg: WorkspaceConfig, tc: TrainConfig, workdir: str | Path = ".", prep: Prepared | None = None,
                 on_epoch: EpochHook | None = None, on_fold: Callable[[int, dict], None] | None = None,
                 sources: dict[str, str] | None = None) -> Path:
    """Train every requested fold (resuming finished ones) and write the run artifacts. Returns the run folder.

    ``on_epoch(fold, epoch, value)`` and ``on_fold(fold, best_metrics)`` let a caller (the Optuna objective)
    watch progress and stop a run early by raising; the fold is then recorded as failed/pruned.
    ``sources`` names where each setting came from, for the error when one does not apply to the model.
    """
    workdir = Path(workdir)
    unused_defaults = check_train_config(cfg, tc, sources or {})
    prep = prep or prepare(cfg, workdir)
    fold_file = Path(tc.fold_file) if tc.fold_file else fold_path(cfg, workdir)
    folds_df, fold_hash = load_folds_for(prep, workdir, fold_file)
    have = fold_numbers(folds_df, fold_column(tc.repeat))
    fold_of_row = folds_df[fold_column(tc.repeat)].to_numpy()
    todo = have if tc.folds is None else list(tc.folds)
    bad = sorted(set(todo) - set(have))
    if bad:
        raise RunError(f"fold(s) {bad} not in {fold_file} (it has {have})", "pick --folds from those")
    tc.run_id = tc.run_id or f"{cfg.name}-{tc.model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    with run_lock(Path(workdir) / "runs" / tc.run_id):
        run = open_run(cfg, tc, prep, fold_file, fold_hash, workdir, unused_defaults)
        spec = get_spec(tc.model)
        recipe = run_recipe(spec.recipe, tc)
        items = {s: prep.items(spec.input, s, recipe) for s in ("train", "test", "holdout")}
        device = resolve_device(tc.device)
        torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
        for k in todo:
            if run.done(k):
                log.info("fold %d already done in %s: skipped", k, run.root)
                continue
            best = _train_recorded(prep, tc, run, items, fold_of_row, k, device, on_epoch)
            if on_fold is not None:
                on_fold(k, best)
        metrics = finalize(run.root, prep.ds, cfg.task, todo, tc.metric, tc.plots)
    log.info("run %s: %s %.4f ± %.4f over %d fold(s) (clip level); artifacts in %s", tc.run_id, tc.metric,
             metrics["mean"][tc.metric], metrics["std"][tc.metric], len(todo), run.root)
    return run.root


def _train_recorded(prep: Prepared, tc: TrainConfig, run: RunFolder, items: dict[str, Items], fold_of_row: np.ndarray, k: int,
                    device: torch.device, on_epoch: EpochHook | None) -> dict:
    """Train fold k with its status recorded: running, then done, or failed/interrupted with the error (re-raised)."""
    t0 = time.perf_counter()
    run.set_status(k, status="running", started=now(), error=None)
    try:
        best = train_fold(prep, tc, run, items, fold_of_row, k, device, on_epoch)
    except BaseException as exc:  # recorded, then re-raised: never swallowed
        run.set_status(k, status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                       error=f"{type(exc).__name__}: {exc}", finished=now())
        raise
    run.set_status(k, status="done", finished=now(), seconds=round(time.perf_counter() - t0, 2))
    return best


def check_train_config(cfg: WorkspaceConfig, tc: TrainConfig, sources: dict[str, str]) -> list[str]:
    """Before any work: the model exists, suits the task, takes these parameters, and every setting applies to it.

    Returns the config's ``[train]`` defaults that do not apply to this model (reset, logged, and recorded
    in the run's config.json); a setting given for this run that does not apply is an error.
    """
    spec = get_spec(tc.model)
    task = cfg.task
    if task not in spec.tasks:
        raise ConfigError(f"{spec.describe()} is for {' and '.join(spec.tasks)} tasks, this competition is {task}",
                          "choose another model (python -m src.train --help; README: Models)")
    spec.check_params(tc.model_params)
    run_recipe(spec.recipe, tc)  # a recipe the model cannot take is refused before the run folder is written
    caps = spec.capabilities | {task} | ({CLASSIFICATION} if task == MULTILABEL else set())
    dropped = check_applicable(tc, caps, spec.describe() + f" on a {task} task", sources,
                               soft=lambda source: source.startswith("[train]"))
    for text in dropped:
        log.warning("not used: %s (a competition-wide default, not a request for this run)", text)
    check_wave_settings(cfg, tc, spec.recipe)  # after the applicability check: [train] defaults it dropped are off
    tc.metric = tc.metric or cfg.competition.metric
    valid = TASK_METRICS[task]
    if tc.metric not in valid:
        raise ConfigError(f"--metric {tc.metric} does not apply to a {task} task", f"choose one of {list(valid)}")
    return dropped


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder: two processes training one run id would overwrite each other's folds."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root.parent / f".{root.name}.lock"  # beside the run folder: the folder holds only the contract's files
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"run {root.name} is being trained by another process (lock {lock})",
                           "wait for it to finish, or pick another --run-id") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_run(cfg: WorkspaceConfig, tc: TrainConfig, prep: Prepared, fold_file: Path, fold_hash: str, workdir: Path,
             unused_defaults: list[str] | None = None) -> RunFolder:
    """Create the run folder, or reopen it for resuming when data, folds, model and settings are the same."""
    root = Path(workdir) / "runs" / tc.run_id
    meta = {
        "run_id": tc.run_id, "created": now(), "code_version": code_version(),
        "workspace": cfg.to_dict(), "train": dataclasses.asdict(tc),
        "fold_file": str(Path(fold_file).resolve()), "fold_sha256": fold_hash, "fold_column": fold_column(tc.repeat),
        "task": cfg.competition.task, "classes": prep.ds.classes, "targets": prep.ds.targets,
        "input": get_spec(tc.model).input, "n_train": len(prep.ds.train), "n_test": len(prep.ds.test),
        "n_holdout": len(prep.ds.holdout), "train_ids_sha256": ids_hash(prep.ds.train["id"]), "skipped": prep.ds.skipped,
        "unused_train_defaults": unused_defaults or [],
        "class_changes": prep.ds.class_changes,  # [data] merge_classes / min_class_count: counts before and after
    }
    run = RunFolder(root)
    if (root / "config.json").is_file() and run.any_done():
        check_resumable(read_json(root / "config.json"), meta, root)
        log.info("resuming run %s", root)
    else:  # new, or nothing finished yet: (re)start with these settings
        write_json(root / "config.json", meta)
    return run



def check_resumable(old: dict, new: dict, root: Path) -> None:
    """Resuming mixes folds of two invocations: refuse unless data, folds, inputs, model and recipe are the same."""
    fix = "resume with the original settings, or pick a new --run-id"
    check_compatible(old, new, (f"{root.name} (on disk)", "this invocation"), ["fold_sha256", "train_ids_sha256", "classes", "task"],
                     error=RunError, fix=fix)
    inputs = signature_diff(old.get("workspace", {}), new["workspace"])
    if inputs:
        raise RunError(f"{root} was trained on other data/audio/feature settings ({', '.join(inputs)} differ)", fix)
    ignore = {"folds", "run_id", "device", "plots"}
    was = {**dataclasses.asdict(DEFAULTS), **old["train"]}  # a setting added since the run was made had its default
    changed = sorted(k for k, v in new["train"].items() if k not in ignore and was.get(k) != v)
    if changed:
        diff = ", ".join(f"{k}: {was.get(k)!r} -> {new['train'][k]!r}" for k in changed)
        raise RunError(f"{root} was trained with other settings ({diff}); resuming would mix folds trained differently", fix)


# ----------------------------------------------------------------------------- settings and the command


def resolve_train_config(cfg: WorkspaceConfig, model: str, flags: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
                         tuned: str | None = None, workdir: str | Path = ".") -> tuple[TrainConfig, dict[str, str]]:
    """Defaults < config [train] < tuned ``--params`` < ``--param`` < flags, routed by one rule (src.settings).

    Returns the validated TrainConfig and where each setting came from (for error messages).
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    model_params: dict[str, Any] = {}

    def put(train: dict[str, Any], source: str) -> None:
        model_params.update(train.pop("model_params", {}) or {})
        values.update(train)
        sources.update(dict.fromkeys(train, source))

    put(dict(cfg.train), f"[train] of {cfg.path.name}")
    if tuned:
        ff = Path(flags.get("fold_file") or fold_path(cfg, workdir)) if flags else fold_path(cfg, workdir)
        t_train, t_model = route_params(load_params(tuned, cfg, ff, model, workdir))
        put(t_train, f"--params {tuned}")
        model_params.update(t_model)
    p_train, p_model = route_params(params or {})
    put(p_train, "--param")
    model_params.update(p_model)
    put(dict(flags or {}), "the command line")
    tc = make_train_config({**values, "model": model, "model_params": model_params}, "train settings")
    return tc, sources


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser("train", "Train one model per fold; write runs/<run_id>/ (see README: artifact contract).")
    cli.add_common(ap)
    ap.add_argument("--model", required=True, help="registered model name or any timm model name (see README: Models)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a model parameter (hidden=[64,32], pretrained=package) or any train setting (lr=1e-3)")
    ap.add_argument("--params", help="tuned parameters: 'best' (the model's Optuna study) or optuna_studies/<study>.json")
    ap.add_argument("--pretrained-file", help="local ImageNet weights (file or folder) for a timm backbone; = --param pretrained=PATH")
    add_train_flags(ap)
    args = ap.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, args.workdir)
    params = parse_pairs(args.param)
    if args.pretrained_file:
        params["pretrained"] = args.pretrained_file
    tc, sources = resolve_train_config(cfg, args.model, flag_values(args), params, args.params, args.workdir)
    with cli.sigterm_as_interrupt():  # the fold in progress is recorded as interrupted, not left "running"
        run_dir = run_training(cfg, tc, args.workdir, sources=sources)
    m = read_json(run_dir / "metrics.json")
    print(f"{run_dir}: {m['metric']} {m['mean'][m['metric']]:.4f} ± {m['std'][m['metric']]:.4f} "
          f"(clip level, {len(m['folds_done'])} folds)")


if __name__ == "__main__":
    cli.run_command(main)
