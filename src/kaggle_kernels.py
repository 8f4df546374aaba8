"""Kernels: generate ``kernels/<slug>/``, pre-flight it, push it.

A kernel folder holds ``kernel-metadata.json`` (what ``kaggle kernels push`` reads),
``kernel_spec.json`` (the kernel's settings: run id, train/tune arguments, code dataset and hash,
data and weights sources, accelerator, fold plan) and ``run.py`` (:mod:`src.kernel_runner` with those
settings written into its marker line, see :func:`render_run_py`). Kernel folders are generated,
never edited, and not committed (``kernels/*/`` is git-ignored).

:func:`preflight` finds what would make the kernel fail on Kaggle before anything is sent;
:func:`train_args` is the one place where push's flags become the kernel's train/tune arguments.

Machines (``--accelerator``): ``NvidiaTeslaT4`` is *two* T4s (Kaggle's "GPU T4 x2"): a GPU kernel
that trains several folds gets a fold plan and ``run.py`` trains two folds at once, one process per
GPU. TPU shapes are refused: the workspace trains with PyTorch on CUDA or the CPU and has no XLA
path. ``NvidiaL4`` is granted only in some competitions (kaggle-cli docs, "Some of these are only
available to participants of specific competitions"); run.py reports the device it really got.
``P100`` (sm_60) is refused unless asked for. The docker image is pinned: ``docker_image`` (given
with ``--docker-image``, or the one the first pulled kernel reported) with pinning type
``original``, so a Kaggle image update does not change results between versions.

Before pushing: the code dataset must be READY (waited for), a kernel of the same name still
QUEUED/RUNNING is not pushed again (a second session spends quota twice) and the GPU kernels must
fit in the weekly GPU quota (``kaggle quota``), unless ``--force``.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import kaggle_code, kernel_runner
from .artifacts import read_json, write_bytes, write_json
from .errors import KaggleError, WorkspaceError
from .kaggle_api import (
    TERMINAL,
    check_reachable,
    competition_code_only,
    gpu_quota,
    kaggle_cli,
    kaggle_user,
    kernel_state,
    load_state,
    now,
    save_state,
    short,
)

log = logging.getLogger(__name__)
# machine_shape / --accelerator values accepted by kernels push (kaggle-cli docs); "none" = CPU
ACCELERATORS = {"NvidiaTeslaT4": "gpu", "NvidiaL4": "gpu", "NvidiaTeslaP100": "gpu", "TpuV5E8": "tpu", "Tpu1VmV38": "tpu", "none": "cpu"}
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"
GPU_HINTS = {"NvidiaTeslaT4": "T4", "NvidiaL4": "L4", "NvidiaTeslaP100": "P100"}  # part of the device name Kaggle reports
RESTRICTED = {"NvidiaL4": "NvidiaL4 is granted only to participants of some competitions; elsewhere the kernel may not get it "
                          "(run.py then reports the device it got)"}
MODEL_REF = re.compile(r"[\w.-]+/[\w.-]+/[\w.-]+/[\w.-]+/\d+")  # owner/model/framework/variation/version
MODULES = ["numpy", "pandas", "scipy", "sklearn", "torch", "torchaudio", "soundfile", "librosa", "matplotlib", "timm"]
SPEC_MARKER = "SPEC: dict = {}"  # the one line of src/kernel_runner.py that run.py replaces with the settings
REF = re.compile(r"[\w.-]+/[\w.-]+")
REGENERATE = "re-generate the kernel with python -m src.kaggle push ... (--no-push to only write it)"


def slugify(text: str, min_len: int = 5) -> str:
    """Kaggle-style slug (lowercase, hyphens); padded so the CLI's 5-character minimum holds."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s if len(s) >= min_len else f"{s}-kernel"


def internet_on(a: SimpleNamespace) -> bool:
    """``--internet on|off`` from the command line, or a bool from Python callers."""
    return a.internet == "on" if isinstance(a.internet, str) else bool(a.internet)


def fold_numbers_in(path: Path) -> list[int]:
    from .folds import fold_numbers, read_fold_file

    return fold_numbers(read_fold_file(path, columns=["fold"]), "fold")


