"""Train one model per fold and write the run's artifacts.

``python -m src.train --config configs/x.toml --model cnn [--folds 0 1] [--run-id ID]``

The loop is deliberately plain (``train_one_epoch``, ``evaluate``, ``predict``):
read it top to bottom. Per fold: normalisation statistics from the training
fold only, best checkpoint by the validation metric, early stopping,
segment predictions averaged to clip level. Re-running with the same
``--run-id`` resumes: finished folds are kept, the rest are trained.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .artifacts import code_version, read_json, save_torch, setup_logging, write_json, write_npy, write_npz
from .config import WorkspaceConfig, load_config
from .features import Items, Prepared, prepare
from .folds import load_folds
from .metrics import compute_metrics, greater_is_better
from .models import create_model, get_spec

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: str
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # sgd | adam | adamw | rmsprop | adagrad
    momentum: float = 0.9
    scheduler: str = "none"  # none | step | cosine | onecycle | plateau
    warmup_epochs: int = 0  # linear warm-up (cosine)
    step_size: int = 10  # step scheduler: epochs per decay
    gamma: float = 0.5  # step / plateau decay factor
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    patience: int = 8  # early stopping: epochs without improvement of the metric
    label_smoothing: float = 0.0
    seed: int = 42
    folds: list[int] | None = None  # None: every fold of the fold file
    repeat: int = 0  # repeated k-fold: which fold column
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision (CUDA only: bf16 where supported, else fp16 + grad scaling)
    channels_last: bool = True  # CUDA only
    metric: str = ""  # model selection metric; "" = the competition metric
    model_params: dict[str, Any] = field(default_factory=dict)
    # augmentation (training only; see src/augment.py)
    freq_mask: int = 0
    time_mask: int = 0
    n_masks: int = 2
    rotate: float = 0.0
    shift: float = 0.0
    scale: float = 0.0
    aug_p: float = 0.5
    crop_frames: int = 0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    tta: int = 0  # test-time augmentation: number of time crops/shifts averaged (0/1 = off)
    # transfer learning (timm backbones; see src/transfer.py)
    freeze_epochs: int = 0  # backbone frozen for the first N epochs; -1 = frozen for good
    unfreeze_every: int = 0  # progressive unfreezing: one more layer group every N epochs (head first)
    freeze_bn: bool = False  # keep BatchNorm statistics of frozen groups fixed
    layer_decay: float = 1.0  # discriminative LR: group i gets lr * layer_decay ** (n_groups - 1 - i)
    init_checkpoint: str = ""  # fine-tune from one of our own fold<k>.pt checkpoints
    # regression / multi-task
    loss: str = "mse"  # regression: mse | l1
    task_weights: list[float] | None = None  # per-target loss weights (regression with several targets)
    aggregate: str = "mean"  # segment -> clip: mean | max | logmean (geometric mean of probabilities)
    overfit_batches: int = 0  # >0: train and validate on this many fixed batches (can the net fit at all?)
    plots: bool = True  # curves.png / confusion.png (tuning and tests switch them off)
    run_id: str = ""
    fold_file: str = ""  # default folds/<name>_k<n_splits>.csv

    def augment_config(self):
        from .augment import AugmentConfig

        return AugmentConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(AugmentConfig)})


AUG_FIELDS = ("freq_mask", "time_mask", "rotate", "shift", "scale", "crop_frames", "mixup_alpha", "cutmix_alpha")


class RunError(RuntimeError):
    pass


def set_seed(seed: int) -> None:
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Wrapped(nn.Module):
    """Network plus the training fold's input (and target) statistics, so a checkpoint is self-contained.

    ``augment`` (set by the training loop, not saved) runs on the normalised batch in training mode
    only, so SpecAugment's zero mask means "training-fold mean" and never leaks into evaluation.
    """

    def __init__(self, net: nn.Module, x_mean: np.ndarray, x_std: np.ndarray, spec_input: bool,
                 y_mean: np.ndarray | None = None, y_std: np.ndarray | None = None):
        super().__init__()
        self.net, self.spec_input = net, spec_input
        self.augment: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32))
        self.register_buffer("x_std", torch.as_tensor(x_std, dtype=torch.float32))
        self.register_buffer("y_mean", torch.as_tensor(0.0 if y_mean is None else y_mean, dtype=torch.float32))
        self.register_buffer("y_std", torch.as_tensor(1.0 if y_std is None else y_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.x_mean) / self.x_std  # vector: (B, D); spec: (B, n_mels, T) with (n_mels, 1) stats
        if self.training and self.augment is not None:
            x = self.augment(x)
        if self.spec_input:
            x = x.unsqueeze(1)  # (B, 1, n_mels, T)
        return self.net(x)


def input_stats(X: np.ndarray, spec_input: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (vector) or per-frequency-bin (spec) mean/std of the training fold."""
    axes = (0, 2) if spec_input else (0,)
    mean = X.mean(axis=axes, dtype=np.float64)
    std = X.std(axis=axes, dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    if spec_input:
        mean, std = mean[:, None], std[:, None]  # broadcast over time
    return mean.astype(np.float32), std.astype(np.float32)


def make_optimizer(groups: list[dict], tc: TrainConfig) -> torch.optim.Optimizer:
    """``groups``: torch param groups, each with its own ``lr`` (discriminative LRs survive schedulers)."""
    name = tc.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay, nesterov=True)
    opts = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
    if name not in opts:
        raise ValueError(f"unknown optimizer {tc.optimizer!r}; choose from {['sgd', *opts]}")
    return opts[name](groups, lr=tc.lr, weight_decay=tc.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, tc: TrainConfig, steps_per_epoch: int):
    """Returns (scheduler, per_step). Per-step schedulers advance every batch, the others every epoch."""
    total = max(1, tc.epochs * steps_per_epoch)
    if tc.scheduler == "none":
        return None, False
    if tc.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, tc.step_size, tc.gamma), False
    if tc.scheduler == "plateau":
        mode = "max" if greater_is_better(tc.metric) else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=tc.gamma, patience=max(1, tc.patience // 3)), False
    if tc.scheduler == "cosine":
        warm = tc.warmup_epochs * steps_per_epoch

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warm) / max(1, total - warm))))
        return torch.optim.lr_scheduler.LambdaLR(opt, f), True
    if tc.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total), True
    raise ValueError(f"unknown scheduler {tc.scheduler!r}; choose none | step | cosine | onecycle | plateau")


