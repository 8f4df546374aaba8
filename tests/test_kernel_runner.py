"""src.kernel_runner, the program every generated kernel runs, step by step against a temporary /kaggle tree.

``WS_KAGGLE_ROOT`` points the runner at ``tmp/kaggle`` (``input/`` as Kaggle mounts sources,
``working/`` for outputs). The end-to-end run of a generated run.py is in test_kaggle.py.
"""
from __future__ import annotations

import ast
import io
import json
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
    return r


def make_spec(**kw) -> dict:
    spec = {"kernel": "me/tiny-mlp", "run_id": "r1", "code_sha": "abc123", "code_dataset": "me/audio-workspace-code",
            "data_source": {"kind": "competition", "ref": "tiny", "subdir": ""}, "config": "configs/tiny.toml",
            "module": "src.train", "args": ["--model", "mlp"], "device": "cuda", "accelerator": "NvidiaTeslaT4",
            "gpu_hint": "T4", "internet": False, "modules": ["json"], "weights_dataset": "", "folds": None, "keep_cache": False}
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


@pytest.mark.parametrize("mount", ["audio-workspace-code", "datasets/me/audio-workspace-code"])
@pytest.mark.parametrize("zipped", [True, False])
def test_find_code_in_every_mount_layout(root: Path, mount: str, zipped: bool) -> None:
    code_dataset(root / "input" / mount, zipped=zipped)
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


def test_main_reports_a_failed_check(root: Path) -> None:
    assert kr.main(make_spec()) == 1
    report = json.loads((root / "working" / "kernel_report.json").read_text())
    assert report["status"] == "failed" and "not attached" in report["error"] and report["run_id"] == "r1"
    assert kr.main({}) == 1  # the template itself refuses to run


def test_copy_folds_and_train_argv(root: Path, tmp_path: Path) -> None:
    (tmp_path / "code" / "folds").mkdir(parents=True)
    (tmp_path / "code" / "folds" / "tiny_k2.csv").write_text("id,fold\n")
    kr.copy_folds(tmp_path / "code")
    assert (root / "working" / "folds" / "tiny_k2.csv").read_text() == "id,fold\n"
    argv = kr.train_argv(make_spec(args=["--model", "mlp", "--run-id", "r1"]), Path("c.toml"), "cpu")
    assert argv == ["--config", "c.toml", "--workdir", str(root.resolve() / "working"), "--device", "cpu",
                    "--model", "mlp", "--run-id", "r1"]
