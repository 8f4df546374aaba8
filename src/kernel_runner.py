"""The program a generated Kaggle kernel runs: ``kernels/<slug>/run.py`` is this file, with its settings.

Why run.py is a copy of this module and not an import of it: a script kernel uploads exactly one
file, its ``code_file``, and nothing beside it; and the code dataset cannot supply the runner,
because finding and checking the code dataset is the runner's first job. So
``python -m src.kaggle push`` writes ``kernels/<slug>/run.py`` as this module's source verbatim
with ONE line replaced: the marker line ``SPEC: dict = {}`` below becomes the kernel's settings,
the JSON of ``kernels/<slug>/kernel_spec.json`` (written by ``json.dumps``, read back with
``json.loads`` from a raw string, because JSON's ``true``/``false``/``null`` are not Python).
The settings are data: ``kernel_spec.json`` is what the workspace reads back (``read_spec`` in
``src.kaggle_kernels``), and this module is linted, imported and tested like any other: every step
is a function taking the spec dict. A generated run.py is re-generated (``push``, or ``push --no-push``
to only write it), never edited: ``python -m src.kaggle local`` refuses a run.py whose settings
differ from its kernel_spec.json.

Rules for this file: the standard library only at module level (it starts in Kaggle's image
before the workspace code is found); torch is imported inside the functions that need it; and no
other line may read exactly like the marker.

On Kaggle it reads /kaggle/input and writes /kaggle/working. Locally, ``WS_KAGGLE_ROOT=<dir>``
maps them to <dir>/input and <dir>/working (``python -m src.kaggle local <slug>`` builds that
tree). Where sources are mounted (:func:`mounts`; the current layout first, then the old flat one):

* competition ``slug``: ``input/competitions/<slug>`` or ``input/<slug>``
* dataset ``owner/slug``: ``input/datasets/<owner>/<slug>`` or ``input/<slug>``
* model ``owner/model/framework/variation/version``:
  ``input/models/<owner>/<model>/<framework>/<variation>/<version>`` or ``input/<model>/<framework>/...``
  (components matched without regard to case: Kaggle lower-cases the framework)
* notebook output ``owner/slug``: ``input/notebooks/<owner>/<slug>`` or ``input/<slug>``

Steps of :func:`main`: find the code dataset (and check it is the code this kernel was made for),
install missing modules (internet on only), check the GPU against the installed torch, find the
data, point the config's ``[data] root`` at it, run the train/tune module, leave the run under
<working>/runs/<run_id>/ and a kernel_report.json beside it (with the docker image Kaggle ran it
on, ``KAGGLE_DOCKER_IMAGE``, so later pushes can pin it).

Two GPUs (``NvidiaTeslaT4`` is T4 x2): when the spec has a ``fold_plan`` and two or more GPUs are
visible, :func:`run_parallel` trains the folds as separate ``python -m src.train`` processes, one
per GPU (``CUDA_VISIBLE_DEVICES`` set to one id each), a new fold starting as soon as a GPU is free;
each fold is its own run ``<run_id>-f<k>`` exactly as a per-fold kernel leaves it, listed under
``parts`` in the report, and ``pull`` merges them the same way. The first process builds the feature
cache before the others start. A local run rehearses this on the CPU with ``WS_LOCAL_DEVICES=0,1``
(``python -m src.kaggle local <slug> --gpus 2``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections import deque
from pathlib import Path

SPEC: dict = {}


class KernelFailure(Exception):
    """A check failed; the message says why and what to do. :func:`main` reports it and exits 1."""


# ----------------------------------------------------------------------------- the /kaggle tree


def kaggle_root() -> Path:
    return Path(os.environ.get("WS_KAGGLE_ROOT", "/kaggle")).resolve()


def input_dir() -> Path:
    return kaggle_root() / "input"


def working_dir() -> Path:
    return kaggle_root() / "working"


def is_local() -> bool:
    """A run outside Kaggle (``WS_KAGGLE_ROOT`` set): no GPU is then not an error."""
    return "WS_KAGGLE_ROOT" in os.environ


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Report:
    """``<working>/kernel_report.json``: rewritten at every step, so a crash still leaves the last one."""

    def __init__(self, spec: dict, path: Path | None = None):
        self.path = path or working_dir() / "kernel_report.json"
        self.data = {"kernel": spec.get("kernel"), "run_id": spec.get("run_id"), "code_sha": spec.get("code_sha"),
                     "local": is_local(), "docker_image": os.environ.get("KAGGLE_DOCKER_IMAGE", ""), "started": now()}

    def update(self, **kw) -> None:
        self.data.update(kw)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2))


KINDS = {"competition": "competitions", "dataset": "datasets", "notebook": "notebooks", "model": "models"}


def source_kind(ref: str) -> str:
    """competition (``slug``), model (``owner/model/framework/variation/version``) or dataset (``owner/slug``)."""
    return {1: "competition", 5: "model"}.get(len(ref.split("/")), "dataset")


def _walk(base: Path, parts: list[str]) -> Path | None:
    """``base/parts...`` matching each component exactly, else without regard to case; None if absent."""
    here = base
    for part in parts:
        if (here / part).is_dir():
            here = here / part
            continue
        hits = [c for c in here.iterdir() if c.is_dir() and c.name.lower() == part.lower()] if here.is_dir() else []
        if not hits:
            return None
        here = hits[0]
    return here


def mounts(ref: str, kind: str = "") -> list[Path]:
    """Where Kaggle may have mounted a source (see the module docstring): the current layout first, then the flat one."""
    kind = kind or source_kind(ref)
    parts = ref.split("/")
    flat = parts[1:] if kind == "model" else parts[-1:]
    hits = [_walk(input_dir(), [KINDS[kind], *parts]), _walk(input_dir(), flat)]
    return [h for h in dict.fromkeys(hits) if h is not None]


def listing() -> list[str]:
    """What is under the input folder (four levels: enough to show every mount layout)."""
    base = input_dir()
    if not base.is_dir():
        return []
    pats = ("*", "*/*", "*/*/*", "*/*/*/*")
    return sorted(str(p.relative_to(base)) for pat in pats for p in base.glob(pat) if p.is_dir())[:40]


# ----------------------------------------------------------------------------- code, data, config


def outside(names: list[str], dest: Path) -> list[str]:
    """Archive member names that would land outside ``dest`` (zip-slip): ``../x``, ``/abs/x``."""
    dest = Path(dest).resolve()
    return [n for n in names if not (dest / n).resolve().is_relative_to(dest)]


def find_code(spec: dict) -> Path:
    """The workspace code (a folder holding src/) from the attached code dataset, checked against the spec."""
    bases = mounts(spec["code_dataset"], "dataset")
    if not bases:
        raise KernelFailure(f"code dataset {spec['code_dataset']} is not attached (input has {listing()}): push the kernel "
                            "again with python -m src.kaggle push (it adds the dataset to dataset_sources)")
    base = bases[0]
    manifests = sorted(base.rglob("manifest.json"))
    got = json.loads(manifests[0].read_text()).get("code_sha") if manifests else None
    if got != spec["code_sha"]:
        raise KernelFailure(f"code dataset {spec['code_dataset']} holds code {got}, this kernel was generated for "
                            f"{spec['code_sha']}: the new dataset version may still be processing (wait a minute and push "
                            "again) or it was never uploaded (python -m src.kaggle code)")
    trains = [p for p in sorted(base.rglob("train.py")) if p.parent.name == "src"]
    if trains:
        return trains[0].parent.parent
    archives = sorted(base.rglob("workspace.zip"))
    if not archives:
        raise KernelFailure(f"code dataset at {base} has neither src/ nor workspace.zip")
    return unpack(archives[0], Path(tempfile.mkdtemp(prefix="ws_code_")))


def unpack(archive: Path, dest: Path) -> Path:
    """Unzip ``archive`` into ``dest``, refusing it whole if any member would land outside."""
    with zipfile.ZipFile(archive) as zf:
        bad = outside(zf.namelist(), dest)
        if bad:
            raise KernelFailure(f"{archive}: member(s) {bad[:3]} point outside {dest}; refusing to unzip")
        zf.extractall(dest)
    return dest


def requirement_pins(path: Path) -> dict[str, str]:
    """``name -> name==version`` from a requirements.txt (comments dropped)."""
    lines = path.read_text().splitlines() if path.is_file() else []
    return {ln.split("==")[0].strip().lower(): ln.split("#")[0].strip() for ln in lines if "==" in ln}


def check_modules(spec: dict, code_dir: Path) -> None:
    """Modules the workspace imports; with internet on, missing ones are installed at requirements.txt's pins."""
    missing = [m for m in spec["modules"] if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if not spec["internet"]:
        raise KernelFailure(f"modules {missing} are not in the Kaggle image and internet is off: push with --internet on")
    pins = requirement_pins(code_dir / "requirements.txt")
    names = [{"sklearn": "scikit-learn"}.get(m, m) for m in missing]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *[pins.get(n, n) for n in names]], check=True)