# ----------------------------------------------------------------------------- settings forwarded to the kernel


def train_args(a: SimpleNamespace) -> list[str]:
    """push's settings as arguments of ``src.train`` / ``src.tune`` in the kernel: the one place they are routed.

    ``--model``, ``--trials`` (tune), ``--epochs`` and every ``--param KEY=VALUE`` as given
    (``--param`` for train, ``--fix`` for tune). The kernel adds its identity (``--run-id`` or
    ``--study``, ``--folds``) and the paths of its config and working folder.
    """
    args = ["--model", a.model]
    if a.tune:
        args += ["--trials", str(a.trials)]
    if a.epochs:
        args += ["--epochs", str(a.epochs)]
    for p in a.param_list:
        args += ["--fix" if a.tune else "--param", p]
    return args


def pushed_params(cfg: Any, a: SimpleNamespace) -> dict[str, Any]:
    """The model parameters the kernel's trainer will build, checked here by the same rules as ``src.train``.

    ``--param`` follows the one routing rule (``src.settings.route_params``): train settings go to the
    trainer, everything else to the model, whose builder must accept it; a setting that does not apply
    to the model (``--param layer_decay=0.7`` for ``cnn``) is refused before anything is pushed, instead
    of failing on the Kaggle GPU. For ``--tune`` the values are ``--fix`` pins of the search space, so only
    the ones that name train settings are checked.
    """
    from .settings import parse_pairs, route_params
    from .train import check_train_config, resolve_train_config

    pairs = parse_pairs(a.param_list)
    if a.tune:
        pairs = route_params(pairs)[0]
    flags = {"epochs": a.epochs} if a.epochs else {}
    tc, sources = resolve_train_config(cfg, a.model, flags=flags, params=pairs)
    sources = {k: ("push --param" if v == "--param" else v) for k, v in sources.items()}
    check_train_config(cfg, tc, sources)
    return tc.model_params


# ----------------------------------------------------------------------------- pre-flight


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
    raise KaggleError(f"{cfg.path}: the kernel would have no data (data root {root} is not a downloaded competition)",
                      f"set [competition] slug and keep the data under {Path(workdir) / 'data' / (slug or '<slug>')} "
                      "(python -m src.kaggle download), or upload the data folder as a dataset (kaggle datasets create) "
                      "and pass --data-dataset owner/slug")


def preflight(cfg: Any, a: SimpleNamespace, workdir: Path, st: dict) -> list[str]:
    """Everything that would make the kernel fail on Kaggle, found before pushing; each item names the fix."""
    return [*_check_model(cfg, a), *_check_folds(cfg, a, workdir), *_check_accelerator(a), *_check_sources(a),
            *_check_code(cfg, a, workdir, st)]


def _check_model(cfg: Any, a: SimpleNamespace) -> list[str]:
    from .models import get_spec

    try:
        pretrained = {**get_spec(a.model).defaults, **pushed_params(cfg, a)}.get("pretrained")
    except WorkspaceError as exc:
        return [str(exc)]
    if pretrained and not internet_on(a) and not weights_sources(a):
        return [f"model {a.model} loads pretrained weights but --internet off: attach them with --weights-dataset owner/slug, "
                "--weights-model owner/model/framework/variation/version or --weights-notebook owner/slug "
                "(or --param pretrained=False, or --internet on)"]
    return []


def weights_sources(a: SimpleNamespace) -> list[dict]:
    """The weights the kernel attaches: a dataset, a Kaggle Model version and/or a notebook's output."""
    pairs = [("dataset", getattr(a, "weights_dataset", "")), ("model", getattr(a, "weights_model", "")),
             ("notebook", getattr(a, "weights_notebook", ""))]
    return [{"kind": kind, "ref": ref} for kind, ref in pairs if ref]


def _check_folds(cfg: Any, a: SimpleNamespace, workdir: Path) -> list[str]:
    from .folds import fold_path

    fp = fold_path(cfg, workdir)
    if not fp.is_file():
        return [f"fold file {fp} missing: run python -m src.folds --config {cfg.path} (kernels train on the shared folds)"]
    have = fold_numbers_in(fp) if a.folds else []
    missing = sorted(set(a.folds or []) - set(have))
    return [f"fold(s) {missing} not in {fp} (it has {have})"] if missing else []


