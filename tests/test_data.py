"""Data adapters on small real-format fixtures, and the errors bad input must raise (naming file/row/key)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures import (
    make_arrays_competition,
    make_audio_competition,
    make_image_competition,
    make_tabular_competition,
    write_clip,
)

from src.config import load_config
from src.data import DataError, load_dataset
from src.features import prepare

ALL_FORMATS = (".wav", ".au", ".mp3", ".flac", ".ogg")


# ----------------------------------------------------------------------------- audio adapters


def test_audio_folders_layout(tmp_path):
    comp = make_audio_competition(tmp_path, layout="folders", formats=ALL_FORMATS, n_per_class=3, n_test=5)
    ds = load_dataset(load_config(comp.config))
    assert sorted(ds.train["id"]) == sorted(comp.train["id"])
    assert ds.classes == sorted(comp.extra["classes"])  # derived from the folder names
    by_id = ds.train.set_index("id")
    assert (by_id.loc[comp.train["id"], "label"].to_numpy() == comp.train["label"].to_numpy()).all()
    assert {p.rsplit(".", 1)[1] for p in ds.train["path"]} == {e[1:] for e in ALL_FORMATS}
    assert (ds.train["group"] == ds.train["id"]).all()  # no group column: every clip its own group
    assert ds.test["id"].tolist() == comp.test_ids  # sample submission order


def test_audio_manifest_layout_with_mixed_formats(tmp_path):
    comp = make_audio_competition(tmp_path, formats=ALL_FORMATS, n_per_class=2, n_test=5)
    ds = load_dataset(load_config(comp.config))
    assert ds.train["id"].tolist() == comp.train["id"].tolist()  # manifest order
    assert ds.train["path"].tolist() == comp.train["path"].tolist()  # ids without extension resolve to the file
    assert (ds.train["group"] == comp.train["artist"]).all()
    assert ds.test["id"].tolist() == comp.test_ids
    assert list(ds.sample_submission.columns) == ["id", "label"]
    np.testing.assert_array_equal(ds.labels("train"), [ds.classes.index(c) for c in comp.train["label"]])


@pytest.mark.parametrize("layout", ["folders", "manifest"])
def test_audio_layouts_decode_every_format(tmp_path, layout):
    """wav/au/mp3/flac/ogg, stereo, written at 11025 Hz: all decode, at the configured 8 kHz."""
    comp = make_audio_competition(tmp_path, layout=layout, formats=ALL_FORMATS, n_per_class=2, n_test=5,
                                  stereo=True, file_sr=11025, lengths=(0.5,))
    prep = prepare(load_config(comp.config), tmp_path / "work", workers=1)
    clips = pd.read_csv(prep.cache / "clips.csv", keep_default_na=False)
    assert clips["ok"].all(), clips.loc[~clips["ok"], ["path", "error"]].to_string()
    assert set(clips["path"].str.rsplit(".", n=1).str[1]) == {e[1:] for e in ALL_FORMATS}
    # 0.5 s at 8 kHz, hop 64 -> 63 frames -> two 31-frame segments (mp3 padding may add a few frames, not a segment)
    assert (clips["n_segments"] == 2).all(), clips[["path", "n_segments"]].to_string()
    assert prep.ds.skipped == []


# ----------------------------------------------------------------------------- feature-vector adapters


def test_tabular_csv(tabular):
    cfg = load_config(tabular.config)
    ds = load_dataset(cfg)
    feats = tabular.extra["features"]
    assert ds.feature_names == feats  # id, label and the dropped 'length' are not features
    assert ds.arrays["train"].shape == (len(tabular.train), len(feats)) and ds.arrays["train"].dtype == np.float32
    raw = pd.read_csv(tabular.root / "features.csv")
    np.testing.assert_allclose(ds.arrays["train"], raw[feats].to_numpy(np.float32))
    assert ds.train["id"].tolist() == raw["filename"].tolist()
    assert ds.arrays["test"].shape == (len(tabular.test_ids), len(feats))
    assert ds.test["id"].tolist() == tabular.test_ids
    prep = prepare(cfg)
    assert prep.cache is None and prep.items("vector", "train").X.shape[1] == len(feats)


def test_arrays_layout_mfccs_with_holdout_and_test(arrays):
    cfg = load_config(arrays.config)
    ds = load_dataset(cfg)
    labels = arrays.extra["labels"]
    assert ds.train["label"].tolist() == labels["train"].tolist()  # string labels kept
    assert ds.classes == sorted(set(labels["train"]))
    assert ds.holdout["label"].tolist() == labels["valid"].tolist()
    assert ds.holdout["id"].str.startswith("valid_").all() and len(ds.test) == len(arrays.test_ids)
    assert "label" not in ds.test
    assert ds.arrays["train"].shape == (40, 26) and ds.arrays["holdout"].shape == (12, 26) and ds.arrays["test"].shape == (8, 26)
    np.testing.assert_array_equal(ds.arrays["train"], np.load(arrays.root / "train" / "mfccs" / "X.npy"))
    prep = prepare(cfg)
    with pytest.raises(DataError, match="needs spec input"):
        prep.items("spec", "train")


def test_arrays_layout_melgrams(tmp_path):
    comp = make_arrays_competition(tmp_path, feature="melgrams")
    prep = prepare(load_config(comp.config))
    stored = np.load(comp.root / "train" / "melgrams" / "X.npy")  # (n, 21 frames, 128 mels)
    items = prep.items("spec", "train")
    assert items.X.shape == (40, 128, 21)  # models see (n_mels, frames)
    np.testing.assert_array_equal(items.X[3], stored[3].T)
    assert prep.items("spec", "holdout").X.shape == (12, 128, 21)
    with pytest.raises(DataError, match="needs vector input"):
        prep.items("vector", "train")


def test_images_layout(tmp_path):
    comp = make_image_competition(tmp_path, size=(16, 24))
    prep = prepare(load_config(comp.config))
    assert sorted(prep.ds.train["id"]) == sorted(comp.train["id"])
    X = prep.items("spec", "train").X
    assert X.shape == (12, 16, 24) and 0.0 <= X.min() and X.max() <= 1.0
    with pytest.raises(DataError, match="spectrogram"):
        prep.items("vector", "train")


# ----------------------------------------------------------------------------- bad input


def test_nan_and_inf_features_name_row_and_column(tmp_path):
    comp = make_tabular_competition(tmp_path)
    csv = comp.root / "features.csv"
    df = pd.read_csv(csv)
    df.loc[3, "f2"] = np.nan
    df.loc[7, "f4"] = np.inf
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"features\.csv: 2 NaN/inf .* row 5 \(id 'r0003\.wav'\), column 'f2'"):
        load_dataset(load_config(comp.config))


def test_inf_in_test_csv(tmp_path):
    comp = make_tabular_competition(tmp_path)
    csv = comp.root / "test.csv"
    df = pd.read_csv(csv)
    df.loc[0, "f1"] = -np.inf
    df.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"test\.csv: 1 NaN/inf .* row 2 .*column 'f1'"):
        load_dataset(load_config(comp.config))


def test_nan_in_arrays(tmp_path):
    comp = make_arrays_competition(tmp_path, melgrams=False, n_holdout=0, n_test=0)
    X = np.load(comp.root / "train" / "mfccs" / "X.npy")
    X[5, 3] = np.nan
    np.save(comp.root / "train" / "mfccs" / "X.npy", X)
    with pytest.raises(DataError, match=r"X\.npy: 1 row\(s\) contain NaN/inf, first at index 5"):
        load_dataset(load_config(comp.config))


def test_arrays_label_count_mismatch(tmp_path):
    comp = make_arrays_competition(tmp_path, melgrams=False, n_holdout=0, n_test=0)
    np.save(comp.root / "train" / "mfccs" / "labels.npy", np.array(["blues"] * 39))
    with pytest.raises(DataError, match="X.npy has 40 rows but labels.npy has 39"):
        load_dataset(load_config(comp.config))


def test_label_not_in_class_list(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=1, groups_per_class=1, n_test=0,
                                  data={"classes": ["low", "high"]})
    with pytest.raises(DataError, match=r"label\(s\) \['pulse'\] \(first at id 'pulse00'\) are not in \[data\] classes"):
        load_dataset(load_config(comp.config))


def test_missing_label(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=2, groups_per_class=1, n_test=0)
    man = pd.read_csv(comp.root / "train.csv")
    man.loc[2, "label"] = None
    man.to_csv(comp.root / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv: line 4 \(id 'high00'\) has no label"):  # 1-based CSV line (was 0-based 'row 2')
        load_dataset(load_config(comp.config))


def test_duplicate_ids(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=2, groups_per_class=1, n_test=0)
    man = pd.read_csv(comp.root / "train.csv")
    pd.concat([man, man.iloc[[1]]]).to_csv(comp.root / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train: duplicate id\(s\) \['low01'\]"):
        load_dataset(load_config(comp.config))


def test_tabular_duplicate_ids(tmp_path):
    comp = make_tabular_competition(tmp_path, n_test=0)
    df = pd.read_csv(comp.root / "features.csv")
    df.loc[4, "filename"] = df.loc[3, "filename"]
    df.to_csv(comp.root / "features.csv", index=False)
    with pytest.raises(DataError, match=r"duplicate id\(s\) \['r0003\.wav'\]"):
        load_dataset(load_config(comp.config))


def test_audio_test_id_without_file(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=1, groups_per_class=1, n_test=2)
    ss = pd.read_csv(comp.root / "sample_submission.csv")
    pd.concat([ss, pd.DataFrame([{"id": "t999", "label": "low"}])]).to_csv(comp.root / "sample_submission.csv", index=False)
    with pytest.raises(DataError, match=r"no file for id 't999'"):
        load_dataset(load_config(comp.config))


def test_tabular_test_ids_not_matching_sample_submission(tmp_path):
    comp = make_tabular_competition(tmp_path)
    ss = pd.read_csv(comp.root / "sample_submission.csv")
    ss.loc[0, "filename"] = "ghost.wav"
    ss.to_csv(comp.root / "sample_submission.csv", index=False)
    with pytest.raises(DataError, match=r"test ids do not match sample_submission\.csv: 1 id\(s\) .*ghost\.wav.*t0000\.wav"):
        load_dataset(load_config(comp.config))


def test_manifest_missing_column(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=1, groups_per_class=1, n_test=0,
                                  data={"group_column": "recording"})
    with pytest.raises(DataError, match=r"train\.csv: column\(s\) \['recording'\] not found"):
        load_dataset(load_config(comp.config))


def test_manifest_id_without_file(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=1, groups_per_class=1, n_test=0)
    (comp.root / "train" / "high00.wav").unlink()
    with pytest.raises(DataError, match=r"no file for id 'high00'"):
        load_dataset(load_config(comp.config))


def _corrupt_files(comp) -> dict[str, str]:
    """Break three training clips and one test clip in different ways; return id -> expected problem."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    train = comp.root / "train"
    (train / "low00.wav").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())  # random bytes
    (train / "high01.wav").write_bytes((train / "high01.wav").read_bytes()[:30])  # header cut inside
    (train / "pulse02.wav").write_bytes(b"")
    write_clip(comp.root / "test" / "t001.wav", np.zeros(4000, np.float32), 8000)  # silent
    assert sf.info(str(comp.root / "test" / "t001.wav")).frames == 4000
    return {"low00": "cannot decode", "high01": "cannot decode", "pulse02": "empty", "t001": "silent clip"}


