"""src.kaggle end to end through the real ``kaggle`` CLI, against the loopback stand-in server.

The CLI runs as a subprocess (``python -m kaggle``) with throw-away credentials in a temporary
HOME; ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` + ``HTTP_PROXY`` route its calls to
``tests/kaggle_standin.py`` (see its docstring for why not ``TEST``). Nothing here touches the
real ~/.kaggle or the network.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures import make_audio_competition
from kaggle_standin import StandIn
from src import kaggle as K
from src.artifacts import read_json, write_csv, write_json

SLUG = "tiny"  # competition slug == data/<slug>/ folder of the fixture


@pytest.fixture(scope="module", autouse=True)
def code_snapshot(tmp_path_factory: pytest.TempPathFactory):
    """Package a frozen copy of src/ and configs/: the shared tree may change while the tests run."""
    snap = tmp_path_factory.mktemp("code_snapshot")
    shutil.copytree(K.REPO / "src", snap / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(K.REPO / "configs", snap / "configs")
    shutil.copy2(K.REPO / "requirements.txt", snap / "requirements.txt")
    mp = pytest.MonkeyPatch()
    mp.setattr(K, "REPO", snap)
    yield snap
    mp.undo()


@pytest.fixture(scope="module")
def base_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace folder: configs/tiny.toml (with a slug), data/tiny/, folds/tiny_k2.csv, feature cache."""
    from src.config import load_config
    from src.features import prepare
    from src.folds import fold_path, make_folds

    w = tmp_path_factory.mktemp("kaggle_ws")
    comp = make_audio_competition(w, name="tiny", n_per_class=4, n_test=4)
    text = comp.config.read_text().replace('name = "tiny"', f'name = "tiny"\nslug = "{SLUG}"', 1)
    comp.config.write_text(text)
    cfg = load_config(comp.config)
    folds, _ = make_folds(prepare(cfg, w, workers=1))
    write_csv(fold_path(cfg, w), folds)
    return w


