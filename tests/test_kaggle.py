"""src.kaggle end to end through the real ``kaggle`` CLI, against the loopback stand-in server.

The CLI runs as a subprocess (``python -m kaggle``) with throw-away credentials in a temporary
HOME; ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` + ``HTTP_PROXY`` route its calls to
``tests/kaggle_standin.py`` (see its docstring for why not ``TEST``). Nothing here touches the
real ~/.kaggle or the network. The kernel runner's own steps are tested in test_kernel_runner.py.
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

from src import cli, kernel_runner
from src import kaggle as K
from src import kaggle_api as api
from src import kaggle_code as code
from src import kaggle_kernels as kern
from src import kaggle_pull as kp
from src.artifacts import read_json, write_csv, write_json
from src.errors import KaggleError
from src.runs import fold_files

SLUG = "tiny"  # competition slug == data/<slug>/ folder of the fixture


@pytest.fixture(scope="module", autouse=True)
def code_snapshot(tmp_path_factory: pytest.TempPathFactory):
    """Package a frozen copy of src/ and configs/: the shared tree may change while the tests run."""
    snap = tmp_path_factory.mktemp("code_snapshot")
    shutil.copytree(code.REPO / "src", snap / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(code.REPO / "configs", snap / "configs")
    shutil.copy2(code.REPO / "requirements.txt", snap / "requirements.txt")
    mp = pytest.MonkeyPatch()
    mp.setattr(code, "REPO", snap)
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


FAST_POLL = {"interval": 0.01, "factor": 1.5, "max_interval": 0.05, "timeout": 20.0}


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stand-in with legacy credentials in a throw-away HOME; dataset readiness polled every few ms."""
    s = StandIn(competitions={SLUG}).start()
    home = tmp_path / "home"
    home.mkdir()
    for k, v in s.env(str(home)).items():
        monkeypatch.setenv(k, v)
    for k in ("KAGGLE_API_TOKEN", "WS_LOCAL_DEVICES"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(code, "READY_POLL", dict(FAST_POLL), raising=False)  # raising=False: runs against old code too
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
    """State as after ``download`` and ``code`` (for tests about other verbs): the competition's kind recorded, the
    staged dataset, its index entry (READY) and the dataset on the server."""
    _, sha = code.stage_code(ws, code.CODE_SLUG, server.user)
    ref = f"{server.user}/{code.CODE_SLUG}"
    seen = {SLUG: {"code_only": SLUG in server.code_competitions, "checked": api.now()}}
    api.save_state(ws, {**api.load_state(ws), "code": {"ref": ref, "code_sha": sha, "version": 1, "ready": True}, "competitions": seen})
    server.seed_dataset(ref)


def seed_kernel(ws: Path, server: StandIn, slug: str = "tiny-mlp") -> str:
    ref = f"{server.user}/{slug}"
    st = api.load_state(ws)
    st["kernels"][ref] = {"ref": ref, "run_id": "r1", "group": "r1", "folds": None, "config": str(ws / "configs" / "tiny.toml"),
                          "version": 1, "pushed": api.now()}
    api.save_state(ws, st)
    server.kernels[ref] = [{}]
    return ref


def push_args(**kw) -> object:
    args = K.parse_args(["push", "--config", "x", "--model", "mlp"])
    args.internet = False
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def test_code_and_push_reach_the_server_intact(ws: Path, server: StandIn) -> None:
    c = code.push_code(ws)
    assert c["ref"] == "testuser/audio-workspace-code" and c["version"] == 1
    created = server.received("CreateDataset")[0]
    assert created["slug"] == "audio-workspace-code" and created["licenseName"] == "CC0-1.0"
    staged = ws / "cache" / "kaggle" / "code" / "audio-workspace-code"
    version = server.datasets["testuser/audio-workspace-code"][0]
    assert version["uploaded"]["workspace.zip"] == (staged / "workspace.zip").read_bytes()
    names = zipfile.ZipFile(io.BytesIO(version["uploaded"]["workspace.zip"])).namelist()
    assert {"src/train.py", "src/kernel_runner.py", "configs/tiny.toml", "folds/tiny_k2.csv"} <= set(names)
    assert {"manifest.json", "workspace/src/train.py", "workspace/folds/tiny_k2.csv"} <= set(version["files"])  # as kernels see it
    assert code.push_code(ws) == c and len(server.received("CreateDataset")) == 1  # same code: nothing sent

    recs = kern.push(ws / "configs" / "tiny.toml", push_args(epochs=2), ws)
    body = server.received("SaveKernel")[0]
    folder = ws / "kernels" / "tiny-mlp"
    assert body["slug"] == "testuser/tiny-mlp" and body["text"] == (folder / "run.py").read_text()
    assert body["enableGpu"] is True and body["machineShape"] == "NvidiaTeslaT4" and body["enableInternet"] is False
    assert body["datasetDataSources"] == ["testuser/audio-workspace-code"] and body["competitionDataSources"] == [SLUG]
    assert body["language"] == "python" and body["kernelType"] == "script"
    assert body["dockerImagePinningType"] == "original"
    assert server.mounted["testuser/tiny-mlp"] == [{"testuser/audio-workspace-code": 1}]  # the kernel sees the READY code
    assert recs[0]["version"] == 1 and read_json(ws / "kernels" / "index.json")["kernels"]["testuser/tiny-mlp"]["version"] == 1
    spec = kern.read_spec(folder)
    assert spec["code_sha"] == c["code_sha"] and spec["args"] == ["--model", "mlp", "--epochs", "2", "--run-id", recs[0]["run_id"]]
    assert kern.embedded_spec(folder / "run.py") == spec  # what Kaggle received carries the same settings

    (ws / "folds" / "note.json").write_text("{}")  # code changed -> a new dataset version, not a new dataset
    assert code.push_code(ws)["version"] == 2 and len(server.received("CreateDatasetVersion")) == 1


def test_generated_run_py_is_the_runner_with_one_line_replaced(tmp_path: Path) -> None:
    """run.py = src/kernel_runner.py verbatim except the marker line; the settings survive any JSON value."""
    spec = {"kernel": "me/k", "run_id": 'r"1\\', "code_sha": "s", "internet": False, "folds": None, "keep_cache": True,
            "args": ["--param", "hidden=[64, 32]", "--param", 'name="x"', "--param", "ünï"], "device": "cpu"}
    meta = {"id": "me/demo-mlp", "title": "Demo Mlp", "code_file": "run.py", "language": "python", "kernel_type": "script"}
    folder = tmp_path / "k"
    kern.write_kernel(folder, meta, spec)
    assert kern.read_spec(folder) == spec == kern.embedded_spec(folder / "run.py")
    runner = Path(kernel_runner.__file__).read_text().splitlines()
    generated = (folder / "run.py").read_text().splitlines()
    i = runner.index(kern.SPEC_MARKER)
    n_spec = len(generated) - len(runner) + 1
    assert generated[:i] == runner[:i] and generated[i + n_spec:] == runner[i + 1:]
    assert generated[i].startswith("SPEC: dict = json.loads(")
    kern.validate_metadata(folder)


def test_train_args_forward_push_settings() -> None:
    assert kern.train_args(push_args(epochs=3, param_list=["hidden=[64]"])) == ["--model", "mlp", "--epochs", "3", "--param", "hidden=[64]"]
    assert kern.train_args(push_args(tune=True, trials=5, param_list=["lr=0.1"])) == ["--model", "mlp", "--trials", "5", "--fix", "lr=0.1"]


def test_preflight_refuses_before_sending_anything(ws: Path, server: StandIn) -> None:
    seed_code(ws, server)
    cfg = ws / "configs" / "tiny.toml"
    with pytest.raises(KaggleError, match="sm_60"):
        kern.push(cfg, push_args(accelerator="NvidiaTeslaP100"), ws)
    with pytest.raises(KaggleError, match="fold\\(s\\) \\[7\\] not in"):
        kern.push(cfg, push_args(folds=[7]), ws)
    cfg.write_text(cfg.read_text().replace("seed = 7", "seed = 8"))  # config edited after `code`
    with pytest.raises(KaggleError, match="changed since code dataset"):
        kern.push(cfg, push_args(), ws)
    assert server.received("SaveKernel") == []


def serve_outputs(server: StandIn, ref: str, working: Path) -> None:
    """What Kaggle would list as the kernel's output files: everything under /kaggle/working (log: Kaggle's JSON array)."""
    server.kernel_outputs[ref] = {str(p.relative_to(working)): p.read_bytes() for p in working.rglob("*") if p.is_file()}
    server.kernel_logs[ref] = "[1.0s] training done\n!Traceback: none, all good\n"


IMAGE = "gcr.io/kaggle-gpu-images/python@sha256:feedbeef"


def test_local_kernel_run_pull_and_submit(ws: Path, server: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py runs unchanged here (Kaggle's current /kaggle/input layout); its outputs, served as kernel output, pull
    into a run that submit accepts; the log comes back readable and the docker image it reported is pinned next time."""
    from src.runs import load_run

    seed_code(ws, server)
    rec = kern.push(ws / "configs" / "tiny.toml", push_args(epochs=2), ws)[0]
    monkeypatch.setenv("KAGGLE_DOCKER_IMAGE", IMAGE)  # what Kaggle's image sets in a kernel
    run = kp.local_run("tiny-mlp", ws)
    assert run == ws / "runs" / rec["run_id"] and load_run(run).test.shape == (4, 3)
    root = ws / "cache" / "kaggle" / "local" / "tiny-mlp"
    assert (root / "input" / "competitions" / SLUG / "train.csv").is_file() and not (root / "input" / SLUG).exists()
    assert (root / "input" / "datasets" / "testuser" / "audio-workspace-code" / "workspace" / "src" / "train.py").is_file()
    working = root / "working"
    assert read_json(working / "kernel_report.json")["status"] == "done" and not (working / "cache").exists()

    shutil.rmtree(run)
    serve_outputs(server, rec["ref"], working)
    server.kernel_status[rec["ref"]] = [("RUNNING", ""), ("COMPLETE", "")]
    rows = kp.status(ws, wait=True, interval=0.01)
    assert rows[0]["state"] == "COMPLETE" and rows[0]["finished"]
    pulled = kp.pull(rec["group"], ws)
    meta = read_json(pulled / "config.json")
    assert meta["fold_file"] == str((ws / "folds" / "tiny_k2.csv").resolve()) and meta["kaggle"]["kernel"] == rec["ref"]
    assert (pulled / "kaggle_tiny-mlp.log").read_text() == "[1.0s] training done\nTraceback: none, all good\n"  # not JSON
    assert kp.kernel_log(rec["group"], ws).endswith("[1.0s] training done\nTraceback: none, all good")
    assert kern.docker_pin(push_args(), api.load_state(ws)) == {"docker_image": IMAGE, "docker_image_pinning_type": "original"}

    path = K.submit(rec["group"], "mlp from kaggle", ws)
    assert server.submitted_bytes(SLUG) == path.read_bytes()
    server.submissions[SLUG][0].update(publicScore="0.750", privateScore="0.700", status="COMPLETE")
    idx = K.submissions(ws / "configs" / "tiny.toml", ws)
    row = idx[idx["file"] == path.name].iloc[-1]
    assert row["public_score"] == "0.750" and row["private_score"] == "0.700" and row["cv_score"] != ""


def test_local_run_refuses_a_kernel_whose_settings_were_edited(ws: Path) -> None:
    kern.push(ws / "configs" / "tiny.toml", push_args(no_push=True), ws)
    folder = ws / "kernels" / "tiny-mlp"
    spec = kern.read_spec(folder)
    write_json(folder / "kernel_spec.json", {**spec, "args": [*spec["args"], "--epochs", "9"]})
    with pytest.raises(KaggleError, match="other settings than"):
        kp.local_run("tiny-mlp", ws)


def push_per_fold(ws: Path, server: StandIn, trained_run: Path, status: dict | None = None) -> list[dict]:
    """Push per-fold kernels and serve what each GPU would have produced (same code, one fold each)."""
    seed_code(ws, server)
    recs = kern.push(ws / "configs" / "tiny.toml", push_args(per_fold=True, epochs=1), ws)
    done = read_json(trained_run / "fold_status.json")
    for k, r in enumerate(recs):
        part = ws / "fake_out" / r["run_id"] / "runs" / r["run_id"]
        part.mkdir(parents=True)
        shutil.copy2(trained_run / "config.json", part / "config.json")
        write_json(part / "fold_status.json", {str(k): (status or {}).get(k, done[str(k)])})
        for f in fold_files(trained_run, k):
            shutil.copy2(trained_run / f, part / f)
        serve_outputs(server, r["ref"], part.parent.parent)
    return recs


def test_per_fold_kernels_merge_into_one_run(ws: Path, server: StandIn, trained_run: Path) -> None:
    """Each per-fold kernel leaves config.json, fold_status.json and its fold's files; merged = the one-kernel run."""
    from src.runs import load_run

    recs = push_per_fold(ws, server, trained_run)
    assert [r["ref"] for r in recs] == ["testuser/tiny-mlp-f0", "testuser/tiny-mlp-f1"]
    assert [kern.read_spec(Path(r["folder"]))["folds"] for r in recs] == [[0], [1]]
    merged = kp.pull(recs[0]["group"], ws)
    art, ref = load_run(merged), load_run(trained_run)
    assert merged.name == recs[0]["group"] and art.metrics["folds_done"] == [0, 1]
    np.testing.assert_allclose(art.oof, ref.oof)
    np.testing.assert_allclose(art.test, ref.test)
    assert art.metrics["oof"] == ref.metrics["oof"]

    (ws / "folds" / "tiny_k2.csv").write_text((ws / "folds" / "tiny_k2.csv").read_text().replace(",0\n", ",1\n", 1))
    with pytest.raises(KaggleError, match="folds changed after the push"):
        kp.pull(recs[0]["ref"], ws, force=True)


def test_pull_refuses_per_fold_kernels_with_a_failed_fold(ws: Path, server: StandIn, trained_run: Path) -> None:
    """Blind spot: a kernel that exited cleanly but whose fold_status says failed must not be merged."""
    failed = {"status": "failed", "error": "RuntimeError: CUDA out of memory", "finished": "2026-01-01T00:00:00+00:00"}
    recs = push_per_fold(ws, server, trained_run, status={1: failed})
    with pytest.raises(KaggleError, match=r"fold 1 failed on Kaggle: RuntimeError: CUDA out of memory"):
        kp.pull(recs[0]["group"], ws)
    assert not (ws / "runs" / recs[0]["group"]).exists()
    assert not [p for p in (ws / "runs").glob(f"*{recs[0]['group']}*")]  # every kernel is checked before any is imported


def test_pull_refuses_a_kernel_trained_on_other_folds(ws: Path, server: StandIn, trained_run: Path) -> None:
    """Blind spot: the kernel's fold file sha256 must equal the local fold file's, else nothing is imported."""
    ref = seed_kernel(ws, server)
    out = ws / "fake_out" / "runs" / "r1"
    shutil.copytree(trained_run, out)
    meta = read_json(out / "config.json")
    write_json(out / "config.json", {**meta, "fold_sha256": "0" * 64})
    serve_outputs(server, ref, out.parent.parent)
    with pytest.raises(KaggleError, match=r"trained on fold file tiny_k2.csv sha256 000000000000.*differs"):
        kp.pull("tiny-mlp", ws)
    assert not (ws / "runs" / "r1").exists()

    write_json(out / "config.json", meta)  # the same kernel with the right folds is accepted
    serve_outputs(server, ref, out.parent.parent)
    assert read_json(kp.pull("tiny-mlp", ws) / "config.json")["kaggle"]["fold_file"] == meta["fold_file"]


def _sample_csv(ws: Path, path: Path, drop_last: bool = False) -> Path:
    sample = pd.read_csv(ws / "data" / "tiny" / "sample_submission.csv", dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    (sample.iloc[:-1] if drop_last else sample).to_csv(path, index=False)
    return path


def test_rejected_submission_surfaces_the_server_message(ws: Path, server: StandIn) -> None:
    server.reject_submission = "Submission file has 3 rows, expected 4"
    csv = _sample_csv(ws, ws / "submissions" / "manual.csv")
    with pytest.raises(KaggleError, match="Submission file has 3 rows, expected 4"):
        K.submit(str(csv), "manual", ws, ws / "configs" / "tiny.toml")
    idx = pd.read_csv(ws / "submissions" / "index.csv", dtype=str, keep_default_na=False)
    assert "kaggle_submitted" not in idx or idx["kaggle_submitted"].eq("").all()


def test_invalid_file_is_never_sent(ws: Path, server: StandIn) -> None:
    csv = _sample_csv(ws, ws / "bad.csv", drop_last=True)
    with pytest.raises(KaggleError, match="not sent: .*missing"):
        K.submit(str(csv), "bad", ws, ws / "configs" / "tiny.toml")
    assert server.received("StartSubmissionUpload") == []


def test_network_down_is_clear_and_loses_nothing(ws: Path, server: StandIn) -> None:
    seed_code(ws, server)
    seed_kernel(ws, server)
    csv = _sample_csv(ws, ws / "submissions" / "manual.csv")
    before = {"kernels": files_under(ws / "kernels"), "submissions": files_under(ws / "submissions"),
              "cache": files_under(ws / "cache" / "kaggle")}
    server.stop()
    for call in (lambda: kp.status(ws), lambda: K.submit(str(csv), "m", ws, ws / "configs" / "tiny.toml"),
                 lambda: code.push_code(ws, force=True), lambda: kern.push(ws / "configs" / "tiny.toml", push_args(), ws),
                 lambda: kp.pull("tiny-mlp", ws)):
        with pytest.raises(KaggleError, match="cannot reach the Kaggle API.*nothing was changed locally"):
            call()
    after = {"kernels": files_under(ws / "kernels"), "submissions": files_under(ws / "submissions"),
             "cache": files_under(ws / "cache" / "kaggle")}
    assert after == before


def test_submit_offline_writes_no_csv_and_no_index_row(trained_run: Path, ws: Path, server: StandIn,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Blind spot: 'nothing was changed locally' must hold for a run too (the CSV is built only once Kaggle is reachable)."""
    server.stop()
    with pytest.raises(KaggleError, match="cannot reach the Kaggle API.*nothing was changed locally"):
        K.submit(trained_run.name, "offline", ws)
    assert files_under(ws / "submissions") == {}

    server.start()
    for k, v in server.env(str(ws.parent / "home")).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(KaggleError, match="no Kaggle credentials found"):
        K.submit(trained_run.name, "no token", ws)
    assert files_under(ws / "submissions") == {} and server.received("StartSubmissionUpload") == []


def test_status_reports_failures(ws: Path, server: StandIn) -> None:
    ref = seed_kernel(ws, server)
    server.kernel_status[ref] = [("ERROR", "CUDA error: no kernel image is available for execution on the device")]
    rows = kp.status(ws, ["tiny-mlp"], wait=True, interval=0.01)
    assert rows[0]["state"] == "ERROR" and "no kernel image" in rows[0]["failure"]


def _zip_of(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def _download_ws(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = make_audio_competition(tmp_path / "origin", name="tiny", n_per_class=2, n_test=2)
    ws = tmp_path / "ws"
    (ws / "configs").mkdir(parents=True)
    cfg = ws / "configs" / "tiny.toml"
    cfg.write_text(src.config.read_text().replace('name = "tiny"', f'name = "tiny"\nslug = "{SLUG}"', 1))
    return src.root, ws, cfg


def test_download_unzips_and_checks_the_config(tmp_path: Path, server: StandIn) -> None:
    origin, ws, cfg = _download_ws(tmp_path)
    server.competition_zips[SLUG] = _zip_of(origin)
    dest = K.download(cfg, ws)
    assert (dest / "sample_submission.csv").is_file() and (dest / "train.csv").is_file() and not list(dest.glob("*.zip"))
    cfg.write_text(cfg.read_text().replace('manifest = "train.csv"', 'manifest = "labels.csv"'))
    with pytest.raises(KaggleError, match="labels.csv"):
        K.check_downloaded(cfg, dest)


def test_download_refuses_an_archive_that_escapes(tmp_path: Path, server: StandIn) -> None:
    """Blind spot: with the zip-slip guard gone, a '../evil' member would be unpacked (or written outside)."""
    origin, ws, cfg = _download_ws(tmp_path)
    server.competition_zips[SLUG] = _zip_of(origin, {"../evil.txt": b"x", "../../evil2.txt": b"y"})
    with pytest.raises(KaggleError, match=r"'\.\./evil\.txt'.*point outside.*refusing to unzip"):
        K.download(cfg, ws)
    dest = ws / "data" / SLUG
    assert [p.suffix for p in dest.iterdir()] == [".zip"]  # refused whole: not one member unpacked
    assert not (ws / "data" / "evil.txt").exists() and not (ws / "evil2.txt").exists()
    assert not list(tmp_path.rglob("evil*.txt"))


def test_kernel_unpack_refuses_an_archive_that_escapes(tmp_path: Path) -> None:
    archive = tmp_path / "a" / "workspace.zip"
    archive.parent.mkdir()
    archive.write_bytes(_zip_of(tmp_path / "a", {"src/train.py": b"", "../evil.txt": b"x"}))
    with pytest.raises(kernel_runner.KernelFailure, match="outside"):
        kernel_runner.unpack(archive, tmp_path / "code")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "code" / "src").exists()


def test_generated_metadata_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "run.py").write_text("print(1)\n")
    write_json(folder / "kernel-metadata.json", {"id": "me/demo-mlp", "title": "Demo Cnn", "code_file": "run.py",
                                                 "language": "python", "kernel_type": "script"})
    with pytest.raises(KaggleError, match="slugify"):
        kern.validate_metadata(folder)
    write_json(folder / "kernel-metadata.json", {"id": "me/demo-mlp", "title": "Demo Mlp", "code_file": "run.py", "language": "python",
                                                 "kernel_type": "script", "enable_gpu": True})
    with pytest.raises(KaggleError, match="machine_shape"):
        kern.validate_metadata(folder)


# ----------------------------------------------------------------------------- the command line


def test_workdir_is_accepted_after_the_verb_and_before_it(tmp_path: Path) -> None:
    for verb in (["status"], ["pull", "x"], ["push", "--model", "mlp"], ["submit", "x", "-m", "m"], ["code"], ["local", "k"]):
        assert K.parse_args([*verb, "--workdir", str(tmp_path)]).workdir == str(tmp_path)
    assert K.parse_args(["--workdir", str(tmp_path), "status"]).workdir == str(tmp_path)
    assert K.parse_args(["status"]).workdir == "."


def test_every_flag_has_help_and_choices_are_enforced(capsys: pytest.CaptureFixture) -> None:
    ap = K.build_parser()
    subs = next(a for a in ap._actions if a.dest == "verb").choices
    for name, p in subs.items():
        for act in p._actions:
            assert act.help, f"{name} {act.option_strings or act.dest} has no help"
    push = K.parse_args(["push", "--model", "mlp"])
    assert push.accelerator == "NvidiaTeslaT4" and push.internet == "off" and push.trials == 20
    for bad in (["--accelerator", "K80"], ["--internet", "yes"]):
        with pytest.raises(SystemExit):
            K.parse_args(["push", "--model", "mlp", *bad])
    assert "invalid choice" in capsys.readouterr().err


def test_command_errors_say_what_and_how_to_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.run_command(K.main, ["pull", "nothing-pushed", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: 'nothing-pushed' is neither a pushed run id") and " — " in err


def test_kernel_settings_are_json_in_the_generated_folder(ws: Path) -> None:
    kern.push(ws / "configs" / "tiny.toml", push_args(no_push=True, per_fold=True, internet="on"), ws)
    specs = [json.loads((ws / "kernels" / s / "kernel_spec.json").read_text()) for s in ("tiny-mlp-f0", "tiny-mlp-f1")]
    assert [s["folds"] for s in specs] == [[0], [1]] and all(s["internet"] is True for s in specs)
    assert not (ws / "kernels" / "index.json").exists()  # --no-push records nothing


def test_push_param_is_routed_and_checked_like_train(ws: Path) -> None:
    """A transfer setting given to push used to reach timm.create_model on the Kaggle GPU after pre-flight passed.

    Now push's --param follows src.train's one rule: a train setting that does not apply to the model is refused
    before anything is generated; a model-parameter typo too; a setting that applies is forwarded and lands in
    the trainer (not the model constructor) when the kernel runs src.train.
    """
    from src.config import load_config
    from src.settings import parse_pairs
    from src.train import resolve_train_config

    cfg = ws / "configs" / "tiny.toml"
    with pytest.raises(KaggleError, match=r"--layer-decay 0.7 \(from push --param\) applies to pretrained backbones only"):
        kern.push(cfg, push_args(model="cnn", no_push=True, param_list=["layer_decay=0.7"]), ws)
    with pytest.raises(KaggleError, match=r"--param hiden: model mlp"):
        kern.push(cfg, push_args(no_push=True, param_list=["hiden=[64]"]), ws)
    assert not any((ws / "kernels").glob("*/run.py"))
    a = push_args(model="resnet18", no_push=True, param_list=["layer_decay=0.7", "lr=3e-4", "in_chans=3"])
    kern.push(cfg, a, ws)
    args = json.loads((ws / "kernels" / "tiny-resnet18" / "kernel_spec.json").read_text())["args"]
    assert args[args.index("--param") + 1] == "layer_decay=0.7"
    tc, _ = resolve_train_config(load_config(cfg), "resnet18", params=parse_pairs(a.param_list))  # what the kernel's src.train does
    assert tc.layer_decay == 0.7 and tc.lr == 3e-4 and tc.model_params == {"in_chans": 3}
