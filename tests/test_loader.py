"""Bounded memory: folds are views of the memory-mapped cache, statistics and batches are read in chunks."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from src.features import Items, _MmapRows
from src.inference import Wrapped
from src.loader import batch_loader, epoch_plan, per_item, streaming_stats, take_rows
from src.models import create_model
from src.optim import optimisation
from src.settings import TrainConfig
from src.train import fold_data, input_stats, train_one_epoch

N, F, T = 3000, 64, 128  # 3000 segments of 64 x 128 float16: a 49 MB cache, float32 in memory would be 98 MB


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "logmel.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(N, F, T))
    rng = np.random.default_rng(0)
    for s in range(0, N, 500):
        mm[s:s + 500] = rng.normal(-40, 10, (min(500, N - s), F, T)).astype(np.float16)
    mm.flush()
    del mm
    base = np.load(path, mmap_mode="r")
    rows = np.arange(N) // 3  # 3 segments per clip
    return Items(_MmapRows(base, np.arange(N)), rows, N // 3), rows


def _peak_mb(fn) -> tuple[object, float]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_fold_views_read_nothing_and_stats_match_numpy(cache):
    items, rows = cache
    folds = np.arange(N // 3) % 5  # fold per clip: 200 clips (600 segments) in each
    fd, peak = _peak_mb(lambda: fold_data(items, np.zeros(N // 3, np.int64), folds, 0))
    assert isinstance(fd.X_tr, _MmapRows) and len(fd.X_tr) == 2400 and peak < 1.0  # indices only
    (mean, std), peak = _peak_mb(lambda: input_stats(fd.X_tr, True))
    assert peak < 60  # chunks of 256 items (16 MB in float64); the fold in float64 would be 150 MB
    dense = np.asarray(fd.X_tr[np.arange(len(fd.X_tr))], dtype=np.float64)
    np.testing.assert_allclose(mean[:, 0], dense.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(std[:, 0], dense.std(axis=(0, 2)), rtol=1e-5)


def test_an_epoch_streams_batches_from_the_memmap(cache):
    """A whole training epoch over a 49 MB cache with traced numpy memory far below the fold's size."""
    items, rows = cache
    X = take_rows(items.X, np.arange(N))
    y = (rows % 4).astype(np.int64)
    torch.manual_seed(0)
    net = create_model("cnn", 4, in_chans=1, input_shape=(F, T), channels=[4, 8], dropout=0.0)
    mean, std = streaming_stats(X, True)
    model = Wrapped(net, mean, std, True)
    tc = TrainConfig(model="cnn", batch_size=64, crop_frames=96, loader_workers=0)
    st, _ = optimisation(model, tc, N, "classification", 4, torch.device("cpu"))
    loss, peak = _peak_mb(lambda: train_one_epoch(model, X, y, st, tc, np.random.default_rng(0), torch.device("cpu")))
    assert np.isfinite(loss) and peak < 20, peak  # the fold as float32 would be 98 MB


def test_batches_do_not_depend_on_the_number_of_workers(cache):
    items, rows = cache
    X = take_rows(items.X, np.arange(300))
    y = (rows[:300] % 4).astype(np.int64)
    tc = TrainConfig(model="cnn", batch_size=32, crop_frames=64, rotate=10.0, aug_p=1.0)
    out = {}
    for workers in (0, 2):
        plan = epoch_plan(300, 32, np.random.default_rng(5))
        tc.loader_workers = workers
        out[workers] = [x for x, _ in batch_loader(X, y, plan, tc, -40.0, torch.device("cpu"))]
    assert len(out[0]) == len(out[2]) == 10  # 300 items: 9 full batches and one of 12
    for a, b in zip(out[0], out[2]):
        assert torch.equal(a, b)


def test_plan_drops_a_last_batch_of_one_and_per_item_chunks():
    plan = epoch_plan(65, 32, np.random.default_rng(0))
    assert [len(b) for b in plan.batches] == [32, 32] and len(plan.seeds) == 2
    assert sorted(np.concatenate(plan.batches).tolist()) != list(range(65))  # one item waits for the next epoch
    X = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    np.testing.assert_array_equal(per_item(X, lambda x: x.max(axis=(1, 2)), chunk=4), X.max(axis=(1, 2)))