class RegressionLoss(nn.Module):
    """Weighted sum of per-target MSE or L1 (multi-task regression, e.g. valence/energy/danceability)."""

    def __init__(self, kind: str, weights: list[float] | None, n_targets: int):
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"loss {kind!r}: expected 'mse' or 'l1'")
        self.kind = kind
        w = torch.ones(n_targets) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if len(w) != n_targets:
            raise ValueError(f"task_weights has {len(w)} entries for {n_targets} targets")
        self.register_buffer("w", w / w.sum())

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        err = (out - y).abs() if self.kind == "l1" else (out - y) ** 2  # (B, n_targets)
        return (err.mean(0) * self.w.to(err.device)).sum()


def batches(n: int, batch_size: int, rng: np.random.Generator | None):
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, batch_size):
        yield idx[s:s + batch_size]


def _autocast(device: torch.device, tc: TrainConfig):
    import contextlib

    if device.type != "cuda" or not tc.amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@dataclass
class Step:
    """What one optimisation step needs besides the batch."""

    opt: torch.optim.Optimizer
    loss_fn: nn.Module
    sched: Any = None
    per_step: bool = False
    scaler: Any = None
    n_classes: int = 0  # > 0: classification (mixup makes soft targets)


def train_one_epoch(model: Wrapped, X: np.ndarray, y: np.ndarray, st: Step, tc: TrainConfig,
                    rng: np.random.Generator, device: torch.device, fill: float = 0.0) -> float:
    from .augment import affine, crop_time, mix_batch

    aug = tc.augment_config()
    model.train()
    total, n = 0.0, 0
    for b in batches(len(X), tc.batch_size, rng):
        if len(b) < 2 and len(X) > 1:
            continue  # BatchNorm cannot train on a batch of one
        xb = X[b]
        if xb.ndim == 3:
            xb = crop_time(xb, aug.crop_frames, rng)  # (B, F, T) -> (B, F, crop)
            if aug.rotate or aug.shift or aug.scale:
                xb = affine(xb, aug, int(rng.integers(2**31)), fill)
        xb, yb = torch.from_numpy(np.ascontiguousarray(xb)).to(device, non_blocking=True), torch.from_numpy(y[b]).to(device)
        if st.n_classes and (aug.mixup_alpha or aug.cutmix_alpha):
            xb, yb = mix_batch(xb, yb, aug, rng, st.n_classes)  # soft targets (B, C)
        with _autocast(device, tc):
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
        total += loss.item() * len(b)
        n += len(b)
    return total / max(n, 1)


