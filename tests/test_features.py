"""Decoding (resampling, mono mix, formats) and the feature cache (hit, segments, keys)."""
from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import pytest
from fixtures import make_audio_competition, write_clip

from src.audio import AudioError, load_audio
from src.config import load_config
from src.features import build_cache, cache_dir, prepare

FORMATS = (".wav", ".au", ".mp3", ".flac", ".ogg")


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[spec.argmax()])


@pytest.mark.parametrize("ext", FORMATS)
def test_load_audio_resamples_and_mixes_to_mono(tmp_path, ext):
    """A stereo 11025 Hz file (left: 440 Hz at 0.6, right: silence) -> mono 8 kHz, 440 Hz at ~0.3."""
    sr_file, seconds = 11025, 0.5
    t = np.arange(int(sr_file * seconds)) / sr_file
    path = write_clip(tmp_path / f"tone{ext}", (0.6 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr_file, stereo=True)
    y = load_audio(path, 8000)
    assert y.dtype == np.float32 and y.ndim == 1
    slack = 2400 if ext == ".mp3" else 2  # mp3 adds encoder delay/padding frames
    assert abs(len(y) - 4000) <= slack, len(y)
    assert abs(_peak_hz(y, 8000) - 440) < 10
    assert abs(np.abs(y).max() - 0.3) < (0.06 if ext in (".mp3", ".ogg") else 0.01)  # mean of the channels


def test_load_audio_max_seconds(tmp_path):
    path = write_clip(tmp_path / "a.wav", np.full(8000, 0.5, np.float32), 8000)
    assert len(load_audio(path, 8000, max_seconds=0.25)) == 2000


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "file is empty"),
        (bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8)), "cannot decode audio"),
        ("truncated", "cannot decode audio"),
        ("silent", "silent clip"),
    ],
    ids=["empty", "random-bytes", "truncated-header", "silent"],
)
def test_load_audio_rejects_bad_clips(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    if content == "truncated":
        write_clip(path, np.full(800, 0.5, np.float32), 8000)
        path.write_bytes(path.read_bytes()[:30])
    elif content == "silent":
        write_clip(path, np.zeros(800, np.float32), 8000)
    else:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=problem) as info:
        load_audio(path, 8000)
    assert str(path) in str(info.value)
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nope.wav", 8000)


# ----------------------------------------------------------------------------- cache


def _expected_segments(n_samples: int, sr: int, hop: int, seg_s: float, seg_hop_s: float) -> int:
    frames = 1 + n_samples // hop  # centred STFT
    seg, step = max(1, round(seg_s * sr / hop)), max(1, round(seg_hop_s * sr / hop))
    return 1 if frames < seg else 1 + (frames - seg) // step


@pytest.mark.parametrize("seg_s, seg_hop_s", [(0.25, 0.25), (0.25, 0.125), (0.6, 0.3)])
def test_segment_count_and_rows(tmp_path, seg_s, seg_hop_s):
    comp = make_audio_competition(tmp_path, lengths=(0.3, 0.5, 1.0, 0.8), n_test=2,
                                  audio={"segment_seconds": seg_s, "segment_hop_seconds": seg_hop_s})
    cfg = load_config(comp.config)
    prep = prepare(cfg, tmp_path / "work", workers=1)
    clips = pd.read_csv(prep.cache / "clips.csv", keep_default_na=False)
    a = cfg.audio
    for c in clips.itertuples():
        n = len(load_audio(c.path, a.sample_rate))
        assert c.n_segments == _expected_segments(n, a.sample_rate, a.hop_length, seg_s, seg_hop_s), c.path
    seg_clip = np.load(prep.cache / "seg_clip.npy")
    np.testing.assert_array_equal(seg_clip, np.repeat(np.arange(len(clips)), clips["n_segments"]))
    logmel = np.load(prep.cache / "logmel.npy", mmap_mode="r")
    assert logmel.shape == (clips["n_segments"].sum(), a.n_mels, max(1, round(seg_s * a.sample_rate / a.hop_length)))
    assert logmel.dtype == np.float16 and np.isfinite(np.asarray(logmel)).all()
    # model items: every segment of a clip maps to that clip's row, in clip order
    items = prep.items("spec", "train")
    tr = clips[clips["split"] == "train"].reset_index(drop=True)
    row_of = {cid: i for i, cid in enumerate(prep.ds.train["id"])}
    want = np.repeat([row_of[i] for i in tr["id"]], tr["n_segments"])
    np.testing.assert_array_equal(items.row, want)
    first = int(tr.loc[2, "seg_start"])
    at = int(tr["n_segments"][:2].sum())
    np.testing.assert_array_equal(items.X[[at]][0], logmel[first].astype(np.float32))


