"""src.kernel_runner, the program every generated kernel runs, step by step against a temporary /kaggle tree.

``WS_KAGGLE_ROOT`` points the runner at ``tmp/kaggle`` (``input/`` as Kaggle mounts sources,
``working/`` for outputs). The end-to-end run of a generated run.py is in test_kaggle.py; the
two-GPU fold scheduling is tested here with a stand-in ``src.train`` (no torch) on two fake devices.
"""
from __future__ import annotations

import ast
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from src import kernel_runner as kr


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = tmp_path / "kaggle"
    (r / "input").mkdir(parents=True)
    monkeypatch.setenv("WS_KAGGLE_ROOT", str(r))
    monkeypatch.delenv("WS_LOCAL_DEVICES", raising=False)
    return r


def make_spec(**kw) -> dict:
    spec = {"kernel": "me/tiny-mlp", "run_id": "r1", "code_sha": "abc123", "code_dataset": "me/audio-workspace-code",
            "data_source": {"kind": "competition", "ref": "tiny", "subdir": ""}, "config": "configs/tiny.toml",
            "module": "src.train", "args": ["--model", "mlp"], "device": "cuda", "accelerator": "NvidiaTeslaT4",
            "gpu_hint": "T4", "internet": False, "modules": ["json"], "weights": [], "folds": None, "fold_plan": None,
            "keep_cache": False}
    return {**spec, **kw}


def code_dataset(at: Path, sha: str = "abc123", zipped: bool = True) -> Path:
    """A code dataset as Kaggle mounts it: manifest.json plus workspace.zip (or the archive already unpacked)."""
    at.mkdir(parents=True)
    (at / "manifest.json").write_text(json.dumps({"code_sha": sha}))
    files = {"src/train.py": "print('train')\n", "configs/tiny.toml": "[competition]\nname = 'tiny'\n[data]\nroot = 'data'\n"}
    if zipped:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in files.items():
                zf.writestr(name, text)
        (at / "workspace.zip").write_bytes(buf.getvalue())
    else:
        for name, text in files.items():
            (at / name).parent.mkdir(parents=True, exist_ok=True)
            (at / name).write_text(text)
    return at


def test_module_level_imports_are_standard_library_only() -> None:
    tree = ast.parse(Path(kr.__file__).read_text())
    names = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert names - {"__future__"} <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)
    assert Path(kr.__file__).read_text().splitlines().count("SPEC: dict = {}") == 1


@pytest.mark.parametrize("mount", ["audio-workspace-code", "datasets/me/audio-workspace-code",
                                   "datasets/me/audio-workspace-code/workspace-unzipped-by-kaggle"])
@pytest.mark.parametrize("zipped", [True, False])
def test_find_code_in_every_mount_layout(root: Path, mount: str, zipped: bool) -> None:
    code_dataset(root / "input" / mount, zipped=zipped)
    if mount.endswith("-unzipped-by-kaggle"):  # manifest.json at the top, workspace.zip arrived as the folder workspace/
        (root / "input" / mount / "manifest.json").rename(root / "input" / Path(mount).parent / "manifest.json")
    code = kr.find_code(make_spec())
    assert (code / "src" / "train.py").read_text() == "print('train')\n"


def test_find_code_refuses_other_code_or_no_dataset(root: Path) -> None:
    with pytest.raises(kr.KernelFailure, match="is not attached"):
        kr.find_code(make_spec())
    code_dataset(root / "input" / "datasets" / "me" / "audio-workspace-code", sha="old")
    with pytest.raises(kr.KernelFailure, match="holds code old, this kernel was generated for abc123"):
        kr.find_code(make_spec())


@pytest.mark.parametrize("mount,source", [
    ("tiny", {"kind": "competition", "ref": "tiny", "subdir": ""}),
    ("competitions/tiny", {"kind": "competition", "ref": "tiny", "subdir": ""}),
    ("competitions/tiny", {"kind": "competition", "ref": "tiny", "subdir": "audio"}),
    ("datasets/owner/gtzan-subset", {"kind": "dataset", "ref": "owner/gtzan-subset", "subdir": "audio"}),
    ("gtzan-subset", {"kind": "dataset", "ref": "owner/gtzan-subset", "subdir": ""}),
])
def test_find_data_in_every_mount_layout(root: Path, mount: str, source: dict) -> None:
    want = root / "input" / mount / source["subdir"]
    want.mkdir(parents=True)
    assert kr.find_data(make_spec(data_source=source)) == want