def _check_accelerator(a: SimpleNamespace) -> list[str]:
    if a.accelerator not in ACCELERATORS:
        return [f"--accelerator {a.accelerator!r} unknown; choose one of {sorted(ACCELERATORS)}"]
    if ACCELERATORS[a.accelerator] == "tpu":
        return [f"--accelerator {a.accelerator} is a TPU, but the workspace trains with PyTorch on CUDA or the CPU and has no "
                "XLA path (torch_xla), so the kernel could not use it (and TPU pushes have been reported to start on a "
                "non-TPU image): use --accelerator NvidiaTeslaT4 (two T4s) or none"]
    if a.accelerator == "NvidiaTeslaP100" and not a.allow_p100:
        return ["NvidiaTeslaP100 is sm_60: current PyTorch builds in Kaggle's image have no kernels for it and fail at the "
                "first CUDA op; use --accelerator NvidiaTeslaT4 (or --allow-p100 with a Pascal-compatible torch)"]
    return []


def _check_sources(a: SimpleNamespace) -> list[str]:
    bad = [f"{src['kind']} {src['ref']!r} is not {'owner/model/framework/variation/version' if src['kind'] == 'model' else 'owner/slug'}"
           for src in [{"kind": "dataset", "ref": a.data_dataset}, *weights_sources(a)]
           if src["ref"] and not (MODEL_REF if src["kind"] == "model" else REF).fullmatch(src["ref"])]
    if a.tune and not (kaggle_code.REPO / "src" / "tune.py").is_file():
        bad.append("--tune needs src/tune.py")
    return bad


def _check_code(cfg: Any, a: SimpleNamespace, workdir: Path, st: dict) -> list[str]:
    """The config is the packaged one, and the code dataset holds exactly the local code."""
    problems = []
    files = kaggle_code.code_files(workdir)
    name = Path(cfg.path).name
    packaged = files.get(f"configs/{name}")
    if packaged is None or packaged.read_bytes() != Path(cfg.path).read_bytes():
        problems.append(f"{cfg.path} is not the configs/{name} that goes into the code dataset: keep configs in "
                        f"{Path(workdir) / 'configs'} (the kernel reads the packaged copy)")
    code, sha = st.get("code", {}), kaggle_code.code_hash(files)
    if not code:
        problems.append("no code dataset pushed yet: run python -m src.kaggle code")
    elif code.get("code_sha") != sha:
        problems.append(f"local code/configs/folds changed since code dataset {code['ref']} v{code.get('version')} was pushed "
                        f"(hash {code.get('code_sha')} there, {sha} here): run python -m src.kaggle code")
    return problems


# ----------------------------------------------------------------------------- the kernel folder


def kernel_metadata(ref: str, title: str, a: SimpleNamespace, sources: list[str], competitions: list[str],
                    docker: dict | None = None) -> dict:
    kind = ACCELERATORS[a.accelerator]
    weights = weights_sources(a)
    meta = {"id": ref, "title": title, "code_file": "run.py", "language": "python", "kernel_type": "script",
            "is_private": True, "enable_gpu": kind == "gpu", "enable_tpu": kind == "tpu", "enable_internet": internet_on(a),
            "dataset_sources": sources, "competition_sources": competitions,
            "kernel_sources": [w["ref"] for w in weights if w["kind"] == "notebook"],
            "model_sources": [w["ref"] for w in weights if w["kind"] == "model"], **(docker or {})}
    if kind != "cpu":
        meta["machine_shape"] = a.accelerator  # set explicitly: with enable_gpu alone Kaggle picks its default GPU
    return meta


def docker_pin(a: SimpleNamespace, st: dict) -> dict:
    """``docker_image`` / ``docker_image_pinning_type`` for kernel-metadata.json.

    ``--docker-image IMAGE`` pins that image (and is recorded for later pushes), ``--docker-image latest``
    follows Kaggle's current image; otherwise the recorded image (the one a pulled kernel reported) is
    pinned. Pinning type ``original`` keeps a kernel's later versions on the environment of its first.
    """
    want = getattr(a, "docker_image", "") or st.get("docker_image", "")
    if want == "latest":
        return {"docker_image_pinning_type": "latest"}
    return {"docker_image_pinning_type": "original", **({"docker_image": want} if want else {})}


