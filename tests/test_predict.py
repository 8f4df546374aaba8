"""``python -m src.predict``: new files predicted exactly as the run's own test split, streaming, timelines, errors.

One tiny competition (wav + flac + ogg + mp3 test clips, one of them stereo and one at another sample rate)
and tiny runs on it (mlp on clip vectors, cnn, the fixed-size cnn_seed, a logreg head, mean and hill
ensembles): predicting the test folder must give each run's ``test.npy``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import DEFAULT_AUDIO, _config, make_audio_competition, synth_clip, write_clip, write_stereo_clip
from train_helpers import _train, _write_folds

from src.cli import run_command
from src.config import load_config
from src.errors import CheckpointError, EnsembleError, RunError
from src.features import prepare
from src.predict import load_predictor, main, make_plan, predict_files
from src.settings import TrainConfig
from src.train import run_training

SR = 8000
CLASSES = ["high", "low", "pulse"]  # the run's class order (sorted)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs trained on a competition whose test clips come in four formats, one stereo, one at 11025 Hz."""
    from src.ensemble import ensemble

    root = tmp_path_factory.mktemp("predict")
    comp = make_audio_competition(root, n_per_class=4, n_test=6, formats=(".wav", ".flac", ".ogg", ".mp3"))
    test = comp.root / "test"
    rng = np.random.default_rng(1)
    y = synth_clip("high", SR, 0.7, rng)
    write_stereo_clip(test / "t001.flac", y, 0.5 * synth_clip("low", SR, 0.7, rng), SR)  # a real stereo mix
    write_clip(test / "t002.ogg", synth_clip("pulse", 11025, 0.6, rng), 11025)  # resampled on load
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    _write_folds(prep, root)
    out = {"mlp": _train(cfg, prep, root, "mlp", "p-mlp", epochs=3),
           "cnn": _train(cfg, prep, root, "cnn", "p-cnn", epochs=2),
           "cnn_seed": _train(cfg, prep, root, "cnn_seed", "p-seed", epochs=1, params={"dropout": 0.0}),
           "logreg": run_training(cfg, TrainConfig(model="logreg", run_id="p-logreg", plots=False), root, prep)}
    out["ens_mean"] = ensemble(["p-mlp", "p-cnn"], "p-ens-mean", root, "mean")
    out["ens_hill"] = ensemble(["p-mlp", "p-cnn", "p-logreg"], "p-ens-hill", root, "hill")
    return comp, root, out


@pytest.mark.parametrize("which", ["mlp", "cnn", "cnn_seed", "logreg", "ens_mean", "ens_hill"])
def test_a_folder_of_mixed_files_gives_the_runs_own_test_predictions(runs, which):
    comp, root, out = runs
    pred = load_predictor(out[which], root, "cpu")
    files = sorted((comp.root / "test").iterdir())
    assert [f.stem for f in files] == comp.test_ids  # test.npy rows follow the sample submission
    res = predict_files(pred, make_plan(pred, root), files)
    assert not res.errors and res.paths == [str(f) for f in files]
    np.testing.assert_allclose(res.clip, np.load(out[which] / "test.npy"), atol=1e-5, rtol=0)


def test_the_command_writes_path_probabilities_and_prediction(runs, capsys):
    comp, root, out = runs
    run_command(main, ["p-cnn", str(comp.root / "test"), "--workdir", str(root), "--device", "cpu"])
    df = pd.read_csv(root / "predictions" / "p-cnn.csv")
    assert list(df.columns) == ["path", *CLASSES, "prediction"]
    probs = df[CLASSES].to_numpy()
    np.testing.assert_allclose(probs, np.load(out["cnn"] / "test.npy"), atol=1e-5)
    assert (df["prediction"] == np.array(CLASSES)[probs.argmax(1)]).all()
    assert "6 file(s) predicted" in capsys.readouterr().out


