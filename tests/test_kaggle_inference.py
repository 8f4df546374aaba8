"""Code competitions: push-inference -> local run (internet off) -> submit -k -v, through the real ``kaggle`` CLI.

The CLI runs against the loopback stand-in (``tests/kaggle_standin.py``) exactly as in test_kaggle.py;
the competition ``tiny`` is a code competition there (``isKernelsSubmissionsOnly``). The local run
of the generated run.py happens with the stand-in as the HTTP proxy in its environment, so any
request it made would be recorded: the test checks that none was, and that sockets are refused.
"""
# ruff: noqa: F811
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from kaggle_standin import StandIn
from test_kaggle import FAST_POLL, SLUG, base_ws, code_snapshot, seed_code  # noqa: F401 - fixtures shared with test_kaggle

from src import kaggle as K
from src import kaggle_code as code
from src import kaggle_kernels as kern
from src import kaggle_pull as kp
from src.artifacts import read_json
from src.errors import KaggleError

RUN = "inf-mlp"


@pytest.fixture(scope="module")
def inf_ws(base_ws: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_kaggle's workspace (configs/tiny.toml with slug tiny, data/tiny/ with a test folder and sample
    submission, folds) plus one trained run to infer with."""
    from src.config import load_config
    from src.train import TrainConfig, run_training

    w = tmp_path_factory.mktemp("kaggle_inf") / "ws"
    shutil.copytree(base_ws, w, symlinks=True)
    run_training(load_config(w / "configs" / "tiny.toml"), TrainConfig(model="mlp", epochs=1, run_id=RUN), w)
    return w


@pytest.fixture
def ws(inf_ws: Path, tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    shutil.copytree(inf_ws, w, symlinks=True)
    return w


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stand-in (tiny is a code competition) with throw-away credentials; its address is the HTTP proxy."""
    s = StandIn(competitions={SLUG}, code_competitions={SLUG}).start()
    home = tmp_path / "home"
    home.mkdir()
    for k, v in s.env(str(home)).items():
        monkeypatch.setenv(k, v)
    for k in ("KAGGLE_API_TOKEN", "WS_LOCAL_DEVICES"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(code, "READY_POLL", dict(FAST_POLL))
    yield s
    s.stop()


def inference_args(*extra: str) -> object:
    return K.parse_args(["push-inference", RUN, "--config", "x", *extra])


def test_push_inference_local_run_and_code_submission(ws: Path, server: StandIn) -> None:
    config = ws / "configs" / "tiny.toml"
    seed_code(ws, server)
    rec = kern.push_inference(RUN, config, inference_args(), ws)
    assert rec["ref"] == "testuser/inf-mlp-infer" and rec["version"] == 1 and rec["weights"] == "testuser/inf-mlp-weights"
    body = server.received("SaveKernel")[0]
    assert body["enableInternet"] is False and body["enableGpu"] is False and body["competitionDataSources"] == [SLUG]
    assert body["datasetDataSources"] == ["testuser/audio-workspace-code", "testuser/inf-mlp-weights"]
    weights = server.datasets["testuser/inf-mlp-weights"][0]
    names = zipfile.ZipFile(io.BytesIO(weights["uploaded"]["weights.zip"])).namelist()
    assert f"runs/{RUN}/config.json" in names and f"weights/runs/{RUN}/config.json" in weights["files"]
    spec = kern.read_spec(ws / "kernels" / "inf-mlp-infer")
    assert spec["mode"] == "inference" and spec["internet"] is False and kern.embedded_spec(ws / "kernels" / "inf-mlp-infer" / "run.py") == spec

    calls = len(server.calls)  # the local run has the stand-in as its HTTP proxy: any request would land here
    sub = kp.local_run("inf-mlp-infer", ws)
    assert len(server.calls) == calls
    root = ws / "cache" / "kaggle" / "local" / "inf-mlp-infer"
    assert (root / "input" / "competitions" / SLUG / "test").is_dir()
    assert (root / "input" / "datasets" / "testuser" / "inf-mlp-weights" / "weights" / "runs" / RUN / "config.json").is_file()
    report = read_json(root / "working" / "kernel_report.json")
    assert report["status"] == "done" and report["network"] == "refused" and report["network_attempts"] == []
    assert sub == root / "working" / "submission.csv"
    K.validate_file(sub, config)  # the sample submission's ids, order and columns
    sample = pd.read_csv(ws / "data" / SLUG / "sample_submission.csv", dtype=str)
    assert pd.read_csv(sub, dtype=str).iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()

    with pytest.raises(KaggleError, match="code competition"):  # an uploaded CSV is refused there
        K.submit(str(sub), "csv upload", ws, config)
    server.kernel_outputs[rec["ref"]] = {"submission.csv": sub.read_bytes()}
    out = K.run_verb(K.parse_args(["submit", "--kernel", "inf-mlp-infer", "-m", "mlp code sub", "--workdir", str(ws)]))
    assert "version 1" in out
    (ref, got), = server.code_submissions.items()
    assert got == {"kernel": rec["ref"], "version": 1, "file": "submission.csv"}
    server.submissions[SLUG][0].update(publicScore="0.810", status="COMPLETE")
    idx = K.submissions(config, ws)
    row = idx[idx["message"] == "mlp code sub"].iloc[-1]
    assert row["public_score"] == "0.810" and row["kernel"] == rec["ref"] and row["kernel_version"] == "1" and row["runs"] == RUN


def test_code_submission_of_an_unknown_version_is_refused(ws: Path, server: StandIn) -> None:
    seed_code(ws, server)
    rec = kern.push_inference(RUN, ws / "configs" / "tiny.toml", inference_args(), ws)
    with pytest.raises(KaggleError):
        K.submit_kernel(rec["ref"], "too new", ws, version=7)
    assert not server.code_submissions and not (ws / "submissions" / "index.csv").exists()


def test_internet_off_refuses_every_connection(server: StandIn) -> None:
    """The runner's guard, in a fresh process: a request to the (reachable) stand-in never leaves it."""
    prog = ("import sys, urllib.request\nfrom src.kernel_runner import refuse_network\nseen = []\nrefuse_network(seen)\n"
            f"try:\n    urllib.request.urlopen({server.base!r}, timeout=5)\nexcept OSError as exc:\n    print('refused', seen, exc)\n"
            "    sys.exit(0)\nsys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", prog], cwd=code.REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("refused [") and "internet is off" in proc.stdout and "127.0.0.1" in proc.stdout
    assert not server.calls


def test_push_inference_no_push_and_preflight(ws: Path, tmp_path: Path) -> None:
    rec = kern.push_inference(RUN, ws / "configs" / "tiny.toml", inference_args("--no-push"), ws)
    meta = read_json(Path(rec["folder"]) / "kernel-metadata.json")
    assert meta["enable_internet"] is False and "pushed" not in rec and meta["id"].endswith("/inf-mlp-infer")
    cfg = ws / "configs" / "tiny.toml"
    cfg.write_text(cfg.read_text().replace("sample_submission", "# sample_submission"))
    with pytest.raises(Exception, match="sample_submission|pre-flight"):
        kern.push_inference(RUN, cfg, inference_args("--no-push"), ws)


def test_submit_needs_a_target_or_a_kernel(ws: Path) -> None:
    with pytest.raises(KaggleError, match="nothing to submit"):
        K.run_verb(K.parse_args(["submit", "-m", "x", "--workdir", str(ws)]))
