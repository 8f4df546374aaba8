"""Fold-aware tuning (src/tune.py) on a tiny tabular competition.

Covers: search-space overrides, the grid command and its table, ``--params`` resolution and its
refusals, epoch-level and fold-level pruning of a constructed bad trial, ``--show``, resuming
after a worker is killed mid-trial (heartbeat + retry), and two workers on one PostgreSQL study.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from fixtures import make_tabular_competition
from optuna.trial import TrialState
from postgres_helpers import PostgresUnavailable, start_postgres

ROOT = Path(__file__).resolve().parent.parent

# a recipe that learns the tiny data in a few epochs, and one that cannot learn at all
GOOD = ["depth=1", "width=32", "shrink=1.0", "activation=relu", "dropout=0.0", "batch_norm=False",
        "lr=0.03", "weight_decay=1e-6", "batch_size=16", "optimizer=adam"]
BAD = [p if not p.startswith("lr=") else "lr=1e-9" for p in GOOD]


def _fix(pairs: list[str]) -> list[str]:
    return [a for p in pairs for a in ("--fix", p)]


@pytest.fixture(scope="module")
def comp(tmp_path_factory: pytest.TempPathFactory):
    """(config path, workdir) of a 3-class tabular competition with a 3-fold file."""
    from src.folds import main as folds_main

    root = tmp_path_factory.mktemp("tune")
    c = make_tabular_competition(root, n_per_class=12, n_features=6, n_test=0, folds={"n_splits": 3})
    wd = root / "work"
    folds_main(["--config", str(c.config), "--workdir", str(wd)])
    return c.config, wd


def _base(comp, study: str, epochs: int = 4) -> list[str]:
    cfg, wd = comp
    return ["--config", str(cfg), "--workdir", str(wd), "--model", "mlp", "--study", study, "--epochs", str(epochs),
            "--patience", str(epochs), "--no-plots"]


def _study(wd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{wd / 'optuna_studies' / f'{name}.db'}")


def test_overrides_fix_and_narrow_the_model_space():
    from src.models import get_spec
    from src.train import TrainConfig
    from src.tune import ConstrainedTrial, TuneError, apply_params, make_sampler, parse_grid, parse_overrides

    ov = parse_overrides(["optimizer=sgd", "label_smoothing=0.1"], ["lr=1e-3:2e-3", "width=64,128", "depth=2:2"])
    assert ov.narrow["lr"] == (1e-3, 2e-3) and ov.narrow["width"] == [64, 128]
    study = optuna.create_study(sampler=make_sampler("random", 0, None, ov.fixed))
    for _ in range(5):
        trial = study.ask()
        ct = ConstrainedTrial(trial, ov)
        params = get_spec("mlp").space(ct)
        assert params["optimizer"] == "sgd" and trial.params["optimizer"] == "sgd"
        assert 1e-3 <= params["lr"] <= 2e-3 and trial.params["width"] in (64, 128) and len(params["hidden"]) == 2
        assert "label_smoothing" not in ct.used  # not in the space: applied directly by the objective
    tc = apply_params(TrainConfig(model="mlp"), {**params, "label_smoothing": 0.1})
    assert tc.optimizer == "sgd" and tc.label_smoothing == 0.1 and tc.model_params["hidden"] == params["hidden"]
    assert parse_grid(["batch_size=1,2,4", "optimizer=sgd,adam"]) == {"batch_size": [1, 2, 4], "optimizer": ["sgd", "adam"]}
    with pytest.raises(TuneError, match="scalars"):
        parse_grid(["hidden=[64,32],[128]"])
    with pytest.raises(TuneError, match="KEY=VALUE"):
        parse_overrides(["optimizer"], [])
    with pytest.raises(TuneError, match="identify the run"):
        parse_overrides(["folds=1"], [])
    bad = ConstrainedTrial(optuna.create_study().ask(), parse_overrides([], ["optimizer=1e-3:1e-2"]))
    with pytest.raises(TuneError, match="categorical"):
        get_spec("mlp").space(bad)
    changed = ConstrainedTrial(study.ask(), parse_overrides([], ["width=32"]))  # choices changed mid-study
    with pytest.raises(TuneError, match="new one with --study"):
        get_spec("mlp").space(changed)
    outside = ConstrainedTrial(optuna.create_study().ask(), parse_overrides(["batch_size=256", "lr=0.5"], []))
    p = get_spec("mlp").space(outside)  # outside the space: used as given, not recorded as a sampled value
    assert p["batch_size"] == 256 and p["lr"] == 0.5 and "lr" not in outside.params


def test_grid_command_prints_table_resumes_and_exports_params(comp, capsys):
    from src.artifacts import file_sha256
    from src.config import load_config
    from src.folds import fold_path
    from src.studies import load_params
    from src.tune import TuneError, main

    cfg_path, wd = comp
    argv = _base(comp, "grid", epochs=3) + ["--grid", "optimizer=sgd,adam", "--folds", "0", "1"]
    main(argv)
    out = capsys.readouterr().out
    table = pd.read_csv(wd / "optuna_studies" / "grid_table.csv")
    assert list(table["optimizer"]) == ["adam", "sgd"]
    assert {"accuracy", "macro_f1", "seconds"} <= set(table.columns)
    assert table[["accuracy", "macro_f1"]].apply(lambda c: c.between(0, 1)).all().all() and (table["seconds"] > 0).all()
    assert "macro_f1" in out and "sgd" in out and "adam" in out
    assert not list((wd / "runs").glob("tune-grid-*")), "trial run folders are removed unless --keep-runs"
    main(argv)  # same command again: the study is complete, nothing is re-run
    assert len(_study(wd, "grid").trials) == 2
    # --params: the exported best trial, refused for another fold file or model
    cfg = load_config(cfg_path)
    ff = fold_path(cfg, wd)
    sha = file_sha256(ff)
    doc = json.loads((wd / "optuna_studies" / "grid.json").read_text())
    params = load_params(str(wd / "optuna_studies" / "grid.json"), cfg, ff, "mlp", wd)
    assert params == {"optimizer": doc["params"]["optimizer"]} and doc["fold_sha256"] == sha
    assert doc["best_value"] == pytest.approx(sum(doc["fold_scores"].values()) / 2)
    other = wd / "other_folds.csv"
    other.write_text(ff.read_text().replace(",0\n", ",9\n", 1))
    with pytest.raises(TuneError, match="fold file"):
        load_params(str(wd / "optuna_studies" / "grid.json"), cfg, other, "mlp", wd)
    with pytest.raises(TuneError, match="model"):
        load_params(str(wd / "optuna_studies" / "grid.json"), cfg, ff, "cnn", wd)
    with pytest.raises(TuneError, match="not found"):
        load_params("best", cfg, ff, "mlp_seed", wd)


@pytest.mark.parametrize("level", ["epoch", "fold"])
def test_pruning_stops_a_constructed_bad_trial(comp, capsys, level):
    from src.tune import main

    name = f"prune-{level}"
    pruners = (["--pruner", "median", "--pruner-startup", "1", "--pruner-warmup", "1", "--fold-pruner", "none"]
               if level == "epoch" else ["--pruner", "none", "--fold-pruner", "wilcoxon"])
    main(_base(comp, name) + pruners + ["--trials", "1"] + _fix(GOOD))  # the reference: learns the data
    main(_base(comp, name) + pruners + ["--trials", "2"] + _fix(BAD))  # lr 1e-9: stays at chance
    trials = _study(comp[1], name).trials
    assert trials[0].state == TrialState.COMPLETE and trials[0].value > 0.6
    bad = trials[1]
    assert bad.state == TrialState.PRUNED and bad.user_attrs["pruned_at"]["by"] == level
    assert len(bad.user_attrs["fold_scores"]) < 3, "a pruned trial does not train every fold"
    if level == "fold":  # Wilcoxon needs two paired folds: stops after the second of three
        assert len(bad.user_attrs["fold_scores"]) == 2
    capsys.readouterr()
    main(["--workdir", str(comp[1]), "--model", "mlp", "--study", name, "--show"])
    shown = capsys.readouterr().out
    assert "best value" in shown and "PRUNED" in shown and "fold0" in shown
    assert (comp[1] / "optuna_studies" / f"{name}_history.png").is_file()


def test_study_refuses_another_fold_file(comp, tmp_path):
    """Blind spot: a study continued on another fold file would mix trials scored on other folds."""
    import shutil

    from src.errors import TuneError
    from src.tune import main

    cfg, wd = comp
    ff = next((wd / "folds").glob("*_k3.csv"))
    main(_base(comp, "ff-study", epochs=1) + ["--trials", "1"] + _fix(GOOD))
    backup = tmp_path / "folds.csv"
    shutil.copy(ff, backup)
    df = pd.read_csv(ff, dtype={"id": str, "group": str, "label": str}, keep_default_na=False)
    df["fold"] = (df["fold"] + 1) % 3  # same rows and groups, other assignment
    df.to_csv(ff, index=False)
    try:
        with pytest.raises(TuneError, match="fold_sha256"):
            main(_base(comp, "ff-study", epochs=1) + ["--trials", "2"] + _fix(GOOD))
    finally:
        shutil.copy(backup, ff)


def test_resumed_study_does_not_replay_parameters(comp):
    """A seeded sampler restarted the same way would propose the configurations it already tried."""
    from src.tune import main

    argv = _base(comp, "replay", epochs=1) + ["--sampler", "random", "--pruner", "none", "--fold-pruner", "none", "--folds", "0"]
    main(argv + ["--trials", "1"])
    main(argv + ["--trials", "2"])
    trials = _study(comp[1], "replay").trials
    assert len(trials) == 2 and trials[0].params != trials[1].params


def test_tune_model_with_the_workspace_default_config(comp, monkeypatch):
    """The design card's command: python -m src.tune --model <m>, the config named once in workspace.toml."""
    from src.tune import main

    cfg, wd = comp
    monkeypatch.delenv("AUDIO_WS_CONFIG", raising=False)
    (wd / "workspace.toml").write_text(f'config = "{cfg}"\n')
    try:
        main(["--workdir", str(wd), "--model", "mlp", "--study", "card", "--trials", "1", "--epochs", "1", "--no-plots",
              "--folds", "0"] + _fix(GOOD))
    finally:
        (wd / "workspace.toml").unlink()
    assert len(_study(wd, "card").trials) == 1


