"""Exceptions that gankit raises for problems a user can fix.

Every user-facing error derives from :class:`GankitError`; its message is a single
line that names the problem and what to do about it. The command line catches
:class:`GankitError` and prints the message alone (no traceback) with a non-zero exit.
"""

from __future__ import annotations

__all__ = ["GankitError", "ConfigError", "DataError", "CheckpointError", "TrainingError"]


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
