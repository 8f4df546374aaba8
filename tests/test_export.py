"""``python -m src.export RUN --onnx`` and ``python -m src.predict ... --onnx``: ONNX agrees with PyTorch.

Tiny runs (mlp on clip vectors, cnn, the fixed-size cnn_seed, crnn, a logreg head, a mean ensemble) on a generated
competition: every fold exports, onnxruntime's outputs match PyTorch's within ``src.export.TOLERANCE``, predicting
with ``--onnx`` gives the run's own predictions, and what cannot be exported is refused with the fix.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from fixtures import make_audio_competition
from train_helpers import _train, _write_folds

from src.cli import run_command
from src.config import load_config
from src.errors import CheckpointError, ConfigError, EnsembleError, RunError
from src.export import TOLERANCE, export_run, main, ort_session, random_input
from src.features import prepare
from src.inference import load_fold_model
from src.predict import load_predictor, make_plan, predict_files
from src.settings import TrainConfig
from src.train import run_training

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from src.ensemble import ensemble

    root = tmp_path_factory.mktemp("export")
    comp = make_audio_competition(root, n_per_class=4, n_test=4)
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    _write_folds(prep, root)
    out = {"mlp": _train(cfg, prep, root, "mlp", "x-mlp", epochs=2),
           "cnn": _train(cfg, prep, root, "cnn", "x-cnn", epochs=1),
           "cnn_seed": _train(cfg, prep, root, "cnn_seed", "x-seed", epochs=1, params={"dropout": 0.0}),
           "crnn": _train(cfg, prep, root, "crnn", "x-crnn", epochs=1, params={"channels": [4], "hidden": 8}),
           "logreg": run_training(cfg, TrainConfig(model="logreg", run_id="x-logreg", plots=False), root, prep)}
    out["ens"] = ensemble(["x-mlp", "x-cnn"], "x-ens", root, "mean")
    return comp, root, out


@pytest.mark.parametrize("which", ["mlp", "cnn", "cnn_seed", "crnn"])
def test_every_fold_exports_and_agrees_with_torch(runs, which):
    comp, root, out = runs
    paths = export_run(out[which], root)
    assert [p.name for p in paths] == sorted(p.with_suffix(".onnx").name for p in out[which].glob("fold*.pt"))
    assert not list(out[which].glob(".*.tmp"))  # written atomically: no temp file left behind
    for p in paths:
        model, meta = load_fold_model(p.with_suffix(".pt"))
        x = random_input(model, meta, 7, seed=5)  # another batch size than the export's: the batch axis is dynamic
        with torch.no_grad():
            ref = model(x).numpy()
        got = ort_session(p, threads=1).run(None, {"x": x.numpy()})[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= TOLERANCE * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("which", ["mlp", "cnn", "cnn_seed", "crnn", "logreg", "ens"])
def test_predict_with_onnx_equals_predict_with_torch(runs, which):
    comp, root, out = runs
    for member in ("mlp", "cnn", "cnn_seed", "crnn"):
        export_run(out[member], root)
    files = sorted((comp.root / "test").iterdir())
    got = []
    for onnx in (False, True):
        pred = load_predictor(out[which], root, "cpu", onnx=onnx)
        res = predict_files(pred, make_plan(pred, root), files)
        assert not res.errors
        got.append(res.clip)
    np.testing.assert_allclose(got[1], got[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[1], np.load(out[which] / "test.npy"), atol=1e-5, rtol=0)


def test_missing_or_stale_exports_are_refused_with_the_fix(runs, tmp_path):
    comp, root, out = runs
    run = tmp_path / "runs" / "x-cnn"
    shutil.copytree(out["cnn"], run)
    for f in run.glob("fold*.onnx"):
        f.unlink()
    with pytest.raises(CheckpointError, match="no fold0.onnx") as exc:
        load_predictor(run, tmp_path, onnx=True)
    assert "python -m src.export x-cnn --onnx" in exc.value.fix
    export_run(run, tmp_path)
    pt = run / "fold0.pt"
    later = (run / "fold0.onnx").stat().st_mtime + 10
    os.utime(pt, (later, later))  # the checkpoint was replaced after the export
    with pytest.raises(CheckpointError, match="older than fold0.pt"):
        load_predictor(run, tmp_path, onnx=True)


def test_sklearn_runs_ensembles_and_bad_options_are_refused(runs, capsys):
    comp, root, out = runs
    with pytest.raises(RunError, match="scikit-learn model"):
        export_run(out["logreg"], root)
    with pytest.raises(EnsembleError, match="ensemble") as exc:
        export_run(out["ens"], root)
    assert "x-mlp" in exc.value.fix and "x-cnn" in exc.value.fix
    with pytest.raises(ConfigError, match="--opset 99"):
        export_run(out["mlp"], root, opset=99)
    with pytest.raises(SystemExit) as code:
        run_command(main, ["x-logreg", "--onnx", "--workdir", str(root)])
    assert code.value.code == 2
    assert "error: run x-logreg is a scikit-learn model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_command(main, ["x-mlp", "--workdir", str(root)])
    assert "add --onnx" in capsys.readouterr().err


def test_the_export_command_writes_every_fold(runs, capsys):
    comp, root, out = runs
    run_command(main, ["x-mlp", "--onnx", "--opset", "17", "--workdir", str(root)])
    assert "fold(s) exported" in capsys.readouterr().out
    import onnx

    assert onnx.load(str(out["mlp"] / "fold0.onnx")).opset_import[0].version == 17


def test_timelines_with_onnx_take_other_windows_where_torch_does(runs, tmp_path):
    """The frame axis is dynamic: cnn takes other window lengths as in torch; cnn_seed (fixed size) refuses them with the fix."""
    import pandas as pd

    from src.predict import main as predict_main

    comp, root, out = runs
    files = [str(f) for f in sorted((comp.root / "test").iterdir())[:2]]
    tables = []
    for flags in ([], ["--onnx"]):
        csv = tmp_path / f"cnn{len(flags)}.csv"
        run_command(predict_main, ["x-cnn", *files, "--workdir", str(root), "--out", str(csv), "--timeline", "--window", "0.3", *flags])
        tables.append(pd.read_csv(tmp_path / f"cnn{len(flags)}_timeline.csv"))
    cols = ["high", "low", "pulse"]
    np.testing.assert_allclose(tables[1][cols].to_numpy(), tables[0][cols].to_numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="takes windows of"):
        predict_main(["x-seed", *files, "--workdir", str(root), "--timeline", "--window", "0.3", "--onnx", "--out", str(tmp_path / "s.csv")])
