"""Windowed test sets (``[test] window_seconds``, BirdCLEF soundscapes) and the multilabel submission.

One birdclef-style competition (3-s soundscapes, 1-s windows, a sample listing ``<soundscape>_<end>`` rows) is built
once per module; tests that change files or settings build their own.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fixtures import make_multilabel_competition
from train_helpers import _train, _write_folds

from src.audio import load_audio, load_window
from src.config import AUDIO_EXTENSIONS, load_config
from src.data import list_windows, load_dataset
from src.errors import DataError, SubmissionError
from src.features import _Extractor, cache_dir, prepare
from src.runs import load_run
from src.submit import build_submission, check_test_rows, main, validate_submission

CLASSES = ["low", "high", "pulse", "chirp"]


@pytest.fixture(scope="module")
def birdclef(tmp_path_factory):
    root = tmp_path_factory.mktemp("birdclef")
    return make_multilabel_competition(root, style="birdclef"), root


def test_windows_listed_in_file_then_time_order_with_template_ids(birdclef):
    comp, _ = birdclef
    cfg = load_config(comp.config)
    ds = load_dataset(cfg)
    assert ds.test["id"].tolist() == comp.extra["test_rows"]  # soundscape_0_1, _0_2, _0_3, soundscape_1_1, ...
    first = ds.test.iloc[:3]
    assert first["start_s"].tolist() == [0.0, 1.0, 2.0] and first["end_s"].tolist() == [1.0, 2.0, 3.0]
    assert (first["file"] == "soundscape_0").all() and first["path"].nunique() == 1
    sample = ds.sample_submission
    assert list(sample.columns) == ["row_id", *CLASSES]  # [data] id_column is the training 'filename': row_id is taken


def _cfg_for(comp, tmp_path, **test):
    cfg = load_config(comp.config)
    for k, v in test.items():
        setattr(cfg.test, k, v)
    return cfg


def test_partial_last_window_padded_or_dropped_and_bad_templates(birdclef, tmp_path):
    comp, _ = birdclef
    sr = comp.extra["sr"]
    rng = np.random.default_rng(1)
    for name, seconds in (("a_long", 2.6), ("b_short", 2.3), ("c_tiny", 0.3)):
        sf.write(str(tmp_path / f"{name}.wav"), (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr)
    problems: list[dict] = []
    df = list_windows(_cfg_for(comp, tmp_path, row_id_template="{file}-{index}-{start}-{end}"), tmp_path, AUDIO_EXTENSIONS, problems)
    # 2.6 s: 0.6 s left >= half a window -> a third, padded window; 2.3 s: 0.3 s dropped; 0.3 s: no window at all
    assert df["id"].tolist() == ["a_long-0-0-1", "a_long-1-1-2", "a_long-2-2-3", "b_short-0-0-1", "b_short-1-1-2"]
    assert not problems
    padded = load_window(tmp_path / "a_long.wav", sr, 2.0, 3.0)
    assert len(padded) == sr and np.all(padded[int(0.6 * sr) + 1:] == 0) and np.abs(padded[: int(0.6 * sr)]).max() > 0
    with pytest.raises(DataError, match=r"row_id_template '\{file\}_\{stop\}' cannot be filled"):
        list_windows(_cfg_for(comp, tmp_path, row_id_template="{file}_{stop}"), tmp_path, AUDIO_EXTENSIONS, [])
    with pytest.raises(DataError, match=r"same row id 'a_long_1'.*add \{index\}"):
        list_windows(_cfg_for(comp, tmp_path, window_seconds=0.4), tmp_path, AUDIO_EXTENSIONS, [])


@pytest.mark.parametrize("file_sr", [8000, 22050])
def test_window_audio_equals_slice_of_full_decode(tmp_path, file_sr):
    y = (0.2 * np.random.default_rng(2).standard_normal(int(4.5 * file_sr))).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(str(path), y, file_sr)
    full = load_audio(path, 8000)
    for start in (0.0, 1.0, 3.0):
        w = load_window(path, 8000, start, start + 1.0)
        ref = full[int(start * 8000): int(start * 8000) + 8000]
        if file_sr == 8000:
            np.testing.assert_array_equal(w, ref)  # same rate: bit-identical
        else:
            np.testing.assert_allclose(w, ref, atol=1e-5)  # resampled with a margin: the filter sees the same context
    assert len(load_window(path, 8000, 4.0, 5.0)) == 8000  # past the end: padded to the window


def test_cache_key_changes_with_window_seconds(birdclef, tmp_path):
    comp, _ = birdclef
    keys = []
    for w, template in ((1.0, "{file}_{end}"), (1.5, "{file}_{index}")):
        cfg = _cfg_for(comp, tmp_path, window_seconds=w, row_id_template=template)
        cfg.data.sample_submission = ""  # the sample names 1-s windows
        keys.append(cache_dir(cfg, load_dataset(cfg), tmp_path).name)
    assert keys[0] != keys[1]


def test_window_rows_hold_only_their_window(birdclef):
    """Each window row's cached segments are the extractor's on that window's slice of the whole decode, never a neighbour's."""
    comp, root = birdclef
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    items = prep.items("spec", "test")
    ex = _Extractor(cfg.audio)
    test = prep.ds.test
    for r in (0, 1, 2):  # the three windows of soundscape_0
        full = load_audio(test["path"].iloc[r], cfg.audio.sample_rate)
        a, b = (int(test[c].iloc[r] * cfg.audio.sample_rate) for c in ("start_s", "end_s"))
        want = ex.from_signal(full[a:b])["segments"].astype(np.float32)
        got = np.asarray(items.X[np.flatnonzero(items.row == r)])
        np.testing.assert_allclose(got, want, atol=0.1)  # float16 dB
    assert np.bincount(items.row, minlength=len(test)).tolist() == [4] * len(test)  # 1-s windows of 0.25-s segments


def test_birdclef_folds_train_submit(birdclef, capsys):
    comp, root = birdclef
    cfg = load_config(comp.config)
    prep = prepare(cfg, root, workers=1)
    _write_folds(prep, root)
    _train(cfg, prep, root, "cnn", "bc-cnn", epochs=2)
    main(["bc-cnn", "--workdir", str(root)])
    sub = pd.read_csv(root / "submissions" / "bc-cnn.csv", dtype={"row_id": str})
    sample = prep.ds.sample_submission
    assert list(sub.columns) == list(sample.columns) and sub["row_id"].tolist() == comp.extra["test_rows"]
    P = sub[CLASSES].to_numpy()
    assert ((P >= 0) & (P <= 1)).all() and not np.allclose(P.sum(1), 1)  # independent sigmoids, not renormalised
    run = load_run("bc-cnn", root)
    np.testing.assert_allclose(sub[run.config["classes"]].to_numpy(), run.test, rtol=1e-6)  # the run's class order, mapped by name
    validate_submission(sub, sample, "row_id", CLASSES, task="multilabel", windowed=True)


def test_birdclef_ensemble_submits_every_window(birdclef):
    """The BirdCLEF chain with an ensemble: a second run (mlp on clip statistics), the mean ensemble, submit."""
    from src.ensemble import ensemble

    comp, root = birdclef
    cfg = load_config(comp.config)
    _train(cfg, prepare(cfg, root, workers=1), root, "mlp", "bc-mlp", epochs=2)
    name = Path(ensemble(["bc-cnn", "bc-mlp"], "bc-ens", root, "mean")).name
    main([name, "--workdir", str(root)])
    sub = pd.read_csv(root / "submissions" / f"{name}.csv", dtype={"row_id": str})
    assert sub["row_id"].tolist() == comp.extra["test_rows"] and list(sub.columns) == ["row_id", *CLASSES]
    np.testing.assert_allclose(sub[load_run(name, root).config["classes"]].to_numpy(), load_run(name, root).test, rtol=1e-6)


def test_inference_kernel_builds_window_rows_from_the_timeline(birdclef, tmp_path):
    """The code-competition path: src.predict --timeline on the test soundscapes (the run's own 0.25-s segments), then
    kernel_runner aggregates them into the 1-s windows; it must agree with the run's test.npy, whose windows were
    decoded one by one (their edge frames see no audio beyond the window, hence the tolerance)."""
    from src import kernel_runner
    from src.predict import main as predict_main

    comp, root = birdclef
    run = load_run("bc-cnn", root)  # trained by the test above
    preds = tmp_path / "preds.csv"
    predict_main(["bc-cnn", str(comp.root / "test_soundscapes"), "--out", str(preds), "--workdir", str(root), "--timeline"])
    out = tmp_path / "submission.csv"
    how = kernel_runner.run_aggregate(run.root)
    assert how == ("mean", False)
    n = kernel_runner.write_submission({"config": str(comp.config)}, comp.config, preds, out, how)
    sub = pd.read_csv(out, dtype={"row_id": str})
    assert n == len(comp.extra["test_rows"]) and sub["row_id"].tolist() == comp.extra["test_rows"]
    np.testing.assert_allclose(sub[run.config["classes"]].to_numpy(), run.test, atol=0.02)


IDS = ["s_5", "s_10", "t_5", "t_10"]
SAMPLE = pd.DataFrame({"row_id": ["s_5", "s_10"], "b": 0.0, "a": 0.0})  # lists only some windows, columns not sorted
P = np.array([[0.9, 0.1], [0.0, 0.0], [0.2, 0.7], [0.6, 0.6]])  # (n, C) sigmoids over classes [a, b]


def test_multilabel_submission_covers_the_sample_and_refuses_gaps():
    sub = build_submission(P, IDS, SAMPLE, "row_id", ["a", "b"], "multilabel", windowed=True)
    assert sub["row_id"].tolist() == IDS and list(sub.columns) == ["row_id", "b", "a"]
    np.testing.assert_allclose(sub[["a", "b"]].to_numpy(), P)  # the all-zero row stays: no class present
    validate_submission(sub, SAMPLE, "row_id", ["a", "b"], task="multilabel", windowed=True)
    with pytest.raises(SubmissionError, match=r"lack\(s\) row id 's_10' of the sample submission \(line 3.*predict every window"):
        validate_submission(sub.iloc[[0, 2, 3]], SAMPLE, "row_id", ["a", "b"], task="multilabel", windowed=True)
    with pytest.raises(SubmissionError, match="repeat"):
        validate_submission(sub.iloc[[0, 1, 1]], SAMPLE, "row_id", ["a", "b"], task="multilabel", windowed=True)
    with pytest.raises(SubmissionError, match=r"columns \['row_id', 'a', 'b'\] differ"):
        validate_submission(sub[["row_id", "a", "b"]], SAMPLE, "row_id", ["a", "b"], task="multilabel", windowed=True)
    with pytest.raises(SubmissionError, match=r"run's test rows lack\(s\) row id 's_10'"):
        build_submission(P[[0, 2]], ["s_5", "t_5"], SAMPLE, "row_id", ["a", "b"], "multilabel", windowed=True)
    with pytest.raises(SubmissionError, match="outside"):
        validate_submission(sub.assign(a=1.5), SAMPLE, "row_id", ["a", "b"], task="multilabel", windowed=True)


def test_multilabel_is_never_an_argmax_label_and_nan_rows_are_refused():
    label_sample = pd.DataFrame({"row_id": IDS, "label": "a"})
    with pytest.raises(SubmissionError, match="one probability column per class"):
        build_submission(P, IDS, label_sample, "row_id", ["a", "b"], "multilabel")
    check_test_rows(P, IDS, "multilabel")  # an all-zero multilabel row is an answer
    with pytest.raises(SubmissionError, match="all-zero"):
        check_test_rows(P, IDS, "classification")
    with pytest.raises(SubmissionError, match=r"row 3 \(id 't_10'\) holds NaN"):
        check_test_rows(np.vstack([P[:3], [np.nan, np.nan]]), IDS, "multilabel")


def test_sample_ids_naming_no_window_are_refused_at_load(tmp_path):
    comp = make_multilabel_competition(tmp_path, style="birdclef", n_train=8, n_test=2)
    pd.DataFrame({"row_id": ["soundscape_0_5"], **{c: 0.0 for c in CLASSES}}).to_csv(comp.root / "sample_submission.csv", index=False)
    with pytest.raises(DataError, match=r"first 'soundscape_0_5' \(line 2\); the windows are named like 'soundscape_0_1'"):
        load_dataset(load_config(comp.config))
