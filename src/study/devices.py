"""CPU vs GPU: the same short training on every available device, seconds per epoch and samples per second side by side.

``python -m src.study devices --config configs/music4_mfcc.toml --model mlp_seed [--epochs 2] [--folds 0]``

Trains one ``src.train.run_training`` per device (``cpu``, and ``cuda`` when ``torch.cuda.is_available()``)
with identical settings: the chosen folds (default: the first), ``--epochs`` (default 2) and no early
stopping, so every device runs the same number of epochs. Epoch 1 is reported apart (it pays for lazy
initialisation and, on a GPU, kernel selection and transfers); ``sec_per_epoch`` is the mean of the
later epochs. ``samples_per_s`` = training items of the fold / ``sec_per_epoch`` (an epoch includes its
validation pass). On a machine without CUDA the table has the CPU row only and says so.

Writes ``reports/devices/table.csv`` + ``table.md``; the runs are ``runs/study-devices-<model>-<device>``
(replaced on each call: a timing run has nothing to resume).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from .. import cli
from ..config import load_config
from ..features import Prepared, prepare, run_recipe
from ..folds import fold_numbers, fold_path, load_folds_for
from ..models import get_spec
from ..runs import fold_column, load_run
from ..settings import TrainConfig, add_train_flags, flag_values, parse_pairs
from ..train import resolve_train_config, run_training
from .controlled import warm_up
from .report import report_dir, write_table

log = logging.getLogger(__name__)

STUDIES = ("devices",)
DEFAULT_EPOCHS = 2


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for a block (None: left alone), then restored."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def device_name(device: str) -> str:
    """A readable name: the GPU's, or the CPU model from /proc/cpuinfo."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")), model)
    return model


def train_items(prep: Prepared, tc: TrainConfig, fold_file: Path, folds: list[int]) -> int:
    """Training items (segments for spectrogram models, rows for vectors) per fold, averaged over the folds timed."""
    spec = get_spec(tc.model)
    items = prep.items(spec.input, "train", run_recipe(spec.recipe, tc))
    fdf, _ = load_folds_for(prep, prep.workdir, fold_file)
    fold_of_item = fdf[fold_column(tc.repeat)].to_numpy()[items.row]
    return int(round(np.mean([(fold_of_item != k).sum() for k in folds])))


def time_device(cfg: Any, base: TrainConfig, prep: Prepared, device: str, threads: int | None, n_items: int,
                sources: dict[str, str]) -> dict[str, Any]:
    """Train the short run on ``device`` (with ``threads`` torch threads) and read its epoch seconds back from the run's history."""
    run_id = f"study-devices-{base.model}-{device}" + (f"-t{threads}" if threads else "")
    tc = dataclasses.replace(base, device=device, run_id=run_id, patience=base.epochs + 1)
    shutil.rmtree(prep.workdir / "runs" / tc.run_id, ignore_errors=True)
    with torch_threads(threads):
        n_threads = torch.get_num_threads()
        t0 = time.perf_counter()
        run_dir = run_training(cfg, tc, prep.workdir, prep=prep, sources=sources)
        wall = time.perf_counter() - t0
    m = load_run(run_dir).metrics
    hist = [m["history"][str(k)] for k in m["folds_done"]]
    first = float(np.mean([h[0]["seconds"] for h in hist]))
    later = [e["seconds"] for h in hist for e in h[1:]]
    per_epoch = float(np.mean(later)) if later else first
    return {"device": device, "name": device_name(device), "threads": n_threads, "epochs": tc.epochs, "folds": len(hist), "train_items": n_items,
            "sec_epoch1": round(first, 3), "sec_per_epoch": round(per_epoch, 3), "samples_per_s": round(n_items / per_epoch, 1),
            m["metric"]: m["mean"][m["metric"]], "wall_s": round(wall, 1), "run": run_dir.name}


def run(args: argparse.Namespace) -> Path:
    cfg = load_config(args.config, args.workdir)
    workdir = Path(args.workdir)
    flags = {**flag_values(args), "plots": False}
    flags.setdefault("epochs", DEFAULT_EPOCHS)
    base, sources = resolve_train_config(cfg, args.model, flags, parse_pairs(args.param), workdir=workdir)
    prep = prepare(cfg, workdir)
    ffile = Path(base.fold_file) if base.fold_file else fold_path(cfg, workdir)
    fdf, _ = load_folds_for(prep, workdir, ffile)
    base.folds = list(base.folds) if base.folds else fold_numbers(fdf, fold_column(base.repeat))[:1]
    devices = available_devices()
    if "cuda" not in devices:
        log.warning("no CUDA device here (torch.cuda.is_available() is False): timing the CPU only")
    n_items = train_items(prep, base, ffile, base.folds)
    warm_up()  # the first device timed must not pay the one-off imports alone
    plan = [("cpu", n) for n in (args.cpu_threads or [None])] + [(d, None) for d in devices if d != "cpu"]
    rows = [time_device(cfg, base, prep, d, n, n_items, sources) for d, n in plan]
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("samples_per_s") + 1, "speedup", (table["sec_per_epoch"].iloc[0] / table["sec_per_epoch"]).round(2))
    out = report_dir(workdir, "devices", args.out)
    write_table(out, table, title=f"Devices: {base.model} on {cfg.name}", notes=notes(base, cfg, devices))
    print(table.drop(columns=["run"]).to_string(index=False))
    return out


def notes(base: TrainConfig, cfg: Any, devices: list[str]) -> str:
    lines = [
        f"Same run on each device: model `{base.model}`, {cfg.name}, fold(s) {base.folds}, {base.epochs} epoch(s) without early "
        f"stopping, batch size {base.batch_size}, seed {base.seed}; AMP {'on' if base.amp else 'off'} on CUDA.",
        "sec_epoch1: first epoch (lazy initialisation, kernel selection); sec_per_epoch: mean of the later epochs (training + "
        "validation pass); samples_per_s: training items / sec_per_epoch; speedup: the first row's sec_per_epoch / this row's.",
        "threads: torch's intra-op threads (--cpu-threads; on a CPU shared with other jobs, more threads than free cores can be "
        "many times slower).",
        "Scores after so few epochs only show the runs are alike, not how good the model is.",
    ]
    if "cuda" not in devices:
        lines.append("No CUDA device on this machine (torch.cuda.is_available() is False): the CPU was timed alone.")
    return "\n".join(f"- {ln}" for ln in lines)


def add_arguments(ap: argparse.ArgumentParser, name: str) -> None:
    cli.add_common(ap)
    ap.add_argument("--model", required=True, help="registered model name")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a model parameter, as in src.train")
    ap.add_argument("--out", help="report folder (default: <workdir>/reports/devices/)")
    ap.add_argument("--cpu-threads", dest="cpu_threads", type=int, nargs="+", metavar="N",
                    help="one CPU row per torch thread count (default: torch's own, from $OMP_NUM_THREADS or the cores)")
    add_train_flags(ap, skip={"model", "model_params", "plots", "run_id", "device"})