def validate_metadata(folder: Path) -> dict:
    """The checks ``kaggle kernels push`` makes (and a few it does not), with the field to fix."""
    where = folder / "kernel-metadata.json"
    meta = read_json(where)
    owner, _, slug = meta.get("id", "").partition("/")
    problem = ""
    if not owner or not slug or len(slug) < 5:
        problem = f"id must be owner/slug with a slug of at least 5 characters, got {meta.get('id')!r}"
    elif len(meta.get("title", "")) < 5 or slugify(meta["title"]) != slug:
        problem = f"title {meta.get('title')!r} must be 5+ characters and slugify to the id's slug {slug!r}"
    elif not (folder / meta.get("code_file", "")).is_file():
        problem = f"code_file {meta.get('code_file')!r} not found in {folder}"
    elif meta.get("language") != "python" or meta.get("kernel_type") not in ("script", "notebook"):
        problem = "language must be 'python' and kernel_type 'script' or 'notebook'"
    elif meta.get("enable_gpu") and meta.get("machine_shape") not in ACCELERATORS:
        problem = "enable_gpu without a known machine_shape; Kaggle would pick its default GPU"
    elif any(not REF.fullmatch(r) for r in meta.get("dataset_sources", []) + meta.get("kernel_sources", [])):
        problem = f"dataset/kernel sources {meta['dataset_sources'] + meta.get('kernel_sources', [])} must all be owner/slug"
    elif any(not MODEL_REF.fullmatch(r) for r in meta.get("model_sources", [])):
        problem = f"model sources {meta['model_sources']} must all be owner/model/framework/variation/version"
    if problem:
        raise KaggleError(f"{where}: {problem}", REGENERATE)
    return meta


def build_spec(cfg: Any, a: SimpleNamespace, st: dict, kernel: str, run_id: str, folds: list[int] | None, src: dict,
               plan: list[int] | None = None) -> dict:
    """What run.py needs, frozen at push time (the kernel cannot read this machine).

    ``fold_plan``: the folds a GPU kernel may train side by side, one process per visible GPU (two on
    NvidiaTeslaT4); run.py falls back to one process when it sees a single GPU.
    """
    identity = ["--study", run_id] if a.tune else ["--run-id", run_id]
    args = [*train_args(a), *identity, *(["--folds", *map(str, folds)] if folds else [])]
    kind = ACCELERATORS[a.accelerator]
    return {"kernel": kernel, "run_id": run_id, "module": "src.tune" if a.tune else "src.train", "args": args,
            "config": f"configs/{Path(cfg.path).name}", "code_dataset": st["code"]["ref"], "code_sha": st["code"]["code_sha"],
            "data_source": src, "weights": weights_sources(a), "accelerator": a.accelerator,
            "device": "cuda" if kind == "gpu" else "cpu", "gpu_hint": GPU_HINTS.get(a.accelerator, ""),
            "internet": internet_on(a), "modules": MODULES + (["optuna"] if a.tune else []), "folds": folds,
            "fold_plan": plan, "keep_cache": False}


def render_run_py(spec: dict) -> str:
    """src/kernel_runner.py verbatim, its marker line replaced by ``spec`` (see that module's docstring for why)."""
    source = Path(kernel_runner.__file__).read_text()
    lines = source.splitlines(keepends=True)
    hits = [i for i, ln in enumerate(lines) if ln.rstrip("\r\n") == SPEC_MARKER]
    if len(hits) != 1:
        raise KaggleError(f"{kernel_runner.__file__} has {len(hits)} lines reading {SPEC_MARKER!r}, not exactly one",
                          "restore the one marker line; run.py is generated by replacing it")
    text = json.dumps(spec, indent=1, sort_keys=True)
    if '"""' in text:  # cannot happen with json.dumps (every quote inside a string is escaped), but never emit broken code
        raise KaggleError('kernel settings contain """', "remove triple quotes from the push arguments")
    lines[hits[0]] = f'SPEC: dict = json.loads(r"""\n{text}\n""")\n'
    return "".join(lines)


