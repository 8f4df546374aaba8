"""Controlled studies and device timing (src/study/controlled.py, src/study/devices.py) on a tiny tabular competition.

Covers: the identical-start guarantee (same initial weights and data order in every arm, identical losses
when an arm is re-run on CPU, and an error when seeding is broken), each study's table and figure, the
device table, and the refusals (a study the model has no switch for, a varied setting pinned by a flag).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from fixtures import make_tabular_competition

from src import cli
from src.study.__main__ import main as study_main


def _small(folds: tuple[str, ...] = ("0", "1"), batch_size: bool = True) -> list[str]:
    """A run that takes a second: 3 epochs, a 16-unit MLP, on CPU."""
    return ["--epochs", "3", "--folds", *folds, *(["--batch-size", "8"] if batch_size else []), "--lr", "0.01", "--device", "cpu",
            "--fix", "hidden=[16]"]


SMALL = _small()


@pytest.fixture(scope="module")
def comp(tmp_path_factory: pytest.TempPathFactory):
    """(config path, workdir) of a 3-class tabular competition with a 3-fold file; torch on one thread meanwhile
    (a 16-unit MLP gains nothing from more, and on a shared CPU extra threads make it many times slower)."""
    import torch

    from src.folds import main as folds_main

    root = tmp_path_factory.mktemp("study")
    c = make_tabular_competition(root, n_per_class=10, n_features=6, n_test=0, folds={"n_splits": 3})
    wd = root / "work"
    folds_main(["--config", str(c.config), "--workdir", str(wd)])
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield c.config, wd
    torch.set_num_threads(old)


def _study(comp, study: str, *extra: str, small: list[str] = SMALL) -> Path:
    cfg, wd = comp
    study_main([study, "--config", str(cfg), "--workdir", str(wd), "--model", "mlp", *small, *extra])
    return wd / "reports" / study


def _table(out: Path) -> pd.DataFrame:
    assert (out / "table.md").is_file() and (out / "curves.png").stat().st_size > 1000
    return pd.read_csv(out / "table.csv", dtype={"arm": str})


def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.run_command(study_main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("error: "), err
    return last


def test_arms_start_alike_and_a_repeat_is_identical(comp):
    out = _study(comp, "optimizers", "--arms", "adam,sgd", "--check-repeat", "sgd")
    t, md = _table(out), (out / "table.md").read_text()
    assert list(t["arm"]) == ["adam", "sgd"]
    assert t["init_sha"].nunique() == 1 and t["order_sha"].nunique() == 1  # same weights, same batches, every arm
    assert "Identical initial weights per fold in every arm: yes" in md
    assert "Repeat check on cpu: arm sgd" in md and "identical (exact float equality)" in md
    assert "mean and sd (ddof=1) over the 2 fold(s)" in md and "clip level" in md
    cfg, wd = comp
    runs = sorted(r for r in (wd / "runs").glob("tune-study-optimizers-mlp-*-t[0-9]") if "-repeat-" not in r.name)
    losses = [json.loads((r / "metrics.json").read_text())["history"]["0"][0]["train_loss"] for r in runs]
    assert len(runs) == 2 and losses[0] != losses[1]  # ... and yet the optimizers did train differently
    before = sorted((wd / "runs").iterdir())
    assert _table(_study(comp, "optimizers", "--arms", "adam,sgd")).equals(t)
    assert sorted((wd / "runs").iterdir()) == before  # the same command again reads the finished arms back


def test_broken_seeding_is_caught(comp, capsys, monkeypatch):
    """If each fold's weights came from a fresh random seed, the study must refuse to call its arms controlled."""
    import torch

    import src.train

    monkeypatch.setattr(src.train, "set_seed", lambda seed: torch.manual_seed(random.randrange(2**31)))
    cfg, wd = comp
    err = _error(capsys, ["optimizers", "--config", str(cfg), "--workdir", str(wd), "--model", "mlp", *_small(("0",)),
                          "--arms", "adam,sgd", "--out", str(wd / "broken"), "--seed", "7"])
    assert "initial weights differ among arms ['adam', 'sgd'] of one architecture" in err
    assert "DIFFER among arms of the same architecture" in (wd / "broken" / "table.md").read_text()