@torch.no_grad()
def predict(model: nn.Module, X: np.ndarray, tc: TrainConfig, device: torch.device) -> np.ndarray:
    """Raw outputs (logits or standardised regression values) per item; TTA averages several time views."""
    from .augment import crop_time, tta_views

    model.eval()
    outs = []
    bs = tc.batch_size if np.ndim(X[:1]) == 3 else max(tc.batch_size, 256)  # big image nets: stay at training batch size
    for b in batches(len(X), bs, None):
        xb = np.asarray(X[b], dtype=np.float32)
        views = tta_views(xb, tc.tta, tc.crop_frames) if (tc.tta > 1 and xb.ndim == 3) else [crop_time(xb, tc.crop_frames, None) if xb.ndim == 3 else xb]
        with _autocast(device, tc):
            o = torch.stack([model(torch.from_numpy(np.ascontiguousarray(v)).to(device)).float() for v in views]).mean(0)
        outs.append(o.cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 1), np.float32)


def decode(model: Wrapped, out: np.ndarray, classification: bool) -> np.ndarray:
    if classification:
        return torch.softmax(torch.from_numpy(out), dim=1).numpy()
    return out * model.y_std.cpu().numpy() + model.y_mean.cpu().numpy()


def aggregate(item_pred: np.ndarray, item_row: np.ndarray, n_rows: int, fill: np.ndarray, how: str = "mean") -> np.ndarray:
    """Segment (item) predictions -> one per row (clip); rows without items get ``fill``.

    ``mean`` of probabilities (default), ``max`` (renormalised), or ``logmean`` (geometric mean).
    """
    cnt = np.bincount(item_row, minlength=n_rows).astype(np.float64)
    out = np.zeros((n_rows, item_pred.shape[1]), dtype=np.float64)
    if how == "max":
        out[:] = -np.inf
        np.maximum.at(out, item_row, item_pred)
        out = np.where(np.isfinite(out), out, 0.0)
        out = out / np.maximum(out.sum(1, keepdims=True), 1e-12)
    elif how == "logmean":
        np.add.at(out, item_row, np.log(np.clip(item_pred, 1e-12, None)))
        out = np.exp(out / np.maximum(cnt, 1)[:, None])
        out = out / np.maximum(out.sum(1, keepdims=True), 1e-12)
    elif how == "mean":
        np.add.at(out, item_row, item_pred)
        out = out / np.maximum(cnt, 1)[:, None]
    else:
        raise ValueError(f"aggregate {how!r}: expected mean | max | logmean")
    out[cnt == 0] = fill
    return out.astype(np.float32)