def write_kernel(folder: Path, meta: dict, spec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "kernel-metadata.json", meta)
    write_json(folder / "kernel_spec.json", spec)
    write_bytes(folder / "run.py", render_run_py(spec).encode())


def read_spec(folder: Path) -> dict:
    """The settings of a generated kernel (``kernel_spec.json``)."""
    path = Path(folder) / "kernel_spec.json"
    if not path.is_file():
        raise KaggleError(f"{folder} has no kernel_spec.json: it is not a kernel generated by python -m src.kaggle push", REGENERATE)
    return read_json(path)


def embedded_spec(run_py: Path) -> dict:
    """The SPEC that a generated run.py carries (imports it: module level is stdlib imports and definitions)."""
    mod_spec = importlib.util.spec_from_file_location(f"_kernel_run_{abs(hash(str(run_py)))}", run_py)
    if mod_spec is None or mod_spec.loader is None:
        raise KaggleError(f"{run_py} cannot be loaded as Python", REGENERATE)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken run.py is reported, whatever the error
        raise KaggleError(f"{run_py} does not load ({type(exc).__name__}: {exc})", REGENERATE) from None
    return getattr(module, "SPEC", {})


# ----------------------------------------------------------------------------- push


def parse_push(out: str, ref: str) -> int | None:
    """Version number from the CLI's answer; refuse sources Kaggle did not accept (the kernel would run without them)."""
    if "Kernel push error" in out:
        raise KaggleError(f"push of {ref} refused: {short(out.split('Kernel push error:', 1)[1])}",
                          "fix what the server names and push again")
    bad = [ln for ln in out.splitlines() if "not valid" in ln and "sources" in ln]
    if bad:
        raise KaggleError(f"push of {ref}: Kaggle did not accept some data sources, so the kernel would run without them: "
                          f"{' | '.join(bad)}", "check the slugs (and that the code dataset finished processing), then push again")
    m = re.search(r"Kernel version (\d+) successfully pushed", out)
    return int(m.group(1)) if m else None


def push(config: Path, a: SimpleNamespace, workdir: Path) -> list[dict]:
    """Generate kernels/<slug>/ for the request (one per fold with --per-fold), pre-flight and push them."""
    cfg = _load_config(config)
    st = load_state(workdir)
    user = _user_for(a.no_push)
    if not a.no_push:
        check_reachable()  # before kernels/ is written: offline, nothing changes
    elif not st.get("code"):  # generate only: the kernel points at the code as it is now
        st["code"] = {"ref": f"{user}/{kaggle_code.CODE_SLUG}", "code_sha": kaggle_code.code_hash(kaggle_code.code_files(workdir)),
                      "version": None}
    src = data_source(cfg, workdir, a.data_dataset, a.data_subdir)
    problems = preflight(cfg, a, workdir, st)
    if problems:
        raise KaggleError("pre-flight failed, nothing pushed:\n  - " + "\n  - ".join(problems), "fix each item above and push again")
    run_id = a.run_id or f"{cfg.name}-{a.model}{'-tune' if a.tune else ''}-kaggle-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    groups = [[k] for k in (a.folds or fold_numbers_in(_fold_path(cfg, workdir)))] if a.per_fold else [a.folds]
    if not a.no_push:
        before_push(a, workdir, [f"{user}/{kernel_slug(cfg, a, g)}" for g in groups], src)
        st = load_state(workdir)  # the code record may have been completed by the wait
        if getattr(a, "docker_image", ""):
            st["docker_image"] = a.docker_image  # an explicit pin is kept for later pushes
    pushed = []
    for folds in groups:
        pushed.append(_generate_and_push(cfg, a, st, user, run_id, folds, src, Path(workdir)))
        if not a.no_push:  # recorded kernel by kernel: a failure half-way keeps what was pushed
            st["kernels"][pushed[-1]["ref"]] = pushed[-1]
            st["runs"][run_id] = {"kernels": [r["ref"] for r in pushed], "per_fold": bool(a.per_fold), "config": str(cfg.path),
                                  "model": a.model, "tune": bool(a.tune), "pushed": now()}
            save_state(workdir, st)
    return pushed