def test_corrupt_files_are_named_the_others_written_then_exit_2(runs, tmp_path, capsys):
    comp, root, out = runs
    folder = tmp_path / "in"
    shutil.copytree(comp.root / "test", folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    (folder / "empty.flac").write_bytes(b"")
    write_clip(folder / "quiet.wav", np.zeros(SR, np.float32), SR)
    csv = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as exc:
        run_command(main, ["p-mlp", str(folder), "--workdir", str(root), "--out", str(csv)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: 3 file(s) could not be predicted" in err and "broken.wav: cannot decode audio" in err
    assert "empty.flac: file is empty" in err and "quiet.wav: silent clip" in err and "re-encode" in err
    assert len(pd.read_csv(csv)) == len(comp.test_ids)  # the others were predicted and written


def test_unfinished_runs_missing_checkpoints_and_stacking_are_refused(runs, tmp_path):
    from src.ensemble import ensemble

    comp, root, out = runs
    with pytest.raises(RunError, match="not found"):
        load_predictor("no-such-run", root)
    broken = tmp_path / "runs" / "p-cnn"
    shutil.copytree(out["cnn"], broken)
    (broken / "fold1.pt").unlink()
    with pytest.raises(CheckpointError, match="fold1.pt not found"):
        load_predictor(broken, tmp_path)
    (broken / "test.npy").unlink()
    with pytest.raises(RunError, match="unfinished"):
        load_predictor(broken, tmp_path)
    stack = ensemble(["p-mlp", "p-cnn"], "p-ens-stack", root, "stack")
    with pytest.raises(EnsembleError, match="meta-model is not saved.*--method hill"):
        load_predictor(stack, root)


# ----------------------------------------------------------------------------- timelines


def _timeline(root: Path, run: str, files: list[Path], tmp_path: Path, *flags: str) -> pd.DataFrame:
    csv = tmp_path / "tl.csv"
    run_command(main, [run, *map(str, files), "--workdir", str(root), "--out", str(csv), "--device", "cpu", "--timeline", *flags])
    return pd.read_csv(tmp_path / "tl_timeline.csv")


def test_timeline_windows_last_partial_short_file_and_silence_inside(runs, tmp_path, capsys):
    comp, root, out = runs
    rng = np.random.default_rng(2)
    long = write_clip(tmp_path / "long.wav", synth_clip("low", SR, 1.1, rng), SR)  # 138 frames of 64 samples
    short = write_clip(tmp_path / "short.wav", synth_clip("high", SR, 0.1, rng), SR)  # 13 frames: under one window
    gap = np.concatenate([synth_clip("low", SR, 0.5, rng), np.zeros(SR // 2, np.float32), synth_clip("low", SR, 0.5, rng)])
    silent_inside = write_clip(tmp_path / "gap.wav", gap, SR)
    df = _timeline(root, "p-cnn", [long, short, silent_inside], tmp_path)
    assert list(df.columns) == ["file", "start_s", "end_s", "partial", *CLASSES, "top", "top_smoothed"]
    one = df[df["file"] == str(long)]  # windows of the run's segment: 31 frames every 31 frames at 125 frames/s
    assert one["start_s"].tolist() == [0.0, 0.248, 0.496, 0.744, 0.992] and one["partial"].tolist() == [False] * 4 + [True]
    assert one["end_s"].tolist() == [0.248, 0.496, 0.744, 0.992, 1.104]  # the last window ends with the file (138 frames)
    short_rows = df[df["file"] == str(short)]
    assert len(short_rows) == 1 and short_rows["partial"].item() and short_rows["end_s"].item() == 0.104
    gap_rows = df[df["file"] == str(silent_inside)]  # 1.5 s = 188 frames: 6 full windows and a partial one of 2 frames
    assert gap_rows["partial"].tolist() == [False] * 6 + [True] and {0.496, 0.744} <= set(gap_rows["start_s"])  # silence: predicted
    np.testing.assert_allclose(df[CLASSES].sum(1), 1, atol=1e-5)
    assert (df["top"] == df["top_smoothed"]).all()  # no --smooth
    printed = capsys.readouterr().out
    assert f"{long}: " in printed and "(5 windows, 1 partial)" in printed
    png = tmp_path / "tl_timeline" / "long.png"
    assert png.is_file() and 5_000 < png.stat().st_size < 200_000


def test_timeline_hop_window_smoothing_and_an_entirely_silent_file(runs, tmp_path, capsys):
    from scipy.ndimage import median_filter

    comp, root, out = runs
    rng = np.random.default_rng(3)
    mix = np.concatenate([synth_clip(c, SR, 0.4, rng) for c in ("low", "high", "low", "pulse", "low")])
    f = write_clip(tmp_path / "mix.wav", mix, SR)
    silent = write_clip(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(SystemExit):
        _timeline(root, "p-cnn", [f, silent], tmp_path, "--window", "0.5", "--hop", "0.25", "--smooth", "3")
    assert "error: 1 file(s) could not be predicted:\n  " + str(silent) + ": silent clip" in capsys.readouterr().err
    df = pd.read_csv(tmp_path / "tl_timeline.csv")
    starts = (np.arange(len(df)) * 31) / 125  # hop 0.25 s = 31 frames; window 0.5 s = 62 frames; 2 s = 251 frames
    np.testing.assert_allclose(df["start_s"], starts.round(3))
    assert len(df) == 8 and df["partial"].tolist() == [False] * 7 + [True]  # 7 * 31 + 62 > 251: one partial, then stop
    probs = df[CLASSES].to_numpy()
    want = np.array(CLASSES)[median_filter(probs, size=(3, 1), mode="nearest").argmax(1)]
    assert (df["top_smoothed"] == want).all()


def test_fixed_size_models_refuse_other_windows_and_tags_need_a_tagger(runs, tmp_path, capsys):
    comp, root, out = runs
    f = sorted((comp.root / "test").iterdir())[0]
    with pytest.raises(SystemExit):
        _timeline(root, "p-seed", [f], tmp_path, "--window", "0.5")
    err = capsys.readouterr().err
    assert "cnn_seed of run p-seed takes windows of 31 frames (0.248 s) only, not 62" in err and "leave --window out" in err
    assert _timeline(root, "p-seed", [f], tmp_path)["partial"].tolist() == [False, False, True]  # its own length works (63 frames)
    with pytest.raises(SystemExit):
        _timeline(root, "p-cnn", [f], tmp_path, "--tags")
    assert "no pretrained tagger" in (err := capsys.readouterr().err) and "musicnn_msd / musicnn_mtt" in err
    with pytest.raises(SystemExit):
        run_command(main, ["p-cnn", str(f), "--workdir", str(root), "--smooth", "3"])
    assert "--smooth applies to timelines only" in capsys.readouterr().err


# ----------------------------------------------------------------------------- streaming


def test_a_long_file_in_small_chunks_equals_one_shot(runs, tmp_path):
    comp, root, out = runs
    rng = np.random.default_rng(4)
    parts = [synth_clip(c, SR, 1.3, rng) for c in ("low", "pulse", "high", "chirp", "low")]
    y = np.concatenate(parts[:2] + [np.zeros(SR, np.float32)] + parts[2:] + [1e-3 * parts[0]])  # quiet parts: top_db floors
    files = [write_clip(tmp_path / "long.wav", y, SR), write_clip(tmp_path / "long22k.flac", synth_clip("pulse", 22050, 9.0, rng), 22050)]
    for run in ("p-cnn", "p-mlp", "p-ens-mean"):
        pred = load_predictor(root / "runs" / run, root)
        plan = make_plan(pred, root)
        whole = predict_files(pred, plan, files, (0.25, 0.125), chunk_seconds=1000.0)
        chunked = predict_files(pred, plan, files, (0.25, 0.125), chunk_seconds=0.7)
        np.testing.assert_allclose(chunked.clip, whole.clip, atol=1e-5, rtol=0)
        for (tl_a, p_a), (tl_b, p_b) in zip(whole.timelines, chunked.timelines):
            assert np.array_equal(tl_a.start_s, tl_b.start_s) and np.array_equal(tl_a.partial, tl_b.partial)
            np.testing.assert_allclose(p_a, p_b, atol=1e-5, rtol=0)


def test_streamed_segments_and_samples_are_the_caches_exactly(tmp_path):
    from src.audio import load_audio, read_blocks
    from src.stream import Windows, make_source

    comp = make_audio_competition(tmp_path, n_per_class=1, n_test=0)
    cfg = load_config(comp.config)
    rng = np.random.default_rng(5)
    y = np.concatenate([synth_clip("chirp", 11025, 3.0, rng), np.zeros(5000, np.float32), 1e-3 * synth_clip("low", 11025, 2.0, rng)])
    f = write_stereo_clip(tmp_path / "x.flac", y, -0.3 * y, 11025)
    blocks = list(read_blocks(f, SR, 0.3, max_seconds=4.5))
    assert len(blocks) > 10 and np.array_equal(np.concatenate(blocks), load_audio(f, SR, 4.5))
    for recipe in ("logmel", "musicnn"):
        src = make_source(cfg, recipe)
        for chunk_frames in (7, 40, 10_000):
            w = Windows(src.seg, src.seg_hop, keep_partial=False)
            wins = [x for c in src.chunks(str(f), chunk_frames) for x in w.feed(c)] + w.finish()
            assert np.array_equal(src.items(wins, src.seg), src.ex(str(f))["segments"].astype(np.float32)), (recipe, chunk_frames)


@pytest.mark.parametrize("total,length,hop", [(100, 31, 31), (100, 31, 10), (100, 10, 31), (20, 31, 31), (31, 31, 31), (93, 31, 31)])
def test_windows_cover_the_file_once_with_one_partial_window_at_most(total, length, hop):
    from src.stream import Windows

    frames = np.arange(total, dtype=np.float32)[None]
    for keep in (False, True):
        for size in (1, 7, 1000):
            w = Windows(length, hop, keep)
            got = [x for s in range(0, total, size) for x in w.feed({"spec": frames[:, s:s + size]})] + w.finish()
            full = list(range(0, total - length + 1, hop))
            want = full + ([full[-1] + hop if full else 0] if (keep or not full) and (not full or full[-1] + length < total)
                           and (full[-1] + hop if full else 0) < total else [])
            assert [x.start for x in got] == want
            assert all(np.array_equal(x.frames["spec"][0], frames[0, x.start:x.start + length]) for x in got)
            assert [x.partial for x in got] == [x.start + length > total for x in got]


@pytest.mark.skipif(importlib.util.find_spec("musicnn") is None and os.environ.get("MUSICNN_REQUIRED") != "1",
                    reason="musicnn weights not installed: pip install --no-deps -r requirements-nodeps.txt")
def test_musicnn_embedding_runs_predict_like_the_cache_and_draw_tags(tmp_path, capsys):
    comp = make_audio_competition(tmp_path, classes=("low", "pulse"), n_per_class=3, n_test=2, seconds=3.3, sr=16000,
                                  features={"vector": ["musicnn_msd", "mfcc_stats"]})
    cfg = load_config(comp.config)
    prep = prepare(cfg, tmp_path, workers=1)
    _write_folds(prep, tmp_path)
    run = run_training(cfg, TrainConfig(model="logreg", run_id="p-msd", plots=False), tmp_path, prep)
    pred = load_predictor(run, tmp_path)
    res = predict_files(pred, make_plan(pred, tmp_path), sorted((comp.root / "test").iterdir()))
    np.testing.assert_allclose(res.clip, np.load(run / "test.npy"), atol=1e-5, rtol=0)
    f = sorted((comp.root / "test").iterdir())[0]
    df = _timeline(tmp_path, "p-msd", [f], tmp_path, "--tags", "--window", "3")
    assert df["partial"].tolist() == [False, True]  # 3.3 s: a window of 3 s, then the rest; each window's vector as a clip's
    assert (tmp_path / "tl_timeline" / "t000.png").stat().st_size > 5_000 and "t000.wav: " in capsys.readouterr().out


def test_regression_runs_write_target_values(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=3, n_test=2)
    man = pd.read_csv(comp.root / "train.csv")
    man.assign(tempo=60.0 + 10 * np.arange(len(man))).to_csv(comp.root / "train.csv", index=False)
    pd.DataFrame({"id": comp.test_ids, "tempo": 0.0}).to_csv(comp.root / "sample_submission.csv", index=False)
    data = {"kind": "audio", "layout": "manifest", "train_dir": "train", "manifest": "train.csv", "group_column": "artist",
            "test_dir": "test", "sample_submission": "sample_submission.csv"}
    cfg = load_config(_config(tmp_path, "tiny", data, dict(DEFAULT_AUDIO), competition={"task": "regression", "metric": "rmse",
                                                                                         "targets": ["tempo"]}))
    prep = prepare(cfg, tmp_path, workers=1)
    _write_folds(prep, tmp_path)
    run = _train(cfg, prep, tmp_path, "cnn", "p-reg", epochs=1)
    df = _timeline(tmp_path, "p-reg", [comp.root / "test"], tmp_path)
    assert list(df.columns) == ["file", "start_s", "end_s", "partial", "tempo"]  # no classes, no top
    clip = pd.read_csv(tmp_path / "tl.csv")
    assert list(clip.columns) == ["path", "tempo"]
    np.testing.assert_allclose(clip[["tempo"]].to_numpy(), np.load(run / "test.npy"), atol=1e-4)
    assert (tmp_path / "tl_timeline" / "t001.png").is_file()
