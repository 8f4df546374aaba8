"""Every command, given a user mistake, prints one ``error: <what> — <how to fix>`` line and exits 2: never a traceback.

The commands run in-process through ``src.cli.run_command`` (what ``python -m src.<stage>`` runs), so
the exit status and stderr are exactly what a user sees; one subprocess run checks the real entry point.
"""
from __future__ import annotations

import errno
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import make_tabular_competition

from src import cli
from src.errors import WorkspaceError

REPO = Path(__file__).resolve().parents[2]
BAD_CONFIG = """[competition]
name = "bad"
[data]
kind = "tabular"
root = "."
train_csv = "bad.toml"
[audio]
n_mels = 64.7
"""


def run_cli(module: str, argv: list[str], capsys) -> tuple[int, str, str]:
    main = importlib.import_module(f"src.{module}").main
    with pytest.raises(SystemExit) as info:
        cli.run_command(main, argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def assert_clean_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    return path


CONFIG_COMMANDS = [
    ("features", []), ("folds", []), ("train", ["--model", "mlp"]), ("tune", ["--model", "mlp", "--trials", "1"]),
]


@pytest.mark.parametrize("module, extra", CONFIG_COMMANDS, ids=[m for m, _ in CONFIG_COMMANDS])
def test_bad_config_is_one_error_line_for_every_command(module, extra, bad_config, tmp_path, capsys):
    code, _, err = run_cli(module, ["--config", str(bad_config), "--workdir", str(tmp_path), *extra], capsys)
    assert_clean_error(code, err, "[audio] n_mels = 64.7: Input should be a valid integer", str(bad_config))


@pytest.mark.parametrize("module, extra", CONFIG_COMMANDS, ids=[m for m, _ in CONFIG_COMMANDS])
def test_missing_config_says_how_to_name_one(module, extra, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AUDIO_WS_CONFIG", raising=False)
    code, _, err = run_cli(module, ["--workdir", str(tmp_path), *extra], capsys)
    assert_clean_error(code, err, "no --config given", "workspace.toml")


RUN_COMMANDS = [("ensemble", ["nope-a", "nope-b"]), ("compare", ["nope-a", "nope-b"]), ("report", ["nope-a"]),
                ("submit", ["nope-a"]), ("predict", ["nope-a", "song.wav"]), ("export", ["nope-a", "--onnx"]),
                ("study.__main__", ["embeddings", "nope-a"])]


@pytest.mark.parametrize("module, argv", RUN_COMMANDS, ids=[m for m, _ in RUN_COMMANDS])
def test_unknown_run_is_one_error_line(module, argv, tmp_path, capsys):
    code, _, err = run_cli(module, [*argv, "--workdir", str(tmp_path)], capsys)
    assert_clean_error(code, err, "run 'nope-a' not found", "ls ")


STUDY_CONFIG_COMMANDS = [["data"], ["optimizers", "--model", "mlp"], ["devices", "--model", "mlp"], ["sequences"],
                         ["regression"]]


@pytest.mark.parametrize("argv", STUDY_CONFIG_COMMANDS, ids=[a[0] for a in STUDY_CONFIG_COMMANDS])
def test_study_bad_config_is_one_error_line(argv, bad_config, tmp_path, capsys):
    code, _, err = run_cli("study.__main__", [*argv, "--config", str(bad_config), "--workdir", str(tmp_path)], capsys)
    assert_clean_error(code, err, "[audio] n_mels = 64.7: Input should be a valid integer", str(bad_config))


def test_kaggle_bad_config_is_one_error_line(bad_config, tmp_path, capsys):
    code, _, err = run_cli("kaggle", ["push", "--config", str(bad_config), "--model", "mlp", "--no-push",
                                      "--workdir", str(tmp_path)], capsys)
    assert_clean_error(code, err, "n_mels = 64.7")


@pytest.fixture
def tab(tmp_path: Path):
    comp = make_tabular_competition(tmp_path / "comp", n_per_class=6, n_test=0)
    work = tmp_path / "work"
    return comp, work


def test_param_typo_is_refused_before_training(tab, capsys):
    comp, work = tab
    code, _, _ = run_cli("folds", ["--config", str(comp.config), "--workdir", str(work)], capsys)
    assert code == 0
    code, _, err = run_cli("train", ["--config", str(comp.config), "--workdir", str(work), "--model", "mlp",
                                     "--param", "hiden=[64]", "--run-id", "typo"], capsys)
    assert_clean_error(code, err, "--param hiden: model mlp", "its parameters are ['activation', 'batch_norm', 'dropout', 'hidden']")
    assert not (work / "runs" / "typo" / "fold0.pt").exists()


def test_flag_that_does_not_apply_is_refused(tab, capsys):
    comp, work = tab
    run_cli("folds", ["--config", str(comp.config), "--workdir", str(work)], capsys)
    code, _, err = run_cli("train", ["--config", str(comp.config), "--workdir", str(work), "--model", "mlp", "--freq-mask", "8",
                                     "--layer-decay", "0.7"], capsys)
    assert_clean_error(code, err, "--freq-mask 8 (from the command line) applies to spectrogram models only",
                       "--layer-decay 0.7 (from the command line) applies to pretrained backbones only")


def test_bad_choice_is_refused_by_argparse_with_the_choices(tab, capsys):
    comp, work = tab
    with pytest.raises(SystemExit) as info:
        cli.run_command(importlib.import_module("src.train").main,
                        ["--config", str(comp.config), "--model", "mlp", "--optimizer", "adamm"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'adamm'" in err and "adamw" in err and "Traceback" not in err


@pytest.mark.parametrize("code_, fix", [(errno.EACCES, "make the folder writable"), (errno.EROFS, "make the folder writable"),
                                        (errno.ENOSPC, "free disk space")], ids=["eacces", "erofs", "enospc"])
def test_file_system_refusal_names_the_path_and_the_fix(code_, fix, capsys):
    """A read-only or full work folder: an error naming the path (root ignores permission bits, so it is simulated)."""
    def main(argv=None):
        raise OSError(code_, os.strerror(code_), "/work/runs/x/fold0.pt")

    with pytest.raises(SystemExit) as info:
        cli.run_command(main, [])
    err = capsys.readouterr().err
    assert_clean_error(info.value.code, err, "/work/runs/x/fold0.pt", fix)


def test_a_bug_keeps_its_traceback():
    """Only user mistakes are translated: an unexpected exception is a bug and must stay visible."""
    def main(argv=None):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        cli.run_command(main, [])


def test_every_error_class_shares_one_base():
    import src.errors as e

    classes = [c for c in vars(e).values() if isinstance(c, type) and issubclass(c, Exception) and c is not e.WorkspaceError]
    assert len(classes) >= 10 and all(issubclass(c, WorkspaceError) for c in classes)
    assert str(e.DataError("what", "fix")) == "what — fix"


def test_entry_point_prints_error_and_exits_2(bad_config, tmp_path):
    """The real ``python -m src.train`` entry point, once: status 2, one error line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "src.train", "--config", str(bad_config), "--model", "mlp", "--workdir", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert_clean_error(proc.returncode, proc.stderr, "n_mels = 64.7")


def test_help_shows_prog_defaults_and_choices(capsys):
    for module in ("train", "tune", "folds", "features", "ensemble", "compare", "report", "submit"):
        with pytest.raises(SystemExit):
            importlib.import_module(f"src.{module}").main(["--help"])
        out = capsys.readouterr().out
        assert out.startswith(f"usage: python -m src.{module}"), out[:80]
        assert "(default: .)" in " ".join(out.split()), module  # --workdir's default, shown by the shared formatter
    out = _help("train", capsys)
    assert "{sgd,adam,adamw,rmsprop,adagrad}" in out and "(default: 'adamw', unless the config's [train] sets it)" in " ".join(out.split())


def _help(module: str, capsys) -> str:
    with pytest.raises(SystemExit):
        importlib.import_module(f"src.{module}").main(["--help"])
    return capsys.readouterr().out
