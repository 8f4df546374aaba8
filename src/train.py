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
    patience: int = 8  # early stopping: epochs without improvement of the metric
    label_smoothing: float = 0.0
    seed: int = 42
    folds: list[int] | None = None  # None: every fold of the fold file
    repeat: int = 0  # repeated k-fold: which fold column
    device: str = "auto"
    metric: str = ""  # model selection metric; "" = the competition metric
    model_params: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    fold_file: str = ""  # default folds/<name>_k<n_splits>.csv


class RunError(RuntimeError):
    pass


def set_seed(seed: int) -> None:
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Wrapped(nn.Module):
    """Network plus the training fold's input (and target) statistics, so a checkpoint is self-contained."""

    def __init__(self, net: nn.Module, x_mean: np.ndarray, x_std: np.ndarray, spec_input: bool,
                 y_mean: np.ndarray | None = None, y_std: np.ndarray | None = None):
        super().__init__()
        self.net, self.spec_input = net, spec_input
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32))
        self.register_buffer("x_std", torch.as_tensor(x_std, dtype=torch.float32))
        self.register_buffer("y_mean", torch.as_tensor(0.0 if y_mean is None else y_mean, dtype=torch.float32))
        self.register_buffer("y_std", torch.as_tensor(1.0 if y_std is None else y_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.x_mean) / self.x_std  # vector: (B, D); spec: (B, n_mels, T) with (n_mels, 1) stats
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


def make_optimizer(params, tc: TrainConfig) -> torch.optim.Optimizer:
    name = tc.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay, nesterov=True)
    opts = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
    if name not in opts:
        raise ValueError(f"unknown optimizer {tc.optimizer!r}; choose from {['sgd', *opts]}")
    return opts[name](params, lr=tc.lr, weight_decay=tc.weight_decay)


def batches(n: int, batch_size: int, rng: np.random.Generator | None):
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, batch_size):
        yield idx[s:s + batch_size]


def train_one_epoch(model: nn.Module, X: np.ndarray, y: np.ndarray, opt, loss_fn, tc: TrainConfig,
                    rng: np.random.Generator, device: torch.device) -> float:
    model.train()
    total, n = 0.0, 0
    for b in batches(len(X), tc.batch_size, rng):
        if len(b) < 2 and len(X) > 1:
            continue  # BatchNorm cannot train on a batch of one
        xb, yb = torch.from_numpy(X[b]).to(device), torch.from_numpy(y[b]).to(device)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(b)
        n += len(b)
    return total / max(n, 1)