def test_vector_items_are_mfcc_and_chroma_stats(tiny_audio_prep):
    comp, prep, _ = tiny_audio_prep
    it = prep.items("vector", "train")
    assert it.X.shape == (len(comp.train), 2 * 13 + 24) and np.isfinite(it.X).all()
    np.testing.assert_array_equal(it.row, np.arange(len(comp.train)))
    te = prep.items("vector", "test")
    assert te.X.shape[0] == te.n_rows == len(comp.test_ids)
    # classes are distinguishable: the low tone's MFCC mean differs from the high tone's
    lab = prep.ds.train["label"].to_numpy()
    assert np.abs(it.X[lab == "low", :13].mean(0) - it.X[lab == "high", :13].mean(0)).max() > 1.0


def test_second_prepare_is_a_cache_hit_and_decodes_nothing(tiny_audio_prep, monkeypatch):
    comp, prep, workdir = tiny_audio_prep
    meta = prep.cache / "meta.json"
    mtime = meta.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("decoded on a cache hit")

    import src.audio
    import src.features

    monkeypatch.setattr(src.features, "_run_extraction", boom)
    monkeypatch.setattr(src.features, "_extract", boom)
    monkeypatch.setattr(src.features, "load_audio", boom)
    monkeypatch.setattr(src.audio, "load_audio", boom)
    again = prepare(load_config(comp.config), workdir, workers=1)
    assert again.cache == prep.cache and meta.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.items("vector", "train").X, prep.items("vector", "train").X)


def test_incomplete_cache_is_rebuilt(tmp_path, monkeypatch):
    comp = make_audio_competition(tmp_path, n_per_class=2, n_test=0)
    cfg = load_config(comp.config)
    prep = prepare(cfg, tmp_path / "work", workers=1)
    (prep.cache / "meta.json").unlink()  # as if the first run was killed before finishing
    import src.features

    calls = []
    real = src.features._run_extraction
    monkeypatch.setattr(src.features, "_run_extraction", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = prepare(cfg, tmp_path / "work", workers=1)
    assert calls == [1] and (again.cache / "meta.json").is_file() and again.cache == prep.cache
    assert not list(again.cache.glob("*.tmp"))


def test_cache_key_changes_with_audio_params_and_files(tiny_audio_prep, tmp_path):
    comp, prep, workdir = tiny_audio_prep
    cfg = load_config(comp.config)
    base = cache_dir(cfg, prep.ds, workdir)
    assert base == prep.cache
    for key, value in (("n_mels", 16), ("sample_rate", 16000), ("segment_seconds", 0.5), ("hop_length", 128)):
        other = copy.deepcopy(cfg)
        setattr(other.audio, key, value)
        assert cache_dir(other, prep.ds, workdir) != base, key
    # a changed file (new mtime) gives a new cache too
    comp2 = make_audio_competition(tmp_path, n_per_class=2, n_test=0)
    cfg2 = load_config(comp2.config)
    from src.data import load_dataset

    ds2 = load_dataset(cfg2)
    before = cache_dir(cfg2, ds2, tmp_path)
    p = ds2.train["path"].iloc[0]
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_dir(cfg2, ds2, tmp_path) != before


def test_multiprocess_extraction_matches_single(tmp_path):
    """Two worker processes give the same cache content as one."""
    comp = make_audio_competition(tmp_path, n_per_class=3, n_test=2)
    cfg = load_config(comp.config)
    from src.data import load_dataset

    ds = load_dataset(cfg)
    one = build_cache(cfg, ds, tmp_path / "w1", workers=1)
    two = build_cache(cfg, ds, tmp_path / "w2", workers=2)
    for f in ("logmel.npy", "seg_clip.npy", "mfcc_stats.npy", "chroma_stats.npy"):
        np.testing.assert_array_equal(np.load(one / f), np.load(two / f), err_msg=f)
