"""Start a throw-away PostgreSQL server on loopback for the distributed-tuning test.

Order of preference:
1. ``AUDIO_WS_PG_URL`` (an existing server, e.g. a CI service) is used as is;
2. otherwise a private cluster is created with Debian's ``initdb``/``pg_ctl`` (package
   ``postgresql``; ``bash .ci/postgres.sh`` installs it) in a temporary folder, listening on
   127.0.0.1 on a free port with trust authentication, and removed afterwards.
   As root the server runs as the ``postgres`` user, because PostgreSQL refuses to run as root.

``start_postgres`` raises :class:`PostgresUnavailable` with the reason when none of this works,
so the test can skip with a message that says what is missing.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class PostgresUnavailable(RuntimeError):
    pass


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise PostgresUnavailable(f"{name} not found: install Debian's postgresql package (bash .ci/postgres.sh)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner() -> list[str]:
    """Command prefix that runs the server as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server") from None
    runuser = shutil.which("runuser")
    if not runuser:
        raise PostgresUnavailable("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"]


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({res.returncode}): {res.stderr.strip()[-500:]}")


@contextmanager
def start_postgres() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a running PostgreSQL server; stop and remove it afterwards."""
    if os.environ.get("AUDIO_WS_PG_URL"):
        yield os.environ["AUDIO_WS_PG_URL"]
        return
    initdb, pg_ctl, prefix = _bin("initdb"), _bin("pg_ctl"), _runner()
    root = Path(tempfile.mkdtemp(prefix="tune-pg-"))
    data, port = root / "data", _free_port()
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    try:
        _run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], "initdb")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=50 -c fsync=off"
        _run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w", "-t", "60", "start"], "pg_ctl start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
    finally:
        for _ in range(3):
            shutil.rmtree(root, ignore_errors=True)
            if not root.exists():
                break
            time.sleep(0.5)
