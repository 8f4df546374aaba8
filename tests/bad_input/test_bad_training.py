"""Training given bad input or a changed world: refused with the reason, and nothing already trained is lost.

Resuming a run id re-opens its folder; these cases used to mix folds trained on other data, folds or
settings, block a run id whose first fold had failed, let two processes write one run, or end a diverging
run with scikit-learn's "Input contains NaN".
"""
from __future__ import annotations

import pandas as pd
import pytest
from fixtures import make_audio_competition
from train_helpers import MLP, _train, _write_folds

from src.artifacts import read_json
from src.config import load_config
from src.features import prepare
from src.train import TrainConfig, run_training


def test_resume_refuses_a_changed_fold_file(tab_runs, tmp_path):
    """Blind spot: resuming on another fold file (same ids, other assignment) must be refused via fold_sha256."""
    comp, cfg, prep, root, fp, runs = tab_runs
    from src.errors import RunError

    other = tmp_path / "other_folds.csv"
    df = pd.read_csv(fp, dtype={"id": str})
    df["fold"] = 1 - df["fold"]
    df.to_csv(other, index=False)
    run = _train(cfg, prep, root, "mlp", "ff-resume", folds=[0])
    with pytest.raises(RunError, match="different fold file"):
        _train(cfg, prep, root, "mlp", "ff-resume", fold_file=str(other))
    assert read_json(run / "metrics.json")["folds_done"] == [0]  # nothing lost


@pytest.mark.parametrize("change", [{"lr": 1e-2}, {"batch_size": 4}, {"params": {"hidden": [8], "dropout": 0.1}}],
                         ids=["lr", "batch_size", "model_params"])
def test_resume_refuses_changed_settings(tab_runs, change):
    """Blind spot: resuming with other settings would mix folds trained differently."""
    comp, cfg, prep, root, fp, runs = tab_runs
    from src.errors import RunError

    rid = f"set-{next(iter(change))}"
    _train(cfg, prep, root, "mlp", rid, folds=[0])
    values = {"model": "mlp", "epochs": 3, "patience": 10, "batch_size": 8, "lr": 3e-3, "seed": 3, "run_id": rid, "device": "cpu",
              "model_params": dict(MLP), "plots": False}
    values.update({("model_params" if k == "params" else k): v for k, v in change.items()})
    with pytest.raises(RunError, match="other settings"):
        run_training(cfg, TrainConfig(**values), root, prep)


def test_resume_refuses_changed_input_settings(tmp_path):
    """A [features]/[audio] change between two invocations of one run id mixed folds on 50 and 26 inputs."""
    from src.errors import RunError

    comp = make_audio_competition(tmp_path / "comp", n_per_class=4)
    work = tmp_path / "work"
    cfg = load_config(comp.config)
    prep = prepare(cfg, work, workers=1)
    _write_folds(prep, work)
    _train(cfg, prep, work, "mlp", "inputs", folds=[0], epochs=1)
    cfg2 = load_config(comp.config)
    cfg2.features.vector = ["mfcc_stats"]
    with pytest.raises(RunError, match=r"other data/audio/feature settings \(features.vector differ\)"):
        _train(cfg2, prepare(cfg2, work, workers=1), work, "mlp", "inputs", epochs=1)


def test_failed_run_folder_does_not_block_its_run_id(tab_runs):
    """A run whose first fold failed left a config.json that blocked the same --run-id with other settings."""
    comp, cfg, prep, root, fp, runs = tab_runs
    from src.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown activation 'nope'"):  # fails in the model builder, fold 0
        _train(cfg, prep, root, "mlp", "failed-first", params={"hidden": [16], "activation": "nope"})
    assert read_json(root / "runs" / "failed-first" / "fold_status.json")["0"]["status"] == "failed"
    run = _train(cfg, prep, root, "mlp", "failed-first", params={"hidden": [16]}, folds=[0])
    assert read_json(run / "config.json")["train"]["model_params"] == {"hidden": [16]}


def test_two_processes_cannot_train_one_run_id(tab_runs):
    """The run lock: a second trainer of the same run id is refused while the first holds it."""
    comp, cfg, prep, root, fp, runs = tab_runs
    from src.errors import RunError
    from src.train import run_lock

    with run_lock(root / "runs" / "locked"):
        with pytest.raises(RunError, match="being trained by another process"):
            _train(cfg, prep, root, "mlp", "locked", epochs=1)


def test_diverging_run_says_so(tab_runs):
    comp, cfg, prep, root, fp, runs = tab_runs
    from src.errors import RunError

    tc = TrainConfig(model="mlp", epochs=3, batch_size=8, lr=1e12, optimizer="sgd", momentum=0.0, seed=3, run_id="diverge",
                     device="cpu", model_params={"hidden": [16], "batch_norm": False}, plots=False)
    with pytest.raises(RunError, match="training diverged .*lower --lr"):
        run_training(cfg, tc, root, prep)


def test_sigterm_records_the_fold_as_interrupted(tab_runs, tmp_path):
    """A training process stopped by SIGTERM (a scheduler, a Kaggle session ending) used to leave its fold 'running'."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    comp, cfg, prep, root, fp, runs = tab_runs
    status = root / "runs" / "sigterm" / "fold_status.json"
    argv = [sys.executable, "-m", "src.train", "--config", str(comp.config), "--workdir", str(root), "--model", "mlp",
            "--run-id", "sigterm", "--epochs", "100000", "--patience", "100000", "--param", "hidden=[16]", "--no-plots"]
    log = tmp_path / "train.log"
    proc = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[2], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        end = time.monotonic() + 120
        while not (status.is_file() and read_json(status).get("0", {}).get("status") == "running"):
            assert time.monotonic() < end and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 130, log.read_text()[-2000:]
    fold0 = read_json(status)["0"]
    assert fold0["status"] == "interrupted" and "signal" in fold0["error"]