def evaluate(model: Wrapped, X: np.ndarray, y_items: np.ndarray, item_row: np.ndarray, y_rows: np.ndarray,
             loss_fn, tc: TrainConfig, classification: bool, targets: list[str], fill: np.ndarray,
             device: torch.device) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Item-level loss, row (clip)-level metrics, and (rows, clip-level predictions)."""
    out = predict(model, X, tc, device)
    loss = float(loss_fn(torch.from_numpy(out), torch.from_numpy(y_items)).item())
    pred_items = decode(model, out, classification)
    rows, local = np.unique(item_row, return_inverse=True)
    how = tc.aggregate if classification else "mean"
    pred_rows = aggregate(pred_items, local, len(rows), fill, how)
    m = compute_metrics(classification, y_rows[rows], pred_rows, targets)
    m["loss"] = loss
    if classification:
        m["segment_accuracy"] = float((pred_items.argmax(1) == y_items).mean())
    return m, rows, pred_rows


# ----------------------------------------------------------------------------- one fold


@dataclass
class FoldData:
    """Items of one fold, loaded into memory (from the memory-mapped cache) once."""

    X_tr: np.ndarray
    y_tr: np.ndarray
    X_va: np.ndarray
    y_va: np.ndarray
    row_va: np.ndarray


def fold_data(train: Items, y_rows: np.ndarray, fold_of_row: np.ndarray, k: int) -> FoldData:
    is_val = fold_of_row[train.row] == k
    tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    X_tr = np.asarray(train.X[tr_idx], dtype=np.float32)
    X_va = np.asarray(train.X[va_idx], dtype=np.float32)
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
    y_mean = y_std = None
    if not prep.cfg.is_classification:
        y_mean, y_std = fd.y_tr.mean(0), fd.y_tr.std(0) + 1e-8
    if spec_input:
        from .augment import crop_time

        shape = crop_time(fd.X_tr[:1], tc.crop_frames, None).shape[1:]
        params = dict(tc.model_params)
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


def optimisation(model: Wrapped, tc: TrainConfig, n_train: int, classification: bool, n_out: int, device: torch.device):
    """Optimizer (with discriminative LR groups for timm backbones), scheduler, loss, freezer."""
    from .models import SpecToImage

    freezer = None
    if isinstance(model.net, SpecToImage):
        from .transfer import Freezer, param_groups

        groups = param_groups(model.net.backbone, tc.lr, layer_decay=tc.layer_decay, weight_decay=tc.weight_decay)
        if tc.freeze_epochs or tc.unfreeze_every or tc.freeze_bn:
            freezer = Freezer(model.net.backbone, freeze_epochs=tc.freeze_epochs, unfreeze_every=tc.unfreeze_every, freeze_bn=tc.freeze_bn)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": tc.lr}]
    opt = make_optimizer(groups, tc)
    steps = max(1, -(-n_train // tc.batch_size))
    sched, per_step = make_scheduler(opt, tc, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing) if classification else RegressionLoss(tc.loss, tc.task_weights, n_out)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and tc.amp and not torch.cuda.is_bf16_supported()) else None
    return Step(opt, loss_fn, sched, per_step, scaler, n_out if classification else 0), freezer


def fit_fold(prep: Prepared, tc: TrainConfig, fd: FoldData, k: int, device: torch.device, n_out: int,
             on_epoch: EpochHook | None = None) -> tuple[Wrapped, list[dict], dict]:
    """Train on one fold; return the best model (by the selection metric), the history and its metrics."""
    classification = prep.cfg.is_classification
    set_seed(tc.seed + k)
    rng = np.random.default_rng(tc.seed + k)
    if tc.overfit_batches:
        fd = overfit_subset(fd, tc)
    model = build_model(prep, tc, fd, n_out)
    y_tr = fd.y_tr if classification else ((fd.y_tr - fd.y_tr.mean(0)) / (fd.y_tr.std(0) + 1e-8)).astype(np.float32)
    model = model.to(device)
    if device.type == "cuda" and tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    aug = tc.augment_config()
    if (aug.freq_mask or aug.time_mask) and model.spec_input and not tc.overfit_batches:
        from functools import partial

        from .augment import spec_augment

        model.augment = partial(spec_augment, cfg=aug)
    if tc.overfit_batches:
        tc = dataclasses.replace(tc, **{f: 0 for f in AUG_FIELDS}, patience=tc.epochs + 1)
    st, freezer = optimisation(model, tc, len(fd.X_tr), classification, n_out, device)
    val_loss = nn.CrossEntropyLoss() if classification else _ScaledMSE(model)
    fill = _prior(fd.y_tr, n_out, classification)
    metric = tc.metric or prep.cfg.competition.metric
    sign = 1 if greater_is_better(metric) else -1
    x_fill = float(model.x_mean.mean())
    best, best_state, best_m, history, since = -np.inf, None, {}, [], 0
    for epoch in range(1, tc.epochs + 1):
        t0 = time.perf_counter()
        if freezer is not None:
            freezer.apply(epoch)  # epochs count from 1
        tl = train_one_epoch(model, fd.X_tr, y_tr, st, tc, rng, device, x_fill)
        m, _, _ = evaluate(model, fd.X_va, fd.y_va, fd.row_va, _rows_target(fd), val_loss, tc, classification,
                           prep.ds.targets, fill, device)
        if st.sched is not None and not st.per_step:
            st.sched.step(m[metric]) if tc.scheduler == "plateau" else st.sched.step()
        history.append({"epoch": epoch, "train_loss": tl, "val_loss": m["loss"], **{f"val_{a}": b for a, b in m.items() if a != "loss"},
                        "lr": st.opt.param_groups[-1]["lr"], "seconds": time.perf_counter() - t0})
        log.info("fold %d epoch %3d  train_loss %.4f  val_loss %.4f  val_%s %.4f  (%.1fs)", k, epoch, tl, m["loss"], metric, m[metric], history[-1]["seconds"])
        if on_epoch is not None:
            on_epoch(k, epoch, m[metric])
        if sign * m[metric] > best:
            best, best_m, since = sign * m[metric], m, 0
            best_state = {a: b.detach().clone() for a, b in model.state_dict().items()}
            best_m["epoch"] = epoch
        else:
            since += 1
            if since >= tc.patience:
                log.info("fold %d: early stop at epoch %d (best epoch %d)", k, epoch, best_m["epoch"])
                break
    if best_state is None:
        raise RunError(f"fold {k}: validation {metric} never improved (NaN every epoch?); check the inputs and the learning rate")
    model.load_state_dict(best_state)
    model.augment = None
    return model, history, best_m


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


def _prior(y: np.ndarray, n_out: int, classification: bool) -> np.ndarray:
    """Prediction for rows without usable audio: the training fold's class frequencies (or mean target)."""
    if classification:
        return (np.bincount(y, minlength=n_out) / max(len(y), 1)).astype(np.float32)
    return y.mean(0).astype(np.float32)


