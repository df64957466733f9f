"""fdrl_train's own error (below every module of the package, so none imports upward for it)."""
from __future__ import annotations

from fdrl_core.errors import FdrlError


class TrainingError(FdrlError, RuntimeError):
    """Training cannot go on (a non-finite loss, a bad resume); the message says why."""


class CheckpointError(FdrlError, ValueError):
    """A checkpoint that is missing, unreadable or not a checkpoint; the message says which."""