def kernel_slug(cfg: Any, a: SimpleNamespace, folds: list[int] | None) -> str:
    suffix = f"-f{folds[0]}" if a.per_fold and folds else ""
    return slugify(f"{cfg.name}-{a.model}{'-tune' if a.tune else ''}{suffix}")


def before_push(a: SimpleNamespace, workdir: Path, refs: list[str], src: dict) -> None:
    """What is checked with Kaggle before anything is sent: code ready, nothing still running, quota, restrictions."""
    kaggle_code.ensure_ready(workdir)  # a kernel pushed before the version is READY mounts the previous one
    check_not_running(load_state(workdir), refs, getattr(a, "force", False))
    if ACCELERATORS[a.accelerator] == "gpu":
        check_quota(len(refs), a)
    if a.accelerator in RESTRICTED:
        log.warning(RESTRICTED[a.accelerator])
    if src["kind"] == "competition" and competition_code_only(src["ref"], workdir):
        log.warning("%s is a code competition: training kernels are fine, but Kaggle scores only a notebook's own "
                    "/kaggle/working/submission.csv, not an uploaded file; submit through an inference kernel "
                    "(python -m src.kaggle push-inference, then submit -k/-v)", src["ref"])


def check_not_running(st: dict, refs: list[str], force: bool) -> None:
    """Refuse to push a new version of a kernel whose last version is still queued or running (unless forced).

    Kaggle runs the new version as another session: both spend the weekly GPU quota, and the older
    session's outputs are replaced by the newer's when it finishes.
    """
    busy = []
    for ref in refs:
        if ref in st["kernels"] and st["kernels"][ref].get("pushed"):
            state, _ = kernel_state(ref)
            if state not in TERMINAL:
                busy.append(f"{ref} (version {st['kernels'][ref].get('version')}, {state})")
    if busy and not force:
        raise KaggleError(f"still running on Kaggle: {', '.join(busy)}; pushing again starts a second session that spends "
                          "GPU quota too", "wait for it (python -m src.kaggle status --wait), stop it on kaggle.com, or pass --force")
    for b in busy:
        log.warning("pushing over a kernel that is still running (--force): %s", b)


def check_quota(n_kernels: int, a: SimpleNamespace) -> None:
    """The GPU kernels about to start must fit in what is left of this week's GPU quota (``kaggle quota``)."""
    q = gpu_quota()
    if q is None:
        return
    hours, force = getattr(a, "gpu_hours", 1.0), getattr(a, "force", False)
    need = n_kernels * hours
    log.info("GPU quota: %.2f h of %.0f h left (refresh %s); this push may use up to %.1f h", q["remaining"], q["total"],
             q["refresh"], need)
    if q["remaining"] < need and not force:
        raise KaggleError(f"{n_kernels} GPU kernel(s) x {hours:g} h = {need:g} h, but only {q['remaining']:.2f} h of the "
                          f"weekly GPU quota ({q['total']:.0f} h) are left until {q['refresh'] or 'the weekly refresh'}",
                          "push fewer folds (--folds), one kernel for all folds (two per T4x2 at a time) instead of "
                          "--per-fold, --accelerator none, a smaller --gpu-hours estimate, or pass --force")


def fold_plan(cfg: Any, a: SimpleNamespace, workdir: Path, folds: list[int] | None) -> list[int] | None:
    """Folds a GPU training kernel may run side by side (one per GPU); None for one fold, tuning or the CPU."""
    if a.tune or a.per_fold or ACCELERATORS[a.accelerator] != "gpu":
        return None
    plan = list(folds) if folds else fold_numbers_in(_fold_path(cfg, workdir))
    return plan if len(plan) > 1 else None