def _worker(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "src.tune", *argv], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_trial_is_failed_and_retried_on_rerun(comp, tmp_path):
    cfg, wd = comp
    argv = _base(comp, "resume", epochs=40) + ["--trials", "2", "--folds", "0", "1", "--heartbeat", "1", "--grace", "2",
                                                "--sampler", "random"]
    db = wd / "optuna_studies" / "resume.db"

    def running() -> bool:
        try:
            return any(t.state == TrialState.RUNNING for t in _study(wd, "resume").trials)
        except (KeyError, Exception):  # study not created yet
            return False

    proc = _worker(argv, tmp_path / "w1.log")
    try:
        _wait_for(lambda: db.is_file() and running(), 600, "a running trial")
        time.sleep(1.5)  # mid-trial, heartbeats recorded
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed = _study(wd, "resume").trials[0]
    assert killed.state == TrialState.RUNNING  # nobody could record its end
    time.sleep(3)  # past the grace period
    proc = _worker(argv, tmp_path / "w2.log")
    assert proc.wait(900) == 0, (tmp_path / "w2.log").read_text()[-3000:]
    trials = _study(wd, "resume").trials
    assert trials[0].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == killed.params
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2
    assert "retry of #0" in (tmp_path / "w2.log").read_text()
    assert not (wd / "runs" / "tune-resume-t0").exists(), "the dead trial's run folder is cleaned up"


