"""Music-pretrained networks in the workspace: their own cache entry, frozen embeddings as features, fine-tuning.

Needs the musicnn weights (``pip install --no-deps -r requirements-nodeps.txt``; CI installs them).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from fixtures import make_audio_competition
from train_helpers import _write_folds

from src.artifacts import read_json
from src.config import load_config
from src.features import cache_dir, prepare
from src.settings import TrainConfig
from src.train import run_training

HAVE = importlib.util.find_spec("musicnn") is not None or os.environ.get("MUSICNN_REQUIRED") == "1"
pytestmark = pytest.mark.skipif(not HAVE, reason="musicnn weights not installed: pip install --no-deps -r requirements-nodeps.txt")


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb")
    c = make_audio_competition(root / "comp", n_per_class=4, seconds=3.5, sr=16000, n_test=2,
                               features={"vector": ["musicnn_msd"]})
    cfg = load_config(c.config)
    work = root / "work"
    prep = prepare(cfg, work, workers=1)
    _write_folds(prep, work)
    return c, cfg, prep, work


def test_a_model_with_its_own_recipe_gets_its_own_cache_entry(comp):
    c, cfg, prep, work = comp
    logmel = prep.cache
    musicnn = prep.recipe_cache("musicnn")
    assert musicnn != logmel and musicnn == cache_dir(cfg, prep.ds, work, "musicnn") and "-musicnn-" in musicnn.name
    X = np.load(musicnn / "logmel.npy", mmap_mode="r")
    assert X.shape[1:] == (96, 187)  # 96 mel bands x 187 frames (3 s at 16 kHz, hop 256), not the config's recipe
    assert np.load(logmel / "logmel.npy", mmap_mode="r").shape[1] == cfg.audio.n_mels
    assert read_json(musicnn / "meta.json")["audio"]["sample_rate"] == 16000
    before = (musicnn / "meta.json").stat().st_mtime_ns
    assert prep.recipe_cache("musicnn") == musicnn and (musicnn / "meta.json").stat().st_mtime_ns == before  # built once


def test_frozen_embeddings_as_clip_vectors_and_tags(comp):
    from src.embeddings import clip_tags

    c, cfg, prep, work = comp
    items = prep.items("vector", "train")
    assert items.X.shape == (len(c.train), 400) and np.isfinite(items.X).all()  # mean + std of 200-d embeddings
    assert (prep.recipe_cache("musicnn") / "MSD_musicnn_embed.npy").is_file()
    assert prep.clip_vectors("musicnn_msd_pool").shape == (len(c.train) + len(c.test_ids), 1506)  # one pass gave all outputs
    tags = clip_tags(prep, "MSD_musicnn", "train")
    assert tags.shape == (len(c.train), 50) and "rock" in tags.columns
    assert ((tags.to_numpy() >= 0) & (tags.to_numpy() <= 1)).all()


def test_logreg_on_embeddings_and_musicnn_fine_tuning_follow_the_contract(comp):
    c, cfg, prep, work = comp
    head = run_training(cfg, TrainConfig(model="logreg", run_id="emb-logreg", plots=False), work, prep)
    assert np.load(head / "oof.npy").shape == (len(c.train), 3)
    tc = TrainConfig(model="musicnn_msd", epochs=1, batch_size=4, lr=1e-3, layer_decay=0.5, freeze_epochs=1, folds=[0],
                     run_id="emb-ft", plots=False, freq_mask=8)
    run = run_training(cfg, tc, work, prep)
    assert (run / "fold0.pt").is_file() and np.isfinite(np.load(run / "test.npy")).all()
    state = __import__("torch").load(run / "fold0.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert float(state["x_std"].min()) == 1.0 and float(state["x_mean"].abs().max()) == 0.0  # the net normalises itself
    assert (work / "cache" / "pretrained" / "musicnn" / "MSD_musicnn.safetensors").is_file()  # converted in the workspace


@pytest.mark.parametrize("model", ["musicnn_msd", "logreg"])
def test_tune_works_for_the_new_models(comp, model):
    """Search spaces sit beside the builders: python -m src.tune --model musicnn_msd / logreg runs like the others."""
    import optuna

    from src.tune import main

    c, cfg, prep, work = comp
    main(["--config", str(c.config), "--workdir", str(work), "--model", model, "--study", f"t-{model}", "--trials", "2",
          "--folds", "0", "--no-plots", "--pruner", "none", "--fold-pruner", "none",
          *(["--epochs", "1", "--batch-size", "4"] if model == "musicnn_msd" else [])])
    study = optuna.load_study(study_name=f"t-{model}", storage=f"sqlite:///{work / 'optuna_studies' / f't-{model}.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(0.0 <= t.value <= 1.0 for t in done)
    assert ("layer_decay" if model == "musicnn_msd" else "C") in done[0].params