def _generate_and_push(cfg: Any, a: SimpleNamespace, st: dict, user: str, run_id: str, folds: list[int] | None,
                       src: dict, workdir: Path) -> dict:
    """Write and check one kernel folder; push it unless --no-push. Returns its kernels/index.json record."""
    suffix = f"-f{folds[0]}" if a.per_fold else ""
    slug = kernel_slug(cfg, a, folds)
    ref, rid, folder = f"{user}/{slug}", run_id + suffix, workdir / "kernels" / slug
    sources = [st["code"]["ref"]] + [w["ref"] for w in [{"kind": "dataset", "ref": a.data_dataset}, *weights_sources(a)]
                                     if w["ref"] and w["kind"] == "dataset"]
    comps = [src["ref"]] if src["kind"] == "competition" else []
    docker, plan = docker_pin(a, st), fold_plan(cfg, a, workdir, folds)
    write_kernel(folder, kernel_metadata(ref, slug.replace("-", " ").title(), a, sources, comps, docker),
                 build_spec(cfg, a, st, ref, rid, folds, src, plan))
    validate_metadata(folder)
    rec = {"ref": ref, "folder": str(folder), "run_id": rid, "group": run_id, "folds": folds, "config": str(cfg.path),
           "model": a.model, "accelerator": a.accelerator, "code_sha": st["code"]["code_sha"], "fold_plan": plan,
           "docker_image": docker.get("docker_image", docker["docker_image_pinning_type"]), "generated": now()}
    if not a.no_push:
        acc = ["--accelerator", a.accelerator] if ACCELERATORS[a.accelerator] != "cpu" else []
        out = kaggle_cli(["kernels", "push", "-p", str(folder), *acc], probe=False)
        rec.update(version=parse_push(out, ref), pushed=now(), state="QUEUED")
    return rec


def _load_config(config: Path) -> Any:
    from .config import load_config

    return load_config(config)  # a ConfigError is a WorkspaceError: it reaches the user as is


def _fold_path(cfg: Any, workdir: Path) -> Path:
    from .folds import fold_path

    return fold_path(cfg, workdir)


def _user_for(no_push: bool) -> str:
    """The Kaggle user; generating kernels without pushing also works without credentials."""
    try:
        return kaggle_user()
    except KaggleError:
        if no_push:
            return "local-user"
        raise


# ----------------------------------------------------------------------------- inference kernels (code competitions)


def inference_runs(run: Any, workdir: Path) -> list[Path]:
    """The run folder and, for an ensemble, every member's (recursively): what the weights dataset must hold."""
    from .runs import load_run

    out, todo = [], [run]
    while todo:
        art = todo.pop()
        if art.root.resolve() not in out:
            out.append(art.root.resolve())
        todo += [load_run(m if (Path(m) / "config.json").is_file() else Path(m).name, workdir) for m in art.config.get("members", [])]
    return out


def stage_weights(workdir: Path, run: Any, ref: str) -> Path:
    """cache/kaggle/weights/<slug>/: ``weights.zip`` (``runs/<name>/...`` of the run and its members), metadata.

    One zip, as the code dataset: ``kaggle datasets create`` skips sub-folders by default, and Kaggle
    unzips ``weights.zip`` into ``weights/`` where the kernel finds ``runs/<run_id>/``.
    """
    import shutil
    import zipfile

    folder = Path(workdir) / "cache" / "kaggle" / "weights" / ref.split("/")[1]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "weights.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for root in inference_runs(run, workdir):
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                zf.write(f, (Path("runs") / root.name / f.relative_to(root)).as_posix())
    write_json(folder / "dataset-metadata.json", {"title": f"Weights {run.name}"[:50], "id": ref, "licenses": [{"name": "CC0-1.0"}]})
    return folder


def _check_inference(cfg: Any, run: Any, a: SimpleNamespace, workdir: Path, st: dict) -> list[str]:
    problems = _check_code(cfg, a, workdir, st) + _check_accelerator(a)
    if not cfg.data.test_dir or not cfg.data.sample_submission:
        problems.append(f"{cfg.path}: [data] test_dir and sample_submission must be set (the kernel predicts the test folder "
                        "and writes submission.csv in the sample's format)")
    if (run.config.get("workspace") or {}).get("competition", {}).get("slug", cfg.competition.slug) != cfg.competition.slug:
        problems.append(f"run {run.name} was trained for another competition than {cfg.path}'s {cfg.competition.slug!r}")
    return problems


