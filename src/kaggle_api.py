"""Talking to Kaggle: the official ``kaggle`` CLI and client, and the workspace's record of what was sent.

* :func:`kaggle_cli` runs ``python -m kaggle ...`` with this interpreter and turns a failure into a
  :class:`~src.errors.KaggleError` (:func:`explain_failure`: network, credentials, competition rules,
  a dataset still processing, or the server's own words); :func:`kaggle_py` runs a few lines against
  the ``kaggle`` client library (also in a subprocess) for what the CLI does not print: the user name
  behind an access token, whether a competition is code-only;
* credentials are looked up in the order kaggle 2.2.x uses them (``KaggleApi.authenticate``): an
  access token (``KAGGLE_API_TOKEN``, ``~/.kaggle/access_token``), then the legacy key
  (``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``kaggle.json``), then an OAuth login (``kaggle auth login``).
  :func:`kaggle_user` is the name the authenticated API answers to (for a token Kaggle is asked:
  the token carries no name);
* :func:`check_reachable` and :func:`check_credentials` are the cheap checks made *before* a verb
  changes anything locally, so "nothing was changed locally" is true when they fail;
* :func:`load_state` / :func:`save_state`: ``kernels/index.json`` (code dataset version, hash and
  readiness, pushed kernels, runs, competitions seen, the pinned docker image), the one record every
  verb reads and updates.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .artifacts import read_json, write_json
from .errors import KaggleError

log = logging.getLogger(__name__)
NETWORK_SIGNS = ("Max retries exceeded", "Failed to resolve", "Connection refused", "ProxyError", "NameResolutionError",
                 "ConnectTimeout", "Network is unreachable", "Temporary failure in name resolution", "RemoteDisconnected")
AUTH_SIGNS = re.compile(r"\b401\b|Unauthorized|Unauthenticated|Authentication required|in _introspect_token|in authenticate")
NOTHING_CHANGED = "check the network or proxy settings and run the command again; nothing was changed locally"
TOKEN_URL = "https://www.kaggle.com/settings/api"
TOKEN_FIX = (f"create an API token at {TOKEN_URL} and put it in KAGGLE_API_TOKEN or ~/.kaggle/access_token, or run: "
             "kaggle auth login (the legacy kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY still work)")
TERMINAL = {"COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED", "CANCEL_REQUESTED"}
MARK = "@@WS-KAGGLE@@"


# ----------------------------------------------------------------------------- the CLI


def api_endpoint() -> str:
    """The endpoint the kaggle CLI will call (it honours only KAGGLE_API_ENVIRONMENT=LOCALHOST besides PROD)."""
    from kagglesdk.kaggle_env import KaggleEnv, get_endpoint

    local = os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST"
    return get_endpoint(KaggleEnv.LOCAL if local else KaggleEnv.PROD)


def short(text: str, n: int = 300) -> str:
    """One line of at most ``n`` characters, for quoting a server's answer in an error."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + " ..."


def check_reachable(timeout: float = 8.0) -> None:
    """Fail fast (before the CLI's long retry loops) when the Kaggle API cannot be reached at all."""
    import requests

    url = api_endpoint()
    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.exceptions.RequestException as exc:
        raise KaggleError(f"cannot reach the Kaggle API at {url} ({type(exc).__name__}: {short(str(exc))})",
                          NOTHING_CHANGED) from None


def _run(cmd: list[str], what: str, timeout: float) -> tuple[int, str]:
    log.info("$ %s", what)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        raise KaggleError(f"{what} did not finish within {timeout:.0f}s",
                          "run it again; if it keeps timing out, check the Kaggle status page") from None
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


def kaggle_cli(args: list[str], timeout: float = 900, probe: bool = True) -> str:
    """Run ``kaggle <args>`` with this interpreter; return stdout+stderr or raise KaggleError with the reason."""
    if probe:
        check_reachable()
    rc, out = _run([sys.executable, "-m", "kaggle", *args], f"kaggle {' '.join(args)}", timeout)
    if rc != 0:
        raise KaggleError(*explain_failure(args, out))
    return out


def _competition_of(args: list[str]) -> str:
    """The competition a ``kaggle competitions ...`` command names (``-c SLUG`` or the positional)."""
    if "-c" in args[:-1]:
        return args[args.index("-c") + 1]
    rest = [a for a in args[2:] if not a.startswith("-")]
    return rest[0] if rest else "<slug>"


