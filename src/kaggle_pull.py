"""Back from Kaggle: kernel status, pulling outputs into ``runs/<run_id>/``, and running a kernel locally.

A pulled run is checked before it lands in ``runs/``: every fold the kernel was asked for is done
(a failed fold is an error carrying the kernel's own message), the per-fold files of the artifact
contract (:mod:`src.runs`) are there, and the fold file the kernel trained on has the sha256 of the
local one. Only then is ``config.json`` rewritten to this machine's paths (the originals are kept
under ``kaggle``) and the folder moved into place; a refused pull leaves ``runs/`` as it was.
Per-fold kernels are merged into one run and finalised (oof/test/metrics) like a local run; so are
the per-fold runs of a kernel that trained its folds side by side on two GPUs (``parts`` in its
``kernel_report.json``). Kaggle's JSON-array log is kept as readable text (``kaggle_<slug>.log``),
and the docker image a kernel reports is recorded so later pushes pin it.

``local`` stages a fake ``/kaggle`` tree in Kaggle's current layout (``input/competitions/<slug>``,
``input/datasets/<owner>/<slug>`` holding the code dataset unzipped as Kaggle unzips it) and runs the
generated run.py unchanged.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import kaggle_code
from .artifacts import file_sha256, read_json, write_json
from .errors import KaggleError
from .kaggle_api import TERMINAL, check_reachable, kaggle_cli, kernel_state, load_state, now, readable_log, save_state, short
from .kaggle_kernels import embedded_spec, read_spec
from .kernel_runner import unpack
from .runs import fold_files

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- status


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
                raise KaggleError(f"{t!r} is neither a pushed run id nor a kernel in kernels/index.json",
                                  f"pick one of the runs {sorted(st['runs'])[-5:]} (python -m src.kaggle status lists the kernels)")
            refs += hits
    return refs


def runtime(rec: dict) -> str:
    """Time since the push (until finished), as 0h12m03s."""
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
        raise KaggleError("no pushed kernels in kernels/index.json", "push one with python -m src.kaggle push")
    check_reachable()
    t0, delay = time.monotonic(), interval
    while True:
        rows = [_poll(st, ref) for ref in refs]
        save_state(workdir, st)
        pending = [r["ref"] for r in rows if r["state"] not in TERMINAL]
        if not wait or not pending:
            return rows
        if time.monotonic() - t0 + delay > max_wait:
            raise KaggleError(f"still running after {max_wait:.0f}s: {pending}", "run python -m src.kaggle status --wait again later")
        log.info("%d kernel(s) still running (%s); next poll in %.0fs", len(pending), ", ".join(pending), delay)
        time.sleep(delay)
        delay = min(delay * 1.5, max_interval)


def _poll(st: dict, ref: str) -> dict:
    rec = st["kernels"].setdefault(ref, {"ref": ref})
    rec["state"], rec["failure"] = kernel_state(ref)
    rec["checked"] = now()
    if rec["state"] in TERMINAL and not rec.get("finished"):
        rec["finished"] = now()
    return rec


# ----------------------------------------------------------------------------- checks of a kernel's run folder


def find_run_dir(out_dir: Path, run_id: str) -> Path:
    """runs/<run_id>/ inside downloaded kernel outputs; if absent, the kernel's own report says why."""
    hits = [p.parent for p in Path(out_dir).rglob("config.json") if p.parent.name == run_id]
    if hits:
        return hits[0]
    rep = next(iter(Path(out_dir).rglob("kernel_report.json")), None)
    why = read_json(rep).get("error", "no error recorded") if rep else "no kernel_report.json either (the kernel never started?)"
    logs = sorted(Path(out_dir).glob("*.log"))
    tail = short(" | ".join(readable_log(logs[0].read_text(errors="replace")).strip().splitlines()[-3:]), 400) if logs else ""
    raise KaggleError(f"kernel output in {out_dir} has no runs/{run_id}/: {why}" + (f"; log ends: {tail}" if tail else ""),
                      "fix the cause and push the kernel again (python -m src.kaggle status shows Kaggle's failure message)")


def check_fold_status(run_dir: Path, folds: list[int] | None) -> list[int]:
    """Folds the kernel finished; a failed fold is an error carrying the kernel's own message."""
    fs = read_json(run_dir / "fold_status.json") if (run_dir / "fold_status.json").is_file() else {}
    failed = {k: v.get("error") or v.get("status") for k, v in fs.items() if v.get("status") != "done"}
    if failed:
        said = "; ".join(f"fold {k} {fs[k].get('status', 'not done')} on Kaggle: {err}" for k, err in sorted(failed.items()))
        raise KaggleError(f"{run_dir.name}: {said}", f"fix the cause and push fold(s) {sorted(map(int, failed))} again "
                          "(python -m src.kaggle push ... --folds K)")
    done = sorted(int(k) for k in fs)
    missing = sorted(set(folds or []) - set(done))
    if missing or not done:
        raise KaggleError(f"{run_dir.name}: fold(s) {missing or 'all'} missing from fold_status.json",
                          "the kernel stopped early: see its log (pull keeps it as kaggle_<slug>.log) and push again")
    for k in done:
        for f in fold_files(run_dir, k):
            if not (run_dir / f).is_file():
                raise KaggleError(f"{run_dir.name}: {f} missing (artifact contract); the kernel output is incomplete",
                                  "push the kernel again")
    return done