def test_corrupt_empty_and_silent_clips_are_errors_listing_every_file(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=4)
    bad = _corrupt_files(comp)
    with pytest.raises(DataError) as info:
        prepare(load_config(comp.config), tmp_path / "work", workers=1)
    msg = str(info.value)
    assert msg.startswith("4 clip(s) cannot be used")
    for cid, problem in bad.items():
        line = next(ln for ln in msg.splitlines() if f"/{cid}:" in ln)
        assert problem in line and f"{cid}.wav" in line, line
    assert "on_corrupt = 'skip'" in msg  # the fix


def test_on_corrupt_skip_lists_skipped_clips(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=4, data={"on_corrupt": "skip"})
    bad = _corrupt_files(comp)
    prep = prepare(load_config(comp.config), tmp_path / "work", workers=1)
    skipped = {s["id"]: s for s in prep.ds.skipped}
    assert set(skipped) == set(bad)
    assert skipped["t001"]["split"] == "test" and "silent" in skipped["t001"]["error"]
    assert set(prep.ds.train["id"]) == set(comp.train["id"]) - {"low00", "high01", "pulse02"}
    assert prep.ds.test["id"].tolist() == comp.test_ids  # test rows stay: the submission needs every id
    test_items = prep.items("spec", "test")
    assert 1 not in set(test_items.row.tolist()) and test_items.n_rows == len(comp.test_ids)


def test_tabular_numeric_looking_ids_keep_leading_zeros(tmp_path):
    """Kaggle ids like '00012' must match sample_submission.csv as text, not as the number 12."""
    comp = make_tabular_competition(tmp_path, duplicate_pairs=False)
    for name, start in (("features.csv", 100), ("test.csv", 0), ("sample_submission.csv", 0)):
        df = pd.read_csv(comp.root / name)
        df["filename"] = [f"{start + i:05d}" for i in range(len(df))]
        df.to_csv(comp.root / name, index=False)
    ds = load_dataset(load_config(comp.config))
    assert ds.train["id"].iloc[0] == "00100" and ds.test["id"].tolist()[:2] == ["00000", "00001"]