@pytest.mark.parametrize("study, arms, extra", [
    ("regularisation", ["none", "wd", "dropout", "both"], []),
    ("batch_size", ["4", "16"], ["--arms", "4,16"]),
    ("patience", ["off", "1"], ["--arms", "off,1", "--epochs", "6"]),
    ("batchnorm", ["off", "on"], []),
])
def test_study_tables(comp, study, arms, extra):
    out = _study(comp, study, *extra, small=_small(("0",), batch_size=study != "batch_size"))  # one fold is enough here
    t = _table(out)
    assert list(t["arm"]) == arms
    for col in ("setting", "accuracy", "accuracy_sd", "macro_f1", "macro_f1_sd", "seconds", "sec_per_epoch",
                "best_epoch", "stopped_epoch", "init_sha", "order_sha"):
        assert col in t.columns and t[col].notna().all(), col
    if study == "regularisation":
        assert t["setting"].tolist()[3] == "weight_decay=0.01, dropout=0.3"
        assert t["init_sha"].nunique() == 1  # dropout adds no weights: one architecture, one start
    if study == "batchnorm":  # BatchNorm adds weights: another architecture, another start, but the same batches
        assert t["init_sha"].nunique() == 2 and t["order_sha"].nunique() == 1
        assert "differ between arms of another architecture (expected) and agree" in (out / "table.md").read_text()
    if study == "patience":
        off, one = t.iloc[0], t.iloc[1]
        assert off["stopped_epoch"] == 6 and one["stopped_epoch"] <= 6
        assert one["stopped_epoch"] - one["best_epoch"] <= 1 or one["stopped_epoch"] == 6


def test_devices_table(comp, capsys):
    from src.study.devices import available_devices

    cfg, wd = comp
    study_main(["devices", "--config", str(cfg), "--workdir", str(wd), "--model", "mlp", "--param", "hidden=[16]", "--epochs", "2",
                "--cpu-threads", "1", "2"])
    t = pd.read_csv(wd / "reports" / "devices" / "table.csv")
    assert list(t["device"]) == ["cpu", *available_devices()] and t["sec_per_epoch"].gt(0).all() and t["samples_per_s"].gt(0).all()
    assert list(t["threads"])[:2] == [1, 2]
    assert t.loc[0, "train_items"] > 0 and t.loc[0, "epochs"] == 2 and t.loc[0, "speedup"] == 1.0
    if "cuda" not in available_devices():
        assert "No CUDA device" in (wd / "reports" / "devices" / "table.md").read_text()
    assert "sec_per_epoch" in capsys.readouterr().out


def test_a_study_the_model_cannot_take_is_an_error(comp, capsys):
    cfg, wd = comp
    base = ["--config", str(cfg), "--workdir", str(wd)]
    err = _error(capsys, ["activations", *base, "--model", "logreg"])
    assert "activation" in err and "logreg" in err and "mlp, mlp_seed" in err
    err = _error(capsys, ["batchnorm", *base, "--model", "cnn"])
    assert "batch_norm" in err and "cnn_seed, mlp, mlp_seed" in err
    err = _error(capsys, ["optimizers", *base, "--model", "mlp", "--optimizer", "sgd"])
    assert "varies optimizer" in err
    err = _error(capsys, ["optimizers", *base, "--model", "mlp", "--arms", "adam,lbfgs"])
    assert "'lbfgs': not a known optimizer" in err
    err = _error(capsys, ["optimizers", *base, "--model", "mlp", "--arms", "adam", "--check-repeat", "sgd"])
    assert "--check-repeat 'sgd' is not an arm" in err  # refused before any training
