"""Exceptions that gankit raises for problems a user can fix.

Every user-facing error derives from :class:`GankitError`; its message is a single
line that names the problem and what to do about it. The command line catches
:class:`GankitError` and prints the message alone (no traceback) with a non-zero exit.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "GankitError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "TrainingError",
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
