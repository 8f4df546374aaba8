"""Waveform augmentation (src.waveaug): the wave cache, on-the-fly log-mel, training-only inputs, settings errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import make_audio_competition, make_multilabel_competition, synth_clip, write_clip
from train_helpers import _train, _write_folds

from src.config import load_config
from src.errors import ConfigError
from src.features import prepare
from src.inference import Wrapped
from src.settings import TrainConfig
from src.waveaug import fold_waves, pitch_warp, valid_frames


@pytest.fixture(scope="module")
def comp(tmp_path_factory):
    """Clips of 0.5, 0.83 and 0.2 s (shorter than a 0.25-s segment is not: 0.2 s is) with overlapping segments."""
    root = tmp_path_factory.mktemp("wa")
    c = make_audio_competition(root, lengths=[0.5, 0.83, 0.2], audio={"segment_hop_seconds": 0.125})
    cfg = load_config(c.config, root)
    prep = prepare(cfg, root)
    _write_folds(prep, root)
    return root, cfg, prep


def _batches(prep, tc=None, bank=None):
    """A WaveBatches over every training item (no fold held out), with the cached log-mel it should reproduce."""
    it = prep.items("spec", "train")
    X = np.asarray(it.X[np.arange(len(it.row))])
    tc = tc or TrainConfig(model="cnn", time_shift=1e-9)  # on, but every shift rounds to 0
    waves = fold_waves(prep, tc, it, np.full(it.n_rows, -1), 0, X)
    if bank is not None:
        waves.bank = bank
    return waves, X


def test_plain_cache_is_the_fast_path_and_wave_cache_aligns(comp):
    root, cfg, prep = comp
    if "wave" not in prep.caches:  # first use in this module: prepare() built the log-mel cache only
        assert not list((root / "cache" / "features").glob("*-wave-*"))
    logmel, wave = prep.items("spec", "train"), prep.items("spec", "train", "wave")
    assert np.array_equal(logmel.row, wave.row)  # item i of the waves is the audio of log-mel item i
    arr = np.load(prep.recipe_cache("wave") / "logmel.npy", mmap_mode="r")
    assert arr.dtype == np.int16 and arr.shape == (len(np.load(prep.cache / "logmel.npy", mmap_mode="r")), (31 - 1) * 64 + 256)
    assert json.loads((prep.recipe_cache("wave") / "meta.json").read_text())["recipe"] == "wave"


def test_on_the_fly_logmel_matches_the_cache(comp):
    """No augmentation drawn: the recomputed log-mel equals the cached one up to float16 storage (~0.005 dB mean)."""
    _, _, prep = comp
    waves, X = _batches(prep)
    x = waves(np.arange(len(X)), np.random.default_rng(0), torch.device("cpu")).numpy()
    diff = np.abs(x - X)
    assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean(), diff.max())
    assert (valid_frames(X) < X.shape[-1]).any()  # the 0.2-s clips' padding is reproduced too


def test_augmentations_change_inputs_reproducibly(comp, tmp_path):
    _, cfg, prep = comp
    noise = synth_clip("pulse", 8000, 1.0, np.random.default_rng(1))
    tc = TrainConfig(model="cnn", gain_db=6.0, time_shift=0.5, pitch_shift=3.0, noise_p=1.0, crop_frames=20)
    waves, X = _batches(prep, tc, bank=noise)
    b = np.arange(8)
    x1 = waves(b, np.random.default_rng(5), torch.device("cpu"))
    x2 = waves(b, np.random.default_rng(5), torch.device("cpu"))
    assert x1.shape == (8, X.shape[1], 20) and torch.isfinite(x1).all()
    assert torch.equal(x1, x2)  # same seed, same batch
    assert not torch.equal(x1, waves(b, np.random.default_rng(6), torch.device("cpu")))


def test_pitch_warp_moves_a_partial():
    power = torch.zeros(2, 100, 3)
    power[:, 20] = 1.0
    out = pitch_warp(power, torch.tensor([1.0, 2.0 ** (12 / 12)]))  # unchanged, one octave up
    assert out[0].argmax(0).tolist() == [20] * 3 and out[1].argmax(0).tolist() == [40] * 3


def _forward_inputs(monkeypatch) -> dict[str, list]:
    """Record every input the model sees, split by training/evaluation mode."""
    seen: dict[str, list] = {"train": [], "eval": []}
    forward = Wrapped.forward

    def spy(self, x):
        seen["train" if self.training else "eval"].append(x.detach().clone())
        return forward(self, x)

    monkeypatch.setattr(Wrapped, "forward", spy)
    return seen


def test_changes_training_inputs_never_validation_or_test(comp, monkeypatch):
    root, cfg, prep = comp
    runs = {}
    for name, kw in (("plain", {}), ("wave", {"gain_db": 6.0, "time_shift": 0.3, "pitch_shift": 2.0, "noise_p": 0.5})):
        with monkeypatch.context() as m:
            seen = _forward_inputs(m)
            run = _train(cfg, prep, root, "cnn", f"wa-{name}", epochs=2, folds=[0], **kw)
        runs[name] = (seen, json.loads((run / "fold0_metrics.json").read_text())["history"])
    (plain, _), (wave, hist) = runs["plain"], runs["wave"]
    assert len(plain["eval"]) == len(wave["eval"]) and all(torch.equal(a, b) for a, b in zip(plain["eval"], wave["eval"]))
    assert not torch.equal(plain["train"][0], wave["train"][0])
    with monkeypatch.context():
        again = _train(cfg, prep, root, "cnn", "wa-wave-again", epochs=2, folds=[0], gain_db=6.0, time_shift=0.3,
                       pitch_shift=2.0, noise_p=0.5)
    assert [h["train_loss"] for h in json.loads((again / "fold0_metrics.json").read_text())["history"]] == [h["train_loss"] for h in hist]


def test_noise_folder_multilabel_run(tmp_path):
    comp = make_multilabel_competition(tmp_path, n_train=12, n_test=2)
    noise = tmp_path / "noise"
    write_clip(noise / "a.wav", synth_clip("pulse", 8000, 0.7, np.random.default_rng(2)), 8000)
    cfg = load_config(comp.config, tmp_path)
    prep = prepare(cfg, tmp_path)
    _write_folds(prep, tmp_path)
    run = _train(cfg, prep, tmp_path, "cnn", "wa-ml", epochs=1, folds=[0], noise_p=1.0, noise_dir=str(noise), noise_snr=[0.0, 10.0])
    assert (run / "fold0_preds.npz").is_file()


@pytest.mark.parametrize("kw, words", [
    ({"noise_p": 0.5, "noise_dir": "no/such/folder"}, "no/such/folder"),
    ({"noise_p": 0.5, "noise_dir": "EMPTY"}, "no audio files"),
    ({"noise_dir": "EMPTY"}, "--noise-p 0"),
    ({"noise_p": 0.5, "noise_snr": [20.0, 5.0]}, "min <= max"),
    ({"noise_p": 1.5}, "not a probability"),
    ({"gain_db": -3.0}, "negative"),
    ({"gain_db": 3.0, "recipe": "chroma"}, "'chroma' recipe"),
])
def test_bad_settings_are_errors(comp, tmp_path, kw, words):
    root, cfg, prep = comp
    if kw.get("noise_dir") == "EMPTY":
        (tmp_path / "empty").mkdir()
        kw = {**kw, "noise_dir": str(tmp_path / "empty")}
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        _train(cfg, prep, root, "cnn", "wa-bad", epochs=1, **kw)
    assert not Path(root / "runs" / "wa-bad" / "fold0.pt").exists()


def test_vector_model_refuses_waveform_settings(comp):
    root, cfg, prep = comp
    with pytest.raises(ConfigError, match="--gain-db"):
        _train(cfg, prep, root, "mlp", "wa-mlp", epochs=1, gain_db=3.0)
