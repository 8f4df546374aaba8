"""Paths the suite used to leave untested: regression end to end, test-time augmentation, and the CUDA branches.

* Regression (emotion-style targets): binned stratification in the fold file, the multi-target L1/MSE loss
  with task weights, Spearman/RMSE per target in metrics.json, numeric submission columns, and the clear
  refusal of the stages that need class labels.
* TTA: ``predict`` averages exactly the views ``tta_views`` makes, and a run with ``--tta`` trains end to end.
* GPU (``-m gpu``, skipped without CUDA): AMP (bf16, or fp16 with a GradScaler) and channels-last training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import make_audio_competition, write_toml

from src.artifacts import read_json
from src.config import load_config
from src.errors import EnsembleError
from src.features import prepare
from src.folds import fold_path
from src.folds import main as folds_main
from src.settings import TrainConfig
from src.train import run_training


def make_regression_competition(root, n: int = 60, n_test: int = 8, seed: int = 0):
    """Two targets that depend on the features (valence linear, energy monotone), plus a sample submission."""
    rng = np.random.default_rng(seed)
    droot = root / "data" / "emo"
    droot.mkdir(parents=True)
    X = rng.normal(0, 1, (n + n_test, 5))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(5)])
    df.insert(0, "id", [f"s{i:03d}" for i in range(n + n_test)])
    df["valence"] = X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.1, n + n_test)
    df["energy"] = np.tanh(X[:, 2]) * 3 + rng.normal(0, 0.1, n + n_test)
    df.iloc[:n].to_csv(droot / "train.csv", index=False)
    df.iloc[n:].drop(columns=["valence", "energy"]).to_csv(droot / "test.csv", index=False)
    pd.DataFrame({"id": df["id"].iloc[n:], "valence": 0.0, "energy": 0.0}).to_csv(droot / "sample_submission.csv", index=False)
    return write_toml(root / "configs" / "emo.toml", {
        "competition": {"name": "emo", "task": "regression", "metric": "spearman", "targets": ["valence", "energy"]},
        "data": {"kind": "tabular", "root": "../data/emo", "train_csv": "train.csv", "test_csv": "test.csv",
                 "sample_submission": "sample_submission.csv"},
        "folds": {"n_splits": 3, "seed": 1},
    }), df.iloc[n:]


def test_regression_end_to_end(tmp_path, capsys):
    from src import cli
    from src.ensemble import ensemble
    from src.submit import submit
    from src.train import main as train_main

    config, test_df = make_regression_competition(tmp_path)
    work = tmp_path / "work"
    folds_main(["--config", str(config), "--workdir", str(work)])
    folds = pd.read_csv(fold_path(load_config(config), work))
    assert set(folds["label"].astype(str)) == {str(b) for b in range(5)}  # quantile bins of the first target
    per_fold = pd.crosstab(folds["label"], folds["fold"])
    assert (per_fold.max(axis=1) - per_fold.min(axis=1)).max() <= 1  # every bin spread over the folds

    for rid, extra in (("emo-l1", ["--loss", "l1", "--task-weights", "1", "2"]), ("emo-mse", [])):
        cli.run_command(train_main, ["--config", str(config), "--workdir", str(work), "--model", "mlp", "--epochs", "60",
                                     "--lr", "3e-3", "--patience", "60", "--run-id", rid, "--param", "hidden=[32]", "--param",
                                     "dropout=0.0", *extra])
    m = read_json(work / "runs" / "emo-l1" / "metrics.json")
    assert m["metric"] == "spearman" and {"spearman_valence", "spearman_energy", "rmse_valence", "rmse"} <= set(m["oof"])
    assert m["oof"]["spearman_valence"] > 0.8 and m["oof"]["spearman_energy"] > 0.8, m["oof"]
    assert read_json(work / "runs" / "emo-l1" / "config.json")["train"]["task_weights"] == [1.0, 2.0]
    oof = np.load(work / "runs" / "emo-l1" / "oof.npy")
    assert oof.shape == (60, 2) and np.isfinite(oof).all()

    path = submit("emo-l1", "emo", "regression", work)
    sub = pd.read_csv(path)
    assert list(sub.columns) == ["id", "valence", "energy"] and sub["id"].tolist() == test_df["id"].tolist()
    assert np.corrcoef(sub["valence"], test_df["valence"])[0, 1] > 0.8  # numeric columns, in target units
    with pytest.raises(EnsembleError, match="regression"):
        ensemble(["emo-l1", "emo-mse"], "emo-ens", work)


def test_regression_loss_weights_and_mixup_refusal(tmp_path):
    from src.errors import ConfigError
    from src.optim import RegressionLoss
    from src.train import check_train_config

    loss = RegressionLoss("l1", [1.0, 3.0], 2)
    out, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert loss(out, y).item() == pytest.approx((1.0 * 1 + 3.0 * 2) / 4)
    config, _ = make_regression_competition(tmp_path)
    cfg = load_config(config)
    with pytest.raises(ConfigError, match="--mixup-alpha 0.2 .*applies to classification only"):
        check_train_config(cfg, TrainConfig(model="mlp", mixup_alpha=0.2), {})


class TimeProbe(torch.nn.Module):
    """Output = mean of the first 3 frames of mel bin 0, so every time view gives a different answer."""

    def forward(self, x):  # (B, n_mels, T)
        return torch.stack([x[:, 0, :3].mean(1), -x[:, 0, :3].mean(1)], dim=1)


def test_predict_averages_exactly_the_tta_views():
    from src.augment import tta_views
    from src.inference import predict

    X = np.random.default_rng(0).normal(size=(5, 4, 20)).astype(np.float32)
    for crop in (0, 12):
        tc = TrainConfig(model="cnn", tta=4, crop_frames=crop, batch_size=2)
        got = predict(TimeProbe(), X, tc, torch.device("cpu"))
        want = np.mean([TimeProbe()(torch.from_numpy(np.ascontiguousarray(v))).numpy() for v in tta_views(X, 4, crop)], axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        plain = predict(TimeProbe(), X, TrainConfig(model="cnn", crop_frames=crop, batch_size=2), torch.device("cpu"))
        assert not np.allclose(got, plain)  # TTA really changed the prediction


def test_training_with_tta_end_to_end(tmp_path):
    comp = make_audio_competition(tmp_path / "comp", n_per_class=4)
    cfg = load_config(comp.config)
    work = tmp_path / "work"
    prep = prepare(cfg, work, workers=1)
    folds_main(["--config", str(comp.config), "--workdir", str(work)])
    tc = TrainConfig(model="cnn", epochs=2, batch_size=8, tta=3, crop_frames=8, run_id="tta", device="cpu", plots=False,
                     model_params={"channels": [4, 8]})
    run = run_training(cfg, tc, work, prep)
    assert np.isfinite(np.load(run / "test.npy")).all() and read_json(run / "config.json")["train"]["tta"] == 3


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("amp, channels_last", [(True, True), (True, False), (False, True)])
def test_cuda_training_amp_and_channels_last(tmp_path, amp, channels_last):
    """The CUDA branches: autocast (bf16 where supported, else fp16 + GradScaler) and channels-last memory."""
    comp = make_audio_competition(tmp_path / "comp", n_per_class=4)
    cfg = load_config(comp.config)
    work = tmp_path / "work"
    prep = prepare(cfg, work, workers=1)
    folds_main(["--config", str(comp.config), "--workdir", str(work)])
    tc = TrainConfig(model="cnn", epochs=2, batch_size=8, device="cuda", amp=amp, channels_last=channels_last,
                     run_id=f"gpu-{amp}-{channels_last}", plots=False, model_params={"channels": [4, 8]})
    run = run_training(cfg, tc, work, prep)
    assert np.isfinite(np.load(run / "oof.npy")).all()
    assert len(read_json(run / "fold0_metrics.json")["history"]) == 2


@pytest.mark.gpu
@cuda
def test_cuda_autocast_dtype_matches_the_device():
    from src.inference import autocast

    with autocast(torch.device("cuda"), TrainConfig(model="cnn")):
        y = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
    assert y.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