def check_fold_file(run_dir: Path, workdir: Path) -> Path:
    """The local fold file the run was trained on: same name under folds/, same sha256; else refused."""
    meta = read_json(run_dir / "config.json")
    name = Path(meta["fold_file"]).name
    local = Path(workdir) / "folds" / name
    if not local.is_file() or file_sha256(local) != meta["fold_sha256"]:
        state = "is missing" if not local.is_file() else f"differs (sha256 {file_sha256(local)[:12]})"
        raise KaggleError(f"{run_dir.name} was trained on fold file {name} sha256 {meta['fold_sha256'][:12]}, but {local} "
                          f"{state}: the folds changed after the push",
                          "re-push the kernel with the current folds (python -m src.kaggle code, then push)")
    return local


def localise_config(run_dir: Path, config: Path, fold_file: Path, kernel: str, version: int | None = None) -> dict:
    """Point config.json at this machine's config and fold file (the kernel's paths are kept under ``kaggle``)."""
    from .config import load_config

    meta = read_json(run_dir / "config.json")
    cfg = load_config(config)
    meta["kaggle"] = {"kernel": kernel, "version": version, "workspace_path": meta["workspace"].get("path"),
                      "fold_file": meta["fold_file"], "pulled": now()}
    meta["workspace"] = {**cfg.to_dict(), "path": str(Path(config).resolve())}
    meta["fold_file"] = str(Path(fold_file).resolve())
    write_json(run_dir / "config.json", meta)
    return meta


def _copy_logs(out_dir: Path, dest: Path, slug: str, folds: list[int] | None = None) -> None:
    """The kernel's log (as readable text), its report, and the per-fold logs of folds trained side by side."""
    for p in Path(out_dir).glob("*.log"):
        (dest / f"kaggle_{slug}.log").write_text(readable_log(p.read_text(errors="replace")))
    for p in list(Path(out_dir).rglob("kernel_report.json"))[:1]:
        shutil.copy2(p, dest / f"kernel_report_{slug}.json")
    for k in folds or []:
        fold_log = Path(out_dir) / "logs" / f"fold{k}.log"
        if fold_log.is_file():
            shutil.copy2(fold_log, dest / f"kaggle_{slug}_fold{k}.log")


def kernel_report(out_dir: Path) -> dict:
    rep = next(iter(Path(out_dir).rglob("kernel_report.json")), None)
    return read_json(rep) if rep else {}


def output_parts(out_dir: Path, rec: dict) -> list[dict]:
    """The run folders one kernel left: its run, or one per fold when it trained folds side by side (``parts``)."""
    parts = kernel_report(out_dir).get("parts") or []
    return [{**rec, "run_id": p["run_id"], "folds": p["folds"]} for p in parts] or [rec]


# ----------------------------------------------------------------------------- import, merge, pull


def verify_output(out_dir: Path, rec: dict, workdir: Path) -> tuple[Path, Path]:
    """(the kernel's run folder, the local fold file), after every check a pulled run must pass."""
    src = find_run_dir(out_dir, rec["run_id"])
    check_fold_status(src, rec.get("folds"))
    return src, check_fold_file(src, workdir)


def import_run(out_dir: Path, rec: dict, workdir: Path, force: bool = False) -> Path:
    """One kernel's run folder -> runs/<run_id>/, checked and localised first; returns the folder."""
    src, fold_file = verify_output(out_dir, rec, workdir)
    dest = Path(workdir) / "runs" / rec["run_id"]
    if dest.exists() and not force:
        raise KaggleError(f"{dest} exists", "pass --force to replace it with the kernel's outputs")
    tmp = dest.with_name(f".{dest.name}.pulling")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    localise_config(tmp, Path(rec["config"]), fold_file, rec["ref"], rec.get("version"))
    _copy_logs(out_dir, tmp, rec["ref"].split("/")[-1], rec.get("folds"))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def merge_folds(parts: list[Path], run_id: str, config: Path, workdir: Path, force: bool = False) -> Path:
    """Per-fold runs -> one run: copy each fold's files, merge fold_status, then finalize (oof, test, metrics)."""
    from .config import load_config
    from .data import load_dataset
    from .runs import RunFolder, check_compatible, finalize

    dest = Path(workdir) / "runs" / run_id
    if dest.exists() and not force:
        raise KaggleError(f"{dest} exists", "pass --force to rebuild it from the per-fold kernels")
    ref = read_json(parts[0] / "config.json")
    for p in parts[1:]:
        check_compatible(read_json(p / "config.json"), ref, (p.name, parts[0].name), error=KaggleError,
                         fix="per-fold kernels of one run must train on the same data and folds: push them again together")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    folds, skipped = _copy_fold_files(parts, dest)
    run = RunFolder(dest)
    for p in parts:
        for k, v in read_json(p / "fold_status.json").items():
            run.set_status(int(k), **v)
    write_json(dest / "config.json", {**ref, "run_id": run_id, "merged_from": [p.name for p in parts],
                                      "train": {**ref["train"], "run_id": run_id, "folds": folds}})
    cfg = load_config(config)
    ds = load_dataset(cfg)
    ds.skipped = skipped
    finalize(dest, ds, cfg.task, folds, ref["train"].get("metric") or cfg.competition.metric)
    return dest


