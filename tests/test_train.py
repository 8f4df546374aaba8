"""Short training runs: seeded reproducibility, the run-folder artifact contract, resuming, refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import make_arrays_competition, make_audio_competition, make_tabular_competition
from train_helpers import _train, _write_folds

from src.artifacts import file_sha256, read_json, write_json
from src.config import load_config
from src.features import prepare
from src.folds import FoldError
from src.train import TrainConfig, run_training


def _losses(run_dir, folds=(0, 1)) -> list[tuple[float, float]]:
    out = []
    for k in folds:
        out += [(h["train_loss"], h["val_loss"]) for h in read_json(run_dir / f"fold{k}_metrics.json")["history"]]
    return out


@pytest.fixture(scope="module")
def cnn_runs(tmp_path_factory):
    """Audio CNN on log-mel segments: two runs with seed 5, one with seed 6 (fold 0 only)."""
    root = tmp_path_factory.mktemp("cnn_train")
    comp = make_audio_competition(root, n_per_class=4, n_test=3)
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    fp = _write_folds(prep, root)
    runs = {"a": _train(cfg, prep, root, "cnn", "a", seed=5, epochs=2, plots=True),
            "b": _train(cfg, prep, root, "cnn", "b", seed=5, epochs=2),
            "c": _train(cfg, prep, root, "cnn", "c", seed=6, epochs=2, folds=[0])}
    return comp, cfg, prep, root, fp, runs


@pytest.mark.parametrize("which", ["tab_runs", "cnn_runs"])
def test_same_seed_same_losses_and_oof_other_seed_differs(which, request):
    *_, runs = request.getfixturevalue(which)
    a, b, c = runs["a"], runs["b"], runs["c"]
    assert len(_losses(a)) >= 4
    assert _losses(a) == _losses(b), "two runs with the same seed gave different per-epoch losses"
    np.testing.assert_array_equal(np.load(a / "oof.npy"), np.load(b / "oof.npy"))
    np.testing.assert_array_equal(np.load(a / "test.npy"), np.load(b / "test.npy"))
    assert _losses(a, [0]) != _losses(c, [0]), "a different seed gave identical losses"


CONTRACT_FILES = ["config.json", "oof.npy", "test.npy", "metrics.json", "fold_status.json", "curves.png", "confusion.png"]
FOLD_FILES = ["fold{k}.pt", "fold{k}_preds.npz", "fold{k}_metrics.json"]


@pytest.mark.parametrize("which", ["tab_runs", "cnn_runs"])
def test_run_folder_follows_the_artifact_contract(which, request):
    comp, cfg, prep, root, fp, runs = request.getfixturevalue(which)
    run = runs["a"]
    for f in CONTRACT_FILES + [t.format(k=k) for k in (0, 1) for t in FOLD_FILES]:
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*"))
    folds = pd.read_csv(fp, dtype={"id": str})
    oof, test = np.load(run / "oof.npy"), np.load(run / "test.npy")
    n_classes = len(prep.ds.classes)
    assert oof.shape == (len(folds), n_classes) and test.shape == (len(comp.test_ids), n_classes)
    assert np.isfinite(oof).all() and np.allclose(oof.sum(1), 1, atol=1e-4) and np.allclose(test.sum(1), 1, atol=1e-4)
    # row-aligned with the fold file: fold k's OOF rows come from fold k's predictions
    for k in (0, 1):
        with np.load(run / f"fold{k}_preds.npz") as p:
            assert sorted(p.files) == ["holdout", "test", "val", "val_rows"]
            np.testing.assert_array_equal(p["val_rows"], np.flatnonzero(folds["fold"].to_numpy() == k))
            np.testing.assert_array_equal(oof[p["val_rows"]], p["val"])
    cfgj = read_json(run / "config.json")
    for key in ("workspace", "train", "fold_file", "fold_sha256", "fold_column", "classes", "targets", "task",
                "train_ids_sha256", "code_version", "skipped"):
        assert key in cfgj, key
    assert cfgj["fold_sha256"] == file_sha256(fp) and cfgj["fold_column"] == "fold" and cfgj["classes"] == prep.ds.classes
    assert cfgj["n_test"] == len(comp.test_ids)
    m = read_json(run / "metrics.json")
    for key in ("metric", "level", "folds", "mean", "std", "oof", "history", "skipped"):
        assert key in m, key
    assert m["metric"] == "accuracy" and m["level"] == "clip" and set(m["folds"]) == {"0", "1"}
    assert m["folds_done"] == [0, 1] and len(m["history"]["0"]) == len(read_json(run / "fold0_metrics.json")["history"])
    assert m["mean"]["accuracy"] == pytest.approx(np.mean([m["folds"][k]["accuracy"] for k in ("0", "1")]))
    y = prep.ds.labels("train")
    assert m["oof"]["accuracy"] == pytest.approx(float((oof.argmax(1) == y).mean()))
    status = read_json(run / "fold_status.json")
    assert {k: v["status"] for k, v in status.items()} == {"0": "done", "1": "done"}
    ck = torch.load(run / "fold0.pt", weights_only=False)
    assert ck["model"] in ("mlp", "cnn") and ck["fold"] == 0 and ck["classes"] == prep.ds.classes
    assert {"x_mean", "x_std"} <= set(ck["state_dict"])  # the fold's normalisation statistics travel with it


def test_resume_retrains_only_the_failed_fold(tab_runs):
    comp, cfg, prep, root, fp, runs = tab_runs
    run = runs["b"]
    before = _losses(run)
    status = read_json(run / "fold_status.json")
    status["1"].update(status="failed", error="RuntimeError: simulated crash")
    write_json(run / "fold_status.json", status)
    m0, m1 = (run / "fold0.pt").stat().st_mtime_ns, (run / "fold1.pt").stat().st_mtime_ns
    _train(cfg, prep, root, "mlp", "b", seed=3)
    assert (run / "fold0.pt").stat().st_mtime_ns == m0, "finished fold 0 was re-trained"
    assert (run / "fold1.pt").stat().st_mtime_ns != m1, "failed fold 1 was not re-trained"
    assert read_json(run / "fold_status.json")["1"]["status"] == "done"
    assert _losses(run) == before  # same seed: the re-trained fold reproduces its losses


def test_resume_after_missing_fold_predictions(tab_runs):
    comp, cfg, prep, root, fp, runs = tab_runs
    run = _train(cfg, prep, root, "mlp", "resume-missing", seed=3, folds=[0])
    assert read_json(run / "metrics.json")["folds_done"] == [0]
    assert np.isnan(np.load(run / "oof.npy")).any(1).sum() > 0  # fold 1 rows are NaN
    m0 = (run / "fold0.pt").stat().st_mtime_ns
    _train(cfg, prep, root, "mlp", "resume-missing", seed=3)
    assert (run / "fold0.pt").stat().st_mtime_ns == m0 and (run / "fold1_preds.npz").is_file()
    assert read_json(run / "metrics.json")["folds_done"] == [0, 1]
    assert not np.isnan(np.load(run / "oof.npy")).any()


def test_resume_refuses_other_model_or_folds(tab_runs):
    comp, cfg, prep, root, fp, runs = tab_runs
    from src.train import RunError

    with pytest.raises(RunError, match="other settings .*model: 'mlp' -> 'mlp_seed'"):
        _train(cfg, prep, root, "mlp_seed", "a", params={"hidden": [16]})


def test_training_refuses_missing_fold_file(tmp_path):
    comp = make_tabular_competition(tmp_path, n_test=0)
    cfg = load_config(comp.config)
    with pytest.raises(FoldError, match=r"python -m src\.folds"):
        _train(cfg, prepare(cfg, tmp_path), tmp_path, "mlp", "x", epochs=1)


def test_training_refuses_stale_fold_file(tab_runs, tmp_path):
    comp, cfg, prep, root, fp, runs = tab_runs
    stale = tmp_path / "stale.csv"
    pd.read_csv(fp).iloc[:-1].to_csv(stale, index=False)
    with pytest.raises(FoldError, match="does not match the data"):
        _train(cfg, prep, root, "mlp", "stale", epochs=1, fold_file=str(stale))


def test_repeat_column_is_used(tmp_path):
    comp = make_tabular_competition(tmp_path, n_per_class=8, n_test=0)
    cfg = load_config(comp.config)
    prep = prepare(cfg, tmp_path)
    fp = _write_folds(prep, tmp_path, n_repeats=2)
    run = _train(cfg, prep, tmp_path, "mlp", "r1", epochs=1, repeat=1)
    folds = pd.read_csv(fp)
    with np.load(run / "fold0_preds.npz") as p:
        np.testing.assert_array_equal(p["val_rows"], np.flatnonzero(folds["fold_r1"].to_numpy() == 0))
    assert read_json(run / "config.json")["fold_column"] == "fold_r1"


def test_arrays_holdout_predictions(tmp_path):
    comp = make_arrays_competition(tmp_path, n_train=24, n_holdout=8, n_test=4, melgrams=False)
    cfg = load_config(comp.config)
    prep = prepare(cfg, tmp_path)
    _write_folds(prep, tmp_path)
    run = _train(cfg, prep, tmp_path, "mlp", "arr", epochs=2)
    hold = np.load(run / "holdout.npy")
    assert hold.shape == (8, 4) and np.allclose(hold.sum(1), 1, atol=1e-4)
    m = read_json(run / "metrics.json")
    assert {"accuracy", "macro_f1"} <= set(m["holdout"])
    assert np.load(run / "test.npy").shape == (4, 4)


def test_skipped_clips_are_listed_in_the_run(tmp_path):
    """on_corrupt = 'skip': a corrupt training clip and a silent test clip are listed in config.json and metrics.json."""
    from fixtures import write_clip

    comp = make_audio_competition(tmp_path, n_per_class=4, n_test=3, data={"on_corrupt": "skip"})
    (comp.root / "train" / "low01.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    write_clip(comp.root / "test" / "t002.wav", np.zeros(4000, np.float32), 8000)
    cfg = load_config(comp.config)
    prep = prepare(cfg, tmp_path, workers=1)
    _write_folds(prep, tmp_path)
    run = _train(cfg, prep, tmp_path, "mlp", "skip", epochs=1)
    for f in ("config.json", "metrics.json"):
        listed = {(s["split"], s["id"]) for s in read_json(run / f)["skipped"]}
        assert listed == {("train", "low01"), ("test", "t002")}, f
    test = np.load(run / "test.npy")
    assert test.shape == (3, 3) and np.isfinite(test).all()  # the skipped test clip still gets a (prior) row
    assert len(np.load(run / "oof.npy")) == len(comp.train) - 1


@pytest.mark.parametrize("model,params,lr", [("cnn_seed", {"pool": True}, 1e-3), ("mlp", {"hidden": [64, 32], "dropout": 0.0}, 1e-2)])
def test_overfit_batch_drives_training_loss_to_zero(tmp_path, model, params, lr):
    """The NTUA lab's sanity check: on two fixed batches the network must fit its labels exactly.

    Random labels would make the test independent of the audio; here the fixture's own labels are
    used, so a broken input path (e.g. normalisation with the wrong axis) also shows up."""
    comp = make_audio_competition(tmp_path / "comp", n_per_class=6)
    cfg = load_config(comp.config)
    workdir = tmp_path / "work"
    prep = prepare(cfg, workdir, workers=1)
    _write_folds(prep, workdir)
    tc = TrainConfig(model=model, epochs=40, batch_size=8, lr=lr, weight_decay=0.0, optimizer="adam", folds=[0],
                     overfit_batches=2, mixup_alpha=0.4, seed=0, run_id="overfit", device="cpu",
                     model_params=params, plots=False, **({"freq_mask": 8} if model != "mlp" else {}))
    run_dir = run_training(cfg, tc, workdir, prep)
    history = read_json(run_dir / "fold0_metrics.json")["history"]
    losses = [h["train_loss"] for h in history]
    assert len(losses) == 40, "early stopping must be off while overfitting"
    assert losses[0] > 0.5 and min(losses[-5:]) < 0.02, losses
    assert history[-1]["val_accuracy"] == 1.0  # validation = the same two batches, augmentation off