# ----------------------------------------------------------------------------- a run


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda requested but torch.cuda.is_available() is False")
    return torch.device(name)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Run:
    """The run folder: config, per-fold status, per-fold predictions, final artifacts."""

    def __init__(self, root: Path):
        self.root = root
        self.status: dict[str, dict] = read_json(root / "fold_status.json") if (root / "fold_status.json").is_file() else {}

    def set_status(self, k: int, **kw: Any) -> None:
        self.status.setdefault(str(k), {}).update(kw)
        write_json(self.root / "fold_status.json", self.status)

    def done(self, k: int) -> bool:
        return self.status.get(str(k), {}).get("status") == "done" and (self.root / f"fold{k}_preds.npz").is_file()


def open_run(cfg: WorkspaceConfig, tc: TrainConfig, prep: Prepared, fold_file: Path, fold_hash: str, workdir: Path) -> Run:
    """Create the run folder, or reopen it for resuming when its fold file and model match."""
    root = Path(workdir) / "runs" / tc.run_id
    meta = {
        "run_id": tc.run_id, "created": _now(), "code_version": code_version(),
        "workspace": cfg.to_dict(), "train": dataclasses.asdict(tc),
        "fold_file": str(Path(fold_file).resolve()), "fold_sha256": fold_hash, "fold_column": fold_column(tc.repeat),
        "task": cfg.competition.task, "classes": prep.ds.classes, "targets": prep.ds.targets,
        "input": get_spec(tc.model).input, "n_train": len(prep.ds.train), "n_test": len(prep.ds.test),
        "n_holdout": len(prep.ds.holdout), "train_ids_sha256": _ids_hash(prep.ds.train["id"]),
        "skipped": prep.ds.skipped,
    }
    if (root / "config.json").is_file():
        old = read_json(root / "config.json")
        for key in ("fold_sha256", "train_ids_sha256", "classes"):
            if old.get(key) != meta[key]:
                raise RunError(f"{root} exists with a different {key}; resume only works for the same data and folds — pick a new --run-id")
        if old["train"]["model"] != tc.model:
            raise RunError(f"{root} holds model {old['train']['model']!r}, not {tc.model!r}; pick a new --run-id")
        ignore = {"folds", "run_id", "device", "plots"}
        changed = sorted(k for k, v in meta["train"].items() if k not in ignore and old["train"].get(k) != v)
        if changed:
            diff = ", ".join(f"{k}: {old['train'].get(k)!r} -> {meta['train'][k]!r}" for k in changed)
            raise RunError(f"{root} was trained with other settings ({diff}); "
                           "resuming would mix folds trained differently — pick a new --run-id")
        log.info("resuming run %s", root)
    else:
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "config.json", meta)
    return Run(root)


