"""Train on Kaggle's GPUs from a laptop: ``python -m src.kaggle <verb>``.

Thin wrappers over the official ``kaggle`` CLI (run as ``python -m kaggle`` from this
environment), with the checks the CLI leaves out:

* ``download``  competition data into ``data/<slug>/``, unzipped and checked against the config
* ``code``      package ``src/``, ``configs/``, ``folds/`` as a Kaggle dataset (create, then new versions)
* ``push``      generate ``kernels/<slug>/`` (kernel-metadata.json + self-contained ``run.py``),
                pre-flight it, push it; ``--per-fold`` makes one kernel (one GPU) per fold
* ``status``    poll the pushed kernels (``--wait``: back-off until all finish)
* ``pull``      kernel outputs -> ``runs/<run_id>/``, checked against the artifact contract and the
                local fold file; per-fold kernels are merged into one run
* ``local``     run a generated ``run.py`` unchanged on this machine (fake ``/kaggle`` tree)
* ``submit``    validate against ``sample_submission.csv``, then ``kaggle competitions submit``
* ``submissions`` list leaderboard scores and write them into ``submissions/index.csv``

What was pushed is recorded in ``kernels/index.json`` (code dataset version and hash,
kernels, runs). Every CLI failure is reported with the server's own message; an
unreachable API is detected before anything is sent, and nothing local is changed then.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .artifacts import atomic_path, file_sha256, read_json, setup_logging, write_bytes, write_json

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
# machine_shape / --accelerator values accepted by kernels push (kaggle-cli docs); "none" = CPU
ACCELERATORS = {"NvidiaTeslaT4": "gpu", "NvidiaL4": "gpu", "NvidiaTeslaP100": "gpu", "TpuV5E8": "tpu", "Tpu1VmV38": "tpu", "none": "cpu"}
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"
TERMINAL = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED", "CANCEL_REQUESTED"}
CODE_SLUG = "audio-workspace-code"
PER_FOLD_FILES = ("fold{k}.pt", "fold{k}_preds.npz", "fold{k}_metrics.json")
NETWORK_SIGNS = ("Max retries exceeded", "Failed to resolve", "Connection refused", "ProxyError", "NameResolutionError",
                 "ConnectTimeout", "Network is unreachable", "Temporary failure in name resolution", "RemoteDisconnected")


class KaggleError(RuntimeError):
    """A Kaggle step failed; the message says what the server or the check said and what to do."""


# ----------------------------------------------------------------------------- the CLI


def api_endpoint() -> str:
    """The endpoint the kaggle CLI will call (it honours only KAGGLE_API_ENVIRONMENT=LOCALHOST besides PROD)."""
    from kagglesdk.kaggle_env import KaggleEnv, get_endpoint

    local = os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST"
    return get_endpoint(KaggleEnv.LOCAL if local else KaggleEnv.PROD)


def check_reachable(timeout: float = 8.0) -> None:
    """Fail fast (before the CLI's long retry loops) when the Kaggle API cannot be reached at all."""
    import requests

    url = api_endpoint()
    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.exceptions.RequestException as exc:
        raise KaggleError(f"cannot reach the Kaggle API at {url} ({type(exc).__name__}: {_short(str(exc))}). "
                          "Check the network or proxy settings and run the command again; nothing was changed locally.") from None


def _short(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + " ..."


def kaggle_cli(args: list[str], timeout: float = 900, probe: bool = True) -> str:
    """Run ``kaggle <args>`` with this interpreter; return stdout+stderr or raise KaggleError with the reason."""
    if probe:
        check_reachable()
    cmd = [sys.executable, "-m", "kaggle", *args]
    log.info("$ kaggle %s", " ".join(args))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        raise KaggleError(f"kaggle {' '.join(args[:2])} did not finish within {timeout:.0f}s") from None
    out = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        raise KaggleError(explain_failure(args, out))
    return out


def explain_failure(args: list[str], out: str) -> str:
    """Turn the CLI's output into one message: network, credentials, or the server's own words."""
    what = f"kaggle {' '.join(a for a in args[:2])}"
    if any(s in out for s in NETWORK_SIGNS):
        return (f"{what}: cannot reach the Kaggle API at {api_endpoint()}: {_short(out.strip().splitlines()[-1])}. "
                "Check the network and run the command again; nothing was changed locally.")
    if re.search(r"\b401\b|Unauthorized|Authentication required", out):
        return (f"{what}: Kaggle rejected the credentials. Put your API token in ~/.kaggle/kaggle.json "
                "(or set KAGGLE_USERNAME and KAGGLE_KEY) and try again.")
    lines = [ln for ln in out.strip().splitlines() if ln.strip() and not ln.startswith(("Warning:", "DEBUG"))]
    return f"{what} failed; the server said: {_short(' | '.join(lines[-3:]) or 'nothing (exit status 1)')}"


def kaggle_user() -> str:
    """The Kaggle user name from KAGGLE_USERNAME or kaggle.json (the key is never read into logs)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR", ""), os.path.expanduser("~/.kaggle"), os.path.expanduser("~/.config/kaggle")]
    for d in filter(None, dirs):
        p = Path(d) / "kaggle.json"
        if p.is_file():
            try:
                return json.loads(p.read_text())["username"]
            except (ValueError, KeyError):
                raise KaggleError(f"{p} has no 'username': download a fresh API token from your Kaggle account settings") from None
    raise KaggleError("no Kaggle credentials: put kaggle.json (Account -> API -> Create New Token) in ~/.kaggle/ "
                      "or set KAGGLE_USERNAME and KAGGLE_KEY")


# ----------------------------------------------------------------------------- workspace state


def state_path(workdir: Path) -> Path:
    return Path(workdir) / "kernels" / "index.json"


def load_state(workdir: Path) -> dict:
    p = state_path(workdir)
    st = read_json(p) if p.is_file() else {}
    for key in ("kernels", "runs"):
        st.setdefault(key, {})
    return st


def save_state(workdir: Path, st: dict) -> None:
    write_json(state_path(workdir), st)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def slugify(text: str, min_len: int = 5) -> str:
    """Kaggle-style slug (lowercase, hyphens); padded so the CLI's 5-character minimum holds."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s if len(s) >= min_len else f"{s}-kernel"


def _raw_slug(config: Path) -> str:
    """[competition] slug read without validating data paths (which do not exist before download)."""
    try:
        raw = tomllib.loads(Path(config).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KaggleError(f"cannot read {config}: {exc}") from None
    return str(raw.get("competition", {}).get("slug", ""))


# ----------------------------------------------------------------------------- download


def safe_extract(zip_path: Path, dest: Path) -> list[str]:
    """Unzip refusing members that would land outside ``dest`` (zip-slip)."""
    dest = dest.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for m in zf.namelist():
            if not (dest / m).resolve().is_relative_to(dest):
                raise KaggleError(f"{zip_path}: member {m!r} points outside {dest}; refusing to unzip")
        zf.extractall(dest)
        return zf.namelist()


def download(config: Path, workdir: Path, force: bool = False) -> Path:
    """``kaggle competitions download`` into data/<slug>/, unzip, then check the config against the files."""
    slug = _raw_slug(config)
    if not slug:
        raise KaggleError(f"{config}: [competition] slug is empty; set it to the competition's URL name (kaggle.com/competitions/<slug>)")
    dest = Path(workdir) / "data" / slug
    dest.mkdir(parents=True, exist_ok=True)
    kaggle_cli(["competitions", "download", "-c", slug, "-p", str(dest), *(["--force"] if force else []), "-q"])
    zips = sorted(dest.glob("*.zip"))
    if not zips:
        raise KaggleError(f"kaggle downloaded nothing into {dest}: accept the competition rules on its Kaggle page first")
    for z in zips:
        names = safe_extract(z, dest)
        log.info("unzipped %s (%d files) into %s", z.name, len(names), dest)
        z.unlink()
    check_downloaded(config, dest)
    return dest


def check_downloaded(config: Path, dest: Path) -> None:
    """The downloaded files must be where the config says: name the first mismatch and the fix."""
    from .config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise KaggleError(f"data downloaded to {dest}, but the config does not match it: {exc}. "
                          f"Point [data] root (relative to {config}) into {dest} and fix the paths; files there: "
                          f"{sorted(p.name for p in dest.iterdir())[:12]}") from None
    if not cfg.data.sample_submission:
        raise KaggleError(f"{config}: [data] sample_submission is not set; submissions are validated against it")
    if not Path(cfg.data.root).resolve().is_relative_to(dest.resolve()):
        log.warning("%s: [data] root %s is outside the download folder %s", config, cfg.data.root, dest)


# ----------------------------------------------------------------------------- code dataset


def code_files(workdir: Path) -> dict[str, Path]:
    """What the kernels need from this machine: the code, the configs and the shared fold files."""
    files: dict[str, Path] = {}
    for p in sorted((REPO / "src").rglob("*.py")):
        files[str(p.relative_to(REPO))] = p
    for p in sorted((REPO / "configs").glob("*.toml")):
        files[str(p.relative_to(REPO))] = p
    for p in sorted((Path(workdir) / "configs").glob("*.toml")):  # a workdir's own configs win over the repo's
        files[f"configs/{p.name}"] = p
    if (REPO / "requirements.txt").is_file():
        files["requirements.txt"] = REPO / "requirements.txt"
    for p in sorted((Path(workdir) / "folds").glob("*")):
        if p.is_file() and p.suffix in (".csv", ".json"):
            files[f"folds/{p.name}"] = p
    return files


def code_hash(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for rel, p in sorted(files.items()):
        h.update(rel.encode() + b"\0" + bytes.fromhex(file_sha256(p)))
    return h.hexdigest()[:16]


def stage_code(workdir: Path, slug: str, user: str) -> tuple[Path, str]:
    """Write cache/kaggle/code/<slug>/ (workspace.zip, manifest.json, dataset-metadata.json); return (dir, hash)."""
    files = code_files(workdir)
    sha = code_hash(files)
    out = Path(workdir) / "cache" / "kaggle" / "code" / slug
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, p in sorted(files.items()):
            info = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))  # fixed time: same code, same bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    write_bytes(out / "workspace.zip", buf.getvalue())
    write_json(out / "manifest.json", {"code_sha": sha, "files": sorted(files), "created": _now()})
    write_json(out / "dataset-metadata.json", {"title": "Audio workspace code", "id": f"{user}/{slug}",
                                               "licenses": [{"name": "CC0-1.0"}],
                                               "subtitle": "src, configs and fold files of the audio workspace"})
    return out, sha


def push_code(workdir: Path, slug: str = CODE_SLUG, message: str = "", force: bool = False) -> dict:
    """Create the code dataset the first time, add a version afterwards; record ref, hash and version."""
    user = kaggle_user()
    ref = f"{user}/{slug}"
    folder, sha = stage_code(workdir, slug, user)
    st = load_state(workdir)
    prev = st.get("code", {})
    if prev.get("ref") == ref and prev.get("code_sha") == sha and not force:
        log.info("code dataset %s already holds this code (hash %s, version %s)", ref, sha, prev.get("version"))
        return prev
    notes = message or f"workspace code {sha}"
    if prev.get("ref") == ref:
        out = kaggle_cli(["datasets", "version", "-p", str(folder), "-m", notes, "-q"])
    else:
        out = kaggle_cli(["datasets", "create", "-p", str(folder), "-q"])
        if "already in use" in out or "already exists" in out:
            out = kaggle_cli(["datasets", "version", "-p", str(folder), "-m", notes, "-q"])
    if "creation error" in out:
        raise KaggleError(f"code dataset {ref} not uploaded; the server said: {_short(out.split('creation error:', 1)[-1])}")
    version = dataset_version(ref)
    st["code"] = {"ref": ref, "code_sha": sha, "version": version, "pushed": _now(), "notes": notes}
    save_state(workdir, st)
    return st["code"]


def dataset_version(ref: str) -> int | None:
    """Current version number of a dataset (None when the server does not say)."""
    try:
        out = kaggle_cli(["datasets", "status", ref, "--format", "json"], probe=False)
        return json.loads(out.strip().splitlines()[-1]).get("current_version_number")
    except (KaggleError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------- the kernel script

RUN_PY = r'''"""Kaggle kernel generated by ``python -m src.kaggle push``: re-generate it rather than editing it.

On Kaggle it reads /kaggle/input and writes /kaggle/working. Locally, WS_KAGGLE_ROOT=<dir> maps
them to <dir>/input and <dir>/working (``python -m src.kaggle local <slug>`` builds that tree).
Steps: find the code dataset (and check it is the code this kernel was made for), check the GPU
against the installed torch, find the data, run the train/tune command, leave the run under
<working>/runs/<run_id>/ and a kernel_report.json beside it.
"""
import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

SPEC = json.loads(r"""__SPEC__""")
ROOT = Path(os.environ.get("WS_KAGGLE_ROOT", "/kaggle")).resolve()
INPUT, WORKING = ROOT / "input", ROOT / "working"
LOCAL = "WS_KAGGLE_ROOT" in os.environ
REPORT = {"kernel": SPEC["kernel"], "run_id": SPEC["run_id"], "code_sha": SPEC["code_sha"], "local": LOCAL,
          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def report(**kw):
    REPORT.update(kw)
    WORKING.mkdir(parents=True, exist_ok=True)
    (WORKING / "kernel_report.json").write_text(json.dumps(REPORT, indent=2))


def fail(msg):
    print("KERNEL FAILED: " + msg, file=sys.stderr, flush=True)
    report(status="failed", error=msg)
    sys.exit(1)


def mounts(ref):
    """Where Kaggle may have mounted a dataset or competition source."""
    slug = ref.split("/")[-1]
    cands = [INPUT / slug, INPUT / "datasets" / ref, INPUT / "competitions" / slug]
    return [c for c in cands if c.is_dir()]


def listing():
    return sorted(str(p.relative_to(INPUT)) for p in INPUT.glob("*/*"))[:30] if INPUT.is_dir() else []


def find_code():
    bases = mounts(SPEC["code_dataset"])
    if not bases:
        fail(f"code dataset {SPEC['code_dataset']} is not attached (input has {listing()}): push the kernel again "
             "with python -m src.kaggle push (it adds the dataset to dataset_sources)")
    base = bases[0]
    manifests = sorted(base.rglob("manifest.json"))
    got = json.loads(manifests[0].read_text()).get("code_sha") if manifests else None
    if got != SPEC["code_sha"]:
        fail(f"code dataset {SPEC['code_dataset']} holds code {got}, this kernel was generated for {SPEC['code_sha']}: "
             "the new dataset version may still be processing (wait a minute and push again) or it was never uploaded "
             "(python -m src.kaggle code)")
    trains = [p for p in base.rglob("train.py") if p.parent.name == "src"]
    if trains:
        return trains[0].parent.parent
    archives = sorted(base.rglob("workspace.zip"))
    if not archives:
        fail(f"code dataset at {base} has neither src/ nor workspace.zip")
    dest = Path(tempfile.mkdtemp(prefix="ws_code_"))
    with zipfile.ZipFile(archives[0]) as zf:
        zf.extractall(dest)
    return dest


def arch_supported(cap, arch_list):
    """A cubin for sm_XY runs on X.Z >= X.Y of the same major; PTX compute_XY JIT-compiles for anything newer."""
    for a in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", a)
        if not m:
            continue
        ver = (int(m.group(2)), int(m.group(3)))
        if m.group(1) == "sm" and ver[0] == cap[0] and ver[1] <= cap[1]:
            return True
        if m.group(1) == "compute" and ver <= tuple(cap):
            return True
    return False


def check_gpu():
    """Fail fast with the reason when the GPU is missing, too old for this torch, or broken."""
    import torch

    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if SPEC["device"] != "cuda":
        report(gpu=info)
        return "cpu"
    if not torch.cuda.is_available():
        if LOCAL:
            print("no GPU here: the local run uses the CPU", flush=True)
            report(gpu=info)
            return "cpu"
        fail(f"the kernel asked for {SPEC['accelerator']} but no GPU is visible (GPU quota used up, or the accelerator "
             "was not granted): check the kernel's session settings on Kaggle")
    name, cap, arch = torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0), torch.cuda.get_arch_list()
    info.update(name=name, capability=f"sm_{cap[0]}{cap[1]}", arch_list=arch)
    report(gpu=info)
    print(f"GPU: {name} (sm_{cap[0]}{cap[1]}); torch {torch.__version__} built for {arch}", flush=True)
    if not arch_supported(cap, arch):
        fail(f"GPU {name} (sm_{cap[0]}{cap[1]}) is not supported by torch {torch.__version__} (kernels for {arch}); "
             "push again with --accelerator NvidiaTeslaT4")
    hint = SPEC.get("gpu_hint")
    if hint and hint.lower() not in name.lower():
        print(f"WARNING: asked for {SPEC['accelerator']} but got {name}: Kaggle ignored the accelerator", flush=True)
        report(gpu_mismatch=f"asked {SPEC['accelerator']}, got {name}")
    try:
        torch.ones(8, device="cuda").mul(2).sum().item()
    except RuntimeError as exc:
        fail(f"CUDA smoke test failed on {name}: {exc}")
    return "cuda"


def check_modules(code_dir):
    """Modules the workspace imports; with internet on, missing ones are installed at requirements.txt's pins."""
    missing = [m for m in SPEC["modules"] if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if not SPEC["internet"]:
        fail(f"modules {missing} are not in the Kaggle image and internet is off: push with --internet on")
    req = code_dir / "requirements.txt"
    pins = {ln.split("==")[0].strip().lower(): ln.split("#")[0].strip() for ln in (req.read_text().splitlines() if req.is_file() else []) if "==" in ln}
    names = [{"sklearn": "scikit-learn"}.get(m, m) for m in missing]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *[pins.get(n, n) for n in names]], check=True)


def find_data():
    src = SPEC["data_source"]
    for base in mounts(src["ref"]):
        root = base / src["subdir"] if src["subdir"] else base
        if root.is_dir():
            return root
    fail(f"data source {src['kind']} {src['ref']} (subfolder {src['subdir']!r}) is not under {INPUT}: input has {listing()}")


def write_config(code_dir, data_root):
    """The workspace config with [data] root pointed at the mounted data (every other key unchanged)."""
    lines, section, done = [], "", False
    for line in (code_dir / SPEC["config"]).read_text().splitlines():
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
        if section == "data" and not done and re.match(r"\s*root\s*=", line):
            line, done = f"root = {json.dumps(str(data_root))}  # set by run.py", True
        lines.append(line)
    path = WORKING / SPEC["config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_module(module, argv, code_dir):
    """``python -m module argv`` in this process (torch is imported once); returns the exit status."""
    sys.argv = [module, *argv]
    os.chdir(code_dir)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - the traceback goes to the kernel log, the status to the report
        traceback.print_exc()
        return 1


def main():
    t0 = time.time()
    report(status="starting")
    code_dir = find_code()
    sys.path.insert(0, str(code_dir))
    check_modules(code_dir)
    device = check_gpu()
    cfg = write_config(code_dir, find_data())
    (WORKING / "folds").mkdir(parents=True, exist_ok=True)
    for f in (code_dir / "folds").glob("*"):
        shutil.copy2(f, WORKING / "folds" / f.name)
    weights = mounts(SPEC["weights_dataset"]) if SPEC.get("weights_dataset") else []
    if weights:
        os.environ.update(PRETRAINED_DIR=str(weights[0]), TORCH_HOME=str(weights[0]), HF_HUB_OFFLINE="1")  # src.pretrained reads PRETRAINED_DIR
    argv = ["--config", str(cfg), "--workdir", str(WORKING), "--device", device, *SPEC["args"]]
    print(f"$ python -m {SPEC['module']} " + " ".join(argv), flush=True)
    report(status="running", command=["python", "-m", SPEC["module"], *argv])
    rc = run_module(SPEC["module"], argv, code_dir)
    if not SPEC.get("keep_cache"):
        shutil.rmtree(WORKING / "cache", ignore_errors=True)  # features are rebuilt from the data; keep outputs small
    report(status="done" if rc == 0 else "failed", returncode=rc, seconds=round(time.time() - t0, 1),
           finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    sys.exit(rc)


if __name__ == "__main__":
    main()
'''


# ----------------------------------------------------------------------------- push

MODULES = ["numpy", "pandas", "scipy", "sklearn", "torch", "torchaudio", "soundfile", "librosa", "matplotlib", "timm"]


def data_source(cfg: Any, workdir: Path, data_dataset: str = "", data_subdir: str = "") -> dict:
    """Where the kernel finds the data: the competition (config slug, data under data/<slug>/) or a dataset."""
    if data_dataset:
        return {"kind": "dataset", "ref": data_dataset, "subdir": data_subdir}
    slug = cfg.competition.slug
    comp_dir = (Path(workdir) / "data" / slug).resolve() if slug else None
    root = Path(cfg.data.root).resolve()
    if comp_dir is not None and root.is_relative_to(comp_dir):
        rel = root.relative_to(comp_dir).as_posix()
        return {"kind": "competition", "ref": slug, "subdir": "" if rel == "." else rel}
    raise KaggleError(f"{cfg.path}: the kernel would have no data. Either set [competition] slug and keep the data under "
                      f"{Path(workdir) / 'data' / (slug or '<slug>')} (python -m src.kaggle download), or upload the data folder "
                      f"{root} as a dataset (kaggle datasets create) and pass --data-dataset owner/slug")


def _uses_pretrained(model: str, params: dict) -> bool:
    from .models import get_spec

    merged = {**get_spec(model).defaults, **params}
    return bool(merged.get("pretrained"))


def preflight(cfg: Any, a: SimpleNamespace, workdir: Path, st: dict) -> list[str]:
    """Everything that would make the kernel fail on Kaggle, found before pushing; each item names the fix."""
    from .folds import fold_path
    from .models import get_spec

    problems = []
    try:
        get_spec(a.model)
    except KeyError as exc:
        problems.append(str(exc.args[0]))
    fp = fold_path(cfg, workdir)
    if not fp.is_file():
        problems.append(f"fold file {fp} missing: run python -m src.folds --config {cfg.path} (kernels train on the shared folds)")
    elif a.folds:
        import pandas as pd

        have = set(pd.read_csv(fp, usecols=["fold"])["fold"])
        if set(a.folds) - have:
            problems.append(f"fold(s) {sorted(set(a.folds) - have)} not in {fp} (it has {sorted(have)})")
    if a.accelerator not in ACCELERATORS:
        problems.append(f"--accelerator {a.accelerator!r} unknown; choose one of {sorted(ACCELERATORS)}")
    elif a.accelerator == "NvidiaTeslaP100" and not a.allow_p100:
        problems.append("NvidiaTeslaP100 is sm_60: current PyTorch builds in Kaggle's image have no kernels for it and fail at the "
                        "first CUDA op; use --accelerator NvidiaTeslaT4 (or --allow-p100 with a Pascal-compatible torch)")
    if not a.internet and _safe(lambda: _uses_pretrained(a.model, a.params)) and not a.weights_dataset:
        problems.append(f"model {a.model} loads pretrained weights but --internet off: attach them with --weights-dataset owner/slug "
                        "(or --param pretrained=False, or --internet on)")
    for ref in filter(None, [a.data_dataset, a.weights_dataset]):
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", ref):
            problems.append(f"dataset {ref!r} is not owner/slug")
    if a.tune and not (REPO / "src" / "tune.py").is_file():
        problems.append("--tune needs src/tune.py")
    files = code_files(workdir)
    packaged = files.get(f"configs/{Path(cfg.path).name}")
    if packaged is None or packaged.read_bytes() != Path(cfg.path).read_bytes():
        problems.append(f"{cfg.path} is not the configs/{Path(cfg.path).name} that goes into the code dataset: keep configs in "
                        f"{Path(workdir) / 'configs'} (the kernel reads the packaged copy)")
    code = st.get("code", {})
    sha = code_hash(files)
    if not code:
        problems.append("no code dataset pushed yet: run python -m src.kaggle code")
    elif code.get("code_sha") != sha:
        problems.append(f"local code/configs/folds changed since code dataset {code['ref']} v{code.get('version')} was pushed "
                        f"(hash {code.get('code_sha')} there, {sha} here): run python -m src.kaggle code")
    return problems


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a broken model name is reported by its own check
        return False


def kernel_metadata(ref: str, title: str, a: SimpleNamespace, sources: list[str], competitions: list[str]) -> dict:
    kind = ACCELERATORS[a.accelerator]
    meta = {"id": ref, "title": title, "code_file": "run.py", "language": "python", "kernel_type": "script",
            "is_private": True, "enable_gpu": kind == "gpu", "enable_tpu": kind == "tpu", "enable_internet": bool(a.internet),
            "dataset_sources": sources, "competition_sources": competitions, "kernel_sources": [], "model_sources": []}
    if kind != "cpu":
        meta["machine_shape"] = a.accelerator  # set explicitly: with enable_gpu alone Kaggle picks its default GPU
    return meta


def validate_metadata(folder: Path) -> dict:
    """The checks ``kaggle kernels push`` makes (and a few it does not), with the field to fix."""
    meta = read_json(folder / "kernel-metadata.json")
    where = folder / "kernel-metadata.json"
    owner, _, slug = meta.get("id", "").partition("/")
    if not owner or not slug or len(slug) < 5:
        raise KaggleError(f"{where}: id must be owner/slug with a slug of at least 5 characters, got {meta.get('id')!r}")
    if len(meta.get("title", "")) < 5 or slugify(meta["title"]) != slug:
        raise KaggleError(f"{where}: title {meta.get('title')!r} must be 5+ characters and slugify to the id's slug {slug!r}")
    if not (folder / meta.get("code_file", "")).is_file():
        raise KaggleError(f"{where}: code_file {meta.get('code_file')!r} not found in {folder}")
    if meta.get("language") != "python" or meta.get("kernel_type") not in ("script", "notebook"):
        raise KaggleError(f"{where}: language must be 'python' and kernel_type 'script' or 'notebook'")
    if meta.get("enable_gpu") and meta.get("machine_shape") not in ACCELERATORS:
        raise KaggleError(f"{where}: enable_gpu without a known machine_shape; Kaggle would pick its default GPU")
    for ref in meta.get("dataset_sources", []):
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", ref):
            raise KaggleError(f"{where}: dataset source {ref!r} is not owner/slug")
    return meta


def build_spec(cfg: Any, a: SimpleNamespace, st: dict, kernel: str, run_id: str, folds: list[int] | None, src: dict) -> dict:
    """What run.py needs, frozen at push time (the kernel cannot read this machine)."""
    args = ["--model", a.model]
    if a.tune:
        module, args = "src.tune", args + ["--study", run_id, "--trials", str(a.trials)]
    else:
        module, args = "src.train", args + ["--run-id", run_id]
    if folds:
        args += ["--folds", *map(str, folds)]
    if a.epochs:
        args += ["--epochs", str(a.epochs)]
    for p in a.param_list:
        args += ["--fix" if a.tune else "--param", p]
    config_rel = f"configs/{Path(cfg.path).name}"
    kind = ACCELERATORS[a.accelerator]
    return {"kernel": kernel, "run_id": run_id, "module": module, "args": args, "config": config_rel,
            "code_dataset": st["code"]["ref"], "code_sha": st["code"]["code_sha"], "data_source": src,
            "weights_dataset": a.weights_dataset or "", "accelerator": a.accelerator, "device": "cuda" if kind == "gpu" else "cpu",
            "gpu_hint": {"NvidiaTeslaT4": "T4", "NvidiaL4": "L4", "NvidiaTeslaP100": "P100"}.get(a.accelerator, ""),
            "internet": bool(a.internet), "modules": MODULES + (["optuna"] if a.tune else []), "folds": folds,
            "keep_cache": False}


def write_kernel(folder: Path, meta: dict, spec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "kernel-metadata.json", meta)
    write_bytes(folder / "run.py", RUN_PY.replace("__SPEC__", json.dumps(spec, indent=1)).encode())


def parse_push(out: str, ref: str) -> int | None:
    """Version number from the CLI's answer; refuse sources Kaggle did not accept (the kernel would run without them)."""
    if "Kernel push error" in out:
        raise KaggleError(f"push of {ref} refused: {_short(out.split('Kernel push error:', 1)[1])}")
    bad = [ln for ln in out.splitlines() if "not valid" in ln and "sources" in ln]
    if bad:
        raise KaggleError(f"push of {ref}: Kaggle did not accept some data sources, so the kernel would run without them: "
                          f"{' | '.join(bad)}. Check the slugs (and that the code dataset finished processing), then push again")
    m = re.search(r"Kernel version (\d+) successfully pushed", out)
    return int(m.group(1)) if m else None


def push(config: Path, a: SimpleNamespace, workdir: Path) -> list[dict]:
    """Generate kernels/<slug>/ for the request (one per fold with --per-fold), pre-flight and push them."""
    from .config import ConfigError, load_config
    from .train import parse_params

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise KaggleError(str(exc)) from None
    a.params = parse_params(a.param_list)
    st = load_state(workdir)
    user = _user_for(a.no_push)
    if a.no_push and not st.get("code"):  # generate only: the kernel points at the code as it is now
        st["code"] = {"ref": f"{user}/{CODE_SLUG}", "code_sha": code_hash(code_files(workdir)), "version": None}
    src = data_source(cfg, workdir, a.data_dataset, a.data_subdir)
    problems = preflight(cfg, a, workdir, st)
    if problems:
        raise KaggleError("pre-flight failed, nothing pushed:\n  - " + "\n  - ".join(problems))
    run_id = a.run_id or f"{cfg.name}-{a.model}{'-tune' if a.tune else ''}-kaggle-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    groups = [[k] for k in (a.folds or _all_folds(cfg, workdir))] if a.per_fold else [a.folds]
    sources = [st["code"]["ref"]] + [r for r in (a.data_dataset, a.weights_dataset) if r]
    comps = [src["ref"]] if src["kind"] == "competition" else []
    pushed = []
    for folds in groups:
        suffix = f"-f{folds[0]}" if a.per_fold else ""
        slug = slugify(f"{cfg.name}-{a.model}{'-tune' if a.tune else ''}{suffix}")
        ref, rid = f"{user}/{slug}", run_id + suffix
        folder = Path(workdir) / "kernels" / slug
        write_kernel(folder, kernel_metadata(ref, slug.replace("-", " ").title(), a, sources, comps),
                     build_spec(cfg, a, st, ref, rid, folds, src))
        validate_metadata(folder)
        rec = {"ref": ref, "folder": str(folder), "run_id": rid, "group": run_id, "folds": folds, "config": str(cfg.path),
               "model": a.model, "accelerator": a.accelerator, "code_sha": st["code"]["code_sha"], "generated": _now()}
        if not a.no_push:
            acc = ["--accelerator", a.accelerator] if ACCELERATORS[a.accelerator] != "cpu" else []
            rec.update(version=parse_push(kaggle_cli(["kernels", "push", "-p", str(folder), *acc]), ref), pushed=_now(), state="QUEUED")
            st["kernels"][ref] = rec
        pushed.append(rec)
    if not a.no_push:
        st["runs"][run_id] = {"kernels": [r["ref"] for r in pushed], "per_fold": bool(a.per_fold), "config": str(cfg.path),
                              "model": a.model, "tune": bool(a.tune), "pushed": _now()}
        save_state(workdir, st)
    return pushed


def _user_for(no_push: bool) -> str:
    """The Kaggle user; generating kernels without pushing also works without credentials."""
    try:
        return kaggle_user()
    except KaggleError:
        if no_push:
            return "local-user"
        raise


def _all_folds(cfg: Any, workdir: Path) -> list[int]:
    import pandas as pd
    from .folds import fold_path

    return sorted(int(k) for k in set(pd.read_csv(fold_path(cfg, workdir), usecols=["fold"])["fold"]))


# ----------------------------------------------------------------------------- status


def kernel_state(ref: str) -> tuple[str, str]:
    """(state, failure message) from ``kaggle kernels status``."""
    out = kaggle_cli(["kernels", "status", ref], probe=False)
    m = re.search(r'has status "([^"]+)"', out)
    if not m:
        raise KaggleError(f"kaggle kernels status {ref}: unexpected answer {_short(out)}")
    fm = re.search(r'Failure message: "(.*)"', out)
    return m.group(1).split(".")[-1].upper(), fm.group(1) if fm else ""


def resolve_kernels(st: dict, targets: list[str] | None) -> list[str]:
    """Run ids expand to their kernels; bare slugs get the owner of a recorded kernel."""
    if not targets:
        return list(st["kernels"])
    refs = []
    for t in targets:
        if t in st["runs"]:
            refs += st["runs"][t]["kernels"]
        elif "/" in t:
            refs.append(t)
        else:
            hits = [r for r in st["kernels"] if r.split("/")[1] == t]
            if not hits:
                raise KaggleError(f"{t!r} is neither a pushed run id nor a kernel in kernels/index.json")
            refs += hits
    return refs


def _runtime(rec: dict) -> str:
    if not rec.get("pushed"):
        return ""
    end = datetime.fromisoformat(rec["finished"]) if rec.get("finished") else datetime.now(timezone.utc)
    secs = int((end - datetime.fromisoformat(rec["pushed"])).total_seconds())
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m{secs % 60:02d}s"


def status(workdir: Path, targets: list[str] | None = None, wait: bool = False, interval: float = 30.0,
           max_interval: float = 300.0, max_wait: float = 12 * 3600) -> list[dict]:
    """Poll every (or the named) pushed kernel; with ``wait`` back off between polls until all are finished."""
    st = load_state(workdir)
    refs = resolve_kernels(st, targets)
    if not refs:
        raise KaggleError("no pushed kernels in kernels/index.json: push one with python -m src.kaggle push")
    check_reachable()
    t0, delay = time.monotonic(), interval
    while True:
        rows = []
        for ref in refs:
            rec = st["kernels"].setdefault(ref, {"ref": ref})
            rec["state"], rec["failure"] = kernel_state(ref)
            rec["checked"] = _now()
            if rec["state"] in TERMINAL and not rec.get("finished"):
                rec["finished"] = _now()
            rows.append(rec)
        save_state(workdir, st)
        pending = [r["ref"] for r in rows if r["state"] not in TERMINAL]
        if not wait or not pending:
            return rows
        if time.monotonic() - t0 + delay > max_wait:
            raise KaggleError(f"still running after {max_wait:.0f}s: {pending}; run status --wait again later")
        log.info("%d kernel(s) still running (%s); next poll in %.0fs", len(pending), ", ".join(pending), delay)
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)


# ----------------------------------------------------------------------------- pull


def find_run_dir(out_dir: Path, run_id: str) -> Path:
    """runs/<run_id>/ inside downloaded kernel outputs; if absent, the kernel's own report says why."""
    hits = [p.parent for p in Path(out_dir).rglob("config.json") if p.parent.name == run_id]
    if hits:
        return hits[0]
    rep = next(iter(Path(out_dir).rglob("kernel_report.json")), None)
    why = read_json(rep).get("error", "no error recorded") if rep else "no kernel_report.json either (the kernel never started?)"
    logs = sorted(Path(out_dir).glob("*.log"))
    tail = _short(" | ".join(logs[0].read_text(errors="replace").strip().splitlines()[-3:]), 400) if logs else ""
    raise KaggleError(f"kernel output in {out_dir} has no runs/{run_id}/: {why}" + (f"; log ends: {tail}" if tail else ""))


def check_fold_status(run_dir: Path, folds: list[int] | None) -> list[int]:
    """Folds the kernel finished; a failed fold is an error carrying the kernel's own message."""
    fs = read_json(run_dir / "fold_status.json") if (run_dir / "fold_status.json").is_file() else {}
    failed = {k: v.get("error") for k, v in fs.items() if v.get("status") != "done"}
    if failed:
        raise KaggleError(f"{run_dir.name}: fold(s) not done on Kaggle: {failed}")
    done = sorted(int(k) for k in fs)
    missing = sorted(set(folds or []) - set(done))
    if missing or not done:
        raise KaggleError(f"{run_dir.name}: fold(s) {missing or 'all'} missing from fold_status.json")
    for k in done:
        for f in PER_FOLD_FILES:
            if not (run_dir / f.format(k=k)).is_file():
                raise KaggleError(f"{run_dir.name}: {f.format(k=k)} missing (artifact contract); the kernel output is incomplete")
    return done


def localise_config(run_dir: Path, config: Path, workdir: Path, kernel: str, version: int | None = None) -> dict:
    """Point config.json at this machine's config and fold file, after checking the fold file is the same one."""
    from .config import load_config

    meta = read_json(run_dir / "config.json")
    cfg = load_config(config)
    local = Path(workdir) / "folds" / Path(meta["fold_file"]).name
    if not local.is_file() or file_sha256(local) != meta["fold_sha256"]:
        raise KaggleError(f"{run_dir.name} was trained on fold file {Path(meta['fold_file']).name} sha256 {meta['fold_sha256'][:12]}, "
                          f"but {local} {'is missing' if not local.is_file() else 'differs'}: the folds changed after the push; "
                          "re-push the kernel with the current folds (python -m src.kaggle code && ... push)")
    meta["kaggle"] = {"kernel": kernel, "version": version, "workspace_path": meta["workspace"].get("path"), "fold_file": meta["fold_file"], "pulled": _now()}
    meta["workspace"] = {**cfg.to_dict(), "path": str(Path(config).resolve())}
    meta["fold_file"] = str(local.resolve())
    write_json(run_dir / "config.json", meta)
    return meta


def _copy_logs(out_dir: Path, dest: Path, slug: str) -> None:
    for p in list(Path(out_dir).glob("*.log")) + list(Path(out_dir).rglob("kernel_report.json"))[:1]:
        name = f"kaggle_{slug}.log" if p.suffix == ".log" else f"kernel_report_{slug}.json"
        shutil.copy2(p, dest / name)


def import_run(out_dir: Path, rec: dict, workdir: Path, force: bool = False) -> Path:
    """One kernel's run folder -> runs/<run_id>/, checked and localised; returns the folder."""
    src = find_run_dir(out_dir, rec["run_id"])
    check_fold_status(src, rec.get("folds"))
    dest = Path(workdir) / "runs" / rec["run_id"]
    if dest.exists():
        if not force:
            raise KaggleError(f"{dest} exists; pass --force to replace it with the kernel's outputs")
        shutil.rmtree(dest)
    tmp = dest.with_name(f".{dest.name}.pulling")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.replace(tmp, dest)
    localise_config(dest, Path(rec["config"]), workdir, rec["ref"], rec.get("version"))
    _copy_logs(out_dir, dest, rec["ref"].split("/")[-1])
    return dest


def merge_folds(parts: list[Path], run_id: str, config: Path, workdir: Path, force: bool = False) -> Path:
    """Per-fold runs -> one run: copy each fold's files, merge fold_status, then finalize (oof, test, metrics)."""
    from .config import load_config
    from .data import load_dataset
    from .train import Run, finalize

    dest = Path(workdir) / "runs" / run_id
    if dest.exists() and not force:
        raise KaggleError(f"{dest} exists; pass --force to rebuild it from the per-fold kernels")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    status, folds, skipped, ref = {}, [], [], read_json(parts[0] / "config.json")
    for p in parts:
        meta = read_json(p / "config.json")
        if meta["fold_sha256"] != ref["fold_sha256"] or meta["classes"] != ref["classes"]:
            raise KaggleError(f"{p.name} and {parts[0].name} used different folds or classes; they cannot be merged")
        for k, v in read_json(p / "fold_status.json").items():
            status[k] = v
            folds.append(int(k))
            for f in PER_FOLD_FILES:
                shutil.copy2(p / f.format(k=k), dest / f.format(k=k))
        skipped += [s for s in meta.get("skipped", []) if s not in skipped]
        for extra in p.glob("kaggle_*.log"):
            shutil.copy2(extra, dest / extra.name)
    if len(set(folds)) != len(folds):
        raise KaggleError(f"fold(s) trained by more than one kernel: {sorted(folds)}")
    write_json(dest / "fold_status.json", status)
    write_json(dest / "config.json", {**ref, "run_id": run_id, "merged_from": [p.name for p in parts], "train": {**ref["train"], "run_id": run_id, "folds": sorted(folds)}})
    cfg = load_config(config)
    ds = load_dataset(cfg)
    ds.skipped = skipped
    finalize(SimpleNamespace(cfg=cfg, ds=ds), Run(dest), sorted(folds), ref["train"].get("metric") or cfg.competition.metric)
    return dest


def pull(target: str, workdir: Path, force: bool = False) -> Path:
    """Download the outputs of a pushed run (or kernel) and turn them into a contract-checked run folder."""
    from .ensemble import load_run

    st = load_state(workdir)
    refs = resolve_kernels(st, [target])
    group = st["kernels"][refs[0]].get("group", target)
    check_reachable()
    parts = []
    for ref in refs:
        rec = st["kernels"][ref]
        out = Path(workdir) / "cache" / "kaggle" / "pull" / ref.split("/")[1]
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        kaggle_cli(["kernels", "output", ref, "-p", str(out), "--force", "-q"], probe=False)
        if st["runs"].get(group, {}).get("tune"):
            return import_tune(out, rec, workdir)
        parts.append(import_run(out, rec, workdir, force=True if len(refs) > 1 else force))
        rec["pulled"] = _now()
    save_state(workdir, st)
    run = merge_folds(parts, group, Path(st["kernels"][refs[0]]["config"]), workdir, force) if len(refs) > 1 else parts[0]
    load_run(run, workdir)  # the same check ensemble/submit make
    return run


def import_tune(out: Path, rec: dict, workdir: Path) -> Path:
    """A tuning kernel leaves a study, not a run: copy optuna_studies/ and any kept runs."""
    studies = [p for p in out.rglob("optuna_studies") if p.is_dir()]
    if not studies:
        find_run_dir(out, rec["run_id"])  # raises with the kernel's own error
    dest = Path(workdir) / "optuna_studies"
    dest.mkdir(exist_ok=True)
    for p in studies[0].iterdir():
        if p.is_file():
            shutil.copy2(p, dest / p.name)
    _copy_logs(out, dest, rec["ref"].split("/")[-1])
    return dest


# ----------------------------------------------------------------------------- local run of a kernel


def read_spec(folder: Path) -> dict:
    text = (Path(folder) / "run.py").read_text()
    m = re.search(r'SPEC = json\.loads\(r"""(.*?)"""\)', text, re.S)
    if not m:
        raise KaggleError(f"{folder}/run.py is not a generated kernel script (no SPEC)")
    return json.loads(m.group(1))


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path(target).resolve(), target_is_directory=True)


def local_run(slug: str, workdir: Path, import_outputs: bool = True, force: bool = False, timeout: float | None = None) -> Path:
    """Run kernels/<slug>/run.py unchanged against a fake /kaggle tree, then import its run like ``pull``."""
    from .config import load_config

    folder = Path(workdir) / "kernels" / slug
    spec = read_spec(folder)
    meta = read_json(folder / "kernel-metadata.json")
    cfg_path = Path(workdir) / spec["config"] if (Path(workdir) / spec["config"]).is_file() else REPO / spec["config"]
    cfg = load_config(cfg_path)
    root = Path(workdir) / "cache" / "kaggle" / "local" / slug
    shutil.rmtree(root, ignore_errors=True)
    code_dir, sha = stage_code(workdir, spec["code_dataset"].split("/")[1], spec["code_dataset"].split("/")[0])
    if sha != spec["code_sha"]:
        raise KaggleError(f"kernels/{slug} was generated for code {spec['code_sha']}, the local code is {sha}: push (or push --no-push) again")
    _link(code_dir, root / "input" / spec["code_dataset"].split("/")[1])
    data = spec["data_source"]
    data_root = Path(cfg.data.root)
    for _ in Path(data["subdir"]).parts if data["subdir"] else []:
        data_root = data_root.parent
    _link(data_root, root / "input" / data["ref"].split("/")[-1])
    (root / "working").mkdir(parents=True)
    env = {**os.environ, "WS_KAGGLE_ROOT": str(root.resolve())}
    proc = subprocess.run([sys.executable, str(folder / "run.py")], env=env, cwd=root, timeout=timeout)
    if proc.returncode != 0:
        rep = root / "working" / "kernel_report.json"
        why = read_json(rep).get("error") if rep.is_file() else None
        raise KaggleError(f"kernels/{slug}/run.py failed locally (exit {proc.returncode}): {why or 'see the output above'}")
    if not import_outputs:
        return root / "working"
    rec = {"ref": meta["id"], "run_id": spec["run_id"], "folds": spec["folds"], "config": str(cfg_path)}
    return import_run(root / "working", rec, workdir, force)


# ----------------------------------------------------------------------------- submissions


def _index(workdir: Path) -> Path:
    return Path(workdir) / "submissions" / "index.csv"


def validate_file(path: Path, config: Path) -> Any:
    """Check a CSV against the competition's sample_submission.csv (ids, order, columns, values)."""
    import pandas as pd
    from .config import load_config
    from .data import load_dataset
    from .submit import validate_submission

    cfg = load_config(config)
    ds = load_dataset(cfg)
    if ds.sample_submission is None:
        raise KaggleError(f"{config}: [data] sample_submission is not set; cannot validate {path}")
    id_col = cfg.data.id_column
    sub = pd.read_csv(path, dtype={id_col: str})
    validate_submission(sub, ds.sample_submission, id_col, ds.classes if cfg.is_classification else None)
    return cfg


def submit(target: str, message: str, workdir: Path, config: Path | None = None, name: str | None = None) -> Path:
    """Validate (never send a file the workspace knows is invalid), then ``kaggle competitions submit``."""
    import pandas as pd
    from .config import load_config
    from .ensemble import load_run
    from .submit import SubmissionError, append_index
    from .submit import submit as write_submission

    if not message:
        raise KaggleError("give a message (-m): it is how a leaderboard score is matched to this submission")
    try:
        if target.endswith(".csv") and Path(target).is_file():
            if config is None:
                raise KaggleError(f"{target}: pass --config so the file can be checked against sample_submission.csv")
            path, cfg = Path(target), validate_file(Path(target), config)
            if not _index(workdir).is_file() or path.name not in set(pd.read_csv(_index(workdir), dtype=str)["file"]):
                append_index(_index(workdir), {"file": path.name, "time": _now(), "runs": "", "cv_metric": "", "cv_score": "",
                                               "message": message, "public_score": "", "private_score": ""})
        else:
            cfg = load_config(load_run(target, workdir).config["workspace"]["path"])
            path = write_submission(target, name, message, workdir)
    except (SubmissionError, ValueError) as exc:  # EnsembleError, DataError, ConfigError are ValueErrors too
        raise KaggleError(f"not sent: {exc}") from None
    if not cfg.competition.slug:
        raise KaggleError(f"{cfg.path}: [competition] slug is empty; it names the competition to submit to")
    out = kaggle_cli(["competitions", "submit", "-c", cfg.competition.slug, "-f", str(path), "-m", message])
    if "Could not find competition" in out or "upload failed" in out.lower():
        raise KaggleError(f"submission of {path.name} not accepted: {_short(out)}")
    _mark_index(workdir, path.name, {"kaggle_submitted": _now(), "kaggle_message": message, "competition": cfg.competition.slug})
    return path


def _mark_index(workdir: Path, file: str, values: dict) -> None:
    import pandas as pd
    from .artifacts import write_csv

    idx = pd.read_csv(_index(workdir), dtype=str, keep_default_na=False)
    rows = idx.index[idx["file"] == file]
    for k, v in values.items():
        if k not in idx:
            idx[k] = ""
        idx.loc[rows[-1], k] = v
    write_csv(_index(workdir), idx)


def submissions(config: Path, workdir: Path) -> Any:
    """Leaderboard scores of this competition's submissions, written into submissions/index.csv next to the CV score."""
    import pandas as pd
    from .artifacts import write_csv

    slug = _raw_slug(config)
    out = kaggle_cli(["competitions", "submissions", slug, "--format", "json", "--page-size", "200"])
    start = out.find("[")
    subs = json.loads(out[start:]) if start >= 0 else []
    if not _index(workdir).is_file():
        return pd.DataFrame(subs)
    idx = pd.read_csv(_index(workdir), dtype=str, keep_default_na=False)
    for col in ("kaggle_status", "kaggle_ref"):
        if col not in idx:
            idx[col] = ""
    for s in reversed(subs):  # oldest first, so a re-submitted file ends with its newest score
        hit = idx.index[(idx["file"] == s.get("fileName")) & (idx["message"] == (s.get("description") or ""))]
        if len(hit):
            i = hit[-1]
            idx.loc[i, ["public_score", "private_score", "kaggle_status", "kaggle_ref"]] = [
                s.get("publicScore") or "", s.get("privateScore") or "", str(s.get("status", "")).split(".")[-1], str(s.get("ref", ""))]
    write_csv(_index(workdir), idx)
    return idx


# ----------------------------------------------------------------------------- command line


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m src.kaggle", description="Kaggle loop: download, code, push, status, pull, submit.")
    ap.add_argument("--workdir", default=".", help="workspace folder (data/, folds/, runs/, kernels/, submissions/)")
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("download", help="competition data into data/<slug>/, unzipped and checked")
    p.add_argument("--config", required=True)
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("code", help="upload src/, configs/, folds/ as the code dataset (new version if it exists)")
    p.add_argument("--slug", default=CODE_SLUG)
    p.add_argument("-m", "--message", default="")
    p.add_argument("--force", action="store_true", help="upload even if the dataset already holds this code")
    p = sub.add_parser("push", help="generate kernels/<slug>/ and push it to a Kaggle GPU")
    p.add_argument("--config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--folds", type=int, nargs="+")
    p.add_argument("--per-fold", dest="per_fold", action="store_true", help="one kernel (one GPU) per fold")
    p.add_argument("--tune", action="store_true")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int)
    p.add_argument("--param", dest="param_list", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--accelerator", default=DEFAULT_ACCELERATOR, help=f"one of {sorted(ACCELERATORS)}")
    p.add_argument("--allow-p100", dest="allow_p100", action="store_true")
    p.add_argument("--internet", choices=["on", "off"], default="off")
    p.add_argument("--data-dataset", dest="data_dataset", default="", help="owner/slug of a dataset holding the data (non-competition configs)")
    p.add_argument("--data-subdir", dest="data_subdir", default="", help="folder inside that dataset that is the config's [data] root")
    p.add_argument("--weights-dataset", dest="weights_dataset", default="", help="owner/slug of pretrained weights (internet off)")
    p.add_argument("--run-id", dest="run_id", default="")
    p.add_argument("--no-push", dest="no_push", action="store_true", help="only generate and check kernels/<slug>/")
    p = sub.add_parser("status", help="state of the pushed kernels")
    p.add_argument("targets", nargs="*", help="run ids or kernels (default: all pushed)")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--interval", type=float, default=30.0)
    p = sub.add_parser("pull", help="kernel outputs -> runs/<run_id>/ (per-fold kernels merged)")
    p.add_argument("target", help="run id or kernel")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("local", help="run kernels/<slug>/run.py here with a fake /kaggle tree, import its run")
    p.add_argument("slug")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("submit", help="validate, then kaggle competitions submit")
    p.add_argument("target", help="run id or a CSV file")
    p.add_argument("-m", "--message", required=True)
    p.add_argument("--config", help="needed when submitting a CSV file")
    p.add_argument("--name")
    p = sub.add_parser("submissions", help="leaderboard scores -> submissions/index.csv")
    p.add_argument("--config", required=True)
    return ap


def run_verb(args: argparse.Namespace) -> str:
    w = Path(args.workdir)
    if args.verb == "download":
        return f"data in {download(Path(args.config), w, args.force)} (checked against {args.config})"
    if args.verb == "code":
        c = push_code(w, args.slug, args.message, args.force)
        return f"code dataset {c['ref']} version {c.get('version')} holds code {c['code_sha']}"
    if args.verb == "push":
        args.internet = args.internet == "on"
        recs = push(Path(args.config), args, w)
        return _table(recs, ["ref", "version", "run_id", "folds", "accelerator", "folder"])
    if args.verb == "status":
        rows = status(w, args.targets, args.wait, args.interval)
        for r in rows:
            r["runtime"] = _runtime(r)
        return _table(rows, ["ref", "version", "state", "runtime", "run_id", "failure"])
    if args.verb == "pull":
        return f"run ready: {pull(args.target, w, args.force)}"
    if args.verb == "local":
        return f"local kernel run imported: {local_run(args.slug, w, force=args.force)}"
    if args.verb == "submit":
        path = submit(args.target, args.message, w, Path(args.config) if args.config else None, args.name)
        return f"submitted {path} (validated first); scores later with: python -m src.kaggle submissions --config ..."
    idx = submissions(Path(args.config), w)
    cols = [c for c in ("file", "message", "cv_metric", "cv_score", "public_score", "private_score", "kaggle_status") if c in idx]
    return idx[cols].to_string(index=False) if len(idx) else "no submissions"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        print(run_verb(args))
    except KaggleError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