def explain_failure(args: list[str], out: str) -> tuple[str, str]:
    """(what, fix) from the CLI's output: network, credentials, rules, processing, or the server's own words."""
    what = f"kaggle {' '.join(args[:2])}"
    lines = [ln for ln in out.strip().splitlines() if ln.strip() and not ln.startswith(("Warning:", "DEBUG"))]
    said = short(" | ".join(lines[-3:]) or "nothing (exit status 1)")
    if any(s in out for s in NETWORK_SIGNS):
        return f"{what}: cannot reach the Kaggle API at {api_endpoint()}: {short(lines[-1] if lines else '')}", NOTHING_CHANGED
    if AUTH_SIGNS.search(out):
        cred = credential_source()
        return f"{what}: Kaggle rejected {cred.where if cred else 'the request (no credentials)'}", auth_fix(cred)
    if "Permission 'kernels.get' was denied" in out:  # kaggle 2.2.4 says this for a 401 and a 403 alike
        cred = credential_source()
        ref = next((a for a in args[2:] if "/" in a), "?")
        return (f"{what}: Kaggle denied access to kernel {ref}: either it rejected "
                f"{cred.where if cred else 'the request (no credentials)'}, or the kernel is not this user's",
                f"check the kernel ref in kernels/index.json; if it is right, {auth_fix(cred)}")
    if args[:1] in (["competitions"], ["c"]) and re.search(r"\b403\b|Forbidden|rules|permission", out, re.I):
        slug = _competition_of(args)
        return (f"{what}: Kaggle refused access to competition {slug}: {said}",
                f"accept the competition rules at {rules_url(slug)} (signed in as the same Kaggle user), then run the command again")
    if args[:2] == ["datasets", "version"] and re.search(r"\b403\b|still being processed|processing", out, re.I):
        return (f"{what}: the previous version of the dataset is still being processed by Kaggle: {said}",
                "wait until it is ready (python -m src.kaggle code waits for it) and run the command again")
    return f"{what} failed; the server said: {said}", "fix what the server names and run the command again"


def rules_url(slug: str) -> str:
    return f"https://www.kaggle.com/competitions/{slug}/rules"


_HARNESS = f"""
import json, sys
from requests.exceptions import HTTPError
def emit(**kw):
    print("\\n{MARK}" + json.dumps(kw, default=str), flush=True)
try:
    from kaggle import api
    if not api._authenticated:
        api.authenticate()
    argv = sys.argv[2:]
    exec(sys.argv[1])
    emit(ok=True, result=result)
except HTTPError as e:
    emit(ok=False, status=getattr(e.response, "status_code", None), error=str(e))
except SystemExit:
    emit(ok=False, status=None, error="no usable Kaggle credentials")
"""


def kaggle_py(task: str, *args: str, what: str, timeout: float = 300) -> Any:
    """Run ``task`` (Python that sets ``result`` from ``api``, the authenticated kaggle client, and ``argv``) in a subprocess.

    For what the CLI does not print (a token's user name, ``is_kernels_submissions_only``). Same
    interpreter, same environment, same credentials as :func:`kaggle_cli`; an HTTP error comes back
    with its status code, so a 401 is told from a 404.
    """
    rc, out = _run([sys.executable, "-c", _HARNESS, task, *args], what, timeout)
    hits = [ln[len(MARK):] for ln in out.splitlines() if ln.startswith(MARK)]
    if not hits:
        if any(s in out for s in NETWORK_SIGNS):
            raise KaggleError(f"{what}: cannot reach the Kaggle API at {api_endpoint()}", NOTHING_CHANGED)
        raise KaggleError(f"{what}: the kaggle client failed (exit {rc}): {short(out)}", "pip show kaggle; it must be 2.x")
    rec = json.loads(hits[-1])
    if rec["ok"]:
        return rec["result"]
    raise KaggleError(*explain_status(what, rec.get("status"), rec.get("error", "")))


def explain_status(what: str, status: int | None, error: str) -> tuple[str, str]:
    """(what, fix) for an HTTP status the kaggle client raised (``None``: it found no credentials)."""
    cred = credential_source()
    if status is None or cred is None:
        return f"{what}: no Kaggle credentials found ({short(error, 120)})", TOKEN_FIX
    if status == 401:
        return f"{what}: Kaggle rejected {cred.where} (HTTP 401: {short(error, 160)})", auth_fix(cred)
    return f"{what} failed (HTTP {status}): {short(error)}", "fix what the server names and run the command again"