def _copy_fold_files(parts: list[Path], dest: Path) -> tuple[list[int], list]:
    """Each part's per-fold files and logs into ``dest``; returns (sorted folds, skipped rows of all parts)."""
    folds, skipped = [], []
    for p in parts:
        for k in read_json(p / "fold_status.json"):
            folds.append(int(k))
            for f in fold_files(p, int(k)):
                shutil.copy2(p / f, dest / f)
        skipped += [s for s in read_json(p / "config.json").get("skipped", []) if s not in skipped]
        for extra in p.glob("kaggle_*.log"):
            shutil.copy2(extra, dest / extra.name)
    if len(set(folds)) != len(folds):
        raise KaggleError(f"fold(s) trained by more than one kernel: {sorted(folds)}", "pull the kernels of one push only")
    return sorted(folds), skipped


def download_output(ref: str, workdir: Path) -> Path:
    """``kaggle kernels output`` into cache/kaggle/pull/<slug>/ (emptied first)."""
    out = Path(workdir) / "cache" / "kaggle" / "pull" / ref.split("/")[1]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    kaggle_cli(["kernels", "output", ref, "-p", str(out), "--force", "-q"], probe=False)
    return out


def pull(target: str, workdir: Path, force: bool = False) -> Path:
    """Download the outputs of a pushed run (or kernel) and turn them into a contract-checked run folder."""
    st = load_state(workdir)
    refs = resolve_kernels(st, [target])
    group = st["kernels"][refs[0]].get("group", target)
    check_reachable()
    outs = {ref: download_output(ref, workdir) for ref in refs}
    if st["runs"].get(group, {}).get("tune"):
        return import_tune(outs[refs[0]], st["kernels"][refs[0]], workdir)
    jobs = [(outs[ref], part) for ref in refs for part in output_parts(outs[ref], st["kernels"][ref])]
    run = import_parts(jobs, group, Path(st["kernels"][refs[0]]["config"]), workdir, force)
    for ref in refs:
        st["kernels"][ref]["pulled"] = now()
        record_image(st, ref, kernel_report(outs[ref]))
    save_state(workdir, st)
    return run


def import_parts(jobs: list[tuple[Path, dict]], group: str, config: Path, workdir: Path, force: bool) -> Path:
    """Every (output folder, run record) checked first, then imported; more than one part is merged into ``group``."""
    from .runs import load_run

    for out, rec in jobs:  # every part is checked before any run folder is written
        verify_output(out, rec, workdir)
    parts = [import_run(out, rec, workdir, force=len(jobs) > 1 or force) for out, rec in jobs]
    run = merge_folds(parts, group, config, workdir, force) if len(parts) > 1 else parts[0]
    load_run(run, workdir)  # the same check ensemble/submit make
    return run


def record_image(st: dict, ref: str, report: dict) -> None:
    """Keep the docker image a kernel ran on; the first one seen becomes the pin of later pushes."""
    image = report.get("docker_image")
    if not image:
        return
    st["kernels"][ref]["docker_image_seen"] = image
    if not st.get("docker_image"):
        st["docker_image"] = image
        log.info("kernel %s ran on docker image %s: later pushes pin it (override with push --docker-image)", ref, image)


def kernel_log(target: str, workdir: Path) -> str:
    """The log of each kernel of a run (or a kernel) as readable text (Kaggle stores a JSON array of events)."""
    st = load_state(workdir)
    refs = resolve_kernels(st, [target])
    check_reachable()
    texts = []
    for ref in refs:
        out = kaggle_cli(["kernels", "logs", ref], probe=False)
        texts.append(f"===== {ref}\n{readable_log(out.strip()).rstrip()}")
    return "\n".join(texts)


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


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path(target).resolve(), target_is_directory=True)