@pytest.mark.parametrize("mount,kind,ref", [
    ("models/google/yamnet/tensorflow2/yamnet/1", "model", "google/yamnet/TensorFlow2/yamnet/1"),  # framework lower-cased
    ("yamnet/TensorFlow2/yamnet/1", "model", "google/yamnet/TensorFlow2/yamnet/1"),  # the old flat layout
    ("notebooks/me/tiny-weights", "notebook", "me/tiny-weights"),
    ("tiny-weights", "notebook", "me/tiny-weights"),
])
def test_models_and_notebooks_are_found_in_both_layouts(root: Path, mount: str, kind: str, ref: str) -> None:
    (root / "input" / mount).mkdir(parents=True)
    assert kr.mounts(ref, kind) == [root / "input" / mount]
    assert kr.source_kind(ref) == ("model" if kind == "model" else "dataset")


def test_weights_sources_point_the_caches_at_the_mount(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(weights=[{"kind": "model", "ref": "google/yamnet/TensorFlow2/yamnet/1"}])
    for k in ("PRETRAINED_DIR", "TORCH_HOME", "HF_HUB_OFFLINE", "MUSICNN_WEIGHTS_DIR"):
        monkeypatch.delenv(k, raising=False)
    kr.attach_weights(spec)  # local run: not staged, reported, not an error
    assert "PRETRAINED_DIR" not in os.environ
    monkeypatch.delenv("WS_KAGGLE_ROOT")
    monkeypatch.setattr(kr, "input_dir", lambda: root / "input")
    with pytest.raises(kr.KernelFailure, match=r"weights model google/yamnet/TensorFlow2/yamnet/1 is not under"):
        kr.attach_weights(spec)  # on Kaggle a source pushed but not mounted is an error
    (root / "input" / "models" / "google" / "yamnet" / "tensorflow2" / "yamnet" / "1").mkdir(parents=True)
    kr.attach_weights(spec)
    assert os.environ["PRETRAINED_DIR"].endswith("models/google/yamnet/tensorflow2/yamnet/1")


def test_find_data_names_what_is_there(root: Path) -> None:
    (root / "input" / "datasets" / "me" / "other").mkdir(parents=True)
    with pytest.raises(kr.KernelFailure, match=r"competition tiny .* input has \['datasets', 'datasets/me', 'datasets/me/other'\]"):
        kr.find_data(make_spec())


def test_write_config_points_only_data_root_at_the_mount(root: Path, tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "configs").mkdir(parents=True)
    text = "[competition]\nname = 'tiny'\n[extra]\nroot = 'keep me'\n[data]\nmanifest = 'train.csv'\nroot = '../data/tiny'\n"
    (code / "configs" / "tiny.toml").write_text(text)
    path = kr.write_config(make_spec(), code, Path("/kaggle/input/tiny"))
    assert path == root / "working" / "configs" / "tiny.toml"
    assert path.read_text() == text.replace("root = '../data/tiny'", 'root = "/kaggle/input/tiny"  # set by run.py')
    (code / "configs" / "tiny.toml").write_text("[data]\nmanifest = 'train.csv'\n")
    with pytest.raises(kr.KernelFailure, match="no \\[data\\] root"):
        kr.write_config(make_spec(), code, Path("/x"))


def test_arch_supported_knows_p100_from_t4() -> None:
    cu128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert not kr.arch_supported((6, 0), cu128)  # P100
    assert kr.arch_supported((7, 5), cu128)  # T4
    assert kr.arch_supported((8, 9), cu128)  # L4 runs the sm_86 cubin
    assert kr.arch_supported((12, 1), ["sm_90", "compute_90"])  # PTX JIT
    assert not kr.arch_supported((6, 1), ["sm_70", "sm_75"])


def test_check_gpu_without_a_gpu(root: Path) -> None:
    torch = pytest.importorskip("torch")
    report = kr.Report(make_spec())
    assert kr.check_gpu(make_spec(device="cpu"), report, local=False) == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the no-GPU branches cannot be exercised here")
    assert kr.check_gpu(make_spec(), report, local=True) == "cpu"  # a local run falls back to the CPU
    with pytest.raises(kr.KernelFailure, match="asked for NvidiaTeslaT4 but no GPU is visible"):
        kr.check_gpu(make_spec(), report, local=False)  # on Kaggle it is an error, not a silent CPU run
    assert json.loads(report.path.read_text())["gpu"]["cuda_available"] is False


def test_check_modules_without_internet_names_them() -> None:
    kr.check_modules(make_spec(modules=["json"]), Path("."))
    with pytest.raises(kr.KernelFailure, match=r"modules \['no_such_module_xyz'\] .* --internet on"):
        kr.check_modules(make_spec(modules=["json", "no_such_module_xyz"]), Path("."))


def test_main_reports_a_failed_check(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_DOCKER_IMAGE", "gcr.io/kaggle-gpu-images/python@sha256:abc")
    assert kr.main(make_spec()) == 1
    report = json.loads((root / "working" / "kernel_report.json").read_text())
    assert report["status"] == "failed" and "not attached" in report["error"] and report["run_id"] == "r1"
    assert report["docker_image"] == "gcr.io/kaggle-gpu-images/python@sha256:abc"  # recorded so later pushes can pin it
    assert kr.main({}) == 1  # the template itself refuses to run


def test_copy_folds_and_train_argv(root: Path, tmp_path: Path) -> None:
    (tmp_path / "code" / "folds").mkdir(parents=True)
    (tmp_path / "code" / "folds" / "tiny_k2.csv").write_text("id,fold\n")
    kr.copy_folds(tmp_path / "code")
    assert (root / "working" / "folds" / "tiny_k2.csv").read_text() == "id,fold\n"
    argv = kr.train_argv(make_spec(args=["--model", "mlp", "--run-id", "r1"]), Path("c.toml"), "cpu")
    assert argv == ["--config", "c.toml", "--workdir", str(root.resolve() / "working"), "--device", "cpu",
                    "--model", "mlp", "--run-id", "r1"]


# ----------------------------------------------------------------------------- two GPUs, one fold per process

FAKE_TRAIN = """
import json, os, sys, time
from pathlib import Path
a = sys.argv[1:]
wd, rid, k = Path(a[a.index("--workdir") + 1]), a[a.index("--run-id") + 1], a[a.index("--folds") + 1]
(wd / "runs" / rid).mkdir(parents=True, exist_ok=True)
(wd / "runs" / rid / "fold_status.json").write_text(json.dumps({k: {"status": "running"}}))
t0 = time.time()
time.sleep(0.8)
with open(wd / "calls.jsonl", "a") as fh:
    fh.write(json.dumps({"fold": int(k), "gpu": os.environ["CUDA_VISIBLE_DEVICES"], "start": t0, "end": time.time(), "argv": a}) + "\\n")
print(f"fold {k} trained")
if k == "2":
    print("RuntimeError: CUDA out of memory")
    sys.exit(1)
"""


def test_fold_argv_gives_each_process_its_own_run_and_fold() -> None:
    argv = ["--config", "c.toml", "--workdir", "/w", "--device", "cuda", "--model", "mlp", "--param", "lr=-1",
            "--run-id", "r1", "--folds", "0", "1", "2", "--epochs", "3"]
    assert kr.fold_argv(argv, "r1", 2) == ["--config", "c.toml", "--workdir", "/w", "--device", "cuda", "--model", "mlp",
                                           "--param", "lr=-1", "--epochs", "3", "--run-id", "r1-f2", "--folds", "2"]


def test_local_rehearsal_names_its_fake_devices(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert kr.visible_devices("cpu") == []
    monkeypatch.setenv("WS_LOCAL_DEVICES", "0,1")
    assert kr.visible_devices("cpu") == ["0", "1"]


def test_two_gpus_train_two_folds_at_once_and_a_failure_is_recorded(root: Path, tmp_path: Path) -> None:
    """Folds 0 and 1 start together on GPUs 0 and 1 (separate processes), fold 2 takes the first GPU that frees up;
    fold 2's failure is recorded in the report (parts, error, its log) and the run reports failure."""
    code = tmp_path / "code"
    (code / "src").mkdir(parents=True)
    (code / "src" / "__init__.py").write_text("")
    (code / "src" / "train.py").write_text(FAKE_TRAIN)
    working = root / "working"
    spec = make_spec(fold_plan=[0, 1, 2])
    report = kr.Report(spec)
    argv = kr.train_argv(make_spec(args=["--model", "mlp", "--run-id", "r1"]), Path("c.toml"), "cuda")
    assert kr.run_parallel(spec, argv, code, ["0", "1"], report, poll=0.05) == 1
    calls = {c["fold"]: c for c in map(json.loads, (working / "calls.jsonl").read_text().splitlines())}
    assert (calls[0]["gpu"], calls[1]["gpu"]) == ("0", "1")
    assert calls[1]["start"] < calls[0]["end"] and calls[0]["start"] < calls[1]["end"]  # side by side
    assert calls[2]["start"] >= min(calls[0]["end"], calls[1]["end"]) - 0.05  # waited for a free GPU: never three at once
    assert calls[2]["argv"][-4:] == ["--run-id", "r1-f2", "--folds", "2"]
    parts = json.loads((working / "kernel_report.json").read_text())["parts"]
    assert [(p["run_id"], p["status"]) for p in parts] == [("r1-f0", "done"), ("r1-f1", "done"), ("r1-f2", "failed")]
    assert "fold 2 failed on GPU" in report.data["error"] and "CUDA out of memory" in report.data["error"]
    assert "CUDA out of memory" in (working / "logs" / "fold2.log").read_text()