def push_inference(run_id: str, config: Path, a: SimpleNamespace, workdir: Path) -> dict:
    """An internet-off kernel that predicts the competition's (hidden) test audio with ``run_id`` and writes submission.csv.

    Sources: the code dataset, a weights dataset made from the local run folder (and an ensemble's
    members), the competition. Unless ``--no-push``: the weights dataset is uploaded (created, then
    new versions) and waited for, then the kernel is pushed.
    """
    from .runs import load_run

    cfg, run = _load_config(config), load_run(run_id, workdir)
    st, user = load_state(workdir), _user_for(a.no_push)
    if not a.no_push:
        check_reachable()
    elif not st.get("code"):
        st["code"] = {"ref": f"{user}/{kaggle_code.CODE_SLUG}", "code_sha": kaggle_code.code_hash(kaggle_code.code_files(workdir))}
    src = data_source(cfg, workdir)
    a = SimpleNamespace(**{**vars(a), "internet": False, "data_dataset": "", "tune": False, "allow_p100": False,
                           "weights_dataset": f"{user}/{slugify(f'{run.name}-weights', 6)[:50]}"})
    problems = _check_inference(cfg, run, a, workdir, st)
    if problems:
        raise KaggleError("pre-flight failed, nothing pushed:\n  - " + "\n  - ".join(problems), "fix each item above and push again")
    slug = slugify(f"{run.name}-infer")[:50]
    ref, folder = f"{user}/{slug}", Path(workdir) / "kernels" / slug
    weights = stage_weights(workdir, run, a.weights_dataset)
    kind = ACCELERATORS[a.accelerator]
    spec = {"kernel": ref, "mode": "inference", "run_id": run.name, "module": "src.predict", "args": [],
            "config": f"configs/{Path(cfg.path).name}", "code_dataset": st["code"]["ref"], "code_sha": st["code"]["code_sha"],
            "data_source": src, "weights": weights_sources(a), "accelerator": a.accelerator,
            "device": "cuda" if kind == "gpu" else "cpu", "gpu_hint": GPU_HINTS.get(a.accelerator, ""), "internet": False,
            "modules": MODULES, "folds": None, "fold_plan": None, "keep_cache": False}
    meta = kernel_metadata(ref, slug.replace("-", " ").title(), a, [st["code"]["ref"], a.weights_dataset], [src["ref"]], docker_pin(a, st))
    write_kernel(folder, meta, spec)
    validate_metadata(folder)
    rec = {"ref": ref, "folder": str(folder), "run_id": run.name, "group": run.name, "folds": None, "config": str(cfg.path),
           "inference": True, "weights": a.weights_dataset, "accelerator": a.accelerator, "code_sha": st["code"]["code_sha"],
           "generated": now()}
    if not a.no_push:
        rec.update(_push_inference(a, workdir, ref, weights, folder, run.name))
        st = load_state(workdir)
        st["kernels"][ref] = rec
        save_state(workdir, st)
    return rec


def _push_inference(a: SimpleNamespace, workdir: Path, ref: str, weights: Path, folder: Path, run_name: str) -> dict:
    """Upload the weights dataset and wait until it is ready, then push the kernel; returns the record's push fields."""
    kaggle_code.ensure_ready(workdir)
    check_not_running(load_state(workdir), [ref], getattr(a, "force", False))
    st = load_state(workdir)
    known = a.weights_dataset in st.setdefault("weights", {})
    out = kaggle_code._upload(weights, f"weights of run {run_name}", update=known)
    if "creation error" in out:
        raise KaggleError(f"weights dataset {a.weights_dataset} not uploaded; the server said: {short(out)}",
                          "fix what the server names and push again")
    version = kaggle_code.wait_ready(a.weights_dataset, f"the weights of {run_name}")
    st["weights"][a.weights_dataset] = {"run_id": run_name, "version": version, "pushed": now()}
    save_state(workdir, st)
    acc = ["--accelerator", a.accelerator] if ACCELERATORS[a.accelerator] != "cpu" else []
    out = kaggle_cli(["kernels", "push", "-p", str(folder), *acc], probe=False)
    return {"version": parse_push(out, ref), "pushed": now(), "state": "QUEUED"}
