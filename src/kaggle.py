"""Train on Kaggle's GPUs from a laptop: ``python -m src.kaggle <verb> [--workdir W] ...``.

Thin wrappers over the official ``kaggle`` CLI (run as ``python -m kaggle`` from this
environment), with the checks the CLI leaves out:

* ``download``  competition data into ``data/<slug>/``, unzipped and checked against the config
                (a 403 names the rules page to accept; a code competition is said to be one)
* ``code``      package ``src/``, ``configs/``, ``folds/`` as a Kaggle dataset (create, then new
                versions) and wait until Kaggle has processed it
* ``push``      generate ``kernels/<slug>/`` (kernel-metadata.json, kernel_spec.json, ``run.py``),
                pre-flight it, push it; a T4 kernel trains two folds at once (T4 x2);
                ``--per-fold`` makes one kernel per fold
* ``push-inference`` an internet-off kernel that predicts the hidden test audio with a trained run (its
                weights as a dataset) and writes a validated ``/kaggle/working/submission.csv`` (code competitions)
* ``status``    poll the pushed kernels (``--wait``: back-off until all finish)
* ``logs``      a kernel's log as readable text (Kaggle keeps it as a JSON array)
* ``pull``      kernel outputs -> ``runs/<run_id>/``, checked against the artifact contract and the
                local fold file; per-fold kernels (and folds trained side by side) are merged into one run
* ``local``     run a generated ``run.py`` unchanged on this machine (fake ``/kaggle`` tree, Kaggle's layout)
* ``submit``    validate against ``sample_submission.csv``, then ``kaggle competitions submit``
                (refused for a code competition: Kaggle scores only a notebook's own output there);
                ``submit --kernel owner/slug [--version N]`` submits an inference kernel's version there (-k/-v)
* ``submissions`` list leaderboard scores and write them into ``submissions/index.csv``

Where things live: :mod:`src.kaggle_api` (the CLI, reachability, credentials, kernels/index.json),
:mod:`src.kaggle_code` (the code dataset), :mod:`src.kaggle_kernels` (generate, pre-flight, push),
:mod:`src.kernel_runner` (what a kernel runs), :mod:`src.kaggle_pull` (status, pull, merge, local);
this module holds the command and the download and submit verbs. An unreachable API or missing
credentials are detected before anything is written or sent.
"""
from __future__ import annotations

import argparse
import json
import logging
import tomllib
import zipfile
from pathlib import Path
from typing import Any, Callable

from . import cli
from .artifacts import setup_logging
from .errors import ConfigError, KaggleError, WorkspaceError
from .kaggle_api import check_credentials, check_reachable, competition_code_only, kaggle_cli, load_state, now, rules_url, short
from .kaggle_code import CODE_SLUG, push_code
from .kaggle_kernels import ACCELERATORS, DEFAULT_ACCELERATOR, push, push_inference
from .kaggle_pull import kernel_log, local_run, pull, runtime, status
from .kernel_runner import outside

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- download


