"""Atomic writes: a writer that fails leaves the old file and no temp file; helpers write readable files."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from src.artifacts import (
    atomic_path,
    file_sha256,
    read_json,
    stable_hash,
    write_csv,
    write_json,
    write_npy,
    write_npz,
)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_failed_writer_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": 1}')
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text('{"new": ')  # half-written
            raise RuntimeError("boom")
    assert target.read_text() == '{"old": 1}'
    assert _leftovers(tmp_path) == []


def test_failed_writer_creates_nothing_when_no_old_file(tmp_path):
    target = tmp_path / "sub" / "oof.npy"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_failed_helper_write_keeps_old_json(tmp_path):
    target = tmp_path / "config.json"
    write_json(target, {"a": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json(target, {"a": object()})
    assert read_json(target) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_success_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_write_json_handles_numpy_and_paths(tmp_path):
    obj = {"i": np.int64(3), "f": np.float32(0.5), "a": np.arange(3), "p": tmp_path}
    write_json(tmp_path / "m.json", obj)
    assert json.loads((tmp_path / "m.json").read_text()) == {"i": 3, "f": 0.5, "a": [0, 1, 2], "p": str(tmp_path)}


def test_write_npy_npz_csv_roundtrip(tmp_path):
    arr = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    arr[2] = np.nan
    write_npy(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr)
    write_npz(tmp_path / "p.npz", val_rows=np.arange(2), val=arr[:2])
    with np.load(tmp_path / "p.npz") as z:
        assert sorted(z.files) == ["val", "val_rows"]
        np.testing.assert_array_equal(z["val"], arr[:2])
    df = pd.DataFrame({"id": ["a", "b"], "fold": [0, 1]})
    write_csv(tmp_path / "f.csv", df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f.csv"), df)
    assert len(file_sha256(tmp_path / "f.csv")) == 64
    assert _leftovers(tmp_path) == []


def test_stable_hash_is_order_independent_and_sensitive():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