@pytest.fixture
def ws(base_ws: Path, tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    shutil.copytree(base_ws, w, symlinks=True)
    return w


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    s = StandIn(competitions={SLUG}).start()
    home = tmp_path / "home"
    home.mkdir()
    for k, v in s.env(str(home)).items():
        monkeypatch.setenv(k, v)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def trained_run(base_ws: Path) -> Path:
    """One in-process run over both folds (1 epoch), the reference for the per-fold merge."""
    from src.config import load_config
    from src.train import TrainConfig, run_training

    cfg = load_config(base_ws / "configs" / "tiny.toml")
    return run_training(cfg, TrainConfig(model="mlp", epochs=1, run_id="reference"), base_ws)


def seed_code(ws: Path, server: StandIn) -> None:
    """State as after ``code`` (for tests about other verbs): staged dataset, index entry, dataset on the server."""
    _, sha = K.stage_code(ws, K.CODE_SLUG, server.user)
    ref = f"{server.user}/{K.CODE_SLUG}"
    K.save_state(ws, {**K.load_state(ws), "code": {"ref": ref, "code_sha": sha, "version": 1}})
    server.datasets[ref] = [{"files": {}, "request": {}}]


def seed_kernel(ws: Path, server: StandIn, slug: str = "tiny-mlp") -> str:
    ref = f"{server.user}/{slug}"
    st = K.load_state(ws)
    st["kernels"][ref] = {"ref": ref, "run_id": "r1", "group": "r1", "folds": None, "config": str(ws / "configs" / "tiny.toml"),
                          "version": 1, "pushed": K._now()}
    K.save_state(ws, st)
    server.kernels[ref] = [{}]
    return ref


def push_args(**kw) -> object:
    args = K.build_parser().parse_args(["push", "--config", "x", "--model", "mlp"])
    args.internet = False
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_code_and_push_reach_the_server_intact(ws: Path, server: StandIn) -> None:
    code = K.push_code(ws)
    assert code["ref"] == "testuser/audio-workspace-code" and code["version"] == 1
    created = server.received("CreateDataset")[0]
    assert created["slug"] == "audio-workspace-code" and created["licenseName"] == "CC0-1.0"
    staged = ws / "cache" / "kaggle" / "code" / "audio-workspace-code"
    files = server.datasets["testuser/audio-workspace-code"][0]["files"]
    assert files["workspace.zip"] == (staged / "workspace.zip").read_bytes()
    names = zipfile.ZipFile(io.BytesIO(files["workspace.zip"])).namelist()
    assert {"src/train.py", "configs/tiny.toml", "folds/tiny_k2.csv"} <= set(names)
    assert K.push_code(ws) == code and len(server.received("CreateDataset")) == 1  # same code: nothing sent

    recs = K.push(ws / "configs" / "tiny.toml", push_args(epochs=2), ws)
    body = server.received("SaveKernel")[0]
    folder = ws / "kernels" / "tiny-mlp"
    assert body["slug"] == "testuser/tiny-mlp" and body["text"] == (folder / "run.py").read_text()
    assert body["enableGpu"] is True and body["machineShape"] == "NvidiaTeslaT4" and body["enableInternet"] is False
    assert body["datasetDataSources"] == ["testuser/audio-workspace-code"] and body["competitionDataSources"] == [SLUG]
    assert body["language"] == "python" and body["kernelType"] == "script"
    assert recs[0]["version"] == 1 and read_json(ws / "kernels" / "index.json")["kernels"]["testuser/tiny-mlp"]["version"] == 1
    spec = K.read_spec(folder)
    assert spec["code_sha"] == code["code_sha"] and spec["args"][:4] == ["--model", "mlp", "--run-id", recs[0]["run_id"]]

    (ws / "folds" / "note.json").write_text("{}")  # code changed -> a new dataset version, not a new dataset
    assert K.push_code(ws)["version"] == 2 and len(server.received("CreateDatasetVersion")) == 1


def test_preflight_refuses_before_sending_anything(ws: Path, server: StandIn) -> None:
    seed_code(ws, server)
    cfg = ws / "configs" / "tiny.toml"
    with pytest.raises(K.KaggleError, match="sm_60"):
        K.push(cfg, push_args(accelerator="NvidiaTeslaP100"), ws)
    with pytest.raises(K.KaggleError, match="fold\\(s\\) \\[7\\] not in"):
        K.push(cfg, push_args(folds=[7]), ws)
    cfg.write_text(cfg.read_text().replace("seed = 7", "seed = 8"))  # config edited after `code`
    with pytest.raises(K.KaggleError, match="changed since code dataset"):
        K.push(cfg, push_args(), ws)
    assert server.received("SaveKernel") == []


def serve_outputs(server: StandIn, ref: str, working: Path) -> None:
    """What Kaggle would list as the kernel's output files: everything under /kaggle/working."""
    server.kernel_outputs[ref] = {str(p.relative_to(working)): p.read_bytes() for p in working.rglob("*") if p.is_file()}
    server.kernel_logs[ref] = "[1.0s] training done\n"


def test_local_kernel_run_pull_and_submit(ws: Path, server: StandIn) -> None:
    """run.py runs unchanged here; its outputs, served as kernel output, pull into a run that submit accepts."""
    from src.ensemble import load_run

    seed_code(ws, server)
    rec = K.push(ws / "configs" / "tiny.toml", push_args(epochs=2), ws)[0]
    run = K.local_run("tiny-mlp", ws)
    assert run == ws / "runs" / rec["run_id"] and load_run(run).test.shape == (4, 3)
    working = ws / "cache" / "kaggle" / "local" / "tiny-mlp" / "working"
    assert read_json(working / "kernel_report.json")["status"] == "done" and not (working / "cache").exists()

    shutil.rmtree(run)
    serve_outputs(server, rec["ref"], working)
    server.kernel_status[rec["ref"]] = [("RUNNING", ""), ("COMPLETE", "")]
    rows = K.status(ws, wait=True, interval=0.01)
    assert rows[0]["state"] == "COMPLETE" and rows[0]["finished"]
    pulled = K.pull(rec["group"], ws)
    meta = read_json(pulled / "config.json")
    assert meta["fold_file"] == str((ws / "folds" / "tiny_k2.csv").resolve()) and meta["kaggle"]["kernel"] == rec["ref"]
    assert (pulled / "kaggle_tiny-mlp.log").read_text().startswith("[1.0s]")

    path = K.submit(rec["group"], "mlp from kaggle", ws)
    assert server.submitted_bytes(SLUG) == path.read_bytes()
    server.submissions[SLUG][0].update(publicScore="0.750", privateScore="0.700", status="COMPLETE")
    idx = K.submissions(ws / "configs" / "tiny.toml", ws)
    row = idx[idx["file"] == path.name].iloc[-1]
    assert row["public_score"] == "0.750" and row["private_score"] == "0.700" and row["cv_score"] != ""


def test_per_fold_kernels_merge_into_one_run(ws: Path, server: StandIn, trained_run: Path) -> None:
    """Each per-fold kernel leaves config.json, fold_status.json and its fold's files; merged = the one-kernel run."""
    from src.ensemble import load_run

    seed_code(ws, server)
    recs = K.push(ws / "configs" / "tiny.toml", push_args(per_fold=True, epochs=1), ws)
    assert [r["ref"] for r in recs] == ["testuser/tiny-mlp-f0", "testuser/tiny-mlp-f1"]
    assert [K.read_spec(Path(r["folder"]))["folds"] for r in recs] == [[0], [1]]
    status = read_json(trained_run / "fold_status.json")
    for k, r in enumerate(recs):  # what each GPU would have produced (same code, one fold each)
        part = ws / "fake_out" / r["run_id"] / "runs" / r["run_id"]
        part.mkdir(parents=True)
        shutil.copy2(trained_run / "config.json", part / "config.json")
        write_json(part / "fold_status.json", {str(k): status[str(k)]})
        for f in K.PER_FOLD_FILES:
            shutil.copy2(trained_run / f.format(k=k), part / f.format(k=k))
        serve_outputs(server, r["ref"], part.parent.parent)
    merged = K.pull(recs[0]["group"], ws)
    art, ref = load_run(merged), load_run(trained_run)
    assert merged.name == recs[0]["group"] and art.metrics["folds_done"] == [0, 1]
    np.testing.assert_allclose(art.oof, ref.oof)
    np.testing.assert_allclose(art.test, ref.test)
    assert art.metrics["oof"] == ref.metrics["oof"]

    (ws / "folds" / "tiny_k2.csv").write_text((ws / "folds" / "tiny_k2.csv").read_text().replace(",0\n", ",1\n", 1))
    with pytest.raises(K.KaggleError, match="folds changed after the push"):
        K.pull(recs[0]["ref"], ws, force=True)


def _sample_csv(ws: Path, path: Path, drop_last: bool = False) -> Path:
    sample = pd.read_csv(ws / "data" / "tiny" / "sample_submission.csv", dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    (sample.iloc[:-1] if drop_last else sample).to_csv(path, index=False)
    return path


def test_rejected_submission_surfaces_the_server_message(ws: Path, server: StandIn) -> None:
    server.reject_submission = "Submission file has 3 rows, expected 4"
    csv = _sample_csv(ws, ws / "submissions" / "manual.csv")
    with pytest.raises(K.KaggleError, match="Submission file has 3 rows, expected 4"):
        K.submit(str(csv), "manual", ws, ws / "configs" / "tiny.toml")
    idx = pd.read_csv(ws / "submissions" / "index.csv", dtype=str, keep_default_na=False)
    assert "kaggle_submitted" not in idx or idx["kaggle_submitted"].eq("").all()


def test_invalid_file_is_never_sent(ws: Path, server: StandIn) -> None:
    csv = _sample_csv(ws, ws / "bad.csv", drop_last=True)
    with pytest.raises(K.KaggleError, match="not sent: .*missing"):
        K.submit(str(csv), "bad", ws, ws / "configs" / "tiny.toml")
    assert server.received("StartSubmissionUpload") == []


def test_network_down_is_clear_and_loses_nothing(ws: Path, server: StandIn) -> None:
    seed_code(ws, server)
    seed_kernel(ws, server)
    csv = _sample_csv(ws, ws / "submissions" / "manual.csv")
    before = {p: p.read_bytes() for p in [ws / "kernels" / "index.json", csv]}
    server.stop()
    for call in (lambda: K.status(ws), lambda: K.submit(str(csv), "m", ws, ws / "configs" / "tiny.toml"),
                 lambda: K.push_code(ws, force=True)):
        with pytest.raises(K.KaggleError, match="cannot reach the Kaggle API.*nothing was changed locally"):
            call()
    assert all(p.read_bytes() == b for p, b in before.items())


def test_status_reports_failures(ws: Path, server: StandIn) -> None:
    ref = seed_kernel(ws, server)
    server.kernel_status[ref] = [("ERROR", "CUDA error: no kernel image is available for execution on the device")]
    rows = K.status(ws, ["tiny-mlp"], wait=True, interval=0.01)
    assert rows[0]["state"] == "ERROR" and "no kernel image" in rows[0]["failure"]


def test_download_unzips_and_checks_the_config(tmp_path: Path, server: StandIn) -> None:
    src = make_audio_competition(tmp_path / "origin", name="tiny", n_per_class=2, n_test=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in src.root.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(src.root).as_posix())
    server.competition_zips[SLUG] = buf.getvalue()
    ws = tmp_path / "ws"
    (ws / "configs").mkdir(parents=True)
    cfg = ws / "configs" / "tiny.toml"
    cfg.write_text(src.config.read_text().replace('name = "tiny"', f'name = "tiny"\nslug = "{SLUG}"', 1))
    dest = K.download(cfg, ws)
    assert (dest / "sample_submission.csv").is_file() and (dest / "train.csv").is_file() and not list(dest.glob("*.zip"))
    cfg.write_text(cfg.read_text().replace('manifest = "train.csv"', 'manifest = "labels.csv"'))
    with pytest.raises(K.KaggleError, match="labels.csv"):
        K.check_downloaded(cfg, dest)


def test_kernel_gpu_check_knows_p100_from_t4() -> None:
    ns: dict = {"__name__": "kernel"}
    exec(K.RUN_PY.replace("__SPEC__", json.dumps({"kernel": "k", "run_id": "r", "code_sha": "s"})), ns)
    cu128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert not ns["arch_supported"]((6, 0), cu128)  # P100
    assert ns["arch_supported"]((7, 5), cu128)  # T4
    assert ns["arch_supported"]((8, 9), cu128)  # L4 runs the sm_86 cubin
    assert ns["arch_supported"]((12, 1), ["sm_90", "compute_90"])  # PTX JIT
    assert not ns["arch_supported"]((6, 1), ["sm_70", "sm_75"])


def test_generated_metadata_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "run.py").write_text("print(1)\n")
    write_json(folder / "kernel-metadata.json", {"id": "me/demo-mlp", "title": "Demo Cnn", "code_file": "run.py",
                                                 "language": "python", "kernel_type": "script"})
    with pytest.raises(K.KaggleError, match="slugify"):
        K.validate_metadata(folder)
    write_json(folder / "kernel-metadata.json", {"id": "me/demo-mlp", "title": "Demo Mlp", "code_file": "run.py", "language": "python",
                                                 "kernel_type": "script", "enable_gpu": True})
    with pytest.raises(K.KaggleError, match="machine_shape"):
        K.validate_metadata(folder)
