"""Exceptions that gankit raises for problems a user can fix.

Every user-facing error derives from :class:`GankitError`; its message is a single
line that names the problem and what to do about it. The command line catches
:class:`GankitError` and prints the message alone (no traceback) with a non-zero exit.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable, Sequence

__all__ = [
    "GankitError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "TrainingError",
    "DiskFullError",
    "unknown_choice",
]


class GankitError(Exception):
    """Base class of errors a user can act on; the message is one line."""


class ConfigError(GankitError, ValueError):
    """An invalid preset name, override, block configuration or option value."""


class DataError(GankitError, ValueError):
    """A dataset path, folder or file that cannot be used."""


class CheckpointError(GankitError, ValueError):
    """A checkpoint that is missing, truncated, of another preset or not a checkpoint."""


class TrainingError(GankitError, RuntimeError):
    """Training cannot go on (for example a non-finite loss)."""


class DiskFullError(GankitError, OSError):
    """A file could not be written because its disk (or quota) is full.

    gankit writes every file it makes to a temporary name and renames it into place, so
    the file that could not be written keeps its previous content, and nothing written
    before was touched. The message names the file and, when known, what is intact.

    Args:
        path: the file that could not be written.
        intact: files that are known to be intact (e.g. the previous checkpoint), or None.
        reason: the operating system's words (``"No space left on device"``).

    Example:
        >>> str(DiskFullError("runs/a/loss_curve.png", intact=["runs/a/checkpoints/last.pt"]))
        'cannot write runs/a/loss_curve.png: the disk is full (No space left on device); runs/a/checkpoints/last.pt is intact; free some space and run the command again.'
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        intact: Sequence[str | os.PathLike] | None = None,
        reason: str = "No space left on device",
        hint: str = "free some space and run the command again",
    ) -> None:
        OSError.__init__(self, errno.ENOSPC, reason, os.fspath(path))
        self.intact = [os.fspath(p) for p in intact] if intact else []
        self.hint = hint

    def __str__(self) -> str:
        if self.intact:
            verb = "is" if len(self.intact) == 1 else "are"
            kept = f"{', '.join(self.intact)} {verb} intact"
        else:
            kept = "the files gankit wrote before are intact (every file is written atomically)"
        return f"cannot write {self.filename}: the disk is full ({self.strerror}); {kept}; {self.hint}."


def unknown_choice(what: str, name: object, choices: Iterable[str]) -> ConfigError:
    """The one-line error for a name that is not among the valid choices.

    Args:
        what: what was looked up, as the message starts, e.g. ``"unknown loss"``.
        name: the name given.
        choices: the valid names.

    Returns:
        A :class:`ConfigError` naming the value, the close matches and every valid choice.

    Example:
        >>> str(unknown_choice("unknown loss", "hing", ["hinge", "bce"]))
        "unknown loss 'hing'; did you mean 'hinge'? (valid choices: bce, hinge)"
    """
    valid = sorted(choices)
    close = difflib.get_close_matches(str(name), valid, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return ConfigError(f"{what} {name!r}{hint} (valid choices: {', '.join(valid)})")
