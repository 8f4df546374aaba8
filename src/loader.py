"""Training batches streamed from the memory-mapped feature cache, prepared ahead of the model.

Why: holding a fold's segments in memory makes memory grow with the competition (a BirdCLEF-sized cache is
tens of GB), and preparing each batch in the training loop leaves a GPU waiting for the CPU. Here a fold is
a lazy row view of the cache (:func:`take_rows`), its normalisation statistics are accumulated in chunks
(:func:`streaming_stats`), and each epoch's batches are read, cropped and augmented by a
``torch.utils.data.DataLoader`` (background worker processes and pinned memory on CUDA; in-process on CPU
by default), ``prefetch_factor`` batches ahead.

Reproducibility does not depend on the number of workers: the epoch's batch order and one seed per batch
are drawn from the fold's generator in the main process (:func:`epoch_plan`); a batch's random crop and
affine transform use only its own seed, wherever it is prepared.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .augment import affine, crop_time
from .settings import TrainConfig

STATS_CHUNK = 256  # items per read when accumulating normalisation statistics (256 x 128 x 431 float64: 113 MB)


def take_rows(X, index: np.ndarray):
    """Rows ``index`` of ``X``: a lazy view when ``X`` is a memory-mapped row view (nothing is read), else a copy."""
    from .features import _MmapRows

    if isinstance(X, _MmapRows):
        return _MmapRows(X.base, X.index[index])
    return np.asarray(X[index], dtype=np.float32)


def streaming_stats(X, spec_input: bool, chunk: int = STATS_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (vector) or per-frequency-bin (spec: (n_mels, 1)) mean and std, read ``chunk`` items at a time.

    float64 sums of x and x^2 over every value; std is the population std (like ``np.std``), 1 where ~0."""
    axes = (0, 2) if spec_input else (0,)
    total = total_sq = None
    count = 0
    for s in range(0, len(X), chunk):
        xb = np.asarray(X[np.arange(s, min(s + chunk, len(X)))], dtype=np.float64)  # (b, D) or (b, F, T)
        part = xb.sum(axis=axes)
        part_sq = np.square(xb, out=xb).sum(axis=axes)  # in place: one chunk-sized float64 buffer
        total, total_sq = (part, part_sq) if total is None else (total + part, total_sq + part_sq)
        count += xb.size // part.size
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean * mean, 0.0))
    std = np.where(std > 1e-8, std, 1.0)
    if spec_input:
        mean, std = mean[:, None], std[:, None]  # broadcast over time
    return mean.astype(np.float32), std.astype(np.float32)


def per_item(X, fn, chunk: int = STATS_CHUNK) -> np.ndarray:
    """``fn`` applied to ``chunk`` items at a time and concatenated: a per-item reduction without reading all of X at once."""
    parts = [fn(np.asarray(X[np.arange(s, min(s + chunk, len(X)))], dtype=np.float32)) for s in range(0, len(X), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@dataclass
class EpochPlan:
    """The batches of one epoch (item indices) and one augmentation seed per batch."""

    batches: list[np.ndarray]
    seeds: np.ndarray


def epoch_plan(n: int, batch_size: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> EpochPlan:
    """Shuffled batches (or, with ``weights``, ``n`` items drawn with replacement); a last batch of one is dropped
    when there is more than one item (BatchNorm cannot train on it)."""
    order = rng.choice(n, size=n, p=weights) if weights is not None else rng.permutation(n)
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    batches = [b for b in batches if len(b) >= 2 or n == 1]
    return EpochPlan(batches, rng.integers(0, 2**31, size=len(batches)))


class PlannedBatches(torch.utils.data.Dataset):
    """Item ``i`` is the ``i``-th batch of a plan: inputs read from the (memory-mapped) rows, time-cropped and
    affine-transformed with the batch's own seed, as tensors; targets as they are."""

    def __init__(self, X, y: np.ndarray, plan: EpochPlan, tc: TrainConfig, fill: float):
        self.X, self.y, self.plan, self.tc, self.fill = X, y, plan, tc, fill

    def __len__(self) -> int:
        return len(self.plan.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        b, tc = self.plan.batches[i], self.tc
        xb = np.asarray(self.X[b], dtype=np.float32)  # (B, D) or (B, F, T)
        if xb.ndim == 3:
            rng = np.random.default_rng(int(self.plan.seeds[i]))
            xb = crop_time(xb, tc.crop_frames, rng)  # (B, F, T) -> (B, F, crop)
            if tc.rotate or tc.shift or tc.scale:
                xb = affine(xb, tc, int(rng.integers(2**31)), self.fill)
        return torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(self.y[b])


def loader_workers(tc: TrainConfig, device: torch.device) -> int:
    """``loader_workers`` as set, or for -1 (auto): in-process on CPU (the cores are busy with the model), else up
    to 8 background processes, leaving one core for the training process."""
    if tc.loader_workers >= 0:
        return tc.loader_workers
    return 0 if device.type != "cuda" else max(1, min(8, (os.cpu_count() or 2) - 1))


def batch_loader(X, y: np.ndarray, plan: EpochPlan, tc: TrainConfig, fill: float, device: torch.device) -> torch.utils.data.DataLoader:
    """The epoch's batches, ``prefetch_factor`` ahead per worker, pinned for asynchronous copies on CUDA."""
    workers = loader_workers(tc, device)
    return torch.utils.data.DataLoader(PlannedBatches(X, y, plan, tc, fill), batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None)
