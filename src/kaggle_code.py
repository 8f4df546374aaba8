"""The code dataset: what every kernel runs, uploaded once per change of the local code.

``src/**/*.py``, ``configs/*.toml`` (a workdir's own configs win), ``requirements.txt`` and the
shared ``folds/*`` go into ``workspace.zip`` with fixed timestamps (same code, same bytes), and a
content hash (``manifest.json``) that each generated kernel checks before it trains.
``kaggle datasets create`` the first time, ``kaggle datasets version`` afterwards, nothing when the
hash is unchanged; the ref, hash and version are recorded in ``kernels/index.json``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path

from .artifacts import file_sha256, write_bytes, write_json
from .errors import KaggleError
from .kaggle_api import check_reachable, kaggle_cli, kaggle_user, load_state, now, save_state, short

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent  # tests point this at a frozen copy of src/ and configs/
CODE_SLUG = "audio-workspace-code"


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
    """Create the code dataset the first time, add a version afterwards; record ref, hash and version."""
    user = kaggle_user()
    ref = f"{user}/{slug}"
    st = load_state(workdir)
    prev = st.get("code", {})
    sha = code_hash(code_files(workdir))
    if prev.get("ref") == ref and prev.get("code_sha") == sha and not force:
        log.info("code dataset %s already holds this code (hash %s, version %s)", ref, sha, prev.get("version"))
        return prev
    check_reachable()  # before staging: offline, nothing is written
    folder, sha = stage_code(workdir, slug, user)
    notes = message or f"workspace code {sha}"
    out = _upload(folder, notes, update=prev.get("ref") == ref)
    if "creation error" in out:
        raise KaggleError(f"code dataset {ref} not uploaded; the server said: {short(out.split('creation error:', 1)[-1])}",
                          "fix what the server names and run python -m src.kaggle code again")
    st["code"] = {"ref": ref, "code_sha": sha, "version": dataset_version(ref), "pushed": now(), "notes": notes}
    save_state(workdir, st)
    return st["code"]


def _upload(folder: Path, notes: str, update: bool) -> str:
    """``datasets version`` when the dataset is known to exist, else ``datasets create`` (version if it did exist)."""
    if update:
        return kaggle_cli(["datasets", "version", "-p", str(folder), "-m", notes, "-q"], probe=False)
    out = kaggle_cli(["datasets", "create", "-p", str(folder), "-q"], probe=False)
    if "already in use" in out or "already exists" in out:
        out = kaggle_cli(["datasets", "version", "-p", str(folder), "-m", notes, "-q"], probe=False)
    return out


def dataset_version(ref: str) -> int | None:
    """Current version number of a dataset (None when the server does not say)."""
    try:
        out = kaggle_cli(["datasets", "status", ref, "--format", "json"], probe=False)
        return json.loads(out.strip().splitlines()[-1]).get("current_version_number")
    except (KaggleError, ValueError, IndexError):
        return None