@pytest.mark.postgres
def test_two_workers_share_one_postgresql_study(comp, tmp_path):
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed (pip install psycopg2-binary==2.9.13)")
    try:
        ctx = start_postgres()
        url = ctx.__enter__()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL cannot be started here: {exc}")
    try:
        target = 8
        argv = _base(comp, "pg", epochs=6) + ["--storage", url, "--trials", str(target), "--folds", "0", "1",
                                               "--sampler", "random", "--pruner", "none", "--fold-pruner", "none"]
        logs = [tmp_path / "pg1.log", tmp_path / "pg2.log"]
        procs = [_worker(argv, log) for log in logs]
        for p, log in zip(procs, logs):
            assert p.wait(900) == 0, log.read_text()[-3000:]
        from src.tune import rdb_url

        study = optuna.load_study(study_name="pg", storage=rdb_url(url))  # the driver the workers used
        trials = study.trials
        numbers = [t.number for t in trials]
        assert sorted(numbers) == list(range(len(trials))), "trial numbers are unique and gap-free"
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        # every worker stops once the study holds `target` finished trials; two finishing at once may add one
        assert target <= len(done) <= target + 1 and len(done) == len(trials)
        logged = [line for log in logs for line in log.read_text().splitlines() if " COMPLETE" in line and "trial " in line]
        assert len(logged) == len(done), "what the workers report equals what the study holds"
        assert len({t.user_attrs["worker"] for t in done}) == 2, "both workers ran trials"
        best = study.best_trial
        assert best.value == max(t.value for t in done)
        assert best.value == pytest.approx(sum(best.user_attrs["fold_scores"].values()) / 2)
        exported = json.loads((comp[1] / "optuna_studies" / "pg.json").read_text())
        assert exported["best_value"] == best.value and exported["best_trial"] == best.number
    finally:
        ctx.__exit__(None, None, None)
