"""python -m src.study embeddings: penultimate representations of OOF clips, each from its own fold's model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import make_audio_competition
from train_helpers import _train, _write_folds

from src.study.__main__ import main as study_main
from src.train import TrainConfig, run_training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny audio competition with an MLP (vector), a CNN (spectrogram) and a logreg run, and an ensemble of two."""
    from src.config import load_config
    from src.ensemble import ensemble
    from src.features import prepare

    root = tmp_path_factory.mktemp("emb")
    comp = make_audio_competition(root, n_test=0)
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    _write_folds(prep, root)
    runs = {m: _train(cfg, prep, root, m, f"emb-{m}", epochs=2) for m in ("mlp", "cnn")}
    runs["logreg"] = run_training(cfg, TrainConfig(model="logreg", run_id="emb-logreg", device="cpu", plots=False), root, prep)
    ensemble(["emb-mlp", "emb-cnn"], name="emb-ens", workdir=root)
    return root, runs


@pytest.fixture(scope="module")
def report(trained):
    root, _ = trained
    out = root / "reports" / "emb"
    study_main(["embeddings", "emb-mlp", "emb-cnn", "emb-logreg", "--workdir", str(root), "--out", str(out), "--perplexity", "5"])
    return out, pd.read_csv(out / "table.csv")


def test_table_and_figures(report):
    out, table = report
    assert table["run"].tolist() == ["emb-mlp", "emb-cnn", "emb-logreg"]
    assert (out / "embeddings.png").stat().st_size > 1000 and (out / "table.md").is_file()
    assert (table["n_clips"] == 12).all()
    assert table.loc[table["run"] == "emb-logreg", "representation"].iloc[0].startswith("input vector (scikit-learn head")
    assert table.loc[table["run"] == "emb-cnn", "dims"].iloc[0] == 8  # channels [4, 8]: the head's input
    # recomputing the class probabilities from the study's forward passes reproduces the run's oof.npy
    assert (table["oof_max_abs_diff"] < 1e-4).all()
    assert table["centroid_accuracy"].between(0, 1).all() and table["nn_same_fold"].between(0, 1).all()


def test_silhouette_is_in_the_original_space(report):
    from sklearn.metrics import silhouette_score

    out, table = report
    for run in ("emb-mlp", "emb-cnn"):
        z = np.load(out / f"{run}_embeddings.npz")
        row = table[table["run"] == run].iloc[0]
        assert row["silhouette_euclidean"] == pytest.approx(silhouette_score(z["Z"], z["y"], metric="euclidean"), abs=1e-5)
        assert row["silhouette_cosine"] == pytest.approx(silhouette_score(z["Z"], z["y"], metric="cosine"), abs=1e-5)


def _direct_cnn(model, x: np.ndarray) -> np.ndarray:
    """SpecCNN up to its head, written out: normalise, conv blocks, mean over frequency, mean + max over time."""
    with torch.no_grad():
        t = ((torch.from_numpy(x) - model.x_mean) / model.x_std).unsqueeze(1)  # (B, 1, n_mels, T)
        f = model.net.features(t).mean(dim=2)  # (B, C, T')
        return (f.mean(dim=2) + f.amax(dim=2)).numpy()  # (B, C)


def _direct_mlp(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        h = (torch.from_numpy(x) - model.x_mean) / model.x_std  # (B, D)
        for layer in list(model.net)[:-1]:  # every layer but the final Linear
            h = layer(h)
        return h.numpy()


@pytest.mark.parametrize("run, direct", [("emb-mlp", _direct_mlp), ("emb-cnn", _direct_cnn)])
def test_each_clip_comes_from_its_own_fold_model(trained, report, run, direct):
    """A clip of fold k equals a direct forward of fold k's checkpoint (segments averaged), not of another fold's."""
    from src.config import load_config
    from src.features import prepare
    from src.folds import read_fold_file
    from src.inference import load_fold_model
    from src.runs import load_run

    root, _ = trained
    out, _ = report
    art = load_run(run, root)
    prep = prepare(load_config(art.config["workspace"]["path"]), root, workers=1)
    items = prep.items(art.config["input"], "train")
    folds = read_fold_file(art.config["fold_file"]).set_index("id")["fold"]
    z = np.load(out / f"{run}_embeddings.npz")
    models = {k: load_fold_model(root / "runs" / run / f"fold{k}.pt")[0] for k in (0, 1)}
    ids = prep.ds.train["id"].to_numpy()
    for i, clip in enumerate(z["ids"]):
        k = int(folds[clip])
        row = int(np.flatnonzero(ids == clip)[0])
        x = np.asarray(items.X[np.flatnonzero(items.row == row)], dtype=np.float32)
        own, other = direct(models[k], x).mean(0), direct(models[1 - k], x).mean(0)
        assert int(z["fold"][i]) == k
        np.testing.assert_allclose(z["Z"][i], own, rtol=1e-4, atol=1e-5)
        assert not np.allclose(z["Z"][i], other, rtol=1e-3, atol=1e-4)


def test_ensemble_is_a_clear_error(trained, capsys):
    from src.cli import run_command

    root, _ = trained
    with pytest.raises(SystemExit) as exc:
        run_command(study_main, ["embeddings", "emb-ens", "--workdir", str(root), "--out", str(root / "r2")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "emb-ens is an ensemble" in err and "pick a member" in err and "emb-mlp" in err
