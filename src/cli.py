"""One command-line convention for every ``python -m src.<stage>``.

* :func:`parser` gives an ``ArgumentParser`` whose usage line reads ``python -m src.<stage>`` and
  whose ``--help`` shows every default;
* :func:`add_common` adds ``--config`` and ``--workdir`` in the same way everywhere (``--config``
  may be left out when the workspace names a default, see :func:`src.config.default_config`);
* :func:`run_command` runs a stage's ``main`` and turns a :class:`~src.errors.WorkspaceError` (or a
  file-system refusal such as a read-only work folder) into ``error: <what> — <how to fix>`` and
  exit status 2. Anything else is a bug in the workspace and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import sys
from typing import Any, Callable, Iterator, Sequence

from .errors import WorkspaceError

log = logging.getLogger(__name__)
USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT, errno.EISDIR, errno.ENOTDIR}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every flag's help, and the module docstring's layout kept."""


def parser(stage: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"python -m src.{stage}", description=description, formatter_class=HelpFormatter)


def add_common(ap: argparse.ArgumentParser, config: bool = True) -> None:
    """``--config`` (optional when the workspace has a default) and ``--workdir``, the same in every command."""
    if config:
        ap.add_argument("--config", default=None,
                        help="workspace TOML of the competition (default: $AUDIO_WS_CONFIG, else 'config' in <workdir>/workspace.toml)")
    ap.add_argument("--workdir", default=".", help="folder holding cache/, folds/, runs/, submissions/")


def run_command(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage; a user mistake ends with one ``error:`` line and status 2, never a traceback."""
    try:
        main(argv)
    except WorkspaceError as exc:
        _fail(str(exc))
    except OSError as exc:
        if exc.errno not in USER_OS_ERRORS or not exc.filename:
            raise
        where = exc.filename if not exc.filename2 else f"{exc.filename} -> {exc.filename2}"
        _fail(f"{where}: {exc.strerror} — {_os_fix(exc.errno)}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``, a Kaggle session ending) stops the work like Ctrl-C: the running fold or
    trial is recorded as interrupted instead of being left "running" by a process that vanished."""
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _os_fix(code: int | None) -> str:
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable, or pass --workdir to a writable folder"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free disk space (the feature cache under cache/ can be deleted and rebuilt)"
    return "check the path"


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)
