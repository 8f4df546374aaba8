"""src.kaggle against Kaggle as it really is (issue 14, items 3 and 4), through the real ``kaggle`` CLI.

The stand-in (``tests/kaggle_standin.py``) authenticates every call, processes dataset versions
asynchronously (403 while processing, zips unpacked), pages kernel outputs, stores logs as JSON
arrays, knows code-only competitions, unaccepted rules and the GPU quota. Each test names the
behaviour the workspace got wrong against the friendlier fake. Fixtures come from test_kaggle.py
(imported by name, hence the F811 exemption: pytest passes them in as arguments).
"""
# ruff: noqa: F811
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from kaggle_standin import StandIn
from test_kaggle import (  # noqa: F401 - fixtures
    SLUG,
    _download_ws,
    _sample_csv,
    _zip_of,
    base_ws,
    code_snapshot,
    push_args,
    seed_code,
    seed_kernel,
    server,
    trained_run,
    ws,
)

from src import cli
from src import kaggle as K
from src import kaggle_api as api
from src import kaggle_code as code
from src import kaggle_kernels as kern
from src import kaggle_pull as kp
from src.artifacts import read_json
from src.errors import KaggleError

CODE_REF = "testuser/audio-workspace-code"


def token_login(monkeypatch: pytest.MonkeyPatch, server: StandIn, how: str, token: str = "standin-token") -> None:
    """One way of logging in, and no other: env token, token file, OAuth login (``kaggle auth login``), or legacy kaggle.json."""
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    home = Path(os.environ["HOME"])  # the server fixture's throw-away HOME
    (home / ".kaggle").mkdir(parents=True, exist_ok=True)
    if how == "env":
        monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    elif how == "file":
        (home / ".kaggle" / "access_token").write_text(token + "\n")
    elif how == "oauth":  # what `kaggle auth login` leaves: a refresh token and a cached, unexpired access token
        (home / ".kaggle" / "credentials.json").write_text(json.dumps({
            "refresh_token": "standin-refresh", "access_token": token, "access_token_expiration": "2099-01-01T00:00:00+00:00",
            "username": server.user, "scopes": ["resources.admin:*"]}))
    else:
        (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": server.user, "key": server.keys[server.user]}))


# ----------------------------------------------------------------------------- login


@pytest.mark.parametrize("how", ["env", "file", "oauth", "kaggle.json"])
def test_modern_login_names_the_user_from_the_api(ws: Path, server: StandIn, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Old: only KAGGLE_USERNAME/kaggle.json were read, so a KAGGLE_API_TOKEN user got a false 'no Kaggle user name'."""
    token_login(monkeypatch, server, how)
    getattr(api, "_USERS", {}).clear()
    assert api.kaggle_user() == "testuser"
    c = code.push_code(ws)
    assert c["ref"] == CODE_REF and c["ready"] and CODE_REF in server.datasets
    assert ("bearer:testuser" if how != "kaggle.json" else "basic:testuser") in server.auth
    assert api.credential_source().kind == {"env": "token", "file": "token", "oauth": "oauth", "kaggle.json": "legacy"}[how]


def test_a_bad_token_is_a_clear_401(ws: Path, server: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    token_login(monkeypatch, server, "env", token="revoked-token")
    getattr(api, "_USERS", {}).clear()
    with pytest.raises(SystemExit) as exc:
        cli.run_command(K.main, ["code", "--workdir", str(ws)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Kaggle rejected the access token in KAGGLE_API_TOKEN (HTTP 401" in err
    assert " — the token is wrong, revoked or expired: generate a new one at https://www.kaggle.com/settings/api" in err
    assert "rejected" in server.auth and CODE_REF not in server.datasets
    monkeypatch.setenv("KAGGLE_USERNAME", "testuser")  # a legacy key Kaggle no longer accepts: same kind of error
    monkeypatch.setenv("KAGGLE_KEY", "expired")
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    ref = seed_kernel(ws, server)
    with pytest.raises(KaggleError, match=r"denied access to kernel testuser/tiny-mlp: either it rejected the legacy key in "
                       r"KAGGLE_USERNAME/KAGGLE_KEY, or the kernel is not this user's — .*if it is right, the key was expired"):
        kp.status(ws, [ref])  # kaggle 2.2.4 turns this 401 into "wrong kernel slug"


# ----------------------------------------------------------------------------- dataset readiness


def test_code_waits_until_kaggle_has_processed_the_version(ws: Path, server: StandIn) -> None:
    """Old: the version was recorded at once (None while processing), and a kernel pushed next mounted the old code."""
    server.processing_polls = 2
    assert code.push_code(ws)["version"] == 1
    (ws / "folds" / "note.json").write_text("{}")
    c = code.push_code(ws)
    assert c["version"] == 2 and c["ready"] and len(server.received("GetDatasetStatus")) >= 6
    kern.push(ws / "configs" / "tiny.toml", push_args(accelerator="none"), ws)
    assert server.mounted["testuser/tiny-mlp"] == [{CODE_REF: 2}]  # the kernel runs the new code


def test_an_unfinished_version_is_waited_for_not_uploaded_over(ws: Path, server: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old: a second `code` while Kaggle still processed the first version got 403; a timed-out wait is resumed instead."""
    server.processing_polls = 10_000
    monkeypatch.setitem(code.READY_POLL, "timeout", 0.05)
    with pytest.raises(KaggleError, match=r"still blobs_received after 0s; kernels pushed now would mount the previous"):
        code.push_code(ws)
    assert api.load_state(ws)["code"]["ready"] is False
    with pytest.raises(KaggleError, match="still blobs_received"):
        kern.push(ws / "configs" / "tiny.toml", push_args(accelerator="none"), ws)  # push waits too, sends nothing meanwhile
    assert server.received("SaveKernel") == []
    server.datasets[CODE_REF][-1]["polls_left"] = 1  # Kaggle finishes processing
    server.processing_polls = 1
    monkeypatch.setitem(code.READY_POLL, "timeout", 20.0)
    (ws / "folds" / "note.json").write_text("{}")
    assert code.push_code(ws)["version"] == 2
    assert len(server.received("CreateDatasetVersion")) == 1 and len(server.datasets[CODE_REF]) == 2  # no 403


# ----------------------------------------------------------------------------- accelerators, quota, running kernels


def test_tpu_is_refused_and_t4_plans_two_folds_at_once(ws: Path) -> None:
    """Old: TPU shapes were pushed with no XLA path behind them; a T4 kernel trained its folds one after another."""
    cfg = ws / "configs" / "tiny.toml"
    with pytest.raises(KaggleError, match=r"TpuV5E8 is a TPU, .* no XLA path"):
        kern.push(cfg, push_args(no_push=True, accelerator="TpuV5E8"), ws)
    kern.push(cfg, push_args(no_push=True), ws)
    assert kern.read_spec(ws / "kernels" / "tiny-mlp")["fold_plan"] == [0, 1]
    kern.push(cfg, push_args(no_push=True, accelerator="none"), ws)
    assert kern.read_spec(ws / "kernels" / "tiny-mlp")["fold_plan"] is None
    kern.push(cfg, push_args(no_push=True, per_fold=True), ws)
    assert kern.read_spec(ws / "kernels" / "tiny-mlp-f1")["fold_plan"] is None
    assert "two T4s" in K.build_parser()._subparsers._group_actions[0].choices["push"].format_help()


def test_gpu_quota_is_checked_before_per_fold_kernels_start(ws: Path, server: StandIn) -> None:
    """Old: --per-fold started every kernel whatever quota was left."""
    seed_code(ws, server)
    server.gpu_quota_h = (29.5, 30.0)
    cfg = ws / "configs" / "tiny.toml"
    with pytest.raises(KaggleError, match=r"2 GPU kernel\(s\) x 1 h = 2 h, but only 0.50 h of the weekly GPU quota \(30 h\)"):
        kern.push(cfg, push_args(per_fold=True), ws)
    assert server.received("SaveKernel") == [] and not (ws / "kernels" / "tiny-mlp-f0").exists()
    recs = kern.push(cfg, push_args(per_fold=True, gpu_hours=0.2), ws)
    assert [r["version"] for r in recs] == [1, 1]


def test_a_running_kernel_is_not_pushed_again_unless_forced(ws: Path, server: StandIn) -> None:
    """Old: re-pushing started a second session of a kernel still RUNNING (quota spent twice, no warning)."""
    seed_code(ws, server)
    ref = seed_kernel(ws, server)
    st = api.load_state(ws)
    st["kernels"][ref]["version"] = 1
    api.save_state(ws, st)
    server.kernel_status[ref] = [("RUNNING", "")]
    cfg = ws / "configs" / "tiny.toml"
    with pytest.raises(KaggleError, match=r"still running on Kaggle: testuser/tiny-mlp \(version 1, RUNNING\)"):
        kern.push(cfg, push_args(accelerator="none"), ws)
    assert server.received("SaveKernel") == []
    kern.push(cfg, push_args(force=True, accelerator="none"), ws)
    assert len(server.received("SaveKernel")) == 1


def test_docker_image_is_pinned_and_overridable(ws: Path, server: StandIn) -> None:
    seed_code(ws, server)
    cfg = ws / "configs" / "tiny.toml"
    image = "gcr.io/kaggle-gpu-images/python@sha256:0123"
    kern.push(cfg, push_args(docker_image=image, accelerator="none"), ws)
    assert server.received("SaveKernel")[-1]["dockerImage"] == image and api.load_state(ws)["docker_image"] == image
    kern.push(cfg, push_args(accelerator="none"), ws)  # recorded: the next push pins the same image
    body = server.received("SaveKernel")[-1]
    assert body["dockerImage"] == image and body["dockerImagePinningType"] == "original"
    kern.push(cfg, push_args(docker_image="latest", accelerator="none"), ws)
    assert "dockerImage" not in server.received("SaveKernel")[-1] and server.received("SaveKernel")[-1]["dockerImagePinningType"] == "latest"


def test_weights_from_a_model_and_a_notebook_are_attached(ws: Path) -> None:
    """Old: only a dataset could carry weights; Kaggle Models and notebook outputs were unsupported."""
    cfg = ws / "configs" / "tiny.toml"
    model, notebook = "google/yamnet/tensorFlow2/yamnet/1", "testuser/tiny-weights"
    kern.push(cfg, push_args(no_push=True, weights_model=model, weights_notebook=notebook), ws)
    meta = read_json(ws / "kernels" / "tiny-mlp" / "kernel-metadata.json")
    assert meta["model_sources"] == [model] and meta["kernel_sources"] == [notebook]
    assert kern.read_spec(ws / "kernels" / "tiny-mlp")["weights"] == [{"kind": "model", "ref": model},
                                                                     {"kind": "notebook", "ref": notebook}]
    with pytest.raises(KaggleError, match=r"model 'google/yamnet' is not owner/model/framework/variation/version"):
        kern.push(cfg, push_args(no_push=True, weights_model="google/yamnet"), ws)


# ----------------------------------------------------------------------------- competitions


def test_download_403_says_accept_the_rules(tmp_path: Path, server: StandIn) -> None:
    origin, wsd, cfg = _download_ws(tmp_path)
    server.competition_zips[SLUG] = _zip_of(origin)
    server.rules_not_accepted.add(SLUG)
    with pytest.raises(KaggleError, match=r"accept the competition rules at https://www.kaggle.com/competitions/tiny/rules"):
        K.download(cfg, wsd)


def test_code_competitions_are_detected(tmp_path: Path, ws: Path, server: StandIn) -> None:
    """Old: a code competition looked like any other: download said nothing, submit uploaded a CSV Kaggle refuses."""
    server.code_competitions.add(SLUG)
    origin, wsd, cfg = _download_ws(tmp_path / "dl")
    server.competition_zips[SLUG] = _zip_of(origin)
    out = K.run_verb(K.parse_args(["download", "--config", str(cfg), "--workdir", str(wsd)]))
    assert "tiny is a code competition" in out and "push-inference" in out
    csv = _sample_csv(ws, ws / "submissions" / "manual.csv")
    with pytest.raises(KaggleError, match=r"not sent: tiny is a code competition.*-k owner/kernel -v N"):
        K.submit(str(csv), "manual", ws, ws / "configs" / "tiny.toml")
    assert server.received("StartSubmissionUpload") == []
    seed_code(ws, server)
    out = K.run_verb(K.parse_args(["push", "--config", str(ws / "configs" / "tiny.toml"), "--model", "mlp", "--workdir", str(ws)]))
    assert "note: tiny is a code competition" in out


def test_code_submission_of_a_kernel_version(ws: Path, server: StandIn) -> None:
    """The stand-in takes `competitions submit -k owner/kernel -v N` (CreateCodeSubmission) for the push-inference verb."""
    ref = seed_kernel(ws, server)
    server.kernel_outputs[ref] = {"submission.csv": b"id,label\nt000,low\n"}
    out = api.kaggle_cli(["competitions", "submit", "-c", SLUG, "-f", "submission.csv", "-k", ref, "-v", "1", "-m", "code sub"])
    assert "queued" in out
    sub = server.submissions[SLUG][0]
    assert sub["description"] == "code sub" and server.code_submissions[sub["ref"]] == {"kernel": ref, "version": 1,
                                                                                        "file": "submission.csv"}


# ----------------------------------------------------------------------------- outputs


def test_kaggle_json_logs_read_as_text() -> None:
    events = json.dumps([{"stream_name": "stdout", "time": 0.1, "data": "epoch 1\n"},
                         {"stream_name": "stderr", "time": 0.2, "data": "Traceback (most recent call last):"}])
    assert api.readable_log(events) == "epoch 1\nTraceback (most recent call last):\n"
    assert api.readable_log("Warning: a newer kaggle exists\n" + events).startswith("Warning: a newer kaggle exists\nepoch 1\n")
    assert api.readable_log("[1.0s] plain text log\n") == "[1.0s] plain text log\n"  # not JSON: unchanged


def test_paged_outputs_are_pulled_whole(ws: Path, server: StandIn, trained_run: Path) -> None:
    """More output files than one page (20): kaggle 2.2.4 follows nextPageToken itself; the run arrives complete."""
    ref = seed_kernel(ws, server)
    out = ws / "fake_out" / "runs" / "r1"
    shutil.copytree(trained_run, out)
    for i in range(30):
        (out / "extra" / f"f{i:02d}.txt").parent.mkdir(exist_ok=True)
        (out / "extra" / f"f{i:02d}.txt").write_text(str(i))
    files = {str(p.relative_to(out.parent.parent)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    server.kernel_outputs[ref] = files
    run = kp.pull("tiny-mlp", ws)
    assert len(files) > 2 * server.output_page_size and len(server.received("ListKernelSessionOutput")) >= 3
    assert sorted(p.name for p in (run / "extra").iterdir()) == [f"f{i:02d}.txt" for i in range(30)]


# ----------------------------------------------------------------------------- both T4s


def test_pull_merges_the_folds_a_t4x2_kernel_trained_side_by_side(ws: Path, server: StandIn, trained_run: Path) -> None:
    """One kernel, two GPUs: its output holds runs/<run_id>-f0 and -f1 (one process per GPU) and a report listing them;
    pull merges them exactly as it merges per-fold kernels (old: it looked for runs/<run_id>/ and found none)."""
    from src.runs import fold_files, load_run

    seed_code(ws, server)
    rec = kern.push(ws / "configs" / "tiny.toml", push_args(epochs=1, run_id="t4x2"), ws)[0]
    assert rec["fold_plan"] == [0, 1] and kern.read_spec(Path(rec["folder"]))["fold_plan"] == [0, 1]
    out, done = ws / "fake_out", read_json(trained_run / "fold_status.json")
    parts = []
    for k in (0, 1):
        part = out / "runs" / f"t4x2-f{k}"
        part.mkdir(parents=True)
        shutil.copy2(trained_run / "config.json", part / "config.json")
        (part / "fold_status.json").write_text(json.dumps({str(k): done[str(k)]}))
        for f in fold_files(trained_run, k):
            shutil.copy2(trained_run / f, part / f)
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / f"fold{k}.log").write_text(f"fold {k} on GPU {k}\n")
        parts.append({"run_id": f"t4x2-f{k}", "folds": [k], "device": str(k), "status": "done", "returncode": 0})
    (out / "kernel_report.json").write_text(json.dumps({"run_id": "t4x2", "status": "done", "parts": parts}))
    server.kernel_outputs[rec["ref"]] = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    merged = kp.pull("t4x2", ws)
    art, ref = load_run(merged), load_run(trained_run)
    assert merged == ws / "runs" / "t4x2" and read_json(merged / "config.json")["merged_from"] == ["t4x2-f0", "t4x2-f1"]
    np.testing.assert_allclose(art.oof, ref.oof)
    np.testing.assert_allclose(art.test, ref.test)
    assert art.metrics["oof"] == ref.metrics["oof"] and (merged / "kaggle_tiny-mlp_fold1.log").read_text() == "fold 1 on GPU 1\n"


@pytest.mark.slow  # two real training processes plus the kernel: about a minute on the loaded 2-core box
def test_t4x2_rehearsal_trains_two_folds_at_once_and_merges_like_per_fold(ws: Path, server: StandIn, trained_run: Path) -> None:
    """run.py unchanged, rehearsed on the CPU (local --gpus 2): two src.train processes, CUDA_VISIBLE_DEVICES 0 and 1,
    each leaving runs/<run_id>-f<k> as a per-fold kernel does; local (like pull) merges them into the one-kernel run."""
    from src.runs import load_run

    seed_code(ws, server)
    kern.push(ws / "configs" / "tiny.toml", push_args(epochs=1, run_id="t4x2"), ws)
    merged = kp.local_run("tiny-mlp", ws, gpus=2)
    report = read_json(ws / "cache" / "kaggle" / "local" / "tiny-mlp" / "working" / "kernel_report.json")
    assert [(p["run_id"], p["device"], p["status"]) for p in report["parts"]] == [("t4x2-f0", "0", "done"), ("t4x2-f1", "1", "done")]
    assert merged == ws / "runs" / "t4x2" and read_json(merged / "config.json")["merged_from"] == ["t4x2-f0", "t4x2-f1"]
    art, ref = load_run(merged), load_run(trained_run)
    assert art.metrics["folds_done"] == [0, 1]
    np.testing.assert_allclose(art.oof, ref.oof, atol=1e-5)
    np.testing.assert_allclose(art.test, ref.test, atol=1e-5)
    assert (merged / "kaggle_tiny-mlp_fold1.log").is_file()