def raw_slug(config: Path) -> str:
    """[competition] slug read without validating data paths (which do not exist before download)."""
    try:
        raw = tomllib.loads(Path(config).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KaggleError(f"cannot read {config}: {exc}", "pass --config with a readable workspace TOML") from None
    return str(raw.get("competition", {}).get("slug", ""))


def safe_extract(zip_path: Path, dest: Path) -> list[str]:
    """Unzip refusing the whole archive if any member would land outside ``dest`` (zip-slip)."""
    with zipfile.ZipFile(zip_path) as zf:
        bad = outside(zf.namelist(), dest)
        if bad:
            raise KaggleError(f"{zip_path}: member(s) {bad[:3]} point outside {dest.resolve()}; refusing to unzip",
                              "the archive is not a plain competition download: delete it and check where it came from")
        zf.extractall(dest)
        return zf.namelist()


def download(config: Path, workdir: Path, force: bool = False) -> Path:
    """``kaggle competitions download`` into data/<slug>/, unzip, then check the config against the files."""
    slug = raw_slug(config)
    if not slug:
        raise KaggleError(f"{config}: [competition] slug is empty", "set it to the competition's URL name (kaggle.com/competitions/<slug>)")
    check_reachable()  # before data/<slug>/ is created
    if competition_code_only(slug, workdir):
        log.warning(code_competition_note(slug))
    dest = Path(workdir) / "data" / slug
    dest.mkdir(parents=True, exist_ok=True)
    kaggle_cli(["competitions", "download", "-c", slug, "-p", str(dest), *(["--force"] if force else []), "-q"], probe=False)
    zips = sorted(dest.glob("*.zip"))
    if not zips:
        raise KaggleError(f"kaggle downloaded nothing into {dest}", f"accept the competition rules at {rules_url(slug)} first")
    for z in zips:
        names = safe_extract(z, dest)
        log.info("unzipped %s (%d files) into %s", z.name, len(names), dest)
        z.unlink()
    check_downloaded(config, dest)
    return dest


def code_competition_note(slug: str) -> str:
    return (f"{slug} is a code competition: the hidden test set exists only inside Kaggle, and only a notebook's own "
            "/kaggle/working/submission.csv is scored. Train here or with push as usual; to submit, push an inference "
            "kernel (python -m src.kaggle push-inference, internet off) and submit its version with -k/-v")


def is_code_competition(slug: str, workdir: Path) -> bool:
    """What kernels/index.json recorded about ``slug`` (no request is made here)."""
    return bool(load_state(workdir)["competitions"].get(slug, {}).get("code_only"))


def check_downloaded(config: Path, dest: Path) -> None:
    """The downloaded files must be where the config says: name the first mismatch and the fix."""
    from .config import load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise KaggleError(f"data downloaded to {dest}, but the config does not match it: {exc}",
                          f"point [data] root (relative to {config}) into {dest} and fix the paths; files there: "
                          f"{sorted(p.name for p in dest.iterdir())[:12]}") from None
    if not cfg.data.sample_submission:
        raise KaggleError(f"{config}: [data] sample_submission is not set", "set it: submissions are validated against it")
    if not Path(cfg.data.root).resolve().is_relative_to(dest.resolve()):
        log.warning("%s: [data] root %s is outside the download folder %s", config, cfg.data.root, dest)


# ----------------------------------------------------------------------------- submit


def _index(workdir: Path) -> Path:
    return Path(workdir) / "submissions" / "index.csv"


def validate_file(path: Path, config: Path) -> Any:
    """Check a CSV against the competition's sample_submission.csv (ids, order, columns, values); returns the config."""
    import pandas as pd

    from .config import load_config
    from .data import load_dataset, sample_id_column
    from .submit import validate_submission

    cfg = load_config(config)
    ds = load_dataset(cfg)
    if ds.sample_submission is None:
        raise KaggleError(f"{config}: [data] sample_submission is not set; cannot validate {path}", "set it in the config")
    id_col = sample_id_column(cfg, ds.sample_submission)
    sub = pd.read_csv(path, dtype={id_col: str})
    validate_submission(sub, ds.sample_submission, id_col, ds.classes if cfg.has_classes else None, task=cfg.task,
                        windowed=bool(cfg.test.window_seconds))
    return cfg


def _not_sent(step: Callable[[], Any]) -> Any:
    """Run a step of submit; a workspace error becomes 'not sent: ...' (nothing went to Kaggle)."""
    try:
        return step()
    except KaggleError:
        raise
    except WorkspaceError as exc:
        raise KaggleError(f"not sent: {exc.what}", exc.fix or "fix it and submit again") from None
    except ValueError as exc:
        raise KaggleError(f"not sent: {exc}", "fix it and submit again") from None


def _submission_config(target: str, workdir: Path, config: Path | None) -> Any:
    """The config a target is submitted under (a CSV file is validated here; a run is validated when written)."""
    from .config import load_config
    from .runs import load_run

    if target.endswith(".csv") and Path(target).is_file():
        if config is None:
            raise KaggleError(f"{target}: no config to check it against", "pass --config (its sample_submission.csv is the reference)")
        return validate_file(Path(target), config)
    return load_config(load_run(target, workdir).config["workspace"]["path"])


def _write_submission(target: str, message: str, workdir: Path, name: str | None) -> Path:
    """The CSV to send: a run's submission is built, validated, written and indexed; a file is indexed once."""
    import pandas as pd

    from .submit import append_index
    from .submit import submit as write_submission

    if not (target.endswith(".csv") and Path(target).is_file()):
        return write_submission(target, name, message, workdir)
    path, idx = Path(target), _index(workdir)
    if not idx.is_file() or path.name not in set(pd.read_csv(idx, dtype=str)["file"]):
        append_index(idx, {"file": path.name, "time": now(), "runs": "", "cv_metric": "", "cv_score": "",
                           "message": message, "public_score": "", "private_score": ""})
    return path


def submit(target: str, message: str, workdir: Path, config: Path | None = None, name: str | None = None) -> Path:
    """Validate (never send a file the workspace knows is invalid), then ``kaggle competitions submit``.

    Reachability and credentials are checked before the CSV or ``submissions/index.csv`` is written.
    """
    if not message:
        raise KaggleError("no submission message", "give one with -m: it is how a leaderboard score is matched to this submission")
    cfg = _not_sent(lambda: _submission_config(target, workdir, config))
    if not cfg.competition.slug:
        raise KaggleError(f"{cfg.path}: [competition] slug is empty", "set it: it names the competition to submit to")
    check_reachable()
    check_credentials()
    if competition_code_only(cfg.competition.slug, workdir):
        raise KaggleError(f"not sent: {cfg.competition.slug} is a code competition; Kaggle scores only a notebook's own "
                          "/kaggle/working/submission.csv there, not an uploaded CSV",
                          "push an inference kernel that writes it (python -m src.kaggle push-inference) and submit its "
                          "version with -k owner/kernel -v N")
    path = _not_sent(lambda: _write_submission(target, message, workdir, name))
    out = kaggle_cli(["competitions", "submit", "-c", cfg.competition.slug, "-f", str(path), "-m", message], probe=False)
    if "Could not find competition" in out or "upload failed" in out.lower():
        raise KaggleError(f"submission of {path.name} not accepted: {short(out)}", "fix what the server names and submit again")
    _mark_index(workdir, path.name, {"kaggle_submitted": now(), "kaggle_message": message, "competition": cfg.competition.slug})
    return path


def submit_kernel(kernel: str, message: str, workdir: Path, config: Path | None = None, version: int | None = None) -> dict:
    """A code competition's submission: ``kaggle competitions submit COMP -k owner/slug -v N -f submission.csv -m MSG``.

    Kaggle re-runs that kernel version on the hidden test set and scores its own submission.csv; the
    row goes into submissions/index.csv (file ``submission.csv``, the kernel and version) like any other.
    """
    from .submit import append_index

    if not message:
        raise KaggleError("no submission message", "give one with -m: it is how a leaderboard score is matched to this submission")
    st = load_state(workdir)
    hits = [r for r in st["kernels"] if r == kernel or r.split("/")[1] == kernel]
    rec = st["kernels"][hits[0]] if hits else {}
    ref = hits[0] if hits else kernel
    if "/" not in ref:
        raise KaggleError(f"kernel {kernel!r} is not in kernels/index.json", "give it as owner/slug, or push it with push-inference")
    version = version or rec.get("version")
    if not version:
        raise KaggleError(f"no version known for kernel {ref}", "pass --version N (the kernel version to submit; see status)")
    cfg_path = config or (Path(rec["config"]) if rec.get("config") else None)
    slug = raw_slug(cfg_path) if cfg_path else ""
    if not slug:
        raise KaggleError(f"no competition for kernel {ref}", "pass --config (its [competition] slug names the competition)")
    check_reachable()
    check_credentials()
    out = kaggle_cli(["competitions", "submit", slug, "-k", ref, "-v", str(version), "-f", "submission.csv", "-m", message], probe=False)
    if "Could not find" in out or "not found" in out.lower():
        raise KaggleError(f"code submission of {ref} v{version} not accepted: {short(out)}",
                          "check that the version finished (python -m src.kaggle status) and wrote submission.csv")
    row = {"file": "submission.csv", "time": now(), "runs": rec.get("run_id", ""), "cv_metric": "", "cv_score": "",
           "message": message, "public_score": "", "private_score": ""}
    append_index(_index(workdir), row)
    _mark_index(workdir, "submission.csv", {"kaggle_submitted": now(), "kaggle_message": message, "competition": slug,
                                            "kernel": ref, "kernel_version": str(version)})
    return {**row, "kernel": ref, "kernel_version": version, "competition": slug}


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

    slug = raw_slug(config)
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
            idx.loc[hit[-1], ["public_score", "private_score", "kaggle_status", "kaggle_ref"]] = [
                s.get("publicScore") or "", s.get("privateScore") or "", str(s.get("status", "")).split(".")[-1], str(s.get("ref", ""))]
    write_csv(_index(workdir), idx)
    return idx


# ----------------------------------------------------------------------------- command line


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _config_flag(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument("--config", default=None, help=f"workspace TOML of the competition{note}; if not given: $AUDIO_WS_CONFIG, "
                                                  "else 'config' in <workdir>/workspace.toml")


def _add_setup_verbs(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _verb(sub, common, "download", "competition data into data/<slug>/, unzipped (no path escapes) and checked against the config")
    _config_flag(p)
    p.add_argument("--force", action="store_true", help="download again even if the files are already there")
    p = _verb(sub, common, "code", "upload src/, configs/, folds/ as the code dataset (a new version if it exists)")
    p.add_argument("--slug", default=CODE_SLUG, help="slug of the code dataset (<user>/<slug>)")
    p.add_argument("-m", "--message", default="", help="version notes (empty: 'workspace code <hash>')")
    p.add_argument("--force", action="store_true", help="upload even if the dataset already holds this code")


def _add_push(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _verb(sub, common, "push", "generate kernels/<slug>/, pre-flight it and push it to a Kaggle accelerator")
    _config_flag(p)
    p.add_argument("--model", required=True, help="registered model name or timm model name")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="folds to train; if not given: every fold of the fold file")
    p.add_argument("--per-fold", dest="per_fold", action="store_true", help="one kernel (one GPU) per fold, merged by pull")
    p.add_argument("--tune", action="store_true", help="run src.tune (an Optuna study) instead of src.train")
    p.add_argument("--trials", type=int, default=20, help="trials of the study (with --tune)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per fold; if not given: the config's [train] or the model's")
    p.add_argument("--param", dest="param_list", action="append", default=[], metavar="KEY=VALUE",
                   help="model parameter forwarded to the kernel (--param for train, --fix for tune); repeatable")
    p.add_argument("--accelerator", default=DEFAULT_ACCELERATOR, choices=sorted(ACCELERATORS),
                   help="Kaggle machine shape ('none' = CPU). NvidiaTeslaT4 is two T4s: a kernel trains two folds at once. "
                        "NvidiaL4 is granted only in some competitions; TPU shapes are refused (no XLA path); "
                        "NvidiaTeslaP100 is refused without --allow-p100")
    p.add_argument("--allow-p100", dest="allow_p100", action="store_true", help="push to a P100 anyway (needs a Pascal-capable torch)")
    p.add_argument("--internet", choices=["on", "off"], default="off", help="internet in the kernel (on: missing modules are installed)")
    p.add_argument("--data-dataset", dest="data_dataset", default="",
                   help="owner/slug of a dataset holding the data (non-competition configs)")
    p.add_argument("--data-subdir", dest="data_subdir", default="", help="folder inside that dataset that is the config's [data] root")
    p.add_argument("--weights-dataset", dest="weights_dataset", default="", help="owner/slug of pretrained weights (internet off)")
    p.add_argument("--weights-model", dest="weights_model", default="",
                   help="pretrained weights as a Kaggle Model version: owner/model/framework/variation/version")
    p.add_argument("--weights-notebook", dest="weights_notebook", default="",
                   help="pretrained weights from a notebook's output (owner/slug; kernel_sources)")
    p.add_argument("--docker-image", dest="docker_image", default="",
                   help="pin the kernel's docker image (e.g. gcr.io/kaggle-gpu-images/python@sha256:...; 'latest' to follow "
                        "Kaggle's); if not given: the image recorded from the first pulled kernel, with pinning type 'original'")
    p.add_argument("--gpu-hours", dest="gpu_hours", type=float, default=1.0,
                   help="expected GPU hours per kernel, checked against the weekly GPU quota (kaggle quota) before pushing")
    p.add_argument("--force", action="store_true",
                   help="push even if a kernel of the same name is still running or the GPU quota looks too small")
    p.add_argument("--run-id", dest="run_id", default="", help="run id (empty: <config>-<model>-kaggle-<time>)")
    p.add_argument("--no-push", dest="no_push", action="store_true", help="only generate and check kernels/<slug>/ (no credentials needed)")


def _add_result_verbs(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _verb(sub, common, "status", "state, version, runtime and failure message of the pushed kernels")
    p.add_argument("targets", nargs="*", help="run ids or kernels; none given: every pushed kernel")
    p.add_argument("--wait", action="store_true", help="poll with back-off until every kernel finished")
    p.add_argument("--interval", type=float, default=30.0, help="seconds before the first re-poll (x1.5 each time, at most 300)")
    p = _verb(sub, common, "logs", "the log of a pushed kernel (or of each kernel of a run) as readable text")
    p.add_argument("target", help="run id or kernel (owner/slug or slug)")
    p = _verb(sub, common, "pull", "kernel outputs -> runs/<run_id>/, checked (per-fold kernels merged)")
    p.add_argument("target", help="run id or kernel (owner/slug or slug)")
    p.add_argument("--force", action="store_true", help="replace an existing runs/<run_id>/")
    p = _verb(sub, common, "local", "run kernels/<slug>/run.py here with a fake /kaggle tree, then import its run")
    p.add_argument("slug", help="folder name under kernels/")
    p.add_argument("--force", action="store_true", help="replace an existing runs/<run_id>/")
    p.add_argument("--gpus", type=int, default=0,
                   help="rehearse an N-GPU kernel on the CPU: its folds run as N processes at a time (CUDA_VISIBLE_DEVICES 0..N-1)")
    p = _verb(sub, common, "submit", "validate against sample_submission.csv, then kaggle competitions submit "
                                     "(--kernel: submit an inference kernel's version to a code competition)")
    p.add_argument("target", nargs="?", default=None, help="run id (its submission is built) or a CSV file; not with --kernel")
    p.add_argument("--kernel", default="", help="owner/slug of an inference kernel (push-inference): a code submission (-k/-v)")
    p.add_argument("--version", type=int, default=None, help="kernel version to submit (with --kernel); if not given: the pushed one")
    p.add_argument("-m", "--message", required=True, help="submission description (matches leaderboard scores to it)")
    _config_flag(p, " (needed when submitting a CSV file)")
    p.add_argument("--name", default=None, help="file name under submissions/ without .csv; if not given: the run id")
    p = _verb(sub, common, "submissions", "leaderboard scores -> submissions/index.csv beside the CV score")
    _config_flag(p)


def _add_push_inference(sub: Any, common: argparse.ArgumentParser) -> None:
    p = _verb(sub, common, "push-inference", "an internet-off kernel that predicts the hidden test audio with a run and writes "
                                             "/kaggle/working/submission.csv (code competitions)")
    p.add_argument("run", help="run or ensemble id under runs/ (its folder, and its members', become the weights dataset)")
    _config_flag(p)
    p.add_argument("--accelerator", default="none", choices=["none", "NvidiaTeslaT4"], help="machine shape ('none' = CPU)")
    p.add_argument("--docker-image", dest="docker_image", default="", help="pin the kernel's docker image (as push)")
    p.add_argument("--force", action="store_true", help="push even if the kernel is still running")
    p.add_argument("--no-push", dest="no_push", action="store_true", help="only generate kernels/<slug>/ and the weights folder")


def _verb(sub: Any, common: argparse.ArgumentParser, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, parents=[common], help=help, description=help, formatter_class=cli.HelpFormatter,
                          prog=f"python -m src.kaggle {name}")


def build_parser() -> argparse.ArgumentParser:
    ap = cli.parser("kaggle", "Kaggle loop: download, code, push, status, logs, pull, local, submit, submissions "
                              "(python -m src.kaggle VERB --help for each).")
    ap.add_argument("--workdir", dest="workdir_before", default=None, help=argparse.SUPPRESS)  # the old place, still accepted
    common = argparse.ArgumentParser(add_help=False)
    cli.add_common(common, config=False)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_setup_verbs(sub, common)
    _add_push(sub, common)
    _add_push_inference(sub, common)
    _add_result_verbs(sub, common)
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.workdir_before and args.workdir == ".":
        args.workdir = args.workdir_before
    return args


def _config_path(args: argparse.Namespace) -> Path:
    from .config import default_config

    return default_config(args.config, args.workdir)


def _submit_config(args: argparse.Namespace) -> Path | None:
    try:
        return _config_path(args)
    except ConfigError:
        return None  # submit says which file needs one


def _run_push(args: argparse.Namespace, w: Path) -> str:
    recs = push(_config_path(args), args, w)
    table = _table(recs, ["ref", "version", "run_id", "folds", "fold_plan", "accelerator", "docker_image", "folder"])
    slug = next((json.loads(Path(r["folder"], "kernel_spec.json").read_text())["data_source"]["ref"] for r in recs), "")
    return table + (f"\nnote: {code_competition_note(slug)}" if slug and is_code_competition(slug, w) else "")


def _run_download(args: argparse.Namespace, w: Path) -> str:
    dest = download(_config_path(args), w, args.force)
    slug = raw_slug(_config_path(args))
    note = f"\nnote: {code_competition_note(slug)}" if is_code_competition(slug, w) else ""
    return f"data in {dest} (checked against {_config_path(args)}){note}"


def _run_status(args: argparse.Namespace, w: Path) -> str:
    rows = status(w, args.targets, args.wait, args.interval)
    return _table([{**r, "runtime": runtime(r)} for r in rows], ["ref", "version", "state", "runtime", "run_id", "failure"])


def _run_submissions(args: argparse.Namespace, w: Path) -> str:
    idx = submissions(_config_path(args), w)
    cols = [c for c in ("file", "message", "cv_metric", "cv_score", "public_score", "private_score", "kaggle_status") if c in idx]
    return idx[cols].to_string(index=False) if len(idx) else "no submissions"


def _run_submit(args: argparse.Namespace, w: Path) -> str:
    if args.kernel:
        r = submit_kernel(args.kernel, args.message, w, _submit_config(args) if args.config else None, args.version)
        return (f"submitted kernel {r['kernel']} version {r['kernel_version']} to {r['competition']} (code submission); "
                "scores later with: python -m src.kaggle submissions")
    if not args.target:
        raise KaggleError("nothing to submit", "give a run id or a CSV file, or --kernel owner/slug for a code competition")
    path = submit(args.target, args.message, w, _submit_config(args), args.name)
    return f"submitted {path} (validated first); scores later with: python -m src.kaggle submissions"


def _run_push_inference(args: argparse.Namespace, w: Path) -> str:
    r = push_inference(args.run, _config_path(args), args, w)
    where = f"pushed as {r['ref']} version {r.get('version')}" if r.get("pushed") else "generated (not pushed)"
    return (f"inference kernel {r['folder']} {where}; weights dataset {r['weights']}\n"
            f"rehearse: python -m src.kaggle local {Path(r['folder']).name}; then: python -m src.kaggle submit --kernel {r['ref']} -m MSG")


def _run_code(args: argparse.Namespace, w: Path) -> str:
    c = push_code(w, args.slug, args.message, args.force)
    return f"code dataset {c['ref']} version {c.get('version')} holds code {c['code_sha']} (ready on Kaggle)"


VERBS: dict[str, Callable[[argparse.Namespace, Path], str]] = {
    "download": _run_download,
    "code": _run_code,
    "push": _run_push,
    "push-inference": _run_push_inference,
    "status": _run_status,
    "pull": lambda a, w: f"run ready: {pull(a.target, w, a.force)}",
    "logs": lambda a, w: kernel_log(a.target, w),
    "local": lambda a, w: f"local kernel run done: {local_run(a.slug, w, force=a.force, gpus=a.gpus)}",
    "submit": _run_submit,
    "submissions": _run_submissions,
}


def run_verb(args: argparse.Namespace) -> str:
    return VERBS[args.verb](args, Path(args.workdir))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    print(run_verb(args))


if __name__ == "__main__":
    cli.run_command(main)
