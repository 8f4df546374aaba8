"""Sequence recipes (chroma, beat-synchronised, logmel+chroma) in the feature cache, the ``recipe`` train setting,
and ``python -m src.study sequences`` on a tiny generated competition."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fixtures import make_audio_competition
from train_helpers import _train, _write_folds

from src.config import load_config
from src.errors import ConfigError, DataError, RunError
from src.features import SEGMENT_BEATS, build_cache, prepare, recipe_params, run_recipe
from src.runs import load_run, model_key
from src.train import input_stats

LSTM = {"hidden": 8, "layers": 1}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny LSTMs run fastest on one thread; two threads on shared cores spin-wait (30x slower under load)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    """A 3-class competition of 1.5-s clips (the pulse class has a 4 Hz beat), prepared, with a 2-fold file."""
    root = tmp_path_factory.mktemp("seq")
    comp = make_audio_competition(root, seconds=1.5, n_per_class=4, n_test=2)
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    _write_folds(prep, root)
    return cfg, prep, root


@pytest.mark.parametrize("recipe, bins", [("chroma", 12), ("logmel_beat", 32), ("chroma_beat", 12), ("logmel+chroma", 44)])
def test_recipe_cache_shapes_and_lstm_trains(seq, recipe, bins):
    """Each recipe is cached once with its own key; chroma has 12 bins, beat recipes SEGMENT_BEATS columns per segment,
    and an lstm trains on it for one epoch (the checkpoint records the recipe and the input shape)."""
    cfg, prep, root = seq
    cache = prep.recipe_cache(recipe)
    assert cache != prep.cache and recipe in cache.name and build_cache(cfg, prep.ds, root, 1, recipe) == cache
    X = np.load(cache / "logmel.npy", mmap_mode="r")
    frames = SEGMENT_BEATS if recipe.endswith("_beat") else np.load(prep.cache / "logmel.npy", mmap_mode="r").shape[2]
    assert X.shape[1:] == (bins, frames) and np.isfinite(np.asarray(X, np.float32)).all()
    items = prep.items("spec", "train", recipe)
    assert len(np.unique(items.row)) == len(prep.ds.train)
    mean, std = input_stats(np.asarray(items.X), spec_input=True)  # per-bin statistics over the fold
    assert mean.shape == std.shape == (bins, 1)
    run = _train(cfg, prep, root, "lstm", f"lstm-{recipe}", epochs=1, params=LSTM, recipe=recipe)
    ckpt = torch.load(run / "fold0.pt", weights_only=False)
    assert ckpt["recipe"] == recipe and ckpt["input_shape"] == [bins, frames]


def test_recipe_params_key_beats_and_refuse_fixed_recipe(seq):
    cfg = seq[0]
    assert recipe_params(cfg, "logmel_beat")["segment_beats"] == SEGMENT_BEATS
    assert "segment_beats" not in recipe_params(cfg, "chroma")
    tc = dataclasses.make_dataclass("TC", [("model", str), ("recipe", str)])
    assert run_recipe("logmel", tc("lstm", "")) == "logmel" and run_recipe("logmel", tc("lstm", "chroma")) == "chroma"
    assert run_recipe("musicnn", tc("musicnn_msd", "")) == "musicnn"
    with pytest.raises(ConfigError, match="musicnn_msd is fed its own fixed recipe 'musicnn'"):
        run_recipe("musicnn", tc("musicnn_msd", "chroma"))


def test_recipe_on_a_musicnn_model_is_an_error(seq):
    cfg, prep, root = seq
    with pytest.raises(ConfigError, match="fixed recipe"):
        _train(cfg, prep, root, "musicnn_msd", "mn-chroma", epochs=1, params={"pretrained": False}, recipe="chroma")


def test_recipe_enters_model_key_and_resume_is_refused(seq):
    cfg, prep, root = seq
    a = _train(cfg, prep, root, "lstm", "key-logmel", epochs=1, params=LSTM, folds=[0])
    b = _train(cfg, prep, root, "lstm", "key-chroma", epochs=1, params=LSTM, folds=[0], recipe="chroma")
    assert model_key(load_run(a)) != model_key(load_run(b))
    with pytest.raises(RunError, match="recipe: 'chroma' -> 'logmel_beat'"):
        _train(cfg, prep, root, "lstm", "key-chroma", epochs=1, params=LSTM, folds=[1], recipe="logmel_beat")


def test_recipe_needs_audio(arrays, workdir):
    cfg = load_config(arrays.config)
    prep = prepare(cfg, workdir)
    with pytest.raises(DataError, match="needs audio"):
        prep.items("spec", "train", "chroma")


def test_study_sequences_writes_table_and_compare(seq, capsys):
    from src.study.__main__ import main

    cfg, _, root = seq
    out = root / "reports" / "seq"
    main(["sequences", "--config", str(cfg.path), "--workdir", str(root), "--out", str(out), "--models", "lstm",
          "--recipes", "chroma,chroma_beat", "--epochs", "1", "--overfit-batch", "1", "--overfit-epochs", "2",
          "--param", "hidden=8", "--param", "lstm.layers=1", "--param", "batch_size=8", "--no-report"])
    import pandas as pd

    table = pd.read_csv(out / "table.csv")
    assert table["recipe"].tolist() == ["chroma", "chroma_beat", "chroma"] and (table["folds"] == [2, 2, 1]).all()
    assert table["input"].tolist()[:2] == [f"12x{np.load(seq[1].cache / 'logmel.npy', mmap_mode='r').shape[2]}", f"12x{SEGMENT_BEATS}"]
    assert (out / "table.md").is_file() and (out / "compare.json").is_file() and (out / "compare.md").is_file()
    assert table["rows"].tolist() == ["cross-validation", "cross-validation", "overfit 1 batch(es)"]


def test_study_sequences_refuses_bad_choices(seq):
    from src.study.__main__ import main

    cfg, _, root = seq
    with pytest.raises(ConfigError, match="unknown recipe"):
        main(["sequences", "--config", str(cfg.path), "--workdir", str(root), "--recipes", "mfcc"])
    with pytest.raises(ConfigError, match="fixed recipe"):
        main(["sequences", "--config", str(cfg.path), "--workdir", str(root), "--models", "musicnn_msd", "--recipes", "chroma"])
    with pytest.raises(ConfigError, match="'crn' is not one of --models"):
        main(["sequences", "--config", str(cfg.path), "--workdir", str(root), "--models", "lstm,crnn", "--param", "crn.hidden=8"])


def test_model_scoped_params():
    from src.study.sequences import model_params

    pairs = ["hidden=8", "crnn.channels=[4,8]", "lstm.layers=1"]
    assert model_params(pairs, "crnn") == {"hidden": 8, "channels": [4, 8]}
    assert model_params(pairs, "lstm") == {"hidden": 8, "layers": 1}