def _ids_hash(ids) -> str:
    from .artifacts import stable_hash

    return stable_hash(list(map(str, ids)), n=16)


def fold_column(repeat: int) -> str:
    return "fold" if repeat == 0 else f"fold_r{repeat}"


def train_fold(prep: Prepared, tc: TrainConfig, run: Run, items: dict[str, Items], fold_of_row: np.ndarray,
               k: int, device: torch.device, on_epoch: EpochHook | None = None) -> dict:
    """Train fold k and write ``fold<k>.pt`` and ``fold<k>_preds.npz`` atomically."""
    ds, classification = prep.ds, prep.cfg.is_classification
    n_out = len(ds.classes) if classification else len(ds.targets)
    y_rows = ds.labels("train")
    fd = fold_data(items["train"], y_rows, fold_of_row, k)
    if not len(fd.X_va) or not len(fd.X_tr):
        raise RunError(f"fold {k} has no validation or no training rows in the fold file")
    model, history, best = fit_fold(prep, tc, fd, k, device, n_out, on_epoch)
    fill = _prior(fd.y_tr, n_out, classification)
    how = tc.aggregate if classification else "mean"
    preds: dict[str, np.ndarray] = {}
    for split in ("test", "holdout"):
        it = items[split]
        out = decode(model, predict(model, it.X, tc, device), classification) if len(it.row) else np.zeros((0, n_out))
        preds[split] = aggregate(out, it.row, it.n_rows, fill, how)
    va = decode(model, predict(model, fd.X_va, tc, device), classification)
    rows, local = np.unique(fd.row_va, return_inverse=True)
    preds["val"] = aggregate(va, local, len(rows), fill, how)
    spec = get_spec(tc.model)
    save_torch(run.root / f"fold{k}.pt", {"state_dict": model.state_dict(), "model": tc.model, "model_params": tc.model_params,
                                          "input": spec.input, "n_out": n_out, "in_features": fd.X_tr.shape[1] if spec.input == "vector" else None,
                                          "classes": ds.classes, "targets": ds.targets, "fold": k, "best": best})
    write_json(run.root / f"fold{k}_metrics.json", {"best": best, "history": history})
    write_npz(run.root / f"fold{k}_preds.npz", val_rows=rows, val=preds["val"], test=preds["test"], holdout=preds["holdout"])
    return best