def find_data(spec: dict) -> Path:
    """The mounted data folder: the competition or data dataset, plus the spec's subfolder."""
    src = spec["data_source"]
    for base in mounts(src["ref"], src["kind"]):
        root = base / src["subdir"] if src["subdir"] else base
        if root.is_dir():
            return root
    raise KernelFailure(f"data source {src['kind']} {src['ref']} (subfolder {src['subdir']!r}) is not under "
                        f"{input_dir()}: input has {listing()}")


def write_config(spec: dict, code_dir: Path, data_root: Path) -> Path:
    """The workspace config with [data] root pointed at the mounted data (every other line unchanged)."""
    lines, section, done = [], "", False
    for line in (code_dir / spec["config"]).read_text().splitlines():
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
        if section == "data" and not done and re.match(r"\s*root\s*=", line):
            line, done = f"root = {json.dumps(str(data_root))}  # set by run.py", True
        lines.append(line)
    if not done:
        raise KernelFailure(f"{spec['config']} has no [data] root line to point at {data_root}")
    path = working_dir() / spec["config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def copy_folds(code_dir: Path) -> None:
    """The shared fold files travel in the code dataset; training reads them from <working>/folds/."""
    dest = working_dir() / "folds"
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted((code_dir / "folds").glob("*")):
        if f.is_file():
            shutil.copy2(f, dest / f.name)


def attach_weights(spec: dict) -> None:
    """Point src.pretrained (``PRETRAINED_DIR``) and torch/hf caches at the first weights source (dataset, model, notebook).

    A source the kernel was pushed with but Kaggle did not mount is an error on Kaggle; a local run
    does not stage weights sources (this machine's caches are used), so there it is only reported.
    """
    sources = spec.get("weights") or ([{"kind": "dataset", "ref": spec["weights_dataset"]}] if spec.get("weights_dataset") else [])
    for src in sources:
        found = mounts(src["ref"], src["kind"])
        if found:
            os.environ.update(PRETRAINED_DIR=str(found[0]), TORCH_HOME=str(found[0]), HF_HUB_OFFLINE="1",
                              MUSICNN_WEIGHTS_DIR=str(found[0]))  # converted <name>.safetensors of src.musicnn
            return
        if not is_local():
            raise KernelFailure(f"weights {src['kind']} {src['ref']} is not under {input_dir()}: input has {listing()}; "
                                "check the ref and push again")
        print(f"local run: weights {src['kind']} {src['ref']} not staged; this machine's caches are used", flush=True)


# ----------------------------------------------------------------------------- the GPU


def arch_supported(cap: tuple[int, int], arch_list: list[str]) -> bool:
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


def check_gpu(spec: dict, report: Report, local: bool) -> str:
    """The device to train on; fails fast when the GPU is missing, too old for this torch, or broken."""
    import torch

    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if spec["device"] != "cuda" or (local and not torch.cuda.is_available()):
        if spec["device"] == "cuda":
            print("no GPU here: the local run uses the CPU", flush=True)
        report.update(gpu=info)
        return "cpu"
    if not torch.cuda.is_available():
        report.update(gpu=info)
        raise KernelFailure(f"the kernel asked for {spec['accelerator']} but no GPU is visible (GPU quota used up, or the "
                            "accelerator was not granted): check the kernel's session settings on Kaggle")
    name, cap, arch = torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0), torch.cuda.get_arch_list()
    info.update(name=name, capability=f"sm_{cap[0]}{cap[1]}", arch_list=arch)
    report.update(gpu=info)
    print(f"GPU: {name} (sm_{cap[0]}{cap[1]}); torch {torch.__version__} built for {arch}", flush=True)
    if not arch_supported(cap, arch):
        raise KernelFailure(f"GPU {name} (sm_{cap[0]}{cap[1]}) is not supported by torch {torch.__version__} (kernels for "
                            f"{arch}): push again with --accelerator NvidiaTeslaT4")
    hint = spec.get("gpu_hint")
    if hint and hint.lower() not in name.lower():
        print(f"WARNING: asked for {spec['accelerator']} but got {name}: Kaggle ignored the accelerator", flush=True)
        report.update(gpu_mismatch=f"asked {spec['accelerator']}, got {name}")
    try:
        torch.ones(8, device="cuda").mul(2).sum().item()
    except RuntimeError as exc:
        raise KernelFailure(f"CUDA smoke test failed on {name}: {exc}") from None
    return "cuda"


