"""The multi-label demo (``python -m src.demo --multilabel``): overlapping events -> folds -> MLP + CNN -> mean
ensemble -> a BirdCLEF-style windowed submission (row_id ``<soundscape>_<end>``, one probability column per class)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.artifacts import read_json
from src.demo import CLASSES, ML_WINDOW, run_multilabel_demo, score_windows, synthesize_multilabel

REPO = Path(__file__).resolve().parent.parent


def _check_submission(sub_path: Path, data: Path) -> pd.DataFrame:
    """The submission has the sample's rows and columns, and independent probabilities in [0, 1] per class."""
    sub = pd.read_csv(sub_path)
    sample = pd.read_csv(data / "sample_submission.csv")
    assert list(sub.columns) == ["row_id", *CLASSES] == list(sample.columns)
    assert sub["row_id"].tolist() == sample["row_id"].tolist()
    P = sub[CLASSES].to_numpy()  # (n_windows, C)
    assert np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()
    assert not np.allclose(P.sum(1), 1.0)  # sigmoid outputs, not a softmax
    return sub


def test_synthesis_is_birdclef_shaped(tmp_path):
    synthesize_multilabel(tmp_path, n_train=12, n_soundscapes=2, soundscape_seconds=15, sites=3)
    train = pd.read_csv(tmp_path / "train.csv")
    assert list(train.columns) == ["filename", "labels", "artist"] and train["artist"].nunique() == 3
    sets = train["labels"].str.split(",")
    assert sets.map(len).max() >= 2 and set(sets.explode()) <= set(CLASSES)  # overlapping events
    sample = pd.read_csv(tmp_path / "sample_submission.csv")
    assert sample["row_id"].tolist() == [f"soundscape_{j:02d}_{e}" for j in range(2) for e in (5, 10, 15)]
    assert sorted(p.name for p in (tmp_path / "test_soundscapes").iterdir()) == ["soundscape_00.wav", "soundscape_01.wav"]
    import soundfile as sf

    assert sf.info(str(tmp_path / "test_soundscapes" / "soundscape_00.wav")).duration == pytest.approx(15.0)
    sol = pd.read_csv(tmp_path / "test_solution.csv")
    assert sol["row_id"].tolist() == sample["row_id"].tolist() and set(np.unique(sol[CLASSES])) <= {0, 1}


def test_multilabel_demo_small(tmp_path):
    out = run_multilabel_demo(tmp_path, epochs=2, synth={"n_train": 30, "n_soundscapes": 2, "soundscape_seconds": 10, "sites": 5})
    sub = _check_submission(out["submission"], out["data"])
    assert sub["row_id"].tolist() == [f"soundscape_{j:02d}_{e}" for j in range(2) for e in (ML_WINDOW, 2 * ML_WINDOW)]
    for run in [*out["runs"], out["ensemble"]]:
        assert read_json(run / "config.json")["task"] == "multilabel"
        assert np.load(run / "test.npy").shape == (4, len(CLASSES))
    assert {v["status"] for v in read_json(out["runs"][1] / "fold_status.json").values()} == {"done"}
    folds = pd.read_csv(out["folds"])
    assert folds.groupby("group")["fold"].nunique().max() == 1  # a site never in two folds
    scores = score_windows(out["submission"], out["data"] / "test_solution.csv")
    assert scores["rows"] == 4 and all(0 <= scores[k] <= 1 for k in ("roc_auc", "cmap", "lwlrap"))


@pytest.mark.slow
def test_multilabel_demo_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "src.demo", "--multilabel", "--workdir", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Hidden test set" in proc.stdout and "demo-ml-ens" in proc.stdout
    data = tmp_path / "data" / "demo_multilabel"
    _check_submission(tmp_path / "submissions" / "demo-ml-ens.csv", data)
    scores = score_windows(tmp_path / "submissions" / "demo-ml-ens.csv", data / "test_solution.csv")
    assert scores["roc_auc"] > 0.8  # unseen sites; chance is 0.5
    assert read_json(tmp_path / "runs" / "demo-ml-ens" / "metrics.json")["oof"]["roc_auc"] > 0.8
