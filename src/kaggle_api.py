"""Talking to Kaggle: the official ``kaggle`` CLI, and the workspace's record of what was sent to it.

* :func:`kaggle_cli` runs ``python -m kaggle ...`` with this interpreter and turns a failure into a
  :class:`~src.errors.KaggleError` (:func:`explain_failure`: network, credentials, or the server's
  own words);
* :func:`check_reachable` and :func:`check_credentials` are the cheap checks made *before* a verb
  changes anything locally, so "nothing was changed locally" is true when they fail;
* :func:`load_state` / :func:`save_state`: ``kernels/index.json`` (code dataset version and hash,
  pushed kernels, runs), the one record every verb reads and updates.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .artifacts import read_json, write_json
from .errors import KaggleError

log = logging.getLogger(__name__)
NETWORK_SIGNS = ("Max retries exceeded", "Failed to resolve", "Connection refused", "ProxyError", "NameResolutionError",
                 "ConnectTimeout", "Network is unreachable", "Temporary failure in name resolution", "RemoteDisconnected")
NOTHING_CHANGED = "check the network or proxy settings and run the command again; nothing was changed locally"
TOKEN_FIX = ("put your API token in ~/.kaggle/kaggle.json (kaggle.com -> Settings -> API -> Create New Token), or set "
             "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN, or run: kaggle auth login")


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


def kaggle_cli(args: list[str], timeout: float = 900, probe: bool = True) -> str:
    """Run ``kaggle <args>`` with this interpreter; return stdout+stderr or raise KaggleError with the reason."""
    if probe:
        check_reachable()
    cmd = [sys.executable, "-m", "kaggle", *args]
    log.info("$ kaggle %s", " ".join(args))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        raise KaggleError(f"kaggle {' '.join(args[:2])} did not finish within {timeout:.0f}s",
                          "run it again; if it keeps timing out, check the Kaggle status page") from None
    out = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        raise KaggleError(*explain_failure(args, out))
    return out


def explain_failure(args: list[str], out: str) -> tuple[str, str]:
    """(what, fix) from the CLI's output: network, credentials, or the server's own words."""
    what = f"kaggle {' '.join(args[:2])}"
    if any(s in out for s in NETWORK_SIGNS):
        last = out.strip().splitlines()[-1] if out.strip() else ""
        return f"{what}: cannot reach the Kaggle API at {api_endpoint()}: {short(last)}", NOTHING_CHANGED
    if re.search(r"\b401\b|Unauthorized|Authentication required", out):
        return f"{what}: Kaggle rejected the credentials", TOKEN_FIX
    lines = [ln for ln in out.strip().splitlines() if ln.strip() and not ln.startswith(("Warning:", "DEBUG"))]
    said = short(" | ".join(lines[-3:]) or "nothing (exit status 1)")
    return f"{what} failed; the server said: {said}", "fix what the server names and run the command again"


# ----------------------------------------------------------------------------- credentials


def _config_dirs() -> list[Path]:
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR", ""), os.path.expanduser("~/.kaggle"), os.path.expanduser("~/.config/kaggle")]
    return [Path(d) for d in dirs if d]


def kaggle_user() -> str:
    """The Kaggle user name from KAGGLE_USERNAME or kaggle.json (the key is never read into logs)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    for d in _config_dirs():
        p = d / "kaggle.json"
        if p.is_file():
            try:
                return json.loads(p.read_text())["username"]
            except (ValueError, KeyError):
                raise KaggleError(f"{p} has no 'username'", "download a fresh API token from your Kaggle account settings") from None
    raise KaggleError("no Kaggle user name: datasets and kernels are created as <user>/<slug>",
                      "put kaggle.json (kaggle.com -> Settings -> API -> Create New Token) in ~/.kaggle/, or set KAGGLE_USERNAME")


def check_credentials() -> None:
    """Some credential the kaggle CLI accepts is present (checked locally: no request is made)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return
    for d in _config_dirs():
        if (d / "kaggle.json").is_file() or (d / "access_token").is_file() or (d / "credentials.json").is_file():
            return
    from kagglesdk.kaggle_env import get_access_token_from_env

    if get_access_token_from_env()[0]:
        return
    raise KaggleError("no Kaggle credentials found (no KAGGLE_USERNAME + KAGGLE_KEY, KAGGLE_API_TOKEN, kaggle.json, "
                      "access_token or OAuth login)", TOKEN_FIX)


# ----------------------------------------------------------------------------- kernels/index.json


def state_path(workdir: Path) -> Path:
    return Path(workdir) / "kernels" / "index.json"


def load_state(workdir: Path) -> dict:
    """kernels/index.json: ``code`` (the code dataset), ``kernels`` (by ref) and ``runs`` (by run id)."""
    p = state_path(workdir)
    st = read_json(p) if p.is_file() else {}
    for key in ("kernels", "runs"):
        st.setdefault(key, {})
    return st


def save_state(workdir: Path, st: dict) -> None:
    write_json(state_path(workdir), st)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
