"""Real-data faults: each one is either a clear DataError (file, row/id, key named) or the correct result.

One test (or one parametrised group) per fault, numbered like the fault list it came from. Every test also
checks that nothing already on disk was lost or changed (the input data, and a cache built before).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import (
    link_class_folders,
    make_arrays_competition,
    make_audio_competition,
    make_image_competition,
    make_image_manifest_competition,
    make_numbered_folders_competition,
    make_tabular_competition,
    synth_clip,
    write_clip,
    write_stereo_clip,
)

from src.audio import AudioError, load_audio
from src.config import load_config
from src.data import DataError, load_dataset
from src.features import cache_dir, prepare


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (symlinks to folders are not followed)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _assert_kept(before: dict[str, str]) -> None:
    """Nothing already written is lost: every file of the snapshot still exists with the same bytes."""
    for p, digest in before.items():
        assert Path(p).is_file(), f"{p} was removed"
        assert hashlib.sha256(Path(p).read_bytes()).hexdigest() == digest, f"{p} was changed"


# ----------------------------------------------------------------------------- 1. folder-layout ids


def test_case01_folder_ids_are_unique_when_stems_collide(tmp_path):
    comp = make_numbered_folders_competition(tmp_path)  # classical/0.wav, rock/0.wav, ...; test a/0.wav, b/0.wav
    before = _snapshot(comp.root)
    prep = prepare(load_config(comp.config), tmp_path / "work", workers=1)
    ds = prep.ds
    assert ds.train["id"].tolist() == comp.train["id"].tolist()  # 'classical/0', ..., 'rock/2'
    assert ds.train["label"].tolist() == comp.train["label"].tolist()
    assert ds.train["path"].tolist() == comp.train["path"].tolist()
    assert ds.test["id"].tolist() == comp.test_ids  # 'a/0', 'a/1', 'b/0', 'b/1'
    assert prep.items("vector", "test").n_rows == len(comp.test_ids)
    # same name, other extension: the relative path without extension collides too -> the extension stays
    write_clip(comp.root / "test" / "a" / "0.flac", synth_clip("low", 8000, 0.5, np.random.default_rng(1)), 8000)
    ds = load_dataset(load_config(comp.config))
    assert ds.test["id"].tolist() == ["a/0.flac", "a/0.wav", "a/1.wav", "b/0.wav", "b/1.wav"]
    assert ds.train["id"].tolist() == comp.train["id"].tolist()  # train ids do not depend on the test folder
    _assert_kept(before)


# ----------------------------------------------------------------------------- 2. symlinked class folders


def test_case02_symlinked_class_folders_are_followed_and_loops_guarded(tmp_path):
    comp = make_audio_competition(tmp_path, layout="folders", n_per_class=2, n_test=2)
    links = link_class_folders(comp, tmp_path / "input", loop=True)  # train/<class> -> input/<class>, plus a loop
    assert all(p.is_symlink() for p in links)
    before = _snapshot(tmp_path / "input")
    ds = load_dataset(load_config(comp.config))
    got = ds.train.set_index("id")
    assert sorted(got.index) == sorted(comp.train["id"])
    assert (got.loc[comp.train["id"], "label"].to_numpy() == comp.train["label"].to_numpy()).all()
    assert ds.classes == sorted(comp.extra["classes"])
    assert all(Path(p).is_relative_to(comp.root / "train") for p in ds.train["path"])  # paths as the user sees them
    _assert_kept(before)


# ----------------------------------------------------------------------------- 3. non-numeric cells in tabular data


@pytest.mark.parametrize("csv_name, row, line, cid", [("features.csv", 3, 5, "r0003.wav"), ("test.csv", 1, 3, "t0001.wav")])
@pytest.mark.parametrize("explicit", [False, True], ids=["auto-columns", "feature_columns"])
def test_case03_non_numeric_cell_names_file_line_id_column(tmp_path, csv_name, row, line, cid, explicit):
    data = {"feature_columns": [f"f{j}" for j in range(6)]} if explicit else None
    comp = make_tabular_competition(tmp_path, data=data)
    path = comp.root / csv_name
    df = pd.read_csv(path)
    df["f2"] = df["f2"].astype(object)
    df.loc[row, "f2"] = "?"
    df.to_csv(path, index=False)
    before = _snapshot(comp.root)
    with pytest.raises(DataError, match=rf"{csv_name}: .*line {line} \(id '{cid}'\), column 'f2': '\?'"):
        load_dataset(load_config(comp.config))
    _assert_kept(before)


def test_case03_wholly_text_column_stays_excluded_and_is_logged(tmp_path, caplog):
    comp = make_tabular_competition(tmp_path, n_test=0)
    path = comp.root / "features.csv"
    df = pd.read_csv(path)
    df.insert(2, "genre_note", [f"note {i}" for i in range(len(df))])
    df.to_csv(path, index=False)
    before = _snapshot(comp.root)
    with caplog.at_level(logging.INFO, logger="src.data"):
        ds = load_dataset(load_config(comp.config))
    assert ds.feature_names == comp.extra["features"]
    assert any("genre_note" in r.getMessage() for r in caplog.records), caplog.text
    _assert_kept(before)


# ----------------------------------------------------------------------------- 4. label typos


@pytest.mark.parametrize("typo", ["high ", "High", " HIGH"])
@pytest.mark.parametrize("kind", ["manifest", "tabular"])
def test_case04_label_differing_only_by_space_or_case_is_an_error(tmp_path, kind, typo):
    if kind == "manifest":
        comp = make_audio_competition(tmp_path, classes=("low", "high", "pulse"), n_per_class=3, n_test=0)
        path, row, file_id = comp.root / "train.csv", 4, "high01"  # row 4 = CSV line 6
    else:
        comp = make_tabular_competition(tmp_path, classes=("low", "high", "pulse"), n_test=0, duplicate_pairs=False)
        path, row, file_id = comp.root / "features.csv", 14, "r0014.wav"  # rows 12..23 are 'high'; CSV line 16
    df = pd.read_csv(path)
    assert df.loc[row, "label"] == "high"
    df.loc[row, "label"] = typo
    df.to_csv(path, index=False)
    before = _snapshot(comp.root)
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    msg = str(info.value)
    assert f"{path.name}: line {row + 2} (id '{file_id}')" in msg, msg
    assert repr(typo) in msg and "'high'" in msg, msg
    _assert_kept(before)


# ----------------------------------------------------------------------------- 5. empty / unparsable CSVs


@pytest.mark.parametrize(
    "kind, name, content, expect",
    [
        ("audio", "train.csv", b"", "is empty"),
        ("audio", "train.csv", b"id,label,artist\n", "no rows"),
        ("audio", "sample_submission.csv", b"", "is empty"),
        ("audio", "train.csv", b"id,label,artist\nlow00,low,a\nlow01,low,a,x,y\n", "Expected 3 fields in line 3, saw 5"),
        ("tabular", "features.csv", b"", "is empty"),
        ("tabular", "features.csv", b"filename,length,f0,label\n", "no rows"),
        ("tabular", "test.csv", b"", "is empty"),
    ],
    ids=["manifest-0-bytes", "manifest-header-only", "sample-0-bytes", "manifest-parser-error",
         "train-csv-0-bytes", "train-csv-header-only", "test-csv-0-bytes"],
)
def test_case05_empty_or_unparsable_csv_names_the_file(tmp_path, kind, name, content, expect):
    comp = make_audio_competition(tmp_path, n_per_class=2) if kind == "audio" else make_tabular_competition(tmp_path)
    (comp.root / name).write_bytes(content)
    before = _snapshot(comp.root)
    with pytest.raises(DataError, match=rf"{name}: .*{expect}"):
        load_dataset(load_config(comp.config))
    _assert_kept(before)


# ----------------------------------------------------------------------------- 6. pickled / malformed .npy


def _object_array(n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = np.zeros(26, np.float32)
    return out


@pytest.mark.parametrize(
    "name, make, expect",
    [
        ("X.npy", lambda y: _object_array(len(y)), "Python objects|pickle"),
        ("labels.npy", lambda y: y.astype(object), "Python objects|pickle"),
        ("labels.npy", lambda y: np.eye(4)[np.arange(len(y)) % 4], r"not 1-D: shape \(40, 4\)"),
    ],
    ids=["object-X", "object-labels", "one-hot-labels"],
)
def test_case06_pickled_or_non_1d_npy_names_the_file(tmp_path, name, make, expect):
    comp = make_arrays_competition(tmp_path, melgrams=False)
    np.save(comp.root / "train" / "mfccs" / name, make(comp.extra["labels"]["train"]), allow_pickle=True)
    before = _snapshot(comp.root)
    with pytest.raises(DataError, match=rf"train/mfccs/{name}: .*({expect})"):
        load_dataset(load_config(comp.config))
    _assert_kept(before)


# ----------------------------------------------------------------------------- 7. split shapes differ


@pytest.mark.parametrize("split", ["test", "valid"])
def test_case07_split_feature_shape_differs_from_train(tmp_path, split):
    comp = make_arrays_competition(tmp_path, melgrams=False)
    xp = comp.root / split / "mfccs" / "X.npy"
    np.save(xp, np.load(xp)[:, :20])
    before = _snapshot(comp.root)
    with pytest.raises(DataError, match=rf"{split}/mfccs/X\.npy: .*\(20,\).*train/mfccs/X\.npy.*\(26,\)"):
        load_dataset(load_config(comp.config))
    _assert_kept(before)


# ----------------------------------------------------------------------------- 8. anti-phase stereo


def test_case08_anti_phase_stereo_is_named_not_silent(tmp_path):
    y = synth_clip("low", 8000, 0.5, np.random.default_rng(0))
    path = write_stereo_clip(tmp_path / "anti.wav", y, -y, 8000)
    with pytest.raises(AudioError, match=r"channels cancel when mixed to mono \(anti-phase stereo\)") as info:
        load_audio(path, 8000)
    assert "one channel" in str(info.value) and str(path) in str(info.value)
    # through the feature stage: collected with the other per-clip errors, naming the clip
    comp = make_audio_competition(tmp_path / "comp", n_per_class=2, n_test=0)
    write_stereo_clip(comp.root / "train" / "low01.wav", y, -y, 8000)
    before = _snapshot(comp.root)
    with pytest.raises(DataError, match=r"1 clip\(s\) cannot be used:\n  train/low01: .*low01\.wav: channels cancel"):
        prepare(load_config(comp.config), tmp_path / "work", workers=1)
    _assert_kept(before)


# ----------------------------------------------------------------------------- 9. missing files, unreadable images


def test_case09_all_missing_files_in_one_error(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=8, n_test=4)
    gone = [f"{c}{i:02d}" for c in ("low", "high", "pulse") for i in range(8)][:22] + ["t002"]
    for cid in gone:
        (comp.root / ("test" if cid.startswith("t") else "train") / f"{cid}.wav").unlink()
    before = _snapshot(comp.root)
    with pytest.raises(DataError) as info:
        load_dataset(load_config(comp.config))
    msg = str(info.value)
    assert msg.startswith("23 file(s)"), msg
    listed = [ln for ln in msg.splitlines() if "no file for id" in ln]
    assert len(listed) == 20 and "and 3 more" in msg, msg
    assert all(f"'{cid}'" in msg for cid in gone[:20])
    assert "on_corrupt = 'skip'" in msg
    _assert_kept(before)


def test_case09_missing_files_are_skipped_with_on_corrupt_skip(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=3, n_test=4, data={"on_corrupt": "skip"})
    for rel in ("train/low01.wav", "train/high02.wav", "test/t002.wav"):
        (comp.root / rel).unlink()
    before = _snapshot(comp.root)
    prep = prepare(load_config(comp.config), tmp_path / "work", workers=1)
    skipped = {s["id"]: s for s in prep.ds.skipped}
    assert set(skipped) == {"low01", "high02", "t002"}
    assert skipped["t002"]["split"] == "test" and "no file for id 't002'" in skipped["t002"]["error"]
    assert set(prep.ds.train["id"]) == set(comp.train["id"]) - {"low01", "high02"}
    assert prep.ds.test["id"].tolist() == comp.test_ids  # kept: predicted with the prior
    items = prep.items("vector", "test")
    assert 2 not in set(items.row.tolist()) and items.n_rows == 4
    _assert_kept(before)


def test_case09_unreadable_images_are_listed_together(tmp_path):
    comp = make_image_competition(tmp_path, n_per_class=4)
    bad = [comp.root / "train" / "a" / "a01.png", comp.root / "train" / "b" / "b03.png"]
    for p in bad:
        p.write_bytes(b"not a png")
    before = _snapshot(comp.root)
    prep = prepare(load_config(comp.config))
    with pytest.raises(DataError, match=r"2 image\(s\) cannot be read") as info:
        prep.items("spec", "train")
    assert all(str(p) in str(info.value) for p in bad)
    _assert_kept(before)


def test_case09_missing_images_are_skipped_with_on_corrupt_skip(tmp_path):
    comp = make_image_manifest_competition(tmp_path, data={"on_corrupt": "skip"})
    (comp.root / "train" / "b" / "b02.png").unlink()
    before = _snapshot(comp.root)
    prep = prepare(load_config(comp.config))
    assert [s["id"] for s in prep.ds.skipped] == ["b02"]
    assert "b02" not in set(prep.ds.train["id"]) and len(prep.ds.train) == 11
    assert prep.items("spec", "train").X.shape == (11, 16, 24)
    _assert_kept(before)


# ----------------------------------------------------------------------------- 10. a folder named like the file


def test_case10_directory_named_like_the_expected_file(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=2, n_test=0)
    clip = comp.root / "train" / "high00.wav"
    clip.unlink()
    (clip / "inner").mkdir(parents=True)
    before = _snapshot(comp.root)
    with pytest.raises(DataError, match=r"train/high00: .*high00\.wav: is a directory, not a file"):
        load_dataset(load_config(comp.config))
    with pytest.raises(AudioError, match="is a directory, not a file"):
        load_audio(clip, 8000)
    _assert_kept(before)


# ----------------------------------------------------------------------------- 11. cache key


def test_case11_same_size_replacement_with_old_mtime_rebuilds_the_cache(tmp_path):
    comp = make_audio_competition(tmp_path, n_per_class=2, n_test=0)
    cfg = load_config(comp.config)
    first = prepare(cfg, tmp_path / "work", workers=1)
    old_cache = _snapshot(first.cache)
    clip = comp.root / "train" / "low00.wav"
    st = os.stat(clip)
    other = comp.root / "train" / "high00.wav"
    assert other.stat().st_size == st.st_size
    clip.write_bytes(other.read_bytes())  # same size, other audio, same inode
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime restored
    assert (os.stat(clip).st_size, os.stat(clip).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = prepare(cfg, tmp_path / "work", workers=1)
    assert second.cache != first.cache and second.cache == cache_dir(cfg, second.ds, tmp_path / "work")
    row = second.ds.train["id"].tolist().index("low00")
    high = second.ds.train["id"].tolist().index("high00")
    X = second.items("vector", "train").X
    np.testing.assert_allclose(X[row], X[high], rtol=1e-5)  # the new bytes were decoded
    _assert_kept(old_cache)  # the earlier cache is left complete
