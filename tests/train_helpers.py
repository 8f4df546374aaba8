"""Short training runs shared by tests/test_train.py and tests/bad_input/test_bad_training.py."""
from __future__ import annotations

import contextlib

import pytest

from src.artifacts import file_sha256, write_csv, write_json
from src.folds import fold_path, make_folds
from src.train import TrainConfig, run_training

MLP = {"hidden": [16], "dropout": 0.1}
CNN = {"channels": [4, 8], "dropout": 0.1}


def _write_folds(prep, workdir, n_repeats: int = 1):
    folds, report = make_folds(prep, n_repeats=n_repeats)
    path = fold_path(prep.cfg, workdir)
    write_csv(path, folds)
    write_json(path.with_suffix(".json"), {**report, "sha256": file_sha256(path)})
    return path


@contextlib.contextmanager
def no_plots():
    """Skip curves.png/confusion.png (matplotlib is ~40% of a tiny run); used where plots are not checked."""
    import src.plots

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(src.plots, "plot_curves", lambda *a, **k: None)
        mp.setattr(src.plots, "plot_confusion", lambda *a, **k: None)
        yield


def _train(cfg, prep, workdir, model, run_id, seed=3, epochs=3, params=None, plots=False, **kw):
    tc = TrainConfig(model=model, epochs=epochs, patience=10, batch_size=8, lr=3e-3, seed=seed, run_id=run_id,
                     device="cpu", model_params=dict(params or (MLP if model == "mlp" else CNN)), **kw)
    if plots:
        return run_training(cfg, tc, workdir, prep)
    with no_plots():
        return run_training(cfg, tc, workdir, prep)
