"""The code dataset: what every kernel runs, uploaded once per change of the local code.

``src/**/*.py``, ``configs/*.toml`` (a workdir's own configs win), ``requirements.txt`` and the
shared ``folds/*`` go into ``workspace.zip`` with fixed timestamps (same code, same bytes), and a
content hash (``manifest.json``) that each generated kernel checks before it trains.
``kaggle datasets create`` the first time, ``kaggle datasets version`` afterwards, nothing when the
hash is unchanged; the ref, hash and version are recorded in ``kernels/index.json``.

Kaggle processes a new version asynchronously (it unzips ``workspace.zip`` into ``workspace/``,
which is what kernels see): until ``kaggle datasets status`` says ``ready``, a kernel pushed now
would mount the *previous* version, and another version is refused (403). So :func:`push_code`
records the upload, then waits with back-off (:data:`READY_POLL`) until the version is ready,
and waits for an unfinished previous version before uploading the next; ``push`` waits too when
the record says the last version was not seen ready.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import zipfile
from pathlib import Path

from .artifacts import file_sha256, write_bytes, write_json
from .errors import KaggleError
from .kaggle_api import check_reachable, kaggle_cli, kaggle_user, load_state, now, save_state, short

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent  # tests point this at a frozen copy of src/ and configs/
CODE_SLUG = "audio-workspace-code"
# seconds: first re-poll, growth per poll, longest pause, give up after (tests shrink these)
READY_POLL = {"interval": 5.0, "factor": 1.5, "max_interval": 60.0, "timeout": 1800.0}


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
    write_json(out / "manifest.json", {"code_sha": sha, "files": sorted(files), "created": now()})
    write_json(out / "dataset-metadata.json", {"title": "Audio workspace code", "id": f"{user}/{slug}",
                                               "licenses": [{"name": "CC0-1.0"}],
                                               "subtitle": "src, configs and fold files of the audio workspace"})
    return out, sha


def push_code(workdir: Path, slug: str = CODE_SLUG, message: str = "", force: bool = False) -> dict:
    """Create the code dataset the first time, add a version afterwards; wait until Kaggle has it ready.

    The upload is recorded (``ready: false``) before the wait, so an interrupted or timed-out wait is
    finished by the next ``code`` or ``push`` instead of uploading again.
    """
    user = kaggle_user()
    ref = f"{user}/{slug}"
    st = load_state(workdir)
    prev = st.get("code", {})
    sha = code_hash(code_files(workdir))
    if prev.get("ref") == ref and prev.get("code_sha") == sha and not force:
        if not prev.get("ready"):
            return ensure_ready(workdir)
        log.info("code dataset %s already holds this code (hash %s, version %s)", ref, sha, prev.get("version"))
        return prev
    check_reachable()  # before staging: offline, nothing is written
    if prev.get("ref") == ref and not prev.get("ready"):
        wait_ready(ref, "the previous version")  # a version made while one is processing is refused (403)
    folder, sha = stage_code(workdir, slug, user)
    notes = message or f"workspace code {sha}"
    out = _upload(folder, notes, update=prev.get("ref") == ref)
    if "creation error" in out:
        raise KaggleError(f"code dataset {ref} not uploaded; the server said: {short(out.split('creation error:', 1)[-1])}",
                          "fix what the server names and run python -m src.kaggle code again")
    st["code"] = {"ref": ref, "code_sha": sha, "version": None, "ready": False, "pushed": now(), "notes": notes}
    save_state(workdir, st)
    return ensure_ready(workdir)


def ensure_ready(workdir: Path) -> dict:
    """The recorded code dataset, once Kaggle has processed it (waits if the record says it was not yet)."""
    st = load_state(workdir)
    code = st.get("code", {})
    if code.get("ready") or not code.get("ref"):
        return code
    code.update(version=wait_ready(code["ref"]), ready=True, ready_at=now())
    save_state(workdir, st)
    return code


def dataset_status(ref: str) -> tuple[str, int | None]:
    """(status, current version) from ``kaggle datasets status --format json``: ready, blobs_received, failed, ..."""
    out = kaggle_cli(["datasets", "status", ref, "--format", "json"], probe=False)
    start = out.find("{")
    try:
        js = json.loads(out[start:]) if start >= 0 else {}
    except ValueError:
        js = {}
    if "status" not in js:
        raise KaggleError(f"kaggle datasets status {ref}: unexpected answer {short(out)}", "pip show kaggle; it must be 2.x")
    return str(js["status"]).lower(), js.get("current_version_number")


def wait_ready(ref: str, which: str = "the new version") -> int | None:
    """Poll the dataset's status with back-off until it is ready; returns its version number."""
    p = READY_POLL
    t0, delay = time.monotonic(), p["interval"]
    while True:
        status, version = dataset_status(ref)
        if status == "ready":
            log.info("code dataset %s version %s is ready", ref, version)
            return version
        if status in ("failed", "deleted"):
            raise KaggleError(f"Kaggle could not process {which} of code dataset {ref} (status {status})",
                              "upload it again: python -m src.kaggle code --force")
        if time.monotonic() - t0 + delay > p["timeout"]:
            raise KaggleError(f"{which} of code dataset {ref} is still {status} after {p['timeout']:.0f}s; kernels pushed now "
                              "would mount the previous version", "run python -m src.kaggle code again later: it resumes the wait")
        log.info("code dataset %s: %s is %s; next check in %.1fs", ref, which, status, delay)
        time.sleep(delay)
        delay = min(delay * p["factor"], p["max_interval"])


def _upload(folder: Path, notes: str, update: bool) -> str:
    """``datasets version`` when the dataset is known to exist, else ``datasets create`` (version if it did exist)."""
    if update:
        return kaggle_cli(["datasets", "version", "-p", str(folder), "-m", notes, "-q"], probe=False)
    out = kaggle_cli(["datasets", "create", "-p", str(folder), "-q"], probe=False)
    if "already in use" in out or "already exists" in out:
        out = kaggle_cli(["datasets", "version", "-p", str(folder), "-m", notes, "-q"], probe=False)
    return out
