"""Atomic file writes, hashing and the run-folder contract.

Every artifact that a later stage trusts is written to a temporary file in the
same folder and then renamed over the target (``os.replace`` is atomic on
POSIX), so an interrupted process leaves either the old file or the new one,
never half of one.

Run folder contract (``runs/<run_id>/``)::

    config.json        everything needed to reproduce (workspace config, train
                       config, fold file path + sha256, classes, code version)
    fold<k>.pt         best checkpoint of fold k
    fold<k>_preds.npz  fold k's predictions: val_rows, val (OOF rows), test,
                       holdout; lets an interrupted run resume and lets
                       per-fold runs be merged
    oof.npy            (n_train, C) out-of-fold predictions, row-aligned with
                       the fold file
    test.npy           (n_test, C) test predictions averaged over folds
    holdout.npy        (n_holdout, C) predictions on a labelled holdout split
    metrics.json       per-fold metrics + history, mean/std over folds
    fold_status.json   {fold: {status, started, finished, error}}
    curves.png, confusion.png
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; artifacts get normal file permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_npy(path: str | Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    write_bytes(path, buf.getvalue())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def write_csv(path: str | Path, df: Any, **kwargs: Any) -> None:
    """Atomic ``DataFrame.to_csv``."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)


def save_torch(path: str | Path, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_figure(path: str | Path, fig: Any) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_hash(obj: Any, n: int = 12) -> str:
    """Short hash of a JSON-able object (sorted keys), used for cache keys."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def code_version() -> str:
    """git commit of the workspace code (+ '-dirty'), or 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