def stage_local(slug: str, spec: dict, data_root: Path, workdir: Path) -> Path:
    """cache/kaggle/local/<slug>/: input/ in Kaggle's current layout, working/ fresh.

    The code dataset is mounted as Kaggle processes it (``manifest.json`` plus ``workspace.zip``
    unzipped into ``workspace/``) at ``input/datasets/<owner>/<slug>``; the data at
    ``input/competitions/<slug>`` or ``input/datasets/<owner>/<slug>``. Weights sources are not staged.
    """
    root = Path(workdir) / "cache" / "kaggle" / "local" / slug
    shutil.rmtree(root, ignore_errors=True)
    owner, code_slug = spec["code_dataset"].split("/")
    code_dir, sha = kaggle_code.stage_code(workdir, code_slug, owner)
    if sha != spec["code_sha"]:
        raise KaggleError(f"kernels/{slug} was generated for code {spec['code_sha']}, the local code is {sha}",
                          "generate it again: python -m src.kaggle push ... (--no-push to only write it)")
    mount = root / "input" / "datasets" / owner / code_slug
    mount.mkdir(parents=True)
    shutil.copy2(code_dir / "manifest.json", mount / "manifest.json")
    unpack(code_dir / "workspace.zip", mount / "workspace")
    data = spec["data_source"]
    for _ in Path(data["subdir"]).parts if data["subdir"] else []:
        data_root = data_root.parent
    where = ["competitions", data["ref"]] if data["kind"] == "competition" else ["datasets", *data["ref"].split("/")]
    _link(data_root, root.joinpath("input", *where))
    if spec.get("mode") == "inference":
        stage_weights_local(spec, root, workdir)
    (root / "working").mkdir(parents=True)
    return root


def stage_weights_local(spec: dict, root: Path, workdir: Path) -> None:
    """An inference kernel's weights dataset, mounted as Kaggle unzips it (``weights.zip`` -> ``weights/``)."""
    for w in spec.get("weights", []):
        owner, wslug = w["ref"].split("/")
        staged = Path(workdir) / "cache" / "kaggle" / "weights" / wslug / "weights.zip"
        if not staged.is_file():
            raise KaggleError(f"{staged} is missing: the weights of run {spec['run_id']} were never staged here",
                              f"generate the kernel again: python -m src.kaggle push-inference {spec['run_id']} --no-push")
        unpack(staged, root / "input" / "datasets" / owner / wslug / "weights")


def local_run(slug: str, workdir: Path, import_outputs: bool = True, force: bool = False, timeout: float | None = None,
              gpus: int = 0) -> Path:
    """Run kernels/<slug>/run.py unchanged against a fake /kaggle tree, then import its run like ``pull``.

    ``gpus`` > 1 rehearses a multi-GPU kernel on the CPU: run.py spreads its fold plan over that many
    fold processes (``CUDA_VISIBLE_DEVICES`` 0..gpus-1), and the parts are merged as ``pull`` merges them.
    """
    from .config import load_config

    folder = Path(workdir) / "kernels" / slug
    spec = read_spec(folder)
    if embedded_spec(folder / "run.py") != spec:
        raise KaggleError(f"{folder}/run.py carries other settings than {folder}/kernel_spec.json (one was edited)",
                          "generate the kernel again: python -m src.kaggle push ... (--no-push to only write it)")
    meta = read_json(folder / "kernel-metadata.json")
    cfg_path = Path(workdir) / spec["config"]
    cfg_path = cfg_path if cfg_path.is_file() else kaggle_code.REPO / spec["config"]
    root = stage_local(slug, spec, Path(load_config(cfg_path).data.root), workdir)
    env = {**os.environ, "WS_KAGGLE_ROOT": str(root.resolve())}
    env.pop("WS_LOCAL_DEVICES", None)
    if gpus > 1:
        env["WS_LOCAL_DEVICES"] = ",".join(map(str, range(gpus)))
    proc = subprocess.run([sys.executable, str(folder / "run.py")], env=env, cwd=root, timeout=timeout)
    if proc.returncode != 0:
        rep = root / "working" / "kernel_report.json"
        why = read_json(rep).get("error") if rep.is_file() else None
        raise KaggleError(f"kernels/{slug}/run.py failed locally (exit {proc.returncode}): {why or 'see the output above'}",
                          "fix the cause; the kernel would fail the same way on Kaggle")
    if spec.get("mode") == "inference":  # nothing to import: the kernel's product is submission.csv
        return root / "working" / "submission.csv"
    if not import_outputs:
        return root / "working"
    rec = {"ref": meta["id"], "run_id": spec["run_id"], "folds": spec["folds"], "config": str(cfg_path)}
    jobs = [(root / "working", part) for part in output_parts(root / "working", rec)]
    return import_parts(jobs, spec["run_id"], cfg_path, workdir, force)