def finalize(prep: Prepared, run: Run, folds: list[int], metric: str, plots: bool = True) -> dict:
    """Assemble oof/test/holdout from the per-fold files; write metrics.json and plots."""
    from .plots import plot_confusion, plot_curves

    ds, classification = prep.ds, prep.cfg.is_classification
    n_out = len(ds.classes) if classification else len(ds.targets)
    oof = np.full((len(ds.train), n_out), np.nan, dtype=np.float32)
    tests, holdouts, per_fold, histories = [], [], {}, {}
    for k in folds:
        p = np.load(run.root / f"fold{k}_preds.npz")
        oof[p["val_rows"]] = p["val"]
        tests.append(p["test"])
        holdouts.append(p["holdout"])
        fm = read_json(run.root / f"fold{k}_metrics.json")
        per_fold[str(k)] = fm["best"]
        histories[k] = fm["history"]
    write_npy(run.root / "oof.npy", oof)
    write_npy(run.root / "test.npy", np.mean(tests, axis=0).astype(np.float32))
    y = ds.labels("train")
    have = ~np.isnan(oof).any(1)
    keys = [a for a in per_fold[str(folds[0])] if a != "epoch"]
    metrics = {
        "metric": metric, "level": "clip", "level_note": "scores are per row (clip); segment_accuracy is per segment",
        "folds": per_fold, "folds_done": folds,
        "mean": {a: float(np.mean([per_fold[str(k)][a] for k in folds])) for a in keys},
        "std": {a: float(np.std([per_fold[str(k)][a] for k in folds], ddof=1)) if len(folds) > 1 else 0.0 for a in keys},
        "oof": compute_metrics(classification, y[have], oof[have], ds.targets),
        "skipped": ds.skipped,
    }
    if len(ds.holdout):
        hold = np.mean(holdouts, axis=0).astype(np.float32)
        write_npy(run.root / "holdout.npy", hold)
        metrics["holdout"] = compute_metrics(classification, ds.labels("holdout"), hold, ds.targets)
    metrics["history"] = {str(k): h for k, h in histories.items()}
    write_json(run.root / "metrics.json", metrics)
    if not plots:
        return metrics
    plot_curves(histories, metric if f"val_{metric}" in histories[folds[0]][0] else "loss", run.root / "curves.png")
    if classification:
        plot_confusion(y[have], oof[have].argmax(1), ds.classes, run.root / "confusion.png")
    return metrics


def run_training(cfg: WorkspaceConfig, tc: TrainConfig, workdir: str | Path = ".", prep: Prepared | None = None,
                 on_epoch: EpochHook | None = None, on_fold: Callable[[int, dict], None] | None = None) -> Path:
    """Train every requested fold (resuming finished ones) and write the run artifacts. Returns the run folder.

    ``on_epoch(fold, epoch, value)`` and ``on_fold(fold, best_metrics)`` let a caller (the Optuna objective)
    watch progress and stop a run early by raising; the fold is then recorded as failed/pruned.
    """
    workdir = Path(workdir)
    prep = prep or prepare(cfg, workdir)
    from .folds import fold_path

    fold_file = Path(tc.fold_file) if tc.fold_file else fold_path(cfg, workdir)
    folds_df, fold_hash = load_folds(cfg, prep.ds.train["id"], workdir, fold_file)
    col = fold_column(tc.repeat)
    if col not in folds_df:
        raise RunError(f"{fold_file} has no column {col!r}: re-create it with python -m src.folds --repeats {tc.repeat + 1} --force")
    fold_of_row = folds_df[col].to_numpy()
    todo = sorted(set(fold_of_row)) if tc.folds is None else list(tc.folds)
    bad = sorted(set(todo) - set(fold_of_row))
    if bad:
        raise RunError(f"fold(s) {bad} not in {fold_file} (it has {sorted(set(fold_of_row))})")
    tc.run_id = tc.run_id or f"{cfg.name}-{tc.model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    tc.metric = tc.metric or cfg.competition.metric
    run = open_run(cfg, tc, prep, fold_file, fold_hash, workdir)
    spec = get_spec(tc.model)
    items = {s: prep.items(spec.input, s) for s in ("train", "test", "holdout")}
    device = resolve_device(tc.device)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    for k in todo:
        if run.done(k):
            log.info("fold %d already done in %s: skipped", k, run.root)
            continue
        t0 = time.perf_counter()
        run.set_status(k, status="running", started=_now(), error=None)
        try:
            best = train_fold(prep, tc, run, items, fold_of_row, k, device, on_epoch)
        except BaseException as exc:  # recorded, then re-raised: never swallowed
            run.set_status(k, status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                           error=f"{type(exc).__name__}: {exc}", finished=_now())
            raise
        run.set_status(k, status="done", finished=_now(), seconds=round(time.perf_counter() - t0, 2))
        if on_fold is not None:
            on_fold(k, best)
    metrics = finalize(prep, run, todo, tc.metric, tc.plots)
    log.info("run %s: %s %.4f ± %.4f over %d fold(s) (clip level); artifacts in %s", tc.run_id, tc.metric,
             metrics["mean"][tc.metric], metrics["std"][tc.metric], len(todo), run.root)
    return run.root


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are Python literals when they parse (``hidden=[64,32]``), else strings."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"--param {p!r}: expected key=value")
        k, v = p.split("=", 1)
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