@torch.no_grad()
def predict(model: nn.Module, X: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Raw outputs (logits or standardised regression values) per item."""
    model.eval()
    outs = [model(torch.from_numpy(np.asarray(X[b], dtype=np.float32)).to(device)).float().cpu()
            for b in batches(len(X), max(batch_size, 256), None)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 1), np.float32)


def decode(model: Wrapped, out: np.ndarray, classification: bool) -> np.ndarray:
    if classification:
        return torch.softmax(torch.from_numpy(out), dim=1).numpy()
    return out * model.y_std.numpy() + model.y_mean.numpy()


def aggregate(item_pred: np.ndarray, item_row: np.ndarray, n_rows: int, fill: np.ndarray) -> np.ndarray:
    """Mean of item (segment) predictions per row (clip); rows without items get ``fill``."""
    out = np.zeros((n_rows, item_pred.shape[1]), dtype=np.float64)
    cnt = np.bincount(item_row, minlength=n_rows).astype(np.float64)
    np.add.at(out, item_row, item_pred)
    out = out / np.maximum(cnt, 1)[:, None]
    out[cnt == 0] = fill
    return out.astype(np.float32)


def evaluate(model: Wrapped, X: np.ndarray, y_items: np.ndarray, item_row: np.ndarray, y_rows: np.ndarray,
             loss_fn, tc: TrainConfig, classification: bool, targets: list[str], fill: np.ndarray,
             device: torch.device) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Item-level loss, row (clip)-level metrics, and (rows, clip-level predictions)."""
    out = predict(model, X, tc.batch_size, device)
    loss = float(loss_fn(torch.from_numpy(out), torch.from_numpy(y_items)).item())
    pred_items = decode(model, out, classification)
    rows, local = np.unique(item_row, return_inverse=True)
    pred_rows = aggregate(pred_items, local, len(rows), fill)
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


EpochHook = Callable[[int, int, float], None]  # (fold, epoch, validation metric); may raise to stop (Optuna pruning)


def fit_fold(prep: Prepared, tc: TrainConfig, fd: FoldData, k: int, device: torch.device, n_out: int,
             on_epoch: EpochHook | None = None) -> tuple[Wrapped, list[dict], dict]:
    """Train on one fold; return the best model (by the selection metric), the history and its metrics."""
    classification = prep.cfg.is_classification
    spec_input = get_spec(tc.model).input == "spec"
    set_seed(tc.seed + k)
    rng = np.random.default_rng(tc.seed + k)
    x_mean, x_std = input_stats(fd.X_tr, spec_input)
    y_mean = y_std = None
    y_tr = fd.y_tr
    if not classification:  # standardise regression targets with training-fold statistics
        y_mean, y_std = fd.y_tr.mean(0), fd.y_tr.std(0) + 1e-8
        y_tr = ((fd.y_tr - y_mean) / y_std).astype(np.float32)
    kw = {"in_features": fd.X_tr.shape[1]} if not spec_input else {"in_chans": 1}
    net = create_model(tc.model, num_classes=n_out, **kw, **tc.model_params)
    model = Wrapped(net, x_mean, x_std, spec_input, y_mean, y_std).to(device)
    opt = make_optimizer(model.parameters(), tc)
    train_loss = nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing) if classification else nn.MSELoss()
    val_loss = nn.CrossEntropyLoss() if classification else _ScaledMSE(model)
    fill = _prior(fd.y_tr, n_out, classification)
    metric = tc.metric or prep.cfg.competition.metric
    sign = 1 if greater_is_better(metric) else -1
    best, best_state, best_m, history, since = -np.inf, None, {}, [], 0
    for epoch in range(1, tc.epochs + 1):
        t0 = time.perf_counter()
        tl = train_one_epoch(model, fd.X_tr, y_tr, opt, train_loss, tc, rng, device)
        m, _, _ = evaluate(model, fd.X_va, fd.y_va, fd.row_va, _rows_target(fd), val_loss, tc, classification,
                           prep.ds.targets, fill, device)
        history.append({"epoch": epoch, "train_loss": tl, "val_loss": m["loss"], **{f"val_{a}": b for a, b in m.items() if a != "loss"},
                        "seconds": time.perf_counter() - t0})
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
    model.load_state_dict(best_state)
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
        "fold_file": str(fold_file), "fold_sha256": fold_hash, "fold_column": fold_column(tc.repeat),
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
    preds: dict[str, np.ndarray] = {}
    for split in ("test", "holdout"):
        it = items[split]
        out = decode(model, predict(model, it.X, tc.batch_size, device), classification) if len(it.row) else np.zeros((0, n_out))
        preds[split] = aggregate(out, it.row, it.n_rows, fill)
    va = decode(model, predict(model, fd.X_va, tc.batch_size, device), classification)
    rows, local = np.unique(fd.row_va, return_inverse=True)
    preds["val"] = aggregate(va, local, len(rows), fill)
    spec = get_spec(tc.model)
    save_torch(run.root / f"fold{k}.pt", {"state_dict": model.state_dict(), "model": tc.model, "model_params": tc.model_params,
                                          "input": spec.input, "n_out": n_out, "in_features": fd.X_tr.shape[1] if spec.input == "vector" else None,
                                          "classes": ds.classes, "targets": ds.targets, "fold": k, "best": best})
    write_json(run.root / f"fold{k}_metrics.json", {"best": best, "history": history})
    write_npz(run.root / f"fold{k}_preds.npz", val_rows=rows, val=preds["val"], test=preds["test"], holdout=preds["holdout"])
    return best


def finalize(prep: Prepared, run: Run, folds: list[int], metric: str) -> dict:
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
        "std": {a: float(np.std([per_fold[str(k)][a] for k in folds])) for a in keys},
        "oof": compute_metrics(classification, y[have], oof[have], ds.targets),
        "skipped": ds.skipped,
    }
    if len(ds.holdout):
        hold = np.mean(holdouts, axis=0).astype(np.float32)
        write_npy(run.root / "holdout.npy", hold)
        metrics["holdout"] = compute_metrics(classification, ds.labels("holdout"), hold, ds.targets)
    metrics["history"] = {str(k): h for k, h in histories.items()}
    write_json(run.root / "metrics.json", metrics)
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
    tc.run_id = tc.run_id or f"{cfg.name}-{tc.model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
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
    metrics = finalize(prep, run, todo, tc.metric)
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


def build_train_config(cfg: WorkspaceConfig, args: argparse.Namespace) -> TrainConfig:
    """Defaults <- workspace [train] section <- command line."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in cfg.train.items() if k in fields}
    unknown = sorted(set(cfg.train) - fields)
    if unknown:
        raise SystemExit(f"{cfg.path}: unknown key(s) {unknown} in [train]; valid: {sorted(fields)}")
    for key in ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "patience", "seed", "folds", "device", "run_id", "metric", "repeat", "fold_file"):
        val = getattr(args, key, None)
        if val is not None:
            base[key] = val
    base["model_params"] = {**base.get("model_params", {}), **parse_params(args.param)}
    return TrainConfig(model=args.model, **base)


def add_train_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", required=True)
    ap.add_argument("--model", required=True, help="registered model name (see src/models.py)")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--folds", type=int, nargs="+", help="train only these folds (default: all)")
    ap.add_argument("--run-id", dest="run_id", help="run folder name; an existing one is resumed")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", dest="batch_size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--weight-decay", dest="weight_decay", type=float)
    ap.add_argument("--optimizer")
    ap.add_argument("--patience", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--metric")
    ap.add_argument("--repeat", type=int, help="repeated k-fold: use fold column fold_r<N>")
    ap.add_argument("--fold-file", dest="fold_file")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="model parameter, e.g. --param hidden=[64,32]")


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