# ----------------------------------------------------------------------------- the run


def train_argv(spec: dict, config: Path, device: str) -> list[str]:
    """Arguments of the train/tune module: the kernel's config and working folder, then the pushed settings."""
    return ["--config", str(config), "--workdir", str(working_dir()), "--device", device, *spec["args"]]


def run_module(module: str, argv: list[str], code_dir: Path) -> int:
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


# ----------------------------------------------------------------------------- folds side by side, one per GPU


def visible_devices(device: str) -> list[str]:
    """GPU ids to spread folds over: this machine's CUDA devices (honouring CUDA_VISIBLE_DEVICES), or, in a
    local rehearsal, ``WS_LOCAL_DEVICES`` (the processes then train on the CPU with the ids set)."""
    if is_local():
        return [d.strip() for d in os.environ.get("WS_LOCAL_DEVICES", "").split(",") if d.strip()]
    if device != "cuda":
        return []
    import torch

    n = torch.cuda.device_count()
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (named or [str(i) for i in range(n)])[:n]


def fold_argv(argv: list[str], run_id: str, fold: int) -> list[str]:
    """The kernel's train arguments for one fold: ``--run-id <run_id>-f<k> --folds <k>`` instead of its own."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--run-id":
            i += 2
        elif argv[i] == "--folds":
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
        else:
            out.append(argv[i])
            i += 1
    return [*out, "--run-id", f"{run_id}-f{fold}", "--folds", str(fold)]


class FoldJob:
    """One fold training in its own process on one GPU; its output is prefixed and kept in <working>/logs/fold<k>.log."""

    def __init__(self, spec: dict, argv: list[str], code_dir: Path, fold: int, gpu: str):
        self.fold, self.gpu, self.run_id = fold, gpu, f"{spec['run_id']}-f{fold}"
        self.log_path = working_dir() / "logs" / f"fold{fold}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.tail: deque[str] = deque(maxlen=15)
        self.t0 = time.time()
        cmd = [sys.executable, "-u", "-m", spec["module"], *fold_argv(argv, spec["run_id"], fold)]
        print(f"[fold {fold} gpu {gpu}] $ CUDA_VISIBLE_DEVICES={gpu} python -m {' '.join(cmd[3:])}", flush=True)
        self.proc = subprocess.Popen(cmd, cwd=code_dir, env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu}, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        self.reader = threading.Thread(target=self._copy_output, daemon=True)
        self.reader.start()

    def _copy_output(self) -> None:
        with open(self.log_path, "w") as fh:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                fh.write(line)
                self.tail.append(line.rstrip())
                print(f"[fold {self.fold} gpu {self.gpu}] {line}", end="", flush=True)

    def training(self) -> bool:
        """The fold has started training: its feature cache exists (train records the fold as running then)."""
        status = working_dir() / "runs" / self.run_id / "fold_status.json"
        try:
            return str(self.fold) in json.loads(status.read_text())
        except (OSError, ValueError):
            return False

    def result(self) -> dict:
        self.reader.join(timeout=30)
        rc = self.proc.returncode
        return {"run_id": self.run_id, "folds": [self.fold], "device": self.gpu, "returncode": rc,
                "status": "done" if rc == 0 else "failed", "seconds": round(time.time() - self.t0, 1),
                "log": str(self.log_path.relative_to(working_dir())), "tail": list(self.tail)[-5:]}


def run_parallel(spec: dict, argv: list[str], code_dir: Path, devices: list[str], report: Report,
                 poll: float = 0.5) -> int:
    """Train ``fold_plan`` as one process per GPU, the next fold starting when a GPU frees up; 1 if any fold failed.

    The first process runs alone until it is training (it builds the feature cache the others then
    read); a failed fold is recorded (``parts`` in the report) and the other folds go on.
    """
    queue, free, running, parts = list(spec["fold_plan"]), list(devices), [], []
    warmed = False
    while queue or running:
        while queue and free and (warmed or not running):
            running.append(FoldJob(spec, argv, code_dir, queue.pop(0), free.pop(0)))
        time.sleep(poll)
        for job in [j for j in running if j.proc.poll() is not None]:
            running.remove(job)
            parts.append(job.result())
            free.append(job.gpu)
            print(f"[fold {job.fold} gpu {job.gpu}] finished: {parts[-1]['status']} (exit {job.proc.returncode})", flush=True)
        warmed = warmed or bool(parts) or any(j.training() for j in running)
        report.update(parts=sorted(parts, key=lambda p: p["folds"]))
    failed = [p for p in parts if p["status"] != "done"]
    if failed:
        report.update(error="; ".join(f"fold {p['folds'][0]} failed on GPU {p['device']} (exit {p['returncode']}): "
                                      f"{(p['tail'] or ['no output'])[-1]}" for p in failed))
    return 1 if failed else 0


# ----------------------------------------------------------------------------- inference kernels (code competitions)


class NoNetwork(OSError):
    """Raised by :func:`refuse_network` for every connection attempt of an internet-off kernel."""


def refuse_network(attempts: list | None = None) -> None:
    """Internet off, enforced in this process: every ``socket.connect`` to a network address raises.

    On Kaggle an internet-off kernel has no network at all; a local run (``python -m src.kaggle local``)
    gets the same semantics here, so a step that would need the internet fails the rehearsal instead of
    passing it. Attempts are recorded in ``attempts`` (and the kernel report). Unix sockets stay allowed.
    """
    import socket

    def refuse(sock, address, *_a):
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", None):
            return _connect(sock, address)
        if attempts is not None:
            attempts.append(str(address))
        raise NoNetwork(f"internet is off in this kernel: connection to {address} refused")

    _connect = socket.socket.connect
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = lambda address, *a, **k: refuse(None, address)  # type: ignore[assignment]


def find_weights(spec: dict) -> Path:
    """The folder holding ``runs/<run_id>/`` (and an ensemble's members) from the attached weights dataset."""
    for src in spec.get("weights") or []:
        for base in mounts(src["ref"], src["kind"]):
            hits = sorted(base.rglob(f"runs/{spec['run_id']}/config.json"))
            if hits:
                return hits[0].parent.parent.parent
    raise KernelFailure(f"weights of run {spec['run_id']} are not under {input_dir()} (sources {spec.get('weights')}, input has "
                        f"{listing()}): push the kernel again with python -m src.kaggle push-inference")


def write_submission(spec: dict, config: Path, predictions: Path, out: Path, aggregate: tuple[str, bool] = ("mean", True)) -> int:
    """predictions CSV (``path`` + one column per class) -> ``out`` in sample_submission's format, validated.

    Uses the workspace's own code (importable once the code dataset is found): ``src.data`` maps each
    test file to its id, ``src.submit`` builds and validates the submission exactly as for a local run.
    A windowed test set (``[test] window_seconds``, BirdCLEF) is built from the ``<predictions>_timeline.csv``
    that ``src.predict --timeline`` wrote: the run's own segments, aggregated into each test window (``aggregate``:
    the run's segment -> row rule, as for its ``test.npy``).
    """
    import pandas as pd

    from src.config import load_config
    from src.data import load_dataset, sample_id_column
    from src.submit import build_submission, validate_submission

    cfg = load_config(config)
    ds = load_dataset(cfg)
    if ds.sample_submission is None:
        raise KernelFailure(f"{spec['config']}: [data] sample_submission is not set; a code competition scores submission.csv")
    windowed = cfg.test.window_seconds is not None
    if windowed:
        timeline = pd.read_csv(predictions.with_name(predictions.stem + "_timeline.csv"))
        labels = [c for c in timeline.columns if c not in ("file", "start_s", "end_s", "partial", "top", "top_smoothed")]
        values, test_ids = window_predictions(ds.test, timeline, labels, aggregate), ds.test["id"].astype(str).tolist()
    else:
        pred = pd.read_csv(predictions)
        labels = [c for c in pred.columns if c not in ("path", "prediction")]
        ids = {str(Path(p).resolve()): str(i) for i, p in zip(ds.test["id"], ds.test["path"])}
        missing = [p for p in pred["path"] if str(Path(p).resolve()) not in ids]
        if missing:
            raise KernelFailure(f"{len(missing)} predicted file(s) are not test rows of {spec['config']} (e.g. {missing[:2]})")
        values, test_ids = pred[labels].to_numpy(float), [ids[str(Path(p).resolve())] for p in pred["path"]]
    classes = list(ds.classes) if cfg.has_classes else labels
    id_col = sample_id_column(cfg, ds.sample_submission)
    sub = build_submission(values, test_ids, ds.sample_submission, id_col, classes, cfg.task, windowed=windowed)
    validate_submission(sub, ds.sample_submission, id_col, ds.classes if cfg.has_classes else None, task=cfg.task, windowed=windowed)
    out.parent.mkdir(parents=True, exist_ok=True)
    sub.to_csv(out, index=False)
    return len(sub)


def window_predictions(test, timeline, labels: list[str], aggregate: tuple[str, bool]):
    """(n_test_rows, C): every test window's timeline rows (the run's segments whose midpoint lies inside it: the
    segment grid of a whole file drifts from the windows' by the frame rounding of the segment hop) aggregated with
    ``aggregate`` = (how, renormalise), as src.train aggregates a window's segments into its test row."""
    import numpy as np

    from src.inference import aggregate as combine

    timeline = timeline.assign(mid_s=(timeline["start_s"] + timeline["end_s"]) / 2)
    by_file = {str(Path(f).resolve()): g.sort_values("mid_s") for f, g in timeline.groupby("file")}
    items, rows = [], []
    for r, (path, start, end) in enumerate(zip(test["path"], test["start_s"], test["end_s"])):
        g = by_file.get(str(Path(path).resolve()))
        mids = g["mid_s"].to_numpy() if g is not None else np.zeros(0)
        lo, hi = np.searchsorted(mids, start), np.searchsorted(mids, end)
        if hi <= lo:
            raise KernelFailure(f"test window {test['id'].iloc[r]!r} ({path} {start:g}-{end:g} s) has no predicted segment",
                                "the timeline must cover every test window: check [test] window_seconds against the run's segments")
        part = g.iloc[lo:hi]
        if (~part["partial"].astype(bool)).any():  # the file's padded last segment: the test path keeps whole segments only
            part = part[~part["partial"].astype(bool)]
        items.append(part[labels].to_numpy(np.float64))
        rows += [r] * len(part)
    how, normalise = aggregate
    fill = np.zeros(len(labels))
    return combine(np.concatenate(items), np.asarray(rows), len(test), fill, how, normalise).astype(np.float64)


def run_aggregate(run: Path) -> tuple[str, bool]:
    """(how, renormalise) of the run's segment -> row aggregation, from its config.json (an ensemble: its first member's)."""
    config = json.loads((run / "config.json").read_text())
    if "train" not in config and config.get("members"):
        return run_aggregate(run.parent / Path(config["members"][0]).name)
    task = config.get("task", "classification")
    how = config.get("train", {}).get("aggregate", "mean") if task != "regression" else "mean"
    return how, task == "classification"


def run_inference(spec: dict, report: Report, code_dir: Path, device: str) -> int:
    """Predict the (hidden) test audio with the attached run, then write and validate <working>/submission.csv."""
    cfg = write_config(spec, code_dir, find_data(spec))
    sys.path.insert(0, str(code_dir))
    from src.config import load_config

    c = load_config(cfg)
    if not c.data.test_dir:
        raise KernelFailure(f"{spec['config']}: [data] test_dir is not set; the kernel cannot find the test audio")
    test_dir = c.resolve(c.data.test_dir)
    weights = Path(tempfile.mkdtemp(prefix="ws_predict_"))  # writable workdir; runs/ links to the read-only mount
    (weights / "runs").symlink_to(find_weights(spec) / "runs", target_is_directory=True)
    preds = working_dir() / "predictions" / f"{spec['run_id']}.csv"
    argv = [spec["run_id"], str(test_dir), "--out", str(preds), "--workdir", str(weights), "--device", device, *spec.get("args", [])]
    if c.test.window_seconds is not None:  # per-window rows (BirdCLEF): the run's own segments, aggregated per window below
        argv.append("--timeline")
    print("$ python -m src.predict " + " ".join(argv), flush=True)
    report.update(status="running", command=["python", "-m", "src.predict", *argv], test_dir=str(test_dir))
    rc = run_module("src.predict", argv, code_dir)
    if rc != 0:
        return rc
    rows = write_submission(spec, cfg, preds, working_dir() / "submission.csv", run_aggregate(weights / "runs" / spec["run_id"]))
    print(f"submission.csv: {rows} rows, validated against sample_submission.csv", flush=True)
    report.update(submission="submission.csv", submission_rows=rows)
    return 0


def run(spec: dict, report: Report) -> int:
    """Every step of the kernel; a failed check raises :class:`KernelFailure`."""
    t0 = time.time()
    if spec.get("mode") == "inference" and not spec.get("internet"):
        attempts: list[str] = []
        refuse_network(attempts)
        report.update(network="refused", network_attempts=attempts)
    code_dir = find_code(spec)
    if spec.get("mode") == "inference":
        check_modules(spec, code_dir)
        rc = run_inference(spec, report, code_dir, check_gpu(spec, report, is_local()))
        report.update(status="done" if rc == 0 else "failed", returncode=rc, seconds=round(time.time() - t0, 1), finished=now())
        return rc
    sys.path.insert(0, str(code_dir))
    check_modules(spec, code_dir)
    device = check_gpu(spec, report, is_local())
    cfg = write_config(spec, code_dir, find_data(spec))
    copy_folds(code_dir)
    attach_weights(spec)
    argv = train_argv(spec, cfg, device)
    devices = visible_devices(device) if spec.get("fold_plan") and spec["module"] == "src.train" else []
    if len(devices) >= 2 and len(spec["fold_plan"]) >= 2:
        report.update(status="running", devices=devices)
        rc = run_parallel(spec, argv, code_dir, devices, report)
    else:
        print(f"$ python -m {spec['module']} " + " ".join(argv), flush=True)
        report.update(status="running", command=["python", "-m", spec["module"], *argv])
        rc = run_module(spec["module"], argv, code_dir)
    if not spec.get("keep_cache"):
        shutil.rmtree(working_dir() / "cache", ignore_errors=True)  # features are rebuilt from the data; keep outputs small
    report.update(status="done" if rc == 0 else "failed", returncode=rc, seconds=round(time.time() - t0, 1), finished=now())
    return rc


def main(spec: dict) -> int:
    """Run the kernel described by ``spec``; returns the exit status (the report says why on failure)."""
    if not spec:
        print("KERNEL FAILED: this is the kernel template, with no settings: generate a kernel with "
              "python -m src.kaggle push --no-push and run kernels/<slug>/run.py", file=sys.stderr, flush=True)
        return 1
    report = Report(spec)
    try:
        report.update(status="starting")
        return run(spec, report)
    except KernelFailure as exc:
        print(f"KERNEL FAILED: {exc}", file=sys.stderr, flush=True)
        report.update(status="failed", error=str(exc), finished=now())
        return 1


if __name__ == "__main__":
    sys.exit(main(SPEC))
