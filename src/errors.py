"""The one error family of the workspace: a user-facing problem that says what is wrong and how to fix it.

Every command runs through :func:`src.cli.run_command`, which prints ``error: <what> — <how to fix>``
for any :class:`WorkspaceError` and exits with status 2; anything else is a bug and keeps its
traceback. Library code raises these instead of ``SystemExit`` so it can be called from Python too.

The subclasses keep the builtin base they always had (``ValueError`` for bad input,
``RuntimeError`` for a failed step) so ``except ValueError`` in user code still works; inside the
workspace, catch :class:`WorkspaceError`.
"""
from __future__ import annotations


class WorkspaceError(Exception):
    """What went wrong (naming the file, row or key) and, when known, how to fix it."""

    def __init__(self, what: str, fix: str = ""):
        self.what, self.fix = what, fix
        super().__init__(f"{what} — {fix}" if fix else what)


class ConfigError(WorkspaceError, ValueError):
    """A config key is missing, mistyped, does not apply, or points at nothing."""


class DataError(WorkspaceError, ValueError):
    """The data on disk does not match the config or is unusable."""


class FoldError(WorkspaceError, ValueError):
    """The fold file is missing, malformed, or no longer matches the data."""


class RunError(WorkspaceError, RuntimeError):
    """A run folder cannot be created, resumed or read."""


class EnsembleError(WorkspaceError, ValueError):
    """Runs cannot be combined or compared."""


class SubmissionError(WorkspaceError, ValueError):
    """A submission file would be rejected or scored wrongly."""


class TuneError(WorkspaceError, RuntimeError):
    """A tuning study cannot be created, continued or read."""


class KaggleError(WorkspaceError, RuntimeError):
    """A Kaggle step failed; the message carries the server's or the check's words."""


class PretrainedError(WorkspaceError, RuntimeError):
    """Pretrained weights could not be found or did not fit the model."""


class CheckpointError(WorkspaceError, RuntimeError):
    """A fold checkpoint cannot be used to initialise a model."""