CLI_SKIP = {"model", "model_params"}


def build_train_config(cfg: WorkspaceConfig, args: argparse.Namespace) -> TrainConfig:
    """Defaults <- workspace [train] section <- tuned --params <- command-line flags."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(cfg.train) - fields)
    if unknown:
        raise SystemExit(f"{cfg.path}: unknown key(s) {unknown} in [train]; valid: {sorted(fields)}")
    base = dict(cfg.train)
    params = dict(base.pop("model_params", {}))
    if getattr(args, "params", None):
        for key, val in load_tuned_params(args.params, cfg, args).items():
            (base if key in fields else params)[key] = val
    for f in dataclasses.fields(TrainConfig):
        val = getattr(args, f.name, None)
        if f.name not in CLI_SKIP and val is not None:
            base[f.name] = val
    params.update(parse_params(args.param))
    if getattr(args, "pretrained_file", None):
        params["pretrained"] = args.pretrained_file
    return TrainConfig(model=args.model, model_params=params, **base)


def load_tuned_params(spec: str, cfg: WorkspaceConfig, args: argparse.Namespace) -> dict[str, Any]:
    """``--params best`` or a JSON file written by src.tune; src.tune refuses params tuned on other folds."""
    from . import tune
    from .artifacts import file_sha256
    from .folds import FoldError, fold_path

    ff = Path(args.fold_file) if getattr(args, "fold_file", None) else fold_path(cfg, args.workdir)
    if not ff.is_file():
        raise FoldError(f"{ff} missing: run python -m src.folds --config {cfg.path}")
    return tune.load_params(spec, cfg, file_sha256(ff), args.model, args.workdir)


def add_train_args(ap: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``--batch-size``, ``--freq-mask``, ``--amp/--no-amp`` ...)."""
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True, help="registered model name or any timm model name (see README)")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="model parameter, e.g. --param hidden=[64,32] --param pretrained=True")
    ap.add_argument("--params", help="tuned parameters: 'best' (the model's Optuna study) or optuna_studies/<study>.json")
    ap.add_argument("--pretrained-file", help="local ImageNet weights (file or folder) for a timm backbone")
    ap.add_argument("--overfit-batch", dest="overfit_batches", type=int, help="train and validate on N fixed batches")
    for f in dataclasses.fields(TrainConfig):
        if f.name in CLI_SKIP or f.name == "overfit_batches":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            ap.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in ("folds",):
            ap.add_argument(flag, dest=f.name, type=int, nargs="+")
        elif f.name == "task_weights":
            ap.add_argument(flag, dest=f.name, type=float, nargs="+")
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            ap.add_argument(flag, dest=f.name, type=typ)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train one model per fold; write runs/<run_id>/ (see README: artifact contract).")
    add_train_args(ap)
    args = ap.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config)
    try:
        get_spec(args.model)
    except KeyError as exc:
        raise SystemExit(str(exc.args[0])) from None
    tc = build_train_config(cfg, args)
    run_dir = run_training(cfg, tc, args.workdir)
    m = read_json(run_dir / "metrics.json")
    print(f"{run_dir}: {m['metric']} {m['mean'][m['metric']]:.4f} ± {m['std'][m['metric']]:.4f} (clip level, {len(m['folds_done'])} folds)")


if __name__ == "__main__":
    main()
