"""Smoke test of every stage as a command (subprocesses) on a tiny generated competition, and the demo."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import make_audio_competition

from src.artifacts import read_json

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str, ok: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_stages_end_to_end(tmp_path):
    comp = make_audio_competition(tmp_path / "comp", n_per_class=4, n_test=5)
    work = tmp_path / "work"
    cfg = ["--config", str(comp.config), "--workdir", str(work)]

    out = _run("src.features", *cfg).stdout
    assert f"{len(comp.train) + len(comp.test_ids)} clips" in out and "0 unusable" in out
    meta = read_json(next((work / "cache" / "features").glob("tiny-*/meta.json")))
    assert meta["n_clips"] == len(comp.train) + len(comp.test_ids) and meta["n_errors"] == 0

    _run("src.folds", *cfg)
    folds = pd.read_csv(work / "folds" / "tiny_k2.csv", dtype={"id": str})
    assert folds["id"].tolist() == comp.train["id"].tolist() and set(folds["fold"]) == {0, 1}
    assert (work / "folds" / "tiny_k2.json").is_file()

    _run("src.train", *cfg, "--model", "mlp", "--epochs", "2", "--run-id", "cli-mlp", "--param", "hidden=[16]")
    _run("src.train", *cfg, "--model", "cnn", "--epochs", "2", "--run-id", "cli-cnn", "--param", "channels=[4,8]",
         "--batch-size", "16")
    for rid in ("cli-mlp", "cli-cnn"):
        run = work / "runs" / rid
        for f in ("config.json", "oof.npy", "test.npy", "metrics.json", "fold0.pt", "fold1.pt", "fold_status.json"):
            assert (run / f).is_file(), f"{rid}/{f}"
        assert np.load(run / "oof.npy").shape == (len(comp.train), 3)
        assert np.load(run / "test.npy").shape == (len(comp.test_ids), 3)
        assert len(read_json(run / "fold0_metrics.json")["history"]) == 2  # --epochs reached the run
    assert read_json(work / "runs" / "cli-mlp" / "config.json")["train"]["model_params"]["hidden"] == [16]

    _run("src.ensemble", "cli-mlp", "cli-cnn", "--name", "cli-ens", "--workdir", str(work))
    ens = work / "runs" / "cli-ens"
    np.testing.assert_allclose(np.load(ens / "test.npy"),
                               (np.load(work / "runs" / "cli-mlp" / "test.npy") + np.load(work / "runs" / "cli-cnn" / "test.npy")) / 2,
                               rtol=1e-5)

    _run("src.submit", "cli-ens", "--workdir", str(work), "-m", "smoke")
    sub = pd.read_csv(work / "submissions" / "cli-ens.csv", dtype=str)
    sample = pd.read_csv(comp.root / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns)
    assert sub["id"].tolist() == sample["id"].tolist()
    assert set(sub["label"]) <= set(comp.extra["classes"])
    index = pd.read_csv(work / "submissions" / "index.csv", dtype=str, keep_default_na=False)
    assert index["file"].tolist() == ["cli-ens.csv"] and index["message"].tolist() == ["smoke"]


@pytest.mark.slow
def test_demo(tmp_path):
    proc = _run("src.demo", "--workdir", str(tmp_path), timeout=1800)
    assert "Hidden test accuracy" in proc.stdout
    data = tmp_path / "data" / "demo"
    sub = pd.read_csv(tmp_path / "submissions" / "demo-ens.csv", dtype=str)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    assert sub["id"].tolist() == sample["id"].tolist() and list(sub.columns) == list(sample.columns)
    sol = pd.read_csv(data / "test_solution.csv", dtype=str)
    assert (sub["label"].to_numpy() == sol["label"].to_numpy()).mean() > 0.5  # 4 classes: chance is 0.25
    for rid in ("demo-mlp", "demo-cnn"):
        run = tmp_path / "runs" / rid
        for f in ("config.json", "oof.npy", "test.npy", "metrics.json", "fold_status.json", "curves.png", "confusion.png"):
            assert (run / f).is_file(), f"{rid}/{f}"
        assert {v["status"] for v in read_json(run / "fold_status.json").values()} == {"done"}
        assert len(read_json(run / "metrics.json")["folds"]) == 5
    for f in ("config.json", "oof.npy", "test.npy", "metrics.json"):
        assert (tmp_path / "runs" / "demo-ens" / f).is_file()
    assert (tmp_path / "folds" / "demo_k5.csv").is_file()