# ----------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credential:
    """Which credential the kaggle CLI will use (never the secret itself): kind token|legacy|oauth."""

    kind: str
    where: str
    user: str = ""  # known locally for the legacy key only
    fingerprint: str = ""  # sha256 prefix of the secret: tells two tokens apart without keeping one


def _cli_config_dir() -> Path:
    """The folder the kaggle CLI reads kaggle.json from (``KaggleApi.config_dir``)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path(os.path.expanduser("~/.kaggle"))
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")) / "kaggle"


def _legacy() -> Credential | None:
    """``username`` + ``key`` from kaggle.json, overridden by KAGGLE_USERNAME / KAGGLE_KEY (the CLI's merge)."""
    path = _cli_config_dir() / "kaggle.json"
    values: dict[str, str] = {}
    if path.is_file():
        try:
            values = {k: str(v) for k, v in json.loads(path.read_text() or "{}").items()}
        except ValueError:
            raise KaggleError(f"{path} is not valid JSON", f"download a fresh token at {TOKEN_URL}, or delete the file") from None
    user = os.environ.get("KAGGLE_USERNAME") or values.get("username", "")
    key = os.environ.get("KAGGLE_KEY") or values.get("key", "")
    if not (user and key):
        return None
    where = "the legacy key in KAGGLE_USERNAME/KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else f"the legacy key in {path}"
    return Credential("legacy", where, user, hashlib.sha256(f"{user}:{key}".encode()).hexdigest()[:12])


def credential_source() -> Credential | None:
    """The credential kaggle 2.2.x will authenticate with, in its order; None when there is none."""
    from kagglesdk.kaggle_env import get_access_token_from_env

    token, source = get_access_token_from_env()
    if token:
        where = {"KAGGLE_API_TOKEN": "the access token in KAGGLE_API_TOKEN",
                 "access_token": "the access token in ~/.kaggle/access_token"}.get(source or "", f"the access token from {source}")
        return Credential("token", where, "", hashlib.sha256(token.encode()).hexdigest()[:12])
    legacy = _legacy()
    if legacy:
        return legacy
    creds = Path(os.path.expanduser("~/.kaggle/credentials.json"))
    if creds.is_file() and "refresh_token" in creds.read_text():
        return Credential("oauth", f"the OAuth login in {creds}", "", str(creds.stat().st_mtime_ns))
    return None


def auth_fix(cred: Credential | None) -> str:
    if cred is None:
        return TOKEN_FIX
    if cred.kind == "oauth":
        return "log in again: kaggle auth login --force"
    if cred.kind == "token":
        return (f"the token is wrong, revoked or expired: generate a new one at {TOKEN_URL} and replace "
                f"{cred.where.removeprefix('the access token in ')} (or run: kaggle auth login)")
    return f"the key was expired or replaced: {TOKEN_FIX}"


def check_credentials() -> Credential:
    """Some credential the kaggle CLI accepts is present (checked locally: no request is made)."""
    cred = credential_source()
    if cred is None:
        raise KaggleError("no Kaggle credentials found (no KAGGLE_API_TOKEN, ~/.kaggle/access_token, OAuth login, "
                          "kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY)", TOKEN_FIX)
    return cred


_USERS: dict[tuple, str] = {}
WHOAMI = 'result = {"user": api.get_config_value("username"), "method": api.get_config_value("auth_method")}'


def kaggle_user() -> str:
    """The Kaggle user name the authenticated API answers to (datasets and kernels are created as <user>/<slug>).

    The legacy key names its user; an access token or OAuth login does not, so the kaggle client is
    asked (``KaggleApi.authenticate`` introspects the token) once per credential and process. A token
    Kaggle rejects is a clear 401 error here, not a false "no credentials" later.
    """
    cred = check_credentials()
    if cred.kind == "legacy":
        return cred.user
    key = (cred.kind, cred.where, cred.fingerprint, api_endpoint())
    if key not in _USERS:
        rec = kaggle_py(WHOAMI, what="asking Kaggle which user the credentials belong to", timeout=120)
        if not rec.get("user"):
            raise KaggleError(f"Kaggle did not name the user of {cred.where}", auth_fix(cred))
        _USERS[key] = rec["user"]
    return _USERS[key]


# ----------------------------------------------------------------------------- what Kaggle says about things


COMPETITION_TASK = ('r = api.competitions_list(search=argv[0])\n'
                    'result = [{"ref": c.ref, "code_only": c.is_kernels_submissions_only, "deadline": c.deadline} '
                    'for c in (r.competitions or [])]')


def competition_code_only(slug: str, workdir: Path) -> bool | None:
    """Whether ``slug`` takes notebook submissions only (``ApiCompetition.is_kernels_submissions_only``).

    Asked once and recorded under ``competitions`` in kernels/index.json (a competition does not change
    kind); None when Kaggle does not list it (nothing is recorded then).
    """
    st = load_state(workdir)
    seen = st.setdefault("competitions", {}).get(slug)
    if seen is not None:
        return seen["code_only"]
    rows = kaggle_py(COMPETITION_TASK, slug, what=f"looking up competition {slug}")
    hit = next((r for r in rows if str(r.get("ref", "")).rstrip("/").split("/")[-1] == slug), None)
    if hit is None:
        log.warning("competition %s is not listed by Kaggle; cannot tell whether it is a code competition", slug)
        return None
    st["competitions"][slug] = {"code_only": bool(hit["code_only"]), "checked": now()}
    save_state(workdir, st)
    return bool(hit["code_only"])


def _hours(text: str) -> float:
    return float(str(text).rstrip("h") or 0)


def gpu_quota() -> dict | None:
    """This week's GPU hours from ``kaggle quota`` (used, remaining, total, refresh); None when Kaggle does not say.

    A CLI without the ``quota`` command or a server without the call is logged and skipped; rejected
    credentials are not (they would fail the push that follows anyway).
    """
    rc, out = _run([sys.executable, "-m", "kaggle", "quota", "--format", "json"], "kaggle quota --format json", 120)
    if rc != 0:
        if AUTH_SIGNS.search(out) or any(s in out for s in NETWORK_SIGNS):
            raise KaggleError(*explain_failure(["quota"], out))
        log.warning("cannot read the GPU quota (kaggle quota: %s); it is not checked", short(out, 160))
        return None
    start = out.find("[")
    rows = json.loads(out[start:]) if start >= 0 else []
    gpu = next((r for r in rows if r.get("resource") == "GPU"), None)
    if gpu is None:
        return None
    return {"used": _hours(gpu["used"]), "remaining": _hours(gpu["remaining"]), "total": _hours(gpu["total"]),
            "refresh": gpu.get("refreshAt", "")}


def kernel_state(ref: str) -> tuple[str, str]:
    """(state, failure message) from ``kaggle kernels status``."""
    out = kaggle_cli(["kernels", "status", ref], probe=False)
    m = re.search(r'has status "([^"]+)"', out)
    if not m:
        raise KaggleError(f"kaggle kernels status {ref}: unexpected answer {short(out)}", "run status again; if it persists, "
                          "the kaggle CLI's output format changed (pip show kaggle)")
    fm = re.search(r'Failure message: "(.*)"', out)
    return m.group(1).split(".")[-1].upper(), fm.group(1) if fm else ""


def readable_log(text: str) -> str:
    """A kernel log as a person reads it: Kaggle stores a finished session's log as a JSON array of
    ``{stream_name, time, data}`` events (``kaggle kernels output`` / ``logs`` hand it over as is).
    Lines before the array (a CLI warning) are kept; anything that is not such an array is returned unchanged."""
    start = 0 if text.lstrip().startswith("[") else text.find("\n[") + 1
    if start == 0 and not text.lstrip().startswith("["):
        return text
    try:
        events = json.loads(text[start:])
    except ValueError:
        return text
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return text
    data = [str(e.get("data", "")) for e in events]
    return text[:start] + "".join(d if d.endswith("\n") else d + "\n" for d in data)


# ----------------------------------------------------------------------------- kernels/index.json


def state_path(workdir: Path) -> Path:
    return Path(workdir) / "kernels" / "index.json"


def load_state(workdir: Path) -> dict:
    """kernels/index.json: ``code`` (the code dataset), ``kernels`` (by ref), ``runs`` (by run id), ``competitions``."""
    p = state_path(workdir)
    st = read_json(p) if p.is_file() else {}
    for key in ("kernels", "runs", "competitions"):
        st.setdefault(key, {})
    return st


def save_state(workdir: Path, st: dict) -> None:
    write_json(state_path(workdir), st)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
